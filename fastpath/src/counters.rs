//! Per-worker packet counters.
//!
//! Each worker owns one [`WorkerCounters`]: a cache-padded block of plain
//! counters per port id. Only the owning worker writes (a relaxed load and
//! store, no atomic read-modify-write); the controller reads and sums the
//! blocks of all workers when asked. Counters only grow; the controller keeps
//! a baseline per port so a reused port id starts from zero.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

use crate::drop::DropReason;
use crate::{MAX_PORTS, PortId};

/// Counters of one port as seen by one worker.
#[derive(Default)]
pub struct PortCounterBlock {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    drops: [AtomicU64; DropReason::COUNT],
}

#[inline]
fn bump(c: &AtomicU64, n: u64) {
    // Single writer: a plain load and store is enough and avoids a locked
    // instruction per update.
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl PortCounterBlock {
    #[inline]
    pub fn rx(&self, packets: u64, bytes: u64) {
        bump(&self.rx_packets, packets);
        bump(&self.rx_bytes, bytes);
    }

    #[inline]
    pub fn tx(&self, packets: u64, bytes: u64) {
        bump(&self.tx_packets, packets);
        bump(&self.tx_bytes, bytes);
    }

    #[inline]
    pub fn drop(&self, reason: DropReason, n: u64) {
        bump(&self.drops[reason.index()], n);
    }

    /// A copy of the current values.
    pub fn read(&self) -> PortCounterValues {
        let mut drops = [0u64; DropReason::COUNT];
        for (d, c) in drops.iter_mut().zip(&self.drops) {
            *d = c.load(Relaxed);
        }
        PortCounterValues {
            rx_packets: self.rx_packets.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            tx_packets: self.tx_packets.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            drops,
        }
    }
}

/// Plain values of a port's counters; summable and subtractable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounterValues {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: [u64; DropReason::COUNT],
}

impl PortCounterValues {
    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &PortCounterValues) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        for (a, b) in self.drops.iter_mut().zip(&o.drops) {
            *a += b;
        }
    }

    /// `self - base`, for counters read against a baseline.
    pub fn since(&self, base: &PortCounterValues) -> PortCounterValues {
        let mut drops = [0u64; DropReason::COUNT];
        for (i, d) in drops.iter_mut().enumerate() {
            *d = self.drops[i].wrapping_sub(base.drops[i]);
        }
        PortCounterValues {
            rx_packets: self.rx_packets.wrapping_sub(base.rx_packets),
            rx_bytes: self.rx_bytes.wrapping_sub(base.rx_bytes),
            tx_packets: self.tx_packets.wrapping_sub(base.tx_packets),
            tx_bytes: self.tx_bytes.wrapping_sub(base.tx_bytes),
            drops,
        }
    }

    /// The count of one drop reason.
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }
}

/// All port counters of one worker.
pub struct WorkerCounters {
    ports: Box<[CachePadded<PortCounterBlock>]>,
}

impl Default for WorkerCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerCounters {
    pub fn new() -> Self {
        let ports = (0..MAX_PORTS)
            .map(|_| CachePadded::new(PortCounterBlock::default()))
            .collect();
        WorkerCounters { ports }
    }

    /// The block of port `id`.
    #[inline]
    pub fn port(&self, id: PortId) -> &PortCounterBlock {
        &self.ports[usize::from(id) % MAX_PORTS]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_baselines() {
        let w = WorkerCounters::new();
        w.port(3).rx(2, 128);
        w.port(3).drop(DropReason::Runt, 1);
        let base = w.port(3).read();
        w.port(3).rx(1, 64);
        w.port(3).tx(5, 320);
        let d = w.port(3).read().since(&base);
        assert_eq!(
            (d.rx_packets, d.rx_bytes, d.tx_packets, d.tx_bytes),
            (1, 64, 5, 320)
        );
        assert_eq!(d.drop_count(DropReason::Runt), 0);
        assert_eq!(w.port(3).read().drop_count(DropReason::Runt), 1);
        assert_eq!(w.port(4).read(), PortCounterValues::default());
    }
}
