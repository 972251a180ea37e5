//! The routing table: longest-prefix match over IPv4 and IPv6 prefixes.
//!
//! Built by the controller from router addresses, pod addresses and static
//! routes, published inside the snapshot, read by the route stage. Each
//! table keeps one hash map per prefix length that occurs, longest first, so
//! a lookup costs one masked hash probe per distinct length (typically /32,
//! /24 and /0: three probes) whatever the number of routes. IPv4, the hot
//! case, is then compiled into a DIR-16-8-8 trie ([`Dir4`]: at most three
//! dependent array reads) when the table is frozen for publishing.
//!
//! Invariant: a table is immutable once published; a change builds a new one.

use std::net::IpAddr;

use rustc_hash::FxHashMap;

use crate::{MacKey, PortId};

/// Where a destination's neighbour is looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The pod bridge: every pod port; resolved by broadcast ARP there.
    Bridge,
    /// One routed port (the uplink): resolved by ARP probes on it.
    Port(PortId),
}

/// What a route says to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// One of the switch's own addresses: answered by the switch.
    Local,
    /// Send to the neighbour `gw` (the destination itself when `None`) on `link`.
    Resolve { link: Link, gw: Option<IpAddr> },
    /// Send to a neighbour known from configuration: a pod declared with
    /// `--ip`/`--mac`, or the kernel side of the host port.
    Peer { port: PortId, mac: MacKey },
    /// Encapsulate in VXLAN to the remote node `vtep` (IPv4); the outer
    /// packet is routed by a lookup of `vtep` in the same table.
    Vxlan { vtep: u32, vni: u32 },
}

/// A key type of a [`Lpm`]: an address as an unsigned integer.
pub trait LpmKey: Copy + Eq + std::hash::Hash {
    const BITS: u8;
    /// The address with all but the first `len` bits cleared.
    fn masked(self, len: u8) -> Self;
}

impl LpmKey for u32 {
    const BITS: u8 = 32;
    #[inline]
    fn masked(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u32::MAX << (32 - u32::from(len)))
        }
    }
}

impl LpmKey for u128 {
    const BITS: u8 = 128;
    #[inline]
    fn masked(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u128::MAX << (128 - u32::from(len)))
        }
    }
}

/// Longest-prefix-match table of one address family.
#[derive(Debug, Clone)]
pub struct Lpm<K: LpmKey, V> {
    /// Prefix lengths in use, longest first, each with its routes.
    levels: Vec<(u8, FxHashMap<K, V>)>,
    len: usize,
}

impl<K: LpmKey, V> Default for Lpm<K, V> {
    fn default() -> Self {
        Lpm {
            levels: Vec::new(),
            len: 0,
        }
    }
}

impl<K: LpmKey, V> Lpm<K, V> {
    /// Inserts (or replaces) the route for `addr/len`; host bits are ignored.
    pub fn insert(&mut self, addr: K, len: u8, value: V) {
        let len = len.min(K::BITS);
        let pos = match self.levels.iter().position(|(l, _)| *l <= len) {
            Some(i) if self.levels[i].0 == len => i,
            Some(i) => {
                self.levels.insert(i, (len, FxHashMap::default()));
                i
            }
            None => {
                self.levels.push((len, FxHashMap::default()));
                self.levels.len() - 1
            }
        };
        if self.levels[pos].1.insert(addr.masked(len), value).is_none() {
            self.len += 1;
        }
    }

    /// The value of the longest prefix containing `addr`.
    #[inline]
    pub fn lookup(&self, addr: K) -> Option<&V> {
        for (len, routes) in &self.levels {
            if let Some(v) = routes.get(&addr.masked(*len)) {
                return Some(v);
            }
        }
        None
    }

    /// The value stored for exactly `addr/len`.
    pub fn get_exact(&self, addr: K, len: u8) -> Option<&V> {
        self.levels
            .iter()
            .find(|(l, _)| *l == len)
            .and_then(|(_, m)| m.get(&addr.masked(len)))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A multibit trie over IPv4 with strides 16, 8 and 8 (DIR-16-8-8): a
/// lookup is one to three dependent array reads, whatever the number of
/// routes. Built from a finished [`Lpm`] by controlled prefix expansion.
#[derive(Debug, Clone)]
pub struct Dir4<V> {
    /// Indexed by the top 16 bits.
    top: Box<[u32]>,
    /// Tables of 256 indexed by the next 8 bits, then the last 8.
    mid: Vec<[u32; 256]>,
    low: Vec<[u32; 256]>,
    values: Vec<V>,
}

/// An entry: 0 no route, `CHILD | i` table `i` of the next level, else
/// the value index + 1.
const CHILD: u32 = 1 << 31;

impl<V: Clone> Dir4<V> {
    /// Builds the trie holding exactly the routes of `lpm`.
    pub fn build(lpm: &Lpm<u32, V>) -> Self {
        let mut d = Dir4 {
            top: vec![0u32; 1 << 16].into_boxed_slice(),
            mid: Vec::new(),
            low: Vec::new(),
            values: Vec::with_capacity(lpm.len()),
        };
        // Shortest prefixes first, so that longer ones overwrite them, and
        // every child table starts as a copy of the entry it replaces.
        for (len, routes) in lpm.levels.iter().rev() {
            let len = u32::from(*len);
            for (&addr, v) in routes {
                d.values.push(v.clone());
                let e = d.values.len() as u32;
                if len <= 16 {
                    let first = (addr >> 16) as usize;
                    let n = 1usize << (16 - len);
                    d.top[first..first + n].fill(e);
                    continue;
                }
                let t = d.child_of_top((addr >> 16) as usize);
                if len <= 24 {
                    let first = ((addr >> 8) & 0xff) as usize;
                    let n = 1usize << (24 - len);
                    d.mid[t][first..first + n].fill(e);
                    continue;
                }
                let u = d.child_of_mid(t, ((addr >> 8) & 0xff) as usize);
                let first = (addr & 0xff) as usize;
                let n = 1usize << (32 - len);
                d.low[u][first..first + n].fill(e);
            }
        }
        d
    }

    fn child_of_top(&mut self, i: usize) -> usize {
        let e = self.top[i];
        if e & CHILD != 0 {
            return (e & !CHILD) as usize;
        }
        self.mid.push([e; 256]);
        let t = self.mid.len() - 1;
        self.top[i] = CHILD | t as u32;
        t
    }

    fn child_of_mid(&mut self, t: usize, i: usize) -> usize {
        let e = self.mid[t][i];
        if e & CHILD != 0 {
            return (e & !CHILD) as usize;
        }
        self.low.push([e; 256]);
        let u = self.low.len() - 1;
        self.mid[t][i] = CHILD | u as u32;
        u
    }

    /// The value of the longest prefix containing `addr`.
    #[inline]
    pub fn lookup(&self, addr: u32) -> Option<&V> {
        let mut e = self.top[(addr >> 16) as usize];
        if e & CHILD != 0 {
            e = self.mid[(e & !CHILD) as usize][((addr >> 8) & 0xff) as usize];
            if e & CHILD != 0 {
                e = self.low[(e & !CHILD) as usize][(addr & 0xff) as usize];
            }
        }
        if e == 0 {
            None
        } else {
            self.values.get(e as usize - 1)
        }
    }
}

/// The routes of both families.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    pub v4: Lpm<u32, NextHop>,
    pub v6: Lpm<u128, NextHop>,
    /// The IPv4 routes as a trie for fast lookups; built by [`RouteTable::freeze`].
    dir4: Option<Dir4<NextHop>>,
}

impl RouteTable {
    /// Adds a route. Until [`RouteTable::freeze`] is called again, IPv4
    /// lookups use the slower per-length hash tables.
    pub fn insert(&mut self, addr: IpAddr, len: u8, hop: NextHop) {
        match addr {
            IpAddr::V4(a) => {
                self.dir4 = None;
                self.v4.insert(u32::from(a), len, hop)
            }
            IpAddr::V6(a) => self.v6.insert(u128::from(a), len, hop),
        }
    }

    /// Builds the lookup structures; done once before the table is published.
    pub fn freeze(&mut self) {
        self.dir4 = Some(Dir4::build(&self.v4));
    }

    /// The IPv4 route for `addr`.
    #[inline]
    pub fn lookup4(&self, addr: u32) -> Option<&NextHop> {
        match &self.dir4 {
            Some(d) => d.lookup(addr),
            None => self.v4.lookup(addr),
        }
    }

    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> Option<&NextHop> {
        match addr {
            IpAddr::V4(a) => self.lookup4(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> u32 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap())
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t: Lpm<u32, &str> = Lpm::default();
        t.insert(0, 0, "default");
        t.insert(v4("10.244.0.0"), 16, "cluster");
        t.insert(v4("10.244.1.0"), 24, "node");
        t.insert(v4("10.244.1.7"), 32, "pod");
        assert_eq!(t.lookup(v4("10.244.1.7")), Some(&"pod"));
        assert_eq!(t.lookup(v4("10.244.1.8")), Some(&"node"));
        assert_eq!(t.lookup(v4("10.244.9.8")), Some(&"cluster"));
        assert_eq!(t.lookup(v4("8.8.8.8")), Some(&"default"));
        assert_eq!(t.len(), 4);
        assert_eq!(t.get_exact(v4("10.244.1.99"), 24), Some(&"node"));
    }

    #[test]
    fn no_default_means_no_route_and_host_bits_are_ignored() {
        let mut t: Lpm<u32, u8> = Lpm::default();
        t.insert(v4("192.168.5.77"), 24, 1);
        t.insert(v4("192.168.5.0"), 24, 2);
        assert_eq!(t.len(), 1, "same prefix replaced");
        assert_eq!(t.lookup(v4("192.168.5.1")), Some(&2));
        assert_eq!(t.lookup(v4("192.168.6.1")), None);
    }

    #[test]
    fn dir4_agrees_with_the_hash_tables() {
        let mut t: Lpm<u32, usize> = Lpm::default();
        let mut x: u32 = 0x0af4_0000;
        let mut probes = vec![0, u32::MAX, 0x0af4_0101];
        for i in 0..3000usize {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            // Cluster most prefixes in 10/8 so that they nest.
            let a = if i % 3 == 0 {
                x
            } else {
                0x0a00_0000 | (x & 0x00ff_ffff)
            };
            let len = [0u8, 8, 12, 16, 17, 20, 23, 24, 25, 28, 31, 32][i % 12];
            t.insert(a, len, i);
            probes.push(a);
            probes.push(a ^ 1);
            probes.push(a ^ 0x100);
            probes.push(a.wrapping_add(0x1_0000));
        }
        let d = Dir4::build(&t);
        for p in probes {
            assert_eq!(d.lookup(p), t.lookup(p), "{:#x}", p);
        }
        let empty: Lpm<u32, u8> = Lpm::default();
        assert_eq!(Dir4::build(&empty).lookup(1), None);
    }

    #[test]
    fn frozen_and_unfrozen_tables_agree() {
        let mut t = RouteTable::default();
        t.insert("10.0.0.0".parse().unwrap(), 8, NextHop::Local);
        t.insert(
            "10.1.2.3".parse().unwrap(),
            32,
            NextHop::Resolve {
                link: Link::Bridge,
                gw: None,
            },
        );
        let probe = |t: &RouteTable| {
            ["10.1.2.3", "10.1.2.4", "11.0.0.1"].map(|a| t.lookup(a.parse().unwrap()).copied())
        };
        let before = probe(&t);
        t.freeze();
        assert_eq!(probe(&t), before);
        t.insert("11.0.0.0".parse().unwrap(), 8, NextHop::Local);
        assert_eq!(
            t.lookup("11.0.0.1".parse().unwrap()),
            Some(&NextHop::Local),
            "insert drops the stale trie"
        );
    }

    #[test]
    fn ipv6_and_mixed_lengths_agree_with_a_linear_scan() {
        let mut t: Lpm<u128, usize> = Lpm::default();
        let mut routes = Vec::new();
        let mut x: u128 = 0x2001_0db8_0000_0000_0000_0000_0000_0000;
        for i in 0..300usize {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = [0u8, 16, 32, 48, 64, 127, 128][i % 7];
            t.insert(x, len, i);
            routes.retain(|&(a, l, _): &(u128, u8, usize)| {
                !(l == len && a.masked(l) == x.masked(len))
            });
            routes.push((x, len, i));
        }
        for probe in routes.iter().map(|r| r.0).chain([1u128, u128::MAX]) {
            let best = routes
                .iter()
                .filter(|(a, l, _)| probe.masked(*l) == a.masked(*l))
                .max_by_key(|(_, l, _)| *l)
                .map(|r| r.2);
            assert_eq!(t.lookup(probe).copied(), best);
        }
    }
}
