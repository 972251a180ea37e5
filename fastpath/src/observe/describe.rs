//! One line about a frame, as tcpdump would print it: MACs, addresses,
//! ports, flags. Read with etherparse (an independent parser: what the
//! trace shows is not what the stages believe, but what the bytes say).

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

/// The VXLAN UDP port.
const VXLAN_PORT: u16 = 4789;

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac(b: &[u8]) -> String {
    let mut s = String::with_capacity(17);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// A one-line description of an Ethernet frame.
pub fn describe(frame: &[u8]) -> String {
    let mut s = String::new();
    line(frame, &mut s, 0);
    if s.contains(['\n', '\r']) {
        s = s.replace(['\n', '\r'], " ");
    }
    s
}

fn line(frame: &[u8], s: &mut String, depth: u8) {
    if frame.len() < 14 {
        let _ = write!(s, "runt frame, {} bytes", frame.len());
        return;
    }
    let _ = write!(s, "{} > {}, ", mac(&frame[6..12]), mac(&frame[..6]));
    let pkt = match SlicedPacket::from_ethernet(frame) {
        Ok(p) => p,
        Err(e) => {
            let ty = u16::from_be_bytes([frame[12], frame[13]]);
            let _ = write!(
                s,
                "ethertype 0x{ty:04x}, {} bytes (malformed: {e})",
                frame.len()
            );
            return;
        }
    };
    match &pkt.net {
        Some(NetSlice::Arp(a)) => match a.to_packet().try_eth_ipv4() {
            Ok(a) if a.operation == etherparse::ArpOperation::REQUEST => {
                let _ = write!(
                    s,
                    "ARP who-has {} tell {}",
                    a.target_ipv4_addr(),
                    a.sender_ipv4_addr()
                );
            }
            Ok(a) => {
                let _ = write!(
                    s,
                    "ARP reply {} is-at {}",
                    a.sender_ipv4_addr(),
                    mac(&a.sender_mac)
                );
            }
            Err(_) => s.push_str("ARP (not Ethernet/IPv4)"),
        },
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            let _ = write!(s, "IPv4 ");
            ends(
                s,
                &pkt.transport,
                h.source_addr().into(),
                h.destination_addr().into(),
            );
            let _ = write!(s, ", ttl {}", h.ttl());
            if h.is_fragmenting_payload() {
                s.push_str(", fragment");
            }
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            let _ = write!(s, "IPv6 ");
            ends(
                s,
                &pkt.transport,
                h.source_addr().into(),
                h.destination_addr().into(),
            );
            let _ = write!(s, ", hlim {}", h.hop_limit());
        }
        None => {
            let ty = u16::from_be_bytes([frame[12], frame[13]]);
            let _ = write!(s, "ethertype 0x{ty:04x}");
        }
    }
    let _ = write!(s, ", {} bytes", frame.len());
    // A VXLAN packet: what it carries.
    if let Some(TransportSlice::Udp(u)) = &pkt.transport
        && u.destination_port() == VXLAN_PORT
        && depth == 0
        && u.payload().len() >= 8
    {
        let p = u.payload();
        let vni = u32::from_be_bytes([0, p[4], p[5], p[6]]);
        let _ = write!(s, "; VXLAN vni {vni}: ");
        line(&p[8..], s, depth + 1);
    }
}

/// `src[:port] > dst[:port] PROTO details` (IPv6 with ports as
/// `[addr]:port`).
fn ends(s: &mut String, t: &Option<TransportSlice<'_>>, src: IpAddr, dst: IpAddr) {
    let at = |a: IpAddr, p: u16| SocketAddr::new(a, p);
    match t {
        Some(TransportSlice::Tcp(t)) => {
            let mut flags = String::new();
            for (on, c) in [
                (t.syn(), 'S'),
                (t.fin(), 'F'),
                (t.rst(), 'R'),
                (t.psh(), 'P'),
                (t.ack(), '.'),
            ] {
                if on {
                    flags.push(c);
                }
            }
            let _ = write!(
                s,
                "{} > {} TCP [{flags}]",
                at(src, t.source_port()),
                at(dst, t.destination_port())
            );
        }
        Some(TransportSlice::Udp(u)) => {
            let _ = write!(
                s,
                "{} > {} UDP",
                at(src, u.source_port()),
                at(dst, u.destination_port())
            );
        }
        Some(TransportSlice::Icmpv4(i)) => {
            use etherparse::Icmpv4Type as T;
            let what = match i.icmp_type() {
                T::EchoRequest(e) => format!("echo request, id {}, seq {}", e.id, e.seq),
                T::EchoReply(e) => format!("echo reply, id {}, seq {}", e.id, e.seq),
                T::DestinationUnreachable(u) => format!("unreachable ({:?})", u),
                T::TimeExceeded(c) => format!("time exceeded ({c:?})"),
                other => format!("{other:?}"),
            };
            let _ = write!(s, "{src} > {dst} ICMP {what}");
        }
        Some(TransportSlice::Icmpv6(i)) => {
            use etherparse::Icmpv6Type as T;
            let what = match i.icmp_type() {
                T::EchoRequest(e) => format!("echo request, id {}, seq {}", e.id, e.seq),
                T::EchoReply(e) => format!("echo reply, id {}, seq {}", e.id, e.seq),
                T::NeighborSolicitation => "neighbor solicitation".into(),
                T::NeighborAdvertisement(_) => "neighbor advertisement".into(),
                T::DestinationUnreachable(c) => format!("unreachable ({c:?})"),
                T::PacketTooBig { mtu } => format!("packet too big, mtu {mtu}"),
                T::TimeExceeded(c) => format!("time exceeded ({c:?})"),
                other => format!("{other:?}"),
            };
            let _ = write!(s, "{src} > {dst} ICMPv6 {what}");
        }
        _ => {
            let _ = write!(s, "{src} > {dst}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_tcp_arp_and_garbage() {
        let tcp = crate::test_frames::v4(true, b"hi");
        let d = describe(&tcp);
        assert!(
            d.contains("IPv4 10.244.1.5:40000 > 10.244.1.6:80 TCP"),
            "{d}"
        );
        assert!(
            d.starts_with("02:00:00:00:00:01 > 02:00:00:00:00:02"),
            "{d}"
        );
        assert_eq!(describe(&[1, 2, 3]), "runt frame, 3 bytes");
        let mut bad = tcp.clone();
        bad.truncate(20);
        assert!(describe(&bad).contains("malformed"), "{}", describe(&bad));
    }
}
