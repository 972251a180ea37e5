//! One trial between a generator and a sink, and what it measured.
//!
//! On one core (the usual layout on a small machine: the switch under
//! test gets the other) the generator thread reads the sink itself; on two
//! cores the sink is a thread of its own. Both live in one process, so
//! their stamps share one clock.

use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::frame;
use crate::generator::{GenConfig, GenReport, Generator};
use crate::rate::now_ns;
use crate::receiver::{Sink, SinkConfig};
use crate::sink::{Latency, SinkReport};

/// One trial: what was offered, what arrived, how late.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TrialResult {
    /// The rate asked for (`None`: as fast as the generator could).
    pub target_pps: Option<f64>,
    pub offered_pps: f64,
    pub received_pps: f64,
    pub sent: u64,
    pub received: u64,
    /// Frames sent and not received (never negative; duplicates excluded).
    pub lost: u64,
    pub loss_ratio: f64,
    pub duration_s: f64,
    /// Received throughput on the wire, counting preamble and gap (+20 B).
    pub received_gbps_l1: f64,
    pub latency: Latency,
    pub duplicates: u64,
    pub reordered: u64,
    /// Frames the sink's socket dropped (ring full, no buffer): loss the
    /// instrument caused, included in `lost`.
    pub kernel_drops: Option<u64>,
    pub tx_errors: u64,
    /// Frames the generator's pacer gave up after stalls.
    #[serde(default)]
    pub forgiven: u64,
    /// Seconds each core was busy (user, system, softirq...) while the
    /// generator ran, from /proc/stat: everything on the machine, the
    /// switch under test included.
    #[serde(default)]
    pub cpu_busy_s: Vec<f64>,
    /// Wall-clock seconds over which `cpu_busy_s` was measured (the
    /// generator's run, and the drain of an inline sink).
    #[serde(default)]
    pub cpu_window_s: f64,
}

impl TrialResult {
    pub fn from_reports(target: Option<f64>, g: &GenReport, s: &SinkReport) -> TrialResult {
        let lost = g.sent.saturating_sub(s.received);
        let secs = g.elapsed_s.max(1e-9);
        TrialResult {
            target_pps: target,
            offered_pps: g.offered_pps,
            received_pps: s.received as f64 / secs,
            sent: g.sent,
            received: s.received,
            lost,
            loss_ratio: if g.sent > 0 {
                lost as f64 / g.sent as f64
            } else {
                0.0
            },
            duration_s: g.elapsed_s,
            received_gbps_l1: (s.bytes + 20 * s.received) as f64 * 8.0 / secs / 1e9,
            latency: s.latency.clone(),
            duplicates: s.duplicates,
            reordered: s.reordered,
            kernel_drops: s.kernel_drops,
            tx_errors: g.tx_errors,
            forgiven: g.forgiven,
            cpu_busy_s: Vec::new(),
            cpu_window_s: 0.0,
        }
    }
}

/// Busy clock ticks of each core (all but idle, iowait and steal), from
/// /proc/stat.
pub fn cpu_busy_ticks() -> Vec<u64> {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    parse_cpu_busy(&text)
}

fn parse_cpu_busy(text: &str) -> Vec<u64> {
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq: steal (time the
            // hypervisor gave to others) is not ours; guest is in user.
            f.iter().take(7).sum::<u64>()
                - f.get(3).copied().unwrap_or(0)
                - f.get(4).copied().unwrap_or(0)
        })
        .collect()
}

/// A generator and a sink, driven together.
pub struct Pair {
    pub generator: Generator,
    /// The sink thread, when the sink has a core of its own; else the
    /// generator reads the sink itself.
    sink: Option<Sink>,
    /// Time after the generator stops for the last frames to arrive.
    pub drain: Duration,
    next_tag: u16,
}

impl Pair {
    /// Starts the generator first (it may need the sink's pod to answer ARP
    /// before the sink takes over its interface), then the sink: inside
    /// the generator's thread when both are pinned to the same core.
    pub fn start(
        gen_cfg: GenConfig,
        sink_cfg: SinkConfig,
        drain: Duration,
    ) -> anyhow::Result<Pair> {
        let max = (gen_cfg.sizes.max() - frame::FCS) as usize;
        if gen_cfg.core.is_some() && gen_cfg.core == sink_cfg.core {
            let generator =
                Generator::start(gen_cfg, Some((sink_cfg, max))).context("generator")?;
            return Ok(Pair {
                generator,
                sink: None,
                drain,
                next_tag: 1,
            });
        }
        let generator = Generator::start(gen_cfg, None).context("generator")?;
        let sink = Sink::start(sink_cfg, max).context("sink")?;
        Ok(Pair {
            generator,
            sink: Some(sink),
            drain,
            next_tag: 1,
        })
    }

    /// How the sink receives (`afxdp native copy`, `udp socket`...).
    pub fn sink_driver(&self) -> String {
        match &self.sink {
            Some(s) => s.driver.clone(),
            None => self.generator.info.inline_sink.clone().unwrap_or_default(),
        }
    }

    /// One trial at `rate` for `duration`.
    pub fn trial(&mut self, rate: Option<f64>, duration: Duration) -> anyhow::Result<TrialResult> {
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1).max(1);
        if let Some(sink) = &self.sink {
            sink.begin(tag)?;
            // Let the sink thread begin (and its gratuitous ARP cross the
            // switch); an inline sink begins inside the generator's run.
            std::thread::sleep(Duration::from_millis(20));
        }
        let (before, t0) = (cpu_busy_ticks(), now_ns());
        let (g, inline) = self.generator.run(tag, rate, duration, None, self.drain)?;
        let (after, t1) = (cpu_busy_ticks(), now_ns());
        anyhow::ensure!(!crate::stop::requested(), "interrupted");
        let s = match (&self.sink, inline) {
            (Some(sink), _) => {
                std::thread::sleep(self.drain);
                sink.counts()?
            }
            (None, Some(s)) => s,
            (None, None) => anyhow::bail!("the generator reported no sink counts"),
        };
        let mut r = TrialResult::from_reports(rate, &g, &s);
        // SAFETY: sysconf only reads a configuration value.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        r.cpu_busy_s = after
            .iter()
            .zip(&before)
            .map(|(a, b)| a.saturating_sub(*b) as f64 / hz)
            .collect();
        r.cpu_window_s = t1.saturating_sub(t0) as f64 / 1e9;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_ticks_leave_out_idle_and_iowait() {
        let stat = "cpu  10 0 10 100 5 0 0 0 0 0
cpu0 1 2 3 100 50 4 5 6 7 8
cpu1 0 0 0 9 0 0 0 0 0 0
intr 1 2 3
";
        assert_eq!(parse_cpu_busy(stat), vec![15, 0]);
        assert!(!cpu_busy_ticks().is_empty());
    }
}
