//! The agent's requests against a real vswitchd: the desired state of the
//! fixtures' cluster applied, read back through `service list`, `addr
//! list` and `route list`, and compared again; a change sends only what
//! changed; what was made by hand stays.
//!
//! Needs root (vswitchd) and the workspace's binaries built
//! (`cargo build --release --workspace`, as scripts/test.sh does).

#[path = "../../fastpath/tests/common/skip.rs"]
mod skip;

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use agent::diff::{Current, requests};
use agent::{Cluster, Desired, Options, desired};
use ctl::{Client, Command, Reply};
use k8s_openapi::List;
use serde::de::DeserializeOwned;

fn items<T: DeserializeOwned + k8s_openapi::ListableResource>(file: &str) -> Vec<T> {
    let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    let list: List<T> = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    list.items
}

/// vswitchd on a private socket, killed when dropped.
struct Daemon {
    child: Child,
    socket: PathBuf,
    dir: PathBuf,
}

impl Daemon {
    fn start(name: &str) -> Daemon {
        let bin = std::env::var_os("VSWITCHD").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/vswitchd"),
            PathBuf::from,
        );
        assert!(
            bin.exists(),
            "{} is missing: build the workspace first (cargo build --release --workspace) or set VSWITCHD",
            bin.display()
        );
        let dir = std::env::temp_dir().join(format!("vswitch-agent-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("sock");
        let last = std::thread::available_parallelism().map_or(0, |n| n.get() - 1);
        let child = Process::new(&bin)
            .arg("--socket")
            .arg(&socket)
            .arg("--state")
            .arg(dir.join("state.json"))
            .args(["--cores", &last.to_string(), "--poll", "adaptive"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).unwrap())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while Client::connect(&socket).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "vswitchd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon { child, socket, dir }
    }

    fn call(&self, cmd: Command) -> Reply {
        let mut c = Client::connect(&self.socket).unwrap();
        c.call(cmd.clone())
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
    }

    /// What vswitchd holds of the agent's.
    fn current(&self) -> Current {
        let Reply::Services(s) = self.call(Command::ServiceList) else {
            panic!()
        };
        let Reply::Addrs(a) = self.call(Command::AddrList) else {
            panic!()
        };
        let Reply::Routes(r) = self.call(Command::RouteList) else {
            panic!()
        };
        Current::from_lists(&s, &a, &r)
    }

    /// Sends the requests that bring vswitchd to `d`; how many.
    fn sync(&self, d: &Desired) -> usize {
        let reqs = requests(&self.current(), d);
        for r in &reqs {
            self.call(r.clone());
        }
        reqs.len()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn the_agent_brings_vswitchd_to_the_desired_state_and_only_changes_what_differs() {
    let name = "the_agent_brings_vswitchd_to_the_desired_state_and_only_changes_what_differs";
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip::cannot_run(name, "vswitchd needs root");
        return;
    }
    let d = Daemon::start("sync");
    // Made by hand: a Service and an address the agent must leave alone.
    d.call(Command::ServiceAdd(ctl::ServiceSpec::new(
        "10.96.9.9:80/tcp".parse().unwrap(),
        vec![],
    )));
    // (They put the other nodes' addresses in a connected subnet, as an
    // uplink on the node network would.)
    for addr in ["192.168.1.254/24", "fd00:1::fe/64"] {
        d.call(Command::AddrAdd {
            addr: addr.parse().unwrap(),
            may_exist: false,
            owner: None,
        });
    }
    let mut cluster = Cluster {
        services: items("services.json"),
        slices: items("slices.json"),
        nodes: items("nodes.json"),
    };
    let opts = Options {
        node: "node-a".into(),
        vxlan_vni: None,
    };
    // The NodePorts of the fixtures are in vswitchd's default range.
    let want = desired(&cluster, &opts);
    assert!(d.sync(&want) > 0);
    let now = d.current();
    assert_eq!(now.services, want.services, "every Service as desired");
    assert_eq!(now.addrs, want.addrs);
    assert_eq!(now.routes, want.routes);
    assert_eq!(d.sync(&want), 0, "in sync: nothing to send");

    // An endpoint turns terminating: one batch with one `service backends`.
    let slice = cluster
        .slices
        .iter_mut()
        .find(|s| s.metadata.name.as_deref() == Some("web-abc12"))
        .unwrap();
    slice.endpoints[0].conditions.as_mut().unwrap().ready = Some(false);
    slice.endpoints[0].conditions.as_mut().unwrap().terminating = Some(true);
    let want2 = desired(&cluster, &opts);
    let reqs = requests(&d.current(), &want2);
    let [Command::Batch { commands }] = &reqs[..] else {
        panic!("{reqs:#?}")
    };
    assert!(
        commands
            .iter()
            .all(|c| matches!(c, Command::ServiceBackends { .. })),
        "{commands:#?}"
    );
    assert_eq!(d.sync(&want2), 1);
    assert_eq!(d.current().services, want2.services);

    // A node goes: its routes go; everything goes when the cluster is empty,
    // except what was made by hand.
    cluster
        .nodes
        .retain(|n| n.metadata.name.as_deref() != Some("node-b"));
    let want3 = desired(&cluster, &opts);
    d.sync(&want3);
    assert_eq!(d.current().routes, want3.routes);
    assert!(want3.routes.is_empty());
    d.sync(&Desired::default());
    assert_eq!(d.current(), Current::default());
    let Reply::Services(left) = d.call(Command::ServiceList) else {
        panic!()
    };
    assert_eq!(left.len(), 1, "the hand-made Service stays: {left:#?}");
    let Reply::Addrs(addrs) = d.call(Command::AddrList) else {
        panic!()
    };
    assert_eq!(addrs.len(), 2, "the hand-made addresses stay: {addrs:#?}");
}
