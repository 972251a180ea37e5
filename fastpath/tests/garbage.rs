//! Random input: the switch never panics, never loses count of a frame and
//! never loses a buffer, whatever bytes arrive.
//!
//! Inputs come from a seeded xorshift generator, so a failure replays.
//!
//! The last test does the same for the router: random and mutated IPv4 and
//! ARP frames, mostly to the router's MAC, from pod ports, the uplink and
//! the host port of a switch with routes.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::frames::{
    NODE_IP, ROUTER, UPLINK_GW, UPLINK_GW_MAC, arp_unpadded, host_mac, ip4, neighbour,
};
use common::{
    BROADCAST, Config, MULTICAST, TestSwitch, XorShift, fix_ipv4_checksum, internet_checksum, key,
    mac,
};
use etherparse::icmpv4::{DestUnreachableHeader, TimeExceededCode};
use etherparse::{
    ArpOperation, ArpPacketSlice, IcmpEchoHeader, Icmpv4Type, IpFragOffset, IpHeaders, IpNumber,
    Ipv4Header, Ipv4HeaderSlice, Ipv6HeaderSlice, PacketBuilder,
};
use fastpath::PortId;
use fastpath::batch::BATCH_SIZE;
use fastpath::drop::DropReason;
use fastpath::l3::table::{Link, NextHop};
use fastpath::pool::FRAME_CAPACITY;
use fastpath::snapshot::{PortGuard, PortRole};
use fastpath::worker::WorkerEvent;

/// A random length: mostly small frames, some runts, some too long to fit a
/// pool frame.
fn random_len(rng: &mut XorShift) -> usize {
    match rng.below(20) {
        0..=2 => rng.below(14) as usize,
        3 => (FRAME_CAPACITY as usize - 4) + rng.below(80) as usize,
        4 => 14 + rng.below(u64::from(FRAME_CAPACITY) - 14) as usize,
        _ => 14 + rng.below(186) as usize,
    }
}

/// What the parse stage must make of a frame, by the switch's documented rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Malformed,
    Runt,
    InvalidSrc,
    Valid,
}

fn classify(f: &[u8]) -> Class {
    if f.len() > FRAME_CAPACITY as usize {
        Class::Malformed
    } else if f.len() < 14 {
        Class::Runt
    } else if f[6] & 1 != 0 || f[6..12] == [0; 6] {
        Class::InvalidSrc
    } else {
        Class::Valid
    }
}

/// With nothing learned, every valid frame floods to every other port, so
/// the exact outcome of each random frame is known: this checks counters
/// and delivered bytes frame by frame.
#[test]
fn random_bytes_are_dropped_or_flooded_exactly_as_classified() {
    const PORTS: PortId = 4;
    let mut sw = TestSwitch::with_ports(PORTS);
    let mut rng = XorShift::new(0x5eed_0001);

    let mut injected: Vec<Vec<Vec<u8>>> = vec![Vec::new(); PORTS.into()];
    for _ in 0..4000 {
        let port = rng.below(PORTS.into()) as PortId;
        let len = random_len(&mut rng);
        let mut f = rng.bytes(len);
        if f.len() >= 12 && rng.below(2) == 0 {
            // Keep about half the sources unicast, so that many frames
            // make it past the parser.
            f[6] &= !1;
        }
        injected[usize::from(port)].push(f.clone());
        sw.inject(port, f);
    }
    sw.run();
    // The controller never publishes what the workers report here: the
    // table stays empty and every valid frame floods.

    let mut valid_from = vec![Vec::new(); PORTS.into()];
    for p in 0..PORTS {
        let frames = &injected[usize::from(p)];
        let count = |c: Class| frames.iter().filter(|f| classify(f) == c).count() as u64;
        let s = sw.stats(p);
        assert_eq!(s.rx_packets, frames.len() as u64, "port {p} rx");
        assert_eq!(
            s.drop_count(DropReason::Runt),
            count(Class::Runt),
            "port {p}"
        );
        assert_eq!(
            s.drop_count(DropReason::Malformed),
            count(Class::Malformed),
            "port {p}"
        );
        assert_eq!(
            s.drop_count(DropReason::InvalidSrcMac),
            count(Class::InvalidSrc),
            "port {p}"
        );
        let drops: u64 = s.drops.iter().sum();
        assert_eq!(
            drops,
            frames.len() as u64 - count(Class::Valid),
            "port {p}: only parse drops expected, got {:?}",
            s.drops
        );
        valid_from[usize::from(p)] = frames
            .iter()
            .filter(|f| classify(f) == Class::Valid)
            .cloned()
            .collect::<Vec<_>>();
    }

    let mut total_valid = 0;
    for p in 0..PORTS {
        let mut want: Vec<Vec<u8>> = (0..PORTS)
            .filter(|&q| q != p)
            .flat_map(|q| valid_from[usize::from(q)].clone())
            .collect();
        let mut got = sw.take_sent(p);
        let s = sw.stats(p);
        assert_eq!(s.tx_packets, want.len() as u64, "port {p} tx");
        let bytes: usize = want.iter().map(Vec::len).sum();
        assert_eq!(s.tx_bytes, bytes as u64, "port {p} tx bytes");
        want.sort();
        got.sort();
        assert!(
            got == want,
            "port {p}: delivered frames differ from the model"
        );
        total_valid += valid_from[usize::from(p)].len();
    }
    assert!(total_valid > 1000, "too few valid frames to mean anything");
    sw.assert_no_leaks();
}

/// Random traffic among a few MACs with learning, moves, a per-port limit,
/// a static entry to a down port and a slow port, over one worker or two.
/// Checks that every received frame ends in at least one and at most
/// `PORTS - 1` outcomes (sent or counted), that every delivered frame is
/// one injected on another port, and that no buffer is lost. Returns the
/// drop counts by reason, summed over all ports.
fn random_traffic(
    pools: Vec<u32>,
    owner: fn(PortId) -> usize,
    seed: u64,
) -> [u64; DropReason::COUNT] {
    const PORTS: PortId = 5;
    let mut sw = TestSwitch::new(Config {
        pools,
        aging_secs: 300,
        mac_limit: 3,
        ..Config::default()
    });
    for id in 0..PORTS {
        sw.add_port_on(owner(id), id);
    }
    let stat = mac(0x50);
    sw.table.add_static(key(stat), 4);
    sw.set_port_up(4, false);
    sw.wire(3).lock().unwrap().tx_limit = Some(2);

    let mut rng = XorShift::new(seed);
    let dsts: Vec<[u8; 6]> = (1..=10)
        .map(mac)
        .chain([BROADCAST, MULTICAST, stat])
        .collect();
    // (ingress port, times injected) of each frame; sequence numbers make
    // frames of 18 bytes or more unique.
    let mut sources: HashMap<Vec<u8>, (PortId, u32)> = HashMap::new();
    let mut seq = 0u32;
    for _round in 0..60 {
        for _ in 0..rng.below(300) {
            let port = rng.below(PORTS.into()) as PortId;
            let len = random_len(&mut rng);
            let dst = dsts[rng.below(dsts.len() as u64) as usize];
            let src = match rng.below(30) {
                0 => MULTICAST,
                1 => [0; 6],
                _ => mac(1 + rng.below(10) as u8),
            };
            let mut f = [dst.as_slice(), &src, &[0x88, 0xb5], &seq.to_be_bytes()].concat();
            seq += 1;
            f.extend(rng.bytes(len.saturating_sub(f.len())));
            f.truncate(len);
            sources.entry(f.clone()).or_insert((port, 0)).1 += 1;
            sw.inject(port, f);
        }
        sw.run();
        sw.learn();
        sw.assert_pools_consistent();
    }

    let rx = sw.total_rx();
    let outcomes = sw.total_tx() + sw.total_drops();
    assert_eq!(rx, u64::from(seq), "every injected frame was received");
    assert!(
        (rx..=rx * u64::from(PORTS - 1)).contains(&outcomes),
        "rx {rx}, tx + drops {outcomes}"
    );

    let mut delivered: HashMap<Vec<u8>, u32> = HashMap::new();
    for p in 0..PORTS {
        let sent = sw.take_sent(p);
        assert_eq!(sw.stats(p).tx_packets, sent.len() as u64, "port {p} tx");
        for f in sent {
            let Some(&(ingress, _)) = sources.get(&f) else {
                panic!("port {p} sent a frame nobody injected: {f:02x?}");
            };
            if f.len() >= 18 {
                assert_ne!(ingress, p, "frame sent back out of its ingress port");
            }
            *delivered.entry(f).or_default() += 1;
        }
    }
    for (f, n) in &delivered {
        let injected = sources[f].1;
        assert!(
            *n <= injected * u32::from(PORTS - 1),
            "frame delivered {n} times, injected {injected}"
        );
    }
    sw.assert_no_leaks();

    let mut by_reason = [0u64; DropReason::COUNT];
    for p in 0..PORTS {
        for (r, n) in by_reason.iter_mut().zip(sw.stats(p).drops) {
            *r += n;
        }
    }
    by_reason
}

/// Asserts that the random mix exercised `reasons`, or the test proves little.
#[track_caller]
fn assert_exercised(by_reason: &[u64; DropReason::COUNT], reasons: &[DropReason]) {
    for reason in reasons {
        assert!(
            by_reason[reason.index()] > 0,
            "no {} drops: {by_reason:?}",
            reason.name()
        );
    }
}

const PIPELINE_DROPS: [DropReason; 7] = [
    DropReason::Runt,
    DropReason::Malformed,
    DropReason::InvalidSrcMac,
    DropReason::SamePort,
    DropReason::MacLimit,
    DropReason::PortDown,
    DropReason::TxRingFull,
];

#[test]
fn random_traffic_with_learning_keeps_every_count_and_buffer() {
    // One batch's worth of frames: every burst can be received (a port's
    // frames are all back in the pool between bursts), but flood copies of
    // a large burst run out.
    let by_reason = random_traffic(vec![BATCH_SIZE as u32], |_| 0, 0x5eed_0002);
    assert_exercised(&by_reason, &PIPELINE_DROPS);
    assert_exercised(&by_reason, &[DropReason::NoBuffer]);
}

#[test]
fn random_traffic_across_two_workers_keeps_every_count_and_buffer() {
    // Frames handed to the other worker stay out of the sender's pool until
    // returned, so both pools are large enough never to run out.
    let by_reason = random_traffic(vec![1024, 1024], |id| usize::from(id >= 3), 0x5eed_0003);
    assert_exercised(&by_reason, &PIPELINE_DROPS);
    assert_eq!(by_reason[DropReason::NoBuffer.index()], 0);
}

// ---------------------------------------------------------------------------
// Routed garbage: IPv4 and ARP to the router.

const R_UPLINK: PortId = 3;
const R_HOST: PortId = 4;
/// Every port of the routed switch: pods 0-2 and 5 (down), uplink, host.
const R_PORTS: [PortId; 6] = [0, 1, 2, R_UPLINK, R_HOST, 5];
const R_PODS_UP: u64 = 3;

/// The MAC and IPv4 address of the pod on port `id`.
fn pod(id: PortId) -> ([u8; 6], [u8; 4]) {
    let n = id as u8;
    (mac(0x10 + n), [10, 244, 1 + (n & 1), 10 + n])
}

const ROUTER_ADDRS: [[u8; 4]; 2] = [[10, 244, 1, 1], [10, 244, 2, 1]];
/// A switch that routes: two router subnets on the bridge (10.244.2.0/24
/// fully resolved, 10.244.1.0/24 not at all), pods with /32 routes (one
/// behind a down port, one guarded, one with a small MTU), the node
/// network on the uplink, 8.0.0.0/8 via the uplink's gateway,
/// 10.245.0.0/16 via a gateway on the bridge, the node behind the host
/// port, and no default route.
fn routed_garbage_switch() -> TestSwitch {
    let mut sw = TestSwitch::new(Config {
        pools: vec![2048],
        ..Config::default()
    });
    for id in R_PORTS {
        sw.add_port(id);
    }
    sw.configure_port(R_UPLINK, |e| e.role = PortRole::Uplink);
    sw.configure_port(R_HOST, |e| e.role = PortRole::Host);
    sw.configure_port(1, |e| e.mtu = 1000);
    let (mac0, ip0) = pod(0);
    sw.configure_port(0, |e| {
        e.guard = Some(Arc::new(PortGuard {
            mac: Some(key(mac0)),
            v4: vec![u32::from_be_bytes(ip0)],
            v6: Vec::new(),
        }))
    });
    sw.set_port_up(5, false);

    let l3 = &mut sw.l3;
    l3.router_mac = key(ROUTER);
    l3.bridge_mtu = 1400;
    l3.addrs4 = ROUTER_ADDRS
        .iter()
        .map(|a| (u32::from_be_bytes(*a), 24))
        .collect();
    let bridge = |gw: Option<[u8; 4]>| NextHop::Resolve {
        link: Link::Bridge,
        gw: gw.map(ip4),
    };
    let uplink = |gw: Option<[u8; 4]>| NextHop::Resolve {
        link: Link::Port(R_UPLINK),
        gw: gw.map(ip4),
    };
    for a in ROUTER_ADDRS {
        l3.routes.insert(ip4(a), 32, NextHop::Local);
        l3.routes.insert(ip4(a), 24, bridge(None));
    }
    for id in [0, 1, 2, 5] {
        let (m, a) = pod(id);
        let hop = NextHop::Peer {
            port: id,
            mac: key(m),
        };
        l3.routes.insert(ip4(a), 32, hop);
    }
    let host = NextHop::Peer {
        port: R_HOST,
        mac: key(host_mac()),
    };
    l3.routes.insert(ip4(NODE_IP), 32, host);
    l3.routes.insert(ip4([192, 168, 0, 0]), 24, uplink(None));
    l3.routes
        .insert(ip4([8, 0, 0, 0]), 8, uplink(Some(UPLINK_GW)));
    l3.routes
        .insert(ip4([10, 245, 0, 0]), 16, bridge(Some([10, 244, 2, 200])));
    let mut known: Vec<WorkerEvent> = (2..=254u8)
        .map(|x| WorkerEvent::Neighbour(neighbour([10, 244, 2, x], [0x02, 0, 0, 2, 0, x], 1)))
        .collect();
    known.push(WorkerEvent::Neighbour(neighbour(
        UPLINK_GW,
        UPLINK_GW_MAC,
        R_UPLINK,
    )));
    sw.learn_neighbours(known);
    sw
}

/// A random unicast source MAC that is not the router's.
fn random_src(rng: &mut XorShift) -> [u8; 6] {
    let mut m = [0u8; 6];
    m.copy_from_slice(&rng.bytes(6));
    m[0] = (m[0] & !1) | 2;
    if m == ROUTER || m == [2, 0, 0, 0, 0, 0] {
        m[5] ^= 0x55;
    }
    m
}

/// An IPv4 address the routes above treat in a particular way, or any.
fn interesting_addr(rng: &mut XorShift) -> [u8; 4] {
    let r = rng.next_u64().to_be_bytes();
    match rng.below(12) {
        0 => ROUTER_ADDRS[rng.below(2) as usize],
        1 => pod([0, 1, 2, 5][rng.below(4) as usize]).1,
        2 => NODE_IP,
        3 => [10, 244, 1, r[0]],
        4 => [10, 244, 2, r[0]],
        5 => [192, 168, 0, r[0]],
        6 => [8, r[0], r[1], r[2]],
        7 => [10, 245, r[0], r[1]],
        8 => [255, 255, 255, 255],
        9 => [224, 0, 0, r[0]],
        10 => [0, 0, 0, 0],
        _ => [r[0], r[1], r[2], r[3]],
    }
}

/// A frame from port `port` that the router has to look at: IPv4 (UDP,
/// ICMP, with options or fragmented, any TTL and size) or ARP to the
/// router's MAC or broadcast, or random bytes behind an IPv4/ARP
/// EtherType; a third of them then mutated (header bytes flipped, the
/// frame cut short, the IPv4 checksum made right again for half of those).
fn routed_garbage(rng: &mut XorShift, port: PortId) -> Vec<u8> {
    let is_pod = !matches!(port, R_UPLINK | R_HOST);
    let (own_mac, own_ip) = pod(port);
    let src_mac = if is_pod && rng.below(4) != 0 {
        own_mac
    } else {
        random_src(rng)
    };
    let src_ip = if is_pod && rng.below(4) != 0 {
        own_ip
    } else {
        interesting_addr(rng)
    };
    let dst_mac = match rng.below(10) {
        0 => BROADCAST,
        1 => random_src(rng),
        _ => ROUTER,
    };
    let dst_ip = interesting_addr(rng);
    let ttl = match rng.below(4) {
        0 => rng.below(3) as u8,
        1 => rng.next_u64() as u8,
        _ => 64,
    };
    let mut f = Vec::new();
    match rng.below(8) {
        0..=2 => {
            let mut h = Ipv4Header::new(0, ttl, IpNumber::UDP, src_ip, dst_ip).unwrap();
            h.dont_fragment = rng.below(4) != 0;
            match rng.below(10) {
                0 => h.options = [1u8, 1, 1, 0][..].try_into().unwrap(),
                1 => h.more_fragments = true,
                2 => h.fragment_offset = IpFragOffset::try_new(rng.below(8000) as u16).unwrap(),
                _ => {}
            }
            let len = match rng.below(6) {
                0 => 950 + rng.below(600) as usize,
                _ => rng.below(64) as usize,
            };
            PacketBuilder::ethernet2(src_mac, dst_mac)
                .ip(IpHeaders::Ipv4(h, Default::default()))
                .udp(rng.next_u64() as u16, rng.next_u64() as u16)
                .write(&mut f, &rng.bytes(len))
                .unwrap();
        }
        3 => {
            let t = match rng.below(4) {
                0 => Icmpv4Type::EchoRequest(IcmpEchoHeader { id: 1, seq: 2 }),
                1 => Icmpv4Type::EchoReply(IcmpEchoHeader { id: 1, seq: 2 }),
                2 => Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit),
                _ => Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
            };
            let len = rng.below(80) as usize;
            PacketBuilder::ethernet2(src_mac, dst_mac)
                .ipv4(src_ip, dst_ip, ttl)
                .icmpv4(t)
                .write(&mut f, &rng.bytes(len))
                .unwrap();
        }
        4 | 5 => {
            let op = match rng.below(5) {
                0..=1 => ArpOperation::REQUEST,
                2..=3 => ArpOperation::REPLY,
                _ => ArpOperation::from(rng.next_u64() as u16),
            };
            let sha = if rng.below(4) != 0 {
                src_mac
            } else {
                random_src(rng)
            };
            let spa = if rng.below(8) == 0 { [0; 4] } else { src_ip };
            let mut tha = [0u8; 6];
            tha.copy_from_slice(&rng.bytes(6));
            let eth_dst = if rng.below(2) == 0 {
                BROADCAST
            } else {
                dst_mac
            };
            f = arp_unpadded((src_mac, eth_dst), op, sha, spa, tha, dst_ip);
            f.resize(60, 0);
        }
        6 | 7 => {
            f.extend_from_slice(&dst_mac);
            f.extend_from_slice(&src_mac);
            f.extend_from_slice(if rng.below(2) == 0 {
                &[0x08, 0x00]
            } else {
                &[0x08, 0x06]
            });
            let len = rng.below(100) as usize;
            f.extend(rng.bytes(len));
            if rng.below(2) == 0 && f.len() > 14 {
                f[14] = 0x45;
            }
        }
        _ => unreachable!(),
    }
    if rng.below(3) == 0 {
        for _ in 0..1 + rng.below(4) {
            let end = f.len().min(64);
            if end > 12 {
                let at = 12 + rng.below((end - 12) as u64) as usize;
                f[at] ^= 1 + rng.below(255) as u8;
            }
        }
        if rng.below(4) == 0 {
            f.truncate(rng.below(f.len() as u64 + 1) as usize);
        }
        if rng.below(2) == 0 && f.len() >= 14 && f[12..14] == [0x08, 0x00] {
            fix_ipv4_checksum(&mut f);
        }
    }
    f
}

/// Checks a frame the switch sent: nothing but routed traffic leaves on a
/// routed port, and whatever the router wrote or rewrote is well-formed.
#[track_caller]
fn check_routed_output(port: PortId, f: &[u8]) {
    let from_router = f.len() >= 14 && f[6..12] == ROUTER;
    if matches!(port, R_UPLINK | R_HOST) {
        assert!(from_router, "port {port} got a bridged frame: {f:02x?}");
    }
    if !from_router {
        return;
    }
    match [f[12], f[13]] {
        [0x08, 0x00] => {
            let h = Ipv4HeaderSlice::from_slice(&f[14..])
                .unwrap_or_else(|e| panic!("router sent a bad IPv4 header ({e}): {f:02x?}"));
            let full = h.to_header();
            assert_eq!(
                full.header_checksum,
                full.calc_header_checksum(),
                "router sent a bad IPv4 checksum: {f:02x?}"
            );
            assert!(h.ttl() >= 1, "router sent TTL 0: {f:02x?}");
            let (start, end) = (14 + h.slice().len(), 14 + usize::from(h.total_len()));
            assert!(
                start <= end && end <= f.len(),
                "IPv4 length outside the frame: {f:02x?}"
            );
            let icmp = &f[start..end];
            // Errors are written whole by the router (echo replies keep
            // the request's checksum, valid or not, updated incrementally).
            let router_addr = ROUTER_ADDRS.contains(&h.source());
            if h.protocol() == IpNumber::ICMP
                && router_addr
                && icmp.len() >= 8
                && matches!(icmp[0], 3 | 11)
            {
                assert!(h.total_len() <= 576, "ICMP error too long: {f:02x?}");
                assert_eq!(internet_checksum(icmp), 0, "ICMP error checksum: {f:02x?}");
            }
        }
        [0x08, 0x06] => {
            let a = ArpPacketSlice::from_slice(&f[14..])
                .unwrap_or_else(|e| panic!("router sent a bad ARP packet ({e}): {f:02x?}"));
            assert_eq!(a.sender_hw_addr(), ROUTER, "{f:02x?}");
        }
        [0x86, 0xdd] => {
            // IPv6 from a mutated EtherType: whatever the router answered.
            let h = Ipv6HeaderSlice::from_slice(&f[14..])
                .unwrap_or_else(|e| panic!("router sent a bad IPv6 header ({e}): {f:02x?}"));
            assert!(h.hop_limit() >= 1, "router sent hop limit 0: {f:02x?}");
        }
        other => panic!("router sent EtherType {other:02x?}: {f:02x?}"),
    }
}

/// Random and mutated IPv4 and ARP, mostly to the router's MAC, from the
/// pod ports that are up, the uplink and the host port, one frame at a
/// time. For every frame: it is received; unless it is ARP (which the
/// router may consume without a count), it ends sent, counted as a drop,
/// or held for a neighbour (frames leaving the hold queue meanwhile end
/// sent or counted too, so they never mask a lost frame); it is counted as
/// at most one drop. Every frame the router wrote is well-formed, nothing
/// is bridged onto a routed port, and once the held frames have timed out,
/// every buffer is back.
#[test]
fn random_ipv4_and_arp_to_the_router_keep_every_count_and_buffer() {
    let mut sw = routed_garbage_switch();
    let mut rng = XorShift::new(0x5eed_0004);
    let drops = |sw: &TestSwitch| -> [u64; DropReason::COUNT] {
        let mut by_reason = [0u64; DropReason::COUNT];
        for p in sw.port_ids() {
            for (r, n) in by_reason.iter_mut().zip(sw.stats(p).drops) {
                *r += n;
            }
        }
        by_reason
    };
    let unresolved = DropReason::NeighborUnresolved.index();
    let mut events = Vec::new();
    let mut injected = 0u64;
    let mut arp_frames = 0u64;
    let mut held_max = 0u32;
    for i in 0..6000u32 {
        let port = [0, 0, 1, 2, R_UPLINK, R_UPLINK, R_HOST][rng.below(7) as usize];
        let f = routed_garbage(&mut rng, port);
        let is_arp = f.len() >= 14 && f[12..14] == [0x08, 0x06];
        arp_frames += u64::from(is_arp);

        let (rx0, tx0, drops0, held0) = (
            sw.stats(port).rx_packets,
            sw.total_tx(),
            drops(&sw),
            sw.frames_held(),
        );
        sw.inject(port, f.clone());
        sw.run();
        injected += 1;
        let d_drops = drops(&sw);
        let own_drops: u64 = d_drops
            .iter()
            .zip(drops0)
            .enumerate()
            .filter(|(r, _)| *r != unresolved)
            .map(|(_, (after, before))| after - before)
            .sum();
        let all_drops = d_drops.iter().sum::<u64>() - drops0.iter().sum::<u64>();
        let (tx, held) = (sw.total_tx() - tx0, sw.frames_held());
        held_max = held_max.max(held);

        assert_eq!(sw.stats(port).rx_packets, rx0 + 1, "frame {i} not received");
        let outcomes = tx as i64 + all_drops as i64 + i64::from(held) - i64::from(held0);
        if !is_arp {
            assert!(
                outcomes >= 1,
                "frame {i} from port {port} vanished (tx {tx}, drops {all_drops}, \
                 held {held0} -> {held}): {f:02x?}"
            );
        }
        // At most one drop for this frame, plus one per frame that left
        // the hold queue.
        assert!(
            own_drops <= 1 + u64::from(held0),
            "frame {i} counted {own_drops} times: {f:02x?}"
        );
        if held0 == 0 && held == 0 {
            // A flood to the other pods, plus the router's ARP request.
            assert!(tx <= 2 * R_PODS_UP, "frame {i} sent {tx} times: {f:02x?}");
        }
        for p in sw.port_ids() {
            for out in sw.take_sent(p) {
                check_routed_output(p, &out);
            }
        }
        events.extend(sw.events());
        if i % 500 == 499 {
            // The controller's turn: what the garbage taught the switch
            // (MACs, neighbours) takes effect, releasing held frames.
            sw.learn();
            sw.learn_neighbours(std::mem::take(&mut events));
            sw.assert_pools_consistent();
        }
    }

    // Let every held frame time out (a sleep, not a timing assertion).
    std::thread::sleep(Duration::from_millis(3100));
    let deadline = Instant::now() + Duration::from_secs(5);
    while sw.frames_held() > 0 && Instant::now() < deadline {
        sw.run();
        std::thread::sleep(Duration::from_millis(110));
    }
    for p in sw.port_ids() {
        for out in sw.take_sent(p) {
            check_routed_output(p, &out);
        }
    }
    assert_eq!(sw.total_rx(), injected);
    let by_reason = drops(&sw);
    let outcomes = sw.total_tx() + by_reason.iter().sum::<u64>();
    assert!(
        outcomes >= injected - arp_frames,
        "tx + drops {outcomes} < {} frames that cannot be consumed",
        injected - arp_frames
    );
    sw.assert_no_leaks();

    assert!(held_max > 0, "no frame ever waited for a neighbour");
    assert_exercised(
        &by_reason,
        &[
            DropReason::Runt,
            DropReason::Malformed,
            DropReason::SpoofedSource,
            DropReason::TtlExpired,
            DropReason::NoRoute,
            DropReason::FragNeeded,
            DropReason::NeighborUnresolved,
            DropReason::PortDown,
            DropReason::IpOptions,
            DropReason::IpFragment,
            DropReason::Unsupported,
        ],
    );
    for p in [1, 2, R_UPLINK, R_HOST] {
        assert!(sw.stats(p).tx_packets > 0, "nothing was sent on port {p}");
    }
}
