//! ARP for IPv4 over Ethernet (RFC 826): the packet view and writer.

use std::net::Ipv4Addr;

use super::{ETH_LEN, ETHERTYPE_ARP, read_u16, read_u32, write_macs, write_u16, write_u32};
use crate::{MacKey, mac_key, mac_octets};

pub const LEN: usize = 28;
pub const OPER: usize = 6;
pub const SHA: usize = 8;
pub const SPA: usize = 14;
pub const THA: usize = 18;
pub const TPA: usize = 24;
pub const REQUEST: u16 = 1;
pub const REPLY: u16 = 2;
/// Hardware type Ethernet, protocol IPv4, address lengths 6 and 4.
const ETHERNET_IPV4: [u8; 6] = [0, 1, 8, 0, 6, 4];

view! {
    /// A view of an ARP packet at the start of `B`; [`Arp::new`] checks that
    /// the 28 bytes of an Ethernet/IPv4 packet fit.
    Arp, LEN
}

impl<B: AsRef<[u8]>> Arp<B> {
    /// Whether it maps IPv4 addresses to Ethernet ones (the only kind the
    /// switch reads).
    #[inline(always)]
    pub fn is_ethernet_ipv4(&self) -> bool {
        self.bytes()[..6] == ETHERNET_IPV4
    }

    #[inline(always)]
    pub fn oper(&self) -> u16 {
        read_u16(self.bytes(), OPER)
    }

    /// Sender hardware address.
    #[inline(always)]
    pub fn sha(&self) -> MacKey {
        mac_at(self.bytes(), SHA)
    }

    /// Sender protocol address.
    #[inline(always)]
    pub fn spa(&self) -> u32 {
        read_u32(self.bytes(), SPA)
    }

    /// Target protocol address.
    #[inline(always)]
    pub fn tpa(&self) -> u32 {
        read_u32(self.bytes(), TPA)
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Arp<B> {
    /// Writes operation and addresses (the fixed head stays as it is).
    #[inline]
    pub fn set(&mut self, oper: u16, sha: MacKey, spa: u32, tha: MacKey, tpa: u32) {
        let a = self.0.as_mut();
        write_u16(a, OPER, oper);
        a[SHA..SHA + 6].copy_from_slice(&mac_octets(sha));
        write_u32(a, SPA, spa);
        a[THA..THA + 6].copy_from_slice(&mac_octets(tha));
        write_u32(a, TPA, tpa);
    }
}

#[inline(always)]
fn mac_at(b: &[u8], at: usize) -> MacKey {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[at..at + 6]);
    mac_key(&m)
}

/// Writes a complete Ethernet + ARP frame into `frame` (at least
/// `ETH_LEN + LEN` bytes) and returns its length.
#[allow(clippy::too_many_arguments)]
pub fn write(
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
    let a = &mut frame[ETH_LEN..ETH_LEN + LEN];
    a[..6].copy_from_slice(&ETHERNET_IPV4);
    Arp(a).set(oper, sha, u32::from(spa), tha, u32::from(tpa));
    ETH_LEN + LEN
}
