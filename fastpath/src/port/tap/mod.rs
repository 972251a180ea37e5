//! TAP ports: a TAP device created by the switch.
//!
//! The device can be created directly inside a pod's network namespace under
//! the pod's interface name, so a pod needs no veth. Frames are read into and
//! written from the worker's pool frames: the kernel's copy is the only one.
//! A burst is one io_uring submission ([`uring`]) where the kernel allows it,
//! else one read(2)/write(2) per frame ([`TapIo::Syscalls`]).
//!
//! With offloads (the default), every frame is preceded by a
//! `virtio_net_hdr` and the device may hand over GSO frames of up to 64 KiB
//! with partial checksums ([`crate::gso`]): the header goes in the frame's
//! headroom, and a frame longer than a regular frame spills into a big one
//! (one readv(2) into both), so nothing is copied for the common sizes.

mod uring;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::{Port, PortGone, PortMode, RxFrame};
use crate::gso::{VNET_HDR_LEN, VnetHdr};
use crate::pool::{BIG_CAPACITY, FRAME_CAPACITY, FramePool};
use crate::sys;
use crate::tx::TxFrame;

const HDR: u32 = VNET_HDR_LEN as u32;

/// How a TAP port moves its frames (`vswitchd --tap-io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TapIo {
    /// One io_uring submission per burst; one syscall per frame where the
    /// kernel refuses io_uring.
    #[default]
    IoUring,
    /// One read(2)/write(2) per frame.
    Syscalls,
}

/// A TAP device owned by the switch; deleted when the port is dropped.
pub struct TapPort {
    fd: OwnedFd,
    /// This port created the device (rather than re-attaching to one).
    created: bool,
    /// The last write failed with EIO: the device is administratively down.
    link_down: bool,
    /// Frames carry a virtio-net header (offloads on).
    vnet: bool,
    /// Batched I/O; `None`: a syscall per frame.
    uring: Option<Box<uring::Uring>>,
    /// The device failed after part of a burst went through: reported by
    /// the next burst, so that this one can still count what it moved.
    failed: Option<io::Error>,
    /// The device's name, for the log.
    name: String,
}

/// Where one frame is read into: the regular frame `addr` and, with
/// offloads, the big frame `big` a longer frame spills into.
#[derive(Debug, Clone, Copy, Default)]
struct ReadSlot {
    addr: u32,
    big: u32,
}

/// The layout of `libc::iovec`, without its raw pointer (so the port stays
/// `Send`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct Iov {
    base: usize,
    len: usize,
}

const _: () = assert!(
    std::mem::size_of::<Iov>() == std::mem::size_of::<libc::iovec>()
        && std::mem::align_of::<Iov>() == std::mem::align_of::<libc::iovec>()
        && std::mem::offset_of!(Iov, len) == std::mem::offset_of!(libc::iovec, iov_len)
);

impl TapPort {
    /// Creates TAP device `ifname`, inside network namespace `netns` when
    /// given, sets its MAC (if given) and brings it up; with `offload`, the
    /// device passes checksum and segmentation offloads (see the module
    /// documentation). Returns one port per queue: with `queues` above 1
    /// the device is multi-queue (`IFF_MULTI_QUEUE`; the pod's stack
    /// spreads its flows over the queues), each queue a descriptor of its
    /// own that one worker serves.
    ///
    /// The device is made persistent, so that it outlives a restart of the
    /// daemon with its addresses and routes (the pod's network keeps its
    /// configuration, only the carrier drops meanwhile); a TAP of that name
    /// left by an earlier run is attached again (with the same number of
    /// queues). [`Port::on_remove`] clears the flag, so `port del` deletes
    /// the device.
    pub fn create(
        ifname: &str,
        netns: Option<&str>,
        mac: Option<[u8; 6]>,
        offload: bool,
        io: TapIo,
        queues: u16,
    ) -> io::Result<Vec<Self>> {
        if !sys::valid_ifname(ifname) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid interface name '{ifname}'"),
            ));
        }
        let name = ifname.to_string();
        let ns = netns.unwrap_or("").to_string();
        let multi = queues > 1;
        let make = move || -> io::Result<Vec<TapPort>> {
            let existed = sys::if_index(&name).is_some();
            // The kernel lets any number of descriptors attach to a
            // multi-queue TAP (it refuses only a single-queue one in use):
            // a running one (carrier up: some queue is attached, as ours
            // are not after a restart) belongs to another process.
            if existed
                && multi
                && sys::if_flags(&name).is_ok_and(|f| i32::from(f) & libc::IFF_RUNNING != 0)
            {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "TAP '{name}' is in use: its carrier is up, so another process holds its queues"
                    ),
                ));
            }
            let mut ports: Vec<TapPort> = Vec::with_capacity(usize::from(queues));
            for queue in 0..queues.max(1) {
                let fd = sys::tap_open(&name, offload, multi).map_err(|e| {
                    if queue > 0 {
                        io::Error::new(
                            e.kind(),
                            format!("cannot attach queue {queue} of TAP '{name}': {e}"),
                        )
                    } else if existed {
                        let mq = if multi { "multi-queue " } else { "" };
                        io::Error::new(
                            e.kind(),
                            format!(
                                "interface '{name}' exists and is not a free {mq}TAP device: {e}"
                            ),
                        )
                    } else {
                        io::Error::new(e.kind(), format!("cannot create TAP '{name}': {e}"))
                    }
                })?;
                let uring = match io {
                    TapIo::Syscalls => None,
                    TapIo::IoUring => match uring::Uring::new(fd.as_raw_fd()) {
                        Ok(u) => Some(Box::new(u)),
                        Err(e) => {
                            tracing::warn!(ifname = %name, netns = %ns, queue, "io_uring unavailable, one syscall per frame: {e}");
                            None
                        }
                    },
                };
                ports.push(TapPort {
                    fd,
                    created: !existed,
                    link_down: false,
                    vnet: offload,
                    uring,
                    failed: None,
                    name: name.clone(),
                });
            }
            if existed {
                tracing::info!(ifname = %name, netns = %ns, "attached to an existing TAP device");
            }
            // From here on, an error drops the ports before the persistent
            // flag is set, which deletes a device we created. Offloads are
            // set either way: a persistent TAP attached again keeps those
            // an earlier run gave it. Offloads and the flag are the
            // device's, whichever queue sets them.
            let first = ports[0].fd.as_raw_fd();
            let uso = sys::tap_set_offload(first, offload).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot set offloads on TAP '{name}': {e}"),
                )
            })?;
            tracing::debug!(ifname = %name, offload, uso, queues, "TAP offloads set");
            sys::configure_link(&name, mac)?;
            // Only once the device is fully set up.
            sys::set_tap_persist(first, true)?;
            Ok(ports)
        };
        match netns {
            Some(ns) => sys::in_netns(ns, make),
            None => make(),
        }
    }

    /// The I/O this port uses now (io_uring falls back to syscalls for good
    /// when the kernel refuses its requests).
    pub fn io(&self) -> TapIo {
        if self.uring.is_some() {
            TapIo::IoUring
        } else {
            TapIo::Syscalls
        }
    }

    /// Takes the frames one read needs (a big frame too with offloads) and
    /// says where the read goes; `None` when the pool is out of them.
    fn read_slot(&self, pool: &mut FramePool) -> Option<(ReadSlot, [Iov; 2], usize)> {
        let addr = pool.alloc()?;
        if !self.vnet {
            let Some((p, l)) = pool.raw_span(addr, 0, FRAME_CAPACITY) else {
                pool.free(addr);
                return None;
            };
            let iov = [
                Iov {
                    base: p as usize,
                    len: l,
                },
                Iov::default(),
            ];
            return Some((ReadSlot { addr, big: 0 }, iov, 1));
        }
        let Some(big) = pool.alloc_big() else {
            pool.free(addr);
            return None;
        };
        let spans =
            pool.raw_span(addr, HDR, FRAME_CAPACITY)
                .zip(pool.raw_span(big, 0, BIG_CAPACITY));
        let Some(((p0, l0), (p1, l1))) = spans else {
            pool.free(addr);
            pool.free(big);
            return None;
        };
        let skip = FRAME_CAPACITY as usize;
        // The header and a regular frame's worth into `addr`, the rest into
        // the big frame after the place the start will be copied to.
        let iov = [
            Iov {
                base: p0 as usize,
                len: l0,
            },
            Iov {
                base: p1 as usize + skip,
                len: l1 - skip,
            },
        ];
        Some((ReadSlot { addr, big }, iov, 2))
    }

    /// The frame a read of `n` bytes into `slot` produced (its header
    /// applied, moved into the big frame when longer than a regular one);
    /// frees what it does not use.
    fn take_read(&self, pool: &mut FramePool, slot: ReadSlot, n: usize) -> RxFrame {
        if !self.vnet {
            // A longer frame than the buffer was cut by the kernel, which
            // still reports its whole length: the parse stage drops it as
            // `malformed`.
            return RxFrame::new(slot.addr, n as u32);
        }
        let len = (n as u32).saturating_sub(HDR);
        let frame =
            if len > FRAME_CAPACITY && pool.copy_into(slot.addr, slot.big, HDR, FRAME_CAPACITY) {
                pool.free(slot.addr);
                slot.big
            } else {
                // Fits a regular frame (else, never: the copy failed, and the
                // frame, cut short, is dropped by the parse stage).
                pool.free(slot.big);
                slot.addr
            };
        let hdr = VnetHdr::read(pool.with_headroom_mut(frame, HDR, 0)).unwrap_or_default();
        let gso = hdr.accept(pool.data_mut(frame, len));
        RxFrame {
            addr: frame,
            len,
            gso,
        }
    }

    /// Returns a slot's frames to the pool (nothing was read).
    fn release(pool: &mut FramePool, slot: ReadSlot, vnet: bool) {
        pool.free(slot.addr);
        if vnet {
            pool.free(slot.big);
        }
    }

    /// Puts the frame's virtio-net header (with offloads) in its headroom
    /// and says what to write; `None` (counted as a pool error) for a frame
    /// the worker does not hold, which is skipped: not written, not freed.
    fn write_span(&self, pool: &mut FramePool, f: &TxFrame) -> Option<(usize, usize)> {
        if !pool.holds(f.addr) {
            pool.error();
            return None;
        }
        let front = if self.vnet {
            // A header the frame's own headers cannot give (they were
            // checked when it arrived) degrades to "nothing to do".
            let hdr = VnetHdr::for_frame(pool.data(f.addr, f.len), f.gso).unwrap_or_default();
            hdr.write(pool.with_headroom_mut(f.addr, HDR, 0));
            HDR
        } else {
            // No header to ask the kernel with: a partial checksum (the
            // output step completes those first) is completed here.
            if f.gso.is_partial() {
                crate::gso::complete(pool.data_mut(f.addr, f.len), f.gso);
            }
            0
        };
        let buf = pool.with_headroom_mut(f.addr, front, f.len);
        Some((buf.as_ptr() as usize, buf.len()))
    }

    fn rx_syscalls(
        &mut self,
        pool: &mut FramePool,
        out: &mut [RxFrame],
    ) -> Result<usize, PortGone> {
        let mut n = 0;
        while n < out.len() {
            let Some((slot, iov, count)) = self.read_slot(pool) else {
                break;
            };
            // SAFETY: the iovecs describe writable bytes of frames the
            // worker holds (nothing else touches them meanwhile); `Iov` has
            // `libc::iovec`'s layout, and the array outlives the call.
            let r = unsafe {
                libc::readv(
                    self.fd.as_raw_fd(),
                    iov.as_ptr().cast::<libc::iovec>(),
                    count as i32,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                Self::release(pool, slot, self.vnet);
                match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => break,
                    _ => return self.fail(n, e),
                }
            }
            out[n] = self.take_read(pool, slot, r as usize);
            n += 1;
        }
        Ok(n)
    }

    /// Writes a prefix of `frames` with a syscall each; `before` frames of
    /// this burst went out already.
    fn tx_syscalls(
        &mut self,
        pool: &mut FramePool,
        frames: &[TxFrame],
        before: usize,
    ) -> Result<usize, PortGone> {
        for (i, f) in frames.iter().enumerate() {
            let Some((p, len)) = self.write_span(pool, f) else {
                continue;
            };
            // SAFETY: `p` is readable for `len` bytes (a frame the worker
            // holds) during the call.
            let r = unsafe { libc::write(self.fd.as_raw_fd(), p as *const libc::c_void, len) };
            if r >= 0 {
                pool.free(f.addr);
                self.link_down = false;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // Queue full, or the device is administratively down:
                // the rest of the burst is dropped by the caller.
                Some(libc::EAGAIN | libc::ENOBUFS | libc::EINTR) => {}
                Some(libc::EIO) => self.link_down = true,
                _ => return self.fail(before + i, e),
            }
            return Ok(before + i);
        }
        Ok(before + frames.len())
    }

    /// The device failed after `done` frames of this burst: report those,
    /// and the failure with the next burst (a burst that moved nothing
    /// fails at once).
    fn fail(&mut self, done: usize, e: io::Error) -> Result<usize, PortGone> {
        if done == 0 {
            return Err(gone(e));
        }
        self.failed = Some(e);
        Ok(done)
    }

    /// The ring failed: a syscall per frame from now on (`port list` still
    /// shows the I/O the port opened with; the log says when it changed).
    fn uring_refused(&mut self, e: &io::Error) {
        tracing::warn!(ifname = %self.name, "io_uring failed, one syscall per frame from now on: {e}");
        self.uring = None;
    }
}

fn gone(e: io::Error) -> PortGone {
    PortGone(format!("TAP device failed: {e}"))
}

impl Port for TapPort {
    fn rx_burst(&mut self, pool: &mut FramePool, out: &mut [RxFrame]) -> Result<usize, PortGone> {
        if let Some(e) = self.failed.take() {
            return Err(gone(e));
        }
        if out.is_empty() {
            return Ok(0);
        }
        if let Some(mut u) = self.uring.take() {
            // The first frame with a syscall: an idle port costs a read(2)
            // that finds nothing, half a submission's cost (measured: 0.65
            // against 1.3 µs); the rest of the burst with one submission.
            let first = self.rx_syscalls(pool, &mut out[..1]);
            if !matches!(first, Ok(1)) || out.len() == 1 || self.failed.is_some() {
                self.uring = Some(u);
                return first;
            }
            let (n, failure) = u.rx(self, pool, &mut out[1..]);
            let n = n + 1;
            match failure {
                None => {
                    self.uring = Some(u);
                    return Ok(n);
                }
                // The ring is dropped here either way: requests it may
                // still hold unsubmitted never run.
                Some(uring::Failure::Refused(e)) => {
                    self.uring_refused(&e);
                    return Ok(n);
                }
                Some(uring::Failure::Gone(e)) => return self.fail(n, e),
            }
        }
        self.rx_syscalls(pool, out)
    }

    fn tx_burst(&mut self, pool: &mut FramePool, frames: &[TxFrame]) -> Result<usize, PortGone> {
        if let Some(e) = self.failed.take() {
            return Err(gone(e));
        }
        let mut sent = 0;
        // While the link is down, a syscall finds out at the first frame
        // instead of a submission copying a whole burst to be refused.
        if !self.link_down
            && let Some(mut u) = self.uring.take()
        {
            let (n, end) = u.tx(self, pool, frames);
            match end {
                uring::TxEnd::Done => {
                    self.uring = Some(u);
                    return Ok(n);
                }
                uring::TxEnd::Refused(e) => {
                    self.uring_refused(&e);
                    sent = n;
                }
                uring::TxEnd::Gone(e) => return self.fail(n, e),
            }
        }
        self.tx_syscalls(pool, &frames[sent..], sent)
    }

    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn abandon(&mut self) {
        if self.created {
            self.on_remove();
        }
    }

    fn link_down(&self) -> bool {
        self.link_down
    }

    fn on_remove(&mut self) {
        // Without the flag the kernel deletes the device when we close it.
        if let Err(e) = sys::set_tap_persist(self.fd.as_raw_fd(), false) {
            tracing::warn!("cannot make TAP non-persistent, it stays after removal: {e}");
        }
    }

    fn mode(&self) -> PortMode {
        PortMode {
            mode: "tap",
            zero_copy: false,
            io: Some(match self.io() {
                TapIo::IoUring => "io_uring",
                TapIo::Syscalls => "syscalls",
            }),
            tx_csum: self.vnet,
        }
    }

    fn takes_gso(&self) -> bool {
        self.vnet
    }
}
