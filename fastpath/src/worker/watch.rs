//! A worker's watches (see [`crate::observe`]): copies of the frames crossing a
//! watched port, and traces of the packets arriving on it. A worker without
//! watches never enters this module.

use std::sync::Arc;

use super::Worker;
use crate::PortId;
use crate::observe::{self, Captured, Dir, Record, Traced, Watch, WatchKind};
use crate::pool::FramePool;
use crate::snapshot::Snapshot;

impl Worker {
    /// Starts feeding `watch` (the controller sends it to every worker).
    pub(super) fn add_watch(&mut self, watch: Arc<Watch>) {
        self.watches.retain(|t| t.id != watch.id);
        self.watches.push(watch);
    }

    /// Lets go of watches that want nothing more.
    pub(super) fn prune_watches(&mut self) {
        self.watches.retain(|t| t.active());
    }

    /// Before the pipeline, for a batch from `port`: copies for the
    /// captures of the port's received frames, and the packets its live
    /// traces want, as (batch index, watch index).
    pub(super) fn watch_rx(&mut self, port: PortId) -> Vec<(usize, usize)> {
        let mut marks = Vec::new();
        if !self.watches.iter().any(|t| t.port == port && t.rx) {
            return marks;
        }
        let frames = self.batch.pkts().iter().map(|p| (p.addr, p.len));
        capture(&self.watches, &self.pool, port, Dir::In, frames.clone());
        for (k, t) in self.watches.iter().enumerate() {
            if t.port != port || t.kind != WatchKind::Trace || !t.active() {
                continue;
            }
            for (i, (addr, len)) in frames.clone().enumerate() {
                if t.filter.matches(self.pool.data(addr, len)) && t.claim(0) {
                    marks.push((i, k));
                }
            }
        }
        marks
    }

    /// Runs the batch through the pipeline stage by stage, and gives each
    /// marked packet's trace to the watches that wanted it.
    pub(super) fn process_traced(&mut self, snap: &Snapshot, now: u64, marks: &[(usize, usize)]) {
        let mut idx: Vec<usize> = marks.iter().map(|m| m.0).collect();
        idx.sort_unstable();
        idx.dedup();
        let traces = self.with_ctx(snap, now, |batch, cx| observe::trace::run(batch, cx, &idx));
        let ts_ns = observe::wall_ns();
        for &(i, k) in marks {
            let Some(pos) = idx.iter().position(|&x| x == i) else {
                continue;
            };
            let (ingress, steps) = traces[pos].clone();
            self.watches[k].push(Record::Trace(Traced {
                ts_ns,
                worker: self.id,
                ingress,
                steps,
            }));
        }
    }
}

/// Copies of `frames` (address, length) crossing `port` in direction
/// `dir`, for every capture of them that still wants frames. A frame the
/// worker does not hold (a bug elsewhere, counted there) is not read.
pub(super) fn capture(
    watches: &[Arc<Watch>],
    pool: &FramePool,
    port: PortId,
    dir: Dir,
    frames: impl Iterator<Item = (u32, u32)> + Clone,
) {
    for w in watches {
        let WatchKind::Capture { snaplen } = w.kind else {
            continue;
        };
        let wants = match dir {
            Dir::In => w.rx,
            Dir::Out => w.tx,
        };
        if w.port != port || !wants {
            continue;
        }
        for (addr, len) in frames.clone() {
            if !w.active() {
                break;
            }
            if !pool.holds(addr) {
                continue;
            }
            let data = pool.data(addr, len);
            if !w.filter.matches(data) {
                continue;
            }
            let n = data.len().min(snaplen as usize);
            if w.claim(n) {
                w.push(Record::Frame(Captured {
                    ts_ns: observe::wall_ns(),
                    dir,
                    len,
                    data: data[..n].to_vec(),
                }));
            }
        }
    }
}
