#!/usr/bin/env bash
# Whole-switch benchmark (shared/BENCHMARKS.md): installs what it needs, reserves
# hugepages, builds, then runs bench/run.py (see its --help):
#   bench/run.sh                          # W0 W1x W1 W2 W2-10k W3 W5 W4, 3 runs, 10 s windows
#   bench/run.sh --with-ovs               # also OVS-DPDK (shared/anchors), between our runs
#   bench/run.sh --workloads "W2 W2-10k" --runs 5 --window 5
#   bench/run.sh tcp [--runs N] [--workloads "C1 C2"]   # C1, C1-4, C1v, C2, C2r, C3, C3sw (bench/tcp.py)
#   bench/run.sh api [--secs N]           # the control socket under abuse (bench/api.py)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
PACKAGES="$PACKAGES python3-matplotlib"
setup_machine
reserve_hugepages 1536 || die "the benchmark needs 1536 free 2 MiB hugepages (the switch, and W4's guest)"
cargo build --release --workspace --bins -q
if [ "${1:-}" = api ]; then
    shift
    exec /usr/bin/python3 bench/api.py --docs docs/benchmarks.md "$@"
fi
if [ "${1:-}" = tcp ]; then
    shift
    exec /usr/bin/python3 bench/tcp.py --docs docs/benchmarks.md "$@"
fi
exec /usr/bin/python3 bench/run.py "$@"
