//! Several nodes, each with its own vswitchd: pods reach pods on other
//! nodes over the nodes' uplinks (host-gw routing, no encapsulation), the
//! node kernels keep their own traffic on the same NICs, and a node reaches
//! pods through its host port.
//!
//! A node is a network namespace made by `scripts/node.sh` with an uplink
//! `up0`; its vswitchd runs inside it (`ip netns exec NODE vswitchd ...`)
//! with one adaptive worker on a core of its own where the machine has one.
//! The two-node lab, nodes joined by a direct veth wire:
//!
//! ```text
//!  node na: up0 192.168.50.1/24           node nb: up0 192.168.50.2/24
//!    router 10.244.1.1/24                   router 10.244.2.1/24
//!    route 10.244.2.0/24 via 192.168.50.2   route 10.244.1.0/24 via 192.168.50.1
//!    pods pa 10.244.1.5 (AF_XDP)            pod pb 10.244.2.5 (AF_XDP)
//!         pt 10.244.1.6 (TAP)
//! ```
//!
//! Needs root; see `common/mod.rs`.

mod common;

use std::time::Duration;

use common::{
    Attach, CmdResult, Node, NodeLink, Pod, PodSpec, TestEnv, allowed_cores, ip, netns_exec,
    wait_for,
};

/// The cores of the first two nodes' workers (the same core on a
/// one-core machine).
fn node_cores() -> [String; 3] {
    let c = allowed_cores();
    [0, 1, 2].map(|i| c[i % c.len()].to_string())
}

/// Gives `node`'s switch its router address `gw/24`, its uplink, and a
/// route to each `(subnet, node)` of `peers` via that node's uplink address.
fn configure_node(env: &TestEnv, node: &Node, gw: &str, peers: &[(&str, &Node)]) {
    let d = env.node_daemon(&node.name);
    d.ctl_ok(&["addr", "add", &format!("{gw}/24")]);
    d.ctl_ok(&["port", "add", "up0", "--uplink"]);
    d.wait_ports_up(&["up0"]);
    for (subnet, peer) in peers {
        d.ctl_ok(&["route", "add", subnet, "via", &peer.uplink_ip.to_string()]);
    }
}

struct TwoNodes {
    na: Node,
    nb: Node,
    pa: Pod,
    pt: Pod,
    pb: Pod,
}

/// Builds the two-node lab of the module documentation.
fn two_nodes(env: &mut TestEnv) -> TwoNodes {
    let cores = node_cores();
    let na = env.add_node("na", "192.168.50.1/24", NodeLink::Alone);
    let nb = env.add_node("nb", "192.168.50.2/24", NodeLink::Wire(&na));
    env.start_node_daemon(&na, &cores[0]);
    env.start_node_daemon(&nb, &cores[1]);
    configure_node(env, &na, "10.244.1.1", &[("10.244.2.0/24", &nb)]);
    configure_node(env, &nb, "10.244.2.1", &[("10.244.1.0/24", &na)]);
    let pod = |suffix, attach, cidr, gw, node: &Node| {
        PodSpec::new(suffix, attach, cidr)
            .gw(gw)
            .port_security()
            .node(node)
    };
    TwoNodes {
        pa: env.add_pod_with(pod("pa", Attach::Afxdp, "10.244.1.5/24", "10.244.1.1", &na)),
        pt: env.add_pod_with(pod("pt", Attach::Tap, "10.244.1.6/24", "10.244.1.1", &na)),
        pb: env.add_pod_with(pod("pb", Attach::Afxdp, "10.244.2.5/24", "10.244.2.1", &nb)),
        na,
        nb,
    }
}

/// Pings `to` from namespace `ns` until a reply comes (up to `secs`), then
/// requires 3 of 3; returns the output of those three.
fn ping_ns(env: &TestEnv, ns: &str, to: &str, secs: u64, what: &str) -> String {
    let first = wait_for(Duration::from_secs(secs), || {
        netns_exec(ns, &["ping", "-c", "1", "-W", "1", to])
            .success()
            .then_some(())
    });
    assert!(
        first.is_some(),
        "{what}: no ping reply from {ns} to {to} within {secs} s\n{}",
        diagnostics(env)
    );
    let r = netns_exec(ns, &["ping", "-c", "3", "-i", "0.2", "-W", "1", to]);
    assert!(
        r.success() && r.stdout.contains(" 0% packet loss"),
        "{what}: ping {ns} -> {to} lost packets after the first reply:\n{}{}",
        r.stdout,
        r.stderr
    );
    r.stdout
}

/// Routes, neighbours and counters of every running node switch.
fn diagnostics(env: &TestEnv) -> String {
    let mut s = String::new();
    for node in ["na", "nb", "nc"] {
        let name = format!("{}{node}", env.tag);
        if let Some(d) = env.try_node_daemon(&name) {
            for args in [&["route", "list"][..], &["neigh", "list"], &["stats"]] {
                s += &format!(
                    "--- {name}: vswitchctl {}\n{}",
                    args.join(" "),
                    d.ctl(args).stdout
                );
            }
        }
    }
    s
}

/// Whether an XDP program is attached to `up0` of `node`.
fn xdp_attached(node: &Node) -> bool {
    let r = ip(&["-n", &node.name, "-d", "link", "show", "dev", "up0"]);
    assert!(r.success(), "{}", r.stderr);
    r.stdout.contains("xdp")
}

fn show_up0(node: &Node) -> CmdResult {
    ip(&["-n", &node.name, "-d", "link", "show", "dev", "up0"])
}

#[test]
fn pods_on_two_nodes_reach_each_other_over_the_uplinks() {
    let Some(mut env) = TestEnv::new("pods_on_two_nodes_reach_each_other_over_the_uplinks") else {
        return;
    };
    let TwoNodes { na, nb, pa, pt, pb } = two_nodes(&mut env);

    // Two routers on the way: the TTL drops by two.
    let out = ping_ns(
        &env,
        &pa.name,
        &pb.ip.to_string(),
        10,
        "AF_XDP pod to remote pod",
    );
    assert!(
        out.contains("ttl=62"),
        "pa -> pb did not cross two routers:\n{out}"
    );
    ping_ns(&env, &pb.name, &pa.ip.to_string(), 5, "remote pod back");
    ping_ns(
        &env,
        &pt.name,
        &pb.ip.to_string(),
        10,
        "TAP pod to remote pod",
    );
    ping_ns(
        &env,
        &pb.name,
        "10.244.1.1",
        5,
        "remote pod to the other node's router address",
    );

    // TCP across nodes: the receiver sees the sender's pod address.
    assert_eq!(
        env.tcp_exchange(&pa.name, &pb.name, pb.ip, 7101),
        pa.ip.to_string()
    );
    assert_eq!(
        env.tcp_exchange(&pb.name, &pt.name, pt.ip, 7102),
        pb.ip.to_string()
    );

    // The node kernels still talk to each other over the same uplinks.
    ping_ns(&env, &na.name, &nb.uplink_ip.to_string(), 5, "node to node");
    assert_eq!(
        env.tcp_exchange(&nb.name, &na.name, na.uplink_ip, 7103),
        nb.uplink_ip.to_string()
    );
    for node in [&na, &nb] {
        assert!(
            xdp_attached(node),
            "no XDP program on {}/up0:\n{}",
            node.name,
            show_up0(node).stdout
        );
        let d = env.node_daemon(&node.name);
        let p = d.port("up0");
        assert_eq!(p.role, ctl::PortRole::Uplink, "{p:#?}");
    }
}

#[test]
fn node_kernel_keeps_the_uplink_while_vswitchd_runs_stops_and_crashes() {
    let Some(mut env) =
        TestEnv::new("node_kernel_keeps_the_uplink_while_vswitchd_runs_stops_and_crashes")
    else {
        return;
    };
    let TwoNodes { na, nb, pa, pb, .. } = two_nodes(&mut env);
    let cores = node_cores();
    let node_ping = |env: &TestEnv, what: &str| {
        ping_ns(env, &nb.name, &na.uplink_ip.to_string(), 5, what);
        ping_ns(env, &na.name, &nb.uplink_ip.to_string(), 5, what);
    };
    node_ping(&env, "with both switches attached");
    ping_ns(&env, &pa.name, &pb.ip.to_string(), 10, "pods, before");
    assert!(xdp_attached(&na));

    // A clean stop hands the NIC back whole: no XDP program left.
    let status = env.take_node_daemon(&na.name).stop();
    assert!(
        status.success(),
        "vswitchd of {} exited with {status}",
        na.name
    );
    assert!(
        !xdp_attached(&na),
        "XDP program still attached after a clean stop:\n{}",
        show_up0(&na).stdout
    );
    assert!(
        !show_up0(&na).stdout.contains("PROMISC"),
        "up0 left promiscuous:\n{}",
        show_up0(&na).stdout
    );
    node_ping(&env, "after vswitchd of node a stopped");

    // Started again, it takes the uplink back from its state file.
    env.start_node_daemon(&na, &cores[0]);
    env.node_daemon(&na.name).wait_ports_up(&["up0", &pa.name]);
    assert!(xdp_attached(&na));
    ping_ns(
        &env,
        &pa.name,
        &pb.ip.to_string(),
        10,
        "pods, after a restart",
    );
    node_ping(&env, "after the restart");

    // A crash leaves the program attached with no socket behind it: the
    // node's own traffic still reaches the kernel.
    env.take_node_daemon(&na.name).crash();
    node_ping(&env, "after vswitchd of node a was killed");
    let r = netns_exec(
        &pb.name,
        &[
            "ping",
            "-c",
            "2",
            "-i",
            "0.3",
            "-W",
            "1",
            &pa.ip.to_string(),
        ],
    );
    assert!(
        !r.success(),
        "pod traffic crossed a node whose switch is dead:\n{}",
        r.stdout
    );

    // And the restarted switch replaces the orphaned program.
    env.start_node_daemon(&na, &cores[0]);
    env.node_daemon(&na.name).wait_ports_up(&["up0", &pa.name]);
    ping_ns(
        &env,
        &pa.name,
        &pb.ip.to_string(),
        10,
        "pods, after a crash and restart",
    );
    node_ping(&env, "after the crash and restart");
}

#[test]
fn nodes_reach_pods_through_the_host_port_and_the_uplink() {
    let Some(mut env) = TestEnv::new("nodes_reach_pods_through_the_host_port_and_the_uplink")
    else {
        return;
    };
    let TwoNodes { na, nb, pa, pt, pb } = two_nodes(&mut env);
    let d = env.node_daemon(&na.name);
    d.ctl_ok(&["port", "add", "vsw0", "--type", "tap", "--host"]);
    d.wait_ports_up(&["vsw0"]);
    // vswitchd gave node a's kernel a route to its pod subnet through vsw0.
    let routes = ip(&["-n", &na.name, "route", "show", "10.244.1.0/24"]);
    assert!(
        routes.stdout.contains("dev vsw0"),
        "no kernel route via vsw0: {}",
        routes.stdout
    );

    // Node to its own pods, and those pods to their node, through the host port.
    ping_ns(
        &env,
        &na.name,
        &pa.ip.to_string(),
        10,
        "node a to AF_XDP pod",
    );
    ping_ns(&env, &na.name, &pt.ip.to_string(), 10, "node a to TAP pod");
    ping_ns(
        &env,
        &pa.name,
        &na.uplink_ip.to_string(),
        10,
        "pod to its own node",
    );
    assert_eq!(
        env.tcp_exchange(&na.name, &pa.name, pa.ip, 7201),
        na.uplink_ip.to_string()
    );
    // Through the uplink: node a's kernel routes pod subnet b to node b, as
    // host-gw routing does; node b's XDP program hands it to the switch.
    let r = ip(&[
        "-n",
        &na.name,
        "route",
        "add",
        "10.244.2.0/24",
        "via",
        &nb.uplink_ip.to_string(),
    ]);
    assert!(r.success(), "{}", r.stderr);
    ping_ns(
        &env,
        &na.name,
        &pb.ip.to_string(),
        10,
        "node a to a pod of node b",
    );
    assert_eq!(
        env.tcp_exchange(&na.name, &pb.name, pb.ip, 7202),
        na.uplink_ip.to_string()
    );

    // Pod to the outside through its node's kernel: the switch's default
    // route goes out of the host port; node a's kernel forwards to an
    // address only node b's kernel has, and the reply comes back to the pod
    // over the uplink (node b routes pod subnet a to node a, host-gw).
    env.node_daemon(&na.name)
        .ctl_ok(&["route", "add", "0.0.0.0/0", "dev", "vsw0"]);
    let outside = "198.51.100.7";
    let na_ip = na.uplink_ip.to_string();
    let nb_ip = nb.uplink_ip.to_string();
    for args in [
        &[
            "-n",
            &nb.name,
            "addr",
            "add",
            &format!("{outside}/32"),
            "dev",
            "lo",
        ][..],
        &[
            "-n",
            &na.name,
            "route",
            "add",
            &format!("{outside}/32"),
            "via",
            &nb_ip,
        ][..],
        &[
            "-n",
            &nb.name,
            "route",
            "replace",
            "10.244.1.0/24",
            "via",
            &na_ip,
        ][..],
    ] {
        let r = ip(args);
        assert!(r.success(), "ip {args:?}: {}", r.stderr);
    }
    let r = netns_exec(&na.name, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    assert!(r.success(), "{}", r.stderr);
    ping_ns(
        &env,
        &pa.name,
        outside,
        10,
        "pod to the outside via its node's kernel",
    );
}

#[test]
fn three_nodes_on_a_lan() {
    let Some(mut env) = TestEnv::new("three_nodes_on_a_lan") else {
        return;
    };
    let cores = node_cores();
    let lan = env.add_lan("l");
    let nodes: Vec<Node> = (0..3)
        .map(|i| {
            let cidr = format!("192.168.60.{}/24", i + 1);
            env.add_node(["na", "nb", "nc"][i], &cidr, NodeLink::Lan(&lan))
        })
        .collect();
    for (i, n) in nodes.iter().enumerate() {
        env.start_node_daemon(n, &cores[i]);
    }
    let subnet = |i: usize| format!("10.244.{}.0/24", i + 1);
    let mut pods = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let peers: Vec<(String, &Node)> = (0..3)
            .filter(|&j| j != i)
            .map(|j| (subnet(j), &nodes[j]))
            .collect();
        let peers: Vec<(&str, &Node)> = peers.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        let gw = format!("10.244.{}.1", i + 1);
        configure_node(&env, n, &gw, &peers);
        let attach = if i == 2 { Attach::Tap } else { Attach::Afxdp };
        let spec = PodSpec::new(&format!("p{i}"), attach, &format!("10.244.{}.5/24", i + 1))
            .gw(&gw)
            .port_security()
            .node(n);
        pods.push(env.add_pod_with(spec));
    }
    for a in &pods {
        for b in &pods {
            if a.name != b.name {
                let out = ping_ns(
                    &env,
                    &a.name,
                    &b.ip.to_string(),
                    10,
                    "pod to pod over the LAN",
                );
                assert!(out.contains("ttl=62"), "{} -> {}:\n{out}", a.name, b.name);
            }
        }
    }
    assert_eq!(
        env.tcp_exchange(&pods[2].name, &pods[0].name, pods[0].ip, 7301),
        pods[2].ip.to_string()
    );
    ping_ns(
        &env,
        &nodes[0].name,
        "192.168.60.3",
        5,
        "node to node over the LAN",
    );
}

/// A Service whose endpoints live on other nodes: reached from a pod of
/// node a (the endpoint's reply comes back to node a by host-gw and is
/// translated there) and from node a itself through its host port (the
/// switch translates the node's source to its own address, so the reply
/// comes back through the switch rather than straight to node a's kernel).
#[test]
fn services_with_endpoints_on_another_node() {
    let Some(mut env) = TestEnv::new("services_with_endpoints_on_another_node") else {
        return;
    };
    let TwoNodes { na, pa, pb, .. } = two_nodes(&mut env);
    let d = env.node_daemon(&na.name);
    d.ctl_ok(&["port", "add", "vsw0", "--type", "tap", "--host"]);
    d.wait_ports_up(&["vsw0"]);
    let vip: std::net::Ipv4Addr = "10.96.0.10".parse().unwrap();
    for port in [7301, 7302] {
        d.ctl_ok(&[
            "service",
            "add",
            &format!("{vip}:{port}/tcp"),
            "--backend",
            &format!("{}:{port}", pb.ip),
        ]);
    }
    // vswitchd gave node a's kernel a route to the VIP through vsw0.
    let routes = ip(&["-n", &na.name, "route", "show", &vip.to_string()]);
    assert!(
        routes.stdout.contains("dev vsw0"),
        "no kernel route to the VIP via vsw0: {}",
        routes.stdout
    );
    // A pod of node a: the endpoint sees the pod's own address.
    assert_eq!(
        env.tcp_exchange(&pa.name, &pb.name, vip, 7301),
        pa.ip.to_string(),
        "pod a to the VIP, served on node b"
    );
    // Node a itself: the endpoint sees node a's switch address.
    assert_eq!(
        env.tcp_exchange(&na.name, &pb.name, vip, 7302),
        "10.244.1.1",
        "node a to the VIP, served on node b"
    );
    let d = env.node_daemon(&na.name);
    let flows = d.ctl_value(&["ct", "list"]);
    let flows = flows.as_array().unwrap();
    assert_eq!(flows.len(), 2, "{flows:?}");
    assert!(
        flows.iter().all(|f| f["reply_src"]
            .as_str()
            .unwrap()
            .starts_with(&pb.ip.to_string())),
        "{flows:?}"
    );
}

/// Waits until `node`'s switch reports port `port` in `state`.
fn wait_port_state(env: &TestEnv, node: &Node, port: &str, state: ctl::PortState, secs: u64) {
    let d = env.node_daemon(&node.name);
    let got = wait_for(Duration::from_secs(secs), || {
        (d.port(port).state == state).then_some(())
    });
    assert!(
        got.is_some(),
        "{}'s {port} not {state:?} within {secs} s: {:#?}\n{}",
        node.name,
        d.port(port),
        d.log_tail(20)
    );
}

/// The wire between the two nodes disappears (both uplinks with it: a NIC
/// unplugged, a driver reloaded) and is created again with the same names
/// and addresses: both switches take their uplink down, then back up with
/// the XDP program attached again, and pods and node kernels reach across.
#[test]
fn uplinks_deleted_and_created_again_come_back() {
    let Some(mut env) = TestEnv::new("uplinks_recreated") else {
        return;
    };
    let lab = two_nodes(&mut env);
    let pb = lab.pb.ip.to_string();
    ping_ns(&env, &lab.pa.name, &pb, 10, "before");
    let r = ip(&["-n", &lab.na.name, "link", "del", "up0"]);
    assert!(r.success(), "{}", r.stderr);
    for node in [&lab.na, &lab.nb] {
        wait_port_state(&env, node, "up0", ctl::PortState::Down, 5);
    }
    let r = netns_exec(&lab.pa.name, &["ping", "-c", "1", "-W", "1", &pb]);
    assert!(!r.success(), "a pod reached the other node without a wire");

    let r = ip(&[
        "link",
        "add",
        "up0",
        "netns",
        &lab.na.name,
        "type",
        "veth",
        "peer",
        "name",
        "up0",
        "netns",
        &lab.nb.name,
    ]);
    assert!(r.success(), "{}", r.stderr);
    for (node, cidr) in [(&lab.na, "192.168.50.1/24"), (&lab.nb, "192.168.50.2/24")] {
        for args in [
            &["ethtool", "-K", "up0", "tx", "off"][..],
            &["ip", "addr", "add", cidr, "dev", "up0"],
            &["ip", "link", "set", "up0", "up"],
        ] {
            let r = netns_exec(&node.name, args);
            assert!(r.success(), "{args:?}: {}", r.stderr);
        }
    }
    // Re-attach attempts back off up to 30 s apart.
    for node in [&lab.na, &lab.nb] {
        wait_port_state(&env, node, "up0", ctl::PortState::Up, 40);
        assert!(
            xdp_attached(node),
            "{}'s new up0 has no XDP program: {}",
            node.name,
            show_up0(node).stdout
        );
    }
    ping_ns(
        &env,
        &lab.pa.name,
        &pb,
        10,
        "pod to pod after the wire came back",
    );
    ping_ns(
        &env,
        &lab.pt.name,
        &pb,
        10,
        "TAP pod to pod after the wire came back",
    );
    ping_ns(
        &env,
        &lab.na.name,
        "192.168.50.2",
        10,
        "node to node after the wire came back",
    );
}
