//! Harness of the integration tests: a real vswitchd, real pods.
//!
//! A [`TestEnv`] owns everything one test creates on the machine: a
//! temporary directory with the daemon's socket, state file and log, the
//! vswitchd process, the pods (network namespaces with an `eth0` attached
//! to the switch, created by `scripts/pod.sh` so the script is tested too)
//! and background processes such as iperf3 servers. Its `Drop` removes all
//! of it, so a failing test cleans up as well as a passing one; when the
//! test failed it also prints the end of vswitchd's log.
//!
//! The tests need root (namespaces, XDP). Run as another user,
//! [`TestEnv::new`] returns `None` and the test prints "skipped" and passes.
//!
//! `vswitchctl` belongs to the `ctl` crate, and `cargo test` builds only the
//! binaries of the crate under test, so the harness expects it next to
//! vswitchd in the same target directory: `cargo build --release` (or
//! `cargo build --workspace` for debug tests) first, as `scripts/test.sh`
//! does. The `VSWITCHCTL` and `VSWITCHD` environment variables override the
//! paths (to test installed binaries, or a copy while the tree is rebuilt).
//!
//! Tests of one test binary run one at a time (a global lock held by each
//! `TestEnv`): several switches and iperf3 runs at once on a small CI
//! machine would measure the machine, not the switch.
//!
//! Several nodes: [`TestEnv::add_node`] creates a simulated Kubernetes node
//! with `scripts/node.sh` (a network namespace with an uplink `up0`, joined
//! to other nodes by a veth wire or a LAN bridge), and
//! [`TestEnv::start_node_daemon`] runs that node's own vswitchd inside it.
//! A pod created with [`PodSpec::node`] is attached to that node's switch.
//! Routed pods (a gateway, `--port-security`) are made with
//! [`TestEnv::add_pod_with`].
//!
//! Names: every object a test creates starts with a tag `vt<pid%1000><n>`
//! (n counts the environments of one process), so tests never collide and
//! leftovers are easy to spot (`ip netns list | grep ^vt`). Pod names are the
//! tag plus a one- or two-letter suffix, within the 15 characters an
//! interface name may have.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use ctl::{FdbEntry, MacAddr, PortInfo, PortStats, ShowReply};

#[path = "../../../fastpath/tests/common/skip.rs"]
mod skip;
use serde::de::DeserializeOwned;
pub use skip::cannot_run;

/// Every drop reason name `stats` must report (zeros included).
pub const DROP_REASONS: [&str; 22] = [
    "runt",
    "malformed",
    "invalid_src_mac",
    "no_destination",
    "same_port",
    "mac_limit",
    "port_down",
    "tx_ring_full",
    "no_buffer",
    "link_local",
    "spoofed_source",
    "ttl_expired",
    "no_route",
    "frag_needed",
    "neighbor_unresolved",
    "neighbor_queue_full",
    "ip_options",
    "ip_fragment",
    "unsupported",
    "no_endpoints",
    "conntrack_full",
    "bad_offload",
];

/// How long vswitchd may take to answer its socket after start.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long vswitchd may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

static SERIAL: Mutex<()> = Mutex::new(());
static NEXT_ENV: AtomicU32 = AtomicU32::new(0);

/// How a pod is attached to the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// A veth pair; the host end is an AF_XDP port.
    Afxdp,
    /// A TAP device created by vswitchd and moved into the pod.
    Tap,
}

impl Attach {
    /// The port type `port list` reports for this attachment.
    pub fn port_type(self) -> ctl::PortType {
        match self {
            Attach::Afxdp => ctl::PortType::Afxdp,
            Attach::Tap => ctl::PortType::Tap,
        }
    }
}

/// A pod: network namespace `name` whose `eth0` is switch port `name`.
#[derive(Debug, Clone)]
pub struct Pod {
    pub name: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub mac: MacAddr,
    pub attach: Attach,
    /// The node (network namespace) whose switch the pod is attached to;
    /// `None`: the environment's own daemon in the root namespace.
    pub node: Option<String>,
}

impl Pod {
    /// `ADDR/PREFIX` of the pod's eth0.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.ip, self.prefix)
    }
}

/// What one run of a command printed.
#[derive(Debug)]
pub struct CmdResult {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdResult {
    fn from_output(o: Output) -> Self {
        CmdResult {
            status: o.status,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// Runs a command to completion, panicking with a clear message when it
/// cannot be started at all (a missing tool).
pub fn run_cmd(cmd: &mut Command) -> CmdResult {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (scripts/deps.sh installs the tools)"));
    CmdResult::from_output(out)
}

/// Runs a command and panics with its output if it fails.
pub fn run_ok(cmd: &mut Command) -> CmdResult {
    let r = run_cmd(cmd);
    assert!(
        r.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        r.status,
        r.stdout,
        r.stderr
    );
    r
}

/// `ip <args>` in the node's namespace.
pub fn ip(args: &[&str]) -> CmdResult {
    run_cmd(Command::new("ip").args(args))
}

/// `ip netns exec <ns> <args>`.
pub fn netns_exec(ns: &str, args: &[&str]) -> CmdResult {
    run_cmd(Command::new("ip").args(["netns", "exec", ns]).args(args))
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

/// Cores this process may run on (its affinity mask).
pub fn allowed_cores() -> Vec<usize> {
    let mut cores = cores_allowed("/proc/self/status");
    if cores.is_empty() {
        cores.push(0);
    }
    cores
}

/// The cores a thread may run on, from its `/proc/.../status` file at
/// `status` (empty if it cannot be read).
pub fn cores_allowed(status: &str) -> Vec<usize> {
    let status = fs::read_to_string(status).unwrap_or_default();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or("")
        .trim();
    let mut cores = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
                cores.extend(a..=b);
            }
            None => cores.push(part.parse().unwrap()),
        }
    }
    cores
}

/// A `--cores` list of `n` cores for vswitchd, or `None` when the machine
/// has fewer. `VSWITCH_TEST_CORES` overrides the choice for one worker.
pub fn pick_cores(n: usize) -> Option<String> {
    if n == 1
        && let Ok(c) = std::env::var("VSWITCH_TEST_CORES")
    {
        return Some(c);
    }
    let cores = allowed_cores();
    if cores.len() < n {
        return None;
    }
    Some(
        cores[..n]
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// Path of the vswitchd binary under test: `$VSWITCHD`, else the one cargo built.
pub fn vswitchd_bin() -> PathBuf {
    match std::env::var_os("VSWITCHD") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_vswitchd")),
    }
}

/// Path of vswitchctl: `$VSWITCHCTL`, else next to vswitchd.
pub fn vswitchctl_bin() -> PathBuf {
    sibling_bin("VSWITCHCTL", "vswitchctl", "ctl")
}

/// Path of the CNI plugin: `$VSWITCH_CNI`, else next to vswitchd.
pub fn cni_bin() -> PathBuf {
    sibling_bin("VSWITCH_CNI", "vswitch-cni", "cni")
}

/// A binary of another crate of the workspace: `$var`, else the one built
/// next to vswitchd.
fn sibling_bin(var: &str, name: &str, krate: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_BIN_EXE_vswitchd")).with_file_name(name);
    assert!(
        p.exists(),
        "{name} not found at {}: it belongs to the {krate} crate, which `cargo test -p switch` does \
         not build; run `cargo build --release --workspace` (or `cargo build --workspace` for a debug \
         test run) first, as scripts/test.sh does, or set {var}",
        p.display()
    );
    p
}

/// Path of scripts/pod.sh in this repository.
pub fn pod_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pod.sh")
}

/// Path of scripts/node.sh in this repository.
pub fn node_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/node.sh")
}

/// How a pod is made; see [`TestEnv::add_pod_with`].
#[derive(Debug, Clone)]
pub struct PodSpec {
    pub suffix: String,
    pub attach: Attach,
    /// `ADDR/PREFIX` of the pod's eth0.
    pub cidr: String,
    /// Default gateway inside the pod.
    pub gw: Option<String>,
    /// Declare the pod's address and MAC to the switch (`pod.sh --port-security`).
    pub port_security: bool,
    /// The node to put the pod on (`pod.sh --node`).
    pub node: Option<String>,
    /// A TAP pod's offloads (`pod.sh --offload`); `None`: the default, on.
    pub offload: Option<bool>,
    /// Queues of the pod's interface (`pod.sh --queues`).
    pub queues: u16,
}

impl PodSpec {
    /// A pod on the environment's own switch, no gateway, no port security.
    pub fn new(suffix: &str, attach: Attach, cidr: &str) -> Self {
        PodSpec {
            suffix: suffix.to_string(),
            attach,
            cidr: cidr.to_string(),
            gw: None,
            port_security: false,
            node: None,
            offload: None,
            queues: 1,
        }
    }

    pub fn queues(mut self, n: u16) -> Self {
        self.queues = n;
        self
    }

    pub fn offload(mut self, on: bool) -> Self {
        self.offload = Some(on);
        self
    }

    pub fn gw(mut self, gw: &str) -> Self {
        self.gw = Some(gw.to_string());
        self
    }

    pub fn port_security(mut self) -> Self {
        self.port_security = true;
        self
    }

    pub fn node(mut self, node: &Node) -> Self {
        self.node = Some(node.name.clone());
        self
    }
}

/// A simulated node: network namespace `name` with uplink `up0`.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    /// The node kernel's address on `up0`.
    pub uplink_ip: Ipv4Addr,
    /// Where its vswitchd keeps socket, state file and log.
    pub dir: PathBuf,
}

/// How a new node is joined to the others (`scripts/node.sh add`).
#[derive(Debug, Clone, Copy)]
pub enum NodeLink<'a> {
    /// Its `up0` waits for a later node to be wired to it.
    Alone,
    /// A veth wire to this node's free end (a node added `Alone`).
    Wire(&'a Node),
    /// A port of the bridge of this LAN (from [`TestEnv::add_lan`]).
    Lan(&'a str),
}

/// Whether something in namespace `ns` listens on TCP port `port` (by `ss`).
pub fn tcp_listening(ns: &str, port: u16) -> bool {
    let r = netns_exec(ns, &["ss", "-Hltn", &format!("sport = :{port}")]);
    !r.stdout.trim().is_empty()
}

/// Polls `f` every 50 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Options for starting vswitchd.
#[derive(Debug, Clone)]
pub struct DaemonOpts {
    /// `--cores`.
    pub cores: String,
    /// Further arguments (`--mac-aging`, `--mac-limit`, ...).
    pub extra: Vec<String>,
    /// Open-file limit (soft and hard) vswitchd starts with.
    pub open_files: Option<u64>,
    /// A command vswitchd is started through (`setpriv ...`), which ends
    /// by executing it in place.
    pub wrapper: Vec<String>,
    /// Where the state file lives, if not beside the socket and log.
    pub state_dir: Option<PathBuf>,
}

impl Default for DaemonOpts {
    fn default() -> Self {
        DaemonOpts {
            cores: pick_cores(1).unwrap(),
            extra: Vec::new(),
            open_files: None,
            wrapper: Vec::new(),
            state_dir: None,
        }
    }
}

/// A running vswitchd.
pub struct Daemon {
    child: Child,
    pub socket: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
    pub opts: DaemonOpts,
}

impl Daemon {
    /// Starts vswitchd with `--poll adaptive` and waits until its socket answers.
    pub fn start(dir: &Path, opts: DaemonOpts) -> Daemon {
        Daemon::start_in(dir, opts, None)
    }

    /// Starts vswitchd inside network namespace `netns` (`ip netns exec NS
    /// vswitchd ...`, as a simulated node's switch runs), or in ours.
    pub fn start_in(dir: &Path, opts: DaemonOpts, netns: Option<&str>) -> Daemon {
        let socket = dir.join("vswitchd.sock");
        let state = opts.state_dir.as_deref().unwrap_or(dir).join("state.json");
        let log = dir.join("vswitchd.log");
        let mut logf = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        writeln!(
            logf,
            "=== test harness: starting vswitchd --cores {} {:?} (netns {:?})",
            opts.cores, opts.extra, netns
        )
        .unwrap();
        // `ip netns exec` enters the namespace and execs vswitchd in place
        // (no fork), so the child's pid is vswitchd's and signals reach it.
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(vswitchd_bin());
                c
            }
            None if !opts.wrapper.is_empty() => {
                let mut c = Command::new(&opts.wrapper[0]);
                c.args(&opts.wrapper[1..]).arg(vswitchd_bin());
                c
            }
            None => Command::new(vswitchd_bin()),
        };
        if let Some(n) = opts.open_files {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: setrlimit is async-signal-safe; `lim` is copied in.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .arg("--socket")
            .arg(&socket)
            .arg("--state")
            .arg(&state)
            .args(["--poll", "adaptive", "--cores", &opts.cores])
            .args(&opts.extra)
            .env_remove("VSWITCH_SOCKET")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", vswitchd_bin().display()));
        let mut d = Daemon {
            child,
            socket,
            state,
            log,
            opts,
        };
        let started = Instant::now();
        loop {
            if let Some(status) = d.child.try_wait().unwrap() {
                panic!(
                    "vswitchd exited during start-up ({status}); log:\n{}",
                    d.log_tail(40)
                );
            }
            if d.socket.exists() && d.ctl(&["show"]).success() {
                break;
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "vswitchd did not answer `vswitchctl show` within {START_TIMEOUT:?}; log:\n{}",
                d.log_tail(40)
            );
            thread::sleep(Duration::from_millis(50));
        }
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends `signal` (such as `libc::SIGTERM`) to vswitchd.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).unwrap();
        // SAFETY: kill(2) takes plain integers and touches no memory of ours;
        // the pid is our own unreaped child, so it cannot name another process.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc != 0 {
            eprintln!("kill({pid}, {signal}): {}", std::io::Error::last_os_error());
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_for(timeout, || self.child.try_wait().unwrap())
    }

    /// Stops vswitchd with SIGTERM and returns its exit status; panics if it
    /// does not exit within [`STOP_TIMEOUT`].
    pub fn stop(mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        match self.wait_exit(STOP_TIMEOUT) {
            Some(status) => status,
            None => panic!(
                "vswitchd did not exit within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}",
                self.log_tail(40)
            ),
        }
    }

    /// Kills vswitchd with SIGKILL (a crash) and reaps it.
    pub fn crash(mut self) {
        self.signal(libc::SIGKILL);
        self.wait_exit(STOP_TIMEOUT)
            .expect("vswitchd survived SIGKILL");
    }

    /// The last `n` lines of the daemon's log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }

    /// Runs `vswitchctl --socket <ours> <args>`.
    pub fn ctl(&self, args: &[&str]) -> CmdResult {
        run_cmd(
            Command::new(vswitchctl_bin())
                .arg("--socket")
                .arg(&self.socket)
                .args(args)
                .env_remove("VSWITCH_SOCKET"),
        )
    }

    /// Runs vswitchctl and panics (with the daemon's log) if it fails.
    /// Runs a vswitchctl command that must be refused: exit 1 (refused by
    /// the daemon) or 2 (usage), and exactly one line `vswitchctl: ...`
    /// containing `why` on stderr.
    #[track_caller]
    pub fn ctl_refused(&self, args: &[&str], why: &str) {
        let r = self.ctl(args);
        let code = r.status.code();
        assert!(
            code == Some(1) || code == Some(2),
            "vswitchctl {args:?} should fail with exit 1 or 2, got {:?}\nstdout: {}\nstderr: {}",
            r.status,
            r.stdout,
            r.stderr
        );
        let err = r.stderr.trim_end();
        assert!(
            err.lines().count() == 1 && err.starts_with("vswitchctl: ") && err.contains(why),
            "vswitchctl {args:?}: expected one line `vswitchctl: ...{why}...` on stderr, got:\n{err}"
        );
    }

    pub fn ctl_ok(&self, args: &[&str]) -> CmdResult {
        let r = self.ctl(args);
        assert!(
            r.success(),
            "vswitchctl {args:?} failed ({}): {}\nvswitchd log:\n{}",
            r.status,
            r.stderr.trim(),
            self.log_tail(20)
        );
        r
    }

    /// Runs `vswitchctl -o json <args>` and parses its output as `T`.
    pub fn ctl_json<T: DeserializeOwned>(&self, args: &[&str]) -> T {
        let mut full = vec!["-o", "json"];
        full.extend_from_slice(args);
        let r = self.ctl_ok(&full);
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| {
            panic!(
                "vswitchctl {full:?} printed JSON that does not parse: {e}\n{}",
                r.stdout
            )
        })
    }

    /// Runs `vswitchctl -o json <args>` and returns the raw JSON value.
    pub fn ctl_value(&self, args: &[&str]) -> serde_json::Value {
        self.ctl_json(args)
    }

    pub fn port_list(&self) -> Vec<PortInfo> {
        self.ctl_json(&["port", "list"])
    }

    pub fn port(&self, name: &str) -> PortInfo {
        self.port_list()
            .into_iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("port {name} missing from `port list`"))
    }

    pub fn stats(&self) -> Vec<PortStats> {
        self.ctl_json(&["stats"])
    }

    pub fn port_stats(&self, name: &str) -> PortStats {
        self.stats()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("port {name} missing from `stats`"))
    }

    pub fn fdb(&self) -> Vec<FdbEntry> {
        self.ctl_json(&["fdb", "show"])
    }

    pub fn show(&self) -> ShowReply {
        self.ctl_json(&["show"])
    }

    /// Waits until `port list` shows every named port up (ports are
    /// attached by their worker, which may take a moment after `port add`).
    pub fn wait_ports_up(&self, names: &[&str]) {
        let ok = wait_for(Duration::from_secs(10), || {
            let ports = self.port_list();
            names
                .iter()
                .all(|n| {
                    ports
                        .iter()
                        .any(|p| p.name == *n && p.state == ctl::PortState::Up)
                })
                .then_some(())
        });
        assert!(
            ok.is_some(),
            "ports {names:?} not all up within 10 s: {:#?}\nvswitchd log:\n{}",
            self.port_list(),
            self.log_tail(20)
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        self.signal(libc::SIGTERM);
        if self.wait_exit(STOP_TIMEOUT).is_none() {
            eprintln!("vswitchd did not exit on SIGTERM; killing it");
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn log_tail(path: &Path, n: usize) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Everything one test creates; see the module documentation.
pub struct TestEnv {
    pub name: String,
    pub tag: String,
    pub dir: PathBuf,
    daemon: Option<Daemon>,
    pods: Vec<Pod>,
    background: Vec<Child>,
    /// Namespaces of nodes and LANs (`scripts/node.sh`).
    nodes: Vec<String>,
    /// The switches of nodes, by node name.
    node_daemons: Vec<(String, Daemon)>,
    _serial: MutexGuard<'static, ()>,
}

impl TestEnv {
    /// A fresh environment for test `name`; when the test cannot run here
    /// (not root), a failure, or `None` where the run allows skipping
    /// ([`cannot_run`]).
    pub fn new(name: &str) -> Option<TestEnv> {
        if !is_root() {
            cannot_run(
                name,
                "integration tests need root (network namespaces, XDP)",
            );
            return None;
        }
        let serial = SERIAL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let n = NEXT_ENV.fetch_add(1, Ordering::Relaxed);
        let tag = format!("vt{}{}", std::process::id() % 1000, n);
        assert!(tag.len() <= 13, "tag {tag} leaves no room for pod suffixes");
        let dir = std::env::temp_dir().join(format!("vswitch-test-{tag}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Some(TestEnv {
            name: name.to_string(),
            tag,
            dir,
            daemon: None,
            pods: Vec::new(),
            background: Vec::new(),
            nodes: Vec::new(),
            node_daemons: Vec::new(),
            _serial: serial,
        })
    }

    /// `new` followed by `start_daemon`: the usual start of a test.
    pub fn with_daemon(name: &str) -> Option<TestEnv> {
        let mut env = TestEnv::new(name)?;
        env.start_daemon();
        Some(env)
    }

    /// Starts vswitchd with default options (one worker, adaptive polling).
    pub fn start_daemon(&mut self) -> &Daemon {
        self.start_daemon_with(DaemonOpts::default())
    }

    /// Starts vswitchd on this environment's socket and state file.
    pub fn start_daemon_with(&mut self, opts: DaemonOpts) -> &Daemon {
        assert!(self.daemon.is_none(), "vswitchd already running");
        self.daemon = Some(Daemon::start(&self.dir, opts));
        self.daemon.as_ref().unwrap()
    }

    /// The running daemon.
    pub fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("vswitchd is not running")
    }

    pub fn daemon_mut(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("vswitchd is not running")
    }

    /// Takes the daemon out of the environment (to stop or crash it).
    pub fn take_daemon(&mut self) -> Daemon {
        self.daemon.take().expect("vswitchd is not running")
    }

    /// Path of the state file (whether or not the daemon runs).
    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Shorthand for `self.daemon().ctl(args)`.
    pub fn ctl(&self, args: &[&str]) -> CmdResult {
        self.daemon().ctl(args)
    }

    /// Creates pod `<tag><suffix>` with `scripts/pod.sh add` and waits for
    /// its port to be up. Pod `i` of a test gets 10.77.0.(11+i)/24 and MAC
    /// 02:76:<tag hash>:<i>.
    pub fn add_pod(&mut self, suffix: &str, attach: Attach) -> Pod {
        let i = u8::try_from(self.pods.len()).unwrap();
        let cidr = format!("10.77.0.{}/24", 11 + u16::from(i));
        self.add_pod_with(PodSpec::new(suffix, attach, &cidr))
    }

    /// Creates pod `<tag><suffix>` as `spec` says (address, gateway, port
    /// security, node) and waits for its port to be up. Pod `i` of a test
    /// gets MAC 02:76:<tag hash>:<i>.
    pub fn add_pod_with(&mut self, spec: PodSpec) -> Pod {
        let name = format!("{}{}", self.tag, spec.suffix);
        assert!(
            name.len() <= 15,
            "pod name {name} longer than an interface name may be"
        );
        let (ip, prefix) = spec
            .cidr
            .split_once('/')
            .map(|(a, p)| (a.parse::<Ipv4Addr>().unwrap(), p.parse::<u8>().unwrap()))
            .unwrap_or_else(|| panic!("pod address {} is not ADDR/PREFIX", spec.cidr));
        let i = u8::try_from(self.pods.len()).unwrap();
        let h = self
            .tag
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        let hb = h.to_be_bytes();
        let pod = Pod {
            name: name.clone(),
            ip,
            prefix,
            mac: MacAddr([0x02, 0x76, hb[1], hb[2], hb[3], i + 1]),
            attach: spec.attach,
            node: spec.node.clone(),
        };
        remove_pod_objects(&name, pod.node.as_deref()); // leftovers of a crashed earlier run
        let socket = self.daemon_for(&pod).socket.clone();
        let mut cmd = Command::new(pod_script());
        cmd.args([
            "add",
            &name,
            "--ip",
            &pod.cidr(),
            "--mac",
            &pod.mac.to_string(),
        ])
        .arg("--socket")
        .arg(&socket)
        .env("VSWITCHCTL", vswitchctl_bin())
        .env_remove("VSWITCH_SOCKET");
        if spec.attach == Attach::Tap {
            cmd.arg("--tap");
        }
        if let Some(on) = spec.offload {
            cmd.args(["--offload", if on { "on" } else { "off" }]);
        }
        if let Some(gw) = &spec.gw {
            cmd.args(["--gw", gw]);
        }
        if spec.queues != 1 {
            cmd.args(["--queues", &spec.queues.to_string()]);
        }
        if spec.port_security {
            cmd.arg("--port-security");
        }
        if let Some(node) = &spec.node {
            cmd.args(["--node", node]);
        }
        // Registered before it exists, so a half-created pod is removed too.
        self.pods.push(pod.clone());
        let r = run_cmd(&mut cmd);
        let d = self.daemon_for(&pod);
        assert!(
            r.success(),
            "pod.sh add {name} ({:?}) failed: {}{}\nvswitchd log:\n{}",
            spec.attach,
            r.stdout,
            r.stderr,
            d.log_tail(20)
        );
        d.wait_ports_up(&[&name]);
        pod
    }

    /// The daemon a pod is attached to: its node's, or the environment's own.
    pub fn daemon_for(&self, pod: &Pod) -> &Daemon {
        match &pod.node {
            Some(node) => self.node_daemon(node),
            None => self.daemon(),
        }
    }

    /// Creates a LAN for nodes (`scripts/node.sh lan <tag><suffix>`): a
    /// namespace with a Linux bridge. Returns its name.
    pub fn add_lan(&mut self, suffix: &str) -> String {
        let name = format!("{}{suffix}", self.tag);
        remove_netns(&name);
        self.nodes.push(name.clone());
        run_ok(Command::new(node_script()).args(["lan", &name]));
        name
    }

    /// Creates node `<tag><suffix>` with `scripts/node.sh add`: a network
    /// namespace whose `up0` has `uplink_cidr` (such as 192.168.50.1/24),
    /// joined to others as `link` says. Start its switch with
    /// [`TestEnv::start_node_daemon`].
    pub fn add_node(&mut self, suffix: &str, uplink_cidr: &str, link: NodeLink<'_>) -> Node {
        self.add_node_with_queues(suffix, uplink_cidr, link, 1)
    }

    /// As [`TestEnv::add_node`], with `queues` TX and RX queues on the
    /// uplink's veth (`node.sh add --queues`; not for a wire).
    pub fn add_node_with_queues(
        &mut self,
        suffix: &str,
        uplink_cidr: &str,
        link: NodeLink<'_>,
        queues: u16,
    ) -> Node {
        let name = format!("{}{suffix}", self.tag);
        assert!(name.len() <= 15, "node name {name} too long");
        let uplink_ip = uplink_cidr
            .split_once('/')
            .and_then(|(a, _)| a.parse().ok())
            .unwrap_or_else(|| panic!("uplink address {uplink_cidr} is not ADDR/PREFIX"));
        remove_netns(&name);
        self.nodes.push(name.clone());
        let mut cmd = Command::new(node_script());
        cmd.args(["add", &name, "--uplink-ip", uplink_cidr]);
        match link {
            NodeLink::Alone => {}
            NodeLink::Wire(peer) => {
                cmd.args(["--wire", &peer.name]);
            }
            NodeLink::Lan(lan) => {
                cmd.args(["--lan", lan]);
            }
        }
        if queues != 1 {
            cmd.args(["--queues", &queues.to_string()]);
        }
        run_ok(&mut cmd);
        Node {
            name: name.clone(),
            uplink_ip,
            dir: self.dir.join(&name),
        }
    }

    /// Starts `node`'s own vswitchd inside the node's namespace, with one
    /// worker on `cores`, on a socket and state file of its own.
    pub fn start_node_daemon(&mut self, node: &Node, cores: &str) -> &Daemon {
        assert!(
            !self.node_daemons.iter().any(|(n, _)| *n == node.name),
            "vswitchd of node {} already running",
            node.name
        );
        fs::create_dir_all(&node.dir).unwrap();
        let opts = DaemonOpts {
            cores: cores.to_string(),
            ..DaemonOpts::default()
        };
        let d = Daemon::start_in(&node.dir, opts, Some(&node.name));
        self.node_daemons.push((node.name.clone(), d));
        &self.node_daemons.last().unwrap().1
    }

    /// The running vswitchd of node `node` (a node name).
    pub fn node_daemon(&self, node: &str) -> &Daemon {
        self.node_daemons
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, d)| d)
            .unwrap_or_else(|| panic!("vswitchd of node {node} is not running"))
    }

    /// The running vswitchd of node `node`, if there is one.
    pub fn try_node_daemon(&self, node: &str) -> Option<&Daemon> {
        self.node_daemons
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, d)| d)
    }

    /// Takes node `node`'s vswitchd out of the environment (to stop or crash it).
    pub fn take_node_daemon(&mut self, node: &str) -> Daemon {
        let i = self
            .node_daemons
            .iter()
            .position(|(n, _)| n == node)
            .unwrap_or_else(|| panic!("vswitchd of node {node} is not running"));
        self.node_daemons.remove(i).1
    }

    /// Starts a TCP echo server in namespace `server_ns` (a pod or a node)
    /// on `port`, connects to `addr:port` from namespace `client_ns`, sends
    /// 1.5 kB (more than one segment) and checks that all of it comes back.
    /// Returns the client address the server saw (proof that the source
    /// address survived the way there).
    pub fn tcp_exchange(
        &mut self,
        client_ns: &str,
        server_ns: &str,
        addr: Ipv4Addr,
        port: u16,
    ) -> String {
        let out = self.dir.join(format!("tcp-{server_ns}-{port}.out"));
        let _ = fs::remove_file(&out);
        let server_py = format!(
            "import socket\n\
             s = socket.socket()\n\
             s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('0.0.0.0', {port}))\n\
             s.listen(1)\n\
             s.settimeout(30)\n\
             c, a = s.accept()\n\
             c.settimeout(10)\n\
             while True:\n\
             \x20   d = c.recv(65536)\n\
             \x20   if not d: break\n\
             \x20   c.sendall(d)\n\
             print(a[0], flush=True)\n\
             c.close()\n"
        );
        let outf = File::create(&out).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", server_ns, "python3", "-c", &server_py])
            .stdin(Stdio::null())
            .stdout(outf)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start python3 in {server_ns}: {e}"));
        self.background.push(child);
        let listening = wait_for(Duration::from_secs(10), || {
            tcp_listening(server_ns, port).then_some(())
        });
        assert!(
            listening.is_some(),
            "TCP server in {server_ns} did not start"
        );
        let client_py = format!(
            "import socket\n\
             c = socket.create_connection(('{addr}', {port}), timeout=10)\n\
             msg = b'vswitch says hello through the router\\n' * 40\n\
             c.sendall(msg)\n\
             c.shutdown(socket.SHUT_WR)\n\
             got = b''\n\
             while len(got) < len(msg):\n\
             \x20   d = c.recv(65536)\n\
             \x20   if not d: break\n\
             \x20   got += d\n\
             assert got == msg, 'echo differs'\n\
             print('ok')\n"
        );
        let r = run_cmd(Command::new("timeout").args([
            "30", "ip", "netns", "exec", client_ns, "python3", "-c", &client_py,
        ]));
        assert!(
            r.success() && r.stdout.trim() == "ok",
            "TCP exchange {client_ns} -> {addr}:{port} (server in {server_ns}) failed: {}{}",
            r.stdout,
            r.stderr
        );
        let server = self.background.last_mut().unwrap();
        let exited = wait_for(Duration::from_secs(10), || server.try_wait().unwrap());
        assert!(exited.is_some(), "TCP server in {server_ns} did not finish");
        fs::read_to_string(&out).unwrap().trim().to_string()
    }

    /// Deletes a pod's network namespace behind the switch's back (the
    /// veth goes with it), as a container runtime tearing a pod down would.
    pub fn delete_netns(&self, pod: &Pod) {
        let r = ip(&["netns", "del", &pod.name]);
        assert!(r.success(), "ip netns del {}: {}", pod.name, r.stderr);
    }

    /// Spawns a background process that the environment kills on drop.
    pub fn spawn_background(&mut self, cmd: &mut Command) -> &mut Child {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        self.background.push(child);
        self.background.last_mut().unwrap()
    }

    /// Pings `to` from inside `from`: first until one reply arrives (ARP and
    /// MAC learning settle, up to ~10 s), then `ping -c 3 -W 1`, which must
    /// get every reply.
    pub fn ping(&self, from: &Pod, to: &Pod) {
        let target = to.ip.to_string();
        let first = wait_for(Duration::from_secs(10), || {
            netns_exec(&from.name, &["ping", "-c", "1", "-W", "1", &target])
                .success()
                .then_some(())
        });
        assert!(
            first.is_some(),
            "no ping reply from {} ({:?}, {}) to {} ({:?}, {}) within 10 s\nport list: {}\n\
             stats: {}\nvswitchd log:\n{}",
            from.name,
            from.attach,
            from.ip,
            to.name,
            to.attach,
            to.ip,
            self.daemon_for(from).ctl(&["port", "list"]).stdout,
            self.daemon_for(from).ctl(&["stats"]).stdout,
            self.daemon_for(from).log_tail(20)
        );
        let r = netns_exec(
            &from.name,
            &["ping", "-c", "3", "-i", "0.2", "-W", "1", &target],
        );
        assert!(
            r.success() && r.stdout.contains(" 0% packet loss"),
            "ping {} -> {} lost packets after the first reply:\n{}{}",
            from.name,
            to.name,
            r.stdout,
            r.stderr
        );
    }

    /// Pings in both directions between every pair of `pods`.
    pub fn ping_all(&self, pods: &[&Pod]) {
        for a in pods {
            for b in pods {
                if a.name != b.name {
                    self.ping(a, b);
                }
            }
        }
    }

    /// Runs an iperf3 TCP transfer of `secs` seconds from `from` to `to`
    /// and returns the bytes the receiver got.
    pub fn iperf(&mut self, from: &Pod, to: &Pod, secs: u32) -> u64 {
        self.iperf_via(from, to, to.ip, secs)
    }

    /// As [`TestEnv::iperf`], with the client connecting to `addr` (a
    /// Service VIP in front of `to`, say) rather than to `to`'s address.
    pub fn iperf_via(&mut self, from: &Pod, to: &Pod, addr: Ipv4Addr, secs: u32) -> u64 {
        self.spawn_background(
            Command::new("ip")
                .args(["netns", "exec", &to.name])
                .args(["iperf3", "-s", "-1", "-p", "5201"]),
        );
        let listening = wait_for(Duration::from_secs(5), || {
            tcp_listening(&to.name, 5201).then_some(())
        });
        assert!(
            listening.is_some(),
            "iperf3 server in {} did not start listening",
            to.name
        );
        let limit = (secs + 20).to_string();
        let r = run_cmd(
            Command::new("timeout")
                .args([&limit, "ip", "netns", "exec", &from.name])
                .args([
                    "iperf3",
                    "-c",
                    &addr.to_string(),
                    "-p",
                    "5201",
                    "-t",
                    &secs.to_string(),
                    "--connect-timeout",
                    "3000",
                    "-J",
                ]),
        );
        // The one-off server exits after its client; wait for it, so that the
        // next transfer to this pod does not find the old one still listening.
        let server = self.background.last_mut().unwrap();
        if wait_for(Duration::from_secs(5), || {
            server.try_wait().unwrap().map(|_| ())
        })
        .is_none()
        {
            let _ = server.kill();
            let _ = server.wait();
        }
        let what = format!(
            "iperf3 {} ({:?}) -> {} ({:?})",
            from.name, from.attach, to.name, to.attach
        );
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| {
            panic!(
                "{what} printed no JSON ({e}; exit {}; a TCP stall hits the {limit} s timeout):\n{}{}\n\
                 stats: {}\nvswitchd log:\n{}",
                r.status,
                r.stdout,
                r.stderr,
                self.ctl(&["stats"]).stdout,
                self.daemon().log_tail(20)
            )
        });
        if let Some(err) = v.get("error") {
            panic!(
                "{what} failed: {err}\nstats: {}\nvswitchd log:\n{}",
                self.ctl(&["stats"]).stdout,
                self.daemon().log_tail(20)
            );
        }
        let bytes = v["end"]["sum_received"]["bytes"]
            .as_u64()
            .unwrap_or_else(|| panic!("{what}: no end.sum_received.bytes in:\n{v:#}"));
        eprintln!("{what}: {bytes} bytes in {secs} s");
        bytes
    }
}

/// Removes pod `name`'s namespace and host interface (in its node's
/// namespace, if it has a node), ignoring errors.
fn remove_pod_objects(name: &str, node: Option<&str>) {
    remove_netns(name);
    // Deleting the namespace destroys the veth, but asynchronously.
    let host_ip = |args: &[&str]| match node {
        Some(n) => ip(&[&["-n", n][..], args].concat()),
        None => ip(args),
    };
    if node.is_none_or(|n| Path::new("/run/netns").join(n).exists())
        && host_ip(&["link", "show", "dev", name]).success()
    {
        let _ = host_ip(&["link", "del", "dev", name]);
    }
}

/// Deletes network namespace `name` if it exists, ignoring errors.
fn remove_netns(name: &str) {
    if Path::new("/run/netns").join(name).exists() {
        let _ = ip(&["netns", "del", name]);
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let failed = thread::panicking();
        for child in &mut self.background {
            let _ = child.kill();
            let _ = child.wait();
        }
        if failed {
            for (node, d) in &self.node_daemons {
                eprintln!(
                    "--- {} failed; vswitchd log of node {node} ({}), last lines:\n{}",
                    self.name,
                    d.log.display(),
                    d.log_tail(40)
                );
            }
            if let Some(d) = &self.daemon {
                eprintln!(
                    "--- {} failed; vswitchd log ({}), last lines:\n{}",
                    self.name,
                    d.log.display(),
                    d.log_tail(60)
                );
            } else {
                eprintln!(
                    "--- {} failed; vswitchd log, last lines:\n{}",
                    self.name,
                    log_tail(&self.dir.join("vswitchd.log"), 60)
                );
            }
        }
        // Ports first, while the daemon still runs, then the daemon, then
        // whatever kernel objects are left.
        for pod in &self.pods {
            let d = match &pod.node {
                Some(node) => self
                    .node_daemons
                    .iter()
                    .find(|(n, _)| n == node)
                    .map(|(_, d)| d),
                None => self.daemon.as_ref(),
            };
            if let Some(d) = d {
                let _ = d.ctl(&["port", "del", &pod.name]);
            }
        }
        drop(self.daemon.take());
        self.node_daemons.clear();
        for pod in &self.pods {
            remove_pod_objects(&pod.name, pod.node.as_deref());
        }
        // Nodes last: their namespaces hold the pods' veth host ends.
        for node in self.nodes.iter().rev() {
            let r = run_cmd(Command::new(node_script()).args(["del", node]));
            if !r.success() {
                eprintln!("node.sh del {node}: {}", r.stderr.trim());
                remove_netns(node);
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Checks every worker's frame pool: nothing lost, nothing used twice.
/// `in_flight` may be non-zero for an instant, so the sum is polled.
pub fn assert_frames_accounted(env: &TestEnv, totals_before: &[u64]) {
    let show = env.daemon().show();
    let totals: Vec<u64> = show.workers.iter().map(|w| w.frames.total).collect();
    assert_eq!(
        totals, totals_before,
        "a worker's frame pool changed size under load"
    );
    let balanced = wait_for(Duration::from_secs(2), || {
        let show = env.daemon().show();
        show.workers
            .iter()
            .all(|w| {
                let f = w.frames;
                f.free + f.in_rings + f.in_flight == f.total
            })
            .then_some(())
    });
    let show = env.daemon().show();
    assert!(
        balanced.is_some(),
        "free + in_rings + in_flight != total for 2 s (frames lost or double-counted): {:#?}",
        show.workers
    );
    for w in &show.workers {
        assert_eq!(
            w.frames.errors, 0,
            "worker {} reports frame errors: {:?}",
            w.id, w.frames
        );
    }
}

/// A veth pair in the node namespace, removed on drop.
pub struct VethGuard(String);

impl VethGuard {
    pub fn new(host: &str, peer: &str) -> Self {
        let _ = ip(&["link", "del", "dev", host]);
        run_ok(
            Command::new("ip").args(["link", "add", host, "type", "veth", "peer", "name", peer]),
        );
        run_ok(Command::new("ip").args(["link", "set", "dev", host, "up"]));
        run_ok(Command::new("ip").args(["link", "set", "dev", peer, "up"]));
        VethGuard(host.to_string())
    }
}

impl Drop for VethGuard {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", "dev", &self.0]);
    }
}
