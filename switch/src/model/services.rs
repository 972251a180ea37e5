//! The Services part of the model: one [`ServiceSpec`] per Service port,
//! and the checks `service add`, `service backends` and `service del` must
//! pass. The data plane's table is built from it by the controller.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use ctl::{Proto, ServiceKey, ServiceSpec};
use fastpath::services::maglev::MAX_BACKENDS;

/// Longest ClientIP affinity timeout (kube-proxy's limit: one day).
pub const MAX_AFFINITY_SECS: u32 = 86_400;

/// Why a Service request is refused; the message is what users see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("Service {0} already exists")]
    Exists(ServiceKey),
    #[error("Service {0} already exists with other settings")]
    ExistsOtherwise(ServiceKey),
    #[error("no Service {0}")]
    NoSuchService(ServiceKey),
    #[error("invalid VIP {0}: not a routable unicast address")]
    VipNotRoutable(IpAddr),
    #[error("Service {0}: IPv6 Services are not supported (IPv4 only)")]
    Ipv6(ServiceKey),
    #[error("invalid VIP: {0}")]
    InvalidVip(String),
    #[error("Service {0}: SCTP Services are not supported (tcp, udp)")]
    Sctp(ServiceKey),
    #[error("invalid VIP {0}: it is one of the switch's own addresses")]
    VipIsOwnAddress(IpAddr),
    #[error("{0}")]
    InvalidBackend(String),
    #[error("backend {0}: loopback address")]
    LoopbackBackend(SocketAddr),
    #[error("backend {0}: IPv6 endpoints are not supported (IPv4 Services only)")]
    Ipv6Backend(SocketAddr),
    #[error("backend {0} listed twice")]
    BackendTwice(SocketAddr),
    #[error("{0} backends: at most {MAX_BACKENDS} per Service")]
    TooManyBackends(usize),
    #[error("affinity timeout {0}: must be 1 to {MAX_AFFINITY_SECS} seconds")]
    AffinityTimeout(u32),
    #[error("NodePort 0 is not allowed")]
    NodePortZero,
    #[error("NodePort {port} is outside the NodePort range {lo}-{hi} (vswitchd --node-port-range)")]
    NodePortRange { port: u16, lo: u16, hi: u16 },
    #[error("NodePort {0}/udp is VXLAN's port")]
    NodePortVxlan(u16),
    #[error("NodePort {port}/{proto} is already used by Service {other}")]
    NodePortTaken {
        port: u16,
        proto: Proto,
        other: ServiceKey,
    },
}

/// Checks one endpoint: IPv4, unicast, a real port.
fn check_endpoint(a: &SocketAddr) -> Result<(), ServiceError> {
    ctl::parse_endpoint(&a.to_string()).map_err(ServiceError::InvalidBackend)?;
    match a.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => Err(ServiceError::LoopbackBackend(*a)),
        IpAddr::V4(_) => Ok(()),
        IpAddr::V6(_) => Err(ServiceError::Ipv6Backend(*a)),
    }
}

/// Checks a set of endpoints: each valid, none twice.
fn check_endpoints(ready: &[SocketAddr], terminating: &[SocketAddr]) -> Result<(), ServiceError> {
    let mut seen = BTreeSet::new();
    for a in ready.iter().chain(terminating) {
        check_endpoint(a)?;
        if !seen.insert(*a) {
            return Err(ServiceError::BackendTwice(*a));
        }
    }
    if seen.len() > MAX_BACKENDS {
        return Err(ServiceError::TooManyBackends(seen.len()));
    }
    Ok(())
}

/// Checks a Service before it is added to `specs`. `router_addrs` are the
/// switch's own addresses, `node_ports` the range `--node-port-range`
/// allows.
fn check_new(
    specs: &BTreeMap<ServiceKey, ServiceSpec>,
    spec: &ServiceSpec,
    router_addrs: &[IpAddr],
    node_ports: (u16, u16),
) -> Result<(), ServiceError> {
    let k = &spec.service;
    match k.vip {
        IpAddr::V4(ip) if ip.is_loopback() || ip.is_link_local() => {
            return Err(ServiceError::VipNotRoutable(k.vip));
        }
        IpAddr::V4(_) => {}
        IpAddr::V6(_) => return Err(ServiceError::Ipv6(*k)),
    }
    ctl::parse_endpoint(&k.addr().to_string()).map_err(ServiceError::InvalidVip)?;
    if k.proto == Proto::Sctp {
        return Err(ServiceError::Sctp(*k));
    }
    if router_addrs.contains(&k.vip) {
        return Err(ServiceError::VipIsOwnAddress(k.vip));
    }
    check_endpoints(&spec.backends, &spec.terminating)?;
    if let Some(t) = spec.affinity_timeout
        && !(1..=MAX_AFFINITY_SECS).contains(&t)
    {
        return Err(ServiceError::AffinityTimeout(t));
    }
    if let Some(np) = spec.node_port {
        if np == 0 {
            return Err(ServiceError::NodePortZero);
        }
        let (lo, hi) = node_ports;
        if !(lo..=hi).contains(&np) {
            return Err(ServiceError::NodePortRange { port: np, lo, hi });
        }
        if np == fastpath::wire::vxlan::PORT && k.proto == Proto::Udp {
            return Err(ServiceError::NodePortVxlan(np));
        }
        if let Some(other) = specs
            .values()
            .find(|s| s.service != *k && s.node_port == Some(np) && s.service.proto == k.proto)
        {
            return Err(ServiceError::NodePortTaken {
                port: np,
                proto: k.proto,
                other: other.service,
            });
        }
    }
    Ok(())
}

/// `service add`: nothing changes when the same Service is there and the
/// request says `may_exist`.
pub(super) fn add(
    specs: &mut BTreeMap<ServiceKey, ServiceSpec>,
    spec: &ServiceSpec,
    router_addrs: &[IpAddr],
    node_ports: (u16, u16),
) -> Result<(), ServiceError> {
    let mut spec = spec.clone();
    let may_exist = std::mem::take(&mut spec.may_exist);
    let k = spec.service;
    if let Some(old) = specs.get(&k) {
        return if may_exist && *old == spec {
            Ok(())
        } else if may_exist {
            Err(ServiceError::ExistsOtherwise(k))
        } else {
            Err(ServiceError::Exists(k))
        };
    }
    check_new(specs, &spec, router_addrs, node_ports)?;
    specs.insert(k, spec);
    Ok(())
}

/// `service backends`: replaces the endpoint sets.
pub(super) fn set_backends(
    specs: &mut BTreeMap<ServiceKey, ServiceSpec>,
    service: ServiceKey,
    backends: &[SocketAddr],
    terminating: &[SocketAddr],
) -> Result<(), ServiceError> {
    let Some(spec) = specs.get_mut(&service) else {
        return Err(ServiceError::NoSuchService(service));
    };
    check_endpoints(backends, terminating)?;
    spec.backends = backends.to_vec();
    spec.terminating = terminating.to_vec();
    Ok(())
}

/// `service del`.
pub(super) fn del(
    specs: &mut BTreeMap<ServiceKey, ServiceSpec>,
    service: ServiceKey,
    if_exists: bool,
) -> Result<(), ServiceError> {
    if specs.remove(&service).is_none() && !if_exists {
        return Err(ServiceError::NoSuchService(service));
    }
    Ok(())
}
