#!/usr/bin/env bash
# Install what the gateway needs and run it on embedded defaults: private PostgreSQL and Valkey under
# ./var, migrations, gateway on http://127.0.0.1:8080 and a worker. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
exec .venv/bin/filegate dev "$@"
