#!/usr/bin/env bash
# Build the upload page's browser bundle (web/ → gateway/web/static/upload.js, upload.css) with esbuild,
# idempotently: nothing happens when both outputs are newer than every source, web/build.mjs and the
# npm manifests, so a rerun on a warm checkout costs milliseconds. Installs web/'s npm packages through
# scripts/npm.sh when needed (which installs node/npm through apt-get when they are missing).
#
#   scripts/web.sh           build when stale
#   scripts/web.sh --force   build anyway
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
web=$root/web
out=$root/gateway/web/static

fresh() {
  local output
  for output in "$out/upload.js" "$out/upload.css"; do
    [[ -f $output ]] || return 1
    # Any input newer than this output: stale.
    [[ -z $(find "$web/src" "$web/build.mjs" "$web/package.json" "$web/package-lock.json" \
      -newer "$output" -print -quit) ]] || return 1
  done
}

if [[ ${1:-} != --force ]] && fresh; then
  exit 0
fi
"$root/scripts/npm.sh" "$web"
(cd "$web" && node build.mjs "$out" </dev/null)
