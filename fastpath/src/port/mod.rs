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
}

/// A source and sink of Ethernet frames owned by one worker.
pub trait Port: Send {
    /// Receives up to `out.len()` frames into pool frames. Each received
    /// frame is reported as `(addr, len)` and is held by the worker.
    fn rx_burst(&mut self, pool: &mut FramePool, out: &mut [(u32, u32)])
    -> Result<usize, PortGone>;

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
}
