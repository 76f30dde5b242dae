// The channel pages against a real Dovecot (run by crates/intake/tests/e2e/web.rs): a channel
// is created in the form with its folder chosen from the server's list and the count a first
// sync would import, Test connection turns every stage ✓, a wrong password shows the failing
// stage with its finding, and mail delivered to Dovecot appears as a ticket without a reload.
//
// Environment: BASE, USER, PASSWORD, SHOTS (as run.mjs), IMAP_PORT (Dovecot's plain IMAP port
// on 127.0.0.1), MAILBOX and MAILBOX_PASSWORD (a Dovecot user), WAITING (messages already in
// its INBOX).
import { connect } from 'node:net';
import { chromium } from 'playwright-core';
import { BASE, assert, audit, check, env, finish, login, shot } from './lib.mjs';

// APPEND one message to the user's INBOX over IMAP, as a mail server delivering it would.
function append(raw) {
  return new Promise((ok, fail) => {
    const s = connect(Number(env('IMAP_PORT')), '127.0.0.1');
    let buf = '';
    let step = 0;
    const timer = setTimeout(() => fail(new Error(`IMAP append timed out: ${buf}`)), 15000);
    s.on('error', fail);
    s.on('data', (d) => {
      buf += d.toString();
      if (step === 0 && buf.includes('* OK')) {
        step = 1;
        s.write(`a LOGIN "${env('MAILBOX')}" "${env('MAILBOX_PASSWORD')}"\r\n`);
      } else if (step === 1 && /a OK/.test(buf)) {
        step = 2;
        s.write(`b APPEND INBOX {${Buffer.byteLength(raw)}}\r\n`);
      } else if (step === 2 && /\r\n\+ /.test(`\r\n${buf.split('a OK').pop()}`)) {
        step = 3;
        s.write(`${raw}\r\n`);
      } else if (step === 3 && /b OK/.test(buf)) {
        step = 4;
        s.write('c LOGOUT\r\n');
        clearTimeout(timer);
        s.end();
        ok();
      } else if (/[ab] (NO|BAD)/.test(buf)) {
        clearTimeout(timer);
        s.destroy();
        fail(new Error(`IMAP refused: ${buf}`));
      }
    });
  });
}

async function newChannel(p, name, password) {
  await p.goto(`${BASE}/channels`);
  await p.fill('#c-name', name);
  await p.fill('#c-project', 'DOVE');
  await p.selectOption('#c-protocol', 'imap');
  await p.fill('#c-host', '127.0.0.1');
  await p.fill('#c-port', env('IMAP_PORT'));
  await p.selectOption('#c-tls', 'none');
  await p.fill('#c-mailbox', env('MAILBOX'));
  await p.check('#c-auth-password');
  await p.fill('#c-password', password);
}

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
try {
  const ctx = await browser.newContext({ bypassCSP: true });
  const p = await ctx.newPage();
  await login(p, '/channels');

  await check('the new-channel form lists the server\'s folders and what a first sync would import', async () => {
    await newChannel(p, 'dove', env('MAILBOX_PASSWORD'));
    await p.fill('#c-folder', 'Posteingang');
    await p.click('button:has-text("List the server\'s folders")');
    await p.waitForSelector('select#c-folder, #channel-error', { timeout: 60000 }).catch(async (e) => {
      throw new Error(`${e.message}; the page at ${p.url()} says: ${(await p.textContent('body')).replace(/\s+/g, ' ').slice(0, 1500)}`);
    });
    const error = await p.$('#channel-error');
    assert(!error, `the form said: ${error && (await error.textContent())}`);
    const options = await p.$$eval('select#c-folder option', (o) => o.map((x) => x.value));
    assert(options.includes('INBOX') && options.includes('Gelöschte Elemente'), `folders ${JSON.stringify(options)}`);
    assert((await p.textContent('#probe')).includes('no folder "Posteingang"'), 'the missing folder is not named');
    await p.selectOption('select#c-folder', 'INBOX');
    // The page never sends the password back: it is typed again.
    await p.fill('#c-password', env('MAILBOX_PASSWORD'));
    await p.click('button:has-text("List the server\'s folders")');
    await p.waitForSelector('#import-count', { timeout: 60000 }).catch(async (e) => {
      throw new Error(`${e.message}; the form says: ${(await p.textContent('#new-channel')).replace(/\s+/g, ' ').slice(0, 1500)}`);
    });
    const n = env('WAITING');
    const text = await p.textContent('#import-count');
    assert(text.includes(`INBOX holds ${n} messages`) && text.includes(`${n} with "all"`), `count: ${text}`);
    await audit(p, 'channel-new');
    await shot(p, 'channel-new');
  });

  await check('a channel saved from the form tests ✓ at every stage against Dovecot', async () => {
    await p.fill('#c-password', env('MAILBOX_PASSWORD'));
    await p.selectOption('#c-start', 'all');
    await p.click('button:has-text("Save the channel")');
    await p.waitForURL(`${BASE}/channels`);
    const section = p.locator('section.card', { has: p.locator('h2', { hasText: 'dove' }) });
    await section.locator('button:has-text("Test connection of dove")').click();
    await p.waitForSelector('[data-channel="dove"] >> text=Connection test passed', { timeout: 60000 });
    const stages = await p.$$eval('[data-channel="dove"] ol.stages li', (l) => l.map((x) => [x.className, x.querySelector('strong').textContent]));
    assert(stages.length >= 4 && stages.every(([c]) => c === 'ok'), `stages ${JSON.stringify(stages)}`);
    const names = stages.map(([, s]) => s);
    for (const s of ['dns', 'tcp', 'login', 'counts']) assert(names.includes(s), `no stage ${s}: ${names}`);
    await shot(p, 'channel-test-dovecot');
  });

  await check('a wrong password shows the failing login stage with the server\'s words and a finding', async () => {
    await newChannel(p, 'dove-wrong', 'not-the-password');
    await p.click('button:has-text("Save the channel")');
    await p.waitForURL(`${BASE}/channels`);
    await p.click('button:has-text("Test connection of dove-wrong")');
    await p.waitForSelector('[data-channel="dove-wrong"] >> text=Connection test failed', { timeout: 60000 });
    const stages = await p.$$eval('[data-channel="dove-wrong"] ol.stages li', (l) => l.map((x) => [x.className, x.textContent.replace(/\s+/g, ' ').trim()]));
    const failing = stages.filter(([c]) => c === 'failing');
    assert(failing.length === 1 && failing[0][1].includes('login'), `stages ${JSON.stringify(stages)}`);
    assert(/AUTHENTICATIONFAILED|Authentication failed/i.test(failing[0][1]), `not the server's words: ${failing[0][1]}`);
    const cards = await p.$$eval('[data-channel="dove-wrong"] .cause-card', (l) => l.map((x) => x.textContent.replace(/\s+/g, ' ').trim()));
    assert(cards.length > 0, 'no finding shown');
    console.log(`# finding: ${cards[0]}`);
    await audit(p, 'channel-test-failing');
    await shot(p, 'channel-test-failing');
  });

  await check('mail delivered to Dovecot appears as a ticket without reloading', async () => {
    await p.goto(`${BASE}/tickets`);
    let reloaded = false;
    p.on('framenavigated', (f) => {
      if (f === p.mainFrame()) reloaded = true;
    });
    const subject = `Delivered to Dovecot ${Date.now()}`;
    await append(
      `From: Eve <eve@example.com>\r\nTo: ${env('MAILBOX')}\r\nSubject: ${subject}\r\nMessage-ID: <dove-live-${Date.now()}@example.com>\r\nDate: Mon, 1 Jan 2024 12:00:00 +0000\r\n\r\nThe printer again.\r\n`,
    );
    await p.waitForSelector(`#ticket-list >> text=${subject}`, { timeout: 60000 });
    assert(!reloaded, 'the page was reloaded');
  });
} finally {
  await browser.close();
}
finish();
