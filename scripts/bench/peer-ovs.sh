# shellcheck shell=bash
# peer-ovs.sh: Open vSwitch (userspace "netdev" datapath, AF_XDP ports) as a
# peer switch for the benchmarks. A library: source it, don't run it.
#
#   source scripts/bench/peer-ovs.sh
#   ovs_check                                  # 0 if OVS + AF_XDP can run here
#   ovs_up RUNDIR PMD_CPU PORT...              # private OVS, bridge vsbench-ovs
#   ovs_port_modes                             # "PORT MODE" lines (stdout)
#   ovs_arp_responder ROUTER_MAC GW_IP         # optional: answer ARP for GW_IP
#   ovs_route ROUTER_MAC DST_CIDR DST_PORT DST_MAC   # optional: one route
#   ovs_stats_clear                            # zero PMD stats before a run
#   ovs_stats                                  # PMD stats + port drops (stdout)
#   ovs_down RUNDIR                            # stop, detach XDP; idempotent
#
# Every function is safe under `set -euo pipefail`, writes its messages to
# stderr prefixed "peer-ovs:", and on failure prints one "peer-ovs: error: ..."
# line and returns non-zero (it never exits the caller).
#
# What ovs_up builds
#   - its own ovsdb-server and ovs-vswitchd, everything in RUNDIR (database
#     conf.db, db.sock, pidfiles, unixctl sockets ovs-vswitchd.PID.ctl and
#     ovsdb-server.ctl, logs ovs*.log, the bridge's vsbench-ovs.mgmt/.snoop,
#     and our notes: ports, port-modes, xdp-progs). The system's OVS
#     (/etc/openvswitch, /var/run/openvswitch, the init script) is never
#     used: every OVS command runs with OVS_RUNDIR=OVS_DBDIR=OVS_LOGDIR=
#     OVS_SYSCONFDIR=RUNDIR, which is where ovs-vsctl/ovs-appctl/ovs-ofctl
#     look for db.sock, the pidfiles and BRIDGE.mgmt. Keep RUNDIR short
#     (unix socket paths are limited to 107 bytes).
#   - one bridge vsbench-ovs, datapath_type=netdev, fail_mode=secure, with a
#     single flow of our own: priority=0 actions=NORMAL (L2 learning).
#   - each PORT (an existing interface in this namespace, e.g. the host end
#     of a pod's veth) added as type=afxdp, options:xdp-mode=native; if OVS
#     reports an error for native mode the port is re-added with best-effort
#     (native-with-zerocopy, then native, then generic). OVS_XDP_MODE=MODE
#     forces a mode. The mode the port really got (OVS's xdp-mode-in-use) is
#     printed and kept in RUNDIR/port-modes.
#   - PMD (busy-polling) thread only on PMD_CPU (other_config:pmd-cpu-mask).
#     OVS has no knob for its other threads (main, handler, revalidator,
#     urcu) with AF_XDP (dpdk-lcore-mask is DPDK only), so ovs-vswitchd is
#     started under `taskset` with every allowed CPU except PMD_CPU (or
#     OVS_NONPMD_CPUS=LIST); the PMD thread pins itself to PMD_CPU anyway.
#     Note the PMD thread spins at 100% of PMD_CPU as long as OVS runs.
#   - ovs_up returns once every port has an ofport, no error, an XDP
#     program attached and its rx queue assigned to the PMD.
#
# Routing (optional, OVN-like, OpenFlow 1.3 flows; NORMAL stays lowest):
#   ovs_arp_responder RMAC GW  priority 2000: an ARP request for GW is turned
#                               into the reply "GW is-at RMAC" and sent back
#                               out of in_port (move/load, as OVN does).
#   ovs_route RMAC CIDR PORT DMAC  priority 1000+prefixlen: IPv4 to eth_dst
#                               RMAC and ip_dst in CIDR: eth_src:=RMAC,
#                               eth_dst:=DMAC, dec_ttl, output PORT. Call it
#                               once per destination pod (CIDR X.Y.Z.W/32 or a
#                               bare IP) or once per subnet behind one port.
#   Example (pods a,b on 10.244.1.0/24 via 10.244.1.1, c on 10.244.2.0/24):
#     ovs_arp_responder 02:00:0a:f4:00:01 10.244.1.1
#     ovs_arp_responder 02:00:0a:f4:00:01 10.244.2.1
#     ovs_route 02:00:0a:f4:00:01 10.244.2.13 ovt-c 02:00:0a:f4:02:0d
#     ovs_route 02:00:0a:f4:00:01 10.244.1.11 ovt-a 02:00:0a:f4:01:0b
#     ovs_route 02:00:0a:f4:00:01 10.244.1.12 ovt-b 02:00:0a:f4:01:0c
#   ping a -> c then shows ttl=63.
#
# ovs_route, ovs_arp_responder, ovs_port_modes, ovs_stats(_clear) act on the
# instance of the last ovs_up in this shell (OVS_BENCH_RUNDIR; set it
# yourself to reach an instance started by another shell).
#
# ovs_down RUNDIR: `ovs-appctl exit --cleanup` (then SIGTERM, SIGKILL),
# stops ovsdb-server, detaches the XDP programs OVS left on its ports (only
# those whose id ovs_up recorded in RUNDIR/xdp-progs: libxdp names both
# OVS's and vswitch's program xsk_def_prog, so the name proves nothing),
# removes the pidfiles and sockets (logs and conf.db stay in
# RUNDIR for post-mortem) and /sys/fs/bpf/xdp if ovs_up created it and it
# is empty. Never fails when nothing runs.
#
# What we learned (Debian 12, OVS 3.1.0-2+deb12u1, kernel 6.18, veth):
#   - Debian's ovs-vswitchd IS built with AF_XDP (linked to libxdp + libbpf;
#     "afxdp" is in Open_vSwitch:iface_types); no rebuild needed. No kernel
#     openvswitch module is needed for the netdev datapath (the "dpif_netlink
#     ... module is probably not loaded" and "failed to enumerate system
#     datapaths" log lines are harmless).
#   - veth gets xdp-mode-in-use=native (driver XDP, copy mode: veth has no
#     zero-copy, so best-effort also lands on native). `ip link` shows "xdp"
#     (native) or "xdpgeneric" and prog name xsk_def_prog.
#   - No extra options needed: n_rxq=1 and use-need-wakeup=true (defaults)
#     work. The pods' eth0 need `ethtool -K eth0 tx off` (no checksum
#     offload across AF_XDP; this also turns TSO off).
#   - Harmless log noise when running as root without CAP_SYS_RESOURCE:
#     "setrlimit(RLIMIT_MEMLOCK) failed: Operation not permitted" and libxdp's
#     "failed to load object xdp-dispatcher.o" (EPERM): libxdp then falls
#     back to attaching its single xsk_def_prog, which works.
#   - OVS removes ANY XDP program already on a port when it adds it, so
#     ovs_up refuses a port that already has one (e.g. vswitch's own).
#   - The netdev datapath creates a TAP "ovs-netdev" (and one per bridge,
#     here "vsbench-ovs") in the root namespace: two ovs-vswitchd with the
#     netdev datapath would clash, hence ovs_check refuses to run beside a
#     foreign ovs-vswitchd.
#   - OVS's daemons, once detached, are reparented to PID 1; on this VM they
#     may linger as zombies for a moment after exiting: liveness checks here
#     read /proc/PID/stat and treat zombies as gone.
#   - An XDP program OVS attached stays on the port if ovs-vswitchd dies
#     (SIGKILL): ovs_down detaches it. With `exit --cleanup` OVS removes it.
#   - ovs_stats: count packets with pmd-stats-show ("packets received"); the
#     rx/tx counters of afxdp ports in dump-ports / Interface:statistics
#     mix the veth's kernel counters with OVS's and came out 2-3x higher.
#     "rx_dropped" there is the kernel dropping frames the xsk rx ring had no
#     room for (PMD behind); "xsk_queue_0_rx_dropped" is the socket's count.
#   - Sanity number: iperf3 TCP (1 stream, 3 s) pod -> pod through one PMD
#     on a shared 2-vCPU VM (PMD on CPU 1, iperf3 wherever): 3.3-4.7 Gbit/s,
#     100-700 retransmits, rx_dropped ~700 on the sender's port.

OVS_BENCH_BRIDGE=${OVS_BENCH_BRIDGE:-vsbench-ovs}
OVS_BENCH_RUNDIR=${OVS_BENCH_RUNDIR:-}
OVS_BENCH_SCHEMA=${OVS_BENCH_SCHEMA:-/usr/share/openvswitch/vswitch.ovsschema}

_ovs_msg() { echo "peer-ovs: $*" >&2; }
_ovs_err() { echo "peer-ovs: error: $*" >&2; return 1; }

# Run an OVS tool against the instance in RUNDIR ($1).
_ovs_in() {
    local rd=$1
    shift
    OVS_RUNDIR=$rd OVS_DBDIR=$rd OVS_LOGDIR=$rd OVS_SYSCONFDIR=$rd "$@"
}

# The instance of the last ovs_up (or OVS_BENCH_RUNDIR); error if none.
_ovs_rundir() {
    if [[ -z ${OVS_BENCH_RUNDIR:-} ]]; then
        _ovs_err "no OVS instance: call ovs_up first (or set OVS_BENCH_RUNDIR)"
        return 1
    fi
    echo "$OVS_BENCH_RUNDIR"
}

_ovs_vsctl() { local rd=$1; shift; _ovs_in "$rd" ovs-vsctl --timeout=20 --db="unix:$rd/db.sock" "$@"; }
_ovs_ofctl() { local rd=$1; shift; _ovs_in "$rd" ovs-ofctl --timeout=10 -O OpenFlow13 "$@"; }
_ovs_appctl() {
    local rd=$1 pid
    shift
    pid=$(_ovs_pidof "$rd" ovs-vswitchd) || { _ovs_err "ovs-vswitchd is not running in $rd"; return 1; }
    _ovs_in "$rd" ovs-appctl --timeout=10 --target="$rd/ovs-vswitchd.$pid.ctl" "$@"
}

# A process that exists and is not a zombie.
_ovs_alive() {
    local pid=$1 stat
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# PID of PROG ($2) started for RUNDIR ($1), if it still runs (checked
# against its command line, so a recycled pid is not taken for it).
_ovs_pidof() {
    local rd=$1 prog=$2 pid cmd
    [[ -r $rd/$prog.pid ]] || return 1
    pid=$(<"$rd/$prog.pid") || return 1
    _ovs_alive "$pid" || return 1
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmd == *"$prog"* && $cmd == *"$rd"* ]] || return 1
    echo "$pid"
}

# PIDs of running ovs-vswitchd processes that are not the one in RUNDIR ($1,
# may be empty).
_ovs_foreign_vswitchd() {
    local rd=${1:-} own="" p comm out=""
    if [[ -n $rd ]]; then own=$(_ovs_pidof "$rd" ovs-vswitchd || true); fi
    for p in /proc/[0-9]*; do
        comm=$(cat "$p/comm" 2>/dev/null) || continue
        [[ $comm == ovs-vswitchd ]] || continue
        _ovs_alive "${p#/proc/}" || continue
        [[ ${p#/proc/} == "$own" ]] && continue
        out+="${p#/proc/} "
    done
    echo "${out% }"
}

# "ID NAME MODE" of the XDP program on interface $1 (MODE is the attach
# flag `ip link` shows: xdp = native, xdpgeneric, xdpoffload, xdpmulti), or
# nothing.
_ovs_xdp_prog() {
    local out
    out=$(ip -details link show dev "$1" 2>/dev/null) || return 0
    # "8: ovt-a@if2: <...> mtu 1500 xdp qdisc ..." then
    # "    prog/xdp id 115 name xsk_def_prog tag ... jited"
    awk 'NR == 1 { for (i = 1; i < NF; i++) if ($i == "mtu") mode = $(i + 2) }
         $1 ~ /^prog\/xdp/ && !done { print $3, $5, mode; done = 1 }' <<<"$out"
}

# Hex pmd-cpu-mask for CPU number $1 (any size, no 64-bit overflow).
_ovs_cpu_mask() {
    local n=$1 zeros=""
    local i
    for ((i = 0; i < n / 4; i++)); do zeros+=0; done
    printf '%x%s' $((1 << (n % 4))) "$zeros"
}

# CPUs this shell may run on, as a list of numbers.
_ovs_allowed_cpus() {
    local list part a b c
    list=$(taskset -pc $$ 2>/dev/null | sed 's/.*: //') || list=""
    [[ -n $list ]] || list=$(cat /sys/devices/system/cpu/online)
    IFS=, read -ra part <<<"$list"
    for c in "${part[@]}"; do
        if [[ $c == *-* ]]; then
            a=${c%-*} b=${c#*-}
            seq "$a" "$b"
        else
            echo "$c"
        fi
    done
}

_ovs_valid_mac() { [[ $1 =~ ^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$ ]]; }
_ovs_valid_ip() {
    local o
    [[ $1 =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}$ ]] || return 1
    for o in ${1//./ }; do ((10#$o <= 255)) || return 1; done
}

# ovs_check [RUNDIR]: can OVS with AF_XDP run here?
ovs_check() {
    local b missing="" foreign kconf
    for b in ovsdb-tool ovsdb-server ovs-vswitchd ovs-vsctl ovs-appctl ovs-ofctl ip taskset; do
        command -v "$b" >/dev/null 2>&1 || missing+=" $b"
    done
    if [[ -n $missing ]]; then
        _ovs_err "missing:$missing (apt-get install -y --no-install-recommends openvswitch-switch iproute2 util-linux)"
        return 1
    fi
    [[ -r $OVS_BENCH_SCHEMA ]] || { _ovs_err "no OVS schema at $OVS_BENCH_SCHEMA"; return 1; }
    [[ $EUID -eq 0 ]] || { _ovs_err "must run as root (AF_XDP, XDP programs)"; return 1; }
    # AF_XDP support is compiled in if the binary carries netdev-afxdp's
    # strings; ovs_up checks Open_vSwitch:iface_types at run time too.
    if ! LC_ALL=C grep -qaF 'xdp-mode-in-use' "$(command -v ovs-vswitchd)"; then
        _ovs_err "this ovs-vswitchd ($(ovs-vswitchd --version 2>/dev/null | head -n1)) was built without AF_XDP support"
        return 1
    fi
    if [[ -r /proc/config.gz ]]; then
        kconf=$(zcat /proc/config.gz 2>/dev/null || true)
        if [[ -n $kconf && $kconf != *$'\n'CONFIG_XDP_SOCKETS=y* ]]; then
            _ovs_err "kernel built without CONFIG_XDP_SOCKETS"
            return 1
        fi
    fi
    foreign=$(_ovs_foreign_vswitchd "${1:-${OVS_BENCH_RUNDIR:-}}")
    if [[ -n $foreign ]]; then
        _ovs_err "a foreign ovs-vswitchd is running (pid $foreign; system service? try /etc/init.d/openvswitch-switch stop)"
        return 1
    fi
    return 0
}

# Mode an afxdp port is using ("native", "generic", ...), from dpctl/show.
_ovs_port_mode_in_use() {
    local rd=$1 port=$2 out
    out=$(_ovs_appctl "$rd" dpctl/show 2>/dev/null) || return 0
    sed -n "/: $port (afxdp:/{s/.*xdp-mode-in-use=\([a-z-]*\).*/\1/p;q}" <<<"$out"
}

# Wait until PORT ($2) in RUNDIR ($1) has an ofport, an XDP mode in use and
# an rx queue on a PMD. Returns 1 at once on an OVS error (message on
# stdout), 2 on time-out.
_ovs_wait_port() {
    local rd=$1 port=$2 i err ofport mode rxq
    for ((i = 0; i < 100; i++)); do
        err=$(_ovs_vsctl "$rd" --if-exists get Interface "$port" error 2>/dev/null || true)
        if [[ -n $err && $err != "[]" ]]; then
            echo "$err"
            return 1
        fi
        ofport=$(_ovs_vsctl "$rd" --if-exists get Interface "$port" ofport 2>/dev/null || true)
        mode=$(_ovs_port_mode_in_use "$rd" "$port")
        rxq=$(_ovs_appctl "$rd" dpif-netdev/pmd-rxq-show 2>/dev/null || true)
        if [[ $ofport =~ ^[0-9]+$ && $ofport -gt 0 && -n $mode ]] &&
            grep -q "port: $port " <<<"$rxq"; then
            return 0
        fi
        sleep 0.1
    done
    return 2
}

# ovs_up RUNDIR PMD_CPU PORT...
ovs_up() {
    if [[ $# -lt 3 ]]; then
        _ovs_err "usage: ovs_up RUNDIR PMD_CPU PORT..."
        return 2
    fi
    local rd=$1 pmd_cpu=$2
    shift 2
    local ports=("$@") p prog foreign nonpmd="" mask cpus c mode err rc pid i types line
    local br=$OVS_BENCH_BRIDGE

    [[ $rd == /* ]] || rd=$PWD/$rd
    if ((${#rd} > 80)); then
        _ovs_err "RUNDIR too long for unix sockets (${#rd} > 80 chars): $rd"
        return 1
    fi
    [[ $pmd_cpu =~ ^[0-9]+$ ]] || { _ovs_err "PMD_CPU must be a CPU number, got '$pmd_cpu'"; return 1; }
    [[ $(cat "/sys/devices/system/cpu/cpu$pmd_cpu/online" 2>/dev/null || echo 1) == 1 && -d /sys/devices/system/cpu/cpu$pmd_cpu ]] ||
        { _ovs_err "CPU $pmd_cpu does not exist or is offline"; return 1; }
    ovs_check "$rd" || return 1

    # An instance of ours still running in RUNDIR: restart from scratch.
    if _ovs_pidof "$rd" ovs-vswitchd >/dev/null || _ovs_pidof "$rd" ovsdb-server >/dev/null; then
        _ovs_msg "an earlier instance runs in $rd: stopping it first"
        ovs_down "$rd" || return 1
    fi
    foreign=$(_ovs_foreign_vswitchd "$rd")
    [[ -z $foreign ]] || { _ovs_err "a foreign ovs-vswitchd is running (pid $foreign)"; return 1; }

    for p in "${ports[@]}"; do
        ip link show dev "$p" >/dev/null 2>&1 || { _ovs_err "port $p: no such interface"; return 1; }
        prog=$(_ovs_xdp_prog "$p")
        if [[ -n $prog ]]; then
            _ovs_err "port $p already has an XDP program ($prog): another switch attached? (OVS would remove it)"
            return 1
        fi
    done

    mkdir -p "$rd" || { _ovs_err "cannot create $rd"; return 1; }
    rm -f "$rd"/conf.db "$rd"/.conf.db.~lock~ "$rd"/*.pid "$rd"/*.ctl "$rd"/db.sock "$rd"/*.mgmt "$rd"/*.snoop \
        "$rd"/ports "$rd"/port-modes "$rd"/xdp-progs "$rd"/created-bpffs-xdp
    printf '%s\n' "${ports[@]}" >"$rd/ports"
    # libxdp creates /sys/fs/bpf/xdp (its lock/pin dir); ovs_down removes it
    # again if we were the ones creating it.
    if [[ -d /sys/fs/bpf && ! -e /sys/fs/bpf/xdp ]]; then
        : >"$rd/created-bpffs-xdp"
    fi

    OVS_BENCH_RUNDIR=$rd

    _ovs_in "$rd" ovsdb-tool create "$rd/conf.db" "$OVS_BENCH_SCHEMA" ||
        { _ovs_err "ovsdb-tool create $rd/conf.db failed"; return 1; }
    _ovs_in "$rd" ovsdb-server "$rd/conf.db" --remote="punix:$rd/db.sock" \
        --pidfile="$rd/ovsdb-server.pid" --detach -vconsole:off --log-file="$rd/ovsdb-server.log" \
        --unixctl="$rd/ovsdb-server.ctl" ||
        { _ovs_err "ovsdb-server failed to start (see $rd/ovsdb-server.log)"; return 1; }
    _ovs_vsctl "$rd" --no-wait init || { _ovs_err "ovs-vsctl init failed"; ovs_down "$rd"; return 1; }
    mask=$(_ovs_cpu_mask "$pmd_cpu")
    _ovs_vsctl "$rd" --no-wait set Open_vSwitch . other_config:pmd-cpu-mask="$mask" ||
        { _ovs_err "setting pmd-cpu-mask failed"; ovs_down "$rd"; return 1; }

    # Non-PMD threads: every allowed CPU but the PMD's.
    if [[ -n ${OVS_NONPMD_CPUS:-} ]]; then
        nonpmd=$OVS_NONPMD_CPUS
    else
        cpus=$(_ovs_allowed_cpus)
        for c in $cpus; do
            [[ $c == "$pmd_cpu" ]] || nonpmd+="${nonpmd:+,}$c"
        done
        [[ -n $nonpmd ]] || _ovs_msg "no CPU left for non-PMD threads: they share CPU $pmd_cpu"
    fi
    if [[ -n $nonpmd ]]; then
        _ovs_in "$rd" taskset -c "$nonpmd" ovs-vswitchd "unix:$rd/db.sock" --pidfile="$rd/ovs-vswitchd.pid" \
            --detach -vconsole:off --log-file="$rd/ovs-vswitchd.log"
    else
        _ovs_in "$rd" ovs-vswitchd "unix:$rd/db.sock" --pidfile="$rd/ovs-vswitchd.pid" \
            --detach -vconsole:off --log-file="$rd/ovs-vswitchd.log"
    fi || { _ovs_err "ovs-vswitchd failed to start (see $rd/ovs-vswitchd.log)"; ovs_down "$rd"; return 1; }
    pid=$(_ovs_pidof "$rd" ovs-vswitchd) || { _ovs_err "ovs-vswitchd died at start (see $rd/ovs-vswitchd.log)"; ovs_down "$rd"; return 1; }

    types=$(_ovs_vsctl "$rd" get Open_vSwitch . iface_types 2>/dev/null || true)
    if [[ $types != *afxdp* ]]; then
        _ovs_err "ovs-vswitchd reports no afxdp interface type (iface_types=$types)"
        ovs_down "$rd"
        return 1
    fi

    _ovs_vsctl "$rd" add-br "$br" -- set Bridge "$br" datapath_type=netdev fail_mode=secure \
        protocols=OpenFlow10,OpenFlow13 other_config:disable-in-band=true ||
        { _ovs_err "creating bridge $br failed"; ovs_down "$rd"; return 1; }
    _ovs_ofctl "$rd" add-flow "$br" "priority=0,actions=NORMAL" ||
        { _ovs_err "adding the NORMAL flow failed"; ovs_down "$rd"; return 1; }

    : >"$rd/port-modes"
    for p in "${ports[@]}"; do
        ip link set dev "$p" up 2>/dev/null || true
        mode=${OVS_XDP_MODE:-native}
        # (an unsupported mode is reported below, from Interface:error)
        _ovs_vsctl "$rd" add-port "$br" "$p" -- set Interface "$p" type=afxdp options:xdp-mode="$mode" 2>/dev/null ||
            { _ovs_err "adding port $p failed"; ovs_down "$rd"; return 1; }
        rc=0
        err=$(_ovs_wait_port "$rd" "$p") || rc=$?
        if [[ $rc -ne 0 && -z ${OVS_XDP_MODE:-} ]]; then
            _ovs_msg "port $p: xdp-mode=native failed (${err:-timeout}); retrying with best-effort"
            _ovs_vsctl "$rd" del-port "$br" "$p" 2>/dev/null || true
            _ovs_vsctl "$rd" add-port "$br" "$p" -- set Interface "$p" type=afxdp options:xdp-mode=best-effort ||
                { _ovs_err "adding port $p failed"; ovs_down "$rd"; return 1; }
            rc=0
            err=$(_ovs_wait_port "$rd" "$p") || rc=$?
        fi
        if [[ $rc -ne 0 ]]; then
            _ovs_err "port $p did not come up: ${err:-timeout} (see $rd/ovs-vswitchd.log)"
            ovs_down "$rd"
            return 1
        fi
        mode=$(_ovs_port_mode_in_use "$rd" "$p")
        prog=$(_ovs_xdp_prog "$p")
        if [[ -z $prog ]]; then
            _ovs_err "port $p: OVS reports mode $mode but no XDP program is attached"
            ovs_down "$rd"
            return 1
        fi
        echo "$p $mode" >>"$rd/port-modes"
        echo "$p ${prog%% *}" >>"$rd/xdp-progs"
        read -r c line _ <<<"$prog"
        _ovs_msg "port $p: afxdp, xdp-mode-in-use=$mode (ip link: ${prog##* }, prog $line id $c)"
    done

    # Forwarding needs the datapath to see the ports as up.
    for ((i = 0; i < 50; i++)); do
        line=$(_ovs_vsctl "$rd" --bare --columns=link_state find Interface type=afxdp 2>/dev/null || true)
        [[ $line != *down* ]] && break
        sleep 0.1
    done
    [[ $line != *down* ]] || _ovs_msg "warning: some afxdp ports report link_state down"
    line=$(ovs-vswitchd --version 2>/dev/null || true)
    line=${line%%$'\n'*}
    _ovs_msg "up: OVS ${line##* }, bridge $br, PMD on CPU $pmd_cpu (mask 0x$mask)," \
        "other threads on CPUs ${nonpmd:-$pmd_cpu}, rundir $rd"
    return 0
}

# ovs_port_modes: "PORT MODE" per afxdp port of the current instance.
ovs_port_modes() {
    local rd
    rd=$(_ovs_rundir) || return 1
    [[ -r $rd/port-modes ]] || { _ovs_err "no port modes recorded in $rd"; return 1; }
    cat "$rd/port-modes"
}

_ovs_ofport() {
    local rd=$1 port=$2 ofport
    ofport=$(_ovs_vsctl "$rd" --if-exists get Interface "$port" ofport 2>/dev/null || true)
    if ! [[ $ofport =~ ^[0-9]+$ && $ofport -gt 0 ]]; then
        _ovs_err "port $port is not on bridge $OVS_BENCH_BRIDGE"
        return 1
    fi
    echo "$ofport"
}

_ovs_hex_mac() { echo "0x${1//:/}"; }
_ovs_hex_ip() {
    local a b c d
    IFS=. read -r a b c d <<<"$1"
    printf '0x%02x%02x%02x%02x' $((10#$a)) $((10#$b)) $((10#$c)) $((10#$d))
}

# ovs_arp_responder ROUTER_MAC GW_IP: answer ARP requests for GW_IP with
# ROUTER_MAC, out of the port they came in on.
ovs_arp_responder() {
    if [[ $# -ne 2 ]]; then
        _ovs_err "usage: ovs_arp_responder ROUTER_MAC GW_IP"
        return 2
    fi
    local rmac=$1 gw=$2 rd
    _ovs_valid_mac "$rmac" || { _ovs_err "bad MAC '$rmac'"; return 1; }
    _ovs_valid_ip "$gw" || { _ovs_err "bad IPv4 address '$gw'"; return 1; }
    rd=$(_ovs_rundir) || return 1
    _ovs_ofctl "$rd" add-flow "$OVS_BENCH_BRIDGE" \
        "priority=2000,arp,arp_op=1,arp_tpa=$gw,actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],mod_dl_src:$rmac,load:0x2->NXM_OF_ARP_OP[],move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],load:$(_ovs_hex_mac "$rmac")->NXM_NX_ARP_SHA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],load:$(_ovs_hex_ip "$gw")->NXM_OF_ARP_SPA[],IN_PORT" ||
        { _ovs_err "adding the ARP responder for $gw failed"; return 1; }
}

# ovs_route ROUTER_MAC DST_CIDR DST_PORT DST_MAC: IPv4 frames to ROUTER_MAC
# for DST_CIDR (a bare IP means /32) leave DST_PORT with eth_src ROUTER_MAC,
# eth_dst DST_MAC and TTL-1. Longer prefixes win.
ovs_route() {
    if [[ $# -ne 4 ]]; then
        _ovs_err "usage: ovs_route ROUTER_MAC DST_CIDR DST_PORT DST_MAC"
        return 2
    fi
    local rmac=$1 cidr=$2 port=$3 dmac=$4 rd ip len ofport
    _ovs_valid_mac "$rmac" || { _ovs_err "bad MAC '$rmac'"; return 1; }
    _ovs_valid_mac "$dmac" || { _ovs_err "bad MAC '$dmac'"; return 1; }
    ip=${cidr%/*}
    if [[ $cidr == */* ]]; then len=${cidr#*/}; else len=32; fi
    if ! _ovs_valid_ip "$ip" || ! [[ $len =~ ^[0-9]+$ ]] || ((len > 32)); then
        _ovs_err "bad destination '$cidr' (want A.B.C.D[/LEN])"
        return 1
    fi
    rd=$(_ovs_rundir) || return 1
    ofport=$(_ovs_ofport "$rd" "$port") || return 1
    _ovs_ofctl "$rd" add-flow "$OVS_BENCH_BRIDGE" \
        "priority=$((1000 + len)),ip,dl_dst=$rmac,nw_dst=$ip/$len,actions=mod_dl_src:$rmac,mod_dl_dst:$dmac,dec_ttl,output:$ofport" ||
        { _ovs_err "adding the route to $cidr via $port failed"; return 1; }
}

# ovs_flows: the OpenFlow table (debugging aid).
ovs_flows() {
    local rd
    rd=$(_ovs_rundir) || return 1
    _ovs_ofctl "$rd" dump-flows "$OVS_BENCH_BRIDGE"
}

# ovs_stats_clear: zero the PMD counters (call before a measurement).
ovs_stats_clear() {
    local rd
    rd=$(_ovs_rundir) || return 1
    _ovs_appctl "$rd" dpif-netdev/pmd-stats-clear >/dev/null ||
        { _ovs_err "pmd-stats-clear failed"; return 1; }
}

# ovs_stats: PMD stats, rx queue load, per-port counters and drops.
ovs_stats() {
    local rd out p
    rd=$(_ovs_rundir) || return 1
    out=$(_ovs_appctl "$rd" dpif-netdev/pmd-stats-show) || { _ovs_err "pmd-stats-show failed"; return 1; }
    echo "== ovs: dpif-netdev/pmd-stats-show"
    echo "$out"
    echo "== ovs: dpif-netdev/pmd-rxq-show"
    _ovs_appctl "$rd" dpif-netdev/pmd-rxq-show || true
    echo "== ovs: per-port counters (ovs-ofctl dump-ports)"
    _ovs_ofctl "$rd" dump-ports "$OVS_BENCH_BRIDGE" || true
    echo "== ovs: per-interface drop/error counters (Interface:statistics, AF_XDP ring stats)"
    if [[ -r $rd/ports ]]; then
        while read -r p; do
            out=$(_ovs_vsctl "$rd" --if-exists get Interface "$p" statistics 2>/dev/null || true)
            out=$(tr -d '{}' <<<"$out" | tr ',' '\n' | sed 's/^ *//' | grep -E 'drop|err|full|empty|fail' | tr '\n' ' ' || true)
            echo "$p: ${out:-(none)}"
        done <"$rd/ports"
    fi
    echo "== ovs: coverage (afxdp, drops)"
    out=$(_ovs_appctl "$rd" coverage/show 2>/dev/null || true)
    grep -E 'afxdp|drop' <<<"$out" || echo "(none)"
}

# Detach the XDP program OVS attached to interface $1 (id $2, recorded by
# ovs_up) if it is still there. Any other program is left alone: vswitch's
# own AF_XDP program has the same name (libxdp's xsk_def_prog).
_ovs_detach_xdp() {
    local p=$1 want=${2:-} prog id name
    prog=$(_ovs_xdp_prog "$p")
    [[ -n $prog ]] || return 0
    read -r id name _ <<<"$prog"
    if [[ $id != "$want" ]]; then
        _ovs_msg "port $p: leaving XDP program $name (id $id) alone: OVS attached id ${want:-?}" \
            "(if it is a leftover: ip link set dev $p xdp off)"
        return 0
    fi
    ip link set dev "$p" xdpgeneric off 2>/dev/null || true
    ip link set dev "$p" xdpdrv off 2>/dev/null || true
    ip link set dev "$p" xdp off 2>/dev/null || true
    prog=$(_ovs_xdp_prog "$p")
    if [[ -n $prog ]]; then
        _ovs_msg "warning: port $p still has XDP program $prog"
        return 1
    fi
    _ovs_msg "port $p: detached leftover XDP program $name (id $id)"
}

# Stop the process PROG ($2) of RUNDIR ($1): unixctl "exit ARGS" first,
# then SIGTERM, then SIGKILL.
_ovs_stop() {
    local rd=$1 prog=$2
    shift 2
    local pid i
    pid=$(_ovs_pidof "$rd" "$prog") || return 0
    if [[ $prog == ovs-vswitchd ]]; then
        _ovs_in "$rd" ovs-appctl --timeout=10 --target="$rd/ovs-vswitchd.$pid.ctl" exit "$@" >/dev/null 2>&1 || true
    else
        _ovs_in "$rd" ovs-appctl --timeout=5 --target="$rd/ovsdb-server.ctl" exit >/dev/null 2>&1 || true
    fi
    for ((i = 0; i < 100; i++)); do
        _ovs_alive "$pid" || return 0
        if ((i == 50)); then kill -TERM "$pid" 2>/dev/null || true; fi
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        _ovs_alive "$pid" || return 0
        sleep 0.1
    done
    _ovs_msg "warning: $prog (pid $pid) does not die"
    return 1
}

# ovs_down RUNDIR: stop everything ovs_up started in RUNDIR. Idempotent.
ovs_down() {
    if [[ $# -ne 1 ]]; then
        _ovs_err "usage: ovs_down RUNDIR"
        return 2
    fi
    local rd=$1 p id
    [[ $rd == /* ]] || rd=$PWD/$rd
    [[ -d $rd ]] || return 0
    local was=""
    if _ovs_pidof "$rd" ovs-vswitchd >/dev/null || _ovs_pidof "$rd" ovsdb-server >/dev/null; then was=1; fi
    _ovs_stop "$rd" ovs-vswitchd --cleanup || true
    _ovs_stop "$rd" ovsdb-server || true
    if [[ -r $rd/xdp-progs ]]; then
        while read -r p id; do
            if [[ -n $p ]] && ip link show dev "$p" >/dev/null 2>&1; then
                _ovs_detach_xdp "$p" "$id" || true
            fi
        done <"$rd/xdp-progs"
    fi
    # The datapath's TAPs vanish with the process; remove them if not.
    if ip link show dev "$OVS_BENCH_BRIDGE" >/dev/null 2>&1; then
        ip link del dev "$OVS_BENCH_BRIDGE" 2>/dev/null || true
    fi
    if [[ -z $(_ovs_foreign_vswitchd "") ]] && ip link show dev ovs-netdev >/dev/null 2>&1; then
        ip link del dev ovs-netdev 2>/dev/null || true
    fi
    if [[ -e $rd/created-bpffs-xdp ]]; then
        rmdir /sys/fs/bpf/xdp 2>/dev/null || true
        rm -f "$rd/created-bpffs-xdp"
    fi
    rm -f "$rd"/*.pid "$rd"/*.ctl "$rd"/db.sock "$rd"/*.mgmt "$rd"/*.snoop "$rd"/.conf.db.~lock~
    if [[ ${OVS_BENCH_RUNDIR:-} == "$rd" ]]; then OVS_BENCH_RUNDIR=""; fi
    if [[ -n $was ]]; then _ovs_msg "down: $rd"; fi
    return 0
}
