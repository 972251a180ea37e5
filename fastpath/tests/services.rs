//! Kubernetes Services as pods see them: connections to a VIP reach an
//! endpoint and its answers come back from the VIP, flows spread over
//! endpoints and keep theirs while it is listed, refusals when there is
//! none, ClientIP affinity, hairpin, and TCP state. The edges of the path
//! (NodePort, VXLAN, ICMP errors, workers, a full table, bad input) are in
//! `services_edges.rs`.
//!
//! Every test runs over memory ports with the test playing the controller
//! (see `common`); the lab below lives in `common/services.rs`. Frames are
//! built with etherparse's `PacketBuilder`, and what the switch sends is
//! parsed back with etherparse (`parse` checks the IPv4, TCP, UDP and ICMP
//! checksums against etherparse's own).
//!
//! The switch of every test ([`switch`]):
//!
//! ```text
//! port 0  pod A  10.244.1.10  02:00:00:00:00:0a   the client; subnet 10.244.1.0/24, router 10.244.1.1
//! port 1  pod B  10.244.2.20  02:00:00:00:00:0b   subnet 10.244.2.0/24, router 10.244.2.1
//! port 2  pod C  10.244.1.11  02:00:00:00:00:0c   (A's subnet)
//! port 3  pod D  10.244.2.21  02:00:00:00:00:0d
//! port 4  uplink: the node 192.168.0.5 (NIC 02:77:00:00:00:05), outside
//!         clients 192.168.0.77 and .78, and a remote node's VTEP
//!         192.168.0.2 (VNI 42) with pods 10.244.3.0/24 (see `add_uplink`)
//! ```
//!
//! Routes are the router's `Local` /32s and pod /32 `Peer` routes (pods
//! declared with `--ip` and `--mac`), so no packet ever waits for ARP;
//! the uplink's subnet is added where a test needs it. The Service is
//! 10.96.0.10:80/TCP with endpoints on port 8080 of the pods.

mod common;
#[path = "common/services.rs"]
mod lab;

use lab::*;

// ---------------------------------------------------------------------------
// 1. Forward and reply.

#[test]
fn a_connection_to_a_vip_reaches_a_routed_endpoint_and_the_reply_comes_from_the_vip() {
    let mut sw = switch();
    set_service(&mut sw, service(&[B], &[]));

    // The client's SYN and a data segment, DNATed and routed to B.
    let o = send(&mut sw, A.port, to_vip(A, 40000, SYN));
    assert_frame(
        &o,
        B.port,
        (B.mac, ROUTER),
        (A.ip, 40000),
        (B.ip, BPORT),
        63,
    );
    let t = o.tcp();
    assert!(t.syn && !t.ack && t.sequence_number == SEQ);
    let data = tcp(
        (A.mac, ROUTER),
        (A.ip, 40000),
        (VIP, VPORT),
        PSH | ACK,
        b"GET / HTTP/1.1\r\n\r\n",
    );
    let o = send(&mut sw, A.port, data);
    assert_frame(
        &o,
        B.port,
        (B.mac, ROUTER),
        (A.ip, 40000),
        (B.ip, BPORT),
        63,
    );
    assert_eq!(o.payload, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(o.tcp().acknowledgment_number, ACK_NO);

    // B's answers come back from the VIP, routed to A.
    let reply = tcp(
        (B.mac, ROUTER),
        (B.ip, BPORT),
        (A.ip, 40000),
        PSH | ACK,
        b"HTTP/1.1 200 OK\r\n\r\nhello, odd",
    );
    let o = send(&mut sw, B.port, reply);
    assert_frame(&o, A.port, (A.mac, ROUTER), (VIP, VPORT), (A.ip, 40000), 63);
    assert_eq!(o.payload, b"HTTP/1.1 200 OK\r\n\r\nhello, odd");

    // Answered, not yet confirmed by the client: embryonic; its ACK
    // establishes the flow.
    let flows = sw.conntrack.flows(clock::now_ms());
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].state, FlowState::SynRecv);
    let ack = tcp((A.mac, ROUTER), (A.ip, 40000), (VIP, VPORT), ACK, b"");
    send(&mut sw, A.port, ack);
    let flows = sw.conntrack.flows(clock::now_ms());
    assert_eq!(flows[0].state, FlowState::Established);
    assert_eq!(flows[0].backend, endpoint(v4(B.ip), BPORT));
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn an_endpoint_on_the_clients_subnet_answers_it_at_l2_from_the_vip() {
    let mut sw = switch();
    set_service(&mut sw, service(&[C], &[]));
    sw.teach(A.port, A.mac);

    let o = send(&mut sw, A.port, to_vip(A, 40001, SYN));
    assert_frame(
        &o,
        C.port,
        (C.mac, ROUTER),
        (A.ip, 40001),
        (C.ip, BPORT),
        63,
    );
    // C sends its answer straight to A's MAC: the bridge switches it,
    // translated back on the way, TTL untouched.
    let reply = tcp((C.mac, A.mac), (C.ip, BPORT), (A.ip, 40001), SYN | ACK, b"");
    let o = send(&mut sw, C.port, reply);
    assert_frame(&o, A.port, (A.mac, C.mac), (VIP, VPORT), (A.ip, 40001), 64);
    assert!(o.tcp().syn && o.tcp().ack);
    // A packet from C that answers nothing is left alone.
    let o = send(
        &mut sw,
        C.port,
        tcp((C.mac, A.mac), (C.ip, BPORT), (A.ip, 40999), ACK, b""),
    );
    assert_eq!((o.from(), o.to()), ((C.ip, BPORT), (A.ip, 40999)));
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn udp_to_a_vip_is_translated_both_ways_and_a_missing_checksum_stays_missing() {
    let mut sw = switch();
    let dns = dns_service(&[B]);
    set_service(&mut sw, dns);
    let q = udp((A.mac, ROUTER), (A.ip, 5353), (VIP, 53), b"query, odd len");
    let o = send(&mut sw, A.port, q);
    assert_frame(&o, B.port, (B.mac, ROUTER), (A.ip, 5353), (B.ip, BPORT), 63);
    assert_ne!(
        o.udp.as_ref().unwrap().checksum,
        0,
        "checksum kept (and valid)"
    );
    assert_eq!(o.payload, b"query, odd len");
    let r = udp((B.mac, ROUTER), (B.ip, BPORT), (A.ip, 5353), b"answer");
    let o = send(&mut sw, B.port, r);
    assert_frame(&o, A.port, (A.mac, ROUTER), (VIP, 53), (A.ip, 5353), 63);
    assert_ne!(o.udp.as_ref().unwrap().checksum, 0);

    // A datagram without a checksum (0) is translated without one.
    let mut q = udp((A.mac, ROUTER), (A.ip, 5354), (VIP, 53), b"no sum");
    q[L4 + 6..L4 + 8].copy_from_slice(&[0, 0]);
    let o = send(&mut sw, A.port, q);
    assert_eq!((o.port, o.to()), (B.port, (B.ip, BPORT)));
    assert_eq!(o.udp.as_ref().unwrap().checksum, 0);
    let flows = sw.conntrack.flows(clock::now_ms());
    assert!(
        flows.iter().all(|f| f.state == FlowState::Open),
        "{flows:?}"
    );
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn two_vips_sharing_an_endpoint_keep_one_client_port_apart() {
    const VIP2: [u8; 4] = [10, 96, 0, 11];
    let mut sw = switch();
    set_service(&mut sw, service(&[B], &[]));
    set_service(
        &mut sw,
        Service::new(
            v4(VIP2),
            VPORT,
            PROTO_TCP,
            endpoints(&[B]),
            vec![],
            DEFAULT_MIN_SIZE,
        ),
    );

    // The same client port to both VIPs: B would see one tuple twice, so
    // the second flow's source port is translated.
    let first = send(&mut sw, A.port, to_vip(A, 40000, SYN));
    let second = send(
        &mut sw,
        A.port,
        tcp((A.mac, ROUTER), (A.ip, 40000), (VIP2, VPORT), SYN, b""),
    );
    assert_eq!(first.from(), (A.ip, 40000));
    let p2 = second.from().1;
    assert_eq!(second.from().0, A.ip);
    assert_ne!(p2, 40000, "two flows with one tuple at the endpoint");
    assert_eq!(second.to(), (B.ip, BPORT));
    // Each answer comes back from the VIP it belongs to, to port 40000.
    let o = send(&mut sw, B.port, from_backend(B, (A.ip, 40000), SYN | ACK));
    assert_eq!((o.from(), o.to()), ((VIP, VPORT), (A.ip, 40000)));
    let o = send(&mut sw, B.port, from_backend(B, (A.ip, p2), SYN | ACK));
    assert_eq!((o.from(), o.to()), ((VIP2, VPORT), (A.ip, 40000)));
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 2. Spread.

#[test]
fn flows_spread_over_every_endpoint_and_a_tuple_always_gets_the_same_one() {
    let mut sw = switch();
    set_service(&mut sw, service(&[B, C, D], &[]));
    const FLOWS: u16 = 600;
    let mut chosen: HashMap<u16, Pod> = HashMap::new();
    for sport in 20000..20000 + FLOWS {
        sw.inject(A.port, to_vip(A, sport, SYN));
    }
    sw.run();
    for (port, f) in take_all(&sw) {
        let o = parse(port, &f);
        assert_eq!(o.to(), (o.pod().ip, BPORT));
        assert!(chosen.insert(o.from().1, o.pod()).is_none(), "{o:?}");
    }
    assert_eq!(chosen.len(), usize::from(FLOWS), "every SYN forwarded once");
    let mut per: HashMap<Pod, u32> = HashMap::new();
    for b in chosen.values() {
        *per.entry(*b).or_default() += 1;
    }
    // 200 each expected; the bounds are more than five standard deviations.
    for b in [B, C, D] {
        let n = per.get(&b).copied().unwrap_or(0);
        assert!((140..=260).contains(&n), "{:?}: {n} of {FLOWS}", b.ip);
    }

    // The same tuple again, tracked or (after a flush) not: same endpoint.
    for sport in (20000..20000 + FLOWS).step_by(7) {
        assert_eq!(backend_of(&mut sw, A, sport, ACK), chosen[&sport]);
    }
    sw.conntrack.flush();
    for sport in (20000..20000 + FLOWS).step_by(7) {
        assert_eq!(backend_of(&mut sw, A, sport, SYN), chosen[&sport]);
    }
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 3. Endpoint changes.

#[test]
fn established_flows_keep_their_endpoint_while_it_is_listed() {
    let mut sw = switch();
    set_service(&mut sw, service(&[B, C, D], &[]));
    let mut flows: Vec<(u16, Pod)> = Vec::new();
    for sport in 30000..30060 {
        flows.push((sport, connect(&mut sw, A, sport).0));
    }
    let on = |flows: &[(u16, Pod)], b: Pod| flows.iter().filter(|f| f.1 == b).count();
    assert!([B, C, D].iter().all(|&b| on(&flows, b) > 0), "{flows:?}");

    // D goes away: the flows of B and C stay where they are, D's move.
    set_service(&mut sw, service(&[B, C], &[]));
    for (sport, b) in &mut flows {
        let now = backend_of(&mut sw, A, *sport, PSH | ACK);
        if *b == D {
            assert_ne!(now, D, "a removed endpoint gets nothing");
            *b = now;
        } else {
            assert_eq!(now, *b, "flow from {sport} moved");
        }
    }

    // B terminates: its flows stay with it; new flows go to C only.
    set_service(&mut sw, service(&[C], &[B]));
    for &(sport, b) in &flows {
        assert_eq!(backend_of(&mut sw, A, sport, ACK), b, "flow from {sport}");
    }
    for sport in 31000..31040 {
        assert_eq!(backend_of(&mut sw, A, sport, SYN), C, "new flow {sport}");
    }

    // With no ready endpoint left, new flows go to the terminating one.
    set_service(&mut sw, service(&[], &[B]));
    for sport in 32000..32020 {
        assert_eq!(backend_of(&mut sw, A, sport, SYN), B, "new flow {sport}");
    }

    // B is removed entirely while C is ready again: B's flows move to C.
    set_service(&mut sw, service(&[C], &[]));
    let moved: Vec<u16> = flows
        .iter()
        .filter(|f| f.1 == B)
        .map(|f| f.0)
        .chain(32000..32020)
        .collect();
    assert!(moved.len() > 20);
    for sport in moved {
        assert_eq!(backend_of(&mut sw, A, sport, ACK), C, "flow from {sport}");
    }
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 4. No endpoints.

#[test]
fn a_service_without_endpoints_refuses_with_rst_or_port_unreachable() {
    let mut sw = switch();
    set_service(&mut sw, service(&[], &[]));
    let dns = dns_service(&[]);
    set_service(&mut sw, dns);

    // A SYN: RST|ACK from VIP:80, acknowledging the SYN.
    let o = send(&mut sw, A.port, to_vip(A, 40000, SYN));
    assert_frame(&o, A.port, (A.mac, ROUTER), (VIP, VPORT), (A.ip, 40000), 64);
    let t = o.tcp();
    assert!(t.rst && t.ack && !t.syn, "{t:?}");
    assert_eq!((t.sequence_number, t.acknowledgment_number), (0, SEQ + 1));

    // A segment with data and ACK: a bare RST whose sequence is the ACK.
    let data = tcp(
        (A.mac, ROUTER),
        (A.ip, 40001),
        (VIP, VPORT),
        PSH | ACK,
        b"abc",
    );
    let o = send(&mut sw, A.port, data);
    let t = o.tcp();
    assert!(t.rst && !t.ack, "{t:?}");
    assert_eq!(t.sequence_number, ACK_NO);
    assert_eq!(o.to(), (A.ip, 40001));

    // UDP: ICMP port unreachable from the VIP, quoting the datagram.
    // (Padded to the Ethernet minimum: the padding is not quoted.)
    let mut d = udp((A.mac, ROUTER), (A.ip, 5353), (VIP, 53), b"query?");
    let datagram = d[IP..].to_vec();
    d.resize(60, 0);
    let o = send(&mut sw, A.port, d);
    assert_eq!((o.port, o.dst, o.src), (A.port, A.mac, ROUTER));
    assert_eq!((o.ip.source, o.ip.destination), (VIP, A.ip));
    assert_eq!(
        o.icmp,
        Some(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::Port
        ))
    );
    assert_eq!(o.payload, datagram, "the whole datagram is quoted");

    // A RST is never answered (but counted).
    send_nothing_out(&mut sw, A.port, to_vip(A, 40002, RST));

    // A port the VIP does not serve is refused the same way (a SYN with
    // data: the RST acknowledges both).
    let o = send(
        &mut sw,
        A.port,
        tcp((A.mac, ROUTER), (A.ip, 40003), (VIP, 443), SYN, b"early"),
    );
    assert_eq!((o.from(), o.to()), ((VIP, 443), (A.ip, 40003)));
    assert!(o.tcp().rst && o.tcp().ack);
    assert_eq!(o.tcp().acknowledgment_number, SEQ + 1 + 5);
    assert!(o.payload.is_empty());
    let o = send(
        &mut sw,
        A.port,
        udp((A.mac, ROUTER), (A.ip, 5353), (VIP, 54), b"?"),
    );
    assert_eq!(
        o.icmp,
        Some(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::Port
        ))
    );
    assert_eq!(o.ip.source, VIP);

    sw.assert_drops(&[(A.port, DropReason::NoEndpoints, 6)]);
    assert_eq!(sw.conntrack.counters(clock::now_ms()).entries, 0);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 5. ClientIP affinity.

#[test]
fn client_ip_affinity_sends_a_client_to_one_endpoint_until_it_expires() {
    // Long enough that a stalled test thread cannot outlive it by accident.
    const AFFINITY_MS: u64 = 1000;
    let mut sw = switch();
    // C is the second client, so two endpoints.
    let mut svc = service(&[B, D], &[]);
    svc.affinity_ms = Some(AFFINITY_MS);
    let picks = svc.clone();
    set_service(&mut sw, svc);
    // Maglev's choice for a flow from A's `sport`, affinity aside.
    let maglev = |sport: u16| {
        let k = flow_key(v4(A.ip), v4(VIP), sport, VPORT, PROTO_TCP);
        picks.pick(tuple_hash(k)).unwrap()
    };

    let first = backend_of(&mut sw, A, 41000, SYN);
    let first_ep = endpoint(v4(first.ip), BPORT);
    let mut against_maglev = 0;
    for sport in 41001..41030 {
        assert_eq!(backend_of(&mut sw, A, sport, SYN), first, "port {sport}");
        against_maglev += u32::from(maglev(sport) != first_ep);
    }
    assert!(against_maglev > 0, "affinity never overrode Maglev");
    // Another client has an entry of its own.
    let c_first = backend_of(&mut sw, C, 41000, SYN);
    for sport in 41001..41010 {
        assert_eq!(
            backend_of(&mut sw, C, sport, SYN),
            c_first,
            "C's port {sport}"
        );
    }
    assert_eq!(sw.conntrack.counters(clock::now_ms()).affinity, 2);
    let remembered = |sw: &TestSwitch| {
        sw.conntrack
            .affinity(picks.key(), v4(A.ip), clock::now_ms())
    };
    assert_eq!(remembered(&sw), Some(first_ep));

    // After the timeout (a sleep, not a timing assertion) the entry is
    // gone, and a new flow goes where Maglev sends it.
    std::thread::sleep(Duration::from_millis(AFFINITY_MS + 100));
    assert_eq!(sw.conntrack.counters(clock::now_ms()).affinity, 0);
    assert_eq!(remembered(&sw), None);
    let sport = (42000..43000)
        .find(|&p| maglev(p) != first_ep)
        .expect("some port Maglev sends elsewhere");
    let b = backend_of(&mut sw, A, sport, SYN);
    assert_ne!(b, first, "the expired affinity still decided");
    assert_eq!(endpoint(v4(b.ip), BPORT), maglev(sport));
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 6. Hairpin.

#[test]
fn an_endpoint_reaching_itself_through_its_service_is_source_translated() {
    let mut sw = switch();
    set_service(&mut sw, service(&[B], &[]));

    // B → VIP comes back to B from its router address, out of its own port.
    let o = send(&mut sw, B.port, to_vip(B, 45000, SYN));
    let seen = o.from().1;
    assert_frame(&o, B.port, (B.mac, ROUTER), (GW_2, seen), (B.ip, BPORT), 63);
    assert!(o.tcp().syn);
    // B answers the router address; B sees the answer from the VIP.
    let o = send(&mut sw, B.port, from_backend(B, (GW_2, seen), SYN | ACK));
    assert_frame(&o, B.port, (B.mac, ROUTER), (VIP, VPORT), (B.ip, 45000), 63);
    assert!(o.tcp().syn && o.tcp().ack);
    let flows = sw.conntrack.flows(clock::now_ms());
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].state, FlowState::SynRecv);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 11. TCP state.

#[test]
fn fins_from_both_sides_or_a_reset_close_a_flow() {
    let mut sw = switch();
    set_service(&mut sw, service(&[B], &[]));
    let state = |sw: &TestSwitch, sport: u16| {
        let k = flow_key(v4(A.ip), v4(VIP), sport, VPORT, PROTO_TCP);
        let flows = sw.conntrack.flows(clock::now_ms());
        let f = flows.iter().find(|f| f.orig == k).expect("flow tracked");
        (f.state, f.expires_ms)
    };

    backend_of(&mut sw, A, 40000, SYN);
    assert_eq!(state(&sw, 40000).0, FlowState::SynSent);
    send(&mut sw, B.port, from_backend(B, (A.ip, 40000), SYN | ACK));
    assert_eq!(state(&sw, 40000).0, FlowState::SynRecv);
    backend_of(&mut sw, A, 40000, ACK);
    assert_eq!(state(&sw, 40000).0, FlowState::Established);
    backend_of(&mut sw, A, 40000, FIN | ACK);
    assert_eq!(state(&sw, 40000).0, FlowState::Established, "half closed");
    let o = send(&mut sw, B.port, from_backend(B, (A.ip, 40000), FIN | ACK));
    assert_eq!(o.from(), (VIP, VPORT));
    let (s, expires) = state(&sw, 40000);
    assert_eq!(s, FlowState::Closing);
    assert!(expires <= fastpath::services::conntrack::TCP_CLOSED_MS);
    // The last ACK still goes through.
    assert_eq!(backend_of(&mut sw, A, 40000, ACK), B);

    // A reset from the endpoint closes a flow at once.
    connect(&mut sw, A, 40001);
    send(&mut sw, B.port, from_backend(B, (A.ip, 40001), RST | ACK));
    assert_eq!(state(&sw, 40001).0, FlowState::Closing);
    // A new connection on the same ports starts a new flow.
    backend_of(&mut sw, A, 40001, SYN);
    assert_eq!(state(&sw, 40001).0, FlowState::SynSent);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}
