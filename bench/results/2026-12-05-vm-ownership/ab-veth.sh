#!/bin/bash
for r in 1 2 3 4 5 6; do
  for v in old new; do
    if [ $v = old ]; then S=/tmp/old/scripts/bench-veth.sh; else S=/work/main/scripts/bench-veth.sh; fi
    $S --quick --no-build --no-doc --peers vswitch-afxdp,vswitch-tap --scenarios l2-64b,routed-64b --rounds 1 --out /tmp/ab/veth-$v-$r > /tmp/ab/veth-$v-$r.log 2>&1
    for f in /tmp/ab/veth-$v-$r/*.json; do
      python3 -c "
import json,sys
d=json.load(open('$f'))
r=d.get('results') or d
print('$v', $r, d.get('scenario'), d.get('peer'), json.dumps(d.get('result', d.get('ndr', '')))[:200])
" 2>/dev/null
    done
  done
done
echo DONE
