//! The ports part of the model: the checks a `port add` must pass
//! against the ports already configured. Opening a port's interface is the
//! controller's (`controller/ports.rs`); its failures are refusals too.

use std::collections::BTreeMap;

use ctl::{PortSpec, PortType, XdpMode};
use fastpath::{MAX_PORTS, sys};

use super::router::{PortView, RouteError, RouterModel};

const _: () = assert!(ctl::MAX_QUEUES == fastpath::MAX_QUEUES);

/// Why a port request is refused; the message is what users see.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("invalid port name '{0}': 1-15 characters, no '/', ':' or whitespace")]
    InvalidName(String),
    #[error("port '{0}' already exists")]
    Exists(String),
    #[error("port '{0}' already exists with other settings: {1}")]
    ExistsOtherwise(String, String),
    #[error("port '{0}' does not exist")]
    NoSuchPort(String),
    #[error("a port is either --uplink or --host, not both")]
    UplinkAndHost,
    #[error("--ip declares a pod's addresses: not for --uplink or --host ports")]
    IpOnRoutedPort,
    #[error(transparent)]
    PodAddress(#[from] RouteError),
    #[error("port '{other}' is already the {role} port (one per switch)")]
    RoleTaken { other: String, role: ctl::PortRole },
    #[error("--netns and --ifname apply to TAP ports only (use --type tap)")]
    NetnsOnAfxdp,
    #[error("--offload applies to TAP ports only (use --type tap)")]
    OffloadOnAfxdp,
    #[error(
        "--mac on an AF_XDP port declares the pod's MAC and needs --ip \
         (a TAP port's --mac sets the device's MAC)"
    )]
    MacWithoutIp,
    #[error("a host port is a TAP: use --type tap --host")]
    HostNotTap,
    #[error("--queues must be 1 to {max}, not {0}", max = fastpath::MAX_QUEUES)]
    Queues(u16),
    #[error("interface '{name}' has {has} RX queue(s); --queues {want} needs as many")]
    TooFewQueues { name: String, has: u32, want: u16 },
    #[error("--mode applies to AF_XDP ports only")]
    ModeOnTap,
    #[error("an uplink is the node's NIC, attached through AF_XDP (not --type tap)")]
    UplinkNotAfxdp,
    #[error("a host port lives in the node's own namespace: no --netns/--ifname")]
    HostInNetns,
    #[error("--ifname requires --netns")]
    IfnameWithoutNetns,
    #[error("invalid interface name '{0}'")]
    InvalidIfname(String),
    #[error("MAC {0} is not a unicast address")]
    NotUnicast(ctl::MacAddr),
    #[error("port '{other}' already has a TAP named '{ifname}' in that namespace")]
    TapNameTaken { other: String, ifname: String },
    #[error("too many ports (at most {MAX_PORTS})")]
    TooMany,
    #[error("route {0} goes out of port '{1}'; delete the route first")]
    RouteUsesPort(ipnet::IpNet, String),
    /// The worker has no frame pool for AF_XDP (why, from the worker).
    #[error("{0}")]
    NoPool(String),
    #[error("interface '{0}' does not exist")]
    NoInterface(String),
    #[error("uplink '{name}': {why}")]
    Uplink { name: String, why: String },
    #[error("uplink socket has no descriptor")]
    UplinkNoFd,
    /// Opening the AF_XDP socket or the namespace failed (the OS's words).
    #[error("{0}")]
    Open(String),
    #[error("cannot create TAP port '{name}': {source}")]
    Tap {
        name: String,
        source: std::io::Error,
    },
}

/// Checks a port about to be added to `ports` (the ports configured).
pub(super) fn check(
    ports: &BTreeMap<String, PortSpec>,
    router: &RouterModel,
    spec: &PortSpec,
    views: &[PortView],
) -> Result<(), PortError> {
    use PortError as E;
    if !sys::valid_ifname(&spec.name) {
        return Err(E::InvalidName(spec.name.clone()));
    }
    if ports.contains_key(&spec.name) {
        return Err(E::Exists(spec.name.clone()));
    }
    if spec.uplink && spec.host {
        return Err(E::UplinkAndHost);
    }
    if spec.queues == 0 || spec.queues > fastpath::MAX_QUEUES {
        return Err(E::Queues(spec.queues));
    }
    if !spec.ips.is_empty() {
        if spec.uplink || spec.host {
            return Err(E::IpOnRoutedPort);
        }
        router
            .check_pod_ips(&spec.ips, views)
            .map_err(E::PodAddress)?;
    }
    let role = spec.role();
    if role != ctl::PortRole::Pod
        && let Some(other) = ports.values().find(|p| p.role() == role)
    {
        return Err(E::RoleTaken {
            other: other.name.clone(),
            role,
        });
    }
    match spec.port_type {
        PortType::Afxdp => {
            if spec.netns.is_some() || spec.ifname.is_some() {
                return Err(E::NetnsOnAfxdp);
            }
            if spec.offload.is_some() {
                return Err(E::OffloadOnAfxdp);
            }
            if spec.mac.is_some() && spec.ips.is_empty() {
                return Err(E::MacWithoutIp);
            }
            if spec.host {
                return Err(E::HostNotTap);
            }
        }
        PortType::Tap => {
            if spec.mode != XdpMode::Auto {
                return Err(E::ModeOnTap);
            }
            if spec.uplink {
                return Err(E::UplinkNotAfxdp);
            }
            if spec.host && (spec.netns.is_some() || spec.ifname.is_some()) {
                return Err(E::HostInNetns);
            }
            if spec.ifname.is_some() && spec.netns.is_none() {
                return Err(E::IfnameWithoutNetns);
            }
            if let Some(ifname) = &spec.ifname
                && !sys::valid_ifname(ifname)
            {
                return Err(E::InvalidIfname(ifname.clone()));
            }
            if let Some(mac) = spec.mac
                && (mac.is_multicast() || mac.is_zero())
            {
                return Err(E::NotUnicast(mac));
            }
            if let Some(other) = ports.values().find(|p| {
                p.port_type == PortType::Tap
                    && p.netns == spec.netns
                    && tap_ifname(p) == tap_ifname(spec)
            }) {
                return Err(E::TapNameTaken {
                    other: other.name.clone(),
                    ifname: tap_ifname(spec).to_string(),
                });
            }
        }
    }
    Ok(())
}

/// How `asked` differs from the port `has`, setting by setting, as a
/// `may_exist` refusal says it (`queues 2, asked default`).
pub(super) fn differences(has: &PortSpec, asked: &PortSpec) -> String {
    let fields = |s: &PortSpec| match serde_json::to_value(s) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let (has, asked) = (fields(has), fields(asked));
    let mut keys: Vec<&String> = has.keys().chain(asked.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "default".to_string(),
    };
    keys.into_iter()
        .filter(|k| has.get(*k) != asked.get(*k))
        .map(|k| format!("{k} {}, asked {}", show(has.get(k)), show(asked.get(k))))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The device name of a TAP port: `--ifname` inside a namespace, else the port name.
pub fn tap_ifname(spec: &PortSpec) -> &str {
    spec.ifname.as_deref().unwrap_or(&spec.name)
}
