//! A cheap monotonic clock in milliseconds.
//!
//! Workers read it once per batch; `CLOCK_MONOTONIC_COARSE` is served by the
//! vDSO, so this is not a syscall.

/// Milliseconds on the coarse monotonic clock (resolution a few ms).
#[inline]
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the call only writes to it.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}
