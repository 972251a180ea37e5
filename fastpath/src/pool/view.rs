//! Another worker's frames, read-only: what a worker copies frames handed
//! to it from, and what AF_XDP sockets register as UMEM.

use std::ptr::NonNull;

use super::{BIG_CAPACITY, BIG_FRAME_SIZE, FRAME_CAPACITY, FRAME_SIZE, HEADROOM};

/// Read access to another worker's frames, for frames it handed off.
#[derive(Clone, Copy)]
pub struct PoolView {
    pub(super) base: NonNull<u8>,
    pub(super) len: usize,
    /// Where big frames start.
    pub(super) umem_len: usize,
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
        let (size, cap) = if start < self.umem_len {
            (FRAME_SIZE as usize, FRAME_CAPACITY)
        } else {
            (BIG_FRAME_SIZE as usize, BIG_CAPACITY)
        };
        let len = len.min(cap) as usize;
        let offset = if start < self.umem_len {
            start
        } else {
            start - self.umem_len
        };
        if offset % size != HEADROOM as usize || start + len > self.len {
            return &[];
        }
        // SAFETY: in bounds (checked); the caller guarantees nobody writes it.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(start), len) }
    }
}
