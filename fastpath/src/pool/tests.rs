//! Unit tests of the frame pool.

use super::*;

#[test]
fn alloc_free_and_accounting() {
    let mut p = FramePool::heap(4);
    let a = p.alloc().unwrap();
    assert_eq!(a, HEADROOM);
    let b = p.alloc().unwrap();
    p.lend(b, 7);
    assert_eq!(
        p.counts(),
        PoolCounts {
            total: 4,
            free: 2,
            lent: 1,
            worker: 1,
            handoff: 0,
            errors: 0
        }
    );
    assert_eq!(p.reclaim(b, 8), None, "wrong port");
    assert_eq!(p.counts().errors, 1);
    assert_eq!(
        p.reclaim(b + 10, 7),
        Some(b),
        "offset within the frame is canonicalised"
    );
    p.free(b);
    p.free(b);
    assert_eq!(p.counts().errors, 2, "double free detected");
    p.free(a);
    assert_eq!(p.available(), 4);
}

#[test]
fn exhaustion_and_copies() {
    let mut p = FramePool::heap(2);
    let (a, len) = p.write_frame(&[1, 2, 3]).unwrap();
    assert_eq!(p.data(a, len), &[1, 2, 3]);
    let c = p.copy_frame(a, len).unwrap();
    assert_eq!(p.data(c, len), &[1, 2, 3]);
    assert!(p.alloc().is_none());
    assert!(p.copy_frame(a, len).is_none());
}

#[test]
fn bad_addresses_are_harmless() {
    let mut p = FramePool::heap(2);
    assert!(p.data(FRAME_SIZE * 9 + HEADROOM, 10).is_empty());
    assert!(p.data(5, 10).is_empty());
    assert_eq!(p.reclaim(FRAME_SIZE * 100, 1), None);
    p.free(FRAME_SIZE * 100);
    assert_eq!(p.counts().errors, 4);
}

#[test]
fn big_frames_hold_gso_frames_and_are_kept_apart() {
    let mut p = FramePool::with_big(2, 2);
    assert_eq!(p.total(), 4);
    let big = vec![7u8; 60_000];
    let (a, len) = p.write_frame(&big).unwrap();
    assert_eq!(len, 60_000);
    assert!(!p.in_umem(a), "a big frame is not in the UMEM");
    assert_eq!(p.data(a, len), &big[..]);
    assert_eq!(p.available_big(), 1);
    let c = p.copy_frame(a, len).unwrap();
    assert_eq!(p.data(c, len).len(), 60_000);
    assert!(p.copy_frame(a, len).is_none(), "no big frame left");
    // A short copy of a big frame takes a regular one.
    let s = p.copy_frame(a, 100).unwrap();
    assert!(p.in_umem(s));
    // Inside a big frame but not its start: not a frame.
    assert!(p.data(a + FRAME_SIZE, 10).is_empty());
    p.free(a);
    p.free(c);
    p.free(s);
    p.free(a);
    assert_eq!(
        p.counts().errors,
        2,
        "a read inside a big frame, and its double free, counted"
    );
    assert_eq!(p.available(), 4);
    assert_eq!(p.umem().len(), 2 * FRAME_SIZE as usize);
    let r = p.alloc().unwrap();
    let w = p.with_headroom_mut(r, 10, 5);
    assert_eq!(w.len(), 15);
    assert!(p.with_headroom_mut(r, HEADROOM + 1, 5).is_empty());
    // A pool without big frames keeps GSO-sized data out.
    let mut q = FramePool::new(1);
    assert_eq!(q.write_frame(&big).unwrap().1, FRAME_CAPACITY);
}

#[test]
fn reclaim_port_recovers_lent_frames() {
    let mut p = FramePool::heap(8);
    for _ in 0..5 {
        let a = p.alloc().unwrap();
        p.lend(a, 3);
    }
    assert_eq!(p.reclaim_port(3), 5);
    assert_eq!(p.available(), 8);
    assert_eq!(p.counts().lent, 0);
}

#[test]
fn normalize_moves_data() {
    let mut p = FramePool::heap(1);
    let a = p.alloc().unwrap();
    p.data_mut(a, 4).copy_from_slice(&[0, 0, 9, 9]);
    assert_eq!(p.normalize(a + 2, a, 2), Some(2));
    assert_eq!(p.data(a, 2), &[9, 9]);
    assert_eq!(p.normalize(a, a, FRAME_CAPACITY + 1), None);
}

/// Frames the worker does not hold (free, lent to a port's kernel ring,
/// handed to another worker) cannot be reached through any accessor: each
/// gives nothing and counts an error; the frames' bytes stay as they were.
#[test]
fn frames_not_held_are_out_of_reach() {
    let mut p = FramePool::with_big(4, 1);
    let (lent, _) = p.write_frame(&[1; 64]).unwrap();
    let (handed, _) = p.write_frame(&[2; 64]).unwrap();
    let (freed, _) = p.write_frame(&[3; 64]).unwrap();
    let held = p.alloc().unwrap();
    let big = p.alloc_big().unwrap();
    p.lend(lent, 3);
    p.mark_handoff(handed);
    p.free(freed);
    p.free(big);
    let mut errors = p.counts().errors;
    assert_eq!(errors, 0);
    for addr in [lent, handed, freed, big] {
        assert!(!p.holds(addr));
        assert!(p.data(addr, 64).is_empty());
        assert!(p.data_mut(addr, 64).is_empty());
        assert!(p.frame_mut(addr).is_empty());
        assert!(p.with_headroom_mut(addr, 10, 64).is_empty());
        assert!(p.raw_span(addr, 0, 64).is_none());
        assert!(p.copy_frame(addr, 64).is_none());
        assert!(p.pair_mut(addr, 64, held, 64).is_none());
        assert!(p.pair_mut(held, 64, addr, 64).is_none());
        assert!(!p.copy_into(addr, held, 0, 64));
        assert!(!p.copy_into(held, addr, 0, 64));
        errors += 10;
        if p.in_umem(addr) {
            assert!(p.headroom_tail_mut::<24>(addr).is_none());
            assert_eq!(p.normalize(addr, addr, 64), None);
            errors += 2;
        }
        assert_eq!(p.counts().errors, errors, "frame {addr}");
    }
    assert!(p.holds(held) && !p.data_mut(held, 64).is_empty());
    assert_eq!(p.counts().errors, errors);
    // What the kernel and the other worker own is untouched.
    assert_eq!(p.reclaim(lent, 3), Some(lent));
    assert_eq!(p.data(lent, 64), &[1; 64][..]);
    // A frame in transit goes back only as the other worker returns it:
    // freed as if the worker held it, it stays where it is (counted).
    p.free(handed);
    assert_eq!(p.counts().handoff, 1);
    assert_eq!(p.counts().errors, errors + 1);
    p.free_returned(handed);
    assert_eq!(p.counts().handoff, 0);
    p.free_returned(handed);
    assert_eq!(p.counts().errors, errors + 2, "returned twice");
    let again = p.alloc().unwrap();
    assert!(p.holds(again));
}
