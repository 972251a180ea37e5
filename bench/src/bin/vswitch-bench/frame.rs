//! Test frames: Ethernet + IPv4 + UDP, with a stamp at the start of the
//! UDP payload that says which run, stream and sequence number a frame
//! belongs to and when it was sent.
//!
//! Frame sizes count the 4-byte FCS, as RFC 2544 does: a "64-byte" frame is
//! 60 bytes handed to the interface (the NIC or veth adds no FCS we see).
//!
//! Stamp layout (18 bytes, big-endian), the most a 64-byte frame can carry
//! after its 42 bytes of headers:
//!
//! ```text
//! 0      2      4        6            10                 18
//! | magic | tag | stream |    seq     |      send time ns   |
//! ```
//!
//! `tag` names the trial: a sink counts only frames of the trial it was
//! told about, so late frames of an earlier trial are not mistaken for
//! this one's. The UDP checksum is zero (allowed for IPv4), so stamping a
//! frame touches only its payload.

use std::net::Ipv4Addr;

/// Bytes of the FCS that sizes include and buffers do not.
pub const FCS: u32 = 4;
const ETH_HLEN: usize = 14;
const IP_HLEN: usize = 20;
const UDP_HLEN: usize = 8;
/// Bytes of headers in front of the stamp.
pub const HEADERS: usize = ETH_HLEN + IP_HLEN + UDP_HLEN;
/// Bytes of the stamp.
pub const STAMP_LEN: usize = 18;
/// Smallest frame size (with FCS) that holds headers and stamp.
pub const MIN_SIZE: u32 = (HEADERS + STAMP_LEN) as u32 + FCS;
/// Largest frame size (with FCS): a 9000-byte MTU.
pub const MAX_SIZE: u32 = 9000 + ETH_HLEN as u32 + FCS;
const MAGIC: u16 = 0x7653;

/// Simple IMIX: 7 × 64, 4 × 594, 1 × 1518 bytes, interleaved.
pub const IMIX: [u32; 12] = [64, 594, 64, 1518, 64, 594, 64, 64, 594, 64, 594, 64];

/// Frame sizes a generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sizes {
    Fixed(u32),
    Imix,
}

impl Sizes {
    /// Size (with FCS) of the `i`-th frame.
    #[inline]
    pub fn nth(self, i: u64) -> u32 {
        match self {
            Sizes::Fixed(s) => s,
            Sizes::Imix => IMIX[(i % IMIX.len() as u64) as usize],
        }
    }

    /// Largest frame size this sends.
    pub fn max(self) -> u32 {
        match self {
            Sizes::Fixed(s) => s,
            Sizes::Imix => 1518,
        }
    }

    pub fn label(self) -> String {
        match self {
            Sizes::Fixed(s) => s.to_string(),
            Sizes::Imix => "imix".into(),
        }
    }
}

impl std::str::FromStr for Sizes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("imix") {
            return Ok(Sizes::Imix);
        }
        let n: u32 = s
            .parse()
            .map_err(|_| format!("frame size '{s}' is not a number or 'imix'"))?;
        if n < MIN_SIZE {
            return Err(format!(
                "frame size {n} is too small: Ethernet, IPv4 and UDP headers, the {STAMP_LEN}-byte stamp and the FCS need {MIN_SIZE}"
            ));
        }
        if n > MAX_SIZE {
            return Err(format!(
                "frame size {n} is larger than {MAX_SIZE} (a 9000-byte MTU)"
            ));
        }
        Ok(Sizes::Fixed(n))
    }
}

/// Which header fields make the flows differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Vary {
    /// UDP source port (then the source address, past 64,512 flows).
    Sport,
    /// Source address (counting up from the interface's own).
    Saddr,
}

/// Number of source ports a flow set walks through before it also moves
/// the source address.
const SPORTS: u32 = 64_512;

/// What the generator's frames carry.
#[derive(Debug, Clone)]
pub struct FrameSpec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    /// First source port; flows count up from it.
    pub src_port: u16,
    pub dst_port: u16,
    pub flows: u32,
    pub vary: Vary,
}

/// One frame's stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub tag: u16,
    pub stream: u16,
    pub seq: u32,
    pub sent_ns: u64,
}

impl FrameSpec {
    /// Source address and port of flow `flow` (taken modulo the flow count).
    #[inline]
    pub fn flow(&self, flow: u32) -> (Ipv4Addr, u16) {
        let f = flow % self.flows.max(1);
        let base = u32::from(self.src_ip);
        match self.vary {
            Vary::Sport => {
                let span = SPORTS.min(65_536 - u32::from(self.src_port));
                let port = u32::from(self.src_port) + f % span;
                (Ipv4Addr::from(base.wrapping_add(f / span)), port as u16)
            }
            Vary::Saddr => (Ipv4Addr::from(base.wrapping_add(f)), self.src_port),
        }
    }

    /// Writes a whole frame of `size` bytes (with FCS) for `flow` into
    /// `buf`, stamped with `stamp`; returns the bytes written (size − FCS).
    /// `buf` must hold them.
    pub fn write(&self, buf: &mut [u8], size: u32, flow: u32, stamp: Stamp) -> usize {
        let len = (size - FCS) as usize;
        let buf = &mut buf[..len];
        let (sip, sport) = self.flow(flow);
        buf[0..6].copy_from_slice(&self.dst_mac);
        buf[6..12].copy_from_slice(&self.src_mac);
        buf[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut buf[ETH_HLEN..ETH_HLEN + IP_HLEN];
        let total = (len - ETH_HLEN) as u16;
        ip[0] = 0x45;
        ip[1] = 0;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[4..6].copy_from_slice(&(stamp.seq as u16).to_be_bytes());
        ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
        ip[8] = 64;
        ip[9] = 17;
        ip[10..12].copy_from_slice(&[0, 0]);
        ip[12..16].copy_from_slice(&sip.octets());
        ip[16..20].copy_from_slice(&self.dst_ip.octets());
        let csum = ipv4_checksum(ip);
        ip[10..12].copy_from_slice(&csum.to_be_bytes());
        let udp = &mut buf[ETH_HLEN + IP_HLEN..HEADERS];
        udp[0..2].copy_from_slice(&sport.to_be_bytes());
        udp[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        udp[4..6].copy_from_slice(&(total - IP_HLEN as u16).to_be_bytes());
        udp[6..8].copy_from_slice(&[0, 0]);
        write_stamp(&mut buf[HEADERS..], stamp);
        len
    }
}

fn ipv4_checksum(hdr: &[u8]) -> u16 {
    let mut sum: u32 = hdr
        .chunks_exact(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Writes `stamp` at the start of `payload` (which holds at least
/// [`STAMP_LEN`] bytes).
#[inline]
pub fn write_stamp(payload: &mut [u8], s: Stamp) {
    payload[0..2].copy_from_slice(&MAGIC.to_be_bytes());
    payload[2..4].copy_from_slice(&s.tag.to_be_bytes());
    payload[4..6].copy_from_slice(&s.stream.to_be_bytes());
    payload[6..10].copy_from_slice(&s.seq.to_be_bytes());
    payload[10..18].copy_from_slice(&s.sent_ns.to_be_bytes());
}

/// The stamp at the start of a UDP payload, if it carries one.
#[inline]
pub fn read_stamp(payload: &[u8]) -> Option<Stamp> {
    let p = payload.get(..STAMP_LEN)?;
    if u16::from_be_bytes([p[0], p[1]]) != MAGIC {
        return None;
    }
    Some(Stamp {
        tag: u16::from_be_bytes([p[2], p[3]]),
        stream: u16::from_be_bytes([p[4], p[5]]),
        seq: u32::from_be_bytes([p[6], p[7], p[8], p[9]]),
        sent_ns: u64::from_be_bytes(p[10..18].try_into().ok()?),
    })
}

/// The stamp of an Ethernet frame: IPv4 (options allowed, not a later
/// fragment), UDP to `dst_port`, payload starting with a stamp. Anything
/// else is `None`: the sink counts it as foreign and moves on.
#[inline]
pub fn parse_frame(frame: &[u8], dst_port: u16) -> Option<Stamp> {
    if frame.len() < HEADERS + STAMP_LEN || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[ETH_HLEN..];
    if ip[0] >> 4 != 4 || ip[9] != 17 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let frag_offset = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
    if ihl < IP_HLEN || frag_offset != 0 {
        return None;
    }
    let udp = ip.get(ihl..ihl + UDP_HLEN)?;
    if u16::from_be_bytes([udp[2], udp[3]]) != dst_port {
        return None;
    }
    read_stamp(&ip[ihl + UDP_HLEN..])
}

/// A gratuitous ARP request for `ip` from `mac` (60 bytes, padded): a sink
/// sends one at the start of each trial so that learning switches keep
/// its MAC while it only receives.
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[38..42].copy_from_slice(&ip.octets());
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn spec(flows: u32, vary: Vary) -> FrameSpec {
        FrameSpec {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(10, 244, 1, 11),
            dst_ip: Ipv4Addr::new(10, 244, 1, 12),
            src_port: 1024,
            dst_port: 9000,
            flows,
            vary,
        }
    }

    #[test]
    fn frame_is_valid_udp_with_stamp() {
        let s = spec(4, Vary::Sport);
        let stamp = Stamp {
            tag: 7,
            stream: 3,
            seq: 123_456,
            sent_ns: 0x0102_0304_0506_0708,
        };
        for size in [64u32, 65, 128, 1518] {
            let mut buf = vec![0u8; 2048];
            let n = s.write(&mut buf, size, 2, stamp);
            assert_eq!(n as u32, size - FCS);
            let p = SlicedPacket::from_ethernet(&buf[..n]).expect("parses");
            let Some(NetSlice::Ipv4(ip)) = &p.net else {
                panic!("not IPv4")
            };
            let h = ip.header();
            assert_eq!(h.source_addr(), Ipv4Addr::new(10, 244, 1, 11));
            assert_eq!(h.destination_addr(), Ipv4Addr::new(10, 244, 1, 12));
            assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
            assert_eq!(usize::from(h.total_len()), n - 14);
            let Some(TransportSlice::Udp(udp)) = &p.transport else {
                panic!("not UDP")
            };
            assert_eq!(udp.source_port(), 1026);
            assert_eq!(udp.destination_port(), 9000);
            assert_eq!(usize::from(udp.length()), n - 34);
            assert_eq!(read_stamp(udp.payload()), Some(stamp));
            assert_eq!(parse_frame(&buf[..n], 9000), Some(stamp));
            assert_eq!(parse_frame(&buf[..n], 9001), None);
        }
    }

    #[test]
    fn flows_vary_the_port_then_the_address() {
        let s = spec(200_000, Vary::Sport);
        assert_eq!(s.flow(0), (Ipv4Addr::new(10, 244, 1, 11), 1024));
        assert_eq!(s.flow(64_511), (Ipv4Addr::new(10, 244, 1, 11), 65_535));
        assert_eq!(s.flow(64_512), (Ipv4Addr::new(10, 244, 1, 12), 1024));
        assert_eq!(s.flow(200_000), s.flow(0), "flows wrap at the flow count");
        let a = spec(10, Vary::Saddr);
        assert_eq!(a.flow(3), (Ipv4Addr::new(10, 244, 1, 14), 1024));
        let distinct: std::collections::HashSet<_> = (0..10_000).map(|f| s.flow(f)).collect();
        assert_eq!(distinct.len(), 10_000);
    }

    #[test]
    fn sizes_parse_and_refuse() {
        assert_eq!("64".parse::<Sizes>(), Ok(Sizes::Fixed(64)));
        assert_eq!("IMIX".parse::<Sizes>(), Ok(Sizes::Imix));
        assert!("63".parse::<Sizes>().unwrap_err().contains("too small"));
        assert!("9019".parse::<Sizes>().unwrap_err().contains("larger"));
        assert!("x".parse::<Sizes>().is_err());
        assert_eq!(MIN_SIZE, 64);
        let imix: Vec<u32> = (0..12).map(|i| Sizes::Imix.nth(i)).collect();
        assert_eq!(imix.iter().filter(|&&s| s == 64).count(), 7);
        assert_eq!(imix.iter().filter(|&&s| s == 594).count(), 4);
        assert_eq!(Sizes::Imix.max(), 1518);
    }

    #[test]
    fn garbage_is_not_a_stamp() {
        assert_eq!(parse_frame(&[], 9000), None);
        assert_eq!(parse_frame(&[0u8; 60], 9000), None);
        let mut buf = [0u8; 60];
        spec(1, Vary::Sport).write(
            &mut buf,
            64,
            0,
            Stamp {
                tag: 1,
                stream: 0,
                seq: 0,
                sent_ns: 0,
            },
        );
        for cut in 0..60 {
            let _ = parse_frame(&buf[..cut], 9000);
        }
        buf[HEADERS] ^= 0xff;
        assert_eq!(parse_frame(&buf, 9000), None, "wrong magic");
        let arp = gratuitous_arp([2, 0, 0, 0, 0, 9], Ipv4Addr::new(10, 0, 0, 9));
        assert_eq!(parse_frame(&arp, 9000), None);
    }
}
