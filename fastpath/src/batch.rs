//! A batch of frames moving through the pipeline together.

use crate::drop::DropReason;
use crate::gso::Gso;
use crate::{MacKey, PortId};

/// Most frames in one batch (one RX burst).
pub const BATCH_SIZE: usize = 64;

/// What happens to a frame; stages refine it, the output stage carries it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided yet.
    Pending,
    /// Send on one port.
    Unicast(PortId),
    /// Send on every other port.
    Flood,
    /// Drop, counted on the ingress port under this reason.
    Drop(DropReason),
    /// The switch itself was the recipient (an ARP reply to it): freed, not
    /// a drop.
    Consumed,
    /// Moved out of the batch to wait for neighbour resolution; the frame
    /// is no longer the batch's to free.
    Held,
    /// The switch rewrote the frame into an answer to its sender (an ICMP
    /// error, a TCP reset); the routing stage sends it back the way the
    /// original came.
    Reply,
}

/// One frame of a batch: where its bytes are and what was learnt about it.
#[derive(Debug, Clone, Copy)]
pub struct Pkt {
    /// Canonical frame address in the worker's pool.
    pub addr: u32,
    pub len: u32,
    pub in_port: PortId,
    pub verdict: Verdict,
    /// Destination and source MAC, filled by the parse stage.
    pub dst: MacKey,
    pub src: MacKey,
    /// EtherType, filled by the parse stage.
    pub ethertype: u16,
    /// Where the transport header starts (from the frame's start): set by
    /// the parse stage, while the switch routes, for IPv4 (after the
    /// header's own length, when that is sane) and IPv6 (after the fixed
    /// header), 0 otherwise. The stages that read it (VXLAN, Services,
    /// routing) run only while the switch routes; stages that rewrite the
    /// frame's L3 header keep it true.
    pub l4: u16,
    /// The frame arrived inside VXLAN and was unwrapped: what the switch
    /// answers it with goes back through the tunnel.
    pub tunneled: bool,
    /// A GSO frame from a TAP port with offloads: one packet standing for
    /// several (see [`crate::gso`]).
    pub gso: Gso,
}

impl Pkt {
    /// A frame just received.
    #[inline]
    pub fn new(addr: u32, len: u32, in_port: PortId) -> Self {
        Pkt {
            addr,
            len,
            in_port,
            verdict: Verdict::Pending,
            dst: 0,
            src: 0,
            ethertype: 0,
            l4: 0,
            tunneled: false,
            gso: Gso::NONE,
        }
    }

    /// True while no stage has decided to drop the frame.
    #[inline]
    pub fn alive(&self) -> bool {
        !matches!(
            self.verdict,
            Verdict::Drop(_) | Verdict::Consumed | Verdict::Held
        )
    }

    /// True while no stage has decided anything about the frame.
    #[inline]
    pub fn pending(&self) -> bool {
        self.verdict == Verdict::Pending
    }
}

/// Up to [`BATCH_SIZE`] frames, all from one ingress port.
pub struct Batch {
    pkts: [Pkt; BATCH_SIZE],
    len: usize,
    /// Frames may be GSO frames or larger than a regular frame: they came
    /// from a TAP port with offloads, or were held (from any port). Only
    /// such batches pay for the checks (see [`Batch::set_big`]).
    big: bool,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    pub fn new() -> Self {
        Batch {
            pkts: [Pkt::new(0, 0, 0); BATCH_SIZE],
            len: 0,
            big: false,
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == BATCH_SIZE
    }

    #[inline]
    pub fn clear(&mut self) {
        self.len = 0;
        self.big = false;
    }

    /// Marks the batch as one whose frames may be GSO or big frames (from a
    /// port that [takes GSO](crate::port::Port::takes_gso), or held ones).
    #[inline]
    pub fn set_big(&mut self) {
        self.big = true;
    }

    /// See [`Batch::set_big`].
    #[inline]
    pub fn may_be_big(&self) -> bool {
        self.big
    }

    /// Appends a frame; returns false (and does nothing) when full.
    #[inline]
    pub fn push(&mut self, pkt: Pkt) -> bool {
        if self.len == BATCH_SIZE {
            return false;
        }
        self.pkts[self.len] = pkt;
        self.len += 1;
        true
    }

    #[inline]
    pub fn pkts(&self) -> &[Pkt] {
        &self.pkts[..self.len]
    }

    #[inline]
    pub fn pkts_mut(&mut self) -> &mut [Pkt] {
        &mut self.pkts[..self.len]
    }
}
