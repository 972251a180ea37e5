//! Removing flows outside the packet path: one flow whose endpoint is gone,
//! the periodic sweep of expired flows and affinity entries that the
//! controller runs, and the bulk removals when Services go or the table is
//! flushed.
//!
//! Each removal takes one shard lock at a time and marks every removed
//! flow dead first (through the shard's own removal), so a worker's cached
//! entry of it misses from then on. No lock is held across shards, so
//! packets of other shards keep flowing during a sweep.

use super::{Conntrack, lock};

impl Conntrack {
    /// Ends the flow whose original tuple is `key` (its endpoint is gone).
    pub fn kill(&self, key: u128) {
        let mut s = lock(&self.shards[self.shard_of(key, true)]);
        if let Some(rec) = s.map.get(&key).filter(|r| r.orig) {
            rec.flow.kill();
            let other = rec.other(key);
            s.remove_flow(key, other);
        }
    }

    /// Removes expired and dead flows, and expired affinity entries.
    /// Returns the number of flows removed.
    pub fn sweep(&self, now: u64) -> usize {
        let mut removed = 0;
        for m in self.shards.iter() {
            let mut s = lock(m);
            let n = s.retain(|r| !r.flow.expired(now));
            s.expired += n as u64;
            removed += n;
            s.compact_young();
        }
        for m in self.affinity.iter() {
            lock(m).retain(|_, &mut (_, expires)| expires >= now);
        }
        removed
    }

    /// Forgets every flow and affinity entry.
    pub fn flush(&self) {
        for m in self.shards.iter() {
            let mut s = lock(m);
            s.retain(|_| false);
            s.young.clear();
        }
        for m in self.affinity.iter() {
            lock(m).clear();
        }
    }

    /// Forgets every flow of the Services with these packed keys.
    pub fn forget_services(&self, services: &[u64]) {
        let gone: rustc_hash::FxHashSet<u64> = services.iter().copied().collect();
        for m in self.shards.iter() {
            lock(m).retain(|r| !gone.contains(&r.flow.service));
        }
    }
}
