//! The controller: the model of the switch's configuration and the one place
//! that changes it.
//!
//! A request goes: validate → apply (open the port, update the model) →
//! persist the state file → build a snapshot → publish. A request that fails
//! at any step changes nothing, in memory or on disk. Port objects reach the
//! owning worker over its command channel; removal waits until the worker has
//! closed the port.
//!
//! The controller also owns the learned MAC table: it drains the workers'
//! learning reports, ages entries and republishes when something changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use ctl::{
    AddrInfo, Command, DaemonInfo, FdbEntry, FdbKind, FdbSummary, FramePoolInfo, MacAddr,
    NeighInfo, NeighState, PortInfo, PortRole as CtlRole, PortSpec, PortState, PortStats, PortType,
    Reply, RouteSpec, ShowReply, WorkerInfo, XdpMode, XdpStats,
};
use fastpath::conntrack::Conntrack;
use fastpath::counters::PortCounterValues;
use fastpath::drop::DropReason;
use fastpath::fdb::{EntryKind, MacTable};
use fastpath::neigh::{NeighTable, NeighView};
use fastpath::port::afxdp::{AfXdpPort, AttachMode};
use fastpath::port::tap::TapPort;
use fastpath::port::uplink::{UplinkAttach, UplinkProgram};
use fastpath::port::{Port, PortMode};
use fastpath::route::NextHop;
use fastpath::snapshot::{DEFAULT_MTU, L3Config, PortGuard, PortRole};
use fastpath::snapshot::{PortEntry, SharedSnapshot, Snapshot};
use fastpath::worker::{PollMode, WorkerCmd, WorkerEvent};
use fastpath::{MAX_PORTS, MacKey, PortId, clock, mac_key, mac_octets, sys};
use ipnet::IpNet;

mod kept;
mod routing;
mod services;

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

fn attach_mode(m: XdpMode) -> AttachMode {
    match m {
        XdpMode::Auto => AttachMode::Auto,
        XdpMode::Native => AttachMode::Native,
        XdpMode::Generic => AttachMode::Generic,
        XdpMode::Zerocopy => AttachMode::ZeroCopy,
    }
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
                self.kept.keep(KeptEntry::Port(spec), e.0);
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
                    (false, Some(e.0), None, None, None)
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

    /// Marks ports down whose interface or namespace has gone away.
    fn check_interfaces(&mut self) -> bool {
        let mut retired = Vec::new();
        for rec in self.ports.values_mut().filter(|r| r.up) {
            let why = match (&rec.spec.port_type, &rec.spec.netns) {
                (PortType::Afxdp, _) if sys::if_index(&rec.spec.name) != rec.ifindex => {
                    format!("interface '{}' disappeared", rec.spec.name)
                }
                // A TAP keeps its namespace alive, so the namespace is gone
                // for users once its name (or its process) is gone.
                (PortType::Tap, Some(ns)) if !sys::netns_path(ns).exists() => {
                    format!("network namespace '{ns}' disappeared")
                }
                _ => continue,
            };
            tracing::warn!(port = %rec.spec.name, "port down: {why}");
            rec.up = false;
            rec.error = Some(why);
            retired.push((rec.id, rec.worker));
        }
        for (id, worker) in &retired {
            self.retire(*id, *worker);
        }
        !retired.is_empty()
    }

    /// Has the owning worker close a port that went down, releasing its
    /// buffers and (for a TAP) the namespace it pins. The port stays
    /// configured, down, until `port del`.
    fn retire(&mut self, id: PortId, worker: usize) {
        let (done, _) = crossbeam_channel::bounded(1);
        // A blocking send: the worker must stop using the port; the channel
        // only fills up if the worker is stuck.
        let _ = self.workers.handles[worker].cmds.send(WorkerCmd::DelPort {
            id,
            done,
            remove: false,
        });
        self.macs.remove_learned_on(id);
        if self.neigh.remove_port(id) > 0 {
            self.neigh_view = self.neigh.view();
        }
        // The worker closes the socket: its descriptor is no longer ours to read.
        if let Some(rec) = self.record_by_id(id) {
            rec.xsk_fd = None;
        }
    }

    /// Re-attaches down ports whose interface (or namespace) is back, as a
    /// bridge does when a link comes back.
    fn revive_ports(&mut self) -> bool {
        let candidates: Vec<String> = self
            .ports
            .values()
            .filter(|r| !r.up && r.retry_at <= Instant::now())
            .filter(|r| match (&r.spec.port_type, &r.spec.netns) {
                (PortType::Afxdp, _) => sys::if_index(&r.spec.name).is_some(),
                (PortType::Tap, Some(ns)) => sys::netns_path(ns).exists(),
                (PortType::Tap, None) => true,
            })
            .map(|r| r.spec.name.clone())
            .collect();
        let mut changed = false;
        for name in candidates {
            let Some(rec) = self.ports.get(&name) else {
                continue;
            };
            let (spec, id, worker) = (rec.spec.clone(), rec.id, rec.worker);
            match self.open_port(&spec, id, worker) {
                Ok((port, ifindex)) => {
                    tracing::info!(port = %name, "port back up");
                    let mode = Some(port.mode());
                    if let Some(rec) = self.ports.get_mut(&name) {
                        rec.up = true;
                        rec.error = None;
                        rec.mode = mode;
                        rec.ifindex = ifindex;
                        rec.xsk_fd = port.xsk_fd();
                        rec.retry_backoff = Duration::ZERO;
                        rec.facts = port_facts(&rec.spec);
                    }
                    self.l3_dirty = true;
                    self.pending_adds.push((worker, id, port));
                    changed = true;
                }
                Err(e) => {
                    if let Some(rec) = self.ports.get_mut(&name) {
                        // Back off so that a port that keeps failing does
                        // not keep the control loop busy.
                        rec.retry_backoff =
                            (rec.retry_backoff * 2).clamp(HOUSEKEEPING, MAX_RETRY_BACKOFF);
                        rec.retry_at = Instant::now() + rec.retry_backoff;
                        rec.error = Some(e.0);
                    }
                }
            }
        }
        changed
    }

    fn record_by_id(&mut self, id: PortId) -> Option<&mut PortRecord> {
        let name = self.ids.get(usize::from(id))?.as_ref()?;
        self.ports.get_mut(name)
    }

    fn free_id(&self) -> Option<PortId> {
        self.ids
            .iter()
            .position(Option::is_none)
            .map(|i| i as PortId)
    }

    fn pick_worker(&self) -> usize {
        let mut load = vec![0usize; self.workers.handles.len()];
        for r in self.ports.values() {
            load[r.worker] += 1;
        }
        (0..load.len()).min_by_key(|&w| (load[w], w)).unwrap_or(0)
    }

    fn validate_port(&self, spec: &PortSpec) -> Result<(), Refused> {
        if !sys::valid_ifname(&spec.name) {
            return refuse(format!(
                "invalid port name '{}': 1-15 characters, no '/', ':' or whitespace",
                spec.name
            ));
        }
        if self.ports.contains_key(&spec.name) {
            return refuse(format!("port '{}' already exists", spec.name));
        }
        if spec.uplink && spec.host {
            return refuse("a port is either --uplink or --host, not both");
        }
        if !spec.ips.is_empty() {
            if spec.uplink || spec.host {
                return refuse("--ip declares a pod's addresses: not for --uplink or --host ports");
            }
            self.router
                .check_pod_ips(&spec.ips, &self.port_views())
                .map_err(Refused)?;
        }
        let role = spec.role();
        if role != ctl::PortRole::Pod
            && let Some(other) = self.ports.values().find(|r| r.spec.role() == role)
        {
            return refuse(format!(
                "port '{}' is already the {role} port (one per switch)",
                other.spec.name
            ));
        }
        match spec.port_type {
            PortType::Afxdp => {
                if spec.netns.is_some() || spec.ifname.is_some() {
                    return refuse("--netns and --ifname apply to TAP ports only (use --type tap)");
                }
                if spec.mac.is_some() && spec.ips.is_empty() {
                    return refuse(
                        "--mac on an AF_XDP port declares the pod's MAC and needs --ip \
                         (a TAP port's --mac sets the device's MAC)",
                    );
                }
                if spec.host {
                    return refuse("a host port is a TAP: use --type tap --host");
                }
            }
            PortType::Tap => {
                if spec.mode != XdpMode::Auto {
                    return refuse("--mode applies to AF_XDP ports only");
                }
                if spec.uplink {
                    return refuse(
                        "an uplink is the node's NIC, attached through AF_XDP (not --type tap)",
                    );
                }
                if spec.host && (spec.netns.is_some() || spec.ifname.is_some()) {
                    return refuse(
                        "a host port lives in the node's own namespace: no --netns/--ifname",
                    );
                }
                if spec.ifname.is_some() && spec.netns.is_none() {
                    return refuse("--ifname requires --netns");
                }
                if let Some(ifname) = &spec.ifname
                    && !sys::valid_ifname(ifname)
                {
                    return refuse(format!("invalid interface name '{ifname}'"));
                }
                if let Some(mac) = spec.mac
                    && (mac.is_multicast() || mac.is_zero())
                {
                    return refuse(format!("MAC {mac} is not a unicast address"));
                }
                if let Some(other) = self.ports.values().find(|r| {
                    r.spec.port_type == PortType::Tap
                        && r.spec.netns == spec.netns
                        && tap_ifname(&r.spec) == tap_ifname(spec)
                }) {
                    return refuse(format!(
                        "port '{}' already has a TAP named '{}' in that namespace",
                        other.spec.name,
                        tap_ifname(spec)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Opens a port's interface. An uplink also gets its XDP program, which
    /// the controller keeps in `self.uplink` (replacing an old one).
    fn open_port(
        &mut self,
        spec: &PortSpec,
        id: PortId,
        worker: usize,
    ) -> Result<(Box<dyn Port>, Option<u32>), Refused> {
        match spec.port_type {
            PortType::Afxdp if spec.uplink => {
                let umem = match &self.workers.handles[worker].umem {
                    Ok(u) => u,
                    Err(e) => return refuse(e.clone()),
                };
                let Some(ifindex) = sys::if_index(&spec.name) else {
                    return refuse(format!("interface '{}' does not exist", spec.name));
                };
                let attach = match spec.mode {
                    XdpMode::Auto => UplinkAttach::Auto,
                    XdpMode::Native | XdpMode::Zerocopy => UplinkAttach::Native,
                    XdpMode::Generic => UplinkAttach::Generic,
                };
                // Drop an old program first: attaching replaces it anyway,
                // and its Drop must not detach the new one afterwards.
                self.uplink = None;
                let prog = UplinkProgram::attach(ifindex, attach)
                    .map_err(|e| Refused(format!("uplink '{}': {e}", spec.name)))?;
                let mode = match spec.mode {
                    XdpMode::Zerocopy => AttachMode::ZeroCopy,
                    _ => prog.mode().socket_mode(),
                };
                let port = AfXdpPort::open_without_program(&spec.name, id, mode, umem)
                    .map_err(|e| Refused(e.to_string()))?;
                let fd = port
                    .xsk_fd()
                    .ok_or_else(|| Refused("uplink socket has no descriptor".into()))?;
                prog.register_socket(0, fd)
                    .and_then(|()| prog.set_router_mac(self.router_mac.0))
                    .map_err(|e| Refused(format!("uplink '{}': {e}", spec.name)))?;
                // The switch answers on the wire with its own MAC: a real NIC
                // must not filter frames addressed to it.
                if !sys::is_promisc(&spec.name).unwrap_or(true) {
                    match sys::set_promisc(&spec.name, true) {
                        Ok(()) => self.promisc = Some(spec.name.clone()),
                        Err(e) => {
                            tracing::warn!(port = %spec.name, "cannot set promiscuous mode: {e}")
                        }
                    }
                }
                self.uplink = Some(prog);
                self.l3_dirty = true;
                Ok((Box::new(port), Some(ifindex)))
            }
            PortType::Afxdp => {
                let umem = match &self.workers.handles[worker].umem {
                    Ok(u) => u,
                    Err(e) => return refuse(e.clone()),
                };
                let port = AfXdpPort::open(&spec.name, id, attach_mode(spec.mode), umem)
                    .map_err(|e| Refused(e.to_string()))?;
                Ok((Box::new(port), sys::if_index(&spec.name)))
            }
            PortType::Tap => {
                let port = TapPort::create(
                    tap_ifname(spec),
                    spec.netns.as_deref(),
                    spec.mac.map(|m| m.0),
                )
                .map_err(|e| Refused(format!("cannot create TAP port '{}': {e}", spec.name)))?;
                Ok((Box::new(port), None))
            }
        }
    }

    fn insert_port(&mut self, rec: PortRecord, port: Option<Box<dyn Port>>) {
        let id = rec.id;
        // Counters of a reused id start from zero for the new port.
        self.baselines.insert(id, self.sum_counters(id));
        if let Some(port) = port {
            self.pending_adds.push((rec.worker, id, port));
        }
        self.ids[usize::from(id)] = Some(rec.spec.name.clone());
        self.ports.insert(rec.spec.name.clone(), rec);
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

    fn port_add(&mut self, mut spec: PortSpec) -> Result<Reply, Refused> {
        let may_exist = std::mem::take(&mut spec.may_exist);
        if let Some(rec) = self.ports.get(&spec.name)
            && may_exist
        {
            return if rec.spec == spec {
                Ok(Reply::Done)
            } else {
                refuse(format!(
                    "port '{}' already exists with other settings",
                    spec.name
                ))
            };
        }
        self.validate_port(&spec)?;
        // Checked here rather than in `validate_port`, which also vets
        // restored ports: a restored port whose namespace is gone is kept, down.
        if let Some(ns) = &spec.netns {
            sys::open_netns(ns).map_err(|e| Refused(e.to_string()))?;
        }
        let Some(id) = self.free_id() else {
            return refuse(format!("too many ports (at most {MAX_PORTS})"));
        };
        let worker = self.pick_worker();
        let (mut port, ifindex) = self.open_port(&spec, id, worker)?;
        let mut st = self.state();
        st.ports.push(spec.clone());
        if let Err(e) = self.persist(&st) {
            // Closing the port undoes it, but for a TAP it created; an
            // uplink also had its XDP program and promiscuous mode.
            port.abandon();
            drop(port);
            if spec.uplink {
                self.release_uplink();
            }
            return Err(e);
        }
        let mode = Some(port.mode());
        tracing::info!(port = %spec.name, id, worker, mode = mode.as_ref().map(|m| m.mode), "port added");
        let facts = port_facts(&spec);
        self.insert_port(
            PortRecord {
                spec,
                id,
                worker,
                up: true,
                error: None,
                mode,
                ifindex,
                xsk_fd: port.xsk_fd(),
                retry_at: Instant::now(),
                retry_backoff: Duration::ZERO,
                facts,
            },
            Some(port),
        );
        self.l3_dirty = true;
        self.publish();
        Ok(Reply::Done)
    }

    fn port_del(&mut self, name: &str) -> Result<Reply, Refused> {
        let Some(rec) = self.ports.get(name) else {
            return refuse(format!("port '{name}' does not exist"));
        };
        if let Some(r) = self
            .router
            .routes
            .values()
            .find(|r| r.dev.as_deref() == Some(name))
        {
            return refuse(format!(
                "route {} goes out of port '{name}'; delete the route first",
                r.prefix
            ));
        }
        let (id, worker) = (rec.id, rec.worker);
        let mut st = self.state();
        st.ports.retain(|p| p.name != name);
        st.fdb.retain(|s| s.port != name);
        self.persist(&st)?;
        // Unpublish first so no worker sends to the port any more, then
        // have the owner close it.
        self.ports.remove(name);
        self.ids[usize::from(id)] = None;
        self.static_fdb.retain(|_, p| p != name);
        self.macs.remove_port(id);
        self.neigh.remove_port(id);
        self.neigh_view = self.neigh.view();
        self.l3_dirty = true;
        self.publish();
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        if self.workers.handles[worker]
            .cmds
            .send(WorkerCmd::DelPort {
                id,
                done: done_tx,
                remove: true,
            })
            .is_ok()
            && done_rx.recv_timeout(DEL_TIMEOUT).is_err()
        {
            tracing::error!(port = name, "worker did not confirm port removal in time");
        }
        if self
            .uplink
            .as_ref()
            .is_some_and(|p| Some(p.ifindex()) == sys::if_index(name))
        {
            self.release_uplink();
        }
        tracing::info!(port = name, "port removed");
        Ok(Reply::Done)
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

    fn sum_counters(&self, id: PortId) -> PortCounterValues {
        let mut total = PortCounterValues::default();
        for h in &self.workers.handles {
            total.add(&h.counters.port(id).read());
        }
        total
    }

    fn port_stats(&self, rec: &PortRecord) -> PortStats {
        let base = self.baselines.get(&rec.id).copied().unwrap_or_default();
        let v = self.sum_counters(rec.id).since(&base);
        PortStats {
            name: rec.spec.name.clone(),
            rx_packets: v.rx_packets,
            rx_bytes: v.rx_bytes,
            tx_packets: v.tx_packets,
            tx_bytes: v.tx_bytes,
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.name().to_string(), v.drop_count(*r)))
                .collect(),
            xdp: rec.xsk_fd.and_then(sys::xsk_statistics).map(|k| XdpStats {
                rx_dropped: k[0],
                rx_invalid_descs: k[1],
                tx_invalid_descs: k[2],
                rx_ring_full: k[3],
                rx_fill_ring_empty: k[4],
                tx_ring_empty: k[5],
            }),
        }
    }

    fn stats(&self, port: Option<&str>) -> Result<Reply, Refused> {
        match port {
            Some(name) => match self.ports.get(name) {
                Some(rec) => Ok(Reply::Stats(vec![self.port_stats(rec)])),
                None => refuse(format!("port '{name}' does not exist")),
            },
            None => Ok(Reply::Stats(
                self.ports.values().map(|r| self.port_stats(r)).collect(),
            )),
        }
    }

    fn port_infos(&self) -> Vec<PortInfo> {
        self.ports
            .values()
            .map(|r| PortInfo {
                name: r.spec.name.clone(),
                id: r.id,
                port_type: r.spec.port_type,
                requested_mode: r.spec.mode,
                mode: match (&r.mode, r.up) {
                    (Some(m), true) => m.mode.to_string(),
                    _ => "none".to_string(),
                },
                zero_copy: r.mode.as_ref().is_some_and(|m| m.zero_copy),
                state: if r.up { PortState::Up } else { PortState::Down },
                error: r.error.clone(),
                worker: r.worker,
                mac: r.spec.mac,
                netns: r.spec.netns.clone(),
                ifname: r.spec.ifname.clone(),
                learned_macs: self.macs.learned_on(r.id),
                ips: r.spec.ips.clone(),
                role: r.spec.role(),
            })
            .collect()
    }

    fn fdb_entries(&self) -> Vec<FdbEntry> {
        self.macs
            .entries(clock::now_ms())
            .into_iter()
            .filter_map(|row| {
                let port = self.ids.get(usize::from(row.port))?.clone()?;
                Some(FdbEntry {
                    mac: MacAddr(mac_octets(row.mac)),
                    port,
                    kind: match row.kind {
                        EntryKind::Static => FdbKind::Static,
                        EntryKind::Learned => FdbKind::Learned,
                    },
                    age_secs: row.idle_ms.map(|ms| ms / 1000),
                })
            })
            .collect()
    }

    fn show(&self) -> ShowReply {
        let (static_entries, learned_entries) = self.macs.summary();
        let workers = self
            .workers
            .handles
            .iter()
            .enumerate()
            .map(|(id, h)| {
                let s = &h.status;
                WorkerInfo {
                    id,
                    core: h.core,
                    ports: self
                        .ports
                        .values()
                        .filter(|r| r.worker == id)
                        .map(|r| r.spec.name.clone())
                        .collect(),
                    frames: FramePoolInfo {
                        total: s.frames_total.load(Relaxed),
                        free: s.frames_free.load(Relaxed),
                        in_rings: s.frames_in_rings.load(Relaxed),
                        in_flight: s.frames_in_flight.load(Relaxed),
                        errors: s.frame_errors.load(Relaxed),
                        umem: h.umem.is_ok(),
                    },
                    loops: s.loops.load(Relaxed),
                }
            })
            .collect();
        ShowReply {
            daemon: DaemonInfo {
                version: env!("CARGO_PKG_VERSION").to_string(),
                protocol: ctl::PROTOCOL_VERSION,
                pid: std::process::id(),
                uptime_secs: self.started.elapsed().as_secs(),
                socket: self.settings.socket.display().to_string(),
                state_file: self.settings.state.display().to_string(),
                poll: match self.settings.poll {
                    PollMode::Busy => "busy".into(),
                    PollMode::Adaptive => "adaptive".into(),
                },
                mac_aging_secs: self.settings.mac_aging_secs,
                mac_limit: self.settings.mac_limit,
                router_mac: self.router_mac,
            },
            workers,
            ports: self.port_infos(),
            fdb: FdbSummary {
                static_entries: static_entries as u32,
                learned_entries: learned_entries as u32,
            },
            not_applied: self.kept.lines(),
        }
    }
}

/// The device name of a TAP port: `--ifname` inside a namespace, else the port name.
fn tap_ifname(spec: &PortSpec) -> &str {
    spec.ifname.as_deref().unwrap_or(&spec.name)
}
