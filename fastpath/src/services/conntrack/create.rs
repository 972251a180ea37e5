//! Making flows: claiming both records of a new flow under one shard lock,
//! and the combined lookup-or-create of a flow's first packet.
//!
//! A new flow's two records go into the shard of the client's port, and
//! its reply tuple is claimed there too: the client's own port if free,
//! else a port of the dynamic range that maps to the same shard, so both
//! records of a flow always share one lock. A tuple held by a live record
//! is never taken over; a full table first evicts an embryonic flow (the
//! oldest queued of its shard, else of another shard it can lock without
//! waiting) and refuses the new flow if there is none. Flow states are recycled:
//! a new flow takes a removed flow's state that nothing refers to any more
//! (no record, no worker's cache), from its own shard or another, so once
//! the table has held as many flows as it holds now, creating one almost
//! never allocates (`tests/conntrack_alloc.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::flow::reopens;
use super::shard::Shard;
use super::{Conntrack, Flow, FlowCache, Hit, Nat, SHARDS, flow_key, lock};

/// The fewest flows the eviction queue's compaction threshold assumes.
pub(super) const YOUNG_FLOOR: usize = 64;

/// Keys of the eviction queue a new flow compacts while the queue is long.
const COMPACT_PER_FLOW: usize = 16;

/// Other shards [`Conntrack::reuse_elsewhere`] tries.
const ELSEWHERE: usize = 8;

/// What [`Conntrack::lookup_or_create`] found or made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracked {
    /// The flow exists: its original direction's translation.
    Existing(Hit),
    /// A new flow: the translation of its original direction.
    Created(Nat),
}

/// Why a flow could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateError {
    /// The shard is full of established flows.
    Full,
    /// No free port of the shard to translate the client to.
    NoPort,
}

/// What a new flow is made of.
#[derive(Debug, Clone, Copy)]
pub struct NewFlow {
    pub proto: u8,
    /// The client's address and port (the packet's source).
    pub client: (u32, u16),
    /// Where the client sent it: VIP:port, or node address:NodePort.
    pub front: (u32, u16),
    /// The chosen endpoint.
    pub backend: (u32, u16),
    /// Source-NAT the client to this address (hairpin, NodePort).
    pub snat: Option<u32>,
    pub service: u64,
}

impl Conntrack {
    /// Creates a flow, under one shard lock. The reply tuple is endpoint →
    /// client (or → `snat`); when it is taken already, the client's port is
    /// translated to a free one of the same shard. Returns the translation
    /// of the original direction.
    pub fn create(&self, f: &NewFlow, now: u64) -> Result<Nat, CreateError> {
        let orig_key = flow_key(f.client.0, f.front.0, f.client.1, f.front.1, f.proto);
        let i = self.port_shard(f.client.1);
        let mut s = lock(&self.shards[i]);
        if let Some(old) = s.map.get(&orig_key).filter(|r| r.orig) {
            old.flow.kill();
            let other = old.other(orig_key);
            s.remove_flow(orig_key, other);
        }
        self.create_locked(&mut s, i, f, orig_key, now)
    }

    /// The first packet of a flow, or one the worker's cache did not know:
    /// under one shard lock, the flow's record if it is alive and `keep`
    /// accepts its (Service, endpoint), else a new flow made of `f` (which
    /// replaces a record `keep` refused). The result is cached.
    pub fn lookup_or_create(
        &self,
        cache: &mut FlowCache,
        f: &NewFlow,
        tcp: Option<u8>,
        now: u64,
        keep: impl Fn(u64, u64) -> bool,
    ) -> Result<Tracked, CreateError> {
        let orig_key = flow_key(f.client.0, f.front.0, f.client.1, f.front.1, f.proto);
        let i = self.port_shard(f.client.1);
        let mut s = lock(&self.shards[i]);
        if let Some(rec) = s.map.get(&orig_key).filter(|r| r.orig) {
            let flow = &rec.flow;
            let expired = flow.expired(now);
            if !expired && !reopens(true, flow, tcp) && keep(flow.service, flow.backend) {
                flow.touch(true, tcp, now);
                let hit = Hit::Orig {
                    nat: rec.nat,
                    service: flow.service,
                    backend: flow.backend,
                };
                let flow = Arc::clone(flow);
                drop(s);
                cache.put(orig_key, true, hit, flow);
                return Ok(Tracked::Existing(hit));
            }
            flow.kill();
            let other = rec.other(orig_key);
            s.remove_flow(orig_key, other);
            if expired {
                s.expired += 1;
            }
        }
        let nat = self.create_locked(&mut s, i, f, orig_key, now)?;
        // A TCP flow whose first packet is not a SYN was picked up
        // mid-stream (a restarted daemon, a flushed table): the endpoint's
        // answer establishes it (Linux conntrack's loose pick-up). Done
        // under the shard's lock, before any reply can find the flow.
        if tcp.is_some_and(|fl| fl & super::flow::tcp_flags::SYN == 0)
            && let Some(r) = s.map.get(&orig_key)
        {
            r.flow.pick_up();
        }
        Ok(Tracked::Created(nat))
    }

    fn create_locked(
        &self,
        s: &mut Shard,
        i: usize,
        f: &NewFlow,
        orig_key: u128,
        now: u64,
    ) -> Result<Nat, CreateError> {
        let src = f.snat.unwrap_or(f.client.0);
        // The tuple may only be held by the reply record of another flow (a
        // collision of the two directions' key spaces): that flow keeps it.
        if let Some(r) = s.map.get(&orig_key) {
            if !r.flow.expired(now) {
                s.full += 1;
                return Err(CreateError::NoPort);
            }
            let other = r.other(orig_key);
            s.remove_flow(orig_key, other);
        }
        if self.total.load(Ordering::Relaxed) >= self.limit
            && !s.evict_one(now)
            && !self.evict_elsewhere(i, now)
        {
            s.full += 1;
            return Err(CreateError::Full);
        }
        // Claim a reply tuple: the client's own port, else one of the
        // dynamic range in this shard, probed from a point set by the flow.
        let mut port = f.client.1;
        let mut attempt = 0u32;
        let reply_key = loop {
            let k = flow_key(f.backend.0, src, f.backend.1, port, f.proto);
            // Any record holds the tuple, of either direction, and so does
            // the new flow's own original tuple (a hairpin whose client is
            // its endpoint, source-NATed to the address it came from).
            let holder = if k == orig_key {
                Some((false, 0))
            } else {
                s.map.get(&k).map(|r| (r.flow.expired(now), r.other(k)))
            };
            match holder {
                None => break k,
                // A stale record: its flow is over, reuse the tuple.
                Some((true, other)) => {
                    s.remove_flow(k, other);
                    break k;
                }
                Some((false, _)) => {}
            }
            loop {
                attempt += 1;
                if attempt > 4096 {
                    s.full += 1;
                    return Err(CreateError::NoPort);
                }
                let h = self.hash.of(orig_key ^ u128::from(attempt));
                port = 1024 + (h % (65536 - 1024)) as u16;
                if self.port_shard(port) == i {
                    break;
                }
            }
        };
        let fresh = Flow::new(
            f.service,
            crate::services::table::endpoint(f.backend.0, f.backend.1),
            f.proto,
            now,
        );
        // A spare state of this shard, else of another (states belong to
        // no shard), else a new one (see the module's comment).
        let flow = match s.reuse().or_else(|| self.reuse_elsewhere(i)) {
            Some(mut spare) => {
                *Arc::get_mut(&mut spare).expect("reuse hands out unshared states") = fresh;
                spare
            }
            None => Arc::new(fresh),
        };
        s.insert(
            reply_key,
            false,
            Nat {
                src: f.front.0,
                sport: f.front.1,
                dst: f.client.0,
                dport: f.client.1,
            },
            Arc::clone(&flow),
        );
        let nat = Nat {
            src,
            sport: port,
            dst: f.backend.0,
            dport: f.backend.1,
        };
        debug_assert_eq!(
            s.map.get(&reply_key).map(|r| r.other(reply_key)),
            Some(orig_key)
        );
        s.insert(orig_key, true, nat, flow);
        s.flows += 1;
        s.total.fetch_add(1, Ordering::Relaxed);
        s.created += 1;
        // Compacted while it holds twice the shard's flows (at least 64),
        // [`COMPACT_PER_FLOW`] keys per new flow: while the queue stays that
        // long, a pass over it ends within a sixteenth as many new flows as
        // it held keys, and then leaves at most the embryonic flows (plus those made during
        // the pass), so the queue (and the set compaction uses) grows only
        // with the flows the shard holds, and no new flow holds the shard
        // for more than that many keys.
        if s.young.len() >= 2 * s.flows.max(YOUNG_FLOOR) + 16 {
            s.compact_young(COMPACT_PER_FLOW);
        }
        s.young.push_back(orig_key);
        Ok(nat)
    }

    /// A spare flow state of one of the next few shards after `i` (whose
    /// lock the caller holds), for a shard that has none free; shards are
    /// only tried, as in [`Conntrack::evict_elsewhere`], and not at all
    /// when no shard has a spare state (as while the table grows).
    fn reuse_elsewhere(&self, i: usize) -> Option<Arc<Flow>> {
        if self.spares.load(Ordering::Relaxed) == 0 {
            return None;
        }
        (1..=ELSEWHERE).find_map(|k| self.shards[(i + k) % SHARDS].try_lock()?.reuse())
    }

    /// Evicts the oldest embryonic flow of another shard than `i` (whose
    /// lock the caller holds), for a new flow in a full table whose own
    /// shard has none. Shards are only tried (`try_lock`), never waited
    /// for: a thread holding one shard never blocks on another.
    fn evict_elsewhere(&self, i: usize, now: u64) -> bool {
        (1..SHARDS).any(|k| {
            let m = &self.shards[(i + k) % SHARDS];
            m.try_lock().is_some_and(|mut other| other.evict_one(now))
        })
    }
}
