#!/usr/bin/env bash
# Run a private OpenID Connect provider (npm `oidc-provider` 9.13 in tests/fakes/oidc, provider.mjs) for
# development and tests.
#
#   scripts/oidc.sh start  <dir> [port] [config.json]   start it (or, if it already runs on that port with
#                                                       the same config, check it answers)
#   scripts/oidc.sh stop   <dir>                        stop it; succeeds when it is not running
#   scripts/oidc.sh status <dir>                        exit 0 when it answers, 1 when it runs but does not,
#                                                       3 when stopped
#
# Issuer http://127.0.0.1:<port> (default 9400), listening on 127.0.0.1 only. The config (clients, users,
# optional initial access token for dynamic registration; format in tests/fakes/oidc/provider.mjs) is
# copied to <dir>/config.json; without one, an existing <dir>/config.json is used, else a development one
# is written (client filegate-dev / filegate-dev-secret, redirect URI
# http://127.0.0.1/v1/auth/oidc/dev/callback on any port, user alice@example.test / alice-password).
# <dir> also holds oidc.pid, port and oidc.log (the provider's output). State (sessions, codes, registered
# clients) is in memory and the signing key is made at start: both are gone when it stops. Start takes
# ~0.5 s; `start` installs the npm package first when it is missing or stale (scripts/npm.sh: milliseconds
# when it is up to date).
#
# Environment (read by `start`):
#   OIDC_START_TIMEOUT   seconds to wait until discovery answers (default 30)
#   NODE_BIN             the node executable (default: node on PATH)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PACKAGE_DIR="$ROOT/tests/fakes/oidc"

usage() {
  echo "usage: $0 start <dir> [port] [config.json] | stop <dir> | status <dir>" >&2
  exit 2
}

cmd=${1:-}
dir=${2:-}
[[ -n $cmd && -n $dir ]] || usage
case $cmd in start | stop | status) ;; *) usage ;; esac

# The config path as given, resolved against the caller's directory before anything changes.
given_config=""
if [[ $cmd == start && -n ${4:-} ]]; then
  [[ -f $4 ]] || {
    echo "oidc.sh: $4: no such config file" >&2
    exit 1
  }
  given_config=$(cd "$(dirname "$4")" && pwd)/$(basename "$4")
fi

if [[ $cmd == start ]]; then
  mkdir -p "$dir"
elif [[ ! -d $dir ]]; then
  [[ $cmd == stop ]] && exit 0
  echo "oidc.sh: not running ($dir does not exist)"
  exit 3
fi
dir=$(cd "$dir" && pwd)
pidfile="$dir/oidc.pid"
portfile="$dir/port"
config="$dir/config.json"
log="$dir/oidc.log"

DAEMON_NAME=oidc.sh
# shellcheck source=lib/daemon.sh
source "$ROOT/scripts/lib/daemon.sh"

# The provider started from this directory, if it is alive: its command line names our config file.
running_pid() { daemon_pid "$PACKAGE_DIR/provider.mjs"' '"$(cat "$portfile" 2>/dev/null)"' '"$config"; }

# Discovery answers and names the issuer this port should have.
answers() { # port
  curl -s -m 2 "http://127.0.0.1:$1/.well-known/openid-configuration" 2>/dev/null |
    grep -qF "\"issuer\":\"http://127.0.0.1:$1\""
}

wait_until_ready() { # pid port
  daemon_wait "$1" "${OIDC_START_TIMEOUT:-30}" answers "$2"
}

write_default_config() {
  cat >"$config" <<'EOF'
{
  "clients": [
    {
      "client_id": "filegate-dev",
      "client_secret": "filegate-dev-secret",
      "redirect_uris": ["http://127.0.0.1/v1/auth/oidc/dev/callback"]
    }
  ],
  "users": [
    {
      "sub": "alice",
      "email": "alice@example.test",
      "email_verified": true,
      "name": "Alice Example",
      "password": "alice-password"
    }
  ],
  "initial_access_token": "filegate-dev-registration"
}
EOF
}

start() {
  local port=${1:-9400} pid node t0 old_port
  valid_port "$port" || die "bad port: $port"
  if pid=$(running_pid); then
    old_port=$(cat "$portfile" 2>/dev/null || echo "?")
    [[ $old_port == "$port" ]] || die "already running from $dir on port $old_port (pid $pid); stop it first"
    if [[ -n $given_config && $given_config != "$config" ]] && ! cmp -s "$given_config" "$config"; then
      die "already running from $dir (pid $pid) with another config; stop it first"
    fi
    wait_until_ready "$pid" "$port" || {
      show_logs
      die "running (pid $pid) but the provider does not answer on 127.0.0.1:$port"
    }
    say "already running on http://127.0.0.1:$port (pid $pid)"
    return 0
  fi
  node=${NODE_BIN:-$(command -v node || true)}
  [[ -n $node && -x $node ]] || die "node not found (Node.js >= 20 is needed; scripts/npm.sh can install it)"
  "$ROOT/scripts/npm.sh" "$PACKAGE_DIR" >&2 || die "could not install oidc-provider ($PACKAGE_DIR)"
  port_in_use "$port" && die "port $port is already in use"

  if [[ -n $given_config ]]; then
    [[ $given_config == "$config" ]] || cp "$given_config" "$config"
  elif [[ ! -f $config ]]; then
    write_default_config
  fi
  rm -f "$pidfile"
  echo "$port" >"$portfile"
  : >"$log"

  t0=$(date +%s.%N)
  # In its own session: we know its pid at once, it outlives this script, and a Ctrl-C meant for the
  # caller's terminal does not reach it.
  (
    cd "$PACKAGE_DIR"
    exec setsid "$node" "$PACKAGE_DIR/provider.mjs" "$port" "$config"
  ) </dev/null >>"$log" 2>&1 &
  pid=$!
  echo "$pid" >"$pidfile"
  if ! wait_until_ready "$pid" "$port"; then
    show_logs
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      die "the provider did not answer on 127.0.0.1:$port within ${OIDC_START_TIMEOUT:-30} s"
    fi
    die "provider.mjs exited before it answered (see above)"
  fi
  say "up on http://127.0.0.1:$port (pid $pid, $(elapsed_since "$t0") s)"
}

stop() { daemon_stop 50; }

status() {
  local pid port
  if ! pid=$(running_pid); then
    say "not running"
    return 3
  fi
  port=$(cat "$portfile" 2>/dev/null || echo 9400)
  if answers "$port"; then
    say "running on http://127.0.0.1:$port (pid $pid)"
    return 0
  fi
  say "running (pid $pid) but the provider does not answer on 127.0.0.1:$port"
  return 1
}

case $cmd in
  start) start "${3:-9400}" ;;
  stop) stop ;;
  status) status ;;
esac
