//! Byte-level helpers for the frames the router rewrites or writes itself.
//!
//! Parsing goes through etherparse's checked slices; this module only holds
//! what etherparse does not: the field offsets the router rewrites in place,
//! the incremental checksum update of RFC 1624, and writers for the frames
//! the switch originates (ARP, ICMP). Every function takes a slice whose
//! length the caller has checked against the named offsets, so none of them
//! panics on a frame that passed the caller's checks.

use std::net::Ipv4Addr;

use crate::{MacKey, mac_octets};

/// Length of an Ethernet II header.
pub const ETH_LEN: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// Offsets inside an IPv4 header.
pub mod ipv4 {
    pub const MIN_LEN: usize = 20;
    pub const TOTAL_LEN: usize = 2;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTO: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
    /// Don't-fragment bit in the flags/fragment-offset word.
    pub const DF: u16 = 0x4000;
    /// More-fragments bit and the fragment offset.
    pub const MF_OFFSET: u16 = 0x3fff;
    pub const PROTO_ICMP: u8 = 1;
}

/// ICMPv4 types and codes the router uses.
pub mod icmp {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    /// Destination unreachable codes.
    pub const NET_UNREACHABLE: u8 = 0;
    pub const HOST_UNREACHABLE: u8 = 1;
    pub const FRAG_NEEDED: u8 = 4;
    /// Largest IP datagram an ICMP error may be (RFC 1812 4.3.2.3).
    pub const MAX_ERROR_LEN: usize = 576;
    /// Types that are themselves errors: never answered with an error.
    pub fn is_error(t: u8) -> bool {
        matches!(t, 3 | 4 | 5 | 11 | 12)
    }
}

/// VXLAN (RFC 7348) over IPv4/UDP.
pub mod vxlan {
    /// UDP destination port.
    pub const PORT: u16 = 4789;
    /// Outer Ethernet + IPv4 + UDP + VXLAN headers.
    pub const OVERHEAD: usize = 14 + 20 + 8 + 8;
    /// The "VNI present" flag in the first byte of the VXLAN header.
    pub const FLAG_VNI: u8 = 0x08;
    pub const PROTO_UDP: u8 = 17;
}

/// Offsets inside an Ethernet/IPv4 ARP packet (after the Ethernet header).
pub mod arp {
    pub const LEN: usize = 28;
    pub const OPER: usize = 6;
    pub const SHA: usize = 8;
    pub const SPA: usize = 14;
    pub const THA: usize = 18;
    pub const TPA: usize = 24;
    pub const REQUEST: u16 = 1;
    pub const REPLY: u16 = 2;
}

#[inline]
pub fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub fn write_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub fn write_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Writes both MAC addresses of an Ethernet header.
#[inline]
pub fn write_macs(frame: &mut [u8], dst: MacKey, src: MacKey) {
    frame[0..6].copy_from_slice(&mac_octets(dst));
    frame[6..12].copy_from_slice(&mac_octets(src));
}

/// Ones'-complement sum of `data` added to `acc` (not folded).
#[inline]
pub fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

/// Folds a sum to 16 bits and complements it: the Internet checksum.
#[inline]
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The Internet checksum of `data`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    fold(sum(data, 0))
}

/// RFC 1624 eqn. 3: the checksum after one 16-bit word changed from `old`
/// to `new`: HC' = ~(~HC + ~m + m').
#[inline]
pub fn checksum_update(hc: u16, old: u16, new: u16) -> u16 {
    fold(u32::from(!hc) + u32::from(!old) + u32::from(new))
}

/// Decrements the TTL of the IPv4 header `ip` (TTL known to be > 1) and
/// updates its checksum incrementally.
#[inline]
pub fn ipv4_decrement_ttl(ip: &mut [u8]) {
    let old = read_u16(ip, ipv4::TTL);
    let new = old - 0x0100;
    write_u16(ip, ipv4::TTL, new);
    let hc = read_u16(ip, ipv4::CHECKSUM);
    write_u16(ip, ipv4::CHECKSUM, checksum_update(hc, old, new));
}

/// Writes a complete Ethernet + ARP frame into `frame` (at least
/// `ETH_LEN + arp::LEN` bytes) and returns its length.
#[allow(clippy::too_many_arguments)]
pub fn write_arp(
    frame: &mut [u8],
    eth_dst: MacKey,
    oper: u16,
    sha: MacKey,
    spa: Ipv4Addr,
    tha: MacKey,
    tpa: Ipv4Addr,
) -> usize {
    write_macs(frame, eth_dst, sha);
    write_u16(frame, 12, ETHERTYPE_ARP);
    let a = &mut frame[ETH_LEN..ETH_LEN + arp::LEN];
    // Hardware type Ethernet, protocol IPv4, address lengths 6 and 4.
    a[..6].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
    write_u16(a, arp::OPER, oper);
    a[arp::SHA..arp::SHA + 6].copy_from_slice(&mac_octets(sha));
    a[arp::SPA..arp::SPA + 4].copy_from_slice(&spa.octets());
    a[arp::THA..arp::THA + 6].copy_from_slice(&mac_octets(tha));
    a[arp::TPA..arp::TPA + 4].copy_from_slice(&tpa.octets());
    ETH_LEN + arp::LEN
}

/// Turns the IPv4 datagram at `frame[ETH_LEN..ETH_LEN + ip_len]` into an
/// ICMP error about it, in place: the original header and the start of its
/// payload move back behind a new IP and ICMP header. `frame` must have room
/// for the result (at most `ETH_LEN + icmp::MAX_ERROR_LEN` bytes). Returns
/// the new frame length.
#[allow(clippy::too_many_arguments)]
pub fn ipv4_icmp_error_in_place(
    frame: &mut [u8],
    ip_len: usize,
    eth_dst: MacKey,
    eth_src: MacKey,
    src: Ipv4Addr,
    icmp_type: u8,
    code: u8,
    rest: u32,
) -> usize {
    const HDRS: usize = ipv4::MIN_LEN + 8;
    let quoted = ip_len.min(icmp::MAX_ERROR_LEN - HDRS);
    let orig_src = read_u32(frame, ETH_LEN + ipv4::SRC);
    frame.copy_within(ETH_LEN..ETH_LEN + quoted, ETH_LEN + HDRS);
    write_macs(frame, eth_dst, eth_src);
    write_u16(frame, 12, ETHERTYPE_IPV4);
    let total = HDRS + quoted;
    let ip = &mut frame[ETH_LEN..ETH_LEN + total];
    write_ipv4_header(ip, total as u16, ipv4::PROTO_ICMP, u32::from(src), orig_src);
    let msg = &mut ip[ipv4::MIN_LEN..];
    msg[0] = icmp_type;
    msg[1] = code;
    write_u16(msg, 2, 0);
    write_u32(msg, 4, rest);
    let c = checksum(msg);
    write_u16(msg, 2, c);
    ETH_LEN + total
}

/// Wraps the Ethernet frame `frame[..inner_len]` in Ethernet/IPv4/UDP/VXLAN
/// headers, in place (the frame moves back by [`vxlan::OVERHEAD`] bytes;
/// `frame` must hold `inner_len + OVERHEAD`). The UDP checksum is zero, as
/// RFC 7348 allows over IPv4; `sport` should spread flows (ECMP entropy).
#[allow(clippy::too_many_arguments)]
pub fn vxlan_encap_in_place(
    frame: &mut [u8],
    inner_len: usize,
    eth_dst: MacKey,
    eth_src: MacKey,
    src: u32,
    dst: u32,
    sport: u16,
    vni: u32,
) -> usize {
    frame.copy_within(..inner_len, vxlan::OVERHEAD);
    write_macs(frame, eth_dst, eth_src);
    write_u16(frame, 12, ETHERTYPE_IPV4);
    let ip_total = inner_len + vxlan::OVERHEAD - ETH_LEN;
    write_ipv4_header(
        &mut frame[ETH_LEN..],
        ip_total as u16,
        vxlan::PROTO_UDP,
        src,
        dst,
    );
    let udp = &mut frame[ETH_LEN + ipv4::MIN_LEN..];
    write_u16(udp, 0, sport);
    write_u16(udp, 2, vxlan::PORT);
    write_u16(udp, 4, (ip_total - ipv4::MIN_LEN) as u16);
    write_u16(udp, 6, 0);
    let vx = &mut udp[8..16];
    vx.copy_from_slice(&[vxlan::FLAG_VNI, 0, 0, 0, 0, 0, 0, 0]);
    write_u32(vx, 4, vni << 8);
    inner_len + vxlan::OVERHEAD
}

/// Writes a 20-byte IPv4 header (TTL 64, DF clear) with its checksum.
pub fn write_ipv4_header(ip: &mut [u8], total_len: u16, proto: u8, src: u32, dst: u32) {
    ip[0] = 0x45;
    ip[1] = 0;
    write_u16(ip, ipv4::TOTAL_LEN, total_len);
    write_u32(ip, 4, 0);
    ip[ipv4::TTL] = 64;
    ip[ipv4::PROTO] = proto;
    write_u16(ip, ipv4::CHECKSUM, 0);
    write_u32(ip, ipv4::SRC, src);
    write_u32(ip, ipv4::DST, dst);
    let c = checksum(&ip[..ipv4::MIN_LEN]);
    write_u16(ip, ipv4::CHECKSUM, c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Icmpv4Type, Ipv4HeaderSlice, PacketBuilder, SlicedPacket};

    fn udp_frame(ttl: u8, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 1, 2], ttl)
            .udp(1000, 2000);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn checksum_of_known_header() {
        // Example header from RFC 1071 discussions (checksum field zeroed).
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn ttl_decrement_keeps_checksum_valid() {
        for ttl in [2u8, 64, 255] {
            let mut f = udp_frame(ttl, b"hello");
            ipv4_decrement_ttl(&mut f[ETH_LEN..]);
            let h = Ipv4HeaderSlice::from_slice(&f[ETH_LEN..]).unwrap();
            assert_eq!(h.ttl(), ttl - 1);
            let recomputed = h.to_header().calc_header_checksum();
            assert_eq!(h.header_checksum(), recomputed, "ttl {ttl}");
        }
    }

    #[test]
    fn incremental_update_matches_full_recompute() {
        let mut data = [0x12u8, 0x34, 0xab, 0xcd, 0xff, 0xff, 0x00, 0x01];
        for new in [0u16, 1, 0xffff, 0x8000, 0x1234] {
            let hc = checksum(&data);
            let old = read_u16(&data, 4);
            write_u16(&mut data, 4, new);
            assert_eq!(checksum_update(hc, old, new), checksum(&data), "{new:#x}");
        }
    }

    #[test]
    fn arp_frame_parses() {
        let mut f = [0u8; 64];
        let n = write_arp(
            &mut f,
            0xffff_ffff_ffff,
            arp::REQUEST,
            0x02aa_0000_0001,
            Ipv4Addr::new(10, 0, 0, 1),
            0,
            Ipv4Addr::new(10, 0, 0, 9),
        );
        let p = SlicedPacket::from_ethernet(&f[..n]).unwrap();
        let Some(etherparse::NetSlice::Arp(a)) = p.net else {
            panic!("not ARP: {:?}", p.net)
        };
        assert_eq!(a.operation(), etherparse::ArpOperation::REQUEST);
        assert_eq!(a.sender_protocol_addr(), &[10, 0, 0, 1]);
        assert_eq!(a.target_protocol_addr(), &[10, 0, 0, 9]);
        assert_eq!(a.sender_hw_addr(), &[2, 0xaa, 0, 0, 0, 1]);
    }

    #[test]
    fn vxlan_encapsulation_parses() {
        let inner = udp_frame(63, b"inner payload");
        let mut f = vec![0u8; 2048];
        f[..inner.len()].copy_from_slice(&inner);
        let n = vxlan_encap_in_place(
            &mut f,
            inner.len(),
            0x0200_0000_00bb,
            0x0200_0000_00aa,
            0xc0a8_3201,
            0xc0a8_3c02,
            50000,
            42,
        );
        assert_eq!(n, inner.len() + vxlan::OVERHEAD);
        let p = SlicedPacket::from_ethernet(&f[..n]).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        assert_eq!(ip.header().destination(), [192, 168, 60, 2]);
        assert_eq!(
            ip.header().header_checksum(),
            ip.header().to_header().calc_header_checksum()
        );
        let Some(etherparse::TransportSlice::Udp(udp)) = &p.transport else {
            panic!()
        };
        assert_eq!(udp.destination_port(), vxlan::PORT);
        assert_eq!(usize::from(udp.length()), n - ETH_LEN - 20);
        let vx = udp.payload();
        assert_eq!(vx[0], vxlan::FLAG_VNI);
        assert_eq!(read_u32(vx, 4) >> 8, 42);
        assert_eq!(&vx[8..], &inner[..]);
    }

    #[test]
    fn icmp_error_quotes_the_datagram() {
        let orig = udp_frame(1, &[7u8; 1000]);
        let mut f = vec![0u8; 2048];
        f[..orig.len()].copy_from_slice(&orig);
        let ip_len = orig.len() - ETH_LEN;
        let n = ipv4_icmp_error_in_place(
            &mut f,
            ip_len,
            0x0200_0000_0002,
            0x02aa_0000_0001,
            Ipv4Addr::new(10, 0, 0, 254),
            icmp::TIME_EXCEEDED,
            0,
            0,
        );
        assert_eq!(n, ETH_LEN + icmp::MAX_ERROR_LEN);
        let p = SlicedPacket::from_ethernet(&f[..n]).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        assert_eq!(ip.header().source(), [10, 0, 0, 254]);
        assert_eq!(ip.header().destination(), [10, 0, 0, 1]);
        assert_eq!(
            ip.header().header_checksum(),
            ip.header().to_header().calc_header_checksum()
        );
        let Some(etherparse::TransportSlice::Icmpv4(icmp)) = p.transport else {
            panic!()
        };
        assert!(matches!(icmp.icmp_type(), Icmpv4Type::TimeExceeded(_)));
        let payload = icmp.payload();
        assert_eq!(&payload[..28], &orig[ETH_LEN..ETH_LEN + 28]);
        assert_eq!(checksum(icmp.slice()), 0, "ICMP checksum verifies");
    }
}
