//! The command line of vswitchctl as a library: the clap definition
//! ([`Cli`], [`Cmd`]), each command's conversion to exactly one
//! [`Command`], and the parser of `batch` input. The binary runs what this
//! parses; the fuzz target `batch` feeds arbitrary `batch` input to
//! [`BatchParser`] as a user's file would reach it.
//!
//! Code map: this file holds the top level; `port` the port and fdb nouns,
//! `route` the addr, route and neigh nouns, `service` the Service and
//! connection tracking nouns, `trace` the arguments of `trace` and
//! `capture`, `batch` the lines of a `batch` input.
//!
//! Clap checks what it can express (value syntax, ranges, conflicts); the
//! `to_command`/`to_spec` methods check the remaining combinations and
//! report them as [`Failure::Usage`], before anything is sent.

mod batch;
mod port;
mod route;
mod service;
#[cfg(test)]
mod test_utils;
#[cfg(test)]
mod tests;
mod trace;

use std::path::PathBuf;

use clap::builder::NonEmptyStringValueParser;
use clap::error::ErrorKind;
use clap::{Parser, Subcommand, ValueEnum};

pub use self::batch::{BatchParser, batch_commands, read_batch};
pub use self::port::{FdbCmd, PortAddArgs, PortCmd};
pub use self::route::{AddrCmd, NeighCmd, RouteAddArgs, RouteCmd};
pub use self::service::{CtCmd, ServiceAddArgs, ServiceCmd};
pub use self::trace::{CaptureArgs, Dir, InjectArgs, LiveArgs, TraceCmd};
use crate::Command;

/// Exit code of a request that failed.
pub const EXIT_REQUEST_FAILED: u8 = 1;
/// Exit code of bad arguments (clap uses the same for its own errors).
pub const EXIT_USAGE: u8 = 2;

/// Why an invocation failed; each maps to an exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// The arguments make no sense; nothing was sent.
    Usage(String),
    /// The request could not be completed.
    Request(String),
}

impl Failure {
    /// The process exit code of this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => EXIT_USAGE,
            Failure::Request(_) => EXIT_REQUEST_FAILED,
        }
    }

    /// The message, as given.
    pub fn message(&self) -> &str {
        match self {
            Failure::Usage(m) | Failure::Request(m) => m,
        }
    }
}

/// Control the vswitch daemon (vswitchd).
#[derive(Debug, Parser)]
#[command(name = "vswitchctl", version)]
pub struct Cli {
    /// Path of vswitchd's control socket.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "VSWITCH_SOCKET",
        default_value = crate::DEFAULT_SOCKET
    )]
    pub socket: PathBuf,

    /// Output format: aligned text tables, or the reply's JSON payload.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Text)]
    pub output: Format,

    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Overview: daemon, workers, ports and FDB summary.
    Show,
    /// Add, remove or list ports.
    #[command(subcommand)]
    Port(PortCmd),
    /// Show or change the forwarding database.
    #[command(subcommand)]
    Fdb(FdbCmd),
    /// Packet and drop counters of every port, or of one.
    Stats {
        /// Only this port.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        port: Option<String>,
    },
    /// Add, remove or list the switch's own router (gateway) addresses.
    #[command(subcommand)]
    Addr(AddrCmd),
    /// Add, remove or list routes.
    #[command(subcommand)]
    Route(RouteCmd),
    /// Show the neighbour (ARP/ND) table.
    #[command(subcommand)]
    Neigh(NeighCmd),
    /// Add, change, remove or list Services (load-balanced VIPs).
    ///
    /// A Service is a VIP:PORT/PROTO, such as 10.96.0.10:80/tcp, whose new
    /// connections the switch spreads over backend endpoints (IP:PORT),
    /// translating addresses and tracking each connection.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Show or flush the connection tracking table of Service traffic.
    #[command(subcommand)]
    Ct(CtCmd),
    /// Follow a packet through the switch's stages: a made-up one
    /// (inject) or the next real ones (live).
    #[command(subcommand)]
    Trace(TraceCmd),
    Capture(CaptureArgs),
    /// Apply many Service commands at once, all or nothing.
    ///
    /// Each line of FILE (or of standard input, with '-' or no FILE) is a
    /// vswitchctl command without the program name, such as
    /// `service add 10.96.0.10:80/tcp --backend 10.244.1.5:8080`. Only
    /// `service add`, `service backends` and `service del` may appear; blank
    /// lines and lines starting with '#' are skipped. The whole file is
    /// checked before anything is sent, and the daemon applies it as one
    /// change.
    Batch {
        /// The commands, one per line; '-' or none reads standard input.
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Print a shell completion script (asks nothing of vswitchd).
    ///
    /// For example `vswitchctl completion bash >
    /// /usr/share/bash-completion/completions/vswitchctl`
    /// (scripts/install.sh installs them).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print vswitchctl's manual page (roff), or write it and one page per
    /// command (vswitchctl-port-add.8, ...) into DIR, as scripts/install.sh
    /// installs them.
    #[command(hide = true)]
    Man {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

impl Cmd {
    /// The protocol command for these arguments, or a usage error for
    /// combinations clap cannot express.
    pub fn to_command(&self) -> Result<Command, Failure> {
        Ok(match self {
            Cmd::Show => Command::Show,
            Cmd::Port(PortCmd::Add(args)) => Command::PortAdd(args.to_spec()?),
            Cmd::Port(PortCmd::Del { name, if_exists }) => Command::PortDel {
                name: name.clone(),
                if_exists: *if_exists,
            },
            Cmd::Port(PortCmd::List) => Command::PortList,
            Cmd::Fdb(FdbCmd::Show) => Command::FdbShow,
            Cmd::Fdb(FdbCmd::Add { mac, port }) => Command::FdbAdd {
                mac: *mac,
                port: port.clone(),
            },
            Cmd::Fdb(FdbCmd::Del { mac }) => Command::FdbDel { mac: *mac },
            Cmd::Fdb(FdbCmd::Flush) => Command::FdbFlush,
            Cmd::Stats { port } => Command::Stats { port: port.clone() },
            Cmd::Addr(AddrCmd::Add { addr, may_exist }) => Command::AddrAdd {
                owner: None,
                addr: *addr,
                may_exist: *may_exist,
            },
            Cmd::Addr(AddrCmd::Del { addr, if_exists }) => Command::AddrDel {
                addr: *addr,
                if_exists: *if_exists,
            },
            Cmd::Addr(AddrCmd::List) => Command::AddrList,
            Cmd::Route(RouteCmd::Add(args)) => Command::RouteAdd(args.to_spec()?),
            Cmd::Route(RouteCmd::Del { prefix, if_exists }) => Command::RouteDel {
                prefix: *prefix,
                if_exists: *if_exists,
            },
            Cmd::Route(RouteCmd::List) => Command::RouteList,
            Cmd::Neigh(NeighCmd::List) => Command::NeighList,
            Cmd::Service(cmd) => cmd.to_command()?,
            Cmd::Ct(cmd) => cmd.to_command(),
            Cmd::Batch { file } => Command::Batch {
                commands: batch_commands(&read_batch(file.as_deref())?)?,
            },
            Cmd::Trace(TraceCmd::Inject(args)) => args.to_command()?,
            Cmd::Trace(TraceCmd::Live(_)) | Cmd::Capture(_) => {
                return Err(Failure::Usage(
                    "'trace live' and 'capture' are many requests, not one".into(),
                ));
            }
            Cmd::Completion { .. } | Cmd::Man { .. } => {
                return Err(Failure::Usage(
                    "'completion' and 'man' print text; they are not requests".into(),
                ));
            }
        })
    }
}

/// A clap error as one line: its message and tips, without the usage block.
pub fn usage_line(err: &clap::Error) -> String {
    let text = err.render().to_string();
    if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // Clap would print the whole help; one line naming the usage is enough.
        let usage = text
            .lines()
            .find_map(|l| l.strip_prefix("Usage: "))
            .unwrap_or("vswitchctl");
        return format!("incomplete command, usage: {} (see '--help')", usage.trim());
    }
    let text = text.split("\nUsage:").next().unwrap_or_default();
    let text = text
        .split("\nFor more information")
        .next()
        .unwrap_or_default();
    let text = text.trim_start().strip_prefix("error:").unwrap_or(text);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    format!("{line} (see '--help')")
}
