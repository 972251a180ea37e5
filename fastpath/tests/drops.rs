//! Every way a frame can end without being sent: each drop reason is
//! produced by the situation it names and counted, once per frame, on the
//! port an operator would look at, and on no other port or reason.
//!
//! Drops around ports that fail or are removed are in `port_lifecycle.rs`.
//!
//! Where the count lands: drops decided by the pipeline (parse, learn,
//! forward, flood copies) count on the ingress port; drops at transmission
//! (a full TX ring, a port the worker found gone) count on the output port.

mod common;

use common::{BROADCAST, Config, TestSwitch, frame, frame_len, key, mac};
use fastpath::drop::DropReason;
use fastpath::l2::fdb::EntryKind;
use fastpath::pool::FRAME_CAPACITY;

#[test]
fn runt_frames_shorter_than_a_header() {
    let mut sw = TestSwitch::with_ports(2);
    for len in [0, 1, 6, 13] {
        sw.inject(0, frame(BROADCAST, mac(0xa), 1)[..len].to_vec());
    }
    // Exactly a header is not a runt.
    sw.inject(0, frame_len(BROADCAST, mac(0xa), 1, 14));
    sw.run();
    assert_eq!(sw.stats(0).rx_packets, 5);
    assert_eq!(sw.take_sent(1), vec![frame_len(BROADCAST, mac(0xa), 1, 14)]);
    sw.assert_drops(&[(0, DropReason::Runt, 4)]);
    sw.assert_no_leaks();
}

#[test]
fn malformed_frames_longer_than_a_pool_frame() {
    let mut sw = TestSwitch::with_ports(2);
    let too_long = frame_len(BROADCAST, mac(0xa), 1, FRAME_CAPACITY as usize + 1);
    let longest = frame_len(BROADCAST, mac(0xa), 2, FRAME_CAPACITY as usize);
    sw.inject(0, too_long.clone());
    sw.inject(0, longest.clone());
    sw.run();
    let rx = sw.stats(0);
    assert_eq!(rx.rx_packets, 2);
    assert_eq!(
        rx.rx_bytes,
        (too_long.len() + longest.len()) as u64,
        "rx counts the true length"
    );
    assert_eq!(
        sw.take_sent(1),
        vec![longest],
        "the largest frame passes whole"
    );
    sw.assert_drops(&[(0, DropReason::Malformed, 1)]);
    sw.assert_no_leaks();
}

#[test]
fn invalid_source_mac_multicast_broadcast_or_zero() {
    let mut sw = TestSwitch::with_ports(2);
    sw.inject(0, frame(mac(0xb), [0x01, 0x00, 0x5e, 0, 0, 1], 1));
    sw.inject(0, frame(mac(0xb), BROADCAST, 2));
    sw.inject(0, frame(mac(0xb), [0; 6], 3));
    // Group bit only in the first octet matters.
    sw.inject(1, frame(mac(0xb), [0x02, 0x01, 0, 0, 0, 1], 4));
    sw.run();
    assert_eq!(sw.take_sent(0).len(), 1);
    assert!(sw.take_sent(1).is_empty());
    assert!(
        sw.take_learn_events().iter().all(|e| e.port == 1),
        "invalid sources are never learned"
    );
    sw.assert_drops(&[(0, DropReason::InvalidSrcMac, 3)]);
    sw.assert_no_leaks();
}

#[test]
fn no_destination_when_flooding_with_no_other_up_port() {
    let mut sw = TestSwitch::with_ports(1);
    sw.inject(0, frame(BROADCAST, mac(0xa), 1));
    sw.inject(0, frame(mac(0xb), mac(0xa), 2));
    sw.run();
    sw.assert_drops(&[(0, DropReason::NoDestination, 2)]);

    // Another port that is down does not count as a destination.
    sw.add_port(1);
    sw.set_port_up(1, false);
    sw.inject(0, frame(BROADCAST, mac(0xa), 3));
    sw.run();
    assert!(sw.take_sent(1).is_empty());
    sw.assert_drops(&[(0, DropReason::NoDestination, 3)]);
    sw.assert_no_leaks();
}

#[test]
fn same_port_when_the_destination_lives_behind_the_ingress_port() {
    let mut sw = TestSwitch::with_ports(3);
    sw.teach(0, mac(0xb));
    // A and B share a hub on port 0; the switch must not echo A's frame.
    sw.inject(0, frame(mac(0xb), mac(0xa), 2));
    sw.run();
    for id in sw.port_ids() {
        assert!(sw.take_sent(id).is_empty(), "port {id}");
    }
    sw.assert_drops(&[(0, DropReason::SamePort, 1)]);
    sw.assert_no_leaks();
}

#[test]
fn mac_limit_drops_new_sources_only_on_the_full_port() {
    let mut sw = TestSwitch::new(Config {
        mac_limit: 2,
        ..Config::default()
    });
    for id in 0..3 {
        sw.add_port(id);
    }
    let (m1, m2, m3) = (mac(1), mac(2), mac(3));
    sw.inject(0, frame(BROADCAST, m1, 1));
    sw.inject(0, frame(BROADCAST, m2, 2));
    sw.run();
    sw.learn();
    assert!(sw.table.is_full(0));
    for id in sw.port_ids() {
        sw.take_sent(id);
    }

    // The published snapshot says port 0 is full: a third source is dropped,
    // the two known ones still pass.
    sw.inject(0, frame(BROADCAST, m3, 3));
    sw.inject(0, frame(BROADCAST, m3, 4));
    sw.inject(0, frame(BROADCAST, m1, 5));
    sw.run();
    assert_eq!(sw.take_sent(1), vec![frame(BROADCAST, m1, 5)]);
    assert_eq!(sw.take_sent(2), vec![frame(BROADCAST, m1, 5)]);
    assert!(
        sw.take_learn_events().is_empty(),
        "a full port reports nothing"
    );
    assert_eq!(sw.table.get(key(m3)), None);

    // Port 1 is not full: new sources there are forwarded and learned.
    sw.inject(1, frame(BROADCAST, mac(0x11), 6));
    sw.inject(1, frame(m1, mac(0x12), 7));
    sw.run();
    sw.learn();
    assert_eq!(sw.take_sent(0).len(), 2);
    assert_eq!(sw.table.get(key(mac(0x12))), Some((1, EntryKind::Learned)));
    assert!(sw.table.is_full(1));

    sw.assert_drops(&[(0, DropReason::MacLimit, 2)]);
    sw.assert_no_leaks();
}

#[test]
fn port_down_when_the_destination_port_is_down() {
    let mut sw = TestSwitch::with_ports(3);
    let s = mac(0x5);
    sw.table.add_static(key(s), 2);
    sw.set_port_up(2, false);
    sw.inject(0, frame(s, mac(0xa), 1));
    sw.inject(1, frame(s, mac(0xb), 2));
    sw.run();
    for id in sw.port_ids() {
        assert!(sw.take_sent(id).is_empty(), "port {id}");
    }
    sw.assert_drops(&[(0, DropReason::PortDown, 1), (1, DropReason::PortDown, 1)]);

    // Back up: the same frame is delivered.
    sw.set_port_up(2, true);
    sw.inject(0, frame(s, mac(0xa), 3));
    sw.run();
    assert_eq!(sw.take_sent(2), vec![frame(s, mac(0xa), 3)]);
    sw.assert_no_leaks();
}

#[test]
fn tx_ring_full_when_the_output_port_accepts_less_than_a_burst() {
    let mut sw = TestSwitch::with_ports(3);
    let (a, b) = (mac(0xa), mac(0xb));
    sw.teach(1, b);
    sw.wire(1).lock().unwrap().tx_limit = Some(1);

    for tag in 1..=5 {
        sw.inject(0, frame(b, a, tag));
    }
    sw.run();
    assert_eq!(sw.take_sent(1), vec![frame(b, a, 1)], "the ring takes one");
    assert_eq!(sw.stats(1).tx_packets, 1);
    sw.assert_drops(&[(1, DropReason::TxRingFull, 4)]);
    sw.assert_no_leaks();
}

#[test]
fn no_buffer_when_the_pool_runs_out_of_flood_copies() {
    let mut sw = TestSwitch::new(Config {
        pools: vec![2],
        ..Config::default()
    });
    for id in 0..5 {
        sw.add_port(id);
    }
    // Four targets need the frame and three copies; the pool holds the
    // frame and one copy.
    let f = frame(BROADCAST, mac(0xa), 1);
    sw.inject(0, f.clone());
    sw.run();
    let delivered: Vec<Vec<u8>> = (1..5).flat_map(|id| sw.take_sent(id)).collect();
    assert_eq!(delivered, vec![f.clone(), f]);
    assert_eq!(sw.total_tx(), 2);
    sw.assert_drops(&[(0, DropReason::NoBuffer, 2)]);
    sw.assert_no_leaks();
}

#[test]
fn frames_that_find_no_free_buffer_are_kept_or_counted() {
    let mut sw = TestSwitch::new(Config {
        pools: vec![2],
        ..Config::default()
    });
    sw.add_port(0);
    sw.add_port(1);
    for tag in 0..3 {
        sw.inject(0, frame(BROADCAST, mac(0xa), tag));
    }
    sw.step();
    // The third frame cannot be received into a 2-frame pool in the same
    // burst. It must either wait in the inbox or be counted as no_buffer;
    // it must not vanish.
    let s = sw.stats(0);
    let accounted = s.rx_packets + sw.inbox_len(0) as u64 + s.drop_count(DropReason::NoBuffer);
    assert_eq!(accounted, 3, "a frame vanished: {s:?}");
    sw.run();
    sw.assert_no_leaks();
}

#[test]
fn link_local_control_frames_are_not_forwarded() {
    let mut sw = TestSwitch::with_ports(3);
    // STP (…:00), LACP (…:02), LLDP (…:0e): never forwarded; …:10 is an
    // ordinary multicast group and floods.
    for (tag, last) in [(1u16, 0x00u8), (2, 0x02), (3, 0x0e)] {
        sw.inject(0, frame([0x01, 0x80, 0xc2, 0, 0, last], mac(0xa), tag));
    }
    sw.inject(0, frame([0x01, 0x80, 0xc2, 0, 0, 0x10], mac(0xa), 4));
    sw.run();
    for id in [1, 2] {
        assert_eq!(
            sw.take_sent(id),
            vec![frame([0x01, 0x80, 0xc2, 0, 0, 0x10], mac(0xa), 4)],
            "port {id}"
        );
    }
    sw.assert_drops(&[(0, DropReason::LinkLocal, 3)]);
    sw.assert_no_leaks();
}
