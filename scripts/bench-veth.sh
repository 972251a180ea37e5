#!/usr/bin/env bash
# Side-by-side benchmark of vswitch and the switches a user would pick
# instead, on one machine, with the same veth pods and the same load.
#
#   scripts/bench-veth.sh [--quick] [--peers LIST] [--scenarios LIST] [--rounds N]
#                         [--gen-core N] [--switch-core N] [--out DIR] [--no-doc] [--no-build]
#                         [--profile]
#
# Peers (each set up from nothing and torn down again, in every round):
#   vswitch-afxdp   vswitchd, pods' veth host ends attached over AF_XDP
#   vswitch-tap     vswitchd, pods' eth0 a TAP device vswitchd created
#   bridge-offload  Linux bridge, pods with the kernel's default offloads (TSO)
#   bridge          Linux bridge, pods with TX checksum (and so TSO) off
#   ovs-afxdp       Open vSwitch 3.x userspace datapath, afxdp ports, its own
#                   ovsdb-server/ovs-vswitchd in a private run directory
#   kube-proxy      Services only: Linux bridge + br_netfilter + nftables DNAT
#                   as kube-proxy's nftables mode writes it
# Scenarios:
#   l2-64b          NDR/PDR search, 64-byte UDP, pod a -> pod b (one subnet)
#   routed-64b      NDR/PDR, 64-byte UDP, pod a -> pod c (other subnet)
#   svc-1flow       NDR/PDR, 64-byte UDP to a Service VIP (endpoint: pod b), 1 flow
#   svc-10kflows    the same with 10,000 flows (source ports)
#   svc-newflows    every frame a new 5-tuple (source ports of addresses
#                   10.244.1.128-254, which no pod has), at the generator's
#                   maximum: new flows per second that get through, and loss
#   tcp             iperf3 TCP pod a -> pod b, 1 and 4 streams
#   ping            ping pod a -> pod b: RTT median and p99
#   cpu             at a fixed low rate every peer carries without loss: CPU
#                   seconds (all cores, /proc/stat, while the generator runs)
#                   per million frames, and how busy the switch's core is
# Latency percentiles of the sink's histogram come with every NDR search
# (trials at 50 % and 90 % of the NDR).
#
# Cores: the generator and sink (and the pods' iperf3/ping) on --gen-core,
# the switch on --switch-core: vswitchd's worker, OVS's PMD thread, the
# bridge's packet processing (RPS on the host-end veths). The script prints
# the layout and refuses a peer whose layout would differ.
#
# Output: bench/results/<date>-<host>/ (or --out): one JSON file per
# scenario, peer and round; report.md (tables with ratios against
# vswitch-afxdp) and svg/ (charts); log.txt. A full run (not --quick)
# regenerates the generated section of BENCHMARKS.md unless --no-doc.
# A peer that cannot run here is skipped with the reason printed.
#
# --no-build: use the release binaries as they are (default: cargo build
# --release first). --no-doc: leave BENCHMARKS.md alone.
#
# --quick: a few seconds per cell, one round (CI smoke); default: full run,
# three rounds, peers alternating within each round.
#
# --rounds 0 --out DIR measures nothing and writes DIR's report again (with
# --profile: after adding the profiles).
#
# --profile: after the rounds, where the time goes: for every peer and packet
# scenario, `perf record` (software clock, all cores) during a trial at the
# generator's maximum rate, and during iperf3 for tcp; a summary per core
# (process, kernel or user code) and the top symbols of the switch's core
# go to profile/<scenario>@<peer>.txt.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
PROG=bench-veth.sh
ALL_PEERS="vswitch-afxdp vswitch-tap bridge-offload bridge ovs-afxdp kube-proxy"
ALL_SCENARIOS="l2-64b routed-64b svc-1flow svc-10kflows svc-newflows tcp ping cpu"

ARGS="$*"
PROFILE=0 QUICK=0 ROUNDS="" PEERS=$ALL_PEERS SCENARIOS=$ALL_SCENARIOS OUT="" DOC=1 BUILD=1
GEN_CORE=0 SWITCH_CORE=1

help() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
usage() {
    echo "usage: $PROG [--quick] [--peers LIST] [--scenarios LIST] [--rounds N] [--gen-core N]" >&2
    echo "       [--switch-core N] [--out DIR] [--no-doc] [--no-build] [--profile]   (--help: all of it)" >&2
    exit 2
}
die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { echo "$PROG: $*" >&2; }

while [[ $# -gt 0 ]]; do
    case $1 in
    --quick) QUICK=1; shift ;;
    --peers) [[ $# -ge 2 ]] || usage; PEERS=${2//,/ }; shift 2 ;;
    --scenarios) [[ $# -ge 2 ]] || usage; SCENARIOS=${2//,/ }; shift 2 ;;
    --rounds) [[ $# -ge 2 ]] || usage; ROUNDS=$2; shift 2 ;;
    --gen-core) [[ $# -ge 2 ]] || usage; GEN_CORE=$2; shift 2 ;;
    --switch-core) [[ $# -ge 2 ]] || usage; SWITCH_CORE=$2; shift 2 ;;
    --out) [[ $# -ge 2 ]] || usage; OUT=$2; OUT_GIVEN=1; shift 2 ;;
    --no-doc) DOC=0; shift ;;
    --no-build) BUILD=0; shift ;;
    --profile) PROFILE=1; shift ;;
    -h | --help) help; exit 0 ;;
    *) echo "$PROG: unknown argument '$1'" >&2; usage ;;
    esac
done

for p in $PEERS; do
    [[ " $ALL_PEERS " == *" $p "* ]] || die "unknown peer '$p' (peers: $ALL_PEERS)"
done
for s in $SCENARIOS; do
    [[ " $ALL_SCENARIOS " == *" $s "* ]] || die "unknown scenario '$s' (scenarios: $ALL_SCENARIOS)"
done
[[ -z $ROUNDS || $ROUNDS =~ ^[0-9][0-9]?$ ]] || die "--rounds '$ROUNDS': a number from 0 to 99"
# --rounds 0: measure nothing; with --profile --out DIR, add the profiles to
# the run in DIR and write its report again.
[[ $ROUNDS != 0 || -n $OUT ]] || die "--rounds 0 needs --out DIR (a run to report on)"
NCPU=$(nproc)
for c in "$GEN_CORE" "$SWITCH_CORE"; do
    [[ $c =~ ^[0-9]+$ && $c -lt $NCPU ]] || die "core '$c' is not a core of this machine (0-$((NCPU - 1)))"
done
[[ $GEN_CORE != "$SWITCH_CORE" ]] || die "--gen-core and --switch-core must differ"
[[ $(id -u) -eq 0 ]] || die "must run as root (namespaces, XDP, bridges)"
if [[ $PROFILE -eq 1 ]]; then
    command -v perf >/dev/null || die "--profile needs perf (apt install linux-perf)"
fi

if [[ $QUICK -eq 1 ]]; then
    ROUNDS=${ROUNDS:-1} TRIAL=0.3 PRECISION=20 LAT_TRIAL=0.3 WARMUP=0.2 IPERF_S=1 PINGS=20
    NEWFLOW_S=0.5 CPU_S=1 DOC=0
else
    ROUNDS=${ROUNDS:-3} TRIAL=2 PRECISION=2 LAT_TRIAL=2 WARMUP=1 IPERF_S=10 PINGS=1000
    NEWFLOW_S=3 CPU_S=5
fi
CPU_RATE=20000          # every peer carries this without loss; the generator sleeps between frames
VIP=10.96.0.10 SVC_PORT=9000
ROUTER_MAC=02:00:0a:f4:00:01

BIN=$REPO/target/release
if [[ $BUILD -eq 1 ]]; then
    log "building release binaries"
    (cd "$REPO" && cargo build --release --workspace --bins -q) || die "build failed"
fi
for b in vswitchd vswitchctl vswitch-bench; do
    [[ -x $BIN/$b ]] || die "$BIN/$b missing: cargo build --release --workspace --bins"
done
for t in ip ethtool iperf3 ping python3 taskset; do
    command -v "$t" >/dev/null || die "'$t' not found (scripts/deps.sh installs it)"
done

# shellcheck source=scripts/bench/peer-bridge.sh
. "$SCRIPT_DIR/bench/peer-bridge.sh"
# shellcheck source=scripts/bench/peer-ovs.sh
. "$SCRIPT_DIR/bench/peer-ovs.sh"

HOST=$(hostname -s 2>/dev/null || cat /proc/sys/kernel/hostname)
if [[ -z $OUT ]]; then
    OUT=$REPO/bench/results/$(date -u +%Y-%m-%d)-$HOST
    [[ $QUICK -eq 1 ]] && OUT=$OUT-quick
fi
# Never mix with (or wipe) an earlier run: a default directory that exists
# gets a number.
if [[ -z ${OUT_GIVEN:-} && -e $OUT ]]; then
    n=2
    while [[ -e $OUT-$n ]]; do n=$((n + 1)); done
    OUT=$OUT-$n
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [[ $ROUNDS -gt 0 ]]; then
    rm -f "$OUT"/*.json
    echo "$ARGS" >"$OUT/args.txt"
fi
RUN=$(mktemp -d /tmp/vsbench.XXXXXX)
exec > >(tee -a "$OUT/log.txt") 2>&1

LAYOUT="generator+sink+pods core $GEN_CORE, switch core $SWITCH_CORE"
log "layout: $LAYOUT ($NCPU cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
log "peers: $PEERS; scenarios: $SCENARIOS; rounds: $ROUNDS; results: $OUT"

PODS=(vsb-a vsb-b vsb-c)
declare -A POD_IP=([vsb-a]=10.244.1.11 [vsb-b]=10.244.1.12 [vsb-c]=10.244.2.13)
declare -A POD_MAC=([vsb-a]=02:00:0a:f4:01:0b [vsb-b]=02:00:0a:f4:01:0c [vsb-c]=02:00:0a:f4:02:0d)
declare -A POD_GW=([vsb-a]=10.244.1.1 [vsb-b]=10.244.1.1 [vsb-c]=10.244.2.1)

VSWITCHD_PID=""
vctl() { "$BIN/vswitchctl" --socket "$RUN/vswitchd.sock" "$@"; }
in_pod() { local p=$1; shift; ip netns exec "$p" taskset -c "$GEN_CORE" "$@"; }

# A veth pod not attached to anything yet; offloads "on" (kernel default) or "off".
mkpod() {
    local p=$1 offload=$2
    ip netns add "$p"
    ip -n "$p" link set lo up
    ip link add "$p" type veth peer name eth0 netns "$p"
    ip -n "$p" link set eth0 address "${POD_MAC[$p]}"
    [[ $offload == off ]] && ip netns exec "$p" ethtool -K eth0 tx off >/dev/null
    ip -n "$p" addr add "${POD_IP[$p]}/24" dev eth0
    ip -n "$p" link set eth0 up
    sysctl -qw "net.ipv6.conf.$p.disable_ipv6=1" 2>/dev/null || true
    ip link set "$p" up
    ip -n "$p" route add default via "${POD_GW[$p]}"
}

delpods() {
    local p
    for p in "${PODS[@]}"; do
        ip netns del "$p" 2>/dev/null || true
        ip link del "$p" 2>/dev/null || true
    done
}

vswitch_up() {
    local mode=$1 p
    rm -f "$RUN/state.json"
    "$BIN/vswitchd" --socket "$RUN/vswitchd.sock" --state "$RUN/state.json" \
        --cores "$SWITCH_CORE" >"$RUN/vswitchd.log" 2>&1 &
    VSWITCHD_PID=$!
    for _ in $(seq 50); do [[ -S $RUN/vswitchd.sock ]] && break; sleep 0.1; done
    vctl show >/dev/null || { cat "$RUN/vswitchd.log"; return 1; }
    vctl addr add 10.244.1.1/24 >/dev/null
    vctl addr add 10.244.2.1/24 >/dev/null
    for p in "${PODS[@]}"; do
        local tap=()
        [[ $mode == tap ]] && tap=(--tap)
        VSWITCHCTL=$BIN/vswitchctl VSWITCH_SOCKET=$RUN/vswitchd.sock "$SCRIPT_DIR/pod.sh" add "$p" \
            --ip "${POD_IP[$p]}/24" --mac "${POD_MAC[$p]}" --gw "${POD_GW[$p]}" "${tap[@]}" >/dev/null
    done
    vctl service add "$VIP:$SVC_PORT/udp" --backend "${POD_IP[vsb-b]}:$SVC_PORT" >/dev/null
    PEER_NOTES=(--note "vswitch=$("$BIN/vswitchd" --version | head -1)"
        --note "vswitch ports=$(vctl -o json port list | python3 -c 'import json,sys; print(", ".join(sorted({p["mode"] for p in json.load(sys.stdin)})))' 2>/dev/null || echo '?')")
}

vswitch_down() {
    local p
    for p in "${PODS[@]}"; do
        VSWITCHCTL=$BIN/vswitchctl VSWITCH_SOCKET=$RUN/vswitchd.sock "$SCRIPT_DIR/pod.sh" del "$p" >/dev/null 2>&1 || true
    done
    if [[ -n $VSWITCHD_PID ]]; then
        kill "$VSWITCHD_PID" 2>/dev/null || true
        wait "$VSWITCHD_PID" 2>/dev/null || true
        VSWITCHD_PID=""
    fi
    delpods
}

peer_up() {
    local peer=$1 p
    PEER_NOTES=()
    case $peer in
    vswitch-afxdp) vswitch_up afxdp ;;
    vswitch-tap) vswitch_up tap ;;
    bridge-offload | bridge | kube-proxy)
        local off=off
        [[ $peer == bridge-offload ]] && off=on
        for p in "${PODS[@]}"; do mkpod "$p" "$off"; done
        bridge_up vsbench-br "$SWITCH_CORE" "$off" 10.244.1.1/24 10.244.2.1/24 -- "${PODS[@]}"
        if [[ $peer == kube-proxy ]]; then
            kubeproxy_up vsbench-br "$VIP" "$SVC_PORT" udp "${POD_IP[vsb-b]}:$SVC_PORT"
            PEER_NOTES=(--note "nftables=$(nft --version 2>/dev/null | head -1)")
        fi
        ;;
    ovs-afxdp)
        for p in "${PODS[@]}"; do mkpod "$p" off; done
        ovs_up "$RUN/ovs" "$SWITCH_CORE" "${PODS[@]}"
        ovs_arp_responder "$ROUTER_MAC" 10.244.1.1
        ovs_arp_responder "$ROUTER_MAC" 10.244.2.1
        for p in "${PODS[@]}"; do ovs_route "$ROUTER_MAC" "${POD_IP[$p]}/32" "$p" "${POD_MAC[$p]}"; done
        PEER_NOTES=(--note "ovs=$(ovs-vswitchd --version | head -1)"
            --note "ovs ports=$(ovs_port_modes | awk '{print $2}' | sort -u | xargs)")
        ;;
    esac
}

peer_down() {
    case $1 in
    vswitch-afxdp | vswitch-tap) vswitch_down ;;
    bridge-offload | bridge | kube-proxy) bridge_down vsbench-br "${PODS[@]}" || true; delpods ;;
    ovs-afxdp) ovs_down "$RUN/ovs" || true; delpods ;;
    esac
}

# Where peer $1's switching really runs, as a CPU list (checked against the
# layout after it is up, so that no peer runs with more or other cores).
switch_cpus() {
    local t comm
    case $1 in
    vswitch-*)
        for t in /proc/"$VSWITCHD_PID"/task/*; do
            comm=$(cat "$t/comm" 2>/dev/null) || continue
            [[ $comm == vswitch-w* ]] && awk '/Cpus_allowed_list/{print $2}' "$t/status"
        done | sort -u | paste -sd' '
        ;;
    ovs-afxdp)
        local pid
        pid=$(cat "$RUN/ovs/ovs-vswitchd.pid" 2>/dev/null) || return 0
        for t in /proc/"$pid"/task/*; do
            comm=$(cat "$t/comm" 2>/dev/null) || continue
            [[ $comm == pmd* ]] && awk '/Cpus_allowed_list/{print $2}' "$t/status"
        done | sort -u | paste -sd' '
        ;;
    bridge* | kube-proxy)
        local p
        for p in "${PODS[@]}"; do
            python3 -c 'import sys; m=int(open(sys.argv[1]).read().replace(",",""),16); print(",".join(str(i) for i in range(64) if m>>i&1))' \
                "/sys/class/net/$p/queues/rx-0/rps_cpus"
        done | sort -u | paste -sd' '
        ;;
    esac
}

# Why a peer cannot run here (empty: it can).
peer_unavailable() {
    case $1 in
    vswitch-*) "$BIN/vswitchd" --version >/dev/null 2>&1 || echo "vswitchd does not run" ;;
    bridge*) bridge_check 2>&1 >/dev/null | tail -1 || true ;;
    kube-proxy) { bridge_check && kubeproxy_check; } 2>&1 >/dev/null | tail -1 || true ;;
    ovs-afxdp) ovs_check "$RUN/ovs" 2>&1 >/dev/null | tail -1 || true ;;
    esac
}

# Why scenario $2 does not apply to peer $1 (empty: it does).
not_applicable() {
    local peer=$1 s=$2
    case $s in
    svc-*) case $peer in vswitch-* | kube-proxy) ;; *) echo "no Service load balancer (kube-proxy is the bridge's)" ;; esac ;;
    *) [[ $peer == kube-proxy ]] && echo "the same as 'bridge' outside Services" ;;
    esac
    return 0
}

cleanup() {
    set +e
    [[ -r $RUN/iperf3.pid ]] && kill "$(cat "$RUN/iperf3.pid")" 2>/dev/null
    [[ -n ${CUR_PEER:-} ]] && peer_down "$CUR_PEER" >/dev/null 2>&1
    [[ -n $VSWITCHD_PID ]] && kill "$VSWITCHD_PID" 2>/dev/null
    delpods
    rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench() {
    local peer=$1 scenario=$2 round=$3
    shift 3
    "$BIN/vswitch-bench" "$@" --peer "$peer" --scenario "$scenario" --layout "$LAYOUT" \
        "${PEER_NOTES[@]}" --json "$OUT/$scenario@$peer@r$round.json"
}

pair_args() {
    # AF_XDP on both sides for every peer: a fallback to AF_PACKET would
    # change the instrument between cells, so it must fail instead.
    echo --tx-netns vsb-a --tx-iface eth0 --rx-netns "$1" --rx-iface eth0 --dst-ip "$2" \
        --gen-core "$GEN_CORE" --sink-core "$GEN_CORE" --tx-driver afxdp --rx-driver afxdp
}

ndr() {
    local peer=$1 scenario=$2 round=$3 sink=$4 dst=$5 attempt
    shift 5
    # A search in which not even the partial-drop criterion (<=0.5 % loss)
    # ever passed measured nothing: a broken set-up. An NDR below the
    # lowest rate (a few frames lost at every rate) is a result, reported
    # as "<lowest rate". With --quick (0.3 s trials, 3,000 frames at the
    # lowest rate, right after a trial that saturated the switch) a
    # start-up stall of a few milliseconds can cost more than 0.5 % on a
    # 2-vCPU machine, so the search is run once more before it fails; a
    # broken set-up fails both times.
    for attempt in 1 2; do
        # shellcheck disable=SC2046
        bench "$peer" "$scenario" "$round" ndr $(pair_args "$sink" "$dst") \
            --trial "$TRIAL" --precision "$PRECISION" --warmup "$WARMUP" --latency-trial "$LAT_TRIAL" "$@" || return 1
        python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["ndr"]["pdr_median_pps"] <= 0)' \
            "$OUT/$scenario@$peer@r$round.json" && return 0
        log "  $scenario: no trial within 0.5 % loss (attempt $attempt)"
        [[ $QUICK -eq 1 ]] || return 1
    done
    return 1
}

busy_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }

run_scenario() {
    local peer=$1 s=$2 r=$3
    case $s in
    l2-64b) ndr "$peer" "$s" "$r" vsb-b "${POD_IP[vsb-b]}" ;;
    routed-64b) ndr "$peer" "$s" "$r" vsb-c "${POD_IP[vsb-c]}" ;;
    svc-1flow) ndr "$peer" "$s" "$r" vsb-b "$VIP" ;;
    svc-10kflows) ndr "$peer" "$s" "$r" vsb-b "$VIP" --flows 10000 ;;
    svc-newflows)
        # shellcheck disable=SC2046
        # Sources 10.244.1.128-254 (no pod uses them) × 64,512 ports: 8.1
        # million flows, none repeated within a run of this length.
        bench "$peer" "$s" "$r" trial $(pair_args vsb-b "$VIP") --rate max --duration "$NEWFLOW_S" \
            --src-base 10.244.1.128 --flows 8128512 --warmup 0.1 ;;
    tcp)
        local streams bps cmd
        in_pod vsb-b iperf3 -s -D -1 -p 5201 --pidfile "$RUN/iperf3.pid" >/dev/null || return 1
        sleep 0.3
        for streams in 1 4; do
            cmd="iperf3 -c ${POD_IP[vsb-b]} -p 5201 -t $IPERF_S -P $streams -J"
            # shellcheck disable=SC2086
            bps=$(in_pod vsb-a $cmd | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)') ||
                return 1
            "$BIN/vswitch-bench" record --peer "$peer" --scenario tcp --name "$streams stream$([[ $streams -gt 1 ]] && echo s)" \
                --unit Gbit/s "${PEER_NOTES[@]}" --command "ip netns exec vsb-a taskset -c $GEN_CORE $cmd" \
                --layout "$LAYOUT" --json "$OUT/tcp-$streams@$peer@r$r.json" "$bps" || return 1
            log "  tcp $streams: $(printf %.2f "$bps") Gbit/s"
            if [[ $streams -eq 1 ]]; then
                in_pod vsb-b iperf3 -s -D -1 -p 5201 --pidfile "$RUN/iperf3.pid" >/dev/null || return 1
                sleep 0.3
            fi
        done
        ;;
    ping)
        local stats p50 p99 n cmd="ping -c $PINGS -i 0.01 ${POD_IP[vsb-b]}"
        # shellcheck disable=SC2086
        stats=$(in_pod vsb-a $cmd |
            python3 -c 'import re,sys,statistics as st
t=sorted(float(m.group(1))*1000 for m in re.finditer(r"time=([0-9.]+) ms", sys.stdin.read()))
print(st.median(t), t[min(len(t)-1, int(len(t)*0.99))], len(t)) if t else print(0, 0, 0)') || return 1
        read -r p50 p99 n <<<"$stats"
        [[ $n -gt 0 ]] || { log "  ping: no replies"; return 1; }
        for q in p50 p99; do
            "$BIN/vswitch-bench" record --peer "$peer" --scenario ping --name "RTT $q" --unit us --better lower \
                "${PEER_NOTES[@]}" --command "ip netns exec vsb-a taskset -c $GEN_CORE $cmd" --layout "$LAYOUT" \
                --json "$OUT/ping-$q@$peer@r$r.json" "${!q}" || return 1
        done
        log "  ping: p50 $p50 us, p99 $p99 us ($n replies)"
        ;;
    cpu)
        local per busy lost cmd
        cmd="$BIN/vswitch-bench trial $(pair_args vsb-b "${POD_IP[vsb-b]}") --rate $CPU_RATE --duration $CPU_S --warmup 0.1"
        # shellcheck disable=SC2086
        $cmd --json "$RUN/cpu.json" >/dev/null || return 1
        read -r per busy lost < <(python3 -c 'import json,sys
t = json.load(open(sys.argv[1]))["trial"]
print(sum(t["cpu_busy_s"]) / max(t["received"], 1) * 1e6, t["cpu_busy_s"][int(sys.argv[2])] / t["cpu_window_s"] * 100, t["lost"])' \
            "$RUN/cpu.json" "$SWITCH_CORE") || return 1
        # The cost per frame means something only if every frame arrived.
        [[ $lost -eq 0 ]] || { log "  cpu: $lost frames lost at $CPU_RATE frames/s"; return 1; }
        "$BIN/vswitch-bench" record --peer "$peer" --scenario cpu --name "all cores, s per Mpkt at $((CPU_RATE / 1000)) kpps" \
            --unit s --better lower "${PEER_NOTES[@]}" --layout "$LAYOUT" --command "$cmd" \
            --json "$OUT/cpu@$peer@r$r.json" "$per" || return 1
        "$BIN/vswitch-bench" record --peer "$peer" --scenario cpu --name "switch core busy" \
            --unit % --better lower "${PEER_NOTES[@]}" --layout "$LAYOUT" --command "$cmd" \
            --json "$OUT/cpu-core@$peer@r$r.json" "$busy" ||
            return 1
        log "  cpu: $(printf %.1f "$per") s per million frames (all cores), switch core $(printf %.1f "$busy") % busy"
        ;;
    esac
}

# What an interrupted earlier run may have left (these names are ours).
for p in "${PODS[@]}"; do
    if [[ -e /run/netns/$p ]] || ip link show dev "$p" >/dev/null 2>&1; then
        log "removing '$p' left over from an earlier run"
    fi
done
delpods
bridge_down vsbench-br >/dev/null 2>&1 || true

SKIPPED=()
declare -A DEAD=()
for peer in $PEERS; do
    why=$(peer_unavailable "$peer")
    if [[ -n $why ]]; then
        log "skipping peer $peer: $why"
        SKIPPED+=("$peer: $why")
        DEAD[$peer]=1
    fi
done

FAILED=0
for ((round = 1; round <= ROUNDS; round++)); do
    for peer in $PEERS; do
        [[ -n ${DEAD[$peer]:-} ]] && continue
        log "round $round/$ROUNDS: $peer (layout: $LAYOUT)"
        CUR_PEER=$peer
        if ! peer_up "$peer"; then
            log "peer $peer failed to start; skipping it from here on"
            SKIPPED+=("$peer: failed to start in round $round")
            DEAD[$peer]=1
            peer_down "$peer" >/dev/null 2>&1 || true
            continue
        fi
        cpus=$(switch_cpus "$peer")
        if [[ $cpus != "$SWITCH_CORE" ]]; then
            log "peer $peer switches on core(s) '$cpus', not $SWITCH_CORE as the others: refused"
            SKIPPED+=("$peer: ran on core(s) '$cpus' instead of $SWITCH_CORE")
            DEAD[$peer]=1
            peer_down "$peer" >/dev/null 2>&1 || true
            continue
        fi
        for s in $SCENARIOS; do
            why=$(not_applicable "$peer" "$s")
            if [[ -n $why ]]; then
                [[ $round -eq 1 ]] && log "  $s: not for $peer ($why)"
                continue
            fi
            log "  $s"
            if ! run_scenario "$peer" "$s" "$round"; then
                log "  $s FAILED for $peer"
                FAILED=1
            fi
        done
        peer_down "$peer"
        CUR_PEER=""
    done
done

# Where the time goes: perf on every core while a scenario runs flat out.
profile() {
    local peer=$1 s=$2 secs=3 txt=$OUT/profile/$2@$1.txt data=$RUN/perf.data
    case $s in
    l2-64b) set -- vsb-b "${POD_IP[vsb-b]}" ;;
    routed-64b) set -- vsb-c "${POD_IP[vsb-c]}" ;;
    svc-1flow) set -- vsb-b "$VIP" ;;
    svc-10kflows) set -- vsb-b "$VIP" --flows 10000 ;;
    svc-newflows) set -- vsb-b "$VIP" --src-base 10.244.1.128 --flows 8128512 ;;
    tcp) ;;
    *) return 0 ;;
    esac
    mkdir -p "$OUT/profile"
    if [[ $s == tcp ]]; then
        in_pod vsb-b iperf3 -s -D -1 -p 5201 --pidfile "$RUN/iperf3.pid" >/dev/null
        sleep 0.3
        in_pod vsb-a iperf3 -c "${POD_IP[vsb-b]}" -p 5201 -t $((secs + 2)) >"$RUN/load.out" 2>&1 &
    else
        local sink=$1 dst=$2
        shift 2
        # shellcheck disable=SC2046
        "$BIN/vswitch-bench" trial $(pair_args "$sink" "$dst") --rate max --duration $((secs + 2)) \
            --warmup 0.2 "$@" >"$RUN/load.out" 2>&1 &
    fi
    local load=$!
    sleep 1.5
    perf record -q -e cpu-clock -F 1999 -a -g -o "$data" -- sleep "$secs" >/dev/null 2>&1 || true
    wait "$load" || true
    {
        echo "# $s on $peer: perf record -e cpu-clock -a during $secs s of load ($LAYOUT)"
        echo "# load: $(tail -1 "$RUN/load.out")"
        echo; echo "## share of all samples by core, process and code"
        perf report -i "$data" --no-children --sort cpu,comm,dso -g none --stdio 2>/dev/null |
            grep -v '^#' | grep -v '^$' | head -25 || true
        echo; echo "## top symbols on the switch's core ($SWITCH_CORE)"
        perf report -i "$data" --no-children --cpu "$SWITCH_CORE" --sort comm,dso,sym -g none --stdio 2>/dev/null |
            grep -v '^#' | grep -v '^$' | head -30 || true
        echo; echo "## top symbols on the generator's core ($GEN_CORE)"
        perf report -i "$data" --no-children --cpu "$GEN_CORE" --sort comm,dso,sym -g none --stdio 2>/dev/null |
            grep -v '^#' | grep -v '^$' | head -20 || true
    } >"$txt"
    rm -f "$data"
    log "  profile: $txt"
}

if [[ $PROFILE -eq 1 ]]; then
    for peer in $PEERS; do
        [[ -n ${DEAD[$peer]:-} ]] && continue
        log "profiling $peer"
        CUR_PEER=$peer
        peer_up "$peer" || { peer_down "$peer" >/dev/null 2>&1; continue; }
        for s in $SCENARIOS; do
            [[ -n $(not_applicable "$peer" "$s") ]] && continue
            profile "$peer" "$s"
        done
        peer_down "$peer"
        CUR_PEER=""
    done
fi

if ! compgen -G "$OUT/*.json" >/dev/null; then
    log "no results in $OUT to report on"
    exit 0
fi
log "report"
"$BIN/vswitch-bench" report "$OUT" --markdown "$OUT/report.md" --svg-dir "$OUT/svg" --svg-link svg \
    --baseline vswitch-afxdp
{
    echo
    echo "Layout: $LAYOUT."
    for s in "${SKIPPED[@]}"; do echo "- skipped $s"; done
} >>"$OUT/report.md"
cat "$OUT/report.md"

if [[ $DOC -eq 1 ]]; then
    rel=${OUT#"$REPO"/}
    # The command line of the run that measured, not of a --rounds 0 report.
    [[ -r $OUT/args.txt ]] && ARGS=$(cat "$OUT/args.txt")
    python3 - "$REPO/BENCHMARKS.md" "$OUT/report.md" "$rel" "$ARGS" <<'PY'
import sys, re
doc, rep, rel, args = sys.argv[1:5]
text = open(doc).read()
body = open(rep).read().replace("](svg/", "](" + rel + "/svg/")
gen = ("<!-- bench-veth:begin (generated by scripts/bench-veth.sh; do not edit) -->\n"
       f"Results in [`{rel}`]({rel}), from `scripts/bench-veth.sh {args}`.\n\n" + body +
       "<!-- bench-veth:end -->")
new, n = re.subn(r"<!-- bench-veth:begin.*?<!-- bench-veth:end -->", lambda m: gen, text, flags=re.S)
if n != 1:
    sys.exit("BENCHMARKS.md has no bench-veth:begin/end markers")
open(doc, "w").write(new)
PY
    log "BENCHMARKS.md updated from $OUT"
fi
[[ $FAILED -eq 0 ]] || die "some scenarios failed (see above)"
log "done: $OUT"
