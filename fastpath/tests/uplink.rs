//! The uplink XDP program on real kernel objects: a node namespace whose
//! "NIC" `upl-a` is a veth to a peer namespace. The program sends the
//! switch's traffic (pod prefixes, the router MAC, VXLAN to the node) to an
//! AF_XDP socket and everything else to the node's kernel, which keeps
//! answering while the program is attached, after the socket is gone, and
//! after the program is detached.
//!
//! These tests need root (namespaces, XDP) and AF_XDP; elsewhere they fail,
//! saying why, unless the run allows skipping (`common/skip.rs`). They
//! share fixed namespace and interface names, so they run one at a time.

use std::io;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fastpath::pool::FramePool;
use fastpath::port::afxdp::AfXdpPort;
use fastpath::port::uplink::{UplinkAttach, UplinkProgram, XdpMode};
use fastpath::port::{Port, RxFrame};
use fastpath::sys;

const NODE_NS: &str = "vsw-upl-node";
const PEER_NS: &str = "vsw-upl-peer";
const NODE_IF: &str = "upl-a";
const PEER_IF: &str = "upl-b";
const NODE_IP: &str = "192.168.77.1";
const ROUTER_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
const NODE_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 1];
const NODE_MAC_STR: &str = "02:77:00:00:00:01";
const PEER_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 2];
const PEER_MAC_STR: &str = "02:77:00:00:00:02";
/// How long a frame the program redirects may take to show up on the socket.
const DEADLINE: Duration = Duration::from_secs(3);

#[path = "common/skip.rs"]
mod skip;

static SERIAL: Mutex<()> = Mutex::new(());

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn run(prog: &str, args: &[&str]) -> Out {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `ip args`, which must succeed.
fn ip(args: &[&str]) {
    let r = run("ip", args);
    assert!(r.ok, "ip {} failed: {}", args.join(" "), r.stderr);
}

/// One `ping -c1 -W1` from the peer.
fn ping_from_peer(dst: &str) -> bool {
    let r = run("ip", &["netns", "exec", PEER_NS, "ping", "-c1", "-W1", dst]);
    r.ok
}

/// The node and peer namespaces and the veth between them; deleted on drop,
/// also when a test fails.
struct Net {
    _serial: MutexGuard<'static, ()>,
}

impl Net {
    /// Builds the namespaces; when the test cannot run here, a failure, or
    /// `None` where the run allows skipping.
    fn new(test: &str) -> Option<Net> {
        if !is_root() {
            skip::cannot_run(test, "needs root (network namespaces, XDP)");
            return None;
        }
        if let Err(e) = sys::af_xdp_available() {
            skip::cannot_run(test, &e.to_string());
            return None;
        }
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        // A previous run killed half-way may have left them behind.
        Net::delete();
        let net = Net { _serial: serial };
        ip(&["netns", "add", NODE_NS]);
        ip(&["netns", "add", PEER_NS]);
        ip(&[
            "-n",
            NODE_NS,
            "link",
            "add",
            NODE_IF,
            "address",
            NODE_MAC_STR,
            "type",
            "veth",
            "peer",
            "name",
            PEER_IF,
            "address",
            PEER_MAC_STR,
            "netns",
            PEER_NS,
        ]);
        for (ns, ifname, addr) in [
            (NODE_NS, NODE_IF, "192.168.77.1/24"),
            (PEER_NS, PEER_IF, "192.168.77.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", ifname]);
            ip(&["-n", ns, "link", "set", ifname, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        // The peer reaches pods and other networks through the node, as a
        // top-of-rack router would.
        for net in ["10.244.0.0/16", "10.245.0.0/16", "10.99.0.0/16"] {
            ip(&["-n", PEER_NS, "route", "add", net, "via", NODE_IP]);
        }
        Some(net)
    }

    fn delete() {
        // Deleting the node namespace deletes the veth pair with it.
        for ns in [NODE_NS, PEER_NS] {
            let _ = run("ip", &["netns", "del", ns]);
        }
    }

    /// `ip link show upl-a` in the node namespace.
    fn node_link(&self) -> String {
        let r = run("ip", &["-n", NODE_NS, "link", "show", NODE_IF]);
        assert!(r.ok, "ip link show {NODE_IF} failed: {}", r.stderr);
        r.stdout
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        Net::delete();
    }
}

/// The switch's side: the program on `upl-a` and an AF_XDP socket on its
/// queue 0, registered with the program. Fields drop in order: the socket
/// before the pool that is its UMEM.
struct Uplink {
    port: Option<AfXdpPort>,
    program: Option<UplinkProgram>,
    pool: FramePool,
}

impl Uplink {
    fn attach(mode: UplinkAttach) -> Uplink {
        let pool = FramePool::new(4096);
        let view = pool.umem();
        // The ifindex, the attachment and the socket's bind all name the
        // interface in the node namespace.
        let (program, mut port) = sys::in_netns(NODE_NS, move || {
            let ifindex = sys::if_index(NODE_IF)
                .ok_or_else(|| io::Error::other(format!("no {NODE_IF} in {NODE_NS}")))?;
            let program = UplinkProgram::attach(ifindex, mode).map_err(io::Error::other)?;
            let port =
                AfXdpPort::open_without_program(NODE_IF, 0, 0, program.mode().socket_mode(), &view)
                    .map_err(io::Error::other)?;
            Ok((program, port))
        })
        .expect("attaching the uplink program and socket");
        let fd = port.xsk_fd().expect("an AF_XDP port has a socket");
        program
            .register_socket(0, fd)
            .expect("registering the socket");
        let mut pool = pool;
        // Gives the kernel receive buffers before the first frame comes.
        port.maintain(&mut pool).expect("filling the fill ring");
        Uplink {
            port: Some(port),
            program: Some(program),
            pool,
        }
    }

    /// rx_dropped, rx_invalid_descs, tx_invalid_descs, rx_ring_full,
    /// rx_fill_ring_empty_descs, tx_ring_empty_descs: why frames the program
    /// redirected may not have arrived.
    fn xsk_statistics(&self) -> Option<[u64; 6]> {
        let port = self.port.as_ref()?;
        sys::xsk_statistics(port.xsk_fd()?)
    }

    fn program(&mut self) -> &mut UplinkProgram {
        self.program.as_mut().expect("program attached")
    }

    /// Receives until a frame containing `marker` arrives or the deadline
    /// passes; returns every frame received meanwhile, and whether the
    /// marked one was among them.
    fn receive_until(&mut self, marker: &[u8]) -> (bool, Vec<Vec<u8>>) {
        let port = self.port.as_mut().expect("socket open");
        let mut seen = Vec::new();
        let mut burst = [RxFrame::default(); 64];
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            port.maintain(&mut self.pool).expect("port healthy");
            let n = port
                .rx_burst(&mut self.pool, &mut burst)
                .expect("port healthy");
            for &RxFrame { addr, len, .. } in &burst[..n] {
                seen.push(self.pool.data(addr, len).to_vec());
                self.pool.free(addr);
            }
            if seen.iter().any(|f| contains(f, marker)) {
                return (true, seen);
            }
            if n == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        (false, seen)
    }

    /// Asserts that the frame marked `want` reaches the socket and that no
    /// frame marked `not` (sent before it, on the same wire) did.
    fn expect(&mut self, want: &[u8], not: &[u8]) {
        let (found, seen) = self.receive_until(want);
        assert!(
            found,
            "{} never reached the AF_XDP socket ({} other frames did; the \
             socket's kernel counters: {:?})",
            String::from_utf8_lossy(want),
            seen.len(),
            self.xsk_statistics()
        );
        assert!(
            !seen.iter().any(|f| contains(f, not)),
            "{} reached the AF_XDP socket instead of the kernel",
            String::from_utf8_lossy(not)
        );
    }
}

fn contains(frame: &[u8], marker: &[u8]) -> bool {
    frame.windows(marker.len()).any(|w| w == marker)
}

/// Sends one UDP datagram per `(destination, payload)` from the peer, in order.
fn udp_from_peer(datagrams: &[(&str, &'static [u8])]) {
    let datagrams: Vec<(String, &'static [u8])> =
        datagrams.iter().map(|&(d, p)| (d.to_string(), p)).collect();
    sys::in_netns(PEER_NS, move || {
        let sock = UdpSocket::bind("0.0.0.0:0")?;
        for (dst, payload) in &datagrams {
            sock.send_to(payload, dst.as_str())?;
        }
        Ok(())
    })
    .expect("sending UDP from the peer");
}

/// Sends raw Ethernet frames out of the peer's interface.
fn frames_from_peer(frames: &[Vec<u8>]) {
    const SCRIPT: &str = "import socket, sys\n\
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
        s.bind((sys.argv[1], 0))\n\
        for f in sys.argv[2:]:\n    s.send(bytes.fromhex(f))\n";
    let hex: Vec<String> = frames
        .iter()
        .map(|f| f.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    let mut args = vec!["netns", "exec", PEER_NS, "python3", "-c", SCRIPT, PEER_IF];
    args.extend(hex.iter().map(String::as_str));
    let r = run("ip", &args);
    assert!(
        r.ok,
        "sending raw frames from the peer failed: {}",
        r.stderr
    );
}

/// A minimum-size frame to `dst` of a local experimental EtherType, carrying `marker`.
fn raw_frame(dst: [u8; 6], marker: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend(PEER_MAC);
    f.extend([0x88, 0xb5]);
    f.extend(marker);
    f.resize(60, 0);
    f
}

/// A UDP datagram from the peer to the node's address and `port`, with IPv4
/// `options` (a multiple of 4 bytes) between the IPv4 and UDP headers.
/// Checksums are left zero: the program does not look at them.
fn udp_frame_with_options(options: &[u8], port: u16, marker: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let ihl = 5 + options.len() / 4;
    let udp_len = 8 + marker.len();
    let total = ihl * 4 + udp_len;
    let mut f = NODE_MAC.to_vec();
    f.extend(PEER_MAC);
    f.extend([0x08, 0x00]);
    f.extend([0x40 | ihl as u8, 0]);
    f.extend((total as u16).to_be_bytes());
    f.extend([0, 0, 0, 0, 64, 17, 0, 0]); // id, fragment, TTL, UDP, checksum
    f.extend([192, 168, 77, 2, 192, 168, 77, 1]);
    f.extend(options);
    f.extend(40000u16.to_be_bytes());
    f.extend(port.to_be_bytes());
    f.extend((udp_len as u16).to_be_bytes());
    f.extend([0, 0]);
    f.extend(marker);
    f
}

fn v4(s: &str) -> IpAddr {
    s.parse().expect("IPv4 address")
}

#[test]
fn switch_traffic_reaches_the_socket_and_the_node_keeps_its_own() {
    let Some(net) = Net::new("switch_traffic_reaches_the_socket_and_the_node_keeps_its_own") else {
        return;
    };
    let mut up = Uplink::attach(UplinkAttach::Auto);
    let p = up.program();
    p.set_router_mac(ROUTER_MAC).unwrap();
    p.add_prefix(v4("10.244.1.0"), 24).unwrap();
    let mode = p.mode();
    let link = net.node_link();
    assert!(link.contains("xdp"), "no XDP program on {NODE_IF}: {link}");
    eprintln!("uplink program attached in {} mode", mode.as_str());

    // (a) The node's kernel still answers (ARP and ICMP pass).
    assert!(ping_from_peer(NODE_IP), "the node stopped answering ping");

    // (b) Pod traffic goes to the socket; other routed traffic does not.
    udp_from_peer(&[
        ("10.99.0.1:9999", b"vsw-upl-other-net"),
        ("10.244.1.5:9999", b"vsw-upl-pod-net"),
    ]);
    up.expect(b"vsw-upl-pod-net", b"vsw-upl-other-net");

    // (c) Frames to the router MAC go to the socket, to another MAC not.
    let mut other_mac = ROUTER_MAC;
    other_mac[5] = 2;
    frames_from_peer(&[
        raw_frame(other_mac, b"vsw-upl-other-mac"),
        raw_frame(ROUTER_MAC, b"vsw-upl-router-mac"),
    ]);
    up.expect(b"vsw-upl-router-mac", b"vsw-upl-other-mac");

    // vswitchd gone, program still attached: a pod address the node itself
    // holds is answered by the kernel, since the redirect finds no socket.
    ip(&["-n", NODE_NS, "addr", "add", "10.244.1.5/32", "dev", "lo"]);
    up.port = None;
    assert!(
        ping_from_peer("10.244.1.5"),
        "with no socket registered, pod traffic did not fall back to the kernel"
    );

    // (d) Detached: nothing of the program is left on the interface.
    up.program = None;
    let link = net.node_link();
    assert!(
        !link.contains("xdp"),
        "XDP program left on {NODE_IF}: {link}"
    );
    assert!(ping_from_peer(NODE_IP), "the node stopped answering ping");
}

#[test]
fn vxlan_to_the_node_and_prefix_changes() {
    let Some(net) = Net::new("vxlan_to_the_node_and_prefix_changes") else {
        return;
    };
    // Generic mode: the socket must then be bound in copy mode.
    let mut up = Uplink::attach(UplinkAttach::Generic);
    assert_eq!(up.program().mode(), XdpMode::Generic);
    let p = up.program();
    p.set_prefixes(&[(v4("10.244.1.0"), 24), (v4("10.245.0.7"), 16)])
        .unwrap();
    p.set_vxlan_addrs(&[NODE_IP.parse::<Ipv4Addr>().unwrap()])
        .unwrap();
    // Resolves the node's MAC on the peer before the datagrams go out.
    assert!(ping_from_peer(NODE_IP), "the node stopped answering ping");

    // VXLAN to the node's address is the switch's; other UDP to it is not.
    let vxlan = format!("{NODE_IP}:4789");
    let other = format!("{NODE_IP}:4790");
    udp_from_peer(&[
        (other.as_str(), b"vsw-upl-not-vxlan"),
        (vxlan.as_str(), b"vsw-upl-vxlan"),
    ]);
    up.expect(b"vsw-upl-vxlan", b"vsw-upl-not-vxlan");

    // The UDP header is found after the IPv4 options: the first frame's
    // option bytes read as destination port 4789 where a 20-byte header
    // would end, but its UDP port is 4790; the second's is 4789.
    let misleading = [0x01, 0x01, 0x12, 0xb5];
    let nops = [0x01, 0x01, 0x01, 0x00];
    frames_from_peer(&[
        udp_frame_with_options(&misleading, 4790, b"vsw-upl-options-4790"),
        udp_frame_with_options(&nops, 4789, b"vsw-upl-options-4789"),
    ]);
    up.expect(b"vsw-upl-options-4789", b"vsw-upl-options-4790");

    // Replacing the prefix set removes 10.244.1.0/24 and keeps the /16.
    let p = up.program();
    p.set_prefixes(&[(v4("10.245.0.0"), 16)]).unwrap();
    assert_eq!(
        p.prefixes().collect::<Vec<_>>(),
        vec![(v4("10.245.0.0"), 16)]
    );
    udp_from_peer(&[
        ("10.244.1.5:9999", b"vsw-upl-old-prefix"),
        ("10.245.3.3:9999", b"vsw-upl-kept-prefix"),
    ]);
    up.expect(b"vsw-upl-kept-prefix", b"vsw-upl-old-prefix");

    // With no VXLAN address left, VXLAN to the node is the kernel's.
    up.program().set_vxlan_addrs(&[]).unwrap();
    udp_from_peer(&[
        (vxlan.as_str(), b"vsw-upl-vxlan-gone"),
        ("10.245.3.3:9999", b"vsw-upl-after-vxlan"),
    ]);
    up.expect(b"vsw-upl-after-vxlan", b"vsw-upl-vxlan-gone");

    // remove_prefix empties the map: nothing routed is the switch's.
    up.program().remove_prefix(v4("10.245.0.0"), 16).unwrap();
    up.program().set_router_mac(ROUTER_MAC).unwrap();
    udp_from_peer(&[("10.245.3.3:9999", b"vsw-upl-removed")]);
    frames_from_peer(&[raw_frame(ROUTER_MAC, b"vsw-upl-marker")]);
    up.expect(b"vsw-upl-marker", b"vsw-upl-removed");

    up.port = None;
    up.program = None;
    let link = net.node_link();
    assert!(
        !link.contains("xdp"),
        "XDP program left on {NODE_IF}: {link}"
    );
}

/// A UDP datagram from the node to the peer's `port` carrying `marker`
/// (IPv4 header checksum filled in, UDP checksum left out, as IPv4 allows).
fn udp_to_peer(port: u16, marker: &[u8]) -> Vec<u8> {
    let udp_len = 8 + marker.len();
    let mut ip = vec![0x45, 0];
    ip.extend(((20 + udp_len) as u16).to_be_bytes());
    ip.extend([0, 0, 0, 0, 64, 17, 0, 0]);
    ip.extend([192, 168, 77, 1, 192, 168, 77, 2]);
    let sum = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut f = PEER_MAC.to_vec();
    f.extend(NODE_MAC);
    f.extend([0x08, 0x00]);
    f.extend(ip);
    f.extend(40000u16.to_be_bytes());
    f.extend(port.to_be_bytes());
    f.extend((udp_len as u16).to_be_bytes());
    f.extend([0, 0]);
    f.extend(marker);
    f
}

/// The socket sends only frames the worker holds: one already lent (to a
/// ring, as a bug elsewhere would leave it) is counted and skipped, never
/// posted to the kernel, and the ring stays in step (the next burst
/// arrives).
#[test]
fn the_socket_posts_only_frames_the_worker_holds() {
    use fastpath::tx::TxFrame;
    let Some(_net) = Net::new("the_socket_posts_only_frames_the_worker_holds") else {
        return;
    };
    let mut up = Uplink::attach(UplinkAttach::Auto);
    let sock = sys::in_netns(PEER_NS, || UdpSocket::bind("0.0.0.0:7777"))
        .expect("a UDP socket in the peer");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut frame = |marker: &[u8]| {
        let (addr, len) = up.pool.write_frame(&udp_to_peer(7777, marker)).unwrap();
        TxFrame::new(addr, len, 0)
    };
    let burst = [frame(b"held-1"), frame(b"lent"), frame(b"held-2")];
    let after = frame(b"after");
    up.pool.lend(burst[1].addr, 9);
    assert_eq!(up.pool.counts().errors, 0);
    let port = up.port.as_mut().unwrap();
    assert_eq!(port.tx_burst(&mut up.pool, &burst).unwrap(), 3);
    assert_eq!(up.pool.counts().errors, 1, "the frame not held is counted");
    assert_eq!(port.tx_burst(&mut up.pool, &[after]).unwrap(), 1);
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    let start = Instant::now();
    while got.len() < 3 && start.elapsed() < DEADLINE {
        port.maintain(&mut up.pool).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    assert_eq!(
        got,
        ["held-1", "held-2", "after"],
        "socket statistics: {:?}",
        up.xsk_statistics()
    );
    // The lent frame is still its owner's: handed back, it is whole.
    assert_eq!(up.pool.reclaim(burst[1].addr, 9), Some(burst[1].addr));
    assert!(contains(up.pool.data(burst[1].addr, burst[1].len), b"lent"));
}
