// The web app's Recordings page (#/recordings) in real headless Chromium at a phone viewport
// (390×844), against the daemon with one test-pattern camera that records continuously (2 s
// segments, 1 s flushes). Chromium runs in a time zone whose hours are not UTC hours
// ($REC_TZ, default Asia/Kathmandu, +05:45), so the page's local day/hour ↔ the API's UTC hours
// is exercised. Checks, once ≥ 8 s are recorded (polled from the API):
//
//   bar      — the day's timeline shows a coverage bar over the recorded stretch (the API's
//              segments), and the page has not loaded hls.js yet (it is loaded on first play)
//   play     — a tap on that bar plays through hls.js (/vendor/hls.light.min.js injected then):
//              currentTime advances, no fatal hls.js or media error, and hls.js `playingDate` and
//              the shown wall-clock time agree with the tapped moment within 2 s
//   seek     — at the 5-minute zoom, a tap on another moment of the recording: currentTime lands
//              on that moment's media time (from the playlist's program date times), keeps
//              advancing, and the wall time shown is that moment's within 2 s
//   on       — at the end of the loaded (VOD) playlist, playback goes on with what was recorded
//              since (the playlist is loaded again)
//   export   — a range with nothing recorded shows the server's error text; a recorded range's
//              link answers 200 video/mp4 with a body (fetched from the page), and clicking it
//              downloads an .mp4
//   events   — a clip triggered over HTTP shows as an event mark (only when the API lists
//              `events`; said so otherwise)
//   delete   — Delete range (30 s from the recording's start) asks for a confirmation, then the
//              API and the timeline no longer have those segments
//   width    — nothing is wider than the 390 px screen (scrollWidth), at the day and 5-min zooms
//
//   HINDSIGHT_BIN=target/debug/hindsight node tests/browser/recordings.mjs
//
// Needs `chromium` (Debian package, /usr/bin/chromium or $CHROMIUM) and `npm ci` in this folder.
// REC_SCREENSHOT=FILE.png saves the page (5-minute zoom, playing) before the delete.
// Ends with `recordings: N passed, M failed` and exits non-zero when anything failed.

import { setTimeout as sleep } from 'node:timers/promises';
import { configHead, createHarness } from './harness.mjs';

const TZ = process.env.REC_TZ || 'Asia/Kathmandu';
const CAM = 'cam0';
const MIN_RECORDED_S = 8;
const TOLERANCE_MS = 2000;

const h = createHarness({ name: 'recordings', tmpPrefix: 'hindsight-rec-' });
const { dir, since, check, waitFor, getJson, startDaemon, checkHealthy, launchChromium, run } = h;

let base;
let page;
const pageErrors = [];
const hlsRequests = [];

/** The first segment's start and the last one's end (ms) of the API's listing. */
async function recorded() {
  const { status, body } = await getJson(`/api/cameras/${CAM}/recordings`);
  if (status !== 200) throw new Error(`GET recordings → ${status} ${JSON.stringify(body)}`);
  const segs = body.segments || [];
  if (!segs.length) return { covered: 0, body };
  return { covered: body.covered_s, start: Date.parse(segs[0].start), end: Date.parse(segs[segs.length - 1].end), body };
}

/** In the page: plays for `ms` and reports currentTime before/after, playingDate, the clock, errors. */
function sample(ms) {
  return page.evaluate(async (ms) => {
    const v = document.getElementById('rec-video');
    const read = () => ({
      ct: v.currentTime, paused: v.paused, ended: v.ended, error: v.error?.code ?? null,
      pd: v.hls?.playingDate?.getTime() ?? null, clock: Number(document.getElementById('rec-clock').dataset.ms) || null,
      target: Number(v.dataset.target), status: document.getElementById('rec-status').textContent,
      statusError: document.getElementById('rec-status').classList.contains('error'),
      fatal: [...(window.__fatal || [])],
    });
    const a = read();
    await new Promise((r) => setTimeout(r, ms));
    return { a, b: read() };
  }, ms);
}

/** Waits until the video plays (currentTime > `after`, not paused), or its status shows an error. */
function playing(after) {
  return waitFor('video playing', 20, async () => {
    const s = await page.evaluate(() => {
      const v = document.getElementById('rec-video');
      const st = document.getElementById('rec-status');
      return { ct: v.currentTime, paused: v.paused, ready: v.readyState, err: st.classList.contains('error') ? st.textContent : null };
    });
    if (s.err) throw new Error(`page says: ${s.err}`);
    if (!s.paused && s.ready >= 3 && s.ct > after) return s;
  });
}

/** Records fatal hls.js errors of the player's instance (video.hls) into window.__fatal. */
function watchHls() {
  return page.evaluate(() => {
    const hls = document.getElementById('rec-video').hls;
    window.__fatal ??= [];
    if (hls && !hls.__watched) {
      hls.__watched = true;
      hls.on(window.Hls.Events.ERROR, (_, d) => { if (d.fatal) window.__fatal.push(`${d.type}/${d.details}`); });
    }
    return Boolean(hls);
  });
}

/** Taps the timeline track at wall time `ms` (the track says its window in data-from-ms/data-to-ms). */
async function tapAt(ms) {
  const track = page.locator('.tl-track');
  const box = await track.boundingBox();
  const { fromMs, toMs } = await track.evaluate((t) => ({ fromMs: Number(t.dataset.fromMs), toMs: Number(t.dataset.toMs) }));
  if (ms < fromMs || ms > toMs) throw new Error(`${new Date(ms).toISOString()} is outside the timeline's window`);
  await page.mouse.click(box.x + ((ms - fromMs) / (toMs - fromMs)) * box.width, box.y + box.height / 2);
}

const fmt = (ms) => new Date(ms).toISOString().slice(11, 23);

async function main() {
  base = await startDaemon((port) => `${configHead(dir, port)}
[[camera]]
id = "${CAM}"
source = { kind = "test", width = 640, height = 360, fps = 15 }
encoder = "x264enc"
keyframe_interval_s = 1
pre_s = 2
post_s = 1
continuous = { enabled = true, segment_s = 2, flush_s = 1 }
`);
  if (!(await checkHealthy())) return;

  let rec;
  if (!(await check(`≥ ${MIN_RECORDED_S} s recorded`, () =>
    waitFor(`covered_s ≥ ${MIN_RECORDED_S}`, 45, async () => {
      const r = await recorded();
      if (r.covered >= MIN_RECORDED_S) {
        rec = r;
        return `covered_s ${r.covered}, ${r.body.segments.length} segments from ${fmt(r.start)} UTC, playlists ${r.body.playlists.join(' ')}`;
      }
    })))) return;
  // A clip (an event on the timeline, when the API lists events).
  const trig = await fetch(`${base}/api/cameras/${CAM}/trigger`, { method: 'POST' }).then((r) => r.json()).catch(() => null);

  // Chromium (not the daemon) in a time zone at +05:45.
  process.env.TZ = TZ;
  const context = await launchChromium(['--autoplay-policy=no-user-gesture-required']);
  page = await context.newPage();
  await page.setViewportSize({ width: 390, height: 844 });
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('request', (r) => { if (r.url().includes('/vendor/hls')) hlsRequests.push(r.url()); });
  await page.goto(`${base}/api/health`);
  const day = await page.evaluate((ms) => {
    const d = new Date(ms);
    return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
  }, rec.start);
  console.log(`chromium ${context.browser()?.version() ?? ''}, TZ ${TZ}, local day ${day} [${since()}]`);
  await page.goto(`${base}/#/recordings?camera=${CAM}&day=${day}`);
  await page.waitForSelector('#view[data-page="recordings"] .tl-run', { timeout: 15000 });

  if (!(await check('bar: the day shows the recorded stretch', async () => {
    const bars = await page.$$eval('.tl-run', (els) => els.map((e) => ({
      start: Number(e.dataset.start), end: Number(e.dataset.end), w: e.getBoundingClientRect().width,
    })));
    const bar = bars.find((b) => b.start <= rec.start + 1 && b.end >= rec.start + MIN_RECORDED_S * 1000);
    if (!bar) throw new Error(`no bar covers ${fmt(rec.start)}+${MIN_RECORDED_S} s: ${JSON.stringify(bars)}`);
    if (!(bar.w >= 1)) throw new Error(`the bar is ${bar.w} px wide`);
    const summary = await page.textContent('#rec-summary');
    if (!/recorded/.test(summary)) throw new Error(`summary: ${summary}`);
    const loaded = await page.evaluate(() => typeof window.Hls);
    if (hlsRequests.length || loaded !== 'undefined') throw new Error(`hls.js loaded before any play: ${hlsRequests.join(' ')} (${loaded})`);
    return `${bars.length} bar(s); ${fmt(bar.start)}–${fmt(bar.end)} UTC, ${bar.w.toFixed(1)} px; "${summary}"; hls.js not loaded yet`;
  }))) return;

  let target1;
  const played = await check('play: a tap on the bar plays via hls.js from the tapped moment', async () => {
    await page.locator('.tl-run').first().click();
    const s0 = await playing(0);
    if (!(await watchHls())) throw new Error(`video.hls missing: not played by hls.js (native: ${await page.evaluate(() => document.getElementById('rec-video').src)})`);
    const { a, b } = await sample(1500);
    target1 = b.target;
    if (!hlsRequests.some((u) => u.endsWith('/vendor/hls.light.min.js'))) throw new Error('hls.js was not loaded from /vendor/hls.light.min.js');
    if (b.fatal.length || b.error !== null || b.statusError) throw new Error(`errors: ${b.fatal.join(', ')} media ${b.error} status "${b.status}"`);
    if (!(b.ct - a.ct >= 0.8)) throw new Error(`currentTime ${a.ct.toFixed(2)} → ${b.ct.toFixed(2)} in 1.5 s`);
    if (!(target1 >= rec.start - 1 && target1 <= Date.now())) throw new Error(`tapped moment ${fmt(target1)} outside the recording`);
    // playingDate = the tapped moment + what has played since.
    const drift = b.pd - (target1 + (b.ct - s0.ct) * 1000);
    if (b.pd === null || Math.abs(drift) > TOLERANCE_MS) throw new Error(`playingDate ${b.pd && fmt(b.pd)} vs tapped ${fmt(target1)} (+${(b.ct - s0.ct).toFixed(2)} s played): ${drift} ms`);
    if (Math.abs(b.clock - b.pd) > 1000) throw new Error(`shown time ${fmt(b.clock)} vs playingDate ${fmt(b.pd)}`);
    return `tapped ${fmt(target1)} UTC; currentTime ${a.ct.toFixed(2)} → ${b.ct.toFixed(2)} s; playingDate ${fmt(b.pd)} (drift ${drift} ms), shown ${fmt(b.clock)}`;
  });

  if (played) {
    await check('seek: a tap at the 5-minute zoom plays from that moment', async () => {
      await page.click('button[data-zoom="min5"]');
      const now = await page.evaluate(() => Number(document.getElementById('rec-clock').dataset.ms));
      const r = await recorded();
      // Far enough from where playback is: back near the start, else ahead.
      const t2 = now - r.start >= 5000 ? r.start + 1500 : Math.min(now + 6000, r.end - 2000);
      if (Math.abs(t2 - now) < 3000) throw new Error(`no moment 3 s away from ${fmt(now)} in ${fmt(r.start)}–${fmt(r.end)}`);
      await page.evaluate(() => { const v = document.getElementById('rec-video'); window.__seeked = []; v.addEventListener('seeked', () => window.__seeked.push(v.currentTime)); });
      await tapAt(t2);
      const landed = await waitFor('seeked', 15, () => page.evaluate(() => window.__seeked.at(-1)));
      await playing(landed + 0.2);
      await watchHls();
      const { a, b } = await sample(1500);
      // Where the tapped moment is on the media timeline, from hls.js's fragments (program date times).
      const expectCt = await page.evaluate((ms) => {
        const v = document.getElementById('rec-video');
        const frags = v.hls.levels[Math.max(0, v.hls.currentLevel)].details.fragments;
        const f = frags.filter((x) => x.programDateTime <= ms).at(-1) || frags[0];
        return f.start + (ms - f.programDateTime) / 1000;
      }, b.target);
      if (Math.abs(b.target - t2) > 1500) throw new Error(`the page took the tap at ${fmt(t2)} as ${fmt(b.target)}`);
      if (Math.abs(landed - expectCt) > 0.5) throw new Error(`seeked to ${landed.toFixed(2)} s, ${fmt(b.target)} is at ${expectCt.toFixed(2)} s`);
      if (!(b.ct - a.ct >= 0.8)) throw new Error(`currentTime ${a.ct.toFixed(2)} → ${b.ct.toFixed(2)} in 1.5 s`);
      if (b.fatal.length || b.error !== null || b.statusError) throw new Error(`errors: ${b.fatal.join(', ')} media ${b.error} status "${b.status}"`);
      const drift = b.pd - (b.target + (b.ct - landed) * 1000);
      if (Math.abs(drift) > TOLERANCE_MS) throw new Error(`playingDate ${fmt(b.pd)} vs tapped ${fmt(b.target)} + ${(b.ct - landed).toFixed(2)} s: ${drift} ms`);
      if (Math.abs(b.clock - b.pd) > 1000) throw new Error(`shown time ${fmt(b.clock)} vs playingDate ${fmt(b.pd)}`);
      return `from ${fmt(now)} to ${fmt(t2)} (taken as ${fmt(b.target)}); seeked to ${landed.toFixed(2)} s (expected ${expectCt.toFixed(2)}); ` +
        `currentTime ${a.ct.toFixed(2)} → ${b.ct.toFixed(2)} s; playingDate ${fmt(b.pd)} (drift ${drift} ms), shown ${fmt(b.clock)}`;
    });
  }

  if (played) {
    await check('on: at the end of the loaded playlist, playback goes on with what was recorded since', async () => {
      const end = await page.evaluate(() => {
        const hls = document.getElementById('rec-video').hls;
        const f = hls.levels[Math.max(0, hls.currentLevel)].details.fragments.at(-1);
        return f.programDateTime + f.duration * 1000;
      });
      const seen = await waitFor(`the shown time past ${fmt(end + 1000)}`, 20, async () => {
        const s = await page.evaluate(() => ({
          clock: Number(document.getElementById('rec-clock').dataset.ms), paused: document.getElementById('rec-video').paused,
          err: document.querySelector('#rec-status.error')?.textContent,
        }));
        if (s.err) throw new Error(`page says: ${s.err}`);
        if (s.clock > end + 1000 && !s.paused) return s.clock;
      });
      return `the playlist loaded ended at ${fmt(end)}; now playing ${fmt(seen)}`;
    });
  }

  await check('width: fits 390 px (day and 5-min zooms)', async () => {
    const widths = [];
    for (const z of ['day', 'min5']) {
      await page.click(`button[data-zoom="${z}"]`);
      await sleep(200);
      widths.push(await page.evaluate(() => document.documentElement.scrollWidth));
    }
    if (widths.some((w) => w > 390)) throw new Error(`scrollWidth ${widths.join(', ')}`);
    return `scrollWidth ${widths.join(', ')}`;
  });

  await check('export: an empty range shows the server\'s error', async () => {
    const r = await recorded();
    const empty = r.start - 600e3;
    const localHms = (ms) => page.evaluate((ms) => new Date(ms).toTimeString().slice(0, 8), ms);
    // Ten minutes before the recording, or (too close to midnight) an hour after it: nothing there.
    const sameDay = await page.evaluate(([a, b]) => new Date(a).toDateString() === new Date(b).toDateString(), [empty, r.start]);
    await page.fill('input[name=from]', await localHms(sameDay ? empty : r.end + 3600e3));
    await page.selectOption('select[name=length]', '30');
    await page.click('#rec-export');
    const msg = await waitFor('export message', 15, async () => {
      const m = await page.$eval('#rec-export-msg', (e) => ({ text: e.textContent, error: e.classList.contains('error') }));
      if (m.error) return m.text;
    });
    if (!/^Export failed: /.test(msg) || /HTTP \d+/.test(msg)) throw new Error(`message: ${msg} (expected the server's error text)`);
    return msg;
  });

  await check('export: a recorded range downloads as video/mp4', async () => {
    const r = await recorded();
    await page.fill('input[name=from]', await page.evaluate((ms) => new Date(ms).toTimeString().slice(0, 8), r.start + 1000));
    await page.selectOption('select[name=length]', '30');
    const href = await page.getAttribute('#rec-export', 'href');
    const got = await page.evaluate(async (href) => {
      const res = await fetch(href);
      const body = await res.arrayBuffer();
      return { status: res.status, type: res.headers.get('content-type'), size: body.byteLength, text: res.ok ? '' : new TextDecoder().decode(body).slice(0, 200) };
    }, href);
    if (got.status !== 200 || !/^video\/mp4/.test(got.type || '') || !(got.size > 0))
      throw new Error(`GET ${href} → ${got.status} ${got.type} ${got.size} bytes ${got.text}`);
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: 15000 }), page.click('#rec-export')]);
    const name = download.suggestedFilename();
    if (!name.endsWith('.mp4')) throw new Error(`download named ${name}`);
    return `${href} → 200 ${got.type}, ${got.size} bytes; the link downloads ${name}`;
  });

  await check('events: a triggered clip shows as a mark', async () => {
    const r = await recorded();
    if (!Array.isArray(r.body.events)) return `skipped: the API lists no events yet (trigger answered ${JSON.stringify(trig)})`;
    const ev = await waitFor('the clip among the events', 20, async () => {
      const { body } = await getJson(`/api/cameras/${CAM}/recordings`);
      return body.events.find((e) => e.clip === trig?.clip_id);
    });
    await page.click('button[data-zoom="day"]');
    const mark = await waitFor('an event mark', 15, async () => {
      const n = await page.locator(`.tl-ev[data-clip="${ev.clip}"]`).count();
      if (n) return n;
    });
    return `clip ${ev.clip} at ${ev.time}: ${mark} mark`;
  });

  if (process.env.REC_SCREENSHOT) {
    await page.click('button[data-zoom="min5"]');
    await page.screenshot({ path: process.env.REC_SCREENSHOT, fullPage: true });
  }

  await check('delete: a range goes after a confirmation', async () => {
    const r = await recorded();
    let asked = '';
    page.once('dialog', (d) => { asked = d.message(); d.accept(); });
    await page.fill('input[name=from]', await page.evaluate((ms) => new Date(ms).toTimeString().slice(0, 8), r.start));
    await page.selectOption('select[name=length]', '30');
    const clickedAt = Date.now();
    await page.click('#rec-delete');
    const toast = await waitFor('the toast', 10, async () => {
      const t = await page.locator('#toasts .toast').allTextContents();
      return t.find((x) => /^Deleted|failed/.test(x));
    });
    if (!asked) throw new Error('no confirmation asked');
    if (!/^Deleted [1-9]/.test(toast)) throw new Error(`toast: ${toast}`);
    const after = await recorded();
    // The segment being written at the click (2 s segments, so it started at most ~3 s before)
    // is not indexed yet and survives the delete: it may be listed once it closes.
    if (after.start !== undefined && after.start < Math.min(r.start + 30000 - 2500, clickedAt - 4000))
      throw new Error(`the API still lists a segment at ${fmt(after.start)} (delete clicked at ${fmt(clickedAt)})`);
    const bars = await page.$$eval('.tl-run', (els) => els.map((e) => Number(e.dataset.start)));
    if (bars.some((b) => b <= r.start + 1000)) throw new Error(`a bar still starts at ${fmt(Math.min(...bars))}`);
    return `"${asked}" → "${toast}"; the recording now starts ${after.start ? fmt(after.start) : 'nowhere'}`;
  });

  await check('no JavaScript errors', async () => {
    if (pageErrors.length) throw new Error(pageErrors.join(' | '));
    return 'none';
  });
}

await run(main);
