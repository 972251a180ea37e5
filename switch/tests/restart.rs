//! vswitchd restores its configuration from the state file: after a clean
//! stop (SIGTERM) and after a crash (SIGKILL) the ports and static MAC
//! entries come back and the pods reach each other again.
//!
//! What happens to the pods meanwhile: a veth lives on without the daemon,
//! and vswitchd makes its TAP devices persistent, so every pod keeps its
//! eth0, MAC and address while the daemon is away (a TAP only loses its
//! carrier); the restarted daemon attaches to them again.
//!
//! Needs root; see `common/mod.rs`.

mod common;

use common::{Attach, Daemon, Pod, PodSpec, TestEnv, netns_exec};
use ctl::{FdbKind, PortInfo, PortState};

const STATIC_MAC: &str = "02:00:00:ee:00:07";

/// What must survive a restart: what the user configured, not what the
/// daemon observed.
fn config_of(ports: &[PortInfo]) -> Vec<String> {
    let mut v: Vec<String> = ports
        .iter()
        .map(|p| {
            format!(
                "{} {} {} mac={:?} netns={:?} ifname={:?}",
                p.name, p.port_type, p.requested_mode, p.mac, p.netns, p.ifname
            )
        })
        .collect();
    v.sort();
    v
}

/// Whether `pod`'s eth0 exists, and whether it still has its address.
fn eth0_state(pod: &Pod) -> (bool, bool) {
    let r = netns_exec(
        &pod.name,
        &["ip", "-o", "-4", "addr", "show", "dev", "eth0"],
    );
    let exists = netns_exec(&pod.name, &["ip", "link", "show", "dev", "eth0"]).success();
    (exists, r.stdout.contains(&format!("{}/", pod.ip)))
}

fn setup(env: &mut TestEnv) -> Vec<Pod> {
    env.start_daemon();
    let pods = vec![
        env.add_pod("a", Attach::Afxdp),
        env.add_pod("b", Attach::Afxdp),
        env.add_pod("t", Attach::Tap),
    ];
    let d = env.daemon();
    d.ctl_ok(&["fdb", "add", STATIC_MAC, &pods[1].name]);
    env.ping_all(&pods.iter().collect::<Vec<_>>());
    pods
}

fn check_restored(env: &mut TestEnv, pods: &[Pod], before: &[PortInfo]) {
    env.start_daemon();
    let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    let d = env.daemon();
    d.wait_ports_up(&names);
    assert_eq!(
        config_of(&d.port_list()),
        config_of(before),
        "ports not restored as configured"
    );
    for p in d.port_list() {
        assert_eq!(p.state, PortState::Up, "{p:#?}");
    }
    let fdb = d.fdb();
    assert!(
        fdb.iter().any(|e| e.mac.to_string() == STATIC_MAC
            && e.port == pods[1].name
            && e.kind == FdbKind::Static),
        "static FDB entry not restored: {fdb:#?}"
    );

    for pod in pods {
        let (exists, has_addr) = eth0_state(pod);
        assert!(
            exists && has_addr,
            "{:?} pod {} lost its eth0 or address over a restart",
            pod.attach,
            pod.name
        );
        if pod.attach == Attach::Tap {
            let link = netns_exec(&pod.name, &["ip", "-br", "link", "show", "dev", "eth0"]).stdout;
            assert!(
                link.contains(&pod.mac.to_string()),
                "TAP of pod {} lost its MAC: {link}",
                pod.name
            );
        }
    }
    env.ping_all(&pods.iter().collect::<Vec<_>>());
}

#[test]
fn ports_come_back_after_sigterm() {
    let Some(mut env) = TestEnv::new("ports_come_back_after_sigterm") else {
        return;
    };
    let pods = setup(&mut env);
    let before = env.daemon().port_list();
    let d: Daemon = env.take_daemon();
    let status = d.stop();
    assert!(status.success(), "vswitchd exited with {status} on SIGTERM");
    let (exists, _) = eth0_state(&pods[2]);
    eprintln!(
        "after SIGTERM: TAP pod eth0 {}",
        if exists { "still exists" } else { "is gone" }
    );
    check_restored(&mut env, &pods, &before);
}

#[test]
fn ports_come_back_after_crash() {
    let Some(mut env) = TestEnv::new("ports_come_back_after_crash") else {
        return;
    };
    let pods = setup(&mut env);
    let before = env.daemon().port_list();
    env.take_daemon().crash();
    // The crash left the XDP programs attached to the veths and a stale socket file.
    check_restored(&mut env, &pods, &before);
    // The restarted switch replaced the programs the crash left: once the
    // ports are deleted, no XDP program remains (one left behind would).
    for pod in pods.iter().filter(|p| p.attach == Attach::Afxdp) {
        env.daemon().ctl_ok(&["port", "del", &pod.name]);
        let link = common::ip(&["link", "show", "dev", &pod.name]).stdout;
        assert!(
            !link.contains("xdp"),
            "{} keeps an XDP program after a crash, a restart and port del: {link}",
            pod.name
        );
    }
}

/// A TCP transfer (iperf3, intervals of 0.2 s) running in the background.
struct Transfer {
    what: String,
    child: std::process::Child,
}

impl Transfer {
    fn start(from: &Pod, addr: &str, port: u16, secs: u32, what: &str) -> Transfer {
        // `timeout`: a transfer that hangs fails the test rather than
        // holding it.
        let limit = (secs + 30).to_string();
        let child = std::process::Command::new("timeout")
            .args([
                &limit, "ip", "netns", "exec", &from.name, "iperf3", "-c", addr,
            ])
            .args(["-p", &port.to_string(), "-t", &secs.to_string()])
            .args(["-i", "0.2", "-J", "--connect-timeout", "3000"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        Transfer {
            what: what.to_string(),
            child,
        }
    }

    /// Waits for the end; returns the longest stretch without data (s) and
    /// the bytes after it.
    fn finish(self) -> (f64, u64) {
        let out = self.child.wait_with_output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: iperf3 printed no JSON ({e}): {}",
                self.what,
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert!(
            v.get("error").is_none(),
            "{} did not survive the crash: {}",
            self.what,
            v["error"]
        );
        let intervals: Vec<(f64, u64)> = v["intervals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let s = &i["sum"];
                (s["seconds"].as_f64().unwrap(), s["bytes"].as_u64().unwrap())
            })
            .collect();
        let (mut gap, mut run, mut after) = (0.0f64, 0.0f64, 0u64);
        for &(secs, bytes) in &intervals {
            if bytes == 0 {
                run += secs;
                if run > gap {
                    gap = run;
                    after = 0;
                }
            } else {
                run = 0.0;
                after += bytes;
            }
        }
        (gap, after)
    }
}

#[test]
fn transfers_resume_after_kill_9() {
    let Some(mut env) = TestEnv::new("transfers_resume_after_kill_9") else {
        return;
    };
    env.start_daemon();
    env.daemon().ctl_ok(&["addr", "add", "10.244.1.1/24"]);
    let spec =
        |s: &str, attach, ip: &str| PodSpec::new(s, attach, ip).gw("10.244.1.1").port_security();
    let a = env.add_pod_with(spec("a", Attach::Afxdp, "10.244.1.11/24"));
    let b = env.add_pod_with(spec("b", Attach::Afxdp, "10.244.1.12/24"));
    let t = env.add_pod_with(spec("t", Attach::Tap, "10.244.1.13/24"));
    let u = env.add_pod_with(spec("u", Attach::Tap, "10.244.1.14/24"));
    env.daemon().ctl_ok(&[
        "service",
        "add",
        "10.96.0.10:80/tcp",
        "--backend",
        "10.244.1.14:5202",
    ]);
    let pods = [&a, &b, &t, &u];
    env.ping_all(&pods);
    let before = env.daemon().port_list();
    for (pod, port) in [(&b, "5201"), (&u, "5201"), (&u, "5202")] {
        let ns = pod.name.clone();
        env.spawn_background(
            std::process::Command::new("ip")
                .args(["netns", "exec", &ns, "iperf3", "-s", "-p", port]),
        );
        let up = common::wait_for(std::time::Duration::from_secs(5), || {
            common::tcp_listening(&ns, port.parse().unwrap()).then_some(())
        });
        assert!(up.is_some(), "iperf3 in {ns} not listening on {port}");
    }
    let transfers = [
        Transfer::start(&a, &b.ip.to_string(), 5201, 12, "AF_XDP a -> b"),
        Transfer::start(&t, &u.ip.to_string(), 5201, 12, "TAP t -> u"),
        Transfer::start(&a, "10.96.0.10", 80, 12, "a -> VIP -> u"),
    ];
    std::thread::sleep(std::time::Duration::from_secs(3));
    let t0 = std::time::Instant::now();
    env.take_daemon().crash();
    env.start_daemon();
    let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    env.daemon().wait_ports_up(&names);
    let restart = t0.elapsed().as_secs_f64();
    for tr in transfers {
        let what = tr.what.clone();
        let (gap, after) = tr.finish();
        eprintln!(
            "{what}: longest stretch without data {gap:.1} s (daemon killed and back up in {restart:.1} s); {} MB after it",
            after / 1_000_000
        );
        assert!(after > 0, "{what} did not resume after the restart");
        // TCP retransmits at growing intervals (200 ms, 400 ms, ...): a
        // flow that lost packets while the switch was away resumes within
        // about a second after it is back.
        assert!(
            gap < restart + 2.0,
            "{what} stalled for {gap:.1} s; the switch was away {restart:.1} s"
        );
    }
    assert_eq!(
        config_of(&env.daemon().port_list()),
        config_of(&before),
        "ports not restored as configured"
    );
    for pod in pods {
        let (exists, has_addr) = eth0_state(pod);
        assert!(exists && has_addr, "{} lost its eth0 or address", pod.name);
    }
    let services: Vec<ctl::ServiceInfo> = env.daemon().ctl_json(&["service", "list"]);
    assert_eq!(services.len(), 1, "the Service not restored: {services:#?}");
}
