// Live preview of one camera (the Live page's cards), trying transports in order:
//   WebRTC — WHEP: POST /api/cameras/{id}/whep with an H.264-preferring offer (plus sound when
//            the camera has some: Opus, in the same stream as the picture; the
//            daemon is ICE-lite: the offer goes out without waiting for ICE gathering); DELETE on
//            the answer's Location ends it. Given up for the next transport when the POST is not
//            201, no frame shows within 5 s, or the connection fails / stays disconnected > 3 s.
//            Latency per frame: the RTP timestamp is the capture time on the daemon's monotonic
//            clock (90 kHz, mod 2^32), X-Hindsight-Clock-Offset-Ms turns it into wall time.
//   LL-HLS — /api/cameras/{id}/hls/live.m3u8: the platform's player on iPhone/iPad Safari, else
//            hls.js (/vendor/hls.light.min.js via loadHlsJs()) in low-latency mode. Latency: now
//            minus the program date time of the frame shown.
//   MJPEG  — an <img> on /api/cameras/{id}/mjpeg (no latency figure).
// `?preview=webrtc|hls|mjpeg` in the page URL, else the localStorage key LS.preview, starts the
// chain at that transport (mjpeg: MJPEG only). A transport that fails after it showed frames
// restarts the chain once, 2 s later; a second failure moves on. A badge `.live-mode` in the
// preview box says which transport plays (data-mode, data-state) and the running median latency
// over the last ~2 s (data-latency-ms). Previews start muted (autoplay rules); the card's Sound
// button unmutes WebRTC and HLS alike.

import { LS, h, enc } from './dom.js';
import { errorText } from './api.js';
import { loadHlsJs } from './vodplayer.js';

export const MODES = ['webrtc', 'hls', 'mjpeg'];
const LABEL = { webrtc: 'WebRTC', hls: 'LL-HLS', mjpeg: 'MJPEG' };
/** How long a transport may take to show its first frame before the next one is tried. */
const FIRST_FRAME_MS = { webrtc: 5000, hls: 15000 };
const DISCONNECTED_MS = 3000;
const RESTART_MS = 2000;
const WINDOW_MS = 2000;
const RTP_WRAP_MS = 2 ** 32 / 90;

/** The user's transport (`?preview=` in the page URL, else localStorage), or null. */
export function preferredMode() {
  let pref = new URLSearchParams(location.search).get('preview');
  if (!pref) {
    try { pref = localStorage.getItem(LS.preview); } catch { pref = null; }
  }
  return MODES.includes(pref) ? pref : null;
}

/** HLS by the platform's own player: iPhone/iPad Safari (or a browser without MSE). */
function nativeHls(video) {
  if (video.canPlayType('application/vnd.apple.mpegurl') === '') return false;
  const ua = navigator.userAgent;
  const safari = /Safari/.test(ua) && !/Chrome|Chromium|CriOS|Android|Firefox|FxiOS|Edg/.test(ua);
  return safari || !('MediaSource' in window || 'ManagedMediaSource' in window);
}

const fmtLatency = (ms) => (Math.abs(ms) < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`);

const previewVideo = (cam) =>
  h('video', { class: 'preview', muted: '', autoplay: '', playsinline: '', 'aria-label': `${cam.id} live` });

/** play(); when sound is refused without a fresh tap, muted. */
function play(video) {
  video.play().catch((e) => {
    if (e?.name === 'NotAllowedError' && !video.muted) {
      video.muted = true;
      video.play().catch(() => {});
    }
  });
}

/** The H.264 (and retransmission) codecs this browser receives, or null when it cannot tell. */
function h264Codecs() {
  const codecs = window.RTCRtpReceiver?.getCapabilities?.('video')?.codecs;
  return codecs ? codecs.filter((c) => /^video\/(h264|rtx)$/i.test(c.mimeType)) : null;
}

/**
 * WebRTC through WHEP. `ctx` is the attempt's link to startLive (playing, latency, fail,
 * url). Returns {media, stop}; stop() closes the peer connection and DELETEs the session.
 */
function webrtc(ctx, cam) {
  const video = previewVideo(cam);
  let pc = null;
  let resource = null;
  let closed = false;
  let disconnected = null;
  const aborter = new AbortController();
  const release = () => {
    if (resource) fetch(resource, { method: 'DELETE', keepalive: true, credentials: 'same-origin' }).catch(() => {});
    resource = null;
  };
  const stop = () => {
    closed = true;
    clearTimeout(disconnected);
    aborter.abort();
    pc?.close();
    release();
    video.srcObject = null;
  };

  let offset = NaN; // daemon wall − monotonic clock, ms
  const onFrame = (now, meta) => {
    if (closed) return;
    ctx.playing();
    if (meta && meta.rtpTimestamp !== undefined && Number.isFinite(offset)) {
      // The frame's display time on this page's wall clock, and its capture time unwrapped to
      // the 2^32 window nearest the daemon's monotonic clock now.
      const shown = Date.now() + ((meta.expectedDisplayTime ?? now) - performance.now());
      const rtpMs = meta.rtpTimestamp / 90;
      const k = Math.round((shown - offset - rtpMs) / RTP_WRAP_MS);
      ctx.latency(shown - (rtpMs + k * RTP_WRAP_MS + offset));
    }
    video.requestVideoFrameCallback(onFrame);
  };
  if ('requestVideoFrameCallback' in video) video.requestVideoFrameCallback(onFrame);
  // A first frame also when the callback does not come (no rVFC, or a video out of view).
  video.addEventListener('loadeddata', () => { if (!closed) ctx.playing(); }, { once: true });

  const onState = () => {
    if (closed || !pc) return;
    const s = pc.connectionState || pc.iceConnectionState;
    if (s === 'failed' || s === 'closed') ctx.fail(`connection ${s}`);
    else if (s === 'disconnected') disconnected ??= setTimeout(() => ctx.fail('disconnected for 3 s'), DISCONNECTED_MS);
    else { clearTimeout(disconnected); disconnected = null; }
  };

  (async () => {
    if (typeof RTCPeerConnection !== 'function') throw new Error('no WebRTC in this browser');
    const codecs = h264Codecs();
    if (codecs && !codecs.some((c) => /h264/i.test(c.mimeType))) throw new Error('this browser has no H.264 for WebRTC');
    pc = new RTCPeerConnection();
    const tr = pc.addTransceiver('video', { direction: 'recvonly' });
    if (codecs && tr.setCodecPreferences) {
      try { tr.setCodecPreferences(codecs); } catch { /* the browser's own order then */ }
    }
    if (cam.audio) pc.addTransceiver('audio', { direction: 'recvonly' });
    // Picture and sound arrive as one stream (the daemon names one for both, so they play in sync).
    pc.addEventListener('track', (e) => {
      const stream = e.streams?.[0];
      if (stream) { if (video.srcObject !== stream) video.srcObject = stream; }
      else if (video.srcObject) video.srcObject.addTrack(e.track);
      else video.srcObject = new MediaStream([e.track]);
      play(video);
    });
    pc.addEventListener('connectionstatechange', onState);
    pc.addEventListener('iceconnectionstatechange', onState);
    await pc.setLocalDescription(await pc.createOffer());
    // ICE-lite daemon: the offer goes at once, without waiting for ICE gathering.
    const r = await fetch(ctx.url('whep'), {
      method: 'POST', body: pc.localDescription.sdp, credentials: 'same-origin', signal: aborter.signal,
      headers: { 'content-type': 'application/sdp' },
    });
    if (r.status !== 201) throw new Error(`${r.status === 404 || r.status === 405 ? 'not on this daemon' : await errorText(r)} (HTTP ${r.status})`);
    const loc = r.headers.get('location');
    resource = loc ? new URL(loc, location.href).href : null;
    offset = parseFloat(r.headers.get('x-hindsight-clock-offset-ms') ?? '');
    const answer = await r.text();
    // Stopped while the POST was out: end the session it just made.
    if (closed) { release(); return; }
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  })().catch((e) => {
    if (!closed) ctx.fail(e?.message ?? String(e));
  });
  return { media: video, stop };
}

/** LL-HLS: the platform's player, else hls.js in low-latency mode. */
function hls(ctx, cam, { sound = false } = {}) {
  const video = previewVideo(cam);
  if (sound) video.muted = false;
  const src = ctx.url('hls/live.m3u8');
  let player = null;
  let closed = false;
  const stop = () => {
    closed = true;
    clearInterval(sampler);
    player?.destroy();
    video.pause();
    video.removeAttribute('src');
    video.load();
  };
  video.addEventListener('playing', () => ctx.playing());
  video.addEventListener('error', () => {
    if (!closed && video.error) ctx.fail(`media error ${video.error.code} ${video.error.message || ''}`.trim());
  });
  // Latency: now − the program date time of the frame shown.
  const sampler = setInterval(() => {
    if (closed || video.paused || video.readyState < 2) return;
    const pd = player?.playingDate;
    if (pd) { ctx.latency(Date.now() - pd.getTime()); return; }
    const start = player ? null : video.getStartDate?.();
    const t0 = start ? start.getTime() : NaN;
    if (Number.isFinite(t0) && t0 > 0) ctx.latency(Date.now() - (t0 + video.currentTime * 1000));
    else if (player && Number.isFinite(player.latency)) ctx.latency(player.latency * 1000);
  }, 500);

  (async () => {
    if (nativeHls(video)) {
      video.src = src;
      play(video);
      return;
    }
    const Hls = await loadHlsJs();
    if (closed) return;
    if (!Hls.isSupported()) throw new Error('this browser cannot play HLS');
    player = new Hls({ lowLatencyMode: true, backBufferLength: 4 });
    player.on(Hls.Events.ERROR, (_, d) => {
      if (d.fatal && !closed) ctx.fail(`${d.type}: ${d.details}${d.response?.code ? ` (HTTP ${d.response.code})` : ''}`);
    });
    player.on(Hls.Events.MANIFEST_PARSED, () => play(video));
    player.loadSource(src);
    player.attachMedia(video);
  })().catch((e) => {
    if (!closed) ctx.fail(e?.message ?? String(e));
  });
  return { media: video, stop };
}

/** MJPEG in an <img>. */
function mjpeg(ctx, cam) {
  const img = h('img', { class: 'preview', alt: `${cam.id} live`, decoding: 'async' });
  img.src = ctx.url('mjpeg');
  // Removing the attribute alone may leave Chromium reading the multipart stream: point the
  // image at an empty resource, which cancels the request (the daemon stops encoding JPEG
  // when nobody watches).
  return { media: img, stop: () => { img.src = 'data:,'; } };
}

const TRANSPORTS = { webrtc, hls, mjpeg };

/** Running median of the samples of the last WINDOW_MS. */
function medianWindow() {
  const samples = [];
  return {
    add(v) {
      const t = performance.now();
      samples.push({ t, v });
      while (samples[0].t < t - WINDOW_MS) samples.shift();
    },
    median() {
      const s = samples.map((x) => x.v).sort((a, b) => a - b);
      return s.length ? s[s.length >> 1] : null;
    },
    clear() { samples.length = 0; },
  };
}

/**
 * Plays camera `cam` live in `box` (the media element goes first in it, the badge last).
 * `start` overrides the preferred transport; `sound` unmutes HLS (after a tap). `onMode(mode,
 * media, state)` is called when a transport is tried (state 'connecting') and when it shows frames
 * ('playing'). Returns {stop(), stopped, mode, media}; stop() ends the session (WebRTC: DELETE); it
 * also runs on `pagehide`.
 */
export function startLive(box, cam, { onMode = () => {}, start = null, sound = false } = {}) {
  const first = start ?? preferredMode() ?? MODES[0];
  const chain = MODES.slice(Math.max(0, MODES.indexOf(first)));
  const url = (p) => `/api/cameras/${enc(cam.id)}/${p}`;
  const badge = h('span', { class: 'live-mode', 'aria-live': 'off' });
  box.append(badge);
  const lat = medianWindow();
  let gen = 0;
  let cur = null;
  let mode = null;
  let restarted = false;
  let stopped = false;
  let retry = null;
  let shownAt = 0;
  const why = [];

  const showBadge = (state) => {
    badge.dataset.mode = mode;
    badge.dataset.state = state;
    const m = state === 'playing' && mode !== 'mjpeg' ? lat.median() : null;
    if (m === null) delete badge.dataset.latencyMs;
    else badge.dataset.latencyMs = String(Math.round(m));
    badge.textContent = `${LABEL[mode]}${state === 'connecting' ? ' …' : ''}${m === null ? '' : ` · ${fmtLatency(m)}`}`;
    badge.title = why.length ? `fell back: ${why.join('; ')}` : '';
  };

  const end = () => {
    clearTimeout(retry);
    if (!cur) return;
    cur.stop();
    cur.media.remove();
    cur = null;
  };

  function run(i) {
    end();
    const g = ++gen;
    mode = chain[i];
    lat.clear();
    let started = false;
    let timer = null;
    const live = () => g === gen && !stopped;
    const ctx = {
      url,
      playing() {
        if (!live() || started) return;
        started = true;
        clearTimeout(timer);
        showBadge('playing');
        onMode(mode, cur?.media, 'playing');
      },
      latency(ms) {
        if (!live() || !Number.isFinite(ms)) return;
        lat.add(ms);
        // The badge at most 4 times a second.
        const t = performance.now();
        if (t - shownAt > 250) { shownAt = t; showBadge('playing'); }
      },
      // Deferred: a transport may fail before startLive has its handle.
      fail(reason) {
        queueMicrotask(() => {
          if (!live()) return;
          why.push(`${LABEL[mode]}: ${reason}`);
          console.info(`live ${cam.id}: ${LABEL[mode]} failed: ${reason}`);
          end();
          gen++;
          if (started && !restarted) {
            restarted = true;
            mode = chain[0];
            showBadge('connecting');
            retry = setTimeout(() => { if (!stopped) run(0); }, RESTART_MS);
          } else if (i + 1 < chain.length) run(i + 1);
          else showBadge('failed');
        });
      },
    };
    cur = TRANSPORTS[mode](ctx, cam, { sound });
    box.prepend(cur.media);
    if (FIRST_FRAME_MS[mode]) {
      timer = setTimeout(() => { if (!started) ctx.fail(`no picture within ${FIRST_FRAME_MS[mode] / 1000} s`); }, FIRST_FRAME_MS[mode]);
    }
    if (mode === 'mjpeg') started = true; // nothing to fall back to
    showBadge(started ? 'playing' : 'connecting');
    onMode(mode, cur.media, started ? 'playing' : 'connecting');
  }

  // Leaving the page (closing the tab) ends the session too.
  const onPageHide = () => stop();
  window.addEventListener('pagehide', onPageHide);
  function stop() {
    if (stopped) return;
    stopped = true;
    gen++;
    window.removeEventListener('pagehide', onPageHide);
    end();
    badge.remove();
  }

  run(0);
  return { stop, get stopped() { return stopped; }, get mode() { return mode; }, get media() { return cur?.media ?? null; } };
}
