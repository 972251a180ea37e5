//! TCP and UDP over IPv4 as the Service stage rewrites them: address and
//! port translation with incremental checksums (RFC 1624), and the TCP
//! reset a Service without endpoints answers with.
//!
//! Like [`crate::wire`], these work on the bytes in place; callers check
//! lengths first (the header of the transport protocol must be whole).

use crate::MacKey;
use crate::wire::{
    ETH_LEN, ETHERTYPE_IPV4, checksum, fold, ipv4, read_u16, read_u32, sum, write_ipv4_header,
    write_macs, write_u16, write_u32,
};

/// Offsets inside a TCP or UDP header.
pub const SPORT: usize = 0;
pub const DPORT: usize = 2;
pub mod tcp {
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const MIN_LEN: usize = 20;
    pub const PROTO: u8 = 6;
}
pub mod udp {
    pub const LEN: usize = 4;
    pub const CHECKSUM: usize = 6;
    pub const HDR_LEN: usize = 8;
    pub const PROTO: u8 = 17;
}

/// Ones'-complement sum of the 16-bit halves of an address.
#[inline]
fn halves(a: u32) -> u32 {
    (a >> 16) + (a & 0xffff)
}

/// Translates the TCP or UDP packet `ip` (an IPv4 header of `ihl` bytes,
/// then the transport header) to source `src:sport` and destination
/// `dst:dport`, updating the IP and transport checksums incrementally. A
/// UDP checksum of 0 (none) stays 0.
#[inline]
pub fn ipv4_nat(ip: &mut [u8], ihl: usize, src: u32, sport: u16, dst: u32, dport: u16) {
    let old_src = read_u32(ip, ipv4::SRC);
    let old_dst = read_u32(ip, ipv4::DST);
    let l4 = ihl;
    let old_sport = read_u16(ip, l4 + SPORT);
    let old_dport = read_u16(ip, l4 + DPORT);
    // RFC 1624 eqn. 3 over every changed word: HC' = ~(~HC + Σ~m + Σm').
    let addr_delta = halves(!old_src) + halves(!old_dst) + halves(src) + halves(dst);
    let hc = read_u16(ip, ipv4::CHECKSUM);
    write_u16(ip, ipv4::CHECKSUM, fold(u32::from(!hc) + addr_delta));
    write_u32(ip, ipv4::SRC, src);
    write_u32(ip, ipv4::DST, dst);
    let port_delta =
        u32::from(!old_sport) + u32::from(!old_dport) + u32::from(sport) + u32::from(dport);
    let at = match ip[ipv4::PROTO] {
        tcp::PROTO => Some(l4 + tcp::CHECKSUM),
        udp::PROTO if read_u16(ip, l4 + udp::CHECKSUM) != 0 => Some(l4 + udp::CHECKSUM),
        _ => None,
    };
    if let Some(at) = at {
        let c = read_u16(ip, at);
        let mut new = fold(u32::from(!c) + addr_delta + port_delta);
        if new == 0 && ip[ipv4::PROTO] == udp::PROTO {
            // 0 means "no checksum" in UDP; its ones'-complement twin.
            new = 0xffff;
        }
        write_u16(ip, at, new);
    }
    write_u16(ip, l4 + SPORT, sport);
    write_u16(ip, l4 + DPORT, dport);
}

/// Rewrites the source and destination of the IPv4 header at `ip[at..]`
/// from `old_src`/`old_dst` to `src`/`dst`, updating its header checksum
/// incrementally (the transport checksum is the caller's).
#[inline]
pub fn rewrite_addrs(ip: &mut [u8], at: usize, old_src: u32, old_dst: u32, src: u32, dst: u32) {
    let delta = halves(!old_src) + halves(!old_dst) + halves(src) + halves(dst);
    let hc = read_u16(ip, at + ipv4::CHECKSUM);
    write_u16(ip, at + ipv4::CHECKSUM, fold(u32::from(!hc) + delta));
    write_u32(ip, at + ipv4::SRC, src);
    write_u32(ip, at + ipv4::DST, dst);
}

/// Updates the checksum at `b[at..at + 2]` for 32-bit words that changed
/// from `old` to `new` (addresses, or ports widened to 32 bits).
#[inline]
pub fn adjust_checksum(b: &mut [u8], at: usize, old: &[u32], new: &[u32]) {
    let mut acc = u32::from(!read_u16(b, at));
    for (&o, &n) in old.iter().zip(new) {
        acc += halves(!o) + halves(n);
    }
    write_u16(b, at, fold(acc));
}

/// The checksum of a TCP or UDP segment `seg` between `src` and `dst`.
pub fn l4_checksum(src: u32, dst: u32, proto: u8, seg: &[u8]) -> u16 {
    let mut acc = halves(src) + halves(dst) + u32::from(proto) + seg.len() as u32;
    acc = sum(seg, acc);
    fold(acc)
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
    let ip = &frame[ETH_LEN..];
    let src = read_u32(ip, ipv4::SRC);
    let dst = read_u32(ip, ipv4::DST);
    let seg = &ip[ihl..total];
    let sport = read_u16(seg, SPORT);
    let dport = read_u16(seg, DPORT);
    let seq = read_u32(seg, tcp::SEQ);
    let ack = read_u32(seg, tcp::ACK);
    let flags = seg[tcp::FLAGS];
    let data_off = usize::from(seg[tcp::OFFSET] >> 4) * 4;
    let payload = seg.len().saturating_sub(data_off) as u32;
    let (rseq, rack, rflags) = if flags & 0x10 != 0 {
        (ack, 0, 0x04)
    } else {
        let len = payload + u32::from(flags & 0x02 != 0) + u32::from(flags & 0x01 != 0);
        (0, seq.wrapping_add(len), 0x14)
    };
    write_macs(frame, eth_dst, eth_src);
    write_u16(frame, 12, ETHERTYPE_IPV4);
    let len = ipv4::MIN_LEN + tcp::MIN_LEN;
    let ip = &mut frame[ETH_LEN..ETH_LEN + len];
    write_ipv4_header(ip, len as u16, tcp::PROTO, dst, src);
    let t = &mut ip[ipv4::MIN_LEN..];
    write_u16(t, SPORT, dport);
    write_u16(t, DPORT, sport);
    write_u32(t, tcp::SEQ, rseq);
    write_u32(t, tcp::ACK, rack);
    t[tcp::OFFSET] = 5 << 4;
    t[tcp::FLAGS] = rflags;
    write_u16(t, tcp::WINDOW, 0);
    write_u32(t, tcp::CHECKSUM, 0); // checksum and urgent pointer
    let c = l4_checksum(dst, src, tcp::PROTO, t);
    write_u16(t, tcp::CHECKSUM, c);
    ETH_LEN + len
}

/// Whether the IPv4 header `ip` (of `ihl` bytes) has a valid checksum.
#[inline]
pub fn ipv4_header_ok(ip: &[u8], ihl: usize) -> bool {
    checksum(&ip[..ihl]) == 0
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
                ipv4_nat(&mut f[ETH_LEN..], 20, src, 61000, dst, 8080);
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
        ipv4_nat(&mut f[ETH_LEN..], 20, 1, 2, 3, 4);
        assert_eq!(read_u16(&f, ETH_LEN + 20 + udp::CHECKSUM), 0);
    }

    #[test]
    fn nat_and_back_restores_the_packet() {
        let orig = frame(true, b"abc");
        let mut f = orig.clone();
        ipv4_nat(&mut f[ETH_LEN..], 20, 9, 9, 9, 9);
        ipv4_nat(&mut f[ETH_LEN..], 20, 0x0af4_0105, 40000, 0x0a60_000a, 80);
        assert_eq!(f, orig);
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
