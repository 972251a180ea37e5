//! `vswitchd --metrics`: the switch's counters for Prometheus, built at
//! each scrape from the sources `stats`, `show`, `ct stats` and
//! `service list` read, and encoded by the `prometheus-client` crate
//! (OpenMetrics text). Names follow Prometheus conventions: a `vswitch_`
//! prefix, `_total` on counters, base units (`_bytes`), labels for what
//! varies (`port`, `reason`, `worker`, `state`).

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use fastpath::clock;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Controller;

type Labels = Vec<(&'static str, String)>;
type Counters = Family<Labels, Counter<u64, AtomicU64>>;
type Gauges = Family<Labels, Gauge>;

/// What the control socket counts, for the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct ControlCounts {
    /// Connections open now.
    pub connections: u64,
    /// Requests served, and those answered with an error.
    pub requests: u64,
    pub errors: u64,
    /// Connections refused (peer not admitted, a limit passed) or let go
    /// (answers not taken).
    pub refused: u64,
}

/// A registry being filled: each metric is made, registered and set.
struct Metrics(Registry);

impl Metrics {
    fn counters(&mut self, name: &str, help: &str) -> Counters {
        let f = Counters::default();
        self.0.register(name, help, f.clone());
        f
    }

    fn gauges(&mut self, name: &str, help: &str) -> Gauges {
        let f = Gauges::default();
        self.0.register(name, help, f.clone());
        f
    }

    fn counter(&mut self, name: &str, help: &str, v: u64) {
        self.counters(name, help)
            .get_or_create(&Vec::new())
            .inc_by(v);
    }

    fn gauge(&mut self, name: &str, help: &str, v: u64) {
        self.gauges(name, help)
            .get_or_create(&Vec::new())
            .set(i64::try_from(v).unwrap_or(i64::MAX));
    }
}

fn set(g: &Gauges, labels: Labels, v: u64) {
    g.get_or_create(&labels)
        .set(i64::try_from(v).unwrap_or(i64::MAX));
}

impl Controller {
    /// The metrics page (OpenMetrics text, ending in `# EOF`).
    pub fn metrics(&self, control: &ControlCounts) -> String {
        let mut m = Metrics(Registry::with_prefix("vswitch"));
        self.port_metrics(&mut m);
        self.worker_metrics(&mut m);
        self.table_metrics(&mut m);
        m.gauge(
            "control_connections",
            "Control socket connections open",
            control.connections,
        );
        m.counter(
            "control_requests",
            "Control requests served",
            control.requests,
        );
        m.counter(
            "control_request_errors",
            "Control requests answered with an error",
            control.errors,
        );
        m.counter(
            "control_refused_connections",
            "Control connections refused (peer not admitted, a limit passed) or let go (answers not taken)",
            control.refused,
        );
        let [done, failed] = self.state_writes.get();
        m.counter("state_writes", "State-file writes", done);
        m.counter(
            "state_write_errors",
            "State-file writes that failed (the request was refused)",
            failed,
        );
        m.gauge(
            "uptime_seconds",
            "Seconds since vswitchd started",
            self.started.elapsed().as_secs(),
        );
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &m.0);
        out
    }

    fn port_metrics(&self, m: &mut Metrics) {
        let rx_packets = m.counters("port_receive_packets", "Frames received on a port");
        let rx_bytes = m.counters("port_receive_bytes", "Bytes received on a port");
        let tx_packets = m.counters("port_transmit_packets", "Frames sent on a port");
        let tx_bytes = m.counters("port_transmit_bytes", "Bytes sent on a port");
        let drops = m.counters(
            "port_drops",
            "Frames dropped, by the port they came in on (tx_ring_full: the port sending) and reason",
        );
        let up = m.gauges("port_up", "1 while the port is up, 0 while it is down");
        for rec in self.ports.values() {
            let s = self.port_stats(rec);
            let port = || vec![("port", s.name.clone())];
            rx_packets.get_or_create(&port()).inc_by(s.rx_packets);
            rx_bytes.get_or_create(&port()).inc_by(s.rx_bytes);
            tx_packets.get_or_create(&port()).inc_by(s.tx_packets);
            tx_bytes.get_or_create(&port()).inc_by(s.tx_bytes);
            for (reason, n) in &s.drops {
                drops
                    .get_or_create(&vec![("port", s.name.clone()), ("reason", reason.clone())])
                    .inc_by(*n);
            }
            set(&up, port(), u64::from(rec.up));
        }
    }

    fn worker_metrics(&self, m: &mut Metrics) {
        let loops = m.counters(
            "worker_loops",
            "Poll loops of a worker, busy (moved a frame) or idle: busy / all is the share of polls that found work",
        );
        let bursts = m.counters(
            "worker_bursts",
            "Receive bursts that brought frames: burst_frames / bursts is the mean batch size",
        );
        let burst_frames = m.counters("worker_burst_frames", "Frames those bursts brought");
        let frames = m.gauges(
            "worker_frames",
            "A worker's packet buffers: free, in kernel rings, in flight",
        );
        let errors = m.counters(
            "worker_frame_errors",
            "Frame ownership violations a worker's pool caught (0 unless something is badly wrong)",
        );
        for (id, h) in self.workers.handles.iter().enumerate() {
            let s = &h.status;
            let w = || vec![("worker", id.to_string())];
            for (state, n) in [
                ("busy", s.busy_loops.load(Relaxed)),
                ("idle", s.idle_loops.load(Relaxed)),
            ] {
                loops
                    .get_or_create(&vec![
                        ("worker", id.to_string()),
                        ("activity", state.into()),
                    ])
                    .inc_by(n);
            }
            bursts.get_or_create(&w()).inc_by(s.bursts.load(Relaxed));
            burst_frames
                .get_or_create(&w())
                .inc_by(s.burst_frames.load(Relaxed));
            for (state, n) in [
                ("free", &s.frames_free),
                ("in_rings", &s.frames_in_rings),
                ("in_flight", &s.frames_in_flight),
            ] {
                set(
                    &frames,
                    vec![("worker", id.to_string()), ("state", state.into())],
                    n.load(Relaxed),
                );
            }
            errors
                .get_or_create(&w())
                .inc_by(s.frame_errors.load(Relaxed));
        }
    }

    fn table_metrics(&self, m: &mut Metrics) {
        let c = self.conntrack.counters(clock::now_ms());
        m.gauge(
            "conntrack_entries",
            "Tracked Service connections",
            c.entries,
        );
        m.gauge(
            "conntrack_embryonic_entries",
            "Tracked connections not established (syn_sent, syn_recv, datagrams never answered)",
            c.embryonic,
        );
        m.gauge(
            "conntrack_limit",
            "Most tracked connections (--ct-max)",
            c.limit,
        );
        m.counter("conntrack_created", "Connections tracked", c.created);
        m.counter(
            "conntrack_evicted",
            "Unanswered connections evicted to make room",
            c.evicted,
        );
        m.counter(
            "conntrack_full",
            "New connections refused: the table was full of answered ones",
            c.full,
        );
        m.counter("conntrack_expired", "Connections that timed out", c.expired);
        m.gauge(
            "conntrack_affinity_entries",
            "Client-IP affinity entries",
            c.affinity,
        );
        m.gauge(
            "services",
            "Services configured",
            self.model.services.len() as u64,
        );
        let eps = m.gauges("service_endpoints", "Endpoints of all Services, by state");
        let (ready, terminating) = self.model.services.values().fold((0, 0), |(r, t), s| {
            (r + s.backends.len(), t + s.terminating.len())
        });
        set(&eps, vec![("state", "ready".into())], ready as u64);
        set(
            &eps,
            vec![("state", "terminating".into())],
            terminating as u64,
        );
        let fdb = m.gauges("fdb_entries", "MAC table entries, static or learned");
        let (st, learned) = self.macs.summary();
        set(&fdb, vec![("kind", "static".into())], st as u64);
        set(&fdb, vec![("kind", "learned".into())], learned as u64);
    }
}
