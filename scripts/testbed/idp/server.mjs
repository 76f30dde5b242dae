// Intake's OAuth 2.0 / OpenID Connect test server: panva's oidc-provider on 127.0.0.1.
//
//   node scripts/testbed/idp/server.mjs [port]        (port 0 or none: a free port)
//
// Once listening it prints one JSON line to stdout: {"issuer":"http://127.0.0.1:PORT","port":PORT}.
// Everything lives in memory: tokens die with the process. It exits when stdin reaches EOF
// (so a test runner that dies without cleaning up takes its server with it), or on SIGTERM/SIGINT.
//
// Clients (all share the secret IDP_CLIENT_SECRET, default "intake-secret"):
//   intake          client_secret_basic
//   intake-post     client_secret_post
//   intake-public   none (public client; PKCE only)
// (oidc-provider 9 takes the secret from the Basic header or the body for either secret client.)
// each with grant types authorization_code, refresh_token and the device code grant,
// application_type "native": a loopback redirect URI (127.0.0.1, localhost, [::1]) matches
// with ANY port, the path must be one of the registered ones (see REDIRECT_PATHS; more full
// URIs can be added with IDP_REDIRECT_URIS, comma separated).
//
// No login page: GET /interaction/:uid logs in the account named by `?login=` on that URL, else
// the authorization request's login_hint, else the session's account, else "alice@example.com",
// grants every requested scope and redirects back. Following the redirects from the authorize
// URL (with cookies) ends at the redirect_uri with ?code=..&state=...
//
// With IDP_LOGIN_FORM=1 GET /interaction/:uid without `?login=` answers a sign-in page instead:
// a form (GET, field `login`, prefilled with the login_hint) whose submission is the same URL
// with `?login=` — what a browser test fills in as a user would.
//
// Test-only routes:
//   POST /test/device/approve   form or JSON {user_code, login?, deny?}: does what a user at
//                               the verification page would do. 200 {"approved":true,...} or
//                               4xx {"error":..,"error_description":..}
//   GET  /test/health           200 "ok"
//
// Environment: IDP_LOGIN_FORM, IDP_CLIENT_SECRET, IDP_ACCESS_TTL (seconds, default 3600), IDP_REFRESH_TTL
// (seconds, default 14 days), IDP_REDIRECT_URIS, IDP_EXTRA_CLIENTS (JSON array of client
// metadata, added as they are), IDP_MODULES (the node_modules holding oidc-provider; default
// <repo>/.testbed/idp/node_modules), IDP_PORT (used when no port argument is given).

import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { fstatSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// Each start-up step leaves a line on stderr (the test's idp.log), so a server that does not
// come up shows where it stopped.
const t0 = performance.now();
function phase(what) {
  process.stderr.write(`idp: +${Math.round(performance.now() - t0)}ms ${what}\n`);
}

const here = dirname(fileURLToPath(import.meta.url));
const modules = process.env.IDP_MODULES || join(here, '..', '..', '..', '.testbed', 'idp', 'node_modules');
const pkgDir = join(modules, 'oidc-provider');
const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
phase(`node ${process.version}, importing oidc-provider ${pkg.version}`);
const { default: Provider } = await import(pathToFileURL(join(pkgDir, pkg.main || 'lib/index.js')).href);
phase('imported');

const CLIENT_SECRET = process.env.IDP_CLIENT_SECRET || 'intake-secret';
const ACCESS_TTL = positiveInt(process.env.IDP_ACCESS_TTL, 3600);
const REFRESH_TTL = positiveInt(process.env.IDP_REFRESH_TTL, 14 * 24 * 3600);
const DEFAULT_LOGIN = 'alice@example.com';
const REDIRECT_PATHS = ['', '/', '/callback', '/oauth/callback', '/oauth2/callback', '/auth/callback', '/oauth2callback'];
const LOOPBACK_HOSTS = ['127.0.0.1', 'localhost', '[::1]'];

function positiveInt(value, fallback) {
  const n = Number.parseInt(value ?? '', 10);
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

const portArg = process.argv[2] ?? process.env.IDP_PORT ?? '0';
const wantedPort = Number.parseInt(portArg, 10);
if (!Number.isInteger(wantedPort) || wantedPort < 0 || wantedPort > 65535) {
  console.error(`idp: bad port ${JSON.stringify(portArg)}`);
  process.exit(2);
}

// Listen first: the issuer (part of the provider's configuration) needs the real port.
const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(wantedPort, '127.0.0.1', resolve);
});
const { port } = server.address();
phase(`listening on 127.0.0.1:${port}`);
const issuer = `http://127.0.0.1:${port}`;

const redirectUris = [];
for (const host of LOOPBACK_HOSTS) {
  for (const path of REDIRECT_PATHS) redirectUris.push(`http://${host}${path}`);
}
for (const uri of (process.env.IDP_REDIRECT_URIS || '').split(',')) {
  if (uri.trim()) redirectUris.push(uri.trim());
}

const clientBase = {
  client_secret: CLIENT_SECRET,
  application_type: 'native',
  grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
  response_types: ['code'],
  redirect_uris: redirectUris,
  client_name: 'Intake (test)',
};
const clients = [
  { ...clientBase, client_id: 'intake', token_endpoint_auth_method: 'client_secret_basic' },
  { ...clientBase, client_id: 'intake-post', token_endpoint_auth_method: 'client_secret_post' },
  { ...clientBase, client_id: 'intake-public', token_endpoint_auth_method: 'none', client_secret: undefined },
];
if (process.env.IDP_EXTRA_CLIENTS) clients.push(...JSON.parse(process.env.IDP_EXTRA_CLIENTS));

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' };
phase('signing key generated');

async function findAccount(_ctx, id) {
  return {
    accountId: id,
    async claims() {
      return {
        sub: id,
        email: id,
        email_verified: true,
        name: id.split('@')[0],
        preferred_username: id,
      };
    },
  };
}

const page = (title, body) => `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title></head><body>${body}</body></html>`;

const provider = new Provider(issuer, {
  clients,
  findAccount,
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'mail'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  // Scope-requested claims (email) go into the id_token too, not only into userinfo.
  conformIdTokenClaims: false,
  // email in the (opaque) access token's introspection answer, as a resource server wants it.
  extraTokenClaims: async (_ctx, token) => (token.accountId ? { email: token.accountId } : undefined),
  pkce: { required: () => true },
  rotateRefreshToken: true,
  // A refresh token when offline_access was granted (see offlineAccessMeansConsent below).
  issueRefreshToken: async (_ctx, client, code) => client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
  ttl: {
    AccessToken: ACCESS_TTL,
    AuthorizationCode: 60,
    ClientCredentials: 600,
    DeviceCode: 600,
    Grant: REFRESH_TTL,
    IdToken: 3600,
    Interaction: 3600,
    RefreshToken: REFRESH_TTL,
    Session: 14 * 24 * 3600,
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    introspection: { enabled: true },
    revocation: { enabled: true },
    deviceFlow: {
      enabled: true,
      async userCodeInputSource(ctx, form, _out, err) {
        const msg = err ? `<p class="error">${err.name || 'error'}: ${err.message || ''}</p>` : '<p>Enter the code</p>';
        ctx.body = page('Device code', `${msg}${form}<button type="submit" form="op.deviceInputForm" id="device-continue">Continue</button>`);
      },
      async userCodeConfirmSource(ctx, form, _client, _deviceInfo, userCode) {
        ctx.body = page('Confirm device', `<p>Code <code>${userCode}</code></p>${form}<button type="submit" form="op.deviceConfirmForm" id="device-confirm">Continue</button>`);
      },
      async successSource(ctx) {
        ctx.body = page('Device approved', '<p id="device-approved">device-approved</p>');
      },
    },
  },
  async renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
});

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const LOGIN_FORM = process.env.IDP_LOGIN_FORM === '1';
const escapeHtml = (v) => String(v).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// The automatic "user": logs in and consents to everything requested.
async function autoInteraction(req, res, url) {
  const details = await provider.interactionDetails(req, res);
  const { params, prompt, session } = details;
  if (LOGIN_FORM && !url.searchParams.get('login')) {
    const hint = params.login_hint || '';
    const body = page('Sign in', `<main><h1>Sign in to the test provider</h1><form method="get" action="${escapeHtml(url.pathname)}">`
      + `<p><label for="login">Account</label> <input id="login" name="login" value="${escapeHtml(hint)}"></p>`
      + `<p><button type="submit" id="sign-in">Sign in</button></p></form></main>`);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    return res.end(body);
  }
  const accountId = url.searchParams.get('login') || params.login_hint || session?.accountId || DEFAULT_LOGIN;

  let grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
  if (!grant || grant.accountId !== accountId) {
    grant = new provider.Grant({ accountId, clientId: params.client_id });
  }
  if (params.scope) grant.addOIDCScope(params.scope);
  if (params.claims) {
    try {
      const claims = JSON.parse(params.claims);
      const names = new Set([...Object.keys(claims.id_token || {}), ...Object.keys(claims.userinfo || {})]);
      if (names.size) grant.addOIDCClaims([...names]);
    } catch { /* the provider rejects bad claims itself */ }
  }
  for (const [indicator, scopes] of Object.entries(prompt.details?.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();

  const result = { consent: { grantId } };
  if (prompt.name === 'login' || !session?.accountId || session.accountId !== accountId) {
    result.login = { accountId };
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  if ((req.headers['content-type'] || '').includes('application/json')) return JSON.parse(text || '{}');
  return Object.fromEntries(new URLSearchParams(text));
}

// Plays the user at the device verification page, with a cookie jar, over real HTTP.
async function deviceApprove(req, res) {
  const body = await readBody(req);
  const userCode = body.user_code;
  const login = body.login || DEFAULT_LOGIN;
  const deny = ['1', 'true', 'yes'].includes(String(body.deny ?? '').toLowerCase()) || body.deny === true;
  if (!userCode) return sendJson(res, 400, { error: 'invalid_request', error_description: 'user_code missing' });

  const jar = new Map();
  async function go(method, location, form) {
    const target = new URL(location, issuer);
    if (target.pathname.startsWith('/interaction/')) target.searchParams.set('login', login);
    const headers = {};
    if (jar.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    let payload;
    if (form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      payload = new URLSearchParams(form).toString();
    }
    const r = await fetch(target, { method, headers, body: payload, redirect: 'manual' });
    for (const c of r.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (value === '' || /expires=Thu, 01 Jan 1970/i.test(c)) jar.delete(name);
      else jar.set(name, value);
    }
    return { status: r.status, location: r.headers.get('location'), text: await r.text() };
  }

  let r = await go('GET', `/device?user_code=${encodeURIComponent(userCode)}`);
  const xsrf = /name="xsrf" value="([^"]+)"/.exec(r.text)?.[1];
  if (!xsrf) return sendJson(res, 500, { error: 'server_error', error_description: `no xsrf on the verification page (${r.status})` });
  const form = deny ? { xsrf, user_code: userCode, abort: 'yes' } : { xsrf, user_code: userCode, confirm: 'yes' };
  r = await go('POST', '/device', form);
  for (let hops = 0; r.location && hops < 20; hops += 1) r = await go('GET', r.location);
  if (!deny && r.text.includes('device-approved')) return sendJson(res, 200, { approved: true, user_code: userCode, login });
  if (deny && r.text.includes('AbortedError')) return sendJson(res, 200, { approved: false, user_code: userCode });
  const err = /<p class="error">([^<]*)<\/p>/.exec(r.text)?.[1] || `status ${r.status}`;
  return sendJson(res, 400, { error: 'invalid_grant', error_description: `device approval failed: ${err}` });
}

// oidc-provider keeps offline_access only when the request says prompt=consent. Real providers
// (Microsoft, most others) give a refresh token for offline_access alone, so add the consent
// prompt to authorization requests (GET) that ask for offline_access, unless prompt=none.
function offlineAccessMeansConsent(req, url) {
  if (req.method !== 'GET' || url.pathname !== '/auth') return;
  const scopes = (url.searchParams.get('scope') || '').split(' ');
  if (!scopes.includes('offline_access')) return;
  const prompts = (url.searchParams.get('prompt') || '').split(' ').filter(Boolean);
  if (prompts.includes('none') || prompts.includes('consent')) return;
  url.searchParams.set('prompt', [...prompts, 'consent'].join(' '));
  req.url = `${url.pathname}${url.search}`;
}

const callback = provider.callback();
server.on('request', async (req, res) => {
  const url = new URL(req.url, issuer);
  try {
    offlineAccessMeansConsent(req, url);
    if (req.method === 'GET' && /^\/interaction\/[^/]+$/.test(url.pathname)) return await autoInteraction(req, res, url);
    if (req.method === 'POST' && url.pathname === '/test/device/approve') return await deviceApprove(req, res);
    if (url.pathname === '/test/health') return sendJson(res, 200, 'ok');
    return callback(req, res);
  } catch (e) {
    console.error('idp: request failed', req.method, url.pathname, e);
    if (!res.headersSent) {
      return sendJson(res, e.statusCode || 500, {
        error: e.error || 'server_error',
        error_description: e.error_description || String(e.message || e),
      });
    }
    return res.end();
  }
});

provider.on('server_error', (_ctx, err) => console.error('idp: server_error', err));

function stop() {
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// A parent that gave us a pipe for stdin holds its other end: EOF means the parent is gone.
if (fstatSync(0).isFIFO()) {
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
}

phase('provider configured; announcing on stdout');
process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
