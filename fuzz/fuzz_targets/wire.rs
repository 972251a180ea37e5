//! The typed views over frame bytes (`fastpath::wire`), the one-line
//! description and the `--filter` language: any bytes, any accessor.
//!
//! Invariants: nothing panics; each setter of a checksummed IPv4 header
//! field keeps a header whose checksum verified verifying (the incremental
//! update agrees with a full recomputation).

#![no_main]

use fastpath::observe::{Filter, describe::describe};
use fastpath::wire::arp::Arp;
use fastpath::wire::icmp::Icmp;
use fastpath::wire::ipv4::Ipv4;
use fastpath::wire::ipv6::Ipv6;
use fastpath::wire::l4::{Tcp, Udp};
use fastpath::wire::nd::Nd;
use fastpath::wire::vxlan::Vxlan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, b)) = data.split_first() else {
        return;
    };
    let _ = describe(b);
    if let Ok(f) = Filter::parse(&String::from_utf8_lossy(&b[..b.len().min(64)])) {
        let _ = f.matches(b);
    }
    if let Some(ip) = Ipv4::new(b) {
        let _ = (
            ip.version(),
            ip.ttl(),
            ip.protocol(),
            ip.src(),
            ip.dst(),
            ip.flags_frag(),
        );
        let _ = (ip.is_fragment(), ip.dont_fragment(), ip.total_len());
        if let Some((ihl, total)) = ip.lengths() {
            let seg = ip.payload(ihl, total);
            if let Some(t) = Tcp::new(seg) {
                let _ = (
                    t.sport(),
                    t.dport(),
                    t.seq(),
                    t.ack(),
                    t.header_len(),
                    t.flags(),
                    t.checksum(),
                );
            }
            if let Some(u) = Udp::new(seg) {
                let _ = (u.sport(), u.dport(), u.len(), u.checksum(), u.payload());
            }
            if let Some(i) = Icmp::new(seg) {
                let _ = (i.msg_type(), i.code(), i.rest(), i.body());
            }
            if ip.checksum_ok(ihl) {
                let mut copy = b[..total].to_vec();
                let mut w = Ipv4::new(&mut copy[..]).unwrap();
                match sel % 4 {
                    0 if w.ttl() > 1 => w.decrement_ttl(),
                    1 => w.set_ttl(sel),
                    2 => w.swap_addrs(),
                    _ => {
                        let _ = w.set_addrs(u32::from(sel) * 0x0101_0101, !w.src());
                    }
                }
                assert!(
                    Ipv4::new(&copy[..]).unwrap().checksum_ok(ihl),
                    "setter {} broke the header checksum",
                    sel % 4
                );
            }
        }
    }
    if let Some(ip) = Ipv6::new(b) {
        let _ = (
            ip.version(),
            ip.payload_len(),
            ip.total_len(),
            ip.next_header(),
        );
        let _ = (ip.hop_limit(), ip.src(), ip.dst(), ip.payload());
        if let Some(nd) = Nd::new(ip.payload()) {
            let _ = (
                nd.msg_type(),
                nd.code(),
                nd.target(),
                nd.link_layer_option(),
            );
        }
    }
    if let Some(a) = Arp::new(b) {
        let _ = (a.is_ethernet_ipv4(), a.oper(), a.sha(), a.spa(), a.tpa());
    }
    if let Some(v) = Vxlan::new(b) {
        let _ = (v.has_vni(), v.vni());
    }
});
