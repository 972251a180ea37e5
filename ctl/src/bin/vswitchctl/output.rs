//! How `vswitchctl` prints replies: aligned text tables or stable JSON.
//!
//! Every function here is pure: it takes a protocol value and returns the
//! complete text to print, ending in a newline unless it is empty. Keeping
//! formatting apart from I/O lets the tables be tested from hand-built proto
//! structs, without a daemon.
//!
//! The JSON form is exactly the serde shape of the reply's payload (the
//! `data` member of [`Reply`]), so scripts see the same field names the
//! protocol documents. The text form is for people and may change.

use std::fmt::Write as _;

use ctl::{
    AddrInfo, CtEntry, CtStats, DaemonInfo, FdbEntry, FdbSummary, NeighInfo, PortInfo, PortStats,
    Reply, RouteInfo, ServiceInfo, ShowReply, WorkerInfo,
};

/// Placeholder for a cell that has no value.
const EMPTY_CELL: &str = "-";
/// Space between two columns.
const COLUMN_GAP: &str = "  ";

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    /// Numbers are right-aligned so that their digits line up.
    Right,
}

/// A text table whose column widths fit its widest cell.
///
/// The header is printed in upper case. Rows shorter than the header are
/// padded with empty cells; extra cells are ignored. Lines carry no trailing
/// whitespace.
#[derive(Debug, Clone)]
pub struct Table {
    header: Option<Vec<String>>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
    indent: usize,
}

impl Table {
    /// A table with a header row; each column is `(title, alignment)`.
    pub fn new(columns: &[(&str, Align)]) -> Self {
        Table {
            header: Some(columns.iter().map(|(t, _)| t.to_uppercase()).collect()),
            align: columns.iter().map(|(_, a)| *a).collect(),
            rows: Vec::new(),
            indent: 0,
        }
    }

    /// A table without a header row, for listings that follow another table.
    pub fn headless(align: &[Align]) -> Self {
        Table {
            header: None,
            align: align.to_vec(),
            rows: Vec::new(),
            indent: 0,
        }
    }

    /// Indents every line by `spaces`.
    pub fn indent(mut self, spaces: usize) -> Self {
        self.indent = spaces;
        self
    }

    /// Appends one row. An empty cell is shown as `-`.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.push(cells, EMPTY_CELL);
    }

    /// Appends a row that continues the row above: the columns after
    /// `cells` stay blank rather than showing `-`, so that a value printed
    /// once for a group of rows does not read as missing on the others.
    /// An empty cell among `cells` is still shown as `-`.
    pub fn continuation_row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.push(cells, "");
    }

    fn push<I, S>(&mut self, cells: I, missing: &str)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut row: Vec<String> = cells
            .into_iter()
            .take(self.align.len())
            .map(|c| {
                let c = one_line(&c.into());
                if c.is_empty() {
                    EMPTY_CELL.to_string()
                } else {
                    c
                }
            })
            .collect();
        row.resize(self.align.len(), missing.to_string());
        self.rows.push(row);
    }

    /// True when the table has no rows (the header does not count).
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let mut widths = vec![0usize; self.align.len()];
        for line in self.header.iter().chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(display_width(cell));
            }
        }
        let mut out = String::new();
        for line in self.header.iter().chain(&self.rows) {
            let mut text = " ".repeat(self.indent);
            for (i, cell) in line.iter().enumerate() {
                if i > 0 {
                    text.push_str(COLUMN_GAP);
                }
                let pad = widths[i] - display_width(cell);
                match self.align[i] {
                    Align::Left => {
                        text.push_str(cell);
                        text.push_str(&" ".repeat(pad));
                    }
                    Align::Right => {
                        text.push_str(&" ".repeat(pad));
                        text.push_str(cell);
                    }
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Width of a cell in terminal columns. Counting chars rather than bytes is
/// right for the ASCII names the switch uses and close enough otherwise.
fn display_width(s: &str) -> usize {
    s.chars().count()
}

/// Replaces control characters (newlines included) with spaces, so a string
/// from the daemon cannot break a table row or a one-line error message.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The reply's payload as pretty-printed JSON, followed by a newline.
/// [`Reply::Done`] has no payload and prints as `{}`.
pub fn json(reply: &Reply) -> Result<String, serde_json::Error> {
    let mut text = match reply {
        Reply::Done => serde_json::to_string_pretty(&serde_json::Map::new())?,
        Reply::Show(show) => serde_json::to_string_pretty(show)?,
        Reply::Ports(ports) => serde_json::to_string_pretty(ports)?,
        Reply::Fdb(entries) => serde_json::to_string_pretty(entries)?,
        Reply::Stats(stats) => serde_json::to_string_pretty(stats)?,
        Reply::Addrs(addrs) => serde_json::to_string_pretty(addrs)?,
        Reply::Routes(routes) => serde_json::to_string_pretty(routes)?,
        Reply::Neighbours(neighbours) => serde_json::to_string_pretty(neighbours)?,
        Reply::Services(services) => serde_json::to_string_pretty(services)?,
        Reply::Conntrack(entries) => serde_json::to_string_pretty(entries)?,
        Reply::CtPage(page) => serde_json::to_string_pretty(page)?,
        Reply::CtStats(stats) => serde_json::to_string_pretty(stats)?,
        Reply::Trace(report) => serde_json::to_string_pretty(report)?,
        Reply::WatchStarted { id } => {
            serde_json::to_string_pretty(&serde_json::json!({ "id": id }))?
        }
        Reply::WatchData(data) => serde_json::to_string_pretty(data)?,
    };
    text.push('\n');
    Ok(text)
}

/// The reply as human-readable text. [`Reply::Done`] prints nothing.
pub fn text(reply: &Reply) -> String {
    match reply {
        Reply::Done => String::new(),
        Reply::Show(show) => show_text(show),
        Reply::Ports(ports) => ports_text(ports),
        Reply::Fdb(entries) => fdb_text(entries),
        Reply::Stats(stats) => stats_text(stats),
        Reply::Addrs(addrs) => addrs_text(addrs),
        Reply::Routes(routes) => routes_text(routes),
        Reply::Neighbours(neighbours) => neighbours_text(neighbours),
        Reply::Services(services) => services_text(services),
        Reply::Conntrack(entries) => conntrack_text(entries),
        Reply::CtPage(page) => conntrack_text(&page.entries),
        Reply::CtStats(stats) => ct_stats_text(stats),
        Reply::Trace(report) => crate::observe::trace_text(report),
        Reply::WatchStarted { .. } | Reply::WatchData(_) => crate::observe::watch_text(reply),
    }
}

/// `show`: daemon header, workers, ports, FDB summary, separated by blank lines.
pub fn show_text(show: &ShowReply) -> String {
    let mut out = daemon_text(&show.daemon);
    out.push('\n');
    out.push_str("Workers:\n");
    out.push_str(&workers_text(&show.workers));
    out.push('\n');
    out.push_str("Ports:\n");
    out.push_str(&ports_text(&show.ports));
    out.push('\n');
    out.push_str(&fdb_summary_text(&show.fdb));
    if let Some(why) = &show.state_recovered {
        out.push_str("\nState file recovered: ");
        out.push_str(why);
        out.push('\n');
    }
    if !show.not_applied.is_empty() {
        out.push_str("\nNot applied (from the state file, kept there):\n");
        for line in &show.not_applied {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The daemon part of `show`, as `key  value` lines.
pub fn daemon_text(d: &DaemonInfo) -> String {
    let mut t = Table::headless(&[Align::Left, Align::Left]);
    t.row([
        "vswitchd".to_string(),
        format!("{} (protocol {})", d.version, d.protocol),
    ]);
    t.row(["pid".to_string(), d.pid.to_string()]);
    t.row(["uptime".to_string(), duration(d.uptime_secs)]);
    t.row(["socket", d.socket.as_str()]);
    t.row(["state file", d.state_file.as_str()]);
    t.row(["poll mode", d.poll.as_str()]);
    if !d.tap_io.is_empty() {
        t.row(["tap i/o", d.tap_io.as_str()]);
    }
    t.row(["mac aging".to_string(), duration(d.mac_aging_secs)]);
    t.row(["mac limit".to_string(), d.mac_limit.to_string()]);
    t.row(["router mac".to_string(), d.router_mac.to_string()]);
    t.render()
}

/// The workers table of `show`.
pub fn workers_text(workers: &[WorkerInfo]) -> String {
    let mut t = Table::new(&[
        ("id", Align::Right),
        ("core", Align::Right),
        ("ports", Align::Left),
        ("pool", Align::Left),
        ("frames", Align::Right),
        ("free", Align::Right),
        ("in_rings", Align::Right),
        ("in_flight", Align::Right),
        ("errors", Align::Right),
    ]);
    for w in workers {
        let f = &w.frames;
        t.row([
            w.id.to_string(),
            w.core.to_string(),
            w.ports.join(","),
            if f.umem { "umem" } else { "memory" }.to_string(),
            f.total.to_string(),
            f.free.to_string(),
            f.in_rings.to_string(),
            f.in_flight.to_string(),
            f.errors.to_string(),
        ]);
    }
    t.render()
}

/// `port list`, and the ports table of `show`. Ports that are down with a
/// reason get one line each below the table. IPS comes last because it is
/// the one column whose width varies a lot (several, possibly IPv6, addresses).
pub fn ports_text(ports: &[PortInfo]) -> String {
    let mut t = Table::new(&[
        ("name", Align::Left),
        ("type", Align::Left),
        ("role", Align::Left),
        ("mode", Align::Left),
        ("state", Align::Left),
        ("worker", Align::Right),
        ("mac", Align::Left),
        ("learned", Align::Right),
        ("ips", Align::Left),
    ]);
    let mut errors = Table::headless(&[Align::Left, Align::Left]).indent(2);
    for p in ports {
        t.row([
            p.name.clone(),
            p.port_type.to_string(),
            p.role.to_string(),
            port_mode(p),
            p.state.to_string(),
            port_workers(p),
            p.mac.map(|m| m.to_string()).unwrap_or_default(),
            p.learned_macs.to_string(),
            comma_list(&p.ips),
        ]);
        if let Some(e) = &p.error {
            errors.row([p.name.as_str(), e.as_str()]);
        }
    }
    let mut out = t.render();
    if !errors.is_empty() {
        out.push('\n');
        out.push_str(&errors.render());
    }
    out
}

/// The worker of each queue (`0,1` for two queues on workers 0 and 1);
/// beyond four queues, the number of queues and each worker once
/// (`32q:0,1`), so that the column stays narrow (and one word).
fn port_workers(p: &PortInfo) -> String {
    match p.queues.len() {
        0 | 1 => p.worker.to_string(),
        2..=4 => comma_list(&p.queues),
        n => {
            let mut workers = p.queues.clone();
            workers.sort_unstable();
            workers.dedup();
            format!("{n}q:{}", comma_list(&workers))
        }
    }
}

/// The mode a port runs in; `zerocopy` stands for native XDP with a
/// zero-copy socket, matching the `--mode` value that asks for it.
/// A TAP port that moves frames with a syscall each says so
/// (`tap/syscalls`).
fn port_mode(p: &PortInfo) -> String {
    if p.zero_copy {
        "zerocopy".to_string()
    } else if p.io.as_deref() == Some("syscalls") {
        format!("{}/syscalls", p.mode)
    } else {
        p.mode.clone()
    }
}

/// Items joined with commas and no spaces, so that the list stays one cell.
fn comma_list<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `fdb show`.
pub fn fdb_text(entries: &[FdbEntry]) -> String {
    let mut t = Table::new(&[
        ("mac", Align::Left),
        ("port", Align::Left),
        ("kind", Align::Left),
        ("age", Align::Right),
    ]);
    for e in entries {
        t.row([
            e.mac.to_string(),
            e.port.clone(),
            e.kind.to_string(),
            e.age_secs.map(duration).unwrap_or_default(),
        ]);
    }
    t.render()
}

/// The FDB line of `show`.
pub fn fdb_summary_text(fdb: &FdbSummary) -> String {
    format!(
        "FDB: {} static, {} learned\n",
        fdb.static_entries, fdb.learned_entries
    )
}

/// `addr list`: the switch's router addresses, each with the MAC it answers
/// ARP/ND with.
pub fn addrs_text(addrs: &[AddrInfo]) -> String {
    let mut t = Table::new(&[("address", Align::Left), ("mac", Align::Left)]);
    for a in addrs {
        t.row([a.addr.to_string(), a.mac.to_string()]);
    }
    t.render()
}

/// `route list`: every route the data plane uses, in the daemon's order.
pub fn routes_text(routes: &[RouteInfo]) -> String {
    let mut t = Table::new(&[
        ("prefix", Align::Left),
        ("via", Align::Left),
        ("dev", Align::Left),
        ("encap", Align::Left),
        ("origin", Align::Left),
    ]);
    for r in routes {
        t.row([
            r.prefix.to_string(),
            r.via.map(|v| v.to_string()).unwrap_or_default(),
            r.dev.clone().unwrap_or_default(),
            r.encap.map(|e| e.to_string()).unwrap_or_default(),
            r.origin.to_string(),
        ]);
    }
    t.render()
}

/// `neigh list`. AGE is shown only for learned (reachable) entries.
pub fn neighbours_text(neighbours: &[NeighInfo]) -> String {
    let mut t = Table::new(&[
        ("ip", Align::Left),
        ("mac", Align::Left),
        ("port", Align::Left),
        ("state", Align::Left),
        ("age", Align::Right),
    ]);
    for n in neighbours {
        t.row([
            n.ip.to_string(),
            n.mac.to_string(),
            n.port.clone(),
            n.state.to_string(),
            n.age_secs.map(duration).unwrap_or_default(),
        ]);
    }
    t.render()
}

/// `stats`: one row per port, then one line per non-zero drop reason of
/// each port that dropped anything.
pub fn stats_text(stats: &[PortStats]) -> String {
    let mut t = Table::new(&[
        ("name", Align::Left),
        ("rx_pkts", Align::Right),
        ("rx_bytes", Align::Right),
        ("tx_pkts", Align::Right),
        ("tx_bytes", Align::Right),
        ("drops", Align::Right),
    ]);
    let mut drops = Table::headless(&[Align::Left, Align::Left, Align::Right]).indent(2);
    for s in stats {
        t.row([
            s.name.clone(),
            s.rx_packets.to_string(),
            s.rx_bytes.to_string(),
            s.tx_packets.to_string(),
            s.tx_bytes.to_string(),
            s.drops_total().to_string(),
        ]);
        for (reason, count) in s.drops.iter().filter(|(_, c)| **c != 0) {
            drops.row([s.name.clone(), reason.clone(), count.to_string()]);
        }
        // The kernel's AF_XDP counters, except the wakeup hints
        // (fill/tx ring empty), which are normal when idle, and the two
        // drops already listed above (`xsk_rx_dropped`, `xsk_rx_ring_full`).
        if let Some(x) = &s.xdp {
            let rejected = [x.named()[1], x.named()[2]];
            for (name, count) in rejected.into_iter().filter(|(_, c)| *c != 0) {
                drops.row([s.name.clone(), format!("xdp.{name}"), count.to_string()]);
            }
        }
    }
    let mut out = t.render();
    if !drops.is_empty() {
        out.push('\n');
        out.push_str(&drops.render());
    }
    out
}

/// `service list`: one row per endpoint, in the daemon's order. AFFINITY
/// and NODEPORT belong to the Service, so they are shown on its first row
/// only; a Service without endpoints still gets a row.
pub fn services_text(services: &[ServiceInfo]) -> String {
    let mut t = Table::new(&[
        ("service", Align::Left),
        ("backend", Align::Left),
        ("state", Align::Left),
        ("active", Align::Right),
        ("affinity", Align::Left),
        ("nodeport", Align::Right),
    ]);
    for s in services {
        let service = s.service.to_string();
        let affinity = s
            .affinity_timeout
            .map(|secs| format!("client-ip {}", duration(u64::from(secs))))
            .unwrap_or_default();
        let node_port = s.node_port.map(|p| p.to_string()).unwrap_or_default();
        let Some((first, rest)) = s.backends.split_first() else {
            t.row([
                service,
                String::new(),
                String::new(),
                String::new(),
                affinity,
                node_port,
            ]);
            continue;
        };
        t.row([
            service.clone(),
            first.addr.to_string(),
            first.state.to_string(),
            first.active.to_string(),
            affinity,
            node_port,
        ]);
        for b in rest {
            t.continuation_row([
                service.clone(),
                b.addr.to_string(),
                b.state.to_string(),
                b.active.to_string(),
            ]);
        }
    }
    t.render()
}

/// `ct list`: each connection as the client sent it (SOURCE, DESTINATION)
/// and as the backend sees it (BACKEND, REPLY-DST: where the backend's
/// replies go, which differs from SOURCE when the switch also rewrote the
/// source). EXPIRES is in seconds.
pub fn conntrack_text(entries: &[CtEntry]) -> String {
    let mut t = Table::new(&[
        ("proto", Align::Left),
        ("source", Align::Left),
        ("destination", Align::Left),
        ("backend", Align::Left),
        ("reply-dst", Align::Left),
        ("state", Align::Left),
        ("expires", Align::Right),
    ]);
    for e in entries {
        t.row([
            e.proto.to_string(),
            e.src.to_string(),
            e.dst.to_string(),
            e.reply_src.to_string(),
            e.reply_dst.to_string(),
            e.state.to_string(),
            e.expires_secs.to_string(),
        ]);
    }
    t.render()
}

/// `ct stats`, as `key  value` lines.
pub fn ct_stats_text(stats: &CtStats) -> String {
    let mut t = Table::headless(&[Align::Left, Align::Right]);
    for (name, value) in [
        ("entries", stats.entries),
        ("embryonic", stats.embryonic),
        ("limit", stats.limit),
        ("created", stats.created),
        ("evicted", stats.evicted),
        ("full", stats.full),
        ("expired", stats.expired),
        ("affinity", stats.affinity),
    ] {
        t.row([name.to_string(), value.to_string()]);
    }
    t.render()
}

/// A duration in seconds as `45s`, `2m05s`, `1h02m05s` or `3d01h02m05s`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = match (d, h, m) {
        (0, 0, 0) => write!(out, "{s}s"),
        (0, 0, _) => write!(out, "{m}m{s:02}s"),
        (0, _, _) => write!(out, "{h}h{m:02}m{s:02}s"),
        _ => write!(out, "{d}d{h:02}h{m:02}m{s:02}s"),
    };
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ctl::{
        BackendInfo, BackendState, CtState, Encap, FdbKind, FramePoolInfo, MacAddr, NeighState,
        PortRole, PortState, PortType, Proto, RouteOrigin, XdpMode,
    };

    use super::*;

    fn port(name: &str, mac: Option<&str>, learned: u32) -> PortInfo {
        PortInfo {
            name: name.to_string(),
            id: 1,
            port_type: PortType::Afxdp,
            requested_mode: XdpMode::Auto,
            mode: "native".to_string(),
            zero_copy: false,
            io: None,
            offload: false,
            tx_checksum: false,
            state: PortState::Up,
            error: None,
            worker: 0,
            queues: vec![0],
            mac: mac.map(|m| m.parse::<MacAddr>().unwrap()),
            netns: None,
            ifname: None,
            learned_macs: learned,
            ips: Vec::new(),
            role: PortRole::Pod,
        }
    }

    fn stats(name: &str, rx: u64, drops: &[(&str, u64)]) -> PortStats {
        PortStats {
            name: name.to_string(),
            rx_packets: rx,
            rx_bytes: rx * 100,
            tx_packets: 0,
            tx_bytes: 0,
            drops: drops
                .iter()
                .map(|(r, c)| (r.to_string(), *c))
                .collect::<BTreeMap<_, _>>(),
            xdp: None,
            workers: Vec::new(),
        }
    }

    /// Byte offsets where each whitespace-separated word of `line` starts.
    fn word_starts(line: &str) -> Vec<usize> {
        let b = line.as_bytes();
        (0..b.len())
            .filter(|&i| b[i] != b' ' && (i == 0 || b[i - 1] == b' '))
            .collect()
    }

    /// Byte offsets just past the end of each whitespace-separated word.
    fn word_ends(line: &str) -> Vec<usize> {
        word_starts(line)
            .into_iter()
            .zip(line.split_whitespace())
            .map(|(start, word)| start + word.len())
            .collect()
    }

    #[test]
    fn table_aligns_columns_to_widest_cell() {
        let mut t = Table::new(&[("name", Align::Left), ("count", Align::Right)]);
        t.row(["a", "1"]);
        t.row(["longer-name", "12345678"]);
        assert_eq!(
            t.render(),
            "NAME            COUNT\na                   1\nlonger-name  12345678\n"
        );
    }

    #[test]
    fn table_fills_empty_and_missing_cells_and_strips_newlines() {
        let mut t = Table::new(&[("a", Align::Left), ("b", Align::Left), ("c", Align::Left)]);
        t.row(["x\ny", ""]);
        assert_eq!(t.render(), "A    B  C\nx y  -  -\n");
    }

    #[test]
    fn ports_table_is_aligned_with_upper_case_header() {
        let mut pod1 = port("pod1", Some("02:00:00:00:00:01"), 3);
        pod1.ips = vec![
            "10.244.1.5".parse().unwrap(),
            "fd00:10:244:1::5".parse().unwrap(),
        ];
        let mut down = port("pod-with-long-name", None, 0);
        down.state = PortState::Down;
        down.mode = "none".to_string();
        down.error = Some("interface 'pod-with-long-name' not found".to_string());
        let mut zc = port("eth1", Some("02:00:00:00:00:0a"), 7);
        zc.zero_copy = true;
        zc.worker = 1;
        zc.role = PortRole::Uplink;
        let text = ports_text(&[pod1, down, zc]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            [
                "NAME", "TYPE", "ROLE", "MODE", "STATE", "WORKER", "MAC", "LEARNED", "IPS"
            ]
        );
        let (header_starts, header_ends) = (word_starts(lines[0]), word_ends(lines[0]));
        for row in &lines[1..4] {
            let (starts, ends) = (word_starts(row), word_ends(row));
            assert_eq!(starts.len(), 9, "{row}");
            // Every left-aligned column starts at the same offset on every row.
            for col in [0, 1, 2, 3, 4, 6, 8] {
                assert_eq!(starts[col], header_starts[col], "column {col} of {row:?}");
            }
            // Right-aligned columns end where their header ends.
            for col in [5, 7] {
                assert_eq!(ends[col], header_ends[col], "column {col} of {row:?}");
            }
        }
        assert!(lines[1].starts_with("pod1 "));
        assert!(lines[1].contains(" pod "), "{}", lines[1]);
        assert!(
            lines[1].ends_with(" 10.244.1.5,fd00:10:244:1::5"),
            "IPs are comma-joined: {}",
            lines[1]
        );
        assert!(
            lines[2].contains(" - "),
            "missing MAC shows as '-': {}",
            lines[2]
        );
        assert!(
            lines[2].ends_with(" -"),
            "no IPs shows as '-': {}",
            lines[2]
        );
        assert!(lines[3].contains(" uplink "), "{}", lines[3]);
        assert!(lines[3].contains(" zerocopy "), "{}", lines[3]);
        assert_eq!(lines[4], "");
        assert_eq!(
            lines[5],
            "  pod-with-long-name  interface 'pod-with-long-name' not found"
        );
        assert_eq!(lines.len(), 6);
        assert!(
            text.lines().all(|l| l == l.trim_end()),
            "no trailing spaces"
        );
    }

    #[test]
    fn workers_column_lists_queues_compactly() {
        let mut p = port("p", None, 0);
        assert_eq!(port_workers(&p), "0");
        p.queues = vec![0, 1];
        assert_eq!(port_workers(&p), "0,1");
        p.queues = (0..32).map(|q| 1 - q % 2).collect();
        assert_eq!(port_workers(&p), "32q:0,1");
    }

    #[test]
    fn addrs_keep_host_bits() {
        let addrs = [
            AddrInfo {
                owner: None,
                addr: "10.244.1.1/24".parse().unwrap(),
                mac: "02:00:5e:00:01:01".parse().unwrap(),
            },
            AddrInfo {
                owner: None,
                addr: "fd00:10:244:1::1/64".parse().unwrap(),
                mac: "02:00:5e:00:01:01".parse().unwrap(),
            },
        ];
        let expected = "\
ADDRESS              MAC
10.244.1.1/24        02:00:5e:00:01:01
fd00:10:244:1::1/64  02:00:5e:00:01:01
";
        assert_eq!(addrs_text(&addrs), expected);
        assert_eq!(addrs_text(&[]), "ADDRESS  MAC\n");
    }

    fn route(prefix: &str, via: Option<&str>, dev: Option<&str>, origin: RouteOrigin) -> RouteInfo {
        RouteInfo {
            owner: None,
            prefix: prefix.parse().unwrap(),
            via: via.map(|v| v.parse().unwrap()),
            dev: dev.map(str::to_string),
            encap: None,
            origin,
        }
    }

    #[test]
    fn routes_show_dash_for_what_a_route_lacks() {
        let mut vxlan = route(
            "10.244.2.0/24",
            Some("192.168.50.2"),
            None,
            RouteOrigin::Static,
        );
        vxlan.encap = Some(Encap::Vxlan { vni: 42 });
        let routes = [
            route(
                "10.244.1.0/24",
                None,
                Some("bridge"),
                RouteOrigin::Connected,
            ),
            route("10.244.1.1/32", None, None, RouteOrigin::Local),
            route("10.244.1.5/32", None, Some("pod1"), RouteOrigin::Pod),
            vxlan,
            route("0.0.0.0/0", Some("192.168.50.1"), None, RouteOrigin::Static),
        ];
        let expected = "\
PREFIX         VIA           DEV     ENCAP         ORIGIN
10.244.1.0/24  -             bridge  -             connected
10.244.1.1/32  -             -       -             local
10.244.1.5/32  -             pod1    -             pod
10.244.2.0/24  192.168.50.2  -       vxlan vni 42  static
0.0.0.0/0      192.168.50.1  -       -             static
";
        assert_eq!(routes_text(&routes), expected);
    }

    #[test]
    fn neighbours_show_age_only_for_learned_entries() {
        let neighbours = [
            NeighInfo {
                ip: "10.244.1.5".parse().unwrap(),
                mac: "02:00:00:00:00:05".parse().unwrap(),
                port: "pod1".into(),
                state: NeighState::Permanent,
                age_secs: None,
            },
            NeighInfo {
                ip: "192.168.50.2".parse().unwrap(),
                mac: "02:00:00:00:01:02".parse().unwrap(),
                port: "uplink0".into(),
                state: NeighState::Reachable,
                age_secs: Some(70),
            },
        ];
        let expected = "\
IP            MAC                PORT     STATE        AGE
10.244.1.5    02:00:00:00:00:05  pod1     permanent      -
192.168.50.2  02:00:00:00:01:02  uplink0  reachable  1m10s
";
        assert_eq!(neighbours_text(&neighbours), expected);
    }

    #[test]
    fn stats_lists_only_non_zero_drop_reasons() {
        let text = stats_text(&[
            stats(
                "pod1",
                10,
                &[("no_destination", 12), ("ttl_expired", 0), ("bad_frame", 3)],
            ),
            stats("pod22", 5, &[("no_destination", 0)]),
            stats("p3", 0, &[("port_security", 1)]),
        ]);
        let expected = "\
NAME   RX_PKTS  RX_BYTES  TX_PKTS  TX_BYTES  DROPS
pod1        10      1000        0         0     15
pod22        5       500        0         0      0
p3           0         0        0         0      1

  pod1  bad_frame        3
  pod1  no_destination  12
  p3    port_security    1
";
        assert_eq!(text, expected);
    }

    #[test]
    fn stats_without_drops_prints_only_the_table() {
        let text = stats_text(&[stats("pod1", 1, &[("no_destination", 0)])]);
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn fdb_shows_age_only_for_learned_entries() {
        let entries = [
            FdbEntry {
                mac: "02:00:00:00:00:01".parse().unwrap(),
                port: "pod1".into(),
                kind: FdbKind::Static,
                age_secs: None,
            },
            FdbEntry {
                mac: "02:00:00:00:00:02".parse().unwrap(),
                port: "uplink0".into(),
                kind: FdbKind::Learned,
                age_secs: Some(125),
            },
        ];
        let expected = "\
MAC                PORT     KIND       AGE
02:00:00:00:00:01  pod1     static       -
02:00:00:00:00:02  uplink0  learned  2m05s
";
        assert_eq!(fdb_text(&entries), expected);
    }

    #[test]
    fn show_prints_every_section() {
        let show = ShowReply {
            daemon: DaemonInfo {
                version: "0.1.0".into(),
                protocol: 1,
                pid: 4242,
                uptime_secs: 3725,
                socket: "/run/vswitch/vswitchd.sock".into(),
                state_file: "/var/lib/vswitch/state.json".into(),
                poll: "adaptive".into(),
                tap_io: "io_uring".into(),
                mac_aging_secs: 300,
                mac_limit: 4096,
                router_mac: "02:00:5e:00:01:01".parse().unwrap(),
            },
            workers: vec![WorkerInfo {
                id: 0,
                core: 2,
                ports: vec!["pod1".into(), "pod2".into()],
                frames: FramePoolInfo {
                    total: 4096,
                    free: 4000,
                    in_rings: 64,
                    in_flight: 32,
                    errors: 0,
                    umem: true,
                },
                loops: 99,
            }],
            ports: vec![port("pod1", None, 1), port("pod2", None, 0)],
            fdb: FdbSummary {
                static_entries: 2,
                learned_entries: 5,
            },
            not_applied: vec!["port 'old0': interface 'old0' does not exist".into()],
            state_recovered: Some("state file x is not valid".into()),
        };
        let text = show_text(&show);
        for needle in [
            "vswitchd    0.1.0 (protocol 1)\n",
            "pid         4242\n",
            "uptime      1h02m05s\n",
            "socket      /run/vswitch/vswitchd.sock\n",
            "state file  /var/lib/vswitch/state.json\n",
            "poll mode   adaptive\n",
            "tap i/o     io_uring\n",
            "mac aging   5m00s\n",
            "mac limit   4096\n",
            "router mac  02:00:5e:00:01:01\n",
            "ID  CORE  PORTS      POOL  FRAMES  FREE  IN_RINGS  IN_FLIGHT  ERRORS\n",
            " 0     2  pod1,pod2  umem    4096  4000        64         32       0\n",
            "NAME  TYPE   ROLE  MODE    STATE  WORKER  MAC  LEARNED  IPS\n",
            "pod2  afxdp  pod   native  up          0  -          0  -\n",
            "FDB: 2 static, 5 learned\n",
            "Not applied (from the state file, kept there):\n  port 'old0': interface",
            "State file recovered: state file x is not valid\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }

    #[test]
    fn json_is_the_payload_serde_shape() {
        let s = vec![stats("pod1", 1, &[("no_destination", 2)])];
        let j = json(&Reply::Stats(s.clone())).unwrap();
        assert_eq!(
            j,
            format!("{}\n", serde_json::to_string_pretty(&s).unwrap())
        );
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v[0]["name"], "pod1");
        assert_eq!(v[0]["drops"]["no_destination"], 2);
        assert_eq!(json(&Reply::Done).unwrap(), "{}\n");
        let p = json(&Reply::Ports(vec![port("pod1", None, 0)])).unwrap();
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v[0]["type"], "afxdp");
        assert_eq!(v[0]["role"], "pod");
        assert!(v[0].get("mac").is_none());
        assert!(v[0].get("ips").is_none());
    }

    #[test]
    fn l3_replies_print_their_payload() {
        let mut r = route(
            "10.244.2.0/24",
            Some("192.168.50.2"),
            None,
            RouteOrigin::Static,
        );
        r.encap = Some(Encap::Vxlan { vni: 42 });
        let v: serde_json::Value =
            serde_json::from_str(&json(&Reply::Routes(vec![r.clone()])).unwrap()).unwrap();
        assert_eq!(v[0]["prefix"], "10.244.2.0/24");
        assert_eq!(v[0]["via"], "192.168.50.2");
        assert!(v[0].get("dev").is_none());
        assert_eq!(v[0]["encap"]["type"], "vxlan");
        assert_eq!(v[0]["encap"]["vni"], 42);
        assert_eq!(v[0]["origin"], "static");
        assert!(text(&Reply::Routes(vec![r])).contains(" vxlan vni 42 "));

        let a = AddrInfo {
            owner: None,
            addr: "10.244.1.1/24".parse().unwrap(),
            mac: "02:00:5e:00:01:01".parse().unwrap(),
        };
        let v: serde_json::Value =
            serde_json::from_str(&json(&Reply::Addrs(vec![a.clone()])).unwrap()).unwrap();
        assert_eq!(v[0]["addr"], "10.244.1.1/24");
        assert!(text(&Reply::Addrs(vec![a])).contains("10.244.1.1/24"));

        let n = NeighInfo {
            ip: "10.244.1.5".parse().unwrap(),
            mac: "02:00:00:00:00:05".parse().unwrap(),
            port: "pod1".into(),
            state: NeighState::Reachable,
            age_secs: Some(3),
        };
        let v: serde_json::Value =
            serde_json::from_str(&json(&Reply::Neighbours(vec![n.clone()])).unwrap()).unwrap();
        assert_eq!(v[0]["state"], "reachable");
        assert_eq!(v[0]["age_secs"], 3);
        assert!(text(&Reply::Neighbours(vec![n])).contains(" reachable "));
    }

    fn service(key: &str, backends: &[(&str, BackendState, u64)]) -> ServiceInfo {
        ServiceInfo {
            owner: None,
            service: key.parse().unwrap(),
            affinity_timeout: None,
            node_port: None,
            table_size: 65_537,
            backends: backends
                .iter()
                .map(|(addr, state, active)| BackendInfo {
                    addr: addr.parse().unwrap(),
                    state: *state,
                    active: *active,
                })
                .collect(),
        }
    }

    #[test]
    fn services_list_one_row_per_backend_with_options_on_the_first() {
        let mut web = service(
            "10.96.0.10:80/tcp",
            &[
                ("10.244.1.5:8080", BackendState::Ready, 12),
                ("10.244.2.7:8080", BackendState::Ready, 3),
                ("10.244.3.9:8080", BackendState::Terminating, 1),
            ],
        );
        web.affinity_timeout = Some(10_800);
        web.node_port = Some(30_080);
        let empty = service("10.96.0.11:53/udp", &[]);
        let v6 = service(
            "[fd00::10]:443/tcp",
            &[("[fd00:10:244:1::5]:8443", BackendState::Ready, 0)],
        );
        let expected = "\
SERVICE             BACKEND                  STATE        ACTIVE  AFFINITY            NODEPORT
10.96.0.10:80/tcp   10.244.1.5:8080          ready            12  client-ip 3h00m00s     30080
10.96.0.10:80/tcp   10.244.2.7:8080          ready             3
10.96.0.10:80/tcp   10.244.3.9:8080          terminating       1
10.96.0.11:53/udp   -                        -                 -  -                          -
[fd00::10]:443/tcp  [fd00:10:244:1::5]:8443  ready             0  -                          -
";
        assert_eq!(services_text(&[web, empty, v6]), expected);
        assert_eq!(
            services_text(&[]),
            "SERVICE  BACKEND  STATE  ACTIVE  AFFINITY  NODEPORT\n"
        );
    }

    fn ct_entry(src: &str, dst: &str, reply_src: &str, reply_dst: &str) -> CtEntry {
        CtEntry {
            proto: Proto::Tcp,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            reply_src: reply_src.parse().unwrap(),
            reply_dst: reply_dst.parse().unwrap(),
            service: "10.96.0.10:80/tcp".parse().unwrap(),
            state: CtState::Established,
            expires_secs: 86_399,
        }
    }

    #[test]
    fn conntrack_shows_both_directions_and_seconds_to_expiry() {
        // A pod-to-Service connection, and a NodePort one that is also
        // source-translated so the backend answers through this node.
        let pod = ct_entry(
            "10.244.1.9:40000",
            "10.96.0.10:80",
            "10.244.2.7:8080",
            "10.244.1.9:40000",
        );
        let mut node_port = ct_entry(
            "192.168.50.9:51000",
            "192.168.50.1:30080",
            "10.244.1.5:8080",
            "10.244.1.1:61000",
        );
        node_port.proto = Proto::Udp;
        node_port.state = CtState::Open;
        node_port.expires_secs = 7;
        let expected = "\
PROTO  SOURCE              DESTINATION         BACKEND          REPLY-DST         STATE        EXPIRES
tcp    10.244.1.9:40000    10.96.0.10:80       10.244.2.7:8080  10.244.1.9:40000  established    86399
udp    192.168.50.9:51000  192.168.50.1:30080  10.244.1.5:8080  10.244.1.1:61000  open               7
";
        assert_eq!(conntrack_text(&[pod, node_port]), expected);
        assert_eq!(
            conntrack_text(&[]),
            "PROTO  SOURCE  DESTINATION  BACKEND  REPLY-DST  STATE  EXPIRES\n"
        );
    }

    #[test]
    fn ct_stats_are_key_value_lines() {
        let stats = CtStats {
            entries: 1_200,
            embryonic: 30,
            limit: 262_144,
            created: 98_765,
            evicted: 2,
            full: 0,
            expired: 97_565,
            affinity: 4,
        };
        let expected = "\
entries      1200
embryonic      30
limit      262144
created     98765
evicted         2
full            0
expired     97565
affinity        4
";
        assert_eq!(ct_stats_text(&stats), expected);
    }

    #[test]
    fn service_replies_print_their_payload() {
        let mut s = service(
            "10.96.0.10:80/tcp",
            &[("10.244.1.5:8080", BackendState::Terminating, 2)],
        );
        s.node_port = Some(30_080);
        let reply = Reply::Services(vec![s.clone()]);
        let v: serde_json::Value = serde_json::from_str(&json(&reply).unwrap()).unwrap();
        assert_eq!(v[0]["service"], "10.96.0.10:80/tcp");
        assert_eq!(v[0]["node_port"], 30_080);
        assert!(v[0].get("affinity_timeout").is_none());
        assert_eq!(v[0]["table_size"], 65_537);
        assert_eq!(v[0]["backends"][0]["addr"], "10.244.1.5:8080");
        assert_eq!(v[0]["backends"][0]["state"], "terminating");
        assert_eq!(v[0]["backends"][0]["active"], 2);
        assert_eq!(text(&reply), services_text(&[s]));

        let e = ct_entry(
            "10.244.1.9:40000",
            "10.96.0.10:80",
            "10.244.2.7:8080",
            "10.244.1.9:40000",
        );
        let reply = Reply::Conntrack(vec![e.clone()]);
        let v: serde_json::Value = serde_json::from_str(&json(&reply).unwrap()).unwrap();
        assert_eq!(v[0]["proto"], "tcp");
        assert_eq!(v[0]["reply_src"], "10.244.2.7:8080");
        assert_eq!(v[0]["service"], "10.96.0.10:80/tcp");
        assert_eq!(v[0]["state"], "established");
        assert_eq!(v[0]["expires_secs"], 86_399);
        assert_eq!(text(&reply), conntrack_text(&[e]));

        let stats = CtStats {
            full: 5,
            ..CtStats::default()
        };
        let reply = Reply::CtStats(stats);
        let j = json(&reply).unwrap();
        assert_eq!(
            j,
            format!("{}\n", serde_json::to_string_pretty(&stats).unwrap())
        );
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["full"], 5);
        assert_eq!(text(&reply), ct_stats_text(&stats));
    }

    #[test]
    fn continuation_rows_leave_trailing_cells_blank() {
        let mut t = Table::new(&[("a", Align::Left), ("b", Align::Left), ("c", Align::Right)]);
        t.row(["x", "", "1"]);
        t.continuation_row(["y", ""]);
        assert_eq!(t.render(), "A  B  C\nx  -  1\ny  -\n");
    }

    #[test]
    fn done_prints_nothing_as_text() {
        assert_eq!(text(&Reply::Done), "");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(125), "2m05s");
        assert_eq!(duration(3725), "1h02m05s");
        assert_eq!(duration(90_061), "1d01h01m01s");
    }
}
