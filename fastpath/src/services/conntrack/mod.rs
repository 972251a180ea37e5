//! Connection tracking for Services: which endpoint each flow goes to, and
//! how to translate its packets both ways.
//!
//! A flow has two records, one per direction, each keyed by the 5-tuple
//! its packets carry on arrival: the original direction (client → VIP)
//! and the reply direction (endpoint → client, or → the switch address it
//! was source-NATed to). Each record holds the tuple its packets leave
//! with. Both point to one shared [`Flow`] whose state (last use, TCP
//! flags seen) is updated with atomics, so the two directions may be
//! handled by different workers.
//!
//! Ownership and locking: the table is shared by every worker and the
//! controller and split into [`SHARDS`] shards, each behind its own mutex.
//! Both records of a flow live in one shard, chosen by a keyed hash of the
//! client's port (which both tuples carry), so creating or removing a flow
//! takes one lock and never two. A worker's [`FlowCache`] finds the flows
//! it saw lately without any lock; every removal marks the flow dead
//! first, which is what keeps cached entries honest. No lock is held while
//! a packet is rewritten.
//!
//! Limits: each shard holds at most `limit / SHARDS` flows. A new flow in
//! a full shard evicts the oldest flow that has had no reply yet (a TCP
//! SYN, a UDP datagram never answered); if there is none, the new flow is
//! refused (`conntrack_full`). Flows that have been answered are never
//! evicted, so a flood of new flows cannot disturb established ones.
//!
//! Expiry (kernel-like timeouts, see [`timeout_ms`]) is checked on lookup
//! and by [`Conntrack::sweep`], which the controller runs periodically.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use std::collections::HashMap;

use crate::services::table::PROTO_TCP;

mod cache;
mod shard;

use cache::CacheEntry;
pub use cache::{FLOW_CACHE_SLOTS, FlowCache};
use shard::{Rec, Shard};

/// Number of shards (a power of two).
pub const SHARDS: usize = 64;

/// Default most flows (`vswitchd --ct-max`).
pub const DEFAULT_LIMIT: usize = 262_144;

/// TCP: only the client has spoken.
pub const TCP_SYN_SENT_MS: u64 = 60_000;
/// TCP: both sides have spoken (nf_conntrack's default is 5 days; kube-proxy
/// sets 1 day).
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
const DEAD: u8 = 16;

/// A 5-tuple packed: source, destination, ports, protocol.
#[inline]
pub fn flow_key(src: u32, dst: u32, sport: u16, dport: u16, proto: u8) -> u128 {
    u128::from(src) << 96
        | u128::from(dst) << 64
        | u128::from(sport) << 48
        | u128::from(dport) << 32
        | u128::from(proto)
}

/// The parts of a packed 5-tuple: (src, dst, sport, dport, proto).
#[inline]
pub fn flow_parts(k: u128) -> (u32, u32, u16, u16, u8) {
    (
        (k >> 96) as u32,
        (k >> 64) as u32,
        (k >> 48) as u16,
        (k >> 32) as u16,
        k as u8,
    )
}

/// The addresses and ports a packet leaves with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nat {
    pub src: u32,
    pub sport: u16,
    pub dst: u32,
    pub dport: u16,
}

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
    #[inline]
    fn bits(&self) -> u8 {
        self.bits.load(Relaxed)
    }

    /// Whether the endpoint has answered.
    pub fn replied(&self) -> bool {
        self.bits() & REPLIED != 0
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
        } else if b & REPLIED != 0 {
            FlowState::Established
        } else {
            FlowState::SynSent
        }
    }

    #[inline]
    fn expired(&self, now: u64) -> bool {
        let b = self.bits();
        b & DEAD != 0 || now.saturating_sub(self.last.load(Relaxed)) > timeout_ms(self.proto, b)
    }

    fn kill(&self) {
        self.bits.fetch_or(DEAD, Relaxed);
    }

    /// Records a packet of the flow: its direction (a reply marks the flow
    /// answered), TCP FIN/RST, and the time.
    #[inline]
    fn touch(&self, orig: bool, tcp: Option<u8>, now: u64) {
        let mut set = if orig { 0 } else { REPLIED };
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
        if set != 0 && self.bits() & set != set {
            self.bits.fetch_or(set, Relaxed);
        }
    }
}

/// Whether a packet with TCP flags `tcp` in direction `orig` opens a new
/// connection over a closing flow with the same tuple (port reuse).
#[inline]
fn reopens(orig: bool, flow: &Flow, tcp: Option<u8>) -> bool {
    orig && tcp.is_some_and(|f| f & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN)
        && flow.state() == FlowState::Closing
}

/// The state of a flow as `ct list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    SynSent,
    Established,
    Closing,
    Open,
}

/// The timeout for a flow of protocol `proto` with state bits `bits`.
fn timeout_ms(proto: u8, bits: u8) -> u64 {
    if proto == PROTO_TCP {
        if bits & RST != 0 || bits & (FIN_ORIG | FIN_REPLY) == FIN_ORIG | FIN_REPLY {
            TCP_CLOSED_MS
        } else if bits & (FIN_ORIG | FIN_REPLY) != 0 {
            TCP_HALF_CLOSED_MS
        } else if bits & REPLIED != 0 {
            TCP_ESTABLISHED_MS
        } else {
            TCP_SYN_SENT_MS
        }
    } else if bits & REPLIED != 0 {
        UDP_REPLIED_MS
    } else {
        UDP_UNREPLIED_MS
    }
}

/// A keyed multiply-fold hash of a packed tuple (the key is random per
/// process, so a pod cannot aim its flows at one bucket).
#[derive(Clone, Copy)]
pub struct FlowHash {
    k0: u64,
    k1: u64,
}

impl Default for FlowHash {
    fn default() -> Self {
        let r = std::collections::hash_map::RandomState::new();
        FlowHash {
            k0: r.hash_one(0x5eed_u64) | 1,
            k1: r.hash_one(0xf1a5_u64) | 1,
        }
    }
}

impl FlowHash {
    #[inline]
    fn of(&self, k: u128) -> u64 {
        let a = (k as u64) ^ self.k0;
        let b = ((k >> 64) as u64) ^ self.k1;
        let m = u128::from(a).wrapping_mul(u128::from(b));
        let h = (m as u64) ^ ((m >> 64) as u64);
        h ^ (h >> 29)
    }
}

impl BuildHasher for FlowHash {
    type Hasher = FlowHasher;
    fn build_hasher(&self) -> FlowHasher {
        FlowHasher { keys: *self, h: 0 }
    }
}

/// Hasher for [`FlowHash`]: takes one u128 (the packed tuple).
pub struct FlowHasher {
    keys: FlowHash,
    h: u64,
}

impl Hasher for FlowHasher {
    fn finish(&self) -> u64 {
        self.h
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not used by u128 keys; kept correct for any other.
        for &b in bytes {
            self.h = (self.h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.h = self.keys.of(u128::from(self.h));
    }
    fn write_u128(&mut self, k: u128) {
        self.h = self.keys.of(k);
    }
}

/// The result of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// A packet of the original direction (client → Service).
    Orig {
        nat: Nat,
        service: u64,
        backend: u64,
    },
    /// A packet of the reply direction (endpoint → client).
    Reply { nat: Nat },
}

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
    /// The shard is full of answered flows.
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

/// One flow as `ct list` reports it.
#[derive(Debug, Clone)]
pub struct FlowView {
    /// The original tuple (client → front).
    pub orig: u128,
    /// The tuple the endpoint sees, as it leaves the switch.
    pub nat: Nat,
    pub service: u64,
    pub backend: u64,
    pub proto: u8,
    pub state: FlowState,
    pub expires_ms: u64,
}

/// Counters of the table (`ct stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtCounters {
    pub entries: u64,
    pub embryonic: u64,
    pub limit: u64,
    pub created: u64,
    pub evicted: u64,
    pub full: u64,
    pub expired: u64,
    pub affinity: u64,
}

type AffinityMap = HashMap<u128, (u64, u64), FlowHash>;

/// The connection table, shared by every worker and the controller.
pub struct Conntrack {
    shards: Box<[Mutex<Shard>]>,
    affinity: Box<[Mutex<AffinityMap>]>,
    hash: FlowHash,
    per_shard: usize,
    limit: usize,
}

impl Default for Conntrack {
    fn default() -> Self {
        Self::new(DEFAULT_LIMIT)
    }
}

/// Locks a shard, going on if another thread panicked while holding it
/// (the map is still consistent: no operation leaves it half-done).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The client's port in a packed tuple: the source port of an
/// original-direction key, the destination port of a reply key.
#[inline]
fn client_port(key: u128, orig: bool) -> u16 {
    if orig {
        (key >> 48) as u16
    } else {
        (key >> 32) as u16
    }
}

impl Conntrack {
    /// A table of at most `limit` flows (at least one per shard).
    pub fn new(limit: usize) -> Self {
        let hash = FlowHash::default();
        let per_shard = limit.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    map: HashMap::with_hasher(hash),
                    spare: Vec::with_capacity(per_shard),
                    ..Shard::default()
                })
            })
            .collect();
        let affinity = (0..SHARDS)
            .map(|_| Mutex::new(HashMap::with_hasher(hash)))
            .collect();
        Conntrack {
            shards,
            affinity,
            hash,
            per_shard,
            limit: per_shard * SHARDS,
        }
    }

    /// Most flows the table holds.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The shard of the flows whose client side uses `port`. Both records
    /// of a flow carry the client's port (the reply's destination port is
    /// the client's, or the one it was translated to, which is chosen in
    /// the same shard), so a flow lives in one shard. The shard comes from
    /// bits of a keyed hash that the shards' own maps do not use for their
    /// buckets and tags.
    #[inline]
    fn port_shard(&self, port: u16) -> usize {
        (self.hash.of(u128::from(port)) >> 32) as usize % SHARDS
    }

    #[inline]
    fn shard_of(&self, key: u128, orig: bool) -> usize {
        self.port_shard(client_port(key, orig))
    }

    /// Looks up a packet's tuple in the direction the caller expects
    /// (`orig`: client → Service; else a reply) and records what the packet
    /// says about the flow: `tcp` carries the TCP flags (`None` for other
    /// protocols). An expired or dead flow is removed and reported as a
    /// miss; so is a closing TCP flow whose client opens a new connection on
    /// the same ports (a SYN without ACK).
    #[inline]
    pub fn lookup(&self, key: u128, orig: bool, tcp: Option<u8>, now: u64) -> Option<Hit> {
        self.lookup_flow(key, orig, tcp, now, false)
            .map(|(hit, _)| hit)
    }

    /// The translation of a live flow's record, without counting the
    /// lookup as traffic of the flow (for ICMP errors about it).
    pub fn peek(&self, key: u128, orig: bool, now: u64) -> Option<Hit> {
        let s = lock(&self.shards[self.shard_of(key, orig)]);
        let rec = s.map.get(&key).filter(|r| r.orig == orig)?;
        if rec.flow.expired(now) {
            return None;
        }
        Some(if orig {
            Hit::Orig {
                nat: rec.nat,
                service: rec.flow.service,
                backend: rec.flow.backend,
            }
        } else {
            Hit::Reply { nat: rec.nat }
        })
    }

    /// An original-direction lookup in the worker's [`FlowCache`] only (no
    /// lock), for the Service version `service_id`: the flow's translation
    /// if the worker saw it lately, it is alive, and `listed` accepts its
    /// (Service, endpoint), which is asked only once per Service version.
    #[inline]
    pub fn cached_orig(
        &self,
        cache: &mut FlowCache,
        key: u128,
        tcp: Option<u8>,
        now: u64,
        service_id: u64,
        listed: impl Fn(u64, u64) -> bool,
    ) -> Option<Nat> {
        let slot = cache.slot(key);
        let e = cache.entries[slot].as_mut()?;
        if e.key != key || !e.orig || e.flow.expired(now) || reopens(true, &e.flow, tcp) {
            return None;
        }
        let Hit::Orig {
            nat,
            service,
            backend,
        } = e.hit
        else {
            return None;
        };
        if e.checked != service_id {
            if !listed(service, backend) {
                return None;
            }
            e.checked = service_id;
        }
        e.flow.touch(true, tcp, now);
        Some(nat)
    }

    /// [`Conntrack::lookup`] through a worker's [`FlowCache`]: a flow the
    /// worker saw recently is found and updated without taking a lock (its
    /// state lives in the shared `Flow`); anything else goes to the table
    /// and is cached.
    #[inline]
    pub fn lookup_cached(
        &self,
        cache: &mut FlowCache,
        key: u128,
        orig: bool,
        tcp: Option<u8>,
        now: u64,
    ) -> Option<Hit> {
        let slot = cache.slot(key);
        if let Some(e) = &cache.entries[slot]
            && e.key == key
            && e.orig == orig
        {
            let flow = &e.flow;
            if !flow.expired(now) && !reopens(orig, flow, tcp) {
                flow.touch(orig, tcp, now);
                return Some(e.hit);
            }
        }
        let (hit, flow) = self.lookup_flow(key, orig, tcp, now, true)?;
        cache.entries[slot] = flow.map(|flow| CacheEntry {
            key,
            orig,
            hit,
            flow,
            checked: 0,
        });
        Some(hit)
    }

    #[inline]
    fn lookup_flow(
        &self,
        key: u128,
        orig: bool,
        tcp: Option<u8>,
        now: u64,
        want_flow: bool,
    ) -> Option<(Hit, Option<Arc<Flow>>)> {
        let mut s = lock(&self.shards[self.shard_of(key, orig)]);
        let rec = s.map.get(&key).filter(|r| r.orig == orig)?;
        let flow = &rec.flow;
        if flow.expired(now) || reopens(orig, flow, tcp) {
            let other = rec.other;
            flow.kill();
            s.remove_flow(key, other);
            s.expired += 1;
            return None;
        }
        flow.touch(orig, tcp, now);
        let hit = if orig {
            Hit::Orig {
                nat: rec.nat,
                service: flow.service,
                backend: flow.backend,
            }
        } else {
            Hit::Reply { nat: rec.nat }
        };
        Some((hit, want_flow.then(|| Arc::clone(flow))))
    }

    /// Ends the flow whose original tuple is `key` (its endpoint is gone).
    pub fn kill(&self, key: u128) {
        let mut s = lock(&self.shards[self.shard_of(key, true)]);
        if let Some(rec) = s.map.get(&key).filter(|r| r.orig) {
            rec.flow.kill();
            let other = rec.other;
            s.remove_flow(key, other);
        }
    }

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
            let other = old.other;
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
            let other = rec.other;
            s.remove_flow(orig_key, other);
            if expired {
                s.expired += 1;
            }
        }
        self.create_locked(&mut s, i, f, orig_key, now)
            .map(Tracked::Created)
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
            let other = r.other;
            s.remove_flow(orig_key, other);
        }
        if s.flows >= self.per_shard && !s.evict_one(now) {
            s.full += 1;
            return Err(CreateError::Full);
        }
        // Claim a reply tuple: the client's own port, else one of the
        // dynamic range in this shard, probed from a point set by the flow.
        let mut port = f.client.1;
        let mut attempt = 0u32;
        let reply_key = loop {
            let k = flow_key(f.backend.0, src, f.backend.1, port, f.proto);
            // Any record holds the tuple, of either direction.
            match s.map.get(&k).map(|r| (r.flow.expired(now), r.other)) {
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
        let fresh = Flow {
            service: f.service,
            backend: crate::services::table::endpoint(f.backend.0, f.backend.1),
            proto: f.proto,
            bits: AtomicU8::new(0),
            last: AtomicU64::new(now),
        };
        let flow = match s.spare.pop() {
            Some(mut spare) => match Arc::get_mut(&mut spare) {
                Some(slot) => {
                    *slot = fresh;
                    spare
                }
                // A worker's cache took a reference meanwhile: let it go.
                None => Arc::new(fresh),
            },
            None => Arc::new(fresh),
        };
        s.map.insert(
            reply_key,
            Rec {
                orig: false,
                nat: Nat {
                    src: f.front.0,
                    sport: f.front.1,
                    dst: f.client.0,
                    dport: f.client.1,
                },
                other: orig_key,
                flow: Arc::clone(&flow),
            },
        );
        let nat = Nat {
            src,
            sport: port,
            dst: f.backend.0,
            dport: f.backend.1,
        };
        s.map.insert(
            orig_key,
            Rec {
                orig: true,
                nat,
                other: reply_key,
                flow,
            },
        );
        s.flows += 1;
        s.created += 1;
        s.young.push_back(orig_key);
        if s.young.len() > 2 * self.per_shard + 16 {
            s.compact_young();
        }
        Ok(nat)
    }

    /// Removes expired and dead flows, and expired affinity entries.
    /// Returns the number of flows removed.
    pub fn sweep(&self, now: u64) -> usize {
        let mut removed = 0;
        for m in self.shards.iter() {
            let mut s = lock(m);
            let n = s.retain(|r| !r.flow.expired(now));
            s.expired += n as u64;
            removed += n;
            s.compact_young();
        }
        for m in self.affinity.iter() {
            lock(m).retain(|_, &mut (_, expires)| expires >= now);
        }
        removed
    }

    /// Forgets every flow and affinity entry.
    pub fn flush(&self) {
        for m in self.shards.iter() {
            let mut s = lock(m);
            s.retain(|_| false);
            s.young.clear();
        }
        for m in self.affinity.iter() {
            lock(m).clear();
        }
    }

    /// Forgets every flow of the Services with these packed keys.
    pub fn forget_services(&self, services: &[u64]) {
        let gone: rustc_hash::FxHashSet<u64> = services.iter().copied().collect();
        for m in self.shards.iter() {
            lock(m).retain(|r| !gone.contains(&r.flow.service));
        }
    }

    /// Every live flow (original direction), shard by shard.
    pub fn flows(&self, now: u64) -> Vec<FlowView> {
        let mut out = Vec::new();
        for m in self.shards.iter() {
            let s = lock(m);
            for (&k, r) in &s.map {
                if !r.orig || r.flow.expired(now) {
                    continue;
                }
                let last = r.flow.last.load(Relaxed);
                out.push(FlowView {
                    orig: k,
                    nat: r.nat,
                    service: r.flow.service,
                    backend: r.flow.backend,
                    proto: r.flow.proto,
                    state: r.flow.state(),
                    expires_ms: (last + r.flow.timeout_ms()).saturating_sub(now),
                });
            }
        }
        out
    }

    /// Counters, with the live entries counted now.
    pub fn counters(&self, now: u64) -> CtCounters {
        let mut c = CtCounters {
            limit: self.limit as u64,
            ..CtCounters::default()
        };
        for m in self.shards.iter() {
            let s = lock(m);
            c.created += s.created;
            c.evicted += s.evicted;
            c.full += s.full;
            c.expired += s.expired;
            for r in s.map.values() {
                if r.orig && !r.flow.expired(now) {
                    c.entries += 1;
                    if !r.flow.replied() {
                        c.embryonic += 1;
                    }
                }
            }
        }
        for m in self.affinity.iter() {
            c.affinity += lock(m).values().filter(|(_, e)| *e >= now).count() as u64;
        }
        c
    }

    #[inline]
    fn affinity_key(service: u64, client: u32) -> u128 {
        u128::from(service) << 32 | u128::from(client)
    }

    #[inline]
    fn affinity_shard(&self, k: u128) -> usize {
        (self.hash.of(k) >> 32) as usize % SHARDS
    }

    /// The endpoint `client` was last sent to by `service`, if that was
    /// less than the affinity timeout ago.
    #[inline]
    pub fn affinity(&self, service: u64, client: u32, now: u64) -> Option<u64> {
        let k = Self::affinity_key(service, client);
        let m = lock(&self.affinity[self.affinity_shard(k)]);
        m.get(&k)
            .filter(|(_, expires)| *expires >= now)
            .map(|(b, _)| *b)
    }

    /// Remembers that `client` was sent to `backend` (for `timeout_ms`).
    /// Bounded like the flow table: when a shard is full, new clients are
    /// not remembered (their flows still work).
    pub fn set_affinity(&self, service: u64, client: u32, backend: u64, timeout_ms: u64, now: u64) {
        let k = Self::affinity_key(service, client);
        let mut m = lock(&self.affinity[self.affinity_shard(k)]);
        if m.len() >= self.per_shard && !m.contains_key(&k) {
            return;
        }
        m.insert(k, (backend, now + timeout_ms));
    }
}

#[cfg(test)]
mod tests;
