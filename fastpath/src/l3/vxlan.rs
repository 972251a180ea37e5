//! VXLAN between nodes (RFC 7348): the decapsulation stage, and the
//! encapsulation routes with a `Vxlan` next hop use.
//!
//! Decapsulation runs before the Service stage, on the uplink only: a
//! well-formed IPv4/UDP packet to port 4789 for one of the node's tunnel
//! addresses with a known VNI is unwrapped in place and goes on through the
//! pipeline as the inner packet, marked [`Pkt::tunneled`] so that what the
//! switch answers it with goes back through the tunnel. Anything else is
//! left to routing, which drops or answers it as it would any packet. A
//! VXLAN packet with a bad UDP length or without the VNI flag is
//! `malformed`; an unknown VNI is `unsupported`.

use std::net::{IpAddr, Ipv4Addr};

use crate::batch::{Batch, Pkt, Verdict};
use crate::ctx::Ctx;
use crate::drop::DropReason;
use crate::gso::Gso;
use crate::gso::segment::segment;
use crate::l3::next_hop::{decrement_hop_limit, resolve, wire_size};
use crate::l3::table::{Link, NextHop};
use crate::pipeline::csum::mark;
use crate::pool::{FRAME_CAPACITY, FramePool};
use crate::snapshot::PortRole;
use crate::tx::TxFrame;
use crate::wire::ipv4::{self, Ipv4};
use crate::wire::ipv6;
use crate::wire::l4::Udp;
use crate::wire::vxlan::{self, Vxlan};
use crate::wire::{
    ETH_LEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6, GROUP_BIT, l4_offset, read_mac, read_u16, write_macs,
};

/// Unwraps every pending VXLAN packet of the batch that is for this node.
#[inline]
pub fn run(batch: &mut Batch, cx: &mut Ctx<'_>) {
    let snap = cx.snap;
    let l3 = &*snap.l3;
    if l3.vteps.is_empty() || !l3.enabled() {
        return;
    }
    for p in batch.pkts_mut() {
        if !p.pending()
            || p.ethertype != ETHERTYPE_IPV4
            || p.dst & GROUP_BIT != 0
            || snap
                .port(p.in_port)
                .is_none_or(|e| e.role != PortRole::Uplink)
        {
            continue;
        }
        if let Some(total) = tunnel_packet(p, cx)
            && let Some(v) = decap(p, total, cx)
        {
            p.verdict = v;
        }
    }
}

/// The IPv4 length of `p` if it is a VXLAN packet for one of the node's
/// tunnel addresses in a header routing would accept (checksum right, no
/// options, not a fragment).
#[inline]
fn tunnel_packet(p: &Pkt, cx: &Ctx<'_>) -> Option<usize> {
    let frame = cx.pool.data(p.addr, p.len);
    if usize::from(p.l4) != ETH_LEN + ipv4::MIN_LEN {
        return None;
    }
    let ip = Ipv4::new(&frame[ETH_LEN..])?;
    let total = ip.total_within(ipv4::MIN_LEN)?;
    let udp = Udp::new(ip.payload(ipv4::MIN_LEN, total))?;
    let ours = ip.protocol() == vxlan::PROTO_UDP
        && udp.dport() == vxlan::PORT
        && !ip.is_fragment()
        && cx.snap.l3.vteps.contains(&ip.dst())
        && ip.checksum_ok(ipv4::MIN_LEN);
    ours.then_some(total)
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
    cx: &mut Ctx<'_>,
    too_big: impl FnOnce(&mut Pkt, u16, &mut Ctx<'_>) -> Verdict,
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
    let Some(size) = wire_size(p, total, cx) else {
        return Verdict::Drop(DropReason::BadOffload);
    };
    if size > usize::from(inner_mtu) {
        return too_big(p, inner_mtu, cx);
    }
    if p.gso.is_some() {
        return encap_segments(p, total, (src, vtep, vni), (verdict, mac), cx);
    }
    if p.gso.is_partial() {
        // The uplink is not asked to complete an inner checksum.
        crate::gso::complete(cx.pool.data_mut(p.addr, p.len), p.gso);
        p.gso = Gso::NONE;
    }
    let inner_len = ETH_LEN + total;
    let frame = cx.pool.data_mut(p.addr, FRAME_CAPACITY);
    if frame.len() < inner_len + vxlan::OVERHEAD {
        return Verdict::Drop(DropReason::FragNeeded);
    }
    decrement_hop_limit(frame, p.ethertype);
    // The inner Ethernet header only carries the packet: the far switch
    // routes whatever arrives from its uplink, whatever the inner MACs.
    write_macs(frame, l3.router_mac, l3.router_mac);
    // Source port from the inner flow: flows spread over ECMP paths, each
    // flow keeps its path (RFC 7348 section 5).
    let l4 = usize::from(p.l4).saturating_sub(ETH_LEN);
    let sport =
        49152 | (flow_hash(&frame[ETH_LEN..ETH_LEN + total], p.ethertype, l4) & 0x3fff) as u16;
    let len = vxlan::encap_in_place(frame, inner_len, mac, l3.router_mac, src, vtep, sport, vni);
    p.len = len as u32;
    p.dst = mac;
    p.src = l3.router_mac;
    verdict
}

/// Sends a GSO frame into the tunnel to `vtep` from `src` (`verdict` and
/// `mac`: the outer next hop): the uplink takes no GSO, so the frame is
/// cut into the packets it stands for and each is wrapped on its own (the
/// same outer source port for all: one flow). The frame itself is then
/// consumed; segments without a free frame are `no_buffer`.
fn encap_segments(
    p: &mut Pkt,
    total: usize,
    (src, vtep, vni): (u32, u32, u32),
    (verdict, mac): (Verdict, crate::MacKey),
    cx: &mut Ctx<'_>,
) -> Verdict {
    let Verdict::Unicast(port) = verdict else {
        return Verdict::Drop(DropReason::NoRoute);
    };
    let router_mac = cx.snap.l3.router_mac;
    let frame = cx.pool.data_mut(p.addr, p.len);
    decrement_hop_limit(frame, p.ethertype);
    write_macs(frame, router_mac, router_mac);
    let l4 = usize::from(p.l4).saturating_sub(ETH_LEN);
    let sport =
        49152 | (flow_hash(&frame[ETH_LEN..ETH_LEN + total], p.ethertype, l4) & 0x3fff) as u16;
    let (outputs, in_port) = (&mut *cx.outputs, p.in_port);
    let wrap = |pool: &mut FramePool, addr: u32, len: u32| {
        let f = pool.frame_mut(addr);
        let n = vxlan::encap_in_place(f, len as usize, mac, router_mac, src, vtep, sport, vni);
        outputs.push(port, TxFrame::new(addr, n as u32, in_port));
    };
    match segment(cx.pool, p.addr, p.len, p.gso, wrap) {
        Ok((_, 0)) => {}
        Ok((_, lost)) => cx
            .counters
            .port(in_port)
            .drop(DropReason::NoBuffer, lost as u64),
        Err(_) => return Verdict::Drop(DropReason::BadOffload),
    }
    Verdict::Consumed
}

/// Takes the packet out of its VXLAN envelope (in place); the inner packet
/// goes on as if it had arrived on the uplink. `Some` when it is dropped.
#[inline]
fn decap(p: &mut Pkt, total: usize, cx: &mut Ctx<'_>) -> Option<Verdict> {
    let l3 = &*cx.snap.l3;
    let frame = cx.pool.data_mut(p.addr, p.len);
    let end = ETH_LEN + total;
    let udp = Udp::new(&frame[ETH_LEN + ipv4::MIN_LEN..end]).expect("checked by tunnel_packet");
    let vx = Vxlan::new(udp.payload()).filter(|_| end >= vxlan::OVERHEAD + ETH_LEN);
    let Some(vx) = vx.filter(|v| udp.len() == total - ipv4::MIN_LEN && v.has_vni()) else {
        return Some(Verdict::Drop(DropReason::Malformed));
    };
    if !l3.vnis.contains(&vx.vni()) {
        return Some(Verdict::Drop(DropReason::Unsupported));
    }
    frame.copy_within(vxlan::OVERHEAD..end, 0);
    let inner_len = end - vxlan::OVERHEAD;
    p.len = inner_len as u32;
    p.dst = read_mac(frame, 0);
    p.src = read_mac(frame, 6);
    p.ethertype = read_u16(frame, 12);
    p.l4 = l4_offset(p.ethertype, &frame[ETH_LEN..inner_len]);
    p.tunneled = true;
    // A mark of the outer UDP checksum went with the outer headers; the
    // inner packet's own checksum may be partial (a sender that left it to
    // the "hardware"), on a port whose frames may carry such. (Every port
    // completes a partial checksum it cannot hand on, so a batch that was
    // not marked big is safe too.)
    let inner = &frame[..inner_len];
    p.gso = if cx.snap.port(p.in_port).is_some_and(|e| e.finish_csum) {
        mark(inner, p.ethertype).unwrap_or(Gso::NONE)
    } else {
        Gso::NONE
    };
    None
}

/// A hash of a packet's flow: addresses, protocol, and the ports of TCP,
/// UDP and SCTP (the identifier of ICMP echo). Nothing that changes from
/// packet to packet within a flow.
#[inline]
fn flow_hash(ip: &[u8], ethertype: u16, l4: usize) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut mix = |b: &[u8]| {
        for c in b.chunks(4) {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            h = (h ^ u32::from_be_bytes(w)).wrapping_mul(0x0100_0193);
        }
    };
    let (addrs, proto) = if ethertype == ETHERTYPE_IPV6 {
        (&ip[ipv6::SRC..ipv6::DST + 16], ip[ipv6::NEXT_HEADER])
    } else {
        (&ip[ipv4::SRC..ipv4::DST + 4], ip[ipv4::PROTO])
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
