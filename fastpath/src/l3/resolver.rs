//! A worker's own L3 state: packets waiting for a neighbour, the ARP
//! requests it has sent, its ICMP error budget and its neighbour reports.
//!
//! Everything here belongs to one worker; nothing is shared or locked. The
//! neighbour table itself is the controller's (see [`crate::l3::neigh`]): a
//! worker reports what ARP tells it and waits for the next snapshot.
//!
//! Invariant: a held frame belongs to the resolver until it is put back into a
//! batch by [`Resolver::take_held`] or freed as `neighbor_unresolved`.

use std::net::{IpAddr, Ipv4Addr};

use crossbeam_channel::Sender;

use crate::batch::{Batch, Pkt, Verdict};
use crate::counters::WorkerCounters;
use crate::drop::DropReason;
use crate::events::WorkerEvent;
use crate::l3::neigh::NeighEvent;
use crate::l3::table::Link;
use crate::pool::{FRAME_CAPACITY, FramePool};
use crate::snapshot::Snapshot;
use crate::tx::{self, Flood, Outputs, TxFrame};
use crate::wire::{self, arp, ipv6, nd};
use crate::{MacKey, PortId};

/// Most frames one worker holds while their next hop is being resolved.
pub const MAX_HELD: usize = 256;
/// Most held frames that may be GSO or big frames: a worker has few big
/// frames, and its TAP ports with offloads stop reading without one.
pub const MAX_HELD_BIG: usize = 16;
/// How long a frame waits for its next hop before it is dropped.
pub const RESOLVE_TIMEOUT_MS: u64 = 3000;
/// How often held frames are retried when no new snapshot arrives.
pub const RETRY_INTERVAL_MS: u64 = 100;
/// One ARP request per neighbour per this interval.
const ASK_INTERVAL_MS: u64 = 1000;
/// One report per neighbour and MAC per this interval.
const REPORT_HOLDOFF_MS: u64 = 1000;
/// ICMP errors: a burst of this many, then one per millisecond.
const ICMP_BURST: u64 = 100;
const BROADCAST: MacKey = 0xffff_ffff_ffff;

const REPORT_SLOTS: usize = 256;
const ASK_SLOTS: usize = 64;

/// A neighbour to ask for: its address on a link, on behalf of a frame
/// from `in_port` (drops count there), with the MAC it had when this is a
/// refresh.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    pub target: IpAddr,
    pub link: Link,
    pub known: Option<MacKey>,
    pub in_port: PortId,
}

/// See the module documentation.
pub struct Resolver {
    events: Sender<WorkerEvent>,
    reported: Box<[(u128, MacKey, u64); REPORT_SLOTS]>,
    asked: Box<[(u128, u64); ASK_SLOTS]>,
    held: Vec<(Pkt, u64)>,
    /// While held frames are being retried: their addresses and when they
    /// were first held, so that a frame held again keeps its deadline.
    retrying: Vec<(u32, u64)>,
    next_retry: u64,
    icmp_tokens: u64,
    icmp_last: u64,
    /// Neighbour reports lost because the channel was full.
    pub report_overflows: u64,
}

impl Resolver {
    pub fn new(events: Sender<WorkerEvent>) -> Self {
        Resolver {
            events,
            reported: Box::new([(0, 0, 0); REPORT_SLOTS]),
            asked: Box::new([(0, 0); ASK_SLOTS]),
            held: Vec::with_capacity(MAX_HELD),
            retrying: Vec::with_capacity(crate::batch::BATCH_SIZE),
            next_retry: 0,
            icmp_tokens: ICMP_BURST,
            icmp_last: 0,
            report_overflows: 0,
        }
    }

    /// Tells the controller that `ip` is at `mac` behind `port`, unless
    /// that was said very recently.
    #[inline]
    pub fn report(&mut self, ip: IpAddr, mac: MacKey, port: PortId, now: u64) {
        let key = crate::l3::neigh::ip_key(ip);
        let slot = &mut self.reported[(key as usize ^ (key >> 16) as usize) % REPORT_SLOTS];
        if slot.0 == key && slot.1 == mac && now.saturating_sub(slot.2) < REPORT_HOLDOFF_MS {
            return;
        }
        let ev = WorkerEvent::Neighbour(NeighEvent { ip, mac, port });
        if self.events.try_send(ev).is_err() {
            self.report_overflows += 1;
            return;
        }
        *slot = (key, mac, now);
    }

    /// True (and remembered) if an ARP request for `key` may go out now.
    #[inline]
    fn may_ask(&mut self, key: u128, now: u64) -> bool {
        let slot = &mut self.asked[(key as usize ^ (key >> 16) as usize) % ASK_SLOTS];
        if slot.0 == key && now.saturating_sub(slot.1) < ASK_INTERVAL_MS {
            return false;
        }
        *slot = (key, now);
        true
    }

    /// Takes one ICMP error token.
    #[inline]
    pub fn icmp_allowed(&mut self, now: u64) -> bool {
        let refill = now.saturating_sub(self.icmp_last);
        self.icmp_last = now;
        self.icmp_tokens = (self.icmp_tokens + refill).min(ICMP_BURST);
        if self.icmp_tokens == 0 {
            return false;
        }
        self.icmp_tokens -= 1;
        true
    }

    /// Keeps a frame until its next hop resolves; false when the queue is full.
    #[inline]
    pub fn hold(&mut self, p: &Pkt, now: u64) -> bool {
        if self.held.len() >= MAX_HELD {
            return false;
        }
        let big = |p: &Pkt| p.gso.is_some() || p.len > FRAME_CAPACITY;
        if big(p) && self.held.iter().filter(|(h, _)| big(h)).count() >= MAX_HELD_BIG {
            return false;
        }
        let since = self
            .retrying
            .iter()
            .find(|(a, _)| *a == p.addr)
            .map_or(now, |r| r.1);
        if self.held.is_empty() {
            self.next_retry = now + RETRY_INTERVAL_MS;
        }
        self.held.push((*p, since));
        true
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// True when held frames should be tried again: a new snapshot may know
    /// their neighbours (`fresh`), or the retry interval has passed.
    #[inline]
    pub fn retry_due(&self, fresh: bool, now: u64) -> bool {
        !self.held.is_empty() && (fresh || now >= self.next_retry)
    }

    /// Moves up to a batch of held frames back into `batch` (which must be
    /// empty) for another pass through the pipeline; frames past their
    /// deadline are freed and counted as `neighbor_unresolved`.
    pub fn take_held(
        &mut self,
        batch: &mut Batch,
        pool: &mut FramePool,
        counters: &WorkerCounters,
        max: usize,
        now: u64,
    ) {
        self.retrying.clear();
        self.next_retry = now + RETRY_INTERVAL_MS;
        let take = self.held.len().min(crate::batch::BATCH_SIZE).min(max);
        for (mut p, since) in self.held.drain(..take) {
            if now.saturating_sub(since) >= RESOLVE_TIMEOUT_MS {
                counters
                    .port(p.in_port)
                    .drop(DropReason::NeighborUnresolved, 1);
                pool.free(p.addr);
                continue;
            }
            p.verdict = Verdict::Pending;
            batch.push(p);
            self.retrying.push((p.addr, since));
        }
    }

    /// Ends a retry pass (frames held again have taken their deadlines).
    pub fn retried(&mut self) {
        self.retrying.clear();
    }

    /// Asks for neighbour `ask.target` on `ask.link`, unless it was asked
    /// recently: an ARP request (IPv4) or a neighbour solicitation (IPv6).
    /// With a `known` MAC (a refresh) the neighbour is asked directly
    /// instead of by broadcast or multicast.
    pub fn ask(
        &mut self,
        snap: &Snapshot,
        pool: &mut FramePool,
        outputs: &mut Outputs,
        counters: &WorkerCounters,
        ask: Ask,
        now: u64,
    ) {
        let key = match ask.target {
            IpAddr::V4(a) => crate::l3::neigh::ip4_key(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        if !self.may_ask(key, now) {
            return;
        }
        // On the bridge the switch speaks from its address in the target's
        // subnet. On the uplink it has no IPv4 address of its own (the
        // node's address belongs to the node's kernel), so it sends an
        // address probe (sender 0.0.0.0): the neighbour answers to our MAC
        // without learning anything about the node's address. IPv6 asks
        // from the switch's link-local address, so the answer comes back to
        // the router MAC on any link.
        let sender = match (ask.target, ask.link) {
            (IpAddr::V4(a), Link::Bridge) => match snap.l3.on_subnet(u32::from(a)) {
                Some(s) => s,
                None => return,
            },
            _ => 0,
        };
        let Some(addr) = pool.alloc() else {
            counters.port(ask.in_port).drop(DropReason::NoBuffer, 1);
            return;
        };
        let l3 = &snap.l3;
        let frame = pool.data_mut(addr, 128);
        let len = match ask.target {
            IpAddr::V4(target) => wire::arp::write(
                frame,
                ask.known.unwrap_or(BROADCAST),
                arp::REQUEST,
                l3.router_mac,
                Ipv4Addr::from(sender),
                0,
                target,
            ),
            IpAddr::V6(target) => {
                let target = u128::from(target);
                let (dst, eth_dst) = match ask.known {
                    Some(mac) => (target, mac),
                    None => {
                        let sn = ipv6::solicited_node(target);
                        (sn, ipv6::multicast_mac(sn))
                    }
                };
                let (mac, src) = (l3.router_mac, l3.link_local);
                nd::write_solicit(frame, eth_dst, mac, src, dst, target)
            }
        };
        self.send(snap, pool, outputs, counters, ask, addr, len as u32);
    }

    /// Sends a frame the router wrote to a neighbour on `ask.link`.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        snap: &Snapshot,
        pool: &mut FramePool,
        outputs: &mut Outputs,
        counters: &WorkerCounters,
        ask: Ask,
        addr: u32,
        len: u32,
    ) {
        // Drops count on the port of the frame that needed it; a flood goes
        // back there too (the neighbour may be behind it: hairpin).
        let f = TxFrame::new(addr, len, ask.in_port);
        let known_port = match (ask.link, ask.known) {
            (Link::Port(port), _) => Some(port),
            (Link::Bridge, Some(mac)) => snap.fdb.get(mac).map(|slot| slot.port),
            (Link::Bridge, None) => None,
        };
        match known_port {
            Some(port) => outputs.push(port, f),
            None => tx::flood(snap, pool, outputs, counters, f, Flood::All),
        }
    }
}
