//! Generator and sink threads, and one trial between them.
//!
//! Each side is a thread that enters its namespace, pins itself to its
//! core, opens its interface once, then runs trials on command, so a
//! search of many trials pays the set-up (XDP program load, ARP) once.
//! Both live in one process, so their stamps share one clock.

use std::net::Ipv4Addr;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender, bounded};
use serde::{Deserialize, Serialize};

use crate::frame::{self, FrameSpec, Sizes, Stamp, Vary};
use crate::nic::{self, BURST, DriverKind, Iface};
use crate::rate::{Pacer, now_ns};
use crate::sink::{Latency, SinkReport, SinkStats};

/// Where and what a generator sends.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub netns: Option<String>,
    pub iface: String,
    pub driver: DriverKind,
    pub sizes: Sizes,
    pub flows: u32,
    pub vary: Vary,
    pub dst_ip: Ipv4Addr,
    pub dst_port: u16,
    pub dst_mac: Option<[u8; 6]>,
    pub src_port: u16,
    pub stream: u16,
    pub core: Option<usize>,
}

/// Where a sink listens.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub netns: Option<String>,
    pub iface: String,
    pub driver: DriverKind,
    pub port: u16,
    pub core: Option<usize>,
}

/// What one generator run did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GenReport {
    pub sent: u64,
    /// Bytes as sizes count them (with FCS).
    pub bytes: u64,
    /// From the first frame to the last.
    pub elapsed_s: f64,
    pub offered_pps: f64,
    /// Send calls that failed (counted, the run goes on).
    pub tx_errors: u64,
}

/// The facts a generator found at start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GenInfo {
    pub driver: String,
    pub src_mac: String,
    pub src_ip: String,
    pub dst_mac: String,
    pub mtu: u32,
}

fn where_(ns: &Option<String>) -> String {
    match ns {
        Some(ns) => format!("network namespace '{ns}'"),
        None => "this network namespace".into(),
    }
}

fn pin(core: Option<usize>) -> anyhow::Result<()> {
    if let Some(id) = core {
        let ok = core_affinity::get_core_ids().is_some_and(|ids| ids.iter().any(|c| c.id == id))
            && core_affinity::set_for_current(core_affinity::CoreId { id });
        anyhow::ensure!(ok, "cannot pin to core {id}: not a core of this machine");
    }
    Ok(())
}

/// Enters `netns` (if any) and pins the calling thread.
fn place(netns: &Option<String>, core: Option<usize>) -> anyhow::Result<()> {
    if let Some(ns) = netns {
        nic::enter_netns(ns)?;
    }
    pin(core)
}

struct GenRun {
    tag: u16,
    rate: Option<f64>,
    duration: Duration,
    count: Option<u64>,
}

/// A generator thread.
pub struct Generator {
    cmd: Option<Sender<GenRun>>,
    res: Receiver<anyhow::Result<GenReport>>,
    thread: Option<JoinHandle<()>>,
    pub info: GenInfo,
}

impl Generator {
    pub fn start(cfg: GenConfig) -> anyhow::Result<Generator> {
        let (cmd_tx, cmd_rx) = bounded::<GenRun>(1);
        let (res_tx, res_rx) = bounded(1);
        let (info_tx, info_rx) = bounded(1);
        let thread = std::thread::Builder::new()
            .name("gen".into())
            .spawn(move || {
                let setup = || -> anyhow::Result<_> {
                    place(&cfg.netns, cfg.core)?;
                    // Sleeps end within microseconds of when they were asked
                    // to, not the default 50 µs later.
                    // SAFETY: PR_SET_TIMERSLACK takes a value and changes
                    // only this thread's timer slack.
                    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
                    let iface = Iface::lookup(&cfg.iface, &where_(&cfg.netns))?;
                    let max = cfg.sizes.max();
                    anyhow::ensure!(
                        max - frame::FCS <= iface.mtu + 14,
                        "frame size {max} does not fit the MTU {} of '{}' (at most {})",
                        iface.mtu,
                        cfg.iface,
                        iface.mtu + 14 + frame::FCS
                    );
                    let src_ip = iface.ipv4.ok_or_else(|| {
                        anyhow::anyhow!("'{}' has no IPv4 address to send from", cfg.iface)
                    })?;
                    let dst_mac = match cfg.dst_mac {
                        Some(m) => m,
                        None => nic::resolve_mac(&cfg.iface, cfg.dst_ip, Duration::from_secs(4))?,
                    };
                    let tx = nic::open_tx(cfg.driver, &cfg.iface, (max - frame::FCS) as usize)?;
                    let spec = FrameSpec {
                        src_mac: iface.mac,
                        dst_mac,
                        src_ip,
                        dst_ip: cfg.dst_ip,
                        src_port: cfg.src_port,
                        dst_port: cfg.dst_port,
                        flows: cfg.flows,
                        vary: cfg.vary,
                    };
                    let info = GenInfo {
                        driver: tx.describe(),
                        src_mac: crate::fmt_mac(iface.mac),
                        src_ip: src_ip.to_string(),
                        dst_mac: crate::fmt_mac(dst_mac),
                        mtu: iface.mtu,
                    };
                    Ok((tx, spec, info))
                };
                let (mut tx, spec, info) = match setup() {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = info_tx.send(Err(e));
                        return;
                    }
                };
                let _ = info_tx.send(Ok(info));
                while let Ok(run) = cmd_rx.recv() {
                    let r = generate(&mut *tx, &spec, cfg.sizes, cfg.stream, &run);
                    if res_tx.send(r).is_err() {
                        break;
                    }
                }
            })?;
        let info = info_rx
            .recv()
            .context("generator thread ended during set-up")??;
        Ok(Generator {
            cmd: Some(cmd_tx),
            res: res_rx,
            thread: Some(thread),
            info,
        })
    }

    /// Sends for `duration` (or `count` frames) at `rate` frames/s (`None`:
    /// as fast as it can), stamped with `tag`.
    pub fn run(
        &self,
        tag: u16,
        rate: Option<f64>,
        duration: Duration,
        count: Option<u64>,
    ) -> anyhow::Result<GenReport> {
        let cmd = self.cmd.as_ref().expect("generator running");
        cmd.send(GenRun {
            tag,
            rate,
            duration,
            count,
        })
        .context("generator thread ended")?;
        self.res.recv().context("generator thread ended")?
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.cmd.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A generator with longer than this to wait sleeps (so a slow rate costs
/// little CPU, which the `cpu` scenario of bench-veth.sh relies on); below
/// it, it yields the core and polls the clock again.
const SLEEP_ABOVE_NS: u64 = 30_000;
/// How much earlier than due a sleeping generator asks to wake up.
const SLEEP_EARLY_NS: u64 = 10_000;

/// The generator's loop for one run.
fn generate(
    tx: &mut dyn nic::Tx,
    spec: &FrameSpec,
    sizes: Sizes,
    stream: u16,
    run: &GenRun,
) -> anyhow::Result<GenReport> {
    let start = now_ns();
    let end = start + run.duration.as_nanos() as u64;
    let limit = run.count.unwrap_or(u64::MAX);
    let mut pacer = Pacer::new(run.rate, start);
    let (mut sent, mut bytes, mut errors) = (0u64, 0u64, 0u64);
    let mut last = start;
    loop {
        let now = now_ns();
        if now >= end || sent >= limit {
            break;
        }
        let due = pacer.due(now, (BURST as u64).min(limit - sent));
        if due == 0 {
            let wait = pacer.wait_ns(now);
            if wait > SLEEP_ABOVE_NS {
                std::thread::sleep(Duration::from_nanos(wait - SLEEP_EARLY_NS));
            } else {
                std::thread::yield_now();
            }
            let _ = tx.service();
            continue;
        }
        let base = sent;
        let mut fill = |i: usize, buf: &mut [u8]| {
            let n = base + i as u64;
            let stamp = Stamp {
                tag: run.tag,
                stream,
                seq: n as u32,
                sent_ns: now_ns(),
            };
            spec.write(buf, sizes.nth(n), n as u32, stamp)
        };
        match tx.send(due as usize, &mut fill) {
            Ok(k) => {
                for n in base..base + k as u64 {
                    bytes += u64::from(sizes.nth(n));
                }
                sent += k as u64;
                pacer.sent(k as u64);
                if k > 0 {
                    last = now_ns();
                }
            }
            Err(_) => errors += 1,
        }
        if errors > 1_000_000 {
            anyhow::bail!("the interface refuses every frame (last {errors} sends failed)");
        }
        let _ = tx.service();
        // A sink pinned to this core (two-core machines) runs only when we
        // let it: without this its ring overflows while we hold the CPU,
        // and the sink's losses would be blamed on the switch.
        std::thread::yield_now();
    }
    // Let the last transmissions complete before the pool is reused.
    for _ in 0..100 {
        let _ = tx.service();
    }
    let elapsed_s = (last.saturating_sub(start)) as f64 / 1e9;
    Ok(GenReport {
        sent,
        bytes,
        elapsed_s,
        offered_pps: if elapsed_s > 0.0 {
            sent as f64 / elapsed_s
        } else {
            0.0
        },
        tx_errors: errors,
    })
}

enum SinkCmd {
    Begin(u16),
    Report,
}

/// A sink thread: counts the frames of the trial it was last told about.
pub struct Sink {
    cmd: Option<Sender<SinkCmd>>,
    res: Receiver<SinkReport>,
    thread: Option<JoinHandle<()>>,
    pub driver: String,
}

impl Sink {
    /// `max_frame`: the largest frame (without FCS) it must take.
    pub fn start(cfg: SinkConfig, max_frame: usize) -> anyhow::Result<Sink> {
        let (cmd_tx, cmd_rx) = bounded::<SinkCmd>(4);
        let (res_tx, res_rx) = bounded(1);
        let (info_tx, info_rx) = bounded(1);
        let thread = std::thread::Builder::new()
            .name("sink".into())
            .spawn(move || {
                let setup = || -> anyhow::Result<_> {
                    place(&cfg.netns, cfg.core)?;
                    let iface = Iface::lookup(&cfg.iface, &where_(&cfg.netns))?;
                    let rx = nic::open_rx(cfg.driver, &cfg.iface, cfg.port, max_frame)?;
                    Ok((iface, rx))
                };
                let (iface, mut rx) = match setup() {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = info_tx.send(Err(e));
                        return;
                    }
                };
                let _ = info_tx.send(Ok(rx.describe()));
                let payloads = rx.payloads();
                let mut stats = SinkStats::new(u16::MAX, cfg.port);
                let mut drops_at_begin = 0;
                loop {
                    match cmd_rx.try_recv() {
                        Ok(SinkCmd::Begin(tag)) => {
                            if let Some(ip) = iface.ipv4 {
                                let _ = rx.send_raw(&frame::gratuitous_arp(iface.mac, ip));
                            }
                            stats = SinkStats::new(tag, cfg.port);
                            drops_at_begin = rx.kernel_drops().unwrap_or(0);
                        }
                        Ok(SinkCmd::Report) => {
                            let mut r = stats.report();
                            r.kernel_drops = rx.kernel_drops().map(|d| d - drops_at_begin);
                            if res_tx.send(r).is_err() {
                                return;
                            }
                        }
                        Err(crossbeam_channel::TryRecvError::Disconnected) => return,
                        Err(crossbeam_channel::TryRecvError::Empty) => {}
                    }
                    let now = now_ns();
                    match rx.recv(&mut |d| stats.frame(d, payloads, now)) {
                        Ok(0) => rx.wait(1),
                        Ok(_) => {}
                        Err(e) => {
                            eprintln!("vswitch-bench: sink on '{}': {e}", cfg.iface);
                            rx.wait(100);
                        }
                    }
                }
            })?;
        let driver = info_rx
            .recv()
            .context("sink thread ended during set-up")??;
        Ok(Sink {
            cmd: Some(cmd_tx),
            res: res_rx,
            thread: Some(thread),
            driver,
        })
    }

    /// Starts counting frames stamped with `tag` (and sends a gratuitous ARP).
    pub fn begin(&self, tag: u16) -> anyhow::Result<()> {
        self.cmd
            .as_ref()
            .expect("sink running")
            .send(SinkCmd::Begin(tag))
            .context("sink thread ended")
    }

    /// What the sink counted since `begin` (it goes on counting).
    pub fn counts(&self) -> anyhow::Result<SinkReport> {
        self.cmd
            .as_ref()
            .expect("sink running")
            .send(SinkCmd::Report)
            .context("sink thread ended")?;
        self.res.recv().context("sink thread ended")
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.cmd.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

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
    pub kernel_drops: Option<u64>,
    pub tx_errors: u64,
    /// Seconds each core was busy (user, system, softirq...) while the
    /// generator ran, from /proc/stat: everything on the machine, the
    /// switch under test included.
    #[serde(default)]
    pub cpu_busy_s: Vec<f64>,
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
            cpu_busy_s: Vec::new(),
        }
    }
}

/// Busy clock ticks of each core (all but idle and iowait), from /proc/stat.
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
            // user nice system idle iowait irq softirq steal (guest is in user).
            f.iter().take(8).sum::<u64>()
                - f.get(3).copied().unwrap_or(0)
                - f.get(4).copied().unwrap_or(0)
        })
        .collect()
}

/// A generator and a sink, driven together.
pub struct Pair {
    pub generator: Generator,
    pub sink: Sink,
    /// Time after the generator stops for the last frames to arrive.
    pub drain: Duration,
    next_tag: u16,
}

impl Pair {
    /// Starts the generator first (it may need the sink's pod to answer ARP
    /// before the sink takes over its interface), then the sink.
    pub fn start(
        gen_cfg: GenConfig,
        sink_cfg: SinkConfig,
        drain: Duration,
    ) -> anyhow::Result<Pair> {
        let max = (gen_cfg.sizes.max() - frame::FCS) as usize;
        let generator = Generator::start(gen_cfg).context("generator")?;
        let sink = Sink::start(sink_cfg, max).context("sink")?;
        Ok(Pair {
            generator,
            sink,
            drain,
            next_tag: 1,
        })
    }

    /// One trial at `rate` for `duration`.
    pub fn trial(&mut self, rate: Option<f64>, duration: Duration) -> anyhow::Result<TrialResult> {
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1).max(1);
        self.sink.begin(tag)?;
        // Give the sink's gratuitous ARP time to cross the switch.
        std::thread::sleep(Duration::from_millis(20));
        let before = cpu_busy_ticks();
        let g = self.generator.run(tag, rate, duration, None)?;
        let after = cpu_busy_ticks();
        std::thread::sleep(self.drain);
        let s = self.sink.counts()?;
        let mut r = TrialResult::from_reports(rate, &g, &s);
        // SAFETY: sysconf only reads a configuration value.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        r.cpu_busy_s = after
            .iter()
            .zip(&before)
            .map(|(a, b)| a.saturating_sub(*b) as f64 / hz)
            .collect();
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
        assert_eq!(parse_cpu_busy(stat), vec![21, 0]);
        assert!(!cpu_busy_ticks().is_empty());
    }
}
