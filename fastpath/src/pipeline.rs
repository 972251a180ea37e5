//! The stages in order, as a few named calls per batch.

use crate::batch::Batch;
use crate::conntrack::Conntrack;
use crate::counters::WorkerCounters;
use crate::pool::FramePool;
use crate::router::Router;
use crate::snapshot::Snapshot;
use crate::stage::learn::Learner;
use crate::stage::output::Outputs;
use crate::stage::route::RouteCtx;
use crate::stage::{arp, forward, learn, nd, output, parse, route, security, service};

/// Runs one batch through the pipeline. Afterwards every frame of the batch
/// is queued in `outputs`, held by the router (waiting for a neighbour), or
/// freed (counted as a drop unless the switch itself consumed it).
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn process(
    batch: &mut Batch,
    snap: &Snapshot,
    pool: &mut FramePool,
    learner: &mut Learner,
    router: &mut Router,
    outputs: &mut Outputs,
    counters: &WorkerCounters,
    conntrack: &Conntrack,
    now: u64,
) {
    parse::run(batch, pool);
    security::run(batch, snap, pool);
    learn::run(batch, snap, learner, now);
    arp::run(batch, snap, pool, router, now);
    nd::run(batch, snap, pool, router, now);
    let mut cx = RouteCtx {
        snap,
        pool,
        outputs,
        counters,
        router,
        conntrack,
        now,
        from_tunnel: false,
    };
    service::run(batch, &mut cx);
    route::run(batch, &mut cx);
    let RouteCtx { pool, outputs, .. } = cx;
    forward::run(batch, snap);
    output::run(batch, snap, pool, outputs, counters);
    batch.clear();
}
