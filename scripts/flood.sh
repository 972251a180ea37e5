#!/usr/bin/env bash
# Floods against a running switch, each while two other pods keep a TCP
# transfer (iperf3) and a ping going through it; reports what those pods
# lost, the switch's drops by reason, its tables and its memory (RSS).
#
#   scripts/flood.sh [--secs S] [--rounds N] [--out DIR] [--bin DIR] [KIND...]
#
# KIND: macs arp nd syn garbage (default: all). Defaults: --secs 10,
# --rounds 1, --bin target/release, --out a new /tmp/vswitch-flood.*/out.
# Each round runs every kind once, with a quiet period (no flood) before
# each as its baseline: the same pods, the same switch, the same minute.
# A quiet period follows the earlier floods and finds the tables as they
# left them (learned MACs, neighbours, conntrack entries not yet expired).
# An interrupt (Ctrl-C) stops after the period under way and cleans up;
# the periods done so far stay in floods.json.
# The flooder sends through AF_PACKET from inside its pod; its pod's port
# is an AF_XDP one like a's.
#
# Layout: vswitchd with one busy-polling worker on the last core; the flood,
# iperf3 and ping share the other cores (on a 2-core machine, one). Pods:
#   vsfl-x   AF_XDP  10.244.1.66  the flooder (no port security: the worst case)
#   vsfl-a   AF_XDP  10.244.1.11  iperf3 client, pinger        (port security)
#   vsfl-b   TAP     10.244.1.12  iperf3 server, ping target   (port security)
# The TCP transfer goes through the Service 10.96.0.11:5201 (endpoint b, so
# routed and NATed: conntrack keeps it), the ping straight to b (switched).
# The SYN flood goes to another Service, 10.96.0.10:80 (endpoint b, nc
# listening), from spoofed sources in 10.244.9.0/24: b answers each through
# the router, no client confirms (half-open flows). The ARP flood asks for
# the router from every address of 10.244.1.0/24. The router has
# 10.244.1.1/24 and fd00:1::1/64. vswitchd runs with --ct-max 16384 so that
# a SYN flood (65,536 flows) fills conntrack.
#
# Writes DIR/floods.json (one object per flood and baseline) and
# DIR/floods.md (a table); needs release binaries (cargo build --release).
set -euo pipefail

SECS=10 ROUNDS=1 BIN=target/release OUT=""
KINDS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --secs) SECS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --bin) BIN=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
        macs|arp|nd|syn|garbage) KINDS+=("$1"); shift ;;
        *) echo "flood.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[ ${#KINDS[@]} -gt 0 ] || KINDS=(macs arp nd syn garbage)
[[ $SECS =~ ^[1-9][0-9]*$ && $ROUNDS =~ ^[1-9][0-9]*$ ]] ||
    { echo "flood.sh: --secs and --rounds take whole numbers above 0" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "flood.sh: run as root" >&2; exit 1; }
for t in iperf3 ping nc python3; do
    command -v "$t" >/dev/null || { echo "flood.sh: $t is missing (scripts/deps.sh installs it)" >&2; exit 1; }
done
for b in vswitchd vswitchctl vswitch-bench; do
    [ -x "$BIN/$b" ] || { echo "flood.sh: $BIN/$b missing: cargo build --release" >&2; exit 1; }
done
BIN=$(cd "$BIN" && pwd)
SCRIPTS=$(cd "$(dirname "$0")" && pwd)

work=$(mktemp -d /tmp/vswitch-flood.XXXXXX)
OUT=${OUT:-$work/out}
mkdir -p "$OUT"
export VSWITCH_SOCKET=$work/vswitchd.sock VSWITCHCTL=$BIN/vswitchctl
ctl() { "$BIN/vswitchctl" "$@"; }
ncores=$(nproc)
worker=$((ncores - 1))
others="0-$((worker > 0 ? worker - 1 : 0))"
PODS=(vsfl-x vsfl-a vsfl-b)
pids=()
fpid=""
cleanup() {
    [ -n "$fpid" ] && kill "$fpid" 2>/dev/null
    for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null || true; done
    for p in "${PODS[@]}"; do ip netns pids "$p" 2>/dev/null | xargs -r kill 2>/dev/null || true; done
    for p in "${PODS[@]}"; do "$SCRIPTS/pod.sh" del "$p" >/dev/null 2>&1 || true; done
    [ -n "${dpid:-}" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
    for p in "${PODS[@]}"; do ip netns del "$p" 2>/dev/null || true; done
    cp "$work/vswitchd.log" "$OUT/" 2>/dev/null || true
    [ "$OUT" = "$work/out" ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$BIN/vswitchd" --socket "$VSWITCH_SOCKET" --state "$work/state.json" --cores "$worker" --ct-max 16384 \
    >"$work/vswitchd.log" 2>&1 &
dpid=$!
for _ in $(seq 100); do [ -S "$VSWITCH_SOCKET" ] && break; sleep 0.05; done
ctl addr add 10.244.1.1/24 >/dev/null
ctl addr add fd00:1::1/64 >/dev/null
"$SCRIPTS/pod.sh" add vsfl-x --ip 10.244.1.66/24 --gw 10.244.1.1 >/dev/null
"$SCRIPTS/pod.sh" add vsfl-a --ip 10.244.1.11/24 --gw 10.244.1.1 --mac 02:00:0a:f4:01:0b --port-security >/dev/null
"$SCRIPTS/pod.sh" add vsfl-b --ip 10.244.1.12/24 --gw 10.244.1.1 --mac 02:00:0a:f4:01:0c --port-security --tap >/dev/null
ip -n vsfl-x addr add fd00:1::66/64 dev eth0 nodad
ctl service add 10.96.0.10:80/tcp --backend 10.244.1.12:80 >/dev/null
ctl service add 10.96.0.11:5201/tcp --backend 10.244.1.12:5201 >/dev/null
in_ns() { local ns=$1; shift; taskset -c "$others" ip netns exec "$ns" "$@"; }
in_ns vsfl-b iperf3 -s -D >/dev/null
in_ns vsfl-b nc -lk 80 </dev/null >/dev/null 2>&1 &
pids+=($!)
in_ns vsfl-a ping -c 3 -i 0.2 -W 1 10.244.1.12 >/dev/null
in_ns vsfl-x ping -c 1 -W 1 10.244.1.1 >/dev/null

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$dpid/status" 2>/dev/null || echo 0; }
drops_json() { ctl -o json stats; }

# One measured period: KIND (or "none") for SECS seconds while a sends TCP
# to b and pings it every 10 ms; prints one JSON object.
period() {
    local kind=$1 round=$2 tag=$work/$1-$2
    drops_json >"$tag.before.json"
    local rss0
    rss0=$(rss_kib)
    in_ns vsfl-a iperf3 -c 10.96.0.11 -t "$SECS" -J >"$tag.iperf.json" 2>"$tag.iperf.err" &
    local ip=$!
    in_ns vsfl-a ping -q -i 0.01 -W 1 -w "$SECS" 10.244.1.12 >"$tag.ping.txt" 2>&1 &
    local pp=$!
    fpid=""
    case "$kind" in
        none) ;;
        macs|garbage) fl=(--kind "$kind") ;;
        arp) fl=(--kind arp --target 10.244.1.1 --sender-net 10.244.1.0/24) ;;
        nd) fl=(--kind nd --target fd00:1::1) ;;
        syn) fl=(--kind syn --target 10.96.0.10 --dst-port 80 --sender-net 10.244.9.0/24) ;;
    esac
    if [ "$kind" != none ]; then
        taskset -c "$others" "$BIN/vswitch-bench" flood --netns vsfl-x --iface eth0 \
            --driver packet "${fl[@]}" --duration "$SECS" --json "$tag.flood.json" \
            >"$tag.flood.txt" 2>&1 &
        fpid=$!
    fi
    local peak=$rss0 r
    for _ in $(seq $((SECS * 4))); do
        sleep 0.25
        r=$(rss_kib)
        [ "$r" -gt "$peak" ] && peak=$r
    done
    wait "$ip" || true
    wait "$pp" || true
    if [ -n "$fpid" ]; then
        wait "$fpid" || { echo "flood.sh: the $kind flood failed:" >&2; cat "$tag.flood.txt" >&2; exit 1; }
        fpid=""
    fi
    sleep 1
    # A new connection to the VIP after the flood, and one during the next
    # period's start: does the Service still take new flows?
    local vip_ok=0
    for _ in 1 2 3 4 5; do
        if in_ns vsfl-a nc -z -w 1 10.96.0.10 80 </dev/null >/dev/null 2>&1; then vip_ok=$((vip_ok + 1)); fi
    done
    drops_json >"$tag.after.json"
    ctl -o json ct stats >"$tag.ct.json" 2>/dev/null || echo '{}' >"$tag.ct.json"
    ctl -o json show >"$tag.show.json"
    ctl -o json neigh list >"$tag.neigh.json"
    python3 - "$kind" "$round" "$tag" "$rss0" "$peak" "$(rss_kib)" "$vip_ok" "$SECS" <<'PY'
import json, re, sys
kind, rnd, tag, rss0, peak, rss1, vip_ok, secs = sys.argv[1:]
def load(s):
    try:
        return json.load(open(f"{tag}.{s}"))
    except Exception:
        return None
ip = load("iperf.json") or {}
bps = ip.get("end", {}).get("sum_received", {}).get("bits_per_second", 0.0)
iperf_error = ip.get("error")
try:
    ping = open(f"{tag}.ping.txt").read()
except OSError:
    ping = ""
m = re.search(r"(\d+) packets transmitted, (\d+) received", ping)
tx, rx = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
rtt = re.search(r"= [\d.]+/([\d.]+)/([\d.]+)/", ping)
def drops(s):
    out = {}
    for p in load(s) or []:
        for k, v in (p.get("drops") or {}).items():
            out[k] = out.get(k, 0) + v
    return out
b, a = drops("before.json"), drops("after.json")
d = {k: a.get(k, 0) - b.get(k, 0) for k in a if a.get(k, 0) - b.get(k, 0) > 0}
fl = load("flood.json") or {}
show = load("show.json") or {}
ct = load("ct.json") or {}
print(json.dumps({
    "kind": kind, "round": int(rnd), "secs": int(secs),
    "flood_pps": round(fl.get("offered_pps", 0.0)), "flood_sent": fl.get("sent", 0),
    "tcp_gbps": round(bps / 1e9, 3), "tcp_error": iperf_error,
    "ping_sent": tx, "ping_lost": tx - rx,
    "ping_avg_ms": float(rtt.group(1)) if rtt else None,
    "ping_max_ms": float(rtt.group(2)) if rtt else None,
    "vip_connects_ok": int(vip_ok),
    "drops": d,
    "fdb_learned": show.get("fdb", {}).get("learned_entries"),
    "neighbours": len(load("neigh.json") or []),
    "ct": {k: ct.get(k) for k in ("entries", "embryonic", "created", "evicted", "full") if k in ct},
    "rss_kib_before": int(rss0), "rss_kib_peak": int(peak), "rss_kib_after": int(rss1),
}))
PY
}

echo "scripts/flood.sh --secs $SECS --rounds $ROUNDS ${KINDS[*]}; commit $(git -C "$SCRIPTS" rev-parse --short HEAD 2>/dev/null || echo unknown); $(date -u +%FT%TZ); $(nproc) cores, kernel $(uname -r)" >"$OUT/command.txt"
: >"$OUT/floods.json"
for round in $(seq "$ROUNDS"); do
    for kind in "${KINDS[@]}"; do
        echo "flood.sh: round $round: baseline, then $kind ($SECS s each)" >&2
        period none "$round" | tee -a "$OUT/floods.json"
        period "$kind" "$round" | tee -a "$OUT/floods.json"
    done
done
python3 - "$OUT/floods.json" >"$OUT/floods.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = lambda v: statistics.median(v) if v else 0
print("| flood | frames/s offered | TCP via VIP, Gbit/s: quiet / flood | pings lost of sent: quiet / flood | ping avg ms: quiet / flood | frames the switch dropped during a flood, all ports (median of rounds) | vswitchd RSS peak, MiB |")
print("|---|---|---|---|---|---|---|")
kinds = []
for r in rows:
    if r["kind"] != "none" and r["kind"] not in kinds:
        kinds.append(r["kind"])
for k in kinds:
    fl, base = [], []
    for i, r in enumerate(rows):
        if r["kind"] == k:
            fl.append(r)
            base.append(rows[i - 1])
    reasons = sorted({reason for r in fl for reason in r["drops"]})
    drops = {reason: [r["drops"].get(reason, 0) for r in fl] for reason in reasons}
    d = ", ".join(f"{reason} {round(med(v)):,}" for reason, v in sorted(drops.items(), key=lambda kv: -med(kv[1])))
    lost = lambda rs: f'{sum(r["ping_lost"] for r in rs)} of {sum(r["ping_sent"] for r in rs)}'
    def avg(rs):
        v = [r["ping_avg_ms"] for r in rs if r["ping_avg_ms"] is not None]
        return f"{med(v):.2f}" if len(v) == len(rs) else "no reply"
    def tcp(rs):
        failed = sum(1 for r in rs if r.get("tcp_error"))
        s = f'{med([r["tcp_gbps"] for r in rs]):.2f}'
        return s + (f" ({failed} failed)" if failed else "")
    print(f'| {k} | {round(med([r["flood_pps"] for r in fl])):,} '
          f'| {tcp(base)} / {tcp(fl)} '
          f'| {lost(base)} / {lost(fl)} '
          f'| {avg(base)} / {avg(fl)} '
          f'| {d} | {max(r["rss_kib_peak"] for r in fl) / 1024:.1f} |')
print()
print(f'Rounds: {len(rows) // (2 * max(len(kinds), 1))}; medians over rounds, losses summed; '
      f'RSS before the first flood {rows[0]["rss_kib_before"] / 1024:.1f} MiB, after the last {rows[-1]["rss_kib_after"] / 1024:.1f} MiB.')
PY
echo "flood.sh: results in $OUT (floods.json, floods.md)" >&2
