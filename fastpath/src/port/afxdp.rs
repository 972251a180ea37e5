//! AF_XDP ports (xsk-rs): an existing interface, typically the host end of a
//! pod's veth, attached with an XDP program that redirects its frames to an
//! AF_XDP socket bound to the worker's shared UMEM.
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

use std::os::fd::{AsRawFd, RawFd};

use xsk_rs::config::{BindFlags, QueueSize, SocketConfig, XdpFlags};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue};

use super::{Port, PortGone, PortMode};
use crate::PortId;
use crate::batch::BATCH_SIZE;
use crate::pool::{FramePool, XSK_RING_SIZE};
use crate::stage::output::TxFrame;
use crate::sys;

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

/// Frames each port keeps in its fill ring.
const FILL_TARGET: u32 = 1024;
/// Frames the pool keeps back from fill rings for copies and TAP receive.
const POOL_RESERVE: u32 = 512;

/// An AF_XDP socket on one interface queue.
pub struct AfXdpPort {
    id: PortId,
    tx: TxQueue,
    rx: RxQueue,
    fq: FillQueue,
    cq: CompQueue,
    fd: RawFd,
    native: bool,
    zero_copy: bool,
    in_fill: u32,
    in_tx: u32,
    scratch: Vec<FrameDesc>,
}

/// Why a port could not be attached, with the attempts made.
#[derive(Debug, thiserror::Error)]
#[error("cannot attach AF_XDP to '{ifname}': {reason}")]
pub struct AttachError {
    pub ifname: String,
    pub reason: String,
}

impl AfXdpPort {
    /// Binds an AF_XDP socket to queue 0 of `ifname`, using the pool's UMEM.
    pub fn open(
        ifname: &str,
        id: PortId,
        mode: AttachMode,
        pool_umem: &xsk_rs::Umem,
    ) -> Result<Self, AttachError> {
        let err = |reason: String| AttachError {
            ifname: ifname.to_string(),
            reason,
        };
        if !sys::valid_ifname(ifname) {
            return Err(err("invalid interface name".into()));
        }
        if sys::if_index(ifname).is_none() {
            return Err(err("no such interface".into()));
        }
        let iface = ifname
            .parse()
            .map_err(|_| err("invalid interface name".into()))?;
        let attempts: &[(bool, BindFlags)] = match mode {
            AttachMode::Auto => &[(true, BindFlags::empty()), (false, BindFlags::XDP_COPY)],
            AttachMode::Native => &[(true, BindFlags::empty())],
            AttachMode::Generic => &[(false, BindFlags::XDP_COPY)],
            AttachMode::ZeroCopy => &[(true, BindFlags::XDP_ZEROCOPY)],
        };
        let ring = QueueSize::new(XSK_RING_SIZE).map_err(|e| err(e.to_string()))?;
        let mut failures = Vec::new();
        for &(native, bind) in attempts {
            let xdp = if native {
                XdpFlags::XDP_FLAGS_DRV_MODE
            } else {
                XdpFlags::XDP_FLAGS_SKB_MODE
            };
            let config = SocketConfig::builder()
                .rx_queue_size(ring)
                .tx_queue_size(ring)
                .xdp_flags(xdp)
                .bind_flags(bind | BindFlags::XDP_USE_NEED_WAKEUP)
                .build();
            // SAFETY: the daemon binds each (interface, queue 0) pair at most
            // once (port names are unique and name the interface), so this
            // pair is not bound already and no inhibit flag is needed.
            match unsafe { Socket::new(config, pool_umem, &iface, 0) } {
                Ok((tx, rx, Some((fq, cq)))) => {
                    let fd = rx.fd().as_raw_fd();
                    return Ok(AfXdpPort {
                        id,
                        tx,
                        rx,
                        fq,
                        cq,
                        fd,
                        native,
                        zero_copy: sys::xsk_zero_copy(fd),
                        in_fill: 0,
                        in_tx: 0,
                        scratch: vec![FrameDesc::default(); BATCH_SIZE],
                    });
                }
                Ok((_, _, None)) => failures.push("queue 0 is already bound".to_string()),
                Err(e) => {
                    let m = if native { "native" } else { "generic" };
                    failures.push(format!("{m}: {e}"));
                }
            }
        }
        Err(err(failures.join("; ")))
    }

    fn reap_completions(&mut self, pool: &mut FramePool) {
        loop {
            // SAFETY: the completion ring returns descriptors of frames this
            // port lent to its TX ring; they belong to the pool's UMEM.
            let n = unsafe { self.cq.consume(&mut self.scratch) };
            for d in &self.scratch[..n] {
                if let Some(addr) = pool.reclaim(d.addr() as u32, self.id) {
                    pool.free(addr);
                    self.in_tx -= 1;
                }
            }
            if n < self.scratch.len() {
                break;
            }
        }
    }

    fn refill(&mut self, pool: &mut FramePool) {
        while self.in_fill < FILL_TARGET && pool.available() > POOL_RESERVE {
            let want = (FILL_TARGET - self.in_fill)
                .min(BATCH_SIZE as u32)
                .min(pool.available() - POOL_RESERVE);
            let want = self.fq.nb_free(want).min(want) as usize;
            if want == 0 {
                break;
            }
            let mut n = 0;
            while n < want {
                let Some(addr) = pool.alloc() else { break };
                let Some(d) = pool.xsk_desc(addr, 0) else {
                    pool.free(addr);
                    break;
                };
                self.scratch[n] = d;
                n += 1;
            }
            // SAFETY: the descriptors are frames of this UMEM just taken from
            // the free list; nobody else uses them until the kernel returns them.
            let produced = unsafe { self.fq.produce(&self.scratch[..n]) };
            for (i, d) in self.scratch[..n].iter().enumerate() {
                if i < produced {
                    pool.lend(d.addr() as u32, self.id);
                } else {
                    pool.free(d.addr() as u32);
                }
            }
            self.in_fill += produced as u32;
            if produced < want {
                break;
            }
        }
    }
}

impl Port for AfXdpPort {
    fn rx_burst(
        &mut self,
        pool: &mut FramePool,
        out: &mut [(u32, u32)],
    ) -> Result<usize, PortGone> {
        let max = out.len().min(self.scratch.len());
        // SAFETY: the RX ring returns frames this port lent to its fill ring.
        let n = unsafe { self.rx.consume(&mut self.scratch[..max]) };
        let mut kept = 0;
        for d in &self.scratch[..n] {
            let raw = d.addr() as u32;
            let len = d.lengths().data() as u32;
            let Some(canon) = pool.reclaim(raw, self.id) else {
                continue;
            };
            self.in_fill -= 1;
            match pool.normalize(raw, canon, len) {
                Some(len) => {
                    out[kept] = (canon, len);
                    kept += 1;
                }
                None => pool.free(canon),
            }
        }
        Ok(kept)
    }

    fn tx_burst(&mut self, pool: &mut FramePool, frames: &[TxFrame]) -> Result<usize, PortGone> {
        let want = frames.len().min(self.scratch.len());
        let room = self.tx.nb_free(want as u32) as usize;
        let n = want.min(room);
        let mut k = 0;
        for f in &frames[..n] {
            let Some(d) = pool.xsk_desc(f.addr, f.len) else {
                break;
            };
            self.scratch[k] = d;
            k += 1;
        }
        // SAFETY: the descriptors are frames of this UMEM held by the worker;
        // they are marked lent to this port below and not touched until the
        // completion ring returns them.
        let produced = unsafe { self.tx.produce(&self.scratch[..k]) };
        for f in &frames[..produced] {
            pool.lend(f.addr, self.id);
        }
        self.in_tx += produced as u32;
        if produced > 0 && self.tx.needs_wakeup() {
            self.tx
                .wakeup()
                .map_err(|e| PortGone(format!("AF_XDP transmit failed: {e}")))?;
        }
        Ok(produced)
    }

    fn maintain(&mut self, pool: &mut FramePool) -> Result<(), PortGone> {
        if self.in_tx > 0 {
            self.reap_completions(pool);
            // Copy-mode TX runs inside the kick; frames still pending after a
            // full ring need another kick to make progress.
            if self.in_tx > 0 && self.tx.needs_wakeup() {
                self.tx
                    .wakeup()
                    .map_err(|e| PortGone(format!("AF_XDP transmit failed: {e}")))?;
            }
        }
        self.refill(pool);
        if self.fq.needs_wakeup() {
            // A zero-timeout poll tells the driver there are fill buffers again.
            let _ = self.fq.wakeup(self.rx.fd_mut(), 0);
        }
        Ok(())
    }

    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.fd)
    }

    fn xsk_fd(&self) -> Option<RawFd> {
        Some(self.fd)
    }

    fn mode(&self) -> PortMode {
        PortMode {
            mode: if self.native { "native" } else { "generic" },
            zero_copy: self.zero_copy,
        }
    }
}
