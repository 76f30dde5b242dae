// The channel pages against a real Dovecot (run by crates/intake/tests/e2e/web.rs): a channel
// is created in the form with its folder chosen from the server's list and the count a first
// sync would import, Test connection shows every stage turn ✓ live (each stage on the page
// before the result), mail delivered to Dovecot appears as a ticket without a reload, the edit
// form is prefilled and shows a validation error next to its field, and after editing the
// channel to a wrong password Test connection shows the failing login stage with the server's
// words and the PASSWORD_REFUSED card with its fix.
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

// Record, as the page changes, each stage row added to a test's list and whether the test's
// result was on the page at that moment: proof that the stages arrive live, one by one.
async function watchStages(p) {
  await p.evaluate(() => {
    window.__stages = [];
    new MutationObserver((records) => {
      for (const r of records) {
        for (const n of r.addedNodes) {
          if (n.nodeType === 1 && n.matches('ol.stages li')) {
            const slot = n.closest('.test-result');
            window.__stages.push({ stage: n.dataset.stage, resultShown: !!(slot && slot.querySelector('.test-summary')) });
          }
        }
      }
    }).observe(document.body, { childList: true, subtree: true });
  });
}

async function assertLive(p, n) {
  const seen = await p.evaluate(() => window.__stages);
  assert(seen.length === n, `not every stage arrived on its own: ${JSON.stringify(seen)}`);
  assert(seen.every((s) => !s.resultShown), `a stage appeared after the result: ${JSON.stringify(seen)}`);
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

  await check('listing the folders without a password is refused at once, next to the password field', async () => {
    await newChannel(p, 'dove', '');
    const started = Date.now();
    await p.click('button:has-text("List the server\'s folders")');
    await p.waitForSelector('#c-auth-error', { timeout: 10000 });
    const took = Date.now() - started;
    assert(took < 5000, `took ${took} ms`);
    assert((await p.textContent('#c-auth-error')).includes('Nothing was sent to the server'), 'no reason given');
    assert((await p.getAttribute('#c-password', 'aria-describedby')) === 'c-auth-error', 'the error is not tied to the field');
  });

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
    // The count or the reason it is missing, whichever comes: never a 60 s wait on an error.
    await p.waitForSelector('#import-count, #channel-error, .field-error', { timeout: 60000 }).catch(async (e) => {
      throw new Error(`${e.message}; the form says: ${(await p.textContent('#new-channel')).replace(/\s+/g, ' ').slice(0, 1500)}`);
    });
    assert(!(await p.$('#channel-error, .field-error')), `the form said: ${await p.textContent('#new-channel')}`);
    const n = env('WAITING');
    const text = await p.textContent('#import-count');
    assert(text.includes(`INBOX holds ${n} messages`) && text.includes(`${n} with "all"`), `count: ${text}`);
    await audit(p, 'channel-new');
    await shot(p, 'channel-new');
  });

  await check('a channel saved from the form tests ✓ at every stage, each stage appearing live before the result', async () => {
    await p.fill('#c-password', env('MAILBOX_PASSWORD'));
    await p.selectOption('#c-start', 'all');
    await p.click('button:has-text("Save the channel")');
    await p.waitForURL(`${BASE}/channels`);
    await watchStages(p);
    const section = p.locator('section.card', { has: p.locator('h2', { hasText: 'dove' }) });
    await section.locator('button:has-text("Test connection of dove")').click();
    await p.waitForSelector('[data-channel="dove"] .test-summary', { timeout: 60000 });
    assert((await p.textContent('[data-channel="dove"] .test-summary')).includes('Connection test passed'), 'the test did not pass');
    const stages = await p.$$eval('[data-channel="dove"] ol.stages li', (l) => l.map((x) => [x.className, x.querySelector('strong').textContent, x.querySelector('.timing').textContent]));
    assert(stages.length >= 4 && stages.every(([c]) => c === 'ok'), `stages ${JSON.stringify(stages)}`);
    const names = stages.map(([, s]) => s);
    for (const s of ['dns', 'tcp', 'login', 'counts']) assert(names.includes(s), `no stage ${s}: ${names}`);
    assert(stages.every(([, , t]) => /^\d+(\.\d)? (ms|s)$/.test(t.trim())), `timings ${JSON.stringify(stages)}`);
    await assertLive(p, stages.length);
    await audit(p, 'channel-test-live');
    await shot(p, 'channel-test-live');
  });

  await check('the test stream refuses a request another site starts with the session cookie', async () => {
    const r = await p.request.get(`${BASE}/channels/dove/test/stream`, { headers: { 'sec-fetch-site': 'cross-site' } });
    assert(r.status() === 403, `status ${r.status()}`);
  });

  await check('mail delivered to Dovecot appears as a ticket without reloading', async () => {
    await p.goto(`${BASE}/tickets`);
    let reloaded = false;
    const onNav = (f) => {
      if (f === p.mainFrame()) reloaded = true;
    };
    p.on('framenavigated', onNav);
    const subject = `Delivered to Dovecot ${Date.now()}`;
    await append(
      `From: Eve <eve@example.com>\r\nTo: ${env('MAILBOX')}\r\nSubject: ${subject}\r\nMessage-ID: <dove-live-${Date.now()}@example.com>\r\nDate: Mon, 1 Jan 2024 12:00:00 +0000\r\n\r\nThe printer again.\r\n`,
    );
    await p.waitForSelector(`#ticket-list >> text=${subject}`, { timeout: 60000 });
    p.off('framenavigated', onNav);
    assert(!reloaded, 'the page was reloaded');
  });

  await check('the edit form is prefilled, and a move without its folder is refused next to the field', async () => {
    await p.goto(`${BASE}/channels`);
    await p.click('a:has-text("Edit dove")');
    await p.waitForURL(`${BASE}/channels/dove/edit`);
    assert((await p.inputValue('#c-host')) === '127.0.0.1', 'host not prefilled');
    assert((await p.inputValue('#c-port')) === env('IMAP_PORT'), 'port not prefilled');
    assert((await p.inputValue('#c-mailbox')) === env('MAILBOX'), 'mailbox not prefilled');
    assert((await p.inputValue('#c-start')) === 'all', 'start not prefilled');
    assert((await p.inputValue('#c-password')) === '', 'the password was sent back');
    const actions = await p.$$eval('#c-after option', (o) => o.map((x) => x.value));
    assert(JSON.stringify(actions) === JSON.stringify(['mark-read', 'move', 'delete']), `actions ${actions}`);
    await audit(p, 'channel-edit');
    await shot(p, 'channel-edit');
    await p.selectOption('#c-after', 'move');
    await p.fill('#c-move-to', '');
    await p.click('button:has-text("Save the changes")');
    await p.waitForSelector('#c-after-error', { timeout: 30000 });
    const err = await p.textContent('#c-after-error');
    assert(/after = "move:"/.test(err), `the error next to the field: ${err}`);
    assert((await p.getAttribute('#c-after', 'aria-describedby')).includes('c-after-error'), 'the error is not tied to the field');
    await audit(p, 'channel-edit-error');
    await shot(p, 'channel-edit-error');
  });

  await check('after editing the password to a wrong one, Test connection shows the failing login stage, the server\'s words and the root cause with its fix', async () => {
    await p.goto(`${BASE}/channels/dove/edit`);
    await p.fill('#c-password', 'not-the-password');
    await p.click('button:has-text("Save the changes")');
    await p.waitForURL(`${BASE}/channels`);
    await watchStages(p);
    await p.click('button:has-text("Test connection of dove")');
    await p.waitForSelector('[data-channel="dove"] .test-summary', { timeout: 60000 });
    assert((await p.textContent('[data-channel="dove"] .test-summary')).includes('Connection test failed'), 'the test did not fail');
    const stages = await p.$$eval('[data-channel="dove"] ol.stages li', (l) => l.map((x) => [x.className, x.textContent.replace(/\s+/g, ' ').trim()]));
    const failing = stages.filter(([c]) => c === 'failing');
    assert(failing.length === 1 && failing[0][1].includes('login'), `stages ${JSON.stringify(stages)}`);
    assert(/\[AUTHENTICATIONFAILED\] Authentication failed/.test(failing[0][1]), `not the server's words: ${failing[0][1]}`);
    await assertLive(p, stages.length);
    const cards = await p.$$eval('[data-channel="dove"] .cause-card', (l) => l.map((x) => [x.dataset.code, x.textContent.replace(/\s+/g, ' ').trim()]));
    assert(cards.length > 0 && cards[0][0] === 'PASSWORD_REFUSED', `cards ${JSON.stringify(cards)}`);
    assert(cards[0][1].includes('Fix:') && cards[0][1].includes('[[channel]] "dove"'), `no fix: ${cards[0][1]}`);
    assert(!(await p.textContent('body')).includes('not-the-password'), 'the password is on the page');
    console.log(`# finding: ${cards[0][1]}`);
    await audit(p, 'channel-test-failing');
    await shot(p, 'channel-test-failing');
  });
} finally {
  await browser.close();
}
finish();
