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

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

const BIN = resolve(process.env.HINDSIGHT_BIN || 'target/debug/hindsight');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const FPS = 30;
const WIDTH = 320;
const HEIGHT = 240;
const DURATION_TOLERANCE_S = 0.1;
// Long GOPs so that the clip (trigger ~3 s after start, pre 2 s) starts at the very first
// keyframe, ~1 s before T − pre: the edit list then trims a lead-in of ≥ 1 s, and a browser that
// ignored it would report a duration ≥ 1 s too long. (With 1 s GOPs the lead-in is anywhere in
// 0…1 s, often a frame or two, which would not show anything.)
const GOP_S = 4;

const t0 = Date.now();
const since = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
let passed = 0;
let failed = 0;
function pass(name, detail = '') {
  passed++;
  console.log(`ok   ${name}${detail ? ` — ${detail}` : ''} [${since()}]`);
}
function fail(name, detail) {
  failed++;
  console.log(`FAIL ${name} — ${detail} [${since()}]`);
}
/** Runs one named check; `fn` returns a detail string, or throws with the reason. */
async function check(name, fn) {
  try {
    pass(name, await fn());
    return true;
  } catch (e) {
    fail(name, e?.message ?? String(e));
    return false;
  }
}

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.unref();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** Polls `probe` (returns a value when done, undefined to keep waiting) until `deadline_s`. */
async function waitFor(what, deadline_s, probe) {
  const end = Date.now() + deadline_s * 1000;
  let last;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e?.message ?? String(e);
    }
    if (daemonExit) throw new Error(`${what}: daemon exited (${daemonExit}) — log tail:\n${logTail()}`);
    if (Date.now() > end) throw new Error(`${what}: not within ${deadline_s} s${last ? ` (last error: ${last})` : ''}`);
    await sleep(200);
  }
}

// ---- the daemon ----
const dir = mkdtempSync(join(tmpdir(), 'hindsight-browser-'));
let daemon;
let daemonExit = null;
let daemonLog = '';
const logTail = () => daemonLog.split('\n').slice(-30).join('\n');
let context;
let base;

async function getJson(path) {
  const r = await fetch(base + path, { signal: AbortSignal.timeout(5000) });
  return { status: r.status, body: await r.json().catch(() => null) };
}

async function stopDaemon() {
  if (!daemon || daemonExit) return;
  const exited = new Promise((r) => daemon.once('exit', r));
  daemon.kill('SIGTERM');
  const t = setTimeout(() => daemon.kill('SIGKILL'), 10000);
  await exited;
  clearTimeout(t);
}

// Ctrl-C / CI cancel: do not leave the daemon behind.
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    if (daemon && !daemonExit) daemon.kill('SIGKILL');
    process.exit(130);
  });
}

async function main() {
  if (!existsSync(BIN)) throw new Error(`${BIN} not found: run cargo build first (or set HINDSIGHT_BIN)`);
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install chromium (scripts/deps test)`);
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const config = join(dir, 'hindsight.toml');
  writeFileSync(
    config,
    `[storage]
path = ${JSON.stringify(join(dir, 'storage'))}

[http]
listen = "127.0.0.1:${port}"

[mqtt]
enabled = false

[[camera]]
id = "cam0"
source = { kind = "test", width = ${WIDTH}, height = ${HEIGHT}, fps = ${FPS} }
encoder = "x264enc"
keyframe_interval_s = ${GOP_S}
pre_s = 2
post_s = 2
`,
  );
  daemon = spawn(BIN, ['run', '--config', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // ORC's code cache and anything else the daemon writes under $HOME stays in the temp dir.
    env: { ...process.env, XDG_RUNTIME_DIR: dir },
  });
  const keep = (b) => {
    daemonLog += b.toString();
    if (daemonLog.length > 200000) daemonLog = daemonLog.slice(-100000);
  };
  daemon.stdout.on('data', keep);
  daemon.stderr.on('data', keep);
  daemon.on('exit', (code, signal) => (daemonExit = signal ? `signal ${signal}` : `code ${code}`));
  daemon.on('error', (e) => (daemonExit = `spawn error: ${e.message}`));

  if (!(await check('daemon healthy', () =>
    waitFor('GET /api/health → status ok', 60, async () => {
      const { status, body } = await getJson('/api/health');
      if (status === 200 && body?.status === 'ok') return `${base}/api/health ok`;
    })))) return;

  if (!(await check('3 s buffered', () =>
    waitFor('cam0 buffered_s ≥ 3', 60, async () => {
      const { body } = await getJson('/api/cameras/cam0');
      if (body?.buffered_s >= 3) return `buffered_s ${body.buffered_s}, encoder ${body.encoder}`;
    })))) return;

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
  const profile = join(dir, 'chromium-profile');
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
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

  if (failed && consoleLines.length) console.log(`page console and failed requests:\n  ${consoleLines.join('\n  ')}`);
}

try {
  await main();
} catch (e) {
  fail('setup', e?.stack ?? String(e));
} finally {
  if (context) await context.close().catch((e) => console.log(`closing chromium: ${e.message}`));
  await stopDaemon();
  if (failed) {
    console.log(`daemon log tail:\n${logTail()}`);
    console.log(`kept ${dir} for inspection`);
  } else {
    rmSync(dir, { recursive: true, force: true });
  }
}
console.log(`took ${since()}`);
console.log(`browser: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
