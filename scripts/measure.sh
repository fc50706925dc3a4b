#!/usr/bin/env bash
# measure.sh: the speed figures in README, measured on this machine.
#   cold configure + build (a fresh build directory, Release, tests included, -j2),
#   the default test preset (ctest), and scripts/run-all.sh --no-build (median of 5 runs).
# Usage: scripts/measure.sh   (takes about a minute; leaves build/measure behind)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

now_ms() { echo $(($(date +%s%N) / 1000000)); }
seconds() { printf '%d.%02d s' $(($1 / 1000)) $((($1 % 1000) / 10)); }

rm -rf build/measure
started=$(now_ms)
cmake -S . -B build/measure -DCMAKE_BUILD_TYPE=Release -DPORTREUSE_BUILD_TESTS=ON >/dev/null
cmake --build build/measure -j2 >/dev/null
build_ms=$(($(now_ms) - started))

started=$(now_ms)
ctest --test-dir build/measure -j2 -LE '^(long|terminal|robustness)$' >/dev/null
test_ms=$(($(now_ms) - started))

runs=()
for _ in 1 2 3 4 5; do
  started=$(now_ms)
  PORTREUSE_BIN_DIR="$PWD/build/measure/bin" scripts/run-all.sh --no-build --no-color >/dev/null
  runs+=($(($(now_ms) - started)))
done
mapfile -t sorted < <(printf '%s\n' "${runs[@]}" | sort -n)

cat <<REPORT
Measured $(date -u +%Y-%m-%d) on $(nproc) cores, $(uname -sr), $(c++ --version | head -n 1):

| what | wall time |
|---|---|
| cold configure + build (Release, tests, -j2) | $(seconds "$build_ms") |
| \`ctest\` (default preset: unit and experiment tests) | $(seconds "$test_ms") |
| \`scripts/run-all.sh --no-build\` (median of 5; min $(seconds "${sorted[0]}"), max $(seconds "${sorted[4]}")) | $(seconds "${sorted[2]}") |
REPORT
