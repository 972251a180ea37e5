//! The control plane as a user sees it: `vswitchctl -o json` output, the
//! FDB commands, and bad requests that must change nothing.
//!
//! Needs root; see `common/mod.rs`.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{
    Attach, CmdResult, DROP_REASONS, Daemon, DaemonOpts, TestEnv, VethGuard, ip, wait_for,
};
use ctl::{FdbKind, PortState, PortType, XdpMode};

/// Smallest frame of `ping`'s default 56-byte payload: Ethernet + IPv4 + ICMP.
const PING_FRAME_BYTES: u64 = 14 + 20 + 8 + 56;

#[test]
fn json_output_reports_ports_counters_and_fdb() {
    let Some(mut env) = TestEnv::new("json_output_reports_ports_counters_and_fdb") else {
        return;
    };
    let opts = DaemonOpts {
        extra: ["--mac-aging", "120", "--mac-limit", "77"]
            .map(String::from)
            .to_vec(),
        ..DaemonOpts::default()
    };
    env.start_daemon_with(opts);
    let a = env.add_pod("a", Attach::Afxdp);
    let t = env.add_pod("t", Attach::Tap);
    let d = env.daemon();

    // port list
    let ports = d.port_list();
    assert_eq!(ports.len(), 2, "{ports:#?}");
    let pa = d.port(&a.name);
    assert_eq!(pa.port_type, PortType::Afxdp);
    assert_eq!(pa.requested_mode, XdpMode::Auto);
    assert!(
        pa.mode == "native" || pa.mode == "generic",
        "AF_XDP port mode {:?}",
        pa.mode
    );
    assert!(
        !pa.zero_copy,
        "a veth cannot do zero-copy AF_XDP, yet the port reports it"
    );
    assert_eq!(pa.state, PortState::Up);
    assert_eq!(pa.error, None);
    let pt = d.port(&t.name);
    assert_eq!(pt.port_type, PortType::Tap);
    assert_eq!(pt.mode, "tap");
    assert_eq!(
        pt.io.as_deref(),
        Some("io_uring"),
        "TAP I/O: io_uring needs Linux 6.4+ and no seccomp filter blocking it"
    );
    assert_eq!(pa.io, None, "only TAP ports report their I/O");
    assert_eq!(pt.state, PortState::Up);
    assert_eq!(pt.error, None);
    assert_eq!(
        pt.mac,
        Some(t.mac),
        "TAP port does not report the MAC it was given"
    );
    assert_eq!(pt.netns.as_deref(), Some(t.name.as_str()));
    assert_eq!(pt.ifname.as_deref(), Some("eth0"));
    assert_ne!(pa.id, pt.id, "two ports share an id");
    for p in &ports {
        assert_eq!(
            p.worker, 0,
            "only one worker runs, yet {} is on worker {}",
            p.name, p.worker
        );
    }
    // The TAP really is the pod's eth0, with the MAC asked for.
    let link = common::netns_exec(&t.name, &["ip", "-br", "link", "show", "dev", "eth0"]);
    assert!(
        link.stdout.contains(&t.mac.to_string()),
        "pod eth0 is not the TAP: {}",
        link.stdout
    );

    // stats, before and after traffic
    let before = d.stats();
    assert_eq!(before.len(), 2);
    for s in &before {
        let keys: BTreeSet<&str> = s.drops.keys().map(String::as_str).collect();
        let mut expected: BTreeSet<&str> = DROP_REASONS.into_iter().collect();
        // An AF_XDP port adds the kernel's drops on the way to the switch,
        if s.name == a.name {
            expected.extend([ctl::XSK_RX_DROPPED, ctl::XSK_RX_RING_FULL]);
        }
        // A TAP port, the kernel's drops in the device's queue.
        if s.name == t.name {
            expected.insert(ctl::TAP_TX_DROPPED);
        }
        assert_eq!(keys, expected, "stats of {} lack drop reasons", s.name);
    }
    let show_before = d.show();
    env.ping_all(&[&a, &t]);
    let d = env.daemon();
    for p in [&a, &t] {
        let b = before.iter().find(|s| s.name == p.name).unwrap();
        let s = d.port_stats(&p.name);
        for (what, before, now, more) in [
            ("rx_packets", b.rx_packets, s.rx_packets, 3),
            ("tx_packets", b.tx_packets, s.tx_packets, 3),
            ("rx_bytes", b.rx_bytes, s.rx_bytes, 3 * PING_FRAME_BYTES),
            ("tx_bytes", b.tx_bytes, s.tx_bytes, 3 * PING_FRAME_BYTES),
        ] {
            assert!(
                now >= before + more,
                "{what} of {}: {before} -> {now}",
                p.name
            );
        }
    }
    let one: Vec<ctl::PortStats> = d.ctl_json(&["stats", &a.name]);
    assert_eq!(
        one.len(),
        1,
        "`stats PORT` must report that port only: {one:#?}"
    );
    assert_eq!(one[0].name, a.name);
    assert_failure(&d.ctl(&["stats", "nosuchport"]), "stats of an unknown port");

    // fdb show: both pods learned, on the right ports
    let fdb = d.fdb();
    for p in [&a, &t] {
        let e = fdb
            .iter()
            .find(|e| e.mac == p.mac)
            .unwrap_or_else(|| panic!("MAC {} of {} not in fdb show: {fdb:#?}", p.mac, p.name));
        assert_eq!(e.port, p.name, "MAC {} learned on the wrong port", p.mac);
        assert_eq!(e.kind, FdbKind::Learned);
        let age = e.age_secs.expect("a learned entry has an age");
        assert!(
            age <= 30,
            "entry of {} is {age} s old right after pinging",
            p.name
        );
    }
    for p in d.port_list() {
        assert!(
            p.learned_macs >= 1,
            "port {} reports {} learned MACs",
            p.name,
            p.learned_macs
        );
    }

    // show
    let show = d.show();
    assert_eq!(show.daemon.pid, d.pid());
    assert_eq!(show.daemon.protocol, ctl::PROTOCOL_VERSION);
    assert_eq!(show.daemon.socket, d.socket.to_str().unwrap());
    assert_eq!(show.daemon.state_file, d.state.to_str().unwrap());
    assert_eq!(show.daemon.poll, "adaptive");
    assert_eq!(show.daemon.mac_aging_secs, 120, "--mac-aging not applied");
    assert_eq!(show.daemon.mac_limit, 77, "--mac-limit not applied");
    assert!(!show.daemon.version.is_empty());
    assert!(show.daemon.uptime_secs >= show_before.daemon.uptime_secs);
    assert_eq!(show.workers.len(), 1);
    let w = &show.workers[0];
    assert_eq!(
        w.core.to_string(),
        d.opts.cores,
        "worker not on the core asked for"
    );
    let mut polled = w.ports.clone();
    polled.sort();
    let mut names = vec![a.name.clone(), t.name.clone()];
    names.sort();
    assert_eq!(polled, names);
    assert!(
        w.loops > show_before.workers[0].loops,
        "worker loop counter did not move while it forwarded pings ({} -> {})",
        show_before.workers[0].loops,
        w.loops
    );
    let mut show_ports: Vec<String> = show.ports.iter().map(|p| p.name.clone()).collect();
    show_ports.sort();
    assert_eq!(show_ports, names);
    assert_eq!(show.fdb.static_entries, 0);
    assert!(
        show.fdb.learned_entries >= 2,
        "show counts {} learned MACs",
        show.fdb.learned_entries
    );

    // Text output is for people, but must name what it lists.
    let text = d.ctl_ok(&["port", "list"]).stdout;
    assert!(
        text.contains(&a.name) && text.contains(&t.name),
        "port list text:\n{text}"
    );
    let text = d.ctl_ok(&["fdb", "show"]).stdout;
    assert!(text.contains(&a.mac.to_string()), "fdb show text:\n{text}");
    let text = d.ctl_ok(&["stats"]).stdout;
    assert!(
        text.contains(&a.name) && text.contains(&t.name),
        "stats text:\n{text}"
    );
    let text = d.ctl_ok(&["show"]).stdout;
    assert!(text.contains(&a.name), "show text:\n{text}");
}

#[test]
fn static_fdb_entries_and_flush() {
    let Some(mut env) = TestEnv::with_daemon("static_fdb_entries_and_flush") else {
        return;
    };
    let a = env.add_pod("a", Attach::Afxdp);
    let b = env.add_pod("b", Attach::Tap);
    let d = env.daemon();
    let mac = "02:00:00:ee:00:01";

    d.ctl_ok(&["fdb", "add", mac, &b.name]);
    let e = d
        .fdb()
        .into_iter()
        .find(|e| e.mac.to_string() == mac)
        .expect("static entry not listed");
    assert_eq!(e.port, b.name);
    assert_eq!(e.kind, FdbKind::Static);
    assert_eq!(e.age_secs, None, "a static entry has no age");
    assert_eq!(d.show().fdb.static_entries, 1);
    let state = fs::read_to_string(&d.state).expect("no state file after fdb add");
    assert!(
        state.contains(mac),
        "static entry not persisted in the state file:\n{state}"
    );

    // flush: learned entries go, forwarding goes on and learns again.
    env.ping(&a, &b);
    // The pods' own IPv6 chatter (neighbour and multicast-listener
    // reports) would be learned again at any moment: quiet it, so that
    // what is listed after the flush is what the flush left.
    for pod in [&a, &b] {
        let r = common::netns_exec(
            &pod.name,
            &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
        );
        assert!(r.success(), "{}", r.stderr);
    }
    let d = env.daemon();
    d.ctl_ok(&["fdb", "flush"]);
    let gone = wait_for(Duration::from_secs(2), || {
        let fdb = d.fdb();
        (!fdb.iter().any(|e| e.mac == a.mac || e.mac == b.mac)).then_some(())
    });
    assert!(
        gone.is_some(),
        "learned MACs still listed 2 s after fdb flush: {:#?}",
        d.fdb()
    );
    env.ping(&a, &b);
    let d = env.daemon();
    let fdb = d.fdb();
    assert!(
        fdb.iter()
            .any(|e| e.mac == a.mac && e.port == a.name && e.kind == FdbKind::Learned),
        "MAC of {} not learned again after flush: {fdb:#?}",
        a.name
    );

    // fdb del removes the static entry from the table and the state file.
    // (Whether flush also removes static entries is left to the daemon.)
    if d.fdb().iter().any(|e| e.mac.to_string() == mac) {
        d.ctl_ok(&["fdb", "del", mac]);
    } else {
        d.ctl_ok(&["fdb", "add", mac, &b.name]);
        d.ctl_ok(&["fdb", "del", mac]);
    }
    assert!(
        !d.fdb().iter().any(|e| e.mac.to_string() == mac),
        "fdb del left the entry"
    );
    assert_eq!(d.show().fdb.static_entries, 0);
    let state = fs::read_to_string(&d.state).unwrap();
    assert!(
        !state.contains(mac),
        "deleted entry still in the state file:\n{state}"
    );
}

/// Everything a request may change: the ports, the static FDB and the state
/// file. Fields that traffic changes on its own (learned MACs and their
/// counts, entry ages) are left out: the pods' own IPv6 chatter may teach
/// the switch a MAC at any moment.
#[derive(Debug, PartialEq)]
struct Snapshot {
    ports: serde_json::Value,
    static_fdb: Vec<serde_json::Value>,
    state_file: Vec<u8>,
}

fn snapshot(d: &Daemon) -> Snapshot {
    let mut ports = d.ctl_value(&["port", "list"]);
    for p in ports.as_array_mut().expect("port list is not an array") {
        p.as_object_mut().unwrap().remove("learned_macs");
    }
    let fdb = d.ctl_value(&["fdb", "show"]);
    let static_fdb = fdb
        .as_array()
        .expect("fdb show is not an array")
        .iter()
        .filter(|e| e["kind"] == "static")
        .cloned()
        .collect();
    let state_file =
        fs::read(&d.state).unwrap_or_else(|e| panic!("cannot read {}: {e}", d.state.display()));
    Snapshot {
        ports,
        static_fdb,
        state_file,
    }
}

/// A failed vswitchctl call: non-zero exit, nothing on stdout, one line on stderr.
fn assert_failure(r: &CmdResult, what: &str) {
    assert!(
        !r.success(),
        "{what}: vswitchctl succeeded but must fail\nstdout: {}",
        r.stdout
    );
    let err = r.stderr.trim_end();
    assert!(!err.is_empty(), "{what}: failed without saying why");
    assert!(
        !err.contains('\n'),
        "{what}: error is more than one line:\n{err}"
    );
    assert!(
        r.stdout.is_empty(),
        "{what}: printed on stdout while failing:\n{}",
        r.stdout
    );
}

#[test]
fn bad_requests_change_nothing() {
    let Some(mut env) = TestEnv::with_daemon("bad_requests_change_nothing") else {
        return;
    };
    let a = env.add_pod("a", Attach::Afxdp);
    let t = env.add_pod("t", Attach::Tap);
    let tag = env.tag.clone();
    let d = env.daemon();
    d.ctl_ok(&["fdb", "add", "02:00:00:ee:00:01", &a.name]);
    let before = snapshot(d);

    let new = format!("{tag}x");
    let missing_ns = format!("{tag}nons");
    // Not namespaces: a FIFO (opening it to read would release a writer)
    // and a character device (opening it runs its driver's open routine).
    let fifo = env.dir.join("not-a-netns");
    let r = common::run_cmd(std::process::Command::new("mkfifo").arg(&fifo));
    assert!(r.success(), "mkfifo: {}", r.stderr);
    let fifo = fifo.to_str().unwrap().to_string();
    let nodev = format!("{tag}nodev");
    let too_long = format!("{tag}waytoolongname");
    let bad: Vec<(&str, Vec<&str>)> = vec![
        ("duplicate AF_XDP port", vec!["port", "add", &a.name]),
        (
            "duplicate TAP port",
            vec!["port", "add", &t.name, "--type", "tap"],
        ),
        (
            "port del of an unknown port",
            vec!["port", "del", "nosuchport"],
        ),
        (
            "fdb add on an unknown port",
            vec!["fdb", "add", "02:00:00:00:00:99", "nosuchport"],
        ),
        (
            "fdb add of an invalid MAC",
            vec!["fdb", "add", "not-a-mac", &a.name],
        ),
        (
            "fdb add of a 7-octet MAC",
            vec!["fdb", "add", "02:00:00:00:00:99:00", &a.name],
        ),
        (
            "TAP port with an invalid MAC",
            vec![
                "port",
                "add",
                &new,
                "--type",
                "tap",
                "--mac",
                "zz:00:00:00:00:01",
            ],
        ),
        (
            "TAP port in a missing netns",
            vec![
                "port",
                "add",
                &new,
                "--type",
                "tap",
                "--netns",
                &missing_ns,
                "--ifname",
                "eth0",
            ],
        ),
        (
            "TAP port in a missing netns path",
            vec![
                "port",
                "add",
                &new,
                "--type",
                "tap",
                "--netns",
                "/proc/999999999/ns/net",
                "--ifname",
                "eth0",
            ],
        ),
        (
            "TAP port named longer than an interface may be",
            vec!["port", "add", &too_long, "--type", "tap"],
        ),
        (
            "AF_XDP port on a missing interface",
            vec!["port", "add", &nodev],
        ),
        (
            "TAP port with a FIFO as its netns",
            vec!["port", "add", &new, "--type", "tap", "--netns", &fifo],
        ),
        (
            "TAP port with a character device as its netns",
            vec!["port", "add", &new, "--type", "tap", "--netns", "/dev/null"],
        ),
    ];
    for (what, args) in &bad {
        let r = d.ctl(args);
        assert_failure(&r, what);
        assert_eq!(snapshot(d), before, "{what} changed the switch's state");
        if args.contains(&"/dev/null") || args.contains(&fifo.as_str()) {
            assert!(
                r.stderr.contains("is not a namespace file"),
                "{what}: {}",
                r.stderr
            );
        }
    }
    assert!(
        !ip(&["link", "show", "dev", &new]).success(),
        "a refused TAP port left device {new} behind"
    );

    // Malformed lines straight on the socket, each on a fresh connection.
    let raw = [
        "not json",
        "{\"version\":3,\"command\":{\"op\":\"explode\"}}",
        "{\"version\":99,\"command\":{\"op\":\"port_del\",\"args\":{\"name\":\"x\"}}}",
        "{\"version\":3,\"command\":{\"op\":\"fdb_add\",\"args\":{\"mac\":\"nope\",\"port\":\"x\"}}}",
        "{\"version\":3,\"command\":{\"op\":\"port_del\",\"args\":{}}}",
        "{\"version\":3,\"command\":{\"op\":\"port_add\",\"args\":{\"name\":\"\"}}}",
        "{\"version\":3,\"command\":{\"op\":\"port_add\",\"args\":{\"name\":\"x\",\"type\":\"bogus\"}}}",
        "{\"version\":3}",
        "{\"version\":3,\"command\":{\"op\":\"ct_list\",\"args\":{\"after\":\"zz\"}}}",
        "{\"version\":3,\"command\":{\"op\":\"ct_list\",\"args\":{\"after\":\"ff\"}}}",
        "{\"version\":3,\"command\":{\"op\":\"ct_list\",\"args\":{\"limit\":0}}}",
        "[]",
        "{\"version\":3,\"command\":{\"op\":\"port_add\",\"args\":{\"name\":\"x\"}}",
    ];
    for line in raw {
        let resp = ctl::Client::connect(&d.socket)
            .unwrap()
            .call_raw(line)
            .unwrap_or_else(|e| panic!("no answer to {line:?}: {e}"));
        let resp: ctl::Response = serde_json::from_str(&resp)
            .unwrap_or_else(|e| panic!("answer to {line:?} is not a Response ({e}): {resp}"));
        assert!(!resp.ok, "daemon accepted {line:?}");
        assert!(
            resp.error.as_deref().is_some_and(|e| !e.is_empty()),
            "no error message for {line:?}"
        );
        assert_eq!(snapshot(d), before, "{line:?} changed the switch's state");
    }

    // Bytes that are not UTF-8, and a line cut off by a closing client.
    for bytes in [&b"\xff\xfe\x00garbage\n"[..], &b"{\"version\":3,\"comm"[..]] {
        let mut s = UnixStream::connect(&d.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(bytes).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer); // An error answer or a closed connection, both fine.
        assert!(
            !answer.contains("\"ok\":true"),
            "daemon accepted {bytes:?}: {answer}"
        );
    }
    let d = env.daemon_mut();
    assert!(d.is_running(), "vswitchd died on bad input");
    let d = env.daemon();
    assert_eq!(
        snapshot(d),
        before,
        "raw garbage changed the switch's state"
    );

    // The snapshot notices a change: a valid request after all of this works.
    d.ctl_ok(&["fdb", "add", "02:00:00:ee:00:02", &a.name]);
    assert_ne!(snapshot(d), before, "a valid fdb add changed nothing");
}

/// A veth cannot do zero-copy AF_XDP: asking for it must fail, not leave a
/// port behind that silently runs in copy mode or stays down.
#[test]
fn zerocopy_on_veth_is_refused() {
    let Some(mut env) = TestEnv::with_daemon("zerocopy_on_veth_is_refused") else {
        return;
    };
    // A pod, so that the state file exists.
    let _a = env.add_pod("a", Attach::Afxdp);
    // A second veth whose host end is not attached yet.
    let host = format!("{}z", env.tag);
    let peer = format!("{}zp", env.tag);
    let _veth = VethGuard::new(&host, &peer);
    let d = env.daemon();
    let before = snapshot(d);
    let r = d.ctl(&["port", "add", &host, "--mode", "zerocopy"]);
    assert_failure(&r, "zerocopy AF_XDP port on a veth");
    assert_eq!(
        snapshot(d),
        before,
        "refused zerocopy port changed the state"
    );
    // Native mode works on veth.
    d.ctl_ok(&["port", "add", &host, "--mode", "native"]);
    d.wait_ports_up(&[&host]);
    let p = d.port(&host);
    assert_eq!(p.requested_mode, XdpMode::Native);
    assert_eq!(p.mode, "native");
    d.ctl_ok(&["port", "del", &host]);
    assert!(
        !d.port_list().iter().any(|p| p.name == host),
        "port del left the port listed"
    );
}

/// A port's learned-MAC limit: a second MAC behind a port that may learn
/// one is dropped and counted, the first keeps working.
#[test]
fn mac_limit_drops_and_counts_extra_macs() {
    let Some(mut env) = TestEnv::new("mac_limit_drops_and_counts_extra_macs") else {
        return;
    };
    let opts = DaemonOpts {
        extra: ["--mac-limit", "1"].map(String::from).to_vec(),
        ..DaemonOpts::default()
    };
    env.start_daemon_with(opts);
    let a = env.add_pod("a", Attach::Afxdp);
    let b = env.add_pod("b", Attach::Afxdp);
    env.ping(&a, &b);

    // A macvlan on the pod's eth0 sends with a second MAC through the same port.
    let second_mac = "02:00:00:ee:00:42";
    for args in [
        vec![
            "ip", "link", "add", "link", "eth0", "name", "mv0", "address", second_mac, "type",
            "macvlan", "mode", "bridge",
        ],
        vec!["ip", "addr", "add", "10.77.0.99/24", "dev", "mv0"],
        vec!["ip", "link", "set", "dev", "mv0", "up"],
    ] {
        let r = common::netns_exec(&a.name, &args);
        assert!(r.success(), "{args:?} in {}: {}", a.name, r.stderr);
    }
    let d = env.daemon();
    let before = d.port_stats(&a.name).drops["mac_limit"];
    let r = common::netns_exec(
        &a.name,
        &[
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "1",
            "-I",
            "mv0",
            &b.ip.to_string(),
        ],
    );
    assert!(
        !r.success(),
        "a MAC beyond the limit got through:\n{}",
        r.stdout
    );
    let after = d.port_stats(&a.name).drops["mac_limit"];
    assert!(
        after > before,
        "frames over the MAC limit not counted as mac_limit drops ({before} -> {after})"
    );
    let on_a: Vec<_> = d
        .fdb()
        .into_iter()
        .filter(|e| e.port == a.name && e.kind == FdbKind::Learned)
        .collect();
    assert_eq!(
        on_a.len(),
        1,
        "port {} learned more MACs than its limit: {on_a:#?}",
        a.name
    );
    assert_eq!(on_a[0].mac, a.mac, "the first MAC was displaced");
    assert_eq!(d.port(&a.name).learned_macs, 1);
    env.ping(&a, &b);
}

/// `port del` hands the interface back: an AF_XDP port's XDP program is
/// detached (the port can be added again and forwards again), a TAP port's
/// device disappears from the pod.
#[test]
fn port_del_hands_the_interface_back() {
    let Some(mut env) = TestEnv::with_daemon("port_del_hands_the_interface_back") else {
        return;
    };
    let a = env.add_pod("a", Attach::Afxdp);
    let b = env.add_pod("b", Attach::Afxdp);
    let t = env.add_pod("t", Attach::Tap);
    env.ping_all(&[&a, &b, &t]);
    let has_xdp = |name: &str| {
        let r = ip(&["-j", "link", "show", "dev", name]);
        assert!(r.success(), "ip link show {name}: {}", r.stderr);
        r.stdout.contains("\"xdp\"")
    };
    assert!(
        has_xdp(&a.name),
        "no XDP program on the attached veth {}",
        a.name
    );

    let d = env.daemon();
    d.ctl_ok(&["port", "del", &a.name]);
    d.ctl_ok(&["port", "del", &t.name]);
    let names: Vec<String> = d.port_list().into_iter().map(|p| p.name).collect();
    assert_eq!(names, vec![b.name.clone()], "port del left ports listed");
    let state = fs::read_to_string(&d.state).unwrap();
    for gone in [&a, &t] {
        assert!(
            !state.contains(&format!("\"{}\"", gone.name)),
            "state file still lists {}:\n{state}",
            gone.name
        );
    }
    assert!(
        !has_xdp(&a.name),
        "port del left the XDP program on {}",
        a.name
    );
    let eth0 = common::netns_exec(&t.name, &["ip", "link", "show", "dev", "eth0"]);
    assert!(!eth0.success(), "port del left the TAP in pod {}", t.name);

    // The same veth can be attached again and forwards again.
    d.ctl_ok(&["port", "add", &a.name]);
    d.wait_ports_up(&[&a.name]);
    env.ping_all(&[&a, &b]);
}

/// `port add --may-exist` and `port del --if-exists` make the commands
/// idempotent, as a CNI plugin retrying ADD and DEL needs; without the flags
/// the repeats are refused; either way nothing changes.
#[test]
fn may_exist_and_if_exists_make_port_commands_idempotent() {
    let Some(mut env) = TestEnv::with_daemon("may_exist_and_if_exists") else {
        return;
    };
    let a = env.add_pod("a", Attach::Afxdp);
    let d = env.daemon();
    let before = snapshot(d);

    d.ctl_ok(&["port", "add", &a.name, "--may-exist"]);
    assert_eq!(
        snapshot(d),
        before,
        "--may-exist of an identical port changed state"
    );
    assert_failure(&d.ctl(&["port", "add", &a.name]), "repeated port add");
    // The refusal says what differs.
    d.ctl_refused(
        &["port", "add", &a.name, "--mode", "generic", "--may-exist"],
        "already exists with other settings: mode auto, asked generic",
    );
    d.ctl_refused(
        &["port", "add", &a.name, "--queues", "2", "--may-exist"],
        "already exists with other settings: queues default, asked 2",
    );
    assert_eq!(snapshot(d), before);

    d.ctl_ok(&["port", "del", "no-such-port", "--if-exists"]);
    assert_failure(
        &d.ctl(&["port", "del", "no-such-port"]),
        "port del of a missing port",
    );
    assert_eq!(snapshot(d), before);

    d.ctl_ok(&["port", "del", &a.name, "--if-exists"]);
    assert!(d.port_list().iter().all(|p| p.name != a.name));
    d.ctl_ok(&["port", "del", &a.name, "--if-exists"]);
}

/// The controller (vswitchd's main thread) runs on the cores without a
/// worker, each worker on its own core: a sweep or a burst of requests
/// never takes a worker's time.
#[test]
fn the_controller_stays_off_the_workers_cores() {
    let Some(env) = TestEnv::with_daemon("controller_cores") else {
        return;
    };
    let d = env.daemon();
    let worker: usize = d.opts.cores.parse().expect("one worker core");
    let all = common::allowed_cores();
    assert!(all.len() >= 2, "this test needs two usable cores: {all:?}");
    let pid = d.pid();
    let controller = common::cores_allowed(&format!("/proc/{pid}/status"));
    let mut rest = all.clone();
    rest.retain(|&c| c != worker);
    assert_eq!(
        controller, rest,
        "the controller may run on {controller:?}; the cores without a worker are {rest:?}"
    );
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let mut workers = 0;
    for t in tasks {
        let dir = t.unwrap().path();
        let name = fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if name.trim() == "vswitch-w0" {
            workers += 1;
            let cores = common::cores_allowed(dir.join("status").to_str().unwrap());
            assert_eq!(cores, vec![worker], "worker 0 is not pinned to its core");
        }
    }
    assert_eq!(
        workers, 1,
        "no worker thread vswitch-w0 in /proc/{pid}/task"
    );
}

/// What a program adds with its name as the owner (as vswitch-agent does)
/// is listed with it and keeps it across a restart; what is added by hand
/// has none, and a program's `may_exist` does not take it over.
#[test]
fn owners_are_listed_and_kept_across_a_restart() {
    let Some(mut env) = TestEnv::with_daemon("owners_are_listed_and_kept_across_a_restart") else {
        return;
    };
    let owner = Some("vswitch-agent".to_string());
    let call = |d: &Daemon, cmd: ctl::Command| {
        let mut c = ctl::Client::connect(&d.socket).unwrap();
        c.call(cmd).unwrap_or_else(|e| panic!("{e}"))
    };
    let d = env.daemon();
    d.ctl_ok(&["addr", "add", "10.79.1.1/24"]);
    call(
        d,
        ctl::Command::AddrAdd {
            addr: "10.79.2.1/24".parse().unwrap(),
            may_exist: false,
            owner: owner.clone(),
        },
    );
    // may_exist on the hand-made address: accepted, still hand-made.
    call(
        d,
        ctl::Command::AddrAdd {
            addr: "10.79.1.1/24".parse().unwrap(),
            may_exist: true,
            owner: owner.clone(),
        },
    );
    call(
        d,
        ctl::Command::RouteAdd(ctl::RouteSpec {
            prefix: "10.79.9.0/24".parse().unwrap(),
            via: Some("10.79.2.9".parse().unwrap()),
            dev: None,
            encap: None,
            owner: owner.clone(),
            may_exist: false,
        }),
    );
    let svc = ctl::ServiceSpec {
        owner: owner.clone(),
        ..ctl::ServiceSpec::new("10.96.7.1:80/tcp".parse().unwrap(), vec![])
    };
    call(d, ctl::Command::ServiceAdd(svc));
    d.ctl_ok(&["service", "add", "10.96.7.2:80/tcp"]);

    let check = |d: &Daemon, when: &str| {
        let addrs = d.ctl_value(&["addr", "list"]);
        let owner_of = |list: &serde_json::Value, field: &str, key: &str| {
            list.as_array()
                .unwrap()
                .iter()
                .find(|e| e[field] == key)
                .unwrap_or_else(|| panic!("{when}: no {key} in {list}"))
                .get("owner")
                .cloned()
        };
        assert_eq!(
            owner_of(&addrs, "addr", "10.79.2.1/24"),
            Some("vswitch-agent".into()),
            "{when}"
        );
        assert_eq!(
            owner_of(&addrs, "addr", "10.79.1.1/24"),
            None,
            "{when}: hand-made stays so"
        );
        let routes = d.ctl_value(&["route", "list"]);
        assert_eq!(
            owner_of(&routes, "prefix", "10.79.9.0/24"),
            Some("vswitch-agent".into()),
            "{when}"
        );
        let services = d.ctl_value(&["service", "list"]);
        assert_eq!(
            owner_of(&services, "service", "10.96.7.1:80/tcp"),
            Some("vswitch-agent".into()),
            "{when}"
        );
        assert_eq!(
            owner_of(&services, "service", "10.96.7.2:80/tcp"),
            None,
            "{when}"
        );
    };
    check(env.daemon(), "before the restart");
    // service backends keeps the owner.
    env.daemon()
        .ctl_ok(&["service", "backends", "10.96.7.1:80/tcp", "10.79.2.5:8080"]);
    let d = env.take_daemon();
    d.stop();
    env.start_daemon();
    check(env.daemon(), "after a restart");
}
