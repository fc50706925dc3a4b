#!/usr/bin/env bash
# run-all.sh: build what the run needs, run every experiment in the manifest's order, narrate
# each one, and end with a table of what the articles claim and what this machine did. On a cold
# build the first experiment runs as soon as its program is linked, while the rest still build.
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
#   16 time-wait-accepts
#   17 zero-downtime-restart
#   18 client-traps
#
# Usage: scripts/run-all.sh [--list] [--only 02,05] [--step] [--quiz] [--json] [--long] [--no-ladder]
#                           [--no-build] [--no-color] [--help]
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
manifest="$root/experiments/manifest.txt"

usage() {
  cat <<'USAGE'
Usage: scripts/run-all.sh [--list] [--only NN[,NN...]] [--step] [--quiz] [--json]
                          [--long] [--no-ladder] [--no-build] [--no-color] [--help]

Builds the programs this run needs (CMake preset "default") when they are
missing or stale, runs the experiments in teaching order (each one as soon as
it is built, while the others still build) and ends with a summary table.

Options:
  --list          list the experiments and exit
  --only LIST     run only these experiments, e.g. --only 02,05 (or 2,5)
  --step          pause for Enter before each experiment and step (classroom)
  --quiz          predict each step's outcome before it runs; the score is kept
                  (needs a terminal; with --json the answers go into the JSON)
  --json          print the experiments' JSON Lines only (one object per step)
  --long          also run the steps that take minutes (waiting out TIME_WAIT)
  --no-ladder     do not show the packet ladders (shown by default for the
                  experiments whose lesson is on the wire: 02 03 04 10 16)
  --no-build      do not build; use the programs already in build/default/bin
  --no-color      no colours (also with NO_COLOR set or output not a terminal)
  --help          show this help and exit

Environment: PORTREUSE_PRESET names another configure preset of
CMakePresets.json (debug, asan) whose build to use.
USAGE
}

# What a user typed, shown on one line: control characters escaped (bash's $'...' quoting).
shown() {
  if [[ $1 == *[[:cntrl:]]* ]]; then printf '%q' "$1"; else printf '%s' "$1"; fi
}

usage_error() {
  echo "run-all.sh: $1 (see scripts/run-all.sh --help)" >&2
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

list=false only="" only_given=false step=false quiz=false json=false long=false ladder=true build=true colour=true
while [[ $# -gt 0 ]]; do
  case $1 in
    --list) list=true ;;
    --only)
      [[ $# -ge 2 ]] || usage_error "option --only needs a value (NN[,NN...])"
      only=$2 only_given=true
      shift
      ;;
    --only=*) only=${1#--only=} only_given=true ;;
    --step) step=true ;;
    --quiz) quiz=true ;;
    --no-ladder) ladder=false ;;
    --json) json=true ;;
    --long) long=true ;;
    --no-build) build=false ;;
    --no-color) colour=false ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) usage_error "unknown option $(shown "$1")" ;;
  esac
  shift
done

# A quiz reads the student's answers from the terminal.
if $quiz && [[ ! -t 0 ]]; then usage_error "--quiz needs a terminal to read the answers from"; fi

selected=()
if $only_given; then
  [[ -n $only ]] || usage_error "option --only needs at least one experiment number (like 02,05)"
  [[ $only =~ ^[0-9,]+$ ]] ||
    usage_error "option --only takes experiment numbers and commas, not $(shown "$only")"
  [[ $only =~ (^,|,,|,$) ]] && usage_error "option --only has an empty item in '$(shown "$only")' (want NN[,NN...])"
  IFS=',' read -ra wanted <<<"$only"
  for item in "${wanted[@]}"; do
    # 2 and 02 name the same experiment.
    [[ $item =~ ^[0-9]{1,2}$ ]] || usage_error "unknown experiment '$item' in --only"
    number=$(printf '%02d' "$((10#$item))")
    found=""
    for index in "${!numbers[@]}"; do [[ ${numbers[$index]} == "$number" ]] && found=$index; done
    [[ -n $found ]] || usage_error "unknown experiment '$item' in --only"
    for earlier in "${selected[@]}"; do
      [[ $earlier == "$found" ]] && usage_error "experiment $number is named twice in --only"
    done
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

# The preset names a build directory: only a configure preset of CMakePresets.json will do (not
# a hidden one), so that no path can be smuggled in through it.
configure_presets() {
  awk '/"configurePresets"/ { inside = 1 } /"buildPresets"/ { inside = 0 }
       inside && /"name":/ { split($0, quoted, "\""); name = quoted[4]; names[++count] = name }
       inside && /"hidden": *true/ { hidden[name] = 1 }
       END { for (i = 1; i <= count; ++i) if (!(names[i] in hidden)) print names[i] }' "$root/CMakePresets.json"
}
preset=${PORTREUSE_PRESET:-default}
# The whole list first: `grep -q` in a pipeline could end awk early (SIGPIPE, with pipefail).
mapfile -t presets < <(configure_presets)
known=false
for name in "${presets[@]}"; do [[ $name == "$preset" ]] && known=true; done
if [[ ! $preset =~ ^[A-Za-z0-9_-]+$ ]] || ! $known; then
  list=$(printf '%s, ' "${presets[@]}")
  usage_error "PORTREUSE_PRESET=$(shown "$preset") is not a configure preset of CMakePresets.json (${list%, })"
fi
build_dir="$root/build/$preset"
# PORTREUSE_BIN_DIR lets the tests point run-all at the build they belong to.
bin_dir=${PORTREUSE_BIN_DIR:-$build_dir/bin}

if [[ -n ${NO_COLOR:-} || ! -t 1 ]]; then colour=false; fi
bold="" reset=""
if $colour; then
  bold=$'\033[1m'
  reset=$'\033[0m'
fi

say() { $json || printf '%s\n' "$*"; }

program_of() { printf '%s' "$bin_dir/${numbers[$1]}-${slugs[$1]}"; }

# ---- The build: in the background, the first program first --------------------------------
# A builder in a process group of its own first precompiles the lab's header, which every other
# compile reads (the summary tool compiles beside it). Then three things go on at once: the
# libraries that every program links (two jobs); the experiments' objects in order (two
# compilers, at a lower priority, so that they take only the cores the libraries leave idle and
# never slow a running experiment down); and the links, in order, each as soon as its object and
# the libraries are there. Every step leaves a mark in $work (NAME.ok or NAME.failed, and NAME.log);
# the run waits only for the program it is about to start. Whatever happens, the builder's whole
# group is stopped when run-all ends, and it stops by itself when run-all is gone (SIGKILL).
work=""
builder_pid=""
cleanup() {
  if [[ -n $builder_pid ]]; then
    kill -TERM -- "-$builder_pid" 2>/dev/null || kill -TERM "$builder_pid" 2>/dev/null || true
    wait "$builder_pid" 2>/dev/null || true
  fi
  [[ -z $work ]] || rm -rf "$work"
}
trap cleanup EXIT
# Ctrl+C reaches the running experiment too (same process group); it kills and reaps its own
# servers before it ends, so all that is left to do here is to stop the build and end.
trap 'echo; echo "run-all.sh: interrupted" >&2; exit 130' INT TERM

# Every step calls make, the generator of every preset (CMakePresets.json), in the build tree:
# through `cmake --build` each of its 40 steps would start one more process, 30 ms of a core.
# FIRST, the summary tool, reads no precompiled header (experiments/CMakeLists.txt), so its
# object compiles beside the header; every TARGET's object reads the header.
builder() {  # builder PARENT_PID WORK_DIR BUILD_DIR FIRST=OBJECT TARGET=OBJECT...   (own group)
  local parent=$1 work=$2 build_dir=$3 first=$4
  shift 4
  marked() {  # marked NAME COMMAND...: runs COMMAND, output in NAME.log; leaves NAME.ok or .failed
    local name=$1
    shift
    if "$@" >"$work/$name.log" 2>&1; then : >"$work/$name.ok"; else : >"$work/$name.failed"; fi
  }
  local nap_fd
  exec {nap_fd}<> <(:)  # a pause without a process, as in wait_for_target
  until_marked() {  # until_marked NAME: waits for NAME.ok (status 0) or NAME.failed (status 1)
    while [[ ! -e $work/$1.ok ]]; do
      [[ -e $work/$1.failed ]] && return 1
      kill -0 "$parent" 2>/dev/null || exit 0  # run-all is gone: stop building
      read -rt 0.02 -u "$nap_fd" _ || true
    done
  }
  compiler() {  # compiles the objects of the targets the other compiler has not taken, in order
    local pair
    for pair in "$@"; do
      kill -0 "$parent" 2>/dev/null || exit 0
      mkdir "$work/${pair%%=*}.claimed" 2>/dev/null || continue
      marked "${pair%%=*}.object" nice -n 10 make -C "$build_dir/experiments" "${pair#*=}"
    done
  }
  marked "${first%%=*}.object" make -C "$build_dir/experiments" "${first#*=}" &
  marked portreuse_lab_header make -C "$build_dir" portreuse_lab_header
  until_marked portreuse_lab_header || exit 1
  marked portreuse_libraries make -C "$build_dir" -j2 portreuse_libraries &
  compiler "$@" &
  compiler "$@" &
  local pair target
  for pair in "$first" "$@"; do
    target=${pair%%=*}
    until_marked portreuse_libraries || break
    if until_marked "$target.object"; then
      marked "$target" make -C "$build_dir" "$target/fast"
    else
      cp "$work/$target.object.log" "$work/$target.log"
      : >"$work/$target.failed"
    fi
  done
  wait
}

# Waits until TARGET is built; on a failed build, says so with the end of its log and exits.
wait_for_target() {
  local target=$1 failed="" step nap_fd=""
  while [[ ! -e $work/$target.ok ]]; do
    for step in portreuse_lab_header portreuse_libraries "$target"; do
      [[ -e $work/$step.failed ]] && failed=$step && break
    done
    if [[ -n $failed ]]; then
      local log="$build_dir/run-all-build.log"
      cp "$work/$failed.log" "$log"
      echo "run-all.sh: building $failed failed; the end of ${log#"$root"/}:" >&2
      tail -n 30 "$log" >&2
      exit 1
    elif ! kill -0 "$builder_pid" 2>/dev/null && [[ ! -e $work/$target.ok ]]; then
      echo "run-all.sh: the build stopped before $target was built" >&2
      exit 1
    fi
    # A pause without a process: a read that times out on a pipe nobody writes to (closed
    # again before the program runs). On this 2-core machine, a `sleep` process every 20 ms cost
    # a tenth of a core that the compilers need.
    [[ -n $nap_fd ]] || exec {nap_fd}<> <(:)
    read -rt 0.05 -u "$nap_fd" _ || true
  done
  [[ -z $nap_fd ]] || exec {nap_fd}>&-
}

if $build; then
  mkdir -p "$build_dir"
  work=$(mktemp -d "$build_dir/.run-all.XXXXXX")
  # One build at a time in a build tree: a second run-all waits here until the first one's
  # builder is done (which holds the lock from here on), then finds its programs built. flock(1)
  # comes with util-linux; the wait is bounded, and after it the run builds beside the other.
  lock_fd=""
  if command -v flock >/dev/null 2>&1; then
    exec {lock_fd}>"$build_dir/.run-all.lock"
    if ! flock -n "$lock_fd"; then
      say "Waiting for another run-all's build of this tree (at most 5 minutes)..."
      flock -w 300 "$lock_fd" || echo "run-all.sh: the other build still runs; building beside it" >&2
    fi
  fi
  if [[ ! -f $build_dir/CMakeCache.txt ]]; then
    say "Configuring the build (preset $preset)..."
    # run-all needs no test framework: the tests' configure is scripts/test.sh's business.
    if ! cmake --preset "$preset" -DPORTREUSE_BUILD_TESTS=OFF >"$work/configure.log" 2>&1; then
      cp "$work/configure.log" "$build_dir/run-all-build.log"
      echo "run-all.sh: configuring the build failed; the end of build/$preset/run-all-build.log:" >&2
      tail -n 30 "$build_dir/run-all-build.log" >&2
      exit 1
    fi
  fi
  # Each target with its object's rule (experiments/NN_slug.cpp, with "_" for "-"), the summary
  # tool first.
  targets=(portreuse-summary=tools/summary.cpp.o)
  for index in "${selected[@]}"; do
    targets+=("experiment_${numbers[$index]}=${numbers[$index]}_${slugs[$index]//-/_}.cpp.o")
  done
  say "Building the programs this run needs (preset $preset), the first ones first..."
  if command -v setsid >/dev/null 2>&1; then
    setsid bash -c "$(declare -f builder); builder \"\$@\"" builder "$$" "$work" "$build_dir" "${targets[@]}" \
      </dev/null >/dev/null 2>&1 &
  else
    builder "$$" "$work" "$build_dir" "${targets[@]}" </dev/null >/dev/null 2>&1 &
  fi
  builder_pid=$!
  [[ -z $lock_fd ]] || exec {lock_fd}>&-  # the builder holds it; the experiments must not
  wait_for_target portreuse-summary
else
  needed=("$bin_dir/portreuse-summary")
  for index in "${selected[@]}"; do needed+=("$(program_of "$index")"); done
  for program in "${needed[@]}"; do
    if [[ ! -x $program ]]; then
      echo "run-all.sh: $program is not built; run without --no-build (or: cmake --build --preset $preset)" >&2
      exit 1
    fi
  done
fi

# ---- Loopback, once, before any program -----------------------------------------------------
# Every experiment needs a working loopback; when it does not carry a connection, one message
# says so here instead of fifteen programs saying it fifteen times.
if ! problem=$("$bin_dir/portreuse-summary" --preflight 2>&1); then
  echo "run-all.sh: the experiments could not run: ${problem#portreuse-summary: }" >&2
  exit 1
fi

# ---- The record the summary reads: a file nobody else can see -------------------------------
# Narrated runs append their JSON Lines to a file that is unlinked at once and reached through
# this shell's descriptor (/dev/fd/N), so no record is ever left behind, even after SIGKILL.
# JSON mode needs none.
record_fd=""
if ! $json; then
  for directory in "$build_dir" "${TMPDIR:-/tmp}" /tmp; do
    [[ -d $directory && -w $directory ]] || continue
    record=$(mktemp "$directory/.portreuse-run.XXXXXX" 2>/dev/null) || continue
    exec {record_fd}<>"$record"
    rm -f "$record"
    break
  done
  if [[ -z $record_fd ]]; then
    echo "run-all.sh: cannot create the record for the summary (no writable build or temporary directory)" >&2
    exit 1
  fi
fi

program_flags=()
$colour || program_flags+=(--no-color)
$step && program_flags+=(--step)
$quiz && program_flags+=(--quiz)

# The experiments whose lesson is on the wire show their packet ladder (issue 11): who sends the
# first FIN (02, 03), a connection that outlives its listener (04), the reset of SO_LINGER 0 (10),
# and the segments a TIME_WAIT still accepts (16).
ladder_numbers=" 02 03 04 10 16 "

pause() {
  $step || return 0
  $json && return 0
  printf '%s' "  next: $1  [Enter] "
  read -r _ || echo
}

failed=()
elapsed_us=0  # the programs' own time, without the waits for the build
for index in "${selected[@]}"; do
  number=${numbers[$index]}
  program="$bin_dir/$number-${slugs[$index]}"  # as program_of, without a subshell
  $build && wait_for_target "experiment_$number"
  pause "experiment $number, ${titles[$index]}"
  flags=("${program_flags[@]}")
  # Only programs with long steps know --long.
  if $long && grep -q -- '--long' <<<"$("$program" --help)"; then flags+=(--long); fi
  if $ladder && [[ $ladder_numbers == *" $number "* ]]; then flags+=(--ladder); fi
  status=0
  started=${EPOCHREALTIME//[!0-9]/}  # microseconds, without forking date (any locale's point)
  if $json; then
    "$program" --json "${flags[@]}" || status=$?
  else
    "$program" --record "/dev/fd/$record_fd" "${flags[@]}" || status=$?
  fi
  elapsed_us=$((elapsed_us + ${EPOCHREALTIME//[!0-9]/} - started))
  [[ $status -eq 0 ]] || failed+=("$number (exit status $status)")
done
elapsed_ms=$((elapsed_us / 1000))

if ! $json; then
  summary_flags=()
  $colour || summary_flags+=(--no-color)
  summary_status=0
  "$bin_dir/portreuse-summary" "${summary_flags[@]}" "/dev/fd/$record_fd" || summary_status=$?
  [[ $summary_status -le 1 ]] || exit "$summary_status"
  echo "${bold}${#selected[@]} experiment(s) in ${elapsed_ms} ms.${reset} Lessons: lessons/README.md"
  if $quiz; then
    asked=$(grep -c '"prediction":"' "/dev/fd/$record_fd" || true)
    right=$(grep -c '"predicted_right":true' "/dev/fd/$record_fd" || true)
    echo "${bold}Your predictions: $right of $asked right.${reset}"
  fi
fi

if [[ ${#failed[@]} -gt 0 ]]; then
  # The programs' own messages went to standard error while they ran, before these lines.
  list=$(printf '%s, ' "${failed[@]}")
  echo "run-all.sh: these experiments could not run: ${list%, }; each said why on standard error above" |
    fold -s -w 80 >&2
  exit 1
fi
