//! The receiving side: an interface opened for a sink and the counts of
//! the current trial ([`SinkSide`]), and a thread that runs one on its own
//! core ([`Sink`]).
//!
//! A generator on the same core as its sink does not use the thread: it
//! reads the sink's ring itself between sends (see [`crate::generator`]).
//! A sink that sleeps in poll(2) costs the *sender* of every frame a
//! wake-up (for a veth pod that is the switch's core, which then spends
//! up to half its time waking the sink instead of switching, measured with
//! perf on the 2-vCPU VM); one that is polled has no waiters to wake.

use std::thread::JoinHandle;

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender, bounded};

use crate::frame;
use crate::nic::{self, DriverKind, Iface, Rx};
use crate::rate::now_ns;
use crate::sink::{SinkReport, SinkStats};

/// Where a sink listens.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub netns: Option<String>,
    pub iface: String,
    pub driver: DriverKind,
    pub port: u16,
    pub core: Option<usize>,
}

/// "network namespace 'x'", for errors.
pub fn where_(ns: &Option<String>) -> String {
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

/// Moves the calling thread into `netns` (`None`: the process's own, as
/// the main thread has it) and pins it to `core`.
pub fn place(netns: &Option<String>, core: Option<usize>) -> anyhow::Result<()> {
    match netns {
        Some(ns) => nic::enter_netns(ns)?,
        None => nic::enter_netns("/proc/self/ns/net")?,
    }
    pin(core)
}

/// A sink's interface and the counts of the trial it was last told about.
pub struct SinkSide {
    rx: Box<dyn Rx>,
    iface: Iface,
    port: u16,
    payloads: bool,
    stats: SinkStats,
    drops_at_begin: u64,
    name: String,
    complained: bool,
}

impl SinkSide {
    /// Opens `cfg.iface` in the calling thread's namespace (the caller
    /// entered `cfg.netns`); `max_frame` is the largest frame (without FCS).
    pub fn open(cfg: &SinkConfig, max_frame: usize) -> anyhow::Result<SinkSide> {
        let iface = Iface::lookup(&cfg.iface, &where_(&cfg.netns))?;
        let rx = nic::open_rx(cfg.driver, &cfg.iface, cfg.port, max_frame)?;
        Ok(SinkSide {
            payloads: rx.payloads(),
            rx,
            iface,
            port: cfg.port,
            stats: SinkStats::new(u16::MAX, cfg.port),
            drops_at_begin: 0,
            name: cfg.iface.clone(),
            complained: false,
        })
    }

    pub fn describe(&self) -> String {
        self.rx.describe()
    }

    /// Starts counting frames stamped `tag`, after dropping what waits in
    /// the ring, and announces the sink's MAC (a gratuitous ARP) so that
    /// learning switches deliver to it while it only receives.
    pub fn begin(&mut self, tag: u16) {
        while self.poll() > 0 {}
        if let Some(ip) = self.iface.ipv4 {
            let _ = self.rx.send_raw(&frame::gratuitous_arp(self.iface.mac, ip));
        }
        self.stats = SinkStats::new(tag, self.port);
        self.complained = false;
        self.drops_at_begin = self.rx.kernel_drops().unwrap_or(0);
    }

    /// Counts what waits in the ring, in up to `bursts` receive calls (of
    /// up to 64 frames each); returns how many frames that was.
    #[inline]
    pub fn drain(&mut self, bursts: usize) -> usize {
        let mut total = 0;
        for _ in 0..bursts {
            let n = self.poll();
            total += n;
            if n == 0 {
                break;
            }
        }
        total
    }

    /// Counts one burst of what waits in the ring; returns how many frames.
    #[inline]
    pub fn poll(&mut self) -> usize {
        let now = now_ns();
        let (stats, payloads) = (&mut self.stats, self.payloads);
        match self.rx.recv(&mut |d| stats.frame(d, payloads, now)) {
            Ok(n) => n,
            Err(e) => {
                // Once per trial: a failing socket fails on every poll.
                if !self.complained {
                    eprintln!("vswitch-bench: sink on '{}': {e}", self.name);
                    self.complained = true;
                }
                0
            }
        }
    }

    /// Sleeps until a frame arrives or `ms` pass.
    pub fn wait(&mut self, ms: i32) {
        self.rx.wait(ms);
    }

    /// The counts since `begin` (counting goes on).
    pub fn report(&mut self) -> SinkReport {
        let mut r = self.stats.report();
        r.kernel_drops = self
            .rx
            .kernel_drops()
            .map(|d| d.saturating_sub(self.drops_at_begin));
        r
    }
}

enum SinkCmd {
    Begin(u16),
    Report,
}

/// A sink thread on its own core: counts the frames of the trial it was
/// last told about, sleeping in poll(2) when nothing arrives.
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
                let side =
                    place(&cfg.netns, cfg.core).and_then(|()| SinkSide::open(&cfg, max_frame));
                let mut side = match side {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = info_tx.send(Err(e));
                        return;
                    }
                };
                let _ = info_tx.send(Ok(side.describe()));
                loop {
                    match cmd_rx.try_recv() {
                        Ok(SinkCmd::Begin(tag)) => side.begin(tag),
                        Ok(SinkCmd::Report) => {
                            if res_tx.send(side.report()).is_err() {
                                return;
                            }
                        }
                        Err(crossbeam_channel::TryRecvError::Disconnected) => return,
                        Err(crossbeam_channel::TryRecvError::Empty) => {}
                    }
                    if side.poll() == 0 {
                        side.wait(1);
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

    fn send(&self, c: SinkCmd) -> anyhow::Result<()> {
        self.cmd
            .as_ref()
            .expect("sink running")
            .send(c)
            .context("sink thread ended")
    }

    /// Starts counting frames stamped with `tag` (and sends a gratuitous ARP).
    pub fn begin(&self, tag: u16) -> anyhow::Result<()> {
        self.send(SinkCmd::Begin(tag))
    }

    /// What the sink counted since `begin` (it goes on counting).
    pub fn counts(&self) -> anyhow::Result<SinkReport> {
        self.send(SinkCmd::Report)?;
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
