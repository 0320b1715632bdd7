#!/usr/bin/env bash
# Command 1 of the README: on a fresh Debian 12 machine, as root, with no hardware.
# Installs what is missing, builds, starts vswitchd on the built-in default topology
# (two tap ports, each moved into its own network namespace as a "VM", cross-connected),
# pings between the VMs through the switch, prints the counters, and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
setup_machine
echo "== building vswitch (release)"
cargo build --release --workspace --bins -q

BIN=$PWD/target/release
WORK=$(mktemp -d /tmp/vswitch-demo.XXXXXX)
SOCK=$WORK/vswitchd.sock
CTL="$BIN/vswitchctl --socket $SOCK"
VSW_PID=""
cleanup() {
    [ -n "$VSW_PID" ] && kill "$VSW_PID" 2>/dev/null && wait "$VSW_PID" 2>/dev/null || true
    ip netns del vsdemo-vm1 2>/dev/null || true
    ip netns del vsdemo-vm2 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

EAL=(-l 0-1 --file-prefix vsdemo --no-pci)
if reserve_hugepages 512; then
    echo "== hugepages: $(cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages) x 2 MiB"
else
    echo "== no hugepages on this host: running with --no-huge (slower, fine for a demo)"
    EAL+=(--no-huge -m 512)
fi

echo "== starting vswitchd -- ${EAL[*]}"
"$BIN/vswitchd" --socket "$SOCK" --db "$WORK/conf.json" -- "${EAL[@]}" >"$WORK/vswitchd.log" 2>&1 &
VSW_PID=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { cat "$WORK/vswitchd.log"; die "vswitchd did not start"; }

echo "== two VM ports (net_tap), cross-connected"
$CTL port add vm1 net_tap0,iface=vsdemo1
$CTL port add vm2 net_tap1,iface=vsdemo2
$CTL xconnect add vm1 vm2

echo "== each tap into its own namespace: vsdemo-vm1 10.10.0.1, vsdemo-vm2 10.10.0.2"
for i in 1 2; do
    ip netns del vsdemo-vm$i 2>/dev/null || true
    ip netns add vsdemo-vm$i
    ip link set vsdemo$i netns vsdemo-vm$i
    ip -n vsdemo-vm$i addr add 10.10.0.$i/24 dev vsdemo$i
    ip -n vsdemo-vm$i link set vsdemo$i up
    ip -n vsdemo-vm$i link set lo up
done
echo
$CTL show
echo
echo "== ping from vm1 to vm2 through the switch"
ip netns exec vsdemo-vm1 ping -c 5 -i 0.2 10.10.0.2
echo
echo "== vswitchctl port stats"
$CTL port stats
echo
echo "== vswitchctl cores"
$CTL cores
echo
echo "demo done: cleaning up"
