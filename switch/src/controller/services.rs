//! The controller's Service part: `service ...` and `ct ...` commands.
//!
//! The configuration is one [`ServiceSpec`] per Service port, persisted in
//! the state file. The data plane's [`ServiceTable`] is kept beside it and
//! changed one Service at a time: a change rebuilds that Service's Maglev
//! table only, then the table is published with the next snapshot. Workers
//! keep forwarding with the previous snapshot meanwhile.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use ctl::{
    BackendInfo, BackendState, Command, CtEntry, CtState, CtStats, Proto, Reply, ServiceInfo,
    ServiceKey, ServiceSpec,
};
use fastpath::clock;
use fastpath::services::conntrack::{FlowState, flow_parts};
use fastpath::services::maglev::MAX_BACKENDS;
use fastpath::services::table::{Service, ServiceTable, endpoint, endpoint_parts, service_key};

use super::{Controller, Refused, refuse};

/// Longest ClientIP affinity timeout (kube-proxy's limit: one day).
const MAX_AFFINITY_SECS: u32 = 86_400;

/// The Service configuration and what the data plane is built from.
#[derive(Default)]
pub(super) struct ServiceModel {
    pub specs: BTreeMap<ServiceKey, ServiceSpec>,
    pub table: Arc<ServiceTable>,
}

/// What the checks of a Service need to know besides the Services.
pub(super) struct CheckCx {
    router_addrs: Vec<IpAddr>,
    /// The NodePorts allowed (`--node-port-range`).
    node_ports: (u16, u16),
}

/// Packs a Service key for the data plane (IPv4 only, checked before).
fn packed(k: &ServiceKey) -> u64 {
    service_key(v4(k.vip), k.port, k.proto.number())
}

fn v4(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(_) => 0,
    }
}

fn endpoint_of(a: &SocketAddr) -> u64 {
    endpoint(v4(a.ip()), a.port())
}

fn socket(ip: u32, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)
}

/// The `ServiceKey` of a packed key.
fn unpacked(k: u64) -> ServiceKey {
    let proto = match k as u8 {
        17 => Proto::Udp,
        132 => Proto::Sctp,
        _ => Proto::Tcp,
    };
    ServiceKey::new(
        IpAddr::V4(Ipv4Addr::from((k >> 24) as u32)),
        (k >> 8) as u16,
        proto,
    )
}

/// Checks one endpoint: IPv4, unicast, a real port.
fn check_endpoint(a: &SocketAddr) -> Result<(), String> {
    ctl::parse_endpoint(&a.to_string()).map(|_| ())?;
    match a.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => Err(format!("backend {a}: loopback address")),
        IpAddr::V4(_) => Ok(()),
        IpAddr::V6(_) => Err(format!(
            "backend {a}: IPv6 endpoints are not supported (IPv4 Services only)"
        )),
    }
}

/// Checks a set of endpoints: each valid, none twice.
fn check_endpoints(ready: &[SocketAddr], terminating: &[SocketAddr]) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for a in ready.iter().chain(terminating) {
        check_endpoint(a)?;
        if !seen.insert(*a) {
            return Err(format!("backend {a} listed twice"));
        }
    }
    if seen.len() > MAX_BACKENDS {
        return Err(format!(
            "{} backends: at most {MAX_BACKENDS} per Service",
            seen.len()
        ));
    }
    Ok(())
}

impl ServiceModel {
    /// Checks a Service before it is added; `specs` is the configuration
    /// it is added to.
    fn check_new(
        specs: &BTreeMap<ServiceKey, ServiceSpec>,
        spec: &ServiceSpec,
        cx: &CheckCx,
    ) -> Result<(), String> {
        let router_addrs = &cx.router_addrs;
        let k = &spec.service;
        match k.vip {
            IpAddr::V4(ip) if ip.is_loopback() || ip.is_link_local() => {
                return Err(format!("invalid VIP {ip}: not a routable unicast address"));
            }
            IpAddr::V4(_) => {}
            IpAddr::V6(_) => {
                return Err(format!(
                    "Service {k}: IPv6 Services are not supported (IPv4 only)"
                ));
            }
        }
        ctl::parse_endpoint(&k.addr().to_string()).map_err(|e| format!("invalid VIP: {e}"))?;
        if k.proto == Proto::Sctp {
            return Err(format!(
                "Service {k}: SCTP Services are not supported (tcp, udp)"
            ));
        }
        if router_addrs.contains(&k.vip) {
            return Err(format!(
                "invalid VIP {}: it is one of the switch's own addresses",
                k.vip
            ));
        }
        check_endpoints(&spec.backends, &spec.terminating)?;
        if let Some(t) = spec.affinity_timeout
            && !(1..=MAX_AFFINITY_SECS).contains(&t)
        {
            return Err(format!(
                "affinity timeout {t}: must be 1 to {MAX_AFFINITY_SECS} seconds"
            ));
        }
        if let Some(np) = spec.node_port {
            if np == 0 {
                return Err("NodePort 0 is not allowed".into());
            }
            let (lo, hi) = cx.node_ports;
            if !(lo..=hi).contains(&np) {
                return Err(format!(
                    "NodePort {np} is outside the NodePort range {lo}-{hi} (vswitchd --node-port-range)"
                ));
            }
            if np == fastpath::wire::vxlan::PORT && k.proto == Proto::Udp {
                return Err(format!("NodePort {np}/udp is VXLAN's port"));
            }
            if let Some(other) = specs
                .values()
                .find(|s| s.service != *k && s.node_port == Some(np) && s.service.proto == k.proto)
            {
                return Err(format!(
                    "NodePort {np}/{} is already used by Service {}",
                    k.proto, other.service
                ));
            }
        }
        Ok(())
    }

    /// Applies one Service command to `specs` (a working copy), checking
    /// it; returns the keys it changed.
    fn apply(
        specs: &mut BTreeMap<ServiceKey, ServiceSpec>,
        cmd: Command,
        cx: &CheckCx,
    ) -> Result<Option<ServiceKey>, String> {
        match cmd {
            Command::ServiceAdd(mut spec) => {
                let may_exist = std::mem::take(&mut spec.may_exist);
                let k = spec.service;
                if let Some(old) = specs.get(&k) {
                    return if may_exist && *old == spec {
                        Ok(None)
                    } else if may_exist {
                        Err(format!("Service {k} already exists with other settings"))
                    } else {
                        Err(format!("Service {k} already exists"))
                    };
                }
                Self::check_new(specs, &spec, cx)?;
                specs.insert(k, spec);
                Ok(Some(k))
            }
            Command::ServiceBackends {
                service,
                backends,
                terminating,
            } => {
                let Some(spec) = specs.get_mut(&service) else {
                    return Err(format!("no Service {service}"));
                };
                check_endpoints(&backends, &terminating)?;
                if spec.backends == backends && spec.terminating == terminating {
                    return Ok(None);
                }
                spec.backends = backends;
                spec.terminating = terminating;
                Ok(Some(service))
            }
            Command::ServiceDel { service, if_exists } => {
                if specs.remove(&service).is_none() && !if_exists {
                    return Err(format!("no Service {service}"));
                }
                Ok(Some(service))
            }
            other => Err(format!(
                "'{}' cannot be part of a batch (only service add, backends, del)",
                op_name(&other)
            )),
        }
    }

    /// A host route for every VIP (for the node kernel, through the host
    /// port).
    pub fn vip_routes(&self) -> BTreeSet<ipnet::IpNet> {
        self.specs
            .keys()
            .filter_map(|k| ipnet::IpNet::new(k.vip, 32).ok())
            .collect()
    }

    /// Puts back the specs an undo log recorded.
    fn undo(&mut self, undo: BTreeMap<ServiceKey, Option<ServiceSpec>>) {
        for (k, old) in undo {
            match old {
                Some(spec) => self.specs.insert(k, spec),
                None => self.specs.remove(&k),
            };
        }
    }

    /// Builds the data plane's view of one Service.
    fn build(spec: &ServiceSpec, min_size: u32) -> Service {
        let k = &spec.service;
        let mut s = Service::new(
            v4(k.vip),
            k.port,
            k.proto.number(),
            spec.backends.iter().map(endpoint_of).collect(),
            spec.terminating.iter().map(endpoint_of).collect(),
            min_size,
        );
        s.node_port = spec.node_port;
        s.affinity_ms = spec.affinity_timeout.map(|t| u64::from(t) * 1000);
        s
    }

    /// Brings the data plane's table in line with `specs` for `changed`.
    fn rebuild(&mut self, changed: &BTreeSet<ServiceKey>, min_size: u32) {
        let table = Arc::make_mut(&mut self.table);
        for k in changed {
            match self.specs.get(k) {
                Some(spec) => table.insert(Arc::new(Self::build(spec, min_size))),
                None => {
                    table.remove(packed(k));
                }
            }
        }
    }
}

/// The Service a command changes.
fn command_key(c: &Command) -> Option<ServiceKey> {
    match c {
        Command::ServiceAdd(spec) => Some(spec.service),
        Command::ServiceBackends { service, .. } | Command::ServiceDel { service, .. } => {
            Some(*service)
        }
        _ => None,
    }
}

/// The command's name as the protocol spells it.
fn op_name(c: &Command) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.get("op").and_then(|o| o.as_str().map(str::to_string)))
        .unwrap_or_else(|| "?".into())
}

impl Controller {
    fn check_cx(&self) -> CheckCx {
        CheckCx {
            router_addrs: self.router.addrs.iter().map(|a| a.addr()).collect(),
            node_ports: self.settings.node_port_range,
        }
    }

    /// `service add`, `service backends`, `service del`, and `batch` of
    /// them, all or nothing.
    ///
    /// Order: check and apply to the model (undone on the first refusal) →
    /// write the state file (undone if it fails) → rebuild the changed
    /// Services → publish → kernel effects (VIP routes, NodePorts) → reply.
    /// A `service del` of an entry kept from the state file (see `kept`)
    /// deletes it there, in a batch too.
    pub(super) fn service_change(&mut self, cmds: Vec<Command>) -> Result<Reply, Refused> {
        let start = Instant::now();
        let checks = self.check_cx();
        let single = cmds.len() == 1;
        let mut kept = self.kept.clone();
        let mut rest = Vec::with_capacity(cmds.len());
        for c in cmds {
            if let Command::ServiceDel { service, .. } = &c
                && !self.services.specs.contains_key(service)
                && kept.remove(&super::KeptKey::Service(*service))
            {
                continue;
            }
            rest.push(c);
        }
        let cmds = rest;
        let kept_changed = self.kept.len() != kept.len();
        // The previous spec of every Service touched (first touch only).
        let mut undo: BTreeMap<ServiceKey, Option<ServiceSpec>> = BTreeMap::new();
        for (i, cmd) in cmds.into_iter().enumerate() {
            if let Some(k) = command_key(&cmd) {
                let specs = &self.services.specs;
                undo.entry(k).or_insert_with(|| specs.get(&k).cloned());
            }
            if let Err(e) = ServiceModel::apply(&mut self.services.specs, cmd, &checks) {
                self.services.undo(undo);
                return if single {
                    refuse(e)
                } else {
                    refuse(format!("batch command {}: {e}; nothing applied", i + 1))
                };
            }
        }
        let changed: BTreeSet<ServiceKey> = undo
            .iter()
            .filter(|(k, old)| self.services.specs.get(k) != old.as_ref())
            .map(|(k, _)| *k)
            .collect();
        if changed.is_empty() && !kept_changed {
            return Ok(Reply::Done);
        }
        // The file first: a refused write leaves nothing published and no
        // effect on the kernel (routes to VIPs, the uplink's NodePorts).
        let st = self.state();
        if let Err(e) = self.persist_with(&st, &kept) {
            self.services.undo(undo);
            return Err(e);
        }
        self.kept = kept;
        if changed.is_empty() {
            return Ok(Reply::Done);
        }
        let persisted = start.elapsed();
        let old_node_ports: BTreeSet<(u16, u8)> = self.services.table.node_ports().collect();
        self.services
            .rebuild(&changed, self.settings.maglev_min_size);
        self.publish();
        tracing::debug!(
            changed = changed.len(),
            persisted_us = persisted.as_micros() as u64,
            published_us = start.elapsed().as_micros() as u64,
            "Services changed"
        );
        let removed: Vec<u64> = changed
            .iter()
            .filter(|k| !self.services.specs.contains_key(k))
            .map(packed)
            .collect();
        if !removed.is_empty() {
            // A deleted Service's flows are over (kube-proxy clears them too).
            self.conntrack.forget_services(&removed);
        }
        let new_node_ports: BTreeSet<(u16, u8)> = self.services.table.node_ports().collect();
        if old_node_ports != new_node_ports {
            self.sync_uplink();
        }
        let vips_changed = changed.iter().any(|k| {
            undo.get(k).is_some_and(Option::is_none) == self.services.specs.contains_key(k)
        });
        if vips_changed {
            self.sync_kernel_routes();
        }
        Ok(Reply::Done)
    }

    /// Restores the Services of the state file (each checked as if added).
    pub(super) fn restore_services(&mut self, specs: Vec<ServiceSpec>) {
        let checks = self.check_cx();
        let mut changed = BTreeSet::new();
        for spec in specs {
            let k = spec.service;
            let cmd = Command::ServiceAdd(spec.clone());
            match ServiceModel::apply(&mut self.services.specs, cmd, &checks) {
                Ok(_) => {
                    changed.insert(k);
                }
                Err(e) => self
                    .kept
                    .keep(super::KeptEntry::Service(spec), e.to_string()),
            }
        }
        self.services
            .rebuild(&changed, self.settings.maglev_min_size);
    }

    /// `service list`, with live connections counted per endpoint.
    pub(super) fn service_list(&self) -> Reply {
        let now = clock::now_ms();
        let mut active: HashMap<(u64, u64), u64> = HashMap::new();
        for f in self.conntrack.flows(now) {
            if f.state == FlowState::Closing {
                continue;
            }
            *active.entry((f.service, f.backend)).or_default() += 1;
        }
        let infos = self
            .services
            .specs
            .values()
            .map(|spec| {
                let key = packed(&spec.service);
                let info = |a: &SocketAddr, state| BackendInfo {
                    addr: *a,
                    state,
                    active: active.get(&(key, endpoint_of(a))).copied().unwrap_or(0),
                };
                let table_size = self
                    .services
                    .table
                    .get(
                        v4(spec.service.vip),
                        spec.service.port,
                        spec.service.proto.number(),
                    )
                    .map_or(0, |s| s.table_size);
                ServiceInfo {
                    service: spec.service,
                    affinity_timeout: spec.affinity_timeout,
                    node_port: spec.node_port,
                    table_size,
                    backends: spec
                        .backends
                        .iter()
                        .map(|a| info(a, BackendState::Ready))
                        .chain(
                            spec.terminating
                                .iter()
                                .map(|a| info(a, BackendState::Terminating)),
                        )
                        .collect(),
                }
            })
            .collect();
        Reply::Services(infos)
    }

    /// `ct list`.
    pub(super) fn ct_list(&self) -> Reply {
        let now = clock::now_ms();
        let mut flows = self.conntrack.flows(now);
        flows.sort_by_key(|f| f.orig);
        Reply::Conntrack(
            flows
                .into_iter()
                .map(|f| {
                    let (src, dst, sport, dport, _) = flow_parts(f.orig);
                    let (bip, bport) = endpoint_parts(f.backend);
                    CtEntry {
                        proto: unpacked(f.service).proto,
                        src: socket(src, sport),
                        dst: socket(dst, dport),
                        reply_src: socket(bip, bport),
                        reply_dst: socket(f.nat.src, f.nat.sport),
                        service: unpacked(f.service),
                        state: match f.state {
                            FlowState::SynSent => CtState::SynSent,
                            FlowState::Established => CtState::Established,
                            FlowState::Closing => CtState::Closing,
                            FlowState::Open => CtState::Open,
                        },
                        expires_secs: f.expires_ms.div_ceil(1000),
                    }
                })
                .collect(),
        )
    }

    /// `ct stats`.
    pub(super) fn ct_stats(&self) -> Reply {
        let c = self.conntrack.counters(clock::now_ms());
        Reply::CtStats(CtStats {
            entries: c.entries,
            embryonic: c.embryonic,
            limit: c.limit,
            created: c.created,
            evicted: c.evicted,
            full: c.full,
            expired: c.expired,
            affinity: c.affinity,
        })
    }
}
