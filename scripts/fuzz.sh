#!/usr/bin/env bash
# Runs the fuzz targets (fuzz/fuzz_targets/, bodies in pipelines::fuzz and control::fuzz)
# with libFuzzer on stable Rust (no sanitizer: safe Rust needs none for memory errors;
# what the targets find is panics and wrong answers), each for --seconds N (default 60),
# and prints per target: executions, executions per second, corpus size, crashes.
#
#   ./scripts/fuzz.sh [--seconds N] [--scratch] [TARGET...]
#
# New inputs that reach new code go to fuzz/corpus/TARGET/ (commit the useful ones: cargo
# test replays them), or with --scratch to a temporary folder, leaving the checkout as it
# was (scripts/test.sh). A crash is written to fuzz/artifacts/TARGET/; once fixed, copy it
# to fuzz/regressions/TARGET/ so cargo test keeps replaying it.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=60
scratch=0
targets=()
while [ $# -gt 0 ]; do
    case $1 in
        --seconds) secs=$2; shift 2 ;;
        --scratch) scratch=1; shift ;;
        -h|--help) sed -n 2,12p "$0"; exit 0 ;;
        *) targets+=("$1"); shift ;;
    esac
done
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cd fuzz
# Every input of the packet targets allocates a core's state and tables of a few hundred
# KB; by default glibc gives them back to the kernel at each free and the next input
# faults them in again, half of a `trace` or `conntrack` input's time.
export GLIBC_TUNABLES=glibc.malloc.trim_threshold=268435456:glibc.malloc.mmap_threshold=33554432
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
echo "== building ${#targets[@]} targets"
build=$(mktemp)
cargo fuzz build --sanitizer none -O >"$build" 2>&1 || { cat "$build"; exit 1; }
rm -f "$build"
printf '%-18s %14s %10s %8s %8s\n' TARGET EXECS EXECS/S CORPUS CRASHES
failed=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(find "artifacts/$t" -type f | wc -l)
    log=$(mktemp)
    # libFuzzer writes new inputs to the first folder and reads the others.
    corpora=("corpus/$t")
    [ "$scratch" = 1 ] && corpora=("$(mktemp -d)" "corpus/$t")
    if ! cargo fuzz run --sanitizer none -O "$t" "${corpora[@]}" -- \
        -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
        failed=1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    crashes=$(( $(find "artifacts/$t" -type f | wc -l) - before ))
    printf '%-18s %14s %10s %8s %8s\n' "$t" "${execs:-?}" "${rate:-?}" "$(find "corpus/$t" -type f | wc -l)" "$crashes"
    if [ "$crashes" -gt 0 ]; then
        grep -m1 -A3 "panicked at" "$log" | sed 's/^/    /' || true
        find "artifacts/$t" -type f -newer "$log" | sed 's/^/    input: fuzz\//'
    fi
    rm -f "$log"
    [ "$scratch" = 1 ] && rm -rf "${corpora[0]}"
done
exit "$failed"
