//! What an attachment is to be, computed from what IPAM gave and what
//! vswitchd holds, with no effect: the port's name, the pod's MAC, the
//! MTU, the gateways and the routes. Pure, so the rules are unit-tested.

use std::hash::Hasher;
use std::net::IpAddr;

use ctl::{AddrInfo, Encap, PortInfo, PortRole, RouteInfo};
use ipnet::IpNet;

use crate::spec::{CniResult, IpConfig, Route};

/// Bytes VXLAN adds in front of a pod's frame (outer IPv4, UDP, VXLAN,
/// inner Ethernet).
pub const VXLAN_OVERHEAD: u32 = 50;
/// The MTU when nothing says otherwise.
pub const DEFAULT_MTU: u32 = 1500;

/// The port's name in vswitchd (and the veth host end's): `vs` and 12 hex
/// digits (48 bits) of a hash of the container id and interface, within
/// Linux's 15 characters. Distinct in practice, not by construction: a
/// clash is a refused ADD (vswitchd has the port), never a shared port,
/// and DEL finds the name in the attachment's record, not by hashing.
pub fn port_name(container_id: &str, ifname: &str) -> String {
    format!("vs{:012x}", hash(container_id, ifname) & 0xffff_ffff_ffff)
}

/// The veth peer's name until it is moved into the pod.
pub fn peer_name(container_id: &str, ifname: &str) -> String {
    format!("vp{:012x}", hash(container_id, ifname) & 0xffff_ffff_ffff)
}

fn hash(container_id: &str, ifname: &str) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    h.write(container_id.as_bytes());
    h.write_u8(b'/');
    h.write(ifname.as_bytes());
    h.finish()
}

/// The pod's MAC: `0a:58` and its IPv4 address (as OVN-Kubernetes does:
/// stable for the address, so neighbours' caches stay right when a pod is
/// re-created with it), or `0a:5a` and a hash of the attachment for a pod
/// without IPv4.
pub fn pod_mac(ips: &[IpNet], container_id: &str, ifname: &str) -> [u8; 6] {
    match ips.iter().find_map(|n| match n.addr() {
        IpAddr::V4(v4) => Some(v4.octets()),
        IpAddr::V6(_) => None,
    }) {
        Some([a, b, c, d]) => [0x0a, 0x58, a, b, c, d],
        None => {
            let h = hash(container_id, ifname).to_be_bytes();
            [0x0a, 0x5a, h[0], h[1], h[2], h[3]]
        }
    }
}

pub fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The pod's MTU: the configuration's, else the uplink's (less the VXLAN
/// overhead when the switch has VXLAN routes), else 1500.
pub fn mtu(
    configured: Option<u32>,
    ports: &[PortInfo],
    routes: &[RouteInfo],
    uplink_mtu: impl Fn(&str) -> Option<u32>,
) -> u32 {
    let uplink = ports.iter().find(|p| p.role == PortRole::Uplink);
    mtu_of(
        configured,
        uplink.map(|p| p.name.as_str()),
        routes,
        uplink_mtu,
    )
}

fn mtu_of(
    configured: Option<u32>,
    uplink: Option<&str>,
    routes: &[RouteInfo],
    uplink_mtu: impl Fn(&str) -> Option<u32>,
) -> u32 {
    if let Some(m) = configured {
        return m;
    }
    let uplink = uplink.and_then(uplink_mtu).unwrap_or(DEFAULT_MTU);
    if routes
        .iter()
        .any(|r| matches!(r.encap, Some(Encap::Vxlan { .. })))
    {
        uplink.saturating_sub(VXLAN_OVERHEAD)
    } else {
        uplink
    }
}

/// The switch's router address on the subnet of `ip`, the pod's gateway.
pub fn gateway(ip: &IpNet, addrs: &[AddrInfo]) -> Option<IpAddr> {
    addrs
        .iter()
        .find(|a| a.addr.contains(&ip.addr()) && a.addr.addr() != ip.addr())
        .map(|a| a.addr.addr())
}

/// The addresses, with their gateways, and routes of the attachment:
/// IPAM's routes, each through the switch's gateway of its family unless
/// IPAM names one; without routes from IPAM, a default route per family
/// that has a gateway.
pub fn addressing(ipam: &CniResult, addrs: &[AddrInfo]) -> (Vec<IpConfig>, Vec<Route>) {
    let ips: Vec<IpConfig> = ipam
        .ips
        .iter()
        .map(|ip| IpConfig {
            version: None,
            address: ip.address,
            gateway: gateway(&ip.address, addrs).or(ip.gateway),
            interface: None,
            extra: ip.extra.clone(),
        })
        .collect();
    let gw_of = |v4: bool| {
        ips.iter()
            .filter(|ip| ip.address.addr().is_ipv4() == v4)
            .find_map(|ip| ip.gateway)
    };
    let routes = if ipam.routes.is_empty() {
        [true, false]
            .into_iter()
            .filter_map(|v4| {
                let gw = gw_of(v4)?;
                let dst = if v4 {
                    "0.0.0.0/0".parse().expect("a prefix")
                } else {
                    "::/0".parse().expect("a prefix")
                };
                Some(Route {
                    dst,
                    gw: Some(gw),
                    extra: Default::default(),
                })
            })
            .collect()
    } else {
        ipam.routes
            .iter()
            .map(|r| Route {
                dst: r.dst,
                gw: r.gw.or_else(|| gw_of(r.dst.addr().is_ipv4())),
                extra: r.extra.clone(),
            })
            .collect()
    };
    (ips, routes)
}

#[cfg(test)]
mod tests {
    use ctl::MacAddr;

    use super::*;

    fn addr(s: &str) -> AddrInfo {
        AddrInfo {
            owner: None,
            addr: s.parse().unwrap(),
            mac: MacAddr([2, 0xaa, 0, 0, 0, 1]),
        }
    }

    #[test]
    fn names_fit_linux_and_differ_per_attachment() {
        let a = port_name("0123456789abcdef", "eth0");
        assert_eq!(a.len(), 14);
        assert!(a.starts_with("vs"));
        assert_eq!(a, port_name("0123456789abcdef", "eth0"));
        assert_ne!(a, port_name("0123456789abcdef", "net1"));
        assert_ne!(a, port_name("0123456789abcdee", "eth0"));
        assert_ne!(a[2..], peer_name("x", "y")[2..]);
    }

    #[test]
    fn the_mac_follows_the_ipv4_address() {
        let v4: Vec<IpNet> = vec![
            "fd00::5/64".parse().unwrap(),
            "10.244.1.5/24".parse().unwrap(),
        ];
        assert_eq!(pod_mac(&v4, "c", "eth0"), [0x0a, 0x58, 10, 244, 1, 5]);
        let v6: Vec<IpNet> = vec!["fd00::5/64".parse().unwrap()];
        let m = pod_mac(&v6, "c", "eth0");
        assert_eq!(&m[..2], &[0x0a, 0x5a]);
        assert_eq!(mac_text([0x0a, 0x58, 10, 244, 1, 5]), "0a:58:0a:f4:01:05");
    }

    #[test]
    fn default_routes_go_through_the_switchs_gateways() {
        let ipam = CniResult {
            ips: vec![
                IpConfig {
                    version: None,
                    address: "10.244.1.5/24".parse().unwrap(),
                    gateway: Some("10.244.1.254".parse().unwrap()),
                    interface: None,
                    extra: Default::default(),
                },
                IpConfig {
                    version: None,
                    address: "fd00:1::5/64".parse().unwrap(),
                    gateway: None,
                    interface: None,
                    extra: Default::default(),
                },
            ],
            ..CniResult::default()
        };
        let addrs = [
            addr("10.244.1.1/24"),
            addr("fd00:1::1/64"),
            addr("10.0.0.1/8"),
        ];
        let (ips, routes) = addressing(&ipam, &addrs);
        assert_eq!(ips[0].gateway, Some("10.244.1.1".parse().unwrap()));
        assert_eq!(ips[1].gateway, Some("fd00:1::1".parse().unwrap()));
        assert_eq!(
            routes,
            vec![
                Route {
                    dst: "0.0.0.0/0".parse().unwrap(),
                    gw: Some("10.244.1.1".parse().unwrap()),
                    extra: Default::default()
                },
                Route {
                    dst: "::/0".parse().unwrap(),
                    gw: Some("fd00:1::1".parse().unwrap()),
                    extra: Default::default()
                },
            ]
        );
        // IPAM's own routes are kept, through the gateway of their family.
        let with_routes = CniResult {
            routes: vec![Route {
                dst: "10.96.0.0/12".parse().unwrap(),
                gw: None,
                extra: Default::default(),
            }],
            ..ipam.clone()
        };
        let (_, routes) = addressing(&with_routes, &addrs);
        assert_eq!(routes[0].gw, Some("10.244.1.1".parse().unwrap()));
        // No router address on the subnet: IPAM's gateway, if any.
        let (ips, routes) = addressing(&ipam, &[]);
        assert_eq!(ips[0].gateway, Some("10.244.1.254".parse().unwrap()));
        assert_eq!(routes.len(), 1);
    }

    #[test]
    fn the_mtu_leaves_room_for_vxlan() {
        let uplink = |_: &str| Some(9000);
        let vxlan = [RouteInfo {
            owner: None,
            prefix: "10.244.2.0/24".parse().unwrap(),
            via: Some("192.168.1.2".parse().unwrap()),
            dev: None,
            encap: Some(Encap::Vxlan { vni: 1 }),
            origin: ctl::RouteOrigin::Static,
        }];
        assert_eq!(mtu_of(Some(1400), Some("eth1"), &vxlan, uplink), 1400);
        assert_eq!(mtu_of(None, None, &[], uplink), DEFAULT_MTU);
        assert_eq!(mtu_of(None, None, &vxlan, uplink), DEFAULT_MTU - 50);
        assert_eq!(mtu_of(None, Some("eth1"), &[], uplink), 9000);
        assert_eq!(mtu_of(None, Some("eth1"), &vxlan, uplink), 8950);
        assert_eq!(
            mtu_of(None, Some("eth1"), &vxlan, |_| None),
            DEFAULT_MTU - 50
        );
    }
}
