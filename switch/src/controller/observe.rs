//! `vswitchctl trace` and `vswitchctl capture` on the daemon's side: dry
//! runs of a frame through the current snapshot (`trace_inject`), and the
//! watches (captures, live traces) the workers feed (see
//! [`fastpath::observe`]).
//!
//! A watch belongs to no connection: its client reads it with
//! `watch_read` until it is done. One not read for [`WATCH_IDLE_MS`]
//! (its client went away) is stopped by `expire_watches`; so is one past
//! its duration. At most [`WATCHES_MAX`] run at once.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ctl::{
    Direction, MacAddr, Reply, TcpFlag, TraceFrame, TraceProto, TraceReport, TraceSent, TraceStep,
    WATCH_IDLE_MS, WATCHES_MAX, WatchData, WatchFrame, WatchKindSpec, WatchSpec, WatchTrace,
    from_hex, to_hex,
};
use fastpath::batch::Verdict;
use fastpath::observe::build::{self, Packet, Proto};
use fastpath::observe::inject::{Tracking, inject};
use fastpath::observe::{Dir, Filter, Record, Step, Watch, WatchKind};
use fastpath::worker::WorkerCmd;
use fastpath::{PortId, clock, mac_octets};

use super::Controller;
use crate::model::Refused;

/// Most bytes of frames one `watch_read` returns (hex doubles them).
const READ_BYTES: usize = 512 << 10;
/// Bytes a capture keeps of each frame when the request names no limit.
const SNAPLEN_MAX: u32 = ctl::SNAPLEN_DEFAULT;

/// The watches running.
#[derive(Default)]
pub(super) struct Watches {
    next: u64,
    running: HashMap<u64, Running>,
    /// Watches stopped lately and why, to answer a late reader clearly.
    ended: VecDeque<(u64, &'static str)>,
}

/// How many stopped watches `Watches::ended` remembers.
const ENDED_KEPT: usize = 64;
/// Longest duration a watch may ask for (a day).
const DURATION_MAX_MS: u64 = 86_400_000;

struct Running {
    watch: Arc<Watch>,
    last_read: Instant,
    until: Option<Instant>,
}

impl Controller {
    /// Names a port id for people.
    fn port_name(&self, id: PortId) -> String {
        self.ids
            .get(usize::from(id))
            .and_then(Option::as_ref)
            .cloned()
            .unwrap_or_else(|| format!("#{id}"))
    }

    fn verdict_text(&self, v: Verdict) -> String {
        match v {
            Verdict::Pending => "pending".into(),
            Verdict::Unicast(p) => format!("unicast {}", self.port_name(p)),
            Verdict::Flood => "flood".into(),
            Verdict::Drop(r) => format!("drop {}", r.name()),
            Verdict::Consumed => "consumed (the switch was the recipient)".into(),
            Verdict::Held => "held (waiting for the next hop's MAC)".into(),
            Verdict::Reply => "reply (the switch answers the sender)".into(),
        }
    }

    fn steps_text(&self, steps: &[Step]) -> Vec<TraceStep> {
        steps
            .iter()
            .map(|s| TraceStep {
                stage: s.stage.to_string(),
                verdict: self.verdict_text(s.verdict),
                frame: s.frame.clone(),
            })
            .collect()
    }

    fn port_by_name(&self, name: &str) -> Result<PortId, Refused> {
        self.ports
            .get(name)
            .map(|r| r.id)
            .ok_or_else(|| Refused(format!("no port named '{name}'")))
    }

    /// `trace inject`: see [`fastpath::observe::inject`].
    pub(super) fn trace_inject(&self, port: &str, frame: &TraceFrame) -> Result<Reply, Refused> {
        let id = self.port_by_name(port)?;
        let mut notes = Vec::new();
        let bytes = match frame {
            TraceFrame::Hex { bytes } => from_hex(bytes).map_err(Refused)?,
            TraceFrame::Packet(spec) => {
                let p = self.packet(id, spec, &mut notes)?;
                build::build(&p).map_err(Refused)?
            }
        };
        if bytes.len() < 14 {
            notes.push("the frame is shorter than an Ethernet header".into());
        }
        let snap = self.snapshot.load_full();
        let now = clock::now_ms();
        let r = inject(&snap, &self.conntrack, id, &bytes, now).map_err(Refused)?;
        for (mac, port) in &r.learned {
            notes.push(format!(
                "learn: the switch would learn {} on {} (not learned: this is a dry run)",
                MacAddr(mac_octets(*mac)),
                self.port_name(*port)
            ));
        }
        match r.tracking {
            Some(Tracking::Tracked) => notes.push(
                "service: the connection is tracked already; its endpoint and translation are kept"
                    .into(),
            ),
            Some(Tracking::New) => notes.push(
                "service: a new connection: the endpoint shown was chosen now (nothing was tracked)"
                    .into(),
            ),
            None => {}
        }
        let mut verdict = r
            .steps
            .last()
            .map_or_else(|| "pending".into(), |s| self.verdict_text(s.verdict));
        let answered = r
            .steps
            .last()
            .is_some_and(|s| !matches!(s.verdict, Verdict::Drop(_)));
        if answered && !r.dropped.is_empty() {
            // The packet itself went no further: what left is the switch's
            // answer to it (an ICMP error, a TCP reset).
            verdict = format!(
                "drop {} (the switch answers the sender: {verdict})",
                r.dropped.join(", ")
            );
        }
        Ok(Reply::Trace(TraceReport {
            port: port.to_string(),
            ingress: r.ingress,
            steps: self.steps_text(&r.steps),
            verdict,
            sent: r
                .sent
                .into_iter()
                .map(|(p, frame)| TraceSent {
                    port: self.port_name(p),
                    frame,
                })
                .collect(),
            notes,
        }))
    }

    /// The packet a described frame stands for, with the MACs a sender on
    /// port `id` would use where the description leaves them out.
    fn packet(
        &self,
        id: PortId,
        spec: &ctl::PacketSpec,
        notes: &mut Vec<String>,
    ) -> Result<Packet, Refused> {
        let src_mac = match spec.src_mac {
            Some(m) => m.0,
            None => {
                let learned = self
                    .macs
                    .entries(clock::now_ms())
                    .into_iter()
                    .find(|r| r.port == id)
                    .map(|r| mac_octets(r.mac));
                match learned {
                    Some(m) => {
                        notes.push(format!("src MAC {}: known on the port", MacAddr(m)));
                        m
                    }
                    None => {
                        let m = [0x02, 0, 0, 0, 0, 0x01];
                        notes.push(format!(
                            "src MAC {}: no MAC is known on the port (give --src-mac)",
                            MacAddr(m)
                        ));
                        m
                    }
                }
            }
        };
        let dst_mac = match spec.dst_mac {
            Some(m) => m.0,
            None if spec.proto == TraceProto::Arp => [0xff; 6],
            None => match self.neigh_view.get(spec.dst) {
                Some(n) => {
                    notes.push(format!(
                        "dst MAC {}: the switch's neighbour entry for {}",
                        MacAddr(mac_octets(n.mac)),
                        spec.dst
                    ));
                    mac_octets(n.mac)
                }
                None => {
                    notes.push(format!(
                        "dst MAC {}: the router's (the switch knows no MAC for {}; a pod would ARP for a neighbour on its own subnet: give --dst-mac)",
                        self.router_mac, spec.dst
                    ));
                    self.router_mac.0
                }
            },
        };
        let flag = |f: &TcpFlag| match f {
            TcpFlag::Fin => 0x01,
            TcpFlag::Syn => 0x02,
            TcpFlag::Rst => 0x04,
            TcpFlag::Psh => 0x08,
            TcpFlag::Ack => 0x10,
        };
        let proto = match spec.proto {
            TraceProto::Tcp => Proto::Tcp(spec.flags.iter().map(flag).fold(0, |a, b| a | b)),
            TraceProto::Udp => Proto::Udp,
            TraceProto::Icmp => Proto::Echo,
            TraceProto::Arp => Proto::Arp,
        };
        if matches!(spec.proto, TraceProto::Tcp | TraceProto::Udp)
            && (spec.sport == 0 || spec.dport == 0)
        {
            return Err(Refused(
                "TCP and UDP packets need both ports (not 0)".into(),
            ));
        }
        let family = |a: &IpAddr| a.is_ipv4();
        if family(&spec.src) != family(&spec.dst) {
            return Err(Refused(format!(
                "{} and {} are not of one address family",
                spec.src, spec.dst
            )));
        }
        Ok(Packet {
            proto,
            src: spec.src,
            dst: spec.dst,
            sport: spec.sport,
            dport: spec.dport,
            src_mac,
            dst_mac,
            ttl: spec.ttl.unwrap_or(64),
        })
    }

    /// Starts a capture or live trace.
    pub(super) fn watch_start(&mut self, spec: &WatchSpec) -> Result<Reply, Refused> {
        let port = self.port_by_name(&spec.port)?;
        if self.watches.running.len() >= WATCHES_MAX {
            return Err(Refused(format!(
                "{WATCHES_MAX} captures and traces are running already; one ends when its reader stops it, or 10 s after its last read"
            )));
        }
        let filter = Filter::parse(spec.filter.as_deref().unwrap_or("")).map_err(Refused)?;
        if spec.count == Some(0) {
            return Err(Refused("--count must be at least 1".into()));
        }
        if spec
            .duration_ms
            .is_some_and(|d| d == 0 || d > DURATION_MAX_MS)
        {
            return Err(Refused("--duration must be 1 second to 1 day".into()));
        }
        if spec.kind == WatchKindSpec::Trace && spec.direction == Direction::Out {
            return Err(Refused(
                "a live trace follows the packets arriving on the port (direction in)".into(),
            ));
        }
        let kind = match spec.kind {
            WatchKindSpec::Capture => {
                let snaplen = spec.snaplen.unwrap_or(SNAPLEN_MAX);
                if !(14..=SNAPLEN_MAX).contains(&snaplen) {
                    return Err(Refused(format!("--snaplen must be 14 to {SNAPLEN_MAX}")));
                }
                WatchKind::Capture { snaplen }
            }
            WatchKindSpec::Trace => WatchKind::Trace,
        };
        let (rx, tx) = match spec.direction {
            Direction::In => (true, false),
            Direction::Out => (false, true),
            Direction::Both => (true, true),
        };
        self.watches.next += 1;
        let id = self.watches.next;
        let watch = Arc::new(Watch::new(id, port, kind, rx, tx, filter, spec.count));
        for h in &self.workers.handles {
            if h.cmds
                .try_send(WorkerCmd::Watch(Arc::clone(&watch)))
                .is_err()
            {
                watch.stop();
                self.unwatch(id, "");
                return Err(Refused("a worker is not taking commands; try again".into()));
            }
        }
        self.watches.running.insert(
            id,
            Running {
                watch,
                last_read: Instant::now(),
                until: spec
                    .duration_ms
                    .map(|ms| Instant::now() + Duration::from_millis(ms)),
            },
        );
        Ok(Reply::WatchStarted { id })
    }

    /// What a watch recorded since the last read; a finished watch is
    /// forgotten once its last records are read.
    pub(super) fn watch_read(&mut self, id: u64) -> Result<Reply, Refused> {
        let Some(r) = self.watches.running.get_mut(&id) else {
            return Err(self.not_running(id));
        };
        r.last_read = Instant::now();
        if r.until.is_some_and(|t| Instant::now() >= t) {
            r.watch.stop();
        }
        let watch = Arc::clone(&r.watch);
        let mut data = WatchData {
            dropped: watch.dropped(),
            ..WatchData::default()
        };
        // Whether it had ended before the queue was read: then what was
        // read is the last of it.
        let ended = watch.ended();
        for rec in watch.take(READ_BYTES) {
            match rec {
                Record::Frame(f) => data.frames.push(WatchFrame {
                    ts_ns: f.ts_ns,
                    dir: match f.dir {
                        Dir::In => Direction::In,
                        Dir::Out => Direction::Out,
                    },
                    len: f.len,
                    data: to_hex(&f.data),
                }),
                Record::Trace(t) => data.traces.push(WatchTrace {
                    ts_ns: t.ts_ns,
                    worker: t.worker,
                    ingress: t.ingress,
                    steps: self.steps_text(&t.steps),
                }),
            }
        }
        data.done = ended && watch.drained();
        if data.done {
            self.unwatch(id, "it ended");
        }
        Ok(Reply::WatchData(data))
    }

    /// Stops a watch.
    pub(super) fn watch_stop(&mut self, id: u64) -> Result<Reply, Refused> {
        if !self.watches.running.contains_key(&id) {
            return Err(self.not_running(id));
        }
        self.unwatch(id, "it was stopped");
        Ok(Reply::Done)
    }

    fn not_running(&self, id: u64) -> Refused {
        match self.watches.ended.iter().find(|(e, _)| *e == id) {
            Some((_, why)) => Refused(format!("capture or trace {id} is over: {why}")),
            None => Refused(format!("no capture or trace {id} is running")),
        }
    }

    /// Stops watch `id`, remembering `why` (empty: forget it).
    fn unwatch(&mut self, id: u64, why: &'static str) {
        if let Some(r) = self.watches.running.remove(&id) {
            r.watch.stop();
        }
        if !why.is_empty() {
            if self.watches.ended.len() == ENDED_KEPT {
                self.watches.ended.pop_front();
            }
            self.watches.ended.push_back((id, why));
        }
        for h in &self.workers.handles {
            // A worker that misses this lets go of the watch anyway: it is
            // stopped.
            let _ = h.cmds.try_send(WorkerCmd::Unwatch(id));
        }
    }

    /// Stops the watches of port `id` (it is being removed: its id may be
    /// given to another port).
    pub(super) fn unwatch_port(&mut self, id: PortId) {
        let on: Vec<u64> = self
            .watches
            .running
            .iter()
            .filter(|(_, r)| r.watch.port == id)
            .map(|(w, _)| *w)
            .collect();
        for w in on {
            self.unwatch(w, "its port was removed");
        }
    }

    /// Stops the watches past their duration or not read for a while.
    pub(super) fn expire_watches(&mut self) {
        let now = Instant::now();
        let idle = Duration::from_millis(WATCH_IDLE_MS);
        let gone: Vec<u64> = self
            .watches
            .running
            .iter()
            .filter(|(_, r)| now - r.last_read > idle)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            tracing::info!(
                watch = id,
                "capture or trace not read for {idle:?}: stopped"
            );
            self.unwatch(id, "nobody read it for 10 s");
        }
        for r in self.watches.running.values() {
            if r.until.is_some_and(|t| now >= t) {
                r.watch.stop();
            }
        }
    }
}
