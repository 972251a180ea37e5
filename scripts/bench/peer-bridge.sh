# shellcheck shell=bash
# The Linux kernel bridge as a "peer" switch for the vswitch benchmarks, with
# kube-proxy's way of doing Services (br_netfilter + nftables DNAT).
# A library: source it, then call the functions. Needs root.
#
#   . scripts/bench/peer-bridge.sh
#   bridge_check && kubeproxy_check
#   bridge_up vsbench-br 1 off 10.244.1.1/24 10.244.2.1/24 -- brt-a brt-b brt-c
#   kubeproxy_up vsbench-br 10.96.0.10 9000 udp 10.244.1.12:9000 10.244.2.13:9000
#   kubeproxy_up vsbench-br 10.96.0.10 80 tcp 10.244.1.12:8080
#   ...                                   # measure
#   kubeproxy_down
#   bridge_down vsbench-br brt-a brt-b brt-c
#
# Topology (the same for every peer): a pod is a network namespace with an
# eth0, one end of a veth whose other end sits in the root namespace; the host
# end and the namespace have the same name. The caller makes the pods (address,
# default route via the gateway); this file only plugs the host ends together.
#
# Functions (each: messages on stderr, one line and a non-zero return on
# failure; safe under set -euo pipefail; nothing is set in the caller's shell
# but the function names and PEER_BRIDGE_STATE):
#
# bridge_check      0 if a bridge can be made here, else prints why, returns 1.
# kubeproxy_check   the same for kubeproxy_up (br_netfilter, nft, numgen, NAT).
#
# bridge_up BR CPU OFFLOAD [GW_CIDR...] -- PORT...
#   Creates bridge BR (no STP, IPv6 off on it, a MAC derived from its name,
#   02:62:72:xx:xx:xx), enslaves the PORTs (host-end veths), puts the GW_CIDRs
#   on BR so the host routes between the pod subnets (ip_forward=1 and
#   send_redirects=0 while up; no GW_CIDR: pure L2, ip_forward untouched),
#   flushes the pods' neighbour and route caches (the previous peer's gateway
#   MAC, learned ICMP redirects).
#   OFFLOAD=off: `ethtool -K eth0 tx off` in each pod (TX checksum off, which
#   also turns TSO off: the kernel segments in software (GSO stays on) before
#   the veth, so MTU-sized frames cross the bridge, as with vswitch's pods);
#   OFFLOAD=on: `tx on`, the veth default (TSO: 64 KB frames cross the bridge).
#   CPU: RPS on every PORT (queues/rx-0/rps_cpus = that one CPU), so the bridge
#   runs on that core, as vswitch's worker does (see "What was learned").
#   Also sets net.bridge.bridge-nf-call-{iptables,ip6tables,arptables}=0 while
#   only the bridge is up (PEER_BRIDGE_NF=keep leaves them alone): the kernel
#   default is 1 as soon as br_netfilter is loaded (here it is built in), which
#   would put every bridged frame through the IPv4 netfilter hooks (and
#   conntrack, once some rule needs it): not a plain L2 switch.
#   Refuses a PORT with an XDP program on it (still attached to vswitchd?).
#   Calling it again with the same BR re-applies everything (idempotent).
#   The caller pins the pods' processes off CPU (taskset), as for vswitch.
#   On failure it may leave a partial setup: call bridge_down.
#
# bridge_down BR [PORT...]
#   Runs kubeproxy_down if a kube-proxy table is up on BR, deletes BR, restores
#   every PORT's rps_cpus and pod eth0 TX checksum setting, and the sysctls
#   (ip_forward and the rest) once no bridge of ours is left. Without PORTs it
#   uses those bridge_up was given. Idempotent: nothing up, nothing done.
#
# kubeproxy_up BR VIP PORT PROTO ENDPOINT_IP:PORT...
#   One ClusterIP Service the way kube-proxy's nftables mode writes it, in our
#   own table `ip vsbench_kp`: nat prerouting/output chains jump to `services`,
#   a verdict map VIP . proto . port -> the Service's chain, which picks an
#   endpoint chain with `numgen random mod N vmap {...}`; an endpoint chain
#   marks the packet for masquerade when the client is the endpoint itself
#   (hairpin) and DNATs; postrouting masquerades marked packets (fully-random,
#   to BR's address). A filter chain rejects VIP traffic no Service matched
#   (kube-proxy's cluster-ips-check), so it never leaves by the host's default
#   route. Also: br_netfilter on (modprobe if it is a module and not loaded;
#   net.bridge.bridge-nf-call-iptables=1) and hairpin mode on BR's ports (the
#   CNI bridge plugin's hairpinMode), both needed, see below. PROTO: tcp|udp.
#   Call it once per Service; calling it again for the same VIP/PORT/PROTO
#   replaces that Service (stale endpoint chains are deleted).
#   PEER_KP_COUNTERS=1 adds a counter to each DNAT rule (kube-proxy has none).
#   On failure: kubeproxy_down.
#
# kubeproxy_down
#   Deletes the table, restores the sysctls and hairpin modes, unloads
#   br_netfilter only if kubeproxy_up loaded it. Idempotent.
#
# bridge_netrx
#   Prints NET_RX softirq counts per CPU, one line (for before/after deltas).
#
# State (original values to restore) lives in $PEER_BRIDGE_STATE
# (default /run/vsbench-peer-bridge); an original is saved once, by the first
# up that changes it, so ups may be repeated and downs run in any order.
#
# What was learned (Debian 12 VM, kernel 6.18, 2 vCPUs, nested virtualisation,
# veth pods; numbers are sanity checks only, other sessions were busy-polling
# on the same two cores):
# - RPS works on veth. A veth without XDP (and, by default, without GRO) hands
#   the frame to its peer with netif_rx; with rps_cpus set on the host end the
#   frame is queued to that CPU's backlog and the whole bridge path
#   (br_handle_frame, FDB, forwarding or routing, nftables/conntrack with
#   kube-proxy, the next veth's xmit) runs in NET_RX softirq on that CPU.
#   Measured (/proc/net/softnet_stat, column 1 "processed", column 10
#   "received_rps"; pods pinned to CPU 0, RPS to CPU 1, ping -f): CPU 0
#   processes 0 packets, CPU 1 all of them: 4 per L2 round trip (brt-a,
#   b's eth0, brt-b, a's eth0), 6 per routed one (+ the bridge device twice).
#   /proc/softirqs shows the same NET_RX count on both CPUs: each softirq on
#   CPU 0 only sends the IPI (net_rps_send_ipi), CPU 1 counts it received.
# - The sender's CPU still does part of the work: its socket and IP/TCP
#   output, GSO segmentation and checksums when OFFLOAD=off, veth_xmit, the
#   RPS hash and enqueue, and the IPI. In this VM the IPI is the big part: it
#   is an x2APIC MSR write that traps to the hypervisor; perf showed
#   native_write_msr under net_rps_send_ipi as the top symbol on the sender's
#   CPU, and during a TSO iperf3 mpstat gave the sender's CPU 55% softirq
#   against 9% on the bridge's CPU. ping -f: ~350k round trips/s with RPS
#   off (all on one CPU, the whole round trip runs synchronously inside
#   ping's sendmsg) against 15-50k/s with RPS (two cross-CPU handoffs per
#   round trip). So latency and small-packet rates of the "bridge on one
#   core" setup pay for IPIs, as any cross-core design does here.
# - The *receiving* pod's softirq work (ip_rcv, tcp_v4_rcv, its ACKs) also
#   runs on the bridge's CPU: the destination veth's netif_rx runs there and
#   the pod's eth0 has no RPS map, so the frame goes to the local backlog.
#   vswitch should be alike (copy-mode AF_XDP TX calls veth_xmit from the
#   worker's sendto, so the pod's eth0 receives on the worker's core); only
#   the receiving application (recvmsg, the copy) runs on its own CPU.
# - GRO on a host end (ethtool -K PORT gro on) or an XDP program puts veth in
#   NAPI mode, polled on the sender's CPU; RPS still moves everything after
#   GRO (measured: with gro on, still 0 packets processed on CPU 0).
#   bridge_up refuses XDP and leaves GRO as it finds it (off by default).
# - iperf3 -t 3 brt-a -> brt-b, pods on CPU 0, bridge on CPU 1: 12-14 Gbit/s
#   with OFFLOAD=on (64 KB TSO frames), 6.5-9 Gbit/s with OFFLOAD=off.
# - kube-proxy's hairpin (client == endpoint) needs the bridge port in hairpin
#   mode even with masquerade: br_netfilter DNATs in the bridge's PREROUTING,
#   and when the new destination is reached through the bridge itself the
#   frame is bridged back (br_nf_pre_routing_finish_bridge), not routed, and
#   a bridge never sends a frame back out of the port it came in on unless
#   that port is in hairpin mode. Hence kubeproxy_up turns hairpin on.
# - Same-subnet endpoint (client a, endpoint b on one bridge): a's packet goes
#   to the gateway MAC (the VIP is off-link: default route), is DNATed in
#   PREROUTING and bridged on to b; b replies straight to a's MAC (same
#   subnet), a frame that is only bridged: without br_netfilter conntrack
#   never sees it, the reply keeps source b and a's socket drops it. With
#   bridge-nf-call-iptables=1 the bridged reply passes the IPv4 hooks and is
#   un-DNATed (source back to the VIP).
# - Routing between subnets through one bridge (in and out of the same
#   interface) makes the kernel send ICMP redirects to the pods (seen:
#   "redirect 10.244.2.13 to host 10.244.2.13"); bridge_up turns
#   send_redirects off (all and BR) while it is up.
#   With send_redirects on (the kernel default) a pod does accept such a
#   redirect although the new gateway is in another subnet (shared_media=1,
#   the default, skips the on-link check): c then reached a directly by ARP
#   and L2 (ping ttl=64, not 63), bypassing the router and conntrack, for the
#   redirect's 300 s lifetime, across bridge_down/up. bridge_up and
#   bridge_down flush the pods' route caches (`ip route flush cache` drops
#   the learned redirects).
# - The pods keep the gateway's MAC in their neighbour cache: after a peer
#   change (another bridge MAC, vswitch's gateway) the routed ping failed for
#   seconds (unicast ARP probes to the old MAC); hence the neighbour flushes.
# - nft 1.0.6 (Debian 12) rejects "priority dstnat" on the output hook that
#   kube-proxy writes (newer nft allows it) and "chain c { rule }" without a
#   ";" before "}"; numeric priorities (-100, 100) are used. A rule inside a
#   chain block of `nft -f` is appended on every load: chains are declared
#   empty, then flushed and filled. `nft list chains ip TABLE` is a syntax
#   error there (only `list chains [family]`).
# - python3 -m http.server in a netns without DNS stalls before listen()
#   (getfqdn in server_bind): for a test endpoint, override server_bind.
# - Setting net.ipv4.ip_forward also rewrites conf.all.accept_redirects (and
#   conf.default.forwarding); bridge_down restores accept_redirects after it.
# - br_netfilter may be built in (it is here: no /proc/modules, no
#   /lib/modules): then nothing can be (or needs to be) loaded or unloaded,
#   the sysctls exist from boot and default to 1.

PEER_BRIDGE_STATE=${PEER_BRIDGE_STATE:-/run/vsbench-peer-bridge}

_pb_err() { echo "peer-bridge: $*" >&2; }
_pb_note() { echo "peer-bridge: $*" >&2; }

_pb_statedir() {
    mkdir -p "$PEER_BRIDGE_STATE" 2>/dev/null || {
        _pb_err "cannot create state directory $PEER_BRIDGE_STATE"
        return 1
    }
}

# sysctl key (dots) -> /proc/sys path
_pb_sysctl_path() { echo "/proc/sys/${1//.//}"; }

# Saves the original value of sysctl $1 once.
_pb_sysctl_save() {
    local key=$1 path f
    path=$(_pb_sysctl_path "$key")
    f="$PEER_BRIDGE_STATE/sysctl.$key"
    [ -e "$f" ] && return 0
    [ -r "$path" ] || { _pb_err "no sysctl $key"; return 1; }
    cat "$path" >"$f" || { _pb_err "cannot save sysctl $key"; return 1; }
}

# Sets sysctl $1 to $2, saving the original first.
_pb_sysctl_set() {
    local key=$1 val=$2 path
    path=$(_pb_sysctl_path "$key")
    _pb_sysctl_save "$key" || return 1
    [ "$(cat "$path")" = "$val" ] && return 0
    echo "$val" >"$path" 2>/dev/null || { _pb_err "cannot set $key=$val"; return 1; }
}

# Restores sysctl $1 to its saved original (if any) and forgets it.
_pb_sysctl_restore() {
    local key=$1 path f
    path=$(_pb_sysctl_path "$key")
    f="$PEER_BRIDGE_STATE/sysctl.$key"
    [ -e "$f" ] || return 0
    if [ -e "$path" ]; then
        cat "$f" >"$path" 2>/dev/null || { _pb_err "cannot restore $key=$(cat "$f")"; return 1; }
    fi
    rm -f "$f"
}

# The bridge-nf-call-* sysctls are wanted by both halves: 1 while a kube-proxy
# table is up, 0 while only a bridge is up (unless PEER_BRIDGE_NF=keep), the
# originals when neither is. Called after every up/down.
_pb_brnf_apply() {
    local want k rc=0 any_bridge=
    [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || return 0
    compgen -G "$PEER_BRIDGE_STATE/bridge.*" >/dev/null && any_bridge=1
    if [ -e "$PEER_BRIDGE_STATE/kp.bridge" ]; then
        _pb_sysctl_set net.bridge.bridge-nf-call-iptables 1 || return 1
        return 0
    fi
    # No kube-proxy: ip6/arp were only changed by bridge_up.
    if [ -n "$any_bridge" ] && [ "${PEER_BRIDGE_NF:-}" != keep ]; then
        want=0
        for k in iptables ip6tables arptables; do
            _pb_sysctl_set "net.bridge.bridge-nf-call-$k" "$want" || rc=1
        done
        return $rc
    fi
    if [ -z "$any_bridge" ]; then
        for k in iptables ip6tables arptables; do
            _pb_sysctl_restore "net.bridge.bridge-nf-call-$k" || rc=1
        done
    else
        _pb_sysctl_restore net.bridge.bridge-nf-call-iptables || rc=1
    fi
    return $rc
}

# rps_cpus mask for one CPU: comma-separated 32-bit hex words.
_pb_cpumask() {
    local cpu=$1 hi i w out=""
    hi=$((cpu / 32))
    for ((i = hi; i >= 0; i--)); do
        if [ "$i" -eq "$hi" ]; then w=$((1 << (cpu % 32))); else w=0; fi
        out+=$(printf '%08x' "$w")
        if [ "$i" -gt 0 ]; then out+=,; fi
    done
    echo "$out"
}

# A locally administered unicast MAC derived from the bridge's name.
_pb_mac() {
    local h
    h=$(printf '%s' "$1" | cksum | cut -d' ' -f1)
    printf '02:62:72:%02x:%02x:%02x\n' $(((h >> 16) & 255)) $(((h >> 8) & 255)) $((h & 255))
}

bridge_check() {
    local c
    if [ "$(id -u)" -ne 0 ]; then echo "peer-bridge: needs root" >&2; return 1; fi
    for c in ip bridge ethtool; do
        command -v "$c" >/dev/null 2>&1 || { _pb_err "$c not found (apt-get install iproute2 ethtool)"; return 1; }
    done
    if [ ! -d /sys/module/bridge ] && ! modprobe -q bridge 2>/dev/null; then
        _pb_err "no bridge support in this kernel (module bridge missing)"
        return 1
    fi
    if [ ! -e /proc/sys/net/core/rps_sock_flow_entries ]; then
        _pb_err "kernel without RPS (CONFIG_RPS): cannot steer the bridge to one CPU"
        return 1
    fi
    return 0
}

kubeproxy_check() {
    bridge_check || return 1
    command -v nft >/dev/null 2>&1 || { _pb_err "nft not found (apt-get install nftables)"; return 1; }
    if [ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ] && ! modprobe -n -q br_netfilter 2>/dev/null; then
        _pb_err "no br_netfilter (module missing and not built in)"
        return 1
    fi
    # Dry run (the kernel checks it, commits nothing) of what kubeproxy_up uses.
    local out
    if ! out=$(nft -c -f - 2>&1 <<'EOF'
table ip vsbench_kp_check {
    map m { type ipv4_addr . inet_proto . inet_service : verdict ; }
    chain ep { meta l4proto udp dnat to 10.0.0.1:1 ; }
    chain out { type nat hook output priority -100 ; jump ep ; }
    chain pre { type nat hook prerouting priority -100 ; numgen random mod 1 vmap { 0 : goto ep } ; }
    chain post { type nat hook postrouting priority 100 ; mark and 0x4000 != 0 masquerade fully-random ; }
    chain filt { type filter hook forward priority -110 ; ct state new ip daddr 10.0.0.2 reject ; }
}
EOF
    ); then
        _pb_err "nftables cannot do kube-proxy's rules here (nat, numgen, masquerade, reject, ct): $(echo "$out" | grep -m1 Error)"
        return 1
    fi
    return 0
}

bridge_up() {
    if [ $# -lt 4 ]; then
        _pb_err "usage: bridge_up BR CPU on|off [GW_CIDR...] -- PORT..."
        return 2
    fi
    local br=$1 cpu=$2 offload=$3 mask p gw mac cur
    shift 3
    local gws=() ports=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do gws+=("$1"); shift; done
    if [ $# -eq 0 ]; then _pb_err "bridge_up: missing -- before the ports"; return 2; fi
    shift
    ports=("$@")
    if [ ${#ports[@]} -eq 0 ]; then _pb_err "bridge_up: no ports"; return 2; fi
    case "$offload" in on | off) ;; *) _pb_err "bridge_up: OFFLOAD must be on or off, not '$offload'"; return 2 ;; esac
    if ! [[ "$cpu" =~ ^[0-9]+$ ]] || [ ! -d "/sys/devices/system/cpu/cpu$cpu" ]; then
        _pb_err "bridge_up: no CPU '$cpu'"
        return 2
    fi
    if [ -e "/sys/devices/system/cpu/cpu$cpu/online" ] && [ "$(cat "/sys/devices/system/cpu/cpu$cpu/online")" != 1 ]; then
        _pb_err "bridge_up: CPU $cpu is offline"
        return 2
    fi
    for p in "${ports[@]}"; do
        [ -e "/sys/class/net/$p" ] || { _pb_err "bridge_up: no interface $p"; return 1; }
        [ -e "/sys/class/net/$p/queues/rx-0/rps_cpus" ] || { _pb_err "bridge_up: $p has no rx-0/rps_cpus"; return 1; }
        if ip -d link show dev "$p" | grep -q 'prog/xdp'; then
            _pb_err "bridge_up: $p has an XDP program attached (still a vswitchd port?)"
            return 1
        fi
        ip netns exec "$p" true 2>/dev/null || { _pb_err "bridge_up: no network namespace $p (the pod of host end $p)"; return 1; }
    done
    _pb_statedir || return 1
    mask=$(_pb_cpumask "$cpu")

    if [ -e "/sys/class/net/$br" ]; then
        [ -d "/sys/class/net/$br/bridge" ] || { _pb_err "bridge_up: $br exists and is not a bridge"; return 1; }
    else
        ip link add "$br" type bridge || { _pb_err "bridge_up: cannot create bridge $br"; return 1; }
    fi
    printf '%s\n' "${ports[@]}" >"$PEER_BRIDGE_STATE/bridge.$br"
    # A fixed MAC, the same for every bridge_up of BR: otherwise the bridge
    # takes a random one, or the smallest port MAC, which changes as ports
    # come and go. The pods' neighbour caches are flushed below anyway: they
    # may hold the gateway MAC of a previous peer (stale for seconds).
    mac=$(_pb_mac "$br")
    ip link set "$br" address "$mac" type bridge stp_state 0 forward_delay 0 ||
        { _pb_err "bridge_up: cannot configure $br"; return 1; }
    if [ -e "/proc/sys/net/ipv6/conf/$br/disable_ipv6" ]; then
        echo 1 >"/proc/sys/net/ipv6/conf/$br/disable_ipv6" 2>/dev/null || true
    fi
    for gw in "${gws[@]}"; do
        ip addr replace "$gw" dev "$br" || { _pb_err "bridge_up: cannot add $gw to $br (in use elsewhere?)"; return 1; }
    done
    ip link set "$br" up || { _pb_err "bridge_up: cannot bring $br up"; return 1; }

    if [ ${#gws[@]} -gt 0 ]; then
        _pb_sysctl_save net.ipv4.conf.all.accept_redirects || return 1
        _pb_sysctl_set net.ipv4.ip_forward 1 || return 1
        _pb_sysctl_set net.ipv4.conf.all.send_redirects 0 || return 1
        echo 0 >"/proc/sys/net/ipv4/conf/$br/send_redirects" 2>/dev/null || true
    fi
    _pb_brnf_apply || return 1

    for p in "${ports[@]}"; do
        if [ ! -e "$PEER_BRIDGE_STATE/rps.$p" ]; then
            cat "/sys/class/net/$p/queues/rx-0/rps_cpus" >"$PEER_BRIDGE_STATE/rps.$p" || return 1
        fi
        if [ ! -e "$PEER_BRIDGE_STATE/tx.$p" ]; then
            cur=$(ip netns exec "$p" ethtool -k eth0 2>/dev/null | sed -n 's/^tx-checksumming: \(on\|off\).*/\1/p')
            [ -n "$cur" ] || { _pb_err "bridge_up: cannot read offloads of $p/eth0"; return 1; }
            echo "$cur" >"$PEER_BRIDGE_STATE/tx.$p"
        fi
        ip link set "$p" master "$br" || { _pb_err "bridge_up: cannot enslave $p to $br"; return 1; }
        ip link set "$p" up || { _pb_err "bridge_up: cannot bring $p up"; return 1; }
        echo "$mask" >"/sys/class/net/$p/queues/rx-0/rps_cpus" ||
            { _pb_err "bridge_up: cannot set RPS on $p to CPU $cpu"; return 1; }
        ip netns exec "$p" ethtool -K eth0 tx "$offload" >/dev/null 2>&1 ||
            { _pb_err "bridge_up: cannot set tx $offload on $p/eth0"; return 1; }
        ip -n "$p" neigh flush dev eth0 2>/dev/null || true
        ip -n "$p" route flush cache 2>/dev/null || true
    done
    _pb_note "bridge $br up: ports ${ports[*]}, gateways ${gws[*]:-none}, RPS -> CPU $cpu, pod offload $offload"
}

bridge_down() {
    if [ $# -lt 1 ]; then _pb_err "usage: bridge_down BR [PORT...]"; return 2; fi
    local br=$1 p rc=0 f
    shift
    local ports=("$@")
    if [ ${#ports[@]} -eq 0 ] && [ -e "$PEER_BRIDGE_STATE/bridge.$br" ]; then
        mapfile -t ports <"$PEER_BRIDGE_STATE/bridge.$br"
    fi
    if [ -e "$PEER_BRIDGE_STATE/kp.bridge" ] && [ "$(cat "$PEER_BRIDGE_STATE/kp.bridge")" = "$br" ]; then
        kubeproxy_down || rc=1
    fi
    if [ -d "/sys/class/net/$br/bridge" ]; then
        ip link del "$br" || { _pb_err "bridge_down: cannot delete $br"; rc=1; }
    elif [ -e "/sys/class/net/$br" ]; then
        _pb_err "bridge_down: $br is not a bridge, left alone"
        rc=1
    fi
    for p in "${ports[@]}"; do
        f="$PEER_BRIDGE_STATE/rps.$p"
        if [ -e "$f" ]; then
            if [ -e "/sys/class/net/$p" ]; then
                cat "$f" >"/sys/class/net/$p/queues/rx-0/rps_cpus" || { _pb_err "bridge_down: cannot restore RPS on $p"; rc=1; }
            fi
            rm -f "$f"
        fi
        f="$PEER_BRIDGE_STATE/tx.$p"
        if [ -e "$f" ]; then
            if ip netns exec "$p" true 2>/dev/null; then
                ip netns exec "$p" ethtool -K eth0 tx "$(cat "$f")" >/dev/null 2>&1 ||
                    { _pb_err "bridge_down: cannot restore tx offload on $p/eth0"; rc=1; }
            fi
            rm -f "$f"
        fi
        # The next peer's gateway has another MAC.
        ip -n "$p" neigh flush dev eth0 2>/dev/null || true
        ip -n "$p" route flush cache 2>/dev/null || true
    done
    rm -f "$PEER_BRIDGE_STATE/bridge.$br"
    if [ -d "$PEER_BRIDGE_STATE" ] && ! compgen -G "$PEER_BRIDGE_STATE/bridge.*" >/dev/null; then
        _pb_sysctl_restore net.ipv4.ip_forward || rc=1
        # ip_forward rewrote accept_redirects: restore it after.
        _pb_sysctl_restore net.ipv4.conf.all.accept_redirects || rc=1
        _pb_sysctl_restore net.ipv4.conf.all.send_redirects || rc=1
    fi
    if [ -d "$PEER_BRIDGE_STATE" ]; then
        _pb_brnf_apply || rc=1
        rmdir "$PEER_BRIDGE_STATE" 2>/dev/null || true
    fi
    return $rc
}

_PB_KP_TABLE=vsbench_kp

kubeproxy_up() {
    if [ $# -lt 5 ]; then
        _pb_err "usage: kubeproxy_up BR VIP PORT tcp|udp ENDPOINT_IP:PORT..."
        return 2
    fi
    local br=$1 vip=$2 port=$3 proto=$4 ep ip eport i n svc cur p f
    shift 4
    local eps=("$@")
    local ipre='^([0-9]{1,3}\.){3}[0-9]{1,3}$'
    [[ "$vip" =~ $ipre ]] || { _pb_err "kubeproxy_up: bad VIP '$vip'"; return 2; }
    if ! [[ "$port" =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
        _pb_err "kubeproxy_up: bad port '$port'"
        return 2
    fi
    case "$proto" in tcp | udp) ;; *) _pb_err "kubeproxy_up: PROTO must be tcp or udp, not '$proto'"; return 2 ;; esac
    for ep in "${eps[@]}"; do
        ip=${ep%:*} eport=${ep##*:}
        if [ "$ip" = "$ep" ] || ! [[ "$ip" =~ $ipre ]] || ! [[ "$eport" =~ ^[0-9]+$ ]]; then
            _pb_err "kubeproxy_up: bad endpoint '$ep' (want IP:PORT)"
            return 2
        fi
    done
    [ -d "/sys/class/net/$br/bridge" ] || { _pb_err "kubeproxy_up: no bridge $br (bridge_up first)"; return 1; }
    if [ -e "$PEER_BRIDGE_STATE/kp.bridge" ] && [ "$(cat "$PEER_BRIDGE_STATE/kp.bridge")" != "$br" ]; then
        _pb_err "kubeproxy_up: already up on bridge $(cat "$PEER_BRIDGE_STATE/kp.bridge")"
        return 1
    fi
    command -v nft >/dev/null 2>&1 || { _pb_err "kubeproxy_up: nft not found"; return 1; }
    _pb_statedir || return 1

    # br_netfilter: the endpoint's reply to a same-subnet client is bridged,
    # not routed; only br_netfilter shows it to conntrack for the un-DNAT.
    if [ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
        modprobe br_netfilter 2>/dev/null || { _pb_err "kubeproxy_up: cannot load br_netfilter"; return 1; }
        touch "$PEER_BRIDGE_STATE/kp.loaded_br_netfilter"
    fi
    echo "$br" >"$PEER_BRIDGE_STATE/kp.bridge"
    _pb_brnf_apply || return 1
    # Hairpin (client == endpoint): the DNATed frame is bridged back out of
    # the port it came in on, which a bridge does only in hairpin mode.
    for f in "/sys/class/net/$br/brif"/*; do
        [ -e "$f" ] || continue
        p=${f##*/}
        if [ ! -e "$PEER_BRIDGE_STATE/kp.hairpin.$p" ]; then
            cat "/sys/class/net/$br/brif/$p/hairpin_mode" >"$PEER_BRIDGE_STATE/kp.hairpin.$p" || return 1
        fi
        echo 1 >"/sys/class/net/$br/brif/$p/hairpin_mode" || { _pb_err "kubeproxy_up: cannot set hairpin mode on $p"; return 1; }
    done

    svc="svc-$vip/$proto/$port"
    local counter=""
    if [ -n "${PEER_KP_COUNTERS:-}" ]; then counter=counter; fi
    n=${#eps[@]}
    # This Service's endpoint chains from an earlier call (to drop the stale).
    local old=() epc vmap="" t=$_PB_KP_TABLE
    if nft list table ip "$t" >/dev/null 2>&1; then
        mapfile -t old < <(nft list table ip "$t" |
            sed -n "s|^[[:space:]]*chain \(ep-$vip/$proto/${port}__[^ ]*\) {.*|\1|p")
    fi
    {
        # The table as kube-proxy's nftables mode lays it out. Every chain is
        # declared empty, then flushed and filled: a chain body in a table
        # block would be appended on every call.
        cat <<EOF
table ip $t {
    comment "vsbench: kube-proxy-style Services on $br"
    map service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }
    set cluster-ips { type ipv4_addr ; }
    chain mark-for-masquerade { }
    chain masquerading { }
    chain services { }
    chain cluster-ips-check { }
    chain nat-prerouting { type nat hook prerouting priority -100 ; policy accept ; }
    chain nat-output { type nat hook output priority -100 ; policy accept ; }
    chain nat-postrouting { type nat hook postrouting priority 100 ; policy accept ; }
    chain filter-forward { type filter hook forward priority -110 ; policy accept ; }
    chain filter-output-post-dnat { type filter hook output priority -90 ; policy accept ; }
}
flush chain ip $t mark-for-masquerade
add rule ip $t mark-for-masquerade mark set mark or 0x4000
flush chain ip $t masquerading
add rule ip $t masquerading mark and 0x4000 == 0 return
add rule ip $t masquerading mark set mark xor 0x4000
add rule ip $t masquerading masquerade fully-random
flush chain ip $t services
add rule ip $t services ip daddr . meta l4proto . th dport vmap @service-ips
flush chain ip $t cluster-ips-check
add rule ip $t cluster-ips-check ip daddr @cluster-ips reject comment "no Service on this port of a ClusterIP"
flush chain ip $t nat-prerouting
add rule ip $t nat-prerouting jump services
flush chain ip $t nat-output
add rule ip $t nat-output jump services
flush chain ip $t nat-postrouting
add rule ip $t nat-postrouting jump masquerading
flush chain ip $t filter-forward
add rule ip $t filter-forward ct state new jump cluster-ips-check
flush chain ip $t filter-output-post-dnat
add rule ip $t filter-output-post-dnat ct state new jump cluster-ips-check
add chain ip $t $svc
flush chain ip $t $svc
EOF
        local new=()
        for i in "${!eps[@]}"; do
            ep=${eps[$i]} ip=${ep%:*} eport=${ep##*:}
            epc="ep-$vip/$proto/${port}__$ip/$eport"
            new+=("$epc")
            echo "add chain ip $t $epc"
            echo "flush chain ip $t $epc"
            echo "add rule ip $t $epc ip saddr $ip jump mark-for-masquerade"
            echo "add rule ip $t $epc $counter meta l4proto $proto dnat to $ip:$eport"
            vmap+="${vmap:+, }$i : goto $epc"
        done
        echo "add rule ip $t $svc numgen random mod $n vmap { $vmap }"
        echo "add element ip $t service-ips { $vip . $proto . $port : goto $svc }"
        echo "add element ip $t cluster-ips { $vip }"
        # Endpoints gone since the last call: unreferenced now, delete.
        for cur in "${old[@]}"; do
            if ! printf '%s\n' "${new[@]}" | grep -qxF -- "$cur"; then
                echo "delete chain ip $t $cur"
            fi
        done
    } >"$PEER_BRIDGE_STATE/kp.nft"
    local out
    if ! out=$(nft -f "$PEER_BRIDGE_STATE/kp.nft" 2>&1); then
        _pb_err "kubeproxy_up: nft rejected the rules ($PEER_BRIDGE_STATE/kp.nft): $(echo "$out" | head -1)"
        return 1
    fi
    _pb_note "Service $vip:$port/$proto -> ${eps[*]} on $br (table ip $_PB_KP_TABLE)"
}

kubeproxy_down() {
    local rc=0 f p br
    if nft list table ip "$_PB_KP_TABLE" >/dev/null 2>&1; then
        nft delete table ip "$_PB_KP_TABLE" || { _pb_err "kubeproxy_down: cannot delete table ip $_PB_KP_TABLE"; rc=1; }
    fi
    [ -d "$PEER_BRIDGE_STATE" ] || return $rc
    br=$(cat "$PEER_BRIDGE_STATE/kp.bridge" 2>/dev/null || true)
    for f in "$PEER_BRIDGE_STATE"/kp.hairpin.*; do
        [ -e "$f" ] || continue
        p=${f##*/kp.hairpin.}
        if [ -n "$br" ] && [ -e "/sys/class/net/$br/brif/$p/hairpin_mode" ]; then
            cat "$f" >"/sys/class/net/$br/brif/$p/hairpin_mode" || rc=1
        fi
        rm -f "$f"
    done
    rm -f "$PEER_BRIDGE_STATE/kp.bridge" "$PEER_BRIDGE_STATE/kp.nft"
    _pb_brnf_apply || rc=1
    if [ -e "$PEER_BRIDGE_STATE/kp.loaded_br_netfilter" ]; then
        modprobe -r br_netfilter 2>/dev/null || { _pb_err "kubeproxy_down: cannot unload br_netfilter"; rc=1; }
        rm -f "$PEER_BRIDGE_STATE/kp.loaded_br_netfilter"
    fi
    rmdir "$PEER_BRIDGE_STATE" 2>/dev/null || true
    return $rc
}

bridge_netrx() {
    awk '$1 == "NET_RX:" { $1 = ""; print substr($0, 2) }' /proc/softirqs
}
