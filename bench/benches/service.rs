//! Cost of Kubernetes Services: the data path through the Service stage
//! (VIP match, conntrack, DNAT) and the routed path behind it, on one
//! worker over in-memory ports, and the control plane's cost of building
//! Services and their Maglev tables.
//!
//! One criterion element is one frame *received* by the worker (for the
//! data path) or one thing built (for the control plane), so the `elem/s`
//! that criterion prints reads as packets per second on one core.
//!
//! - `service/established`: 64-byte TCP frames (valid IPv4 and TCP
//!   checksums) from one pod (host A, 10.244.0.10) to the VIP
//!   10.96.0.10:80, which has 10 endpoints (local pods behind the four pod
//!   ports, `Peer` routes in a 10,000-route table, see
//!   `bench::cluster_routes`). The source cycles over [`FLOWS`] client
//!   ports. Before measuring, every flow exists and has been answered
//!   (its reply direction looked up once, as the endpoint's SYN-ACK would),
//!   so every measured frame is a conntrack hit on an established flow:
//!   one shard lock, the DNAT with incremental checksums, then routing
//!   (lookup, TTL, MACs) to the endpoint's port.
//! - `service/first_packet`: every frame opens a new flow: Maglev picks
//!   the endpoint, the flow's two records are created (two shard locks,
//!   one allocation), then DNAT and routing as above. The source cycles
//!   over exactly [`FRAMES_PER_ITER`] distinct tuples (64 client
//!   addresses × 1024 ports), and the connection table is flushed before
//!   every criterion iteration, outside the timed part
//!   (`iter_batched_ref` with a per-iteration setup): any window of
//!   `FRAMES_PER_ITER` consecutive frames holds each tuple exactly once,
//!   so every frame of an iteration is the first of its flow. The table's
//!   limit (the default, 262,144) is four times that, so nothing is
//!   evicted or refused.
//! - `service/churn`: flows that come and go, [`CHURN_FLOWS`] at a time,
//!   never flushed: each is a SYN, two ACKs and a RST (the segments of
//!   the flows interleaved, a flow's next one [`CHURN_FLOWS`] frames
//!   later), and the next cycle's SYN on the same tuple reopens the closed
//!   flow (removes it, chooses an endpoint, creates a new one). So one
//!   frame in four is the first of a flow and the others hit it in the
//!   worker's flow cache; flow states are recycled while workers' caches
//!   still refer to the old ones. After measuring, the bench checks that
//!   every SYN made a flow and that the measured iterations allocated
//!   nothing (a counting allocator on the worker's thread), after 64
//!   cycles of warm-up besides settling: the first cycles grow the
//!   table's maps and lists to what the churn needs.
//! - `service/maglev_build`: `Service::new` with 10 endpoints (a Maglev
//!   table of 2,039 slots); an element is one Service.
//! - `service/table_10k`: a `ServiceTable` of 10,000 Services × 10
//!   endpoints, built from nothing (every Service and its Maglev table,
//!   then the table's indexes): what the controller pays to rebuild every
//!   Service at once, as after a restart. An element is one table.
//!
//! As in `l3.rs`, each data-path scenario runs for a while first and must
//! be clean (no drop of any reason, no learning report, no frame held or
//! leaked), and afterwards every frame received must have left exactly
//! once, on a pod port (never refused, never flooded, never out of the
//! uplink).

use std::collections::HashSet;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bench::{
    ClusterRoutes, CyclingSource, FRAME_64B, FRAMES_PER_ITER, IP_A, MAC_A, ROUTED_PODS,
    ROUTED_SOURCE, ROUTED_UPLINK, ROUTER_MAC, Rig, cluster_routes, routed_source_sinks,
};
use criterion::measurement::WallTime;
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main,
};
use etherparse::{PacketBuilder, TcpHeader};
use fastpath::l3::table::NextHop;
use fastpath::services::conntrack::{FlowState, flow_key, tcp_flags};
use fastpath::services::maglev::DEFAULT_MIN_SIZE;
use fastpath::services::table::{PROTO_TCP, Service, ServiceTable, endpoint};
use fastpath::snapshot::Snapshot;

#[global_allocator]
// Counts the worker's allocations for `churn`'s no-allocation check.
static GLOBAL: fastpath::alloc_count::Counting = fastpath::alloc_count::Counting;

/// Routes in the table (as in `l3.rs`).
const ROUTES: usize = 10_000;
/// Endpoints of the benchmarked Service.
const ENDPOINTS: usize = 10;
/// Established flows the `established` scenario cycles over.
const FLOWS: usize = 1024;
/// Services in the `table_10k` scenario.
const SERVICES: usize = 10_000;

const VIP: [u8; 4] = [10, 96, 0, 10];
const VPORT: u16 = 80;
const BPORT: u16 = 8080;

fn v4(a: [u8; 4]) -> u32 {
    u32::from_be_bytes(a)
}

/// A 64-byte TCP ACK segment (10 bytes of payload) from `src:sport` to
/// the VIP, sent to the router by host A, with valid checksums.
fn tcp_to_vip(src: [u8; 4], sport: u16) -> Vec<u8> {
    tcp_to_vip_flags(src, sport, Segment::Ack)
}

/// What a segment of [`tcp_to_vip_flags`] is.
#[derive(Clone, Copy)]
enum Segment {
    Syn,
    Ack,
    Rst,
}

/// A 64-byte TCP segment from `src:sport` to the VIP (see [`tcp_to_vip`]).
fn tcp_to_vip_flags(src: [u8; 4], sport: u16, seg: Segment) -> Vec<u8> {
    let mut h = TcpHeader::new(sport, VPORT, 1, 64240);
    match seg {
        Segment::Syn => h.syn = true,
        Segment::Ack => h.ack = true,
        Segment::Rst => (h.rst, h.ack) = (true, true),
    }
    h.acknowledgment_number = if h.ack { 1 } else { 0 };
    let mut f = Vec::with_capacity(FRAME_64B);
    PacketBuilder::ethernet2(MAC_A, ROUTER_MAC)
        .ipv4(src, VIP, 64)
        .tcp_header(h)
        .write(&mut f, &[0u8; FRAME_64B - 54])
        .expect("a small frame");
    assert_eq!(f.len(), FRAME_64B);
    f
}

/// `count` local pods of the routed table (destinations with a `Peer`
/// route, so no ARP), as endpoints on port 8080.
fn local_endpoints(routes: &ClusterRoutes, count: usize) -> Vec<u64> {
    let mut eps: Vec<u64> = Vec::new();
    for &d in &routes.destinations {
        let hop = routes.l3.routes.lookup(IpAddr::V4(Ipv4Addr::from(d)));
        let e = endpoint(v4(d), BPORT);
        if matches!(hop, Some(NextHop::Peer { .. })) && !eps.contains(&e) {
            eps.push(e);
        }
        if eps.len() == count {
            return eps;
        }
    }
    panic!("only {} local pods among the destinations", eps.len());
}

/// The routed rig of `l3.rs` with `services` published, host A sending
/// copies of `templates` in turn.
fn service_rig(routes: &ClusterRoutes, services: ServiceTable, templates: Vec<Vec<u8>>) -> Rig {
    let mut rig = routed_source_sinks(routes, FRAME_64B);
    let current = rig.snapshot.load_full();
    rig.snapshot.store(Arc::new(Snapshot {
        generation: current.generation + 1,
        services: Arc::new(services),
        ..(*current).clone()
    }));
    // Replaces the rig's UDP source on the same port.
    rig.attach(ROUTED_SOURCE, Box::new(CyclingSource::new(templates)));
    rig
}

/// A table holding the one benchmarked Service.
fn one_service(routes: &ClusterRoutes) -> ServiceTable {
    let svc = Service::new(
        v4(VIP),
        VPORT,
        PROTO_TCP,
        local_endpoints(routes, ENDPOINTS),
        vec![],
        DEFAULT_MIN_SIZE,
    );
    let mut t = ServiceTable::default();
    t.insert(Arc::new(svc));
    t
}

/// Checks a scenario after measuring: clean, and every frame received
/// left once, on a pod port.
fn check_after(name: &str, rig: &mut Rig, handled: usize, iterations: usize) {
    rig.check_clean()
        .unwrap_or_else(|e| panic!("{name} after measuring: {e}"));
    assert_eq!(
        handled,
        iterations * FRAMES_PER_ITER,
        "{name}: iterations handled more frames than the throughput says"
    );
    let totals = rig.totals();
    let (rx, tx) = (totals.rx_packets, totals.tx_packets);
    let to_pods: u64 = ROUTED_PODS.iter().map(|&p| rig.port(p).tx_packets).sum();
    assert_eq!(
        tx, rx,
        "{name}: {rx} frames received should leave once each"
    );
    assert_eq!(to_pods, tx, "{name}: every frame goes to an endpoint");
    assert_eq!(rig.port(ROUTED_UPLINK).tx_packets, 0);
    eprintln!("service/{name}: {rx} frames received, {tx} sent to endpoints, none dropped");
}

fn established(group: &mut BenchmarkGroup<'_, WallTime>, routes: &ClusterRoutes) {
    let name = "established";
    let mut rig: Option<Rig> = None;
    let (mut handled, mut iterations) = (0usize, 0usize);
    group.bench_function(name, |b| {
        let rig = rig.get_or_insert_with(|| {
            let templates = (0..FLOWS)
                .map(|i| tcp_to_vip(IP_A, 10_000 + i as u16))
                .collect();
            let rig = service_rig(routes, one_service(routes), templates).settle(name);
            // Answer every flow (what the endpoints' SYN-ACKs would do) and
            // confirm it (the clients' ACKs), so that the measured frames
            // hit established flows.
            let now = fastpath::clock::now_ms();
            let flows = rig.conntrack.flows(now);
            assert_eq!(flows.len(), FLOWS, "{name}: one flow per client port");
            for f in &flows {
                let n = f.nat;
                let reply = flow_key(n.dst, n.src, n.dport, n.sport, PROTO_TCP);
                let flags = Some(tcp_flags::SYN | tcp_flags::ACK);
                assert!(rig.conntrack.lookup(reply, false, flags, now).is_some());
                let ack = Some(tcp_flags::ACK);
                assert!(rig.conntrack.lookup(f.orig, true, ack, now).is_some());
            }
            let flows = rig.conntrack.flows(now);
            assert!(flows.iter().all(|f| f.state == FlowState::Established));
            let backends: HashSet<u64> = flows.iter().map(|f| f.backend).collect();
            assert_eq!(
                backends.len(),
                ENDPOINTS,
                "{name}: every endpoint has flows"
            );
            rig
        });
        b.iter(|| {
            let n = rig.run_frames(FRAMES_PER_ITER);
            handled += n;
            iterations += 1;
            black_box(n)
        })
    });
    if let Some(mut rig) = rig {
        let c = rig.conntrack.counters(fastpath::clock::now_ms());
        assert_eq!((c.created, c.entries), (FLOWS as u64, FLOWS as u64));
        check_after(name, &mut rig, handled, iterations);
    }
}

fn first_packet(group: &mut BenchmarkGroup<'_, WallTime>, routes: &ClusterRoutes) {
    let name = "first_packet";
    let mut rig: Option<Rig> = None;
    let (mut handled, mut iterations) = (0usize, 0usize);
    group.bench_function(name, |b| {
        let rig = rig.get_or_insert_with(|| {
            // 64 client addresses × 1024 ports: one tuple per frame of an
            // iteration (none of them an endpoint, so no hairpin).
            let templates: Vec<Vec<u8>> = (0..FRAMES_PER_ITER)
                .map(|i| {
                    tcp_to_vip(
                        [10, 244, 0, 100 + (i / 1024) as u8],
                        1024 + (i % 1024) as u16,
                    )
                })
                .collect();
            let rig = service_rig(routes, one_service(routes), templates).settle(name);
            let c = rig.conntrack.counters(fastpath::clock::now_ms());
            assert_eq!(
                c.created, FRAMES_PER_ITER as u64,
                "{name}: one flow per tuple"
            );
            rig
        });
        let ct = Arc::clone(&rig.conntrack);
        b.iter_batched_ref(
            || ct.flush(),
            |_| {
                let n = rig.run_frames(FRAMES_PER_ITER);
                handled += n;
                iterations += 1;
                black_box(n)
            },
            BatchSize::PerIteration,
        )
    });
    if let Some(mut rig) = rig {
        // Every iteration (warm-up included) created a flow for every
        // frame it handled, on top of those settling created.
        let c = rig.conntrack.counters(fastpath::clock::now_ms());
        assert_eq!(c.entries, FRAMES_PER_ITER as u64, "{name}: {c:?}");
        let measured = (iterations * FRAMES_PER_ITER) as u64;
        assert_eq!(
            c.created,
            FRAMES_PER_ITER as u64 + measured,
            "{name}: {c:?}"
        );
        assert_eq!((c.evicted, c.full), (0, 0), "{name}: {c:?}");
        check_after(name, &mut rig, handled, iterations);
    }
}

/// Flows of the `churn` scenario, each [`CHURN_SEGMENTS`] segments long.
const CHURN_FLOWS: usize = FRAMES_PER_ITER / CHURN_SEGMENTS;
const CHURN_SEGMENTS: usize = 4;
/// Cycles `churn` runs before it measures, on top of settling.
const CHURN_WARM_CYCLES: usize = 64;

fn churn(group: &mut BenchmarkGroup<'_, WallTime>, routes: &ClusterRoutes) {
    let name = "churn";
    let mut rig: Option<Rig> = None;
    let (mut handled, mut iterations, mut allocs) = (0usize, 0usize, 0u64);
    group.bench_function(name, |b| {
        let rig = rig.get_or_insert_with(|| {
            // Segment k of flow j at position k × CHURN_FLOWS + j: a SYN
            // (which reopens the tuple's flow closed by the last cycle's
            // RST), two ACKs, a RST; 64 clients × 256 ports.
            let templates: Vec<Vec<u8>> = (0..FRAMES_PER_ITER)
                .map(|i| {
                    let (k, j) = (i / CHURN_FLOWS, i % CHURN_FLOWS);
                    let seg = match k {
                        0 => Segment::Syn,
                        k if k == CHURN_SEGMENTS - 1 => Segment::Rst,
                        _ => Segment::Ack,
                    };
                    let src = [10, 244, 0, 100 + (j / 256) as u8];
                    tcp_to_vip_flags(src, 1024 + (j % 256) as u16, seg)
                })
                .collect();
            let mut rig = service_rig(routes, one_service(routes), templates).settle(name);
            // Until the table's lists and maps have grown to what the
            // churn needs (what a long-running switch has long done).
            rig.run_frames(CHURN_WARM_CYCLES * FRAMES_PER_ITER);
            rig
        });
        b.iter(|| {
            let mut n = 0;
            allocs += fastpath::alloc_count::allocations(|| n = rig.run_frames(FRAMES_PER_ITER));
            handled += n;
            iterations += 1;
            black_box(n)
        });
    });
    if let Some(mut rig) = rig {
        let c = rig.conntrack.counters(fastpath::clock::now_ms());
        // One flow per tuple at any time (closed by its RST, it stays
        // until its 10 s are up or a SYN reopens the tuple); every SYN,
        // settling and warm-up included, opened a new one.
        assert_eq!(c.entries, CHURN_FLOWS as u64, "{name}: {c:?}");
        // The frames received began with a SYN: those of whole cycles,
        // then those of a last partial one.
        let frames = rig.totals().rx_packets;
        let (cycles, rest) = (
            frames / FRAMES_PER_ITER as u64,
            frames % FRAMES_PER_ITER as u64,
        );
        assert_eq!(
            c.created,
            cycles * CHURN_FLOWS as u64 + rest.min(CHURN_FLOWS as u64),
            "{name}: one flow per SYN of {frames} frames: {c:?}"
        );
        assert_eq!((c.evicted, c.full), (0, 0), "{name}: {c:?}");
        check_after(name, &mut rig, handled, iterations);
        eprintln!("service/{name}: {allocs} allocations while measuring");
        assert_eq!(allocs, 0, "{name}: churn allocated");
    }
}

/// `n` endpoints 10.244.x.y:8080 for Service number `s`.
fn endpoints_of(s: usize, n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let k = (s * n + i) as u32;
            endpoint(v4([10, 244, 0, 0]) + 256 + k, BPORT)
        })
        .collect()
}

fn control_plane(c: &mut Criterion) {
    let mut group = c.benchmark_group("service");
    group.throughput(Throughput::Elements(1));
    let eps = endpoints_of(0, ENDPOINTS);
    group.bench_function("maglev_build", |b| {
        b.iter(|| {
            let svc = Service::new(
                v4(VIP),
                VPORT,
                PROTO_TCP,
                black_box(eps.clone()),
                vec![],
                DEFAULT_MIN_SIZE,
            );
            assert_eq!(svc.maglev.len(), 2039);
            svc
        })
    });
    // One table takes a large fraction of a second: fewer samples.
    group.sample_size(10);
    let all: Vec<Vec<u64>> = (0..SERVICES).map(|s| endpoints_of(s, ENDPOINTS)).collect();
    group.bench_function("table_10k", |b| {
        b.iter(|| {
            let mut t = ServiceTable::default();
            for (s, eps) in all.iter().enumerate() {
                let vip = v4([10, 96, 0, 0]) + s as u32;
                let svc =
                    Service::new(vip, VPORT, PROTO_TCP, eps.clone(), vec![], DEFAULT_MIN_SIZE);
                t.insert(Arc::new(svc));
            }
            assert_eq!(t.len(), SERVICES);
            t
        })
    });
    group.finish();
}

fn data_path(c: &mut Criterion) {
    let routes = cluster_routes(ROUTES, 4096);
    let mut group = c.benchmark_group("service");
    group.throughput(Throughput::Elements(FRAMES_PER_ITER as u64));
    established(&mut group, &routes);
    first_packet(&mut group, &routes);
    churn(&mut group, &routes);
    group.finish();
}

criterion_group!(benches, data_path, control_plane);
criterion_main!(benches);
