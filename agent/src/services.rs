//! Services and their EndpointSlices, with kube-proxy's semantics: one
//! vswitchd Service per (IP, port, protocol) a Service answers on (its
//! clusterIPs, externalIPs and LoadBalancer ingress IPs in VIP mode), with
//! the endpoints of the port (by name, from every slice of the Service,
//! duplicates removed): ready ones, else serving-terminating ones as the
//! fallback; ClientIP affinity; the NodePort; the traffic policies' local
//! endpoints.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use ctl::{Proto, ServiceKey, ServiceSpec};
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::{Cluster, Desired, HealthCheck, Options};

/// The label that names an EndpointSlice's Service.
const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Services another proxy implements carry this label.
const PROXY_NAME: &str = "service.kubernetes.io/service-proxy-name";
/// kube-proxy's default ClientIP affinity timeout (3 hours).
const AFFINITY_DEFAULT: u32 = 10_800;

/// The endpoints of one Service port, in one family.
#[derive(Debug, Default)]
struct Endpoints {
    ready: BTreeSet<SocketAddr>,
    /// Serving and terminating: used while none is ready.
    terminating: BTreeSet<SocketAddr>,
    local_ready: BTreeSet<SocketAddr>,
    local_terminating: BTreeSet<SocketAddr>,
}

pub(crate) fn add(d: &mut Desired, cluster: &Cluster, opts: &Options) {
    for svc in &cluster.services {
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let id = format!("{ns}/{name}");
        let Some(spec) = &svc.spec else { continue };
        let labels = svc.metadata.labels.as_ref();
        if labels.is_some_and(|l| l.contains_key(PROXY_NAME))
            || spec.type_.as_deref() == Some("ExternalName")
            || spec.cluster_ip.as_deref() == Some("None")
        {
            continue;
        }
        let slices: Vec<&EndpointSlice> = cluster
            .slices
            .iter()
            .filter(|s| {
                s.metadata.namespace.as_deref() == Some(ns.as_str())
                    && s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME)) == Some(&name)
            })
            .collect();
        service(d, svc, &id, &slices, opts);
    }
}

fn service(d: &mut Desired, svc: &Service, id: &str, slices: &[&EndpointSlice], opts: &Options) {
    let spec = svc.spec.as_ref().expect("checked by the caller");
    let cluster_ips: Vec<IpAddr> = ips(
        d,
        id,
        spec.cluster_ips
            .clone()
            .filter(|v| !v.is_empty())
            .or_else(|| spec.cluster_ip.clone().map(|c| vec![c]))
            .unwrap_or_default(),
    );
    let mut external = spec.external_ips.clone().unwrap_or_default();
    if let Some(ingress) = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
    {
        for i in ingress {
            match (&i.ip, i.ip_mode.as_deref()) {
                (Some(ip), None | Some("VIP")) => external.push(ip.clone()),
                (Some(ip), Some(mode)) => d.note(
                    id,
                    format!(
                        "LoadBalancer ingress {ip} in ipMode {mode}: left to the load balancer"
                    ),
                ),
                (None, _) => {}
            }
        }
    }
    let external = ips(d, id, external);
    let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(AFFINITY_DEFAULT)
    });
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    if spec
        .load_balancer_source_ranges
        .as_ref()
        .is_some_and(|r| !r.is_empty())
    {
        d.note(id, "loadBalancerSourceRanges: not enforced".to_string());
    }

    // The Service's local ready endpoints (by address), for its health check.
    let mut local_ips = BTreeSet::new();
    for port in spec.ports.as_deref().unwrap_or_default() {
        let Some(proto) = proto(port) else {
            d.note(
                id,
                format!(
                    "port {}: protocol {} is not served (vswitch balances TCP and UDP)",
                    port.port,
                    port.protocol.as_deref().unwrap_or("TCP")
                ),
            );
            continue;
        };
        let Ok(number) = u16::try_from(port.port) else {
            continue;
        };
        let node_port = port.node_port.and_then(|p| u16::try_from(p).ok());
        if node_port.is_some() && external_local != internal_local {
            d.note(
                id,
                format!(
                    "port {number}: the NodePort is served with the ClusterIP's endpoints \
                     (vswitch has one endpoint set per Service, so externalTrafficPolicy and \
                     internalTrafficPolicy cannot differ for it)"
                ),
            );
        }
        let mut node_port_given = false;
        for (ip, local) in cluster_ips
            .iter()
            .map(|ip| (ip, internal_local))
            .chain(external.iter().map(|ip| (ip, external_local)))
        {
            let eps = endpoints(slices, port, *ip, &opts.node);
            if cluster_ips.first() == Some(ip) {
                local_ips.extend(eps.local_ready.iter().map(SocketAddr::ip));
            }
            let (ready, terminating) = if local {
                (eps.local_ready, eps.local_terminating)
            } else {
                (eps.ready, eps.terminating)
            };
            let key = ServiceKey::new(*ip, number, proto);
            // vswitchd serves a NodePort for one Service per protocol:
            // the first clusterIP's (the Service's primary family).
            let np = if !node_port_given && cluster_ips.first() == Some(ip) {
                node_port_given = true;
                node_port
            } else {
                None
            };
            d.services.insert(
                key,
                ServiceSpec {
                    owner: Some(crate::OWNER.to_string()),
                    service: key,
                    backends: ready.into_iter().collect(),
                    terminating: terminating.into_iter().collect(),
                    affinity_timeout: affinity,
                    node_port: np,
                    may_exist: false,
                },
            );
        }
    }
    if let Some(hc) = spec
        .health_check_node_port
        .and_then(|p| u16::try_from(p).ok())
        && external_local
    {
        d.health.insert(
            hc,
            HealthCheck {
                service: id.to_string(),
                local_endpoints: local_ips.len(),
            },
        );
    }
}

/// The addresses of `texts` that parse; the others are noted.
fn ips(d: &mut Desired, id: &str, texts: Vec<String>) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for t in texts {
        match t.parse::<IpAddr>() {
            Ok(ip) if ip.is_ipv6() => d.note(
                id,
                format!("{ip}: not served (vswitch's Service VIPs are IPv4)"),
            ),
            Ok(ip) if !out.contains(&ip) => out.push(ip),
            Ok(_) => {}
            Err(_) => d.note(id, format!("'{t}' is not an IP address")),
        }
    }
    out
}

/// The protocols vswitchd balances (not SCTP).
fn proto(port: &ServicePort) -> Option<Proto> {
    match port.protocol.as_deref().unwrap_or("TCP") {
        "TCP" => Some(Proto::Tcp),
        "UDP" => Some(Proto::Udp),
        _ => None,
    }
}

/// The endpoints of `port` in the family of `vip`, from every slice.
fn endpoints(slices: &[&EndpointSlice], port: &ServicePort, vip: IpAddr, node: &str) -> Endpoints {
    let mut eps = Endpoints::default();
    let want_type = if vip.is_ipv4() { "IPv4" } else { "IPv6" };
    let proto = port.protocol.as_deref().unwrap_or("TCP");
    for slice in slices.iter().filter(|s| s.address_type == want_type) {
        // The slice's port of the same name (both unnamed for a Service
        // with one unnamed port) and protocol.
        let Some(target) = slice
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|p| {
                p.name.as_deref().unwrap_or("") == port.name.as_deref().unwrap_or("")
                    && p.protocol.as_deref().unwrap_or("TCP") == proto
            })
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in &slice.endpoints {
            // kube-proxy uses an endpoint's first address.
            let Some(addr) = ep.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
                continue;
            };
            if addr.is_ipv4() != vip.is_ipv4() {
                continue;
            }
            let c = ep.conditions.as_ref();
            // Unknown readiness is ready; unknown serving follows ready.
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let serving = c.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            let sa = SocketAddr::new(addr, target);
            let local = ep.node_name.as_deref() == Some(node);
            if ready && !terminating {
                eps.ready.insert(sa);
                if local {
                    eps.local_ready.insert(sa);
                }
            } else if serving && terminating {
                eps.terminating.insert(sa);
                if local {
                    eps.local_terminating.insert(sa);
                }
            }
        }
    }
    // An address ready in one slice is not also terminating in another.
    let ready = eps.ready.clone();
    eps.terminating.retain(|a| !ready.contains(a));
    let local_ready = eps.local_ready.clone();
    eps.local_terminating.retain(|a| !local_ready.contains(a));
    eps
}
