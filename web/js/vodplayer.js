// Recorded-video player for the Recordings page: plays one hour playlist of continuous recording
// (VOD HLS, fMP4 by byte range) in a <video> from a given wall-clock moment. iPhone/iPad Safari
// plays HLS itself; elsewhere hls.js (/vendor/hls.light.min.js, hls.js 1.7.4, Apache-2.0) is
// loaded by a <script> injected on first use. Wall time ↔ media time comes from the playlist's
// EXT-X-PROGRAM-DATE-TIME per segment: media time is the sum of the EXTINF before a segment (gaps
// in the recording are not on the media timeline).

import { h } from './dom.js';

const HLS_MIME = 'application/vnd.apple.mpegurl';
const HLS_JS = '/vendor/hls.light.min.js';

let hlsJs = null;

/** window.Hls, loading /vendor/hls.light.min.js once (a failed load is retried next time). */
export function loadHlsJs() {
  hlsJs ??= new Promise((resolve, reject) => {
    if (window.Hls) { resolve(window.Hls); return; }
    const s = h('script', { src: HLS_JS, async: true });
    s.addEventListener('load', () => (window.Hls ? resolve(window.Hls) : reject(new Error('hls.js did not load'))));
    s.addEventListener('error', () => { hlsJs = null; s.remove(); reject(new Error('could not load the video player (hls.js)')); });
    document.head.append(s);
  });
  return hlsJs;
}

/**
 * Native HLS where it is the platform's own player (Safari, or a browser without Media Source
 * Extensions); Chromium also answers canPlayType "maybe" now, but gets hls.js. `?player=native`
 * or `?player=hlsjs` in the page URL overrides.
 */
function useNative(video) {
  const can = video.canPlayType(HLS_MIME) !== '';
  const pref = new URLSearchParams(location.search).get('player');
  if (pref === 'native') return can;
  if (pref === 'hlsjs') return false;
  const ua = navigator.userAgent;
  const safari = /Safari/.test(ua) && !/Chrome|Chromium|CriOS|Android|Firefox|FxiOS|Edg/.test(ua);
  const mse = 'MediaSource' in window || 'ManagedMediaSource' in window;
  return can && (safari || !mse);
}

/** Segments of a media playlist: [{wall (ms), media (s), dur (s)}]. */
function parsePlaylist(text) {
  const out = [];
  let pdt = null;
  let media = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#EXT-X-PROGRAM-DATE-TIME:')) pdt = Date.parse(line.slice(25).trim());
    else if (line.startsWith('#EXTINF:')) {
      const dur = parseFloat(line.slice(8)) || 0;
      const prev = out[out.length - 1];
      const wall = Number.isFinite(pdt) ? pdt : prev ? prev.wall + prev.dur * 1000 : null;
      if (wall !== null) out.push({ wall, media, dur });
      media += dur;
      pdt = null;
    }
  }
  return out;
}

/** The last entry of `table` whose `key` is ≤ v (the first one when none is). */
function entryAt(table, key, v) {
  let lo = 0;
  let hi = table.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (table[mid][key] <= v) lo = mid; else hi = mid - 1;
  }
  return table[lo];
}

const wallToMedia = (table, ms) => {
  const e = entryAt(table, 'wall', ms);
  return e.media + Math.min(Math.max(0, (ms - e.wall) / 1000), Math.max(0, e.dur - 0.05));
};
const mediaToWall = (table, t) => {
  const e = entryAt(table, 'media', t + 1e-3);
  return e.wall + (t - e.media) * 1000;
};

/** Resolves on `type` from `target`, rejects after `ms`. */
function once(target, type, ms = 20000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${type} within ${ms / 1000} s`)), ms);
    target.addEventListener(type, () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

/** play(), muted when the browser refuses sound without a fresh tap. */
async function start(video) {
  try {
    await video.play();
  } catch (e) {
    if (e?.name !== 'NotAllowedError') throw e;
    video.muted = true;
    await video.play();
  }
}

/**
 * A player on `video`: playAt(url, ms) plays the hour playlist `url` from wall time `ms` (a seek
 * when that playlist is already loaded); wallTime() is the wall time on screen (ms, or null);
 * onTime(ms) follows playback, onEnded() fires at the end of the playlist, onError(text) on a
 * fatal error; loadedUntil() is where the loaded playlist ends (wall ms). The hls.js instance is
 * `video.hls` while it plays.
 */
export function vodPlayer(video, { onTime = () => {}, onEnded = () => {}, onError = () => {} } = {}) {
  const native = useNative(video);
  let cur = null; // {url, table(), hls?}
  let gen = 0;

  const wallTime = () => {
    if (!cur?.table || video.readyState === 0) return null;
    const pd = cur.hls?.playingDate;
    if (pd) return pd.getTime();
    const table = cur.table();
    return table.length ? mediaToWall(table, video.currentTime) : null;
  };
  video.addEventListener('timeupdate', () => { const ms = wallTime(); if (ms !== null) onTime(ms); });
  video.addEventListener('ended', () => onEnded());
  video.addEventListener('error', () => {
    if (!cur) return;
    const text = `media error ${video.error?.code ?? ''} ${video.error?.message ?? ''}`.trim();
    stop();
    onError(text);
  });

  function stop() {
    gen++;
    if (cur?.hls) cur.hls.destroy();
    cur = null;
    delete video.hls;
    video.pause();
    video.removeAttribute('src');
    video.load();
  }

  async function loadNative(url, g) {
    const r = await fetch(url, { credentials: 'same-origin' });
    if (!r.ok) throw new Error(`playlist: HTTP ${r.status}`);
    const table = parsePlaylist(await r.text());
    if (g !== gen) return null;
    if (!table.length) throw new Error('empty playlist');
    cur = { url, table: () => table };
    video.src = url;
    await once(video, 'loadedmetadata');
    return cur;
  }

  async function loadHls(url, g) {
    const Hls = await loadHlsJs();
    if (g !== gen) return null;
    if (!Hls.isSupported()) throw new Error('this browser cannot play HLS');
    const hls = new Hls({ autoStartLoad: false, backBufferLength: 30, maxBufferLength: 20 });
    // The segments' times in the playlist (hls.js moves `start` to the media's real timestamps).
    const frags = () => hls.levels[Math.max(0, hls.currentLevel)]?.details?.fragments || [];
    cur = { url, hls, table: () => frags().map((f) => ({ wall: f.programDateTime, media: f.start, dur: f.duration })) };
    video.hls = hls;
    // Before the playlist is in, a fatal error rejects playAt(); later ones go to onError.
    let ready = false;
    const loaded = new Promise((resolve, reject) => {
      hls.once(Hls.Events.LEVEL_LOADED, () => { ready = true; resolve(); });
      hls.on(Hls.Events.ERROR, (_, d) => {
        if (!d.fatal) return;
        const text = `${d.type}: ${d.details}${d.response?.code ? ` (HTTP ${d.response.code})` : ''}`;
        if (!ready) reject(new Error(text));
        else if (cur?.hls === hls) { stop(); onError(text); }
      });
    });
    hls.loadSource(url);
    hls.attachMedia(video);
    await loaded;
    return g === gen ? cur : null;
  }

  /** Plays the playlist `url` from wall time `ms`. Rejects with the reason it cannot. */
  async function playAt(url, ms) {
    // The same hour, and a moment its playlist already had when loaded: a seek. (A later moment
    // of the current hour reloads the playlist, which has grown since.)
    const known = cur?.url === url ? cur.table() : [];
    const last = known[known.length - 1];
    if (last && ms < last.wall + last.dur * 1000) {
      video.currentTime = wallToMedia(known, ms);
      await start(video);
      return;
    }
    stop();
    const g = gen;
    try {
      const c = native ? await loadNative(url, g) : await loadHls(url, g);
      if (!c) return;
      const table = c.table();
      if (!table.length) throw new Error('the playlist has no segments');
      const t = wallToMedia(table, ms);
      if (c.hls) c.hls.startLoad(t);
      if (video.readyState === 0) await once(video, 'loadedmetadata');
      if (g !== gen) return;
      if (Math.abs(video.currentTime - t) > 0.3) video.currentTime = t;
      await start(video);
    } catch (e) {
      if (g === gen) stop();
      throw e;
    }
  }

  /** Where the loaded playlist ends (wall ms), or null. */
  const loadedUntil = () => {
    const table = cur?.table() || [];
    const last = table[table.length - 1];
    return last ? last.wall + last.dur * 1000 : null;
  };

  return { playAt, stop, wallTime, loadedUntil, get url() { return cur?.url ?? null; }, native };
}
