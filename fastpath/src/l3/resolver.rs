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
use crate::pool::FramePool;
use crate::snapshot::Snapshot;
use crate::tx::{self, Outputs, TxFrame};
use crate::wire::{self, arp};
use crate::{MacKey, PortId};

/// Most frames one worker holds while their next hop is being resolved.
pub const MAX_HELD: usize = 256;
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

    /// Sends a neighbour solicitation for IPv6 `target` on `link`, unless
    /// one went out recently; from the switch's link-local address, so the
    /// answer comes back to the router MAC on any link.
    #[allow(clippy::too_many_arguments)]
    pub fn ask_v6(
        &mut self,
        snap: &Snapshot,
        pool: &mut FramePool,
        outputs: &mut Outputs,
        counters: &WorkerCounters,
        target: u128,
        link: Link,
        known: Option<MacKey>,
        in_port: PortId,
        now: u64,
    ) {
        if !self.may_ask(target, now) {
            return;
        }
        let Some(addr) = pool.alloc() else {
            counters.port(in_port).drop(DropReason::NoBuffer, 1);
            return;
        };
        let (dst, eth_dst) = match known {
            Some(mac) => (target, mac),
            None => {
                let sn = wire::ipv6::solicited_node(target);
                (sn, wire::ipv6::multicast_mac(sn))
            }
        };
        let frame = pool.data_mut(addr, 128);
        let len = wire::write_neighbor_solicit(
            frame,
            eth_dst,
            snap.l3.router_mac,
            snap.l3.link_local,
            dst,
            target,
        ) as u32;
        self.send(
            snap, pool, outputs, counters, link, known, addr, len, in_port,
        );
    }

    /// Sends a frame the router wrote to a neighbour on `link`.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        snap: &Snapshot,
        pool: &mut FramePool,
        outputs: &mut Outputs,
        counters: &WorkerCounters,
        link: Link,
        known: Option<MacKey>,
        addr: u32,
        len: u32,
        in_port: PortId,
    ) {
        // Drops count on the port of the frame that needed it; a flood goes
        // back there too (the neighbour may be behind it: hairpin).
        match (link, known) {
            (Link::Port(port), _) => outputs.push(port, TxFrame { addr, len, in_port }),
            (Link::Bridge, Some(mac)) => match snap.fdb.get(mac) {
                Some(slot) => outputs.push(slot.port, TxFrame { addr, len, in_port }),
                None => tx::flood_all(snap, pool, outputs, counters, addr, len, in_port),
            },
            (Link::Bridge, None) => {
                tx::flood_all(snap, pool, outputs, counters, addr, len, in_port)
            }
        }
    }

    /// Sends an ARP request for `target` on `link`, unless one went out
    /// recently. `known` is the MAC the neighbour had (a refresh asks it
    /// directly instead of broadcasting).
    #[allow(clippy::too_many_arguments)]
    pub fn ask_v4(
        &mut self,
        snap: &Snapshot,
        pool: &mut FramePool,
        outputs: &mut Outputs,
        counters: &WorkerCounters,
        target: u32,
        link: Link,
        known: Option<MacKey>,
        in_port: PortId,
        now: u64,
    ) {
        if !self.may_ask(crate::l3::neigh::ip4_key(target), now) {
            return;
        }
        // On the bridge the switch speaks from its address in the target's
        // subnet. On the uplink it has no address of its own (the node's
        // address belongs to the node's kernel), so it sends an address
        // probe (sender 0.0.0.0): the neighbour answers to our MAC without
        // learning anything about the node's address.
        let sender = match link {
            Link::Bridge => match snap.l3.on_subnet(target) {
                Some(a) => a,
                None => return,
            },
            Link::Port(_) => 0,
        };
        let Some(addr) = pool.alloc() else {
            counters.port(in_port).drop(DropReason::NoBuffer, 1);
            return;
        };
        let frame = pool.data_mut(addr, (wire::ETH_LEN + arp::LEN) as u32);
        let len = wire::write_arp(
            frame,
            known.unwrap_or(BROADCAST),
            arp::REQUEST,
            snap.l3.router_mac,
            Ipv4Addr::from(sender),
            0,
            Ipv4Addr::from(target),
        ) as u32;
        self.send(
            snap, pool, outputs, counters, link, known, addr, len, in_port,
        );
    }
}
