//! The immutable configuration view that workers forward with.
//!
//! The controller builds a new [`Snapshot`] for every change and publishes it
//! with [`arc_swap::ArcSwap`]. A worker loads it once per batch: a batch sees
//! one version, never a mix, and a worker never waits for the controller.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::l2::fdb::FdbView;
use crate::l3::neigh::NeighView;
use crate::l3::table::RouteTable;
use crate::services::table::ServiceTable;
use crate::{MacKey, PortId};

/// What a port is to the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortRole {
    /// A member of the pod bridge (flooded to, MACs learned).
    #[default]
    Pod,
    /// The node's NIC: routed, never flooded to.
    Uplink,
    /// The node kernel's leg into the pod network: routed, never flooded to;
    /// the switch answers every ARP request from it (proxy ARP).
    Host,
}

/// Port security of a pod port: what the pod behind it may send as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortGuard {
    /// The only source MAC allowed, if declared.
    pub mac: Option<MacKey>,
    /// The only IPv4 source addresses allowed.
    pub v4: Vec<u32>,
    /// The IPv6 source addresses allowed besides link-local ones.
    pub v6: Vec<u128>,
}

/// Default MTU of a port whose interface MTU is not known.
pub const DEFAULT_MTU: u16 = 1500;

/// A port as the data plane sees it.
#[derive(Debug, Clone)]
pub struct PortEntry {
    pub id: PortId,
    /// The workers that own (poll and transmit on) the port's queues, each
    /// once, in queue order; never empty. A worker without a queue of the
    /// port hands frames for it to one of them ([`PortEntry::tx_worker`]).
    pub workers: Vec<usize>,
    /// False while the interface is gone or failed; frames to it are dropped.
    pub up: bool,
    /// The port has reached its learned-MAC limit: frames from new source
    /// MACs are dropped.
    pub learn_full: bool,
    pub role: PortRole,
    /// Largest IP packet the port carries (routed packets above it get
    /// ICMP "fragmentation needed").
    pub mtu: u16,
    /// Port security, for pod ports declared with addresses.
    pub guard: Option<Arc<PortGuard>>,
    /// Frames from the port may carry partial TCP/UDP checksums (a veth
    /// peer with checksum offload): the pipeline's `csum` stage marks them.
    pub finish_csum: bool,
    /// The port takes GSO and big frames whole (a TAP with offloads);
    /// toward other ports they are cut into segments.
    pub gso: bool,
    /// The port takes frames whose checksum is partial and has it
    /// completed (a TAP with offloads, an AF_XDP socket with TX metadata
    /// in copy mode); toward other ports the switch completes it.
    pub tx_csum: bool,
}

impl PortEntry {
    /// An up pod port with default settings.
    pub fn new(id: PortId, worker: usize) -> Self {
        PortEntry {
            id,
            workers: vec![worker],
            up: true,
            learn_full: false,
            role: PortRole::Pod,
            mtu: DEFAULT_MTU,
            guard: None,
            finish_csum: false,
            gso: false,
            tx_csum: false,
        }
    }

    /// The worker that transmits what worker `from` sends to this port:
    /// `from` itself when it owns a queue of the port, else one owner,
    /// always the same for a given `from` (so the frames of a flow stay in
    /// order). `None` if the port has no owner (never in a snapshot the
    /// controller builds).
    #[inline]
    pub fn tx_worker(&self, from: usize) -> Option<usize> {
        if self.workers.contains(&from) {
            return Some(from);
        }
        self.workers.get(from % self.workers.len().max(1)).copied()
    }
}

/// The router's configuration as the data plane sees it.
#[derive(Debug, Clone, Default)]
pub struct L3Config {
    pub router_mac: MacKey,
    pub routes: RouteTable,
    /// The switch's IPv4 addresses with their prefix lengths.
    pub addrs4: Vec<(u32, u8)>,
    /// The switch's IPv6 addresses with their prefix lengths.
    pub addrs6: Vec<(u128, u8)>,
    /// The switch's IPv6 link-local address (from the router MAC): the
    /// source of its neighbour solicitations.
    pub link_local: u128,
    /// Smallest MTU of the pod ports (the bridge as one link).
    pub bridge_mtu: u16,
    /// The node's IPv4 address on the uplink: source of VXLAN packets.
    pub vtep_src: Option<u32>,
    /// The node's IPv4 addresses on the uplink: VXLAN is taken there.
    pub vteps: Vec<u32>,
    /// VNIs the switch decapsulates (those of its VXLAN routes).
    pub vnis: Vec<u32>,
}

impl L3Config {
    /// False while there is nothing to route: frames then skip the L3
    /// stages entirely, and the switch is a plain L2 bridge.
    #[inline]
    pub fn enabled(&self) -> bool {
        !self.routes.is_empty()
    }

    /// The switch address to speak from towards `peer`: the one whose subnet
    /// holds `peer`, else the first one.
    #[inline]
    pub fn source_for(&self, peer: u32) -> Option<u32> {
        self.addrs4
            .iter()
            .find(|(a, len)| {
                use crate::l3::table::LpmKey;
                a.masked(*len) == peer.masked(*len)
            })
            .or(self.addrs4.first())
            .map(|(a, _)| *a)
    }

    /// The IPv6 address to speak from towards `peer`.
    #[inline]
    pub fn source_for6(&self, peer: u128) -> Option<u128> {
        use crate::l3::table::LpmKey;
        self.addrs6
            .iter()
            .find(|(a, len)| a.masked(*len) == peer.masked(*len))
            .or(self.addrs6.first())
            .map(|(a, _)| *a)
    }

    /// The switch address in the subnet of `peer`, if any.
    #[inline]
    pub fn on_subnet(&self, peer: u32) -> Option<u32> {
        use crate::l3::table::LpmKey;
        self.addrs4
            .iter()
            .find(|(a, len)| a.masked(*len) == peer.masked(*len))
            .map(|(a, _)| *a)
    }
}

/// Everything a worker needs to forward, as of one configuration version.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub generation: u64,
    /// Indexed by port id.
    pub ports: Vec<Option<PortEntry>>,
    /// Pod ports that are up, in id order: flood targets.
    pub flood: Vec<PortId>,
    pub fdb: FdbView,
    pub l3: Arc<L3Config>,
    pub neigh: Arc<NeighView>,
    pub services: Arc<ServiceTable>,
}

impl Snapshot {
    /// The entry of port `id`, if it exists.
    #[inline]
    pub fn port(&self, id: PortId) -> Option<&PortEntry> {
        self.ports.get(usize::from(id)).and_then(Option::as_ref)
    }

    /// Builds a snapshot from port entries (any order) and an FDB view.
    pub fn build(generation: u64, entries: Vec<PortEntry>, fdb: FdbView) -> Self {
        let size = entries
            .iter()
            .map(|e| usize::from(e.id) + 1)
            .max()
            .unwrap_or(0);
        let mut ports = vec![None; size];
        for e in entries {
            let id = usize::from(e.id);
            ports[id] = Some(e);
        }
        let flood = ports
            .iter()
            .flatten()
            .filter(|p| p.up && p.role == PortRole::Pod)
            .map(|p| p.id)
            .collect();
        Snapshot {
            generation,
            ports,
            flood,
            fdb,
            l3: Arc::default(),
            neigh: Arc::default(),
            services: Arc::default(),
        }
    }
}

/// Where the controller publishes and workers load snapshots.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

/// A new shared handle holding an empty snapshot.
pub fn shared(snapshot: Snapshot) -> SharedSnapshot {
    Arc::new(ArcSwap::from_pointee(snapshot))
}
