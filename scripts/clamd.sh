#!/usr/bin/env bash
# Run a private clamd for development and tests, next to (never instead of) a system one.
#
#   scripts/clamd.sh start  <dir> [port]   start it (or, if it already runs, check it answers PING)
#   scripts/clamd.sh stop   <dir>          stop it; succeeds when it is not running
#   scripts/clamd.sh status <dir>          exit 0 when it answers PING, 1 when it runs but does not, 3 when stopped
#
# Everything lives in <dir>: clamd.conf, db/ (our test signatures and, when present, the official
# databases), tmp/ (clamd spools every INSTREAM there), run/ (clamd.pid, clamd.sock), clamd.log
# (clamd's log) and clamd.out (its stdout/stderr), all private to clamd's user (directories 0700,
# files 0600). It listens on the unix socket <dir>/run/clamd.sock (mode 0600): clamd has no
# authentication, so whoever can connect can also send SHUTDOWN, and only the socket's owner (and
# root) may. With a port it ALSO listens on 127.0.0.1:<port>, open to every local user: for tests
# and containers only, never for a daemon on a shared machine. The caller picks a free port.
#
# Environment (read by `start`):
#   CLAMD_STREAM_MAX      StreamMaxLength, MaxScanSize and MaxFileSize (default 4000M). ClamAV cannot
#                         scan a file over 2 GB whatever this says; the client refuses those itself.
#   CLAMD_OFFICIAL        auto (default): link the official databases (*.cvd, *.cld) when present;
#                         0: our test signatures only (starts in ~0.1 s instead of 10-20 s, ~1 GB RAM less).
#   CLAMD_OFFICIAL_DIR    where freshclam keeps the official databases (default /var/lib/clamav).
#   CLAMD_USER            user clamd drops to when started as root (default clamav, if it exists).
#   CLAMD_EXTRA_CONF      extra clamd.conf lines (newline separated); each replaces the option of the
#                         same name, e.g. CLAMD_EXTRA_CONF=$'MaxRecursion 5\nMaxFiles 100'.
#   CLAMD_START_TIMEOUT   seconds to wait for PONG (default 60).
#   CLAMD_BIN             the clamd binary (default: clamd on PATH, else /usr/sbin/clamd).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIGNATURES="$ROOT/scanning/signatures"

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
  echo "clamd.sh: not running ($dir does not exist)"
  exit 3
fi
dir=$(cd "$dir" && pwd)
conf="$dir/clamd.conf"
pidfile="$dir/run/clamd.pid"
portfile="$dir/run/port"
sock="$dir/run/clamd.sock"
log="$dir/clamd.log"
out="$dir/clamd.out"

say() { echo "clamd.sh: $*"; }
die() {
  echo "clamd.sh: $*" >&2
  exit 1
}

# The pid of the clamd started from this directory's config, if it is alive. Checking the command
# line too means a recycled pid never gets a signal from us.
running_pid() {
  local pid
  [[ -f $pidfile ]] || return 1
  pid=$(tr -dc 0-9 <"$pidfile")
  [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$conf" || return 1
  echo "$pid"
}

# PING over TCP with bash's /dev/tcp, bounded so that a wedged daemon cannot hang us.
ping_port() {
  # shellcheck disable=SC2016  # $1 is expanded by the inner bash
  timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/"$1" && printf "zPING\0" >&3 && head -c 4 <&3' _ "$1" \
    2>/dev/null | grep -q PONG
}

# PING over the unix socket (bash cannot open one; Python, which Filegate needs anyway, can).
ping_socket() {
  timeout 3 python3 -c '
import socket, sys
with socket.socket(socket.AF_UNIX) as s:
    s.settimeout(2)
    s.connect(sys.argv[1])
    s.sendall(b"zPING\0")
    sys.exit(0 if s.recv(4) == b"PONG" else 1)
' "$sock" 2>/dev/null
}

# PING where this daemon listens: "unix" (the socket alone) or a TCP port.
ping_listen() {
  if [[ $1 == unix ]]; then ping_socket; else ping_port "$1"; fi
}

where() {
  if [[ $1 == unix ]]; then echo "$sock"; else echo "127.0.0.1:$1 and $sock"; fi
}

port_in_use() {
  # shellcheck disable=SC2016
  timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/"$1"' _ "$1" 2>/dev/null
}

# clamd.out has everything clamd.log has (a foreground clamd logs to stderr too) plus libclamav's
# messages; clamd.log is the fallback when clamd died before writing there.
show_logs() {
  local f=$out
  [[ -s $f ]] || f=$log
  [[ -s $f ]] || return 0
  echo "---- $f (last 40 lines) ----" >&2
  tail -n 40 "$f" >&2
}

wait_for_pong() { # pid listen
  local pid=$1 listen=$2 deadline=$((SECONDS + ${CLAMD_START_TIMEOUT:-60}))
  while ((SECONDS < deadline)); do
    if ping_listen "$listen"; then return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

stop_pid() { # pid
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  # clamd finishes the scans in flight, then exits; loading a big database can delay that.
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  say "pid $pid ignored SIGTERM for 20 s; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  die "pid $pid does not exit"
}

write_conf() { # listen user
  local listen=$1 user=$2 max=${CLAMD_STREAM_MAX:-4000M} base line key
  base=$(
    cat <<EOF
Foreground yes
DatabaseDirectory $dir/db
TemporaryDirectory $dir/tmp
PidFile $pidfile
LogFile $log
LogTime yes
LogFileMaxSize 10M
LocalSocket $sock
LocalSocketMode 600
FixStaleSocket yes
StreamMaxLength $max
MaxScanSize $max
MaxFileSize $max
AlertEncrypted yes
AlertEncryptedArchive yes
AlertEncryptedDoc yes
AlertExceedsMax yes
SelfCheck 600
EOF
  )
  [[ $listen != unix ]] && base+=$'\n'"TCPSocket $listen"$'\n'"TCPAddr 127.0.0.1"
  [[ -n $user ]] && base+=$'\n'"User $user"
  # Extra lines replace the option of the same name: clamd rejects most options given twice.
  while IFS= read -r line; do
    [[ -z ${line// /} ]] && continue
    key=${line%% *}
    base=$(grep -v -- "^$key " <<<"$base" || true)
    base+=$'\n'"$line"
  done <<<"${CLAMD_EXTRA_CONF:-}"
  {
    echo "# Written by scripts/clamd.sh on every start; edits are lost."
    echo "$base"
  } >"$conf"
}

fill_db() {
  local f official=${CLAMD_OFFICIAL:-auto} official_dir=${CLAMD_OFFICIAL_DIR:-/var/lib/clamav}
  rm -rf "$dir/db"
  mkdir -p "$dir/db"
  # Copies, not links: the repository may not be readable by the clamav user.
  cp "$SIGNATURES"/*.ndb "$SIGNATURES"/*.hdb "$dir/db/"
  if [[ $official != 0 && -d $official_dir ]]; then
    shopt -s nullglob
    # Links, not copies: main.cvd alone is ~160 MB, and freshclam replaces files under these names.
    for f in "$official_dir"/*.cvd "$official_dir"/*.cld; do
      ln -s "$f" "$dir/db/"
    done
    shopt -u nullglob
  fi
}

# The user clamd runs as. As root it drops to clamav (never scan untrusted input as root) when that
# user can reach <dir>; otherwise (e.g. <dir> below a 0700 directory) it stays root, with a warning.
pick_user() {
  local user=${CLAMD_USER:-clamav}
  if [[ $(id -u) -ne 0 ]] || ! id "$user" >/dev/null 2>&1; then
    echo ""
    return
  fi
  chown -R "$user": "$dir"
  if runuser -u "$user" -- test -r "$dir/db" -a -x "$dir/db" -a -w "$dir/tmp" -a -w "$dir/run" -a -w "$dir" 2>/dev/null; then
    echo "$user"
  else
    echo "clamd.sh: warning: user $user cannot reach $dir; clamd runs as root" >&2
    echo ""
  fi
}

start() {
  local listen=${1:-unix} pid user clamd t0
  if [[ $listen != unix ]] && { ! [[ $listen =~ ^[0-9]+$ ]] || ((listen < 1 || listen > 65535)); }; then
    die "bad port: $listen"
  fi
  # The unix socket's path must fit sun_path (108 bytes with its NUL on Linux).
  ((${#sock} < 108)) || die "socket path too long (${#sock} bytes): $sock; use a shorter <dir>"
  if pid=$(running_pid); then
    local old
    old=$(cat "$portfile" 2>/dev/null || echo "?")
    [[ $old == "$listen" ]] || die "already running from $dir on $(where "$old") (pid $pid); stop it first"
    wait_for_pong "$pid" "$listen" || {
      show_logs
      die "running (pid $pid) but no PONG on $(where "$listen")"
    }
    say "already running on $(where "$listen") (pid $pid)"
    return 0
  fi
  clamd=${CLAMD_BIN:-$(command -v clamd || echo /usr/sbin/clamd)}
  [[ -x $clamd ]] || die "clamd not found; install the Debian package clamav-daemon (scripts/install.sh)"
  [[ $listen != unix ]] && port_in_use "$listen" && die "port $listen is already in use"

  # Private: the config, the pid, the logs and the spooled scans are nobody else's business.
  umask 077
  mkdir -p "$dir/tmp" "$dir/run"
  chmod -R go= "$dir" # what an older clamd.sh left readable (the logs, the config) too
  rm -f "$pidfile" "$sock"
  fill_db
  user=$(pick_user)
  write_conf "$listen" "$user"
  echo "$listen" >"$portfile"
  : >"$out"

  t0=$(date +%s.%N)
  # Foreground clamd in its own session: we know its pid at once, it outlives this script, and a
  # Ctrl-C meant for the caller's terminal does not reach it.
  setsid "$clamd" -c "$conf" </dev/null >>"$out" 2>&1 &
  pid=$!
  echo "$pid" >"$pidfile"
  [[ -n $user ]] && chown "$user": "$pidfile"
  if ! wait_for_pong "$pid" "$listen"; then
    show_logs
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      die "clamd did not answer PING on $(where "$listen") within ${CLAMD_START_TIMEOUT:-60} s"
    fi
    die "clamd exited before answering PING (see above)"
  fi
  say "up on $(where "$listen") (pid $pid, user ${user:-$(id -un)}, $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s)"
}

stop() {
  local pid
  if pid=$(running_pid); then
    stop_pid "$pid"
    say "stopped (pid $pid)"
  else
    say "not running"
  fi
  rm -f "$pidfile" "$sock"
}

status() {
  local pid listen
  if ! pid=$(running_pid); then
    say "not running"
    return 3
  fi
  listen=$(cat "$portfile" 2>/dev/null || echo unix)
  if ping_listen "$listen"; then
    say "running on $(where "$listen") (pid $pid)"
    return 0
  fi
  say "running (pid $pid) but no PONG on $(where "$listen")"
  return 1
}

case $cmd in
  start) start "${3:-unix}" ;;
  stop) stop ;;
  status) status ;;
esac
