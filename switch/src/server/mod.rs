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
//! from until it does.

mod conn;
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

const LISTENER: Token = Token(0);
/// Longest time the loop sleeps.
const TICK: Duration = Duration::from_millis(10);
/// Most bytes held for all connections together (requests read ahead,
/// answers unsent): four of the longest requests at once.
const TOTAL_HELD: usize = 4 * conn::MAX_LINE;
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
    access: &Access,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(256);
    let mut s = Server {
        conns: HashMap::new(),
        ready: VecDeque::new(),
        next: 1,
        held: 0,
        max_conns: max_conns(),
        access,
    };
    // An accept that failed (out of descriptors) is retried each round:
    // the listener reports only new connections.
    let mut accept_again = false;
    while !stop.load(Ordering::Relaxed) {
        let timeout = if s.ready.is_empty() {
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
            if ev.token() == LISTENER {
                accept_again = true;
            } else if let Some(c) = s.conns.get_mut(&ev.token())
                && !c.queued
            {
                c.queued = true;
                s.ready.push_back(ev.token());
            }
        }
        if accept_again {
            accept_again = s.accept(&listener, &poll);
        }
        s.round(ctl, &poll);
        ctl.tick();
    }
    Ok(())
}

struct Server<'a> {
    conns: HashMap<Token, Conn>,
    /// Connections with something to do: an event came, or a turn ended
    /// with requests left.
    ready: VecDeque<Token>,
    next: usize,
    /// Bytes all connections hold.
    held: usize,
    max_conns: usize,
    access: &'a Access,
}

impl Server<'_> {
    /// Accepts waiting connections; true if one failed and should be
    /// retried.
    fn accept(&mut self, listener: &UnixListener, poll: &Poll) -> bool {
        loop {
            let mut stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("accepting a control connection failed: {e}");
                    return true;
                }
            };
            let admitted = peer::peer(&stream)
                .map_err(|e| format!("cannot read the client's credentials: {e}"))
                .and_then(|p| self.access.check(&p));
            if let Err(why) = admitted {
                tracing::warn!("control connection refused: {why}");
                refuse_now(&mut stream, &why);
                continue;
            }
            if self.conns.len() >= self.max_conns {
                refuse_now(
                    &mut stream,
                    &format!(
                        "vswitchd serves at most {} control connections at once: try again",
                        self.max_conns
                    ),
                );
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
            // What it sent before we watched it is read now.
            c.queued = true;
            self.conns.insert(token, c);
            self.ready.push_back(token);
        }
    }

    /// One turn for each connection that was ready when the round began,
    /// until [`ROUND_TIME`] is spent; the rest wait for the next round,
    /// ahead of those queued during this one.
    fn round(&mut self, ctl: &mut Controller, poll: &Poll) {
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
            let before = c.held();
            let room = TOTAL_HELD.saturating_sub(self.held);
            let again = turn(ctl, c, room);
            self.held = self.held - before + c.held();
            if c.done() {
                if let Some(mut c) = self.conns.remove(&token) {
                    self.held -= c.held();
                    let _ = poll.registry().deregister(&mut c.stream);
                }
            } else if again {
                c.queued = true;
                self.ready.push_back(token);
            }
        }
    }
}

/// One client's turn: sends what it can, reads, serves up to
/// [`TURN_LINES`] requests or [`TURN_TIME`], sends again. True if it has
/// more to do without waiting for the socket.
fn turn(ctl: &mut Controller, c: &mut Conn, room: usize) -> bool {
    c.flush();
    if c.pending_out() < OUT_HIGH && c.fill(room) == Fill::Refused {
        c.flush();
        return false;
    }
    let began = Instant::now();
    let mut served = 0;
    while !c.closing
        && c.pending_out() < OUT_HIGH
        && served < TURN_LINES
        && began.elapsed() < TURN_TIME
    {
        let Some(line) = c.next_line() else {
            break;
        };
        let line = c.line(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        served += 1;
        let resp = serve_line(ctl, line);
        c.respond(&resp);
    }
    c.flush();
    // Edge-triggered readiness: a paused read or requests left over are
    // resumed by the next round, not by an event. A full answer buffer
    // waits for the socket to take it.
    !c.closing && c.pending_out() < OUT_HIGH && (c.paused || c.has_line())
}

/// Tells a client it is not served, without waiting for it.
fn refuse_now(stream: &mut UnixStream, why: &str) {
    let mut line = serde_json::to_vec(&Response::error(why)).unwrap_or_default();
    line.push(b'\n');
    // A fresh connection's socket buffer takes one line.
    let _ = stream.write(&line);
}
