//! IPv6 routing and neighbour discovery as a pod, the node and the network
//! see them: the router's neighbour advertisements, its echo replies,
//! packets routed between subnets, next hops resolved by neighbour
//! solicitation while packets wait, ICMPv6 errors, what the router refuses,
//! and port security for IPv6 sources.
//!
//! Every test runs one worker over memory ports with the test playing the
//! controller (see `common`). Frames are built with etherparse's
//! `PacketBuilder`; what the switch sends is parsed back with etherparse
//! ([`parse`] checks every ICMPv6 and UDP checksum on the way, ICMPv6 both
//! with etherparse and with `wire::icmpv6_checksum`).
//!
//! The switch of most tests ([`routed_switch`]):
//!
//! ```text
//! port 0  pod A  fd00:1::10  02:00:00:00:00:0a   subnet fd00:1::/64, router fd00:1::1
//! port 1  pod B  fd00:2::20  02:00:00:00:00:0b   subnet fd00:2::/64, router fd00:2::1
//! port 2  pod C  fd00:1::11  02:00:00:00:00:0c
//! port 3  uplink
//! port 4  host port (the node's kernel, 02:00:00:00:00:40, fd00:ff::5)
//! ```
//!
//! The router addresses are `Local` /128 routes plus connected /64 routes
//! resolved on the bridge, as the controller builds them; the router's
//! link-local address is the EUI-64 one of the router MAC.

mod common;

use std::sync::Arc;

use common::frames::{
    ROUTER, host_mac, ip6, know_neighbour, mac_a, mac_b, mac_c, neighbour, route, slice_ethernet,
    udp,
};
use common::{TestSwitch, key, mac};
use etherparse::icmpv6::{DestUnreachableCode, NeighborAdvertisementHeader, TimeExceededCode};
use etherparse::{
    Icmpv6Type, IpNumber, Ipv6Header, NetSlice, PacketBuilder, TransportSlice, UdpHeader,
};
use fastpath::drop::DropReason;
use fastpath::l3::table::{Link, NextHop};
use fastpath::snapshot::{PortGuard, PortRole};
use fastpath::wire::{self, ipv6};
use fastpath::worker::WorkerEvent;
use fastpath::{PortId, mac_octets};

const POD_A: PortId = 0;
const POD_B: PortId = 1;
const POD_C: PortId = 2;
const UPLINK: PortId = 3;
const HOST: PortId = 4;

const GW_A: u128 = 0xfd00_0001_0000_0000_0000_0000_0000_0001;
const GW_B: u128 = 0xfd00_0002_0000_0000_0000_0000_0000_0001;
const NET_A: u128 = 0xfd00_0001_0000_0000_0000_0000_0000_0000;
const NET_B: u128 = 0xfd00_0002_0000_0000_0000_0000_0000_0000;
const IP_A: u128 = 0xfd00_0001_0000_0000_0000_0000_0000_0010;
const IP_B: u128 = 0xfd00_0002_0000_0000_0000_0000_0000_0020;
const IP_C: u128 = 0xfd00_0001_0000_0000_0000_0000_0000_0011;
/// The node's own address behind the host port.
const NODE_IP: u128 = 0xfd00_00ff_0000_0000_0000_0000_0000_0005;
/// An address no route covers.
const NOWHERE: u128 = 0x2001_0db8_0000_0000_0000_0000_0000_0001;
const ALL_NODES: u128 = 0xff02_0000_0000_0000_0000_0000_0000_0001;

/// The router's link-local address (from its MAC).
fn router_ll() -> u128 {
    ipv6::link_local_of(key(ROUTER))
}

/// The link-local address of a pod MAC.
fn ll(m: [u8; 6]) -> u128 {
    ipv6::link_local_of(key(m))
}

fn octets(a: u128) -> [u8; 16] {
    a.to_be_bytes()
}

/// The Ethernet address of IPv6 multicast group `a`.
fn group_mac(a: u128) -> [u8; 6] {
    mac_octets(ipv6::multicast_mac(a))
}

/// The switch of the module documentation, routing IPv6 only.
fn routed_switch() -> TestSwitch {
    let mut sw = TestSwitch::default();
    for id in 0..=HOST {
        sw.add_port(id);
    }
    sw.configure_port(UPLINK, |e| e.role = PortRole::Uplink);
    sw.configure_port(HOST, |e| e.role = PortRole::Host);
    sw.l3.router_mac = key(ROUTER);
    sw.l3.link_local = router_ll();
    sw.l3.addrs6 = vec![(GW_A, 64), (GW_B, 64)];
    let bridge = NextHop::Resolve {
        link: Link::Bridge,
        gw: None,
    };
    route(&mut sw, GW_A, 128, NextHop::Local);
    route(&mut sw, GW_B, 128, NextHop::Local);
    route(&mut sw, NET_A, 64, bridge);
    route(&mut sw, NET_B, 64, bridge);
    sw.publish();
    sw
}

// ---------------------------------------------------------------------------
// Frames in.

/// An ICMPv6 message of type `t` with `body` after its 8-byte header.
fn icmp6(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: u128,
    dst: u128,
    hop: u8,
    t: Icmpv6Type,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv6(octets(src), octets(dst), hop)
        .icmpv6(t)
        .write(&mut out, body)
        .unwrap();
    out
}

/// An ICMPv6 echo request.
fn ping6(src_mac: [u8; 6], dst_mac: [u8; 6], src: u128, dst: u128, hop: u8, seq: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv6(octets(src), octets(dst), hop)
        .icmpv6_echo_request(0x66, seq)
        .write(&mut out, b"anyone home?")
        .unwrap();
    out
}

/// The body of an NS or NA: the target, then a link-layer address option
/// of type `opt` if `lla` is given.
fn nd_body(target: u128, opt: u8, lla: Option<[u8; 6]>) -> Vec<u8> {
    let mut b = octets(target).to_vec();
    if let Some(m) = lla {
        b.extend_from_slice(&[opt, 1]);
        b.extend_from_slice(&m);
    }
    b
}

/// A neighbour solicitation with everything chosen by the caller.
#[allow(clippy::too_many_arguments)]
fn ns_raw(
    src_mac: [u8; 6],
    eth_dst: [u8; 6],
    src: u128,
    dst: u128,
    hop: u8,
    target: u128,
    slla: Option<[u8; 6]>,
) -> Vec<u8> {
    icmp6(
        src_mac,
        eth_dst,
        src,
        dst,
        hop,
        Icmpv6Type::NeighborSolicitation,
        &nd_body(target, ipv6::OPT_SOURCE_LLA, slla),
    )
}

/// The solicitation a host sends to resolve `target`: to its
/// solicited-node group, hop limit 255, with its link-layer address.
fn solicit(src_mac: [u8; 6], src: u128, target: u128) -> Vec<u8> {
    let sn = ipv6::solicited_node(target);
    ns_raw(src_mac, group_mac(sn), src, sn, 255, target, Some(src_mac))
}

/// Duplicate address detection for `target`: from the unspecified
/// address, without a link-layer address option.
fn dad(src_mac: [u8; 6], target: u128) -> Vec<u8> {
    let sn = ipv6::solicited_node(target);
    ns_raw(src_mac, group_mac(sn), 0, sn, 255, target, None)
}

/// A solicited neighbour advertisement for `target`, at the sender's MAC.
fn advert(src_mac: [u8; 6], eth_dst: [u8; 6], src: u128, dst: u128, target: u128) -> Vec<u8> {
    let flags = NeighborAdvertisementHeader {
        router: false,
        solicited: true,
        r#override: true,
    };
    advert_with(flags, src_mac, eth_dst, src, dst, target)
}

/// A neighbour advertisement with the given flags.
fn advert_with(
    flags: NeighborAdvertisementHeader,
    src_mac: [u8; 6],
    eth_dst: [u8; 6],
    src: u128,
    dst: u128,
    target: u128,
) -> Vec<u8> {
    icmp6(
        src_mac,
        eth_dst,
        src,
        dst,
        255,
        Icmpv6Type::NeighborAdvertisement(flags),
        &nd_body(target, ipv6::OPT_TARGET_LLA, Some(src_mac)),
    )
}

// ---------------------------------------------------------------------------
// Frames out.

/// What a test checks of an IPv6 frame the switch sent. [`parse`] has
/// already verified its ICMPv6 or UDP checksum.
#[derive(Debug)]
struct Parsed {
    dst: [u8; 6],
    src: [u8; 6],
    ip: Ipv6Header,
    /// ICMPv6 type, bytes 5 to 8 of its header, and the rest.
    icmp: Option<(Icmpv6Type, [u8; 4], Vec<u8>)>,
    udp: Option<(UdpHeader, Vec<u8>)>,
}

impl Parsed {
    fn src_ip(&self) -> u128 {
        u128::from_be_bytes(self.ip.source)
    }
    fn dst_ip(&self) -> u128 {
        u128::from_be_bytes(self.ip.destination)
    }
    fn icmp(&self) -> &(Icmpv6Type, [u8; 4], Vec<u8>) {
        self.icmp.as_ref().expect("an ICMPv6 message")
    }
    fn udp(&self) -> &(UdpHeader, Vec<u8>) {
        self.udp.as_ref().expect("a UDP datagram")
    }
}

/// Parses an IPv6 frame the switch sent and asserts that its ICMPv6 or UDP
/// checksum is valid.
#[track_caller]
fn parse(f: &[u8]) -> Parsed {
    let (p, dst, src) = slice_ethernet(f);
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        panic!("not IPv6: {f:02x?}")
    };
    let h = ip.header().to_header();
    assert_eq!(
        f.len(),
        14 + Ipv6Header::LEN + usize::from(h.payload_length),
        "frame length agrees with the payload length"
    );
    let mut out = Parsed {
        dst,
        src,
        ip: h.clone(),
        icmp: None,
        udp: None,
    };
    match &p.transport {
        Some(TransportSlice::Icmpv6(icmp)) => {
            assert!(
                icmp.is_checksum_valid(h.source, h.destination),
                "ICMPv6 checksum (etherparse)"
            );
            let (s, d) = (
                u128::from_be_bytes(h.source),
                u128::from_be_bytes(h.destination),
            );
            assert_eq!(
                wire::icmpv6_checksum(s, d, icmp.slice()),
                0,
                "ICMPv6 checksum (wire)"
            );
            out.icmp = Some((icmp.icmp_type(), icmp.bytes5to8(), icmp.payload().to_vec()));
        }
        Some(TransportSlice::Udp(udp)) => {
            let uh = udp.to_header();
            assert_ne!(uh.checksum, 0, "IPv6 UDP always carries a checksum");
            let want = uh.calc_checksum_ipv6(&h, udp.payload()).unwrap();
            assert_eq!(uh.checksum, want, "UDP checksum");
            out.udp = Some((uh, udp.payload().to_vec()));
        }
        _ => {}
    }
    out
}

/// Asserts a neighbour advertisement from the router for `target` and
/// returns its flags.
#[track_caller]
fn assert_advert(
    f: &[u8],
    eth_dst: [u8; 6],
    dst: u128,
    target: u128,
) -> NeighborAdvertisementHeader {
    let p = parse(f);
    assert_eq!((p.dst, p.src), (eth_dst, ROUTER), "Ethernet addresses");
    assert_eq!(p.ip.next_header, IpNumber::IPV6_ICMP);
    assert_eq!(p.ip.hop_limit, 255, "ND hop limit");
    assert_eq!(p.src_ip(), target, "advertised from the target address");
    assert_eq!(p.dst_ip(), dst, "to the solicitor");
    let (t, _, body) = p.icmp();
    let Icmpv6Type::NeighborAdvertisement(flags) = t else {
        panic!("not a neighbour advertisement: {t:?}")
    };
    assert_eq!(body[..16], octets(target), "target address");
    let mut tlla = vec![ipv6::OPT_TARGET_LLA, 1];
    tlla.extend_from_slice(&ROUTER);
    assert_eq!(
        body[16..],
        tlla[..],
        "target link-layer option = router MAC"
    );
    *flags
}

const SOLICITED: NeighborAdvertisementHeader = NeighborAdvertisementHeader {
    router: true,
    solicited: true,
    r#override: true,
};

// ---------------------------------------------------------------------------
// Neighbour discovery.

#[test]
fn a_solicitation_for_a_router_address_is_answered_out_the_ingress_port() {
    let mut sw = routed_switch();
    sw.inject(POD_A, solicit(mac_a(), IP_A, GW_A));
    // The router's address in the other subnet is answered too.
    sw.inject(POD_A, solicit(mac_a(), IP_A, GW_B));
    sw.run();

    let replies = sw.take_sent(POD_A);
    assert_eq!(replies.len(), 2);
    for (f, target) in replies.iter().zip([GW_A, GW_B]) {
        assert_eq!(assert_advert(f, mac_a(), IP_A, target), SOLICITED);
    }
    sw.assert_silent_except(&[]);
    // The solicitor is a neighbour now (reported once: the worker holds
    // back repeats).
    assert_eq!(sw.neighbour_events(), vec![neighbour(IP_A, mac_a(), POD_A)]);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn a_solicitation_for_the_router_link_local_address_is_answered() {
    let mut sw = routed_switch();
    sw.inject(POD_C, solicit(mac_c(), ll(mac_c()), router_ll()));
    sw.run();
    let flags = assert_advert(&sw.take_one(POD_C), mac_c(), ll(mac_c()), router_ll());
    assert_eq!(flags, SOLICITED);
    sw.assert_silent_except(&[]);
    // Link-local addresses are no neighbours of the router's routes.
    assert!(sw.neighbour_events().is_empty());
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn a_unicast_probe_without_a_link_layer_option_is_answered_to_the_frame_source() {
    let mut sw = routed_switch();
    // Neighbour unreachability detection: unicast to the router, no SLLA.
    sw.inject(POD_B, ns_raw(mac_b(), ROUTER, IP_B, GW_B, 255, GW_B, None));
    sw.run();
    let flags = assert_advert(&sw.take_one(POD_B), mac_b(), IP_B, GW_B);
    assert_eq!(flags, SOLICITED);
    sw.assert_silent_except(&[]);
    assert!(
        sw.neighbour_events().is_empty(),
        "no link-layer address, nothing to report"
    );
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn a_solicitation_for_another_pod_is_switched_not_answered() {
    let mut sw = routed_switch();
    let ns = solicit(mac_a(), IP_A, IP_C);
    sw.inject(POD_A, ns.clone());
    sw.run();
    // Flooded unchanged to the other pod ports; never to the routed ports,
    // never back.
    assert_eq!(sw.take_sent(POD_B), vec![ns.clone()]);
    assert_eq!(sw.take_sent(POD_C), vec![ns]);
    sw.assert_silent_except(&[]);

    // C's answer to A is plain L2 too.
    sw.learn();
    let na = advert(mac_c(), mac_a(), IP_C, IP_A, IP_C);
    sw.inject(POD_C, na.clone());
    sw.run();
    assert_eq!(sw.take_sent(POD_A), vec![na]);
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn broken_neighbour_discovery_is_malformed() {
    let mut sw = routed_switch();
    let sn = ipv6::solicited_node(GW_A);
    let mut broken = vec![
        // Hop limit 64: could have been routed here from anywhere.
        ns_raw(mac_a(), group_mac(sn), IP_A, sn, 64, GW_A, Some(mac_a())),
        ns_raw(mac_a(), group_mac(sn), IP_A, sn, 254, GW_A, Some(mac_a())),
        // An option of length zero (checksum valid).
        icmp6(
            mac_a(),
            group_mac(sn),
            IP_A,
            sn,
            255,
            Icmpv6Type::NeighborSolicitation,
            &[octets(GW_A).as_slice(), &[1, 0, 0, 0, 0, 0, 0, 0]].concat(),
        ),
        // An option running past the message.
        icmp6(
            mac_a(),
            group_mac(sn),
            IP_A,
            sn,
            255,
            Icmpv6Type::NeighborSolicitation,
            &[octets(GW_A).as_slice(), &[1, 2, 0, 0, 0, 0, 0, 0]].concat(),
        ),
    ];
    // A solicitation and an advertisement with bad checksums.
    let mut f = solicit(mac_a(), IP_A, GW_A);
    f[14 + 40 + 2] ^= 0x5a;
    broken.push(f);
    let mut bad_na = advert(mac_b(), ROUTER, IP_B, router_ll(), IP_B);
    bad_na[14 + 40 + 3] ^= 0x01;
    let n = broken.len() as u64;
    for f in broken {
        sw.inject(POD_A, f);
    }
    sw.inject(POD_B, bad_na);
    sw.run();
    sw.assert_silent_except(&[]);
    assert!(sw.neighbour_events().is_empty(), "nothing believed");
    sw.assert_drops(&[
        (POD_A, DropReason::Malformed, n),
        (POD_B, DropReason::Malformed, 1),
    ]);

    // The intact solicitation is answered.
    sw.inject(POD_A, solicit(mac_a(), IP_A, GW_A));
    sw.run();
    assert_advert(&sw.take_one(POD_A), mac_a(), IP_A, GW_A);
    sw.assert_no_leaks();
}

#[test]
fn duplicate_address_detection_of_a_router_address_is_answered_to_all_nodes() {
    let mut sw = routed_switch();
    sw.inject(POD_C, dad(mac_c(), GW_A));
    sw.run();
    let flags = assert_advert(&sw.take_one(POD_C), group_mac(ALL_NODES), ALL_NODES, GW_A);
    assert!(
        !flags.solicited,
        "unsolicited: S must be clear (RFC 4861 7.2.4)"
    );
    assert!(flags.router && flags.r#override, "{flags:?}");
    sw.assert_silent_except(&[]);
    assert!(sw.neighbour_events().is_empty(), ":: is nobody");
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn the_host_port_gets_the_router_mac_for_every_address_it_solicits() {
    let mut sw = routed_switch();
    // A pod, an address on no route, a router address.
    let asked = [IP_A, NOWHERE, GW_B];
    for a in asked {
        sw.inject(HOST, solicit(host_mac(), NODE_IP, a));
    }
    sw.run();
    let replies = sw.take_sent(HOST);
    assert_eq!(replies.len(), asked.len());
    for (f, a) in replies.iter().zip(asked) {
        let flags = assert_advert(f, host_mac(), NODE_IP, a);
        assert!(flags.solicited && flags.router, "{flags:?}");
    }
    sw.assert_silent_except(&[]);

    // The kernel's duplicate address detection of its own new address is
    // not answered (that would make the address fail), nor switched.
    sw.inject(HOST, dad(host_mac(), NODE_IP + 1));
    sw.run();
    sw.assert_silent_except(&[]);
    assert!(
        sw.neighbour_events().is_empty(),
        "the host port's kernel is configured, not learned"
    );
    sw.assert_drops(&[]);
    assert_eq!(sw.stats(HOST).rx_packets, 4);
    sw.assert_no_leaks();
}

#[test]
fn an_advertisement_to_the_router_is_consumed_and_reported() {
    let mut sw = routed_switch();
    sw.inject(POD_B, advert(mac_b(), ROUTER, IP_B, router_ll(), IP_B));
    sw.run();
    sw.assert_silent_except(&[]);
    assert_eq!(sw.stats(POD_B).rx_packets, 1);
    sw.assert_drops(&[]);
    assert_eq!(sw.neighbour_events(), vec![neighbour(IP_B, mac_b(), POD_B)]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// ICMPv6 echo.

#[test]
fn echo_to_a_router_address_is_answered() {
    let mut sw = routed_switch();
    let req = ping6(mac_a(), ROUTER, IP_A, GW_A, 64, 1);
    // Hop limit 1 is fine for the router itself, and so is its link-local
    // address.
    sw.inject(POD_A, req.clone());
    sw.inject(POD_A, ping6(mac_a(), ROUTER, IP_A, GW_B, 1, 2));
    sw.inject(
        POD_A,
        ping6(mac_a(), ROUTER, ll(mac_a()), router_ll(), 1, 3),
    );
    sw.run();

    let replies = sw.take_sent(POD_A);
    assert_eq!(replies.len(), 3);
    let expect = [
        (GW_A, IP_A, 1),
        (GW_B, IP_A, 2),
        (router_ll(), ll(mac_a()), 3),
    ];
    for (f, (from, to, seq)) in replies.iter().zip(expect) {
        let p = parse(f);
        assert_eq!((p.dst, p.src), (mac_a(), ROUTER));
        assert_eq!((p.src_ip(), p.dst_ip()), (from, to), "addresses swapped");
        assert!(p.ip.hop_limit > 1, "a fresh hop limit");
        let (t, _, payload) = p.icmp();
        match t {
            Icmpv6Type::EchoReply(e) => assert_eq!((e.id, e.seq), (0x66, seq)),
            other => panic!("not an echo reply: {other:?}"),
        }
        assert_eq!(payload.as_slice(), b"anyone home?");
    }
    assert_eq!(replies[0].len(), req.len());
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// Forwarding.

#[track_caller]
fn assert_routed(f: &[u8], dst_mac: [u8; 6], src: u128, dst: u128, hop: u8, payload: &[u8]) {
    let p = parse(f);
    assert_eq!((p.dst, p.src), (dst_mac, ROUTER), "MACs rewritten");
    assert_eq!((p.src_ip(), p.dst_ip()), (src, dst), "addresses kept");
    assert_eq!(p.ip.hop_limit, hop, "hop limit decremented once");
    let (u, data) = p.udp();
    assert_eq!((u.source_port, u.destination_port), (5000, 6000));
    assert_eq!(data.as_slice(), payload);
}

#[test]
fn routed_between_subnets_to_resolved_neighbours() {
    let mut sw = routed_switch();
    sw.teach(POD_B, mac_b());
    know_neighbour(&mut sw, IP_B, mac_b(), POD_B);

    let f = udp(mac_a(), ROUTER, IP_A, IP_B, 64, b"A to B");
    sw.inject(POD_A, f.clone());
    sw.run();
    let out = sw.take_one(POD_B);
    assert_routed(&out, mac_b(), IP_A, IP_B, 63, b"A to B");
    assert_eq!(out.len(), f.len());
    sw.assert_silent_except(&[]);

    // Back from B to A, whose neighbour entry comes from A's own
    // solicitation for its gateway.
    sw.teach(POD_A, mac_a());
    sw.inject(POD_A, solicit(mac_a(), IP_A, GW_A));
    sw.run();
    sw.take_sent(POD_A);
    let events = sw.events();
    sw.learn_neighbours(events);
    sw.inject(POD_B, udp(mac_b(), ROUTER, IP_B, IP_A, 2, b"B to A"));
    sw.run();
    assert_routed(&sw.take_one(POD_A), mac_a(), IP_B, IP_A, 1, b"B to A");
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn a_packet_to_an_unresolved_neighbour_waits_for_a_solicitation_and_is_delivered() {
    let mut sw = routed_switch();
    let target = NET_B | 0x30;
    let target_mac = mac(0x30);
    sw.inject(POD_A, udp(mac_a(), ROUTER, IP_A, target, 64, b"held"));
    sw.run();

    // The router solicits on the bridge from its link-local address, to
    // the target's solicited-node group, on every pod port (the ingress
    // port too: the neighbour may be behind it).
    let sn = ipv6::solicited_node(target);
    for id in [POD_A, POD_B, POD_C] {
        let p = parse(&sw.take_one(id));
        assert_eq!(
            (p.dst, p.src),
            (group_mac(sn), ROUTER),
            "Ethernet addresses"
        );
        assert_eq!(p.dst, [0x33, 0x33, 0xff, 0, 0, 0x30]);
        assert_eq!((p.src_ip(), p.dst_ip()), (router_ll(), sn));
        assert_eq!(p.ip.hop_limit, 255);
        let (t, _, body) = p.icmp();
        assert_eq!(*t, Icmpv6Type::NeighborSolicitation);
        assert_eq!(body[..16], octets(target));
        assert_eq!(body[16..], [&[1u8, 1][..], &ROUTER].concat(), "SLLA");
    }
    sw.assert_silent_except(&[]);
    assert_eq!(sw.frames_held(), 1, "the packet waits");
    sw.assert_drops(&[]);

    // The neighbour (behind port 1) answers to the router's link-local
    // address; the controller records it.
    sw.inject(
        POD_B,
        advert(target_mac, ROUTER, target, router_ll(), target),
    );
    sw.run();
    sw.assert_silent_except(&[]);
    sw.learn();
    let events = sw.events();
    assert_eq!(
        events,
        vec![WorkerEvent::Neighbour(neighbour(target, target_mac, POD_B))]
    );
    assert!(sw.learn_neighbours(events).is_empty());

    // The new snapshot releases the packet at once.
    sw.run();
    assert_routed(&sw.take_one(POD_B), target_mac, IP_A, target, 63, b"held");
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn an_uplink_next_hop_is_solicited_on_the_uplink_only() {
    let mut sw = routed_switch();
    let gw: u128 = 0x2001_0db8_0000_0001_0000_0000_0000_00fe;
    let gw_mac = [0x02, 0x77, 0, 0, 0, 0xfe];
    route(
        &mut sw,
        0,
        0,
        NextHop::Resolve {
            link: Link::Port(UPLINK),
            gw: Some(ip6(gw)),
        },
    );
    sw.publish();
    let away: u128 = 0x2001_0db8_00ff_0000_0000_0000_0000_0001;
    sw.inject(POD_A, udp(mac_a(), ROUTER, IP_A, away, 64, b"away"));
    sw.run();

    // The gateway is solicited, not the destination, and only there.
    let sn = ipv6::solicited_node(gw);
    let p = parse(&sw.take_one(UPLINK));
    assert_eq!((p.dst, p.src), (group_mac(sn), ROUTER));
    assert_eq!((p.src_ip(), p.dst_ip()), (router_ll(), sn));
    let (t, _, body) = p.icmp();
    assert_eq!(*t, Icmpv6Type::NeighborSolicitation);
    assert_eq!(body[..16], octets(gw));
    sw.assert_silent_except(&[]);

    // The gateway answers; its advertisement is the router's, consumed.
    sw.inject(UPLINK, advert(gw_mac, ROUTER, gw, router_ll(), gw));
    sw.run();
    sw.assert_silent_except(&[]);
    let events = sw.events();
    assert_eq!(
        events,
        vec![WorkerEvent::Neighbour(neighbour(gw, gw_mac, UPLINK))]
    );
    sw.learn_neighbours(events);
    sw.run();
    assert_routed(&sw.take_one(UPLINK), gw_mac, IP_A, away, 63, b"away");
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// ICMPv6 errors.

/// Asserts an ICMPv6 error from the router address `from` to `to` (on
/// `mac_to`) and returns its type, bytes 5 to 8 and the quoted packet.
#[track_caller]
fn assert_icmp_error(
    f: &[u8],
    mac_to: [u8; 6],
    from: u128,
    to: u128,
) -> (Icmpv6Type, [u8; 4], Vec<u8>) {
    let p = parse(f);
    assert_eq!((p.dst, p.src), (mac_to, ROUTER), "back to the sender");
    assert_eq!((p.src_ip(), p.dst_ip()), (from, to));
    assert_eq!(p.ip.next_header, IpNumber::IPV6_ICMP);
    assert!(
        f.len() - 14 <= ipv6::MIN_MTU,
        "ICMPv6 errors fit the minimum MTU: {}",
        f.len() - 14
    );
    p.icmp().clone()
}

#[test]
fn hop_limit_expiry_is_answered_with_time_exceeded_from_the_senders_gateway() {
    let mut sw = routed_switch();
    let from_a = udp(mac_a(), ROUTER, IP_A, IP_B, 1, &[0x5a; 1400]);
    let from_b = udp(mac_b(), ROUTER, IP_B, IP_A, 0, b"zero");
    sw.inject(POD_A, from_a.clone());
    sw.inject(POD_B, from_b.clone());
    sw.run();

    let (t, _, quoted) = assert_icmp_error(&sw.take_one(POD_A), mac_a(), GW_A, IP_A);
    assert_eq!(
        t,
        Icmpv6Type::TimeExceeded(TimeExceededCode::HopLimitExceeded)
    );
    // As much of the packet as fits in 1280 bytes, as received.
    assert_eq!(quoted.len(), ipv6::MIN_MTU - 48);
    assert_eq!(quoted[..], from_a[14..14 + quoted.len()]);

    let (t, _, quoted) = assert_icmp_error(&sw.take_one(POD_B), mac_b(), GW_B, IP_B);
    assert_eq!(
        t,
        Icmpv6Type::TimeExceeded(TimeExceededCode::HopLimitExceeded)
    );
    assert_eq!(quoted[..], from_b[14..], "a small packet is quoted whole");
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[
        (POD_A, DropReason::TtlExpired, 1),
        (POD_B, DropReason::TtlExpired, 1),
    ]);
    sw.assert_no_leaks();
}

#[test]
fn no_route_is_answered_with_destination_unreachable() {
    let mut sw = routed_switch();
    let f = udp(mac_a(), ROUTER, IP_A, NOWHERE, 64, b"nowhere");
    sw.inject(POD_A, f.clone());
    sw.run();
    let (t, rest, quoted) = assert_icmp_error(&sw.take_one(POD_A), mac_a(), GW_A, IP_A);
    assert_eq!(
        t,
        Icmpv6Type::DestinationUnreachable(DestUnreachableCode::NoRoute)
    );
    assert_eq!(rest, [0; 4], "unused");
    assert_eq!(quoted[..], f[14..]);
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[(POD_A, DropReason::NoRoute, 1)]);
    sw.assert_no_leaks();
}

#[test]
fn too_big_for_the_output_mtu_is_answered_with_packet_too_big() {
    let mut sw = routed_switch();
    // B by a configured route (its port's MTU), a neighbour behind C on
    // the bridge (the bridge's MTU).
    route(
        &mut sw,
        IP_B,
        128,
        NextHop::Peer {
            port: POD_B,
            mac: key(mac_b()),
        },
    );
    sw.configure_port(POD_B, |e| e.mtu = 1280);
    sw.l3.bridge_mtu = 1400;
    sw.publish();
    let far = NET_B | 0x40;
    know_neighbour(&mut sw, far, mac(0x28), POD_C);
    sw.teach(POD_C, mac(0x28));
    let payload = |ip_len: usize| vec![0x33u8; ip_len - 48];

    // Exactly the MTU passes.
    sw.inject(POD_A, udp(mac_a(), ROUTER, IP_A, IP_B, 64, &payload(1280)));
    sw.inject(POD_A, udp(mac_a(), ROUTER, IP_A, far, 64, &payload(1400)));
    sw.run();
    assert_eq!(sw.take_one(POD_B).len(), 14 + 1280);
    assert_eq!(sw.take_one(POD_C).len(), 14 + 1400);
    sw.assert_silent_except(&[]);

    // One byte more: packet too big with the MTU (a router never fragments).
    let big = udp(mac_a(), ROUTER, IP_A, IP_B, 64, &payload(1281));
    sw.inject(POD_A, big.clone());
    sw.inject(POD_A, udp(mac_a(), ROUTER, IP_A, far, 64, &payload(1401)));
    sw.run();
    let errors = sw.take_sent(POD_A);
    assert_eq!(errors.len(), 2);
    let (t, _, quoted) = assert_icmp_error(&errors[0], mac_a(), GW_A, IP_A);
    assert_eq!(t, Icmpv6Type::PacketTooBig { mtu: 1280 });
    assert_eq!(quoted[..], big[14..14 + quoted.len()]);
    let (t, _, _) = assert_icmp_error(&errors[1], mac_a(), GW_A, IP_A);
    assert_eq!(t, Icmpv6Type::PacketTooBig { mtu: 1400 });
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[(POD_A, DropReason::FragNeeded, 2)]);
    sw.assert_no_leaks();
}

#[test]
fn icmpv6_errors_are_never_answered_with_errors() {
    let mut sw = routed_switch();
    let error =
        |dst: u128, hop: u8, t: Icmpv6Type| icmp6(mac_a(), ROUTER, IP_A, dst, hop, t, &[0x60; 48]);
    let unreachable = Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Port);
    sw.inject(POD_A, error(IP_B, 1, unreachable));
    sw.inject(POD_A, error(NOWHERE, 64, unreachable));
    sw.inject(
        POD_A,
        error(NOWHERE, 64, Icmpv6Type::PacketTooBig { mtu: 1280 }),
    );
    sw.inject(
        POD_A,
        error(
            IP_B,
            0,
            Icmpv6Type::TimeExceeded(TimeExceededCode::HopLimitExceeded),
        ),
    );
    sw.run();
    sw.assert_silent_except(&[]);

    // An echo request is not an error: its expiry is reported.
    sw.inject(POD_A, ping6(mac_a(), ROUTER, IP_A, IP_B, 1, 9));
    sw.run();
    let (t, _, _) = assert_icmp_error(&sw.take_one(POD_A), mac_a(), GW_A, IP_A);
    assert!(matches!(t, Icmpv6Type::TimeExceeded(_)), "{t:?}");
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[
        (POD_A, DropReason::TtlExpired, 3),
        (POD_A, DropReason::NoRoute, 2),
    ]);
    sw.assert_no_leaks();
}

#[test]
fn link_local_and_multicast_destinations_are_not_routed() {
    let mut sw = routed_switch();
    know_neighbour(&mut sw, IP_B, mac_b(), POD_B);
    let ll_b = ll(mac_b());
    let mdns: u128 = 0xff02_0000_0000_0000_0000_0000_0000_00fb;
    let global_group: u128 = 0xff0e_0000_0000_0000_0000_0000_0000_0101;
    // All sent to the router's MAC.
    sw.inject(POD_A, udp(mac_a(), ROUTER, IP_A, ll_b, 64, b"ll"));
    sw.inject(POD_A, udp(mac_a(), ROUTER, IP_A, mdns, 64, b"mdns"));
    sw.inject(POD_A, udp(mac_a(), ROUTER, IP_A, global_group, 64, b"mc"));
    // A link-local source may not leave its link either.
    sw.inject(POD_A, udp(mac_a(), ROUTER, ll(mac_a()), IP_B, 64, b"src"));
    // Nor is any of it answered with an error, even when it would expire.
    sw.inject(POD_A, udp(mac_a(), ROUTER, IP_A, ll_b, 1, b"ll, hop 1"));
    sw.run();
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[(POD_A, DropReason::Unsupported, 5)]);

    // The same UDP to B's global address is routed.
    sw.inject(POD_A, udp(mac_a(), ROUTER, IP_A, IP_B, 64, b"global"));
    sw.run();
    assert_eq!(
        sw.take_sent(POD_B).len() + sw.take_sent(POD_C).len(),
        2,
        "flooded"
    );
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// Port security.

#[test]
fn a_guarded_pod_may_only_send_from_its_own_ipv6_addresses() {
    let mut sw = routed_switch();
    route(
        &mut sw,
        IP_B,
        128,
        NextHop::Peer {
            port: POD_B,
            mac: key(mac_b()),
        },
    );
    sw.publish();
    sw.configure_port(POD_A, |e| {
        e.guard = Some(Arc::new(PortGuard {
            mac: Some(key(mac_a())),
            v4: Vec::new(),
            v6: vec![IP_A],
        }))
    });

    // Its own address: routed. Its link-local address: solicitations
    // answered. Duplicate address detection (::) for its own address:
    // switched like any solicitation for a pod.
    sw.inject(POD_A, udp(mac_a(), ROUTER, IP_A, IP_B, 64, b"me"));
    sw.inject(POD_A, solicit(mac_a(), ll(mac_a()), GW_A));
    let own_dad = dad(mac_a(), IP_A);
    sw.inject(POD_A, own_dad.clone());
    // An advertisement of its own address, unsolicited, to all nodes.
    let unsolicited = NeighborAdvertisementHeader {
        router: false,
        solicited: false,
        r#override: true,
    };
    let own_na = advert_with(
        unsolicited,
        mac_a(),
        group_mac(ALL_NODES),
        IP_A,
        ALL_NODES,
        IP_A,
    );
    sw.inject(POD_A, own_na.clone());
    sw.run();
    assert_advert(&sw.take_one(POD_A), mac_a(), ll(mac_a()), GW_A);
    let to_b = sw.take_sent(POD_B);
    assert_eq!(to_b.len(), 3, "routed, and the two flooded ND messages");
    assert_routed(&to_b[0], mac_b(), IP_A, IP_B, 63, b"me");
    assert_eq!(to_b[1..], [own_dad.clone(), own_na.clone()]);
    assert_eq!(sw.take_sent(POD_C), vec![own_dad, own_na]);
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[]);
    // The advertisement told the router where A is.
    assert_eq!(sw.neighbour_events(), vec![neighbour(IP_A, mac_a(), POD_A)]);

    // Spoofs: another global source; an advertisement (from its own
    // address, or its link-local one) for C's address; an advertisement
    // for the router's address.
    sw.inject(POD_A, udp(mac_a(), ROUTER, NET_A | 0x99, IP_B, 64, b"ip"));
    sw.inject(POD_A, advert(mac_a(), mac_c(), IP_A, IP_C, IP_C));
    sw.inject(
        POD_A,
        advert(mac_a(), group_mac(ALL_NODES), ll(mac_a()), ALL_NODES, IP_C),
    );
    sw.inject(POD_A, advert(mac_a(), ROUTER, IP_A, router_ll(), GW_A));
    sw.run();
    sw.assert_silent_except(&[]);
    assert!(
        sw.neighbour_events().is_empty(),
        "a spoofed advertisement poisons no neighbour"
    );
    sw.assert_drops(&[(POD_A, DropReason::SpoofedSource, 4)]);

    // Unguarded ports are not checked.
    sw.inject(POD_C, udp(mac_c(), ROUTER, NET_A | 0x77, IP_B, 64, b"c"));
    sw.run();
    assert_eq!(sw.take_sent(POD_B).len(), 1);
    sw.assert_no_leaks();
}
