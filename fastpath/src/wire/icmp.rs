//! ICMP (RFC 792) and the ICMPv6 header (RFC 4443): types, codes and a
//! view of the 8-byte header both share.

use super::checksum::{checksum, checksum_update};
use super::{read_u16, read_u32, write_u16, write_u32};

/// Type, code, checksum, and the 4 bytes whose meaning depends on the type.
pub const HDR_LEN: usize = 8;
pub const CHECKSUM: usize = 2;
pub const ECHO_REPLY: u8 = 0;
pub const DEST_UNREACHABLE: u8 = 3;
pub const ECHO_REQUEST: u8 = 8;
pub const TIME_EXCEEDED: u8 = 11;
/// Destination unreachable codes.
pub const NET_UNREACHABLE: u8 = 0;
pub const HOST_UNREACHABLE: u8 = 1;
pub const PORT_UNREACHABLE: u8 = 3;
pub const FRAG_NEEDED: u8 = 4;
/// Largest IP datagram an ICMP error may be (RFC 1812 4.3.2.3).
pub const MAX_ERROR_LEN: usize = 576;

/// Types that are themselves errors: never answered with an error.
#[inline]
pub fn is_error(t: u8) -> bool {
    matches!(t, 3 | 4 | 5 | 11 | 12)
}

/// Errors that quote the packet they are about and that NAT translates:
/// destination unreachable, time exceeded, parameter problem.
#[inline]
pub fn quotes_a_packet(t: u8) -> bool {
    matches!(t, 3 | 11 | 12)
}

view! {
    /// A view of an ICMP or ICMPv6 message (header and body) at the start of
    /// `B`; [`Icmp::new`] checks that the 8-byte header fits.
    Icmp, HDR_LEN
}

impl<B: AsRef<[u8]>> Icmp<B> {
    #[inline(always)]
    pub fn msg_type(&self) -> u8 {
        self.bytes()[0]
    }

    #[inline(always)]
    pub fn code(&self) -> u8 {
        self.bytes()[1]
    }

    /// The 4 bytes after the checksum (echo identifier and sequence, the
    /// MTU of "fragmentation needed", unused...).
    #[inline(always)]
    pub fn rest(&self) -> u32 {
        read_u32(self.bytes(), 4)
    }

    /// What follows the header (the quoted packet of an error).
    #[inline(always)]
    pub fn body(&self) -> &[u8] {
        &self.bytes()[HDR_LEN..]
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Icmp<B> {
    /// Changes the type, updating the checksum incrementally (echo request
    /// into echo reply). A message that becomes all zeros (an echo reply
    /// with id, sequence and data zero) sums to +0, whose checksum is
    /// 0xffff; the update gives the other zero, 0x0000, which receivers
    /// reject (found by `fuzz/` `pipeline`): that one case is written out.
    #[inline]
    pub fn set_type(&mut self, t: u8) {
        let b = self.bytes_mut();
        let old = read_u16(b, 0);
        let new = u16::from(t) << 8 | (old & 0xff);
        write_u16(b, 0, new);
        let mut c = checksum_update(read_u16(b, CHECKSUM), old, new);
        if c == 0
            && b.iter()
                .enumerate()
                .all(|(i, x)| *x == 0 || i == CHECKSUM || i == CHECKSUM + 1)
        {
            c = 0xffff;
        }
        write_u16(b, CHECKSUM, c);
    }

    /// Writes type, code and the 4 type-specific bytes, with the checksum
    /// zero (see [`Icmp::fill_checksum`]).
    #[inline]
    pub fn set_header(&mut self, t: u8, code: u8, rest: u32) {
        let b = self.bytes_mut();
        b[0] = t;
        b[1] = code;
        write_u16(b, CHECKSUM, 0);
        write_u32(b, 4, rest);
    }

    /// Computes the ICMPv4 checksum over the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self) {
        let b = self.bytes_mut();
        write_u16(b, CHECKSUM, 0);
        let c = checksum(b);
        write_u16(b, CHECKSUM, c);
    }

    /// Writes a checksum computed elsewhere (ICMPv6's covers a
    /// pseudo-header).
    #[inline(always)]
    pub fn set_checksum(&mut self, c: u16) {
        write_u16(self.bytes_mut(), CHECKSUM, c);
    }

    #[inline(always)]
    pub fn body_mut(&mut self) -> &mut [u8] {
        &mut self.bytes_mut()[HDR_LEN..]
    }
}
