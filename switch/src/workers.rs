//! Starting, addressing and stopping the poll-mode workers.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};
use fastpath::counters::WorkerCounters;
use fastpath::l2::fdb::LearnEvent;
use fastpath::pool::{BIG_FRAMES, FramePool, PoolView};
use fastpath::services::conntrack::Conntrack;
use fastpath::snapshot::SharedSnapshot;
use fastpath::worker::handoff::Mesh;
use fastpath::worker::{PollMode, Worker, WorkerCmd, WorkerEvent, WorkerParts, WorkerStatus};

/// Frames in each worker's pool (2 KiB each).
pub const POOL_FRAMES: u32 = 32 * 1024;
/// Depth of the learning channel shared by all workers.
pub const LEARN_QUEUE: usize = 4096;

/// The controller's handle on one worker.
pub struct WorkerHandle {
    pub core: usize,
    pub cmds: Sender<WorkerCmd>,
    pub status: Arc<WorkerStatus>,
    pub counters: Arc<WorkerCounters>,
    /// The worker's frame memory, which AF_XDP ports register as their UMEM;
    /// `Err` says why AF_XDP cannot be used.
    pub umem: Result<PoolView, String>,
    thread: Option<JoinHandle<Worker>>,
}

/// All workers and the channels they report on.
pub struct Workers {
    pub handles: Vec<WorkerHandle>,
    pub learn_rx: Receiver<LearnEvent>,
    pub events_rx: Receiver<WorkerEvent>,
}

impl Workers {
    /// Starts one worker per core, each pinned to its core.
    pub fn start(
        cores: &[usize],
        poll: PollMode,
        snapshot: &SharedSnapshot,
        conntrack: &Arc<Conntrack>,
    ) -> std::io::Result<Self> {
        let (learn_tx, learn_rx) = bounded(LEARN_QUEUE);
        let (events_tx, events_rx) = bounded(1024);
        let af_xdp = fastpath::sys::af_xdp_available();
        if let Err(e) = &af_xdp {
            tracing::warn!("{e}; AF_XDP ports cannot be added");
        }
        let pools: Vec<FramePool> = cores
            .iter()
            .map(|_| FramePool::with_big(POOL_FRAMES, BIG_FRAMES))
            .collect();
        let umems: Vec<Result<PoolView, String>> = pools
            .iter()
            .map(|p| af_xdp.clone().map(|()| p.umem()))
            .collect();
        let mesh = Arc::new(Mesh::new(pools.iter().map(FramePool::view).collect()));
        let mut handles = Vec::new();
        for (id, ((pool, umem), &core)) in pools.into_iter().zip(umems).zip(cores).enumerate() {
            let (cmd_tx, cmd_rx) = bounded(256);
            let status = Arc::new(WorkerStatus::default());
            let counters = Arc::new(WorkerCounters::new());
            let worker = Worker::new(WorkerParts {
                id,
                pool,
                snapshot: snapshot.clone(),
                counters: counters.clone(),
                status: status.clone(),
                learn_tx: learn_tx.clone(),
                cmds: cmd_rx,
                events: events_tx.clone(),
                mesh: mesh.clone(),
                poll,
                conntrack: conntrack.clone(),
            });
            let thread = std::thread::Builder::new()
                .name(format!("vswitch-w{id}"))
                .spawn(move || {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                        tracing::warn!(worker = id, core, "could not pin worker to its core");
                    }
                    worker.run()
                })?;
            handles.push(WorkerHandle {
                core,
                cmds: cmd_tx,
                status,
                counters,
                umem,
                thread: Some(thread),
            });
        }
        Ok(Workers {
            handles,
            learn_rx,
            events_rx,
        })
    }

    /// Stops every worker and waits for it. The workers (and their pools)
    /// are dropped only once all have stopped: until then a worker may still
    /// be copying a frame another worker handed it.
    pub fn stop(&mut self) {
        for h in &self.handles {
            let _ = h.cmds.send(WorkerCmd::Stop);
        }
        let mut stopped = Vec::new();
        for h in &mut self.handles {
            if let Some(t) = h.thread.take() {
                match t.join() {
                    Ok(worker) => stopped.push(worker),
                    Err(_) => tracing::error!(core = h.core, "a worker panicked"),
                }
            }
        }
        drop(stopped);
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Parses a core list such as `1,3` or `0-2,5`.
pub fn parse_cores(s: &str) -> Result<Vec<usize>, String> {
    let mut cores = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad =
            || format!("invalid core list '{s}': expected numbers and ranges such as 1,3 or 0-2");
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<usize>().map_err(|_| bad())?,
                b.trim().parse::<usize>().map_err(|_| bad())?,
            ),
            None => {
                let c = part.parse::<usize>().map_err(|_| bad())?;
                (c, c)
            }
        };
        if a > b {
            return Err(bad());
        }
        for c in a..=b {
            if cores.contains(&c) {
                return Err(format!("core {c} is listed twice in '{s}'"));
            }
            cores.push(c);
        }
    }
    if cores.is_empty() {
        return Err(format!("invalid core list '{s}': no cores"));
    }
    Ok(cores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_lists() {
        assert_eq!(parse_cores("1,3").unwrap(), vec![1, 3]);
        assert_eq!(parse_cores("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        assert!(parse_cores("").is_err());
        assert!(parse_cores("1,1").is_err());
        assert!(parse_cores("3-1").is_err());
        assert!(parse_cores("x").is_err());
    }
}
