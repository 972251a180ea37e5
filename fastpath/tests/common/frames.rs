//! What the routed tests (`routing`, `routing6`, `vxlan`, `garbage` and
//! the Service lab) share: the router's and the pods' addresses, the
//! router-configuration steps a test plays as the controller, frame
//! builders on etherparse's `PacketBuilder`, and the first steps of
//! parsing what the switch sent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Ipv4Header, LinkSlice, NetSlice,
    PacketBuilder, SlicedPacket,
};
use fastpath::PortId;
use fastpath::l3::neigh::NeighEvent;
use fastpath::l3::table::NextHop;
use fastpath::worker::WorkerEvent;

use super::{TestSwitch, key, mac};

// ---------------------------------------------------------------------------
// Addresses.

/// The router MAC of every routed test switch.
pub const ROUTER: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];

/// The node's address on the uplink's network (192.168.0.0/24).
pub const NODE_IP: [u8; 4] = [192, 168, 0, 5];
/// The uplink NIC's own MAC.
pub const NODE_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x05];
/// The gateway of the uplink's network.
pub const UPLINK_GW: [u8; 4] = [192, 168, 0, 254];
pub const UPLINK_GW_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0xfe];

/// The router MAC of the remote node's switch (inner source MAC of what
/// it sends through the tunnel).
pub const REMOTE_ROUTER: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 1];

/// Pod A's MAC.
pub fn mac_a() -> [u8; 6] {
    mac(0x0a)
}
/// Pod B's MAC.
pub fn mac_b() -> [u8; 6] {
    mac(0x0b)
}
/// Pod C's MAC.
pub fn mac_c() -> [u8; 6] {
    mac(0x0c)
}
/// The MAC of the node's kernel behind the host port.
pub fn host_mac() -> [u8; 6] {
    mac(0x40)
}

/// An IPv4 address as the router tables take it.
pub fn ip4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

/// An IPv6 address (written as a `u128`) as the router tables take it.
pub fn ip6(a: u128) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(a))
}

/// An IPv4 address as the router configuration stores it.
pub fn v4(a: [u8; 4]) -> u32 {
    u32::from_be_bytes(a)
}

/// An address of either family as the tests write it: `[u8; 4]` for IPv4,
/// `u128` for IPv6.
pub trait Addr: Copy {
    fn ip(self) -> IpAddr;
}

impl Addr for [u8; 4] {
    fn ip(self) -> IpAddr {
        ip4(self)
    }
}

impl Addr for u128 {
    fn ip(self) -> IpAddr {
        ip6(self)
    }
}

// ---------------------------------------------------------------------------
// The router, as the controller configures it.

/// Adds a route for `addr/len` to the configuration the test publishes.
pub fn route(sw: &mut TestSwitch, addr: impl Addr, len: u8, hop: NextHop) {
    sw.l3.routes.insert(addr.ip(), len, hop);
}

/// The report that `addr` is at `m` behind `port`.
pub fn neighbour(addr: impl Addr, m: [u8; 6], port: PortId) -> NeighEvent {
    NeighEvent {
        ip: addr.ip(),
        mac: key(m),
        port,
    }
}

/// Tells the controller's neighbour table directly that `addr` is at `m`
/// behind `port`, and publishes.
pub fn know_neighbour(sw: &mut TestSwitch, addr: impl Addr, m: [u8; 6], port: PortId) {
    sw.learn_neighbours(vec![WorkerEvent::Neighbour(neighbour(addr, m, port))]);
}

/// Runs the switch every 110 ms until `done` or a deadline.
pub fn run_until(
    sw: &mut TestSwitch,
    deadline: Duration,
    mut done: impl FnMut(&TestSwitch) -> bool,
) {
    let until = Instant::now() + deadline;
    loop {
        sw.run();
        if done(sw) || Instant::now() > until {
            return;
        }
        std::thread::sleep(Duration::from_millis(110));
    }
}

// ---------------------------------------------------------------------------
// Frames in.

/// A UDP datagram from port 5000 to port 6000 over IPv4 (DF set) or IPv6,
/// by the addresses' family; etherparse computes lengths and checksums.
pub fn udp<A: Addr>(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: A,
    dst: A,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    udp_ports(src_mac, dst_mac, src, dst, ttl, (5000, 6000), payload)
}

/// A UDP datagram between `ports` (source, destination) over IPv4 (DF set)
/// or IPv6, by the addresses' family; `ttl` is the hop limit for IPv6.
pub fn udp_ports<A: Addr>(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: A,
    dst: A,
    ttl: u8,
    ports: (u16, u16),
    payload: &[u8],
) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
    let ip = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), ttl),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), ttl),
        other => panic!("mixed address families: {other:?}"),
    };
    let mut out = Vec::new();
    ip.udp(ports.0, ports.1).write(&mut out, payload).unwrap();
    out
}

/// An ICMP echo request over IPv4 with echo identifier and sequence
/// number `echo`.
pub fn ping4(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
    echo: (u16, u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, ttl)
        .icmpv4_echo_request(echo.0, echo.1)
        .write(&mut out, payload)
        .unwrap();
    out
}

/// An ARP packet in an Ethernet frame from `eth.0` to `eth.1`, not padded
/// (42 bytes).
pub fn arp_unpadded(
    eth: ([u8; 6], [u8; 6]),
    op: ArpOperation,
    sha: [u8; 6],
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
) -> Vec<u8> {
    let a = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        op,
        &sha,
        &spa,
        &tha,
        &tpa,
    )
    .unwrap();
    let mut out = Vec::new();
    PacketBuilder::ethernet2(eth.0, eth.1)
        .arp(a)
        .write(&mut out)
        .unwrap();
    out
}

/// An ARP packet sent by `sha` to `eth_dst`, in an Ethernet frame padded to
/// the 60-byte minimum.
pub fn arp(
    eth_dst: [u8; 6],
    op: ArpOperation,
    sha: [u8; 6],
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
) -> Vec<u8> {
    let mut out = arp_unpadded((sha, eth_dst), op, sha, spa, tha, tpa);
    out.resize(60, 0);
    out
}

// ---------------------------------------------------------------------------
// Frames out.

/// Slices frame `f` with etherparse and returns it with its destination and
/// source MACs; panics (showing the frame) unless it is Ethernet II.
#[track_caller]
pub fn slice_ethernet(f: &[u8]) -> (SlicedPacket<'_>, [u8; 6], [u8; 6]) {
    let p = SlicedPacket::from_ethernet(f).unwrap_or_else(|e| panic!("{e}: {f:02x?}"));
    let Some(LinkSlice::Ethernet2(eth)) = &p.link else {
        panic!("not Ethernet II: {f:02x?}")
    };
    let (dst, src) = (eth.destination(), eth.source());
    (p, dst, src)
}

/// The IPv4 header of `p`, sliced from frame `f`; panics (showing the
/// frame) unless it is IPv4.
#[track_caller]
pub fn ipv4_header(p: &SlicedPacket, f: &[u8]) -> Ipv4Header {
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4: {f:02x?}")
    };
    ip.header().to_header()
}
