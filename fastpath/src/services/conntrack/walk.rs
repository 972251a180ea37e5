//! Walking the whole table from the controller (sweep, flush, `ct list`,
//! `ct stats`) without keeping a worker waiting longer than one step.
//!
//! A shard can hold the whole table (every flow of one client port lives in
//! one shard), and looking at a record reads its flow state, a cache miss
//! apiece: a walk of a full shard under its lock kept the workers of that
//! shard waiting for tens of milliseconds. A walk instead takes the lock
//! for [`STEP`] records at a time, going through the shard's list of keys
//! (`Shard::keys`) by index, and hands it to a waiting worker between steps
//! (a fair unlock: with a plain one the walk took the lock straight back,
//! before the woken worker ran), so a worker that wants the shard waits
//! for about one step (measured by `cargo bench -p bench --bench ct_walk`,
//! BENCHMARKS.md "Conntrack walks").
//!
//! A record keeps its slot in the list for its whole life (a removed one
//! leaves a hole that a later record fills), so a walk visits every record
//! present for the whole walk exactly once, whatever workers add or remove
//! meanwhile; a record added during the walk may be visited or not. That
//! is per record, not per tuple: a flow removed and made again during the
//! walk may be seen in both its old and its new slot.
//!
//! Workers release a shard with a plain unlock, so a walk waiting to take
//! it back may lose to other workers for a while (parking_lot hands it over
//! fairly now and then, every half millisecond on average, when a thread
//! is waiting): a walk's own length under heavy contention on one shard is
//! not bounded by this design.

use parking_lot::MutexGuard;

use super::shard::{HOLE, Shard};
use super::{Conntrack, lock};

/// Records a walk looks at per hold of a shard's lock.
pub(super) const STEP: usize = 64;

/// Slots a step looks at, holes included, at most (holes cost a load each).
const STEP_SLOTS: usize = 16 * STEP;

/// Where a walk is: the shard, and the slots of it looked at so far.
#[derive(Debug, Default)]
pub(super) struct Walk {
    shard: usize,
    next: usize,
}

impl Conntrack {
    /// Calls `visit` with each record's key, shard by shard, holding the
    /// shard's lock for at most [`STEP`] calls at a time. `visit` may
    /// remove records (the one it is given, or others). `done` is called
    /// under the lock once a shard has been walked.
    pub(super) fn walk(
        &self,
        mut visit: impl FnMut(&mut Shard, u128),
        mut done: impl FnMut(&mut Shard),
    ) {
        let mut w = Walk::default();
        while self.walk_step(&mut w, &mut visit, &mut done) {}
    }

    /// One step of a walk: one hold of one shard's lock, at most [`STEP`]
    /// calls of `visit`. Returns false once every shard has been walked.
    /// (A caller that must not allocate under the lock makes room between
    /// steps, as `ct list` does.)
    pub(super) fn walk_step(
        &self,
        w: &mut Walk,
        visit: &mut impl FnMut(&mut Shard, u128),
        done: &mut impl FnMut(&mut Shard),
    ) -> bool {
        let Some(m) = self.shards.get(w.shard) else {
            return false;
        };
        let mut s = lock(m);
        let (mut records, mut slots) = (0, 0);
        while records < STEP && slots < STEP_SLOTS && w.next < s.keys.len() {
            let key = s.keys[w.next];
            w.next += 1;
            slots += 1;
            if key != HOLE {
                records += 1;
                visit(&mut s, key);
            }
        }
        if w.next >= s.keys.len() {
            done(&mut s);
            w.shard += 1;
            w.next = 0;
        }
        // A worker waiting for the shard gets it now: a plain unlock would
        // let the next step take it straight back.
        MutexGuard::unlock_fair(s);
        w.shard < self.shards.len()
    }
}
