//! Parse the Ethernet header.
//!
//! Fills each frame's destination and source MAC and EtherType. Frames too short for an
//! Ethernet header are `runt`; longer than their buffer (cut short by the
//! port), `malformed`; with a group or all-zero source address,
//! `invalid_src_mac`; with a virtio-net header their TAP port refused,
//! `bad_offload`.

use etherparse::Ethernet2Slice;

use crate::batch::{Batch, Pkt, Verdict};
use crate::ctx::Ctx;
use crate::drop::DropReason;
use crate::mac_key;
use crate::pool::{FRAME_CAPACITY, FramePool};
use crate::wire::{GROUP_BIT, l4_offset};

/// Parses every frame of the batch.
#[inline]
pub fn run(batch: &mut Batch, cx: &mut Ctx<'_>) {
    // Only the L3 stages read the transport offset: a switch that only
    // switches does not pay for it (a few nanoseconds of a ~17 ns frame),
    // not even for the test, which is made once per batch. Likewise only a
    // batch from a port with offloads checks for big and GSO frames.
    match (cx.snap.l3.enabled(), batch.may_be_big()) {
        (true, false) => parse_all::<true, false>(batch.pkts_mut(), cx.pool),
        (false, false) => parse_all::<false, false>(batch.pkts_mut(), cx.pool),
        (true, true) => parse_all::<true, true>(batch.pkts_mut(), cx.pool),
        (false, true) => parse_all::<false, true>(batch.pkts_mut(), cx.pool),
    }
}

#[inline(always)]
fn parse_all<const L4: bool, const BIG: bool>(pkts: &mut [Pkt], pool: &FramePool) {
    for p in pkts {
        // A frame longer than its buffer was cut short by the port.
        let fits = if BIG {
            pool.data(p.addr, p.len).len() == p.len as usize
        } else {
            p.len <= FRAME_CAPACITY
        };
        if !fits {
            p.verdict = Verdict::Drop(DropReason::Malformed);
            continue;
        }
        if BIG && p.gso.is_invalid() {
            p.verdict = Verdict::Drop(DropReason::BadOffload);
            continue;
        }
        let Ok(eth) = Ethernet2Slice::from_slice_without_fcs(pool.data(p.addr, p.len)) else {
            p.verdict = Verdict::Drop(DropReason::Runt);
            continue;
        };
        p.dst = mac_key(&eth.destination());
        p.src = mac_key(&eth.source());
        p.ethertype = eth.ether_type().0;
        if p.src & GROUP_BIT != 0 || p.src == 0 {
            p.verdict = Verdict::Drop(DropReason::InvalidSrcMac);
            continue;
        }
        if L4 {
            p.l4 = l4_offset(p.ethertype, eth.payload_slice());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    use crate::ctx::TestParts;
    use crate::l3::table::{NextHop, RouteTable};
    use crate::snapshot::L3Config;
    use crate::wire::ETH_LEN;

    fn batch_of(parts: &mut TestParts, frames: &[&[u8]]) -> Batch {
        let mut b = Batch::new();
        for f in frames {
            let (addr, len) = parts.pool.write_frame(f).unwrap();
            b.push(Pkt::new(addr, len, 0));
        }
        b
    }

    #[test]
    fn extracts_macs_and_flags_bad_frames() {
        let mut parts = TestParts::new(8);
        let good = [
            [0x02, 0, 0, 0, 0, 2].as_slice(),
            &[0x02, 0, 0, 0, 0, 1],
            &[0x08, 0x00],
            &[0; 46],
        ]
        .concat();
        let mcast_src = [
            [0xff; 6].as_slice(),
            &[0x01, 0, 0x5e, 0, 0, 1],
            &[0x08, 0x00],
        ]
        .concat();
        let zero_src = [[0xff; 6].as_slice(), &[0; 6], &[0x08, 0x00]].concat();
        let runt = [0u8; 13];
        let mut b = batch_of(&mut parts, &[&good, &mcast_src, &zero_src, &runt, &[]]);
        run(&mut b, &mut parts.cx());
        let p = b.pkts();
        assert_eq!(p[0].verdict, Verdict::Pending);
        assert_eq!(p[0].dst, 0x0200_0000_0002);
        assert_eq!(p[0].src, 0x0200_0000_0001);
        // Version 0 in the IPv4 header: no transport offset recorded.
        assert_eq!(p[0].l4, 0);
        assert_eq!(p[1].verdict, Verdict::Drop(DropReason::InvalidSrcMac));
        assert_eq!(p[2].verdict, Verdict::Drop(DropReason::InvalidSrcMac));
        assert_eq!(p[3].verdict, Verdict::Drop(DropReason::Runt));
        assert_eq!(p[4].verdict, Verdict::Drop(DropReason::Runt));
    }

    #[test]
    fn records_where_the_transport_header_starts() {
        let eth = [[0x02, 0, 0, 0, 0, 2].as_slice(), &[0x02, 0, 0, 0, 0, 1]].concat();
        let ip4 = |ver_ihl: u8| {
            let mut f = [eth.as_slice(), &[0x08, 0x00], &[0; 60]].concat();
            f[ETH_LEN] = ver_ihl;
            f
        };
        let v6 = [eth.as_slice(), &[0x86, 0xdd], &[0x60], &[0; 39]].concat();
        let short_v6 = [eth.as_slice(), &[0x86, 0xdd], &[0x60], &[0; 38]].concat();
        let arp = [eth.as_slice(), &[0x08, 0x06], &[0; 28]].concat();
        let frames = [
            ip4(0x45),
            ip4(0x4f),
            ip4(0x44),
            ip4(0x65),
            v6,
            short_v6,
            arp,
        ];
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let mut parts = TestParts::new(16);
        // A switch that only switches records nothing.
        let mut b = batch_of(&mut parts, &refs);
        run(&mut b, &mut parts.cx());
        assert!(b.pkts().iter().all(|p| p.l4 == 0));
        // One that routes records every offset.
        let mut routes = RouteTable::default();
        routes.insert(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 8, NextHop::Local);
        routes.freeze();
        parts.snap.l3 = Arc::new(L3Config {
            routes,
            ..L3Config::default()
        });
        let mut b = batch_of(&mut parts, &refs);
        run(&mut b, &mut parts.cx());
        let l4: Vec<u16> = b.pkts().iter().map(|p| p.l4).collect();
        // IHL 5 and 15, IHL 4 (too short), version 6 in an IPv4 frame,
        // IPv6, IPv6 one byte short, ARP.
        assert_eq!(l4, [34, 74, 0, 0, 54, 0, 0]);
    }

    #[test]
    fn oversize_is_malformed() {
        let mut parts = TestParts::new(1);
        let mut b = Batch::new();
        let addr = parts.pool.alloc().unwrap();
        b.push(Pkt::new(addr, FRAME_CAPACITY + 1, 0));
        run(&mut b, &mut parts.cx());
        assert_eq!(b.pkts()[0].verdict, Verdict::Drop(DropReason::Malformed));
    }
}
