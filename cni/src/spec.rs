//! The CNI protocol's messages (spec 1.1.0; results written down to 0.3.0):
//! the network configuration the runtime gives on stdin, the result and the
//! error the plugin prints, and the version rules between them.
//!
//! Types by hand with serde: the protocol is a handful of JSON objects,
//! and the plugin needs exact control of what it writes per version and
//! of fields it does not know (a `prevResult` is passed on whole, unknown
//! fields included), which a small hand-made set of types gives without
//! tying the plugin to a young crate's choices.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Every version whose configuration this plugin takes, oldest first.
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The version this plugin speaks natively.
pub const LATEST: &str = "1.1.0";

/// Error codes of the spec, and ours from 100.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const INVALID_ENV: u32 = 4;
    pub const IO: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    /// vswitchd refused the request (bad address, name taken, ...).
    pub const SWITCH_REFUSED: u32 = 100;
    /// The pod's namespace could not be configured (netlink).
    pub const LINK: u32 = 101;
    /// The interface to create already exists in the pod.
    pub const EXISTS: u32 = 102;
    /// CHECK found the attachment not as ADD left it.
    pub const CHECK_FAILED: u32 = 103;
    /// The IPAM plugin failed without a CNI error of its own.
    pub const IPAM: u32 = 104;
}

/// A failure, printed as the spec's error object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl Error {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Error {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The error object in `version`.
    pub fn to_json(&self, version: &str) -> serde_json::Value {
        let mut v = serde_json::json!({
            "cniVersion": version,
            "code": self.code,
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            v["details"] = self.details.clone().into();
        }
        v
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

/// How the pod's interface reaches the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attach {
    /// A TAP device vswitchd creates inside the pod's namespace.
    #[default]
    Tap,
    /// A veth pair whose host end vswitchd attaches through AF_XDP.
    Afxdp,
}

/// One attachment named by `cni.dev/valid-attachments` (GC).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The network configuration on stdin: the spec's keys and ours.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    /// vswitchd's control socket.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    #[serde(default)]
    pub attach: Attach,
    /// MTU of the pod's interface.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// The IPAM plugin's configuration; its `type` names the plugin.
    #[serde(default)]
    pub ipam: Option<serde_json::Value>,
    /// Where this plugin records its attachments (GC, DEL without vswitchd).
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub prev_result: Option<serde_json::Value>,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<Attachment>>,
}

/// Default of `socket`.
pub const DEFAULT_SOCKET: &str = ctl::DEFAULT_SOCKET;
/// Default of `dataDir`.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/vswitch";
/// The largest MTU the switch's frames hold (9,000-byte jumbo frames).
pub const MTU_MAX: u32 = 9000;
/// The smallest MTU IPv4 allows.
pub const MTU_MIN: u32 = 576;
/// The smallest MTU IPv6 allows (a pod with an IPv6 address needs it).
pub const MTU_MIN_V6: u32 = 1280;

impl NetConf {
    /// Parses and checks the configuration: input that is not JSON is a
    /// decoding error (6), a key of the wrong type or value an invalid
    /// configuration (7).
    pub fn parse(bytes: &[u8]) -> Result<NetConf, Error> {
        let conf: NetConf = serde_json::from_slice(bytes).map_err(|e| {
            if e.classify() == serde_json::error::Category::Data {
                Error::new(code::INVALID_CONFIG, "invalid network configuration")
                    .with_details(e.to_string())
            } else {
                Error::new(code::DECODE, "cannot decode the network configuration")
                    .with_details(e.to_string())
            }
        })?;
        if !valid_network_name(&conf.name) {
            return Err(Error::new(
                code::INVALID_CONFIG,
                format!(
                    "network name '{}' must start with a letter or digit and hold only \
                     letters, digits, '_', '.' and '-'",
                    conf.name
                ),
            ));
        }
        if version(&conf.cni_version).is_none() {
            return Err(Error::new(
                code::INVALID_CONFIG,
                format!("cniVersion '{}' is not a version", conf.cni_version),
            ));
        }
        if !SUPPORTED.contains(&conf.cni_version.as_str()) {
            return Err(Error::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "cniVersion {} is not supported; this plugin speaks {}",
                    conf.cni_version,
                    SUPPORTED.join(", ")
                ),
            ));
        }
        if let Some(mtu) = conf.mtu
            && !(MTU_MIN..=MTU_MAX).contains(&mtu)
        {
            return Err(Error::new(
                code::INVALID_CONFIG,
                format!("mtu {mtu} is outside {MTU_MIN}..={MTU_MAX}"),
            ));
        }
        if let Some(ipam) = &conf.ipam
            && ipam
                .get("type")
                .and_then(|t| t.as_str())
                .is_none_or(|t| t.is_empty() || t.contains('/') || t == "." || t == "..")
        {
            return Err(Error::new(
                code::INVALID_CONFIG,
                "ipam needs a 'type' naming the IPAM plugin, such as \"host-local\"",
            ));
        }
        Ok(conf)
    }

    pub fn ipam_plugin(&self) -> Option<&str> {
        self.ipam.as_ref()?.get("type")?.as_str()
    }

    pub fn socket(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    }

    /// Whether the configuration's version has `verb` (CHECK from 0.4.0,
    /// GC and STATUS from 1.1.0).
    pub fn require(&self, since: &str, verb: &str) -> Result<(), Error> {
        if version(&self.cni_version) < version(since) {
            return Err(Error::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "{verb} needs cniVersion {since} or later; the configuration says {}",
                    self.cni_version
                ),
            ));
        }
        Ok(())
    }
}

/// The spec's rule for network names (they name a directory of ours).
pub fn valid_network_name(name: &str) -> bool {
    crate::env::valid_container_id(name)
}

/// The version to answer in: the configuration's `cniVersion` when it is
/// one this plugin speaks (even if the rest does not parse), else the
/// newest.
pub fn answer_version(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .filter(|v| SUPPORTED.contains(&v.as_str()))
        .unwrap_or_else(|| LATEST.to_string())
}

/// `MAJOR.MINOR.PATCH` as numbers, for comparing.
pub fn version(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    let r = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(r)
}

/// An interface of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The namespace the interface is in; absent for the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// From 1.1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Fields this plugin does not use (`socketPath`, `pciID`, ...), kept.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// An address of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// `"4"` or `"6"`, in results before 1.0.0 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into the result's `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A route of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// Other attributes (`mtu`, `priority`, `table`, `scope`): passed on;
    /// the plugin installs the destination and gateway only.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The DNS settings of a result, passed on from IPAM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    fn is_empty(&self) -> bool {
        *self == Dns::default()
    }
}

/// The result of ADD (and of IPAM's ADD, and `prevResult`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl CniResult {
    /// Parses a result of any supported version.
    pub fn from_value(v: &serde_json::Value) -> Result<CniResult, Error> {
        serde_json::from_value(v.clone()).map_err(|e| {
            Error::new(code::DECODE, "cannot decode a CNI result").with_details(e.to_string())
        })
    }

    /// The result as `version` writes it: before 1.0.0 each address names
    /// its IP version; interface MTUs appear from 1.1.0.
    pub fn converted(mut self, version_str: &str) -> CniResult {
        let v = version(version_str).unwrap_or((1, 1, 0));
        for ip in &mut self.ips {
            ip.version = (v < (1, 0, 0)).then(|| {
                if ip.address.addr().is_ipv4() {
                    "4".to_string()
                } else {
                    "6".to_string()
                }
            });
        }
        if v < (1, 1, 0) {
            for i in &mut self.interfaces {
                i.mtu = None;
            }
        }
        self.cni_version = version_str.to_string();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_numbers() {
        assert!(version("0.4.0") < version("1.0.0"));
        assert!(version("1.10.0") > version("1.9.0"));
        assert_eq!(version("1.0"), None);
        assert_eq!(version("1.0.0.0"), None);
        assert_eq!(version("a.b.c"), None);
    }

    #[test]
    fn configuration_is_checked() {
        let ok = br#"{"cniVersion":"1.0.0","name":"pods","type":"vswitch",
            "ipam":{"type":"host-local","ranges":[[{"subnet":"10.244.1.0/24"}]]},"mtu":1450,
            "attach":"afxdp","unknown":{"kept":"ignored"}}"#;
        let c = NetConf::parse(ok).unwrap();
        assert_eq!(c.attach, Attach::Afxdp);
        assert_eq!(c.ipam_plugin(), Some("host-local"));
        assert_eq!(c.socket(), PathBuf::from(ctl::DEFAULT_SOCKET));
        let bad = [
            (&br#"{"cniVersion":"1.0.0""#[..], code::DECODE),
            (
                br#"{"cniVersion":"2.0.0","name":"n","type":"vswitch"}"#,
                code::INCOMPATIBLE_VERSION,
            ),
            (
                br#"{"cniVersion":"one","name":"n","type":"vswitch"}"#,
                code::INVALID_CONFIG,
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","mtu":70000}"#,
                code::INVALID_CONFIG,
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","attach":"veth"}"#,
                code::INVALID_CONFIG,
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","ipam":{}}"#,
                code::INVALID_CONFIG,
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","ipam":{"type":"../x"}}"#,
                code::INVALID_CONFIG,
            ),
        ];
        for (input, want) in bad {
            let e = NetConf::parse(input).unwrap_err();
            assert_eq!(e.code, want, "{}: {e}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn results_are_written_in_the_asked_version() {
        let r = CniResult {
            cni_version: LATEST.into(),
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: Some("0a:58:0a:f4:01:05".into()),
                sandbox: Some("/var/run/netns/x".into()),
                mtu: Some(1500),
                extra: Default::default(),
            }],
            ips: vec![IpConfig {
                version: None,
                address: "10.244.1.5/24".parse().unwrap(),
                gateway: Some("10.244.1.1".parse().unwrap()),
                interface: Some(0),
                extra: Default::default(),
            }],
            ..CniResult::default()
        };
        let old = serde_json::to_value(r.clone().converted("0.3.1")).unwrap();
        assert_eq!(old["ips"][0]["version"], "4");
        assert!(old["interfaces"][0].get("mtu").is_none());
        let new = serde_json::to_value(r.converted("1.1.0")).unwrap();
        assert!(new["ips"][0].get("version").is_none());
        assert_eq!(new["interfaces"][0]["mtu"], 1500);
        assert_eq!(new["cniVersion"], "1.1.0");
        assert!(new.get("dns").is_none());
    }
}
