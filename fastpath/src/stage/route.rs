//! Stage 5: IPv4 routing.
//!
//! Runs only while the switch routes. Takes IPv4 packets addressed to the
//! router's MAC, and every packet from a routed port (uplink, host port).
//! A packet is checked (header length, checksum; options and fragments are
//! not routed), its destination looked up (longest prefix match), and then:
//!
//! - to one of the switch's addresses: ICMP echo is answered in place;
//!   anything else is `unsupported`;
//! - no route: ICMP destination unreachable, `no_route`;
//! - TTL would expire: ICMP time exceeded, `ttl_expired`;
//! - larger than the output MTU: ICMP fragmentation needed (when DF is
//!   set), `frag_needed`;
//! - otherwise the next hop's MAC is found (a configured peer, or the
//!   neighbour table), the MACs are rewritten, the TTL decremented with an
//!   incremental checksum update, and the packet goes to its port (or, on
//!   the bridge, on to L2 forwarding). A next hop without a neighbour entry
//!   makes the worker send an ARP request and hold the packet.
//!
//! ICMP errors are written over the offending frame itself and sent back
//! out its ingress port; the frame is counted as a drop under its reason.
//! They are rate-limited per worker.

use std::net::Ipv4Addr;

use crate::batch::{Batch, Pkt, Verdict};
use crate::counters::WorkerCounters;
use crate::drop::DropReason;
use crate::neigh::ip4_key;
use crate::pool::FramePool;
use crate::route::{Link, NextHop};
use crate::router::Router;
use crate::snapshot::{L3Config, PortRole, Snapshot};
use crate::stage::output::Outputs;
use crate::wire::{
    ETH_LEN, ETHERTYPE_IPV4, checksum, checksum_update, icmp, ipv4, ipv4_decrement_ttl,
    ipv4_icmp_error_in_place, read_u16, read_u32, write_macs, write_u16, write_u32,
};

/// Everything the stage needs besides the batch.
pub struct RouteCtx<'a> {
    pub snap: &'a Snapshot,
    pub pool: &'a mut FramePool,
    pub outputs: &'a mut Outputs,
    pub counters: &'a WorkerCounters,
    pub router: &'a mut Router,
    pub now: u64,
}

/// Routes every pending IPv4 packet of the batch that is the router's.
#[inline]
pub fn run(batch: &mut Batch, cx: &mut RouteCtx<'_>) {
    let snap = cx.snap;
    let l3 = &*snap.l3;
    if !l3.enabled() {
        return;
    }
    for p in batch.pkts_mut() {
        if !p.pending() {
            continue;
        }
        let role = snap.port(p.in_port).map_or(PortRole::Pod, |e| e.role);
        if p.dst != l3.router_mac && role == PortRole::Pod {
            continue; // switched, not routed
        }
        p.verdict = match p.ethertype {
            ETHERTYPE_IPV4 => route_v4(p, l3, role, cx),
            _ => Verdict::Drop(DropReason::Unsupported),
        };
    }
}

#[inline]
fn route_v4(p: &mut Pkt, l3: &L3Config, role: PortRole, cx: &mut RouteCtx<'_>) -> Verdict {
    let snap = cx.snap;
    let frame = cx.pool.data(p.addr, p.len);
    if frame.len() < ETH_LEN + ipv4::MIN_LEN {
        return Verdict::Drop(DropReason::Malformed);
    }
    let ip = &frame[ETH_LEN..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(read_u16(ip, ipv4::TOTAL_LEN));
    if ip[0] >> 4 != 4 || ihl < ipv4::MIN_LEN || total < ihl || total > ip.len() {
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
    let Some(&hop) = l3.routes.v4.lookup(dst) else {
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
        return local_v4(p, total, cx);
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
    // Where it goes and to which MAC.
    let (verdict, mac, mtu) = match hop {
        NextHop::Local => unreachable!("handled above"),
        NextHop::Peer { port, mac } => match snap.port(port) {
            Some(e) if e.up => (Verdict::Unicast(port), mac, e.mtu),
            _ => return Verdict::Drop(DropReason::PortDown),
        },
        NextHop::Resolve { link, gw } => {
            let target = match gw {
                Some(std::net::IpAddr::V4(g)) => u32::from(g),
                Some(std::net::IpAddr::V6(_)) => return Verdict::Drop(DropReason::NoRoute),
                None => dst,
            };
            let (verdict, mtu) = match link {
                Link::Bridge => (Verdict::Pending, l3.bridge_mtu),
                Link::Port(port) => match snap.port(port) {
                    Some(e) if e.up => (Verdict::Unicast(port), e.mtu),
                    _ => return Verdict::Drop(DropReason::PortDown),
                },
            };
            match snap.neigh.get(&ip4_key(target)) {
                Some(n) => {
                    // Ask again before the entry ages out while in use.
                    let stale_after = 30_000;
                    if cx.now.saturating_sub(n.confirmed) > stale_after {
                        let (pool, outputs) = (&mut *cx.pool, &mut *cx.outputs);
                        cx.router.ask_v4(
                            snap,
                            pool,
                            outputs,
                            cx.counters,
                            target,
                            link,
                            Some(n.mac),
                            p.in_port,
                            cx.now,
                        );
                    }
                    (verdict, n.mac, mtu)
                }
                None => {
                    let (pool, outputs) = (&mut *cx.pool, &mut *cx.outputs);
                    cx.router.ask_v4(
                        snap,
                        pool,
                        outputs,
                        cx.counters,
                        target,
                        link,
                        None,
                        p.in_port,
                        cx.now,
                    );
                    return if cx.router.hold(p, cx.now) {
                        Verdict::Held
                    } else {
                        Verdict::Drop(DropReason::NeighborQueueFull)
                    };
                }
            }
        }
    };
    if total > usize::from(mtu) {
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
        return Verdict::Drop(DropReason::FragNeeded);
    }
    let _ = role;
    let frame = cx.pool.data_mut(p.addr, p.len);
    ipv4_decrement_ttl(&mut frame[ETH_LEN..]);
    write_macs(frame, mac, l3.router_mac);
    p.dst = mac;
    p.src = l3.router_mac;
    verdict
}

/// A packet for one of the switch's own addresses.
#[inline]
fn local_v4(p: &mut Pkt, total: usize, cx: &mut RouteCtx<'_>) -> Verdict {
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
    Verdict::Unicast(p.in_port)
}

/// Turns the packet into an ICMP error back to its sender (when allowed)
/// and counts it under `reason`.
#[inline]
fn icmp_error(
    p: &mut Pkt,
    total: usize,
    cx: &mut RouteCtx<'_>,
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
        || src == u32::MAX
        || src >> 28 == 0xe
        || !cx.router.icmp_allowed(cx.now)
    {
        return Verdict::Drop(reason);
    }
    cx.counters.port(p.in_port).drop(reason, 1);
    let frame = cx.pool.data_mut(p.addr, crate::pool::FRAME_CAPACITY);
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
    Verdict::Unicast(p.in_port)
}
