//! Tests of the views and writers against etherparse.

use std::net::Ipv4Addr;

use super::ipv4::Ipv4;
use super::ipv6::read_u128;
use super::*;
use etherparse::{Icmpv4Type, Ipv4HeaderSlice, PacketBuilder, SlicedPacket};

fn udp_frame(ttl: u8, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 1, 2], ttl)
        .udp(1000, 2000);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

#[test]
fn checksum_of_known_header() {
    // Example header from RFC 1071 discussions (checksum field zeroed).
    let h = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];
    assert_eq!(checksum(&h), 0xb861);
    assert_eq!(checksum(&[0xff]), !0xff00);
}

#[test]
fn ttl_decrement_keeps_checksum_valid() {
    for ttl in [2u8, 64, 255] {
        let mut f = udp_frame(ttl, b"hello");
        Ipv4::new(&mut f[ETH_LEN..]).unwrap().decrement_ttl();
        let h = Ipv4HeaderSlice::from_slice(&f[ETH_LEN..]).unwrap();
        assert_eq!(h.ttl(), ttl - 1);
        let recomputed = h.to_header().calc_header_checksum();
        assert_eq!(h.header_checksum(), recomputed, "ttl {ttl}");
    }
}

#[test]
fn incremental_update_matches_full_recompute() {
    let mut data = [0x12u8, 0x34, 0xab, 0xcd, 0xff, 0xff, 0x00, 0x01];
    for new in [0u16, 1, 0xffff, 0x8000, 0x1234] {
        let hc = checksum(&data);
        let old = read_u16(&data, 4);
        write_u16(&mut data, 4, new);
        assert_eq!(checksum_update(hc, old, new), checksum(&data), "{new:#x}");
    }
}

#[test]
fn arp_frame_parses() {
    let mut f = [0u8; 64];
    let n = arp::write(
        &mut f,
        0xffff_ffff_ffff,
        arp::REQUEST,
        0x02aa_0000_0001,
        Ipv4Addr::new(10, 0, 0, 1),
        0,
        Ipv4Addr::new(10, 0, 0, 9),
    );
    let p = SlicedPacket::from_ethernet(&f[..n]).unwrap();
    let Some(etherparse::NetSlice::Arp(a)) = p.net else {
        panic!("not ARP: {:?}", p.net)
    };
    assert_eq!(a.operation(), etherparse::ArpOperation::REQUEST);
    assert_eq!(a.sender_protocol_addr(), &[10, 0, 0, 1]);
    assert_eq!(a.target_protocol_addr(), &[10, 0, 0, 9]);
    assert_eq!(a.sender_hw_addr(), &[2, 0xaa, 0, 0, 0, 1]);
}

#[test]
fn vxlan_encapsulation_parses() {
    let inner = udp_frame(63, b"inner payload");
    let mut f = vec![0u8; 2048];
    f[..inner.len()].copy_from_slice(&inner);
    let n = vxlan::encap_in_place(
        &mut f,
        inner.len(),
        0x0200_0000_00bb,
        0x0200_0000_00aa,
        0xc0a8_3201,
        0xc0a8_3c02,
        50000,
        42,
    );
    assert_eq!(n, inner.len() + vxlan::OVERHEAD);
    let p = SlicedPacket::from_ethernet(&f[..n]).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(ip.header().destination(), [192, 168, 60, 2]);
    assert_eq!(
        ip.header().header_checksum(),
        ip.header().to_header().calc_header_checksum()
    );
    let Some(etherparse::TransportSlice::Udp(udp)) = &p.transport else {
        panic!()
    };
    assert_eq!(udp.destination_port(), vxlan::PORT);
    assert_eq!(usize::from(udp.length()), n - ETH_LEN - 20);
    let vx = udp.payload();
    assert_eq!(vx[0], vxlan::FLAG_VNI);
    assert_eq!(read_u32(vx, 4) >> 8, 42);
    assert_eq!(&vx[8..], &inner[..]);
}

fn udp6_frame(hop: u8, payload: &[u8]) -> Vec<u8> {
    let mut src = [0u8; 16];
    src[0] = 0xfd;
    src[15] = 5;
    let mut dst = src;
    dst[7] = 2;
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv6(src, dst, hop)
        .udp(1000, 2000);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

#[test]
fn ipv6_helpers() {
    assert!(ipv6::is_link_local(0xfe80u128 << 112 | 1));
    assert!(!ipv6::is_link_local(0xfd00u128 << 112));
    let a: u128 = 0xfd00_0000_0000_0000_0000_0000_00ab_cdef;
    assert_eq!(
        ipv6::solicited_node(a),
        0xff02_0000_0000_0000_0000_0001_ffab_cdef
    );
    assert_eq!(
        ipv6::multicast_mac(ipv6::solicited_node(a)),
        0x3333_ffab_cdef
    );
    let ll = ipv6::link_local_of(0x0200_0000_00aa);
    assert_eq!(ll, 0xfe80_0000_0000_0000_0000_00ff_fe00_00aa);
}

#[test]
fn neighbor_messages_parse_with_valid_checksums() {
    let mut f = [0u8; 128];
    let src = ipv6::link_local_of(0x0200_0000_00aa);
    let target: u128 = 0xfd00_0000_0000_0000_0000_0000_0000_0005;
    let dst = ipv6::solicited_node(target);
    let n = nd::write_solicit(
        &mut f,
        ipv6::multicast_mac(dst),
        0x0200_0000_00aa,
        src,
        dst,
        target,
    );
    let p = SlicedPacket::from_ethernet(&f[..n]).unwrap();
    let Some(etherparse::TransportSlice::Icmpv6(icmp)) = p.transport else {
        panic!("{:?}", p.transport)
    };
    assert_eq!(icmp.type_u8(), 135);
    assert_eq!(icmpv6_checksum(src, dst, icmp.slice()), 0);
    let mut f = [0u8; 128];
    let n = nd::write_advert(
        &mut f,
        0x0200_0000_0005,
        0x0200_0000_00aa,
        src,
        target,
        ipv6::NA_SOLICITED,
    );
    let p = SlicedPacket::from_ethernet(&f[..n]).unwrap();
    let Some(etherparse::TransportSlice::Icmpv6(icmp)) = p.transport else {
        panic!()
    };
    assert_eq!(icmp.type_u8(), 136);
    assert_eq!(icmpv6_checksum(target, src, icmp.slice()), 0);
}

#[test]
fn icmpv6_error_quotes_the_packet() {
    let orig = udp6_frame(1, &[9u8; 1400]);
    let mut f = vec![0u8; 2048];
    f[..orig.len()].copy_from_slice(&orig);
    let src: u128 = 0xfd00_0000_0000_0000_0000_0000_0000_0001;
    let n = ipv6::icmp_error_in_place(
        &mut f,
        orig.len() - ETH_LEN,
        0x0200_0000_0001,
        0x02aa_0000_0001,
        src,
        ipv6::TIME_EXCEEDED,
        0,
        0,
    );
    assert_eq!(n, ETH_LEN + ipv6::MIN_MTU);
    let p = SlicedPacket::from_ethernet(&f[..n]).unwrap();
    let Some(etherparse::TransportSlice::Icmpv6(icmp)) = p.transport else {
        panic!()
    };
    assert!(matches!(
        icmp.icmp_type(),
        etherparse::Icmpv6Type::TimeExceeded(_)
    ));
    let dst = read_u128(&orig, ETH_LEN + ipv6::SRC);
    assert_eq!(icmpv6_checksum(src, dst, icmp.slice()), 0);
    assert_eq!(&icmp.payload()[..40], &orig[ETH_LEN..ETH_LEN + 40]);
}

#[test]
fn icmp_error_quotes_the_datagram() {
    let orig = udp_frame(1, &[7u8; 1000]);
    let mut f = vec![0u8; 2048];
    f[..orig.len()].copy_from_slice(&orig);
    let ip_len = orig.len() - ETH_LEN;
    let n = ipv4::icmp_error_in_place(
        &mut f,
        ip_len,
        0x0200_0000_0002,
        0x02aa_0000_0001,
        Ipv4Addr::new(10, 0, 0, 254),
        icmp::TIME_EXCEEDED,
        0,
        0,
    );
    assert_eq!(n, ETH_LEN + icmp::MAX_ERROR_LEN);
    let p = SlicedPacket::from_ethernet(&f[..n]).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(ip.header().source(), [10, 0, 0, 254]);
    assert_eq!(ip.header().destination(), [10, 0, 0, 1]);
    assert_eq!(
        ip.header().header_checksum(),
        ip.header().to_header().calc_header_checksum()
    );
    let Some(etherparse::TransportSlice::Icmpv4(icmp)) = p.transport else {
        panic!()
    };
    assert!(matches!(icmp.icmp_type(), Icmpv4Type::TimeExceeded(_)));
    let payload = icmp.payload();
    assert_eq!(&payload[..28], &orig[ETH_LEN..ETH_LEN + 28]);
    assert_eq!(checksum(icmp.slice()), 0, "ICMP checksum verifies");
}

/// The 16-bit reference sum RFC 1071 describes.
fn sum16(data: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    fold(acc)
}

#[test]
fn word_sums_equal_the_16_bit_reference() {
    let mut x: u32 = 0x1234_5678;
    for len in 0..300 {
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        assert_eq!(checksum(&data), sum16(&data), "len {len}");
        assert_eq!(checksum(&vec![0xff; len]), sum16(&vec![0xff; len]));
        assert_eq!(checksum(&vec![0; len]), sum16(&vec![0; len]));
        // Added to a running sum, as the pseudo-header sums do.
        assert_eq!(fold(sum(&data, 0x1_fffe)), fold(sum(&data, 0) + 0x1_fffe));
    }
}

#[test]
fn ipv4_view_reads_fields_and_checks_lengths() {
    let f = udp_frame(7, b"hello");
    let ip = Ipv4::new(&f[ETH_LEN..]).unwrap();
    assert_eq!((ip.version(), ip.header_len(), ip.ttl()), (4, 20, 7));
    assert_eq!(ip.protocol(), l4::udp::PROTO);
    assert_eq!((ip.src(), ip.dst()), (0x0a00_0001, 0x0a00_0102));
    assert_eq!(ip.lengths(), Some((20, 20 + 8 + 5)));
    assert!(ip.checksum_ok(20));
    // etherparse sets don't-fragment.
    assert!(!ip.is_fragment() && ip.dont_fragment());
    assert!(Ipv4::new(&f[ETH_LEN..ETH_LEN + 19]).is_none());
    // A total length past the buffer, a header length below 20 or past the
    // total, another version: no lengths.
    let cut = Ipv4::new(&f[ETH_LEN..f.len() - 1]).unwrap();
    assert_eq!(cut.lengths(), None);
    for first in [0x44u8, 0x4f, 0x65] {
        let mut g = f.clone();
        g[ETH_LEN] = first;
        assert_eq!(
            Ipv4::new(&g[ETH_LEN..]).unwrap().lengths(),
            None,
            "{first:#x}"
        );
    }
}

#[test]
fn ipv4_setters_keep_the_header_checksum_right() {
    let mut f = udp_frame(64, b"x");
    let mut ip = Ipv4::new(&mut f[ETH_LEN..]).unwrap();
    ip.set_addrs(0xc0a8_0001, 0x0a60_000a);
    ip.set_ttl(3);
    ip.swap_addrs();
    ip.set_dont_fragment();
    let h = Ipv4HeaderSlice::from_slice(&f[ETH_LEN..]).unwrap();
    assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
    assert_eq!(h.source(), [10, 96, 0, 10]);
    assert_eq!(h.destination(), [192, 168, 0, 1]);
    assert_eq!(h.ttl(), 3);
    assert!(h.dont_fragment());
}

#[test]
fn short_buffers_get_no_view() {
    assert!(ipv6::Ipv6::new(&[0u8; 39][..]).is_none());
    assert!(l4::Tcp::new(&[0u8; 19][..]).is_none());
    assert!(l4::Udp::new(&[0u8; 7][..]).is_none());
    assert!(icmp::Icmp::new(&[0u8; 7][..]).is_none());
    assert!(arp::Arp::new(&[0u8; 27][..]).is_none());
    assert!(nd::Nd::new(&[0u8; 23][..]).is_none());
    assert!(vxlan::Vxlan::new(&[0u8; 7][..]).is_none());
}

#[test]
fn nd_options_are_walked_and_checked() {
    let mut m = vec![0u8; nd::FIXED_LEN];
    m[0] = ipv6::NEIGHBOR_SOLICIT;
    // A nonce option (type 14), then the source link-layer address.
    m.extend_from_slice(&[14, 1, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 9]);
    let v = nd::Nd::new(&m[..]).unwrap();
    assert_eq!(v.link_layer_option(), Some(Some(0x0200_0000_0009)));
    // The same as an advertisement: it wants the target's option.
    m[0] = ipv6::NEIGHBOR_ADVERT;
    assert_eq!(nd::Nd::new(&m[..]).unwrap().link_layer_option(), Some(None));
    // A zero-length option, or one past the end: malformed.
    m[nd::FIXED_LEN + 1] = 0;
    assert_eq!(nd::Nd::new(&m[..]).unwrap().link_layer_option(), None);
    m[nd::FIXED_LEN + 1] = 3;
    assert_eq!(nd::Nd::new(&m[..]).unwrap().link_layer_option(), None);
}

/// An echo request whose id, sequence and data are zero becomes an
/// all-zero echo reply: its checksum must be 0xffff (+0's complement), not
/// the 0x0000 the incremental update gives (found by `fuzz/` `pipeline`).
#[test]
fn an_all_zero_echo_reply_gets_the_checksum_receivers_accept() {
    use crate::wire::checksum::checksum;
    use crate::wire::icmp::{self, Icmp};
    for data_len in [0usize, 8] {
        let mut msg = vec![0u8; 8 + data_len];
        msg[0] = icmp::ECHO_REQUEST;
        let c = checksum(&msg);
        msg[2..4].copy_from_slice(&c.to_be_bytes());
        Icmp::new(&mut msg[..]).unwrap().set_type(icmp::ECHO_REPLY);
        assert_eq!(&msg[2..4], &[0xff, 0xff], "{msg:02x?}");
        assert_eq!(checksum(&msg), 0, "the reply verifies");
    }
    // Any other message keeps the plain incremental update.
    let mut msg = vec![0u8; 16];
    msg[0] = icmp::ECHO_REQUEST;
    msg[7] = 1;
    let c = checksum(&msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    Icmp::new(&mut msg[..]).unwrap().set_type(icmp::ECHO_REPLY);
    assert_eq!(checksum(&msg), 0);
}
