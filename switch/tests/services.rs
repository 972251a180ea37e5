//! Kubernetes Services through the switch, with real pods: load spreading
//! over Maglev, connections that outlive endpoint changes, ClientIP
//! affinity, Services without endpoints, hairpin, UDP, NodePorts from
//! outside the node, two workers, a conntrack flood, connections that
//! survive `ct flush` and a restart, and large batches.
//!
//! The lab of most tests: one vswitchd with router address 10.244.1.1/24
//! and pods declared to it (`--port-security`), each with the router as
//! default gateway:
//!
//! | pod   | address        | role                               |
//! |-------|----------------|------------------------------------|
//! | c     | 10.244.1.10/24 | client                             |
//! | b0..  | 10.244.1.20+i  | backends, each running [`SERVER`]  |
//!
//! Every backend runs one small Python server: TCP port 8080 answers an
//! HTTP GET with `NAME PEER` (its pod name and the client address it saw)
//! and echoes any other line as `NAME PEER LINE`; UDP port 5353 echoes
//! datagrams the same way. So every answer says which endpoint served it
//! and whether the switch translated the client's address.
//!
//! Needs root; see `common/mod.rs`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    Attach, CmdResult, Daemon, DaemonOpts, NodeLink, Pod, PodSpec, TestEnv, allowed_cores, ip,
    netns_exec, pick_cores, run_cmd, tcp_listening, wait_for,
};
use ctl::{BackendState, CtEntry, CtState, CtStats, PortStats, Proto, ServiceInfo};

const GW: &str = "10.244.1.1";
const CLIENT_IP: &str = "10.244.1.10";
const VIP: &str = "10.96.0.10";
/// The port every backend's TCP server listens on.
const TCP_PORT: u16 = 8080;
/// The port every backend's UDP echo listens on.
const UDP_PORT: u16 = 5353;

/// The backends' server; argument: the pod's name.
const SERVER: &str = r#"
import socket, socketserver, sys, threading
name = sys.argv[1]

class Tcp(socketserver.StreamRequestHandler):
    def handle(self):
        peer = self.client_address[0]
        for line in self.rfile:
            if line.startswith(b'GET '):
                while self.rfile.readline().strip():
                    pass
                body = ('%s %s\n' % (name, peer)).encode()
                self.wfile.write(b'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n'
                                 b'Content-Length: %d\r\nConnection: close\r\n\r\n' % len(body) + body)
                return
            self.wfile.write(('%s %s ' % (name, peer)).encode() + line)

class TcpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128

class Udp(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(('%s %s ' % (name, self.client_address[0])).encode() + data, self.client_address)

udp = socketserver.UDPServer(('0.0.0.0', 5353), Udp)
threading.Thread(target=udp.serve_forever, daemon=True).start()
TcpServer(('0.0.0.0', 8080), Tcp).serve_forever()
"#;

/// A long-lived TCP client: sends a numbered line every 200 ms and checks
/// its echo, logging `reply NAME` per answer (or `ERROR ...`) until the
/// stop file appears. Arguments: address, port, log file, stop file.
const LONG_CLIENT: &str = r#"
import os, socket, sys, time
addr, port, log, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = open(log, 'w', buffering=1)
try:
    s = socket.create_connection((addr, port), timeout=10)
    s.settimeout(8)
    f = s.makefile('rb')
    out.write('connected %s:%d\n' % s.getsockname())
    i = 0
    end = time.time() + 150
    while not os.path.exists(stop) and time.time() < end:
        i += 1
        s.sendall(b'line%d\n' % i)
        got = f.readline().decode().split()
        if len(got) != 3 or got[2] != 'line%d' % i:
            out.write('ERROR reply %r to line%d\n' % (got, i))
            sys.exit(1)
        out.write('reply %s %s\n' % (got[0], got[1]))
        time.sleep(0.2)
    s.close()
    out.write('done %d\n' % i)
except Exception as e:
    out.write('ERROR %r\n' % e)
    sys.exit(1)
"#;

/// UDP requests, each from a fresh socket (a new flow, unless a source
/// port is given), each retried up to three times; prints `FROM_IP
/// FROM_PORT ANSWER` per request. Arguments: address, port, count, and
/// optionally the source port.
const UDP_CLIENT: &str = r#"
import socket, sys
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sport = int(sys.argv[4]) if len(sys.argv) > 4 else 0
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('0.0.0.0', sport))
    s.settimeout(2)
    for attempt in range(3):
        s.sendto(b'q%d\n' % i, (addr, port))
        try:
            data, frm = s.recvfrom(2048)
            break
        except socket.timeout:
            continue
    else:
        print('TIMEOUT q%d' % i, flush=True)
        sys.exit(1)
    print(frm[0], frm[1], data.decode().strip(), flush=True)
    s.close()
"#;

/// HTTP GETs, each on a new connection from the same source port; each
/// connection ends with a reset (SO_LINGER 0), so no TIME_WAIT keeps the
/// port. Prints each answer's body. Arguments: address, port, source
/// port, count.
const HTTP_FROM_PORT: &str = r#"
import socket, struct, sys
addr, port, sport, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for i in range(n):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    s.bind(('0.0.0.0', sport))
    s.settimeout(5)
    s.connect((addr, port))
    s.sendall(b'GET / HTTP/1.0\r\n\r\n')
    data = b''
    while True:
        d = s.recv(4096)
        if not d:
            break
        data += d
    s.close()
    print(data.split(b'\r\n\r\n', 1)[1].decode().strip(), flush=True)
"#;

/// One UDP datagram to a connected socket; prints `refused` when an ICMP
/// port unreachable comes back, `answer` or `timeout` otherwise (three
/// tries). Arguments: address, port.
const UDP_REFUSED: &str = r#"
import socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
res = 'timeout'
for attempt in range(3):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.connect((addr, port))
    s.send(b'anyone there?')
    try:
        s.recv(2048)
        res = 'answer'
        break
    except ConnectionRefusedError:
        res = 'refused'
        break
    except socket.timeout:
        pass
print(res)
"#;

/// Sends raw TCP SYNs (checksummed, each from its own source port) from
/// the pod's address. Arguments: source address, destination address,
/// destination port, first source port, count.
const SYN_FLOOD: &str = r#"
import socket, struct, sys, time
src, dst, dport, first, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, 6, 20)
sent = 0
for i in range(n):
    sport = first + i
    hdr = struct.pack('!HHIIBBHHH', sport, dport, 1000 + i, 0, 5 << 4, 0x02, 64240, 0, 0)
    c = csum(pseudo + hdr)
    s.sendto(hdr[:16] + struct.pack('!H', c) + hdr[18:], (dst, 0))
    sent += 1
    if i % 200 == 199:
        time.sleep(0.01)
print(sent)
"#;

/// `VIP:PORT/PROTO`.
fn svc(vip: &str, port: u16, proto: &str) -> String {
    format!("{vip}:{port}/{proto}")
}

/// `service add KEY` with a `--backend` for each of `eps`, then `extra`.
fn add_service(d: &Daemon, key: &str, eps: &[String], extra: &[&str]) {
    let mut args = vec!["service", "add", key];
    for e in eps {
        args.extend(["--backend", e]);
    }
    args.extend_from_slice(extra);
    d.ctl_ok(&args);
}

/// `IP:8080` of a backend pod.
fn ep(p: &Pod) -> String {
    format!("{}:{TCP_PORT}", p.ip)
}

/// `IP:5353` of a backend pod.
fn udp_ep(p: &Pod) -> String {
    format!("{}:{UDP_PORT}", p.ip)
}

/// The one-worker (or `cores`) switch with the router address and the
/// lab's client and `backends` backend pods, their servers running.
fn lab(
    name: &str,
    cores: Option<String>,
    extra: &[&str],
    backends: usize,
) -> Option<(TestEnv, Pod, Vec<Pod>)> {
    let mut env = TestEnv::new(name)?;
    let mut opts = DaemonOpts {
        extra: extra.iter().map(|s| s.to_string()).collect(),
        ..DaemonOpts::default()
    };
    if let Some(c) = cores {
        opts.cores = c;
    }
    env.start_daemon_with(opts);
    env.daemon().ctl_ok(&["addr", "add", &format!("{GW}/24")]);
    let pod = |suffix: &str, addr: &str| {
        PodSpec::new(suffix, Attach::Afxdp, &format!("{addr}/24"))
            .gw(GW)
            .port_security()
    };
    let client = env.add_pod_with(pod("c", CLIENT_IP));
    let bs: Vec<Pod> = (0..backends)
        .map(|i| env.add_pod_with(pod(&format!("b{i}"), &format!("10.244.1.{}", 20 + i))))
        .collect();
    start_servers(&mut env, &bs.iter().collect::<Vec<_>>());
    Some((env, client, bs))
}

/// Starts [`SERVER`] in each pod and waits until all of them listen.
fn start_servers(env: &mut TestEnv, pods: &[&Pod]) {
    for p in pods {
        env.spawn_background(
            Command::new("ip").args(["netns", "exec", &p.name, "python3", "-c", SERVER, &p.name]),
        );
    }
    for p in pods {
        let up = wait_for(Duration::from_secs(15), || {
            let tcp = tcp_listening(&p.name, TCP_PORT);
            let udp = netns_exec(&p.name, &["ss", "-Hlun", &format!("sport = :{UDP_PORT}")]);
            (tcp && !udp.stdout.trim().is_empty()).then_some(())
        });
        assert!(up.is_some(), "server in {} did not start listening", p.name);
    }
}

/// Runs `cmd` (with arguments) inside namespace `ns`, killed after `secs`.
fn in_ns(ns: &str, secs: u32, cmd: &[&str]) -> CmdResult {
    run_cmd(
        Command::new("timeout")
            .args([&secs.to_string(), "ip", "netns", "exec", ns])
            .args(cmd),
    )
}

/// Runs a Python program inside namespace `ns`.
fn python(ns: &str, secs: u32, code: &str, args: &[&str]) -> CmdResult {
    let mut cmd = vec!["python3", "-c", code];
    cmd.extend_from_slice(args);
    in_ns(ns, secs, &cmd)
}

/// `n` HTTP GETs of `url` from namespace `ns`, one connection each (curl
/// in a shell loop). Returns the answers (`NAME PEER`); panics, with the
/// switch's view, if any request fails.
fn curl_n(d: &Daemon, ns: &str, url: &str, n: usize) -> Vec<(String, String)> {
    let script =
        format!("for i in $(seq {n}); do curl -sS --max-time 5 {url} || echo \"FAIL $?\"; done");
    let r = in_ns(ns, 20 + 6 * n as u32, &["sh", "-c", &script]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        r.success() && lines.len() == n && !lines.iter().any(|l| l.starts_with("FAIL")),
        "{n} x curl {url} from {ns}: exit {}, answers:\n{}\nstderr: {}\n{}",
        r.status,
        r.stdout,
        r.stderr,
        diagnostics(d)
    );
    lines
        .iter()
        .map(|l| {
            let (name, peer) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("unexpected answer {l:?} from {url}"));
            (name.to_string(), peer.to_string())
        })
        .collect()
}

/// How many answers each pod gave.
fn tally(answers: &[(String, String)]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (name, _) in answers {
        *m.entry(name.clone()).or_insert(0) += 1;
    }
    m
}

fn services(d: &Daemon) -> Vec<ServiceInfo> {
    d.ctl_json(&["service", "list"])
}

fn service(d: &Daemon, key: &str) -> ServiceInfo {
    services(d)
        .into_iter()
        .find(|s| s.service.to_string() == key)
        .unwrap_or_else(|| panic!("Service {key} missing from `service list`"))
}

fn ct_list(d: &Daemon) -> Vec<CtEntry> {
    d.ctl_json(&["ct", "list"])
}

/// `ct list`, asked for on the socket `limit` at a time.
fn ct_pages(d: &Daemon, limit: u32) -> Vec<CtEntry> {
    let mut client = ctl::Client::connect(&d.socket).unwrap();
    let (mut all, mut after, mut pages) = (Vec::new(), None, 0);
    loop {
        let reply = client
            .call(ctl::Command::CtList {
                after: after.take(),
                limit: Some(limit),
            })
            .unwrap();
        let ctl::Reply::CtPage(page) = reply else {
            panic!("not a page: {reply:?}");
        };
        assert!(page.entries.len() <= limit as usize);
        pages += 1;
        all.extend(page.entries);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert!(pages > 1, "{} flows in one page of {limit}", all.len());
    all
}

fn ct_stats(d: &Daemon) -> CtStats {
    d.ctl_json(&["ct", "stats"])
}

/// The drop counter `reason` summed over every port.
fn drops(d: &Daemon, reason: &str) -> u64 {
    let stats: Vec<PortStats> = d.stats();
    stats
        .iter()
        .map(|s| {
            *s.drops
                .get(reason)
                .unwrap_or_else(|| panic!("no drop reason {reason} in stats of {}", s.name))
        })
        .sum()
}

/// The switch's view of Services, for failure messages.
fn diagnostics(d: &Daemon) -> String {
    let mut s = String::new();
    for args in [
        &["service", "list"][..],
        &["ct", "list"],
        &["ct", "stats"],
        &["neigh", "list"],
        &["stats"],
    ] {
        s += &format!("--- vswitchctl {}\n{}", args.join(" "), d.ctl(args).stdout);
    }
    s + "--- vswitchd log:\n" + &d.log_tail(15)
}

/// A [`LONG_CLIENT`] running in the background.
struct LongConn {
    log: PathBuf,
    stop: PathBuf,
}

impl LongConn {
    /// Connects from namespace `ns` (a pod of the environment's own
    /// switch) to `addr:port` and waits for the first echo.
    fn open(env: &mut TestEnv, ns: &str, addr: &str, port: u16, tag: &str) -> LongConn {
        let log = env.dir.join(format!("long-{tag}.log"));
        let stop = env.dir.join(format!("long-{tag}.stop"));
        let (l, s) = (log.display().to_string(), stop.display().to_string());
        env.spawn_background(Command::new("ip").args([
            "netns",
            "exec",
            ns,
            "python3",
            "-c",
            LONG_CLIENT,
            addr,
            &port.to_string(),
            &l,
            &s,
        ]));
        let c = LongConn { log, stop };
        c.wait_replies(1, env.daemon(), "the first echo");
        c
    }

    fn lines(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The backend of each echo so far.
    fn replies(&self) -> Vec<String> {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("reply "))
            .map(|r| r.split(' ').next().unwrap().to_string())
            .collect()
    }

    /// Panics if the client reported an error.
    fn check(&self, d: &Daemon, when: &str) {
        let lines = self.lines();
        if let Some(e) = lines.iter().find(|l| l.starts_with("ERROR")) {
            panic!(
                "long-lived connection broke {when}: {e}\nits log:\n{}\n{}",
                lines.join("\n"),
                diagnostics(d)
            );
        }
    }

    /// Waits until at least `n` echoes have come back in all.
    fn wait_replies(&self, n: usize, d: &Daemon, when: &str) {
        let ok = wait_for(Duration::from_secs(20), || {
            self.check(d, when);
            (self.replies().len() >= n).then_some(())
        });
        assert!(
            ok.is_some(),
            "long-lived connection: fewer than {n} echoes {when}; its log:\n{}\n{}",
            self.lines().join("\n"),
            diagnostics(d)
        );
    }

    /// Waits for `more` further echoes from now.
    fn wait_more(&self, more: usize, d: &Daemon, when: &str) {
        let n = self.replies().len() + more;
        self.wait_replies(n, d, when);
    }

    /// Stops the client and checks that it ended cleanly.
    fn finish(&self, d: &Daemon) -> Vec<String> {
        fs::write(&self.stop, b"").unwrap();
        let ok = wait_for(Duration::from_secs(20), || {
            self.check(d, "at the end");
            self.lines()
                .iter()
                .any(|l| l.starts_with("done"))
                .then_some(())
        });
        assert!(
            ok.is_some(),
            "long-lived client did not finish; its log:\n{}",
            self.lines().join("\n")
        );
        self.replies()
    }
}

#[test]
fn new_connections_are_spread_over_every_backend() {
    let Some((env, c, bs)) = lab(
        "new_connections_are_spread_over_every_backend",
        None,
        &[],
        3,
    ) else {
        return;
    };
    let d = env.daemon();
    let key = svc(VIP, 80, "tcp");
    let eps: Vec<String> = bs.iter().map(ep).collect();
    add_service(d, &key, &eps, &[]);

    let answers = curl_n(d, &c.name, &format!("http://{VIP}/"), 30);
    let counts = tally(&answers);
    eprintln!("30 connections: {counts:?}");
    for b in &bs {
        assert!(
            counts.get(&b.name).copied().unwrap_or(0) > 0,
            "backend {} never answered 30 new connections: {counts:?}",
            b.name
        );
    }
    // The backends see the client's own address: no source NAT in a pod's
    // flow to another pod.
    assert!(
        answers.iter().all(|(_, peer)| peer == CLIENT_IP),
        "backends saw other client addresses: {answers:?}"
    );

    let info = service(d, &key);
    let listed: BTreeSet<String> = info
        .backends
        .iter()
        .map(|b| {
            assert_eq!(b.state, BackendState::Ready, "{info:#?}");
            b.addr.to_string()
        })
        .collect();
    assert_eq!(listed, eps.iter().cloned().collect(), "{info:#?}");
    assert!(info.table_size >= 251, "{info:#?}");
    let text = d.ctl_ok(&["service", "list"]).stdout;
    assert!(
        eps.iter().all(|e| text.contains(e.as_str())) && text.contains(&key),
        "`service list` text lacks the backends:\n{text}"
    );

    // Conntrack remembers the connections (closing now, for a while): the
    // client's view toward the VIP, the endpoint's toward the client.
    let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let ours: Vec<CtEntry> = ct_list(d).into_iter().filter(|e| e.dst == vip).collect();
    assert!(
        !ours.is_empty(),
        "no conntrack entry to {vip}:\n{}",
        diagnostics(d)
    );
    for e in &ours {
        assert_eq!(e.proto, Proto::Tcp, "{e:?}");
        assert_eq!(e.src.ip().to_string(), CLIENT_IP, "{e:?}");
        assert_eq!(e.service.to_string(), key, "{e:?}");
        assert!(eps.contains(&e.reply_src.to_string()), "{e:?}");
        assert_eq!(
            e.reply_dst, e.src,
            "a pod-to-pod flow was source-translated: {e:?}"
        );
    }
    let text = d.ctl_ok(&["ct", "list"]).stdout;
    assert!(text.contains(&vip.to_string()), "`ct list` text:\n{text}");
    assert!(ct_stats(d).created >= 30, "{:?}", ct_stats(d));

    // A client that reuses its source port at once (the previous
    // connection on it, reset by the client, still `closing` in
    // conntrack) gets a new flow.
    let r = python(&c.name, 60, HTTP_FROM_PORT, &[VIP, "80", "45000", "3"]);
    assert!(
        r.success() && r.stdout.lines().count() == 3,
        "GETs from a reused source port: {}{}\n{}",
        r.stdout,
        r.stderr,
        diagnostics(d)
    );
    for l in r.stdout.lines() {
        assert!(bs.iter().any(|b| l.starts_with(&b.name)), "{l:?}");
    }

    // A deleted Service takes its tracked connections with it.
    d.ctl_ok(&["service", "del", &key]);
    assert!(services(d).is_empty(), "{:#?}", services(d));
    let left: Vec<CtEntry> = ct_list(d).into_iter().filter(|e| e.dst == vip).collect();
    assert!(left.is_empty(), "flows of a deleted Service: {left:#?}");
}

#[test]
fn established_connection_survives_a_conntrack_flush() {
    let Some((mut env, c, bs)) = lab(
        "established_connection_survives_a_conntrack_flush",
        None,
        &[],
        3,
    ) else {
        return;
    };
    let key = svc(VIP, 80, "tcp");
    let eps: Vec<String> = bs.iter().map(ep).collect();
    add_service(env.daemon(), &key, &eps, &[]);
    let conn = LongConn::open(&mut env, &c.name.clone(), VIP, 80, "x");
    let d = env.daemon();
    conn.wait_more(2, d, "before the flush");
    // Forgetting every flow (as a restart of vswitchd does) must not move
    // a connection: Maglev picks the same endpoint for the same 5-tuple
    // while the endpoints are the same, so the next packet finds its
    // endpoint again and the flow is tracked anew.
    d.ctl_ok(&["ct", "flush"]);
    conn.wait_more(5, d, "after `ct flush`");
    let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let again: Vec<CtEntry> = ct_list(d).into_iter().filter(|e| e.dst == vip).collect();
    assert_eq!(again.len(), 1, "{again:#?}");
    assert_eq!(again[0].state, CtState::Established, "{again:#?}");
    let replies = conn.finish(d);
    assert!(
        replies.iter().all(|r| *r == replies[0]),
        "the connection moved to another endpoint: {replies:?}"
    );
}

#[test]
fn long_lived_connection_survives_endpoint_changes() {
    let Some((mut env, c, bs)) = lab(
        "long_lived_connection_survives_endpoint_changes",
        None,
        &[],
        3,
    ) else {
        return;
    };
    let key = svc(VIP, 80, "tcp");
    let eps: Vec<String> = bs.iter().map(ep).collect();
    add_service(env.daemon(), &key, &eps, &[]);

    let conn = LongConn::open(&mut env, &c.name.clone(), VIP, 80, "a");
    let d = env.daemon();
    conn.wait_more(2, d, "before any change");
    let mine = conn.replies()[0].clone();
    let i = bs.iter().position(|b| b.name == mine).unwrap();
    let other = (i + 1) % bs.len();

    // The other endpoints go away: the connection is not theirs.
    d.ctl_ok(&["service", "backends", &key, &eps[i]]);
    conn.wait_more(3, d, "after the other endpoints were removed");

    // Its own endpoint terminates while another one is ready: it keeps
    // its connection, new ones go to the ready endpoint only.
    d.ctl_ok(&[
        "service",
        "backends",
        &key,
        &eps[other],
        "--terminating",
        &eps[i],
    ]);
    conn.wait_more(3, d, "after its endpoint became terminating");
    let answers = curl_n(d, &c.name, &format!("http://{VIP}/"), 10);
    assert!(
        answers.iter().all(|(n, _)| *n == bs[other].name),
        "new connections went elsewhere than the only ready endpoint {}: {answers:?}",
        bs[other].name
    );
    let info = service(d, &key);
    let term = info
        .backends
        .iter()
        .find(|b| b.addr.to_string() == eps[i])
        .unwrap_or_else(|| panic!("{info:#?}"));
    assert_eq!(term.state, BackendState::Terminating, "{info:#?}");
    assert_eq!(
        term.active, 1,
        "the terminating endpoint should hold exactly the long-lived connection: {info:#?}"
    );
    conn.wait_more(3, d, "after new connections went to the ready endpoint");

    let replies = conn.finish(d);
    assert!(
        replies.iter().all(|r| *r == mine),
        "the long-lived connection changed endpoints: {replies:?}"
    );
    assert!(replies.len() >= 12, "{replies:?}");

    // With no ready endpoint left, a terminating one takes new connections.
    d.ctl_ok(&["service", "backends", &key, "--terminating", &eps[i]]);
    let answers = curl_n(d, &c.name, &format!("http://{VIP}/"), 3);
    assert!(
        answers.iter().all(|(n, _)| *n == mine),
        "only {mine} is left (terminating): {answers:?}"
    );
}

#[test]
fn services_and_established_connections_survive_a_restart() {
    let Some((mut env, c, bs)) = lab(
        "services_and_established_connections_survive_a_restart",
        None,
        &[],
        3,
    ) else {
        return;
    };
    let key = svc(VIP, 80, "tcp");
    let eps: Vec<String> = bs.iter().map(ep).collect();
    add_service(env.daemon(), &key, &eps, &["--node-port", "30080"]);
    let before = env.daemon().ctl_value(&["service", "list"]);
    let conn = LongConn::open(&mut env, &c.name.clone(), VIP, 80, "r");
    conn.wait_more(2, env.daemon(), "before the restart");

    // The client's segments sent while the switch is down are
    // retransmitted; the restarted switch finds the same endpoint for them
    // (Maglev depends only on the endpoint set) and tracks the flow anew.
    let status = env.take_daemon().stop();
    assert!(status.success(), "vswitchd exited with {status}");
    env.start_daemon();
    let names: Vec<&str> = [&c]
        .into_iter()
        .chain(&bs)
        .map(|p| p.name.as_str())
        .collect();
    env.daemon().wait_ports_up(&names);
    let d = env.daemon();
    assert_eq!(d.ctl_value(&["service", "list"]), before);
    conn.wait_more(5, d, "after the restart");
    let replies = conn.finish(d);
    assert!(
        replies.iter().all(|r| *r == replies[0]),
        "the connection moved to another endpoint across the restart: {replies:?}"
    );
    let answers = curl_n(d, &c.name, &format!("http://{VIP}/"), 10);
    assert!(answers.iter().all(|(n, _)| bs.iter().any(|b| b.name == *n)));
}

#[test]
fn client_ip_affinity_keeps_a_client_on_one_backend_until_it_times_out() {
    let Some((env, c, bs)) = lab(
        "client_ip_affinity_keeps_a_client_on_one_backend_until_it_times_out",
        None,
        &[],
        3,
    ) else {
        return;
    };
    let d = env.daemon();
    let key = svc(VIP, 80, "tcp");
    let mut args = vec![
        "service",
        "add",
        &key,
        "--affinity",
        "client-ip",
        "--affinity-timeout",
        "2",
    ];
    let eps: Vec<String> = bs.iter().map(ep).collect();
    for e in &eps {
        args.extend(["--backend", e]);
    }
    d.ctl_ok(&args);
    assert_eq!(service(d, &key).affinity_timeout, Some(2));

    let url = format!("http://{VIP}/");
    let mut answers = curl_n(d, &c.name, &url, 9);
    // The last connection refreshes the entry; it cannot expire before
    // `last` + 2 s, since that connection starts after `last`.
    let last = Instant::now();
    answers.extend(curl_n(d, &c.name, &url, 1));
    let stats = ct_stats(d);
    let counts = tally(&answers);
    assert_eq!(
        counts.len(),
        1,
        "10 connections of one client within the affinity timeout hit several backends: {counts:?}"
    );
    // Skip the count only if the machine was too slow to ask in time.
    if last.elapsed() < Duration::from_millis(1500) {
        assert_eq!(stats.affinity, 1, "{stats:?}");
    } else {
        eprintln!(
            "ct stats asked {:?} after the last request began; affinity count not checked",
            last.elapsed()
        );
    }

    // Once the client has been quiet for longer than the timeout, its
    // entry is gone (expired, and swept by the controller).
    let gone = wait_for(Duration::from_secs(15), || {
        (ct_stats(d).affinity == 0).then_some(())
    });
    assert!(
        gone.is_some(),
        "affinity entry still there 15 s after the last connection: {:?}",
        ct_stats(d)
    );
    // 1.9 s: the switch's clock is coarse (a few milliseconds).
    assert!(
        last.elapsed() >= Duration::from_millis(1900),
        "affinity entry vanished {:?} after the last connection began, before its 2 s timeout",
        last.elapsed()
    );

    // A new series starts a new affinity (to whichever backend Maglev picks).
    let answers = curl_n(d, &c.name, &url, 5);
    assert_eq!(tally(&answers).len(), 1, "{answers:?}");
    assert_eq!(ct_stats(d).affinity, 1, "{:?}", ct_stats(d));
}

#[test]
fn service_without_endpoints_refuses_at_once() {
    let Some((env, c, _)) = lab("service_without_endpoints_refuses_at_once", None, &[], 0) else {
        return;
    };
    let d = env.daemon();
    d.ctl_ok(&["service", "add", &svc(VIP, 80, "tcp")]);
    d.ctl_ok(&["service", "add", &svc(VIP, 53, "udp")]);
    // Resolve the gateway first, so the timing below is the switch's.
    let _ = netns_exec(&c.name, &["ping", "-c", "1", "-W", "2", GW]);
    let before = drops(d, "no_endpoints");

    let url = format!("http://{VIP}/");
    let start = Instant::now();
    let r = in_ns(
        &c.name,
        30,
        &["curl", "-sS", "-v", "--max-time", "10", &url],
    );
    let took = start.elapsed();
    assert_eq!(
        r.status.code(),
        Some(7),
        "curl to a Service without endpoints should fail to connect (7):\n{}{}\n{}",
        r.stdout,
        r.stderr,
        diagnostics(d)
    );
    assert!(
        r.stderr.contains("Connection refused"),
        "curl was not refused:\n{}",
        r.stderr
    );
    // Refused, not timed out: a connect timeout would take seconds.
    assert!(took < Duration::from_secs(2), "refusal took {took:?}");

    // A VIP port no Service serves is refused the same way.
    let r = in_ns(
        &c.name,
        30,
        &[
            "curl",
            "-sS",
            "-v",
            "--max-time",
            "10",
            &format!("http://{VIP}:81/"),
        ],
    );
    assert!(
        r.status.code() == Some(7) && r.stderr.contains("Connection refused"),
        "curl to an unserved VIP port: {}\n{}",
        r.status,
        r.stderr
    );

    let r = python(&c.name, 30, UDP_REFUSED, &[VIP, "53"]);
    assert_eq!(
        r.stdout.trim(),
        "refused",
        "UDP to a Service without endpoints got no port unreachable: {}\n{}",
        r.stderr,
        diagnostics(d)
    );
    let after = drops(d, "no_endpoints");
    assert!(after >= before + 3, "no_endpoints {before} -> {after}");
    assert!(
        d.ctl_ok(&["stats"]).stdout.contains("no_endpoints"),
        "`stats` text does not show no_endpoints"
    );
    assert!(
        ct_list(d).is_empty(),
        "refused flows were tracked: {:?}",
        ct_list(d)
    );
}

#[test]
fn a_backend_reaches_its_own_service() {
    let Some((env, _c, bs)) = lab("a_backend_reaches_its_own_service", None, &[], 2) else {
        return;
    };
    let d = env.daemon();
    // Only itself behind the VIP: every connection is a hairpin. It is
    // source-translated to the router address, or the pod would answer
    // itself directly and the client socket would never see the VIP.
    let own = svc(VIP, 80, "tcp");
    d.ctl_ok(&["service", "add", &own, "--backend", &ep(&bs[0])]);
    let answers = curl_n(d, &bs[0].name, &format!("http://{VIP}/"), 5);
    assert!(
        answers
            .iter()
            .all(|(n, peer)| *n == bs[0].name && peer == GW),
        "hairpin answers (expected {} seeing {GW}): {answers:?}",
        bs[0].name
    );
    let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let gw: Ipv4Addr = GW.parse().unwrap();
    let e = ct_list(d)
        .into_iter()
        .find(|e| e.dst == vip)
        .unwrap_or_else(|| panic!("no hairpin flow tracked:\n{}", diagnostics(d)));
    assert_eq!(e.src.ip(), bs[0].ip, "{e:?}");
    assert_eq!(e.reply_src.to_string(), ep(&bs[0]), "{e:?}");
    assert_eq!(e.reply_dst.ip(), gw, "{e:?}");

    // Itself and another pod behind a second VIP: each flow is translated
    // (or not) on its own.
    let both = svc("10.96.0.11", 80, "tcp");
    add_service(d, &both, &[ep(&bs[0]), ep(&bs[1])], &[]);
    let answers = curl_n(d, &bs[0].name, "http://10.96.0.11/", 20);
    let own_ip = bs[0].ip.to_string();
    for (n, peer) in &answers {
        let want = if *n == bs[0].name {
            GW
        } else {
            own_ip.as_str()
        };
        assert_eq!(peer, want, "{n} saw client {peer}: {answers:?}");
    }
    assert_eq!(tally(&answers).len(), 2, "{answers:?}");
}

#[test]
fn udp_requests_are_answered_from_the_vip() {
    let Some((env, c, bs)) = lab("udp_requests_are_answered_from_the_vip", None, &[], 3) else {
        return;
    };
    let d = env.daemon();
    let key = svc(VIP, 53, "udp");
    let mut args = vec!["service", "add", &key];
    let eps: Vec<String> = bs.iter().map(udp_ep).collect();
    for e in &eps {
        args.extend(["--backend", e]);
    }
    d.ctl_ok(&args);

    let r = python(&c.name, 60, UDP_CLIENT, &[VIP, "53", "20"]);
    assert!(
        r.success(),
        "UDP through {key}: {}{}\n{}",
        r.stdout,
        r.stderr,
        diagnostics(d)
    );
    let mut served = BTreeSet::new();
    for l in r.stdout.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(f.len(), 5, "unexpected answer {l:?}");
        assert_eq!((f[0], f[1]), (VIP, "53"), "answer not from the VIP: {l:?}");
        assert_eq!(f[3], CLIENT_IP, "backend saw another client address: {l:?}");
        assert!(bs.iter().any(|b| b.name == f[2]), "{l:?}");
        served.insert(f[2].to_string());
    }
    assert_eq!(r.stdout.lines().count(), 20, "{}", r.stdout);
    assert!(served.len() >= 2, "20 UDP flows all went to {served:?}");

    let vip: SocketAddr = format!("{VIP}:53").parse().unwrap();
    let flows: Vec<CtEntry> = ct_list(d).into_iter().filter(|e| e.dst == vip).collect();
    assert!(flows.len() >= 20, "{flows:#?}");
    for e in &flows {
        assert_eq!((e.proto, e.state), (Proto::Udp, CtState::Open), "{e:?}");
        assert!(eps.contains(&e.reply_src.to_string()), "{e:?}");
    }

    // One flow (a fixed source port, as a long-running DNS client has)
    // keeps its endpoint, and moves once that endpoint is removed.
    let ask = || {
        let r = python(&c.name, 30, UDP_CLIENT, &[VIP, "53", "1", "40053"]);
        assert!(r.success(), "{}{}\n{}", r.stdout, r.stderr, diagnostics(d));
        r.stdout.split_whitespace().nth(2).unwrap().to_string()
    };
    let first = ask();
    assert_eq!(ask(), first, "the same UDP flow changed endpoints");
    let rest: Vec<&str> = bs
        .iter()
        .zip(&eps)
        .filter(|(b, _)| b.name != first)
        .map(|(_, e)| e.as_str())
        .collect();
    let mut args = vec!["service", "backends", &key];
    args.extend(&rest);
    d.ctl_ok(&args);
    let moved = ask();
    assert_ne!(moved, first, "a UDP flow stayed with its removed endpoint");
    assert!(bs.iter().any(|b| b.name == moved), "{moved}");
}

#[test]
fn node_port_serves_clients_outside_the_node() {
    let Some(mut env) = TestEnv::new("node_port_serves_clients_outside_the_node") else {
        return;
    };
    let core = allowed_cores()[0].to_string();
    let na = env.add_node("na", "192.168.50.1/24", NodeLink::Alone);
    // "Outside": a namespace on the other end of the node's uplink wire.
    let out = env.add_node("ou", "192.168.50.9/24", NodeLink::Wire(&na));
    env.start_node_daemon(&na, &core);
    let d = env.node_daemon(&na.name);
    d.ctl_ok(&["addr", "add", &format!("{GW}/24")]);
    d.ctl_ok(&["port", "add", "up0", "--uplink"]);
    d.wait_ports_up(&["up0"]);
    let b = env.add_pod_with(
        PodSpec::new("b0", Attach::Afxdp, "10.244.1.20/24")
            .gw(GW)
            .port_security()
            .node(&na),
    );
    start_servers(&mut env, &[&b]);
    let d = env.node_daemon(&na.name);
    let key = svc(VIP, 80, "tcp");
    add_service(d, &key, &[ep(&b)], &["--node-port", "30080"]);
    assert_eq!(service(d, &key).node_port, Some(30080));

    let url = format!("http://{}:30080/", na.uplink_ip);
    let answers = curl_n(d, &out.name, &url, 10);
    assert!(
        answers.iter().all(|(n, peer)| *n == b.name && peer == GW),
        "NodePort answers (expected {} seeing the switch address {GW}): {answers:?}",
        b.name
    );
    let np: SocketAddr = format!("{}:30080", na.uplink_ip).parse().unwrap();
    assert!(
        ct_list(d)
            .iter()
            .any(|e| e.dst == np && e.src.ip() == out.uplink_ip),
        "no NodePort flow tracked:\n{}",
        diagnostics(d)
    );

    // Two outside clients on the same source port: both are translated to
    // the switch's address, so the second one's port is translated too.
    let second = "192.168.50.10";
    let r = ip(&[
        "-n",
        &out.name,
        "addr",
        "add",
        &format!("{second}/24"),
        "dev",
        "up0",
    ]);
    assert!(r.success(), "{}", r.stderr);
    for from in [out.uplink_ip.to_string(), second.to_string()] {
        let r = in_ns(
            &out.name,
            30,
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                "--interface",
                &from,
                "--local-port",
                "40080",
                &url,
            ],
        );
        assert!(
            r.success() && r.stdout.starts_with(&format!("{} {GW}", b.name)),
            "NodePort from {from}:40080: {}{}\n{}",
            r.stdout,
            r.stderr,
            diagnostics(d)
        );
    }
    let same_port: Vec<CtEntry> = ct_list(d)
        .into_iter()
        .filter(|e| e.dst == np && e.src.port() == 40080)
        .collect();
    assert_eq!(same_port.len(), 2, "{same_port:#?}");
    assert_ne!(
        same_port[0].reply_dst, same_port[1].reply_dst,
        "{same_port:#?}"
    );

    // A UDP NodePort: the answers come from the node's address and port.
    d.ctl_ok(&[
        "service",
        "add",
        &svc(VIP, 53, "udp"),
        "--backend",
        &udp_ep(&b),
        "--node-port",
        "30053",
    ]);
    let node_ip = na.uplink_ip.to_string();
    let r = python(&out.name, 60, UDP_CLIENT, &[&node_ip, "30053", "5"]);
    assert!(
        r.success() && r.stdout.lines().count() == 5,
        "UDP NodePort from outside: {}{}\n{}",
        r.stdout,
        r.stderr,
        diagnostics(d)
    );
    for l in r.stdout.lines() {
        let want = format!("{node_ip} 30053 {} {GW} ", b.name);
        assert!(l.starts_with(&want), "answer {l:?}, expected {want:?}...");
    }

    // The node kernel keeps its own traffic on the uplink: ping, and TCP
    // to a port that is no NodePort.
    let r = netns_exec(
        &out.name,
        &[
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            &na.uplink_ip.to_string(),
        ],
    );
    assert!(
        r.success() && r.stdout.contains(" 0% packet loss"),
        "ping of the node from outside:\n{}{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(
        env.tcp_exchange(&out.name, &na.name, na.uplink_ip, 7401),
        out.uplink_ip.to_string()
    );
    let xdp = ip(&["-n", &na.name, "-d", "link", "show", "dev", "up0"]);
    assert!(
        xdp.stdout.contains("xdp"),
        "no XDP program on up0:\n{}",
        xdp.stdout
    );
}

#[test]
fn services_work_across_two_workers() {
    let Some(cores) = pick_cores(2) else {
        common::cannot_run("services_work_across_two_workers", "fewer than 2 cores");
        return;
    };
    let Some((mut env, c, bs)) = lab("services_work_across_two_workers", Some(cores), &[], 2)
    else {
        return;
    };
    let d = env.daemon();
    assert_eq!(d.show().workers.len(), 2, "{:#?}", d.show());
    // Ports go to the least loaded worker: find a backend the client's
    // worker does not poll, so every packet of a flow crosses workers.
    let worker = |p: &Pod| d.port(&p.name).worker;
    let far = bs
        .iter()
        .find(|b| worker(b) != worker(&c))
        .unwrap_or_else(|| panic!("every pod on one worker: {:#?}", d.port_list()))
        .clone();
    let key = svc(VIP, 80, "tcp");
    d.ctl_ok(&["service", "add", &key, "--backend", &ep(&far)]);
    d.ctl_ok(&[
        "service",
        "add",
        &svc(VIP, 53, "udp"),
        "--backend",
        &udp_ep(&far),
    ]);

    let answers = curl_n(d, &c.name, &format!("http://{VIP}/"), 30);
    assert!(
        answers
            .iter()
            .all(|(n, peer)| *n == far.name && peer == CLIENT_IP),
        "{answers:?}"
    );
    let r = python(&c.name, 60, UDP_CLIENT, &[VIP, "53", "10"]);
    assert!(
        r.success() && r.stdout.lines().count() == 10,
        "UDP across workers: {}{}\n{}",
        r.stdout,
        r.stderr,
        diagnostics(d)
    );
    assert!(
        r.stdout
            .lines()
            .all(|l| l.starts_with(&format!("{VIP} 53 ")))
    );

    // A connection that stays open: its conntrack entry is established,
    // so the reply direction was seen too (on the other worker).
    let conn = LongConn::open(&mut env, &c.name.clone(), VIP, 80, "w");
    let d = env.daemon();
    conn.wait_more(5, d, "across workers");
    let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let est = ct_list(d)
        .into_iter()
        .filter(|e| e.dst == vip && e.state == CtState::Established)
        .count();
    assert_eq!(est, 1, "{}", diagnostics(d));
    let replies = conn.finish(d);
    assert!(replies.iter().all(|r| *r == far.name), "{replies:?}");
}

/// Maglev as a rolling update needs it: an endpoint leaving or coming moves
/// its own share of new flows and few others. Through the commands a user
/// (or the CNI agent) gives: a Service of 10 endpoints, 2,000 new flows
/// (SYNs from distinct ports; the endpoints need not exist, the flow is
/// made when the Service stage picks one), each flow's endpoint read from
/// `ct list`; then `service backends` without one of them (10 → 9), the
/// table flushed and the same flows again; then with an 11th (10 → 11),
/// again. Every flow of the removed endpoint moved, and at most 15 % of
/// the others moved (but to the new one); the Maglev table kept its size.
/// (With a size that follows the endpoint count, nearly all would move.)
#[test]
fn endpoints_leaving_or_coming_move_few_other_flows() {
    let Some((env, c, _)) = lab("endpoints_leaving_or_coming", None, &[], 0) else {
        return;
    };
    let d = env.daemon();
    let vip = "10.96.0.12";
    let key = svc(vip, 80, "tcp");
    let eps: Vec<String> = (0..11)
        .map(|i| format!("10.244.1.{}:80", 100 + i))
        .collect();
    add_service(d, &key, &eps[..10], &[]);
    let size = service(d, &key).table_size;
    let front: SocketAddr = format!("{vip}:80").parse().unwrap();
    // Each flow's endpoint, by client port; a SYN or two may be lost on a
    // busy machine, so "nearly all" of the 2,000 is enough.
    let flows = |d: &Daemon| -> BTreeMap<u16, SocketAddr> {
        d.ctl_ok(&["ct", "flush"]);
        let r = python(
            &c.name,
            60,
            SYN_FLOOD,
            &[CLIENT_IP, vip, "80", "20000", "2000"],
        );
        assert!(r.success(), "SYNs: {}{}", r.stdout, r.stderr);
        let mut last = 0;
        let all = wait_for(Duration::from_secs(10), || {
            let l: Vec<CtEntry> = ct_list(d).into_iter().filter(|e| e.dst == front).collect();
            let settled = l.len() >= 1990 && l.len() == last;
            last = l.len();
            settled.then_some(l)
        })
        .unwrap_or_else(|| panic!("{last} of 2,000 flows: {}", diagnostics(d)));
        all.into_iter()
            .map(|e| (e.src.port(), e.reply_src))
            .collect()
    };
    let before = flows(d);
    // `ct list` comes in pages: pages of 300 asked for on the socket join
    // into what vswitchctl printed (which asked for pages of 10,000).
    let tuples = |l: Vec<CtEntry>| -> Vec<_> {
        l.into_iter()
            .map(|e| (e.src, e.dst, e.reply_src, e.reply_dst))
            .collect()
    };
    let whole = tuples(ct_list(d));
    let paged = tuples(ct_pages(d, 300));
    assert!(whole.len() >= 1990 && paged.len() == whole.len());
    let mut sorted = whole.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), whole.len(), "a flow listed twice");
    assert_eq!(paged, whole);
    // (moved, of) among flows in both rounds not on `left` before and not
    // on `came` after.
    let compare = |after: &BTreeMap<u16, SocketAddr>, left: Option<&str>, came: Option<&str>| {
        let left: Option<SocketAddr> = left.map(|e| e.parse().unwrap());
        let came: Option<SocketAddr> = came.map(|e| e.parse().unwrap());
        let (mut moved, mut of, mut of_left) = (0, 0, 0);
        for (port, b) in &before {
            let Some(a) = after.get(port) else { continue };
            assert_ne!(Some(*a), left, "a new flow went to the endpoint that left");
            if Some(*b) == left {
                of_left += 1;
                continue;
            }
            if Some(*a) == came {
                continue;
            }
            of += 1;
            if a != b {
                moved += 1;
            }
        }
        if left.is_some() {
            assert!(
                of_left > 100,
                "{of_left} of 2,000 flows on one of 10 endpoints"
            );
        }
        (moved, of)
    };
    let mut args = vec!["service", "backends", key.as_str()];
    args.extend(
        eps[..10]
            .iter()
            .map(String::as_str)
            .filter(|e| *e != eps[5]),
    );
    d.ctl_ok(&args);
    assert_eq!(service(d, &key).table_size, size, "10 → 9 changed the size");
    let (moved, of) = compare(&flows(d), Some(&eps[5]), None);
    eprintln!("10 → 9: {moved} of {of} flows not on the endpoint that left moved");
    assert!(moved * 100 <= of * 15, "10 → 9: {moved} of {of} moved");

    let mut args = vec!["service", "backends", key.as_str()];
    args.extend(eps.iter().map(String::as_str));
    d.ctl_ok(&args);
    assert_eq!(
        service(d, &key).table_size,
        size,
        "10 → 11 changed the size"
    );
    let (moved, of) = compare(&flows(d), None, Some(&eps[10]));
    eprintln!("10 → 11: {moved} of {of} flows that did not go to the new endpoint moved");
    assert!(moved * 100 <= of * 15, "10 → 11: {moved} of {of} moved");
}

#[test]
fn conntrack_flood_evicts_embryonic_flows_only() {
    let Some((mut env, c, bs)) = lab(
        "conntrack_flood_evicts_embryonic_flows_only",
        None,
        &["--ct-max", "256"],
        1,
    ) else {
        return;
    };
    let flooder = env.add_pod_with(
        PodSpec::new("f", Attach::Afxdp, "10.244.1.30/24")
            .gw(GW)
            .port_security(),
    );
    let d = env.daemon();
    let key = svc(VIP, 80, "tcp");
    d.ctl_ok(&["service", "add", &key, "--backend", &ep(&bs[0])]);
    // The flood's target: a Service whose only endpoint does not exist.
    // The router's ARP for it is never answered, so no SYN is ever
    // answered and every flow stays embryonic (syn_sent). A real pod
    // would answer with SYN-ACK or RST, which counts as a reply.
    let sink = "10.96.0.11";
    d.ctl_ok(&[
        "service",
        "add",
        &svc(sink, 80, "tcp"),
        "--backend",
        "10.244.1.99:80",
    ]);

    let conn = LongConn::open(&mut env, &c.name.clone(), VIP, 80, "f");
    let d = env.daemon();
    conn.wait_more(2, d, "before the flood");
    assert_eq!(ct_stats(d).limit, 256, "{:?}", ct_stats(d));

    // Raw SYNs, each from a new source port: 3,000 new flows for a table
    // of 256.
    let r = python(
        &flooder.name,
        60,
        SYN_FLOOD,
        &[&flooder.ip.to_string(), sink, "80", "20000", "3000"],
    );
    assert!(r.success(), "SYN flood: {}{}", r.stdout, r.stderr);
    conn.wait_more(3, d, "after the flood");

    let stats = ct_stats(d);
    eprintln!("after the flood: {stats:?}");
    assert!(stats.evicted > 0, "the flood evicted nothing: {stats:?}");
    assert!(stats.entries <= stats.limit, "{stats:?}");
    assert!(stats.embryonic > 0, "{stats:?}");
    assert_eq!(
        stats.full, 0,
        "new flows were refused although only embryonic flows filled the table: {stats:?}"
    );
    assert_eq!(drops(d, "conntrack_full"), 0, "{}", diagnostics(d));
    let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
    assert!(
        ct_list(d)
            .iter()
            .any(|e| e.dst == vip && e.state == CtState::Established),
        "the established connection lost its entry:\n{}",
        diagnostics(d)
    );
    // New connections still get in: they evict embryonic flows too.
    let answers = curl_n(d, &c.name, &format!("http://{VIP}/"), 5);
    assert!(answers.iter().all(|(n, _)| *n == bs[0].name), "{answers:?}");
    let replies = conn.finish(d);
    assert!(replies.iter().all(|r| *r == bs[0].name), "{replies:?}");
}

#[test]
fn batch_of_2000_services_applies_whole_or_not_at_all() {
    let Some((env, c, bs)) = lab(
        "batch_of_2000_services_applies_whole_or_not_at_all",
        None,
        &[],
        1,
    ) else {
        return;
    };
    let d = env.daemon();
    let vip = |i: usize| format!("10.97.{}.{}", i / 250, 1 + i % 250);
    let mut lines = String::from("# 2,000 Services, one endpoint each\n\n");
    for i in 0..2000 {
        lines += &format!(
            "service add {} --backend {}\n",
            svc(&vip(i), 80, "tcp"),
            ep(&bs[0])
        );
    }
    let file = env.dir.join("batch.txt");
    fs::write(&file, &lines).unwrap();
    let start = Instant::now();
    d.ctl_ok(&["batch", &file.display().to_string()]);
    eprintln!("batch of 2,000 service add took {:?}", start.elapsed());
    let list = services(d);
    assert_eq!(list.len(), 2000);
    assert!(list.iter().all(|s| s.backends.len() == 1));
    // The data plane has them too.
    let answers = curl_n(d, &c.name, &format!("http://{}/", vip(1234)), 2);
    assert!(answers.iter().all(|(n, _)| *n == bs[0].name), "{answers:?}");

    let snapshot = d.ctl_value(&["service", "list"]);
    let state = fs::read_to_string(env.state_path()).unwrap();
    // A batch whose last command the daemon refuses (that Service exists):
    // nothing of it is applied.
    let bad = format!(
        "service add {new} --backend {b}\nservice del {old}\nservice add {dup} --backend {b}\n",
        new = svc("10.98.0.1", 80, "tcp"),
        old = svc(&vip(7), 80, "tcp"),
        dup = svc(&vip(9), 80, "tcp"),
        b = ep(&bs[0])
    );
    fs::write(&file, bad).unwrap();
    let r = d.ctl(&["batch", &file.display().to_string()]);
    assert!(!r.success(), "a batch with a duplicate Service succeeded");
    assert!(
        r.stderr.contains("nothing applied") && r.stderr.contains("already exists"),
        "{}",
        r.stderr
    );
    // A line that does not parse: refused before anything is sent.
    fs::write(
        &file,
        format!(
            "service del {}\nservice add nope:80/tcp\n",
            svc(&vip(7), 80, "tcp")
        ),
    )
    .unwrap();
    let r = d.ctl(&["batch", &file.display().to_string()]);
    assert!(!r.success(), "a batch with a bad line succeeded");
    assert!(r.stderr.contains("nope"), "{}", r.stderr);
    // And a command that may not be batched.
    fs::write(
        &file,
        format!("service del {}\nport del x\n", svc(&vip(7), 80, "tcp")),
    )
    .unwrap();
    assert!(!d.ctl(&["batch", &file.display().to_string()]).success());

    assert_eq!(d.ctl_value(&["service", "list"]), snapshot);
    assert_eq!(fs::read_to_string(env.state_path()).unwrap(), state);
    let answers = curl_n(d, &c.name, &format!("http://{}/", vip(7)), 1);
    assert_eq!(answers[0].0, bs[0].name);
}
