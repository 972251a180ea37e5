//! Tests of the top level, the port and fdb nouns and the addr, route
//! and neigh nouns.

use std::path::Path;

use clap::CommandFactory;

use super::test_utils::{command, ip, net, parse, static_route, usage_error};
use super::*;
use crate::{Encap, MacAddr, PortSpec, PortType, RouteSpec, XdpMode};

#[test]
fn clap_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn socket_defaults_and_reads_the_environment() {
    let cmd = Cli::command();
    let socket = cmd
        .get_arguments()
        .find(|a| a.get_id() == "socket")
        .expect("--socket");
    assert_eq!(
        socket.get_env().and_then(|e| e.to_str()),
        Some("VSWITCH_SOCKET")
    );
    let cli = parse(&["--socket", "/tmp/x.sock", "show"]).unwrap();
    assert_eq!(cli.socket, Path::new("/tmp/x.sock"));
    // Global options may also follow the subcommand.
    let cli = parse(&["port", "list", "-o", "json"]).unwrap();
    assert_eq!(cli.output, Format::Json);
}

#[test]
fn each_subcommand_maps_to_one_command() {
    let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
    let cases: Vec<(Vec<&str>, Command)> = vec![
        (vec!["show"], Command::Show),
        (
            vec!["port", "add", "veth1"],
            Command::PortAdd(PortSpec::afxdp("veth1")),
        ),
        (
            vec!["port", "del", "veth1"],
            Command::PortDel {
                name: "veth1".into(),
                if_exists: false,
            },
        ),
        (
            vec!["port", "del", "veth1", "--if-exists"],
            Command::PortDel {
                name: "veth1".into(),
                if_exists: true,
            },
        ),
        (
            vec!["port", "add", "veth1", "--may-exist"],
            Command::PortAdd(PortSpec {
                may_exist: true,
                ..PortSpec::afxdp("veth1")
            }),
        ),
        (vec!["port", "list"], Command::PortList),
        (vec!["fdb", "show"], Command::FdbShow),
        (
            vec!["fdb", "add", "02:00:00:00:00:01", "pod1"],
            Command::FdbAdd {
                mac,
                port: "pod1".into(),
            },
        ),
        (
            vec!["fdb", "del", "02-00-00-00-00-01"],
            Command::FdbDel { mac },
        ),
        (vec!["fdb", "flush"], Command::FdbFlush),
        (vec!["stats"], Command::Stats { port: None }),
        (
            vec!["stats", "pod1"],
            Command::Stats {
                port: Some("pod1".into()),
            },
        ),
    ];
    for (args, want) in cases {
        assert_eq!(command(&args), Ok(want), "{args:?}");
    }
}

#[test]
fn port_add_with_every_option() {
    let got = command(&[
        "port",
        "add",
        "tap0",
        "--type",
        "tap",
        "--mac",
        "02:00:00:00:00:09",
        "--netns",
        "/proc/42/ns/net",
        "--ifname",
        "eth0",
        "--ip",
        "10.244.1.5",
        "--ip",
        "fd00:10:244:1::5",
    ]);
    let want = PortSpec {
        name: "tap0".into(),
        port_type: PortType::Tap,
        mode: XdpMode::Auto,
        mac: Some("02:00:00:00:00:09".parse().unwrap()),
        netns: Some("/proc/42/ns/net".into()),
        ifname: Some("eth0".into()),
        ips: vec![
            "10.244.1.5".parse().unwrap(),
            "fd00:10:244:1::5".parse().unwrap(),
        ],
        uplink: false,
        host: false,
        offload: None,
        queues: 1,
        may_exist: false,
    };
    assert_eq!(got, Ok(Command::PortAdd(want)));
    let got = command(&["port", "add", "t", "--type", "tap", "--offload", "off"]);
    let want = PortSpec {
        port_type: PortType::Tap,
        offload: Some(false),
        ..PortSpec::afxdp("t")
    };
    assert_eq!(got, Ok(Command::PortAdd(want)));
    let line = usage_error(&["port", "add", "t", "--type", "tap", "--offload", "maybe"]);
    assert!(line.contains("'maybe' is neither 'on' nor 'off'"), "{line}");
    let got = command(&["port", "add", "veth1", "--queues", "4"]);
    let want = PortSpec {
        queues: 4,
        ..PortSpec::afxdp("veth1")
    };
    assert_eq!(got, Ok(Command::PortAdd(want)));
    for bad in ["0", "33", "two"] {
        let line = usage_error(&["port", "add", "veth1", "--queues", bad]);
        assert!(line.contains("--queues"), "{bad}: {line}");
    }
    let got = command(&["port", "add", "veth1", "--mode", "zerocopy"]);
    let mut want = PortSpec::afxdp("veth1");
    want.mode = XdpMode::Zerocopy;
    assert_eq!(got, Ok(Command::PortAdd(want)));
}

#[test]
fn tap_options_are_rejected_for_afxdp_ports() {
    for (args, flag) in [
        (
            &["port", "add", "v", "--mac", "02:00:00:00:00:01"][..],
            "--mac",
        ),
        (&["port", "add", "v", "--netns", "pod1"][..], "--netns"),
        (&["port", "add", "v", "--offload", "on"][..], "--offload"),
        (
            &[
                "port", "add", "v", "--type", "afxdp", "--netns", "n", "--ifname", "e",
            ][..],
            "--netns",
        ),
    ] {
        match command(args) {
            Err(Failure::Usage(m)) => {
                assert!(m.starts_with(flag) && m.contains("--type tap"), "{m}")
            }
            other => panic!("{args:?}: {other:?}"),
        }
    }
    match command(&["port", "add", "t", "--type", "tap", "--mode", "native"]) {
        Err(Failure::Usage(m)) => assert!(m.contains("--mode"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn clap_rejects_bad_values_with_a_usage_error() {
    for args in [
        &["port", "add", "t", "--type", "tap", "--ifname", "eth0"][..],
        &["port", "add", "t", "--type", "bogus"][..],
        &[
            "port",
            "add",
            "t",
            "--type",
            "tap",
            "--mac",
            "02:00:00:00:00",
        ][..],
        &["fdb", "add", "nope", "pod1"][..],
        &["port", "del", ""][..],
        &["-o", "yaml", "show"][..],
        &["frobnicate"][..],
        &[][..],
        &["port"][..],
    ] {
        let err = parse(args).expect_err("must not parse");
        assert_eq!(err.exit_code(), i32::from(EXIT_USAGE), "{args:?}");
        let line = usage_line(&err);
        assert!(!line.contains('\n') && !line.is_empty(), "{line:?}");
        assert!(!line.starts_with("error:"), "{line:?}");
    }
    let err = parse(&["fdb", "add", "zz:00:00:00:00:00", "p"]).unwrap_err();
    let line = usage_line(&err);
    assert!(
        line.contains("invalid MAC address 'zz:00:00:00:00:00'"),
        "{line}"
    );
    assert!(!line.contains("For more information"), "{line}");
    let line = usage_line(&parse(&["fdb"]).unwrap_err());
    assert!(
        line.starts_with("incomplete command, usage: vswitchctl fdb "),
        "{line}"
    );
}

#[test]
fn port_add_roles() {
    let got = command(&["port", "add", "eth1", "--uplink", "--ip", "192.168.50.1"]);
    let want = PortSpec {
        uplink: true,
        ips: vec![ip("192.168.50.1")],
        ..PortSpec::afxdp("eth1")
    };
    assert_eq!(got, Ok(Command::PortAdd(want)));
    let got = command(&["port", "add", "vsw0", "--type", "tap", "--host"]);
    let want = PortSpec {
        port_type: PortType::Tap,
        host: true,
        ..PortSpec::afxdp("vsw0")
    };
    assert_eq!(got, Ok(Command::PortAdd(want)));
    let line = usage_error(&["port", "add", "p", "--uplink", "--host"]);
    assert!(
        line.contains("'--uplink' cannot be used with '--host'"),
        "{line}"
    );
}

#[test]
fn port_add_ip_takes_a_plain_address() {
    let line = usage_error(&["port", "add", "p", "--ip", "10.244.1.5/24"]);
    assert!(
        line.contains("a pod address takes no prefix length; give --ip 10.244.1.5"),
        "{line}"
    );
    let line = usage_error(&["port", "add", "p", "--ip", "pod1"]);
    assert!(
        line.contains("invalid value 'pod1' for '--ip <ADDR>'"),
        "{line}"
    );
    assert!(line.contains("expected an IPv4 or IPv6 address"), "{line}");
}

#[test]
fn addr_commands_keep_host_bits() {
    let cases: Vec<(Vec<&str>, Command)> = vec![
        (
            vec!["addr", "add", "10.244.1.1/24"],
            Command::AddrAdd {
                owner: None,
                addr: net("10.244.1.1/24"),
                may_exist: false,
            },
        ),
        (
            vec!["addr", "add", "fd00:10:244:1::1/64", "--may-exist"],
            Command::AddrAdd {
                owner: None,
                addr: net("fd00:10:244:1::1/64"),
                may_exist: true,
            },
        ),
        (
            vec!["addr", "del", "10.244.1.1/24", "--if-exists"],
            Command::AddrDel {
                addr: net("10.244.1.1/24"),
                if_exists: true,
            },
        ),
        (vec!["addr", "list"], Command::AddrList),
        (vec!["neigh", "list"], Command::NeighList),
        (vec!["route", "list"], Command::RouteList),
    ];
    for (args, want) in cases {
        assert_eq!(command(&args), Ok(want), "{args:?}");
    }
    // The host bits survive parsing: this is the address .1, not the subnet.
    match command(&["addr", "add", "10.244.1.1/24"]) {
        Ok(Command::AddrAdd { addr, .. }) => {
            assert_eq!(addr.addr(), ip("10.244.1.1"));
            assert_eq!(addr.prefix_len(), 24);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn addr_without_prefix_is_a_usage_error() {
    let line = usage_error(&["addr", "add", "10.244.1.1"]);
    assert!(
        line.contains("missing prefix length") && line.contains("such as 10.244.1.1/24"),
        "{line}"
    );
    let line = usage_error(&["addr", "del", "fd00::1"]);
    assert!(line.contains("such as fd00::1/64"), "{line}");
    for bad in ["10.244.1.1/33", "10.244.1/24", "gateway"] {
        let line = usage_error(&["addr", "add", bad]);
        assert!(
            line.contains(&format!("invalid value '{bad}' for '<ADDR/PREFIX>'")),
            "{line}"
        );
    }
}

#[test]
fn route_add_via_and_dev() {
    let cases: Vec<(Vec<&str>, RouteSpec)> = vec![
        (
            vec!["route", "add", "10.244.2.0/24", "via", "192.168.50.2"],
            RouteSpec {
                via: Some(ip("192.168.50.2")),
                ..static_route("10.244.2.0/24")
            },
        ),
        (
            vec![
                "route",
                "add",
                "10.244.9.0/24",
                "dev",
                "uplink0",
                "--may-exist",
            ],
            RouteSpec {
                dev: Some("uplink0".into()),
                may_exist: true,
                ..static_route("10.244.9.0/24")
            },
        ),
        (
            vec![
                "route",
                "add",
                "10.244.2.0/24",
                "via",
                "192.168.50.2",
                "--encap",
                "vxlan",
                "--vni",
                "16777215",
            ],
            RouteSpec {
                via: Some(ip("192.168.50.2")),
                encap: Some(Encap::Vxlan { vni: 16_777_215 }),
                ..static_route("10.244.2.0/24")
            },
        ),
        (
            // Options may come before the keyword pair too.
            vec![
                "route",
                "add",
                "--encap",
                "vxlan",
                "--vni",
                "1",
                "10.244.2.0/24",
                "via",
                "192.168.50.2",
            ],
            RouteSpec {
                via: Some(ip("192.168.50.2")),
                encap: Some(Encap::Vxlan { vni: 1 }),
                ..static_route("10.244.2.0/24")
            },
        ),
        (
            vec!["route", "add", "default", "via", "192.168.50.1"],
            RouteSpec {
                via: Some(ip("192.168.50.1")),
                ..static_route("0.0.0.0/0")
            },
        ),
        (
            vec!["route", "add", "0.0.0.0/0", "via", "192.168.50.1"],
            RouteSpec {
                via: Some(ip("192.168.50.1")),
                ..static_route("0.0.0.0/0")
            },
        ),
        (
            vec!["route", "add", "fd00:10:244:2::/64", "via", "fd00::2"],
            RouteSpec {
                via: Some(ip("fd00::2")),
                ..static_route("fd00:10:244:2::/64")
            },
        ),
    ];
    for (args, want) in cases {
        assert_eq!(command(&args), Ok(Command::RouteAdd(want)), "{args:?}");
    }
}

#[test]
fn route_del_accepts_default() {
    for (arg, prefix) in [
        ("default", "0.0.0.0/0"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("10.244.2.0/24", "10.244.2.0/24"),
    ] {
        assert_eq!(
            command(&["route", "del", arg]),
            Ok(Command::RouteDel {
                prefix: net(prefix),
                if_exists: false
            })
        );
    }
    assert_eq!(
        command(&["route", "del", "default", "--if-exists"]),
        Ok(Command::RouteDel {
            prefix: net("0.0.0.0/0"),
            if_exists: true
        })
    );
}

#[test]
fn route_add_keyword_errors() {
    let prefix = ["route", "add", "10.244.2.0/24"];
    for (words, needle) in [
        (
            &[][..],
            "missing destination; expected 'via NEXTHOP' or 'dev PORT'",
        ),
        (&["via"][..], "'via' needs a next-hop address"),
        (&["dev"][..], "'dev' needs a port name"),
        (&["dev", ""][..], "'dev' needs a port name"),
        (&["via", "dev", "p1"][..], "'via' needs a next-hop address"),
        (
            &["gw", "192.168.50.2"][..],
            "unknown keyword 'gw'; expected 'via NEXTHOP' or 'dev PORT'",
        ),
        (
            &["via", "192.168.50.2", "dev", "uplink0"][..],
            "either 'via NEXTHOP' or 'dev PORT', not both",
        ),
        (
            &["via", "192.168.50.2", "via", "192.168.50.3"][..],
            "'via' is given twice",
        ),
        (&["dev", "a", "dev", "b"][..], "'dev' is given twice"),
        (
            &["via", "node2"][..],
            "invalid next hop 'node2': expected an IPv4 or IPv6 address",
        ),
        (
            &["via", "fd00::2"][..],
            "next hop fd00::2 is IPv6 but 10.244.2.0/24 is IPv4",
        ),
    ] {
        let args: Vec<&str> = prefix.iter().chain(words).copied().collect();
        let line = usage_error(&args);
        assert!(line.contains(needle), "{args:?}: {line}");
    }
    let line = usage_error(&["route", "add", "default", "via", "fd00::1"]);
    assert!(
        line.ends_with("0.0.0.0/0 is IPv4; the IPv6 default route is ::/0"),
        "{line}"
    );
    assert_eq!(
        command(&["route", "add", "::/0", "via", "fd00::1"]),
        Ok(Command::RouteAdd(RouteSpec {
            via: Some(ip("fd00::1")),
            ..static_route("::/0")
        }))
    );
    let line = usage_error(&["route", "add", "fd00::/64", "via", "10.0.0.1"]);
    assert!(
        line.contains("next hop 10.0.0.1 is IPv4 but fd00::/64 is IPv6"),
        "{line}"
    );
}

#[test]
fn route_add_encap_errors() {
    let base = ["route", "add", "10.244.2.0/24", "via", "192.168.50.2"];
    for (extra, needle) in [
        (
            &["--encap", "vxlan"][..],
            "--encap vxlan needs --vni N (1-16777215)",
        ),
        (
            &["--vni", "42"][..],
            "--vni applies only with --encap vxlan",
        ),
        (
            &["--encap", "vxlan", "--vni", "0"][..],
            "0 is not in 1..=16777215",
        ),
        (
            &["--encap", "vxlan", "--vni", "16777216"][..],
            "16777216 is not in 1..=16777215",
        ),
        (
            &["--encap", "vxlan", "--vni", "-1"][..],
            "-1 is not in 1..=16777215",
        ),
        (
            &["--encap", "gre", "--vni", "1"][..],
            "possible values: vxlan",
        ),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let line = usage_error(&args);
        assert!(line.contains(needle), "{args:?}: {line}");
    }
    let line = usage_error(&[
        "route",
        "add",
        "10.244.2.0/24",
        "dev",
        "uplink0",
        "--encap",
        "vxlan",
        "--vni",
        "7",
    ]);
    assert!(line.contains("--encap needs 'via NEXTHOP'"), "{line}");
}

#[test]
fn route_prefix_errors() {
    for verb in ["add", "del"] {
        let usage_error = |prefix: &str| {
            let mut args = vec!["route", verb, prefix];
            if verb == "add" {
                args.extend(["via", "192.168.50.2"]);
            }
            usage_error(&args)
        };
        let line = usage_error("10.244.2.1/24");
        assert!(
            line.contains("10.244.2.1/24 has host bits set; did you mean 10.244.2.0/24?"),
            "{line}"
        );
        let line = usage_error("fd00::1/64");
        assert!(line.contains("did you mean fd00::/64?"), "{line}");
        let line = usage_error("10.0.0.5");
        assert!(
            line.contains("missing prefix length") && line.contains("10.0.0.5/32"),
            "{line}"
        );
        let line = usage_error("Default");
        assert!(
            line.contains("expected a prefix such as 10.244.2.0/24, or 'default'"),
            "{line}"
        );
    }
}

#[test]
fn l3_usage_errors_are_one_line() {
    for args in [
        &["addr", "add", "10.244.1.1"][..],
        &["port", "add", "p", "--uplink", "--host"][..],
        &["route", "add", "10.244.2.1/24", "via", "192.168.50.2"][..],
        &[
            "route",
            "add",
            "10.244.2.0/24",
            "via",
            "1.2.3.4",
            "--vni",
            "0",
        ][..],
        &["route", "add"][..],
        &["route"][..],
        &["neigh"][..],
    ] {
        let err = parse(args).expect_err("must not parse");
        assert_eq!(err.exit_code(), i32::from(EXIT_USAGE), "{args:?}");
        let line = usage_line(&err);
        assert!(!line.contains('\n') && !line.is_empty(), "{line:?}");
        assert!(!line.starts_with("error:"), "{line:?}");
    }
}
