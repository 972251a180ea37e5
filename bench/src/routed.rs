//! The routed scenarios: a cluster's routing table ([`cluster_routes`]),
//! frames between many destinations ([`CyclingSource`]) and the rig that
//! routes them into sinks ([`routed_source_sinks`]).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use fastpath::l3::neigh::{NeighEvent, NeighTable, NeighView};
use fastpath::l3::table::{Link, NextHop, RouteTable};
use fastpath::pool::FramePool;
use fastpath::port::{Port, PortGone, PortMode, RxFrame};
use fastpath::snapshot::{self, L3Config, PortEntry, PortRole, Snapshot};
use fastpath::tx::TxFrame;
use fastpath::{PortId, mac_key};

use super::{ETH_HEADER, FrameSink, IPV4_HEADER, MAC_A, Rig, ipv4_checksum, static_fdb, udp_frame};

/// The router's MAC in the routed scenarios.
pub const ROUTER_MAC: [u8; 6] = [0x02, 0xaa, 0x00, 0x00, 0x00, 0x01];
/// Host A's address in the routed scenarios (a pod on the node's bridge).
pub const IP_A: [u8; 4] = [10, 244, 0, 10];
/// The port of the source pod (host A) in the routed scenarios.
pub const ROUTED_SOURCE: PortId = 0;
/// The pod ports the routed scenarios deliver to.
pub const ROUTED_PODS: [PortId; 4] = [1, 2, 3, 4];
/// The uplink port of the routed scenarios.
pub const ROUTED_UPLINK: PortId = 5;

/// [`udp_frame`] between the addresses `src_ip` and `dst_ip` (TTL 64, DF,
/// valid header checksum).
pub fn udp_frame_between(
    dst: [u8; 6],
    src: [u8; 6],
    src_ip: [u8; 4],
    dst_ip: [u8; 4],
    len: usize,
) -> Vec<u8> {
    let mut f = udp_frame(dst, src, len);
    let ip = &mut f[ETH_HEADER..ETH_HEADER + IPV4_HEADER];
    ip[12..16].copy_from_slice(&src_ip);
    ip[16..20].copy_from_slice(&dst_ip);
    ip[10..12].copy_from_slice(&[0, 0]);
    let csum = ipv4_checksum(ip);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    f
}

/// A [`FrameSource`] that goes round a set of template frames: each
/// received frame is a fresh copy of the next template, so that traffic
/// spreads over many destinations (routes, neighbours, output ports).
pub struct CyclingSource {
    templates: Vec<Vec<u8>>,
    next: usize,
}

impl CyclingSource {
    /// A source of copies of `templates`, in order, round and round.
    ///
    /// # Panics
    /// If `templates` is empty.
    pub fn new(templates: Vec<Vec<u8>>) -> Self {
        assert!(!templates.is_empty(), "a source needs at least one frame");
        CyclingSource { templates, next: 0 }
    }
}

impl Port for CyclingSource {
    fn rx_burst(&mut self, pool: &mut FramePool, out: &mut [RxFrame]) -> Result<usize, PortGone> {
        let mut n = 0;
        for slot in out.iter_mut() {
            let Some(frame) = pool.write_frame(&self.templates[self.next]) else {
                break;
            };
            self.next = (self.next + 1) % self.templates.len();
            *slot = frame.into();
            n += 1;
        }
        Ok(n)
    }

    fn tx_burst(&mut self, pool: &mut FramePool, frames: &[TxFrame]) -> Result<usize, PortGone> {
        FrameSink.tx_burst(pool, frames)
    }

    fn mode(&self) -> PortMode {
        PortMode {
            mode: "memory",
            zero_copy: false,
            io: None,
            tx_csum: false,
        }
    }
}

/// A node's router configuration in a large cluster, and destinations
/// spread over it.
pub struct ClusterRoutes {
    /// Router MAC, addresses and routes.
    pub l3: L3Config,
    /// The neighbours the routes need (every next hop resolved).
    pub neigh: NeighView,
    /// Destination addresses, spread over the routes (see [`cluster_routes`]).
    pub destinations: Vec<[u8; 4]>,
}

/// The routing table of a node in a host-gateway cluster, `total` IPv4
/// routes in all (at least 16), with every next hop resolved:
///
/// - the router address 10.244.0.1 (`Local` /32) and its connected
///   subnet 10.244.0.0/24 on the bridge;
/// - a fifth of the rest: /32 routes to this node's pods, configured with
///   their MACs (`Peer`), spread over the pod ports [`ROUTED_PODS`];
/// - the other four fifths: /24 pod CIDRs of the other nodes
///   (10.16.0.0/24 upwards), each via its node's address on the uplink;
/// - three /16s: the node network 192.168.0.0/16 on the uplink, and
///   172.16.0.0/16 and 172.17.0.0/16 via the uplink's gateway;
/// - a default route via the uplink's gateway 192.168.255.254.
///
/// Half of the `destinations` are local pods, 40% hosts in other nodes'
/// CIDRs, 7% in the two /16s behind the gateway, 3% take the default route;
/// within each class they are picked at random (a fixed seed).
///
/// Neighbour entries are dated an hour ahead: nothing answers ARP in a
/// bench, and a refresh request (sent once an entry in use is 30 s old)
/// would be traffic the scenario does not expect.
///
/// # Panics
/// If `total` is below 16 or above 250,000.
pub fn cluster_routes(total: usize, destinations: usize) -> ClusterRoutes {
    assert!(
        (16..=250_000).contains(&total),
        "{total} routes is out of range [16, 250000]"
    );
    const FIXED: usize = 6;
    const GATEWAY: [u8; 4] = [192, 168, 255, 254];
    let v4 = |a: [u8; 4]| IpAddr::V4(Ipv4Addr::from(a));
    let pods = (total - FIXED) / 5;
    let nodes = total - FIXED - pods;
    let pod_ip = |i: usize| [10, 244, 1 + (i / 250) as u8, 2 + (i % 250) as u8];
    let node_cidr = |i: usize| [10, 16 + (i / 256) as u8, (i % 256) as u8, 0];
    let node_ip = |i: usize| [192, 168, (i / 250) as u8, 1 + (i % 250) as u8];

    let mut routes = RouteTable::default();
    let uplink = |gw: Option<[u8; 4]>| NextHop::Resolve {
        link: Link::Port(ROUTED_UPLINK),
        gw: gw.map(v4),
    };
    routes.insert(v4([10, 244, 0, 1]), 32, NextHop::Local);
    let bridge = NextHop::Resolve {
        link: Link::Bridge,
        gw: None,
    };
    routes.insert(v4([10, 244, 0, 0]), 24, bridge);
    for i in 0..pods {
        let port = ROUTED_PODS[i % ROUTED_PODS.len()];
        let mac = [0x02, 0x00, 0x0a, 0x00, (i >> 8) as u8, i as u8];
        routes.insert(
            v4(pod_ip(i)),
            32,
            NextHop::Peer {
                port,
                mac: mac_key(&mac),
            },
        );
    }
    for i in 0..nodes {
        routes.insert(v4(node_cidr(i)), 24, uplink(Some(node_ip(i))));
    }
    routes.insert(v4([192, 168, 0, 0]), 16, uplink(None));
    routes.insert(v4([172, 16, 0, 0]), 16, uplink(Some(GATEWAY)));
    routes.insert(v4([172, 17, 0, 0]), 16, uplink(Some(GATEWAY)));
    routes.insert(v4([0, 0, 0, 0]), 0, uplink(Some(GATEWAY)));
    routes.freeze();
    assert_eq!(routes.len(), total, "route prefixes overlap");

    let mut neighbours = NeighTable::new(300);
    let confirmed = fastpath::clock::now_ms() + 3_600_000;
    for (i, ip) in (0..nodes).map(node_ip).chain([GATEWAY]).enumerate() {
        let mac = [0x02, 0x00, 0x0b, 0x00, (i >> 8) as u8, i as u8];
        let ev = NeighEvent {
            ip: v4(ip),
            mac: mac_key(&mac),
            port: ROUTED_UPLINK,
        };
        neighbours.learn(ev, confirmed);
    }

    // A fixed xorshift sequence, so every run measures the same traffic.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    let destinations = (0..destinations)
        .map(|i| match i % 100 {
            0..50 => pod_ip(rand(pods)),
            50..90 => {
                let mut a = node_cidr(rand(nodes));
                a[3] = 1 + rand(254) as u8;
                a
            }
            90..97 => [172, 16 + rand(2) as u8, rand(256) as u8, rand(256) as u8],
            _ => [8, rand(256) as u8, rand(256) as u8, rand(256) as u8],
        })
        .collect();

    ClusterRoutes {
        l3: L3Config {
            router_mac: mac_key(&ROUTER_MAC),
            routes,
            addrs4: vec![(u32::from_be_bytes([10, 244, 0, 1]), 24)],
            bridge_mtu: snapshot::DEFAULT_MTU,
            ..L3Config::default()
        },
        neigh: (*neighbours.view()).clone(),
        destinations,
    }
}

/// Routed traffic: a [`CyclingSource`] on port [`ROUTED_SOURCE`] (host A,
/// static, so nothing is learnt) sends `frame_len`-byte UDP frames to the
/// router's MAC, one to each of `routes.destinations` in turn; the pod
/// ports [`ROUTED_PODS`] and the uplink [`ROUTED_UPLINK`] are
/// [`FrameSink`]s. Every frame is routed (lookup, TTL decrement with
/// checksum update, MAC rewrite) to exactly one port. Each poll handles one
/// burst.
pub fn routed_source_sinks(routes: &ClusterRoutes, frame_len: usize) -> Rig {
    let ids: Vec<PortId> = [ROUTED_SOURCE]
        .into_iter()
        .chain(ROUTED_PODS)
        .chain([ROUTED_UPLINK])
        .collect();
    let fdb = static_fdb(&[(MAC_A, ROUTED_SOURCE)]);
    let mut rig = Rig::new(&ids, &fdb);
    let entries = ids
        .iter()
        .map(|&id| PortEntry {
            role: if id == ROUTED_UPLINK {
                PortRole::Uplink
            } else {
                PortRole::Pod
            },
            ..PortEntry::new(id, 0)
        })
        .collect();
    let snap = Snapshot {
        l3: Arc::new(routes.l3.clone()),
        neigh: Arc::new(routes.neigh.clone()),
        ..Snapshot::build(2, entries, fdb.view())
    };
    rig.snapshot.store(Arc::new(snap));
    let templates = routes
        .destinations
        .iter()
        .map(|&dst| udp_frame_between(ROUTER_MAC, MAC_A, IP_A, dst, frame_len))
        .collect();
    rig.attach(ROUTED_SOURCE, Box::new(CyclingSource::new(templates)));
    for id in ROUTED_PODS.into_iter().chain([ROUTED_UPLINK]) {
        rig.attach(id, Box::new(FrameSink));
    }
    rig
}
