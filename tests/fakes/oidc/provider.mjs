/**
 * A real OpenID Connect provider (npm `oidc-provider` 9.13, certified) for the tests and `filegate dev`.
 * Run it with scripts/oidc.sh; by hand:
 *
 *   node provider.mjs <port> <config.json>        (or OIDC_PORT / OIDC_CONFIG in the environment)
 *
 * Issuer: http://127.0.0.1:<port> (discovery at /.well-known/openid-configuration, JWKS at /jwks,
 * authorization /auth, token /token, userinfo /me, dynamic registration /reg). It listens on 127.0.0.1 only.
 *
 * The config file (JSON):
 *   {
 *     "clients": [{"client_id": "...", "client_secret": "...", "redirect_uris": ["..."],
 *                  ...any other client metadata, e.g. "token_endpoint_auth_method"}],
 *     "users":   [{"sub": "...", "email": "alice@example.test", "email_verified": true,
 *                  "name": "Alice", "password": "...", "username": "alice"}],   // username optional
 *     "initial_access_token": "...",   // optional: enables dynamic registration at POST /reg
 *     "auto_consent": true              // optional, default true: no consent screen
 *   }
 *
 * Clients: grant authorization_code, response_type code, PKCE required (S256 is the only method
 * oidc-provider 9 knows), scopes openid email profile, ID tokens RS256. A client authenticates at /token
 * with client_secret_basic or client_secret_post, whichever of the two it was registered with.
 * Redirect URIs are matched exactly, except that a client whose redirect URIs are all http loopback URIs
 * (127.0.0.1, [::1]) is registered as application_type "native" (unless its config says otherwise), and
 * oidc-provider then accepts those URIs with ANY port (RFC 8252 section 7.3): configure
 * http://127.0.0.1/v1/auth/oidc/test/callback and http://127.0.0.1:54321/v1/auth/oidc/test/callback
 * is accepted. Any other redirect URI (e.g. http://testserver.local/...) needs a client registered at
 * runtime: POST /reg with `Authorization: Bearer <initial_access_token>` and a JSON body
 * {"redirect_uris": [...], "token_endpoint_auth_method": "client_secret_basic"}; the answer carries
 * client_id and client_secret. Registered clients live in memory until the provider stops.
 *
 * ID tokens carry the claims of the granted scopes (conformIdTokenClaims false): sub, plus email and
 * email_verified with scope email, name with scope profile; plus iss, aud, exp, iat, nonce (no azp: one
 * audience).
 *
 * The login form (oidc-provider's devInteractions, checked against 9.13.3's views):
 *   GET  /interaction/<uid>     renders
 *          <form autocomplete="off" action="/interaction/<uid>" method="post">
 *            <input type="hidden" name="prompt" value="login"/>
 *            <input required type="text" name="login" ...>
 *            <input required type="password" name="password" ...>
 *            <button type="submit" class="login login-submit">Sign-in</button>
 *   POST /interaction/<uid>     form-urlencoded prompt=login&login=<sub or email>&password=<password>
 *          -> 303 to /auth/<uid> -> 303 to redirect_uri?code=...&state=...&iss=<issuer>
 *   GET  /interaction/<uid>/abort  -> the client gets error=access_denied
 * devInteractions on their own accept any login and ignore the password; here a middleware checks both
 * against the configured users first: a wrong one answers 401 with the same form and the text
 * "Invalid login or password" (the interaction stays usable: post again). `login` may be the user's
 * username, sub or email (email case-insensitive).
 * With "auto_consent": false a consent form follows the login:
 *          <form ... action="/interaction/<uid>" method="post">
 *            <input type="hidden" name="prompt" value="consent"/>
 *            <button autofocus type="submit" class="login login-submit">Continue</button>
 *   POST /interaction/<uid>     prompt=consent  -> 303 onwards to the redirect_uri
 * The session cookie (_session) then gives single sign-on: a second authorization in the same cookie
 * jar redirects straight back, unless the request says prompt=login.
 *
 * Every request is logged as one line on stdout (method, path, status, ms).
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as querystring from 'node:querystring';

import Provider, { interactionPolicy } from 'oidc-provider';

const LOOPBACKS = new Set(['127.0.0.1', '[::1]', '::1']);
const SCOPES = ['openid', 'email', 'profile'];

function fail(message) {
  console.error(`provider.mjs: ${message}`);
  process.exit(2);
}

const port = Number(process.argv[2] ?? process.env.OIDC_PORT);
const configPath = process.argv[3] ?? process.env.OIDC_CONFIG;
if (!Number.isInteger(port) || port < 1 || port > 65535) fail('usage: node provider.mjs <port> <config.json>');
if (!configPath) fail('usage: node provider.mjs <port> <config.json>');

let config;
try {
  config = JSON.parse(readFileSync(configPath, 'utf8'));
} catch (err) {
  fail(`cannot read ${configPath}: ${err.message}`);
}

const issuer = `http://127.0.0.1:${port}`;
const users = new Map((config.users ?? []).map((u) => [String(u.sub), u]));
const autoConsent = config.auto_consent !== false;

function isLoopbackHttp(uri) {
  try {
    const url = new URL(uri);
    return url.protocol === 'http:' && LOOPBACKS.has(url.hostname);
  } catch {
    return false;
  }
}

const clients = (config.clients ?? []).map((c) => {
  const uris = c.redirect_uris ?? [];
  const native = uris.length > 0 && uris.every(isLoopbackHttp);
  return { ...(native ? { application_type: 'native' } : {}), ...c };
});

function findUser(login) {
  if (typeof login !== 'string' || login === '') return undefined;
  const bySub = users.get(login);
  if (bySub) return bySub;
  const lower = login.toLowerCase();
  return [...users.values()].find((u) => u.username === login)
    ?? [...users.values()].find((u) => typeof u.email === 'string' && u.email.toLowerCase() === lower);
}

// An RS256 signing key made at start: tokens from an earlier run of the provider do not verify.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: `rs256-${randomBytes(6).toString('hex')}`,
  alg: 'RS256',
  use: 'sig',
};

// oidc-provider asks for consent on every authorization of a native (loopback) client; with
// auto_consent the grant made in loadExistingGrant stands for that consent.
const policy = interactionPolicy.base();
if (autoConsent) policy.get('consent').checks.remove('native_client_prompt');

const provider = new Provider(issuer, {
  clients,
  interactions: { policy },
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  scopes: SCOPES,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  conformIdTokenClaims: false,
  responseTypes: ['code'],
  clientDefaults: {
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  },
  clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    registration: config.initial_access_token
      ? { enabled: true, initialAccessToken: String(config.initial_access_token) }
      : { enabled: false },
  },
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 3600,
    Session: 86400,
    Grant: 86400,
  },
  async findAccount(ctx, id) {
    const user = users.get(String(id));
    if (!user) return undefined;
    return {
      accountId: String(user.sub),
      async claims() {
        return {
          sub: String(user.sub),
          email: user.email,
          email_verified: Boolean(user.email_verified),
          name: user.name,
        };
      },
    };
  },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    if (!autoConsent || !ctx.oidc.session.accountId) return undefined;
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(SCOPES.join(' '));
    grant.addOIDCClaims(['sub', 'email', 'email_verified', 'name']);
    await grant.save();
    return grant;
  },
});

function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 56 * 1024) throw new Error('request entity too large');
    chunks.push(chunk);
  }
  return querystring.parse(Buffer.concat(chunks).toString('utf8'));
}

// One log line per request.
provider.use(async (ctx, next) => {
  const t0 = process.hrtime.bigint();
  try {
    await next();
  } finally {
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    console.log(`${new Date().toISOString()} ${ctx.method} ${ctx.path} ${ctx.status} ${ms.toFixed(1)}ms`);
  }
});

// devInteractions take any login as the account id and never look at the password: check both against
// the configured users, and hand oidc-provider the user's sub as the login. oidc-provider reads the body
// we parsed from req.body (it warns once that an upstream parser was used).
provider.use(async (ctx, next) => {
  const match = /^\/interaction\/([^/]+)$/.exec(ctx.path);
  if (ctx.method !== 'POST' || !match || !ctx.is('application/x-www-form-urlencoded')) {
    await next();
    return;
  }
  const form = await readForm(ctx.req);
  if (form.prompt === 'login') {
    const user = findUser(form.login);
    if (!user || typeof form.password !== 'string' || form.password !== String(user.password ?? '')) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.set('Cache-Control', 'no-store');
      ctx.body = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sign-in</title></head><body>
<p class="error">Invalid login or password</p>
<form autocomplete="off" action="/interaction/${escapeHtml(match[1])}" method="post">
  <input type="hidden" name="prompt" value="login"/>
  <input required type="text" name="login" value="${escapeHtml(form.login ?? '')}">
  <input required type="password" name="password" autofocus="on">
  <button type="submit" class="login login-submit">Sign-in</button>
</form>
</body></html>`;
      return;
    }
    form.login = String(user.sub);
  }
  ctx.req.body = form;
  await next();
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`provider.mjs: ${issuer} up (oidc-provider, ${clients.length} clients, ${users.size} users, `
    + `registration ${config.initial_access_token ? 'on' : 'off'}, node ${process.version})`);
});
server.on('error', (err) => fail(`cannot listen on 127.0.0.1:${port}: ${err.message}`));

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections?.();
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
