//! A worker's packet buffers: fixed-size frames in one memory region.
//!
//! The region's first part is page-aligned memory that every AF_XDP port of
//! the worker registers as its UMEM ([`FramePool::umem`]), so forwarding
//! between two AF_XDP ports hands a descriptor from one socket's RX ring to
//! another's TX ring without copying. TAP and in-memory ports read into and
//! write from the same frames.
//!
//! After the UMEM come a few *big* frames ([`BIG_CAPACITY`] bytes) for the
//! GSO frames of TAP ports with offloads (up to 64 KiB of TCP or UDP in one
//! frame); they are never lent to the kernel's AF_XDP rings. Every address
//! names one frame of either kind; [`FramePool::data`] and friends take both.
//!
//! A frame is named by its *address*: the byte offset of its packet data in
//! the region. Every frame has an owner, tracked in a side array so that a
//! leak or a double use is detected and counted instead of corrupting
//! memory:
//!
//! - `FREE`: in the free list;
//! - `WORKER`: held by the worker (in a batch);
//! - `HANDOFF`: in transit to another worker;
//! - a port id: lent to that port (a kernel fill or TX ring).
//!
//! All `unsafe` about raw frame memory is in this file.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;

use crate::PortId;

mod view;
pub use view::PoolView;

/// Bytes per frame.
pub const FRAME_SIZE: u32 = 2048;
/// Bytes in front of the packet data (the kernel's XDP_PACKET_HEADROOM).
pub const HEADROOM: u32 = 256;
/// Largest frame the pool can hold.
pub const FRAME_CAPACITY: u32 = FRAME_SIZE - HEADROOM;
/// Bytes per big frame: 64 KiB of GSO payload and headers, with room to spare.
pub const BIG_FRAME_SIZE: u32 = 34 * FRAME_SIZE;
/// Largest frame a big frame holds.
pub const BIG_CAPACITY: u32 = BIG_FRAME_SIZE - HEADROOM;
/// Big frames of each worker's pool.
pub const BIG_FRAMES: u32 = 64;
/// Size of the fill and completion rings of each AF_XDP socket.
pub const XSK_RING_SIZE: u32 = 2048;

const FREE: u16 = u16::MAX;
const WORKER: u16 = u16::MAX - 1;
const HANDOFF: u16 = u16::MAX - 2;
/// The slots of a big frame after its first: no frame starts there.
const INSIDE: u16 = u16::MAX - 3;
/// Regular-frame slots a big frame spans.
const SLOTS_PER_BIG: u32 = BIG_FRAME_SIZE / FRAME_SIZE;

/// Counts of where a pool's frames are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolCounts {
    pub total: u32,
    pub free: u32,
    pub lent: u32,
    pub worker: u32,
    pub handoff: u32,
    /// Double frees and descriptors handed back that were not lent out.
    pub errors: u64,
}

/// The frames of one worker.
pub struct FramePool {
    base: NonNull<u8>,
    /// Regular frames, then `big` big ones.
    count: u32,
    big: u32,
    /// Bytes of regular frames: the UMEM part, where big frames start.
    umem_len: u32,
    free: Vec<u32>,
    free_big: Vec<u32>,
    owner: Vec<u16>,
    lent: u32,
    handoff: u32,
    errors: u64,
    layout: Layout,
}

// SAFETY: the pool exclusively owns its region (heap allocation or UMEM
// mapping); moving it to another thread moves that ownership with it.
unsafe impl Send for FramePool {}

impl FramePool {
    /// A pool of `count` regular frames and no big ones.
    pub fn new(count: u32) -> Self {
        Self::with_big(count, 0)
    }

    /// A pool of `count` regular frames and `big` big frames.
    pub fn with_big(count: u32, big: u32) -> Self {
        let count = count.max(1);
        let umem_len = count
            .checked_mul(FRAME_SIZE)
            .and_then(|u| big.checked_mul(BIG_FRAME_SIZE)?.checked_add(u).map(|_| u))
            .expect("pool addresses fit in 32 bits");
        let size = umem_len as usize + big as usize * BIG_FRAME_SIZE as usize;
        let layout = Layout::from_size_align(size, 4096).expect("pool layout fits in memory");
        // SAFETY: the layout has non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        let base = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        // Free list in reverse so that the first allocations get low addresses.
        let free = (0..count)
            .rev()
            .map(|i| i * FRAME_SIZE + HEADROOM)
            .collect();
        let free_big = (0..big)
            .rev()
            .map(|j| umem_len + j * BIG_FRAME_SIZE + HEADROOM)
            .collect();
        FramePool {
            base,
            count,
            big,
            umem_len,
            free,
            free_big,
            owner: (0..count + big * SLOTS_PER_BIG)
                .map(|slot| {
                    if slot >= count && !(slot - count).is_multiple_of(SLOTS_PER_BIG) {
                        INSIDE
                    } else {
                        FREE
                    }
                })
                .collect(),
            lent: 0,
            handoff: 0,
            errors: 0,
            layout,
        }
    }

    /// Same as [`FramePool::new`] (kept for tests and benches).
    pub fn heap(count: u32) -> Self {
        Self::new(count)
    }

    /// Number of frames (regular and big).
    pub fn total(&self) -> u32 {
        self.count + self.big
    }

    /// Number of regular frames (those AF_XDP rings may carry).
    pub fn regular(&self) -> u32 {
        self.count
    }

    /// Frames in the free lists (regular and big).
    pub fn available(&self) -> u32 {
        (self.free.len() + self.free_big.len()) as u32
    }

    /// Regular frames in the free list.
    pub fn available_regular(&self) -> u32 {
        self.free.len() as u32
    }

    /// Big frames in the free list.
    pub fn available_big(&self) -> u32 {
        self.free_big.len() as u32
    }

    /// True for a frame the AF_XDP rings may carry (a regular frame).
    #[inline]
    pub fn in_umem(&self, addr: u32) -> bool {
        addr < self.umem_len
    }

    /// The `N` bytes in front of a regular frame's data (the end of its
    /// headroom), where an AF_XDP socket's TX metadata goes; `None` for an
    /// address that is not a regular frame's.
    #[inline]
    pub fn headroom_tail_mut<const N: usize>(&mut self, addr: u32) -> Option<&mut [u8; N]> {
        if addr / FRAME_SIZE >= self.count || addr % FRAME_SIZE != HEADROOM || N > HEADROOM as usize
        {
            return None;
        }
        // SAFETY: the N bytes end where the frame's data starts and lie in
        // its headroom, within the region; the caller holds the frame.
        Some(unsafe { &mut *self.base.as_ptr().add(addr as usize - N).cast::<[u8; N]>() })
    }

    /// Where the frames are (regular and big together).
    pub fn counts(&self) -> PoolCounts {
        let free = self.available();
        let count = self.total();
        PoolCounts {
            total: count,
            free,
            lent: self.lent,
            handoff: self.handoff,
            worker: count - free - self.lent - self.handoff,
            errors: self.errors,
        }
    }

    /// The slot `addr` falls in (any offset within it). Slots are
    /// regular-frame sized over the whole region, so that finding a frame's
    /// owner costs the same for both kinds; a big frame is owned through
    /// its first slot (the others are `INSIDE`, never a frame's).
    #[inline]
    fn index(&self, addr: u32) -> Option<usize> {
        let idx = addr / FRAME_SIZE;
        (idx < self.owner.len() as u32).then_some(idx as usize)
    }

    /// The canonical address of the frame starting at slot `idx`.
    #[inline]
    fn canonical(idx: usize) -> u32 {
        idx as u32 * FRAME_SIZE + HEADROOM
    }

    /// How many bytes the frame at canonical address `addr` holds; `None`
    /// for an address that is not a frame's canonical one.
    #[inline]
    fn capacity(&self, addr: u32) -> Option<u32> {
        if addr / FRAME_SIZE < self.count && addr % FRAME_SIZE == HEADROOM {
            return Some(FRAME_CAPACITY);
        }
        self.big_capacity(addr)
    }

    #[inline(never)]
    fn big_capacity(&self, addr: u32) -> Option<u32> {
        let j = (addr / FRAME_SIZE).checked_sub(self.count)?;
        (addr % FRAME_SIZE == HEADROOM
            && j < self.big * SLOTS_PER_BIG
            && j.is_multiple_of(SLOTS_PER_BIG))
        .then_some(BIG_CAPACITY)
    }

    /// Takes a free frame for the worker.
    #[inline]
    pub fn alloc(&mut self) -> Option<u32> {
        let addr = self.free.pop()?;
        self.owner[(addr / FRAME_SIZE) as usize] = WORKER;
        Some(addr)
    }

    /// Takes a free big frame for the worker.
    #[inline]
    pub fn alloc_big(&mut self) -> Option<u32> {
        let addr = self.free_big.pop()?;
        let idx = self.index(addr).expect("free big frames are in the pool");
        self.owner[idx] = WORKER;
        Some(addr)
    }

    /// Takes a free frame that holds `len` bytes: a regular one when it
    /// fits, else a big one.
    #[inline]
    pub fn alloc_for(&mut self, len: u32) -> Option<u32> {
        if len <= FRAME_CAPACITY {
            self.alloc()
        } else if len <= BIG_CAPACITY {
            self.alloc_big()
        } else {
            None
        }
    }

    /// Returns a frame held by the worker to the free list.
    #[inline]
    pub fn free(&mut self, addr: u32) {
        let Some(idx) = self.index(addr) else {
            self.errors += 1;
            return;
        };
        match self.owner[idx] {
            WORKER => {}
            HANDOFF => self.handoff -= 1,
            _ => {
                // Already free, or lent to a port: returning it would let
                // two users write the same memory.
                self.errors += 1;
                return;
            }
        }
        self.owner[idx] = FREE;
        self.release(idx);
    }

    #[inline]
    fn release(&mut self, idx: usize) {
        let addr = Self::canonical(idx);
        if idx < self.count as usize {
            self.free.push(addr);
        } else {
            self.free_big.push(addr);
        }
    }

    /// Marks a worker-held frame as lent to `port` (placed in a kernel ring).
    #[inline]
    pub fn lend(&mut self, addr: u32, port: PortId) {
        match self.index(addr) {
            Some(idx) if self.owner[idx] == WORKER => {
                self.owner[idx] = port;
                self.lent += 1;
            }
            _ => self.errors += 1,
        }
    }

    /// Takes back a frame that `port` returned (RX or completion). Returns
    /// the frame's canonical address, or `None` (counted as an error) if the
    /// frame was not lent to that port.
    #[inline]
    pub fn reclaim(&mut self, addr: u32, port: PortId) -> Option<u32> {
        let Some(idx) = self.index(addr) else {
            self.errors += 1;
            return None;
        };
        if self.owner[idx] != port {
            self.errors += 1;
            return None;
        }
        self.owner[idx] = WORKER;
        self.lent -= 1;
        Some(Self::canonical(idx))
    }

    /// Frees every frame lent to `port` (the port is gone and its rings with
    /// it). Returns how many were recovered.
    pub fn reclaim_port(&mut self, port: PortId) -> u32 {
        let mut n = 0;
        for idx in 0..self.owner.len() {
            if self.owner[idx] == port {
                self.owner[idx] = FREE;
                self.lent -= 1;
                self.release(idx);
                n += 1;
            }
        }
        n
    }

    /// Marks a worker-held frame as in transit to another worker.
    #[inline]
    pub fn mark_handoff(&mut self, addr: u32) {
        match self.index(addr) {
            Some(idx) if self.owner[idx] == WORKER => {
                self.owner[idx] = HANDOFF;
                self.handoff += 1;
            }
            _ => self.errors += 1,
        }
    }

    /// Moves packet data that the kernel placed at `addr` (which may not be
    /// the canonical offset) so it starts at the canonical address `canon`.
    /// Returns the length kept, or `None` if `addr`/`len` fall outside the frame.
    pub fn normalize(&mut self, addr: u32, canon: u32, len: u32) -> Option<u32> {
        if !self.in_umem(canon) || canon % FRAME_SIZE != HEADROOM {
            return None;
        }
        let frame_start = canon - HEADROOM;
        let end = addr.checked_add(len);
        if addr < frame_start
            || end.is_none_or(|end| end > frame_start + FRAME_SIZE)
            || len > FRAME_CAPACITY
        {
            return None;
        }
        if addr != canon {
            // SAFETY: both ranges lie within this frame (checked above) and
            // the frame is held by the worker; `copy` handles overlap.
            unsafe {
                let p = self.base.as_ptr();
                std::ptr::copy(p.add(addr as usize), p.add(canon as usize), len as usize);
            }
        }
        Some(len)
    }

    /// The packet data of a frame: `len` bytes, at most the frame's
    /// capacity; empty for an address that is not a frame's.
    #[inline]
    pub fn data(&self, addr: u32, len: u32) -> &[u8] {
        let (start, len) = self.span(addr, len);
        // SAFETY: `span` keeps the range within one frame of the region (or
        // empty). Frames held by the worker are not written by the kernel.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(start), len) }
    }

    /// The packet data of a frame, writable; `len` up to the frame's capacity.
    #[inline]
    pub fn data_mut(&mut self, addr: u32, len: u32) -> &mut [u8] {
        let (start, len) = self.span(addr, len);
        // SAFETY: as in `data`; `&mut self` excludes other access from this
        // thread, and the worker only writes frames it holds.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(start), len) }
    }

    /// Where `len` bytes of the frame at `addr` are (cut to its
    /// capacity); an empty range at the region's start if `addr` is not a
    /// frame's. Regular frames take the short way.
    #[inline(always)]
    fn span(&self, addr: u32, len: u32) -> (usize, usize) {
        if addr / FRAME_SIZE < self.count && addr % FRAME_SIZE == HEADROOM {
            return (addr as usize, len.min(FRAME_CAPACITY) as usize);
        }
        self.big_span(addr, len)
    }

    #[inline(never)]
    fn big_span(&self, addr: u32, len: u32) -> (usize, usize) {
        match self.big_capacity(addr) {
            Some(cap) => (addr as usize, len.min(cap) as usize),
            None => (0, 0),
        }
    }

    /// A frame's whole buffer (its capacity), writable: for rewriting a
    /// packet into a longer one (an ICMP error quoting it).
    #[inline]
    pub fn frame_mut(&mut self, addr: u32) -> &mut [u8] {
        self.data_mut(addr, u32::MAX)
    }

    /// The frame's packet data with `front` bytes of its headroom before it
    /// (for a TAP port's virtio-net header), writable; `len` counts the
    /// packet data only and is cut to the frame's capacity.
    #[inline]
    pub fn with_headroom_mut(&mut self, addr: u32, front: u32, len: u32) -> &mut [u8] {
        let Some(cap) = self.capacity(addr).filter(|_| front <= HEADROOM) else {
            return &mut [];
        };
        // SAFETY: the headroom's `front` bytes and the data up to the
        // capacity lie within the frame (checked above); as in `data_mut`.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.base.as_ptr().add((addr - front) as usize),
                (front + len.min(cap)) as usize,
            )
        }
    }

    /// Two distinct frames at once: `src` to read, `dst` to write (lengths
    /// cut to their capacities); `None` if either is not a frame or they
    /// are the same.
    #[inline]
    pub fn pair_mut(
        &mut self,
        src: u32,
        src_len: u32,
        dst: u32,
        dst_len: u32,
    ) -> Option<(&[u8], &mut [u8])> {
        let (scap, dcap) = (self.capacity(src)?, self.capacity(dst)?);
        if src == dst {
            return None;
        }
        let base = self.base.as_ptr();
        // SAFETY: both are canonical addresses of distinct frames of this
        // region, each range within its frame (so they do not overlap);
        // `&mut self` excludes other access for the borrows' lifetime.
        unsafe {
            Some((
                std::slice::from_raw_parts(base.add(src as usize), src_len.min(scap) as usize),
                std::slice::from_raw_parts_mut(base.add(dst as usize), dst_len.min(dcap) as usize),
            ))
        }
    }

    /// Copies `len` bytes of frame `src` and the `front` bytes of headroom
    /// before them into frame `dst` (held by the worker). Returns false,
    /// copying nothing, if they do not fit or are not frames.
    pub fn copy_into(&mut self, src: u32, dst: u32, front: u32, len: u32) -> bool {
        let (Some(scap), Some(dcap)) = (self.capacity(src), self.capacity(dst)) else {
            return false;
        };
        if src == dst || front > HEADROOM || len > scap.min(dcap) {
            return false;
        }
        let base = self.base.as_ptr();
        // SAFETY: distinct frames, both ranges within their frames (the
        // headroom and `len` bytes of data, checked above).
        unsafe {
            std::ptr::copy_nonoverlapping(
                base.add((src - front) as usize),
                base.add((dst - front) as usize),
                (front + len) as usize,
            )
        };
        true
    }

    /// Where the `front` bytes of headroom and `len` bytes of data of a
    /// frame are, for a port's read(2)/write(2) into it: the frame must be
    /// held by the worker while the pointer is used. `None` if `addr` is
    /// not a frame or they do not fit.
    pub fn raw_span(&mut self, addr: u32, front: u32, len: u32) -> Option<(*mut u8, usize)> {
        let cap = self.capacity(addr)?;
        if front > HEADROOM || len > cap {
            return None;
        }
        // SAFETY: the headroom's `front` bytes lie within the frame.
        let p = unsafe { self.base.as_ptr().add((addr - front) as usize) };
        Some((p, (front + len) as usize))
    }

    /// Copies a frame into a newly allocated one (a big one only when the
    /// data needs it).
    #[inline]
    pub fn copy_frame(&mut self, addr: u32, len: u32) -> Option<u32> {
        let Some(cap) = self.capacity(addr) else {
            self.errors += 1;
            return None;
        };
        let len = len.min(cap);
        let new = self.alloc_for(len)?;
        let base = self.base.as_ptr();
        // SAFETY: both are canonical frame addresses of this pool (one held,
        // one just allocated, so distinct) and `len` fits a frame.
        unsafe {
            std::ptr::copy_nonoverlapping(
                base.add(addr as usize),
                base.add(new as usize),
                len as usize,
            )
        };
        Some(new)
    }

    /// Allocates a frame and fills it with `bytes` (a big frame when they
    /// need one and one is free; truncated to the capacity).
    #[inline]
    pub fn write_frame(&mut self, bytes: &[u8]) -> Option<(u32, u32)> {
        if bytes.len() > FRAME_CAPACITY as usize {
            return self.write_big_frame(bytes);
        }
        let addr = self.alloc()?;
        self.data_mut(addr, bytes.len() as u32)
            .copy_from_slice(bytes);
        Some((addr, bytes.len() as u32))
    }

    #[inline(never)]
    fn write_big_frame(&mut self, bytes: &[u8]) -> Option<(u32, u32)> {
        let (addr, cap) = match self.alloc_big() {
            Some(a) => (a, BIG_CAPACITY),
            None => (self.alloc()?, FRAME_CAPACITY),
        };
        let len = bytes.len().min(cap as usize);
        self.data_mut(addr, len as u32)
            .copy_from_slice(&bytes[..len]);
        Some((addr, len as u32))
    }

    /// A read-only handle on the whole region for other workers (handoff).
    pub fn view(&self) -> PoolView {
        PoolView {
            base: self.base,
            len: self.layout.size(),
            umem_len: self.umem_len as usize,
        }
    }

    /// The regular frames only: what AF_XDP sockets register as UMEM.
    pub fn umem(&self) -> PoolView {
        PoolView {
            base: self.base,
            len: self.umem_len as usize,
            umem_len: self.umem_len as usize,
        }
    }
}

impl Drop for FramePool {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once. Ports that
        // registered the region as UMEM are dropped before the pool.
        unsafe { dealloc(self.base.as_ptr(), self.layout) };
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(p.counts().errors, 2);
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
        assert_eq!(p.counts().errors, 1, "double free of a big frame detected");
        assert_eq!(p.available(), 4);
        assert_eq!(p.umem().len(), 2 * FRAME_SIZE as usize);
        let w = p.with_headroom_mut(HEADROOM, 10, 5);
        assert_eq!(w.len(), 15);
        assert!(p.with_headroom_mut(HEADROOM, HEADROOM + 1, 5).is_empty());
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
}
