// hindsight web app: one ES module, no framework, no build step, nothing from the internet.
//
// Hash routing (#/live, #/clips, #/upload, #/phone, #/status, #/devices); each page is a
// function that renders into <main id=view> and returns a cleanup. Timers are registered per
// page through every(), never faster than every 2 s, and skipped while the tab is hidden; live
// previews are detached while the tab is hidden (the MJPEG connection closes) and re-attached when
// it shows again. Every API call goes through api(): 401 → /login?next=<hash>, other errors throw
// with the JSON `error` text.

const LS = {
  device: 'hindsight.device',
  phoneId: 'hindsight.phoneId',
  chunk: 'hindsight.chunkBytes',
  preview: 'hindsight.preview',
  tusPrefix: 'hindsight.tus::',
};

// ---------------------------------------------------------------- helpers

/** Creates an element: h('div', {class: 'x', onclick: fn}, child, 'text', ...). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
    // A boolean content attribute given as '' also sets the live property (a <video muted>
    // created by script is not muted by the attribute alone).
    if (v === '' && typeof el[k] === 'boolean') el[k] = true;
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const enc = encodeURIComponent;

/** An API error: `status` is the HTTP status (0 for a network error). */
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function toLogin() {
  // The login page accepts same-site paths only: "/#/clips".
  location.assign('/login?next=' + enc('/' + (location.hash || '#/live')));
}

/** Reads the JSON `error` of a failed response. */
async function errorText(r) {
  const body = await r.json().catch(() => null);
  return body?.error || `HTTP ${r.status} ${r.statusText}`;
}

/**
 * fetch() for the API: JSON in (`json` option) and out; 401 → the login page; any other
 * non-2xx → ApiError with the server's `error` text.
 */
async function api(path, { method = 'GET', json, headers = {}, raw = false, signal } = {}) {
  const opts = { method, headers: { ...headers }, signal, credentials: 'same-origin' };
  if (json !== undefined) {
    opts.headers['content-type'] = 'application/json';
    opts.body = JSON.stringify(json);
  }
  let r;
  try {
    r = await fetch(path, opts);
  } catch (e) {
    if (e?.name === 'AbortError') throw e;
    throw new ApiError(0, `network error: ${e?.message ?? e}`);
  }
  if (r.status === 401) {
    toLogin();
    throw new ApiError(401, 'not logged in');
  }
  if (!r.ok) throw new ApiError(r.status, await errorText(r));
  if (raw) return r;
  if (r.status === 204) return null;
  const ct = r.headers.get('content-type') || '';
  return ct.includes('json') ? r.json() : r.text();
}

/** Like api() but a 404 (route not on this daemon yet) gives `fallback`. */
async function apiOptional(path, fallback = null) {
  try {
    return await api(path);
  } catch (e) {
    if (e.status === 404 || e.status === 405) return fallback;
    throw e;
  }
}

function toast(msg, { error = false, ms = 4000, link } = {}) {
  const box = document.getElementById('toasts');
  const t = h('div', { class: 'toast' + (error ? ' err' : '') }, msg);
  if (link) t.append(' ', h('a', { href: link.href }, link.text));
  box.append(t);
  setTimeout(() => t.remove(), ms);
  return t;
}

function fmtBytes(n) {
  if (n === null || n === undefined || !Number.isFinite(Number(n))) return '–';
  n = Number(n);
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(n >= 100 || i === 0 ? 0 : 1)} ${u[i]}`;
}

function fmtTime(s) {
  if (!s) return '–';
  const d = typeof s === 'number' ? new Date(s) : new Date(s);
  if (Number.isNaN(d.getTime())) return String(s);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

function fmtAgo(s) {
  if (!s) return '–';
  const t = typeof s === 'number' ? s : Date.parse(s);
  if (!Number.isFinite(t)) return String(s);
  const sec = Math.round((Date.now() - t) / 1000);
  if (sec < 5) return 'just now';
  if (sec < 90) return `${sec} s ago`;
  if (sec < 5400) return `${Math.round(sec / 60)} min ago`;
  if (sec < 172800) return `${Math.round(sec / 3600)} h ago`;
  return `${Math.round(sec / 86400)} d ago`;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Server-sent events (`/api/events`): `clip` when a clip is saved, `recording` when a camera
 * starts/stops writing one. One EventSource for the whole app (it reconnects by itself);
 * pages subscribe with `onServerEvent` and are unsubscribed when they are left.
 */
const serverEvents = new Set();
function startServerEvents() {
  if (!('EventSource' in window)) return;
  const es = new EventSource('/api/events');
  for (const type of ['clip', 'recording', 'clip_failed']) {
    es.addEventListener(type, (m) => {
      let data;
      try { data = JSON.parse(m.data); } catch { return; }
      for (const fn of [...serverEvents]) fn(type, data);
    });
  }
}
function onServerEvent(fn, { page = true } = {}) {
  serverEvents.add(fn);
  const off = () => serverEvents.delete(fn);
  if (page) onLeave(off);
  return off;
}

function randomSuffix(n = 4) {
  const a = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const b = crypto.getRandomValues(new Uint8Array(n));
  return Array.from(b, (x) => a[x % a.length]).join('');
}

// ---------------------------------------------------------------- page lifecycle

let pageTimers = [];
let pageCleanups = [];
let visibilityHooks = [];
/** Bumped on every route change, also to the same page (a hash change while its first render awaits). */
let pageGen = 0;

/**
 * A check that stays true while the render that called it is the one shown. A page's async
 * continuation tests it before touching the DOM, attaching media or registering timers, so a
 * render left mid-await cannot leave an orphan live preview (an MJPEG viewer nobody detaches).
 */
function stillShown() {
  const g = pageGen;
  return () => g === pageGen;
}

/** Runs `fn` (at once unless `now` is false, then) every `ms` (≥ 2000 ms) while the page is shown and the tab visible. */
function every(ms, fn, { now = true } = {}) {
  ms = Math.max(ms, 2000);
  let busy = false;
  const tick = async () => {
    if (document.hidden || busy) return;
    busy = true;
    try { await fn(); } catch (e) { if (e?.status !== 401) console.warn(e); } finally { busy = false; }
  };
  if (now) tick();
  pageTimers.push(setInterval(tick, ms));
}

/** Called with `hidden` (boolean) when the tab's visibility changes, while this page is shown. */
function onVisibility(fn) {
  visibilityHooks.push(fn);
}

function onLeave(fn) {
  pageCleanups.push(fn);
}

document.addEventListener('visibilitychange', () => {
  for (const f of visibilityHooks) f(document.hidden);
});

function leavePage() {
  for (const t of pageTimers) clearInterval(t);
  for (const f of pageCleanups) { try { f(); } catch (e) { console.warn(e); } }
  pageTimers = [];
  pageCleanups = [];
  visibilityHooks = [];
  pageGen += 1;
}

const PAGES = {
  live: { title: 'Live', render: pageLive },
  clips: { title: 'Clips', render: pageClips },
  upload: { title: 'Upload', render: pageUpload },
  phone: { title: 'Phone camera', render: pagePhone },
  status: { title: 'Status', render: pageStatus },
  devices: { title: 'Devices', render: pageDevices },
};

/** `#/clips?camera=x` → {page: 'clips', params: URLSearchParams}. */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [name, query = ''] = raw.split('?');
  return { page: PAGES[name] ? name : 'live', params: new URLSearchParams(query) };
}

let currentPage = null;

function route() {
  const { page, params } = parseHash();
  leavePage();
  currentPage = page;
  document.getElementById('page-title').textContent = PAGES[page].title;
  document.title = `${PAGES[page].title} · hindsight`;
  for (const a of document.querySelectorAll('nav.tabs a')) a.classList.toggle('active', a.dataset.page === page);
  const view = document.getElementById('view');
  view.replaceChildren();
  view.dataset.page = page;
  Promise.resolve(PAGES[page].render(view, params)).catch((e) => {
    if (e?.status === 401) return;
    view.append(h('div', { class: 'card error' }, `Could not load: ${e?.message ?? e}`));
  });
}

// ---------------------------------------------------------------- session / header

async function initSession() {
  const out = document.getElementById('logout');
  out.addEventListener('click', async () => {
    try { await api('/api/logout', { method: 'POST' }); } catch (e) { if (e.status !== 404) toast(e.message, { error: true }); }
    location.assign('/login');
  });
  try {
    const s = await api('/api/session');
    if (s?.auth) {
      document.getElementById('user').textContent = s.user || '';
      out.hidden = false;
    }
  } catch (e) {
    // 404: a daemon without the auth routes (no login); 401 already redirected.
  }
}

// ---------------------------------------------------------------- Live

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

async function trigger(cameraId, resultEl) {
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
  const card = h('section', { class: 'card camera', dataset: { camera: id } },
    h('div', { class: 'row between' }, h('h2', {}, id), stateEl),
    h('div', { class: 'preview-box' }, media, rec),
    info, btn, result);
  const update = (c) => {
    stateEl.textContent = c.state;
    stateEl.className = `state ${c.state}`;
    rec.hidden = !isRecording(c);
    const size = c.width && c.height ? `${c.width}×${c.height}` : '';
    info.textContent = [size, c.fps ? `${c.fps} fps` : '', c.buffered_s !== undefined ? `pre-roll ${Number(c.buffered_s).toFixed(1)} s` : '']
      .filter(Boolean).join(' · ');
    card.dataset.state = c.state;
    card.dataset.recording = String(!rec.hidden);
  };
  update(cam);
  return { card, attach, detach, update };
}

/** The newest /api/cameras entry per camera (Live page). */
const lastCams = new Map();

async function pageLive(view) {
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

// ---------------------------------------------------------------- Clips

function dayStart(d) { return d ? new Date(`${d}T00:00:00`).toISOString() : ''; }
function dayEnd(d) { return d ? new Date(`${d}T23:59:59.999`).toISOString() : ''; }

/** One clip as a card: thumbnail (lazy) → inline player, badges, download, pin, delete. */
function clipCard(c, { onDeleted } = {}) {
  const id = c.id;
  const video = `/api/clips/${enc(id)}/video.mp4`;
  const badges = h('span', { class: 'badges' });
  const setBadges = () => {
    badges.replaceChildren(...[
      c.pinned ? h('span', { class: 'badge pinned' }, 'pinned') : null,
      c.partial ? h('span', { class: 'badge partial', title: 'recovered after a crash' }, 'partial') : null,
      c.source ? h('span', { class: `badge ${c.source}` }, c.source) : null,
      c.device ? h('span', { class: 'badge' }, c.device) : null,
    ].filter(Boolean));
  };
  setBadges();
  const player = h('div', { class: 'player', hidden: true });
  const play = () => {
    if (!player.hidden) return;
    player.hidden = false;
    player.append(h('video', { controls: '', playsinline: '', preload: 'metadata', autoplay: '', muted: '',
      src: video, poster: `/api/clips/${enc(id)}/thumbnail.jpg` }));
  };
  const thumb = h('button', { class: 'thumb', 'aria-label': `play ${id}`, onclick: play },
    h('img', { loading: 'lazy', decoding: 'async', alt: '', src: `/api/clips/${enc(id)}/thumbnail.jpg`,
      onerror: (e) => { e.target.style.visibility = 'hidden'; } }));
  const pinBtn = h('button', { class: 'small', onclick: async () => {
    try {
      const m = await api(`/api/clips/${enc(id)}/${c.pinned ? 'unpin' : 'pin'}`, { method: 'POST' });
      c.pinned = m?.pinned ?? !c.pinned;
      pinBtn.textContent = c.pinned ? 'Unpin' : 'Pin';
      setBadges();
    } catch (e) { toast(e.message, { error: true }); }
  } }, c.pinned ? 'Unpin' : 'Pin');
  const card = h('article', { class: 'card clip', dataset: { clip: id } },
    thumb,
    h('div', { class: 'meta' },
      h('div', {}, h('b', {}, c.label || fmtTime(c.start_at || c.trigger_at))),
      h('div', { class: 'muted' }, c.label ? `${c.camera} · ${fmtTime(c.start_at || c.trigger_at)}` : c.camera),
      h('div', { class: 'muted' }, `${Number(c.duration_s || 0).toFixed(1)} s · ${fmtBytes(c.size_bytes)}`),
      badges),
    player,
    h('div', { class: 'actions' },
      h('button', { class: 'small play', onclick: play }, 'Play'),
      h('a', { class: 'button small', href: video, download: `${id}.mp4` }, 'Download'),
      pinBtn,
      h('button', { class: 'small danger', onclick: async () => {
        if (!confirm(`Delete clip ${c.label || id}?${c.pinned ? ' It is pinned.' : ''}`)) return;
        try {
          await api(`/api/clips/${enc(id)}`, { method: 'DELETE' });
          card.remove();
          toast('Clip deleted');
          onDeleted?.(id);
        } catch (e) { toast(e.message, { error: true }); }
      } }, 'Delete')));
  card.play = play;
  return card;
}

async function pageClips(view, params) {
  const f = {
    camera: params.get('camera') || '', label: params.get('label') || '', q: params.get('q') || '',
    since: params.get('since') || '', until: params.get('until') || '', source: params.get('source') || '',
    device: params.get('device') || '',
  };
  const camSel = h('select', { name: 'camera' }, h('option', { value: '' }, 'All cameras'));
  const srcSel = h('select', { name: 'source' }, ['', 'trigger', 'manual', 'upload'].map((s) =>
    h('option', { value: s }, s || 'Any source')));
  const form = h('form', { class: 'card filters', id: 'clip-filters' },
    h('label', {}, 'Camera', camSel),
    h('label', {}, 'Source', srcSel),
    h('label', {}, 'From', h('input', { type: 'date', name: 'since' })),
    h('label', {}, 'To', h('input', { type: 'date', name: 'until' })),
    h('label', {}, 'Label', h('input', { name: 'label', placeholder: 'e.g. door', autocomplete: 'off' })),
    h('label', {}, 'Search', h('input', { name: 'q', type: 'search', placeholder: 'id, camera, label', autocomplete: 'off' })),
  );
  const list = h('div', { id: 'clip-list' });
  const more = h('p', { class: 'muted center' });
  const sentinel = h('div', { class: 'sentinel' });
  view.append(form, list, more, sentinel);
  for (const k of ['camera', 'source', 'since', 'until', 'label', 'q']) form.elements[k].value = f[k];

  apiOptional('/api/cameras', []).then((cams) => {
    const ids = new Set((cams || []).map((c) => c.id));
    ids.add('upload');
    for (const id of ids) camSel.append(h('option', { value: id }, id));
    camSel.value = f.camera;
  }).catch(() => {});

  // 20 per page; `?pagesize=N` in the page URL changes it (tests).
  const pageSize = Math.min(500, Math.max(1, Number(new URLSearchParams(location.search).get('pagesize')) || 20));
  let cursor = null;
  let done = false;
  let loading = false;
  let generation = 0;
  const query = () => {
    const p = new URLSearchParams();
    if (f.camera) p.set('camera', f.camera);
    if (f.label) p.set('label', f.label);
    if (f.q) p.set('q', f.q);
    if (f.since) p.set('since', dayStart(f.since));
    if (f.until) p.set('until', dayEnd(f.until));
    if (f.source) p.set('source', f.source);
    if (f.device) p.set('device', f.device);
    p.set('limit', String(pageSize));
    if (cursor) p.set('cursor', cursor);
    return p.toString();
  };
  const load = async () => {
    if (loading || done) return;
    loading = true;
    const gen = generation;
    more.textContent = 'Loading…';
    try {
      const page = await api(`/api/clips?${query()}`);
      if (gen !== generation) return;
      for (const c of page.clips || []) list.append(clipCard(c));
      cursor = page.next_cursor || null;
      done = !cursor;
      more.textContent = done ? (list.children.length ? `${list.children.length} clip(s)` : 'No clips.') : '';
    } catch (e) {
      if (gen === generation) more.textContent = `Could not load clips: ${e.message}`;
      done = true;
    } finally {
      loading = false;
    }
    // The sentinel may still be in view (short page): keep filling.
    if (!done && gen === generation && sentinel.getBoundingClientRect().top < innerHeight + 400) load();
  };
  const reset = () => {
    generation++;
    cursor = null;
    done = false;
    loading = false;
    list.replaceChildren();
    const p = new URLSearchParams(Object.entries(f).filter(([, v]) => v));
    history.replaceState(null, '', `#/clips${p.toString() ? '?' + p : ''}`);
    load();
  };
  let debounce;
  const onInput = () => {
    for (const k of ['camera', 'source', 'since', 'until', 'label', 'q']) f[k] = form.elements[k].value.trim();
    clearTimeout(debounce);
    debounce = setTimeout(reset, 350);
  };
  form.addEventListener('input', onInput);
  form.addEventListener('change', onInput);
  form.addEventListener('submit', (e) => { e.preventDefault(); onInput(); });

  const io = new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) load(); },
    { rootMargin: '400px' });
  io.observe(sentinel);
  onLeave(() => { io.disconnect(); clearTimeout(debounce); generation++; });
  // A clip saved while the page is open appears at the top at once (server event).
  onServerEvent((type, c) => {
    if (type !== 'clip' || list.querySelector(`[data-clip="${CSS.escape(c.id)}"]`)) return;
    const dayMs = c.start_ms ?? Date.parse(c.start_at);
    const matches = (!f.camera || c.camera === f.camera) && (!f.source || c.source === f.source)
      && (!f.device || c.device === f.device)
      && (!f.label || (c.label || '').toLowerCase() === f.label.toLowerCase())
      && (!f.q || [c.id, c.camera, c.label, c.device].some((v) => (v || '').toLowerCase().includes(f.q.toLowerCase())))
      && (!f.since || dayMs >= Date.parse(dayStart(f.since))) && (!f.until || dayMs <= Date.parse(dayEnd(f.until)));
    if (matches) list.prepend(clipCard(c));
  });
  const shown = stillShown();
  await load();
  const open = params.get('clip');
  if (open && shown()) {
    const card = list.querySelector(`[data-clip="${CSS.escape(open)}"]`);
    if (card) { card.play(); card.scrollIntoView({ block: 'center' }); }
  }
}

// ---------------------------------------------------------------- Upload (tus 1.0 client)

const TUS = '1.0.0';

/** Chunk size: `?chunk=BYTES` in the page URL, else localStorage, else 5 MB. */
function chunkBytes() {
  const q = Number(new URLSearchParams(location.search).get('chunk'));
  const s = Number(localStorage.getItem(LS.chunk));
  const n = q > 0 ? q : s > 0 ? s : 5 * 1024 * 1024;
  return Math.max(64 * 1024, Math.floor(n));
}

function b64(s) {
  return btoa(String.fromCharCode(...new TextEncoder().encode(s)));
}

function fingerprint(file) {
  return `${LS.tusPrefix}${file.name}::${file.size}::${file.lastModified}`;
}

class UploadError extends Error {
  constructor(status, message, { retryable = false } = {}) {
    super(message);
    this.status = status;
    this.retryable = retryable;
  }
}

/** A tus request; network errors → retryable UploadError; 401 → login. */
async function tusFetch(url, opts) {
  let r;
  try {
    r = await fetch(url, { ...opts, credentials: 'same-origin', headers: { 'Tus-Resumable': TUS, ...(opts.headers || {}) } });
  } catch (e) {
    throw new UploadError(0, `network error (${e?.message ?? e})`, { retryable: true });
  }
  if (r.status === 401) { toLogin(); throw new UploadError(401, 'not logged in'); }
  return r;
}

async function uploadFailure(r) {
  const text = await errorText(r);
  const why = {
    413: 'File too large for this appliance',
    415: 'Not a video file',
    507: 'Not enough free disk space on the appliance',
    460: 'Checksum mismatch',
  }[r.status];
  const retryable = r.status >= 500 && r.status !== 507;
  return new UploadError(r.status, why ? `${why}: ${text}` : text, { retryable });
}

/**
 * Uploads `file` with tus 1.0: creation, then PATCH chunks; resumes a stored upload URL (HEAD
 * for the server's offset) and retries network errors with back-off. Returns the upload URL.
 * `onProgress(sent, total)`, `onState(text)`.
 */
async function tusUpload(file, { device, onProgress, onState, signal }) {
  const fp = fingerprint(file);
  const chunk = chunkBytes();
  let url = localStorage.getItem(fp);
  let offset = 0;
  if (url) {
    onState?.('Resuming…');
    const r = await tusFetch(url, { method: 'HEAD', cache: 'no-store', signal });
    if (r.ok && r.headers.get('Upload-Offset') !== null) {
      offset = Number(r.headers.get('Upload-Offset'));
      onState?.(`Resuming at ${fmtBytes(offset)}`);
    } else {
      localStorage.removeItem(fp);
      url = null;
    }
  }
  if (!url) {
    const meta = [['filename', file.name], ['filetype', file.type || 'application/octet-stream'], ['device', device]]
      .map(([k, v]) => `${k} ${b64(v)}`).join(',');
    const r = await tusFetch('/api/uploads', { method: 'POST', signal,
      headers: { 'Upload-Length': String(file.size), 'Upload-Metadata': meta } });
    if (r.status !== 201) throw await uploadFailure(r);
    const loc = r.headers.get('Location');
    if (!loc) throw new UploadError(r.status, 'server gave no upload Location');
    url = new URL(loc, location.href).pathname;
    localStorage.setItem(fp, url);
    offset = 0;
  }
  onProgress?.(offset, file.size);
  let failures = 0;
  while (offset < file.size) {
    if (signal?.aborted) throw new UploadError(0, 'cancelled');
    try {
      const end = Math.min(offset + chunk, file.size);
      const r = await tusFetch(url, { method: 'PATCH', signal, body: file.slice(offset, end),
        headers: { 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': String(offset) } });
      if (r.status === 409) {
        // Offsets disagree (a chunk landed but its answer was lost): ask the server.
        const hd = await tusFetch(url, { method: 'HEAD', cache: 'no-store', signal });
        if (!hd.ok) throw await uploadFailure(hd);
        offset = Number(hd.headers.get('Upload-Offset'));
        continue;
      }
      if (r.status === 404 || r.status === 410) {
        localStorage.removeItem(fp);
        throw new UploadError(r.status, 'the upload expired on the server: pick the file again to start over');
      }
      if (!r.ok) throw await uploadFailure(r);
      const next = Number(r.headers.get('Upload-Offset'));
      offset = Number.isFinite(next) && next > offset ? next : end;
      failures = 0;
      onProgress?.(offset, file.size);
    } catch (e) {
      if (!(e instanceof UploadError) || !e.retryable) {
        if (e instanceof UploadError && e.status && e.status !== 0) localStorage.removeItem(fp);
        throw e;
      }
      failures++;
      if (failures > 5) {
        throw new UploadError(0, `${e.message}: upload paused at ${fmtBytes(offset)}. Pick the same file again to resume.`);
      }
      const wait = Math.min(1000 * 2 ** (failures - 1), 15000);
      onState?.(`${e.message} — retrying in ${Math.round(wait / 1000)} s (${failures}/5)`);
      await sleep(wait);
      try {
        const hd = await tusFetch(url, { method: 'HEAD', cache: 'no-store', signal });
        if (hd.ok) offset = Number(hd.headers.get('Upload-Offset')) || offset;
      } catch { /* still offline: the next PATCH retries */ }
    }
  }
  localStorage.removeItem(fp);
  return url;
}

/** Polls the upload's status (every 2 s) until done/failed. */
async function waitProcessed(url, onState) {
  for (;;) {
    const s = await api(`${url}/status`);
    if (s.state === 'done') return s;
    if (s.state === 'failed') throw new UploadError(422, s.error || 'processing failed');
    onState?.(s.state === 'processing' ? 'Processing on the appliance…' : `Server state: ${s.state}`);
    await sleep(2000);
  }
}

let uploadBusy = false;

async function pageUpload(view) {
  const deviceIn = h('input', { id: 'device', name: 'device', autocomplete: 'nickname', maxlength: '64',
    value: localStorage.getItem(LS.device) || '' , placeholder: 'e.g. anna-phone' });
  deviceIn.addEventListener('change', () => localStorage.setItem(LS.device, deviceIn.value.trim()));
  const pick = h('input', { type: 'file', id: 'file', accept: 'video/*' });
  const shoot = h('input', { type: 'file', id: 'capture', accept: 'video/*', capture: 'environment' });
  const bar = h('progress', { id: 'upload-progress', max: 100, value: 0 });
  const pct = h('span', { class: 'pct', id: 'upload-pct' }, '0%');
  const name = h('div', { class: 'muted', id: 'upload-name' });
  const state = h('div', { id: 'upload-state', class: 'muted' });
  const result = h('div', { id: 'upload-result' });
  const cancel = h('button', { class: 'small danger', hidden: true }, 'Cancel');
  const progressBox = h('section', { class: 'card stack', id: 'upload-box', hidden: true },
    name, bar, h('div', { class: 'row between' }, pct, cancel), state, result);
  const pending = Object.keys(localStorage).filter((k) => k.startsWith(LS.tusPrefix));
  view.append(
    h('section', { class: 'card stack' },
      h('h2', {}, 'Upload a video'),
      h('label', {}, 'Your name or device (groups uploads on the Devices page)', deviceIn),
      h('label', {}, 'From the phone (camera roll / files)', pick),
      h('label', {}, 'Record with the camera', shoot),
      pending.length ? h('p', { class: 'muted', id: 'resumable' },
        `${pending.length} unfinished upload(s): pick the same file again to resume (`,
        pending.map((k) => k.slice(LS.tusPrefix.length).split('::')[0]).join(', '), ').') : null),
    progressBox,
    h('section', { class: 'card', id: 'recent-uploads' }, h('h2', {}, 'Recent uploads'), h('div', { class: 'list muted' }, 'Loading…')));

  const start = async (file) => {
    if (!file) return;
    if (uploadBusy) { toast('An upload is already running', { error: true }); return; }
    uploadBusy = true;
    const device = deviceIn.value.trim() || 'browser';
    localStorage.setItem(LS.device, deviceIn.value.trim());
    const ctl = new AbortController();
    cancel.hidden = false;
    cancel.onclick = () => ctl.abort();
    progressBox.hidden = false;
    name.textContent = `${file.name} · ${fmtBytes(file.size)}`;
    result.replaceChildren();
    state.textContent = 'Starting…';
    state.classList.remove('error');
    const started = Date.now();
    try {
      const url = await tusUpload(file, {
        device, signal: ctl.signal,
        onState: (t) => { state.textContent = t; },
        onProgress: (sent, total) => {
          const p = total ? Math.floor((sent / total) * 1000) / 10 : 100;
          bar.value = p;
          pct.textContent = `${p}%`;
          const secs = (Date.now() - started) / 1000;
          state.textContent = `${fmtBytes(sent)} of ${fmtBytes(total)}${secs > 1 ? ` · ${fmtBytes(sent / secs)}/s` : ''}`;
        },
      });
      cancel.hidden = true;
      bar.value = 100;
      pct.textContent = '100%';
      state.textContent = 'Uploaded. Processing on the appliance…';
      const s = await waitProcessed(url, (t) => { state.textContent = t; });
      state.textContent = 'Done.';
      if (!Object.keys(localStorage).some((k) => k.startsWith(LS.tusPrefix))) view.querySelector('#resumable')?.remove();
      result.replaceChildren(
        h('p', {}, 'Saved as clip ', h('a', { id: 'upload-clip', href: `#/clips?clip=${enc(s.clip_id)}` }, s.clip_id)),
        h('video', { controls: '', playsinline: '', preload: 'metadata', src: `/api/clips/${enc(s.clip_id)}/video.mp4`,
          style: 'width:100%;border-radius:8px;background:#000' }));
      toast('Upload finished', { link: { href: `#/clips?clip=${enc(s.clip_id)}`, text: 'Open clip' } });
      loadRecent();
    } catch (e) {
      if (e?.status === 401) return;
      state.textContent = e?.name === 'AbortError' ? 'Cancelled. Pick the file again to resume.' : `Upload failed: ${e.message}`;
      state.classList.add('error');
      toast(state.textContent, { error: true, ms: 6000 });
    } finally {
      uploadBusy = false;
      cancel.hidden = true;
      pick.value = '';
      shoot.value = '';
    }
  };
  pick.addEventListener('change', () => start(pick.files[0]));
  shoot.addEventListener('change', () => start(shoot.files[0]));

  const loadRecent = async () => {
    const box = view.querySelector('#recent-uploads .list');
    if (!box) return;
    const ups = await apiOptional('/api/uploads', null).catch(() => null);
    if (!ups) { box.textContent = 'Uploads are not available on this appliance yet.'; return; }
    const items = Array.isArray(ups) ? ups : ups.uploads || [];
    if (!items.length) { box.textContent = 'None yet.'; return; }
    box.classList.remove('muted');
    box.replaceChildren(h('div', { class: 'scroll-x' }, h('table', {},
      h('tr', {}, h('th', {}, 'File'), h('th', {}, 'Device'), h('th', {}, 'State')),
      items.slice(0, 20).map((u) => h('tr', {},
        h('td', {}, u.clip_id ? h('a', { href: `#/clips?clip=${enc(u.clip_id)}` }, u.filename || u.id) : (u.filename || u.id)),
        h('td', {}, u.device || ''),
        h('td', {}, u.state === 'uploading' && u.length ? `${Math.floor((u.offset / u.length) * 100)}%` : u.state,
          u.error ? h('div', { class: 'error' }, u.error) : null))))));
  };
  loadRecent();
}

// ---------------------------------------------------------------- Phone camera

/** The running phone camera survives page changes (it keeps streaming while you look at Live). */
const phone = { session: null, id: null, status: null, video: null, listeners: new Set() };

function phoneVideo() {
  if (!phone.video) phone.video = h('video', { id: 'phone-video', muted: '', autoplay: '', playsinline: '' });
  return phone.video;
}

async function pagePhone(view) {
  let id = localStorage.getItem(LS.phoneId);
  if (!id || !/^[a-z0-9_-]{1,32}$/.test(id)) {
    id = `phone-${randomSuffix()}`;
    localStorage.setItem(LS.phoneId, id);
  }
  const idIn = h('input', { id: 'phone-id', value: phone.id || id, pattern: '[a-z0-9_-]{1,32}', maxlength: '32',
    autocomplete: 'off', autocapitalize: 'none', spellcheck: false });
  const startBtn = h('button', { class: 'primary', id: 'phone-start' }, 'Start camera');
  const stopBtn = h('button', { class: 'danger', id: 'phone-stop' }, 'Stop');
  const statusEl = h('div', { id: 'phone-status', class: 'muted' });
  const result = h('div', { class: 'last-clip muted' });
  const saveBtn = h('button', { class: 'big save', id: 'phone-save' }, '● Save clip');
  const render = () => {
    const on = !!phone.session;
    startBtn.hidden = on;
    stopBtn.hidden = !on;
    idIn.disabled = on;
    saveBtn.disabled = !on;
    const s = phone.status;
    statusEl.classList.toggle('error', !!s?.error);
    statusEl.textContent = !s ? (on ? 'Connecting…' : 'Not streaming.')
      : s.error ? `Error: ${s.error}`
      : `Camera ${s.camera ?? phone.id}: ${s.state ?? '…'}${s.frames !== undefined ? ` · ${s.frames} frames received` : ''}`;
    statusEl.dataset.frames = String(s?.frames ?? 0);
  };
  phone.listeners.add(render);
  onLeave(() => phone.listeners.delete(render));

  startBtn.addEventListener('click', async () => {
    const want = idIn.value.trim().toLowerCase();
    if (!/^[a-z0-9_-]{1,32}$/.test(want)) { toast('Camera id: 1–32 of a–z, 0–9, - and _', { error: true }); return; }
    localStorage.setItem(LS.phoneId, want);
    startBtn.disabled = true;
    phone.status = null;
    try {
      const mod = await import('/phone.js');
      phone.id = want;
      phone.session = await mod.startPhoneCamera({
        id: want, video: phoneVideo(),
        onStatus: (s) => {
          phone.status = s;
          for (const f of phone.listeners) f();
        },
      });
    } catch (e) {
      phone.session = null;
      phone.status = { error: e?.message ?? String(e) };
    } finally {
      startBtn.disabled = false;
      render();
    }
  });
  stopBtn.addEventListener('click', () => {
    try { phone.session?.stop(); } catch (e) { console.warn(e); }
    phone.session = null;
    phone.status = null;
    render();
  });
  saveBtn.addEventListener('click', async () => {
    saveBtn.disabled = true;
    await trigger(phone.id || idIn.value.trim(), result);
    saveBtn.disabled = !phone.session;
  });

  view.append(h('section', { class: 'card stack' },
    h('h2', {}, 'Use this phone as a camera'),
    h('p', { class: 'muted' }, 'The phone streams its camera to the appliance, which keeps a pre-roll and saves clips like any other camera. Keep this page open while streaming.'),
    h('label', {}, 'Camera id', idIn),
    h('div', { class: 'row' }, startBtn, stopBtn),
    phoneVideo(),
    statusEl, saveBtn, result));
  if (phone.video?.srcObject && phone.video.paused) phone.video.play().catch(() => {});
  render();
}

// ---------------------------------------------------------------- Status

function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(Boolean).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function table(headers, rows) {
  return h('div', { class: 'scroll-x' }, h('table', {},
    h('tr', {}, headers.map((x) => h('th', {}, x))),
    rows.map((r) => h('tr', {}, r.map((x) => h('td', {}, x))))));
}

async function pageStatus(view) {
  const shown = stillShown();
  const health = h('section', { class: 'card', id: 'status-health' }, h('h2', {}, 'Health'));
  const storage = h('section', { class: 'card', id: 'status-storage' }, h('h2', {}, 'Storage'));
  const cams = h('section', { class: 'card', id: 'status-cameras' }, h('h2', {}, 'Cameras'));
  const clients = h('section', { class: 'card', id: 'status-clients' }, h('h2', {}, 'Phone cameras (browser clients)'));
  const sessions = h('section', { class: 'card', id: 'status-sessions' }, h('h2', {}, 'Logged-in sessions'));
  view.append(health, storage, cams, clients, sessions);
  const fill = (el, ...content) => el.replaceChildren(el.firstChild, ...content);
  const refresh = async () => {
    const [hl, st, cl, cli, ses] = await Promise.all([
      api('/api/health').catch((e) => ({ error: e.message })),
      api('/api/storage').catch((e) => ({ error: e.message })),
      api('/api/cameras').catch((e) => ({ error: e.message })),
      apiOptional('/api/clients', null).catch((e) => ({ error: e.message })),
      apiOptional('/api/sessions', null).catch((e) => ({ error: e.message })),
    ]);
    if (!shown()) return;
    fill(health, hl.error ? h('p', { class: 'error' }, hl.error) : kv([
      ['status', h('span', { class: `state ${hl.status === 'ok' ? 'running' : 'failed'}`, id: 'health-status' }, hl.status)],
      ...Object.entries(hl.cameras || {}).map(([id, c]) => [id, `${c.state}${c.last_error ? ` — ${c.last_error}` : ''}`]),
      ['disk free', hl.storage ? `${fmtBytes(hl.storage.free_bytes)} of ${fmtBytes(hl.storage.total_bytes)} (${hl.storage.free_percent}%)` : '–'],
    ]));
    fill(storage, st.error ? h('p', { class: 'error' }, st.error) : kv([
      ['clips', `${st.clips} (${fmtBytes(st.clip_bytes)})`],
      ['pinned', st.pinned],
      ['free', `${fmtBytes(st.free_bytes)} of ${fmtBytes(st.total_bytes)}${Number.isFinite(st.free_percent) ? ` (${st.free_percent.toFixed(1)}%)` : ''}`],
      ['limits', `max ${st.max_bytes ? fmtBytes(st.max_bytes) : 'none'} · keep ≥ ${st.min_free_percent}% free · ${st.retention_days ? `${st.retention_days} days` : 'no age limit'}`],
      ['path', `${st.path}${st.require_mount ? (st.mounted ? ' (mounted)' : ' (NOT mounted)') : ''}`],
    ]));
    fill(cams, cl.error ? h('p', { class: 'error' }, cl.error) : table(
      ['camera', 'state', 'frames', 'dropped', 'pre-roll', 'viewers'],
      cl.map((c) => [c.id, h('span', { class: `state ${c.state}` }, c.state), c.frames_captured ?? '–', c.frames_dropped ?? '–',
        c.buffered_s !== undefined ? `${Number(c.buffered_s).toFixed(1)} s` : '–', c.viewers ?? '–'])));
    fill(clients, cli === null ? h('p', { class: 'muted' }, 'Not available on this appliance.')
      : cli.error ? h('p', { class: 'error' }, cli.error)
      : !cli.length ? h('p', { class: 'muted' }, 'No phone has streamed yet.')
      : table(['camera', 'address', 'last seen', 'frames'], cli.map((c) => [
        h('span', {}, c.camera, c.connected ? '' : h('span', { class: 'muted' }, ' (gone)')),
        c.address || '–', fmtAgo(c.last_seen_at), c.frames_received ?? '–'])));
    fill(sessions, ses === null ? h('p', { class: 'muted' }, 'Login is off (or not available).')
      : ses.error ? h('p', { class: 'error' }, ses.error)
      : table(['user', 'address', 'last seen', 'browser'], ses.map((s) => [s.user, s.address || '–', fmtAgo(s.last_seen_at),
        h('span', { class: 'muted' }, (s.user_agent || '').slice(0, 40))])));
  };
  await refresh();
  if (shown()) every(5000, refresh, { now: false });
}

// ---------------------------------------------------------------- Devices

async function pageDevices(view) {
  const listBox = h('section', { class: 'card', id: 'device-list' }, h('h2', {}, 'Devices and people who uploaded'), h('p', { class: 'muted' }, 'Loading…'));
  const searchIn = h('input', { type: 'search', id: 'upload-search', placeholder: 'file name…', autocomplete: 'off' });
  const results = h('div', { id: 'upload-results' });
  view.append(listBox, h('section', { class: 'card stack' }, h('h2', {}, 'Search uploads'), searchIn), results);

  const showUploads = async (params, title) => {
    results.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    try {
      const p = new URLSearchParams({ source: 'upload', limit: '50', ...params });
      const page = await api(`/api/clips?${p}`);
      results.replaceChildren(h('h3', {}, title), ...(page.clips || []).map((c) => clipCard(c)));
      if (!(page.clips || []).length) results.append(h('p', { class: 'muted' }, 'No uploads found.'));
    } catch (e) {
      results.replaceChildren(h('p', { class: 'error' }, e.message));
    }
  };
  let t;
  searchIn.addEventListener('input', () => {
    clearTimeout(t);
    const q = searchIn.value.trim();
    t = setTimeout(() => (q ? showUploads({ q }, `Uploads matching “${q}”`) : results.replaceChildren()), 350);
  });
  onLeave(() => clearTimeout(t));

  const load = async () => {
    const devs = await apiOptional('/api/devices', null);
    if (devs === null) { listBox.replaceChildren(listBox.firstChild, h('p', { class: 'muted' }, 'Uploads are not available on this appliance yet.')); return; }
    if (!devs.length) { listBox.replaceChildren(listBox.firstChild, h('p', { class: 'muted' }, 'No uploads yet.')); return; }
    listBox.replaceChildren(listBox.firstChild, ...devs.map((d) => h('div', { class: 'card device', dataset: { device: d.name } },
      h('div', { class: 'row between' }, h('h3', {}, d.name), h('span', { class: 'muted' }, `${d.uploads} upload(s) · ${fmtBytes(d.bytes)}`)),
      h('div', { class: 'muted' }, `last upload ${fmtAgo(d.last_upload_at)}`),
      h('div', { class: 'row' },
        h('button', { class: 'small', onclick: () => showUploads({ device: d.name }, `Uploads from ${d.name}`) }, 'Show'),
        h('button', { class: 'small', onclick: async () => {
          const name = prompt(`Rename “${d.name}” to:`, d.name)?.trim();
          if (!name || name === d.name) return;
          try { await api(`/api/devices/${enc(d.name)}`, { method: 'PATCH', json: { name } }); toast('Renamed'); load(); }
          catch (e) { toast(e.message, { error: true }); }
        } }, 'Rename'),
        h('button', { class: 'small danger', onclick: async () => {
          if (!confirm(`Delete all ${d.uploads} upload(s) from “${d.name}”?`)) return;
          try { await api(`/api/devices/${enc(d.name)}`, { method: 'DELETE' }); toast('Deleted'); load(); }
          catch (e) { toast(e.message, { error: true }); }
        } }, 'Delete uploads')))));
  };
  await load();
}

// ---------------------------------------------------------------- start

window.addEventListener('hashchange', route);
initSession();
startServerEvents();
route();
