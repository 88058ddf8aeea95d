#!/usr/bin/env bash
# The real browser of the browser tests, idempotently: Debian's `chromium` (/usr/bin/chromium) and the
# npm package `playwright-core` (tests/e2e/browser), which drives it. playwright-core downloads no browser
# of its own; tests/e2e/browser/run.mjs points it at /usr/bin/chromium. A rerun on a warm machine costs
# milliseconds. Never reads stdin.
#
#   scripts/browser.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

die() {
  echo "browser.sh: $*" >&2
  exit 1
}

CHROMIUM=${FILEGATE_CHROMIUM:-/usr/bin/chromium}
if [[ ! -x $CHROMIUM ]]; then
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo="sudo -n"
    else
      die "$CHROMIUM is missing and cannot be installed without root; run: sudo apt-get install chromium"
    fi
  fi
  command -v apt-get >/dev/null || die "$CHROMIUM is missing and there is no apt-get; install Chromium there"
  echo "browser.sh: apt-get install chromium" >&2
  $sudo apt-get update -qq </dev/null || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium </dev/null ||
    die "apt-get install chromium failed"
  [[ -x $CHROMIUM ]] || die "$CHROMIUM still missing after apt-get install chromium"
fi

# playwright-core never downloads a browser; this only keeps a stray postinstall from trying.
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$root/scripts/npm.sh" "$root/tests/e2e/browser"
