//! Where generator and sink meet an interface: AF_XDP (fastpath's own
//! port, so the generator exercises the same code the switch runs),
//! AF_PACKET, or a bound UDP socket; and the interface facts they need
//! (namespace, index, MAC, MTU, address, the next hop's MAC).
//!
//! Everything here runs on the calling thread, in the network namespace
//! that thread entered with [`enter_netns`].

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use fastpath::pool::{FRAME_CAPACITY, FramePool};
use fastpath::port::Port;
use fastpath::port::afxdp::{AfXdpPort, AttachMode};
use fastpath::stage::output::TxFrame;
use fastpath::sys;

/// How generator or sink reach the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DriverKind {
    /// AF_XDP when the frames fit its buffers and the interface takes it,
    /// else AF_PACKET.
    Auto,
    Afxdp,
    Packet,
    /// A UDP socket bound to the destination port (sink only): the pod's
    /// own stack receives, and no ICMP port unreachable goes back.
    Udp,
}

/// Frames per send or receive call.
pub const BURST: usize = 64;
/// Frames in an AF_XDP generator's or sink's pool.
const POOL_FRAMES: u32 = 8192;

pub use fastpath::sys::enter_netns;

/// What a generator or sink knows about its interface.
#[derive(Debug, Clone)]
pub struct Iface {
    pub mac: [u8; 6],
    pub mtu: u32,
    pub ipv4: Option<Ipv4Addr>,
}

impl Iface {
    /// Looks `name` up in the calling thread's namespace; `where_` names
    /// that namespace in errors.
    pub fn lookup(name: &str, where_: &str) -> anyhow::Result<Iface> {
        if !sys::valid_ifname(name) {
            anyhow::bail!("invalid interface name '{name}'");
        }
        if sys::if_index(name).is_none() {
            anyhow::bail!("no interface '{name}' in {where_}");
        }
        let mac = sys::hw_addr(name)?;
        let mtu = sys::mtu(name)?;
        let ipv4 = sys::if_addrs()?
            .into_iter()
            .filter(|a| a.ifname == name)
            .find_map(|a| match a.addr {
                std::net::IpAddr::V4(v4) => Some(v4),
                std::net::IpAddr::V6(_) => None,
            });
        Ok(Iface { mac, mtu, ipv4 })
    }
}

/// Frames leaving a generator.
pub trait Tx: Send {
    /// Sends up to `n` frames, frame `i` written by `fill(i, buf)`, which
    /// returns its length. Returns how many were accepted: the first ones;
    /// frames after them were not sent (their contents may be reused).
    fn send(
        &mut self,
        n: usize,
        fill: &mut dyn FnMut(usize, &mut [u8]) -> usize,
    ) -> io::Result<usize>;
    /// Completes transmissions and drops whatever arrives on the interface.
    fn service(&mut self) -> io::Result<()>;
    /// How it runs: `afxdp native copy`, `af_packet`.
    fn describe(&self) -> String;
}

/// Frames (or UDP payloads) reaching a sink.
pub trait Rx: Send {
    /// Hands every waiting frame to `f`; returns how many.
    fn recv(&mut self, f: &mut dyn FnMut(&[u8])) -> io::Result<usize>;
    /// Sleeps until something arrives or `timeout_ms` passes.
    fn wait(&mut self, timeout_ms: i32);
    /// Sends one frame (a gratuitous ARP); a UDP sink cannot and does not.
    fn send_raw(&mut self, frame: &[u8]) -> io::Result<()>;
    /// True when `recv` hands UDP payloads rather than Ethernet frames.
    fn payloads(&self) -> bool;
    fn describe(&self) -> String;
    /// Frames the kernel dropped before the sink saw them, since open.
    fn kernel_drops(&mut self) -> Option<u64>;
}

fn describe_xsk(port: &AfXdpPort) -> String {
    let m = port.mode();
    format!(
        "afxdp {} {}",
        m.mode,
        if m.zero_copy { "zero-copy" } else { "copy" }
    )
}

/// An AF_XDP socket on queue 0 with its own pool.
struct Xdp {
    // Fields drop in order: the socket must be closed before the pool (its
    // UMEM) is freed, or the kernel could write into freed memory.
    port: AfXdpPort,
    pool: FramePool,
    frames: Vec<TxFrame>,
    rx: [(u32, u32); BURST],
}

impl Xdp {
    fn open(ifname: &str) -> anyhow::Result<Xdp> {
        sys::quiet_libxdp();
        let pool = FramePool::new(POOL_FRAMES);
        let port = AfXdpPort::open(ifname, 0, AttachMode::Auto, &pool.view())?;
        let mut x = Xdp {
            port,
            pool,
            frames: Vec::with_capacity(BURST),
            rx: [(0, 0); BURST],
        };
        x.port
            .maintain(&mut x.pool)
            .map_err(|e| anyhow::anyhow!("{ifname}: {e}"))?;
        Ok(x)
    }

    fn send(
        &mut self,
        n: usize,
        fill: &mut dyn FnMut(usize, &mut [u8]) -> usize,
    ) -> io::Result<usize> {
        self.frames.clear();
        for i in 0..n.min(BURST) {
            let Some(addr) = self.pool.alloc() else { break };
            let len = fill(i, self.pool.data_mut(addr, FRAME_CAPACITY));
            self.frames.push(TxFrame {
                addr,
                len: len as u32,
                in_port: 0,
            });
        }
        let sent = match self.port.tx_burst(&mut self.pool, &self.frames) {
            Ok(n) => n,
            Err(e) => {
                for f in &self.frames {
                    self.pool.free(f.addr);
                }
                return Err(io::Error::other(e.0));
            }
        };
        for f in &self.frames[sent..] {
            self.pool.free(f.addr);
        }
        Ok(sent)
    }

    fn recv(&mut self, f: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        let n = self
            .port
            .rx_burst(&mut self.pool, &mut self.rx)
            .map_err(|e| io::Error::other(e.0))?;
        for &(addr, len) in &self.rx[..n] {
            f(self.pool.data(addr, len));
            self.pool.free(addr);
        }
        self.port
            .maintain(&mut self.pool)
            .map_err(|e| io::Error::other(e.0))?;
        Ok(n)
    }
}

impl Tx for Xdp {
    fn send(
        &mut self,
        n: usize,
        fill: &mut dyn FnMut(usize, &mut [u8]) -> usize,
    ) -> io::Result<usize> {
        Xdp::send(self, n, fill)
    }
    fn service(&mut self) -> io::Result<()> {
        self.recv(&mut |_| {}).map(|_| ())
    }
    fn describe(&self) -> String {
        describe_xsk(&self.port)
    }
}

impl Rx for Xdp {
    fn recv(&mut self, f: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        Xdp::recv(self, f)
    }
    fn wait(&mut self, timeout_ms: i32) {
        if let Some(fd) = self.port.poll_fd() {
            poll_in(fd, timeout_ms);
        }
    }
    fn send_raw(&mut self, frame: &[u8]) -> io::Result<()> {
        let mut once = |_: usize, buf: &mut [u8]| {
            buf[..frame.len()].copy_from_slice(frame);
            frame.len()
        };
        Xdp::send(self, 1, &mut once).map(|_| ())
    }
    fn payloads(&self) -> bool {
        false
    }
    fn describe(&self) -> String {
        describe_xsk(&self.port)
    }
    fn kernel_drops(&mut self) -> Option<u64> {
        // rx_dropped (which in copy mode also counts the frames dropped for
        // an empty fill ring, so rx_fill_ring_empty_descs is not added) +
        // rx_ring_full.
        let s = sys::xsk_statistics(self.port.xsk_fd()?)?;
        Some(s[0] + s[3])
    }
}

fn poll_in(fd: RawFd, timeout_ms: i32) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut p, 1, timeout_ms) };
}

/// A socket read and written with recvmmsg/sendmmsg over fixed buffers.
struct Mmsg {
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
fn packet_socket(ifname: &str, rx: bool, buf_len: usize) -> anyhow::Result<Mmsg> {
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
fn udp_socket(port: u16, buf_len: usize) -> anyhow::Result<Mmsg> {
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

/// Opens the generator's way out; `max_frame` is the largest frame it sends.
pub fn open_tx(kind: DriverKind, ifname: &str, max_frame: usize) -> anyhow::Result<Box<dyn Tx>> {
    let fits = max_frame <= FRAME_CAPACITY as usize;
    match kind {
        DriverKind::Afxdp if !fits => anyhow::bail!(
            "AF_XDP buffers hold frames up to {FRAME_CAPACITY} bytes; use --driver packet for larger ones"
        ),
        DriverKind::Afxdp => Ok(Box::new(Xdp::open(ifname)?)),
        DriverKind::Packet => Ok(Box::new(packet_socket(ifname, false, max_frame)?)),
        DriverKind::Udp => anyhow::bail!("--driver udp is for the sink only"),
        DriverKind::Auto => {
            if fits && let Ok(x) = Xdp::open(ifname) {
                return Ok(Box::new(x));
            }
            Ok(Box::new(packet_socket(ifname, false, max_frame)?))
        }
    }
}

/// Opens the sink's way in; `port` is the UDP port the stamps go to.
pub fn open_rx(
    kind: DriverKind,
    ifname: &str,
    port: u16,
    max_frame: usize,
) -> anyhow::Result<Box<dyn Rx>> {
    let fits = max_frame <= FRAME_CAPACITY as usize;
    match kind {
        DriverKind::Afxdp if !fits => anyhow::bail!(
            "AF_XDP buffers hold frames up to {FRAME_CAPACITY} bytes; use --driver packet or udp"
        ),
        DriverKind::Afxdp => Ok(Box::new(Xdp::open(ifname)?)),
        DriverKind::Packet => Ok(Box::new(packet_socket(ifname, true, max_frame)?)),
        DriverKind::Udp => Ok(Box::new(udp_socket(port, max_frame)?)),
        DriverKind::Auto => {
            if fits && let Ok(x) = Xdp::open(ifname) {
                return Ok(Box::new(x));
            }
            Ok(Box::new(packet_socket(ifname, true, max_frame)?))
        }
    }
}

/// A route of the calling thread's namespace, from /proc/net/route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Route {
    dst: u32,
    mask: u32,
    gateway: u32,
}

/// An address as /proc/net/route prints it: the network-order word read as
/// a host-order integer.
fn hex_addr(s: &str) -> Option<u32> {
    let v = u32::from_str_radix(s, 16).ok()?;
    Some(u32::from_be_bytes(v.to_ne_bytes()))
}

/// The IPv4 routes of `ifname` in /proc/net/route text.
fn parse_routes(text: &str, ifname: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 || f[0] != ifname {
                return None;
            }
            Some(Route {
                dst: hex_addr(f[1])?,
                gateway: hex_addr(f[2])?,
                mask: hex_addr(f[7])?,
            })
        })
        .collect()
}

/// The next hop toward `dst` among `routes` (longest prefix).
fn next_hop(routes: &[Route], dst: Ipv4Addr) -> Option<Ipv4Addr> {
    let d = u32::from(dst);
    let r = routes
        .iter()
        .filter(|r| d & r.mask == r.dst & r.mask)
        .max_by_key(|r| r.mask.count_ones())?;
    Some(if r.gateway == 0 {
        dst
    } else {
        Ipv4Addr::from(r.gateway)
    })
}

/// The MAC of `ip` in /proc/net/arp text, on `ifname`, if complete.
fn parse_arp(text: &str, ifname: &str, ip: Ipv4Addr) -> Option<[u8; 6]> {
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 6 || f[5] != ifname || f[0].parse::<Ipv4Addr>().ok()? != ip {
            return None;
        }
        let flags = u32::from_str_radix(f[2].trim_start_matches("0x"), 16).ok()?;
        if flags & 0x2 == 0 {
            return None;
        }
        crate::parse_mac(f[3]).ok()
    })
}

/// The MAC frames to `dst` leave `ifname` with: the destination's own on
/// its link, else its gateway's, resolved by the kernel of the calling
/// thread's namespace (ARP, triggered by a datagram to the discard port).
pub fn resolve_mac(ifname: &str, dst: Ipv4Addr, timeout: Duration) -> anyhow::Result<[u8; 6]> {
    let routes_text = std::fs::read_to_string("/proc/thread-self/net/route")?;
    let hop = next_hop(&parse_routes(&routes_text, ifname), dst).ok_or_else(|| {
        anyhow::anyhow!(
            "no route to {dst} through '{ifname}' (give --dst-mac, or add an address or a route)"
        )
    })?;
    let deadline = Instant::now() + timeout;
    let sock = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    loop {
        let arp = std::fs::read_to_string("/proc/thread-self/net/arp")?;
        if let Some(mac) = parse_arp(&arp, ifname, hop) {
            return Ok(mac);
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "cannot resolve the MAC of {hop} (next hop to {dst}) on '{ifname}': no ARP reply within {:?}; give --dst-mac",
                timeout
            );
        }
        let _ = sock.send_to(&[0], (dst, 9));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0101F40A\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0001F40A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
lo\t0002F40A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
";

    #[test]
    fn next_hop_is_the_gateway_or_the_destination() {
        let r = parse_routes(ROUTES, "eth0");
        assert_eq!(r.len(), 2);
        let on_link = Ipv4Addr::new(10, 244, 1, 12);
        assert_eq!(next_hop(&r, on_link), Some(on_link));
        assert_eq!(
            next_hop(&r, Ipv4Addr::new(10, 96, 0, 10)),
            Some(Ipv4Addr::new(10, 244, 1, 1))
        );
        assert_eq!(next_hop(&parse_routes(ROUTES, "eth9"), on_link), None);
    }

    #[test]
    fn arp_entries_need_the_complete_flag() {
        let arp = "IP address       HW type     Flags       HW address            Mask     Device
10.244.1.1       0x1         0x2         02:aa:bb:cc:dd:ee     *        eth0
10.244.1.12      0x1         0x0         00:00:00:00:00:00     *        eth0
";
        assert_eq!(
            parse_arp(arp, "eth0", Ipv4Addr::new(10, 244, 1, 1)),
            Some([2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee])
        );
        assert_eq!(parse_arp(arp, "eth0", Ipv4Addr::new(10, 244, 1, 12)), None);
        assert_eq!(parse_arp(arp, "eth1", Ipv4Addr::new(10, 244, 1, 1)), None);
    }
}
