// Saved clips play in a real browser: the daemon (test pattern → x264enc) saves a clip on an HTTP
// trigger, and Debian's headless Chromium (driven by playwright-core) loads
// /api/clips/ID/video.mp4 in a <video> — metadata, 320×240, the duration the API reports (the
// file is a regular MP4 whose edit list trims the lead-in before T − pre), play() past 1 s, no
// media error — and the poster /api/clips/ID/thumbnail.jpg in an <img>.
//
//   HINDSIGHT_BIN=target/debug/hindsight node tests/browser/clip_playback.mjs
//
// Needs `chromium` (Debian package, /usr/bin/chromium or $CHROMIUM) and `npm ci` in this folder.
// Ends with `browser: N passed, M failed` and exits non-zero when anything failed.

import { join } from 'node:path';
import { createHarness, configHead } from './harness.mjs';

const FPS = 30;
const WIDTH = 320;
const HEIGHT = 240;
const DURATION_TOLERANCE_S = 0.1;
// Long GOPs so that the clip (trigger ~3 s after start, pre 2 s) starts at the very first
// keyframe, ~1 s before T − pre: the edit list then trims a lead-in of ≥ 1 s, and a browser that
// ignored it would report a duration ≥ 1 s too long. (With 1 s GOPs the lead-in is anywhere in
// 0…1 s, often a frame or two, which would not show anything.)
const GOP_S = 4;

const h = createHarness({ name: 'browser', tmpPrefix: 'hindsight-browser-' });
const { dir, since, check, waitFor, getJson, startDaemon, checkHealthy, checkBuffered, launchChromium, run } = h;

let context;
let base;

async function main() {
  base = await startDaemon((port) => `${configHead(dir, port)}
[[camera]]
id = "cam0"
source = { kind = "test", width = ${WIDTH}, height = ${HEIGHT}, fps = ${FPS} }
encoder = "x264enc"
keyframe_interval_s = ${GOP_S}
pre_s = 2
post_s = 2
`);

  if (!(await checkHealthy())) return;
  if (!(await checkBuffered('cam0', 3))) return;

  let clipId;
  if (!(await check('trigger', async () => {
    const r = await fetch(`${base}/api/cameras/cam0/trigger`, { method: 'POST', signal: AbortSignal.timeout(5000) });
    const body = await r.json().catch(() => null);
    if (r.status !== 202 || !body?.clip_id) throw new Error(`POST trigger → ${r.status} ${JSON.stringify(body)}`);
    clipId = body.clip_id;
    return `202, clip ${clipId}, pre_s_actual ${body.pre_s_actual}`;
  }))) return;

  let meta;
  if (!(await check('clip saved', () =>
    waitFor(`GET /api/clips/${clipId} → 200`, 60, async () => {
      const { status, body } = await getJson(`/api/clips/${clipId}`);
      if (status === 200) {
        meta = body;
        const lead = body.frames / FPS - body.duration_s;
        return `duration_s ${body.duration_s}, ${body.frames} frames (${(body.frames / FPS).toFixed(3)} s: the edit list trims ~${lead.toFixed(3)} s), ${body.size_bytes} bytes`;
      }
    })))) return;

  // ---- the browser ----
  context = await launchChromium();
  console.log(`chromium ${context.browser()?.version() ?? '(version unknown)'} [${since()}]`);
  const page = context.pages()[0] ?? (await context.newPage());
  const consoleLines = [];
  // Resource failures come with their URL from 'response'; Chromium's own /favicon.ico probe
  // (a 404 from the API) is not ours.
  page.on('console', (m) => m.text().startsWith('Failed to load resource') || consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('response', (r) => r.status() >= 400 && !r.url().endsWith('/favicon.ico') && consoleLines.push(`HTTP ${r.status()} ${r.url()}`));
  page.on('requestfailed', (r) => consoleLines.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));

  // A document of the daemon's own origin (as the phone app will be): navigate there, then
  // replace the document. The inline script listens before the media load algorithm fires events.
  await page.goto(`${base}/api/health`);
  const video = `/api/clips/${clipId}/video.mp4`;
  const thumb = `/api/clips/${clipId}/thumbnail.jpg`;
  await page.setContent(
    `<!doctype html><meta charset=utf-8><title>clip ${clipId}</title>
<video id=v muted playsinline preload=auto src="${base}${video}"></video>
<img id=t src="${base}${thumb}">
<script>
  const v = document.getElementById('v');
  window.__events = [];
  window.__errors = [];
  for (const e of ['loadstart', 'loadedmetadata', 'loadeddata', 'canplay', 'play', 'playing', 'waiting', 'stalled', 'ended', 'error'])
    v.addEventListener(e, () => window.__events.push(e + '@' + v.currentTime.toFixed(3)));
  v.addEventListener('error', () => window.__errors.push(v.error ? v.error.code + ' ' + v.error.message : 'error event'));
  window.__metadata = new Promise((res) => {
    if (v.readyState >= 1) res();
    else v.addEventListener('loadedmetadata', () => res(), { once: true });
  });
</script>`,
    { waitUntil: 'domcontentloaded' },
  );

  const mediaError = () => page.evaluate(() => ({ errors: window.__errors, events: window.__events,
    error: document.getElementById('v').error && { code: document.getElementById('v').error.code, message: document.getElementById('v').error.message } }));

  const md = await page.evaluate(() => Promise.race([
    window.__metadata.then(() => {
      const v = document.getElementById('v');
      return { ok: true, w: v.videoWidth, h: v.videoHeight, d: v.duration, rs: v.readyState };
    }),
    new Promise((res) => setTimeout(() => res({ ok: false, why: 'no loadedmetadata within 30 s' }), 30000)),
    new Promise((res) => window.__errors.length && res({ ok: false, why: `media error ${window.__errors[0]}` })),
    new Promise((res) => document.getElementById('v').addEventListener('error', () => {
      const e = document.getElementById('v').error;
      res({ ok: false, why: `media error ${e?.code} ${e?.message}` });
    }, { once: true })),
  ]));
  const mdOk = await check('loadedmetadata', async () => {
    if (!md.ok) throw new Error(`${md.why}; events ${JSON.stringify((await mediaError()).events)}`);
    return `readyState ${md.rs}`;
  });

  if (mdOk) {
    await check(`size ${WIDTH}×${HEIGHT}`, async () => {
      if (md.w !== WIDTH || md.h !== HEIGHT) throw new Error(`videoWidth×videoHeight is ${md.w}×${md.h}`);
      return `${md.w}×${md.h}`;
    });

    await check('duration = duration_s', async () => {
      const diff = md.d - meta.duration_s;
      const both = `Chromium duration ${md.d} s, API duration_s ${meta.duration_s} s (diff ${diff.toFixed(4)} s)`;
      console.log(`     ${both}`);
      if (!Number.isFinite(md.d)) throw new Error(`Chromium reports a non-finite duration: ${both}`);
      if (Math.abs(diff) > DURATION_TOLERANCE_S)
        throw new Error(`${both}: off by more than ${DURATION_TOLERANCE_S} s — the edit list (or the moov at the end) is not honoured the way ffprobe honours it`);
      if (Math.abs(diff) > 1 / FPS + 0.001)
        throw new Error(`${both}: within ${DURATION_TOLERANCE_S} s but more than one frame (${(1 / FPS).toFixed(4)} s) apart`);
      return both;
    });

    await check('play() past 1.0 s', async () => {
      const r = await page.evaluate(() => new Promise((res) => {
        const v = document.getElementById('v');
        const timer = setTimeout(() => res({ ok: false, why: `currentTime ${v.currentTime} after 30 s of playing (paused ${v.paused}, readyState ${v.readyState})` }), 30000);
        const onTime = () => {
          if (v.currentTime > 1.0 && !v.paused) {
            clearTimeout(timer);
            v.removeEventListener('timeupdate', onTime);
            res({ ok: true, t: v.currentTime });
          }
        };
        v.addEventListener('timeupdate', onTime);
        v.addEventListener('error', () => { clearTimeout(timer); res({ ok: false, why: `media error ${v.error?.code} ${v.error?.message}` }); }, { once: true });
        v.play().catch((e) => { clearTimeout(timer); res({ ok: false, why: `play() rejected: ${e.name}: ${e.message}` }); });
      }));
      if (!r.ok) throw new Error(r.why);
      return `currentTime ${r.t.toFixed(3)} s while playing`;
    });
  }

  await check('no media error', async () => {
    const e = await mediaError();
    if (e.error || e.errors.length) throw new Error(`v.error ${JSON.stringify(e.error)}, error events ${JSON.stringify(e.errors)}`);
    return `events ${e.events.join(' ')}`;
  });

  await check('thumbnail <img>', async () => {
    const r = await page.evaluate(() => new Promise((res) => {
      const img = document.getElementById('t');
      const done = () => res({ complete: img.complete, w: img.naturalWidth, h: img.naturalHeight });
      if (img.complete) return done();
      img.addEventListener('load', done, { once: true });
      img.addEventListener('error', done, { once: true });
      setTimeout(done, 15000);
    }));
    if (!(r.w > 0)) throw new Error(`naturalWidth ${r.w} (complete ${r.complete})`);
    return `${r.w}×${r.h}`;
  });

  if (h.failed && consoleLines.length) console.log(`page console and failed requests:\n  ${consoleLines.join('\n  ')}`);
}

await run(main);
