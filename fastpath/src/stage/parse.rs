//! Parse the Ethernet header.
//!
//! Fills each frame's destination and source MAC and EtherType. Frames too short for an
//! Ethernet header are `runt`; longer than the largest frame a port may
//! carry, `malformed`; with a group or all-zero source address,
//! `invalid_src_mac`.

use etherparse::Ethernet2Slice;

use crate::batch::{Batch, Verdict};
use crate::drop::DropReason;
use crate::mac_key;
use crate::pool::{FRAME_CAPACITY, FramePool};

/// The group (multicast) bit of a [`crate::MacKey`].
pub const GROUP_BIT: u64 = 1 << 40;

/// Parses every frame of the batch.
#[inline]
pub fn run(batch: &mut Batch, pool: &FramePool) {
    for p in batch.pkts_mut() {
        if p.len > FRAME_CAPACITY {
            p.verdict = Verdict::Drop(DropReason::Malformed);
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Pkt;

    fn batch_of(pool: &mut FramePool, frames: &[&[u8]]) -> Batch {
        let mut b = Batch::new();
        for f in frames {
            let (addr, len) = pool.write_frame(f).unwrap();
            b.push(Pkt::new(addr, len, 0));
        }
        b
    }

    #[test]
    fn extracts_macs_and_flags_bad_frames() {
        let mut pool = FramePool::heap(8);
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
        let mut b = batch_of(&mut pool, &[&good, &mcast_src, &zero_src, &runt, &[]]);
        run(&mut b, &pool);
        let p = b.pkts();
        assert_eq!(p[0].verdict, Verdict::Pending);
        assert_eq!(p[0].dst, 0x0200_0000_0002);
        assert_eq!(p[0].src, 0x0200_0000_0001);
        assert_eq!(p[1].verdict, Verdict::Drop(DropReason::InvalidSrcMac));
        assert_eq!(p[2].verdict, Verdict::Drop(DropReason::InvalidSrcMac));
        assert_eq!(p[3].verdict, Verdict::Drop(DropReason::Runt));
        assert_eq!(p[4].verdict, Verdict::Drop(DropReason::Runt));
    }

    #[test]
    fn oversize_is_malformed() {
        let mut pool = FramePool::heap(1);
        let mut b = Batch::new();
        let addr = pool.alloc().unwrap();
        b.push(Pkt::new(addr, FRAME_CAPACITY + 1, 0));
        run(&mut b, &pool);
        assert_eq!(b.pkts()[0].verdict, Verdict::Drop(DropReason::Malformed));
    }
}
