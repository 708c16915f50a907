// Live HLS plays in a real browser: the daemon (test pattern → x264enc, keyframe every 1 s)
// serves /api/cameras/cam0/hls/live.m3u8, and hls.js (from node_modules) in Debian's headless
// Chromium (driven by playwright-core, in real time) plays it twice: in low-latency mode (parts,
// blocking playlist reloads) and as plain HLS (whole segments). Each run must play ≥ 5 s
// (currentTime advances while playing) with no fatal hls.js or media error; the test prints the
// latency — now minus the program date time of the frame on screen (hls.js `playingDate`) —
// for both. The figures are printed, not asserted (the LL goal is ≤ 1.5 s): only a latency
// outside 0…10 s fails, since that means a wrong EXT-X-PROGRAM-DATE-TIME. The camera has sound
// (the `test` beep, AAC muxed into the same parts): hls.js must report an mp4a track and the
// media element must decode audio while playing (webkitAudioDecodedByteCount advances).
//
//   HINDSIGHT_BIN=target/debug/hindsight node tests/browser/hls_live.mjs
//
// Needs `chromium` (Debian package, /usr/bin/chromium or $CHROMIUM) and `npm ci` in this folder.
// $HLS_JS_CONFIG (JSON) adds hls.js settings to both runs, for latency experiments.
// Ends with `browser-hls: N passed, M failed` and exits non-zero when anything failed.

import { createRequire } from 'node:module';
import { join } from 'node:path';
import { createHarness, configHead } from './harness.mjs';

const require = createRequire(import.meta.url);
const HLS_JS = require.resolve('hls.js/dist/hls.min.js');
const HLS_JS_VERSION = require('hls.js/package.json').version;
const FPS = 30;
const WIDTH = 640;
const HEIGHT = 360;
const GOP_S = 1;
// How long each mode plays, and the part of it the latency figure is taken from.
const PLAY_S = 12;
const SETTLE_S = 5;
const MIN_PLAYED_S = 5;
// Extra hls.js config for experiments, e.g. HLS_JS_CONFIG='{"maxLiveSyncPlaybackRate":1.5}'.
const EXTRA = JSON.parse(process.env.HLS_JS_CONFIG || '{}');

const h = createHarness({ name: 'browser-hls', tmpPrefix: 'hindsight-hls-' });
const { dir, since, check, waitFor, getJson, startDaemon, checkHealthy, checkBuffered, launchChromium, run } = h;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
};

let context;
let base;

/** In the page: play `src` with hls.js for `playS` seconds and report what happened. */
function playInPage({ src, lowLatencyMode, playS, extra }) {
  return new Promise((res) => {
    const v = document.getElementById('v');
    const out = { fatal: [], nonFatal: [], mediaError: null, events: [], samples: [], startedAt: null, codecs: {} };
    const hls = new Hls({ lowLatencyMode, backBufferLength: 10, ...extra });
    window.__hls = hls;
    hls.on(Hls.Events.ERROR, (_, d) => (d.fatal ? out.fatal : out.nonFatal).push(`${d.type}/${d.details}`));
    for (const e of ['playing', 'waiting', 'stalled', 'error']) v.addEventListener(e, () => out.events.push(`${e}@${v.currentTime.toFixed(2)}`));
    v.addEventListener('error', () => (out.mediaError = v.error ? `${v.error.code} ${v.error.message}` : 'error event'));
    hls.on(Hls.Events.BUFFER_CODECS, (_, d) => {
      for (const [k, t] of Object.entries(d)) out.codecs[k] = t?.codec ?? t?.levelCodec ?? '?';
    });
    hls.on(Hls.Events.MANIFEST_PARSED, () => v.play().catch((e) => out.fatal.push(`play() rejected: ${e.name}: ${e.message}`)));
    hls.loadSource(src);
    hls.attachMedia(v);
    const finish = (why) => {
      clearInterval(timer);
      out.why = why;
      out.size = { w: v.videoWidth, h: v.videoHeight };
      out.targetLatency = hls.targetLatency;
      out.lowLatencyMode = hls.lowLatencyMode;
      hls.destroy();
      res(out);
    };
    const timer = setInterval(() => {
      if (out.fatal.length || out.mediaError) return finish('error');
      if (out.startedAt === null) {
        if (v.currentTime > 0 && !v.paused) {
          out.startedAt = { wall: performance.now(), ct: v.currentTime, audioBytes: v.webkitAudioDecodedByteCount };
        }
        else if (performance.now() > 30000) return finish('never started playing within 30 s');
        return;
      }
      const pd = hls.playingDate;
      out.samples.push({
        t: (performance.now() - out.startedAt.wall) / 1000,
        ct: v.currentTime,
        latency: pd ? (Date.now() - pd.getTime()) / 1000 : null,
        hlsLatency: hls.latency,
        buffered: v.buffered.length ? v.buffered.end(v.buffered.length - 1) - v.currentTime : 0,
      });
      out.audioBytes = v.webkitAudioDecodedByteCount - out.startedAt.audioBytes;
      if (performance.now() - out.startedAt.wall >= playS * 1000) finish('done');
    }, 200);
  });
}

async function runMode(label, lowLatencyMode) {
  const page = await context.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  const requests = { blocking: 0, parts: 0, segments: 0, playlists: 0 };
  page.on('request', (r) => {
    const u = r.url();
    if (u.includes('/hls/live.m3u8')) {
      requests.playlists++;
      if (u.includes('_HLS_msn=')) requests.blocking++;
    } else if (/\/hls\/part\d+\.\d+\.m4s/.test(u)) requests.parts++;
    else if (/\/hls\/seg\d+\.m4s/.test(u)) requests.segments++;
  });
  // A document of the daemon's own origin (as the phone app will be), then hls.js into it.
  await page.goto(`${base}/api/health`);
  await page.setContent(`<!doctype html><meta charset=utf-8><title>live ${label}</title>
<video id=v muted playsinline autoplay width=${WIDTH} height=${HEIGHT}></video>`);
  await page.addScriptTag({ path: HLS_JS });

  let r;
  const ok = await check(`${label}: hls.js ${HLS_JS_VERSION} plays ≥ ${MIN_PLAYED_S} s`, async () => {
    const supported = await page.evaluate(() => Hls.isSupported());
    if (!supported) throw new Error('Hls.isSupported() is false (no MSE for avc1?)');
    r = await page.evaluate(playInPage, { src: `${base}/api/cameras/cam0/hls/live.m3u8`, lowLatencyMode, playS: PLAY_S, extra: EXTRA });
    if (r.fatal.length) throw new Error(`fatal hls.js error(s): ${r.fatal.join(', ')}; events ${r.events.join(' ')}`);
    if (r.mediaError) throw new Error(`media error ${r.mediaError}`);
    if (!r.samples.length) throw new Error(r.why);
    const first = r.startedAt.ct;
    const last = r.samples[r.samples.length - 1];
    const played = last.ct - first;
    if (r.size.w !== WIDTH || r.size.h !== HEIGHT) throw new Error(`video is ${r.size.w}×${r.size.h}, not ${WIDTH}×${HEIGHT}`);
    if (played < MIN_PLAYED_S)
      throw new Error(`currentTime advanced ${played.toFixed(2)} s in ${last.t.toFixed(1)} s of wall time; events ${r.events.join(' ')}`);
    return `currentTime ${first.toFixed(2)} → ${last.ct.toFixed(2)} s (${played.toFixed(2)} s in ${last.t.toFixed(1)} s), ` +
      `${r.size.w}×${r.size.h}, events ${r.events.join(' ') || '-'}` +
      `${r.nonFatal.length ? `, non-fatal errors ${r.nonFatal.join(', ')}` : ''}`;
  });

  if (ok) {
    await check(`${label}: sound (AAC muxed) decoded while playing`, async () => {
      const detail = `tracks ${JSON.stringify(r.codecs)}, ${r.audioBytes} audio bytes decoded while playing`;
      if (!/^mp4a\.40/.test(r.codecs.audio ?? r.codecs.audiovideo ?? '')) throw new Error(`no AAC track: ${detail}`);
      if (!(r.audioBytes > 0)) throw new Error(`no sound decoded: ${detail}`);
      return detail;
    });
    await check(`${label}: requests`, async () => {
      const detail = `${requests.playlists} playlist loads (${requests.blocking} blocking), ${requests.parts} parts, ${requests.segments} segments`;
      if (lowLatencyMode && (requests.blocking === 0 || requests.parts === 0))
        throw new Error(`low-latency mode without blocking reloads or parts: ${detail}`);
      // (hls.js still uses _HLS_msn blocking reloads without low-latency mode, but no parts.)
      if (!lowLatencyMode && (requests.parts > 0 || requests.segments === 0))
        throw new Error(`plain mode should load whole segments only: ${detail}`);
      return detail;
    });
    await check(`${label}: latency (program date time → now)`, async () => {
      const settled = r.samples.filter((s) => s.t >= SETTLE_S && s.latency !== null);
      if (!settled.length) throw new Error('hls.js gave no playingDate');
      const lat = settled.map((s) => s.latency);
      const m = median(lat);
      const detail = `median ${m.toFixed(2)} s (min ${Math.min(...lat).toFixed(2)}, max ${Math.max(...lat).toFixed(2)}, ` +
        `${settled.length} samples after ${SETTLE_S} s); hls.js latency to live edge ${median(settled.map((s) => s.hlsLatency)).toFixed(2)} s, ` +
        `target ${Number(r.targetLatency).toFixed(2)} s, buffer ahead ${median(settled.map((s) => s.buffered)).toFixed(2)} s`;
      console.log(`LATENCY ${label}: ${m.toFixed(2)} s`);
      if (!(m > 0 && m < 10)) throw new Error(`${detail}: outside 0…10 s, EXT-X-PROGRAM-DATE-TIME must be wrong`);
      return detail;
    });
  }
  if (h.failed && consoleLines.length) console.log(`page console:\n  ${consoleLines.slice(-30).join('\n  ')}`);
  await page.close();
  return r;
}

async function main() {
  base = await startDaemon((port) => `${configHead(dir, port)}
[[camera]]
id = "cam0"
source = { kind = "test", width = ${WIDTH}, height = ${HEIGHT}, fps = ${FPS} }
encoder = "x264enc"
keyframe_interval_s = ${GOP_S}
audio = { kind = "test" }
pre_s = 3
post_s = 2
`);

  if (!(await checkHealthy())) return;
  if (!(await checkBuffered('cam0', 3))) return;

  context = await launchChromium(['--autoplay-policy=no-user-gesture-required']);
  console.log(`chromium ${context.browser()?.version() ?? '(version unknown)'}, hls.js ${HLS_JS_VERSION}` +
    `${Object.keys(EXTRA).length ? ` with ${JSON.stringify(EXTRA)}` : ''} [${since()}]`);

  await runMode('LL-HLS', true);
  await runMode('plain HLS', false);

  await check('hls_clients on /api/cameras/cam0', async () => {
    const { body } = await getJson('/api/cameras/cam0');
    if (!(body?.hls_clients >= 1) || body?.hls_active !== true)
      throw new Error(`hls_clients ${body?.hls_clients}, hls_active ${body?.hls_active}`);
    return `hls_clients ${body.hls_clients}, hls_active ${body.hls_active}`;
  });
}

await run(main);
