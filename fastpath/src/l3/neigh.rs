//! Neighbours (ARP; ND later): the MAC address behind an IP on a link.
//!
//! The controller owns the [`NeighTable`]: workers report what ARP frames
//! tell them ([`NeighEvent`], over the worker event channel), the controller
//! checks that the address belongs on the reporting port, records it, ages it
//! and publishes an immutable [`NeighView`] inside the snapshot. Entries
//! declared by configuration (pods with `--ip`/`--mac`) never reach this
//! table: they are routes of kind [`crate::l3::table::NextHop::Peer`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::{MacKey, PortId};

/// The key of an address in neighbour maps: IPv4 as IPv4-mapped IPv6.
#[inline]
pub fn ip_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The key of an IPv4 address given as a u32.
#[inline]
pub fn ip4_key(a: u32) -> u128 {
    0xffff_0000_0000 | u128::from(a)
}

/// What a worker saw: `ip` is at `mac` behind `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighEvent {
    pub ip: IpAddr,
    pub mac: MacKey,
    pub port: PortId,
}

/// A resolved neighbour as workers read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neigh {
    pub mac: MacKey,
    pub port: PortId,
    /// When the entry was last confirmed (ms, [`crate::clock::now_ms`]).
    /// Workers re-ask a neighbour whose confirmation is getting old.
    pub confirmed: u64,
}

/// The published neighbours. IPv4 has its own map with 4-byte keys: the
/// lookup is on every routed packet and the entries are smaller, so more
/// of them stay in cache.
#[derive(Debug, Clone, Default)]
pub struct NeighView {
    v4: FxHashMap<u32, Neigh>,
    v6: FxHashMap<u128, Neigh>,
}

impl NeighView {
    #[inline]
    pub fn get(&self, ip: IpAddr) -> Option<&Neigh> {
        match ip {
            IpAddr::V4(a) => self.v4.get(&u32::from(a)),
            IpAddr::V6(a) => self.v6.get(&u128::from(a)),
        }
    }

    #[inline]
    pub fn get4(&self, ip: u32) -> Option<&Neigh> {
        self.v4.get(&ip)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.get(ip).is_some()
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The controller's neighbour table.
#[derive(Debug)]
pub struct NeighTable {
    entries: HashMap<IpAddr, Neigh>,
    timeout_ms: u64,
}

impl NeighTable {
    pub fn new(timeout_secs: u64) -> Self {
        NeighTable {
            entries: HashMap::new(),
            timeout_ms: timeout_secs.saturating_mul(1000),
        }
    }

    /// Records a report; returns true if workers must see a new view (new
    /// entry, a changed MAC or port, or a confirmation that resets the
    /// refresh clock workers go by).
    pub fn learn(&mut self, ev: NeighEvent, now: u64) -> bool {
        let new = Neigh {
            mac: ev.mac,
            port: ev.port,
            confirmed: now,
        };
        match self.entries.insert(ev.ip, new) {
            Some(old) => {
                old.mac != new.mac
                    || old.port != new.port
                    || now.saturating_sub(old.confirmed) >= self.timeout_ms / 4
            }
            None => true,
        }
    }

    /// Removes entries not confirmed within the timeout; returns how many.
    pub fn age(&mut self, now: u64) -> usize {
        let before = self.entries.len();
        let timeout = self.timeout_ms;
        self.entries
            .retain(|_, n| now.saturating_sub(n.confirmed) < timeout);
        before - self.entries.len()
    }

    /// Removes every entry for `port`; returns how many.
    pub fn remove_port(&mut self, port: PortId) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, n| n.port != port);
        before - self.entries.len()
    }

    /// Removes entries whose address no longer passes `keep`.
    pub fn retain(&mut self, mut keep: impl FnMut(IpAddr, &Neigh) -> bool) -> usize {
        let before = self.entries.len();
        self.entries.retain(|ip, n| keep(*ip, n));
        before - self.entries.len()
    }

    pub fn entries(&self) -> impl Iterator<Item = (IpAddr, &Neigh)> {
        self.entries.iter().map(|(ip, n)| (*ip, n))
    }

    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }

    pub fn view(&self) -> Arc<NeighView> {
        let mut v = NeighView::default();
        for (ip, n) in &self.entries {
            match ip {
                IpAddr::V4(a) => v.v4.insert(u32::from(*a), *n),
                IpAddr::V6(a) => v.v6.insert(u128::from(*a), *n),
            };
        }
        Arc::new(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_ages_and_reports_changes() {
        let mut t = NeighTable::new(60);
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        let ev = NeighEvent {
            ip,
            mac: 0x0200_0000_0005,
            port: 3,
        };
        assert!(t.learn(ev, 1000));
        assert!(
            !t.learn(ev, 2000),
            "same MAC soon after: nothing to publish"
        );
        assert!(t.learn(
            NeighEvent {
                mac: 0x0200_0000_0006,
                ..ev
            },
            2500
        ));
        assert!(
            t.learn(ev, 2500 + 15_000),
            "confirmation after a quarter of the timeout"
        );
        let v = t.view();
        assert_eq!(v.get4(0x0a00_0005).map(|n| n.port), Some(3));
        assert_eq!(v.get(ip).map(|n| n.port), Some(3));
        assert_eq!(t.age(17_500 + 59_999), 0);
        assert_eq!(t.age(17_500 + 60_000), 1);
        assert!(t.view().is_empty());
    }

    #[test]
    fn ip_keys_agree() {
        let ip: IpAddr = "192.168.50.2".parse().unwrap();
        assert_eq!(ip_key(ip), ip4_key(0xc0a8_3202));
    }
}
