//! The control socket: a mio event loop on the controller thread.
//!
//! One JSON request per line in, one JSON response per line out. A line that
//! does not parse, or speaks another protocol version, gets an error response
//! and changes nothing. The loop wakes at least every few milliseconds to
//! let the controller absorb learning reports and do housekeeping.
//!
//! Every resource a client can make the daemon spend is bounded: who may
//! connect (`peer`: root, the daemon's user, `--socket-group`), how many
//! connections ([`max_conns`]), how many bytes one connection and all of
//! them hold (`conn`), and how long one turn serves one client (a few
//! hundred lines or a few milliseconds; the others, and the controller's
//! housekeeping, come between turns). A client over a limit gets one error
//! line and is closed; a client that does not read its answers is not read
//! from until it does, and let go when an answer has waited
//! [`conn::STALL`]. Root is held to its own connections' limits only, not
//! to the totals others use up. Limits: docs/cli.md "The control socket".

mod conn;
pub mod http;
pub mod peer;

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ctl::{PROTOCOL_VERSION, Request, Response};
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};

use self::conn::{Conn, Fill, OUT_HIGH};
use self::peer::{Access, Group};
use crate::controller::Controller;
use crate::controller::metrics::ControlCounts;

const LISTENER: Token = Token(0);
/// Longest time the loop sleeps.
const TICK: Duration = Duration::from_millis(10);
/// Most bytes of requests held for all non-root connections together
/// (every connection's bytes count; one holding less than
/// [`conn::ALLOWANCE`] is read regardless): four of the longest requests.
const TOTAL_IN: usize = 4 * conn::MAX_LINE;
/// Most bytes of answers held for all connections together (each also
/// stops at [`OUT_HIGH`] plus one answer); past it, requests wait to be
/// served until clients take answers.
const TOTAL_OUT: usize = 256 << 20;
/// Connections only root may take beyond [`max_conns`].
const ROOT_RESERVE: usize = 16;
/// Most connections accepted in one round.
const ACCEPTS: usize = 64;
/// Most connections at once, whatever the file descriptor limit allows.
const MAX_CONNS: usize = 4096;
/// Descriptors kept for everything but control connections (ports,
/// namespaces, the state file).
const FD_RESERVE: usize = 1024;
/// One client's turn: at most this many requests ...
const TURN_LINES: usize = 256;
/// ... or this long.
const TURN_TIME: Duration = Duration::from_millis(2);
/// One round over the ready clients ends after this long, so that the
/// controller's housekeeping (learning, ageing) runs between rounds.
const ROUND_TIME: Duration = Duration::from_millis(10);

/// How many control connections are served at once: [`MAX_CONNS`], or
/// fewer where the open-file limit (raised to its hard limit by
/// [`raise_fd_limit`]) would not leave [`FD_RESERVE`] for the rest.
pub fn max_conns() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 64;
    }
    usize::try_from(lim.rlim_cur)
        .unwrap_or(usize::MAX)
        .saturating_sub(FD_RESERVE)
        .clamp(64, MAX_CONNS)
}

/// Raises the open-file soft limit to the hard limit (often 1024 of
/// 524288): a thousand control clients need more than the default.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::debug!("cannot raise RLIMIT_NOFILE: {}", io::Error::last_os_error());
            }
        }
    }
}

/// Binds the control socket (mode 0660, group `group` when given),
/// replacing a stale one.
pub fn bind(path: &Path, group: Option<&Group>) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use: is another vswitchd running?", path.display()),
            ));
        }
        fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    if let Some(g) = group {
        std::os::unix::fs::chown(path, None, Some(g.gid)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot give the socket to group {}: {e}", g.name),
            )
        })?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Parses and serves one request line.
pub fn serve_line(ctl: &mut Controller, line: &[u8]) -> Response {
    let text = match std::str::from_utf8(line) {
        Ok(t) => t.trim(),
        Err(_) => return Response::error("request is not valid UTF-8"),
    };
    // Check the version first so that a newer client gets a clear message
    // even if its command does not parse here.
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text)
        && let Some(ver) = v.get("version").and_then(|x| x.as_u64())
        && ver != u64::from(PROTOCOL_VERSION)
    {
        return Response::error(format!(
            "unsupported protocol version {ver}: this vswitchd speaks version {PROTOCOL_VERSION}"
        ));
    }
    let req: Request = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => return Response::error(format!("malformed request: {e}")),
    };
    match ctl.handle(req.command) {
        Ok(reply) => Response::ok(reply),
        Err(e) => Response::error(e),
    }
}

/// Runs the control loop until `stop` is set.
pub fn run(
    ctl: &mut Controller,
    mut listener: UnixListener,
    metrics: Option<mio::net::TcpListener>,
    access: &Access,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut http = metrics.map(|l| http::Http::new(l, &poll)).transpose()?;
    let mut events = Events::with_capacity(256);
    let mut s = Server {
        conns: HashMap::new(),
        ready: VecDeque::new(),
        parked: Vec::new(),
        next: 1,
        held_in: 0,
        held_out: 0,
        max_conns: max_conns(),
        access,
        log: Logs::default(),
        last_sweep: Instant::now(),
        counts: ControlCounts::default(),
    };
    // Accepting goes on in the next round when a round accepted its most
    // (at once), or an accept failed, out of descriptors say (after a
    // tick): the listener reports only new connections.
    let mut accept_again = Accept::Drained;
    while !stop.load(Ordering::Relaxed) {
        let timeout = if s.ready.is_empty() && accept_again != Accept::More {
            TICK
        } else {
            Duration::ZERO
        };
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            if let Some(h) = &mut http
                && h.owns(ev.token())
            {
                s.counts.connections = s.conns.len() as u64;
                h.event(ev.token(), &poll, ctl, &s.counts);
                continue;
            }
            if ev.token() == LISTENER {
                accept_again = Accept::More;
            } else if let Some(c) = s.conns.get_mut(&ev.token()) {
                if !c.queued {
                    c.queued = true;
                    s.ready.push_back(ev.token());
                } else if c.pending_out() > 0 {
                    // Waiting for its turn (or parked), it still gets its
                    // answers as fast as it takes them.
                    let before = c.held_out();
                    c.flush();
                    s.held_out = s.held_out - before + c.held_out();
                }
            }
        }
        if accept_again != Accept::Drained {
            accept_again = s.accept(&listener, &poll);
        }
        s.round(ctl, &poll);
        if s.sweep(&poll)
            && let Some(h) = &mut http
        {
            h.sweep(&poll);
        }
        ctl.tick();
    }
    Ok(())
}

struct Server<'a> {
    conns: HashMap<Token, Conn>,
    /// Connections with something to do: an event came, or a turn ended
    /// with requests left.
    ready: VecDeque<Token>,
    /// Connections with requests left that wait for room under
    /// [`TOTAL_OUT`].
    parked: Vec<Token>,
    next: usize,
    /// Bytes of requests all connections hold.
    held_in: usize,
    /// Bytes of answers all connections hold.
    held_out: usize,
    max_conns: usize,
    access: &'a Access,
    log: Logs,
    last_sweep: Instant,
    counts: ControlCounts,
}

/// Why a new client is refused (each kind logged on its own).
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// Not admitted (`peer`).
    Peer,
    /// Over the connection limit.
    Limit,
}

/// How accepting ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accept {
    /// No connection waits.
    Drained,
    /// The round's most were accepted: more may wait.
    More,
    /// An accept failed: tried again after a tick.
    Failed,
}

/// Repeated events logged at most once a second each.
#[derive(Default)]
struct Logs {
    peers: Throttle,
    limits: Throttle,
    accept: Throttle,
}

impl Server<'_> {
    /// Accepts up to [`ACCEPTS`] waiting connections.
    fn accept(&mut self, listener: &UnixListener, poll: &Poll) -> Accept {
        for _ in 0..ACCEPTS {
            let mut stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Accept::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.log
                        .accept
                        .note(format!("accepting control connections failed: {e}"));
                    return Accept::Failed;
                }
            };
            let peer = peer::peer(&stream)
                .map_err(|e| format!("cannot read the client's credentials: {e}"))
                .and_then(|p| self.access.check(&p).map(|()| p));
            let peer = match peer {
                Ok(p) => p,
                Err(why) => {
                    self.refuse(&mut stream, &why, Refusal::Peer);
                    continue;
                }
            };
            // Root keeps a few connections however many others hold.
            let limit = self.max_conns + if peer.uid == 0 { ROOT_RESERVE } else { 0 };
            if self.conns.len() >= limit {
                let why = format!(
                    "vswitchd serves at most {} control connections at once: try again",
                    self.max_conns
                );
                self.refuse(&mut stream, &why, Refusal::Limit);
                continue;
            }
            let token = Token(self.next);
            self.next += 1;
            if let Err(e) = poll.registry().register(
                &mut stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                tracing::warn!("cannot watch a control connection: {e}");
                continue;
            }
            let mut c = Conn::new(stream);
            c.root = peer.uid == 0;
            // What it sent before we watched it is read now.
            c.queued = true;
            self.conns.insert(token, c);
            self.ready.push_back(token);
        }
        Accept::More
    }

    /// Tells a new client why it is not served, counts and logs it.
    fn refuse(&mut self, stream: &mut UnixStream, why: &str, kind: Refusal) {
        self.counts.refused += 1;
        let (log, what) = match kind {
            Refusal::Peer => (&mut self.log.peers, "control connection refused"),
            Refusal::Limit => (&mut self.log.limits, "control client refused"),
        };
        log.note(format!("{what}: {why}"));
        refuse_now(stream, why);
    }

    /// One turn for each connection that was ready when the round began,
    /// until [`ROUND_TIME`] is spent; the rest wait for the next round,
    /// ahead of those queued during this one.
    fn round(&mut self, ctl: &mut Controller, poll: &Poll) {
        if self.held_out < TOTAL_OUT {
            self.ready.extend(self.parked.drain(..));
        }
        let began = Instant::now();
        let mut turns = self.ready.len();
        while turns > 0 && began.elapsed() < ROUND_TIME {
            turns -= 1;
            let Some(token) = self.ready.pop_front() else {
                break;
            };
            let Some(c) = self.conns.get_mut(&token) else {
                continue;
            };
            c.queued = false;
            let (in_before, out_before) = (c.held_in(), c.held_out());
            // Root is not held back by what others hold (its own
            // connection's limits still apply).
            let room = if c.root {
                Room {
                    requests: usize::MAX,
                    answers: usize::MAX,
                }
            } else {
                Room {
                    requests: TOTAL_IN.saturating_sub(self.held_in),
                    answers: TOTAL_OUT.saturating_sub(self.held_out),
                }
            };
            let next = turn(ctl, c, room, &mut self.counts);
            if next == Next::Refused {
                self.counts.refused += 1;
                self.log
                    .limits
                    .note("control client refused: a request passed a limit".into());
            }
            self.held_in = self.held_in - in_before + c.held_in();
            self.held_out = self.held_out - out_before + c.held_out();
            if c.done() {
                self.close(token, poll);
                continue;
            }
            match next {
                Next::Again => self.ready.push_back(token),
                Next::Parked => self.parked.push(token),
                Next::Wait | Next::Refused => continue,
            }
            c.queued = true;
        }
    }

    /// Once a second: disconnects clients that stopped taking their
    /// answers ([`conn::STALL`]) and refuses lines that do not end
    /// ([`conn::LINE_TIME`]). True if it ran.
    fn sweep(&mut self, poll: &Poll) -> bool {
        let now = Instant::now();
        if now.duration_since(self.last_sweep) < Duration::from_secs(1) {
            return false;
        }
        self.last_sweep = now;
        for t in [
            &mut self.log.peers,
            &mut self.log.limits,
            &mut self.log.accept,
        ] {
            t.flush();
        }
        self.parked.retain(|t| self.conns.contains_key(t));
        let mut overdue = Vec::new();
        for (t, c) in &mut self.conns {
            if c.line_overdue(now) {
                let (i, o) = (c.held_in(), c.held_out());
                c.refuse(format!(
                    "request not completed within {} s",
                    conn::LINE_TIME.as_secs()
                ));
                c.flush();
                self.held_in = self.held_in - i + c.held_in();
                self.held_out = self.held_out - o + c.held_out();
                if c.done() {
                    overdue.push(*t);
                }
            }
        }
        if !overdue.is_empty() {
            tracing::warn!(
                "refused {} control request(s) that did not end",
                overdue.len()
            );
        }
        self.counts.refused += overdue.len() as u64;
        for token in overdue {
            self.close(token, poll);
        }
        let stalled: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.stalled(now))
            .map(|(t, _)| *t)
            .collect();
        if !stalled.is_empty() {
            tracing::warn!(
                "disconnected {} control client(s) that took no answer for {:?}",
                stalled.len(),
                conn::STALL
            );
        }
        self.counts.refused += stalled.len() as u64;
        for token in stalled {
            self.close(token, poll);
        }
        true
    }

    fn close(&mut self, token: Token, poll: &Poll) {
        if let Some(mut c) = self.conns.remove(&token) {
            self.held_in -= c.held_in();
            self.held_out -= c.held_out();
            let _ = poll.registry().deregister(&mut c.stream);
        }
        // A closed connection's token may still be queued or parked: it is
        // skipped there (tokens are never reused).
    }
}

/// Room left under the daemon's totals at the start of a turn.
#[derive(Debug, Clone, Copy)]
struct Room {
    requests: usize,
    answers: usize,
}

/// What a connection does after its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Another turn next round: requests left, or a read paused.
    Again,
    /// Requests left, but no room for their answers under [`TOTAL_OUT`]:
    /// back once there is.
    Parked,
    /// Nothing until the socket says so (new requests, or room to send).
    Wait,
    /// Refused (a limit passed): closing once its answer is sent.
    Refused,
}

/// One client's turn: sends what it can, reads, serves up to
/// [`TURN_LINES`] requests or [`TURN_TIME`], sends again.
fn turn(ctl: &mut Controller, c: &mut Conn, room: Room, counts: &mut ControlCounts) -> Next {
    c.flush();
    if c.pending_out() < OUT_HIGH && c.fill(room.requests) == Fill::Refused {
        c.flush();
        return Next::Refused;
    }
    let began = Instant::now();
    let out_before = c.held_out();
    let mut served = 0;
    let mut parked = false;
    while !c.closing
        && c.pending_out() < OUT_HIGH
        && served < TURN_LINES
        && began.elapsed() < TURN_TIME
    {
        if c.held_out().saturating_sub(out_before) >= room.answers {
            parked = true;
            break;
        }
        let Some(line) = c.next_line() else {
            break;
        };
        let line = c.line(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        served += 1;
        let resp = serve_line(ctl, line);
        counts.requests += 1;
        counts.errors += u64::from(!resp.ok);
        c.respond(&resp);
    }
    c.flush();
    c.compact_in();
    // Edge-triggered readiness: a paused read or requests left over are
    // resumed by the next round, not by an event. A full answer buffer
    // waits for the socket to take it.
    if c.closing || c.pending_out() >= OUT_HIGH || !(c.paused || c.has_line()) {
        Next::Wait
    } else if parked {
        Next::Parked
    } else {
        Next::Again
    }
}

/// Logs repeated events at most once a second: the latest, with how many
/// there were since the last line (those of the last second are logged by
/// the once-a-second sweep, so none goes unreported).
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    count: u64,
    latest: String,
}

impl Throttle {
    fn note(&mut self, msg: String) {
        self.count += 1;
        self.latest = msg;
        self.flush();
    }

    fn flush(&mut self) {
        if self.count == 0
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        if self.count == 1 {
            tracing::warn!("{}", self.latest);
        } else {
            tracing::warn!(
                "{} ({} such since the last report)",
                self.latest,
                self.count
            );
        }
        self.count = 0;
        self.last = Some(Instant::now());
    }
}

/// Tells a client it is not served, without waiting for it.
fn refuse_now(stream: &mut UnixStream, why: &str) {
    let mut line = serde_json::to_vec(&Response::error(why)).unwrap_or_default();
    line.push(b'\n');
    // A fresh connection's socket buffer takes one line.
    let _ = stream.write(&line);
}
