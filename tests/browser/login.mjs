// The login page in real headless Chromium at a phone viewport, over HTTPS (the daemon's
// generated self-signed certificate; Chromium started with --ignore-certificate-errors) with
// auth on: a page without a session redirects to /login?next=..., a wrong password shows an
// error, the right one sets the strict session cookie and lands on `next`; after 5 failures the
// page shows the 429 wait and disables the button.
//
//   HINDSIGHT_BIN=target/debug/hindsight node tests/browser/login.mjs
//
// Needs `chromium` (Debian package, /usr/bin/chromium or $CHROMIUM) and `npm ci` in this folder.
// Ends with `login: N passed, M failed` and exits non-zero when anything failed.

import { join } from 'node:path';
import { configHead, createHarness } from './harness.mjs';

const PASSWORD = 'correct horse battery';
const h = createHarness({ name: 'login', tmpPrefix: 'hindsight-login-' });
const { dir, check, waitFor, startDaemon, launchChromium, run } = h;

async function submit(page, password) {
  await page.fill('#password', password);
  await page.click('#submit');
}

async function main() {
  const httpBase = await startDaemon((port) => `${configHead(dir, port, `tls = "on"\nauth = "on"\npassword = ${JSON.stringify(PASSWORD)}\n`)}
[[camera]]
id = "cam0"
source = { kind = "test", width = 320, height = 240, fps = 10 }
encoder = "x264enc"
pre_s = 1
post_s = 1
`);
  const base = httpBase.replace('http://', 'https://');
  const context = await launchChromium(['--ignore-certificate-errors']);
  const page = await context.newPage();
  await page.setViewportSize({ width: 390, height: 844 });

  if (!(await check('a page without a session redirects to the login page', () =>
    waitFor('GET /clips?x=1 → /login', 60, async () => {
      await page.goto(`${base}/clips?x=1`, { timeout: 5000 });
      const u = new URL(page.url());
      if (u.pathname !== '/login') throw new Error(`at ${page.url()}`);
      if (u.searchParams.get('next') !== '/clips?x=1') throw new Error(`next = ${u.searchParams.get('next')}`);
      return page.url();
    })))) return;

  await check('the form fits a 390 px wide screen', async () => {
    const box = await page.locator('#submit').boundingBox();
    if (!box || box.x < 0 || box.x + box.width > 390) throw new Error(`button at ${JSON.stringify(box)}`);
    const scroll = await page.evaluate(() => document.documentElement.scrollWidth);
    if (scroll > 390) throw new Error(`page is ${scroll} px wide`);
    return `button ${Math.round(box.width)} px wide`;
  });

  await check('a wrong password shows an error and stays on the page', async () => {
    await submit(page, 'wrong password');
    await page.waitForFunction(() => document.getElementById('error').textContent.length > 0, null, { timeout: 5000 });
    const text = await page.textContent('#error');
    if (!/wrong/i.test(text)) throw new Error(`error text ${JSON.stringify(text)}`);
    if (new URL(page.url()).pathname !== '/login') throw new Error(`left to ${page.url()}`);
    return text;
  });

  await check('the right password sets the session cookie and goes to next', async () => {
    await Promise.all([page.waitForURL((u) => u.pathname === '/clips', { timeout: 10000 }), submit(page, PASSWORD)]);
    const u = new URL(page.url());
    if (u.search !== '?x=1') throw new Error(`at ${page.url()}`);
    const c = (await context.cookies(base)).find((c) => c.name === 'hindsight_session');
    if (!c) throw new Error('no hindsight_session cookie');
    if (!c.httpOnly || !c.secure || c.sameSite !== 'Strict') throw new Error(`cookie ${JSON.stringify(c)}`);
    const s = await page.evaluate(async () => (await fetch('/api/session')).json());
    if (s.user !== 'admin') throw new Error(`/api/session ${JSON.stringify(s)}`);
    const js = await page.evaluate(() => document.cookie);
    if (js.includes('hindsight_session')) throw new Error('cookie visible to JavaScript');
    return `${page.url()}, cookie HttpOnly Secure SameSite=Strict`;
  });

  await check('next= never leaves this origin (tab, backslash and scheme tricks land on /)', async () => {
    const origin = new URL(base).origin;
    const seen = [];
    for (const next of ['/%09/evil.example', '/%5C%5Cevil.example', 'https://evil.example/', '/.//evil.example']) {
      await context.clearCookies();
      await page.goto(`${base}/login?next=${next}`);
      await Promise.all([
        page.waitForURL((u) => u.pathname !== '/login' || u.origin !== origin, { timeout: 10000 }),
        submit(page, PASSWORD),
      ]);
      const u = new URL(page.url());
      if (u.origin !== origin) throw new Error(`next=${next} went to ${page.url()}`);
      seen.push(`${next} → ${u.pathname}`);
    }
    return seen.join(', ');
  });

  await check('after 5 failures the page shows the wait and disables the button', async () => {
    await context.clearCookies();
    await page.goto(`${base}/login`);
    for (let i = 0; i < 5; i++) {
      await submit(page, `wrong ${i}`);
      await page.waitForFunction(() => !document.getElementById('submit').disabled
        && document.getElementById('error').textContent.length > 0, null, { timeout: 5000 });
    }
    await submit(page, 'wrong again');
    await page.waitForFunction(() => /Too many/.test(document.getElementById('error').textContent), null, { timeout: 5000 });
    const text = await page.textContent('#error');
    const disabled = await page.isDisabled('#submit');
    if (!disabled) throw new Error('button still enabled');
    if (!/\d+ s/.test(text)) throw new Error(`no wait in ${JSON.stringify(text)}`);
    await page.screenshot({ path: join(dir, 'login-rate-limited.png') });
    return text;
  });
}

await run(main);
