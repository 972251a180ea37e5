//! RFC 2544-style throughput search: the no-drop rate (NDR, no frame lost)
//! and the partial-drop rate (PDR, at most `pdr_loss` lost), each found by
//! bisection to a relative precision, as FD.io CSIT reports them; then
//! latency at 50 % and 90 % of the NDR.
//!
//! The search works on the rates it *asked* for and reports the rates the
//! generator really *offered* in the passing trials. A first trial at the
//! highest rate tells whether the generator, not the device, is the limit:
//! if nothing is lost there, both rates are that trial's, marked
//! `generator_bound`.
//!
//! The search only needs a [`Device`]: the real generator/sink pair, or in
//! tests a simulated device with a known drop curve.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::trial::{Pair, TrialResult};

/// Least fraction of the asked rate a trial must offer to count as a pass.
const MIN_OFFERED: f64 = 0.95;

/// Something a trial can be run against.
pub trait Device {
    /// One trial at `rate` frames/s (`None`: as fast as the generator can).
    fn trial(&mut self, rate: Option<f64>, duration: Duration) -> anyhow::Result<TrialResult>;
}

impl Device for Pair {
    fn trial(&mut self, rate: Option<f64>, duration: Duration) -> anyhow::Result<TrialResult> {
        Pair::trial(self, rate, duration)
    }
}

/// How to search.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SearchConfig {
    /// Highest rate tried (`None`: the generator's maximum).
    pub max_rate: Option<f64>,
    /// Lowest rate tried; an NDR below it is reported as 0.
    pub min_rate: f64,
    /// Stop when the interval is narrower than this fraction of its top.
    pub precision: f64,
    /// Most loss (a fraction) a PDR trial may have.
    pub pdr_loss: f64,
    pub trial_s: f64,
    pub warmup_s: f64,
    pub warmup_rate: f64,
    pub repeats: u32,
    /// Length of the latency trials at fractions of the NDR.
    pub latency_s: f64,
}

/// One trial of a search, and why it was run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SearchTrial {
    pub repeat: u32,
    /// `max`, `min`, `ndr`, `pdr` or `latency`.
    pub phase: String,
    pub result: TrialResult,
}

/// A rate found by one search.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Found {
    /// Offered rate of the highest passing trial (0 if none passed).
    pub rate_pps: f64,
    /// Lowest asked rate that failed, if any.
    pub failed_at_pps: Option<f64>,
}

/// The outcome of one repeat of the search. With `generator_bound` the
/// rates are lower bounds: no loss at the generator's highest rate, or the
/// search stopped at a rate the generator could not offer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SearchRun {
    pub max_offered_pps: f64,
    pub generator_bound: bool,
    /// Trials whose generator offered less than 95 % of the rate asked
    /// (descheduled, a full ring): not counted as passes.
    #[serde(default)]
    pub short_trials: u32,
    /// Trials in which the sink's own socket dropped frames (counted as
    /// loss: the instrument's, not the switch's).
    #[serde(default)]
    pub sink_drop_trials: u32,
    pub ndr: Found,
    pub pdr: Found,
}

/// Latency measured at a fraction of the NDR.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LatencyAt {
    pub fraction: f64,
    pub result: TrialResult,
}

/// Everything a search found.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NdrOutcome {
    pub runs: Vec<SearchRun>,
    pub ndr_median_pps: f64,
    pub pdr_median_pps: f64,
    pub latency: Vec<LatencyAt>,
    pub trials: Vec<SearchTrial>,
}

/// What one criterion (NDR or PDR) has learned in one search: every
/// trial's asked rate and outcome. The bounds come from all of them, so a
/// result never stands above a rate that failed, even when the device's
/// results are not monotonic (a pass above a failure is disregarded).
#[derive(Debug, Default)]
struct Bounds {
    /// (asked, passed, offered, short without loss)
    points: Vec<(f64, bool, f64, bool)>,
}

impl Bounds {
    fn add(&mut self, asked: f64, pass: bool, offered: f64, short_ok: bool) {
        self.points.push((asked, pass, offered, short_ok));
    }

    /// The lowest asked rate that failed (infinite if none).
    fn hi(&self) -> f64 {
        self.points
            .iter()
            .filter(|p| !p.1)
            .map(|p| p.0)
            .fold(f64::INFINITY, f64::min)
    }

    /// The highest asked rate below `hi` that passed, and the rate that
    /// trial offered; (0, 0) if none.
    fn lo(&self) -> (f64, f64) {
        let hi = self.hi();
        self.points
            .iter()
            .filter(|p| p.1 && p.0 < hi)
            .map(|p| (p.0, p.2))
            .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a })
    }

    /// Narrow enough, or nothing left to search (all passed, or the lowest
    /// rate tried failed).
    fn done(&self, precision: f64, floor: f64) -> bool {
        let hi = self.hi();
        !hi.is_finite() || hi <= floor || hi - self.lo().0 <= precision * hi
    }

    /// The search stopped at a trial the generator could not offer, which
    /// lost nothing: the switch's own limit is higher.
    fn generator_limited(&self) -> bool {
        let hi = self.hi();
        self.points.iter().any(|p| p.0 == hi && p.3)
    }

    fn found(&self) -> Found {
        let hi = self.hi();
        Found {
            rate_pps: self.lo().1,
            failed_at_pps: hi.is_finite().then_some(hi),
        }
    }
}

/// Records one trial, asked at `asked`, in both criteria's bounds.
fn note(
    ndr: &mut Bounds,
    pdr: &mut Bounds,
    pdr_loss: f64,
    asked: f64,
    r: &TrialResult,
    run: &mut SearchRun,
) {
    // A trial that could not offer (nearly) the rate asked did not test the
    // switch there: it bounds the search from above like a failure, and if
    // it lost nothing the result is a lower bound.
    let short = r.offered_pps < asked * MIN_OFFERED;
    run.short_trials += u32::from(short);
    run.sink_drop_trials += u32::from(r.kernel_drops.unwrap_or(0) > 0);
    ndr.add(
        asked,
        r.lost == 0 && !short,
        r.offered_pps,
        short && r.lost == 0,
    );
    let pdr_ok = r.loss_ratio <= pdr_loss;
    pdr.add(asked, pdr_ok && !short, r.offered_pps, short && pdr_ok);
}

/// Median of `v` (0 for none).
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return 0.0;
    }
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// Runs the search `cfg.repeats` times; `progress` hears each trial.
pub fn search(
    dev: &mut dyn Device,
    cfg: &SearchConfig,
    progress: &mut dyn FnMut(&str, usize, &TrialResult),
) -> anyhow::Result<NdrOutcome> {
    anyhow::ensure!(
        cfg.precision > 0.0 && cfg.precision < 1.0,
        "precision must be between 0 and 1"
    );
    anyhow::ensure!(cfg.repeats >= 1, "repeats must be at least 1");
    let mut out = NdrOutcome::default();
    let secs = |s: f64| Duration::from_secs_f64(s.max(0.001));
    if cfg.warmup_s > 0.0 {
        dev.trial(Some(cfg.warmup_rate), secs(cfg.warmup_s))?;
    }
    let mut n = 0usize;
    for repeat in 0..cfg.repeats {
        let mut run_trial = |phase: &str, rate: Option<f64>, out: &mut NdrOutcome| {
            // The top trial saturated the device and left its queues full:
            // a warm-up at the lowest rate (not recorded) lets it recover,
            // so that the lowest rate's trial measures the rate, not the
            // recovery.
            if phase == "min" && cfg.warmup_s > 0.0 {
                dev.trial(rate, secs(cfg.warmup_s))?;
            }
            let r = dev.trial(rate, secs(cfg.trial_s))?;
            n += 1;
            progress(phase, n, &r);
            out.trials.push(SearchTrial {
                repeat,
                phase: phase.into(),
                result: r.clone(),
            });
            anyhow::Ok(r)
        };
        let top = run_trial("max", cfg.max_rate, &mut out)?;
        let max = top.offered_pps;
        let mut run = SearchRun {
            max_offered_pps: max,
            ..SearchRun::default()
        };
        if top.lost == 0 {
            run.generator_bound = true;
            run.ndr.rate_pps = max;
            run.pdr.rate_pps = max;
            out.runs.push(run);
            continue;
        }
        let (mut ndr, mut pdr) = (Bounds::default(), Bounds::default());
        note(&mut ndr, &mut pdr, cfg.pdr_loss, max, &top, &mut run);
        let low = cfg.min_rate.min(max);
        let bottom = run_trial("min", Some(low), &mut out)?;
        note(&mut ndr, &mut pdr, cfg.pdr_loss, low, &bottom, &mut run);
        while !ndr.done(cfg.precision, low) {
            let mid = (ndr.lo().0 + ndr.hi()) / 2.0;
            let r = run_trial("ndr", Some(mid), &mut out)?;
            note(&mut ndr, &mut pdr, cfg.pdr_loss, mid, &r, &mut run);
        }
        while !pdr.done(cfg.precision, low) {
            let mid = (pdr.lo().0 + pdr.hi()) / 2.0;
            let r = run_trial("pdr", Some(mid), &mut out)?;
            note(&mut ndr, &mut pdr, cfg.pdr_loss, mid, &r, &mut run);
        }
        run.generator_bound = ndr.generator_limited() || pdr.generator_limited();
        run.ndr = ndr.found();
        run.pdr = pdr.found();
        if run.pdr.rate_pps < run.ndr.rate_pps {
            // Every NDR pass is a PDR pass; a lower PDR came from a later
            // failure below it (results that are not monotonic).
            run.pdr.rate_pps = run.ndr.rate_pps;
        }
        out.runs.push(run);
    }
    out.ndr_median_pps = median(&out.runs.iter().map(|r| r.ndr.rate_pps).collect::<Vec<_>>());
    out.pdr_median_pps = median(&out.runs.iter().map(|r| r.pdr.rate_pps).collect::<Vec<_>>());
    if cfg.latency_s > 0.0 && out.ndr_median_pps > 0.0 {
        for fraction in [0.5, 0.9] {
            let r = dev.trial(Some(out.ndr_median_pps * fraction), secs(cfg.latency_s))?;
            n += 1;
            progress("latency", n, &r);
            out.latency.push(LatencyAt {
                fraction,
                result: r,
            });
        }
    }
    Ok(out)
}

/// Trials one repeat of the search takes at most (for progress lines).
pub fn expected_trials(cfg: &SearchConfig) -> usize {
    let steps = (1.0 / cfg.precision).log2().ceil().max(1.0) as usize + 1;
    2 + 2 * steps
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The result of a trial of 64-byte frames that offered `offered`,
    /// sent `sent` and saw `received` arrive in `d`.
    fn reported(
        rate: Option<f64>,
        offered: f64,
        sent: u64,
        received: u64,
        d: Duration,
    ) -> TrialResult {
        let g = crate::generator::GenReport {
            sent,
            bytes: sent * 64,
            elapsed_s: d.as_secs_f64(),
            offered_pps: offered,
            ..Default::default()
        };
        let s = crate::sink::SinkReport {
            received,
            bytes: received * 64,
            ..Default::default()
        };
        TrialResult::from_reports(rate, &g, &s)
    }

    /// A device that forwards up to `capacity` frames/s and drops the
    /// excess; its generator reaches at most `gen_max`.
    struct Sim {
        capacity: f64,
        gen_max: f64,
        trials: usize,
    }

    impl Device for Sim {
        fn trial(&mut self, rate: Option<f64>, d: Duration) -> anyhow::Result<TrialResult> {
            self.trials += 1;
            let offered = rate.unwrap_or(f64::INFINITY).min(self.gen_max);
            let sent = (offered * d.as_secs_f64()).round() as u64;
            let received = if offered <= self.capacity {
                sent
            } else {
                (sent as f64 * self.capacity / offered).floor() as u64
            };
            Ok(reported(rate, offered, sent, received, d))
        }
    }

    /// A device that loses 1 % of the first trial after one it could not
    /// carry (its queues still draining), and nothing below `capacity`
    /// otherwise.
    struct Recovering {
        capacity: f64,
        saturated: bool,
    }

    impl Device for Recovering {
        fn trial(&mut self, rate: Option<f64>, d: Duration) -> anyhow::Result<TrialResult> {
            let offered = rate.unwrap_or(f64::INFINITY).min(1_000_000.0);
            let sent = (offered * d.as_secs_f64()).round() as u64;
            let received = if offered > self.capacity {
                (sent as f64 * self.capacity / offered).floor() as u64
            } else if self.saturated {
                sent - sent / 100
            } else {
                sent
            };
            self.saturated = offered > self.capacity;
            Ok(reported(rate, offered, sent, received, d))
        }
    }

    #[test]
    fn the_lowest_rate_is_measured_after_the_device_recovered() {
        let mut c = cfg();
        // Without a warm-up, the lowest rate's trial pays for the top
        // trial: nothing passes.
        let mut dev = Recovering {
            capacity: 300_000.0,
            saturated: false,
        };
        let out = search(&mut dev, &c, &mut quiet()).unwrap();
        assert_eq!(out.runs[0].pdr.rate_pps, 0.0);
        // With one, it is measured after the device recovered, and the
        // search goes on from there (never above the capacity).
        c.warmup_s = 0.1;
        let mut dev = Recovering {
            capacity: 300_000.0,
            saturated: false,
        };
        let out = search(&mut dev, &c, &mut quiet()).unwrap();
        let min = out.trials.iter().find(|t| t.phase == "min").unwrap();
        assert_eq!(min.result.lost, 0, "the recorded lowest-rate trial");
        let ndr = out.runs[0].ndr.rate_pps;
        assert!(ndr > 0.0 && ndr <= 300_000.0, "ndr {ndr}");
    }

    fn cfg() -> SearchConfig {
        SearchConfig {
            max_rate: None,
            min_rate: 1_000.0,
            precision: 0.01,
            pdr_loss: 0.005,
            trial_s: 1.0,
            warmup_s: 0.0,
            warmup_rate: 1_000.0,
            repeats: 1,
            latency_s: 0.0,
        }
    }

    fn quiet() -> impl FnMut(&str, usize, &TrialResult) {
        |_: &str, _: usize, _: &TrialResult| {}
    }

    #[test]
    fn finds_ndr_and_pdr_within_precision_never_above() {
        for capacity in [50_000.0, 733_000.0, 2_400_000.0] {
            let mut dev = Sim {
                capacity,
                gen_max: 5_000_000.0,
                trials: 0,
            };
            let c = cfg();
            let out = search(&mut dev, &c, &mut quiet()).unwrap();
            let run = &out.runs[0];
            assert!(!run.generator_bound);
            let ndr = run.ndr.rate_pps;
            assert!(
                ndr <= capacity && ndr >= capacity * (1.0 - 2.0 * c.precision),
                "ndr {ndr} for {capacity}"
            );
            // Loss ≤ 0.5 % holds up to capacity / 0.995.
            let pdr_true = capacity / (1.0 - c.pdr_loss);
            let pdr = run.pdr.rate_pps;
            assert!(
                pdr <= pdr_true && pdr >= pdr_true * (1.0 - 2.0 * c.precision),
                "pdr {pdr} vs {pdr_true}"
            );
            assert!(dev.trials <= expected_trials(&c), "{} trials", dev.trials);
            assert_eq!(out.ndr_median_pps, ndr);
        }
    }

    /// A device whose generator falls short above `gen_max` without
    /// saying so: such trials never pass, even without loss.
    #[test]
    fn trials_that_did_not_offer_the_rate_do_not_pass() {
        struct Short;
        impl Device for Short {
            fn trial(&mut self, rate: Option<f64>, d: Duration) -> anyhow::Result<TrialResult> {
                let asked = rate.unwrap_or(1e6);
                // Offers only 60 % of what it is asked above 300 k, loses
                // nothing; at the top (max) it offers 1 M and loses some.
                let offered = if rate.is_none() {
                    1e6
                } else if asked > 300e3 {
                    asked * 0.6
                } else {
                    asked
                };
                let sent = (offered * d.as_secs_f64()) as u64;
                let received = if rate.is_none() { sent / 2 } else { sent };
                Ok(reported(rate, offered, sent, received, d))
            }
        }
        let out = search(&mut Short, &cfg(), &mut quiet()).unwrap();
        let run = &out.runs[0];
        assert!(
            run.ndr.rate_pps <= 300e3 && run.ndr.rate_pps >= 290e3,
            "{run:?}"
        );
        assert!(run.short_trials > 0);
        // It stopped where the generator could not go on: a lower bound.
        assert!(run.generator_bound);
    }

    /// Results that are not monotonic: the top passes PDR, a lower rate
    /// fails it. No rate at or above a failure is reported.
    #[test]
    fn a_failure_below_a_pass_bounds_the_result() {
        struct Bumpy;
        impl Device for Bumpy {
            fn trial(&mut self, rate: Option<f64>, d: Duration) -> anyhow::Result<TrialResult> {
                let offered = rate.unwrap_or(1e6);
                // 0.3 % loss at and above 650 k, 1 % between 550 k and 650 k,
                // none below.
                let loss = if offered >= 650e3 {
                    0.003
                } else if offered >= 550e3 {
                    0.01
                } else {
                    0.0
                };
                let sent = (offered * d.as_secs_f64()) as u64;
                let received = sent - (sent as f64 * loss) as u64;
                Ok(reported(rate, offered, sent, received, d))
            }
        }
        let out = search(&mut Bumpy, &cfg(), &mut quiet()).unwrap();
        let run = &out.runs[0];
        let pdr_fail = run.pdr.failed_at_pps.expect("a PDR failure");
        assert!(pdr_fail < 650e3, "{run:?}");
        assert!(
            run.pdr.rate_pps < 550e3 && run.pdr.rate_pps >= 540e3,
            "{run:?}"
        );
        assert!(run.ndr.rate_pps < 550e3, "{run:?}");
        // Every reported rate was offered by a trial that passed.
        for (rate, ok) in [(run.ndr.rate_pps, 0.0), (run.pdr.rate_pps, 0.005)] {
            let passed =
                |t: &SearchTrial| t.result.offered_pps == rate && t.result.loss_ratio <= ok;
            assert!(out.trials.iter().any(passed), "{rate}");
        }
    }

    /// A tiny --min-rate that fails ends the search at once (no bisection
    /// below it, where each trial would take ever longer).
    #[test]
    fn nothing_is_searched_below_the_lowest_rate() {
        let mut dev = Sim {
            capacity: 0.5,
            gen_max: 1e6,
            trials: 0,
        };
        let c = SearchConfig {
            min_rate: 1.0,
            ..cfg()
        };
        let out = search(&mut dev, &c, &mut quiet()).unwrap();
        assert_eq!(out.runs[0].ndr.rate_pps, 0.0);
        assert_eq!(dev.trials, 2);
    }

    #[test]
    fn a_generator_slower_than_the_device_is_reported_as_the_limit() {
        let mut dev = Sim {
            capacity: 10e6,
            gen_max: 1e6,
            trials: 0,
        };
        let out = search(&mut dev, &cfg(), &mut quiet()).unwrap();
        assert!(out.runs[0].generator_bound);
        assert_eq!(out.runs[0].ndr.rate_pps, 1e6);
        assert_eq!(dev.trials, 1);
    }

    #[test]
    fn a_device_losing_at_the_lowest_rate_has_ndr_zero() {
        let mut dev = Sim {
            capacity: 10.0,
            gen_max: 1e6,
            trials: 0,
        };
        let out = search(&mut dev, &cfg(), &mut quiet()).unwrap();
        assert_eq!(out.runs[0].ndr.rate_pps, 0.0);
        assert_eq!(dev.trials, 2);
    }

    #[test]
    fn repeats_report_the_median_and_latency_trials_run_at_fractions() {
        let mut dev = Sim {
            capacity: 100_000.0,
            gen_max: 1e6,
            trials: 0,
        };
        let c = SearchConfig {
            repeats: 3,
            latency_s: 1.0,
            ..cfg()
        };
        let mut lines = 0;
        let out = search(&mut dev, &c, &mut |_: &str, _: usize, _: &TrialResult| {
            lines += 1
        })
        .unwrap();
        assert_eq!(out.runs.len(), 3);
        assert_eq!(out.latency.len(), 2);
        assert_eq!(
            out.latency[0].result.target_pps,
            Some(out.ndr_median_pps * 0.5)
        );
        assert_eq!(lines, out.trials.len() + 2);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
