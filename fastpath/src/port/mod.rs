//! Ports: where frames enter and leave the switch.
//!
//! Every kind of port implements [`Port`]; the worker does not know which
//! kind it polls. Frames always live in the worker's [`FramePool`]: a port
//! receives into pool frames and transmits from them.

pub mod afxdp;
pub mod memory;
pub mod tap;
pub mod uplink;

use std::os::fd::RawFd;

use crate::gso::Gso;
use crate::pool::FramePool;
use crate::tx::TxFrame;

/// The port's interface is gone (deleted, its namespace destroyed) or failed
/// for good. The worker marks the port down and stops polling it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PortGone(pub String);

/// How a port runs, for `port list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMode {
    /// `native`, `generic`, `tap` or `memory`.
    pub mode: &'static str,
    pub zero_copy: bool,
    /// TAP ports: how frames move (`io_uring` or `syscalls`).
    pub io: Option<&'static str>,
    /// The port takes frames whose TCP/UDP checksum is partial and has
    /// the kernel complete it (TX metadata on an AF_XDP socket, the
    /// virtio-net header of a TAP with offloads).
    pub tx_csum: bool,
}

/// A frame a port received: where it is in the pool, and what its port's
/// offloads say about it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxFrame {
    pub addr: u32,
    pub len: u32,
    /// GSO frames from TAP ports with offloads; [`Gso::NONE`] elsewhere.
    pub gso: Gso,
}

impl RxFrame {
    /// A plain frame (not GSO).
    #[inline]
    pub fn new(addr: u32, len: u32) -> Self {
        RxFrame {
            addr,
            len,
            gso: Gso::NONE,
        }
    }
}

impl From<(u32, u32)> for RxFrame {
    #[inline]
    fn from((addr, len): (u32, u32)) -> Self {
        RxFrame::new(addr, len)
    }
}

/// A source and sink of Ethernet frames owned by one worker.
pub trait Port: Send {
    /// Receives up to `out.len()` frames into pool frames. Each received
    /// frame is reported in `out` and is held by the worker.
    fn rx_burst(&mut self, pool: &mut FramePool, out: &mut [RxFrame]) -> Result<usize, PortGone>;

    /// Transmits a prefix of `frames` and returns its length. The port owns
    /// the frames it accepted; the caller still holds (and must free) the rest.
    fn tx_burst(&mut self, pool: &mut FramePool, frames: &[TxFrame]) -> Result<usize, PortGone>;

    /// Housekeeping between bursts: reap completed transmissions, give the
    /// kernel fresh receive buffers, wake the kernel where it asks for it.
    /// Ports whose transmissions complete at once need nothing here.
    fn maintain(&mut self, _pool: &mut FramePool) -> Result<(), PortGone> {
        Ok(())
    }

    /// A descriptor to sleep on in adaptive polling (readable = frames
    /// waiting); `None` for ports the kernel cannot wake us for.
    fn poll_fd(&self) -> Option<RawFd> {
        None
    }

    /// How the port runs.
    fn mode(&self) -> PortMode;

    /// True for a port that takes GSO frames whole (a TAP with offloads).
    fn takes_gso(&self) -> bool {
        false
    }

    /// The port is being removed from the switch for good (not at shutdown):
    /// release what would otherwise outlive it, such as a persistent TAP.
    fn on_remove(&mut self) {}

    /// The port was opened for a request that then failed: undo what would
    /// outlive it (a TAP device this port created).
    fn abandon(&mut self) {}

    /// True when frames the port did not take were refused because its link
    /// is down rather than because its queue is full.
    fn link_down(&self) -> bool {
        false
    }

    /// The AF_XDP socket, for reading the kernel's statistics.
    fn xsk_fd(&self) -> Option<RawFd> {
        None
    }

    /// True for a port that keeps pool frames in a kernel fill ring (an
    /// AF_XDP socket): the worker shares its pool among them.
    fn fills(&self) -> bool {
        false
    }

    /// How many frames the port may keep in its fill ring, the worker's
    /// share for it (see [`afxdp::fill_share`]).
    fn set_fill_target(&mut self, _frames: u32) {}
}
