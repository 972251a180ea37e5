#!/usr/bin/env bash
# Creates or removes a simulated Kubernetes node: a network namespace whose
# interface up0 plays the node's NIC, joined to other nodes by veth "wires".
#
#   node.sh lan LAN
#   node.sh add NODE --uplink-ip ADDR/PREFIX [--lan LAN | --wire PEER] [--mac MAC]
#               [--queues N]
#   node.sh del NAME
#
# Two ways to join nodes:
#
#   a wire   (two nodes)  node.sh add na --uplink-ip 192.168.50.1/24
#                         node.sh add nb --uplink-ip 192.168.50.2/24 --wire na
#            up0 of na and up0 of nb are the two ends of one veth pair.
#            A node added without --wire/--lan gets its up0 at once; the
#            other end waits, down, inside the node's namespace as "up0-wire"
#            until a later `add --wire` moves it into the new node as up0.
#
#   a LAN    (any number) node.sh lan lan0
#                         node.sh add na --uplink-ip 192.168.50.1/24 --lan lan0
#                         node.sh add nb --uplink-ip 192.168.50.2/24 --lan lan0
#                         node.sh add nc --uplink-ip 192.168.50.3/24 --lan lan0
#            namespace lan0 holds a Linux bridge br0; each node's up0 is one
#            end of a veth whose other end, named after the node, is a port
#            of br0.
#
# In every node the script brings lo and up0 up and puts ADDR/PREFIX on up0
# (the node kernel's own address). TX checksum offload is turned off on
# every veth end it creates: vswitchd attaches up0 through AF_XDP, and a frame
# that reaches an AF_XDP socket must carry finished checksums (see
# design.md, "Platform facts"), whichever node's kernel sent it.
#
# A node's switch runs inside the node's namespace, one worker per node on
# its own core, with adaptive polling so that several switches share a
# small machine:
#
#   ip netns exec na vswitchd --socket /run/vswitch/na.sock \
#       --state /var/lib/vswitch/na.json --poll adaptive --cores 0 &
#   vswitchctl --socket /run/vswitch/na.sock addr add 10.244.1.1/24
#   vswitchctl --socket /run/vswitch/na.sock port add up0 --uplink
#   scripts/pod.sh add pa --node na --ip 10.244.1.5/24 --gw 10.244.1.1 \
#       --socket /run/vswitch/na.sock
#
# (a unix socket path works from any namespace, so vswitchctl and pod.sh run
# in the root namespace).
#
# `del NAME` deletes a node or a LAN namespace; the veth ends inside it go
# with it, and so do their peers (a node's wire, a LAN's ports). Stop the
# node's vswitchd first: a process inside a namespace keeps it and its
# interfaces alive after `ip netns del`. Deleting a missing namespace is not
# an error. Pods of the node are separate namespaces (`pod.sh del`).
set -euo pipefail

PROG=$(basename "$0")
BRIDGE=br0
UPLINK=up0
LOOSE_END=up0-wire

usage() {
    cat >&2 <<USAGE
usage: $PROG lan LAN
       $PROG add NODE --uplink-ip ADDR/PREFIX [--lan LAN | --wire PEER] [--mac MAC]
                [--queues N]
       $PROG del NAME

  lan LAN       create network namespace LAN with a Linux bridge $BRIDGE, for
                nodes to join with --lan
  add NODE      create network namespace NODE with its uplink $UPLINK
  --uplink-ip   the node kernel's address on $UPLINK, with prefix length
                (e.g. 192.168.50.1/24)
  --lan LAN     plug $UPLINK into the bridge of LAN (created by '$PROG lan')
  --wire PEER   join $UPLINK directly to node PEER's $UPLINK (PEER added
                before, without --lan/--wire, and not wired yet)
  --mac         MAC address of $UPLINK (default: the kernel chooses)
  --queues      TX and RX queues of the veth this add creates (default 1), as
                a multi-queue NIC has (vswitchctl port add $UPLINK --queues N);
                not with --wire, whose veth PEER's add created
  del NAME      delete node or LAN NAME and its veth ends (stop its vswitchd first)

  NODE, LAN and PEER are network namespace names, 1-15 characters.
USAGE
    exit 2
}

die() {
    echo "$PROG: error: $*" >&2
    exit 1
}

netns_exists() {
    [[ -e /run/netns/$1 ]]
}

check_name() {
    [[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$ ]] ||
        die "invalid name '$1': 1-15 characters of letters, digits, '_', '.', '-'"
}

# Turns off TX checksum offload on interface $2 of namespace $1.
no_tx_csum() {
    ip netns exec "$1" ethtool -K "$2" tx off >/dev/null ||
        die "cannot turn off TX checksum offload on $1/$2"
}

add_lan() {
    local lan=$1
    netns_exists "$lan" && die "network namespace '$lan' already exists"
    ip netns add "$lan" || die "cannot create network namespace '$lan'"
    CREATED=$lan
    trap 'rollback' EXIT
    ip -n "$lan" link set lo up
    ip -n "$lan" link add "$BRIDGE" type bridge || die "cannot create bridge $lan/$BRIDGE"
    # The bridge is a plain wire between nodes: no spanning tree (its
    # listening delay would hold the first frames back), no address of its own.
    ip -n "$lan" link set "$BRIDGE" type bridge stp_state 0 forward_delay 0
    ip -n "$lan" link set "$BRIDGE" up
    trap - EXIT
}

add_node() {
    local node=$1
    [[ -n $UPLINK_IP ]] || { echo "$PROG: add needs --uplink-ip ADDR/PREFIX" >&2; usage; }
    [[ $UPLINK_IP == */* ]] || die "--uplink-ip '$UPLINK_IP' needs a prefix length, e.g. $UPLINK_IP/24"
    [[ -z $LAN || -z $WIRE ]] || die "--lan and --wire exclude each other"
    [[ -z $QUEUES || -z $WIRE ]] || die "--queues and --wire exclude each other (the wire has PEER's queues)"
    [[ -z $QUEUES || ($QUEUES =~ ^[1-9][0-9]?$ && $QUEUES -le 32) ]] || die "--queues '$QUEUES' is not a number of queues (1-32)"
    local q=(numtxqueues "${QUEUES:-1}" numrxqueues "${QUEUES:-1}")
    if [[ -n $MAC ]] && ! [[ $MAC =~ ^([0-9A-Fa-f]{1,2}[:-]){5}[0-9A-Fa-f]{1,2}$ ]]; then
        die "invalid MAC address '$MAC'"
    fi
    netns_exists "$node" && die "network namespace '$node' already exists"
    if [[ -n $LAN ]]; then
        check_name "$LAN"
        netns_exists "$LAN" || die "LAN '$LAN' does not exist (create it with '$PROG lan $LAN')"
        ip -n "$LAN" link show dev "$BRIDGE" >/dev/null 2>&1 ||
            die "namespace '$LAN' has no bridge $BRIDGE: not a LAN made by '$PROG lan'"
        ip -n "$LAN" link show dev "$node" >/dev/null 2>&1 &&
            die "LAN '$LAN' already has a port named '$node'"
    fi
    if [[ -n $WIRE ]]; then
        check_name "$WIRE"
        netns_exists "$WIRE" || die "node '$WIRE' does not exist"
        ip -n "$WIRE" link show dev "$LOOSE_END" >/dev/null 2>&1 ||
            die "node '$WIRE' has no free wire end (added with --lan or --wire, or wired already)"
    fi

    ip netns add "$node" || die "cannot create network namespace '$node'"
    CREATED=$node
    trap 'rollback' EXIT
    ip -n "$node" link set lo up

    if [[ -n $LAN ]]; then
        ip -n "$LAN" link add "$node" "${q[@]}" type veth peer name "$UPLINK" netns "$node" "${q[@]}" ||
            die "cannot create veth $LAN/$node <-> $node/$UPLINK"
        no_tx_csum "$LAN" "$node"
        ip -n "$LAN" link set "$node" master "$BRIDGE" up
    elif [[ -n $WIRE ]]; then
        # The peer's loose end becomes this node's uplink.
        ip -n "$WIRE" link set "$LOOSE_END" netns "$node" ||
            die "cannot move $WIRE/$LOOSE_END into '$node'"
        ip -n "$node" link set "$LOOSE_END" name "$UPLINK"
        ip -n "$WIRE" link set "$UPLINK" up
    else
        ip -n "$node" link add "$UPLINK" "${q[@]}" type veth peer name "$LOOSE_END" "${q[@]}" ||
            die "cannot create veth $node/$UPLINK <-> $node/$LOOSE_END"
        no_tx_csum "$node" "$LOOSE_END"
    fi
    no_tx_csum "$node" "$UPLINK"
    if [[ -n $MAC ]]; then
        ip -n "$node" link set dev "$UPLINK" address "$MAC" || die "cannot set MAC $MAC on $node/$UPLINK"
    fi
    ip -n "$node" addr add "$UPLINK_IP" dev "$UPLINK" ||
        die "cannot add address $UPLINK_IP to $node/$UPLINK"
    ip -n "$node" link set dev "$UPLINK" up
    trap - EXIT
}

rollback() {
    echo "$PROG: removing partly created '$CREATED'" >&2
    # A wire end taken from the peer goes back there, so the peer can be wired again.
    if [[ -n $WIRE ]] && netns_exists "$CREATED"; then
        local end
        for end in "$LOOSE_END" "$UPLINK"; do
            if ip -n "$CREATED" link show dev "$end" >/dev/null 2>&1; then
                ip -n "$CREATED" link set dev "$end" down 2>/dev/null || true
                ip -n "$CREATED" addr flush dev "$end" 2>/dev/null || true
                ip -n "$CREATED" link set dev "$end" netns "$WIRE" name "$LOOSE_END" 2>/dev/null || true
            fi
        done
    fi
    ip netns del "$CREATED" 2>/dev/null || true
}

del_ns() {
    local name=$1
    if ! netns_exists "$name"; then
        echo "$PROG: '$name' does not exist (nothing to delete)" >&2
        return 0
    fi
    # Deleting the veth ends explicitly makes their peers disappear now,
    # not when the kernel gets round to destroying the namespace.
    local dev
    for dev in $(ip -n "$name" -o link show type veth 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
        ip -n "$name" link del dev "$dev" 2>/dev/null || true
    done
    ip netns del "$name" || die "cannot delete network namespace '$name'"
}

[[ $# -ge 2 ]] || usage
ACTION=$1
NAME=$2
shift 2
UPLINK_IP=""
LAN=""
WIRE=""
MAC=""
QUEUES=""
CREATED=""

while [[ $# -gt 0 ]]; do
    case $1 in
    --uplink-ip) [[ $# -ge 2 ]] || usage; UPLINK_IP=$2; shift 2 ;;
    --lan) [[ $# -ge 2 ]] || usage; LAN=$2; shift 2 ;;
    --wire) [[ $# -ge 2 ]] || usage; WIRE=$2; shift 2 ;;
    --mac) [[ $# -ge 2 ]] || usage; MAC=$2; shift 2 ;;
    --queues) [[ $# -ge 2 ]] || usage; QUEUES=$2; shift 2 ;;
    -h | --help) usage ;;
    *) echo "$PROG: unknown argument '$1'" >&2; usage ;;
    esac
done

check_name "$NAME"
[[ $(id -u) -eq 0 ]] || die "must run as root (creates network namespaces and interfaces)"

case $ACTION in
lan)
    [[ -z $UPLINK_IP && -z $LAN && -z $WIRE && -z $MAC && -z $QUEUES ]] || die "'lan' takes no options"
    add_lan "$NAME"
    ;;
add) add_node "$NAME" ;;
del)
    [[ -z $UPLINK_IP && -z $LAN && -z $WIRE && -z $MAC && -z $QUEUES ]] || die "'del' takes no options"
    del_ns "$NAME"
    ;;
*) echo "$PROG: unknown action '$ACTION'" >&2; usage ;;
esac
