//! The Service and connection tracking nouns (`service`, `ct`): their clap
//! definitions, value parsers and conversion to a [`Command`].
//!
//! Invariant: every endpoint of a Service is in the VIP's address family and
//! appears once, ready or terminating ([`check_backends`]), whichever command
//! (`service add`, `service backends`, or either in a `batch`) carries it.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use clap::{Args, Subcommand, ValueEnum};

use super::Failure;
use crate::{Command, DEFAULT_AFFINITY_TIMEOUT, ServiceKey, ServiceSpec, parse_endpoint};

/// The longest ClientIP affinity timeout in seconds (one day, as kube-proxy
/// allows).
const AFFINITY_TIMEOUT_MAX: i64 = 86_400;

#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// Add a Service: `service add 10.96.0.10:80/tcp --backend 10.244.1.5:8080`.
    Add(ServiceAddArgs),
    /// Replace the endpoints of a Service.
    ///
    /// The IP:PORTs given are ready: new connections are spread over them.
    /// --terminating ones keep their connections but get new ones only while
    /// no endpoint is ready. No endpoint at all leaves the Service without
    /// backends.
    Backends {
        /// The Service, such as 10.96.0.10:80/tcp or [fd00::10]:53/udp.
        #[arg(value_name = "VIP:PORT/PROTO", value_parser = service_key)]
        service: ServiceKey,
        /// Ready endpoints.
        #[arg(value_name = "IP:PORT", value_parser = parse_endpoint)]
        backends: Vec<SocketAddr>,
        /// A terminating endpoint (repeat for each).
        #[arg(long = "terminating", value_name = "IP:PORT", value_parser = parse_endpoint)]
        terminating: Vec<SocketAddr>,
    },
    /// Remove a Service; its tracked connections are forgotten.
    Del {
        #[arg(value_name = "VIP:PORT/PROTO", value_parser = service_key)]
        service: ServiceKey,
        /// Succeed when the Service does not exist.
        #[arg(long)]
        if_exists: bool,
    },
    /// List Services with their endpoints and the connections each holds.
    List,
}

#[derive(Debug, Args)]
pub struct ServiceAddArgs {
    /// The Service: VIP, port and protocol (tcp, udp or sctp), such as
    /// 10.96.0.10:80/tcp or [fd00::10]:53/udp.
    #[arg(value_name = "VIP:PORT/PROTO", value_parser = service_key)]
    service: ServiceKey,

    /// A ready endpoint, in the VIP's address family (repeat for each).
    #[arg(long = "backend", value_name = "IP:PORT", value_parser = parse_endpoint)]
    backends: Vec<SocketAddr>,

    /// A terminating endpoint: keeps its connections, gets new ones only
    /// while no endpoint is ready (repeat for each).
    #[arg(long = "terminating", value_name = "IP:PORT", value_parser = parse_endpoint)]
    terminating: Vec<SocketAddr>,

    /// Session affinity: client-ip sends every connection of a client to
    /// the same endpoint [default: none; client-ip times out after 10800 s].
    #[arg(long, value_name = "TYPE", value_enum)]
    affinity: Option<CliAffinity>,

    /// Seconds a client stays with its endpoint after its last connection
    /// (1-86400); implies --affinity client-ip.
    #[arg(
        long,
        value_name = "SECS",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..=AFFINITY_TIMEOUT_MAX)
    )]
    affinity_timeout: Option<u32>,

    /// Also serve the Service on this port of the node's uplink addresses,
    /// from outside the node (1-65535).
    #[arg(
        long,
        value_name = "PORT",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    node_port: Option<u16>,

    /// Succeed when the Service already exists with the same settings.
    #[arg(long)]
    may_exist: bool,
}

#[derive(Debug, Subcommand)]
pub enum CtCmd {
    /// List tracked connections: the client's view and the backend's.
    List,
    /// Forget every tracked connection and affinity entry.
    Flush,
    /// Counters of the connection tracking table.
    Stats,
}

/// Session affinity of a Service as a command-line value. The aliases are
/// Kubernetes' spellings (`sessionAffinity: ClientIP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CliAffinity {
    #[value(alias = "None")]
    None,
    #[value(alias = "ClientIP")]
    ClientIp,
}

impl ServiceCmd {
    /// The protocol command for these arguments, or a usage error for
    /// combinations clap cannot express.
    pub fn to_command(&self) -> Result<Command, Failure> {
        Ok(match self {
            ServiceCmd::Add(args) => Command::ServiceAdd(args.to_spec()?),
            ServiceCmd::Backends {
                service,
                backends,
                terminating,
            } => {
                check_backends(service, backends, terminating)?;
                Command::ServiceBackends {
                    service: *service,
                    backends: backends.clone(),
                    terminating: terminating.clone(),
                }
            }
            ServiceCmd::Del { service, if_exists } => Command::ServiceDel {
                service: *service,
                if_exists: *if_exists,
            },
            ServiceCmd::List => Command::ServiceList,
        })
    }
}

impl CtCmd {
    /// The protocol command for these arguments.
    pub fn to_command(&self) -> Command {
        match self {
            CtCmd::List => Command::CtList {
                after: None,
                limit: None,
            },
            CtCmd::Flush => Command::CtFlush,
            CtCmd::Stats => Command::CtStats,
        }
    }
}

impl ServiceAddArgs {
    fn to_spec(&self) -> Result<ServiceSpec, Failure> {
        check_backends(&self.service, &self.backends, &self.terminating)?;
        let affinity_timeout = match (self.affinity, self.affinity_timeout) {
            (Some(CliAffinity::None), Some(_)) => {
                return Err(Failure::Usage(
                    "--affinity-timeout cannot be used with --affinity none".to_string(),
                ));
            }
            (None | Some(CliAffinity::None), None) => None,
            (Some(CliAffinity::ClientIp), None) => Some(DEFAULT_AFFINITY_TIMEOUT),
            (None | Some(CliAffinity::ClientIp), Some(secs)) => Some(secs),
        };
        Ok(ServiceSpec {
            owner: None,
            service: self.service,
            backends: self.backends.clone(),
            terminating: self.terminating.clone(),
            affinity_timeout,
            node_port: self.node_port,
            may_exist: self.may_exist,
        })
    }
}

/// Checks the endpoints of a Service: each in the VIP's address family (the
/// switch translates addresses, not families) and each given once, since an
/// endpoint cannot be both ready and terminating.
fn check_backends(
    service: &ServiceKey,
    ready: &[SocketAddr],
    terminating: &[SocketAddr],
) -> Result<(), Failure> {
    let family = |ip: IpAddr| if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    let mut seen = HashSet::with_capacity(ready.len() + terminating.len());
    for backend in ready.iter().chain(terminating) {
        if backend.is_ipv4() != service.vip.is_ipv4() {
            return Err(Failure::Usage(format!(
                "backend {backend} is {} but the VIP of {service} is {}",
                family(backend.ip()),
                family(service.vip)
            )));
        }
        if !seen.insert(backend) {
            return Err(Failure::Usage(format!("backend {backend} listed twice")));
        }
    }
    Ok(())
}

/// Parses a Service `VIP:PORT/PROTO`. Clap's message already names the
/// value, so the same words from [`ServiceKey::from_str`] are left out.
fn service_key(s: &str) -> Result<ServiceKey, String> {
    s.parse().map_err(|e: String| {
        e.strip_prefix(&format!("invalid Service '{s}': "))
            .map_or_else(|| e.clone(), str::to_string)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::test_utils::{command, ep, key, usage_error};

    #[test]
    fn service_and_ct_subcommands_map_to_one_command() {
        let web = key("10.96.0.10:80/tcp");
        let cases: Vec<(Vec<&str>, Command)> = vec![
            (
                vec!["service", "add", "10.96.0.10:80/tcp"],
                Command::ServiceAdd(ServiceSpec::new(web, vec![])),
            ),
            (
                vec![
                    "service",
                    "add",
                    "10.96.0.10:80/TCP",
                    "--backend",
                    "10.244.1.5:8080",
                    "--backend",
                    "10.244.2.7:8080",
                    "--terminating",
                    "10.244.3.9:8080",
                    "--affinity",
                    "client-ip",
                    "--node-port",
                    "30080",
                    "--may-exist",
                ],
                Command::ServiceAdd(ServiceSpec {
                    terminating: vec![ep("10.244.3.9:8080")],
                    affinity_timeout: Some(DEFAULT_AFFINITY_TIMEOUT),
                    node_port: Some(30_080),
                    may_exist: true,
                    ..ServiceSpec::new(web, vec![ep("10.244.1.5:8080"), ep("10.244.2.7:8080")])
                }),
            ),
            (
                vec![
                    "service",
                    "add",
                    "[fd00::10]:53/udp",
                    "--backend",
                    "[fd00:10:244:1::5]:5353",
                ],
                Command::ServiceAdd(ServiceSpec::new(
                    key("[fd00::10]:53/udp"),
                    vec![ep("[fd00:10:244:1::5]:5353")],
                )),
            ),
            (
                vec![
                    "service",
                    "backends",
                    "10.96.0.10:80/tcp",
                    "10.244.1.5:8080",
                    "10.244.2.7:8080",
                    "--terminating",
                    "10.244.3.9:8080",
                ],
                Command::ServiceBackends {
                    service: web,
                    backends: vec![ep("10.244.1.5:8080"), ep("10.244.2.7:8080")],
                    terminating: vec![ep("10.244.3.9:8080")],
                },
            ),
            (
                // No endpoint at all: the Service keeps its VIP, without backends.
                vec!["service", "backends", "10.96.0.10:80/tcp"],
                Command::ServiceBackends {
                    service: web,
                    backends: vec![],
                    terminating: vec![],
                },
            ),
            (
                vec!["service", "del", "10.96.0.10:80/tcp"],
                Command::ServiceDel {
                    service: web,
                    if_exists: false,
                },
            ),
            (
                vec!["service", "del", "10.96.0.10:80/tcp", "--if-exists"],
                Command::ServiceDel {
                    service: web,
                    if_exists: true,
                },
            ),
            (vec!["service", "list"], Command::ServiceList),
            (
                vec!["ct", "list"],
                Command::CtList {
                    after: None,
                    limit: None,
                },
            ),
            (vec!["ct", "flush"], Command::CtFlush),
            (vec!["ct", "stats"], Command::CtStats),
        ];
        for (args, want) in cases {
            assert_eq!(command(&args), Ok(want), "{args:?}");
        }
    }

    #[test]
    fn service_affinity_options() {
        let affinity = |extra: &[&str]| {
            let args: Vec<&str> = ["service", "add", "10.96.0.10:80/tcp"]
                .iter()
                .chain(extra)
                .copied()
                .collect();
            match command(&args) {
                Ok(Command::ServiceAdd(spec)) => spec.affinity_timeout,
                other => panic!("{args:?}: {other:?}"),
            }
        };
        assert_eq!(affinity(&[]), None);
        assert_eq!(affinity(&["--affinity", "none"]), None);
        assert_eq!(affinity(&["--affinity", "None"]), None);
        assert_eq!(affinity(&["--affinity", "client-ip"]), Some(10_800));
        assert_eq!(affinity(&["--affinity", "ClientIP"]), Some(10_800));
        assert_eq!(affinity(&["--affinity-timeout", "60"]), Some(60));
        assert_eq!(
            affinity(&["--affinity", "client-ip", "--affinity-timeout", "86400"]),
            Some(86_400)
        );
        assert_eq!(affinity(&["--affinity-timeout", "1"]), Some(1));
    }

    #[test]
    fn service_usage_errors() {
        let add = ["service", "add", "10.96.0.10:80/tcp"];
        for (extra, needle) in [
            (&["--affinity-timeout", "0"][..], "0 is not in 1..=86400"),
            (
                &["--affinity-timeout", "86401"][..],
                "86401 is not in 1..=86400",
            ),
            (&["--affinity-timeout", "-5"][..], "-5 is not in 1..=86400"),
            (
                &["--affinity", "none", "--affinity-timeout", "60"][..],
                "--affinity-timeout cannot be used with --affinity none",
            ),
            (
                &["--affinity", "sticky"][..],
                "[possible values: none, client-ip]",
            ),
            (&["--node-port", "0"][..], "0 is not in 1..=65535"),
            (&["--node-port", "65536"][..], "65536 is not in 1..=65535"),
            (
                &["--backend", "10.244.1.5"][..],
                "invalid value '10.244.1.5' for '--backend <IP:PORT>': '10.244.1.5' is not IP:PORT",
            ),
            (&["--backend", "10.244.1.5:0"][..], "port 0 is not allowed"),
            (
                &["--backend", "10.244.1.5:80", "--backend", "10.244.1.5:80"][..],
                "backend 10.244.1.5:80 listed twice",
            ),
            (
                &[
                    "--backend",
                    "10.244.1.5:80",
                    "--terminating",
                    "10.244.1.5:80",
                ][..],
                "backend 10.244.1.5:80 listed twice",
            ),
            (
                &["--terminating", "[fd00::5]:80"][..],
                "backend [fd00::5]:80 is IPv6 but the VIP of 10.96.0.10:80/tcp is IPv4",
            ),
        ] {
            let args: Vec<&str> = add.iter().chain(extra).copied().collect();
            let line = usage_error(&args);
            assert!(line.contains(needle), "{args:?}: {line}");
        }
        for (args, needle) in [
            (
                &["service", "add", "10.96.0.10:80"][..],
                "invalid value '10.96.0.10:80' for '<VIP:PORT/PROTO>': expected VIP:PORT/PROTO",
            ),
            (
                &["service", "add", "10.96.0.10:80/icmp"][..],
                "expected tcp, udp or sctp",
            ),
            (&["service", "del", "0.0.0.0:80/tcp"][..], "not a unicast"),
            (
                &["service", "backends", "10.96.0.10:80/tcp", "pod1"][..],
                "'pod1' is not IP:PORT",
            ),
            (
                &[
                    "service",
                    "backends",
                    "[fd00::10]:80/tcp",
                    "[fd00::5]:80",
                    "10.244.1.5:80",
                ][..],
                "backend 10.244.1.5:80 is IPv4 but the VIP of [fd00::10]:80/tcp is IPv6",
            ),
            (
                &[
                    "service",
                    "backends",
                    "10.96.0.10:80/tcp",
                    "--terminating",
                    "10.244.1.5:80",
                    "10.244.1.5:80",
                ][..],
                "backend 10.244.1.5:80 listed twice",
            ),
            (&["service", "list", "extra"][..], "unexpected argument"),
            (&["ct", "drop"][..], "unrecognized subcommand 'drop'"),
            (&["ct"][..], "incomplete command, usage: vswitchctl ct "),
        ] {
            let line = usage_error(args);
            assert!(line.contains(needle), "{args:?}: {line}");
            assert!(!line.contains('\n'), "{line:?}");
        }
    }
}
