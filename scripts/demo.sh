#!/usr/bin/env bash
# The demo: builds vswitch, starts vswitchd, gives its router one gateway
# address on each of two pod subnets, attaches four pods (two through AF_XDP
# on veth pairs, two through TAP devices; three on 10.244.1.0/24, one on
# 10.244.2.0/24), pings between every pair (switched within a subnet, routed
# through the gateways across subnets) and the gateways themselves, runs
# iperf3 TCP transfers through the switch (switched and routed), prints
# `vswitchctl show`, `addr list`, `route list`, `neigh list`, `stats` and
# `fdb show`, and removes everything again, also on failure or Ctrl-C.
#
# Run as root on Debian: scripts/demo.sh
#
# Environment: VSWITCHD_ARGS adds arguments to vswitchd (for example
# "--cores 1"); IPERF_SECS sets the length of each transfer (default 5).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
cd "$REPO_ROOT"

IPERF_SECS=${IPERF_SECS:-5}
# The switch's router (gateway) addresses: one per pod subnet.
GATEWAYS=(10.244.1.1/24 10.244.2.1/24)
# Pod name, attachment, address/prefix, gateway, MAC.
PODS=(
    "vsdemo-a afxdp 10.244.1.11/24 10.244.1.1 02:00:0a:f4:01:0b"
    "vsdemo-b afxdp 10.244.1.12/24 10.244.1.1 02:00:0a:f4:01:0c"
    "vsdemo-c tap   10.244.1.13/24 10.244.1.1 02:00:0a:f4:01:0d"
    "vsdemo-d tap   10.244.2.14/24 10.244.2.1 02:00:0a:f4:02:0e"
)

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() {
    echo "demo.sh: error: $*" >&2
    exit 1
}

[[ $(id -u) -eq 0 ]] || die "run as root (the demo creates network namespaces and attaches XDP programs)"

step "Installing dependencies"
"$SCRIPT_DIR/deps.sh"
if ! command -v cargo >/dev/null 2>&1; then
    export PATH=$HOME/.cargo/bin:$PATH
fi

step "Building (cargo build --release)"
cargo build --release

VSWITCHD=$REPO_ROOT/target/release/vswitchd
export VSWITCHCTL=$REPO_ROOT/target/release/vswitchctl
WORKDIR=$(mktemp -d /tmp/vswitch-demo.XXXXXX)
export VSWITCH_SOCKET=$WORKDIR/vswitchd.sock
STATE=$WORKDIR/state.json
LOG=$WORKDIR/vswitchd.log
VSWITCHD_PID=""
SERVER_PIDS=()

ctl() { "$VSWITCHCTL" --socket "$VSWITCH_SOCKET" "$@"; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    step "Cleaning up"
    for pid in "${SERVER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for spec in "${PODS[@]}"; do
        read -r name _ <<<"$spec"
        "$SCRIPT_DIR/pod.sh" del "$name" 2>/dev/null || true
    done
    if [[ -n $VSWITCHD_PID ]] && kill -0 "$VSWITCHD_PID" 2>/dev/null; then
        kill -TERM "$VSWITCHD_PID"
        for _ in $(seq 50); do
            kill -0 "$VSWITCHD_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$VSWITCHD_PID" 2>/dev/null; then
            echo "demo.sh: vswitchd did not exit on SIGTERM; killing it" >&2
            kill -KILL "$VSWITCHD_PID" 2>/dev/null || true
        fi
        wait "$VSWITCHD_PID" 2>/dev/null || true
    fi
    if [[ $rc -ne 0 && -s $LOG ]]; then
        echo "--- last lines of the vswitchd log ($LOG) ---" >&2
        tail -n 30 "$LOG" >&2
    fi
    rm -rf "$WORKDIR"
    if [[ $rc -eq 0 ]]; then
        echo "demo finished"
    else
        echo "demo FAILED (exit status $rc)" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Leftovers of an interrupted earlier run would make pod creation fail.
for spec in "${PODS[@]}"; do
    read -r name _ <<<"$spec"
    if [[ -e /run/netns/$name ]] || ip link show dev "$name" >/dev/null 2>&1; then
        "$SCRIPT_DIR/pod.sh" del "$name" >/dev/null 2>&1 || true
    fi
done

step "Starting vswitchd (socket $VSWITCH_SOCKET, log $LOG)"
# shellcheck disable=SC2086 # VSWITCHD_ARGS is a list of words on purpose.
"$VSWITCHD" --socket "$VSWITCH_SOCKET" --state "$STATE" --poll adaptive ${VSWITCHD_ARGS:-} 2>"$LOG" &
VSWITCHD_PID=$!
for _ in $(seq 100); do
    ctl show >/dev/null 2>&1 && break
    kill -0 "$VSWITCHD_PID" 2>/dev/null || die "vswitchd exited during start-up"
    sleep 0.1
done
ctl show >/dev/null || die "vswitchd did not answer on $VSWITCH_SOCKET within 10 s"

step "Giving the router a gateway address on each pod subnet"
for gw in "${GATEWAYS[@]}"; do
    echo "vswitchctl addr add $gw"
    ctl addr add "$gw"
done
ctl addr list

step "Creating pods"
for spec in "${PODS[@]}"; do
    read -r name kind cidr gw mac <<<"$spec"
    args=(add "$name" --ip "$cidr" --gw "$gw" --mac "$mac")
    [[ $kind == tap ]] && args+=(--tap)
    echo "pod $name: $cidr on $kind, default route via $gw"
    "$SCRIPT_DIR/pod.sh" "${args[@]}"
done
ctl port list

# The /24 subnet of an address with prefix: 10.244.1.11/24 -> 10.244.1.
subnet() { local a=${1%%/*}; echo "${a%.*}"; }

# Pings $3 from pod $1; prints the summary and the TTL of the replies (64:
# switched; 63: routed by the switch, one hop).
ping_from() {
    local from=$1 label=$2 to=$3 out
    printf '%-43s %-12s ' "$label" "$to"
    # The first packet of a routed flow may wait for the switch to resolve
    # the next hop (ARP); it is held, not lost.
    if out=$(ip netns exec "$from" ping -c 3 -i 0.2 -W 2 "$to" 2>&1); then
        local ttl sent received avg
        ttl=$(grep -o 'ttl=[0-9]*' <<<"$out" | head -n 1)
        read -r sent _ _ received _ < <(grep 'packets transmitted' <<<"$out" | tr -d ,)
        avg=$(sed -n 's#^rtt [^=]*= [^/]*/\([^/]*\)/.*#\1#p' <<<"$out")
        printf '%s  %s/%s replies  rtt avg %s ms\n' "$ttl" "$received" "$sent" "$avg"
    else
        echo "FAILED"
        echo "$out" >&2
        die "ping $from -> $to failed"
    fi
}

step "Pinging each pod's gateway (the switch answers)"
for spec in "${PODS[@]}"; do
    read -r name kind _ gw _ <<<"$spec"
    ping_from "$name" "$(printf '%-9s (%-5s) -> gateway' "$name" "$kind")" "$gw"
done

step "Pinging between every pair of pods (switched within a subnet, routed across)"
for from in "${PODS[@]}"; do
    read -r fname fkind fcidr _ <<<"$from"
    for to in "${PODS[@]}"; do
        read -r tname tkind tcidr _ <<<"$to"
        [[ $fname == "$tname" ]] && continue
        how=switched
        [[ $(subnet "$fcidr") != "$(subnet "$tcidr")" ]] && how=routed
        ping_from "$fname" "$(printf '%-9s (%-5s) -> %-9s (%-5s) %-8s' "$fname" "$fkind" "$tname" "$tkind" "$how")" "${tcidr%%/*}"
    done
done

# iperf3 from pod $1 to pod $2 (address $3).
iperf() {
    local from=$1 to=$2 ip=$3
    ip netns exec "$to" iperf3 -s -1 >/dev/null 2>&1 &
    SERVER_PIDS+=($!)
    for _ in $(seq 50); do
        [[ -n $(ip netns exec "$to" ss -Hltn 'sport = :5201' 2>/dev/null) ]] && break
        sleep 0.1
    done
    timeout $((IPERF_SECS + 20)) ip netns exec "$from" iperf3 -c "$ip" -t "$IPERF_SECS" --connect-timeout 3000 ||
        die "iperf3 $from -> $to failed"
}

step "iperf3 TCP, ${IPERF_SECS}s, switched: vsdemo-a (AF_XDP) -> vsdemo-b (AF_XDP)"
iperf vsdemo-a vsdemo-b 10.244.1.12
step "iperf3 TCP, ${IPERF_SECS}s, switched: vsdemo-a (AF_XDP) -> vsdemo-c (TAP)"
iperf vsdemo-a vsdemo-c 10.244.1.13
step "iperf3 TCP, ${IPERF_SECS}s, routed 10.244.1.0/24 -> 10.244.2.0/24: vsdemo-a (AF_XDP) -> vsdemo-d (TAP)"
iperf vsdemo-a vsdemo-d 10.244.2.14

# A tiny HTTP server in pod $1 on port 8080 that answers with the pod's name.
http_server() {
    local pod=$1
    ip netns exec "$pod" python3 -c '
import http.server, sys
name = sys.argv[1].encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(name) + 1))
        self.end_headers()
        self.wfile.write(name + b"\n")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("", 8080), H).serve_forever()
' "$pod" >/dev/null 2>&1 &
    SERVER_PIDS+=($!)
    for _ in $(seq 50); do
        [[ -n $(ip netns exec "$pod" ss -Hltn 'sport = :8080' 2>/dev/null) ]] && return
        sleep 0.1
    done
    die "HTTP server in $pod did not start"
}

step "A Service: 10.96.0.10:80/tcp in front of vsdemo-b and vsdemo-c (port 8080)"
http_server vsdemo-b
http_server vsdemo-c
echo "vswitchctl service add 10.96.0.10:80/tcp --backend 10.244.1.12:8080 --backend 10.244.1.13:8080"
ctl service add 10.96.0.10:80/tcp --backend 10.244.1.12:8080 --backend 10.244.1.13:8080
echo "12 requests from vsdemo-d (routed, another subnet) to http://10.96.0.10/:"
answers=$(for _ in $(seq 12); do
    ip netns exec vsdemo-d curl -sS -m 5 http://10.96.0.10/ || die "curl to the VIP failed"
done | sort | uniq -c)
echo "$answers"
[[ $(wc -l <<<"$answers") -eq 2 ]] || die "expected answers from both endpoints"
step "vswitchctl service backends: vsdemo-b terminating, vsdemo-c the only ready endpoint"
ctl service backends 10.96.0.10:80/tcp 10.244.1.13:8080 --terminating 10.244.1.12:8080
for _ in $(seq 4); do ip netns exec vsdemo-d curl -sS -m 5 http://10.96.0.10/; done
step "A Service without endpoints is refused at once (TCP reset), not a timeout"
ctl service add 10.96.0.11:80/tcp
ip netns exec vsdemo-d curl -sS -m 5 http://10.96.0.11/ 2>&1 | sed 's/^/  /' || true
step "vswitchctl service list; ct list; ct stats"
ctl service list
ctl ct list
ctl ct stats

step "vswitchctl show"
ctl show
step "vswitchctl route list"
ctl route list
step "vswitchctl neigh list"
ctl neigh list
step "vswitchctl stats"
ctl stats
step "vswitchctl fdb show"
ctl fdb show
