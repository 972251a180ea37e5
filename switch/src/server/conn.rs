//! One control connection's buffers: requests read ahead of being served,
//! answers not yet sent.
//!
//! Lines are found with a cursor: consumed bytes are skipped, not shifted
//! out one line at a time, and the buffer is compacted only once at least
//! half of it is consumed, so a burst of many small lines costs time in
//! proportion to its size. Bytes already searched for a newline are not
//! searched again while a long line (a `batch`) arrives.

use std::io::{self, Read, Write};
use std::ops::Range;
use std::time::{Duration, Instant};

use ctl::Response;
use mio::net::UnixStream;

/// Longest request line accepted (a batch of 10,000 Services is ~1.5 MB).
pub const MAX_LINE: usize = 64 << 20;
/// Requests are read ahead of being served up to this many bytes; beyond,
/// the client waits in its own `write` (the socket's buffer is full). Also
/// the most one turn reads.
pub const READ_AHEAD: usize = 1 << 20;
/// Bytes of requests each connection may hold whatever the daemon's total
/// (so that a full total never turns away a client sending a short
/// request).
pub const ALLOWANCE: usize = 64 << 10;
/// A client with answers waiting that takes none of them for this long is
/// disconnected.
pub const STALL: Duration = Duration::from_secs(10);
/// A request line longer than [`ALLOWANCE`] must end within this long.
pub const LINE_TIME: Duration = Duration::from_secs(30);
/// Answers are not produced while this many bytes wait to be sent: a client
/// that sends but does not read is left waiting, not buffered for.
pub const OUT_HIGH: usize = 1 << 20;
/// Bytes read at once.
const CHUNK: usize = 64 << 10;
/// Capacity kept by an idle connection's buffers.
const IDLE_CAPACITY: usize = 64 << 10;

/// How a read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Nothing more to read now (the kernel said so, or the client closed).
    Drained,
    /// Stopped with bytes maybe left in the socket: enough read ahead, or
    /// no room under the daemon's total.
    Paused,
    /// The connection broke a limit and is closing with an error answer.
    Refused,
}

pub struct Conn {
    pub stream: UnixStream,
    inbuf: Vec<u8>,
    /// First byte not yet consumed.
    start: usize,
    /// Bytes before this index (from `start`) hold no newline.
    scanned: usize,
    out: Vec<u8>,
    sent: usize,
    /// The client closed its end (answers to what it sent are still sent).
    pub eof: bool,
    /// Close once the answers are sent.
    pub closing: bool,
    /// Waiting in the server's ready queue.
    pub queued: bool,
    /// The last read paused with bytes maybe left in the socket.
    pub paused: bool,
    /// When the client last took answers (or had none waiting).
    last_taken: Instant,
    /// Since when an unfinished line longer than [`ALLOWANCE`] is held.
    long_line_since: Option<Instant>,
    /// The client is root: the daemon's totals do not hold it back.
    pub root: bool,
}

impl Conn {
    pub fn new(stream: UnixStream) -> Self {
        Conn {
            stream,
            inbuf: Vec::new(),
            start: 0,
            scanned: 0,
            out: Vec::new(),
            sent: 0,
            eof: false,
            closing: false,
            queued: false,
            paused: false,
            last_taken: Instant::now(),
            long_line_since: None,
            root: false,
        }
    }

    /// Bytes of requests this connection holds.
    pub fn held_in(&self) -> usize {
        self.inbuf.len()
    }

    /// Bytes of answers this connection holds.
    pub fn held_out(&self) -> usize {
        self.out.len()
    }

    /// Answers have waited for the client longer than [`STALL`].
    pub fn stalled(&self, now: Instant) -> bool {
        self.pending_out() > 0 && now.duration_since(self.last_taken) > STALL
    }

    /// An unfinished line longer than [`ALLOWANCE`] has been held longer
    /// than [`LINE_TIME`].
    pub fn line_overdue(&self, now: Instant) -> bool {
        self.long_line_since
            .is_some_and(|t| now.duration_since(t) > LINE_TIME)
    }

    pub fn pending_out(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Finished: the client is gone or is being let go, nothing left to
    /// answer or send.
    pub fn done(&mut self) -> bool {
        self.pending_out() == 0 && (self.closing || (self.eof && self.line_end().is_none()))
    }

    /// Reads what the client sent: at most [`READ_AHEAD`] bytes a call,
    /// none while [`READ_AHEAD`] bytes beyond a complete line wait, and,
    /// past this connection's [`ALLOWANCE`], never so much that the
    /// requests all connections hold pass `room` more bytes: a client
    /// whose unfinished line would is refused.
    pub fn fill(&mut self, room: usize) -> Fill {
        let f = self.read_some(room);
        if f != Fill::Refused {
            self.note_long_line();
        }
        f
    }

    fn read_some(&mut self, mut room: usize) -> Fill {
        self.paused = false;
        let mut read = 0;
        while !self.eof && !self.closing {
            let ahead = self.inbuf.len() - self.start;
            if read >= READ_AHEAD || (ahead >= READ_AHEAD && self.line_end().is_some()) {
                self.paused = true;
                return Fill::Paused;
            }
            if ahead > MAX_LINE {
                self.refuse(format!("request longer than {MAX_LINE} bytes"));
                return Fill::Refused;
            }
            self.compact_in();
            if room < CHUNK && ahead >= ALLOWANCE {
                if self.line_end().is_some() {
                    self.paused = true;
                    return Fill::Paused;
                }
                self.refuse(
                    "vswitchd's control buffers are full (other clients' requests are \
                     being read): try again",
                );
                return Fill::Refused;
            }
            let len = self.inbuf.len();
            self.inbuf.resize(len + CHUNK, 0);
            let r = self.stream.read(&mut self.inbuf[len..]);
            self.inbuf.truncate(len + *r.as_ref().unwrap_or(&0));
            match r {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    room = room.saturating_sub(n);
                    read += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.closing = true,
            }
        }
        Fill::Drained
    }

    /// Starts or stops the clock of an unfinished long line.
    fn note_long_line(&mut self) {
        let long = self.inbuf.len() - self.start > ALLOWANCE && self.line_end().is_none();
        match (long, self.long_line_since) {
            (true, None) => self.long_line_since = Some(Instant::now()),
            (false, Some(_)) => self.long_line_since = None,
            _ => {}
        }
    }

    /// The next complete request line, consumed (its range in the buffer:
    /// read it with [`Conn::line`] before the next read).
    pub fn next_line(&mut self) -> Option<Range<usize>> {
        let end = self.line_end()?;
        let line = self.start..end + 1;
        self.start = end + 1;
        self.scanned = self.start;
        Some(line)
    }

    pub fn line(&self, r: Range<usize>) -> &[u8] {
        &self.inbuf[r]
    }

    /// Where the next complete line ends (its newline), searching only
    /// bytes not searched before.
    fn line_end(&mut self) -> Option<usize> {
        let from = self.scanned.max(self.start);
        match self.inbuf[from..].iter().position(|&b| b == b'\n') {
            Some(i) => Some(from + i),
            None => {
                self.scanned = self.inbuf.len();
                None
            }
        }
    }

    pub fn has_line(&mut self) -> bool {
        self.line_end().is_some()
    }

    /// Drops consumed bytes once they are at least half the buffer (all of
    /// them, and most of its room, when everything is consumed): after each
    /// read and at the end of each turn.
    pub fn compact_in(&mut self) {
        if self.start == self.inbuf.len() {
            self.inbuf.clear();
            (self.start, self.scanned) = (0, 0);
            if self.inbuf.capacity() > IDLE_CAPACITY {
                self.inbuf.shrink_to(IDLE_CAPACITY);
            }
        } else if self.start > 0 && self.start >= self.inbuf.len() / 2 {
            self.inbuf.drain(..self.start);
            self.scanned -= self.start.min(self.scanned);
            self.start = 0;
        }
    }

    /// Queues an answer.
    pub fn respond(&mut self, resp: &Response) {
        if self.pending_out() == 0 {
            // The stall clock starts with the first answer waiting.
            self.last_taken = Instant::now();
        }
        let start = self.out.len();
        if let Err(e) = serde_json::to_writer(&mut self.out, resp) {
            self.out.truncate(start);
            let _ = serde_json::to_writer(
                &mut self.out,
                &Response::error(format!("cannot encode response: {e}")),
            );
        }
        self.out.push(b'\n');
    }

    /// Answers with an error and closes: what else the client sent is not
    /// read.
    pub fn refuse(&mut self, msg: impl std::fmt::Display) {
        self.respond(&Response::error(msg));
        self.closing = true;
        self.inbuf = Vec::new();
        (self.start, self.scanned) = (0, 0);
        self.long_line_since = None;
    }

    /// Sends what the socket takes now.
    pub fn flush(&mut self) {
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => self.broken(),
                Ok(n) => {
                    self.sent += n;
                    self.last_taken = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.broken(),
            }
        }
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
            self.last_taken = Instant::now();
            if self.out.capacity() > IDLE_CAPACITY {
                self.out.shrink_to(IDLE_CAPACITY);
            }
        } else if self.sent >= self.out.len() / 2 {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
    }

    /// The client cannot be written to: nothing more is sent or read.
    fn broken(&mut self) {
        self.closing = true;
        self.out.clear();
        self.sent = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Conn, std::os::unix::net::UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        (Conn::new(UnixStream::from_std(a)), b)
    }

    fn lines(c: &mut Conn) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(r) = c.next_line() {
            out.push(String::from_utf8(c.line(r).to_vec()).unwrap());
        }
        out
    }

    #[test]
    fn lines_cut_anywhere_come_out_whole() {
        let (mut c, mut peer) = pair();
        let text = "first\nsecond line\n\nthird";
        for piece in text.as_bytes().chunks(3) {
            peer.write_all(piece).unwrap();
            assert_eq!(c.fill(usize::MAX), Fill::Drained);
        }
        let got = lines(&mut c);
        assert_eq!(got, ["first\n", "second line\n", "\n"]);
        assert!(!c.has_line());
        peer.write_all(b" end\n").unwrap();
        c.fill(usize::MAX);
        assert_eq!(lines(&mut c), ["third end\n"]);
        assert_eq!(c.held_in() - c.start, 0, "everything consumed");
        c.compact_in();
        assert_eq!(c.held_in(), 0, "consumed bytes are let go");
    }

    #[test]
    fn reading_pauses_ahead_of_serving_and_resumes() {
        let (mut c, mut peer) = pair();
        peer.set_nonblocking(true).unwrap();
        let line = [b'x'; 99].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        let (mut sent, mut at) = (0, 0);
        // Fill the socket and the read-ahead, whole lines only.
        while sent < 3 * READ_AHEAD {
            match peer.write(&line[at..]) {
                Ok(n) if at + n == line.len() => (sent, at) = (sent + 1, 0),
                Ok(n) => at += n,
                Err(_) => {
                    // (A line cut off here is never completed nor served.)
                    if c.fill(usize::MAX) == Fill::Paused {
                        break;
                    }
                }
            }
        }
        assert!(c.paused);
        let (mut served, mut peak) = (0, c.inbuf.capacity());
        loop {
            while let Some(r) = c.next_line() {
                assert_eq!(c.line(r).len(), 100);
                served += 1;
            }
            let fill = c.fill(usize::MAX);
            peak = peak.max(c.inbuf.capacity());
            if fill == Fill::Drained && !c.has_line() {
                break;
            }
        }
        assert_eq!(served, sent);
        // The read-ahead and a read, in a Vec that doubles as it grows.
        assert!(peak <= 2 * (READ_AHEAD + CHUNK), "{peak}");
    }

    #[test]
    fn a_long_line_has_a_deadline_and_answers_a_stall_clock() {
        let (mut c, mut peer) = pair();
        peer.write_all(&vec![b'x'; ALLOWANCE / 2]).unwrap();
        c.fill(usize::MAX);
        let later = Instant::now() + LINE_TIME + Duration::from_secs(1);
        assert!(
            !c.line_overdue(later),
            "a short unfinished line has no deadline"
        );
        peer.write_all(&vec![b'x'; ALLOWANCE]).unwrap();
        c.fill(usize::MAX);
        assert!(!c.line_overdue(Instant::now()));
        assert!(c.line_overdue(later));
        peer.write_all(b"\n").unwrap();
        c.fill(usize::MAX);
        assert!(!c.line_overdue(later), "the line ended");

        // The stall clock starts with the first answer waiting, not at the
        // last send.
        let (mut c, _peer) = pair();
        c.last_taken = Instant::now() - STALL * 2;
        c.respond(&Response::error("x"));
        assert!(!c.stalled(Instant::now()));
        assert!(c.stalled(Instant::now() + STALL + Duration::from_secs(1)));
    }

    #[test]
    fn a_full_total_refuses_only_a_growing_line() {
        // Within its allowance a connection is read whatever the total.
        let (mut c, mut peer) = pair();
        peer.write_all(b"{}\n").unwrap();
        assert_eq!(c.fill(0), Fill::Drained);
        assert!(c.has_line() && !c.closing);

        // An unfinished line past the allowance, and no room: refused,
        // with an answer.
        let (mut c, mut peer) = pair();
        peer.write_all(&vec![b'x'; ALLOWANCE + CHUNK]).unwrap();
        assert_eq!(c.fill(usize::MAX), Fill::Drained);
        peer.write_all(b"more").unwrap();
        assert_eq!(c.fill(CHUNK - 1), Fill::Refused);
        assert!(c.closing && c.held_in() == 0 && c.pending_out() > 0);
        c.flush();
        drop(c);
        let mut answer = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(peer), &mut answer).unwrap();
        assert!(answer.contains("control buffers are full"), "{answer}");

        // With a complete line waiting, no room means a pause, not a
        // refusal.
        let (mut c, mut peer) = pair();
        peer.write_all(b"{}\n").unwrap();
        peer.write_all(&vec![b'x'; ALLOWANCE + CHUNK]).unwrap();
        assert_eq!(c.fill(usize::MAX), Fill::Drained);
        peer.write_all(b"more").unwrap();
        assert_eq!(c.fill(0), Fill::Paused);
        assert!(!c.closing);
    }
}
