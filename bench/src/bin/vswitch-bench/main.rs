//! `vswitch-bench`: a traffic generator, a sink, an RFC 2544-style NDR/PDR
//! search and a report writer for measuring switches on real interfaces
//! (veth pods here, NICs elsewhere).
//!
//! ```text
//! vswitch-bench gen    --iface IF [--netns NS] --dst-ip IP [--rate PPS|max] ...
//! vswitch-bench sink   --iface IF [--netns NS] [--driver afxdp|packet|udp] ...
//! vswitch-bench trial  --tx-iface IF --tx-netns NS --rx-iface IF --rx-netns NS --dst-ip IP ...
//! vswitch-bench ndr    (as trial) [--precision PCT] [--pdr-loss PCT] [--repeats N] ...
//! vswitch-bench report FILE|DIR... [--markdown FILE] [--svg-dir DIR] [--baseline PEER]
//! vswitch-bench record --peer P --scenario S --name N --unit U VALUE...
//! ```
//!
//! Modules: [`frame`] (what is sent, the stamp), [`rate`] (pacing, clock),
//! [`nic`] (AF_XDP / AF_PACKET / UDP, namespaces, ARP), [`sink`] (counting
//! and latency), [`trial`] (generator and sink threads, one trial),
//! [`ndr`] (the search), [`results`] (result files), [`report`].

mod frame;
mod generator;
mod ndr;
mod nic;
mod rate;
mod receiver;
mod report;
mod results;
mod sink;
mod trial;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use frame::{Sizes, Vary};
use generator::GenConfig;
use nic::DriverKind;
use receiver::SinkConfig;
use results::{Env, Metric, ResultFile, fmt_pps, print_table, trial_rows};
use trial::Pair;

#[derive(Parser)]
#[command(
    name = "vswitch-bench",
    version,
    about = "Generator, sink, NDR search and report for measuring switches"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send stamped UDP frames out of an interface.
    Gen(GenArgs),
    /// Count stamped frames arriving on an interface: loss, order, latency.
    Sink(SinkArgs),
    /// Fixed-rate trials between a generator and a sink in this process.
    Trial(TrialArgs),
    /// Search the no-drop and partial-drop rates (RFC 2544 / CSIT style).
    Ndr(NdrArgs),
    /// Turn result files into markdown tables and SVG charts.
    Report(ReportArgs),
    /// Write a result file for a value measured by another tool (iperf3, ping).
    Record(RecordArgs),
}

/// A rate in frames/s, or `None` for as fast as the generator goes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rate(Option<f64>);

/// Frames per second: a number with an optional k/M/G suffix, or `max`.
fn parse_rate(s: &str) -> Result<Rate, String> {
    if s == "max" {
        return Ok(Rate(None));
    }
    parse_pps(s).map(|v| Rate(Some(v)))
}

/// Frames per second: a number with an optional k/M/G suffix.
fn parse_pps(s: &str) -> Result<f64, String> {
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1e3),
        Some('m' | 'M') => (&s[..s.len() - 1], 1e6),
        Some('g' | 'G') => (&s[..s.len() - 1], 1e9),
        _ => (s, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("rate '{s}' is not a number of frames/s (e.g. 500k, 2M)"))?;
    let v = v * mult;
    if !(v.is_finite() && v >= 1.0) {
        return Err(format!("rate '{s}' must be at least 1 frame/s"));
    }
    Ok(v)
}

fn parse_mac_arg(s: &str) -> Result<[u8; 6], String> {
    parse_mac(s)
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let bad = || format!("invalid MAC address '{s}'");
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut m = [0u8; 6];
    for (o, p) in m.iter_mut().zip(parts) {
        if p.is_empty() || p.len() > 2 {
            return Err(bad());
        }
        *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(m)
}

pub fn fmt_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
        return Err(format!(
            "'{s}': seconds must be more than 0 and at most 86400"
        ));
    }
    Ok(v)
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("'{s}' is not a percentage"))?;
    if !(v.is_finite() && v > 0.0 && v < 100.0) {
        return Err(format!("'{s}': a percentage between 0 and 100 (exclusive)"));
    }
    Ok(v / 100.0)
}

/// What the frames carry.
#[derive(Args, Clone)]
struct FrameArgs {
    /// Destination IPv4 address (a pod, an address behind the router, a Service VIP).
    #[arg(long)]
    dst_ip: Ipv4Addr,
    /// Destination UDP port.
    #[arg(long, default_value_t = 9000)]
    dst_port: u16,
    /// Destination MAC; default: resolved (ARP for the destination or its gateway).
    #[arg(long, value_parser = parse_mac_arg)]
    dst_mac: Option<[u8; 6]>,
    /// First UDP source port; flows count up from it.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u16).range(1..))]
    src_port: u16,
    /// First source address of the flows (default: the interface's own);
    /// past 64,512 flows each next address takes the next 64,512.
    #[arg(long)]
    src_base: Option<Ipv4Addr>,
    /// Frame size in bytes with FCS (64 to 9018), or `imix` (7×64, 4×594, 1×1518).
    #[arg(long, default_value = "64")]
    size: Sizes,
    /// Distinct flows (5-tuples), sent round robin.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    flows: u32,
    /// What makes flows differ.
    #[arg(long, value_enum, default_value_t = Vary::Sport)]
    vary: Vary,
}

/// Where results go and how they are labelled.
#[derive(Args, Clone)]
struct OutArgs {
    /// Write the result (with machine, kernel, CPU, layout, command) to FILE.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The switch under test, as the report names it.
    #[arg(long, default_value = "")]
    peer: String,
    /// The scenario, as the report names it.
    #[arg(long, default_value = "")]
    scenario: String,
    /// The core layout, in words (e.g. "gen=0 sink=0 switch=1").
    #[arg(long, default_value = "")]
    layout: String,
    /// A fact to keep with the result (KEY=VALUE), repeatable.
    #[arg(long = "note", value_parser = parse_note)]
    notes: Vec<(String, String)>,
}

fn parse_note(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("note '{s}' is not KEY=VALUE"))
}

impl OutArgs {
    fn result(&self, kind: &str, extra_layout: &str) -> ResultFile {
        // The caller's description wins: it knows where the switch runs too.
        let layout = if self.layout.is_empty() {
            extra_layout.to_string()
        } else {
            self.layout.clone()
        };
        let notes: BTreeMap<String, String> = self.notes.iter().cloned().collect();
        ResultFile::new(kind, &self.peer, &self.scenario, Env::here(layout, notes))
    }

    fn write(&self, r: &ResultFile) -> anyhow::Result<()> {
        if let Some(p) = &self.json {
            r.write(p)?;
        }
        Ok(())
    }
}

#[derive(Args)]
struct GenArgs {
    /// Interface to send from.
    #[arg(long)]
    iface: String,
    /// Network namespace of the interface (a name under /run/netns or a path).
    #[arg(long)]
    netns: Option<String>,
    #[arg(long, value_enum, default_value_t = DriverKind::Auto)]
    driver: DriverKind,
    /// Frames per second (500k, 2M, ...) or `max`.
    #[arg(long, default_value = "max", value_parser = parse_rate)]
    rate: Rate,
    /// Seconds to send.
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    duration: f64,
    /// Stop after this many frames.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Stream id in the stamps (tells several generators apart at one sink).
    #[arg(long, default_value_t = 0)]
    stream: u16,
    /// Trial tag in the stamps (a sink given --tag counts only these).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    tag: u16,
    /// Core to pin the generator to.
    #[arg(long)]
    core: Option<usize>,
    #[command(flatten)]
    frame: FrameArgs,
    #[command(flatten)]
    out: OutArgs,
}

#[derive(Args)]
struct SinkArgs {
    /// Interface to receive on.
    #[arg(long)]
    iface: String,
    #[arg(long)]
    netns: Option<String>,
    #[arg(long, value_enum, default_value_t = DriverKind::Auto)]
    driver: DriverKind,
    /// UDP port the stamped frames go to.
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Stop after this many seconds.
    #[arg(long, value_parser = parse_seconds)]
    duration: Option<f64>,
    /// Stop once nothing arrived for this many seconds (after the first frame).
    #[arg(long, default_value = "2", value_parser = parse_seconds)]
    idle: f64,
    /// Count only frames with this tag (0: any).
    #[arg(long, default_value_t = 0)]
    tag: u16,
    /// Largest frame expected, with FCS.
    #[arg(long, default_value_t = 1518)]
    max_size: u32,
    #[arg(long)]
    core: Option<usize>,
    #[command(flatten)]
    out: OutArgs,
}

/// A generator and a sink in one process.
#[derive(Args, Clone)]
struct PairArgs {
    /// Generator's interface.
    #[arg(long)]
    tx_iface: String,
    /// Generator's network namespace.
    #[arg(long)]
    tx_netns: Option<String>,
    #[arg(long, value_enum, default_value_t = DriverKind::Auto)]
    tx_driver: DriverKind,
    /// Sink's interface.
    #[arg(long)]
    rx_iface: String,
    /// Sink's network namespace.
    #[arg(long)]
    rx_netns: Option<String>,
    #[arg(long, value_enum, default_value_t = DriverKind::Auto)]
    rx_driver: DriverKind,
    /// Core for the generator.
    #[arg(long)]
    gen_core: Option<usize>,
    /// Core for the sink (it sleeps in poll(2) when idle, so it may share the generator's).
    #[arg(long)]
    sink_core: Option<usize>,
    /// Milliseconds to wait after a trial for the last frames.
    #[arg(long, default_value_t = 200)]
    drain_ms: u64,
    #[command(flatten)]
    frame: FrameArgs,
    #[command(flatten)]
    out: OutArgs,
}

impl PairArgs {
    fn start(&self) -> anyhow::Result<Pair> {
        let f = &self.frame;
        let gen_cfg = GenConfig {
            netns: self.tx_netns.clone(),
            iface: self.tx_iface.clone(),
            driver: self.tx_driver,
            sizes: f.size,
            flows: f.flows,
            vary: f.vary,
            dst_ip: f.dst_ip,
            dst_port: f.dst_port,
            dst_mac: f.dst_mac,
            src_port: f.src_port,
            src_base: f.src_base,
            stream: 0,
            core: self.gen_core,
        };
        let sink_cfg = SinkConfig {
            netns: self.rx_netns.clone(),
            iface: self.rx_iface.clone(),
            driver: self.rx_driver,
            port: f.dst_port,
            core: self.sink_core,
        };
        Pair::start(gen_cfg, sink_cfg, Duration::from_millis(self.drain_ms))
    }

    fn layout(&self) -> String {
        let c = |x: Option<usize>| x.map_or("unpinned".to_string(), |c| c.to_string());
        format!(
            "generator core {}, sink core {}",
            c(self.gen_core),
            c(self.sink_core)
        )
    }

    fn config(&self) -> serde_json::Value {
        let f = &self.frame;
        serde_json::json!({
            "tx": {"iface": self.tx_iface, "netns": self.tx_netns, "core": self.gen_core},
            "rx": {"iface": self.rx_iface, "netns": self.rx_netns, "core": self.sink_core},
            "size": f.size.label(), "flows": f.flows, "vary": f.vary,
            "dst_ip": f.dst_ip.to_string(), "dst_port": f.dst_port,
        })
    }
}

#[derive(Args)]
struct TrialArgs {
    #[command(flatten)]
    pair: PairArgs,
    /// Frames per second or `max`.
    #[arg(long, default_value = "max", value_parser = parse_rate)]
    rate: Rate,
    /// Seconds per trial.
    #[arg(long, default_value = "5", value_parser = parse_seconds)]
    duration: f64,
    /// Trials to run (all are kept; the result file holds the last).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Seconds of traffic at --warmup-rate first (learning, ARP), not counted.
    #[arg(long, default_value = "1", value_parser = parse_seconds)]
    warmup: f64,
    /// Frames per second of the warm-up.
    #[arg(long, default_value = "10k", value_parser = parse_pps)]
    warmup_rate: f64,
}

#[derive(Args)]
struct NdrArgs {
    #[command(flatten)]
    pair: PairArgs,
    /// Highest rate tried (default: as fast as the generator goes).
    #[arg(long, default_value = "max", value_parser = parse_rate)]
    max_rate: Rate,
    /// Lowest rate tried.
    #[arg(long, default_value = "10k", value_parser = parse_pps)]
    min_rate: f64,
    /// Stop bisecting when the interval is narrower than this (percent of its top).
    #[arg(long, default_value = "2", value_parser = parse_percent)]
    precision: f64,
    /// Loss a PDR trial may have (percent).
    #[arg(long, default_value = "0.5", value_parser = parse_percent)]
    pdr_loss: f64,
    /// Seconds per trial.
    #[arg(long = "trial", default_value = "5", value_parser = parse_seconds)]
    trial_s: f64,
    /// Seconds of traffic at --warmup-rate before the search (not counted).
    #[arg(long, default_value = "1", value_parser = parse_seconds)]
    warmup: f64,
    /// Frames per second of the warm-up.
    #[arg(long, default_value = "10k", value_parser = parse_pps)]
    warmup_rate: f64,
    /// Searches to run; the result is their median.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    repeats: u32,
    /// Seconds of the latency trials at 50 % and 90 % of the NDR.
    #[arg(long, default_value = "5", value_parser = parse_seconds)]
    latency_trial: f64,
}

#[derive(Args)]
struct ReportArgs {
    /// Result files, or directories of them.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Write the markdown here (default: standard output).
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Draw one SVG chart per NDR scenario into this directory.
    #[arg(long)]
    svg_dir: Option<PathBuf>,
    /// Path of the SVG directory as the markdown should link it.
    #[arg(long)]
    svg_link: Option<String>,
    /// The peer ratios are taken against.
    #[arg(long, default_value = "vswitch-afxdp")]
    baseline: String,
}

#[derive(Args)]
struct RecordArgs {
    /// Metric name (e.g. "TCP 1 stream").
    #[arg(long)]
    name: String,
    /// Unit (e.g. Gbit/s, us).
    #[arg(long)]
    unit: String,
    /// Which way is better.
    #[arg(long, default_value = "higher", value_parser = ["higher", "lower"])]
    better: String,
    /// The command that measured the values, as the report's exact
    /// commands should show it (default: this command line).
    #[arg(long)]
    command: Option<String>,
    /// The measured values (one per round).
    #[arg(required = true, allow_negative_numbers = true)]
    values: Vec<f64>,
    #[command(flatten)]
    out: OutArgs,
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Gen(a) => cmd_gen(a),
        Cmd::Sink(a) => cmd_sink(a),
        Cmd::Trial(a) => cmd_trial(a),
        Cmd::Ndr(a) => cmd_ndr(a),
        Cmd::Report(a) => cmd_report(a),
        Cmd::Record(a) => cmd_record(a),
    };
    if let Err(e) = r {
        eprintln!("vswitch-bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn cmd_gen(a: GenArgs) -> anyhow::Result<()> {
    let f = &a.frame;
    let g = generator::Generator::start(
        GenConfig {
            netns: a.netns.clone(),
            iface: a.iface.clone(),
            driver: a.driver,
            sizes: f.size,
            flows: f.flows,
            vary: f.vary,
            dst_ip: f.dst_ip,
            dst_port: f.dst_port,
            dst_mac: f.dst_mac,
            src_port: f.src_port,
            src_base: f.src_base,
            stream: a.stream,
            core: a.core,
        },
        None,
    )?;
    eprintln!(
        "gen: {} on {} ({}), {} -> {} {}:{}, {} at {}",
        g.info.driver,
        a.iface,
        g.info.src_mac,
        g.info.src_ip,
        g.info.dst_mac,
        f.dst_ip,
        f.dst_port,
        f.size.label(),
        a.rate.0.map_or("max".into(), fmt_pps)
    );
    let (r, _) = g.run(
        a.tag,
        a.rate.0,
        Duration::from_secs_f64(a.duration),
        a.count,
        Duration::ZERO,
    )?;
    print_table(&[
        vec![
            "SENT".into(),
            "OFFERED".into(),
            "SECONDS".into(),
            "TX_ERRORS".into(),
        ],
        vec![
            r.sent.to_string(),
            fmt_pps(r.offered_pps),
            format!("{:.3}", r.elapsed_s),
            r.tx_errors.to_string(),
        ],
    ]);
    let core = a.core.map_or("unpinned".into(), |c| c.to_string());
    let mut out = a.out.result("gen", &format!("generator core {core}"));
    out.generator = Some(g.info.clone());
    out.generated = Some(r);
    out.config = serde_json::json!({"iface": a.iface, "netns": a.netns, "rate": a.rate.0, "size": f.size.label(), "flows": f.flows});
    a.out.write(&out)
}

fn cmd_sink(a: SinkArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (frame::MIN_SIZE..=frame::MAX_SIZE).contains(&a.max_size),
        "--max-size {} is outside {}..{}",
        a.max_size,
        frame::MIN_SIZE,
        frame::MAX_SIZE
    );
    let sink = receiver::Sink::start(
        SinkConfig {
            netns: a.netns.clone(),
            iface: a.iface.clone(),
            driver: a.driver,
            port: a.port,
            core: a.core,
        },
        (a.max_size - frame::FCS) as usize,
    )?;
    sink.begin(a.tag)?;
    eprintln!("sink: {} on {}, UDP port {}", sink.driver, a.iface, a.port);
    let start = Instant::now();
    let (mut last_count, mut last_change) = (0u64, Instant::now());
    let tty = std::io::stderr().is_terminal();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let elapsed = start.elapsed().as_secs_f64();
        if a.duration.is_some_and(|d| elapsed >= d) {
            break;
        }
        let r = sink.counts()?;
        if r.received != last_count {
            last_count = r.received;
            last_change = Instant::now();
        } else if last_count > 0 && last_change.elapsed().as_secs_f64() >= a.idle {
            break;
        }
        if tty {
            eprint!(
                "\rsink: {elapsed:6.1} s  received {}  gaps {}   ",
                r.received, r.gaps
            );
        }
    }
    let r = sink.counts()?;
    if tty {
        eprintln!();
    }
    let l = &r.latency;
    print_table(&[
        [
            "RECEIVED",
            "GAPS",
            "DUPLICATES",
            "REORDERED",
            "STALE",
            "FOREIGN",
            "P50",
            "P99",
            "P99.9",
            "MAX",
        ]
        .map(String::from)
        .to_vec(),
        vec![
            r.received.to_string(),
            r.gaps.to_string(),
            r.duplicates.to_string(),
            r.reordered.to_string(),
            r.stale.to_string(),
            r.foreign.to_string(),
            format!("{:.1}us", l.p50_us),
            format!("{:.1}us", l.p99_us),
            format!("{:.1}us", l.p999_us),
            format!("{:.1}us", l.max_us),
        ],
    ]);
    let core = a.core.map_or("unpinned".into(), |c| c.to_string());
    let mut out = a.out.result("sink", &format!("sink core {core}"));
    out.sink_driver = Some(sink.driver.clone());
    out.sink = Some(r);
    out.config =
        serde_json::json!({"iface": a.iface, "netns": a.netns, "port": a.port, "tag": a.tag});
    a.out.write(&out)
}

fn progress_line(
    total: Option<usize>,
    started: Instant,
) -> impl FnMut(&str, usize, &trial::TrialResult) {
    move |phase: &str, n: usize, r: &trial::TrialResult| {
        let of = total.map_or(String::new(), |t| format!("/~{t}"));
        eprintln!(
            "trial {n}{of} {phase:<7} target {:>13}  offered {:>13}  received {:>13}  loss {:>8.4}%  p99 {:>8.1}us  elapsed {:.0} s",
            r.target_pps.map_or("max".into(), fmt_pps),
            fmt_pps(r.offered_pps),
            fmt_pps(r.received_pps),
            r.loss_ratio * 100.0,
            r.latency.p99_us,
            started.elapsed().as_secs_f64()
        );
    }
}

fn cmd_trial(a: TrialArgs) -> anyhow::Result<()> {
    let mut pair = a.pair.start()?;
    eprintln!(
        "generator: {} {} -> {}; sink: {}",
        pair.generator.info.driver,
        pair.generator.info.src_mac,
        pair.generator.info.dst_mac,
        pair.sink_driver()
    );
    pair.trial(Some(a.warmup_rate), Duration::from_secs_f64(a.warmup))?;
    let started = Instant::now();
    let mut progress = progress_line(Some(a.rounds as usize), started);
    let mut results = Vec::new();
    for i in 0..a.rounds {
        let r = pair.trial(a.rate.0, Duration::from_secs_f64(a.duration))?;
        progress("trial", i as usize + 1, &r);
        results.push((format!("round {}", i + 1), r));
    }
    let rows: Vec<(String, &trial::TrialResult)> =
        results.iter().map(|(n, r)| (n.clone(), r)).collect();
    print_table(&trial_rows(&rows));
    for (_, r) in &results {
        let mut out = a.pair.out.result("trial", &a.pair.layout());
        out.config = a.pair.config();
        out.config["rate"] = serde_json::json!(a.rate.0);
        out.config["duration_s"] = serde_json::json!(a.duration);
        out.generator = Some(pair.generator.info.clone());
        out.sink_driver = Some(pair.sink_driver());
        out.trial = Some(r.clone());
        if a.rounds > 1 {
            // Every round is its own result: FILE, then FILE-2.json, ...
            if let Some(p) = &a.pair.out.json {
                let idx = results
                    .iter()
                    .position(|(_, x)| std::ptr::eq(x, r))
                    .unwrap_or(0);
                out.write(&round_path(p, idx + 1))?;
            }
        } else {
            a.pair.out.write(&out)?;
        }
    }
    Ok(())
}

/// What a search's table says beside its rates.
fn search_note(r: &ndr::SearchRun) -> String {
    let mut notes = Vec::new();
    if r.generator_bound {
        notes.push("generator-bound: a lower bound".to_string());
    }
    if r.short_trials > 0 {
        notes.push(format!(
            "{} trial(s) under 95% of the rate asked",
            r.short_trials
        ));
    }
    if r.sink_drop_trials > 0 {
        notes.push(format!(
            "the sink dropped frames in {} trial(s)",
            r.sink_drop_trials
        ));
    }
    notes.join("; ")
}

/// Where round `n` (from 1) of `trial --rounds` goes: FILE, then
/// FILE-2.json (before the extension, so `report DIR` reads them all).
fn round_path(p: &std::path::Path, n: usize) -> PathBuf {
    if n == 1 {
        return p.to_path_buf();
    }
    let stem = p
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let name = match p.extension() {
        Some(ext) => format!("{stem}-{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{n}"),
    };
    p.with_file_name(name)
}

fn cmd_ndr(a: NdrArgs) -> anyhow::Result<()> {
    let cfg = ndr::SearchConfig {
        max_rate: a.max_rate.0,
        min_rate: a.min_rate,
        precision: a.precision,
        pdr_loss: a.pdr_loss,
        trial_s: a.trial_s,
        warmup_s: a.warmup,
        warmup_rate: a.warmup_rate,
        repeats: a.repeats,
        latency_s: a.latency_trial,
    };
    let mut pair = a.pair.start()?;
    eprintln!(
        "generator: {} {} -> {}; sink: {}",
        pair.generator.info.driver,
        pair.generator.info.src_mac,
        pair.generator.info.dst_mac,
        pair.sink_driver()
    );
    let total = ndr::expected_trials(&cfg) * a.repeats as usize + 2;
    let started = Instant::now();
    let outcome = ndr::search(&mut pair, &cfg, &mut progress_line(Some(total), started))
        .context("NDR search")?;
    let mut rows = vec![
        ["SEARCH", "NDR", "PDR", "MAX OFFERED", "NOTE"]
            .map(String::from)
            .to_vec(),
    ];
    for (i, r) in outcome.runs.iter().enumerate() {
        rows.push(vec![
            format!("repeat {}", i + 1),
            fmt_pps(r.ndr.rate_pps),
            fmt_pps(r.pdr.rate_pps),
            fmt_pps(r.max_offered_pps),
            search_note(r),
        ]);
    }
    rows.push(vec![
        "median".into(),
        fmt_pps(outcome.ndr_median_pps),
        fmt_pps(outcome.pdr_median_pps),
        String::new(),
        String::new(),
    ]);
    print_table(&rows);
    if !outcome.latency.is_empty() {
        println!();
        let lat: Vec<(String, &trial::TrialResult)> = outcome
            .latency
            .iter()
            .map(|l| (format!("{:.0}% of NDR", l.fraction * 100.0), &l.result))
            .collect();
        print_table(&trial_rows(&lat));
    }
    let mut out = a.pair.out.result("ndr", &a.pair.layout());
    out.config = a.pair.config();
    out.config["search"] = serde_json::to_value(&cfg)?;
    out.generator = Some(pair.generator.info.clone());
    out.sink_driver = Some(pair.sink_driver());
    out.ndr = Some(outcome);
    a.pair.out.write(&out)
}

fn cmd_report(a: ReportArgs) -> anyhow::Result<()> {
    let r = report::Report::load(&a.inputs)?;
    let mut charts = Vec::new();
    if let Some(dir) = &a.svg_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        charts = r.charts(dir)?;
        if let Some(link) = &a.svg_link {
            for (_, f) in charts.iter_mut() {
                *f = format!("{}/{f}", link.trim_end_matches('/'));
            }
        }
    }
    let md = r.markdown(&a.baseline, &charts);
    match &a.markdown {
        Some(p) => {
            std::fs::write(p, md).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => print!("{md}"),
    }
    Ok(())
}

fn cmd_record(a: RecordArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.out.json.is_some(), "record needs --json FILE");
    anyhow::ensure!(
        a.values.iter().all(|v| v.is_finite()),
        "values must be finite numbers"
    );
    let mut out = a.out.result("metric", "");
    if let Some(c) = &a.command {
        out.env.command = c.split_whitespace().map(String::from).collect();
    }
    out.metric = Some(Metric {
        name: a.name,
        unit: a.unit,
        better: a.better,
        values: a.values,
    });
    a.out.write(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_suffixes_and_refuse_zero() {
        assert_eq!(parse_rate("max"), Ok(Rate(None)));
        assert_eq!(parse_rate("500k"), Ok(Rate(Some(500_000.0))));
        assert_eq!(parse_rate("1.5M"), Ok(Rate(Some(1_500_000.0))));
        assert_eq!(parse_pps("1000"), Ok(1000.0));
        assert!(parse_pps("max").is_err());
        assert!(parse_rate("0").unwrap_err().contains("at least 1"));
        assert!(parse_rate("-5").is_err());
        assert!(parse_rate("fast").unwrap_err().contains("not a number"));
    }

    #[test]
    fn macs_parse_and_print() {
        assert_eq!(
            parse_mac("02:00:0a:f4:01:0B"),
            Ok([2, 0, 0x0a, 0xf4, 1, 0x0b])
        );
        assert!(parse_mac("02:00:0a:f4:01").is_err());
        assert!(parse_mac("02:00:0a:f4:01:100").is_err());
        assert_eq!(fmt_mac([2, 0, 0x0a, 0xf4, 1, 0x0b]), "02:00:0a:f4:01:0b");
    }

    #[test]
    fn rounds_go_to_files_report_reads() {
        use std::path::Path;
        assert_eq!(
            round_path(Path::new("/r/a.json"), 1),
            Path::new("/r/a.json")
        );
        assert_eq!(
            round_path(Path::new("/r/a.json"), 3),
            Path::new("/r/a-3.json")
        );
        assert_eq!(round_path(Path::new("a"), 2), Path::new("a-2"));
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
