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

use crate::batch::{Batch, Pkt, Verdict};
use crate::ctx::Ctx;
use crate::drop::DropReason;
use crate::l3::{v4, v6};
use crate::snapshot::PortRole;
use crate::wire::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, GROUP_BIT, read_mac};

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
            p.verdict = answer(p, Verdict::Reply, cx);
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
        let v = route(p, cx);
        p.verdict = answer(p, v, cx);
    }
}

/// Resolves [`Verdict::Reply`] (an answer written over the packet) into
/// where it goes; other verdicts stay. Ends: a packet is tunneled once.
#[inline]
fn answer(p: &mut Pkt, mut v: Verdict, cx: &mut Ctx<'_>) -> Verdict {
    while v == Verdict::Reply {
        v = reply(p, cx);
    }
    v
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
fn reply(p: &mut Pkt, cx: &mut Ctx<'_>) -> Verdict {
    if !std::mem::take(&mut p.tunneled) {
        return Verdict::Unicast(p.in_port);
    }
    let frame = cx.pool.data(p.addr, p.len);
    p.dst = read_mac(frame, 0);
    p.src = read_mac(frame, 6);
    // The reply starts with a TTL of 64; routing takes one off.
    route(p, cx)
}
