//! The whole pipeline over one worker's state, fed frames as they would
//! arrive from every kind of port: pods (one with port security, one a
//! TAP with offloads whose frames come with a virtio-net header), the
//! uplink and the host port, with routes (local, connected, pod, via a
//! gateway, VXLAN, IPv6), neighbours, Services (with and without
//! endpoints, a NodePort) and VXLAN decapsulation configured.
//!
//! Input: records `[port] [flags] [len hi] [len lo] bytes...`; flag bit 0
//! asks for the frame's IPv4/IPv6 and TCP/UDP/ICMP checksums to be made
//! right first, bit 1 (TAP port) reads a virtio-net header off its front.
//!
//! Invariants, after every batch: nothing panics; every frame is
//! accounted for (queued on a port, held for a neighbour, or back in the
//! pool; the pool saw no double free and no access to a frame the worker
//! did not hold); a frame whose checksums were right leaves with right
//! checksums (IPv4 header, and TCP, UDP, ICMP, ICMPv6 unless the frame
//! leaves with a partial checksum or as a GSO frame, which the port
//! completes).

#![no_main]

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use fastpath::batch::{Batch, Pkt};
use fastpath::counters::WorkerCounters;
use fastpath::ctx::Ctx;
use fastpath::gso::{Gso, VnetHdr};
use fastpath::l2::fdb::{Learner, MacTable};
use fastpath::l3::neigh::{NeighEvent, NeighTable};
use fastpath::l3::resolver::Resolver;
use fastpath::l3::table::{Link, NextHop, RouteTable};
use fastpath::pool::FramePool;
use fastpath::services::conntrack::{Conntrack, FlowCache};
use fastpath::services::table::{Service, ServiceTable, endpoint};
use fastpath::snapshot::{L3Config, PortEntry, PortGuard, PortRole, Snapshot};
use fastpath::tx::Outputs;
use fastpath::wire::checksum::{fold, sum};
use fastpath::{PortId, mac_key, pipeline};
use libfuzzer_sys::fuzz_target;

const ROUTER: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
const POD: PortId = 0;
const TAP: PortId = 1;
const GUARDED: PortId = 2;
const UPLINK: PortId = 3;
const HOST: PortId = 4;
const PORTS: PortId = 5;

fn v4(a: [u8; 4]) -> u32 {
    u32::from_be_bytes(a)
}

fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        let mut entries = Vec::new();
        for id in 0..PORTS {
            let mut e = PortEntry::new(id, 0);
            match id {
                POD => e.finish_csum = true,
                TAP => (e.gso, e.tx_csum) = (true, true),
                GUARDED => {
                    e.guard = Some(Arc::new(PortGuard {
                        mac: Some(mac_key(&[0x02, 0, 0, 0, 0, 0x22])),
                        v4: vec![v4([10, 244, 0, 22])],
                        v6: vec![0xfd00_u128 << 112 | 0x22],
                    }))
                }
                UPLINK => e.role = PortRole::Uplink,
                _ => e.role = PortRole::Host,
            }
            entries.push(e);
        }
        let mut fdb = MacTable::new(300, 1024);
        fdb.add_static(mac_key(&[0x02, 0, 0, 0, 0, 0x0a]), POD);
        fdb.add_static(mac_key(&[0x02, 0, 0, 0, 0, 0x0b]), TAP);
        fdb.add_static(mac_key(&[0x02, 0, 0, 0, 0, 0x22]), GUARDED);
        let ip4 = |a: [u8; 4]| IpAddr::V4(Ipv4Addr::from(a));
        let ip6 = |a: u128| IpAddr::V6(Ipv6Addr::from(a));
        let mut routes = RouteTable::default();
        routes.insert(ip4([10, 244, 0, 1]), 32, NextHop::Local);
        let bridge = NextHop::Resolve {
            link: Link::Bridge,
            gw: None,
        };
        routes.insert(ip4([10, 244, 0, 0]), 24, bridge);
        routes.insert(
            ip4([10, 244, 0, 22]),
            32,
            NextHop::Peer {
                port: GUARDED,
                mac: mac_key(&[0x02, 0, 0, 0, 0, 0x22]),
            },
        );
        let uplink = |gw: Option<[u8; 4]>| NextHop::Resolve {
            link: Link::Port(UPLINK),
            gw: gw.map(ip4),
        };
        routes.insert(ip4([192, 168, 1, 0]), 24, uplink(None));
        routes.insert(ip4([10, 16, 1, 0]), 24, uplink(Some([192, 168, 1, 2])));
        routes.insert(
            ip4([10, 17, 0, 0]),
            16,
            NextHop::Vxlan {
                vtep: v4([192, 168, 1, 3]),
                vni: 42,
            },
        );
        routes.insert(
            ip4([172, 16, 0, 0]),
            16,
            NextHop::Resolve {
                link: Link::Port(HOST),
                gw: None,
            },
        );
        routes.insert(ip4([0, 0, 0, 0]), 0, uplink(Some([192, 168, 1, 254])));
        routes.insert(ip6(0xfd00_u128 << 112 | 1), 128, NextHop::Local);
        routes.insert(ip6(0xfd00_u128 << 112), 64, bridge);
        routes.insert(
            ip6(0),
            0,
            NextHop::Resolve {
                link: Link::Port(UPLINK),
                gw: Some(ip6(0xfd01_u128 << 112 | 1)),
            },
        );
        routes.freeze();
        let router_mac = mac_key(&ROUTER);
        let l3 = L3Config {
            router_mac,
            routes,
            addrs4: vec![(v4([10, 244, 0, 1]), 24), (v4([192, 168, 1, 1]), 24)],
            addrs6: vec![(0xfd00_u128 << 112 | 1, 64)],
            link_local: fastpath::wire::ipv6::link_local_of(router_mac),
            bridge_mtu: 1500,
            vtep_src: Some(v4([192, 168, 1, 1])),
            vteps: vec![v4([192, 168, 1, 1])],
            vnis: vec![42],
        };
        // Neighbours confirmed an hour ahead: no refresh requests.
        let mut neigh = NeighTable::new(3600);
        let later = fastpath::clock::now_ms() + 3_600_000;
        for (ip, m, port) in [
            (ip4([192, 168, 1, 2]), 0x21, UPLINK),
            (ip4([192, 168, 1, 3]), 0x23, UPLINK),
            (ip4([192, 168, 1, 254]), 0x24, UPLINK),
            (ip4([10, 244, 0, 10]), 0x0a, POD),
            (ip4([10, 244, 0, 11]), 0x0b, TAP),
            (ip4([172, 16, 0, 9]), 0x30, HOST),
            (ip6(0xfd01_u128 << 112 | 1), 0x25, UPLINK),
        ] {
            let mac = mac_key(&[0x02, 0, 0, 0, 0, m]);
            neigh.learn(NeighEvent { ip, mac, port }, later);
        }
        let mut services = ServiceTable::default();
        let mut web = Service::new(
            v4([10, 96, 0, 10]),
            80,
            6,
            vec![
                endpoint(v4([10, 244, 0, 10]), 8080),
                endpoint(v4([10, 244, 0, 11]), 8080),
            ],
            vec![endpoint(v4([10, 16, 1, 5]), 8080)],
            251,
        );
        web.node_port = Some(30080);
        services.insert(Arc::new(web));
        services.insert(Arc::new(Service::new(
            v4([10, 96, 0, 11]),
            53,
            17,
            vec![],
            vec![],
            251,
        )));
        let mut affine = Service::new(
            v4([10, 96, 0, 12]),
            443,
            6,
            vec![endpoint(v4([10, 244, 0, 22]), 8443)],
            vec![],
            251,
        );
        affine.affinity_ms = Some(10_000);
        services.insert(Arc::new(affine));
        Snapshot {
            l3: Arc::new(l3),
            neigh: neigh.view(),
            services: Arc::new(services),
            ..Snapshot::build(1, entries, fdb.view())
        }
    })
}

/// The frame's IP version, header end and transport: (v6, l4 start, end,
/// protocol), for an unfragmented IPv4 or IPv6 packet whose lengths fit.
fn layout(f: &[u8]) -> Option<(bool, usize, usize, u8)> {
    let ty = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    match ty {
        0x0800 => {
            let ihl = usize::from(f.get(14)? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*f.get(16)?, *f.get(17)?]));
            let frag = u16::from_be_bytes([*f.get(20)?, *f.get(21)?]) & 0x3fff;
            (f[14] >> 4 == 4 && ihl >= 20 && total >= ihl && 14 + total <= f.len() && frag == 0)
                .then(|| (false, 14 + ihl, 14 + total, f[23]))
        }
        0x86dd => {
            let plen = usize::from(u16::from_be_bytes([*f.get(18)?, *f.get(19)?]));
            (f.len() >= 54 + plen && f[14] >> 4 == 6).then(|| (true, 54, 54 + plen, f[20]))
        }
        _ => None,
    }
}

/// Where the checksum field of the transport header is, and the pseudo
/// header's sum (None: no checksum to check).
fn l4_sum(f: &[u8]) -> Option<(usize, u32)> {
    let (v6, l4, end, proto) = layout(f)?;
    let len = end - l4;
    let at = match proto {
        6 if len >= 20 => l4 + 16,
        17 if len >= 8 => l4 + 6,
        1 if !v6 && len >= 8 => return Some((l4 + 2, 0)),
        58 if v6 && len >= 8 => l4 + 2,
        _ => return None,
    };
    let pseudo = if v6 {
        sum(&f[22..54], 0) + len as u32 + u32::from(proto)
    } else {
        sum(&f[26..34], 0) + len as u32 + u32::from(proto)
    };
    Some((at, pseudo))
}

/// Makes the frame's IPv4 header checksum and its transport checksum right.
fn fix(f: &mut [u8]) {
    let Some((v6, l4, end, proto)) = layout(f) else {
        return;
    };
    if !v6 {
        f[24..26].fill(0);
        let c = fold(sum(&f[14..l4], 0));
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }
    if let Some((at, pseudo)) = l4_sum(f) {
        f[at..at + 2].fill(0);
        let mut c = fold(sum(&f[l4..end], pseudo));
        if proto == 17 && c == 0 {
            c = 0xffff;
        }
        f[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// Whether the frame's checksums verify (`l4`: the transport's too).
fn verifies(f: &[u8], l4check: bool) -> Result<(), String> {
    let Some((v6, l4, end, proto)) = layout(f) else {
        return Ok(());
    };
    if !v6 && fold(sum(&f[14..l4], 0)) != 0 {
        return Err("IPv4 header checksum".into());
    }
    if !l4check {
        return Ok(());
    }
    if let Some((at, pseudo)) = l4_sum(f) {
        // A UDP checksum of zero over IPv4: none.
        if proto == 17 && !v6 && f[at..at + 2] == [0, 0] {
            return Ok(());
        }
        if fold(sum(&f[l4..end], pseudo)) != 0 {
            return Err(format!("protocol {proto} checksum"));
        }
    }
    Ok(())
}

/// A worker's own state, kept across runs (a pool with big frames is
/// costly to make) and emptied after each.
struct Worker {
    pool: FramePool,
    outputs: Outputs,
    counters: WorkerCounters,
    learner: Learner,
    resolver: Resolver,
    flows: FlowCache,
    conntrack: Conntrack,
    learn_rx: crossbeam_channel::Receiver<fastpath::l2::fdb::LearnEvent>,
    events_rx: crossbeam_channel::Receiver<fastpath::events::WorkerEvent>,
}

thread_local! {
    static WORKER: RefCell<Worker> = RefCell::new({
        let (learn_tx, learn_rx) = crossbeam_channel::bounded(1024);
        let (events_tx, events_rx) = crossbeam_channel::bounded(1024);
        Worker {
            pool: FramePool::with_big(512, 8),
            outputs: Outputs::new(),
            counters: WorkerCounters::new(),
            learner: Learner::new(learn_tx),
            resolver: Resolver::new(events_tx),
            flows: FlowCache::default(),
            conntrack: Conntrack::new(1024),
            learn_rx,
            events_rx,
        }
    });
}

/// Splits the input into frames: (ingress port, checksums made right, GSO
/// marking, bytes).
fn frames(data: &[u8]) -> Vec<(PortId, bool, Gso, Vec<u8>)> {
    let mut rest = data;
    let mut frames = Vec::new();
    while let [port, flags, hi, lo, tail @ ..] = rest {
        let len = (usize::from(*hi) << 8 | usize::from(*lo)).min(tail.len());
        let (mut bytes, next) = (tail[..len].to_vec(), &tail[len..]);
        rest = next;
        let port = PortId::from(*port) % PORTS;
        let mut gso = Gso::NONE;
        if port == TAP && flags & 2 != 0 {
            let Some(h) = VnetHdr::read(&bytes) else {
                continue;
            };
            bytes.drain(..10);
            gso = h.accept(&mut bytes);
            if gso == Gso::INVALID {
                continue; // the TAP port drops it, counted
            }
        }
        let good = flags & 1 != 0 && !gso.is_some();
        if good {
            fix(&mut bytes);
        }
        frames.push((port, good, gso, bytes));
        if frames.len() == 32 {
            break;
        }
    }
    frames
}

/// Checks and frees what a batch queued: see the module documentation.
fn drain(w: &mut Worker, all_good: bool) {
    let total = w.pool.counts().total;
    let c = w.pool.counts();
    assert_eq!(c.errors, 0, "pool errors: {c:?}");
    while let Some((out, list)) = w.outputs.next_dirty() {
        for f in list.iter() {
            let bytes = w.pool.data(f.addr, f.len);
            // From inputs whose checksums were right, every frame
            // (forwarded, rewritten or made by the switch) must verify.
            if all_good && let Err(e) = verifies(bytes, !f.gso.is_some()) {
                panic!("a frame to port {out} leaves with a bad {e}: {bytes:02x?}");
            }
        }
        for f in list.iter() {
            w.pool.free(f.addr);
        }
        list.clear();
    }
    let c = w.pool.counts();
    assert_eq!(
        c.worker as usize,
        w.resolver.held(),
        "frames neither queued, held nor freed: {c:?}"
    );
    assert_eq!(c.free + c.worker, total, "{c:?}");
}

/// Runs `batch` through the pipeline (`held`: as frames retried after
/// waiting for a neighbour) with `w`'s state.
fn run(w: &mut Worker, batch: &mut Batch, snap: &Snapshot, now: u64, held: bool) {
    let mut cx = Ctx {
        snap,
        pool: &mut w.pool,
        outputs: &mut w.outputs,
        counters: &w.counters,
        learner: &mut w.learner,
        resolver: &mut w.resolver,
        flows: &mut w.flows,
        conntrack: &w.conntrack,
        now,
    };
    if held {
        pipeline::process_held(batch, &mut cx);
    } else {
        pipeline::process(batch, &mut cx);
    }
}

fuzz_target!(|data: &[u8]| {
    let snap = snapshot();
    let frames = frames(data);
    WORKER.with_borrow_mut(|w| {
        let now = fastpath::clock::now_ms();
        for port in 0..PORTS {
            let mut batch = Batch::new();
            let mut all_good = true;
            for (_, g, gso, bytes) in frames.iter().filter(|f| f.0 == port) {
                let Some((addr, len)) = w.pool.write_frame(bytes) else {
                    continue;
                };
                batch.push(Pkt {
                    gso: *gso,
                    ..Pkt::new(addr, len, port)
                });
                all_good &= *g;
            }
            if batch.is_empty() {
                continue;
            }
            if port == TAP {
                batch.set_big();
            }
            run(w, &mut batch, snap, now, false);
            drain(w, all_good);
        }
        // Frames held for a neighbour: retried once (as after a new
        // snapshot), then let go of.
        let mut batch = Batch::new();
        while w.resolver.held() > 0 {
            let before = w.resolver.held();
            w.resolver
                .take_held(&mut batch, &mut w.pool, &w.counters, before, now);
            batch.set_big();
            run(w, &mut batch, snap, now, true);
            w.resolver.retried();
            drain(w, false);
            if w.resolver.held() >= before {
                // Held again: past the timeout they are freed.
                w.resolver.take_held(
                    &mut batch,
                    &mut w.pool,
                    &w.counters,
                    usize::MAX,
                    now + 60_000,
                );
                for p in batch.pkts() {
                    w.pool.free(p.addr);
                }
                batch.clear();
            }
        }
        let c = w.pool.counts();
        assert_eq!(c.free, c.total, "every frame back: {c:?}");
        // The next run starts afresh: flows flushed (which also makes
        // whatever the flow cache holds of them dead).
        if w.conntrack.counters(now).entries > 0 {
            w.conntrack.flush();
        }
        while w.learn_rx.try_recv().is_ok() {}
        while w.events_rx.try_recv().is_ok() {}
    });
});
