//! What the controller shows of the table: the live flows (`ct list`) and
//! the counters (`ct stats`).
//!
//! Both go through the table a step at a time ([`Conntrack::walk`]) and
//! count only live flows (original-direction records whose flow has not
//! expired); a report is a view of a table that changes while it is taken,
//! consistent per step. Reading changes nothing: expired flows found here
//! are left for the sweep.

use super::shard::Shard;
use super::walk::{STEP, Walk};
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
    /// Every live flow (original direction), sorted by original tuple.
    pub fn flows(&self, now: u64) -> Vec<FlowView> {
        self.flows_page(now, None, usize::MAX).0
    }

    /// One page of [`Conntrack::flows`]: the first `limit` live flows whose
    /// original tuple sorts after `after`, and whether more follow. Memory
    /// is held for the page only (the table is walked whole each time), so
    /// a client pages through a table of millions of flows without the
    /// daemon building the whole list.
    pub fn flows_page(&self, now: u64, after: Option<u128>, limit: usize) -> (Vec<FlowView>, bool) {
        // The `limit` smallest tuples above `after`; a tuple whose flow was
        // replaced during the walk (removed, made again in a slot not yet
        // walked) is seen twice and kept once.
        let mut page = std::collections::BTreeMap::<u128, FlowView>::new();
        let mut more = false;
        let mut w = Walk::default();
        let view = |s: &mut Shard, k: u128| {
            let r = s.map.get(&k).filter(|r| r.orig && !r.flow.expired(now))?;
            let last = r.flow.last();
            Some(FlowView {
                orig: k,
                nat: r.nat,
                service: r.flow.service,
                backend: r.flow.backend,
                proto: r.flow.proto,
                state: r.flow.state(),
                expires_ms: (last + r.flow.timeout_ms()).saturating_sub(now),
            })
        };
        // Views are made under a shard's lock and kept in a list made
        // room for before each step (growing it under the lock would copy
        // it there); the page is filled between steps.
        let mut step: Vec<FlowView> = Vec::with_capacity(STEP);
        loop {
            let walking = self.walk_step(
                &mut w,
                &mut |s, k| {
                    if after.is_none_or(|a| k > a)
                        && let Some(v) = view(s, k)
                    {
                        step.push(v);
                    }
                },
                &mut |_| {},
            );
            for v in step.drain(..) {
                if page.len() == limit && page.last_key_value().is_some_and(|(&k, _)| v.orig >= k) {
                    more |= !page.contains_key(&v.orig);
                    continue;
                }
                page.insert(v.orig, v);
                if page.len() > limit {
                    page.pop_last();
                    more = true;
                }
            }
            step.reserve(STEP);
            if !walking {
                break;
            }
        }
        (page.into_values().collect(), more)
    }

    /// Counters, with the live entries counted now (a tuple whose flow is
    /// replaced while they are counted may count twice).
    pub fn counters(&self, now: u64) -> CtCounters {
        let mut c = CtCounters {
            limit: self.limit as u64,
            ..CtCounters::default()
        };
        self.walk(
            |s, k| {
                if let Some(r) = s.map.get(&k)
                    && r.orig
                    && !r.flow.expired(now)
                {
                    c.entries += 1;
                    if !r.flow.established() {
                        c.embryonic += 1;
                    }
                }
            },
            |s| {
                c.created += s.created;
                c.evicted += s.evicted;
                c.full += s.full;
                c.expired += s.expired;
            },
        );
        for m in self.affinity.iter() {
            c.affinity += lock(m).values().filter(|(_, e)| *e >= now).count() as u64;
        }
        c
    }
}
