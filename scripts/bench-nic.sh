#!/usr/bin/env bash
# NDR/PDR of vswitch between two real NIC ports (RFC 2544 style, FD.io CSIT
# style search, vswitch-bench), per frame size and worker count.
#
#   scripts/bench-nic.sh --dut P0,P1 --tester T0,T1 [options]
#   scripts/bench-nic.sh --check [options]
#   scripts/bench-nic.sh --help
#
# Topology (one host, four ports, two cables):
#
#   netns vsnic-gen            root namespace            netns vsnic-sink
#   T0 198.18.0.1/24 ---cable--- P0 [vswitchd] P1 ---cable--- T1 198.18.0.2/24
#   vswitch-bench generator      L2 forwarding           vswitch-bench sink
#
# vswitchd (private socket and state in a temporary directory, never
# /run/vswitch) attaches the DUT ports P0 and P1 through AF_XDP, trying
# zero-copy, then native, then generic XDP, and forwards between them with
# static FDB entries for the tester MACs (no flooding). The tester ports T0
# and T1 are moved into the network namespaces vsnic-gen and vsnic-sink with
# addresses from the RFC 2544 benchmarking range 198.18.0.0/15. One
# vswitch-bench process drives the generator on T0 and the sink on T1, so
# both stamp with one clock and latency is exact. The traffic is one UDP flow,
# unidirectional, T0 -> P0 -> vswitch -> P1 -> T1.
#
# For every worker count of --cores-list and every size of --sizes it runs
# `vswitch-bench ndr` and writes one result JSON (peer "vswitch", scenario
# "nic-<size>-<n>core"), then `vswitch-bench report` (report.md, svg/) and its
# own summary.md (Mpps, Gbit/s on the wire = (size + 20) x 8 x pps, % of line
# rate) into bench/results/<date>-<host>-nic/ (--out to change).
#
# vswitch binds queue 0 of each port only: the DUT and tester ports are set to
# 1 combined channel where the driver allows (else RSS is pointed at queue 0
# with `ethtool -X equal 1`), restored on exit.
#
# Changes while it runs, all undone on exit (also on Ctrl-C or an error):
# channels / RSS table, flow control (pause frames off), IRQ affinity (each
# port's IRQs on the CPU that serves it), up/down state of the four ports,
# promiscuous mode of the DUT ports (vswitchd sets it on uplinks only), the
# tester ports' namespace, vswitchd (its own, stopped). A run killed with
# SIGKILL leaves them: `ip netns del vsnic-gen; ip netns del vsnic-sink`
# moves the tester ports back; host.txt in the results has the values from
# before (ethtool -l/-a, IRQs) to restore by hand.
#
# Two hosts (DUT and tester apart): run the tester half (namespaces,
# vswitch-bench) on the tester host by hand, see BENCHMARKS.md ("Real NICs"). Keep
# T0 and T1 on the same tester host: generator and sink then share one clock
# (vswitch-bench stamps with CLOCK_MONOTONIC), and latency needs no sync.
#
# --check runs the whole sequence on veth pairs created in place of the NICs
# (vsnic-p0 <-> vsnic-t0, vsnic-p1 <-> vsnic-t1) with tiny trials, in well
# under a minute, and exits non-zero if any step fails. Bad arguments: one
# error line, exit 2, nothing changed.
set -Eeuo pipefail

PROG=bench-nic.sh
ORIG_ARGS=("$@")
# A command that fails unexpectedly says where (set -e alone exits silently).
trap 'echo "$PROG: error: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

NS_GEN=vsnic-gen
NS_SINK=vsnic-sink
IP_GEN=198.18.0.1
IP_SINK=198.18.0.2
PREFIX=24
LOCK=/run/lock/vsnic-bench.lock
ALL_SIZES=(64 128 256 512 1024 1518 imix)
CHECK_SIZES=(64 1518 imix)
# IMIX as vswitch-bench sends it: 7 x 64, 4 x 594, 1 x 1518 (mean 361.83 B).
IMIX_MEAN=361.83

usage() {
    cat <<'EOF'
Usage: scripts/bench-nic.sh --dut P0,P1 --tester T0,T1 [options]
       scripts/bench-nic.sh --check [options]

NDR/PDR of vswitch forwarding L2 between two NIC ports P0 and P1 (the DUT
ports, attached by vswitchd), with the tester ports T0 (cabled to P0) and T1
(cabled to P1) on this host in namespaces vsnic-gen / vsnic-sink.

  --dut P0,P1           the switch's ports (root namespace, no addresses, no XDP)
  --tester T0,T1        the tester's ports: T0 cabled to P0, T1 cabled to P1
  --check               run everything on veth pairs instead of NICs, tiny trials
  --cores-list N[,N..]  worker counts to measure, one vswitchd run each
                        (default 1,2, or 1 with fewer than 3 CPUs; --check: 1).
                        With 2 ports of 1 queue each, more than 2 workers
                        cannot help.
  --switch-cpus LIST    CPUs for vswitchd's workers, first N used for N workers
                        (e.g. 2,3 or 2-5; default: the last CPUs)
  --gen-core N          CPU of the generator (default: the first CPU)
  --sink-core N         CPU of the sink (default: the second CPU if free, else
                        the generator's; the sink sleeps when idle)
  --sizes LIST          frame sizes with FCS, 64..1518, or imix
                        (default 64,128,256,512,1024,1518,imix; --check: 64,1518,imix)
  --trial S             seconds per search trial (default 5; --check: 0.3)
  --precision PCT       NDR/PDR search precision in % (default 1; --check: 20)
  --repeats N           searches per point, median reported (default 3; --check: 1)
  --latency-trial S     seconds of the latency trials at 50/90 % of NDR
                        (default 5; --check: 0.3)
  --warmup S            seconds at 10 kpps before each search (default 2, covers
                        the link flap some drivers do when XDP is attached;
                        --check: 0.2)
  --mode M              XDP mode for the DUT ports: auto (zerocopy, else native,
                        else generic; default), zerocopy, native, generic
  --poll busy|adaptive  vswitchd polling (default busy; --check: adaptive)
  --keep-channels       leave channels and RSS of all ports as they are
  --keep-irqs           leave IRQ affinities alone (default: each port's IRQs go
                        to the CPU that serves it: worker, generator or sink)
  --dry-run             validate, print the plan (ports, CPUs, estimate), change nothing
  --out DIR             results directory (default
                        bench/results/<date>-<host>-nic; --check: a temporary one,
                        deleted on exit, unless --out is given)
  --bin DIR             where vswitchd, vswitchctl, vswitch-bench are
                        (default target/release)
  -h, --help            this text

Needs root, ip, ethtool, ping, python3 and the release binaries
(cargo build --release --workspace --bins).
EOF
}

log() { echo "$PROG: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}
# A bad argument: one line, exit 2, before anything was changed.
bad() {
    log "error: $* (see --help)"
    exit 2
}

# ---------------------------------------------------------------- arguments

CHECK=0 KEEP_CHANNELS=0 DRY_RUN=0 PIN_IRQS=1
DUT_ARG="" TESTER_ARG="" CORES_ARG="" SWITCH_CPUS_ARG="" GEN_CORE="" SINK_CORE=""
SIZES_ARG="" TRIAL="" PRECISION="" REPEATS="" LAT_TRIAL="" WARMUP="" MODE=auto POLL=""
OUT="" BIN="$ROOT/target/release"

need_val() {
    [[ $# -ge 2 ]] || bad "option $1 needs a value"
    [[ -n $2 ]] || bad "$1 is empty"
}
while [[ $# -gt 0 ]]; do
    case $1 in
    -h | --help)
        usage
        exit 0
        ;;
    --check) CHECK=1 && shift ;;
    --keep-channels) KEEP_CHANNELS=1 && shift ;;
    --dry-run) DRY_RUN=1 && shift ;;
    --keep-irqs) PIN_IRQS=0 && shift ;;
    --dut) need_val "$@" && DUT_ARG=$2 && shift 2 ;;
    --tester) need_val "$@" && TESTER_ARG=$2 && shift 2 ;;
    --cores-list) need_val "$@" && CORES_ARG=$2 && shift 2 ;;
    --switch-cpus) need_val "$@" && SWITCH_CPUS_ARG=$2 && shift 2 ;;
    --gen-core) need_val "$@" && GEN_CORE=$2 && shift 2 ;;
    --sink-core) need_val "$@" && SINK_CORE=$2 && shift 2 ;;
    --sizes) need_val "$@" && SIZES_ARG=$2 && shift 2 ;;
    --trial) need_val "$@" && TRIAL=$2 && shift 2 ;;
    --precision) need_val "$@" && PRECISION=$2 && shift 2 ;;
    --repeats) need_val "$@" && REPEATS=$2 && shift 2 ;;
    --latency-trial) need_val "$@" && LAT_TRIAL=$2 && shift 2 ;;
    --warmup) need_val "$@" && WARMUP=$2 && shift 2 ;;
    --mode) need_val "$@" && MODE=$2 && shift 2 ;;
    --poll) need_val "$@" && POLL=$2 && shift 2 ;;
    --out) need_val "$@" && OUT=$2 && shift 2 ;;
    --bin) need_val "$@" && BIN=$2 && shift 2 ;;
    *) bad "unknown argument '$1'" ;;
    esac
done

CHECK_TAG=""
if ((CHECK)); then
    CHECK_TAG=--check
    : "${CORES_ARG:=1}" "${TRIAL:=0.3}" "${PRECISION:=20}" "${REPEATS:=1}"
    : "${LAT_TRIAL:=0.3}" "${WARMUP:=0.2}" "${POLL:=adaptive}"
    [[ -n $SIZES_ARG ]] || SIZES_ARG=$(IFS=,; echo "${CHECK_SIZES[*]}")
else
    [[ -n $DUT_ARG ]] || bad "--dut P0,P1 is required (or --check)"
    [[ -n $TESTER_ARG ]] || bad "--tester T0,T1 is required (or --check)"
    : "${TRIAL:=5}" "${PRECISION:=1}" "${REPEATS:=3}"
    : "${LAT_TRIAL:=5}" "${WARMUP:=2}" "${POLL:=busy}"
    [[ -n $SIZES_ARG ]] || SIZES_ARG=$(IFS=,; echo "${ALL_SIZES[*]}")
fi

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_num() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$|^[.][0-9]+$ ]]; }
# num_between X LOW HIGH: LOW < X < HIGH (exclusive), X a decimal number.
num_between() { is_num "$1" && python3 -c 'import sys; a, lo, hi = map(float, sys.argv[1:]); sys.exit(0 if lo < a < hi else 1)' "$@"; }

# Splits a comma list strictly (no empty items) into the array LIST. These
# helpers set globals rather than print, so that `bad` exits the script, not
# a subshell.
LIST=()
split_list() { # NAME VALUE
    local name=$1 v=$2
    [[ -n $v ]] || bad "$name is empty"
    [[ $v != *,,* && $v != ,* && $v != *, ]] || bad "$name '$v' has an empty item"
    IFS=, read -r -a LIST <<<"$v"
}

# CPUs as a list (2,3 or 2-5 or 0,4-5) into the array CPUS.
CPUS=()
expand_cpus() { # NAME VALUE
    local name=$1 item a b
    CPUS=()
    split_list "$name" "$2"
    for item in "${LIST[@]}"; do
        if [[ $item =~ ^([0-9]+)-([0-9]+)$ ]]; then
            a=$((10#${BASH_REMATCH[1]})) b=$((10#${BASH_REMATCH[2]}))
            ((a <= b)) || bad "$name: '$item' is not a range"
            for ((; a <= b; a++)); do CPUS+=("$a"); done
        elif is_uint "$item"; then
            CPUS+=("$((10#$item))")
        else
            bad "$name: '$item' is not a CPU number"
        fi
    done
}
in_list() { # X ITEM... : X is one of the ITEMs
    local x=$1 i
    shift
    for i in "$@"; do [[ $i != "$x" ]] || return 0; done
    return 1
}

[[ $MODE =~ ^(auto|zerocopy|native|generic)$ ]] || bad "--mode '$MODE' is not auto, zerocopy, native or generic"
[[ $POLL =~ ^(busy|adaptive)$ ]] || bad "--poll '$POLL' is not busy or adaptive"
num_between "$TRIAL" 0 86400 || bad "--trial '$TRIAL' is not a positive number of seconds"
num_between "$LAT_TRIAL" 0 86400 || bad "--latency-trial '$LAT_TRIAL' is not a positive number of seconds"
num_between "$WARMUP" -1 86400 || bad "--warmup '$WARMUP' is not a number of seconds"
num_between "$PRECISION" 0 100 || bad "--precision '$PRECISION' is not a percentage between 0 and 100"
if ! is_uint "$REPEATS" || ((10#$REPEATS < 1 || 10#$REPEATS > 20)); then
    bad "--repeats '$REPEATS' is not 1 to 20"
fi
REPEATS=$((10#$REPEATS))

# Default worker counts: 1 and 2, as far as the CPUs go (the generator's
# first CPU stays free).
if [[ -z $CORES_ARG ]]; then
    ncpu=$(nproc)
    if ((ncpu >= 3)); then CORES_ARG=1,2; else CORES_ARG=1; fi
fi

SIZES=()
split_list --sizes "$SIZES_ARG"
for s in "${LIST[@]}"; do
    s=${s,,}
    if [[ $s == imix ]]; then
        :
    elif is_uint "$s" && ((10#$s >= 64 && 10#$s <= 1518)); then
        s=$((10#$s))
    else
        bad "unknown frame size '$s' (64 to 1518, or imix)"
    fi
    ! in_list "$s" "${SIZES[@]}" || bad "frame size $s given twice"
    SIZES+=("$s")
done

WORKERS=()
MAX_WORKERS=0
split_list --cores-list "$CORES_ARG"
for n in "${LIST[@]}"; do
    if ! is_uint "$n" || ((10#$n < 1)); then
        bad "--cores-list: '$n' is not a worker count (1, 2, ...)"
    fi
    n=$((10#$n))
    ! in_list "$n" "${WORKERS[@]}" || bad "--cores-list: $n given twice"
    WORKERS+=("$n")
    ((n <= MAX_WORKERS)) || MAX_WORKERS=$n
done

# Ports: two each, four distinct names.
P0="" P1="" T0="" T1=""
if [[ -n $DUT_ARG || -n $TESTER_ARG ]]; then
    [[ -n $DUT_ARG && -n $TESTER_ARG ]] || bad "--dut and --tester go together"
    split_list --dut "$DUT_ARG"
    ((${#LIST[@]} == 2)) || bad "--dut needs two ports, as P0,P1 (got '$DUT_ARG')"
    P0=${LIST[0]} P1=${LIST[1]}
    split_list --tester "$TESTER_ARG"
    ((${#LIST[@]} == 2)) || bad "--tester needs two ports, as T0,T1 (got '$TESTER_ARG')"
    T0=${LIST[0]} T1=${LIST[1]}
    [[ $P0 != "$P1" ]] || bad "--dut: port $P0 given twice"
    [[ $T0 != "$T1" ]] || bad "--tester: port $T0 given twice"
    for t in "$T0" "$T1"; do
        ! in_list "$t" "$P0" "$P1" || bad "tester port $t is also a DUT port"
    done
fi

if [[ -n $OUT && -e $OUT ]] && [[ ! -d $OUT || -n $(ls -A "$OUT") ]]; then
    bad "--out $OUT exists and is not an empty directory"
fi

# Interfaces given on the command line must exist in this namespace, be
# unused and carry no addresses (this script takes them over).
check_port() { # ROLE IF
    local role=$1 p=$2 addrs master
    [[ -e /sys/class/net/$p ]] || bad "$role port '$p': no such interface"
    [[ $p != lo ]] || bad "$role port '$p' is the loopback"
    addrs=$(ip -o addr show dev "$p" scope global 2>/dev/null | awk '{print $4}' | paste -sd, -)
    [[ -z $addrs ]] || bad "$role port '$p' has addresses ($addrs): this script takes the port over"
    ! ip route show default 2>/dev/null | grep -qw "dev $p" || bad "$role port '$p' carries the default route"
    master=$(ip -o link show dev "$p" | sed -n 's/.* master \([^ ]*\).*/\1/p')
    [[ -z $master ]] || bad "$role port '$p' is enslaved to $master"
    ! ip -d link show dev "$p" | grep -q 'prog/xdp' || bad "$role port '$p' has an XDP program attached (in use?)"
}
if [[ -n $DUT_ARG ]]; then
    check_port DUT "$P0"
    check_port DUT "$P1"
    check_port tester "$T0"
    check_port tester "$T1"
fi

# CPUs.
expand_cpus online "$(cat /sys/devices/system/cpu/online)"
ONLINE=("${CPUS[@]}")
if [[ -n $GEN_CORE ]]; then
    if ! is_uint "$GEN_CORE" || ! in_list "$((10#$GEN_CORE))" "${ONLINE[@]}"; then
        bad "--gen-core '$GEN_CORE' is not an online CPU (${ONLINE[*]})"
    fi
    GEN_CORE=$((10#$GEN_CORE))
else
    GEN_CORE=${ONLINE[0]}
fi
if [[ -n $SINK_CORE ]]; then
    if ! is_uint "$SINK_CORE" || ! in_list "$((10#$SINK_CORE))" "${ONLINE[@]}"; then
        bad "--sink-core '$SINK_CORE' is not an online CPU (${ONLINE[*]})"
    fi
    SINK_CORE=$((10#$SINK_CORE))
fi
SWITCH_CPUS=()
if [[ -n $SWITCH_CPUS_ARG ]]; then
    expand_cpus --switch-cpus "$SWITCH_CPUS_ARG"
    for c in "${CPUS[@]}"; do
        in_list "$c" "${ONLINE[@]}" || bad "--switch-cpus: CPU $c is not online (${ONLINE[*]})"
        ! in_list "$c" "$GEN_CORE" "$SINK_CORE" || bad "--switch-cpus: CPU $c is the generator's or the sink's"
        ! in_list "$c" "${SWITCH_CPUS[@]}" || bad "--switch-cpus: CPU $c given twice"
        SWITCH_CPUS+=("$c")
    done
else
    # The last CPUs, as vswitchd's own default, skipping the generator's
    # and the sink's.
    for ((i = ${#ONLINE[@]} - 1; i >= 0 && ${#SWITCH_CPUS[@]} < MAX_WORKERS; i--)); do
        c=${ONLINE[i]}
        in_list "$c" "$GEN_CORE" "$SINK_CORE" || SWITCH_CPUS=("$c" "${SWITCH_CPUS[@]}")
    done
fi
((${#SWITCH_CPUS[@]} >= MAX_WORKERS)) ||
    bad "--cores-list wants $MAX_WORKERS workers but only ${#SWITCH_CPUS[@]} CPU(s) are left for the switch (online: ${ONLINE[*]}; generator on $GEN_CORE${SINK_CORE:+, sink on $SINK_CORE})"
SWITCH_CPUS=("${SWITCH_CPUS[@]:0:MAX_WORKERS}")
if [[ -z $SINK_CORE ]]; then
    # The next free CPU, else the generator's (the sink sleeps when idle).
    SINK_CORE=$GEN_CORE
    for c in "${ONLINE[@]}"; do
        if ! in_list "$c" "$GEN_CORE" "${SWITCH_CPUS[@]}"; then
            SINK_CORE=$c
            break
        fi
    done
fi

# ---------------------------------------------------------------- the host

((EUID == 0)) || die "needs root (namespaces, XDP, ethtool)"
for tool in ip ethtool ping python3 flock timeout; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install iproute2 ethtool iputils-ping python3 util-linux coreutils)"
done
VSWITCHD=$BIN/vswitchd VSWITCHCTL=$BIN/vswitchctl BENCH=$BIN/vswitch-bench
for b in "$VSWITCHD" "$VSWITCHCTL" "$BENCH"; do
    [[ -x $b ]] || die "$b not found (cargo build --release --workspace --bins)"
done
"$BENCH" ndr --help >/dev/null || die "$BENCH does not run"

exec 9>"$LOCK"
flock -n 9 || die "another bench-nic.sh run holds $LOCK"

# ---------------------------------------------------------------- state and cleanup

TMP=$(mktemp -d /tmp/vsnic.XXXXXX)
SOCK=$TMP/vswitchd.sock
VSD_PID="" BENCH_PID=""
CREATED_VETH=0
declare -a MOVED=()          # tester ports moved into a namespace: "IF NS"
declare -a RESTORE_CHAN=()   # "IF ARGS..." for ethtool -L
declare -a RESTORE_RSS=()    # IF for ethtool -X default
declare -a RESTORE_PAUSE=()  # "IF ARGS..." for ethtool -A
declare -A ORIG_UP ORIG_PROMISC  # 1/0 per port, from before
declare -A ORIG_IRQ              # IRQ -> its smp_affinity_list before
declare -a OUR_NS=()

stop_vswitchd() {
    [[ -n $VSD_PID ]] || return 0
    kill -TERM "$VSD_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$VSD_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$VSD_PID" 2>/dev/null; then
        log "vswitchd ($VSD_PID) did not stop on SIGTERM; killing it"
        kill -KILL "$VSD_PID" 2>/dev/null || true
    fi
    wait "$VSD_PID" 2>/dev/null || true
    VSD_PID=""
}

cleanup() {
    local rc=$? entry p ns irq
    trap - EXIT INT TERM ERR
    set +e
    if [[ -n $BENCH_PID ]] && kill -0 "$BENCH_PID" 2>/dev/null; then
        kill -TERM "$BENCH_PID" 2>/dev/null
        wait "$BENCH_PID" 2>/dev/null
    fi
    stop_vswitchd
    # XDP left behind by a killed process: the ports had none when we began.
    for p in "$P0" "$P1"; do
        [[ -n $p && -e /sys/class/net/$p ]] || continue
        ip link set dev "$p" xdpdrv off 2>/dev/null
        ip link set dev "$p" xdpgeneric off 2>/dev/null
    done
    for entry in "${MOVED[@]}"; do
        read -r p ns <<<"$entry"
        ip -n "$ns" link set dev "$p" xdpdrv off 2>/dev/null
        ip -n "$ns" link set dev "$p" xdpgeneric off 2>/dev/null
        if ((CHECK)); then continue; fi
        ip -n "$ns" link set dev "$p" down 2>/dev/null
        ip -n "$ns" addr flush dev "$p" 2>/dev/null
        ip -n "$ns" link set dev "$p" netns 1 2>/dev/null ||
            log "warning: could not move $p back from $ns (deleting the namespace moves it)"
    done
    if ((CREATED_VETH)); then
        ip link del vsnic-p0 2>/dev/null
        ip link del vsnic-p1 2>/dev/null
    fi
    for ns in "${OUR_NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    for entry in "${RESTORE_CHAN[@]}"; do
        read -r p _ <<<"$entry"
        # shellcheck disable=SC2086 # entry is "IF ARGS..."
        ethtool -L $entry 2>/dev/null || log "warning: could not restore the channels of $p (ethtool -L $entry)"
    done
    for p in "${RESTORE_RSS[@]}"; do
        ethtool -X "$p" default 2>/dev/null || log "warning: could not restore the RSS table of $p"
    done
    for irq in "${!ORIG_IRQ[@]}"; do
        { echo "${ORIG_IRQ[$irq]}" >"/proc/irq/$irq/smp_affinity_list"; } 2>/dev/null ||
            log "warning: could not restore the affinity of IRQ $irq (${ORIG_IRQ[$irq]})"
    done
    for entry in "${RESTORE_PAUSE[@]}"; do
        read -r p _ <<<"$entry"
        # shellcheck disable=SC2086 # entry is "IF ARGS..."
        ethtool -A $entry 2>/dev/null || log "warning: could not restore the flow control of $p (ethtool -A $entry)"
    done
    for p in "${!ORIG_UP[@]}"; do
        [[ -e /sys/class/net/$p ]] || continue
        ((ORIG_PROMISC[$p])) || ip link set dev "$p" promisc off 2>/dev/null
        if ((ORIG_UP[$p])); then
            ip link set dev "$p" up 2>/dev/null
        else
            ip link set dev "$p" down 2>/dev/null
        fi
    done
    rm -rf "$TMP"
    if ((rc != 0)); then log "failed (exit $rc); everything restored"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Leftovers of a run that was killed (SIGKILL, power): under the lock, they
# are not anyone's.
for ns in "$NS_GEN" "$NS_SINK"; do
    if [[ -e /run/netns/$ns ]]; then
        log "removing namespace $ns left by an earlier run (its ports go back to the root namespace)"
        ip netns del "$ns" || die "cannot delete namespace $ns"
    fi
done
for v in vsnic-p0 vsnic-p1 vsnic-t0 vsnic-t1; do
    if [[ -e /sys/class/net/$v ]] && ((CHECK)); then
        log "removing veth $v left by an earlier --check"
        ip link del "$v" 2>/dev/null || true
    fi
done

if ((CHECK)); then
    if [[ -n $DUT_ARG ]]; then
        log "check: arguments valid for --dut $P0,$P1 --tester $T0,$T1; testing on veth pairs instead"
    fi
    P0=vsnic-p0 P1=vsnic-p1 T0=vsnic-t0 T1=vsnic-t1
    CREATED_VETH=1
    ip link add "$P0" type veth peer name "$T0"
    ip link add "$P1" type veth peer name "$T1"
fi

# ---------------------------------------------------------------- port facts

declare -A DRIVER SPEED_MBPS CHAN NUMA MTU MAC IRQS IRQ_DESC
# The port's interrupts: its PCI function's MSI(-X) vectors (virtio: the
# parent's), else its legacy IRQ. Virtual devices have none.
port_irqs() { # IF
    local d=/sys/class/net/$1/device m
    [[ -e $d ]] || return 0
    for m in "$d/msi_irqs" "$d/../msi_irqs"; do
        if [[ -d $m ]]; then
            (cd "$m" && printf '%s\n' [0-9]* | grep -E '^[0-9]+$' | sort -n | paste -sd' ' -) || true
            return 0
        fi
    done
    if [[ -r $d/irq ]]; then cat "$d/irq"; fi
}

describe_irqs() { # IF
    local irq n=0 aff=()
    for irq in ${IRQS[$1]}; do
        n=$((n + 1))
        aff+=("$(cat "/proc/irq/$irq/smp_affinity_list" 2>/dev/null || echo '?')")
    done
    if ((n == 0)); then
        echo "none"
    else
        echo "$n, CPUs $(printf '%s\n' "${aff[@]}" | sort -u | paste -sd' ' -)"
    fi
}
port_facts() { # IF
    local p=$1 speed
    DRIVER[$p]=$(ethtool -i "$p" 2>/dev/null | awk -F': ' '$1 == "driver" {print $2}')
    [[ -n ${DRIVER[$p]} ]] || DRIVER[$p]=unknown
    speed=$(ethtool "$p" 2>/dev/null | awk -F': ' '$1 ~ /Speed$/ {print $2}')
    # Virtual devices (veth reports a made-up 10000Mb/s) have no line rate.
    if [[ -e /sys/class/net/$p/device && $speed =~ ^([0-9]+)Mb/s$ ]]; then
        SPEED_MBPS[$p]=${BASH_REMATCH[1]}
    else
        SPEED_MBPS[$p]=""
    fi
    NUMA[$p]=$(cat "/sys/class/net/$p/device/numa_node" 2>/dev/null || echo -)
    MTU[$p]=$(cat "/sys/class/net/$p/mtu")
    MAC[$p]=$(cat "/sys/class/net/$p/address")
    IRQS[$p]=$(port_irqs "$p")
    IRQ_DESC[$p]=$(describe_irqs "$p")
}

# chan IF max|cur rx|tx|other|combined -> the number, or n/a
chan() {
    ethtool -l "$1" 2>/dev/null | awk -v want="$2" -v key="$3" '
        /^Pre-set maximums/ { sec = "max" }
        /^Current hardware settings/ { sec = "cur" }
        sec == want && tolower($1) == key ":" { print $2; found = 1; exit }
        END { if (!found) print "n/a" }'
}

rx_count() { # IF: its RX queues as sysfs lists them
    local q=(/sys/class/net/"$1"/queues/rx-*)
    [[ -e ${q[0]} ]] && echo "${#q[@]}" || echo 0
}

describe_chan() {
    local p=$1 c r t
    c=$(chan "$p" cur combined) r=$(chan "$p" cur rx) t=$(chan "$p" cur tx)
    if [[ $c == n/a && $r == n/a ]]; then
        echo "$(rx_count "$p") rx queue(s) (ethtool -l unsupported)"
    else
        echo "combined $c rx $r tx $t (max combined $(chan "$p" max combined))"
    fi
}

# One queue, so that every frame reaches queue 0, the one AF_XDP binds.
one_queue() { # IF
    local p=$1 c r
    c=$(chan "$p" cur combined) r=$(chan "$p" cur rx)
    local rx_queues=0
    [[ $c =~ ^[0-9]+$ ]] && rx_queues=$((rx_queues + c))
    [[ $r =~ ^[0-9]+$ ]] && rx_queues=$((rx_queues + r))
    if [[ $c == n/a && $r == n/a ]]; then
        rx_queues=$(rx_count "$p")
    fi
    if ((rx_queues <= 1)); then
        CHAN[$p]="1 queue already"
        return
    fi
    if ((KEEP_CHANNELS)); then
        CHAN[$p]="$rx_queues queues, left (--keep-channels): frames RSS puts on another queue than 0 are lost"
        log "warning: $p has $rx_queues RX queues and --keep-channels: frames hashed to a queue other than 0 never reach AF_XDP"
        return
    fi
    if [[ $c =~ ^[1-9][0-9]*$ ]] && ethtool -L "$p" combined 1 2>/dev/null; then
        RESTORE_CHAN+=("$p combined $c")
        CHAN[$p]="combined $c -> 1 (restored on exit)"
    elif [[ $r =~ ^[1-9][0-9]*$ ]] && ethtool -L "$p" rx 1 2>/dev/null; then
        RESTORE_CHAN+=("$p rx $r")
        CHAN[$p]="rx $r -> 1 (restored on exit)"
    elif ethtool -X "$p" equal 1 2>/dev/null; then
        RESTORE_RSS+=("$p")
        CHAN[$p]="$rx_queues queues, RSS table -> queue 0 only (ethtool -X equal 1, restored on exit)"
    else
        CHAN[$p]="$rx_queues queues, could not be reduced: frames RSS puts on another queue than 0 are lost"
        log "warning: cannot set $p to one queue (ethtool -L / -X refused): frames hashed to a queue other than 0 never reach AF_XDP"
    fi
}

# Flow control off: with pause frames a slow switch would slow the
# generator down instead of dropping, and loss would look like no loss.
declare -A PAUSE
no_pause() { # IF
    local p=$1 a r t
    local out
    if ! out=$(ethtool -a "$p" 2>/dev/null); then
        PAUSE[$p]="n/a"
        return
    fi
    a=$(awk '$1 == "Autonegotiate:" {print $2}' <<<"$out")
    r=$(awk '$1 == "RX:" {print $2}' <<<"$out")
    t=$(awk '$1 == "TX:" {print $2}' <<<"$out")
    if [[ $a != on && $r != on && $t != on ]]; then
        PAUSE[$p]="off"
    elif ethtool -A "$p" autoneg off rx off tx off 2>/dev/null ||
        ethtool -A "$p" rx off tx off 2>/dev/null; then
        RESTORE_PAUSE+=("$p autoneg ${a:-off} rx ${r:-off} tx ${t:-off}")
        PAUSE[$p]="autoneg $a rx $r tx $t -> off (restored on exit)"
    else
        PAUSE[$p]="autoneg $a rx $r tx $t, could not be turned off"
        log "warning: cannot turn flow control off on $p: pause frames may hide loss"
    fi
}

# Interrupts of a port to one CPU: the worker's for a DUT port, the
# generator's or sink's for a tester port (irqbalance would put them
# anywhere, the generator's CPU included).
pin_irqs() { # IF CPU
    local p=$1 cpu=$2 irq cur f
    ((PIN_IRQS)) || return 0
    for irq in ${IRQS[$p]}; do
        f=/proc/irq/$irq/smp_affinity_list
        [[ -r $f ]] || continue
        cur=$(cat "$f")
        [[ $cur != "$cpu" ]] || continue
        if { echo "$cpu" >"$f"; } 2>/dev/null; then
            [[ -n ${ORIG_IRQ[$irq]:-} ]] || ORIG_IRQ[$irq]=$cur
        else
            log "warning: cannot pin IRQ $irq of $p to CPU $cpu (managed by the kernel?); it stays on $cur"
        fi
    done
}

wait_up() { # NS|"" IF SECONDS
    local ns=$1 p=$2 n=$(($3 * 10)) i
    for ((i = 0; i < n; i++)); do
        if [[ -z $ns ]]; then
            ip -o link show dev "$p" | grep -q 'LOWER_UP' && return 0
        else
            ip -n "$ns" -o link show dev "$p" | grep -q 'LOWER_UP' && return 0
        fi
        sleep 0.1
    done
    return 1
}

for p in "$P0" "$P1" "$T0" "$T1"; do port_facts "$p"; done

# The largest frame must fit every port's MTU (frame = MTU + 14 + 4 FCS).
max_size=0
for s in "${SIZES[@]}"; do
    if [[ $s == imix ]]; then s=1518; fi
    if ((s > max_size)); then max_size=$s; fi
done
for p in "$P0" "$P1" "$T0" "$T1"; do
    ((max_size - 18 <= MTU[$p])) || bad "port $p has MTU ${MTU[$p]}: ${max_size}-byte frames need at least $((max_size - 18))"
done

LINE_MBPS=""
if [[ -n ${SPEED_MBPS[$P0]} && -n ${SPEED_MBPS[$P1]} && -n ${SPEED_MBPS[$T0]} && -n ${SPEED_MBPS[$T1]} ]]; then
    LINE_MBPS=$(printf '%s\n' "${SPEED_MBPS[$P0]}" "${SPEED_MBPS[$P1]}" "${SPEED_MBPS[$T0]}" "${SPEED_MBPS[$T1]}" | sort -n | head -1)
fi
fmt_speed() { if [[ -n $1 ]]; then echo "${1}Mb/s"; else echo "n/a"; fi; }

# ---------------------------------------------------------------- results directory

if [[ -z $OUT ]]; then
    if ((CHECK)); then
        OUT=$TMP/results # removed with $TMP on exit
    else
        base=$ROOT/bench/results/$(date +%Y-%m-%d)-$(hostname -s)-nic
        OUT=$base
        i=2
        while [[ -e $OUT ]]; do OUT=$base-$i && i=$((i + 1)); done
    fi
fi

# ---------------------------------------------------------------- plan

est_trials=$(python3 -c '
import math, sys
p = float(sys.argv[1]) / 100
print(2 + 2 * (max(1, math.ceil(math.log2(1 / p))) + 1))' "$PRECISION")
est_s=$(python3 -c '
import sys
trial, lat, warm, rep, n, points = map(float, sys.argv[1:])
print(round(points * (warm + rep * n * (trial + 0.25) + 2 * lat + 3)))' \
    "$TRIAL" "$LAT_TRIAL" "$WARMUP" "$REPEATS" "$est_trials" "$((${#SIZES[@]} * ${#WORKERS[@]}))")
# A search that takes three times its most plus a minute is hung: killed.
search_limit=$(python3 -c '
import sys
trial, lat, warm, rep, n = map(float, sys.argv[1:])
print(round(3 * (warm + rep * n * (trial + 0.5) + 2 * (lat + 0.5)) + 60))' \
    "$TRIAL" "$LAT_TRIAL" "$WARMUP" "$REPEATS" "$est_trials")

{
    echo "$PROG: plan${CHECK_TAG:+ ($CHECK_TAG: veth pairs, tiny trials)}"
    printf '  %-7s %-10s %-10s %-11s %-6s %-5s %-18s %s\n' PORT IFACE DRIVER SPEED MTU NUMA IRQS CHANNELS
    for pair in "P0 $P0" "P1 $P1" "T0 $T0" "T1 $T1"; do
        read -r role p <<<"$pair"
        printf '  %-7s %-10s %-10s %-11s %-6s %-5s %-18s %s\n' "$role" "$p" "${DRIVER[$p]}" \
            "$(fmt_speed "${SPEED_MBPS[$p]}")" "${MTU[$p]}" "${NUMA[$p]}" "${IRQ_DESC[$p]}" "$(describe_chan "$p")"
    done
    echo "  cabling:   $T0 <-> $P0 [vswitchd] $P1 <-> $T1; traffic $T0 -> $T1, one UDP flow"
    echo "  tester:    $T0 in netns $NS_GEN $IP_GEN/$PREFIX, $T1 in netns $NS_SINK $IP_SINK/$PREFIX"
    echo "  line rate: $(fmt_speed "$LINE_MBPS")"
    echo "  sizes:     ${SIZES[*]}"
    echo "  workers:   ${WORKERS[*]} (switch CPUs ${SWITCH_CPUS[*]}, first N for N workers), poll $POLL, XDP mode $MODE"
    echo "  generator: CPU $GEN_CORE, sink: CPU $SINK_CORE"
    if ((PIN_IRQS)); then
        echo "  IRQs:      pinned while it runs: $P0/$P1 to their worker's CPU, $T0 to $GEN_CORE, $T1 to $SINK_CORE"
    else
        echo "  IRQs:      left as they are (--keep-irqs)"
    fi
    echo "  changes:   channels, RSS, flow control, IRQ affinity, promiscuous mode, up/down, tester namespaces; all restored on exit"
    echo "  search:    trial ${TRIAL}s, precision ${PRECISION}%, repeats $REPEATS, latency trials ${LAT_TRIAL}s, warm-up ${WARMUP}s"
    echo "  estimate:  at most ~$((est_s / 60)) min $((est_s % 60)) s ($((${#SIZES[@]} * ${#WORKERS[@]})) searches of up to $est_trials trials each)"
    echo "  results:   $OUT"
} >&2
for n in "${WORKERS[@]}"; do
    ((n <= 2)) || log "note: $n workers: with 2 ports of 1 queue each, more than 2 workers have nothing to do"
done
for c in "${SWITCH_CPUS[@]:0:MAX_WORKERS}"; do
    for x in "$GEN_CORE" "$SINK_CORE"; do
        sib=$(cat "/sys/devices/system/cpu/cpu$c/topology/thread_siblings_list" 2>/dev/null || true)
        [[ -n $sib ]] && expand_cpus siblings "$sib" || CPUS=()
        if [[ $c != "$x" ]] && in_list "$x" "${CPUS[@]}"; then
            log "warning: CPU $x (generator/sink) is a hyper-thread sibling of switch CPU $c"
        fi
    done
done
if [[ ${NUMA[$P0]} =~ ^[0-9]+$ ]]; then
    node_cpus=$(cat "/sys/devices/system/node/node${NUMA[$P0]}/cpulist" 2>/dev/null || true)
    for c in "${SWITCH_CPUS[@]:0:MAX_WORKERS}"; do
        [[ -n $node_cpus ]] && expand_cpus numa "$node_cpus" || CPUS=("$c")
        if ! in_list "$c" "${CPUS[@]}"; then
            log "warning: switch CPU $c is not on $P0's NUMA node ${NUMA[$P0]} (CPUs $node_cpus); see --switch-cpus"
        fi
    done
fi

if ((PIN_IRQS)) && pgrep -x irqbalance >/dev/null; then
    log "warning: irqbalance is running and may move the pinned IRQs during the run (systemctl stop irqbalance, then start it again)"
fi
if ((DRY_RUN)); then
    log "dry run: nothing changed$( ((CHECK)) && echo " (but the veth pairs, removed now)")"
    exit 0
fi
mkdir -p "$OUT/stats" "$OUT/logs"

# What to send back with the results.
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(hostname)"
    echo "kernel: $(uname -r) ($(uname -v))"
    echo "cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo) x ${#ONLINE[@]} online"
    echo "vswitch: $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
    echo "command: $0 ${ORIG_ARGS[*]}"
    echo "kernel command line: $(cat /proc/cmdline)"
    for c in "$GEN_CORE" "$SINK_CORE" "${SWITCH_CPUS[@]}"; do
        echo "cpu$c governor: $(cat "/sys/devices/system/cpu/cpu$c/cpufreq/scaling_governor" 2>/dev/null || echo n/a)"
    done
    if command -v lscpu >/dev/null; then
        echo
        echo "== lscpu"
        lscpu 2>&1 || true
    fi
    for p in "$P0" "$P1" "$T0" "$T1"; do
        echo
        echo "== $p: ethtool -i"
        ethtool -i "$p" 2>&1 || true
        bus=$(ethtool -i "$p" 2>/dev/null | awk -F': ' '$1 == "bus-info" {print $2}')
        if [[ -n $bus ]] && command -v lspci >/dev/null; then
            echo "== $p: lspci -nn -s $bus"
            lspci -nn -s "$bus" 2>&1 || true
        fi
        echo "== $p: ethtool (link)"
        ethtool "$p" 2>&1 | grep -E 'Speed|Duplex|Link detected|Port:' || true
        echo "== $p: ethtool -l (before)"
        ethtool -l "$p" 2>&1 || true
        echo "== $p: ethtool -a (before)"
        ethtool -a "$p" 2>&1 || true
        echo "== $p: IRQs (before): ${IRQ_DESC[$p]}"
        for irq in ${IRQS[$p]}; do grep -E "^ *$irq:" /proc/interrupts || true; done
    done
} >"$OUT/host.txt"

# ---------------------------------------------------------------- set up the tester side and queues

for p in "$P0" "$P1" "$T0" "$T1"; do
    flags=$(ip -o link show dev "$p" | sed -n 's/^[0-9]*: [^<]*<\([^>]*\)>.*/,\1,/p')
    ORIG_UP[$p]=0 ORIG_PROMISC[$p]=0
    [[ $flags == *,UP,* ]] && ORIG_UP[$p]=1
    [[ $flags == *,PROMISC,* ]] && ORIG_PROMISC[$p]=1
    one_queue "$p"
    no_pause "$p"
done
for pair in "$T0 $NS_GEN $IP_GEN" "$T1 $NS_SINK $IP_SINK"; do
    read -r p ns ip_addr <<<"$pair"
    ip netns add "$ns"
    OUR_NS+=("$ns")
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1 net.ipv6.conf.all.disable_ipv6=1
    ip link set dev "$p" down
    ip link set dev "$p" netns "$ns"
    MOVED+=("$p $ns")
    ip -n "$ns" addr add "$ip_addr/$PREFIX" dev "$p"
    ip -n "$ns" link set dev "$p" up
done
# vswitchd puts only an uplink into promiscuous mode: a NIC would filter
# the frames addressed to the tester's MACs.
for p in "$P0" "$P1"; do ip link set dev "$p" promisc on up; done
pin_irqs "$T0" "$GEN_CORE"
pin_irqs "$T1" "$SINK_CORE"
# Static neighbours: the tester kernels never need ARP through the switch.
ip -n "$NS_GEN" neigh replace "$IP_SINK" lladdr "${MAC[$T1]}" dev "$T0" nud permanent
ip -n "$NS_SINK" neigh replace "$IP_GEN" lladdr "${MAC[$T0]}" dev "$T1" nud permanent

ctl() { "$VSWITCHCTL" --socket "$SOCK" "$@"; }

start_vswitchd() { # CPULIST LOG
    rm -f "$TMP/state.json"
    "$VSWITCHD" --cores "$1" --socket "$SOCK" --state "$TMP/state.json" --poll "$POLL" >"$2" 2>&1 &
    VSD_PID=$!
    for _ in $(seq 100); do
        if ctl show >/dev/null 2>&1; then return 0; fi
        kill -0 "$VSD_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$2" >&2
    die "vswitchd --cores $1 did not start (log above)"
}

# port_json IF -> "mode zero_copy worker state"
port_json() {
    ctl -o json port list | python3 -c '
import json, sys
for p in json.load(sys.stdin):
    if p["name"] == sys.argv[1]:
        print(p["mode"], "zero-copy" if p.get("zero_copy") else "copy", p["worker"], p["state"], p.get("error", ""))
        break' "$1"
}

declare -A PORT_MODE TRIED
# Adds a DUT port, trying the modes in order; remembers what worked.
add_port() { # IF
    local p=$1 m err modes
    if [[ -n ${PORT_MODE[$p]:-} ]]; then
        # Known from the first vswitchd run: the same mode again.
        err=$(ctl port add "$p" --mode "${PORT_MODE[$p]}" 2>&1) ||
            die "vswitchd cannot attach $p in mode ${PORT_MODE[$p]} any more: ${err#vswitchctl: }"
        return 0
    fi
    if [[ $MODE == auto ]]; then
        modes=(zerocopy native generic)
    else
        modes=("$MODE")
    fi
    TRIED[$p]=""
    for m in "${modes[@]}"; do
        if err=$(ctl port add "$p" --mode "$m" 2>&1); then
            PORT_MODE[$p]=$m
            TRIED[$p]+="$m: ok"
            return 0
        fi
        TRIED[$p]+="$m: refused (${err#vswitchctl: }); "
    done
    die "vswitchd cannot attach $p: ${TRIED[$p]%; }"
}

# ---------------------------------------------------------------- measure

# T0 and T1 had no XDP program before a search and must have none after it:
# a vswitch-bench killed by the timeout cannot detach its own, and an older
# vswitch-bench closed the generator's socket from the sink's namespace
# (fixed), leaving the program on T0 so that the next search failed with
# EBUSY. Belt and braces.
clear_tester_xdp() {
    local p
    for p in "$NS_GEN $T0" "$NS_SINK $T1"; do
        # shellcheck disable=SC2086 # "NS IF"
        set -- $p
        if ip -n "$1" -d link show dev "$2" | grep -q 'prog/xdp'; then
            ip -n "$1" link set dev "$2" xdpdrv off 2>/dev/null || true
            ip -n "$1" link set dev "$2" xdpgeneric off 2>/dev/null || true
            ! ip -n "$1" -d link show dev "$2" | grep -q 'prog/xdp' ||
                log "warning: cannot detach the XDP program vswitch-bench left on $2"
        fi
    done
}

declare -a FAILED=() ROWS=()
idx=0
size_bytes() { if [[ $1 == imix ]]; then echo "$IMIX_MEAN"; else echo "$1"; fi; }

for n in "${WORKERS[@]}"; do
    cpus=$(IFS=,; echo "${SWITCH_CPUS[*]:0:n}")
    log "vswitchd: $n worker(s) on CPU(s) $cpus, poll $POLL"
    start_vswitchd "$cpus" "$OUT/logs/vswitchd-${n}core.log"
    for p in "$P0" "$P1"; do add_port "$p"; done
    ctl fdb add "${MAC[$T0]}" "$P0" >/dev/null
    ctl fdb add "${MAC[$T1]}" "$P1" >/dev/null
    # Attaching XDP resets the link on many drivers: wait for all four.
    for pair in "|$P0" "|$P1" "$NS_GEN|$T0" "$NS_SINK|$T1"; do
        wait_up "${pair%%|*}" "${pair#*|}" 20 || die "link of ${pair#*|} is not up after 20 s (cabled as documented?)"
    done
    port_modes=""
    for p in "$P0" "$P1"; do
        read -r mode zc worker state perr < <(port_json "$p")
        [[ $state == up ]] || die "port $p is $state in vswitchd: $perr"
        log "  $p: ${TRIED[$p]} -> vswitchd says mode $mode $zc, worker $worker"
        port_modes+="${port_modes:+, }$p $mode $zc (worker $worker)"
        # NAPI (XDP, AF_XDP RX and TX completion) runs where the IRQ goes.
        pin_irqs "$p" "${SWITCH_CPUS[worker]}"
    done
    # Something must cross the switch before searching.
    if ! ip netns exec "$NS_GEN" ping -q -c 3 -i 0.2 -W 1 "$IP_SINK" >"$TMP/ping" 2>&1; then
        cat "$TMP/ping" >&2
        ctl stats >&2 || true
        die "no ping reply from $IP_SINK ($T1) to $IP_GEN ($T0) through vswitch: check the cabling ($T0-$P0, $T1-$P1)"
    fi
    for size in "${SIZES[@]}"; do
        scenario=nic-$size-${n}core
        idx=$((idx + 1))
        # The report lists scenarios in file-name order: the order they ran.
        file=$(printf '%02d' "$idx")-$scenario
        json=$OUT/$file.json
        log "$scenario: NDR search ($( [[ $size == imix ]] && echo "IMIX" || echo "$size-byte") frames, $n worker(s))"
        notes=(
            --note "driver=$P0 ${DRIVER[$P0]}, $P1 ${DRIVER[$P1]}; tester $T0 ${DRIVER[$T0]}, $T1 ${DRIVER[$T1]}"
            --note "speed=$(fmt_speed "$LINE_MBPS")"
            --note "mode=$P0 ${PORT_MODE[$P0]}, $P1 ${PORT_MODE[$P1]} (requested)"
            --note "channels=$P0 ${CHAN[$P0]}; $P1 ${CHAN[$P1]}; $T0 ${CHAN[$T0]}; $T1 ${CHAN[$T1]}"
            --note "topology=$T0 -> $P0 [vswitch L2, static FDB] $P1 -> $T1, one UDP flow, unidirectional${CHECK_TAG:+, veth ($CHECK_TAG)}"
            --note "flow_control=$P0 ${PAUSE[$P0]}; $P1 ${PAUSE[$P1]}; $T0 ${PAUSE[$T0]}; $T1 ${PAUSE[$T1]}"
            --note "poll=$POLL"
        )
        clear_tester_xdp
        timeout --kill-after=10 "$search_limit" "$BENCH" ndr --tx-netns "$NS_GEN" --tx-iface "$T0" --rx-netns "$NS_SINK" --rx-iface "$T1" \
            --dst-ip "$IP_SINK" --dst-mac "${MAC[$T1]}" --size "$size" --tx-driver afxdp --rx-driver afxdp \
            --gen-core "$GEN_CORE" --sink-core "$SINK_CORE" \
            --trial "$TRIAL" --precision "$PRECISION" --repeats "$REPEATS" \
            --latency-trial "$LAT_TRIAL" --warmup "$WARMUP" \
            --peer vswitch --scenario "$scenario" \
            --layout "switch CPUs $cpus ($n worker(s): $port_modes), generator CPU $GEN_CORE, sink CPU $SINK_CORE" \
            "${notes[@]}" --json "$json" \
            > >(tee "$OUT/logs/$file.log") 2>&1 &
        BENCH_PID=$!
        if wait "$BENCH_PID"; then rc=0; else rc=$?; fi
        BENCH_PID=""
        clear_tester_xdp
        ctl -o json stats >"$OUT/stats/$file.json" 2>&1 || true
        if ((rc == 124 || rc == 137)); then
            log "$scenario: vswitch-bench still running after $search_limit s: killed (log: $OUT/logs/$file.log)"
            FAILED+=("$scenario: vswitch-bench hung (killed after $search_limit s)")
            ((!CHECK)) || break 2
            continue
        elif ((rc != 0)); then
            log "$scenario: vswitch-bench failed (exit $rc; log: $OUT/logs/$file.log)"
            FAILED+=("$scenario: vswitch-bench exit $rc")
            continue
        fi
        if [[ ! -s $json ]]; then
            FAILED+=("$scenario: no result file")
            continue
        fi
        # size, workers, NDR, PDR, ... from the result file.
        row=$(python3 - "$json" "$(size_bytes "$size")" "$LINE_MBPS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
size = float(sys.argv[2])
line = float(sys.argv[3]) / 1000 if sys.argv[3] else None
n = r["ndr"]
received = sum(t["result"]["received"] for t in n["trials"])
ndr, pdr = n["ndr_median_pps"], n["pdr_median_pps"]
gbps = (size + 20) * 8 * ndr / 1e9
pct = f"{100 * gbps / line:.1f}" if line else "n/a"
lat = {round(l["fraction"] * 100): l["result"]["latency"] for l in n["latency"]}
l90 = lat.get(90)
p = f'{l90["p50_us"]:.1f}/{l90["p99_us"]:.1f}' if l90 else "-"
notes = []
if any(x["generator_bound"] for x in n["runs"]):
    notes.append("gen-bound: the generator set the limit (no loss at its maximum, or it could not offer the rate asked), NDR is a lower bound")
search = [t for t in n["trials"] if t["phase"] != "latency"]
short = [t for t in search if t["result"]["target_pps"]
         and t["result"]["offered_pps"] < 0.95 * t["result"]["target_pps"]]
if short:
    notes.append(f"generator short of the asked rate in {len(short)} trial(s)")
for i, run in enumerate(n["runs"]):
    best = max((t["result"]["offered_pps"] for t in search
                if t["repeat"] == i and t["result"]["lost"] == 0), default=0)
    if best > 1.01 * run["ndr"]["rate_pps"]:
        notes.append(f"repeat {i + 1}: a trial passed at {best / 1e6:.3f} Mpps, above its NDR")
for l in n["latency"]:
    if l["result"]["lost"]:
        notes.append(f'{l["result"]["loss_ratio"] * 100:.2f}% lost in the latency trial at {l["fraction"] * 100:.0f}% NDR')
print("\t".join([f"{ndr / 1e6:.3f}", f"{gbps:.2f}", pct, f"{pdr / 1e6:.3f}", p,
                 r.get("generator", {}).get("driver", "?"), r.get("sink_driver", "?"),
                 "; ".join(notes) or "-", str(received), str(round(ndr))]))
PY
        )
        IFS=$'\t' read -r ndr gbps pct pdr lat gdrv sdrv bound received ndr_pps <<<"$row"
        ROWS+=("$size|$n|$ndr|$gbps|$pct|$pdr|$lat|$bound|$port_modes|$gdrv|$sdrv")
        if ((received == 0)); then
            FAILED+=("$scenario: no frame arrived at the sink")
        elif ((ndr_pps == 0)); then
            FAILED+=("$scenario: NDR is 0 (loss even at the lowest rate)")
        fi
    done
    stop_vswitchd
done

# ---------------------------------------------------------------- report

if ls "$OUT"/*.json >/dev/null 2>&1; then
    if ! "$BENCH" report "$OUT" --markdown "$OUT/report.md" --svg-dir "$OUT/svg" --svg-link svg --baseline vswitch \
        >"$OUT/logs/report.log" 2>&1; then
        cat "$OUT/logs/report.log" >&2
        FAILED+=("vswitch-bench report failed")
    fi
fi
[[ -s $OUT/report.md ]] || FAILED+=("no report ($OUT/report.md)")

{
    echo "# vswitch between two NIC ports: NDR per frame size and worker count"
    echo
    echo "$T0 → $P0 [vswitch] $P1 → $T1, one UDP flow, unidirectional."
    echo "Line rate: $(fmt_speed "$LINE_MBPS"). Gbit/s on the wire: (size + 20) × 8 × pps (IMIX: mean $IMIX_MEAN B)."
    echo "Search: trial ${TRIAL} s, precision ${PRECISION} %, median of $REPEATS; PDR loss ≤ 0.5 %."
    echo "Generator CPU $GEN_CORE, sink CPU $SINK_CORE, switch CPUs ${SWITCH_CPUS[*]}, poll $POLL."
    echo
    echo "| size (B) | workers | NDR (Mpps) | NDR (Gbit/s L1) | % of line rate | PDR (Mpps) | p50/p99 @90% NDR (µs) | note | DUT ports (mode, worker) | tester (gen / sink) |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for r in "${ROWS[@]}"; do
        IFS='|' read -r size n ndr gbps pct pdr lat bound modes gdrv sdrv <<<"$r"
        [[ $bound == - ]] && bound=""
        echo "| $size | $n | $ndr | $gbps | $pct | $pdr | $lat | $bound | $modes | $gdrv / $sdrv |"
    done
    echo
    echo "Ports:"
    echo
    for p in "$P0" "$P1" "$T0" "$T1"; do
        echo "- \`$p\`: driver ${DRIVER[$p]}, speed $(fmt_speed "${SPEED_MBPS[$p]}"), NUMA node ${NUMA[$p]}, channels: ${CHAN[$p]}, flow control: ${PAUSE[$p]}, IRQs (before): ${IRQ_DESC[$p]}${TRIED[$p]:+; XDP attach: ${TRIED[$p]}}"
    done
} >"$OUT/summary.md"

echo
printf '%-6s %-7s %10s %10s %7s %10s %14s  %s\n' SIZE WORKERS "NDR Mpps" "Gbit/s L1" "% LINE" "PDR Mpps" "p50/p99@90%" "NOTE"
for r in "${ROWS[@]}"; do
    IFS='|' read -r size n ndr gbps pct pdr lat bound _ <<<"$r"
    [[ $bound == - ]] && bound=""
    printf '%-6s %-7s %10s %10s %7s %10s %14s  %s\n' "$size" "$n" "$ndr" "$gbps" "$pct" "$pdr" "$lat" "$bound"
done
echo
log "DUT ports: $P0 ${PORT_MODE[$P0]:-?}, $P1 ${PORT_MODE[$P1]:-?} ($(fmt_speed "$LINE_MBPS") line rate)"
log "results: $OUT (summary.md, report.md, one JSON per size and worker count, stats/, logs/, host.txt)"

if ((${#FAILED[@]} > 0)); then
    for f in "${FAILED[@]}"; do log "FAILED: $f"; done
    exit 1
fi
if ((CHECK)); then
    log "check passed: ${#ROWS[@]} searches, report written$([[ $OUT == "$TMP"/* ]] && echo " (to a temporary directory, removed now)")"
fi
