//! The benchmark tool against a real switch: `vswitch-bench` generating in
//! one pod and sinking in another through vswitchd (AF_XDP and TAP pod
//! ports), where every frame sent must be counted exactly once at a rate
//! the switch carries without loss; and its refusals of bad arguments.
//!
//! This tests the instrument, not the switch's speed: no assertion here is
//! about a rate. Needs root (see `common/mod.rs`) and `vswitch-bench` next
//! to vswitchd (`cargo build --release --workspace --bins`, as
//! scripts/test.sh does).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Attach, Pod, TestEnv, run_cmd};

fn bench_bin() -> PathBuf {
    let p = common::vswitchd_bin().with_file_name("vswitch-bench");
    assert!(
        p.exists(),
        "vswitch-bench not found at {}: build it with `cargo build --release --workspace --bins`",
        p.display()
    );
    p
}

/// A core for generator and sink away from the daemon's worker (the first
/// allowed core, see `DaemonOpts::default`), when the machine has one.
fn bench_core() -> String {
    common::allowed_cores()
        .last()
        .copied()
        .unwrap_or(0)
        .to_string()
}

fn json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A 1-second trial at 20,000 frames/s from `a` to `b`: every frame sent
/// arrives once, in order, and the sink's histogram holds them all.
fn exact_trial(env: &TestEnv, a: &Pod, b: &Pod, flows: &str) {
    exact_trial_with(env, a, b, flows, "auto");
}

/// As [`exact_trial`], generator and sink through `driver`.
fn exact_trial_with(env: &TestEnv, a: &Pod, b: &Pod, flows: &str, driver: &str) {
    env.ping(a, b);
    let out = env.dir.join(format!("trial-{}.json", b.name));
    let r = run_cmd(Command::new(bench_bin()).args([
        "trial",
        "--tx-netns",
        &a.name,
        "--tx-iface",
        "eth0",
        "--rx-netns",
        &b.name,
        "--rx-iface",
        "eth0",
        "--dst-ip",
        &b.ip.to_string(),
        "--rate",
        "20k",
        "--duration",
        "1",
        "--flows",
        flows,
        "--tx-driver",
        driver,
        "--rx-driver",
        driver,
        "--rounds",
        "2",
        "--gen-core",
        &bench_core(),
        "--sink-core",
        &bench_core(),
        "--json",
        out.to_str().unwrap(),
    ]));
    assert!(
        r.success(),
        "vswitch-bench trial failed:\n{}{}",
        r.stdout,
        r.stderr
    );
    let second = env.dir.join(format!("trial-{}-2.json", b.name));
    let mut total = 0;
    for file in [&out, &second] {
        let v = json(file);
        assert_eq!(v["schema"], 1);
        assert_eq!(v["kind"], "trial");
        let t = &v["trial"];
        let sent = t["sent"].as_u64().unwrap();
        total += sent;
        // 20,000/s for 1 s; a descheduled generator forgives what it
        // missed (so this is not a precision check: counting is).
        assert!((10_000..=20_001).contains(&sent), "sent {sent}");
        assert_eq!(t["received"].as_u64(), Some(sent), "{t}");
        assert_eq!(t["lost"], 0);
        assert_eq!(t["duplicates"], 0);
        assert_eq!(t["reordered"], 0);
        assert_eq!(t["latency"]["count"].as_u64(), Some(sent));
        assert!(t["latency"]["p50_us"].as_f64().unwrap() > 0.0);
        assert!(!v["env"]["kernel"].as_str().unwrap().is_empty());
        if driver == "packet" {
            assert_eq!(v["generator"]["driver"], "af_packet");
            assert_eq!(v["sink_driver"], "af_packet");
        }
        assert!(v["env"]["command"].as_array().unwrap().len() > 10);
    }
    // The switch sent them all to b (and the warm-up's, and a ping's).
    let stats = env.daemon().port_stats(&b.name);
    assert!(stats.tx_packets >= total, "{total} sent, {stats:?}");
}

#[test]
fn trial_through_afxdp_pods_counts_every_frame_once() {
    let Some(mut env) = TestEnv::with_daemon("loadgen_afxdp") else {
        return;
    };
    let a = env.add_pod("a", Attach::Afxdp);
    let b = env.add_pod("b", Attach::Afxdp);
    exact_trial(&env, &a, &b, "1");
}

#[test]
fn trial_through_tap_pods_counts_every_frame_once() {
    let Some(mut env) = TestEnv::with_daemon("loadgen_tap") else {
        return;
    };
    let a = env.add_pod("a", Attach::Tap);
    let b = env.add_pod("b", Attach::Tap);
    exact_trial(&env, &a, &b, "100");
}

/// The AF_PACKET fallback (what the tool uses where AF_XDP is refused or
/// frames are larger than its buffers) counts as exactly.
#[test]
fn trial_over_af_packet_counts_every_frame_once() {
    let Some(mut env) = TestEnv::with_daemon("loadgen_packet") else {
        return;
    };
    let a = env.add_pod("a", Attach::Afxdp);
    let b = env.add_pod("b", Attach::Afxdp);
    exact_trial_with(&env, &a, &b, "10", "packet");
}

/// Generator and sink as separate processes (the clock is still shared):
/// the sink stops when idle and counts exactly what `--count` sent.
#[test]
fn separate_gen_and_sink_agree() {
    let Some(mut env) = TestEnv::with_daemon("loadgen_separate") else {
        return;
    };
    let a = env.add_pod("a", Attach::Afxdp);
    let b = env.add_pod("b", Attach::Tap);
    env.ping(&a, &b);
    let sink_json = env.dir.join("sink.json");
    let sink = Command::new(bench_bin())
        .args([
            "sink", "--netns", &b.name, "--iface", "eth0", "--driver", "udp", "--idle", "1",
        ])
        .args(["--duration", "30", "--json", sink_json.to_str().unwrap()])
        .args(["--core", &bench_core()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let gen_json = env.dir.join("gen.json");
    let r = run_cmd(Command::new(bench_bin()).args([
        "gen",
        "--netns",
        &a.name,
        "--iface",
        "eth0",
        "--dst-ip",
        &b.ip.to_string(),
        "--rate",
        "10k",
        "--count",
        "5000",
        "--size",
        "imix",
        "--core",
        &bench_core(),
        "--json",
        gen_json.to_str().unwrap(),
    ]));
    assert!(r.success(), "gen failed: {}{}", r.stdout, r.stderr);
    let out = sink.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sink failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let g = json(&gen_json);
    assert_eq!(g["generated"]["sent"], 5000);
    let s = json(&sink_json);
    assert_eq!(s["sink_driver"], "udp socket");
    let sink = &s["sink"];
    assert_eq!(sink["received"], 5000, "{sink}");
    assert_eq!(sink["gaps"], 0);
    assert_eq!(sink["duplicates"], 0);
    // IMIX: 7 × 64, 4 × 594, 1 × 1518 per 12 frames; 5000 = 416 × 12 + 8.
    let per12 = 7 * 64 + 4 * 594 + 1518;
    let tail: u64 = [64, 594, 64, 1518, 64, 594, 64, 64].iter().sum();
    assert_eq!(sink["bytes"].as_u64(), Some(416 * per12 + tail));
}

/// Bad arguments: one line on stderr, a non-zero exit, nothing sent.
#[test]
fn bad_arguments_are_refused_with_one_line() {
    let Some(mut env) = TestEnv::with_daemon("loadgen_refusals") else {
        return;
    };
    let a = env.add_pod("a", Attach::Afxdp);
    let ns = a.name.as_str();
    // The pod's own kernel sends IPv6 DAD and router solicitations on its
    // own schedule: silence it, so that the count below is the generators'.
    common::netns_exec(ns, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    common::netns_exec(ns, &["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let rx_before = env.daemon().port_stats(&a.name).rx_packets;
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "gen",
                "--netns",
                ns,
                "--iface",
                "nosuch0",
                "--dst-ip",
                "10.77.0.99",
            ],
            "no interface 'nosuch0'",
        ),
        (
            &[
                "gen",
                "--netns",
                "vsb-nosuch",
                "--iface",
                "eth0",
                "--dst-ip",
                "10.0.0.1",
            ],
            "vsb-nosuch",
        ),
        (
            &[
                "gen",
                "--netns",
                ns,
                "--iface",
                "eth0",
                "--dst-ip",
                "10.77.0.99",
                "--rate",
                "0",
            ],
            "at least 1",
        ),
        (
            &[
                "gen",
                "--netns",
                ns,
                "--iface",
                "eth0",
                "--dst-ip",
                "10.77.0.99",
                "--size",
                "63",
            ],
            "too small",
        ),
        (
            &[
                "gen",
                "--netns",
                ns,
                "--iface",
                "eth0",
                "--dst-ip",
                "10.77.0.99",
                "--size",
                "9018",
            ],
            "MTU",
        ),
        (
            &[
                "gen",
                "--netns",
                ns,
                "--iface",
                "eth0",
                "--dst-ip",
                "10.99.0.1",
            ],
            "no route to 10.99.0.1",
        ),
        (
            &["sink", "--netns", ns, "--iface", "eth0", "--max-size", "20"],
            "outside",
        ),
        (
            &[
                "ndr",
                "--tx-iface",
                "eth0",
                "--rx-iface",
                "eth0",
                "--dst-ip",
                "1.2.3.4",
                "--precision",
                "0",
            ],
            "percentage",
        ),
        (&["report", "/nonexistent/x.json"], "cannot read"),
        (
            &[
                "ndr",
                "--tx-iface",
                "eth0",
                "--rx-iface",
                "eth0",
                "--dst-ip",
                "1.2.3.4",
                "--max-rate",
                "10k",
                "--min-rate",
                "100k",
            ],
            "above --max-rate",
        ),
    ];
    for (args, why) in cases {
        let r = run_cmd(Command::new(bench_bin()).args(*args));
        assert!(!r.success(), "{args:?} succeeded");
        assert!(
            r.stderr.contains(why),
            "{args:?}: expected '{why}' in:\n{}",
            r.stderr
        );
        let lines = r.stderr.lines().filter(|l| !l.trim().is_empty()).count();
        // clap adds a usage hint and a help line to its own errors.
        assert!(lines <= 4, "{args:?}: {lines} lines:\n{}", r.stderr);
        assert!(r.stderr.to_lowercase().contains("error"), "{}", r.stderr);
    }
    // Without --netns, the host's own network is refused.
    let routes = std::fs::read_to_string("/proc/net/route").unwrap();
    let host_if = routes
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 7 && f[1] == "00000000" && f[7] == "00000000")
        .map(|f| f[0].to_string())
        .expect("this test needs the host to have a default route");
    let r = run_cmd(
        Command::new(bench_bin()).args(["gen", "--iface", &host_if, "--dst-ip", "10.0.0.1"]),
    );
    assert!(
        !r.success() && r.stderr.contains("default route"),
        "{}",
        r.stderr
    );
    // Nothing reached the switch from the refused generators.
    assert_eq!(env.daemon().port_stats(&a.name).rx_packets, rx_before);
}
