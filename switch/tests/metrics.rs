//! `vswitchd --metrics`: a real HTTP client (curl) scrapes the Prometheus
//! page while pods talk through the switch, and the numbers follow what
//! happened: frames per port, drops by reason, worker activity, Services
//! and endpoints, control requests and errors, state-file writes.
//!
//! Needs root; see `common/mod.rs`.

mod common;

use std::net::TcpListener;
use std::process::Command;

use common::{Attach, DaemonOpts, TestEnv, run_cmd, vswitchd_bin};

/// A port free on the loopback now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `curl -s -i URL` (with extra arguments): status line, headers, body.
fn curl(args: &[&str]) -> String {
    let r = run_cmd(
        Command::new("curl")
            .args(["-s", "-i", "--max-time", "10"])
            .args(args),
    );
    assert!(r.success(), "curl {args:?}: {}", r.stderr);
    r.stdout
}

/// The value of the sample `name` (with its labels, as written on the
/// page), or `None`.
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

fn must(page: &str, name: &str) -> f64 {
    sample(page, name).unwrap_or_else(|| panic!("no sample {name} on the page:\n{page}"))
}

#[test]
fn a_scrape_shows_what_the_switch_did() {
    let Some(mut env) = TestEnv::new("a_scrape_shows_what_the_switch_did") else {
        return;
    };
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    env.start_daemon_with(DaemonOpts {
        extra: vec![
            "--metrics".into(),
            addr.clone(),
            "--ct-max".into(),
            "4096".into(),
        ],
        ..DaemonOpts::default()
    });
    let a = env.add_pod("a", Attach::Tap);
    let b = env.add_pod("b", Attach::Afxdp);
    env.ping(&a, &b);
    let d = env.daemon();
    d.ctl_ok(&[
        "service",
        "add",
        "10.96.0.10:80/tcp",
        "--backend",
        "10.77.0.11:80",
        "--backend",
        "10.77.0.12:80",
    ]);
    assert!(!d.ctl(&["port", "del", "no-such-port"]).success());
    let url = format!("http://{addr}/metrics");

    let page = curl(&[&url]);
    let (head, body) = page.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("Content-Type: application/openmetrics-text"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("# TYPE vswitch_port_receive_packets counter"));
    assert!(body.contains("# HELP vswitch_port_drops "));
    for pod in [&a, &b] {
        let p = format!("{{port=\"{}\"}}", pod.name);
        for m in ["receive_packets", "transmit_packets", "receive_bytes"] {
            let v = must(body, &format!("vswitch_port_{m}_total{p}"));
            assert!(v >= 4.0, "{m} of {}: {v}", pod.name);
        }
        assert_eq!(must(body, &format!("vswitch_port_up{p}")), 1.0);
        let drops = format!(
            "vswitch_port_drops_total{{port=\"{}\",reason=\"no_route\"}}",
            pod.name
        );
        assert!(sample(body, &drops).is_some(), "{drops} missing");
    }
    assert!(
        must(
            body,
            "vswitch_worker_loops_total{worker=\"0\",activity=\"busy\"}"
        ) > 0.0
    );
    assert!(must(body, "vswitch_worker_bursts_total{worker=\"0\"}") > 0.0);
    assert_eq!(
        must(body, "vswitch_worker_frame_errors_total{worker=\"0\"}"),
        0.0
    );
    assert_eq!(must(body, "vswitch_services"), 1.0);
    assert_eq!(
        must(body, "vswitch_service_endpoints{state=\"ready\"}"),
        2.0
    );
    assert_eq!(must(body, "vswitch_conntrack_limit"), 4096.0);
    assert!(must(body, "vswitch_control_request_errors_total") >= 1.0);
    let requests = must(body, "vswitch_control_requests_total");
    assert!(requests >= 5.0, "{requests}");
    // Two ports and a Service: three writes at least.
    let writes = must(body, "vswitch_state_writes_total");
    assert!(writes >= 3.0, "{writes}");
    assert_eq!(must(body, "vswitch_state_write_errors_total"), 0.0);

    // A page is made at most once a second: asked again at once, the same.
    let again = curl(&[&url]);
    assert_eq!(again.split_once("\r\n\r\n").unwrap().1, body);

    // The counters move with what happens next, and none goes down.
    let before = must(
        body,
        &format!("vswitch_port_receive_packets_total{{port=\"{}\"}}", a.name),
    );
    env.ping(&b, &a);
    d.ctl_ok(&["service", "del", "10.96.0.10:80/tcp"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let page = curl(&[&url]);
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let (name, v) = line.rsplit_once(' ').unwrap();
        if name.contains("_total") {
            let now = must(&page, name);
            assert!(
                now >= v.parse::<f64>().unwrap(),
                "{name} went down: {v} -> {now}"
            );
        }
    }
    let after = must(
        &page,
        &format!("vswitch_port_receive_packets_total{{port=\"{}\"}}", a.name),
    );
    assert!(after >= before + 3.0, "{before} -> {after}");
    assert!(must(&page, "vswitch_control_requests_total") > requests);
    assert_eq!(must(&page, "vswitch_services"), 0.0);
    assert!(must(&page, "vswitch_state_writes_total") > writes);

    // Other paths and methods, clearly.
    let other = curl(&[&format!("http://{addr}/other")]);
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    let post = curl(&["-X", "POST", &url]);
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let head = curl(&["-I", &url]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.ends_with("\r\n\r\n"),
        "a HEAD answer has no body: {head}"
    );
}

#[test]
fn a_metrics_address_in_use_stops_the_start() {
    let Some(env) = TestEnv::new("a_metrics_address_in_use_stops_the_start") else {
        return;
    };
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let socket = env.dir.join("vswitchd.sock");
    let r = run_cmd(
        Command::new(vswitchd_bin())
            .arg("--socket")
            .arg(&socket)
            .arg("--state")
            .arg(env.dir.join("state.json"))
            .args(["--poll", "adaptive", "--metrics", &addr]),
    );
    assert!(!r.success());
    assert!(
        r.stderr
            .contains(&format!("cannot serve metrics on {addr}")),
        "{}",
        r.stderr
    );
    assert!(!socket.exists(), "a control socket was left behind");
}
