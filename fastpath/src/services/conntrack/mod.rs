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
//! Limits: the table holds at most `limit` flows, whatever shard they are
//! in (one counter shared by the shards; flows created at the same moment
//! on several workers may pass it by one each), so flows that share a
//! client port (NTP, IKE, a fixed-port client), which all live in one
//! shard, have the whole table. A new flow in a full table evicts the
//! oldest queued embryonic flow (roughly the oldest: see `Shard::young`):
//! one not established (a TCP SYN never answered, or answered by a SYN-ACK
//! the client never confirmed, as a SYN flood from spoofed addresses
//! leaves; a UDP datagram never answered), of its own shard, else of
//! another shard it can lock without waiting; if there is none, the new
//! flow is refused (`conntrack_full`). Established flows are never evicted,
//! so a flood of new flows cannot disturb established ones.
//!
//! Expiry (kernel-like timeouts, see [`timeout_ms`](Flow::timeout_ms)) is
//! checked on lookup and by [`Conntrack::sweep`], which the controller runs
//! periodically. The controller's walks of the table (sweep, flush,
//! `ct list`, `ct stats`, `service list`, a deleted Service) hold a shard's lock for a bounded step of records
//! at a time, never for a whole shard (`walk`).
//!
//! Layout, by what each part owns: this module the table itself and its
//! shard choice; `key` the packed tuples and their hash; `flow` a flow's
//! shared state and timeouts; `shard` one shard's records, eviction queue
//! and counters; `lookup` and `create` the packet path; `walk` the
//! controller's stepwise walks; `sweep` removals outside the packet path;
//! `affinity` ClientIP affinity; `report` what `ct list` and `ct stats`
//! show; `cache` a worker's lock-free [`FlowCache`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use parking_lot::{Mutex, MutexGuard};

mod affinity;
mod cache;
mod copy;
mod create;
mod flow;
mod key;
mod lookup;
mod report;
mod shard;
mod sweep;
mod walk;

use affinity::AffinityMap;
pub use cache::{FLOW_CACHE_SLOTS, FlowCache};
pub use create::{CreateError, NewFlow, Tracked};
use flow::DEAD;
pub use flow::{
    Flow, FlowState, TCP_CLOSED_MS, TCP_ESTABLISHED_MS, TCP_HALF_CLOSED_MS, TCP_SYN_RECV_MS,
    TCP_SYN_SENT_MS, UDP_REPLIED_MS, UDP_UNREPLIED_MS, tcp_flags,
};
use key::client_port;
pub use key::{FlowHash, FlowHasher, Nat, flow_key, flow_parts};
pub use lookup::Hit;
pub use report::{CtCounters, FlowView};
use shard::Shard;

/// Number of shards (a power of two).
pub const SHARDS: usize = 64;

/// Default most flows (`vswitchd --ct-max`).
pub const DEFAULT_LIMIT: usize = 262_144;

/// The connection table, shared by every worker and the controller.
pub struct Conntrack {
    shards: Box<[Mutex<Shard>]>,
    affinity: Box<[Mutex<AffinityMap>]>,
    hash: FlowHash,
    per_shard: usize,
    limit: usize,
    /// Flows in the table (see [`Shard`]'s `total`).
    total: Arc<AtomicUsize>,
    /// Spare flow states in all shards (see [`Shard`]'s `spares`).
    spares: Arc<AtomicUsize>,
}

impl Default for Conntrack {
    fn default() -> Self {
        Self::new(DEFAULT_LIMIT)
    }
}

/// Locks a shard. The shards' mutexes are `parking_lot`'s, not the
/// standard library's: a walk hands a shard over to a waiting worker
/// between its steps (`MutexGuard::unlock_fair`), which the standard one
/// cannot do (its walker took the lock straight back, and a worker waited
/// for the whole walk: BENCHMARKS.md "Conntrack walks").
#[inline]
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock()
}

impl Conntrack {
    /// A table of at most `limit` flows (at least one per shard).
    pub fn new(limit: usize) -> Self {
        let hash = FlowHash::default();
        let per_shard = limit.div_ceil(SHARDS).max(1);
        let total = Arc::new(AtomicUsize::new(0));
        let spares = Arc::new(AtomicUsize::new(0));
        let shards = (0..SHARDS)
            .map(|_| {
                // Only the spare lists are sized up front (a shard's share
                // of the table; 64 KiB a shard at the default, virtual
                // until used). The rest is not: a map or list grows,
                // doubling, to the most it has held and keeps that room,
                // so churn below that allocates nothing. (A map sized for
                // a full table spread a few flows over so many lines that
                // `service/first_packet` ran 50 % slower.)
                Mutex::new(Shard {
                    map: HashMap::with_hasher(hash),
                    total: Arc::clone(&total),
                    spare: VecDeque::with_capacity(per_shard),
                    pinned: VecDeque::with_capacity(per_shard),
                    spares: Arc::clone(&spares),
                    limit: per_shard * SHARDS,
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
            total,
            spares,
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
}

#[cfg(test)]
mod tests;
