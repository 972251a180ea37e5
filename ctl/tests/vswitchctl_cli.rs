//! The `vswitchctl` binary's failure contract, end to end: a usage error
//! prints exactly one `vswitchctl: ...` line on stderr, nothing on stdout,
//! and exits 2 without touching the socket; a request that cannot be sent
//! exits 1. Argument parsing itself is tested beside the code.

use std::process::{Command, Output};

/// A socket path no daemon listens on, so nothing here can reach a real vswitchd.
const NO_DAEMON: &str = "/nonexistent/vswitchctl-test.sock";

fn vswitchctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
        .args(args)
        .env("VSWITCH_SOCKET", NO_DAEMON)
        .output()
        .expect("run vswitchctl")
}

/// Runs `args`, checks the one-line failure contract and returns the message.
fn failure(args: &[&str], code: i32) -> String {
    let out = vswitchctl(args);
    let stderr = String::from_utf8(out.stderr).expect("UTF-8 stderr");
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
    assert!(stderr.ends_with('\n'), "{stderr:?}");
    let line = stderr.trim_end();
    assert!(line.starts_with("vswitchctl: "), "{line}");
    line.to_string()
}

#[test]
fn l3_usage_errors_are_one_line_and_exit_2() {
    for (args, needle) in [
        (&["addr", "add", "10.244.1.1"][..], "missing prefix length"),
        (
            &["route", "add", "10.244.2.1/24", "via", "192.168.50.2"][..],
            "10.244.2.1/24 has host bits set; did you mean 10.244.2.0/24?",
        ),
        (
            &["route", "add", "10.244.2.0/24"][..],
            "expected 'via NEXTHOP' or 'dev PORT'",
        ),
        (
            &[
                "route",
                "add",
                "default",
                "via",
                "192.168.50.1",
                "dev",
                "eth1",
            ][..],
            "not both",
        ),
        (
            &["route", "add", "10.244.2.0/24", "nexthop", "192.168.50.2"][..],
            "unknown keyword 'nexthop'",
        ),
        (
            &[
                "route",
                "add",
                "10.244.2.0/24",
                "via",
                "192.168.50.2",
                "--vni",
                "5",
            ][..],
            "--vni applies only with --encap vxlan",
        ),
        (
            &[
                "route",
                "add",
                "10.244.2.0/24",
                "via",
                "192.168.50.2",
                "--encap",
                "vxlan",
                "--vni",
                "16777216",
            ][..],
            "16777216 is not in 1..=16777215",
        ),
        (
            &["port", "add", "eth1", "--uplink", "--host"][..],
            "cannot be used with",
        ),
        (
            &["port", "add", "pod1", "--ip", "10.244.1.5/24"][..],
            "no prefix length",
        ),
    ] {
        let line = failure(args, 2);
        assert!(line.contains(needle), "{args:?}: {line}");
    }
}

#[test]
fn valid_l3_commands_get_as_far_as_connecting() {
    for args in [
        &["addr", "add", "10.244.1.1/24", "--may-exist"][..],
        &["addr", "list"][..],
        &[
            "route",
            "add",
            "10.244.2.0/24",
            "via",
            "192.168.50.2",
            "--encap",
            "vxlan",
            "--vni",
            "42",
        ][..],
        &["route", "del", "default", "--if-exists"][..],
        &["neigh", "list", "-o", "json"][..],
        &[
            "port",
            "add",
            "pod1",
            "--ip",
            "10.244.1.5",
            "--ip",
            "fd00::5",
        ][..],
    ] {
        let line = failure(args, 1);
        assert!(line.contains("cannot connect"), "{args:?}: {line}");
    }
}

#[test]
fn service_usage_errors_are_one_line_and_exit_2() {
    for (args, needle) in [
        (
            &["service", "add", "10.96.0.10:80"][..],
            "invalid value '10.96.0.10:80' for '<VIP:PORT/PROTO>': expected VIP:PORT/PROTO",
        ),
        (
            &["service", "del", "10.96.0.10:80/icmp"][..],
            "expected tcp, udp or sctp",
        ),
        (
            &[
                "service",
                "backends",
                "10.96.0.10:80/tcp",
                "10.244.1.5:80",
                "--terminating",
                "10.244.1.5:80",
            ][..],
            "backend 10.244.1.5:80 listed twice",
        ),
        (
            &[
                "service",
                "add",
                "10.96.0.10:80/tcp",
                "--affinity-timeout",
                "86401",
            ][..],
            "86401 is not in 1..=86400",
        ),
    ] {
        let line = failure(args, 2);
        assert!(line.contains(needle), "{args:?}: {line}");
    }
}

#[test]
fn batch_reports_its_bad_line_and_sends_nothing() {
    let path = std::env::temp_dir().join(format!("vswitchctl-cli-{}.batch", std::process::id()));
    std::fs::write(
        &path,
        "# two Services\n\
         service add 10.96.0.10:80/tcp --backend 10.244.1.5:8080\n\
         service add 10.96.0.11:80/tcp --backend 10.244.1.5\n",
    )
    .expect("write batch file");
    let line = failure(&["batch", path.to_str().unwrap()], 2);
    let _ = std::fs::remove_file(&path);
    assert!(
        line.starts_with(
            "vswitchctl: line 3: invalid value '10.244.1.5' for '--backend <IP:PORT>'"
        ),
        "{line}"
    );
}

#[test]
fn valid_service_commands_get_as_far_as_connecting() {
    for args in [
        &[
            "service",
            "add",
            "[fd00::10]:53/udp",
            "--backend",
            "[fd00:10:244:1::5]:53",
            "--affinity",
            "client-ip",
            "--node-port",
            "30053",
        ][..],
        &["service", "del", "10.96.0.10:80/tcp", "--if-exists"][..],
        &["service", "list", "-o", "json"][..],
        &["ct", "stats"][..],
        // An empty standard input is an empty batch.
        &["batch"][..],
    ] {
        let line = failure(args, 1);
        assert!(line.contains("cannot connect"), "{args:?}: {line}");
    }
}
