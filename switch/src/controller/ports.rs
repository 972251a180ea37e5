//! Ports' lifecycle: validating and opening a port (an uplink with its XDP
//! program), `port add`/`port del`, and noticing interfaces that go away
//! and come back (retire, revive with back-off).

use std::time::{Duration, Instant};

use ctl::{PortSpec, PortType, Reply, XdpMode};
use fastpath::port::Port;
use fastpath::port::afxdp::{AfXdpPort, AttachMode};
use fastpath::port::tap::TapPort;
use fastpath::port::uplink::{UplinkAttach, UplinkProgram};
use fastpath::worker::WorkerCmd;
use fastpath::{MAX_PORTS, PortId, sys};

use super::routing::port_facts;
use super::{Controller, DEL_TIMEOUT, HOUSEKEEPING, MAX_RETRY_BACKOFF, PortRecord, Refused};

/// Why a port request is refused; the message is what users see.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("invalid port name '{0}': 1-15 characters, no '/', ':' or whitespace")]
    InvalidName(String),
    #[error("port '{0}' already exists")]
    Exists(String),
    #[error("port '{0}' already exists with other settings")]
    ExistsOtherwise(String),
    #[error("port '{0}' does not exist")]
    NoSuchPort(String),
    #[error("a port is either --uplink or --host, not both")]
    UplinkAndHost,
    #[error("--ip declares a pod's addresses: not for --uplink or --host ports")]
    IpOnRoutedPort,
    #[error("{0}")]
    PodAddress(String),
    #[error("port '{other}' is already the {role} port (one per switch)")]
    RoleTaken { other: String, role: ctl::PortRole },
    #[error("--netns and --ifname apply to TAP ports only (use --type tap)")]
    NetnsOnAfxdp,
    #[error(
        "--mac on an AF_XDP port declares the pod's MAC and needs --ip \
         (a TAP port's --mac sets the device's MAC)"
    )]
    MacWithoutIp,
    #[error("a host port is a TAP: use --type tap --host")]
    HostNotTap,
    #[error("--mode applies to AF_XDP ports only")]
    ModeOnTap,
    #[error("an uplink is the node's NIC, attached through AF_XDP (not --type tap)")]
    UplinkNotAfxdp,
    #[error("a host port lives in the node's own namespace: no --netns/--ifname")]
    HostInNetns,
    #[error("--ifname requires --netns")]
    IfnameWithoutNetns,
    #[error("invalid interface name '{0}'")]
    InvalidIfname(String),
    #[error("MAC {0} is not a unicast address")]
    NotUnicast(ctl::MacAddr),
    #[error("port '{other}' already has a TAP named '{ifname}' in that namespace")]
    TapNameTaken { other: String, ifname: String },
    #[error("too many ports (at most {MAX_PORTS})")]
    TooMany,
    #[error("route {0} goes out of port '{1}'; delete the route first")]
    RouteUsesPort(ipnet::IpNet, String),
    /// The worker has no frame pool for AF_XDP (why, from the worker).
    #[error("{0}")]
    NoPool(String),
    #[error("interface '{0}' does not exist")]
    NoInterface(String),
    #[error("uplink '{name}': {why}")]
    Uplink { name: String, why: String },
    #[error("uplink socket has no descriptor")]
    UplinkNoFd,
    /// Opening the AF_XDP socket or the namespace failed (the OS's words).
    #[error("{0}")]
    Open(String),
    #[error("cannot create TAP port '{name}': {source}")]
    Tap {
        name: String,
        source: std::io::Error,
    },
}

impl From<PortError> for Refused {
    fn from(e: PortError) -> Self {
        Refused(e.to_string())
    }
}

impl Controller {
    /// Marks ports down whose interface or namespace has gone away.
    pub(super) fn check_interfaces(&mut self) -> bool {
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
    pub(super) fn retire(&mut self, id: PortId, worker: usize) {
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
    pub(super) fn revive_ports(&mut self) -> bool {
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
                        rec.error = Some(e.to_string());
                    }
                }
            }
        }
        changed
    }

    pub(super) fn record_by_id(&mut self, id: PortId) -> Option<&mut PortRecord> {
        let name = self.ids.get(usize::from(id))?.as_ref()?;
        self.ports.get_mut(name)
    }

    pub(super) fn free_id(&self) -> Option<PortId> {
        self.ids
            .iter()
            .position(Option::is_none)
            .map(|i| i as PortId)
    }

    pub(super) fn pick_worker(&self) -> usize {
        let mut load = vec![0usize; self.workers.handles.len()];
        for r in self.ports.values() {
            load[r.worker] += 1;
        }
        (0..load.len()).min_by_key(|&w| (load[w], w)).unwrap_or(0)
    }

    pub(super) fn validate_port(&self, spec: &PortSpec) -> Result<(), PortError> {
        use PortError as E;
        if !sys::valid_ifname(&spec.name) {
            return Err(E::InvalidName(spec.name.clone()));
        }
        if self.ports.contains_key(&spec.name) {
            return Err(E::Exists(spec.name.clone()));
        }
        if spec.uplink && spec.host {
            return Err(E::UplinkAndHost);
        }
        if !spec.ips.is_empty() {
            if spec.uplink || spec.host {
                return Err(E::IpOnRoutedPort);
            }
            self.router
                .check_pod_ips(&spec.ips, &self.port_views())
                .map_err(E::PodAddress)?;
        }
        let role = spec.role();
        if role != ctl::PortRole::Pod
            && let Some(other) = self.ports.values().find(|r| r.spec.role() == role)
        {
            return Err(E::RoleTaken {
                other: other.spec.name.clone(),
                role,
            });
        }
        match spec.port_type {
            PortType::Afxdp => {
                if spec.netns.is_some() || spec.ifname.is_some() {
                    return Err(E::NetnsOnAfxdp);
                }
                if spec.mac.is_some() && spec.ips.is_empty() {
                    return Err(E::MacWithoutIp);
                }
                if spec.host {
                    return Err(E::HostNotTap);
                }
            }
            PortType::Tap => {
                if spec.mode != XdpMode::Auto {
                    return Err(E::ModeOnTap);
                }
                if spec.uplink {
                    return Err(E::UplinkNotAfxdp);
                }
                if spec.host && (spec.netns.is_some() || spec.ifname.is_some()) {
                    return Err(E::HostInNetns);
                }
                if spec.ifname.is_some() && spec.netns.is_none() {
                    return Err(E::IfnameWithoutNetns);
                }
                if let Some(ifname) = &spec.ifname
                    && !sys::valid_ifname(ifname)
                {
                    return Err(E::InvalidIfname(ifname.clone()));
                }
                if let Some(mac) = spec.mac
                    && (mac.is_multicast() || mac.is_zero())
                {
                    return Err(E::NotUnicast(mac));
                }
                if let Some(other) = self.ports.values().find(|r| {
                    r.spec.port_type == PortType::Tap
                        && r.spec.netns == spec.netns
                        && tap_ifname(&r.spec) == tap_ifname(spec)
                }) {
                    return Err(E::TapNameTaken {
                        other: other.spec.name.clone(),
                        ifname: tap_ifname(spec).to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Opens a port's interface. An uplink also gets its XDP program, which
    /// the controller keeps in `self.uplink` (replacing an old one).
    pub(super) fn open_port(
        &mut self,
        spec: &PortSpec,
        id: PortId,
        worker: usize,
    ) -> Result<(Box<dyn Port>, Option<u32>), PortError> {
        use PortError as E;
        let uplink_err = |why: &dyn std::fmt::Display| E::Uplink {
            name: spec.name.clone(),
            why: why.to_string(),
        };
        match spec.port_type {
            PortType::Afxdp if spec.uplink => {
                let umem = match &self.workers.handles[worker].umem {
                    Ok(u) => u,
                    Err(e) => return Err(E::NoPool(e.clone())),
                };
                let Some(ifindex) = sys::if_index(&spec.name) else {
                    return Err(E::NoInterface(spec.name.clone()));
                };
                let attach = match spec.mode {
                    XdpMode::Auto => UplinkAttach::Auto,
                    XdpMode::Native | XdpMode::Zerocopy => UplinkAttach::Native,
                    XdpMode::Generic => UplinkAttach::Generic,
                };
                // Drop an old program first: attaching replaces it anyway,
                // and its Drop must not detach the new one afterwards.
                self.uplink = None;
                let prog = UplinkProgram::attach(ifindex, attach).map_err(|e| uplink_err(&e))?;
                let mode = match spec.mode {
                    XdpMode::Zerocopy => AttachMode::ZeroCopy,
                    _ => prog.mode().socket_mode(),
                };
                let port = AfXdpPort::open_without_program(&spec.name, id, mode, umem)
                    .map_err(|e| E::Open(e.to_string()))?;
                let fd = port.xsk_fd().ok_or(E::UplinkNoFd)?;
                prog.register_socket(0, fd)
                    .and_then(|()| prog.set_router_mac(self.router_mac.0))
                    .map_err(|e| uplink_err(&e))?;
                // The switch answers on the wire with its own MAC: a real NIC
                // must not filter frames addressed to it.
                if !crate::os::is_promisc(&spec.name).unwrap_or(true) {
                    match crate::os::set_promisc(&spec.name, true) {
                        Ok(()) => self.promisc = Some(spec.name.clone()),
                        Err(e) => {
                            tracing::warn!(port = %spec.name, "cannot set promiscuous mode: {e}")
                        }
                    }
                }
                self.uplink = Some(prog);
                Ok((Box::new(port), Some(ifindex)))
            }
            PortType::Afxdp => {
                let umem = match &self.workers.handles[worker].umem {
                    Ok(u) => u,
                    Err(e) => return Err(E::NoPool(e.clone())),
                };
                let port = AfXdpPort::open(&spec.name, id, attach_mode(spec.mode), umem)
                    .map_err(|e| E::Open(e.to_string()))?;
                Ok((Box::new(port), sys::if_index(&spec.name)))
            }
            PortType::Tap => {
                let port = TapPort::create(
                    tap_ifname(spec),
                    spec.netns.as_deref(),
                    spec.mac.map(|m| m.0),
                )
                .map_err(|source| E::Tap {
                    name: spec.name.clone(),
                    source,
                })?;
                Ok((Box::new(port), None))
            }
        }
    }

    pub(super) fn insert_port(&mut self, rec: PortRecord, port: Option<Box<dyn Port>>) {
        let id = rec.id;
        // Counters of a reused id start from zero for the new port.
        self.baselines.insert(id, self.sum_counters(id));
        if let Some(port) = port {
            self.pending_adds.push((rec.worker, id, port));
        }
        self.ids[usize::from(id)] = Some(rec.spec.name.clone());
        self.ports.insert(rec.spec.name.clone(), rec);
    }

    pub(super) fn port_add(&mut self, mut spec: PortSpec) -> Result<Reply, Refused> {
        let may_exist = std::mem::take(&mut spec.may_exist);
        if let Some(rec) = self.ports.get(&spec.name)
            && may_exist
        {
            return if rec.spec == spec {
                Ok(Reply::Done)
            } else {
                Err(PortError::ExistsOtherwise(spec.name).into())
            };
        }
        self.validate_port(&spec)?;
        // Checked here rather than in `validate_port`, which also vets
        // restored ports: a restored port whose namespace is gone is kept, down.
        if let Some(ns) = &spec.netns {
            sys::open_netns(ns).map_err(|e| PortError::Open(e.to_string()))?;
        }
        let Some(id) = self.free_id() else {
            return Err(PortError::TooMany.into());
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

    pub(super) fn port_del(&mut self, name: &str) -> Result<Reply, Refused> {
        let Some(rec) = self.ports.get(name) else {
            return Err(PortError::NoSuchPort(name.to_string()).into());
        };
        if let Some(r) = self
            .router
            .routes
            .values()
            .find(|r| r.dev.as_deref() == Some(name))
        {
            return Err(PortError::RouteUsesPort(r.prefix, name.to_string()).into());
        }
        let (id, worker, was_uplink) = (rec.id, rec.worker, rec.spec.uplink);
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
        // By the record, not the interface: a deleted uplink whose
        // interface is already gone still had its program and promiscuous mode.
        if was_uplink {
            self.release_uplink();
        }
        tracing::info!(port = name, "port removed");
        Ok(Reply::Done)
    }
}

fn attach_mode(m: XdpMode) -> AttachMode {
    match m {
        XdpMode::Auto => AttachMode::Auto,
        XdpMode::Native => AttachMode::Native,
        XdpMode::Generic => AttachMode::Generic,
        XdpMode::Zerocopy => AttachMode::ZeroCopy,
    }
}

/// The device name of a TAP port: `--ifname` inside a namespace, else the port name.
fn tap_ifname(spec: &PortSpec) -> &str {
    spec.ifname.as_deref().unwrap_or(&spec.name)
}
