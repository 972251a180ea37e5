//! CHECK (the attachment is as ADD left it) and STATUS (vswitchd answers).

use std::net::IpAddr;

use ipnet::IpNet;

use crate::env::{Env, Verb};
use crate::spec::{Attachment, CniResult, Error, NetConf, code};
use crate::store::Store;
use crate::switch::Switch;
use crate::{ipam, link};

fn failed(msg: String) -> Error {
    Error::new(code::CHECK_FAILED, msg)
}

/// CHECK: IPAM's own check, then the record, vswitchd's port (with the
/// pod's addresses) and the pod's interface (up, with the result's MAC,
/// MTU, addresses and routes).
pub fn check(conf: &NetConf, raw: &[u8], env: &Env) -> Result<(), Error> {
    conf.require("0.4.0", "CHECK")?;
    let Some(prev) = &conf.prev_result else {
        return Err(Error::new(
            code::INVALID_CONFIG,
            "CHECK needs prevResult: the result of ADD",
        ));
    };
    let prev = CniResult::from_value(prev)?;
    if let Some(plugin) = conf.ipam_plugin() {
        ipam::delegate(plugin, Verb::Check, env, raw)?;
    }
    let store = Store::open(&conf.data_dir(), &conf.name)?;
    let key = Attachment {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
    };
    let Some(record) = store.get(&key)? else {
        return Err(failed(format!(
            "no attachment of container {} as {} on network {}",
            env.container_id, env.ifname, conf.name
        )));
    };
    let mut sw = Switch::connect(&conf.socket())?;
    let ports = sw.ports()?;
    let Some(port) = ports.iter().find(|p| p.name == record.port) else {
        return Err(failed(format!("vswitchd has no port {}", record.port)));
    };
    let mut want: Vec<IpAddr> = record.ips.clone();
    let mut have = port.ips.clone();
    want.sort();
    have.sort();
    if want != have {
        return Err(failed(format!(
            "port {} declares {have:?}, the attachment {want:?}",
            record.port
        )));
    }

    let ns = link::open_netns(&env.netns)?;
    let Some(st) = link::inspect(&ns, &env.ifname)? else {
        return Err(failed(format!("the pod has no interface {}", env.ifname)));
    };
    if !st.up {
        return Err(failed(format!("{} is down", env.ifname)));
    }
    let Some(index) = prev
        .interfaces
        .iter()
        .position(|i| i.name == env.ifname && i.sandbox.is_some())
    else {
        return Err(failed(format!(
            "prevResult lists no interface {} in a sandbox",
            env.ifname
        )));
    };
    let iface = &prev.interfaces[index];
    let mac = st.mac.map(crate::plan::mac_text);
    if iface.mac.is_some() && iface.mac != mac {
        return Err(failed(format!(
            "{} has MAC {mac:?}, the result says {:?}",
            env.ifname, iface.mac
        )));
    }
    // The result's MTU (from 1.1.0), else the one ADD gave.
    if let Some(mtu) = iface.mtu.or((record.mtu != 0).then_some(record.mtu))
        && mtu != st.mtu
    {
        return Err(failed(format!(
            "{} has MTU {}, the result says {mtu}",
            env.ifname, st.mtu
        )));
    }
    for ip in prev.ips.iter().filter(|ip| ip.interface == Some(index)) {
        if !st.addrs.contains(&ip.address) {
            return Err(failed(format!(
                "{} lacks the address {}",
                env.ifname, ip.address
            )));
        }
    }
    // The routes this plugin gave the pod (others in prevResult belong to
    // other plugins of the chain, through other interfaces).
    for r in &record.routes {
        let through: Vec<&IpNet> = st
            .routes
            .iter()
            .filter(|have| have.dst == r.dst && (r.gw.is_none() || have.gw == r.gw))
            .map(|have| &have.dst)
            .collect();
        if through.is_empty() {
            return Err(failed(format!(
                "{} lacks the route to {}{}",
                env.ifname,
                r.dst,
                r.gw.map(|g| format!(" via {g}")).unwrap_or_default()
            )));
        }
    }
    Ok(())
}

/// STATUS: ready while vswitchd answers (50 while it does not) and the
/// IPAM plugin says it is ready (when it speaks STATUS: 1.1.0).
pub fn status(conf: &NetConf, raw: &[u8], env: &Env) -> Result<(), Error> {
    conf.require("1.1.0", "STATUS")?;
    Switch::connect(&conf.socket())
        .and_then(|mut sw| sw.alive())
        .map_err(|e| {
            Error::new(
                code::NOT_AVAILABLE,
                "vswitchd is not available: pods cannot be attached",
            )
            .with_details(e.msg)
        })?;
    if let Some(plugin) = conf.ipam_plugin() {
        ipam::delegate(plugin, Verb::Status, env, raw)?;
    }
    Ok(())
}
