#!/usr/bin/env bash
# Install the Node packages of each directory given (default: tests/e2e/js) from its package-lock.json,
# idempotently: `npm ci` runs only when node_modules is missing or older than package-lock.json /
# package.json, so a rerun on a warm checkout costs milliseconds. Safe to run concurrently (pytest-xdist
# workers each call it): installs of one directory are serialised with flock. Never reads stdin.
#
#   scripts/npm.sh [DIR...]
#
# Needs node >= 18 and npm; when they are missing, tries `apt-get install nodejs npm` (as root, or with
# passwordless sudo) and fails with a clear message otherwise.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

die() {
  echo "npm.sh: $*" >&2
  exit 1
}

ensure_node() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    local sudo=""
    if [[ $(id -u) -ne 0 ]]; then
      if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo="sudo -n"
      else
        die "node and npm are required (not on PATH) and cannot be installed without root; install Node.js >= 18 and npm"
      fi
    fi
    command -v apt-get >/dev/null || die "node and npm are required (not on PATH); install Node.js >= 18 and npm"
    echo "npm.sh: node/npm missing, apt-get install nodejs npm" >&2
    $sudo apt-get update -qq </dev/null || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nodejs npm </dev/null ||
      die "apt-get install nodejs npm failed; install Node.js >= 18 and npm"
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
      die "node/npm still not on PATH after apt-get install"
    fi
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]' </dev/null) || die "node does not run"
  ((major >= 18)) || die "node >= 18 is required, found $(node --version </dev/null)"
}

# Installed and up to date: npm ci writes node_modules/.package-lock.json last; it must be newer than
# both manifests.
fresh() {
  local dir=$1 marker=$1/node_modules/.package-lock.json
  [[ -f $marker && ! $dir/package-lock.json -nt $marker && ! $dir/package.json -nt $marker ]]
}

install_dir() {
  local dir=$1
  [[ -d $dir ]] || die "$dir: no such directory"
  [[ -f $dir/package.json ]] || die "$dir: no package.json"
  [[ -f $dir/package-lock.json ]] || die "$dir: no package-lock.json (run npm install there once and commit it)"
  fresh "$dir" && return 0

  ensure_node
  local lock
  lock="${TMPDIR:-/tmp}/filegate-npm-$(realpath "$dir" | sha256sum | cut -c1-16).lock"
  (
    if command -v flock >/dev/null; then
      exec 9>"$lock"
      flock -w 600 9 || die "$dir: timed out waiting for another npm ci ($lock)"
    fi
    # Another process may have installed while we waited for the lock.
    fresh "$dir" && exit 0
    echo "npm.sh: npm ci in $dir" >&2
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error </dev/null >&2) || die "$dir: npm ci failed"
    # The marker's mtime is what fresh() compares: make it "installed now" whatever npm wrote.
    touch "$dir/node_modules/.package-lock.json"
  )
}

# Directories given are relative to the caller's working directory; the default is in the repository.
if (($# == 0)); then
  set -- "$root/tests/e2e/js"
fi
for dir in "$@"; do
  install_dir "${dir%/}"
done
