//! Protocol types of Services (`service ...`) and connection tracking
//! (`ct ...`).
//!
//! A Service is keyed by `VIP:PORT/PROTO` and written that way on the wire
//! (`"10.96.0.10:80/tcp"`, `"[fd00::10]:80/tcp"`); backends are `IP:PORT`
//! strings.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The default ClientIP affinity timeout (kube-proxy's, 3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;

/// Transport protocol of a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        })
    }
}

impl FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "sctp" => Ok(Proto::Sctp),
            _ => Err(format!("invalid protocol '{s}': expected tcp, udp or sctp")),
        }
    }
}

/// `VIP:PORT/PROTO`, the name of one Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub vip: IpAddr,
    pub port: u16,
    pub proto: Proto,
}

impl ServiceKey {
    pub fn new(vip: IpAddr, port: u16, proto: Proto) -> Self {
        ServiceKey { vip, port, proto }
    }

    /// The VIP and port as a socket address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.vip, self.port)
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.proto)
    }
}

impl FromStr for ServiceKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, proto) = s
            .rsplit_once('/')
            .ok_or_else(|| format!("invalid Service '{s}': expected VIP:PORT/PROTO"))?;
        let addr = parse_endpoint(addr).map_err(|e| format!("invalid Service '{s}': {e}"))?;
        let proto = proto
            .parse()
            .map_err(|e| format!("invalid Service '{s}': {e}"))?;
        Ok(ServiceKey::new(addr.ip(), addr.port(), proto))
    }
}

/// Parses `IP:PORT` (`[IPv6]:PORT`) with a non-zero port and a unicast,
/// specified address: what a VIP or a backend may be.
pub fn parse_endpoint(s: &str) -> Result<SocketAddr, String> {
    let a: SocketAddr = s.parse().map_err(|_| format!("'{s}' is not IP:PORT"))?;
    if a.port() == 0 {
        return Err(format!("'{s}': port 0 is not allowed"));
    }
    let ip = a.ip();
    if ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::from([255, 255, 255, 255]) {
        return Err(format!("'{s}': {ip} is not a unicast address"));
    }
    Ok(a)
}

macro_rules! string_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

string_serde!(Proto);
string_serde!(ServiceKey);

/// A Service port as `service add` asks for it and the state file stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub service: ServiceKey,
    /// Ready endpoints: new flows are spread over them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<SocketAddr>,
    /// Terminating endpoints: keep their flows, get new ones only while no
    /// endpoint is ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terminating: Vec<SocketAddr>,
    /// ClientIP session affinity with this timeout in seconds (`None`: no
    /// affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_timeout: Option<u32>,
    /// The Service is also reached on this port of the node's uplink
    /// addresses, from outside the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
    /// The program that made the Service (`vswitch-agent`), so it finds
    /// what it owns; none for Services made by hand. Stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Request option, never stored: the same Service already existing
    /// with exactly these settings is not an error.
    #[serde(default, skip_serializing_if = "is_false")]
    pub may_exist: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ServiceSpec {
    /// A Service with these ready backends and no options.
    pub fn new(service: ServiceKey, backends: Vec<SocketAddr>) -> Self {
        ServiceSpec {
            owner: None,
            service,
            backends,
            terminating: Vec::new(),
            affinity_timeout: None,
            node_port: None,
            may_exist: false,
        }
    }
}

/// State of one endpoint of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendState {
    Ready,
    Terminating,
}

impl fmt::Display for BackendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendState::Ready => "ready",
            BackendState::Terminating => "terminating",
        })
    }
}

/// One endpoint of `service list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendInfo {
    pub addr: SocketAddr,
    pub state: BackendState,
    /// Tracked connections (live conntrack entries) to this endpoint.
    pub active: u64,
}

/// One Service port of `service list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub service: ServiceKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_timeout: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
    /// The program that made it; none for one made by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Size of the Maglev lookup table (a prime).
    pub table_size: u32,
    pub backends: Vec<BackendInfo>,
}

/// TCP tracking state of a connection (UDP and SCTP flows are `open`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CtState {
    /// Only the client has spoken (a SYN): embryonic, evicted first.
    SynSent,
    /// The endpoint answered (a SYN-ACK), the client has not spoken since:
    /// embryonic too (a SYN flood from spoofed addresses leaves these).
    SynRecv,
    /// The client spoke after the endpoint's answer (the handshake's ACK).
    Established,
    /// A FIN or RST was seen: expires soon.
    Closing,
    /// A datagram flow (UDP, SCTP).
    Open,
}

impl fmt::Display for CtState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CtState::SynSent => "syn_sent",
            CtState::SynRecv => "syn_recv",
            CtState::Established => "established",
            CtState::Closing => "closing",
            CtState::Open => "open",
        })
    }
}

/// One tracked connection of `ct list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtEntry {
    pub proto: Proto,
    /// The connection as the client sent it: client → VIP (or node) port.
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The reply direction: from the endpoint (`reply_src`) to the client,
    /// or to the switch address the client was translated to for hairpin
    /// and NodePort traffic (`reply_dst`).
    pub reply_src: SocketAddr,
    pub reply_dst: SocketAddr,
    pub service: ServiceKey,
    pub state: CtState,
    /// Seconds until the entry expires unless traffic refreshes it.
    pub expires_secs: u64,
}

/// `ct stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CtStats {
    /// Live connections.
    pub entries: u64,
    /// Connections not established: `syn_sent`, `syn_recv`, `closing`
    /// ones that never were (a SYN refused by a RST), and datagram flows
    /// never answered.
    pub embryonic: u64,
    /// Most connections the table holds (`vswitchd --ct-max`).
    pub limit: u64,
    /// Connections created since start.
    pub created: u64,
    /// Embryonic connections evicted to make room.
    pub evicted: u64,
    /// New connections refused because the table was full
    /// (`conntrack_full` drops).
    pub full: u64,
    /// Connections removed because they timed out or closed.
    pub expired: u64,
    /// ClientIP affinity entries.
    pub affinity: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_key_round_trips_as_a_string() {
        for s in ["10.96.0.10:80/tcp", "[fd00::10]:53/udp", "10.0.0.1:9/sctp"] {
            let k: ServiceKey = s.parse().unwrap();
            assert_eq!(k.to_string(), s);
            let j = serde_json::to_string(&k).unwrap();
            assert_eq!(j, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<ServiceKey>(&j).unwrap(), k);
        }
        assert_eq!(
            "10.96.0.10:80/TCP".parse::<ServiceKey>().unwrap().proto,
            Proto::Tcp
        );
    }

    #[test]
    fn bad_service_keys_are_refused_with_the_reason() {
        for (s, why) in [
            ("10.96.0.10:80", "VIP:PORT/PROTO"),
            ("10.96.0.10/tcp", "not IP:PORT"),
            ("10.96.0.10:0/tcp", "port 0"),
            ("10.96.0.10:70000/tcp", "not IP:PORT"),
            ("10.96.0.10:80/icmp", "tcp, udp or sctp"),
            ("0.0.0.0:80/tcp", "not a unicast"),
            ("224.0.0.1:80/tcp", "not a unicast"),
            ("255.255.255.255:80/tcp", "not a unicast"),
            ("nope:80/tcp", "not IP:PORT"),
        ] {
            let e = s.parse::<ServiceKey>().unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
    }
}
