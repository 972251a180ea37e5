//! Batched TAP I/O: one io_uring_enter(2) per burst instead of a read(2) or
//! write(2) per frame. On this project's 2-vCPU VM a syscall is most of the
//! cost of a small frame: in batches of 32, a 64-byte frame's write took
//! 2.2 µs instead of 3.2 and its read 1.4 µs instead of 2.0 (BENCHMARKS.md,
//! "TAP I/O").
//!
//! Every request carries `RWF_NOWAIT`: the kernel performs it while the
//! submission runs or fails it with EAGAIN, never parks it to wait for the
//! device, so the frames a burst names are the worker's again when the
//! burst returns ([`Uring::run`] collects every completion before it does).
//! A kernel that refuses io_uring or `RWF_NOWAIT` on a TAP turns the port to
//! one syscall per frame ([`Failure::Refused`]).

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
/// Submissions retried while the kernel is short of resources.
const RETRIES: u32 = 16;

/// Why a burst did not go through io_uring.
#[derive(Debug)]
pub(super) enum Failure {
    /// The kernel refuses these requests: use syscalls from now on.
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
        let ring = IoUring::builder().setup_submit_all().build(DEPTH as u32)?;
        let mut u = Uring {
            ring,
            window: 1,
            slots: [ReadSlot::default(); DEPTH],
            iovs: [[Iov::default(); 2]; DEPTH],
            results: [PENDING; DEPTH],
        };
        // An empty write: the TAP refuses it (EINVAL, or EIO while down)
        // without counting anything, but only after the kernel has taken
        // RWF_NOWAIT, which it refuses (EOPNOTSUPP) for files without it.
        let probe = [0u8; 1];
        let sqe = opcode::Write::new(types::Fd(fd), probe.as_ptr(), 0)
            .rw_flags(libc::RWF_NOWAIT)
            .build()
            .user_data(0);
        // SAFETY: the request reads nothing; `run` collects its completion
        // before `probe` goes away.
        unsafe { u.ring.submission().push(&sqe) }
            .map_err(|_| io::Error::other("io_uring queue full"))?;
        match u.run(1) {
            Err(Failure::Refused(e) | Failure::Gone(e)) => Err(e),
            Ok(()) if u.results[0] == -libc::EOPNOTSUPP => Err(io::Error::other(
                "the kernel does not take RWF_NOWAIT requests on a TAP",
            )),
            Ok(()) => Ok(u),
        }
    }

    /// Submits the `n` requests queued (user data: their index) and
    /// collects every completion's result into `results`.
    fn run(&mut self, n: usize) -> Result<(), Failure> {
        self.results[..n].fill(PENDING);
        let mut seen = 0;
        let mut retries = 0;
        while seen < n {
            if let Err(e) = self.ring.submit_and_wait(n - seen) {
                match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EAGAIN | libc::EBUSY) if retries < RETRIES => retries += 1,
                    Some(libc::EOPNOTSUPP | libc::EPERM | libc::ENOSYS) => {
                        return Err(Failure::Refused(e));
                    }
                    _ => return Err(Failure::Gone(e)),
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
        Ok(())
    }

    /// Receives up to `out.len()` frames with one submission of reads.
    pub(super) fn rx(
        &mut self,
        port: &TapPort,
        pool: &mut FramePool,
        out: &mut [RxFrame],
    ) -> Result<usize, Failure> {
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
            // are until `run` below has collected the request's completion.
            if unsafe { self.ring.submission().push(&sqe) }.is_err() {
                TapPort::release(pool, slot, port.vnet);
                break;
            }
            k += 1;
        }
        if k == 0 {
            return Ok(0);
        }
        let ran = self.run(k);
        let refused = |r: i32| r == -libc::EOPNOTSUPP;
        let hard = |r: i32| r < 0 && r != -libc::EAGAIN && r != -libc::EINTR;
        let failure = match ran {
            Err(f) => Some(f),
            Ok(()) => self.results[..k].iter().find(|&&r| hard(r)).map(|&r| {
                let e = io::Error::from_raw_os_error(-r);
                if refused(r) {
                    Failure::Refused(e)
                } else {
                    Failure::Gone(e)
                }
            }),
        };
        if let Some(f) = failure {
            for &slot in &self.slots[..k] {
                TapPort::release(pool, slot, port.vnet);
            }
            return Err(f);
        }
        let mut n = 0;
        for j in 0..k {
            let (slot, r) = (self.slots[j], self.results[j]);
            match usize::try_from(r) {
                Ok(len) => {
                    out[n] = port.take_read(pool, slot, len);
                    n += 1;
                }
                Err(_) => TapPort::release(pool, slot, port.vnet),
            }
        }
        self.window = if n == want {
            (want * 2).min(DEPTH)
        } else {
            (n + 1).min(DEPTH)
        };
        Ok(n)
    }

    /// Transmits a prefix of `frames` with one submission of writes per
    /// `DEPTH` frames and returns its length, like [`super::Port::tx_burst`].
    /// On a failure, the frames before it are sent (and freed) and the
    /// caller still holds the rest: the count comes with the failure.
    pub(super) fn tx(
        &mut self,
        port: &mut TapPort,
        pool: &mut FramePool,
        frames: &[TxFrame],
    ) -> Result<usize, (usize, Failure)> {
        let fd = types::Fd(port.fd.as_raw_fd());
        let mut done = 0;
        while done < frames.len() {
            let end = frames.len().min(done + DEPTH);
            let mut k = 0;
            for (i, f) in frames[done..end].iter().enumerate() {
                let (p, len) = port.write_span(pool, f);
                let sqe = opcode::Write::new(fd, p as *const u8, len as u32)
                    .rw_flags(libc::RWF_NOWAIT)
                    .build()
                    .user_data(i as u64);
                // SAFETY: the frame is held by the worker and stays as it is
                // until `run` below has collected the request's completion.
                if unsafe { self.ring.submission().push(&sqe) }.is_err() {
                    break;
                }
                k += 1;
            }
            self.run(k).map_err(|f| (done, f))?;
            for (i, f) in frames[done..done + k].iter().enumerate() {
                let r = self.results[i];
                if r >= 0 {
                    pool.free(f.addr);
                    port.link_down = false;
                    continue;
                }
                // The device did not take this frame. Frames after it in
                // this submission may have been written (only a queue
                // running full or the link going down in between would
                // do that): the caller frees them with the rest and counts
                // them as not sent.
                let sent = done + i;
                return match -r {
                    libc::EAGAIN | libc::ENOBUFS | libc::EINTR => Ok(sent),
                    libc::EIO => {
                        port.link_down = true;
                        Ok(sent)
                    }
                    libc::EOPNOTSUPP if i == 0 => Err((
                        sent,
                        Failure::Refused(io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
                    )),
                    e => Err((sent, Failure::Gone(io::Error::from_raw_os_error(e)))),
                };
            }
            done += k;
            if k == 0 {
                break;
            }
        }
        Ok(done)
    }
}
