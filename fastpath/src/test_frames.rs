//! Frames for unit tests: TCP and UDP over IPv4 and IPv6, built by
//! etherparse (an independent implementation), and checks against it.

use crate::wire::ETH_LEN;
use crate::wire::checksum::{fold, halves, sum};
use crate::wire::l4::{tcp, udp};
use etherparse::{IpHeaders, PacketBuilder, PacketBuilderStep, SlicedPacket, TransportSlice};

const MACS: ([u8; 6], [u8; 6]) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);

/// A TCP or UDP segment over the IP header `ip`, checksums right.
pub(crate) fn segment(ip: PacketBuilderStep<IpHeaders>, tcp: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if tcp {
        ip.tcp(40000, 80, 7, 1000).write(&mut out, payload).unwrap();
    } else {
        ip.udp(40000, 53).write(&mut out, payload).unwrap();
    }
    out
}

pub(crate) fn v4(tcp: bool, payload: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(MACS.0, MACS.1);
    segment(eth.ipv4([10, 244, 1, 5], [10, 244, 1, 6], 64), tcp, payload)
}

pub(crate) fn v6(tcp: bool, payload: &[u8]) -> Vec<u8> {
    let mut src = [0u8; 16];
    src[0] = 0xfd;
    src[15] = 5;
    let mut dst = src;
    dst[15] = 6;
    let eth = PacketBuilder::ethernet2(MACS.0, MACS.1);
    segment(eth.ipv6(src, dst, 64), tcp, payload)
}

/// Where the checksum field is, and the pseudo-header sum a sender's
/// stack would leave there.
pub(crate) fn partial_of(f: &[u8]) -> (usize, u16) {
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let (l4, proto, len, pseudo_addrs) = match &p.net {
        Some(etherparse::NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            let a = halves(u32::from(h.source_addr())) + halves(u32::from(h.destination_addr()));
            let ihl = usize::from(h.ihl()) * 4;
            (ETH_LEN + ihl, h.protocol().0, f.len() - ETH_LEN - ihl, a)
        }
        Some(etherparse::NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            let mut addrs = h.source().to_vec();
            addrs.extend_from_slice(&h.destination());
            (
                ETH_LEN + 40,
                h.next_header().0,
                f.len() - ETH_LEN - 40,
                sum(&addrs, 0),
            )
        }
        _ => panic!(),
    };
    let at = l4
        + if proto == 6 {
            tcp::CHECKSUM
        } else {
            udp::CHECKSUM
        };
    (at, !fold(pseudo_addrs + u32::from(proto) + len as u32))
}

pub(crate) fn verifies(f: &[u8]) -> bool {
    let p = SlicedPacket::from_ethernet(f).unwrap();
    match (&p.net, &p.transport) {
        (Some(etherparse::NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(t))) => {
            let h = ip.header().to_header();
            t.checksum() == t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap()
        }
        (Some(etherparse::NetSlice::Ipv4(ip)), Some(TransportSlice::Udp(u))) => {
            let h = ip.header().to_header();
            u.checksum() == u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap()
        }
        (Some(etherparse::NetSlice::Ipv6(ip)), Some(TransportSlice::Tcp(t))) => {
            let h = ip.header().to_header();
            t.checksum() == t.to_header().calc_checksum_ipv6(&h, t.payload()).unwrap()
        }
        (Some(etherparse::NetSlice::Ipv6(ip)), Some(TransportSlice::Udp(u))) => {
            let h = ip.header().to_header();
            u.checksum() == u.to_header().calc_checksum_ipv6(&h, u.payload()).unwrap()
        }
        other => panic!("{other:?}"),
    }
}
