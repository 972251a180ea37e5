#!/usr/bin/env bash
# A/B: TCP through vswitch, pods with TX checksum offload on/off, old vs new binary.
# KINDS: afxdp (veth pod to veth pod), tap (veth pod to TAP pod), tap2afxdp
# (TAP pod to veth pod); VARIANTS: e.g. "old:on new:on" (default: all four).
set -u
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
RUN=/tmp/abrun; mkdir -p $RUN
declare -A BIN=([old]=${OLD:-/tmp/old-target/release} [new]=$REPO/target/release)
out=/tmp/ab-results.txt; : > $out
one() { # bin offload kind(afxdp|tap)
  local b=$1 off=$2 kind=$3
  rm -f $RUN/state.json $RUN/s.sock
  ${BIN[$b]}/vswitchd --socket $RUN/s.sock --state $RUN/state.json --cores 1 > $RUN/d.log 2>&1 &
  local pid=$!
  for _ in $(seq 50); do [[ -S $RUN/s.sock ]] && break; sleep 0.1; done
  export VSWITCHCTL=${BIN[$b]}/vswitchctl VSWITCH_SOCKET=$RUN/s.sock
  local ta=() t=()
  [[ $kind == tap2afxdp ]] && ta=(--tap)
  [[ $kind == tap ]] && t=(--tap)
  $REPO/scripts/pod.sh add aba --ip 10.55.0.1/24 "${ta[@]}" >/dev/null
  $REPO/scripts/pod.sh add abb --ip 10.55.0.2/24 "${t[@]}" >/dev/null
  if [[ $off == off ]]; then
    ip netns exec aba ethtool -K eth0 tx off >/dev/null
    [[ $kind == afxdp ]] && ip netns exec abb ethtool -K eth0 tx off >/dev/null
  fi
  ip netns exec aba ping -c 2 -q 10.55.0.2 >/dev/null
  ip netns exec abb taskset -c 0 iperf3 -s -1 -D >/dev/null; sleep 0.5
  local g
  g=$(ip netns exec aba taskset -c 0 iperf3 -c 10.55.0.2 -t $SECS -J 2>/dev/null | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))')
  local tc; tc=$(${BIN[$b]}/vswitchctl --socket $RUN/s.sock -o json port list 2>/dev/null | python3 -c 'import json,sys; print(",".join(str(p.get("tx_checksum","-")) for p in json.load(sys.stdin)))')
  echo "$kind $b offload-$off $g tx_checksum=$tc" | tee -a $out
  $REPO/scripts/pod.sh del aba >/dev/null 2>&1; $REPO/scripts/pod.sh del abb >/dev/null 2>&1
  kill $pid; wait $pid 2>/dev/null
}
for r in $(seq $ROUNDS); do
  for kind in ${KINDS:-afxdp tap}; do
    for v in ${VARIANTS:-old:on new:on new:off old:off}; do one ${v%:*} ${v#*:} $kind; done
  done
done
