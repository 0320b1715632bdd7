#!/usr/bin/env bash
# Command 2 of the README: installs what is missing (Debian 12, as root) and runs the
# whole test suite: format, lints, unit tests, and the whole-switch tests on DPDK
# virtual devices (net_pcap, net_tap + namespaces, vhost-user, hot-plug, bad input).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
setup_machine

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --release -- -D warnings
echo "== no import cycles between modules"
python3 scripts/import_cycles.py control/src pipelines/src dataplane/src
echo "== build (release)"
cargo build --release --workspace
LOG=$(mktemp /tmp/vswitch-test.XXXXXX)
trap 'rm -f "$LOG"' EXIT
echo "== unit tests"
cargo test --release --workspace --exclude vswitch-tests 2>&1 | tee -a "$LOG"
# Each whole-switch test runs DPDK processes that busy-poll a core: one at a time. They
# run without hugepages, but for the one that checks what vswitchd does with them.
echo "== whole-switch tests"
reserve_hugepages 256 || { echo "cannot reserve 256 2 MiB hugepages (tests/tests/hugepages.rs needs 64)" >&2; exit 1; }
cargo test --release -p vswitch-tests --tests -- --test-threads=1 2>&1 | tee -a "$LOG"

# Every fuzz target for a few seconds (their corpora and past crashes were replayed by
# the unit tests above); a crash fails the suite.
echo "== fuzz targets, 10 s each"
./scripts/fuzz.sh --seconds 10 --scratch

# One closing line for the whole suite.
awk '/^test result:/ { p += $4; f += $6 } END { printf "total: %d passed, %d failed\n", p, f; exit (f > 0) }' "$LOG"
