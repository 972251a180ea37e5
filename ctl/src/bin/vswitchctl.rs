//! `vswitchctl`: the command-line client of vswitchd.
//!
//! Each invocation parses its arguments into exactly one [`ctl::Command`],
//! sends it over the control socket, and prints the reply as aligned text
//! tables or, with `-o json`, as the reply's payload in its serde shape.
//! `batch` is no exception: it parses every line of its input with the same
//! clap definition and sends them all as one [`ctl::Command::Batch`].
//!
//! Contract with users and scripts: on success the output goes to stdout and
//! the exit code is 0. Any failure prints exactly one line,
//! `vswitchctl: <message>`, on stderr and exits with 2 for a usage error
//! (caught before connecting) or 1 for a request that failed (no daemon,
//! refused, broken reply).

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use clap::builder::NonEmptyStringValueParser;
use clap::error::ErrorKind;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use ctl::output::{self, one_line};
use ctl::{
    Client, Command, DEFAULT_AFFINITY_TIMEOUT, Encap, MacAddr, PortSpec, PortType, Reply,
    RouteSpec, ServiceKey, ServiceSpec, XdpMode, parse_endpoint,
};
use ipnet::{IpNet, Ipv4Net};

/// Exit code of a request that failed.
const EXIT_REQUEST_FAILED: u8 = 1;
/// Exit code of bad arguments (clap uses the same for its own errors).
const EXIT_USAGE: u8 = 2;
/// The largest VXLAN network identifier (24 bits); 0 is not used.
const VNI_MAX: i64 = 0xff_ffff;
/// The longest ClientIP affinity timeout in seconds (one day, as kube-proxy
/// allows).
const AFFINITY_TIMEOUT_MAX: i64 = 86_400;

/// Control the vswitch daemon (vswitchd).
#[derive(Debug, Parser)]
#[command(name = "vswitchctl", version)]
struct Cli {
    /// Path of vswitchd's control socket.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "VSWITCH_SOCKET",
        default_value = ctl::DEFAULT_SOCKET
    )]
    socket: PathBuf,

    /// Output format: aligned text tables, or the reply's JSON payload.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Text)]
    output: Format,

    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Cmd {
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
}

#[derive(Debug, Subcommand)]
enum PortCmd {
    /// Attach an interface (AF_XDP) or create a TAP device.
    Add(PortAddArgs),
    /// Remove a port.
    Del {
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        name: String,
        /// Succeed when the port does not exist.
        #[arg(long)]
        if_exists: bool,
    },
    /// List ports.
    List,
}

#[derive(Debug, Args)]
struct PortAddArgs {
    /// Port name: the interface to attach (afxdp) or the TAP device to create (tap).
    #[arg(value_parser = NonEmptyStringValueParser::new())]
    name: String,

    /// Kind of port.
    #[arg(long = "type", value_name = "TYPE", value_enum, default_value_t = CliPortType::Afxdp)]
    port_type: CliPortType,

    /// XDP attach mode (afxdp only) [default: auto].
    #[arg(long, value_enum)]
    mode: Option<CliXdpMode>,

    /// MAC address of the TAP device (tap only).
    #[arg(long)]
    mac: Option<MacAddr>,

    /// Network namespace to move the TAP device into (tap only): a name
    /// under /run/netns or a path such as /proc/PID/ns/net.
    #[arg(long, value_name = "NS", value_parser = NonEmptyStringValueParser::new())]
    netns: Option<String>,

    /// Name of the TAP device inside --netns (tap only).
    #[arg(long, value_name = "IF", requires = "netns", value_parser = NonEmptyStringValueParser::new())]
    ifname: Option<String>,

    /// An address of the pod behind this port, without a prefix length
    /// (IPv4 or IPv6; repeat for each). The switch routes it to the port and
    /// drops frames from the port with any other source address.
    #[arg(long = "ip", value_name = "ADDR", value_parser = pod_ip)]
    ips: Vec<IpAddr>,

    /// The node's uplink NIC (routed, not part of the pod bridge).
    #[arg(long, conflicts_with = "host")]
    uplink: bool,

    /// A port in the node's own namespace: the kernel's leg into the pod
    /// network (routed, not part of the pod bridge).
    #[arg(long)]
    host: bool,

    /// Succeed when a port of this name already exists with the same settings.
    #[arg(long)]
    may_exist: bool,
}

#[derive(Debug, Subcommand)]
enum FdbCmd {
    /// List static and learned entries.
    Show,
    /// Add a static entry: frames to MAC go out on PORT.
    Add {
        mac: MacAddr,
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        port: String,
    },
    /// Remove an entry.
    Del { mac: MacAddr },
    /// Remove entries from the forwarding database.
    Flush,
}

#[derive(Debug, Subcommand)]
enum AddrCmd {
    /// Give the switch a router address. ADDR/PREFIX keeps its host bits:
    /// 10.244.1.1/24 is the address 10.244.1.1 on the subnet 10.244.1.0/24,
    /// which becomes a connected route.
    Add {
        #[arg(value_name = "ADDR/PREFIX", value_parser = router_addr)]
        addr: IpNet,
        /// Succeed when the address already exists.
        #[arg(long)]
        may_exist: bool,
    },
    /// Remove a router address and its connected route.
    Del {
        #[arg(value_name = "ADDR/PREFIX", value_parser = router_addr)]
        addr: IpNet,
        /// Succeed when the address does not exist.
        #[arg(long)]
        if_exists: bool,
    },
    /// List router addresses.
    List,
}

#[derive(Debug, Subcommand)]
enum RouteCmd {
    /// Add a static route: `route add 10.244.2.0/24 via 192.168.50.2`
    /// or `route add 10.244.9.0/24 dev uplink0`.
    Add(RouteAddArgs),
    /// Remove a static route.
    Del {
        /// Destination prefix, or `default` for 0.0.0.0/0.
        #[arg(value_name = "CIDR", value_parser = route_prefix)]
        prefix: IpNet,
        /// Succeed when the route does not exist.
        #[arg(long)]
        if_exists: bool,
    },
    /// List every route the switch uses, static or not.
    List,
}

#[derive(Debug, Args)]
struct RouteAddArgs {
    /// Destination prefix with host bits zero, or `default` for 0.0.0.0/0.
    #[arg(value_name = "CIDR", value_parser = route_prefix)]
    prefix: IpNet,

    /// Where the traffic goes, as in `ip route`: `via NEXTHOP` (an address
    /// in a connected subnet) or `dev PORT` (directly on that port's link).
    #[arg(value_name = "via NEXTHOP | dev PORT", num_args = 0..)]
    target: Vec<String>,

    /// Encapsulate towards the next hop.
    #[arg(long, value_name = "TYPE", value_enum)]
    encap: Option<CliEncap>,

    /// VXLAN network identifier (1-16777215), with --encap vxlan.
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..=VNI_MAX)
    )]
    vni: Option<u32>,

    /// Succeed when the same route already exists.
    #[arg(long)]
    may_exist: bool,
}

#[derive(Debug, Subcommand)]
enum NeighCmd {
    /// List learned and configured neighbours.
    List,
}

#[derive(Debug, Subcommand)]
enum ServiceCmd {
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
struct ServiceAddArgs {
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
enum CtCmd {
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

/// One line of a `batch` input: a command without the program name and
/// without the global options, parsed with the same [`Cmd`] definition.
#[derive(Debug, Parser)]
#[command(name = "vswitchctl", no_binary_name = true)]
struct BatchLine {
    #[command(subcommand)]
    command: Cmd,
}

/// [`Encap`] types as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CliEncap {
    Vxlan,
}

/// [`PortType`] as a command-line value. The protocol crate keeps no clap
/// derives, so the CLI mirrors its enums here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CliPortType {
    Afxdp,
    Tap,
}

impl From<CliPortType> for PortType {
    fn from(t: CliPortType) -> Self {
        match t {
            CliPortType::Afxdp => PortType::Afxdp,
            CliPortType::Tap => PortType::Tap,
        }
    }
}

/// [`XdpMode`] as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CliXdpMode {
    Auto,
    Native,
    Generic,
    Zerocopy,
}

impl From<CliXdpMode> for XdpMode {
    fn from(m: CliXdpMode) -> Self {
        match m {
            CliXdpMode::Auto => XdpMode::Auto,
            CliXdpMode::Native => XdpMode::Native,
            CliXdpMode::Generic => XdpMode::Generic,
            CliXdpMode::Zerocopy => XdpMode::Zerocopy,
        }
    }
}

/// Why an invocation failed; each maps to an exit code.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// The arguments make no sense; nothing was sent.
    Usage(String),
    /// The request could not be completed.
    Request(String),
}

impl Failure {
    fn report(&self) -> ExitCode {
        let (code, msg) = match self {
            Failure::Usage(m) => (EXIT_USAGE, m),
            Failure::Request(m) => (EXIT_REQUEST_FAILED, m),
        };
        eprintln!("vswitchctl: {}", one_line(msg));
        ExitCode::from(code)
    }
}

impl Cmd {
    /// The protocol command for these arguments, or a usage error for
    /// combinations clap cannot express.
    fn to_command(&self) -> Result<Command, Failure> {
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
            Cmd::Service(ServiceCmd::Add(args)) => Command::ServiceAdd(args.to_spec()?),
            Cmd::Service(ServiceCmd::Backends {
                service,
                backends,
                terminating,
            }) => {
                check_backends(service, backends, terminating)?;
                Command::ServiceBackends {
                    service: *service,
                    backends: backends.clone(),
                    terminating: terminating.clone(),
                }
            }
            Cmd::Service(ServiceCmd::Del { service, if_exists }) => Command::ServiceDel {
                service: *service,
                if_exists: *if_exists,
            },
            Cmd::Service(ServiceCmd::List) => Command::ServiceList,
            Cmd::Ct(CtCmd::List) => Command::CtList,
            Cmd::Ct(CtCmd::Flush) => Command::CtFlush,
            Cmd::Ct(CtCmd::Stats) => Command::CtStats,
            Cmd::Batch { file } => Command::Batch {
                commands: batch_commands(&read_batch(file.as_deref())?)?,
            },
        })
    }

    /// Whether this command may appear in a `batch`: the daemon applies a
    /// batch as one change to its Services, so only Service changes qualify.
    fn batchable(&self) -> bool {
        matches!(
            self,
            Cmd::Service(ServiceCmd::Add(_) | ServiceCmd::Backends { .. } | ServiceCmd::Del { .. })
        )
    }
}

impl PortAddArgs {
    fn to_spec(&self) -> Result<PortSpec, Failure> {
        match self.port_type {
            CliPortType::Afxdp => {
                // On an AF_XDP port, --mac declares the MAC of the pod
                // behind it (port security), which only makes sense with --ip.
                let tap_only = [
                    ("--mac", self.mac.is_some() && self.ips.is_empty()),
                    ("--netns", self.netns.is_some()),
                    ("--ifname", self.ifname.is_some()),
                ];
                if let Some((flag, _)) = tap_only.iter().find(|(_, given)| *given) {
                    return Err(Failure::Usage(format!(
                        "{flag} applies only to TAP ports; add --type tap"
                    )));
                }
            }
            CliPortType::Tap => {
                if self.mode.is_some() {
                    return Err(Failure::Usage(
                        "--mode applies only to AF_XDP ports (--type afxdp)".to_string(),
                    ));
                }
            }
        }
        Ok(PortSpec {
            name: self.name.clone(),
            port_type: self.port_type.into(),
            mode: self.mode.map(XdpMode::from).unwrap_or_default(),
            mac: self.mac,
            netns: self.netns.clone(),
            ifname: self.ifname.clone(),
            ips: self.ips.clone(),
            uplink: self.uplink,
            host: self.host,
            may_exist: self.may_exist,
        })
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

/// Reads the input of `batch`: FILE, or standard input for `-` or none.
fn read_batch(file: Option<&Path>) -> Result<String, Failure> {
    match file.filter(|p| *p != Path::new("-")) {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display()))),
        None => {
            let mut text = String::new();
            io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Failure::Usage(format!("cannot read standard input: {e}")))?;
            Ok(text)
        }
    }
}

/// Parses the lines of a `batch` input into the commands of one
/// [`Command::Batch`], or the first bad line as `line N: <why>`.
fn batch_commands(text: &str) -> Result<Vec<Command>, Failure> {
    // Built once: clap's definition is the costly part of parsing, and a
    // controller's batch may hold tens of thousands of lines.
    let mut parser = BatchLine::command();
    let mut commands = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at_line = |msg: String| Failure::Usage(format!("line {}: {msg}", index + 1));
        let cmd = parser
            .try_get_matches_from_mut(line.split_whitespace())
            .and_then(|matches| BatchLine::from_arg_matches(&matches))
            .map(|batch_line| batch_line.command);
        let cmd = match cmd {
            Ok(cmd) => cmd,
            Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
                return Err(at_line(
                    "--help and --version cannot be used in a batch".to_string(),
                ));
            }
            Err(e) => return Err(at_line(usage_line(&e))),
        };
        if !cmd.batchable() {
            let name: Vec<&str> = line.split_whitespace().take(2).collect();
            return Err(at_line(format!(
                "'{}' cannot be batched; a batch holds only 'service add', \
                 'service backends' and 'service del'",
                name.join(" ")
            )));
        }
        commands.push(cmd.to_command().map_err(|f| match f {
            Failure::Usage(m) => at_line(m),
            other => other,
        })?);
    }
    Ok(commands)
}

impl RouteAddArgs {
    fn to_spec(&self) -> Result<RouteSpec, Failure> {
        let (via, dev) = route_target(&self.target).map_err(Failure::Usage)?;
        // A VXLAN endpoint is the remote node's (IPv4) address whatever
        // the family of the routed prefix.
        if let Some(via) = via
            && self.encap.is_none()
            && via.is_ipv4() != matches!(self.prefix, IpNet::V4(_))
        {
            let (hop, net) = if via.is_ipv4() {
                ("IPv4", "IPv6")
            } else {
                ("IPv6", "IPv4")
            };
            // `default` means 0.0.0.0/0, so an IPv6 default route needs ::/0.
            let hint = if via.is_ipv6() && self.prefix.prefix_len() == 0 {
                "; the IPv6 default route is ::/0"
            } else {
                ""
            };
            return Err(Failure::Usage(format!(
                "next hop {via} is {hop} but {} is {net}{hint}",
                self.prefix
            )));
        }
        let encap = match (self.encap, self.vni) {
            (None, None) => None,
            (Some(CliEncap::Vxlan), Some(vni)) => Some(Encap::Vxlan { vni }),
            (Some(CliEncap::Vxlan), None) => {
                return Err(Failure::Usage(format!(
                    "--encap vxlan needs --vni N (1-{VNI_MAX})"
                )));
            }
            (None, Some(_)) => {
                return Err(Failure::Usage(
                    "--vni applies only with --encap vxlan".to_string(),
                ));
            }
        };
        if encap.is_some() && via.is_none() {
            return Err(Failure::Usage(
                "--encap needs 'via NEXTHOP': the tunnel ends at the next hop".to_string(),
            ));
        }
        Ok(RouteSpec {
            prefix: self.prefix,
            via,
            dev,
            encap,
            may_exist: self.may_exist,
        })
    }
}

/// The destination of `route add` from its `ip route`-style keyword pairs:
/// exactly one of `via NEXTHOP` and `dev PORT`.
fn route_target(words: &[String]) -> Result<(Option<IpAddr>, Option<String>), String> {
    const EXPECTED: &str = "expected 'via NEXTHOP' or 'dev PORT' after the prefix";
    let mut via = None;
    let mut dev = None;
    let mut words = words.iter().map(String::as_str);
    while let Some(keyword) = words.next() {
        // A keyword where a value belongs means the value is missing.
        let value = words.next().filter(|v| !matches!(*v, "via" | "dev" | ""));
        match keyword {
            "via" => {
                let value =
                    value.ok_or("'via' needs a next-hop address, such as 'via 192.168.50.2'")?;
                if via.is_some() {
                    return Err("'via' is given twice".to_string());
                }
                let hop = value.parse::<IpAddr>().map_err(|_| {
                    format!("invalid next hop '{value}': expected an IPv4 or IPv6 address")
                })?;
                via = Some(hop);
            }
            "dev" => {
                let value = value.ok_or("'dev' needs a port name, such as 'dev uplink0'")?;
                if dev.is_some() {
                    return Err("'dev' is given twice".to_string());
                }
                dev = Some(value.to_string());
            }
            other => return Err(format!("unknown keyword '{other}'; {EXPECTED}")),
        }
    }
    match (via, dev) {
        (None, None) => Err(format!("missing destination; {EXPECTED}")),
        (Some(_), Some(_)) => Err("give either 'via NEXTHOP' or 'dev PORT', not both".to_string()),
        target => Ok(target),
    }
}

/// Parses a router address `ADDR/PREFIX`, keeping its host bits.
fn router_addr(s: &str) -> Result<IpNet, String> {
    if let Ok(addr) = s.parse::<IpAddr>() {
        let example = if addr.is_ipv4() { 24 } else { 64 };
        return Err(format!(
            "missing prefix length; give the address with its subnet, such as {addr}/{example}"
        ));
    }
    IpNet::from_str(s).map_err(|_| {
        "expected an address with its prefix length, such as 10.244.1.1/24".to_string()
    })
}

/// Parses a route destination: a prefix whose host bits are zero, or
/// `default` for 0.0.0.0/0.
fn route_prefix(s: &str) -> Result<IpNet, String> {
    if s == "default" {
        return Ok(IpNet::V4(Ipv4Net::default()));
    }
    if let Ok(addr) = s.parse::<IpAddr>() {
        let host = if addr.is_ipv4() { 32 } else { 128 };
        return Err(format!(
            "missing prefix length; for a route to this one address give {addr}/{host}"
        ));
    }
    let prefix = IpNet::from_str(s)
        .map_err(|_| "expected a prefix such as 10.244.2.0/24, or 'default'".to_string())?;
    if prefix.trunc() != prefix {
        return Err(format!(
            "{prefix} has host bits set; did you mean {}?",
            prefix.trunc()
        ));
    }
    Ok(prefix)
}

/// Parses a Service `VIP:PORT/PROTO`. Clap's message already names the
/// value, so the same words from [`ServiceKey::from_str`] are left out.
fn service_key(s: &str) -> Result<ServiceKey, String> {
    s.parse().map_err(|e: String| {
        e.strip_prefix(&format!("invalid Service '{s}': "))
            .map_or_else(|| e.clone(), str::to_string)
    })
}

/// Parses a pod address for `port add --ip`: a plain address, no prefix.
fn pod_ip(s: &str) -> Result<IpAddr, String> {
    if let Some((addr, _)) = s.split_once('/')
        && addr.parse::<IpAddr>().is_ok()
    {
        return Err(format!(
            "a pod address takes no prefix length; give --ip {addr}"
        ));
    }
    s.parse()
        .map_err(|_| "expected an IPv4 or IPv6 address such as 10.244.1.5".to_string())
}

/// Validates, sends the one request, and returns the text to print.
fn run(cli: &Cli) -> Result<String, Failure> {
    let command = cli.command.to_command()?;
    let request_failed = |e: ctl::ClientError| Failure::Request(e.to_string());
    let mut client = Client::connect(&cli.socket).map_err(request_failed)?;
    let reply = client.call(command).map_err(request_failed)?;
    render(&reply, cli.output)
}

fn render(reply: &Reply, format: Format) -> Result<String, Failure> {
    match format {
        Format::Text => Ok(output::text(reply)),
        Format::Json => output::json(reply)
            .map_err(|e| Failure::Request(format!("cannot encode the reply as JSON: {e}"))),
    }
}

/// A clap error as one line: its message and tips, without the usage block.
fn usage_line(err: &clap::Error) -> String {
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

/// Writes `text` to stdout. A reader that went away (`vswitchctl show | head`)
/// is not an error.
fn print(text: &str) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(Failure::Request(format!("cannot write output: {e}")))
        }
        _ => Ok(()),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version are not failures; print them whole.
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return Failure::Usage(usage_line(&e)).report(),
    };
    match run(&cli).and_then(|text| print(&text)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixListener;
    use std::path::Path;
    use std::thread;

    use ctl::{PortStats, Request, Response};

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("vswitchctl").chain(args.iter().copied()))
    }

    fn command(args: &[&str]) -> Result<Command, Failure> {
        parse(args).expect("arguments parse").command.to_command()
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn socket_defaults_and_reads_the_environment() {
        let cmd = Cli::command();
        let socket = cmd
            .get_arguments()
            .find(|a| a.get_id() == "socket")
            .expect("--socket");
        assert_eq!(
            socket.get_env().and_then(|e| e.to_str()),
            Some("VSWITCH_SOCKET")
        );
        let cli = parse(&["--socket", "/tmp/x.sock", "show"]).unwrap();
        assert_eq!(cli.socket, Path::new("/tmp/x.sock"));
        // Global options may also follow the subcommand.
        let cli = parse(&["port", "list", "-o", "json"]).unwrap();
        assert_eq!(cli.output, Format::Json);
    }

    #[test]
    fn each_subcommand_maps_to_one_command() {
        let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        let cases: Vec<(Vec<&str>, Command)> = vec![
            (vec!["show"], Command::Show),
            (
                vec!["port", "add", "veth1"],
                Command::PortAdd(PortSpec::afxdp("veth1")),
            ),
            (
                vec!["port", "del", "veth1"],
                Command::PortDel {
                    name: "veth1".into(),
                    if_exists: false,
                },
            ),
            (
                vec!["port", "del", "veth1", "--if-exists"],
                Command::PortDel {
                    name: "veth1".into(),
                    if_exists: true,
                },
            ),
            (
                vec!["port", "add", "veth1", "--may-exist"],
                Command::PortAdd(PortSpec {
                    may_exist: true,
                    ..PortSpec::afxdp("veth1")
                }),
            ),
            (vec!["port", "list"], Command::PortList),
            (vec!["fdb", "show"], Command::FdbShow),
            (
                vec!["fdb", "add", "02:00:00:00:00:01", "pod1"],
                Command::FdbAdd {
                    mac,
                    port: "pod1".into(),
                },
            ),
            (
                vec!["fdb", "del", "02-00-00-00-00-01"],
                Command::FdbDel { mac },
            ),
            (vec!["fdb", "flush"], Command::FdbFlush),
            (vec!["stats"], Command::Stats { port: None }),
            (
                vec!["stats", "pod1"],
                Command::Stats {
                    port: Some("pod1".into()),
                },
            ),
        ];
        for (args, want) in cases {
            assert_eq!(command(&args), Ok(want), "{args:?}");
        }
    }

    #[test]
    fn port_add_with_every_option() {
        let got = command(&[
            "port",
            "add",
            "tap0",
            "--type",
            "tap",
            "--mac",
            "02:00:00:00:00:09",
            "--netns",
            "/proc/42/ns/net",
            "--ifname",
            "eth0",
            "--ip",
            "10.244.1.5",
            "--ip",
            "fd00:10:244:1::5",
        ]);
        let want = PortSpec {
            name: "tap0".into(),
            port_type: PortType::Tap,
            mode: XdpMode::Auto,
            mac: Some("02:00:00:00:00:09".parse().unwrap()),
            netns: Some("/proc/42/ns/net".into()),
            ifname: Some("eth0".into()),
            ips: vec![
                "10.244.1.5".parse().unwrap(),
                "fd00:10:244:1::5".parse().unwrap(),
            ],
            uplink: false,
            host: false,
            may_exist: false,
        };
        assert_eq!(got, Ok(Command::PortAdd(want)));
        let got = command(&["port", "add", "veth1", "--mode", "zerocopy"]);
        let mut want = PortSpec::afxdp("veth1");
        want.mode = XdpMode::Zerocopy;
        assert_eq!(got, Ok(Command::PortAdd(want)));
    }

    #[test]
    fn tap_options_are_rejected_for_afxdp_ports() {
        for (args, flag) in [
            (
                &["port", "add", "v", "--mac", "02:00:00:00:00:01"][..],
                "--mac",
            ),
            (&["port", "add", "v", "--netns", "pod1"][..], "--netns"),
            (
                &[
                    "port", "add", "v", "--type", "afxdp", "--netns", "n", "--ifname", "e",
                ][..],
                "--netns",
            ),
        ] {
            match command(args) {
                Err(Failure::Usage(m)) => {
                    assert!(m.starts_with(flag) && m.contains("--type tap"), "{m}")
                }
                other => panic!("{args:?}: {other:?}"),
            }
        }
        match command(&["port", "add", "t", "--type", "tap", "--mode", "native"]) {
            Err(Failure::Usage(m)) => assert!(m.contains("--mode"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn clap_rejects_bad_values_with_a_usage_error() {
        for args in [
            &["port", "add", "t", "--type", "tap", "--ifname", "eth0"][..],
            &["port", "add", "t", "--type", "bogus"][..],
            &[
                "port",
                "add",
                "t",
                "--type",
                "tap",
                "--mac",
                "02:00:00:00:00",
            ][..],
            &["fdb", "add", "nope", "pod1"][..],
            &["port", "del", ""][..],
            &["-o", "yaml", "show"][..],
            &["frobnicate"][..],
            &[][..],
            &["port"][..],
        ] {
            let err = parse(args).expect_err("must not parse");
            assert_eq!(err.exit_code(), i32::from(EXIT_USAGE), "{args:?}");
            let line = usage_line(&err);
            assert!(!line.contains('\n') && !line.is_empty(), "{line:?}");
            assert!(!line.starts_with("error:"), "{line:?}");
        }
        let err = parse(&["fdb", "add", "zz:00:00:00:00:00", "p"]).unwrap_err();
        let line = usage_line(&err);
        assert!(
            line.contains("invalid MAC address 'zz:00:00:00:00:00'"),
            "{line}"
        );
        assert!(!line.contains("For more information"), "{line}");
        let line = usage_line(&parse(&["fdb"]).unwrap_err());
        assert!(
            line.starts_with("incomplete command, usage: vswitchctl fdb "),
            "{line}"
        );
    }

    /// The one-line message a usage error prints, from clap or from our own checks.
    fn usage_error(args: &[&str]) -> String {
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

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn static_route(prefix: &str) -> RouteSpec {
        RouteSpec {
            prefix: net(prefix),
            via: None,
            dev: None,
            encap: None,
            may_exist: false,
        }
    }

    #[test]
    fn port_add_roles() {
        let got = command(&["port", "add", "eth1", "--uplink", "--ip", "192.168.50.1"]);
        let want = PortSpec {
            uplink: true,
            ips: vec![ip("192.168.50.1")],
            ..PortSpec::afxdp("eth1")
        };
        assert_eq!(got, Ok(Command::PortAdd(want)));
        let got = command(&["port", "add", "vsw0", "--type", "tap", "--host"]);
        let want = PortSpec {
            port_type: PortType::Tap,
            host: true,
            ..PortSpec::afxdp("vsw0")
        };
        assert_eq!(got, Ok(Command::PortAdd(want)));
        let line = usage_error(&["port", "add", "p", "--uplink", "--host"]);
        assert!(
            line.contains("'--uplink' cannot be used with '--host'"),
            "{line}"
        );
    }

    #[test]
    fn port_add_ip_takes_a_plain_address() {
        let line = usage_error(&["port", "add", "p", "--ip", "10.244.1.5/24"]);
        assert!(
            line.contains("a pod address takes no prefix length; give --ip 10.244.1.5"),
            "{line}"
        );
        let line = usage_error(&["port", "add", "p", "--ip", "pod1"]);
        assert!(
            line.contains("invalid value 'pod1' for '--ip <ADDR>'"),
            "{line}"
        );
        assert!(line.contains("expected an IPv4 or IPv6 address"), "{line}");
    }

    #[test]
    fn addr_commands_keep_host_bits() {
        let cases: Vec<(Vec<&str>, Command)> = vec![
            (
                vec!["addr", "add", "10.244.1.1/24"],
                Command::AddrAdd {
                    addr: net("10.244.1.1/24"),
                    may_exist: false,
                },
            ),
            (
                vec!["addr", "add", "fd00:10:244:1::1/64", "--may-exist"],
                Command::AddrAdd {
                    addr: net("fd00:10:244:1::1/64"),
                    may_exist: true,
                },
            ),
            (
                vec!["addr", "del", "10.244.1.1/24", "--if-exists"],
                Command::AddrDel {
                    addr: net("10.244.1.1/24"),
                    if_exists: true,
                },
            ),
            (vec!["addr", "list"], Command::AddrList),
            (vec!["neigh", "list"], Command::NeighList),
            (vec!["route", "list"], Command::RouteList),
        ];
        for (args, want) in cases {
            assert_eq!(command(&args), Ok(want), "{args:?}");
        }
        // The host bits survive parsing: this is the address .1, not the subnet.
        match command(&["addr", "add", "10.244.1.1/24"]) {
            Ok(Command::AddrAdd { addr, .. }) => {
                assert_eq!(addr.addr(), ip("10.244.1.1"));
                assert_eq!(addr.prefix_len(), 24);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn addr_without_prefix_is_a_usage_error() {
        let line = usage_error(&["addr", "add", "10.244.1.1"]);
        assert!(
            line.contains("missing prefix length") && line.contains("such as 10.244.1.1/24"),
            "{line}"
        );
        let line = usage_error(&["addr", "del", "fd00::1"]);
        assert!(line.contains("such as fd00::1/64"), "{line}");
        for bad in ["10.244.1.1/33", "10.244.1/24", "gateway"] {
            let line = usage_error(&["addr", "add", bad]);
            assert!(
                line.contains(&format!("invalid value '{bad}' for '<ADDR/PREFIX>'")),
                "{line}"
            );
        }
    }

    #[test]
    fn route_add_via_and_dev() {
        let cases: Vec<(Vec<&str>, RouteSpec)> = vec![
            (
                vec!["route", "add", "10.244.2.0/24", "via", "192.168.50.2"],
                RouteSpec {
                    via: Some(ip("192.168.50.2")),
                    ..static_route("10.244.2.0/24")
                },
            ),
            (
                vec![
                    "route",
                    "add",
                    "10.244.9.0/24",
                    "dev",
                    "uplink0",
                    "--may-exist",
                ],
                RouteSpec {
                    dev: Some("uplink0".into()),
                    may_exist: true,
                    ..static_route("10.244.9.0/24")
                },
            ),
            (
                vec![
                    "route",
                    "add",
                    "10.244.2.0/24",
                    "via",
                    "192.168.50.2",
                    "--encap",
                    "vxlan",
                    "--vni",
                    "16777215",
                ],
                RouteSpec {
                    via: Some(ip("192.168.50.2")),
                    encap: Some(Encap::Vxlan { vni: 16_777_215 }),
                    ..static_route("10.244.2.0/24")
                },
            ),
            (
                // Options may come before the keyword pair too.
                vec![
                    "route",
                    "add",
                    "--encap",
                    "vxlan",
                    "--vni",
                    "1",
                    "10.244.2.0/24",
                    "via",
                    "192.168.50.2",
                ],
                RouteSpec {
                    via: Some(ip("192.168.50.2")),
                    encap: Some(Encap::Vxlan { vni: 1 }),
                    ..static_route("10.244.2.0/24")
                },
            ),
            (
                vec!["route", "add", "default", "via", "192.168.50.1"],
                RouteSpec {
                    via: Some(ip("192.168.50.1")),
                    ..static_route("0.0.0.0/0")
                },
            ),
            (
                vec!["route", "add", "0.0.0.0/0", "via", "192.168.50.1"],
                RouteSpec {
                    via: Some(ip("192.168.50.1")),
                    ..static_route("0.0.0.0/0")
                },
            ),
            (
                vec!["route", "add", "fd00:10:244:2::/64", "via", "fd00::2"],
                RouteSpec {
                    via: Some(ip("fd00::2")),
                    ..static_route("fd00:10:244:2::/64")
                },
            ),
        ];
        for (args, want) in cases {
            assert_eq!(command(&args), Ok(Command::RouteAdd(want)), "{args:?}");
        }
    }

    #[test]
    fn route_del_accepts_default() {
        for (arg, prefix) in [
            ("default", "0.0.0.0/0"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("10.244.2.0/24", "10.244.2.0/24"),
        ] {
            assert_eq!(
                command(&["route", "del", arg]),
                Ok(Command::RouteDel {
                    prefix: net(prefix),
                    if_exists: false
                })
            );
        }
        assert_eq!(
            command(&["route", "del", "default", "--if-exists"]),
            Ok(Command::RouteDel {
                prefix: net("0.0.0.0/0"),
                if_exists: true
            })
        );
    }

    #[test]
    fn route_add_keyword_errors() {
        let prefix = ["route", "add", "10.244.2.0/24"];
        for (words, needle) in [
            (
                &[][..],
                "missing destination; expected 'via NEXTHOP' or 'dev PORT'",
            ),
            (&["via"][..], "'via' needs a next-hop address"),
            (&["dev"][..], "'dev' needs a port name"),
            (&["dev", ""][..], "'dev' needs a port name"),
            (&["via", "dev", "p1"][..], "'via' needs a next-hop address"),
            (
                &["gw", "192.168.50.2"][..],
                "unknown keyword 'gw'; expected 'via NEXTHOP' or 'dev PORT'",
            ),
            (
                &["via", "192.168.50.2", "dev", "uplink0"][..],
                "either 'via NEXTHOP' or 'dev PORT', not both",
            ),
            (
                &["via", "192.168.50.2", "via", "192.168.50.3"][..],
                "'via' is given twice",
            ),
            (&["dev", "a", "dev", "b"][..], "'dev' is given twice"),
            (
                &["via", "node2"][..],
                "invalid next hop 'node2': expected an IPv4 or IPv6 address",
            ),
            (
                &["via", "fd00::2"][..],
                "next hop fd00::2 is IPv6 but 10.244.2.0/24 is IPv4",
            ),
        ] {
            let args: Vec<&str> = prefix.iter().chain(words).copied().collect();
            let line = usage_error(&args);
            assert!(line.contains(needle), "{args:?}: {line}");
        }
        let line = usage_error(&["route", "add", "default", "via", "fd00::1"]);
        assert!(
            line.ends_with("0.0.0.0/0 is IPv4; the IPv6 default route is ::/0"),
            "{line}"
        );
        assert_eq!(
            command(&["route", "add", "::/0", "via", "fd00::1"]),
            Ok(Command::RouteAdd(RouteSpec {
                via: Some(ip("fd00::1")),
                ..static_route("::/0")
            }))
        );
        let line = usage_error(&["route", "add", "fd00::/64", "via", "10.0.0.1"]);
        assert!(
            line.contains("next hop 10.0.0.1 is IPv4 but fd00::/64 is IPv6"),
            "{line}"
        );
    }

    #[test]
    fn route_add_encap_errors() {
        let base = ["route", "add", "10.244.2.0/24", "via", "192.168.50.2"];
        for (extra, needle) in [
            (
                &["--encap", "vxlan"][..],
                "--encap vxlan needs --vni N (1-16777215)",
            ),
            (
                &["--vni", "42"][..],
                "--vni applies only with --encap vxlan",
            ),
            (
                &["--encap", "vxlan", "--vni", "0"][..],
                "0 is not in 1..=16777215",
            ),
            (
                &["--encap", "vxlan", "--vni", "16777216"][..],
                "16777216 is not in 1..=16777215",
            ),
            (
                &["--encap", "vxlan", "--vni", "-1"][..],
                "-1 is not in 1..=16777215",
            ),
            (
                &["--encap", "gre", "--vni", "1"][..],
                "possible values: vxlan",
            ),
        ] {
            let args: Vec<&str> = base.iter().chain(extra).copied().collect();
            let line = usage_error(&args);
            assert!(line.contains(needle), "{args:?}: {line}");
        }
        let line = usage_error(&[
            "route",
            "add",
            "10.244.2.0/24",
            "dev",
            "uplink0",
            "--encap",
            "vxlan",
            "--vni",
            "7",
        ]);
        assert!(line.contains("--encap needs 'via NEXTHOP'"), "{line}");
    }

    #[test]
    fn route_prefix_errors() {
        for verb in ["add", "del"] {
            let usage_error = |prefix: &str| {
                let mut args = vec!["route", verb, prefix];
                if verb == "add" {
                    args.extend(["via", "192.168.50.2"]);
                }
                usage_error(&args)
            };
            let line = usage_error("10.244.2.1/24");
            assert!(
                line.contains("10.244.2.1/24 has host bits set; did you mean 10.244.2.0/24?"),
                "{line}"
            );
            let line = usage_error("fd00::1/64");
            assert!(line.contains("did you mean fd00::/64?"), "{line}");
            let line = usage_error("10.0.0.5");
            assert!(
                line.contains("missing prefix length") && line.contains("10.0.0.5/32"),
                "{line}"
            );
            let line = usage_error("Default");
            assert!(
                line.contains("expected a prefix such as 10.244.2.0/24, or 'default'"),
                "{line}"
            );
        }
    }

    #[test]
    fn l3_usage_errors_are_one_line() {
        for args in [
            &["addr", "add", "10.244.1.1"][..],
            &["port", "add", "p", "--uplink", "--host"][..],
            &["route", "add", "10.244.2.1/24", "via", "192.168.50.2"][..],
            &[
                "route",
                "add",
                "10.244.2.0/24",
                "via",
                "1.2.3.4",
                "--vni",
                "0",
            ][..],
            &["route", "add"][..],
            &["route"][..],
            &["neigh"][..],
        ] {
            let err = parse(args).expect_err("must not parse");
            assert_eq!(err.exit_code(), i32::from(EXIT_USAGE), "{args:?}");
            let line = usage_line(&err);
            assert!(!line.contains('\n') && !line.is_empty(), "{line:?}");
            assert!(!line.starts_with("error:"), "{line:?}");
        }
    }

    #[test]
    fn route_add_round_trip_through_a_fake_daemon() {
        let (path, daemon) = fake_daemon("route", Response::ok(Reply::Done));
        let sock = path.to_str().unwrap();
        let got = run(&parse(&[
            "--socket",
            sock,
            "route",
            "add",
            "10.244.2.0/24",
            "via",
            "192.168.50.2",
            "--encap",
            "vxlan",
            "--vni",
            "42",
        ])
        .unwrap());
        let request = daemon.join().unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(got, Ok(String::new()));
        assert_eq!(
            request.command,
            Command::RouteAdd(RouteSpec {
                via: Some(ip("192.168.50.2")),
                encap: Some(Encap::Vxlan { vni: 42 }),
                ..static_route("10.244.2.0/24")
            })
        );
    }

    /// A one-shot fake vswitchd: answers the first request with `response`
    /// and hands back the request it received.
    fn fake_daemon(name: &str, response: Response) -> (PathBuf, thread::JoinHandle<Request>) {
        let path =
            std::env::temp_dir().join(format!("vswitchctl-{}-{name}.sock", std::process::id()));
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

    #[test]
    fn stats_round_trip_through_a_fake_daemon() {
        let stats = vec![PortStats {
            name: "pod1".into(),
            rx_packets: 3,
            rx_bytes: 180,
            tx_packets: 0,
            tx_bytes: 0,
            drops: [("no_destination".to_string(), 3)].into_iter().collect(),
            xdp: Some(ctl::XdpStats {
                rx_ring_full: 7,
                ..Default::default()
            }),
        }];
        for format in ["text", "json"] {
            let (path, daemon) = fake_daemon(format, Response::ok(Reply::Stats(stats.clone())));
            let sock = path.to_str().unwrap();
            let got = run(&parse(&["--socket", sock, "-o", format, "stats", "pod1"]).unwrap());
            assert_eq!(
                daemon.join().unwrap().command,
                Command::Stats {
                    port: Some("pod1".into())
                }
            );
            let _ = std::fs::remove_file(&path);
            let text = got.unwrap();
            match format {
                "text" => {
                    let rows: Vec<Vec<&str>> = text
                        .lines()
                        .map(|l| l.split_whitespace().collect())
                        .collect();
                    assert!(
                        rows.contains(&vec!["pod1", "no_destination", "3"]),
                        "{text}"
                    );
                    assert!(
                        rows.contains(&vec!["pod1", "xdp.rx_ring_full", "7"]),
                        "{text}"
                    );
                }
                _ => assert_eq!(
                    serde_json::from_str::<Vec<PortStats>>(&text).unwrap(),
                    stats
                ),
            }
        }
    }

    #[test]
    fn refusal_and_missing_daemon_are_request_failures() {
        let (path, daemon) = fake_daemon("refused", Response::error("port 'x' does not exist"));
        let got = run(&parse(&["--socket", path.to_str().unwrap(), "port", "del", "x"]).unwrap());
        daemon.join().unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(got, Err(Failure::Request("port 'x' does not exist".into())));

        let missing = std::env::temp_dir().join("vswitchctl-no-such-daemon.sock");
        match run(&parse(&["--socket", missing.to_str().unwrap(), "show"]).unwrap()) {
            Err(Failure::Request(m)) => assert!(m.contains("cannot connect"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn usage_errors_are_caught_before_connecting() {
        let missing = std::env::temp_dir().join("vswitchctl-no-such-daemon.sock");
        let cli = parse(&[
            "--socket",
            missing.to_str().unwrap(),
            "port",
            "add",
            "v",
            "--netns",
            "n",
        ]);
        assert!(matches!(run(&cli.unwrap()), Err(Failure::Usage(_))));
    }

    fn key(s: &str) -> ServiceKey {
        s.parse().unwrap()
    }

    fn ep(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

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
            (vec!["ct", "list"], Command::CtList),
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

    #[test]
    fn batch_parses_each_line_like_the_command_line() {
        let text = "\
# Services of namespace default
service add 10.96.0.10:80/tcp --backend 10.244.1.5:8080 --backend 10.244.2.7:8080

   # indented comment
\tservice   backends 10.96.0.10:80/tcp 10.244.1.5:8080 --terminating 10.244.2.7:8080
service add [fd00::10]:53/udp --affinity-timeout 30 --may-exist
service del 10.96.0.99:443/tcp --if-exists
";
        let web = key("10.96.0.10:80/tcp");
        assert_eq!(
            batch_commands(text),
            Ok(vec![
                Command::ServiceAdd(ServiceSpec::new(
                    web,
                    vec![ep("10.244.1.5:8080"), ep("10.244.2.7:8080")]
                )),
                Command::ServiceBackends {
                    service: web,
                    backends: vec![ep("10.244.1.5:8080")],
                    terminating: vec![ep("10.244.2.7:8080")],
                },
                Command::ServiceAdd(ServiceSpec {
                    affinity_timeout: Some(30),
                    may_exist: true,
                    ..ServiceSpec::new(key("[fd00::10]:53/udp"), vec![])
                }),
                Command::ServiceDel {
                    service: key("10.96.0.99:443/tcp"),
                    if_exists: true,
                },
            ])
        );
        assert_eq!(batch_commands("\n# nothing\n"), Ok(vec![]));
    }

    #[test]
    fn batch_errors_name_the_line() {
        let good = "# header\nservice add 10.96.0.10:80/tcp\n\n";
        for (bad, needle) in [
            (
                "service list",
                "line 4: 'service list' cannot be batched; a batch holds only 'service add', \
                 'service backends' and 'service del'",
            ),
            ("port add veth1", "line 4: 'port add' cannot be batched"),
            ("ct flush", "line 4: 'ct flush' cannot be batched"),
            (
                "batch other.txt",
                "line 4: 'batch other.txt' cannot be batched",
            ),
            (
                "service add 10.96.0.10:80",
                "line 4: invalid value '10.96.0.10:80' for '<VIP:PORT/PROTO>': \
                 expected VIP:PORT/PROTO",
            ),
            (
                "service add 10.96.0.11:80/tcp --backend 10.244.1.5:80 --backend 10.244.1.5:80",
                "line 4: backend 10.244.1.5:80 listed twice",
            ),
            (
                "service add 10.96.0.11:80/tcp --weight 3",
                "line 4: unexpected argument '--weight' found",
            ),
            (
                "vswitchctl service add 10.96.0.11:80/tcp",
                "line 4: unrecognized subcommand 'vswitchctl'",
            ),
            (
                "service",
                "line 4: incomplete command, usage: service <COMMAND>",
            ),
            (
                "service add --help",
                "line 4: --help and --version cannot be used in a batch",
            ),
            (
                "--socket /tmp/x.sock service del 10.96.0.10:80/tcp",
                "line 4: unexpected argument '--socket' found",
            ),
        ] {
            // The bad line comes before good ones: nothing after it matters.
            let text = format!("{good}{bad}\nservice del 10.96.0.10:80/tcp\n");
            match batch_commands(&text) {
                Err(Failure::Usage(m)) => {
                    assert!(m.starts_with(needle), "{bad}: {m}");
                    assert!(!m.contains('\n'), "{m:?}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn batch_handles_a_controller_sized_input() {
        let text: String = (0..10_000u32)
            .map(|i| {
                let [_, _, hi, lo] = i.to_be_bytes();
                format!(
                    "service add 10.96.{hi}.{lo}:80/tcp --backend 10.244.{hi}.{lo}:8080 \
                     --backend 10.245.{hi}.{lo}:8080 --node-port {}\n",
                    30_000 + i
                )
            })
            .collect();
        let commands = batch_commands(&text).expect("parses");
        assert_eq!(commands.len(), 10_000);
        assert_eq!(
            commands[9_999],
            Command::ServiceAdd(ServiceSpec {
                node_port: Some(39_999),
                ..ServiceSpec::new(
                    key("10.96.39.15:80/tcp"),
                    vec![ep("10.244.39.15:8080"), ep("10.245.39.15:8080")]
                )
            })
        );
    }

    #[test]
    fn batch_reads_a_file_and_sends_one_request() {
        let path =
            std::env::temp_dir().join(format!("vswitchctl-{}-batch.txt", std::process::id()));
        std::fs::write(
            &path,
            "service add 10.96.0.10:80/tcp --backend 10.244.1.5:8080\n\
             service del 10.96.0.11:80/tcp\n",
        )
        .unwrap();
        let (sock, daemon) = fake_daemon("batch", Response::ok(Reply::Done));
        let got = run(&parse(&[
            "--socket",
            sock.to_str().unwrap(),
            "batch",
            path.to_str().unwrap(),
        ])
        .unwrap());
        let request = daemon.join().unwrap();
        let _ = std::fs::remove_file(&sock);
        let _ = std::fs::remove_file(&path);
        assert_eq!(got, Ok(String::new()));
        assert_eq!(
            request.command,
            Command::Batch {
                commands: vec![
                    Command::ServiceAdd(ServiceSpec::new(
                        key("10.96.0.10:80/tcp"),
                        vec![ep("10.244.1.5:8080")]
                    )),
                    Command::ServiceDel {
                        service: key("10.96.0.11:80/tcp"),
                        if_exists: false,
                    },
                ]
            }
        );
        let missing = std::env::temp_dir().join("vswitchctl-no-such-batch.txt");
        match command(&["batch", missing.to_str().unwrap()]) {
            Err(Failure::Usage(m)) => assert!(
                m.starts_with(&format!("cannot read {}: ", missing.display())),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn service_list_round_trip_through_a_fake_daemon() {
        let services = vec![ctl::ServiceInfo {
            service: key("10.96.0.10:80/tcp"),
            affinity_timeout: None,
            node_port: Some(30_080),
            table_size: 65_537,
            backends: vec![ctl::BackendInfo {
                addr: ep("10.244.1.5:8080"),
                state: ctl::BackendState::Ready,
                active: 4,
            }],
        }];
        for format in ["text", "json"] {
            let (path, daemon) = fake_daemon(
                &format!("svc-{format}"),
                Response::ok(Reply::Services(services.clone())),
            );
            let sock = path.to_str().unwrap();
            let got = run(&parse(&["--socket", sock, "-o", format, "service", "list"]).unwrap());
            assert_eq!(daemon.join().unwrap().command, Command::ServiceList);
            let _ = std::fs::remove_file(&path);
            let text = got.unwrap();
            match format {
                "text" => {
                    let rows: Vec<Vec<&str>> = text
                        .lines()
                        .map(|l| l.split_whitespace().collect())
                        .collect();
                    assert_eq!(
                        rows[1],
                        [
                            "10.96.0.10:80/tcp",
                            "10.244.1.5:8080",
                            "ready",
                            "4",
                            "-",
                            "30080"
                        ],
                        "{text}"
                    );
                }
                _ => assert_eq!(
                    serde_json::from_str::<Vec<ctl::ServiceInfo>>(&text).unwrap(),
                    services
                ),
            }
        }
    }

    #[test]
    fn done_prints_nothing_as_text_and_empty_object_as_json() {
        assert_eq!(render(&Reply::Done, Format::Text), Ok(String::new()));
        assert_eq!(render(&Reply::Done, Format::Json), Ok("{}\n".to_string()));
    }
}
