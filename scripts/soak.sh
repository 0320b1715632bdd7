#!/usr/bin/env bash
# Whole-switch soak (not in CI): ./scripts/soak.sh [--minutes N] [--every SECONDS]
# Installs what it needs, reserves hugepages, builds, then runs scripts/soak.py.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
setup_machine
reserve_hugepages 512 || die "the soak needs 512 free 2 MiB hugepages"
cargo build --release --workspace --bins -q
exec /usr/bin/python3 scripts/soak.py "$@"
