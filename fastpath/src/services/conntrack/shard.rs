//! One shard of the connection table: the records of the flows whose
//! client port hashes here, the shard's eviction queue, counters and
//! recycled flow states. Everything here runs under the shard's lock.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{DEAD, Flow, FlowHash, Nat};

#[derive(Debug, Clone)]
pub(super) struct Rec {
    pub(super) orig: bool,
    pub(super) nat: Nat,
    /// The key of the other direction's record.
    pub(super) other: u128,
    pub(super) flow: Arc<Flow>,
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
    /// Flow states of removed flows that nothing refers to any more, for
    /// new flows to reuse (as a kernel slab cache would): creating a flow
    /// then allocates nothing. At most the shard's limit.
    pub(super) spare: Vec<Arc<Flow>>,
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

    /// Keeps a removed flow's state for reuse once nothing else refers to
    /// it (the other record gone, no worker's cache holding it).
    #[inline]
    pub(super) fn recycle(&mut self, flow: Arc<Flow>) {
        if Arc::strong_count(&flow) == 1 && self.spare.len() < self.spare.capacity() {
            self.spare.push(flow);
        }
    }

    /// Keeps the records `keep` says yes to; the others' flows are marked
    /// dead (so cached entries of them are dropped too). Returns the number
    /// of flows removed.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Rec) -> bool) -> usize {
        // Decided once per flow, on its original record (the reply record
        // goes with it); a reply record whose flow is dead is an orphan.
        let mut gone = Vec::new();
        for (&k, r) in &self.map {
            if (r.orig && !keep(r)) || (!r.orig && r.flow.bits() & DEAD != 0) {
                gone.push((k, r.other));
            }
        }
        let before = self.flows;
        for (k, other) in gone {
            self.remove_flow(k, other);
        }
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
            let other = rec.other;
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
        let Shard { map, young, .. } = self;
        let mut seen = rustc_hash::FxHashSet::default();
        young
            .retain(|k| map.get(k).is_some_and(|r| r.orig && !r.flow.replied()) && seen.insert(*k));
    }
}
