//! ClientIP session affinity: which endpoint each (Service, client address)
//! was last sent to, until when.
//!
//! Entries live in their own [`SHARDS`] mutex-protected maps, apart from
//! the flows, placed by the table's keyed hash. Each map holds at most as
//! many entries as a flow shard holds flows; when it is full, new clients
//! are not remembered (their flows still work). Expired entries are never
//! returned, and are removed by [`Conntrack::sweep`].

use std::collections::HashMap;

use super::{Conntrack, FlowHash, SHARDS, lock};

pub(super) type AffinityMap = HashMap<u128, (u64, u64), FlowHash>;

impl Conntrack {
    #[inline]
    pub(super) fn affinity_key(service: u64, client: u32) -> u128 {
        u128::from(service) << 32 | u128::from(client)
    }

    #[inline]
    pub(super) fn affinity_shard(&self, k: u128) -> usize {
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
