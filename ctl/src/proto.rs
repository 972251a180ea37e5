//! Request and response types of the control protocol.
//!
//! Wire format: one JSON object per line in each direction.
//!
//! ```text
//! → {"version":1,"command":{"op":"port_add","args":{"name":"pod1","type":"afxdp"}}}
//! ← {"version":1,"ok":true,"reply":{"kind":"done"}}
//! ← {"version":1,"ok":false,"error":"port 'pod1' already exists"}
//! ```
//!
//! The enums here are the public interface of the daemon: adding a command
//! means adding a variant, and serde keeps both ends honest.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::mac::MacAddr;
use crate::service::{CtEntry, CtStats, ServiceInfo, ServiceKey, ServiceSpec};

/// Version of this protocol. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// One request from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub version: u32,
    pub command: Command,
}

impl Request {
    /// A request in the current protocol version.
    pub fn new(command: Command) -> Self {
        Request {
            version: PROTOCOL_VERSION,
            command,
        }
    }
}

/// Every command the daemon understands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "op",
    content = "args",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum Command {
    /// Overview: daemon, workers, ports, FDB summary.
    Show,
    PortAdd(PortSpec),
    /// Removes a port; with `if_exists`, a missing port is not an error.
    PortDel {
        name: String,
        #[serde(default, skip_serializing_if = "is_false")]
        if_exists: bool,
    },
    PortList,
    FdbShow,
    FdbAdd {
        mac: MacAddr,
        port: String,
    },
    FdbDel {
        mac: MacAddr,
    },
    FdbFlush,
    /// Counters of one port, or of every port when `port` is `None`.
    Stats {
        #[serde(default)]
        port: Option<String>,
    },
    /// Gives the switch a router address (`10.244.1.1/24`): it answers ARP
    /// and ping for it, and the subnet becomes a connected route into the
    /// pod bridge.
    AddrAdd {
        addr: IpNet,
        #[serde(default, skip_serializing_if = "is_false")]
        may_exist: bool,
    },
    AddrDel {
        addr: IpNet,
        #[serde(default, skip_serializing_if = "is_false")]
        if_exists: bool,
    },
    AddrList,
    RouteAdd(RouteSpec),
    RouteDel {
        prefix: IpNet,
        #[serde(default, skip_serializing_if = "is_false")]
        if_exists: bool,
    },
    RouteList,
    NeighList,
    /// Adds a Service port (`VIP:PORT/PROTO`) with its endpoints.
    ServiceAdd(ServiceSpec),
    /// Replaces the endpoints of a Service: `backends` are ready,
    /// `terminating` keep their connections but get new ones only while no
    /// endpoint is ready.
    ServiceBackends {
        service: ServiceKey,
        #[serde(default)]
        backends: Vec<SocketAddr>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        terminating: Vec<SocketAddr>,
    },
    ServiceDel {
        service: ServiceKey,
        #[serde(default, skip_serializing_if = "is_false")]
        if_exists: bool,
    },
    ServiceList,
    /// Tracked connections.
    CtList,
    /// Forgets every tracked connection and affinity entry.
    CtFlush,
    CtStats,
    /// Applies Service commands (`service_add`, `service_backends`,
    /// `service_del`) in order, all or nothing, with one state-file write
    /// and one snapshot: how a controller applies thousands at once.
    Batch {
        commands: Vec<Command>,
    },
}

/// A static route as a client asks for it and the state file stores it.
/// Exactly one of `via` and `dev` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Destination prefix; host bits must be zero.
    pub prefix: IpNet,
    /// Next hop, inside a connected subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<IpAddr>,
    /// Output port: the destination is on the link of that port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    /// Encapsulation towards `via` (VXLAN across nodes without a shared L2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encap: Option<Encap>,
    /// Request option, never stored: the same route already existing is not an error.
    #[serde(default, skip_serializing_if = "is_false")]
    pub may_exist: bool,
}

/// Tunnel encapsulation of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Encap {
    /// VXLAN (RFC 7348) over UDP 4789 with this VNI (24 bits).
    Vxlan { vni: u32 },
}

impl fmt::Display for Encap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Encap::Vxlan { vni } => write!(f, "vxlan vni {vni}"),
        }
    }
}

/// Kind of port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortType {
    /// An existing interface (typically a veth host end) attached through AF_XDP.
    #[default]
    Afxdp,
    /// A TAP device created by the switch.
    Tap,
}

/// XDP attach mode requested for an AF_XDP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XdpMode {
    /// Native (driver) XDP if the driver supports it, else generic.
    #[default]
    Auto,
    /// Native (driver) XDP only.
    Native,
    /// Generic (skb) XDP only.
    Generic,
    /// Native XDP with zero-copy AF_XDP only.
    Zerocopy,
}

/// What a client asks for when it adds a port. This is also what the state
/// file stores, so a restarted daemon recreates exactly this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    pub name: String,
    #[serde(rename = "type", default)]
    pub port_type: PortType,
    #[serde(default)]
    pub mode: XdpMode,
    /// For TAP ports: the MAC of the device (the pod's MAC when moved into a pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// For TAP ports: network namespace to move the device into, either a
    /// name under /run/netns or a path such as /proc/PID/ns/net.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// For TAP ports moved into a namespace: the device's name there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    /// The pod's addresses behind this port. The switch installs a host
    /// route to each and enforces port security: frames whose source MAC
    /// (needs `mac`) or source IP is not the pod's are dropped as
    /// `spoofed_source`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpAddr>,
    /// The node's uplink NIC: only pod, switch and Service traffic is taken
    /// from it (an XDP program passes the rest to the kernel). Routed, not
    /// part of the pod bridge.
    #[serde(default, skip_serializing_if = "is_false")]
    pub uplink: bool,
    /// A TAP in the node's own namespace: the kernel's leg into the pod
    /// network. Routed, not part of the pod bridge.
    #[serde(default, skip_serializing_if = "is_false")]
    pub host: bool,
    /// Request option, never stored: a port of that name with exactly these
    /// settings already existing is not an error (idempotent add).
    #[serde(default, skip_serializing_if = "is_false")]
    pub may_exist: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl PortSpec {
    /// An AF_XDP port on interface `name` with default settings.
    pub fn afxdp(name: &str) -> Self {
        PortSpec {
            name: name.to_string(),
            port_type: PortType::Afxdp,
            mode: XdpMode::Auto,
            mac: None,
            netns: None,
            ifname: None,
            ips: Vec::new(),
            uplink: false,
            host: false,
            may_exist: false,
        }
    }
}

/// One response to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub version: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Reply>,
}

impl Response {
    /// A successful response.
    pub fn ok(reply: Reply) -> Self {
        Response {
            version: PROTOCOL_VERSION,
            ok: true,
            error: None,
            reply: Some(reply),
        }
    }

    /// A failed response with a one-line message.
    pub fn error(msg: impl fmt::Display) -> Self {
        Response {
            version: PROTOCOL_VERSION,
            ok: false,
            error: Some(msg.to_string()),
            reply: None,
        }
    }
}

/// The payload of a successful response. `vswitchctl -o json` prints the
/// `data` member, so these shapes are the stable JSON output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Reply {
    /// The command changed (or confirmed) state; nothing to print.
    Done,
    Show(ShowReply),
    Ports(Vec<PortInfo>),
    Fdb(Vec<FdbEntry>),
    Stats(Vec<PortStats>),
    Addrs(Vec<AddrInfo>),
    Routes(Vec<RouteInfo>),
    Neighbours(Vec<NeighInfo>),
    Services(Vec<ServiceInfo>),
    Conntrack(Vec<CtEntry>),
    CtStats(CtStats),
}

/// One of the switch's router addresses (`addr list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddrInfo {
    pub addr: IpNet,
    pub mac: MacAddr,
}

/// Where a route came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteOrigin {
    /// The subnet of a router address (`addr add`).
    Connected,
    /// The switch's own address (answered locally).
    Local,
    /// A pod's address (`port add --ip`).
    Pod,
    /// Added by the switch for an uplink or host port.
    Port,
    /// `route add`.
    Static,
}

impl fmt::Display for RouteOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouteOrigin::Connected => "connected",
            RouteOrigin::Local => "local",
            RouteOrigin::Pod => "pod",
            RouteOrigin::Port => "port",
            RouteOrigin::Static => "static",
        })
    }
}

/// One route of `route list`: every route the data plane uses, static or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteInfo {
    pub prefix: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<IpAddr>,
    /// Output port, or `bridge` for the pod bridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encap: Option<Encap>,
    pub origin: RouteOrigin,
}

/// State of a neighbour entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NeighState {
    /// Learned from ARP/ND and confirmed recently.
    Reachable,
    /// Declared by configuration (a pod's `--ip` with `--mac`, a host port).
    Permanent,
}

impl fmt::Display for NeighState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NeighState::Reachable => "reachable",
            NeighState::Permanent => "permanent",
        })
    }
}

/// One entry of `neigh list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighInfo {
    pub ip: IpAddr,
    pub mac: MacAddr,
    pub port: String,
    pub state: NeighState,
    /// Seconds since the entry was last confirmed (learned entries only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<u64>,
}

/// `show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShowReply {
    pub daemon: DaemonInfo,
    pub workers: Vec<WorkerInfo>,
    pub ports: Vec<PortInfo>,
    pub fdb: FdbSummary,
    /// What the state file held that the switch could not apply at start
    /// (kept in the file, not in use).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_applied: Vec<String>,
    /// Set when the state file could not be parsed at start: where it was
    /// moved and what was used instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_recovered: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// vswitchd's package version.
    pub version: String,
    pub protocol: u32,
    pub pid: u32,
    pub uptime_secs: u64,
    pub socket: String,
    pub state_file: String,
    /// `busy` or `adaptive`.
    pub poll: String,
    pub mac_aging_secs: u64,
    pub mac_limit: u32,
    /// The MAC the switch routes with (gateway MAC of every router address).
    pub router_mac: MacAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub id: usize,
    /// The core the worker is pinned to.
    pub core: usize,
    /// Names of the ports this worker polls.
    pub ports: Vec<String>,
    pub frames: FramePoolInfo,
    /// Loop iterations since start (shows the worker is alive).
    pub loops: u64,
}

/// Accounting of one worker's packet buffers (its UMEM). While the worker
/// runs, `free + in_rings + in_flight == total`; a leak or a double use
/// shows up as a mismatch or as non-zero `errors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FramePoolInfo {
    pub total: u64,
    /// In the worker's free list.
    pub free: u64,
    /// Lent to the kernel: fill rings, TX rings not yet completed.
    pub in_rings: u64,
    /// Held by the worker or in transit to another worker.
    pub in_flight: u64,
    /// Frames returned twice or descriptors the kernel handed back that
    /// were not lent out. Always zero unless something is badly wrong.
    pub errors: u64,
    /// Whether AF_XDP ports can use this pool as their UMEM (false: AF_XDP
    /// is unavailable on this kernel or to this process).
    pub umem: bool,
}

/// Operational state of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortState {
    Up,
    Down,
}

impl fmt::Display for PortState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortState::Up => "up",
            PortState::Down => "down",
        })
    }
}

impl fmt::Display for PortType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortType::Afxdp => "afxdp",
            PortType::Tap => "tap",
        })
    }
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Auto => "auto",
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
            XdpMode::Zerocopy => "zerocopy",
        })
    }
}

/// One port as `port list` and `show` report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortInfo {
    pub name: String,
    pub id: u16,
    #[serde(rename = "type")]
    pub port_type: PortType,
    /// The mode that was asked for.
    pub requested_mode: XdpMode,
    /// The mode in use: `native`, `generic` (AF_XDP), `tap`, or `none` while down.
    pub mode: String,
    /// AF_XDP only: whether the socket runs zero-copy (false: copy mode).
    pub zero_copy: bool,
    pub state: PortState,
    /// Why the port is down, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Index of the worker that polls this port.
    pub worker: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    /// MAC addresses currently learned on this port.
    pub learned_macs: u32,
    /// The pod's addresses (port security and host routes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpAddr>,
    /// `pod`, `uplink` or `host`.
    pub role: PortRole,
}

/// What a port is to the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortRole {
    /// A member of the pod bridge.
    Pod,
    /// The node's NIC (routed).
    Uplink,
    /// The node kernel's leg into the pod network (routed).
    Host,
}

impl fmt::Display for PortRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortRole::Pod => "pod",
            PortRole::Uplink => "uplink",
            PortRole::Host => "host",
        })
    }
}

impl PortSpec {
    /// The role these settings give the port.
    pub fn role(&self) -> PortRole {
        if self.uplink {
            PortRole::Uplink
        } else if self.host {
            PortRole::Host
        } else {
            PortRole::Pod
        }
    }
}

/// Summary of the forwarding database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbSummary {
    pub static_entries: u32,
    pub learned_entries: u32,
}

/// How an FDB entry came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FdbKind {
    Static,
    Learned,
}

impl fmt::Display for FdbKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FdbKind::Static => "static",
            FdbKind::Learned => "learned",
        })
    }
}

/// One entry of `fdb show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FdbEntry {
    pub mac: MacAddr,
    pub port: String,
    pub kind: FdbKind,
    /// Seconds since a frame from this MAC was last seen (learned entries only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<u64>,
}

/// Counters of one port, summed over workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStats {
    pub name: String,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Every drop reason (snake_case name) with its count, zeros included.
    pub drops: BTreeMap<String, u64>,
    /// AF_XDP ports: the kernel's own counters of the socket (frames the
    /// kernel could not hand to the switch, descriptors it rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp: Option<XdpStats>,
}

/// The kernel's statistics of an AF_XDP socket (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdpStats {
    /// Dropped by the kernel for other reasons (e.g. frame too large).
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    /// Dropped because the RX ring was full (the switch fell behind).
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty: u64,
    /// Times the kernel found the TX ring empty when woken.
    pub tx_ring_empty: u64,
}

impl XdpStats {
    /// The counters with their names, in a fixed order.
    pub fn named(&self) -> [(&'static str, u64); 6] {
        [
            ("rx_dropped", self.rx_dropped),
            ("rx_invalid_descs", self.rx_invalid_descs),
            ("tx_invalid_descs", self.tx_invalid_descs),
            ("rx_ring_full", self.rx_ring_full),
            ("rx_fill_ring_empty", self.rx_fill_ring_empty),
            ("tx_ring_empty", self.tx_ring_empty),
        ]
    }
}

impl PortStats {
    /// Sum of all drop counters.
    pub fn drops_total(&self) -> u64 {
        self.drops.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_shape() {
        let r = Request::new(Command::PortDel {
            name: "p1".into(),
            if_exists: false,
        });
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(
            j,
            r#"{"version":1,"command":{"op":"port_del","args":{"name":"p1"}}}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&j).unwrap(), r);
        let show = serde_json::to_string(&Request::new(Command::Show)).unwrap();
        assert_eq!(show, r#"{"version":1,"command":{"op":"show"}}"#);
    }

    #[test]
    fn port_spec_defaults() {
        let j = r#"{"version":1,"command":{"op":"port_add","args":{"name":"p1"}}}"#;
        let r: Request = serde_json::from_str(j).unwrap();
        assert_eq!(r.command, Command::PortAdd(PortSpec::afxdp("p1")));
    }

    #[test]
    fn rejects_unknown_and_malformed() {
        for bad in [
            r#"{"version":1,"command":{"op":"explode"}}"#,
            r#"{"version":1,"command":{"op":"port_add","args":{"name":"p","bogus":1}}}"#,
            r#"{"version":1,"command":{"op":"fdb_add","args":{"mac":"nope","port":"p"}}}"#,
            r#"{"version":1}"#,
            r#"not json"#,
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn response_round_trip() {
        let r = Response::error("port 'x' does not exist");
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(
            j,
            r#"{"version":1,"ok":false,"error":"port 'x' does not exist"}"#
        );
        let ok = serde_json::to_string(&Response::ok(Reply::Done)).unwrap();
        assert_eq!(ok, r#"{"version":1,"ok":true,"reply":{"kind":"done"}}"#);
    }
}
