//! The per-packet read side of the table: finding a packet's record in
//! the direction the caller expects, through a worker's [`FlowCache`]
//! without a lock or under the record's shard lock.
//!
//! Every lookup that finds a flow records the packet in it (its direction,
//! TCP flags and time), except [`Conntrack::peek`]. A record whose flow has
//! expired, is dead or is being reopened (a new SYN over a closing TCP
//! flow) is a miss; when found under the shard lock it is removed there and
//! then, so the next packet of that tuple makes a new flow. A cached entry
//! is used only while its flow is alive, which is what keeps the lock-free
//! path as correct as the locked one.

use std::sync::Arc;

use super::cache::CacheEntry;
use super::flow::reopens;
use super::{Conntrack, Flow, FlowCache, Nat, lock};

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

impl Conntrack {
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
            let other = rec.other(key);
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
}
