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

/// The outcome of one repeat of the search.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SearchRun {
    pub max_offered_pps: f64,
    pub generator_bound: bool,
    /// Trials whose generator offered less than 95 % of the rate asked
    /// (descheduled, a full ring): not counted as passes.
    #[serde(default)]
    pub short_trials: u32,
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
        // Known: `max` fails NDR; it fails or passes PDR.
        let mut ndr = (0.0f64, max);
        let mut pdr = if top.loss_ratio <= cfg.pdr_loss {
            (max, f64::INFINITY)
        } else {
            (0.0, max)
        };
        let (mut ndr_offered, mut pdr_offered) = (0.0f64, if pdr.0 > 0.0 { max } else { 0.0 });
        let low = cfg.min_rate.min(max);
        let bottom = run_trial("min", Some(low), &mut out)?;
        // A trial passes a criterion if its loss allows and the generator
        // really offered (nearly) the rate asked: a trial that could not
        // offer it did not test the switch there, so it bounds the search
        // from above like a failure, and counts in `short_trials`.
        let mut short = 0u32;
        let mut note = |rate: f64, r: &TrialResult, ndr: &mut (f64, f64), pdr: &mut (f64, f64)| {
            let offered_enough = r.offered_pps >= rate * MIN_OFFERED;
            if !offered_enough {
                short += 1;
            }
            for (bound, offered, pass) in [
                (ndr, &mut ndr_offered, r.lost == 0),
                (pdr, &mut pdr_offered, r.loss_ratio <= cfg.pdr_loss),
            ] {
                if pass && offered_enough {
                    bound.0 = bound.0.max(rate);
                    *offered = offered.max(r.offered_pps);
                } else {
                    bound.1 = bound.1.min(rate);
                }
            }
        };
        note(low, &bottom, &mut ndr, &mut pdr);
        if bottom.lost == 0 {
            while ndr.1 - ndr.0 > cfg.precision * ndr.1 {
                let mid = (ndr.0 + ndr.1) / 2.0;
                let r = run_trial("ndr", Some(mid), &mut out)?;
                note(mid, &r, &mut ndr, &mut pdr);
            }
        }
        if pdr.0 > 0.0 && pdr.1.is_finite() {
            pdr.0 = pdr.0.max(ndr.0);
            while pdr.1 - pdr.0 > cfg.precision * pdr.1 {
                let mid = (pdr.0 + pdr.1) / 2.0;
                let r = run_trial("pdr", Some(mid), &mut out)?;
                note(mid, &r, &mut ndr, &mut pdr);
            }
        }
        if pdr_offered < ndr_offered {
            pdr_offered = ndr_offered;
        }
        run.short_trials = short;
        run.ndr = Found {
            rate_pps: ndr_offered,
            failed_at_pps: Some(ndr.1),
        };
        run.pdr = Found {
            rate_pps: pdr_offered,
            failed_at_pps: pdr.1.is_finite().then_some(pdr.1),
        };
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
            let g = crate::generator::GenReport {
                sent,
                bytes: sent * 64,
                elapsed_s: d.as_secs_f64(),
                offered_pps: offered,
                tx_errors: 0,
            };
            let s = crate::sink::SinkReport {
                received,
                bytes: received * 64,
                ..Default::default()
            };
            Ok(TrialResult::from_reports(rate, &g, &s))
        }
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
                let g = crate::generator::GenReport {
                    sent,
                    elapsed_s: d.as_secs_f64(),
                    offered_pps: offered,
                    ..Default::default()
                };
                let s = crate::sink::SinkReport {
                    received,
                    ..Default::default()
                };
                Ok(TrialResult::from_reports(rate, &g, &s))
            }
        }
        let out = search(&mut Short, &cfg(), &mut quiet()).unwrap();
        let run = &out.runs[0];
        assert!(
            run.ndr.rate_pps <= 300e3 && run.ndr.rate_pps >= 290e3,
            "{run:?}"
        );
        assert!(run.short_trials > 0);
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
