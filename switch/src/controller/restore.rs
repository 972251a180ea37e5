//! Start-up: the configuration of the state file, entry by entry, through
//! the model's checks, as if each were added now (static routes: their
//! shape only, since their next hops may be reachable only once the
//! node's addresses are back; the routing table is built from what is
//! reachable at each publish).

use std::collections::BTreeSet;

use ctl::{Command, MacAddr};
use fastpath::mac_key;

use super::Controller;
use super::ports::Opened;
use crate::model::KeptEntry;
use crate::state::State;

impl Controller {
    /// Recreates the configuration of a state file: each entry is checked
    /// by the model as if it were added now (routes: their shape only). Entries that no longer pass
    /// stay in the file, unused (see `model::Kept`); ports that cannot be
    /// opened now (their interface is missing) are kept, down, with the
    /// reason. `recovered` says how a bad file was replaced, if it was.
    pub fn restore(&mut self, st: State, recovered: Option<String>) {
        self.recovered = recovered;
        if self.settings.router_mac.is_none()
            && let Some(mac) = st.router_mac
        {
            self.router_mac = mac;
        }
        for addr in st.addrs {
            let cmd = Command::AddrAdd {
                owner: st.addr_owners.get(&addr).cloned(),
                addr,
                may_exist: false,
            };
            self.restore_entry(&cmd, || KeptEntry::Addr(addr));
        }
        for spec in st.ports {
            let cmd = Command::PortAdd(spec.clone());
            if !self.restore_entry(&cmd, || KeptEntry::Port(spec.clone())) {
                continue;
            }
            match self.open_restored(&spec) {
                Ok(Opened { rec, queues }) => self.insert_port(rec, queues),
                Err(e) => {
                    self.model.ports.remove(&spec.name);
                    self.model.kept.keep(KeptEntry::Port(spec), e.to_string());
                }
            }
        }
        for r in st.routes {
            if let Err(e) = self.model.router.restore_route(r.clone()) {
                self.model.kept.keep(KeptEntry::Route(r), e.to_string());
            }
        }
        for spec in st.services {
            let cmd = Command::ServiceAdd(spec.clone());
            self.restore_entry(&cmd, || KeptEntry::Service(spec.clone()));
        }
        for f in st.fdb {
            let cmd = Command::FdbAdd {
                mac: f.mac,
                port: f.port.clone(),
            };
            self.restore_entry(&cmd, || KeptEntry::Fdb(f.clone()));
        }
        let fdb: Vec<(MacAddr, String)> = self
            .model
            .fdb
            .iter()
            .map(|(m, p)| (*m, p.clone()))
            .collect();
        for (mac, port) in fdb {
            if let Some(rec) = self.ports.get(&port) {
                self.macs.add_static(mac_key(&mac.0), rec.id);
            }
        }
        let all: BTreeSet<_> = self.model.services.keys().copied().collect();
        self.rebuild_services(&all);
        self.l3_dirty = true;
        // Keep the router MAC chosen now; written once everything is
        // restored, with what was not applied, so the file never loses
        // what it held.
        match self.persist(&self.model) {
            Ok(()) => crate::state::settle(&self.settings.state),
            Err(e) => tracing::warn!("{e}"),
        }
        self.publish();
    }

    /// Applies one entry of the state file to the model; an entry the
    /// model refuses is kept (`entry`). True if it was applied.
    fn restore_entry(&mut self, cmd: &Command, entry: impl FnOnce() -> KeptEntry) -> bool {
        match self.model.apply(cmd, &self.facts()) {
            Ok(next) => {
                self.model = next;
                true
            }
            Err(e) => {
                self.model.kept.keep(entry(), e.0);
                false
            }
        }
    }
}
