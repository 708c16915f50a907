// Live page (#/live): one card per camera with its preview (MJPEG, or native HLS on iOS Safari),
// state, REC badge and "Save clip"; also trigger() (save a clip and announce it when ready),
// which the Phone page uses too. A camera with sound: the HLS preview starts muted (autoplay
// rules) with a Sound button to unmute; MJPEG is silent, and the info line says whether the
// microphone is delivering (clips have its sound either way).

import { LS, h, enc, toast, sleep } from '../dom.js';
import { api } from '../api.js';
import { stillShown, every, onLeave, onVisibility } from '../router.js';
import { onServerEvent } from '../events.js';

/** Per camera: wall-clock ms until which we know a clip is being written (from our triggers). */
const recUntil = new Map();

/**
 * Whether the camera is writing a clip. The daemon's camera JSON has no recording field yet,
 * so this takes, in order: a `recording` field (boolean, or an object / clip id when set),
 * a `recording_clip`/`clip_id` field, then the end time a trigger we sent announced
 * (now + post_s, extended by later triggers).
 */
function isRecording(cam) {
  if (typeof cam.recording === 'boolean') return cam.recording;
  if (cam.recording) return true;
  if (cam.recording_clip || cam.current_clip) return true;
  return (recUntil.get(cam.id) || 0) > Date.now();
}

/** Native HLS only where it is the platform's own player (iPhone/iPad Safari); else MJPEG. */
function useHls() {
  const pref = new URLSearchParams(location.search).get('preview') || localStorage.getItem(LS.preview);
  if (pref === 'mjpeg') return false;
  const v = document.createElement('video');
  const native = v.canPlayType('application/vnd.apple.mpegurl') !== '';
  if (pref === 'hls') return native;
  const ua = navigator.userAgent;
  return native && /Safari/.test(ua) && !/Chrome|Chromium|CriOS|Android|Firefox|FxiOS/.test(ua);
}

/**
 * Tells the user when a clip is saved: at once from the `clip` server event, or (events
 * unavailable) by polling every 5 s, for up to ~5 min.
 */
function announceWhenReady(clipId) {
  let done = false;
  const ready = () => {
    if (done) return;
    done = true;
    off();
    toast(`Clip ${clipId} is ready.`, { link: { href: `#/clips?clip=${enc(clipId)}`, text: 'Open' }, ms: 8000 });
  };
  const off = onServerEvent((type, d) => {
    if (type === 'clip' && d.id === clipId) ready();
    if (type === 'clip_failed' && d.clip_id === clipId && !done) {
      done = true;
      off();
      toast(`Clip ${clipId} failed: ${d.error}`, { error: true });
    }
  }, { page: false });
  (async () => {
    for (let i = 0; i < 60 && !done; i++) {
      await sleep(5000);
      if (done) return;
      try { await api(`/api/clips/${enc(clipId)}`); ready(); return; } catch (e) { if (e.status !== 404) break; }
    }
    off();
  })();
}

export async function trigger(cameraId, resultEl) {
  try {
    const r = await api(`/api/cameras/${enc(cameraId)}/trigger`, { method: 'POST' });
    const post = Number(r?.post_s) || 0;
    recUntil.set(cameraId, Date.now() + post * 1000 + 1500);
    const what = r?.extended ? 'Clip extended' : 'Saving clip';
    toast(`${what}: ${r?.clip_id ?? ''}`);
    if (resultEl) {
      resultEl.replaceChildren(`${what} `, h('b', { class: 'clip-id' }, r?.clip_id ?? ''),
        post ? ` — ready in ~${Math.ceil(post)} s` : '');
    }
    if (r?.clip_id) announceWhenReady(r.clip_id);
    return r;
  } catch (e) {
    if (e.status !== 401) toast(`Save clip failed: ${e.message}`, { error: true });
    return null;
  }
}

function cameraCard(cam, hls) {
  const id = cam.id;
  const stateEl = h('span', { class: `state ${cam.state}` }, cam.state);
  const rec = h('span', { class: 'rec', hidden: !isRecording(cam) }, 'REC');
  const src = hls ? `/api/cameras/${enc(id)}/hls/live.m3u8` : `/api/cameras/${enc(id)}/mjpeg`;
  const media = hls
    ? h('video', { class: 'preview', muted: '', autoplay: '', playsinline: '', 'aria-label': `${id} live` })
    : h('img', { class: 'preview', alt: `${id} live`, decoding: 'async' });
  const attach = () => {
    if (hls) { media.src = src; media.play?.().catch(() => {}); } else media.src = src;
  };
  const detach = () => {
    // Removing src closes the MJPEG connection (the daemon stops encoding when nobody watches).
    if (hls) { media.pause(); media.removeAttribute('src'); media.load(); }
    // Removing the attribute alone may leave Chromium reading the multipart stream: point the
    // image at an empty resource, which cancels the request.
    else media.src = 'data:,';
  };
  const result = h('div', { class: 'last-clip muted' });
  const btn = h('button', { class: 'big save', onclick: async () => {
    btn.disabled = true;
    const r = await trigger(id, result);
    if (r) rec.hidden = false;
    btn.disabled = false;
  } }, '● Save clip');
  const info = h('span', { class: 'muted small-info' });
  const sound = hls && cam.audio ? h('button', { class: 'sound', 'aria-pressed': 'false', onclick: () => {
    media.muted = !media.muted;
    sound.textContent = media.muted ? '🔇 Sound off' : '🔊 Sound on';
    sound.setAttribute('aria-pressed', String(!media.muted));
    if (!media.muted) media.play?.().catch(() => {});
  } }, '🔇 Sound off') : null;
  const card = h('section', { class: 'card camera', dataset: { camera: id } },
    h('div', { class: 'row between' }, h('h2', {}, id), stateEl),
    h('div', { class: 'preview-box' }, media, rec),
    info, sound, btn, result);
  const update = (c) => {
    stateEl.textContent = c.state;
    stateEl.className = `state ${c.state}`;
    rec.hidden = !isRecording(c);
    const size = c.width && c.height ? `${c.width}×${c.height}` : '';
    const heard = c.audio ? (c.audio.live ? (hls ? 'sound' : 'sound in clips') : 'no sound: microphone not delivering') : '';
    info.textContent = [size, c.fps ? `${c.fps} fps` : '', c.buffered_s !== undefined ? `pre-roll ${Number(c.buffered_s).toFixed(1)} s` : '', heard]
      .filter(Boolean).join(' · ');
    info.title = c.audio?.last_error || '';
    card.dataset.state = c.state;
    card.dataset.recording = String(!rec.hidden);
  };
  update(cam);
  return { card, attach, detach, update };
}

/** The newest /api/cameras entry per camera (Live page). */
const lastCams = new Map();

export async function pageLive(view) {
  const shown = stillShown();
  const hls = useHls();
  const grid = h('div', { class: 'grid', id: 'cameras' });
  const empty = h('p', { class: 'muted center', hidden: true }, 'No cameras configured.');
  view.append(grid, empty);
  const cards = new Map();
  onLeave(() => { for (const c of cards.values()) c.detach(); });
  onVisibility((hidden) => { for (const c of cards.values()) (hidden ? c.detach : c.attach)(); });
  const refresh = async () => {
    const cams = await api('/api/cameras');
    if (!shown()) return;
    for (const cam of cams) lastCams.set(cam.id, cam);
    const ids = new Set(cams.map((c) => c.id));
    for (const [id, c] of cards) if (!ids.has(id)) { c.detach(); c.card.remove(); cards.delete(id); }
    for (const cam of cams) {
      let c = cards.get(cam.id);
      if (!c) {
        c = cameraCard(cam, hls);
        cards.set(cam.id, c);
        grid.append(c.card);
        if (!document.hidden) c.attach();
      }
      c.update(cam);
    }
    empty.hidden = cams.length > 0;
  };
  await refresh();
  if (!shown()) return;
  onServerEvent((type, d) => {
    if (type === 'recording' && cards.has(d.camera)) {
      if (!d.on) recUntil.delete(d.camera);
      cards.get(d.camera).update({ ...lastCams.get(d.camera), recording: Boolean(d.on) });
    }
  });
  every(3000, refresh, { now: false });
}
