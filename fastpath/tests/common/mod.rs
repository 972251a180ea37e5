//! Harness of the fastpath integration tests: workers over in-memory ports,
//! with the test playing the controller.
//!
//! A [`TestSwitch`] owns one or more [`Worker`]s (each with a heap
//! [`FramePool`]), the shared snapshot they forward with, and the
//! controller's side of their channels. Nothing here needs root or creates
//! kernel objects: every port is a [`MemPort`], fed through its handle's
//! `inbox` and read back from its `outbox`.
//!
//! The controller's job is explicit, so a test decides when it happens:
//! [`TestSwitch::learn`] drains the workers' learn events into the
//! [`MacTable`] and publishes a new snapshot; [`TestSwitch::publish`]
//! publishes the table and port states as they are (after a test changed
//! the table directly, for example with `age` or `add_static`). Until then,
//! workers forward with the previous snapshot, exactly as in the daemon.
//!
//! Workers are driven with `run_once` on the test thread, never on their
//! own threads, so every test is deterministic apart from the coarse clock
//! that workers read for MAC timestamps.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

pub mod frames;

use std::collections::BTreeMap;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, bounded};
use fastpath::clock;
use fastpath::counters::{PortCounterValues, WorkerCounters};
use fastpath::drop::DropReason;
use fastpath::l2::fdb::{
    DEFAULT_AGING_SECS, DEFAULT_MAC_LIMIT, LearnEvent, LearnOutcome, MacTable,
};
use fastpath::l3::neigh::NeighTable;
use fastpath::pool::FramePool;
use fastpath::port::memory::{MemHandle, MemPort};
use fastpath::services::conntrack::Conntrack;
use fastpath::services::table::ServiceTable;
use fastpath::snapshot::{self, L3Config, PortEntry, SharedSnapshot, Snapshot};
use fastpath::worker::handoff::Mesh;
use fastpath::worker::{PollMode, Worker, WorkerCmd, WorkerEvent, WorkerParts, WorkerStatus};
use fastpath::{MacKey, PortId, mac_key};

/// Rounds of `run_once` after which a switch that still has work is
/// considered stuck (a frame circulating forever would be a bug).
const MAX_ROUNDS: usize = 10_000;

/// How to build a [`TestSwitch`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Frames in each worker's pool; one worker per element.
    pub pools: Vec<u32>,
    pub aging_secs: u64,
    pub mac_limit: u32,
    /// Most conntrack flows.
    pub ct_limit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pools: vec![256],
            aging_secs: DEFAULT_AGING_SECS,
            mac_limit: DEFAULT_MAC_LIMIT,
            ct_limit: fastpath::services::conntrack::DEFAULT_LIMIT,
        }
    }
}

struct TestPort {
    worker: usize,
    up: bool,
    /// Whether published snapshots list the port at all.
    listed: bool,
    wire: MemHandle,
    /// Role, MTU and port security as published.
    entry: PortEntry,
}

/// Workers, their ports, and the controller state the test drives.
pub struct TestSwitch {
    workers: Vec<Worker>,
    counters: Vec<Arc<WorkerCounters>>,
    shared: SharedSnapshot,
    /// The controller's authoritative table; publish after changing it.
    pub table: MacTable,
    /// The router configuration to publish (routes, addresses, router MAC).
    pub l3: L3Config,
    /// The controller's neighbour table; see [`TestSwitch::learn`].
    pub neighbours: NeighTable,
    /// The Services to publish.
    pub services: ServiceTable,
    /// The connection table every worker shares.
    pub conntrack: Arc<Conntrack>,
    ports: BTreeMap<PortId, TestPort>,
    generation: u64,
    learn_rx: Receiver<LearnEvent>,
    events_rx: Receiver<WorkerEvent>,
    /// Command channel of each worker, as the controller holds it.
    cmds: Vec<Sender<WorkerCmd>>,
}

impl Default for TestSwitch {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl TestSwitch {
    pub fn new(cfg: Config) -> Self {
        assert!(!cfg.pools.is_empty(), "a switch needs at least one worker");
        let pools: Vec<FramePool> = cfg.pools.iter().map(|&n| FramePool::heap(n)).collect();
        let mesh = Arc::new(Mesh::new(pools.iter().map(FramePool::view).collect()));
        let shared = snapshot::shared(Snapshot::default());
        let (learn_tx, learn_rx) = bounded(1024);
        let (events_tx, events_rx) = bounded(64);
        let conntrack = Arc::new(Conntrack::new(cfg.ct_limit));
        let mut workers = Vec::new();
        let mut counters = Vec::new();
        let mut cmds = Vec::new();
        for (id, pool) in pools.into_iter().enumerate() {
            let (cmd_tx, cmd_rx) = bounded(16);
            let c = Arc::new(WorkerCounters::new());
            workers.push(Worker::new(WorkerParts {
                id,
                pool,
                snapshot: shared.clone(),
                counters: c.clone(),
                status: Arc::new(WorkerStatus::default()),
                learn_tx: learn_tx.clone(),
                cmds: cmd_rx,
                events: events_tx.clone(),
                mesh: mesh.clone(),
                poll: PollMode::Busy,
                conntrack: conntrack.clone(),
            }));
            counters.push(c);
            cmds.push(cmd_tx);
        }
        TestSwitch {
            workers,
            counters,
            conntrack,
            shared,
            table: MacTable::new(cfg.aging_secs, cfg.mac_limit),
            l3: L3Config {
                bridge_mtu: snapshot::DEFAULT_MTU,
                ..L3Config::default()
            },
            neighbours: NeighTable::new(300),
            services: ServiceTable::default(),
            ports: BTreeMap::new(),
            generation: 0,
            learn_rx,
            events_rx,
            cmds,
        }
    }

    /// A one-worker switch with memory ports `0..n`, published.
    pub fn with_ports(n: PortId) -> Self {
        let mut sw = Self::default();
        for id in 0..n {
            sw.add_port(id);
        }
        sw
    }

    /// Adds memory port `id` to worker 0 and publishes it (up).
    pub fn add_port(&mut self, id: PortId) -> MemHandle {
        self.add_port_on(0, id)
    }

    /// Adds memory port `id` to worker `worker` and publishes it (up).
    pub fn add_port_on(&mut self, worker: usize, id: PortId) -> MemHandle {
        let wire = self.add_port_unlisted(worker, id);
        self.ports.get_mut(&id).expect("just added").listed = true;
        self.publish();
        wire
    }

    /// Gives memory port `id` to worker `worker` without listing it in the
    /// snapshot: the state between the controller's `AddPort` command and
    /// its next publish.
    pub fn add_port_unlisted(&mut self, worker: usize, id: PortId) -> MemHandle {
        let (port, wire) = MemPort::new(id);
        self.workers[worker].add_port(id, Box::new(port));
        let prev = self.ports.insert(
            id,
            TestPort {
                worker,
                up: true,
                listed: false,
                wire: wire.clone(),
                entry: PortEntry::new(id, worker),
            },
        );
        assert!(prev.is_none(), "port {id} added twice");
        wire
    }

    /// Removes port `id` as the controller does: unpublish it and forget
    /// its MACs first, then have the owning worker close it (through the
    /// worker's command channel) and wait for the confirmation. Returns the
    /// removed port's handle.
    pub fn del_port(&mut self, id: PortId) -> MemHandle {
        let p = self.ports.remove(&id).expect("known port");
        self.table.remove_port(id);
        self.publish();
        let (done_tx, done_rx) = bounded(1);
        self.cmds[p.worker]
            .send(WorkerCmd::DelPort {
                id,
                done: done_tx,
                remove: true,
            })
            .expect("worker command channel open");
        assert!(
            self.workers[p.worker].handle_commands(),
            "worker stopped on DelPort"
        );
        done_rx.try_recv().expect("worker confirmed the removal");
        p.wire
    }

    /// Asserts that only the listed ports sent anything since the last take.
    #[track_caller]
    pub fn assert_silent_except(&self, ports: &[PortId]) {
        for id in self.port_ids() {
            if !ports.contains(&id) {
                assert_eq!(self.sent_count(id), 0, "port {id} sent something");
            }
        }
    }

    /// Takes the one frame port `id` sent.
    #[track_caller]
    pub fn take_one(&self, id: PortId) -> Vec<u8> {
        let mut sent = self.take_sent(id);
        assert_eq!(sent.len(), 1, "port {id} should have sent one frame");
        sent.pop().unwrap()
    }

    /// The neighbour reports among the worker events so far (other events
    /// are dropped).
    pub fn neighbour_events(&self) -> Vec<fastpath::l3::neigh::NeighEvent> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                WorkerEvent::Neighbour(n) => Some(n),
                WorkerEvent::PortGone { .. } => None,
            })
            .collect()
    }

    /// Changes how port `id` is published (role, MTU, port security), and publishes.
    pub fn configure_port(&mut self, id: PortId, f: impl FnOnce(&mut PortEntry)) {
        f(&mut self.ports.get_mut(&id).expect("known port").entry);
        self.publish();
    }

    /// Records the neighbour reports among `events` as the controller
    /// does (without its subnet checks) and publishes; returns the others.
    pub fn learn_neighbours(&mut self, events: Vec<WorkerEvent>) -> Vec<WorkerEvent> {
        let mut rest = Vec::new();
        for ev in events {
            match ev {
                WorkerEvent::Neighbour(n) => {
                    self.neighbours.learn(n, clock::now_ms());
                }
                other => rest.push(other),
            }
        }
        self.publish();
        rest
    }

    /// Sets whether the snapshot shows port `id` as up, and publishes.
    pub fn set_port_up(&mut self, id: PortId, up: bool) {
        self.ports.get_mut(&id).expect("known port").up = up;
        self.publish();
    }

    /// Publishes a snapshot of the current ports and table, as the
    /// controller does after every change.
    pub fn publish(&mut self) {
        self.generation += 1;
        let entries = self
            .ports
            .iter()
            .filter(|(_, p)| p.listed)
            .map(|(&id, p)| PortEntry {
                id,
                workers: vec![p.worker],
                up: p.up,
                learn_full: self.table.is_full(id),
                ..p.entry.clone()
            })
            .collect();
        // Published tables are frozen, as the controller's are.
        let mut l3 = self.l3.clone();
        l3.routes.freeze();
        let snap = Snapshot {
            l3: Arc::new(l3),
            neigh: self.neighbours.view(),
            services: Arc::new(self.services.clone()),
            ..Snapshot::build(self.generation, entries, self.table.view())
        };
        self.shared.store(Arc::new(snap));
    }

    /// Learn events the workers sent since the last call, without acting on them.
    pub fn take_learn_events(&mut self) -> Vec<LearnEvent> {
        self.learn_rx.try_iter().collect()
    }

    /// Teaches the switch that `m` lives behind `port` (a broadcast from it),
    /// publishes, and forgets the flood copies.
    pub fn teach(&mut self, port: PortId, m: [u8; 6]) {
        self.inject(port, frame(BROADCAST, m, 0xffff));
        self.run();
        self.learn();
        for id in self.port_ids() {
            self.take_sent(id);
        }
        assert_eq!(
            self.table.get(mac_key(&m)),
            Some((port, fastpath::l2::fdb::EntryKind::Learned)),
            "{m:02x?} was not learned on port {port}"
        );
    }

    /// The controller's learning step: feeds every pending learn event into
    /// the table (stamped with the workers' clock) and publishes.
    pub fn learn(&mut self) -> Vec<(LearnEvent, LearnOutcome)> {
        let now = clock::now_ms();
        let events = self.take_learn_events();
        let outcomes = events
            .into_iter()
            .map(|ev| (ev, self.table.learn(ev.mac, ev.port, now)))
            .collect();
        self.publish();
        outcomes
    }

    /// Queues a frame for the switch to receive on port `id`.
    pub fn inject(&self, id: PortId, frame: Vec<u8>) {
        self.wire(id).lock().unwrap().inbox.push_back(frame);
    }

    /// One `run_once` on every worker, in id order; returns the frames handled.
    /// Hands `w` to every worker (as the controller does) and lets them
    /// take it.
    pub fn watch(&mut self, w: Arc<fastpath::observe::Watch>) {
        for (cmds, worker) in self.cmds.iter().zip(&mut self.workers) {
            cmds.send(WorkerCmd::Watch(Arc::clone(&w))).unwrap();
            assert!(worker.handle_commands());
        }
    }

    pub fn step(&mut self) -> usize {
        self.workers.iter_mut().map(Worker::run_once).sum()
    }

    /// Runs the workers, alternating, until a round in which none has work
    /// (every injected frame received, handed over and sent, and frames
    /// given back to their owners freed). Returns the frames handled.
    pub fn run(&mut self) -> usize {
        let mut total = 0;
        for _ in 0..MAX_ROUNDS {
            let work = self.step();
            if work == 0 {
                return total;
            }
            total += work;
        }
        panic!("switch still busy after {MAX_ROUNDS} rounds");
    }

    /// The handle of port `id`.
    pub fn wire(&self, id: PortId) -> &MemHandle {
        &self.ports.get(&id).expect("known port").wire
    }

    /// Takes the frames port `id` has sent so far.
    pub fn take_sent(&self, id: PortId) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.wire(id).lock().unwrap().outbox)
    }

    /// Frames port `id` has sent so far, leaving them in place.
    pub fn sent_count(&self, id: PortId) -> usize {
        self.wire(id).lock().unwrap().outbox.len()
    }

    /// Frames still waiting in port `id`'s inbox.
    pub fn inbox_len(&self, id: PortId) -> usize {
        self.wire(id).lock().unwrap().inbox.len()
    }

    /// Port ids, ascending.
    pub fn port_ids(&self) -> Vec<PortId> {
        self.ports.keys().copied().collect()
    }

    /// Counters of port `id`, summed over all workers (as the controller reports them).
    pub fn stats(&self, id: PortId) -> PortCounterValues {
        let mut sum = PortCounterValues::default();
        for c in &self.counters {
            sum.add(&c.port(id).read());
        }
        sum
    }

    /// Counters of port `id` as kept by one worker.
    pub fn worker_stats(&self, worker: usize, id: PortId) -> PortCounterValues {
        self.counters[worker].port(id).read()
    }

    /// Sum of every drop counter of every port.
    pub fn total_drops(&self) -> u64 {
        self.port_ids()
            .into_iter()
            .map(|id| self.stats(id).drops.iter().sum::<u64>())
            .sum()
    }

    /// Sum of tx packets of every port.
    pub fn total_tx(&self) -> u64 {
        self.port_ids()
            .into_iter()
            .map(|id| self.stats(id).tx_packets)
            .sum()
    }

    /// Sum of rx packets of every port.
    pub fn total_rx(&self) -> u64 {
        self.port_ids()
            .into_iter()
            .map(|id| self.stats(id).rx_packets)
            .sum()
    }

    /// Asserts that the drop counters of every port are exactly `expected`
    /// (port, reason, count) and zero everywhere else.
    #[track_caller]
    pub fn assert_drops(&self, expected: &[(PortId, DropReason, u64)]) {
        for id in self.port_ids() {
            let s = self.stats(id);
            for reason in DropReason::ALL {
                let want: u64 = expected
                    .iter()
                    .filter(|(p, r, _)| *p == id && *r == reason)
                    .map(|e| e.2)
                    .sum();
                assert_eq!(
                    s.drop_count(reason),
                    want,
                    "port {id}: {} drops (all drops: {:?})",
                    reason.name(),
                    s.drops
                );
            }
        }
    }

    /// Worker events reported so far.
    pub fn events(&self) -> Vec<WorkerEvent> {
        self.events_rx.try_iter().collect()
    }

    /// Asserts that every pool's frames are accounted for and that no frame
    /// double-freed or returned by the wrong owner.
    #[track_caller]
    pub fn assert_pools_consistent(&self) {
        for (w, worker) in self.workers.iter().enumerate() {
            let c = worker.pool().counts();
            assert_eq!(c.errors, 0, "worker {w}: pool errors {c:?}");
            assert_eq!(
                c.free + c.lent + c.worker + c.handoff,
                c.total,
                "worker {w}: frames missing {c:?}"
            );
        }
    }

    /// Frames the workers hold between runs: with memory ports, those are
    /// the packets waiting for a neighbour to be resolved.
    pub fn frames_held(&self) -> u32 {
        self.workers.iter().map(|w| w.pool().counts().worker).sum()
    }

    /// Asserts pool consistency and that, the switch being idle, every frame
    /// is back in its free list: memory ports hold no frames, so anything
    /// else is a leak.
    #[track_caller]
    pub fn assert_no_leaks(&self) {
        self.assert_pools_consistent();
        for (w, worker) in self.workers.iter().enumerate() {
            let c = worker.pool().counts();
            assert_eq!(c.free, c.total, "worker {w}: frames leaked {c:?}");
        }
    }
}

/// A locally administered unicast MAC ending in `n`.
pub fn mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, n]
}

pub const BROADCAST: [u8; 6] = [0xff; 6];
/// The mDNS IPv4 multicast group's MAC.
pub const MULTICAST: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];

/// The table key of a MAC.
pub fn key(m: [u8; 6]) -> MacKey {
    mac_key(&m)
}

/// EtherType of the test frames (IEEE local experimental).
const ETHERTYPE_TEST: [u8; 2] = [0x88, 0xb5];

/// A minimum-size (60-byte) test frame; `tag` makes its payload unique.
pub fn frame(dst: [u8; 6], src: [u8; 6], tag: u16) -> Vec<u8> {
    frame_len(dst, src, tag, 60)
}

/// A test frame of `len` bytes (at least 14): header, then `tag` and a
/// pattern derived from it, so that a corrupted or truncated copy shows.
pub fn frame_len(dst: [u8; 6], src: [u8; 6], tag: u16, len: usize) -> Vec<u8> {
    assert!(len >= 14, "an Ethernet header is 14 bytes");
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETHERTYPE_TEST);
    let t = tag.to_be_bytes();
    let mut i = 0usize;
    while f.len() < len {
        f.push(match i {
            0 | 1 => t[i],
            _ => (i as u8).wrapping_mul(31) ^ t[1] ^ t[0],
        });
        i += 1;
    }
    f
}

/// The Internet checksum (RFC 1071), written here rather than taken from
/// the crate under test, for frames that tests break on purpose.
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Rewrites the IPv4 header checksum of the Ethernet frame `f` after a test
/// changed header bytes; does nothing if the header (by its IHL) does not fit.
pub fn fix_ipv4_checksum(f: &mut [u8]) {
    let Some(&first) = f.get(14) else { return };
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < 12 || f.len() < 14 + ihl {
        return;
    }
    f[24..26].copy_from_slice(&[0, 0]);
    let c = internet_checksum(&f[14..14 + ihl]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

/// A small deterministic PRNG (xorshift64*), so that random tests replay.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}
