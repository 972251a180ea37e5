//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// Ones'-complement sum of `data` added to `acc`, partly folded (at most 17
/// bits): more may be added before [`fold`]. Sums 32-bit words (twice as
/// few additions as 16-bit ones; 2^32 ≡ 1 modulo 0xffff, so the folded
/// result is the same).
#[inline]
pub fn sum(data: &[u8], acc: u32) -> u32 {
    let mut s = u64::from(acc);
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        s += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    if rest.len() >= 2 {
        s += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
    }
    if rest.len() % 2 == 1 {
        s += u64::from(rest[rest.len() - 1]) << 8;
    }
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff_ffff) + (s >> 32);
    let s = s as u32;
    (s & 0xffff) + (s >> 16)
}

/// Folds a sum to 16 bits and complements it: the Internet checksum.
#[inline]
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The Internet checksum of `data`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    fold(sum(data, 0))
}

/// RFC 1624 eqn. 3: the checksum after one 16-bit word changed from `old`
/// to `new`: HC' = ~(~HC + ~m + m').
#[inline(always)]
pub fn checksum_update(hc: u16, old: u16, new: u16) -> u16 {
    fold(u32::from(!hc) + u32::from(!old) + u32::from(new))
}

/// The ones'-complement sum of the 16-bit halves of a 32-bit word (an
/// IPv4 address, or a port widened to 32 bits).
#[inline(always)]
pub fn halves(a: u32) -> u32 {
    (a >> 16) + (a & 0xffff)
}

/// What changing 32-bit words from `old` to `new` adds to a checksum's
/// complement (RFC 1624 eqn. 3 over every changed word: Σ~m + Σm').
#[inline(always)]
pub fn delta32(old: &[u32], new: &[u32]) -> u32 {
    let mut acc = 0;
    for (&o, &n) in old.iter().zip(new) {
        acc += halves(!o) + halves(n);
    }
    acc
}

/// The checksum `hc` after a change whose [`delta32`] is `delta`.
#[inline(always)]
pub fn apply_delta(hc: u16, delta: u32) -> u16 {
    fold(u32::from(!hc) + delta)
}
