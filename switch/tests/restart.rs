//! vswitchd restores its configuration from the state file: after a clean
//! stop (SIGTERM) and after a crash (SIGKILL) the ports and static MAC
//! entries come back and the pods reach each other again.
//!
//! What happens to the pods meanwhile: a veth lives on without the daemon,
//! so an AF_XDP pod keeps its eth0 and address, and the restarted daemon
//! attaches the host end again. A TAP device lives only as long as the
//! daemon holds it open (vswitchd does not make it persistent), so it
//! vanishes with the daemon, and with it the pod's eth0 and the address
//! the pod's network set-up gave it; the restarted daemon creates the TAP
//! in the namespace again, and whoever set the address (the CNI plugin; here
//! the test, which checks which case it finds) must set it again.
//!
//! Needs root; see `common/mod.rs`.

mod common;

use std::time::Duration;

use common::{Attach, Daemon, Pod, TestEnv, netns_exec, wait_for};
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
        match pod.attach {
            Attach::Afxdp => {
                assert!(
                    exists && has_addr,
                    "AF_XDP pod {} lost its eth0 or address over a restart",
                    pod.name
                )
            }
            Attach::Tap => {
                // The daemon re-creates the TAP as the pod's eth0 ...
                let back = wait_for(Duration::from_secs(5), || eth0_state(pod).0.then_some(()));
                assert!(
                    back.is_some(),
                    "restarted vswitchd did not re-create eth0 of TAP pod {}",
                    pod.name
                );
                let mac =
                    netns_exec(&pod.name, &["ip", "-br", "link", "show", "dev", "eth0"]).stdout;
                assert!(
                    mac.contains(&pod.mac.to_string()),
                    "re-created TAP lacks the pod's MAC: {mac}"
                );
                // ... and the address is the pod network's to set again.
                if !eth0_state(pod).1 {
                    eprintln!(
                        "TAP pod {}: eth0 re-created without its address; adding it again",
                        pod.name
                    );
                    let r = netns_exec(
                        &pod.name,
                        &["ip", "addr", "add", &pod.cidr(), "dev", "eth0"],
                    );
                    assert!(
                        r.success(),
                        "re-adding {} to {}: {}",
                        pod.cidr(),
                        pod.name,
                        r.stderr
                    );
                }
                let r = netns_exec(&pod.name, &["ip", "link", "set", "dev", "eth0", "up"]);
                assert!(r.success(), "{}", r.stderr);
            }
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
}
