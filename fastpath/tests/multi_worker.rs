//! Two workers, each with its own pool and ports, sharing one snapshot:
//! frames cross between them through the handoff mesh, are counted by the
//! worker that sends them, and every buffer returns to the pool it came from.

mod common;

use common::{BROADCAST, Config, TestSwitch, frame, frame_len, key, mac};
use fastpath::batch::BATCH_SIZE;
use fastpath::clock;
use fastpath::drop::DropReason;
use fastpath::worker::handoff::HANDOFF_DEPTH;

/// Ports 0 and 1 on worker 0, ports 2 and 3 on worker 1.
fn two_workers(frames: [u32; 2]) -> TestSwitch {
    let mut sw = TestSwitch::new(Config {
        pools: frames.to_vec(),
        ..Config::default()
    });
    sw.add_port_on(0, 0);
    sw.add_port_on(0, 1);
    sw.add_port_on(1, 2);
    sw.add_port_on(1, 3);
    sw
}

#[test]
fn floods_and_unicasts_cross_between_workers() {
    let mut sw = two_workers([256, 256]);
    let (a, b) = (mac(0xa), mac(0xb));

    // A broadcast from worker 0 reaches its own port and both of worker 1's.
    let f = frame_len(BROADCAST, a, 1, 700);
    sw.inject(0, f.clone());
    sw.run();
    for id in [1, 2, 3] {
        assert_eq!(sw.take_sent(id), vec![f.clone()], "port {id}");
    }
    assert!(sw.take_sent(0).is_empty());
    assert_eq!(sw.worker_stats(1, 2).tx_packets, 1, "counted by the sender");
    assert_eq!(sw.worker_stats(0, 2).tx_packets, 0);
    sw.assert_no_leaks();
    sw.learn();

    // B answers from worker 1; once both are learned, traffic is unicast
    // across the workers in both directions.
    sw.inject(2, frame(a, b, 2));
    sw.run();
    sw.learn();
    assert_eq!(
        sw.take_sent(0),
        vec![frame(a, b, 2)],
        "A is known on port 0"
    );
    assert!(sw.take_sent(1).is_empty());
    assert!(sw.take_sent(3).is_empty());

    for tag in 3..8 {
        sw.inject(0, frame_len(b, a, tag, 60 + usize::from(tag) * 100));
        sw.inject(2, frame(a, b, tag + 100));
    }
    sw.run();
    let to_b: Vec<Vec<u8>> = (3..8)
        .map(|tag| frame_len(b, a, tag, 60 + usize::from(tag) * 100))
        .collect();
    let to_a: Vec<Vec<u8>> = (3..8).map(|tag| frame(a, b, tag + 100)).collect();
    assert_eq!(sw.take_sent(2), to_b, "bytes unchanged across workers");
    assert_eq!(sw.take_sent(0), to_a);
    assert!(sw.take_sent(1).is_empty());
    assert!(sw.take_sent(3).is_empty());

    assert_eq!(sw.worker_stats(1, 2).tx_packets, 1 + 5);
    assert_eq!(sw.worker_stats(0, 0).tx_packets, 1 + 5);
    assert_eq!(sw.stats(0).rx_packets, 1 + 5);
    assert_eq!(sw.stats(2).rx_packets, 1 + 5);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn a_receiving_worker_without_buffers_drops_as_no_buffer_and_returns_the_senders_frames() {
    // Worker 1 has a single frame: of a burst handed to it, it can copy
    // only one before it transmits.
    let mut sw = two_workers([256, 1]);
    let (a, b) = (mac(0xa), mac(0xb));
    // B is placed by hand: a broadcast from worker 1 would itself run out
    // of buffers for its flood copies.
    sw.table.learn(key(b), 2, clock::now_ms());
    sw.publish();

    for tag in 1..=3 {
        sw.inject(0, frame(b, a, tag));
    }
    sw.run();
    assert_eq!(sw.take_sent(2), vec![frame(b, a, 1)]);
    assert_eq!(sw.worker_stats(1, 2).tx_packets, 1);
    // Counted on the ingress port, like every drop but tx_ring_full.
    sw.assert_drops(&[(0, DropReason::NoBuffer, 2)]);
    sw.assert_no_leaks();
}

#[test]
fn a_port_down_on_the_other_worker_is_not_a_handoff_target() {
    let mut sw = two_workers([256, 256]);
    sw.set_port_up(3, false);
    let f = frame(BROADCAST, mac(0xa), 1);
    sw.inject(1, f.clone());
    sw.run();
    assert_eq!(sw.take_sent(0), vec![f.clone()]);
    assert_eq!(sw.take_sent(2), vec![f]);
    assert!(sw.take_sent(3).is_empty());
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn frames_beyond_the_handoff_depth_count_as_tx_ring_full_on_the_target_port() {
    // Nine ports on worker 0 each send a full burst to one port of worker
    // 1 within one loop of worker 0: more than the queue between them holds.
    let mut sw = TestSwitch::new(Config {
        pools: vec![1024, 256],
        ..Config::default()
    });
    let senders: Vec<u16> = (0..9).collect();
    for &id in &senders {
        sw.add_port_on(0, id);
    }
    sw.add_port_on(1, 9);
    let b = mac(0xb);
    sw.table.learn(key(b), 9, clock::now_ms());
    sw.publish();

    let per_port = BATCH_SIZE as u16;
    for &id in &senders {
        for i in 0..per_port {
            sw.inject(id, frame(b, mac(0x10 + id as u8), id * per_port + i));
        }
    }
    sw.run();
    let total = u64::from(per_port) * senders.len() as u64;
    let delivered = sw.take_sent(9).len() as u64;
    assert_eq!(delivered, HANDOFF_DEPTH as u64);
    assert_eq!(sw.worker_stats(1, 9).tx_packets, delivered);
    sw.assert_drops(&[(9, DropReason::TxRingFull, total - delivered)]);
    assert_eq!(
        sw.worker_stats(0, 9).drop_count(DropReason::TxRingFull),
        total - delivered,
        "counted by the worker that could not hand the frames over"
    );
    for &id in &senders {
        assert!(sw.take_sent(id).is_empty());
    }
    sw.assert_no_leaks();
}

/// A capture of a port owned by worker 1 sees each frame sent on it once,
/// also the frames worker 0 hands over; a live trace of a port of worker
/// 0 records each packet's stages, and the traced packets go where
/// untraced ones go. Nothing leaks, no frame is read that the worker does
/// not hold.
#[test]
fn watches_see_each_frame_once_across_workers() {
    use fastpath::observe::{Filter, Record, Watch, WatchKind};
    use std::sync::Arc;
    let mut sw = two_workers([256, 256]);
    let (a, b) = (mac(0xa), mac(0xb));
    sw.table.add_static(key(b), 2);
    sw.table.add_static(key(a), 0);
    sw.publish();
    let capture = Arc::new(Watch::new(
        1,
        2,
        WatchKind::Capture { snaplen: 64 },
        true,
        true,
        Filter::default(),
        None,
    ));
    let trace = Arc::new(Watch::new(
        2,
        0,
        WatchKind::Trace,
        true,
        false,
        Filter::default(),
        Some(3),
    ));
    sw.watch(Arc::clone(&capture));
    sw.watch(Arc::clone(&trace));
    // Five frames from port 0 (worker 0) to b behind port 2 (worker 1),
    // and two back.
    for tag in 0..5 {
        sw.inject(0, frame_len(b, a, tag, 300));
    }
    for tag in 5..7 {
        sw.inject(2, frame_len(a, b, tag, 300));
    }
    sw.run();
    assert_eq!(sw.take_sent(2).len(), 5);
    assert_eq!(sw.take_sent(0).len(), 2);
    let frames: Vec<_> = capture
        .take(usize::MAX)
        .into_iter()
        .map(|r| match r {
            Record::Frame(f) => (f.dir, f.len, f.data.len()),
            Record::Trace(_) => panic!("a capture records frames"),
        })
        .collect();
    use fastpath::observe::Dir;
    let out = frames.iter().filter(|f| f.0 == Dir::Out).count();
    let inn = frames.iter().filter(|f| f.0 == Dir::In).count();
    assert_eq!((out, inn), (5, 2), "each frame once: {frames:?}");
    assert!(frames.iter().all(|f| f.1 == 300 && f.2 == 64), "{frames:?}");
    assert_eq!(capture.dropped(), 0);

    let traces: Vec<_> = trace
        .take(usize::MAX)
        .into_iter()
        .map(|r| match r {
            Record::Trace(t) => t,
            Record::Frame(_) => panic!("a trace records traces"),
        })
        .collect();
    assert_eq!(traces.len(), 3, "the count is kept");
    assert!(!trace.active() && trace.ended());
    for t in &traces {
        let stages: Vec<&str> = t.steps.iter().map(|s| s.stage).collect();
        let all: Vec<&str> = fastpath::pipeline::STAGES.iter().map(|s| s.0).collect();
        assert_eq!(stages, all);
        assert_eq!(
            t.steps.last().unwrap().verdict,
            fastpath::batch::Verdict::Unicast(2)
        );
    }
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}
