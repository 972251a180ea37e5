//! The frame bytes: typed views over the headers the switch reads and
//! rewrites, the Internet checksum, and writers for the frames it
//! originates or rewrites whole (ARP, neighbour discovery, ICMP errors, TCP
//! resets, VXLAN).
//!
//! One module per protocol with its constants and a view: [`ipv4::Ipv4`],
//! [`ipv6::Ipv6`], [`l4::Tcp`], [`l4::Udp`], [`icmp::Icmp`] (ICMP and
//! ICMPv6), [`arp::Arp`], [`nd::Nd`], [`vxlan::Vxlan`]. A view wraps a
//! byte slice (`&[u8]` to read, `&mut [u8]` to write too); its constructor
//! `new` returns `None` when the slice is too short for the fixed header,
//! so no accessor panics. What the fields claim (a version, a header or
//! total length) is checked by the stage that reads them, with methods
//! such as [`ipv4::Ipv4::lengths`], because each stage answers a bad value
//! its own way. Setters that touch a checksummed field update the checksum
//! incrementally (RFC 1624).
//!
//! The parse stage reads the Ethernet header with etherparse and records
//! where the transport header starts ([`l4_offset`] into `Pkt::l4`); the
//! views are hand-written: smoltcp's `wire` views were measured and are
//! 1.4–1.9× slower for NAT (no incremental checksum update), and neither
//! crate has the in-place rewrites (ICMP quoting, VXLAN) the router does.

/// Declares a view of a header at the start of a byte buffer `B`:
/// `new` checks that `$min` bytes (its fixed part) fit, so that no
/// accessor of a view can panic; `bytes` and `bytes_mut` give the buffer.
macro_rules! view {
    ($(#[$doc:meta])* $name:ident, $min:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<B>(B);

        impl<B: AsRef<[u8]>> $name<B> {
            /// A view of `buf`, if its fixed header fits.
            #[inline(always)]
            pub fn new(buf: B) -> Option<Self> {
                (buf.as_ref().len() >= $min).then_some($name(buf))
            }

            #[inline(always)]
            pub fn bytes(&self) -> &[u8] {
                self.0.as_ref()
            }
        }

        impl<B: AsRef<[u8]> + AsMut<[u8]>> $name<B> {
            #[inline(always)]
            pub fn bytes_mut(&mut self) -> &mut [u8] {
                self.0.as_mut()
            }
        }
    };
}

pub mod arp;
pub mod checksum;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod l4;
pub mod nd;
pub mod vxlan;

pub use checksum::{checksum, checksum_update, fold, sum};
pub use ipv6::icmpv6_checksum;

use crate::{MacKey, mac_octets};

/// Length of an Ethernet II header.
pub const ETH_LEN: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// The group (multicast) bit of a [`crate::MacKey`].
pub const GROUP_BIT: u64 = 1 << 40;

#[inline(always)]
pub fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
pub fn write_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
pub fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
pub fn write_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Reads the MAC address at `at` (0: destination, 6: source).
#[inline(always)]
pub fn read_mac(frame: &[u8], at: usize) -> MacKey {
    let mut m = [0u8; 6];
    m.copy_from_slice(&frame[at..at + 6]);
    crate::mac_key(&m)
}

/// Writes both MAC addresses of an Ethernet header.
#[inline(always)]
pub fn write_macs(frame: &mut [u8], dst: MacKey, src: MacKey) {
    frame[0..6].copy_from_slice(&mac_octets(dst));
    frame[6..12].copy_from_slice(&mac_octets(src));
}

/// What follows the Ethernet header (nothing, for a frame too short to
/// have one).
#[inline(always)]
pub fn payload(frame: &[u8]) -> &[u8] {
    frame.get(ETH_LEN..).unwrap_or_default()
}

/// [`payload`], to write.
#[inline(always)]
pub fn payload_mut(frame: &mut [u8]) -> &mut [u8] {
    match frame.get_mut(ETH_LEN..) {
        Some(b) => b,
        None => &mut [],
    }
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

#[cfg(test)]
mod tests;
