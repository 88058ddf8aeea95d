#!/usr/bin/env node
// Upload one file to a tus 1.0.0 endpoint with tus-js-client's Node API; used by
// tests/e2e/test_tus_js_client.py against a live gateway.
//
//   node tus_upload.mjs --endpoint URL --token TOKEN --file PATH [options]
//
//   --endpoint URL            tus creation endpoint, e.g. http://127.0.0.1:8000/v1/tus
//   --token TOKEN             bearer token (default: $FILEGATE_TOKEN)
//   --file PATH               the file to upload
//   --chunk-size N            bytes per PATCH (default: none, i.e. the whole rest in one PATCH)
//   --resume-url URL          resume this upload (HEAD, then PATCH from its offset) instead of creating
//                             one; --endpoint is then optional (without it a failed HEAD is an error
//                             instead of a silent new upload)
//   --stop-after-bytes N      abort() once the server has accepted >= N bytes (from onChunkComplete)
//   --upload-during-creation  send the first chunk with the POST (creation-with-upload)
//   --source stream|buffer    hand tus-js-client an fs.ReadStream (default) or a Buffer
//   --meta KEY=VALUE          Upload-Metadata entry, repeatable; filename defaults to the file's
//                             base name and filetype to application/octet-stream
//   --no-retry                retryDelays: null (default: [0, 200])
//
// On success (or a requested stop) prints one JSON line to stdout:
//   {"url": ..., "bytes": <bytes accepted by the server>, "total": <file size>, "aborted": bool,
//    "resumed_from": <HEAD Upload-Offset or null>, "requests": [{"method", "status", "offset"}...]}
// and exits 0. On error prints the error to stderr and exits 1; bad arguments exit 2.

import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'

import * as tus from 'tus-js-client'

function usage(message) {
  process.stderr.write(`tus_upload: ${message}\n`)
  process.exit(2)
}

function positiveInt(value, name) {
  if (value === undefined) return undefined
  if (!/^[0-9]+$/.test(value) || Number(value) <= 0 || !Number.isSafeInteger(Number(value))) {
    usage(`${name} must be a positive integer, got ${JSON.stringify(value)}`)
  }
  return Number(value)
}

let args
try {
  args = parseArgs({
    options: {
      endpoint: { type: 'string' },
      token: { type: 'string' },
      file: { type: 'string' },
      'chunk-size': { type: 'string' },
      'resume-url': { type: 'string' },
      'stop-after-bytes': { type: 'string' },
      'upload-during-creation': { type: 'boolean', default: false },
      source: { type: 'string', default: 'stream' },
      meta: { type: 'string', multiple: true, default: [] },
      'no-retry': { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  }).values
} catch (err) {
  usage(err.message)
}

const token = args.token ?? process.env.FILEGATE_TOKEN
if (!args.file) usage('--file is required')
if (!args.endpoint && !args['resume-url']) usage('--endpoint (or --resume-url) is required')
if (!token) usage('--token (or $FILEGATE_TOKEN) is required')
if (!['stream', 'buffer'].includes(args.source)) usage('--source must be stream or buffer')
const chunkSize = positiveInt(args['chunk-size'], '--chunk-size')
const stopAfter = positiveInt(args['stop-after-bytes'], '--stop-after-bytes')

const metadata = { filename: path.basename(args.file), filetype: 'application/octet-stream' }
for (const entry of args.meta) {
  const eq = entry.indexOf('=')
  if (eq <= 0) usage(`--meta wants KEY=VALUE, got ${JSON.stringify(entry)}`)
  metadata[entry.slice(0, eq)] = entry.slice(eq + 1)
}

let total
try {
  total = fs.statSync(args.file).size
} catch (err) {
  usage(`cannot read --file: ${err.message}`)
}
const input = args.source === 'buffer' ? fs.readFileSync(args.file) : fs.createReadStream(args.file)

const requests = []
let resumedFrom = null
let accepted = 0
let finished = false

function finish(upload, aborted) {
  if (finished) return
  finished = true
  const line = JSON.stringify({
    url: upload.url,
    bytes: accepted,
    total,
    aborted,
    resumed_from: resumedFrom,
    requests,
  })
  // Exit explicitly: after abort() the file source and keep-alive sockets may hold the loop open.
  process.stdout.write(`${line}\n`, () => process.exit(0))
}

const options = {
  endpoint: args.endpoint ?? null,
  uploadUrl: args['resume-url'] ?? null,
  headers: { Authorization: `Bearer ${token}` },
  metadata,
  retryDelays: args['no-retry'] ? null : [0, 200],
  uploadDataDuringCreation: args['upload-during-creation'],
  // No URL storage/fingerprinting: resuming is explicit, via --resume-url.
  storeFingerprintForResuming: false,
  onAfterResponse(req, res) {
    const status = res.getStatus()
    const offset = res.getHeader('Upload-Offset')
    requests.push({ method: req.getMethod(), status, offset: offset === undefined ? null : Number(offset) })
    if (req.getMethod() === 'HEAD' && status >= 200 && status < 300 && resumedFrom === null) {
      resumedFrom = Number(offset)
    }
  },
  onProgress(_bytesSent, _bytesTotal) {},
  onChunkComplete(_chunk, bytesAccepted, _bytesTotal) {
    accepted = bytesAccepted
    if (stopAfter !== undefined && bytesAccepted >= stopAfter && bytesAccepted < total) {
      // abort() stops before the next PATCH is sent (checked in _performUpload); the upload stays on
      // the server and can be resumed with --resume-url.
      upload.abort().then(() => finish(upload, true))
    }
  },
  onSuccess() {
    accepted = total
    finish(upload, false)
  },
  onError(err) {
    process.stderr.write(`tus_upload: ${err?.stack ?? err}\n`)
    process.exit(1)
  },
}
if (chunkSize !== undefined) options.chunkSize = chunkSize

const upload = new tus.Upload(input, options)
upload.start()
