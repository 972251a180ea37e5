//! What the controller shows of the table: the live flows (`ct list`) and
//! the counters (`ct stats`).
//!
//! Both read one shard at a time under its lock and count only live flows
//! (original-direction records whose flow has not expired), so a report is
//! consistent per shard but not across shards. Reading changes nothing:
//! expired flows found here are left for the sweep.

use super::{Conntrack, FlowState, Nat, lock};

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

impl Conntrack {
    /// Every live flow (original direction), shard by shard.
    pub fn flows(&self, now: u64) -> Vec<FlowView> {
        let mut out = Vec::new();
        for m in self.shards.iter() {
            let s = lock(m);
            for (&k, r) in &s.map {
                if !r.orig || r.flow.expired(now) {
                    continue;
                }
                let last = r.flow.last();
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
}
