//! Byte-level helpers for the frames the router rewrites or writes itself.
//!
//! The data plane reads headers by hand at the offsets named here (the
//! parse stage checks lengths first); etherparse is used only by the tests,
//! to check what these writers produce. The module holds the field offsets
//! the router reads and rewrites in place, the incremental checksum update
//! of RFC 1624, and writers for the frames the switch originates (ARP,
//! ICMP). Every function takes a slice whose
//! length the caller has checked against the named offsets, so none of them
//! panics on a frame that passed the caller's checks.

use std::net::Ipv4Addr;

use crate::{MacKey, mac_octets};

/// Length of an Ethernet II header.
pub const ETH_LEN: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// The group (multicast) bit of a [`crate::MacKey`].
pub const GROUP_BIT: u64 = 1 << 40;

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

/// Offsets and constants of IPv6 and ICMPv6 (RFC 8200, 4443, 4861).
pub mod ipv6 {
    pub const HDR_LEN: usize = 40;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
    pub const PROTO_ICMPV6: u8 = 58;
    /// ICMPv6 types.
    pub const DEST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    /// Neighbour discovery options.
    pub const OPT_SOURCE_LLA: u8 = 1;
    pub const OPT_TARGET_LLA: u8 = 2;
    /// NA flags (first byte after the checksum).
    pub const NA_ROUTER: u8 = 0x80;
    pub const NA_SOLICITED: u8 = 0x40;
    pub const NA_OVERRIDE: u8 = 0x20;
    /// Smallest MTU of IPv6: the most an ICMPv6 error may take.
    pub const MIN_MTU: usize = 1280;
    /// Neighbour discovery messages carry this hop limit (RFC 4861 7.1).
    pub const ND_HOP_LIMIT: u8 = 255;
    /// fe80::/10
    #[inline]
    pub fn is_link_local(a: u128) -> bool {
        a >> 118 == 0x3fa
    }
    #[inline]
    pub fn is_multicast(a: u128) -> bool {
        a >> 120 == 0xff
    }
    /// The solicited-node multicast address of `a` (ff02::1:ffXX:XXXX).
    #[inline]
    pub fn solicited_node(a: u128) -> u128 {
        0xff02_0000_0000_0000_0000_0001_ff00_0000 | (a & 0xff_ffff)
    }
    /// The Ethernet multicast address of IPv6 multicast `a` (33:33 + low 32 bits).
    #[inline]
    pub fn multicast_mac(a: u128) -> u64 {
        0x3333_0000_0000 | (a as u64 & 0xffff_ffff)
    }
    /// The modified EUI-64 link-local address of a MAC.
    #[inline]
    pub fn link_local_of(mac: u64) -> u128 {
        let m = crate::mac_octets(mac);
        let iid = u64::from_be_bytes([m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]);
        (0xfe80u128 << 112) | u128::from(iid)
    }
}

/// Reads an IPv6 address.
#[inline]
pub fn read_u128(b: &[u8], at: usize) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    u128::from_be_bytes(a)
}

#[inline]
pub fn write_u128(b: &mut [u8], at: usize, v: u128) {
    b[at..at + 16].copy_from_slice(&v.to_be_bytes());
}

/// The ICMPv6 checksum of `msg` (checksum field zero) between `src` and `dst`.
pub fn icmpv6_checksum(src: u128, dst: u128, msg: &[u8]) -> u16 {
    let mut acc = sum(&src.to_be_bytes(), 0);
    acc = sum(&dst.to_be_bytes(), acc);
    acc += msg.len() as u32;
    acc += u32::from(ipv6::PROTO_ICMPV6);
    fold(sum(msg, acc))
}

/// Writes an IPv6 header.
pub fn write_ipv6_header(
    ip: &mut [u8],
    payload_len: u16,
    next: u8,
    hop_limit: u8,
    src: u128,
    dst: u128,
) {
    write_u32(ip, 0, 0x6000_0000);
    write_u16(ip, ipv6::PAYLOAD_LEN, payload_len);
    ip[ipv6::NEXT_HEADER] = next;
    ip[ipv6::HOP_LIMIT] = hop_limit;
    write_u128(ip, ipv6::SRC, src);
    write_u128(ip, ipv6::DST, dst);
}

/// Writes a whole Ethernet + IPv6 + ICMPv6 neighbour solicitation for
/// `target` (with our link-layer address) and returns its length.
pub fn write_neighbor_solicit(
    frame: &mut [u8],
    eth_dst: MacKey,
    mac: MacKey,
    src: u128,
    dst: u128,
    target: u128,
) -> usize {
    let nd = Nd {
        icmp_type: ipv6::NEIGHBOR_SOLICIT,
        flags: 0,
        option: ipv6::OPT_SOURCE_LLA,
    };
    write_nd(frame, eth_dst, mac, src, dst, target, nd)
}

/// Writes a neighbour advertisement for `target` (at `mac`) to `dst` over
/// whatever `frame` held; returns the frame length.
pub fn write_neighbor_advert(
    frame: &mut [u8],
    eth_dst: MacKey,
    mac: MacKey,
    dst: u128,
    target: u128,
    flags: u8,
) -> usize {
    let nd = Nd {
        icmp_type: ipv6::NEIGHBOR_ADVERT,
        flags,
        option: ipv6::OPT_TARGET_LLA,
    };
    write_nd(frame, eth_dst, mac, target, dst, target, nd)
}

/// What distinguishes a solicitation from an advertisement.
struct Nd {
    icmp_type: u8,
    flags: u8,
    /// The link-layer address option carrying `mac`.
    option: u8,
}

/// A neighbour discovery message with one link-layer address option.
fn write_nd(
    frame: &mut [u8],
    eth_dst: MacKey,
    mac: MacKey,
    src: u128,
    dst: u128,
    target: u128,
    nd: Nd,
) -> usize {
    const MSG: usize = 24 + 8;
    write_macs(frame, eth_dst, mac);
    write_u16(frame, 12, ETHERTYPE_IPV6);
    write_ipv6_header(
        &mut frame[ETH_LEN..],
        MSG as u16,
        ipv6::PROTO_ICMPV6,
        ipv6::ND_HOP_LIMIT,
        src,
        dst,
    );
    let m = &mut frame[ETH_LEN + ipv6::HDR_LEN..ETH_LEN + ipv6::HDR_LEN + MSG];
    m.fill(0);
    m[0] = nd.icmp_type;
    m[4] = nd.flags;
    write_u128(m, 8, target);
    m[24] = nd.option;
    m[25] = 1;
    m[26..32].copy_from_slice(&crate::mac_octets(mac));
    let c = icmpv6_checksum(src, dst, m);
    write_u16(m, 2, c);
    ETH_LEN + ipv6::HDR_LEN + MSG
}

/// Turns the IPv6 packet at `frame[ETH_LEN..ETH_LEN + ip_len]` into an
/// ICMPv6 error about it, in place (as much of the packet as fits in the
/// IPv6 minimum MTU is quoted). Returns the new frame length.
#[allow(clippy::too_many_arguments)]
pub fn ipv6_icmp_error_in_place(
    frame: &mut [u8],
    ip_len: usize,
    eth_dst: MacKey,
    eth_src: MacKey,
    src: u128,
    icmp_type: u8,
    code: u8,
    rest: u32,
) -> usize {
    const HDRS: usize = ipv6::HDR_LEN + 8;
    let quoted = ip_len.min(ipv6::MIN_MTU - HDRS);
    let dst = read_u128(frame, ETH_LEN + ipv6::SRC);
    frame.copy_within(ETH_LEN..ETH_LEN + quoted, ETH_LEN + HDRS);
    write_macs(frame, eth_dst, eth_src);
    write_u16(frame, 12, ETHERTYPE_IPV6);
    let msg_len = 8 + quoted;
    write_ipv6_header(
        &mut frame[ETH_LEN..],
        msg_len as u16,
        ipv6::PROTO_ICMPV6,
        64,
        src,
        dst,
    );
    let msg = &mut frame[ETH_LEN + ipv6::HDR_LEN..ETH_LEN + ipv6::HDR_LEN + msg_len];
    msg[0] = icmp_type;
    msg[1] = code;
    write_u16(msg, 2, 0);
    write_u32(msg, 4, rest);
    let c = icmpv6_checksum(src, dst, msg);
    write_u16(msg, 2, c);
    ETH_LEN + ipv6::HDR_LEN + msg_len
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

/// Reads the MAC address at `at` (0: destination, 6: source).
#[inline]
pub fn read_mac(frame: &[u8], at: usize) -> MacKey {
    let mut m = [0u8; 6];
    m.copy_from_slice(&frame[at..at + 6]);
    crate::mac_key(&m)
}

/// Where the transport header starts, or 0: after an IPv4 header whose
/// version and length are sane and fit, after a whole IPv6 fixed header.
/// Stages that need more (the checksum, the total length) still check it.
#[inline]
pub fn l4_offset(ethertype: u16, ip: &[u8]) -> u16 {
    match ethertype {
        ETHERTYPE_IPV4 if ip.len() >= ipv4::MIN_LEN && ip[0] >> 4 == 4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ihl >= ipv4::MIN_LEN && ihl <= ip.len() {
                (ETH_LEN + ihl) as u16
            } else {
                0
            }
        }
        ETHERTYPE_IPV6 if ip.len() >= ipv6::HDR_LEN => (ETH_LEN + ipv6::HDR_LEN) as u16,
        _ => 0,
    }
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
    // Don't fragment: the inner MTU already leaves room for the headers, and
    // fragments would share the ID 0 (RFC 6864).
    let ip = &mut frame[ETH_LEN..];
    let hc = read_u16(ip, ipv4::CHECKSUM);
    write_u16(ip, ipv4::FLAGS_FRAG, ipv4::DF);
    write_u16(ip, ipv4::CHECKSUM, checksum_update(hc, 0, ipv4::DF));
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

    fn udp6_frame(hop: u8, payload: &[u8]) -> Vec<u8> {
        let mut src = [0u8; 16];
        src[0] = 0xfd;
        src[15] = 5;
        let mut dst = src;
        dst[7] = 2;
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6(src, dst, hop)
            .udp(1000, 2000);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn ipv6_helpers() {
        assert!(ipv6::is_link_local(0xfe80u128 << 112 | 1));
        assert!(!ipv6::is_link_local(0xfd00u128 << 112));
        let a: u128 = 0xfd00_0000_0000_0000_0000_0000_00ab_cdef;
        assert_eq!(
            ipv6::solicited_node(a),
            0xff02_0000_0000_0000_0000_0001_ffab_cdef
        );
        assert_eq!(
            ipv6::multicast_mac(ipv6::solicited_node(a)),
            0x3333_ffab_cdef
        );
        let ll = ipv6::link_local_of(0x0200_0000_00aa);
        assert_eq!(ll, 0xfe80_0000_0000_0000_0000_00ff_fe00_00aa);
    }

    #[test]
    fn neighbor_messages_parse_with_valid_checksums() {
        let mut f = [0u8; 128];
        let src = ipv6::link_local_of(0x0200_0000_00aa);
        let target: u128 = 0xfd00_0000_0000_0000_0000_0000_0000_0005;
        let dst = ipv6::solicited_node(target);
        let n = write_neighbor_solicit(
            &mut f,
            ipv6::multicast_mac(dst),
            0x0200_0000_00aa,
            src,
            dst,
            target,
        );
        let p = SlicedPacket::from_ethernet(&f[..n]).unwrap();
        let Some(etherparse::TransportSlice::Icmpv6(icmp)) = p.transport else {
            panic!("{:?}", p.transport)
        };
        assert_eq!(icmp.type_u8(), 135);
        assert_eq!(icmpv6_checksum(src, dst, icmp.slice()), 0);
        let mut f = [0u8; 128];
        let n = write_neighbor_advert(
            &mut f,
            0x0200_0000_0005,
            0x0200_0000_00aa,
            src,
            target,
            ipv6::NA_SOLICITED,
        );
        let p = SlicedPacket::from_ethernet(&f[..n]).unwrap();
        let Some(etherparse::TransportSlice::Icmpv6(icmp)) = p.transport else {
            panic!()
        };
        assert_eq!(icmp.type_u8(), 136);
        assert_eq!(icmpv6_checksum(target, src, icmp.slice()), 0);
    }

    #[test]
    fn icmpv6_error_quotes_the_packet() {
        let orig = udp6_frame(1, &[9u8; 1400]);
        let mut f = vec![0u8; 2048];
        f[..orig.len()].copy_from_slice(&orig);
        let src: u128 = 0xfd00_0000_0000_0000_0000_0000_0000_0001;
        let n = ipv6_icmp_error_in_place(
            &mut f,
            orig.len() - ETH_LEN,
            0x0200_0000_0001,
            0x02aa_0000_0001,
            src,
            ipv6::TIME_EXCEEDED,
            0,
            0,
        );
        assert_eq!(n, ETH_LEN + ipv6::MIN_MTU);
        let p = SlicedPacket::from_ethernet(&f[..n]).unwrap();
        let Some(etherparse::TransportSlice::Icmpv6(icmp)) = p.transport else {
            panic!()
        };
        assert!(matches!(
            icmp.icmp_type(),
            etherparse::Icmpv6Type::TimeExceeded(_)
        ));
        let dst = read_u128(&orig, ETH_LEN + ipv6::SRC);
        assert_eq!(icmpv6_checksum(src, dst, icmp.slice()), 0);
        assert_eq!(&icmp.payload()[..40], &orig[ETH_LEN..ETH_LEN + 40]);
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
