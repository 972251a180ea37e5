//! L2 forwarding as a user of the switch sees it: where frames go, how the
//! switch learns, forgets and pins MAC addresses.
//!
//! Every test plays the controller through the harness: learned addresses
//! only take effect once the test calls `learn` (or `publish`), as in the
//! daemon, where frames to a MAC flood until its entry is published.

mod common;

use common::{BROADCAST, Config, MULTICAST, TestSwitch, frame, frame_len, key, mac};
use fastpath::clock;
use fastpath::l2::fdb::{EntryKind, LearnEvent, LearnOutcome};
use fastpath::pool::FRAME_CAPACITY;

#[test]
fn known_unicast_goes_only_to_the_learned_port_unchanged() {
    let mut sw = TestSwitch::with_ports(4);
    sw.teach(2, mac(0xb));
    let before = sw.stats(2);

    // Several sizes, from a bare header to the largest frame a pool holds.
    let frames: Vec<Vec<u8>> = [14, 60, 1514, FRAME_CAPACITY as usize]
        .iter()
        .enumerate()
        .map(|(i, &len)| frame_len(mac(0xb), mac(0xa), i as u16, len))
        .collect();
    for f in &frames {
        sw.inject(0, f.clone());
    }
    sw.run();

    assert_eq!(
        sw.take_sent(2),
        frames,
        "same frames, same bytes, same order"
    );
    for id in [0, 1, 3] {
        assert!(sw.take_sent(id).is_empty(), "port {id} got a unicast frame");
    }
    let after = sw.stats(2);
    assert_eq!(after.tx_packets - before.tx_packets, frames.len() as u64);
    let bytes: usize = frames.iter().map(Vec::len).sum();
    assert_eq!(after.tx_bytes - before.tx_bytes, bytes as u64);
    assert_eq!(sw.stats(0).rx_packets, frames.len() as u64);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn unknown_unicast_broadcast_and_multicast_flood_to_every_other_up_port() {
    let mut sw = TestSwitch::with_ports(5);
    // Port 4 is configured but down: floods skip it.
    sw.set_port_up(4, false);

    for (tag, dst) in [(1, mac(0x77)), (2, BROADCAST), (3, MULTICAST)] {
        let f = frame_len(dst, mac(0xa), tag, 100);
        sw.inject(1, f.clone());
        sw.run();
        for id in [0, 2, 3] {
            assert_eq!(sw.take_sent(id), vec![f.clone()], "port {id}, dst {dst:x?}");
        }
        assert!(
            sw.take_sent(1).is_empty(),
            "flooded back to the ingress port"
        );
        assert!(sw.take_sent(4).is_empty(), "flooded to a down port");
    }
    for id in [0, 2, 3] {
        assert_eq!(sw.stats(id).tx_packets, 3);
    }
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn traffic_floods_until_the_learned_entry_is_published_then_is_unicast() {
    let mut sw = TestSwitch::with_ports(3);
    let (a, b) = (mac(0xa), mac(0xb));

    // B speaks: the worker reports it, but nothing is published yet.
    sw.inject(1, frame(BROADCAST, b, 1));
    sw.run();
    let events = sw.take_learn_events();
    assert_eq!(
        events,
        vec![LearnEvent {
            mac: key(b),
            port: 1
        }]
    );
    let now = clock::now_ms();
    assert_eq!(sw.table.learn(key(b), 1, now), LearnOutcome::New);
    for id in sw.port_ids() {
        sw.take_sent(id);
    }

    // Not yet published: a frame to B still floods (correct, only slower).
    sw.inject(0, frame(b, a, 2));
    sw.run();
    assert_eq!(sw.sent_count(1), 1);
    assert_eq!(sw.sent_count(2), 1, "flooded while unpublished");
    for id in sw.port_ids() {
        sw.take_sent(id);
    }

    sw.publish();
    sw.inject(0, frame(b, a, 3));
    sw.run();
    assert_eq!(sw.take_sent(1), vec![frame(b, a, 3)]);
    assert!(sw.take_sent(2).is_empty(), "unicast after publish");
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn a_new_mac_is_reported_once_per_burst_not_per_frame() {
    let mut sw = TestSwitch::with_ports(2);
    for tag in 0..20 {
        sw.inject(0, frame(BROADCAST, mac(0xa), tag));
    }
    sw.inject(0, frame(BROADCAST, mac(0xc), 99));
    sw.run();
    let events = sw.take_learn_events();
    assert_eq!(
        events,
        vec![
            LearnEvent {
                mac: key(mac(0xa)),
                port: 0
            },
            LearnEvent {
                mac: key(mac(0xc)),
                port: 0
            },
        ],
        "one report per new MAC, however many frames it sent"
    );
    assert_eq!(sw.sent_count(1), 21, "every frame is still forwarded");
    sw.assert_no_leaks();
}

#[test]
fn a_mac_that_moves_is_relearned_and_traffic_follows_it() {
    let mut sw = TestSwitch::with_ports(3);
    let (a, b) = (mac(0xa), mac(0xb));
    sw.teach(0, a);

    sw.inject(1, frame(a, b, 1));
    sw.run();
    assert_eq!(sw.take_sent(0), vec![frame(a, b, 1)]);
    assert!(sw.take_sent(2).is_empty());
    sw.learn();

    // A reappears behind port 2 (a VM migrated, a cable moved).
    sw.inject(2, frame(BROADCAST, a, 2));
    sw.run();
    let outcomes = sw.learn();
    assert!(
        outcomes.contains(&(
            LearnEvent {
                mac: key(a),
                port: 2
            },
            LearnOutcome::Moved { from: 0 }
        )),
        "{outcomes:?}"
    );
    assert_eq!(sw.table.get(key(a)), Some((2, EntryKind::Learned)));
    assert_eq!(
        (sw.table.learned_on(0), sw.table.learned_on(2)),
        (0, 1),
        "per-port counts follow the move"
    );
    for id in sw.port_ids() {
        sw.take_sent(id);
    }

    sw.inject(1, frame(a, b, 3));
    sw.run();
    assert_eq!(sw.take_sent(2), vec![frame(a, b, 3)], "traffic follows A");
    assert!(sw.take_sent(0).is_empty(), "nothing to A's old port");
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn idle_entries_age_out_and_flood_again_while_entries_in_use_survive() {
    let mut sw = TestSwitch::new(Config {
        aging_secs: 1,
        ..Config::default()
    });
    for id in 0..3 {
        sw.add_port(id);
    }
    let (a, b, c) = (mac(0xa), mac(0xb), mac(0xc));
    // Both entries were last refreshed 1.5 s ago by the workers' clock; no
    // sleeping needed.
    let now = clock::now_ms();
    let long_ago = now.saturating_sub(1500);
    sw.table.learn(key(a), 0, long_ago);
    sw.table.learn(key(b), 1, long_ago);
    sw.publish();

    // A keeps talking: the worker refreshes A's timestamp. B is silent.
    sw.inject(0, frame(b, a, 1));
    sw.run();
    assert_eq!(sw.take_sent(1), vec![frame(b, a, 1)]);
    assert!(sw.take_learn_events().is_empty(), "A is known: no report");
    let idle_a = sw.table.entries(now)[0].idle_ms;
    assert!(
        idle_a.is_some_and(|ms| ms < 1000),
        "worker did not refresh A: idle {idle_a:?}"
    );

    // Half a second later, by the controller's aging sweep, B has been
    // idle for 2 s (> 1 s); A for at most 0.5 s.
    assert_eq!(sw.table.age(now + 500), 1);
    assert_eq!(sw.table.get(key(b)), None, "idle entry removed");
    assert_eq!(sw.table.get(key(a)), Some((0, EntryKind::Learned)));
    assert_eq!(sw.table.learned_on(1), 0);
    sw.publish();

    sw.inject(2, frame(b, c, 2));
    sw.inject(2, frame(a, c, 3));
    sw.run();
    assert_eq!(sw.take_sent(0), vec![frame(b, c, 2), frame(a, c, 3)]);
    assert_eq!(
        sw.take_sent(1),
        vec![frame(b, c, 2)],
        "aged-out MAC floods again; the live one stays unicast"
    );
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn static_entries_are_neither_overridden_by_learning_nor_aged() {
    let mut sw = TestSwitch::new(Config {
        aging_secs: 1,
        ..Config::default()
    });
    for id in 0..3 {
        sw.add_port(id);
    }
    let (s, x) = (mac(0x5), mac(0xa));
    sw.table.add_static(key(s), 2);
    sw.publish();

    // Frames claiming to come from S arrive on port 0: forwarded, but the
    // worker does not even report the MAC, and the controller would refuse it.
    sw.inject(0, frame(BROADCAST, s, 1));
    sw.run();
    assert_eq!(sw.sent_count(1), 1);
    assert_eq!(sw.sent_count(2), 1);
    assert!(
        sw.take_learn_events().is_empty(),
        "static MAC reported for learning"
    );
    assert_eq!(
        sw.table.learn(key(s), 0, clock::now_ms()),
        LearnOutcome::Static
    );
    sw.publish();
    for id in sw.port_ids() {
        sw.take_sent(id);
    }

    // Far past any aging time, the static entry still holds.
    assert_eq!(sw.table.age(clock::now_ms() + 86_400_000), 0);
    assert_eq!(sw.table.get(key(s)), Some((2, EntryKind::Static)));
    sw.publish();

    sw.inject(1, frame(s, x, 2));
    sw.run();
    assert_eq!(sw.take_sent(2), vec![frame(s, x, 2)]);
    assert!(
        sw.take_sent(0).is_empty(),
        "learning from port 0 took effect"
    );
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}
