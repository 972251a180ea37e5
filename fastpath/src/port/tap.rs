//! TAP ports: a TAP device created by the switch.
//!
//! The device can be created directly inside a pod's network namespace under
//! the pod's interface name, so a pod needs no veth. Receiving and
//! transmitting are one read(2)/write(2) per frame, straight into and out of
//! the worker's pool frames: the kernel's copy is the only one.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use tun_tap::{Iface, Mode};

use super::{Port, PortGone, PortMode};
use crate::pool::{FRAME_CAPACITY, FramePool};
use crate::sys;
use crate::tx::TxFrame;

/// A TAP device owned by the switch; deleted when the port is dropped.
pub struct TapPort {
    iface: Iface,
    /// This port created the device (rather than re-attaching to one).
    created: bool,
    /// The last write failed with EIO: the device is administratively down.
    link_down: bool,
}

impl TapPort {
    /// Creates TAP device `ifname`, inside network namespace `netns` when
    /// given, sets its MAC (if given) and brings it up.
    ///
    /// The device is made persistent, so that it outlives a restart of the
    /// daemon with its addresses and routes (the pod's network keeps its
    /// configuration, only the carrier drops meanwhile); a TAP of that name
    /// left by an earlier run is attached again. [`Port::on_remove`] clears
    /// the flag, so `port del` deletes the device.
    pub fn create(ifname: &str, netns: Option<&str>, mac: Option<[u8; 6]>) -> io::Result<Self> {
        if !sys::valid_ifname(ifname) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid interface name '{ifname}'"),
            ));
        }
        let name = ifname.to_string();
        let make = move || -> io::Result<(Iface, bool)> {
            let existed = sys::if_index(&name).is_some();
            let iface = Iface::without_packet_info(&name, Mode::Tap).map_err(|e| {
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
            sys::configure_link(&name, mac)?;
            // Only once the device is fully set up: on an error above, a
            // device we created disappears with `iface`.
            sys::set_tap_persist(iface.as_raw_fd(), true)?;
            Ok((iface, !existed))
        };
        let (iface, created) = match netns {
            Some(ns) => sys::in_netns(ns, make)?,
            None => make()?,
        };
        let mut port = TapPort {
            iface,
            created,
            link_down: false,
        };
        if let Err(e) = port.iface.set_non_blocking() {
            port.abandon();
            return Err(e);
        }
        Ok(port)
    }
}

fn gone(e: io::Error) -> PortGone {
    PortGone(format!("TAP device failed: {e}"))
}

impl Port for TapPort {
    fn rx_burst(
        &mut self,
        pool: &mut FramePool,
        out: &mut [(u32, u32)],
    ) -> Result<usize, PortGone> {
        let mut n = 0;
        while n < out.len() {
            let Some(addr) = pool.alloc() else { break };
            match self.iface.recv(pool.data_mut(addr, FRAME_CAPACITY)) {
                Ok(len) => {
                    out[n] = (addr, len as u32);
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
            match self.iface.send(pool.data(f.addr, f.len)) {
                Ok(_) => {
                    pool.free(f.addr);
                    self.link_down = false;
                }
                Err(e) => match e.raw_os_error() {
                    // Queue full, or the device is administratively down:
                    // the rest of the burst is dropped by the caller.
                    Some(libc::EAGAIN | libc::ENOBUFS | libc::EINTR) => return Ok(i),
                    Some(libc::EIO) => {
                        self.link_down = true;
                        return Ok(i);
                    }
                    _ => return Err(gone(e)),
                },
            }
        }
        Ok(frames.len())
    }

    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.iface.as_raw_fd())
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
        if let Err(e) = sys::set_tap_persist(self.iface.as_raw_fd(), false) {
            tracing::warn!("cannot make TAP non-persistent, it stays after removal: {e}");
        }
    }

    fn mode(&self) -> PortMode {
        PortMode {
            mode: "tap",
            zero_copy: false,
        }
    }
}
