//! Frames on their way out: what a port's `send` takes ([`TxFrame`]), the
//! per-port lists a batch's frames are queued on ([`Outputs`]), and
//! flooding. Below the stages, so that ports, the worker and every stage
//! that sends a frame share them without importing each other.

use crate::counters::WorkerCounters;
use crate::drop::DropReason;
use crate::gso::segment::{segment, segment_partial};
use crate::gso::{Gso, complete};
use crate::pool::{FRAME_CAPACITY, FramePool};
use crate::snapshot::{PortEntry, Snapshot};
use crate::{MAX_PORTS, PortId};

/// A frame queued for transmission: what a port's `send` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxFrame {
    pub addr: u32,
    pub len: u32,
    /// Where the frame came in, for counting a drop at transmit time.
    pub in_port: PortId,
    /// A GSO frame (only ever handed to a port that [takes it
    /// whole](crate::port::Port::takes_gso)), or a whole packet whose
    /// checksum is [partial](Gso::partial) (handed as it is to a port whose
    /// entry says `tx_csum`; every port completes one it cannot hand on).
    pub gso: Gso,
}

impl TxFrame {
    /// A plain frame (not GSO).
    #[inline]
    pub fn new(addr: u32, len: u32, in_port: PortId) -> Self {
        TxFrame {
            addr,
            len,
            in_port,
            gso: Gso::NONE,
        }
    }
}

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

/// Which pod ports a flood reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    /// Every pod port that is up except the one the frame came in on.
    Others,
    /// Every pod port that is up, the port of `in_port` (the frame that
    /// needed it) included: for frames the switch sends itself (an ARP
    /// request, a neighbour solicitation), whose target may sit behind
    /// that port.
    All,
}

/// Queues `frame` on `port`: whole, or, for a GSO frame toward a port
/// that cannot take it, cut into the packets it stands for (one frame
/// each, see [`crate::gso::segment`]; their checksums left partial toward
/// a port that has the kernel complete them, `PortEntry::tx_csum`). A
/// whole packet with a partial checksum goes as it is to such a port and
/// is completed first for any other. A frame in a big buffer that is not
/// GSO goes whole only to a port that takes big frames; elsewhere it is
/// copied into a regular frame if it fits one (an ICMP error written over
/// a GSO frame), else dropped as `malformed` (a jumbo frame from a TAP:
/// longer than the port accepts). So AF_XDP rings only ever get regular
/// frames.
#[inline]
pub fn send(
    snap: &Snapshot,
    pool: &mut FramePool,
    outputs: &mut Outputs,
    counters: &WorkerCounters,
    frame: TxFrame,
    port: PortId,
) {
    if frame.gso == Gso::NONE && pool.in_umem(frame.addr) {
        outputs.push(port, frame);
    } else {
        send_big(snap, pool, outputs, counters, frame, port);
    }
}

#[inline(never)]
fn send_big(
    snap: &Snapshot,
    pool: &mut FramePool,
    outputs: &mut Outputs,
    counters: &WorkerCounters,
    mut frame: TxFrame,
    port: PortId,
) {
    let entry = snap.port(port);
    if frame.gso.is_partial() {
        // One packet with a partial checksum: as it is to a port that
        // completes checksums, else completed here.
        let whole = |e: &PortEntry| e.tx_csum && (e.gso || pool.in_umem(frame.addr));
        if entry.is_some_and(whole) {
            outputs.push(port, frame);
            return;
        }
        complete(pool.data_mut(frame.addr, frame.len), frame.gso);
        frame.gso = Gso::NONE;
        if pool.in_umem(frame.addr) {
            outputs.push(port, frame);
            return;
        }
    }
    if entry.is_some_and(|e| e.gso) {
        outputs.push(port, frame);
        return;
    }
    let in_port = frame.in_port;
    let (reason, n) = if frame.gso.is_some() {
        // Toward a port that has the kernel complete checksums, the
        // segments' are left partial (no pass over their payload).
        let result = if entry.is_some_and(|e| e.tx_csum) {
            let out = |_: &mut FramePool, addr, len, gso| {
                outputs.push(
                    port,
                    TxFrame {
                        addr,
                        len,
                        in_port,
                        gso,
                    },
                )
            };
            segment_partial(pool, frame.addr, frame.len, frame.gso, out)
        } else {
            let out =
                |_: &mut FramePool, addr, len| outputs.push(port, TxFrame::new(addr, len, in_port));
            segment(pool, frame.addr, frame.len, frame.gso, out)
        };
        match result {
            Ok((_, lost)) => (DropReason::NoBuffer, lost),
            Err(_) => (DropReason::BadOffload, 1),
        }
    } else if frame.len <= FRAME_CAPACITY {
        match pool.copy_frame(frame.addr, frame.len) {
            Some(copy) => {
                outputs.push(port, TxFrame::new(copy, frame.len, in_port));
                (DropReason::NoBuffer, 0)
            }
            None => (DropReason::NoBuffer, 1),
        }
    } else {
        (DropReason::Malformed, 1)
    };
    if n > 0 {
        counters.port(in_port).drop(reason, n as u64);
    }
    pool.free(frame.addr);
}

/// Queues `frame` on the pod ports `scope` names: the last target gets the
/// frame itself, the others a copy; a copy without a free buffer is
/// dropped as `no_buffer` (on `frame.in_port`).
#[inline]
pub fn flood(
    snap: &Snapshot,
    pool: &mut FramePool,
    outputs: &mut Outputs,
    counters: &WorkerCounters,
    frame: TxFrame,
    scope: Flood,
) {
    let TxFrame {
        addr,
        len,
        in_port,
        gso,
    } = frame;
    // A plain frame is queued as it is; a GSO, partial or big one through
    // `send` (each copy: the targets may differ in what they take).
    let plain = gso == Gso::NONE && pool.in_umem(addr);
    let skip_in_port = scope == Flood::Others;
    let mut last: Option<PortId> = None;
    for &target in &snap.flood {
        if skip_in_port && target == in_port {
            continue;
        }
        if let Some(prev) = last {
            match pool.copy_frame(addr, len) {
                Some(copy) if plain => outputs.push(prev, TxFrame::new(copy, len, in_port)),
                Some(copy) => {
                    let f = TxFrame {
                        addr: copy,
                        len,
                        in_port,
                        gso,
                    };
                    send(snap, pool, outputs, counters, f, prev);
                }
                None => counters.port(in_port).drop(DropReason::NoBuffer, 1),
            }
        }
        last = Some(target);
    }
    match last {
        Some(port) if plain => outputs.push(port, TxFrame::new(addr, len, in_port)),
        Some(port) => send(snap, pool, outputs, counters, frame, port),
        None => {
            // Nowhere to go (the flood list is the snapshot's, so this only
            // happens when no other pod port is up).
            counters.port(in_port).drop(DropReason::NoDestination, 1);
            pool.free(addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l2::fdb::FdbView;
    use crate::pipeline::csum;
    use crate::snapshot::PortEntry;
    use crate::test_frames::{partial_of, v4, v6, verifies};

    /// A frame with its TCP or UDP checksum partial, in `pool`, marked so.
    fn partial_frame(pool: &mut FramePool, v6_: bool, tcp: bool) -> (TxFrame, Vec<u8>) {
        let good = if v6_ { v6 } else { v4 }(tcp, b"some payload, odd: 7");
        let (at, partial) = partial_of(&good);
        let mut f = good.clone();
        f[at..at + 2].copy_from_slice(&partial.to_be_bytes());
        let ethertype = u16::from_be_bytes([f[12], f[13]]);
        let gso = csum::mark(&f, ethertype).expect("marked partial");
        let (addr, len) = pool.write_frame(&f).unwrap();
        (
            TxFrame {
                addr,
                len,
                in_port: 0,
                gso,
            },
            good,
        )
    }

    fn drain(outputs: &mut Outputs) -> Vec<(PortId, TxFrame)> {
        let mut out = Vec::new();
        while let Some((port, list)) = outputs.next_dirty() {
            out.extend(list.iter().map(|f| (port, *f)));
            list.clear();
        }
        out.sort_by_key(|(p, _)| *p);
        out
    }

    /// Ports 0, 1 and 2; port 1 has the kernel complete checksums.
    fn snap_port_1_completes() -> Snapshot {
        let mut takes = PortEntry::new(1, 0);
        takes.tx_csum = true;
        let entries = vec![PortEntry::new(0, 0), takes, PortEntry::new(2, 0)];
        Snapshot::build(1, entries, FdbView::default())
    }

    #[test]
    fn a_partial_checksum_goes_as_it_is_only_to_a_port_that_completes_it() {
        let snap = snap_port_1_completes();
        let counters = WorkerCounters::new();
        for (v6_, tcp) in [(false, true), (false, false), (true, true), (true, false)] {
            let mut pool = FramePool::new(64);
            let mut outputs = Outputs::new();
            let (f1, good) = partial_frame(&mut pool, v6_, tcp);
            let (f2, _) = partial_frame(&mut pool, v6_, tcp);
            let partial_bytes = pool.data(f1.addr, f1.len).to_vec();
            send(&snap, &mut pool, &mut outputs, &counters, f1, 1);
            send(&snap, &mut pool, &mut outputs, &counters, f2, 2);
            let out = drain(&mut outputs);
            assert_eq!(out.len(), 2);
            // Port 1 completes checksums: the frame goes untouched, marked.
            assert_eq!(out[0].1.gso, f1.gso);
            assert_eq!(pool.data(out[0].1.addr, out[0].1.len), &partial_bytes[..]);
            // Port 2 does not: completed here, as the sender would have.
            assert_eq!(out[1].1.gso, Gso::NONE);
            assert_eq!(pool.data(out[1].1.addr, out[1].1.len), &good[..]);
            assert!(verifies(pool.data(out[1].1.addr, out[1].1.len)));
        }
    }

    #[test]
    fn each_copy_of_a_flooded_partial_frame_gets_what_its_port_takes() {
        let snap = snap_port_1_completes();
        let counters = WorkerCounters::new();
        let mut pool = FramePool::new(64);
        let mut outputs = Outputs::new();
        let (f, good) = partial_frame(&mut pool, false, true);
        let partial_bytes = pool.data(f.addr, f.len).to_vec();
        flood(&snap, &mut pool, &mut outputs, &counters, f, Flood::Others);
        let out = drain(&mut outputs);
        assert_eq!(out.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [1, 2]);
        assert_ne!(out[0].1.addr, out[1].1.addr, "separate buffers");
        assert_eq!(out[0].1.gso, f.gso);
        assert_eq!(pool.data(out[0].1.addr, out[0].1.len), &partial_bytes[..]);
        assert_eq!(out[1].1.gso, Gso::NONE);
        assert_eq!(pool.data(out[1].1.addr, out[1].1.len), &good[..]);
    }
}
