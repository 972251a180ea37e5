//! The command line: the top-level clap definition ([`Cli`], [`Cmd`]) and the
//! port, fdb, stats, addr, route and neigh nouns, each converted to exactly
//! one [`Command`]. The Service and connection tracking nouns live in
//! `service`, `batch` input in `batch`.
//!
//! Clap checks what it can express (value syntax, ranges, conflicts); the
//! `to_command`/`to_spec` methods check the remaining combinations and
//! report them as [`Failure::Usage`], before anything is sent.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use ctl::{Command, Encap, MacAddr, PortSpec, PortType, RouteSpec, XdpMode};
use ipnet::{IpNet, Ipv4Net};

use crate::Failure;
use crate::batch::{batch_commands, read_batch};
pub(crate) use crate::observe::{CaptureArgs, TraceCmd};
use crate::service::{CtCmd, ServiceCmd};

/// The largest VXLAN network identifier (24 bits); 0 is not used.
const VNI_MAX: i64 = 0xff_ffff;

/// Control the vswitch daemon (vswitchd).
#[derive(Debug, Parser)]
#[command(name = "vswitchctl", version)]
pub(crate) struct Cli {
    /// Path of vswitchd's control socket.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "VSWITCH_SOCKET",
        default_value = ctl::DEFAULT_SOCKET
    )]
    pub(crate) socket: PathBuf,

    /// Output format: aligned text tables, or the reply's JSON payload.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Text)]
    pub(crate) output: Format,

    #[command(subcommand)]
    pub(crate) command: Cmd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
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

#[derive(Debug, Subcommand)]
pub(crate) enum PortCmd {
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
pub(crate) struct PortAddArgs {
    /// Port name: the interface to attach (afxdp) or the TAP device to create (tap).
    #[arg(value_parser = NonEmptyStringValueParser::new())]
    name: String,

    /// Kind of port.
    #[arg(long = "type", value_name = "TYPE", value_enum, default_value_t = CliPortType::Afxdp)]
    port_type: CliPortType,

    /// XDP attach mode (afxdp only) [default: auto].
    #[arg(long, value_enum)]
    mode: Option<CliXdpMode>,

    /// MAC address: of the TAP device (tap), or the pod's, declared for
    /// port security with --ip (afxdp).
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

    /// TAP ports: checksum and segmentation offloads (GSO frames of up to
    /// 64 KiB cross the switch whole) [default: on].
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    offload: Option<bool>,

    /// Queues to serve, each with its own socket, spread over the workers:
    /// RX queues 0..N-1 of the interface (afxdp; it must have N), or a
    /// multi-queue TAP device (tap).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=i64::from(ctl::MAX_QUEUES)))]
    queues: u16,

    /// Succeed when a port of this name already exists with the same settings.
    #[arg(long)]
    may_exist: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum FdbCmd {
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
pub(crate) enum AddrCmd {
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
pub(crate) enum RouteCmd {
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
pub(crate) struct RouteAddArgs {
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
pub(crate) enum NeighCmd {
    /// List learned and configured neighbours.
    List,
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

impl Cmd {
    /// The protocol command for these arguments, or a usage error for
    /// combinations clap cannot express.
    pub(crate) fn to_command(&self) -> Result<Command, Failure> {
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

/// `on` or `off`.
fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("'{s}' is neither 'on' nor 'off'")),
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
                    ("--offload", self.offload.is_some()),
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
            offload: self.offload,
            queues: self.queues,
            may_exist: self.may_exist,
        })
    }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::CommandFactory;

    use super::*;
    use crate::test_utils::{command, ip, net, parse, static_route, usage_error};
    use crate::{EXIT_USAGE, usage_line};

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
            offload: None,
            queues: 1,
            may_exist: false,
        };
        assert_eq!(got, Ok(Command::PortAdd(want)));
        let got = command(&["port", "add", "t", "--type", "tap", "--offload", "off"]);
        let want = PortSpec {
            port_type: PortType::Tap,
            offload: Some(false),
            ..PortSpec::afxdp("t")
        };
        assert_eq!(got, Ok(Command::PortAdd(want)));
        let line = usage_error(&["port", "add", "t", "--type", "tap", "--offload", "maybe"]);
        assert!(line.contains("'maybe' is neither 'on' nor 'off'"), "{line}");
        let got = command(&["port", "add", "veth1", "--queues", "4"]);
        let want = PortSpec {
            queues: 4,
            ..PortSpec::afxdp("veth1")
        };
        assert_eq!(got, Ok(Command::PortAdd(want)));
        for bad in ["0", "33", "two"] {
            let line = usage_error(&["port", "add", "veth1", "--queues", bad]);
            assert!(line.contains("--queues"), "{bad}: {line}");
        }
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
            (&["port", "add", "v", "--offload", "on"][..], "--offload"),
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
}
