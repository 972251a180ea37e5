//! Read-only replies: `show`, `port list`, `stats`, `fdb show`. Nothing
//! here changes the model or the kernel.

use std::sync::atomic::Ordering::Relaxed;

use ctl::PortType;
use ctl::{
    DaemonInfo, FdbEntry, FdbKind, FdbSummary, FramePoolInfo, MacAddr, PortInfo, PortState,
    PortStats, PortWorkerStats, Reply, ShowReply, TAP_TX_DROPPED, WorkerInfo, XSK_RX_DROPPED,
    XSK_RX_RING_FULL, XdpStats,
};
use fastpath::counters::PortCounterValues;
use fastpath::drop::DropReason;
use fastpath::l2::fdb::EntryKind;
use fastpath::port::tap::TapIo;
use fastpath::worker::PollMode;
use fastpath::{PortId, clock, mac_octets};

use super::ports::{tap_tx_dropped, xsk_statistics};
use super::{Controller, PortRecord, Refused, refuse};

impl Controller {
    /// Each worker's counters of port `id`, as they are now.
    pub(super) fn raw_counters(&self, id: PortId) -> Vec<PortCounterValues> {
        self.workers
            .handles
            .iter()
            .map(|h| h.counters.port(id).read())
            .collect()
    }

    /// Each worker's counters of port `id` since the port was added.
    fn worker_counters(&self, id: PortId) -> Vec<PortCounterValues> {
        let base = self.baselines.get(&id);
        self.raw_counters(id)
            .into_iter()
            .enumerate()
            .map(|(w, v)| match base.and_then(|b| b.get(w)) {
                Some(b) => v.since(b),
                None => v,
            })
            .collect()
    }

    pub(super) fn port_stats(&self, rec: &PortRecord) -> PortStats {
        let per_worker = self.worker_counters(rec.id);
        let mut v = PortCounterValues::default();
        for w in &per_worker {
            v.add(w);
        }
        // A port with several queues: how its traffic spreads over the
        // workers of its queues.
        let workers = if rec.workers.len() > 1 {
            super::ports::distinct(&rec.workers)
                .into_iter()
                .map(|w| PortWorkerStats {
                    worker: w,
                    rx_packets: per_worker[w].rx_packets,
                    tx_packets: per_worker[w].tx_packets,
                })
                .collect()
        } else {
            Vec::new()
        };
        let xdp = xsk_statistics(&rec.xsk_fds).map(|k| XdpStats {
            rx_dropped: k[0],
            rx_invalid_descs: k[1],
            tx_invalid_descs: k[2],
            rx_ring_full: k[3],
            rx_fill_ring_empty: k[4],
            tx_ring_empty: k[5],
        });
        let mut drops: std::collections::BTreeMap<String, u64> = DropReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), v.drop_count(*r)))
            .collect();
        // Frames the kernel dropped on their way to the switch are the
        // switch's losses too: counted with its own, over every socket the
        // port has had (listed while the port is down too).
        if rec.spec.port_type == PortType::Afxdp {
            let now = xdp.map_or([0; 2], |x| [x.rx_dropped, x.rx_ring_full]);
            drops.insert(XSK_RX_DROPPED.to_string(), rec.xsk_drops[0] + now[0]);
            drops.insert(XSK_RX_RING_FULL.to_string(), rec.xsk_drops[1] + now[1]);
        }
        if rec.spec.port_type == PortType::Tap {
            let now = rec.up.then(|| tap_tx_dropped(&rec.spec)).flatten();
            drops.insert(TAP_TX_DROPPED.to_string(), rec.tap_drops.update(now));
        }
        PortStats {
            name: rec.spec.name.clone(),
            rx_packets: v.rx_packets,
            rx_bytes: v.rx_bytes,
            tx_packets: v.tx_packets,
            tx_bytes: v.tx_bytes,
            drops,
            xdp,
            workers,
        }
    }

    pub(super) fn stats(&self, port: Option<&str>) -> Result<Reply, Refused> {
        match port {
            Some(name) => match self.ports.get(name) {
                Some(rec) => Ok(Reply::Stats(vec![self.port_stats(rec)])),
                None => refuse(format!("port '{name}' does not exist")),
            },
            None => Ok(Reply::Stats(
                self.ports.values().map(|r| self.port_stats(r)).collect(),
            )),
        }
    }

    pub(super) fn port_infos(&self) -> Vec<PortInfo> {
        self.ports
            .values()
            .map(|r| PortInfo {
                name: r.spec.name.clone(),
                id: r.id,
                port_type: r.spec.port_type,
                requested_mode: r.spec.mode,
                mode: match (&r.mode, r.up) {
                    (Some(m), true) => m.mode.to_string(),
                    _ => "none".to_string(),
                },
                zero_copy: r.mode.as_ref().is_some_and(|m| m.zero_copy),
                io: r
                    .mode
                    .as_ref()
                    .filter(|_| r.up)
                    .and_then(|m| m.io)
                    .map(str::to_string),
                offload: r.spec.offloads(),
                tx_checksum: r.up && r.mode.as_ref().is_some_and(|m| m.tx_csum),
                state: if r.up { PortState::Up } else { PortState::Down },
                error: r.error.clone(),
                worker: r.workers[0],
                queues: r.workers.clone(),
                mac: r.spec.mac,
                netns: r.spec.netns.clone(),
                ifname: r.spec.ifname.clone(),
                learned_macs: self.macs.learned_on(r.id),
                ips: r.spec.ips.clone(),
                role: r.spec.role(),
            })
            .collect()
    }

    pub(super) fn fdb_entries(&self) -> Vec<FdbEntry> {
        self.macs
            .entries(clock::now_ms())
            .into_iter()
            .filter_map(|row| {
                let port = self.ids.get(usize::from(row.port))?.clone()?;
                Some(FdbEntry {
                    mac: MacAddr(mac_octets(row.mac)),
                    port,
                    kind: match row.kind {
                        EntryKind::Static => FdbKind::Static,
                        EntryKind::Learned => FdbKind::Learned,
                    },
                    age_secs: row.idle_ms.map(|ms| ms / 1000),
                })
            })
            .collect()
    }

    pub(super) fn show(&self) -> ShowReply {
        let (static_entries, learned_entries) = self.macs.summary();
        let workers = self
            .workers
            .handles
            .iter()
            .enumerate()
            .map(|(id, h)| {
                let s = &h.status;
                WorkerInfo {
                    id,
                    core: h.core,
                    ports: self
                        .ports
                        .values()
                        .filter(|r| r.workers.contains(&id))
                        .map(|r| r.spec.name.clone())
                        .collect(),
                    frames: FramePoolInfo {
                        total: s.frames_total.load(Relaxed),
                        free: s.frames_free.load(Relaxed),
                        in_rings: s.frames_in_rings.load(Relaxed),
                        in_flight: s.frames_in_flight.load(Relaxed),
                        errors: s.frame_errors.load(Relaxed),
                        umem: h.umem.is_ok(),
                    },
                    loops: s.loops.load(Relaxed),
                }
            })
            .collect();
        ShowReply {
            daemon: DaemonInfo {
                version: env!("CARGO_PKG_VERSION").to_string(),
                protocol: ctl::PROTOCOL_VERSION,
                pid: std::process::id(),
                uptime_secs: self.started.elapsed().as_secs(),
                socket: self.settings.socket.display().to_string(),
                state_file: self.settings.state.display().to_string(),
                poll: match self.settings.poll {
                    PollMode::Busy => "busy".into(),
                    PollMode::Adaptive => "adaptive".into(),
                },
                tap_io: match self.settings.tap_io {
                    TapIo::IoUring => "io_uring".into(),
                    TapIo::Syscalls => "syscalls".into(),
                },
                mac_aging_secs: self.settings.mac_aging_secs,
                mac_limit: self.settings.mac_limit,
                router_mac: self.router_mac,
            },
            workers,
            ports: self.port_infos(),
            fdb: FdbSummary {
                static_entries: static_entries as u32,
                learned_entries: learned_entries as u32,
            },
            not_applied: self.model.kept.lines(),
            state_recovered: self.recovered.clone(),
        }
    }
}
