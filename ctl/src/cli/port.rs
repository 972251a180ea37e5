//! The `port` and `fdb` nouns.

use std::net::IpAddr;

use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Subcommand, ValueEnum};

use super::Failure;
use crate::{MacAddr, PortSpec, PortType, XdpMode};

#[derive(Debug, Subcommand)]
pub enum PortCmd {
    /// Attach an interface (AF_XDP) or create a TAP device.
    Add(PortAddArgs),
    /// Remove a port.
    Del {
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        name: String,
        /// Succeed when the port does not exist.
        #[arg(long)]
        if_exists: bool,
    },
    /// List ports.
    List,
}

#[derive(Debug, Args)]
pub struct PortAddArgs {
    /// Port name: the interface to attach (afxdp) or the TAP device to create (tap).
    #[arg(value_parser = NonEmptyStringValueParser::new())]
    name: String,

    /// Kind of port.
    #[arg(long = "type", value_name = "TYPE", value_enum, default_value_t = CliPortType::Afxdp)]
    port_type: CliPortType,

    /// XDP attach mode (afxdp only) [default: auto].
    #[arg(long, value_enum)]
    mode: Option<CliXdpMode>,

    /// MAC address: of the TAP device (tap), or the pod's, declared for
    /// port security with --ip (afxdp).
    #[arg(long)]
    mac: Option<MacAddr>,

    /// Network namespace to move the TAP device into (tap only): a name
    /// under /run/netns or a path such as /proc/PID/ns/net.
    #[arg(long, value_name = "NS", value_parser = NonEmptyStringValueParser::new())]
    netns: Option<String>,

    /// Name of the TAP device inside --netns (tap only).
    #[arg(long, value_name = "IF", requires = "netns", value_parser = NonEmptyStringValueParser::new())]
    ifname: Option<String>,

    /// An address of the pod behind this port, without a prefix length
    /// (IPv4 or IPv6; repeat for each). The switch routes it to the port and
    /// drops frames from the port with any other source address.
    #[arg(long = "ip", value_name = "ADDR", value_parser = pod_ip)]
    ips: Vec<IpAddr>,

    /// The node's uplink NIC (routed, not part of the pod bridge).
    #[arg(long, conflicts_with = "host")]
    uplink: bool,

    /// A port in the node's own namespace: the kernel's leg into the pod
    /// network (routed, not part of the pod bridge).
    #[arg(long)]
    host: bool,

    /// TAP ports: checksum and segmentation offloads (GSO frames of up to
    /// 64 KiB cross the switch whole) [default: on].
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    offload: Option<bool>,

    /// Queues to serve, each with its own socket, spread over the workers:
    /// RX queues 0..N-1 of the interface (afxdp; it must have N), or a
    /// multi-queue TAP device (tap).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=i64::from(crate::MAX_QUEUES)))]
    queues: u16,

    /// Succeed when a port of this name already exists with the same settings.
    #[arg(long)]
    may_exist: bool,
}

#[derive(Debug, Subcommand)]
pub enum FdbCmd {
    /// List static and learned entries.
    Show,
    /// Add a static entry: frames to MAC go out on PORT.
    Add {
        mac: MacAddr,
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        port: String,
    },
    /// Remove an entry.
    Del { mac: MacAddr },
    /// Remove entries from the forwarding database.
    Flush,
}

/// [`PortType`] as a command-line value. The protocol crate keeps no clap
/// derives, so the CLI mirrors its enums here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CliPortType {
    Afxdp,
    Tap,
}

impl From<CliPortType> for PortType {
    fn from(t: CliPortType) -> Self {
        match t {
            CliPortType::Afxdp => PortType::Afxdp,
            CliPortType::Tap => PortType::Tap,
        }
    }
}

/// [`XdpMode`] as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CliXdpMode {
    Auto,
    Native,
    Generic,
    Zerocopy,
}

impl From<CliXdpMode> for XdpMode {
    fn from(m: CliXdpMode) -> Self {
        match m {
            CliXdpMode::Auto => XdpMode::Auto,
            CliXdpMode::Native => XdpMode::Native,
            CliXdpMode::Generic => XdpMode::Generic,
            CliXdpMode::Zerocopy => XdpMode::Zerocopy,
        }
    }
}

/// `on` or `off`.
fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("'{s}' is neither 'on' nor 'off'")),
    }
}

impl PortAddArgs {
    pub(super) fn to_spec(&self) -> Result<PortSpec, Failure> {
        match self.port_type {
            CliPortType::Afxdp => {
                // On an AF_XDP port, --mac declares the MAC of the pod
                // behind it (port security), which only makes sense with --ip.
                let tap_only = [
                    ("--mac", self.mac.is_some() && self.ips.is_empty()),
                    ("--netns", self.netns.is_some()),
                    ("--ifname", self.ifname.is_some()),
                    ("--offload", self.offload.is_some()),
                ];
                if let Some((flag, _)) = tap_only.iter().find(|(_, given)| *given) {
                    return Err(Failure::Usage(format!(
                        "{flag} applies only to TAP ports; add --type tap"
                    )));
                }
            }
            CliPortType::Tap => {
                if self.mode.is_some() {
                    return Err(Failure::Usage(
                        "--mode applies only to AF_XDP ports (--type afxdp)".to_string(),
                    ));
                }
            }
        }
        Ok(PortSpec {
            name: self.name.clone(),
            port_type: self.port_type.into(),
            mode: self.mode.map(XdpMode::from).unwrap_or_default(),
            mac: self.mac,
            netns: self.netns.clone(),
            ifname: self.ifname.clone(),
            ips: self.ips.clone(),
            uplink: self.uplink,
            host: self.host,
            offload: self.offload,
            queues: self.queues,
            may_exist: self.may_exist,
        })
    }
}

/// Parses a pod address for `port add --ip`: a plain address, no prefix.
fn pod_ip(s: &str) -> Result<IpAddr, String> {
    if let Some((addr, _)) = s.split_once('/')
        && addr.parse::<IpAddr>().is_ok()
    {
        return Err(format!(
            "a pod address takes no prefix length; give --ip {addr}"
        ));
    }
    s.parse()
        .map_err(|_| "expected an IPv4 or IPv6 address such as 10.244.1.5".to_string())
}
