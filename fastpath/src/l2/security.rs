//! Port security.
//!
//! A pod port declared with addresses (`port add --ip … --mac …`) only lets
//! through frames the pod may send: its own source MAC, IPv4 packets from
//! its IPv4 addresses, ARP whose sender is the pod (or an address probe from
//! 0.0.0.0), IPv6 packets from its IPv6 addresses, a link-local address or
//! the unspecified address (duplicate address detection), and neighbour
//! advertisements only for those addresses. Everything else, other
//! EtherTypes (VLAN tags among them) included, is `spoofed_source`. Ports
//! without declared addresses are not checked.

use crate::batch::{Batch, Verdict};
use crate::ctx::Ctx;
use crate::drop::DropReason;
use crate::snapshot::PortGuard;
use crate::wire::arp::Arp;
use crate::wire::ipv4::Ipv4;
use crate::wire::ipv6::{self, Ipv6};
use crate::wire::nd::Nd;
use crate::wire::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6};

/// Checks every live frame from a guarded port.
#[inline]
pub fn run(batch: &mut Batch, cx: &mut Ctx<'_>) {
    let (snap, pool) = (cx.snap, &*cx.pool);
    // A received batch comes from one port: its guard is looked up once,
    // again only where the port changes (a batch built from several ports,
    // as stage tests do: the worker's batches come from one port).
    let guard_of = |port| snap.port(port).and_then(|e| e.guard.as_deref());
    let Some(first) = batch.pkts().first() else {
        return;
    };
    let (mut port, mut guard) = (first.in_port, guard_of(first.in_port));
    for p in batch.pkts_mut() {
        if p.in_port != port {
            (port, guard) = (p.in_port, guard_of(p.in_port));
        }
        let Some(guard) = guard else {
            continue;
        };
        if !p.alive() {
            continue;
        }
        let verdict = check(guard, p.src, p.ethertype, pool.data(p.addr, p.len));
        if let Some(reason) = verdict {
            p.verdict = Verdict::Drop(reason);
        }
    }
}

/// Why the frame may not pass, if it may not.
#[inline]
fn check(guard: &PortGuard, src: u64, ethertype: u16, frame: &[u8]) -> Option<DropReason> {
    if guard.mac.is_some_and(|m| m != src) {
        return Some(DropReason::SpoofedSource);
    }
    let l3 = wire::payload(frame);
    match ethertype {
        ETHERTYPE_IPV4 => {
            let Some(ip) = Ipv4::new(l3) else {
                return Some(DropReason::Malformed);
            };
            (!guard.v4.contains(&ip.src())).then_some(DropReason::SpoofedSource)
        }
        ETHERTYPE_ARP => {
            let Some(a) = Arp::new(l3) else {
                return Some(DropReason::Malformed);
            };
            let spa = a.spa();
            let sender_ok = a.sha() == src && (spa == 0 || guard.v4.contains(&spa));
            (!sender_ok).then_some(DropReason::SpoofedSource)
        }
        ETHERTYPE_IPV6 => {
            let Some(ip) = Ipv6::new(l3) else {
                return Some(DropReason::Malformed);
            };
            let own = |a: u128| ipv6::is_link_local(a) || guard.v6.contains(&a);
            let ip_src = ip.src();
            if !(ip_src == 0 || own(ip_src)) {
                return Some(DropReason::SpoofedSource);
            }
            // A neighbour advertisement speaks for its target address: the
            // pod may only advertise its own.
            if ip.next_header() == ipv6::PROTO_ICMPV6
                && let Some(nd) = Nd::new(ip.payload())
                && nd.msg_type() == ipv6::NEIGHBOR_ADVERT
                && !own(nd.target())
            {
                return Some(DropReason::SpoofedSource);
            }
            None
        }
        // Anything else (802.1Q or QinQ tags, other protocols) would carry
        // what the checks above never see.
        _ => Some(DropReason::SpoofedSource),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mac_key;
    use crate::wire::{ETH_LEN, arp};
    use etherparse::PacketBuilder;

    const POD_MAC: [u8; 6] = [2, 0, 0, 0, 0, 7];

    fn guard() -> PortGuard {
        PortGuard {
            mac: Some(mac_key(&POD_MAC)),
            v4: vec![0x0af4_0107],
            v6: vec![0xfd00_0000_0000_0000_0000_0000_0000_0007],
        }
    }

    fn ipv4_from(mac: [u8; 6], src: [u8; 4]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(mac, [2, 0, 0, 0, 0, 1])
            .ipv4(src, [10, 244, 1, 1], 64)
            .udp(1, 2)
            .write(&mut out, &[0; 8])
            .unwrap();
        out
    }

    fn ipv6_from(src: [u8; 16]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(POD_MAC, [2, 0, 0, 0, 0, 1])
            .ipv6(src, [0xfd; 16], 64)
            .udp(1, 2)
            .write(&mut out, &[0; 8])
            .unwrap();
        out
    }

    fn arp_from(sha: [u8; 6], spa: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        crate::wire::arp::write(
            &mut f,
            0xffff_ffff_ffff,
            arp::REQUEST,
            mac_key(&sha),
            spa.into(),
            0,
            [10, 244, 1, 1].into(),
        );
        f
    }

    fn verdict(frame: &[u8]) -> Option<DropReason> {
        let src = mac_key(frame[6..12].try_into().unwrap());
        let et = u16::from_be_bytes([frame[12], frame[13]]);
        check(&guard(), src, et, frame)
    }

    /// The guard is looked up once per run of frames from one port: a
    /// batch that mixes ports
    /// still checks each frame against its own port's guard.
    #[test]
    fn each_frame_is_checked_against_its_own_port() {
        use crate::batch::Pkt;
        use crate::ctx::TestParts;
        use crate::l2::fdb::FdbView;
        use crate::snapshot::{PortEntry, Snapshot};
        use std::sync::Arc;

        let mut parts = TestParts::new(8);
        let mut guarded = PortEntry::new(1, 0);
        guarded.guard = Some(Arc::new(guard()));
        parts.snap = Snapshot::build(1, vec![PortEntry::new(0, 0), guarded], FdbView::default());
        let spoof = ipv4_from(POD_MAC, [10, 244, 1, 8]);
        let mut b = Batch::new();
        for port in [1, 0, 0, 1, 1, 0] {
            let (addr, len) = parts.pool.write_frame(&spoof).unwrap();
            let mut p = Pkt::new(addr, len, port);
            p.src = mac_key(&POD_MAC);
            p.ethertype = crate::wire::ETHERTYPE_IPV4;
            b.push(p);
        }
        run(&mut b, &mut parts.cx());
        let dropped: Vec<bool> = b.pkts().iter().map(|p| !p.alive()).collect();
        assert_eq!(dropped, [true, false, false, true, true, false]);
    }

    #[test]
    fn the_pod_itself_passes() {
        assert_eq!(verdict(&ipv4_from(POD_MAC, [10, 244, 1, 7])), None);
        assert_eq!(verdict(&arp_from(POD_MAC, [10, 244, 1, 7])), None);
        assert_eq!(verdict(&arp_from(POD_MAC, [0, 0, 0, 0])), None, "probe");
        let mut own6 = [0u8; 16];
        own6[0] = 0xfd;
        own6[15] = 7;
        assert_eq!(verdict(&ipv6_from(own6)), None);
        let mut ll = [0u8; 16];
        ll[0] = 0xfe;
        ll[1] = 0x80;
        ll[15] = 9;
        assert_eq!(verdict(&ipv6_from(ll)), None, "link-local");
        assert_eq!(verdict(&ipv6_from([0; 16])), None, "DAD");
    }

    #[test]
    fn spoofs_are_caught() {
        let s = Some(DropReason::SpoofedSource);
        assert_eq!(verdict(&ipv4_from(POD_MAC, [10, 244, 1, 8])), s, "other IP");
        assert_eq!(
            verdict(&ipv4_from([2, 0, 0, 0, 0, 8], [10, 244, 1, 7])),
            s,
            "other MAC"
        );
        assert_eq!(
            verdict(&arp_from(POD_MAC, [10, 244, 1, 1])),
            s,
            "ARP for the gateway's IP"
        );
        let mut f = arp_from(POD_MAC, [10, 244, 1, 7]);
        f[ETH_LEN + arp::SHA + 5] = 9;
        assert_eq!(verdict(&f), s, "ARP sender MAC differs from the frame's");
        assert_eq!(verdict(&ipv6_from([0xfd; 16])), s);
        assert_eq!(
            verdict(&ipv4_from(POD_MAC, [10, 244, 1, 7])[..30]),
            Some(DropReason::Malformed)
        );
        // A VLAN tag in front of a spoofed packet: never let through.
        let plain = ipv4_from(POD_MAC, [10, 244, 1, 8]);
        let tagged = [&plain[..12], &[0x81, 0x00, 0x00, 0x07], &plain[12..]].concat();
        assert_eq!(verdict(&tagged), s, "802.1Q");
    }
}
