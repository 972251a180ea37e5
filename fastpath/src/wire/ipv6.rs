//! IPv6 (RFC 8200) and ICMPv6 (RFC 4443): the header view, addresses, the
//! header writer, the ICMPv6 checksum and the error the router writes over
//! a packet. Neighbour discovery is in [`super::nd`].

use super::checksum::{fold, sum};
use super::icmp::{self, Icmp};
use super::{ETH_LEN, ETHERTYPE_IPV6, read_u16, write_macs, write_u16, write_u32};
use crate::MacKey;

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

/// ICMPv6 types below 128 are errors (RFC 4443 2.1).
#[inline]
pub fn is_error(t: u8) -> bool {
    t < 128
}

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

/// Reads an IPv6 address.
#[inline(always)]
pub fn read_u128(b: &[u8], at: usize) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    u128::from_be_bytes(a)
}

#[inline(always)]
pub fn write_u128(b: &mut [u8], at: usize, v: u128) {
    b[at..at + 16].copy_from_slice(&v.to_be_bytes());
}

/// The ICMPv6 checksum of `msg` (checksum field zero) between `src` and `dst`.
pub fn icmpv6_checksum(src: u128, dst: u128, msg: &[u8]) -> u16 {
    let mut acc = sum(&src.to_be_bytes(), 0);
    acc = sum(&dst.to_be_bytes(), acc);
    acc += msg.len() as u32;
    acc += u32::from(PROTO_ICMPV6);
    fold(sum(msg, acc))
}

view! {
    /// A view of an IPv6 fixed header at the start of `B`; [`Ipv6::new`]
    /// checks that the 40 bytes fit.
    Ipv6, HDR_LEN
}

impl<B: AsRef<[u8]>> Ipv6<B> {
    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.bytes()[0] >> 4
    }

    #[inline(always)]
    pub fn payload_len(&self) -> usize {
        usize::from(read_u16(self.bytes(), PAYLOAD_LEN))
    }

    /// The packet's length (header and payload), if it is version 6 and
    /// fits the buffer.
    #[inline]
    pub fn total_len(&self) -> Option<usize> {
        let total = HDR_LEN + self.payload_len();
        (self.version() == 6 && total <= self.bytes().len()).then_some(total)
    }

    #[inline(always)]
    pub fn next_header(&self) -> u8 {
        self.bytes()[NEXT_HEADER]
    }

    #[inline(always)]
    pub fn hop_limit(&self) -> u8 {
        self.bytes()[HOP_LIMIT]
    }

    #[inline(always)]
    pub fn src(&self) -> u128 {
        read_u128(self.bytes(), SRC)
    }

    #[inline(always)]
    pub fn dst(&self) -> u128 {
        read_u128(self.bytes(), DST)
    }

    /// What follows the fixed header, up to the end of the buffer.
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[HDR_LEN..]
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Ipv6<B> {
    #[inline(always)]
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.bytes_mut()[HOP_LIMIT] = hop_limit;
    }

    /// Takes one off the hop limit (known to be above 1; no checksum).
    #[inline(always)]
    pub fn decrement_hop_limit(&mut self) {
        self.bytes_mut()[HOP_LIMIT] -= 1;
    }

    /// Swaps source and destination (the pseudo-header sum stays the same).
    #[inline]
    pub fn swap_addrs(&mut self) {
        let (src, dst) = (self.src(), self.dst());
        let b = self.bytes_mut();
        write_u128(b, SRC, dst);
        write_u128(b, DST, src);
    }

    #[inline(always)]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.bytes_mut()[HDR_LEN..]
    }

    /// Writes a fixed header over the start of `buf`.
    #[inline]
    pub fn write(
        mut buf: B,
        payload_len: u16,
        next: u8,
        hop_limit: u8,
        src: u128,
        dst: u128,
    ) -> Option<Self> {
        let ip = buf.as_mut().get_mut(..HDR_LEN)?;
        write_u32(ip, 0, 0x6000_0000);
        write_u16(ip, PAYLOAD_LEN, payload_len);
        ip[NEXT_HEADER] = next;
        ip[HOP_LIMIT] = hop_limit;
        write_u128(ip, SRC, src);
        write_u128(ip, DST, dst);
        Some(Ipv6(buf))
    }
}

/// Turns the IPv6 packet at `frame[ETH_LEN..ETH_LEN + ip_len]` into an
/// ICMPv6 error about it, in place (as much of the packet as fits in the
/// IPv6 minimum MTU is quoted). Returns the new frame length.
#[allow(clippy::too_many_arguments)]
pub fn icmp_error_in_place(
    frame: &mut [u8],
    ip_len: usize,
    eth_dst: MacKey,
    eth_src: MacKey,
    src: u128,
    icmp_type: u8,
    code: u8,
    rest: u32,
) -> usize {
    const HDRS: usize = HDR_LEN + icmp::HDR_LEN;
    let quoted = ip_len.min(MIN_MTU - HDRS);
    let dst = read_u128(frame, ETH_LEN + SRC);
    frame.copy_within(ETH_LEN..ETH_LEN + quoted, ETH_LEN + HDRS);
    write_macs(frame, eth_dst, eth_src);
    write_u16(frame, 12, ETHERTYPE_IPV6);
    let msg_len = icmp::HDR_LEN + quoted;
    let end = ETH_LEN + HDR_LEN + msg_len;
    let ip = &mut frame[ETH_LEN..end];
    Ipv6::write(&mut *ip, msg_len as u16, PROTO_ICMPV6, 64, src, dst);
    let mut msg = Icmp::new(&mut ip[HDR_LEN..]).expect("room for the ICMPv6 header");
    msg.set_header(icmp_type, code, rest);
    let c = icmpv6_checksum(src, dst, msg.bytes());
    msg.set_checksum(c);
    end
}
