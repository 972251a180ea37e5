//! A worker's packet buffers: fixed-size frames in one memory region.
//!
//! The region is page-aligned memory that every AF_XDP port of the worker
//! registers as its UMEM, so forwarding between two AF_XDP ports hands a
//! descriptor from one socket's RX ring to another's TX ring without copying.
//! TAP and in-memory ports read into and write from the same frames.
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

/// Bytes per frame.
pub const FRAME_SIZE: u32 = 2048;
/// Bytes in front of the packet data (the kernel's XDP_PACKET_HEADROOM).
pub const HEADROOM: u32 = 256;
/// Largest frame the pool can hold.
pub const FRAME_CAPACITY: u32 = FRAME_SIZE - HEADROOM;
/// Size of the fill and completion rings of each AF_XDP socket.
pub const XSK_RING_SIZE: u32 = 2048;

const FREE: u16 = u16::MAX;
const WORKER: u16 = u16::MAX - 1;
const HANDOFF: u16 = u16::MAX - 2;

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
    count: u32,
    free: Vec<u32>,
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
    /// A pool of `count` frames.
    pub fn new(count: u32) -> Self {
        let count = count.max(1);
        let layout = Layout::from_size_align(count as usize * FRAME_SIZE as usize, 4096)
            .expect("pool layout fits in memory");
        // SAFETY: the layout has non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        let base = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        // Free list in reverse so that the first allocations get low addresses.
        let free = (0..count)
            .rev()
            .map(|i| i * FRAME_SIZE + HEADROOM)
            .collect();
        FramePool {
            base,
            count,
            free,
            owner: vec![FREE; count as usize],
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

    /// Number of frames.
    pub fn total(&self) -> u32 {
        self.count
    }

    /// Frames in the free list.
    pub fn available(&self) -> u32 {
        self.free.len() as u32
    }

    /// Where the frames are.
    pub fn counts(&self) -> PoolCounts {
        let free = self.free.len() as u32;
        PoolCounts {
            total: self.count,
            free,
            lent: self.lent,
            handoff: self.handoff,
            worker: self.count - free - self.lent - self.handoff,
            errors: self.errors,
        }
    }

    #[inline]
    fn index(&self, addr: u32) -> Option<usize> {
        let idx = addr / FRAME_SIZE;
        (idx < self.count).then_some(idx as usize)
    }

    /// Takes a free frame for the worker.
    #[inline]
    pub fn alloc(&mut self) -> Option<u32> {
        let addr = self.free.pop()?;
        self.owner[(addr / FRAME_SIZE) as usize] = WORKER;
        Some(addr)
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
        self.free.push(idx as u32 * FRAME_SIZE + HEADROOM);
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
        Some(idx as u32 * FRAME_SIZE + HEADROOM)
    }

    /// Frees every frame lent to `port` (the port is gone and its rings with
    /// it). Returns how many were recovered.
    pub fn reclaim_port(&mut self, port: PortId) -> u32 {
        let mut n = 0;
        for idx in 0..self.count as usize {
            if self.owner[idx] == port {
                self.owner[idx] = FREE;
                self.lent -= 1;
                self.free.push(idx as u32 * FRAME_SIZE + HEADROOM);
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
        if self.index(canon).is_none() || canon % FRAME_SIZE != HEADROOM {
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

    /// The packet data of a frame.
    #[inline]
    pub fn data(&self, addr: u32, len: u32) -> &[u8] {
        let len = len.min(FRAME_CAPACITY) as usize;
        if self.index(addr).is_none() || addr % FRAME_SIZE != HEADROOM {
            return &[];
        }
        // SAFETY: `addr` is a canonical address of a frame inside the region
        // and `len` is at most the frame's capacity, so the range is in
        // bounds. Frames held by the worker are not written by the kernel.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(addr as usize), len) }
    }

    /// The packet data of a frame, writable; `len` up to [`FRAME_CAPACITY`].
    #[inline]
    pub fn data_mut(&mut self, addr: u32, len: u32) -> &mut [u8] {
        let len = len.min(FRAME_CAPACITY) as usize;
        if self.index(addr).is_none() || addr % FRAME_SIZE != HEADROOM {
            return &mut [];
        }
        // SAFETY: as in `data`; `&mut self` excludes other access from this
        // thread, and the worker only writes frames it holds.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(addr as usize), len) }
    }

    /// Copies a frame into a newly allocated one.
    #[inline]
    pub fn copy_frame(&mut self, addr: u32, len: u32) -> Option<u32> {
        let len = len.min(FRAME_CAPACITY);
        if self.index(addr).is_none() || addr % FRAME_SIZE != HEADROOM {
            self.errors += 1;
            return None;
        }
        let new = self.alloc()?;
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

    /// Allocates a frame and fills it with `bytes` (truncated to capacity).
    pub fn write_frame(&mut self, bytes: &[u8]) -> Option<(u32, u32)> {
        let addr = self.alloc()?;
        let len = bytes.len().min(FRAME_CAPACITY as usize);
        self.data_mut(addr, len as u32)
            .copy_from_slice(&bytes[..len]);
        Some((addr, len as u32))
    }

    /// A read-only handle on the region for other workers (handoff).
    pub fn view(&self) -> PoolView {
        PoolView {
            base: self.base,
            len: self.count as usize * FRAME_SIZE as usize,
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

/// Read access to another worker's frames, for frames it handed off.
#[derive(Clone, Copy)]
pub struct PoolView {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a view only reads frames whose ownership protocol (HANDOFF state)
// guarantees the owning worker does not write them meanwhile.
unsafe impl Send for PoolView {}
// SAFETY: as above.
unsafe impl Sync for PoolView {}

impl PoolView {
    /// Start of the region (for registering it as an AF_XDP UMEM).
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Length of the region in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty region (never, for a real pool).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes of a frame handed off by the view's owner.
    ///
    /// # Safety
    /// The frame must be in HANDOFF state in its pool (handed to the caller
    /// and not yet returned), and the pool must outlive the returned slice.
    #[inline]
    pub unsafe fn read(&self, addr: u32, len: u32) -> &[u8] {
        let start = addr as usize;
        let len = (len.min(FRAME_CAPACITY)) as usize;
        if start % FRAME_SIZE as usize != HEADROOM as usize || start + len > self.len {
            return &[];
        }
        // SAFETY: in bounds (checked); the caller guarantees nobody writes it.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(start), len) }
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
