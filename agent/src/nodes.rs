//! Nodes: this node's pod CIDRs become the switch's gateway addresses (the
//! first address of each); every other node's become routes through its
//! InternalIP, directly (host-gw) or over VXLAN.

use std::net::IpAddr;

use ctl::{Encap, RouteSpec};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;

use crate::{Cluster, Desired, Options};

pub(crate) fn add(d: &mut Desired, cluster: &Cluster, opts: &Options) {
    for node in &cluster.nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let cidrs = pod_cidrs(node, d, &name);
        if name == opts.node {
            for cidr in cidrs {
                match gateway(cidr) {
                    Some(gw) => {
                        d.addrs.insert(gw);
                    }
                    None => d.note(&name, format!("pod CIDR {cidr} has no room for a gateway")),
                }
            }
            continue;
        }
        let internal = internal_ips(node);
        for cidr in cidrs {
            // VXLAN ends at the node's IPv4 address whatever the family
            // carried; host-gw needs a next hop of the CIDR's family.
            let via = match opts.vxlan_vni {
                Some(_) => internal.iter().find(|ip| ip.is_ipv4()),
                None => internal
                    .iter()
                    .find(|ip| ip.is_ipv4() == matches!(cidr, IpNet::V4(_))),
            };
            let Some(via) = via else {
                d.note(
                    &name,
                    format!("no InternalIP to route its pod CIDR {cidr} through"),
                );
                continue;
            };
            d.routes.insert(
                cidr,
                RouteSpec {
                    owner: Some(crate::OWNER.to_string()),
                    prefix: cidr,
                    via: Some(*via),
                    dev: None,
                    encap: opts.vxlan_vni.map(|vni| Encap::Vxlan { vni }),
                    may_exist: false,
                },
            );
        }
    }
}

/// The node's pod CIDRs (`podCIDRs`, else `podCIDR`), those that parse.
fn pod_cidrs(node: &Node, d: &mut Desired, name: &str) -> Vec<IpNet> {
    let spec = node.spec.as_ref();
    let texts: Vec<String> = spec
        .and_then(|s| s.pod_cidrs.clone())
        .filter(|c| !c.is_empty())
        .or_else(|| spec.and_then(|s| s.pod_cidr.clone()).map(|c| vec![c]))
        .unwrap_or_default();
    let mut out = Vec::new();
    for t in texts {
        match t.parse::<IpNet>() {
            Ok(net) => out.push(net.trunc()),
            Err(_) => d.note(name, format!("pod CIDR '{t}' is not a prefix")),
        }
    }
    out
}

fn internal_ips(node: &Node) -> Vec<IpAddr> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|addrs| {
            addrs
                .iter()
                .filter(|a| a.type_ == "InternalIP")
                .filter_map(|a| a.address.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The first address of `cidr` with its prefix length (10.244.1.0/24 →
/// 10.244.1.1/24), the pods' gateway.
fn gateway(cidr: IpNet) -> Option<IpNet> {
    let first = cidr.hosts().find(|h| *h != cidr.network())?;
    IpNet::new(first, cidr.prefix_len()).ok()
}
