//! Reaching a frame's bytes. Every accessor takes only a frame the worker
//! holds ([`FramePool::holds`]): for any other address (a frame on the
//! free list, lent to a port's kernel ring or handed to another worker, or
//! no frame at all) it gives an empty buffer or `None` and counts an error
//! ([`PoolCounts::errors`](super::PoolCounts)), so no safe call reaches
//! memory the kernel or another worker may be using.

use super::{BIG_CAPACITY, FRAME_CAPACITY, FRAME_SIZE, FramePool, HEADROOM, WORKER};

impl FramePool {
    /// The `N` bytes in front of a regular frame's data (the end of its
    /// headroom), where an AF_XDP socket's TX metadata goes; `None` for an
    /// address that is not a regular frame's.
    #[inline]
    pub fn headroom_tail_mut<const N: usize>(&mut self, addr: u32) -> Option<&mut [u8; N]> {
        if !self.in_umem(addr) || N > HEADROOM as usize {
            return None;
        }
        self.capacity(addr)?;
        // SAFETY: the N bytes end where the frame's data starts and lie in
        // its headroom, within the region, of a frame the worker holds.
        Some(unsafe { &mut *self.base.as_ptr().add(addr as usize - N).cast::<[u8; N]>() })
    }

    /// Moves packet data that the kernel placed at `addr` (which may not be
    /// the canonical offset) so it starts at the canonical address `canon`.
    /// Returns the length kept, or `None` if `addr`/`len` fall outside the frame.
    pub fn normalize(&mut self, addr: u32, canon: u32, len: u32) -> Option<u32> {
        if !self.in_umem(canon) {
            return None;
        }
        self.capacity(canon)?;
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
    /// capacity; empty for an address that is not a frame the worker holds.
    #[inline]
    pub fn data(&self, addr: u32, len: u32) -> &[u8] {
        let (start, len) = self.span(addr, len);
        // SAFETY: `span` keeps the range within one frame of the region that
        // the worker holds (or empty): the kernel and other workers leave it
        // alone.
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
    /// frame the worker holds. Held regular frames take the short way.
    #[inline(always)]
    fn span(&self, addr: u32, len: u32) -> (usize, usize) {
        let idx = addr / FRAME_SIZE;
        if idx < self.count
            && addr % FRAME_SIZE == HEADROOM
            // SAFETY: `idx < count`, and `owner` has a slot for every
            // regular frame and more (`with_big`).
            && unsafe { *self.owner.get_unchecked(idx as usize) } == WORKER
        {
            return (addr as usize, len.min(FRAME_CAPACITY) as usize);
        }
        self.other_span(addr, len)
    }

    /// `span` of a big frame, or of an address that is no held frame.
    #[inline(never)]
    fn other_span(&self, addr: u32, len: u32) -> (usize, usize) {
        match self.capacity(addr) {
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
        let len = len.min(self.capacity(addr)?);
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
}
