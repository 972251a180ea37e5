//! Seeing inside the switch: `vswitchctl trace inject` (a dry run through
//! the configuration the workers use), `trace live` (real packets, stage by
//! stage) and `capture` (pcapng that tcpdump reads), on real pods, a real
//! Service and real traffic (ping, nc, iperf3).
//!
//! Needs root; see `common/mod.rs`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Attach, Daemon, PodSpec, TestEnv, netns_exec, run_cmd, tcp_listening, wait_for};
use ctl::{Client, CtEntry, CtStats, Reply, TraceReport, WatchKindSpec, WatchSpec, WatchTrace};

const GW: &str = "10.77.0.1";
const VIP: &str = "10.96.0.10";

/// The stages, in pipeline order, as every trace lists them.
const STAGES: [&str; 11] = [
    "parse", "security", "csum", "learn", "arp", "nd", "vxlan", "service", "routing", "forward",
    "output",
];

/// A switch with the router address and two pods behind it: `a` on
/// AF_XDP, `b` on a TAP, each with the router as gateway.
fn lab(name: &str) -> Option<(TestEnv, common::Pod, common::Pod)> {
    let mut env = TestEnv::with_daemon(name)?;
    env.daemon().ctl_ok(&["addr", "add", &format!("{GW}/24")]);
    let a = env.add_pod_with(PodSpec::new("a", Attach::Afxdp, "10.77.0.11/24").gw(GW));
    let b = env.add_pod_with(PodSpec::new("b", Attach::Tap, "10.77.0.12/24").gw(GW));
    env.ping(&a, &b);
    Some((env, a, b))
}

fn inject(d: &Daemon, port: &str, args: &[&str]) -> TraceReport {
    let mut full = vec!["trace", "inject", port];
    full.extend_from_slice(args);
    d.ctl_json(&full)
}

/// The step of `stage`.
fn step<'a>(r: &'a TraceReport, stage: &str) -> &'a ctl::TraceStep {
    r.steps
        .iter()
        .find(|s| s.stage == stage)
        .unwrap_or_else(|| panic!("no step {stage}: {r:#?}"))
}

fn ct_stats(d: &Daemon) -> CtStats {
    d.ctl_json(&["ct", "stats"])
}

#[test]
fn trace_inject_shows_each_stage_and_changes_nothing() {
    let Some((mut env, a, b)) = lab("trace_inject_shows_each_stage_and_changes_nothing") else {
        return;
    };
    let d = env.daemon();
    let svc = format!("{VIP}:80/tcp");
    d.ctl_ok(&[
        "service",
        "add",
        &svc,
        "--backend",
        "10.77.0.12:8080",
        "--backend",
        "10.77.0.12:8081",
    ]);
    let age = |d: &Daemon| {
        d.fdb()
            .into_iter()
            .find(|e| e.mac == a.mac)
            .and_then(|e| e.age_secs)
            .expect("a's MAC is learned")
    };
    // Once a has been quiet for 2 s (its stack's ARP probes come and go).
    let idle = wait_for(Duration::from_secs(20), || {
        let idle = age(d);
        (idle >= 2).then_some(idle)
    })
    .expect("a quiet for 2 s");
    let fdb_before = d.fdb();

    // A new connection to the VIP: Maglev picks an endpoint, the Service
    // stage translates, routing sends it to b. Nothing is tracked or sent.
    let r = inject(
        d,
        &a.name,
        &["tcp", "10.77.0.11:40000", "to", &format!("{VIP}:80"), "syn"],
    );
    let stages: Vec<&str> = r.steps.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(stages, STAGES, "{r:#?}");
    assert!(
        r.ingress
            .contains(&format!("IPv4 10.77.0.11:40000 > {VIP}:80 TCP [S]")),
        "{r:#?}"
    );
    assert!(
        r.ingress.starts_with(&a.mac.to_string()),
        "the pod's MAC by default: {r:#?}"
    );
    let nat = step(&r, "service")
        .frame
        .clone()
        .expect("the Service stage rewrote the packet");
    assert!(nat.contains("10.77.0.11:40000 > 10.77.0.12:808"), "{nat}");
    assert_eq!(r.verdict, format!("unicast {}", b.name), "{r:#?}");
    assert_eq!(r.sent.len(), 1, "{r:#?}");
    assert_eq!(r.sent[0].port, b.name);
    assert!(r.sent[0].frame.contains(", ttl 63,"), "routed: {r:#?}");
    assert!(
        r.notes.iter().any(|n| n.contains("a new connection")),
        "{r:#?}"
    );
    let ct = ct_stats(d);
    assert_eq!(
        (ct.entries, ct.created),
        (0, 0),
        "a dry run tracks nothing: {ct:?}"
    );
    assert_eq!(d.fdb().len(), fdb_before.len(), "nor learns");
    assert!(age(d) >= idle, "nor refreshes the MAC it came from");

    // A tracked connection keeps its endpoint: the trace shows the one
    // conntrack holds for the tuple.
    for port in ["8080", "8081"] {
        env.spawn_background(
            Command::new("ip").args(["netns", "exec", &b.name, "nc", "-lk", port]),
        );
    }
    for port in [8080, 8081] {
        assert!(
            wait_for(Duration::from_secs(10), || tcp_listening(&b.name, port)
                .then_some(()))
            .is_some()
        );
    }
    env.spawn_background(
        Command::new("ip").args(["netns", "exec", &a.name, "nc", "-d", VIP, "80"]),
    );
    let d = env.daemon();
    let flow: CtEntry = wait_for(Duration::from_secs(10), || {
        let l: Vec<CtEntry> = d.ctl_json(&["ct", "list"]);
        l.into_iter().find(|e| e.state == ctl::CtState::Established)
    })
    .expect("nc's connection is tracked");
    // Its endpoint stops taking new connections: a new flow would go to
    // the other one, the tracked flow stays.
    let kept = flow.reply_src.to_string();
    let other = if kept.ends_with(":8080") {
        "10.77.0.12:8081"
    } else {
        "10.77.0.12:8080"
    };
    d.ctl_ok(&["service", "backends", &svc, other, "--terminating", &kept]);
    let created = ct_stats(d).created;
    let client = flow.src.to_string();
    let r = inject(
        d,
        &a.name,
        &["tcp", &client, "to", &format!("{VIP}:80"), "ack"],
    );
    assert!(
        r.notes.iter().any(|n| n.contains("tracked already")),
        "{r:#?}"
    );
    let nat = step(&r, "service").frame.clone().unwrap();
    assert!(nat.contains(&format!("> {kept} ")), "{nat} vs {flow:?}");
    let r = inject(
        d,
        &a.name,
        &["tcp", "10.77.0.11:40001", "to", &format!("{VIP}:80")],
    );
    let nat = step(&r, "service").frame.clone().unwrap();
    assert!(nat.contains(&format!("> {other} ")), "a new flow: {nat}");
    assert_eq!(ct_stats(d).created, created, "nothing new tracked");

    // No route: the router answers with ICMP unreachable, back to a.
    let r = inject(
        d,
        &a.name,
        &["udp", "10.77.0.11:5000", "to", "192.0.2.1:53"],
    );
    assert_eq!(
        r.verdict,
        format!(
            "drop no_route (the switch answers the sender: unicast {})",
            a.name
        ),
        "{r:#?}"
    );
    assert!(r.sent[0].frame.contains("ICMP unreachable"), "{r:#?}");
    // An ARP request for the router, as raw bytes: answered by the switch.
    let m = a.mac.0;
    let hex = format!(
        "ffffffffffff{mac}08060001080006040001{mac}0a4d000b0000000000000a4d0001",
        mac = m.iter().map(|x| format!("{x:02x}")).collect::<String>()
    );
    let r = inject(d, &a.name, &["hex", &hex]);
    let arp = step(&r, "arp");
    assert_eq!(arp.verdict, format!("unicast {}", a.name), "{r:#?}");
    assert!(
        arp.frame.as_ref().is_some_and(|f| f.contains("ARP reply")),
        "{r:#?}"
    );
    assert!(
        r.sent[0].frame.contains(&format!("ARP reply {GW} is-at")),
        "{r:#?}"
    );
    // Garbage is a counted drop in the dry run too, and refusals are clear.
    let r = inject(d, &a.name, &["hex", "0011"]);
    assert_eq!(r.verdict, "drop runt");
    d.ctl_refused(
        &["trace", "inject", "nope", "icmp", "10.77.0.11", "to", GW],
        "no port named 'nope'",
    );
    d.ctl_refused(
        &["trace", "inject", &a.name, "hex", &"00".repeat(4000)],
        "at most",
    );
    let bad = d.ctl(&["trace", "inject", &a.name, "tcp", "10.77.0.11", "to", GW]);
    assert_eq!(bad.status.code(), Some(2), "a usage error: {}", bad.stderr);
    assert!(bad.stderr.contains("not ADDR:PORT"), "{}", bad.stderr);
    // Options after FRAME, and one quoted FRAME.
    let late = d.ctl(&[
        "trace",
        "inject",
        &a.name,
        "icmp",
        "10.77.0.11",
        "to",
        GW,
        "--ttl",
        "1",
    ]);
    assert_eq!(late.status.code(), Some(2), "{}", late.stderr);
    assert!(
        late.stderr.contains("options go before PORT"),
        "{}",
        late.stderr
    );
    let one: TraceReport = d.ctl_json(&[
        "trace",
        "inject",
        &a.name,
        &format!("icmp 10.77.0.11 to {GW}"),
    ]);
    assert_eq!(
        one.verdict,
        format!("unicast {}", a.name),
        "the router answers: {one:#?}"
    );
}

#[test]
fn trace_live_follows_real_packets_through_the_stages() {
    let Some((env, a, b)) = lab("trace_live_follows_real_packets_through_the_stages") else {
        return;
    };
    let d = env.daemon();
    let live = Command::new(common::vswitchctl_bin())
        .args([
            "--socket",
            d.socket.to_str().unwrap(),
            "-o",
            "json",
            "trace",
            "live",
            &a.name,
        ])
        .args([
            "--filter",
            &format!("icmp and dst host {}", b.ip),
            "-c",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Pings to the router do not match the filter; pings to b do.
    for to in [GW.to_string(), b.ip.to_string()] {
        let ping = netns_exec(&a.name, &["ping", "-c", "4", "-i", "0.2", &to]);
        assert!(
            ping.success(),
            "traced packets are forwarded: {}",
            ping.stdout
        );
    }
    let out = live.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let traces: Vec<WatchTrace> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(traces.len(), 3, "{traces:#?}");
    for t in &traces {
        assert!(
            t.ingress
                .contains(&format!("{} > {} ICMP echo request", a.ip, b.ip)),
            "{t:#?}"
        );
        let stages: Vec<&str> = t.steps.iter().map(|s| s.stage.as_str()).collect();
        assert_eq!(stages, STAGES);
        assert_eq!(
            t.steps.last().unwrap().verdict,
            format!("unicast {}", b.name)
        );
    }
    // A duration alone: every packet until it is over (more than the 10
    // a count defaults to), in the text form.
    let live = Command::new(common::vswitchctl_bin())
        .args([
            "--socket",
            d.socket.to_str().unwrap(),
            "trace",
            "live",
            &a.name,
        ])
        .args(["--filter", "icmp", "--duration", "3"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let ping = netns_exec(
        &a.name,
        &["ping", "-c", "12", "-i", "0.1", &b.ip.to_string()],
    );
    assert!(ping.success(), "{}", ping.stdout);
    let out = live.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let traced = text
        .lines()
        .filter(|l| l.contains("ICMP echo request"))
        .count();
    assert_eq!(traced, 12, "{text}");
    assert_eq!(text.matches("  STAGE").count(), 12, "{text}");
}

/// Reads a pcapng file with tcpdump: one line per frame.
fn tcpdump(file: &str) -> Vec<String> {
    let r = run_cmd(Command::new("tcpdump").args(["-nn", "-e", "-r", file]));
    assert!(r.success(), "tcpdump -r {file}: {}", r.stderr);
    r.stdout.lines().map(String::from).collect()
}

#[test]
fn capture_writes_pcapng_that_tcpdump_reads() {
    let Some((env, a, b)) = lab("capture_writes_pcapng_that_tcpdump_reads") else {
        return;
    };
    let d = env.daemon();
    let file = env.dir.join("b.pcapng");
    let cap = Command::new(common::vswitchctl_bin())
        .args(["--socket", d.socket.to_str().unwrap(), "capture", &b.name])
        .args(["--filter", "icmp", "-c", "6", "-w", file.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let ping = netns_exec(
        &a.name,
        &["ping", "-c", "4", "-i", "0.2", &b.ip.to_string()],
    );
    assert!(ping.success(), "{}", ping.stdout);
    let out = cap.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("6 frames captured"), "{err}");
    let lines = tcpdump(file.to_str().unwrap());
    assert_eq!(lines.len(), 6, "{lines:#?}");
    // Both ways: requests out to b, replies in from b, b's MAC on each.
    let req = lines
        .iter()
        .filter(|l| l.contains("ICMP echo request"))
        .count();
    let rep = lines
        .iter()
        .filter(|l| l.contains("ICMP echo reply"))
        .count();
    assert_eq!((req, rep), (3, 3), "{lines:#?}");
    assert!(
        lines.iter().all(|l| l.contains(&b.mac.to_string())),
        "{lines:#?}"
    );

    // One direction, a snap length, to standard output.
    let out = run_cmd(Command::new("sh").arg("-c").arg(format!(
        "{} --socket {} capture {} -d in -s 64 -c 2 --filter 'icmp' -w - > {}/in.pcapng & \
         sleep 0.3; ip netns exec {} ping -c 3 -i 0.2 {} >/dev/null; wait",
        common::vswitchctl_bin().display(),
        d.socket.display(),
        b.name,
        env.dir.display(),
        a.name,
        b.ip
    )));
    assert!(out.success(), "{}", out.stderr);
    let lines = tcpdump(&format!("{}/in.pcapng", env.dir.display()));
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines.iter().all(|l| l.contains("echo reply")),
        "in = from b: {lines:#?}"
    );
    assert!(
        lines.iter().all(|l| l.contains("length 98")),
        "the wire length is kept: {lines:#?}"
    );

    // Bad requests are refused, clearly, and leave an earlier capture
    // file alone.
    let kept = format!("{}/in.pcapng", env.dir.display());
    let before = std::fs::read(&kept).unwrap();
    d.ctl_refused(&["capture", "nope", "-w", &kept], "no port named 'nope'");
    d.ctl_refused(
        &["capture", &b.name, "--filter", "bogus", "-w", &kept],
        "unknown term 'bogus'",
    );
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        before,
        "the file is untouched"
    );
    d.ctl_refused(
        &[
            "capture",
            &b.name,
            "--filter",
            "tcp or udp",
            "-w",
            "/dev/null",
        ],
        "there is no 'or'",
    );
}

/// Bits per second of a 2-second iperf3 transfer from `a` to `b`.
fn iperf(a: &common::Pod, b: &common::Pod) -> f64 {
    let r = netns_exec(
        &a.name,
        &["iperf3", "-c", &b.ip.to_string(), "-t", "2", "-J"],
    );
    assert!(r.success(), "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn a_capture_nobody_reads_loses_frames_not_traffic_and_goes_away() {
    let Some((mut env, a, b)) =
        lab("a_capture_nobody_reads_loses_frames_not_traffic_and_goes_away")
    else {
        return;
    };
    env.spawn_background(Command::new("ip").args(["netns", "exec", &b.name, "iperf3", "-s"]));
    assert!(
        wait_for(Duration::from_secs(10), || tcp_listening(&b.name, 5201)
            .then_some(()))
        .is_some()
    );
    let baseline = iperf(&a, &b);
    let pid = env.daemon().pid();
    let rss_before = rss_kib(pid);
    let mut client = Client::connect(&env.daemon().socket).unwrap();
    let spec = WatchSpec {
        port: b.name.clone(),
        kind: WatchKindSpec::Capture,
        direction: ctl::Direction::Both,
        filter: None,
        count: None,
        duration_ms: None,
        snaplen: None,
    };
    let Reply::WatchStarted { id } = client.call(ctl::Command::WatchStart(spec.clone())).unwrap()
    else {
        panic!("no watch");
    };
    // Up to the limit of watches at once; one more is refused.
    let mut more = Vec::new();
    for _ in 1..ctl::WATCHES_MAX {
        match client.call(ctl::Command::WatchStart(spec.clone())).unwrap() {
            Reply::WatchStarted { id } => more.push(id),
            other => panic!("{other:?}"),
        }
    }
    let err = client
        .call(ctl::Command::WatchStart(spec.clone()))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("running already; one ends when its reader stops it"),
        "{err}"
    );
    for m in more {
        client.call(ctl::Command::WatchStop { id: m }).unwrap();
    }

    // A TCP transfer through b while nobody reads: the capture's queue
    // fills and then drops; the transfer is not held back (copying frames
    // costs the worker something until the queue is full).
    let bps = iperf(&a, &b);
    assert!(
        bps > baseline * 0.3,
        "{bps} bit/s with an unread capture, {baseline} without"
    );
    let grown = rss_kib(pid).saturating_sub(rss_before);
    // The queue holds at most 16 MiB of frames (and their records).
    assert!(grown < 48 * 1024, "vswitchd grew by {grown} KiB");
    let Reply::WatchData(data) = client.call(ctl::Command::WatchRead { id }).unwrap() else {
        panic!("no data");
    };
    assert!(
        data.dropped > 0,
        "a full queue drops: {} frames, 0 dropped",
        data.frames.len()
    );
    assert!(!data.done);
    eprintln!(
        "iperf3 {:.2} Gbit/s with an unread capture, {:.2} without; {} dropped, RSS +{} KiB",
        bps / 1e9,
        baseline / 1e9,
        data.dropped,
        grown
    );

    // Unread for ctl::WATCH_IDLE_MS: the daemon lets go of it.
    std::thread::sleep(Duration::from_millis(ctl::WATCH_IDLE_MS + 1500));
    let err = client.call(ctl::Command::WatchRead { id }).unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "capture or trace {id} is over: nobody read it for 10 s"
        )),
        "{err}"
    );
    let err = client
        .call(ctl::Command::WatchRead { id: 999 })
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no capture or trace 999 is running"),
        "{err}"
    );

    // A live trace follows arriving packets only; a watch ends with its
    // port (whose id another port may get next).
    let out = WatchSpec {
        kind: WatchKindSpec::Trace,
        direction: ctl::Direction::Out,
        ..spec.clone()
    };
    let err = client.call(ctl::Command::WatchStart(out)).unwrap_err();
    assert!(err.to_string().contains("direction in"), "{err}");
    let Reply::WatchStarted { id } = client.call(ctl::Command::WatchStart(spec)).unwrap() else {
        panic!("no watch");
    };
    env.daemon().ctl_ok(&["port", "del", &b.name]);
    let err = client.call(ctl::Command::WatchRead { id }).unwrap_err();
    assert!(err.to_string().contains("its port was removed"), "{err}");
}
