//! Maglev consistent hashing (Eisenbud et al., NSDI 2016).
//!
//! A lookup table of a prime size `M` maps a flow hash to one of `N`
//! backends. Each backend has its own permutation of the table's slots,
//! derived from its name; backends take turns claiming their next preferred
//! free slot until the table is full. The result spreads flows evenly
//! (each backend owns `M/N` slots, ±1) and changes little when the backend
//! set changes: removing one of `N` backends moves about `1/N` of the flows,
//! almost all of them the removed backend's own.
//!
//! Invariant: the table depends only on the set of backend names and `M`,
//! never on the order the backends are given in, the process or the
//! machine, so every node (and every restart) builds the same table.

/// Default smallest table size (a prime): every Service of up to 20 ready
/// endpoints has a table of this size, whatever its count does (4 KiB a
/// Service; a batch of 10,000 Services stays within a second to apply).
pub const DEFAULT_MIN_SIZE: u32 = 2039;

/// Slots per backend at least (the paper's recommendation: `M ≥ 100 N`).
pub const SLOTS_PER_BACKEND: u32 = 100;

/// Most backends one table holds (indices are `u16`).
pub const MAX_BACKENDS: usize = 4096;

/// The sizes a table takes beyond the smallest: the largest primes below
/// 2^8, 2^10, ... 2^20, four times apart.
pub const SIZES: [u32; 7] = [251, 1021, 4093, 16381, 65521, 262_139, 1_048_573];

/// The table size for `backends` backends: the smallest prime at least
/// `min_size` while that holds 100 slots per backend, else the smallest of
/// [`SIZES`] that does (beyond the last, the smallest prime that does).
///
/// Maglev moves only ~1/N of the flows when a backend comes or goes *at
/// the same size*; a new size remaps almost all. So the size does not
/// follow the count: a Service keeps `min_size` (rounded up to a prime)
/// up to `min_size / 100` backends, and beyond that it changes only when
/// its count crosses a step four times the last. A function of the count
/// and `min_size` alone, so every node and every restart sizes a Service
/// alike.
pub fn table_size(backends: usize, min_size: u32) -> u32 {
    let want = (backends as u64 * u64::from(SLOTS_PER_BACKEND)).max(2);
    let base = next_prime(u64::from(min_size).max(2));
    if base >= want {
        return base as u32;
    }
    match SIZES.iter().find(|&&m| u64::from(m) >= want) {
        Some(&m) => m,
        None => next_prime(want) as u32,
    }
}

/// The smallest prime at least `n`.
fn next_prime(mut n: u64) -> u64 {
    while !is_prime(n) {
        n += 1;
    }
    n
}

/// Trial division; the sizes here are below a few million.
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// A 64-bit FNV-1a hash with a final avalanche (splitmix64), stable across
/// builds and machines.
fn stable_hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Builds the lookup table of size `m` (a prime) for backends named
/// `names`: entry `i` is the index in `names` of the backend that owns slot
/// `i`. With no backends the table is empty.
pub fn build(names: &[Vec<u8>], m: u32) -> Box<[u16]> {
    debug_assert!(is_prime(u64::from(m)));
    let n = names.len().min(MAX_BACKENDS);
    if n == 0 {
        return Box::default();
    }
    let m64 = u64::from(m);
    // Claim order must not depend on the order names were given in: walk
    // the backends sorted by name, but record each one's original index.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| names[a].cmp(&names[b]));
    let perms: Vec<(u64, u64)> = order
        .iter()
        .map(|&i| {
            let offset = stable_hash(&names[i], 0x6d61_676c_6576) % m64;
            let skip = stable_hash(&names[i], 0x736b_6970) % (m64 - 1) + 1;
            (offset, skip)
        })
        .collect();
    const EMPTY: u16 = u16::MAX;
    let mut table = vec![EMPTY; m as usize].into_boxed_slice();
    // Each backend's next preferred slot, `(offset + j × skip) mod m` for
    // its j-th preference, kept as the slot itself and stepped by `skip`
    // (one addition and at most one subtraction, no division per probe).
    let mut cursor: Vec<u64> = perms.iter().map(|&(offset, _)| offset).collect();
    let step = |slot: u64, skip: u64| {
        let s = slot + skip;
        if s >= m64 { s - m64 } else { s }
    };
    let mut filled = 0u64;
    'fill: loop {
        for (k, &(_, skip)) in perms.iter().enumerate() {
            // The backend's next preferred slot that is still free.
            let mut slot = cursor[k];
            while table[slot as usize] != EMPTY {
                slot = step(slot, skip);
            }
            table[slot as usize] = order[k] as u16;
            cursor[k] = step(slot, skip);
            filled += 1;
            if filled == m64 {
                break 'fill;
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("10.244.{}.{}:8080", i / 200, i % 200 + 2).into_bytes())
            .collect()
    }

    #[test]
    fn sizes_are_primes_of_at_least_100_per_backend_that_stay_put() {
        // One size from 0 to 20 endpoints with the default, then steps.
        assert!((0..=20).all(|n| table_size(n, DEFAULT_MIN_SIZE) == 2039));
        assert!((21..=40).all(|n| table_size(n, DEFAULT_MIN_SIZE) == 4093));
        assert_eq!(table_size(41, DEFAULT_MIN_SIZE), 16381);
        assert!((41..=163).all(|n| table_size(n, DEFAULT_MIN_SIZE) == 16381));
        // A smallest size between steps is kept as it is (rounded up to a
        // prime), not rounded up to a step.
        assert!((0..=655).all(|n| table_size(n, 65_537) == 65_537));
        assert_eq!(table_size(656, 65_537), 262_139);
        assert_eq!(table_size(3, 1000), 1009);
        assert_eq!(table_size(11, 1000), 4093);
        assert_eq!(table_size(0, 251), 251);
        assert!(is_prime(u64::from(table_size(1000, 7))));
        assert!(table_size(1000, 7) >= 100_000);
        assert!(!is_prime(1) && is_prime(2) && is_prime(65537) && !is_prime(65535));
        for m in SIZES {
            assert!(is_prime(u64::from(m)), "{m}");
        }
        for n in 0..=MAX_BACKENDS {
            for min in [2, 251, DEFAULT_MIN_SIZE, 65_537] {
                let m = table_size(n, min);
                assert!(u64::from(m) >= 100 * n as u64 && m >= min && is_prime(u64::from(m)));
            }
        }
    }

    #[test]
    fn every_backend_owns_an_even_share() {
        let n = names(10);
        let m = table_size(10, DEFAULT_MIN_SIZE);
        let t = build(&n, m);
        assert_eq!(t.len(), m as usize);
        let mut count = [0u32; 10];
        for &b in t.iter() {
            count[usize::from(b)] += 1;
        }
        for c in count {
            // M/N ± 1 (the paper's bound for a complete round).
            assert!((m / 10..=m / 10 + 1).contains(&c), "{count:?}");
        }
    }

    #[test]
    fn build_is_deterministic_and_ignores_input_order() {
        let n = names(7);
        let m = table_size(7, DEFAULT_MIN_SIZE);
        let a = build(&n, m);
        assert_eq!(a, build(&n, m));
        let mut rev = n.clone();
        rev.reverse();
        let b = build(&rev, m);
        // Same backend (by name) in every slot.
        for (x, y) in a.iter().zip(b.iter()) {
            assert_eq!(n[usize::from(*x)], rev[usize::from(*y)]);
        }
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        let n = 20;
        let all = names(n);
        let m = table_size(n, DEFAULT_MIN_SIZE);
        let before = build(&all, m);
        let removed = 7;
        let mut rest = all.clone();
        rest.remove(removed);
        let after = build(&rest, m);
        let mut moved = 0;
        for (x, y) in before.iter().zip(after.iter()) {
            if all[usize::from(*x)] != rest[usize::from(*y)] {
                moved += 1;
            }
        }
        let share = f64::from(moved) / f64::from(m);
        // The removed backend's own 1/N must move; Maglev moves only a
        // little more than that.
        assert!(share >= 1.0 / n as f64 - 0.001, "moved {share}");
        assert!(share < 1.6 / n as f64, "moved {share}");
    }

    /// The population as the paper writes it: preference j of a backend
    /// is `(offset + j × skip) mod M`.
    fn reference(names: &[Vec<u8>], m: u32) -> Vec<u16> {
        let m64 = u64::from(m);
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.sort_by(|&a, &b| names[a].cmp(&names[b]));
        let mut table = vec![u16::MAX; m as usize];
        let mut next = vec![0u64; names.len()];
        let mut filled = 0;
        while filled < m64 {
            for (k, &i) in order.iter().enumerate() {
                let offset = stable_hash(&names[i], 0x6d61_676c_6576) % m64;
                let skip = stable_hash(&names[i], 0x736b_6970) % (m64 - 1) + 1;
                let mut slot = (offset + next[k] * skip) % m64;
                while table[slot as usize] != u16::MAX {
                    next[k] += 1;
                    slot = (offset + next[k] * skip) % m64;
                }
                table[slot as usize] = i as u16;
                next[k] += 1;
                filled += 1;
                if filled == m64 {
                    break;
                }
            }
        }
        table
    }

    #[test]
    fn the_table_is_the_papers_population() {
        for n in [1, 2, 3, 7, 10, 11, 40, 41, 200] {
            for m in [251, 1009, 4093, 16381] {
                if u64::from(m) < n as u64 {
                    continue;
                }
                assert_eq!(
                    &*build(&names(n), m),
                    &reference(&names(n), m)[..],
                    "n {n} m {m}"
                );
            }
        }
    }

    #[test]
    fn empty_backend_set_gives_an_empty_table() {
        assert!(build(&[], 251).is_empty());
    }
}
