//! Where generator and sink meet an interface: AF_XDP (fastpath's own
//! port, so the generator exercises the same code the switch runs),
//! AF_PACKET, or a bound UDP socket; and the interface facts they need
//! (namespace, index, MAC, MTU, address, the next hop's MAC).
//!
//! Everything here runs on the calling thread, in the network namespace
//! that thread entered with [`enter_netns`].

use std::io;
use std::net::Ipv4Addr;

use fastpath::pool::{FRAME_CAPACITY, FramePool};
use fastpath::port::afxdp::{AfXdpPort, AttachMode};
use fastpath::port::{Port, RxFrame};
use fastpath::sys;
use fastpath::tx::TxFrame;

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
/// Attempts (50 ms apart) to bind a queue that is still busy.
const BUSY_TRIES: u32 = 40;

pub use crate::neigh::resolve_mac;
use crate::sockets::{packet_socket, poll_in, udp_socket};
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
    rx: [RxFrame; BURST],
}

impl Xdp {
    fn open(ifname: &str) -> anyhow::Result<Xdp> {
        sys::quiet_libxdp();
        let pool = FramePool::new(POOL_FRAMES);
        // A socket another process (an earlier run) closed a moment ago
        // keeps the queue busy until the kernel's deferred cleanup runs.
        let mut tries = 0;
        let port = loop {
            match AfXdpPort::open(ifname, 0, 0, AttachMode::Auto, &pool.umem()) {
                Ok(p) => break p,
                Err(e) if tries < BUSY_TRIES && e.reason.contains("busy") => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let mut x = Xdp {
            port,
            pool,
            frames: Vec::with_capacity(BURST),
            rx: [RxFrame::default(); BURST],
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
            self.frames.push(TxFrame::new(addr, len as u32, 0));
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
        for &RxFrame { addr, len, .. } in &self.rx[..n] {
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
