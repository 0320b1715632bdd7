# Shared by scripts/demo.sh and scripts/test.sh: make a fresh Debian 12 machine ready.
# Sourced, not run.

die() { echo "error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run this as root: it installs packages, makes network namespaces and tap devices, and starts DPDK"

# What building and testing the switch needs from Debian.
PACKAGES="dpdk dpdk-dev libdpdk-dev pkg-config gcc g++ libclang1-14 libclang-common-14-dev libpcap-dev
          python3 python3-scapy python3-prometheus-client tshark iputils-ping iperf3 iproute2 procps ethtool
          nftables conntrack containernetworking-plugins podman containerd busybox-static
          protobuf-compiler etcd-server etcd-client dpkg-dev systemd pmacct prometheus"

install_packages() {
    local missing=""
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "== installing:$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq $missing >/dev/null
    fi
}

ensure_rust() {
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
    command -v cargo >/dev/null || die "no Rust toolchain: install one with rustup (https://rustup.rs), then rerun"
    if command -v rustup >/dev/null; then
        for c in rustfmt clippy; do
            rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
        done
    fi
}

# Reserves N 2 MiB hugepages and mounts hugetlbfs; returns non-zero where the host
# cannot (a container, not enough memory) so the caller can fall back to --no-huge.
reserve_hugepages() {
    local want=$1 nr=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
    [ -w "$nr" ] || return 1
    [ "$(cat $nr)" -ge "$want" ] || echo "$want" > "$nr" 2>/dev/null || return 1
    [ "$(cat $nr)" -ge "$want" ] || return 1
    mkdir -p /dev/hugepages
    mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages || return 1
}

setup_machine() {
    install_packages
    ensure_rust
}
