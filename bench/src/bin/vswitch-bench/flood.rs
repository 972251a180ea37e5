//! `flood`: frames a switch must survive, sent as fast as the interface
//! takes them (or at a rate): random source MACs, ARP requests and IPv6
//! neighbour solicitations for the router, TCP SYNs to a Service VIP, and
//! garbage.
//!
//! The frames are built once, before sending, into a pool the send loop
//! cycles through (65,536 frames, 8,192 for garbage, one for `nd`; SYNs
//! take source ports 1,024 to 65,535 in turn, so with one sender address a
//! pool repeats a tuple every 64,512 SYNs): the loop only copies, so the pool's contents, not the generator's speed, decide
//! what the switch sees. Headers and checksums are written by etherparse.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv6Type, PacketBuilder};
use serde::Serialize;

use crate::generator::GenReport;
use crate::nic::{self, BURST, DriverKind, Iface};
use crate::rate::{Pacer, now_ns};
use crate::receiver::{place, where_};

/// What a flood sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Broadcast frames, each from a new random source MAC (the switch's
    /// MAC learning and its per-port limit).
    Macs,
    /// ARP requests for --target (the router's address), each from a random
    /// sender address in --sender-net (default: the interface's own).
    Arp,
    /// IPv6 neighbour solicitations for --target, from the interface's
    /// IPv6 address (its link-local one when it has no other).
    Nd,
    /// TCP SYNs to --target:--dst-port, from source ports counting up (and
    /// random addresses, with --sender-net): new connections for conntrack.
    Syn,
    /// Random bytes of random length up to the MTU, three in four with a
    /// plausible Ethernet, IPv4, IPv6, ARP or VLAN start.
    Garbage,
}

impl Kind {
    /// The name the command line takes (`syn`, `macs`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Macs => "macs",
            Kind::Arp => "arp",
            Kind::Nd => "nd",
            Kind::Syn => "syn",
            Kind::Garbage => "garbage",
        }
    }

    /// Refuses options that mean nothing for this kind, rather than ignore
    /// them.
    pub fn check_options(
        self,
        target: bool,
        dst_port: bool,
        dst_mac: bool,
        sender_net: bool,
    ) -> anyhow::Result<()> {
        let k = self.name();
        let (t, p, m, s) = match self {
            Kind::Macs => (false, false, false, false),
            Kind::Arp => (true, false, false, true),
            Kind::Nd => (true, false, false, false),
            Kind::Syn => (true, true, true, true),
            Kind::Garbage => (false, false, true, false),
        };
        for (given, applies, opt) in [
            (target, t, "--target"),
            (dst_port, p, "--dst-port"),
            (dst_mac, m, "--dst-mac"),
            (sender_net, s, "--sender-net"),
        ] {
            anyhow::ensure!(!given || applies, "{opt} does not apply to --kind {k}");
        }
        Ok(())
    }
}

/// Distinct frames in the pool of every kind but garbage.
const POOL: usize = 65_536;
/// Distinct garbage frames (up to 1,514 bytes each).
const GARBAGE_POOL: usize = 8_192;
/// The frame size of ARP, SYN and MAC-flood frames, without FCS.
const MIN_FRAME: usize = 60;

/// Where and what a flood sends.
pub struct FloodConfig {
    pub netns: Option<String>,
    pub iface: String,
    pub driver: DriverKind,
    pub kind: Kind,
    pub target: Option<IpAddr>,
    pub dst_port: u16,
    pub dst_mac: Option<[u8; 6]>,
    pub sender_net: Option<(Ipv4Addr, u8)>,
    pub seed: u64,
    pub core: Option<usize>,
}

/// What a flood did.
#[derive(Debug, Clone, Serialize)]
pub struct FloodReport {
    pub kind: Kind,
    pub driver: String,
    pub distinct: usize,
    /// What was sent, as a generator reports it (`sent`, `offered_pps`, ...).
    #[serde(flatten)]
    pub sent: GenReport,
}

/// The addresses frames are built from.
struct Me {
    mac: [u8; 6],
    /// The largest frame the interface sends (MTU + Ethernet header).
    max_frame: usize,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
}

/// Sends `cfg`'s frames for `duration` at `rate` (`None`: as fast as the
/// interface takes them), from a thread placed in the interface's namespace.
pub fn run(cfg: FloodConfig, rate: Option<f64>, duration: Duration) -> anyhow::Result<FloodReport> {
    std::thread::Builder::new()
        .name("flood".into())
        .spawn(move || flood(&cfg, rate, duration))?
        .join()
        .map_err(|_| anyhow::anyhow!("the flood thread panicked"))?
}

fn flood(cfg: &FloodConfig, rate: Option<f64>, duration: Duration) -> anyhow::Result<FloodReport> {
    place(&cfg.netns, cfg.core)?;
    let iface = Iface::lookup(&cfg.iface, &where_(&cfg.netns))?;
    anyhow::ensure!(
        cfg.netns.is_some() || !crate::neigh::carries_default_route(&cfg.iface),
        "refusing to flood '{}': it carries this host's default route; give --netns for a pod's interface",
        cfg.iface
    );
    let me = Me {
        mac: iface.mac,
        max_frame: iface.mtu as usize + 14,
        ipv4: iface.ipv4,
        ipv6: own_ipv6(&cfg.iface)?,
    };
    let mut rng = fastrand::Rng::with_seed(cfg.seed);
    let frames = pool(cfg, &me, &mut rng)?;
    let max = frames.iter().map(Vec::len).max().unwrap_or(MIN_FRAME);
    let mut tx = nic::open_tx(cfg.driver, &cfg.iface, max)?;
    let start = now_ns();
    let end = start + duration.as_nanos() as u64;
    let mut pacer = Pacer::new(rate, start);
    let (mut sent, mut bytes, mut errors, mut last) = (0u64, 0u64, 0u64, start);
    loop {
        let now = now_ns();
        if now >= end || crate::stop::requested() {
            break;
        }
        let due = pacer.due(now, BURST as u64) as usize;
        if due == 0 {
            let wait = pacer.wait_ns(now).min(end - now);
            if wait > 30_000 {
                std::thread::sleep(Duration::from_nanos(wait - 10_000));
            }
            let _ = tx.service();
            continue;
        }
        let base = sent as usize;
        let mut fill = |i: usize, buf: &mut [u8]| {
            let f = &frames[(base + i) % frames.len()];
            buf[..f.len()].copy_from_slice(f);
            f.len()
        };
        match tx.send(due, &mut fill) {
            Ok(k) => {
                bytes += (base..base + k)
                    .map(|i| frames[i % frames.len()].len() as u64 + 4)
                    .sum::<u64>();
                sent += k as u64;
                pacer.sent(k as u64);
                if k > 0 {
                    last = now_ns();
                }
            }
            Err(_) => errors += 1,
        }
        anyhow::ensure!(
            errors <= 1_000_000,
            "the interface refuses every frame (last {errors} sends failed)"
        );
        let _ = tx.service();
    }
    for _ in 0..100 {
        let _ = tx.service();
    }
    Ok(FloodReport {
        kind: cfg.kind,
        driver: tx.describe(),
        distinct: frames.len(),
        sent: GenReport::new(sent, bytes, start, last, errors),
    })
}

/// The interface's IPv6 address: a global one, else its link-local one.
fn own_ipv6(ifname: &str) -> anyhow::Result<Option<Ipv6Addr>> {
    let v6: Vec<Ipv6Addr> = fastpath::sys::if_addrs()?
        .into_iter()
        .filter(|a| a.ifname == ifname)
        .filter_map(|a| match a.addr {
            IpAddr::V6(v6) => Some(v6),
            IpAddr::V4(_) => None,
        })
        .collect();
    Ok(v6
        .iter()
        .find(|a| !a.is_unicast_link_local())
        .or(v6.first())
        .copied())
}

/// The frames of `cfg`'s kind.
fn pool(cfg: &FloodConfig, me: &Me, rng: &mut fastrand::Rng) -> anyhow::Result<Vec<Vec<u8>>> {
    let need_v4 = || {
        me.ipv4.ok_or_else(|| {
            anyhow::anyhow!(
                "'{}' has no IPv4 address to send {} frames from",
                cfg.iface,
                cfg.kind.name()
            )
        })
    };
    let target_v4 = || match cfg.target {
        Some(IpAddr::V4(t)) => Ok(t),
        _ => anyhow::bail!("--kind {} needs an IPv4 --target", cfg.kind.name()),
    };
    let senders = |rng: &mut fastrand::Rng, own: Ipv4Addr| -> Ipv4Addr {
        match cfg.sender_net {
            Some((net, len)) => random_in(rng, net, len),
            None => own,
        }
    };
    let frames = match cfg.kind {
        Kind::Macs => (0..POOL).map(|_| mac_frame(random_mac(rng))).collect(),
        Kind::Arp => {
            let (own, target) = (need_v4()?, target_v4()?);
            (0..POOL)
                .map(|_| arp_request(me.mac, senders(rng, own), target))
                .collect()
        }
        Kind::Nd => {
            let Some(IpAddr::V6(target)) = cfg.target else {
                anyhow::bail!("--kind nd needs an IPv6 --target");
            };
            let src = me.ipv6.ok_or_else(|| {
                anyhow::anyhow!("'{}' has no IPv6 address to solicit from", cfg.iface)
            })?;
            vec![neighbour_solicitation(me.mac, src, target)]
        }
        Kind::Syn => {
            let (own, target) = (need_v4()?, target_v4()?);
            let dst_mac = match cfg.dst_mac {
                Some(m) => m,
                None => nic::resolve_mac(&cfg.iface, target, Duration::from_secs(4))
                    .context("the MAC SYNs go to")?,
            };
            (0..POOL)
                .map(|i| {
                    let sport = 1024 + (i % (65_536 - 1024)) as u16;
                    syn(
                        me.mac,
                        dst_mac,
                        senders(rng, own),
                        target,
                        sport,
                        cfg.dst_port,
                        rng.u32(..),
                    )
                })
                .collect()
        }
        Kind::Garbage => (0..GARBAGE_POOL)
            .map(|_| garbage(rng, me.mac, cfg.dst_mac.unwrap_or([0xff; 6]), me.max_frame))
            .collect(),
    };
    Ok(frames)
}

/// A random locally administered unicast MAC.
fn random_mac(rng: &mut fastrand::Rng) -> [u8; 6] {
    let mut m = [0u8; 6];
    rng.fill(&mut m);
    m[0] = (m[0] & 0xfc) | 0x02;
    m
}

/// A random host address of `net/len` (any address for /31 and /32).
fn random_in(rng: &mut fastrand::Rng, net: Ipv4Addr, len: u8) -> Ipv4Addr {
    let host_bits = 32 - u32::from(len.min(32));
    let mask = u32::MAX.checked_shl(host_bits).unwrap_or(0);
    let base = u32::from(net) & mask;
    let hosts = !mask;
    let host = if hosts <= 2 {
        rng.u32(..=hosts)
    } else {
        rng.u32(1..hosts)
    };
    Ipv4Addr::from(base | host)
}

/// A broadcast frame of the local experimental EtherType from `src`.
fn mac_frame(src: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0u8; MIN_FRAME];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f
}

fn pad(mut f: Vec<u8>) -> Vec<u8> {
    if f.len() < MIN_FRAME {
        f.resize(MIN_FRAME, 0);
    }
    f
}

fn arp_request(mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let arp = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &mac,
        &sender.octets(),
        &[0; 6],
        &target.octets(),
    )
    .expect("Ethernet/IPv4 ARP lengths");
    let b = PacketBuilder::ethernet2(mac, [0xff; 6]).arp(arp);
    let mut f = Vec::with_capacity(b.size());
    b.write(&mut f).expect("writing to a Vec");
    pad(f)
}

/// A neighbour solicitation for `target` to its solicited-node group, with
/// the source link-layer address option.
fn neighbour_solicitation(mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let g = group.octets();
    let dst_mac = [0x33, 0x33, g[12], g[13], g[14], g[15]];
    let mut payload = t.to_vec();
    payload.extend_from_slice(&[1, 1]);
    payload.extend_from_slice(&mac);
    let b = PacketBuilder::ethernet2(mac, dst_mac)
        .ipv6(src.octets(), g, 255)
        .icmpv6(Icmpv6Type::NeighborSolicitation);
    let mut f = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut f, &payload).expect("writing to a Vec");
    f
}

fn syn(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(sport, dport, seq, 64_240)
        .syn();
    let mut f = Vec::with_capacity(b.size(0));
    b.write(&mut f, &[]).expect("writing to a Vec");
    pad(f)
}

/// Random bytes, 14 to `max` (at most 1,514) of them; three in four start with this
/// interface's MAC as source, `dst` as destination and a common EtherType
/// (IPv4 with a version-4 first byte, IPv6, ARP, VLAN), so they reach past
/// the first checks.
fn garbage(rng: &mut fastrand::Rng, src: [u8; 6], dst: [u8; 6], max: usize) -> Vec<u8> {
    let len = rng.usize(14..=max.clamp(14, 1514));
    let mut f = vec![0u8; len];
    rng.fill(&mut f);
    let shape = rng.u8(..4);
    if shape > 0 {
        f[0..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        let et: u16 = match shape {
            1 => 0x0800,
            2 => 0x86dd,
            _ => [0x0806u16, 0x8100][rng.usize(..2)],
        };
        f[12..14].copy_from_slice(&et.to_be_bytes());
        if et == 0x0800 && len > 14 {
            f[14] = 0x40 | (f[14] & 0x0f);
        }
        if et == 0x86dd && len > 14 {
            f[14] = 0x60 | (f[14] & 0x0f);
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{LinkExtSlice, NetSlice, SlicedPacket, TransportSlice};

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    #[test]
    fn arp_requests_ask_for_the_target_from_the_sender() {
        let f = arp_request(MAC, Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(f.len(), MIN_FRAME);
        let p = SlicedPacket::from_ethernet(&f).expect("parses");
        let Some(NetSlice::Arp(a)) = &p.net else {
            panic!("not ARP: {p:?}")
        };
        assert_eq!(a.operation(), ArpOperation::REQUEST);
        assert_eq!(a.sender_hw_addr(), MAC);
        assert_eq!(a.sender_protocol_addr(), [10, 0, 0, 5]);
        assert_eq!(a.target_protocol_addr(), [10, 0, 0, 1]);
    }

    #[test]
    fn solicitations_go_to_the_solicited_node_group_with_a_valid_checksum() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let target: Ipv6Addr = "fd00:1::1:2:3".parse().unwrap();
        let f = neighbour_solicitation(MAC, src, target);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0xff, 0x02, 0x00, 0x03]);
        let p = SlicedPacket::from_ethernet(&f).expect("parses");
        let Some(NetSlice::Ipv6(ip)) = &p.net else {
            panic!("not IPv6")
        };
        assert_eq!(
            ip.header().destination_addr(),
            "ff02::1:ff02:3".parse::<Ipv6Addr>().unwrap()
        );
        let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
            panic!("not ICMPv6")
        };
        assert_eq!(icmp.icmp_type(), Icmpv6Type::NeighborSolicitation);
        let h = icmp.header();
        let want = h
            .icmp_type
            .calc_checksum(src.octets(), ip.header().destination(), icmp.payload())
            .unwrap();
        assert_eq!(h.checksum, want);
        assert_eq!(&icmp.payload()[..16], &target.octets());
        assert_eq!(&icmp.payload()[16..], &[1, 1, 2, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn syns_are_valid_tcp_with_checksums() {
        let (s, d) = (Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 96, 0, 10));
        let f = syn(MAC, [2, 0, 0, 0, 0, 2], s, d, 40_000, 80, 7);
        assert_eq!(f.len(), MIN_FRAME);
        let p = SlicedPacket::from_ethernet(&f).expect("parses");
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4")
        };
        let h = ip.header();
        assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
        let Some(TransportSlice::Tcp(t)) = &p.transport else {
            panic!("not TCP")
        };
        assert!(t.syn() && !t.ack());
        assert_eq!((t.source_port(), t.destination_port()), (40_000, 80));
        let want = t
            .to_header()
            .calc_checksum_ipv4_raw(s.octets(), d.octets(), t.payload())
            .unwrap();
        assert_eq!(t.checksum(), want);
        assert!(
            p.link_exts
                .iter()
                .all(|e| !matches!(e, LinkExtSlice::Vlan(_)))
        );
    }

    #[test]
    fn pools_hold_distinct_frames_of_each_kind() {
        let cfg = |kind, target: Option<IpAddr>| FloodConfig {
            netns: None,
            iface: "eth0".into(),
            driver: DriverKind::Packet,
            kind,
            target,
            dst_port: 80,
            dst_mac: Some([2, 0, 0, 0, 0, 2]),
            sender_net: Some((Ipv4Addr::new(10, 244, 0, 0), 16)),
            seed: 1,
            core: None,
        };
        let me = Me {
            mac: MAC,
            max_frame: 1514,
            ipv4: Some(Ipv4Addr::new(10, 244, 1, 11)),
            ipv6: None,
        };
        let mut rng = fastrand::Rng::with_seed(1);
        let distinct = |v: &[Vec<u8>]| v.iter().collect::<std::collections::HashSet<_>>().len();
        let macs = pool(&cfg(Kind::Macs, None), &me, &mut rng).unwrap();
        assert!(distinct(&macs) > POOL - 10, "random MACs repeat");
        assert!(
            macs.iter().all(|f| f[6] & 0x03 == 0x02),
            "local unicast sources"
        );
        let v4 = Some(IpAddr::V4(Ipv4Addr::new(10, 244, 1, 1)));
        let arp = pool(&cfg(Kind::Arp, v4), &me, &mut rng).unwrap();
        assert!(distinct(&arp) > 40_000, "senders drawn from the /16");
        for f in &arp {
            assert_eq!(&f[28..30], &[10, 244], "sender within --sender-net");
        }
        let syns = pool(&cfg(Kind::Syn, v4), &me, &mut rng).unwrap();
        assert_eq!(distinct(&syns), POOL);
        let g = pool(&cfg(Kind::Garbage, None), &me, &mut rng).unwrap();
        assert_eq!(g.len(), GARBAGE_POOL);
        assert!(g.iter().all(|f| (14..=1514).contains(&f.len())));
        let e = pool(&cfg(Kind::Nd, v4), &me, &mut rng).unwrap_err();
        assert!(e.to_string().contains("IPv6 --target"), "{e}");
        let e = pool(&cfg(Kind::Syn, None), &me, &mut rng).unwrap_err();
        assert!(e.to_string().contains("IPv4 --target"), "{e}");
    }

    #[test]
    fn random_hosts_stay_in_their_network() {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..1000 {
            let a = random_in(&mut rng, Ipv4Addr::new(10, 1, 2, 3), 24);
            assert_eq!(&a.octets()[..3], &[10, 1, 2]);
            assert!(a.octets()[3] != 0 && a.octets()[3] != 255);
        }
        assert_eq!(
            random_in(&mut rng, Ipv4Addr::new(10, 1, 2, 3), 32),
            Ipv4Addr::new(10, 1, 2, 3)
        );
    }
}
