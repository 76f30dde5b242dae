// The admin pages with JavaScript switched off (run by crates/intake/tests/e2e/web.rs): every
// page renders, every form works as a full-page post, and the live parts degrade to a reload
// link. Same environment as run.mjs (BASE, USER, PASSWORD, SHOTS, MAILDIR, TICKET,
// QUARANTINED).
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { BASE, NAV, assert, check, env, finish, shot } from './lib.mjs';

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
  const ctx = await browser.newContext({ javaScriptEnabled: false });
  const p = await ctx.newPage();
  // Every response of the main frame, to prove that each step was a full-page load.
  const loads = [];
  p.on('response', (r) => {
    if (r.request().isNavigationRequest()) loads.push(`${r.request().method()} ${new URL(r.url()).pathname}`);
  });

  await check('without JavaScript: a wrong password is refused, the right one logs in (full-page posts)', async () => {
    await p.goto(`${BASE}/tickets`);
    await p.fill('#user', env('USER'));
    await p.fill('#password', 'not the password');
    await p.click('button[type=submit]');
    assert((await p.textContent('#login-error')).trim() === 'Wrong user name or password.', 'no error shown');
    await p.fill('#user', env('USER'));
    await p.fill('#password', env('PASSWORD'));
    await p.click('button[type=submit]');
    await p.waitForURL(`${BASE}/tickets`);
    assert(loads.includes('POST /login'), `no full-page login post: ${loads}`);
  });

  await check('without JavaScript: every page renders with its navigation and heading', async () => {
    for (const [name, path] of PAGES) {
      const r = await p.goto(BASE + path);
      assert(r.status() === 200, `${name}: status ${r.status()}`);
      const links = await p.$$eval('header nav a', (as) => as.map((x) => x.textContent.trim()));
      assert(JSON.stringify(links) === JSON.stringify(NAV), `${name}: nav ${JSON.stringify(links)}`);
      assert((await p.textContent('main h1')).trim().length > 0, `${name}: no heading`);
      await shot(p, `nojs-${name}`);
    }
  });

  await check('without JavaScript: the live ticket list degrades to a reload link that shows new mail', async () => {
    await p.goto(`${BASE}/tickets`);
    const subject = `Seen after a reload ${Date.now()}`;
    const dir = env('MAILDIR');
    const tmp = join(dir, 'tmp', 'nojs-live');
    writeFileSync(
      tmp,
      `From: Dee <dee@example.com>\r\nTo: help@example.com\r\nSubject: ${subject}\r\nMessage-ID: <nojs-live@example.com>\r\nDate: Mon, 1 Jan 2024 12:00:00 +0000\r\n\r\nHello without scripts.\r\n`,
    );
    renameSync(tmp, join(dir, 'new', '1800000002.Mnojs.host'));
    let seen = false;
    for (let i = 0; i < 60 && !seen; i++) {
      await p.waitForTimeout(500);
      await p.click('#ticket-list a:has-text("Reload")');
      await p.waitForLoadState('load');
      seen = (await p.textContent('#ticket-list')).includes(subject);
    }
    assert(seen, 'the new ticket never appeared after reloading');
    await p.goto(`${BASE}/`);
    assert(await p.$('#channels a:has-text("Reload")'), 'the overview has no reload link');
  });

  await check('without JavaScript: pause and resume are full-page posts', async () => {
    await p.goto(`${BASE}/channels`);
    await p.click('button:has-text("Pause box")');
    await p.waitForSelector('button:has-text("Resume box")');
    assert(loads.includes('POST /channels/box/pause'), `no full-page post: ${loads.slice(-3)}`);
    await p.click('button:has-text("Resume box")');
    await p.waitForSelector('button:has-text("Pause box")');
  });

  await check('without JavaScript: Test connection posts and shows the whole result as a page', async () => {
    await p.goto(`${BASE}/channels`);
    await p.click('button:has-text("Test connection of broken")');
    await p.waitForSelector('text=Connection test failed', { timeout: 60000 });
    // With scripts on, htmx would have put the result into the channels page instead.
    assert(new URL(p.url()).pathname === '/channels/broken/test', `at ${p.url()}`);
    const stages = await p.$$eval('ol.stages li', (l) => l.map((x) => x.className));
    assert(stages.length > 0 && stages[stages.length - 1] === 'failing', `stages ${JSON.stringify(stages)}`);
    await shot(p, 'nojs-channel-test');
  });

  await check('without JavaScript: the integration preview is a full-page post', async () => {
    await p.goto(`${BASE}/integrations`);
    await p.selectOption('#i-cloud', 'gcc-high');
    await p.fill('#i-name', 'nojs');
    await p.fill('#i-tenant', 'contoso.onmicrosoft.us');
    await p.fill('#i-client', '00000000-0000-0000-0000-000000000002');
    await p.click('button:has-text("Preview")');
    await p.waitForSelector('#preview >> text=login.microsoftonline.us');
    assert((await p.inputValue('#i-tenant')) === 'contoso.onmicrosoft.us', 'the form lost its values');
  });

  await check('without JavaScript: a quarantined message is discarded with a reason', async () => {
    const id = env('QUARANTINED');
    await p.goto(`${BASE}/quarantine/${id}`);
    await p.fill('#reason', 'junk, seen without scripts');
    await p.click('button:has-text("Discard this message")');
    await p.waitForURL(`${BASE}/quarantine`);
    const links = await p.$$eval('main table a', (as) => as.map((a) => a.textContent.trim()));
    assert(!links.includes(id), `still listed: ${JSON.stringify(links)}`);
  });

  await check('without JavaScript: an API token is created once and revoked', async () => {
    await p.goto(`${BASE}/admin`);
    await p.click('button:has-text("Create an API token")');
    const id = (await p.textContent('[role=status]')).match(/Your new API token ([0-9a-f]{16})/)[1];
    await p.click(`button:has-text("Revoke token ${id}")`);
    await p.waitForSelector(`text=API token ${id} of ${env('USER')} is revoked`);
  });

  await check('without JavaScript: logging out ends the session', async () => {
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
