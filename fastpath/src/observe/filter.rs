//! Which frames a capture or live trace keeps: a small subset of tcpdump's
//! filter language, matched against the outer headers.
//!
//! ```text
//! EXPR  := TERM { "and" TERM }
//! TERM  := [ "not" ] PRIM
//! PRIM  := arp | ip | ip6 | icmp | icmp6 | tcp | udp | vxlan
//!        | [src|dst] host ADDR | src ADDR | dst ADDR
//!        | [src|dst] port N
//!        | ether [src|dst|host] MAC
//! ```
//!
//! An empty expression keeps every frame. There is no `or` (run two
//! captures) and no parentheses.

use std::net::IpAddr;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

/// Which end of a packet a primitive looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Either,
    Src,
    Dst,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Prim {
    Arp,
    Ip,
    Ip6,
    Icmp,
    Icmp6,
    Tcp,
    Udp,
    Vxlan,
    Host(End, IpAddr),
    Port(End, u16),
    Ether(End, [u8; 6]),
}

/// A parsed filter (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    terms: Vec<(bool, Prim)>,
    text: String,
}

impl Filter {
    /// Parses an expression; the error says which word was not understood.
    pub fn parse(expr: &str) -> Result<Filter, String> {
        let words: Vec<&str> = expr.split_whitespace().collect();
        let mut terms = Vec::new();
        let mut i = 0;
        while i < words.len() {
            if !terms.is_empty() {
                if words[i] != "and" {
                    let or = if words[i] == "or" {
                        "; there is no 'or'"
                    } else {
                        ""
                    };
                    return Err(format!(
                        "filter: expected 'and' before '{}' (terms are joined by 'and'{or})",
                        words[i]
                    ));
                }
                i += 1;
            }
            let neg = words.get(i) == Some(&"not");
            if neg {
                i += 1;
            }
            let (prim, used) = prim(&words[i.min(words.len())..])?;
            terms.push((neg, prim));
            i += used;
        }
        Ok(Filter {
            terms,
            text: words.join(" "),
        })
    }

    /// The expression, normalised.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True when the frame passes every term.
    pub fn matches(&self, frame: &[u8]) -> bool {
        if self.terms.is_empty() {
            return true;
        }
        let pkt = SlicedPacket::from_ethernet(frame).ok();
        self.terms
            .iter()
            .all(|(neg, p)| one(p, frame, pkt.as_ref()) != *neg)
    }
}

fn end_of(w: &str) -> Option<End> {
    match w {
        "src" => Some(End::Src),
        "dst" => Some(End::Dst),
        _ => None,
    }
}

/// One primitive from the start of `w`, and how many words it took.
fn prim(w: &[&str]) -> Result<(Prim, usize), String> {
    let Some(&first) = w.first() else {
        return Err("filter: the expression ends where a term should be".into());
    };
    let arg = |i: usize, what: &str| {
        w.get(i)
            .copied()
            .ok_or_else(|| format!("filter: '{}' needs {what}", w[..i].join(" ")))
    };
    let ip = |s: &str| {
        s.parse::<IpAddr>()
            .map_err(|_| format!("filter: '{s}' is not an IP address"))
    };
    let port = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("filter: '{s}' is not a port number (0-65535)"))
    };
    Ok(match first {
        "arp" => (Prim::Arp, 1),
        "ip" => (Prim::Ip, 1),
        "ip6" => (Prim::Ip6, 1),
        "icmp" => (Prim::Icmp, 1),
        "icmp6" => (Prim::Icmp6, 1),
        "tcp" => (Prim::Tcp, 1),
        "udp" => (Prim::Udp, 1),
        "vxlan" => (Prim::Vxlan, 1),
        "host" => (Prim::Host(End::Either, ip(arg(1, "an address")?)?), 2),
        "port" => (Prim::Port(End::Either, port(arg(1, "a port")?)?), 2),
        "src" | "dst" => {
            let end = end_of(first).unwrap_or(End::Either);
            match arg(1, "host ADDR, port N or an address")? {
                "host" => (Prim::Host(end, ip(arg(2, "an address")?)?), 3),
                "port" => (Prim::Port(end, port(arg(2, "a port")?)?), 3),
                a => (Prim::Host(end, ip(a)?), 2),
            }
        }
        "ether" => {
            let (end, at) = match arg(1, "src, dst or host and a MAC")? {
                "host" => (End::Either, 2),
                e => (
                    end_of(e)
                        .ok_or_else(|| format!("filter: 'ether {e}': expected src, dst or host"))?,
                    2,
                ),
            };
            let m = arg(at, "a MAC address")?;
            (Prim::Ether(end, parse_mac(m)?), at + 1)
        }
        other => return Err(format!("filter: unknown term '{other}'")),
    })
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("filter: '{s}' is not a MAC address");
    let mut out = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    for (o, p) in out.iter_mut().zip(parts) {
        *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn ends_match<T: PartialEq>(end: End, want: T, src: T, dst: T) -> bool {
    match end {
        End::Either => src == want || dst == want,
        End::Src => src == want,
        End::Dst => dst == want,
    }
}

fn one(p: &Prim, frame: &[u8], pkt: Option<&SlicedPacket<'_>>) -> bool {
    if let Prim::Ether(end, m) = p {
        return frame.len() >= 12 && ends_match(*end, &m[..], &frame[6..12], &frame[..6]);
    }
    let Some(pkt) = pkt else {
        return false;
    };
    let ports = match &pkt.transport {
        Some(TransportSlice::Tcp(t)) => Some((t.source_port(), t.destination_port())),
        Some(TransportSlice::Udp(u)) => Some((u.source_port(), u.destination_port())),
        _ => None,
    };
    let addrs: Option<(IpAddr, IpAddr)> = match &pkt.net {
        Some(NetSlice::Ipv4(ip)) => Some((
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        )),
        Some(NetSlice::Ipv6(ip)) => Some((
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        )),
        _ => None,
    };
    match p {
        Prim::Arp => matches!(pkt.net, Some(NetSlice::Arp(_))),
        Prim::Ip => matches!(pkt.net, Some(NetSlice::Ipv4(_))),
        Prim::Ip6 => matches!(pkt.net, Some(NetSlice::Ipv6(_))),
        Prim::Icmp => matches!(pkt.transport, Some(TransportSlice::Icmpv4(_))),
        Prim::Icmp6 => matches!(pkt.transport, Some(TransportSlice::Icmpv6(_))),
        Prim::Tcp => matches!(pkt.transport, Some(TransportSlice::Tcp(_))),
        Prim::Udp => matches!(pkt.transport, Some(TransportSlice::Udp(_))),
        Prim::Vxlan => {
            matches!(&pkt.transport, Some(TransportSlice::Udp(u)) if u.destination_port() == 4789)
        }
        Prim::Host(end, a) => addrs.is_some_and(|(s, d)| ends_match(*end, *a, s, d)),
        Prim::Port(end, n) => ports.is_some_and(|(s, d)| ends_match(*end, *n, s, d)),
        Prim::Ether(..) => unreachable!("handled above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let tcp = crate::test_frames::v4(true, b"x");
        let udp = crate::test_frames::v4(false, b"x");
        let yes = |e: &str, f: &[u8]| Filter::parse(e).unwrap().matches(f);
        assert!(yes("", &tcp));
        assert!(yes("tcp", &tcp) && !yes("tcp", &udp));
        assert!(yes("ip and not udp and dst port 80", &tcp));
        assert!(yes("src host 10.244.1.5 and dst 10.244.1.6", &tcp));
        assert!(!yes("src 10.244.1.6", &tcp));
        assert!(yes("port 40000", &udp) && !yes("port 80", &udp));
        assert!(yes("ether src 02:00:00:00:00:01", &tcp));
        assert!(!yes("ether dst 02:00:00:00:00:01", &tcp));
        assert!(!yes("arp", &tcp) && !yes("ip6", &tcp));
        assert_eq!(
            Filter::parse(" tcp  and port 80 ").unwrap().text(),
            "tcp and port 80"
        );
    }

    #[test]
    fn bad_expressions_say_why() {
        for (e, want) in [
            ("tcp or udp", "expected 'and'"),
            ("host", "needs an address"),
            ("host 1.2.3", "not an IP address"),
            ("port 70000", "not a port number"),
            ("ether foo 1:2", "expected src, dst or host"),
            ("ether src 1:2", "not a MAC address"),
            ("tcp and", "ends where a term"),
            ("bogus", "unknown term 'bogus'"),
            ("not", "ends where a term"),
        ] {
            let err = Filter::parse(e).unwrap_err();
            assert!(err.contains(want), "{e}: {err}");
        }
    }
}
