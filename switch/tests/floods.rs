//! Floods from one pod (`vswitch-bench flood`) while two others keep a TCP
//! transfer through a Service VIP and a ping going through the switch: the
//! switch keeps forwarding for them, its tables stay within their limits,
//! the flood's frames are counted where they are dropped, and its memory
//! stays bounded. The measured figures (losses, throughput beside a quiet
//! baseline) come from `scripts/flood.sh`; this test holds the properties.
//!
//! | pod | attach | address     | port security | role                     |
//! |-----|--------|-------------|---------------|--------------------------|
//! | x   | AF_XDP | 10.244.1.66 | no            | the flooder              |
//! | a   | AF_XDP | 10.244.1.11 | yes           | iperf3 client, pinger    |
//! | b   | TAP    | 10.244.1.12 | yes           | iperf3 server, endpoint  |
//!
//! Needs root and `vswitch-bench` next to vswitchd; see `common/mod.rs`.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{
    Attach, DaemonOpts, Pod, PodSpec, TestEnv, netns_exec, run_cmd, tcp_listening, wait_for,
};
use ctl::{CtStats, NeighInfo, PortStats};

const MAC_LIMIT: u64 = 256;
const CT_MAX: u64 = 4096;
/// The Service the TCP transfer goes through (endpoint b:5201).
const IPERF_VIP: &str = "10.96.0.11";
/// The Service the SYN flood goes to (endpoint b:80, `nc` listening: b
/// answers every SYN with a SYN-ACK).
const SYN_VIP: &str = "10.96.0.10";
const SECS: u32 = 3;

struct Lab {
    env: TestEnv,
    x: Pod,
    a: Pod,
    b: Pod,
}

fn lab() -> Option<Lab> {
    let mut env = TestEnv::new("floods")?;
    env.start_daemon_with(DaemonOpts {
        extra: vec![
            "--mac-limit".into(),
            MAC_LIMIT.to_string(),
            "--ct-max".into(),
            CT_MAX.to_string(),
        ],
        ..DaemonOpts::default()
    });
    let d = env.daemon();
    d.ctl_ok(&["addr", "add", "10.244.1.1/24"]);
    d.ctl_ok(&["addr", "add", "fd00:1::1/64"]);
    let x = env.add_pod_with(PodSpec::new("x", Attach::Afxdp, "10.244.1.66/24").gw("10.244.1.1"));
    let a = env.add_pod_with(
        PodSpec::new("a", Attach::Afxdp, "10.244.1.11/24")
            .gw("10.244.1.1")
            .port_security(),
    );
    let b = env.add_pod_with(
        PodSpec::new("b", Attach::Tap, "10.244.1.12/24")
            .gw("10.244.1.1")
            .port_security(),
    );
    let r = netns_exec(
        &x.name,
        &["ip", "addr", "add", "fd00:1::66/64", "dev", "eth0", "nodad"],
    );
    assert!(r.success(), "{}", r.stderr);
    let d = env.daemon();
    d.ctl_ok(&[
        "service",
        "add",
        &format!("{SYN_VIP}:80/tcp"),
        "--backend",
        "10.244.1.12:80",
    ]);
    d.ctl_ok(&[
        "service",
        "add",
        &format!("{IPERF_VIP}:5201/tcp"),
        "--backend",
        "10.244.1.12:5201",
    ]);
    env.ping_all(&[&x, &a, &b]);
    let b_ns = b.name.clone();
    env.spawn_background(Command::new("ip").args(["netns", "exec", &b_ns, "iperf3", "-s"]));
    env.spawn_background(Command::new("ip").args(["netns", "exec", &b_ns, "nc", "-lk", "80"]));
    for port in [5201, 80] {
        let up = wait_for(Duration::from_secs(5), || {
            tcp_listening(&b_ns, port).then_some(())
        });
        assert!(up.is_some(), "nothing listens on {b_ns}:{port}");
    }
    Some(Lab { env, x, a, b })
}

/// What the other pods saw during one flood.
#[derive(Debug)]
struct Seen {
    /// Bytes the TCP transfer through the VIP moved.
    tcp_bytes: u64,
    ping_sent: u64,
    ping_received: u64,
    /// The flooder's port, before and after.
    x_before: PortStats,
    x_after: PortStats,
    sent: u64,
}

impl Seen {
    fn drops(&self, reason: &str) -> u64 {
        self.x_after.drops.get(reason).copied().unwrap_or(0)
            - self.x_before.drops.get(reason).copied().unwrap_or(0)
    }

    fn x_tx(&self) -> u64 {
        self.x_after.tx_packets - self.x_before.tx_packets
    }
}

fn spawn_in(ns: &str, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn bench_bin() -> std::path::PathBuf {
    let p = common::vswitchd_bin().with_file_name("vswitch-bench");
    assert!(
        p.exists(),
        "vswitch-bench not found at {}: cargo build --release --workspace --bins",
        p.display()
    );
    p
}

/// Floods from x with `args` for [`SECS`] seconds while a sends TCP to
/// b through the VIP and pings b every 20 ms; checks that the daemon
/// lived and that the other pods kept going.
fn flood(lab: &mut Lab, kind: &str, args: &[&str]) -> Seen {
    let d = lab.env.daemon();
    let x_before = d.port_stats(&lab.x.name);
    let secs = SECS.to_string();
    // A second longer than the flood, which takes a moment to start
    // (building its frames, resolving a MAC): the transfer spans it.
    let iperf_secs = (SECS + 1).to_string();
    let iperf = spawn_in(
        &lab.a.name,
        &[
            "iperf3",
            "-c",
            IPERF_VIP,
            "-t",
            &iperf_secs,
            "-J",
            "--connect-timeout",
            "3000",
        ],
    );
    let count = (SECS * 50).to_string();
    let ping = spawn_in(
        &lab.a.name,
        &[
            "ping",
            "-q",
            "-i",
            "0.02",
            "-c",
            &count,
            "-W",
            "1",
            &lab.b.ip.to_string(),
        ],
    );
    let out = lab.env.dir.join(format!("flood-{kind}.json"));
    let r = run_cmd(
        Command::new(bench_bin())
            .args([
                "flood",
                "--netns",
                &lab.x.name,
                "--iface",
                "eth0",
                "--kind",
                kind,
            ])
            .args([
                "--driver",
                "packet",
                "--duration",
                &secs,
                "--seed",
                "7",
                "--json",
            ])
            .arg(&out)
            .args(args),
    );
    assert!(
        r.success(),
        "the {kind} flood failed: {}{}",
        r.stdout,
        r.stderr
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let sent = report["sent"].as_u64().unwrap();
    let iperf = iperf.wait_with_output().unwrap();
    let ping = ping.wait_with_output().unwrap();
    assert!(
        lab.env.daemon_mut().is_running(),
        "vswitchd died in the {kind} flood"
    );
    let d = lab.env.daemon();
    let x_after = d.port_stats(&lab.x.name);
    let v: serde_json::Value = serde_json::from_slice(&iperf.stdout).unwrap_or_else(|e| {
        panic!(
            "iperf3 during the {kind} flood printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&iperf.stdout),
            String::from_utf8_lossy(&iperf.stderr)
        )
    });
    assert!(
        v.get("error").is_none(),
        "the TCP transfer through the VIP failed during the {kind} flood: {}",
        v["error"]
    );
    let tcp_bytes = v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    let text = String::from_utf8_lossy(&ping.stdout);
    let nums: Vec<u64> = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .map(|l| {
            l.split(|c: char| !c.is_ascii_digit())
                .filter_map(|w| w.parse().ok())
                .take(2)
                .collect()
        })
        .unwrap_or_default();
    let seen = Seen {
        tcp_bytes,
        ping_sent: nums.first().copied().unwrap_or(0),
        ping_received: nums.get(1).copied().unwrap_or(0),
        x_before,
        x_after,
        sent,
    };
    eprintln!(
        "{kind} flood: {} frames sent; TCP through the VIP {} MB; ping {}/{}; flooder's drops {:?}",
        seen.sent,
        seen.tcp_bytes / 1_000_000,
        seen.ping_received,
        seen.ping_sent,
        seen.x_after
            .drops
            .iter()
            .filter(|(_, v)| **v > 0)
            .collect::<Vec<_>>()
    );
    assert!(
        seen.sent > 10_000,
        "the {kind} flood sent only {}",
        seen.sent
    );
    assert!(
        seen.tcp_bytes > 0,
        "no TCP through the VIP during the {kind} flood"
    );
    // Loss from scheduling on a small machine is possible; a switch that
    // stops forwarding for others loses most.
    assert!(
        seen.ping_sent > 0 && seen.ping_received * 10 >= seen.ping_sent * 9,
        "the ping lost more than 10 % during the {kind} flood: {text}"
    );
    seen
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn the_switch_keeps_forwarding_for_others_through_floods() {
    let Some(mut lab) = lab() else {
        return;
    };
    let pid = lab.env.daemon().pid();
    let rss_before = rss_kib(pid);

    // Random source MACs: learned up to the port's limit, then dropped.
    let s = flood(&mut lab, "macs", &[]);
    let d = lab.env.daemon();
    let learned = d.fdb().iter().filter(|e| e.port == lab.x.name).count() as u64;
    assert_eq!(learned, MAC_LIMIT, "MACs learned on the flooder's port");
    assert!(s.drops("mac_limit") > s.sent / 2, "{s:#?}");

    // ARP for the router from every address of the subnet: answered; the
    // neighbour table holds at most the subnet, and never the addresses of
    // pods declared to the switch (a and b keep their MACs).
    let s = flood(
        &mut lab,
        "arp",
        &["--target", "10.244.1.1", "--sender-net", "10.244.1.0/24"],
    );
    assert!(
        s.x_tx() > 1000,
        "the router answered too few ARP requests: {s:#?}"
    );
    let d = lab.env.daemon();
    let neigh: Vec<NeighInfo> = d.ctl_json(&["neigh", "list"]);
    assert!(neigh.len() <= 254, "{} neighbours", neigh.len());
    for p in [&lab.a, &lab.b] {
        assert!(
            !neigh.iter().any(|n| n.ip == p.ip && n.port == lab.x.name),
            "the flood took over {}'s address: {neigh:#?}",
            p.name
        );
    }
    let r = netns_exec(&lab.a.name, &["nc", "-z", "-w", "2", SYN_VIP, "80"]);
    assert!(
        r.success(),
        "the Service lost its endpoint to the ARP flood: {}",
        r.stderr
    );

    // Neighbour solicitations for the router's IPv6 address: answered.
    let s = flood(&mut lab, "nd", &["--target", "fd00:1::1"]);
    assert!(
        s.x_tx() > 1000,
        "the router answered too few solicitations: {s:#?}"
    );

    // SYNs to a VIP from spoofed addresses off the pods' subnet: b answers
    // each, through the router, and no client ever confirms. Conntrack
    // stays within --ct-max, the transfer through the other VIP (an
    // established flow) goes on, and the table full of half-open flows
    // still takes a new connection (they are embryonic: evicted first).
    let s = flood(
        &mut lab,
        "syn",
        &[
            "--target",
            SYN_VIP,
            "--dst-port",
            "80",
            "--sender-net",
            "10.244.9.0/24",
        ],
    );
    let d = lab.env.daemon();
    let ct: CtStats = d.ctl_json(&["ct", "stats"]);
    assert!(ct.entries <= CT_MAX, "{ct:#?}");
    assert!(
        ct.created > CT_MAX,
        "the flood did not reach the table's limit: {ct:#?}"
    );
    assert!(
        ct.embryonic * 10 >= ct.entries * 9,
        "half-open flows not embryonic: {ct:#?}"
    );
    assert!(s.tcp_bytes > 1_000_000, "{s:#?}");
    let r = netns_exec(&lab.a.name, &["nc", "-z", "-w", "2", SYN_VIP, "80"]);
    assert!(
        r.success(),
        "a new connection to the VIP failed after the SYN flood ({}): {ct:#?}\n{:?}",
        r.stderr,
        d.port_stats(&lab.a.name).drops.get("conntrack_full")
    );

    // Garbage: what does not parse is dropped and counted (broadcast
    // frames that do, from the flooder's own MAC, are switched like any
    // other), never a crash; no frame of a worker's pool lost or reused.
    let totals: Vec<u64> = lab
        .env
        .daemon()
        .show()
        .workers
        .iter()
        .map(|w| w.frames.total)
        .collect();
    let s = flood(&mut lab, "garbage", &[]);
    for reason in ["malformed", "invalid_src_mac"] {
        assert!(
            s.drops(reason) > s.sent / 20,
            "garbage not counted as {reason}: {s:#?}"
        );
    }
    common::assert_frames_accounted(&lab.env, &totals);

    let rss_after = rss_kib(pid);
    eprintln!("vswitchd RSS: {rss_before} KiB before the floods, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + 64 * 1024,
        "vswitchd grew from {rss_before} KiB to {rss_after} KiB"
    );
    lab.env.ping_all(&[&lab.x, &lab.a, &lab.b]);
}
