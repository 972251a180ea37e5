//! Unit tests of the connection table.

use super::*;
use crate::services::table::{PROTO_TCP, PROTO_UDP};

const C: u32 = 0x0af4_0105;
const VIP: u32 = 0x0a60_000a;
const B: u32 = 0x0af4_0202;

fn new_flow(cport: u16, proto: u8) -> NewFlow {
    NewFlow {
        proto,
        client: (C, cport),
        front: (VIP, 80),
        backend: (B, 8080),
        snat: None,
        service: 7,
    }
}

#[test]
fn both_directions_are_found_and_translated() {
    let ct = Conntrack::new(1024);
    let nat = ct.create(&new_flow(40000, PROTO_TCP), 1).unwrap();
    assert_eq!(
        nat,
        Nat {
            src: C,
            sport: 40000,
            dst: B,
            dport: 8080
        }
    );
    let orig = flow_key(C, VIP, 40000, 80, PROTO_TCP);
    assert_eq!(
        ct.lookup(orig, true, Some(tcp_flags::SYN), 2),
        Some(Hit::Orig {
            nat,
            service: 7,
            backend: crate::services::table::endpoint(B, 8080)
        })
    );
    let reply = flow_key(B, C, 8080, 40000, PROTO_TCP);
    assert_eq!(
        ct.lookup(reply, false, Some(tcp_flags::SYN | tcp_flags::ACK), 3),
        Some(Hit::Reply {
            nat: Nat {
                src: VIP,
                sport: 80,
                dst: C,
                dport: 40000
            }
        })
    );
    let flows = ct.flows(3);
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].state, FlowState::SynRecv);
    assert_eq!(ct.counters(3).embryonic, 1, "answered, not yet confirmed");
    ct.lookup(orig, true, Some(tcp_flags::ACK), 4).unwrap();
    assert_eq!(ct.flows(4)[0].state, FlowState::Established);
    assert_eq!(ct.counters(4).embryonic, 0);
}

#[test]
fn a_taken_reply_tuple_moves_the_client_port() {
    let ct = Conntrack::new(1024);
    ct.create(&new_flow(40000, PROTO_TCP), 1).unwrap();
    // The same client port to another VIP that picked the same endpoint.
    let mut other = new_flow(40000, PROTO_TCP);
    other.front = (VIP + 1, 80);
    let nat = ct.create(&other, 1).unwrap();
    assert_ne!(nat.sport, 40000);
    let reply = flow_key(B, C, 8080, nat.sport, PROTO_TCP);
    assert!(matches!(
        ct.lookup(reply, false, Some(tcp_flags::ACK), 2),
        Some(Hit::Reply { nat }) if nat.dport == 40000 && nat.src == VIP + 1
    ));
}

#[test]
fn flows_expire_by_state() {
    let ct = Conntrack::new(1024);
    ct.create(&new_flow(1, PROTO_UDP), 0).unwrap();
    let orig = flow_key(C, VIP, 1, 80, PROTO_UDP);
    assert!(ct.lookup(orig, true, None, UDP_UNREPLIED_MS).is_some());
    assert!(
        ct.lookup(orig, true, None, 2 * UDP_UNREPLIED_MS + 1)
            .is_none()
    );
    // TCP closed by RST goes soon; the reply record goes with it.
    ct.create(&new_flow(2, PROTO_TCP), 0).unwrap();
    let orig = flow_key(C, VIP, 2, 80, PROTO_TCP);
    let reply = flow_key(B, C, 8080, 2, PROTO_TCP);
    ct.lookup(reply, false, Some(tcp_flags::ACK), 1).unwrap();
    ct.lookup(orig, true, Some(tcp_flags::RST), 2).unwrap();
    assert_eq!(ct.sweep(2 + TCP_CLOSED_MS + 1), 1);
    assert!(
        ct.lookup(reply, false, Some(tcp_flags::ACK), 2 + TCP_CLOSED_MS + 2)
            .is_none()
    );
    assert_eq!(ct.counters(0).entries, 0);
}

#[test]
fn full_table_evicts_unanswered_flows_never_answered_ones() {
    let ct = Conntrack::new(SHARDS * 4);
    // Answered flows first (a shard that happens to fill up with them
    // refuses the rest).
    let mut answered = Vec::new();
    let mut refused = 0;
    for p in 0..(SHARDS * 2) as u16 {
        if ct.create(&new_flow(10_000 + p, PROTO_TCP), 0).is_err() {
            refused += 1;
        } else {
            let nat_port = ct
                .flows(0)
                .into_iter()
                .find(|f| f.orig == flow_key(C, VIP, 10_000 + p, 80, PROTO_TCP))
                .unwrap()
                .nat
                .sport;
            let reply = flow_key(B, C, 8080, nat_port, PROTO_TCP);
            ct.lookup(reply, false, Some(tcp_flags::SYN | tcp_flags::ACK), 0)
                .unwrap();
            let orig = flow_key(C, VIP, 10_000 + p, 80, PROTO_TCP);
            ct.lookup(orig, true, Some(tcp_flags::ACK), 0).unwrap();
            answered.push(10_000 + p);
        }
    }
    // A flood of unanswered flows, many times the limit.
    for p in 0..(SHARDS * 40) as u16 {
        if ct.create(&new_flow(20_000 + p, PROTO_TCP), 1).is_err() {
            refused += 1;
        }
    }
    let c = ct.counters(1);
    assert!(c.entries <= ct.limit() as u64);
    assert!(c.evicted > 0, "{c:?}");
    // Every answered flow is still there.
    for p in answered {
        let orig = flow_key(C, VIP, p, 80, PROTO_TCP);
        assert!(
            ct.lookup(orig, true, Some(tcp_flags::ACK), 2).is_some(),
            "{p}"
        );
    }
    assert_eq!(c.full, refused);
}

/// A SYN flood from spoofed addresses: every SYN is answered by the
/// endpoint's SYN-ACK, which no client confirms. Such half-open flows are
/// embryonic: evicted for new flows in a full table, and gone after
/// `TCP_SYN_RECV_MS` rather than the established timeout.
#[test]
fn half_open_flows_are_evicted_and_expire_soon() {
    let ct = Conntrack::new(SHARDS * 4);
    let mut refused = 0;
    for p in 0..(SHARDS * 40) as u16 {
        let Ok(nat) = ct.create(&new_flow(20_000 + p, PROTO_TCP), 0) else {
            refused += 1;
            continue;
        };
        let reply = flow_key(B, C, 8080, nat.sport, PROTO_TCP);
        ct.lookup(reply, false, Some(tcp_flags::SYN | tcp_flags::ACK), 0)
            .unwrap();
    }
    for s in &ct.shards {
        lock(s).check();
    }
    let c = ct.counters(0);
    assert_eq!(
        refused, 0,
        "a table full of half-open flows refused new ones: {c:?}"
    );
    assert!(c.evicted > 0 && c.entries <= ct.limit() as u64, "{c:?}");
    assert_eq!(c.embryonic, c.entries, "{c:?}");
    assert!(ct.flows(0).iter().all(|f| f.state == FlowState::SynRecv));
    assert_eq!(ct.sweep(TCP_SYN_RECV_MS + 1), c.entries as usize);
}

/// Only the client's ACK after the endpoint's answer confirms a flow: not a
/// retransmitted SYN, not a RST (a flooder's kernel refusing a SYN-ACK);
/// such flows stay embryonic and evictable.
#[test]
fn only_the_handshakes_ack_establishes_a_flow() {
    use tcp_flags::{ACK, RST, SYN};
    let ct = Conntrack::new(1024);
    let state = |ct: &Conntrack, p: u16| {
        let k = flow_key(C, VIP, p, 80, PROTO_TCP);
        ct.flows(5).into_iter().find(|f| f.orig == k).unwrap().state
    };
    for (p, client, want) in [
        (1u16, SYN, FlowState::SynRecv),
        (2, RST, FlowState::Closing),
        (3, RST | ACK, FlowState::Closing),
        (4, ACK, FlowState::Established),
    ] {
        let nat = ct.create(&new_flow(p, PROTO_TCP), 0).unwrap();
        let reply = flow_key(B, C, 8080, nat.sport, PROTO_TCP);
        ct.lookup(reply, false, Some(SYN | ACK), 1).unwrap();
        ct.lookup(flow_key(C, VIP, p, 80, PROTO_TCP), true, Some(client), 2)
            .unwrap();
        assert_eq!(state(&ct, p), want, "client sent {client:#x}");
    }
    assert_eq!(ct.counters(5).embryonic, 3, "all but the ACKed flow");
    for s in &ct.shards {
        lock(s).check();
    }
}

/// A flow whose first packet is not a SYN (picked up mid-stream after a
/// restart or a flush) is established by the endpoint's answer, unless
/// that answer is a RST.
#[test]
fn a_flow_picked_up_mid_stream_is_established_by_the_answer() {
    use tcp_flags::{ACK, RST, SYN};
    const PSH_ACK: u8 = 0x18;
    let ct = Conntrack::new(1024);
    let mut cache = FlowCache::default();
    let state = |ct: &Conntrack, p: u16| {
        let k = flow_key(C, VIP, p, 80, PROTO_TCP);
        ct.flows(2).into_iter().find(|f| f.orig == k).unwrap().state
    };
    for (p, first, answer, want) in [
        (1u16, PSH_ACK, ACK, FlowState::Established),
        (2, PSH_ACK, RST, FlowState::Closing),
        // A SYN opens a flow the usual way: its answer alone does not
        // establish it.
        (3, SYN, SYN | ACK, FlowState::SynRecv),
    ] {
        let f = new_flow(p, PROTO_TCP);
        let Ok(Tracked::Created(nat)) =
            ct.lookup_or_create(&mut cache, &f, Some(first), 0, |_, _| true)
        else {
            panic!("not created")
        };
        let reply = flow_key(B, C, 8080, nat.sport, PROTO_TCP);
        ct.lookup(reply, false, Some(answer), 1).unwrap();
        assert_eq!(state(&ct, p), want, "first {first:#x}, answer {answer:#x}");
    }
}

#[test]
fn a_reused_tuple_keeps_the_eviction_queue_bounded() {
    let ct = Conntrack::new(1024);
    for i in 0..10_000 {
        ct.create(&new_flow(40000, PROTO_TCP), i).unwrap();
    }
    let queued: usize = ct.shards.iter().map(|m| lock(m).young.len()).sum();
    let bound = 2 * ct.per_shard.max(super::create::YOUNG_FLOOR) + 17;
    assert!(queued <= bound, "{queued} keys queued");
    assert_eq!(ct.counters(10_000).entries, 1);
}

#[test]
fn a_worker_cache_never_uses_a_flow_whose_tuple_was_taken_over() {
    let ct = Conntrack::new(1024);
    let mut cache = FlowCache::default();
    ct.create(&new_flow(1, PROTO_UDP), 0).unwrap();
    let reply = flow_key(B, C, 8080, 1, PROTO_UDP);
    // A worker caches the reply direction.
    assert!(
        ct.lookup_cached(&mut cache, reply, false, None, 1)
            .is_some()
    );
    // The flow expires; the same client port to another VIP lands on
    // the same endpoint and takes the reply tuple over.
    let later = 1 + UDP_REPLIED_MS + 1;
    let mut other = new_flow(1, PROTO_UDP);
    other.front = (VIP + 1, 80);
    ct.create(&other, later).unwrap();
    // A worker whose clock lags a little must not translate with the
    // old flow's VIP.
    match ct.lookup_cached(&mut cache, reply, false, None, later - 1) {
        Some(Hit::Reply { nat }) => assert_eq!(nat.src, VIP + 1),
        other => panic!("{other:?}"),
    }
}

#[test]
fn affinity_expires() {
    let ct = Conntrack::new(1024);
    ct.set_affinity(7, C, 99, 1000, 0);
    assert_eq!(ct.affinity(7, C, 1000), Some(99));
    assert_eq!(ct.affinity(7, C, 1001), None);
    assert_eq!(ct.affinity(8, C, 0), None);
    ct.sweep(2000);
    assert_eq!(ct.counters(0).affinity, 0);
}

#[test]
fn flush_forgets_everything() {
    let ct = Conntrack::new(1024);
    ct.create(&new_flow(1, PROTO_TCP), 0).unwrap();
    ct.set_affinity(7, C, 99, 1000, 0);
    ct.flush();
    assert!(ct.flows(0).is_empty());
    assert_eq!(ct.affinity(7, C, 0), None);
    assert!(
        ct.lookup(flow_key(B, C, 8080, 1, PROTO_TCP), false, None, 0)
            .is_none()
    );
}

#[test]
fn flows_that_share_a_client_port_have_the_whole_table() {
    // NTP-like: many clients, one source port, all in one shard.
    let ct = Conntrack::new(1024);
    assert_eq!(ct.limit(), 1024);
    let flow = |i: u32| NewFlow {
        client: (0x0a00_0000 + i, 123),
        ..new_flow(123, PROTO_UDP)
    };
    for i in 0..1024 {
        ct.create(&flow(i), 1).unwrap();
    }
    let c = ct.counters(2);
    assert_eq!((c.entries, c.evicted, c.full), (1024, 0, 0));
    // Every one of them is still there.
    for i in 0..1024 {
        let key = flow_key(0x0a00_0000 + i, VIP, 123, 80, PROTO_UDP);
        assert!(ct.lookup(key, true, None, 2).is_some(), "flow {i} is gone");
    }
    // The table is full: a new flow takes the oldest unanswered one's place.
    ct.create(&flow(5000), 3).unwrap();
    let c = ct.counters(2);
    assert_eq!((c.entries, c.evicted), (1024, 1));
    let first = flow_key(0x0a00_0000, VIP, 123, 80, PROTO_UDP);
    assert!(ct.lookup(first, true, None, 4).is_none());
    // Removals give the room back: after a flush the whole table is free.
    ct.flush();
    for i in 0..1024 {
        ct.create(&flow(i), 5).unwrap();
    }
    let c = ct.counters(5);
    assert_eq!((c.entries, c.evicted, c.full), (1024, 1, 0));
}

#[test]
fn a_record_with_its_key_is_48_bytes() {
    // ARCHITECTURE.md: a record does not store the other direction's key.
    assert_eq!(std::mem::size_of::<(u128, super::shard::Rec)>(), 48);
}

#[test]
fn a_records_other_key_is_the_other_records_key() {
    let ct = Conntrack::new(1024);
    let f = NewFlow {
        proto: 6,
        client: (0x0af4_010a, 40000),
        front: (0x0a60_000a, 80),
        backend: (0x0af4_0214, 8080),
        snat: Some(0xc0a8_0005),
        service: 1,
    };
    ct.create(&f, 1).unwrap();
    let s = lock(&ct.shards[ct.port_shard(40000)]);
    assert_eq!(s.map.len(), 2);
    for (&k, r) in &s.map {
        let other = s.map.get(&r.other(k)).expect("the other record");
        assert_ne!(other.orig, r.orig);
        assert!(Arc::ptr_eq(&other.flow, &r.flow));
    }
}

/// `n` TCP flows from one client port (so all in one shard), client
/// addresses `C + i`.
fn one_port_flows(ct: &Conntrack, n: u32) -> Vec<u128> {
    (0..n)
        .map(|i| {
            let mut f = new_flow(5000, PROTO_TCP);
            f.client.0 = C + i;
            ct.create(&f, 0).unwrap();
            flow_key(C + i, VIP, 5000, 80, PROTO_TCP)
        })
        .collect()
}

#[test]
fn a_walk_sees_every_record_that_stays_once_while_others_come_and_go() {
    let ct = Conntrack::new(1 << 16);
    let keys = one_port_flows(&ct, 5000);
    let shard = ct.port_shard(5000);
    let mut stays = std::collections::HashSet::new();
    {
        let s = lock(&ct.shards[shard]);
        for (i, k) in keys.iter().enumerate() {
            if i % 2 == 0 {
                stays.insert(*k);
                stays.insert(s.map[k].other(*k));
            }
        }
    }
    // While the walk runs, as workers would between (and, here, within)
    // steps: the flows of odd clients end, new flows come.
    let mut seen = std::collections::HashSet::new();
    let mut visits = 0;
    let mut ending = keys.iter().skip(1).step_by(2);
    let mut added = 0u32;
    ct.walk(
        |s, k| {
            assert!(seen.insert(k), "a record visited twice");
            visits += 1;
            if visits % 3 == 0
                && let Some(&gone) = ending.next()
            {
                let other = s.map[&gone].other(gone);
                s.remove_flow(gone, other);
            }
            if visits % 5 == 0 {
                let flow = Arc::new(Flow::new(1, 1, PROTO_TCP, 0));
                let nat = Nat {
                    src: 1,
                    sport: 2,
                    dst: 3,
                    dport: 4,
                };
                s.insert(flow_key(1, 2, 3, 4 + added as u16, 17), false, nat, flow);
                added += 1;
            }
        },
        |s| s.check(),
    );
    let missed = stays.iter().filter(|k| !seen.contains(k)).count();
    assert_eq!(missed, 0, "records that stayed but were not visited");
    assert!(added > 100 && ending.next().is_none());
    lock(&ct.shards[shard]).check();
}

#[test]
fn walks_of_one_crowded_shard_remove_and_report_every_flow() {
    let ct = Conntrack::new(1 << 16);
    let keys = one_port_flows(&ct, 10_000);
    let shard = ct.port_shard(5000);
    assert_eq!(lock(&ct.shards[shard]).map.len(), 20_000);
    // Answer half, so that half stays beyond the unanswered timeout.
    for k in keys.iter().step_by(2) {
        let (src, ..) = flow_parts(*k);
        let reply = flow_key(B, src, 8080, 5000, PROTO_TCP);
        ct.lookup(reply, false, Some(tcp_flags::SYN | tcp_flags::ACK), 1)
            .unwrap();
        ct.lookup(*k, true, Some(tcp_flags::ACK), 1).unwrap();
    }
    let c = ct.counters(2);
    assert_eq!((c.entries, c.embryonic), (10_000, 5_000));
    let listed = ct.flows(2);
    assert_eq!(listed.len(), 10_000);
    assert!(listed.windows(2).all(|w| w[0].orig < w[1].orig));
    assert_eq!(ct.sweep(TCP_SYN_SENT_MS + 2), 5_000);
    lock(&ct.shards[shard]).check();
    assert_eq!(ct.counters(TCP_SYN_SENT_MS + 2).entries, 5_000);
    assert_eq!(ct.flows(TCP_SYN_SENT_MS + 2).len(), 5_000);
    assert!(
        lock(&ct.shards[shard]).young.is_empty(),
        "the sweep trims the eviction queue of answered and removed flows"
    );
    ct.forget_services(&[7]);
    assert_eq!(ct.counters(TCP_SYN_SENT_MS + 2).entries, 0);
    one_port_flows(&ct, 300);
    ct.flush();
    let s = lock(&ct.shards[shard]);
    assert!(s.map.is_empty() && s.flows == 0);
    assert!(
        s.keys.is_empty() && s.holes.is_empty(),
        "an empty shard's list starts again"
    );
    s.check();
}

#[test]
fn a_hairpin_whose_reply_tuple_is_its_own_tuple_gets_another_port() {
    // A pod reaches a NodePort (node address, port 30080) whose endpoint is
    // itself on that same port, source-NATed to the node address: the reply
    // tuple with the client's own port would be the original tuple.
    let ct = Conntrack::new(1024);
    let (pod, node) = (0x0af4_0105, 0xc0a8_0005);
    let f = NewFlow {
        proto: PROTO_TCP,
        client: (pod, 30080),
        front: (node, 30080),
        backend: (pod, 30080),
        snat: Some(node),
        service: 3,
    };
    let nat = ct.create(&f, 1).unwrap();
    assert_ne!(nat.sport, 30080, "the client's port is translated");
    {
        let s = lock(&ct.shards[ct.port_shard(30080)]);
        assert_eq!(s.map.len(), 2, "both records kept");
        s.check();
    }
    // The pod, as the endpoint, answers the node address's new port.
    let reply = flow_key(pod, node, 30080, nat.sport, PROTO_TCP);
    assert_eq!(
        ct.lookup(reply, false, Some(tcp_flags::SYN | tcp_flags::ACK), 2),
        Some(Hit::Reply {
            nat: Nat {
                src: node,
                sport: 30080,
                dst: pod,
                dport: 30080
            }
        })
    );
}

#[test]
fn the_sweep_compacts_the_eviction_queue_keeping_order() {
    let ct = Conntrack::new(1 << 16);
    let keys = one_port_flows(&ct, 3000);
    let shard = ct.port_shard(5000);
    // Establish every third flow (answered, then confirmed by the client);
    // queue some keys twice, as reused tuples do.
    for k in keys.iter().step_by(3) {
        let (src, ..) = flow_parts(*k);
        let reply = flow_key(B, src, 8080, 5000, PROTO_TCP);
        ct.lookup(reply, false, Some(tcp_flags::SYN | tcp_flags::ACK), 1)
            .unwrap();
        ct.lookup(*k, true, Some(tcp_flags::ACK), 1).unwrap();
    }
    lock(&ct.shards[shard])
        .young
        .extend(keys[..100].iter().copied());
    assert_eq!(ct.sweep(2), 0);
    let s = lock(&ct.shards[shard]);
    let want: Vec<u128> = keys
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, k)| *k)
        .collect();
    assert_eq!(s.young.iter().copied().collect::<Vec<_>>(), want);
    assert_eq!(s.compacting, 0);
    s.check();
}

/// Random operations on one crowded shard, as workers and the controller
/// interleave them: after each, every unanswered flow is queued for
/// eviction and the pass state is consistent (`Shard::check`).
#[test]
fn the_eviction_queue_survives_interleaved_passes_evictions_and_reuse() {
    let ct = Conntrack::new(512);
    let shard = ct.port_shard(5000);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for i in 0..20_000u64 {
        let client = C + (next() % 600) as u32;
        let mut f = new_flow(5000, PROTO_TCP);
        f.client.0 = client;
        match next() % 6 {
            // A new flow, or a reused tuple (a full table evicts).
            0 | 1 => {
                let _ = ct.create(&f, i);
            }
            // An answer.
            2 => {
                let reply = flow_key(B, client, 8080, 5000, PROTO_TCP);
                let _ = ct.lookup(reply, false, Some(tcp_flags::SYN | tcp_flags::ACK), i);
            }
            // A step of the compaction pass, as the sweep makes them.
            3 => {
                lock(&ct.shards[shard]).compact_young(1 + (next() % 70) as usize);
            }
            // An eviction.
            4 => {
                lock(&ct.shards[shard]).evict_one(i);
            }
            _ => ct.kill(flow_key(client, VIP, 5000, 80, PROTO_TCP)),
        }
        lock(&ct.shards[shard]).check();
    }
    assert!(ct.counters(20_000).evicted > 0);
}

#[test]
fn pages_of_the_list_join_into_the_whole_list() {
    let ct = Conntrack::new(1 << 16);
    // Flows from two client ports, so in two shards: a page spans shards.
    one_port_flows(&ct, 1_000);
    for i in 0..1_000 {
        let mut f = new_flow(6000, PROTO_TCP);
        f.client.0 = C + i;
        ct.create(&f, 0).unwrap();
    }
    let whole: Vec<u128> = ct.flows(1).iter().map(|f| f.orig).collect();
    assert_eq!(whole.len(), 2_000);
    for limit in [7, 1_000, 1_999, 2_000, 10_000] {
        let (mut joined, mut after, mut pages) = (Vec::new(), None, 0);
        loop {
            let (page, more) = ct.flows_page(1, after, limit);
            assert!(page.len() <= limit);
            pages += 1;
            joined.extend(page.iter().map(|f| f.orig));
            if !more {
                break;
            }
            after = Some(page.last().expect("a page before more").orig);
        }
        assert_eq!(joined, whole, "limit {limit}");
        assert_eq!(pages, whole.len().div_ceil(limit), "limit {limit}");
    }
    // A cursor past the end: an empty last page.
    let (page, more) = ct.flows_page(1, Some(u128::MAX), 10);
    assert!(page.is_empty() && !more);
}
