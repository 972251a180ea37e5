#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets into fuzz/corpus/<target>/:
frames of every kind the switch handles, for `pipeline` in its record
format (checksums left zero: flag bit 0 has the target make them right),
requests for `control` and batch files for `batch`. Run once; the fuzzer grows the corpus."""
import os, struct

ROUTER = bytes([2, 0xaa, 0, 0, 0, 1])
def mac(n): return bytes([2, 0, 0, 0, 0, n])
BCAST = b'\xff' * 6
def ip4(*a): return bytes(a)

def eth(dst, src, ty, payload): return dst + src + struct.pack('!H', ty) + payload
def ipv4(src, dst, proto, payload, ttl=64):
    return struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(payload), 1, 0, ttl, proto, 0, src, dst) + payload
def ipv6(src, dst, nh, payload, hlim=64):
    return struct.pack('!IHBB16s16s', 6 << 28, len(payload), nh, hlim, src, dst) + payload
def tcp(sp, dp, flags=0x02, data=b''):
    return struct.pack('!HHIIBBHHH', sp, dp, 1, 0, 5 << 4, flags, 64240, 0, 0) + data
def udp(sp, dp, data=b''):
    return struct.pack('!HHHH', sp, dp, 8 + len(data), 0) + data
def icmp_echo(): return struct.pack('!BBHHH', 8, 0, 0, 1, 1) + b'\0' * 8
def arp_req(sha, spa, tpa): return struct.pack('!HHBBH6s4s6s4s', 1, 0x0800, 6, 4, 1, sha, spa, b'\0' * 6, tpa)
def v6(last, prefix=0xfd00): return (prefix << 112 | last).to_bytes(16, 'big')

def rec(port, frame, flags=1): return bytes([port, flags]) + struct.pack('!H', len(frame)) + frame

seeds = {
  'tcp_to_vip': rec(0, eth(ROUTER, mac(0x0a), 0x0800, ipv4(ip4(10,244,0,10), ip4(10,96,0,10), 6, tcp(40000, 80)))),
  'udp_no_endpoints': rec(0, eth(ROUTER, mac(0x0a), 0x0800, ipv4(ip4(10,244,0,10), ip4(10,96,0,11), 17, udp(5000, 53, b'q')))),
  'reply_from_endpoint': rec(0, eth(ROUTER, mac(0x0a), 0x0800, ipv4(ip4(10,244,0,10), ip4(10,96,0,10), 6, tcp(40000, 80))))
       + rec(1, eth(ROUTER, mac(0x0b), 0x0800, ipv4(ip4(10,244,0,11), ip4(10,244,0,10), 6, tcp(8080, 40000, 0x12)))),
  'node_port': rec(3, eth(ROUTER, mac(0x21), 0x0800, ipv4(ip4(192,168,1,50), ip4(192,168,1,1), 6, tcp(5000, 30080)))),
  'vxlan_in': rec(3, eth(ROUTER, mac(0x23), 0x0800, ipv4(ip4(192,168,1,3), ip4(192,168,1,1), 17,
       udp(4789 + 1000, 4789, struct.pack('!II', 0x08000000, 42 << 8) + eth(ROUTER, mac(0x40), 0x0800, ipv4(ip4(10,17,0,5), ip4(10,244,0,10), 1, icmp_echo())))))),
  'to_vxlan': rec(0, eth(ROUTER, mac(0x0a), 0x0800, ipv4(ip4(10,244,0,10), ip4(10,17,3,4), 17, udp(5000, 53, b'x' * 40)))),
  'arp_router': rec(0, eth(BCAST, mac(0x0a), 0x0806, arp_req(mac(0x0a), ip4(10,244,0,10), ip4(10,244,0,1)))),
  'arp_host': rec(4, eth(BCAST, mac(0x30), 0x0806, arp_req(mac(0x30), ip4(172,16,0,9), ip4(10,244,0,10)))),
  'ping_router': rec(0, eth(ROUTER, mac(0x0a), 0x0800, ipv4(ip4(10,244,0,10), ip4(10,244,0,1), 1, icmp_echo()))),
  'ttl_1': rec(0, eth(ROUTER, mac(0x0a), 0x0800, ipv4(ip4(10,244,0,10), ip4(10,16,1,9), 17, udp(1, 2, b'abc'), ttl=1))),
  'to_uplink_unresolved': rec(0, eth(ROUTER, mac(0x0a), 0x0800, ipv4(ip4(10,244,0,10), ip4(192,168,1,77), 6, tcp(1000, 22)))),
  'from_host': rec(4, eth(ROUTER, mac(0x30), 0x0800, ipv4(ip4(172,16,0,9), ip4(10,244,0,10), 6, tcp(1000, 22)))),
  'spoofed': rec(2, eth(ROUTER, mac(0x22), 0x0800, ipv4(ip4(10,244,0,99), ip4(10,244,0,10), 17, udp(1, 2)))),
  'l2_switched': rec(0, eth(mac(0x0b), mac(0x0a), 0x0800, ipv4(ip4(10,244,0,10), ip4(10,244,0,11), 17, udp(1, 2, b'hello')))),
  'flood': rec(0, eth(BCAST, mac(0x0a), 0x88b5, b'\0' * 50)),
  'ipv6_echo': rec(0, eth(ROUTER, mac(0x0a), 0x86dd, ipv6(v6(0x10), v6(1), 58, struct.pack('!BBHHH', 128, 0, 0, 1, 1)))),
  'ipv6_ns': rec(0, eth(b'\x33\x33\xff\x00\x00\x01', mac(0x0a), 0x86dd, ipv6(v6(0x10), (0xff02 << 112 | 1 << 16 | 0xff000001).to_bytes(16, 'big'), 58,
       struct.pack('!BBHI', 135, 0, 0, 0) + v6(1) + bytes([1, 1]) + mac(0x0a), hlim=255))),
  'ipv6_out': rec(0, eth(ROUTER, mac(0x0a), 0x86dd, ipv6(v6(0x10), v6(5, 0x2001), 17, udp(5000, 53, b'q')))),
  'tap_gso': rec(1, struct.pack('<BBHHHH', 1, 1, 54, 1448, 34, 16) + eth(ROUTER, mac(0x0b), 0x0800,
       ipv4(ip4(10,244,0,11), ip4(10,16,1,9), 6, tcp(40000, 80, 0x10, b'z' * 4000))), flags=2),
  'affinity': rec(0, eth(ROUTER, mac(0x0a), 0x0800, ipv4(ip4(10,244,0,10), ip4(10,96,0,12), 6, tcp(40001, 443)))),
}
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'corpus')
os.makedirs(os.path.join(root, 'pipeline'), exist_ok=True)
for name, data in seeds.items():
    open(os.path.join(root, 'pipeline', name), 'wb').write(data)
    os.makedirs(os.path.join(root, 'wire'), exist_ok=True)
    open(os.path.join(root, 'wire', name), 'wb').write(bytes([3]) + data[4:])

control = {
  'ports': '{"version":3,"command":{"op":"port_add","args":{"name":"p1","type":"afxdp"}}}\n'
           '{"version":3,"command":{"op":"port_add","args":{"name":"t1","type":"tap","ips":["10.244.0.5"]}}}\n'
           '{"version":3,"command":{"op":"port_del","args":{"name":"p1"}}}\n',
  'router': '{"version":3,"command":{"op":"addr_add","args":{"addr":"10.244.0.1/24"}}}\n'
            '{"version":3,"command":{"op":"route_add","args":{"prefix":"10.16.0.0/16","via":"10.244.0.9"}}}\n'
            '{"version":3,"command":{"op":"route_del","args":{"prefix":"10.16.0.0/16"}}}\n',
  'services': '{"version":3,"command":{"op":"service_add","args":{"service":"10.96.0.10:80/tcp","backends":["10.244.0.5:8080"]}}}\n'
              '{"version":3,"command":{"op":"batch","args":{"commands":[{"op":"service_backends","args":{"service":"10.96.0.10:80/tcp","backends":[]}},{"op":"service_del","args":{"service":"10.96.0.10:80/tcp"}}]}}}\n',
  'fdb': '{"version":3,"command":{"op":"fdb_add","args":{"mac":"02:00:00:00:00:01","port":"p1"}}}\n',
}
os.makedirs(os.path.join(root, 'control'), exist_ok=True)
for name, text in control.items():
    open(os.path.join(root, 'control', name), 'w').write(text)
batch = {
  'services': '# Services of namespace default\n'
              'service add 10.96.0.10:80/tcp --backend 10.244.1.5:8080 --backend 10.244.2.7:8080\n'
              '\n   # indented comment\n'
              '\tservice   backends 10.96.0.10:80/tcp 10.244.1.5:8080 --terminating 10.244.2.7:8080\n'
              'service add [fd00::10]:53/udp --affinity-timeout 30 --may-exist\n'
              'service add 10.96.0.11:443/tcp --node-port 30443 --backend 10.244.1.6:8443\n'
              'service del 10.96.0.99:443/tcp --if-exists\n',
  'refused': 'service add 10.96.0.10:80/tcp\nport add veth1\n',
  'help': 'service add --help\n',
  'bad_value': 'service add 10.96.0.10:80/tcp --backend [fd00::1]:80\n',
}
os.makedirs(os.path.join(root, 'batch'), exist_ok=True)
for name, text in batch.items():
    open(os.path.join(root, 'batch', name), 'w').write(text)
os.makedirs(os.path.join(root, 'vnet_hdr'), exist_ok=True)
open(os.path.join(root, 'vnet_hdr', 'gso'), 'wb').write(seeds['tap_gso'][4:])
