//! Services at the edges of the path: NodePort from the uplink, endpoints
//! and clients behind VXLAN, ICMP errors about translated packets, flows
//! that cross workers, a full connection table and bad input to a VIP.
//! The lab is the one of `services.rs` (`common/services.rs`).

mod common;
#[path = "common/services.rs"]
mod lab;

use lab::*;

// ---------------------------------------------------------------------------
// 7. NodePort.

#[test]
fn a_node_port_on_the_uplink_reaches_an_endpoint_and_answers_from_the_node() {
    let mut sw = switch();
    add_uplink(&mut sw);
    let mut svc = service(&[B], &[]);
    svc.node_port = Some(NODE_PORT);
    set_service(&mut sw, svc);

    let syn = tcp(
        (EXT_MAC, NODE_MAC),
        (EXT_IP, 50000),
        (NODE_IP, NODE_PORT),
        SYN,
        b"",
    );
    let o = send(&mut sw, UPLINK, syn);
    let seen = o.from().1;
    assert_frame(&o, B.port, (B.mac, ROUTER), (GW_2, seen), (B.ip, BPORT), 63);
    let o = send(&mut sw, B.port, from_backend(B, (GW_2, seen), SYN | ACK));
    assert_frame(
        &o,
        UPLINK,
        (EXT_MAC, ROUTER),
        (NODE_IP, NODE_PORT),
        (EXT_IP, 50000),
        63,
    );
    // A second client with the same source port gets a port of its own
    // at the endpoint, and its own answers.
    let syn2 = tcp(
        (EXT2_MAC, NODE_MAC),
        (EXT2_IP, 50000),
        (NODE_IP, NODE_PORT),
        SYN,
        b"",
    );
    let o = send(&mut sw, UPLINK, syn2);
    let seen2 = o.from().1;
    assert_eq!((o.port, o.from().0, o.to()), (B.port, GW_2, (B.ip, BPORT)));
    assert_ne!(seen2, seen, "two flows with one tuple at the endpoint");
    let o = send(&mut sw, B.port, from_backend(B, (GW_2, seen2), ACK));
    assert_frame(
        &o,
        UPLINK,
        (EXT2_MAC, ROUTER),
        (NODE_IP, NODE_PORT),
        (EXT2_IP, 50000),
        63,
    );
    let o = send(&mut sw, B.port, from_backend(B, (GW_2, seen), ACK));
    assert_eq!((o.dst, o.to()), (EXT_MAC, (EXT_IP, 50000)));
    // A pod may use the NodePort on the node's address too.
    let o = send(
        &mut sw,
        A.port,
        tcp(
            (A.mac, ROUTER),
            (A.ip, 40000),
            (NODE_IP, NODE_PORT),
            SYN,
            b"",
        ),
    );
    let seen3 = o.from().1;
    assert_eq!((o.port, o.from().0, o.to()), (B.port, GW_2, (B.ip, BPORT)));
    let o = send(&mut sw, B.port, from_backend(B, (GW_2, seen3), SYN | ACK));
    assert_frame(
        &o,
        A.port,
        (A.mac, ROUTER),
        (NODE_IP, NODE_PORT),
        (A.ip, 40000),
        63,
    );
    // The Service's own VIP works from the uplink too, source-translated
    // like NodePort traffic (an off-cluster client), and answered from the VIP.
    let o = send(
        &mut sw,
        UPLINK,
        tcp((EXT_MAC, ROUTER), (EXT_IP, 50001), (VIP, VPORT), SYN, b""),
    );
    assert_frame(
        &o,
        B.port,
        (B.mac, ROUTER),
        (GW_2, 50001),
        (B.ip, BPORT),
        63,
    );
    let o = send(&mut sw, B.port, from_backend(B, (GW_2, 50001), SYN | ACK));
    assert_eq!(
        (o.port, o.from(), o.to()),
        (UPLINK, (VIP, VPORT), (EXT_IP, 50001))
    );
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// Endpoints and clients behind VXLAN.

#[test]
fn a_remote_endpoint_is_reached_and_answers_through_the_tunnel() {
    let mut sw = switch();
    add_uplink(&mut sw);
    let svc = Service::new(
        v4(VIP),
        VPORT,
        PROTO_TCP,
        vec![endpoint(v4(REMOTE_POD), BPORT)],
        vec![],
        DEFAULT_MIN_SIZE,
    );
    set_service(&mut sw, svc);
    let o = send(&mut sw, A.port, to_vip(A, 40000, SYN));
    let inner = vxlan_out(&o);
    assert_eq!(
        (inner.from(), inner.to(), inner.ip.time_to_live),
        ((A.ip, 40000), (REMOTE_POD, BPORT), 63)
    );
    // The answer arrives inside VXLAN and is translated once unwrapped.
    let answer = tcp(
        (REMOTE_ROUTER, REMOTE_ROUTER),
        (REMOTE_POD, BPORT),
        (A.ip, 40000),
        SYN | ACK,
        b"",
    );
    let o = send(&mut sw, UPLINK, vxlan_in(&answer));
    assert_frame(&o, A.port, (A.mac, ROUTER), (VIP, VPORT), (A.ip, 40000), 63);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

/// A client on another node whose traffic to a VIP reaches this node
/// inside VXLAN (its own switch does not know the Service yet) is refused
/// like a local one, and the refusal must go back through the tunnel, as
/// the router's own ICMP errors about tunnelled packets do.
#[test]
fn a_tunnelled_client_is_refused_through_the_tunnel() {
    let mut sw = switch();
    add_uplink(&mut sw);
    set_service(&mut sw, service(&[], &[]));
    let syn = tcp(
        (REMOTE_ROUTER, REMOTE_ROUTER),
        (REMOTE_CLIENT, 40000),
        (VIP, VPORT),
        SYN,
        b"",
    );
    let o = send(&mut sw, UPLINK, vxlan_in(&syn));
    let rst = vxlan_out(&o);
    assert_eq!(
        (rst.from(), rst.to()),
        ((VIP, VPORT), (REMOTE_CLIENT, 40000))
    );
    assert!(rst.tcp().rst && rst.tcp().ack);
    sw.assert_drops(&[(UPLINK, DropReason::NoEndpoints, 1)]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// ICMP errors about translated packets.

/// The IPv4 header and first 8 bytes of the packet an ICMP error quotes:
/// (source, source port), (destination, destination port).
fn quoted(o: &Out) -> (([u8; 4], u16), ([u8; 4], u16)) {
    let q = &o.payload;
    let port = |at: usize| u16::from_be_bytes([q[at], q[at + 1]]);
    let ihl = usize::from(q[0] & 0x0f) * 4;
    let addr = |at: usize| [q[at], q[at + 1], q[at + 2], q[at + 3]];
    ((addr(12), port(ihl)), (addr(16), port(ihl + 2)))
}

/// A client matches an ICMP error to its socket by the packet it quotes:
/// for a packet to a VIP that the switch could not deliver (here: too big
/// for the endpoint's link, with DF set), the quote must show the VIP, as
/// Linux's NAT rewrites it (nf_nat_icmp_reply_translation); otherwise path
/// MTU discovery towards a Service fails.
#[test]
fn an_icmp_error_about_a_translated_packet_quotes_what_the_client_sent() {
    let mut sw = switch();
    set_service(&mut sw, service(&[B], &[]));
    sw.configure_port(B.port, |e| e.mtu = 1000);
    let big = tcp(
        (A.mac, ROUTER),
        (A.ip, 40000),
        (VIP, VPORT),
        ACK,
        &[0x55; 1200],
    );
    let o = send(&mut sw, A.port, big);
    assert_eq!(
        (o.port, o.ip.source, o.ip.destination),
        (A.port, GW_1, A.ip)
    );
    assert_eq!(
        o.icmp,
        Some(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1000 }
        ))
    );
    assert_eq!(quoted(&o), ((A.ip, 40000), (VIP, VPORT)), "the quote");
}

/// The same the other way: a reply too big for the client's link makes the
/// router's "fragmentation needed" reach the endpoint, quoting what the
/// endpoint sent (endpoint → client), so its path MTU discovery works.
#[test]
fn an_icmp_error_about_a_translated_reply_reaches_the_endpoint() {
    let mut sw = switch();
    set_service(&mut sw, service(&[B], &[]));
    let (b, seen) = connect(&mut sw, A, 40000);
    assert_eq!((b, seen), (B, 40000));
    sw.configure_port(A.port, |e| e.mtu = 1000);
    let big = tcp(
        (B.mac, ROUTER),
        (B.ip, BPORT),
        (A.ip, 40000),
        ACK,
        &[0x55; 1200],
    );
    let o = send(&mut sw, B.port, big);
    assert_eq!((o.port, o.ip.destination), (B.port, B.ip));
    assert_eq!(
        o.icmp,
        Some(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1000 }
        ))
    );
    assert_eq!(quoted(&o), ((B.ip, BPORT), (A.ip, 40000)), "the quote");
    // And a client's own error about a reply (sent to the VIP) reaches the
    // endpoint the same way.
    let reply = send(&mut sw, B.port, from_backend(B, (A.ip, 40000), ACK));
    assert_eq!(reply.from(), (VIP, VPORT));
    let mut quote = Vec::new();
    PacketBuilder::ipv4(VIP, A.ip, 63)
        .tcp(VPORT, 40000, SEQ, 64240)
        .write(&mut quote, &[])
        .unwrap();
    let mut err = Vec::new();
    PacketBuilder::ethernet2(A.mac, ROUTER)
        .ipv4(A.ip, VIP, 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::Port,
        ))
        .write(&mut err, &quote)
        .unwrap();
    let o = send(&mut sw, A.port, err);
    assert_eq!(
        (o.port, o.ip.source, o.ip.destination),
        (B.port, A.ip, B.ip)
    );
    assert_eq!(quoted(&o), ((B.ip, BPORT), (A.ip, 40000)), "the quote");
}

/// An endpoint's ICMP error about a packet of a flow (UDP to a port it
/// does not listen on) reaches the client from the VIP, quoting what the
/// client sent, so that the client's socket sees "connection refused".
#[test]
fn an_endpoints_icmp_error_about_a_flow_is_translated_back() {
    let mut sw = switch();
    let dns = dns_service(&[B]);
    set_service(&mut sw, dns);
    sw.inject(A.port, udp((A.mac, ROUTER), (A.ip, 5353), (VIP, 53), b"q"));
    sw.run();
    let at_b = sw.take_one(B.port);
    let mut err = Vec::new();
    PacketBuilder::ethernet2(B.mac, ROUTER)
        .ipv4(B.ip, A.ip, 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::Port,
        ))
        .write(&mut err, &at_b[IP..])
        .unwrap();
    let o = send(&mut sw, B.port, err);
    assert_eq!((o.port, o.ip.source, o.ip.destination), (A.port, VIP, A.ip));
    assert_eq!(quoted(&o), ((A.ip, 5353), (VIP, 53)), "the quote");
}

// ---------------------------------------------------------------------------
// 8. Across workers.

#[test]
fn a_flow_between_workers_is_translated_both_ways() {
    let mut sw = switch_with(
        Config {
            pools: vec![256, 256],
            ..Config::default()
        },
        |id| usize::from(id == B.port),
    );
    set_service(&mut sw, service(&[B], &[]));
    let (b, seen) = connect(&mut sw, A, 40000);
    assert_eq!((b, seen), (B, 40000));
    // The SYN and the handshake's ACK to B, the SYN-ACK to A.
    assert_eq!(sw.worker_stats(1, B.port).tx_packets, 2);
    assert_eq!(sw.worker_stats(0, A.port).tx_packets, 1);
    // More of the same flow, both ways.
    for _ in 0..3 {
        assert_eq!(backend_of(&mut sw, A, 40000, ACK), B);
        let o = send(&mut sw, B.port, from_backend(B, (A.ip, 40000), ACK));
        assert_eq!(
            (o.port, o.from(), o.to()),
            (A.port, (VIP, VPORT), (A.ip, 40000))
        );
    }
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 9. A full connection table.

#[test]
fn a_syn_flood_evicts_unanswered_flows_never_an_established_one() {
    // Four flows per shard.
    let limit = fastpath::services::conntrack::SHARDS * 4;
    let mut sw = switch_with(
        Config {
            ct_limit: limit,
            ..Config::default()
        },
        |_| 0,
    );
    set_service(&mut sw, service(&[B], &[]));
    assert_eq!(connect(&mut sw, A, 40000), (B, 40000));

    // C floods: every SYN is forwarded, evicting older unanswered ones.
    const FLOOD: u16 = 3000;
    for sport in 1024..1024 + FLOOD {
        sw.inject(C.port, to_vip(C, sport, SYN));
    }
    sw.run();
    let to_b = sw.take_sent(B.port);
    assert_eq!(to_b.len(), usize::from(FLOOD));
    sw.assert_silent_except(&[]);
    let c = sw.conntrack.counters(clock::now_ms());
    assert!(c.evicted >= u64::from(FLOOD) - limit as u64, "{c:?}");
    assert!(c.entries <= limit as u64, "{c:?}");
    assert_eq!(c.full, 0, "{c:?}");

    // A's flow still goes both ways.
    let o = send(&mut sw, A.port, to_vip(A, 40000, PSH | ACK));
    assert_eq!((o.port, o.to()), (B.port, (B.ip, BPORT)));
    let o = send(&mut sw, B.port, from_backend(B, (A.ip, 40000), ACK));
    assert_eq!(
        (o.port, o.from(), o.to()),
        (A.port, (VIP, VPORT), (A.ip, 40000))
    );
    let established: Vec<_> = sw
        .conntrack
        .flows(clock::now_ms())
        .into_iter()
        .filter(|f| f.state == FlowState::Established)
        .collect();
    assert_eq!(established.len(), 1);
    assert_eq!(
        established[0].orig,
        flow_key(v4(A.ip), v4(VIP), 40000, VPORT, PROTO_TCP)
    );
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn a_table_full_of_established_flows_refuses_new_ones() {
    // One flow per shard: established flows fill the table shard by shard.
    let limit = fastpath::services::conntrack::SHARDS;
    let mut sw = switch_with(
        Config {
            ct_limit: limit,
            ..Config::default()
        },
        |_| 0,
    );
    set_service(&mut sw, service(&[B], &[]));
    let mut tried = 0u64;
    let mut answered = Vec::new();
    for sport in 10000..20000u16 {
        if sw.conntrack.counters(clock::now_ms()).entries == limit as u64 {
            break;
        }
        tried += 1;
        sw.inject(A.port, to_vip(A, sport, SYN));
        sw.run();
        if let Some(f) = sw.take_sent(B.port).pop() {
            let seen = parse(B.port, &f).from().1;
            let o = send(&mut sw, B.port, from_backend(B, (A.ip, seen), SYN | ACK));
            assert_eq!(o.to(), (A.ip, sport));
            send(&mut sw, A.port, to_vip(A, sport, ACK));
            answered.push(sport);
        }
        sw.assert_silent_except(&[]);
    }
    assert_eq!(answered.len(), limit, "the table never filled");
    let refused = tried - limit as u64;
    sw.assert_drops(&[(A.port, DropReason::ConntrackFull, refused)]);

    // Every shard holds an established flow: a new flow has nowhere to go.
    send_nothing_out(&mut sw, C.port, to_vip(C, 40000, SYN));
    sw.assert_drops(&[
        (A.port, DropReason::ConntrackFull, refused),
        (C.port, DropReason::ConntrackFull, 1),
    ]);
    let c = sw.conntrack.counters(clock::now_ms());
    assert_eq!(
        (c.entries, c.full, c.evicted),
        (limit as u64, refused + 1, 0)
    );
    // The answered flows still work.
    for &sport in answered.iter().step_by(9) {
        assert_eq!(backend_of(&mut sw, A, sport, ACK), B);
    }
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 10. Bad input.

#[test]
fn broken_packets_to_a_vip_are_malformed_and_fragments_are_refused() {
    let mut sw = switch();
    set_service(&mut sw, service(&[B], &[]));
    let dns = dns_service(&[B]);
    set_service(&mut sw, dns);
    let syn = || {
        tcp(
            (A.mac, ROUTER),
            (A.ip, 40000),
            (VIP, VPORT),
            SYN,
            b"0123456789",
        )
    };
    let dgram = || udp((A.mac, ROUTER), (A.ip, 5353), (VIP, 53), b"query");
    let set_total = |f: &mut Vec<u8>, total: u16| {
        f[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
        fix_ipv4_checksum(f);
    };
    let mut malformed: Vec<Vec<u8>> = Vec::new();
    // The TCP header cut short (IP length says so; the frame is padded).
    let mut f = syn();
    set_total(&mut f, 20 + 12);
    f.truncate(L4 + 12);
    f.resize(60, 0);
    malformed.push(f);
    // Data offsets below the header size and beyond the segment.
    for off in [4u8, 15] {
        let mut f = syn();
        f[L4 + 12] = off << 4;
        malformed.push(f);
    }
    // UDP length shorter and longer than the datagram.
    for len in [9u16, 40] {
        let mut f = dgram();
        f[L4 + 4..L4 + 6].copy_from_slice(&len.to_be_bytes());
        malformed.push(f);
    }
    // A bad IPv4 header checksum.
    let mut f = syn();
    f[IP + 10] ^= 0x5a;
    malformed.push(f);
    // Source port 0.
    let mut f = syn();
    f[L4..L4 + 2].copy_from_slice(&[0, 0]);
    malformed.push(f);
    // IP total length beyond the frame.
    let mut f = syn();
    let total = (f.len() - IP + 1) as u16;
    set_total(&mut f, total);
    malformed.push(f);

    let mut fragments: Vec<Vec<u8>> = Vec::new();
    for flags_frag in [0x2000u16, 0x0010, 0x4010, 0x2000 | 0x00b9] {
        for mut f in [syn(), dgram()] {
            f[IP + 6..IP + 8].copy_from_slice(&flags_frag.to_be_bytes());
            fix_ipv4_checksum(&mut f);
            fragments.push(f);
        }
    }
    let (nm, nf) = (malformed.len() as u64, fragments.len() as u64);
    for f in malformed.into_iter().chain(fragments) {
        sw.inject(A.port, f);
    }
    sw.run();
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[
        (A.port, DropReason::Malformed, nm),
        (A.port, DropReason::IpFragment, nf),
    ]);
    assert_eq!(sw.conntrack.counters(clock::now_ms()).created, 0);

    // The well-formed originals go through.
    assert_eq!(backend_of(&mut sw, A, 40000, SYN), B);
    let o = send(&mut sw, A.port, dgram());
    assert_eq!(
        (o.port, o.to(), o.payload.as_slice()),
        (B.port, (B.ip, BPORT), &b"query"[..])
    );
    sw.assert_no_leaks();
}

/// A mutation of `base`: some bytes after the Ethernet header changed at
/// random (mostly in the IPv4 and transport headers), sometimes cut or
/// extended, sometimes with the IPv4 checksum made right again so that the
/// damage reaches the transport checks.
fn mutate(rng: &mut XorShift, base: &[u8]) -> Vec<u8> {
    let mut f = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = if rng.below(4) == 0 {
            IP + rng.below((f.len() - IP) as u64) as usize
        } else {
            IP + rng.below(((L4 + 20).min(f.len()) - IP) as u64) as usize
        };
        match rng.below(3) {
            0 => f[at] ^= 1 << rng.below(8),
            1 => f[at] = rng.next_u64() as u8,
            _ => f[at] = [0, 0xff, 0x40, 0x45, 0x20, 0x06, 0x11][rng.below(7) as usize],
        }
    }
    match rng.below(8) {
        0 => f.truncate(IP + rng.below((f.len() - IP) as u64) as usize),
        1 => {
            let n = rng.below(64) as usize;
            f.extend(rng.bytes(n));
        }
        _ => {}
    }
    if rng.below(3) != 0 {
        fix_ipv4_checksum(&mut f);
    }
    f
}

/// Random damage to traffic of a Service, both directions: never a
/// panic, each frame received and then sent at most once and counted at
/// most once (and at least one of the two), and every buffer back.
#[test]
fn mutated_service_traffic_keeps_every_count_and_buffer() {
    let mut sw = switch();
    let mut dns = dns_service(&[B, C]);
    dns.affinity_ms = Some(60_000);
    set_service(&mut sw, dns);
    set_service(&mut sw, service(&[B, C], &[D]));
    sw.teach(A.port, A.mac);
    for sport in 40000..40010 {
        connect(&mut sw, A, sport);
    }
    let bases: Vec<(PortId, Vec<u8>)> = vec![
        (A.port, to_vip(A, 40001, PSH | ACK)),
        (A.port, to_vip(A, 40100, SYN)),
        (
            A.port,
            tcp(
                (A.mac, ROUTER),
                (A.ip, 40002),
                (VIP, VPORT),
                ACK,
                b"payload!",
            ),
        ),
        (A.port, udp((A.mac, ROUTER), (A.ip, 5353), (VIP, 53), b"q")),
        (B.port, from_backend(B, (A.ip, 40001), ACK)),
        (C.port, from_backend(C, (A.ip, 40002), FIN | ACK)),
        (
            C.port,
            tcp((C.mac, A.mac), (C.ip, BPORT), (A.ip, 40003), ACK, b"l2"),
        ),
        (
            B.port,
            udp((B.mac, ROUTER), (B.ip, BPORT), (A.ip, 5353), b"a"),
        ),
        (B.port, to_vip(B, 45000, SYN)),
        (B.port, from_backend(B, (GW_2, 45000), SYN | ACK)),
    ];
    let drops = |sw: &TestSwitch| -> u64 { sw.total_drops() };
    let mut rng = XorShift::new(0x5eed_5e41);
    let mut by_reason = [0u64; DropReason::COUNT];
    for i in 0..5000u32 {
        let (port, base) = &bases[rng.below(bases.len() as u64) as usize];
        let f = if rng.below(10) == 0 {
            base.clone()
        } else {
            mutate(&mut rng, base)
        };
        let (rx0, tx0, d0) = (sw.stats(*port).rx_packets, sw.total_tx(), drops(&sw));
        sw.inject(*port, f.clone());
        sw.run();
        let (tx, d) = (sw.total_tx() - tx0, drops(&sw) - d0);
        assert_eq!(
            sw.stats(*port).rx_packets,
            rx0 + 1,
            "frame {i} not received"
        );
        assert!(
            tx <= 1 && d <= 1 && tx + d >= 1,
            "frame {i} from port {port}: sent {tx}, counted {d}: {f:02x?}"
        );
        for (p, out) in take_all(&sw) {
            assert_ne!(p, UPLINK, "nothing goes to the uplink: {out:02x?}");
        }
        assert_eq!(sw.frames_held(), 0, "frame {i} held");
        if i % 500 == 499 {
            sw.assert_pools_consistent();
        }
    }
    for p in sw.port_ids() {
        for (r, n) in by_reason.iter_mut().zip(sw.stats(p).drops) {
            *r += n;
        }
    }
    for reason in [
        DropReason::Malformed,
        DropReason::IpFragment,
        DropReason::NoEndpoints,
    ] {
        assert!(
            by_reason[reason.index()] > 0,
            "no {} drops: {by_reason:?}",
            reason.name()
        );
    }
    assert!(sw.conntrack.counters(clock::now_ms()).created > 20);
    sw.assert_no_leaks();
}
