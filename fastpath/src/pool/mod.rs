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
//! All `unsafe` about raw frame memory is in this module: the region here,
//! the accessors of a frame's bytes (only of frames the worker holds) in
//! `access.rs`, other workers' read-only view in `view.rs`.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::cell::Cell;
use std::ptr::NonNull;

use crate::PortId;

mod access;
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
    /// Double frees, descriptors handed back that were not lent out, and
    /// frames the worker does not hold that it was about to read, write or
    /// send (each refused: an empty buffer, the frame skipped).
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
    /// A `Cell` so that a read-only access refused can count too.
    errors: Cell<u64>,
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
            errors: Cell::new(0),
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
            errors: self.errors.get(),
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
    fn frame_capacity(&self, addr: u32) -> Option<u32> {
        if addr / FRAME_SIZE < self.count && addr % FRAME_SIZE == HEADROOM {
            return Some(FRAME_CAPACITY);
        }
        self.big_capacity(addr)
    }

    /// [`FramePool::frame_capacity`] of a frame the worker holds; `None`,
    /// counted as an error, for any other address: not a frame's, or a
    /// frame another owner has (the free list, a port's kernel ring, the
    /// worker it was handed to). Every accessor of frame memory goes
    /// through this or `span`, so none reaches memory the kernel or another
    /// worker may be using.
    #[inline]
    fn capacity(&self, addr: u32) -> Option<u32> {
        match self.frame_capacity(addr) {
            Some(cap) if self.owner[(addr / FRAME_SIZE) as usize] == WORKER => Some(cap),
            _ => {
                self.error();
                None
            }
        }
    }

    /// Whether the worker holds the frame at `addr` (a frame's canonical
    /// address, taken from the free list or handed back by a port, and not
    /// since freed, lent or handed off).
    #[inline]
    pub fn holds(&self, addr: u32) -> bool {
        self.frame_capacity(addr).is_some() && self.owner[(addr / FRAME_SIZE) as usize] == WORKER
    }

    /// Counts an error (see [`PoolCounts::errors`]).
    #[inline(never)]
    pub fn error(&self) {
        self.errors.set(self.errors.get() + 1);
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
        self.free_from(addr, WORKER);
    }

    /// Returns a frame another worker has finished with (handed off, now
    /// handed back) to the free list.
    #[inline]
    pub fn free_returned(&mut self, addr: u32) {
        self.free_from(addr, HANDOFF);
    }

    /// Frees a frame whose owner is `state`; any other (already free, lent
    /// to a port, in transit when the worker was to hold it) is counted and
    /// left alone: freeing it would let two users write the same memory.
    #[inline]
    fn free_from(&mut self, addr: u32, state: u16) {
        match self.index(addr) {
            Some(idx) if self.owner[idx] == state => {
                if state == HANDOFF {
                    self.handoff -= 1;
                }
                self.owner[idx] = FREE;
                self.release(idx);
            }
            _ => self.error(),
        }
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
            _ => self.error(),
        }
    }

    /// Takes back a frame that `port` returned (RX or completion). Returns
    /// the frame's canonical address, or `None` (counted as an error) if the
    /// frame was not lent to that port.
    #[inline]
    pub fn reclaim(&mut self, addr: u32, port: PortId) -> Option<u32> {
        let Some(idx) = self.index(addr) else {
            self.error();
            return None;
        };
        if self.owner[idx] != port {
            self.error();
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
            _ => self.error(),
        }
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
mod tests;
