#!/usr/bin/env bash
# The test command: installs what is missing, then checks formatting, lints
# and runs every test of the workspace in release mode.
#
# Run as root on Debian: scripts/test.sh
# The integration tests attach XDP programs and create network namespaces,
# so they need root (and AF_XDP, and two cores for a few): where something
# is missing they fail, saying what. VSWITCH_TESTS_MAY_SKIP=1 lets them
# skip instead; the run then ends by counting the skipped tests (0 in CI,
# which does not set it).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$SCRIPT_DIR/.."

step() { printf '\n==> %s\n' "$*"; }

step "Installing dependencies"
"$SCRIPT_DIR/deps.sh"
if ! command -v cargo >/dev/null 2>&1; then
    export PATH=$HOME/.cargo/bin:$PATH
fi

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# The integration tests run target/release/vswitchctl, which lives in another
# crate: cargo test builds only the binaries of the crate under test.
step "cargo build --release --workspace --bins"
cargo build --release --workspace --bins

step "scripts/check-layers.py (fastpath's modules import each other without a cycle)"
scripts/check-layers.py
step "scripts/check-docs.sh (the docs name only paths, links and vswitchd options that exist)"
scripts/check-docs.sh

# --no-fail-fast: one CI run reports every failing test binary, not just the first.
step "cargo test --workspace --release"
skip_log=$(mktemp)
VSWITCH_SKIP_LOG=$skip_log cargo test --workspace --release --no-fail-fast
echo "tests skipped: $(wc -l <"$skip_log")"
sed 's/^/  skipped /' "$skip_log"
rm -f "$skip_log"

# A time-boxed fuzz pass over the committed corpus (longer runs: scripts/fuzz.sh --runs N).
step "scripts/fuzz.sh --secs 20 (every cargo-fuzz target from its corpus)"
scripts/fuzz.sh --secs 20

# The benchmark tools end to end, at smoke size (they assert no speed).
step "scripts/bench-veth.sh --quick (vswitch peers)"
quick_out=$(mktemp -d)
scripts/bench-veth.sh --quick --no-build --peers vswitch-afxdp,vswitch-tap --out "$quick_out"
rm -rf "$quick_out"

step "scripts/bench-queues.sh (one short round: pods with two queues, 1 and 2 workers)"
scripts/bench-queues.sh --rounds 1 --secs 1 --streams 2

step "scripts/bench-nic.sh --check (the NIC benchmark's whole sequence on veth pairs)"
scripts/bench-nic.sh --check

step "all checks passed"
