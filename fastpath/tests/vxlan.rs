//! VXLAN routes as the pods and the node network see them: routed packets
//! wrapped towards a remote node, VXLAN from remote nodes unwrapped and
//! routed to local pods, the MTU the tunnel leaves, and what the switch
//! refuses to unwrap.
//!
//! Every test runs one worker over memory ports with the test playing the
//! controller (see `common`). Frames are built with etherparse's
//! `PacketBuilder`; what the switch sends is parsed back with etherparse
//! ([`parse_vxlan`] checks the outer IPv4 checksum and UDP length, and the
//! inner packet is compared byte for byte with what the pod sent).
//!
//! The switch of every test ([`vxlan_switch`]):
//!
//! ```text
//! port 0  pod A  10.244.1.10  fd00:1::10  02:00:00:00:00:0a  (routes with --ip/--mac)
//! port 1  pod B  10.244.1.20  fd00:1::20  02:00:00:00:00:0b
//! port 2  uplink: the node is 192.168.0.5 (NIC 02:77:00:00:00:05),
//!         its gateway 192.168.0.254 (02:77:00:00:00:fe)
//!
//! remote node: VTEP 192.168.60.2 (behind the gateway), VNI 42,
//!              pods 10.244.2.0/24 and fd00:2::/64
//! ```

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::frames::{
    NODE_IP, NODE_MAC, REMOTE_ROUTER, ROUTER, UPLINK_GW, UPLINK_GW_MAC, arp, arp_unpadded, ip4,
    ip6, ipv4_header, know_neighbour, mac_a, mac_b, ping4, run_until, slice_ethernet, udp,
    udp_ports, v4,
};
use common::{Config, TestSwitch, XorShift, fix_ipv4_checksum, frame, key};
use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{
    ArpOperation, Icmpv4Type, Icmpv6Type, IpNumber, Ipv4Header, NetSlice, PacketBuilder,
    SlicedPacket, TransportSlice, UdpHeader,
};
use fastpath::PortId;
use fastpath::drop::DropReason;
use fastpath::l3::table::{Link, NextHop};
use fastpath::pool::FRAME_CAPACITY;
use fastpath::snapshot::PortRole;
use fastpath::wire::{self, ipv6, vxlan};

const POD_A: PortId = 0;
const POD_B: PortId = 1;
const UPLINK: PortId = 2;

const GW4: [u8; 4] = [10, 244, 1, 1];
const IP_A: [u8; 4] = [10, 244, 1, 10];
const IP_B: [u8; 4] = [10, 244, 1, 20];
/// A pod on the remote node.
const REMOTE: [u8; 4] = [10, 244, 2, 20];
const VTEP: [u8; 4] = [192, 168, 60, 2];
const VNI: u32 = 42;

const GW6: u128 = 0xfd00_0001_0000_0000_0000_0000_0000_0001;
const IP6_A: u128 = 0xfd00_0001_0000_0000_0000_0000_0000_0010;
const IP6_B: u128 = 0xfd00_0001_0000_0000_0000_0000_0000_0020;
const REMOTE6: u128 = 0xfd00_0002_0000_0000_0000_0000_0000_0020;

/// The switch of the module documentation; the gateway is a known
/// neighbour unless `gw_known` is false.
fn vxlan_switch_with(gw_known: bool) -> TestSwitch {
    vxlan_switch_on(TestSwitch::default(), gw_known)
}

/// [`vxlan_switch_with`] on a switch built by the caller.
fn vxlan_switch_on(mut sw: TestSwitch, gw_known: bool) -> TestSwitch {
    for id in 0..=UPLINK {
        sw.add_port(id);
    }
    sw.configure_port(UPLINK, |e| e.role = PortRole::Uplink);
    let l3 = &mut sw.l3;
    l3.router_mac = key(ROUTER);
    l3.link_local = ipv6::link_local_of(key(ROUTER));
    l3.addrs4 = vec![(v4(GW4), 24)];
    l3.addrs6 = vec![(GW6, 64)];
    l3.vtep_src = Some(v4(NODE_IP));
    l3.vteps = vec![v4(NODE_IP)];
    l3.vnis = vec![VNI];
    let bridge = NextHop::Resolve {
        link: Link::Bridge,
        gw: None,
    };
    let tunnel = NextHop::Vxlan {
        vtep: v4(VTEP),
        vni: VNI,
    };
    let r = &mut l3.routes;
    r.insert(ip4(GW4), 32, NextHop::Local);
    r.insert(ip4([10, 244, 1, 0]), 24, bridge);
    r.insert(ip6(GW6), 128, NextHop::Local);
    r.insert(ip6(GW6 & !0xffff), 64, bridge);
    for (a, a6, port, m) in [(IP_A, IP6_A, POD_A, mac_a()), (IP_B, IP6_B, POD_B, mac_b())] {
        let peer = NextHop::Peer { port, mac: key(m) };
        r.insert(ip4(a), 32, peer);
        r.insert(ip6(a6), 128, peer);
    }
    r.insert(
        ip4([192, 168, 0, 0]),
        24,
        NextHop::Resolve {
            link: Link::Port(UPLINK),
            gw: None,
        },
    );
    r.insert(
        ip4([192, 168, 60, 0]),
        24,
        NextHop::Resolve {
            link: Link::Port(UPLINK),
            gw: Some(ip4(UPLINK_GW)),
        },
    );
    r.insert(ip4([10, 244, 2, 0]), 24, tunnel);
    r.insert(ip6(REMOTE6 & !0xffff), 64, tunnel);
    sw.publish();
    if gw_known {
        know_neighbour(&mut sw, UPLINK_GW, UPLINK_GW_MAC, UPLINK);
    }
    sw
}

fn vxlan_switch() -> TestSwitch {
    vxlan_switch_with(true)
}

// ---------------------------------------------------------------------------
// Frames in.

/// A VXLAN header with the VNI flag and `vni`.
fn vxlan_header(vni: u32) -> [u8; 8] {
    let v = (vni << 8).to_be_bytes();
    [vxlan::FLAG_VNI, 0, 0, 0, v[0], v[1], v[2], v[3]]
}

/// What the remote node sends: `inner` (an Ethernet frame) in VXLAN from
/// the VTEP to `dst`, arriving on the uplink from the gateway. The UDP
/// payload is `vx` followed by `inner`.
fn vxlan_in_raw(dst: [u8; 4], vx: &[u8], inner: &[u8]) -> Vec<u8> {
    vxlan_packet((UPLINK_GW_MAC, NODE_MAC), (VTEP, dst), vx, inner)
}

/// A VXLAN packet with the given Ethernet and IPv4 addresses.
fn vxlan_packet(
    macs: ([u8; 6], [u8; 6]),
    ips: ([u8; 4], [u8; 4]),
    vx: &[u8],
    inner: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(ips.0, ips.1, 62)
        .udp(51234, vxlan::PORT)
        .write(&mut out, &[vx, inner].concat())
        .unwrap();
    out
}

fn vxlan_in(vni: u32, inner: &[u8]) -> Vec<u8> {
    vxlan_in_raw(NODE_IP, &vxlan_header(vni), inner)
}

/// An inner IPv4 packet from the remote pod to `dst`, as the remote
/// switch wraps it (TTL already decremented there).
fn inner4(dst: [u8; 4], ttl: u8, payload: &[u8]) -> Vec<u8> {
    udp_ports(
        REMOTE_ROUTER,
        REMOTE_ROUTER,
        REMOTE,
        dst,
        ttl,
        (7000, 8000),
        payload,
    )
}

fn inner6(dst: u128, hop: u8, payload: &[u8]) -> Vec<u8> {
    udp_ports(
        REMOTE_ROUTER,
        REMOTE_ROUTER,
        REMOTE6,
        dst,
        hop,
        (7000, 8000),
        payload,
    )
}

// ---------------------------------------------------------------------------
// Frames out.

/// An outer VXLAN packet the switch sent.
#[derive(Debug)]
struct Outer {
    dst: [u8; 6],
    src: [u8; 6],
    ip: Ipv4Header,
    udp: UdpHeader,
    vni: u32,
    /// The encapsulated Ethernet frame.
    inner: Vec<u8>,
}

/// Parses a VXLAN packet the switch sent, asserting its outer IPv4
/// checksum, its lengths and its VXLAN header.
#[track_caller]
fn parse_vxlan(f: &[u8]) -> Outer {
    let (p, dst, src) = slice_ethernet(f);
    let h = ipv4_header(&p, f);
    assert_eq!(
        h.header_checksum,
        h.calc_header_checksum(),
        "outer IPv4 header checksum"
    );
    assert_eq!(usize::from(h.total_len), f.len() - 14, "outer total length");
    assert_eq!(h.protocol, IpNumber::UDP);
    assert!(h.time_to_live > 1, "outer TTL {}", h.time_to_live);
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        panic!("not UDP: {:?}", p.transport)
    };
    let uh = udp.to_header();
    assert_eq!(uh.destination_port, vxlan::PORT);
    assert_eq!(usize::from(uh.length), f.len() - 14 - 20, "UDP length");
    if uh.checksum != 0 {
        let want = uh.calc_checksum_ipv4(&h, udp.payload()).unwrap();
        assert_eq!(uh.checksum, want, "outer UDP checksum");
    }
    let vx = udp.payload();
    assert!(
        vx.len() >= 8 + 14,
        "VXLAN header and an inner Ethernet header"
    );
    assert_eq!(vx[0], vxlan::FLAG_VNI, "flags: VNI present, nothing else");
    assert_eq!(vx[1..4], [0, 0, 0], "reserved");
    assert_eq!(vx[7], 0, "reserved");
    Outer {
        dst,
        src,
        ip: h,
        udp: uh,
        vni: u32::from_be_bytes([0, vx[4], vx[5], vx[6]]),
        inner: vx[8..].to_vec(),
    }
}

/// Asserts the outer headers of a packet wrapped towards the remote node
/// and returns it.
#[track_caller]
fn assert_tunnelled(f: &[u8]) -> Outer {
    let o = parse_vxlan(f);
    assert_eq!((o.dst, o.src), (UPLINK_GW_MAC, ROUTER), "to the gateway");
    assert_eq!((o.ip.source, o.ip.destination), (NODE_IP, VTEP));
    assert_eq!(o.vni, VNI);
    assert!(
        o.udp.source_port >= 49152,
        "source port {} in the dynamic range",
        o.udp.source_port
    );
    o
}

/// `orig` (an Ethernet frame carrying IPv4) as a router forwards it: TTL
/// one less, header checksum updated; everything after the Ethernet
/// header.
fn forwarded4(orig: &[u8]) -> Vec<u8> {
    let mut ip = orig[14..].to_vec();
    ip[8] -= 1;
    ip[10..12].fill(0);
    let c = common::internet_checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip
}

/// `orig` (Ethernet + IPv6) with the hop limit one less.
fn forwarded6(orig: &[u8]) -> Vec<u8> {
    let mut ip = orig[14..].to_vec();
    ip[7] -= 1;
    ip
}

// ---------------------------------------------------------------------------
// Encapsulation.

#[test]
fn a_routed_ipv4_packet_leaves_the_uplink_in_vxlan() {
    let mut sw = vxlan_switch();
    let f = udp(mac_a(), ROUTER, IP_A, REMOTE, 64, b"over");
    sw.inject(POD_A, f.clone());
    sw.run();
    let out = sw.take_one(UPLINK);
    assert_eq!(out.len(), f.len() + vxlan::OVERHEAD);
    let o = assert_tunnelled(&out);
    assert_eq!(o.inner[12..14], [0x08, 0x00], "inner EtherType IPv4");
    assert_eq!(
        o.inner[14..],
        forwarded4(&f)[..],
        "the pod's packet, TTL - 1"
    );
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn a_routed_ipv6_packet_leaves_the_uplink_in_vxlan() {
    let mut sw = vxlan_switch();
    let f = udp(mac_a(), ROUTER, IP6_A, REMOTE6, 64, b"over");
    sw.inject(POD_A, f.clone());
    sw.run();
    let out = sw.take_one(UPLINK);
    assert_eq!(out.len(), f.len() + vxlan::OVERHEAD);
    let o = assert_tunnelled(&out);
    assert_eq!(o.inner[12..14], [0x86, 0xdd], "inner EtherType IPv6");
    assert_eq!(
        o.inner[14..],
        forwarded6(&f)[..],
        "the pod's packet, hop - 1"
    );
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn the_vtep_gateway_is_resolved_while_the_packet_waits() {
    let mut sw = vxlan_switch_with(false);
    let f = udp(mac_a(), ROUTER, IP_A, REMOTE, 64, b"wait");
    sw.inject(POD_A, f.clone());
    sw.run();
    // An address probe for the gateway, on the uplink only.
    let probe = sw.take_one(UPLINK);
    let p = SlicedPacket::from_ethernet(&probe).unwrap();
    let Some(NetSlice::Arp(a)) = &p.net else {
        panic!("not ARP: {probe:02x?}")
    };
    assert_eq!(a.operation(), ArpOperation::REQUEST);
    assert_eq!(a.sender_protocol_addr(), [0, 0, 0, 0]);
    assert_eq!(a.target_protocol_addr(), UPLINK_GW);
    sw.assert_silent_except(&[]);
    assert_eq!(sw.frames_held(), 1);

    let r = arp(
        ROUTER,
        ArpOperation::REPLY,
        UPLINK_GW_MAC,
        UPLINK_GW,
        ROUTER,
        [0, 0, 0, 0],
    );
    sw.inject(UPLINK, r);
    sw.run();
    let events = sw.events();
    sw.learn_neighbours(events);
    sw.run();
    let o = assert_tunnelled(&sw.take_one(UPLINK));
    assert_eq!(o.inner[14..], forwarded4(&f)[..]);
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

/// The outer UDP source port of the packet `f` is wrapped in.
fn source_port(sw: &mut TestSwitch, f: Vec<u8>) -> u16 {
    sw.inject(POD_A, f);
    sw.run();
    assert_tunnelled(&sw.take_one(UPLINK)).udp.source_port
}

#[test]
fn ipv4_flows_spread_over_source_ports_and_each_keeps_its_own() {
    let mut sw = vxlan_switch();
    let mut ports = BTreeSet::new();
    let flows = 64u16;
    for i in 0..flows {
        // Flows differing in one field each: source port, destination
        // port, destination address.
        let (sport, dport, dst) = match i % 3 {
            0 => (5000 + i, 6000, REMOTE),
            1 => (5000, 6000 + i, REMOTE),
            _ => (5000, 6000, [10, 244, 2, i as u8]),
        };
        let flow = |seq: u8| udp_ports(mac_a(), ROUTER, IP_A, dst, 64, (sport, dport), &[seq; 20]);
        let first = source_port(&mut sw, flow(0));
        // The same flow, other payloads: the same port, so that it keeps
        // its path (no reordering).
        for seq in 1..4 {
            assert_eq!(source_port(&mut sw, flow(seq)), first, "flow {i}");
        }
        ports.insert(first);
    }
    assert!(
        ports.len() >= usize::from(flows) * 9 / 10,
        "{} distinct source ports for {flows} flows: {ports:?}",
        ports.len()
    );
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn ipv6_flows_spread_over_source_ports() {
    let mut sw = vxlan_switch();
    let mut ports = BTreeSet::new();
    let flows = 64u16;
    for i in 0..flows {
        let (sport, dport, dst) = match i % 3 {
            0 => (5000 + i, 6000, REMOTE6),
            1 => (5000, 6000 + i, REMOTE6),
            _ => (5000, 6000, REMOTE6 + u128::from(i)),
        };
        let f = udp_ports(mac_a(), ROUTER, IP6_A, dst, 64, (sport, dport), b"v6");
        ports.insert(source_port(&mut sw, f));
    }
    assert!(
        ports.len() >= usize::from(flows) * 9 / 10,
        "{} distinct source ports for {flows} IPv6 flows: {ports:?}",
        ports.len()
    );
    sw.assert_no_leaks();
}

#[test]
fn one_ping_keeps_its_source_port() {
    let mut sw = vxlan_switch();
    let ping = |seq: u16| {
        ping4(
            mac_a(),
            ROUTER,
            IP_A,
            REMOTE,
            64,
            (0x1234, seq),
            b"ping payload",
        )
    };
    let first = source_port(&mut sw, ping(1));
    for seq in 2..10 {
        assert_eq!(source_port(&mut sw, ping(seq)), first, "seq {seq}");
    }
    sw.assert_no_leaks();
}

#[test]
fn too_big_for_the_tunnel_needs_fragmentation_at_the_uplink_mtu_less_the_overhead() {
    let mut sw = vxlan_switch();
    let inner_mtu = 1500 - vxlan::OVERHEAD; // 1450
    let payload = |ip_len: usize, hdrs: usize| vec![0x44u8; ip_len - hdrs];

    // Exactly the tunnel's MTU: the outer packet is exactly the uplink's.
    let fits = udp(mac_a(), ROUTER, IP_A, REMOTE, 64, &payload(inner_mtu, 28));
    sw.inject(POD_A, fits);
    sw.run();
    let o = assert_tunnelled(&sw.take_one(UPLINK));
    assert_eq!(o.ip.total_len, 1500);

    // One byte more with DF: fragmentation needed, with the tunnel's MTU.
    let big = udp(
        mac_a(),
        ROUTER,
        IP_A,
        REMOTE,
        64,
        &payload(inner_mtu + 1, 28),
    );
    sw.inject(POD_A, big.clone());
    sw.run();
    let f = sw.take_one(POD_A);
    let p = SlicedPacket::from_ethernet(&f).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(
        (ip.header().source(), ip.header().destination()),
        (GW4, IP_A)
    );
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!()
    };
    assert_eq!(
        icmp.icmp_type(),
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: inner_mtu as u16
        })
    );
    assert_eq!(wire::checksum(icmp.slice()), 0, "ICMP checksum");
    assert_eq!(icmp.payload()[..28], big[14..42], "quotes the packet");
    sw.assert_silent_except(&[]);

    // IPv6: packet too big, with the tunnel's MTU.
    let big6 = udp(
        mac_a(),
        ROUTER,
        IP6_A,
        REMOTE6,
        64,
        &payload(inner_mtu + 1, 48),
    );
    sw.inject(POD_A, big6);
    sw.run();
    let f = sw.take_one(POD_A);
    let p = SlicedPacket::from_ethernet(&f).unwrap();
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
        panic!()
    };
    assert_eq!(
        icmp.icmp_type(),
        Icmpv6Type::PacketTooBig {
            mtu: inner_mtu as u32
        }
    );
    assert_eq!(wire::icmpv6_checksum(GW6, IP6_A, icmp.slice()), 0);
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[(POD_A, DropReason::FragNeeded, 2)]);
    sw.assert_no_leaks();
}

#[test]
fn a_jumbo_uplink_still_reports_what_the_frames_cannot_carry() {
    let mut sw = vxlan_switch();
    sw.configure_port(UPLINK, |e| e.mtu = 9000);
    // The largest IPv4 packet a frame can carry once wrapped.
    let room = FRAME_CAPACITY as usize - 14 - vxlan::OVERHEAD;
    let packet = |ip_len: usize| {
        udp(
            mac_a(),
            ROUTER,
            IP_A,
            REMOTE,
            64,
            &vec![0x55u8; ip_len - 28],
        )
    };
    sw.inject(POD_A, packet(room));
    sw.run();
    assert_tunnelled(&sw.take_one(UPLINK));

    // One byte more (DF set) must not vanish: the sender learns a size
    // that passes, or path MTU discovery black-holes it.
    sw.inject(POD_A, packet(room + 1));
    sw.run();
    let f = sw.take_one(POD_A);
    let p = SlicedPacket::from_ethernet(&f).unwrap();
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("not ICMP: {f:02x?}")
    };
    assert_eq!(
        icmp.icmp_type(),
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: room as u16
        })
    );
    sw.assert_drops(&[(POD_A, DropReason::FragNeeded, 1)]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// Decapsulation.

#[track_caller]
fn assert_delivered(f: &[u8], dst_mac: [u8; 6], ip_packet: &[u8]) {
    assert_eq!(f[..6], dst_mac, "to the pod");
    assert_eq!(f[6..12], ROUTER, "from the router");
    assert_eq!(f[14..], *ip_packet, "the inner packet, forwarded");
}

#[test]
fn vxlan_for_the_node_is_unwrapped_and_routed_to_the_pod() {
    let mut sw = vxlan_switch();
    let in4 = inner4(IP_A, 63, b"from afar");
    let in6 = inner6(IP6_B, 63, b"from afar, v6");
    sw.inject(UPLINK, vxlan_in(VNI, &in4));
    sw.inject(UPLINK, vxlan_in(VNI, &in6));
    sw.run();
    let to_a = sw.take_one(POD_A);
    assert_delivered(&to_a, mac_a(), &forwarded4(&in4));
    assert_eq!(to_a[12..14], [0x08, 0x00]);
    assert_delivered(&sw.take_one(POD_B), mac_b(), &forwarded6(&in6));
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

/// Replaces the UDP checksum of the IPv4 packet in `f` with the partial
/// one a sender with checksum offload leaves: the pseudo-header sum.
fn make_udp4_partial(f: &mut [u8]) {
    let ip = 14;
    let l4 = ip + usize::from(f[ip] & 0xf) * 4;
    let len = f.len() - l4;
    let mut acc: u32 = 17 + len as u32;
    for w in f[ip + 12..ip + 20].chunks(2) {
        acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    f[l4 + 6..l4 + 8].copy_from_slice(&(acc as u16).to_be_bytes());
}

#[test]
fn partial_checksums_from_a_virtual_uplink_are_completed_inside_and_out() {
    let mut sw = vxlan_switch();
    // A veth uplink: its frames may carry partial checksums.
    sw.configure_port(UPLINK, |e| e.finish_csum = true);
    sw.publish();
    // The outer UDP checksum partial, the inner one complete: the mark of
    // the outer one must not survive the outer header.
    let in4 = inner4(IP_A, 63, b"outer partial");
    let mut f = vxlan_in(VNI, &in4);
    make_udp4_partial(&mut f);
    sw.inject(UPLINK, f);
    // The inner one partial: completed on the way to the pod.
    let mut inner_partial = inner4(IP_A, 63, b"inner partial");
    make_udp4_partial(&mut inner_partial);
    sw.inject(UPLINK, vxlan_in(VNI, &inner_partial));
    sw.run();
    let got = sw.take_sent(POD_A);
    assert_eq!(got.len(), 2);
    assert_delivered(&got[0], mac_a(), &forwarded4(&in4));
    assert_delivered(
        &got[1],
        mac_a(),
        &forwarded4(&inner4(IP_A, 63, b"inner partial")),
    );
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

/// Asserts that `f` is a packet through the tunnel back to the remote
/// node, carrying an ICMP message from the router to the remote pod, and
/// returns the ICMP type.
#[track_caller]
fn assert_icmp_through_the_tunnel(f: &[u8]) -> Icmpv4Type {
    let o = assert_tunnelled(f);
    let p = SlicedPacket::from_ethernet(&o.inner).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("inner not IPv4: {:02x?}", o.inner)
    };
    assert_eq!(ip.header().destination(), REMOTE, "to the remote pod");
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("inner not ICMP: {:02x?}", o.inner)
    };
    assert_eq!(wire::checksum(icmp.slice()), 0, "ICMP checksum");
    icmp.icmp_type()
}

#[test]
fn errors_about_unwrapped_packets_go_back_through_the_tunnel() {
    let mut sw = vxlan_switch();
    // The remote pod's packet expires here, or has no route: the remote
    // pod must hear of it, and only the tunnel leads back to it.
    sw.inject(UPLINK, vxlan_in(VNI, &inner4(IP_A, 1, b"expiring")));
    sw.inject(
        UPLINK,
        vxlan_in(VNI, &inner4([172, 16, 0, 1], 9, b"nowhere")),
    );
    sw.run();
    let out = sw.take_sent(UPLINK);
    assert_eq!(out.len(), 2, "one error each");
    for f in &out {
        // Never the remote switch's MAC straight on the node network: it
        // is not a neighbour there.
        assert_ne!(f[..6], REMOTE_ROUTER, "sent raw: {f:02x?}");
    }
    assert!(matches!(
        assert_icmp_through_the_tunnel(&out[0]),
        Icmpv4Type::TimeExceeded(_)
    ));
    assert!(matches!(
        assert_icmp_through_the_tunnel(&out[1]),
        Icmpv4Type::DestinationUnreachable(_)
    ));
    sw.assert_silent_except(&[]);
    sw.assert_no_leaks();
}

#[test]
fn a_remote_pod_pinging_the_router_is_answered_through_the_tunnel() {
    let mut sw = vxlan_switch();
    let ping = ping4(
        REMOTE_ROUTER,
        REMOTE_ROUTER,
        REMOTE,
        GW4,
        63,
        (7, 1),
        b"gateway alive?",
    );
    sw.inject(UPLINK, vxlan_in(VNI, &ping));
    sw.run();
    let f = sw.take_one(UPLINK);
    assert_ne!(f[..6], REMOTE_ROUTER, "sent raw: {f:02x?}");
    assert!(matches!(
        assert_icmp_through_the_tunnel(&f),
        Icmpv4Type::EchoReply(_)
    ));
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn vxlan_with_an_unknown_vni_is_not_unwrapped() {
    let mut sw = vxlan_switch();
    sw.inject(UPLINK, vxlan_in(VNI + 1, &inner4(IP_A, 63, b"x")));
    sw.inject(UPLINK, vxlan_in(0, &inner4(IP_A, 63, b"x")));
    sw.run();
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[(UPLINK, DropReason::Unsupported, 2)]);
    sw.assert_no_leaks();
}

#[test]
fn vxlan_to_an_address_that_is_no_vtep_is_plain_udp() {
    let mut sw = vxlan_switch();
    // A pod that runs its own VXLAN gets the datagram as it is.
    let f = vxlan_in_raw(IP_A, &vxlan_header(VNI), &inner4(IP_B, 63, b"x"));
    sw.inject(UPLINK, f.clone());
    sw.run();
    let out = sw.take_one(POD_A);
    assert_delivered(&out, mac_a(), &forwarded4(&f));
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[]);

    // VXLAN from a pod port to the node's address is routed like any
    // packet: out of the uplink, towards the node (resolved first).
    know_neighbour(&mut sw, NODE_IP, NODE_MAC, UPLINK);
    let from_pod = vxlan_packet(
        (mac_a(), ROUTER),
        (IP_A, NODE_IP),
        &vxlan_header(VNI),
        &inner4(IP_B, 63, b"y"),
    );
    sw.inject(POD_A, from_pod.clone());
    sw.run();
    let out = sw.take_one(UPLINK);
    assert_eq!(out[..6], NODE_MAC);
    assert_eq!(
        out[14..],
        forwarded4(&from_pod)[..],
        "forwarded, not unwrapped"
    );
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn broken_vxlan_is_malformed() {
    let mut sw = vxlan_switch();
    let inner = inner4(IP_A, 63, b"inner");
    let good = || vxlan_in(VNI, &inner);
    let mut broken = Vec::new();

    // The I flag clear.
    let mut vx = vxlan_header(VNI);
    vx[0] = 0;
    broken.push(vxlan_in_raw(NODE_IP, &vx, &inner));
    // UDP length one more, one less than the datagram.
    for delta in [1i32, -1] {
        let mut f = good();
        let len = u16::from_be_bytes([f[38], f[39]]);
        f[38..40].copy_from_slice(&((i32::from(len) + delta) as u16).to_be_bytes());
        broken.push(f);
    }
    // Cut short: the IPv4 total length runs past the frame.
    let mut f = good();
    f.truncate(f.len() - 10);
    broken.push(f);
    // Consistent lengths, but no room for an inner Ethernet header, or
    // not even for the VXLAN header.
    broken.push(vxlan_in_raw(NODE_IP, &vxlan_header(VNI), &inner[..13]));
    broken.push(vxlan_in_raw(NODE_IP, &vxlan_header(VNI)[..4], &[]));
    // The inner IPv4 packet cut short (its total length past its frame),
    // or with a bad header checksum.
    broken.push(vxlan_in(VNI, &inner[..inner.len() - 3]));
    let mut bad = inner.clone();
    bad[14 + 10] ^= 0xff;
    broken.push(vxlan_in(VNI, &bad));
    let n = broken.len() as u64;
    for f in broken {
        sw.inject(UPLINK, f);
    }
    sw.run();
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[(UPLINK, DropReason::Malformed, n)]);

    // Inner frames that are not IP.
    let arp = arp_unpadded(
        (REMOTE_ROUTER, [0xff; 6]),
        ArpOperation::REQUEST,
        REMOTE_ROUTER,
        REMOTE,
        [0; 6],
        IP_A,
    );
    sw.inject(UPLINK, vxlan_in(VNI, &arp));
    sw.inject(UPLINK, vxlan_in(VNI, &frame(ROUTER, REMOTE_ROUTER, 9)));
    sw.run();
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[
        (UPLINK, DropReason::Malformed, n),
        (UPLINK, DropReason::Unsupported, 2),
    ]);

    // The intact packet is delivered.
    sw.inject(UPLINK, good());
    sw.run();
    assert_delivered(&sw.take_one(POD_A), mac_a(), &forwarded4(&inner));
    sw.assert_no_leaks();
}

/// Whether `f` is a frame the switch may consume without a trace: ARP, or
/// IPv6 neighbour discovery (from a routed port, not the switch's
/// business; or a reply to it).
fn consumable(f: &[u8]) -> bool {
    match f.get(12..14) {
        Some([0x08, 0x06]) => true,
        Some([0x86, 0xdd]) => f.get(14 + 6) == Some(&58) && matches!(f.get(54), Some(135 | 136)),
        _ => false,
    }
}

#[test]
fn mutated_vxlan_never_panics_and_every_frame_is_accounted_for() {
    // Room for a full hold queue and the frames that keep arriving.
    let big = TestSwitch::new(Config {
        pools: vec![1024],
        ..Config::default()
    });
    let mut sw = vxlan_switch_on(big, true);
    let seeds = [
        vxlan_in(VNI, &inner4(IP_A, 63, b"seed four")),
        vxlan_in(VNI, &inner6(IP6_A, 63, b"seed six")),
        vxlan_in(VNI, &inner4(REMOTE, 2, b"hairpin")),
        vxlan_in(VNI, &inner4([10, 244, 1, 99], 63, b"on the bridge")),
        vxlan_in(VNI, &inner6(GW6, 63, b"to the router")),
    ];
    let mut rng = XorShift::new(0x7e57_5eed_0042);
    let rounds = 4000;
    let mut outcomes = [0u64; 4]; // sent, dropped, held, consumed
    for i in 0..rounds {
        let mut f = seeds[i % seeds.len()].clone();
        for _ in 0..1 + rng.below(4) {
            // Mostly the headers: the first 100 bytes.
            let at = rng.below(f.len().min(100) as u64) as usize;
            match rng.below(3) {
                0 => f[at] = rng.next_u64() as u8,
                1 => f[at] ^= 1 << rng.below(8),
                _ => f[at] = [0, 0xff, 1, 0x80][rng.below(4) as usize],
            }
        }
        match rng.below(8) {
            0 => f.truncate(14 + rng.below(f.len() as u64 - 14) as usize),
            1 => {
                let n = rng.below(64) as usize;
                f.extend(rng.bytes(n));
            }
            _ => {}
        }
        // Keep the outer, and often the inner, IPv4 checksums right, so
        // that mutations reach deeper than the first check.
        if rng.below(4) != 0 {
            fix_ipv4_checksum(&mut f);
        }
        if rng.below(2) == 0 && f.len() > 50 {
            fix_ipv4_checksum(&mut f[50..]);
        }

        let drops_before = sw.total_drops();
        let held_before = i64::from(sw.frames_held());
        sw.inject(UPLINK, f.clone());
        sw.run();
        assert_eq!(sw.inbox_len(UPLINK), 0, "round {i}: not received");
        let mut sent = 0i64;
        for id in sw.port_ids() {
            for out in sw.take_sent(id) {
                assert!(out.len() >= 14 && out.len() <= FRAME_CAPACITY as usize);
                sent += 1;
            }
        }
        let dropped = (sw.total_drops() - drops_before) as i64;
        let held = i64::from(sw.frames_held()) - held_before;
        let _ = sw.events();
        if sw.frames_held() == 0 {
            sw.assert_no_leaks();
        }
        let consumed = consumable(&f);
        assert!(
            sent + dropped + held >= 1 || consumed,
            "round {i}: frame vanished (sent {sent}, dropped {dropped}, held {held}): {f:02x?}"
        );
        outcomes[if dropped > 0 {
            1
        } else if held > 0 {
            2
        } else if sent > 0 {
            0
        } else {
            3
        }] += 1;
    }
    assert_eq!(sw.stats(UPLINK).rx_packets, rounds as u64);
    // A fuzz that only makes malformed frames tests little: many frames
    // are unwrapped and delivered, many dropped, some held.
    let delivered = sw.stats(POD_A).tx_packets + sw.stats(POD_B).tx_packets;
    assert!(delivered > 100, "{delivered} delivered to pods");
    assert!(outcomes[1] > 100 && outcomes[2] > 0, "{outcomes:?}");

    // Frames waiting for neighbours that will never answer time out.
    if sw.frames_held() > 0 {
        std::thread::sleep(Duration::from_millis(3100));
        run_until(&mut sw, Duration::from_secs(3), |sw| sw.frames_held() == 0);
    }
    for id in sw.port_ids() {
        sw.take_sent(id);
    }
    sw.assert_no_leaks();
}
