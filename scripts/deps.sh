#!/usr/bin/env bash
# Installs what building and testing vswitch needs on a Debian machine, as root.
#
# Idempotent: apt runs only when a package is missing, rustup only when a
# component is missing, and bpffs is mounted only when it is not already.
set -euo pipefail

PACKAGES=(
    # xsk-rs builds libxdp/libbpf from source.
    clang llvm libelf-dev zlib1g-dev m4 pkg-config libpcap-dev
    # fastpath/build.rs compiles the uplink's XDP program against <bpf/bpf_helpers.h>.
    libbpf-dev
    # Pods, traffic and inspection in tests and the demo.
    iproute2 ethtool iperf3 iputils-ping tcpdump netcat-openbsd
    # The integration tests send hand-made frames through an AF_PACKET socket;
    # the Service tests and the demo run HTTP/UDP servers (python3's
    # http.server is not in python3-minimal) and curl them.
    python3-minimal python3 curl
    # tests/deploy.rs renders the manual pages; setpriv (util-linux) runs
    # vswitchd and clients with fewer capabilities or as another user.
    man-db groff-base util-linux
    # tests/cni.rs: the CNI plugin delegates IPAM to host-local and is
    # chained with tuning (/usr/lib/cni); podman (with runc, and a
    # busybox-static root filesystem) attaches containers through it.
    containernetworking-plugins podman runc busybox-static
)

log() { echo "deps.sh: $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    log "warning: not root; cannot install packages or mount bpffs (tests that need root will skip)"
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ $status != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} > 0)); then
    if [[ $(id -u) -ne 0 ]]; then
        log "error: missing packages: ${missing[*]} (run this script as root to install them)"
        exit 1
    fi
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1 && [[ -x $HOME/.cargo/bin/cargo ]]; then
    export PATH=$HOME/.cargo/bin:$PATH
fi
if ! command -v cargo >/dev/null 2>&1; then
    log "error: cargo not found; install Rust (https://rustup.rs) first"
    exit 1
fi

if command -v rustup >/dev/null 2>&1; then
    installed=$(rustup component list --installed 2>/dev/null || true)
    for comp in clippy rustfmt; do
        if ! grep -q "^${comp}" <<<"$installed"; then
            log "adding rustup component $comp"
            rustup component add "$comp"
        fi
    done
    # The fuzz pass (scripts/fuzz.sh): a nightly toolchain and cargo-fuzz.
    if ! rustup toolchain list | grep -q '^nightly'; then
        log "adding the nightly toolchain (cargo fuzz)"
        rustup toolchain install nightly --profile minimal
    fi
else
    for tool in clippy-driver rustfmt; do
        command -v "$tool" >/dev/null 2>&1 || log "warning: $tool not found and rustup is not available"
    done
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz (scripts/fuzz.sh)"
    cargo install cargo-fuzz --locked --version 0.13.2
fi

# libxdp pins XDP programs in bpffs when it is there and falls back when it
# is not, so a failure to mount is not fatal.
if [[ $(id -u) -eq 0 ]] && ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
    mkdir -p /sys/fs/bpf 2>/dev/null || true
    if mount -t bpf bpf /sys/fs/bpf 2>/dev/null; then
        log "mounted bpffs at /sys/fs/bpf"
    else
        log "note: could not mount bpffs at /sys/fs/bpf (libxdp falls back without it)"
    fi
fi
