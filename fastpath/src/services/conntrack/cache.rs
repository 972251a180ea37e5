//! A worker's own shortcut to the flows it has seen: owned by one worker
//! (inside its `Router`), read and written without a lock. The table in
//! the parent module stays the authority: every removal there marks the
//! flow dead, which is what keeps an entry here honest.

use std::sync::Arc;

use super::{DEAD, Flow, Hit};

/// Slots of a worker's [`FlowCache`] (a power of two).
pub const FLOW_CACHE_SLOTS: usize = 4096;

#[derive(Debug)]
pub(super) struct CacheEntry {
    pub(super) key: u128,
    pub(super) orig: bool,
    pub(super) hit: Hit,
    pub(super) flow: Arc<Flow>,
    /// The `Service::id` this flow's endpoint was last found listed in.
    pub(super) checked: u64,
}

/// A worker's direct-mapped cache of flows it has seen: the established
/// path without a lock. An entry is only a shortcut to the shared `Flow`:
/// every removal from the table marks the flow dead first, so a cached
/// entry of a removed, expired or replaced flow is never used.
#[derive(Debug)]
pub struct FlowCache {
    pub(super) entries: Box<[Option<CacheEntry>]>,
    /// The slot [`FlowCache::scrub`] looks at next.
    next: usize,
}

impl Default for FlowCache {
    fn default() -> Self {
        FlowCache {
            entries: (0..FLOW_CACHE_SLOTS).map(|_| None).collect(),
            next: 0,
        }
    }
}

impl FlowCache {
    /// Empties every slot (the worker does once no Service is left: the
    /// cache is then of no use, and what it holds would keep removed
    /// flows' states from being reused).
    pub fn clear(&mut self) {
        self.entries.iter_mut().for_each(|e| *e = None);
    }

    /// Empties those of the next `n` slots (going round the cache, from
    /// where the last call stopped) whose flow has been removed from the
    /// table. An entry is only replaced when another flow takes its slot,
    /// so without this a removed flow's state stays referenced long after,
    /// and the table, which reuses only states nothing refers to, would
    /// allocate new ones. The worker calls it every poll.
    pub fn scrub(&mut self, n: usize) {
        for _ in 0..n {
            let i = self.next;
            self.next = (i + 1) % FLOW_CACHE_SLOTS;
            if self.entries[i]
                .as_ref()
                .is_some_and(|e| e.flow.bits() & DEAD != 0)
            {
                self.entries[i] = None;
            }
        }
    }

    #[inline]
    pub(super) fn put(&mut self, key: u128, orig: bool, hit: Hit, flow: Arc<Flow>) {
        let slot = self.slot(key);
        self.entries[slot] = Some(CacheEntry {
            key,
            orig,
            hit,
            flow,
            checked: 0,
        });
    }

    #[inline]
    pub(super) fn slot(&self, key: u128) -> usize {
        let h = (key as u64) ^ ((key >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (h >> 52) as usize % FLOW_CACHE_SLOTS
    }
}
