#!/usr/bin/env bash
# run-all.sh: build the suite when needed, run every experiment in the manifest's order, narrate
# each one, and end with a table of what the articles claim and what this machine did.
#
# The experiments, in the order of experiments/manifest.txt (which is what this script reads;
# a test keeps this list equal to the manifest):
#   01 same-port-twice
#   02 time-wait-restart
#   03 who-closes-first
#   04 killed-daemon
#   05 reuseaddr-fix
#   06 specific-addresses
#   07 wildcard-vs-loopback
#   08 four-tuple
#   09 reuseport
#   10 abortive-close
#   11 dual-stack
#   12 udp
#   13 client-side
#   14 time-wait-length
#   15 bind-map
#   17 zero-downtime-restart
#
# Usage: scripts/run-all.sh [--list] [--only 02,05] [--step] [--json] [--long] [--no-build] [--no-color] [--help]
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
preset=${PORTREUSE_PRESET:-default}
build_dir="$root/build/$preset"
# PORTREUSE_BIN_DIR lets the tests point run-all at the build they belong to.
bin_dir=${PORTREUSE_BIN_DIR:-$build_dir/bin}
manifest="$root/experiments/manifest.txt"

usage() {
  cat <<'EOF'
Usage: scripts/run-all.sh [--list] [--only NN[,NN...]] [--step] [--json] [--long] [--no-build] [--no-color] [--help]

Builds the suite (CMake preset "default") when the build is missing or stale, then runs every
experiment in teaching order and ends with a summary table.

Options:
  --list          list the experiments and exit
  --only LIST     run only these experiments, e.g. --only 02,05
  --step          pause for Enter before each experiment and each step (for a classroom)
  --json          print the experiments' JSON Lines only (one object per step), nothing else
  --long          also run the steps that take long (minutes: waiting out TIME_WAIT, for example)
  --no-build      do not build; use the programs already in build/default/bin
  --no-color      no colours (also when NO_COLOR is set or output is not a terminal)
  --help          show this help and exit

Environment: PORTREUSE_PRESET selects another preset's build (debug, asan).
EOF
}

usage_error() {
  echo "run-all.sh: $1" >&2
  usage >&2
  exit 2
}

numbers=()
slugs=()
titles=()
while read -r number slug title; do
  [[ $number =~ ^[0-9][0-9]$ ]] || continue
  numbers+=("$number")
  slugs+=("$slug")
  titles+=("$title")
done <"$manifest"

list=false only="" step=false json=false long=false build=true colour=true
while [[ $# -gt 0 ]]; do
  case $1 in
    --list) list=true ;;
    --only)
      [[ $# -ge 2 ]] || usage_error "option --only needs a value (NN[,NN...])"
      only=$2
      shift
      ;;
    --only=*) only=${1#--only=} ;;
    --step) step=true ;;
    --json) json=true ;;
    --long) long=true ;;
    --no-build) build=false ;;
    --no-color) colour=false ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) usage_error "unknown option $1" ;;
  esac
  shift
done

selected=()
if [[ -n $only ]]; then
  IFS=',' read -ra wanted <<<"$only"
  [[ ${#wanted[@]} -gt 0 ]] || usage_error "option --only needs at least one experiment number"
  for number in "${wanted[@]}"; do
    [[ -n $number ]] || usage_error "option --only needs at least one experiment number in each place (like 02,05)"
    found=""
    for index in "${!numbers[@]}"; do [[ ${numbers[$index]} == "$number" ]] && found=$index; done
    [[ -n $found ]] || usage_error "unknown experiment '$number' in --only (see --list)"
    selected+=("$found")
  done
else
  selected=("${!numbers[@]}")
fi

if $list; then
  for index in "${selected[@]}"; do
    printf '%s  %-28s %s\n' "${numbers[$index]}" "${slugs[$index]}" "${titles[$index]}"
  done
  exit 0
fi

if [[ -n ${NO_COLOR:-} || ! -t 1 ]]; then colour=false; fi
bold="" reset=""
if $colour; then
  bold=$'\033[1m'
  reset=$'\033[0m'
fi

say() { $json || printf '%s\n' "$*"; }

if $build; then
  log="$build_dir/run-all-build.log"
  mkdir -p "$build_dir"
  say "Building the suite (preset $preset; log: ${log#"$root"/})..."
  build_failed() {
    echo "run-all.sh: the build failed; the end of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  }
  : >"$log"
  if [[ ! -f $build_dir/CMakeCache.txt ]] && ! cmake --preset "$preset" >>"$log" 2>&1; then
    # The experiments need no test framework: without doctest, build them and say so.
    grep -q "doctest was not found" "$log" || build_failed
    say "doctest is not installed: building the experiments without the tests (apt-get install doctest-dev)."
    cmake --preset "$preset" -DPORTREUSE_BUILD_TESTS=OFF >>"$log" 2>&1 || build_failed
  fi
  cmake --build --preset "$preset" >>"$log" 2>&1 || build_failed
fi
for index in "${selected[@]}"; do
  program="$bin_dir/${numbers[$index]}-${slugs[$index]}"
  if [[ ! -x $program ]]; then
    echo "run-all.sh: $program is not built; run without --no-build (or: cmake --workflow --preset $preset)" >&2
    exit 1
  fi
done

record=$(mktemp "${TMPDIR:-/tmp}/portreuse-run.XXXXXX")
trap 'rm -f "$record"' EXIT
# Ctrl+C reaches the running experiment too (same process group); it kills and reaps its own
# servers before it ends, so all that is left to do here is to stop.
trap 'echo; echo "run-all.sh: interrupted" >&2; exit 130' INT TERM

program_flags=()
$colour || program_flags+=(--no-color)
$step && program_flags+=(--step)

pause() {
  $step || return 0
  $json && return 0
  printf '%s' "  next: $1  [Enter] "
  read -r _ || echo
}

failed=()
started=$(date +%s%N)
for index in "${selected[@]}"; do
  number=${numbers[$index]}
  program="$bin_dir/$number-${slugs[$index]}"
  pause "experiment $number, ${titles[$index]}"
  flags=("${program_flags[@]}")
  # Only programs with long steps know --long.
  if $long && grep -q -- '--long' <<<"$("$program" --help)"; then flags+=(--long); fi
  if $json; then
    "$program" --json "${flags[@]}" || failed+=("$number (exit status $?)")
  else
    "$program" --record "$record" "${flags[@]}" || failed+=("$number (exit status $?)")
  fi
done
elapsed_ms=$((($(date +%s%N) - started) / 1000000))

if ! $json; then
  summary_flags=()
  $colour || summary_flags+=(--no-color)
  "$bin_dir/portreuse-summary" "${summary_flags[@]}" "$record"
  echo "${bold}${#selected[@]} experiment(s) in ${elapsed_ms} ms.${reset} Lessons: lessons/README.md"
fi

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "run-all.sh: these experiments could not run: ${failed[*]} (their messages are above)" >&2
  exit 1
fi
