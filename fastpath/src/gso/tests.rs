use super::segment::{SegmentError, segment, segment_partial};
use super::*;
use crate::pool::FramePool;
use crate::test_frames::{partial_of, v4, v6, verifies};
use crate::wire::ETH_LEN;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};

/// A GSO frame as a pod's stack hands it to its TAP: `payload` in one
/// TCP (with PSH and FIN set) or UDP packet, IP identification 0x1234, the
/// transport checksum partial (the pseudo-header sum only).
fn gso_frame(make: fn(bool, &[u8]) -> Vec<u8>, tcp: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = make(tcp, payload);
    let (at, partial) = partial_of(&f);
    f[at..at + 2].copy_from_slice(&partial.to_be_bytes());
    let ethertype = read_u16(&f, 12);
    if ethertype == ETHERTYPE_IPV4 {
        write_u16(&mut f, ETH_LEN + 4, 0x1234);
        let ip = &mut f[ETH_LEN..ETH_LEN + 20];
        write_u16(ip, 10, 0);
        let c = crate::wire::checksum::checksum(ip);
        write_u16(ip, 10, c);
    }
    if tcp {
        let l4 = usize::from(crate::wire::l4_offset(ethertype, &f[ETH_LEN..]));
        f[l4 + tcp::FLAGS] |= tcp::FIN | 0x08 | tcp::ACK_FLAG;
    }
    f
}

fn kind_of(f: &[u8], tcp: bool) -> u8 {
    match (tcp, read_u16(f, 12) == ETHERTYPE_IPV6) {
        (true, false) => GSO_TCPV4,
        (true, true) => GSO_TCPV6,
        (false, _) => GSO_UDP_L4,
    }
}

/// Cuts `f` and returns the segments' bytes.
fn cut(f: &[u8], gso: Gso) -> Result<Vec<Vec<u8>>, SegmentError> {
    let mut pool = FramePool::with_big(super::segment::RESERVE + 256, 2);
    let (addr, len) = pool.write_frame(f).unwrap();
    let mut segs = Vec::new();
    let (sent, lost) = segment(&mut pool, addr, len, gso, |pool, a, l| {
        segs.push(pool.data(a, l).to_vec());
        pool.free(a);
    })?;
    assert_eq!((sent, lost), (segs.len(), 0));
    pool.free(addr);
    assert_eq!(pool.counts().errors, 0);
    assert_eq!(
        pool.available(),
        super::segment::RESERVE + 258,
        "every frame back"
    );
    Ok(segs)
}

#[test]
fn segments_left_partial_complete_into_the_segments_cut_whole() {
    let payload: Vec<u8> = (0..5000u32).map(|i| (i * 11 + 5) as u8).collect();
    for make in [v4 as fn(bool, &[u8]) -> Vec<u8>, v6] {
        for tcp in [true, false] {
            let f = gso_frame(make, tcp, &payload);
            let gso = Gso::new(kind_of(&f, tcp), 1400);
            let whole = cut(&f, gso).unwrap();
            let mut pool = FramePool::with_big(super::segment::RESERVE + 256, 2);
            let (addr, len) = pool.write_frame(&f).unwrap();
            let mut partial = Vec::new();
            segment_partial(&mut pool, addr, len, gso, |pool, a, l, g| {
                let mut seg = pool.data(a, l).to_vec();
                assert!(g.is_partial() && !verifies(&seg));
                assert!(complete(&mut seg, g));
                partial.push(seg);
                pool.free(a);
            })
            .unwrap();
            assert_eq!(partial, whole, "tcp {tcp}");
        }
    }
}

#[test]
fn segments_carry_their_own_lengths_sequence_numbers_flags_and_checksums() {
    let payload: Vec<u8> = (0..5000u32).map(|i| (i * 7 + 3) as u8).collect();
    for make in [v4 as fn(bool, &[u8]) -> Vec<u8>, v6] {
        for tcp in [true, false] {
            for (len, mss) in [
                (5000, 1448),
                (2896, 1448),
                (1000, 1448),
                (0, 1448),
                (4999, 1),
            ] {
                let len = if mss == 1 { 37 } else { len };
                let f = gso_frame(make, tcp, &payload[..len]);
                let gso = Gso::new(kind_of(&f, tcp), mss);
                let segs = cut(&f, gso).unwrap();
                let want = len.div_ceil(usize::from(mss)).max(1);
                assert_eq!(segs.len(), want, "tcp {tcp} len {len} mss {mss}");
                let mut data = Vec::new();
                for (i, s) in segs.iter().enumerate() {
                    assert!(verifies(s), "transport checksum of segment {i}");
                    let p = SlicedPacket::from_ethernet(s).unwrap();
                    match &p.net {
                        Some(NetSlice::Ipv4(ip)) => {
                            let h = ip.header().to_header();
                            assert_eq!(h.header_checksum, h.calc_header_checksum());
                            assert_eq!(usize::from(h.total_len), s.len() - ETH_LEN);
                            assert_eq!(h.identification, 0x1234 + i as u16);
                        }
                        Some(NetSlice::Ipv6(ip)) => {
                            let h = ip.header().to_header();
                            assert_eq!(usize::from(h.payload_length), s.len() - ETH_LEN - 40);
                        }
                        _ => panic!(),
                    }
                    let last = i + 1 == segs.len();
                    match &p.transport {
                        Some(TransportSlice::Tcp(t)) => {
                            assert_eq!(t.sequence_number(), 7 + (i * usize::from(mss)) as u32);
                            assert_eq!(t.fin(), last, "FIN only on the last segment");
                            assert_eq!(t.psh(), last, "PSH only on the last segment");
                            assert!(t.ack());
                            data.extend_from_slice(t.payload());
                        }
                        Some(TransportSlice::Udp(u)) => {
                            assert_eq!(usize::from(u.length()), u.slice().len());
                            data.extend_from_slice(u.payload());
                        }
                        _ => panic!(),
                    }
                    assert!(s.len() <= ETH_LEN + 40 + 20 + usize::from(mss));
                }
                assert_eq!(data, &payload[..len], "the payload, in order, once");
            }
        }
    }
}

#[test]
fn cwr_stays_on_the_first_segment_only() {
    let mut f = gso_frame(v4, true, &[1; 3000]);
    f[ETH_LEN + 20 + tcp::FLAGS] |= 0x80;
    let gso = Gso::new(GSO_TCPV4 | GSO_ECN, 1000);
    let segs = cut(&f, gso).unwrap();
    let cwr: Vec<bool> = segs
        .iter()
        .map(|s| s[ETH_LEN + 20 + tcp::FLAGS] & 0x80 != 0)
        .collect();
    assert_eq!(cwr, [true, false, false]);
}

#[test]
fn frames_that_are_not_what_their_type_says_are_refused() {
    let udp4 = gso_frame(v4, false, &[0; 3000]);
    let tcp6 = gso_frame(v6, true, &[0; 3000]);
    let tcp4 = |size| Gso::new(GSO_TCPV4, size);
    assert_eq!(cut(&udp4, tcp4(1000)), Err(SegmentError::Malformed));
    assert_eq!(cut(&tcp6, tcp4(1000)), Err(SegmentError::Malformed));
    let f = gso_frame(v4, true, &[0; 3000]);
    assert_eq!(cut(&f, tcp4(0)), Err(SegmentError::Malformed), "size 0");
    assert_eq!(
        cut(&f, tcp4(9000)),
        Err(SegmentError::Malformed),
        "segments larger than a frame"
    );
    assert_eq!(cut(&f[..40], tcp4(100)), Err(SegmentError::Malformed));
}

#[test]
fn segments_beyond_the_pool_reserve_are_counted_lost() {
    let f = gso_frame(v4, true, &[5; 6000]);
    let mut pool = FramePool::with_big(super::segment::RESERVE + 2, 1);
    let (addr, len) = pool.write_frame(&f).unwrap();
    let gso = Gso::new(GSO_TCPV4, 1000);
    let mut got = Vec::new();
    let r = segment(&mut pool, addr, len, gso, |_, a, _| got.push(a));
    assert_eq!(r, Ok((2, 4)));
    assert_eq!(got.len(), 2);
    assert_eq!(pool.available_regular(), super::segment::RESERVE);
    // A hostile segment size of 1 byte stops at the reserve too.
    for a in got {
        pool.free(a);
    }
    let r = segment(&mut pool, addr, len, Gso::new(GSO_TCPV4, 1), |_, _, _| {});
    assert_eq!(r, Ok((2, 5998)));
}

fn hdr(flags: u8, gso_type: u8, hdr_len: u16, gso_size: u16, start: u16, off: u16) -> VnetHdr {
    VnetHdr {
        flags,
        gso_type,
        hdr_len,
        gso_size,
        csum_start: start,
        csum_offset: off,
    }
}

#[test]
fn headers_are_read_back_as_written() {
    let h = hdr(F_NEEDS_CSUM, GSO_TCPV6 | GSO_ECN, 86, 1428, 54, 16);
    let mut b = [0u8; VNET_HDR_LEN + 3];
    h.write(&mut b);
    assert_eq!(VnetHdr::read(&b), Some(h));
    assert_eq!(VnetHdr::read(&b[..VNET_HDR_LEN - 1]), None);
    // What the switch writes for a frame it received whole.
    let f = gso_frame(v6, true, &[0; 3000]);
    let g = Gso::new(GSO_TCPV6, 1428);
    let h = VnetHdr::for_frame(&f, g).unwrap();
    assert_eq!(h, hdr(F_NEEDS_CSUM, GSO_TCPV6, 74, 1428, 54, 16));
    assert_eq!(VnetHdr::for_frame(&f, Gso::NONE), Some(VnetHdr::default()));
}

#[test]
fn a_header_that_does_not_describe_its_frame_is_refused() {
    let tcp4 = gso_frame(v4, true, &[0; 3000]);
    let good = hdr(F_NEEDS_CSUM, GSO_TCPV4, 54, 1448, 34, 16);
    assert_eq!(good.accept(&mut tcp4.clone()), Gso::new(GSO_TCPV4, 1448));
    let len = tcp4.len() as u16;
    let bad = [
        ("gso_size 0", hdr(F_NEEDS_CSUM, GSO_TCPV4, 54, 0, 34, 16)),
        (
            "hdr_len beyond the frame",
            hdr(F_NEEDS_CSUM, GSO_TCPV4, len + 1, 1448, 34, 16),
        ),
        ("unknown gso_type", hdr(F_NEEDS_CSUM, 9, 54, 1448, 34, 16)),
        ("UFO (not offered)", hdr(F_NEEDS_CSUM, 3, 54, 1448, 34, 16)),
        (
            "ECN on UDP",
            hdr(F_NEEDS_CSUM, GSO_UDP_L4 | GSO_ECN, 42, 1448, 34, 6),
        ),
        ("not partial", hdr(0, GSO_TCPV4, 54, 1448, 34, 16)),
        (
            "csum_start elsewhere",
            hdr(F_NEEDS_CSUM, GSO_TCPV4, 54, 1448, 30, 16),
        ),
        (
            "csum_offset of UDP",
            hdr(F_NEEDS_CSUM, GSO_TCPV4, 54, 1448, 34, 6),
        ),
        (
            "checksum beyond the frame",
            hdr(F_NEEDS_CSUM, 0, 0, 0, len - 1, 0),
        ),
        (
            "type of the other family",
            hdr(F_NEEDS_CSUM, GSO_TCPV6, 54, 1448, 34, 16),
        ),
        (
            "UDP type on TCP",
            hdr(F_NEEDS_CSUM, GSO_UDP_L4, 54, 1448, 34, 16),
        ),
    ];
    for (what, h) in bad {
        assert_eq!(h.accept(&mut tcp4.clone()), Gso::INVALID, "{what}");
    }
    // Nothing panics on garbage frames with any header.
    for n in 0..80u16 {
        let mut g: Vec<u8> = (0..n).map(|i| (i * 31) as u8).collect();
        for h in [good, hdr(F_NEEDS_CSUM, 0, 0, 0, n / 2, 2)] {
            let _ = h.accept(&mut g);
        }
    }
}

#[test]
fn a_partial_checksum_of_a_whole_packet_is_kept_partial_and_completes_right() {
    for make in [v4 as fn(bool, &[u8]) -> Vec<u8>, v6] {
        for tcp in [true, false] {
            for payload in [&b""[..], b"x", b"odd length!", &[0xff; 1400]] {
                let good = make(tcp, payload);
                let (at, partial) = partial_of(&good);
                let mut f = good.clone();
                f[at..at + 2].copy_from_slice(&partial.to_be_bytes());
                let l4 = usize::from(crate::wire::l4_offset(read_u16(&f, 12), &f[ETH_LEN..]));
                let h = hdr(F_NEEDS_CSUM, GSO_NONE, 0, 0, l4 as u16, (at - l4) as u16);
                let g = h.accept(&mut f);
                assert_eq!(g, Gso::partial(l4 as u16, !tcp));
                assert!(g.is_partial() && g.csum_partial() && !g.is_some());
                assert_eq!(g.csum_at(), (l4 as u16, (at - l4) as u16));
                // Sent to a TAP: the same header back.
                assert_eq!(VnetHdr::for_frame(&f, g), Some(h));
                // Completed in software: what the sender's stack would write.
                assert!(complete(&mut f, g));
                assert_eq!(f, good, "tcp {tcp} len {}", payload.len());
            }
        }
    }
    // A checksum somewhere else than the frame's own TCP or UDP field is
    // completed at once.
    let good = v4(true, b"abcd");
    let (at, _) = partial_of(&good);
    let l4 = usize::from(crate::wire::l4_offset(
        read_u16(&good, 12),
        &good[ETH_LEN..],
    ));
    let mut f = good.clone();
    let field = l4 + 4;
    f[field..field + 2].copy_from_slice(&[0, 0]);
    let h = hdr(F_NEEDS_CSUM, GSO_NONE, 0, 0, l4 as u16, (field - l4) as u16);
    assert_eq!(h.accept(&mut f), Gso::NONE);
    assert_ne!(
        f[field..field + 2],
        [0, 0],
        "completed into the field asked for"
    );
    assert_eq!(f[at..at + 2], good[at..at + 2]);
    // Not partial: nothing to complete.
    assert!(!complete(&mut f, Gso::NONE));
    // Nothing to complete: the frame is left as it is.
    let mut f = v4(true, b"abc");
    let before = f.clone();
    assert_eq!(VnetHdr::default().accept(&mut f), Gso::NONE);
    assert_eq!(f, before);
}

#[test]
fn the_largest_segment_is_what_the_mtu_check_sees() {
    let f = gso_frame(v4, true, &[0; 3000]);
    let g = Gso::new(GSO_TCPV4, 1448);
    assert_eq!(segment_ip_len(&f, g), Some(20 + 20 + 1448));
    let small = gso_frame(v4, true, &[0; 100]);
    assert_eq!(segment_ip_len(&small, g), Some(140), "one short segment");
    assert_eq!(segment_ip_len(&f[..30], g), None);
}

/// A partial checksum is completed over the IP packet only: bytes after it
/// (Ethernet padding, garbage a pod appends) are not summed (found by
/// `fuzz/` `pipeline`).
#[test]
fn completion_stops_at_the_end_of_the_ip_packet() {
    for make in [v4 as fn(bool, &[u8]) -> Vec<u8>, v6] {
        for tcp in [true, false] {
            let whole = make(tcp, b"some payload");
            let (at, marker) = partial_of(&whole);
            let mut f = whole.clone();
            f[at..at + 2].copy_from_slice(&marker.to_be_bytes());
            f.extend_from_slice(&[0xa5; 22]);
            let g = crate::pipeline::csum::mark(&f, read_u16(&f, 12)).expect("partial");
            assert!(complete(&mut f, g));
            assert_eq!(
                &f[..whole.len()],
                &whole[..],
                "completed as the sender's stack would"
            );
            assert!(verifies(&f[..whole.len()]));
        }
    }
}
