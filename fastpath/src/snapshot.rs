//! The immutable configuration view that workers forward with.
//!
//! The controller builds a new [`Snapshot`] for every change and publishes it
//! with [`arc_swap::ArcSwap`]. A worker loads it once per batch: a batch sees
//! one version, never a mix, and a worker never waits for the controller.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::PortId;
use crate::fdb::FdbView;

/// A port as the data plane sees it.
#[derive(Debug, Clone)]
pub struct PortEntry {
    pub id: PortId,
    /// Index of the worker that owns (polls and transmits on) the port.
    pub worker: usize,
    /// False while the interface is gone or failed; frames to it are dropped.
    pub up: bool,
    /// The port has reached its learned-MAC limit: frames from new source
    /// MACs are dropped.
    pub learn_full: bool,
}

/// Everything a worker needs to forward, as of one configuration version.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub generation: u64,
    /// Indexed by port id.
    pub ports: Vec<Option<PortEntry>>,
    /// Ports that are up, in id order: flood targets.
    pub flood: Vec<PortId>,
    pub fdb: FdbView,
}

impl Snapshot {
    /// The entry of port `id`, if it exists.
    #[inline]
    pub fn port(&self, id: PortId) -> Option<&PortEntry> {
        self.ports.get(usize::from(id)).and_then(Option::as_ref)
    }

    /// Builds a snapshot from port entries (any order) and an FDB view.
    pub fn build(generation: u64, entries: Vec<PortEntry>, fdb: FdbView) -> Self {
        let size = entries
            .iter()
            .map(|e| usize::from(e.id) + 1)
            .max()
            .unwrap_or(0);
        let mut ports = vec![None; size];
        for e in entries {
            let id = usize::from(e.id);
            ports[id] = Some(e);
        }
        let flood = ports
            .iter()
            .flatten()
            .filter(|p| p.up)
            .map(|p| p.id)
            .collect();
        Snapshot {
            generation,
            ports,
            flood,
            fdb,
        }
    }
}

/// Where the controller publishes and workers load snapshots.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

/// A new shared handle holding an empty snapshot.
pub fn shared(snapshot: Snapshot) -> SharedSnapshot {
    Arc::new(ArcSwap::from_pointee(snapshot))
}
