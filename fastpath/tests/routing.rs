//! IPv4 routing as a pod, the node and the network see it: the router's
//! ARP answers, its ICMP echo replies, packets routed between subnets and
//! off the node, next hops resolved by ARP while packets wait, ICMP errors,
//! and the drops of everything the router refuses.
//!
//! Every test runs one worker over memory ports with the test playing the
//! controller (see `common`). Frames are built with etherparse's
//! `PacketBuilder` and what the switch sends is parsed back with etherparse
//! ([`parse`] checks every checksum on the way), so a test states fields,
//! not byte blobs.
//!
//! The switch of most tests ([`routed_switch`]):
//!
//! ```text
//! port 0  pod A  10.244.1.10  02:00:00:00:00:0a   subnet 10.244.1.0/24, router 10.244.1.1
//! port 1  pod B  10.244.2.20  02:00:00:00:00:0b   subnet 10.244.2.0/24, router 10.244.2.1
//! port 2  pod C  10.244.1.11  02:00:00:00:00:0c
//! port 3  uplink (node network 192.168.0.0/24, gateway 192.168.0.254)
//! port 4  host port (the node's kernel, 02:00:00:00:00:40)
//! ```
//!
//! The router addresses are `Local` /32 routes plus connected /24 routes
//! resolved on the bridge, as the controller builds them; tests add pod
//! /32 `Peer` routes, uplink routes and a default route where they need
//! them.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::frames::{
    NODE_IP, ROUTER, UPLINK_GW, UPLINK_GW_MAC, arp, host_mac, ip4, know_neighbour, mac_a, mac_b,
    mac_c, neighbour, ping4, route, run_until, slice_ethernet, udp, v4,
};
use common::{BROADCAST, Config, TestSwitch, fix_ipv4_checksum, frame, key, mac};
use etherparse::icmpv4::{DestUnreachableHeader, TimeExceededCode};
use etherparse::{
    ArpOperation, ArpPacket, Icmpv4Type, IpFragOffset, IpHeaders, IpNumber, Ipv4Header, NetSlice,
    PacketBuilder, TransportSlice, UdpHeader,
};
use fastpath::PortId;
use fastpath::drop::DropReason;
use fastpath::l3::resolver::MAX_HELD;
use fastpath::l3::table::{Link, NextHop};
use fastpath::snapshot::{PortGuard, PortRole};
use fastpath::worker::WorkerEvent;

const POD_A: PortId = 0;
const POD_B: PortId = 1;
const POD_C: PortId = 2;
const UPLINK: PortId = 3;
const HOST: PortId = 4;

const GW_A: [u8; 4] = [10, 244, 1, 1];
const GW_B: [u8; 4] = [10, 244, 2, 1];
const IP_A: [u8; 4] = [10, 244, 1, 10];
const IP_B: [u8; 4] = [10, 244, 2, 20];
const IP_C: [u8; 4] = [10, 244, 1, 11];
/// The switch of the module documentation, routing, with no pod routes,
/// no uplink routes and no default route yet.
fn routed_switch() -> TestSwitch {
    routed_switch_with(Config::default())
}

fn routed_switch_with(cfg: Config) -> TestSwitch {
    let mut sw = TestSwitch::new(cfg);
    for id in 0..=HOST {
        sw.add_port(id);
    }
    sw.configure_port(UPLINK, |e| e.role = PortRole::Uplink);
    sw.configure_port(HOST, |e| e.role = PortRole::Host);
    sw.l3.router_mac = key(ROUTER);
    sw.l3.addrs4 = vec![(v4(GW_A), 24), (v4(GW_B), 24)];
    let bridge = NextHop::Resolve {
        link: Link::Bridge,
        gw: None,
    };
    route(&mut sw, GW_A, 32, NextHop::Local);
    route(&mut sw, GW_B, 32, NextHop::Local);
    route(&mut sw, [10, 244, 1, 0], 24, bridge);
    route(&mut sw, [10, 244, 2, 0], 24, bridge);
    sw.publish();
    sw
}

/// Pod /32 routes to A, B and C with their configured MACs, as for pods
/// declared with `--ip` and `--mac`.
fn add_pod_routes(sw: &mut TestSwitch) {
    for (addr, port, m) in [
        (IP_A, POD_A, mac_a()),
        (IP_B, POD_B, mac_b()),
        (IP_C, POD_C, mac_c()),
    ] {
        route(sw, addr, 32, NextHop::Peer { port, mac: key(m) });
    }
    sw.publish();
}

/// The node network on the uplink and a default route via its gateway.
fn add_uplink_routes(sw: &mut TestSwitch) {
    route(
        sw,
        [192, 168, 0, 0],
        24,
        NextHop::Resolve {
            link: Link::Port(UPLINK),
            gw: None,
        },
    );
    route(
        sw,
        [0, 0, 0, 0],
        0,
        NextHop::Resolve {
            link: Link::Port(UPLINK),
            gw: Some(ip4(UPLINK_GW)),
        },
    );
    sw.publish();
}

// ---------------------------------------------------------------------------
// Frames in.

/// A UDP datagram with the IPv4 header `h` (lengths, protocol and checksum
/// are filled in by the builder).
fn udp_with_header(src_mac: [u8; 6], dst_mac: [u8; 6], h: Ipv4Header, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ip(IpHeaders::Ipv4(h, Default::default()))
        .udp(5000, 6000)
        .write(&mut out, payload)
        .unwrap();
    out
}

fn header(src: [u8; 4], dst: [u8; 4], ttl: u8) -> Ipv4Header {
    Ipv4Header::new(0, ttl, IpNumber::UDP, src, dst).unwrap()
}

/// An ICMP echo request.
fn ping(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
    seq: u16,
) -> Vec<u8> {
    ping4(
        src_mac,
        dst_mac,
        src,
        dst,
        ttl,
        (0x77, seq),
        b"are you there?",
    )
}

fn arp_request(sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    arp(BROADCAST, ArpOperation::REQUEST, sha, spa, [0; 6], tpa)
}

/// The reply a Linux neighbour sends to the router's request: to the
/// router's MAC, target address as the request's sender (0.0.0.0 for a probe).
fn arp_reply_to_router(sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    arp(ROUTER, ArpOperation::REPLY, sha, spa, ROUTER, tpa)
}

// ---------------------------------------------------------------------------
// Frames out.

/// What a test checks of a frame the switch sent. [`parse`] has already
/// verified every checksum it carries.
#[derive(Debug)]
struct Parsed {
    dst: [u8; 6],
    src: [u8; 6],
    ip: Option<Ipv4Header>,
    arp: Option<ArpPacket>,
    icmp: Option<(Icmpv4Type, Vec<u8>)>,
    udp: Option<(UdpHeader, Vec<u8>)>,
}

impl Parsed {
    fn ip(&self) -> &Ipv4Header {
        self.ip.as_ref().expect("an IPv4 packet")
    }
    fn arp(&self) -> &ArpPacket {
        self.arp.as_ref().expect("an ARP packet")
    }
    fn icmp(&self) -> &(Icmpv4Type, Vec<u8>) {
        self.icmp.as_ref().expect("an ICMP message")
    }
    fn udp(&self) -> &(UdpHeader, Vec<u8>) {
        self.udp.as_ref().expect("a UDP datagram")
    }
}

/// Parses a frame the switch sent and asserts that its IPv4 header, ICMP
/// and UDP checksums are valid.
#[track_caller]
fn parse(f: &[u8]) -> Parsed {
    let (p, dst, src) = slice_ethernet(f);
    let mut out = Parsed {
        dst,
        src,
        ip: None,
        arp: None,
        icmp: None,
        udp: None,
    };
    match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header().to_header();
            assert_eq!(
                h.header_checksum,
                h.calc_header_checksum(),
                "IPv4 header checksum"
            );
            match &p.transport {
                Some(TransportSlice::Icmpv4(icmp)) => {
                    let mut check = icmp.header();
                    check.update_checksum(icmp.payload());
                    assert_eq!(icmp.checksum(), check.checksum, "ICMP checksum");
                    out.icmp = Some((icmp.icmp_type(), icmp.payload().to_vec()));
                }
                Some(TransportSlice::Udp(udp)) => {
                    let uh = udp.to_header();
                    if uh.checksum != 0 {
                        let want = uh.calc_checksum_ipv4(&h, udp.payload()).unwrap();
                        assert_eq!(uh.checksum, want, "UDP checksum");
                    }
                    out.udp = Some((uh, udp.payload().to_vec()));
                }
                _ => {}
            }
            out.ip = Some(h);
        }
        Some(NetSlice::Arp(a)) => out.arp = Some(a.to_packet()),
        _ => {}
    }
    out
}

/// Asserts the ARP request the router sends for `target` from `sender`.
#[track_caller]
fn assert_router_asks(f: &[u8], sender: [u8; 4], target: [u8; 4]) {
    let p = parse(f);
    assert_eq!((p.dst, p.src), (BROADCAST, ROUTER), "Ethernet addresses");
    let a = p.arp();
    assert_eq!(a.operation, ArpOperation::REQUEST);
    assert_eq!(a.sender_hw_addr(), ROUTER);
    assert_eq!(a.sender_protocol_addr(), sender, "sender address");
    assert_eq!(a.target_protocol_addr(), target, "target address");
}

// ---------------------------------------------------------------------------
// ARP.

#[test]
fn arp_for_a_router_address_is_answered_out_the_ingress_port_only() {
    let mut sw = routed_switch();
    sw.inject(POD_A, arp_request(mac_a(), IP_A, GW_A));
    // The router answers for its address in the other subnet too, as a
    // Linux router does.
    sw.inject(POD_A, arp_request(mac_a(), IP_A, GW_B));
    sw.run();

    let replies = sw.take_sent(POD_A);
    assert_eq!(replies.len(), 2);
    for (f, asked) in replies.iter().zip([GW_A, GW_B]) {
        let p = parse(f);
        assert_eq!((p.dst, p.src), (mac_a(), ROUTER), "to the requester");
        let a = p.arp();
        assert_eq!(a.operation, ArpOperation::REPLY);
        assert_eq!(a.sender_hw_addr(), ROUTER);
        assert_eq!(a.sender_protocol_addr(), asked);
        assert_eq!(a.target_hw_addr(), mac_a());
        assert_eq!(a.target_protocol_addr(), IP_A);
    }
    sw.assert_silent_except(&[]);
    // The requester is a neighbour now (reported once: the worker holds
    // back repeats).
    assert_eq!(sw.neighbour_events(), vec![neighbour(IP_A, mac_a(), POD_A)]);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn arp_for_another_pod_is_switched_not_answered() {
    let mut sw = routed_switch();
    let req = arp_request(mac_a(), IP_A, IP_C);
    sw.inject(POD_A, req.clone());
    sw.run();
    // Flooded unchanged to the other pod ports; never to the uplink or the
    // host port, never back.
    assert_eq!(sw.take_sent(POD_B), vec![req.clone()]);
    assert_eq!(sw.take_sent(POD_C), vec![req]);
    sw.assert_silent_except(&[]);

    // C's answer to A is plain L2 too.
    sw.learn();
    let reply = arp(mac_a(), ArpOperation::REPLY, mac_c(), IP_C, mac_a(), IP_A);
    sw.inject(POD_C, reply.clone());
    sw.run();
    assert_eq!(sw.take_sent(POD_A), vec![reply]);
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn arp_reply_to_the_router_is_consumed_and_reported() {
    let mut sw = routed_switch();
    sw.inject(POD_B, arp_reply_to_router(mac_b(), IP_B, GW_B));
    sw.run();
    sw.assert_silent_except(&[]);
    assert_eq!(sw.stats(POD_B).rx_packets, 1);
    sw.assert_drops(&[]);
    assert_eq!(sw.neighbour_events(), vec![neighbour(IP_B, mac_b(), POD_B)]);
    sw.assert_no_leaks();
}

#[test]
fn the_host_port_gets_the_router_mac_for_every_address_it_asks() {
    let mut sw = routed_switch();
    add_pod_routes(&mut sw);
    // A pod, a Service VIP, an address on no route at all.
    let asked = [IP_A, [10, 96, 0, 1], [172, 16, 9, 9]];
    for a in asked {
        sw.inject(HOST, arp_request(host_mac(), NODE_IP, a));
    }
    sw.run();
    let replies = sw.take_sent(HOST);
    assert_eq!(replies.len(), asked.len());
    for (f, a) in replies.iter().zip(asked) {
        let p = parse(f);
        assert_eq!((p.dst, p.src), (host_mac(), ROUTER));
        let r = p.arp();
        assert_eq!(r.operation, ArpOperation::REPLY);
        assert_eq!(r.sender_hw_addr(), ROUTER);
        assert_eq!(r.sender_protocol_addr(), a);
        assert_eq!(r.target_hw_addr(), host_mac());
        assert_eq!(r.target_protocol_addr(), NODE_IP);
    }
    sw.assert_silent_except(&[]);
    assert!(
        sw.neighbour_events().is_empty(),
        "the host port's kernel is configured, not learned"
    );

    // And the node reaches pods through the router.
    let f = udp(host_mac(), ROUTER, NODE_IP, IP_B, 64, b"from the node");
    sw.inject(HOST, f);
    sw.run();
    let p = parse(&sw.take_one(POD_B));
    assert_eq!((p.dst, p.src), (mac_b(), ROUTER));
    assert_eq!(p.ip().time_to_live, 63);
    assert_eq!(p.udp().1, b"from the node");
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// ICMP echo.

#[test]
fn ping_to_a_router_address_is_answered() {
    let mut sw = routed_switch();
    let req = ping(mac_a(), ROUTER, IP_A, GW_A, 64, 1);
    // TTL 1 is fine for the router itself.
    let req_b = ping(mac_a(), ROUTER, IP_A, GW_B, 1, 2);
    sw.inject(POD_A, req.clone());
    sw.inject(POD_A, req_b);
    sw.run();

    let replies = sw.take_sent(POD_A);
    assert_eq!(replies.len(), 2);
    for (f, (gw, seq)) in replies.iter().zip([(GW_A, 1), (GW_B, 2)]) {
        let p = parse(f);
        assert_eq!((p.dst, p.src), (mac_a(), ROUTER));
        let h = p.ip();
        assert_eq!((h.source, h.destination), (gw, IP_A), "addresses swapped");
        assert_eq!(h.protocol, IpNumber::ICMP);
        assert!(h.time_to_live > 1, "a fresh TTL");
        let (t, payload) = p.icmp();
        match t {
            Icmpv4Type::EchoReply(e) => assert_eq!((e.id, e.seq), (0x77, seq)),
            other => panic!("not an echo reply: {other:?}"),
        }
        assert_eq!(payload.as_slice(), b"are you there?");
    }
    assert_eq!(replies[0].len(), req.len());
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// Forwarding.

#[track_caller]
fn assert_routed(f: &[u8], dst_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], ttl: u8, payload: &[u8]) {
    let p = parse(f);
    assert_eq!((p.dst, p.src), (dst_mac, ROUTER), "MACs rewritten");
    let h = p.ip();
    assert_eq!((h.source, h.destination), (src, dst), "addresses kept");
    assert_eq!(h.time_to_live, ttl, "TTL decremented once");
    let (u, data) = p.udp();
    assert_eq!((u.source_port, u.destination_port), (5000, 6000));
    assert_ne!(u.checksum, 0, "the UDP checksum is still there (and valid)");
    assert_eq!(data.as_slice(), payload);
}

#[test]
fn routed_between_subnets_to_a_resolved_neighbour_on_the_bridge() {
    let mut sw = routed_switch();
    sw.teach(POD_B, mac_b());
    // B answered an ARP request of the router before.
    sw.inject(POD_B, arp_reply_to_router(mac_b(), IP_B, GW_B));
    sw.run();
    let events = sw.events();
    sw.learn_neighbours(events);

    let f = udp(mac_a(), ROUTER, IP_A, IP_B, 64, b"A to B");
    sw.inject(POD_A, f.clone());
    sw.run();
    let out = sw.take_one(POD_B);
    assert_routed(&out, mac_b(), IP_A, IP_B, 63, b"A to B");
    assert_eq!(out.len(), f.len());
    sw.assert_silent_except(&[]);

    // The same from the other side: B to A, whose neighbour entry comes
    // from A's own ARP request for its gateway.
    sw.teach(POD_A, mac_a());
    sw.inject(POD_A, arp_request(mac_a(), IP_A, GW_A));
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
fn routed_to_pods_with_configured_addresses_without_arp() {
    let mut sw = routed_switch();
    add_pod_routes(&mut sw);
    // Nothing learned, no neighbour: the /32 routes carry port and MAC.
    sw.inject(POD_A, udp(mac_a(), ROUTER, IP_A, IP_B, 64, b"to B"));
    sw.inject(POD_A, udp(mac_a(), ROUTER, IP_A, IP_C, 17, b"to C"));
    sw.inject(POD_B, udp(mac_b(), ROUTER, IP_B, IP_A, 255, b"to A"));
    sw.run();
    assert_routed(&sw.take_one(POD_B), mac_b(), IP_A, IP_B, 63, b"to B");
    // Same subnet, but sent to the router: routed all the same.
    assert_routed(&sw.take_one(POD_C), mac_c(), IP_A, IP_C, 16, b"to C");
    assert_routed(&sw.take_one(POD_A), mac_a(), IP_B, IP_A, 254, b"to A");
    sw.assert_silent_except(&[]);
    assert!(
        sw.neighbour_events().is_empty(),
        "no ARP for configured pods"
    );
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn routed_off_the_node_and_in_from_the_uplink() {
    let mut sw = routed_switch();
    add_pod_routes(&mut sw);
    add_uplink_routes(&mut sw);
    know_neighbour(&mut sw, UPLINK_GW, UPLINK_GW_MAC, UPLINK);

    sw.inject(POD_A, udp(mac_a(), ROUTER, IP_A, [8, 8, 8, 8], 64, b"out"));
    sw.run();
    assert_routed(
        &sw.take_one(UPLINK),
        UPLINK_GW_MAC,
        IP_A,
        [8, 8, 8, 8],
        63,
        b"out",
    );
    sw.assert_silent_except(&[]);

    // A reply from the Internet, and a packet from another node to a pod.
    sw.inject(
        UPLINK,
        udp(UPLINK_GW_MAC, ROUTER, [8, 8, 8, 8], IP_A, 50, b"back"),
    );
    sw.inject(
        UPLINK,
        udp(
            UPLINK_GW_MAC,
            ROUTER,
            [10, 244, 7, 3],
            IP_B,
            64,
            b"other node",
        ),
    );
    sw.run();
    assert_routed(
        &sw.take_one(POD_A),
        mac_a(),
        [8, 8, 8, 8],
        IP_A,
        49,
        b"back",
    );
    assert_routed(
        &sw.take_one(POD_B),
        mac_b(),
        [10, 244, 7, 3],
        IP_B,
        63,
        b"other node",
    );
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// Next hops resolved while packets wait.

#[test]
fn a_packet_to_an_unresolved_neighbour_waits_for_arp_and_is_delivered() {
    let mut sw = routed_switch();
    let target = [10, 244, 2, 30];
    let target_mac = mac(0x1e);
    let f = udp(mac_a(), ROUTER, IP_A, target, 64, b"held");
    sw.inject(POD_A, f);
    sw.run();

    // The router asks on the bridge, from its address in the target's
    // subnet, on every pod port: the ingress port too, since the neighbour
    // may be behind it (hairpin). The packet goes nowhere yet.
    let asks = [
        sw.take_sent(POD_A),
        sw.take_sent(POD_B),
        sw.take_sent(POD_C),
    ];
    for sent in &asks {
        assert_eq!(sent.len(), 1, "one request on each pod port");
        assert_router_asks(&sent[0], GW_B, target);
    }
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[]);

    // The neighbour (behind port 1) answers; the controller records it.
    sw.inject(POD_B, arp_reply_to_router(target_mac, target, GW_B));
    sw.run();
    sw.assert_silent_except(&[]);
    sw.learn();
    let events = sw.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(sw.learn_neighbours(events).is_empty());

    // The new snapshot releases the packet at once.
    sw.run();
    assert_routed(&sw.take_one(POD_B), target_mac, IP_A, target, 63, b"held");
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn an_uplink_next_hop_is_probed_on_the_uplink_only() {
    let mut sw = routed_switch();
    add_uplink_routes(&mut sw);
    sw.inject(POD_A, udp(mac_a(), ROUTER, IP_A, [1, 1, 1, 1], 64, b"away"));
    sw.run();

    // An address probe (sender 0.0.0.0): the switch has no address on the
    // node network; it asks for the gateway, not the destination.
    assert_router_asks(&sw.take_one(UPLINK), [0, 0, 0, 0], UPLINK_GW);
    sw.assert_silent_except(&[]);

    // Linux answers a probe to the asking MAC, target address 0.0.0.0.
    sw.inject(
        UPLINK,
        arp_reply_to_router(UPLINK_GW_MAC, UPLINK_GW, [0, 0, 0, 0]),
    );
    sw.run();
    sw.assert_silent_except(&[]);
    let events = sw.events();
    assert!(
        events.contains(&WorkerEvent::Neighbour(neighbour(
            UPLINK_GW,
            UPLINK_GW_MAC,
            UPLINK
        ))),
        "{events:?}"
    );
    sw.learn_neighbours(events);
    sw.run();
    assert_routed(
        &sw.take_one(UPLINK),
        UPLINK_GW_MAC,
        IP_A,
        [1, 1, 1, 1],
        63,
        b"away",
    );
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn every_held_packet_is_released_by_the_snapshot_that_resolves_it() {
    let mut sw = routed_switch_with(Config {
        pools: vec![1024],
        ..Config::default()
    });
    let target = [10, 244, 2, 30];
    let held = 100u16;
    for seq in 0..held {
        sw.inject(
            POD_A,
            udp(mac_a(), ROUTER, IP_A, target, 64, &seq.to_be_bytes()),
        );
    }
    sw.run();
    assert_eq!(sw.take_sent(POD_B).len(), 1, "one ARP request");
    sw.take_sent(POD_C);
    know_neighbour(&mut sw, target, mac(0x1e), POD_B);
    sw.run();
    // Flooded (the neighbour's MAC is not learned), so B and C get each.
    assert_eq!(sw.take_sent(POD_B).len(), usize::from(held));
    assert_eq!(sw.take_sent(POD_C).len(), usize::from(held));
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn the_hold_queue_is_bounded_and_unanswered_packets_time_out() {
    // Room for every frame: the held ones and the ones over the limit.
    let mut sw = routed_switch_with(Config {
        pools: vec![1024],
        ..Config::default()
    });
    let over = 10;
    let silent = [10, 244, 2, 99];
    for seq in 0..(MAX_HELD + over) as u16 {
        sw.inject(
            POD_A,
            udp(mac_a(), ROUTER, IP_A, silent, 64, &seq.to_be_bytes()),
        );
    }
    sw.run();
    // One request however many packets wait.
    assert_router_asks(&sw.take_one(POD_A), GW_B, silent);
    assert_router_asks(&sw.take_one(POD_B), GW_B, silent);
    assert_router_asks(&sw.take_one(POD_C), GW_B, silent);
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[(POD_A, DropReason::NeighborQueueFull, over as u64)]);

    // Nobody answers. Once the resolve timeout (3 s) has passed, every held
    // packet is dropped. (A sleep, not a timing assertion.)
    std::thread::sleep(Duration::from_millis(3100));
    run_until(&mut sw, Duration::from_secs(3), |sw| {
        sw.stats(POD_A).drop_count(DropReason::NeighborUnresolved) == MAX_HELD as u64
    });
    sw.assert_drops(&[
        (POD_A, DropReason::NeighborQueueFull, over as u64),
        (POD_A, DropReason::NeighborUnresolved, MAX_HELD as u64),
    ]);
    // Whatever the router re-asked in the meantime, no packet left.
    for id in [POD_B, POD_C] {
        for f in sw.take_sent(id) {
            assert_router_asks(&f, GW_B, silent);
        }
    }
    sw.assert_silent_except(&[]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// ICMP errors.

/// Asserts an ICMP error from the router address `from` to `to` (on `mac_to`)
/// and returns its type and the quoted datagram.
#[track_caller]
fn assert_icmp_error(
    f: &[u8],
    mac_to: [u8; 6],
    from: [u8; 4],
    to: [u8; 4],
) -> (Icmpv4Type, Vec<u8>) {
    let p = parse(f);
    assert_eq!((p.dst, p.src), (mac_to, ROUTER), "back to the sender");
    let h = p.ip();
    assert_eq!((h.source, h.destination), (from, to));
    assert_eq!(h.protocol, IpNumber::ICMP);
    assert!(
        usize::from(h.total_len) <= 576,
        "ICMP errors are at most 576 bytes"
    );
    p.icmp().clone()
}

#[test]
fn ttl_expiry_is_answered_with_time_exceeded_from_the_senders_gateway() {
    let mut sw = routed_switch();
    add_pod_routes(&mut sw);
    let from_a = udp(mac_a(), ROUTER, IP_A, IP_B, 1, &[0x5a; 1000]);
    let from_b = udp(mac_b(), ROUTER, IP_B, IP_A, 0, b"zero");
    sw.inject(POD_A, from_a.clone());
    sw.inject(POD_B, from_b.clone());
    sw.run();

    let (t, quoted) = assert_icmp_error(&sw.take_one(POD_A), mac_a(), GW_A, IP_A);
    assert_eq!(
        t,
        Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit)
    );
    // The original header as received, and as much of the rest as fits.
    assert_eq!(quoted.len(), 576 - 28);
    assert_eq!(quoted[..], from_a[14..14 + quoted.len()]);

    let (t, quoted) = assert_icmp_error(&sw.take_one(POD_B), mac_b(), GW_B, IP_B);
    assert_eq!(
        t,
        Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit)
    );
    assert_eq!(quoted[..], from_b[14..], "a small datagram is quoted whole");
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[
        (POD_A, DropReason::TtlExpired, 1),
        (POD_B, DropReason::TtlExpired, 1),
    ]);
    sw.assert_no_leaks();
}

#[test]
fn no_route_is_answered_with_net_unreachable() {
    let mut sw = routed_switch();
    let f = udp(mac_a(), ROUTER, IP_A, [172, 16, 5, 5], 64, b"nowhere");
    sw.inject(POD_A, f.clone());
    sw.run();
    let (t, quoted) = assert_icmp_error(&sw.take_one(POD_A), mac_a(), GW_A, IP_A);
    assert_eq!(
        t,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Network)
    );
    assert_eq!(quoted[..], f[14..]);
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[(POD_A, DropReason::NoRoute, 1)]);
    sw.assert_no_leaks();
}

#[test]
fn too_big_for_the_output_mtu_needs_fragmentation() {
    let mut sw = routed_switch();
    add_pod_routes(&mut sw);
    sw.configure_port(POD_B, |e| e.mtu = 1000);
    let payload = |ip_len: usize| vec![0x33u8; ip_len - 28];

    // Exactly the MTU passes.
    sw.inject(POD_A, udp(mac_a(), ROUTER, IP_A, IP_B, 64, &payload(1000)));
    sw.run();
    assert_eq!(parse(&sw.take_one(POD_B)).ip().total_len, 1000);

    // One byte more, DF set: ICMP fragmentation needed with the MTU.
    let big = udp(mac_a(), ROUTER, IP_A, IP_B, 64, &payload(1001));
    sw.inject(POD_A, big.clone());
    sw.run();
    let (t, quoted) = assert_icmp_error(&sw.take_one(POD_A), mac_a(), GW_A, IP_A);
    assert_eq!(
        t,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: 1000
        })
    );
    assert_eq!(quoted[..28], big[14..42]);
    sw.assert_silent_except(&[]);

    // DF clear: the router does not fragment, it drops.
    let mut h = header(IP_A, IP_B, 64);
    h.dont_fragment = false;
    sw.inject(POD_A, udp_with_header(mac_a(), ROUTER, h, &payload(1001)));
    sw.run();
    sw.assert_silent_except(&[]);

    // On the bridge, the bridge's MTU applies.
    sw.l3.bridge_mtu = 1400;
    sw.publish();
    let far = [10, 244, 2, 40];
    know_neighbour(&mut sw, far, mac(0x28), POD_B);
    sw.inject(POD_A, udp(mac_a(), ROUTER, IP_A, far, 64, &payload(1401)));
    sw.run();
    let (t, _) = assert_icmp_error(&sw.take_one(POD_A), mac_a(), GW_A, IP_A);
    assert_eq!(
        t,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: 1400
        })
    );
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[(POD_A, DropReason::FragNeeded, 3)]);
    sw.assert_no_leaks();
}

#[test]
fn icmp_errors_are_never_answered_with_icmp_errors() {
    let mut sw = routed_switch();
    add_pod_routes(&mut sw);
    let icmp_error = |dst: [u8; 4], ttl: u8| {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(mac_a(), ROUTER)
            .ipv4(IP_A, dst, ttl)
            .icmpv4(Icmpv4Type::DestinationUnreachable(
                DestUnreachableHeader::Port,
            ))
            .write(&mut out, &[0x45; 28])
            .unwrap();
        out
    };
    sw.inject(POD_A, icmp_error(IP_B, 1));
    sw.inject(POD_A, icmp_error([172, 16, 5, 5], 64));
    sw.run();
    sw.assert_silent_except(&[]);

    // An echo request is not an error: its expiry is reported.
    sw.inject(POD_A, ping(mac_a(), ROUTER, IP_A, IP_B, 1, 9));
    sw.run();
    let (t, _) = assert_icmp_error(&sw.take_one(POD_A), mac_a(), GW_A, IP_A);
    assert!(matches!(t, Icmpv4Type::TimeExceeded(_)), "{t:?}");
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[
        (POD_A, DropReason::TtlExpired, 2),
        (POD_A, DropReason::NoRoute, 1),
    ]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// What the router refuses.

#[test]
fn ip_options_and_fragments_are_not_routed() {
    let mut sw = routed_switch();
    add_pod_routes(&mut sw);
    let mut opts = header(IP_A, IP_B, 64);
    opts.options = [1u8, 1, 1, 0][..].try_into().unwrap(); // NOP, NOP, NOP, end
    sw.inject(POD_A, udp_with_header(mac_a(), ROUTER, opts, b"options"));
    let mut first = header(IP_A, IP_B, 64);
    first.dont_fragment = false;
    first.more_fragments = true;
    sw.inject(POD_A, udp_with_header(mac_a(), ROUTER, first, b"first"));
    let mut last = header(IP_A, IP_B, 64);
    last.dont_fragment = false;
    last.fragment_offset = IpFragOffset::try_new(185).unwrap();
    sw.inject(POD_A, udp_with_header(mac_a(), ROUTER, last, b"last"));
    sw.run();
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[
        (POD_A, DropReason::IpOptions, 1),
        (POD_A, DropReason::IpFragment, 2),
    ]);
    sw.assert_no_leaks();
}

#[test]
fn broken_ipv4_headers_are_malformed() {
    let mut sw = routed_switch();
    add_pod_routes(&mut sw);
    let good = || udp(mac_a(), ROUTER, IP_A, IP_B, 64, &[7; 40]);
    let mut broken = Vec::new();

    let mut f = good();
    f[24] ^= 0xff; // header checksum
    broken.push(f);
    let mut f = good();
    f.truncate(50); // total length beyond the frame
    broken.push(f);
    let mut f = good();
    f[16..18].copy_from_slice(&19u16.to_be_bytes()); // total length < header
    fix_ipv4_checksum(&mut f);
    broken.push(f);
    let mut f = good();
    f[14] = 0x44; // IHL 4
    broken.push(f);
    let mut f = good();
    f[14] = 0x65; // version 6 in an IPv4 EtherType
    fix_ipv4_checksum(&mut f);
    broken.push(f);
    let mut f = good();
    f.truncate(14 + 19); // not even a header
    broken.push(f);
    let n = broken.len() as u64;
    for f in broken {
        sw.inject(POD_A, f);
    }
    sw.run();
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[(POD_A, DropReason::Malformed, n)]);

    // The intact original is routed.
    sw.inject(POD_A, good());
    sw.run();
    assert_routed(&sw.take_one(POD_B), mac_b(), IP_A, IP_B, 63, &[7; 40]);
    sw.assert_no_leaks();
}

#[test]
fn what_the_router_does_not_speak_is_unsupported() {
    let mut sw = routed_switch();
    add_pod_routes(&mut sw);
    // Not IP at all, to the router's MAC.
    sw.inject(POD_A, frame(ROUTER, mac_a(), 1));
    // UDP to a router address: the switch runs no services.
    sw.inject(POD_A, udp(mac_a(), ROUTER, IP_A, GW_A, 64, b"dns?"));
    // ICMP to the router that is not an echo request.
    let mut echo_reply = Vec::new();
    PacketBuilder::ethernet2(mac_a(), ROUTER)
        .ipv4(IP_A, GW_A, 64)
        .icmpv4_echo_reply(1, 1)
        .write(&mut echo_reply, b"")
        .unwrap();
    sw.inject(POD_A, echo_reply);
    // Anything non-IP from the uplink, whatever its destination.
    sw.inject(UPLINK, frame(BROADCAST, UPLINK_GW_MAC, 2));
    sw.run();
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[
        (POD_A, DropReason::Unsupported, 3),
        (UPLINK, DropReason::Unsupported, 1),
    ]);
    sw.assert_no_leaks();
}

#[test]
fn a_guarded_pod_may_only_send_as_itself() {
    let mut sw = routed_switch();
    add_pod_routes(&mut sw);
    sw.configure_port(POD_A, |e| {
        e.guard = Some(Arc::new(PortGuard {
            mac: Some(key(mac_a())),
            v4: vec![v4(IP_A)],
            v6: Vec::new(),
        }))
    });

    // The pod itself: routed, switched, its ARP answered.
    sw.inject(POD_A, udp(mac_a(), ROUTER, IP_A, IP_B, 64, b"me"));
    sw.inject(POD_A, arp_request(mac_a(), IP_A, GW_A));
    sw.run();
    assert_routed(&sw.take_one(POD_B), mac_b(), IP_A, IP_B, 63, b"me");
    assert_eq!(parse(&sw.take_one(POD_A)).arp().sender_hw_addr(), ROUTER);
    sw.assert_silent_except(&[]);
    let _ = sw.events();

    // Spoofs: another IP, another MAC, ARP for C's address, an ARP sender
    // MAC that is not the frame's, another IP switched straight to C.
    sw.inject(
        POD_A,
        udp(mac_a(), ROUTER, [10, 244, 1, 99], IP_B, 64, b"ip"),
    );
    sw.inject(POD_A, udp(mac(0x99), ROUTER, IP_A, IP_B, 64, b"mac"));
    sw.inject(POD_A, arp_request(mac_a(), IP_C, GW_A));
    let mut arp_sha = arp_request(mac(0x98), IP_A, GW_A);
    arp_sha[6..12].copy_from_slice(&mac_a());
    sw.inject(POD_A, arp_sha);
    sw.inject(POD_A, udp(mac_a(), mac_c(), IP_B, IP_C, 64, b"l2"));
    sw.run();
    sw.assert_silent_except(&[]);
    assert!(
        sw.neighbour_events().is_empty(),
        "spoofed ARP poisons no neighbour"
    );
    sw.assert_drops(&[(POD_A, DropReason::SpoofedSource, 5)]);

    // Unguarded ports are not checked.
    sw.inject(
        POD_C,
        udp(mac_c(), ROUTER, [10, 244, 1, 77], IP_B, 64, b"c"),
    );
    sw.run();
    assert_eq!(sw.take_sent(POD_B).len(), 1);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// The uplink is routed, not bridged.

#[test]
fn a_frame_from_the_uplink_does_not_capture_a_pods_mac() {
    let mut sw = routed_switch();
    add_pod_routes(&mut sw);
    sw.teach(POD_C, mac_c());
    // Someone on the node network sends with C's MAC (a routed packet, to B).
    sw.inject(
        UPLINK,
        udp(mac_c(), ROUTER, [10, 244, 7, 3], IP_B, 64, b"x"),
    );
    sw.run();
    sw.take_sent(POD_B);
    sw.learn();
    // A's frames to C still reach C, not the node network.
    let f = frame(mac_c(), mac_a(), 7);
    sw.inject(POD_A, f.clone());
    sw.run();
    assert_eq!(sw.take_sent(POD_C), vec![f]);
    sw.assert_silent_except(&[]);
    sw.assert_no_leaks();
}

#[test]
fn pod_frames_are_never_bridged_onto_the_uplink() {
    let mut sw = routed_switch();
    add_pod_routes(&mut sw);
    // The node network's gateway sends a packet in (routed to A).
    sw.inject(
        UPLINK,
        udp(UPLINK_GW_MAC, ROUTER, [8, 8, 8, 8], IP_A, 64, b"in"),
    );
    sw.run();
    sw.take_sent(POD_A);
    sw.learn();
    // A pod sends a raw frame straight to the gateway's MAC: it is not
    // the router's, so it is switched among pods, never onto the uplink.
    sw.inject(POD_A, frame(UPLINK_GW_MAC, mac_a(), 1));
    sw.run();
    assert_eq!(sw.sent_count(UPLINK), 0, "bridged onto the node network");
    sw.assert_no_leaks();
}

#[test]
fn link_broadcast_and_multicast_from_routed_ports_are_not_routed() {
    let mut sw = routed_switch();
    add_pod_routes(&mut sw);
    add_uplink_routes(&mut sw);
    know_neighbour(&mut sw, UPLINK_GW, UPLINK_GW_MAC, UPLINK);
    // What a node's kernel sends on any interface: mDNS, SSDP, a limited
    // broadcast (DHCP, NetBIOS), an IGMP-style report with TTL 1. None of
    // it is addressed to the router's MAC, so none of it is routed (to
    // the default route), and none of it earns an ICMP error.
    let mdns = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];
    let ssdp = [0x01, 0x00, 0x5e, 0x7f, 0xff, 0xfa];
    let igmp = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x16];
    for port in [HOST, UPLINK] {
        let m = if port == HOST {
            host_mac()
        } else {
            UPLINK_GW_MAC
        };
        let a = if port == HOST { NODE_IP } else { UPLINK_GW };
        sw.inject(port, udp(m, mdns, a, [224, 0, 0, 251], 255, b"mdns"));
        sw.inject(port, udp(m, ssdp, a, [239, 255, 255, 250], 4, b"ssdp"));
        sw.inject(port, udp(m, BROADCAST, a, [255, 255, 255, 255], 64, b"bc"));
        sw.inject(port, udp(m, igmp, a, [224, 0, 0, 22], 1, b"igmp"));
    }
    sw.run();
    sw.assert_silent_except(&[]);
    sw.assert_no_leaks();
}
