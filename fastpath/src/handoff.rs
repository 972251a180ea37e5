//! Moving frames to the worker that owns the output port.
//!
//! Each port is polled and transmitted on by exactly one worker. A frame
//! received by worker A for a port of worker B travels as a descriptor on a
//! bounded lock-free queue `A → B`; B copies the bytes from A's pool into
//! its own (the pools are separate UMEMs, so one copy is unavoidable) and
//! sends the address back on `B → A` so that A can free the frame.
//!
//! A bounds its frames in transit to B by the queue capacity, so the return
//! queue can never overflow.

use crossbeam_queue::ArrayQueue;

use crate::PortId;
use crate::pool::PoolView;

/// Frames in transit between one pair of workers.
pub const HANDOFF_DEPTH: usize = 512;

/// A frame handed to another worker.
#[derive(Debug, Clone, Copy)]
pub struct HandoffDesc {
    pub addr: u32,
    pub len: u32,
    /// Output port (owned by the receiving worker).
    pub port: PortId,
    /// Ingress port, for counting a drop.
    pub in_port: PortId,
}

/// The queues between every pair of workers.
pub struct Mesh {
    workers: usize,
    forward: Vec<ArrayQueue<HandoffDesc>>,
    back: Vec<ArrayQueue<u32>>,
    views: Vec<PoolView>,
}

impl Mesh {
    /// A mesh for workers whose pools are seen through `views` (index = worker id).
    pub fn new(views: Vec<PoolView>) -> Self {
        let n = views.len();
        let cap = if n > 1 { HANDOFF_DEPTH } else { 1 };
        Mesh {
            workers: n,
            forward: (0..n * n).map(|_| ArrayQueue::new(cap)).collect(),
            back: (0..n * n).map(|_| ArrayQueue::new(cap)).collect(),
            views,
        }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Queue of frames from `src` to `dst`.
    #[inline]
    pub fn forward(&self, src: usize, dst: usize) -> &ArrayQueue<HandoffDesc> {
        &self.forward[src * self.workers + dst]
    }

    /// Queue of addresses `dst` returns to `src`.
    #[inline]
    pub fn back(&self, src: usize, dst: usize) -> &ArrayQueue<u32> {
        &self.back[src * self.workers + dst]
    }

    /// Read access to worker `w`'s pool.
    #[inline]
    pub fn view(&self, w: usize) -> &PoolView {
        &self.views[w]
    }
}
