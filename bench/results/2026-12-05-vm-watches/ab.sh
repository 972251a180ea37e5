#!/usr/bin/env bash
# Alternates the builds before (old) and after (new) the watches, 5 rounds.
cd /tmp/ab
for r in 1 2 3 4 5; do
  for b in old new; do
    for t in "l2 l2/known_unicast_64B$" "l3 l3/routed_64B_one_pod$" "service service/established$"; do
      set -- $t
      out=$(taskset -c 1 ./$1-$b --bench --warm-up-time 1 --measurement-time 3 --noplot "$2" 2>/dev/null | grep -A2 "^$2\|thrpt" | grep thrpt | head -1)
      echo "round $r $b $2 $out"
    done
  done
done
