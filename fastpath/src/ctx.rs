//! The one context every stage runs with: `stage::run(batch, &mut Ctx)`.
//!
//! A worker builds it once per batch from what it owns (pool, output
//! lists, learning, neighbour-resolution and flow-cache state) and what it
//! shares (the snapshot it loaded for this batch, its counters, the
//! conntrack table). Everything a stage may touch is here, so a stage's
//! signature never grows and the pipeline reads as a list of named calls.

use crate::counters::WorkerCounters;
use crate::l2::fdb::Learner;
use crate::l3::resolver::Resolver;
use crate::pool::FramePool;
use crate::services::conntrack::{Conntrack, FlowCache};
use crate::snapshot::Snapshot;
use crate::tx::Outputs;

/// See the module documentation.
pub struct Ctx<'a> {
    /// The configuration this batch sees, loaded once for the batch.
    pub snap: &'a Snapshot,
    /// The worker's frames.
    pub pool: &'a mut FramePool,
    /// Frames queued per output port.
    pub outputs: &'a mut Outputs,
    /// The worker's counters (drops by reason, per port).
    pub counters: &'a WorkerCounters,
    /// Reports of MAC addresses the snapshot does not know yet.
    pub learner: &'a mut Learner,
    /// Frames waiting for a neighbour, ARP/ND requests, the ICMP budget.
    pub resolver: &'a mut Resolver,
    /// The Service flows this worker saw lately.
    pub flows: &'a mut FlowCache,
    /// The Service connection table (shared by all workers).
    pub conntrack: &'a Conntrack,
    /// Milliseconds of the worker's clock, read once per batch.
    pub now: u64,
}

/// Owns everything a [`Ctx`] borrows, for stage unit tests.
#[cfg(test)]
pub(crate) struct TestParts {
    pub snap: Snapshot,
    pub pool: FramePool,
    pub outputs: Outputs,
    pub counters: WorkerCounters,
    pub learner: Learner,
    pub resolver: Resolver,
    pub flows: FlowCache,
    pub conntrack: Conntrack,
}

#[cfg(test)]
impl TestParts {
    pub fn new(frames: u32) -> Self {
        let (learn_tx, _) = crossbeam_channel::bounded(16);
        let (events_tx, _) = crossbeam_channel::bounded(16);
        TestParts {
            snap: Snapshot::default(),
            pool: FramePool::heap(frames),
            outputs: Outputs::new(),
            counters: WorkerCounters::new(),
            learner: Learner::new(learn_tx),
            resolver: Resolver::new(events_tx),
            flows: FlowCache::default(),
            conntrack: Conntrack::new(1024),
        }
    }

    pub fn cx(&mut self) -> Ctx<'_> {
        Ctx {
            snap: &self.snap,
            pool: &mut self.pool,
            outputs: &mut self.outputs,
            counters: &self.counters,
            learner: &mut self.learner,
            resolver: &mut self.resolver,
            flows: &mut self.flows,
            conntrack: &self.conntrack,
            now: 0,
        }
    }
}
