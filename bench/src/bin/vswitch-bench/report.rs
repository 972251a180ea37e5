//! `vswitch-bench report`: result files in, markdown tables and SVG charts
//! out. Every number in the tables comes from a file; several files of one
//! peer and scenario (rounds) show as `median [min–max]`. Each scenario's
//! table has a ratio column per peer against the baseline peer, for the
//! scenario's first metric.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::ndr::median;
use crate::results::ResultFile;

/// One measured quantity of a peer in a scenario, over rounds.
#[derive(Debug, Clone, PartialEq)]
struct Cell {
    unit: String,
    values: Vec<f64>,
    /// Some value is only a lower bound: the generator, not the switch,
    /// was the limit (no loss at its highest rate).
    at_least: bool,
    /// The lowest rate a search tried: a 0 here means "below it".
    floor: Option<f64>,
}

/// scenario → metric (in first-seen order) → peer → cell.
#[derive(Debug, Default)]
struct Table {
    metrics: Vec<String>,
    peers: Vec<String>,
    cells: BTreeMap<(String, String), Cell>,
}

#[derive(Debug, Default)]
pub struct Report {
    /// Scenario names in first-seen order.
    order: Vec<String>,
    tables: BTreeMap<String, Table>,
    files: Vec<ResultFile>,
}

impl Report {
    fn add(&mut self, scenario: &str, peer: &str, metric: &str, unit: &str, v: f64) {
        self.add_bound(scenario, peer, metric, unit, v, false);
    }

    fn add_bound(
        &mut self,
        scenario: &str,
        peer: &str,
        metric: &str,
        unit: &str,
        v: f64,
        at_least: bool,
    ) {
        if !self.tables.contains_key(scenario) {
            self.order.push(scenario.to_string());
        }
        let t = self.tables.entry(scenario.to_string()).or_default();
        if !t.metrics.iter().any(|m| m == metric) {
            t.metrics.push(metric.to_string());
        }
        if !t.peers.iter().any(|p| p == peer) {
            t.peers.push(peer.to_string());
        }
        let c = t
            .cells
            .entry((metric.to_string(), peer.to_string()))
            .or_insert_with(|| Cell {
                unit: unit.to_string(),
                values: Vec::new(),
                at_least: false,
                floor: None,
            });
        c.values.push(v);
        c.at_least |= at_least;
    }

    /// A search's rate: 0 (nothing passed) reads as "below `floor`".
    #[allow(clippy::too_many_arguments)]
    fn add_rate(
        &mut self,
        scenario: &str,
        peer: &str,
        metric: &str,
        v: f64,
        at_least: bool,
        floor: Option<f64>,
    ) {
        self.add_bound(scenario, peer, metric, "Mpps", v, at_least);
        if let Some(c) = self
            .tables
            .get_mut(scenario)
            .and_then(|t| t.cells.get_mut(&(metric.to_string(), peer.to_string())))
        {
            c.floor = c.floor.or(floor);
        }
    }

    /// Adds what one result file measured.
    pub fn add_file(&mut self, f: ResultFile) {
        let (s, p) = (f.scenario.clone(), f.peer.clone());
        if let Some(n) = &f.ndr {
            let floor = f
                .config
                .pointer("/search/min_rate")
                .and_then(|v| v.as_f64())
                .map(|pps| pps / 1e6);
            for run in &n.runs {
                let bound = run.generator_bound;
                self.add_rate(&s, &p, "NDR", run.ndr.rate_pps / 1e6, bound, floor);
                self.add_rate(&s, &p, "PDR 0.5%", run.pdr.rate_pps / 1e6, bound, floor);
            }
            for l in &n.latency {
                let pct = (l.fraction * 100.0).round();
                let lat = &l.result.latency;
                self.add(&s, &p, &format!("p50 @{pct}% NDR"), "us", lat.p50_us);
                self.add(&s, &p, &format!("p99 @{pct}% NDR"), "us", lat.p99_us);
                // Latency of a trial that lost frames is the latency of
                // the frames that made it: show the loss beside it.
                self.add(
                    &s,
                    &p,
                    &format!("loss @{pct}% NDR"),
                    "%",
                    l.result.loss_ratio * 100.0,
                );
            }
        }
        if let Some(t) = &f.trial {
            self.add(&s, &p, "received", "Mpps", t.received_pps / 1e6);
            self.add(&s, &p, "offered", "Mpps", t.offered_pps / 1e6);
            self.add(&s, &p, "loss", "%", t.loss_ratio * 100.0);
            if t.latency.count > 0 {
                self.add(&s, &p, "p50", "us", t.latency.p50_us);
                self.add(&s, &p, "p99", "us", t.latency.p99_us);
            }
        }
        if let Some(m) = &f.metric {
            for &v in &m.values {
                self.add(&s, &p, &m.name, &m.unit, v);
            }
        }
        self.files.push(f);
    }

    pub fn load(paths: &[PathBuf]) -> anyhow::Result<Report> {
        let mut r = Report::default();
        for p in paths {
            if p.is_dir() {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|e| e.extension().is_some_and(|x| x == "json"))
                    .collect();
                entries.sort();
                // Other JSON in a results directory (a state file) is
                // skipped with a word; a file named on its own must be a result.
                for e in entries {
                    match ResultFile::read(&e) {
                        Ok(f) => r.add_file(f),
                        Err(err) => eprintln!("vswitch-bench: skipping {err:#}"),
                    }
                }
            } else {
                r.add_file(ResultFile::read(p)?);
            }
        }
        anyhow::ensure!(!r.files.is_empty(), "no result files found");
        // Scenarios in the order they were first measured, not by file name.
        let first = |sc: &str| {
            r.files
                .iter()
                .filter(|f| f.scenario == sc)
                .map(|f| f.env.unix_time)
                .min()
        };
        let mut order = r.order.clone();
        order.sort_by_key(|sc| first(sc));
        r.order = order;
        Ok(r)
    }

    /// The markdown: machine, then one table per scenario, then the exact
    /// commands.
    pub fn markdown(&self, baseline: &str, charts: &[(String, String)]) -> String {
        let mut md = String::new();
        let envs: BTreeSet<(String, String, String, usize)> = self
            .files
            .iter()
            .map(|f| {
                (
                    f.env.host.clone(),
                    f.env.kernel.clone(),
                    f.env.cpu_model.clone(),
                    f.env.cpus,
                )
            })
            .collect();
        for (host, kernel, cpu, cpus) in &envs {
            let _ = writeln!(md, "Machine: `{host}`, kernel {kernel}, {cpus} × {cpu}.");
        }
        let layouts: BTreeSet<&str> = self
            .files
            .iter()
            .map(|f| f.env.layout.as_str())
            .filter(|l| !l.is_empty())
            .collect();
        for l in layouts {
            let _ = writeln!(md, "Cores: {l}.");
        }
        // Every distinct value of a note, per peer (runs may differ).
        let mut notes: BTreeMap<&str, BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
        for f in &self.files {
            let peer = notes.entry(f.peer.as_str()).or_default();
            for (k, v) in &f.env.notes {
                peer.entry(k).or_default().insert(v);
            }
            if let Some(g) = &f.generator {
                peer.entry("generator").or_default().insert(&g.driver);
            }
            if let Some(d) = &f.sink_driver {
                peer.entry("sink").or_default().insert(d);
            }
        }
        notes.retain(|_, kv| !kv.is_empty());
        if !notes.is_empty() {
            md.push('\n');
            for (peer, kv) in notes {
                let kv: Vec<String> = kv
                    .iter()
                    .map(|(k, v)| {
                        format!("{k}: {}", v.iter().copied().collect::<Vec<_>>().join(" / "))
                    })
                    .collect();
                let _ = writeln!(md, "- `{peer}`: {}", kv.join("; "));
            }
        }
        let _ = writeln!(
            md,
            "\nRatios are plain quotients of medians, {baseline} ÷ peer: above 1 the baseline's number is larger, which is better for rates and worse for latency and CPU."
        );
        for scenario in &self.order {
            let t = &self.tables[scenario];
            let _ = writeln!(
                md,
                "\n### {}\n",
                if scenario.is_empty() {
                    "(no --scenario)"
                } else {
                    scenario
                }
            );
            let primary = &t.metrics[0];
            let has_base = t.peers.iter().any(|p| p == baseline);
            let mut head = vec!["peer".to_string()];
            for m in &t.metrics {
                let unit = t
                    .cells
                    .iter()
                    .find(|((mm, _), _)| mm == m)
                    .map(|(_, c)| c.unit.clone())
                    .unwrap_or_default();
                head.push(format!("{m} ({unit})"));
            }
            if has_base {
                head.push(format!("{baseline} ÷ peer, {primary}"));
            }
            let _ = writeln!(md, "| {} |", head.join(" | "));
            let _ = writeln!(md, "|{}", "---|".repeat(head.len()));
            let base = t.cells.get(&(primary.clone(), baseline.to_string()));
            let (mut bounded, mut floored) = (false, false);
            for peer in &t.peers {
                let mut row = vec![format!("`{peer}`")];
                for m in &t.metrics {
                    row.push(match t.cells.get(&(m.clone(), peer.clone())) {
                        Some(c) => {
                            bounded |= c.at_least;
                            floored |= c.floor.is_some() && c.values.contains(&0.0);
                            fmt_cell(c)
                        }
                        None => "–".into(),
                    });
                }
                if has_base {
                    let v = t.cells.get(&(primary.clone(), peer.clone()));
                    row.push(match (base, v) {
                        _ if peer == baseline => "1.00".into(),
                        (Some(b), Some(v)) => fmt_ratio(b, v),
                        _ => "–".into(),
                    });
                }
                let _ = writeln!(md, "| {} |", row.join(" | "));
            }
            if bounded {
                let _ = writeln!(
                    md,
                    "\n≥: the generator, not the switch, set the limit (no loss at its highest rate, or the search stopped at a rate it could not offer), so the switch's own limit is higher (a lower bound); ratios with a bound are bounds too."
                );
            }
            if floored {
                let _ = writeln!(
                    md,
                    "\n<: every trial of the search lost frames, even at its lowest rate: the rate is below that one, not zero."
                );
            }
            for (sc, file) in charts {
                if sc == scenario {
                    let _ = writeln!(md, "\n![{scenario}]({file})");
                }
            }
        }
        let _ = writeln!(md, "\n<details><summary>Exact commands</summary>\n\n```");
        let cmds: BTreeSet<String> = self
            .files
            .iter()
            .map(|f| shell_words(&f.env.command))
            .collect();
        for c in cmds {
            let _ = writeln!(md, "{c}");
        }
        let _ = writeln!(md, "```\n</details>");
        md
    }

    /// Draws one SVG per scenario with an NDR search: loss against offered
    /// rate (every trial) and latency percentiles at 90 % of the NDR.
    /// Returns (scenario, file name) pairs.
    pub fn charts(&self, dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for scenario in &self.order {
            let files: Vec<&ResultFile> = self
                .files
                .iter()
                .filter(|f| &f.scenario == scenario && f.ndr.is_some())
                .collect();
            if files.is_empty() {
                continue;
            }
            let name = format!("{}.svg", sanitize(scenario));
            draw(&dir.join(&name), scenario, &files)?;
            out.push((scenario.clone(), name));
        }
        Ok(out)
    }
}

fn draw(path: &Path, scenario: &str, files: &[&ResultFile]) -> anyhow::Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing {}: {e}", path.display());
    // peer → (offered Mpps, loss %) points, and latency percentiles at 90 %.
    let mut loss: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    let mut lat: BTreeMap<&str, Vec<[f64; 4]>> = BTreeMap::new();
    for f in files {
        let n = f.ndr.as_ref().expect("filtered");
        let pts = loss.entry(&f.peer).or_default();
        pts.extend(
            n.trials
                .iter()
                .map(|t| (t.result.offered_pps / 1e6, t.result.loss_ratio * 100.0)),
        );
        for l in n.latency.iter().filter(|l| (l.fraction - 0.9).abs() < 1e-9) {
            let x = &l.result.latency;
            lat.entry(&f.peer)
                .or_default()
                .push([x.p50_us, x.p90_us, x.p99_us, x.p999_us]);
        }
    }
    let xmax = loss
        .values()
        .flatten()
        .map(|p| p.0)
        .fold(0.0, f64::max)
        .max(0.001)
        * 1.05;
    let ymax = loss
        .values()
        .flatten()
        .map(|p| p.1)
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.05;
    // One colour per peer in both panels, whatever data each panel has.
    let peers: Vec<&str> = loss.keys().copied().collect();
    let color =
        |peer: &str| Palette99::pick(peers.iter().position(|p| *p == peer).unwrap_or(0)).to_rgba();
    let root = SVGBackend::new(path, (1100, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(560);
    let mut c = ChartBuilder::on(&left)
        .caption(
            format!("{scenario}: loss vs offered rate"),
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)
        .map_err(|e| err(&e))?;
    c.configure_mesh()
        .x_desc("offered (Mpps)")
        .y_desc("loss (%)")
        .draw()
        .map_err(|e| err(&e))?;
    for (peer, pts) in loss.iter_mut() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = color(peer);
        c.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(*peer)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| err(&e))?;
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    let lmax = lat
        .values()
        .flatten()
        .flat_map(|a| a.iter().copied())
        .fold(1.0, f64::max)
        * 1.5;
    let mut c = ChartBuilder::on(&right)
        .caption("one-way latency at 90% of NDR", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..3.2f64, (1f64..lmax).log_scale())
        .map_err(|e| err(&e))?;
    const NAMES: [&str; 4] = ["p50", "p90", "p99", "p99.9"];
    c.configure_mesh()
        .x_labels(4)
        .x_label_formatter(&|x| {
            NAMES
                .get(x.round() as usize)
                .copied()
                .unwrap_or("")
                .to_string()
        })
        .x_desc("percentile")
        .y_desc("latency (us)")
        .draw()
        .map_err(|e| err(&e))?;
    for (peer, runs) in lat.iter() {
        let color = color(peer);
        let med: Vec<(f64, f64)> = (0..4)
            .map(|k| {
                (
                    k as f64,
                    median(&runs.iter().map(|r| r[k]).collect::<Vec<_>>()).max(1.0),
                )
            })
            .collect();
        c.draw_series(LineSeries::new(med.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(*peer)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        c.draw_series(med.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| err(&e))?;
    }
    if !lat.is_empty() {
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `baseline ÷ peer` of the medians; `≥`/`≤` when a side is a lower bound.
fn fmt_ratio(base: &Cell, peer: &Cell) -> String {
    let (b, v) = (median(&base.values), median(&peer.values));
    if v <= 0.0 {
        return "–".into();
    }
    let sign = match (base.at_least, peer.at_least) {
        (false, false) => "",
        (true, false) => "≥",
        (false, true) => "≤",
        (true, true) => return "?".into(),
    };
    format!("{sign}{:.2}", b / v)
}

/// `median [min–max]`, or the one value; `≥` for lower bounds.
fn fmt_cell(c: &Cell) -> String {
    let sign = if c.at_least { "≥" } else { "" };
    format!("{sign}{}", fmt_values(&c.values, c.floor))
}

/// `median [min–max]`; a 0 with a `floor` reads `<floor` (a search in
/// which no trial passed, not a measured zero).
fn fmt_values(v: &[f64], floor: Option<f64>) -> String {
    let f = |x: f64| match floor {
        Some(lo) if x == 0.0 => format!("<{}", fmt_number(lo)),
        _ => fmt_number(x),
    };
    if v.len() == 1 {
        return f(v[0]);
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{} [{}–{}]", f(median(v)), f(min), f(max))
}

fn fmt_number(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// A command line as a shell would need it typed.
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Env, Metric};

    fn metric(peer: &str, scenario: &str, name: &str, values: &[f64]) -> ResultFile {
        let mut f = ResultFile::new("metric", peer, scenario, Env::default());
        f.env.command = vec![
            "iperf3".into(),
            "-c".into(),
            "10.0.0.1".into(),
            "a b".into(),
        ];
        f.metric = Some(Metric {
            name: name.into(),
            unit: "Gbit/s".into(),
            better: "higher".into(),
            values: values.to_vec(),
        });
        f
    }

    #[test]
    fn tables_show_medians_ranges_and_ratios_against_the_baseline() {
        let mut r = Report::default();
        r.add_file(metric("vswitch", "tcp", "1 stream", &[2.0, 4.0, 3.0]));
        r.add_file(metric("bridge", "tcp", "1 stream", &[12.0]));
        r.add_file(metric("bridge", "tcp", "1 stream", &[6.0]));
        let md = r.markdown("vswitch", &[]);
        assert!(
            md.contains("| peer | 1 stream (Gbit/s) | vswitch ÷ peer, 1 stream |"),
            "{md}"
        );
        assert!(
            md.contains("| `vswitch` | 3.00 [2.00–4.00] | 1.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| `bridge` | 9.00 [6.00–12.0] | 0.33 |"),
            "{md}"
        );
        assert!(md.contains("iperf3 -c 10.0.0.1 'a b'"), "{md}");
    }

    #[test]
    fn generator_bound_rates_are_lower_bounds_and_so_are_their_ratios() {
        use crate::ndr::{Found, NdrOutcome, SearchRun};
        let ndr = |peer: &str, rate: f64, bound: bool| {
            let mut f = ResultFile::new("ndr", peer, "l2", Env::default());
            let found = Found {
                rate_pps: rate,
                failed_at_pps: None,
            };
            f.ndr = Some(NdrOutcome {
                runs: vec![SearchRun {
                    max_offered_pps: rate,
                    generator_bound: bound,
                    ndr: found.clone(),
                    pdr: found,
                    ..Default::default()
                }],
                ..Default::default()
            });
            f
        };
        let mut r = Report::default();
        r.add_file(ndr("vs", 0.7e6, true));
        r.add_file(ndr("bridge", 1.4e6, false));
        r.add_file(ndr("ovs", 0.7e6, true));
        let md = r.markdown("vs", &[]);
        assert!(md.contains("| `vs` | ≥0.700 | ≥0.700 | 1.00 |"), "{md}");
        assert!(md.contains("| `bridge` | 1.40 | 1.40 | ≥0.50 |"), "{md}");
        assert!(md.contains("| `ovs` | ≥0.700 | ≥0.700 | ? |"), "{md}");
        assert!(md.contains("lower bound"));
    }

    #[test]
    fn a_search_where_nothing_passed_reads_below_its_lowest_rate() {
        use crate::ndr::{Found, NdrOutcome, SearchRun};
        let ndr = |peer: &str, ndr: f64, pdr: f64| {
            let mut f = ResultFile::new("ndr", peer, "l2", Env::default());
            f.config = serde_json::json!({"search": {"min_rate": 10000.0}});
            let found = |rate_pps| Found {
                rate_pps,
                failed_at_pps: None,
            };
            f.ndr = Some(NdrOutcome {
                runs: vec![SearchRun {
                    ndr: found(ndr),
                    pdr: found(pdr),
                    ..Default::default()
                }],
                ..Default::default()
            });
            f
        };
        let mut r = Report::default();
        r.add_file(ndr("vs", 1.0e6, 1.2e6));
        r.add_file(ndr("tap", 0.0, 1.0e6));
        let md = r.markdown("vs", &[]);
        assert!(md.contains("| `vs` | 1.00 | 1.20 | 1.00 |"), "{md}");
        assert!(md.contains("| `tap` | <0.010 | 1.00 | – |"), "{md}");
        assert!(md.contains("below that one, not zero"), "{md}");
    }

    #[test]
    fn charts_are_svg_files() {
        use crate::ndr::{NdrOutcome, SearchRun, SearchTrial};
        use crate::trial::TrialResult;
        let dir = std::env::temp_dir().join(format!("vsb-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = Report::default();
        for (peer, cap) in [("a", 1e6), ("b", 2e6)] {
            let mut f = ResultFile::new("ndr", peer, "l2 64B", Env::default());
            let trials = [0.5e6, 1e6, 1.5e6, 2.5e6]
                .iter()
                .map(|&o| SearchTrial {
                    repeat: 0,
                    phase: "ndr".into(),
                    result: TrialResult {
                        offered_pps: o,
                        loss_ratio: if o > cap { 1.0 - cap / o } else { 0.0 },
                        ..Default::default()
                    },
                })
                .collect();
            f.ndr = Some(NdrOutcome {
                runs: vec![SearchRun {
                    max_offered_pps: 2.5e6,
                    ..Default::default()
                }],
                trials,
                ..Default::default()
            });
            r.add_file(f);
        }
        let charts = r.charts(&dir).unwrap();
        assert_eq!(
            charts,
            vec![("l2 64B".to_string(), "l2_64B.svg".to_string())]
        );
        let svg = std::fs::read_to_string(dir.join("l2_64B.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("offered (Mpps)"));
        let md = r.markdown("a", &charts);
        assert!(md.contains("![l2 64B](l2_64B.svg)"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
