// The upload page (/app/upload): Uppy Dashboard + tus to /v1/tus/ with the browser's session cookie, then
// each file's state, polled from /v1/uploads/{id} until it is final. Served under a strict CSP (no inline
// script or style attribute), so everything here goes through the DOM API.
import Uppy from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import Tus from '@uppy/tus'

import './upload.css'

const SESSION_URL = '/v1/auth/session'
const LOGOUT_URL = '/v1/auth/logout'
const TUS_ENDPOINT = '/v1/tus/'
const UPLOADS_URL = '/v1/uploads/'
const CHUNK_SIZE = 8 * 1024 * 1024
const POLL_MS = 500
// A scan normally takes seconds; past this the page stops asking (the upload goes on server-side).
const POLL_GIVE_UP_MS = 15 * 60 * 1000
// Final whatever happens next; `clean` is final unless the upload is on its way to a connection.
const FINAL = new Set(['infected', 'rejected', 'scan_failed', 'delivered', 'delivery_failed'])
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const SLUG = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/

let csrfToken = ''

function $(id) {
  return document.getElementById(id)
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag)
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'text') node.textContent = value
    else node.setAttribute(key, value)
  }
  for (const child of children) node.append(child)
  return node
}

// --- session -------------------------------------------------------------------------------------------

async function fetchSession() {
  try {
    const r = await fetch(SESSION_URL, {
      credentials: 'same-origin',
      headers: { Accept: 'application/json' },
      cache: 'no-store',
    })
    // Anything but 200 (401, or 404 while the gateway has no session support) means signed out.
    if (r.status !== 200) return null
    const body = await r.json()
    return body && typeof body.csrf_token === 'string' ? body : null
  } catch {
    return null
  }
}

function signInLink() {
  const params = new URLSearchParams(window.location.search)
  const provider = params.get('provider')
  const tenant = params.get('tenant')
  if (!provider || !tenant || !SLUG.test(provider) || !SLUG.test(tenant)) return null
  const query = new URLSearchParams({ tenant, redirect_to: '/app/upload' })
  return `/v1/auth/oidc/${encodeURIComponent(provider)}/login?${query}`
}

function showSignedOut(uppy) {
  const box = $('session')
  box.dataset.auth = 'signed-out'
  const href = signInLink()
  box.replaceChildren(
    el('span', { class: 'fg-session-text', text: 'You are not signed in.' }),
    href
      ? el('a', { id: 'sign-in', class: 'fg-button', href, text: 'Sign in' })
      : el('span', { id: 'sign-in', text: 'Sign in through your organisation to upload files.' }),
  )
  csrfToken = ''
  uppy.getPlugin('Dashboard')?.setOptions({ disabled: true })
}

function showSignedIn(uppy, session) {
  const box = $('session')
  box.dataset.auth = 'signed-in'
  csrfToken = session.csrf_token
  const logout = el('button', { id: 'sign-out', class: 'fg-button', type: 'button', text: 'Sign out' })
  logout.addEventListener('click', () => signOut(uppy))
  box.replaceChildren(
    el('span', { class: 'fg-session-text', text: `Signed in (${session.role ?? 'user'})` }),
    logout,
  )
  uppy.getPlugin('Dashboard')?.setOptions({ disabled: false })
}

async function signOut(uppy) {
  try {
    await fetch(LOGOUT_URL, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'X-CSRF-Token': csrfToken },
    })
  } finally {
    showSignedOut(uppy)
  }
}

// --- results -------------------------------------------------------------------------------------------

function uploadIdOf(uploadURL) {
  if (!uploadURL) return null
  let path
  try {
    path = new URL(uploadURL, window.location.href).pathname
  } catch {
    return null
  }
  const id = path.split('/').filter(Boolean).pop()
  return id && UUID.test(id) ? id.toLowerCase() : null
}

function resultItem(key) {
  const list = $('results')
  let item = list.querySelector(`li[data-file-id="${CSS.escape(key)}"]`)
  if (!item) {
    item = el(
      'li',
      { 'data-file-id': key, class: 'fg-result' },
      el('span', { class: 'fg-filename' }),
      el('span', { class: 'fg-state' }),
      el('span', { class: 'fg-reason' }),
    )
    list.append(item)
  }
  return item
}

function render(key, { filename, state, reason, uploadId }) {
  const item = resultItem(key)
  if (uploadId) item.dataset.uploadId = uploadId
  item.dataset.state = state
  if (filename) item.querySelector('.fg-filename').textContent = filename
  item.querySelector('.fg-state').textContent = state.replace(/_/g, ' ')
  item.querySelector('.fg-reason').textContent = reason ? ` (${reason})` : ''
}

function isFinal(upload) {
  return FINAL.has(upload.state) || (upload.state === 'clean' && !upload.connection_id)
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function watch(key, uploadId, filename, uppy) {
  const started = Date.now()
  let delay = POLL_MS
  while (Date.now() - started < POLL_GIVE_UP_MS) {
    let r
    try {
      r = await fetch(UPLOADS_URL + uploadId, {
        credentials: 'same-origin',
        headers: { Accept: 'application/json' },
        cache: 'no-store',
      })
    } catch {
      // Network trouble: keep trying, a little slower each time.
      delay = Math.min(delay * 2, 10_000)
      await sleep(delay)
      continue
    }
    if (r.status === 401) {
      render(key, { filename, state: 'unknown', reason: 'signed out', uploadId })
      showSignedOut(uppy)
      return
    }
    if (!r.ok) {
      render(key, { filename, state: 'unknown', reason: `status ${r.status}`, uploadId })
      return
    }
    const upload = await r.json()
    render(key, {
      filename: upload.filename || filename,
      state: upload.state,
      reason: upload.reason,
      uploadId,
    })
    if (isFinal(upload)) return
    delay = POLL_MS
    await sleep(delay)
  }
  resultItem(key).querySelector('.fg-reason').textContent = ' (still processing; reload later)'
}

// --- Uppy ----------------------------------------------------------------------------------------------

function start() {
  const uppy = new Uppy({ id: 'filegate', autoProceed: false })
  uppy.use(Dashboard, {
    inline: true,
    target: '#uppy',
    height: 360,
    width: '100%',
    proudlyDisplayPoweredByUppy: false,
    disabled: true, // until the session is known
  })
  uppy.use(Tus, {
    endpoint: TUS_ENDPOINT,
    chunkSize: CHUNK_SIZE,
    withCredentials: true,
    removeFingerprintOnSuccess: true,
    // Only what the gateway reads (tus metadata `filename`, `filetype` are copied from these).
    allowedMetaFields: ['name', 'type'],
    // A function: read at each upload, so a refreshed session's token is used.
    headers: () => ({ 'X-CSRF-Token': csrfToken }),
    onShouldRetry: (err, retryAttempt, options, next) => {
      const status = err?.originalResponse?.getStatus?.() ?? 0
      // Signed out or refused (CSRF, policy, size): trying again cannot help.
      if (status === 401 || status === 403 || status === 413 || status === 415) return false
      return next(err)
    },
  })

  uppy.on('upload', (_id, files) => {
    for (const file of files) render(file.id, { filename: file.name, state: 'uploading' })
  })
  uppy.on('upload-error', (file, error, response) => {
    if (!file) return
    const status = response?.status
    render(file.id, { filename: file.name, state: 'upload_failed', reason: status ? `status ${status}` : error?.message })
    if (status === 401) showSignedOut(uppy)
  })
  uppy.on('upload-success', (file, response) => {
    if (!file) return
    const uploadId = uploadIdOf(response?.uploadURL)
    if (!uploadId) {
      render(file.id, { filename: file.name, state: 'unknown', reason: 'no upload id' })
      return
    }
    render(file.id, { filename: file.name, state: 'received', uploadId })
    watch(file.id, uploadId, file.name, uppy)
  })

  $('results').dataset.ready = 'true'
  fetchSession().then((session) => (session ? showSignedIn(uppy, session) : showSignedOut(uppy)))
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start)
else start()
