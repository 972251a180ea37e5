//! One shard of the connection table: the records of the flows whose
//! client port hashes here, the list of their keys that walks go through,
//! the shard's eviction queue, counters and recycled flow states.
//! Everything here runs under the shard's lock.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Flow, FlowHash, Nat, flow_key, flow_parts};

/// A free slot of [`Shard::keys`]: no key is this (a packed tuple's bits
/// 8 to 31 are always zero, see [`flow_key`]).
pub(super) const HOLE: u128 = u128::MAX;

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
    /// Where this record's key is in the shard's `keys`, and the last
    /// eviction-queue compaction pass that kept its key (both fit in what
    /// was padding: a record with its key is 48 bytes either way).
    slot: u32,
    pass: u32,
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
    /// The key of every record in `map`, at the record's `slot`, and
    /// [`HOLE`] in the slots of removed records (listed in `holes`, which
    /// new records fill first). A record never moves, so walks of the
    /// table (sweep, `ct list`, `ct stats`) can go through this list by
    /// index a step at a time, releasing the lock between steps (see
    /// `walk.rs`), which a hash map's iterator cannot do.
    pub(super) keys: Vec<u128>,
    pub(super) holes: Vec<u32>,
    /// Flows (original-direction records) in this shard: the limit counts these.
    pub(super) flows: usize,
    /// Flows in the whole table (every shard's `flows`), shared by the
    /// shards: the table's limit is on it, whatever shard a flow is in.
    pub(super) total: Arc<AtomicUsize>,
    /// Keys of flows created here, roughly oldest first (a compaction pass
    /// puts the keys it keeps behind those queued during the pass):
    /// candidates for eviction while they are embryonic (not established,
    /// [`super::Flow::established`]). Stale keys are
    /// skipped and compacted.
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
    /// The compaction pass under way or last made ([`Shard::compact_young`]).
    pub(super) pass: u32,
    /// Keys at the front of `young` that the compaction pass under way
    /// has still to look at ([`Shard::compact_young`]); whoever else takes
    /// keys from the front counts them off.
    pub(super) compacting: usize,
    /// Spare states in every shard (shared, like `total`).
    pub(super) spares: Arc<AtomicUsize>,
    /// The table's limit (`--ct-max` rounded up to a multiple of the
    /// shards): the most spare states kept, all shards together.
    pub(super) limit: usize,
}

impl Shard {
    /// Adds the record of `key` (which no record holds).
    #[inline]
    pub(super) fn insert(&mut self, key: u128, orig: bool, nat: Nat, flow: Arc<Flow>) {
        debug_assert_ne!(key, HOLE);
        let slot = match self.holes.pop() {
            Some(slot) => {
                self.keys[slot as usize] = key;
                slot
            }
            None => {
                self.keys.push(key);
                u32::try_from(self.keys.len() - 1).expect("a shard holds fewer than 2^32 records")
            }
        };
        let old = self.map.insert(
            key,
            Rec {
                orig,
                nat,
                flow,
                slot,
                // A pass that is over (its key is queued behind any pass
                // under way, which will not look at it).
                pass: self.pass.wrapping_sub(1),
            },
        );
        // Never reached (callers claim free tuples only); if it were, the
        // replaced record goes as a removed one would.
        debug_assert!(old.is_none(), "a record is never replaced");
        if let Some(old) = old {
            old.flow.kill();
            self.keys[old.slot as usize] = HOLE;
            self.holes.push(old.slot);
            if old.orig {
                self.flows -= 1;
                self.total.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Forgets the list of holes once the shard holds no record (the next
    /// records take slots from the start again); keeps the room.
    pub(super) fn forget_holes(&mut self) {
        if self.map.is_empty() {
            self.keys.clear();
            self.holes.clear();
        }
    }

    /// Removes the record of `key`, leaving a hole in `keys`.
    #[inline]
    fn take(&mut self, key: u128) -> Option<Rec> {
        let r = self.map.remove(&key)?;
        self.keys[r.slot as usize] = HOLE;
        self.holes.push(r.slot);
        Some(r)
    }

    /// Panics unless `keys` lists exactly the records of `map`, each at
    /// its record's slot, and holes where `holes` says; and unless every
    /// embryonic flow is in the eviction queue.
    #[cfg(test)]
    pub(super) fn check(&self) {
        assert_eq!(self.keys.len(), self.map.len() + self.holes.len());
        let holes: std::collections::HashSet<u32> = self.holes.iter().copied().collect();
        assert_eq!(holes.len(), self.holes.len(), "a hole listed twice");
        for &h in &self.holes {
            assert_eq!(self.keys[h as usize], HOLE, "hole {h}");
        }
        for (i, k) in self.keys.iter().enumerate().filter(|(_, k)| **k != HOLE) {
            assert_eq!(self.map[k].slot as usize, i, "slot of key {i}");
        }
        for (k, r) in &self.map {
            assert_eq!(self.keys[r.slot as usize], *k, "the slot of a record");
        }
        assert!(self.compacting <= self.young.len());
        let queued: std::collections::HashSet<u128> = self.young.iter().copied().collect();
        for (k, r) in &self.map {
            if r.orig && !r.flow.established() && r.flow.bits() & super::flow::DEAD == 0 {
                assert!(queued.contains(k), "an embryonic flow is queued");
            }
        }
    }

    /// Removes both records of a flow (record `key`, and `other` if it
    /// still belongs to the same flow), marking the flow dead first so that
    /// no worker's cache uses it again.
    pub(super) fn remove_flow(&mut self, key: u128, other: u128) {
        let Some(r) = self.take(key) else {
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
            && let Some(o) = self.take(other)
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

    /// Evicts the oldest embryonic flow; false if there is none (looking
    /// at a bounded number of candidates).
    pub(super) fn evict_one(&mut self, now: u64) -> bool {
        for _ in 0..64 {
            let Some(k) = self.young.pop_front() else {
                break;
            };
            self.compacting = self.compacting.saturating_sub(1);
            let Some(rec) = self.map.get(&k).filter(|r| r.orig) else {
                continue;
            };
            if rec.flow.established() && !rec.flow.expired(now) {
                continue;
            }
            let other = rec.other(k);
            self.remove_flow(k, other);
            self.evicted += 1;
            return true;
        }
        false
    }

    /// Compacts the eviction queue, up to `n` keys at a time: the keys of
    /// flows that are gone or answered, and repeated keys (a tuple reused
    /// by successive flows), are dropped. A pass goes over the keys the
    /// queue held when it began, taking them from the front and putting
    /// those it keeps at the back, behind keys queued meanwhile (which it
    /// does not look at); a call goes on with the pass under way or begins
    /// one. A kept key's record is marked with the pass, which is how a
    /// repeat is known: no set to fill or clear. Returns true once the pass
    /// is over.
    pub(super) fn compact_young(&mut self, n: usize) -> bool {
        if self.compacting == 0 {
            self.compacting = self.young.len();
            self.pass = self.pass.wrapping_add(1);
        }
        let pass = self.pass;
        for _ in 0..n {
            if self.compacting == 0 {
                break;
            }
            self.compacting -= 1;
            let Some(k) = self.young.pop_front() else {
                self.compacting = 0;
                break;
            };
            if let Some(r) = self.map.get_mut(&k)
                && r.orig
                && !r.flow.established()
                && r.pass != pass
            {
                r.pass = pass;
                self.young.push_back(k);
            }
        }
        self.compacting == 0
    }
}
