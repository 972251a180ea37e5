//! The stages in order, as a few named calls per batch.

use crate::batch::Batch;
use crate::counters::WorkerCounters;
use crate::pool::FramePool;
use crate::snapshot::Snapshot;
use crate::stage::learn::Learner;
use crate::stage::output::Outputs;
use crate::stage::{forward, learn, output, parse};

/// Runs one batch from one ingress port through the L2 pipeline. Afterwards
/// every frame of the batch is either queued in `outputs` or freed and
/// counted as a drop.
#[inline]
pub fn process(
    batch: &mut Batch,
    snap: &Snapshot,
    pool: &mut FramePool,
    learner: &mut Learner,
    outputs: &mut Outputs,
    counters: &WorkerCounters,
    now: u64,
) {
    parse::run(batch, pool);
    learn::run(batch, snap, learner, now);
    forward::run(batch, snap);
    output::run(batch, snap, pool, outputs, counters);
    batch.clear();
}
