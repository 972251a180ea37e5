//! What IPv4 and IPv6 routing share once a packet's route is known:
//! sending it on (through a VXLAN tunnel, or to the next hop with MACs
//! rewritten and the TTL decremented), and turning it into an ICMP error.

use std::net::IpAddr;

use crate::MacKey;
use crate::batch::{Pkt, Verdict};
use crate::ctx::Ctx;
use crate::drop::DropReason;
use crate::gso::Gso;
use crate::l3::next_hop::{decrement_hop_limit, next_hop, wire_size};
use crate::l3::table::NextHop;
use crate::l3::vxlan;
use crate::wire::{ETH_LEN, ETHERTYPE_IPV4, GROUP_BIT, l4_offset, write_macs};

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
    let Some(size) = wire_size(p, total, cx) else {
        return Verdict::Drop(DropReason::BadOffload);
    };
    if size > usize::from(mtu) {
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

/// Writes an ICMP or ICMPv6 error over the packet with `write(frame,
/// eth_dst, eth_src)` (which returns the new length), to go back to its
/// sender ([`Verdict::Reply`], sent by the routing stage), and counts the
/// packet as dropped under `reason`. The families decide
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
    let frame = cx.pool.frame_mut(p.addr);
    let len = write(frame, p.src, cx.snap.l3.router_mac);
    p.len = len as u32;
    p.gso = Gso::NONE;
    p.l4 = l4_offset(p.ethertype, &frame[ETH_LEN..len]);
    if p.ethertype == ETHERTYPE_IPV4 && !cx.snap.services.is_empty() {
        // About a packet translated for a Service: quote what the client sent.
        crate::services::icmp::translate_error(p, cx);
    }
    Verdict::Reply
}
