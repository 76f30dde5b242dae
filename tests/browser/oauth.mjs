// Authorize from the integrations page against the local OAuth server (run by
// crates/intake/tests/e2e/web.rs; oidc-provider with IDP_LOGIN_FORM=1, so it shows a sign-in
// page that is filled in here as a user would).
//
// The flows run in a context that keeps the pages' Content-Security-Policy (the Authorize
// form's redirect to the provider must pass its form-action); the axe audits run in a second
// context with bypassCSP (axe is injected as an inline script), on the same URLs.
//
// Environment: BASE, USER, PASSWORD, SHOTS (as run.mjs), IDP_ISSUER, AUTHORIZE_URL, TOKEN_URL,
// DEVICE_URL, CLIENT_ID, CLIENT_SECRET (the provider and a client registered there).
import { chromium } from 'playwright-core';
import { BASE, assert, audit, check, env, finish, login, shot, sleep } from './lib.mjs';

const ISSUER = env('IDP_ISSUER');

// The Authorize form of integration `name` on /integrations.
const card = (p, name) => p.locator('section.card', { has: p.locator('h2', { hasText: name }) });

// What a page says, for a failing check's message.
const says = async (p) => `${p.url()}: ${(await p.textContent('body')).replace(/\s+/g, ' ').slice(0, 1500)}`;

// Open `url` in the audit context (logged in there too), audit it and screenshot it.
async function auditAt(a, url, name) {
  await a.goto(url);
  await audit(a, name);
}

// At the provider's device page (another tab, as the user's phone would be): enter the code,
// confirm, sign in as `account`.
async function enterDeviceCode(ctx, uri, code, account) {
  const d = await ctx.newPage();
  try {
    await d.goto(uri);
    await d.fill('input[name=user_code]', code);
    await d.click('#device-continue');
    await d.click('#device-confirm');
    await d.waitForSelector('#login');
    await d.fill('#login', account);
    await d.click('#sign-in');
    await d.waitForSelector('#device-approved', { timeout: 30000 });
  } finally {
    await d.close();
  }
}

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
try {
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  await login(p, '/integrations');
  const auditCtx = await browser.newContext({ bypassCSP: true });
  const a = await auditCtx.newPage();
  await login(a, '/integrations');

  await check('a custom integration without its token URL is refused with the error next to the field', async () => {
    await p.goto(`${BASE}/integrations`);
    await p.fill('#i-name', 'idp');
    await p.selectOption('#i-provider', 'custom');
    await p.fill('#i-client', env('CLIENT_ID'));
    await p.fill('#i-secret', env('CLIENT_SECRET'));
    await p.fill('#i-authorize-url', env('AUTHORIZE_URL'));
    await p.fill('#i-scopes', 'openid email offline_access mail');
    await p.click('button[name=action][value=save]');
    await p.waitForSelector('#e-token_url');
    const text = await p.textContent('#e-token_url');
    assert(text.includes('token_url'), `the error says ${JSON.stringify(text)}`);
    assert((await p.getAttribute('#i-token-url', 'aria-invalid')) === 'true', 'the field is not marked invalid');
    assert(((await p.getAttribute('#i-token-url', 'aria-describedby')) || '').includes('e-token_url'), 'the error is not tied to the field');
    assert(!(await p.$('#e-authorize_url')), 'an error next to a field that was filled');
    assert((await p.inputValue('#i-authorize-url')) === env('AUTHORIZE_URL'), 'the typed value is lost');
    assert((await p.inputValue('#i-secret')) === '', 'the secret came back');
    await shot(p, 'integration-custom-error');
    // The same answer, in the audit context (a posted form: audit the page as it came back).
    await a.goto(`${BASE}/integrations`);
    await a.fill('#i-name', 'idp');
    await a.selectOption('#i-provider', 'custom');
    await a.click('button[name=action][value=preview]');
    await a.waitForSelector('#e-token_url');
    await audit(a, 'integration-custom-error');
  });

  await check('the custom integration is saved from the form and shows what it derives and an Authorize form', async () => {
    await p.fill('#i-secret', env('CLIENT_SECRET'));
    await p.fill('#i-token-url', env('TOKEN_URL'));
    await p.fill('#i-device-url', env('DEVICE_URL'));
    await p.click('button[name=action][value=save]');
    await p.waitForURL(`${BASE}/integrations`);
    const c = card(p, 'idp');
    const facts = (await c.textContent()).replace(/\s+/g, ' ');
    for (const want of [env('AUTHORIZE_URL'), env('TOKEN_URL'), env('DEVICE_URL'), 'openid email offline_access mail']) {
      assert(facts.includes(want), `the card does not show ${want}: ${facts.slice(0, 1500)}`);
    }
    assert(await c.locator('form.authorize').count() === 1, 'no Authorize form');
    assert(await c.locator('input[type=radio][value=device]').isEnabled(), 'device code is not offered');
    const csp = (await p.request.get(`${BASE}/integrations`)).headers()['content-security-policy'];
    assert(csp.includes(`form-action 'self' ${ISSUER}`), `policy ${csp}`);
    await shot(p, 'integration-authorize');
    await auditAt(a, `${BASE}/integrations`, 'integration-authorize');
  });

  await check('the browser redirect goes through the provider\'s sign-in page and comes back with "authorized as"', async () => {
    await p.goto(`${BASE}/integrations`);
    const c = card(p, 'idp');
    await c.locator('input[name=mailbox]').fill('alice@example.com');
    await c.locator('input[type=radio][value=browser]').check();
    await c.locator('button:has-text("Authorize")').click();
    await p.waitForURL((u) => u.href.startsWith(ISSUER), { timeout: 30000 }).catch(async (e) => {
      throw new Error(`${e.message}; ${await says(p)}`);
    });
    await p.waitForSelector('#login');
    assert((await p.inputValue('#login')) === 'alice@example.com', 'the mailbox is not the login hint');
    await shot(p, 'idp-sign-in');
    await p.click('#sign-in');
    await p.waitForURL(new RegExp(`^${BASE}/integrations/idp/flows/`), { timeout: 30000 }).catch(async (e) => {
      throw new Error(`${e.message}; ${await says(p)}`);
    });
    const text = await p.textContent('#authorized-as');
    assert(text.includes('Authorized as alice@example.com for alice@example.com ('), `says ${JSON.stringify(text)}`);
    assert(/scopes [^)]*mail/.test(text), `no scopes in ${JSON.stringify(text)}`);
    assert(!(await p.$('#mismatch')), 'a mismatch shown for the right account');
    await shot(p, 'authorize-browser-done');
    await auditAt(a, p.url(), 'authorize-browser-done');
  });

  await check('device code: the code, the link, a countdown, and the panel turns into the result by itself; another account is RC3 in red', async () => {
    await p.goto(`${BASE}/integrations`);
    const c = card(p, 'idp');
    await c.locator('input[name=mailbox]').fill('help@example.com');
    await c.locator('input[type=radio][value=device]').check();
    await c.locator('button:has-text("Authorize")').click();
    await p.waitForURL(new RegExp(`^${BASE}/integrations/idp/flows/`));
    const flowUrl = p.url();
    const code = (await p.textContent('#user-code')).trim();
    assert(code.length >= 4, `code ${JSON.stringify(code)}`);
    const uri = await p.getAttribute('#verification-uri', 'href');
    assert(uri.startsWith(ISSUER), `link ${uri}`);
    const before = await p.textContent('#countdown');
    assert(/expires in \d+ min \d\d s/.test(before), `countdown ${JSON.stringify(before)}`);
    await sleep(3500);
    const after = await p.textContent('#countdown');
    assert(after !== before, `the countdown did not move: ${before}`);
    await shot(p, 'authorize-device-pending');
    await auditAt(a, flowUrl, 'authorize-device-pending');

    let reloaded = false;
    p.on('framenavigated', (f) => {
      if (f === p.mainFrame()) reloaded = true;
    });
    // alice signs in for help@: the same domain, so RC3 (no Full Access delegation).
    await enterDeviceCode(ctx, uri, code, 'alice@example.com');
    await p.waitForSelector('#authorized-as', { timeout: 30000 }).catch(async (e) => {
      throw new Error(`${e.message}; ${await says(p)}`);
    });
    assert(!reloaded, 'the page was reloaded');
    const text = await p.textContent('#authorized-as');
    assert(text.includes('Authorized as alice@example.com for help@example.com ('), `says ${JSON.stringify(text)}`);
    const m = p.locator('#mismatch');
    assert((await m.getAttribute('data-code')) === 'RC3', `cause ${await m.getAttribute('data-code')}`);
    const mt = (await m.textContent()).replace(/\s+/g, ' ');
    assert(mt.includes('the token belongs to alice@example.com but the mailbox is help@example.com'), mt);
    assert(mt.includes('Full Access'), mt);
    const color = await p.$eval('#mismatch', (e) => getComputedStyle(e).borderLeftColor);
    assert(color === 'rgb(176, 0, 32)', `not red: ${color}`);
    await shot(p, 'authorize-device-mismatch');
    await auditAt(a, flowUrl, 'authorize-device-mismatch');
  });

  await check('an account of another domain signing in by browser redirect is RC11 (the wrong account) in red', async () => {
    await p.goto(`${BASE}/integrations`);
    const c = card(p, 'idp');
    await c.locator('input[name=mailbox]').fill('dave@example.com');
    await c.locator('input[type=radio][value=browser]').check();
    await c.locator('button:has-text("Authorize")').click();
    await p.waitForSelector('#login', { timeout: 30000 });
    await p.fill('#login', 'mallory@other.test');
    await p.click('#sign-in');
    await p.waitForURL(new RegExp(`^${BASE}/integrations/idp/flows/`), { timeout: 30000 }).catch(async (e) => {
      throw new Error(`${e.message}; ${await says(p)}`);
    });
    const text = await p.textContent('#authorized-as');
    assert(text.includes('Authorized as mallory@other.test for dave@example.com ('), `says ${JSON.stringify(text)}`);
    const m = p.locator('#mismatch');
    assert((await m.getAttribute('data-code')) === 'RC11', `cause ${await m.getAttribute('data-code')}`);
    const mt = (await m.textContent()).replace(/\s+/g, ' ');
    assert(mt.includes('the browser authorized the wrong account'), mt);
    assert(mt.includes('authorize again and pick dave@example.com'), mt);
    await shot(p, 'authorize-browser-rc11');
    await auditAt(a, p.url(), 'authorize-browser-rc11');
  });

  await check('a device code refused at the provider shows the decoded error on the panel', async () => {
    await p.goto(`${BASE}/integrations`);
    const c = card(p, 'idp');
    await c.locator('input[name=mailbox]').fill('erin@example.com');
    await c.locator('input[type=radio][value=device]').check();
    await c.locator('button:has-text("Authorize")').click();
    await p.waitForURL(new RegExp(`^${BASE}/integrations/idp/flows/`));
    const code = (await p.textContent('#user-code')).trim();
    // The user refuses at the provider (the test server's stand-in for its Abort button).
    const r = await fetch(`${ISSUER}/test/device/approve`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user_code: code, deny: true }),
    });
    assert(r.ok, `deny: ${r.status} ${await r.text()}`);
    await p.waitForSelector('#flow-error', { timeout: 30000 }).catch(async (e) => {
      throw new Error(`${e.message}; ${await says(p)}`);
    });
    const t = (await p.textContent('#flow-error')).replace(/\s+/g, ' ');
    assert(t.includes('access_denied'), `says ${t}`);
    assert((await p.getAttribute('#flow', 'data-state')) === 'failed', 'not failed');
    await shot(p, 'authorize-device-refused');
    await auditAt(a, p.url(), 'authorize-device-refused');
  });

  await check('without JavaScript the device panel shows the code and a reload shows the result', async () => {
    const nojs = await browser.newContext({ javaScriptEnabled: false });
    try {
      const n = await nojs.newPage();
      await login(n, '/integrations');
      const c = card(n, 'idp');
      await c.locator('input[name=mailbox]').fill('carol@example.com');
      await c.locator('input[type=radio][value=device]').check();
      await c.locator('button:has-text("Authorize")').click();
      await n.waitForURL(new RegExp(`^${BASE}/integrations/idp/flows/`));
      const code = (await n.textContent('#user-code')).trim();
      const uri = await n.getAttribute('#verification-uri', 'href');
      await shot(n, 'authorize-device-nojs');
      await enterDeviceCode(nojs, uri, code, 'carol@example.com');
      let text = '';
      for (let i = 0; i < 30 && !text; i++) {
        await sleep(1000);
        await n.click('a:has-text("Reload")');
        text = (await n.$('#authorized-as')) ? await n.textContent('#authorized-as') : '';
      }
      assert(text.includes('Authorized as carol@example.com for carol@example.com ('), `says ${JSON.stringify(text)}; ${await says(n)}`);
    } finally {
      await nojs.close();
    }
  });

  await check('the Authorize form is refused without the CSRF token, and a flow error stands next to the choice', async () => {
    await p.goto(`${BASE}/integrations`);
    const r = await p.request.post(`${BASE}/integrations/idp/authorize`, { form: { mailbox: 'alice@example.com', flow: 'browser' }, maxRedirects: 0 });
    assert(r.status() === 403, `status ${r.status()}`);
    assert((await r.text()).includes('security token'), 'the refusal does not say why');
    const csrf = await p.getAttribute('form.authorize input[name=csrf]', 'value');
    const bad = await p.request.post(`${BASE}/integrations/idp/authorize`, { form: { csrf, mailbox: 'alice@example.com', flow: 'carrier-pigeon' }, maxRedirects: 0 });
    assert(bad.status() === 422, `status ${bad.status()}`);
    const html = await bad.text();
    assert(/<p class="error-text" id="a-flow-error-\d+">[^<]*carrier-pigeon/.test(html), 'the flow error is not next to the choice');
  });
} finally {
  await browser.close();
}
finish();
