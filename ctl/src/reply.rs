//! The payloads of replies: what `show`, `port list`, `stats`, `fdb show`,
//! `addr list`, `route list` and `neigh list` return (the Service and
//! conntrack payloads are in [`crate::service`]). Part of the protocol:
//! [`crate::proto::Reply`] carries them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::mac::MacAddr;
use crate::proto::{Encap, PortSpec, PortType, XdpMode};

/// One of the switch's router addresses (`addr list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddrInfo {
    pub addr: IpNet,
    pub mac: MacAddr,
    /// The program that added it; none for one added by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
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
    /// Static routes: the program that added it; none for one added by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
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
    /// `--tap-io`: `io_uring` or `syscalls` (what TAP ports open with).
    #[serde(default)]
    pub tap_io: String,
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
    /// TAP only, while up: how frames move, `io_uring` (a submission per
    /// burst) or `syscalls` (a read/write per frame).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<String>,
    /// TAP only: checksum and segmentation offloads are on (GSO frames
    /// cross the switch whole).
    #[serde(default)]
    pub offload: bool,
    /// While up: the kernel completes partial TCP/UDP checksums of frames
    /// sent on the port (AF_XDP: TX metadata on a copy-mode socket; TAP:
    /// offloads on); else the switch completes them itself.
    #[serde(default)]
    pub tx_checksum: bool,
    pub state: PortState,
    /// Why the port is down, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Index of the worker that polls this port (its first queue).
    pub worker: usize,
    /// The worker of each queue, in queue order (one entry per queue).
    #[serde(default)]
    pub queues: Vec<usize>,
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
    /// Every drop reason (snake_case name) with its count, zeros included;
    /// AF_XDP ports add the kernel's drops on the way to the switch
    /// ([`XSK_RX_DROPPED`], [`XSK_RX_RING_FULL`]), TAP ports theirs
    /// ([`TAP_TX_DROPPED`]).
    pub drops: BTreeMap<String, u64>,
    /// AF_XDP ports: the kernel's own counters of the socket (frames the
    /// kernel could not hand to the switch, descriptors it rejected),
    /// summed over the port's sockets (one per queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp: Option<XdpStats>,
    /// Ports with several queues: packets by each worker that serves one
    /// (received from the port's queues on it, sent by it), in order of the
    /// queues. Empty for a one-queue port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<PortWorkerStats>,
}

/// One worker's share of a multi-queue port's packets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortWorkerStats {
    pub worker: usize,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// Drops of an AF_XDP port's frames by the kernel, before the switch saw
/// them, for want of a free frame on the fill ring (or too large):
/// `XDP_STATISTICS`' `rx_dropped`.
pub const XSK_RX_DROPPED: &str = "xsk_rx_dropped";
/// Drops of an AF_XDP port's frames by the kernel because the socket's RX
/// ring was full (the switch fell behind): `rx_ring_full`.
pub const XSK_RX_RING_FULL: &str = "xsk_rx_ring_full";

/// Drops of a TAP port's frames by the kernel before the switch read them,
/// mostly because the device's queue was full (the switch fell behind): the
/// device's `tx_dropped`, counted from when the switch opened it.
pub const TAP_TX_DROPPED: &str = "tap_tx_dropped";

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
