#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ (nightly, AddressSanitizer) over
# their corpus in fuzz/corpus/TARGET, which the runs grow.
#
#   scripts/fuzz.sh [--secs N | --runs N] [TARGET...]
#
# Targets: pipeline (every port role through the whole pipeline), wire
# (the frame views, the trace description, the filter language), vnet_hdr
# (the TAP's virtio-net header), control (requests applied to the
# configuration model, the state file), batch (vswitchctl batch files,
# parsed as vswitchctl parses them, applied to the model). Default: every
# target for 20 s each, the time-boxed pass the test command
# (scripts/test.sh) runs.
# A crash fails the run and leaves its input in fuzz/artifacts/TARGET/
# (reproduce: cd fuzz && cargo +nightly fuzz run -O TARGET FILE); make it a
# regression test and keep the input in fuzz/regressions/TARGET/, which
# every run reads too.
set -euo pipefail

self=$(realpath "${BASH_SOURCE[0]}")
cd "$(dirname "$self")/../fuzz"
limit=(-max_total_time=20)
targets=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --secs|--runs)
            [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || { echo "fuzz.sh: $1 needs a number" >&2; exit 2; }
            if [[ $1 == --secs ]]; then limit=(-max_total_time="$2"); else limit=(-runs="$2"); fi
            shift 2 ;;
        -h|--help) sed -n '2,17p' "$self" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=(pipeline wire vnet_hdr control batch)
for t in "${targets[@]}"; do
    [[ -f fuzz_targets/$t.rs ]] || {
        echo "fuzz.sh: no target '$t' (there are: $(cd fuzz_targets && ls *.rs | sed 's/\.rs$//' | tr '\n' ' '))" >&2
        exit 2
    }
done

cargo +nightly fuzz build -O
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    printf '==> fuzz %s (%s)\n' "$t" "${limit[*]}"
    rc=0
    # Inputs of bugs found earlier run first, every time (regressions/).
    dirs=("corpus/$t")
    [[ -d regressions/$t ]] && dirs+=("regressions/$t")
    cargo +nightly fuzz run -O "$t" "${dirs[@]}" -- "${limit[@]}" -print_final_stats=1 \
        -close_fd_mask=3 >"$log" 2>&1 || rc=$?
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$log" || true
    if [[ $rc -ne 0 ]]; then
        grep -E -A 20 'panicked|ERROR|SUMMARY' "$log" | head -60 >&2 || tail -40 "$log" >&2
        echo "fuzz.sh: $t failed (exit $rc); its input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
done
