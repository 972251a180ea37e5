//! IPv6 routing (the stage is [`super::routing`]).
//!
//! The same decisions as for IPv4 with IPv6's rules: the hop limit is
//! decremented (there is no header checksum), a router never fragments (a
//! packet above the output MTU gets ICMPv6 "packet too big"), errors are
//! ICMPv6 (time exceeded, destination unreachable) with the quoted packet
//! cut to the IPv6 minimum MTU. Packets to link-local or multicast
//! destinations are not routed. Neighbours are resolved with neighbour
//! solicitations (see [`crate::l3::resolver::Resolver::ask_v6`]).

use std::net::{IpAddr, Ipv6Addr};

use crate::batch::{Pkt, Verdict};
use crate::ctx::Ctx;
use crate::drop::DropReason;
use crate::l3::routing::{forward, reply};
use crate::l3::table::NextHop;
use crate::pool::FRAME_CAPACITY;
use crate::wire::{
    ETH_LEN, GROUP_BIT, checksum_update, ipv6, ipv6_icmp_error_in_place, read_u16, read_u128,
    write_macs, write_u16, write_u128,
};

/// Routes one IPv6 packet that is the router's.
#[inline]
pub(crate) fn route(p: &mut Pkt, cx: &mut Ctx<'_>) -> Verdict {
    let l3 = &*cx.snap.l3;
    let frame = cx.pool.data(p.addr, p.len);
    if frame.len() < ETH_LEN + ipv6::HDR_LEN {
        return Verdict::Drop(DropReason::Malformed);
    }
    let ip = &frame[ETH_LEN..];
    let total = ipv6::HDR_LEN + usize::from(read_u16(ip, ipv6::PAYLOAD_LEN));
    if ip[0] >> 4 != 6 || total > ip.len() {
        return Verdict::Drop(DropReason::Malformed);
    }
    let src = read_u128(ip, ipv6::SRC);
    let dst = read_u128(ip, ipv6::DST);
    let hop_limit = ip[ipv6::HOP_LIMIT];
    if dst == l3.link_local {
        return local(p, total, cx);
    }
    if ipv6::is_multicast(dst) || ipv6::is_link_local(dst) || ipv6::is_link_local(src) {
        return Verdict::Drop(DropReason::Unsupported);
    }
    let Some(&hop) = l3.routes.v6.lookup(dst) else {
        return icmp6_error(
            p,
            total,
            cx,
            ipv6::DEST_UNREACHABLE,
            0,
            0,
            DropReason::NoRoute,
        );
    };
    if hop == NextHop::Local {
        return local(p, total, cx);
    }
    if hop_limit <= 1 {
        return icmp6_error(
            p,
            total,
            cx,
            ipv6::TIME_EXCEEDED,
            0,
            0,
            DropReason::TtlExpired,
        );
    }
    let dst = IpAddr::V6(Ipv6Addr::from(dst));
    forward(p, hop, dst, total, cx, |p, mtu, cx| {
        too_big(p, total, mtu, cx)
    })
}

#[inline]
fn too_big(p: &mut Pkt, total: usize, mtu: u16, cx: &mut Ctx<'_>) -> Verdict {
    icmp6_error(
        p,
        total,
        cx,
        ipv6::PACKET_TOO_BIG,
        0,
        u32::from(mtu),
        DropReason::FragNeeded,
    )
}

/// A packet for one of the switch's own addresses: echo is answered.
#[inline]
fn local(p: &mut Pkt, total: usize, cx: &mut Ctx<'_>) -> Verdict {
    let router_mac = cx.snap.l3.router_mac;
    let frame = cx.pool.data_mut(p.addr, p.len);
    let ip = &mut frame[ETH_LEN..];
    let msg = ipv6::HDR_LEN;
    if ip[ipv6::NEXT_HEADER] != ipv6::PROTO_ICMPV6
        || total < msg + 8
        || ip[msg] != ipv6::ECHO_REQUEST
    {
        return Verdict::Drop(DropReason::Unsupported);
    }
    // Swapping the addresses leaves the pseudo-header sum as it was; only
    // the type changes the checksum.
    let src = read_u128(ip, ipv6::SRC);
    let dst = read_u128(ip, ipv6::DST);
    write_u128(ip, ipv6::SRC, dst);
    write_u128(ip, ipv6::DST, src);
    ip[ipv6::HOP_LIMIT] = 64;
    let old = read_u16(ip, msg);
    let new = u16::from(ipv6::ECHO_REPLY) << 8 | (old & 0xff);
    write_u16(ip, msg, new);
    let c = read_u16(ip, msg + 2);
    write_u16(ip, msg + 2, checksum_update(c, old, new));
    write_macs(frame, p.src, router_mac);
    reply(p, cx)
}

/// Turns the packet into an ICMPv6 error back to its sender (when allowed)
/// and counts it under `reason`.
#[inline]
fn icmp6_error(
    p: &mut Pkt,
    total: usize,
    cx: &mut Ctx<'_>,
    icmp_type: u8,
    code: u8,
    rest: u32,
    reason: DropReason,
) -> Verdict {
    let l3 = &*cx.snap.l3;
    let frame = cx.pool.data(p.addr, p.len);
    let ip = &frame[ETH_LEN..];
    let src = read_u128(ip, ipv6::SRC);
    // Never answer an ICMPv6 error (types below 128), nor the unspecified
    // or a multicast source (RFC 4443 2.4).
    let is_error = ip[ipv6::NEXT_HEADER] == ipv6::PROTO_ICMPV6
        && ip.len() > ipv6::HDR_LEN
        && ip[ipv6::HDR_LEN] < 128;
    let from = l3.source_for6(src).unwrap_or(l3.link_local);
    if is_error
        || src == 0
        || ipv6::is_multicast(src)
        || p.dst & GROUP_BIT != 0
        || !cx.resolver.icmp_allowed(cx.now)
    {
        return Verdict::Drop(reason);
    }
    cx.counters.port(p.in_port).drop(reason, 1);
    let frame = cx.pool.data_mut(p.addr, FRAME_CAPACITY);
    let len = ipv6_icmp_error_in_place(
        frame,
        total,
        p.src,
        l3.router_mac,
        from,
        icmp_type,
        code,
        rest,
    );
    p.len = len as u32;
    reply(p, cx)
}
