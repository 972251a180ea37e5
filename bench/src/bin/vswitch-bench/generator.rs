//! The sending side: a thread that enters its namespace, pins itself,
//! opens its interface once (resolving the destination's MAC first), then
//! sends trials on command.
//!
//! Given a sink on the same core, the thread opens that too (its socket
//! keeps working after the thread moves on to another namespace) and reads
//! the sink's ring between sends: one thread, no wake-ups, no context
//! switches between generator and sink, and latency read within a loop
//! iteration of arrival. (Below about 33,000 frames/s the generator sleeps
//! between frames, and a frame may wait in the ring until it wakes: at
//! such rates latency is as coarse as the interval between frames.)

use std::net::Ipv4Addr;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender, bounded};
use serde::{Deserialize, Serialize};

use crate::frame::{self, FrameSpec, Sizes, Stamp, Vary};
use crate::nic::{self, BURST, DriverKind, Iface};
use crate::rate::{Pacer, now_ns};
use crate::receiver::{SinkConfig, SinkSide, place, where_};
use crate::sink::SinkReport;

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
    /// First source address of the flows (default: the interface's own).
    pub src_base: Option<Ipv4Addr>,
    /// Send even from an interface that carries the default route of the
    /// process's own namespace (the host's network).
    pub allow_default_route: bool,
    pub stream: u16,
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
    /// Frames the pacer gave up after the generator fell behind (a stall
    /// longer than it may catch up on); 0 when sending as fast as it can.
    #[serde(default)]
    pub forgiven: u64,
}

impl GenReport {
    /// A run that sent `sent` frames (`bytes`) between `start_ns` and
    /// `last_ns` (its last frame), with `tx_errors` failed send calls.
    pub fn new(sent: u64, bytes: u64, start_ns: u64, last_ns: u64, tx_errors: u64) -> Self {
        let elapsed_s = last_ns.saturating_sub(start_ns) as f64 / 1e9;
        GenReport {
            sent,
            bytes,
            elapsed_s,
            offered_pps: if elapsed_s > 0.0 {
                sent as f64 / elapsed_s
            } else {
                0.0
            },
            tx_errors,
            forgiven: 0,
        }
    }

    /// Prints what was sent as a table on standard output.
    pub fn print(&self) {
        crate::results::print_table(&[
            vec![
                "SENT".into(),
                "OFFERED".into(),
                "SECONDS".into(),
                "TX_ERRORS".into(),
            ],
            vec![
                self.sent.to_string(),
                crate::results::fmt_pps(self.offered_pps),
                format!("{:.3}", self.elapsed_s),
                self.tx_errors.to_string(),
            ],
        ]);
    }
}

/// The facts a generator found at start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GenInfo {
    pub driver: String,
    pub src_mac: String,
    pub src_ip: String,
    pub dst_mac: String,
    pub mtu: u32,
    /// The sink this thread reads itself, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_sink: Option<String>,
}

struct GenRun {
    tag: u16,
    rate: Option<f64>,
    duration: Duration,
    count: Option<u64>,
    /// With an inline sink: how long to keep reading it after the last send.
    drain: Duration,
}

type RunResult = anyhow::Result<(GenReport, Option<SinkReport>)>;

/// A generator thread.
pub struct Generator {
    cmd: Option<Sender<GenRun>>,
    res: Receiver<RunResult>,
    thread: Option<JoinHandle<()>>,
    pub info: GenInfo,
}

/// What the generator thread owns.
struct GenSide {
    tx: Box<dyn nic::Tx>,
    spec: FrameSpec,
    sizes: Sizes,
    stream: u16,
    sink: Option<SinkSide>,
    /// Flows used by earlier runs: each run goes on where the last one
    /// stopped, so a run of "new flows" never repeats an earlier run's.
    flow_offset: u64,
}

fn open(cfg: &GenConfig, sink: Option<&(SinkConfig, usize)>) -> anyhow::Result<(GenSide, GenInfo)> {
    place(&cfg.netns, cfg.core)?;
    // Sleeps end within microseconds of when they were asked to, not the
    // default 50 µs later.
    // SAFETY: PR_SET_TIMERSLACK takes a value and changes only this
    // thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let iface = Iface::lookup(&cfg.iface, &where_(&cfg.netns))?;
    if cfg.netns.is_none()
        && !cfg.allow_default_route
        && crate::neigh::carries_default_route(&cfg.iface)
    {
        anyhow::bail!(
            "refusing to send from '{}': it carries this host's default route (its own network); give --netns for a pod's interface, or --allow-default-route if this is meant",
            cfg.iface
        );
    }
    let max = cfg.sizes.max();
    anyhow::ensure!(
        max - frame::FCS <= iface.mtu + 14,
        "frame size {max} does not fit the MTU {} of '{}' (at most {})",
        iface.mtu,
        cfg.iface,
        iface.mtu + 14 + frame::FCS
    );
    let src_ip = iface
        .ipv4
        .ok_or_else(|| anyhow::anyhow!("'{}' has no IPv4 address to send from", cfg.iface))?;
    // Before the sink takes its interface over: its pod may have to answer.
    let dst_mac = match cfg.dst_mac {
        Some(m) => m,
        None => nic::resolve_mac(&cfg.iface, cfg.dst_ip, Duration::from_secs(4))?,
    };
    let tx = nic::open_tx(cfg.driver, &cfg.iface, (max - frame::FCS) as usize)?;
    let sink = match sink {
        Some((sc, max_frame)) => {
            place(&sc.netns, cfg.core)?;
            Some(SinkSide::open(sc, *max_frame).context("sink")?)
        }
        None => None,
    };
    let info = GenInfo {
        driver: tx.describe(),
        src_mac: crate::fmt_mac(iface.mac),
        src_ip: src_ip.to_string(),
        dst_mac: crate::fmt_mac(dst_mac),
        mtu: iface.mtu,
        inline_sink: sink.as_ref().map(SinkSide::describe),
    };
    let spec = FrameSpec {
        src_mac: iface.mac,
        dst_mac,
        src_ip: cfg.src_base.unwrap_or(src_ip),
        dst_ip: cfg.dst_ip,
        src_port: cfg.src_port,
        dst_port: cfg.dst_port,
        flows: cfg.flows,
        vary: cfg.vary,
    };
    let s = GenSide {
        tx,
        spec,
        sizes: cfg.sizes,
        stream: cfg.stream,
        sink,
        flow_offset: 0,
    };
    Ok((s, info))
}

impl Generator {
    /// Starts the thread; with `sink` (its config and largest frame), the
    /// thread also reads that sink (which should be on the same core).
    pub fn start(cfg: GenConfig, sink: Option<(SinkConfig, usize)>) -> anyhow::Result<Generator> {
        let (cmd_tx, cmd_rx) = bounded::<GenRun>(1);
        let (res_tx, res_rx) = bounded(1);
        let (info_tx, info_rx) = bounded(1);
        let thread = std::thread::Builder::new()
            .name("gen".into())
            .spawn(move || {
                let (mut s, info) = match open(&cfg, sink.as_ref()) {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = info_tx.send(Err(e));
                        return;
                    }
                };
                let _ = info_tx.send(Ok(info));
                while let Ok(run) = cmd_rx.recv() {
                    if res_tx.send(s.run(&run)).is_err() {
                        break;
                    }
                }
                // Each socket is closed from its own namespace, where libxdp
                // finds the interface to detach its XDP program from.
                if let Some(sink_side) = s.sink.take() {
                    let ns = sink
                        .as_ref()
                        .map(|(sc, _)| sc.netns.clone())
                        .unwrap_or_default();
                    if place(&ns, None).is_ok() {
                        drop(sink_side);
                    }
                }
                if place(&cfg.netns, None).is_ok() {
                    drop(s);
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
    /// as fast as it can), stamped with `tag`. With an inline sink, also
    /// counts what arrives until `drain` after the last send.
    pub fn run(
        &self,
        tag: u16,
        rate: Option<f64>,
        duration: Duration,
        count: Option<u64>,
        drain: Duration,
    ) -> RunResult {
        let cmd = self.cmd.as_ref().expect("generator running");
        cmd.send(GenRun {
            tag,
            rate,
            duration,
            count,
            drain,
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
/// it, it polls (its sink, the clock) again.
const SLEEP_ABOVE_NS: u64 = 30_000;
/// How much earlier than due a sleeping generator asks to wake up.
const SLEEP_EARLY_NS: u64 = 10_000;
/// Receive calls (of up to 64 frames) an inline sink makes per loop: up to
/// a whole ring, so the sink always reads faster than the generator sends.
const SINK_BURSTS: usize = 32;

impl GenSide {
    /// One run: the send loop, then the drain.
    fn run(&mut self, run: &GenRun) -> RunResult {
        if let Some(sink) = &mut self.sink {
            sink.begin(run.tag);
        }
        let start = now_ns();
        let end = start + run.duration.as_nanos() as u64;
        let limit = run.count.unwrap_or(u64::MAX);
        let mut pacer = Pacer::new(run.rate, start);
        let (mut sent, mut bytes, mut errors) = (0u64, 0u64, 0u64);
        let mut last = start;
        loop {
            let now = now_ns();
            if now >= end || sent >= limit || crate::stop::requested() {
                break;
            }
            // Read everything that waits (a ring's worth at most): reading
            // no faster than we send would let a backlog overflow the ring.
            let got = self.sink.as_mut().map_or(0, |k| k.drain(SINK_BURSTS));
            let due = pacer.due(now, (BURST as u64).min(limit - sent));
            if due == 0 {
                let wait = pacer.wait_ns(now).min(end - now);
                if wait > SLEEP_ABOVE_NS && got == 0 {
                    std::thread::sleep(Duration::from_nanos(wait - SLEEP_EARLY_NS));
                } else if self.sink.is_none() {
                    // A sink thread on this core runs only when we let it.
                    std::thread::yield_now();
                }
                let _ = self.tx.service();
                continue;
            }
            let base = sent;
            let (spec, sizes, stream, tag) = (&self.spec, self.sizes, self.stream, run.tag);
            let flow0 = self.flow_offset;
            let mut fill = |i: usize, buf: &mut [u8]| {
                let n = base + i as u64;
                let stamp = Stamp {
                    tag,
                    stream,
                    seq: n as u32,
                    sent_ns: now_ns(),
                };
                let flow = ((flow0 + n) % u64::from(spec.flows.max(1))) as u32;
                spec.write(buf, sizes.nth(n), flow, stamp)
            };
            match self.tx.send(due as usize, &mut fill) {
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
            let _ = self.tx.service();
            if self.sink.is_none() {
                // As above: without this a sink thread pinned to this core
                // would overflow its ring while we hold the CPU, and its
                // losses would be blamed on the switch.
                std::thread::yield_now();
            }
        }
        // Let the last transmissions complete, and the last frames arrive.
        let drain_end = now_ns() + run.drain.as_nanos() as u64;
        for _ in 0..100 {
            let _ = self.tx.service();
        }
        self.flow_offset += sent;
        let report = match &mut self.sink {
            Some(sink) => {
                while now_ns() < drain_end {
                    if sink.drain(SINK_BURSTS) == 0 {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
                Some(sink.report())
            }
            None => None,
        };
        let g = GenReport {
            forgiven: pacer.forgiven(),
            ..GenReport::new(sent, bytes, start, last, errors)
        };
        Ok((g, report))
    }
}
