//! Steady-state flow churn allocates nothing: flows are created the way the
//! Service stage creates them (`lookup_or_create` with a worker's
//! `FlowCache`, which keeps references to the flows it saw), answered,
//! expired and swept by the controller, round after round; once the
//! table has once held more flows than it holds now plus what a worker's
//! cache can still point to (its maps have grown, and there are flow
//! states for the live flows and for those cached), no round
//! allocates (the code before this test allocated a few hundred times a
//! round: flow states pinned by the cache were dropped, and each sweep
//! allocated its lists). Checked with a counting allocator on the test's
//! own thread, at the default limit, for flows spread over many client
//! ports and for 2,000 flows that share one client port (one shard).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use fastpath::services::conntrack::{
    Conntrack, FLOW_CACHE_SLOTS, FlowCache, NewFlow, Tracked, UDP_REPLIED_MS, flow_key,
};

/// Counts allocations made by a thread while its counter is on.
struct Counting;

thread_local! {
    static ALLOCS: Cell<Option<u64>> = const { Cell::new(None) };
}

fn count() {
    // `try_with`: the thread-local may be gone while a thread exits.
    let _ = ALLOCS.try_with(|c| c.set(c.get().map(|n| n + 1)));
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// counter only reads and writes a thread-local `Cell`, which allocates
// nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCS.with(|c| c.set(Some(0)));
    f();
    ALLOCS.with(|c| c.replace(None)).unwrap_or(0)
}

const UDP: u8 = 17;
const VIP: u32 = 0x0a60_000a;
const FLOWS: u32 = 2000;
const WARM_UP: u32 = 2 * FLOWS + FLOW_CACHE_SLOTS as u32;

/// One round: `flows` new flows (client `i` of the round), each answered
/// by its endpoint, then all of them expired and swept.
fn round(ct: &Conntrack, cache: &mut FlowCache, now: &mut u64, r: u32, flows: u32, one_port: bool) {
    for i in 0..flows {
        let client = if one_port {
            (0x0af4_0000 + r * WARM_UP + i, 123)
        } else {
            (0x0af4_0000 + i, 1024 + ((r * 7919 + i) % 60000) as u16)
        };
        let backend = (0x0af4_0100 + i % 10, 5353);
        let f = NewFlow {
            proto: UDP,
            client,
            front: (VIP, 53),
            backend,
            snat: None,
            service: 1,
        };
        let nat = match ct.lookup_or_create(cache, &f, None, *now, |_, _| true) {
            Ok(Tracked::Created(nat)) => nat,
            other => panic!("round {r} flow {i}: {other:?}"),
        };
        let reply = flow_key(backend.0, nat.src, backend.1, nat.sport, UDP);
        assert!(ct.lookup(reply, false, None, *now).is_some());
    }
    *now += UDP_REPLIED_MS + 1;
    assert_eq!(ct.sweep(*now), flows as usize, "round {r}");
}

fn churn(one_port: bool) {
    let ct = Conntrack::default();
    let mut cache = FlowCache::default();
    let mut now = 1_000;
    // Warm-up: once with twice the flows and a cache's worth more, so
    // every shard's map has grown past what the rounds below need and
    // there are flow states for the live flows and for those the cache
    // still points to; then the rounds' own working set.
    round(&ct, &mut cache, &mut now, 0, WARM_UP, one_port);
    for r in 1..4 {
        round(&ct, &mut cache, &mut now, r, FLOWS, one_port);
    }
    for r in 4..100 {
        let n = allocations(|| round(&ct, &mut cache, &mut now, r, FLOWS, one_port));
        assert_eq!(n, 0, "round {r}: {n} allocations");
    }
    let c = ct.counters(now);
    assert_eq!(
        (c.created, c.entries),
        (99 * u64::from(FLOWS) + u64::from(WARM_UP), 0)
    );
}

#[test]
fn churn_over_many_client_ports_allocates_nothing_once_warm() {
    churn(false);
}

#[test]
fn churn_of_flows_sharing_one_client_port_allocates_nothing_once_warm() {
    churn(true);
}

/// The counter itself: a round of a fresh table allocates (it grows), so a
/// zero above is not the counter failing to see allocations.
#[test]
fn the_counter_sees_a_cold_table_allocate() {
    let ct = Conntrack::default();
    let mut cache = FlowCache::default();
    let mut now = 1_000;
    let n = allocations(|| round(&ct, &mut cache, &mut now, 0, FLOWS, false));
    assert!(n > 0);
}
