// Live page (#/live): one card per camera with its preview (liveplayer.js: WebRTC, else LL-HLS,
// else MJPEG, with a badge naming the transport and its latency), state, REC badge and "Save
// clip"; also trigger() (save a clip and announce it when ready), which the Phone page uses too.
// A camera with sound: the WebRTC or HLS preview starts muted (autoplay rules) with a Sound
// button to unmute; MJPEG is silent, and
// the info line says whether the microphone is delivering (clips have its sound either way).
// Previews are detached while the tab is hidden (WebRTC: the session is DELETEd).

import { h, enc, toast, sleep } from '../dom.js';
import { api } from '../api.js';
import { stillShown, every, onLeave, onVisibility } from '../router.js';
import { onServerEvent } from '../events.js';
import { startLive } from '../liveplayer.js';

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

function cameraCard(cam) {
  const id = cam.id;
  const stateEl = h('span', { class: `state ${cam.state}` }, cam.state);
  const rec = h('span', { class: 'rec', hidden: !isRecording(cam) }, 'REC');
  const box = h('div', { class: 'preview-box' }, rec);
  let player = null;
  let mode = null;
  let media = null;
  let last = cam;
  const attach = () => {
    if (player && !player.stopped) return; // (stopped by itself on pagehide)
    player = startLive(box, cam, {
      onMode: (m, el) => { mode = m; media = el; showSound(); update(last); },
    });
  };
  const detach = () => {
    player?.stop();
    player = null;
    media = null;
  };
  const result = h('div', { class: 'last-clip muted' });
  const btn = h('button', { class: 'big save', onclick: async () => {
    btn.disabled = true;
    const r = await trigger(id, result);
    if (r) rec.hidden = false;
    btn.disabled = false;
  } }, '● Save clip');
  const info = h('span', { class: 'muted small-info' });
  const sound = cam.audio ? h('button', { class: 'sound', 'aria-pressed': 'false', hidden: true, onclick: () => {
    if (!media) return;
    media.muted = !media.muted;
    if (!media.muted) media.play?.().catch(() => {});
    showSound();
  } }) : null;
  function showSound() {
    if (!sound) return;
    sound.hidden = mode !== 'hls' && mode !== 'webrtc';
    const on = media && !media.muted;
    sound.textContent = on ? '🔊 Sound on' : '🔇 Sound off';
    sound.setAttribute('aria-pressed', String(Boolean(on)));
  }
  const card = h('section', { class: 'card camera', dataset: { camera: id } },
    h('div', { class: 'row between' }, h('h2', {}, id), stateEl),
    box, info, sound, btn, result);
  function update(c) {
    last = c;
    stateEl.textContent = c.state;
    stateEl.className = `state ${c.state}`;
    rec.hidden = !isRecording(c);
    const size = c.width && c.height ? `${c.width}×${c.height}` : '';
    const heard = !c.audio ? ''
      : !c.audio.live ? 'no sound: microphone not delivering'
        : mode === 'hls' || mode === 'webrtc' ? 'sound' : 'sound in clips';
    info.textContent = [size, c.fps ? `${c.fps} fps` : '', c.buffered_s !== undefined ? `pre-roll ${Number(c.buffered_s).toFixed(1)} s` : '', heard]
      .filter(Boolean).join(' · ');
    info.title = c.audio?.last_error || '';
    card.dataset.state = c.state;
    card.dataset.recording = String(!rec.hidden);
  }
  update(cam);
  return { card, attach, detach, update };
}

/** The newest /api/cameras entry per camera (Live page). */
const lastCams = new Map();

export async function pageLive(view) {
  const shown = stillShown();
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
        c = cameraCard(cam);
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
