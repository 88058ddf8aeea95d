# shellcheck shell=bash
# Process handling shared by the scripts that run a private server (scripts/s3.sh, azurite.sh, oidc.sh).
# Sourced, never run. Before sourcing, the script sets:
#   DAEMON_NAME   how messages start (e.g. "s3.sh")
#   pidfile       where the server's pid is written
#   log           the server's output (shown when it does not come up)

say() { echo "$DAEMON_NAME: $*"; }
die() {
  echo "$DAEMON_NAME: $*" >&2
  exit 1
}

# The pid in $pidfile if that process is alive AND its command line contains <marker> (a path of our
# directory): a recycled pid never gets a signal from us.
daemon_pid() { # marker
  local pid
  [[ -f $pidfile ]] || return 1
  pid=$(tr -dc 0-9 <"$pidfile")
  [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$1" || return 1
  echo "$pid"
}

port_in_use() { # port
  # shellcheck disable=SC2016
  timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/"$1"' _ "$1" 2>/dev/null
}

valid_port() { # port
  [[ $1 =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= 65535))
}

# n free TCP ports on 127.0.0.1, all held at once while choosing so they differ.
free_ports() { # n
  python3 - "$1" <<'PY'
import socket, sys
held = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
PY
}

show_logs() {
  [[ -s $log ]] || return 0
  echo "---- $log (last 40 lines) ----" >&2
  tail -n 40 "$log" >&2
}

# Poll `check ARGS...` every 0.1 s until it succeeds (0), the process dies or the timeout passes (1).
daemon_wait() { # pid timeout_s check [args...]
  local pid=$1 deadline=$((SECONDS + $2))
  shift 2
  while ((SECONDS < deadline)); do
    if "$@"; then return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# SIGTERM, up to <grace> tenths of a second to exit, then SIGKILL and 5 s more.
stop_pid() { # pid grace_tenths
  local pid=$1 grace=$2 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < grace; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  die "pid $pid does not exit"
}

elapsed_since() { # t0 (date +%s.%N)
  awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'
}

# The `stop` command: stop the server `running_pid` (defined by the script) names, giving it
# <grace_tenths> tenths of a second before KILL, then remove the pidfile and any <files>.
daemon_stop() { # grace_tenths [files...]
  local pid grace=$1
  shift
  if pid=$(running_pid); then
    stop_pid "$pid" "$grace"
    say "stopped (pid $pid)"
  else
    say "not running"
  fi
  rm -f "$pidfile" "$@"
}
