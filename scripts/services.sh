#!/usr/bin/env bash
# Make sure the services the tests talk to are up: the machine's PostgreSQL and Redis. They are
# installed and started on this kind of machine before a session; if one has stopped, start it the
# way the machine does, and fail with a clear message if that is not possible.
set -euo pipefail

PGHOST=${FILEGATE_TEST_PGHOST:-127.0.0.1}
REDIS_PORT=${FILEGATE_TEST_REDIS_PORT:-6379}

pg_up() { pg_isready -q -h "$PGHOST" -p 5432 2>/dev/null; }
redis_up() { (exec 3<>/dev/tcp/127.0.0.1/"$REDIS_PORT" && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG) 2>/dev/null; }

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    echo "services.sh: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 0.5; done
  fi
  pg_up || { echo "services.sh: PostgreSQL is not reachable on $PGHOST:5432" >&2; exit 1; }
fi

if ! redis_up; then
  if command -v redis-server >/dev/null; then
    echo "services.sh: starting Redis"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
    for _ in $(seq 1 30); do redis_up && break; sleep 0.2; done
  fi
  redis_up || { echo "services.sh: Redis is not reachable on 127.0.0.1:$REDIS_PORT" >&2; exit 1; }
fi
echo "services.sh: PostgreSQL and Redis are up"
