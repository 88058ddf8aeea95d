#!/usr/bin/env bash
# Install what Filegate needs on a fresh Debian/Ubuntu machine, idempotently: system packages, a
# virtualenv in .venv with the project (and, with --test, the test tools). A rerun on a warm machine
# costs seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

SUDO=""
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null; then SUDO="sudo"; fi

# libmagic1: python-magic (uploads). clamav-daemon: clamd, which scripts/clamd.sh runs privately (the
# package's own service is not needed); clamav-testfiles and zip: samples for the scanning tests. Only
# installed when missing, so no apt-get update on a warm machine.
missing=()
for pkg in libmagic1 clamav-daemon clamav-testfiles zip; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "install.sh: apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
# One stamp per (pyproject.toml, extras): reinstall only when either changed. The test extras include
# everything the plain install has.
key=$(sha256sum pyproject.toml | cut -c1-16)
if ((want_test)); then wanted=".venv/.installed-$key-test"; else wanted=".venv/.installed-$key"; fi
if [[ ! -f $wanted && ! -f ".venv/.installed-$key-test" ]]; then
  extras=""; ((want_test)) && extras="[test]"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".$extras"
  rm -f .venv/.installed-*
  touch "$wanted"
fi
# The upload page's browser bundle (web/ → gateway/web/static/, esbuild; needs node/npm, which npm.sh
# installs when missing). Without it the gateway runs, but /app/upload answers 503: fatal for the tests,
# a warning for a plain install.
if ! ./scripts/web.sh; then
  ((want_test)) && exit 1
  echo "install.sh: warning: the upload page bundle was not built (scripts/web.sh); /app/upload answers 503" >&2
fi
echo "install.sh: ready (.venv)"
