//! The metrics endpoint (`vswitchd --metrics ADDR:PORT`): `GET /metrics`
//! over HTTP/1.x, served in the control thread's event loop like the
//! control socket (the page is made from the controller's own state). One
//! request per connection, answered and closed; at most [`MAX_CONNS`]
//! connections (a new one pushes out the oldest that has not sent its
//! request yet), [`MAX_REQUEST`] bytes of request and [`TIMEOUT`] each. A
//! page is made at most once per [`FRESH`]: scrapes in between get the same
//! page, so a client asking in a loop cannot keep the controller busy.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Poll, Token};

use crate::controller::Controller;
use crate::controller::metrics::ControlCounts;

/// The listener's token; connections count down from below it.
pub const LISTENER: Token = Token(usize::MAX);
const MAX_CONNS: usize = 16;
const MAX_REQUEST: usize = 8 << 10;
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a page is served again before it is made anew.
const FRESH: Duration = Duration::from_secs(1);

struct Conn {
    stream: TcpStream,
    request: Vec<u8>,
    out: Vec<u8>,
    sent: usize,
    since: Instant,
}

pub struct Http {
    listener: TcpListener,
    conns: HashMap<Token, Conn>,
    next: usize,
    /// The last page and when it was made.
    page: Option<(Instant, String)>,
}

/// Binds the metrics listener.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}

impl Http {
    pub fn new(mut listener: TcpListener, poll: &Poll) -> io::Result<Self> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Http {
            listener,
            conns: HashMap::new(),
            next: LISTENER.0 - 1,
            page: None,
        })
    }

    /// Whether `token` is one of this endpoint's.
    pub fn owns(&self, token: Token) -> bool {
        token == LISTENER || self.conns.contains_key(&token)
    }

    /// Handles an event of one of this endpoint's tokens.
    pub fn event(&mut self, token: Token, poll: &Poll, ctl: &Controller, counts: &ControlCounts) {
        if token == LISTENER {
            self.accept(poll);
            return;
        }
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        if c.out.is_empty()
            && let Some(req) = read_request(c)
        {
            let page = &mut self.page;
            let mut page = || {
                if page.as_ref().is_none_or(|(t, _)| t.elapsed() >= FRESH) {
                    *page = Some((Instant::now(), ctl.metrics(counts)));
                }
                page.as_ref().map(|(_, p)| p.clone()).unwrap_or_default()
            };
            c.out = answer(&req, &mut page);
        }
        if flush(c) {
            self.close(token, poll);
        }
    }

    fn accept(&mut self, poll: &Poll) {
        loop {
            let mut stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!("metrics: accept failed: {e}");
                    return;
                }
            };
            if self.conns.len() >= MAX_CONNS {
                // The oldest that has not sent its request goes; with none
                // such, the newcomer is told to come back.
                let idle = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.out.is_empty())
                    .min_by_key(|(_, c)| c.since)
                    .map(|(t, _)| *t);
                match idle {
                    Some(t) => self.close(t, poll),
                    None => {
                        let _ = stream.write(&response(
                            503,
                            "text/plain",
                            b"too many connections\n",
                            true,
                        ));
                        continue;
                    }
                }
            }
            let token = Token(self.next);
            self.next -= 1;
            if poll
                .registry()
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                continue;
            }
            self.conns.insert(
                token,
                Conn {
                    stream,
                    request: Vec::new(),
                    out: Vec::new(),
                    sent: 0,
                    since: Instant::now(),
                },
            );
        }
    }

    /// Closes connections older than [`TIMEOUT`].
    pub fn sweep(&mut self, poll: &Poll) {
        let old: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.since.elapsed() > TIMEOUT)
            .map(|(t, _)| *t)
            .collect();
        for t in old {
            self.close(t, poll);
        }
    }

    fn close(&mut self, token: Token, poll: &Poll) {
        if let Some(mut c) = self.conns.remove(&token) {
            let _ = poll.registry().deregister(&mut c.stream);
        }
    }
}

/// Reads the request; once its head is complete (or too long, or cut
/// off), returns what was read.
fn read_request(c: &mut Conn) -> Option<Vec<u8>> {
    let mut buf = [0u8; 2048];
    loop {
        match c.stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                c.request.extend_from_slice(&buf[..n]);
                if c.request.len() > MAX_REQUEST || head_end(&c.request).is_some() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    Some(std::mem::take(&mut c.request))
}

fn head_end(req: &[u8]) -> Option<usize> {
    req.windows(4).position(|w| w == b"\r\n\r\n")
}

/// The answer to a request (its head, at least); `page` makes the metrics.
fn answer(req: &[u8], page: &mut impl FnMut() -> String) -> Vec<u8> {
    if head_end(req).is_none_or(|end| end > MAX_REQUEST) {
        return response(400, "text/plain", b"incomplete or too long request\n", true);
    }
    let line = req.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    // HEAD: the same answer without its body.
    let body = method == "GET";
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => response(
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            page().as_bytes(),
            body,
        ),
        ("GET" | "HEAD", "/") => {
            response(200, "text/plain", b"vswitchd: metrics at /metrics\n", body)
        }
        ("GET" | "HEAD", _) => response(
            404,
            "text/plain",
            b"not found: metrics are at /metrics\n",
            body,
        ),
        _ => response(405, "text/plain", b"only GET and HEAD\n", true),
    }
}

fn response(code: u16, content_type: &str, body: &[u8], with_body: bool) -> Vec<u8> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let allow = if code == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if with_body {
        out.extend_from_slice(body);
    }
    out
}

/// Sends what the socket takes; true once the answer is all sent (or the
/// client is gone).
fn flush(c: &mut Conn) -> bool {
    while c.sent < c.out.len() {
        match c.stream.write(&c.out[c.sent..]) {
            Ok(0) => return true,
            Ok(n) => c.sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
    !c.out.is_empty()
}
