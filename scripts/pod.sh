#!/usr/bin/env bash
# Creates or removes a "pod": a network namespace with an eth0 attached to vswitchd.
#
#   pod.sh add NAME --ip ADDR/PREFIX [--mac MAC] [--gw ADDR] [--tap [--offload on|off]]
#              [--queues N] [--port-security] [--node NODE] [--socket PATH]
#   pod.sh del NAME [--node NODE] [--socket PATH]
#
# veth mode (default): a veth pair NAME <-> eth0, eth0 inside netns NAME, and
# the host end NAME attached to the switch through AF_XDP
# (`vswitchctl port add NAME`). eth0 keeps the kernel's default offloads:
# the partial TCP/UDP checksums they leave are completed by the kernel
# (AF_XDP TX metadata) or the switch.
#
# TAP mode (--tap): vswitchd creates a TAP device, moves it into netns NAME
# and renames it to eth0 (`vswitchctl port add NAME --type tap --netns NAME
# --ifname eth0`), with checksum and segmentation offloads on unless
# --offload off (`vswitchctl port add ... --offload off`).
#
# --queues N gives the pod's interface N queues, each served by its own
# socket and spread over the switch's workers: a veth pair with N TX and RX
# queues on each end (`ip link add ... numtxqueues N numrxqueues N`) or a
# multi-queue TAP (`vswitchctl port add ... --queues N`). The pod's stack
# spreads its flows over the queues by their hash.
#
# Either way the script then assigns the address and the default route
# inside the namespace.
#
# --port-security declares the pod's address (and --mac, if given) to the
# switch: `vswitchctl port add NAME --ip ADDR [--mac MAC]`. The switch then
# routes ADDR straight to the port and drops frames from the pod with any
# other source MAC or IP (`spoofed_source`). Without it the switch learns the
# pod like any L2 station.
#
# --node NODE puts the pod on a simulated node (scripts/node.sh): the veth
# host end lives in network namespace NODE, where that node's vswitchd runs
# (give its --socket); a TAP is created by that vswitchd, in NODE, and moved
# into the pod as usual. `del` needs the same --node to find the veth host end. `del` detaches the port from the switch (ignoring a
# port that is already gone) and deletes the namespace and the veth.
#
# Environment: VSWITCHCTL overrides the vswitchctl binary (default:
# target/release/vswitchctl in this repository, else vswitchctl from PATH);
# VSWITCH_SOCKET sets the control socket when --socket is not given.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
PROG=$(basename "$0")

usage() {
    cat >&2 <<USAGE
usage: $PROG add NAME --ip ADDR/PREFIX [--mac MAC] [--gw ADDR] [--tap [--offload on|off]]
                [--queues N] [--port-security] [--node NODE] [--socket PATH]
       $PROG del NAME [--node NODE] [--socket PATH]

  NAME      pod name: the network namespace, and the host-side interface
            (veth host end or TAP) attached to vswitchd; at most 15 characters
  --ip      address of the pod's eth0, with prefix length (e.g. 10.244.1.11/24)
  --mac     MAC address of the pod's eth0 (default: kernel/vswitchd chooses)
  --gw      default gateway inside the pod
  --tap     attach through a TAP device created by vswitchd instead of a veth
  --offload TAP only: the TAP's checksum and segmentation offloads (default on)
  --queues  queues of the pod's interface, spread over the switch's workers (default 1)
  --port-security
            declare the address (and --mac) to the switch: host route, and
            frames from any other source MAC/IP are dropped
  --node    the node (network namespace, see node.sh) whose vswitchd the pod
            is attached to; the veth host end lives there
  --socket  vswitchd control socket (default: \$VSWITCH_SOCKET or vswitchctl's default)
USAGE
    exit 2
}

die() {
    echo "$PROG: error: $*" >&2
    exit 1
}

find_vswitchctl() {
    if [[ -n ${VSWITCHCTL:-} ]]; then
        [[ -x $VSWITCHCTL ]] || command -v "$VSWITCHCTL" >/dev/null 2>&1 ||
            die "VSWITCHCTL=$VSWITCHCTL is not an executable"
        echo "$VSWITCHCTL"
    elif [[ -x $REPO_ROOT/target/release/vswitchctl ]]; then
        echo "$REPO_ROOT/target/release/vswitchctl"
    elif command -v vswitchctl >/dev/null 2>&1; then
        command -v vswitchctl
    else
        die "vswitchctl not found: build it with 'cargo build --release' or set VSWITCHCTL"
    fi
}

ctl() {
    local args=()
    [[ -n $SOCKET ]] && args+=(--socket "$SOCKET")
    "$CTL" "${args[@]}" "$@"
}

netns_exists() {
    [[ -e /run/netns/$1 ]]
}

# Waits until interface $2 exists in netns $1 (a TAP moved there by vswitchd).
wait_for_link_in_netns() {
    local ns=$1 ifname=$2 i
    for ((i = 0; i < 50; i++)); do
        ip -n "$ns" link show dev "$ifname" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

[[ $# -ge 2 ]] || usage
ACTION=$1
NAME=$2
shift 2
IP=""
MAC=""
GW=""
TAP=0
OFFLOAD=""
QUEUES=1
SECURE=0
NODE=""
SOCKET=${VSWITCH_SOCKET:-}

while [[ $# -gt 0 ]]; do
    case $1 in
    --ip) [[ $# -ge 2 ]] || usage; IP=$2; shift 2 ;;
    --mac) [[ $# -ge 2 ]] || usage; MAC=$2; shift 2 ;;
    --gw) [[ $# -ge 2 ]] || usage; GW=$2; shift 2 ;;
    --socket) [[ $# -ge 2 ]] || usage; SOCKET=$2; shift 2 ;;
    --tap) TAP=1; shift ;;
    --offload) [[ $# -ge 2 ]] || usage; OFFLOAD=$2; shift 2 ;;
    --queues) [[ $# -ge 2 ]] || usage; QUEUES=$2; shift 2 ;;
    --port-security) SECURE=1; shift ;;
    --node) [[ $# -ge 2 ]] || usage; NODE=$2; shift 2 ;;
    -h | --help) usage ;;
    *) echo "$PROG: unknown argument '$1'" >&2; usage ;;
    esac
done

[[ $NAME =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$ ]] ||
    die "invalid pod name '$NAME': 1-15 characters of letters, digits, '_', '.', '-'"
[[ $(id -u) -eq 0 ]] || die "must run as root (creates network namespaces and interfaces)"
if [[ -n $NODE ]]; then
    [[ $NODE =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$ ]] || die "invalid node name '$NODE'"
    [[ $NODE != "$NAME" ]] || die "a pod cannot be named like its node '$NODE'"
fi

# `ip` in the namespace of the veth host end: the node's, or this one.
hostip() {
    if [[ -n $NODE ]]; then
        ip -n "$NODE" "$@"
    else
        ip "$@"
    fi
}

# A command in the namespace of the veth host end.
hostexec() {
    if [[ -n $NODE ]]; then
        ip netns exec "$NODE" "$@"
    else
        "$@"
    fi
}

add_pod() {
    [[ -n $IP ]] || { echo "$PROG: add needs --ip ADDR/PREFIX" >&2; usage; }
    [[ $IP == */* ]] || die "--ip '$IP' needs a prefix length, e.g. $IP/24"
    [[ -z $OFFLOAD || $TAP -eq 1 ]] || die "--offload applies to TAP pods (--tap)"
    [[ $QUEUES =~ ^[1-9][0-9]?$ && $QUEUES -le 32 ]] || die "--queues '$QUEUES' is not a number of queues (1-32)"
    if [[ -n $MAC ]] && ! [[ $MAC =~ ^([0-9A-Fa-f]{1,2}[:-]){5}[0-9A-Fa-f]{1,2}$ ]]; then
        die "invalid MAC address '$MAC'"
    fi
    netns_exists "$NAME" && die "network namespace '$NAME' already exists"
    if [[ -n $NODE ]]; then
        netns_exists "$NODE" || die "node '$NODE' does not exist (scripts/node.sh add $NODE ...)"
    fi
    if [[ $TAP -eq 0 ]] && hostip link show dev "$NAME" >/dev/null 2>&1; then
        die "interface '$NAME' already exists in ${NODE:+node }${NODE:-this namespace}"
    fi
    local secure=()
    if [[ $SECURE -eq 1 ]]; then
        secure=(--ip "${IP%%/*}")
        [[ -n $MAC ]] && secure+=(--mac "$MAC")
    fi
    CTL=$(find_vswitchctl)

    ip netns add "$NAME" || die "cannot create network namespace '$NAME'"
    # From here on, any failure (a failed command or die) removes what was created.
    trap 'rollback' EXIT
    ip -n "$NAME" link set lo up

    if [[ $TAP -eq 0 ]]; then
        hostip link add "$NAME" numtxqueues "$QUEUES" numrxqueues "$QUEUES" type veth \
            peer name eth0 netns "$NAME" numtxqueues "$QUEUES" numrxqueues "$QUEUES" ||
            die "cannot create veth pair $NAME <-> $NAME/eth0"
        MADE_LINK=1
        # The pod keeps the kernel's default offloads: the switch completes
        # the partial checksums they leave (fastpath/src/pipeline/csum.rs).
        if [[ -n $MAC ]]; then
            ip -n "$NAME" link set dev eth0 address "$MAC" || die "cannot set MAC $MAC on $NAME/eth0"
        fi
        ip -n "$NAME" link set dev eth0 up
        # The host end is a switch port, not an interface of the host's stack.
        hostexec sysctl -qw "net.ipv6.conf.$NAME.disable_ipv6=1" 2>/dev/null || true
        hostip link set dev "$NAME" up
        local queues=()
        [[ $QUEUES -gt 1 ]] && queues=(--queues "$QUEUES")
        ctl port add "$NAME" "${queues[@]}" "${secure[@]}" || die "vswitchctl port add $NAME failed"
        MADE_PORT=1
    else
        local args=(port add "$NAME" --type tap --netns "$NAME" --ifname eth0)
        [[ -n $MAC ]] && args+=(--mac "$MAC")
        [[ -n $OFFLOAD ]] && args+=(--offload "$OFFLOAD")
        [[ $QUEUES -gt 1 ]] && args+=(--queues "$QUEUES")
        [[ $SECURE -eq 1 ]] && args+=(--ip "${IP%%/*}")
        ctl "${args[@]}" || die "vswitchctl port add $NAME --type tap failed"
        MADE_PORT=1
        wait_for_link_in_netns "$NAME" eth0 ||
            die "vswitchd did not move its TAP into netns '$NAME' as eth0"
        ip -n "$NAME" link set dev eth0 up
    fi

    ip -n "$NAME" addr add "$IP" dev eth0 || die "cannot add address $IP to $NAME/eth0"
    if [[ -n $GW ]]; then
        ip -n "$NAME" route add default via "$GW" dev eth0 || die "cannot add default route via $GW"
    fi
    trap - EXIT
}

# Removes what this invocation created, and only that (a port or a host
# interface of the same name that existed before is not ours to delete).
rollback() {
    echo "$PROG: removing partly created pod '$NAME'" >&2
    if [[ ${MADE_PORT:-0} -eq 1 && -n ${CTL:-} ]]; then
        ctl port del "$NAME" >/dev/null 2>&1 || true
    fi
    ip netns del "$NAME" 2>/dev/null || true
    if [[ ${MADE_LINK:-0} -eq 1 ]]; then
        hostip link del dev "$NAME" 2>/dev/null || true
    fi
}

del_pod() {
    [[ -z $IP && -z $MAC && -z $GW && $TAP -eq 0 && $SECURE -eq 0 ]] || true # accepted and ignored
    CTL=$(find_vswitchctl 2>/dev/null) || CTL=""
    if [[ -n $CTL ]]; then
        # The port may already be gone (or the daemon stopped): not an error.
        ctl port del "$NAME" >/dev/null 2>&1 || true
    fi
    local existed=0
    if netns_exists "$NAME"; then
        existed=1
        ip netns del "$NAME" || die "cannot delete network namespace '$NAME'"
    fi
    # Deleting the namespace destroys eth0 and with it the veth pair, but the
    # kernel does it asynchronously; delete the host end explicitly too.
    if hostip link show dev "$NAME" >/dev/null 2>&1; then
        existed=1
        hostip link del dev "$NAME" 2>/dev/null || true
    fi
    if [[ $existed -eq 0 ]]; then
        echo "$PROG: pod '$NAME' does not exist (nothing to delete)" >&2
    fi
}

case $ACTION in
add) add_pod ;;
del) del_pod ;;
*) echo "$PROG: unknown action '$ACTION'" >&2; usage ;;
esac
