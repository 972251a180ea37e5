#!/bin/bash
cd /tmp/ab
for r in 1 2 3 4 5 6; do
  for v in old final; do
    for b in l2 l3; do
      if [ $b = l2 ]; then f='l2/known_unicast_64B$'; else f='l3/routed_64B_one_pod'; fi
      taskset -c 1 ./$b-$v --bench --warm-up-time 1 --measurement-time 3 --noplot "$f" 2>&1 | grep -E "time:" | grep -v "%" | sed "s/^/$v r$r $b /"
    done
  done
done
echo DONE
