#!/usr/bin/env bash
# Installs vswitch on this machine: vswitchd and vswitchctl, their manual
# pages (made from the programs' own option definitions), shell completions
# (bash, zsh, fish), the CNI plugin (vswitch-cni, as `vswitch` in the CNI
# bin directory), and with --systemd the unit from deploy/.
#
#   scripts/install.sh [--prefix DIR] [--cni-dir DIR] [--systemd] [--unit-dir DIR] [--no-build]
#
#   --prefix DIR    where bin/ and share/ go (default /usr/local)
#   --cni-dir DIR   the container runtime's CNI bin directory (default /opt/cni/bin)
#   --systemd       also install deploy/vswitchd.service (its ExecStart
#                   pointing at DIR/bin/vswitchd)
#   --unit-dir DIR  where the unit goes (default /etc/systemd/system)
#   --no-build      use the binaries already in target/release
#
# Then: systemctl daemon-reload && systemctl enable --now vswitchd
# (README.md "Operating vswitch").
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
PREFIX=/usr/local
SYSTEMD=0
UNIT_DIR=/etc/systemd/system
CNI_DIR=/opt/cni/bin
BUILD=1

die() { echo "install.sh: $*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --prefix) [[ $# -ge 2 ]] || die "--prefix needs a directory"; PREFIX=$2; shift 2 ;;
        --cni-dir) [[ $# -ge 2 ]] || die "--cni-dir needs a directory"; CNI_DIR=$2; shift 2 ;;
        --systemd) SYSTEMD=1; shift ;;
        --unit-dir) [[ $# -ge 2 ]] || die "--unit-dir needs a directory"; UNIT_DIR=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

# Absolute paths: the unit's ExecStart must be one.
PREFIX=$(realpath -m "$PREFIX")
UNIT_DIR=$(realpath -m "$UNIT_DIR")
cd "$REPO"
if [[ $BUILD == 1 ]]; then
    cargo build --release --bin vswitchd --bin vswitchctl --bin vswitch-cni
fi
# Where cargo puts what it builds: $CARGO_TARGET_DIR when set.
BIN=${CARGO_TARGET_DIR:-$REPO/target}/release
for b in vswitchd vswitchctl vswitch-cni; do
    [[ -x $BIN/$b ]] || die "$BIN/$b is missing: build it first (or drop --no-build)"
done

MAN=$PREFIX/share/man/man8
BASH_DIR=$PREFIX/share/bash-completion/completions
ZSH_DIR=$PREFIX/share/zsh/site-functions
FISH_DIR=$PREFIX/share/fish/vendor_completions.d
install -d "$PREFIX/bin" "$MAN" "$BASH_DIR" "$ZSH_DIR" "$FISH_DIR"
install -m 0755 "$BIN/vswitchd" "$BIN/vswitchctl" "$PREFIX/bin/"
"$BIN/vswitchd" --man >"$MAN/vswitchd.8"
"$BIN/vswitchctl" man --dir "$MAN"
"$BIN/vswitchd" --completion bash >"$BASH_DIR/vswitchd"
"$BIN/vswitchctl" completion bash >"$BASH_DIR/vswitchctl"
"$BIN/vswitchd" --completion zsh >"$ZSH_DIR/_vswitchd"
"$BIN/vswitchctl" completion zsh >"$ZSH_DIR/_vswitchctl"
"$BIN/vswitchd" --completion fish >"$FISH_DIR/vswitchd.fish"
"$BIN/vswitchctl" completion fish >"$FISH_DIR/vswitchctl.fish"
install -d "$CNI_DIR"
install -m 0755 "$BIN/vswitch-cni" "$CNI_DIR/vswitch"
echo "installed vswitchd and vswitchctl in $PREFIX/bin, manual pages in $MAN, completions under $PREFIX/share, the CNI plugin as $CNI_DIR/vswitch"

if [[ $SYSTEMD == 1 ]]; then
    install -d "$UNIT_DIR"
    sed "s#/usr/local/bin/vswitchd#$PREFIX/bin/vswitchd#" "$REPO/deploy/vswitchd.service" \
        >"$UNIT_DIR/vswitchd.service"
    chmod 0644 "$UNIT_DIR/vswitchd.service"
    echo "installed $UNIT_DIR/vswitchd.service: systemctl daemon-reload && systemctl enable --now vswitchd"
fi
