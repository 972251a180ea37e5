//! A flow's shared state and what it implies: the TCP flags and replies
//! seen, the time of the last packet, the timeout that follows from them
//! (kernel-like values, the constants below) and the state `ct list` shows.
//!
//! Both records of a flow, and any worker's cached entry of it, point to
//! one [`Flow`]. Its state changes only through this module's methods,
//! with relaxed atomics, so either direction may be handled by any worker
//! without a lock. Once marked dead, a flow never comes alive again: every
//! removal from the table marks it so first, and that is what makes cached
//! entries of removed flows miss.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};

use crate::services::table::PROTO_TCP;

/// TCP: only the client has spoken.
pub const TCP_SYN_SENT_MS: u64 = 60_000;
/// TCP: the endpoint has answered, the client has not acknowledged it (a
/// SYN answered by a SYN-ACK, never confirmed: what a SYN flood leaves;
/// nf_conntrack's `syn_recv` timeout).
pub const TCP_SYN_RECV_MS: u64 = 60_000;
/// TCP: the client has spoken after the endpoint's answer (the handshake's
/// ACK): established (nf_conntrack's default is 5 days; kube-proxy sets 1
/// day).
pub const TCP_ESTABLISHED_MS: u64 = 86_400_000;
/// TCP: one side has sent a FIN.
pub const TCP_HALF_CLOSED_MS: u64 = 120_000;
/// TCP: both FINs or a RST seen.
pub const TCP_CLOSED_MS: u64 = 10_000;
/// UDP (and other datagrams) never answered.
pub const UDP_UNREPLIED_MS: u64 = 30_000;
/// UDP answered at least once.
pub const UDP_REPLIED_MS: u64 = 120_000;

/// TCP flag bits (byte 13 of the header).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

// Flow state bits.
const REPLIED: u8 = 1;
const FIN_ORIG: u8 = 2;
const FIN_REPLY: u8 = 4;
const RST: u8 = 8;
pub(super) const DEAD: u8 = 16;
/// TCP: the client acknowledged the endpoint's answer (the handshake's
/// ACK), or the endpoint answered a flow picked up mid-stream.
const CONFIRMED: u8 = 32;
/// TCP: the flow's first packet was not a SYN (picked up mid-stream, after
/// a restart or a flush): the endpoint's first answer confirms it.
const PICKED_UP: u8 = 64;

/// What one flow shares between its two records.
#[derive(Debug)]
pub struct Flow {
    /// Packed key of the Service ([`crate::services::table::service_key`]).
    pub service: u64,
    /// Packed endpoint ([`crate::services::table::endpoint`]).
    pub backend: u64,
    pub proto: u8,
    bits: AtomicU8,
    last: AtomicU64,
}

impl Flow {
    /// A flow that has seen nothing yet but its first packet, at `now`.
    #[inline]
    pub(super) fn new(service: u64, backend: u64, proto: u8, now: u64) -> Flow {
        Flow {
            service,
            backend,
            proto,
            bits: AtomicU8::new(0),
            last: AtomicU64::new(now),
        }
    }

    /// A copy of `f`'s state now (a scratch table's flow, see `copy`).
    pub(super) fn copy_of(f: &Flow) -> Flow {
        Flow {
            service: f.service,
            backend: f.backend,
            proto: f.proto,
            bits: AtomicU8::new(f.bits()),
            last: AtomicU64::new(f.last()),
        }
    }

    #[inline]
    pub(super) fn bits(&self) -> u8 {
        self.bits.load(Relaxed)
    }

    /// The time of the flow's last packet.
    #[inline]
    pub(super) fn last(&self) -> u64 {
        self.last.load(Relaxed)
    }

    /// Whether the endpoint has answered.
    pub fn replied(&self) -> bool {
        self.bits() & REPLIED != 0
    }

    /// Whether the flow is established: answered, and for TCP confirmed by
    /// the client after the answer. Flows that are not are embryonic: they
    /// stay in the eviction queue, and a full table evicts them.
    pub fn established(&self) -> bool {
        established(self.proto, self.bits())
    }

    /// How long the flow lives without traffic, given its state.
    pub fn timeout_ms(&self) -> u64 {
        timeout_ms(self.proto, self.bits())
    }

    /// The flow's state for display.
    pub fn state(&self) -> FlowState {
        let b = self.bits();
        if self.proto != PROTO_TCP {
            return FlowState::Open;
        }
        if b & RST != 0 || b & (FIN_ORIG | FIN_REPLY) == FIN_ORIG | FIN_REPLY {
            FlowState::Closing
        } else if b & CONFIRMED != 0 {
            FlowState::Established
        } else if b & REPLIED != 0 {
            FlowState::SynRecv
        } else {
            FlowState::SynSent
        }
    }

    #[inline]
    pub(super) fn expired(&self, now: u64) -> bool {
        let b = self.bits();
        b & DEAD != 0 || now.saturating_sub(self.last.load(Relaxed)) > timeout_ms(self.proto, b)
    }

    pub(super) fn kill(&self) {
        self.bits.fetch_or(DEAD, Relaxed);
    }

    /// Marks a TCP flow whose first packet was not a SYN (see [`PICKED_UP`]).
    pub(super) fn pick_up(&self) {
        self.bits.fetch_or(PICKED_UP, Relaxed);
    }

    /// Records a packet of the flow: its direction (a reply marks the flow
    /// answered; the client's ACK after it, neither SYN nor RST, confirms a
    /// TCP flow), TCP FIN/RST, and the time.
    #[inline]
    pub(super) fn touch(&self, orig: bool, tcp: Option<u8>, now: u64) {
        // The TCP flags by full path: `RST` alone is this module's state bit.
        let (syn, rst, ack) = (tcp_flags::SYN, tcp_flags::RST, tcp_flags::ACK);
        let bits = self.bits();
        let mut set = 0;
        if orig {
            // A retransmitted SYN or a RST (a flooder's kernel refusing
            // the answer to a SYN it never sent) confirms nothing.
            if bits & REPLIED != 0 && tcp.is_some_and(|f| f & (syn | rst | ack) == ack) {
                set |= CONFIRMED;
            }
        } else {
            set |= REPLIED;
            if bits & PICKED_UP != 0 && tcp.is_some_and(|f| f & rst == 0) {
                set |= CONFIRMED;
            }
        }
        if let Some(f) = tcp {
            if f & tcp_flags::RST != 0 {
                set |= RST;
            }
            if f & tcp_flags::FIN != 0 {
                set |= if orig { FIN_ORIG } else { FIN_REPLY };
            }
        }
        // The time first: a sweep that sees new flags (a shorter
        // timeout) must also see this packet's time.
        if self.last.load(Relaxed) != now {
            self.last.store(now, Relaxed);
        }
        if set != 0 && bits & set != set {
            self.bits.fetch_or(set, Relaxed);
        }
    }
}

/// Whether a packet with TCP flags `tcp` in direction `orig` opens a new
/// connection over a closing flow with the same tuple (port reuse).
#[inline]
pub(super) fn reopens(orig: bool, flow: &Flow, tcp: Option<u8>) -> bool {
    orig && tcp.is_some_and(|f| f & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN)
        && flow.state() == FlowState::Closing
}

/// The state of a flow as `ct list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    SynSent,
    SynRecv,
    Established,
    Closing,
    Open,
}

/// Whether a flow of protocol `proto` with state bits `bits` is
/// established (see [`Flow::established`]).
#[inline]
fn established(proto: u8, bits: u8) -> bool {
    if proto == PROTO_TCP {
        bits & CONFIRMED != 0
    } else {
        bits & REPLIED != 0
    }
}

/// The timeout for a flow of protocol `proto` with state bits `bits`.
fn timeout_ms(proto: u8, bits: u8) -> u64 {
    if proto == PROTO_TCP {
        if bits & RST != 0 || bits & (FIN_ORIG | FIN_REPLY) == FIN_ORIG | FIN_REPLY {
            TCP_CLOSED_MS
        } else if bits & (FIN_ORIG | FIN_REPLY) != 0 {
            TCP_HALF_CLOSED_MS
        } else if bits & CONFIRMED != 0 {
            TCP_ESTABLISHED_MS
        } else if bits & REPLIED != 0 {
            TCP_SYN_RECV_MS
        } else {
            TCP_SYN_SENT_MS
        }
    } else if bits & REPLIED != 0 {
        UDP_REPLIED_MS
    } else {
        UDP_UNREPLIED_MS
    }
}
