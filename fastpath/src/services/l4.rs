//! TCP and UDP over IPv4 as the Service stage rewrites them: address and
//! port translation with incremental checksums (RFC 1624), and the TCP
//! reset a Service without endpoints answers with.
//!
//! Like [`crate::wire`], these work on the bytes in place; callers check
//! lengths first (the header of the transport protocol must be whole).

use crate::MacKey;
use crate::wire::checksum::{apply_delta, delta32};
use crate::wire::ipv4::{self, Ipv4};
use crate::wire::l4::{self, Tcp, Udp, tcp, udp};
use crate::wire::{ETH_LEN, ETHERTYPE_IPV4, read_u16, write_macs, write_u16};

/// Translates the TCP or UDP packet `ip` (an IPv4 header of `ihl` bytes,
/// then the whole transport header) to source `src:sport` and destination
/// `dst:dport`, updating the IP and transport checksums incrementally. A
/// UDP checksum of 0 (none) stays 0.
///
/// With `partial` (a GSO frame), the transport checksum field holds the
/// pseudo-header sum that each segment's checksum will start from: only
/// the addresses enter it (ports are not in the pseudo-header), and it is
/// a sum, not its complement.
#[inline]
pub fn ipv4_nat(
    ip: &mut [u8],
    ihl: usize,
    (src, sport): (u32, u16),
    (dst, dport): (u32, u16),
    partial: bool,
) {
    let Some(mut v) = Ipv4::new(&mut *ip) else {
        return;
    };
    let proto = v.protocol();
    let addr_delta = v.set_addrs(src, dst);
    let seg = &mut ip[ihl..];
    let (old_sport, old_dport) = (read_u16(seg, l4::SPORT), read_u16(seg, l4::DPORT));
    let port_delta =
        u32::from(!old_sport) + u32::from(!old_dport) + u32::from(sport) + u32::from(dport);
    let delta = addr_delta + port_delta;
    if partial {
        if let Some(mut t) = Tcp::new(&mut *seg).filter(|_| proto == tcp::PROTO) {
            t.set_checksum(!apply_delta(!t.checksum(), addr_delta));
            t.set_ports(sport, dport);
        } else if let Some(mut u) = Udp::new(&mut *seg).filter(|_| proto == udp::PROTO) {
            u.set_checksum(!apply_delta(!u.checksum(), addr_delta));
            u.set_ports(sport, dport);
        }
        return;
    }
    match proto {
        tcp::PROTO => {
            if let Some(mut t) = Tcp::new(seg) {
                t.set_checksum(apply_delta(t.checksum(), delta));
                t.set_ports(sport, dport);
            }
        }
        udp::PROTO => {
            if let Some(mut u) = Udp::new(seg) {
                if u.checksum() != 0 {
                    // 0 means "no checksum" in UDP; its ones'-complement twin.
                    let c = apply_delta(u.checksum(), delta);
                    u.set_checksum(if c == 0 { 0xffff } else { c });
                }
                u.set_ports(sport, dport);
            }
        }
        _ => {}
    }
}

/// Updates the checksum at `b[at..at + 2]` for 32-bit words that changed
/// from `old` to `new` (addresses, or ports widened to 32 bits).
#[inline]
pub fn adjust_checksum(b: &mut [u8], at: usize, old: &[u32], new: &[u32]) {
    let c = apply_delta(read_u16(b, at), delta32(old, new));
    write_u16(b, at, c);
}

/// Turns the TCP segment in `frame` (IPv4 header of `ihl` bytes, `total`
/// bytes of IP packet) into the RST that refuses it, addressed back to its
/// sender from the address it was sent to (RFC 9293 3.10.7.1). Returns the
/// new frame length.
pub fn tcp_rst_in_place(
    frame: &mut [u8],
    ihl: usize,
    total: usize,
    eth_dst: MacKey,
    eth_src: MacKey,
) -> usize {
    let ip = Ipv4::new(&frame[ETH_LEN..]).expect("checked by the Service stage");
    let (src, dst) = (ip.src(), ip.dst());
    let seg = ip.payload(ihl, total);
    let t = Tcp::new(seg).expect("checked by the Service stage");
    let flags = t.flags();
    let payload = seg.len().saturating_sub(t.header_len()) as u32;
    let (rseq, rack, rflags) = if flags & tcp::ACK_FLAG != 0 {
        (t.ack(), 0, tcp::RST)
    } else {
        let syn_fin = u32::from(flags & tcp::SYN != 0) + u32::from(flags & tcp::FIN != 0);
        let seq = t.seq().wrapping_add(payload + syn_fin);
        (0, seq, tcp::RST | tcp::ACK_FLAG)
    };
    let (sport, dport) = (t.sport(), t.dport());
    write_macs(frame, eth_dst, eth_src);
    write_u16(frame, 12, ETHERTYPE_IPV4);
    let len = ipv4::MIN_LEN + tcp::MIN_LEN;
    let ip = &mut frame[ETH_LEN..ETH_LEN + len];
    Ipv4::write(&mut *ip, len as u16, tcp::PROTO, dst, src);
    let seg = &mut ip[ipv4::MIN_LEN..];
    Tcp::write(&mut *seg, dport, sport, rseq, rack, rflags);
    let c = l4::ipv4_checksum(dst, src, tcp::PROTO, seg);
    write_u16(seg, tcp::CHECKSUM, c);
    ETH_LEN + len
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    fn frame(tcp: bool, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(
            [10, 244, 1, 5],
            [10, 96, 0, 10],
            64,
        );
        let mut out = Vec::new();
        if tcp {
            b.tcp(40000, 80, 1000, 64240)
                .syn()
                .write(&mut out, payload)
                .unwrap();
        } else {
            b.udp(40000, 53).write(&mut out, payload).unwrap();
        }
        out
    }

    /// Checks every checksum of the frame against etherparse's own
    /// computation.
    fn assert_checksums(f: &[u8]) {
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
            panic!("not IPv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum(), "IP checksum");
        match p.transport {
            Some(TransportSlice::Tcp(t)) => {
                let want = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
                assert_eq!(t.checksum(), want, "TCP checksum");
            }
            Some(TransportSlice::Udp(u)) => {
                if u.checksum() != 0 {
                    let want = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
                    assert_eq!(u.checksum(), want, "UDP checksum");
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn nat_rewrites_addresses_ports_and_checksums() {
        for tcp in [true, false] {
            for payload in [&b""[..], b"hello", b"odd length payload!"] {
                let mut f = frame(tcp, payload);
                assert_checksums(&f);
                let (src, dst) = (0x0af4_0101, 0x0af4_0207);
                ipv4_nat(&mut f[ETH_LEN..], 20, (src, 61000), (dst, 8080), false);
                assert_checksums(&f);
                let p = SlicedPacket::from_ethernet(&f).unwrap();
                let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
                    panic!()
                };
                assert_eq!(u32::from(ip.header().source_addr()), src);
                assert_eq!(u32::from(ip.header().destination_addr()), dst);
                let (s, d) = match p.transport {
                    Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
                    Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
                    _ => panic!(),
                };
                assert_eq!((s, d), (61000, 8080));
            }
        }
    }

    #[test]
    fn nat_keeps_a_missing_udp_checksum_missing() {
        let mut f = frame(false, b"x");
        write_u16(&mut f, ETH_LEN + 20 + udp::CHECKSUM, 0);
        ipv4_nat(&mut f[ETH_LEN..], 20, (1, 2), (3, 4), false);
        assert_eq!(read_u16(&f, ETH_LEN + 20 + udp::CHECKSUM), 0);
    }

    #[test]
    fn nat_and_back_restores_the_packet() {
        let orig = frame(true, b"abc");
        let mut f = orig.clone();
        ipv4_nat(&mut f[ETH_LEN..], 20, (9, 9), (9, 9), false);
        ipv4_nat(
            &mut f[ETH_LEN..],
            20,
            (0x0af4_0105, 40000),
            (0x0a60_000a, 80),
            false,
        );
        assert_eq!(f, orig);
    }

    /// A GSO frame's checksum field holds the pseudo-header sum each
    /// segment's checksum starts from: NAT must leave it the sum for the
    /// new addresses (ports are not in it). The switch's own segmentation
    /// recomputes every checksum, and a receiving pod trusts a partial one,
    /// so only this test sees the field: a stack that forwards the frame on
    /// (out of a NIC that completes the checksum) would send it wrong.
    #[test]
    fn nat_of_a_partial_checksum_keeps_it_the_pseudo_header_sum() {
        use crate::wire::checksum::{fold, halves};
        let pseudo = |f: &[u8], proto: u8| {
            let ip = Ipv4::new(&f[ETH_LEN..]).unwrap();
            let len = f.len() - ETH_LEN - 20;
            !fold(halves(ip.src()) + halves(ip.dst()) + u32::from(proto) + len as u32)
        };
        for (tcp, at, proto) in [(true, tcp::CHECKSUM, 6), (false, udp::CHECKSUM, 17)] {
            let mut f = frame(tcp, &[3; 3000]);
            let field = ETH_LEN + 20 + at;
            let sum = pseudo(&f, proto);
            write_u16(&mut f, field, sum);
            let nat = ((0x0af4_0101, 61000), (0x0af4_0207, 8080));
            ipv4_nat(&mut f[ETH_LEN..], 20, nat.0, nat.1, true);
            assert_eq!(read_u16(&f, field), pseudo(&f, proto), "tcp {tcp}");
            assert_eq!(read_u16(&f, ETH_LEN + 20), 61000);
            assert_eq!(read_u16(&f, ETH_LEN + 22), 8080);
            let ip = Ipv4::new(&f[ETH_LEN..]).unwrap();
            assert!(ip.checksum_ok(20), "the IP header checksum stays whole");
        }
    }

    #[test]
    fn rst_answers_a_syn_with_rst_ack() {
        let mut f = frame(true, b"");
        let total = f.len() - ETH_LEN;
        let n = tcp_rst_in_place(&mut f, 20, total, 0x0200_0000_0002, 0x0200_0000_0009);
        f.truncate(n);
        assert_checksums(&f);
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(TransportSlice::Tcp(t)) = p.transport else {
            panic!()
        };
        assert!(t.rst() && t.ack() && !t.syn());
        assert_eq!((t.source_port(), t.destination_port()), (80, 40000));
        assert_eq!(t.acknowledgment_number(), 1001);
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
            panic!()
        };
        assert_eq!(ip.header().source_addr().octets(), [10, 96, 0, 10]);
        assert_eq!(ip.header().destination_addr().octets(), [10, 244, 1, 5]);
        assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 2]);
    }
}
