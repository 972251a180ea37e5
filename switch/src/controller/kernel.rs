//! The router's snapshot part and what follows from the model in the
//! kernel: building the route table from the model and the ports, the
//! uplink's XDP program (its maps, promiscuous mode), the host port's
//! kernel routes, and the node's addresses they depend on.
//!
//! Same struct as [`super::Controller`], split by the data it changes: the
//! built table, the uplink program and the kernel routes live here.

use super::*;

pub(super) fn role_of(spec: &PortSpec) -> PortRole {
    match spec.role() {
        CtlRole::Pod => PortRole::Pod,
        CtlRole::Uplink => PortRole::Uplink,
        CtlRole::Host => PortRole::Host,
    }
}

/// Port security of a pod port declared with addresses.
pub(super) fn guard_of(spec: &PortSpec) -> Option<Arc<PortGuard>> {
    if spec.ips.is_empty() {
        return None;
    }
    let mut g = PortGuard {
        mac: spec.mac.map(|m| mac_key(&m.0)),
        ..PortGuard::default()
    };
    for ip in &spec.ips {
        match ip {
            IpAddr::V4(a) => g.v4.push(u32::from(*a)),
            IpAddr::V6(a) => g.v6.push(u128::from(*a)),
        }
    }
    Some(Arc::new(g))
}

/// Reads what the router needs from a port's interface (in the daemon's
/// namespace; a TAP moved into a pod has the default MTU).
pub(super) fn port_facts(spec: &PortSpec) -> PortFacts {
    let mut f = PortFacts {
        mtu: DEFAULT_MTU,
        ..PortFacts::default()
    };
    if spec.netns.is_none()
        && let Ok(m) = sys::mtu(&spec.name)
    {
        f.mtu = u16::try_from(m).unwrap_or(u16::MAX);
    }
    f.finish_csum = spec.port_type == ctl::PortType::Afxdp && crate::os::is_virtual(&spec.name);
    if spec.host {
        f.peer_mac = sys::hw_addr(&spec.name).ok().map(|m| mac_key(&m));
    }
    if spec.uplink {
        let addrs: Vec<_> = sys::if_addrs()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.ifname == spec.name)
            .filter(|a| !matches!(a.addr, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
            .collect();
        f.links = addrs
            .iter()
            .filter_map(|a| IpNet::new(a.addr, a.prefix_len).ok().map(|n| n.trunc()))
            .collect();
        f.link_addrs = addrs.iter().map(|a| a.addr).collect();
    }
    f
}

impl Controller {
    /// What the router model needs to know about every port.
    pub(super) fn port_views(&self) -> Vec<PortView> {
        self.ports
            .values()
            .map(|r| PortView {
                name: r.spec.name.clone(),
                id: r.id,
                role: role_of(&r.spec),
                pod_mac: r.spec.mac.filter(|_| r.spec.role() == CtlRole::Pod),
                ips: r.spec.ips.clone(),
                peer_mac: r.facts.peer_mac,
                links: r.facts.links.clone(),
                node_addrs: if r.spec.host {
                    self.node_addrs.clone()
                } else {
                    Vec::new()
                },
            })
            .collect()
    }

    /// Rebuilds the routing table and the router's snapshot part, if the
    /// configuration changed since the last build.
    pub(super) fn rebuild_l3(&mut self) {
        if !self.l3_dirty {
            return;
        }
        self.l3_dirty = false;
        if self.ports.values().any(|r| r.spec.host) {
            self.node_addrs = self.current_node_addrs();
        }
        let views = self.port_views();
        self.routes_built = self.model.router.build(&views);
        let vteps: Vec<u32> = self
            .ports
            .values()
            .filter(|r| r.spec.uplink)
            .flat_map(|r| r.facts.link_addrs.iter())
            .filter_map(|a| match a {
                IpAddr::V4(v4) => Some(u32::from(*v4)),
                IpAddr::V6(_) => None,
            })
            .collect();
        let bridge_mtu = self
            .ports
            .values()
            .filter(|r| r.spec.role() == CtlRole::Pod)
            .map(|r| r.facts.mtu)
            .min()
            .unwrap_or(DEFAULT_MTU);
        self.l3 = Arc::new(L3Config {
            router_mac: mac_key(&self.router_mac.0),
            routes: l3::table(&self.routes_built),
            addrs4: self
                .model
                .router
                .addrs
                .iter()
                .filter_map(|a| match a {
                    IpNet::V4(n) => Some((u32::from(n.addr()), n.prefix_len())),
                    IpNet::V6(_) => None,
                })
                .collect(),
            addrs6: self
                .model
                .router
                .addrs
                .iter()
                .filter_map(|a| match a {
                    IpNet::V6(n) => Some((u128::from(n.addr()), n.prefix_len())),
                    IpNet::V4(_) => None,
                })
                .collect(),
            link_local: fastpath::wire::ipv6::link_local_of(mac_key(&self.router_mac.0)),
            bridge_mtu,
            vtep_src: vteps.first().copied(),
            vteps,
            vnis: self
                .model
                .router
                .routes
                .values()
                .filter_map(|r| r.encap.map(|ctl::Encap::Vxlan { vni }| vni))
                .collect(),
        });
        self.sync_kernel_routes();
        self.sync_uplink();
    }

    /// Detaches the uplink's XDP program and undoes promiscuous mode.
    pub(super) fn release_uplink(&mut self) {
        self.uplink = None;
        if let Some(name) = self.promisc.take()
            && let Err(e) = crate::os::set_promisc(&name, false)
        {
            tracing::debug!(port = %name, "turning promiscuous mode off: {e}");
        }
    }

    /// Tells the uplink's XDP program which destinations are the switch's:
    /// router addresses and subnets, pods, and static routes that lead to
    /// pods. Routes out of the uplink or to the node (host port) are not:
    /// that traffic belongs to the node's kernel.
    pub(super) fn sync_uplink(&mut self) {
        let Some(prog) = self.uplink.as_mut() else {
            return;
        };
        let uplink_id = self.ports.values().find(|r| r.spec.uplink).map(|r| r.id);
        let host_id = self.ports.values().find(|r| r.spec.host).map(|r| r.id);
        let away = |port: PortId| Some(port) == uplink_id || Some(port) == host_id;
        let prefixes: Vec<(IpAddr, u8)> = self
            .routes_built
            .iter()
            .filter(|r| match r.hop {
                NextHop::Local => true,
                NextHop::Vxlan { .. } => false,
                NextHop::Peer { port, .. } => !away(port),
                NextHop::Resolve { link, .. } => match link {
                    fastpath::l3::table::Link::Bridge => true,
                    fastpath::l3::table::Link::Port(port) => !away(port),
                },
            })
            .map(|r| (r.prefix.addr(), r.prefix.prefix_len()))
            .collect();
        if let Err(e) = prog.set_prefixes(&prefixes) {
            tracing::error!("uplink program: {e}");
        }
        if let Err(e) = prog.set_router_mac(self.router_mac.0) {
            tracing::error!("uplink program: {e}");
        }
        let vteps: Vec<std::net::Ipv4Addr> = self
            .l3
            .vteps
            .iter()
            .map(|&a| std::net::Ipv4Addr::from(a))
            .collect();
        if let Err(e) = prog.set_vxlan_addrs(&vteps) {
            tracing::error!("uplink program: {e}");
        }
        let node_ports: Vec<(u16, u8)> = self.service_table.node_ports().collect();
        if let Err(e) = prog.set_node_ports(&node_ports) {
            tracing::error!("uplink program: {e}");
        }
    }

    /// The node's own addresses that pods reach through the host port.
    pub(super) fn current_node_addrs(&self) -> Vec<IpAddr> {
        let host: Vec<&str> = self
            .ports
            .values()
            .filter(|r| r.spec.host)
            .map(|r| r.spec.name.as_str())
            .collect();
        let mut v: Vec<IpAddr> = sys::if_addrs()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.ifname != "lo" && !host.contains(&a.ifname.as_str()))
            .map(|a| a.addr)
            .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
            .filter(|ip| {
                !self
                    .model
                    .router
                    .addrs
                    .iter()
                    .any(|a| a.trunc().contains(ip))
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Notices the node's addresses changing (housekeeping): the uplink's
    /// subnets and VXLAN addresses, the host port's routes.
    pub(super) fn refresh_node_addrs(&mut self) -> bool {
        for rec in self.ports.values_mut().filter(|r| r.spec.uplink && r.up) {
            let now = port_facts(&rec.spec);
            if now.links != rec.facts.links || now.link_addrs != rec.facts.link_addrs {
                tracing::info!(port = %rec.spec.name, links = ?now.links, "uplink addresses changed");
                rec.facts = now;
                self.l3_dirty = true;
            }
        }
        if self.l3_dirty {
            return true;
        }
        if !self.ports.values().any(|r| r.spec.host) {
            return false;
        }
        let now = self.current_node_addrs();
        if now == self.node_addrs {
            return false;
        }
        self.l3_dirty = true;
        true
    }

    /// Gives the node's kernel a route to every router subnet through the
    /// host port (and removes the ones it no longer needs). Only what the
    /// kernel took is recorded: a failed add is tried again at the next
    /// sync, a failed removal too. While the host port is down nothing is
    /// changed or forgotten; a host port on a new interface starts from
    /// nothing (the old interface's routes went with it).
    pub(super) fn sync_kernel_routes(&mut self) {
        let Some(host) = self.ports.values().find(|r| r.spec.host && r.up) else {
            return;
        };
        let Some(ifindex) = sys::if_index(&host.spec.name) else {
            return;
        };
        if ifindex != self.kernel_routes_dev {
            self.kernel_routes.clear();
            self.kernel_routes_dev = ifindex;
        }
        let subnets: BTreeSet<IpNet> = self.model.router.addrs.iter().map(IpNet::trunc).collect();
        // Service VIPs too, so the node reaches them (as kube-proxy makes
        // the node reach ClusterIPs).
        let mut want = subnets.clone();
        want.extend(
            self.model
                .services
                .keys()
                .filter_map(|k| IpNet::new(k.vip, 32).ok()),
        );
        let mut have = self.kernel_routes.clone();
        for net in self.kernel_routes.difference(&want) {
            match crate::os::kernel_route(false, net.addr(), net.prefix_len(), ifindex) {
                Ok(()) => {
                    have.remove(net);
                }
                // Gone already.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                    have.remove(net);
                }
                Err(e) => tracing::warn!("removing kernel route {net}: {e}"),
            }
        }
        // Subnet routes are renewed every time (cheap, few); VIP routes
        // only when new (there may be thousands).
        for net in want
            .iter()
            .filter(|n| subnets.contains(n) || !self.kernel_routes.contains(n))
        {
            match crate::os::kernel_route(true, net.addr(), net.prefix_len(), ifindex) {
                Ok(()) => {
                    have.insert(*net);
                }
                Err(e) => tracing::warn!("kernel route {net} dev {}: {e}", host.spec.name),
            }
        }
        self.kernel_routes = have;
    }

    pub(super) fn neigh_infos(&self) -> Vec<NeighInfo> {
        let now = clock::now_ms();
        let name = |id: PortId| {
            self.ids
                .get(usize::from(id))
                .cloned()
                .flatten()
                .unwrap_or_default()
        };
        let mut out: Vec<NeighInfo> = self
            .neigh
            .entries()
            .map(|(ip, n)| NeighInfo {
                ip,
                mac: MacAddr(mac_octets(n.mac)),
                port: name(n.port),
                state: NeighState::Reachable,
                age_secs: Some(now.saturating_sub(n.confirmed) / 1000),
            })
            .collect();
        for r in &self.routes_built {
            if let NextHop::Peer { port, mac } = r.hop
                && r.prefix.prefix_len() == r.prefix.max_prefix_len()
            {
                out.push(NeighInfo {
                    ip: r.prefix.addr(),
                    mac: MacAddr(mac_octets(mac)),
                    port: name(port),
                    state: NeighState::Permanent,
                    age_secs: None,
                });
            }
        }
        out.sort_by_key(|n| n.ip);
        out
    }
}
