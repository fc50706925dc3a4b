#!/usr/bin/env bash
# measure.sh: the speed figures in README, measured on this machine.
#   1. a cold scripts/run-all.sh in a fresh clone of this commit: when experiment 01's first line
#      appears and when the summary does (no ccache: the clone builds from nothing);
#   2. a cold configure + build of the default preset with the tests, in that clone;
#   3. the default test preset (ctest) there;
#   4. scripts/run-all.sh --no-build there, median of 5.
# Usage: scripts/measure.sh   (about two minutes on 2 cores; leaves build/measure behind)
# The figures are only as good as the machine is quiet: run it alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

now_ms() { echo $(($(date +%s%N) / 1000000)); }
seconds() { printf '%d.%02d s' $(($1 / 1000)) $((($1 % 1000) / 10)); }
# No compiler cache and no other preset: what a student's fresh clone does.
unset CMAKE_CXX_COMPILER_LAUNCHER PORTREUSE_PRESET

clone=$PWD/build/measure
rm -rf "$clone"
git clone --quiet . "$clone"
cd "$clone"

started=$(now_ms)
first_ms="" summary_ms=""
while IFS= read -r line; do
  if [[ -z $first_ms && $line == "Experiment 01:"* ]]; then first_ms=$(($(now_ms) - started)); fi
done < <(scripts/run-all.sh --no-color 2>&1)
summary_ms=$(($(now_ms) - started))

rm -rf build
started=$(now_ms)
cmake --preset default >/dev/null
cmake --build --preset default >/dev/null
build_ms=$(($(now_ms) - started))

started=$(now_ms)
ctest --preset default >/dev/null
test_ms=$(($(now_ms) - started))

runs=()
for _ in 1 2 3 4 5; do
  started=$(now_ms)
  scripts/run-all.sh --no-build --no-color >/dev/null
  runs+=($(($(now_ms) - started)))
done
mapfile -t sorted < <(printf '%s\n' "${runs[@]}" | sort -n)
# The compiler the default preset chose (clang++ where the machine has it, see CMakeLists.txt).
compiler() {
  "$(sed -n 's/^ *"command": "\([^ ]*\) .*/\1/p' build/default/compile_commands.json | head -n 1)" --version |
    head -n 1
}

cat <<REPORT
Measured $(date -u +%Y-%m-%d) on $(nproc) cores, $(uname -sr), with $(compiler), load
average $(cut -d' ' -f1-3 /proc/loadavg) at the end:

| what | wall time |
|---|---|
| cold \`scripts/run-all.sh\` from a fresh clone: experiment 01's first line | $(seconds "${first_ms:-0}") |
| the same run: its end, after the summary | $(seconds "$summary_ms") |
| cold configure + build of the default preset, tests included (-j2) | $(seconds "$build_ms") |
| \`ctest --preset default\` (unit and experiment tests) | $(seconds "$test_ms") |
| \`scripts/run-all.sh --no-build\`, 18 experiments, ladders on (median of 5; min $(seconds "${sorted[0]}"), max $(seconds "${sorted[4]}")) | $(seconds "${sorted[2]}") |
REPORT
