//! A poll-mode worker: one thread, pinned to one core, owning a frame pool
//! and the ports assigned to it.
//!
//! One loop iteration:
//!
//! ```text
//! commands → for each port: rx burst → pipeline → tx bursts
//!          → frames handed over by other workers → frames they gave back
//!          → per port: reap completions, refill fill ring, wakeups
//! ```
//!
//! Concurrency rules:
//! - Only this worker touches its pool, its ports' rings and its counters'
//!   writes. The controller reaches it through the command channel and reads
//!   [`WorkerStatus`] and [`WorkerCounters`].
//! - The worker never waits for the controller: it loads the snapshot without
//!   locking, learning reports are `try_send` on a bounded channel.

mod egress;
pub mod handoff;
mod status;
mod watch;

use std::os::fd::RawFd;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::batch::{BATCH_SIZE, Batch, Pkt};
use crate::clock;
use crate::counters::WorkerCounters;
use crate::ctx::Ctx;
pub use crate::events::WorkerEvent;
use crate::l2::fdb::{LearnEvent, Learner};
use crate::l3::resolver::Resolver;
use crate::observe::Watch;
use crate::pipeline;
use crate::pool::FramePool;
use crate::port::{Port, PortGone, RxFrame};
use crate::services::conntrack::{Conntrack, FlowCache};
use crate::snapshot::{SharedSnapshot, Snapshot};
use crate::tx::Outputs;
use crate::{MAX_PORTS, PortId};
use handoff::Mesh;
pub use status::WorkerStatus;

/// How an idle worker waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollMode {
    /// Spin without pause (lowest latency, one core always busy).
    Busy,
    /// After a run of empty polls, sleep in poll(2) on the ports for up to a
    /// millisecond at a time.
    Adaptive,
}

/// Empty loop iterations before an adaptive worker sleeps.
const IDLE_SPINS: u32 = 200;
/// Longest sleep of an adaptive worker, in milliseconds.
const IDLE_SLEEP_MS: i32 = 1;

/// Requests from the controller.
pub enum WorkerCmd {
    /// Start polling queue `queue` of a port (already opened by the
    /// controller); `added` is signalled once its rings are filled.
    AddPort {
        id: PortId,
        queue: u16,
        port: Box<dyn Port>,
        added: Option<Sender<()>>,
    },
    /// Stop polling every queue of a port this worker holds and close them;
    /// `done` is signalled afterwards.
    /// `remove`: the port leaves the configuration (`port del`), so it also
    /// releases what would outlive it (a persistent TAP); false when a port
    /// that went down is only closed.
    DelPort {
        id: PortId,
        done: Sender<()>,
        remove: bool,
    },
    /// Feed a capture or live trace ([`crate::observe`]).
    Watch(Arc<Watch>),
    /// Stop feeding the watch of this id.
    Unwatch(u64),
    /// Leave the loop.
    Stop,
}

/// Flow-cache slots a poll scrubs of removed flows
/// ([`FlowCache::scrub`]): busy, and idle.
const SCRUB_BUSY: usize = 4;
const SCRUB_IDLE: usize = 64;

struct Slot {
    id: PortId,
    queue: u16,
    port: Box<dyn Port>,
    up: bool,
    /// The port may hand over GSO and big frames ([`Port::takes_gso`]).
    big: bool,
    /// The controller has been told this port is gone.
    reported: bool,
    /// Why the port stopped.
    down_reason: Option<String>,
}

const NO_SLOT: u16 = u16::MAX;

/// Everything a worker owns.
pub struct Worker {
    id: usize,
    pool: FramePool,
    ports: Vec<Slot>,
    /// The slot of the queue of a port this worker transmits on (the first
    /// in `ports`: the lowest-numbered slot, whichever queue that is), or
    /// `NO_SLOT`.
    slot_of: Vec<u16>,
    /// Where the controller publishes; read through a cache that only
    /// touches the shared reference count when a new snapshot appears.
    snapshot: arc_swap::Cache<SharedSnapshot, Arc<Snapshot>>,
    /// The snapshot in use (taken out for the duration of an iteration).
    current: Option<Arc<Snapshot>>,
    counters: Arc<WorkerCounters>,
    status: Arc<WorkerStatus>,
    conntrack: Arc<Conntrack>,
    learner: Learner,
    resolver: Resolver,
    flows: FlowCache,
    /// The flow cache has been emptied since the last Service went.
    flows_cleared: bool,
    outputs: Outputs,
    batch: Batch,
    rx: [RxFrame; BATCH_SIZE],
    cmds: Receiver<WorkerCmd>,
    events: Sender<WorkerEvent>,
    mesh: Arc<Mesh>,
    in_transit: Vec<usize>,
    poll: PollMode,
    pollfds: Vec<libc::pollfd>,
    idle: u32,
    loops: u64,
    /// Loops with work, bursts with frames, frames of those bursts.
    activity: [u64; 3],
    gone: Vec<(usize, PortGone)>,
    /// Some port went down and the controller has not been told yet.
    unreported: bool,
    /// Captures and live traces being fed (almost always none).
    watches: Vec<Arc<Watch>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // AF_XDP ports registered the pool's memory as their UMEM: close
        // them before the pool (a later field) is freed.
        self.ports.clear();
    }
}

/// The channels and shared state a worker is built from.
pub struct WorkerParts {
    pub id: usize,
    pub pool: FramePool,
    pub snapshot: SharedSnapshot,
    pub counters: Arc<WorkerCounters>,
    pub status: Arc<WorkerStatus>,
    pub learn_tx: Sender<LearnEvent>,
    pub cmds: Receiver<WorkerCmd>,
    pub events: Sender<WorkerEvent>,
    pub mesh: Arc<Mesh>,
    pub poll: PollMode,
    /// The Service connection table, shared by every worker.
    pub conntrack: Arc<Conntrack>,
}

impl Worker {
    pub fn new(p: WorkerParts) -> Self {
        let workers = p.mesh.workers();
        let w = Worker {
            id: p.id,
            pool: p.pool,
            ports: Vec::new(),
            slot_of: vec![NO_SLOT; MAX_PORTS],
            current: Some(p.snapshot.load_full()),
            snapshot: arc_swap::Cache::new(p.snapshot),
            counters: p.counters,
            status: p.status,
            conntrack: p.conntrack,
            learner: Learner::new(p.learn_tx),
            resolver: Resolver::new(p.events.clone()),
            flows: FlowCache::default(),
            flows_cleared: true,
            outputs: Outputs::new(),
            batch: Batch::new(),
            rx: [RxFrame::default(); BATCH_SIZE],
            cmds: p.cmds,
            events: p.events,
            mesh: p.mesh,
            in_transit: vec![0; workers],
            poll: p.poll,
            pollfds: Vec::new(),
            idle: 0,
            loops: 0,
            activity: [0; 3],
            gone: Vec::new(),
            unreported: false,
            watches: Vec::new(),
        };
        w.publish_status();
        w
    }

    /// The worker's pool (tests and benches inspect it).
    pub fn pool(&self) -> &FramePool {
        &self.pool
    }

    /// The worker's pool, writable (benches preload frames).
    pub fn pool_mut(&mut self) -> &mut FramePool {
        &mut self.pool
    }

    /// Runs until told to stop or the controller goes away, then returns
    /// the worker so that the caller decides when its pool is freed: other
    /// workers may still read frames handed over from it until they stop too.
    pub fn run(mut self) -> Self {
        loop {
            if !self.handle_commands() {
                break;
            }
            let work = self.run_once();
            if work == 0 {
                self.idle_wait();
            } else {
                self.idle = 0;
            }
        }
        self.publish_status();
        self
    }

    /// Applies pending controller commands; false when the worker must stop.
    pub fn handle_commands(&mut self) -> bool {
        let mut added = Vec::new();
        let go_on = self.take_commands(&mut added);
        if !self.watches.is_empty() {
            self.prune_watches();
        }
        if !added.is_empty() {
            self.fill_rings();
            for a in added.into_iter().flatten() {
                let _ = a.send(());
            }
        }
        go_on
    }

    /// Applies the commands waiting; the senders of the ports' `added`
    /// signals go to `added`.
    fn take_commands(&mut self, added: &mut Vec<Option<Sender<()>>>) -> bool {
        loop {
            match self.cmds.try_recv() {
                Ok(WorkerCmd::AddPort {
                    id,
                    queue,
                    port,
                    added: signal,
                }) => {
                    self.add_queue(id, queue, port);
                    added.push(signal);
                }
                Ok(WorkerCmd::DelPort { id, done, remove }) => {
                    self.del_port(id, remove);
                    let _ = done.send(());
                }
                Ok(WorkerCmd::Watch(t)) => self.add_watch(t),
                Ok(WorkerCmd::Unwatch(id)) => self.watches.retain(|t| t.id != id),
                Ok(WorkerCmd::Stop) => return false,
                Err(crossbeam_channel::TryRecvError::Empty) => return true,
                Err(crossbeam_channel::TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Adds a one-queue port directly (tests and benches; the daemon uses
    /// commands).
    pub fn add_port(&mut self, id: PortId, port: Box<dyn Port>) {
        self.add_queue(id, 0, port);
    }

    /// Adds queue `queue` of port `id`.
    pub fn add_queue(&mut self, id: PortId, queue: u16, port: Box<dyn Port>) {
        if usize::from(id) >= MAX_PORTS || queue >= crate::MAX_QUEUES {
            return;
        }
        if let Some(i) = self
            .ports
            .iter()
            .position(|s| s.id == id && s.queue == queue)
        {
            // The controller reopened a queue this worker still holds (its
            // close request was lost): the new one replaces the old one,
            // whose frames come back once its socket is closed.
            let old = self.ports.swap_remove(i);
            drop(old);
            self.pool.reclaim_port(crate::lender(id, queue));
        }
        self.ports.push(Slot {
            id,
            queue,
            big: port.takes_gso(),
            port,
            up: true,
            reported: false,
            down_reason: None,
        });
        self.rebuild_slots();
        self.rebuild_pollfds();
    }

    /// Fills the rings of every port (what each poll ends with), for ports
    /// just added: the kernel already steers their queues' frames to their
    /// sockets, and a frame that finds a fill ring empty is dropped
    /// (`xsk_rx_dropped`). Done once a burst of additions has been taken,
    /// so that the sockets share the pool as [`Worker::rebuild_slots`] set
    /// it, not in the order they came.
    fn fill_rings(&mut self) {
        for i in 0..self.ports.len() {
            if self.ports[i].up
                && let Err(e) = self.ports[i].port.maintain(&mut self.pool)
            {
                self.gone.push((i, e));
            }
        }
    }

    fn del_port(&mut self, id: PortId, remove: bool) {
        let mut removed = Vec::new();
        let mut i = 0;
        while i < self.ports.len() {
            if self.ports[i].id == id {
                removed.push(self.ports.swap_remove(i));
            } else {
                i += 1;
            }
        }
        if removed.is_empty() {
            return;
        }
        self.rebuild_slots();
        for mut slot in removed {
            if remove {
                slot.port.on_remove();
            }
            let owner = crate::lender(id, slot.queue);
            // Close the socket first: only then can the kernel no longer
            // write into the frames it still holds, and they can go back to
            // the pool.
            drop(slot);
            self.pool.reclaim_port(owner);
        }
        self.rebuild_pollfds();
        self.publish_status();
    }

    /// Points each port at its first slot (after slots were added or
    /// moved), and shares the pool among the sockets' fill rings.
    fn rebuild_slots(&mut self) {
        self.slot_of.fill(NO_SLOT);
        for (i, s) in self.ports.iter().enumerate().rev() {
            self.slot_of[usize::from(s.id)] = i as u16;
        }
        let sockets = self.ports.iter().filter(|s| s.port.fills()).count();
        let share = crate::port::afxdp::fill_share(self.pool.regular(), sockets);
        for s in &mut self.ports {
            s.port.set_fill_target(share);
        }
    }

    fn rebuild_pollfds(&mut self) {
        self.pollfds = self
            .ports
            .iter()
            .filter(|s| s.up)
            .filter_map(|s| s.port.poll_fd())
            .chain(self.mesh.waker(self.id).fd())
            .map(|fd: RawFd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
    }

    fn idle_wait(&mut self) {
        self.idle = self.idle.saturating_add(1);
        if self.poll == PollMode::Busy || self.idle < IDLE_SPINS {
            std::hint::spin_loop();
            return;
        }
        if self.idle == IDLE_SPINS {
            self.publish_status();
        }
        let waker = self.mesh.waker(self.id);
        waker.going_to_sleep();
        if !self.mesh.has_frames_for(self.id) {
            if self.pollfds.is_empty() {
                std::thread::sleep(std::time::Duration::from_millis(IDLE_SLEEP_MS as u64));
            } else {
                // SAFETY: `pollfds` is a valid array of `len` pollfd structures.
                unsafe {
                    libc::poll(
                        self.pollfds.as_mut_ptr(),
                        self.pollfds.len() as libc::nfds_t,
                        IDLE_SLEEP_MS,
                    )
                };
            }
        }
        waker.woke();
    }

    /// One iteration of the poll loop; returns the number of frames handled.
    pub fn run_once(&mut self) -> usize {
        let mut snap = self
            .current
            .take()
            .expect("snapshot is put back after each iteration");
        let latest = self.snapshot.load();
        let fresh = !Arc::ptr_eq(latest, &snap);
        if fresh {
            snap = Arc::clone(latest);
        }
        let now = clock::now_ms();
        let mut work = 0;
        for i in 0..self.ports.len() {
            if !self.ports[i].up {
                continue;
            }
            let id = self.ports[i].id;
            let n = match self.ports[i].port.rx_burst(&mut self.pool, &mut self.rx) {
                Ok(n) => n,
                Err(e) => {
                    self.gone.push((i, e));
                    continue;
                }
            };
            if n == 0 {
                continue;
            }
            work += n;
            self.activity[1] += 1;
            self.activity[2] += n as u64;
            let mut bytes = 0u64;
            for rx in &self.rx[..n] {
                self.batch.push(Pkt {
                    gso: rx.gso,
                    ..Pkt::new(rx.addr, rx.len, id)
                });
                bytes += u64::from(rx.len);
            }
            self.counters.port(id).rx(n as u64, bytes);
            if self.ports[i].big {
                self.batch.set_big();
            }
            let marks = if self.watches.is_empty() {
                Vec::new()
            } else {
                self.watch_rx(id)
            };
            if marks.is_empty() {
                self.process(&snap, now, false);
            } else {
                self.process_traced(&snap, now, &marks);
            }
            self.flush(&snap);
        }
        if self.resolver.retry_due(fresh, now) {
            work += self.retry_held(&snap, now);
        }
        work += self.receive_handoffs(&snap);
        self.reclaim_returned();
        if !snap.services.is_empty() {
            // Let go of removed flows: a little on every poll, more when idle.
            self.flows
                .scrub(if work == 0 { SCRUB_IDLE } else { SCRUB_BUSY });
            self.flows_cleared = false;
        } else if !self.flows_cleared {
            self.flows.clear();
            self.flows_cleared = true;
        }
        for i in 0..self.ports.len() {
            if self.ports[i].up
                && let Err(e) = self.ports[i].port.maintain(&mut self.pool)
            {
                self.gone.push((i, e));
            }
        }
        self.handle_gone();
        self.current = Some(snap);
        self.loops += 1;
        self.activity[0] += u64::from(work > 0);
        if self.loops.is_multiple_of(1024) {
            self.publish_status();
        }
        work
    }

    /// Runs the batch through the pipeline.
    #[inline]
    fn process(&mut self, snap: &Snapshot, now: u64, held: bool) {
        self.with_ctx(snap, now, |batch, cx| {
            if held {
                pipeline::process_held(batch, cx);
            } else {
                pipeline::process(batch, cx);
            }
        });
    }

    /// Calls `f` with the batch and the pipeline's context over the rest of
    /// this worker's state (what stages borrow, lent apart from the batch).
    #[inline]
    fn with_ctx<R>(
        &mut self,
        snap: &Snapshot,
        now: u64,
        f: impl FnOnce(&mut Batch, &mut Ctx<'_>) -> R,
    ) -> R {
        let mut cx = Ctx {
            snap,
            pool: &mut self.pool,
            outputs: &mut self.outputs,
            counters: &self.counters,
            learner: &mut self.learner,
            resolver: &mut self.resolver,
            flows: &mut self.flows,
            conntrack: &self.conntrack,
            now,
        };
        f(&mut self.batch, &mut cx)
    }

    /// Runs frames that wait for a neighbour through the pipeline again.
    /// Every frame held now is tried once (frames held again go to the
    /// back of the queue), a batch at a time.
    fn retry_held(&mut self, snap: &Snapshot, now: u64) -> usize {
        let mut left = self.resolver.held();
        let mut work = 0;
        while left > 0 {
            let before = self.resolver.held();
            self.resolver
                .take_held(&mut self.batch, &mut self.pool, &self.counters, left, now);
            let taken = before - self.resolver.held();
            if taken == 0 {
                break;
            }
            left -= taken;
            work += self.batch.len();
            // Held frames come from any port.
            self.batch.set_big();
            self.process(snap, now, true);
            self.resolver.retried();
            self.flush(snap);
        }
        work
    }

    fn handle_gone(&mut self) {
        if self.gone.is_empty() && !self.unreported {
            return;
        }
        let gone = std::mem::take(&mut self.gone);
        for (slot, e) in &gone {
            let Some(s) = self.ports.get_mut(*slot) else {
                continue;
            };
            if s.up {
                tracing::warn!(port = s.id, queue = s.queue, "port down: {e}");
                s.up = false;
                s.down_reason = Some(e.0.clone());
            }
        }
        self.gone = gone;
        self.gone.clear();
        // Tell the controller; a report that does not fit in the channel is
        // retried on the next iteration.
        self.unreported = false;
        for s in self.ports.iter_mut().filter(|s| !s.up && !s.reported) {
            let reason = s.down_reason.clone().unwrap_or_default();
            s.reported = self
                .events
                .try_send(WorkerEvent::PortGone { id: s.id, reason })
                .is_ok();
            self.unreported |= !s.reported;
        }
        self.rebuild_pollfds();
    }
}
