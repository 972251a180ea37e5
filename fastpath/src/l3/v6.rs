//! IPv6 routing (the stage is [`super::routing`]).
//!
//! The same decisions as for IPv4 with IPv6's rules: the hop limit is
//! decremented (there is no header checksum), a router never fragments (a
//! packet above the output MTU gets ICMPv6 "packet too big"), errors are
//! ICMPv6 (time exceeded, destination unreachable) with the quoted packet
//! cut to the IPv6 minimum MTU. Packets to link-local or multicast
//! destinations are not routed. Neighbours are resolved with neighbour
//! solicitations (see [`crate::l3::resolver::Resolver::ask`]).

use std::net::{IpAddr, Ipv6Addr};

use crate::batch::{Pkt, Verdict};
use crate::ctx::Ctx;
use crate::drop::DropReason;
use crate::l3::egress::{forward, icmp_error};
use crate::l3::table::NextHop;
use crate::wire::icmp::Icmp;
use crate::wire::ipv6::{self, Ipv6};
use crate::wire::{self, ETH_LEN, write_macs};

/// Routes one IPv6 packet that is the router's.
#[inline]
pub(crate) fn route(p: &mut Pkt, cx: &mut Ctx<'_>) -> Verdict {
    let l3 = &*cx.snap.l3;
    let frame = cx.pool.data(p.addr, p.len);
    let ip = Ipv6::new(wire::payload(frame));
    let Some((ip, total)) = ip.and_then(|ip| Some((ip, ip.total_len()?))) else {
        return Verdict::Drop(DropReason::Malformed);
    };
    let (src, dst, hop_limit) = (ip.src(), ip.dst(), ip.hop_limit());
    if dst == l3.link_local {
        return local(p, total, cx);
    }
    if ipv6::is_multicast(dst) || ipv6::is_link_local(dst) || ipv6::is_link_local(src) {
        return Verdict::Drop(DropReason::Unsupported);
    }
    let Some(&hop) = l3.routes.v6.lookup(dst) else {
        let e = (ipv6::DEST_UNREACHABLE, 0, 0);
        return error(p, total, cx, e, DropReason::NoRoute);
    };
    if hop == NextHop::Local {
        return local(p, total, cx);
    }
    if hop_limit <= 1 {
        let e = (ipv6::TIME_EXCEEDED, 0, 0);
        return error(p, total, cx, e, DropReason::TtlExpired);
    }
    let dst = IpAddr::V6(Ipv6Addr::from(dst));
    forward(p, hop, dst, total, cx, |p, mtu, cx| {
        let e = (ipv6::PACKET_TOO_BIG, 0, u32::from(mtu));
        error(p, total, cx, e, DropReason::FragNeeded)
    })
}

/// A packet for one of the switch's own addresses: echo is answered in
/// place (swapping the addresses leaves the pseudo-header sum as it was;
/// only the type changes the checksum).
#[inline]
fn local(p: &mut Pkt, total: usize, cx: &mut Ctx<'_>) -> Verdict {
    let router_mac = cx.snap.l3.router_mac;
    let frame = cx.pool.data_mut(p.addr, p.len);
    let mut ip = Ipv6::new(&mut frame[ETH_LEN..ETH_LEN + total]).expect("checked by route");
    if ip.next_header() != ipv6::PROTO_ICMPV6 {
        return Verdict::Drop(DropReason::Unsupported);
    }
    match Icmp::new(ip.payload_mut()) {
        Some(mut msg) if msg.msg_type() == ipv6::ECHO_REQUEST => msg.set_type(ipv6::ECHO_REPLY),
        _ => return Verdict::Drop(DropReason::Unsupported),
    }
    ip.swap_addrs();
    ip.set_hop_limit(64);
    write_macs(frame, p.src, router_mac);
    Verdict::Reply
}

/// Turns the packet into the ICMPv6 error `(type, code, rest)` back to its
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
    let ip = Ipv6::new(&frame[ETH_LEN..]).expect("checked by route");
    let src = ip.src();
    // Never answer an ICMPv6 error, nor the unspecified or a multicast
    // source (RFC 4443 2.4).
    let about_error = ip.next_header() == ipv6::PROTO_ICMPV6
        && ip.payload().first().is_some_and(|&t| ipv6::is_error(t));
    if about_error || src == 0 || ipv6::is_multicast(src) {
        return Verdict::Drop(reason);
    }
    let from = l3.source_for6(src).unwrap_or(l3.link_local);
    icmp_error(p, cx, reason, |frame, eth_dst, eth_src| {
        ipv6::icmp_error_in_place(frame, total, eth_dst, eth_src, from, t, code, rest)
    })
}
