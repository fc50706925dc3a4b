#!/usr/bin/env bash
# reliability.sh: the figures in README's reliability section, measured on this machine.
#  1. every experiment test 50 times over, two at a time (ctest -j2 --repeat until-fail:50);
#  2. the robustness suite (leftovers, Ctrl+C, 20 back-to-back run-all runs, bad input,
#     foreign ports, descriptor exhaustion), with the fault-injection test: every experiment
#     under each injected fault, tight `ulimit -n` and `ulimit -u` (one row per run in
#     build/reliability-faults.txt);
#  3. a shared machine: the default suite four times at once, with two run-all loops beside it
#     and one busy process per core, so that a test that needs the machine to itself shows up.
# Usage: scripts/reliability.sh   (after: scripts/test.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

now_ms() { echo $(($(date +%s%N) / 1000000)); }

experiment_tests='^[0-9][0-9] '
count=$(ctest --preset default -N -R "$experiment_tests" | sed -n 's/^Total Tests: //p')
started=$(now_ms)
repeat_status=0
ctest --preset default -j2 --repeat until-fail:50 -R "$experiment_tests" >build/reliability-repeat.log 2>&1 ||
  repeat_status=$?
repeat_ms=$(($(now_ms) - started))
repeat_line=$(grep -E 'tests passed' build/reliability-repeat.log || echo "no result line")

started=$(now_ms)
robust_status=0
rm -f build/reliability-faults.txt
PORTREUSE_FAULT_REPORT="$PWD/build/reliability-faults.txt" \
  ctest --preset robustness >build/reliability-robustness.log 2>&1 || robust_status=$?
robust_ms=$(($(now_ms) - started))
robust_line=$(grep -E 'tests passed' build/reliability-robustness.log || echo "no result line")

# 3. A shared machine. Every helper is started here and stopped by its own pid.
started=$(now_ms)
shared_status=0
helpers=()  # busy loops: stopped by pid
loops=()    # run-all loops: they finish the run they are in, then stop
stop_file=build/reliability-shared.stop
rm -f "$stop_file"
stop_helpers() {
  local pid
  : >"$stop_file"
  for pid in "${helpers[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${helpers[@]}" "${loops[@]}"; do wait "$pid" 2>/dev/null || true; done
  helpers=() loops=()
  rm -f "$stop_file"
}
trap stop_helpers EXIT
for _ in $(seq "$(nproc)"); do
  (while :; do :; done) &
  helpers+=($!)
done
for loop in 1 2; do
  (while [[ ! -e $stop_file ]]; do
    scripts/run-all.sh --no-build --json >/dev/null 2>>"build/reliability-shared-run-all.$loop.log" || true
  done) &
  loops+=($!)
done
suites=()
for copy in 1 2 3 4; do
  ctest --preset default >"build/reliability-shared.$copy.log" 2>&1 &
  suites+=($!)
done
shared_failed=0
for pid in "${suites[@]}"; do wait "$pid" || shared_failed=$((shared_failed + 1)); done
stop_helpers
[[ $shared_failed -eq 0 ]] || shared_status=1
shared_ms=$(($(now_ms) - started))
shared_tests=$(sed -n 's/^Total Tests: //p' <(ctest --preset default -N))

cat <<REPORT
| check | runs | result | wall time |
|---|---|---|---|
| experiment tests, \`ctest -j2 --repeat until-fail:50\` | $count tests x 50 | $repeat_line | $((repeat_ms / 1000)).$(((repeat_ms % 1000) / 100)) s |
| default suite 4 times at once, 2 run-all loops and $(nproc) busy loops beside it | $shared_tests tests x 4 | $((4 - shared_failed)) of 4 suites passed | $((shared_ms / 1000)).$(((shared_ms % 1000) / 100)) s |
| robustness suite, \`ctest --preset robustness\` | the $(grep -c 'Test *#' build/reliability-robustness.log) checks below | $robust_line | $((robust_ms / 1000)).$(((robust_ms % 1000) / 100)) s |
REPORT
# One row per robustness check, from ctest's own result lines ("N/M Test #K: name ...... Passed 0.10 sec").
awk '/Test +#[0-9]+: robustness: / {
  line = $0
  sub(/.*robustness: /, "", line)
  seconds = $(NF - 1); status = $(NF - 2)
  sub(/ \.+.*$/, "", line)
  printf "| %s | | %s | %s s |\n", line, status, seconds
}' build/reliability-robustness.log
# The fault-injection runs: "NN | condition | steps | could-not-run | verdicts | injected | ms | problems".
if [[ -s build/reliability-faults.txt ]]; then
  awk -F' [|] ' '{
    runs++; if ($8 ~ /^ok/) clean++
    if ($2 ~ /^ulimit -n/) limit_n++; else if ($2 ~ /^ulimit -u/) limit_u++; else faults++
    experiments[$1] = 1
  } END {
    n = 0; for (e in experiments) n++
    printf "| fault injection: %d experiments under injected faults, `ulimit -n` and `ulimit -u` | %d runs (%d faulted, %d -n, %d -u) | %d clean, %d with problems (build/reliability-faults.txt) | |\n",
      n, runs, faults, limit_n, limit_u, clean, runs - clean
  }' build/reliability-faults.txt
fi

if [[ $repeat_status -ne 0 || $robust_status -ne 0 || $shared_status -ne 0 ]]; then
  echo "reliability.sh: failures; see build/reliability-*.log" >&2
  tail -n 40 build/reliability-repeat.log build/reliability-robustness.log >&2
  grep -h -B2 -A20 'tests failed' build/reliability-shared.*.log >&2 || true
  exit 1
fi
