//! ICMP errors about Service flows, translated as Linux NAT does.

use crate::batch::Pkt;
use crate::ctx::Ctx;
use crate::services::conntrack::{Hit, flow_key};
use crate::services::l4::{self, tcp, udp};
use crate::wire::{self, ETH_LEN, ipv4, read_u16, read_u32};

/// Translates an ICMP error (destination unreachable, time exceeded,
/// parameter problem) about a packet of a Service flow, as Linux NAT does:
/// the quoted packet becomes what its sender sent (client → VIP:port for
/// an error about the original direction, endpoint → client for one about
/// a reply), and the outer addresses follow (the error goes to the client
/// or the endpoint; an error sent by the endpoint comes from the VIP).
/// Anything else is left as it is. Used for errors from endpoints and
/// clients and for the router's own errors about translated packets.
pub(crate) fn translate_error(p: &mut Pkt, cx: &mut Ctx<'_>) {
    const ICMP_HDR: usize = 8;
    let now = cx.now;
    let frame = cx.pool.data(p.addr, p.len);
    if frame.len() < ETH_LEN + ipv4::MIN_LEN {
        return;
    }
    let ip = &frame[ETH_LEN..];
    // The outer header's length as the parse stage found it (0: not sane).
    let ihl = usize::from(p.l4).saturating_sub(ETH_LEN);
    let total = usize::from(read_u16(ip, ipv4::TOTAL_LEN));
    if p.l4 == 0
        || ip[0] >> 4 != 4
        || total > ip.len()
        || total < ihl + ICMP_HDR + ipv4::MIN_LEN + 4
        || ip[ipv4::PROTO] != ipv4::PROTO_ICMP
        || !matches!(ip[ihl], 3 | 11 | 12)
    {
        return;
    }
    let inner = ihl + ICMP_HDR;
    let iihl = usize::from(ip[inner] & 0x0f) * 4;
    let iproto = ip[inner + ipv4::PROTO];
    if ip[inner] >> 4 != 4
        || iihl < ipv4::MIN_LEN
        || inner + iihl + 4 > total
        || (iproto != tcp::PROTO && iproto != udp::PROTO)
    {
        return;
    }
    let (isrc, idst) = (
        read_u32(ip, inner + ipv4::SRC),
        read_u32(ip, inner + ipv4::DST),
    );
    let l4 = inner + iihl;
    let (isport, idport) = (read_u16(ip, l4 + l4::SPORT), read_u16(ip, l4 + l4::DPORT));
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
    let (osrc, odst) = (read_u32(ip, ipv4::SRC), read_u32(ip, ipv4::DST));
    let frame = cx.pool.data_mut(p.addr, p.len);
    let ip = &mut frame[ETH_LEN..ETH_LEN + total];
    // The quote: client → VIP, with its header (and, when quoted, transport)
    // checksum kept right.
    let quote = &mut ip[inner..];
    let seg_len = quote.len() - iihl;
    let csum_at = match iproto {
        tcp::PROTO if seg_len >= tcp::CHECKSUM + 2 => Some(iihl + tcp::CHECKSUM),
        udp::PROTO
            if seg_len >= udp::CHECKSUM + 2 && read_u16(quote, iihl + udp::CHECKSUM) != 0 =>
        {
            Some(iihl + udp::CHECKSUM)
        }
        _ => None,
    };
    let old = [isrc, idst, u32::from(isport), u32::from(idport)];
    let new = [nat.dst, nat.src, u32::from(nat.dport), u32::from(nat.sport)];
    l4::rewrite_addrs(quote, 0, isrc, idst, nat.dst, nat.src);
    if let Some(at) = csum_at {
        l4::adjust_checksum(quote, at, &old, &new);
    }
    wire::write_u16(quote, iihl + l4::SPORT, nat.dport);
    wire::write_u16(quote, iihl + l4::DPORT, nat.sport);
    // The outer header.
    let nsrc = if osrc == idst { nat.src } else { osrc };
    let ndst = if odst == isrc { nat.dst } else { odst };
    l4::rewrite_addrs(ip, 0, osrc, odst, nsrc, ndst);
    // The ICMP checksum covers the whole message: computed again.
    wire::write_u16(ip, ihl + 2, 0);
    let c = wire::checksum(&ip[ihl..total]);
    wire::write_u16(ip, ihl + 2, c);
}
