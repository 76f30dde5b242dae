// Browser end-to-end checks of Intake's admin web UI, run by crates/intake/tests/e2e/web.rs
// against a real `intake serve` (Debian's /usr/bin/chromium through playwright-core; axe-core
// injected into every page). Prints one line per check and a closing "N passed, N failed";
// exits 1 when any check failed.
//
// Environment (set by the Rust test): BASE (http://127.0.0.1:PORT), USER, PASSWORD, SHOTS
// (directory for screenshots), MAILDIR (the channel's Maildir: new mail is dropped there),
// TICKET (a ticket with an attachment and a comment), ATTACHMENT (its attachment's name),
// ATTACHMENT_SHA256, QUARANTINED (a quarantine entry id).
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, request } from 'playwright-core';
import { BASE, NAV, assert, audit, check, env, finish, login, pixelServer, shot } from './lib.mjs';

// Every request any page makes, to tell a remote request from a local one (the pixel server's
// requests after "Show remote images" was clicked are expected and not recorded).
const remote = [];
let pixelAllowed = '';
function watch(page) {
  page.on('request', (r) => {
    if (pixelAllowed && r.url().startsWith(pixelAllowed)) return;
    if (!r.url().startsWith(BASE) && !r.url().startsWith('data:')) remote.push(r.url());
  });
  page.on('dialog', (d) => {
    remote.push(`dialog: ${d.message()}`);
    d.dismiss();
  });
}

// Drop one message into the channel's Maildir the way a delivery agent does.
function deliver(name, text) {
  const dir = env('MAILDIR');
  const tmp = join(dir, 'tmp', name);
  writeFileSync(tmp, text);
  renameSync(tmp, join(dir, 'new', name));
}

const PAGES = [
  ['overview', '/'],
  ['tickets', '/tickets'],
  ['ticket', `/tickets/${env('TICKET')}`],
  ['mail-log', '/log'],
  ['quarantine', '/quarantine'],
  ['quarantined', `/quarantine/${env('QUARANTINED')}`],
  ['integrations', '/integrations'],
  ['channels', '/channels'],
  ['channel-edit', '/channels/box/edit'],
  ['admin', '/admin'],
];

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
try {
  // bypassCSP only lets the audit inject axe-core; the pages' own policy is checked below.
  const anon = await browser.newContext({ bypassCSP: true });
  const a = await anon.newPage();
  watch(a);

  await check('every page without a session redirects to the login page', async () => {
    for (const [name, path] of PAGES) {
      const r = await a.goto(BASE + path);
      const u = new URL(a.url());
      assert(u.pathname === '/login', `${name}: ended at ${a.url()} (${r.status()})`);
      assert(u.searchParams.get('next') === path, `${name}: next=${u.searchParams.get('next')}`);
    }
  });

  await check('the login page passes axe and a wrong password says so without saying which part', async () => {
    await a.goto(`${BASE}/login`);
    await audit(a, 'login');
    await shot(a, 'login');
    await a.fill('#user', env('USER'));
    await a.fill('#password', 'not the password');
    await a.click('button[type=submit]');
    const text = await a.textContent('#login-error');
    assert(text.trim() === 'Wrong user name or password.', `said ${JSON.stringify(text)}`);
    await audit(a, 'login-error');
    await a.fill('#user', 'nobody-at-all');
    await a.fill('#password', env('PASSWORD'));
    await a.click('button[type=submit]');
    const t2 = await a.textContent('#login-error');
    assert(t2 === text, `an unknown user reads differently: ${JSON.stringify(t2)}`);
  });

  const ctx = await browser.newContext({ acceptDownloads: true, bypassCSP: true });
  const p = await ctx.newPage();
  watch(p);

  await check('logging in returns to the page asked for', async () => {
    await p.goto(`${BASE}/tickets`);
    await p.fill('#user', env('USER'));
    await p.fill('#password', env('PASSWORD'));
    await p.click('button[type=submit]');
    await p.waitForURL(`${BASE}/tickets`);
  });

  await check('every page has the same navigation, passes axe (no serious or critical violation) and is captured', async () => {
    for (const [name, path] of PAGES) {
      const r = await p.goto(BASE + path);
      assert(r.status() === 200, `${name}: status ${r.status()}`);
      const links = await p.$$eval('header nav a', (as) => as.map((x) => x.textContent.trim()));
      assert(JSON.stringify(links) === JSON.stringify(NAV), `${name}: nav ${JSON.stringify(links)}`);
      await audit(p, name);
      await shot(p, name);
    }
    await p.setViewportSize({ width: 390, height: 844 });
    await p.goto(`${BASE}/`);
    await shot(p, 'overview-phone');
    await p.goto(`${BASE}/tickets/${env('TICKET')}`);
    await shot(p, 'ticket-phone');
    await p.setViewportSize({ width: 1280, height: 800 });
  });

  await check('the overview shows the channel, its state and a chart', async () => {
    await p.goto(`${BASE}/`);
    const row = await p.textContent('#channels');
    assert(row.includes('box'), `no channel box: ${row}`);
    assert(await p.$('svg.chart rect'), 'no bar in the chart');
  });

  await check('the integration form shows what a preset derives before saving, live', async () => {
    await p.goto(`${BASE}/integrations`);
    const posted = p.waitForResponse((r) => r.url() === `${BASE}/integrations` && r.request().method() === 'POST');
    await p.selectOption('#i-cloud', 'gcc-high');
    const first = await posted;
    assert(first.status() === 200, `preview answered ${first.status()}: ${(await first.text()).slice(0, 300)}`);
    await p.fill('#i-tenant', 'contoso.onmicrosoft.us');
    await p.fill('#i-client', '00000000-0000-0000-0000-000000000001');
    await p.waitForSelector('#preview >> text=login.microsoftonline.us', { timeout: 10000 });
    const text = await p.textContent('#preview');
    assert(text.includes('outlook.office365.us'), `no GCC High IMAP host: ${text}`);
    assert(text.includes('IMAP.AccessAsUser.All'), `no IMAP scope: ${text}`);
    await audit(p, 'integrations-preview');
  });

  await check('a channel pauses and resumes from its page', async () => {
    await p.goto(`${BASE}/channels`);
    await p.click('button:has-text("Pause box")');
    await p.waitForSelector('button:has-text("Resume box")');
    assert((await p.textContent('main')).includes('Paused'), 'not shown as paused');
    await p.click('button:has-text("Resume box")');
    await p.waitForSelector('button:has-text("Pause box")');
  });

  await check('every page sends a policy without inline scripts or remote images', async () => {
    for (const [name, path] of [['login', '/login'], ...PAGES]) {
      const r = await p.request.get(BASE + path, { maxRedirects: 0 });
      const csp = r.headers()['content-security-policy'] || '';
      assert(csp.includes("script-src 'self';") && csp.includes("img-src 'self' data:;"), `${name}: ${csp}`);
      assert(r.headers()['x-frame-options'] === 'DENY', `${name}: no X-Frame-Options`);
    }
  });

  await check('a failing channel shows on the overview and as a banner on every page', async () => {
    await p.goto(`${BASE}/`);
    await p.waitForSelector('#channels >> text=Failing since', { timeout: 30000 });
    for (const [, path] of PAGES) {
      await p.goto(BASE + path);
      const banner = await p.textContent('section.alerts');
      assert(banner && banner.includes('broken'), `${path}: no alert banner: ${banner}`);
    }
  });

  await check('Test connection shows every stage with its mark, and the failing stage of a broken channel', async () => {
    await p.goto(`${BASE}/channels`);
    await p.click('button:has-text("Test connection of box")');
    await p.waitForSelector('[data-channel="box"] >> text=Connection test passed', { timeout: 30000 });
    const good = await p.$$eval('[data-channel="box"] ol.stages li', (l) => l.map((x) => x.className));
    assert(good.length > 0 && good.every((c) => c === 'ok'), `box stages ${JSON.stringify(good)}`);
    await p.click('button:has-text("Test connection of broken")');
    await p.waitForSelector('[data-channel="broken"] >> text=Connection test failed', { timeout: 60000 });
    const bad = await p.$$eval('[data-channel="broken"] ol.stages li', (l) => l.map((x) => [x.className, x.textContent.replace(/\s+/g, ' ').trim()]));
    const failing = bad.filter(([c]) => c === 'failing');
    assert(failing.length === 1, `broken stages ${JSON.stringify(bad)}`);
    console.log(`# failing stage: ${failing[0][1]}`);
    await audit(p, 'channel-test');
    await shot(p, 'channel-test');
  });

  await check('a form posted without the CSRF token is refused', async () => {
    const r = await p.request.post(`${BASE}/logout`, { form: { other: 'x' }, maxRedirects: 0 });
    assert(r.status() === 403, `status ${r.status()}`);
    const r2 = await p.request.post(`${BASE}/logout`, { form: { csrf: 'wrong-token' }, maxRedirects: 0 });
    assert(r2.status() === 403, `wrong token: status ${r2.status()}`);
    // Still logged in.
    const r3 = await p.goto(`${BASE}/`);
    assert(new URL(p.url()).pathname === '/', `logged out by a refused form: ${p.url()}`);
    assert(r3.status() === 200, `status ${r3.status()}`);
  });

  await check('a new message appears in the ticket list without reloading', async () => {
    await p.goto(`${BASE}/tickets`);
    let reloaded = false;
    p.on('framenavigated', (f) => {
      if (f === p.mainFrame()) reloaded = true;
    });
    const subject = `Live from the browser test ${Date.now()}`;
    deliver(
      '1800000000.Mlive.host',
      `From: Bea <bea@example.com>\r\nTo: help@example.com\r\nSubject: ${subject}\r\nMessage-ID: <browser-live@example.com>\r\nDate: Mon, 1 Jan 2024 12:00:00 +0000\r\n\r\nHello from the live test.\r\n`,
    );
    await p.waitForSelector(`#ticket-list >> text=${subject}`, { timeout: 30000 });
    assert(!reloaded, 'the page was reloaded');
  });

  await check('a ticket shows its conversation and its attachment downloads byte-identical', async () => {
    await p.goto(`${BASE}/tickets/${env('TICKET')}`);
    const n = await p.$$eval('ol.conversation > li', (l) => l.length);
    assert(n >= 2, `${n} messages in the conversation`);
    const [dl] = await Promise.all([p.waitForEvent('download'), p.click(`text=${env('ATTACHMENT')}`)]);
    const path = await dl.path();
    const sha = createHash('sha256').update(readFileSync(path)).digest('hex');
    assert(sha === env('ATTACHMENT_SHA256'), `sha256 ${sha}`);
    assert(dl.suggestedFilename() === env('ATTACHMENT'), `name ${dl.suggestedFilename()}`);
  });

  await check('the raw quarantined message is shown as text, never rendered', async () => {
    await p.goto(`${BASE}/quarantine/${env('QUARANTINED')}`);
    const pre = await p.textContent('pre.raw');
    assert(pre.includes('<script>'), `raw text lacks the literal tag: ${pre.slice(0, 200)}`);
    assert((await p.$$('main script')).length === 0, 'a script element was rendered');
    assert(!(await p.evaluate(() => window.__pwned)), 'a script from the message ran');
  });

  await check('a quarantined message is retried from its page and, still unreadable, stays quarantined', async () => {
    const id = env('QUARANTINED');
    await p.goto(`${BASE}/quarantine/${id}`);
    await p.click('button:has-text("Retry this message")');
    await p.waitForSelector(`text=Message ${id} was retried and is still quarantined`);
    await audit(p, 'quarantine-retry');
    await p.goto(`${BASE}/admin`);
    assert((await p.textContent('#audit')).includes('quarantine_retried'), 'the retry is not in the audit log');
  });

  await check('a quarantined message is discarded with a reason, and the audit log says who', async () => {
    const id = env('QUARANTINED');
    await p.goto(`${BASE}/quarantine/${id}`);
    await p.fill('#reason', 'junk from the browser test');
    await p.click('button:has-text("Discard this message")');
    await p.waitForURL(`${BASE}/quarantine`);
    const links = await p.$$eval('main table a', (as) => as.map((a) => a.textContent.trim()));
    assert(!links.includes(id), `still listed: ${JSON.stringify(links)}`);
    await p.goto(`${BASE}/admin`);
    const audit = await p.textContent('main');
    assert(audit.includes('discard') && audit.includes(env('USER')), 'no audit entry for the discard');
  });

  await check('an HTML message is shown sanitized: no script runs, no remote image loads until asked, and then still no script', async () => {
    const px = await pixelServer();
    try {
      const subject = `HTML with a tracker ${Date.now()}`;
      deliver(
        '1800000001.Mhtml.host',
        `From: Cy <cy@example.com>\r\nTo: help@example.com\r\nSubject: ${subject}\r\nMessage-ID: <browser-html@example.com>\r\nDate: Mon, 1 Jan 2024 13:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n` +
          `<p>Hello <b>team</b>, the form is below.</p><script>window.__pwned = 1; alert('pwned')</script>` +
          `<img src="${px.url}/pixel.gif?u=1" onerror="window.__pwned = 2"><p onclick="window.__pwned = 3">Bye</p>\r\n`,
      );
      await p.goto(`${BASE}/tickets?q=${encodeURIComponent(subject)}`);
      const link = await p.waitForSelector(`#ticket-list a:has-text("HELP-")`, { timeout: 30000 });
      const key = (await link.textContent()).trim();
      // The page's own Content-Security-Policy in force (no bypass): sanitizer and policy both.
      const strict = await browser.newContext();
      const s = await strict.newPage();
      watch(s);
      await login(s, `/tickets/${key}`);
      await s.waitForSelector('.mail-html b:has-text("team")');
      await s.waitForLoadState('load');
      assert(px.hits.length === 0, `the remote host was asked before the click: ${px.hits}`);
      assert((await s.textContent('.original')).includes('1 remote image blocked'), 'the blocked image is not counted');
      assert((await s.$$('main script')).length === 0, 'a script element was rendered');
      assert(!(await s.evaluate(() => window.__pwned)), 'a script from the message ran');
      pixelAllowed = px.url;
      await s.click('a:has-text("Show remote images")');
      await s.waitForURL(/images=shown/);
      for (let i = 0; i < 50 && px.hits.length === 0; i++) await s.waitForTimeout(200);
      assert(px.hits.length > 0 && px.hits[0].startsWith('/pixel.gif'), `the image was not loaded after the click: ${px.hits}`);
      await s.click('.mail-html p:has-text("Bye")');
      assert(!(await s.evaluate(() => window.__pwned)), 'a script from the message ran after showing images');
      assert((await s.$$('main script')).length === 0, 'a script element was rendered after showing images');
      await strict.close();
      await p.goto(`${BASE}/tickets/${key}`);
      await audit(p, 'ticket-html');
      await shot(p, 'ticket-html');
    } finally {
      px.close();
    }
  });

  await check('the admin page lists the administrators, shows a new API token once, and a revoked token gets 401', async () => {
    await p.goto(`${BASE}/admin`);
    assert((await p.textContent('#users')).includes(env('USER')), 'the administrator is not listed');
    await p.click('button:has-text("Create an API token")');
    const token = (await p.textContent('code.token')).trim();
    const id = (await p.textContent('[role=status]')).match(/Your new API token ([0-9a-f]{16})/)[1];
    await audit(p, 'admin-token');
    await shot(p, 'admin-token');
    const api = await request.newContext();
    const r = await api.get(`${BASE}/api/tickets`, { headers: { authorization: `Bearer ${token}` } });
    assert(r.status() === 200, `the new token got ${r.status()}`);
    await p.goto(`${BASE}/admin`);
    assert(!(await p.content()).includes(token), 'the token is shown a second time');
    assert((await p.textContent('#tokens')).includes(id), `token ${id} is not listed`);
    await p.click(`button:has-text("Revoke token ${id}")`);
    await p.waitForSelector(`text=API token ${id} of ${env('USER')} is revoked`);
    assert(!(await p.textContent('#tokens')).includes(id), `token ${id} is still listed`);
    const r2 = await api.get(`${BASE}/api/tickets`, { headers: { authorization: `Bearer ${token}` } });
    assert(r2.status() === 401, `the revoked token got ${r2.status()}`);
    const log = await p.textContent('#audit');
    assert(log.includes('api_token_revoked') && log.includes(id), 'the revocation is not in the audit log');
    await api.dispose();
  });

  await check('a reply typed in the reply box becomes a comment in the conversation', async () => {
    await p.goto(`${BASE}/tickets/${env('TICKET')}`);
    const before = await p.$$eval('ol.conversation > li', (l) => l.length);
    const text = `We are sending a technician (${Date.now()}).`;
    await p.fill('#reply-body', text);
    await p.click('button:has-text("Send the reply")');
    await p.waitForURL(/#reply$/);
    const after = await p.$$eval('ol.conversation > li', (l) => l.map((x) => x.textContent));
    assert(after.length === before + 1 && after[after.length - 1].includes(text), `conversation: ${JSON.stringify(after.slice(-2))}`);
    await audit(p, 'ticket-reply');
  });

  await check('no page made a remote request or opened a dialog', async () => {
    assert(remote.length === 0, JSON.stringify(remote));
  });

  await check('logging out ends the session', async () => {
    await p.goto(`${BASE}/`);
    await p.click('header form.logout button');
    await p.waitForURL(/\/login/);
    await p.goto(`${BASE}/tickets`);
    assert(new URL(p.url()).pathname === '/login', `still in: ${p.url()}`);
  });
} finally {
  await browser.close();
}
finish();
