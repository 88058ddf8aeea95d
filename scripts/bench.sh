#!/usr/bin/env bash
# Run the benchmarks (by hand; they print numbers, they do not pass or fail). Installs wrk if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh --test
./scripts/services.sh
if ! command -v wrk >/dev/null; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends wrk
fi
exec .venv/bin/python bench/identity.py "$@"
