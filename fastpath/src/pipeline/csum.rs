//! Find partial TCP and UDP checksums.
//!
//! A pod on a veth pair sends with the kernel's default offloads: its stack
//! leaves the TCP and UDP checksum to the "hardware" (`CHECKSUM_PARTIAL`:
//! the field holds the sum of the pseudo-header only) and the veth hands
//! the frame to XDP as it is. Through a kernel bridge the skb's checksum
//! state travels with the frame; through AF_XDP it is lost, and the
//! receiver would drop the segment (`TcpInCsumErrors`). On ports whose
//! frames may be such (`PortEntry::finish_csum`: AF_XDP on a virtual
//! interface), this stage marks them [partial](Gso::partial), reading
//! headers only: the checksum is left to the port the frame leaves by, as
//! the kernel leaves it to the NIC. A port that takes partial checksums
//! (`PortEntry::tx_csum`: an AF_XDP socket that asks the kernel through TX
//! metadata, a TAP with offloads) gets the frame as it is; for any other,
//! or before VXLAN encapsulation, the output step completes it in software
//! ([`crate::gso::complete`]).
//!
//! A frame is partial when its field holds exactly the pseudo-header sum
//! (never 0, which a sender's stack does not write). A complete checksum
//! that happens to equal that sum comes out of completion unchanged (in
//! ones' complement, completing a field that holds the sum `P` with the
//! rest `R` summing to `-2P` writes `P` again), so the mark needs no pass
//! over the payload. IPv4 fragments, IPv6 extension headers and UDP over
//! IPv4 without a checksum are left alone. Runs before anything rewrites
//! addresses or ports (the Service stage keeps a partial checksum partial).

use crate::batch::Batch;
use crate::ctx::Ctx;
use crate::gso::Gso;
use crate::wire::ETH_LEN;
use crate::wire::checksum::{fold, halves, sum};
use crate::wire::ipv4::Ipv4;
use crate::wire::ipv6::{self, Ipv6};
use crate::wire::l4::{tcp, udp};
use crate::wire::{self, ETHERTYPE_IPV4, ETHERTYPE_IPV6, read_u16};

/// Marks the batch's frames whose checksum is partial, if their port (a
/// batch comes from one port) may send them.
#[inline]
pub fn run(batch: &mut Batch, cx: &mut Ctx<'_>) {
    let Some(first) = batch.pkts().first() else {
        return;
    };
    if !cx.snap.port(first.in_port).is_some_and(|e| e.finish_csum) {
        return;
    }
    let pool = &*cx.pool;
    let mut any = false;
    for p in batch.pkts_mut() {
        if p.alive()
            && p.gso == Gso::NONE
            && let Some(g) = mark(pool.data(p.addr, p.len), p.ethertype)
        {
            p.gso = g;
            any = true;
        }
    }
    if any {
        // The output step must look at where each frame goes.
        batch.set_big();
    }
}

/// The [partial](Gso::partial) marking of `frame` if its TCP or UDP
/// checksum field holds the pseudo-header sum.
pub fn mark(frame: &[u8], ethertype: u16) -> Option<Gso> {
    let ip = wire::payload(frame);
    let (pseudo, proto, start, end) = match ethertype {
        ETHERTYPE_IPV4 => {
            let v = Ipv4::new(ip)?;
            let (ihl, total) = v.lengths()?;
            if v.is_fragment() {
                return None;
            }
            let proto = v.protocol();
            let len = (total - ihl) as u32;
            let pseudo = halves(v.src()) + halves(v.dst()) + u32::from(proto) + len;
            (pseudo, proto, ihl, total)
        }
        ETHERTYPE_IPV6 => {
            let v = Ipv6::new(ip)?;
            let total = v.total_len()?;
            let proto = v.next_header();
            let len = (total - ipv6::HDR_LEN) as u32;
            let addrs = &v.bytes()[ipv6::SRC..ipv6::DST + 16];
            let pseudo = sum(addrs, u32::from(proto) + len);
            (pseudo, proto, ipv6::HDR_LEN, total)
        }
        _ => return None,
    };
    let seg = &ip[start..end];
    let (at, min) = match proto {
        tcp::PROTO => (tcp::CHECKSUM, tcp::MIN_LEN),
        udp::PROTO => (udp::CHECKSUM, udp::HDR_LEN),
        _ => return None,
    };
    if seg.len() < min {
        return None;
    }
    // The pseudo-header sum, as the sender's stack left it (folded, not
    // complemented; 0 and 0xffff are the same sum, and a stack writes a
    // non-zero one).
    let marker = !fold(pseudo);
    let field = read_u16(seg, at);
    let partial = field != 0 && (field == marker || (field == 0xffff && marker == 0));
    partial.then(|| Gso::partial((ETH_LEN + start) as u16, proto == udp::PROTO))
}

/// Completes `frame`'s TCP or UDP checksum if it is partial; returns
/// whether it did.
#[cfg(test)]
pub fn finish(frame: &mut [u8], ethertype: u16) -> bool {
    mark(frame, ethertype).is_some_and(|g| crate::gso::complete(frame, g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_frames::{partial_of, v4, v6, verifies};
    use crate::wire::ETH_LEN;

    #[test]
    fn partial_checksums_are_completed_for_both_families_and_protocols() {
        for tcp in [true, false] {
            for payload in [&b""[..], b"x", b"an odd-length payload!", &[0xff; 1400]] {
                for make in [v4, v6] {
                    let good = make(tcp, payload);
                    let (at, partial) = partial_of(&good);
                    let mut f = good.clone();
                    f[at..at + 2].copy_from_slice(&partial.to_be_bytes());
                    assert!(!verifies(&f));
                    let ethertype = u16::from_be_bytes([f[12], f[13]]);
                    assert!(finish(&mut f, ethertype), "tcp {tcp} len {}", payload.len());
                    assert!(verifies(&f));
                    assert_eq!(f, good, "completed as the sender's stack would");
                }
            }
        }
    }

    #[test]
    fn partial_checksums_are_marked_where_their_field_is() {
        for tcp in [true, false] {
            for make in [v4, v6] {
                let good = make(tcp, b"payload");
                let (at, partial) = partial_of(&good);
                let mut f = good.clone();
                f[at..at + 2].copy_from_slice(&partial.to_be_bytes());
                let ethertype = u16::from_be_bytes([f[12], f[13]]);
                let g = mark(&f, ethertype).expect("partial");
                let (start, offset) = g.csum_at();
                assert_eq!(usize::from(start + offset), at);
                assert_eq!(mark(&good, ethertype), None, "complete");
            }
        }
        // UDP over IPv4 without a checksum: never partial, whatever the
        // pseudo-header sums to.
        let mut f = v4(false, b"x");
        let (at, _) = partial_of(&f);
        f[at..at + 2].copy_from_slice(&[0, 0]);
        assert_eq!(mark(&f, ETHERTYPE_IPV4), None);
    }

    #[test]
    fn a_complete_checksum_equal_to_the_pseudo_header_sum_completes_to_itself() {
        // The payload word that makes the right checksum equal the
        // pseudo-header sum: such a frame is marked partial (the mark reads
        // no payload), and completing it must give it back unchanged.
        let (good, at) = (0..=u16::MAX)
            .find_map(|w| {
                let f = v4(true, &w.to_be_bytes());
                let (at, partial) = partial_of(&f);
                (f[at..at + 2] == partial.to_be_bytes()).then_some((f, at))
            })
            .expect("some payload word gives that checksum");
        assert!(verifies(&good));
        let g = mark(&good, ETHERTYPE_IPV4).expect("looks partial");
        let mut f = good.clone();
        assert!(crate::gso::complete(&mut f, g));
        assert_eq!(f, good, "checksum at {at} changed");
    }

    #[test]
    fn right_wrong_and_absent_checksums_are_left_alone() {
        for make in [v4, v6] {
            let mut f = make(true, b"hello");
            let ethertype = u16::from_be_bytes([f[12], f[13]]);
            let before = f.clone();
            assert!(!finish(&mut f, ethertype), "a right checksum");
            let (at, _) = partial_of(&f);
            f[at] ^= 0x55;
            let wrong = f.clone();
            assert!(!finish(&mut f, ethertype), "a wrong one");
            assert_eq!(f, wrong);
            assert_ne!(f, before);
        }
        // UDP over IPv4 without a checksum.
        let mut f = v4(false, b"hello");
        let (at, _) = partial_of(&f);
        f[at..at + 2].copy_from_slice(&[0, 0]);
        let before = f.clone();
        assert!(!finish(&mut f, ETHERTYPE_IPV4));
        assert_eq!(f, before);
    }

    #[test]
    fn fragments_short_and_foreign_frames_are_left_alone() {
        let mut f = v4(true, b"hello");
        let (at, partial) = partial_of(&f);
        f[at..at + 2].copy_from_slice(&partial.to_be_bytes());
        // More fragments follow: the checksum covers what is not here.
        let mut frag = f.clone();
        frag[ETH_LEN + 6] |= 0x20;
        assert!(!finish(&mut frag, ETHERTYPE_IPV4));
        // Cut short: the IP total length no longer fits.
        let mut cut = f[..f.len() - 1].to_vec();
        assert!(!finish(&mut cut, ETHERTYPE_IPV4));
        // Garbage of every length: nothing panics.
        for len in 0..80 {
            let mut g: Vec<u8> = (0..len).map(|i| (i * 37) as u8).collect();
            finish(&mut g, ETHERTYPE_IPV4);
            finish(&mut g, ETHERTYPE_IPV6);
        }
        // ARP and friends.
        assert!(!finish(&mut f.clone(), 0x0806));
    }
}
