//! The model: the switch's whole configuration, as the state file holds
//! it (ports, static FDB entries, the router's addresses and routes,
//! Services, and the entries a restart kept but could not apply).
//!
//! [`Model::apply`] is pure: it checks one command against a copy of the
//! model and returns the model the command asks for, or why it is refused.
//! It opens nothing, writes nothing and asks the kernel nothing beyond
//! what [`Facts`] says. The controller then writes the state file, opens
//! new ports (the effects that can refuse a command) and only then commits
//! the new model; what follows the commit (kernel routes, the uplink's
//! maps, closing removed ports) cannot refuse it (`controller/mod.rs`).
//!
//! Each part checks its own entries: `ports` (port specs), `router`
//! (addresses and static routes), `services` (Service specs), the FDB here.
//! Errors are typed per part; their messages are what users see.

mod kept;
pub mod ports;
pub mod router;
pub mod services;

use std::collections::BTreeMap;
use std::net::IpAddr;

use ctl::{Command, MacAddr, PortSpec, ServiceKey, ServiceSpec};
use ipnet::IpNet;

pub use kept::{Entry as KeptEntry, Kept, Key as KeptKey};
pub use ports::PortError;
pub use router::{PortView, RouteError, RouterModel};
pub use services::ServiceError;

use crate::state::{self, State, StaticMac};

/// A request that cannot be carried out; the message is shown to the user.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl From<PortError> for Refused {
    fn from(e: PortError) -> Self {
        Refused(e.to_string())
    }
}

impl From<RouteError> for Refused {
    fn from(e: RouteError) -> Self {
        Refused(e.to_string())
    }
}

impl From<ServiceError> for Refused {
    fn from(e: ServiceError) -> Self {
        Refused(e.to_string())
    }
}

impl From<FdbError> for Refused {
    fn from(e: FdbError) -> Self {
        Refused(e.to_string())
    }
}

/// Why a static FDB request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FdbError {
    #[error("MAC {0} is not a unicast address")]
    NotUnicast(MacAddr),
    #[error("port '{0}' does not exist")]
    NoSuchPort(String),
    #[error("no FDB entry for {0}")]
    NoEntry(MacAddr),
}

/// What the checks need that the configuration does not say: the ports'
/// interfaces as the controller last saw them, the table built from the
/// model, and the daemon's settings.
pub struct Facts {
    /// Every configured port, with what its interface told the controller.
    pub views: Vec<PortView>,
    /// Prefixes of the built route table (addresses and ports make some).
    pub built: Vec<IpNet>,
    /// The NodePorts Services may use (`--node-port-range`).
    pub node_ports: (u16, u16),
}

/// See the module documentation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Model {
    pub ports: BTreeMap<String, PortSpec>,
    /// Static MAC → port.
    pub fdb: BTreeMap<MacAddr, String>,
    pub router: RouterModel,
    pub services: BTreeMap<ServiceKey, ServiceSpec>,
    /// State-file entries a restart could not apply, kept in the file.
    pub kept: Kept,
}

/// Whether a command changes the model (the others read, or change only
/// learned state: learned MACs, conntrack).
pub fn changes_model(cmd: &Command, model: &Model) -> bool {
    match cmd {
        Command::PortAdd(_)
        | Command::PortDel { .. }
        | Command::FdbAdd { .. }
        | Command::AddrAdd { .. }
        | Command::AddrDel { .. }
        | Command::RouteAdd(_)
        | Command::RouteDel { .. }
        | Command::ServiceAdd(_)
        | Command::ServiceBackends { .. }
        | Command::ServiceDel { .. }
        | Command::Batch { .. } => true,
        // A learned entry is not configuration.
        Command::FdbDel { mac } => {
            model.fdb.contains_key(mac) || model.kept.contains(&KeptKey::Fdb(*mac))
        }
        _ => false,
    }
}

impl Model {
    /// The model `cmd` asks for, checked; `self` is left as it is.
    pub fn apply(&self, cmd: &Command, facts: &Facts) -> Result<Model, Refused> {
        let mut next = self.clone();
        match cmd {
            Command::Batch { commands } => {
                for (i, c) in commands.iter().enumerate() {
                    let r = match c {
                        Command::ServiceAdd(_)
                        | Command::ServiceBackends { .. }
                        | Command::ServiceDel { .. } => next.apply_one(c, facts),
                        other => Err(Refused(format!(
                            "'{}' cannot be part of a batch (only service add, backends, del)",
                            op_name(other)
                        ))),
                    };
                    if let Err(e) = r {
                        return Err(Refused(format!(
                            "batch command {}: {e}; nothing applied",
                            i + 1
                        )));
                    }
                }
            }
            c => next.apply_one(c, facts)?,
        }
        // Kept entries the model now has under the same key are replaced.
        let mut kept = std::mem::take(&mut next.kept);
        kept.prune(|k| next.has(k));
        next.kept = kept;
        Ok(next)
    }

    fn apply_one(&mut self, cmd: &Command, facts: &Facts) -> Result<(), Refused> {
        // A delete of an entry the model does not have but the state file
        // kept deletes it there.
        if let Some(key) = deleted_key(cmd)
            && !self.has(&key)
            && self.kept.remove(&key)
        {
            return Ok(());
        }
        let views = &facts.views;
        match cmd {
            Command::PortAdd(spec) => self.add_port(spec, views)?,
            Command::PortDel { name, if_exists } => self.del_port(name, *if_exists)?,
            Command::FdbAdd { mac, port } => self.add_fdb(*mac, port)?,
            Command::FdbDel { mac } => {
                self.fdb.remove(mac).ok_or(FdbError::NoEntry(*mac))?;
            }
            Command::AddrAdd {
                addr,
                may_exist,
                owner,
            } => {
                self.router
                    .add_addr(*addr, *may_exist, owner.as_deref(), views)?;
            }
            Command::AddrDel { addr, if_exists } => {
                self.router.del_addr(*addr, *if_exists, views)?;
            }
            Command::RouteAdd(spec) => self.router.add_route(spec, views)?,
            Command::RouteDel { prefix, if_exists } => {
                let derived = facts.built.contains(prefix);
                self.router.del_route(*prefix, *if_exists, derived)?;
            }
            Command::ServiceAdd(spec) => {
                let addrs: Vec<IpAddr> = self.router.addrs.iter().map(IpNet::addr).collect();
                services::add(&mut self.services, spec, &addrs, facts.node_ports)?;
            }
            Command::ServiceBackends {
                service,
                backends,
                terminating,
            } => services::set_backends(&mut self.services, *service, backends, terminating)?,
            Command::ServiceDel { service, if_exists } => {
                services::del(&mut self.services, *service, *if_exists)?;
            }
            other => {
                return Err(Refused(format!(
                    "'{}' does not change the configuration",
                    op_name(other)
                )));
            }
        }
        Ok(())
    }

    fn add_port(&mut self, spec: &PortSpec, views: &[PortView]) -> Result<(), PortError> {
        let mut spec = spec.clone();
        let may_exist = std::mem::take(&mut spec.may_exist);
        if let Some(old) = self.ports.get(&spec.name)
            && may_exist
        {
            return if *old == spec {
                Ok(())
            } else {
                let diff = ports::differences(old, &spec);
                Err(PortError::ExistsOtherwise(spec.name, diff))
            };
        }
        ports::check(&self.ports, &self.router, &spec, views)?;
        let name = spec.name.clone();
        self.ports.insert(name.clone(), spec);
        // FDB entries a restart kept because this port was missing apply now.
        for f in self.kept.take_fdb_of(&name) {
            if self.fdb.contains_key(&f.mac) {
                continue; // the model's entry won meanwhile
            }
            if let Err(e) = check_unicast(f.mac) {
                self.kept.keep(KeptEntry::Fdb(f), e.to_string());
                continue;
            }
            self.fdb.insert(f.mac, f.port);
        }
        Ok(())
    }

    fn del_port(&mut self, name: &str, if_exists: bool) -> Result<(), PortError> {
        if !self.ports.contains_key(name) {
            return if if_exists {
                Ok(())
            } else {
                Err(PortError::NoSuchPort(name.to_string()))
            };
        }
        if let Some(r) = self
            .router
            .routes
            .values()
            .find(|r| r.dev.as_deref() == Some(name))
        {
            return Err(PortError::RouteUsesPort(r.prefix, name.to_string()));
        }
        self.ports.remove(name);
        // A port's static entries go with it.
        self.fdb.retain(|_, p| p != name);
        Ok(())
    }

    fn add_fdb(&mut self, mac: MacAddr, port: &str) -> Result<(), FdbError> {
        check_unicast(mac)?;
        if !self.ports.contains_key(port) {
            return Err(FdbError::NoSuchPort(port.to_string()));
        }
        self.fdb.insert(mac, port.to_string());
        Ok(())
    }

    /// Whether the model has an entry under `key`.
    pub fn has(&self, key: &KeptKey) -> bool {
        match key {
            KeptKey::Port(n) => self.ports.contains_key(n),
            KeptKey::Addr(a) => self.router.addrs.contains(a),
            KeptKey::Route(p) => self.router.routes.contains_key(p),
            KeptKey::Service(s) => self.services.contains_key(s),
            KeptKey::Fdb(m) => self.fdb.contains_key(m),
        }
    }

    /// The state file's form of the model, kept entries included.
    pub fn state(&self, router_mac: MacAddr) -> State {
        let mut st = State {
            version: state::STATE_VERSION,
            ports: self.ports.values().cloned().collect(),
            fdb: self
                .fdb
                .iter()
                .map(|(mac, port)| StaticMac {
                    mac: *mac,
                    port: port.clone(),
                })
                .collect(),
            router_mac: Some(router_mac),
            addrs: self.router.addrs.iter().copied().collect(),
            addr_owners: self.router.addr_owners.clone(),
            routes: self.router.routes.values().cloned().collect(),
            services: self.services.values().cloned().collect(),
        };
        self.kept.add_to(&mut st);
        st
    }
}

fn check_unicast(mac: MacAddr) -> Result<(), FdbError> {
    if mac.is_multicast() || mac.is_zero() {
        return Err(FdbError::NotUnicast(mac));
    }
    Ok(())
}

/// The key of the entry a delete command names.
fn deleted_key(cmd: &Command) -> Option<KeptKey> {
    Some(match cmd {
        Command::PortDel { name, .. } => KeptKey::Port(name.clone()),
        Command::AddrDel { addr, .. } => KeptKey::Addr(*addr),
        Command::RouteDel { prefix, .. } => KeptKey::Route(*prefix),
        Command::FdbDel { mac } => KeptKey::Fdb(*mac),
        Command::ServiceDel { service, .. } => KeptKey::Service(*service),
        _ => return None,
    })
}

/// The command's name as the protocol spells it.
fn op_name(c: &Command) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.get("op").and_then(|o| o.as_str().map(str::to_string)))
        .unwrap_or_else(|| "?".into())
}
