#!/usr/bin/env bash
# Command 1 of the README: on a fresh Debian 12 machine, as root, with no hardware.
# Installs what is missing, builds, and starts vswitchd on the built-in default
# topology, two "hosts" joined by a VXLAN overlay:
#
#   host A (this switch)                         host B (a Linux kernel VTEP)
#   ns vsdemo-vm1  10.10.0.1 --tap-- [vswitchd] --tap uplink-- ns vsdemo-hostb
#   ns vsdemo-vm2  10.10.0.3 --tap--  VTEP 192.168.77.1         192.168.77.2, vxlan VNI 100
#                                                                10.10.0.2 (a VM on host B)
#
# vm1 and vm2 are switched locally; vm1 reaches 10.10.0.2 across VXLAN VNI 100. It pings
# both, prints the switch's view (FIB, neighbours, counters) and cleans up.
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
del_namespaces() { for n in vsdemo-vm1 vsdemo-vm2 vsdemo-hostb; do ip netns del $n 2>/dev/null || true; done; }
cleanup() {
    [ -n "$VSW_PID" ] && kill "$VSW_PID" 2>/dev/null && wait "$VSW_PID" 2>/dev/null || true
    del_namespaces
    rm -rf "$WORK"
}
trap cleanup EXIT
del_namespaces # left over from an interrupted run

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

ns() { ip netns exec "$@"; }
into_ns() { # IFACE NS CIDR
    ip link set "$1" netns "$2"
    ns "$2" sysctl -qw "net.ipv6.conf.$1.disable_ipv6=1"
    ip -n "$2" addr add "$3" dev "$1"
    ip -n "$2" link set "$1" mtu 1450 up
}
for n in vsdemo-vm1 vsdemo-vm2 vsdemo-hostb; do ip netns add $n; ip -n $n link set lo up; done

echo "== tenant network VNI 100, two VM ports, an uplink, our VTEP 192.168.77.1"
$CTL network add 100 --name demo
# kernel:iface=NAME creates a tap (or attaches to an existing interface) whose large TCP
# segments and partial checksums cross the switch as they are.
$CTL port add vm1 kernel:iface=vsdemo1 --role vm --vni 100
$CTL port add vm2 kernel:iface=vsdemo2 --role vm --vni 100
$CTL port add uplink kernel:iface=vsdemoup --role uplink
# A tap's DPDK side and kernel side share one MAC: give the VTEP its own.
$CTL vtep set --ip 192.168.77.1/24 --uplink uplink --mac 02:00:00:77:00:01
$CTL network add-vtep 100 192.168.77.2
into_ns vsdemo1 vsdemo-vm1 10.10.0.1/24
into_ns vsdemo2 vsdemo-vm2 10.10.0.3/24
ip link set vsdemoup netns vsdemo-hostb
ip -n vsdemo-hostb addr add 192.168.77.2/24 dev vsdemoup
ip -n vsdemo-hostb link set vsdemoup up

echo "== host B: the Linux kernel's VXLAN (VNI 100, UDP 4789) with a VM address 10.10.0.2"
ip -n vsdemo-hostb link add vx100 type vxlan id 100 local 192.168.77.2 remote 192.168.77.1 dstport 4789 dev vsdemoup
ns vsdemo-hostb sysctl -qw net.ipv6.conf.vx100.disable_ipv6=1
ip -n vsdemo-hostb addr add 10.10.0.2/24 dev vx100
ip -n vsdemo-hostb link set vx100 mtu 1450 up

echo "== waiting for the switch to resolve host B (vswitchctl neigh list)"
for _ in $(seq 50); do $CTL neigh list | grep -q "192.168.77.2 .* resolved" && break; sleep 0.1; done
$CTL neigh list
echo
echo "== vm1 -> vm2 (10.10.0.3), switched locally"
ns vsdemo-vm1 ping -c 3 -i 0.2 10.10.0.3
echo
echo "== vm1 -> host B's VM (10.10.0.2), across the VXLAN overlay"
ns vsdemo-vm1 ping -c 5 -i 0.2 10.10.0.2
echo
iperf() { # SERVER_NS SERVER_IP CLIENT_NS
    ns "$1" iperf3 -s -1 -B "$2" >/dev/null 2>&1 &
    local server=$!
    sleep 0.5
    ns "$3" iperf3 -c "$2" -t 2 | grep -E "sender|receiver"
    wait $server
}
echo "== TCP vm1 -> vm2 for 2 s (iperf3): 64 KB segments cross the switch whole"
iperf vsdemo-vm2 10.10.0.3 vsdemo-vm1
echo
echo "== TCP vm1 -> host B for 2 s (iperf3): cut into VXLAN frames for the uplink"
iperf vsdemo-hostb 10.10.0.2 vsdemo-vm1
echo
$CTL show
echo
echo "== vswitchctl fib list (learned from both sides)"
$CTL fib list
echo
echo "== vswitchctl neigh list (host B resolved by ARP)"
$CTL neigh list
echo
echo "== vswitchctl port stats"
$CTL port stats
echo
echo "demo done: cleaning up"
