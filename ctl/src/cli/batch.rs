//! `batch`: many Service commands from a file or standard input, sent as
//! one [`Command::Batch`].
//!
//! Each line is parsed with the same clap definition ([`Cmd`]) as the
//! command line, so a batch line means exactly what the same words mean as
//! arguments. The whole input is checked before anything is sent; the first
//! bad line fails the batch as `line N: <why>`.

use std::io::{self, Read};
use std::path::Path;

use super::{Cmd, Failure, ServiceCmd, usage_line};
use crate::Command;
use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches, Parser};

/// One line of a `batch` input: a command without the program name and
/// without the global options, parsed with the same [`Cmd`] definition.
#[derive(Debug, Parser)]
#[command(name = "vswitchctl", no_binary_name = true)]
struct BatchLine {
    #[command(subcommand)]
    command: Cmd,
}

impl Cmd {
    /// Whether this command may appear in a `batch`: the daemon applies a
    /// batch as one change to its Services, so only Service changes qualify.
    fn batchable(&self) -> bool {
        matches!(
            self,
            Cmd::Service(ServiceCmd::Add(_) | ServiceCmd::Backends { .. } | ServiceCmd::Del { .. })
        )
    }
}

/// Reads the input of `batch`: FILE, or standard input for `-` or none.
pub fn read_batch(file: Option<&Path>) -> Result<String, Failure> {
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
pub fn batch_commands(text: &str) -> Result<Vec<Command>, Failure> {
    BatchParser::new().parse(text)
}

/// The parser of `batch` input, kept to parse many inputs: clap's
/// definition is the costly part of parsing (a controller's batch may hold
/// tens of thousands of lines, and the fuzz target parses millions of
/// inputs), so it is built once. A line's meaning does not depend on the
/// lines or inputs parsed before it.
#[derive(Debug)]
pub struct BatchParser {
    clap: clap::Command,
}

impl Default for BatchParser {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchParser {
    /// A parser with clap's definition built.
    pub fn new() -> Self {
        BatchParser {
            clap: BatchLine::command(),
        }
    }

    /// The commands of `text`, or its first bad line as `line N: <why>`.
    pub fn parse(&mut self, text: &str) -> Result<Vec<Command>, Failure> {
        Ok(self
            .parse_numbered(text)?
            .into_iter()
            .map(|(_, c)| c)
            .collect())
    }

    /// The commands of `text`, each with the number of its line (from 1),
    /// so that a refusal of the daemon's can name the line.
    pub fn parse_numbered(&mut self, text: &str) -> Result<Vec<(usize, Command)>, Failure> {
        let mut commands = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at_line = |msg: String| Failure::Usage(format!("line {}: {msg}", index + 1));
            let cmd = self
                .clap
                .try_get_matches_from_mut(line.split_whitespace())
                .and_then(|matches| BatchLine::from_arg_matches(&matches))
                .map(|batch_line| batch_line.command);
            let cmd = match cmd {
                Ok(cmd) => cmd,
                Err(e)
                    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) =>
                {
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
            let command = cmd.to_command().map_err(|f| match f {
                Failure::Usage(m) => at_line(m),
                other => other,
            })?;
            commands.push((index + 1, command));
        }
        Ok(commands)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServiceSpec;
    use crate::cli::test_utils::{ep, key};

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
}
