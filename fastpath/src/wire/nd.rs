//! IPv6 neighbour discovery (RFC 4861): solicitations and advertisements,
//! their view and writers.

use super::ipv6::{
    self, HDR_LEN, Ipv6, NEIGHBOR_ADVERT, NEIGHBOR_SOLICIT, OPT_SOURCE_LLA, OPT_TARGET_LLA,
    PROTO_ICMPV6, icmpv6_checksum, read_u128, write_u128,
};
use super::{ETH_LEN, ETHERTYPE_IPV6, write_macs, write_u16};
use crate::{MacKey, mac_key, mac_octets};

/// Type, code, checksum, flags/reserved, target address.
pub const FIXED_LEN: usize = 24;
/// A message the switch writes: the fixed part and one link-layer option.
const WRITTEN_LEN: usize = FIXED_LEN + 8;

view! {
    /// A view of a solicitation or advertisement (the ICMPv6 message, from
    /// its type on); [`Nd::new`] checks that the fixed part fits.
    Nd, FIXED_LEN
}

impl<B: AsRef<[u8]>> Nd<B> {
    #[inline(always)]
    pub fn msg_type(&self) -> u8 {
        self.bytes()[0]
    }

    #[inline(always)]
    pub fn code(&self) -> u8 {
        self.bytes()[1]
    }

    #[inline(always)]
    pub fn target(&self) -> u128 {
        read_u128(self.bytes(), 8)
    }

    /// The source (solicitation) or target (advertisement) link-layer
    /// address option, if present; `None` (outer) when the options are
    /// malformed.
    #[inline]
    pub fn link_layer_option(&self) -> Option<Option<MacKey>> {
        let want = if self.msg_type() == NEIGHBOR_SOLICIT {
            OPT_SOURCE_LLA
        } else {
            OPT_TARGET_LLA
        };
        let mut opts = &self.bytes()[FIXED_LEN..];
        let mut found = None;
        while opts.len() >= 2 {
            let len = usize::from(opts[1]) * 8;
            if len == 0 || len > opts.len() {
                return None;
            }
            if opts[0] == want && len >= 8 {
                let mut m = [0u8; 6];
                m.copy_from_slice(&opts[2..8]);
                found = Some(mac_key(&m));
            }
            opts = &opts[len..];
        }
        Some(found)
    }
}

/// Whether an ICMPv6 type is neighbour discovery the switch reads.
#[inline(always)]
pub fn is_nd(t: u8) -> bool {
    t == NEIGHBOR_SOLICIT || t == NEIGHBOR_ADVERT
}

/// Writes a whole Ethernet + IPv6 + ICMPv6 neighbour solicitation for
/// `target` (with our link-layer address) and returns its length.
pub fn write_solicit(
    frame: &mut [u8],
    eth_dst: MacKey,
    mac: MacKey,
    src: u128,
    dst: u128,
    target: u128,
) -> usize {
    let head = (NEIGHBOR_SOLICIT, 0, OPT_SOURCE_LLA);
    write(frame, eth_dst, mac, (src, dst), target, head)
}

/// Writes a neighbour advertisement for `target` (at `mac`) to `dst` over
/// whatever `frame` held; returns the frame length.
pub fn write_advert(
    frame: &mut [u8],
    eth_dst: MacKey,
    mac: MacKey,
    dst: u128,
    target: u128,
    flags: u8,
) -> usize {
    let head = (NEIGHBOR_ADVERT, flags, OPT_TARGET_LLA);
    write(frame, eth_dst, mac, (target, dst), target, head)
}

/// A message with one link-layer address option carrying `mac`; `head`
/// is its type, flags and the option's type.
fn write(
    frame: &mut [u8],
    eth_dst: MacKey,
    mac: MacKey,
    (src, dst): (u128, u128),
    target: u128,
    (msg_type, flags, option): (u8, u8, u8),
) -> usize {
    write_macs(frame, eth_dst, mac);
    write_u16(frame, 12, ETHERTYPE_IPV6);
    let end = ETH_LEN + HDR_LEN + WRITTEN_LEN;
    let ip = &mut frame[ETH_LEN..end];
    let hop = ipv6::ND_HOP_LIMIT;
    Ipv6::write(&mut *ip, WRITTEN_LEN as u16, PROTO_ICMPV6, hop, src, dst);
    let m = &mut ip[HDR_LEN..];
    m.fill(0);
    m[0] = msg_type;
    m[4] = flags;
    write_u128(m, 8, target);
    m[FIXED_LEN] = option;
    m[FIXED_LEN + 1] = 1;
    m[FIXED_LEN + 2..].copy_from_slice(&mac_octets(mac));
    let c = icmpv6_checksum(src, dst, m);
    write_u16(m, 2, c);
    end
}
