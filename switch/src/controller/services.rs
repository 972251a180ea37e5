//! The data plane's Service table, built from the model's Services, and
//! the `service list` and `ct` replies.
//!
//! The table is changed one Service at a time: a change rebuilds that
//! Service's Maglev table only, then the table is published with the next
//! snapshot. Workers keep forwarding with the previous snapshot meanwhile.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use ctl::{
    BackendInfo, BackendState, CtEntry, CtState, CtStats, Proto, Reply, ServiceInfo, ServiceKey,
    ServiceSpec,
};
use fastpath::clock;
use fastpath::services::conntrack::{FlowState, flow_parts};
use fastpath::services::table::{Service, endpoint, endpoint_parts, service_key};

use super::Controller;

/// Packs a Service key for the data plane (IPv4 only, checked before).
pub(super) fn packed(k: &ServiceKey) -> u64 {
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

impl Controller {
    /// Brings the data plane's table in line with the model's Services
    /// for `changed` (each rebuilds that Service's Maglev table only).
    pub(super) fn rebuild_services(&mut self, changed: &BTreeSet<ServiceKey>) {
        if changed.is_empty() {
            return;
        }
        let min_size = self.settings.maglev_min_size;
        let table = Arc::make_mut(&mut self.service_table);
        for k in changed {
            match self.model.services.get(k) {
                Some(spec) => table.insert(Arc::new(build(spec, min_size))),
                None => {
                    table.remove(packed(k));
                }
            }
        }
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
            .model
            .services
            .values()
            .map(|spec| {
                let key = packed(&spec.service);
                let info = |a: &SocketAddr, state| BackendInfo {
                    addr: *a,
                    state,
                    active: active.get(&(key, endpoint_of(a))).copied().unwrap_or(0),
                };
                let table_size = self
                    .service_table
                    .get(
                        v4(spec.service.vip),
                        spec.service.port,
                        spec.service.proto.number(),
                    )
                    .map_or(0, |s| s.table_size);
                ServiceInfo {
                    owner: spec.owner.clone(),
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

    /// `ct list`, one page. The cursor is the last tuple of the page before,
    /// as 32 hex digits.
    pub(super) fn ct_list(&self, after: Option<&str>, limit: Option<u32>) -> Result<Reply, String> {
        let after = after
            .map(|a| {
                u128::from_str_radix(a, 16)
                    .ok()
                    .filter(|_| a.len() == 32)
                    .ok_or_else(|| {
                        format!("'{a}' is not a ct list cursor (32 hex digits from a page's next)")
                    })
            })
            .transpose()?;
        let limit = match limit.unwrap_or(ctl::CT_PAGE_DEFAULT) {
            0 => return Err("a ct list page holds at least one entry".into()),
            n => n.min(ctl::CT_PAGE_MAX) as usize,
        };
        let now = clock::now_ms();
        let (flows, more) = self.conntrack.flows_page(now, after, limit);
        let next = more
            .then(|| flows.last().map(|f| format!("{:032x}", f.orig)))
            .flatten();
        let entries = flows
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
                        FlowState::SynRecv => CtState::SynRecv,
                        FlowState::Established => CtState::Established,
                        FlowState::Closing => CtState::Closing,
                        FlowState::Open => CtState::Open,
                    },
                    expires_secs: f.expires_ms.div_ceil(1000),
                }
            })
            .collect();
        Ok(Reply::CtPage(ctl::CtPage { entries, next }))
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
