//! Benchmark support for vswitch: frame builders, bench-only ports and a
//! rig that assembles one worker with its channels, counters and snapshot.
//! The criterion benches themselves live in `benches/`.
//!
//! Two ways of keeping a worker busy without a NIC:
//!
//! - Reflectors ([`MemPort::reflector`]): every transmitted frame is turned
//!   around (MACs swapped) and received again on the same port, without a
//!   copy. Known unicast between two reflectors bounces forever, so a fixed
//!   set of frames circulates. This only works when every frame produces
//!   exactly one output: a flood produces several, and with reflectors
//!   every copy comes back and floods again, so the frame count grows
//!   threefold per round trip until the pool runs dry and the benchmark
//!   measures `no_buffer` drops. (A reflected broadcast is no help either:
//!   the swap makes the broadcast address the *source*, which the parse
//!   stage drops as `invalid_src_mac`.)
//! - A [`FrameSource`] and [`FrameSink`]s: the source receives a fresh copy of
//!   a template frame into a pool frame on every poll (what a NIC's DMA into
//!   the fill ring does, except that here a CPU core pays for the 64-byte
//!   write), and a sink completes every transmission at once by freeing the
//!   frame (what reaping a TX completion ring does). Frames do not come back,
//!   so a flood stays a flood.
//!
//! Every scenario can check itself ([`Rig::check_clean`]): a benchmark that
//! drops, leaks or learns is measuring something other than its name says.
//!
//! Routed traffic cannot be reflected either: every pass through the router
//! decrements the TTL, so a reflected packet expires after a few dozen
//! rounds. The routed scenarios use a [`CyclingSource`] (fresh copies of a
//! set of frames with many destinations) and [`FrameSink`]s, with a routing
//! table built by [`cluster_routes`].

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use fastpath::counters::{PortCounterValues, WorkerCounters};
use fastpath::drop::DropReason;
use fastpath::l2::fdb::{DEFAULT_AGING_SECS, DEFAULT_MAC_LIMIT, LearnEvent, MacTable};
use fastpath::pool::FramePool;
use fastpath::port::memory::MemPort;
use fastpath::port::{Port, PortGone, PortMode, RxFrame};
use fastpath::services::conntrack::Conntrack;
use fastpath::snapshot::{self, PortEntry, SharedSnapshot, Snapshot};
use fastpath::tx::TxFrame;
use fastpath::worker::handoff::Mesh;
use fastpath::worker::{PollMode, Worker, WorkerCmd, WorkerEvent, WorkerParts, WorkerStatus};
use fastpath::{PortId, mac_key};

mod routed;
pub use routed::*;

/// Host A: the source of the known-unicast traffic (locally administered).
pub const MAC_A: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0a];
/// Host B: the destination of the known-unicast traffic.
pub const MAC_B: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0b];
/// A unicast address that no FDB entry names, so frames to it flood.
pub const MAC_UNKNOWN: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xee];

/// Smallest Ethernet frame, counting the 4-byte FCS that ports strip; used
/// as the frame length (the FCS bytes become UDP payload) so that results
/// read as "64-byte packets" like any other switch benchmark.
pub const FRAME_64B: usize = 64;

/// Frames in a worker's pool in every scenario, as in the daemon.
pub const POOL_FRAMES: u32 = 8192;

const ETH_HEADER: usize = 14;
const IPV4_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const IPPROTO_UDP: u8 = 17;

/// An Ethernet II + IPv4 + UDP frame of `len` bytes (at least 42) from
/// 10.0.0.1:1024 to 10.0.0.2:1025, with a valid IPv4 header checksum, a zero
/// (absent) UDP checksum and a zero payload.
///
/// # Panics
/// If `len` is too short for the three headers or too long for an IPv4 length.
pub fn udp_frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
    const MIN: usize = ETH_HEADER + IPV4_HEADER + UDP_HEADER;
    assert!(
        (MIN..=usize::from(u16::MAX)).contains(&len),
        "frame length {len} is out of range [{MIN}, 65535]"
    );
    let ip_len = u16::try_from(len - ETH_HEADER).expect("checked above");
    let udp_len = ip_len - IPV4_HEADER as u16;
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETHERTYPE_IPV4);
    // Version 4, IHL 5; DSCP 0; total length; id 0; DF; TTL 64; UDP;
    // checksum (filled below); 10.0.0.1 → 10.0.0.2.
    f.extend_from_slice(&[0x45, 0x00]);
    f.extend_from_slice(&ip_len.to_be_bytes());
    f.extend_from_slice(&[0x00, 0x00, 0x40, 0x00, 64, IPPROTO_UDP, 0, 0]);
    f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    let csum = ipv4_checksum(&f[ETH_HEADER..ETH_HEADER + IPV4_HEADER]);
    f[ETH_HEADER + 10..ETH_HEADER + 12].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(&1024u16.to_be_bytes());
    f.extend_from_slice(&1025u16.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.resize(len, 0);
    f
}

/// The Internet checksum of an IPv4 header whose checksum field is zero.
fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A port that receives a full burst of copies of one template frame on
/// every poll and never transmits anything back (what it is sent is
/// freed). It stands for a NIC with traffic always waiting.
pub struct FrameSource {
    template: Vec<u8>,
}

impl FrameSource {
    /// A source of copies of `template`, one whole Ethernet frame without FCS.
    pub fn new(template: Vec<u8>) -> Self {
        FrameSource { template }
    }
}

impl Port for FrameSource {
    fn rx_burst(&mut self, pool: &mut FramePool, out: &mut [RxFrame]) -> Result<usize, PortGone> {
        let mut n = 0;
        for slot in out.iter_mut() {
            // An empty pool ends the burst early; the scenario checks count
            // frames, so a starving source shows up there.
            let Some(frame) = pool.write_frame(&self.template) else {
                break;
            };
            *slot = frame.into();
            n += 1;
        }
        Ok(n)
    }

    fn tx_burst(&mut self, pool: &mut FramePool, frames: &[TxFrame]) -> Result<usize, PortGone> {
        FrameSink.tx_burst(pool, frames)
    }

    fn mode(&self) -> PortMode {
        PortMode {
            mode: "memory",
            zero_copy: false,
            io: None,
            tx_csum: false,
        }
    }
}

/// A port that receives nothing and whose transmissions complete at once:
/// every frame it accepts goes straight back to the free list.
pub struct FrameSink;

impl Port for FrameSink {
    fn rx_burst(&mut self, _pool: &mut FramePool, _out: &mut [RxFrame]) -> Result<usize, PortGone> {
        Ok(0)
    }

    fn tx_burst(&mut self, pool: &mut FramePool, frames: &[TxFrame]) -> Result<usize, PortGone> {
        for f in frames {
            pool.free(f.addr);
        }
        Ok(frames.len())
    }

    fn mode(&self) -> PortMode {
        PortMode {
            mode: "memory",
            zero_copy: true,
            io: None,
            tx_csum: false,
        }
    }
}

/// Frames handled per criterion iteration of the pipeline benches
/// (`benches/`): 1024 bursts of 64.
pub const FRAMES_PER_ITER: usize = 64 * 1024;
/// Frames a bench runs through a scenario before measuring it, to warm
/// caches and prove it clean.
pub const SETTLE_FRAMES: usize = 1 << 20;

/// One worker wired up as the daemon would (single worker, busy polling),
/// with the controller's ends of its channels held by the rig.
pub struct Rig {
    pub worker: Worker,
    pub counters: Arc<WorkerCounters>,
    /// The snapshot the worker reads; kept so the rig owns the configuration.
    pub snapshot: SharedSnapshot,
    ports: Vec<PortId>,
    learn_rx: Receiver<LearnEvent>,
    learn_events: usize,
    /// The Service connection table the worker uses.
    pub conntrack: Arc<Conntrack>,
    // Held so that the worker's channels stay connected.
    _cmds: Sender<WorkerCmd>,
    _events: Receiver<WorkerEvent>,
}

impl Rig {
    /// A worker with a heap pool of [`POOL_FRAMES`] and a published snapshot
    /// in which `ports` are up and `fdb` is the forwarding table. No port is
    /// attached yet: see [`Rig::attach`].
    pub fn new(ports: &[PortId], fdb: &MacTable) -> Self {
        let pool = FramePool::heap(POOL_FRAMES);
        let mesh = Arc::new(Mesh::new(vec![pool.view()]));
        let entries = ports.iter().map(|&id| PortEntry::new(id, 0)).collect();
        let snapshot = snapshot::shared(Snapshot::build(1, entries, fdb.view()));
        let counters = Arc::new(WorkerCounters::new());
        let (learn_tx, learn_rx) = crossbeam_channel::bounded(1024);
        let (cmds_tx, cmds) = crossbeam_channel::bounded(16);
        let (events, events_rx) = crossbeam_channel::bounded(16);
        let conntrack = Arc::new(Conntrack::default());
        let worker = Worker::new(WorkerParts {
            id: 0,
            pool,
            snapshot: snapshot.clone(),
            counters: counters.clone(),
            status: Arc::new(WorkerStatus::default()),
            learn_tx,
            cmds,
            events,
            mesh,
            poll: PollMode::Busy,
            conntrack: conntrack.clone(),
        });
        Rig {
            worker,
            conntrack,
            counters,
            snapshot,
            ports: ports.to_vec(),
            learn_rx,
            learn_events: 0,
            _cmds: cmds_tx,
            _events: events_rx,
        }
    }

    /// Starts polling `port` as port `id`.
    pub fn attach(&mut self, id: PortId, port: Box<dyn Port>) {
        self.worker.add_port(id, port);
    }

    /// Runs the worker's poll loop until it has handled at least `frames`
    /// received frames; returns how many it handled. Learning reports are
    /// drained afterwards, as the controller would.
    #[inline]
    pub fn run_frames(&mut self, frames: usize) -> usize {
        let mut done = 0;
        while done < frames {
            done += self.worker.run_once();
        }
        self.learn_events += self.learn_rx.try_iter().count();
        done
    }

    /// Proves a scenario `name` clean and warms it up before a bench
    /// measures it: every poll must handle the same number of frames, a
    /// divisor of [`FRAMES_PER_ITER`], so that each iteration handles exactly
    /// that many and the throughput criterion reports is exact; then
    /// [`SETTLE_FRAMES`] frames must leave the rig clean. Panics otherwise.
    pub fn settle(mut self, name: &str) -> Rig {
        let per_poll = self.worker.run_once();
        assert!(
            per_poll > 0 && FRAMES_PER_ITER.is_multiple_of(per_poll),
            "{name}: a poll handled {per_poll} frames, which does not divide {FRAMES_PER_ITER}"
        );
        self.run_frames(SETTLE_FRAMES);
        self.check_clean()
            .unwrap_or_else(|e| panic!("{name} before measuring: {e}"));
        self
    }

    /// The counters of port `id`.
    pub fn port(&self, id: PortId) -> PortCounterValues {
        self.counters.port(id).read()
    }

    /// The counters of all the rig's ports added together.
    pub fn totals(&self) -> PortCounterValues {
        let mut sum = PortCounterValues::default();
        for &id in &self.ports {
            sum.add(&self.port(id));
        }
        sum
    }

    /// Checks that, so far, no frame was dropped on any port, the pool saw no
    /// double use, nothing was reported for learning, and that between polls
    /// the worker holds no frame (everything received was sent or is waiting
    /// in a port). Describes the first problem found.
    pub fn check_clean(&mut self) -> Result<(), String> {
        self.learn_events += self.learn_rx.try_iter().count();
        for &id in &self.ports {
            let c = self.port(id);
            for reason in DropReason::ALL {
                let n = c.drop_count(reason);
                if n != 0 {
                    return Err(format!(
                        "port {id}: {n} frames dropped as {}",
                        reason.name()
                    ));
                }
            }
        }
        let pool = self.worker.pool().counts();
        if pool.errors != 0 {
            return Err(format!("pool: {} frame ownership errors", pool.errors));
        }
        if pool.worker != 0 || pool.handoff != 0 {
            return Err(format!(
                "pool: {} frames held by the worker and {} in transit between polls",
                pool.worker, pool.handoff
            ));
        }
        if self.learn_events != 0 {
            return Err(format!(
                "{} learning reports: the FDB is not static for this traffic",
                self.learn_events
            ));
        }
        Ok(())
    }
}

/// A table with static entries only, so forwarding never sends learning
/// reports.
pub fn static_fdb(entries: &[([u8; 6], PortId)]) -> MacTable {
    let mut t = MacTable::new(DEFAULT_AGING_SECS, DEFAULT_MAC_LIMIT);
    for (mac, port) in entries {
        t.add_static(mac_key(mac), *port);
    }
    t
}

/// A table in which the controller has learnt `entries` just now, as it
/// would after the first frames from each host. Workers then only refresh
/// the entries' timestamps (at most once a second), so forwarding sends no
/// learning reports either, but pays the cost of checking the timestamp.
pub fn learned_fdb(entries: &[([u8; 6], PortId)]) -> MacTable {
    let mut t = MacTable::new(DEFAULT_AGING_SECS, DEFAULT_MAC_LIMIT);
    let now = fastpath::clock::now_ms();
    for (mac, port) in entries {
        t.learn(mac_key(mac), *port, now);
    }
    t
}

/// Known unicast between two reflectors, port 0 (host A) and port 1
/// (host B), with static FDB entries for both hosts: `preload` frames
/// A → B of `frame_len` bytes start on port 0 and bounce between the ports
/// forever. Each poll handles one burst per port.
pub fn known_unicast_reflectors(preload: usize, frame_len: usize) -> Rig {
    known_unicast_reflectors_with(&static_fdb(&[(MAC_A, 0), (MAC_B, 1)]), preload, frame_len)
}

/// [`known_unicast_reflectors`] with the forwarding table `fdb`, which must
/// place host A on port 0 and host B on port 1.
pub fn known_unicast_reflectors_with(fdb: &MacTable, preload: usize, frame_len: usize) -> Rig {
    let mut rig = Rig::new(&[0, 1], fdb);
    let frame = udp_frame(MAC_B, MAC_A, frame_len);
    let mut p0 = MemPort::reflector(0);
    for _ in 0..preload {
        assert!(
            p0.preload(rig.worker.pool_mut(), &frame),
            "pool of {POOL_FRAMES} frames cannot hold {preload} preloaded frames"
        );
    }
    rig.attach(0, Box::new(p0));
    rig.attach(1, Box::new(MemPort::reflector(1)));
    rig
}

/// Known unicast from a [`FrameSource`] on port 0 (host A) to a
/// [`FrameSink`] on port 1 (host B). Each poll handles one burst.
pub fn known_unicast_source_sink(frame_len: usize) -> Rig {
    let mut rig = Rig::new(&[0, 1], &static_fdb(&[(MAC_A, 0), (MAC_B, 1)]));
    rig.attach(
        0,
        Box::new(FrameSource::new(udp_frame(MAC_B, MAC_A, frame_len))),
    );
    rig.attach(1, Box::new(FrameSink));
    rig
}

/// Unknown-unicast flooding: a [`FrameSource`] on port 0 sends frames from
/// host A (static on port 0, so nothing is learnt) to [`MAC_UNKNOWN`], and
/// ports `1..ports` are [`FrameSink`]s. Every received frame leaves on
/// `ports - 1` ports, as `ports - 2` copies and the original.
pub fn flood_source_sinks(ports: PortId, frame_len: usize) -> Rig {
    assert!(ports >= 2, "a flood needs at least 2 ports, got {ports}");
    let ids: Vec<PortId> = (0..ports).collect();
    let mut rig = Rig::new(&ids, &static_fdb(&[(MAC_A, 0)]));
    rig.attach(
        0,
        Box::new(FrameSource::new(udp_frame(MAC_UNKNOWN, MAC_A, frame_len))),
    );
    for id in 1..ports {
        rig.attach(id, Box::new(FrameSink));
    }
    rig
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastpath::batch::BATCH_SIZE;
    use fastpath::l3::table::{Link, NextHop};
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn udp_frame_parses_as_ipv4_udp() {
        let f = udp_frame(MAC_B, MAC_A, FRAME_64B);
        assert_eq!(f.len(), 64);
        let p = etherparse::SlicedPacket::from_ethernet(&f).expect("parses");
        let Some(etherparse::LinkSlice::Ethernet2(eth)) = p.link else {
            panic!("not Ethernet II");
        };
        assert_eq!((eth.destination(), eth.source()), (MAC_B, MAC_A));
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
            panic!("not IPv4");
        };
        assert_eq!(ip.header().total_len(), 50);
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let Some(etherparse::TransportSlice::Udp(udp)) = p.transport else {
            panic!("not UDP");
        };
        assert_eq!((udp.source_port(), udp.length()), (1024, 30));
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn udp_frame_rejects_short_lengths() {
        udp_frame(MAC_B, MAC_A, 41);
    }

    #[test]
    fn reflected_unicast_bounces_without_loss() {
        let mut rig = known_unicast_reflectors(512, FRAME_64B);
        // One burst from each port per poll.
        assert_eq!(rig.worker.run_once(), 2 * BATCH_SIZE);
        let handled = rig.run_frames(100_000);
        rig.check_clean().unwrap();
        let (p0, p1) = (rig.port(0), rig.port(1));
        assert_eq!(
            p0.rx_packets + p1.rx_packets,
            (handled + 2 * BATCH_SIZE) as u64
        );
        assert_eq!(p0.rx_packets, p1.tx_packets);
        assert_eq!(p1.rx_packets, p0.tx_packets);
        assert_eq!(
            rig.worker.pool().counts().lent,
            512,
            "no frame lost or made"
        );
    }

    #[test]
    fn learned_hosts_are_refreshed_not_reported() {
        let fdb = learned_fdb(&[(MAC_A, 0), (MAC_B, 1)]);
        let mut rig = known_unicast_reflectors_with(&fdb, 128, FRAME_64B);
        rig.run_frames(10_000);
        rig.check_clean().unwrap();
        assert_eq!(rig.port(0).rx_packets, rig.port(1).tx_packets);
        assert_eq!(fdb.summary(), (0, 2), "both hosts are learned entries");
    }

    #[test]
    fn source_to_sink_unicast_is_clean() {
        let mut rig = known_unicast_source_sink(FRAME_64B);
        assert_eq!(rig.worker.run_once(), BATCH_SIZE);
        rig.run_frames(10_000);
        rig.check_clean().unwrap();
        assert_eq!(rig.port(0).rx_packets, rig.port(1).tx_packets);
        assert_eq!(rig.worker.pool().available(), POOL_FRAMES);
    }

    #[test]
    fn flood_reaches_every_other_port_once() {
        let mut rig = flood_source_sinks(4, FRAME_64B);
        assert_eq!(rig.worker.run_once(), BATCH_SIZE);
        rig.run_frames(10_000);
        rig.check_clean().unwrap();
        let rx = rig.port(0).rx_packets;
        assert!(rx >= 10_000);
        for id in 1..4 {
            assert_eq!(rig.port(id).tx_packets, rx, "port {id}");
        }
        assert_eq!(rig.port(0).tx_packets, 0, "never back to the ingress port");
        assert_eq!(rig.worker.pool().available(), POOL_FRAMES);
    }

    #[test]
    fn cluster_routes_resolve_every_destination() {
        let r = cluster_routes(10_000, 1000);
        assert_eq!(r.l3.routes.len(), 10_000);
        assert_eq!(r.destinations.len(), 1000);
        let mut kinds = [0usize; 2];
        for &d in &r.destinations {
            let hop = r.l3.routes.lookup(IpAddr::V4(Ipv4Addr::from(d)));
            match hop {
                Some(NextHop::Peer { .. }) => kinds[0] += 1,
                Some(NextHop::Resolve {
                    link: Link::Port(ROUTED_UPLINK),
                    gw: Some(IpAddr::V4(gw)),
                }) => {
                    assert!(r.neigh.contains(IpAddr::V4(*gw)), "{gw} unresolved");
                    kinds[1] += 1;
                }
                other => panic!("{d:?}: {other:?}"),
            }
        }
        assert_eq!(kinds, [500, 500], "half local pods, half via the uplink");
    }

    #[test]
    fn routed_frames_leave_once_each_with_nothing_dropped() {
        let routes = cluster_routes(1000, 256);
        let mut rig = routed_source_sinks(&routes, FRAME_64B);
        assert_eq!(rig.worker.run_once(), BATCH_SIZE);
        rig.run_frames(10_000);
        rig.check_clean().unwrap();
        let t = rig.totals();
        assert_eq!(t.tx_packets, t.rx_packets);
        assert!(rig.port(ROUTED_UPLINK).tx_packets > 0);
        for id in ROUTED_PODS {
            assert!(rig.port(id).tx_packets > 0, "port {id}");
        }
        assert_eq!(rig.worker.pool().available(), POOL_FRAMES);
    }

    #[test]
    fn check_clean_catches_drops_and_learning() {
        // Host A is not in the table: every frame is reported for learning.
        let mut rig = Rig::new(&[0, 1], &static_fdb(&[]));
        rig.attach(
            0,
            Box::new(FrameSource::new(udp_frame(MAC_B, MAC_A, FRAME_64B))),
        );
        rig.attach(1, Box::new(FrameSink));
        rig.run_frames(BATCH_SIZE);
        let err = rig.check_clean().unwrap_err();
        assert!(err.contains("learning reports"), "{err}");

        // A reflected broadcast has a broadcast source and is dropped.
        let mut rig = Rig::new(&[0, 1], &static_fdb(&[(MAC_A, 0)]));
        let mut p0 = MemPort::reflector(0);
        p0.preload(rig.worker.pool_mut(), &udp_frame([0xff; 6], MAC_A, 64));
        rig.attach(0, Box::new(p0));
        rig.attach(1, Box::new(MemPort::reflector(1)));
        rig.run_frames(2);
        let err = rig.check_clean().unwrap_err();
        assert!(err.contains("invalid_src_mac"), "{err}");
    }
}
