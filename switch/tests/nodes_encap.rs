//! Cross-node cases beyond `nodes.rs`: VXLAN across a routed underlay
//! (IPv4 and IPv6 inside), IPv6 host-gw between two wired nodes, and IPv6
//! routing on one node. Real namespaces, veths, AF_XDP and TAP ports,
//! ping/ping -6 and TCP from python.
//!
//! The VXLAN lab: two nodes in different subnets, joined by a router
//! namespace that forwards the underlay and knows nothing of the pods.
//!
//! ```text
//!  node na: up0 192.168.50.1/24 ── up0 router r up1 ── up0 192.168.60.2/24 :node nb
//!           default via .50.254   192.168.50.254       default via .60.254
//!                                 192.168.60.254
//!    router 10.244.1.1/24, fd00:10:244:1::1/64     router 10.244.2.1/24, fd00:10:244:2::1/64
//!    route 192.168.60.0/24 via 192.168.50.254      route 192.168.50.0/24 via 192.168.60.254
//!    route 10.244.2.0/24, fd00:10:244:2::/64       route 10.244.1.0/24, fd00:10:244:1::/64
//!          via 192.168.60.2 encap vxlan vni 42           via 192.168.50.1 encap vxlan vni 42
//!    pod pa 10.244.1.5, fd00:10:244:1::5 (AF_XDP)  pod pb 10.244.2.5, fd00:10:244:2::5 (AF_XDP)
//!                                                  pod pt 10.244.2.6, fd00:10:244:2::6 (TAP)
//! ```
//!
//! The nodes and the router are made with `scripts/node.sh` (node a wired
//! to the router; node b's loose wire end moved into the router as `up1`),
//! so the environment removes them whatever happens. Pods get their IPv6
//! address (`nodad`) and IPv6 default route here; pod.sh takes one address.
//!
//! Needs root; see `common/mod.rs`.

mod common;

use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Attach, CmdResult, Daemon, Node, NodeLink, Pod, PodSpec, TestEnv, allowed_cores, ip,
    netns_exec, run_cmd, tcp_listening, wait_for,
};

/// The cores of the two nodes' workers (the same core on a one-core machine).
fn node_cores() -> [String; 2] {
    let c = allowed_cores();
    [0, 1].map(|i| c[i % c.len()].to_string())
}

/// `ip <args>`, panicking with its output if it fails.
fn ip_ok(args: &[&str]) {
    let r = ip(args);
    assert!(r.success(), "ip {args:?} failed: {}{}", r.stdout, r.stderr);
}

/// Gives pod `pod` the IPv6 address `cidr` (no duplicate address
/// detection) and, with `gw`, an IPv6 default route via it.
fn add_ipv6(pod: &Pod, cidr: &str, gw: Option<&str>) {
    ip_ok(&["-n", &pod.name, "addr", "add", cidr, "dev", "eth0", "nodad"]);
    if let Some(gw) = gw {
        ip_ok(&[
            "-n", &pod.name, "-6", "route", "add", "default", "via", gw, "dev", "eth0",
        ]);
    }
}

/// `ping <args> <to>` inside namespace `ns`.
fn ping(ns: &str, args: &[&str], to: &str) -> CmdResult {
    let mut full = vec!["ping"];
    full.extend_from_slice(args);
    full.push(to);
    netns_exec(ns, &full)
}

/// Routes, neighbours and counters of every switch of the test.
fn diagnostics(daemons: &[&Daemon]) -> String {
    let mut s = String::new();
    for d in daemons {
        for args in [&["route", "list"][..], &["neigh", "list"], &["stats"]] {
            s += &format!(
                "--- {}: vswitchctl {}\n{}",
                d.socket.display(),
                args.join(" "),
                d.ctl(args).stdout
            );
        }
        s += &format!("--- log:\n{}\n", d.log_tail(15));
    }
    s
}

/// Pings `to` (`-6` in `args` for IPv6) from `ns` until a reply comes (up to
/// 10 s: neighbours settle), then requires 3 of 3; returns their output.
fn ping_ok(ns: &str, args: &[&str], to: &str, daemons: &[&Daemon]) -> String {
    let mut first = args.to_vec();
    first.extend(["-c", "1", "-W", "1"]);
    let got = wait_for(Duration::from_secs(10), || {
        ping(ns, &first, to).success().then_some(())
    });
    assert!(
        got.is_some(),
        "no reply to ping {args:?} {to} from {ns} within 10 s\n{}",
        diagnostics(daemons)
    );
    let mut three = args.to_vec();
    three.extend(["-c", "3", "-i", "0.2", "-W", "1"]);
    let r = ping(ns, &three, to);
    assert!(
        r.success() && r.stdout.contains(" 0% packet loss"),
        "ping {args:?} {ns} -> {to} lost packets after the first reply:\n{}{}",
        r.stdout,
        r.stderr
    );
    r.stdout
}

/// Pings once from `ns` and expects no reply but the ICMP(v6) error
/// `error` from `from_addr`.
fn expect_icmp_error(ns: &str, args: &[&str], to: &str, from_addr: &str, error: &str) {
    let mut full = args.to_vec();
    full.extend(["-c", "1", "-W", "2"]);
    let want = format!("From {from_addr} icmp_seq=1 {error}");
    // The first try may meet an unresolved neighbour on the far side.
    let mut last = None;
    for _ in 0..3 {
        let r = ping(ns, &full, to);
        if !r.success() && r.stdout.contains(&want) {
            return;
        }
        last = Some(r);
    }
    let r = last.unwrap();
    panic!(
        "ping {full:?} {to} from {ns} should fail with \"{want}\", got ({}):\n{}{}",
        r.status, r.stdout, r.stderr
    );
}

/// The gateways that answer a packet from node a's pod to node b's pods
/// when its TTL (hop limit) runs out: the local switch at TTL 1, the far
/// one (through the tunnel back) at TTL 2.
const FAR4: [&str; 2] = ["10.244.1.1", "10.244.2.1"];
const FAR6: [&str; 2] = ["fd00:10:244:1::1", "fd00:10:244:2::1"];

/// [`expect_icmp_error`] with TTL (hop limit) 1, then 2, from `gws[0]`,
/// then `gws[1]`; `args` comes first (such as `-6`).
fn expect_ttl_errors(ns: &str, args: &[&str], to: &str, gws: [&str; 2], error: &str) {
    for (ttl, gw) in ["1", "2"].into_iter().zip(gws) {
        let mut full = args.to_vec();
        full.extend(["-t", ttl]);
        expect_icmp_error(ns, &full, to, gw, error);
    }
}

/// The drop counter `reason` of port `port`.
fn drops(d: &Daemon, port: &str, reason: &str) -> u64 {
    let s = d.port_stats(port);
    *s.drops
        .get(reason)
        .unwrap_or_else(|| panic!("no drop reason {reason} in stats of {port}: {s:#?}"))
}

/// TCP from `client_ns` to `addr:port` (a server started in `server_ns`,
/// IPv4 or IPv6): the client sends `bytes` bytes and half-closes, the
/// server reads all of it and sends it back, the client checks every byte.
/// Returns the client address the server saw. Both directions carry full
/// segments, so a path MTU below the pods' must be found on the way (ICMP
/// fragmentation needed / packet too big), or the transfer stalls.
fn tcp_echo(
    env: &mut TestEnv,
    client_ns: &str,
    server_ns: &str,
    addr: IpAddr,
    port: u16,
    bytes: usize,
) -> String {
    let out = env.dir.join(format!("tcp-echo-{server_ns}-{port}.out"));
    let _ = fs::remove_file(&out);
    let family = if addr.is_ipv6() {
        "AF_INET6"
    } else {
        "AF_INET"
    };
    let server_py = format!(
        "import socket\n\
         s = socket.socket(socket.{family})\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{addr}', {port}))\n\
         s.listen(1)\n\
         s.settimeout(30)\n\
         c, a = s.accept()\n\
         c.settimeout(20)\n\
         data = bytearray()\n\
         while True:\n\
         \x20   d = c.recv(65536)\n\
         \x20   if not d: break\n\
         \x20   data += d\n\
         c.sendall(data)\n\
         c.close()\n\
         open('{}', 'w').write(a[0] + '\\n')\n",
        out.display()
    );
    env.spawn_background(
        Command::new("ip").args(["netns", "exec", server_ns, "python3", "-c", &server_py]),
    );
    let listening = wait_for(Duration::from_secs(10), || {
        tcp_listening(server_ns, port).then_some(())
    });
    assert!(
        listening.is_some(),
        "TCP server in {server_ns} did not start"
    );
    let client_py = format!(
        "import socket\n\
         c = socket.create_connection(('{addr}', {port}), timeout=20)\n\
         msg = bytes((i * 7 + i // 251) & 0xff for i in range({bytes}))\n\
         c.sendall(msg)\n\
         c.shutdown(socket.SHUT_WR)\n\
         got = bytearray()\n\
         while True:\n\
         \x20   d = c.recv(65536)\n\
         \x20   if not d: break\n\
         \x20   got += d\n\
         assert got == msg, 'echo differs: %d of %d bytes' % (len(got), len(msg))\n\
         print('ok')\n"
    );
    let started = Instant::now();
    let r = run_cmd(Command::new("timeout").args([
        "60", "ip", "netns", "exec", client_ns, "python3", "-c", &client_py,
    ]));
    assert!(
        r.success() && r.stdout.trim() == "ok",
        "TCP echo of {bytes} bytes {client_ns} -> [{addr}]:{port} (server in {server_ns}) failed \
         after {:?} ({}): {}{}",
        started.elapsed(),
        r.status,
        r.stdout,
        r.stderr
    );
    eprintln!(
        "TCP echo of {bytes} bytes {client_ns} -> [{addr}]:{port}: {:?}",
        started.elapsed()
    );
    let seen = wait_for(Duration::from_secs(10), || {
        fs::read_to_string(&out).ok().filter(|s| s.ends_with('\n'))
    });
    seen.unwrap_or_else(|| panic!("TCP server in {server_ns} did not report its client"))
        .trim()
        .to_string()
}

/// `tcpdump -w` on an interface of a namespace, stopped on drop.
struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    /// Starts capturing on `ns`/`dev` into `file` and waits until tcpdump
    /// listens.
    fn start(ns: &str, dev: &str, file: PathBuf) -> Capture {
        let _ = fs::remove_file(&file);
        let err = file.with_extension("err");
        let child = Command::new("ip")
            .args([
                "netns", "exec", ns, "tcpdump", "-i", dev, "-nn", "-U", "-s", "128",
            ])
            .arg("-w")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tcpdump in {ns}: {e}"));
        let cap = Capture { child, file };
        let ready = wait_for(Duration::from_secs(10), || {
            fs::read_to_string(&err)
                .ok()
                .filter(|s| s.contains("listening on"))
        });
        assert!(ready.is_some(), "tcpdump on {ns}/{dev} did not start");
        cap
    }

    /// Stops tcpdump (its file is written packet by packet).
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// How many captured packets match the pcap `filter`.
    fn count(&self, filter: &str) -> u64 {
        let r = run_cmd(
            Command::new("tcpdump")
                .arg("-r")
                .arg(&self.file)
                .args(["-nn", "--count", filter]),
        );
        assert!(r.success(), "tcpdump -r {filter:?}: {}", r.stderr);
        r.stdout
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("tcpdump --count printed {:?}", r.stdout))
    }

    /// The packets that match `filter`, decoded.
    fn show(&self, filter: &str) -> String {
        let r = run_cmd(
            Command::new("tcpdump")
                .arg("-r")
                .arg(&self.file)
                .args(["-nn", "-c", "20", filter]),
        );
        r.stdout
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The VXLAN lab of the module documentation.
struct VxlanLab {
    na: Node,
    nb: Node,
    router: Node,
    pa: Pod,
    pb: Pod,
    pt: Pod,
}

/// Gives a node's switch its router addresses, its uplink, the underlay
/// route to the other node's subnet and the VXLAN routes to its pods.
fn configure_vxlan_node(d: &Daemon, n: u8, peer: u8, underlay: &str, gw: &str, vtep: &str) {
    d.ctl_ok(&["addr", "add", &format!("10.244.{n}.1/24")]);
    d.ctl_ok(&["addr", "add", &format!("fd00:10:244:{n}::1/64")]);
    d.ctl_ok(&["port", "add", "up0", "--uplink"]);
    d.wait_ports_up(&["up0"]);
    d.ctl_ok(&["route", "add", underlay, "via", gw]);
    for prefix in [
        format!("10.244.{peer}.0/24"),
        format!("fd00:10:244:{peer}::/64"),
    ] {
        d.ctl_ok(&[
            "route", "add", &prefix, "via", vtep, "--encap", "vxlan", "--vni", "42",
        ]);
    }
}

fn vxlan_lab(env: &mut TestEnv) -> VxlanLab {
    let cores = node_cores();
    let na = env.add_node("na", "192.168.50.1/24", NodeLink::Alone);
    let router = env.add_node("r", "192.168.50.254/24", NodeLink::Wire(&na));
    let nb = env.add_node("nb", "192.168.60.2/24", NodeLink::Alone);
    // Node b's loose wire end (TX checksum offload already off) becomes the
    // router's second interface.
    ip_ok(&[
        "-n",
        &nb.name,
        "link",
        "set",
        "up0-wire",
        "netns",
        &router.name,
    ]);
    ip_ok(&["-n", &router.name, "link", "set", "up0-wire", "name", "up1"]);
    ip_ok(&[
        "-n",
        &router.name,
        "addr",
        "add",
        "192.168.60.254/24",
        "dev",
        "up1",
    ]);
    ip_ok(&["-n", &router.name, "link", "set", "up1", "up"]);
    let r = netns_exec(&router.name, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    assert!(r.success(), "ip_forward in the router: {}", r.stderr);
    ip_ok(&[
        "-n",
        &na.name,
        "route",
        "add",
        "default",
        "via",
        "192.168.50.254",
    ]);
    ip_ok(&[
        "-n",
        &nb.name,
        "route",
        "add",
        "default",
        "via",
        "192.168.60.254",
    ]);

    env.start_node_daemon(&na, &cores[0]);
    env.start_node_daemon(&nb, &cores[1]);
    configure_vxlan_node(
        env.node_daemon(&na.name),
        1,
        2,
        "192.168.60.0/24",
        "192.168.50.254",
        "192.168.60.2",
    );
    configure_vxlan_node(
        env.node_daemon(&nb.name),
        2,
        1,
        "192.168.50.0/24",
        "192.168.60.254",
        "192.168.50.1",
    );
    let pod = |suffix, attach, n: u8, host: u8, node: &Node| {
        PodSpec::new(suffix, attach, &format!("10.244.{n}.{host}/24"))
            .gw(&format!("10.244.{n}.1"))
            .node(node)
    };
    let pa = env.add_pod_with(pod("pa", Attach::Afxdp, 1, 5, &na));
    let pb = env.add_pod_with(pod("pb", Attach::Afxdp, 2, 5, &nb));
    let pt = env.add_pod_with(pod("pt", Attach::Tap, 2, 6, &nb));
    add_ipv6(&pa, "fd00:10:244:1::5/64", Some("fd00:10:244:1::1"));
    add_ipv6(&pb, "fd00:10:244:2::5/64", Some("fd00:10:244:2::1"));
    add_ipv6(&pt, "fd00:10:244:2::6/64", Some("fd00:10:244:2::1"));
    VxlanLab {
        na,
        nb,
        router,
        pa,
        pb,
        pt,
    }
}

#[test]
fn vxlan_across_a_routed_underlay_carries_ipv4_and_ipv6() {
    let Some(mut env) = TestEnv::new("vxlan_across_a_routed_underlay_carries_ipv4_and_ipv6") else {
        return;
    };
    let started = Instant::now();
    let VxlanLab {
        na,
        nb,
        router,
        pa,
        pb,
        pt,
    } = vxlan_lab(&mut env);

    // `route list` shows the tunnel routes, and the underlay route.
    for (node, prefix, vtep) in [
        (&na, "10.244.2.0/24", "192.168.60.2"),
        (&na, "fd00:10:244:2::/64", "192.168.60.2"),
        (&nb, "10.244.1.0/24", "192.168.50.1"),
        (&nb, "fd00:10:244:1::/64", "192.168.50.1"),
    ] {
        let d = env.node_daemon(&node.name);
        let routes = d.ctl_value(&["route", "list"]);
        let r = routes
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["prefix"] == prefix)
            .unwrap_or_else(|| panic!("no route {prefix} on {}: {routes:#}", node.name));
        assert_eq!(r["via"], vtep, "{r:#}");
        assert_eq!(r["origin"], "static", "{r:#}");
        assert_eq!(
            r["encap"],
            serde_json::json!({"type": "vxlan", "vni": 42}),
            "{r:#}"
        );
        let text = d.ctl_ok(&["route", "list"]).stdout;
        let line = text
            .lines()
            .find(|l| l.starts_with(prefix) || l.contains(&format!("{prefix} ")))
            .unwrap_or_else(|| panic!("no line for {prefix} in:\n{text}"));
        assert!(line.contains("vxlan vni 42"), "{line}");
    }

    // The underlay works for the nodes' kernels, through the router.
    ping_ok(&na.name, &[], "192.168.60.2", &[]);

    // From here on the router must see nothing but VXLAN between the nodes.
    let mut caps = [
        Capture::start(&router.name, "up0", env.dir.join("r-up0.pcap")),
        Capture::start(&router.name, "up1", env.dir.join("r-up1.pcap")),
    ];

    let d_a = env.node_daemon(&na.name);
    let d_b = env.node_daemon(&nb.name);
    let both = [d_a, d_b];
    // Two routers on the way (the underlay router does not count): the TTL
    // and the hop limit drop by two.
    for (from, to) in [
        (&pa, "10.244.2.5"),
        (&pb, "10.244.1.5"),
        (&pt, "10.244.1.5"),
    ] {
        let out = ping_ok(&from.name, &[], to, &both);
        assert!(out.contains("ttl=62"), "{} -> {to}:\n{out}", from.name);
    }
    for (from, to) in [
        (&pa, "fd00:10:244:2::5"),
        (&pb, "fd00:10:244:1::5"),
        (&pa, "fd00:10:244:2::6"),
    ] {
        let out = ping_ok(&from.name, &["-6"], to, &both);
        assert!(out.contains("ttl=62"), "{} -> {to}:\n{out}", from.name);
    }
    // The far switch answers for its router addresses through the tunnel.
    ping_ok(&pb.name, &[], "10.244.1.1", &both);
    ping_ok(&pb.name, &["-6"], "fd00:10:244:1::1", &both);

    // ICMP errors: the local switch for TTL 1, the far one (through the
    // tunnel back) for TTL 2.
    expect_ttl_errors(&pa.name, &[], "10.244.2.5", FAR4, "Time to live exceeded");
    expect_ttl_errors(
        &pa.name,
        &["-6"],
        "fd00:10:244:2::5",
        FAR6,
        "Time exceeded: Hop limit",
    );

    // The inner MTU is the uplink's (1500) less 50: a 1450-byte packet
    // fits, one byte more gets fragmentation needed / packet too big.
    ping_ok(&pa.name, &["-M", "do", "-s", "1422"], "10.244.2.5", &both);
    ping_ok(
        &pa.name,
        &["-6", "-M", "do", "-s", "1402"],
        "fd00:10:244:2::5",
        &both,
    );
    expect_icmp_error(
        &pa.name,
        &["-M", "do", "-s", "1423"],
        "10.244.2.5",
        "10.244.1.1",
        "Frag needed and DF set (mtu = 1450)",
    );
    expect_icmp_error(
        &pa.name,
        &["-6", "-M", "do", "-s", "1403"],
        "fd00:10:244:2::5",
        "fd00:10:244:1::1",
        "Packet too big: mtu=1450",
    );

    // TCP, small: the server sees the client pod's own address.
    let (pa_ip, pb_ip, pt_ip) = (pa.ip, pb.ip, pt.ip);
    assert_eq!(
        env.tcp_exchange(&pa.name, &pb.name, pb_ip, 7401),
        pa_ip.to_string()
    );
    assert_eq!(
        env.tcp_exchange(&pt.name, &pa.name, pa_ip, 7402),
        pt_ip.to_string()
    );
    let v6 = |s: &str| -> IpAddr { s.parse().unwrap() };
    assert_eq!(
        tcp_echo(
            &mut env,
            &pa.name,
            &pb.name,
            v6("fd00:10:244:2::5"),
            7403,
            1500
        ),
        "fd00:10:244:1::5"
    );
    assert_eq!(
        tcp_echo(
            &mut env,
            &pb.name,
            &pa.name,
            v6("fd00:10:244:1::5"),
            7404,
            1500
        ),
        "fd00:10:244:2::5"
    );

    // TCP, large: full-size segments both ways. The pods forget the path
    // MTU the pings taught them, so TCP has to learn it from the switches.
    for p in [&pa, &pb] {
        ip_ok(&["-n", &p.name, "route", "flush", "cache"]);
        ip_ok(&["-n", &p.name, "-6", "route", "flush", "cache"]);
    }
    let d_a = env.node_daemon(&na.name);
    let d_b = env.node_daemon(&nb.name);
    let frag_before = (
        drops(d_a, &pa.name, "frag_needed"),
        drops(d_b, &pb.name, "frag_needed"),
    );
    const BIG: usize = 1 << 20;
    assert_eq!(
        tcp_echo(&mut env, &pa.name, &pb.name, IpAddr::V4(pb_ip), 7405, BIG),
        pa_ip.to_string()
    );
    assert_eq!(
        tcp_echo(
            &mut env,
            &pa.name,
            &pb.name,
            v6("fd00:10:244:2::5"),
            7406,
            BIG
        ),
        "fd00:10:244:1::5"
    );
    // The TAP pod as well (its own path MTU, learned the same way).
    assert_eq!(
        tcp_echo(
            &mut env,
            &pt.name,
            &pa.name,
            v6("fd00:10:244:1::5"),
            7407,
            BIG
        ),
        "fd00:10:244:2::6"
    );
    assert_eq!(
        tcp_echo(&mut env, &pt.name, &pa.name, IpAddr::V4(pa_ip), 7408, BIG),
        pt_ip.to_string()
    );
    let d_a = env.node_daemon(&na.name);
    let d_b = env.node_daemon(&nb.name);
    let frag_after = (
        drops(d_a, &pa.name, "frag_needed"),
        drops(d_b, &pb.name, "frag_needed"),
    );
    assert!(
        frag_after.0 > frag_before.0 && frag_after.1 > frag_before.1,
        "no fragmentation needed / packet too big sent to the pods during the transfers: \
         {frag_before:?} -> {frag_after:?}"
    );
    for (p, to) in [
        (&pa, "10.244.2.5"),
        (&pa, "fd00:10:244:2::5"),
        (&pb, "10.244.1.5"),
        (&pb, "fd00:10:244:1::5"),
    ] {
        let r = ip(&["-n", &p.name, "route", "get", to]);
        assert!(
            r.stdout.contains("mtu 1450"),
            "{} did not learn the path MTU to {to}: {}{}",
            p.name,
            r.stdout,
            r.stderr
        );
    }

    // The underlay router saw the pods' traffic only inside VXLAN (UDP
    // 4789) between the two nodes' addresses, in both directions.
    for cap in &mut caps {
        cap.stop();
    }
    let tunnel = "udp port 4789 and ((src host 192.168.50.1 and dst host 192.168.60.2) or \
                  (src host 192.168.60.2 and dst host 192.168.50.1))";
    // The kernels' own link-local IPv6 chatter (router solicitations, MLD)
    // and ARP are not the pods'.
    let other = format!(
        "not arp and not ({tunnel}) and not (ip6 and (ip6 multicast or src net fe80::/10))"
    );
    for cap in &caps {
        let to_b =
            cap.count("udp dst port 4789 and src host 192.168.50.1 and dst host 192.168.60.2");
        let to_a =
            cap.count("udp dst port 4789 and src host 192.168.60.2 and dst host 192.168.50.1");
        assert!(
            to_b > 100 && to_a > 100,
            "{}: too few VXLAN packets ({to_b} to node b, {to_a} to node a)",
            cap.file.display()
        );
        let n = cap.count(&other);
        assert_eq!(
            n,
            0,
            "{}: the underlay carried other traffic:\n{}",
            cap.file.display(),
            cap.show(&other)
        );
    }
    eprintln!("vxlan test: {:?}", started.elapsed());
}

#[test]
fn ipv6_host_gw_across_two_wired_nodes() {
    let Some(mut env) = TestEnv::new("ipv6_host_gw_across_two_wired_nodes") else {
        return;
    };
    let started = Instant::now();
    let cores = node_cores();
    let na = env.add_node("na", "192.168.50.1/24", NodeLink::Alone);
    let nb = env.add_node("nb", "192.168.50.2/24", NodeLink::Wire(&na));
    ip_ok(&[
        "-n",
        &na.name,
        "addr",
        "add",
        "fd00:50::1/64",
        "dev",
        "up0",
        "nodad",
    ]);
    ip_ok(&[
        "-n",
        &nb.name,
        "addr",
        "add",
        "fd00:50::2/64",
        "dev",
        "up0",
        "nodad",
    ]);
    env.start_node_daemon(&na, &cores[0]);
    env.start_node_daemon(&nb, &cores[1]);
    for (node, n, peer, via) in [(&na, 1, 2, "fd00:50::2"), (&nb, 2, 1, "fd00:50::1")] {
        let d = env.node_daemon(&node.name);
        d.ctl_ok(&["addr", "add", &format!("fd00:10:244:{n}::1/64")]);
        d.ctl_ok(&["port", "add", "up0", "--uplink"]);
        d.wait_ports_up(&["up0"]);
        d.ctl_ok(&[
            "route",
            "add",
            &format!("fd00:10:244:{peer}::/64"),
            "via",
            via,
        ]);
    }
    // IPv6 only: the pods' IPv4 addresses are never routed.
    let pa = env.add_pod_with(PodSpec::new("pa", Attach::Afxdp, "10.244.1.5/24").node(&na));
    let pt = env.add_pod_with(PodSpec::new("pt", Attach::Tap, "10.244.1.6/24").node(&na));
    let pb = env.add_pod_with(PodSpec::new("pb", Attach::Afxdp, "10.244.2.5/24").node(&nb));
    add_ipv6(&pa, "fd00:10:244:1::5/64", Some("fd00:10:244:1::1"));
    add_ipv6(&pt, "fd00:10:244:1::6/64", Some("fd00:10:244:1::1"));
    add_ipv6(&pb, "fd00:10:244:2::5/64", Some("fd00:10:244:2::1"));
    let d_a = env.node_daemon(&na.name);
    let d_b = env.node_daemon(&nb.name);
    let both = [d_a, d_b];

    // The uplink's IPv6 subnet is a `port` route.
    let routes = d_a.ctl_value(&["route", "list"]);
    let up = routes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["prefix"] == "fd00:50::/64")
        .unwrap_or_else(|| panic!("no route fd00:50::/64 on node a: {routes:#}"));
    assert_eq!(up["origin"], "port", "{up:#}");

    for (from, to) in [
        (&pa, "fd00:10:244:2::5"),
        (&pb, "fd00:10:244:1::5"),
        (&pt, "fd00:10:244:2::5"),
        (&pb, "fd00:10:244:1::6"),
    ] {
        let out = ping_ok(&from.name, &["-6"], to, &both);
        assert!(out.contains("ttl=62"), "{} -> {to}:\n{out}", from.name);
    }
    ping_ok(&pb.name, &["-6"], "fd00:10:244:1::1", &both);

    // The switches found each other's node by neighbour discovery on the
    // uplink, and their pods on the bridge.
    let neigh = d_a.ctl_value(&["neigh", "list"]);
    let find = |ip: &str| {
        neigh
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["ip"] == ip)
            .cloned()
            .unwrap_or_else(|| panic!("no neighbour {ip} on node a: {neigh:#}"))
    };
    let peer = find("fd00:50::2");
    assert_eq!(peer["port"], "up0", "{peer:#}");
    assert_eq!(peer["state"], "reachable", "{peer:#}");
    let up0_b = ip(&["-n", &nb.name, "-br", "link", "show", "dev", "up0"]);
    assert!(
        up0_b.stdout.contains(peer["mac"].as_str().unwrap_or("?")),
        "neighbour fd00:50::2 has MAC {} but node b's up0 is: {}",
        peer["mac"],
        up0_b.stdout
    );
    for p in [&pa, &pt] {
        let want = if p.name == pa.name {
            "fd00:10:244:1::5"
        } else {
            "fd00:10:244:1::6"
        };
        let n = find(want);
        assert_eq!(n["port"], p.name.as_str(), "{n:#}");
        assert_eq!(n["mac"], p.mac.to_string(), "{n:#}");
    }

    // TCP over IPv6 across the nodes: the source survives.
    assert_eq!(
        tcp_echo(
            &mut env,
            &pa.name,
            &pb.name,
            "fd00:10:244:2::5".parse().unwrap(),
            7501,
            1500
        ),
        "fd00:10:244:1::5"
    );
    assert_eq!(
        tcp_echo(
            &mut env,
            &pb.name,
            &pt.name,
            "fd00:10:244:1::6".parse().unwrap(),
            7502,
            200_000
        ),
        "fd00:10:244:2::5"
    );

    // ICMPv6 errors: hop limit 1 expires at the local switch, 2 at the far one.
    expect_ttl_errors(
        &pa.name,
        &["-6"],
        "fd00:10:244:2::5",
        FAR6,
        "Time exceeded: Hop limit",
    );
    expect_icmp_error(
        &pa.name,
        &["-6"],
        "fd00:99::1",
        "fd00:10:244:1::1",
        "Destination unreachable: No route",
    );

    // The node kernels still talk IPv6 over the same uplinks.
    ping_ok(&na.name, &["-6"], "fd00:50::2", &[]);
    eprintln!("ipv6 host-gw test: {:?}", started.elapsed());
}

#[test]
fn ipv6_routing_on_one_node() {
    let Some(mut env) = TestEnv::with_daemon("ipv6_routing_on_one_node") else {
        return;
    };
    let started = Instant::now();
    let d = env.daemon();
    d.ctl_ok(&["addr", "add", "fd00:10:244:1::1/64"]);
    d.ctl_ok(&["addr", "add", "fd00:10:244:2::1/64"]);
    let a = env.add_pod_with(PodSpec::new("a", Attach::Afxdp, "10.77.1.11/24"));
    let t = env.add_pod_with(PodSpec::new("t", Attach::Tap, "10.77.1.12/24"));
    let b = env.add_pod_with(PodSpec::new("b", Attach::Afxdp, "10.77.2.11/24"));
    let addrs = [
        (&a, "fd00:10:244:1::11", "fd00:10:244:1::1"),
        (&t, "fd00:10:244:1::12", "fd00:10:244:1::1"),
        (&b, "fd00:10:244:2::11", "fd00:10:244:2::1"),
    ];
    for (p, addr, gw) in addrs {
        add_ipv6(p, &format!("{addr}/64"), Some(gw));
    }
    let d = env.daemon();
    let one = [d];

    // Every pod reaches its gateway, and the other subnet's.
    for (p, _, gw) in addrs {
        let out = ping_ok(&p.name, &["-6"], gw, &one);
        assert!(out.contains("ttl=64"), "{} -> {gw}:\n{out}", p.name);
    }
    ping_ok(&a.name, &["-6"], "fd00:10:244:2::1", &one);
    // One subnet: switched, hop limit untouched; across: one routed hop.
    let out = ping_ok(&a.name, &["-6"], "fd00:10:244:1::12", &one);
    assert!(
        out.contains("ttl=64"),
        "switched ping changed the hop limit:\n{out}"
    );
    for (from, to) in [
        (&a, "fd00:10:244:2::11"),
        (&b, "fd00:10:244:1::11"),
        (&t, "fd00:10:244:2::11"),
        (&b, "fd00:10:244:1::12"),
    ] {
        let out = ping_ok(&from.name, &["-6"], to, &one);
        assert!(
            out.contains("ttl=63"),
            "{} -> {to} not routed once:\n{out}",
            from.name
        );
    }

    // The pods are IPv6 neighbours of the router, on their ports.
    let neigh = d.ctl_value(&["neigh", "list"]);
    for (p, addr, _) in addrs {
        let n = neigh
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["ip"] == addr)
            .unwrap_or_else(|| panic!("no neighbour {addr}: {neigh:#}"));
        assert_eq!(n["port"], p.name.as_str(), "{n:#}");
        assert_eq!(n["mac"], p.mac.to_string(), "{n:#}");
        assert_eq!(n["state"], "reachable", "{n:#}");
    }
    let text = d.ctl_ok(&["neigh", "list"]).stdout;
    for (_, addr, _) in addrs {
        assert!(text.contains(addr), "`neigh list` lacks {addr}:\n{text}");
    }

    // ICMPv6 errors from the gateway address of the sender's subnet.
    expect_icmp_error(
        &a.name,
        &["-6", "-t", "1"],
        "fd00:10:244:2::11",
        "fd00:10:244:1::1",
        "Time exceeded: Hop limit",
    );
    expect_icmp_error(
        &b.name,
        &["-6"],
        "fd00:99::1",
        "fd00:10:244:2::1",
        "Destination unreachable: No route",
    );

    // TCP over IPv6 through the router, the source preserved.
    assert_eq!(
        tcp_echo(
            &mut env,
            &a.name,
            &b.name,
            "fd00:10:244:2::11".parse().unwrap(),
            7601,
            100_000
        ),
        "fd00:10:244:1::11"
    );
    assert_eq!(
        tcp_echo(
            &mut env,
            &b.name,
            &t.name,
            "fd00:10:244:1::12".parse().unwrap(),
            7602,
            100_000
        ),
        "fd00:10:244:2::11"
    );
    eprintln!("ipv6 one-node test: {:?}", started.elapsed());
}
