//! Sockets the kernel stack serves: AF_PACKET (generator and sink where
//! AF_XDP cannot go) and a bound UDP socket (a sink that lets its pod's
//! stack receive), both moved in batches with sendmmsg/recvmmsg.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use fastpath::sys;

use crate::nic::{BURST, Rx, Tx};

/// Sleeps until `fd` is readable or `timeout_ms` pass.
pub fn poll_in(fd: RawFd, timeout_ms: i32) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut p, 1, timeout_ms) };
}

/// A socket read and written with recvmmsg/sendmmsg over fixed buffers.
pub struct Mmsg {
    fd: OwnedFd,
    bufs: Vec<Vec<u8>>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    payloads: bool,
    label: &'static str,
    drops: u64,
}

// SAFETY: the raw pointers in `iovs`/`msgs` point into `bufs`/`iovs`, which
// this value owns and which move with it (heap storage does not move).
unsafe impl Send for Mmsg {}

impl Mmsg {
    fn new(fd: OwnedFd, buf_len: usize, payloads: bool, label: &'static str) -> Mmsg {
        let mut bufs: Vec<Vec<u8>> = (0..BURST).map(|_| vec![0u8; buf_len]).collect();
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let msgs = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: mmsghdr is plain data; all-zero is valid.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        Mmsg {
            fd,
            bufs,
            iovs,
            msgs,
            payloads,
            label,
            drops: 0,
        }
    }

    fn send(
        &mut self,
        n: usize,
        fill: &mut dyn FnMut(usize, &mut [u8]) -> usize,
    ) -> io::Result<usize> {
        let n = n.min(BURST);
        for i in 0..n {
            let len = fill(i, &mut self.bufs[i]);
            self.iovs[i].iov_len = len;
        }
        // SAFETY: the first `n` headers point at iovecs over owned buffers.
        let rc =
            unsafe { libc::sendmmsg(self.fd.as_raw_fd(), self.msgs.as_mut_ptr(), n as u32, 0) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN | libc::ENOBUFS | libc::EINTR) => Ok(0),
                _ => Err(e),
            };
        }
        Ok(rc as usize)
    }

    fn recv(&mut self, f: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        for (iov, b) in self.iovs.iter_mut().zip(&self.bufs) {
            iov.iov_len = b.len();
        }
        // SAFETY: every header points at an iovec over an owned buffer.
        let rc = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                BURST as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => Ok(0),
                _ => Err(e),
            };
        }
        let n = rc as usize;
        for i in 0..n {
            let len = (self.msgs[i].msg_len as usize).min(self.bufs[i].len());
            f(&self.bufs[i][..len]);
        }
        Ok(n)
    }
}

impl Tx for Mmsg {
    fn send(
        &mut self,
        n: usize,
        fill: &mut dyn FnMut(usize, &mut [u8]) -> usize,
    ) -> io::Result<usize> {
        Mmsg::send(self, n, fill)
    }
    fn service(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn describe(&self) -> String {
        self.label.into()
    }
}

impl Rx for Mmsg {
    fn recv(&mut self, f: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        Mmsg::recv(self, f)
    }
    fn wait(&mut self, timeout_ms: i32) {
        poll_in(self.fd.as_raw_fd(), timeout_ms);
    }
    fn send_raw(&mut self, frame: &[u8]) -> io::Result<()> {
        if self.payloads {
            return Ok(());
        }
        // SAFETY: `frame` is valid for reads of its length.
        let rc = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    fn payloads(&self) -> bool {
        self.payloads
    }
    fn describe(&self) -> String {
        self.label.into()
    }
    fn kernel_drops(&mut self) -> Option<u64> {
        if self.payloads {
            return None;
        }
        let mut st = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
        // SAFETY: `st` and `len` are valid for writes of the sizes given.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        // The kernel resets these counters on every read.
        (rc == 0).then(|| {
            self.drops += u64::from(st.tp_drops);
            self.drops
        })
    }
}

fn check(rc: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(rc)
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `v` is a valid int for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    check(rc, "setsockopt").map(|_| ())
}

/// An AF_PACKET socket bound to `ifname`; `rx` receives every protocol.
pub fn packet_socket(ifname: &str, rx: bool, buf_len: usize) -> anyhow::Result<Mmsg> {
    let index = sys::if_index(ifname).ok_or_else(|| anyhow::anyhow!("no interface '{ifname}'"))?;
    let proto = if rx {
        (libc::ETH_P_ALL as u16).to_be()
    } else {
        0
    };
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = check(
        unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        },
        "AF_PACKET socket",
    )?;
    // SAFETY: `fd` is a fresh descriptor that we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = index as i32;
    // SAFETY: `sll` is a valid sockaddr_ll of the size given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    check(rc, &format!("bind AF_PACKET to '{ifname}'"))?;
    if rx {
        // Frames the sink's own interface sends (its ARP) are not input.
        const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
        let _ = setsockopt_int(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
        let _ = setsockopt_int(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            32 << 20,
        );
    } else {
        const PACKET_QDISC_BYPASS: libc::c_int = 20;
        let _ = setsockopt_int(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_QDISC_BYPASS, 1);
    }
    Ok(Mmsg::new(fd, buf_len, false, "af_packet"))
}

/// A UDP socket bound to `port` on every address, and a `packet`-less sink.
pub fn udp_socket(port: u16, buf_len: usize) -> anyhow::Result<Mmsg> {
    let sock = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
        .map_err(|e| anyhow::anyhow!("cannot bind UDP port {port}: {e}"))?;
    let fd = OwnedFd::from(sock);
    let _ = setsockopt_int(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        32 << 20,
    );
    Ok(Mmsg::new(fd, buf_len, true, "udp socket"))
}
