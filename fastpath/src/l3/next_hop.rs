//! Where a routed packet goes next: the next hop's port (or the bridge),
//! MAC and MTU, with neighbour resolution (an ARP request or neighbour
//! solicitation, and the packet held, when the neighbour is not known),
//! and the TTL/hop-limit decrement. Used by IPv4, IPv6 and VXLAN alike.

use std::net::IpAddr;

use crate::MacKey;
use crate::batch::{Pkt, Verdict};
use crate::ctx::Ctx;
use crate::drop::DropReason;
use crate::gso;
use crate::l3::resolver::Ask;
use crate::l3::table::{Link, NextHop};
use crate::wire::ipv4::Ipv4;
use crate::wire::ipv6::Ipv6;
use crate::wire::{ETH_LEN, ETHERTYPE_IPV6};

/// A neighbour in use is asked again once its confirmation is this old.
const NEIGH_REFRESH_MS: u64 = 30_000;

/// The IP length the MTU check sees: `total`, or for a GSO frame the
/// largest packet it stands for (a GSO frame fits if each of them does);
/// `None` for a GSO frame whose headers do not parse.
#[inline]
pub(crate) fn wire_size(p: &Pkt, total: usize, cx: &Ctx<'_>) -> Option<usize> {
    if p.gso.is_some() {
        gso::segment_ip_len(cx.pool.data(p.addr, p.len), p.gso)
    } else {
        Some(total)
    }
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

/// Where a `Peer` or `Resolve` route sends a packet to `dst`: the verdict,
/// the next hop's MAC and the output MTU (see [`resolve`]).
#[inline(always)]
pub(crate) fn next_hop(
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
