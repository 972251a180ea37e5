//! The control socket under hostile or heavy use: peers that are not
//! allowed, more connections and bytes than the daemon will hold, a
//! thousand clients and a 100 MB burst of requests while pods keep
//! forwarding and the switch keeps learning.
//!
//! Needs root (to run clients as other users); see `common/mod.rs`.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Attach, CmdResult, Daemon, DaemonOpts, TestEnv, run_cmd, vswitchctl_bin, wait_for};

const NOBODY: &str = "65534";
const GROUP: &str = "4242";

/// vswitchctl copied where another user may run it (the build tree may be
/// in a directory only root can enter).
fn public_ctl(env: &TestEnv) -> PathBuf {
    fs::set_permissions(&env.dir, fs::Permissions::from_mode(0o755)).unwrap();
    let dst = env.dir.join("vswitchctl");
    fs::copy(vswitchctl_bin(), &dst).unwrap();
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).unwrap();
    dst
}

/// Runs `ctl --socket S args` as user nobody with the given `setpriv`
/// options (groups, capabilities).
fn ctl_as(ctl: &Path, d: &Daemon, setpriv: &[&str], args: &[&str]) -> CmdResult {
    run_cmd(
        Command::new("setpriv")
            .args(["--reuid", NOBODY])
            .args(setpriv)
            .arg(ctl)
            .arg("--socket")
            .arg(&d.socket)
            .args(args),
    )
}

#[test]
fn peers_other_than_root_and_the_socket_group_are_refused() {
    let Some(mut env) = TestEnv::new("peers_other_than_root_and_the_socket_group_are_refused")
    else {
        return;
    };
    let ctl = public_ctl(&env);
    env.start_daemon_with(DaemonOpts {
        extra: vec!["--socket-group".into(), GROUP.into()],
        ..DaemonOpts::default()
    });
    let d = env.daemon();
    let meta = fs::metadata(&d.socket).unwrap();
    assert_eq!(
        meta.gid(),
        4242,
        "the socket file belongs to --socket-group"
    );
    assert_eq!(meta.mode() & 0o777, 0o660);

    // Members of the group, as primary or supplementary group, are served.
    for groups in [
        &["--regid", GROUP, "--clear-groups"][..],
        &["--regid", NOBODY, "--groups", GROUP],
    ] {
        let r = ctl_as(&ctl, d, groups, &["addr", "list"]);
        assert!(
            r.success(),
            "group member refused ({groups:?}): {}",
            r.stderr
        );
    }

    // Others cannot open the socket file ...
    let outsider = ["--regid", NOBODY, "--clear-groups"];
    let r = ctl_as(&ctl, d, &outsider, &["addr", "list"]);
    assert!(
        !r.success() && r.stderr.contains("cannot connect") && r.stderr.contains("denied"),
        "{}",
        r.stderr
    );
    // ... and one that can (CAP_DAC_OVERRIDE ignores the file's mode) is
    // refused by the daemon, which reads its credentials: its request
    // changes nothing.
    let dac = [
        &outsider[..],
        &[
            "--inh-caps",
            "+dac_override",
            "--ambient-caps",
            "+dac_override",
        ],
    ]
    .concat();
    let r = ctl_as(&ctl, d, &dac, &["addr", "add", "10.99.0.1/24"]);
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    let err = r.stderr.trim_end();
    assert!(
        err.lines().count() == 1
            && err.contains("permission denied")
            && err.contains("members of group 4242;")
            && err.contains("uid 65534 gid 65534"),
        "{err}"
    );
    assert!(!d.ctl_ok(&["addr", "list"]).stdout.contains("10.99.0.1"));
    assert!(d.log_tail(20).contains("control connection refused"));

    // Without --socket-group only root (and the daemon's own user) are let
    // in, whatever the file's mode says.
    let d = env.take_daemon();
    d.stop();
    env.start_daemon();
    let d = env.daemon();
    fs::set_permissions(&d.socket, fs::Permissions::from_mode(0o666)).unwrap();
    let r = ctl_as(&ctl, d, &["--regid", GROUP, "--clear-groups"], &["show"]);
    assert!(
        !r.success() && r.stderr.contains("root only"),
        "{}",
        r.stderr
    );
    d.ctl_ok(&["show"]);
}

/// A child process killed if the test ends before it is reaped.
struct Reaped(Option<Child>);

impl Reaped {
    /// Stops the child with SIGINT (ping prints its summary) and returns
    /// its output.
    fn interrupt(&mut self) -> String {
        let child = self.0.take().unwrap();
        // SAFETY: a plain signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sends 60 MiB of one unfinished line to the socket `argv[1]`; prints
/// `held` once all is sent (then ends the line when told on stdin) or
/// `refused`, then the daemon's answer.
const LONG_LINE: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
chunk = b"x" * (1 << 20)
try:
    for _ in range(60):
        s.sendall(chunk)
    print("held", flush=True)
    sys.stdin.readline()
    s.sendall(b"\n")
except (BrokenPipeError, ConnectionResetError):
    print("refused", flush=True)
print(s.makefile("rb").readline().decode().strip(), flush=True)
"#;

/// A line of a child's output, without its end.
fn next_line(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

/// Raises this process's open-file limit to its hard limit, which must be
/// at least `need`.
fn raise_fd_limit(need: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is an rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    assert!(
        lim.rlim_max >= need,
        "this test needs {need} open files, the hard limit is {} (ulimit -Hn)",
        lim.rlim_max
    );
}

fn connect(d: &Daemon) -> UnixStream {
    let s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

/// A request line.
fn request(op: &str) -> String {
    format!(
        "{{\"version\":{},\"command\":{{\"op\":\"{op}\"}}}}\n",
        ctl::PROTOCOL_VERSION
    )
}

fn read_line(s: &mut BufReader<UnixStream>) -> serde_json::Value {
    let mut line = String::new();
    s.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn a_thousand_clients_and_a_100_mb_burst_leave_forwarding_and_learning_going() {
    let Some(mut env) = TestEnv::with_daemon(
        "a_thousand_clients_and_a_100_mb_burst_leave_forwarding_and_learning_going",
    ) else {
        return;
    };
    raise_fd_limit(2_100);
    let a = env.add_pod("a", Attach::Tap);
    let b = env.add_pod("b", Attach::Tap);
    let c = env.add_pod("c", Attach::Afxdp);
    env.ping(&a, &b);
    let d = env.daemon();
    let pid = d.pid();
    let rss_before = rss_kib(pid);

    // A thousand clients at once, each with one request in flight.
    let began = Instant::now();
    let mut clients: Vec<_> = (0..1000).map(|_| connect(d)).collect();
    for s in &mut clients {
        s.write_all(request("show").as_bytes()).unwrap();
    }
    for s in clients {
        let v = read_line(&mut BufReader::new(s));
        assert_eq!(v["ok"], true, "{v}");
    }
    eprintln!("1,000 clients served in {:?}", began.elapsed());

    // A pod pings another through the switch during the burst.
    let mut ping = Reaped(Some(
        Command::new("ip")
            .args([
                "netns", "exec", &a.name, "ping", "-q", "-i", "0.01", "-w", "120",
            ])
            .arg(b.ip.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    thread::sleep(Duration::from_millis(500));

    // At least 100 MB of requests, 100 bytes each, from one client that
    // reads the answers as they come (another thread); it goes on sending
    // until the checks below are done.
    const LINE: usize = 100;
    const CHUNK_LINES: usize = 10_000;
    const MIN_LINES: usize = 1_000_000;
    let mut line = request("addr_list").trim_end().to_string();
    line.push_str(&" ".repeat(LINE - 1 - line.len()));
    line.push('\n');
    let burst = connect(d);
    let mut reader = BufReader::with_capacity(1 << 20, burst.try_clone().unwrap());
    let checked = Arc::new(AtomicBool::new(false));
    let writer = {
        let checked = checked.clone();
        let mut w = burst;
        thread::spawn(move || {
            let chunk = line.repeat(CHUNK_LINES);
            let began = Instant::now();
            let mut lines = 0;
            while lines < MIN_LINES || !checked.load(Ordering::Relaxed) {
                w.write_all(chunk.as_bytes()).unwrap();
                lines += CHUNK_LINES;
            }
            w.shutdown(std::net::Shutdown::Write).unwrap();
            (lines, began.elapsed())
        })
    };
    let answers = thread::spawn(move || {
        let mut buf = String::new();
        let (mut n, mut ok) = (0, 0);
        loop {
            buf.clear();
            if reader.read_line(&mut buf).unwrap() == 0 {
                break;
            }
            n += 1;
            ok += usize::from(buf.starts_with("{\"version\":3,\"ok\":true"));
        }
        (n, ok)
    });

    // Meanwhile a pod that has not sent yet is learned, and another client
    // is answered, promptly.
    thread::sleep(Duration::from_millis(200));
    let learn_began = Instant::now();
    let learned = wait_for(Duration::from_secs(10), || {
        common::netns_exec(&c.name, &["ping", "-c", "1", "-W", "1", &a.ip.to_string()]);
        d.fdb()
            .iter()
            .any(|e| e.mac == c.mac && e.port == c.name)
            .then_some(learn_began.elapsed())
    })
    .expect("a new pod's MAC was not learned during the burst");
    let t = Instant::now();
    d.ctl_ok(&["port", "list"]);
    let other_client = t.elapsed();
    let rss_during = rss_kib(pid);
    checked.store(true, Ordering::Relaxed);

    let (lines, write_time) = writer.join().unwrap();
    let (n, ok) = answers.join().unwrap();
    let out = ping.interrupt();
    eprintln!(
        "burst: {lines} requests written in {write_time:?}, {n} answers ({ok} ok); new MAC \
         learned after {learned:?}; another client answered in {other_client:?}; vswitchd RSS \
         {rss_before} KiB before, {rss_during} KiB during the burst; ping: {}",
        out.lines()
            .filter(|l| l.contains("packet loss") || l.contains("rtt"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    assert_eq!((n, ok), (lines, lines), "every request answered, ok");
    assert!(
        learned < Duration::from_secs(2),
        "learning waited {learned:?} behind the burst"
    );
    assert!(
        other_client < Duration::from_secs(1),
        "another client waited {other_client:?}"
    );
    // "N packets transmitted, M received": only the ping in flight when
    // it was stopped may be missing.
    let count = |what: &str| -> u64 {
        out.lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or_default()
            .split(", ")
            .find_map(|f| f.strip_suffix(what))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no ping summary: {out}"))
    };
    let (sent, got) = (count(" packets transmitted"), count(" received"));
    assert!(
        got + 1 >= sent && sent > 50,
        "pods lost pings during the burst:\n{out}"
    );
    assert!(
        rss_during < rss_before + (64 << 10),
        "vswitchd grew from {rss_before} KiB to {rss_during} KiB during the burst"
    );
}

#[test]
fn connections_bytes_and_stalled_clients_are_capped() {
    let Some(mut env) = TestEnv::new("connections_bytes_and_stalled_clients_are_capped") else {
        return;
    };
    let ctl = public_ctl(&env);
    // 1,100 files: room for 76 control connections beside the 1,024 kept
    // for ports and the rest; root has 16 more.
    env.start_daemon_with(DaemonOpts {
        open_files: Some(1100),
        extra: vec!["--socket-group".into(), GROUP.into()],
        ..DaemonOpts::default()
    });
    let d = env.daemon();
    let mut held: Vec<_> = (0..76).map(|_| connect(d)).collect();
    // Show each is being served before counting on it.
    for s in &mut held {
        s.write_all(request("addr_list").as_bytes()).unwrap();
    }
    for s in &held {
        read_line(&mut BufReader::new(s.try_clone().unwrap()));
    }
    let member = ["--regid", GROUP, "--clear-groups"];
    let r = ctl_as(&ctl, d, &member, &["show"]);
    assert!(
        !r.success() && r.stderr.contains("at most 76 control connections"),
        "{}",
        r.stderr
    );
    // Root still gets in: its 16 connections beyond the limit.
    d.ctl_ok(&["show"]);
    held.extend((0..16).map(|_| connect(d)));
    for s in held.iter_mut().skip(76) {
        s.write_all(request("addr_list").as_bytes()).unwrap();
        assert_eq!(
            read_line(&mut BufReader::new(s.try_clone().unwrap()))["ok"],
            true
        );
    }
    let r = d.ctl(&["show"]);
    assert!(
        !r.success() && r.stderr.contains("at most 76"),
        "{}",
        r.stderr
    );
    drop(held);
    let served = wait_for(Duration::from_secs(5), || {
        ctl_as(&ctl, d, &member, &["show"]).success().then_some(())
    });
    assert!(served.is_some(), "closed connections were not let go");

    // Five clients of the socket group (root is not held back by others)
    // each send 60 MiB of one line, without its end: the daemon holds
    // 256 MiB of their requests at most, and the one that would pass it is
    // told so. Root is still served meanwhile.
    let pid = d.pid();
    let rss_before = rss_kib(pid);
    let mut senders: Vec<_> = (0..5)
        .map(|_| {
            Reaped(Some(
                Command::new("setpriv")
                    .args(["--reuid", NOBODY, "--regid", GROUP, "--clear-groups"])
                    .args(["/usr/bin/python3", "-c", LONG_LINE])
                    .arg(&d.socket)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap(),
            ))
        })
        .collect();
    let mut outs: Vec<_> = senders
        .iter_mut()
        .map(|c| BufReader::new(c.0.as_mut().unwrap().stdout.take().unwrap()))
        .collect();
    let first: Vec<String> = outs.iter_mut().map(next_line).collect();
    let refused: Vec<usize> = (0..5).filter(|&i| first[i] == "refused").collect();
    assert_eq!(
        refused.len(),
        1,
        "one of five 60 MiB lines is past 256 MiB: {first:?}"
    );
    let err = next_line(&mut outs[refused[0]]);
    assert!(err.contains("control buffers are full"), "{err}");
    d.ctl_ok(&["show"]);
    let rss = rss_kib(pid);
    assert!(
        rss < rss_before + (256 << 10) + (32 << 10),
        "vswitchd grew from {rss_before} KiB to {rss} KiB"
    );
    // The held lines end and are answered (malformed).
    for (i, c) in senders.iter_mut().enumerate() {
        if first[i] == "held" {
            let stdin = c.0.as_mut().unwrap().stdin.as_mut().unwrap();
            stdin.write_all(b"\n").unwrap();
            let answer = next_line(&mut outs[i]);
            assert!(answer.contains("\"ok\":false"), "{answer}");
        }
    }
    drop(senders);

    // A client that sends but never reads is left waiting, then let go
    // once its answers have waited 10 s: it reads what was sent, then the
    // end.
    let mut lazy = connect(d);
    let began = Instant::now();
    lazy.set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let req = request("show");
    let mut sent = 0;
    // Until vswitchd stops reading (its answers to send and its read-ahead
    // full; a line cut off there never completes).
    while sent < 1_000_000 && lazy.write_all(req.as_bytes()).is_ok() {
        sent += 1;
    }
    assert!(
        sent < 1_000_000,
        "vswitchd kept reading from a client that does not read"
    );
    d.ctl_ok(&["show"]);
    thread::sleep(Duration::from_secs(12));
    let mut answers = 0;
    for line in BufReader::new(lazy).lines() {
        match line {
            Ok(_) => answers += 1,
            // Closed with requests unread: the kernel says "reset" once
            // the answers sent before are read.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("after {answers} answers: {e}"),
        }
    }
    eprintln!(
        "a client that did not read: {sent} requests sent, {answers} answered before it was \
         let go after {:?}",
        began.elapsed()
    );
    assert!(answers < sent, "{answers} of {sent}");
    assert!(d.log_tail(20).contains("took no answer"));
}
