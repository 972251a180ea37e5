//! IPv6 neighbour discovery (RFC 4861), the IPv6 counterpart of
//! [`crate::l3::arp`].
//!
//! Runs only while the switch routes. Looks at neighbour solicitations and
//! Advertisements (ICMPv6 135/136 right after the IPv6 header, hop limit
//! 255, valid checksum; anything else that claims to be one is
//! `malformed`). The link-layer address they carry is reported to the
//! controller as a neighbour. A solicitation for one of the switch's
//! addresses (or its link-local address) is answered in place with an
//! advertisement from the router MAC, as is every solicitation from the
//! host port (proxy). Advertisements to the switch are consumed; other ND
//! on the pod bridge is left to L2; on the uplink it is not the switch's.

use std::net::{IpAddr, Ipv6Addr};

use crate::MacKey;
use crate::batch::{Batch, Verdict};
use crate::ctx::Ctx;
use crate::drop::DropReason;
use crate::l3::table::NextHop;
use crate::snapshot::PortRole;
use crate::wire::ipv6::{self, Ipv6, icmpv6_checksum};
use crate::wire::nd::{self, Nd};
use crate::wire::{self, ETHERTYPE_IPV6};

/// All-nodes multicast, and its MAC.
const ALL_NODES: u128 = 0xff02_0000_0000_0000_0000_0000_0000_0001;
const ALL_NODES_MAC: MacKey = 0x3333_0000_0001;

/// Handles every pending neighbour discovery frame of the batch.
#[inline]
pub fn run(batch: &mut Batch, cx: &mut Ctx<'_>) {
    let (snap, pool, resolver, now) = (cx.snap, &mut *cx.pool, &mut *cx.resolver, cx.now);
    let l3 = &*snap.l3;
    if !l3.enabled() {
        return;
    }
    for p in batch.pkts_mut() {
        if !p.pending() || p.ethertype != ETHERTYPE_IPV6 {
            continue;
        }
        let frame = pool.data(p.addr, p.len);
        let Some(ip) = Ipv6::new(wire::payload(frame)) else {
            continue;
        };
        if ip.next_header() != ipv6::PROTO_ICMPV6 {
            continue;
        }
        let Some(msg) = Nd::new(ip.payload()).filter(|m| nd::is_nd(m.msg_type())) else {
            continue;
        };
        let (src, dst, icmp_type) = (ip.src(), ip.dst(), msg.msg_type());
        let msg_len = ip.payload_len();
        let Some(msg) = ip.payload().get(..msg_len).and_then(Nd::new).filter(|m| {
            ip.hop_limit() == ipv6::ND_HOP_LIMIT
                && m.code() == 0
                && icmpv6_checksum(src, dst, m.bytes()) == 0
        }) else {
            p.verdict = Verdict::Drop(DropReason::Malformed);
            continue;
        };
        let target = msg.target();
        let Some(lla) = msg.link_layer_option() else {
            p.verdict = Verdict::Drop(DropReason::Malformed);
            continue;
        };
        let role = snap.port(p.in_port).map_or(PortRole::Pod, |e| e.role);
        let (addr, mac) = if icmp_type == ipv6::NEIGHBOR_SOLICIT {
            (src, lla)
        } else {
            (target, lla)
        };
        if let Some(mac) = mac
            && addr != 0
            && !ipv6::is_link_local(addr)
            && role != PortRole::Host
        {
            resolver.report(IpAddr::V6(Ipv6Addr::from(addr)), mac, p.in_port, now);
        }
        p.verdict = if icmp_type == ipv6::NEIGHBOR_SOLICIT {
            let ours = target == l3.link_local
                || matches!(l3.routes.v6.lookup(target), Some(NextHop::Local));
            // Proxy for the host port, but not its duplicate address detection.
            let proxy = role == PortRole::Host && src != 0;
            if ours || proxy {
                // Answer in place. A solicitation from the unspecified
                // address (duplicate address detection) is answered to all
                // nodes, unsolicited.
                // A proxy answer does not override (RFC 4861 7.2.8).
                let o = if ours { ipv6::NA_OVERRIDE } else { 0 };
                let (to, eth_to, flags) = if src == 0 {
                    (ALL_NODES, ALL_NODES_MAC, ipv6::NA_ROUTER | o)
                } else {
                    let flags = ipv6::NA_ROUTER | ipv6::NA_SOLICITED | o;
                    (src, lla.unwrap_or(p.src), flags)
                };
                let frame = pool.frame_mut(p.addr);
                let n = nd::write_advert(frame, eth_to, l3.router_mac, to, target, flags);
                p.len = n as u32;
                p.dst = eth_to;
                p.src = l3.router_mac;
                Verdict::Unicast(p.in_port)
            } else if role == PortRole::Pod {
                Verdict::Pending
            } else {
                Verdict::Consumed
            }
        } else if p.dst == l3.router_mac || role != PortRole::Pod {
            Verdict::Consumed
        } else {
            Verdict::Pending
        };
    }
}
