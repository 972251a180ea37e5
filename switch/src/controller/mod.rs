//! The controller: the one place that changes the switch's configuration,
//! and the short loop that wires the parts.
//!
//! Every command that changes the configuration takes one path
//! (`change`): the model checks it on a copy ([`Model::apply`], pure) →
//! the state file is written → the effects that can fail are performed
//! (opening a port: its interface, an uplink's XDP program and promiscuous
//! mode) → the new model is committed and one snapshot published, which
//! brings the kernel in line (the host port's routes, the uplink's maps) →
//! ports the model dropped are closed. A step before the commit that fails
//! leaves nothing of the command: a refused write opened nothing; a failed
//! open puts the previous state file and backup back (`tests/state_file.rs`).
//! What follows the commit does not refuse it: a kernel route or map sync
//! that fails is logged and tried again at the next sync. Kernel effects
//! follow the model only: a read command never changes the kernel.
//!
//! The controller also owns learned state: the MAC table (the workers'
//! learning reports, aging), neighbours, port health.
//!
//! Parts: `ports` (lifecycle), `kernel` (the router's snapshot part and
//! what follows from it in the kernel: routes, the uplink's maps,
//! promiscuous mode), `services` (the Service table and `ct`), `show`
//! (read-only replies), `observe` (`trace` and `capture`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ctl::{
    AddrInfo, Command, MacAddr, NeighInfo, NeighState, PortRole as CtlRole, PortSpec, Reply,
};
use fastpath::counters::PortCounterValues;
use fastpath::l2::fdb::{EntryKind, MacTable};
use fastpath::l3::neigh::{NeighTable, NeighView};
use fastpath::l3::table::NextHop;
use fastpath::port::tap::TapIo;
use fastpath::port::uplink::UplinkProgram;
use fastpath::port::{Port, PortMode};
use fastpath::services::conntrack::Conntrack;
use fastpath::snapshot::{DEFAULT_MTU, L3Config, PortGuard, PortRole};
use fastpath::snapshot::{PortEntry, SharedSnapshot, Snapshot};
use fastpath::worker::{PollMode, WorkerCmd, WorkerEvent};
use fastpath::{MAX_PORTS, MacKey, PortId, clock, mac_key, mac_octets, sys};
use ipnet::IpNet;

mod drops;
mod kernel;
pub mod metrics;
mod observe;
mod ports;
mod restore;
mod services;
mod show;

use kernel::{guard_of, role_of};
use ports::Opened;

pub use crate::model::Refused;
use crate::model::router::{self as l3, BuiltRoute, PortView};
use crate::model::{Facts, Model, changes_model};
use crate::state;
use crate::workers::Workers;
use drops::TapDrops;

/// How long a port removal waits for its worker.
const DEL_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait between attempts to re-attach a down port.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(30);
/// How often interfaces and MAC ages are checked.
const HOUSEKEEPING: Duration = Duration::from_millis(500);

/// Daemon settings that do not change at run time.
#[derive(Debug, Clone)]
pub struct Settings {
    pub socket: PathBuf,
    pub state: PathBuf,
    pub poll: PollMode,
    pub mac_aging_secs: u64,
    pub mac_limit: u32,
    /// `--router-mac`: overrides the state file's.
    pub router_mac: Option<MacAddr>,
    pub neigh_timeout_secs: u64,
    /// Smallest Maglev table size (`--maglev-size`).
    pub maglev_min_size: u32,
    /// NodePorts Services may use (`--node-port-range`).
    pub node_port_range: (u16, u16),
    /// `--tap-io`: how TAP ports move frames.
    pub tap_io: TapIo,
}

fn refuse<T>(msg: impl Into<String>) -> Result<T, Refused> {
    Err(Refused(msg.into()))
}

struct PortRecord {
    spec: PortSpec,
    id: PortId,
    /// The worker of each queue, in queue order.
    workers: Vec<usize>,
    up: bool,
    error: Option<String>,
    mode: Option<PortMode>,
    /// For AF_XDP ports: the ifindex attached, to notice the interface going away.
    ifindex: Option<u32>,
    /// For AF_XDP ports that are open: the sockets (one per queue), for
    /// the kernel's statistics.
    xsk_fds: Vec<RawFd>,
    /// For AF_XDP ports: the kernel's drops (`rx_dropped`, `rx_ring_full`)
    /// on the port's earlier sockets, so that `stats` keeps counting up
    /// across a re-attach.
    xsk_drops: [u64; 2],
    /// For TAP ports: the device's kernel drops since the port opened.
    tap_drops: TapDrops,
    /// While down: when to try re-attaching next, and the current back-off.
    retry_at: Instant,
    retry_backoff: Duration,
    /// What the router needs to know about the interface (see `PortFacts`).
    facts: PortFacts,
}

/// What the router learns about a port's interface when it opens it.
#[derive(Debug, Clone, Default)]
struct PortFacts {
    mtu: u16,
    /// Host port: the MAC of the node kernel's side.
    peer_mac: Option<MacKey>,
    /// Uplink: the node's subnets on the NIC.
    links: Vec<IpNet>,
    /// Uplink: the node's addresses on the NIC.
    link_addrs: Vec<IpAddr>,
    /// An AF_XDP port on a virtual interface (a veth): its peer may send
    /// partial checksums, which the switch completes.
    finish_csum: bool,
}

/// The switch's configuration and the workers that run it.
pub struct Controller {
    settings: Settings,
    started: Instant,
    /// State-file writes done and failed (`--metrics`).
    state_writes: std::cell::Cell<[u64; 2]>,
    ports: BTreeMap<String, PortRecord>,
    ids: Vec<Option<String>>,
    /// The configuration (see `crate::model`); the records in `ports`
    /// hold the same specs, with what the running ports add.
    model: Model,
    /// How an unreadable state file was recovered, if it was.
    recovered: Option<String>,
    macs: MacTable,
    workers: Workers,
    snapshot: SharedSnapshot,
    generation: u64,
    baselines: HashMap<PortId, Vec<PortCounterValues>>,
    last_housekeeping: Instant,
    /// Ports opened but not yet handed to their worker (see `publish`).
    /// Opened queues to hand to their workers (worker, port, queue).
    pending_adds: Vec<(usize, PortId, u16, Box<dyn Port>)>,
    router_mac: MacAddr,
    neigh: NeighTable,
    /// The router's part of the snapshot, rebuilt when `l3_dirty`.
    l3: Arc<L3Config>,
    routes_built: Vec<BuiltRoute>,
    l3_dirty: bool,
    neigh_view: Arc<NeighView>,
    /// Kernel routes installed through the host port.
    kernel_routes: BTreeSet<IpNet>,
    /// The host port's interface those routes were added through (routes
    /// go with their interface when it is deleted).
    kernel_routes_dev: u32,
    /// The node's addresses as last seen (the host port's routes).
    node_addrs: Vec<IpAddr>,
    /// The uplink's XDP program, while the uplink is open.
    uplink: Option<UplinkProgram>,
    /// The interface the switch made promiscuous (to turn it back).
    promisc: Option<String>,
    /// The data plane's Service table, built from the model's Services.
    service_table: Arc<fastpath::services::table::ServiceTable>,
    /// The Service connection table the workers share.
    conntrack: Arc<Conntrack>,
    /// Captures and live traces running.
    watches: observe::Watches,
}

/// A random locally administered unicast MAC.
fn random_mac() -> MacAddr {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    let b = h.finish().to_be_bytes();
    MacAddr([(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]])
}

impl Controller {
    pub fn new(
        settings: Settings,
        workers: Workers,
        snapshot: SharedSnapshot,
        conntrack: Arc<Conntrack>,
    ) -> Self {
        let macs = MacTable::new(settings.mac_aging_secs, settings.mac_limit);
        let router_mac = settings.router_mac.unwrap_or_else(random_mac);
        let neigh = NeighTable::new(settings.neigh_timeout_secs);
        Controller {
            settings,
            started: Instant::now(),
            state_writes: Default::default(),
            ports: BTreeMap::new(),
            ids: vec![None; MAX_PORTS],
            model: Model::default(),
            recovered: None,
            macs,
            workers,
            snapshot,
            generation: 0,
            baselines: HashMap::new(),
            last_housekeeping: Instant::now(),
            pending_adds: Vec::new(),
            router_mac,
            neigh,
            l3: Arc::default(),
            routes_built: Vec::new(),
            l3_dirty: true,
            neigh_view: Arc::default(),
            kernel_routes: BTreeSet::new(),
            kernel_routes_dev: 0,
            node_addrs: Vec::new(),
            uplink: None,
            promisc: None,
            service_table: Arc::default(),
            conntrack,
            watches: Default::default(),
        }
    }

    /// Serves one request.
    pub fn handle(&mut self, cmd: Command) -> Result<Reply, Refused> {
        // What the workers reported must reach the data plane even if the
        // command itself changes nothing.
        if self.drain_worker_reports() {
            self.publish();
        }
        if changes_model(&cmd, &self.model) {
            return self.change(&cmd);
        }
        match cmd {
            Command::Show => Ok(Reply::Show(self.show())),
            Command::PortList => Ok(Reply::Ports(self.port_infos())),
            Command::FdbShow => Ok(Reply::Fdb(self.fdb_entries())),
            Command::FdbDel { mac } => self.forget_learned(mac),
            Command::FdbFlush => {
                if self.macs.flush_learned() > 0 {
                    self.publish();
                }
                Ok(Reply::Done)
            }
            Command::Stats { port } => self.stats(port.as_deref()),
            Command::AddrList => Ok(Reply::Addrs(
                self.model
                    .router
                    .addrs
                    .iter()
                    .map(|a| AddrInfo {
                        owner: self.model.router.addr_owners.get(a).cloned(),
                        addr: *a,
                        mac: self.router_mac,
                    })
                    .collect(),
            )),
            // A read: the table `publish` built for the current model.
            Command::RouteList => Ok(Reply::Routes(
                self.routes_built.iter().map(|r| r.info.clone()).collect(),
            )),
            Command::NeighList => Ok(Reply::Neighbours(self.neigh_infos())),
            Command::ServiceList => Ok(self.service_list()),
            Command::CtList { after, limit } => {
                self.ct_list(after.as_deref(), limit).map_err(Refused)
            }
            Command::CtFlush => {
                self.conntrack.flush();
                Ok(Reply::Done)
            }
            Command::CtStats => Ok(self.ct_stats()),
            Command::TraceInject { port, frame } => self.trace_inject(&port, &frame),
            Command::WatchStart(spec) => self.watch_start(&spec),
            Command::WatchRead { id } => self.watch_read(id),
            Command::WatchStop { id } => self.watch_stop(id),
            other => Err(Refused(format!("unexpected request {other:?}"))),
        }
    }

    /// The one path of every command that changes the configuration (see
    /// the module documentation).
    fn change(&mut self, cmd: &Command) -> Result<Reply, Refused> {
        let next = self.model.apply(cmd, &self.facts())?;
        if next == self.model {
            return Ok(Reply::Done);
        }
        self.persist(&next)?;
        let mut opened = Vec::new();
        for spec in next.ports.values() {
            if self.model.ports.contains_key(&spec.name) {
                continue;
            }
            match self.open_new(spec) {
                Ok(o) => opened.push(o),
                Err(e) => {
                    for o in opened {
                        self.abandon(o);
                    }
                    self.unpersist();
                    return Err(e.into());
                }
            }
        }
        self.commit(next, opened);
        state::settle(&self.settings.state);
        Ok(Reply::Done)
    }

    /// Makes `next` the model: the runtime follows it (ports, static MACs,
    /// neighbours, the Service table), one snapshot is published (and with
    /// it the kernel's routes and the uplink's maps), then ports it no
    /// longer has are closed.
    fn commit(&mut self, next: Model, opened: Vec<Opened>) {
        let prev = std::mem::replace(&mut self.model, next);
        let mut removed = Vec::new();
        for name in prev.ports.keys() {
            if !self.model.ports.contains_key(name)
                && let Some(rec) = self.unlink_port(name)
            {
                removed.push(rec);
            }
        }
        for Opened { rec, queues } in opened {
            tracing::info!(port = %rec.spec.name, id = rec.id, workers = ?rec.workers,
                mode = rec.mode.as_ref().map(|m| m.mode), "port added");
            self.insert_port(rec, queues);
        }
        for (mac, port) in &prev.fdb {
            if self.model.fdb.get(mac) != Some(port) {
                self.macs.remove(mac_key(&mac.0));
            }
        }
        for (mac, port) in &self.model.fdb {
            if prev.fdb.get(mac) != Some(port)
                && let Some(rec) = self.ports.get(port)
            {
                self.macs.add_static(mac_key(&mac.0), rec.id);
            }
        }
        if prev
            .router
            .addrs
            .iter()
            .any(|a| !self.model.router.addrs.contains(a))
        {
            self.forget_foreign_neighbours();
        }
        let l3_changed = prev.router != self.model.router || prev.ports != self.model.ports;
        self.l3_dirty |= l3_changed;
        let changed: BTreeSet<ctl::ServiceKey> = prev
            .services
            .keys()
            .chain(self.model.services.keys())
            .filter(|k| prev.services.get(k) != self.model.services.get(k))
            .copied()
            .collect();
        let old_node_ports: BTreeSet<(u16, u8)> = self.service_table.node_ports().collect();
        self.rebuild_services(&changed);
        self.publish();
        if !l3_changed && !changed.is_empty() {
            // Routing did not change, so `publish` left the kernel alone:
            // what follows from the Services alone.
            let new_node_ports: BTreeSet<(u16, u8)> = self.service_table.node_ports().collect();
            if old_node_ports != new_node_ports {
                self.sync_uplink();
            }
            let vips_changed = changed
                .iter()
                .any(|k| prev.services.contains_key(k) != self.model.services.contains_key(k));
            if vips_changed {
                self.sync_kernel_routes();
            }
        }
        let gone: Vec<u64> = changed
            .iter()
            .filter(|k| !self.model.services.contains_key(k))
            .map(services::packed)
            .collect();
        if !gone.is_empty() {
            // A deleted Service's flows are over (kube-proxy clears them too).
            self.conntrack.forget_services(&gone);
        }
        for rec in removed {
            self.close(rec);
        }
    }

    /// Neighbours learned on a subnet that is no longer the router's go.
    fn forget_foreign_neighbours(&mut self) {
        let views = self.port_views();
        let router = &self.model.router;
        self.neigh.retain(|ip, n| {
            router.accept_neighbour(
                &fastpath::l3::neigh::NeighEvent {
                    ip,
                    mac: n.mac,
                    port: n.port,
                },
                &views,
            )
        });
        self.neigh_view = self.neigh.view();
    }

    /// What the model's checks need from the running switch.
    fn facts(&self) -> Facts {
        Facts {
            views: self.port_views(),
            built: self.routes_built.iter().map(|r| r.prefix).collect(),
            node_ports: self.settings.node_port_range,
        }
    }

    /// `fdb del` of a learned entry (static ones are the model's).
    fn forget_learned(&mut self, mac: MacAddr) -> Result<Reply, Refused> {
        let key = mac_key(&mac.0);
        match self.macs.get(key) {
            Some((_, EntryKind::Learned)) => {
                self.macs.remove(key);
                self.publish();
                Ok(Reply::Done)
            }
            _ => Err(crate::model::FdbError::NoEntry(mac).into()),
        }
    }

    /// Periodic work: learning reports, port failures, aging, interface checks.
    pub fn tick(&mut self) {
        let mut changed = self.drain_worker_reports();
        if self.last_housekeeping.elapsed() >= HOUSEKEEPING {
            self.last_housekeeping = Instant::now();
            changed |= self.macs.age(clock::now_ms()) > 0;
            if self.neigh.age(clock::now_ms()) > 0 {
                self.neigh_view = self.neigh.view();
                changed = true;
            }
            changed |= self.refresh_node_addrs();
            changed |= self.check_interfaces();
            changed |= self.revive_ports();
            self.conntrack.sweep(clock::now_ms());
            self.expire_watches();
        }
        if changed {
            self.publish();
        }
    }

    /// Stops the workers (closing every port).
    pub fn shutdown(&mut self) {
        self.workers.stop();
        // The sockets are closed: hand the uplink back to the kernel whole.
        self.release_uplink();
    }

    fn drain_worker_reports(&mut self) -> bool {
        let mut changed = false;
        let now = clock::now_ms();
        while let Ok(ev) = self.workers.learn_rx.try_recv() {
            // Ignore reports about ports removed since the frame arrived.
            if self
                .ids
                .get(usize::from(ev.port))
                .is_some_and(Option::is_some)
            {
                changed |= self.macs.learn(ev.mac, ev.port, now).changed();
            }
        }
        let mut views = None;
        let mut neigh_changed = false;
        while let Ok(ev) = self.workers.events_rx.try_recv() {
            match ev {
                WorkerEvent::PortGone { id, reason } => {
                    // One report per queue: the first retires every queue.
                    if let Some(rec) = self.record_by_id(id).filter(|r| r.up) {
                        tracing::warn!(port = %rec.spec.name, "port down: {reason}");
                        rec.up = false;
                        rec.error = Some(reason);
                        self.retire(id);
                        changed = true;
                    }
                }
                WorkerEvent::Neighbour(n) => {
                    let views = views.get_or_insert_with(|| self.port_views());
                    if self.model.router.accept_neighbour(&n, views) {
                        neigh_changed |= self.neigh.learn(n, now);
                    }
                }
            }
        }
        if neigh_changed {
            self.neigh_view = self.neigh.view();
        }
        changed || neigh_changed
    }

    /// Writes `model` to the state file.
    fn persist(&self, model: &Model) -> Result<(), Refused> {
        let r = state::save(&self.settings.state, &model.state(self.router_mac));
        let [done, failed] = self.state_writes.get();
        self.state_writes.set(match r {
            Ok(()) => [done + 1, failed],
            Err(_) => [done, failed + 1],
        });
        r.map_err(|e| {
            Refused(format!(
                "cannot write state file {}: {e}",
                self.settings.state.display()
            ))
        })
    }

    /// Puts back the state file the last `persist` replaced (a command
    /// whose effects failed after the write).
    fn unpersist(&self) {
        if let Err(e) = state::revert(&self.settings.state) {
            tracing::error!(
                "cannot put back state file {}: {e}",
                self.settings.state.display()
            );
        }
    }

    /// Builds and publishes a snapshot of the current model.
    fn publish(&mut self) {
        self.generation += 1;
        self.rebuild_l3();
        let entries = self
            .ports
            .values()
            .map(|r| PortEntry {
                id: r.id,
                workers: ports::distinct(&r.workers),
                up: r.up,
                learn_full: self.macs.is_full(r.id),
                role: role_of(&r.spec),
                mtu: r.facts.mtu,
                guard: guard_of(&r.spec),
                finish_csum: r.facts.finish_csum,
                gso: r.spec.offloads(),
                tx_csum: r.mode.as_ref().is_some_and(|m| m.tx_csum),
            })
            .collect();
        let snap = Snapshot {
            l3: self.l3.clone(),
            neigh: self.neigh_view.clone(),
            services: self.service_table.clone(),
            ..Snapshot::build(self.generation, entries, self.macs.view())
        };
        self.snapshot.store(Arc::new(snap));
        // New ports start polling only once the snapshot knows them, so
        // their first frames are forwarded like any other; the request
        // that added them is answered once their workers have filled their
        // rings (a frame the kernel steers to a socket with an empty fill
        // ring is dropped), or after a second at most.
        let (added, filled) = crossbeam_channel::unbounded();
        let mut waiting = 0;
        for (worker, id, queue, port) in self.pending_adds.drain(..) {
            let sent = self.workers.handles[worker].cmds.send(WorkerCmd::AddPort {
                id,
                queue,
                port,
                added: Some(added.clone()),
            });
            waiting += usize::from(sent.is_ok());
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while waiting > 0 && filled.recv_deadline(deadline).is_ok() {
            waiting -= 1;
        }
    }
}
