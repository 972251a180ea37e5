//! ICMP errors about Service flows, translated as Linux NAT does.

use crate::batch::Pkt;
use crate::ctx::Ctx;
use crate::services::conntrack::{Hit, flow_key};
use crate::services::l4::adjust_checksum;
use crate::wire::icmp::{self, Icmp};
use crate::wire::ipv4::{self, Ipv4};
use crate::wire::l4::{self, tcp, udp};
use crate::wire::{self, ETH_LEN, read_u16, write_u16};

/// Translates an ICMP error (destination unreachable, time exceeded,
/// parameter problem) about a packet of a Service flow, as Linux NAT does:
/// the quoted packet becomes what its sender sent (client → VIP:port for
/// an error about the original direction, endpoint → client for one about
/// a reply), and the outer addresses follow (the error goes to the client
/// or the endpoint; an error sent by the endpoint comes from the VIP).
/// Anything else is left as it is. Used for errors from endpoints and
/// clients and for the router's own errors about translated packets.
pub(crate) fn translate_error(p: &mut Pkt, cx: &mut Ctx<'_>) {
    let now = cx.now;
    let frame = cx.pool.data(p.addr, p.len);
    // The outer header's length as the parse stage found it (0: not sane).
    let ihl = usize::from(p.l4).saturating_sub(ETH_LEN);
    let Some(ip) = Ipv4::new(wire::payload(frame)).filter(|ip| ip.version() == 4 && ihl != 0)
    else {
        return;
    };
    let Some(total) = ip.total_within(ihl) else {
        return;
    };
    if total < ihl + icmp::HDR_LEN + ipv4::MIN_LEN + 4 || ip.protocol() != ipv4::PROTO_ICMP {
        return;
    }
    let Some(msg) =
        Icmp::new(ip.payload(ihl, total)).filter(|m| icmp::quotes_a_packet(m.msg_type()))
    else {
        return;
    };
    // The quoted header, and at least the ports after it.
    let Some(quote) = Ipv4::new(msg.body()) else {
        return;
    };
    let (iihl, iproto) = (quote.header_len(), quote.protocol());
    if quote.version() != 4
        || iihl < ipv4::MIN_LEN
        || iihl + 4 > msg.body().len()
        || (iproto != tcp::PROTO && iproto != udp::PROTO)
    {
        return;
    }
    let (isrc, idst) = (quote.src(), quote.dst());
    let ports = &msg.body()[iihl..];
    let (isport, idport) = (read_u16(ports, l4::SPORT), read_u16(ports, l4::DPORT));
    // Reversed, the quote is the tuple of the flow's other direction as it
    // arrives: a reply record if the quoted packet went client → endpoint,
    // an original one if it was a reply. Either record's translation,
    // applied the other way round, gives back what the sender of the quoted
    // packet sent.
    let key = flow_key(idst, isrc, idport, isport, iproto);
    let nat = match cx.conntrack.peek(key, false, now) {
        Some(Hit::Reply { nat }) | Some(Hit::Orig { nat, .. }) => nat,
        None => match cx.conntrack.peek(key, true, now) {
            Some(Hit::Orig { nat, .. }) | Some(Hit::Reply { nat }) => nat,
            None => return,
        },
    };
    let (osrc, odst) = (ip.src(), ip.dst());
    let frame = cx.pool.data_mut(p.addr, p.len);
    let (outer, msg) = wire::payload_mut(frame)[..total].split_at_mut(ihl);
    // The quote: client → VIP, with its header (and, when quoted, transport)
    // checksum kept right.
    let (quote, seg) = msg[icmp::HDR_LEN..].split_at_mut(iihl);
    let csum_at = match iproto {
        tcp::PROTO if seg.len() >= tcp::CHECKSUM + 2 => Some(tcp::CHECKSUM),
        udp::PROTO if seg.len() >= udp::HDR_LEN && read_u16(seg, udp::CHECKSUM) != 0 => {
            Some(udp::CHECKSUM)
        }
        _ => None,
    };
    let old = [isrc, idst, u32::from(isport), u32::from(idport)];
    let new = [nat.dst, nat.src, u32::from(nat.dport), u32::from(nat.sport)];
    Ipv4::new(quote)
        .expect("checked above")
        .set_addrs(nat.dst, nat.src);
    if let Some(at) = csum_at {
        adjust_checksum(seg, at, &old, &new);
    }
    write_u16(seg, l4::SPORT, nat.dport);
    write_u16(seg, l4::DPORT, nat.sport);
    // The outer header.
    let nsrc = if osrc == idst { nat.src } else { osrc };
    let ndst = if odst == isrc { nat.dst } else { odst };
    Ipv4::new(outer)
        .expect("checked above")
        .set_addrs(nsrc, ndst);
    // The ICMP checksum covers the whole message: computed again.
    Icmp::new(msg).expect("checked above").fill_checksum();
}
