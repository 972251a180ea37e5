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
//!
//! Code map: the clap definition of the command line, its conversion to a
//! [`ctl::Command`] and the `batch` parser are the library's [`ctl::cli`]
//! (so the fuzz targets reach them); `observe` follows `trace live` and
//! `capture` watches, `output` prints replies, and this file runs one
//! invocation and keeps the exit-code contract above.

mod observe;
mod output;
#[cfg(test)]
mod test_utils;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use ctl::{Client, Reply};

use crate::output::one_line;
use ctl::cli::{BatchParser, Cli, Cmd, Failure, Format, TraceCmd, read_batch, usage_line};

/// Prints the failure as the contract says and gives its exit code.
fn report(failure: &Failure) -> ExitCode {
    eprintln!("vswitchctl: {}", one_line(failure.message()));
    ExitCode::from(failure.exit_code())
}

/// Validates, sends the one request, and returns the text to print.
fn run(cli: &Cli) -> Result<String, Failure> {
    match cli.command {
        Cmd::Completion { shell } => {
            return generated(|out| {
                clap_complete::generate(shell, &mut Cli::command(), "vswitchctl", out);
                Ok(())
            });
        }
        Cmd::Man { ref dir } => {
            return match dir {
                Some(dir) => man_pages(Cli::command(), "vswitchctl", dir)
                    .map(|()| String::new())
                    .map_err(|e| Failure::Request(format!("cannot write manual pages: {e}"))),
                None => generated(|out| {
                    clap_mangen::Man::new(Cli::command())
                        .section("8")
                        .render(out)
                }),
            };
        }
        _ => {}
    }
    let request_failed = |e: ctl::ClientError| Failure::Request(e.to_string());
    match &cli.command {
        Cmd::Trace(TraceCmd::Live(args)) => {
            let mut client = Client::connect(&cli.socket).map_err(request_failed)?;
            return observe::live(&mut client, args, cli.output);
        }
        Cmd::Capture(args) => {
            let mut client = Client::connect(&cli.socket).map_err(request_failed)?;
            return observe::capture(&mut client, args);
        }
        _ => {}
    }
    if let Cmd::Batch { file } = &cli.command {
        return batch(cli, file.as_deref());
    }
    let command = cli.command.to_command()?;
    let mut client = Client::connect(&cli.socket).map_err(request_failed)?;
    let reply = match command {
        // Pages are joined here: the daemon never builds the whole table.
        ctl::Command::CtList { .. } => client.conntrack().map(Reply::Conntrack),
        command => client.call(command),
    }
    .map_err(request_failed)?;
    render(&reply, cli.output)
}

/// `batch`: one request of every command of the input; the daemon's
/// refusal ("batch command N: why") names the line of the input instead.
fn batch(cli: &Cli, file: Option<&std::path::Path>) -> Result<String, Failure> {
    let numbered = BatchParser::new().parse_numbered(&read_batch(file)?)?;
    let lines: Vec<usize> = numbered.iter().map(|(line, _)| *line).collect();
    let commands = numbered.into_iter().map(|(_, c)| c).collect();
    let mut client = Client::connect(&cli.socket).map_err(|e| Failure::Request(e.to_string()))?;
    match client.call(ctl::Command::Batch { commands }) {
        Ok(reply) => render(&reply, cli.output),
        Err(ctl::ClientError::Refused(m)) => {
            let line = m
                .strip_prefix("batch command ")
                .and_then(|rest| rest.split_once(": "))
                .and_then(|(n, why)| {
                    Some((lines.get(n.parse::<usize>().ok()?.checked_sub(1)?)?, why))
                });
            Err(Failure::Request(match line {
                Some((line, why)) => format!("line {line}: {why}"),
                None => m,
            }))
        }
        Err(e) => Err(Failure::Request(e.to_string())),
    }
}

/// Writes the manual page of `cmd` as `name.8` into `dir`, and one for
/// each of its commands (`name-port.8`, `name-port-add.8`, ...), which the
/// pages refer to.
fn man_pages(cmd: clap::Command, name: &str, dir: &std::path::Path) -> io::Result<()> {
    let cmd = cmd.name(name.to_string());
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section("8")
        .render(&mut out)?;
    std::fs::write(dir.join(format!("{name}.8")), out)?;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        man_pages(sub.clone(), &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}

/// Text a generator writes (a completion script, the manual page).
fn generated(write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> Result<String, Failure> {
    let mut out = Vec::new();
    write(&mut out).map_err(|e| Failure::Request(format!("cannot generate: {e}")))?;
    String::from_utf8(out).map_err(|e| Failure::Request(format!("cannot generate: {e}")))
}

fn render(reply: &Reply, format: Format) -> Result<String, Failure> {
    match format {
        Format::Text => Ok(output::text(reply)),
        Format::Json => output::json(reply)
            .map_err(|e| Failure::Request(format!("cannot encode the reply as JSON: {e}"))),
    }
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
        Err(e) => return report(&Failure::Usage(usage_line(&e))),
    };
    match run(&cli).and_then(|text| print(&text)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => report(&f),
    }
}

#[cfg(test)]
mod tests {
    use ctl::{Command, Encap, PortStats, Response, RouteSpec, ServiceSpec};

    use super::*;
    use crate::test_utils::{fake_daemon, parse};

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
                owner: None,
                prefix: "10.244.2.0/24".parse().unwrap(),
                via: Some("192.168.50.2".parse().unwrap()),
                dev: None,
                encap: Some(Encap::Vxlan { vni: 42 }),
                may_exist: false,
            })
        );
    }

    #[test]
    fn stats_round_trip_through_a_fake_daemon() {
        let stats = vec![PortStats {
            name: "pod1".into(),
            rx_packets: 3,
            rx_bytes: 180,
            tx_packets: 0,
            tx_bytes: 0,
            // As vswitchd reports an AF_XDP port: the kernel's drops also
            // among the drops.
            drops: [
                ("no_destination".to_string(), 3),
                (ctl::XSK_RX_RING_FULL.to_string(), 7),
            ]
            .into_iter()
            .collect(),
            xdp: Some(ctl::XdpStats {
                rx_ring_full: 7,
                rx_invalid_descs: 2,
                ..Default::default()
            }),
            // A two-queue port's share per worker.
            workers: vec![
                ctl::PortWorkerStats {
                    worker: 0,
                    rx_packets: 1,
                    tx_packets: 0,
                },
                ctl::PortWorkerStats {
                    worker: 1,
                    rx_packets: 2,
                    tx_packets: 0,
                },
            ],
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
                        rows.contains(&vec!["pod1", "xsk_rx_ring_full", "7"]),
                        "{text}"
                    );
                    assert!(
                        rows.contains(&vec!["pod1", "xdp.rx_invalid_descs", "2"]),
                        "{text}"
                    );
                    // Listed once, not again under xdp.
                    assert!(!text.contains("xdp.rx_ring_full"), "{text}");
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
    fn service_list_round_trip_through_a_fake_daemon() {
        let services = vec![ctl::ServiceInfo {
            owner: None,
            service: "10.96.0.10:80/tcp".parse().unwrap(),
            affinity_timeout: None,
            node_port: Some(30_080),
            table_size: 65_537,
            backends: vec![ctl::BackendInfo {
                addr: "10.244.1.5:8080".parse().unwrap(),
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
                        "10.96.0.10:80/tcp".parse().unwrap(),
                        vec!["10.244.1.5:8080".parse().unwrap()]
                    )),
                    Command::ServiceDel {
                        service: "10.96.0.11:80/tcp".parse().unwrap(),
                        if_exists: false,
                    },
                ]
            }
        );
        let missing = std::env::temp_dir().join("vswitchctl-no-such-batch.txt");
        match parse(&["batch", missing.to_str().unwrap()])
            .unwrap()
            .command
            .to_command()
        {
            Err(Failure::Usage(m)) => assert!(
                m.starts_with(&format!("cannot read {}: ", missing.display())),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
