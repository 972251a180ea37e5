//! AF_XDP ports: an existing interface, typically the host end of a pod's
//! veth, attached with an XDP program that redirects its frames to an
//! AF_XDP socket whose UMEM is the worker's frame pool.
//!
//! Every port of a worker registers the *same* memory region (the worker's
//! [`FramePool`]) as its UMEM, so a frame address means the same bytes on
//! every port and forwarding between two AF_XDP ports moves a descriptor from
//! one socket's RX ring to another's TX ring without copying. Each port owns
//! its own UMEM registration, fill ring and completion ring. (libxdp's
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

use std::ffi::CString;
use std::os::fd::RawFd;
use std::ptr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libxdp_sys::{
    xdp_desc, xsk_ring_cons, xsk_ring_prod, xsk_socket, xsk_socket_config,
    xsk_socket_config__bindgen_ty_1, xsk_umem, xsk_umem_config,
};

use super::{Port, PortGone, PortMode, RxFrame};
use crate::PortId;
use crate::batch::BATCH_SIZE;
use crate::pool::{FRAME_SIZE, FramePool, PoolView, XSK_RING_SIZE};
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

// From linux/if_link.h (not in libxdp-sys's bindings).
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

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

/// The libxdp objects of one port; deleted socket first, then UMEM.
struct Xsk {
    ifname: String,
    umem: *mut xsk_umem,
    socket: *mut xsk_socket,
    // libxdp keeps pointers to the fill and completion ring structures until
    // the UMEM is deleted, so they live in boxes that do not move.
    fq: Box<xsk_ring_prod>,
    cq: Box<xsk_ring_cons>,
    rx: Box<xsk_ring_cons>,
    tx: Box<xsk_ring_prod>,
}

impl Drop for Xsk {
    fn drop(&mut self) {
        if !self.socket.is_null() {
            // Not per packet: once per port close.
            let mut list = RECENTLY_CLOSED.lock().unwrap_or_else(|e| e.into_inner());
            list.push((self.ifname.clone(), Instant::now()));
        }
        // SAFETY: both pointers came from successful libxdp create calls and
        // are deleted exactly once, the socket before its UMEM.
        unsafe {
            if !self.socket.is_null() {
                libxdp_sys::xsk_socket__delete(self.socket);
            }
            if !self.umem.is_null() {
                libxdp_sys::xsk_umem__delete(self.umem);
            }
        }
    }
}

fn zeroed_ring<T>() -> Box<T> {
    // SAFETY: the ring structs are plain integers and raw pointers, for which
    // all-zero is a valid (empty, unmapped) value; libxdp initialises them.
    Box::new(unsafe { std::mem::zeroed() })
}

fn errno_text(rc: i32) -> String {
    std::io::Error::from_raw_os_error(-rc).to_string()
}

impl Xsk {
    /// Registers `region` as a UMEM and binds a socket to queue `queue` of `ifname`.
    fn create(
        ifname: &CString,
        queue: u16,
        region: &PoolView,
        xdp_flags: u32,
        bind_flags: u32,
        libxdp_flags: u32,
    ) -> Result<Self, (i32, String)> {
        let mut x = Xsk {
            ifname: ifname.to_string_lossy().into_owned(),
            umem: ptr::null_mut(),
            socket: ptr::null_mut(),
            fq: zeroed_ring(),
            cq: zeroed_ring(),
            rx: zeroed_ring(),
            tx: zeroed_ring(),
        };
        let ucfg = xsk_umem_config {
            fill_size: XSK_RING_SIZE,
            comp_size: XSK_RING_SIZE,
            frame_size: FRAME_SIZE,
            frame_headroom: 0,
            flags: 0,
        };
        // SAFETY: the region is page-aligned memory owned by the worker's
        // pool, which outlives every port of that worker (the worker drops
        // its ports before its pool); the ring structs are boxed.
        let rc = unsafe {
            libxdp_sys::xsk_umem__create(
                &mut x.umem,
                region.as_ptr().cast(),
                region.len() as u64,
                &mut *x.fq,
                &mut *x.cq,
                &ucfg,
            )
        };
        if rc != 0 {
            x.umem = ptr::null_mut();
            return Err((rc, format!("UMEM registration failed: {}", errno_text(rc))));
        }
        let scfg = xsk_socket_config {
            rx_size: XSK_RING_SIZE,
            tx_size: XSK_RING_SIZE,
            __bindgen_anon_1: xsk_socket_config__bindgen_ty_1 { libxdp_flags },
            xdp_flags,
            bind_flags: (bind_flags | libxdp_sys::XDP_USE_NEED_WAKEUP) as u16,
        };
        // SAFETY: `umem` is live, `ifname` is NUL-terminated, the rings are
        // boxed; the daemon binds each queue of an interface at most once.
        let rc = unsafe {
            libxdp_sys::xsk_socket__create(
                &mut x.socket,
                ifname.as_ptr(),
                u32::from(queue),
                x.umem,
                &mut *x.rx,
                &mut *x.tx,
                &scfg,
            )
        };
        if rc != 0 {
            x.socket = ptr::null_mut();
            return Err((rc, errno_text(rc)));
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
}

// SAFETY: the libxdp objects and rings are only used by the one thread that
// owns the port at a time (created by the controller, then moved to its worker).
unsafe impl Send for AfXdpPort {}

impl AfXdpPort {
    /// Binds an AF_XDP socket to queue `queue` of `ifname` (the port
    /// `id`'s queue) with the worker's pool region as UMEM, trying the
    /// attach modes `mode` allows. The XDP program libxdp loads redirects
    /// each RX queue to the socket bound to it.
    pub fn open(
        ifname: &str,
        id: PortId,
        queue: u16,
        mode: AttachMode,
        region: &PoolView,
    ) -> Result<Self, AttachError> {
        Self::open_with(ifname, id, queue, mode, region, 0)
    }

    /// Like [`AfXdpPort::open`], but libxdp loads no XDP program: the socket
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
        let inhibit = libxdp_sys::XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;
        Self::open_with(ifname, id, queue, mode, region, inhibit)
    }

    fn open_with(
        ifname: &str,
        id: PortId,
        queue: u16,
        mode: AttachMode,
        region: &PoolView,
        libxdp_flags: u32,
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
        let name = CString::new(ifname).map_err(|_| err("invalid interface name".into()))?;
        let attempts: &[(bool, u32)] = match mode {
            AttachMode::Auto => &[(true, 0), (false, libxdp_sys::XDP_COPY)],
            AttachMode::Native => &[(true, 0)],
            AttachMode::Generic => &[(false, libxdp_sys::XDP_COPY)],
            AttachMode::ZeroCopy => &[(true, libxdp_sys::XDP_ZEROCOPY)],
        };
        let mut failures = Vec::new();
        for &(native, bind) in attempts {
            let xdp = if native {
                XDP_FLAGS_DRV_MODE
            } else {
                XDP_FLAGS_SKB_MODE
            };
            let label = if native { "native" } else { "generic" };
            // A socket we closed moments ago (the port was just deleted)
            // keeps its queue busy until the kernel's deferred cleanup has
            // run; a queue busy for any other reason fails at once.
            let mut result = Xsk::create(&name, queue, region, xdp, bind, libxdp_flags);
            let retries = if closed_recently(ifname) {
                BUSY_RETRIES
            } else {
                0
            };
            for _ in 0..retries {
                match &result {
                    Err((rc, _)) if *rc == -libc::EBUSY => {
                        std::thread::sleep(BUSY_WAIT);
                        result = Xsk::create(&name, queue, region, xdp, bind, libxdp_flags);
                    }
                    _ => break,
                }
            }
            match result.map_err(|(_, msg)| msg) {
                Ok(xsk) => {
                    // SAFETY: the socket pointer is live.
                    let fd = unsafe { libxdp_sys::xsk_socket__fd(xsk.socket) };
                    if mode == AttachMode::ZeroCopy && !sys::xsk_zero_copy(fd) {
                        failures.push(format!("{label}: the kernel gave a copy-mode socket"));
                        continue;
                    }
                    return Ok(AfXdpPort {
                        owner: crate::lender(id, queue),
                        xsk,
                        fd,
                        native,
                        zero_copy: sys::xsk_zero_copy(fd),
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
        if unsafe { libxdp_sys::xsk_ring_prod__needs_wakeup(&*self.xsk.tx) } == 0 {
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

    fn reap_completions(&mut self, pool: &mut FramePool) {
        let mut idx = 0u32;
        // SAFETY: the completion ring is live; entries in [idx, idx+n) are
        // readable until released.
        let n =
            unsafe { libxdp_sys::xsk_ring_cons__peek(&mut *self.xsk.cq, XSK_RING_SIZE, &mut idx) };
        for i in 0..n {
            // SAFETY: within the peeked range.
            let addr = unsafe {
                *libxdp_sys::xsk_ring_cons__comp_addr(&*self.xsk.cq, idx.wrapping_add(i))
            };
            if let Some(a) = pool.reclaim(addr as u32, self.owner) {
                pool.free(a);
                self.in_tx -= 1;
            }
        }
        if n > 0 {
            // SAFETY: releases exactly the entries peeked above.
            unsafe { libxdp_sys::xsk_ring_cons__release(&mut *self.xsk.cq, n) };
        }
    }

    fn refill(&mut self, pool: &mut FramePool) {
        let spare = pool.available_regular().saturating_sub(POOL_RESERVE);
        let want = self.fill_target.saturating_sub(self.in_fill).min(spare);
        if want == 0 {
            return;
        }
        // SAFETY: the fill ring is live and owned by this port.
        let want = unsafe { libxdp_sys::xsk_prod_nb_free(&mut *self.xsk.fq, want) }.min(want);
        let mut idx = 0u32;
        if want == 0 {
            return;
        }
        // SAFETY: reserves `want` slots (known to be free), which we fill
        // and submit below.
        let reserved =
            unsafe { libxdp_sys::xsk_ring_prod__reserve(&mut *self.xsk.fq, want, &mut idx) };
        if reserved != want {
            return;
        }
        for i in 0..want {
            let addr = pool.alloc().expect("checked available above");
            pool.lend(addr, self.owner);
            // SAFETY: within the reserved range.
            unsafe {
                *libxdp_sys::xsk_ring_prod__fill_addr(&mut *self.xsk.fq, idx.wrapping_add(i)) =
                    u64::from(addr)
            };
        }
        // SAFETY: submits exactly the slots reserved and written above.
        unsafe { libxdp_sys::xsk_ring_prod__submit(&mut *self.xsk.fq, want) };
        self.in_fill += want;
    }
}

impl Port for AfXdpPort {
    fn rx_burst(&mut self, pool: &mut FramePool, out: &mut [RxFrame]) -> Result<usize, PortGone> {
        let max = out.len().min(BATCH_SIZE) as u32;
        let mut idx = 0u32;
        // SAFETY: the RX ring is live; peeked entries are readable until released.
        let n = unsafe { libxdp_sys::xsk_ring_cons__peek(&mut *self.xsk.rx, max, &mut idx) };
        let mut kept = 0;
        for i in 0..n {
            // SAFETY: within the peeked range.
            let d: xdp_desc =
                unsafe { *libxdp_sys::xsk_ring_cons__rx_desc(&*self.xsk.rx, idx.wrapping_add(i)) };
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
            unsafe { libxdp_sys::xsk_ring_cons__release(&mut *self.xsk.rx, n) };
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
        let n = unsafe { libxdp_sys::xsk_prod_nb_free(&mut *self.xsk.tx, want) }.min(want);
        let mut idx = 0u32;
        if n == 0 {
            self.kick_tx()?;
            return Ok(0);
        }
        // SAFETY: reserves `n` slots (known to be free), which we fill and
        // submit below.
        let reserved =
            unsafe { libxdp_sys::xsk_ring_prod__reserve(&mut *self.xsk.tx, n, &mut idx) };
        if reserved != n {
            self.kick_tx()?;
            return Ok(0);
        }
        for (i, f) in frames[..n as usize].iter().enumerate() {
            pool.lend(f.addr, self.owner);
            // SAFETY: within the reserved range.
            unsafe {
                *libxdp_sys::xsk_ring_prod__tx_desc(
                    &mut *self.xsk.tx,
                    idx.wrapping_add(i as u32),
                ) = xdp_desc {
                    addr: u64::from(f.addr),
                    len: f.len,
                    options: 0,
                };
            }
        }
        // SAFETY: submits exactly the slots reserved and written above.
        unsafe { libxdp_sys::xsk_ring_prod__submit(&mut *self.xsk.tx, n) };
        self.in_tx += n;
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
        if unsafe { libxdp_sys::xsk_ring_prod__needs_wakeup(&*self.xsk.fq) } != 0 {
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
