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

use common::{Attach, Daemon, Pod, TestEnv, netns_exec};
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
