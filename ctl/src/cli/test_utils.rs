//! Helpers shared by the unit tests of the command line: parsing arguments
//! as `vswitchctl` would, short constructors for addresses and Services.

use std::net::{IpAddr, SocketAddr};

use clap::Parser;
use ipnet::IpNet;

use super::{Cli, EXIT_USAGE, Failure, usage_line};
use crate::{Command, RouteSpec, ServiceKey};

pub(super) fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("vswitchctl").chain(args.iter().copied()))
}

pub(super) fn command(args: &[&str]) -> Result<Command, Failure> {
    parse(args).expect("arguments parse").command.to_command()
}

/// The one-line message a usage error prints, from clap or from our own checks.
pub(super) fn usage_error(args: &[&str]) -> String {
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

pub(super) fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(super) fn static_route(prefix: &str) -> RouteSpec {
    RouteSpec {
        owner: None,
        prefix: net(prefix),
        via: None,
        dev: None,
        encap: None,
        may_exist: false,
    }
}

pub(super) fn key(s: &str) -> ServiceKey {
    s.parse().unwrap()
}

pub(super) fn ep(s: &str) -> SocketAddr {
    s.parse().unwrap()
}
