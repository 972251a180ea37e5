//! Service configuration through a real vswitchd: bad input is refused with
//! one clear line and changes nothing (memory, state file), batches are all
//! or nothing, idempotent forms, and Services survive a restart.
//!
//! Needs root; see `common/mod.rs`.

mod common;

use std::fs;

use common::{Daemon, TestEnv};
use ctl::Client;

/// `service list` as JSON.
fn services(d: &Daemon) -> serde_json::Value {
    d.ctl_value(&["service", "list"])
}

/// Runs a refused command; checks the one-line error and that nothing
/// changed.
#[track_caller]
fn assert_refused(d: &Daemon, args: &[&str], why: &str, before: &serde_json::Value) {
    d.ctl_refused(args, why);
    assert_eq!(
        &services(d),
        before,
        "vswitchctl {args:?} was refused but changed the Services"
    );
}

/// Sends a raw request line and expects a refusal mentioning `why`.
fn assert_raw_refused(d: &Daemon, line: &str, why: &str) {
    let mut client = Client::connect(&d.socket).unwrap();
    let reply = client.call_raw(line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(v["ok"], false, "{line} → {reply}");
    let err = v["error"].as_str().unwrap_or_default();
    assert!(err.contains(why), "{line} → {reply} (expected '{why}')");
}

#[test]
fn bad_service_configuration_is_refused_and_changes_nothing() {
    let Some(mut env) = TestEnv::new("bad_service_configuration_is_refused_and_changes_nothing")
    else {
        return;
    };
    env.start_daemon();
    let d = env.daemon();
    d.ctl_ok(&["addr", "add", "10.244.1.1/24"]);
    d.ctl_ok(&[
        "service",
        "add",
        "10.96.0.10:80/tcp",
        "--backend",
        "10.244.1.11:8080",
        "--node-port",
        "30080",
    ]);
    d.ctl_ok(&["service", "add", "10.96.0.10:53/udp"]);
    let before = services(d);
    let state_before = fs::read(&d.state).unwrap();

    let cases: &[(&[&str], &str)] = &[
        // Caught by the CLI.
        (&["service", "add", "10.96.0.11"], "VIP:PORT/PROTO"),
        (&["service", "add", "10.96.0.11:0/tcp"], "port 0"),
        (
            &["service", "add", "10.96.0.11:80/icmp"],
            "tcp, udp or sctp",
        ),
        (&["service", "add", "10.96.0.11:99999/tcp"], "not IP:PORT"),
        (&["service", "add", "300.1.1.1:80/tcp"], "not IP:PORT"),
        (
            &[
                "service",
                "add",
                "10.96.0.11:80/tcp",
                "--backend",
                "10.244.1.11",
            ],
            "not IP:PORT",
        ),
        (
            &[
                "service",
                "add",
                "10.96.0.11:80/tcp",
                "--backend",
                "10.244.1.11:80",
                "--backend",
                "10.244.1.11:80",
            ],
            "listed twice",
        ),
        (
            &[
                "service",
                "add",
                "10.96.0.11:80/tcp",
                "--affinity-timeout",
                "0",
            ],
            "not in 1..=86400",
        ),
        // Caught by the daemon.
        (&["service", "add", "10.96.0.10:80/tcp"], "already exists"),
        (
            &[
                "service",
                "add",
                "10.96.0.10:80/tcp",
                "--backend",
                "10.244.1.12:8080",
                "--may-exist",
            ],
            "other settings",
        ),
        (
            &[
                "service",
                "add",
                "10.96.0.12:80/tcp",
                "--node-port",
                "30080",
            ],
            "already used by Service 10.96.0.10:80/tcp",
        ),
        (
            &["service", "add", "10.244.1.1:80/tcp"],
            "switch's own addresses",
        ),
        (
            &["service", "add", "10.96.0.12:22/tcp", "--node-port", "22"],
            "outside the NodePort range 30000-32767",
        ),
        (&["service", "add", "10.96.0.13:80/sctp"], "SCTP"),
        (&["service", "add", "[fd00::10]:80/tcp"], "IPv6"),
        (&["service", "add", "127.0.0.1:80/tcp"], "routable"),
        (&["service", "del", "10.96.0.99:80/tcp"], "no Service"),
        (
            &["service", "backends", "10.96.0.99:80/tcp", "10.244.1.11:80"],
            "no Service",
        ),
    ];
    for (args, why) in cases {
        assert_refused(d, args, why, &before);
    }
    // The daemon checks whatever the client sends.
    let raw: &[(&str, &str)] = &[
        (
            r#"{"version":3,"command":{"op":"service_add","args":{"service":"10.96.0.20:80/tcp","backends":["10.244.1.11:0"]}}}"#,
            "port 0",
        ),
        (
            r#"{"version":3,"command":{"op":"service_add","args":{"service":"10.96.0.20:80/tcp","backends":["0.0.0.0:80"]}}}"#,
            "unicast",
        ),
        (
            r#"{"version":3,"command":{"op":"service_add","args":{"service":"10.96.0.20:80/tcp","backends":["10.244.1.11:80"],"terminating":["10.244.1.11:80"]}}}"#,
            "listed twice",
        ),
        (
            r#"{"version":3,"command":{"op":"service_add","args":{"service":"10.96.0.20:80/tcp","affinity_timeout":0}}}"#,
            "affinity timeout",
        ),
        (
            r#"{"version":3,"command":{"op":"service_add","args":{"service":"10.96.0.20:80/tcp","node_port":0}}}"#,
            "NodePort 0",
        ),
        (
            r#"{"version":3,"command":{"op":"service_add","args":{"service":"10.96.0.20:80"}}}"#,
            "VIP:PORT/PROTO",
        ),
        (
            r#"{"version":3,"command":{"op":"batch","args":{"commands":[{"op":"port_list"}]}}}"#,
            "cannot be part of a batch",
        ),
    ];
    for (line, why) in raw {
        assert_raw_refused(d, line, why);
    }
    assert_eq!(services(d), before);
    assert_eq!(
        fs::read(&d.state).unwrap(),
        state_before,
        "a refused command rewrote the state file"
    );

    // A batch whose third command is refused applies nothing.
    let batch = env.dir.join("batch.txt");
    fs::write(
        &batch,
        "# comment\n\
         service add 10.96.1.1:80/tcp --backend 10.244.1.11:80\n\
         service backends 10.96.0.10:80/tcp 10.244.1.12:8080\n\
         service add 10.96.0.10:80/tcp\n",
    )
    .unwrap();
    let r = d.ctl(&["batch", batch.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    assert!(
        // The third command is the file's fourth line (after a comment).
        r.stderr.contains("line 4: ") && r.stderr.contains("nothing applied"),
        "{}",
        r.stderr
    );
    assert_eq!(services(d), before, "a refused batch changed the Services");
    assert_eq!(fs::read(&d.state).unwrap(), state_before);
}

#[test]
fn service_commands_are_idempotent_and_survive_restarts() {
    let Some(mut env) = TestEnv::new("service_commands_are_idempotent_and_survive_restarts") else {
        return;
    };
    env.start_daemon();
    let d = env.daemon();
    d.ctl_ok(&["addr", "add", "10.244.1.1/24"]);
    let add = [
        "service",
        "add",
        "10.96.0.10:80/tcp",
        "--backend",
        "10.244.1.11:8080",
        "--terminating",
        "10.244.1.12:8080",
        "--affinity",
        "client-ip",
        "--node-port",
        "30080",
        "--may-exist",
    ];
    d.ctl_ok(&add);
    d.ctl_ok(&add);
    d.ctl_ok(&["service", "del", "10.96.0.99:80/tcp", "--if-exists"]);
    // A batch of 2,000 Services in one request.
    let batch = env.dir.join("many.txt");
    let lines: String = (0..2000)
        .map(|i| {
            format!(
                "service add 10.97.{}.{}:443/tcp --backend 10.244.1.{}:8443 --backend 10.244.1.{}:8443\n",
                i / 250,
                i % 250 + 1,
                i % 200 + 10,
                (i + 1) % 200 + 10
            )
        })
        .collect();
    fs::write(&batch, lines).unwrap();
    d.ctl_ok(&["batch", batch.to_str().unwrap()]);
    let list = services(d);
    let all = list.as_array().unwrap();
    assert_eq!(all.len(), 2001);
    let first = all
        .iter()
        .find(|s| s["service"] == "10.96.0.10:80/tcp")
        .unwrap();
    assert_eq!(first["affinity_timeout"], 10800);
    assert_eq!(first["node_port"], 30080);
    assert_eq!(first["backends"][1]["state"], "terminating");
    // A prime of at least 100 slots per endpoint.
    let size = first["table_size"].as_u64().unwrap();
    assert!(
        size >= 251
            && (2..size)
                .take_while(|d| d * d <= size)
                .all(|d| size % d != 0)
    );

    env.take_daemon().stop();
    env.start_daemon();
    let d = env.daemon();
    assert_eq!(services(d), list, "Services after a restart");
    d.ctl_ok(&["service", "del", "10.96.0.10:80/tcp"]);
    assert_eq!(services(d).as_array().unwrap().len(), 2000);
    let stats = d.ctl_value(&["ct", "stats"]);
    assert_eq!(stats["entries"], 0);
    assert_eq!(stats["limit"], 262144);
}
