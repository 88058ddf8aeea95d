#!/usr/bin/env bash
# Install what the tests need and run every check CI runs: ruff (lint + format), mypy (strict), pytest.
# Extra arguments go to pytest (e.g. ./scripts/test.sh tests/unit -x).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh --test
./scripts/services.sh
./scripts/npm.sh tests/e2e/js tests/fakes/js tests/fakes/oidc   # tus-js-client for the e2e test; Azurite for the Azure Blob tests; oidc-provider for the OIDC tests
./scripts/browser.sh   # chromium (Debian) + playwright-core for the upload page's browser test

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy (strict)"
.venv/bin/mypy
echo "== pytest"
workers=${FILEGATE_TEST_WORKERS:-2}
exec .venv/bin/python -m pytest -n "$workers" -p no:cacheprovider "$@"
