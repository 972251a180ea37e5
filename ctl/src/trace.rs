//! The protocol of `vswitchctl trace` and `vswitchctl capture`: a frame to
//! run through the switch dry ([`TraceFrame`]), what the switch did with it
//! ([`TraceReport`]), and watches (a capture or live trace started with
//! [`WatchSpec`], read in pieces of [`WatchData`]).

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::mac::MacAddr;

/// A frame for `trace inject`: raw bytes, or a described packet the daemon
/// builds (filling in the MACs the port's pod would use).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TraceFrame {
    /// A whole Ethernet frame, in hexadecimal.
    Hex {
        bytes: String,
    },
    Packet(PacketSpec),
}

/// Transport of a described packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceProto {
    Tcp,
    Udp,
    /// An echo request (ICMP or ICMPv6, by the addresses' family).
    Icmp,
    /// An ARP request for `dst` from `src` (IPv4 only).
    Arp,
}

/// TCP flags of a described packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TcpFlag {
    Syn,
    Ack,
    Fin,
    Rst,
    Psh,
}

/// A described packet (see [`parse_packet`] for its text form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacketSpec {
    pub proto: TraceProto,
    pub src: IpAddr,
    pub dst: IpAddr,
    #[serde(default)]
    pub sport: u16,
    #[serde(default)]
    pub dport: u16,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<TcpFlag>,
    /// Source MAC; by default one the switch learned on the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_mac: Option<MacAddr>,
    /// Destination MAC; by default the neighbour's MAC the switch knows for
    /// `dst`, else the router's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_mac: Option<MacAddr>,
    /// TTL or hop limit (64 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u8>,
}

/// Parses `PROTO SRC[:PORT] to DST[:PORT] [FLAG...]`:
///
/// ```text
/// tcp 10.244.1.11:40000 to 10.96.0.10:80 syn
/// udp [fd00::5]:5353 to [fd00::10]:53
/// icmp 10.244.1.11 to 10.244.2.7
/// arp 10.244.1.11 to 10.244.1.1        (who-has 10.244.1.1)
/// ```
///
/// `->` (quoted: a shell takes `>` for a redirection) may stand for `to`.
/// TCP without flags is a SYN. Addresses must be of one family.
pub fn parse_packet(words: &[String]) -> Result<PacketSpec, String> {
    let usage = "expected PROTO SRC[:PORT] to DST[:PORT] [FLAGS], such as 'tcp 10.244.1.11:40000 to 10.96.0.10:80 syn'";
    let [proto, src, arrow, dst, rest @ ..] = words else {
        return Err(usage.into());
    };
    if arrow == "-" {
        return Err(format!(
            "{usage} (an unquoted '->' is cut by the shell at '>': write 'to' or quote it)"
        ));
    }
    if arrow != "to" && arrow != "->" {
        return Err(usage.into());
    }
    let proto = match proto.to_ascii_lowercase().as_str() {
        "tcp" => TraceProto::Tcp,
        "udp" => TraceProto::Udp,
        "icmp" | "icmp6" | "ping" => TraceProto::Icmp,
        "arp" => TraceProto::Arp,
        p => {
            return Err(format!(
                "unknown protocol '{p}': expected tcp, udp, icmp, arp or hex"
            ));
        }
    };
    let ports = matches!(proto, TraceProto::Tcp | TraceProto::Udp);
    let (src, sport) = end(src, ports)?;
    let (dst, dport) = end(dst, ports)?;
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(format!("{src} and {dst} are not of one address family"));
    }
    if proto == TraceProto::Arp && !src.is_ipv4() {
        return Err("ARP is IPv4 only (IPv6 neighbours use ND)".into());
    }
    let mut flags = Vec::new();
    for f in rest {
        if proto != TraceProto::Tcp {
            return Err(format!("'{f}': only TCP packets take flags"));
        }
        flags.push(match f.to_ascii_lowercase().as_str() {
            "syn" => TcpFlag::Syn,
            "ack" => TcpFlag::Ack,
            "fin" => TcpFlag::Fin,
            "rst" => TcpFlag::Rst,
            "psh" => TcpFlag::Psh,
            other => {
                return Err(format!(
                    "unknown TCP flag '{other}': expected syn, ack, fin, rst or psh"
                ));
            }
        });
    }
    if proto == TraceProto::Tcp && flags.is_empty() {
        flags.push(TcpFlag::Syn);
    }
    Ok(PacketSpec {
        proto,
        src,
        dst,
        sport,
        dport,
        flags,
        src_mac: None,
        dst_mac: None,
        ttl: None,
    })
}

/// `ADDR:PORT` or `[ADDR6]:PORT` when `port`, else `ADDR`.
fn end(s: &str, port: bool) -> Result<(IpAddr, u16), String> {
    if !port {
        let a = s.trim_start_matches('[').trim_end_matches(']');
        return a
            .parse()
            .map(|a| (a, 0))
            .map_err(|_| format!("'{s}' is not an IP address"));
    }
    let sa: std::net::SocketAddr = s
        .parse()
        .map_err(|_| format!("'{s}' is not ADDR:PORT (IPv6: [ADDR]:PORT)"))?;
    if sa.port() == 0 {
        return Err(format!("'{s}': port 0 is not a port packets use"));
    }
    Ok((sa.ip(), sa.port()))
}

/// What one stage did with the packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    pub stage: String,
    /// The packet's fate after the stage: `pending`, `unicast PORT`,
    /// `flood`, `drop REASON`, `consumed`, `held`, `reply`.
    pub verdict: String,
    /// The packet after the stage, when the stage rewrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<String>,
}

/// A frame the switch would send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceSent {
    pub port: String,
    pub frame: String,
}

/// The answer to `trace inject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceReport {
    pub port: String,
    /// The frame as it arrived.
    pub ingress: String,
    pub steps: Vec<TraceStep>,
    /// The final verdict, as in `steps`.
    pub verdict: String,
    pub sent: Vec<TraceSent>,
    /// What else the switch would do or knows (MACs learned, a tracked
    /// flow, where defaults came from).
    pub notes: Vec<String>,
}

/// What a watch records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchKindSpec {
    /// Copies of frames (`vswitchctl capture`).
    Capture,
    /// Each stage's decision about packets arriving (`vswitchctl trace live`).
    Trace,
}

/// Which frames of a port a capture copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Received from the port.
    In,
    /// Sent by the switch on the port.
    Out,
    #[default]
    Both,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::In => "in",
            Direction::Out => "out",
            Direction::Both => "both",
        })
    }
}

/// Default most bytes of each frame a capture keeps.
pub const SNAPLEN_DEFAULT: u32 = 262_144;
/// A watch that has not been read for this long is stopped by the daemon.
pub const WATCH_IDLE_MS: u64 = 10_000;
/// Most watches running at once.
pub const WATCHES_MAX: usize = 8;

/// A capture or live trace to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSpec {
    pub port: String,
    pub kind: WatchKindSpec,
    /// Captures only; a live trace follows arriving packets.
    #[serde(default)]
    pub direction: Direction,
    /// Which frames (see `vswitchctl capture --help`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Stop after this many frames or packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Stop after this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Most bytes of each frame kept (captures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snaplen: Option<u32>,
}

/// A copied frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchFrame {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// `in` or `out`.
    pub dir: Direction,
    /// The frame's length on the wire (`data` may be shorter).
    pub len: u32,
    /// The frame's first bytes, in hexadecimal.
    pub data: String,
}

/// A traced packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchTrace {
    pub ts_ns: u64,
    pub worker: usize,
    pub ingress: String,
    pub steps: Vec<TraceStep>,
}

/// What a watch recorded since the last read.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WatchData {
    pub frames: Vec<WatchFrame>,
    pub traces: Vec<WatchTrace>,
    /// Frames or packets lost so far because the reader fell behind.
    pub dropped: u64,
    /// The watch has ended (count or duration reached, or stopped) and
    /// everything it recorded has been read.
    pub done: bool,
}

/// Lower-case hexadecimal.
pub fn to_hex(b: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// Bytes from hexadecimal (whitespace and `:` between bytes allowed).
pub fn from_hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b':')
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err("hex: an odd number of digits".into());
    }
    digits
        .chunks(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| format!("hex: '{}' is not a hex byte", String::from_utf8_lossy(p)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn packets_parse() {
        let p = parse_packet(&words("tcp 10.244.1.11:40000 to 10.96.0.10:80")).unwrap();
        assert_eq!(
            p,
            parse_packet(&words("tcp 10.244.1.11:40000 -> 10.96.0.10:80")).unwrap()
        );
        assert_eq!(p.proto, TraceProto::Tcp);
        assert_eq!((p.sport, p.dport), (40000, 80));
        assert_eq!(p.flags, vec![TcpFlag::Syn]);
        let p = parse_packet(&words("udp [fd00::5]:5353 -> [fd00::10]:53")).unwrap();
        assert!(p.src.is_ipv6() && p.dport == 53);
        let p = parse_packet(&words("tcp 1.2.3.4:1 -> 5.6.7.8:2 ack fin")).unwrap();
        assert_eq!(p.flags, vec![TcpFlag::Ack, TcpFlag::Fin]);
        let p = parse_packet(&words("icmp 10.0.0.1 -> 10.0.0.2")).unwrap();
        assert_eq!((p.proto, p.sport), (TraceProto::Icmp, 0));
        for (bad, want) in [
            ("tcp 1.2.3.4:1 5.6.7.8:2", "expected PROTO"),
            ("tcp 1.2.3.4:1 - syn", "write 'to' or quote it"),
            ("tcp 1.2.3.4:1 > 5.6.7.8:2", "expected PROTO"),
            ("sctp 1.2.3.4:1 -> 5.6.7.8:2", "unknown protocol"),
            ("tcp 1.2.3.4 -> 5.6.7.8:2", "not ADDR:PORT"),
            ("tcp 1.2.3.4:0 -> 5.6.7.8:2", "port 0"),
            ("udp 1.2.3.4:1 -> [::1]:2", "one address family"),
            ("udp 1.2.3.4:1 -> 5.6.7.8:2 syn", "only TCP"),
            ("tcp 1.2.3.4:1 -> 5.6.7.8:2 urg", "unknown TCP flag"),
            ("arp ::1 -> ::2", "IPv4 only"),
            ("icmp 1.2.3 -> 5.6.7.8", "not an IP address"),
        ] {
            let e = parse_packet(&words(bad)).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn hex_round_trips_and_refuses_garbage() {
        assert_eq!(from_hex("00 1a:ff").unwrap(), vec![0, 0x1a, 0xff]);
        assert_eq!(to_hex(&[0, 0x1a, 0xff]), "001aff");
        assert!(from_hex("abc").unwrap_err().contains("odd"));
        assert!(from_hex("zz").unwrap_err().contains("not a hex byte"));
    }
}
