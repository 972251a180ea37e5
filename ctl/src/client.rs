//! A blocking client for the control socket.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proto::{Command, PROTOCOL_VERSION, Reply, Request, Response};
use crate::service::CtEntry;

/// Why a request could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to vswitchd at {path}: {source} ({})",
        connect_hint(source)
    )]
    Connect { path: PathBuf, source: io::Error },
    #[error("control socket I/O failed: {0}")]
    Io(#[from] io::Error),
    #[error("vswitchd closed the connection without answering")]
    Closed,
    #[error("malformed response from vswitchd: {0}")]
    Malformed(String),
    #[error("vswitchd speaks protocol version {0}, this client speaks {PROTOCOL_VERSION}")]
    Version(u32),
    /// The daemon refused the request; the message is the daemon's.
    #[error("{0}")]
    Refused(String),
}

/// What to check when the socket cannot be reached.
fn connect_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            "only root and the members of vswitchd's --socket-group may use it"
        }
        _ => "is vswitchd running?",
    }
}

/// A connection to vswitchd.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects to the daemon's control socket.
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let writer = stream.try_clone()?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends one command and waits for its reply.
    pub fn call(&mut self, command: Command) -> Result<Reply, ClientError> {
        let mut line = serde_json::to_string(&Request::new(command))
            .map_err(|e| ClientError::Malformed(e.to_string()))?;
        line.push('\n');
        self.send(line.as_bytes())?;
        let resp = self.raw_line()?;
        let resp: Response =
            serde_json::from_str(&resp).map_err(|e| ClientError::Malformed(e.to_string()))?;
        if resp.version != PROTOCOL_VERSION {
            return Err(ClientError::Version(resp.version));
        }
        match (resp.ok, resp.reply, resp.error) {
            (true, Some(reply), _) => Ok(reply),
            (true, None, _) => Ok(Reply::Done),
            (false, _, Some(e)) => Err(ClientError::Refused(e)),
            (false, _, None) => Err(ClientError::Refused("request failed".into())),
        }
    }

    /// Every tracked connection, asked for a page at a time.
    pub fn conntrack(&mut self) -> Result<Vec<CtEntry>, ClientError> {
        let mut all = Vec::new();
        let (mut after, mut last) = (None, None::<String>);
        loop {
            let reply = self.call(Command::CtList {
                after: after.take(),
                limit: None,
            })?;
            let Reply::CtPage(page) = reply else {
                return Err(ClientError::Malformed(format!(
                    "expected a conntrack page, got {reply:?}"
                )));
            };
            all.extend(page.entries);
            match page.next {
                // Cursors are fixed-width hex: each must sort after the last.
                Some(next) if last.as_ref().is_none_or(|l| next > *l) => {
                    last = Some(next.clone());
                    after = Some(next);
                }
                Some(next) => {
                    return Err(ClientError::Malformed(format!(
                        "ct list cursor {next} does not advance"
                    )));
                }
                None => return Ok(all),
            }
        }
    }

    /// Sends a raw line (for tests of malformed input) and returns the raw response line.
    pub fn call_raw(&mut self, line: &str) -> Result<String, ClientError> {
        let mut line = line.to_string();
        if !line.ends_with('\n') {
            line.push('\n');
        }
        self.send(line.as_bytes())?;
        self.raw_line()
    }

    /// Writes a request. A daemon that refuses the connection (a peer it
    /// does not admit, too many connections) answers with one error line
    /// and closes: if the write fails because it closed, the answer is
    /// still there to be read.
    fn send(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        match self.writer.write_all(bytes) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                Ok(())
            }
            r => r.map_err(Into::into),
        }
    }

    fn raw_line(&mut self) -> Result<String, ClientError> {
        let mut resp = String::new();
        if self.reader.read_line(&mut resp)? == 0 {
            return Err(ClientError::Closed);
        }
        Ok(resp)
    }
}
