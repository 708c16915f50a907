// The app test's Status step (tests/browser/app.mjs, step s): health, storage, cameras, the
// system card, no overflow at 390 px, and a temperature alert from a fake sysfs
// (HINDSIGHT_SYSFS_ROOT) on the page within 2 s of the server raising it, then cleared.

import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The fake sysfs the daemon reads (HINDSIGHT_SYSFS_ROOT): one thermal zone at `milli` m°C. */
export function fakeTemperature(dir, milli) {
  const z = join(dir, 'sys', 'class', 'thermal', 'thermal_zone0');
  mkdirSync(z, { recursive: true });
  writeFileSync(join(z, 'type'), 'cpu-thermal\n');
  writeFileSync(join(z, 'temp.new'), `${milli}\n`);
  renameSync(join(z, 'temp.new'), join(z, 'temp'));
}

export async function statusStep({ page, goto, api, waitFor, shot, ran, dir, CAM, PHONE_CAM }) {
  await goto('status');
  const st = await page.locator('#health-status').textContent({ timeout: 10000 });
  if (st !== 'ok') throw new Error(`health shown: ${st}`);
  // The system card: the fake zone's temperature with its sparkline; no alert yet.
  await page.locator('#spark-temp').waitFor({ timeout: 10000 });
  if (await page.locator('#alerts-list').count()) throw new Error(`an alert before the test raised one: ${await page.locator('#alerts-list').textContent()}`);
  // Readable at 390 px: nothing wider than the screen, no word broken in the middle.
  const overflow = await page.evaluate(() => {
    const vw = document.documentElement.clientWidth;
    // Tables that scroll sideways inside their own box (sessions, phone clients) are allowed to.
    const wide = [...document.querySelectorAll('#view *')].filter((e) => !e.parentElement.closest('.scroll-x') && e.getBoundingClientRect().right > vw + 1);
    return { page: document.documentElement.scrollWidth, vw, wide: wide.slice(0, 3).map((e) => `${e.tagName}#${e.id}.${e.className}`) };
  });
  if (overflow.page > overflow.vw || overflow.wide.length) throw new Error(`overflow at ${overflow.vw} px: ${JSON.stringify(overflow)}`);
  // Hot: the alert appears within 2 s of the server raising it (SSE, no reload).
  fakeTemperature(dir, 85000);
  const raisedAt = await waitFor('the server raises the temperature alert', 20, async () => {
    const { body } = await api('/api/health');
    if (body?.alerts?.includes('temperature')) return Date.now();
  });
  await page.locator('#alerts-list [data-key="temperature"]').waitFor({ timeout: 2000 });
  const shownAfter = Date.now() - raisedAt;
  const alertText = await page.locator('#alerts-list').textContent();
  if (!/85\.0/.test(alertText)) throw new Error(`alert shown: ${alertText}`);
  fakeTemperature(dir, 45000);
  await page.locator('#alerts-none').waitFor({ timeout: 20000 });
  const camsText = await page.locator('#status-cameras').textContent();
  if (!camsText.includes(CAM)) throw new Error(`cameras card: ${camsText}`);
  const storage = await page.locator('#status-storage').textContent();
  if (!/clips/.test(storage)) throw new Error(`storage card: ${storage}`);
  let phone = '';
  if (ran.includes('phone')) {
    await waitFor('the phone client on Status', 10, async () =>
      ((await page.locator('#status-clients').textContent()).includes(PHONE_CAM) ? true : undefined));
    phone = `; client ${PHONE_CAM} listed`;
  }
  await shot('status');
  return `health ${st}; ${CAM} listed; no overflow at ${overflow.vw} px; temperature alert shown ${shownAfter} ms after the server raised it, then cleared; storage: ${storage.replace(/\s+/g, ' ').slice(0, 60)}${phone}`;
}
