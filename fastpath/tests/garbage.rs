//! Random input: the switch never panics, never loses count of a frame and
//! never loses a buffer, whatever bytes arrive.
//!
//! Inputs come from a seeded xorshift generator, so a failure replays.

mod common;

use std::collections::HashMap;

use common::{BROADCAST, Config, MULTICAST, TestSwitch, XorShift, key, mac};
use fastpath::PortId;
use fastpath::batch::BATCH_SIZE;
use fastpath::drop::DropReason;
use fastpath::pool::FRAME_CAPACITY;

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
