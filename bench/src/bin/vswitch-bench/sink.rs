//! What a sink counts: stamped frames per stream (received, duplicates,
//! reordered, gaps in the sequence), frames of other trials and foreign
//! frames, and one-way latency in an HdrHistogram.
//!
//! Latency is the sink's receive time minus the stamp's send time on the
//! same `CLOCK_MONOTONIC`: on one host no clock error, but the stamp is
//! written as the frame enters the generator's TX ring and read when the
//! sink reads its ring, so the time in both rings is included (an upper
//! bound on the switch's latency). Across hosts it would need synchronised
//! clocks; this tool does not claim it.

use std::collections::HashMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::frame::{self, Stamp};

/// Sequence numbers a stream remembers for duplicate detection.
const WINDOW: u32 = 1 << 16;
/// Largest latency the histogram holds (60 s, in ns).
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// One stream's sequence bookkeeping.
#[derive(Debug)]
struct Stream {
    received: u64,
    duplicates: u64,
    reordered: u64,
    /// Highest sequence number seen.
    max_seq: Option<u32>,
    /// Bit `s % WINDOW` is set when `s` in `(max_seq - WINDOW, max_seq]` was seen.
    seen: Vec<u64>,
}

impl Stream {
    fn new() -> Stream {
        Stream {
            received: 0,
            duplicates: 0,
            reordered: 0,
            max_seq: None,
            seen: vec![0; (WINDOW / 64) as usize],
        }
    }

    fn bit(&mut self, seq: u32) -> (&mut u64, u64) {
        let i = (seq % WINDOW) as usize;
        (&mut self.seen[i / 64], 1u64 << (i % 64))
    }

    /// Records `seq`; false if it is a duplicate.
    fn record(&mut self, seq: u32) -> bool {
        match self.max_seq {
            Some(max) if seq <= max => {
                if max - seq >= WINDOW {
                    // Too old to tell: count it as late, not as a duplicate.
                    self.received += 1;
                    self.reordered += 1;
                    return true;
                }
                let (word, mask) = self.bit(seq);
                if *word & mask != 0 {
                    self.duplicates += 1;
                    return false;
                }
                *word |= mask;
                self.received += 1;
                self.reordered += 1;
                true
            }
            _ => {
                let from = self.max_seq.map_or(0, |m| m + 1);
                if seq - from >= WINDOW {
                    self.seen.iter_mut().for_each(|w| *w = 0);
                } else {
                    for s in from..seq {
                        let (word, mask) = self.bit(s);
                        *word &= !mask;
                    }
                }
                let (word, mask) = self.bit(seq);
                *word |= mask;
                self.max_seq = Some(seq);
                self.received += 1;
                true
            }
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub min_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

/// One stream's counts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StreamReport {
    pub stream: u16,
    pub received: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Sequence numbers below the highest seen that never arrived.
    pub gaps: u64,
}

/// Everything a sink saw of one trial.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SinkReport {
    /// Stamped frames of this trial, duplicates not included.
    pub received: u64,
    /// Bytes of those frames as sizes count them (with FCS).
    pub bytes: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub gaps: u64,
    /// Stamped frames of another trial (late arrivals).
    pub stale: u64,
    /// Frames without a stamp for this sink's port (ARP, other traffic).
    pub foreign: u64,
    /// Frames stamped later than they were received (clock trouble).
    pub clock_errors: u64,
    pub streams: Vec<StreamReport>,
    pub latency: Latency,
    /// Frames the kernel dropped before the sink could read them.
    pub kernel_drops: Option<u64>,
}

/// A sink's counters for the trial with tag `tag` (0: any tag).
pub struct SinkStats {
    tag: u16,
    port: u16,
    streams: HashMap<u16, Stream>,
    bytes: u64,
    stale: u64,
    foreign: u64,
    clock_errors: u64,
    latency: Histogram<u64>,
}

impl SinkStats {
    pub fn new(tag: u16, port: u16) -> SinkStats {
        SinkStats {
            tag,
            port,
            streams: HashMap::new(),
            bytes: 0,
            stale: 0,
            foreign: 0,
            clock_errors: 0,
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .expect("valid histogram bounds"),
        }
    }

    /// Counts one received Ethernet frame (or UDP payload when `payload`).
    #[inline]
    pub fn frame(&mut self, data: &[u8], payload: bool, now_ns: u64) {
        let stamp = if payload {
            frame::read_stamp(data)
        } else {
            frame::parse_frame(data, self.port)
        };
        let Some(s) = stamp else {
            self.foreign += 1;
            return;
        };
        self.stamp(s, wire_size(data.len(), payload), now_ns);
    }

    /// Counts one stamp of a frame of `size` bytes.
    pub fn stamp(&mut self, s: Stamp, size: u64, now_ns: u64) {
        if self.tag != 0 && s.tag != self.tag {
            self.stale += 1;
            return;
        }
        if !self
            .streams
            .entry(s.stream)
            .or_insert_with(Stream::new)
            .record(s.seq)
        {
            return;
        }
        self.bytes += size;
        match now_ns.checked_sub(s.sent_ns) {
            Some(ns) => self.latency.saturating_record(ns.max(1)),
            None => self.clock_errors += 1,
        }
    }

    pub fn report(&self) -> SinkReport {
        let mut streams: Vec<StreamReport> = self
            .streams
            .iter()
            .map(|(&id, s)| StreamReport {
                stream: id,
                received: s.received,
                duplicates: s.duplicates,
                reordered: s.reordered,
                gaps: s
                    .max_seq
                    .map_or(0, |m| (u64::from(m) + 1).saturating_sub(s.received)),
            })
            .collect();
        streams.sort_by_key(|s| s.stream);
        let h = &self.latency;
        let us = |ns: u64| ns as f64 / 1000.0;
        let latency = if h.is_empty() {
            Latency::default()
        } else {
            Latency {
                count: h.len(),
                min_us: us(h.min()),
                p50_us: us(h.value_at_quantile(0.5)),
                p90_us: us(h.value_at_quantile(0.9)),
                p99_us: us(h.value_at_quantile(0.99)),
                p999_us: us(h.value_at_quantile(0.999)),
                max_us: us(h.max()),
                mean_us: h.mean() / 1000.0,
            }
        };
        SinkReport {
            received: streams.iter().map(|s| s.received).sum(),
            bytes: self.bytes,
            duplicates: streams.iter().map(|s| s.duplicates).sum(),
            reordered: streams.iter().map(|s| s.reordered).sum(),
            gaps: streams.iter().map(|s| s.gaps).sum(),
            stale: self.stale,
            foreign: self.foreign,
            clock_errors: self.clock_errors,
            streams,
            latency,
            kernel_drops: None,
        }
    }
}

/// The size a frame had on the wire (with FCS) from what the sink got.
fn wire_size(len: usize, payload: bool) -> u64 {
    let len = if payload { len + frame::HEADERS } else { len };
    len as u64 + u64::from(frame::FCS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(tag: u16, stream: u16, seq: u32, sent_ns: u64) -> Stamp {
        Stamp {
            tag,
            stream,
            seq,
            sent_ns,
        }
    }

    #[test]
    fn counts_loss_duplicates_and_reordering_per_stream() {
        let mut s = SinkStats::new(5, 9000);
        // Stream 1: 0..100 with 10..20 lost, 50 twice, 60 and 61 swapped.
        for seq in (0..100).filter(|q| !(10..20).contains(q)) {
            let seq = match seq {
                60 => 61,
                61 => 60,
                q => q,
            };
            s.stamp(stamp(5, 1, seq, 1_000), 64, 11_000);
        }
        s.stamp(stamp(5, 1, 50, 1_000), 64, 11_000);
        // Stream 2: 3 frames; one frame of another trial.
        for seq in 0..3 {
            s.stamp(stamp(5, 2, seq, 1_000), 128, 2_000);
        }
        s.stamp(stamp(4, 1, 7, 0), 64, 1);
        let r = s.report();
        assert_eq!(r.streams.len(), 2);
        let s1 = &r.streams[0];
        assert_eq!(
            (s1.received, s1.duplicates, s1.reordered, s1.gaps),
            (90, 1, 1, 10)
        );
        assert_eq!((r.received, r.gaps, r.stale), (93, 10, 1));
        assert_eq!(r.bytes, 90 * 64 + 3 * 128);
        assert_eq!(r.latency.count, 93);
        assert!((r.latency.p50_us - 10.0).abs() < 0.05, "{:?}", r.latency);
        assert!((r.latency.min_us - 1.0).abs() < 0.01);
    }

    #[test]
    fn duplicate_window_survives_large_jumps() {
        let mut s = Stream::new();
        assert!(s.record(0));
        assert!(s.record(1_000_000));
        assert!(!s.record(1_000_000));
        // Too old to judge: counted as late, never as a duplicate.
        assert!(s.record(0));
        assert!(s.record(999_999));
        assert!(!s.record(999_999));
        assert_eq!((s.received, s.duplicates), (4, 2));
        // After a jump of exactly the window the old bits are gone.
        let mut t = Stream::new();
        assert!(t.record(5));
        assert!(t.record(5 + WINDOW));
        assert!(t.record(6 + WINDOW));
        assert_eq!(t.duplicates, 0);
    }

    #[test]
    fn any_tag_when_tag_is_zero_and_foreign_frames_counted() {
        let mut s = SinkStats::new(0, 9000);
        s.stamp(stamp(9, 0, 0, 10), 64, 20);
        s.frame(&[0u8; 60], false, 30);
        s.stamp(stamp(9, 0, 1, 50), 64, 20);
        let r = s.report();
        assert_eq!(
            (r.received, r.foreign, r.clock_errors, r.stale),
            (2, 1, 1, 0)
        );
    }
}
