//! Ports with several queues (`port add … --queues N`): a veth pod whose
//! two queues are attached through AF_XDP and a two-queue TAP pod, each
//! queue served by its own worker. The pods' stacks spread their flows over
//! the queues; both workers must receive and forward them, the frames must
//! all be accounted for, a restart must bring the queues back, and a
//! request for more queues than the interface has must change nothing.
//!
//! Needs root; see `common/mod.rs`.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::net::Ipv4Addr;
use std::time::Duration;

use common::{
    Attach, Daemon, DaemonOpts, NodeLink, Pod, PodSpec, TestEnv, VethGuard,
    assert_frames_accounted, ip, netns_exec, pick_cores, wait_for,
};

/// UDP flows (each from its own socket, so its own source port) a pod
/// sends: with two queues, the chance that its stack hashes every one of
/// them to the same queue is 2^-63.
const FLOWS: u32 = 64;
/// Datagrams per flow.
const PER_FLOW: u32 = 20;

/// Sends `FLOWS` UDP flows of `PER_FLOW` datagrams from namespace `ns` to `to`.
fn send_udp_flows(ns: &str, to: Ipv4Addr) {
    let py = format!(
        "import socket, time\n\
         for i in range({FLOWS}):\n\
         \x20   s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         \x20   for j in range({PER_FLOW}):\n\
         \x20       s.sendto(b'q' * 64, ('{to}', 9))\n\
         \x20   s.close()\n\
         \x20   time.sleep(0.002)\n"
    );
    let r = netns_exec(ns, &["python3", "-c", &py]);
    assert!(r.success(), "UDP flows from {ns}: {}", r.stderr);
}

/// The workers of a port's queues, as `port list` reports them.
fn queue_workers(env: &TestEnv, pod: &Pod) -> Vec<usize> {
    env.daemon().port(&pod.name).queues
}

/// Sends the flows from pod `from` to pod `to` (both on `d`) and checks
/// that each worker serving one of `from`'s queues received part of them,
/// and that `to` was sent all of them.
fn flows_spread_over_workers(d: &Daemon, from: &Pod, to: &Pod) {
    flows_in_spread_over_workers(d, &from.name, &from.name, to);
}

/// As [`flows_spread_over_workers`], the flows sent from namespace `ns`
/// and received on port `from`.
fn flows_in_spread_over_workers(d: &Daemon, ns: &str, from: &str, to: &Pod) {
    let before_from = d.port_stats(from);
    let before_to = d.port_stats(&to.name);
    send_udp_flows(ns, to.ip);
    let sent = u64::from(FLOWS * PER_FLOW);
    let delivered = wait_for(Duration::from_secs(5), || {
        let now = d.port_stats(&to.name).tx_packets - before_to.tx_packets;
        (now >= sent).then_some(now)
    });
    assert!(
        delivered.is_some(),
        "{} was not sent all {sent} datagrams from {from}: {:?}",
        to.name,
        d.port_stats(&to.name)
    );
    let after = d.port_stats(from);
    assert_eq!(
        after.workers.len(),
        2,
        "stats of a two-queue port on two workers list both: {after:?}"
    );
    let mut total = 0;
    for (w, b) in after.workers.iter().zip(&before_from.workers) {
        let got = w.rx_packets - b.rx_packets;
        assert!(
            got > 0,
            "worker {} received nothing of {FLOWS} flows from {from}: the flows are not spread over its queues ({after:?})",
            w.worker,
        );
        total += w.rx_packets;
    }
    assert_eq!(
        total, after.rx_packets,
        "the workers' shares do not add up to the port's packets"
    );
}

/// How many frames the XDP program on veth host end `ifname` redirected
/// from RX queue `queue` (to that queue's socket), from ethtool.
fn redirected_on_queue(ifname: &str, queue: u32) -> u64 {
    let out = common::run_ok(std::process::Command::new("ethtool").args(["-S", ifname])).stdout;
    let key = format!("rx_queue_{queue}_xdp_redirect:");
    out.lines()
        .find_map(|l| l.trim().strip_prefix(&key))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("ethtool -S {ifname} has no {key}:\n{out}"))
}

#[test]
fn queues_of_a_port_are_served_by_several_workers() {
    let Some(mut env) = TestEnv::new("queues_served") else {
        return;
    };
    let cores = pick_cores(2).expect("this test needs two usable cores");
    let opts = DaemonOpts {
        cores,
        ..DaemonOpts::default()
    };
    env.start_daemon_with(opts.clone());
    let a = env.add_pod_with(PodSpec::new("a", Attach::Afxdp, "10.77.0.11/24").queues(2));
    let t = env.add_pod_with(PodSpec::new("t", Attach::Tap, "10.77.0.12/24").queues(2));
    let b = env.add_pod_with(PodSpec::new("b", Attach::Afxdp, "10.77.0.13/24"));
    for pod in [&a, &t] {
        let workers = queue_workers(&env, pod);
        assert_eq!(
            workers.iter().collect::<BTreeSet<_>>().len(),
            2,
            "the two queues of {} are not on two workers: {workers:?}",
            pod.name
        );
    }
    assert_eq!(queue_workers(&env, &b).len(), 1);
    let show = env.daemon().show();
    for w in &show.workers {
        assert!(
            w.ports.contains(&a.name) && w.ports.contains(&t.name),
            "worker {} does not list the two-queue ports it polls: {:?}",
            w.id,
            w.ports
        );
    }
    let totals: Vec<u64> = show.workers.iter().map(|w| w.frames.total).collect();

    // The kernel's word that both RX queues of the veth carried frames to
    // their sockets, and the switch's that both workers received them.
    let redirected = [0, 1].map(|q| redirected_on_queue(&a.name, q));
    flows_spread_over_workers(env.daemon(), &a, &b);
    for q in 0..2 {
        assert!(
            redirected_on_queue(&a.name, q) > redirected[q as usize],
            "RX queue {q} of {} redirected nothing to its socket",
            a.name
        );
    }
    flows_spread_over_workers(env.daemon(), &t, &b);

    env.ping_all(&[&a, &t, &b]);
    // TCP through a multi-queue port each way: the receiving end's replies
    // leave through whichever queue its worker owns.
    assert!(env.iperf(&a, &t, 2) > 1_000_000);
    assert!(env.iperf(&t, &b, 2) > 1_000_000);
    assert!(env.iperf(&b, &a, 2) > 1_000_000);
    assert_frames_accounted(&env, &totals);

    // The state file keeps the queues; a restart opens all of them again.
    let before = env.daemon().port_list();
    let status = env.take_daemon().stop();
    assert!(status.success(), "vswitchd exited with {status}");
    env.start_daemon_with(opts);
    env.daemon().wait_ports_up(&[&a.name, &t.name, &b.name]);
    for pod in [&a, &t, &b] {
        let was = before.iter().find(|p| p.name == pod.name).unwrap();
        assert_eq!(
            queue_workers(&env, pod).len(),
            was.queues.len(),
            "{} came back with another number of queues",
            pod.name
        );
    }
    env.ping_all(&[&a, &t, &b]);
    flows_spread_over_workers(env.daemon(), &a, &b);
    flows_spread_over_workers(env.daemon(), &t, &b);

    // Deleting a multi-queue port closes every queue: the frames lent to
    // its two sockets' fill rings (2,048 each while idle) come back and
    // the XDP program leaves the interface.
    let in_rings = |env: &TestEnv| -> u64 {
        env.daemon()
            .show()
            .workers
            .iter()
            .map(|w| w.frames.in_rings)
            .sum()
    };
    let full = wait_for(Duration::from_secs(2), || {
        let n = in_rings(&env);
        (n == 3 * 2048).then_some(n)
    });
    assert!(
        full.is_some(),
        "three idle AF_XDP sockets (two of {}, one of {}) should hold 3 x 2048 frames, not {}",
        a.name,
        b.name,
        in_rings(&env)
    );
    env.daemon().ctl_ok(&["port", "del", &a.name]);
    let back = wait_for(Duration::from_secs(2), || {
        (in_rings(&env) == 2048).then_some(())
    });
    assert!(
        back.is_some(),
        "after port del {} the frames of its queues are still lent: {} in rings",
        a.name,
        in_rings(&env)
    );
    let link = ip(&["link", "show", "dev", &a.name]).stdout;
    assert!(
        !link.contains("xdp"),
        "{} keeps an XDP program after port del: {link}",
        a.name
    );
    let show = env.daemon().show();
    assert_frames_accounted(
        &env,
        &show
            .workers
            .iter()
            .map(|w| w.frames.total)
            .collect::<Vec<_>>(),
    );
}

#[test]
fn more_queues_than_the_interface_has_are_refused() {
    let Some(env) = TestEnv::with_daemon("queues_refused") else {
        return;
    };
    let name = format!("{}v", env.tag);
    let _veth = VethGuard::new(&name, &format!("{}w", env.tag));
    let state = env.state_path();
    let state_before = fs::read(&state).ok();

    env.daemon().ctl_refused(
        &["port", "add", &name, "--queues", "2"],
        &format!("interface '{name}' has 1 RX queue(s); --queues 2 needs as many"),
    );
    assert!(
        env.daemon().port_list().is_empty(),
        "a refused port was added"
    );
    let link = ip(&["link", "show", "dev", &name]).stdout;
    assert!(
        !link.contains("xdp"),
        "a refused port left an XDP program on {name}: {link}"
    );
    assert_eq!(
        fs::read(&state).ok(),
        state_before,
        "a refused port changed the state file"
    );
    // The same interface with the queues it has is fine.
    env.daemon().ctl_ok(&["port", "add", &name]);
    env.daemon().wait_ports_up(&[&name]);
}

#[test]
fn an_uplink_with_two_queues_takes_flows_on_both() {
    let Some(mut env) = TestEnv::new("queues_uplink") else {
        return;
    };
    let lan = env.add_lan("l");
    let node = env.add_node_with_queues("n", "192.168.50.1/24", NodeLink::Lan(&lan), 2);
    let cores = pick_cores(2).expect("this test needs two usable cores");
    env.start_node_daemon(&node, &cores);
    let d = env.node_daemon(&node.name);
    d.ctl_ok(&["addr", "add", "10.244.1.1/24"]);
    d.ctl_ok(&["port", "add", "up0", "--uplink", "--queues", "2"]);
    d.wait_ports_up(&["up0"]);
    let up0 = d.port("up0");
    assert_eq!(
        up0.queues.iter().collect::<BTreeSet<_>>().len(),
        2,
        "the uplink's two queues are not on two workers: {up0:?}"
    );
    let pod = env.add_pod_with(
        PodSpec::new("p", Attach::Afxdp, "10.244.1.5/24")
            .gw("10.244.1.1")
            .node(&node),
    );
    // The LAN's own kernel is a host beyond the node that routes the pod
    // network through it; its flows reach up0 on both RX queues.
    ip(&["-n", &lan, "addr", "add", "192.168.50.100/24", "dev", "br0"]);
    ip(&[
        "-n",
        &lan,
        "route",
        "add",
        "10.244.1.0/24",
        "via",
        "192.168.50.1",
    ]);
    let reached = wait_for(Duration::from_secs(10), || {
        netns_exec(&lan, &["ping", "-c", "1", "-W", "1", "10.244.1.5"])
            .success()
            .then_some(())
    });
    assert!(
        reached.is_some(),
        "the LAN host cannot reach the pod through the uplink"
    );
    flows_in_spread_over_workers(env.node_daemon(&node.name), &lan, "up0", &pod);
}

/// One worker serving more sockets than its pool fills full rings for (a
/// pod port with 32 queues, 2,048 frames each, and another pod): the
/// sockets share the pool, so every queue receives and the other pod too.
#[test]
fn a_worker_shares_its_frames_among_many_queues() {
    let Some(mut env) = TestEnv::with_daemon("queues_share") else {
        return;
    };
    let m = env.add_pod_with(PodSpec::new("m", Attach::Afxdp, "10.77.0.11/24").queues(32));
    let c = env.add_pod_with(PodSpec::new("c", Attach::Afxdp, "10.77.0.12/24"));
    env.ping_all(&[&m, &c]);
    let d = env.daemon();
    let before = d.port_stats(&c.name).tx_packets;
    // Drops counted from here: a frame the pod sent while its sockets were
    // being made (one now and then in CI) is not what this test is about.
    let drops_before = d.port_stats(&m.name).drops;
    send_udp_flows(&m.name, c.ip);
    let sent = u64::from(FLOWS * PER_FLOW);
    let delivered = wait_for(Duration::from_secs(5), || {
        (d.port_stats(&c.name).tx_packets - before >= sent).then_some(())
    });
    let stats = d.port_stats(&m.name);
    assert!(
        delivered.is_some(),
        "{} was not sent all {sent} datagrams from the 32 queues of {}: {stats:?}",
        c.name,
        m.name
    );
    for reason in ["xsk_rx_dropped", "xsk_rx_ring_full"] {
        assert_eq!(
            stats.drops[reason], drops_before[reason],
            "{reason} on {} during the flows: {stats:?}",
            m.name
        );
    }
    let frames = d.show().workers[0].frames;
    assert!(
        frames.in_rings <= frames.total,
        "more frames in rings than the pool holds: {frames:?}"
    );
}

/// A multi-queue TAP that another process holds (one queue attached, the
/// device up) is refused and left alone; once that process lets go (its
/// device goes with it), the port is created.
#[test]
fn a_multi_queue_tap_another_process_holds_is_refused() {
    let Some(mut env) = TestEnv::with_daemon("queues_tap_held") else {
        return;
    };
    let name = format!("{}h", env.tag);
    let _ = ip(&["link", "del", &name]);
    // TUNSETIFF with IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE, held open.
    let py = format!(
        "import fcntl, os, struct, time\n\
         fd = os.open('/dev/net/tun', os.O_RDWR)\n\
         fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', b'{name}', 0x0002 | 0x1000 | 0x0100))\n\
         time.sleep(120)\n"
    );
    let holder = env
        .spawn_background(std::process::Command::new("python3").args(["-c", &py]))
        .id();
    let held = wait_for(Duration::from_secs(5), || {
        ip(&["link", "show", "dev", &name]).success().then_some(())
    });
    assert!(held.is_some(), "the holder did not create TAP {name}");
    assert!(ip(&["link", "set", "dev", &name, "up"]).success());
    let mac = |name: &str| ip(&["-o", "link", "show", "dev", name]).stdout;
    let before = mac(&name);

    env.daemon().ctl_refused(
        &["port", "add", &name, "--type", "tap", "--queues", "2"],
        &format!("TAP '{name}' is in use"),
    );
    assert!(
        env.daemon().port_list().is_empty(),
        "a refused port was added"
    );
    assert_eq!(
        mac(&name),
        before,
        "a refused port changed the holder's TAP"
    );

    // The holder lets go: its device goes with it, and the port is made.
    common::run_ok(std::process::Command::new("kill").args(["-9", &holder.to_string()]));
    let gone = wait_for(Duration::from_secs(5), || {
        (!ip(&["link", "show", "dev", &name]).success()).then_some(())
    });
    assert!(gone.is_some(), "TAP {name} outlived its holder");
    env.daemon()
        .ctl_ok(&["port", "add", &name, "--type", "tap", "--queues", "2"]);
    env.daemon().wait_ports_up(&[&name]);
    env.daemon().ctl_ok(&["port", "del", &name]);
}
