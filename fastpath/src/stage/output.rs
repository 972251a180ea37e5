//! Carry out the verdicts.
//!
//! Dropped frames are counted on their ingress port and freed (the one
//! exception, `tx_ring_full`, is counted on the port that could not take
//! the frame). Unicast
//! frames are queued on their output port's list. A flood is queued on every
//! up port but the ingress one: the last target gets the original frame, the
//! others a copy (the only copy on the L2 path); when no buffer is free for a
//! copy, that copy is dropped as `no_buffer`.
//!
//! The worker then transmits each list in one burst (or hands it to the
//! port's owning worker), see [`crate::worker`].

use crate::batch::TxFrame;
use crate::batch::{Batch, Verdict};
use crate::counters::WorkerCounters;
use crate::drop::DropReason;
use crate::pool::FramePool;
use crate::snapshot::Snapshot;
use crate::{MAX_PORTS, PortId};

/// Per-port lists of frames to send, and which lists are non-empty.
pub struct Outputs {
    lists: Vec<Vec<TxFrame>>,
    dirty: Vec<PortId>,
}

impl Default for Outputs {
    fn default() -> Self {
        Self::new()
    }
}

impl Outputs {
    pub fn new() -> Self {
        Outputs {
            lists: (0..MAX_PORTS).map(|_| Vec::new()).collect(),
            dirty: Vec::with_capacity(MAX_PORTS),
        }
    }

    /// Queues a frame on `port`.
    #[inline]
    pub fn push(&mut self, port: PortId, f: TxFrame) {
        let list = &mut self.lists[usize::from(port) % MAX_PORTS];
        if list.is_empty() {
            if list.capacity() == 0 {
                // Once per port for the life of the worker, not per packet.
                list.reserve(crate::batch::BATCH_SIZE);
            }
            self.dirty.push(port);
        }
        list.push(f);
    }

    /// Takes the next non-empty list. The caller must `clear` the list
    /// (keeping its capacity) once it has sent or freed every frame.
    #[inline]
    pub fn next_dirty(&mut self) -> Option<(PortId, &mut Vec<TxFrame>)> {
        let port = self.dirty.pop()?;
        Some((port, &mut self.lists[usize::from(port) % MAX_PORTS]))
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.dirty.is_empty()
    }
}

/// Queues or drops every frame of the batch according to its verdict.
#[inline]
pub fn run(
    batch: &Batch,
    snap: &Snapshot,
    pool: &mut FramePool,
    outputs: &mut Outputs,
    counters: &WorkerCounters,
) {
    for p in batch.pkts() {
        match p.verdict {
            Verdict::Unicast(port) => outputs.push(
                port,
                TxFrame {
                    addr: p.addr,
                    len: p.len,
                    in_port: p.in_port,
                },
            ),
            Verdict::Flood => flood(snap, pool, outputs, counters, p.addr, p.len, p.in_port),
            Verdict::Drop(reason) => {
                counters.port(p.in_port).drop(reason, 1);
                pool.free(p.addr);
            }
            Verdict::Consumed => pool.free(p.addr),
            Verdict::Held => {}
            Verdict::Pending => {
                // Every stage sets a verdict for live frames; a frame left
                // pending has had no decision, so it goes nowhere.
                counters.port(p.in_port).drop(DropReason::NoDestination, 1);
                pool.free(p.addr);
            }
        }
    }
}

/// Queues a frame on every pod port that is up except `in_port`: the last
/// target gets the frame itself, the others a copy; a copy without a free
/// buffer is dropped as `no_buffer`.
#[inline]
pub fn flood(
    snap: &Snapshot,
    pool: &mut FramePool,
    outputs: &mut Outputs,
    counters: &WorkerCounters,
    addr: u32,
    len: u32,
    in_port: PortId,
) {
    flood_except(snap, pool, outputs, counters, addr, len, in_port, true);
}

/// Queues a frame the switch itself sends (an ARP request, a neighbour
/// solicitation) on every pod port that is up, the port of `in_port` (the
/// frame that needed it) included: the neighbour may sit behind that port.
#[inline]
pub fn flood_all(
    snap: &Snapshot,
    pool: &mut FramePool,
    outputs: &mut Outputs,
    counters: &WorkerCounters,
    addr: u32,
    len: u32,
    in_port: PortId,
) {
    flood_except(snap, pool, outputs, counters, addr, len, in_port, false);
}

#[allow(clippy::too_many_arguments)]
#[inline]
fn flood_except(
    snap: &Snapshot,
    pool: &mut FramePool,
    outputs: &mut Outputs,
    counters: &WorkerCounters,
    addr: u32,
    len: u32,
    in_port: PortId,
    skip_in_port: bool,
) {
    let mut last: Option<PortId> = None;
    for &target in &snap.flood {
        if skip_in_port && target == in_port {
            continue;
        }
        if let Some(prev) = last {
            match pool.copy_frame(addr, len) {
                Some(copy) => outputs.push(
                    prev,
                    TxFrame {
                        addr: copy,
                        len,
                        in_port,
                    },
                ),
                None => counters.port(in_port).drop(DropReason::NoBuffer, 1),
            }
        }
        last = Some(target);
    }
    match last {
        Some(port) => outputs.push(port, TxFrame { addr, len, in_port }),
        None => {
            // Nowhere to go (the flood list is the snapshot's, so this only
            // happens when no other pod port is up).
            counters.port(in_port).drop(DropReason::NoDestination, 1);
            pool.free(addr);
        }
    }
}
