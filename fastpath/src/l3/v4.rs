//! IPv4 routing (the stage is [`super::routing`]).
//!
//! A packet is checked (header length, checksum; options and fragments are
//! not routed) and looked up; directed broadcasts to a connected subnet are
//! not forwarded (RFC 2644); multicast and class E are not routed. ICMP
//! errors are written over the offending frame itself (see
//! [`crate::wire::ipv4::icmp_error_in_place`]); for a packet translated by
//! a Service they quote what the client sent ([`crate::services::icmp`]).

use std::net::{IpAddr, Ipv4Addr};

use crate::batch::{Pkt, Verdict};
use crate::ctx::Ctx;
use crate::drop::DropReason;
use crate::l3::egress::{forward, icmp_error};
use crate::l3::table::{Link, NextHop};
use crate::wire::icmp::{self, Icmp};
use crate::wire::ipv4::{self, Ipv4};
use crate::wire::{self, ETH_LEN, write_macs};

/// Routes one IPv4 packet that is the router's.
#[inline]
pub(crate) fn route(p: &mut Pkt, cx: &mut Ctx<'_>) -> Verdict {
    let l3 = &*cx.snap.l3;
    let frame = cx.pool.data(p.addr, p.len);
    // The parse stage found a sane header length (`p.l4` is 0 otherwise).
    let ihl = usize::from(p.l4).saturating_sub(ETH_LEN);
    let Some(ip) = Ipv4::new(wire::payload(frame)).filter(|_| ihl != 0) else {
        return Verdict::Drop(DropReason::Malformed);
    };
    let Some(total) = ip.total_within(ihl) else {
        return Verdict::Drop(DropReason::Malformed);
    };
    if !ip.checksum_ok(ihl) {
        return Verdict::Drop(DropReason::Malformed);
    }
    if ihl != ipv4::MIN_LEN {
        return Verdict::Drop(DropReason::IpOptions);
    }
    if ip.is_fragment() {
        return Verdict::Drop(DropReason::IpFragment);
    }
    let (dst, ttl, df) = (ip.dst(), ip.ttl(), ip.dont_fragment());
    // Multicast (224/4), class E and the limited broadcast are not routed.
    if dst >> 28 >= 0xe {
        return Verdict::Drop(DropReason::Unsupported);
    }
    let Some(&hop) = l3.routes.lookup4(dst) else {
        let e = (icmp::DEST_UNREACHABLE, icmp::NET_UNREACHABLE, 0);
        return error(p, total, cx, e, DropReason::NoRoute);
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
        let e = (icmp::TIME_EXCEEDED, 0, 0);
        return error(p, total, cx, e, DropReason::TtlExpired);
    }
    let dst = IpAddr::V4(Ipv4Addr::from(dst));
    forward(p, hop, dst, total, cx, |p, mtu, cx| {
        // Too big for the output: ICMP "fragmentation needed" if it may not
        // be fragmented, else dropped (the switch does not fragment).
        if !df {
            return Verdict::Drop(DropReason::FragNeeded);
        }
        let e = (icmp::DEST_UNREACHABLE, icmp::FRAG_NEEDED, u32::from(mtu));
        error(p, total, cx, e, DropReason::FragNeeded)
    })
}

/// A packet for one of the switch's own addresses: echo is answered in
/// place (addresses swapped, which leaves the header checksum as it is,
/// TTL reset, type changed), anything else is `unsupported`.
#[inline]
fn local(p: &mut Pkt, total: usize, cx: &mut Ctx<'_>) -> Verdict {
    let router_mac = cx.snap.l3.router_mac;
    let frame = cx.pool.data_mut(p.addr, p.len);
    let mut ip = Ipv4::new(&mut frame[ETH_LEN..ETH_LEN + total]).expect("checked by route");
    if ip.protocol() != ipv4::PROTO_ICMP {
        return Verdict::Drop(DropReason::Unsupported);
    }
    match Icmp::new(&mut ip.bytes_mut()[ipv4::MIN_LEN..]) {
        Some(mut msg) if msg.msg_type() == icmp::ECHO_REQUEST => msg.set_type(icmp::ECHO_REPLY),
        _ => return Verdict::Drop(DropReason::Unsupported),
    }
    ip.swap_addrs();
    ip.set_ttl(64);
    write_macs(frame, p.src, router_mac);
    Verdict::Reply
}

/// Turns the packet into the ICMP error `(type, code, rest)` back to its
/// sender, when allowed (see [`icmp_error`]), and counts it under `reason`.
#[inline]
fn error(
    p: &mut Pkt,
    total: usize,
    cx: &mut Ctx<'_>,
    (t, code, rest): (u8, u8, u32),
    reason: DropReason,
) -> Verdict {
    let l3 = &*cx.snap.l3;
    let frame = cx.pool.data(p.addr, p.len);
    let ip = Ipv4::new(&frame[ETH_LEN..]).expect("checked by route");
    let src = ip.src();
    // Never answer an ICMP error with one, nor a broadcast or unspecified
    // source (RFC 1812 4.3.2.7).
    let about_error = ip.protocol() == ipv4::PROTO_ICMP
        && ip
            .bytes()
            .get(ipv4::MIN_LEN)
            .is_some_and(|&t| icmp::is_error(t));
    let from = match l3.source_for(src) {
        Some(from) if !about_error && src != 0 && src >> 28 < 0xe => from,
        _ => return Verdict::Drop(reason),
    };
    icmp_error(p, cx, reason, |frame, eth_dst, eth_src| {
        let from = Ipv4Addr::from(from);
        ipv4::icmp_error_in_place(frame, total, eth_dst, eth_src, from, t, code, rest)
    })
}
