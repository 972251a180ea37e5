//! Coalescing (GRO) toward a TAP with offloads: a run of TCP segments of
//! one flow, one after another in a port's output list, becomes one GSO
//! frame written behind one virtio-net header, so that the pod's stack
//! takes one segment of up to 64 KiB instead of dozens (as the kernel's
//! GRO does for a NIC). It serves what cannot arrive as GSO frames: TCP
//! from AF_XDP pods (a veth with XDP sends no TSO) and from the uplink.
//!
//! The rules follow the kernel's `inet_gro_receive`/`tcp_gro_receive`,
//! kept simple: the same Ethernet header, the same IP header but for
//! length, identification and checksum (IPv4 without options, not a
//! fragment, identifications one apart, or equal with DF; IPv6 without
//! extension headers), the same ports, acknowledgement number, window,
//! urgent pointer and TCP options, consecutive sequence numbers, flags ACK
//! with PSH at most on the last segment, every segment but the last as
//! long as the first, 64 KiB in all. Every segment's IPv4 header checksum
//! and TCP checksum must verify before it is merged (the merged frame's
//! checksum is left partial, and a receiver trusts a partial checksum, so
//! a corrupt segment must not hide in one); a segment whose TCP checksum
//! is itself [partial](Gso::partial) (from a pod's own stack, which left it
//! to the "hardware") is trusted as the kernel trusts it.

use super::{GSO_TCPV4, GSO_TCPV6, Gso, Layout};
use crate::pool::{BIG_CAPACITY, FramePool};
use crate::tx::TxFrame;
use crate::wire::checksum::{checksum, fold, sum};
use crate::wire::l4::tcp;
use crate::wire::{
    ETH_LEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ipv4, ipv6, read_u16, read_u32, write_u16,
};

/// PSH: allowed, but only on the last segment of a run.
const PSH: u8 = 0x08;
/// The most an IP length field holds.
const IP_MAX: usize = 65_535;

/// A TCP segment that may be merged, as read from its frame.
#[derive(Debug, Clone, Copy)]
struct Seg {
    v6: bool,
    l4: usize,
    hdr: usize,
    seq: u32,
    payload: usize,
    flags: u8,
    /// IPv4 identification (0 for IPv6).
    id: u16,
    /// The pseudo-header's sum but for the length.
    pseudo: u32,
    /// The TCP checksum is partial ([`Gso::partial`]): the sender's own
    /// stack left it so, and it is trusted as the kernel trusts it.
    partial: bool,
}

/// Reads `frame`'s headers as a segment that may be merged: TCP over IPv4
/// (no options, not a fragment) or IPv6 (no extension headers), IP length
/// equal to the frame's, flags ACK (and PSH), some payload. Checksums are
/// left to [`verified`], for segments about to join a run.
fn parse(frame: &[u8], gso: Gso) -> Option<Seg> {
    if (gso != Gso::NONE && !gso.is_partial())
        || frame.len() < ETH_LEN + ipv4::MIN_LEN + tcp::MIN_LEN
    {
        return None;
    }
    let ethertype = read_u16(frame, 12);
    let ip = &frame[ETH_LEN..];
    let (base, pseudo) = match ethertype {
        ETHERTYPE_IPV4 if ip[ipv4::PROTO] == tcp::PROTO && ip[0] == 0x45 => {
            if usize::from(read_u16(ip, ipv4::TOTAL_LEN)) != ip.len() {
                return None;
            }
            (GSO_TCPV4, sum(&ip[ipv4::SRC..ipv4::DST + 4], 0))
        }
        ETHERTYPE_IPV6 if ip.get(ipv6::NEXT_HEADER) == Some(&tcp::PROTO) => {
            let len = usize::from(read_u16(ip, ipv6::PAYLOAD_LEN));
            if ip.len() < ipv6::HDR_LEN || len != ip.len() - ipv6::HDR_LEN {
                return None;
            }
            (GSO_TCPV6, sum(&ip[ipv6::SRC..ipv6::DST + 16], 0))
        }
        _ => return None,
    };
    let l = Layout::of(frame, base)?;
    let t = &frame[l.l4..];
    let flags = t[tcp::FLAGS];
    if flags & !(tcp::ACK_FLAG | PSH) != 0 || flags & tcp::ACK_FLAG == 0 || frame.len() <= l.hdr_len
    {
        return None;
    }
    Some(Seg {
        v6: l.v6,
        l4: l.l4,
        hdr: l.hdr_len,
        seq: read_u32(t, tcp::SEQ),
        payload: frame.len() - l.hdr_len,
        flags,
        id: if l.v6 { 0 } else { read_u16(ip, 4) },
        pseudo,
        partial: gso.is_partial(),
    })
}

/// Whether `frame`'s IPv4 header checksum (if any) and TCP checksum
/// (unless partial) are right.
fn verified(frame: &[u8], s: &Seg) -> bool {
    if !s.v6 && checksum(&frame[ETH_LEN..s.l4]) != 0 {
        return false;
    }
    if s.partial {
        return true;
    }
    let t = &frame[s.l4..];
    fold(sum(t, s.pseudo + u32::from(tcp::PROTO) + t.len() as u32)) == 0
}

/// Whether `b` (after `a`, which follows `head`) continues `head`'s run,
/// judged by headers (checksums aside).
fn continues(head: (&[u8], &Seg), a: &Seg, b: (&[u8], &Seg)) -> bool {
    let (hf, h) = head;
    let (bf, s) = b;
    if s.v6 != h.v6 || s.hdr != h.hdr || a.flags & PSH != 0 || a.payload != h.payload {
        return false;
    }
    if s.seq != a.seq.wrapping_add(a.payload as u32) || s.payload > h.payload {
        return false;
    }
    // IPv4 identifications: one apart, or equal with DF (as the kernel's
    // GRO asks, so that cutting the frame again gives the same ones).
    let df = !h.v6 && read_u16(hf, ETH_LEN + ipv4::FLAGS_FRAG) & ipv4::DF != 0;
    if !h.v6 && s.id != a.id.wrapping_add(1) && !(df && s.id == a.id) {
        return false;
    }
    let same = |r: std::ops::Range<usize>| match (hf.get(r.clone()), bf.get(r)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    };
    let ip_same = if h.v6 {
        // Version, class and flow label; next header, hop limit, addresses.
        same(ETH_LEN..ETH_LEN + 4) && same(ETH_LEN + 6..ETH_LEN + ipv6::HDR_LEN)
    } else {
        // Version and length, TOS; flags and fragment, TTL, protocol; addresses.
        same(ETH_LEN..ETH_LEN + 2)
            && same(ETH_LEN + ipv4::FLAGS_FRAG..ETH_LEN + ipv4::CHECKSUM)
            && same(ETH_LEN + ipv4::SRC..ETH_LEN + ipv4::DST + 4)
    };
    let l4 = h.l4;
    // Ports; acknowledgement, data offset; window; urgent pointer, options.
    same(0..ETH_LEN)
        && ip_same
        && same(l4..l4 + tcp::SEQ)
        && same(l4 + tcp::ACK..l4 + tcp::FLAGS)
        && same(l4 + tcp::WINDOW..l4 + tcp::CHECKSUM)
        && same(l4 + tcp::CHECKSUM + 2..h.hdr)
}

/// Merges runs of segments in `list` (frames for one TAP port with
/// offloads, in the order they go out) into GSO frames, in place; frames
/// that start no run stay as they are. Returns how many frames fewer the
/// list holds. A run is left as it is when no big frame is free.
pub fn coalesce(pool: &mut FramePool, list: &mut Vec<TxFrame>) -> usize {
    if list.len() < 2 {
        return 0;
    }
    let before = list.len();
    let mut out = 0;
    let mut i = 0;
    while i < list.len() {
        let (end, head) = run_end(pool, list, i);
        if let Some(h) = head.filter(|_| end - i >= 2) {
            match merge(pool, &list[i..end], &h) {
                Some(f) => {
                    list[out] = f;
                    out += 1;
                    i = end;
                    continue;
                }
                // No big frame free: the rest goes as it is (looking for
                // runs again would only cost checksum passes).
                None => {
                    list.copy_within(i.., out);
                    out += list.len() - i;
                    break;
                }
            }
        }
        list[out] = list[i];
        out += 1;
        i += 1;
    }
    list.truncate(out);
    before - out
}

/// Where the run that starts at `list[i]` ends (`i + 1`: no run), and
/// its head's headers.
fn run_end(pool: &FramePool, list: &[TxFrame], i: usize) -> (usize, Option<Seg>) {
    let hf = pool.data(list[i].addr, list[i].len);
    let Some(h) = parse(hf, list[i].gso) else {
        return (i + 1, None);
    };
    let mut verified_head = false;
    let mut prev = h;
    let mut total = h.hdr + h.payload;
    let mut j = i + 1;
    while j < list.len() {
        let bf = pool.data(list[j].addr, list[j].len);
        let Some(s) = parse(bf, list[j].gso) else {
            break;
        };
        total += s.payload;
        let fits = total - ETH_LEN - if h.v6 { ipv6::HDR_LEN } else { 0 } <= IP_MAX
            && total <= BIG_CAPACITY as usize;
        if !fits || !continues((hf, &h), &prev, (bf, &s)) {
            break;
        }
        // Checksums last, and the head's only once a segment would join.
        if !verified_head {
            if !verified(hf, &h) {
                return (i + 1, None);
            }
            verified_head = true;
        }
        if !verified(bf, &s) {
            break;
        }
        j += 1;
        if s.payload < h.payload {
            break;
        }
        prev = s;
    }
    (j, Some(h))
}

/// One GSO frame from the segments of a run (head's headers `h`); frees
/// them. `None` (nothing changed) when no big frame is free.
fn merge(pool: &mut FramePool, run: &[TxFrame], h: &Seg) -> Option<TxFrame> {
    let head = run[0];
    let last = run[run.len() - 1];
    let last_flags = pool.data(last.addr, last.len)[h.l4 + tcp::FLAGS];
    let total: usize = h.hdr + run.iter().map(|f| f.len as usize - h.hdr).sum::<usize>();
    let big = pool.alloc_big()?;
    let mut at = 0;
    for (k, f) in run.iter().enumerate() {
        let skip = if k == 0 { 0 } else { h.hdr };
        let Some((src, dst)) = pool.pair_mut(f.addr, f.len, big, total as u32) else {
            pool.free(big);
            return None;
        };
        let part = &src[skip..];
        dst[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    let frame = pool.data_mut(big, total as u32);
    let l4_len = total - h.l4;
    let pseudo = if h.v6 {
        let ip = &mut frame[ETH_LEN..];
        write_u16(ip, ipv6::PAYLOAD_LEN, l4_len as u16);
        sum(&ip[ipv6::SRC..ipv6::DST + 16], 0)
    } else {
        let ip = &mut frame[ETH_LEN..h.l4];
        write_u16(ip, ipv4::TOTAL_LEN, (total - ETH_LEN) as u16);
        write_u16(ip, ipv4::CHECKSUM, 0);
        let c = checksum(ip);
        write_u16(ip, ipv4::CHECKSUM, c);
        sum(&ip[ipv4::SRC..ipv4::DST + 4], 0)
    };
    let t = &mut frame[h.l4..];
    t[tcp::FLAGS] |= last_flags & PSH;
    // Partial: the pseudo-header sum, for the receiver to complete.
    let partial = !fold(pseudo + u32::from(tcp::PROTO) + l4_len as u32);
    write_u16(t, tcp::CHECKSUM, partial);
    for f in run {
        pool.free(f.addr);
    }
    let kind = if h.v6 { GSO_TCPV6 } else { GSO_TCPV4 };
    Some(TxFrame {
        addr: big,
        len: total as u32,
        in_port: head.in_port,
        gso: Gso::new(kind, h.payload as u16),
    })
}

#[cfg(test)]
mod tests {
    use super::super::complete_partial;
    use super::super::segment::segment;
    use super::*;
    use crate::test_frames::verifies;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    /// Segments of one TCP flow with these payload sizes, from sequence
    /// number `seq` on, ACK set, PSH on segment `psh` if any.
    fn segments_from(v6: bool, sizes: &[usize], seq: u32, psh: Option<usize>) -> Vec<Vec<u8>> {
        let mut seq = seq;
        let mut out = Vec::new();
        for (k, &n) in sizes.iter().enumerate() {
            let payload: Vec<u8> = (0..n).map(|i| (seq as usize + i * 7) as u8).collect();
            let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
            let ip = if v6 {
                let (mut s, mut d) = ([0u8; 16], [0u8; 16]);
                (s[0], s[15], d[0], d[15]) = (0xfd, 5, 0xfd, 6);
                eth.ipv6(s, d, 64)
            } else {
                eth.ipv4([10, 244, 1, 5], [10, 244, 2, 6], 64)
            };
            let mut t = ip.tcp(40000, 80, seq, 1000).ack(555);
            if psh == Some(k) {
                t = t.psh();
            }
            let mut f = Vec::new();
            t.write(&mut f, &payload).unwrap();
            out.push(f);
            seq = seq.wrapping_add(n as u32);
        }
        out
    }

    fn segments(v6: bool, sizes: &[usize], psh: Option<usize>) -> Vec<Vec<u8>> {
        segments_from(v6, sizes, 1000, psh)
    }

    /// A pool with `big` big frames holding `frames`, and their list.
    fn listed(frames: &[Vec<u8>], big: u32) -> (FramePool, Vec<TxFrame>) {
        let mut pool = FramePool::with_big(4096 + 256, big);
        let list = frames
            .iter()
            .map(|f| {
                let (addr, len) = pool.write_frame(f).unwrap();
                TxFrame {
                    addr,
                    len,
                    in_port: 0,
                    gso: Gso::NONE,
                }
            })
            .collect();
        (pool, list)
    }

    /// Coalescing `segs` (in a pool with `big` big frames) merges nothing
    /// and leaves every frame as it was.
    fn assert_left_alone(segs: &[Vec<u8>], big: u32) {
        let (mut pool, mut list) = listed(segs, big);
        assert_eq!(coalesce(&mut pool, &mut list), 0);
        assert_eq!(list.len(), segs.len());
        for (f, s) in list.iter().zip(segs) {
            assert_eq!(pool.data(f.addr, f.len), &s[..]);
        }
    }

    /// A segment's sequence number, flags and payload.
    fn tcp_of(f: &[u8]) -> (u32, bool, bool, Vec<u8>) {
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let Some(TransportSlice::Tcp(t)) = p.transport else {
            panic!("not TCP")
        };
        (t.sequence_number(), t.psh(), t.ack(), t.payload().to_vec())
    }

    /// Sets an IPv4 segment's identification and DF, header checksum right.
    fn set_ip(f: &mut [u8], id: u16, df: bool) {
        let ip = &mut f[ETH_LEN..ETH_LEN + 20];
        write_u16(ip, 4, id);
        write_u16(ip, ipv4::FLAGS_FRAG, if df { ipv4::DF } else { 0 });
        write_u16(ip, ipv4::CHECKSUM, 0);
        let c = checksum(ip);
        write_u16(ip, ipv4::CHECKSUM, c);
    }

    #[test]
    fn ipv4_identifications_and_header_checksums_are_checked() {
        // One apart, without DF (a sender's usual): merged.
        let mut segs = segments(false, &[1000, 1000, 1000], None);
        for (k, f) in segs.iter_mut().enumerate() {
            set_ip(f, 7 + k as u16, false);
        }
        let (mut pool, mut list) = listed(&segs, 4);
        assert_eq!(coalesce(&mut pool, &mut list), 2);
        // Equal without DF: cutting again would change them, so no.
        for f in segs.iter_mut() {
            set_ip(f, 7, false);
        }
        let (mut pool, mut list) = listed(&segs, 4);
        assert_eq!(coalesce(&mut pool, &mut list), 0);
        // Equal with DF: merged.
        for f in segs.iter_mut() {
            set_ip(f, 7, true);
        }
        let (mut pool, mut list) = listed(&segs, 4);
        assert_eq!(coalesce(&mut pool, &mut list), 2);
        // A bad IPv4 header checksum (an identification one apart, as it
        // may be, but not the one the checksum was made for; the TCP
        // checksum does not cover it): that segment is never merged.
        segs[1][ETH_LEN + 5] += 1;
        let (mut pool, mut list) = listed(&segs, 4);
        assert_eq!(coalesce(&mut pool, &mut list), 0);
        assert_eq!(list.len(), 3);
    }

    #[test]
    fn segments_with_partial_checksums_are_merged_and_cut_back_right() {
        for v6 in [false, true] {
            let originals = segments(v6, &[1000, 1000, 600], None);
            // As a pod with checksum offload sends them: the TCP checksum
            // field holds the pseudo-header sum, marked by the csum stage.
            let partials: Vec<Vec<u8>> = originals
                .iter()
                .map(|f| {
                    let (at, p) = crate::test_frames::partial_of(f);
                    let mut f = f.clone();
                    f[at..at + 2].copy_from_slice(&p.to_be_bytes());
                    f
                })
                .collect();
            let (mut pool, mut list) = listed(&partials, 4);
            for f in &mut list {
                let ethertype = read_u16(pool.data(f.addr, f.len), 12);
                f.gso = crate::pipeline::csum::mark(pool.data(f.addr, f.len), ethertype).unwrap();
            }
            assert_eq!(coalesce(&mut pool, &mut list), 2, "v6 {v6}");
            let g = list[0];
            assert!(g.gso.is_some());
            let mut back = Vec::new();
            let out = |p: &mut FramePool, a, l| {
                back.push(p.data(a, l).to_vec());
                p.free(a);
            };
            segment(&mut pool, g.addr, g.len, g.gso, out).unwrap();
            assert_eq!(back.len(), originals.len());
            for (b, o) in back.iter().zip(&originals) {
                assert_eq!(tcp_of(b), tcp_of(o), "v6 {v6}");
                assert!(verifies(b), "v6 {v6}: cut back with complete checksums");
            }
        }
        // A partial segment with a bad IPv4 header checksum is not merged.
        let mut partials = segments(false, &[1000, 1000], None);
        for f in &mut partials {
            let (at, p) = crate::test_frames::partial_of(f);
            f[at..at + 2].copy_from_slice(&p.to_be_bytes());
        }
        partials[1][ETH_LEN + 8] ^= 1;
        let (mut pool, mut list) = listed(&partials, 4);
        for f in &mut list {
            let ethertype = read_u16(pool.data(f.addr, f.len), 12);
            f.gso = crate::pipeline::csum::mark(pool.data(f.addr, f.len), ethertype).unwrap();
        }
        assert_eq!(coalesce(&mut pool, &mut list), 0);
    }

    /// Recomputes an IPv4 TCP segment's checksum after an edit.
    fn fix_tcp_checksum(f: &mut [u8]) {
        let l4 = ETH_LEN + 20;
        write_u16(f, l4 + tcp::CHECKSUM, 0);
        let acc = sum(&f[ETH_LEN + ipv4::SRC..ETH_LEN + ipv4::DST + 4], 0)
            + u32::from(tcp::PROTO)
            + (f.len() - l4) as u32;
        let c = fold(sum(&f[l4..], acc));
        write_u16(f, l4 + tcp::CHECKSUM, c);
    }

    #[test]
    fn a_run_becomes_one_gso_frame_that_cuts_back_into_the_same_segments() {
        for v6 in [false, true] {
            let sizes = [1000, 1000, 1000, 400];
            let originals = segments(v6, &sizes, Some(3));
            let (mut pool, mut list) = listed(&originals, 4);
            let start = pool.available();
            assert_eq!(coalesce(&mut pool, &mut list), 3);
            assert_eq!(list.len(), 1);
            let f = list[0];
            let kind = if v6 { GSO_TCPV6 } else { GSO_TCPV4 };
            assert_eq!(f.gso, Gso::new(kind, 1000));
            let hdr = originals[0].len() - 1000;
            assert_eq!(f.len as usize, hdr + 3400);
            // The checksum is partial: completed, the frame verifies.
            let mut whole = pool.data(f.addr, f.len).to_vec();
            let l4 = hdr - 20;
            complete_partial(&mut whole, l4, l4 + tcp::CHECKSUM);
            assert!(verifies(&whole), "v6 {v6}");
            // Cut again, the segments carry the same sequence numbers,
            // payloads and flags (PSH on the last only), checksums right.
            let mut cut = Vec::new();
            segment(&mut pool, f.addr, f.len, f.gso, |pool, a, l| {
                cut.push(pool.data(a, l).to_vec());
                pool.free(a);
            })
            .unwrap();
            assert_eq!(cut.len(), originals.len());
            for (c, o) in cut.iter().zip(&originals) {
                assert!(verifies(c));
                assert_eq!(tcp_of(c), tcp_of(o), "v6 {v6}");
            }
            pool.free(f.addr);
            // Three regular frames more than before (the segments merged
            // were freed), the big frame back: nothing leaked.
            assert_eq!(pool.available(), start + 4);
            assert_eq!(pool.counts().errors, 0);
        }
    }

    #[test]
    fn segments_that_do_not_continue_the_run_stay_as_they_are() {
        // A gap in the sequence numbers: two runs.
        let mut segs = segments(false, &[1000, 1000], None);
        segs.extend(segments_from(false, &[1000, 1000], 50_000, None));
        let (mut pool, mut list) = listed(&segs, 4);
        assert_eq!(coalesce(&mut pool, &mut list), 2);
        assert_eq!(list.len(), 2);
        // A short segment ends a run; PSH ends it after that segment.
        let segs = segments(false, &[1000, 500, 1000], None);
        let (mut pool, mut list) = listed(&segs, 4);
        assert_eq!(coalesce(&mut pool, &mut list), 1);
        assert_eq!(list.len(), 2);
        let segs = segments(false, &[1000, 1000, 1000], Some(0));
        let (mut pool, mut list) = listed(&segs, 4);
        assert_eq!(coalesce(&mut pool, &mut list), 1);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].len as usize, segs[0].len(), "the PSH segment alone");
    }

    #[test]
    fn a_segment_with_a_bad_checksum_is_never_merged() {
        let mut segs = segments(false, &[1000, 1000, 1000], None);
        let n = segs[1].len();
        segs[1][n - 1] ^= 0xff;
        assert_left_alone(&segs, 4);
    }

    #[test]
    fn other_flows_flags_and_frames_are_left_alone() {
        // Another flow in between: nothing is reordered.
        let a = segments(false, &[1000, 1000], None);
        let mut other = segments(false, &[1000], None);
        other[0][ETH_LEN + 20 + 1] ^= 1; // another source port
        fix_tcp_checksum(&mut other[0]);
        let segs = vec![a[0].clone(), other[0].clone(), a[1].clone()];
        let (mut pool, mut list) = listed(&segs, 4);
        assert_eq!(coalesce(&mut pool, &mut list), 0);
        // SYN, FIN, UDP and a frame that is already GSO.
        let mut syn = segments(false, &[1000, 1000], None);
        syn[0][ETH_LEN + 20 + tcp::FLAGS] |= tcp::SYN;
        fix_tcp_checksum(&mut syn[0]);
        let (mut pool, mut list) = listed(&syn, 4);
        assert_eq!(coalesce(&mut pool, &mut list), 0);
        let udp = vec![crate::test_frames::v4(false, &[1; 500]); 3];
        let (mut pool, mut list) = listed(&udp, 4);
        assert_eq!(coalesce(&mut pool, &mut list), 0);
        let segs = segments(false, &[1000, 1000], None);
        let (mut pool, mut list) = listed(&segs, 4);
        list[1].gso = Gso::new(GSO_TCPV4, 1000);
        assert_eq!(coalesce(&mut pool, &mut list), 0);
    }

    #[test]
    fn without_a_free_big_frame_nothing_changes() {
        let segs = segments(true, &[1000, 1000, 1000], None);
        assert_left_alone(&segs, 0);
    }

    #[test]
    fn runs_stop_at_64_kib() {
        let segs = segments(false, &[1448; 60], None);
        let (mut pool, mut list) = listed(&segs, 4);
        coalesce(&mut pool, &mut list);
        assert_eq!(
            list.len(),
            2,
            "45 segments of 1,448 bytes fit an IPv4 length"
        );
        assert!(list.iter().all(|f| f.len as usize - ETH_LEN <= IP_MAX));
    }
}
