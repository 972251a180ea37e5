//! The command line: subcommands, their options and the parsers of their
//! values (rates with k/M/G, MACs, seconds, percentages).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::flood::Kind;
use crate::frame::{Sizes, Vary};
use crate::generator::GenConfig;
use crate::nic::DriverKind;
use crate::receiver::SinkConfig;
use crate::results::{Env, ResultFile};
use crate::trial::Pair;

#[derive(Parser)]
#[command(
    name = "vswitch-bench",
    version,
    about = "Generator, sink, NDR search and report for measuring switches"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
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
    /// Flood an interface with frames a switch must survive: random source
    /// MACs, ARP or ND for the router, SYNs to a VIP, garbage.
    Flood(FloodArgs),
}

/// A rate in frames/s, or `None` for as fast as the generator goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(pub Option<f64>);

/// Frames per second: a number with an optional k/M/G suffix, or `max`.
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    if s == "max" {
        return Ok(Rate(None));
    }
    parse_pps(s).map(|v| Rate(Some(v)))
}

/// Frames per second: a number with an optional k/M/G suffix.
pub fn parse_pps(s: &str) -> Result<f64, String> {
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

pub fn parse_mac_arg(s: &str) -> Result<[u8; 6], String> {
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

pub fn parse_seconds(s: &str) -> Result<f64, String> {
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

pub fn parse_percent(s: &str) -> Result<f64, String> {
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
pub struct FrameArgs {
    /// Destination IPv4 address (a pod, an address behind the router, a Service VIP).
    #[arg(long)]
    pub dst_ip: Ipv4Addr,
    /// Destination UDP port.
    #[arg(long, default_value_t = 9000)]
    pub dst_port: u16,
    /// Destination MAC; default: resolved (ARP for the destination or its gateway).
    #[arg(long, value_parser = parse_mac_arg)]
    pub dst_mac: Option<[u8; 6]>,
    /// First UDP source port; flows count up from it.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u16).range(1..))]
    pub src_port: u16,
    /// Send even from an interface that carries this host's default route
    /// (without --netns: the host's own network).
    #[arg(long)]
    pub allow_default_route: bool,
    /// First source address of the flows (default: the interface's own);
    /// past 64,512 flows each next address takes the next 64,512.
    #[arg(long)]
    pub src_base: Option<Ipv4Addr>,
    /// Frame size in bytes with FCS (64 to 9018), or `imix` (7×64, 4×594, 1×1518).
    #[arg(long, default_value = "64")]
    pub size: Sizes,
    /// Distinct flows (5-tuples), sent round robin.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub flows: u32,
    /// What makes flows differ.
    #[arg(long, value_enum, default_value_t = Vary::Sport)]
    pub vary: Vary,
}

/// Where results go and how they are labelled.
#[derive(Args, Clone)]
pub struct OutArgs {
    /// Write the result (with machine, kernel, CPU, layout, command) to FILE.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The switch under test, as the report names it.
    #[arg(long, default_value = "")]
    pub peer: String,
    /// The scenario, as the report names it.
    #[arg(long, default_value = "")]
    pub scenario: String,
    /// The core layout, in words (e.g. "gen=0 sink=0 switch=1").
    #[arg(long, default_value = "")]
    pub layout: String,
    /// A fact to keep with the result (KEY=VALUE), repeatable.
    #[arg(long = "note", value_parser = parse_note)]
    pub notes: Vec<(String, String)>,
}

impl FrameArgs {
    /// A generator sending these frames from `iface` (in `netns`).
    pub fn gen_config(
        &self,
        netns: &Option<String>,
        iface: &str,
        driver: DriverKind,
        stream: u16,
        core: Option<usize>,
    ) -> GenConfig {
        GenConfig {
            netns: netns.clone(),
            iface: iface.to_string(),
            driver,
            sizes: self.size,
            flows: self.flows,
            vary: self.vary,
            dst_ip: self.dst_ip,
            dst_port: self.dst_port,
            dst_mac: self.dst_mac,
            src_port: self.src_port,
            src_base: self.src_base,
            allow_default_route: self.allow_default_route,
            stream,
            core,
        }
    }
}

pub fn parse_note(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("note '{s}' is not KEY=VALUE"))
}

impl OutArgs {
    pub fn result(&self, kind: &str, extra_layout: &str) -> ResultFile {
        // The caller's description wins: it knows where the switch runs too.
        let layout = if self.layout.is_empty() {
            extra_layout.to_string()
        } else {
            self.layout.clone()
        };
        let notes: BTreeMap<String, String> = self.notes.iter().cloned().collect();
        ResultFile::new(kind, &self.peer, &self.scenario, Env::here(layout, notes))
    }

    pub fn write(&self, r: &ResultFile) -> anyhow::Result<()> {
        if let Some(p) = &self.json {
            r.write(p)?;
        }
        Ok(())
    }
}

/// Where and how fast `gen` and `flood` send.
#[derive(Args)]
pub struct SendArgs {
    /// Interface to send from.
    #[arg(long)]
    pub iface: String,
    /// Network namespace of the interface (a name under /run/netns or a path).
    #[arg(long)]
    pub netns: Option<String>,
    #[arg(long, value_enum, default_value_t = DriverKind::Auto)]
    pub driver: DriverKind,
    /// Frames per second (500k, 2M, ...) or `max`.
    #[arg(long, default_value = "max", value_parser = parse_rate)]
    pub rate: Rate,
    /// Seconds to send.
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    pub duration: f64,
    /// Core to pin the sender to.
    #[arg(long)]
    pub core: Option<usize>,
}

#[derive(Args)]
pub struct GenArgs {
    #[command(flatten)]
    pub send: SendArgs,
    /// Stop after this many frames.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Stream id in the stamps (tells several generators apart at one sink).
    #[arg(long, default_value_t = 0)]
    pub stream: u16,
    /// Trial tag in the stamps (a sink given --tag counts only these).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub tag: u16,
    #[command(flatten)]
    pub frame: FrameArgs,
    #[command(flatten)]
    pub out: OutArgs,
}

#[derive(Args)]
pub struct FloodArgs {
    #[command(flatten)]
    pub send: SendArgs,
    /// What to send.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// The address asked for (arp: IPv4, nd: IPv6) or connected to (syn: IPv4).
    #[arg(long)]
    pub target: Option<std::net::IpAddr>,
    /// syn: the TCP port of the SYNs [default: 80].
    #[arg(long)]
    pub dst_port: Option<u16>,
    /// Destination MAC of SYNs (default: resolved) and garbage (default: broadcast).
    #[arg(long, value_parser = parse_mac_arg)]
    pub dst_mac: Option<[u8; 6]>,
    /// arp, syn: draw each frame's sender address from this network
    /// (ADDR/LEN) instead of using the interface's own.
    #[arg(long, value_parser = parse_net)]
    pub sender_net: Option<(Ipv4Addr, u8)>,
    /// Seed of the random MACs, addresses and bytes (default: random).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write what was sent as JSON to FILE.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Parses `ADDR/LEN` (IPv4).
pub fn parse_net(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let bad = || format!("'{s}' is not an IPv4 network ADDR/LEN (e.g. 10.244.0.0/16)");
    let (a, l) = s.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
    let len: u8 = l.parse().map_err(|_| bad())?;
    if len == 0 || len > 32 {
        return Err(format!("'{s}': the prefix length must be 1 to 32"));
    }
    Ok((addr, len))
}

#[derive(Args)]
pub struct SinkArgs {
    /// Interface to receive on.
    #[arg(long)]
    pub iface: String,
    #[arg(long)]
    pub netns: Option<String>,
    #[arg(long, value_enum, default_value_t = DriverKind::Auto)]
    pub driver: DriverKind,
    /// UDP port the stamped frames go to.
    #[arg(long, default_value_t = 9000)]
    pub port: u16,
    /// Stop after this many seconds.
    #[arg(long, value_parser = parse_seconds)]
    pub duration: Option<f64>,
    /// Stop once nothing arrived for this many seconds (after the first frame).
    #[arg(long, default_value = "2", value_parser = parse_seconds)]
    pub idle: f64,
    /// Count only frames with this tag (0: any).
    #[arg(long, default_value_t = 0)]
    pub tag: u16,
    /// Largest frame expected, with FCS.
    #[arg(long, default_value_t = 1518)]
    pub max_size: u32,
    #[arg(long)]
    pub core: Option<usize>,
    #[command(flatten)]
    pub out: OutArgs,
}

/// A generator and a sink in one process.
#[derive(Args, Clone)]
pub struct PairArgs {
    /// Generator's interface.
    #[arg(long)]
    pub tx_iface: String,
    /// Generator's network namespace.
    #[arg(long)]
    pub tx_netns: Option<String>,
    #[arg(long, value_enum, default_value_t = DriverKind::Auto)]
    pub tx_driver: DriverKind,
    /// Sink's interface.
    #[arg(long)]
    pub rx_iface: String,
    /// Sink's network namespace.
    #[arg(long)]
    pub rx_netns: Option<String>,
    #[arg(long, value_enum, default_value_t = DriverKind::Auto)]
    pub rx_driver: DriverKind,
    /// Core for the generator.
    #[arg(long)]
    pub gen_core: Option<usize>,
    /// Core for the sink (it sleeps in poll(2) when idle, so it may share the generator's).
    #[arg(long)]
    pub sink_core: Option<usize>,
    /// Milliseconds to wait after a trial for the last frames.
    #[arg(long, default_value_t = 200)]
    pub drain_ms: u64,
    #[command(flatten)]
    pub frame: FrameArgs,
    #[command(flatten)]
    pub out: OutArgs,
}

impl PairArgs {
    /// Starts generator and sink and says on stderr how they run.
    pub fn start(&self) -> anyhow::Result<Pair> {
        let f = &self.frame;
        let gen_cfg = f.gen_config(
            &self.tx_netns,
            &self.tx_iface,
            self.tx_driver,
            0,
            self.gen_core,
        );
        let sink_cfg = SinkConfig {
            netns: self.rx_netns.clone(),
            iface: self.rx_iface.clone(),
            driver: self.rx_driver,
            port: f.dst_port,
            core: self.sink_core,
        };
        let pair = Pair::start(gen_cfg, sink_cfg, Duration::from_millis(self.drain_ms))?;
        let g = &pair.generator.info;
        eprintln!(
            "generator: {} {} -> {}; sink: {}",
            g.driver,
            g.src_mac,
            g.dst_mac,
            pair.sink_driver()
        );
        Ok(pair)
    }

    pub fn layout(&self) -> String {
        let c = |x: Option<usize>| x.map_or("unpinned".to_string(), |c| c.to_string());
        format!(
            "generator core {}, sink core {}",
            c(self.gen_core),
            c(self.sink_core)
        )
    }

    pub fn config(&self) -> serde_json::Value {
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
pub struct TrialArgs {
    #[command(flatten)]
    pub pair: PairArgs,
    /// Frames per second or `max`.
    #[arg(long, default_value = "max", value_parser = parse_rate)]
    pub rate: Rate,
    /// Seconds per trial.
    #[arg(long, default_value = "5", value_parser = parse_seconds)]
    pub duration: f64,
    /// Trials to run (each written: --json F.json, then F-2.json, ...).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Seconds of traffic at --warmup-rate first (learning, ARP), not counted.
    #[arg(long, default_value = "1", value_parser = parse_seconds)]
    pub warmup: f64,
    /// Frames per second of the warm-up.
    #[arg(long, default_value = "10k", value_parser = parse_pps)]
    pub warmup_rate: f64,
}

#[derive(Args)]
pub struct NdrArgs {
    #[command(flatten)]
    pub pair: PairArgs,
    /// Highest rate tried (default: as fast as the generator goes).
    #[arg(long, default_value = "max", value_parser = parse_rate)]
    pub max_rate: Rate,
    /// Lowest rate tried.
    #[arg(long, default_value = "10k", value_parser = parse_pps)]
    pub min_rate: f64,
    /// Stop bisecting when the interval is narrower than this (percent of its top).
    #[arg(long, default_value = "2", value_parser = parse_percent)]
    pub precision: f64,
    /// Loss a PDR trial may have (percent).
    #[arg(long, default_value = "0.5", value_parser = parse_percent)]
    pub pdr_loss: f64,
    /// Seconds per trial.
    #[arg(long = "trial", default_value = "5", value_parser = parse_seconds)]
    pub trial_s: f64,
    /// Seconds of traffic at --warmup-rate before the search, and at the
    /// lowest rate after the top trial (which saturates the device), not
    /// counted.
    #[arg(long, default_value = "1", value_parser = parse_seconds)]
    pub warmup: f64,
    /// Frames per second of the warm-up.
    #[arg(long, default_value = "10k", value_parser = parse_pps)]
    pub warmup_rate: f64,
    /// Searches to run; the result is their median.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub repeats: u32,
    /// Seconds of the latency trials at 50 % and 90 % of the NDR.
    #[arg(long, default_value = "5", value_parser = parse_seconds)]
    pub latency_trial: f64,
}

#[derive(Args)]
pub struct ReportArgs {
    /// Result files, or directories of them.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Write the markdown here (default: standard output).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Draw one SVG chart per NDR scenario into this directory.
    #[arg(long)]
    pub svg_dir: Option<PathBuf>,
    /// Path of the SVG directory as the markdown should link it (default:
    /// relative to --markdown when the charts are below its directory).
    #[arg(long)]
    pub svg_link: Option<String>,
    /// The peer ratios are taken against.
    #[arg(long, default_value = "vswitch-afxdp")]
    pub baseline: String,
}

#[derive(Args)]
pub struct RecordArgs {
    /// Metric name (e.g. "TCP 1 stream").
    #[arg(long)]
    pub name: String,
    /// Unit (e.g. Gbit/s, us).
    #[arg(long)]
    pub unit: String,
    /// Which way is better.
    #[arg(long, default_value = "higher", value_parser = ["higher", "lower"])]
    pub better: String,
    /// The command that measured the values, as the report's exact
    /// commands should show it (default: this command line).
    #[arg(long)]
    pub command: Option<String>,
    /// The measured values (one per round).
    #[arg(required = true, allow_negative_numbers = true)]
    pub values: Vec<f64>,
    #[command(flatten)]
    pub out: OutArgs,
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
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
