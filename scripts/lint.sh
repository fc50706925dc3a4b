#!/usr/bin/env bash
# lint.sh: clang-format (no diff allowed) and clang-tidy (no warning allowed) over the C++ sources.
# Usage: scripts/lint.sh   (after a configure of the default preset, for compile_commands.json)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mapfile -t sources < <(git ls-files 'experiments/*.cpp' 'experiments/*.hpp')
clang-format --dry-run --Werror "${sources[@]}"

# A configure of its own: clang-tidy reads neither the lab's precompiled header nor unity batches.
cmake -S . -B build/lint -DCMAKE_BUILD_TYPE=Debug -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
  -DCMAKE_DISABLE_PRECOMPILE_HEADERS=ON -DPORTREUSE_FAST_BUILD=OFF >/dev/null
mapfile -t units < <(printf '%s\n' "${sources[@]}" | grep '\.cpp$')
report=$(printf '%s\n' "${units[@]}" |
  xargs -P 2 -n 4 clang-tidy -p build/lint --quiet 2>/dev/null | grep -E 'warning:|error:' || true)
if [[ -n $report ]]; then
  echo "$report"
  echo "lint.sh: clang-tidy has $(wc -l <<<"$report") finding(s)" >&2
  exit 1
fi
echo "lint.sh: clang-format and clang-tidy are quiet over ${#sources[@]} files"
