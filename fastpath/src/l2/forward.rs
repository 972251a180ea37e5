//! L2 forwarding decision.
//!
//! Group destinations (broadcast, multicast) and unknown unicast flood; a
//! Known destination goes to its port, unless that is the ingress port
//! (`same_port`; routed packets excepted) or the port is down (`port_down`). A flood with nowhere to
//! go is `no_destination`. IEEE 802.1D link-local destinations
//! (01:80:c2:00:00:00 to :0f: STP, LACP, LLDP, pause) are never forwarded
//! (`link_local`), as a Linux or Open vSwitch bridge does by default.

use crate::batch::{Batch, Verdict};
use crate::ctx::Ctx;
use crate::drop::DropReason;
use crate::wire::GROUP_BIT;

/// 01:80:c2:00:00:00, the first of the 16 reserved link-local addresses.
const LINK_LOCAL_PREFIX: u64 = 0x0180_c200_0000;
const LINK_LOCAL_MASK: u64 = 0xf;

/// Decides where every live frame of the batch goes.
#[inline]
pub fn run(batch: &mut Batch, cx: &mut Ctx<'_>) {
    let snap = cx.snap;
    for p in batch.pkts_mut() {
        // Frames the router already sent somewhere keep their verdict.
        if !p.pending() {
            continue;
        }
        if p.dst & !LINK_LOCAL_MASK == LINK_LOCAL_PREFIX {
            p.verdict = Verdict::Drop(DropReason::LinkLocal);
            continue;
        }
        let known = if p.dst & GROUP_BIT == 0 {
            snap.fdb.get(p.dst)
        } else {
            None
        };
        p.verdict = match known {
            // A routed packet may go back out the port it came in on (a
            // pod reaching itself through its Service, hairpin).
            Some(slot) if slot.port == p.in_port && p.src != snap.l3.router_mac => {
                Verdict::Drop(DropReason::SamePort)
            }
            Some(slot) => match snap.port(slot.port) {
                Some(e) if e.up => Verdict::Unicast(slot.port),
                _ => Verdict::Drop(DropReason::PortDown),
            },
            None if snap.flood.iter().any(|&id| id != p.in_port) => Verdict::Flood,
            None => Verdict::Drop(DropReason::NoDestination),
        };
    }
}
