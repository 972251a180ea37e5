//! Throughput of the L2 pipeline (parse → learn → forward → output) on one
//! worker, over in-memory ports, with 64-byte UDP frames.
//!
//! One criterion element is one frame *received* by the worker, so the
//! `elem/s` that criterion prints reads as packets per second (Melem/s =
//! Mpps) of switching capacity on one core. Each iteration runs the worker's
//! poll loop until it has handled [`FRAMES_PER_ITER`] frames.
//!
//! - `l2/known_unicast_64B`: two reflectors, host A on port 0 and host B on
//!   port 1 (static FDB entries, so nothing is learnt); 2048 frames bounce
//!   between them. Each frame in, one frame out.
//! - `l2/known_unicast_64B_learned`: the same with both hosts *learned* by
//!   the controller rather than static, the common case in a real network:
//!   every frame also checks (and once a second refreshes) the entry's
//!   last-seen time.
//! - `l2/known_unicast_64B_source_sink`: the same forwarding decision, from
//!   a source port that writes each frame into a fresh pool frame to a sink
//!   that frees what it is sent; the baseline for the flood benchmark, which
//!   needs the same ports (see the `bench` crate docs for why reflectors
//!   cannot carry a flood).
//! - `l2/flood_64B_4ports`: unknown-unicast frames from a source on port 0
//!   flood to sinks on ports 1–3. Elements count the input frames only:
//!   every one of them leaves three times (two copies and the original), so
//!   the egress rate is three times the printed rate.
//!
//! Before measuring, each scenario runs for a while and must be clean: no
//! drop of any reason on any port, no learning report, no frame leaked or
//! used twice. Afterwards it is checked again, and the frames sent must be
//! exactly the frames received times the fan-out.

use std::hint::black_box;

use bench::{
    FRAME_64B, FRAMES_PER_ITER, MAC_A, MAC_B, Rig, flood_source_sinks, known_unicast_reflectors,
    known_unicast_reflectors_with, known_unicast_source_sink, learned_fdb,
};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};

/// Frames circulating between the reflectors.
const REFLECTED_FRAMES: usize = 2048;

/// Measures one scenario, built by `make` only if criterion's filter selects
/// it. `fanout` is how many frames each received frame becomes on the wire.
fn measure(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    make: impl FnOnce() -> Rig,
    fanout: u64,
) {
    let mut make = Some(make);
    let mut rig: Option<Rig> = None;
    let mut handled = 0usize;
    let mut iterations = 0usize;
    group.bench_function(name, |b| {
        let rig = rig.get_or_insert_with(|| make.take().expect("built once")().settle(name));
        b.iter(|| {
            let n = rig.run_frames(FRAMES_PER_ITER);
            handled += n;
            iterations += 1;
            black_box(n)
        })
    });
    let Some(mut rig) = rig else {
        return;
    };

    rig.check_clean()
        .unwrap_or_else(|e| panic!("{name} after measuring: {e}"));
    assert_eq!(
        handled,
        iterations * FRAMES_PER_ITER,
        "{name}: iterations handled more frames than the throughput says"
    );
    let totals = rig.totals();
    let (rx, tx) = (totals.rx_packets, totals.tx_packets);
    assert_eq!(
        tx,
        rx * fanout,
        "{name}: {rx} frames received should leave as {} frames",
        rx * fanout
    );
    // The totals let an external count (`perf stat`'s task-clock) be turned
    // into a per-frame cost, which other load on the machine disturbs less
    // than wall-clock time.
    eprintln!("l2/{name}: {rx} frames received, {tx} sent, none dropped");
}

fn l2(c: &mut Criterion) {
    let mut group = c.benchmark_group("l2");
    group.throughput(Throughput::Elements(FRAMES_PER_ITER as u64));
    measure(
        &mut group,
        "known_unicast_64B",
        || known_unicast_reflectors(REFLECTED_FRAMES, FRAME_64B),
        1,
    );
    measure(
        &mut group,
        "known_unicast_64B_learned",
        || {
            let fdb = learned_fdb(&[(MAC_A, 0), (MAC_B, 1)]);
            known_unicast_reflectors_with(&fdb, REFLECTED_FRAMES, FRAME_64B)
        },
        1,
    );
    measure(
        &mut group,
        "known_unicast_64B_source_sink",
        || known_unicast_source_sink(FRAME_64B),
        1,
    );
    measure(
        &mut group,
        "flood_64B_4ports",
        || flood_source_sinks(4, FRAME_64B),
        3,
    );
    group.finish();
}

criterion_group!(benches, l2);
criterion_main!(benches);
