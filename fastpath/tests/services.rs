//! Kubernetes Services as pods and the network see them: connections to a
//! VIP reach an endpoint and its answers come back from the VIP, flows
//! spread over endpoints and keep theirs while it is listed, refusals when
//! there is none, ClientIP affinity, hairpin, NodePort, endpoints and
//! clients behind VXLAN, ICMP errors about translated packets, flows that
//! cross workers, a full connection table, bad input to a VIP, and TCP
//! state.
//!
//! Every test runs over memory ports with the test playing the controller
//! (see `common`). Frames are built with etherparse's `PacketBuilder`, and
//! what the switch sends is parsed back with etherparse ([`parse`] checks
//! the IPv4, TCP, UDP and ICMP checksums against etherparse's own).
//!
//! The switch of every test ([`switch`]):
//!
//! ```text
//! port 0  pod A  10.244.1.10  02:00:00:00:00:0a   the client; subnet 10.244.1.0/24, router 10.244.1.1
//! port 1  pod B  10.244.2.20  02:00:00:00:00:0b   subnet 10.244.2.0/24, router 10.244.2.1
//! port 2  pod C  10.244.1.11  02:00:00:00:00:0c   (A's subnet)
//! port 3  pod D  10.244.2.21  02:00:00:00:00:0d
//! port 4  uplink: the node 192.168.0.5 (NIC 02:77:00:00:00:05), outside
//!         clients 192.168.0.77 and .78, and a remote node's VTEP
//!         192.168.0.2 (VNI 42) with pods 10.244.3.0/24 (see `add_uplink`)
//! ```
//!
//! Routes are the router's `Local` /32s and pod /32 `Peer` routes (pods
//! declared with `--ip` and `--mac`), so no packet ever waits for ARP;
//! the uplink's subnet is added where a test needs it. The Service is
//! 10.96.0.10:80/TCP with endpoints on port 8080 of the pods.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{Config, TestSwitch, XorShift, fix_ipv4_checksum, key};
use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{
    Icmpv4Type, Ipv4Header, LinkSlice, NetSlice, PacketBuilder, SlicedPacket, TcpHeader,
    TransportSlice, UdpHeader,
};
use fastpath::PortId;
use fastpath::clock;
use fastpath::conntrack::{FlowState, flow_key};
use fastpath::drop::DropReason;
use fastpath::maglev::DEFAULT_MIN_SIZE;
use fastpath::neigh::NeighEvent;
use fastpath::route::{Link, NextHop};
use fastpath::service::{PROTO_TCP, PROTO_UDP, Service, endpoint};
use fastpath::snapshot::PortRole;
use fastpath::stage::service::tuple_hash;
use fastpath::worker::WorkerEvent;

const ROUTER: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
/// The uplink NIC's own MAC: NodePort traffic is addressed to it.
const NODE_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x05];
const EXT_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x4d];
const EXT2_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x4e];
/// The remote node's VTEP on the uplink's subnet.
const VTEP_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x02];
/// The router MAC of the remote node's switch.
const REMOTE_ROUTER: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 1];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Pod {
    port: PortId,
    mac: [u8; 6],
    ip: [u8; 4],
}

const A: Pod = Pod {
    port: 0,
    mac: [2, 0, 0, 0, 0, 0x0a],
    ip: [10, 244, 1, 10],
};
const B: Pod = Pod {
    port: 1,
    mac: [2, 0, 0, 0, 0, 0x0b],
    ip: [10, 244, 2, 20],
};
const C: Pod = Pod {
    port: 2,
    mac: [2, 0, 0, 0, 0, 0x0c],
    ip: [10, 244, 1, 11],
};
const D: Pod = Pod {
    port: 3,
    mac: [2, 0, 0, 0, 0, 0x0d],
    ip: [10, 244, 2, 21],
};
const PODS: [Pod; 4] = [A, B, C, D];
const UPLINK: PortId = 4;

const GW_1: [u8; 4] = [10, 244, 1, 1];
const GW_2: [u8; 4] = [10, 244, 2, 1];
const NODE_IP: [u8; 4] = [192, 168, 0, 5];
const EXT_IP: [u8; 4] = [192, 168, 0, 77];
const EXT2_IP: [u8; 4] = [192, 168, 0, 78];
const VTEP: [u8; 4] = [192, 168, 0, 2];
const VNI: u32 = 42;
/// Pods on the remote node (10.244.3.0/24, behind the VXLAN route).
const REMOTE_POD: [u8; 4] = [10, 244, 3, 30];
const REMOTE_CLIENT: [u8; 4] = [10, 244, 3, 31];

const VIP: [u8; 4] = [10, 96, 0, 10];
const VPORT: u16 = 80;
const BPORT: u16 = 8080;
const NODE_PORT: u16 = 30080;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
/// Sequence and acknowledgment numbers of every test segment.
const SEQ: u32 = 1000;
const ACK_NO: u32 = 5000;

/// Offsets in an Ethernet + IPv4 (no options) frame.
const IP: usize = 14;
const L4: usize = IP + 20;

fn v4(a: [u8; 4]) -> u32 {
    u32::from_be_bytes(a)
}

// ---------------------------------------------------------------------------
// The switch and its Services.

fn switch() -> TestSwitch {
    switch_with(Config::default(), |_| 0)
}

/// The switch of the module documentation, port `id` on worker `owner(id)`.
fn switch_with(cfg: Config, owner: fn(PortId) -> usize) -> TestSwitch {
    let mut sw = TestSwitch::new(cfg);
    for id in 0..=UPLINK {
        sw.add_port_on(owner(id), id);
    }
    sw.configure_port(UPLINK, |e| e.role = PortRole::Uplink);
    sw.l3.router_mac = key(ROUTER);
    sw.l3.addrs4 = vec![(v4(GW_1), 24), (v4(GW_2), 24)];
    let ip = |a| std::net::IpAddr::from(a);
    for gw in [GW_1, GW_2] {
        sw.l3.routes.insert(ip(gw), 32, NextHop::Local);
    }
    for p in PODS {
        let hop = NextHop::Peer {
            port: p.port,
            mac: key(p.mac),
        };
        sw.l3.routes.insert(ip(p.ip), 32, hop);
    }
    sw.publish();
    sw
}

/// The node's network on the uplink (192.168.0.0/24, the node at
/// 192.168.0.5) with two outside clients and the remote VTEP known
/// neighbours, and the remote node's pods behind a VXLAN route.
fn add_uplink(sw: &mut TestSwitch) {
    let ip = |a| std::net::IpAddr::from(a);
    let hop = NextHop::Resolve {
        link: Link::Port(UPLINK),
        gw: None,
    };
    sw.l3.routes.insert(ip([192, 168, 0, 0]), 24, hop);
    let tunnel = NextHop::Vxlan {
        vtep: v4(VTEP),
        vni: VNI,
    };
    sw.l3.routes.insert(ip([10, 244, 3, 0]), 24, tunnel);
    sw.l3.vteps = vec![v4(NODE_IP)];
    sw.l3.vtep_src = Some(v4(NODE_IP));
    sw.l3.vnis = vec![VNI];
    let events = [(EXT_IP, EXT_MAC), (EXT2_IP, EXT2_MAC), (VTEP, VTEP_MAC)]
        .map(|(a, m)| {
            WorkerEvent::Neighbour(NeighEvent {
                ip: ip(a),
                mac: key(m),
                port: UPLINK,
            })
        })
        .to_vec();
    sw.learn_neighbours(events);
}

/// `inner` (an Ethernet frame) inside VXLAN from the remote VTEP.
fn vxlan_in(inner: &[u8]) -> Vec<u8> {
    let v = VNI.to_be_bytes();
    let mut payload = vec![0x08, 0, 0, 0, v[1], v[2], v[3], 0];
    payload.extend_from_slice(inner);
    udp(
        (VTEP_MAC, NODE_MAC),
        (VTEP, 49999),
        (NODE_IP, 4789),
        &payload,
    )
}

/// The frame inside VXLAN that `o` carries to the remote VTEP, parsed.
#[track_caller]
fn vxlan_out(o: &Out) -> Out {
    assert_eq!((o.port, o.dst, o.src), (UPLINK, VTEP_MAC, ROUTER));
    assert_eq!((o.ip.source, o.ip.destination), (NODE_IP, VTEP));
    assert_eq!(o.ports().1, 4789, "VXLAN");
    assert_eq!(&o.payload[..8], &[0x08, 0, 0, 0, 0, 0, 42, 0], "VNI 42");
    parse(UPLINK, &o.payload[8..])
}

fn endpoints(pods: &[Pod]) -> Vec<u64> {
    pods.iter().map(|p| endpoint(v4(p.ip), BPORT)).collect()
}

/// The Service VIP:80/TCP with endpoints `ready` and `terminating`.
fn service(ready: &[Pod], terminating: &[Pod]) -> Service {
    Service::new(
        v4(VIP),
        VPORT,
        PROTO_TCP,
        endpoints(ready),
        endpoints(terminating),
        DEFAULT_MIN_SIZE,
    )
}

/// The Service VIP:53/UDP with ready endpoints `ready`.
fn dns_service(ready: &[Pod]) -> Service {
    Service::new(
        v4(VIP),
        53,
        PROTO_UDP,
        endpoints(ready),
        vec![],
        DEFAULT_MIN_SIZE,
    )
}

/// Adds (or replaces) a Service and publishes.
fn set_service(sw: &mut TestSwitch, svc: Service) {
    sw.services.insert(Arc::new(svc));
    sw.publish();
}

// ---------------------------------------------------------------------------
// Frames in.

/// A TCP segment (sequence [`SEQ`], acknowledgment [`ACK_NO`] if `flags`
/// has ACK); etherparse fills in lengths and checksums.
fn tcp(
    macs: ([u8; 6], [u8; 6]),
    from: ([u8; 4], u16),
    to: ([u8; 4], u16),
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut h = TcpHeader::new(from.1, to.1, SEQ, 64240);
    h.fin = flags & FIN != 0;
    h.syn = flags & SYN != 0;
    h.rst = flags & RST != 0;
    h.psh = flags & PSH != 0;
    h.ack = flags & ACK != 0;
    h.acknowledgment_number = if h.ack { ACK_NO } else { 0 };
    let mut out = Vec::new();
    PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(from.0, to.0, 64)
        .tcp_header(h)
        .write(&mut out, payload)
        .unwrap();
    out
}

fn udp(macs: ([u8; 6], [u8; 6]), from: ([u8; 4], u16), to: ([u8; 4], u16), data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(from.0, to.0, 64)
        .udp(from.1, to.1)
        .write(&mut out, data)
        .unwrap();
    out
}

/// A segment from pod `p`'s port `sport` to the VIP, sent to the router.
fn to_vip(p: Pod, sport: u16, flags: u8) -> Vec<u8> {
    tcp((p.mac, ROUTER), (p.ip, sport), (VIP, VPORT), flags, b"")
}

/// A segment from endpoint `p` (port 8080) to `to`, sent to the router.
fn from_backend(p: Pod, to: ([u8; 4], u16), flags: u8) -> Vec<u8> {
    tcp((p.mac, ROUTER), (p.ip, BPORT), to, flags, b"")
}

// ---------------------------------------------------------------------------
// Frames out.

/// A frame the switch sent, parsed; [`parse`] has checked its checksums.
#[derive(Debug)]
struct Out {
    port: PortId,
    dst: [u8; 6],
    src: [u8; 6],
    ip: Ipv4Header,
    tcp: Option<TcpHeader>,
    udp: Option<UdpHeader>,
    icmp: Option<Icmpv4Type>,
    payload: Vec<u8>,
}

impl Out {
    fn from(&self) -> ([u8; 4], u16) {
        (self.ip.source, self.ports().0)
    }
    fn to(&self) -> ([u8; 4], u16) {
        (self.ip.destination, self.ports().1)
    }
    fn ports(&self) -> (u16, u16) {
        match (&self.tcp, &self.udp) {
            (Some(t), _) => (t.source_port, t.destination_port),
            (_, Some(u)) => (u.source_port, u.destination_port),
            _ => panic!("neither TCP nor UDP: {self:?}"),
        }
    }
    fn tcp(&self) -> &TcpHeader {
        self.tcp.as_ref().expect("a TCP segment")
    }
    /// The pod the frame went to.
    fn pod(&self) -> Pod {
        *PODS
            .iter()
            .find(|p| p.port == self.port)
            .expect("sent to a pod port")
    }
}

/// Parses frame `f` sent on `port`: an IPv4 packet whose header, TCP, UDP
/// and ICMP checksums must equal etherparse's computation.
#[track_caller]
fn parse(port: PortId, f: &[u8]) -> Out {
    let p = SlicedPacket::from_ethernet(f).unwrap_or_else(|e| panic!("{e}: {f:02x?}"));
    let Some(LinkSlice::Ethernet2(eth)) = &p.link else {
        panic!("not Ethernet II: {f:02x?}")
    };
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4: {f:02x?}")
    };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
    let mut out = Out {
        port,
        dst: eth.destination(),
        src: eth.source(),
        ip: h.clone(),
        tcp: None,
        udp: None,
        icmp: None,
        payload: Vec::new(),
    };
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            let th = t.to_header();
            let want = th.calc_checksum_ipv4(&h, t.payload()).unwrap();
            assert_eq!(th.checksum, want, "TCP checksum");
            out.payload = t.payload().to_vec();
            out.tcp = Some(th);
        }
        Some(TransportSlice::Udp(u)) => {
            let uh = u.to_header();
            if uh.checksum != 0 {
                let want = uh.calc_checksum_ipv4(&h, u.payload()).unwrap();
                assert_eq!(uh.checksum, want, "UDP checksum");
            }
            out.payload = u.payload().to_vec();
            out.udp = Some(uh);
        }
        Some(TransportSlice::Icmpv4(i)) => {
            let mut check = i.header();
            check.update_checksum(i.payload());
            assert_eq!(i.checksum(), check.checksum, "ICMP checksum");
            out.payload = i.payload().to_vec();
            out.icmp = Some(i.icmp_type());
        }
        other => panic!("unexpected transport {other:?}"),
    }
    out
}

/// Every frame the switch sent since the last take, with its port.
fn take_all(sw: &TestSwitch) -> Vec<(PortId, Vec<u8>)> {
    sw.port_ids()
        .into_iter()
        .flat_map(|id| sw.take_sent(id).into_iter().map(move |f| (id, f)))
        .collect()
}

/// Injects `f` on `port`, runs the switch and returns the one frame it
/// sent (on whichever port), parsed.
#[track_caller]
fn send(sw: &mut TestSwitch, port: PortId, f: Vec<u8>) -> Out {
    sw.inject(port, f);
    sw.run();
    let mut sent = take_all(sw);
    assert_eq!(sent.len(), 1, "one frame out expected: {sent:02x?}");
    let (port, f) = sent.pop().unwrap();
    parse(port, &f)
}

/// Injects `f` on `port` and asserts that nothing at all comes out.
#[track_caller]
fn send_nothing_out(sw: &mut TestSwitch, port: PortId, f: Vec<u8>) {
    sw.inject(port, f);
    sw.run();
    let sent = take_all(sw);
    assert!(sent.is_empty(), "nothing should leave: {sent:02x?}");
}

/// Asserts the Ethernet and IP addresses, ports and TTL of a frame out.
#[track_caller]
fn assert_frame(
    o: &Out,
    port: PortId,
    macs: ([u8; 6], [u8; 6]),
    from: ([u8; 4], u16),
    to: ([u8; 4], u16),
    ttl: u8,
) {
    assert_eq!(o.port, port, "output port");
    assert_eq!((o.dst, o.src), macs, "Ethernet addresses");
    assert_eq!(o.from(), from, "source address and port");
    assert_eq!(o.to(), to, "destination address and port");
    assert_eq!(o.ip.time_to_live, ttl, "TTL");
}

/// Opens a connection from `client`'s port `sport` to the VIP: the SYN
/// reaches an endpoint (returned with the source port it sees), whose
/// SYN-ACK reaches the client from the VIP.
#[track_caller]
fn connect(sw: &mut TestSwitch, client: Pod, sport: u16) -> (Pod, u16) {
    let o = send(sw, client.port, to_vip(client, sport, SYN));
    let (backend, seen) = (o.pod(), o.from().1);
    assert_frame(
        &o,
        backend.port,
        (backend.mac, ROUTER),
        (client.ip, seen),
        (backend.ip, BPORT),
        63,
    );
    let r = send(
        sw,
        backend.port,
        from_backend(backend, (client.ip, seen), SYN | ACK),
    );
    assert_frame(
        &r,
        client.port,
        (client.mac, ROUTER),
        (VIP, VPORT),
        (client.ip, sport),
        63,
    );
    (backend, seen)
}

/// The endpoint that a new segment from `client`'s `sport` to the VIP
/// reaches (asserting that it reaches exactly one, DNATed).
#[track_caller]
fn backend_of(sw: &mut TestSwitch, client: Pod, sport: u16, flags: u8) -> Pod {
    let o = send(sw, client.port, to_vip(client, sport, flags));
    let b = o.pod();
    assert_eq!(o.to(), (b.ip, BPORT), "DNATed to the endpoint");
    assert_eq!(o.ip.source, client.ip, "source kept");
    b
}

// ---------------------------------------------------------------------------
// 1. Forward and reply.

#[test]
fn a_connection_to_a_vip_reaches_a_routed_endpoint_and_the_reply_comes_from_the_vip() {
    let mut sw = switch();
    set_service(&mut sw, service(&[B], &[]));

    // The client's SYN and a data segment, DNATed and routed to B.
    let o = send(&mut sw, A.port, to_vip(A, 40000, SYN));
    assert_frame(
        &o,
        B.port,
        (B.mac, ROUTER),
        (A.ip, 40000),
        (B.ip, BPORT),
        63,
    );
    let t = o.tcp();
    assert!(t.syn && !t.ack && t.sequence_number == SEQ);
    let data = tcp(
        (A.mac, ROUTER),
        (A.ip, 40000),
        (VIP, VPORT),
        PSH | ACK,
        b"GET / HTTP/1.1\r\n\r\n",
    );
    let o = send(&mut sw, A.port, data);
    assert_frame(
        &o,
        B.port,
        (B.mac, ROUTER),
        (A.ip, 40000),
        (B.ip, BPORT),
        63,
    );
    assert_eq!(o.payload, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(o.tcp().acknowledgment_number, ACK_NO);

    // B's answers come back from the VIP, routed to A.
    let reply = tcp(
        (B.mac, ROUTER),
        (B.ip, BPORT),
        (A.ip, 40000),
        PSH | ACK,
        b"HTTP/1.1 200 OK\r\n\r\nhello, odd",
    );
    let o = send(&mut sw, B.port, reply);
    assert_frame(&o, A.port, (A.mac, ROUTER), (VIP, VPORT), (A.ip, 40000), 63);
    assert_eq!(o.payload, b"HTTP/1.1 200 OK\r\n\r\nhello, odd");

    let flows = sw.conntrack.flows(clock::now_ms());
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].state, FlowState::Established);
    assert_eq!(flows[0].backend, endpoint(v4(B.ip), BPORT));
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn an_endpoint_on_the_clients_subnet_answers_it_at_l2_from_the_vip() {
    let mut sw = switch();
    set_service(&mut sw, service(&[C], &[]));
    sw.teach(A.port, A.mac);

    let o = send(&mut sw, A.port, to_vip(A, 40001, SYN));
    assert_frame(
        &o,
        C.port,
        (C.mac, ROUTER),
        (A.ip, 40001),
        (C.ip, BPORT),
        63,
    );
    // C sends its answer straight to A's MAC: the bridge switches it,
    // translated back on the way, TTL untouched.
    let reply = tcp((C.mac, A.mac), (C.ip, BPORT), (A.ip, 40001), SYN | ACK, b"");
    let o = send(&mut sw, C.port, reply);
    assert_frame(&o, A.port, (A.mac, C.mac), (VIP, VPORT), (A.ip, 40001), 64);
    assert!(o.tcp().syn && o.tcp().ack);
    // A packet from C that answers nothing is left alone.
    let o = send(
        &mut sw,
        C.port,
        tcp((C.mac, A.mac), (C.ip, BPORT), (A.ip, 40999), ACK, b""),
    );
    assert_eq!((o.from(), o.to()), ((C.ip, BPORT), (A.ip, 40999)));
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn udp_to_a_vip_is_translated_both_ways_and_a_missing_checksum_stays_missing() {
    let mut sw = switch();
    let dns = dns_service(&[B]);
    set_service(&mut sw, dns);
    let q = udp((A.mac, ROUTER), (A.ip, 5353), (VIP, 53), b"query, odd len");
    let o = send(&mut sw, A.port, q);
    assert_frame(&o, B.port, (B.mac, ROUTER), (A.ip, 5353), (B.ip, BPORT), 63);
    assert_ne!(
        o.udp.as_ref().unwrap().checksum,
        0,
        "checksum kept (and valid)"
    );
    assert_eq!(o.payload, b"query, odd len");
    let r = udp((B.mac, ROUTER), (B.ip, BPORT), (A.ip, 5353), b"answer");
    let o = send(&mut sw, B.port, r);
    assert_frame(&o, A.port, (A.mac, ROUTER), (VIP, 53), (A.ip, 5353), 63);
    assert_ne!(o.udp.as_ref().unwrap().checksum, 0);

    // A datagram without a checksum (0) is translated without one.
    let mut q = udp((A.mac, ROUTER), (A.ip, 5354), (VIP, 53), b"no sum");
    q[L4 + 6..L4 + 8].copy_from_slice(&[0, 0]);
    let o = send(&mut sw, A.port, q);
    assert_eq!((o.port, o.to()), (B.port, (B.ip, BPORT)));
    assert_eq!(o.udp.as_ref().unwrap().checksum, 0);
    let flows = sw.conntrack.flows(clock::now_ms());
    assert!(
        flows.iter().all(|f| f.state == FlowState::Open),
        "{flows:?}"
    );
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn two_vips_sharing_an_endpoint_keep_one_client_port_apart() {
    const VIP2: [u8; 4] = [10, 96, 0, 11];
    let mut sw = switch();
    set_service(&mut sw, service(&[B], &[]));
    set_service(
        &mut sw,
        Service::new(
            v4(VIP2),
            VPORT,
            PROTO_TCP,
            endpoints(&[B]),
            vec![],
            DEFAULT_MIN_SIZE,
        ),
    );

    // The same client port to both VIPs: B would see one tuple twice, so
    // the second flow's source port is translated.
    let first = send(&mut sw, A.port, to_vip(A, 40000, SYN));
    let second = send(
        &mut sw,
        A.port,
        tcp((A.mac, ROUTER), (A.ip, 40000), (VIP2, VPORT), SYN, b""),
    );
    assert_eq!(first.from(), (A.ip, 40000));
    let p2 = second.from().1;
    assert_eq!(second.from().0, A.ip);
    assert_ne!(p2, 40000, "two flows with one tuple at the endpoint");
    assert_eq!(second.to(), (B.ip, BPORT));
    // Each answer comes back from the VIP it belongs to, to port 40000.
    let o = send(&mut sw, B.port, from_backend(B, (A.ip, 40000), SYN | ACK));
    assert_eq!((o.from(), o.to()), ((VIP, VPORT), (A.ip, 40000)));
    let o = send(&mut sw, B.port, from_backend(B, (A.ip, p2), SYN | ACK));
    assert_eq!((o.from(), o.to()), ((VIP2, VPORT), (A.ip, 40000)));
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 2. Spread.

#[test]
fn flows_spread_over_every_endpoint_and_a_tuple_always_gets_the_same_one() {
    let mut sw = switch();
    set_service(&mut sw, service(&[B, C, D], &[]));
    const FLOWS: u16 = 600;
    let mut chosen: HashMap<u16, Pod> = HashMap::new();
    for sport in 20000..20000 + FLOWS {
        sw.inject(A.port, to_vip(A, sport, SYN));
    }
    sw.run();
    for (port, f) in take_all(&sw) {
        let o = parse(port, &f);
        assert_eq!(o.to(), (o.pod().ip, BPORT));
        assert!(chosen.insert(o.from().1, o.pod()).is_none(), "{o:?}");
    }
    assert_eq!(chosen.len(), usize::from(FLOWS), "every SYN forwarded once");
    let mut per: HashMap<Pod, u32> = HashMap::new();
    for b in chosen.values() {
        *per.entry(*b).or_default() += 1;
    }
    // 200 each expected; the bounds are more than five standard deviations.
    for b in [B, C, D] {
        let n = per.get(&b).copied().unwrap_or(0);
        assert!((140..=260).contains(&n), "{:?}: {n} of {FLOWS}", b.ip);
    }

    // The same tuple again, tracked or (after a flush) not: same endpoint.
    for sport in (20000..20000 + FLOWS).step_by(7) {
        assert_eq!(backend_of(&mut sw, A, sport, ACK), chosen[&sport]);
    }
    sw.conntrack.flush();
    for sport in (20000..20000 + FLOWS).step_by(7) {
        assert_eq!(backend_of(&mut sw, A, sport, SYN), chosen[&sport]);
    }
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 3. Endpoint changes.

#[test]
fn established_flows_keep_their_endpoint_while_it_is_listed() {
    let mut sw = switch();
    set_service(&mut sw, service(&[B, C, D], &[]));
    let mut flows: Vec<(u16, Pod)> = Vec::new();
    for sport in 30000..30060 {
        flows.push((sport, connect(&mut sw, A, sport).0));
    }
    let on = |flows: &[(u16, Pod)], b: Pod| flows.iter().filter(|f| f.1 == b).count();
    assert!([B, C, D].iter().all(|&b| on(&flows, b) > 0), "{flows:?}");

    // D goes away: the flows of B and C stay where they are, D's move.
    set_service(&mut sw, service(&[B, C], &[]));
    for (sport, b) in &mut flows {
        let now = backend_of(&mut sw, A, *sport, PSH | ACK);
        if *b == D {
            assert_ne!(now, D, "a removed endpoint gets nothing");
            *b = now;
        } else {
            assert_eq!(now, *b, "flow from {sport} moved");
        }
    }

    // B terminates: its flows stay with it; new flows go to C only.
    set_service(&mut sw, service(&[C], &[B]));
    for &(sport, b) in &flows {
        assert_eq!(backend_of(&mut sw, A, sport, ACK), b, "flow from {sport}");
    }
    for sport in 31000..31040 {
        assert_eq!(backend_of(&mut sw, A, sport, SYN), C, "new flow {sport}");
    }

    // With no ready endpoint left, new flows go to the terminating one.
    set_service(&mut sw, service(&[], &[B]));
    for sport in 32000..32020 {
        assert_eq!(backend_of(&mut sw, A, sport, SYN), B, "new flow {sport}");
    }

    // B is removed entirely while C is ready again: B's flows move to C.
    set_service(&mut sw, service(&[C], &[]));
    let moved: Vec<u16> = flows
        .iter()
        .filter(|f| f.1 == B)
        .map(|f| f.0)
        .chain(32000..32020)
        .collect();
    assert!(moved.len() > 20);
    for sport in moved {
        assert_eq!(backend_of(&mut sw, A, sport, ACK), C, "flow from {sport}");
    }
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 4. No endpoints.

#[test]
fn a_service_without_endpoints_refuses_with_rst_or_port_unreachable() {
    let mut sw = switch();
    set_service(&mut sw, service(&[], &[]));
    let dns = dns_service(&[]);
    set_service(&mut sw, dns);

    // A SYN: RST|ACK from VIP:80, acknowledging the SYN.
    let o = send(&mut sw, A.port, to_vip(A, 40000, SYN));
    assert_frame(&o, A.port, (A.mac, ROUTER), (VIP, VPORT), (A.ip, 40000), 64);
    let t = o.tcp();
    assert!(t.rst && t.ack && !t.syn, "{t:?}");
    assert_eq!((t.sequence_number, t.acknowledgment_number), (0, SEQ + 1));

    // A segment with data and ACK: a bare RST whose sequence is the ACK.
    let data = tcp(
        (A.mac, ROUTER),
        (A.ip, 40001),
        (VIP, VPORT),
        PSH | ACK,
        b"abc",
    );
    let o = send(&mut sw, A.port, data);
    let t = o.tcp();
    assert!(t.rst && !t.ack, "{t:?}");
    assert_eq!(t.sequence_number, ACK_NO);
    assert_eq!(o.to(), (A.ip, 40001));

    // UDP: ICMP port unreachable from the VIP, quoting the datagram.
    // (Padded to the Ethernet minimum: the padding is not quoted.)
    let mut d = udp((A.mac, ROUTER), (A.ip, 5353), (VIP, 53), b"query?");
    let datagram = d[IP..].to_vec();
    d.resize(60, 0);
    let o = send(&mut sw, A.port, d);
    assert_eq!((o.port, o.dst, o.src), (A.port, A.mac, ROUTER));
    assert_eq!((o.ip.source, o.ip.destination), (VIP, A.ip));
    assert_eq!(
        o.icmp,
        Some(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::Port
        ))
    );
    assert_eq!(o.payload, datagram, "the whole datagram is quoted");

    // A RST is never answered (but counted).
    send_nothing_out(&mut sw, A.port, to_vip(A, 40002, RST));

    // A port the VIP does not serve is refused the same way (a SYN with
    // data: the RST acknowledges both).
    let o = send(
        &mut sw,
        A.port,
        tcp((A.mac, ROUTER), (A.ip, 40003), (VIP, 443), SYN, b"early"),
    );
    assert_eq!((o.from(), o.to()), ((VIP, 443), (A.ip, 40003)));
    assert!(o.tcp().rst && o.tcp().ack);
    assert_eq!(o.tcp().acknowledgment_number, SEQ + 1 + 5);
    assert!(o.payload.is_empty());
    let o = send(
        &mut sw,
        A.port,
        udp((A.mac, ROUTER), (A.ip, 5353), (VIP, 54), b"?"),
    );
    assert_eq!(
        o.icmp,
        Some(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::Port
        ))
    );
    assert_eq!(o.ip.source, VIP);

    sw.assert_drops(&[(A.port, DropReason::NoEndpoints, 6)]);
    assert_eq!(sw.conntrack.counters(clock::now_ms()).entries, 0);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 5. ClientIP affinity.

#[test]
fn client_ip_affinity_sends_a_client_to_one_endpoint_until_it_expires() {
    // Long enough that a stalled test thread cannot outlive it by accident.
    const AFFINITY_MS: u64 = 1000;
    let mut sw = switch();
    // C is the second client, so two endpoints.
    let mut svc = service(&[B, D], &[]);
    svc.affinity_ms = Some(AFFINITY_MS);
    let picks = svc.clone();
    set_service(&mut sw, svc);
    // Maglev's choice for a flow from A's `sport`, affinity aside.
    let maglev = |sport: u16| {
        let k = flow_key(v4(A.ip), v4(VIP), sport, VPORT, PROTO_TCP);
        picks.pick(tuple_hash(k)).unwrap()
    };

    let first = backend_of(&mut sw, A, 41000, SYN);
    let first_ep = endpoint(v4(first.ip), BPORT);
    let mut against_maglev = 0;
    for sport in 41001..41030 {
        assert_eq!(backend_of(&mut sw, A, sport, SYN), first, "port {sport}");
        against_maglev += u32::from(maglev(sport) != first_ep);
    }
    assert!(against_maglev > 0, "affinity never overrode Maglev");
    // Another client has an entry of its own.
    let c_first = backend_of(&mut sw, C, 41000, SYN);
    for sport in 41001..41010 {
        assert_eq!(
            backend_of(&mut sw, C, sport, SYN),
            c_first,
            "C's port {sport}"
        );
    }
    assert_eq!(sw.conntrack.counters(clock::now_ms()).affinity, 2);
    let remembered = |sw: &TestSwitch| {
        sw.conntrack
            .affinity(picks.key(), v4(A.ip), clock::now_ms())
    };
    assert_eq!(remembered(&sw), Some(first_ep));

    // After the timeout (a sleep, not a timing assertion) the entry is
    // gone, and a new flow goes where Maglev sends it.
    std::thread::sleep(Duration::from_millis(AFFINITY_MS + 100));
    assert_eq!(sw.conntrack.counters(clock::now_ms()).affinity, 0);
    assert_eq!(remembered(&sw), None);
    let sport = (42000..43000)
        .find(|&p| maglev(p) != first_ep)
        .expect("some port Maglev sends elsewhere");
    let b = backend_of(&mut sw, A, sport, SYN);
    assert_ne!(b, first, "the expired affinity still decided");
    assert_eq!(endpoint(v4(b.ip), BPORT), maglev(sport));
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 6. Hairpin.

#[test]
fn an_endpoint_reaching_itself_through_its_service_is_source_translated() {
    let mut sw = switch();
    set_service(&mut sw, service(&[B], &[]));

    // B → VIP comes back to B from its router address, out of its own port.
    let o = send(&mut sw, B.port, to_vip(B, 45000, SYN));
    let seen = o.from().1;
    assert_frame(&o, B.port, (B.mac, ROUTER), (GW_2, seen), (B.ip, BPORT), 63);
    assert!(o.tcp().syn);
    // B answers the router address; B sees the answer from the VIP.
    let o = send(&mut sw, B.port, from_backend(B, (GW_2, seen), SYN | ACK));
    assert_frame(&o, B.port, (B.mac, ROUTER), (VIP, VPORT), (B.ip, 45000), 63);
    assert!(o.tcp().syn && o.tcp().ack);
    let flows = sw.conntrack.flows(clock::now_ms());
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].state, FlowState::Established);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 7. NodePort.

#[test]
fn a_node_port_on_the_uplink_reaches_an_endpoint_and_answers_from_the_node() {
    let mut sw = switch();
    add_uplink(&mut sw);
    let mut svc = service(&[B], &[]);
    svc.node_port = Some(NODE_PORT);
    set_service(&mut sw, svc);

    let syn = tcp(
        (EXT_MAC, NODE_MAC),
        (EXT_IP, 50000),
        (NODE_IP, NODE_PORT),
        SYN,
        b"",
    );
    let o = send(&mut sw, UPLINK, syn);
    let seen = o.from().1;
    assert_frame(&o, B.port, (B.mac, ROUTER), (GW_2, seen), (B.ip, BPORT), 63);
    let o = send(&mut sw, B.port, from_backend(B, (GW_2, seen), SYN | ACK));
    assert_frame(
        &o,
        UPLINK,
        (EXT_MAC, ROUTER),
        (NODE_IP, NODE_PORT),
        (EXT_IP, 50000),
        63,
    );
    // A second client with the same source port gets a port of its own
    // at the endpoint, and its own answers.
    let syn2 = tcp(
        (EXT2_MAC, NODE_MAC),
        (EXT2_IP, 50000),
        (NODE_IP, NODE_PORT),
        SYN,
        b"",
    );
    let o = send(&mut sw, UPLINK, syn2);
    let seen2 = o.from().1;
    assert_eq!((o.port, o.from().0, o.to()), (B.port, GW_2, (B.ip, BPORT)));
    assert_ne!(seen2, seen, "two flows with one tuple at the endpoint");
    let o = send(&mut sw, B.port, from_backend(B, (GW_2, seen2), ACK));
    assert_frame(
        &o,
        UPLINK,
        (EXT2_MAC, ROUTER),
        (NODE_IP, NODE_PORT),
        (EXT2_IP, 50000),
        63,
    );
    let o = send(&mut sw, B.port, from_backend(B, (GW_2, seen), ACK));
    assert_eq!((o.dst, o.to()), (EXT_MAC, (EXT_IP, 50000)));
    // A pod may use the NodePort on the node's address too.
    let o = send(
        &mut sw,
        A.port,
        tcp(
            (A.mac, ROUTER),
            (A.ip, 40000),
            (NODE_IP, NODE_PORT),
            SYN,
            b"",
        ),
    );
    let seen3 = o.from().1;
    assert_eq!((o.port, o.from().0, o.to()), (B.port, GW_2, (B.ip, BPORT)));
    let o = send(&mut sw, B.port, from_backend(B, (GW_2, seen3), SYN | ACK));
    assert_frame(
        &o,
        A.port,
        (A.mac, ROUTER),
        (NODE_IP, NODE_PORT),
        (A.ip, 40000),
        63,
    );
    // The Service's own VIP works from the uplink too, source-translated
    // like NodePort traffic (an off-cluster client), and answered from the VIP.
    let o = send(
        &mut sw,
        UPLINK,
        tcp((EXT_MAC, ROUTER), (EXT_IP, 50001), (VIP, VPORT), SYN, b""),
    );
    assert_frame(
        &o,
        B.port,
        (B.mac, ROUTER),
        (GW_2, 50001),
        (B.ip, BPORT),
        63,
    );
    let o = send(&mut sw, B.port, from_backend(B, (GW_2, 50001), SYN | ACK));
    assert_eq!(
        (o.port, o.from(), o.to()),
        (UPLINK, (VIP, VPORT), (EXT_IP, 50001))
    );
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// Endpoints and clients behind VXLAN.

#[test]
fn a_remote_endpoint_is_reached_and_answers_through_the_tunnel() {
    let mut sw = switch();
    add_uplink(&mut sw);
    let svc = Service::new(
        v4(VIP),
        VPORT,
        PROTO_TCP,
        vec![endpoint(v4(REMOTE_POD), BPORT)],
        vec![],
        DEFAULT_MIN_SIZE,
    );
    set_service(&mut sw, svc);
    let o = send(&mut sw, A.port, to_vip(A, 40000, SYN));
    let inner = vxlan_out(&o);
    assert_eq!(
        (inner.from(), inner.to(), inner.ip.time_to_live),
        ((A.ip, 40000), (REMOTE_POD, BPORT), 63)
    );
    // The answer arrives inside VXLAN and is translated once unwrapped.
    let answer = tcp(
        (REMOTE_ROUTER, REMOTE_ROUTER),
        (REMOTE_POD, BPORT),
        (A.ip, 40000),
        SYN | ACK,
        b"",
    );
    let o = send(&mut sw, UPLINK, vxlan_in(&answer));
    assert_frame(&o, A.port, (A.mac, ROUTER), (VIP, VPORT), (A.ip, 40000), 63);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

/// A client on another node whose traffic to a VIP reaches this node
/// inside VXLAN (its own switch does not know the Service yet) is refused
/// like a local one, and the refusal must go back through the tunnel, as
/// the router's own ICMP errors about tunnelled packets do.
#[test]
fn a_tunnelled_client_is_refused_through_the_tunnel() {
    let mut sw = switch();
    add_uplink(&mut sw);
    set_service(&mut sw, service(&[], &[]));
    let syn = tcp(
        (REMOTE_ROUTER, REMOTE_ROUTER),
        (REMOTE_CLIENT, 40000),
        (VIP, VPORT),
        SYN,
        b"",
    );
    let o = send(&mut sw, UPLINK, vxlan_in(&syn));
    let rst = vxlan_out(&o);
    assert_eq!(
        (rst.from(), rst.to()),
        ((VIP, VPORT), (REMOTE_CLIENT, 40000))
    );
    assert!(rst.tcp().rst && rst.tcp().ack);
    sw.assert_drops(&[(UPLINK, DropReason::NoEndpoints, 1)]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// ICMP errors about translated packets.

/// The IPv4 header and first 8 bytes of the packet an ICMP error quotes:
/// (source, source port), (destination, destination port).
fn quoted(o: &Out) -> (([u8; 4], u16), ([u8; 4], u16)) {
    let q = &o.payload;
    let port = |at: usize| u16::from_be_bytes([q[at], q[at + 1]]);
    let ihl = usize::from(q[0] & 0x0f) * 4;
    let addr = |at: usize| [q[at], q[at + 1], q[at + 2], q[at + 3]];
    ((addr(12), port(ihl)), (addr(16), port(ihl + 2)))
}

/// A client matches an ICMP error to its socket by the packet it quotes:
/// for a packet to a VIP that the switch could not deliver (here: too big
/// for the endpoint's link, with DF set), the quote must show the VIP, as
/// Linux's NAT rewrites it (nf_nat_icmp_reply_translation); otherwise path
/// MTU discovery towards a Service fails.
#[test]
fn an_icmp_error_about_a_translated_packet_quotes_what_the_client_sent() {
    let mut sw = switch();
    set_service(&mut sw, service(&[B], &[]));
    sw.configure_port(B.port, |e| e.mtu = 1000);
    let big = tcp(
        (A.mac, ROUTER),
        (A.ip, 40000),
        (VIP, VPORT),
        ACK,
        &[0x55; 1200],
    );
    let o = send(&mut sw, A.port, big);
    assert_eq!(
        (o.port, o.ip.source, o.ip.destination),
        (A.port, GW_1, A.ip)
    );
    assert_eq!(
        o.icmp,
        Some(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1000 }
        ))
    );
    assert_eq!(quoted(&o), ((A.ip, 40000), (VIP, VPORT)), "the quote");
}

/// The same the other way: a reply too big for the client's link makes the
/// router's "fragmentation needed" reach the endpoint, quoting what the
/// endpoint sent (endpoint → client), so its path MTU discovery works.
#[test]
fn an_icmp_error_about_a_translated_reply_reaches_the_endpoint() {
    let mut sw = switch();
    set_service(&mut sw, service(&[B], &[]));
    let (b, seen) = connect(&mut sw, A, 40000);
    assert_eq!((b, seen), (B, 40000));
    sw.configure_port(A.port, |e| e.mtu = 1000);
    let big = tcp(
        (B.mac, ROUTER),
        (B.ip, BPORT),
        (A.ip, 40000),
        ACK,
        &[0x55; 1200],
    );
    let o = send(&mut sw, B.port, big);
    assert_eq!((o.port, o.ip.destination), (B.port, B.ip));
    assert_eq!(
        o.icmp,
        Some(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1000 }
        ))
    );
    assert_eq!(quoted(&o), ((B.ip, BPORT), (A.ip, 40000)), "the quote");
    // And a client's own error about a reply (sent to the VIP) reaches the
    // endpoint the same way.
    let reply = send(&mut sw, B.port, from_backend(B, (A.ip, 40000), ACK));
    assert_eq!(reply.from(), (VIP, VPORT));
    let mut quote = Vec::new();
    PacketBuilder::ipv4(VIP, A.ip, 63)
        .tcp(VPORT, 40000, SEQ, 64240)
        .write(&mut quote, &[])
        .unwrap();
    let mut err = Vec::new();
    PacketBuilder::ethernet2(A.mac, ROUTER)
        .ipv4(A.ip, VIP, 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::Port,
        ))
        .write(&mut err, &quote)
        .unwrap();
    let o = send(&mut sw, A.port, err);
    assert_eq!(
        (o.port, o.ip.source, o.ip.destination),
        (B.port, A.ip, B.ip)
    );
    assert_eq!(quoted(&o), ((B.ip, BPORT), (A.ip, 40000)), "the quote");
}

/// An endpoint's ICMP error about a packet of a flow (UDP to a port it
/// does not listen on) reaches the client from the VIP, quoting what the
/// client sent, so that the client's socket sees "connection refused".
#[test]
fn an_endpoints_icmp_error_about_a_flow_is_translated_back() {
    let mut sw = switch();
    let dns = dns_service(&[B]);
    set_service(&mut sw, dns);
    sw.inject(A.port, udp((A.mac, ROUTER), (A.ip, 5353), (VIP, 53), b"q"));
    sw.run();
    let at_b = sw.take_one(B.port);
    let mut err = Vec::new();
    PacketBuilder::ethernet2(B.mac, ROUTER)
        .ipv4(B.ip, A.ip, 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::Port,
        ))
        .write(&mut err, &at_b[IP..])
        .unwrap();
    let o = send(&mut sw, B.port, err);
    assert_eq!((o.port, o.ip.source, o.ip.destination), (A.port, VIP, A.ip));
    assert_eq!(quoted(&o), ((A.ip, 5353), (VIP, 53)), "the quote");
}

// ---------------------------------------------------------------------------
// 8. Across workers.

#[test]
fn a_flow_between_workers_is_translated_both_ways() {
    let mut sw = switch_with(
        Config {
            pools: vec![256, 256],
            ..Config::default()
        },
        |id| usize::from(id == B.port),
    );
    set_service(&mut sw, service(&[B], &[]));
    let (b, seen) = connect(&mut sw, A, 40000);
    assert_eq!((b, seen), (B, 40000));
    assert_eq!(sw.worker_stats(1, B.port).tx_packets, 1);
    assert_eq!(sw.worker_stats(0, A.port).tx_packets, 1);
    // More of the same flow, both ways.
    for _ in 0..3 {
        assert_eq!(backend_of(&mut sw, A, 40000, ACK), B);
        let o = send(&mut sw, B.port, from_backend(B, (A.ip, 40000), ACK));
        assert_eq!(
            (o.port, o.from(), o.to()),
            (A.port, (VIP, VPORT), (A.ip, 40000))
        );
    }
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 9. A full connection table.

#[test]
fn a_syn_flood_evicts_unanswered_flows_never_an_established_one() {
    // Four flows per shard.
    let limit = fastpath::conntrack::SHARDS * 4;
    let mut sw = switch_with(
        Config {
            ct_limit: limit,
            ..Config::default()
        },
        |_| 0,
    );
    set_service(&mut sw, service(&[B], &[]));
    assert_eq!(connect(&mut sw, A, 40000), (B, 40000));

    // C floods: every SYN is forwarded, evicting older unanswered ones.
    const FLOOD: u16 = 3000;
    for sport in 1024..1024 + FLOOD {
        sw.inject(C.port, to_vip(C, sport, SYN));
    }
    sw.run();
    let to_b = sw.take_sent(B.port);
    assert_eq!(to_b.len(), usize::from(FLOOD));
    sw.assert_silent_except(&[]);
    let c = sw.conntrack.counters(clock::now_ms());
    assert!(c.evicted >= u64::from(FLOOD) - limit as u64, "{c:?}");
    assert!(c.entries <= limit as u64, "{c:?}");
    assert_eq!(c.full, 0, "{c:?}");

    // A's flow still goes both ways.
    let o = send(&mut sw, A.port, to_vip(A, 40000, PSH | ACK));
    assert_eq!((o.port, o.to()), (B.port, (B.ip, BPORT)));
    let o = send(&mut sw, B.port, from_backend(B, (A.ip, 40000), ACK));
    assert_eq!(
        (o.port, o.from(), o.to()),
        (A.port, (VIP, VPORT), (A.ip, 40000))
    );
    let established: Vec<_> = sw
        .conntrack
        .flows(clock::now_ms())
        .into_iter()
        .filter(|f| f.state == FlowState::Established)
        .collect();
    assert_eq!(established.len(), 1);
    assert_eq!(
        established[0].orig,
        flow_key(v4(A.ip), v4(VIP), 40000, VPORT, PROTO_TCP)
    );
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn a_table_full_of_answered_flows_refuses_new_ones() {
    // One flow per shard: answered flows fill the table shard by shard.
    let limit = fastpath::conntrack::SHARDS;
    let mut sw = switch_with(
        Config {
            ct_limit: limit,
            ..Config::default()
        },
        |_| 0,
    );
    set_service(&mut sw, service(&[B], &[]));
    let mut tried = 0u64;
    let mut answered = Vec::new();
    for sport in 10000..20000u16 {
        if sw.conntrack.counters(clock::now_ms()).entries == limit as u64 {
            break;
        }
        tried += 1;
        sw.inject(A.port, to_vip(A, sport, SYN));
        sw.run();
        if let Some(f) = sw.take_sent(B.port).pop() {
            let seen = parse(B.port, &f).from().1;
            let o = send(&mut sw, B.port, from_backend(B, (A.ip, seen), SYN | ACK));
            assert_eq!(o.to(), (A.ip, sport));
            answered.push(sport);
        }
        sw.assert_silent_except(&[]);
    }
    assert_eq!(answered.len(), limit, "the table never filled");
    let refused = tried - limit as u64;
    sw.assert_drops(&[(A.port, DropReason::ConntrackFull, refused)]);

    // Every shard holds an answered flow: a new flow has nowhere to go.
    send_nothing_out(&mut sw, C.port, to_vip(C, 40000, SYN));
    sw.assert_drops(&[
        (A.port, DropReason::ConntrackFull, refused),
        (C.port, DropReason::ConntrackFull, 1),
    ]);
    let c = sw.conntrack.counters(clock::now_ms());
    assert_eq!(
        (c.entries, c.full, c.evicted),
        (limit as u64, refused + 1, 0)
    );
    // The answered flows still work.
    for &sport in answered.iter().step_by(9) {
        assert_eq!(backend_of(&mut sw, A, sport, ACK), B);
    }
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 10. Bad input.

#[test]
fn broken_packets_to_a_vip_are_malformed_and_fragments_are_refused() {
    let mut sw = switch();
    set_service(&mut sw, service(&[B], &[]));
    let dns = dns_service(&[B]);
    set_service(&mut sw, dns);
    let syn = || {
        tcp(
            (A.mac, ROUTER),
            (A.ip, 40000),
            (VIP, VPORT),
            SYN,
            b"0123456789",
        )
    };
    let dgram = || udp((A.mac, ROUTER), (A.ip, 5353), (VIP, 53), b"query");
    let set_total = |f: &mut Vec<u8>, total: u16| {
        f[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
        fix_ipv4_checksum(f);
    };
    let mut malformed: Vec<Vec<u8>> = Vec::new();
    // The TCP header cut short (IP length says so; the frame is padded).
    let mut f = syn();
    set_total(&mut f, 20 + 12);
    f.truncate(L4 + 12);
    f.resize(60, 0);
    malformed.push(f);
    // Data offsets below the header size and beyond the segment.
    for off in [4u8, 15] {
        let mut f = syn();
        f[L4 + 12] = off << 4;
        malformed.push(f);
    }
    // UDP length shorter and longer than the datagram.
    for len in [9u16, 40] {
        let mut f = dgram();
        f[L4 + 4..L4 + 6].copy_from_slice(&len.to_be_bytes());
        malformed.push(f);
    }
    // A bad IPv4 header checksum.
    let mut f = syn();
    f[IP + 10] ^= 0x5a;
    malformed.push(f);
    // Source port 0.
    let mut f = syn();
    f[L4..L4 + 2].copy_from_slice(&[0, 0]);
    malformed.push(f);
    // IP total length beyond the frame.
    let mut f = syn();
    let total = (f.len() - IP + 1) as u16;
    set_total(&mut f, total);
    malformed.push(f);

    let mut fragments: Vec<Vec<u8>> = Vec::new();
    for flags_frag in [0x2000u16, 0x0010, 0x4010, 0x2000 | 0x00b9] {
        for mut f in [syn(), dgram()] {
            f[IP + 6..IP + 8].copy_from_slice(&flags_frag.to_be_bytes());
            fix_ipv4_checksum(&mut f);
            fragments.push(f);
        }
    }
    let (nm, nf) = (malformed.len() as u64, fragments.len() as u64);
    for f in malformed.into_iter().chain(fragments) {
        sw.inject(A.port, f);
    }
    sw.run();
    sw.assert_silent_except(&[]);
    sw.assert_drops(&[
        (A.port, DropReason::Malformed, nm),
        (A.port, DropReason::IpFragment, nf),
    ]);
    assert_eq!(sw.conntrack.counters(clock::now_ms()).created, 0);

    // The well-formed originals go through.
    assert_eq!(backend_of(&mut sw, A, 40000, SYN), B);
    let o = send(&mut sw, A.port, dgram());
    assert_eq!(
        (o.port, o.to(), o.payload.as_slice()),
        (B.port, (B.ip, BPORT), &b"query"[..])
    );
    sw.assert_no_leaks();
}

/// A mutation of `base`: some bytes after the Ethernet header changed at
/// random (mostly in the IPv4 and transport headers), sometimes cut or
/// extended, sometimes with the IPv4 checksum made right again so that the
/// damage reaches the transport checks.
fn mutate(rng: &mut XorShift, base: &[u8]) -> Vec<u8> {
    let mut f = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = if rng.below(4) == 0 {
            IP + rng.below((f.len() - IP) as u64) as usize
        } else {
            IP + rng.below(((L4 + 20).min(f.len()) - IP) as u64) as usize
        };
        match rng.below(3) {
            0 => f[at] ^= 1 << rng.below(8),
            1 => f[at] = rng.next_u64() as u8,
            _ => f[at] = [0, 0xff, 0x40, 0x45, 0x20, 0x06, 0x11][rng.below(7) as usize],
        }
    }
    match rng.below(8) {
        0 => f.truncate(IP + rng.below((f.len() - IP) as u64) as usize),
        1 => {
            let n = rng.below(64) as usize;
            f.extend(rng.bytes(n));
        }
        _ => {}
    }
    if rng.below(3) != 0 {
        fix_ipv4_checksum(&mut f);
    }
    f
}

/// Random damage to traffic of a Service, both directions: never a
/// panic, each frame received and then sent at most once and counted at
/// most once (and at least one of the two), and every buffer back.
#[test]
fn mutated_service_traffic_keeps_every_count_and_buffer() {
    let mut sw = switch();
    let mut dns = dns_service(&[B, C]);
    dns.affinity_ms = Some(60_000);
    set_service(&mut sw, dns);
    set_service(&mut sw, service(&[B, C], &[D]));
    sw.teach(A.port, A.mac);
    for sport in 40000..40010 {
        connect(&mut sw, A, sport);
    }
    let bases: Vec<(PortId, Vec<u8>)> = vec![
        (A.port, to_vip(A, 40001, PSH | ACK)),
        (A.port, to_vip(A, 40100, SYN)),
        (
            A.port,
            tcp(
                (A.mac, ROUTER),
                (A.ip, 40002),
                (VIP, VPORT),
                ACK,
                b"payload!",
            ),
        ),
        (A.port, udp((A.mac, ROUTER), (A.ip, 5353), (VIP, 53), b"q")),
        (B.port, from_backend(B, (A.ip, 40001), ACK)),
        (C.port, from_backend(C, (A.ip, 40002), FIN | ACK)),
        (
            C.port,
            tcp((C.mac, A.mac), (C.ip, BPORT), (A.ip, 40003), ACK, b"l2"),
        ),
        (
            B.port,
            udp((B.mac, ROUTER), (B.ip, BPORT), (A.ip, 5353), b"a"),
        ),
        (B.port, to_vip(B, 45000, SYN)),
        (B.port, from_backend(B, (GW_2, 45000), SYN | ACK)),
    ];
    let drops = |sw: &TestSwitch| -> u64 { sw.total_drops() };
    let mut rng = XorShift::new(0x5eed_5e41);
    let mut by_reason = [0u64; DropReason::COUNT];
    for i in 0..5000u32 {
        let (port, base) = &bases[rng.below(bases.len() as u64) as usize];
        let f = if rng.below(10) == 0 {
            base.clone()
        } else {
            mutate(&mut rng, base)
        };
        let (rx0, tx0, d0) = (sw.stats(*port).rx_packets, sw.total_tx(), drops(&sw));
        sw.inject(*port, f.clone());
        sw.run();
        let (tx, d) = (sw.total_tx() - tx0, drops(&sw) - d0);
        assert_eq!(
            sw.stats(*port).rx_packets,
            rx0 + 1,
            "frame {i} not received"
        );
        assert!(
            tx <= 1 && d <= 1 && tx + d >= 1,
            "frame {i} from port {port}: sent {tx}, counted {d}: {f:02x?}"
        );
        for (p, out) in take_all(&sw) {
            assert_ne!(p, UPLINK, "nothing goes to the uplink: {out:02x?}");
        }
        assert_eq!(sw.frames_held(), 0, "frame {i} held");
        if i % 500 == 499 {
            sw.assert_pools_consistent();
        }
    }
    for p in sw.port_ids() {
        for (r, n) in by_reason.iter_mut().zip(sw.stats(p).drops) {
            *r += n;
        }
    }
    for reason in [
        DropReason::Malformed,
        DropReason::IpFragment,
        DropReason::NoEndpoints,
    ] {
        assert!(
            by_reason[reason.index()] > 0,
            "no {} drops: {by_reason:?}",
            reason.name()
        );
    }
    assert!(sw.conntrack.counters(clock::now_ms()).created > 20);
    sw.assert_no_leaks();
}

// ---------------------------------------------------------------------------
// 11. TCP state.

#[test]
fn fins_from_both_sides_or_a_reset_close_a_flow() {
    let mut sw = switch();
    set_service(&mut sw, service(&[B], &[]));
    let state = |sw: &TestSwitch, sport: u16| {
        let k = flow_key(v4(A.ip), v4(VIP), sport, VPORT, PROTO_TCP);
        let flows = sw.conntrack.flows(clock::now_ms());
        let f = flows.iter().find(|f| f.orig == k).expect("flow tracked");
        (f.state, f.expires_ms)
    };

    backend_of(&mut sw, A, 40000, SYN);
    assert_eq!(state(&sw, 40000).0, FlowState::SynSent);
    send(&mut sw, B.port, from_backend(B, (A.ip, 40000), SYN | ACK));
    assert_eq!(state(&sw, 40000).0, FlowState::Established);
    backend_of(&mut sw, A, 40000, FIN | ACK);
    assert_eq!(state(&sw, 40000).0, FlowState::Established, "half closed");
    let o = send(&mut sw, B.port, from_backend(B, (A.ip, 40000), FIN | ACK));
    assert_eq!(o.from(), (VIP, VPORT));
    let (s, expires) = state(&sw, 40000);
    assert_eq!(s, FlowState::Closing);
    assert!(expires <= fastpath::conntrack::TCP_CLOSED_MS);
    // The last ACK still goes through.
    assert_eq!(backend_of(&mut sw, A, 40000, ACK), B);

    // A reset from the endpoint closes a flow at once.
    connect(&mut sw, A, 40001);
    send(&mut sw, B.port, from_backend(B, (A.ip, 40001), RST | ACK));
    assert_eq!(state(&sw, 40001).0, FlowState::Closing);
    // A new connection on the same ports starts a new flow.
    backend_of(&mut sw, A, 40001, SYN);
    assert_eq!(state(&sw, 40001).0, FlowState::SynSent);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}
