#!/usr/bin/env bash
# Scaling with workers: TCP between two pods whose ports have several queues
# (`port add --queues N`), through vswitchd with 1, 2, ... workers.
#
#   scripts/bench-queues.sh [--workers "1 2"] [--queues 2] [--streams 4] [--secs 5]
#                           [--rounds 3] [--cores LIST] [--tap] [--bin target/release]
#
# Each trial starts its own vswitchd (private socket and state file, busy
# polling) with K workers on the first K cores of --cores (default: every
# core this process may use, highest first, so that core 0 stays with the
# system), creates pods bq-a and bq-b with N queues each (veth + AF_XDP, or
# TAP with --tap; scripts/pod.sh), and runs S iperf3 clients in bq-a
# against S iperf3 servers in bq-b at once (one stream each, separate
# processes, so that iperf3 itself is not the single-core limit): the pods'
# stacks hash the streams over the queues (unevenly with few streams), and
# each queue's worker serves it. Rounds alternate the worker counts; the
# table gives each round's sum and the median. A trial that moves nothing
# fails the script; KEEP_LOG=FILE keeps the last vswitchd log.
#
# On a machine with C cores, give the switch at most C - 2 of them (--cores)
# so that the pods' stacks and iperf3 have cores of their own; with fewer
# cores, the numbers measure the sharing as much as the switch. Needs root
# and release binaries (cargo build --release).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
WORKERS="1 2" QUEUES=2 STREAMS=4 SECS=5 ROUNDS=3 CORES="" TAP="" BIN=$REPO_ROOT/target/release
usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit "${1:-2}"
}
while [ $# -gt 0 ]; do
    case "$1" in
    --tap) TAP=--tap; shift; continue ;;
    -h | --help) usage 0 ;;
    esac
    [ $# -ge 2 ] || { echo "bench-queues.sh: $1 needs a value" >&2; exit 2; }
    case "$1" in
    --workers) WORKERS=$2 ;;
    --queues) QUEUES=$2 ;;
    --streams) STREAMS=$2 ;;
    --secs) SECS=$2 ;;
    --rounds) ROUNDS=$2 ;;
    --cores) CORES=$2 ;;
    --bin) BIN=$2 ;;
    *) echo "bench-queues.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift 2
done
number() { [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "bench-queues.sh: $1 '$2' is not a positive number" >&2; exit 2; }; }
number --queues "$QUEUES"
[ "$QUEUES" -le 32 ] || { echo "bench-queues.sh: --queues is at most 32" >&2; exit 2; }
number --streams "$STREAMS"
number --secs "$SECS"
number --rounds "$ROUNDS"
for k in $WORKERS; do number --workers "$k"; done
[ "$(id -u)" -eq 0 ] || { echo "bench-queues.sh: must run as root" >&2; exit 1; }
for tool in iperf3 python3; do
    command -v "$tool" >/dev/null || { echo "bench-queues.sh: needs $tool" >&2; exit 1; }
done
[ -x "$BIN/vswitchd" ] || { echo "bench-queues.sh: no $BIN/vswitchd (cargo build --release)" >&2; exit 1; }
if [ -z "$CORES" ]; then
    CORES=$(python3 -c 'import os; print(",".join(map(str, sorted(os.sched_getaffinity(0), reverse=True))))')
fi
IFS=, read -r -a core_list <<<"$CORES"
for k in $WORKERS; do
    [ "$k" -ge 1 ] && [ "$k" -le "${#core_list[@]}" ] ||
        { echo "bench-queues.sh: $k workers need $k cores; --cores has ${#core_list[@]}" >&2; exit 2; }
done

dir=$(mktemp -d)
sock=$dir/vswitchd.sock
pid=""
servers=()
teardown() {
    if [ ${#servers[@]} -gt 0 ]; then
        kill "${servers[@]}" 2>/dev/null || true
        wait "${servers[@]}" 2>/dev/null || true
        servers=()
    fi
    for p in bq-a bq-b; do
        VSWITCHCTL=$BIN/vswitchctl "$SCRIPT_DIR/pod.sh" del "$p" --socket "$sock" >/dev/null 2>&1 || true
    done
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=""
    fi
    rm -f "$dir/state.json"
}
trap 'teardown; [ -n "${KEEP_LOG:-}" ] && cp "$dir/log" "$KEEP_LOG"; rm -rf "$dir"' EXIT

# One trial with K workers, in this shell (so that a failure stops the
# script and the trap cleans up); sets RESULT to the Gbit/s the servers
# received, summed.
trial() {
    local k=$1 cores i
    cores=$(IFS=,; echo "${core_list[*]:0:$k}")
    "$BIN/vswitchd" --socket "$sock" --state "$dir/state.json" --cores "$cores" >"$dir/log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
    export VSWITCHCTL=$BIN/vswitchctl
    "$SCRIPT_DIR/pod.sh" add bq-a --ip 10.99.0.1/24 --queues "$QUEUES" $TAP --socket "$sock" >/dev/null
    "$SCRIPT_DIR/pod.sh" add bq-b --ip 10.99.0.2/24 --queues "$QUEUES" $TAP --socket "$sock" >/dev/null
    rm -f "$dir"/server-*.json
    for i in $(seq "$STREAMS"); do
        # One client each; the timeout ends a server whose client never came.
        timeout $((SECS + 20)) ip netns exec bq-b iperf3 -s -1 -p $((5200 + i)) -J \
            >"$dir/server-$i.json" 2>/dev/null &
        servers+=($!)
    done
    for i in $(seq "$STREAMS"); do
        for _ in $(seq 50); do
            ip netns exec bq-b ss -ltn "sport = :$((5200 + i))" | grep -q LISTEN && break
            sleep 0.05
        done
    done
    # Warm-up: neighbours learned, ARP done.
    ip netns exec bq-a ping -c 2 -i 0.2 -W 1 10.99.0.2 >/dev/null
    local clients=()
    for i in $(seq "$STREAMS"); do
        timeout $((SECS + 20)) ip netns exec bq-a iperf3 -c 10.99.0.2 -p $((5200 + i)) -t "$SECS" \
            >/dev/null 2>&1 &
        clients+=($!)
    done
    wait "${clients[@]}" || true
    wait "${servers[@]}" 2>/dev/null || true
    servers=()
    RESULT=$(python3 - "$dir" "$STREAMS" <<'PY'
import json, sys
d, n = sys.argv[1], int(sys.argv[2])
total = 0.0
for i in range(1, n + 1):
    try:
        r = json.load(open(f"{d}/server-{i}.json"))
        total += r["end"]["sum_received"]["bits_per_second"]
    except (OSError, ValueError, KeyError):
        pass
print(f"{total / 1e9:.2f}")
PY
)
    teardown
}

kind=${TAP:+TAP}
echo "TCP, $STREAMS stream(s), pods with $QUEUES queue(s) (${kind:-veth + AF_XDP}), ${SECS} s a trial, cores ${CORES}"
declare -A results
for r in $(seq "$ROUNDS"); do
    for k in $WORKERS; do
        trial "$k"
        g=$RESULT
        echo "  round $r: $k worker(s): $g Gbit/s"
        results[$k]="${results[$k]:-} $g"
    done
done
for k in $WORKERS; do
    for g in ${results[$k]}; do
        [ "$g" != "0.00" ] || { echo "bench-queues.sh: a trial with $k worker(s) moved nothing (log: keep it with KEEP_LOG)" >&2; exit 1; }
    done
done
echo "workers  median Gbit/s  rounds"
for k in $WORKERS; do
    med=$(python3 -c 'import statistics, sys; print(f"{statistics.median(map(float, sys.argv[1:])):.2f}")' ${results[$k]})
    printf "%7s  %13s  %s\n" "$k" "$med" "${results[$k]# }"
done
