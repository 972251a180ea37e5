//! One AF_XDP socket and its UMEM registration, made with the kernel's
//! socket options rather than libxdp's `xsk_umem__create` and
//! `xsk_socket__create`: libxdp registers a UMEM without TX metadata room
//! and has no option for it, and the switch needs that room to ask the
//! kernel for checksums ([`TX_METADATA_LEN`]).
//!
//! The rings are described in libxdp's ring structures, so the port keeps
//! using libxdp's ring helpers (`xsk_ring_prod__reserve` and friends),
//! which keep no pointer to them. The XDP program that redirects frames to
//! the socket is [`super::program`]'s (or the uplink's).
//!
//! Order of creation, as libxdp's: socket, UMEM registration (TX metadata
//! asked for with `XDP_UMEM_TX_METADATA_LEN`, kernel ≥ 6.11; an older
//! kernel refuses the flag and the UMEM is registered without), ring sizes,
//! ring offsets, the four mappings, bind. Drop unmaps the rings and closes
//! the socket; a failed step leaves nothing behind (the same drop).

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

use libxdp_sys::{xdp_desc, xsk_ring_cons, xsk_ring_prod};

use crate::pool::{FRAME_SIZE, PoolView, XSK_RING_SIZE};

/// Bytes of TX metadata in front of every frame's data (the pool's
/// headroom holds them): the kernel's `struct xsk_tx_metadata` as of Linux
/// 6.15 (flags; csum_start, csum_offset, launch_time), a multiple of 8.
/// The switch writes only the flags and the checksum request, which an
/// older kernel's smaller struct has at the same offsets.
pub const TX_METADATA_LEN: u32 = 24;

/// An AF_XDP socket bound to one queue, with its UMEM and four rings.
pub(super) struct Socket {
    fd: OwnedFd,
    pub(super) fq: xsk_ring_prod,
    pub(super) cq: xsk_ring_cons,
    pub(super) rx: xsk_ring_cons,
    pub(super) tx: xsk_ring_prod,
    /// The UMEM has [`TX_METADATA_LEN`] bytes of TX metadata per frame.
    pub(super) tx_metadata: bool,
    /// The ring mappings, unmapped on drop.
    maps: Vec<(*mut c_void, usize)>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        for &(addr, len) in &self.maps {
            // SAFETY: each pair is a mapping this socket made and unmaps
            // once; nothing uses the rings after the socket is dropped.
            unsafe { libc::munmap(addr, len) };
        }
        // `fd` closes itself.
    }
}

fn last_err(what: &str) -> (i32, String) {
    let e = io::Error::last_os_error();
    (
        e.raw_os_error().unwrap_or(libc::EIO),
        format!("{what}: {e}"),
    )
}

fn set<T>(fd: RawFd, opt: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live `T`, passed with its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            opt,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Socket {
    /// A socket on queue `queue` of interface `ifindex` whose UMEM is
    /// `region`, bound with `bind_flags` (`XDP_COPY`, `XDP_ZEROCOPY` or 0)
    /// and need_wakeup. The error carries the errno (EBUSY: the queue is
    /// taken) and a message.
    pub(super) fn create(
        ifindex: u32,
        queue: u16,
        region: &PoolView,
        bind_flags: u16,
    ) -> Result<Self, (i32, String)> {
        // SAFETY: plain socket creation; the fd is owned below.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(last_err("AF_XDP socket"));
        }
        // SAFETY: `raw` is a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the ring structs are integers and raw pointers, for which
        // all-zero is a valid (empty, unmapped) value.
        let (fq, cq, rx, tx) = unsafe {
            (
                std::mem::zeroed(),
                std::mem::zeroed(),
                std::mem::zeroed(),
                std::mem::zeroed(),
            )
        };
        let mut s = Socket {
            fd,
            fq,
            cq,
            rx,
            tx,
            tx_metadata: false,
            maps: Vec::with_capacity(4),
        };
        let fd = s.fd.as_raw_fd();
        s.tx_metadata = register(fd, region)?;
        let n = XSK_RING_SIZE;
        for (opt, name) in [
            (libc::XDP_UMEM_FILL_RING, "fill ring"),
            (libc::XDP_UMEM_COMPLETION_RING, "completion ring"),
            (libc::XDP_RX_RING, "RX ring"),
            (libc::XDP_TX_RING, "TX ring"),
        ] {
            set(fd, opt, &n).map_err(|e| {
                (
                    e.raw_os_error().unwrap_or(libc::EIO),
                    format!("{name}: {e}"),
                )
            })?;
        }
        // SAFETY: plain data, for which all-zero is valid; the kernel fills it.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: `off` and `len` are valid for writes of the sizes given.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut off as *mut libc::xdp_mmap_offsets).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(last_err("ring offsets"));
        }
        if len as usize != size_of::<libc::xdp_mmap_offsets>() {
            return Err((libc::EINVAL, "ring offsets: a kernel before 5.4".into()));
        }
        let desc = size_of::<xdp_desc>();
        let addr = size_of::<u64>();
        let fill = s.map(&off.fr, n, addr, libc::XDP_UMEM_PGOFF_FILL_RING as i64)?;
        s.fq = prod_ring(fill, &off.fr, n);
        let comp = s.map(
            &off.cr,
            n,
            addr,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING as i64,
        )?;
        s.cq = cons_ring(comp, &off.cr, n);
        let rx = s.map(&off.rx, n, desc, libc::XDP_PGOFF_RX_RING)?;
        s.rx = cons_ring(rx, &off.rx, n);
        let tx = s.map(&off.tx, n, desc, libc::XDP_PGOFF_TX_RING)?;
        s.tx = prod_ring(tx, &off.tx, n);
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: bind_flags | libc::XDP_USE_NEED_WAKEUP,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: u32::from(queue),
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `sa` is a valid sockaddr_xdp of the size given.
        let rc = unsafe {
            libc::bind(
                fd,
                (&sa as *const libc::sockaddr_xdp).cast(),
                size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err((e.raw_os_error().unwrap_or(libc::EIO), e.to_string()));
        }
        Ok(s)
    }

    pub(super) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Maps one ring of `n` entries of `entry` bytes at page offset `pgoff`.
    fn map(
        &mut self,
        off: &libc::xdp_ring_offset,
        n: u32,
        entry: usize,
        pgoff: i64,
    ) -> Result<*mut u8, (i32, String)> {
        let len = off.desc as usize + n as usize * entry;
        // SAFETY: maps the kernel's ring of this socket; the mapping is
        // recorded and unmapped once, on drop.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                self.fd.as_raw_fd(),
                pgoff,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(last_err("ring mapping"));
        }
        self.maps.push((p, len));
        Ok(p.cast())
    }
}

/// Registers `region` as the socket's UMEM: with TX metadata room if the
/// kernel takes the flag (returns true), else without.
fn register(fd: RawFd, region: &PoolView) -> Result<bool, (i32, String)> {
    let mut reg = libc::xdp_umem_reg {
        addr: region.as_ptr() as u64,
        len: region.len() as u64,
        chunk_size: FRAME_SIZE,
        headroom: 0,
        flags: libc::XDP_UMEM_TX_METADATA_LEN,
        tx_metadata_len: TX_METADATA_LEN,
    };
    // The region is page-aligned memory owned by the worker's pool, which
    // outlives every port of that worker (the worker drops its ports first).
    match set(fd, libc::XDP_UMEM_REG, &reg) {
        Ok(()) => return Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            return Err((errno, format!("UMEM registration failed: {e}")));
        }
    }
    // A kernel before 6.11 refuses the flag: no TX metadata.
    reg.flags = 0;
    reg.tx_metadata_len = 0;
    set(fd, libc::XDP_UMEM_REG, &reg).map_err(|e| {
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        (errno, format!("UMEM registration failed: {e}"))
    })?;
    Ok(false)
}

/// The pointers of a ring mapped at `map`: producer, consumer, entries,
/// flags (the offsets are the kernel's, within the mapping just made).
fn ring_parts(
    map: *mut u8,
    off: &libc::xdp_ring_offset,
) -> (*mut u32, *mut u32, *mut u8, *mut u32) {
    // SAFETY: the offsets are the kernel's, within the mapping just made.
    unsafe {
        (
            map.add(off.producer as usize).cast(),
            map.add(off.consumer as usize).cast(),
            map.add(off.desc as usize),
            map.add(off.flags as usize).cast(),
        )
    }
}

/// libxdp's producer ring over the mapping at `map` (as `xsk_create_umem_rings`
/// and `xsk_socket__create` set them up: the consumer cached a ring ahead).
fn prod_ring(map: *mut u8, off: &libc::xdp_ring_offset, n: u32) -> xsk_ring_prod {
    let (producer, consumer, ring, flags) = ring_parts(map, off);
    // SAFETY: the index words lie within the mapping just made.
    let (prod, cons) = unsafe { (producer.read_volatile(), consumer.read_volatile()) };
    xsk_ring_prod {
        cached_prod: prod,
        cached_cons: cons.wrapping_add(n),
        mask: n - 1,
        size: n,
        producer,
        consumer,
        ring: ring.cast(),
        flags,
    }
}

/// libxdp's consumer ring over the mapping at `map`.
fn cons_ring(map: *mut u8, off: &libc::xdp_ring_offset, n: u32) -> xsk_ring_cons {
    let (producer, consumer, ring, flags) = ring_parts(map, off);
    // SAFETY: the index words lie within the mapping just made.
    let (prod, cons) = unsafe { (producer.read_volatile(), consumer.read_volatile()) };
    xsk_ring_cons {
        cached_prod: prod,
        cached_cons: cons,
        mask: n - 1,
        size: n,
        producer,
        consumer,
        ring: ring.cast(),
        flags,
    }
}
