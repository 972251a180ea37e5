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
//!
//! A worker in adaptive mode may be asleep in poll(2) on its ports when
//! frames are handed to it: each worker has an eventfd in its poll set, and
//! a sender that sees the `sleeping` flag writes to it. The flag and the
//! queue are checked in opposite orders on each side, with a full fence in
//! between (the Dekker pattern), so a wakeup cannot be lost.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering, fence};

use crossbeam_queue::ArrayQueue;

use crate::PortId;
use crate::gso::Gso;
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
    /// A GSO frame, for a port that takes it whole.
    pub gso: Gso,
}

/// The queues between every pair of workers.
pub struct Mesh {
    workers: usize,
    forward: Vec<ArrayQueue<HandoffDesc>>,
    back: Vec<ArrayQueue<u32>>,
    views: Vec<PoolView>,
    wakers: Vec<Waker>,
}

/// How to wake one sleeping worker.
pub struct Waker {
    fd: Option<OwnedFd>,
    sleeping: AtomicBool,
}

impl Waker {
    fn new() -> Self {
        // SAFETY: plain eventfd(2) call; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        // SAFETY: `fd` is a fresh descriptor that we own.
        let fd = (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) });
        Waker {
            fd,
            sleeping: AtomicBool::new(false),
        }
    }

    /// The descriptor the worker adds to its poll set.
    pub fn fd(&self) -> Option<RawFd> {
        self.fd.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Called by the worker before it sleeps; afterwards it must look at its
    /// queues once more before calling poll(2).
    pub fn going_to_sleep(&self) {
        self.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Called by the worker when it wakes: clears the flag and the eventfd.
    pub fn woke(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
        if let Some(fd) = &self.fd {
            let mut buf = 0u64;
            // SAFETY: reads 8 bytes into `buf` from our non-blocking eventfd.
            unsafe { libc::read(fd.as_raw_fd(), (&mut buf as *mut u64).cast(), 8) };
        }
    }

    /// Called by a sender after it queued frames for this worker.
    pub fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed)
            && let Some(fd) = &self.fd
        {
            let one = 1u64;
            // SAFETY: writes 8 bytes from `one` to our eventfd.
            unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }
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
            wakers: (0..n).map(|_| Waker::new()).collect(),
            views,
        }
    }

    /// The waker of worker `w`.
    #[inline]
    pub fn waker(&self, w: usize) -> &Waker {
        &self.wakers[w]
    }

    /// True when some worker has frames waiting for `dst`.
    pub fn has_frames_for(&self, dst: usize) -> bool {
        (0..self.workers).any(|src| src != dst && !self.forward(src, dst).is_empty())
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
