// Chromium's fake camera becomes a hindsight camera: headless Chromium with
// `--use-fake-device-for-media-stream --use-fake-ui-for-media-stream` opens a page on the
// daemon's origin (http://127.0.0.1 is a secure context), loads web/phone.js and starts the
// phone camera `phone1` — getUserMedia, MediaRecorder (prints which type Chromium picks),
// WebSocket /api/cameras/phone1/push, with the fake microphone. Checks: /api/cameras lists phone1
// running with growing frames and the microphone's sound, /api/clients shows the browser, the page gets the server's status messages, a trigger
// on phone1 gives a clip that ffprobe reads as H.264 of pre + post seconds with an AAC track as long, and whose pictures are
// not black (the fake camera's moving pattern), a snapshot of the live preview works, and
// stopping the phone camera stops the camera without making health degraded.
//
//   HINDSIGHT_BIN=target/debug/hindsight node tests/browser/phone_camera.mjs
//
// Ends with `phone: N passed, M failed` and exits non-zero when anything failed.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHarness, configHead } from './harness.mjs';

const PRE_S = 2;
const POST_S = 2;
const h = createHarness({ name: 'phone', tmpPrefix: 'hindsight-phone-' });
const { dir, check, waitFor, getJson, startDaemon, checkHealthy, launchChromium, run } = h;
const PHONE_JS = readFileSync(new URL('../../web/phone.js', import.meta.url), 'utf8');

/** Mean R, G, B and luma spread of the clip's frame at `at` s, scaled to 32×18. */
function frameStats(file, at) {
  const raw = execFileSync('ffmpeg', ['-v', 'error', '-ss', String(at), '-i', file, '-frames:v', '1',
    '-vf', 'scale=32:18', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 1 << 20 });
  if (raw.length !== 32 * 18 * 3) throw new Error(`ffmpeg gave ${raw.length} bytes for one 32×18 frame`);
  const sum = [0, 0, 0];
  let min = 255;
  let max = 0;
  for (let i = 0; i < raw.length; i += 3) {
    for (let c = 0; c < 3; c++) sum[c] += raw[i + c];
    const y = (raw[i] * 299 + raw[i + 1] * 587 + raw[i + 2] * 114) / 1000;
    min = Math.min(min, y);
    max = Math.max(max, y);
  }
  return { rgb: sum.map((s) => Math.round(s / (32 * 18))), min: Math.round(min), max: Math.round(max) };
}

async function main() {
  const base = await startDaemon((port) => `${configHead(dir, port)}
[phone]
encoder = "x264enc"
bitrate_kbps = 1500
pre_s = ${PRE_S}
post_s = ${POST_S}

[[camera]]
id = "cam0"
source = { kind = "test", width = 320, height = 240, fps = 15 }
encoder = "x264enc"
pre_s = 2
post_s = 2
`);

  if (!(await checkHealthy())) return;

  const context = await launchChromium(['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream']);
  const page = context.pages()[0] ?? (await context.newPage());
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  await page.goto(`${base}/api/health`);
  await page.setContent('<!doctype html><meta charset=utf-8><title>phone</title><video id=v muted playsinline></video>');

  let mimeType;
  const started = await check('startPhoneCamera', async () => {
    const r = await page.evaluate(async (src) => {
      const url = URL.createObjectURL(new Blob([src], { type: 'text/javascript' }));
      const mod = await import(url);
      window.__status = [];
      const types = Object.fromEntries(mod.MIME_TYPES.map((t) => [t, MediaRecorder.isTypeSupported(t)]));
      window.__cam = await mod.startPhoneCamera({
        id: 'phone1',
        // 640×360 leaves CI's two cores some headroom (Chromium's software H.264, the daemon's
        // decoder and x264 share them); app.mjs's phone step runs the 1280×720 default.
        width: 640,
        height: 360,
        video: document.getElementById('v'),
        onStatus: (s) => window.__status.push(s),
      });
      return { mimeType: window.__cam.mimeType, types, secure: window.isSecureContext };
    }, PHONE_JS);
    mimeType = r.mimeType;
    console.log(`     MediaRecorder type chosen by Chromium: ${r.mimeType} (supported: ${JSON.stringify(r.types)})`);
    return `recording ${r.mimeType}, secure context ${r.secure}`;
  });
  if (!started) {
    console.log(`page console:\n  ${consoleLines.join('\n  ')}`);
    return;
  }

  let firstFrames;
  if (!(await check('phone1 running with frames', () =>
    waitFor('/api/cameras lists phone1 running with frames', 60, async () => {
      const { body } = await getJson('/api/cameras');
      const c = body?.find?.((x) => x.id === 'phone1');
      if (c?.state === 'running' && c.frames_captured > 0) {
        firstFrames = c.frames_captured;
        return `source ${c.source}, ${c.width}×${c.height}@${c.fps} ${c.format}, encoder ${c.encoder}`;
      }
    })))) return;

  await check('frames keep coming', () =>
    waitFor('frames_captured +30', 30, async () => {
      const { body } = await getJson('/api/cameras/phone1');
      if (body?.frames_captured >= firstFrames + 30) return `frames_captured ${firstFrames} → ${body.frames_captured}, dropped ${body.frames_dropped}`;
    }));

  await check('the phone\'s microphone is the camera\'s sound', () =>
    waitFor('audio.live', 20, async () => {
      const { body } = await getJson('/api/cameras/phone1');
      const a = body?.audio;
      if (a?.live && a.codec === 'aac' && a.frames > 0) return `${a.codec} ${a.rate} Hz ×${a.channels} by ${a.encoder} (recorded ${mimeType})`;
      if (a?.last_error) throw new Error(a.last_error);
    }));

  await check('/api/clients shows the browser', async () => {
    const { body } = await getJson('/api/clients');
    const c = body?.find?.((x) => x.camera === 'phone1');
    if (!c?.connected || !(c.chunks > 0) || !/Chrome/.test(c.user_agent ?? '')) throw new Error(JSON.stringify(body));
    return `${c.chunks} chunks, ${c.bytes} bytes, ${c.frames_received} frames, container ${c.container}`;
  });

  await check('status messages on the page', () =>
    waitFor('a {"camera":"phone1","state":"running"} message', 10, async () => {
      const s = await page.evaluate(() => window.__status);
      const errors = s.filter((m) => m.error);
      if (errors.length) throw new Error(`errors: ${JSON.stringify(errors)}`);
      const m = s.findLast((x) => x.camera === 'phone1' && x.state === 'running' && x.frames > 0);
      if (m) return JSON.stringify(m);
    }));

  await check('live snapshot', async () => {
    const r = await fetch(`${base}/api/cameras/phone1/snapshot.jpg`, { signal: AbortSignal.timeout(10000) });
    const b = Buffer.from(await r.arrayBuffer());
    if (r.status !== 200 || b[0] !== 0xff || b[1] !== 0xd8) throw new Error(`${r.status}, ${b.length} bytes`);
    return `${b.length} byte JPEG`;
  });

  await check(`${PRE_S + 0.5} s buffered`, () =>
    waitFor('buffered_s', 30, async () => {
      const { body } = await getJson('/api/cameras/phone1');
      if (body?.buffered_s >= PRE_S + 0.5) return `buffered_s ${body.buffered_s}`;
    }));

  let clipId;
  if (!(await check('trigger phone1', async () => {
    const r = await fetch(`${base}/api/cameras/phone1/trigger`, { method: 'POST', body: '{"label":"phone"}', signal: AbortSignal.timeout(5000) });
    const body = await r.json();
    if (r.status !== 202) throw new Error(`${r.status} ${JSON.stringify(body)}`);
    clipId = body.clip_id;
    return `clip ${clipId}`;
  }))) return;

  let meta;
  if (!(await check('clip saved', () =>
    waitFor('clip', 60, async () => {
      const { status, body } = await getJson(`/api/clips/${clipId}`);
      if (status === 200) {
        meta = body;
        return `duration_s ${body.duration_s}, ${body.frames} frames, ${body.size_bytes} bytes`;
      }
    })))) return;
  const file = join(dir, 'storage', meta.path);

  await check('clip is H.264 of pre + post, with the microphone as AAC', async () => {
    const out = execFileSync('ffprobe', ['-v', 'error', '-show_entries',
      'stream=codec_type,codec_name,width,height,duration,start_time:format=duration', '-of', 'json', file]).toString();
    const p = JSON.parse(out);
    const [v, a] = p.streams;
    const dur = Number(p.format.duration);
    if (v?.codec_name !== 'h264') throw new Error(`streams ${JSON.stringify(p.streams)}`);
    if (Math.abs(dur - (PRE_S + POST_S)) > 0.3) throw new Error(`duration ${dur}, want ${PRE_S + POST_S}`);
    if (a?.codec_type !== 'audio' || a.codec_name !== 'aac') throw new Error(`no AAC track: ${JSON.stringify(p.streams)}`);
    // The sound ends with the picture (± an AAC frame) and starts with it, or up to 0.25 s later:
    // Chromium's fake microphone skips ~0.1 s now and then on a loaded box, and a skip at the
    // clip's start stays a gap (an empty edit).
    const soundEnd = Number(a.start_time) + Number(a.duration);
    const videoEnd = Number(v.start_time) + Number(v.duration);
    const detail = `sound ${a.start_time}+${a.duration} s, video ${v.start_time}+${v.duration} s`;
    if (Math.abs(soundEnd - videoEnd) > 0.03 || Number(a.start_time) > 0.25) throw new Error(detail);
    return `${v.codec_name} ${v.width}×${v.height}, ${dur} s; ${detail}`;
  });

  await check('clip shows the fake camera (not black)', async () => {
    const a = frameStats(file, 0.5);
    const b = frameStats(file, PRE_S + POST_S - 0.5);
    for (const s of [a, b]) {
      const mean = (s.rgb[0] + s.rgb[1] + s.rgb[2]) / 3;
      if (mean < 30 || s.max - s.min < 20) throw new Error(`frame looks blank: ${JSON.stringify(s)}`);
    }
    return `mean rgb ${a.rgb} / ${b.rgb}, luma ${a.min}..${a.max}`;
  });

  await check('decoder restart mid-stream', async () => {
    const r = await fetch(`${base}/api/cameras/phone1/restart`, { method: 'POST', signal: AbortSignal.timeout(10000) });
    if (r.status !== 200) throw new Error(`restart → ${r.status}`);
    const before = (await getJson('/api/cameras/phone1')).body.frames_captured;
    return waitFor('frames after restart', 30, async () => {
      const { body } = await getJson('/api/cameras/phone1');
      if (body?.state === 'running' && body.frames_captured > before + 20)
        return `frames_captured ${before} → ${body.frames_captured} (init segment replayed)`;
    });
  });

  await check('stop → camera stopped, health ok', async () => {
    await page.evaluate(() => window.__cam.stop());
    return waitFor('phone1 stopped and health ok', 20, async () => {
      const { body } = await getJson('/api/health');
      if (body?.cameras?.phone1?.state === 'stopped' && body.status === 'ok') return 'stopped, health ok';
    });
  });

  console.log(`     MediaRecorder type: ${mimeType}`);
  if (h.failed) console.log(`page console:\n  ${consoleLines.join('\n  ')}`);
}

await run(main);
