//! The controller: the model of the switch's configuration and the one place
//! that changes it.
//!
//! A request is checked against the model, then the state file is written,
//! then the model changes and one snapshot is published, and only then do
//! the effects that follow from the model reach the kernel (host-port
//! routes, the uplink's maps). Opening a port, which can fail, comes before
//! the write and is undone (XDP program, promiscuous mode, a created TAP)
//! if the write fails. A request refused at any step changes nothing, in
//! memory, on disk or in the kernel (`tests/state_file.rs`). Port objects reach the owning worker over its
//! command channel; removal waits until the worker has closed the port.
//!
//! The controller also owns the learned MAC table: it drains the workers'
//! learning reports, ages entries and republishes when something changed.
//!
//! Parts: `ports` (lifecycle), `routing` (router model, uplink maps, kernel
//! routes), `services`, `show` (read-only replies), `kept` (state-file
//! entries a restart could not apply).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ctl::{
    AddrInfo, Command, MacAddr, NeighInfo, NeighState, PortRole as CtlRole, PortSpec, Reply,
    RouteSpec,
};
use fastpath::counters::PortCounterValues;
use fastpath::l2::fdb::{EntryKind, MacTable};
use fastpath::l3::neigh::{NeighTable, NeighView};
use fastpath::l3::table::NextHop;
use fastpath::port::uplink::UplinkProgram;
use fastpath::port::{Port, PortMode};
use fastpath::services::conntrack::Conntrack;
use fastpath::snapshot::{DEFAULT_MTU, L3Config, PortGuard, PortRole};
use fastpath::snapshot::{PortEntry, SharedSnapshot, Snapshot};
use fastpath::worker::{PollMode, WorkerCmd, WorkerEvent};
use fastpath::{MAX_PORTS, MacKey, PortId, clock, mac_key, mac_octets, sys};
use ipnet::IpNet;

mod kept;
mod ports;
mod routing;
mod services;
mod show;

use kept::{Entry as KeptEntry, Kept, Key as KeptKey};

use routing::{guard_of, port_facts, role_of};

use crate::l3::{self, BuiltRoute, PortView, RouterModel};
use crate::state::{self, State, StaticMac};
use crate::workers::Workers;

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
}

/// A request that cannot be carried out; the message is shown to the user.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn refuse<T>(msg: impl Into<String>) -> Result<T, Refused> {
    Err(Refused(msg.into()))
}

struct PortRecord {
    spec: PortSpec,
    id: PortId,
    worker: usize,
    up: bool,
    error: Option<String>,
    mode: Option<PortMode>,
    /// For AF_XDP ports: the ifindex attached, to notice the interface going away.
    ifindex: Option<u32>,
    /// For AF_XDP ports that are open: the socket, for the kernel's statistics.
    xsk_fd: Option<RawFd>,
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
}

/// The switch's configuration and the workers that run it.
pub struct Controller {
    settings: Settings,
    started: Instant,
    ports: BTreeMap<String, PortRecord>,
    ids: Vec<Option<String>>,
    static_fdb: BTreeMap<MacAddr, String>,
    macs: MacTable,
    workers: Workers,
    snapshot: SharedSnapshot,
    generation: u64,
    baselines: HashMap<PortId, PortCounterValues>,
    last_housekeeping: Instant,
    /// Ports opened but not yet handed to their worker (see `publish`).
    pending_adds: Vec<(usize, PortId, Box<dyn Port>)>,
    router: RouterModel,
    router_mac: MacAddr,
    neigh: NeighTable,
    /// The router's part of the snapshot, rebuilt when `l3_dirty`.
    l3: Arc<L3Config>,
    routes_built: Vec<BuiltRoute>,
    l3_dirty: bool,
    neigh_view: Arc<NeighView>,
    /// Kernel routes installed through the host port.
    kernel_routes: BTreeSet<IpNet>,
    /// The node's addresses as last seen (the host port's routes).
    node_addrs: Vec<IpAddr>,
    /// The uplink's XDP program, while the uplink is open.
    uplink: Option<UplinkProgram>,
    /// The interface the switch made promiscuous (to turn it back).
    promisc: Option<String>,
    services: services::ServiceModel,
    /// The Service connection table the workers share.
    conntrack: Arc<Conntrack>,
    /// State-file entries a restart could not apply, kept in the file.
    kept: Kept,
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
            ports: BTreeMap::new(),
            ids: vec![None; MAX_PORTS],
            static_fdb: BTreeMap::new(),
            macs,
            workers,
            snapshot,
            generation: 0,
            baselines: HashMap::new(),
            last_housekeeping: Instant::now(),
            pending_adds: Vec::new(),
            router: RouterModel::default(),
            router_mac,
            neigh,
            l3: Arc::default(),
            routes_built: Vec::new(),
            l3_dirty: true,
            neigh_view: Arc::default(),
            kernel_routes: BTreeSet::new(),
            node_addrs: Vec::new(),
            uplink: None,
            promisc: None,
            services: services::ServiceModel::default(),
            conntrack,
            kept: Kept::default(),
        }
    }

    /// Recreates the configuration of a state file. Ports that cannot be
    /// opened now (their interface is missing) are kept, down, with the
    /// reason; entries that no longer validate stay in the file, unused
    /// (see `kept`). `recovered` says how a bad file was replaced, if it was.
    pub fn restore(&mut self, mut st: State, recovered: Option<String>) {
        self.kept.recovered(recovered);
        if self.settings.router_mac.is_none()
            && let Some(mac) = st.router_mac
        {
            self.router_mac = mac;
        }
        for a in &st.addrs {
            match self.router.check_addr(*a, &self.port_views()) {
                Ok(()) => {
                    self.router.addrs.insert(*a);
                }
                Err(e) => self.kept.keep(KeptEntry::Addr(*a), e),
            }
        }
        for spec in st.ports {
            if let Err(e) = self.validate_port(&spec) {
                self.kept.keep(KeptEntry::Port(spec), e.to_string());
                continue;
            }
            let Some(id) = self.free_id() else {
                self.kept.keep(
                    KeptEntry::Port(spec),
                    format!("too many ports (at most {MAX_PORTS})"),
                );
                continue;
            };
            let worker = self.pick_worker();
            let (up, error, mode, ifindex, port) = match self.open_port(&spec, id, worker) {
                Ok((port, ifindex)) => (true, None, Some(port.mode()), ifindex, Some(port)),
                Err(e) => {
                    tracing::warn!(port = %spec.name, "restored port is down: {e}");
                    (false, Some(e.to_string()), None, None, None)
                }
            };
            let facts = port_facts(&spec);
            self.insert_port(
                PortRecord {
                    spec,
                    id,
                    worker,
                    up,
                    error,
                    mode,
                    ifindex,
                    xsk_fd: port.as_ref().and_then(|p| p.xsk_fd()),
                    retry_at: Instant::now(),
                    retry_backoff: Duration::ZERO,
                    facts,
                },
                port,
            );
        }
        // Routes were checked when they were added. A next hop that cannot
        // be reached now (its uplink is missing) keeps the route configured
        // but out of the table, as a down port stays configured.
        for r in st.routes {
            let valid = r.prefix == r.prefix.trunc()
                && (r.via.is_some() != r.dev.is_some())
                && !self.router.routes.contains_key(&r.prefix);
            if valid {
                self.router.routes.insert(r.prefix, r);
            } else {
                self.kept.keep(KeptEntry::Route(r), "not a valid route");
            }
        }
        self.l3_dirty = true;
        self.restore_services(std::mem::take(&mut st.services));
        for s in st.fdb {
            match self.ports.get(&s.port) {
                Some(r) if !s.mac.is_multicast() && !s.mac.is_zero() => {
                    self.macs.add_static(mac_key(&s.mac.0), r.id);
                    self.static_fdb.insert(s.mac, s.port);
                }
                Some(_) => self
                    .kept
                    .keep(KeptEntry::Fdb(s), "not a unicast MAC address"),
                None => {
                    let why = format!("port '{}' was not restored", s.port);
                    self.kept.keep(KeptEntry::Fdb(s), why)
                }
            }
        }
        // Keep the router MAC chosen now; written once everything is
        // restored, with what was not applied, so the file never loses
        // what it held.
        if let Err(e) = self.persist(&self.state()) {
            tracing::warn!("{e}");
        }
        self.publish();
    }

    /// Serves one request.
    pub fn handle(&mut self, cmd: Command) -> Result<Reply, Refused> {
        // What the workers reported must reach the data plane even if the
        // command itself changes nothing.
        if self.drain_worker_reports() {
            self.publish();
        }
        match cmd {
            Command::Show => Ok(Reply::Show(self.show())),
            Command::PortList => Ok(Reply::Ports(self.port_infos())),
            Command::PortAdd(spec) => self.port_add(spec),
            cmd @ (Command::PortDel { .. }
            | Command::AddrDel { .. }
            | Command::RouteDel { .. }
            | Command::FdbDel { .. }
            | Command::ServiceDel { .. })
                if self.kept_target(&cmd).is_some() =>
            {
                self.forget_kept(&cmd)
            }
            Command::PortDel { name, if_exists } => {
                if if_exists && !self.ports.contains_key(&name) {
                    return Ok(Reply::Done);
                }
                self.port_del(&name)
            }
            Command::FdbShow => Ok(Reply::Fdb(self.fdb_entries())),
            Command::FdbAdd { mac, port } => self.fdb_add(mac, &port),
            Command::FdbDel { mac } => self.fdb_del(mac),
            Command::FdbFlush => {
                if self.macs.flush_learned() > 0 {
                    self.publish();
                }
                Ok(Reply::Done)
            }
            Command::Stats { port } => self.stats(port.as_deref()),
            Command::AddrAdd { addr, may_exist } => self.addr_add(addr, may_exist),
            Command::AddrDel { addr, if_exists } => self.addr_del(addr, if_exists),
            Command::AddrList => Ok(Reply::Addrs(
                self.router
                    .addrs
                    .iter()
                    .map(|a| AddrInfo {
                        addr: *a,
                        mac: self.router_mac,
                    })
                    .collect(),
            )),
            Command::RouteAdd(spec) => self.route_add(spec),
            Command::RouteDel { prefix, if_exists } => self.route_del(prefix, if_exists),
            // A read: the table `publish` built for the current model.
            Command::RouteList => Ok(Reply::Routes(
                self.routes_built.iter().map(|r| r.info.clone()).collect(),
            )),
            Command::NeighList => Ok(Reply::Neighbours(self.neigh_infos())),
            cmd @ (Command::ServiceAdd(_)
            | Command::ServiceBackends { .. }
            | Command::ServiceDel { .. }) => self.service_change(vec![cmd]),
            Command::Batch { commands } => self.service_change(commands),
            Command::ServiceList => Ok(self.service_list()),
            Command::CtList => Ok(self.ct_list()),
            Command::CtFlush => {
                self.conntrack.flush();
                Ok(Reply::Done)
            }
            Command::CtStats => Ok(self.ct_stats()),
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
                    if let Some(rec) = self.record_by_id(id) {
                        tracing::warn!(port = %rec.spec.name, "port down: {reason}");
                        rec.up = false;
                        rec.error = Some(reason);
                        let worker = rec.worker;
                        self.retire(id, worker);
                        changed = true;
                    }
                }
                WorkerEvent::Neighbour(n) => {
                    let views = views.get_or_insert_with(|| self.port_views());
                    if self.router.accept_neighbour(&n, views) {
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

    fn state(&self) -> State {
        State {
            version: state::STATE_VERSION,
            ports: self.ports.values().map(|r| r.spec.clone()).collect(),
            fdb: self
                .static_fdb
                .iter()
                .map(|(mac, port)| StaticMac {
                    mac: *mac,
                    port: port.clone(),
                })
                .collect(),
            router_mac: Some(self.router_mac),
            addrs: self.router.addrs.iter().copied().collect(),
            routes: self.router.routes.values().cloned().collect(),
            services: self.services.specs.values().cloned().collect(),
        }
    }

    /// Writes `st` (a model) to the state file, with the entries kept
    /// from the last restore that `st` does not replace.
    fn persist(&self, st: &State) -> Result<(), Refused> {
        self.persist_with(st, &self.kept)
    }

    fn persist_with(&self, st: &State, kept: &Kept) -> Result<(), Refused> {
        let mut st = st.clone();
        kept.add_to(&mut st);
        state::save(&self.settings.state, &st).map_err(|e| {
            Refused(format!(
                "cannot write state file {}: {e}",
                self.settings.state.display()
            ))
        })
    }

    fn fdb_add(&mut self, mac: MacAddr, port: &str) -> Result<Reply, Refused> {
        if mac.is_multicast() || mac.is_zero() {
            return refuse(format!("MAC {mac} is not a unicast address"));
        }
        let Some(rec) = self.ports.get(port) else {
            return refuse(format!("port '{port}' does not exist"));
        };
        let id = rec.id;
        let mut st = self.state();
        st.fdb.retain(|s| s.mac != mac);
        st.fdb.push(StaticMac {
            mac,
            port: port.to_string(),
        });
        st.fdb.sort_by_key(|s| s.mac);
        self.persist(&st)?;
        self.static_fdb.insert(mac, port.to_string());
        self.macs.add_static(mac_key(&mac.0), id);
        self.publish();
        Ok(Reply::Done)
    }

    fn fdb_del(&mut self, mac: MacAddr) -> Result<Reply, Refused> {
        let key = mac_key(&mac.0);
        match self.macs.get(key) {
            None => refuse(format!("no FDB entry for {mac}")),
            Some((_, EntryKind::Learned)) => {
                self.macs.remove(key);
                self.publish();
                Ok(Reply::Done)
            }
            Some((_, EntryKind::Static)) => {
                let mut st = self.state();
                st.fdb.retain(|s| s.mac != mac);
                self.persist(&st)?;
                self.static_fdb.remove(&mac);
                self.macs.remove(key);
                self.publish();
                Ok(Reply::Done)
            }
        }
    }

    /// The key of a kept entry that `cmd` deletes, if the model does not
    /// have it (the model's own entry is deleted the usual way).
    fn kept_target(&self, cmd: &Command) -> Option<KeptKey> {
        let key = match cmd {
            Command::PortDel { name, .. } => KeptKey::Port(name.clone()),
            Command::AddrDel { addr, .. } => KeptKey::Addr(*addr),
            Command::RouteDel { prefix, .. } => KeptKey::Route(*prefix),
            Command::FdbDel { mac } => KeptKey::Fdb(*mac),
            Command::ServiceDel { service, .. } => KeptKey::Service(*service),
            _ => return None,
        };
        (self.kept.contains(&key) && !self.model_has(&key)).then_some(key)
    }

    /// Deletes a kept entry: from the file, then from memory.
    fn forget_kept(&mut self, cmd: &Command) -> Result<Reply, Refused> {
        let Some(key) = self.kept_target(cmd) else {
            return Ok(Reply::Done);
        };
        let mut kept = self.kept.clone();
        kept.remove(&key);
        self.persist_with(&self.state(), &kept)?;
        self.kept = kept;
        Ok(Reply::Done)
    }

    fn model_has(&self, key: &KeptKey) -> bool {
        match key {
            KeptKey::Port(n) => self.ports.contains_key(n),
            KeptKey::Addr(a) => self.router.addrs.contains(a),
            KeptKey::Route(p) => self.router.routes.contains_key(p),
            KeptKey::Service(s) => self.services.specs.contains_key(s),
            KeptKey::Fdb(m) => self.static_fdb.contains_key(m),
        }
    }

    /// Builds and publishes a snapshot of the current model.
    fn publish(&mut self) {
        // Kept entries the model now replaces are gone from the file.
        let mut kept = std::mem::take(&mut self.kept);
        kept.prune(|k| self.model_has(k));
        self.kept = kept;
        self.generation += 1;
        self.rebuild_l3();
        let entries = self
            .ports
            .values()
            .map(|r| PortEntry {
                id: r.id,
                worker: r.worker,
                up: r.up,
                learn_full: self.macs.is_full(r.id),
                role: role_of(&r.spec),
                mtu: r.facts.mtu,
                guard: guard_of(&r.spec),
            })
            .collect();
        let snap = Snapshot {
            l3: self.l3.clone(),
            neigh: self.neigh_view.clone(),
            services: self.services.table.clone(),
            ..Snapshot::build(self.generation, entries, self.macs.view())
        };
        self.snapshot.store(Arc::new(snap));
        // New ports start polling only once the snapshot knows them, so
        // their first frames are forwarded like any other.
        for (worker, id, port) in self.pending_adds.drain(..) {
            let _ = self.workers.handles[worker]
                .cmds
                .send(WorkerCmd::AddPort { id, port });
        }
    }
}
