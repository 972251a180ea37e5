//! Helpers shared by the unit tests of every module: parsing arguments as
//! `vswitchctl` would, short constructors for addresses and Services, and a
//! one-shot fake vswitchd.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::thread;

use clap::Parser;
use ctl::{Command, Request, Response, RouteSpec, ServiceKey};
use ipnet::IpNet;

use crate::cli::Cli;
use crate::{EXIT_USAGE, Failure, usage_line};

pub(crate) fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("vswitchctl").chain(args.iter().copied()))
}

pub(crate) fn command(args: &[&str]) -> Result<Command, Failure> {
    parse(args).expect("arguments parse").command.to_command()
}

/// The one-line message a usage error prints, from clap or from our own checks.
pub(crate) fn usage_error(args: &[&str]) -> String {
    match parse(args) {
        Err(e) => {
            assert_eq!(e.exit_code(), i32::from(EXIT_USAGE), "{args:?}");
            usage_line(&e)
        }
        Ok(cli) => match cli.command.to_command() {
            Err(Failure::Usage(m)) => m,
            other => panic!("{args:?} must be a usage error, got {other:?}"),
        },
    }
}

pub(crate) fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(crate) fn static_route(prefix: &str) -> RouteSpec {
    RouteSpec {
        prefix: net(prefix),
        via: None,
        dev: None,
        encap: None,
        may_exist: false,
    }
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

pub(crate) fn key(s: &str) -> ServiceKey {
    s.parse().unwrap()
}

pub(crate) fn ep(s: &str) -> SocketAddr {
    s.parse().unwrap()
}
