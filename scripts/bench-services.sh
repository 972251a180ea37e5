#!/usr/bin/env bash
# Control-plane scale of Services: how long vswitchd takes to apply N
# Services with B endpoints each (one `vswitchctl batch`), and how long one
# endpoint change takes on a switch holding them (`service backends`,
# repeated R times; median and worst).
#
#   scripts/bench-services.sh [--services N] [--backends B] [--changes R] [--bin DIR]
#
# Starts its own vswitchd (no ports, adaptive polling) on a private socket and
# state file, so it runs beside anything else. Two times per change:
#   - data plane: from the request reaching the controller to the new
#     snapshot (with the changed Maglev table) being published, as vswitchd
#     logs it (debug level);
#   - round trip: the client's, which adds the state-file write (fsync of
#     every Service) and starting vswitchctl.
# Needs release binaries (cargo build --release).
set -euo pipefail

N=10000 B=10 R=200 BIN=target/release
while [ $# -gt 0 ]; do
    case "$1" in
        --services) N=$2; shift 2 ;;
        --backends) B=$2; shift 2 ;;
        --changes) R=$2; shift 2 ;;
        --bin) BIN=$2; shift 2 ;;
        *) echo "bench-services.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

dir=$(mktemp -d)
sock=$dir/vswitchd.sock
cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    [ -n "${KEEP_LOG:-}" ] && cp "$dir/log" "$KEEP_LOG"
    rm -rf "$dir"
}
trap cleanup EXIT

RUST_LOG=vswitchd=debug "$BIN/vswitchd" --socket "$sock" --state "$dir/state.json" --poll adaptive >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
ctl() { "$BIN/vswitchctl" --socket "$sock" "$@"; }
ctl addr add 10.244.0.1/16

# N Services 10.96.x.y:80/tcp, each with B endpoints in 10.244/16.
python3 - "$N" "$B" >"$dir/batch" <<'PY'
import sys
n, b = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    vip = f"10.96.{i // 250}.{i % 250 + 1}:80/tcp"
    eps = " ".join(f"--backend 10.244.{(i * b + j) // 250 % 250}.{(i * b + j) % 250 + 2}:8080" for j in range(b))
    print(f"service add {vip} {eps}")
PY

now() { date +%s%N; }
t0=$(now)
ctl batch "$dir/batch"
t1=$(now)
count=$(ctl -o json service list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
echo "applied $count Services x $B endpoints in one batch: $(( (t1 - t0) / 1000000 )) ms round trip"
grep -o 'published_us=[0-9]*' "$dir/log" | tail -1 | sed 's/published_us=/  published after (us): /'

# One endpoint change at a time on Service number N/2.
mid=$((N / 2))
vip="10.96.$((mid / 250)).$((mid % 250 + 1)):80/tcp"
for r in $(seq "$R"); do
    eps=""
    for j in $(seq 0 $((B - 1))); do
        eps="$eps 10.244.200.$(( (r + j) % 250 + 2 )):8080"
    done
    s=$(now)
    ctl service backends "$vip" $eps
    e=$(now)
    echo $(( (e - s) / 1000 ))
done >"$dir/changes"
sort -n "$dir/changes" | python3 -c '
import sys
v = [int(x) / 1000 for x in sys.stdin]
print(f"one endpoint change, {len(v)} times: round trip median {v[len(v)//2]:.2f} ms, p90 {v[int(len(v)*0.9)]:.2f} ms, worst {v[-1]:.2f} ms")'
grep -o 'published_us=[0-9]*' "$dir/log" | tail -n "$R" | sed 's/published_us=//' | sort -n | python3 -c '
import sys
v = [int(x) / 1000 for x in sys.stdin]
print(f"one endpoint change, {len(v)} times: data plane (published) median {v[len(v)//2]:.2f} ms, p90 {v[int(len(v)*0.9)]:.2f} ms, worst {v[-1]:.2f} ms")'
