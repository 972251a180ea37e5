//! MAC learning.
//!
//! A source MAC that the published FDB already places on the ingress port
//! Only refreshes its timestamp. Otherwise the worker reports it to the
//! controller (which owns the table), unless the ingress port is at its
//! learned-MAC limit, in which case the frame is dropped as `mac_limit`.
//! MACs held by static entries are never re-learned. Nothing is learned on
//! routed ports (uplink, host port): they are not part of the bridge.

use crate::batch::{Batch, Verdict};
use crate::ctx::Ctx;
use crate::drop::DropReason;
use crate::l2::fdb::LearnEvent;
use crate::snapshot::PortRole;

/// Learns from every live frame of the batch.
#[inline]
pub fn run(batch: &mut Batch, cx: &mut Ctx<'_>) {
    let (snap, now) = (cx.snap, cx.now);
    for p in batch.pkts_mut() {
        if !p.alive() {
            continue;
        }
        match snap.fdb.get(p.src) {
            Some(slot) if slot.port == p.in_port => {
                if !slot.is_static {
                    slot.touch(now);
                }
            }
            Some(slot) if slot.is_static => {}
            _ => {
                // A port not yet in the snapshot is not full; the controller
                // ignores reports about ports it does not know. Routed ports
                // (uplink, host) are not part of the bridge: nothing to learn.
                let entry = snap.port(p.in_port);
                if entry.is_some_and(|e| e.role != PortRole::Pod) {
                    continue;
                }
                let full = entry.is_some_and(|e| e.learn_full);
                if full {
                    p.verdict = Verdict::Drop(DropReason::MacLimit);
                } else {
                    cx.learner.report(
                        LearnEvent {
                            mac: p.src,
                            port: p.in_port,
                        },
                        now,
                    );
                }
            }
        }
    }
}
