//! How long a worker waits for the connection table while the controller
//! walks it (`conntrack sweep`, `ct list`, `ct stats`): the worker's
//! lookup latency, measured one lookup at a time, while each walk runs and
//! while nothing else does.
//!
//! The table holds 262,144 answered TCP flows (the default limit), either
//! all from one client port (so all in one shard, the worst case: the
//! shard holds 524,288 records) or spread over many client ports. A worker
//! thread, pinned to the last allowed core, looks up the flows' original
//! tuples in a loop, through the locked path (`Conntrack::lookup`, what a
//! worker does for a flow its own cache does not hold); the controller,
//! on the first core, runs each walk in turn with quiet periods between.
//! Nothing expires, so a sweep removes nothing (its cost is the walk).
//! One worker, making no flows: contention from several workers on one
//! shard, and a worker compacting the eviction queue, are not measured.
//!
//! Not a criterion bench: what matters is the tail of the worker's waits,
//! which criterion's means do not show. Run:
//! `cargo bench -p bench --bench ct_walk` (`-- --rounds N`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fastpath::services::conntrack::{Conntrack, DEFAULT_LIMIT, NewFlow, flow_key, tcp_flags};
use hdrhistogram::Histogram;

const PROTO_TCP: u8 = 6;
const VIP: u32 = 0x0a60_000a;
const BACKEND: u32 = 0x0af4_0202;
const OPS: [&str; 4] = ["quiet", "sweep", "ct list", "ct stats"];

/// The table, full of answered flows, and their original tuples.
fn table(one_port: bool) -> (Conntrack, Vec<u128>) {
    let ct = Conntrack::new(DEFAULT_LIMIT);
    let mut keys = Vec::with_capacity(DEFAULT_LIMIT);
    for i in 0..DEFAULT_LIMIT as u32 {
        let (ip, port) = if one_port {
            (0x0af4_0000 + i, 5000)
        } else {
            (0x0af4_0000 + i / 60_000, 1024 + (i % 60_000) as u16)
        };
        let f = NewFlow {
            proto: PROTO_TCP,
            client: (ip, port),
            front: (VIP, 80),
            backend: (BACKEND, 8080),
            snat: None,
            service: 1,
        };
        let nat = ct.create(&f, 0).expect("the table has room");
        let reply = flow_key(BACKEND, ip, 8080, nat.sport, PROTO_TCP);
        ct.lookup(reply, false, Some(tcp_flags::SYN | tcp_flags::ACK), 1)
            .expect("the reply record");
        keys.push(flow_key(ip, VIP, port, 80, PROTO_TCP));
    }
    (ct, keys)
}

fn pin(core: Option<core_affinity::CoreId>) {
    if let Some(c) = core {
        core_affinity::set_for_current(c);
    }
}

fn main() {
    let mut rounds = 20;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--rounds" {
            rounds = args
                .next()
                .and_then(|n| n.parse().ok())
                .expect("--rounds N");
        }
    }
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let (first, last) = (cores.first().copied(), cores.last().copied());
    for one_port in [true, false] {
        let (ct, keys) = table(one_port);
        // The first sweep also compacts the eviction queue of every flow
        // made (all answered since): a one-off, left out.
        ct.sweep(2);
        let ct = Arc::new(ct);
        let phase = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (ct, phase, stop) = (Arc::clone(&ct), Arc::clone(&phase), Arc::clone(&stop));
            std::thread::spawn(move || {
                pin(last);
                let mut h: Vec<Histogram<u64>> = OPS
                    .iter()
                    .map(|_| Histogram::new_with_bounds(1, 10_000_000_000, 3).unwrap())
                    .collect();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let p = phase.load(Ordering::Relaxed);
                    let t = Instant::now();
                    let hit = ct.lookup(keys[i], true, Some(tcp_flags::ACK), 2);
                    let ns = t.elapsed().as_nanos() as u64;
                    assert!(hit.is_some(), "every flow stays");
                    h[p].saturating_record(ns.max(1));
                    i = (i + 1) % keys.len();
                }
                h
            })
        };
        pin(first);
        let mut took: Vec<Vec<f64>> = OPS.iter().map(|_| Vec::new()).collect();
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..rounds {
            for (p, name) in OPS.iter().enumerate().skip(1) {
                phase.store(0, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
                phase.store(p, Ordering::Relaxed);
                let t = Instant::now();
                match *name {
                    "sweep" => assert_eq!(ct.sweep(2), 0),
                    "ct list" => assert_eq!(ct.flows(2).len(), DEFAULT_LIMIT),
                    _ => assert_eq!(ct.counters(2).entries, DEFAULT_LIMIT as u64),
                }
                took[p].push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        phase.store(0, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
        let h = worker.join().expect("the worker");
        println!(
            "\n{} flows, {}; {rounds} rounds",
            DEFAULT_LIMIT,
            if one_port {
                "one client port (one shard)"
            } else {
                "client ports spread over the shards"
            }
        );
        println!(
            "{:<10} {:>10} {:>12} {:>10} {:>10} {:>10} {:>11} {:>10}",
            "while", "walk ms", "lookups", "mean µs", "p50 µs", "p99 µs", "p99.9 µs", "max µs"
        );
        for (p, name) in OPS.iter().enumerate() {
            let mut t = std::mem::take(&mut took[p]);
            t.sort_by(f64::total_cmp);
            let median = t
                .get(t.len() / 2)
                .map_or("-".to_string(), |m| format!("{m:.1}"));
            let us = |q: f64| h[p].value_at_quantile(q) as f64 / 1e3;
            println!(
                "{:<10} {:>10} {:>12} {:>10.2} {:>10.2} {:>10.2} {:>11.2} {:>10.1}",
                name,
                median,
                h[p].len(),
                h[p].mean() / 1e3,
                us(0.5),
                us(0.99),
                us(0.999),
                h[p].max() as f64 / 1e3
            );
        }
    }
}
