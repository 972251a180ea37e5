//! Looking inside the data plane while it runs (`vswitchctl capture`,
//! `vswitchctl trace`).
//!
//! - A [`Watch`] asks the workers for copies of the frames crossing one port
//!   (a capture) or for each stage's decision about the packets arriving on
//!   it (a live trace). The controller hands the same `Arc<Watch>` to every
//!   worker; a worker with no watch pays one `is_empty` test per batch.
//!   Records wait in a bounded queue (at most [`QUEUE_RECORDS`] records and
//!   [`QUEUE_BYTES`] bytes of copied frames and trace text) until the controller takes
//!   them: a reader that falls behind loses records, counted in `dropped`,
//!   and never slows a worker.
//! - [`inject`](inject::inject) runs one described frame through the
//!   current snapshot with scratch state, sending nothing.
//!
//! `describe` prints frames as one line, `filter` decides which frames a
//! watch keeps, `trace` runs a batch stage by stage and records what each
//! stage did.

pub mod build;
pub mod describe;
pub mod filter;
pub mod inject;
pub mod trace;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};

use crossbeam_queue::ArrayQueue;

use crate::PortId;
pub use filter::Filter;
pub use trace::Step;

/// Most records waiting in one watch's queue.
pub const QUEUE_RECORDS: usize = 16_384;
/// Most bytes of copied frames and trace text waiting in one watch's queue.
pub const QUEUE_BYTES: usize = 16 << 20;

/// What a watch records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchKind {
    /// Copies of frames, at most `snaplen` bytes of each.
    Capture { snaplen: u32 },
    /// Each stage's decision about packets arriving on the port.
    Trace,
}

/// Which way a captured frame crossed the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Received from the port.
    In,
    /// Queued by the switch to be sent on the port.
    Out,
}

/// A copy of a frame.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    pub dir: Dir,
    /// The frame's length (the copy may be shorter: the snap length).
    pub len: u32,
    pub data: Vec<u8>,
}

/// What the stages did with one packet.
#[derive(Debug, Clone)]
pub struct Traced {
    pub ts_ns: u64,
    /// The worker that handled it.
    pub worker: usize,
    /// The packet as it arrived.
    pub ingress: String,
    pub steps: Vec<Step>,
}

/// One record of a watch.
#[derive(Debug, Clone)]
pub enum Record {
    Frame(Captured),
    Trace(Traced),
}

impl Record {
    /// What the record holds on the heap, about.
    fn bytes(&self) -> usize {
        match self {
            Record::Frame(c) => c.data.len(),
            Record::Trace(t) => {
                t.ingress.len()
                    + t.steps
                        .iter()
                        .map(|s| {
                            std::mem::size_of::<Step>() + s.frame.as_ref().map_or(0, String::len)
                        })
                        .sum::<usize>()
            }
        }
    }
}

/// One capture or live trace (see the module documentation).
#[derive(Debug)]
pub struct Watch {
    pub id: u64,
    pub port: PortId,
    pub kind: WatchKind,
    /// Frames received from the port (captures and traces).
    pub rx: bool,
    /// Frames queued to be sent on the port (captures only).
    pub tx: bool,
    pub filter: Filter,
    queue: ArrayQueue<Record>,
    queued_bytes: AtomicUsize,
    /// Records still wanted (`u64::MAX`: no limit).
    left: AtomicU64,
    dropped: AtomicU64,
    stopped: AtomicBool,
    /// Records claimed and not yet queued: a watch has ended only when it
    /// wants no more records and none is on its way (see [`Watch::ended`]).
    pending: AtomicU64,
}

impl Watch {
    /// A watch that keeps at most `count` records (`None`: until stopped).
    pub fn new(
        id: u64,
        port: PortId,
        kind: WatchKind,
        rx: bool,
        tx: bool,
        filter: Filter,
        count: Option<u64>,
    ) -> Self {
        Watch {
            id,
            port,
            kind,
            rx,
            tx: tx && matches!(kind, WatchKind::Capture { .. }),
            filter,
            queue: ArrayQueue::new(QUEUE_RECORDS),
            queued_bytes: AtomicUsize::new(0),
            left: AtomicU64::new(count.unwrap_or(u64::MAX)),
            dropped: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            pending: AtomicU64::new(0),
        }
    }

    /// True while the watch still wants records.
    #[inline]
    pub fn active(&self) -> bool {
        !self.stopped.load(Relaxed) && self.left.load(Relaxed) > 0
    }

    /// True while the watch wants frames that leave through its port.
    #[inline]
    pub fn wants_tx(&self, port: crate::PortId) -> bool {
        self.port == port && self.tx
    }

    /// The watch wants no more records (the workers let go of it).
    pub fn stop(&self) {
        self.stopped.store(true, SeqCst);
    }

    /// True once the watch wants no more records and no worker is about to
    /// queue one: what is in the queue then is the last of it. (A worker
    /// announces a record in `pending` before it checks whether the watch
    /// still wants it, so a stop or the last claim seen here is never
    /// followed by a record this missed.)
    pub fn ended(&self) -> bool {
        !self.active() && self.pending.load(SeqCst) == 0
    }

    /// Records lost because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Whether a record of `bytes` copied bytes would fit now; counts it
    /// as dropped when it would not. Claims one of the records still
    /// wanted when it would.
    /// A claim that returns true must be followed by [`Watch::push`].
    pub(crate) fn claim(&self, bytes: usize) -> bool {
        self.pending.fetch_add(1, SeqCst);
        let ok = !self.stopped.load(SeqCst)
            && if self.queued_bytes.load(Relaxed) + bytes > QUEUE_BYTES || self.queue.is_full() {
                self.dropped.fetch_add(1, Relaxed);
                false
            } else {
                self.left
                    .fetch_update(SeqCst, SeqCst, |n| match n {
                        0 => None,
                        u64::MAX => Some(u64::MAX),
                        n => Some(n - 1),
                    })
                    .is_ok()
            };
        if !ok {
            self.pending.fetch_sub(1, SeqCst);
        }
        ok
    }

    /// Queues a record [claimed](Watch::claim) before (for a trace, with
    /// no bytes: its text is counted once it exists).
    pub(crate) fn push(&self, r: Record) {
        let bytes = r.bytes();
        self.queued_bytes.fetch_add(bytes, Relaxed);
        if self.queue.push(r).is_err() {
            self.queued_bytes.fetch_sub(bytes, Relaxed);
            self.dropped.fetch_add(1, Relaxed);
        }
        self.pending.fetch_sub(1, SeqCst);
    }

    /// Takes queued records, until about `max_bytes` of copied frames.
    pub fn take(&self, max_bytes: usize) -> Vec<Record> {
        let mut out = Vec::new();
        let mut bytes = 0;
        while bytes < max_bytes {
            let Some(r) = self.queue.pop() else { break };
            let b = r.bytes();
            self.queued_bytes.fetch_sub(b, Relaxed);
            bytes += b + 64;
            out.push(r);
        }
        out
    }

    /// True when nothing waits in the queue.
    pub fn drained(&self) -> bool {
        self.queue.is_empty()
    }
}

/// Wall-clock nanoseconds since the Unix epoch.
pub(crate) fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_and_the_count_is_kept() {
        let t = Watch::new(
            1,
            0,
            WatchKind::Capture { snaplen: 64 },
            true,
            true,
            Filter::default(),
            Some(2),
        );
        let rec = |n| {
            Record::Frame(Captured {
                ts_ns: 0,
                dir: Dir::In,
                len: n as u32,
                data: vec![0; n],
            })
        };
        assert!(t.claim(10));
        t.push(rec(10));
        assert!(t.claim(QUEUE_BYTES - 10));
        t.push(rec(QUEUE_BYTES - 10));
        assert!(!t.active(), "two records were wanted");
        assert!(!t.claim(1), "the byte budget is spent");
        assert_eq!(t.dropped(), 1);
        let got = t.take(usize::MAX);
        assert_eq!(got.len(), 2);
        assert!(t.drained());
        assert!(
            !t.claim(1) && t.dropped() == 1,
            "no more records are wanted"
        );
    }
}
