#!/usr/bin/env bash
# Whole-switch benchmark on the workloads of shared/BENCHMARKS.md: one PMD core,
# hugepages, net_pcap replaying from memory into the switch and net_null taking what
# leaves. For each workload and run: a 3 s warm-up, then a WINDOW-second window over
# which it reads packets out of the switch and the PMD core's busy cycles.
# Usage: bench/run.sh [WINDOW_SECONDS] [RUNS]     WORKLOADS="W1x W2" bench/run.sh ...
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
setup_machine
WIN=${1:-10}; RUNS=${2:-3}; WORKLOADS=${WORKLOADS:-W1x W1 W2-1 W2 W2-sflow W2-10k W3 W5}
reserve_hugepages 1024 || die "the benchmark needs 1024 free 2 MiB hugepages"
cargo build --release --workspace --bins -q
BIN=$PWD/target/release
W=$(mktemp -d /tmp/vswitch-bench.XXXXXX)
trap 'kill $(cat $W/pid 2>/dev/null) 2>/dev/null || true; rm -rf $W' EXIT
/usr/bin/python3 bench/gen_pcaps.py "$W"

measure() { # WORKLOAD -> "pps cycles_per_packet"
    local cfg; cfg=$(/usr/bin/python3 bench/configs.py "$W" "$1")
    cp "$cfg" "$W/db.json"
    "$BIN/vswitchd" --socket "$W/s.sock" --db "$W/db.json" --mbufs 262144 -- -l 0-1 --no-pci --file-prefix vsbench >"$W/log" 2>&1 &
    echo $! > "$W/pid"
    for _ in $(seq 100); do [ -S "$W/s.sock" ] && break; sleep 0.1; done
    local C="$BIN/vswitchctl --socket $W/s.sock --json"
    sleep 3
    local out; out=$(/usr/bin/python3 - "$C" "$WIN" <<'PY'
import json, subprocess, sys, time
ctl, win = sys.argv[1].split(), float(sys.argv[2])
def snap():
    s = json.loads(subprocess.check_output(ctl + ["stats"]))
    tx = sum(p["tx_packets"] for p in s["ports"])
    core = s["cores"][0]
    return tx, core["busy_cycles"], core["packets"]
t0, (tx0, c0, p0) = time.time(), snap()
time.sleep(win)
t1, (tx1, c1, p1) = time.time(), snap()
print("%d %.1f" % ((tx1 - tx0) / (t1 - t0), (c1 - c0) / max(1, p1 - p0)))
PY
)
    kill "$(cat $W/pid)"; wait "$(cat $W/pid)" 2>/dev/null || true
    echo "$out"
}

declare -A RES
for r in $(seq "$RUNS"); do
    for w in $WORKLOADS; do
        printf '.. run %d/%d %-7s ' "$r" "$RUNS" "$w" >&2
        m=$(measure "$w"); echo "$m" >&2
        RES[$w]="${RES[$w]:-} $m"
    done
done
printf '\n%-8s %-28s %s\n' workload "Mpps per run (cycles/packet)" "median Mpps"
for w in $WORKLOADS; do
    echo "${RES[$w]}" | /usr/bin/python3 -c '
import sys, statistics
v = sys.stdin.read().split(); w = sys.argv[1]
runs = [(float(v[i]) / 1e6, float(v[i + 1])) for i in range(0, len(v), 2)]
print("%-8s %-28s %.2f" % (w, ", ".join("%.2f (%.0f)" % r for r in runs), statistics.median(r[0] for r in runs)))' "$w"
done
