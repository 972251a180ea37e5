//! The generator's rate controller and clock.
//!
//! The pacer keeps the count of frames sent on the line `rate × elapsed`:
//! each call says how many frames are due now. A generator that falls
//! behind (descheduled, a full TX ring) may catch up by at most
//! [`MAX_DEBT_NS`] of time (and at least one burst), so a stall does not
//! turn into a long line-rate burst that a smooth sender would never
//! produce (at 1 Mpps a 1 ms catch-up would be 1,000 frames back to back,
//! the Linux bridge's whole backlog queue); the frames it gives up are
//! counted (`forgiven`), and the trial reports the rate it really offered,
//! which is what every result quotes.

/// Nanoseconds on `CLOCK_MONOTONIC`, the clock every generator and sink on
/// one host shares: a sink's receive time minus a stamp's send time is the
/// one-way latency, whichever process or thread wrote either.
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the call only writes to it.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// How far (in time) a late generator may catch up.
pub const MAX_DEBT_NS: u64 = 100_000;

/// Frames due at a constant rate, or as many as the caller can send.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// Frames per second; `None` sends as fast as possible.
    rate: Option<f64>,
    start_ns: u64,
    /// Frames the line has accounted for (sent, or forgiven after a stall).
    credited: u64,
    /// Frames forgiven after stalls.
    forgiven: u64,
}

impl Pacer {
    pub fn new(rate: Option<f64>, start_ns: u64) -> Self {
        Pacer {
            rate,
            start_ns,
            credited: 0,
            forgiven: 0,
        }
    }

    /// Frames due at `now_ns`, at most `burst`. The caller reports what it
    /// really sent with [`Pacer::sent`].
    #[inline]
    pub fn due(&mut self, now_ns: u64, burst: u64) -> u64 {
        let Some(rate) = self.rate else {
            return burst;
        };
        let elapsed = now_ns.saturating_sub(self.start_ns) as f64 / 1e9;
        let line = (rate * elapsed) as u64;
        let max_debt = ((rate * MAX_DEBT_NS as f64 / 1e9) as u64).max(burst);
        if line > self.credited + max_debt {
            // Fell behind by more than the allowed debt: forgive the rest.
            self.forgiven += line - max_debt - self.credited;
            self.credited = line - max_debt;
        }
        line.saturating_sub(self.credited).min(burst)
    }

    /// Records `n` frames sent.
    #[inline]
    pub fn sent(&mut self, n: u64) {
        self.credited += n;
    }

    /// Frames given up after stalls so far.
    pub fn forgiven(&self) -> u64 {
        self.forgiven
    }

    /// Nanoseconds until the next frame is due (0 if one is due now).
    pub fn wait_ns(&self, now_ns: u64) -> u64 {
        let Some(rate) = self.rate else { return 0 };
        let next_at = self.start_ns as f64 + (self.credited + 1) as f64 * 1e9 / rate;
        (next_at - now_ns as f64).max(0.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a pacer with a fake clock stepping `step_ns`, sending all
    /// that is due at each step (in bursts); returns frames sent after
    /// `total_ns`.
    fn drive(rate: f64, step_ns: u64, total_ns: u64, burst: u64) -> u64 {
        let mut p = Pacer::new(Some(rate), 0);
        let mut sent = 0;
        let mut t = 0;
        while t <= total_ns {
            loop {
                let n = p.due(t, burst);
                if n == 0 {
                    break;
                }
                p.sent(n);
                sent += n;
            }
            t += step_ns;
        }
        sent
    }

    #[test]
    fn keeps_the_rate_at_any_polling_step() {
        for rate in [1_000.0, 100_000.0, 1_000_000.0, 14_880_952.0] {
            for step in [100u64, 10_000, 100_000] {
                let sent = drive(rate, step, 1_000_000_000, 64) as f64;
                // One second: within one frame plus one step's worth.
                let slack = 1.0 + rate * step as f64 / 1e9;
                assert!(
                    (sent - rate).abs() <= slack.max(rate * 0.001),
                    "rate {rate} step {step}: sent {sent}"
                );
            }
        }
    }

    #[test]
    fn a_stall_is_not_caught_up_in_one_burst() {
        let mut p = Pacer::new(Some(1_000_000.0), 0);
        // 10 ms asleep: 10,000 frames due, but only 100 µs of debt allowed.
        let mut total = 0;
        loop {
            let n = p.due(10_000_000, 64);
            if n == 0 {
                break;
            }
            p.sent(n);
            total += n;
        }
        assert_eq!(total, 100);
        assert_eq!(p.forgiven(), 9_900);
        assert_eq!(total + p.forgiven(), 10_000);
    }

    #[test]
    fn unlimited_sends_full_bursts_and_never_waits() {
        let mut p = Pacer::new(None, 0);
        assert_eq!(p.due(0, 64), 64);
        assert_eq!(p.wait_ns(0), 0);
    }

    #[test]
    fn wait_says_when_the_next_frame_is_due() {
        let mut p = Pacer::new(Some(1_000.0), 0);
        assert_eq!(p.due(0, 64), 0);
        assert_eq!(p.wait_ns(0), 1_000_000);
        assert_eq!(p.due(1_000_000, 64), 1);
        p.sent(1);
        assert_eq!(p.wait_ns(1_000_000), 1_000_000);
    }

    #[test]
    fn clock_moves_forward() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a && a > 0);
    }
}
