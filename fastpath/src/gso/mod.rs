//! Generic segmentation offload: frames that stand for several packets.
//!
//! A TAP port with offloads (`IFF_VNET_HDR`, `TUNSETOFFLOAD`) reads and
//! writes each frame behind a `virtio_net_hdr`. The pod's stack may then
//! hand over one TCP segment of up to 64 KiB (TSO) or one UDP datagram to be
//! cut into several (USO), with the transport checksum left partial (the
//! field holds the pseudo-header sum). Such a frame crosses the pipeline as
//! one packet that carries its [`Gso`]: L2 and routing rewrite it once, the
//! Service stage keeps its partial checksum partial. A TAP port with
//! offloads takes it whole; toward any other port the output step cuts it
//! into wire-sized frames ([`segment`]).
//!
//! This module reads and writes the header ([`VnetHdr`]), checks that it
//! describes the frame it comes with, and completes checksums the header
//! leaves partial on frames that are not GSO.

pub mod coalesce;
pub mod segment;

use crate::wire::checksum::sum;
use crate::wire::ipv4::Ipv4;
use crate::wire::ipv6::{self, Ipv6};
use crate::wire::l4::{Tcp, tcp, udp};
use crate::wire::{self, ETH_LEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6, read_u16, write_u16};

/// Size of `struct virtio_net_hdr` (the TAP default; no `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;

/// `virtio_net_hdr.flags`: the checksum from `csum_start` on is partial.
pub const F_NEEDS_CSUM: u8 = 1;
/// `virtio_net_hdr.gso_type` values.
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_UDP_L4: u8 = 5;
/// The TCP segment has CWR set (only on the first segment once cut).
pub const GSO_ECN: u8 = 0x80;
/// [`Gso`] kinds of a frame that is one packet with its TCP (UDP) checksum
/// partial: not virtio-net values, never read from a header.
const PARTIAL_TCP: u8 = 0x40;
const PARTIAL_UDP: u8 = 0x41;
/// Where the checksum field is in a TCP and a UDP header.
const TCP_CSUM_OFFSET: u16 = 16;
const UDP_CSUM_OFFSET: u16 = 6;

/// What a frame carries beyond its bytes: how to cut it, if it is a GSO
/// frame, or where its partial checksum is, if it is one packet whose
/// TCP or UDP checksum field holds only the pseudo-header sum
/// ([`Gso::partial`]: from a pod that leaves checksums to the "hardware").
/// Copied from the virtio-net header on receive, written back into one on
/// transmit; [`Gso::kind`] uses the header's `gso_type` values.
///
/// One 32-bit word (type in the low byte, segment size in the high half),
/// so that it is written and read in one piece: a descriptor written
/// field by field and then read as a whole stalls the CPU's store
/// forwarding on every frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gso(u32);

impl Gso {
    /// Not a GSO frame: one packet, checksums complete.
    pub const NONE: Gso = Gso(0);
    /// A frame whose virtio-net header was refused (`bad_offload`).
    pub const INVALID: Gso = Gso(0x7f);

    /// GSO type `kind` (`GSO_TCPV4`, `GSO_TCPV6` or `GSO_UDP_L4`, possibly
    /// with `GSO_ECN`) in segments of `size` payload bytes.
    #[inline(always)]
    pub const fn new(kind: u8, size: u16) -> Self {
        Gso(kind as u32 | (size as u32) << 16)
    }

    /// One packet whose TCP (or, with `udp`, UDP) checksum is partial,
    /// its transport header at byte `l4` of the frame.
    #[inline(always)]
    pub const fn partial(l4: u16, udp: bool) -> Self {
        Gso((PARTIAL_TCP | udp as u8) as u32 | (l4 as u32) << 16)
    }

    /// True for one packet with a partial checksum ([`Gso::partial`]).
    #[inline(always)]
    pub fn is_partial(self) -> bool {
        self.kind() & !1 == PARTIAL_TCP
    }

    /// True for any frame whose transport checksum is partial: a GSO frame
    /// or a [partial](Gso::partial) one.
    #[inline(always)]
    pub fn csum_partial(self) -> bool {
        self != Gso::NONE && !self.is_invalid()
    }

    /// Of a [partial](Gso::partial) frame: where the checksum starts (the
    /// transport header) and the field's offset from there, as a NIC is
    /// told (`csum_start`, `csum_offset`).
    #[inline(always)]
    pub fn csum_at(self) -> (u16, u16) {
        let offset = if self.kind() == PARTIAL_UDP {
            UDP_CSUM_OFFSET
        } else {
            TCP_CSUM_OFFSET
        };
        (self.size(), offset)
    }

    /// The GSO type, with the ECN bit.
    #[inline(always)]
    pub fn kind(self) -> u8 {
        self.0 as u8
    }

    /// Payload bytes per segment.
    #[inline(always)]
    pub fn size(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// True for a frame to be cut into several (or a refused one).
    #[inline(always)]
    pub fn is_some(self) -> bool {
        self.kind() != GSO_NONE && !self.is_partial()
    }

    /// True for a frame whose header was refused.
    #[inline(always)]
    pub fn is_invalid(self) -> bool {
        self == Gso::INVALID
    }

    /// The GSO type without the ECN bit.
    #[inline(always)]
    pub fn base(self) -> u8 {
        self.kind() & !GSO_ECN
    }
}

/// A `virtio_net_hdr` in the byte order of this machine (a TAP device's
/// default for a legacy header on a little-endian host).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads a header; `None` if `b` is shorter than one.
    pub fn read(b: &[u8]) -> Option<Self> {
        let b: &[u8; VNET_HDR_LEN] = b.get(..VNET_HDR_LEN)?.try_into().ok()?;
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// Writes the header into the first [`VNET_HDR_LEN`] bytes of `b`.
    pub fn write(&self, b: &mut [u8]) {
        let Some(b) = b.get_mut(..VNET_HDR_LEN) else {
            return;
        };
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
    }

    /// The header for sending `frame` with `gso`: all zero for a frame
    /// whose checksums are complete, the checksum's place for a
    /// [partial](Gso::partial) one, else the offsets the frame's own
    /// headers give. `None` when they do not parse.
    pub fn for_frame(frame: &[u8], gso: Gso) -> Option<Self> {
        if gso.is_partial() {
            let (csum_start, csum_offset) = gso.csum_at();
            return Some(VnetHdr {
                flags: F_NEEDS_CSUM,
                csum_start,
                csum_offset,
                ..VnetHdr::default()
            });
        }
        if !gso.is_some() {
            return Some(VnetHdr::default());
        }
        let l = Layout::of(frame, gso.base())?;
        Some(VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: gso.kind(),
            hdr_len: l.hdr_len as u16,
            gso_size: gso.size(),
            csum_start: l.l4 as u16,
            csum_offset: l.csum_offset() as u16,
        })
    }

    /// What the header says about `frame`, which it came with: the frame's
    /// [`Gso`] ([`Gso::INVALID`] if the header does not describe the frame:
    /// GSO size 0, a header length or checksum position beyond the frame,
    /// an unknown GSO type, offsets that are not the frame's own). A frame
    /// that is not GSO with a partial TCP or UDP checksum where its own
    /// headers put it is [partial](Gso::partial); any other partial
    /// checksum is completed here.
    pub fn accept(&self, frame: &mut [u8]) -> Gso {
        let partial = self.flags & F_NEEDS_CSUM != 0;
        let start = usize::from(self.csum_start);
        let field = start + usize::from(self.csum_offset);
        if partial && field + 2 > frame.len() {
            return Gso::INVALID;
        }
        if self.gso_type == GSO_NONE {
            if !partial {
                return Gso::NONE;
            }
            if let Some(g) = partial_at(frame, start, self.csum_offset) {
                return g;
            }
            complete_partial(frame, start, field);
            return Gso::NONE;
        }
        let base = self.gso_type & !GSO_ECN;
        let known = matches!(base, GSO_TCPV4 | GSO_TCPV6)
            || (base == GSO_UDP_L4 && self.gso_type & GSO_ECN == 0);
        if !known || !partial || self.gso_size == 0 || usize::from(self.hdr_len) > frame.len() {
            return Gso::INVALID;
        }
        match Layout::of(frame, base) {
            Some(l) if l.l4 == start && l.csum_offset() == usize::from(self.csum_offset) => {
                Gso::new(self.gso_type, self.gso_size)
            }
            _ => Gso::INVALID,
        }
    }
}

/// The IP length of the largest packet the GSO frame stands for (its
/// headers and one segment's payload, at most the frame's own); `None` if
/// its headers do not parse.
pub fn segment_ip_len(frame: &[u8], gso: Gso) -> Option<usize> {
    let l = Layout::of(frame, gso.base())?;
    Some((l.hdr_len + usize::from(gso.size())).min(frame.len()) - ETH_LEN)
}

/// The [partial](Gso::partial) marking of `frame` if its TCP or UDP header
/// (IPv4 or IPv6, per [`Layout::of`]) starts at `start` and its checksum
/// field is at `offset` from there.
fn partial_at(frame: &[u8], start: usize, offset: u16) -> Option<Gso> {
    let ethertype = read_u16(frame.get(..ETH_LEN)?, 12);
    let (base, udp) = match (offset, ethertype) {
        (TCP_CSUM_OFFSET, ETHERTYPE_IPV4) => (GSO_TCPV4, false),
        (TCP_CSUM_OFFSET, ETHERTYPE_IPV6) => (GSO_TCPV6, false),
        (UDP_CSUM_OFFSET, _) => (GSO_UDP_L4, true),
        _ => return None,
    };
    let l = Layout::of(frame, base)?;
    (l.l4 == start).then(|| Gso::partial(start as u16, udp))
}

/// Completes the checksum of a [partial](Gso::partial) frame in software;
/// false (frame untouched) if `gso` is not partial or the field lies beyond
/// the frame.
pub fn complete(frame: &mut [u8], gso: Gso) -> bool {
    if !gso.is_partial() {
        return false;
    }
    let (start, offset) = gso.csum_at();
    let (start, field) = (usize::from(start), usize::from(start + offset));
    if field + 2 > frame.len() {
        return false;
    }
    complete_partial(frame, start, field);
    true
}

/// Completes the checksum at `field` over the bytes from `start` to the
/// end of the IP packet, as a NIC would: the field holds the pseudo-header
/// sum. Bytes after the packet (Ethernet padding, trailing garbage) are
/// not the packet's (found by `fuzz/` `pipeline`). A result of 0 is sent
/// as 0xffff (0 would mean "no checksum" in UDP; for TCP they are equal).
pub fn complete_partial(frame: &mut [u8], start: usize, field: usize) {
    let Some(data) = frame.get(start..ip_end(frame)) else {
        return;
    };
    let c = crate::wire::checksum::fold(sum(data, 0));
    write_u16(frame, field, if c == 0 { 0xffff } else { c });
}

/// Where the IP packet in `frame` ends, by its own length field (IPv4
/// total length, IPv6 payload length), at most the frame's end; the
/// frame's end when it is neither.
fn ip_end(frame: &[u8]) -> usize {
    let len = |at: usize| {
        frame
            .get(at..at + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    };
    let end = match frame.get(12..14) {
        Some([0x08, 0x00]) => len(ETH_LEN + 2).map(|t| ETH_LEN + t),
        Some([0x86, 0xdd]) => len(ETH_LEN + 4).map(|p| ETH_LEN + 40 + p),
        _ => None,
    };
    end.map_or(frame.len(), |e| e.min(frame.len()))
}

/// Where a GSO frame's headers are, read from the frame itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// Where the transport header starts.
    pub l4: usize,
    /// Ethernet, IP and transport headers together.
    pub hdr_len: usize,
    /// TCP (else UDP).
    pub tcp: bool,
}

impl Layout {
    /// The headers of a frame of GSO type `base` (without the ECN bit):
    /// IPv4 with a sane header length and not a fragment, or IPv6 without
    /// extension headers, then TCP (with its data offset) or UDP, all within
    /// the frame and agreeing with the type.
    pub fn of(frame: &[u8], base: u8) -> Option<Self> {
        let ethertype = read_u16(frame.get(..ETH_LEN)?, 12);
        let ip = wire::payload(frame);
        let (v6, l4, proto) = match ethertype {
            ETHERTYPE_IPV4 => {
                let v = Ipv4::new(ip)?;
                let ihl = v.header_len();
                if v.version() != 4 || ihl < 20 || ihl > ip.len() || v.is_fragment() {
                    return None;
                }
                (false, ETH_LEN + ihl, v.protocol())
            }
            ETHERTYPE_IPV6 => {
                let v = Ipv6::new(ip)?;
                if v.version() != 6 {
                    return None;
                }
                (true, ETH_LEN + ipv6::HDR_LEN, v.next_header())
            }
            _ => return None,
        };
        let tcp = match (base, proto) {
            (GSO_TCPV4, tcp::PROTO) if !v6 => true,
            (GSO_TCPV6, tcp::PROTO) if v6 => true,
            (GSO_UDP_L4, udp::PROTO) => false,
            _ => return None,
        };
        let seg = frame.get(l4..)?;
        let l4_len = if tcp {
            let t = Tcp::new(seg)?;
            let h = t.header_len();
            (h >= tcp::MIN_LEN && h <= seg.len()).then_some(h)?
        } else {
            (seg.len() >= udp::HDR_LEN).then_some(udp::HDR_LEN)?
        };
        Some(Layout {
            v6,
            l4,
            hdr_len: l4 + l4_len,
            tcp,
        })
    }

    /// Where the checksum field is, from the transport header's start.
    pub fn csum_offset(&self) -> usize {
        if self.tcp {
            tcp::CHECKSUM
        } else {
            udp::CHECKSUM
        }
    }
}

#[cfg(test)]
mod tests;
