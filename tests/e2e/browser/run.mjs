// A generic browser driver for the tests: runs a JSON "script" of steps in Debian's chromium through
// playwright-core, prints one JSON result line on stdout, and exits 0 when every step passed, 1 when one
// failed, 2 on a bad script.
//
//   node run.mjs script.json        or   node run.mjs '{"steps": [...]}'   or   node run.mjs < script.json
//
// Script:
//   {
//     "baseURL": "http://127.0.0.1:8080",   relative URLs in goto (and route) are resolved against it
//     "timeout": 15000,                     default timeout of every step, in ms
//     "viewport": {"width": 1280, "height": 800},
//     "steps": [
//       {"action": "goto", "url": "/app/upload"},
//       {"action": "fill", "selector": "#email", "text": "a@b.test"},
//       {"action": "click", "selector": "button[type=submit]"},
//       {"action": "setInputFiles", "selector": "input[type=file]", "files": ["/tmp/a.png"]},
//       {"action": "waitFor", "selector": "li[data-state='clean']", "state": "visible", "timeout": 30000},
//       {"action": "text", "selector": "#session", "name": "session"},        → result.texts.session
//       {"action": "screenshot", "path": "/tmp/page.png", "fullPage": true},
//       {"action": "route", "url": "**/v1/auth/session", "method": "GET",
//        "responses": [{"status": 200, "headers": {...}, "json": {...}} | {"status": 204, "body": "..."}]}
//     ]
//   }
// `route` answers matching requests from the page itself (in order; the last answer repeats) and records
// each one (method, url, headers) in result.routed; a `method` limits it, others go to the network.
//
// Result: {"ok", "error", "failedStep", "url", "consoleErrors": [{"text", "url"}], "pageErrors": [...],
//          "cspViolations": [{"directive", "blockedURI", "sourceFile"}], "failedRequests": [...],
//          "routed": [...], "texts": {...}, "steps": n}
//
// FILEGATE_CHROMIUM overrides the browser (default /usr/bin/chromium, see scripts/browser.sh).
import { readFileSync } from 'node:fs'

import { chromium } from 'playwright-core'

const ACTIONS = new Set(['goto', 'fill', 'click', 'setInputFiles', 'waitFor', 'text', 'screenshot', 'route'])

function readScript() {
  const arg = process.argv[2]
  let text
  if (arg === undefined || arg === '-') text = readFileSync(0, 'utf8')
  else if (arg.trimStart().startsWith('{')) text = arg
  else text = readFileSync(arg, 'utf8')
  const script = JSON.parse(text)
  if (!script || !Array.isArray(script.steps)) throw new Error('the script needs a "steps" array')
  script.steps.forEach((step, i) => {
    if (!step || !ACTIONS.has(step.action)) throw new Error(`step ${i}: unknown action ${JSON.stringify(step?.action)}`)
  })
  return script
}

function absolute(url, baseURL) {
  return baseURL ? new URL(url, baseURL).href : url
}

function fulfilment(answer) {
  const out = { status: answer.status ?? 200, headers: answer.headers ?? {} }
  if (answer.json !== undefined) {
    out.body = JSON.stringify(answer.json)
    out.contentType = 'application/json'
  } else if (answer.body !== undefined) {
    out.body = String(answer.body)
  }
  return out
}

async function runStep(page, step, script, result) {
  const timeout = step.timeout ?? script.timeout ?? 15000
  switch (step.action) {
    case 'goto':
      await page.goto(absolute(step.url, script.baseURL), { timeout, waitUntil: step.waitUntil ?? 'load' })
      return
    case 'fill':
      await page.locator(step.selector).fill(String(step.text ?? ''), { timeout })
      return
    case 'click':
      await page.locator(step.selector).click({ timeout })
      return
    case 'setInputFiles':
      await page.locator(step.selector).setInputFiles(step.files, { timeout })
      return
    case 'waitFor':
      await page.locator(step.selector).first().waitFor({ state: step.state ?? 'visible', timeout })
      return
    case 'text':
      result.texts[step.name ?? step.selector] = await page.locator(step.selector).first().textContent({ timeout })
      return
    case 'screenshot':
      await page.screenshot({ path: step.path, fullPage: step.fullPage ?? true, timeout })
      return
    case 'route': {
      const answers = step.responses ?? [{ status: 200 }]
      let served = 0
      const pattern = /^[a-z]+:\/\//i.test(step.url) || step.url.startsWith('*') ? step.url : absolute(step.url, script.baseURL)
      await page.route(pattern, async (route) => {
        const request = route.request()
        if (step.method && request.method() !== step.method.toUpperCase()) {
          await route.fallback()
          return
        }
        result.routed.push({ method: request.method(), url: request.url(), headers: await request.allHeaders() })
        const answer = answers[Math.min(served, answers.length - 1)]
        served += 1
        await route.fulfill(fulfilment(answer))
      })
      return
    }
    default:
      throw new Error(`unknown action ${step.action}`)
  }
}

async function main() {
  let script
  try {
    script = readScript()
  } catch (err) {
    process.stdout.write(`${JSON.stringify({ ok: false, error: `bad script: ${err.message}` })}\n`)
    process.exit(2)
  }
  const result = {
    ok: false,
    error: null,
    failedStep: null,
    url: null,
    consoleErrors: [],
    pageErrors: [],
    cspViolations: [],
    failedRequests: [],
    routed: [],
    texts: {},
    steps: 0,
  }
  const browser = await chromium.launch({
    executablePath: process.env.FILEGATE_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    timeout: 60000,
  })
  try {
    const context = await browser.newContext({ viewport: script.viewport ?? { width: 1280, height: 800 } })
    const page = await context.newPage()
    page.on('console', (msg) => {
      if (msg.type() === 'error') result.consoleErrors.push({ text: msg.text(), url: msg.location()?.url ?? '' })
    })
    page.on('pageerror', (err) => result.pageErrors.push(String(err?.stack ?? err)))
    page.on('requestfailed', (req) =>
      result.failedRequests.push({ method: req.method(), url: req.url(), error: req.failure()?.errorText ?? '' }),
    )
    // The browser reports every CSP violation to the page; forward each one here (the init script is
    // injected by the driver, so the page's own CSP does not apply to it).
    await page.exposeBinding('__filegateCspViolation', (_source, violation) => result.cspViolations.push(violation))
    await page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => {
        window.__filegateCspViolation({
          directive: e.violatedDirective,
          blockedURI: e.blockedURI,
          sourceFile: e.sourceFile,
          line: e.lineNumber,
          sample: e.sample,
        })
      })
    })
    for (const [i, step] of script.steps.entries()) {
      try {
        await runStep(page, step, script, result)
        result.steps = i + 1
      } catch (err) {
        result.failedStep = i
        result.error = `step ${i} (${step.action}): ${err.message.split('\n')[0]}`
        try {
          if (script.failureScreenshot) await page.screenshot({ path: script.failureScreenshot, fullPage: true })
        } catch {}
        break
      }
    }
    result.url = page.url()
    result.ok = result.error === null
    await context.close()
  } finally {
    await browser.close()
  }
  process.stdout.write(`${JSON.stringify(result)}\n`)
  process.exit(result.ok ? 0 : 1)
}

main().catch((err) => {
  process.stdout.write(`${JSON.stringify({ ok: false, error: String(err?.stack ?? err) })}\n`)
  process.exit(1)
})
