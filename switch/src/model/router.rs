//! The router's configuration: its addresses and static routes, the checks
//! a change must pass, and the routing table built from them and the ports.
//!
//! Routes come from five places, and `route list` shows them all:
//! - `addr add 10.244.1.1/24`: 10.244.1.1/32 is `local` (answered by the
//!   switch) and 10.244.1.0/24 is `connected` (the pod bridge);
//! - a pod port with `--ip`: a /32 (or /128) `pod` route straight to the
//!   port, with the pod's MAC when it was declared;
//! - an uplink port: the node's subnets on that NIC, on-link (`port`);
//! - a host port: the node's own addresses, through the host TAP (`port`);
//! - `route add`: `static`, via a next hop inside one of the above, or out
//!   of a port.
//!
//! Invariant: every configuration the model holds passed these checks, so
//! building the table never fails; a static route whose next hop stopped
//! being reachable (its uplink is down) is left out of the table, not
//! removed from the configuration.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ctl::{MacAddr, RouteInfo, RouteOrigin, RouteSpec};
use fastpath::l3::neigh::NeighEvent;
use fastpath::l3::table::{Link, NextHop, RouteTable};
use fastpath::snapshot::PortRole;
use fastpath::{MacKey, PortId, mac_key};
use ipnet::IpNet;

/// Why an address or route request is refused; the message is what users see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("address {0} already exists")]
    AddrExists(IpNet),
    #[error("address {0} does not exist")]
    NoSuchAddr(IpNet),
    #[error("{0} cannot be a router address")]
    NotRouterAddress(IpAddr),
    #[error("{0} is the network or broadcast address of {1}")]
    NetworkOrBroadcast(IpAddr, IpNet),
    #[error("{0} overlaps the router address {1} (one address per subnet)")]
    OverlapsAddress(IpNet, IpNet),
    #[error("{0} is already a static route")]
    AlreadyStaticRoute(IpNet),
    #[error("{0} is already in use by port '{1}'")]
    InUseByPort(IpAddr, String),
    #[error("{0} overlaps the uplink subnet of port '{1}'")]
    OverlapsUplink(IpNet, String),
    #[error("route {route} goes via {via} in {subnet}; delete the route first")]
    RouteNeedsAddress {
        route: IpNet,
        via: IpAddr,
        subnet: IpNet,
    },
    #[error("{0} has host bits set; did you mean {1}?")]
    HostBits(IpNet, IpNet),
    #[error("{0} is the connected subnet of router address {1}")]
    ConnectedSubnet(IpNet, IpNet),
    #[error("a route to {0} already exists")]
    Exists(IpNet),
    #[error("a route to {0} already exists with other settings")]
    ExistsOtherwise(IpNet),
    #[error("no static route to {0}")]
    NoStaticRoute(IpNet),
    #[error(
        "no static route to {0} (only static routes can be deleted; this one comes from an address or a port)"
    )]
    NotStatic(IpNet),
    #[error("a VXLAN endpoint is an IPv4 address (the remote node's)")]
    VtepNotV4,
    #[error(
        "VXLAN endpoint {0} is not reachable through the uplink \
         (add the uplink port, or a route to {0} via a gateway on it)"
    )]
    VtepUnreachable(IpAddr),
    #[error("next hop {0} is not of the family of {1}")]
    WrongFamily(IpAddr, IpNet),
    #[error("next hop {0} is one of the switch's own addresses")]
    ViaOwnAddress(IpAddr),
    #[error(
        "next hop {0} is not in any connected subnet (router addresses, pod addresses, uplink subnets)"
    )]
    ViaUnreachable(IpAddr),
    #[error("port '{0}' does not exist")]
    NoSuchPort(String),
    #[error("a route needs exactly one of 'via NEXTHOP' and 'dev PORT'")]
    ViaOrDev,
    #[error("VXLAN encapsulation needs 'via NEXTHOP' (the remote node)")]
    VxlanNeedsVia,
    #[error("VNI {0} is not in 1..=16777215")]
    BadVni(u32),
    #[error("{0} cannot be a pod address")]
    NotPodAddress(IpAddr),
    #[error("{0} is given twice")]
    GivenTwice(IpAddr),
    #[error("{0} is one of the switch's own addresses")]
    OwnAddress(IpAddr),
    #[error("not a valid route")]
    Invalid,
}

/// What the router needs to know about one port.
#[derive(Debug, Clone)]
pub struct PortView {
    pub name: String,
    pub id: PortId,
    pub role: PortRole,
    /// A pod port: the pod's MAC, when declared.
    pub pod_mac: Option<MacAddr>,
    /// A pod port: the pod's addresses.
    pub ips: Vec<IpAddr>,
    /// A host port: the MAC of the kernel's side (the TAP device).
    pub peer_mac: Option<MacKey>,
    /// An uplink: the node's subnets on that NIC.
    pub links: Vec<IpNet>,
    /// A host port: the node's own addresses (reached through it).
    pub node_addrs: Vec<IpAddr>,
}

/// One route of the built table, with how `route list` shows it.
#[derive(Debug, Clone)]
pub struct BuiltRoute {
    pub prefix: IpNet,
    pub hop: NextHop,
    pub info: RouteInfo,
}

/// Addresses and static routes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouterModel {
    pub addrs: BTreeSet<IpNet>,
    /// The program that added an address, for those one added.
    pub addr_owners: BTreeMap<IpNet, String>,
    pub routes: BTreeMap<IpNet, RouteSpec>,
}

impl RouterModel {
    /// `addr add`: nothing changes when the address is there and
    /// `may_exist` (its owner included: a program's `may_exist` does not
    /// take over an address added by hand).
    pub fn add_addr(
        &mut self,
        addr: IpNet,
        may_exist: bool,
        owner: Option<&str>,
        ports: &[PortView],
    ) -> Result<(), RouteError> {
        if self.addrs.contains(&addr) {
            return if may_exist {
                Ok(())
            } else {
                Err(RouteError::AddrExists(addr))
            };
        }
        self.check_addr(addr, ports)?;
        self.addrs.insert(addr);
        if let Some(o) = owner {
            self.addr_owners.insert(addr, o.to_string());
        }
        Ok(())
    }

    /// `addr del`.
    pub fn del_addr(
        &mut self,
        addr: IpNet,
        if_exists: bool,
        ports: &[PortView],
    ) -> Result<(), RouteError> {
        if !self.addrs.contains(&addr) {
            return if if_exists {
                Ok(())
            } else {
                Err(RouteError::NoSuchAddr(addr))
            };
        }
        self.check_addr_del(addr, ports)?;
        self.addrs.remove(&addr);
        self.addr_owners.remove(&addr);
        Ok(())
    }

    /// `route add`: nothing changes when the same route is there and the
    /// request says `may_exist`.
    pub fn add_route(&mut self, spec: &RouteSpec, ports: &[PortView]) -> Result<(), RouteError> {
        let mut spec = spec.clone();
        let may_exist = std::mem::take(&mut spec.may_exist);
        if let Some(existing) = self.routes.get(&spec.prefix) {
            return if may_exist && *existing == spec {
                Ok(())
            } else if may_exist {
                Err(RouteError::ExistsOtherwise(spec.prefix))
            } else {
                Err(RouteError::Exists(spec.prefix))
            };
        }
        self.check_route(&spec, ports)?;
        self.routes.insert(spec.prefix, spec);
        Ok(())
    }

    /// `route del`; `derived` says the table has a route to `prefix` that
    /// an address or a port made (only static routes can be deleted).
    pub fn del_route(
        &mut self,
        prefix: IpNet,
        if_exists: bool,
        derived: bool,
    ) -> Result<(), RouteError> {
        if self.routes.remove(&prefix).is_some() || if_exists {
            return Ok(());
        }
        Err(if derived {
            RouteError::NotStatic(prefix)
        } else {
            RouteError::NoStaticRoute(prefix)
        })
    }

    /// A static route from the state file. Routes were checked when they
    /// were added; a next hop that cannot be reached now (its uplink is
    /// missing) keeps the route configured but out of the table, as a down
    /// port stays configured. Only the route's shape is checked again.
    pub fn restore_route(&mut self, spec: RouteSpec) -> Result<(), RouteError> {
        let valid = spec.prefix == spec.prefix.trunc()
            && (spec.via.is_some() != spec.dev.is_some())
            && !self.routes.contains_key(&spec.prefix);
        if !valid {
            return Err(RouteError::Invalid);
        }
        self.routes.insert(spec.prefix, spec);
        Ok(())
    }

    /// Checks `addr add`.
    pub fn check_addr(&self, net: IpNet, ports: &[PortView]) -> Result<(), RouteError> {
        let ip = net.addr();
        if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
            return Err(RouteError::NotRouterAddress(ip));
        }
        if let IpNet::V4(n) = net
            && n.prefix_len() < 31
            && (ip == IpAddr::V4(n.network()) || ip == IpAddr::V4(n.broadcast()))
        {
            return Err(RouteError::NetworkOrBroadcast(ip, net.trunc()));
        }
        if let Some(other) = self.addrs.iter().find(|a| overlaps(a.trunc(), net.trunc())) {
            return Err(RouteError::OverlapsAddress(net, *other));
        }
        if self.routes.contains_key(&net.trunc()) {
            return Err(RouteError::AlreadyStaticRoute(net.trunc()));
        }
        if let Some(p) = ports.iter().find(|p| p.ips.contains(&ip)) {
            return Err(RouteError::InUseByPort(ip, p.name.clone()));
        }
        if let Some(p) = ports
            .iter()
            .find(|p| p.links.iter().any(|l| overlaps(*l, net.trunc())))
        {
            return Err(RouteError::OverlapsUplink(net, p.name.clone()));
        }
        Ok(())
    }

    /// Checks `addr del`.
    pub fn check_addr_del(&self, net: IpNet, ports: &[PortView]) -> Result<(), RouteError> {
        let rest = RouterModel {
            addrs: self.addrs.iter().copied().filter(|a| *a != net).collect(),
            addr_owners: BTreeMap::new(),
            routes: BTreeMap::new(),
        };
        for r in self.routes.values() {
            if let Some(via) = r.via
                && net.trunc().contains(&via)
                && rest.resolve_via(via, ports).is_none()
            {
                return Err(RouteError::RouteNeedsAddress {
                    route: r.prefix,
                    via,
                    subnet: net.trunc(),
                });
            }
        }
        Ok(())
    }

    /// Checks `route add`.
    pub fn check_route(&self, spec: &RouteSpec, ports: &[PortView]) -> Result<(), RouteError> {
        let p = spec.prefix;
        if p != p.trunc() {
            return Err(RouteError::HostBits(p, p.trunc()));
        }
        if let Some(a) = self.addrs.iter().find(|a| a.trunc() == p) {
            return Err(RouteError::ConnectedSubnet(p, *a));
        }
        if self.routes.contains_key(&p) {
            return Err(RouteError::Exists(p));
        }
        match (spec.via, &spec.dev) {
            (Some(via), None) if spec.encap.is_some() => {
                if !via.is_ipv4() {
                    return Err(RouteError::VtepNotV4);
                }
                let t = table(&self.build(ports));
                let through_uplink = match t.lookup(via) {
                    Some(NextHop::Resolve {
                        link: Link::Port(id),
                        ..
                    }) => ports
                        .iter()
                        .any(|pv| pv.id == *id && pv.role == PortRole::Uplink),
                    _ => false,
                };
                if !through_uplink {
                    return Err(RouteError::VtepUnreachable(via));
                }
            }
            (Some(via), None) => {
                if is_v4(via) != is_v4(p.addr()) {
                    return Err(RouteError::WrongFamily(via, p));
                }
                if self.addrs.iter().any(|a| a.addr() == via) {
                    return Err(RouteError::ViaOwnAddress(via));
                }
                if self.resolve_via(via, ports).is_none() {
                    return Err(RouteError::ViaUnreachable(via));
                }
            }
            (None, Some(dev)) => {
                if !ports.iter().any(|pv| &pv.name == dev) {
                    return Err(RouteError::NoSuchPort(dev.clone()));
                }
            }
            _ => return Err(RouteError::ViaOrDev),
        }
        if let Some(ctl::Encap::Vxlan { vni }) = spec.encap {
            if spec.via.is_none() {
                return Err(RouteError::VxlanNeedsVia);
            }
            if vni == 0 || vni > 0x00ff_ffff {
                return Err(RouteError::BadVni(vni));
            }
        }
        Ok(())
    }

    /// Checks that the pod addresses of a new port are free.
    pub fn check_pod_ips(&self, ips: &[IpAddr], ports: &[PortView]) -> Result<(), RouteError> {
        let mut seen = BTreeSet::new();
        for ip in ips {
            if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
                return Err(RouteError::NotPodAddress(*ip));
            }
            if !seen.insert(*ip) {
                return Err(RouteError::GivenTwice(*ip));
            }
            if self.addrs.iter().any(|a| a.addr() == *ip) {
                return Err(RouteError::OwnAddress(*ip));
            }
            if let Some(p) = ports.iter().find(|p| p.ips.contains(ip)) {
                return Err(RouteError::InUseByPort(*ip, p.name.clone()));
            }
        }
        Ok(())
    }

    /// How a next hop is reached, if it is reachable.
    fn resolve_via(&self, via: IpAddr, ports: &[PortView]) -> Option<NextHop> {
        if let Some(p) = ports.iter().find(|p| p.ips.contains(&via)) {
            return Some(pod_hop(p));
        }
        if self.addrs.iter().any(|a| a.trunc().contains(&via)) {
            return Some(NextHop::Resolve {
                link: Link::Bridge,
                gw: Some(via),
            });
        }
        if let Some(p) = ports
            .iter()
            .find(|p| p.role == PortRole::Uplink && p.links.iter().any(|l| l.contains(&via)))
        {
            return Some(NextHop::Resolve {
                link: Link::Port(p.id),
                gw: Some(via),
            });
        }
        None
    }

    /// Every route the data plane uses, most specific origin first.
    pub fn build(&self, ports: &[PortView]) -> Vec<BuiltRoute> {
        let mut out: BTreeMap<IpNet, BuiltRoute> = BTreeMap::new();
        let mut put = |prefix: IpNet, hop: NextHop, dev: Option<String>, via, origin| {
            out.entry(prefix).or_insert(BuiltRoute {
                prefix,
                hop,
                info: RouteInfo {
                    owner: None,
                    prefix,
                    via,
                    dev,
                    encap: None,
                    origin,
                },
            });
        };
        for a in &self.addrs {
            put(
                host_net(a.addr()),
                NextHop::Local,
                None,
                None,
                RouteOrigin::Local,
            );
        }
        for p in ports {
            for ip in &p.ips {
                put(
                    host_net(*ip),
                    pod_hop(p),
                    Some(p.name.clone()),
                    None,
                    RouteOrigin::Pod,
                );
            }
        }
        for a in &self.addrs {
            let link = NextHop::Resolve {
                link: Link::Bridge,
                gw: None,
            };
            put(
                a.trunc(),
                link,
                Some("bridge".into()),
                None,
                RouteOrigin::Connected,
            );
        }
        for p in ports {
            if p.role == PortRole::Uplink {
                for l in &p.links {
                    let hop = NextHop::Resolve {
                        link: Link::Port(p.id),
                        gw: None,
                    };
                    put(*l, hop, Some(p.name.clone()), None, RouteOrigin::Port);
                }
            }
            if p.role == PortRole::Host
                && let Some(mac) = p.peer_mac
            {
                for a in &p.node_addrs {
                    let hop = NextHop::Peer { port: p.id, mac };
                    put(
                        host_net(*a),
                        hop,
                        Some(p.name.clone()),
                        None,
                        RouteOrigin::Port,
                    );
                }
            }
        }
        for r in self.routes.values() {
            let hop = match (r.via, &r.dev) {
                (Some(IpAddr::V4(vtep)), _) if r.encap.is_some() => {
                    let Some(ctl::Encap::Vxlan { vni }) = r.encap else {
                        continue;
                    };
                    Some(NextHop::Vxlan {
                        vtep: u32::from(vtep),
                        vni,
                    })
                }
                (Some(via), _) => self.resolve_via(via, ports),
                (None, Some(dev)) => ports.iter().find(|p| &p.name == dev).map(dev_hop),
                (None, None) => None,
            };
            let Some(hop) = hop else { continue };
            out.insert(
                r.prefix,
                BuiltRoute {
                    prefix: r.prefix,
                    hop,
                    info: RouteInfo {
                        owner: r.owner.clone(),
                        prefix: r.prefix,
                        via: r.via,
                        dev: r.dev.clone(),
                        encap: r.encap,
                        origin: RouteOrigin::Static,
                    },
                },
            );
        }
        out.into_values().collect()
    }

    /// Whether a neighbour report may be believed: the address must belong
    /// on the link the report came from, and not be configured already.
    pub fn accept_neighbour(&self, ev: &NeighEvent, ports: &[PortView]) -> bool {
        let Some(p) = ports.iter().find(|p| p.id == ev.port) else {
            return false;
        };
        if self.addrs.iter().any(|a| a.addr() == ev.ip) {
            return false;
        }
        // A pod declared with its MAC is a permanent neighbour already.
        if ports
            .iter()
            .any(|q| q.pod_mac.is_some() && q.ips.contains(&ev.ip))
        {
            return false;
        }
        let routed_here = self
            .routes
            .values()
            .any(|r| r.dev.as_deref() == Some(p.name.as_str()) && r.prefix.contains(&ev.ip));
        match p.role {
            PortRole::Pod => {
                self.addrs.iter().any(|a| a.trunc().contains(&ev.ip))
                    || p.ips.contains(&ev.ip)
                    || routed_here
            }
            PortRole::Uplink => p.links.iter().any(|l| l.contains(&ev.ip)) || routed_here,
            PortRole::Host => false,
        }
    }
}

/// Builds the data-plane table from the routes.
pub fn table(routes: &[BuiltRoute]) -> RouteTable {
    let mut t = RouteTable::default();
    for r in routes {
        t.insert(r.prefix.addr(), r.prefix.prefix_len(), r.hop);
    }
    t.freeze();
    t
}

fn pod_hop(p: &PortView) -> NextHop {
    match p.pod_mac {
        Some(mac) => NextHop::Peer {
            port: p.id,
            mac: mac_key(&mac.0),
        },
        None => NextHop::Resolve {
            link: Link::Port(p.id),
            gw: None,
        },
    }
}

fn dev_hop(p: &PortView) -> NextHop {
    match (p.role, p.peer_mac) {
        (PortRole::Host, Some(mac)) => NextHop::Peer { port: p.id, mac },
        _ => NextHop::Resolve {
            link: Link::Port(p.id),
            gw: None,
        },
    }
}

fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

fn is_v4(ip: IpAddr) -> bool {
    ip.is_ipv4()
}

fn overlaps(a: IpNet, b: IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pod(name: &str, id: PortId, addr: &str) -> PortView {
        PortView {
            name: name.into(),
            id,
            role: PortRole::Pod,
            pod_mac: Some(MacAddr([2, 0, 0, 0, 0, id as u8])),
            ips: vec![ip(addr)],
            peer_mac: None,
            links: vec![],
            node_addrs: vec![],
        }
    }

    fn uplink(id: PortId) -> PortView {
        PortView {
            name: "eth1".into(),
            id,
            role: PortRole::Uplink,
            pod_mac: None,
            ips: vec![],
            peer_mac: None,
            links: vec![net("192.168.50.0/24")],
            node_addrs: vec![],
        }
    }

    fn route(prefix: &str, via: Option<&str>, dev: Option<&str>) -> RouteSpec {
        RouteSpec {
            owner: None,
            prefix: net(prefix),
            via: via.map(ip),
            dev: dev.map(str::to_string),
            encap: None,
            may_exist: false,
        }
    }

    #[test]
    fn addresses_are_checked() {
        let mut m = RouterModel::default();
        let ports = [pod("p1", 1, "10.244.1.5")];
        assert!(m.check_addr(net("10.244.1.1/24"), &ports).is_ok());
        m.addrs.insert(net("10.244.1.1/24"));
        let e = m
            .check_addr(net("10.244.1.2/24"), &ports)
            .unwrap_err()
            .to_string();
        assert!(e.contains("overlaps"), "{e}");
        assert!(m.check_addr(net("10.244.0.1/16"), &ports).is_err());
        assert!(
            m.check_addr(net("10.244.2.0/24"), &ports)
                .unwrap_err()
                .to_string()
                .contains("network")
        );
        assert!(m.check_addr(net("10.244.2.255/24"), &ports).is_err());
        assert!(m.check_addr(net("224.0.0.1/24"), &ports).is_err());
        let e = m
            .check_addr(net("10.244.1.5/32"), &ports)
            .unwrap_err()
            .to_string();
        assert!(e.contains("overlaps") || e.contains("in use"), "{e}");
        let e = m
            .check_addr(net("10.1.0.5/24"), &[pod("p2", 2, "10.1.0.5")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("in use by port 'p2'"), "{e}");
    }

    #[test]
    fn routes_are_checked() {
        let mut m = RouterModel::default();
        m.addrs.insert(net("10.244.1.1/24"));
        let ports = [pod("p1", 1, "10.244.1.5"), uplink(9)];
        assert!(
            m.check_route(&route("10.244.2.0/24", Some("192.168.50.2"), None), &ports)
                .is_ok()
        );
        assert!(
            m.check_route(&route("10.9.0.0/16", Some("10.244.1.7"), None), &ports)
                .is_ok()
        );
        assert!(
            m.check_route(&route("0.0.0.0/0", None, Some("p1")), &ports)
                .is_ok()
        );
        let bad = [
            (
                route("10.244.2.1/24", Some("192.168.50.2"), None),
                "host bits",
            ),
            (route("10.244.1.0/24", None, Some("p1")), "connected subnet"),
            (
                route("10.244.3.0/24", Some("172.16.0.1"), None),
                "not in any connected subnet",
            ),
            (
                route("10.244.3.0/24", Some("10.244.1.1"), None),
                "own addresses",
            ),
            (route("10.244.3.0/24", None, Some("nope")), "does not exist"),
            (route("10.244.3.0/24", Some("fd00::1"), None), "family"),
            (route("10.244.3.0/24", None, None), "exactly one"),
        ];
        for (spec, want) in bad {
            let e = m.check_route(&spec, &ports).unwrap_err().to_string();
            assert!(e.contains(want), "{spec:?}: {e}");
        }
        m.routes.insert(
            net("10.244.2.0/24"),
            route("10.244.2.0/24", Some("192.168.50.2"), None),
        );
        assert!(
            m.check_route(&route("10.244.2.0/24", None, Some("p1")), &ports)
                .unwrap_err()
                .to_string()
                .contains("exists")
        );
    }

    #[test]
    fn table_holds_every_origin_and_longest_match_wins() {
        let mut m = RouterModel::default();
        m.addrs.insert(net("10.244.1.1/24"));
        m.routes.insert(
            net("10.244.2.0/24"),
            route("10.244.2.0/24", Some("192.168.50.2"), None),
        );
        let ports = [pod("p1", 1, "10.244.1.5"), uplink(9)];
        let built = m.build(&ports);
        let t = table(&built);
        let look = |s: &str| t.lookup(ip(s)).copied();
        assert_eq!(look("10.244.1.1"), Some(NextHop::Local));
        assert_eq!(
            look("10.244.1.5"),
            Some(NextHop::Peer {
                port: 1,
                mac: 0x0200_0000_0001
            })
        );
        assert_eq!(
            look("10.244.1.6"),
            Some(NextHop::Resolve {
                link: Link::Bridge,
                gw: None
            })
        );
        assert_eq!(
            look("10.244.2.9"),
            Some(NextHop::Resolve {
                link: Link::Port(9),
                gw: Some(ip("192.168.50.2"))
            })
        );
        assert_eq!(
            look("192.168.50.7"),
            Some(NextHop::Resolve {
                link: Link::Port(9),
                gw: None
            })
        );
        assert_eq!(look("8.8.8.8"), None);
        let origins: Vec<_> = built.iter().map(|b| b.info.origin).collect();
        for o in [
            RouteOrigin::Local,
            RouteOrigin::Pod,
            RouteOrigin::Connected,
            RouteOrigin::Port,
            RouteOrigin::Static,
        ] {
            assert!(origins.contains(&o), "{o:?} missing");
        }
        // Without the uplink, the static route has no way out: left out.
        let built = m.build(&ports[..1]);
        assert!(!built.iter().any(|b| b.info.origin == RouteOrigin::Static));
    }

    #[test]
    fn vxlan_routes_need_a_way_out_of_the_uplink() {
        let mut m = RouterModel::default();
        m.addrs.insert(net("10.244.1.1/24"));
        let ports = [pod("p1", 1, "10.244.1.5"), uplink(9)];
        let mut vx = route("10.244.2.0/24", Some("192.168.60.2"), None);
        vx.encap = Some(ctl::Encap::Vxlan { vni: 42 });
        let e = m.check_route(&vx, &ports).unwrap_err().to_string();
        assert!(e.contains("not reachable through the uplink"), "{e}");
        let underlay = route("192.168.60.0/24", Some("192.168.50.254"), None);
        m.check_route(&underlay, &ports).unwrap();
        m.routes.insert(underlay.prefix, underlay);
        m.check_route(&vx, &ports).unwrap();
        m.routes.insert(vx.prefix, vx.clone());
        let t = table(&m.build(&ports));
        assert_eq!(
            t.lookup(ip("10.244.2.7")),
            Some(&NextHop::Vxlan {
                vtep: 0xc0a8_3c02,
                vni: 42
            })
        );
        vx.prefix = net("10.244.3.0/24");
        vx.via = Some(ip("10.244.1.7"));
        assert!(
            m.check_route(&vx, &ports).is_err(),
            "a VTEP on the pod bridge"
        );
        vx.encap = Some(ctl::Encap::Vxlan { vni: 0 });
        vx.via = Some(ip("192.168.60.3"));
        assert!(
            m.check_route(&vx, &ports)
                .unwrap_err()
                .to_string()
                .contains("VNI")
        );
    }

    #[test]
    fn addr_del_refused_while_a_route_needs_it() {
        let mut m = RouterModel::default();
        m.addrs.insert(net("10.244.1.1/24"));
        m.routes.insert(
            net("10.9.0.0/16"),
            route("10.9.0.0/16", Some("10.244.1.7"), None),
        );
        let e = m
            .check_addr_del(net("10.244.1.1/24"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("delete the route first"), "{e}");
    }

    #[test]
    fn neighbours_must_belong_on_their_link() {
        let mut m = RouterModel::default();
        m.addrs.insert(net("10.244.1.1/24"));
        let ports = [pod("p1", 1, "10.244.1.5"), uplink(9)];
        let ev = |s: &str, port| NeighEvent {
            ip: ip(s),
            mac: 0x0200_0000_0077,
            port,
        };
        assert!(m.accept_neighbour(&ev("10.244.1.77", 1), &ports));
        assert!(
            !m.accept_neighbour(&ev("10.244.1.1", 1), &ports),
            "our own address"
        );
        assert!(
            !m.accept_neighbour(&ev("10.99.0.1", 1), &ports),
            "not on the bridge"
        );
        assert!(m.accept_neighbour(&ev("192.168.50.2", 9), &ports));
        assert!(
            !m.accept_neighbour(&ev("192.168.50.2", 1), &ports),
            "uplink subnet seen on a pod port"
        );
        assert!(
            !m.accept_neighbour(&ev("10.244.1.77", 5), &ports),
            "unknown port"
        );
        assert!(
            !m.accept_neighbour(&ev("10.244.1.5", 1), &ports),
            "declared with its MAC: a permanent neighbour already"
        );
    }
}
