// Helpers shared by the browser checks (run.mjs, nojs.mjs, live.mjs): one line per check, an
// axe-core audit, screenshots, log-in, and a loopback HTTP server that counts requests.
import { mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
export const BASE = env('BASE');
export const SHOTS = env('SHOTS');
mkdirSync(SHOTS, { recursive: true });
const AXE = readFileSync(fileURLToPath(import.meta.resolve('axe-core/axe.min.js')), 'utf8');

export const NAV = ['Overview', 'Integrations', 'Channels', 'Tickets', 'Mail log', 'Quarantine', 'Admin'];

let passed = 0;
let failed = 0;
export async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok - ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL - ${name}: ${e && e.stack ? e.stack : e}`);
  }
}
export function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}
export function finish() {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

// axe-core on the page (the context must have bypassCSP so the audit can be injected): no
// serious or critical violation.
export async function audit(page, name) {
  await page.addScriptTag({ content: AXE });
  const res = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 3) }));
  });
  const bad = res.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert(bad.length === 0, `${name}: ${JSON.stringify(bad)}`);
  for (const v of res) console.log(`# ${name}: minor axe finding ${v.id} (${v.impact}): ${v.help}`);
}

export async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

export async function login(page, next = '/') {
  await page.goto(`${BASE}/login?next=${encodeURIComponent(next)}`);
  await page.fill('#user', env('USER'));
  await page.fill('#password', env('PASSWORD'));
  await page.click('button[type=submit]');
  await page.waitForURL(`${BASE}${next}`);
}

// A loopback HTTP server standing in for a remote host: answers a 1×1 GIF and records every
// request's path.
export async function pixelServer() {
  const hits = [];
  const gif = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');
  const server = createServer((req, res) => {
    hits.push(req.url);
    res.writeHead(200, { 'content-type': 'image/gif', 'content-length': gif.length });
    res.end(gif);
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address();
  return { url: `http://127.0.0.1:${port}`, hits, close: () => server.close() };
}

export const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
