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

use crate::proto::{
    DaemonInfo, FdbEntry, FdbSummary, PortInfo, PortStats, Reply, ShowReply, WorkerInfo,
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
        row.resize(self.align.len(), EMPTY_CELL.to_string());
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
    t.row(["mac aging".to_string(), duration(d.mac_aging_secs)]);
    t.row(["mac limit".to_string(), d.mac_limit.to_string()]);
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
/// reason get one line each below the table.
pub fn ports_text(ports: &[PortInfo]) -> String {
    let mut t = Table::new(&[
        ("name", Align::Left),
        ("type", Align::Left),
        ("mode", Align::Left),
        ("state", Align::Left),
        ("worker", Align::Right),
        ("mac", Align::Left),
        ("learned", Align::Right),
    ]);
    let mut errors = Table::headless(&[Align::Left, Align::Left]).indent(2);
    for p in ports {
        t.row([
            p.name.clone(),
            p.port_type.to_string(),
            port_mode(p),
            p.state.to_string(),
            p.worker.to_string(),
            p.mac.map(|m| m.to_string()).unwrap_or_default(),
            p.learned_macs.to_string(),
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

/// The mode a port runs in; `zerocopy` stands for native XDP with a
/// zero-copy socket, matching the `--mode` value that asks for it.
fn port_mode(p: &PortInfo) -> String {
    if p.zero_copy {
        "zerocopy".to_string()
    } else {
        p.mode.clone()
    }
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
        // (fill/tx ring empty), which are normal when idle.
        if let Some(x) = &s.xdp {
            for (name, count) in x.named().into_iter().take(4).filter(|(_, c)| *c != 0) {
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

    use super::*;
    use crate::mac::MacAddr;
    use crate::proto::{FdbKind, FramePoolInfo, PortState, PortType, XdpMode};

    fn port(name: &str, mac: Option<&str>, learned: u32) -> PortInfo {
        PortInfo {
            name: name.to_string(),
            id: 1,
            port_type: PortType::Afxdp,
            requested_mode: XdpMode::Auto,
            mode: "native".to_string(),
            zero_copy: false,
            state: PortState::Up,
            error: None,
            worker: 0,
            mac: mac.map(|m| m.parse::<MacAddr>().unwrap()),
            netns: None,
            ifname: None,
            learned_macs: learned,
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
        }
    }

    /// Byte offsets where each whitespace-separated word of `line` starts.
    fn word_starts(line: &str) -> Vec<usize> {
        let b = line.as_bytes();
        (0..b.len())
            .filter(|&i| b[i] != b' ' && (i == 0 || b[i - 1] == b' '))
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
        let mut down = port("pod-with-long-name", None, 0);
        down.state = PortState::Down;
        down.mode = "none".to_string();
        down.error = Some("interface 'pod-with-long-name' not found".to_string());
        let mut zc = port("eth1", Some("02:00:00:00:00:0a"), 7);
        zc.zero_copy = true;
        zc.worker = 1;
        let text = ports_text(&[port("pod1", Some("02:00:00:00:00:01"), 3), down, zc]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["NAME", "TYPE", "MODE", "STATE", "WORKER", "MAC", "LEARNED"]
        );
        // Every left-aligned column starts at the same offset on every row.
        let header = word_starts(lines[0]);
        for row in &lines[1..4] {
            let starts = word_starts(row);
            assert_eq!(starts.len(), 7, "{row}");
            for col in [0, 1, 2, 3, 5] {
                assert_eq!(starts[col], header[col], "column {col} of {row:?}");
            }
            // Right-aligned columns end where their header ends.
            assert_eq!(row.len(), lines[0].len(), "{row:?}");
        }
        assert!(lines[1].starts_with("pod1 "));
        assert!(
            lines[2].contains(" - "),
            "missing MAC shows as '-': {}",
            lines[2]
        );
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
                mac_aging_secs: 300,
                mac_limit: 4096,
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
        };
        let text = show_text(&show);
        for needle in [
            "vswitchd    0.1.0 (protocol 1)\n",
            "pid         4242\n",
            "uptime      1h02m05s\n",
            "socket      /run/vswitch/vswitchd.sock\n",
            "state file  /var/lib/vswitch/state.json\n",
            "poll mode   adaptive\n",
            "mac aging   5m00s\n",
            "mac limit   4096\n",
            "ID  CORE  PORTS      POOL  FRAMES  FREE  IN_RINGS  IN_FLIGHT  ERRORS\n",
            " 0     2  pod1,pod2  umem    4096  4000        64         32       0\n",
            "NAME  TYPE   MODE    STATE  WORKER  MAC  LEARNED\n",
            "pod2  afxdp  native  up          0  -          0\n",
            "FDB: 2 static, 5 learned\n",
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
        assert!(v[0].get("mac").is_none());
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
