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
//! Modules: [`cli`] (options), [`frame`] (what is sent, the stamp),
//! [`rate`] (pacing, clock), [`nic`] (the drivers' traits, AF_XDP,
//! namespaces), [`sockets`] (AF_PACKET, UDP), [`neigh`] (the next hop's
//! MAC), [`sink`] (counting and latency), [`generator`] and [`receiver`]
//! (the two sides' threads), [`trial`] (one trial), [`ndr`] (the search),
//! [`results`] (result files), [`report`].

mod cli;
mod flood;
mod frame;
mod generator;
mod ndr;
mod neigh;
mod nic;
mod rate;
mod receiver;
mod report;
mod results;
mod sink;
mod sockets;
mod stop;
mod trial;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use cli::{Cli, Cmd, FloodArgs, GenArgs, NdrArgs, RecordArgs, ReportArgs, SinkArgs, TrialArgs};
pub use cli::{fmt_mac, parse_mac};
use receiver::SinkConfig;
use results::{Metric, fmt_pps, print_table, trial_rows};

fn main() {
    let cli = Cli::parse();
    stop::install();
    let r = match cli.cmd {
        Cmd::Gen(a) => cmd_gen(a),
        Cmd::Sink(a) => cmd_sink(a),
        Cmd::Trial(a) => cmd_trial(a),
        Cmd::Ndr(a) => cmd_ndr(a),
        Cmd::Report(a) => cmd_report(a),
        Cmd::Record(a) => cmd_record(a),
        Cmd::Flood(a) => cmd_flood(a),
    };
    if let Err(e) = r {
        eprintln!("vswitch-bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn cmd_gen(a: GenArgs) -> anyhow::Result<()> {
    let f = &a.frame;
    let g = generator::Generator::start(
        f.gen_config(
            &a.send.netns,
            &a.send.iface,
            a.send.driver,
            a.stream,
            a.send.core,
        ),
        None,
    )?;
    eprintln!(
        "gen: {} on {} ({}), {} -> {} {}:{}, {} at {}",
        g.info.driver,
        a.send.iface,
        g.info.src_mac,
        g.info.src_ip,
        g.info.dst_mac,
        f.dst_ip,
        f.dst_port,
        f.size.label(),
        a.send.rate.0.map_or("max".into(), fmt_pps)
    );
    let (r, _) = g.run(
        a.tag,
        a.send.rate.0,
        Duration::from_secs_f64(a.send.duration),
        a.count,
        Duration::ZERO,
    )?;
    r.print();
    let core = a.send.core.map_or("unpinned".into(), |c| c.to_string());
    let mut out = a.out.result("gen", &format!("generator core {core}"));
    out.generator = Some(g.info.clone());
    out.generated = Some(r);
    out.config = serde_json::json!({"iface": a.send.iface, "netns": a.send.netns, "rate": a.send.rate.0, "size": f.size.label(), "flows": f.flows});
    a.out.write(&out)
}

fn cmd_flood(a: FloodArgs) -> anyhow::Result<()> {
    a.kind.check_options(
        a.target.is_some(),
        a.dst_port.is_some(),
        a.dst_mac.is_some(),
        a.sender_net.is_some(),
    )?;
    anyhow::ensure!(
        a.send.driver != nic::DriverKind::Udp,
        "--driver udp is for the sink only"
    );
    // The result file is opened before sending: a bad path fails at once.
    let json = match &a.json {
        Some(p) => {
            Some(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => None,
    };
    let seed = a.seed.unwrap_or_else(|| fastrand::u64(..));
    let cfg = flood::FloodConfig {
        netns: a.send.netns,
        iface: a.send.iface.clone(),
        driver: a.send.driver,
        kind: a.kind,
        target: a.target,
        dst_port: a.dst_port.unwrap_or(80),
        dst_mac: a.dst_mac,
        sender_net: a.sender_net,
        seed,
        core: a.send.core,
    };
    let r = flood::run(cfg, a.send.rate.0, Duration::from_secs_f64(a.send.duration))?;
    eprintln!(
        "flood: {} from {} ({}), {} distinct frames, seed {seed}",
        r.kind.name(),
        a.send.iface,
        r.driver,
        r.distinct
    );
    r.sent.print();
    if let (Some(mut f), Some(p)) = (json, &a.json) {
        use std::io::Write;
        f.write_all((serde_json::to_string_pretty(&r)? + "\n").as_bytes())
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
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
        if a.duration.is_some_and(|d| elapsed >= d) || stop::requested() {
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
        // What makes a trial count less than it seems, said at once.
        let mut warn = String::new();
        if r.target_pps.is_some_and(|t| r.offered_pps < t * 0.95) {
            warn += "  SHORT: the generator fell behind";
        }
        if r.forgiven > 0 {
            warn += &format!("  ({} frames forgiven)", r.forgiven);
        }
        if let Some(d) = r.kernel_drops.filter(|&d| d > 0) {
            warn += &format!("  sink dropped {d}");
        }
        eprintln!(
            "trial {n}{of} {phase:<7} target {:>13}  offered {:>13}  received {:>13}  loss {:>8.4}%  p99 {:>8.1}us  elapsed {:.0} s{warn}",
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
        notes.push("generator-bound: a lower bound (see the report's note)".to_string());
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
    if let Some(max) = cfg.max_rate {
        anyhow::ensure!(
            cfg.min_rate <= max,
            "--min-rate {} is above --max-rate {}",
            fmt_pps(cfg.min_rate),
            fmt_pps(max)
        );
    }
    let mut pair = a.pair.start()?;
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
        // Links relative to the markdown file when the charts are beside it.
        let beside = a.markdown.as_ref().and_then(|m| {
            let base = m
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            dir.strip_prefix(base).ok().map(|p| p.display().to_string())
        });
        if let Some(link) = a.svg_link.as_ref().or(beside.as_ref()) {
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
}
