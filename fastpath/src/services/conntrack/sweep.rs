//! Removing flows outside the packet path: one flow whose endpoint is gone,
//! the periodic sweep of expired flows and affinity entries that the
//! controller runs, and the bulk removals when Services go or the table is
//! flushed.
//!
//! Each removal marks every removed flow dead first (through the shard's
//! own removal), so a worker's cached entry of it misses from then on. The
//! bulk ones go through [`Conntrack::walk`], a step of a shard at a time,
//! so packets keep flowing during a sweep, in that shard too.

use parking_lot::MutexGuard;

use super::flow::DEAD;
use super::shard::Shard;
use super::walk::STEP;
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
        self.walk(
            |s, k| {
                let Some(r) = s.map.get(&k) else {
                    return;
                };
                // Decided on a flow's original record (the reply record
                // goes with it); a reply record whose flow is dead is an
                // orphan.
                if r.orig && r.flow.expired(now) {
                    let other = r.other(k);
                    s.remove_flow(k, other);
                    s.expired += 1;
                    removed += 1;
                } else if !r.orig && r.flow.bits() & DEAD != 0 {
                    let other = r.other(k);
                    s.remove_flow(k, other);
                }
            },
            Shard::forget_holes,
        );
        self.compact_young_in_steps();
        // An affinity shard holds at most a flow shard's share of the limit
        // (`per_shard`), so each is swept under one hold of its lock.
        for m in self.affinity.iter() {
            lock(m).retain(|_, &mut (_, expires)| expires >= now);
        }
        removed
    }

    /// Compacts each shard's eviction queue ([`Shard::compact_young`]),
    /// [`STEP`] keys per hold of the lock: goes on with the pass under way,
    /// or makes one, for at most as many holds as a pass over the queue
    /// found takes (new flows may end a pass and begin the next meanwhile).
    fn compact_young_in_steps(&self) {
        for m in self.shards.iter() {
            let mut s = lock(m);
            let mut holds = s.young.len() / STEP + 1;
            while !s.compact_young(STEP) && holds > 0 {
                holds -= 1;
                MutexGuard::unlock_fair(s);
                s = lock(m);
            }
        }
    }

    /// Forgets every flow and affinity entry.
    pub fn flush(&self) {
        self.walk(
            |s, k| {
                let other = s.map.get(&k).map_or(0, |r| r.other(k));
                s.remove_flow(k, other);
            },
            Shard::forget_holes,
        );
        self.compact_young_in_steps();
        for m in self.affinity.iter() {
            lock(m).clear();
        }
    }

    /// Forgets every flow of the Services with these packed keys.
    pub fn forget_services(&self, services: &[u64]) {
        let gone: rustc_hash::FxHashSet<u64> = services.iter().copied().collect();
        self.walk(
            |s, k| {
                if let Some(r) = s.map.get(&k).filter(|r| r.orig)
                    && gone.contains(&r.flow.service)
                {
                    let other = r.other(k);
                    s.remove_flow(k, other);
                }
            },
            |_| {},
        );
    }
}
