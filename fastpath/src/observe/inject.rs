//! `vswitchctl trace inject`: one frame through the current snapshot, as if
//! it had arrived on a port, with scratch state and nothing sent.
//!
//! What the dry run uses: the snapshot the workers use (ports, FDB,
//! routes, neighbours, Services), with the FDB's last-seen times copied (so
//! learning refreshes no real entry); a copy of the frame's flow and its
//! client's affinity from the real connection table, if they exist, so a
//! tracked flow keeps its endpoint; a fresh pool, output lists, learner,
//! resolver and flow cache of its own. What it leaves alone: the real
//! connection table, the FDB (a MAC the learning stage would report is
//! listed, not learned), the workers' counters and held frames. What it
//! cannot show: a worker's neighbour requests already in flight, and its
//! ICMP budget (the dry run always has budget).

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use crate::batch::{Batch, Pkt};
use crate::counters::WorkerCounters;
use crate::ctx::Ctx;
use crate::l2::fdb::Learner;
use crate::l3::resolver::Resolver;
use crate::observe::describe::describe;
use crate::observe::trace::{self, Step};
use crate::pool::FramePool;
use crate::services::conntrack::{Conntrack, FlowCache, SHARDS, flow_key};
use crate::snapshot::Snapshot;
use crate::tx::Outputs;
use crate::{MacKey, PortId};

/// Frames of the scratch pool (a flood's copies, replies, ARP requests).
const SCRATCH_FRAMES: u32 = 512;

/// What the Service stage's connection table says about the frame's flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracking {
    /// The flow is tracked already: its endpoint and translation are kept.
    Tracked,
    /// A new flow would be created (the endpoint shown was chosen now).
    New,
}

/// The result of a dry run.
#[derive(Debug, Clone)]
pub struct Injected {
    /// The frame as it arrived.
    pub ingress: String,
    pub steps: Vec<Step>,
    /// Frames the switch would send: port, and the frame.
    pub sent: Vec<(PortId, String)>,
    /// MAC addresses the learning stage would report, with their port.
    pub learned: Vec<(MacKey, PortId)>,
    pub tracking: Option<Tracking>,
    /// Drops counted on the way, by reason: a packet the switch answers
    /// (an ICMP error, a TCP reset) is counted as dropped too.
    pub dropped: Vec<&'static str>,
}

/// Runs `frame`, arrived on `port`, through the pipeline over `snap` (see
/// the module documentation). Fails when the frame does not fit a frame
/// of the pool.
pub fn inject(
    snap: &Snapshot,
    conntrack: &Conntrack,
    port: PortId,
    frame: &[u8],
    now: u64,
) -> Result<Injected, String> {
    let mut pool = FramePool::heap(SCRATCH_FRAMES);
    if frame.len() > crate::pool::FRAME_CAPACITY as usize {
        return Err(format!(
            "the frame is {} bytes; at most {} can be injected",
            frame.len(),
            crate::pool::FRAME_CAPACITY
        ));
    }
    let scratch = Conntrack::new(SHARDS);
    let mut tracked = false;
    if let Some((src, key)) = tuple(frame) {
        tracked = conntrack.copy_flow(key, &scratch, now);
        for svc in snap.services.iter() {
            conntrack.copy_affinity(svc.key(), src, &scratch, now);
        }
    }
    let (learn_tx, learn_rx) = crossbeam_channel::bounded(64);
    let (events_tx, _events_rx) = crossbeam_channel::bounded(64);
    let mut outputs = Outputs::new();
    let counters = WorkerCounters::new();
    let mut learner = Learner::new(learn_tx);
    let mut resolver = Resolver::new(events_tx);
    let mut flows = FlowCache::default();
    let snap = &Snapshot {
        fdb: snap.fdb.detached(),
        ..snap.clone()
    };
    let (addr, len) = pool.write_frame(frame).ok_or("no scratch frame is free")?;
    let mut batch = Batch::new();
    batch.push(Pkt::new(addr, len, port));
    let mut cx = Ctx {
        snap,
        pool: &mut pool,
        outputs: &mut outputs,
        counters: &counters,
        learner: &mut learner,
        resolver: &mut resolver,
        flows: &mut flows,
        conntrack: &scratch,
        now,
    };
    let (ingress, steps) = trace::run(&mut batch, &mut cx, &[0])
        .pop()
        .ok_or("the frame was not traced")?;
    let mut sent = Vec::new();
    while let Some((p, list)) = outputs.next_dirty() {
        for f in list.iter() {
            sent.push((p, describe(pool.data(f.addr, f.len))));
        }
    }
    sent.sort();
    let learned = learn_rx.try_iter().map(|e| (e.mac, e.port)).collect();
    let counted = counters.port(port).read();
    let dropped = crate::drop::DropReason::ALL
        .iter()
        .filter(|r| counted.drop_count(**r) > 0)
        .map(|r| r.name())
        .collect();
    let tracking = if tracked {
        Some(Tracking::Tracked)
    } else if scratch.counters(now).created > 0 {
        Some(Tracking::New)
    } else {
        None
    };
    Ok(Injected {
        ingress,
        steps,
        sent,
        learned,
        tracking,
        dropped,
    })
}

/// The client address and flow key of an IPv4 TCP or UDP frame.
fn tuple(frame: &[u8]) -> Option<(u32, u128)> {
    let pkt = SlicedPacket::from_ethernet(frame).ok()?;
    let Some(NetSlice::Ipv4(ip)) = &pkt.net else {
        return None;
    };
    let (sport, dport, proto) = match &pkt.transport {
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port(), 6),
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port(), 17),
        _ => return None,
    };
    let src = u32::from(ip.header().source_addr());
    let dst = u32::from(ip.header().destination_addr());
    Some((src, flow_key(src, dst, sport, dport, proto)))
}
