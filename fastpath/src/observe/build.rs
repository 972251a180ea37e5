//! Frames built from a description, for `vswitchctl trace inject`, with
//! etherparse's packet builder (checksums and lengths right).

use std::net::IpAddr;

use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder};

/// What a described packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// TCP with these flag bits (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08,
    /// ACK 0x10).
    Tcp(u8),
    Udp,
    /// An ICMP or ICMPv6 echo request.
    Echo,
    /// An ARP request for `dst`.
    Arp,
}

/// A packet to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub proto: Proto,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub ttl: u8,
}

/// The frame; fails only for mixed address families or IPv6 ARP.
pub fn build(p: &Packet) -> Result<Vec<u8>, String> {
    let eth = PacketBuilder::ethernet2(p.src_mac, p.dst_mac);
    let mut out = Vec::new();
    let written = match (p.proto, p.src, p.dst) {
        (Proto::Arp, IpAddr::V4(s), IpAddr::V4(d)) => {
            let arp = ArpPacket::new(
                ArpHardwareId::ETHERNET,
                EtherType::IPV4,
                ArpOperation::REQUEST,
                &p.src_mac,
                &s.octets(),
                &[0; 6],
                &d.octets(),
            )
            .map_err(|e| e.to_string())?;
            eth.arp(arp).write(&mut out)
        }
        (Proto::Arp, ..) => return Err("ARP is IPv4 only".into()),
        (proto, IpAddr::V4(s), IpAddr::V4(d)) => {
            let ip = eth.ipv4(s.octets(), d.octets(), p.ttl);
            match proto {
                Proto::Tcp(f) => tcp(ip.tcp(p.sport, p.dport, 1, 64240), f).write(&mut out, &[]),
                Proto::Udp => ip.udp(p.sport, p.dport).write(&mut out, &[]),
                _ => ip.icmpv4_echo_request(1, 1).write(&mut out, &[0; 8]),
            }
        }
        (proto, IpAddr::V6(s), IpAddr::V6(d)) => {
            let ip = eth.ipv6(s.octets(), d.octets(), p.ttl);
            match proto {
                Proto::Tcp(f) => tcp(ip.tcp(p.sport, p.dport, 1, 64240), f).write(&mut out, &[]),
                Proto::Udp => ip.udp(p.sport, p.dport).write(&mut out, &[]),
                _ => ip.icmpv6_echo_request(1, 1).write(&mut out, &[0; 8]),
            }
        }
        _ => {
            return Err(format!(
                "{} and {} are not of one address family",
                p.src, p.dst
            ));
        }
    };
    written.map_err(|e| e.to_string())?;
    Ok(out)
}

fn tcp(
    mut b: etherparse::PacketBuilderStep<etherparse::TcpHeader>,
    flags: u8,
) -> etherparse::PacketBuilderStep<etherparse::TcpHeader> {
    if flags & 0x01 != 0 {
        b = b.fin();
    }
    if flags & 0x02 != 0 {
        b = b.syn();
    }
    if flags & 0x04 != 0 {
        b = b.rst();
    }
    if flags & 0x08 != 0 {
        b = b.psh();
    }
    if flags & 0x10 != 0 {
        b = b.ack(1);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::describe::describe;

    #[test]
    fn builds_what_it_is_told() {
        let mut p = Packet {
            proto: Proto::Tcp(0x02),
            src: "10.244.1.11".parse().unwrap(),
            dst: "10.96.0.10".parse().unwrap(),
            sport: 40000,
            dport: 80,
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            ttl: 64,
        };
        let d = describe(&build(&p).unwrap());
        assert!(
            d.contains("IPv4 10.244.1.11:40000 > 10.96.0.10:80 TCP [S], ttl 64"),
            "{d}"
        );
        p.proto = Proto::Arp;
        let d = describe(&build(&p).unwrap());
        assert!(d.contains("ARP who-has 10.96.0.10 tell 10.244.1.11"), "{d}");
        p.dst = "fd00::1".parse().unwrap();
        assert!(build(&p).is_err());
        p.src = "fd00::2".parse().unwrap();
        p.proto = Proto::Udp;
        let d = describe(&build(&p).unwrap());
        assert!(d.contains("IPv6 [fd00::2]:40000 > [fd00::1]:80 UDP"), "{d}");
    }
}
