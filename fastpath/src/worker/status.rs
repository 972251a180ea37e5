//! What a worker publishes about itself for the controller: liveness,
//! activity and pool accounting.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::Worker;

/// What a worker publishes about itself (written by the worker, read by the controller).
#[derive(Default)]
pub struct WorkerStatus {
    pub loops: AtomicU64,
    /// Loops that moved at least one frame, and loops that did not (each
    /// only grows: a reader of both never sees either go down).
    pub busy_loops: AtomicU64,
    pub idle_loops: AtomicU64,
    /// Receive bursts that brought frames, and the frames they brought
    /// (their ratio: the mean batch size).
    pub bursts: AtomicU64,
    pub burst_frames: AtomicU64,
    pub frames_total: AtomicU64,
    pub frames_free: AtomicU64,
    pub frames_in_rings: AtomicU64,
    pub frames_in_flight: AtomicU64,
    pub frame_errors: AtomicU64,
    pub learn_overflows: AtomicU64,
}

impl Worker {
    /// Publishes pool accounting and liveness for the controller.
    pub fn publish_status(&self) {
        let c = self.pool.counts();
        let s = &self.status;
        s.loops.store(self.loops, Relaxed);
        s.busy_loops.store(self.activity[0], Relaxed);
        s.idle_loops.store(self.loops - self.activity[0], Relaxed);
        s.bursts.store(self.activity[1], Relaxed);
        s.burst_frames.store(self.activity[2], Relaxed);
        s.frames_total.store(u64::from(c.total), Relaxed);
        s.frames_free.store(u64::from(c.free), Relaxed);
        s.frames_in_rings.store(u64::from(c.lent), Relaxed);
        s.frames_in_flight
            .store(u64::from(c.worker + c.handoff), Relaxed);
        s.frame_errors.store(c.errors, Relaxed);
        s.learn_overflows.store(self.learner.overflows, Relaxed);
    }
}
