//! Throughput of the routed path (parse → security → learn → arp → route →
//! forward → output) on one worker, over in-memory ports, with 64-byte UDP
//! frames to the router's MAC, and the cost of a route lookup alone.
//!
//! One criterion element is one frame *received* by the worker (or one
//! lookup), so the `elem/s` that criterion prints reads as packets per
//! second (Melem/s = Mpps) of routing capacity on one core. Each iteration
//! runs the worker's poll loop until it has handled [`FRAMES_PER_ITER`]
//! frames.
//!
//! - `l3/routed_64B_10k_routes`: a node's table of 10,000 routes (pod /32s,
//!   other nodes' /24s, a few /16s, a default; see `bench::cluster_routes`),
//!   every next hop resolved. A source on port 0 sends frames to 4,096
//!   destinations in turn: half to local pods (four pod ports), half out of
//!   the uplink via other nodes or the gateway. Every frame is looked up,
//!   its TTL decremented with an incremental checksum update, its MACs
//!   rewritten, and it leaves on exactly one port.
//! - `l3/routed_64B_one_pod`: the same path with a table of the same shape
//!   but every frame to one pod: the routed counterpart of
//!   `l2/known_unicast_64B_source_sink` (same source and sink ports), with
//!   the lookup and the rewrite always hot in cache.
//! - `l3/lpm_lookup_10k_routes`: `RouteTable::lookup` alone over the same
//!   table and destinations; an element is one lookup.
//!
//! Reflectors cannot carry routed traffic (every pass decrements the TTL),
//! so the routed scenarios use a cycling source and sinks. Before
//! measuring, each scenario runs for a while and must be clean: no drop of
//! any reason on any port, no learning report, no frame held or leaked.
//! Afterwards it is checked again, and every frame received must have left
//! exactly once (no ARP request, no ICMP error, no flood).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use bench::{ClusterRoutes, FRAME_64B, FRAMES_PER_ITER, Rig, cluster_routes, routed_source_sinks};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};

/// Routes in the table.
const ROUTES: usize = 10_000;
/// Distinct destinations the traffic goes round.
const DESTINATIONS: usize = 4096;

/// Measures one routed scenario, built by `make` only if criterion's filter
/// selects it.
fn measure(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, make: impl FnOnce() -> Rig) {
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
        tx, rx,
        "{name}: {rx} frames received should leave once each"
    );
    eprintln!("l3/{name}: {rx} frames received, {tx} sent, none dropped");
}

/// The table of [`ROUTES`] routes with every destination one local pod.
fn one_pod(routes: &ClusterRoutes) -> ClusterRoutes {
    let pod = routes.destinations[0];
    ClusterRoutes {
        l3: routes.l3.clone(),
        neigh: routes.neigh.clone(),
        destinations: vec![pod],
    }
}

fn l3(c: &mut Criterion) {
    let routes = cluster_routes(ROUTES, DESTINATIONS);
    let mut group = c.benchmark_group("l3");
    group.throughput(Throughput::Elements(FRAMES_PER_ITER as u64));
    measure(&mut group, "routed_64B_10k_routes", || {
        routed_source_sinks(&routes, FRAME_64B)
    });
    measure(&mut group, "routed_64B_one_pod", || {
        routed_source_sinks(&one_pod(&routes), FRAME_64B)
    });

    let addrs: Vec<IpAddr> = routes
        .destinations
        .iter()
        .map(|&d| IpAddr::V4(Ipv4Addr::from(d)))
        .collect();
    group.throughput(Throughput::Elements(addrs.len() as u64));
    group.bench_function("lpm_lookup_10k_routes", |b| {
        let table = &routes.l3.routes;
        b.iter(|| {
            let mut found = 0usize;
            for &a in &addrs {
                found += usize::from(table.lookup(black_box(a)).is_some());
            }
            assert_eq!(found, addrs.len(), "every destination has a route");
            found
        })
    });
    group.finish();
}

criterion_group!(benches, l3);
criterion_main!(benches);
