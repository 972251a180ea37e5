//! Services — VIP match, connection tracking, Maglev, NAT.
//!
//! Runs before routing, only while some Service exists, on IPv4 TCP and UDP
//! Packets. A packet is one of:
//!
//! - to a VIP:PORT (sent to the router, or from a routed port), or to a
//!   NodePort on one of the node's uplink addresses: the original
//!   direction. A tracked flow keeps its endpoint while that endpoint is
//!   still listed (ready or terminating); a new flow gets one (ClientIP
//!   affinity first, if the Service has it, else Maglev over the 5-tuple),
//!   a conntrack entry, and its destination translated. NodePort flows,
//!   flows from routed ports (the node through the host port, the outside
//!   through the uplink) and hairpin flows (a pod reaching itself through
//!   its Service) are also source-translated to a switch address, so the
//!   reply comes back through the switch wherever the endpoint is. A Service without endpoints refuses the packet
//!   at once: a TCP reset, or ICMP port unreachable for UDP
//!   (`no_endpoints`);
//! - from an endpoint address: possibly a reply, translated back so the
//!   client sees the address it spoke to;
//! - anything else: left alone.
//!
//! Translated packets go on to routing (or, for a reply on the same bridge,
//! to switching) like any other. Malformed TCP/UDP headers and fragments
//! to a VIP are dropped (`malformed`, `ip_fragment`); a full conntrack
//! table refuses new flows (`conntrack_full`).

use std::net::Ipv4Addr;

use crate::batch::{Batch, Pkt, Verdict};
use crate::ctx::Ctx;
use crate::drop::DropReason;
use crate::gso::Gso;
use crate::services::conntrack::{Hit, Nat, NewFlow, Tracked, flow_key};
use crate::services::l4;
use crate::services::table::{Service, endpoint_parts};
use crate::snapshot::PortRole;
use crate::wire::icmp;
use crate::wire::ipv4::{self, Ipv4};
use crate::wire::l4::{Tcp, Udp, tcp, udp};
use crate::wire::{self, ETH_LEN, ETHERTYPE_IPV4, GROUP_BIT};

/// Runs every pending IPv4 packet of the batch through the Service logic.
#[inline]
pub fn run(batch: &mut Batch, cx: &mut Ctx<'_>) {
    let snap = cx.snap;
    if snap.services.is_empty() || !snap.l3.enabled() {
        return;
    }
    for p in batch.pkts_mut() {
        if !p.pending() || p.ethertype != ETHERTYPE_IPV4 {
            continue;
        }
        let role = snap.port(p.in_port).map_or(PortRole::Pod, |e| e.role);
        if let Some(v) = one(p, role, cx) {
            p.verdict = v;
        }
    }
}

/// What the TCP/UDP headers of a packet say.
struct Tuple {
    ihl: usize,
    total: usize,
    proto: u8,
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
    /// TCP flags (`None` for UDP).
    flags: Option<u8>,
}

/// The Service logic for one IPv4 packet `p` (arrived on a port of
/// `role`). Returns the verdict when the stage decides the packet's fate
/// (refused, dropped); `None` lets it go on, translated or not.
#[inline]
fn one(p: &mut Pkt, role: PortRole, cx: &mut Ctx<'_>) -> Option<Verdict> {
    let snap = cx.snap;
    let svcs = &*snap.services;
    if svcs.is_empty() {
        return None;
    }
    let l3 = &*snap.l3;
    let frame = cx.pool.data(p.addr, p.len);
    let ip = Ipv4::new(wire::payload(frame)).filter(|ip| ip.version() == 4)?;
    let (proto, src, dst) = (ip.protocol(), ip.src(), ip.dst());
    if proto == ipv4::PROTO_ICMP {
        // ICMP errors about a flow go back translated: an endpoint's about
        // what a client sent, a client's (to the VIP) about a reply.
        let to_router = role != PortRole::Pod || p.dst == l3.router_mac;
        if svcs.is_backend(src) || (to_router && svcs.is_vip(dst)) {
            crate::services::icmp::translate_error(p, cx);
        }
        return None;
    }
    if proto != tcp::PROTO && proto != udp::PROTO {
        return None;
    }
    let to_router = role != PortRole::Pod || p.dst == l3.router_mac;
    // The destination port is read before the headers are checked (only to
    // find the Service: `tuple` checks everything before it is used).
    let ihl = usize::from(p.l4).saturating_sub(ETH_LEN);
    let at = ihl + crate::wire::l4::DPORT;
    let dport_guess = ip
        .bytes()
        .get(at..at + 2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    let at_vip = if to_router {
        svcs.front(dst, dport_guess, proto)
    } else {
        None
    };
    let front = at_vip.is_some();
    let node = to_router && !front && svcs.has_node_ports() && l3.vteps.contains(&dst);
    if !front && !node && !svcs.is_backend(src) {
        return None;
    }
    let ours = front || node;
    let t = match tuple(ip, ihl) {
        Ok(t) => t,
        // Bad packets to a Service are ours to count; anything else goes
        // on to the stages that own it.
        Err(reason) => return ours.then_some(Verdict::Drop(reason)),
    };
    let key = flow_key(t.src, t.dst, t.sport, t.dport, t.proto);
    if !ours {
        // Possibly a reply from an endpoint.
        if let Some(Hit::Reply { nat }) = cx
            .conntrack
            .lookup_cached(cx.flows, key, false, t.flags, cx.now)
        {
            translate(p, &t, nat, cx);
        }
        return None;
    }
    let svc = match at_vip {
        Some(svc) => svc,
        None => svcs.node_port(t.dport, t.proto),
    };
    let Some(svc) = svc else {
        // A VIP, but not a port it serves: refuse. A NodePort that is gone
        // meanwhile: the router decides (the node's own address).
        return front.then(|| refuse(p, &t, cx));
    };
    let listed = |service: u64, backend: u64| service == svc.key() && svc.is_listed(backend);
    // A flow this worker saw lately: no lock.
    if let Some(nat) = cx
        .conntrack
        .cached_orig(cx.flows, key, t.flags, cx.now, svc.id, listed)
    {
        translate(p, &t, nat, cx);
        return None;
    }
    // Otherwise the table decides, under one lock: the flow as it is if it
    // exists and its endpoint is still listed, else a new flow to the
    // endpoint chosen here. (Packets of flows the cache knows skip the
    // header checksum: the incremental update keeps a bad one bad, and
    // routing checks it.)
    let frame = cx.pool.data(p.addr, p.len);
    if !Ipv4::new(wire::payload(frame)).is_some_and(|ip| ip.checksum_ok(t.ihl)) {
        return Some(Verdict::Drop(DropReason::Malformed));
    }
    let Some(backend) = choose(svc, key, t.src, cx) else {
        return Some(refuse(p, &t, cx));
    };
    let (bip, bport) = endpoint_parts(backend);
    // Source NAT where the reply would not come back through the switch
    // otherwise: NodePort clients, clients behind a routed port (the node
    // itself, or the world beyond the uplink; kube-proxy masquerades
    // off-cluster sources the same way), and hairpin.
    let snat = if node || role != PortRole::Pod || bip == t.src {
        match l3.source_for(bip) {
            Some(a) => Some(a),
            None => return Some(Verdict::Drop(DropReason::NoRoute)),
        }
    } else {
        None
    };
    let new = NewFlow {
        proto: t.proto,
        client: (t.src, t.sport),
        front: (t.dst, t.dport),
        backend: (bip, bport),
        snat,
        service: svc.key(),
    };
    match cx
        .conntrack
        .lookup_or_create(cx.flows, &new, t.flags, cx.now, listed)
    {
        Ok(Tracked::Existing(Hit::Orig { nat, .. })) => {
            translate(p, &t, nat, cx);
            None
        }
        Ok(Tracked::Existing(Hit::Reply { .. })) => None,
        Ok(Tracked::Created(nat)) => {
            if let Some(ms) = svc.affinity_ms {
                cx.conntrack
                    .set_affinity(svc.key(), t.src, backend, ms, cx.now);
            }
            translate(p, &t, nat, cx);
            None
        }
        Err(_) => Some(Verdict::Drop(DropReason::ConntrackFull)),
    }
}

/// Checks the IPv4 and transport headers (of a packet whose header length
/// the parse stage found to be `ihl`, 0 when not sane) and reads the
/// 5-tuple.
#[inline]
fn tuple(ip: Ipv4<&[u8]>, ihl: usize) -> Result<Tuple, DropReason> {
    let Some(total) = ip.total_within(ihl).filter(|_| ihl >= ipv4::MIN_LEN) else {
        return Err(DropReason::Malformed);
    };
    if ip.is_fragment() {
        return Err(DropReason::IpFragment);
    }
    let proto = ip.protocol();
    let seg = ip.payload(ihl, total);
    let (sport, dport, flags) = if proto == tcp::PROTO {
        match Tcp::new(seg) {
            Some(t) if t.header_len() >= tcp::MIN_LEN && t.header_len() <= seg.len() => {
                (t.sport(), t.dport(), Some(t.flags()))
            }
            _ => return Err(DropReason::Malformed),
        }
    } else {
        match Udp::new(seg) {
            Some(u) if u.len() == seg.len() => (u.sport(), u.dport(), None),
            _ => return Err(DropReason::Malformed),
        }
    };
    if dport == 0 || sport == 0 {
        return Err(DropReason::Malformed);
    }
    Ok(Tuple {
        ihl,
        total,
        proto,
        src: ip.src(),
        dst: ip.dst(),
        sport,
        dport,
        flags,
    })
}

/// The endpoint for a new flow: the client's affinity endpoint if it may
/// still take new flows, else Maglev's pick for the 5-tuple.
#[inline]
fn choose(svc: &Service, key: u128, client: u32, cx: &Ctx<'_>) -> Option<u64> {
    if svc.affinity_ms.is_some()
        && let Some(b) = cx.conntrack.affinity(svc.key(), client, cx.now)
        && svc.takes_new_flows(b)
    {
        return Some(b);
    }
    svc.pick(tuple_hash(key))
}

/// A fixed hash of the 5-tuple (the same on every worker, node and run).
#[inline]
pub fn tuple_hash(key: u128) -> u64 {
    let mut h = (key as u64) ^ ((key >> 64) as u64).rotate_left(29);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Rewrites the packet's addresses and ports to `nat`.
#[inline]
fn translate(p: &mut Pkt, t: &Tuple, nat: Nat, cx: &mut Ctx<'_>) {
    if nat.src == t.src && nat.sport == t.sport && nat.dst == t.dst && nat.dport == t.dport {
        return;
    }
    let frame = cx.pool.data_mut(p.addr, p.len);
    l4::ipv4_nat(
        &mut frame[ETH_LEN..],
        t.ihl,
        (nat.src, nat.sport),
        (nat.dst, nat.dport),
        p.gso.csum_partial(),
    );
}

/// Refuses a packet to a Service without endpoints (or a VIP port no
/// Service has): a TCP reset, or ICMP port unreachable, back where it came
/// from (its ingress port, or the VXLAN tunnel); counted as `no_endpoints`.
/// Resets, frames to a group MAC and packets from unspecified, broadcast or
/// multicast sources are never answered, and answers are rate-limited with
/// the router's ICMP errors.
fn refuse(p: &mut Pkt, t: &Tuple, cx: &mut Ctx<'_>) -> Verdict {
    let reason = DropReason::NoEndpoints;
    let is_rst = t
        .flags
        .is_some_and(|f| f & crate::services::conntrack::tcp_flags::RST != 0);
    // As for the router's ICMP errors (RFC 1812 4.3.2.7): nothing sent to
    // a group MAC, or from an unspecified, broadcast or multicast source,
    // is answered.
    let bad_source = t.src == 0 || t.src >> 28 >= 0xe;
    if is_rst || bad_source || p.dst & GROUP_BIT != 0 || !cx.resolver.icmp_allowed(cx.now) {
        return Verdict::Drop(reason);
    }
    cx.counters.port(p.in_port).drop(reason, 1);
    let router_mac = cx.snap.l3.router_mac;
    let frame = cx.pool.frame_mut(p.addr);
    let len = if t.flags.is_some() {
        l4::tcp_rst_in_place(frame, t.ihl, t.total, p.src, router_mac)
    } else {
        ipv4::icmp_error_in_place(
            frame,
            t.total,
            p.src,
            router_mac,
            Ipv4Addr::from(t.dst),
            icmp::DEST_UNREACHABLE,
            icmp::PORT_UNREACHABLE,
            0,
        )
    };
    p.len = len as u32;
    p.gso = Gso::NONE;
    let dst = p.src;
    p.src = router_mac;
    p.dst = dst;
    p.l4 = (ETH_LEN + ipv4::MIN_LEN) as u16;
    // Routing sends it back out of the ingress port, or into the tunnel it
    // came through.
    Verdict::Reply
}
