//! The Service tests' lab (see `services.rs` for the picture): pods,
//! frame builders and parsers, and the switch set up for Services. Shared
//! by `services.rs` and `services_edges.rs`.

// Each test binary uses a different part of it (the `use`s are re-exported
// for the test files).
#![allow(dead_code, unused_imports)]

pub use std::collections::HashMap;
pub use std::sync::Arc;
pub use std::time::Duration;

pub use crate::common::frames::{NODE_IP, NODE_MAC, REMOTE_ROUTER, ROUTER, v4};
use crate::common::frames::{ipv4_header, neighbour, route, slice_ethernet, udp_ports};
pub use crate::common::{Config, TestSwitch, XorShift, fix_ipv4_checksum, key};
pub use etherparse::icmpv4::DestUnreachableHeader;
pub use etherparse::{
    Icmpv4Type, Ipv4Header, LinkSlice, NetSlice, PacketBuilder, SlicedPacket, TcpHeader,
    TransportSlice, UdpHeader,
};
pub use fastpath::PortId;
pub use fastpath::clock;
pub use fastpath::drop::DropReason;
pub use fastpath::l3::neigh::NeighEvent;
pub use fastpath::l3::table::{Link, NextHop};
pub use fastpath::services::conntrack::{FlowState, flow_key};
pub use fastpath::services::maglev::DEFAULT_MIN_SIZE;
pub use fastpath::services::stage::tuple_hash;
pub use fastpath::services::table::{PROTO_TCP, PROTO_UDP, Service, endpoint};
pub use fastpath::snapshot::PortRole;
pub use fastpath::worker::WorkerEvent;

pub const EXT_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x4d];
pub const EXT2_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x4e];
/// The remote node's VTEP on the uplink's subnet.
pub const VTEP_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x02];
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pod {
    pub port: PortId,
    pub mac: [u8; 6],
    pub ip: [u8; 4],
}

pub const A: Pod = Pod {
    port: 0,
    mac: [2, 0, 0, 0, 0, 0x0a],
    ip: [10, 244, 1, 10],
};
pub const B: Pod = Pod {
    port: 1,
    mac: [2, 0, 0, 0, 0, 0x0b],
    ip: [10, 244, 2, 20],
};
pub const C: Pod = Pod {
    port: 2,
    mac: [2, 0, 0, 0, 0, 0x0c],
    ip: [10, 244, 1, 11],
};
pub const D: Pod = Pod {
    port: 3,
    mac: [2, 0, 0, 0, 0, 0x0d],
    ip: [10, 244, 2, 21],
};
pub const PODS: [Pod; 4] = [A, B, C, D];
pub const UPLINK: PortId = 4;

pub const GW_1: [u8; 4] = [10, 244, 1, 1];
pub const GW_2: [u8; 4] = [10, 244, 2, 1];
pub const EXT_IP: [u8; 4] = [192, 168, 0, 77];
pub const EXT2_IP: [u8; 4] = [192, 168, 0, 78];
pub const VTEP: [u8; 4] = [192, 168, 0, 2];
pub const VNI: u32 = 42;
/// Pods on the remote node (10.244.3.0/24, behind the VXLAN route).
pub const REMOTE_POD: [u8; 4] = [10, 244, 3, 30];
pub const REMOTE_CLIENT: [u8; 4] = [10, 244, 3, 31];

pub const VIP: [u8; 4] = [10, 96, 0, 10];
pub const VPORT: u16 = 80;
pub const BPORT: u16 = 8080;
pub const NODE_PORT: u16 = 30080;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
/// Sequence and acknowledgment numbers of every test segment.
pub const SEQ: u32 = 1000;
pub const ACK_NO: u32 = 5000;

/// Offsets in an Ethernet + IPv4 (no options) frame.
pub const IP: usize = 14;
pub const L4: usize = IP + 20;

// ---------------------------------------------------------------------------
// The switch and its Services.

pub fn switch() -> TestSwitch {
    switch_with(Config::default(), |_| 0)
}

/// The switch of the module documentation, port `id` on worker `owner(id)`.
pub fn switch_with(cfg: Config, owner: fn(PortId) -> usize) -> TestSwitch {
    let mut sw = TestSwitch::new(cfg);
    for id in 0..=UPLINK {
        sw.add_port_on(owner(id), id);
    }
    sw.configure_port(UPLINK, |e| e.role = PortRole::Uplink);
    sw.l3.router_mac = key(ROUTER);
    sw.l3.addrs4 = vec![(v4(GW_1), 24), (v4(GW_2), 24)];
    for gw in [GW_1, GW_2] {
        route(&mut sw, gw, 32, NextHop::Local);
    }
    for p in PODS {
        let hop = NextHop::Peer {
            port: p.port,
            mac: key(p.mac),
        };
        route(&mut sw, p.ip, 32, hop);
    }
    sw.publish();
    sw
}

/// The node's network on the uplink (192.168.0.0/24, the node at
/// 192.168.0.5) with two outside clients and the remote VTEP known
/// neighbours, and the remote node's pods behind a VXLAN route.
pub fn add_uplink(sw: &mut TestSwitch) {
    let hop = NextHop::Resolve {
        link: Link::Port(UPLINK),
        gw: None,
    };
    route(sw, [192, 168, 0, 0], 24, hop);
    let tunnel = NextHop::Vxlan {
        vtep: v4(VTEP),
        vni: VNI,
    };
    route(sw, [10, 244, 3, 0], 24, tunnel);
    sw.l3.vteps = vec![v4(NODE_IP)];
    sw.l3.vtep_src = Some(v4(NODE_IP));
    sw.l3.vnis = vec![VNI];
    let events = [(EXT_IP, EXT_MAC), (EXT2_IP, EXT2_MAC), (VTEP, VTEP_MAC)]
        .map(|(a, m)| WorkerEvent::Neighbour(neighbour(a, m, UPLINK)))
        .to_vec();
    sw.learn_neighbours(events);
}

/// `inner` (an Ethernet frame) inside VXLAN from the remote VTEP.
pub fn vxlan_in(inner: &[u8]) -> Vec<u8> {
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
pub fn vxlan_out(o: &Out) -> Out {
    assert_eq!((o.port, o.dst, o.src), (UPLINK, VTEP_MAC, ROUTER));
    assert_eq!((o.ip.source, o.ip.destination), (NODE_IP, VTEP));
    assert_eq!(o.ports().1, 4789, "VXLAN");
    assert_eq!(&o.payload[..8], &[0x08, 0, 0, 0, 0, 0, 42, 0], "VNI 42");
    parse(UPLINK, &o.payload[8..])
}

pub fn endpoints(pods: &[Pod]) -> Vec<u64> {
    pods.iter().map(|p| endpoint(v4(p.ip), BPORT)).collect()
}

/// The Service VIP:80/TCP with endpoints `ready` and `terminating`.
pub fn service(ready: &[Pod], terminating: &[Pod]) -> Service {
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
pub fn dns_service(ready: &[Pod]) -> Service {
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
pub fn set_service(sw: &mut TestSwitch, svc: Service) {
    sw.services.insert(Arc::new(svc));
    sw.publish();
}

// ---------------------------------------------------------------------------
// Frames in.

/// A TCP segment (sequence [`SEQ`], acknowledgment [`ACK_NO`] if `flags`
/// has ACK); etherparse fills in lengths and checksums.
pub fn tcp(
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

/// A UDP datagram, TTL 64.
pub fn udp(
    macs: ([u8; 6], [u8; 6]),
    from: ([u8; 4], u16),
    to: ([u8; 4], u16),
    data: &[u8],
) -> Vec<u8> {
    udp_ports(macs.0, macs.1, from.0, to.0, 64, (from.1, to.1), data)
}

/// A segment from pod `p`'s port `sport` to the VIP, sent to the router.
pub fn to_vip(p: Pod, sport: u16, flags: u8) -> Vec<u8> {
    tcp((p.mac, ROUTER), (p.ip, sport), (VIP, VPORT), flags, b"")
}

/// A segment from endpoint `p` (port 8080) to `to`, sent to the router.
pub fn from_backend(p: Pod, to: ([u8; 4], u16), flags: u8) -> Vec<u8> {
    tcp((p.mac, ROUTER), (p.ip, BPORT), to, flags, b"")
}

// ---------------------------------------------------------------------------
// Frames out.

/// A frame the switch sent, parsed; [`parse`] has checked its checksums.
#[derive(Debug)]
pub struct Out {
    pub port: PortId,
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ip: Ipv4Header,
    pub tcp: Option<TcpHeader>,
    pub udp: Option<UdpHeader>,
    pub icmp: Option<Icmpv4Type>,
    pub payload: Vec<u8>,
}

impl Out {
    pub fn from(&self) -> ([u8; 4], u16) {
        (self.ip.source, self.ports().0)
    }
    pub fn to(&self) -> ([u8; 4], u16) {
        (self.ip.destination, self.ports().1)
    }
    pub fn ports(&self) -> (u16, u16) {
        match (&self.tcp, &self.udp) {
            (Some(t), _) => (t.source_port, t.destination_port),
            (_, Some(u)) => (u.source_port, u.destination_port),
            _ => panic!("neither TCP nor UDP: {self:?}"),
        }
    }
    pub fn tcp(&self) -> &TcpHeader {
        self.tcp.as_ref().expect("a TCP segment")
    }
    /// The pod the frame went to.
    pub fn pod(&self) -> Pod {
        *PODS
            .iter()
            .find(|p| p.port == self.port)
            .expect("sent to a pod port")
    }
}

/// Parses frame `f` sent on `port`: an IPv4 packet whose header, TCP, UDP
/// and ICMP checksums must equal etherparse's computation.
#[track_caller]
pub fn parse(port: PortId, f: &[u8]) -> Out {
    let (p, dst, src) = slice_ethernet(f);
    let h = ipv4_header(&p, f);
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
    let mut out = Out {
        port,
        dst,
        src,
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
pub fn take_all(sw: &TestSwitch) -> Vec<(PortId, Vec<u8>)> {
    sw.port_ids()
        .into_iter()
        .flat_map(|id| sw.take_sent(id).into_iter().map(move |f| (id, f)))
        .collect()
}

/// Injects `f` on `port`, runs the switch and returns the one frame it
/// sent (on whichever port), parsed.
#[track_caller]
pub fn send(sw: &mut TestSwitch, port: PortId, f: Vec<u8>) -> Out {
    sw.inject(port, f);
    sw.run();
    let mut sent = take_all(sw);
    assert_eq!(sent.len(), 1, "one frame out expected: {sent:02x?}");
    let (port, f) = sent.pop().unwrap();
    parse(port, &f)
}

/// Injects `f` on `port` and asserts that nothing at all comes out.
#[track_caller]
pub fn send_nothing_out(sw: &mut TestSwitch, port: PortId, f: Vec<u8>) {
    sw.inject(port, f);
    sw.run();
    let sent = take_all(sw);
    assert!(sent.is_empty(), "nothing should leave: {sent:02x?}");
}

/// Asserts the Ethernet and IP addresses, ports and TTL of a frame out.
#[track_caller]
pub fn assert_frame(
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
pub fn connect(sw: &mut TestSwitch, client: Pod, sport: u16) -> (Pod, u16) {
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
    // The client's ACK completes the handshake: the flow is established.
    let a = send(sw, client.port, to_vip(client, sport, ACK));
    assert_eq!(
        a.port, backend.port,
        "the handshake's ACK reaches the endpoint"
    );
    (backend, seen)
}

/// The endpoint that a new segment from `client`'s `sport` to the VIP
/// reaches (asserting that it reaches exactly one, DNATed).
#[track_caller]
pub fn backend_of(sw: &mut TestSwitch, client: Pod, sport: u16, flags: u8) -> Pod {
    let o = send(sw, client.port, to_vip(client, sport, flags));
    let b = o.pod();
    assert_eq!(o.to(), (b.ip, BPORT), "DNATed to the endpoint");
    assert_eq!(o.ip.source, client.ip, "source kept");
    b
}
