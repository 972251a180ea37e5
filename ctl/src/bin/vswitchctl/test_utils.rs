//! Helpers of the binary's unit tests: parsing arguments as `vswitchctl`
//! would and a one-shot fake vswitchd.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::thread;

use clap::Parser;
use ctl::cli::Cli;
use ctl::{Request, Response};

pub(crate) fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("vswitchctl").chain(args.iter().copied()))
}

/// A one-shot fake vswitchd: answers the first request with `response`
/// and hands back the request it received.
pub(crate) fn fake_daemon(
    name: &str,
    response: Response,
) -> (PathBuf, thread::JoinHandle<Request>) {
    let path = std::env::temp_dir().join(format!("vswitchctl-{}-{name}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind fake socket");
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        reader.read_line(&mut line).expect("read request");
        let mut w = stream;
        let mut out = serde_json::to_string(&response).expect("encode");
        out.push('\n');
        w.write_all(out.as_bytes()).expect("write response");
        serde_json::from_str(&line).expect("request is valid protocol")
    });
    (path, handle)
}
