#!/usr/bin/env bash
# test.sh: the README's test command. On a fresh machine it first installs what the tests need
# (doctest-dev, and tmux for the terminal tests) when it is missing, then configures, builds and
# runs the tests: cmake --workflow --preset default.
#
# Debian/Ubuntu: it installs with apt-get, as root directly or through `sudo -n` (never asking for
# a password); otherwise it stops and prints the one command to run. Other systems: it says what
# to install and goes on (CMake then tries a pinned doctest release).
#
# Usage: scripts/test.sh [--no-install] [--help]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
  cat <<'EOF'
Usage: scripts/test.sh [--no-install] [--help]

Installs doctest-dev and tmux when they are missing (Debian/Ubuntu, apt-get),
then configures, builds and runs the tests: cmake --workflow --preset default.

Options:
  --no-install    do not install anything; only say what is missing
  --help          show this help and exit
EOF
}

# Control characters in what a user typed never reach the terminal raw.
printable() { printf '%q' "$1"; }

install=true
while [[ $# -gt 0 ]]; do
  case $1 in
    --no-install) install=false ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "test.sh: unknown option $(printable "$1") (see scripts/test.sh --help)" >&2
      exit 2
      ;;
  esac
  shift
done

debian=false
if [[ -r /etc/debian_version ]] && command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1; then
  debian=true
fi

installed() {  # a Debian package, installed for real (not only known or half-removed)
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

needed=()   # the tests cannot build without these
wanted=()   # the terminal tests (ctest --preset terminal) need these; the default tests do not
if $debian; then
  command -v cmake >/dev/null 2>&1 || needed+=(cmake)
  command -v c++ >/dev/null 2>&1 || needed+=(g++)
  installed doctest-dev || needed+=(doctest-dev)
  command -v tmux >/dev/null 2>&1 || wanted+=(tmux)
fi

missing=("${needed[@]}" "${wanted[@]}")
if [[ ${#missing[@]} -gt 0 ]]; then
  inner="apt-get update && apt-get install -y ${missing[*]}"
  one_command="su -c '$inner'"
  command -v sudo >/dev/null 2>&1 && one_command="sudo sh -c '$inner'"
  as_root=()
  if [[ $(id -u) -eq 0 ]]; then
    as_root=(env)
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n env)
  fi
  if $install && [[ ${#as_root[@]} -gt 0 ]]; then
    echo "test.sh: installing ${missing[*]} (apt-get)"
    apt=("${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=120)
    # The package lists of a fresh machine can be empty or stale: update only when needed.
    if ! "${apt[@]}" install "${missing[@]}" >/dev/null 2>&1; then
      "${apt[@]}" update >/dev/null
      "${apt[@]}" install "${missing[@]}" >/dev/null
    fi
  elif [[ ${#needed[@]} -gt 0 ]]; then
    echo "test.sh: the tests need ${needed[*]}${wanted:+ (and ${wanted[*]} for the terminal tests)}." >&2
    echo "This user cannot install them; run:" >&2
    echo "  $one_command" >&2
    echo "then scripts/test.sh again." >&2
    exit 1
  else
    echo "test.sh: the terminal tests (ctest --preset terminal) need ${wanted[*]}; run:" >&2
    echo "  $one_command" >&2
  fi
fi

if ! $debian && [[ ! -f /usr/include/doctest/doctest.h && ! -f /usr/local/include/doctest/doctest.h &&
  ! -f /opt/homebrew/include/doctest/doctest.h ]]; then
  cat >&2 <<'EOF'
test.sh: doctest does not seem to be installed; install it (and tmux for the
terminal tests):
  Fedora: sudo dnf install doctest-devel tmux
  Arch:   sudo pacman -S doctest tmux
  macOS:  brew install doctest tmux        vcpkg: vcpkg install doctest
Going on: CMake tries a pinned doctest release and says so if it cannot.
EOF
fi

exec cmake --workflow --preset default
