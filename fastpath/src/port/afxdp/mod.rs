//! AF_XDP ports: an existing interface, typically the host end of a pod's
//! veth, attached with an XDP program that redirects its frames to an
//! AF_XDP socket whose UMEM is the worker's frame pool.
//!
//! The socket is made with the kernel's socket options ([`socket`]) so that
//! its UMEM has room for TX metadata: a frame whose TCP/UDP checksum is
//! partial ([`crate::gso::Gso::partial`]) goes with a checksum request, and
//! the kernel completes it (copy mode; a zero-copy socket would need the
//! driver's support, which is not asked, so the port completes it in
//! software there, as on a kernel without TX metadata).
//!
//! Every port of a worker registers the *same* memory region (the worker's
//! [`FramePool`]) as its UMEM, so a frame address means the same bytes on
//! every port and forwarding between two AF_XDP ports moves a descriptor from
//! one socket's RX ring to another's TX ring without copying. Each port owns
//! its own UMEM registration, fill ring and completion ring. (The kernel's
//! XDP_SHARED_UMEM mode, which xsk-rs exposes, lets the first socket reuse
//! the UMEM's own descriptor; that socket can then never be unbound without
//! destroying the UMEM and every other port on it, so a deleted port's
//! interface could not be attached again. One registration per port avoids
//! that; the kernel pins the region's pages once per registration.)
//!
//! Buffer life cycle (each step updates the pool's owner array, so a frame
//! is never lost or used twice):
//!
//! ```text
//! pool --lend--> fill ring --kernel RX--> rx ring --reclaim--> worker batch
//! worker --lend--> tx ring --kernel TX--> completion ring --reclaim/free--> pool
//! ```
//!
//! need_wakeup is on: the worker only makes a syscall when the kernel says
//! it is needed (always for TX on veth, which transmits inside the kick).

use std::os::fd::RawFd;
use std::ptr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libxdp_sys::xdp_desc;

mod program;
mod socket;

use socket::Socket;
pub use socket::TX_METADATA_LEN;

use super::{Port, PortGone, PortMode, RxFrame};
use crate::PortId;
use crate::batch::BATCH_SIZE;
use crate::pool::{FramePool, PoolView, XSK_RING_SIZE};
use crate::sys;
use crate::tx::TxFrame;

/// How a port asks to attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// Native XDP if the driver supports it, else generic.
    Auto,
    Native,
    Generic,
    /// Native XDP with a zero-copy socket, or fail.
    ZeroCopy,
}

/// How often, and how long apart, a bind that finds the queue busy is retried.
const BUSY_RETRIES: u32 = 50;
const BUSY_WAIT: Duration = Duration::from_millis(20);

/// Most frames a socket keeps in its fill ring.
const FILL_TARGET: u32 = XSK_RING_SIZE;
/// Frames the pool keeps back from fill rings for copies and TAP receive.
const POOL_RESERVE: u32 = 512;

/// The frames each of a worker's `sockets` AF_XDP sockets may keep in its
/// fill ring: a full ring each while the pool's `regular` frames (less a
/// reserve) suffice, else an equal share, a multiple of a burst, so that
/// no socket's fill ring stays empty however many sockets (ports and
/// queues) the worker serves.
pub fn fill_share(regular: u32, sockets: usize) -> u32 {
    let share = regular.saturating_sub(POOL_RESERVE) / (sockets.max(1) as u32);
    let share = share / BATCH_SIZE as u32 * BATCH_SIZE as u32;
    share.clamp(BATCH_SIZE as u32, FILL_TARGET)
}

/// Why a port could not be attached, with the attempts made.
#[derive(Debug, thiserror::Error)]
#[error("cannot attach AF_XDP to '{ifname}': {reason}")]
pub struct AttachError {
    pub ifname: String,
    pub reason: String,
}

/// Interfaces whose socket this process closed recently: their queue may
/// stay busy for a moment while the kernel's deferred cleanup runs.
static RECENTLY_CLOSED: Mutex<Vec<(String, Instant)>> = Mutex::new(Vec::new());
/// How long after a close a busy queue is assumed to be ours still.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

fn closed_recently(ifname: &str) -> bool {
    let mut list = RECENTLY_CLOSED.lock().unwrap_or_else(|e| e.into_inner());
    list.retain(|(_, at)| at.elapsed() < CLOSE_GRACE);
    list.iter().any(|(n, _)| n == ifname)
}

/// One queue's socket, and the program redirecting to it (none for an
/// uplink, whose own program does).
struct Xsk {
    ifname: String,
    queue: u16,
    // Declared before `socket`: its map entry is removed, and the program
    // detached if it was the last queue's, before the socket closes.
    program: Option<Arc<program::Program>>,
    socket: Socket,
}

impl Drop for Xsk {
    fn drop(&mut self) {
        // Not per packet: once per port close.
        let mut list = RECENTLY_CLOSED.lock().unwrap_or_else(|e| e.into_inner());
        list.push((self.ifname.clone(), Instant::now()));
        drop(list);
        if let Some(p) = self.program.take() {
            p.unregister(self.queue);
        }
    }
}

impl Xsk {
    /// Registers `region` as a UMEM and binds a socket to queue `queue` of
    /// `ifname` with `bind_flags`; with `program`, attaches the redirect
    /// program in native or generic mode (`native`) and registers the
    /// socket in it. The error carries a negative errno.
    fn create(
        ifname: &str,
        queue: u16,
        region: &PoolView,
        native: bool,
        bind_flags: u16,
        program: bool,
    ) -> Result<Self, (i32, String)> {
        let ifindex = sys::if_index(ifname).ok_or((-libc::ENODEV, "no such interface".into()))?;
        let socket =
            Socket::create(ifindex, queue, region, bind_flags).map_err(|(e, m)| (-e, m))?;
        let mut x = Xsk {
            ifname: ifname.to_string(),
            queue,
            program: None,
            socket,
        };
        if program {
            let p = program::attach(ifindex, native)?;
            p.register(queue, x.socket.fd())?;
            x.program = Some(p);
        }
        Ok(x)
    }
}

/// An AF_XDP socket on one queue of one interface.
pub struct AfXdpPort {
    /// The pool's tag for frames lent to this socket ([`crate::lender`]).
    owner: u16,
    xsk: Xsk,
    fd: RawFd,
    native: bool,
    zero_copy: bool,
    in_fill: u32,
    /// Frames this socket may keep in its fill ring ([`fill_share`]).
    fill_target: u32,
    in_tx: u32,
    /// A kick that failed after its frames were queued, reported by `maintain`.
    failed: Option<PortGone>,
    /// Partial checksums are left to the kernel through TX metadata (a
    /// copy-mode socket whose UMEM has room for it; a zero-copy one would
    /// need the driver's support, which is not asked).
    tx_csum: bool,
}

// SAFETY: the libxdp objects and rings are only used by the one thread that
// owns the port at a time (created by the controller, then moved to its worker).
unsafe impl Send for AfXdpPort {}

impl AfXdpPort {
    /// Binds an AF_XDP socket to queue `queue` of `ifname` (the port
    /// `id`'s queue) with the worker's pool region as UMEM, trying the
    /// attach modes `mode` allows. The interface's redirect program
    /// ([`program`], libxdp's own) sends each RX queue to the socket bound
    /// to it.
    pub fn open(
        ifname: &str,
        id: PortId,
        queue: u16,
        mode: AttachMode,
        region: &PoolView,
    ) -> Result<Self, AttachError> {
        Self::open_with(ifname, id, queue, mode, region, true)
    }

    /// Like [`AfXdpPort::open`], but no XDP program is attached: the socket
    /// receives only what the program already attached to `ifname` redirects
    /// to it (the uplink's [`super::uplink::UplinkProgram`], once the socket
    /// is registered there). `mode` must be the mode that program runs in
    /// (`Native`, or `ZeroCopy` under a native program, or `Generic`): it
    /// decides the socket's bind flags and the mode the port reports.
    pub fn open_without_program(
        ifname: &str,
        id: PortId,
        queue: u16,
        mode: AttachMode,
        region: &PoolView,
    ) -> Result<Self, AttachError> {
        Self::open_with(ifname, id, queue, mode, region, false)
    }

    fn open_with(
        ifname: &str,
        id: PortId,
        queue: u16,
        mode: AttachMode,
        region: &PoolView,
        program: bool,
    ) -> Result<Self, AttachError> {
        let err = |reason: String| AttachError {
            ifname: ifname.to_string(),
            reason: if queue > 0 {
                format!("queue {queue}: {reason}")
            } else {
                reason
            },
        };
        if !sys::valid_ifname(ifname) {
            return Err(err("invalid interface name".into()));
        }
        if queue >= crate::MAX_QUEUES {
            return Err(err(format!("at most {} queues", crate::MAX_QUEUES)));
        }
        if sys::if_index(ifname).is_none() {
            return Err(err("no such interface".into()));
        }
        let attempts: &[(bool, u16)] = match mode {
            AttachMode::Auto => &[(true, 0), (false, libc::XDP_COPY)],
            AttachMode::Native => &[(true, 0)],
            AttachMode::Generic => &[(false, libc::XDP_COPY)],
            AttachMode::ZeroCopy => &[(true, libc::XDP_ZEROCOPY)],
        };
        let mut failures = Vec::new();
        for &(native, bind) in attempts {
            let label = if native { "native" } else { "generic" };
            // A socket we closed moments ago (the port was just deleted)
            // keeps its queue busy until the kernel's deferred cleanup has
            // run; a queue busy for any other reason fails at once.
            let mut result = Xsk::create(ifname, queue, region, native, bind, program);
            let retries = if closed_recently(ifname) {
                BUSY_RETRIES
            } else {
                0
            };
            for _ in 0..retries {
                match &result {
                    Err((rc, _)) if *rc == -libc::EBUSY => {
                        std::thread::sleep(BUSY_WAIT);
                        result = Xsk::create(ifname, queue, region, native, bind, program);
                    }
                    _ => break,
                }
            }
            match result.map_err(|(_, msg)| msg) {
                Ok(xsk) => {
                    let fd = xsk.socket.fd();
                    if mode == AttachMode::ZeroCopy && !sys::xsk_zero_copy(fd) {
                        failures.push(format!("{label}: the kernel gave a copy-mode socket"));
                        continue;
                    }
                    let zero_copy = sys::xsk_zero_copy(fd);
                    return Ok(AfXdpPort {
                        owner: crate::lender(id, queue),
                        tx_csum: xsk.socket.tx_metadata && !zero_copy,
                        xsk,
                        fd,
                        native,
                        zero_copy,
                        in_fill: 0,
                        fill_target: FILL_TARGET,
                        in_tx: 0,
                        failed: None,
                    });
                }
                Err(e) => failures.push(format!("{label}: {e}")),
            }
        }
        Err(err(failures.join("; ")))
    }

    fn kick_tx(&self) -> Result<(), PortGone> {
        // SAFETY: the TX ring is live and owned by this port.
        if unsafe { libxdp_sys::xsk_ring_prod__needs_wakeup(&self.xsk.socket.tx) } == 0 {
            return Ok(());
        }
        // SAFETY: a zero-length sendto on our own socket; the kernel
        // transmits what the TX ring holds.
        let rc =
            unsafe { libc::sendto(self.fd, ptr::null(), 0, libc::MSG_DONTWAIT, ptr::null(), 0) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENOBUFS | libc::EAGAIN | libc::EBUSY | libc::ENETDOWN | libc::EINTR) => {
                }
                _ => return Err(PortGone(format!("AF_XDP transmit failed: {e}"))),
            }
        }
        Ok(())
    }

    /// Prepares frame `f`, whose checksum is partial: TX metadata asking
    /// the kernel to complete it (returns the descriptor's options), or,
    /// on a socket without, completed here.
    fn partial(&self, pool: &mut FramePool, f: &TxFrame) -> u32 {
        let (start, offset) = f.gso.csum_at();
        let fits = u32::from(start) + u32::from(offset) + 2 <= f.len;
        if self.tx_csum
            && fits
            && let Some(m) = pool.headroom_tail_mut::<{ TX_METADATA_LEN as usize }>(f.addr)
        {
            // struct xsk_tx_metadata: flags, then request.csum_start and
            // request.csum_offset, in the machine's byte order.
            m[..8].copy_from_slice(&u64::from(libc::XDP_TXMD_FLAGS_CHECKSUM).to_ne_bytes());
            m[8..10].copy_from_slice(&start.to_ne_bytes());
            m[10..12].copy_from_slice(&offset.to_ne_bytes());
            return libc::XDP_TX_METADATA;
        }
        crate::gso::complete(pool.data_mut(f.addr, f.len), f.gso);
        0
    }

    fn reap_completions(&mut self, pool: &mut FramePool) {
        let mut idx = 0u32;
        // SAFETY: the completion ring is live; entries in [idx, idx+n) are
        // readable until released.
        let n = unsafe {
            libxdp_sys::xsk_ring_cons__peek(&mut self.xsk.socket.cq, XSK_RING_SIZE, &mut idx)
        };
        for i in 0..n {
            // SAFETY: within the peeked range.
            let addr = unsafe {
                *libxdp_sys::xsk_ring_cons__comp_addr(&self.xsk.socket.cq, idx.wrapping_add(i))
            };
            if let Some(a) = pool.reclaim(addr as u32, self.owner) {
                pool.free(a);
                self.in_tx -= 1;
            }
        }
        if n > 0 {
            // SAFETY: releases exactly the entries peeked above.
            unsafe { libxdp_sys::xsk_ring_cons__release(&mut self.xsk.socket.cq, n) };
        }
    }

    fn refill(&mut self, pool: &mut FramePool) {
        let spare = pool.available_regular().saturating_sub(POOL_RESERVE);
        let want = self.fill_target.saturating_sub(self.in_fill).min(spare);
        if want == 0 {
            return;
        }
        // SAFETY: the fill ring is live and owned by this port.
        let want = unsafe { libxdp_sys::xsk_prod_nb_free(&mut self.xsk.socket.fq, want) }.min(want);
        let mut idx = 0u32;
        if want == 0 {
            return;
        }
        // SAFETY: reserves `want` slots (known to be free), which we fill
        // and submit below.
        let reserved =
            unsafe { libxdp_sys::xsk_ring_prod__reserve(&mut self.xsk.socket.fq, want, &mut idx) };
        if reserved != want {
            return;
        }
        for i in 0..want {
            let addr = pool.alloc().expect("checked available above");
            pool.lend(addr, self.owner);
            // SAFETY: within the reserved range.
            unsafe {
                *libxdp_sys::xsk_ring_prod__fill_addr(
                    &mut self.xsk.socket.fq,
                    idx.wrapping_add(i),
                ) = u64::from(addr)
            };
        }
        // SAFETY: submits exactly the slots reserved and written above.
        unsafe { libxdp_sys::xsk_ring_prod__submit(&mut self.xsk.socket.fq, want) };
        self.in_fill += want;
    }
}

impl Port for AfXdpPort {
    fn rx_burst(&mut self, pool: &mut FramePool, out: &mut [RxFrame]) -> Result<usize, PortGone> {
        let max = out.len().min(BATCH_SIZE) as u32;
        let mut idx = 0u32;
        // SAFETY: the RX ring is live; peeked entries are readable until released.
        let n = unsafe { libxdp_sys::xsk_ring_cons__peek(&mut self.xsk.socket.rx, max, &mut idx) };
        let mut kept = 0;
        for i in 0..n {
            // SAFETY: within the peeked range.
            let d: xdp_desc = unsafe {
                *libxdp_sys::xsk_ring_cons__rx_desc(&self.xsk.socket.rx, idx.wrapping_add(i))
            };
            let raw = d.addr as u32;
            let Some(canon) = pool.reclaim(raw, self.owner) else {
                continue;
            };
            self.in_fill -= 1;
            match pool.normalize(raw, canon, d.len) {
                Some(len) => {
                    out[kept] = RxFrame::new(canon, len);
                    kept += 1;
                }
                None => pool.free(canon),
            }
        }
        if n > 0 {
            // SAFETY: releases exactly the entries peeked above.
            unsafe { libxdp_sys::xsk_ring_cons__release(&mut self.xsk.socket.rx, n) };
        }
        Ok(kept)
    }

    fn tx_burst(&mut self, pool: &mut FramePool, frames: &[TxFrame]) -> Result<usize, PortGone> {
        let want = frames.len().min(XSK_RING_SIZE as usize);
        // Only UMEM frames can go on the ring (the output step copies or
        // cuts others first): stop before any other, never lend it.
        let want = frames[..want]
            .iter()
            .position(|f| !pool.in_umem(f.addr))
            .unwrap_or(want) as u32;
        // SAFETY: the TX ring is live and owned by this port.
        let n = unsafe { libxdp_sys::xsk_prod_nb_free(&mut self.xsk.socket.tx, want) }.min(want);
        let mut idx = 0u32;
        if n == 0 {
            self.kick_tx()?;
            return Ok(0);
        }
        // SAFETY: reserves `n` slots (known to be free), which we fill and
        // submit below.
        let reserved =
            unsafe { libxdp_sys::xsk_ring_prod__reserve(&mut self.xsk.socket.tx, n, &mut idx) };
        if reserved != n {
            self.kick_tx()?;
            return Ok(0);
        }
        let mut posted = 0u32;
        for f in &frames[..n as usize] {
            // Only a frame the worker holds goes to the kernel: another
            // (already lent, freed or handed off) is counted and skipped,
            // never posted.
            if !pool.holds(f.addr) {
                pool.error();
                continue;
            }
            let options = if f.gso.is_partial() {
                self.partial(pool, f)
            } else {
                0
            };
            pool.lend(f.addr, self.owner);
            // SAFETY: within the reserved range (`posted` < `n`).
            unsafe {
                *libxdp_sys::xsk_ring_prod__tx_desc(
                    &mut self.xsk.socket.tx,
                    idx.wrapping_add(posted),
                ) = xdp_desc {
                    addr: u64::from(f.addr),
                    len: f.len,
                    options,
                };
            }
            posted += 1;
        }
        // The slots reserved for skipped frames are given back (what
        // libxdp's consumer-side `cancel` does): the next reservation
        // starts right after the last descriptor written.
        let cached = &mut self.xsk.socket.tx.cached_prod;
        *cached = cached.wrapping_sub(n - posted);
        // SAFETY: submits exactly the slots written above.
        unsafe { libxdp_sys::xsk_ring_prod__submit(&mut self.xsk.socket.tx, posted) };
        self.in_tx += posted;
        // The frames are the kernel's now whatever the kick says: report
        // them sent, and a failed kick from `maintain`.
        if let Err(e) = self.kick_tx() {
            self.failed = Some(e);
        }
        Ok(n as usize)
    }

    fn maintain(&mut self, pool: &mut FramePool) -> Result<(), PortGone> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.in_tx > 0 {
            self.reap_completions(pool);
            // Copy-mode TX runs inside the kick; frames still pending after a
            // full ring need another kick to make progress.
            if self.in_tx > 0 {
                self.kick_tx()?;
            }
        }
        self.refill(pool);
        // SAFETY: the fill ring is live.
        if unsafe { libxdp_sys::xsk_ring_prod__needs_wakeup(&self.xsk.socket.fq) } != 0 {
            // SAFETY: a zero-length, non-blocking recvfrom on our own socket
            // tells the driver there are fill buffers again.
            unsafe {
                libc::recvfrom(
                    self.fd,
                    ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            };
        }
        Ok(())
    }

    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.fd)
    }

    fn xsk_fd(&self) -> Option<RawFd> {
        Some(self.fd)
    }

    fn fills(&self) -> bool {
        true
    }

    fn set_fill_target(&mut self, frames: u32) {
        self.fill_target = frames.min(FILL_TARGET);
    }

    fn mode(&self) -> PortMode {
        PortMode {
            mode: if self.native { "native" } else { "generic" },
            zero_copy: self.zero_copy,
            io: None,
            tx_csum: self.tx_csum,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fill_share;

    #[test]
    fn sockets_share_the_pool_when_their_rings_would_not_fit() {
        // 32,768 frames: 15 full rings fit, 16 do not.
        assert_eq!(fill_share(32_768, 1), 2048);
        assert_eq!(fill_share(32_768, 15), 2048);
        assert_eq!(fill_share(32_768, 16), 2048 - 64);
        assert_eq!(fill_share(32_768, 32), 1008 / 64 * 64);
        for n in 1..200 {
            let share = fill_share(32_768, n);
            assert!(share >= 64 && share.is_multiple_of(64), "{n}: {share}");
            assert!(
                share as usize * n <= 32_768 - 512 || share == 64,
                "{n} sockets of {share} frames overdraw the pool"
            );
        }
        assert_eq!(fill_share(0, 0), 64);
    }
}
