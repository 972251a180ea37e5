//! The result file every subcommand can write (`--json FILE`) and
//! `report` reads: what ran (the exact command line, the machine, kernel,
//! CPU, core layout, versions), under which peer and scenario, and what it
//! measured.
//!
//! Schema 1, one JSON object per file:
//!
//! ```text
//! { "schema": 1, "kind": "trial" | "ndr" | "gen" | "sink" | "metric",
//!   "peer": "vswitch-afxdp", "scenario": "l2-64b",
//!   "env": { "host", "kernel", "cpu_model", "cpus", "layout", "unix_time",
//!            "tool_version", "command": [...], "notes": {...} },
//!   "config": {...},   // the options that shaped the run
//!   "trial" | "ndr" | "generated" | "sink" | "metric": {...} }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::generator::{GenInfo, GenReport};
use crate::ndr::NdrOutcome;
use crate::sink::SinkReport;
use crate::trial::TrialResult;

pub const SCHEMA: u32 = 1;

/// Where and how a result was measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Env {
    pub host: String,
    pub kernel: String,
    pub cpu_model: String,
    pub cpus: usize,
    /// Which core ran what, as the caller describes it (`--layout`), or
    /// else the generator's and sink's own pinning.
    pub layout: String,
    pub unix_time: u64,
    pub tool_version: String,
    pub command: Vec<String>,
    /// Free-form facts the caller adds (`--note KEY=VALUE`): peer versions,
    /// port modes.
    pub notes: BTreeMap<String, String>,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Env {
    pub fn here(layout: String, notes: BTreeMap<String, String>) -> Env {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_default();
        Env {
            host: read_trim("/proc/sys/kernel/hostname"),
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            cpu_model,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            layout,
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            command: std::env::args().collect(),
            notes,
        }
    }
}

/// A value the scripts measured with other tools (iperf3, ping, perf).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Metric {
    pub name: String,
    pub unit: String,
    /// `higher` or `lower` is better.
    pub better: String,
    pub values: Vec<f64>,
}

/// One result file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ResultFile {
    pub schema: u32,
    pub kind: String,
    #[serde(default)]
    pub peer: String,
    #[serde(default)]
    pub scenario: String,
    pub env: Env,
    #[serde(default)]
    pub config: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<GenInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_driver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial: Option<TrialResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ndr: Option<NdrOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<GenReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<SinkReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<Metric>,
}

impl ResultFile {
    pub fn new(kind: &str, peer: &str, scenario: &str, env: Env) -> ResultFile {
        ResultFile {
            schema: SCHEMA,
            kind: kind.into(),
            peer: peer.into(),
            scenario: scenario.into(),
            env,
            ..ResultFile::default()
        }
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n")
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    }

    pub fn read(path: &Path) -> anyhow::Result<ResultFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let r: ResultFile = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!("{} is not a vswitch-bench result: {e}", path.display())
        })?;
        anyhow::ensure!(
            r.schema == SCHEMA,
            "{}: schema {} (this tool reads schema {SCHEMA})",
            path.display(),
            r.schema
        );
        Ok(r)
    }
}

/// Formats a rate in frames/s for people (`1.23 Mpps`, `850 kpps`).
pub fn fmt_pps(pps: f64) -> String {
    if pps >= 1e6 {
        format!("{:.3} Mpps", pps / 1e6)
    } else if pps >= 1e3 {
        format!("{:.1} kpps", pps / 1e3)
    } else {
        format!("{pps:.0} pps")
    }
}

/// Prints rows as an aligned table (first row: headers).
pub fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if i == 0 {
                    format!("{s:<w$}", w = widths[i])
                } else {
                    format!("{s:>w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// The rows of a trial table.
pub fn trial_rows(trials: &[(String, &TrialResult)]) -> Vec<Vec<String>> {
    let mut rows = vec![
        [
            "TRIAL", "OFFERED", "RECEIVED", "SENT", "LOST", "LOSS", "P50", "P99", "P99.9", "MAX",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (name, t) in trials {
        let l = &t.latency;
        rows.push(vec![
            name.clone(),
            fmt_pps(t.offered_pps),
            fmt_pps(t.received_pps),
            t.sent.to_string(),
            t.lost.to_string(),
            format!("{:.3}%", t.loss_ratio * 100.0),
            format!("{:.1}us", l.p50_us),
            format!("{:.1}us", l.p99_us),
            format!("{:.1}us", l.p999_us),
            format!("{:.1}us", l.max_us),
        ]);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_files_round_trip_and_refuse_other_schemas() {
        let dir = std::env::temp_dir().join(format!("vsb-results-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = ResultFile::new(
            "metric",
            "bridge",
            "tcp-1",
            Env::here("gen=0".into(), BTreeMap::new()),
        );
        r.metric = Some(Metric {
            name: "tcp".into(),
            unit: "Gbit/s".into(),
            better: "higher".into(),
            values: vec![1.5, 2.5],
        });
        let p = dir.join("a.json");
        r.write(&p).unwrap();
        let back = ResultFile::read(&p).unwrap();
        assert_eq!(back, r);
        assert!(!back.env.kernel.is_empty() && back.env.cpus > 0);
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        v["schema"] = 2.into();
        std::fs::write(&p, v.to_string()).unwrap();
        assert!(
            ResultFile::read(&p)
                .unwrap_err()
                .to_string()
                .contains("schema 2")
        );
        std::fs::write(&p, "{").unwrap();
        assert!(
            ResultFile::read(&p)
                .unwrap_err()
                .to_string()
                .contains("not a vswitch-bench result")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rates_read_well() {
        assert_eq!(fmt_pps(14_880_952.0), "14.881 Mpps");
        assert_eq!(fmt_pps(850_000.0), "850.0 kpps");
        assert_eq!(fmt_pps(12.0), "12 pps");
    }
}
