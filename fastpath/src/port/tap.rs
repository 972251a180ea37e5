//! TAP ports: a TAP device created by the switch.
//!
//! The device can be created directly inside a pod's network namespace under
//! the pod's interface name, so a pod needs no veth. Receiving and
//! transmitting are one read(2)/write(2) per frame, straight into and out of
//! the worker's pool frames: the kernel's copy is the only one.
//!
//! With offloads (the default), every frame is preceded by a
//! `virtio_net_hdr` and the device may hand over GSO frames of up to 64 KiB
//! with partial checksums ([`crate::gso`]): the header goes in the frame's
//! headroom, and a frame longer than a regular frame spills into a big one
//! (one readv(2) into both), so nothing is copied for the common sizes.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::{Port, PortGone, PortMode, RxFrame};
use crate::gso::{VNET_HDR_LEN, VnetHdr};
use crate::pool::{BIG_CAPACITY, FRAME_CAPACITY, FramePool};
use crate::sys;
use crate::tx::TxFrame;

const HDR: u32 = VNET_HDR_LEN as u32;

/// A TAP device owned by the switch; deleted when the port is dropped.
pub struct TapPort {
    fd: OwnedFd,
    /// This port created the device (rather than re-attaching to one).
    created: bool,
    /// The last write failed with EIO: the device is administratively down.
    link_down: bool,
    /// Frames carry a virtio-net header (offloads on).
    vnet: bool,
}

impl TapPort {
    /// Creates TAP device `ifname`, inside network namespace `netns` when
    /// given, sets its MAC (if given) and brings it up; with `offload`, the
    /// device passes checksum and segmentation offloads (see the module
    /// documentation).
    ///
    /// The device is made persistent, so that it outlives a restart of the
    /// daemon with its addresses and routes (the pod's network keeps its
    /// configuration, only the carrier drops meanwhile); a TAP of that name
    /// left by an earlier run is attached again. [`Port::on_remove`] clears
    /// the flag, so `port del` deletes the device.
    pub fn create(
        ifname: &str,
        netns: Option<&str>,
        mac: Option<[u8; 6]>,
        offload: bool,
    ) -> io::Result<Self> {
        if !sys::valid_ifname(ifname) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid interface name '{ifname}'"),
            ));
        }
        let name = ifname.to_string();
        let make = move || -> io::Result<TapPort> {
            let existed = sys::if_index(&name).is_some();
            let fd = sys::tap_open(&name, offload).map_err(|e| {
                if existed {
                    io::Error::new(
                        e.kind(),
                        format!("interface '{name}' exists and is not a free TAP device: {e}"),
                    )
                } else {
                    io::Error::new(e.kind(), format!("cannot create TAP '{name}': {e}"))
                }
            })?;
            if existed {
                tracing::info!(ifname = %name, "attached to an existing TAP device");
            }
            let port = TapPort {
                fd,
                created: !existed,
                link_down: false,
                vnet: offload,
            };
            // From here on, an error drops `port` before the persistent
            // flag is set, which deletes a device we created. Offloads are
            // set either way: a persistent TAP attached again keeps those
            // an earlier run gave it.
            let uso = sys::tap_set_offload(port.fd.as_raw_fd(), offload).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot set offloads on TAP '{name}': {e}"),
                )
            })?;
            tracing::debug!(ifname = %name, offload, uso, "TAP offloads set");
            sys::configure_link(&name, mac)?;
            // Only once the device is fully set up.
            sys::set_tap_persist(port.fd.as_raw_fd(), true)?;
            Ok(port)
        };
        match netns {
            Some(ns) => sys::in_netns(ns, make),
            None => make(),
        }
    }

    /// Reads one frame without a header into `addr`.
    fn read_plain(&mut self, pool: &mut FramePool, addr: u32) -> io::Result<RxFrame> {
        let (ptr, len) = pool
            .raw_span(addr, 0, FRAME_CAPACITY)
            .ok_or_else(|| io::Error::other("not a pool frame"))?;
        // SAFETY: `ptr` points at `len` writable bytes of a frame the
        // worker holds (nothing else reads or writes it meanwhile).
        let r = unsafe { libc::read(self.fd.as_raw_fd(), ptr.cast(), len) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // A longer frame than the buffer was cut by the kernel, which still
        // reports its whole length: the parse stage drops it as `malformed`.
        Ok(RxFrame::new(addr, r as u32))
    }

    /// Reads one frame and its virtio-net header: the header into the
    /// headroom of `addr`, the frame into `addr` and, beyond a regular
    /// frame's capacity, into a big frame, which then gets the start too.
    /// Without a free big frame nothing is read (`WouldBlock`): the frame
    /// waits in the device's queue rather than being cut short.
    fn read_vnet(&mut self, pool: &mut FramePool, addr: u32) -> io::Result<RxFrame> {
        let Some(big) = pool.alloc_big() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let spans =
            pool.raw_span(addr, HDR, FRAME_CAPACITY)
                .zip(pool.raw_span(big, 0, BIG_CAPACITY));
        let Some(((p0, l0), (p1, l1))) = spans else {
            pool.free(big);
            return Err(io::Error::other("not a pool frame"));
        };
        let skip = FRAME_CAPACITY as usize;
        let iov = [
            libc::iovec {
                iov_base: p0.cast(),
                iov_len: l0,
            },
            libc::iovec {
                // SAFETY: `skip` < `l1`: the pointer stays inside the big frame.
                iov_base: unsafe { p1.add(skip) }.cast(),
                iov_len: l1 - skip,
            },
        ];
        // SAFETY: both iovecs describe writable bytes of frames the worker
        // holds; the array outlives the call.
        let r = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
        if r < 0 {
            let e = io::Error::last_os_error();
            pool.free(big);
            return Err(e);
        }
        let len = (r as u32).saturating_sub(HDR);
        let frame = if len > FRAME_CAPACITY && pool.copy_into(addr, big, HDR, FRAME_CAPACITY) {
            pool.free(addr);
            big
        } else {
            // Fits a regular frame (else, never: the copy failed, and the
            // frame, cut short, is dropped by the parse stage).
            pool.free(big);
            addr
        };
        let hdr = VnetHdr::read(pool.with_headroom_mut(frame, HDR, 0)).unwrap_or_default();
        let gso = hdr.accept(pool.data_mut(frame, len));
        Ok(RxFrame {
            addr: frame,
            len,
            gso,
        })
    }
}

fn gone(e: io::Error) -> PortGone {
    PortGone(format!("TAP device failed: {e}"))
}

impl Port for TapPort {
    fn rx_burst(&mut self, pool: &mut FramePool, out: &mut [RxFrame]) -> Result<usize, PortGone> {
        let mut n = 0;
        while n < out.len() {
            let Some(addr) = pool.alloc() else { break };
            let got = if self.vnet {
                self.read_vnet(pool, addr)
            } else {
                self.read_plain(pool, addr)
            };
            match got {
                Ok(frame) => {
                    out[n] = frame;
                    n += 1;
                }
                Err(e) => {
                    pool.free(addr);
                    match e.kind() {
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => break,
                        _ => return Err(gone(e)),
                    }
                }
            }
        }
        Ok(n)
    }

    fn tx_burst(&mut self, pool: &mut FramePool, frames: &[TxFrame]) -> Result<usize, PortGone> {
        for (i, f) in frames.iter().enumerate() {
            let front = if self.vnet {
                // A header the frame's own headers cannot give (they were
                // checked when it arrived) degrades to "nothing to do".
                let hdr = VnetHdr::for_frame(pool.data(f.addr, f.len), f.gso).unwrap_or_default();
                hdr.write(pool.with_headroom_mut(f.addr, HDR, 0));
                HDR
            } else {
                0
            };
            let buf = pool.with_headroom_mut(f.addr, front, f.len);
            // SAFETY: `buf` is readable for its length during the call.
            let r = unsafe { libc::write(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
            if r >= 0 {
                pool.free(f.addr);
                self.link_down = false;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // Queue full, or the device is administratively down:
                // the rest of the burst is dropped by the caller.
                Some(libc::EAGAIN | libc::ENOBUFS | libc::EINTR) => return Ok(i),
                Some(libc::EIO) => {
                    self.link_down = true;
                    return Ok(i);
                }
                _ => return Err(gone(e)),
            }
        }
        Ok(frames.len())
    }

    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn abandon(&mut self) {
        if self.created {
            self.on_remove();
        }
    }

    fn link_down(&self) -> bool {
        self.link_down
    }

    fn on_remove(&mut self) {
        // Without the flag the kernel deletes the device when we close it.
        if let Err(e) = sys::set_tap_persist(self.fd.as_raw_fd(), false) {
            tracing::warn!("cannot make TAP non-persistent, it stays after removal: {e}");
        }
    }

    fn mode(&self) -> PortMode {
        PortMode {
            mode: "tap",
            zero_copy: false,
        }
    }

    fn takes_gso(&self) -> bool {
        self.vnet
    }
}
