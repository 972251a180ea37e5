//! Stage 3: L2 forwarding decision.
//!
//! Group destinations (broadcast, multicast) and unknown unicast flood; a
//! known destination goes to its port, unless that is the ingress port
//! (`same_port`) or the port is down (`port_down`). A flood with nowhere to
//! go is `no_destination`.

use crate::batch::{Batch, Verdict};
use crate::drop::DropReason;
use crate::snapshot::Snapshot;
use crate::stage::parse::GROUP_BIT;

/// Decides where every live frame of the batch goes.
#[inline]
pub fn run(batch: &mut Batch, snap: &Snapshot) {
    for p in batch.pkts_mut() {
        if !p.alive() {
            continue;
        }
        let known = if p.dst & GROUP_BIT == 0 {
            snap.fdb.get(p.dst)
        } else {
            None
        };
        p.verdict = match known {
            Some(slot) if slot.port == p.in_port => Verdict::Drop(DropReason::SamePort),
            Some(slot) => match snap.port(slot.port) {
                Some(e) if e.up => Verdict::Unicast(slot.port),
                _ => Verdict::Drop(DropReason::PortDown),
            },
            None if snap.flood.iter().any(|&id| id != p.in_port) => Verdict::Flood,
            None => Verdict::Drop(DropReason::NoDestination),
        };
    }
}
