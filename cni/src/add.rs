//! ADD: an address from IPAM, a port on vswitchd, the pod's interface
//! configured; all of it undone when a step fails.

use std::fs::File;

use ctl::{MacAddr, PortSpec, PortType};
use ipnet::IpNet;

use crate::env::{Env, Verb};
use crate::link::{self, IfConfig};
use crate::spec::{self, Attach, CniResult, Error, Interface, NetConf, code};
use crate::store::{Record, Store};
use crate::switch::Switch;
use crate::{del, ipam, plan};

pub fn add(conf: &NetConf, raw: &[u8], env: &Env) -> Result<CniResult, Error> {
    let Some(ipam_plugin) = conf.ipam_plugin() else {
        return Err(Error::new(
            code::INVALID_CONFIG,
            "the configuration has no 'ipam': vswitch-cni takes the pod's addresses \
             from an IPAM plugin, such as {\"type\": \"host-local\", ...}",
        ));
    };
    let prev = match &conf.prev_result {
        Some(v) => Some(CniResult::from_value(v)?),
        None => None,
    };
    let store = Store::open(&conf.data_dir(), &conf.name)?;
    let ns = link::open_netns(&env.netns)?;
    if link::exists(Some(&ns), &env.ifname)? {
        return Err(Error::new(
            code::EXISTS,
            format!("the pod already has an interface {}", env.ifname),
        ));
    }
    // vswitchd first: away, it would leave an address leased for nothing.
    let mut sw = Switch::connect(&conf.socket())?;
    del::remove_pending(&store, &mut sw);
    let addrs = sw.addrs()?;
    let ports = sw.ports()?;
    let routes = sw.routes()?;
    let mtu = plan::mtu(conf.mtu, &ports, &routes, link::host_mtu);

    let leased = ipam::delegate(ipam_plugin, Verb::Add, env, raw)?.expect("ADD has a result");
    let undo_ipam = || {
        let _ = ipam::delegate(ipam_plugin, Verb::Del, env, raw);
    };
    let (mut ips, routes) = plan::addressing(&leased, &addrs);
    let nets: Vec<IpNet> = ips.iter().map(|ip| ip.address).collect();
    // The pods' gateway is the switch: without a router address on the
    // subnet, nothing would answer for the gateway IPAM names.
    if let Some(ip) = ips
        .iter()
        .find(|ip| plan::gateway(&ip.address, &addrs).is_none())
    {
        undo_ipam();
        let net = ip.address.trunc();
        let first = net.hosts().next().map_or(net.addr(), |h| h);
        return Err(Error::new(
            code::SWITCH_REFUSED,
            format!(
                "vswitchd has no router address on {net}, the pod's subnet: \
                 add one first (vswitchctl addr add {first}/{})",
                net.prefix_len()
            ),
        ));
    }
    if mtu < spec::MTU_MIN_V6 && nets.iter().any(|n| n.addr().is_ipv6()) {
        undo_ipam();
        return Err(Error::new(
            code::INVALID_CONFIG,
            format!(
                "mtu {mtu} is below IPv6's minimum of {}, and the pod has an IPv6 address",
                spec::MTU_MIN_V6
            ),
        ));
    }
    let mac = plan::pod_mac(&nets, &env.container_id, &env.ifname);
    let mut record = Record {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        netns: env.netns.clone(),
        port: plan::port_name(&env.container_id, &env.ifname),
        attach: conf.attach,
        ips: nets.iter().map(IpNet::addr).collect(),
        mac: plan::mac_text(mac),
        routes: routes.clone(),
        mtu,
        creating: true,
        port_pending: false,
    };
    let cfg = IfConfig {
        mac: None,
        mtu,
        addrs: nets,
        routes: routes.clone(),
    };
    // The record first: an ADD cut short leaves what DEL and GC need.
    if let Err(e) = store.put(&record) {
        undo_ipam();
        return Err(e);
    }
    if let Err(e) = attach(&mut sw, &ns, env, &record, mac, cfg) {
        let _ = store.remove(&record.attachment());
        undo_ipam();
        return Err(e);
    }
    record.creating = false;
    if let Err(e) = store.put(&record) {
        detach(&mut sw, &record);
        let _ = store.remove(&record.attachment());
        undo_ipam();
        return Err(e);
    }

    // The result: what came before in the chain, then ours.
    let mut result = prev.unwrap_or_default();
    if conf.attach == Attach::Afxdp {
        result.interfaces.push(Interface {
            name: record.port.clone(),
            mac: link::host_mac(&record.port).map(plan::mac_text),
            sandbox: None,
            mtu: Some(mtu),
            extra: Default::default(),
        });
    }
    let sandbox = result.interfaces.len();
    result.interfaces.push(Interface {
        name: env.ifname.clone(),
        mac: Some(record.mac.clone()),
        sandbox: Some(env.netns.clone()),
        mtu: Some(mtu),
        extra: Default::default(),
    });
    for ip in &mut ips {
        ip.interface = Some(sandbox);
    }
    result.ips.extend(ips);
    result.routes.extend(routes);
    if result.dns == Default::default() {
        result.dns = leased.dns;
    }
    Ok(result.converted(&conf.cni_version))
}

/// The port and the pod's interface, in the order each attach mode needs;
/// on failure, what this call made is removed again (and nothing else: a
/// port or link of that name someone else made stays).
fn attach(
    sw: &mut Switch,
    ns: &File,
    env: &Env,
    r: &Record,
    mac: [u8; 6],
    mut cfg: IfConfig,
) -> Result<(), Error> {
    let spec = PortSpec {
        mac: Some(MacAddr(mac)),
        ips: r.ips.clone(),
        ..PortSpec::afxdp(&r.port)
    };
    match r.attach {
        // vswitchd creates the TAP in the pod, named and with the MAC.
        Attach::Tap => {
            sw.port_add(PortSpec {
                port_type: PortType::Tap,
                netns: Some(env.netns.clone()),
                ifname: Some(env.ifname.clone()),
                ..spec
            })?;
            link::configure(ns, &env.ifname, &cfg).inspect_err(|_| detach(sw, r))
        }
        // The veth first, so that the port attaches to a configured link.
        Attach::Afxdp => {
            let peer = plan::peer_name(&env.container_id, &env.ifname);
            link::create_veth(&r.port, &peer, ns, &env.ifname, cfg.mtu)?;
            cfg.mac = Some(mac);
            link::configure(ns, &env.ifname, &cfg)
                .and_then(|()| sw.port_add(spec))
                .inspect_err(|_| {
                    let _ = link::delete(None, &r.port);
                })
        }
    }
}

/// Undoes a whole [`attach`].
fn detach(sw: &mut Switch, r: &Record) {
    let _ = sw.port_del(&r.port);
    if r.attach == Attach::Afxdp {
        let _ = link::delete(None, &r.port);
    }
}
