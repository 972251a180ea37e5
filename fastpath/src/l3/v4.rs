//! IPv4 routing (the stage is [`super::routing`]).
//!
//! A packet is checked (header length, checksum; options and fragments are
//! not routed) and looked up; directed broadcasts to a connected subnet are
//! not forwarded (RFC 2644); multicast and class E are not routed. ICMP
//! errors are written over the offending frame itself (see
//! [`crate::wire::ipv4_icmp_error_in_place`]); for a packet translated by a
//! Service they quote what the client sent ([`crate::services::icmp`]).

use std::net::{IpAddr, Ipv4Addr};

use crate::batch::{Pkt, Verdict};
use crate::ctx::Ctx;
use crate::drop::DropReason;
use crate::l3::routing::{forward, reply};
use crate::l3::table::{Link, NextHop};
use crate::pool::FRAME_CAPACITY;
use crate::wire::{
    ETH_LEN, GROUP_BIT, checksum, checksum_update, icmp, ipv4, ipv4_icmp_error_in_place, read_u16,
    read_u32, write_macs, write_u16, write_u32,
};

/// Routes one IPv4 packet that is the router's.
#[inline]
pub(crate) fn route(p: &mut Pkt, cx: &mut Ctx<'_>) -> Verdict {
    let l3 = &*cx.snap.l3;
    let frame = cx.pool.data(p.addr, p.len);
    let ihl = usize::from(p.l4).saturating_sub(ETH_LEN);
    // The parse stage found a sane header length (`p.l4` is 0 otherwise).
    if p.l4 == 0 || frame.len() < ETH_LEN + ipv4::MIN_LEN {
        return Verdict::Drop(DropReason::Malformed);
    }
    let ip = &frame[ETH_LEN..];
    let total = usize::from(read_u16(ip, ipv4::TOTAL_LEN));
    if total < ihl || total > ip.len() {
        return Verdict::Drop(DropReason::Malformed);
    }
    if checksum(&ip[..ihl]) != 0 {
        return Verdict::Drop(DropReason::Malformed);
    }
    if ihl != ipv4::MIN_LEN {
        return Verdict::Drop(DropReason::IpOptions);
    }
    let frag = read_u16(ip, ipv4::FLAGS_FRAG);
    if frag & ipv4::MF_OFFSET != 0 {
        return Verdict::Drop(DropReason::IpFragment);
    }
    let dst = read_u32(ip, ipv4::DST);
    let ttl = ip[ipv4::TTL];
    // Multicast (224/4), class E and the limited broadcast are not routed.
    if dst >> 28 >= 0xe {
        return Verdict::Drop(DropReason::Unsupported);
    }
    let Some(&hop) = l3.routes.lookup4(dst) else {
        return icmp_error(
            p,
            total,
            cx,
            icmp::DEST_UNREACHABLE,
            icmp::NET_UNREACHABLE,
            0,
            DropReason::NoRoute,
        );
    };
    if hop == NextHop::Local {
        return local(p, total, cx);
    }
    // Directed broadcasts to a connected subnet are not forwarded (RFC 2644).
    if matches!(
        hop,
        NextHop::Resolve {
            link: Link::Bridge,
            gw: None
        }
    ) && l3
        .addrs4
        .iter()
        .any(|&(a, len)| len < 31 && dst == a | (u32::MAX >> len))
    {
        return Verdict::Drop(DropReason::Unsupported);
    }
    if ttl <= 1 {
        return icmp_error(
            p,
            total,
            cx,
            icmp::TIME_EXCEEDED,
            0,
            0,
            DropReason::TtlExpired,
        );
    }
    let dst = IpAddr::V4(Ipv4Addr::from(dst));
    forward(p, hop, dst, total, cx, |p, mtu, cx| {
        too_big(p, total, frag, mtu, cx)
    })
}

/// A packet larger than the output MTU: ICMP "fragmentation needed" if it
/// may not be fragmented, else dropped (the switch does not fragment).
#[inline]
fn too_big(p: &mut Pkt, total: usize, frag: u16, mtu: u16, cx: &mut Ctx<'_>) -> Verdict {
    if frag & ipv4::DF != 0 {
        return icmp_error(
            p,
            total,
            cx,
            icmp::DEST_UNREACHABLE,
            icmp::FRAG_NEEDED,
            u32::from(mtu),
            DropReason::FragNeeded,
        );
    }
    Verdict::Drop(DropReason::FragNeeded)
}

/// A packet for one of the switch's own addresses.
#[inline]
fn local(p: &mut Pkt, total: usize, cx: &mut Ctx<'_>) -> Verdict {
    let router_mac = cx.snap.l3.router_mac;
    let frame = cx.pool.data_mut(p.addr, p.len);
    let ip = &mut frame[ETH_LEN..];
    if ip[ipv4::PROTO] != ipv4::PROTO_ICMP || total < ipv4::MIN_LEN + 8 {
        return Verdict::Drop(DropReason::Unsupported);
    }
    let msg = ipv4::MIN_LEN;
    if ip[msg] != icmp::ECHO_REQUEST {
        return Verdict::Drop(DropReason::Unsupported);
    }
    // Echo reply in place: swap addresses (the header checksum does not
    // change), reset the TTL, change the type (incremental ICMP checksum).
    let src = read_u32(ip, ipv4::SRC);
    let dst = read_u32(ip, ipv4::DST);
    write_u32(ip, ipv4::SRC, dst);
    write_u32(ip, ipv4::DST, src);
    let old_ttl = read_u16(ip, ipv4::TTL);
    let new_ttl = (64 << 8) | (old_ttl & 0xff);
    write_u16(ip, ipv4::TTL, new_ttl);
    let hc = read_u16(ip, ipv4::CHECKSUM);
    write_u16(ip, ipv4::CHECKSUM, checksum_update(hc, old_ttl, new_ttl));
    let old_type = read_u16(ip, msg);
    let new_type = u16::from(icmp::ECHO_REPLY) << 8 | (old_type & 0xff);
    write_u16(ip, msg, new_type);
    let ic = read_u16(ip, msg + 2);
    write_u16(ip, msg + 2, checksum_update(ic, old_type, new_type));
    write_macs(frame, p.src, router_mac);
    reply(p, cx)
}

/// Turns the packet into an ICMP error back to its sender (when allowed)
/// and counts it under `reason`.
#[inline]
fn icmp_error(
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
    let src = read_u32(ip, ipv4::SRC);
    // Never answer an ICMP error with one, nor a broadcast or unspecified
    // source (RFC 1812 4.3.2.7).
    let is_icmp_error = ip[ipv4::PROTO] == ipv4::PROTO_ICMP
        && ip.len() > ipv4::MIN_LEN
        && icmp::is_error(ip[ipv4::MIN_LEN]);
    let Some(from) = l3.source_for(src) else {
        return Verdict::Drop(reason);
    };
    if is_icmp_error
        || src == 0
        || src >> 28 >= 0xe
        || p.dst & GROUP_BIT != 0
        || !cx.resolver.icmp_allowed(cx.now)
    {
        return Verdict::Drop(reason);
    }
    cx.counters.port(p.in_port).drop(reason, 1);
    let frame = cx.pool.data_mut(p.addr, FRAME_CAPACITY);
    let len = ipv4_icmp_error_in_place(
        frame,
        total,
        p.src,
        l3.router_mac,
        Ipv4Addr::from(from),
        icmp_type,
        code,
        rest,
    );
    p.len = len as u32;
    p.l4 = (ETH_LEN + ipv4::MIN_LEN) as u16;
    if !cx.snap.services.is_empty() {
        // About a packet translated for a Service: quote what the client sent.
        crate::services::icmp::translate_error(p, cx);
    }
    reply(p, cx)
}
