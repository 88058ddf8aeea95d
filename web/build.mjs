// Bundles the upload page: src/upload.js (and the CSS it imports) into <outdir>/upload.js and
// <outdir>/upload.css, minified, no source map. Used by scripts/web.sh and the Dockerfile's web stage.
//
//   node build.mjs <outdir>
import { mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

import { build } from 'esbuild'

const here = dirname(fileURLToPath(import.meta.url))
const outdir = resolve(process.argv[2] ?? join(here, '..', 'gateway', 'web', 'static'))
const OUTPUTS = ['upload.js', 'upload.css']

mkdirSync(outdir, { recursive: true })
// Built beside the target and renamed into place, so a running gateway never serves half a file.
const staging = mkdtempSync(join(outdir, '.build-'))
try {
  await build({
    entryPoints: { upload: join(here, 'src', 'upload.js') },
    outdir: staging,
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: ['es2022'],
    minify: true,
    sourcemap: false,
    legalComments: 'none',
    // Uppy's CSS inlines its icons as data: URLs; anything else would be a file we do not serve.
    loader: { '.svg': 'dataurl', '.png': 'dataurl', '.woff2': 'dataurl' },
    logLevel: 'warning',
  })
  for (const name of OUTPUTS) renameSync(join(staging, name), join(outdir, name))
} finally {
  rmSync(staging, { recursive: true, force: true })
}
console.log(`web: built ${OUTPUTS.join(', ')} in ${outdir}`)
