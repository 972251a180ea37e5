//! MAC learning.
//!
//! A source MAC that the published FDB already places on the ingress port
//! Only refreshes its timestamp. Otherwise the worker reports it to the
//! controller (which owns the table), unless the ingress port is at its
//! learned-MAC limit, in which case the frame is dropped as `mac_limit`.
//! MACs held by static entries are never re-learned. Nothing is learned on
//! routed ports (uplink, host port): they are not part of the bridge.

use crossbeam_channel::Sender;

use crate::batch::{Batch, Verdict};
use crate::drop::DropReason;
use crate::fdb::LearnEvent;
use crate::snapshot::{PortRole, Snapshot};

const CACHE_SLOTS: usize = 256;
/// A report for the same MAC and port is not repeated within this time.
const REPORT_HOLDOFF_MS: u64 = 50;

/// A worker's learning state: the channel to the controller and a small
/// cache that stops one new MAC from producing a report per frame while the
/// controller has not yet published it.
pub struct Learner {
    tx: Sender<LearnEvent>,
    recent: Box<[(u64, u16, u64); CACHE_SLOTS]>,
    /// Reports lost because the channel was full (they are retried by later frames).
    pub overflows: u64,
}

impl Learner {
    pub fn new(tx: Sender<LearnEvent>) -> Self {
        Learner {
            tx,
            recent: Box::new([(u64::MAX, 0, 0); CACHE_SLOTS]),
            overflows: 0,
        }
    }

    #[inline]
    fn report(&mut self, ev: LearnEvent, now: u64) {
        let slot = &mut self.recent[(ev.mac as usize ^ (ev.mac >> 8) as usize) % CACHE_SLOTS];
        if slot.0 == ev.mac && slot.1 == ev.port && now.saturating_sub(slot.2) < REPORT_HOLDOFF_MS {
            return;
        }
        if self.tx.try_send(ev).is_err() {
            self.overflows += 1;
            return;
        }
        *slot = (ev.mac, ev.port, now);
    }
}

/// Learns from every live frame of the batch.
#[inline]
pub fn run(batch: &mut Batch, snap: &Snapshot, learner: &mut Learner, now: u64) {
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
                    learner.report(
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
