//! IPv4 (RFC 791): the header view, the header writer and the ICMP error
//! the router writes over a packet.

use std::net::Ipv4Addr;

use super::checksum::{apply_delta, checksum, checksum_update, delta32};
use super::icmp::{self, Icmp};
use super::{ETH_LEN, ETHERTYPE_IPV4, read_u16, read_u32, write_macs, write_u16, write_u32};
use crate::MacKey;

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

view! {
    /// A view of an IPv4 header at the start of `B` (`&[u8]` to read,
    /// `&mut [u8]` to write too). [`Ipv4::new`] checks that the fixed header
    /// fits, so no accessor panics; what the fields say (version, header and
    /// total length) is for the caller to check ([`Ipv4::lengths`]).
    Ipv4, MIN_LEN
}

impl<B: AsRef<[u8]>> Ipv4<B> {
    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.bytes()[0] >> 4
    }

    /// The header length the header claims (IHL × 4).
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        usize::from(self.bytes()[0] & 0x0f) * 4
    }

    #[inline(always)]
    pub fn total_len(&self) -> usize {
        usize::from(read_u16(self.bytes(), TOTAL_LEN))
    }

    /// The total length, if a packet with a header of `ihl` bytes (known to
    /// fit) may have it: not shorter than its header, within the buffer.
    #[inline(always)]
    pub fn total_within(&self, ihl: usize) -> Option<usize> {
        let total = self.total_len();
        (total >= ihl && total <= self.bytes().len()).then_some(total)
    }

    /// Header and total length, if the header is version 4 with a sane
    /// length (20 bytes or more, within the total) and the total is within
    /// the buffer.
    #[inline]
    pub fn lengths(&self) -> Option<(usize, usize)> {
        let ihl = self.header_len();
        if self.version() != 4 || ihl < MIN_LEN {
            return None;
        }
        self.total_within(ihl).map(|total| (ihl, total))
    }

    /// The flags and fragment offset word.
    #[inline(always)]
    pub fn flags_frag(&self) -> u16 {
        read_u16(self.bytes(), FLAGS_FRAG)
    }

    /// More fragments follow, or this is not the first one.
    #[inline(always)]
    pub fn is_fragment(&self) -> bool {
        self.flags_frag() & MF_OFFSET != 0
    }

    #[inline(always)]
    pub fn dont_fragment(&self) -> bool {
        self.flags_frag() & DF != 0
    }

    #[inline(always)]
    pub fn ttl(&self) -> u8 {
        self.bytes()[TTL]
    }

    #[inline(always)]
    pub fn protocol(&self) -> u8 {
        self.bytes()[PROTO]
    }

    #[inline(always)]
    pub fn src(&self) -> u32 {
        read_u32(self.bytes(), SRC)
    }

    #[inline(always)]
    pub fn dst(&self) -> u32 {
        read_u32(self.bytes(), DST)
    }

    /// Whether the checksum of the first `ihl` header bytes verifies
    /// (false if they do not fit).
    #[inline]
    pub fn checksum_ok(&self, ihl: usize) -> bool {
        self.bytes().get(..ihl).is_some_and(|h| checksum(h) == 0)
    }

    /// The bytes after a header of `ihl` bytes up to `total` (both checked
    /// by the caller, e.g. with [`Ipv4::lengths`]): the transport segment.
    #[inline(always)]
    pub fn payload(&self, ihl: usize, total: usize) -> &[u8] {
        &self.bytes()[ihl..total]
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Ipv4<B> {
    /// Takes one off the TTL (known to be above 1), updating the header
    /// checksum incrementally.
    #[inline(always)]
    pub fn decrement_ttl(&mut self) {
        let b = self.bytes_mut();
        let old = read_u16(b, TTL);
        let new = old - 0x0100;
        write_u16(b, TTL, new);
        let hc = read_u16(b, CHECKSUM);
        write_u16(b, CHECKSUM, checksum_update(hc, old, new));
    }

    /// Sets the TTL, updating the header checksum incrementally.
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        let b = self.bytes_mut();
        let old = read_u16(b, TTL);
        let new = u16::from(ttl) << 8 | (old & 0xff);
        write_u16(b, TTL, new);
        let hc = read_u16(b, CHECKSUM);
        write_u16(b, CHECKSUM, checksum_update(hc, old, new));
    }

    /// Swaps source and destination (the header checksum stays right).
    #[inline]
    pub fn swap_addrs(&mut self) {
        let (src, dst) = (self.src(), self.dst());
        let b = self.bytes_mut();
        write_u32(b, SRC, dst);
        write_u32(b, DST, src);
    }

    /// Rewrites source and destination, updating the header checksum
    /// incrementally; returns what the change adds to a transport checksum
    /// that covers the addresses (see [`super::checksum::delta32`]).
    #[inline(always)]
    pub fn set_addrs(&mut self, src: u32, dst: u32) -> u32 {
        let delta = delta32(&[self.src(), self.dst()], &[src, dst]);
        let b = self.bytes_mut();
        let hc = read_u16(b, CHECKSUM);
        write_u16(b, CHECKSUM, apply_delta(hc, delta));
        write_u32(b, SRC, src);
        write_u32(b, DST, dst);
        delta
    }

    /// Writes a 20-byte header (TTL 64, DF clear, ID 0) with its checksum
    /// over the start of `buf`.
    #[inline]
    pub fn write(mut buf: B, total_len: u16, proto: u8, src: u32, dst: u32) -> Option<Self> {
        let ip = buf.as_mut().get_mut(..MIN_LEN)?;
        ip[0] = 0x45;
        ip[1] = 0;
        write_u16(ip, TOTAL_LEN, total_len);
        write_u32(ip, 4, 0);
        ip[TTL] = 64;
        ip[PROTO] = proto;
        write_u16(ip, CHECKSUM, 0);
        write_u32(ip, SRC, src);
        write_u32(ip, DST, dst);
        let c = checksum(ip);
        write_u16(ip, CHECKSUM, c);
        Some(Ipv4(buf))
    }

    /// Sets the don't-fragment bit (the flags were clear), updating the
    /// header checksum.
    #[inline]
    pub fn set_dont_fragment(&mut self) {
        let old = self.flags_frag();
        let b = self.bytes_mut();
        write_u16(b, FLAGS_FRAG, old | DF);
        let hc = read_u16(b, CHECKSUM);
        write_u16(b, CHECKSUM, checksum_update(hc, old, old | DF));
    }
}

/// Turns the IPv4 datagram at `frame[ETH_LEN..ETH_LEN + ip_len]` into an
/// ICMP error about it, in place: the original header and the start of its
/// payload move back behind a new IP and ICMP header. `frame` must have room
/// for the result (at most `ETH_LEN + icmp::MAX_ERROR_LEN` bytes). Returns
/// the new frame length.
#[allow(clippy::too_many_arguments)]
pub fn icmp_error_in_place(
    frame: &mut [u8],
    ip_len: usize,
    eth_dst: MacKey,
    eth_src: MacKey,
    src: Ipv4Addr,
    icmp_type: u8,
    code: u8,
    rest: u32,
) -> usize {
    const HDRS: usize = MIN_LEN + icmp::HDR_LEN;
    let quoted = ip_len.min(icmp::MAX_ERROR_LEN - HDRS);
    let orig_src = read_u32(frame, ETH_LEN + SRC);
    frame.copy_within(ETH_LEN..ETH_LEN + quoted, ETH_LEN + HDRS);
    write_macs(frame, eth_dst, eth_src);
    write_u16(frame, 12, ETHERTYPE_IPV4);
    let total = HDRS + quoted;
    let ip = &mut frame[ETH_LEN..ETH_LEN + total];
    Ipv4::write(&mut *ip, total as u16, PROTO_ICMP, u32::from(src), orig_src);
    let mut msg = Icmp::new(&mut ip[MIN_LEN..]).expect("room for the ICMP header");
    msg.set_header(icmp_type, code, rest);
    msg.fill_checksum();
    ETH_LEN + total
}
