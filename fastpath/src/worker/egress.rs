//! Where a worker's frames leave it: its per-port lists sent on local
//! ports or handed to the owning worker, frames other workers hand it, and
//! the frames they have finished copying.

use super::handoff::{HANDOFF_DEPTH, HandoffDesc};
use super::{NO_SLOT, Worker};
use crate::MAX_PORTS;
use crate::batch::BATCH_SIZE;
use crate::drop::DropReason;
use crate::gso;
use crate::observe::Dir;
use crate::snapshot::Snapshot;
use crate::tx::TxFrame;

impl Worker {
    /// Sends every queued list: on a local port (this worker's queue of
    /// it), or to a worker that owns one of its queues.
    ///
    /// Drops are counted on the frame's ingress port, except `tx_ring_full`,
    /// which is counted on the port whose ring (or handoff queue) was full.
    pub(super) fn flush(&mut self, snap: &Snapshot) {
        while let Some((port, list)) = self.outputs.next_dirty() {
            let slot = usize::from(self.slot_of[usize::from(port) % MAX_PORTS]);
            let local_up = slot != usize::from(NO_SLOT) && self.ports[slot].up;
            if local_up {
                // Frames are captured where they are sent: a frame handed to
                // another worker is captured there, once.
                if !self.watches.is_empty() && self.watches.iter().any(|w| w.wants_tx(port)) {
                    let frames = list.iter().map(|f| (f.addr, f.len));
                    super::watch::capture(&self.watches, &self.pool, port, Dir::Out, frames);
                }
                if self.ports[slot].port.takes_gso() {
                    gso::coalesce::coalesce(&mut self.pool, list);
                }
                let (sent, failed) = match self.ports[slot].port.tx_burst(&mut self.pool, list) {
                    Ok(n) => (n, false),
                    Err(e) => {
                        // Stop using the port at once, not only at the end
                        // of this iteration.
                        self.ports[slot].up = false;
                        self.gone.push((slot, e));
                        (0, true)
                    }
                };
                let failed = failed || (sent < list.len() && self.ports[slot].port.link_down());
                let bytes: u64 = list[..sent].iter().map(|f| u64::from(f.len)).sum();
                self.counters.port(port).tx(sent as u64, bytes);
                for f in &list[sent..] {
                    self.pool.free(f.addr);
                    if failed {
                        self.counters.port(f.in_port).drop(DropReason::PortDown, 1);
                    }
                }
                if !failed {
                    self.counters
                        .port(port)
                        .drop(DropReason::TxRingFull, (list.len() - sent) as u64);
                }
            } else if let Some(w) = snap
                .port(port)
                .filter(|e| e.up)
                .and_then(|e| e.tx_worker(self.id))
                .filter(|&w| w != self.id && w < self.in_transit.len())
            {
                let queue = self.mesh.forward(self.id, w);
                for f in list.iter() {
                    // A frame the worker does not hold (a bug elsewhere) is
                    // not handed on: counted, left to its owner. (Ports
                    // check the frames they are given themselves.)
                    if !self.pool.holds(f.addr) {
                        self.pool.error();
                        continue;
                    }
                    let desc = HandoffDesc {
                        addr: f.addr,
                        len: f.len,
                        port,
                        in_port: f.in_port,
                        gso: f.gso,
                    };
                    if self.in_transit[w] < HANDOFF_DEPTH && queue.push(desc).is_ok() {
                        self.pool.mark_handoff(f.addr);
                        self.in_transit[w] += 1;
                    } else {
                        self.pool.free(f.addr);
                        self.counters.port(port).drop(DropReason::TxRingFull, 1);
                    }
                }
                self.mesh.waker(w).wake();
            } else {
                for f in list.iter() {
                    self.pool.free(f.addr);
                    self.counters.port(f.in_port).drop(DropReason::PortDown, 1);
                }
            }
            list.clear();
        }
    }

    /// Copies frames other workers handed over into this pool and sends them.
    pub(super) fn receive_handoffs(&mut self, snap: &Snapshot) -> usize {
        let mut work = 0;
        for src in 0..self.mesh.workers() {
            if src == self.id {
                continue;
            }
            // Look before cloning: the clone writes a shared reference count.
            if self.mesh.forward(src, self.id).is_empty() {
                continue;
            }
            let mesh = self.mesh.clone();
            let queue = mesh.forward(src, self.id);
            let mut n = 0;
            while n < BATCH_SIZE {
                let Some(d) = queue.pop() else { break };
                n += 1;
                match self.pool.alloc_for(d.len) {
                    Some(addr) => {
                        // SAFETY: `src` handed us this frame and does not
                        // touch it until we push its address back below.
                        let bytes = unsafe { mesh.view(src).read(d.addr, d.len) };
                        let dst = self.pool.data_mut(addr, bytes.len() as u32);
                        let len = dst.len().min(bytes.len());
                        dst[..len].copy_from_slice(&bytes[..len]);
                        self.outputs.push(
                            d.port,
                            TxFrame {
                                addr,
                                len: len as u32,
                                in_port: d.in_port,
                                gso: d.gso,
                            },
                        );
                    }
                    None => self.counters.port(d.in_port).drop(DropReason::NoBuffer, 1),
                }
                // Cannot fail: `src` never has more frames in transit to us
                // than the return queue holds.
                let _ = mesh.back(src, self.id).push(d.addr);
            }
            if n > 0 {
                work += n;
                self.flush(snap);
            }
        }
        work
    }

    /// Frees frames that other workers have finished copying.
    pub(super) fn reclaim_returned(&mut self) {
        for dst in 0..self.in_transit.len() {
            if self.in_transit[dst] == 0 {
                continue;
            }
            while let Some(addr) = self.mesh.back(self.id, dst).pop() {
                self.pool.free_returned(addr);
                self.in_transit[dst] -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crossbeam_channel::bounded;

    use super::*;
    use crate::counters::WorkerCounters;
    use crate::pool::FramePool;
    use crate::port::memory::MemPort;
    use crate::services::conntrack::Conntrack;
    use crate::snapshot;
    use crate::worker::handoff::Mesh;
    use crate::worker::{PollMode, WorkerParts, WorkerStatus};

    /// A frame queued for a port that the worker no longer holds (lent to
    /// a ring, freed: a bug elsewhere) is neither sent nor freed again by
    /// the port: counted as a pool error, the rest of the list goes out.
    #[test]
    fn frames_not_held_are_skipped_and_counted() {
        let pool = FramePool::new(64);
        let mesh = Arc::new(Mesh::new(vec![pool.view()]));
        let (_cmd_tx, cmds) = bounded(1);
        let (learn_tx, _learn_rx) = bounded(16);
        let (events, _events_rx) = bounded(16);
        let mut w = Worker::new(WorkerParts {
            id: 0,
            pool,
            snapshot: snapshot::shared(Snapshot::default()),
            counters: Arc::new(WorkerCounters::new()),
            status: Arc::new(WorkerStatus::default()),
            learn_tx,
            cmds,
            events,
            mesh,
            poll: PollMode::Busy,
            conntrack: Arc::new(Conntrack::new(64)),
        });
        let (port, wire) = MemPort::new(1);
        w.add_port(1, Box::new(port));
        let frame = |w: &mut Worker, byte: u8| {
            let (addr, len) = w.pool.write_frame(&[byte; 60]).unwrap();
            TxFrame::new(addr, len, 0)
        };
        let (a, lent, freed, b) = (
            frame(&mut w, 1),
            frame(&mut w, 2),
            frame(&mut w, 3),
            frame(&mut w, 4),
        );
        w.pool.lend(lent.addr, 9);
        w.pool.free(freed.addr);
        for f in [a, lent, freed, b] {
            w.outputs.push(1, f);
        }
        let before = w.pool.counts();
        w.flush(&Snapshot::default());
        let sent: Vec<u8> = wire.lock().unwrap().outbox.iter().map(|f| f[0]).collect();
        assert_eq!(sent, [1, 4]);
        let after = w.pool.counts();
        assert_eq!(after.errors, before.errors + 2);
        assert_eq!((after.lent, after.free), (1, before.free + 2), "{after:?}");
    }
}
