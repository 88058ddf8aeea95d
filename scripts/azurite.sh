#!/usr/bin/env bash
# Run a private Azurite (the Azure Blob Storage emulator, npm package `azurite` in tests/fakes/js) for
# development and tests.
#
#   scripts/azurite.sh start  <dir> [port]   start it (or, if it already runs on that port, check it answers)
#   scripts/azurite.sh stop   <dir>          stop it; succeeds when it is not running
#   scripts/azurite.sh status <dir>          exit 0 when it answers, 1 when it runs but does not, 3 when stopped
#
# Blob service only, on 127.0.0.1:<port> (default 10000), data in memory (gone when it stops), with the
# well-known development account (devstoreaccount1). `--skipApiVersionCheck` because the current
# azure-storage-blob sends an x-ms-version newer than Azurite knows. <dir> holds azurite.pid, port and
# azurite.log (its output). Start takes ~1 s. `start` installs the npm package first when it is missing
# or stale (scripts/npm.sh: milliseconds when it is up to date).
#
# Environment (read by `start`):
#   AZURITE_START_TIMEOUT   seconds to wait until it answers (default 30)
#   AZURITE_BIN             the azurite-blob executable (default: tests/fakes/js/node_modules/.bin/azurite-blob)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PACKAGE_DIR="$ROOT/tests/fakes/js"

usage() {
  echo "usage: $0 start <dir> [port] | stop <dir> | status <dir>" >&2
  exit 2
}

cmd=${1:-}
dir=${2:-}
[[ -n $cmd && -n $dir ]] || usage
case $cmd in start | stop | status) ;; *) usage ;; esac

if [[ $cmd == start ]]; then
  mkdir -p "$dir"
elif [[ ! -d $dir ]]; then
  [[ $cmd == stop ]] && exit 0
  echo "azurite.sh: not running ($dir does not exist)"
  exit 3
fi
dir=$(cd "$dir" && pwd)
pidfile="$dir/azurite.pid"
portfile="$dir/port"
log="$dir/azurite.log"

DAEMON_NAME=azurite.sh
# shellcheck source=lib/daemon.sh
source "$ROOT/scripts/lib/daemon.sh"

# The Azurite started from this directory, if it is alive: it runs in <dir> (its working directory;
# --location cannot be combined with --inMemoryPersistence).
running_pid() {
  local pid
  pid=$(daemon_pid azurite-blob) || return 1
  [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$dir" ]] || return 1
  echo "$pid"
}

# Something answers HTTP on the port and says it is Azurite's blob service.
answers() { # port
  curl -s -m 2 -o /dev/null -D - "http://127.0.0.1:$1/devstoreaccount1?comp=list" 2>/dev/null |
    grep -qi '^server: *azurite-blob'
}

wait_until_ready() { # pid port
  daemon_wait "$1" "${AZURITE_START_TIMEOUT:-30}" answers "$2"
}

start() {
  local port=${1:-10000} pid bin t0 old_port
  valid_port "$port" || die "bad port: $port"
  if pid=$(running_pid); then
    old_port=$(cat "$portfile" 2>/dev/null || echo "?")
    [[ $old_port == "$port" ]] || die "already running from $dir on port $old_port (pid $pid); stop it first"
    wait_until_ready "$pid" "$port" || {
      show_logs
      die "running (pid $pid) but Azurite does not answer on 127.0.0.1:$port"
    }
    say "already running on 127.0.0.1:$port (pid $pid)"
    return 0
  fi
  if [[ -n ${AZURITE_BIN:-} ]]; then
    bin=$AZURITE_BIN
  else
    "$ROOT/scripts/npm.sh" "$PACKAGE_DIR" >&2 || die "could not install azurite ($PACKAGE_DIR)"
    bin="$PACKAGE_DIR/node_modules/.bin/azurite-blob"
  fi
  [[ -x $bin ]] || die "azurite-blob not found at $bin; run scripts/npm.sh tests/fakes/js"
  port_in_use "$port" && die "port $port is already in use"

  rm -f "$pidfile"
  echo "$port" >"$portfile"
  : >"$log"

  t0=$(date +%s.%N)
  # In its own session: we know its pid at once, it outlives this script, and a Ctrl-C meant for the
  # caller's terminal does not reach it.
  (
    cd "$dir"
    exec setsid "$bin" --blobHost 127.0.0.1 --blobPort "$port" \
      --inMemoryPersistence --loose --skipApiVersionCheck --disableTelemetry
  ) </dev/null >>"$log" 2>&1 &
  pid=$!
  echo "$pid" >"$pidfile"
  if ! wait_until_ready "$pid" "$port"; then
    show_logs
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      die "Azurite did not answer on 127.0.0.1:$port within ${AZURITE_START_TIMEOUT:-30} s"
    fi
    die "azurite-blob exited before it answered (see above)"
  fi
  say "up on http://127.0.0.1:$port/devstoreaccount1 (pid $pid, $(elapsed_since "$t0") s)"
}

stop() { daemon_stop 50; }

status() {
  local pid port
  if ! pid=$(running_pid); then
    say "not running"
    return 3
  fi
  port=$(cat "$portfile" 2>/dev/null || echo 10000)
  if answers "$port"; then
    say "running on http://127.0.0.1:$port/devstoreaccount1 (pid $pid)"
    return 0
  fi
  say "running (pid $pid) but Azurite does not answer on 127.0.0.1:$port"
  return 1
}

case $cmd in
  start) start "${3:-10000}" ;;
  stop) stop ;;
  status) status ;;
esac
