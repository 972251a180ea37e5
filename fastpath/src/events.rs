//! What workers report to the controller, over a bounded channel.

use crate::PortId;
use crate::l3::neigh::NeighEvent;

/// Reports to the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEvent {
    /// A port's interface disappeared or failed; the worker stopped polling it.
    PortGone { id: PortId, reason: String },
    /// ARP or ND said where a neighbour is (see [`crate::l3::neigh`]).
    Neighbour(NeighEvent),
}
