// WebRTC live view (WHEP) in real headless Chromium: the daemon (test pattern 640×360 @ 30 fps →
// x264enc, keyframe every 1 s) answers POST /api/cameras/cam0/whep; a minimal WHEP client in a
// page of the daemon's origin (not the app) plays it, unless said otherwise.
//   (a) POST offer → 201 + SDP answer + Location + X-Hindsight-Clock-Offset-Ms; time to first frame
//       (first requestVideoFrameCallback − just before the POST; goal ≤ 300 ms, fails > 1500 ms);
//       10 s at 30 fps ± 10 % with no gap > 500 ms; getStats (codec, counters, candidate pair: the
//       daemon offers only 127.0.0.1 — webrtc_addresses — so media stays on loopback)
//   (b) glass-to-glass latency from the pixel stamp (rows 32–63 of the test pattern: capture ms on
//       CLOCK_MONOTONIC, low 32 bits; node's hrtime is the same clock) and from the RTP timestamp
//       + X-Hindsight-Clock-Offset-Ms; medians over 10 s (goal ≤ 300 ms; fails outside 0…2000 ms)
//   (c) ?start=newest (newest keyframe in RAM) against ?start=next (a fresh keyframe): TTFF, age
//       of the first frame, median latency over the first 2 s
//   (d) 10 peer connections in one page: daemon CPU (/proc/<pid>/stat) with 1 and with 10 viewers
//       (goal ratio ≤ 1.3, fails > 3); an 11th POST → 503 with a JSON error
//   (e) a viewer gone without DELETE (page closed): VmRSS over ≥ 20 s grows ≤ 10 MiB while 9 others
//       play; its session leaves `webrtc_viewers` (GET /api/cameras) within ~30 s
//   (f) DELETE → 204 and `webrtc_viewers` drops; body `hello` → 400, > 64 KiB → 400, unknown camera → 404,
//       text/plain → 415, only H.264 4d001f (Main) offered for the camera's Constrained Baseline
//       (x264 ultrafast) → 406 (JSON errors)
//   (g) the app: /#/live at 390×844 picks WebRTC (badge `.live-mode` "WebRTC · N ms" within 10 s),
//       no horizontal overflow; a hidden tab DELETEs the session, visible starts one; ?preview=hls
//       shows "LL-HLS"
//   (h) side by side, before (g) and with no WebRTC viewer left: LL-HLS (the daemon's hls.js,
//       lowLatencyMode; first, so its packager starts cold), WebRTC (one viewer) and MJPEG (an <img>,
//       polled each animation frame, at preview_fps) each play 9 s in a fresh page: TTFF, stamp
//       latency median and p90 over 8 s after the first second, frames; printed as a table. Fails
//       only without readable, increasing frame numbers or with a median outside 0…5000 ms
//   (i) sound: a second camera (320×240, the `test` beep; started only for this check) offered
//       audio + video: Opus arrives in the same MediaStream as the picture, ≥ 5 s decoded, and the
//       beep is heard (totalAudioEnergy > 0 while played unmuted)
// Ends with a `SUMMARY` line of the figures, then `whep: N passed, M failed` (exit code 1 on failure).
//
//   HINDSIGHT_BIN=target/debug/hindsight node tests/browser/whep.mjs
//
// Needs `chromium` (/usr/bin/chromium or $CHROMIUM) and `npm ci` here; Chromium runs with
// --allow-loopback-in-peer-connection and mDNS candidate hiding off (plain host addresses).

import { execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { configHead, createHarness } from './harness.mjs';
import { pageClient } from './whep_page.mjs';

const CAM = 'cam0';
const SOUND_CAM = 'cam1';
const FPS = 30;
const WIDTH = 640;
const HEIGHT = 360;
const PLAY_S = 10;
const VIEWERS = 10;
const TTFF_GOAL_MS = 300;
const TTFF_FAIL_MS = 1500;
const LATENCY_GOAL_MS = 300;
const CPU_GOAL = 1.3;
const CPU_FAIL = 3;
const RSS_FAIL_MIB = 10;

const h = createHarness({ name: 'whep', tmpPrefix: 'hindsight-whep-' });
const { dir, since, check, waitFor, getJson, startDaemon, checkHealthy, checkBuffered, launchChromium, run } = h;
const summary = {};
const TICK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

const median = (xs) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length ? s[s.length >> 1] : NaN;
};
const ms = (v) => (Number.isFinite(v) ? `${Math.round(v)} ms` : 'n/a');
/** Node's wall clock minus CLOCK_MONOTONIC (ms): libuv's hrtime is CLOCK_MONOTONIC on Linux. */
const monoOffset = () => Date.now() - Number(process.hrtime.bigint()) / 1e6;

function freeUdpPort() {
  return new Promise((res, rej) => {
    const s = createSocket('udp4');
    s.on('error', rej);
    s.bind(0, '0.0.0.0', () => { const { port } = s.address(); s.close(() => res(port)); });
  });
}

/** utime + stime of the daemon, in seconds. */
function cpuSeconds() {
  const s = readFileSync(`/proc/${h.daemonPid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / TICK;
}
const rssMiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${h.daemonPid}/status`, 'utf8'))[1]) / 1024;

async function webrtcViewers() {
  const { status, body } = await getJson('/api/cameras');
  const cam = Array.isArray(body) ? body.find((c) => c.id === CAM) : null;
  if (status !== 200 || typeof cam?.webrtc_viewers !== 'number') throw new Error(`GET /api/cameras → ${status}, ${CAM}.webrtc_viewers ${cam?.webrtc_viewers}`);
  return cam.webrtc_viewers;
}

// ---------------------------------------------------------------- in node

let context;
let base;
let page;
const pageErrors = [];

async function clientPage() {
  const p = await context.newPage();
  p.on('pageerror', (e) => pageErrors.push(e.message));
  await p.goto(`${base}/api/health`);
  await p.setContent('<!doctype html><meta charset=utf-8><title>whep</title><body style="margin:0;display:flex;flex-wrap:wrap">');
  await p.evaluate(pageClient, { offset: monoOffset() });
  return p;
}

/** Starts a viewer on `p`; throws unless the POST answered 201. */
async function startViewer(p, opts = {}) {
  const r = await p.evaluate((o) => W.start(o), opts);
  if (r.status !== 201) throw new Error(`POST whep${opts.query ?? ''} → ${r.status} ${r.contentType ?? ''} ${r.body}`);
  return r;
}

/** Waits until viewer `id` has shown a frame (`first_s`), then `after_s` more seconds; its record. */
async function played(p, id, after_s, first_s = 5) {
  await waitFor(`viewer ${id}: a frame within ${first_s} s`, first_s, async () => ((await p.evaluate((i) => W.count(i), id)) > 0 ? true : undefined))
    .catch(async (e) => { const f = await p.evaluate((i) => W.frames(i), id); throw new Error(`${e.message}; states ${f?.states.join(' ')}`); });
  if (after_s) {
    const f = await p.evaluate((i) => W.frames(i), id);
    const wait = f.frames[0].now + after_s * 1000 - (await p.evaluate(() => performance.now()));
    if (wait > 0) await sleep(wait);
  }
  return p.evaluate((i) => W.frames(i), id);
}

/** Per-frame latencies (ms): from the pixel stamp and from the RTP timestamp, at the callback. */
function latencies(frames, { offset, clockOffset }) {
  return frames.map((f) => {
    const wall = f.wall;
    let stamp = NaN;
    if (Number.isFinite(f.stamp)) {
      const mono = wall - offset;
      const k = Math.round((mono - f.stamp) / 2 ** 32);
      stamp = mono - (f.stamp + k * 2 ** 32);
    }
    let rtp = NaN;
    if (Number.isFinite(f.rtp) && Number.isFinite(clockOffset)) {
      const mono = wall - clockOffset;
      const wrap = 2 ** 32 / 90;
      const k = Math.round((mono - f.rtp / 90) / wrap);
      rtp = mono - (f.rtp / 90 + k * wrap);
    }
    return { t: f.now, stamp, rtp };
  });
}

/** fps, callbacks and the longest gap over the frames in [from, to] (page ms). */
function rate(frames, from, to) {
  const w = frames.filter((f) => f.now >= from && f.now <= to);
  if (w.length < 2) return { fps: 0, n: w.length, gap: Infinity };
  let gap = 0;
  for (let i = 1; i < w.length; i++) gap = Math.max(gap, w[i].now - w[i - 1].now);
  return { fps: ((w.length - 1) * 1000) / (w[w.length - 1].now - w[0].now), n: w.length, gap };
}

const pageInfo = (p) => p.evaluate(() => ({ offset: W.offset, timeOrigin: W.timeOrigin }));

// ---------------------------------------------------------------- the checks

async function rawWhep() {
  let v;
  let rec;
  const ok = await check('a: POST offer → 201, SDP answer, Location, clock offset', async () => {
    v = await startViewer(page, { stamps: true });
    if (!/application\/sdp/.test(v.contentType ?? '')) throw new Error(`answer Content-Type ${v.contentType}`);
    if (!/^\/api\/cameras\/cam0\/whep\/[^/]+$/.test(v.location ?? '')) throw new Error(`Location ${v.location}`);
    if (!Number.isFinite(v.clockOffset)) throw new Error('no X-Hindsight-Clock-Offset-Ms');
    if (!v.answerHasH264) throw new Error('the answer has no H264/90000');
    const skew = v.clockOffset - (await pageInfo(page)).offset;
    return `Location ${v.location}; offer ${ms(v.offerMs)}, POST ${ms(v.postMs)}; X-Hindsight-Clock-Offset-Ms ${v.clockOffset.toFixed(1)} ` +
      `(node's wall − monotonic differs by ${skew.toFixed(1)} ms)`;
  });
  if (!ok) return;
  await check('a: time to first frame', async () => {
    rec = await played(page, v.id, 0);
    const ttff = rec.frames[0].now - rec.t0;
    summary.ttff = ttff;
    console.log(`TTFF ${ms(ttff)} (goal ≤ ${TTFF_GOAL_MS} ms)`);
    if (ttff > TTFF_FAIL_MS) throw new Error(`${ms(ttff)} > ${TTFF_FAIL_MS} ms; states ${rec.states.join(' ')}`);
    return `${ms(ttff)} from just before the POST (goal ≤ ${TTFF_GOAL_MS} ms); connection ${rec.states.join(' ')}`;
  });
  const played_ = await check(`a: plays ${PLAY_S} s at ${FPS} fps ± 10 %, no gap > 500 ms`, async () => {
    rec = await played(page, v.id, PLAY_S + 1);
    const first = rec.frames[0].now;
    const r = rate(rec.frames, first + 1000, first + (PLAY_S + 1) * 1000);
    const all = rate(rec.frames, first, Infinity);
    const detail = `${r.fps.toFixed(1)} fps over ${PLAY_S} s (${r.n} callbacks), longest gap ${ms(all.gap)}, ` +
      `${rec.frames.length} frames in all, ${rec.frames[0].w}×${rec.frames[0].h}`;
    if (Math.abs(r.fps - FPS) > FPS * 0.1) throw new Error(detail);
    if (all.gap > 500) throw new Error(`a freeze: ${detail}`);
    if (rec.frames[0].w !== WIDTH || rec.frames[0].h !== HEIGHT) throw new Error(`size: ${detail}`);
    return detail;
  });
  await check('a: getStats', async () => {
    const s = await page.evaluate((i) => W.stats(i), v.id);
    const detail = `codec ${s.mimeType} ${s.fmtp}; framesDecoded ${s.framesDecoded}, framesDropped ${s.framesDropped}, ` +
      `nack ${s.nackCount}, pli ${s.pliCount}, fir ${s.firCount}, lost ${s.packetsLost}/${s.packetsReceived} packets; ` +
      `jitter buffer ${ms(s.jitterBufferMs)}; decoder ${s.decoder}; pair ${s.local} ⇄ ${s.remote}, rtt ${s.rtt}`;
    console.log(`STATS ${detail}`);
    if (!/video\/H264/i.test(s.mimeType ?? '')) throw new Error(`not H.264: ${detail}`);
    if (!(s.framesDecoded > 0)) throw new Error(`nothing decoded: ${detail}`);
    // The daemon offers only 127.0.0.1 here (webrtc_addresses): media stays on loopback.
    if (!/^127\.0\.0\.1:\d+ host\/udp$/.test(s.remote)) throw new Error(`the daemon's side of the pair is not 127.0.0.1/udp: ${detail}`);
    return detail;
  });
  if (played_ || rec?.frames.length) {
    await check('b: glass-to-glass latency (pixel stamp, RTP timestamp)', async () => {
      const info = await pageInfo(page);
      const first = rec.frames[0].now;
      const win = rec.frames.filter((f) => f.now >= first + 1000);
      const lat = latencies(win, { ...info, clockOffset: v.clockOffset });
      const stamped = lat.filter((l) => Number.isFinite(l.stamp));
      const m = median(stamped.map((l) => l.stamp));
      const r = median(lat.map((l) => l.rtp));
      const agree = median(stamped.filter((l) => Number.isFinite(l.rtp)).map((l) => Math.abs(l.stamp - l.rtp)));
      const seqs = win.map((f) => f.seq).filter(Number.isFinite);
      let skips = 0;
      let repeats = 0;
      for (let i = 1; i < seqs.length; i++) { if (seqs[i] === seqs[i - 1]) repeats++; else if (seqs[i] !== seqs[i - 1] + 1) skips++; }
      summary.latencyStamp = m;
      summary.latencyRtp = r;
      const detail = `median ${ms(m)} from the stamp (${stamped.length}/${win.length} frames readable; min ${ms(Math.min(...stamped.map((l) => l.stamp)))}, ` +
        `max ${ms(Math.max(...stamped.map((l) => l.stamp)))}), ${ms(r)} from RTP + clock offset; |stamp − RTP| median ${ms(agree)}; ` +
        `frame numbers: ${skips} jumps, ${repeats} repeats (goal ≤ ${LATENCY_GOAL_MS} ms)`;
      console.log(`LATENCY stamp ${ms(m)}, RTP ${ms(r)} (goal ≤ ${LATENCY_GOAL_MS} ms)`);
      if (stamped.length < win.length / 2) throw new Error(`stamp unreadable in most frames: ${detail}`);
      if (!(m >= 0 && m <= 2000)) throw new Error(`outside 0…2000 ms: ${detail}`);
      return detail;
    });
  }
  await check('f: DELETE on the Location → 204, webrtc_viewers drops', async () => {
    const before = await webrtcViewers();
    const status = await page.evaluate((i) => W.stop(i), v.id);
    if (status !== 204) throw new Error(`DELETE → ${status}`);
    const t = Date.now();
    await waitFor('webrtc_viewers drops', 5, async () => ((await webrtcViewers()) < before ? true : undefined));
    return `webrtc_viewers ${before} → ${await webrtcViewers()} ${Date.now() - t} ms after the 204`;
  });
}

async function startModes() {
  const rows = {};
  for (const mode of ['newest', 'next']) {
    await check(`c: ?start=${mode}`, async () => {
      await sleep(1500);
      const v = await startViewer(page, { query: `?start=${mode}`, stamps: true });
      const rec = await played(page, v.id, 2);
      await page.evaluate((i) => W.stop(i), v.id);
      const info = await pageInfo(page);
      const first = rec.frames[0].now;
      const lat = latencies(rec.frames.filter((f) => f.now <= first + 2000), { ...info, clockOffset: v.clockOffset });
      const pick = (l) => (Number.isFinite(l.stamp) ? l.stamp : l.rtp);
      const row = { ttff: first - rec.t0, first: pick(lat[0]), median2s: median(lat.map(pick)), frames: lat.length };
      rows[mode] = row;
      return `TTFF ${ms(row.ttff)}, first frame ${ms(row.first)} old, median ${ms(row.median2s)} over the first 2 s (${row.frames} frames)`;
    });
  }
  summary.modes = rows;
  const fmt = (r) => (r ? `TTFF ${ms(r.ttff)} / first ${ms(r.first)} / 2 s median ${ms(r.median2s)}` : 'failed');
  console.log(`START MODES newest: ${fmt(rows.newest)} | next: ${fmt(rows.next)}`);
}

async function errors() {
  await check('f: body "hello" → 400 JSON error', async () => {
    const r = await page.evaluate(() => W.post('/api/cameras/cam0/whep', 'hello'));
    return expectError(r, 400);
  });
  await check('f: an offer over 64 KiB → 400 JSON error, not read whole', async () => {
    const r = await page.evaluate(() => W.post('/api/cameras/cam0/whep', `v=0\r\n${'a=x-padding\r\n'.repeat(8000)}`));
    if (!/64 KiB/.test(r.body)) throw new Error(`the error does not name the limit: ${r.body}`);
    return expectError(r, 400);
  });
  await check('f: unknown camera → 404 JSON error', async () => {
    const r = await page.evaluate(async () => W.post('/api/cameras/no-such-camera/whep', await W.offer()));
    return expectError(r, 404);
  });
  await check('f: Content-Type text/plain → 415 JSON error', async () => {
    const r = await page.evaluate(async () => W.post('/api/cameras/cam0/whep', await W.offer(), 'text/plain'));
    return expectError(r, 415);
  });
  // x264 at speed-preset ultrafast writes a Constrained Baseline SPS (no CABAC, no B-frames)
  // whatever the caps say: the daemon answers 42e01e, so an offer of Main alone has no match.
  await check('f: offer with only H.264 4d001f (Main) vs the Constrained-Baseline camera → 406', async () => {
    const o = await page.evaluate(() => W.offerOnly('4d001f'));
    if (!o.kept.some((k) => /h264/i.test(k))) throw new Error(`Chromium offered no 4d001f (H.264 profiles: ${o.offered.join(', ')})`);
    const r = await page.evaluate((sdp) => W.post('/api/cameras/cam0/whep', sdp), o.sdp);
    return `${expectError(r, 406)}; offer kept ${o.kept.join(' | ')}`;
  });
}

function expectError(r, status) {
  let body = null;
  try { body = JSON.parse(r.body); } catch { /* not JSON */ }
  if (r.status !== status) throw new Error(`→ ${r.status} ${r.body}`);
  if (!/json/.test(r.contentType ?? '') || typeof body?.error !== 'string' || !body.error) throw new Error(`→ ${r.status} but not a JSON error: ${r.contentType} ${r.body}`);
  return `${r.status} ${JSON.stringify(body.error)}`;
}

async function viewers() {
  const ids = [];
  await check(`d: CPU with 1 and with ${VIEWERS} viewers; an 11th POST → 503`, async () => {
    ids.push((await startViewer(page)).id);
    await played(page, ids[0], 2);
    const measure = async () => {
      const c0 = cpuSeconds();
      const t0 = Date.now();
      await sleep(PLAY_S * 1000);
      return (cpuSeconds() - c0) / ((Date.now() - t0) / 1000);
    };
    const one = await measure();
    const more = await Promise.all(Array.from({ length: VIEWERS - 1 }, () => startViewer(page)));
    ids.push(...more.map((v) => v.id));
    for (const id of ids) await played(page, id, 0);
    await sleep(2000);
    const t = await page.evaluate(() => performance.now());
    const ten = await measure();
    const t1 = await page.evaluate(() => performance.now());
    const fps = [];
    for (const id of ids) fps.push(rate((await page.evaluate((i) => W.frames(i), id)).frames, t, t1).fps);
    const ratio = ten / one;
    summary.cpu = { one, ten, ratio };
    const extra = await page.evaluate(() => W.start({}));
    console.log(`CPU 1 viewer ${(one * 100).toFixed(1)} %, ${VIEWERS} viewers ${(ten * 100).toFixed(1)} % of a core: ratio ${ratio.toFixed(2)} (goal ≤ ${CPU_GOAL})`);
    const detail = `daemon CPU ${(one * 100).toFixed(1)} % (1 viewer) → ${(ten * 100).toFixed(1)} % (${VIEWERS}), ratio ${ratio.toFixed(2)} ` +
      `(goal ≤ ${CPU_GOAL}); viewers' fps ${Math.min(...fps).toFixed(1)}…${Math.max(...fps).toFixed(1)}; webrtc_viewers ${await webrtcViewers()}; ` +
      `11th POST → ${extra.status} ${extra.body}`;
    if (extra.id) await page.evaluate((i) => W.stop(i), extra.id);
    if (ratio > CPU_FAIL) throw new Error(`ratio > ${CPU_FAIL}: ${detail}`);
    if (Math.min(...fps) < FPS / 2) throw new Error(`a viewer below ${FPS / 2} fps: ${detail}`);
    expectError(extra, 503);
    return detail;
  });
  return ids;
}

async function goneViewer(ids) {
  await check('e: a viewer gone without DELETE: its session ends, the daemon RSS stays flat', async () => {
    if (ids.length < 2) throw new Error('(d) left no viewers playing');
    await page.evaluate((i) => W.stop(i), ids.pop());
    const p2 = await clientPage();
    const v = await startViewer(p2);
    await played(p2, v.id, 1);
    const n = await webrtcViewers();
    const samples = [rssMiB()];
    const t0 = Date.now();
    const pt0 = await page.evaluate(() => performance.now());
    await p2.close(); // hard: no DELETE
    let goneAfter = null;
    while (Date.now() - t0 < 40000 && (goneAfter === null || Date.now() - t0 < 20000)) {
      await sleep(1000);
      samples.push(rssMiB());
      if (goneAfter === null && (await webrtcViewers()) < n) goneAfter = (Date.now() - t0) / 1000;
    }
    const pt1 = await page.evaluate(() => performance.now());
    const fps = [];
    for (const id of ids) fps.push(rate((await page.evaluate((i) => W.frames(i), id)).frames, pt0, pt1).fps);
    const baseRss = median(samples.slice(0, 3));
    const growth = Math.max(...samples) - baseRss;
    summary.rssGrowth = growth;
    summary.goneAfter = goneAfter;
    const detail = `VmRSS ${baseRss.toFixed(1)} MiB → peak ${Math.max(...samples).toFixed(1)}, last ${samples[samples.length - 1].toFixed(1)} MiB ` +
      `over ${((Date.now() - t0) / 1000).toFixed(0)} s (growth ${growth.toFixed(1)} MiB, limit ${RSS_FAIL_MIB}); closed viewer's session ` +
      `${goneAfter === null ? 'still there after 40 s' : `gone after ${goneAfter.toFixed(1)} s`} (webrtc_viewers ${n} → ${await webrtcViewers()}); ` +
      `${ids.length} others at ${Math.min(...fps).toFixed(1)}…${Math.max(...fps).toFixed(1)} fps`;
    if (goneAfter === null) throw new Error(detail);
    if (growth > RSS_FAIL_MIB) throw new Error(detail);
    if (Math.min(...fps) < FPS / 2) throw new Error(`a viewer stalled: ${detail}`);
    return detail;
  });
  await page.evaluate(() => W.stopAll());
  await waitFor('webrtc_viewers 0 after stopping all', 10, async () => ((await webrtcViewers()) === 0 ? true : undefined)).catch((e) => console.log(e.message));
}

// ---------------------------------------------------------------- (h) side by side

const SIDE_S = 8; // the latency window, after the first second
const p90 = (xs) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(s.length * 0.9))] : NaN;
};

/** Plays one transport in a fresh page for 1 + SIDE_S s; its row (TTFF, latency, frames), or throws. */
async function sideRow(label, first_s, start) {
  const p = await clientPage();
  try {
    const { id, note } = await start(p);
    const rec = await played(p, id, SIDE_S + 1, first_s);
    const info = await p.evaluate((i) => W.info(i), id);
    await p.evaluate((i) => W.stop(i), id);
    const first = rec.frames[0].now;
    const win = rec.frames.filter((f) => f.now >= first + 1000 && f.now <= first + (SIDE_S + 1) * 1000);
    const lat = latencies(win, { ...(await pageInfo(p)), clockOffset: NaN }).map((l) => l.stamp).filter(Number.isFinite);
    const seqs = win.map((f) => f.seq).filter(Number.isFinite);
    let back = 0;
    for (let i = 1; i < seqs.length; i++) if (seqs[i] < seqs[i - 1]) back++;
    const row = { ttff: first - rec.t0, median: median(lat), p90: p90(lat), frames: win.length, note };
    const fps = win.length > 1 ? ((win.length - 1) * 1000) / (win[win.length - 1].now - win[0].now) : 0;
    const detail = `TTFF ${ms(row.ttff)}, latency median ${ms(row.median)}, p90 ${ms(row.p90)} (min ${ms(Math.min(...lat))}, ` +
      `max ${ms(Math.max(...lat))}); ${win.length} frames in ${SIDE_S} s (${fps.toFixed(1)} fps), ` +
      `${seqs.length} with a readable frame number (${seqs[0]} → ${seqs[seqs.length - 1]}, ${back} backwards), ` +
      `${lat.length} with a capture time; ${win[0]?.w}×${win[0]?.h}${note ? `; ${note}` : ''}` +
      `${info?.errors?.length ? `; hls.js errors ${info.errors.join(', ')}` : ''}${info?.polls ? `; ${info.unreadable}/${info.polls} polls unreadable` : ''}`;
    if (seqs.length < 10 || seqs.length < win.length / 2) throw new Error(`too few readable frame numbers: ${detail}`);
    if (back || !(seqs[seqs.length - 1] > seqs[0])) throw new Error(`frame numbers not increasing: ${detail}`);
    if (!(row.median >= 0 && row.median <= 5000)) throw new Error(`latency outside 0…5000 ms: ${detail}`);
    summary.side[label] = row;
    return detail;
  } finally {
    await p.close();
  }
}

async function sideBySide() {
  summary.side = {};
  if ((await webrtcViewers()) !== 0) console.log('h: webrtc_viewers is not 0 before the side-by-side figures');
  await check(`h: side by side: LL-HLS (hls.js, lowLatencyMode) plays ${SIDE_S + 1} s, stamps readable and increasing`, () =>
    sideRow('LL-HLS', 30, async (p) => {
      const { body } = await getJson(`/api/cameras/${CAM}`);
      const { id, version } = await p.evaluate(() => W.hls());
      return { id, note: `${body?.hls_active ? 'warm' : 'cold'} packager (hls_active ${body?.hls_active} before), hls.js ${version}` };
    }));
  await check(`h: side by side: WebRTC plays ${SIDE_S + 1} s, stamps readable and increasing`, () =>
    sideRow('WebRTC', 10, async (p) => ({ id: (await startViewer(p, { stamps: true })).id })));
  await check(`h: side by side: MJPEG <img> shows ${SIDE_S + 1} s, stamps readable and increasing`, () =>
    sideRow('MJPEG', 15, async (p) => ({ id: (await p.evaluate((w) => W.mjpeg({ srcWidth: w }), WIDTH)).id })));
  const pad = (x, n) => String(x).padEnd(n);
  const lines = ['WebRTC', 'LL-HLS', 'MJPEG'].map((k) => {
    const r = summary.side[k];
    return r ? `  ${pad(k, 10)} ${pad(ms(r.ttff), 12)} ${pad(ms(r.median), 15)} ${pad(ms(r.p90), 7)} ${r.frames}` : `  ${pad(k, 10)} failed`;
  });
  console.log(`SIDE BY SIDE (same run, ${WIDTH}×${HEIGHT}@${FPS}, loopback; latency over ${SIDE_S} s after the first second)\n` +
    `  transport  first frame  latency median  p90     frames\n${lines.join('\n')}\n` +
    `  (in the order LL-HLS (${summary.side['LL-HLS']?.note.split(' ')[0] ?? '?'} packager), WebRTC, MJPEG; the packager lingers 30 s, ` +
    'so it ran beside the other two; MJPEG at preview_fps, 10 by default)');
}

async function app() {
  const p = await context.newPage();
  await p.setViewportSize({ width: 390, height: 844 });
  p.on('pageerror', (e) => pageErrors.push(`app: ${e.message}`));
  const whep = [];
  p.on('request', (r) => { if (/\/whep/.test(r.url())) whep.push(`${r.method()} ${new URL(r.url()).pathname}`); });
  const badge = `.card.camera[data-camera="${CAM}"] .live-mode`;
  const readBadge = () => p.locator(badge).evaluate((b) => ({ ...b.dataset, text: b.textContent, why: b.title })).catch(() => null);
  await check('g: the app\'s Live page plays WebRTC with a latency figure (390×844, no overflow)', async () => {
    await p.goto(`${base}/#/live`);
    const t0 = Date.now();
    const b = await waitFor('badge WebRTC with a latency', 10, async () => {
      const x = await readBadge();
      if (x?.mode === 'webrtc' && x.latencyMs) return x;
      if (x && x.mode !== 'webrtc') throw new Error(`badge ${JSON.stringify(x)}`);
    });
    const w = await p.evaluate(() => document.documentElement.scrollWidth);
    if (w > 390) throw new Error(`page ${w} px wide at 390`);
    summary.app = b.text;
    return `"${b.text}" (data-latency-ms ${b.latencyMs}) after ${Date.now() - t0} ms; page ${w} px wide`;
  });
  await check('g: a hidden tab ends the WebRTC session (DELETE), visible again starts one', async () => {
    const setHidden = (hidden) => p.evaluate((hd) => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => hd });
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (hd ? 'hidden' : 'visible') });
      document.dispatchEvent(new Event('visibilitychange'));
    }, hidden);
    const before = await webrtcViewers();
    const n = whep.length;
    await setHidden(true);
    await waitFor('webrtc_viewers 0 while hidden', 10, async () => ((await webrtcViewers()) === 0 ? true : undefined));
    const hiddenReqs = whep.slice(n);
    if (!hiddenReqs.some((r) => r.startsWith('DELETE'))) throw new Error(`no DELETE while hidden: ${hiddenReqs.join(', ')}`);
    await setHidden(false);
    await waitFor('WebRTC again when visible', 10, async () => {
      const x = await readBadge();
      if (x?.mode === 'webrtc' && x.state === 'playing' && (await webrtcViewers()) === 1) return true;
    });
    return `webrtc_viewers ${before} → 0 hidden → 1 visible; requests ${whep.slice(n).join(', ')}`;
  });
  await check('g: ?preview=hls shows LL-HLS', async () => {
    await p.goto(`${base}/?preview=hls#/live`);
    const b = await waitFor('badge LL-HLS playing', 20, async () => {
      const x = await readBadge();
      if (x?.mode === 'hls' && x.state === 'playing' && x.latencyMs) return x;
    });
    if (!/^LL-HLS/.test(b.text)) throw new Error(`badge ${JSON.stringify(b)}`);
    return `"${b.text}"`;
  });
  await p.close();
}

/** (i) A camera with sound: Opus in the same stream as the picture, and heard. */
async function sound() {
  await check('i: sound — Opus in the picture\'s stream, the test beep heard', async () => {
    const r = await fetch(`${base}/api/cameras/${SOUND_CAM}/start`, { method: 'POST' });
    if (!r.ok) throw new Error(`start ${SOUND_CAM} → ${r.status}`);
    await waitFor(`${SOUND_CAM} sound live`, 20, async () => ((await getJson(`/api/cameras/${SOUND_CAM}`)).body?.audio?.live ? true : undefined));
    const v = await startViewer(page, { cam: SOUND_CAM, audio: true });
    await played(page, v.id, 6);
    const a = await page.evaluate((i) => W.sound(i), v.id);
    await page.evaluate((i) => W.stop(i), v.id);
    await fetch(`${base}/api/cameras/${SOUND_CAM}/stop`, { method: 'POST' });
    const streams = new Set(a.tracks.flatMap((t) => t.streams));
    const kinds = a.tracks.map((t) => t.kind).sort().join('+');
    summary.sound = a;
    const detail = `${a.mimeType}, ${a.packets} packets, ${(a.duration ?? 0).toFixed(1)} s decoded, energy ${(a.energy ?? 0).toFixed(4)}, ` +
      `jitter buffer ${ms(a.jitterBufferMs)}, concealed ${a.concealed} samples; tracks ${kinds} in stream(s) ${[...streams].join(', ')}`;
    if (!/opus/i.test(a.mimeType ?? '')) throw new Error(`no Opus: ${detail}`);
    if (kinds !== 'audio+video' || streams.size !== 1) throw new Error(`picture and sound not in one stream: ${detail}`);
    // ≥ 5 s of the ~6.5 s played, at 50 packets a second.
    if (!(a.packets >= 250 && a.duration >= 5)) throw new Error(`too little sound: ${detail}`);
    // A 100 ms 1 kHz beep each second at a third of full scale: silence would be 0.
    if (!(a.energy > 0.01)) throw new Error(`the beep was not heard: ${detail}`);
    return detail;
  });
}

async function main() {
  const udp = await freeUdpPort();
  base = await startDaemon((port) => `${configHead(dir, port, `webrtc_udp = ${udp}\nwebrtc_max_viewers = ${VIEWERS}\nwebrtc_addresses = ["127.0.0.1"]\n`)}
[[camera]]
id = "${CAM}"
source = { kind = "test", width = ${WIDTH}, height = ${HEIGHT}, fps = ${FPS} }
encoder = "x264enc"
keyframe_interval_s = 1
pre_s = 3
post_s = 2

[[camera]]
id = "${SOUND_CAM}"
source = { kind = "test", width = 320, height = 240, fps = 15 }
encoder = "x264enc"
keyframe_interval_s = 1
pre_s = 2
audio = { kind = "test" }
`);
  if (!(await checkHealthy())) return;
  // The camera with sound runs only for its check (i): the CPU figures are cam0's alone.
  await fetch(`${base}/api/cameras/${SOUND_CAM}/stop`, { method: 'POST' });
  if (!(await checkBuffered(CAM, 3))) return;
  context = await launchChromium(['--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns',
    '--autoplay-policy=no-user-gesture-required']);
  console.log(`chromium ${context.browser()?.version() ?? '(version unknown)'}, daemon pid ${h.daemonPid}, WebRTC UDP ${udp} [${since()}]`);
  page = await clientPage();

  await rawWhep();
  await startModes();
  await errors();
  const ids = await viewers();
  await goneViewer(ids);
  await sideBySide(); // before (g): nothing has touched HLS yet, so LL-HLS starts cold
  await sound();
  await app();
  await check('no JavaScript errors on the pages', async () => {
    if (pageErrors.length) throw new Error(pageErrors.join(' | '));
    return 'none';
  });

  const m = summary.modes || {};
  const side = (r) => (r ? `${ms(r.ttff)}/${ms(r.median)}/${ms(r.p90)}/${r.frames}` : 'n/a');
  const mode = (r) => (r ? `${ms(r.ttff)}/${ms(r.first)}/${ms(r.median2s)}` : 'n/a');
  const snd = summary.sound;
  console.log(`SUMMARY whep: sound ${snd ? `Opus, jitter buffer ${ms(snd.jitterBufferMs)}` : 'n/a'}; TTFF ${ms(summary.ttff)} (goal ≤ ${TTFF_GOAL_MS}); latency stamp ${ms(summary.latencyStamp)} / RTP ${ms(summary.latencyRtp)} ` +
    `(goal ≤ ${LATENCY_GOAL_MS}); start newest ${mode(m.newest)}, next ${mode(m.next)} (TTFF/first frame/2 s median); ` +
    `CPU(${VIEWERS})/CPU(1) ${summary.cpu ? summary.cpu.ratio.toFixed(2) : 'n/a'} (goal ≤ ${CPU_GOAL}); ` +
    `RSS growth ${Number.isFinite(summary.rssGrowth) ? `${summary.rssGrowth.toFixed(1)} MiB` : 'n/a'}, ` +
    `gone viewer reaped after ${summary.goneAfter != null ? `${summary.goneAfter.toFixed(1)} s` : 'n/a'}; app badge "${summary.app ?? 'n/a'}"; ` +
    `side by side TTFF/median/p90/frames: ${['WebRTC', 'LL-HLS', 'MJPEG'].map((k) => `${k} ${side(summary.side?.[k])}`).join(', ')}`);
}

await run(main);
