//! The routing stage: IPv4 ([`super::v4`]) and IPv6 ([`super::v6`]).
//!
//! Runs only while the switch routes. Takes packets addressed to the
//! router's MAC, and every packet from a routed port (uplink, host port).
//! A packet is checked, its destination looked up (longest prefix match),
//! and then:
//!
//! - to one of the switch's addresses: ICMP echo is answered in place;
//!   anything else is `unsupported`;
//! - no route: ICMP destination unreachable, `no_route`;
//! - TTL (hop limit) would expire: ICMP time exceeded, `ttl_expired`;
//! - larger than the output MTU: ICMP fragmentation needed / packet too
//!   big, `frag_needed` (the switch never fragments);
//! - otherwise the next hop's MAC is found (a configured peer, or the
//!   neighbour table), the MACs are rewritten, the TTL decremented, and the
//!   packet goes to its port (or, on the bridge, on to L2 forwarding). A
//!   next hop without a neighbour entry makes the worker ask for it (ARP,
//!   neighbour solicitation) and hold the packet ([`super::resolver`]);
//! - a route with VXLAN encapsulation wraps the packet towards the remote
//!   node ([`super::vxlan`]).
//!
//! Answers the switch wrote over a packet (ICMP errors and echo replies
//! here, resets and port unreachables of the Service stage, which hands
//! them over as [`Verdict::Reply`]) go back where the packet came from: its
//! ingress port, or into the tunnel it arrived through. ICMP errors are
//! counted as drops under their reason and rate-limited per worker.

use std::net::IpAddr;

use crate::MacKey;
use crate::batch::{Batch, Pkt, Verdict};
use crate::ctx::Ctx;
use crate::drop::DropReason;
use crate::l3::resolver::Ask;
use crate::l3::table::{Link, NextHop};
use crate::l3::{v4, v6, vxlan};
use crate::pool::FRAME_CAPACITY;
use crate::snapshot::PortRole;
use crate::wire::ipv4::Ipv4;
use crate::wire::ipv6::Ipv6;
use crate::wire::{
    ETH_LEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6, GROUP_BIT, l4_offset, read_mac, write_macs,
};

/// A neighbour in use is asked again once its confirmation is this old.
const NEIGH_REFRESH_MS: u64 = 30_000;

/// Routes every pending packet of the batch that is the router's, and
/// sends back the answers earlier stages wrote.
#[inline]
pub fn run(batch: &mut Batch, cx: &mut Ctx<'_>) {
    let snap = cx.snap;
    let l3 = &*snap.l3;
    if !l3.enabled() {
        return;
    }
    for p in batch.pkts_mut() {
        if p.verdict == Verdict::Reply {
            p.verdict = reply(p, cx);
            continue;
        }
        if !p.pending() {
            continue;
        }
        let role = snap.port(p.in_port).map_or(PortRole::Pod, |e| e.role);
        if p.dst != l3.router_mac && !p.tunneled {
            if role == PortRole::Pod {
                continue; // switched, not routed
            }
            // Broadcast and multicast from a routed port (the node's mDNS,
            // SSDP, DHCP...) is link-local traffic: never routed.
            if p.dst & GROUP_BIT != 0 {
                p.verdict = Verdict::Drop(DropReason::Unsupported);
                continue;
            }
        }
        p.verdict = route(p, cx);
    }
}

/// Routes one packet by its family.
#[inline]
fn route(p: &mut Pkt, cx: &mut Ctx<'_>) -> Verdict {
    match p.ethertype {
        ETHERTYPE_IPV4 => v4::route(p, cx),
        ETHERTYPE_IPV6 => v6::route(p, cx),
        _ => Verdict::Drop(DropReason::Unsupported),
    }
}

/// Sends what the switch wrote over `p` back where `p` came from: out of
/// the ingress port, or, for a packet that came inside VXLAN, by a route
/// lookup of its (new) destination, which wraps it again.
#[inline]
pub(crate) fn reply(p: &mut Pkt, cx: &mut Ctx<'_>) -> Verdict {
    if !std::mem::take(&mut p.tunneled) {
        return Verdict::Unicast(p.in_port);
    }
    let frame = cx.pool.data(p.addr, p.len);
    p.dst = read_mac(frame, 0);
    p.src = read_mac(frame, 6);
    // The reply starts with a TTL of 64; routing takes one off.
    route(p, cx)
}

/// Sends a packet whose route is `hop` (not `Local`) on towards `dst`:
/// through a VXLAN tunnel, or to the next hop's MAC with the TTL (hop
/// limit) decremented. `total` is the IP packet's length; `too_big`
/// answers a packet that does not fit the output MTU.
#[inline(always)]
pub(crate) fn forward(
    p: &mut Pkt,
    hop: NextHop,
    dst: IpAddr,
    total: usize,
    cx: &mut Ctx<'_>,
    too_big: impl FnOnce(&mut Pkt, u16, &mut Ctx<'_>) -> Verdict,
) -> Verdict {
    let (verdict, mac, mtu) = match hop {
        NextHop::Vxlan { vtep, vni } => return vxlan::encap(p, total, vtep, vni, cx, too_big),
        NextHop::Peer { .. } | NextHop::Resolve { .. } => match next_hop(p, hop, dst, cx) {
            Ok(r) => r,
            Err(v) => return v,
        },
        // The families answer their own addresses before they get here.
        NextHop::Local => return Verdict::Drop(DropReason::Unsupported),
    };
    if total > usize::from(mtu) {
        return too_big(p, mtu, cx);
    }
    let router_mac = cx.snap.l3.router_mac;
    let frame = cx.pool.data_mut(p.addr, p.len);
    decrement_hop_limit(frame, p.ethertype);
    write_macs(frame, mac, router_mac);
    p.dst = mac;
    p.src = router_mac;
    verdict
}

/// Takes one off the TTL (IPv4, with the checksum updated) or the hop
/// limit (IPv6) of a frame whose header the routing stage has checked.
#[inline(always)]
pub(crate) fn decrement_hop_limit(frame: &mut [u8], ethertype: u16) {
    let ip = &mut frame[ETH_LEN..];
    if ethertype == ETHERTYPE_IPV6 {
        if let Some(mut ip) = Ipv6::new(ip) {
            ip.decrement_hop_limit();
        }
    } else if let Some(mut ip) = Ipv4::new(ip) {
        ip.decrement_ttl();
    }
}

/// Sends an ICMP or ICMPv6 error that `write(frame, eth_dst, eth_src)`
/// puts over the packet (returning the new length) back to its sender,
/// and counts the packet as dropped under `reason`. The families decide
/// what may be answered; here the last rules apply: nothing sent to a
/// group MAC is answered, and each worker answers within its ICMP budget.
#[inline]
pub(crate) fn icmp_error(
    p: &mut Pkt,
    cx: &mut Ctx<'_>,
    reason: DropReason,
    write: impl FnOnce(&mut [u8], MacKey, MacKey) -> usize,
) -> Verdict {
    if p.dst & GROUP_BIT != 0 || !cx.resolver.icmp_allowed(cx.now) {
        return Verdict::Drop(reason);
    }
    cx.counters.port(p.in_port).drop(reason, 1);
    let frame = cx.pool.data_mut(p.addr, FRAME_CAPACITY);
    let len = write(frame, p.src, cx.snap.l3.router_mac);
    p.len = len as u32;
    p.l4 = l4_offset(p.ethertype, &frame[ETH_LEN..len]);
    if p.ethertype == ETHERTYPE_IPV4 && !cx.snap.services.is_empty() {
        // About a packet translated for a Service: quote what the client sent.
        crate::services::icmp::translate_error(p, cx);
    }
    reply(p, cx)
}

/// Where a `Peer` or `Resolve` route sends a packet to `dst`: the verdict,
/// the next hop's MAC and the output MTU (see [`resolve`]).
#[inline(always)]
fn next_hop(
    p: &Pkt,
    hop: NextHop,
    dst: IpAddr,
    cx: &mut Ctx<'_>,
) -> Result<(Verdict, MacKey, u16), Verdict> {
    match hop {
        NextHop::Peer { port, mac } => match cx.snap.port(port) {
            Some(e) if e.up => Ok((Verdict::Unicast(port), mac, e.mtu)),
            _ => Err(Verdict::Drop(DropReason::PortDown)),
        },
        NextHop::Resolve { link, gw } => {
            let target = gw.unwrap_or(dst);
            if target.is_ipv4() != dst.is_ipv4() {
                return Err(Verdict::Drop(DropReason::NoRoute));
            }
            resolve(p, link, target, cx)
        }
        NextHop::Local | NextHop::Vxlan { .. } => Err(Verdict::Drop(DropReason::NoRoute)),
    }
}

/// The port (or bridge), MAC and MTU of neighbour `target` on `link`; when
/// it is not known yet, an ARP request goes out and the packet is held.
#[inline]
pub(crate) fn resolve(
    p: &Pkt,
    link: Link,
    target: IpAddr,
    cx: &mut Ctx<'_>,
) -> Result<(Verdict, MacKey, u16), Verdict> {
    let snap = cx.snap;
    let (verdict, mtu) = match link {
        Link::Bridge => (Verdict::Pending, snap.l3.bridge_mtu),
        Link::Port(port) => match snap.port(port) {
            Some(e) if e.up => (Verdict::Unicast(port), e.mtu),
            _ => return Err(Verdict::Drop(DropReason::PortDown)),
        },
    };
    let ask = |known| Ask {
        target,
        link,
        known,
        in_port: p.in_port,
    };
    let (pool, outputs, counters, now) = (&mut *cx.pool, &mut *cx.outputs, cx.counters, cx.now);
    match snap.neigh.get(target) {
        Some(n) => {
            // Ask again before the entry ages out while in use.
            if now.saturating_sub(n.confirmed) > NEIGH_REFRESH_MS {
                cx.resolver
                    .ask(snap, pool, outputs, counters, ask(Some(n.mac)), now);
            }
            Ok((verdict, n.mac, mtu))
        }
        None => {
            cx.resolver
                .ask(snap, pool, outputs, counters, ask(None), now);
            Err(if cx.resolver.hold(p, cx.now) {
                Verdict::Held
            } else {
                Verdict::Drop(DropReason::NeighborQueueFull)
            })
        }
    }
}
