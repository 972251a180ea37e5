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

use crate::batch::{Batch, Verdict};
use crate::ctx::Ctx;
use crate::drop::DropReason;
use crate::l3::table::NextHop;
use crate::pool::FRAME_CAPACITY;
use crate::snapshot::PortRole;
use crate::wire::{
    ETH_LEN, ETHERTYPE_IPV6, icmpv6_checksum, ipv6, read_u16, read_u128, write_neighbor_advert,
};
use crate::{MacKey, mac_key};

/// Where ND messages start: right after the IPv6 header.
const MSG: usize = ETH_LEN + ipv6::HDR_LEN;
/// Type, code, checksum, flags/reserved, target address.
const ND_FIXED: usize = 24;
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
        let len = p.len as usize;
        let frame = pool.data_mut(p.addr, FRAME_CAPACITY);
        if len < MSG + ND_FIXED || len > frame.len() {
            continue;
        }
        let frame = &mut frame[..];
        let icmp_type = frame[MSG];
        if frame[ETH_LEN + ipv6::NEXT_HEADER] != ipv6::PROTO_ICMPV6
            || !(icmp_type == ipv6::NEIGHBOR_SOLICIT || icmp_type == ipv6::NEIGHBOR_ADVERT)
        {
            continue;
        }
        let msg_len = usize::from(read_u16(frame, ETH_LEN + ipv6::PAYLOAD_LEN));
        let src = read_u128(frame, ETH_LEN + ipv6::SRC);
        let dst = read_u128(frame, ETH_LEN + ipv6::DST);
        if msg_len < ND_FIXED
            || MSG + msg_len > len
            || frame[ETH_LEN + ipv6::HOP_LIMIT] != ipv6::ND_HOP_LIMIT
            || frame[MSG + 1] != 0
            || icmpv6_checksum(src, dst, &frame[MSG..MSG + msg_len]) != 0
        {
            p.verdict = Verdict::Drop(DropReason::Malformed);
            continue;
        }
        let target = read_u128(frame, MSG + 8);
        let Some(lla) = link_layer_option(&frame[MSG + ND_FIXED..MSG + msg_len], icmp_type) else {
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
                let n = write_neighbor_advert(frame, eth_to, l3.router_mac, to, target, flags);
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

/// The source (solicitation) or target (advertisement) link-layer address
/// option, if present; `None` (outer) when the options are malformed.
#[inline]
fn link_layer_option(mut opts: &[u8], icmp_type: u8) -> Option<Option<MacKey>> {
    let want = if icmp_type == ipv6::NEIGHBOR_SOLICIT {
        ipv6::OPT_SOURCE_LLA
    } else {
        ipv6::OPT_TARGET_LLA
    };
    let mut found = None;
    while opts.len() >= 2 {
        let len = usize::from(opts[1]) * 8;
        if len == 0 || len > opts.len() {
            return None;
        }
        if opts[0] == want && len >= 8 {
            let mut m = [0u8; 6];
            m.copy_from_slice(&opts[2..8]);
            found = Some(mac_key(&m));
        }
        opts = &opts[len..];
    }
    Some(found)
}
