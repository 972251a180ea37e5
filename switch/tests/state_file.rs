//! The state file as users meet it: a request whose state-file write fails
//! changes nothing (memory, disk, kernel: XDP program, promiscuous mode,
//! routes, uplink maps), an entry a restart cannot apply stays in the file
//! and is shown, and a state file that cannot be parsed is moved aside and
//! the last good copy used. A state directory that is full or read-only
//! refuses requests with the system's reason and changes nothing.
//!
//! Writes are made to fail by putting a directory where vswitchd writes its
//! temporary file (`.state.json.tmp`): root ignores file modes, not that.
//!
//! Needs root; see `common/mod.rs`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{Daemon, DaemonOpts, Node, NodeLink, TestEnv, ip, pick_cores};

/// Makes every state-file write of the daemon fail until dropped.
struct BlockWrites(PathBuf);

impl BlockWrites {
    fn new(state: &Path) -> Self {
        let tmp = state.with_file_name(".state.json.tmp");
        fs::create_dir_all(&tmp).unwrap();
        BlockWrites(tmp)
    }
}

impl Drop for BlockWrites {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `ip -d link show dev up0` in the node.
fn up0(node: &Node) -> String {
    let r = ip(&["-n", &node.name, "-d", "link", "show", "dev", "up0"]);
    assert!(r.success(), "{}", r.stderr);
    r.stdout
}

fn kernel_routes(node: &Node) -> String {
    ip(&["-n", &node.name, "route", "show"]).stdout
}

/// Everything a user can read back of the configuration.
fn config(d: &Daemon) -> Vec<serde_json::Value> {
    [
        "port list",
        "addr list",
        "route list",
        "service list",
        "fdb show",
    ]
    .iter()
    .map(|c| {
        let args: Vec<&str> = c.split(' ').collect();
        d.ctl_value(&args)
    })
    .collect()
}

#[test]
fn a_failed_state_write_changes_nothing() {
    let Some(mut env) = TestEnv::new("a_failed_state_write_changes_nothing") else {
        return;
    };
    let node = env.add_node("n", "192.168.57.1/24", NodeLink::Alone);
    env.start_node_daemon(&node, &pick_cores(1).unwrap());
    let d = env.node_daemon(&node.name);
    d.ctl_ok(&["port", "add", "vsw0", "--type", "tap", "--host"]);
    d.ctl_ok(&["addr", "add", "10.244.1.1/24"]);
    let (link0, routes0, config0) = (up0(&node), kernel_routes(&node), config(d));
    let file0 = fs::read(&d.state).unwrap();
    assert!(
        !link0.contains("xdp") && link0.contains("promiscuity 0"),
        "{link0}"
    );
    assert!(routes0.contains("10.244.1.0/24 dev vsw0"), "{routes0}");

    let block = BlockWrites::new(&d.state);
    let refused: [&[&str]; 4] = [
        &["port", "add", "up0", "--uplink"],
        &["addr", "add", "10.244.2.1/24"],
        &["addr", "del", "10.244.1.1/24"],
        &[
            "service",
            "add",
            "10.96.0.10:80/tcp",
            "--backend",
            "10.244.1.5:80",
        ],
    ];
    for args in refused {
        d.ctl_refused(args, "cannot write state file");
        assert_eq!(up0(&node), link0, "{args:?} left the uplink changed");
        assert_eq!(
            kernel_routes(&node),
            routes0,
            "{args:?} changed kernel routes"
        );
        assert_eq!(config(d), config0, "{args:?} changed the configuration");
        assert_eq!(
            fs::read(&d.state).unwrap(),
            file0,
            "{args:?} changed the file"
        );
    }
    // A batch, too.
    let batch = env.dir.join("batch.txt");
    fs::write(
        &batch,
        "service add 10.96.0.11:80/tcp --backend 10.244.1.5:80\n\
         service add 10.96.0.12:80/tcp --backend 10.244.1.6:80\n",
    )
    .unwrap();
    d.ctl_refused(
        &["batch", batch.to_str().unwrap()],
        "cannot write state file",
    );
    assert_eq!(
        config(d),
        config0,
        "a refused batch changed the configuration"
    );

    // The same requests work once the file can be written: the refusals
    // above were the write's, and the uplink takes its program.
    drop(block);
    d.ctl_ok(&["port", "add", "up0", "--uplink"]);
    assert!(up0(&node).contains("xdp"), "{}", up0(&node));
    d.ctl_ok(&["addr", "add", "10.244.2.1/24"]);
    assert!(kernel_routes(&node).contains("10.244.2.0/24 dev vsw0"));
    d.ctl_ok(&["batch", batch.to_str().unwrap()]);
    d.ctl_ok(&["port", "del", "up0"]);
    assert!(!up0(&node).contains("xdp"), "{}", up0(&node));
}

#[test]
fn a_port_that_cannot_be_opened_after_the_write_changes_nothing() {
    let Some(env) = TestEnv::with_daemon("a_port_that_cannot_be_opened") else {
        return;
    };
    let d = env.daemon();
    // Two changes, so that there is a backup (and no kernel object is
    // made that could outlive the test).
    d.ctl_ok(&["addr", "add", "10.244.1.1/24"]);
    d.ctl_ok(&["addr", "add", "10.244.2.1/24"]);
    let dir = d.state.parent().unwrap().to_path_buf();
    let bak = d.state.with_file_name("state.json.bak");
    // The file, its backup and what else lies beside them.
    let files = || {
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("state"))
            .collect();
        names.sort();
        (fs::read(&d.state).unwrap(), fs::read(&bak).unwrap(), names)
    };
    let files0 = files();
    let config0 = config(d);
    // The model accepts these; opening them fails after the file was
    // written (no such interface; no such namespace), so the file is
    // put back.
    let refused: [&[&str]; 2] = [
        &["port", "add", "vt-nosuchdev"],
        &[
            "port",
            "add",
            "vt-t1",
            "--type",
            "tap",
            "--netns",
            "/run/netns/vt-nosuch",
        ],
    ];
    for _ in 0..2 {
        for args in refused {
            let r = d.ctl(args);
            assert!(!r.success(), "{args:?} was accepted: {}", r.stdout);
            assert_eq!(config(d), config0, "{args:?} changed the configuration");
            assert!(
                files() == files0,
                "{args:?} changed the state file, its backup or their directory"
            );
        }
    }
    drop(env);
}

#[test]
fn restore_keeps_what_it_cannot_apply() {
    let Some(mut env) = TestEnv::new("restore_keeps_what_it_cannot_apply") else {
        return;
    };
    env.start_daemon();
    let d = env.daemon();
    d.ctl_ok(&["addr", "add", "10.244.1.1/24"]);
    let svc = "10.96.0.10:80/tcp";
    d.ctl_ok(&[
        "service",
        "add",
        svc,
        "--backend",
        "10.244.1.11:8080",
        "--node-port",
        "30080",
    ]);
    d.ctl_ok(&["service", "add", "10.96.0.10:53/udp"]);
    let services0 = d.ctl_value(&["service", "list"]);
    env.take_daemon().stop();

    // A narrower NodePort range: the Service cannot be applied, and stays.
    let narrow = DaemonOpts {
        extra: ["--node-port-range", "31000-32000"]
            .map(String::from)
            .to_vec(),
        ..DaemonOpts::default()
    };
    env.start_daemon_with(narrow.clone());
    let d = env.daemon();
    let list = d.ctl_value(&["service", "list"]).to_string();
    assert!(
        !list.contains("30080") && list.contains("10.96.0.10"),
        "{list}"
    );
    let show = d.show();
    assert!(
        show.not_applied.iter().any(|l| l.contains(svc)),
        "{:?}",
        show.not_applied
    );
    let text = d.ctl_ok(&["show"]).stdout;
    assert!(text.contains("Not applied") && text.contains(svc), "{text}");
    // A change to something else rewrites the file with the entry in it.
    d.ctl_ok(&["addr", "add", "10.244.2.1/24"]);
    let file = fs::read_to_string(&d.state).unwrap();
    assert!(file.contains("30080"), "the file lost the Service:\n{file}");
    env.take_daemon().stop();

    // The old range again: the Service is back as it was.
    env.start_daemon();
    let d = env.daemon();
    assert_eq!(d.ctl_value(&["service", "list"]), services0);
    assert!(d.show().not_applied.is_empty());
    env.take_daemon().stop();

    // Deleting a kept entry is how a user lets it go (here in a batch; a
    // lone `service del` takes the same way).
    env.start_daemon_with(narrow);
    let d = env.daemon();
    let batch = env.dir.join("del.txt");
    fs::write(&batch, format!("service del {svc}\n")).unwrap();
    d.ctl_ok(&["batch", batch.to_str().unwrap()]);
    assert!(d.show().not_applied.is_empty());
    let file = fs::read_to_string(&d.state).unwrap();
    assert!(!file.contains("30080"), "{file}");
}

#[test]
fn a_corrupt_state_file_falls_back_to_the_last_good_copy() {
    let Some(mut env) = TestEnv::new("a_corrupt_state_file_falls_back_to_the_last_good_copy")
    else {
        return;
    };
    env.start_daemon();
    let d = env.daemon();
    d.ctl_ok(&["addr", "add", "10.244.1.1/24"]);
    let addrs1 = d.ctl_value(&["addr", "list"]);
    d.ctl_ok(&["addr", "add", "10.244.2.1/24"]);
    let state = d.state.clone();
    env.take_daemon().stop();
    fs::write(&state, "{\"version\": 1, \"addrs\": [\"10.244.1.1/24\",").unwrap();

    env.start_daemon();
    let d = env.daemon();
    // The backup holds the file before the last write: one address.
    assert_eq!(d.ctl_value(&["addr", "list"]), addrs1);
    let show = d.show();
    let why = show.state_recovered.unwrap_or_default();
    assert!(
        why.contains("not valid") && why.contains("state.json.bak"),
        "{why}"
    );
    assert!(d.ctl_ok(&["show"]).stdout.contains("State file recovered"));
    let log = fs::read_to_string(&d.log).unwrap();
    assert!(log.contains("moved it to"), "not said loudly:\n{log}");
    let aside = fs::read_dir(state.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
        });
    assert!(aside, "the corrupt file was not kept aside");
    // And the recovered configuration is written back as the state file.
    let file = fs::read_to_string(&state).unwrap();
    assert!(file.contains("10.244.1.1/24"), "{file}");
}

/// A small tmpfs mounted for the test, unmounted when dropped.
struct SmallFs(PathBuf);

impl SmallFs {
    fn new(dir: PathBuf) -> Self {
        fs::create_dir_all(&dir).unwrap();
        let r = common::run_cmd(
            std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
                .arg(&dir),
        );
        assert!(r.success(), "mount tmpfs: {}", r.stderr);
        SmallFs(dir)
    }

    fn remount(&self, how: &str) {
        let r = common::run_cmd(
            std::process::Command::new("mount")
                .args(["-o", &format!("remount,{how}")])
                .arg(&self.0),
        );
        assert!(r.success(), "remount {how}: {}", r.stderr);
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_or_read_only_state_directory_refuses_requests_clearly() {
    let Some(env) = TestEnv::new("a_full_or_read_only_state_directory_refuses_requests_clearly")
    else {
        return;
    };
    // The state file alone on a small file system (the socket and log
    // beside it would keep it from going read-only).
    let small = SmallFs::new(env.dir.join("small"));
    let d = Daemon::start(
        &env.dir,
        DaemonOpts {
            state_dir: Some(small.0.clone()),
            ..DaemonOpts::default()
        },
    );
    d.ctl_ok(&["addr", "add", "10.244.1.1/24"]);
    let (config0, file0) = (config(&d), fs::read(&d.state).unwrap());

    // Full: the write fails with ENOSPC.
    let fill = small.0.join("fill");
    let r = common::run_cmd(
        std::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=4k"])
            .arg(format!("of={}", fill.display())),
    );
    assert!(
        !r.success() && r.stderr.contains("No space left"),
        "{}",
        r.stderr
    );
    let refused: [&[&str]; 3] = [
        &["addr", "add", "10.244.2.1/24"],
        &[
            "service",
            "add",
            "10.96.0.10:80/tcp",
            "--backend",
            "10.244.1.5:80",
        ],
        &["port", "add", "p9", "--type", "tap"],
    ];
    for args in refused {
        d.ctl_refused(args, "No space left on device");
        assert_eq!(config(&d), config0, "{args:?} changed the configuration");
        assert_eq!(
            fs::read(&d.state).unwrap(),
            file0,
            "{args:?} changed the file"
        );
    }
    assert!(
        !ip(&["link", "show", "p9"]).success(),
        "the TAP was not left behind"
    );

    // Read-only: EROFS.
    fs::remove_file(&fill).unwrap();
    small.remount("ro");
    for args in refused {
        d.ctl_refused(args, "Read-only file system");
        assert_eq!(config(&d), config0, "{args:?} changed the configuration");
    }
    assert_eq!(fs::read(&d.state).unwrap(), file0);

    // Writable again: the same requests work.
    small.remount("rw");
    d.ctl_ok(&["addr", "add", "10.244.2.1/24"]);
    d.ctl_ok(&[
        "service",
        "add",
        "10.96.0.10:80/tcp",
        "--backend",
        "10.244.1.5:80",
    ]);
    assert_ne!(config(&d), config0);
    d.stop();
}
