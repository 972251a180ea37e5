//! Ports' lifecycle: opening a port the model added (an uplink with its XDP
//! program) and closing one it removed, and noticing interfaces that go
//! away and come back (retire, revive with back-off). The checks a port
//! must pass are the model's (`model/ports.rs`).

use std::time::{Duration, Instant};

use ctl::{PortSpec, PortType, XdpMode};
use fastpath::port::afxdp::{AfXdpPort, AttachMode};
use fastpath::port::tap::TapPort;
use fastpath::port::uplink::{UplinkAttach, UplinkProgram};
use fastpath::port::{Port, PortMode};
use fastpath::worker::WorkerCmd;
use fastpath::{PortId, sys};

use super::drops::TapDrops;
use super::kernel::port_facts;
use super::{Controller, DEL_TIMEOUT, HOUSEKEEPING, MAX_RETRY_BACKOFF, PortRecord};
use crate::model::PortError;
use crate::model::ports::tap_ifname;

impl Controller {
    /// Marks ports down whose interface or namespace has gone away.
    pub(super) fn check_interfaces(&mut self) -> bool {
        let mut retired = Vec::new();
        for rec in self.ports.values_mut().filter(|r| r.up) {
            let why = match (&rec.spec.port_type, &rec.spec.netns) {
                (PortType::Afxdp, _) if sys::if_index(&rec.spec.name) != rec.ifindex => {
                    format!("interface '{}' disappeared", rec.spec.name)
                }
                // A TAP keeps its namespace alive, so the namespace is gone
                // for users once its name (or its process) is gone.
                (PortType::Tap, Some(ns)) if !sys::netns_path(ns).exists() => {
                    format!("network namespace '{ns}' disappeared")
                }
                _ => continue,
            };
            tracing::warn!(port = %rec.spec.name, "port down: {why}");
            rec.up = false;
            rec.error = Some(why);
            retired.push(rec.id);
        }
        for id in &retired {
            self.retire(*id);
        }
        !retired.is_empty()
    }

    /// Has the owning workers close a port that went down (every queue of
    /// it), releasing its buffers and (for a TAP) the namespace it pins.
    /// The port stays configured, down, until `port del`.
    pub(super) fn retire(&mut self, id: PortId) {
        let Some(rec) = self.record_by_id(id) else {
            return;
        };
        // The sockets' kernel drops, read while the sockets are still
        // open: the port's next sockets count from zero again.
        if let Some(k) = xsk_statistics(&rec.xsk_fds) {
            rec.xsk_drops[0] += k[0];
            rec.xsk_drops[1] += k[3];
        }
        // The TAP's last count, while its namespace may still be there.
        rec.tap_drops.update(tap_tx_dropped(&rec.spec));
        // The workers close the sockets: the descriptors are no longer
        // ours to read.
        rec.xsk_fds.clear();
        let workers = distinct(&rec.workers);
        for worker in workers {
            let (done, _) = crossbeam_channel::bounded(1);
            // A blocking send: the worker must stop using the port; the
            // channel only fills up if the worker is stuck.
            let _ = self.workers.handles[worker].cmds.send(WorkerCmd::DelPort {
                id,
                done,
                remove: false,
            });
        }
        self.macs.remove_learned_on(id);
        if self.neigh.remove_port(id) > 0 {
            self.neigh_view = self.neigh.view();
        }
    }

    /// Re-attaches down ports whose interface (or namespace) is back, as a
    /// bridge does when a link comes back.
    pub(super) fn revive_ports(&mut self) -> bool {
        let candidates: Vec<String> = self
            .ports
            .values()
            .filter(|r| !r.up && r.retry_at <= Instant::now())
            .filter(|r| match (&r.spec.port_type, &r.spec.netns) {
                (PortType::Afxdp, _) => sys::if_index(&r.spec.name).is_some(),
                (PortType::Tap, Some(ns)) => sys::netns_path(ns).exists(),
                (PortType::Tap, None) => true,
            })
            .map(|r| r.spec.name.clone())
            .collect();
        let mut changed = false;
        for name in candidates {
            let Some(rec) = self.ports.get(&name) else {
                continue;
            };
            let (spec, id, workers) = (rec.spec.clone(), rec.id, rec.workers.clone());
            match self.open_port(&spec, id, &workers) {
                Ok((queues, ifindex)) => {
                    tracing::info!(port = %name, "port back up");
                    if let Some(rec) = self.ports.get_mut(&name) {
                        rec.up = true;
                        rec.error = None;
                        rec.mode = mode_of(&queues);
                        rec.ifindex = ifindex;
                        rec.xsk_fds = queues.iter().filter_map(|q| q.xsk_fd()).collect();
                        rec.tap_drops.reopened(tap_tx_dropped(&rec.spec));
                        rec.retry_backoff = Duration::ZERO;
                        rec.facts = port_facts(&rec.spec);
                    }
                    self.l3_dirty = true;
                    self.queue_adds(id, &workers, queues);
                    changed = true;
                }
                Err(e) => {
                    if let Some(rec) = self.ports.get_mut(&name) {
                        // Back off so that a port that keeps failing does
                        // not keep the control loop busy.
                        rec.retry_backoff =
                            (rec.retry_backoff * 2).clamp(HOUSEKEEPING, MAX_RETRY_BACKOFF);
                        rec.retry_at = Instant::now() + rec.retry_backoff;
                        rec.error = Some(e.to_string());
                    }
                }
            }
        }
        changed
    }

    pub(super) fn record_by_id(&mut self, id: PortId) -> Option<&mut PortRecord> {
        let name = self.ids.get(usize::from(id))?.as_ref()?;
        self.ports.get_mut(name)
    }

    pub(super) fn free_id(&self) -> Option<PortId> {
        self.ids
            .iter()
            .position(Option::is_none)
            .map(|i| i as PortId)
    }

    /// The worker of each of `queues` queues: the least loaded (queues
    /// served), spreading one port's queues over as many workers as there
    /// are before any worker gets a second.
    pub(super) fn pick_workers(&self, queues: u16) -> Vec<usize> {
        let mut load = vec![0usize; self.workers.handles.len().max(1)];
        for r in self.ports.values() {
            for &w in &r.workers {
                load[w] += 1;
            }
        }
        let mut mine = vec![0usize; load.len()];
        (0..queues.max(1))
            .map(|_| {
                let w = (0..load.len())
                    .min_by_key(|&w| (mine[w], load[w], w))
                    .unwrap_or(0);
                mine[w] += 1;
                load[w] += 1;
                w
            })
            .collect()
    }

    /// Hands opened queues to their workers once the next snapshot is out.
    pub(super) fn queue_adds(&mut self, id: PortId, workers: &[usize], queues: Queues) {
        for (queue, (port, &worker)) in queues.into_iter().zip(workers).enumerate() {
            self.pending_adds.push((worker, id, queue as u16, port));
        }
    }

    /// Opens a port's interface, one port per queue (queue `q` with the
    /// pool of `workers[q]`). An uplink also gets its XDP program, which
    /// the controller keeps in `self.uplink` (replacing an old one). On
    /// failure the queues opened so far are abandoned.
    pub(super) fn open_port(
        &mut self,
        spec: &PortSpec,
        id: PortId,
        workers: &[usize],
    ) -> Result<(Queues, Option<u32>), PortError> {
        use PortError as E;
        let uplink_err = |why: &dyn std::fmt::Display| E::Uplink {
            name: spec.name.clone(),
            why: why.to_string(),
        };
        if spec.port_type == PortType::Afxdp {
            let Some(ifindex) = sys::if_index(&spec.name) else {
                return Err(E::NoInterface(spec.name.clone()));
            };
            let want = u32::from(spec.queues);
            let has = match sys::rx_queues(&spec.name) {
                Some(has) => has,
                None if want > 1 => {
                    return Err(E::Open(format!(
                        "cannot read the RX queues of '{}' (/sys/class/net/{}/queues)",
                        spec.name, spec.name
                    )));
                }
                None => want,
            };
            if has < want {
                return Err(E::TooFewQueues {
                    name: spec.name.clone(),
                    has,
                    want: spec.queues,
                });
            }
            if has > want {
                // Frames on a queue without a socket go to the kernel (the
                // XDP program's fallback), not through the switch.
                tracing::warn!(port = %spec.name, rx_queues = has, queues = spec.queues,
                    "the interface has more RX queues than the switch serves: traffic on the \
                     others goes to the kernel; use --queues {has} or reduce its queues \
                     (ethtool -L)");
            }
            let prog = if spec.uplink {
                let attach = match spec.mode {
                    XdpMode::Auto => UplinkAttach::Auto,
                    XdpMode::Native | XdpMode::Zerocopy => UplinkAttach::Native,
                    XdpMode::Generic => UplinkAttach::Generic,
                };
                // Drop an old program first: attaching replaces it anyway,
                // and its Drop must not detach the new one afterwards.
                self.uplink = None;
                Some(UplinkProgram::attach(ifindex, attach).map_err(|e| uplink_err(&e))?)
            } else {
                None
            };
            let mut queues: Queues = Vec::with_capacity(workers.len());
            // Every queue attaches in the mode the first one got (`auto`
            // may fall back to generic XDP, and the program is the
            // interface's, whichever queue loaded it).
            let mut mode = attach_mode(spec.mode);
            for (q, &worker) in workers.iter().enumerate() {
                let q = q as u16;
                let opened = match &self.workers.handles[worker].umem {
                    Err(e) => Err(E::NoPool(e.clone())),
                    Ok(umem) => match &prog {
                        Some(prog) => {
                            let mode = match spec.mode {
                                XdpMode::Zerocopy => AttachMode::ZeroCopy,
                                _ => prog.mode().socket_mode(),
                            };
                            AfXdpPort::open_without_program(&spec.name, id, q, mode, umem)
                                .map_err(|e| E::Open(e.to_string()))
                                .and_then(|port| {
                                    let fd = port.xsk_fd().ok_or(E::UplinkNoFd)?;
                                    prog.register_socket(u32::from(q), fd)
                                        .map_err(|e| uplink_err(&e))?;
                                    Ok(port)
                                })
                        }
                        None => AfXdpPort::open(&spec.name, id, q, mode, umem)
                            .map_err(|e| E::Open(e.to_string())),
                    },
                };
                match opened {
                    Ok(port) => {
                        if mode == AttachMode::Auto {
                            mode = match port.mode().mode {
                                "native" => AttachMode::Native,
                                _ => AttachMode::Generic,
                            };
                        }
                        queues.push(Box::new(port));
                    }
                    Err(e) => {
                        for mut port in queues {
                            port.abandon();
                        }
                        return Err(e);
                    }
                }
            }
            if let Some(prog) = prog {
                prog.set_router_mac(self.router_mac.0)
                    .map_err(|e| uplink_err(&e))?;
                // The switch answers on the wire with its own MAC: a real
                // NIC must not filter frames addressed to it.
                if !crate::os::is_promisc(&spec.name).unwrap_or(true) {
                    match crate::os::set_promisc(&spec.name, true) {
                        Ok(()) => self.promisc = Some(spec.name.clone()),
                        Err(e) => {
                            tracing::warn!(port = %spec.name, "cannot set promiscuous mode: {e}")
                        }
                    }
                }
                self.uplink = Some(prog);
            }
            return Ok((queues, Some(ifindex)));
        }
        let ports = TapPort::create(
            tap_ifname(spec),
            spec.netns.as_deref(),
            spec.mac.map(|m| m.0),
            spec.offloads(),
            self.settings.tap_io,
            spec.queues,
        )
        .map_err(|source| E::Tap {
            name: spec.name.clone(),
            source,
        })?;
        let queues = ports
            .into_iter()
            .map(|p| Box::new(p) as Box<dyn Port>)
            .collect();
        Ok((queues, None))
    }

    pub(super) fn insert_port(&mut self, rec: PortRecord, queues: Queues) {
        let id = rec.id;
        // Counters of a reused id start from zero for the new port.
        self.baselines.insert(id, self.raw_counters(id));
        let workers = rec.workers.clone();
        self.queue_adds(id, &workers, queues);
        self.ids[usize::from(id)] = Some(rec.spec.name.clone());
        self.ports.insert(rec.spec.name.clone(), rec);
    }

    /// Opens a port `port add` configured: the effect step of the
    /// command. On failure nothing of it remains (a TAP it created, an
    /// uplink's XDP program and promiscuous mode go with the port).
    pub(super) fn open_new(&mut self, spec: &PortSpec) -> Result<Opened, PortError> {
        // Checked here rather than in the model's checks, which also vet
        // restored ports: a restored port whose namespace is gone is kept, down.
        if let Some(ns) = &spec.netns {
            sys::open_netns(ns).map_err(|e| PortError::Open(e.to_string()))?;
        }
        let id = self.free_id().ok_or(PortError::TooMany)?;
        let workers = self.pick_workers(spec.queues);
        let (queues, ifindex) = self.open_port(spec, id, &workers)?;
        Ok(Opened {
            rec: self.record(spec.clone(), id, workers, Ok((&queues, ifindex))),
            queues,
        })
    }

    /// Opens a port of the state file; one that cannot be opened now is
    /// kept, down, with the reason (see `revive_ports`).
    pub(super) fn open_restored(&mut self, spec: &PortSpec) -> Result<Opened, PortError> {
        let id = self.free_id().ok_or(PortError::TooMany)?;
        let workers = self.pick_workers(spec.queues);
        Ok(match self.open_port(spec, id, &workers) {
            Ok((queues, ifindex)) => Opened {
                rec: self.record(spec.clone(), id, workers, Ok((&queues, ifindex))),
                queues,
            },
            Err(e) => {
                tracing::warn!(port = %spec.name, "restored port is down: {e}");
                Opened {
                    rec: self.record(spec.clone(), id, workers, Err(e.to_string())),
                    queues: Vec::new(),
                }
            }
        })
    }

    fn record(
        &self,
        spec: PortSpec,
        id: PortId,
        workers: Vec<usize>,
        opened: Result<(&Queues, Option<u32>), String>,
    ) -> PortRecord {
        let facts = port_facts(&spec);
        let (up, error, mode, ifindex, xsk_fds) = match opened {
            Ok((queues, ifindex)) => (
                true,
                None,
                mode_of(queues),
                ifindex,
                queues.iter().filter_map(|q| q.xsk_fd()).collect(),
            ),
            Err(e) => (false, Some(e), None, None, Vec::new()),
        };
        let tap_drops = TapDrops::default();
        if up {
            tap_drops.reopened(tap_tx_dropped(&spec));
        }
        PortRecord {
            spec,
            id,
            workers,
            up,
            error,
            mode,
            ifindex,
            xsk_fds,
            xsk_drops: [0; 2],
            tap_drops,
            retry_at: Instant::now(),
            retry_backoff: Duration::ZERO,
            facts,
        }
    }

    /// Undoes `open_new` for a command that failed after it.
    pub(super) fn abandon(&mut self, opened: Opened) {
        for mut port in opened.queues {
            port.abandon();
        }
        if opened.rec.spec.uplink {
            self.release_uplink();
        }
    }

    /// Takes a port out of the runtime state; the caller publishes, then
    /// calls `close` (so no worker sends to the port any more first).
    pub(super) fn unlink_port(&mut self, name: &str) -> Option<PortRecord> {
        let rec = self.ports.remove(name)?;
        self.ids[usize::from(rec.id)] = None;
        self.unwatch_port(rec.id);
        self.macs.remove_port(rec.id);
        self.neigh.remove_port(rec.id);
        self.neigh_view = self.neigh.view();
        Some(rec)
    }

    /// Has the owning workers close a port `unlink_port` took out.
    pub(super) fn close(&mut self, rec: PortRecord) {
        let name = &rec.spec.name;
        for worker in distinct(&rec.workers) {
            let (done_tx, done_rx) = crossbeam_channel::bounded(1);
            if self.workers.handles[worker]
                .cmds
                .send(WorkerCmd::DelPort {
                    id: rec.id,
                    done: done_tx,
                    remove: true,
                })
                .is_ok()
                && done_rx.recv_timeout(DEL_TIMEOUT).is_err()
            {
                tracing::error!(port = %name, worker, "worker did not confirm port removal in time");
            }
        }
        // By the record, not the interface: a deleted uplink whose
        // interface is already gone still had its program and promiscuous mode.
        if rec.spec.uplink {
            self.release_uplink();
        }
        tracing::info!(port = %name, "port removed");
    }
}

/// An opened port: one per queue, in queue order.
pub(super) type Queues = Vec<Box<dyn Port>>;

/// A port opened for the model, not yet the runtime's.
pub(super) struct Opened {
    pub rec: PortRecord,
    /// One per queue; none for a restored port that could not be opened.
    pub queues: Queues,
}

/// Each worker of `workers` once, in order of first appearance.
pub(super) fn distinct(workers: &[usize]) -> Vec<usize> {
    let mut seen = Vec::with_capacity(workers.len());
    for &w in workers {
        if !seen.contains(&w) {
            seen.push(w);
        }
    }
    seen
}

/// The kernel's statistics of every socket of a port, summed (see
/// [`sys::xsk_statistics`]); `None` when none can be read.
pub(super) fn xsk_statistics(fds: &[std::os::fd::RawFd]) -> Option<[u64; 6]> {
    let mut sum: Option<[u64; 6]> = None;
    for k in fds.iter().filter_map(|&fd| sys::xsk_statistics(fd)) {
        let total = sum.get_or_insert([0; 6]);
        for (t, v) in total.iter_mut().zip(k) {
            *t += v;
        }
    }
    sum
}

fn attach_mode(m: XdpMode) -> AttachMode {
    match m {
        XdpMode::Auto => AttachMode::Auto,
        XdpMode::Native => AttachMode::Native,
        XdpMode::Generic => AttachMode::Generic,
        XdpMode::Zerocopy => AttachMode::ZeroCopy,
    }
}

/// A TAP port's device `tx_dropped` count now; `None` for other ports and
/// when it cannot be read (the namespace or device is gone).
pub(super) fn tap_tx_dropped(spec: &PortSpec) -> Option<u64> {
    if spec.port_type != PortType::Tap {
        return None;
    }
    sys::tx_dropped(spec.netns.as_deref(), tap_ifname(spec))
        .inspect_err(|e| tracing::debug!(port = %spec.name, "cannot read the TAP's drops: {e}"))
        .ok()
}

/// How a port's queues run: as its first does, taking partial checksums
/// only if every queue does.
fn mode_of(queues: &Queues) -> Option<PortMode> {
    let mut mode = queues.first()?.mode();
    mode.tx_csum = queues.iter().all(|q| q.mode().tx_csum);
    Some(mode)
}
