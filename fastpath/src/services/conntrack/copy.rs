//! Copies of one flow into a scratch table, for `vswitchctl trace inject`:
//! the dry run sees the flow as the workers would (same endpoint, same
//! translation, same state) and changes nothing in the real table.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::flow::Flow;
use super::{Conntrack, lock};

impl Conntrack {
    /// Copies the flow one of whose records is keyed `key` (either
    /// direction), both records and its state, into `into`; true if there
    /// was a live one.
    pub fn copy_flow(&self, key: u128, into: &Conntrack, now: u64) -> bool {
        for orig in [true, false] {
            let s = lock(&self.shards[self.shard_of(key, orig)]);
            let Some(rec) = s.map.get(&key).filter(|r| r.orig == orig) else {
                continue;
            };
            if rec.flow.expired(now) {
                return false;
            }
            let other = rec.other(key);
            let Some(back) = s.map.get(&other) else {
                return false;
            };
            let flow = Arc::new(Flow::copy_of(&rec.flow));
            let recs = [(key, rec.orig, rec.nat), (other, back.orig, back.nat)];
            drop(s);
            // Both records carry the client's port: one shard in `into` too.
            let mut t = lock(&into.shards[into.shard_of(key, orig)]);
            for (k, o, nat) in recs {
                if t.map.contains_key(&k) {
                    return true;
                }
                t.insert(k, o, nat, Arc::clone(&flow));
            }
            t.flows += 1;
            t.total.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Copies `client`'s affinity to `service` into `into`, if it has one.
    pub fn copy_affinity(&self, service: u64, client: u32, into: &Conntrack, now: u64) {
        let k = Self::affinity_key(service, client);
        let found = lock(&self.affinity[self.affinity_shard(k)])
            .get(&k)
            .copied();
        if let Some((backend, expires)) = found.filter(|(_, e)| *e >= now) {
            into.set_affinity(service, client, backend, expires - now, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Hit, NewFlow, flow_key};
    use super::*;

    #[test]
    fn a_copied_flow_translates_as_the_original_and_the_original_is_untouched() {
        let real = Conntrack::new(1024);
        let f = NewFlow {
            proto: 6,
            client: (0x0af4_010b, 40000),
            front: (0x0a60_000a, 80),
            backend: (0x0af4_0205, 8080),
            snat: None,
            service: 7,
        };
        let nat = real.create(&f, 1000).unwrap();
        real.set_affinity(7, 0x0af4_010b, 99, 5000, 1000);
        let before = real.counters(1000);
        let scratch = Conntrack::new(64);
        let key = flow_key(0x0af4_010b, 0x0a60_000a, 40000, 80, 6);
        assert!(real.copy_flow(key, &scratch, 1000));
        real.copy_affinity(7, 0x0af4_010b, &scratch, 1000);
        assert_eq!(scratch.peek(key, true, 1000), real.peek(key, true, 1000));
        assert!(
            matches!(scratch.peek(key, true, 1000), Some(Hit::Orig { nat: n, .. }) if n == nat)
        );
        let reply = flow_key(0x0af4_0205, 0x0af4_010b, 8080, 40000, 6);
        assert!(scratch.peek(reply, false, 1000).is_some());
        // From the reply's key too.
        let other = Conntrack::new(64);
        assert!(real.copy_flow(reply, &other, 1000));
        assert!(other.peek(key, true, 1000).is_some());
        assert_eq!(scratch.affinity(7, 0x0af4_010b, 1000), Some(99));
        // Nothing changed in the real table; an unknown key copies nothing.
        assert_eq!(real.counters(1000).created, before.created);
        assert!(!real.copy_flow(key ^ 1, &Conntrack::new(64), 1000));
    }
}
