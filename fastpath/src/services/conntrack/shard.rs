//! One shard of the connection table: the records of the flows whose
//! client port hashes here, the shard's eviction queue, counters and
//! recycled flow states. Everything here runs under the shard's lock.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{DEAD, Flow, FlowHash, Nat, flow_key, flow_parts};

/// Spare states [`Shard::reuse`] looks at, last removed first.
const SPARE_TRIES: usize = 4;
/// Pinned states [`Shard::reuse`] looks at, oldest first, before it gives up.
const PINNED_TRIES: usize = 16;

/// Asks the CPU to fetch the line of a flow state and of its reference
/// counts (which sit just before it) ahead of use; a hint only.
#[inline(always)]
fn prefetch(flow: *const Flow) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = flow.cast::<i8>();
        // SAFETY: a prefetch is a hint: it reads nothing the program sees
        // and cannot fault, whatever the address, so the raw pointers (made
        // with wrapping arithmetic, never dereferenced) need no validity;
        // its target feature, SSE, is part of every x86-64 CPU.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_sub(16));
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(16));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = flow;
}

#[derive(Debug, Clone)]
pub(super) struct Rec {
    pub(super) orig: bool,
    pub(super) nat: Nat,
    pub(super) flow: Arc<Flow>,
}

impl Rec {
    /// The key of the other direction's record, given this record's own
    /// `key`: a packet that leaves with this record's translation is
    /// answered with its addresses and ports swapped, and that answer is
    /// what the other record is keyed by (kept out of the record: one key
    /// fewer per record keeps more of the table in cache).
    #[inline]
    pub(super) fn other(&self, key: u128) -> u128 {
        let n = &self.nat;
        flow_key(n.dst, n.src, n.dport, n.sport, flow_parts(key).4)
    }
}

/// One shard: the records of the flows whose client port hashes here,
/// with the shard's share of the counters (kept under its lock, so no
/// shared counter line is written per new flow).
#[derive(Default)]
pub(super) struct Shard {
    pub(super) map: HashMap<u128, Rec, FlowHash>,
    /// Flows (original-direction records) in this shard: the limit counts these.
    pub(super) flows: usize,
    /// Flows in the whole table (every shard's `flows`), shared by the
    /// shards: the table's limit is on it, whatever shard a flow is in.
    pub(super) total: Arc<AtomicUsize>,
    /// Keys of flows created here, oldest first: candidates for eviction
    /// while they have had no reply. Stale keys are skipped and compacted.
    pub(super) young: VecDeque<u128>,
    pub(super) created: u64,
    pub(super) evicted: u64,
    pub(super) full: u64,
    pub(super) expired: u64,
    /// Flow states of removed flows that nothing refers to, last removed
    /// at the back, for new flows to reuse (as a kernel slab cache would),
    /// so that creating a flow almost never allocates. A state that a
    /// worker's cache still refers to waits in `pinned` until the cache
    /// lets it go (see [`Shard::reuse`]). At most the table's limit, in all
    /// shards together (`spares`), so the flows of a busy shard (one client
    /// port) are recycled as well as any.
    pub(super) spare: VecDeque<Arc<Flow>>,
    /// Spare states a worker's cache still referred to when they were
    /// removed (or last looked at), oldest first (counted in `spares` too).
    pub(super) pinned: VecDeque<Arc<Flow>>,
    /// Room for the keys [`Shard::retain`] removes and the keys
    /// [`Shard::compact_young`] has seen, kept between calls so that
    /// sweeping allocates nothing once the shard has held as much.
    pub(super) gone: Vec<(u128, u128)>,
    pub(super) seen: rustc_hash::FxHashSet<u128>,
    /// Spare states in every shard (shared, like `total`).
    pub(super) spares: Arc<AtomicUsize>,
    /// The table's limit (`--ct-max` rounded up to a multiple of the
    /// shards): the most spare states kept, all shards together.
    pub(super) limit: usize,
}

impl Shard {
    /// Removes both records of a flow (record `key`, and `other` if it
    /// still belongs to the same flow), marking the flow dead first so that
    /// no worker's cache uses it again.
    pub(super) fn remove_flow(&mut self, key: u128, other: u128) {
        let Some(r) = self.map.remove(&key) else {
            return;
        };
        r.flow.kill();
        if r.orig {
            self.flows -= 1;
            self.total.fetch_sub(1, Ordering::Relaxed);
        }
        if self
            .map
            .get(&other)
            .is_some_and(|o| Arc::ptr_eq(&o.flow, &r.flow))
            && let Some(o) = self.map.remove(&other)
            && o.orig
        {
            self.flows -= 1;
            self.total.fetch_sub(1, Ordering::Relaxed);
        }
        self.recycle(r.flow);
    }

    /// Keeps a removed flow's state for reuse (both records are gone; a
    /// worker's cache may still hold it, which [`Shard::reuse`] checks).
    #[inline]
    pub(super) fn recycle(&mut self, flow: Arc<Flow>) {
        if self.spares.fetch_add(1, Ordering::Relaxed) < self.limit {
            // Once removed, a flow gains no new references (only the table
            // hands them out), so a state nothing else refers to now is
            // free for good; one a cache holds waits in `pinned`.
            if Arc::strong_count(&flow) == 1 {
                self.spare.push_back(flow);
            } else {
                self.pinned.push_back(flow);
            }
        } else {
            self.spares.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A removed flow's state that nothing refers to any more, for a new
    /// flow to reuse. The free state removed last is taken first (its line
    /// is the likeliest to be in cache), with the next one prefetched:
    /// spare states are often cold, and waiting for one was the largest
    /// single cost of a new flow (BENCHMARKS.md, "Conntrack"). Without a
    /// free one, the oldest `pinned` states are tried: caches let go of
    /// removed flows within a few polls ([`super::FlowCache::scrub`]), so
    /// the longest removed are the likeliest free.
    #[inline]
    pub(super) fn reuse(&mut self) -> Option<Arc<Flow>> {
        for _ in 0..SPARE_TRIES {
            let Some(mut spare) = self.spare.pop_back() else {
                break;
            };
            if let Some(next) = self.spare.back() {
                prefetch(Arc::as_ptr(next));
            }
            if Arc::get_mut(&mut spare).is_some() {
                self.spares.fetch_sub(1, Ordering::Relaxed);
                return Some(spare);
            }
            // Not reached while `recycle` sorts them; kept for safety.
            self.pinned.push_back(spare);
        }
        for _ in 0..PINNED_TRIES {
            let mut spare = self.pinned.pop_front()?;
            if Arc::get_mut(&mut spare).is_some() {
                self.spares.fetch_sub(1, Ordering::Relaxed);
                return Some(spare);
            }
            self.pinned.push_back(spare);
        }
        None
    }

    /// Keeps the records `keep` says yes to; the others' flows are marked
    /// dead (so cached entries of them are dropped too). Returns the number
    /// of flows removed.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Rec) -> bool) -> usize {
        // Decided once per flow, on its original record (the reply record
        // goes with it); a reply record whose flow is dead is an orphan.
        let mut gone = std::mem::take(&mut self.gone);
        for (&k, r) in &self.map {
            if (r.orig && !keep(r)) || (!r.orig && r.flow.bits() & DEAD != 0) {
                gone.push((k, r.other(k)));
            }
        }
        let before = self.flows;
        for &(k, other) in &gone {
            self.remove_flow(k, other);
        }
        gone.clear();
        self.gone = gone;
        before - self.flows
    }

    /// Evicts the oldest unanswered flow; false if there is none (looking
    /// at a bounded number of candidates).
    pub(super) fn evict_one(&mut self, now: u64) -> bool {
        for _ in 0..64 {
            let Some(k) = self.young.pop_front() else {
                break;
            };
            let Some(rec) = self.map.get(&k).filter(|r| r.orig) else {
                continue;
            };
            if rec.flow.replied() && !rec.flow.expired(now) {
                continue;
            }
            let other = rec.other(k);
            self.remove_flow(k, other);
            self.evicted += 1;
            return true;
        }
        false
    }

    /// Drops from `young` the keys of flows that are gone or answered, and
    /// repeated keys (a tuple reused by successive flows), so that it never
    /// holds more than the shard's unanswered flows.
    pub(super) fn compact_young(&mut self) {
        let Shard {
            map, young, seen, ..
        } = self;
        young
            .retain(|k| map.get(k).is_some_and(|r| r.orig && !r.flow.replied()) && seen.insert(*k));
        seen.clear();
    }
}
