//! What a restart could not apply: state-file entries that no longer
//! validate (a Service outside a narrower `--node-port-range`, an FDB
//! entry whose port was not restored, ...). They stay in the state file,
//! out of the model, listed by `show` and logged at start, until the user
//! replaces them (adding an entry with the same key) or deletes them (the
//! usual `del` command). The file never loses what it held.

use ctl::{MacAddr, PortSpec, RouteSpec, ServiceKey, ServiceSpec};
use ipnet::IpNet;

use crate::state::{State, StaticMac};

/// One entry of the state file that is not in use.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Port(PortSpec),
    Addr(IpNet),
    Route(RouteSpec),
    Service(ServiceSpec),
    Fdb(StaticMac),
}

/// The identity of an entry: a model entry with the same key replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Port(String),
    Addr(IpNet),
    Route(IpNet),
    Service(ServiceKey),
    Fdb(MacAddr),
}

impl Entry {
    pub fn key(&self) -> Key {
        match self {
            Entry::Port(p) => Key::Port(p.name.clone()),
            Entry::Addr(a) => Key::Addr(*a),
            Entry::Route(r) => Key::Route(r.prefix),
            Entry::Service(s) => Key::Service(s.service),
            Entry::Fdb(f) => Key::Fdb(f.mac),
        }
    }

    fn describe(&self) -> String {
        match self {
            Entry::Port(p) => format!("port '{}'", p.name),
            Entry::Addr(a) => format!("address {a}"),
            Entry::Route(r) => format!("route {}", r.prefix),
            Entry::Service(s) => format!("Service {}", s.service),
            Entry::Fdb(f) => format!("FDB entry {} → {}", f.mac, f.port),
        }
    }
}

/// The entries kept, with why each was not applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Kept {
    entries: Vec<(Entry, String)>,
}

impl Kept {
    /// Keeps `entry`, logging why it is not applied.
    pub fn keep(&mut self, entry: Entry, why: impl Into<String>) {
        let why = why.into();
        // A key the file repeats is kept once (the first, as restore reads it).
        if self.contains(&entry.key()) {
            tracing::error!("state file {} repeated: dropped", entry.describe());
            return;
        }
        tracing::error!(
            "state file {} not applied (kept in the file): {why}",
            entry.describe()
        );
        self.entries.push((entry, why));
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.entries.iter().any(|(e, _)| e.key() == *key)
    }

    /// Forgets the entry with `key` (a `del` of it), and with a port the
    /// FDB entries kept for it (as `port del` removes a port's entries);
    /// true if there was one.
    pub fn remove(&mut self, key: &Key) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(e, _)| match (e, key) {
            (Entry::Fdb(f), Key::Port(port)) => f.port != *port,
            _ => e.key() != *key,
        });
        self.entries.len() != before
    }

    /// Takes out the FDB entries kept for port `port` (applied once the
    /// port is added).
    pub fn take_fdb_of(&mut self, port: &str) -> Vec<StaticMac> {
        let mut out = Vec::new();
        self.entries.retain(|(e, _)| match e {
            Entry::Fdb(f) if f.port == port => {
                out.push(f.clone());
                false
            }
            _ => true,
        });
        out
    }

    /// Forgets the entries the model now has under the same key.
    pub fn prune(&mut self, in_model: impl Fn(&Key) -> bool) {
        self.entries.retain(|(e, _)| !in_model(&e.key()));
    }

    /// Adds the kept entries to a state about to be written, except those
    /// whose key the state already has (the model's entry wins).
    pub fn add_to(&self, st: &mut State) {
        let taken = |k: &Key| match k {
            Key::Port(n) => st.ports.iter().any(|p| p.name == *n),
            Key::Addr(a) => st.addrs.contains(a),
            Key::Route(p) => st.routes.iter().any(|r| r.prefix == *p),
            Key::Service(s) => st.services.iter().any(|x| x.service == *s),
            Key::Fdb(m) => st.fdb.iter().any(|f| f.mac == *m),
        };
        let missing: Vec<Entry> = self
            .entries
            .iter()
            .filter(|(e, _)| !taken(&e.key()))
            .map(|(e, _)| e.clone())
            .collect();
        for e in missing {
            match e {
                Entry::Port(p) => st.ports.push(p),
                Entry::Addr(a) => st.addrs.push(a),
                Entry::Route(r) => st.routes.push(r),
                Entry::Service(s) => st.services.push(s),
                Entry::Fdb(f) => st.fdb.push(f),
            }
        }
    }

    /// Lines for `show`: each entry not applied, and why.
    pub fn lines(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|(e, why)| format!("{}: {why}", e.describe()))
            .collect()
    }
}
