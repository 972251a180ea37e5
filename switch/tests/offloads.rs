//! Pods that keep the kernel's default offloads.
//!
//! A pod on a veth pair (an AF_XDP port) with TX checksum offload on sends
//! TCP and UDP with partial checksums (only the pseudo-header summed); the
//! switch completes them, so the receiving pod, on AF_XDP or TAP, accepts
//! every segment and counts no checksum error.
//!
//! A TAP pod with offloads (the default) hands the switch TCP segments of up
//! to 64 KiB (GSO frames): they reach another TAP pod whole (the mean frame
//! size the switch counts is far above an MTU), switched, routed and through
//! a Service, and an AF_XDP pod as MTU-sized segments that its stack
//! accepts (no checksum errors, the data all there).
//!
//! Needs root; see `common/mod.rs`.

mod common;

use common::{Attach, Daemon, DaemonOpts, Pod, PodSpec, TestEnv, netns_exec};

/// An iperf3 transfer must move at least this much (see forwarding.rs).
const MIN_IPERF_BYTES: u64 = 1_000_000;
const IPERF_SECS: u32 = 3;
/// Frames larger than any Ethernet frame of a 1,500-byte MTU: a mean above
/// this means GSO frames crossed the port whole.
const WIRE_MAX: u64 = 1514;

/// Turns TX checksum offload (back) on in a pod, as a container runtime
/// leaves it.
fn offloads_on(pod: &Pod) {
    let r = netns_exec(&pod.name, &["ethtool", "-K", "eth0", "tx", "on"]);
    assert!(
        r.success(),
        "ethtool -K eth0 tx on in {}: {}",
        pod.name,
        r.stderr
    );
    let k = netns_exec(&pod.name, &["ethtool", "-k", "eth0"]).stdout;
    assert!(k.contains("tx-checksumming: on"), "{}: {k}", pod.name);
}

/// The pod's TCP and UDP checksum error counters.
fn csum_errors(pod: &Pod) -> (u64, u64) {
    let r = netns_exec(
        &pod.name,
        &["nstat", "-az", "TcpInCsumErrors", "UdpInCsumErrors"],
    );
    assert!(r.success(), "nstat in {}: {}", pod.name, r.stderr);
    let read = |name: &str| {
        r.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in nstat output: {}", r.stdout))
    };
    (read("TcpInCsumErrors"), read("UdpInCsumErrors"))
}

/// Sends 100 UDP datagrams of 1,000 bytes from `from` to `to` and returns
/// how many arrived.
fn udp_datagrams(from: &Pod, to: &Pod) -> usize {
    let server = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('{}', 9999))\n\
         s.settimeout(3)\n\
         n = 0\n\
         try:\n\
         \x20   while True:\n\
         \x20       s.recv(2048)\n\
         \x20       n += 1\n\
         except socket.timeout:\n\
         \x20   pass\n\
         print(n)\n",
        to.ip
    );
    let rx = std::process::Command::new("ip")
        .args(["netns", "exec", &to.name, "python3", "-c", &server])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let client = format!(
        "import socket, time\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for i in range(100):\n\
         \x20   s.sendto(bytes([i]) * 1000, ('{}', 9999))\n\
         \x20   time.sleep(0.002)\n",
        to.ip
    );
    let r = netns_exec(&from.name, &["python3", "-c", &client]);
    assert!(r.success(), "UDP sender in {}: {}", from.name, r.stderr);
    let out = rx.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn check(env: &mut TestEnv, a: &Pod, b: &Pod) {
    offloads_on(a);
    if b.attach == Attach::Afxdp {
        offloads_on(b);
    }
    let before = (csum_errors(a), csum_errors(b));
    env.ping(a, b);
    env.tcp_exchange(&a.name, &b.name, b.ip, 5001);
    if b.attach == Attach::Afxdp {
        env.tcp_exchange(&b.name, &a.name, a.ip, 5002);
    }
    let got = udp_datagrams(a, b);
    assert!(got >= 95, "{got} of 100 UDP datagrams arrived");
    assert_eq!(
        (csum_errors(a), csum_errors(b)),
        before,
        "checksum errors counted in the pods"
    );
}

#[test]
fn afxdp_pods_with_checksum_offload_reach_each_other() {
    let Some(mut env) = TestEnv::with_daemon("afxdp_pods_with_checksum_offload") else {
        return;
    };
    let a = env.add_pod("a", Attach::Afxdp);
    let b = env.add_pod("b", Attach::Afxdp);
    check(&mut env, &a, &b);
}

/// Where the kernel can, it completes the partial checksums, not the
/// switch: both AF_XDP ports say so (`tx_checksum`, TX metadata on a
/// copy-mode socket), and the receiving pod's tcpdump shows TCP segments
/// with their checksum still partial ("incorrect": its stack gets them as
/// from a local sender, `CHECKSUM_PARTIAL`, and trusts them) while it
/// counts no checksum error. Fails if the switch completed them itself.
#[test]
fn afxdp_ports_leave_partial_checksums_to_the_kernel() {
    let Some(mut env) = TestEnv::with_daemon("afxdp_partial_checksums") else {
        return;
    };
    let a = env.add_pod("a", Attach::Afxdp);
    let b = env.add_pod("b", Attach::Afxdp);
    offloads_on(&a);
    offloads_on(&b);
    for pod in [&a, &b] {
        let p = env.daemon().port(&pod.name);
        assert!(p.tx_checksum, "{}: {p:?}", pod.name);
    }
    let dump = std::process::Command::new("ip")
        .args([
            "netns", "exec", &b.name, "timeout", "8", "tcpdump", "-i", "eth0",
        ])
        .args(["-nn", "-vv", "-l", "-c", "6", "-Q", "in"])
        .arg(format!(
            "tcp dst port 5003 and dst host {} and greater 200",
            b.ip
        ))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tcpdump");
    std::thread::sleep(std::time::Duration::from_secs(1));
    let before = csum_errors(&b);
    env.tcp_exchange(&a.name, &b.name, b.ip, 5003);
    let out = dump.wait_with_output().expect("tcpdump output");
    let text = String::from_utf8_lossy(&out.stdout);
    let segments = text.lines().filter(|l| l.contains("cksum")).count();
    let partial = text.lines().filter(|l| l.contains("incorrect")).count();
    assert!(
        segments > 0,
        "tcpdump saw nothing: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        partial > 0,
        "every segment arrived with a complete checksum: {text}"
    );
    assert_eq!(csum_errors(&b), before, "checksum errors counted in b");
}

#[test]
fn an_afxdp_pod_with_checksum_offload_reaches_a_tap_pod() {
    let Some(mut env) = TestEnv::with_daemon("an_afxdp_pod_with_checksum_offload") else {
        return;
    };
    let a = env.add_pod("a", Attach::Afxdp);
    let b = env.add_pod("b", Attach::Tap);
    check(&mut env, &a, &b);
}

/// The mean size of the frames port `name` received and sent.
fn mean_sizes(d: &Daemon, name: &str) -> (u64, u64) {
    let s = d.port_stats(name);
    (
        s.rx_bytes / s.rx_packets.max(1),
        s.tx_bytes / s.tx_packets.max(1),
    )
}

/// The pod's eth0 has TCP segmentation offload as `on` says.
fn expect_tso(pod: &Pod, on: bool) {
    let k = netns_exec(&pod.name, &["ethtool", "-k", "eth0"]).stdout;
    let want = format!(
        "tcp-segmentation-offload: {}",
        if on { "on" } else { "off" }
    );
    assert!(k.contains(&want), "{}: {k}", pod.name);
}

/// No frame was dropped for its offloads or for not fitting.
fn no_offload_drops(d: &Daemon) {
    for s in d.stats() {
        for reason in ["bad_offload", "malformed", "frag_needed", "no_buffer"] {
            assert_eq!(s.drops[reason], 0, "{reason} on {}: {s:?}", s.name);
        }
    }
}

/// iperf3 from `from` to `to` (at `addr`) moves data, and `to` counts no
/// checksum error.
fn transfer(env: &mut TestEnv, from: &Pod, to: &Pod, addr: std::net::Ipv4Addr) {
    let before = csum_errors(to);
    let bytes = env.iperf_via(from, to, addr, IPERF_SECS);
    assert!(
        bytes > MIN_IPERF_BYTES,
        "only {bytes} bytes {} -> {}",
        from.name,
        to.name
    );
    assert_eq!(
        csum_errors(to),
        before,
        "checksum errors counted in {}",
        to.name
    );
}

#[test]
fn tap_pods_pass_gso_frames_whole() {
    let Some(mut env) = TestEnv::with_daemon("tap_pods_pass_gso_frames") else {
        return;
    };
    let a = env.add_pod("a", Attach::Tap);
    let b = env.add_pod("b", Attach::Tap);
    expect_tso(&a, true);
    assert!(env.daemon().port(&a.name).offload);
    assert_eq!(
        env.daemon().port(&a.name).io.as_deref(),
        Some("io_uring"),
        "TAP ports move frames through io_uring by default (Linux 6.4+, no seccomp filter blocking it)"
    );
    transfer(&mut env, &a, &b, b.ip);
    let d = env.daemon();
    let (rx_a, _) = mean_sizes(d, &a.name);
    let (_, tx_b) = mean_sizes(d, &b.name);
    assert!(rx_a > 3 * WIRE_MAX, "GSO frames from a: mean {rx_a} bytes");
    assert!(
        tx_b > 3 * WIRE_MAX,
        "GSO frames written whole to b: mean {tx_b} bytes"
    );
    no_offload_drops(d);
}

/// `--tap-io syscalls`: the same frames, whole and cut, with a read(2) or
/// write(2) each, with offloads and without.
#[test]
fn tap_ports_move_frames_with_a_syscall_each_when_asked() {
    let Some(mut env) = TestEnv::new("tap_io_syscalls") else {
        return;
    };
    env.start_daemon_with(DaemonOpts {
        extra: vec!["--tap-io".into(), "syscalls".into()],
        ..DaemonOpts::default()
    });
    let a = env.add_pod("a", Attach::Tap);
    let b = env.add_pod("b", Attach::Tap);
    let c = env.add_pod_with(PodSpec::new("c", Attach::Tap, "10.77.0.13/24").offload(false));
    for p in [&a, &b, &c] {
        assert_eq!(env.daemon().port(&p.name).io.as_deref(), Some("syscalls"));
    }
    let list = env.daemon().ctl_ok(&["port", "list"]).stdout;
    assert!(list.contains("tap/syscalls"), "port list: {list}");
    transfer(&mut env, &a, &b, b.ip);
    transfer(&mut env, &b, &c, c.ip);
    transfer(&mut env, &c, &a, a.ip);
    let d = env.daemon();
    let (rx_a, _) = mean_sizes(d, &a.name);
    let (_, tx_b) = mean_sizes(d, &b.name);
    let (rx_c, tx_c) = mean_sizes(d, &c.name);
    assert!(rx_a > 3 * WIRE_MAX, "GSO frames from a: mean {rx_a} bytes");
    assert!(tx_b > 3 * WIRE_MAX, "GSO frames to b: mean {tx_b} bytes");
    assert!(
        rx_c <= WIRE_MAX && tx_c <= WIRE_MAX,
        "c: mean {rx_c}/{tx_c} bytes"
    );
    no_offload_drops(d);
}

/// TCP segments from an AF_XDP pod (no TSO on a veth with XDP) reach a TAP
/// pod with offloads coalesced into GSO frames (the mean frame the switch
/// writes to the TAP is far above an MTU), every byte there and no
/// checksum error in the receiving pod; toward a TAP without offloads they
/// stay segments.
#[test]
fn segments_from_an_afxdp_pod_are_coalesced_for_a_tap_pod() {
    let Some(mut env) = TestEnv::with_daemon("segments_coalesced_for_a_tap_pod") else {
        return;
    };
    let a = env.add_pod("a", Attach::Afxdp);
    let b = env.add_pod("b", Attach::Tap);
    let c = env.add_pod_with(PodSpec::new("c", Attach::Tap, "10.77.0.13/24").offload(false));
    transfer(&mut env, &a, &b, b.ip);
    transfer(&mut env, &a, &c, c.ip);
    let d = env.daemon();
    let (rx_a, _) = mean_sizes(d, &a.name);
    let (_, tx_b) = mean_sizes(d, &b.name);
    let (_, tx_c) = mean_sizes(d, &c.name);
    assert!(rx_a <= WIRE_MAX, "segments from a: mean {rx_a} bytes");
    assert!(
        tx_b > 2 * WIRE_MAX,
        "coalesced frames written to b: mean {tx_b} bytes"
    );
    assert!(tx_c <= WIRE_MAX, "segments to c: mean {tx_c} bytes");
    no_offload_drops(d);
}

#[test]
fn gso_frames_are_cut_for_an_afxdp_pod() {
    let Some(mut env) = TestEnv::with_daemon("gso_frames_are_cut") else {
        return;
    };
    let a = env.add_pod("a", Attach::Tap);
    let b = env.add_pod("b", Attach::Afxdp);
    transfer(&mut env, &a, &b, b.ip);
    let d = env.daemon();
    let (rx_a, _) = mean_sizes(d, &a.name);
    let (_, tx_b) = mean_sizes(d, &b.name);
    assert!(rx_a > 3 * WIRE_MAX, "GSO frames from a: mean {rx_a} bytes");
    assert!(tx_b <= WIRE_MAX, "segments to b: mean {tx_b} bytes");
    // And back: the AF_XDP pod's segments reach the TAP pod (coalesced,
    // see below).
    transfer(&mut env, &b, &a, a.ip);
    no_offload_drops(env.daemon());
}

#[test]
fn a_tap_pod_without_offloads_sends_wire_sized_frames() {
    let Some(mut env) = TestEnv::with_daemon("tap_pod_without_offloads") else {
        return;
    };
    let a = env.add_pod_with(PodSpec::new("a", Attach::Tap, "10.77.0.11/24").offload(false));
    let b = env.add_pod("b", Attach::Tap);
    expect_tso(&a, false);
    assert!(!env.daemon().port(&a.name).offload);
    transfer(&mut env, &a, &b, b.ip);
    // GSO frames from b are cut for a, which takes none.
    transfer(&mut env, &b, &a, a.ip);
    let d = env.daemon();
    let (rx_a, tx_a) = mean_sizes(d, &a.name);
    assert!(
        rx_a <= WIRE_MAX && tx_a <= WIRE_MAX,
        "a: mean {rx_a}/{tx_a} bytes"
    );
    assert!(
        mean_sizes(d, &b.name).0 > 3 * WIRE_MAX,
        "b still sends GSO frames"
    );
    no_offload_drops(d);
}

#[test]
fn gso_frames_are_routed_and_translated_for_a_service() {
    let Some(mut env) = TestEnv::with_daemon("gso_routed_and_service") else {
        return;
    };
    let d = env.daemon();
    d.ctl_ok(&["addr", "add", "10.244.1.1/24"]);
    d.ctl_ok(&["addr", "add", "10.244.2.1/24"]);
    let pod = |s: &str, attach, cidr: &str, gw: &str| PodSpec::new(s, attach, cidr).gw(gw);
    let c = env.add_pod_with(pod("c", Attach::Tap, "10.244.1.10/24", "10.244.1.1"));
    let t = env.add_pod_with(pod("t", Attach::Tap, "10.244.2.20/24", "10.244.2.1"));
    let x = env.add_pod_with(pod("x", Attach::Afxdp, "10.244.2.21/24", "10.244.2.1"));
    // Routed, TAP to TAP: whole.
    transfer(&mut env, &c, &t, t.ip);
    assert!(mean_sizes(env.daemon(), &t.name).1 > 3 * WIRE_MAX);
    // Through a Service VIP (NAT with the checksum left partial), routed.
    let vip: std::net::Ipv4Addr = "10.96.0.10".parse().unwrap();
    let key = "10.96.0.10:5201/tcp";
    env.daemon()
        .ctl_ok(&["service", "add", key, "--backend", "10.244.2.20:5201"]);
    let tx_before = env.daemon().port_stats(&t.name);
    transfer(&mut env, &c, &t, vip);
    let tx_after = env.daemon().port_stats(&t.name);
    let (bytes, packets) = (
        tx_after.tx_bytes - tx_before.tx_bytes,
        tx_after.tx_packets - tx_before.tx_packets,
    );
    assert!(
        bytes / packets.max(1) > 3 * WIRE_MAX,
        "to t through the VIP: {bytes} bytes in {packets} frames"
    );
    // To an AF_XDP endpoint: translated, routed and cut.
    env.daemon()
        .ctl_ok(&["service", "backends", key, "10.244.2.21:5201"]);
    transfer(&mut env, &c, &x, vip);
    assert!(mean_sizes(env.daemon(), &x.name).1 <= WIRE_MAX);
    no_offload_drops(env.daemon());
}
