// SPDX-License-Identifier: Apache-2.0
//
// The uplink's XDP program: it decides, per received frame, whether the frame
// belongs to vswitchd (redirected to the AF_XDP socket of its RX queue) or to
// the node's kernel (XDP_PASS).
//
// A frame is vswitchd's when
//   - its Ethernet destination is the switch's router MAC (`config`), or
//   - it is IPv4 and its destination lies in a prefix of `dst4`, or
//   - it is an unfragmented IPv4 UDP datagram to port 4789 (VXLAN) whose
//     destination is one of the node's addresses in `vxlan4`, or
//   - it is an unfragmented IPv4 TCP or UDP packet to one of the node's
//     addresses in `vxlan4` whose protocol and destination port are a
//     Service's NodePort (`nodeports`), or
//   - it is IPv6 and its destination lies in a prefix of `dst6`.
// Everything else (the node's ssh, kubelet, DNS, ARP, neighbour discovery)
// goes to the kernel.
//
// Invariants:
//   - Redirects name XDP_PASS as the fallback action, so a queue with no
//     socket in `xsks_map` (vswitchd stopped or crashed: the kernel removes
//     a closed socket from the map) hands its frames to the kernel. The node
//     stays reachable while this program outlives the daemon.
//   - Every header read is preceded by a bounds check against data_end; a
//     frame too short for a header is the kernel's.
//   - No counters and no state written per packet: the program only reads
//     maps that vswitchd fills (libbpf names them, so names here are ABI with
//     fastpath/src/port/uplink.rs).

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define VXLAN_PORT 4789
// More-fragments flag and fragment offset of iphdr.frag_off (net/ip.h).
#define IP_MF_OFFSET 0x3fff

struct config {
	__u8 router_mac[6];
	__u8 pad[2];
};

// Layout of struct bpf_lpm_trie_key with a fixed-size address.
struct lpm4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

// RX queue index -> AF_XDP socket of that queue.
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

// Entry 0: the switch's router MAC; all zeros means none is set.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config SEC(".maps");

// IPv4 destinations the switch serves (pod CIDRs, Service VIPs).
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm4_key);
	__type(value, __u8);
} dst4 SEC(".maps");

// IPv6 destinations the switch serves.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm6_key);
	__type(value, __u8);
} dst6 SEC(".maps");

// The node's own IPv4 addresses (network order) on its uplink: VXLAN to
// them, and NodePorts on them, are the switch's.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} vxlan4 SEC(".maps");

// NodePorts: key (protocol << 16) | port, both in host order.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} nodeports SEC(".maps");

static __always_inline int to_switch(struct xdp_md *ctx)
{
	return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
}

static __always_inline int is_router_mac(const __u8 *dst)
{
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	const __u8 *m;

	if (!cfg)
		return 0;
	m = cfg->router_mac;
	// An unset MAC must not match frames to 00:00:00:00:00:00.
	if ((m[0] | m[1] | m[2] | m[3] | m[4] | m[5]) == 0)
		return 0;
	return dst[0] == m[0] && dst[1] == m[1] && dst[2] == m[2] &&
	       dst[3] == m[3] && dst[4] == m[4] && dst[5] == m[5];
}

static __always_inline int ipv4_is_switch(struct iphdr *ip, void *data_end)
{
	struct lpm4_key key = { .prefixlen = 32 };
	struct udphdr *udp;
	__u32 ihl, np;

	__builtin_memcpy(key.addr, &ip->daddr, sizeof(key.addr));
	if (bpf_map_lookup_elem(&dst4, &key))
		return 1;

	// Only a whole datagram carries its UDP header where we look: a later
	// fragment's payload would be misread, and a first fragment taken
	// away from its rest could never be reassembled by either side.
	if ((ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_TCP) ||
	    (ip->frag_off & bpf_htons(IP_MF_OFFSET)))
		return 0;
	ihl = ip->ihl * 4;
	if (ihl < sizeof(*ip))
		return 0;
	// TCP's ports sit where UDP's do: read both through a UDP header.
	udp = (void *)ip + ihl;
	if ((void *)(udp + 1) > data_end)
		return 0;
	if (!bpf_map_lookup_elem(&vxlan4, &ip->daddr))
		return 0;
	if (ip->protocol == IPPROTO_UDP && udp->dest == bpf_htons(VXLAN_PORT))
		return 1;
	np = ((__u32)ip->protocol << 16) | bpf_ntohs(udp->dest);
	return bpf_map_lookup_elem(&nodeports, &np) != NULL;
}

static __always_inline int ipv6_is_switch(struct ipv6hdr *ip6)
{
	struct lpm6_key key = { .prefixlen = 128 };

	__builtin_memcpy(key.addr, &ip6->daddr, sizeof(key.addr));
	return bpf_map_lookup_elem(&dst6, &key) != NULL;
}

SEC("xdp")
int uplink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (is_router_mac(eth->h_dest))
		return to_switch(ctx);

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > data_end)
			return XDP_PASS;
		if (ipv4_is_switch(ip, data_end))
			return to_switch(ctx);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return XDP_PASS;
		if (ipv6_is_switch(ip6))
			return to_switch(ctx);
	}
	return XDP_PASS;
}

// The license only decides which kernel helpers a program may call; none
// of the helpers used here is GPL-only.
char LICENSE[] SEC("license") = "Apache-2.0";
