//! Request and response types of the control protocol.
//!
//! Wire format: one JSON object per line in each direction.
//!
//! ```text
//! → {"version":3,"command":{"op":"port_add","args":{"name":"pod1","type":"afxdp"}}}
//! ← {"version":3,"ok":true,"reply":{"kind":"done"}}
//! ← {"version":3,"ok":false,"error":"port 'pod1' already exists"}
//! ```
//!
//! The enums here are the public interface of the daemon: adding a command
//! means adding a variant, and serde keeps both ends honest.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::mac::MacAddr;
use crate::service::{CtEntry, CtStats, ServiceInfo, ServiceKey, ServiceSpec};
use crate::trace::{TraceFrame, TraceReport, WatchData, WatchSpec};

/// Version of this protocol. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 3;

/// Most `ct list` entries in one reply: a reply is built whole in the
/// daemon's memory, a page of this size is ~3 MB of JSON.
pub const CT_PAGE_MAX: u32 = 10_000;
/// Entries in a `ct list` page when the request names no limit.
pub const CT_PAGE_DEFAULT: u32 = CT_PAGE_MAX;

/// One page of tracked connections.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CtPage {
    pub entries: Vec<CtEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

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
        /// The program that adds it (see [`RouteSpec::owner`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
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
    /// Tracked connections, one page: the first `limit` (at most
    /// [`CT_PAGE_MAX`], [`CT_PAGE_DEFAULT`] when absent) after the cursor
    /// `after` (the `next` of the page before). Answered with
    /// [`Reply::CtPage`]; [`crate::Client::conntrack`] pages through all.
    CtList {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Forgets every tracked connection and affinity entry.
    CtFlush,
    CtStats,
    /// Applies Service commands (`service_add`, `service_backends`,
    /// `service_del`) in order, all or nothing, with one state-file write
    /// and one snapshot: how a controller applies thousands at once.
    Batch {
        commands: Vec<Command>,
    },
    /// Runs a frame through the current configuration as if it had arrived
    /// on `port`, sending nothing, and reports each stage's decision.
    TraceInject {
        port: String,
        frame: TraceFrame,
    },
    /// Starts a capture or live trace on a port.
    WatchStart(WatchSpec),
    /// Takes what a watch recorded since the last read.
    WatchRead {
        id: u64,
    },
    /// Stops a watch (what it recorded and was not read is discarded).
    WatchStop {
        id: u64,
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
    /// The program that made the route (`vswitch-agent`), so it finds
    /// what it owns; none for routes made by hand. Stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
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
    /// For TAP ports: checksum and segmentation offloads (a virtio-net
    /// header on every frame, GSO frames of up to 64 KiB). `None` is the
    /// default, on; `Some(false)` turns them off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload: Option<bool>,
    /// Queues of the port, each served by its own socket (AF_XDP: RX
    /// queues 0..N-1 of the interface; TAP: a multi-queue device), spread
    /// over the workers. 1 (the default) is stored as absent.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub queues: u16,
    /// Request option, never stored: a port of that name with exactly these
    /// settings already existing is not an error (idempotent add).
    #[serde(default, skip_serializing_if = "is_false")]
    pub may_exist: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn one() -> u16 {
    1
}

fn is_one(n: &u16) -> bool {
    *n == 1
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
            offload: None,
            queues: 1,
            may_exist: false,
        }
    }

    /// True for a TAP port whose offloads are on (the default).
    pub fn offloads(&self) -> bool {
        self.port_type == PortType::Tap && self.offload != Some(false)
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
    /// One page of `ct list`; `next` is the cursor of the next page, absent
    /// on the last. (`vswitchctl` joins the pages into [`Reply::Conntrack`].)
    CtPage(CtPage),
    CtStats(CtStats),
    /// What the switch did with an injected frame (`trace inject`).
    Trace(TraceReport),
    /// A capture or live trace started; read it with `watch_read`.
    WatchStarted {
        id: u64,
    },
    /// What a watch recorded since the last read.
    WatchData(WatchData),
}

pub use crate::reply::*;

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
            r#"{"version":3,"command":{"op":"port_del","args":{"name":"p1"}}}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&j).unwrap(), r);
        let show = serde_json::to_string(&Request::new(Command::Show)).unwrap();
        assert_eq!(show, r#"{"version":3,"command":{"op":"show"}}"#);
    }

    #[test]
    fn ct_list_pages() {
        // No cursor, no limit: the first page.
        let r: Request =
            serde_json::from_str(r#"{"version":3,"command":{"op":"ct_list","args":{}}}"#).unwrap();
        assert_eq!(
            r.command,
            Command::CtList {
                after: None,
                limit: None
            }
        );
        let j = r#"{"version":3,"command":{"op":"ct_list","args":{"after":"00ff","limit":5}}}"#;
        let r: Request = serde_json::from_str(j).unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), j);
        let last = serde_json::to_string(&Reply::CtPage(CtPage::default())).unwrap();
        assert_eq!(last, r#"{"kind":"ct_page","data":{"entries":[]}}"#);
    }

    #[test]
    fn port_spec_defaults() {
        let j = r#"{"version":3,"command":{"op":"port_add","args":{"name":"p1"}}}"#;
        let r: Request = serde_json::from_str(j).unwrap();
        assert_eq!(r.command, Command::PortAdd(PortSpec::afxdp("p1")));
    }

    #[test]
    fn rejects_unknown_and_malformed() {
        for bad in [
            r#"{"version":3,"command":{"op":"explode"}}"#,
            r#"{"version":3,"command":{"op":"port_add","args":{"name":"p","bogus":1}}}"#,
            r#"{"version":3,"command":{"op":"fdb_add","args":{"mac":"nope","port":"p"}}}"#,
            r#"{"version":3}"#,
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
            r#"{"version":3,"ok":false,"error":"port 'x' does not exist"}"#
        );
        let ok = serde_json::to_string(&Response::ok(Reply::Done)).unwrap();
        assert_eq!(ok, r#"{"version":3,"ok":true,"reply":{"kind":"done"}}"#);
    }
}
