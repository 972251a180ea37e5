//! Frames between real pods through a real vswitchd: ping and TCP (iperf3)
//! between every pair of port types, and the UMEM frame accounting under load.
//!
//! Needs root; see `common/mod.rs`.

mod common;

use common::{Attach, DaemonOpts, Pod, TestEnv, assert_frames_accounted, pick_cores};

/// An iperf3 transfer through the switch must move at least this much. Far
/// below what even generic XDP on a slow machine does, far above what a
/// stalled TCP connection (checksum or frame-loss bugs) manages.
const MIN_IPERF_BYTES: u64 = 1_000_000;
const IPERF_SECS: u32 = 3;

fn two_pods(env: &mut TestEnv, a: Attach, b: Attach) -> (Pod, Pod) {
    env.start_daemon();
    let pa = env.add_pod("a", a);
    let pb = env.add_pod("b", b);
    (pa, pb)
}

/// Pings from `a` to `b`, then moves data with iperf3 each way and asserts
/// that each transfer moved more than [`MIN_IPERF_BYTES`].
fn tcp_both_ways(env: &mut TestEnv, a: &Pod, b: &Pod) {
    env.ping(a, b);
    for (from, to) in [(a, b), (b, a)] {
        let bytes = env.iperf(from, to, IPERF_SECS);
        assert!(
            bytes > MIN_IPERF_BYTES,
            "only {bytes} bytes from {} to {}",
            from.name,
            to.name
        );
    }
}

#[test]
fn ping_between_afxdp_pods() {
    let Some(mut env) = TestEnv::new("ping_between_afxdp_pods") else {
        return;
    };
    let (a, b) = two_pods(&mut env, Attach::Afxdp, Attach::Afxdp);
    env.ping_all(&[&a, &b]);
}

#[test]
fn ping_between_tap_pods() {
    let Some(mut env) = TestEnv::new("ping_between_tap_pods") else {
        return;
    };
    let (a, b) = two_pods(&mut env, Attach::Tap, Attach::Tap);
    env.ping_all(&[&a, &b]);
}

#[test]
fn ping_between_afxdp_and_tap_pods() {
    let Some(mut env) = TestEnv::new("ping_between_afxdp_and_tap_pods") else {
        return;
    };
    let (a, b) = two_pods(&mut env, Attach::Afxdp, Attach::Tap);
    env.ping_all(&[&a, &b]);
}

#[test]
fn tcp_between_afxdp_pods() {
    let Some(mut env) = TestEnv::new("tcp_between_afxdp_pods") else {
        return;
    };
    let (a, b) = two_pods(&mut env, Attach::Afxdp, Attach::Afxdp);
    tcp_both_ways(&mut env, &a, &b);
}

#[test]
fn tcp_between_tap_pods() {
    let Some(mut env) = TestEnv::new("tcp_between_tap_pods") else {
        return;
    };
    let (a, b) = two_pods(&mut env, Attach::Tap, Attach::Tap);
    tcp_both_ways(&mut env, &a, &b);
}

#[test]
fn tcp_between_afxdp_and_tap_pods() {
    let Some(mut env) = TestEnv::new("tcp_between_afxdp_and_tap_pods") else {
        return;
    };
    let (a, t) = two_pods(&mut env, Attach::Afxdp, Attach::Tap);
    // Both directions: AF_XDP RX -> TAP write, and TAP read -> AF_XDP TX.
    tcp_both_ways(&mut env, &a, &t);
}

#[test]
fn frame_accounting_survives_load() {
    let Some(mut env) = TestEnv::with_daemon("frame_accounting_survives_load") else {
        return;
    };
    let a = env.add_pod("a", Attach::Afxdp);
    let b = env.add_pod("b", Attach::Afxdp);
    let t = env.add_pod("t", Attach::Tap);

    let show = env.daemon().show();
    assert_eq!(show.workers.len(), 1);
    let w = &show.workers[0];
    assert!(
        w.frames.umem,
        "the worker polling AF_XDP ports has no UMEM: {:?}",
        w.frames
    );
    assert!(
        w.frames.total > 0,
        "the worker's frame pool is empty: {:?}",
        w.frames
    );
    let totals: Vec<u64> = show.workers.iter().map(|w| w.frames.total).collect();

    env.ping_all(&[&a, &b, &t]);
    assert!(env.iperf(&a, &b, IPERF_SECS) > MIN_IPERF_BYTES);
    assert_frames_accounted(&env, &totals);
    // Copies (TAP <-> AF_XDP) take and return frames on other paths.
    assert!(env.iperf(&t, &a, IPERF_SECS) > MIN_IPERF_BYTES);
    assert!(env.iperf(&b, &t, IPERF_SECS) > MIN_IPERF_BYTES);
    assert_frames_accounted(&env, &totals);
}

/// Two workers: ports are spread over both, and frames cross between them
/// (a copy between two UMEMs) in both directions.
#[test]
fn two_workers_forward_between_their_ports() {
    let Some(mut env) = TestEnv::new("two_workers_forward_between_their_ports") else {
        return;
    };
    let Some(cores) = pick_cores(2) else {
        common::cannot_run(
            "two_workers_forward_between_their_ports",
            "fewer than 2 usable cores",
        );
        return;
    };
    env.start_daemon_with(DaemonOpts {
        cores,
        ..DaemonOpts::default()
    });
    let pods: Vec<Pod> = [
        ("a", Attach::Afxdp),
        ("b", Attach::Afxdp),
        ("c", Attach::Afxdp),
        ("t", Attach::Tap),
    ]
    .into_iter()
    .map(|(s, k)| env.add_pod(s, k))
    .collect();

    let show = env.daemon().show();
    assert_eq!(
        show.workers.len(),
        2,
        "--cores with two cores must start two workers"
    );
    let cores: Vec<usize> = show.workers.iter().map(|w| w.core).collect();
    assert_eq!(
        cores
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(","),
        env.daemon().opts.cores,
        "workers are not pinned to the cores asked for"
    );
    for w in &show.workers {
        assert!(
            !w.ports.is_empty(),
            "worker {} got no port; ports are not spread: {:#?}",
            w.id,
            show.workers
        );
    }
    let mut polled: Vec<&String> = show.workers.iter().flat_map(|w| &w.ports).collect();
    polled.sort();
    let mut names: Vec<&String> = pods.iter().map(|p| &p.name).collect();
    names.sort();
    assert_eq!(
        polled, names,
        "every port must be polled by exactly one worker"
    );
    let totals: Vec<u64> = show.workers.iter().map(|w| w.frames.total).collect();

    let refs: Vec<&Pod> = pods.iter().collect();
    env.ping_all(&refs);

    // TCP between two AF_XDP ports of different workers.
    let ports = env.daemon().port_list();
    let worker_of = |p: &Pod| ports.iter().find(|i| i.name == p.name).unwrap().worker;
    let (x, y) = pods
        .iter()
        .filter(|p| p.attach == Attach::Afxdp)
        .flat_map(|x| {
            pods.iter()
                .filter(|p| p.attach == Attach::Afxdp)
                .map(move |y| (x, y))
        })
        .find(|(x, y)| worker_of(x) != worker_of(y))
        .expect("no two AF_XDP ports on different workers");
    assert!(env.iperf(x, y, IPERF_SECS) > MIN_IPERF_BYTES);
    assert!(env.iperf(y, x, IPERF_SECS) > MIN_IPERF_BYTES);
    assert_frames_accounted(&env, &totals);
}
