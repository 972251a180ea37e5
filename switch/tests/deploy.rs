//! What an operator installs: `scripts/install.sh` puts the binaries, the
//! manual pages, the shell completions and the systemd unit in place, and
//! vswitchd runs with no more capabilities than the unit's
//! `CapabilityBoundingSet` grants (as systemd would start it), pods and
//! all; without one of them (NET_RAW) an AF_XDP port is refused.
//!
//! Needs root; see `common/mod.rs`.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{Attach, DaemonOpts, TestEnv, VethGuard, run_cmd};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The capabilities of the unit's `CapabilityBoundingSet`, as setpriv
/// names them (`net_admin`, ...).
fn unit_capabilities() -> Vec<String> {
    let unit = fs::read_to_string(repo().join("deploy/vswitchd.service")).unwrap();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet");
    line.split_whitespace()
        .map(|c| c.strip_prefix("CAP_").unwrap().to_lowercase())
        .collect()
}

/// Capability numbers (linux/capability.h).
fn cap_bit(name: &str) -> u32 {
    match name {
        "chown" => 0,
        "net_admin" => 12,
        "net_raw" => 13,
        "ipc_lock" => 14,
        "sys_admin" => 21,
        "perfmon" => 38,
        "bpf" => 39,
        other => panic!("capability {other} has no number here"),
    }
}

/// Starts vswitchd with only `caps` in its bounding set, as the unit
/// does. (The unit's higher memlock and open-file limits are not set here:
/// raising them takes CAP_SYS_RESOURCE, which a container may lack.)
fn with_caps(caps: &[String]) -> Vec<String> {
    let set: Vec<String> = caps.iter().map(|c| format!("+{c}")).collect();
    [
        "setpriv",
        "--inh-caps=-all",
        &format!("--bounding-set=-all,{}", set.join(",")),
    ]
    .map(String::from)
    .to_vec()
}

/// `CapEff` of process `pid`.
fn effective_caps(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

#[test]
fn vswitchd_runs_with_the_units_capabilities_and_no_more() {
    let Some(mut env) = TestEnv::new("vswitchd_runs_with_the_units_capabilities_and_no_more")
    else {
        return;
    };
    let caps = unit_capabilities();
    env.start_daemon_with(DaemonOpts {
        wrapper: with_caps(&caps),
        extra: vec!["--socket-group".into(), "4242".into()],
        ..DaemonOpts::default()
    });
    let want = caps.iter().fold(0u64, |m, c| m | 1 << cap_bit(c));
    assert_eq!(
        effective_caps(env.daemon().pid()),
        want,
        "vswitchd runs with other capabilities than the unit's"
    );
    // Pods of both kinds (AF_XDP with libxdp's program, a TAP made in a
    // namespace), a Service, the socket given to its group.
    let a = env.add_pod("a", Attach::Afxdp);
    let t = env.add_pod("t", Attach::Tap);
    env.ping(&a, &t);
    let d = env.daemon();
    d.ctl_ok(&[
        "service",
        "add",
        "10.96.0.10:80/tcp",
        "--backend",
        "10.77.0.12:80",
    ]);
    assert_eq!(
        std::os::unix::fs::MetadataExt::gid(&fs::metadata(&d.socket).unwrap()),
        4242
    );

    // The set is not larger than it must be: without NET_RAW, no AF_XDP.
    let d = env.take_daemon();
    d.stop();
    let fewer: Vec<String> = caps.iter().filter(|c| *c != "net_raw").cloned().collect();
    let _ = fs::remove_file(env.state_path());
    env.start_daemon_with(DaemonOpts {
        wrapper: with_caps(&fewer),
        ..DaemonOpts::default()
    });
    let _veth = VethGuard::new("vsw-nocap0", "vsw-nocap1");
    let r = env.ctl(&["port", "add", "vsw-nocap0"]);
    assert!(
        !r.success() && r.stderr.contains("Operation not permitted"),
        "an AF_XDP port without CAP_NET_RAW: {}",
        r.stderr
    );
}

#[test]
fn install_puts_binaries_manuals_completions_and_the_unit_in_place() {
    let Some(env) = TestEnv::new("install_puts_binaries_manuals_completions_and_the_unit_in_place")
    else {
        return;
    };
    let prefix = env.dir.join("prefix");
    let units = env.dir.join("units");
    let r = run_cmd(
        Command::new(repo().join("scripts/install.sh"))
            .args(["--no-build", "--systemd", "--prefix"])
            .arg(&prefix)
            .arg("--unit-dir")
            .arg(&units)
            .arg("--cni-dir")
            .arg(env.dir.join("cni")),
    );
    assert!(r.success(), "{}{}", r.stdout, r.stderr);
    // The CNI plugin, under the name a network configuration's "type" gives.
    let plugin = run_cmd(
        Command::new(env.dir.join("cni/vswitch"))
            .env("CNI_COMMAND", "VERSION")
            .stdin(std::process::Stdio::null()),
    );
    assert!(
        plugin.success() && plugin.stdout.contains("supportedVersions"),
        "{}{}",
        plugin.stdout,
        plugin.stderr
    );
    for f in [
        "bin/vswitchd",
        "bin/vswitchctl",
        "share/man/man8/vswitchd.8",
        "share/man/man8/vswitchctl.8",
        "share/bash-completion/completions/vswitchctl",
        "share/bash-completion/completions/vswitchd",
        "share/zsh/site-functions/_vswitchctl",
        "share/fish/vendor_completions.d/vswitchctl.fish",
    ] {
        assert!(prefix.join(f).is_file(), "{f} not installed");
    }
    // The unit starts the installed vswitchd.
    let unit = fs::read_to_string(units.join("vswitchd.service")).unwrap();
    assert!(
        unit.contains(&format!("ExecStart={}/bin/vswitchd ", prefix.display())),
        "{unit}"
    );
    let version = run_cmd(Command::new(prefix.join("bin/vswitchctl")).arg("--version"));
    assert!(version.success() && version.stdout.starts_with("vswitchctl "));
    // The manual pages render and document the options and commands.
    for (page, words) in [
        (
            "vswitchd.8",
            &["--socket-group", "--metrics", "--ct-max"][..],
        ),
        ("vswitchctl.8", &["port", "service", "completion"]),
        // One page per command, as the main page refers to them.
        (
            "vswitchctl-port-add.8",
            &["--netns", "--queues", "--offload"],
        ),
        ("vswitchctl-service-add.8", &["--backend", "--node-port"]),
    ] {
        let r = run_cmd(
            Command::new("man")
                .arg("-l")
                .arg(prefix.join("share/man/man8").join(page))
                .env("MANWIDTH", "100")
                .env("MAN_KEEP_FORMATTING", "0"),
        );
        assert!(r.success(), "man {page}: {}", r.stderr);
        // Bold and underline come as overstrikes ("x\bx"): the text alone.
        let mut text = String::new();
        for ch in r.stdout.chars() {
            if ch == '\u{8}' {
                text.pop();
            } else {
                text.push(ch);
            }
        }
        for w in words {
            assert!(text.contains(w), "{page} does not mention {w}:\n{text}");
        }
    }
    // Bash completes commands and subcommands.
    let script = prefix.join("share/bash-completion/completions/vswitchctl");
    let complete = |words: &str, cword: usize| {
        let r = run_cmd(Command::new("bash").arg("-c").arg(format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; \
             _vswitchctl vswitchctl \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; \
             echo \"${{COMPREPLY[*]}}\"",
            script.display()
        )));
        assert!(r.success(), "{}", r.stderr);
        r.stdout
    };
    assert_eq!(complete("vswitchctl po", 1).trim(), "port");
    let sub = complete("vswitchctl service ''", 2);
    for w in ["add", "backends", "del", "list"] {
        assert!(
            sub.split_whitespace().any(|x| x == w),
            "{w} not offered: {sub}"
        );
    }
}
