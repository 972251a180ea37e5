//! ARP.
//!
//! Runs only while the switch routes (it has addresses or routes). For
//! Every ARP frame the sender's address is reported to the controller as a
//! neighbour. Requests for one of the switch's addresses are answered in
//! place (the frame becomes the reply and goes back out the ingress port),
//! and so is every request arriving on the host port: the node's kernel
//! reaches all pods through the switch (proxy ARP). Replies addressed to
//! the switch are consumed. Other ARP frames on the pod bridge are left to
//! L2; on routed ports (uplink) they are not the switch's business and are
//! consumed. A frame that is not Ethernet/IPv4 ARP is `malformed`.

use std::net::{IpAddr, Ipv4Addr};

use crate::batch::{Batch, Verdict};
use crate::ctx::Ctx;
use crate::drop::DropReason;
use crate::l3::table::NextHop;
use crate::snapshot::PortRole;
use crate::wire::arp::{self, Arp};
use crate::wire::{self, ETHERTYPE_ARP, write_macs};

/// Handles every pending ARP frame of the batch.
#[inline]
pub fn run(batch: &mut Batch, cx: &mut Ctx<'_>) {
    let (snap, pool, resolver, now) = (cx.snap, &mut *cx.pool, &mut *cx.resolver, cx.now);
    let l3 = &*snap.l3;
    if !l3.enabled() {
        return;
    }
    for p in batch.pkts_mut() {
        if !p.pending() || p.ethertype != ETHERTYPE_ARP {
            continue;
        }
        let role = snap.port(p.in_port).map_or(PortRole::Pod, |e| e.role);
        let frame = pool.data_mut(p.addr, p.len);
        let Some(mut a) = Arp::new(wire::payload_mut(frame)).filter(|a| a.is_ethernet_ipv4())
        else {
            p.verdict = Verdict::Drop(DropReason::Malformed);
            continue;
        };
        let (oper, sha, spa, tpa) = (a.oper(), a.sha(), a.spa(), a.tpa());
        if spa != 0 && sha == p.src && role != PortRole::Host {
            resolver.report(IpAddr::V4(Ipv4Addr::from(spa)), sha, p.in_port, now);
        }
        p.verdict = match oper {
            arp::REQUEST => {
                let ours = matches!(l3.routes.lookup4(tpa), Some(NextHop::Local));
                // The host port gets every address answered (proxy ARP),
                // but not its own duplicate-address probes (sender 0.0.0.0)
                // or announcements (sender = target).
                let proxy = role == PortRole::Host && spa != 0 && spa != tpa;
                if ours || proxy {
                    // The request becomes the reply, in place.
                    a.set(arp::REPLY, l3.router_mac, tpa, sha, spa);
                    write_macs(frame, sha, l3.router_mac);
                    Verdict::Unicast(p.in_port)
                } else if role == PortRole::Pod {
                    Verdict::Pending
                } else {
                    Verdict::Consumed
                }
            }
            arp::REPLY if p.dst == l3.router_mac || role != PortRole::Pod => Verdict::Consumed,
            arp::REPLY => Verdict::Pending,
            _ => Verdict::Drop(DropReason::Malformed),
        };
    }
}
