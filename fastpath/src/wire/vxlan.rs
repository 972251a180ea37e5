//! VXLAN (RFC 7348) over IPv4/UDP: the header view and the encapsulation.

use super::ipv4::{self, Ipv4};
use super::l4::Udp;
use super::{ETH_LEN, ETHERTYPE_IPV4, read_u32, write_macs, write_u16, write_u32};
use crate::MacKey;

/// UDP destination port.
pub const PORT: u16 = 4789;
/// The VXLAN header.
pub const HDR_LEN: usize = 8;
/// Outer Ethernet + IPv4 + UDP + VXLAN headers.
pub const OVERHEAD: usize = 14 + 20 + 8 + HDR_LEN;
/// The "VNI present" flag in the first byte of the VXLAN header.
pub const FLAG_VNI: u8 = 0x08;
pub const PROTO_UDP: u8 = 17;

view! {
    /// A view of a VXLAN header at the start of `B`; [`Vxlan::new`] checks
    /// that its 8 bytes fit.
    Vxlan, HDR_LEN
}

impl<B: AsRef<[u8]>> Vxlan<B> {
    /// Whether the "VNI present" flag is set.
    #[inline(always)]
    pub fn has_vni(&self) -> bool {
        self.0.as_ref()[0] & FLAG_VNI != 0
    }

    #[inline(always)]
    pub fn vni(&self) -> u32 {
        read_u32(self.0.as_ref(), 4) >> 8
    }
}

/// Wraps the Ethernet frame `frame[..inner_len]` in Ethernet/IPv4/UDP/VXLAN
/// headers, in place (the frame moves back by [`OVERHEAD`] bytes; `frame`
/// must hold `inner_len + OVERHEAD`). The UDP checksum is zero, as RFC 7348
/// allows over IPv4; `sport` should spread flows (ECMP entropy).
#[allow(clippy::too_many_arguments)]
pub fn encap_in_place(
    frame: &mut [u8],
    inner_len: usize,
    eth_dst: MacKey,
    eth_src: MacKey,
    src: u32,
    dst: u32,
    sport: u16,
    vni: u32,
) -> usize {
    frame.copy_within(..inner_len, OVERHEAD);
    write_macs(frame, eth_dst, eth_src);
    write_u16(frame, 12, ETHERTYPE_IPV4);
    let ip_total = inner_len + OVERHEAD - ETH_LEN;
    let mut ip = Ipv4::write(&mut frame[ETH_LEN..], ip_total as u16, PROTO_UDP, src, dst)
        .expect("room for the outer header");
    // Don't fragment: the inner MTU already leaves room for the headers, and
    // fragments would share the ID 0 (RFC 6864).
    ip.set_dont_fragment();
    let udp_at = ETH_LEN + ipv4::MIN_LEN;
    let mut udp = Udp::new(&mut frame[udp_at..]).expect("room for UDP");
    udp.set_ports(sport, PORT);
    udp.set_len((ip_total - ipv4::MIN_LEN) as u16);
    udp.set_checksum(0);
    let vx = &mut frame[udp_at + 8..udp_at + 8 + HDR_LEN];
    vx.copy_from_slice(&[FLAG_VNI, 0, 0, 0, 0, 0, 0, 0]);
    write_u32(vx, 4, vni << 8);
    inner_len + OVERHEAD
}
