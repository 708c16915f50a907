// The phone web app end to end, in real headless Chromium at a phone viewport (390×844, touch,
// DPR 2): the daemon with a moving test camera, driven only through the app's pages.
//
//   (a) login   — log in through /login when the daemon has auth on (GET /api/session → 401)
//   (b) live    — Live pinned to MJPEG (?preview=mjpeg; WebRTC/LL-HLS are whep.mjs's) shows the
//                 camera's MJPEG preview with the badge "MJPEG", and two shots of it a second apart
//                 differ; the camera has sound (test beep): its card says "sound in clips"
//   (c) save    — "Save clip" → REC + the clip id; the clip appears in Clips and plays there
//                 (currentTime advances, duration ≈ duration_s)
//   (d) upload  — a real ~4 MB H.264 MP4 with 1 MB tus chunks (?chunk=): progress bar visible; every
//                 upload request after the first PATCH is aborted (route interception), the page is
//                 reloaded, the file picked again, the upload resumes (HEAD, then a PATCH with
//                 Upload-Offset > 0) and finishes; the resulting clip plays
//   (e) phone   — Phone camera with Chromium's fake camera: a new camera on Live with moving
//                 frames; its "Save clip" yields a clip of that camera that plays
//   (f) devices — Devices lists the upload's device; searching uploads by name finds the file
//   export      — with `[export]` to moto's S3 server (.cache/moto, from scripts/deps test): the
//                 clip of (visible) gets its "exported" badge on the open page from the server's
//                 `export` event, and the list shows it after a reload
//   scroll      — Clips in pages of 1 (?pagesize=1): scrolling loads every clip through `cursor`;
//                 the label filter narrows to the labelled clip, which is pinned, unpinned, deleted
//   (s) status  — Status shows health, storage, the cameras (and the phone client when (e) ran), the
//                 system card; no overflow at 390 px; a temperature alert (fake sysfs) within 2 s
//   (g) shots   — a full-page screenshot of every page under docs/screenshots/; no page is wider
//                 than a 360 px screen
//
//   HINDSIGHT_BIN=target/debug/hindsight node tests/browser/app.mjs
//
// Environment:
//   APP_SKIP=upload,phone,devices   steps not to run (names above); each skipped step is listed
//   APP_TLS=1                        config `tls = "on"`, `auth = "on"` with a password: the test
//                                    then logs in through /login (step login is required)
//   APP_EXTRA_CONFIG='[uploads]\nmax_bytes = "1GiB"'   TOML appended to the config; `\n` is a
//                                    newline. Unless the phone step is skipped (or EXTRA has its
//                                    own [phone]), the config gets `[phone] pre_s = 3, post_s = 3`
//                                    so the phone's clip is short
//   APP_SCREENSHOTS=docs/screenshots where the screenshots go ("" = none)
//   CHROMIUM=/usr/bin/chromium, HINDSIGHT_BIN as for the other browser tests.
// Ends with `app: N passed, M failed` and exits non-zero when anything failed.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';
import { configHead, createHarness, freePort } from './harness.mjs';
import { fakeTemperature, statusStep } from './app_status.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TLS = process.env.APP_TLS === '1';
const SKIP = new Set((process.env.APP_SKIP || '').split(',').map((s) => s.trim()).filter(Boolean));
const EXTRA = (process.env.APP_EXTRA_CONFIG || '').replace(/\\n/g, '\n');
const SHOTS = process.env.APP_SCREENSHOTS ?? 'docs/screenshots';
const USER = 'admin';
const PASSWORD = 'app-test-password-7f3a';
const CAM = 'cam0';
const PHONE_CAM = 'phone-test';
const DEVICE = 'test-phone';
const CHUNK = 1024 * 1024;
const DURATION_TOLERANCE_S = 0.15;

const h = createHarness({ name: 'app', tmpPrefix: 'hindsight-app-' });
const { dir, since, check, waitFor, startDaemon, run } = h;

let browser;
let context;
let page;
let base;
const pageErrors = [];
let visibleClip;
let moto;
const ran = [];
const skipped = [];

/** JSON from the daemon with the browser context's cookies (so it works with auth on). */
async function api(path, { method = 'GET', data } = {}) {
  const r = await context.request.fetch(base + path, { method, data, timeout: 10000, failOnStatusCode: false });
  let body = null;
  try { body = await r.json(); } catch { /* not JSON */ }
  return { status: r.status(), body, headers: r.headers() };
}

async function shot(name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  // Let lazy images and the tab bar settle; full page, phone viewport.
  await page.waitForLoadState('load').catch(() => {});
  await page.evaluate(() => document.getElementById('toasts')?.replaceChildren()).catch(() => {});
  // The whole page in one viewport as tall as the document, so the fixed tab bar sits at the
  // bottom of the picture (a fullPage shot would paint it over the middle).
  const vp = page.viewportSize();
  const height = await page.evaluate(() => Math.ceil(document.documentElement.scrollHeight));
  if (height > vp.height) await page.setViewportSize({ width: vp.width, height });
  await sleep(300);
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
  if (height > vp.height) await page.setViewportSize(vp);
}

async function goto(hash, query = '') {
  await page.goto(`${base}/${query}#/${hash}`);
  await page.waitForSelector(`#view[data-page="${hash}"]`, { timeout: 10000 });
}

/** Waits until a <video> (handle) has metadata, then plays it muted until currentTime > 1 s. */
async function plays(video, expectDuration) {
  const r = await video.evaluate((v) => new Promise((res) => {
    const fail = (why) => res({ ok: false, why });
    const timer = setTimeout(() => fail(`currentTime ${v.currentTime} after 30 s (readyState ${v.readyState}, paused ${v.paused}, error ${v.error?.code})`), 30000);
    v.addEventListener('error', () => { clearTimeout(timer); fail(`media error ${v.error?.code} ${v.error?.message}`); }, { once: true });
    const onTime = () => {
      if (v.currentTime > 1.0) {
        clearTimeout(timer);
        v.removeEventListener('timeupdate', onTime);
        res({ ok: true, t: v.currentTime, d: v.duration, w: v.videoWidth, h: v.videoHeight });
      }
    };
    v.addEventListener('timeupdate', onTime);
    v.muted = true;
    v.play().catch((e) => { clearTimeout(timer); fail(`play() rejected: ${e.name}: ${e.message}`); });
  }));
  if (!r.ok) throw new Error(r.why);
  if (expectDuration !== undefined && Math.abs(r.d - expectDuration) > DURATION_TOLERANCE_S)
    throw new Error(`duration ${r.d} s, API duration_s ${expectDuration} s`);
  return `${r.w}×${r.h}, currentTime ${r.t.toFixed(2)} s, duration ${r.d.toFixed(3)} s${expectDuration !== undefined ? ` (API ${expectDuration})` : ''}`;
}

/** Two element screenshots `gapMs` apart differ (the picture moves). */
async function moving(locator, gapMs = 1200) {
  const a = await locator.screenshot();
  await sleep(gapMs);
  const b = await locator.screenshot();
  if (a.equals(b)) throw new Error('two screenshots 1.2 s apart are identical: the preview does not move');
  return `${a.length} / ${b.length} bytes PNG, different`;
}

/** Waits for the clip `id` to be indexed and returns its metadata. */
function clipIndexed(id, deadline_s = 60) {
  return waitFor(`GET /api/clips/${id} → 200`, deadline_s, async () => {
    const { status, body } = await api(`/api/clips/${id}`);
    if (status === 200) return body;
  });
}

/** In Clips, the card of clip `id` plays inline with the API's duration. */
async function playsInClips(id, meta) {
  await goto('clips', '');
  const card = page.locator(`[data-clip="${id}"]`);
  await card.waitFor({ timeout: 15000 });
  await card.locator('button.play').click();
  const video = await card.locator('video').elementHandle({ timeout: 5000 });
  return plays(video, meta.duration_s);
}

// ---------------------------------------------------------------- steps

async function stepLogin() {
  const s = await api('/api/session');
  if (s.status === 404) {
    if (TLS) throw new Error('APP_TLS=1 but GET /api/session is 404: the auth routes are not in this build');
    return 'no /api/session route (auth not merged): nothing to log in to';
  }
  if (s.status === 200 && s.body?.auth === false) return 'auth is off (loopback without config)';
  if (s.status !== 401) throw new Error(`GET /api/session → ${s.status} ${JSON.stringify(s.body)}`);
  // An app page without a session goes to the login page.
  await page.goto(`${base}/#/live`);
  await page.waitForURL(/\/login/, { timeout: 10000 });
  await page.waitForSelector('input[type=password]');
  await shot('login');
  const user = page.locator('input[name=username], input#username, input[autocomplete=username]').first();
  if (await user.count()) await user.fill(USER);
  await page.locator('input[type=password]').first().fill(PASSWORD);
  await page.locator('input[type=password]').first().press('Enter');
  await page.waitForURL((u) => !u.pathname.startsWith('/login'), { timeout: 10000 });
  const after = await api('/api/session');
  if (after.status !== 200 || after.body?.user !== USER) throw new Error(`after login GET /api/session → ${after.status} ${JSON.stringify(after.body)}`);
  return `logged in as ${after.body.user}, now at ${page.url()}`;
}

async function stepLive() {
  // Pinned to MJPEG: without it the page tries WebRTC, then LL-HLS (whep.mjs tests those).
  await goto('live', '?preview=mjpeg');
  const card = page.locator(`.card.camera[data-camera="${CAM}"]`);
  await card.waitFor({ timeout: 15000 });
  const badge = await card.locator('.live-mode').evaluate((b) => ({ mode: b.dataset.mode, text: b.textContent.trim() }));
  if (badge.mode !== 'mjpeg' || badge.text !== 'MJPEG') throw new Error(`preview badge ${JSON.stringify(badge)}, want MJPEG`);
  const img = card.locator('img.preview');
  await page.waitForFunction((sel) => document.querySelector(sel)?.naturalWidth > 0,
    `.card.camera[data-camera="${CAM}"] img.preview`, { timeout: 15000 });
  const src = await img.getAttribute('src');
  if (src !== `/api/cameras/${CAM}/mjpeg`) throw new Error(`preview src ${src}`);
  const state = await card.getAttribute('data-state');
  if (state !== 'running') throw new Error(`camera state shown: ${state}`);
  const m = await moving(img);
  // The camera has sound: MJPEG is silent, and the card says the clips have it.
  await page.waitForFunction((sel) => /sound in clips/.test(document.querySelector(sel)?.textContent || ''),
    `.card.camera[data-camera="${CAM}"] .small-info`, { timeout: 15000 });
  await shot('live');
  // A hidden tab drops the preview: the daemon sees its MJPEG viewer leave; visible again → back.
  const viewers = async () => (await api(`/api/cameras/${CAM}`)).body?.viewers;
  const before = await viewers();
  // Exactly one. A render left mid-await (the hash change after login) once attached a second,
  // orphan <img>; Chromium shared one connection between both, so hiding the tab did not close it.
  if (before !== 1) throw new Error(`viewers ${before} while Live shows one preview (want 1)`);
  const setHidden = (hidden) => page.evaluate((hd) => {
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => hd });
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (hd ? 'hidden' : 'visible') });
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
  await setHidden(true);
  await waitFor('viewers 0 while the tab is hidden', 10, async () => ((await viewers()) === 0 ? true : undefined));
  await setHidden(false);
  await waitFor('one viewer again when visible', 10, async () => ((await viewers()) === 1 ? true : undefined));
  return `${src} running, badge "${badge.text}"; ${m}; "sound in clips" shown; MJPEG viewers ${before} → 0 while hidden → back when visible`;
}

let savedClip;
async function stepSave() {
  await goto('live');
  const card = page.locator(`.card.camera[data-camera="${CAM}"]`);
  await card.waitFor({ timeout: 15000 });
  await card.locator('button.save').click();
  const idEl = card.locator('.clip-id');
  await idEl.waitFor({ timeout: 10000 });
  const id = (await idEl.textContent()).trim();
  if (!/^\d{8}T\d{9}Z-[0-9a-f]{6}$/.test(id)) throw new Error(`clip id shown: ${JSON.stringify(id)}`);
  if (await card.locator('.rec').isHidden()) throw new Error('REC indicator hidden right after Save clip');
  const toast = await page.locator('.toast', { hasText: id }).first().isVisible();
  const meta = await clipIndexed(id);
  // The app announces it too (it polls every 2 s).
  await page.locator('.toast', { hasText: 'is ready' }).first().waitFor({ timeout: 15000 });
  savedClip = meta;
  const p = await playsInClips(id, meta);
  await shot('clips');
  return `clip ${id} (toast ${toast}, REC shown), plays in Clips: ${p}`;
}

/**
 * With the Clips page open (it does not poll), a clip saved by a trigger from elsewhere (the
 * API, as MQTT or another phone would) appears at the top through the `/api/events` server
 * event. Prints how long after the clip was indexed (seen by polling the API every 20 ms)
 * the card was on the page.
 */
async function stepVisible() {
  await goto('clips');
  await page.waitForSelector('#clip-list');
  // The page notes when each clip card is added (wall clock, same machine as this process).
  await page.evaluate(() => {
    window.__cardAt = {};
    new MutationObserver((muts) => {
      for (const m of muts) for (const n of m.addedNodes) if (n.dataset?.clip) window.__cardAt[n.dataset.clip] ??= Date.now();
    }).observe(document.getElementById('clip-list'), { childList: true });
  });
  const r = await api(`/api/cameras/${CAM}/trigger`, { method: 'POST', data: { label: 'visible' } });
  if (r.status !== 202) throw new Error(`trigger → ${r.status} ${JSON.stringify(r.body)}`);
  const id = r.body.clip_id;
  const card = page.locator(`#clip-list [data-clip="${id}"]`);
  const shown = card.waitFor({ timeout: 60000 });
  let indexedAt;
  for (const end = Date.now() + 60000; Date.now() < end;) {
    if ((await api(`/api/clips/${id}`)).status === 200) { indexedAt = Date.now(); break; }
    await sleep(20);
  }
  if (!indexedAt) throw new Error(`clip ${id} not indexed within 60 s`);
  visibleClip = id;
  await shown;
  const visibleAt = await page.evaluate((id) => window.__cardAt[id], id);
  const first = await page.locator('#clip-list [data-clip]').first().getAttribute('data-clip');
  if (first !== id) throw new Error(`the new clip is not at the top (first: ${first})`);
  return `clip ${id} on the open Clips page ${visibleAt - indexedAt} ms after the API first listed it (no reload, no poll: server event)`;
}

/** The clip of (visible), on the page still open: its export ends and the badge says so. */
async function stepExport() {
  if (!visibleClip) throw new Error('needs step visible');
  const card = page.locator(`#clip-list [data-clip="${visibleClip}"]`);
  const t0 = Date.now();
  await card.locator('.badge.export[data-export="done"]').waitFor({ timeout: 30000 });
  const live = Date.now() - t0;
  const text = (await card.locator('.badge.export').textContent()).trim();
  if (text !== 'exported') throw new Error(`badge "${text}"`);
  if (await card.locator('button', { hasText: 'Export again' }).isVisible()) throw new Error('"Export again" shown after a successful export');
  const api1 = await api(`/api/clips/${visibleClip}`);
  if (api1.body?.export?.state !== 'done') throw new Error(`API export ${JSON.stringify(api1.body?.export)}`);
  await goto('clips');
  const again = page.locator(`#clip-list [data-clip="${visibleClip}"] .badge.export[data-export="done"]`);
  await again.waitFor({ timeout: 10000 });
  return `"exported" on the open page ${live} ms after the step began (server event), and from the list after a reload; key ${api1.body.export.key}`;
}

async function stepScroll() {
  // Two more clips, one labelled, each indexed before the next trigger (so they are separate).
  const made = [];
  for (const label of ['door', '']) {
    const r = await api(`/api/cameras/${CAM}/trigger`, { method: 'POST', data: { pre_s: 0.5, post_s: 0.5, ...(label ? { label } : {}) } });
    if (r.status !== 202 || r.body?.extended) throw new Error(`trigger → ${r.status} ${JSON.stringify(r.body)}`);
    await clipIndexed(r.body.clip_id);
    made.push(r.body.clip_id);
  }
  const total = (await api(`/api/clips?camera=${CAM}&limit=500`)).body.clips.length;
  const cursors = [];
  const onReq = (r) => { if (/\/api\/clips\?.*cursor=/.test(r.url())) cursors.push(r.url()); };
  page.on('request', onReq);
  try {
    await page.goto(`${base}/?pagesize=1#/clips?camera=${CAM}`);
    await page.waitForSelector('#view[data-page="clips"] [data-clip]');
    // Scrolling to the end loads the rest, one page at a time.
    await waitFor(`${total} clips listed by scrolling`, 20, async () => {
      await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
      const n = await page.locator('#clip-list [data-clip]').count();
      if (n === total) return n;
    });
    if (cursors.length < total - 1) throw new Error(`${cursors.length} requests with a cursor for ${total} clips`);
    await page.fill('#clip-filters input[name=label]', 'door');
    await waitFor('label filter shows only the door clip', 10, async () => {
      const ids = await page.locator('#clip-list [data-clip]').evaluateAll((els) => els.map((e) => e.dataset.clip));
      if (ids.length === 1 && ids[0] === made[0]) return true;
    });
    if (!/label=door/.test(page.url())) throw new Error(`filter not in the URL: ${page.url()}`);
    // Pin and unpin it; delete it (the confirm() is accepted by the dialog handler).
    const card = page.locator(`[data-clip="${made[0]}"]`);
    await card.locator('button', { hasText: 'Pin' }).click();
    await card.locator('.badge.pinned').waitFor({ timeout: 5000 });
    if ((await api(`/api/clips/${made[0]}`)).body?.pinned !== true) throw new Error('Pin did not pin');
    await card.locator('button', { hasText: 'Unpin' }).click();
    await card.locator('.badge.pinned').waitFor({ state: 'detached', timeout: 5000 });
    if ((await api(`/api/clips/${made[0]}`)).body?.pinned !== false) throw new Error('Unpin did not unpin');
    await card.locator('button.danger').click();
    await card.waitFor({ state: 'detached', timeout: 5000 });
    const gone = (await api(`/api/clips/${made[0]}`)).status;
    if (gone !== 404) throw new Error(`after Delete GET /api/clips/${made[0]} → ${gone}`);
    return `${total} clips in pages of 1 (${cursors.length} cursor requests); label=door → ${made[0]} only; pinned, unpinned, deleted (404)`;
  } finally {
    page.off('request', onReq);
  }
}

async function stepUpload() {
  const file = join(dir, 'upload-test.mp4');
  execFileSync('gst-launch-1.0', ['-q', 'videotestsrc', 'num-buffers=240', 'pattern=snow', '!',
    'video/x-raw,width=640,height=360,framerate=30/1', '!', 'x264enc', 'bitrate=4000', 'speed-preset=ultrafast',
    'key-int-max=30', '!', 'mp4mux', '!', 'filesink', `location=${file}`], { stdio: 'inherit' });
  const size = statSync(file).size;
  if (size < 3 * CHUNK) throw new Error(`test video is only ${size} bytes`);
  const patches = [];
  let heads = 0;
  const onReq = (r) => {
    if (!r.url().includes('/api/uploads/')) return;
    if (r.method() === 'PATCH') patches.push(Number(r.headers()['upload-offset']));
    if (r.method() === 'HEAD') heads++;
  };
  page.on('request', onReq);
  try {
    await goto('upload', `?chunk=${CHUNK}`);
    await page.fill('#device', DEVICE);
    // Not a video: a clear error on the page, nothing kept for resuming.
    const text = join(dir, 'notes.txt');
    writeFileSync(text, 'hello, this is not a video\n'.repeat(100));
    await page.setInputFiles('#file', text);
    await page.locator('#upload-state.error').waitFor({ timeout: 15000 });
    const rejected = (await page.locator('#upload-state').textContent()).trim();
    if (!/not a video/i.test(rejected)) throw new Error(`a text file gave: ${rejected}`);
    // First attempt: the first PATCH goes through, everything after it fails like a dead network.
    let passed = 0;
    let aborted = 0;
    await page.route('**/api/uploads/**', async (route) => {
      if (route.request().method() === 'PATCH' && passed === 0) {
        const resp = await route.fetch();
        passed++;
        return route.fulfill({ response: resp });
      }
      if (passed === 0) return route.continue();
      aborted++;
      return route.abort('internetdisconnected');
    });
    await page.setInputFiles('#file', file);
    await waitFor('an upload request aborted after the first PATCH', 20, async () => (aborted > 0 ? true : undefined));
    if (!(await page.locator('#upload-progress').isVisible())) throw new Error('progress bar not visible');
    const mid = Number(await page.locator('#upload-progress').getAttribute('value') ?? await page.evaluate(() => document.querySelector('#upload-progress').value));
    const midPct = await page.locator('#upload-pct').textContent();
    const progress = await page.evaluate(() => document.querySelector('#upload-progress').value);
    if (!(progress > 0 && progress < 100)) throw new Error(`progress after one chunk: ${progress} (${midPct})`);
    await page.unroute('**/api/uploads/**');
    // Reload, pick the same file again: the app finds the stored upload URL and resumes.
    const patchesBefore = patches.length;
    const headsBefore = heads;
    await page.reload();
    await page.waitForSelector('#view[data-page="upload"]');
    const note = await page.locator('#resumable').textContent().catch(() => '');
    await page.setInputFiles('#file', file);
    await waitFor('a PATCH after the reload', 20, async () => (patches.length > patchesBefore ? true : undefined));
    const resumedAt = patches[patchesBefore];
    if (!(resumedAt > 0)) throw new Error(`first PATCH after reload has Upload-Offset ${resumedAt} (offsets ${patches.join(',')})`);
    if (heads <= headsBefore) throw new Error('no HEAD before resuming');
    const link = page.locator('#upload-clip');
    await link.waitFor({ timeout: 90000 });
    const clipId = (await link.textContent()).trim();
    const meta = await clipIndexed(clipId, 10);
    if (meta.source !== 'upload') throw new Error(`clip source ${meta.source}`);
    const p = await plays(await page.locator('#upload-result video').elementHandle(), meta.duration_s);
    await shot('upload');
    return `text file → "${rejected}"; ${size} bytes, first try ${passed} PATCH then ${aborted} aborted at ${midPct} (bar ${mid}); resumed at offset ${resumedAt} after reload (${note.trim()}); PATCH offsets ${patches.join(',')}; clip ${clipId} (device ${meta.device}) plays: ${p}`;
  } finally {
    page.off('request', onReq);
  }
}

async function stepPhone() {
  // Live (reached by hash from here) keeps ?preview=mjpeg: the phone camera's <img> preview.
  await goto('phone', '?preview=mjpeg');
  await page.fill('#phone-id', PHONE_CAM);
  await page.click('#phone-start');
  const frames = await waitFor('phone status shows frames', 60, async () => {
    const err = await page.locator('#phone-status.error').textContent().catch(() => null);
    if (err) throw new Error(err);
    const n = Number(await page.locator('#phone-status').getAttribute('data-frames'));
    if (n >= 30) return n;
  });
  await shot('phone');
  // Hash navigation keeps the stream running; the new camera shows on Live with moving frames.
  await page.evaluate(() => { location.hash = '#/live'; });
  const card = page.locator(`.card.camera[data-camera="${PHONE_CAM}"]`);
  await card.waitFor({ timeout: 15000 });
  await page.waitForFunction((sel) => document.querySelector(sel)?.naturalWidth > 0,
    `.card.camera[data-camera="${PHONE_CAM}"] img.preview`, { timeout: 20000 });
  const m = await moving(card.locator('img.preview'));
  await page.evaluate(() => { location.hash = '#/phone'; });
  await page.waitForSelector('#view[data-page="phone"]');
  await page.click('#phone-save');
  const idEl = page.locator('#view .clip-id');
  await idEl.waitFor({ timeout: 10000 });
  const id = (await idEl.textContent()).trim();
  const meta = await clipIndexed(id, 90);
  if (meta.camera !== PHONE_CAM || !(meta.frames > 0)) throw new Error(`clip ${JSON.stringify(meta)}`);
  const p = await playsInClips(id, meta);
  return `${frames} frames received; on Live: ${m}; clip ${id} of ${meta.camera} (${meta.frames} frames) plays: ${p}`;
}

const stepStatus = () => statusStep({ page, goto, api, waitFor, shot, ran, dir, CAM, PHONE_CAM });

async function stepDevices() {
  await goto('devices');
  const dev = page.locator(`[data-device="${DEVICE}"]`);
  await dev.waitFor({ timeout: 10000 });
  const text = (await dev.textContent()).replace(/\s+/g, ' ');
  await page.fill('#upload-search', 'upload-test');
  await page.locator('#upload-results [data-clip]').first().waitFor({ timeout: 10000 });
  const n = await page.locator('#upload-results [data-clip]').count();
  await shot('devices');
  return `${text}; search "upload-test" → ${n} upload(s)`;
}

/** Screenshots of the pages no step above photographed (e.g. skipped ones, or login with auth off). */
async function stepShots() {
  const done = [];
  for (const p of ['live', 'clips', 'recordings', 'upload', 'phone', 'status', 'devices']) {
    if (ran.includes({ live: 'live', clips: 'save', upload: 'upload', phone: 'phone', status: 'status', devices: 'devices' }[p])) continue;
    await goto(p);
    await sleep(1500);
    await shot(p);
    done.push(p);
  }
  if (!ran.includes('login') || !(await api('/api/session')).body?.auth) {
    await page.goto(`${base}/login`);
    await page.waitForSelector('input[type=password]', { timeout: 10000 });
    await shot('login');
    done.push('login');
  }
  // Usable at 360 px: no page is wider than the screen.
  const vp = page.viewportSize();
  await page.setViewportSize({ width: 360, height: 740 });
  const wide = [];
  for (const p of ['live', 'clips', 'recordings', 'upload', 'phone', 'status', 'devices']) {
    await goto(p);
    await sleep(500);
    const w = await page.evaluate(() => document.documentElement.scrollWidth);
    if (w > 360) wide.push(`${p} ${w}px`);
  }
  await page.setViewportSize(vp);
  if (wide.length) throw new Error(`wider than 360 px: ${wide.join(', ')}`);
  for (const p of ['live', 'clips', 'recordings', 'upload', 'phone', 'status', 'devices', 'login']) {
    if (SHOTS && !(statSync(join(SHOTS, `${p}.png`), { throwIfNoEntry: false })?.size > 0)) throw new Error(`${p}.png missing`);
  }
  return `${resolve(SHOTS)}: ${done.length ? `also shot ${done.join(', ')}` : 'all shot by their steps'}; every page fits 360 px`;
}

const STEPS = [
  ['login', 'log in through /login (when auth is on)', stepLogin],
  ['live', 'Live shows moving frames', stepLive],
  ['save', 'Save clip → the clip in Clips plays', stepSave],
  ['visible', 'a clip saved elsewhere appears on the open Clips page (server event)', stepVisible],
  ['export', 'export to S3 (moto): the clip card\'s badge', stepExport],
  ['scroll', 'Clips: infinite scroll with cursor, label filter, pin, delete', stepScroll],
  ['upload', 'resumable upload through a dropped connection and a reload', stepUpload],
  ['phone', 'Phone camera (fake device) → live camera → clip plays', stepPhone],
  ['status', 'Status page', stepStatus],
  ['devices', 'Devices lists the upload device; search by name', stepDevices],
  ['shots', 'screenshots of every page', stepShots],
];

// ---------------------------------------------------------------- main

async function main() {
  const login = `tls = "on"\nauth = "on"\nusername = "${USER}"\npassword = "${PASSWORD}"\n`;
  // The export step's S3 server: moto (scripts/deps test installs it into .cache/moto).
  let exportToml = '';
  if (!SKIP.has('export')) {
    const bin = resolve('../../.cache/moto/bin/moto_server');
    const motoBin = existsSync(bin) ? bin : resolve('.cache/moto/bin/moto_server');
    const port = await freePort();
    moto = spawn(existsSync(motoBin) ? motoBin : 'moto_server', ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
    moto.on('error', () => {});
    await waitFor('moto answers', 60, async () => {
      const r = await fetch(`http://127.0.0.1:${port}/clips`, { method: 'PUT' }).catch(() => null);
      if (r?.ok) return 'bucket made';
    });
    exportToml = `[export]\nkind = "s3"\nendpoint = "http://127.0.0.1:${port}"\nbucket = "clips"\naccess_key = "k"\nsecret_key = "app-test-secret"\n`;
  }
  // The Status step's fake sysfs: a thermal zone the test heats (alerts sampled every second).
  fakeTemperature(dir, 45000);
  process.env.HINDSIGHT_SYSFS_ROOT = join(dir, 'sys');
  const alertsToml = /^\[alerts\]/m.test(EXTRA) ? '' : '[alerts]\ninterval_s = 1\ntemperature_c = 70\nrss_mib = 0\nfree_percent = 0\n';
  const http = await startDaemon((port) => `${configHead(dir, port, TLS ? login : '')}
[[camera]]
id = "${CAM}"
source = { kind = "test", width = 640, height = 360, fps = 15 }
encoder = "x264enc"
keyframe_interval_s = 1
audio = { kind = "test" }
pre_s = 2
post_s = 2
${!SKIP.has('phone') && !/^\[phone\]/m.test(EXTRA) ? '[phone]\npre_s = 3\npost_s = 3\n' : ''}
${exportToml}
${alertsToml}
${EXTRA}
`);
  base = TLS ? http.replace(/^http:/, 'https:') : http;

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'],
  });
  context = await browser.newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
    ignoreHTTPSErrors: true, permissions: ['camera', 'microphone'],
    userAgent: 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0 Mobile Safari/537.36',
  });
  console.log(`chromium ${browser.version()}, ${base}, steps skipped: ${[...SKIP].join(', ') || 'none'} [${since()}]`);
  page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('dialog', (d) => d.accept());

  try {
    if (!(await h.checkHealthy(api))) return;
    await check('2 s buffered', () => waitFor(`${CAM} buffered_s ≥ 2`, 60, async () => {
      // With auth on this needs the session: ask the open health route instead.
      const { body } = await api('/api/health');
      if (body?.cameras?.[CAM]?.buffered_s >= 2) return `buffered_s ${body.cameras[CAM].buffered_s}`;
    }));
    // GET / serves the app with revalidation headers.
    await check('GET / serves the app', async () => {
      if (TLS) return 'skipped with auth on (needs the session)';
      const r = await api('/');
      const js = await api('/app.js');
      if (r.status !== 200 || !/no-cache/.test(r.headers['cache-control'] ?? '') || !r.headers.etag) throw new Error(`GET / → ${r.status} ${JSON.stringify(r.headers)}`);
      if (!/javascript/.test(js.headers['content-type'] ?? '')) throw new Error(`app.js content-type ${js.headers['content-type']}`);
      const again = await context.request.fetch(base + '/app.js', { headers: { 'if-none-match': js.headers.etag }, failOnStatusCode: false });
      if (again.status() !== 304) throw new Error(`If-None-Match → ${again.status()}`);
      return `ETag ${r.headers.etag}, app.js 304 on revalidation`;
    });

    for (const [key, what, fn] of STEPS) {
      if (SKIP.has(key)) { skipped.push(key); console.log(`skip ${key}: ${what} (APP_SKIP)`); continue; }
      if (await check(`${key}: ${what}`, fn)) ran.push(key);
    }
    await check('no JavaScript errors on the pages', async () => {
      if (pageErrors.length) throw new Error(pageErrors.join(' | '));
      return 'none';
    });
  } finally {
    console.log(`steps run: ${ran.join(', ') || 'none'}; skipped: ${skipped.join(', ') || 'none'}`);
    await browser.close().catch(() => {});
    moto?.kill();
  }
}

await run(main);
