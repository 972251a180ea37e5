//! Batched TAP I/O: one io_uring_enter(2) per burst instead of a read(2) or
//! write(2) per frame. On this project's 2-vCPU VM a syscall is most of the
//! cost of a small frame: in a scratch micro-benchmark with batches of 32
//! (a burst here is up to 64), a 64-byte frame's write took 2.2 µs instead
//! of 3.2 and its read 1.4 µs instead of 2.0 (BENCHMARKS.md, "TAP I/O").
//!
//! Every request carries `RWF_NOWAIT`: the kernel performs it while the
//! submission runs or fails it with EAGAIN, never parks it to wait for the
//! device, so the frames a burst names are the worker's again when the
//! burst returns ([`Uring::run`] collects every completion before it does).
//! When io_uring_enter(2) itself fails, requests may be left unsubmitted
//! in the queue: the port then drops the ring, so they never run, and
//! moves frames with syscalls from then on ([`Failure::Refused`]), as it
//! does when the kernel refuses io_uring or `RWF_NOWAIT` on a TAP at
//! creation (io_uring before Linux 5.18, TAP `RWF_NOWAIT` before 6.4).

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use io_uring::{IoUring, opcode, types};

use super::{Iov, ReadSlot, TapPort};
use crate::batch::BATCH_SIZE;
use crate::pool::FramePool;
use crate::port::RxFrame;
use crate::tx::TxFrame;

/// Requests per submission: a worker batch.
const DEPTH: usize = BATCH_SIZE;
/// A result no completion has filled in.
const PENDING: i32 = i32::MIN;
/// Submissions tried again while the kernel is short of resources.
const SHORT_RETRIES: u32 = 8;

/// Why a port must stop using its ring.
#[derive(Debug)]
pub(super) enum Failure {
    /// The kernel refused the ring or these requests: syscalls from now on.
    Refused(io::Error),
    /// The device failed.
    Gone(io::Error),
}

/// Where a transmission stopped.
#[derive(Debug)]
pub(super) enum TxEnd {
    /// Every frame was sent, or the device took no more (queue full, link
    /// down): the caller drops the rest.
    Done,
    /// The ring failed or was refused; the frames from the count on were
    /// not tried: syscalls from now on.
    Refused(io::Error),
    /// The device failed.
    Gone(io::Error),
}

/// A TAP port's ring and the places its requests point at.
pub(super) struct Uring {
    ring: IoUring,
    /// Reads to post in the next receive burst: doubles while every read
    /// finds a frame, falls to one more than the last burst found.
    window: usize,
    slots: [ReadSlot; DEPTH],
    iovs: [[Iov; 2]; DEPTH],
    results: [i32; DEPTH],
}

impl Uring {
    /// A ring for TAP device `fd`, once the kernel has shown it takes
    /// `RWF_NOWAIT` requests on it.
    pub(super) fn new(fd: RawFd) -> io::Result<Self> {
        // SUBMIT_ALL: a request the kernel cannot prepare fails alone (its
        // completion says why) instead of leaving the ones after it queued
        // for a later submission.
        let probe = [0u8; 1];
        let ring = IoUring::builder().setup_submit_all().build(DEPTH as u32)?;
        let mut u = Uring {
            ring,
            window: 1,
            slots: [ReadSlot::default(); DEPTH],
            iovs: [[Iov::default(); 2]; DEPTH],
            results: [PENDING; DEPTH],
        };
        // An empty write: the TAP refuses it (EINVAL: shorter than a
        // header) before it allocates or counts anything, but only after
        // the kernel has taken RWF_NOWAIT, which it refuses (EOPNOTSUPP) for
        // files that do not support it.
        let sqe = opcode::Write::new(types::Fd(fd), probe.as_ptr(), 0)
            .rw_flags(libc::RWF_NOWAIT)
            .build()
            .user_data(0);
        // SAFETY: the request reads nothing; `run` collects its completion
        // (or the ring, declared after `probe`, is dropped first).
        unsafe { u.ring.submission().push(&sqe) }
            .map_err(|_| io::Error::other("io_uring queue full"))?;
        u.run(1)?;
        if u.results[0] == -libc::EOPNOTSUPP {
            return Err(io::Error::other(
                "the kernel does not take RWF_NOWAIT requests on a TAP (Linux 6.4 does)",
            ));
        }
        Ok(u)
    }

    /// Submits the `n` requests queued (user data: their index) and
    /// collects every completion's result into `results`; a request that
    /// did not run keeps [`PENDING`]. EINTR, and a few times a shortage
    /// (EAGAIN, EBUSY, ENOMEM), are tried again; any other error is the
    /// ring's (the device's come in the results): the caller must drop
    /// the ring.
    fn run(&mut self, n: usize) -> Result<(), io::Error> {
        self.results[..n].fill(PENDING);
        let mut seen = 0;
        let mut failed = None;
        let mut short = 0;
        while seen < n && failed.is_none() {
            if let Err(e) = self.ring.submit_and_wait(n - seen) {
                match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EAGAIN | libc::EBUSY | libc::ENOMEM) if short < SHORT_RETRIES => {
                        short += 1;
                    }
                    _ => failed = Some(e),
                }
            }
            for c in self.ring.completion() {
                if let Some(r) = usize::try_from(c.user_data())
                    .ok()
                    .filter(|&i| i < n)
                    .and_then(|i| self.results.get_mut(i))
                {
                    *r = c.result();
                    seen += 1;
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Receives up to `out.len()` frames with one submission of reads.
    /// Returns how many it received (in `out`, in the device's order) and
    /// whether the port must stop using the ring.
    pub(super) fn rx(
        &mut self,
        port: &TapPort,
        pool: &mut FramePool,
        out: &mut [RxFrame],
    ) -> (usize, Option<Failure>) {
        let want = self.window.min(out.len()).min(DEPTH);
        let fd = types::Fd(port.fd.as_raw_fd());
        let mut k = 0;
        while k < want {
            let Some((slot, iov, count)) = port.read_slot(pool) else {
                break;
            };
            self.slots[k] = slot;
            self.iovs[k] = iov;
            let sqe = opcode::Readv::new(fd, self.iovs[k].as_ptr().cast(), count as u32)
                .rw_flags(libc::RWF_NOWAIT)
                .build()
                .user_data(k as u64);
            // SAFETY: the iovecs (`Iov` has `libc::iovec`'s layout) live in
            // `self` and describe frames the worker holds; both stay as they
            // are until `run` below has collected the request's completion,
            // or the ring is dropped unsubmitted.
            if unsafe { self.ring.submission().push(&sqe) }.is_err() {
                TapPort::release(pool, slot, port.vnet);
                break;
            }
            k += 1;
        }
        if k == 0 {
            return (0, None);
        }
        let mut failure = self.run(k).err().map(Failure::Refused);
        let mut n = 0;
        for j in 0..k {
            let (slot, r) = (self.slots[j], self.results[j]);
            if let Ok(len) = usize::try_from(r) {
                out[n] = port.take_read(pool, slot, len);
                n += 1;
                continue;
            }
            TapPort::release(pool, slot, port.vnet);
            let e = io::Error::from_raw_os_error(r.saturating_neg());
            match r {
                PENDING => {}
                r if r == -libc::EAGAIN || r == -libc::EINTR => {}
                r if r == -libc::EOPNOTSUPP => {
                    failure.get_or_insert(Failure::Refused(e));
                }
                // The device's failure decides, whatever the ring's.
                _ => failure = Some(Failure::Gone(e)),
            }
        }
        self.window = if n == want {
            (want * 2).min(DEPTH)
        } else {
            (n + 1).min(DEPTH)
        };
        (n, failure)
    }

    /// Transmits a prefix of `frames` with one submission of writes per
    /// `DEPTH` frames; returns its length (those frames are sent and freed,
    /// the caller holds the rest) and why it stopped short, if it did.
    pub(super) fn tx(
        &mut self,
        port: &mut TapPort,
        pool: &mut FramePool,
        frames: &[TxFrame],
    ) -> (usize, TxEnd) {
        let fd = types::Fd(port.fd.as_raw_fd());
        let mut done = 0;
        while done < frames.len() {
            let end = frames.len().min(done + DEPTH);
            let mut k = 0;
            // Frames not held (skipped: a no-op request keeps each result at
            // its frame's index).
            let mut skipped = [false; DEPTH];
            for (i, f) in frames[done..end].iter().enumerate() {
                let sqe = match port.write_span(pool, f) {
                    Some((p, len)) => opcode::Write::new(fd, p as *const u8, len as u32)
                        .rw_flags(libc::RWF_NOWAIT)
                        .build(),
                    None => {
                        skipped[i] = true;
                        opcode::Nop::new().build()
                    }
                }
                .user_data(i as u64);
                // SAFETY: the frame is held by the worker and stays as it is
                // until `run` below has collected the request's completion,
                // or the ring is dropped unsubmitted.
                if unsafe { self.ring.submission().push(&sqe) }.is_err() {
                    break;
                }
                k += 1;
            }
            let ran = self.run(k);
            for (i, f) in frames[done..done + k].iter().enumerate() {
                let r = self.results[i];
                if skipped[i] {
                    continue;
                }
                if r >= 0 {
                    pool.free(f.addr);
                    port.link_down = false;
                    continue;
                }
                // The device did not take this frame. Frames after it in
                // this submission may have been written (only a queue
                // running full or the link going down in between would do
                // that): the caller frees them with the rest and counts
                // them as not sent.
                let sent = done + i;
                let e = io::Error::from_raw_os_error(r.saturating_neg());
                return match r {
                    // Not submitted (the ring failed): syscalls go on from here.
                    PENDING => (sent, TxEnd::Refused(ran.err().unwrap_or(e))),
                    r if r == -libc::EOPNOTSUPP => (sent, TxEnd::Refused(e)),
                    r if r == -libc::EAGAIN || r == -libc::ENOBUFS || r == -libc::EINTR => {
                        (sent, TxEnd::Done)
                    }
                    r if r == -libc::EIO => {
                        port.link_down = true;
                        (sent, TxEnd::Done)
                    }
                    _ => (sent, TxEnd::Gone(e)),
                };
            }
            done += k;
            if let Err(e) = ran {
                return (done, TxEnd::Refused(e));
            }
            if k == 0 {
                return (done, TxEnd::Done);
            }
        }
        (done, TxEnd::Done)
    }
}
