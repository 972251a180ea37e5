//! Flow keys: the packed 5-tuple every record is keyed by, the translation
//! a record holds, and the keyed hash that places keys in maps and shards.
//!
//! A key packs source and destination addresses, ports and the protocol
//! into one `u128` ([`flow_key`]); [`flow_parts`] is its exact inverse.
//! The hash key of [`FlowHash`] is drawn at random once per table, so
//! nothing outside the process can predict which bucket or shard a tuple
//! lands in.

use std::hash::{BuildHasher, Hasher};

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

/// The client's port in a packed tuple: the source port of an
/// original-direction key, the destination port of a reply key.
#[inline]
pub(super) fn client_port(key: u128, orig: bool) -> u16 {
    if orig {
        (key >> 48) as u16
    } else {
        (key >> 32) as u16
    }
}

/// The addresses and ports a packet leaves with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nat {
    pub src: u32,
    pub sport: u16,
    pub dst: u32,
    pub dport: u16,
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
    pub(super) fn of(&self, k: u128) -> u64 {
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
