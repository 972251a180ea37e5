//! The CNI plugin (`vswitch-cni`) run as a container runtime runs it: the
//! `CNI_*` environment, the configuration on stdin, the result or error on
//! stdout; against a real vswitchd, real namespaces and Debian's
//! host-local (IPAM) and tuning (chained) plugins from /usr/lib/cni.
//!
//! Needs root and containernetworking-plugins; see `common/mod.rs`.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{TestEnv, cannot_run, cni_bin, ip, netns_exec, wait_for};
use serde_json::{Value, json};

/// Where Debian's containernetworking-plugins are.
const PLUGINS: &str = "/usr/lib/cni";
const NET: &str = "pods";

/// A pod's namespace, deleted when dropped.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Netns {
        let _ = ip(&["netns", "del", &name]);
        let r = ip(&["netns", "add", &name]);
        assert!(r.success(), "ip netns add {name}: {}", r.stderr);
        Netns(name)
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

/// What one call printed and how it ended.
#[derive(Debug)]
struct Call {
    ok: bool,
    out: Value,
    stderr: String,
}

impl Call {
    fn code(&self) -> u64 {
        assert!(!self.ok, "expected a failure, got {}", self.out);
        self.out["code"].as_u64().unwrap_or_else(|| {
            panic!(
                "an error object with a code: {} ({})",
                self.out, self.stderr
            )
        })
    }
}

/// The plugin with one test's socket, data and IPAM directories.
struct Cni {
    bin: PathBuf,
    dir: PathBuf,
    socket: PathBuf,
}

impl Cni {
    fn new(env: &TestEnv) -> Cni {
        Cni {
            bin: cni_bin(),
            dir: env.dir.clone(),
            socket: env.daemon().socket.clone(),
        }
    }

    /// A configuration of network `pods` (host-local over 10.78.0.0/24
    /// and fd00:78::/64).
    fn conf(&self, version: &str, attach: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": NET,
            "type": "vswitch",
            "socket": self.socket,
            "attach": attach,
            "dataDir": self.dir.join("cni"),
            "ipam": {
                "type": "host-local",
                "dataDir": self.dir.join("ipam"),
                "ranges": [[{"subnet": "10.78.0.0/24"}], [{"subnet": "fd00:78::/64"}]],
            },
        })
    }

    fn call(&self, verb: &str, container: &str, netns: &str, ifname: &str, conf: &Value) -> Call {
        self.call_env(
            &[
                ("CNI_COMMAND", verb),
                ("CNI_CONTAINERID", container),
                ("CNI_NETNS", netns),
                ("CNI_IFNAME", ifname),
                ("CNI_PATH", PLUGINS),
            ],
            conf.to_string().as_bytes(),
        )
    }

    fn call_env(&self, vars: &[(&str, &str)], stdin: &[u8]) -> Call {
        run_plugin(&self.bin, vars, stdin)
    }

    fn add(&self, container: &str, ns: &Netns, conf: &Value) -> Value {
        let c = self.call("ADD", container, &ns.path(), "eth0", conf);
        assert!(c.ok, "ADD {container}: {} {}", c.out, c.stderr);
        c.out
    }

    /// Leases host-local holds (one file per address).
    fn leases(&self) -> Vec<String> {
        let dir = self.dir.join("ipam").join(NET);
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut out: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip"))
            .collect();
        out.sort();
        out
    }

    /// The plugin's records.
    fn records(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("cni").join(NET)) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect()
    }
}

fn run_plugin(bin: &Path, vars: &[(&str, &str)], stdin: &[u8]) -> Call {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run vswitch-cni");
    // The plugin may exit before reading its input (a bad environment).
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    Call {
        ok: out.status.success(),
        out: if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text:?}"))
        },
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Host links the plugin names (`vs…` ports and veth ends, `vp…` peers).
fn plugin_links() -> Vec<String> {
    let r = ip(&["-o", "link", "show"]);
    r.stdout
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| {
            (n.starts_with("vs") || n.starts_with("vp"))
                && n.len() == 14
                && n[2..].bytes().all(|b| b.is_ascii_hexdigit())
        })
        .collect()
}

/// Everything the plugin could leave behind: ports, records, leases, links.
fn assert_nothing_left(env: &TestEnv, cni: &Cni, after: &str) {
    let ports: Vec<String> = env
        .daemon()
        .port_list()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert!(ports.is_empty(), "{after}: ports left: {ports:?}");
    assert!(
        cni.records().is_empty(),
        "{after}: records left: {:?}",
        cni.records()
    );
    assert!(
        cni.leases().is_empty(),
        "{after}: leases left: {:?}",
        cni.leases()
    );
    assert!(
        plugin_links().is_empty(),
        "{after}: links left: {:?}",
        plugin_links()
    );
}

fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

/// Whether every file of `paths` exists; if not, the test cannot run
/// ([`cannot_run`]: a failure unless the run allows skipping).
fn needs(name: &str, paths: &[&str], package: &str) -> bool {
    if let Some(p) = paths.iter().find(|p| !Path::new(p).exists()) {
        cannot_run(
            name,
            &format!("{p} is missing: install {package} (scripts/deps.sh does)"),
        );
        return false;
    }
    true
}

fn start(name: &str) -> Option<(TestEnv, Cni)> {
    if !needs(
        name,
        &["/usr/lib/cni/host-local", "/usr/lib/cni/tuning"],
        "containernetworking-plugins",
    ) {
        return None;
    }
    let env = TestEnv::with_daemon(name)?;
    env.daemon().ctl_ok(&["addr", "add", "10.78.0.1/24"]);
    env.daemon().ctl_ok(&["addr", "add", "fd00:78::1/64"]);
    let cni = Cni::new(&env);
    Some((env, cni))
}

#[test]
fn add_check_del_for_tap_and_afxdp_pods() {
    let Some((env, cni)) = start("add_check_del_for_tap_and_afxdp_pods") else {
        return;
    };
    let (a, b) = (
        Netns::new(format!("{}a", env.tag)),
        Netns::new(format!("{}b", env.tag)),
    );
    let tap = cni.conf("1.0.0", "tap");
    let xdp = cni.conf("1.0.0", "afxdp");
    let ra = cni.add("ca", &a, &tap);
    let rb = cni.add("cb", &b, &xdp);

    // The results: the sandbox interface, its addresses and the routes.
    assert_eq!(ra["cniVersion"], "1.0.0");
    assert_eq!(ra["interfaces"].as_array().unwrap().len(), 1, "{ra}");
    assert_eq!(ra["interfaces"][0]["name"], "eth0");
    assert_eq!(ra["interfaces"][0]["sandbox"], a.path());
    let ips: Vec<&str> = ra["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 2, "{ra}");
    assert!(
        ips[0].starts_with("10.78.0.") && ips[1].starts_with("fd00:78::"),
        "{ips:?}"
    );
    assert_eq!(ra["ips"][0]["gateway"], "10.78.0.1");
    assert_eq!(ra["ips"][0]["interface"], 0);
    assert_eq!(
        ra["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.78.0.1"}, {"dst": "::/0", "gw": "fd00:78::1"}])
    );
    // afxdp: the host end of the veth first, then the sandbox's.
    assert_eq!(rb["interfaces"].as_array().unwrap().len(), 2, "{rb}");
    assert!(rb["interfaces"][0].get("sandbox").is_none());
    assert_eq!(rb["ips"][0]["interface"], 1);

    // vswitchd's ports declare the pods' addresses; the pods reach each
    // other and the gateway over IPv4 and IPv6, with offloads left on.
    let d = env.daemon();
    let ports = d.port_list();
    assert_eq!(ports.len(), 2, "{ports:#?}");
    assert!(ports.iter().all(|p| p.ips.len() == 2), "{ports:#?}");
    let b4 = rb["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let b6 = rb["ips"][1]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    d.wait_ports_up(&[&ports[0].name, &ports[1].name]);
    for args in [
        vec!["ping", "-c", "2", "-W", "2", b4],
        vec!["ping", "-6", "-c", "2", "-W", "2", b6],
        vec!["ping", "-c", "1", "-W", "2", "10.78.0.1"],
        vec!["ping", "-6", "-c", "1", "-W", "2", "fd00:78::1"],
    ] {
        let r = netns_exec(&a.0, &args);
        assert!(
            r.success(),
            "{args:?} from the TAP pod: {}{}",
            r.stdout,
            r.stderr
        );
    }

    // CHECK passes, then fails once the pod's address is gone.
    for (c, ns, conf, r) in [("ca", &a, &tap, &ra), ("cb", &b, &xdp, &rb)] {
        let chk = cni.call("CHECK", c, &ns.path(), "eth0", &with_prev(conf, r));
        assert!(chk.ok, "CHECK {c}: {} {}", chk.out, chk.stderr);
    }
    let a4 = ra["ips"][0]["address"].as_str().unwrap();
    assert!(ip(&["-n", &a.0, "addr", "del", a4, "dev", "eth0"]).success());
    let chk = cni.call("CHECK", "ca", &a.path(), "eth0", &with_prev(&tap, &ra));
    assert_eq!(chk.code(), 103, "{}", chk.out);
    assert!(chk.out["msg"].as_str().unwrap().contains(a4), "{}", chk.out);

    // A second ADD of the same interface fails and takes nothing.
    let leases = cni.leases();
    let again = cni.call("ADD", "ca2", &a.path(), "eth0", &tap);
    assert_eq!(again.code(), 102, "{}", again.out);
    assert_eq!(cni.leases(), leases, "a refused ADD keeps no lease");
    assert_eq!(d.port_list().len(), 2, "a refused ADD adds no port");

    // DEL, twice; then with the namespace gone too.
    for _ in 0..2 {
        for (c, ns, conf) in [("ca", &a, &tap), ("cb", &b, &xdp)] {
            let del = cni.call("DEL", c, &ns.path(), "eth0", conf);
            assert!(del.ok, "DEL {c}: {} {}", del.out, del.stderr);
            assert_eq!(del.out, Value::Null, "DEL prints nothing");
        }
    }
    assert_nothing_left(&env, &cni, "DEL");
    let r = cni.add("cc", &a, &tap);
    assert!(r["ips"][0]["address"].is_string());
    drop(a);
    let del = cni.call("DEL", "cc", "", "eth0", &tap);
    assert!(
        del.ok,
        "DEL without a namespace: {} {}",
        del.out, del.stderr
    );
    assert_nothing_left(&env, &cni, "DEL of a pod whose namespace is gone");
}

#[test]
fn version_status_gc_and_vswitchd_away() {
    let Some((mut env, cni)) = start("version_status_gc_and_vswitchd_away") else {
        return;
    };
    let v = cni.call_env(&[("CNI_COMMAND", "VERSION")], br#"{"cniVersion":"1.1.0"}"#);
    assert!(v.ok, "{}", v.stderr);
    assert_eq!(v.out["cniVersion"], "1.1.0");
    let versions: Vec<&str> = v.out["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for want in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        assert!(versions.contains(&want), "{versions:?}");
    }

    let conf = cni.conf("1.1.0", "tap");
    let status = cni.call_env(
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", PLUGINS)],
        conf.to_string().as_bytes(),
    );
    assert!(
        status.ok,
        "STATUS while vswitchd runs: {} {}",
        status.out, status.stderr
    );

    // GC keeps the valid attachments and removes the others whole.
    let (x, y) = (
        Netns::new(format!("{}x", env.tag)),
        Netns::new(format!("{}y", env.tag)),
    );
    let rx = cni.add("cx", &x, &conf);
    cni.add("cy", &y, &cni.conf("1.1.0", "afxdp"));
    assert_eq!(cni.leases().len(), 4);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "cx", "ifname": "eth0"}]);
    let r = cni.call_env(
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", PLUGINS)],
        gc.to_string().as_bytes(),
    );
    assert!(r.ok, "GC: {} {}", r.out, r.stderr);
    let ports = env.daemon().port_list();
    assert_eq!(ports.len(), 1, "GC keeps the valid port only: {ports:#?}");
    assert_eq!(cni.records(), vec!["cx:eth0.json".to_string()]);
    let kept: Vec<String> = rx["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["address"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut leases = cni.leases();
    leases.sort();
    let mut want = kept.clone();
    want.sort();
    assert_eq!(leases, want, "GC released the stale leases only");
    assert!(
        plugin_links().is_empty(),
        "the stale veth is gone (a TAP lives in its pod): {:?}",
        plugin_links()
    );
    // GC and STATUS are 1.1.0 verbs.
    let old = cni.call_env(
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", PLUGINS)],
        cni.conf("1.0.0", "tap").to_string().as_bytes(),
    );
    assert_eq!(old.code(), 1, "{}", old.out);

    // vswitchd away: STATUS says 50, ADD 11 (and leases nothing), DEL
    // succeeds and leaves the port marked for the next call.
    let daemon = env.take_daemon();
    daemon.stop();
    let status = cni.call_env(
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", PLUGINS)],
        conf.to_string().as_bytes(),
    );
    assert_eq!(status.code(), 50, "{}", status.out);
    let z = Netns::new(format!("{}z", env.tag));
    let add = cni.call("ADD", "cz", &z.path(), "eth0", &conf);
    assert_eq!(add.code(), 11, "{}", add.out);
    assert_eq!(
        cni.leases().len(),
        2,
        "an ADD while vswitchd is away leases nothing"
    );
    let del = cni.call("DEL", "cx", &x.path(), "eth0", &conf);
    assert!(
        del.ok,
        "DEL while vswitchd is away: {} {}",
        del.out, del.stderr
    );
    assert!(cni.leases().is_empty(), "DEL released the lease");
    assert_eq!(
        cni.records(),
        vec!["cx:eth0.json".to_string()],
        "the port is still to remove"
    );

    // vswitchd back with the port restored from its state file: the next
    // call of the plugin removes it.
    env.start_daemon();
    env.daemon().wait_ports_up(&[&ports[0].name]);
    let r = cni.call_env(
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", PLUGINS)],
        gc.to_string().as_bytes(),
    );
    assert!(r.ok, "GC: {} {}", r.out, r.stderr);
    assert_nothing_left(&env, &cni, "DEL while vswitchd was away, then GC");
}

#[test]
fn chained_with_tuning_and_given_a_prev_result() {
    let Some((env, cni)) = start("chained_with_tuning_and_given_a_prev_result") else {
        return;
    };
    let ns = Netns::new(format!("{}t", env.tag));
    // An earlier plugin of the chain made side0 with a route through it;
    // its result is passed on whole (fields this plugin does not know
    // included), ours appended after it.
    for args in [
        vec![
            "-n", &ns.0, "link", "add", "side0", "type", "veth", "peer", "name", "side1",
        ],
        vec!["-n", &ns.0, "link", "set", "side0", "up"],
        vec!["-n", &ns.0, "link", "set", "side1", "up"],
        vec!["-n", &ns.0, "addr", "add", "192.0.2.9/24", "dev", "side0"],
        vec![
            "-n",
            &ns.0,
            "route",
            "add",
            "198.51.100.0/24",
            "via",
            "192.0.2.1",
            "dev",
            "side0",
        ],
    ] {
        let r = ip(&args);
        assert!(r.success(), "ip {args:?}: {}", r.stderr);
    }
    let prev = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "side0", "sandbox": ns.path(), "socketPath": "/run/x.sock"}],
        "ips": [{"address": "192.0.2.9/24", "interface": 0}],
        "routes": [{"dst": "198.51.100.0/24", "gw": "192.0.2.1", "priority": 5}]});
    let conf = cni.conf("1.0.0", "tap");
    let r = cni.add("ct", &ns, &with_prev(&conf, &prev));
    assert_eq!(r["interfaces"][0], prev["interfaces"][0], "{r}");
    assert_eq!(r["interfaces"][1]["name"], "eth0", "{r}");
    assert_eq!(r["ips"][0], prev["ips"][0]);
    assert_eq!(r["ips"][1]["interface"], 1, "{r}");
    assert_eq!(r["routes"][0], prev["routes"][0], "{r}");
    // CHECK of the chained result checks ours (the earlier plugin's route
    // goes through its own interface)...
    let chk = cni.call("CHECK", "ct", &ns.path(), "eth0", &with_prev(&conf, &r));
    assert!(chk.ok, "CHECK in a chain: {} {}", chk.out, chk.stderr);
    // ...and sees a changed MTU and a lost route.
    assert!(ip(&["-n", &ns.0, "link", "set", "eth0", "mtu", "1400"]).success());
    let chk = cni.call("CHECK", "ct", &ns.path(), "eth0", &with_prev(&conf, &r));
    assert_eq!(chk.code(), 103, "{}", chk.out);
    assert!(
        chk.out["msg"].as_str().unwrap().contains("MTU"),
        "{}",
        chk.out
    );
    assert!(ip(&["-n", &ns.0, "link", "set", "eth0", "mtu", "1500"]).success());
    assert!(ip(&["-n", &ns.0, "route", "del", "default"]).success());
    let chk = cni.call("CHECK", "ct", &ns.path(), "eth0", &with_prev(&conf, &r));
    assert_eq!(chk.code(), 103, "{}", chk.out);
    assert!(
        chk.out["msg"].as_str().unwrap().contains("0.0.0.0/0"),
        "{}",
        chk.out
    );
    assert!(ip(&["-n", &ns.0, "route", "add", "default", "via", "10.78.0.1"]).success());

    // Debian's tuning plugin after ours: it takes our result and sets a
    // sysctl of the pod's interface.
    let tuning = json!({"cniVersion": "1.0.0", "name": NET, "type": "tuning",
        "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}, "prevResult": r});
    let t = run_plugin(
        &Path::new(PLUGINS).join("tuning"),
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "ct"),
            ("CNI_NETNS", &ns.path()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", PLUGINS),
        ],
        tuning.to_string().as_bytes(),
    );
    assert!(t.ok, "tuning after vswitch: {} {}", t.out, t.stderr);
    let names = |v: &Value| -> Vec<String> {
        v["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].to_string())
            .collect()
    };
    // (tuning, a 1.0.0 plugin, drops the 1.1.0 field socketPath itself.)
    assert_eq!(names(&t.out), names(&r), "tuning passes our result on");
    assert_eq!(t.out["ips"], r["ips"]);
    let v = netns_exec(&ns.0, &["cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify"]);
    assert_eq!(v.stdout.trim(), "1");
    let del = cni.call("DEL", "ct", &ns.path(), "eth0", &conf);
    assert!(del.ok, "{} {}", del.out, del.stderr);
    assert_nothing_left(&env, &cni, "DEL after a chain");
}

#[test]
fn attachments_whose_names_run_together_stay_apart() {
    let Some((env, cni)) = start("attachments_whose_names_run_together_stay_apart") else {
        return;
    };
    // Container a-b with interface c, and container a with interface b-c.
    let (x, y) = (
        Netns::new(format!("{}x", env.tag)),
        Netns::new(format!("{}y", env.tag)),
    );
    let conf = cni.conf("1.0.0", "tap");
    for (id, ifname, ns) in [("a-b", "c", &x), ("a", "b-c", &y)] {
        let c = cni.call("ADD", id, &ns.path(), ifname, &conf);
        assert!(c.ok, "ADD {id}/{ifname}: {} {}", c.out, c.stderr);
    }
    assert_eq!(cni.records().len(), 2, "{:?}", cni.records());
    let del = cni.call("DEL", "a-b", &x.path(), "c", &conf);
    assert!(del.ok, "{} {}", del.out, del.stderr);
    let ports = env.daemon().port_list();
    assert_eq!(ports.len(), 1, "{ports:#?}");
    assert_eq!(
        ports[0].ifname.as_deref(),
        Some("b-c"),
        "the other attachment's port stays"
    );
    assert_eq!(
        cni.leases().len(),
        2,
        "the other attachment keeps its leases"
    );
    let del = cni.call("DEL", "a", &y.path(), "b-c", &conf);
    assert!(del.ok, "{} {}", del.out, del.stderr);
    assert_nothing_left(&env, &cni, "DEL of both");
}

#[test]
fn twenty_concurrent_adds_and_dels() {
    let Some((env, cni)) = start("twenty_concurrent_adds_and_dels") else {
        return;
    };
    const N: usize = 20;
    let spaces: Vec<Netns> = (0..N)
        .map(|i| Netns::new(format!("{}n{i}", env.tag)))
        .collect();
    let conf = cni.conf("1.0.0", "tap");
    let results: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = spaces
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let (cni, conf) = (&cni, &conf);
                s.spawn(move || cni.add(&format!("cc{i}"), ns, conf))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let addrs: HashSet<&str> = results
        .iter()
        .map(|r| r["ips"][0]["address"].as_str().unwrap())
        .collect();
    assert_eq!(addrs.len(), N, "every pod has its own address");
    let d = env.daemon();
    let names: Vec<String> = d.port_list().into_iter().map(|p| p.name).collect();
    assert_eq!(names.len(), N);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    d.wait_ports_up(&refs);
    let last = results[N - 1]["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let r = netns_exec(&spaces[0].0, &["ping", "-c", "1", "-W", "2", last]);
    assert!(
        r.success(),
        "pod 0 reaches pod {}: {}{}",
        N - 1,
        r.stdout,
        r.stderr
    );
    std::thread::scope(|s| {
        for (i, ns) in spaces.iter().enumerate() {
            let (cni, conf) = (&cni, &conf);
            s.spawn(move || {
                let del = cni.call("DEL", &format!("cc{i}"), &ns.path(), "eth0", conf);
                assert!(del.ok, "DEL cc{i}: {} {}", del.out, del.stderr);
            });
        }
    });
    let gone = wait_for(Duration::from_secs(5), || {
        d.port_list().is_empty().then_some(())
    });
    assert!(gone.is_some(), "ports left: {:?}", d.port_list());
    assert_nothing_left(&env, &cni, "20 concurrent DELs");
}

/// What a bad call is: a name, its environment, its stdin, its error code
/// (0: any).
type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<u8>, u64);

#[test]
fn bad_configs_and_environments_fail_clearly_and_leave_nothing() {
    let Some((env, cni)) = start("bad_configs_and_environments_fail_clearly_and_leave_nothing")
    else {
        return;
    };
    let ns = Netns::new(format!("{}e", env.tag));
    let good = cni.conf("1.0.0", "tap");
    let path = ns.path();
    let fifo = env.dir.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let fifo = fifo.to_string_lossy().into_owned();
    let vars = |netns: &str, ifname: &str, id: &str| {
        vec![
            ("CNI_COMMAND", "ADD".to_string()),
            ("CNI_CONTAINERID", id.to_string()),
            ("CNI_NETNS", netns.to_string()),
            ("CNI_IFNAME", ifname.to_string()),
            ("CNI_PATH", PLUGINS.to_string()),
        ]
    };
    let mut bad_ipam = good.clone();
    bad_ipam["ipam"]["type"] = json!("no-such-ipam");
    let mut no_ipam = good.clone();
    no_ipam.as_object_mut().unwrap().remove("ipam");
    let mut bad_socket = good.clone();
    bad_socket["socket"] = json!("/nonexistent/vswitchd.sock");
    let mut no_gateway = good.clone();
    no_gateway["ipam"]["ranges"] = json!([[{"subnet": "10.78.5.0/24"}]]);
    let mut bad_attach = good.clone();
    bad_attach["attach"] = json!("veth");
    let mut small_mtu = good.clone();
    small_mtu["mtu"] = json!(1000);
    let mut bad_subnet = good.clone();
    bad_subnet["ipam"]["ranges"] = json!([[{"subnet": "10.78.0.0/33"}]]);
    let cases: Vec<Case> = vec![
        ("no CNI_COMMAND", vec![], good.to_string().into_bytes(), 4),
        (
            "no CNI_NETNS",
            vars("", "eth0", "c1"),
            good.to_string().into_bytes(),
            4,
        ),
        (
            "a FIFO as CNI_NETNS",
            vars(&fifo, "eth0", "c1"),
            good.to_string().into_bytes(),
            4,
        ),
        (
            "/dev/null as CNI_NETNS",
            vars("/dev/null", "eth0", "c1"),
            good.to_string().into_bytes(),
            4,
        ),
        (
            "a long CNI_IFNAME",
            vars(&path, "eth0-far-too-long", "c1"),
            good.to_string().into_bytes(),
            4,
        ),
        (
            "a bad container id",
            vars(&path, "eth0", "../c1"),
            good.to_string().into_bytes(),
            4,
        ),
        (
            "garbage on stdin",
            vars(&path, "eth0", "c1"),
            b"{not json".to_vec(),
            6,
        ),
        (
            "cniVersion 9.9.9",
            vars(&path, "eth0", "c1"),
            cni.conf("9.9.9", "tap").to_string().into_bytes(),
            1,
        ),
        (
            "no ipam",
            vars(&path, "eth0", "c1"),
            no_ipam.to_string().into_bytes(),
            7,
        ),
        (
            "an unknown IPAM plugin",
            vars(&path, "eth0", "c1"),
            bad_ipam.to_string().into_bytes(),
            7,
        ),
        (
            "a bad subnet",
            vars(&path, "eth0", "c1"),
            bad_subnet.to_string().into_bytes(),
            0,
        ),
        (
            "vswitchd's socket missing",
            vars(&path, "eth0", "c1"),
            bad_socket.to_string().into_bytes(),
            11,
        ),
        (
            "a subnet vswitchd has no router address on",
            vars(&path, "eth0", "c1"),
            no_gateway.to_string().into_bytes(),
            100,
        ),
        (
            "an attach mode that does not exist",
            vars(&path, "eth0", "c1"),
            bad_attach.to_string().into_bytes(),
            7,
        ),
        (
            "an MTU too small for the pod's IPv6 address",
            vars(&path, "eth0", "c1"),
            small_mtu.to_string().into_bytes(),
            7,
        ),
    ];
    for (what, vars, stdin, want) in cases {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let c = cni.call_env(&vars, &stdin);
        let code = c.code();
        if want != 0 {
            assert_eq!(code, want, "{what}: {}", c.out);
        }
        let asked = serde_json::from_slice::<Value>(&stdin).ok();
        if asked.is_some_and(|v| v["cniVersion"] == "1.0.0") && what != "no CNI_COMMAND" {
            assert_eq!(
                c.out["cniVersion"], "1.0.0",
                "{what}: answered in the configuration's version"
            );
        }
        let msg = c.out["msg"].as_str().unwrap_or_default();
        assert!(
            !msg.is_empty() && !msg.contains('\n'),
            "{what}: one clear message: {}",
            c.out
        );
        assert!(
            c.stderr.starts_with("vswitch-cni: "),
            "{what}: {:?}",
            c.stderr
        );
        assert_nothing_left(&env, &cni, what);
        let r = ip(&["-n", &ns.0, "-o", "link", "show"]);
        assert_eq!(
            r.stdout.lines().count(),
            1,
            "{what}: the pod holds only lo: {}",
            r.stdout
        );
    }
    // A port of the name the plugin picks, made by someone else: vswitchd
    // refuses the plugin's, whose lease goes back; the other port stays.
    let r = cni.add("taken", &ns, &good);
    let name = env.daemon().port_list()[0].name.clone();
    let del = cni.call("DEL", "taken", &path, "eth0", &good);
    assert!(del.ok, "{} {}", del.out, del.stderr);
    assert!(r["ips"][0]["address"].is_string());
    env.daemon()
        .ctl_ok(&["port", "add", &name, "--type", "tap"]);
    for attach in ["tap", "afxdp"] {
        let conf = cni.conf("1.0.0", attach);
        let c = cni.call("ADD", "taken", &path, "eth0", &conf);
        let code = c.code();
        assert!(code == 100 || code == 101, "{attach}: {}", c.out);
        // The runtime's DEL after a failed ADD leaves the other port alone.
        let del = cni.call("DEL", "taken", &path, "eth0", &conf);
        assert!(
            del.ok,
            "{attach}: DEL after a failed ADD: {} {}",
            del.out, del.stderr
        );
        assert!(
            cni.leases().is_empty(),
            "{attach}: the lease went back: {:?}",
            cni.leases()
        );
        assert!(cni.records().is_empty(), "{attach}: no record");
        let ports = env.daemon().port_list();
        assert_eq!(ports.len(), 1, "{attach}: {ports:#?}");
        assert_eq!(ports[0].name, name, "{attach}: the other port stays");
        let r = ip(&["-n", &ns.0, "-o", "link", "show"]);
        assert_eq!(
            r.stdout.lines().count(),
            1,
            "{attach}: the pod holds only lo: {}",
            r.stdout
        );
    }
    env.daemon().ctl_ok(&["port", "del", &name]);
    assert_nothing_left(&env, &cni, "refused ADDs");
}

/// podman with its own configuration, storage and network directory under
/// a test's directory (nothing in /etc is touched), as docs/cni.md says
/// podman 4.3 runs on a machine like this one: runc, cgroupfs, the CNI
/// network backend, ulimits it may set, a busybox root filesystem.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn new(dir: &Path, socket: &Path) -> Podman {
        let dir = dir.join("podman");
        let (bin, net, rootfs) = (dir.join("bin"), dir.join("net"), dir.join("rootfs"));
        for d in [&bin, &net, &rootfs.join("bin"), &rootfs.join("www")] {
            std::fs::create_dir_all(d).unwrap();
        }
        for d in ["proc", "sys", "dev", "etc", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/usr/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for applet in ["sh", "sleep", "ping", "nc", "httpd", "ip", "printf"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        std::fs::write(rootfs.join("www/index.html"), "served by c2\n").unwrap();
        // The plugin installed as `vswitch`, beside Debian's plugins.
        std::os::unix::fs::symlink(cni_bin(), bin.join("vswitch")).unwrap();
        for p in ["host-local", "loopback"] {
            std::os::unix::fs::symlink(Path::new(PLUGINS).join(p), bin.join(p)).unwrap();
        }
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
                 [network]\nnetwork_backend = \"cni\"\nnetwork_config_dir = \"{}\"\n\
                 cni_plugin_dirs = [\"{}\"]\n\
                 [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
                net.display(),
                bin.display()
            ),
        )
        .unwrap();
        let conflist = json!({
            "cniVersion": "1.0.0",
            "name": "vswitchnet",
            "plugins": [{
                "type": "vswitch",
                "socket": socket,
                "dataDir": dir.join("cni"),
                "ipam": {"type": "host-local", "dataDir": dir.join("ipam"),
                         "ranges": [[{"subnet": "10.78.0.0/24"}]]},
            }],
        });
        std::fs::write(net.join("vswitchnet.conflist"), conflist.to_string()).unwrap();
        Podman { dir }
    }

    fn run(&self, args: &[&str]) -> common::CmdResult {
        common::run_cmd(
            Command::new("podman")
                .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
                .arg("--root")
                .arg(self.dir.join("storage"))
                .arg("--runroot")
                .arg(self.dir.join("run"))
                .args(["--storage-driver", "vfs"])
                .args(args),
        )
    }

    fn run_ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert!(r.success(), "podman {args:?}: {}{}", r.stdout, r.stderr);
        r.stdout.trim().to_string()
    }

    /// `podman run -d` of a container on the vswitch network.
    fn start(&self, name: &str, cmd: &[&str]) {
        let rootfs = self.dir.join("rootfs");
        let mut args = vec!["run", "-d", "--name", name, "--network", "vswitchnet"];
        args.extend(["--cap-add", "NET_RAW", "--rootfs", rootfs.to_str().unwrap()]);
        args.extend(cmd);
        self.run_ok(&args);
    }

    fn ip_of(&self, name: &str) -> String {
        self.run_ok(&[
            "inspect",
            name,
            "--format",
            "{{.NetworkSettings.Networks.vswitchnet.IPAddress}}",
        ])
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
    }
}

#[test]
fn podman_containers_reach_each_other_and_a_service() {
    let name = "podman_containers_reach_each_other_and_a_service";
    if !needs(
        name,
        &["/usr/bin/podman", "/usr/sbin/runc"],
        "podman and runc",
    ) || !needs(name, &["/usr/bin/busybox"], "busybox-static")
    {
        return;
    }
    let Some((env, cni)) = start(name) else {
        return;
    };
    let podman = Podman::new(&env.dir, &cni.socket);
    podman.start("c1", &["/bin/sleep", "600"]);
    podman.start("c2", &["/bin/httpd", "-f", "-p", "80", "-h", "/www"]);
    let (ip1, ip2) = (podman.ip_of("c1"), podman.ip_of("c2"));
    assert!(
        ip1.starts_with("10.78.0.") && ip2.starts_with("10.78.0.") && ip1 != ip2,
        "{ip1} {ip2}"
    );
    let d = env.daemon();
    let ports = d.port_list();
    assert_eq!(ports.len(), 2, "one port per container: {ports:#?}");
    d.wait_ports_up(&[&ports[0].name, &ports[1].name]);

    let ping = podman.run(&["exec", "c1", "ping", "-c", "2", "-W", "2", &ip2]);
    assert!(
        ping.success(),
        "c1 pings c2: {}{}",
        ping.stdout,
        ping.stderr
    );
    d.ctl_ok(&[
        "service",
        "add",
        "10.96.0.78:80/tcp",
        "--backend",
        &format!("{ip2}:80"),
    ]);
    let get = "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 3 10.96.0.78 80";
    let page = podman.run(&["exec", "c1", "sh", "-c", get]);
    assert!(
        page.success() && page.stdout.contains("served by c2"),
        "c1 reaches c2 through the Service VIP: {}{}",
        page.stdout,
        page.stderr
    );

    podman.run_ok(&["rm", "--force", "--time", "0", "c1", "c2"]);
    let left = wait_for(Duration::from_secs(5), || {
        d.port_list().is_empty().then_some(())
    });
    assert!(
        left.is_some(),
        "podman rm leaves no port: {:#?}",
        d.port_list()
    );
    let records = std::fs::read_dir(podman.dir.join("cni/vswitchnet"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .count();
    assert_eq!(records, 0, "podman rm leaves no record");
    let leases = std::fs::read_dir(podman.dir.join("ipam/vswitchnet"))
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n != "lock" && !n.starts_with("last_reserved_ip")
        })
        .count();
    assert_eq!(leases, 0, "podman rm leaves no lease");
    d.ctl_ok(&["service", "del", "10.96.0.78:80/tcp"]);
}
