//! Faults vswitchd must survive: an attached interface that disappears, and
//! frames no switch should forward.
//!
//! Needs root; see `common/mod.rs`.

mod common;

use std::fs;
use std::time::Duration;

use common::{Attach, Pod, TestEnv, netns_exec, wait_for};
use ctl::PortState;

/// Deletes `gone`'s namespace (and with it its interface) behind the
/// switch's back, then checks the port goes down, the daemon lives, the
/// others still reach each other, and the port can be removed.
fn interface_disappears(env: &mut TestEnv, gone: &Pod, others: [&Pod; 2]) {
    env.ping_all(&[gone, others[0], others[1]]);
    env.delete_netns(gone);

    let d = env.daemon();
    let down = wait_for(Duration::from_secs(5), || {
        let p = d.port(&gone.name);
        (p.state == PortState::Down).then_some(p)
    });
    let p = down.unwrap_or_else(|| {
        panic!(
            "port {} still up 5 s after its interface was deleted: {:#?}",
            gone.name,
            d.port(&gone.name)
        )
    });
    assert_eq!(p.mode, "none", "a down port reports mode 'none': {p:#?}");
    assert!(
        env.daemon_mut().is_running(),
        "vswitchd died when an interface disappeared"
    );

    env.ping_all(&others);

    // The dead port can be removed, and stays removed.
    let d = env.daemon();
    d.ctl_ok(&["port", "del", &gone.name]);
    assert!(
        !d.port_list().iter().any(|p| p.name == gone.name),
        "port del left {} listed",
        gone.name
    );
    let state = fs::read_to_string(&d.state).unwrap();
    assert!(
        !state.contains(&format!("\"{}\"", gone.name)),
        "state file still lists {}:\n{state}",
        gone.name
    );
    env.ping_all(&others);
}

#[test]
fn deleted_veth_takes_its_port_down_and_others_keep_forwarding() {
    let Some(mut env) = TestEnv::new("deleted_veth_takes_its_port_down_and_others_keep_forwarding")
    else {
        return;
    };
    env.start_daemon();
    let a = env.add_pod("a", Attach::Afxdp);
    let b = env.add_pod("b", Attach::Afxdp);
    let c = env.add_pod("c", Attach::Afxdp);
    interface_disappears(&mut env, &b, [&a, &c]);
}

#[test]
fn deleted_tap_netns_takes_its_port_down_and_others_keep_forwarding() {
    let Some(mut env) =
        TestEnv::new("deleted_tap_netns_takes_its_port_down_and_others_keep_forwarding")
    else {
        return;
    };
    env.start_daemon();
    let a = env.add_pod("a", Attach::Afxdp);
    let t = env.add_pod("t", Attach::Tap);
    let u = env.add_pod("u", Attach::Tap);
    interface_disappears(&mut env, &t, [&a, &u]);
}

/// Sends raw frames (hex strings) out of `pod`'s eth0 with an AF_PACKET socket.
fn send_raw(pod: &Pod, frames: &[String]) {
    const SCRIPT: &str = "import socket, sys\n\
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
        s.bind(('eth0', 0))\n\
        for f in sys.argv[1:]:\n    s.send(bytes.fromhex(f))\n";
    let mut args = vec!["python3", "-c", SCRIPT];
    args.extend(frames.iter().map(String::as_str));
    let r = netns_exec(&pod.name, &args);
    assert!(
        r.success(),
        "sending raw frames from {} failed: {}",
        pod.name,
        r.stderr
    );
}

fn hex(mac: &ctl::MacAddr) -> String {
    mac.0.iter().map(|b| format!("{b:02x}")).collect()
}

/// Frames from group or zero source MACs and frames addressed back to
/// their sender are dropped with their reason counted on the ingress port;
/// forwarding goes on.
#[test]
fn bad_frames_are_dropped_and_counted() {
    let Some(mut env) = TestEnv::with_daemon("bad_frames_are_dropped_and_counted") else {
        return;
    };
    let a = env.add_pod("a", Attach::Afxdp);
    let b = env.add_pod("b", Attach::Afxdp);
    let t = env.add_pod("t", Attach::Tap);
    env.ping_all(&[&a, &b, &t]); // learns every pod's MAC on its port

    let payload = "00".repeat(46);
    for pod in [&a, &t] {
        let d = env.daemon();
        let before = d.port_stats(&pod.name).drops;
        let b_tx_before = d.port_stats(&b.name).tx_packets;
        let frames = vec![
            // Multicast source.
            format!("{}01005e0000010800{payload}", hex(&b.mac)),
            // All-zero source.
            format!("{}0000000000000800{payload}", hex(&b.mac)),
            // Broadcast source, broadcast destination.
            format!("ffffffffffffffffffffffff0800{payload}"),
            // To the sender's own MAC, which the switch learned on this port.
            format!("{}{}0800{payload}", hex(&pod.mac), hex(&pod.mac)),
            format!("{}{}0800{payload}", hex(&pod.mac), hex(&pod.mac)),
        ];
        send_raw(pod, &frames);
        let counted = wait_for(Duration::from_secs(2), || {
            let after = d.port_stats(&pod.name).drops;
            (after["invalid_src_mac"] >= before["invalid_src_mac"] + 3
                && after["same_port"] >= before["same_port"] + 2)
                .then_some(after)
        });
        assert!(
            counted.is_some(),
            "bad frames from {} ({:?}) not counted: before {before:?}, after {:?}",
            pod.name,
            pod.attach,
            d.port_stats(&pod.name).drops
        );
        // None of them reached b (the pods are quiet now; allow a stray frame or two).
        let b_tx_after = d.port_stats(&b.name).tx_packets;
        assert!(
            b_tx_after < b_tx_before + 2,
            "invalid frames were forwarded to {} ({b_tx_before} -> {b_tx_after})",
            b.name
        );
    }
    assert!(env.daemon_mut().is_running());
    env.ping_all(&[&a, &b, &t]);
}

/// Frames the kernel drops before the switch sees them are the switch's
/// losses: with vswitchd stopped (SIGSTOP), a burst into an AF_XDP port
/// fills the socket's fill and RX rings and the rest is dropped by the
/// kernel; `stats` counts those with the switch's own drops
/// (`xsk_rx_dropped`, or `xsk_rx_ring_full`), in the port's drop total,
/// and every frame of the burst (but for 1 %, which the veth itself may
/// drop) is either received or counted dropped.
#[test]
fn kernel_drops_of_an_afxdp_port_are_counted_with_the_switchs_drops() {
    const BURST: u64 = 6000;
    let Some((env, a, b)) = two_pods_that_ping(
        "kernel_drops_of_an_afxdp_port_are_counted_with_the_switchs_drops",
        Attach::Afxdp,
    ) else {
        return;
    };

    let d = env.daemon();
    let before = d.port_stats(&a.name);
    assert!(before.xdp.is_some(), "an AF_XDP port has kernel counters");
    for name in [ctl::XSK_RX_DROPPED, ctl::XSK_RX_RING_FULL] {
        assert!(
            before.drops.contains_key(name),
            "{name} in {:?}",
            before.drops
        );
    }
    let kernel = |s: &ctl::PortStats| s.drops[ctl::XSK_RX_DROPPED] + s.drops[ctl::XSK_RX_RING_FULL];

    d.signal(libc::SIGSTOP);
    // A UDP frame from a to b, sent BURST times.
    let sent = netns_exec(&a.name, &["python3", "-c", &burst_script(&a, &b, BURST)]);
    d.signal(libc::SIGCONT);
    assert!(sent.success(), "burst from {}: {}", a.name, sent.stderr);

    let settled = wait_for(Duration::from_secs(5), || {
        let after = d.port_stats(&a.name);
        let got = (after.rx_packets - before.rx_packets) + (kernel(&after) - kernel(&before));
        // A few frames may be lost before the socket (the veth's own
        // queue, on a loaded machine): those no counter of the switch sees.
        (got >= BURST - BURST / 100).then_some(after)
    });
    let after = settled.unwrap_or_else(|| {
        panic!(
            "{BURST} frames sent, not all received or counted: before {before:?}, after {:?}",
            d.port_stats(&a.name)
        )
    });
    let dropped = kernel(&after) - kernel(&before);
    // The switch holds at most the 2,048 frames of its fill ring.
    assert!(
        dropped >= BURST - 2048 - BURST / 100,
        "only {dropped} of {BURST} counted as kernel drops: {after:?}"
    );
    let xdp = after.xdp.expect("kernel counters");
    eprintln!("{dropped} of {BURST} frames dropped by the kernel: {xdp:?}");
    assert_eq!(after.drops[ctl::XSK_RX_DROPPED], xdp.rx_dropped);
    assert_eq!(after.drops[ctl::XSK_RX_RING_FULL], xdp.rx_ring_full);
    assert!(after.drops_total() - before.drops_total() >= dropped);
    env.ping_all(&[&a, &b]);
}

/// The same for a TAP port: with vswitchd stopped, a burst from a TAP pod
/// fills the device's queue (its txqueuelen, 1,000 frames) and the kernel
/// drops the rest; `stats` counts them as `tap_tx_dropped`, exactly the
/// device's own `tx_dropped`, and every frame of the burst is either
/// received or counted.
#[test]
fn kernel_drops_of_a_tap_port_are_counted_with_the_switchs_drops() {
    const BURST: u64 = 6000;
    let Some((env, a, b)) = two_pods_that_ping(
        "kernel_drops_of_a_tap_port_are_counted_with_the_switchs_drops",
        Attach::Tap,
    ) else {
        return;
    };
    let device = || {
        let r = netns_exec(&a.name, &["ip", "-s", "-j", "link", "show", "eth0"]);
        let v: serde_json::Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("ip -s -j link in {}: {e}: {}", a.name, r.stdout));
        v[0]["stats64"]["tx"]["dropped"]
            .as_u64()
            .unwrap_or_else(|| panic!("no tx dropped in {v}"))
    };

    let d = env.daemon();
    let before = d.port_stats(&a.name);
    let at_start = *before
        .drops
        .get(ctl::TAP_TX_DROPPED)
        .unwrap_or_else(|| panic!("{} in {:?}", ctl::TAP_TX_DROPPED, before.drops));
    let device_before = device();
    d.signal(libc::SIGSTOP);
    let sent = netns_exec(&a.name, &["python3", "-c", &burst_script(&a, &b, BURST)]);
    d.signal(libc::SIGCONT);
    assert!(sent.success(), "burst from {}: {}", a.name, sent.stderr);

    let settled = wait_for(Duration::from_secs(5), || {
        let after = d.port_stats(&a.name);
        let got =
            (after.rx_packets - before.rx_packets) + (after.drops[ctl::TAP_TX_DROPPED] - at_start);
        (got >= BURST).then_some(after)
    });
    let after = settled.unwrap_or_else(|| {
        panic!(
            "{BURST} frames sent, not all received or counted: before {before:?}, after {:?}",
            d.port_stats(&a.name)
        )
    });
    let dropped = after.drops[ctl::TAP_TX_DROPPED] - at_start;
    eprintln!("{dropped} of {BURST} frames dropped by the kernel");
    assert_eq!(dropped, device() - device_before, "the device's own count");
    assert!(
        dropped >= BURST - 1000 - BURST / 100,
        "only {dropped} of {BURST} counted as kernel drops: {after:?}"
    );
    assert!(after.drops_total() - before.drops_total() >= dropped);
    env.ping_all(&[&a, &b]);
}

/// A daemon and two pods attached as `attach` that reach each other.
fn two_pods_that_ping(name: &str, attach: Attach) -> Option<(TestEnv, Pod, Pod)> {
    let mut env = TestEnv::with_daemon(name)?;
    let a = env.add_pod("a", attach);
    let b = env.add_pod("b", attach);
    env.ping_all(&[&a, &b]);
    Some((env, a, b))
}

/// A Python script that sends `count` UDP frames from `from` to `to` out of
/// eth0 through an AF_PACKET socket.
fn burst_script(from: &Pod, to: &Pod, count: u64) -> String {
    let ip = |x: std::net::Ipv4Addr| -> String {
        x.octets().iter().map(|o| format!("{o:02x}")).collect()
    };
    let frame = format!(
        "{}{}0800450000200000400040110000{}{}04000400000c00000000",
        hex(&to.mac),
        hex(&from.mac),
        ip(from.ip),
        ip(to.ip)
    );
    format!(
        "import socket\n\
         s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
         s.bind(('eth0', 0))\n\
         f = bytes.fromhex('{frame}')\n\
         for _ in range({count}):\n    s.send(f)\n"
    )
}

/// The pod's veth is deleted (its namespace stays) and created again with
/// the same names, MAC and address (as a runtime re-creating a pod's
/// interface would): the port goes down, comes back up on the new
/// interface by itself (re-attach), and the pod reaches the others.
#[test]
fn a_veth_deleted_and_created_again_comes_back() {
    let Some(mut env) = TestEnv::new("a_veth_deleted_and_created_again_comes_back") else {
        return;
    };
    env.start_daemon();
    let a = env.add_pod("a", Attach::Afxdp);
    let b = env.add_pod("b", Attach::Afxdp);
    let t = env.add_pod("t", Attach::Tap);
    env.ping_all(&[&a, &b, &t]);
    let link = netns_exec(&b.name, &["cat", "/sys/class/net/eth0/address"]);
    let mac = link.stdout.trim().to_string();
    assert_eq!(mac.len(), 17, "{link:?}");
    let r = common::ip(&["link", "del", "dev", &b.name]);
    assert!(r.success(), "{}", r.stderr);
    let d = env.daemon();
    let down = wait_for(Duration::from_secs(5), || {
        (d.port(&b.name).state == PortState::Down).then_some(())
    });
    assert!(down.is_some(), "{:#?}", d.port(&b.name));
    env.ping(&a, &t);

    let r = common::ip(&[
        "link", "add", &b.name, "type", "veth", "peer", "name", "eth0", "netns", &b.name,
    ]);
    assert!(r.success(), "{}", r.stderr);
    let cidr = b.cidr();
    for args in [
        &["ip", "link", "set", "eth0", "address", &mac][..],
        &["ip", "link", "set", "eth0", "up"],
        &["ip", "addr", "add", &cidr, "dev", "eth0"],
    ] {
        let r = netns_exec(&b.name, args);
        assert!(r.success(), "{args:?}: {}", r.stderr);
    }
    let r = common::ip(&["link", "set", &b.name, "up"]);
    assert!(r.success(), "{}", r.stderr);
    // Re-attach attempts back off up to 30 s apart.
    let up = wait_for(Duration::from_secs(40), || {
        (d.port(&b.name).state == PortState::Up).then_some(())
    });
    assert!(
        up.is_some(),
        "port {} not up again on its new veth: {:#?}\n{}",
        b.name,
        d.port(&b.name),
        d.log_tail(20)
    );
    env.ping_all(&[&a, &b, &t]);
}
