//! `vswitchctl`: the command-line client of vswitchd.
//!
//! Each invocation parses its arguments into exactly one [`ctl::Command`],
//! sends it over the control socket, and prints the reply as aligned text
//! tables or, with `-o json`, as the reply's payload in its serde shape.
//!
//! Contract with users and scripts: on success the output goes to stdout and
//! the exit code is 0. Any failure prints exactly one line,
//! `vswitchctl: <message>`, on stderr and exits with 2 for a usage error
//! (caught before connecting) or 1 for a request that failed (no daemon,
//! refused, broken reply).

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::NonEmptyStringValueParser;
use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand, ValueEnum};
use ctl::output::{self, one_line};
use ctl::{Client, Command, MacAddr, PortSpec, PortType, Reply, XdpMode};

/// Exit code of a request that failed.
const EXIT_REQUEST_FAILED: u8 = 1;
/// Exit code of bad arguments (clap uses the same for its own errors).
const EXIT_USAGE: u8 = 2;

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
        })
    }
}

impl PortAddArgs {
    fn to_spec(&self) -> Result<PortSpec, Failure> {
        match self.port_type {
            CliPortType::Afxdp => {
                let tap_only = [
                    ("--mac", self.mac.is_some()),
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
            may_exist: self.may_exist,
        })
    }
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

    use clap::CommandFactory;
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
        ]);
        let want = PortSpec {
            name: "tap0".into(),
            port_type: PortType::Tap,
            mode: XdpMode::Auto,
            mac: Some("02:00:00:00:00:09".parse().unwrap()),
            netns: Some("/proc/42/ns/net".into()),
            ifname: Some("eth0".into()),
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

    #[test]
    fn done_prints_nothing_as_text_and_empty_object_as_json() {
        assert_eq!(render(&Reply::Done, Format::Text), Ok(String::new()));
        assert_eq!(render(&Reply::Done, Format::Json), Ok("{}\n".to_string()));
    }
}
