//! IPv4 routing (IPv6 in [`crate::stage::route6`]).
//!
//! Runs only while the switch routes. Takes IPv4 packets addressed to the
//! Router's MAC, and every packet from a routed port (uplink, host port).
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
//! Routes with VXLAN encapsulation wrap the routed packet in
//! Ethernet/IPv4/UDP/VXLAN towards the remote node; VXLAN arriving on the
//! uplink for one of the node's addresses with a known VNI is unwrapped and
//! the inner packet routed.
//!
//! ICMP errors are written over the offending frame itself and sent back
//! out its ingress port; the frame is counted as a drop under its reason.
//! They are rate-limited per worker.

use std::net::{IpAddr, Ipv4Addr};

use crate::MacKey;
use crate::batch::{Batch, Pkt, Verdict};
use crate::conntrack::Conntrack;
use crate::counters::WorkerCounters;
use crate::drop::DropReason;
use crate::pool::FRAME_CAPACITY;
use crate::pool::FramePool;
use crate::route::{Link, NextHop};
use crate::router::Router;
use crate::snapshot::{L3Config, PortRole, Snapshot};
use crate::stage::output::Outputs;
use crate::stage::parse::GROUP_BIT;
use crate::wire::{
    ETH_LEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6, checksum, checksum_update, icmp, ipv4,
    ipv4_decrement_ttl, ipv4_icmp_error_in_place, ipv6, read_u16, read_u32, vxlan,
    vxlan_encap_in_place, write_macs, write_u16, write_u32,
};

/// A neighbour in use is asked again once its confirmation is this old.
const NEIGH_REFRESH_MS: u64 = 30_000;

/// Everything the stage needs besides the batch.
pub struct RouteCtx<'a> {
    pub snap: &'a Snapshot,
    pub pool: &'a mut FramePool,
    pub outputs: &'a mut Outputs,
    pub counters: &'a WorkerCounters,
    pub router: &'a mut Router,
    /// The Service connection table (shared by all workers).
    pub conntrack: &'a Conntrack,
    pub now: u64,
    /// The packet at hand arrived inside VXLAN: what the router answers it
    /// with (echo reply, ICMP error) must go back through the tunnel.
    pub from_tunnel: bool,
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
        if p.dst != l3.router_mac {
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
        cx.from_tunnel = false;
        p.verdict = match p.ethertype {
            ETHERTYPE_IPV4 => route_v4(p, l3, role, true, cx),
            ETHERTYPE_IPV6 => crate::stage::route6::route_v6(p, l3, cx),
            _ => Verdict::Drop(DropReason::Unsupported),
        };
    }
}

#[inline]
fn route_v4(
    p: &mut Pkt,
    l3: &L3Config,
    role: PortRole,
    may_decap: bool,
    cx: &mut RouteCtx<'_>,
) -> Verdict {
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
    // Multicast (224/4), class E and the limited broadcast are not routed.
    if dst >> 28 >= 0xe {
        return Verdict::Drop(DropReason::Unsupported);
    }
    if may_decap
        && role == PortRole::Uplink
        && ip[ipv4::PROTO] == vxlan::PROTO_UDP
        && total >= ipv4::MIN_LEN + 8
        && read_u16(ip, ipv4::MIN_LEN + 2) == vxlan::PORT
        && l3.vteps.contains(&dst)
    {
        return decap_v4(p, total, cx);
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
        return local_v4(p, total, cx);
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
    // Where it goes and to which MAC.
    let (verdict, mac, mtu) = match hop {
        NextHop::Local => unreachable!("handled above"),
        NextHop::Vxlan { vtep, vni } => {
            return encap(p, total, vtep, vni, cx, |p, mtu, cx| {
                too_big(p, total, frag, mtu, cx)
            });
        }
        NextHop::Peer { .. } | NextHop::Resolve { .. } => {
            match next_hop(p, hop, IpAddr::V4(Ipv4Addr::from(dst)), cx) {
                Ok(r) => r,
                Err(v) => return v,
            }
        }
    };
    if total > usize::from(mtu) {
        return too_big(p, total, frag, mtu, cx);
    }
    let frame = cx.pool.data_mut(p.addr, p.len);
    ipv4_decrement_ttl(&mut frame[ETH_LEN..]);
    write_macs(frame, mac, l3.router_mac);
    p.dst = mac;
    p.src = l3.router_mac;
    verdict
}

/// Where a `Peer` or `Resolve` route sends a packet to `dst`: the verdict,
/// the next hop's MAC and the output MTU (see [`resolve`]).
#[inline(always)]
pub(crate) fn next_hop(
    p: &Pkt,
    hop: NextHop,
    dst: IpAddr,
    cx: &mut RouteCtx<'_>,
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
    cx: &mut RouteCtx<'_>,
) -> Result<(Verdict, MacKey, u16), Verdict> {
    let snap = cx.snap;
    let (verdict, mtu) = match link {
        Link::Bridge => (Verdict::Pending, snap.l3.bridge_mtu),
        Link::Port(port) => match snap.port(port) {
            Some(e) if e.up => (Verdict::Unicast(port), e.mtu),
            _ => return Err(Verdict::Drop(DropReason::PortDown)),
        },
    };
    let (pool, outputs, counters, now) = (&mut *cx.pool, &mut *cx.outputs, cx.counters, cx.now);
    let ask = |router: &mut Router, pool: &mut FramePool, outputs: &mut Outputs, known| match target
    {
        IpAddr::V4(a) => router.ask_v4(
            snap,
            pool,
            outputs,
            counters,
            u32::from(a),
            link,
            known,
            p.in_port,
            now,
        ),
        IpAddr::V6(a) => router.ask_v6(
            snap,
            pool,
            outputs,
            counters,
            u128::from(a),
            link,
            known,
            p.in_port,
            now,
        ),
    };
    match snap.neigh.get(target) {
        Some(n) => {
            // Ask again before the entry ages out while in use.
            if now.saturating_sub(n.confirmed) > NEIGH_REFRESH_MS {
                ask(cx.router, pool, outputs, Some(n.mac));
            }
            Ok((verdict, n.mac, mtu))
        }
        None => {
            ask(cx.router, pool, outputs, None);
            Err(if cx.router.hold(p, cx.now) {
                Verdict::Held
            } else {
                Verdict::Drop(DropReason::NeighborQueueFull)
            })
        }
    }
}

/// A packet larger than the output MTU: ICMP "fragmentation needed" if it
/// may not be fragmented, else dropped (the switch does not fragment).
#[inline]
fn too_big(p: &mut Pkt, total: usize, frag: u16, mtu: u16, cx: &mut RouteCtx<'_>) -> Verdict {
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

/// Sends the IPv4 or IPv6 packet (`total` bytes after the Ethernet header)
/// to another node inside VXLAN: the outer packet goes to `vtep` by the
/// route the table has for it (out of the uplink). `too_big` answers a
/// packet that does not fit.
#[inline]
pub(crate) fn encap(
    p: &mut Pkt,
    total: usize,
    vtep: u32,
    vni: u32,
    cx: &mut RouteCtx<'_>,
    too_big: impl FnOnce(&mut Pkt, u16, &mut RouteCtx<'_>) -> Verdict,
) -> Verdict {
    let l3 = &*cx.snap.l3;
    let Some(src) = l3.vtep_src else {
        return Verdict::Drop(DropReason::NoRoute);
    };
    let outer = match l3.routes.lookup4(vtep) {
        Some(&NextHop::Resolve {
            link: link @ Link::Port(_),
            gw,
        }) => match gw {
            Some(g @ IpAddr::V4(_)) => (link, g),
            Some(IpAddr::V6(_)) => return Verdict::Drop(DropReason::NoRoute),
            None => (link, IpAddr::V4(Ipv4Addr::from(vtep))),
        },
        _ => return Verdict::Drop(DropReason::NoRoute),
    };
    let (verdict, mac, mtu) = match resolve(p, outer.0, outer.1, cx) {
        Ok(r) => r,
        Err(v) => return v,
    };
    // What fits the uplink, and what a frame buffer can hold once wrapped.
    let inner_mtu = mtu
        .saturating_sub(vxlan::OVERHEAD as u16)
        .min((FRAME_CAPACITY as usize - ETH_LEN - vxlan::OVERHEAD) as u16);
    if total > usize::from(inner_mtu) {
        return too_big(p, inner_mtu, cx);
    }
    let inner_len = ETH_LEN + total;
    let frame = cx.pool.data_mut(p.addr, FRAME_CAPACITY);
    if frame.len() < inner_len + vxlan::OVERHEAD {
        return Verdict::Drop(DropReason::FragNeeded);
    }
    if p.ethertype == ETHERTYPE_IPV6 {
        frame[ETH_LEN + ipv6::HOP_LIMIT] -= 1;
    } else {
        ipv4_decrement_ttl(&mut frame[ETH_LEN..]);
    }
    // The inner Ethernet header only carries the packet: the far switch
    // routes whatever arrives from its uplink, whatever the inner MACs.
    write_macs(frame, l3.router_mac, l3.router_mac);
    // Source port from the inner flow: flows spread over ECMP paths, each
    // flow keeps its path (RFC 7348 section 5).
    let sport = 49152 | (flow_hash(&frame[ETH_LEN..ETH_LEN + total], p.ethertype) & 0x3fff) as u16;
    let len = vxlan_encap_in_place(frame, inner_len, mac, l3.router_mac, src, vtep, sport, vni);
    p.len = len as u32;
    p.dst = mac;
    p.src = l3.router_mac;
    verdict
}

/// Takes the packet out of its VXLAN envelope (in place) and routes the
/// inner packet as if it had arrived on the uplink.
#[inline]
fn decap_v4(p: &mut Pkt, total: usize, cx: &mut RouteCtx<'_>) -> Verdict {
    let l3 = &*cx.snap.l3;
    let frame = cx.pool.data_mut(p.addr, p.len);
    let udp = ETH_LEN + ipv4::MIN_LEN;
    let end = ETH_LEN + total;
    if end < vxlan::OVERHEAD + ETH_LEN
        || usize::from(read_u16(frame, udp + 4)) != total - ipv4::MIN_LEN
    {
        return Verdict::Drop(DropReason::Malformed);
    }
    let vx = udp + 8;
    if frame[vx] & vxlan::FLAG_VNI == 0 {
        return Verdict::Drop(DropReason::Malformed);
    }
    let vni = read_u32(frame, vx + 4) >> 8;
    if !l3.vnis.contains(&vni) {
        return Verdict::Drop(DropReason::Unsupported);
    }
    frame.copy_within(vxlan::OVERHEAD..end, 0);
    let inner_len = end - vxlan::OVERHEAD;
    p.len = inner_len as u32;
    p.dst = read_mac(frame, 0);
    p.src = read_mac(frame, 6);
    p.ethertype = read_u16(frame, 12);
    cx.from_tunnel = true;
    match p.ethertype {
        ETHERTYPE_IPV4 => {
            // Replies of Service flows come back inside the tunnel too.
            if let Some(v) = crate::stage::service::one(p, PortRole::Uplink, cx) {
                return v;
            }
            route_v4(p, l3, PortRole::Uplink, false, cx)
        }
        ETHERTYPE_IPV6 => crate::stage::route6::route_v6(p, l3, cx),
        _ => Verdict::Drop(DropReason::Unsupported),
    }
}

/// A hash of a packet's flow: addresses, protocol, and the ports of TCP,
/// UDP and SCTP (the identifier of ICMP echo). Nothing that changes from
/// packet to packet within a flow.
#[inline]
fn flow_hash(ip: &[u8], ethertype: u16) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut mix = |b: &[u8]| {
        for c in b.chunks(4) {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            h = (h ^ u32::from_be_bytes(w)).wrapping_mul(0x0100_0193);
        }
    };
    let (addrs, proto, l4) = if ethertype == ETHERTYPE_IPV6 {
        (
            &ip[ipv6::SRC..ipv6::DST + 16],
            ip[ipv6::NEXT_HEADER],
            ipv6::HDR_LEN,
        )
    } else {
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        (&ip[ipv4::SRC..ipv4::DST + 4], ip[ipv4::PROTO], ihl)
    };
    mix(addrs);
    mix(&[proto]);
    let ports = match proto {
        // TCP, UDP, SCTP: both ports.
        6 | 17 | 132 => 4,
        // ICMP, ICMPv6 echo: the identifier follows type, code, checksum.
        1 | 58 if ip.len() >= l4 + 6 && matches!(ip[l4], 0 | 8 | 128 | 129) => {
            mix(&ip[l4 + 4..l4 + 6]);
            0
        }
        _ => 0,
    };
    if ports > 0 && ip.len() >= l4 + ports {
        mix(&ip[l4..l4 + ports]);
    }
    h ^ (h >> 16)
}

fn read_mac(frame: &[u8], at: usize) -> MacKey {
    let mut m = [0u8; 6];
    m.copy_from_slice(&frame[at..at + 6]);
    crate::mac_key(&m)
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
    reply_v4(p, cx)
}

/// Sends what the router wrote over `p` back where `p` came from: out of
/// the ingress port, or, for a packet that came inside VXLAN, by a route
/// lookup of its (new) destination, which wraps it again.
#[inline]
pub(crate) fn reply_v4(p: &mut Pkt, cx: &mut RouteCtx<'_>) -> Verdict {
    if !std::mem::take(&mut cx.from_tunnel) {
        return Verdict::Unicast(p.in_port);
    }
    let l3 = &*cx.snap.l3;
    let frame = cx.pool.data(p.addr, p.len);
    p.dst = read_mac(frame, 0);
    p.src = read_mac(frame, 6);
    // The reply starts with a TTL of 64; routing takes one off.
    route_v4(p, l3, PortRole::Uplink, false, cx)
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
        || src >> 28 >= 0xe
        || p.dst & GROUP_BIT != 0
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
    if !cx.snap.services.is_empty() {
        // About a packet translated for a Service: quote what the client sent.
        crate::stage::service::translate_icmp_error(p, cx);
    }
    reply_v4(p, cx)
}
