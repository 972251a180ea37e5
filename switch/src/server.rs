//! The control socket: a mio event loop on the controller thread.
//!
//! One JSON request per line in, one JSON response per line out. A line that
//! does not parse, or speaks another protocol version, gets an error response
//! and changes nothing. The loop wakes at least every few milliseconds to
//! let the controller absorb learning reports and do housekeeping.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ctl::{PROTOCOL_VERSION, Request, Response};
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};

use crate::controller::Controller;

const LISTENER: Token = Token(0);
/// Longest request line accepted (a batch of 10,000 Services is ~1.5 MB).
const MAX_LINE: usize = 64 << 20;
/// Most unread response bytes kept for one client before it is dropped.
const MAX_OUTPUT: usize = 16 << 20;
/// Longest time the loop sleeps.
const TICK: Duration = Duration::from_millis(10);

struct Conn {
    stream: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    closing: bool,
}

/// Binds the control socket (mode 0660), replacing a stale one.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
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
pub fn run(ctl: &mut Controller, mut listener: UnixListener, stop: &AtomicBool) -> io::Result<()> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(64);
    let mut conns: HashMap<Token, Conn> = HashMap::new();
    let mut next = 1usize;
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = poll.poll(&mut events, Some(TICK)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let token = Token(next);
                            next += 1;
                            if let Err(e) =
                                poll.registry()
                                    .register(&mut stream, token, Interest::READABLE)
                            {
                                tracing::warn!("cannot watch a control connection: {e}");
                                continue;
                            }
                            conns.insert(
                                token,
                                Conn {
                                    stream,
                                    inbuf: Vec::new(),
                                    outbuf: Vec::new(),
                                    closing: false,
                                },
                            );
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            tracing::warn!("accept failed: {e}");
                            break;
                        }
                    }
                }
                continue;
            }
            let token = ev.token();
            let Some(conn) = conns.get_mut(&token) else {
                continue;
            };
            if ev.is_readable() {
                read_requests(ctl, conn);
            }
            flush(conn);
            let done = conn.closing && conn.outbuf.is_empty();
            let interest = if conn.outbuf.is_empty() {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            // A connection that cannot be watched any more is dropped; the
            // daemon goes on.
            let drop_conn = done
                || poll
                    .registry()
                    .reregister(&mut conn.stream, token, interest)
                    .is_err();
            if drop_conn && let Some(mut c) = conns.remove(&token) {
                let _ = poll.registry().deregister(&mut c.stream);
            }
        }
        ctl.tick();
    }
    Ok(())
}

fn read_requests(ctl: &mut Controller, conn: &mut Conn) {
    let mut buf = [0u8; 4096];
    loop {
        match conn.stream.read(&mut buf) {
            Ok(0) => {
                conn.closing = true;
                break;
            }
            Ok(n) => {
                conn.inbuf.extend_from_slice(&buf[..n]);
                if conn.inbuf.len() > MAX_LINE && !conn.inbuf.contains(&b'\n') {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                conn.closing = true;
                break;
            }
        }
    }
    while let Some(pos) = conn.inbuf.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = conn.inbuf.drain(..=pos).collect();
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        respond(conn, &serve_line(ctl, &line));
    }
    if conn.inbuf.len() > MAX_LINE {
        conn.inbuf.clear();
        respond(
            conn,
            &Response::error(format!("request longer than {MAX_LINE} bytes")),
        );
        conn.closing = true;
    }
}

fn respond(conn: &mut Conn, resp: &Response) {
    if conn.outbuf.len() > MAX_OUTPUT {
        // The client sends requests but does not read the answers.
        conn.closing = true;
        conn.outbuf.clear();
        return;
    }
    let mut out = serde_json::to_vec(resp).unwrap_or_else(|e| {
        serde_json::to_vec(&Response::error(format!("cannot encode response: {e}")))
            .unwrap_or_default()
    });
    out.push(b'\n');
    conn.outbuf.extend_from_slice(&out);
}

fn flush(conn: &mut Conn) {
    while !conn.outbuf.is_empty() {
        match conn.stream.write(&conn.outbuf) {
            Ok(0) => {
                conn.closing = true;
                conn.outbuf.clear();
            }
            Ok(n) => {
                conn.outbuf.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                conn.closing = true;
                conn.outbuf.clear();
            }
        }
    }
}
