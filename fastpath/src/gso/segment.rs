//! Software segmentation: a GSO frame cut into the packets it stands for,
//! for a port that cannot take it whole.
//!
//! As the kernel's `tcp_gso_segment`/`__udp_gso_segment` (USO) do: every
//! segment gets the frame's headers and at most `gso.size` bytes of its
//! payload; IPv4 lengths, identifications (incremented per segment) and
//! header checksums, IPv6 payload lengths, TCP sequence numbers, TCP flags
//! (FIN and PSH only on the last segment, CWR only on the first), UDP
//! lengths, and every transport checksum are written for each segment.

use super::{Gso, Layout};
use crate::pool::{FRAME_CAPACITY, FramePool};
use crate::wire::checksum::{checksum, fold, sum};
use crate::wire::l4::{tcp, udp};
use crate::wire::{ETH_LEN, ipv4, ipv6, read_u16, read_u32, write_u16, write_u32};

/// TCP flags that only the last segment keeps: FIN and PSH.
const LAST_ONLY: u8 = tcp::FIN | 0x08;
/// CWR: only the first segment keeps it.
const CWR: u8 = 0x80;

/// Regular frames segmentation leaves free: a pod's GSO frames with a tiny
/// segment size (hundreds of segments each) must not empty the pool that
/// the AF_XDP fill rings are topped up from.
pub const RESERVE: u32 = 4096;

/// Why a GSO frame could not be cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentError {
    /// Its headers do not parse, or a segment would not fit a frame.
    Malformed,
}

/// Cuts the GSO frame at `addr` (`len` bytes) into frames of at most
/// `gso.size` payload bytes and hands each (address, length) to `emit`, in
/// order, with the pool (to finish the segment, which `emit` owns from then
/// on). The frame itself is left as it is (the caller frees it). Returns
/// the number of segments emitted and the number lost for want of a free
/// frame beyond the pool's [`RESERVE`] (counted by the caller as
/// `no_buffer`).
pub fn segment(
    pool: &mut FramePool,
    addr: u32,
    len: u32,
    gso: Gso,
    mut emit: impl FnMut(&mut FramePool, u32, u32),
) -> Result<(usize, usize), SegmentError> {
    cut(pool, addr, len, gso, false, |pool, a, l, _| {
        emit(pool, a, l)
    })
}

/// As [`segment`], but each segment's transport checksum is left partial
/// (the pseudo-header sum, for a port that has the kernel complete it):
/// `emit` also gets the segment's [partial](Gso::partial) marking.
pub fn segment_partial(
    pool: &mut FramePool,
    addr: u32,
    len: u32,
    gso: Gso,
    emit: impl FnMut(&mut FramePool, u32, u32, Gso),
) -> Result<(usize, usize), SegmentError> {
    cut(pool, addr, len, gso, true, emit)
}

fn cut(
    pool: &mut FramePool,
    addr: u32,
    len: u32,
    gso: Gso,
    partial: bool,
    mut emit: impl FnMut(&mut FramePool, u32, u32, Gso),
) -> Result<(usize, usize), SegmentError> {
    let frame = pool.data(addr, len);
    let layout = Layout::of(frame, gso.base()).ok_or(SegmentError::Malformed)?;
    let hdr = layout.hdr_len;
    let mss = usize::from(gso.size());
    if mss == 0 || hdr + mss > FRAME_CAPACITY as usize || frame.len() < hdr {
        return Err(SegmentError::Malformed);
    }
    let payload = frame.len() - hdr;
    let count = payload.div_ceil(mss).max(1);
    let marking = if partial {
        Gso::partial(layout.l4 as u16, !layout.tcp)
    } else {
        Gso::NONE
    };
    let (mut sent, mut lost) = (0, 0);
    for i in 0..count {
        let start = hdr + i * mss;
        let chunk = mss.min(payload.saturating_sub(i * mss));
        let seg_len = hdr + chunk;
        let new = match pool.alloc() {
            Some(a) if pool.available_regular() >= RESERVE => a,
            other => {
                if let Some(a) = other {
                    pool.free(a);
                }
                lost = count - i;
                break;
            }
        };
        let Some((src, dst)) = pool.pair_mut(addr, len, new, seg_len as u32) else {
            pool.free(new);
            return Err(SegmentError::Malformed);
        };
        dst[..hdr].copy_from_slice(&src[..hdr]);
        dst[hdr..].copy_from_slice(&src[start..start + chunk]);
        fix_headers(dst, &layout, i, count, mss, partial);
        emit(pool, new, seg_len as u32, marking);
        sent += 1;
    }
    Ok((sent, lost))
}

/// Writes segment `i` of `count`'s own lengths, identification, sequence
/// number, flags and checksums into `seg` (headers copied from the GSO
/// frame, payload already in place); with `partial`, the transport
/// checksum field gets only the pseudo-header sum.
fn fix_headers(seg: &mut [u8], l: &Layout, i: usize, count: usize, mss: usize, partial: bool) {
    let ip_len = seg.len() - ETH_LEN;
    let l4_len = seg.len() - l.l4;
    // The pseudo-header: addresses, protocol, transport length.
    let pseudo = if l.v6 {
        let ip = &mut seg[ETH_LEN..];
        write_u16(ip, ipv6::PAYLOAD_LEN, (ip_len - ipv6::HDR_LEN) as u16);
        sum(&ip[ipv6::SRC..ipv6::DST + 16], 0)
    } else {
        let ihl = l.l4 - ETH_LEN;
        let ip = &mut seg[ETH_LEN..l.l4];
        write_u16(ip, ipv4::TOTAL_LEN, ip_len as u16);
        let id = read_u16(ip, 4).wrapping_add(i as u16);
        write_u16(ip, 4, id);
        write_u16(ip, ipv4::CHECKSUM, 0);
        let c = checksum(&ip[..ihl]);
        write_u16(ip, ipv4::CHECKSUM, c);
        sum(&ip[ipv4::SRC..ipv4::DST + 4], 0)
    };
    let proto = if l.tcp { tcp::PROTO } else { udp::PROTO };
    let acc = pseudo + u32::from(proto) + l4_len as u32;
    let seg4 = &mut seg[l.l4..];
    if l.tcp {
        let seq = read_u32(seg4, tcp::SEQ).wrapping_add((i * mss) as u32);
        write_u32(seg4, tcp::SEQ, seq);
        let mut flags = seg4[tcp::FLAGS];
        if i + 1 < count {
            flags &= !LAST_ONLY;
        }
        if i > 0 {
            flags &= !CWR;
        }
        seg4[tcp::FLAGS] = flags;
    } else {
        write_u16(seg4, udp::LEN, l4_len as u16);
    }
    let at = if l.tcp { tcp::CHECKSUM } else { udp::CHECKSUM };
    if partial {
        // The pseudo-header sum, folded, not complemented (never 0).
        write_u16(seg4, at, !fold(acc));
        return;
    }
    write_u16(seg4, at, 0);
    let c = fold(sum(seg4, acc));
    // 0 means "no checksum" in UDP; its ones'-complement twin.
    write_u16(seg4, at, if c == 0 && !l.tcp { 0xffff } else { c });
}
