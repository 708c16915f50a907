// Recordings page (#/recordings?camera=cam0&day=2026-12-07): one camera's continuous (24/7)
// recording over one local day. The timeline (js/timeline.js) shows the recorded stretches, the
// gaps and the events (clips triggered meanwhile); a tap plays from that moment (js/vodplayer.js:
// the UTC hour's VOD playlist, native HLS on Safari, else hls.js) and shows the wall-clock time
// on screen. Export: a start time and a length → /recordings/export.mp4 as a download (the
// server's error shown when it refuses), Play from that time, or Delete that range. The API
// speaks UTC; the page, the browser's local time. Changing camera or day re-renders the page
// (the hash changes); today's listing is topped up every 10 s (only the tail is asked again).

import { h, enc, toast, fmtBytes } from '../dom.js';
import { api, errorText, toLogin } from '../api.js';
import { stillShown, every, onLeave } from '../router.js';
import { timeline, isOpenGap, hms, localDay, dayBounds } from '../timeline.js';
import { vodPlayer } from '../vodplayer.js';

/** Segments closer than this are one recorded stretch (the server's own gap threshold). */
const MERGE_MS = 250;
/** Zoom → window length (ms); the day zoom is the whole day. */
const ZOOMS = [['day', 'Day', 0], ['hour', '1 h', 3600e3], ['min5', '5 min', 300e3]];
const LENGTHS = [[30, '30 s'], [60, '1 min'], [300, '5 min'], [900, '15 min'], [1800, '30 min'], [3600, '1 h']];
const iso = (ms) => new Date(ms).toISOString();
const clamp = (v, a, b) => Math.min(Math.max(v, a), b);

function fmtDuration(s) {
  s = Math.round(s);
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  if (s >= 60) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${s} s`;
}

/** The hour playlist (hours are UTC, as on disk) holding wall time `ms`. */
function playlistUrl(cam, ms) {
  const s = iso(ms);
  return `/api/cameras/${enc(cam)}/recordings/${s.slice(0, 10)}/${s.slice(11, 13)}/playlist.m3u8`;
}

/**
 * One day of one camera: segs (start → {end, bytes}), merged runs, gaps, events. absorb(listing,
 * cut) replaces what was known from `cut` on with a listing that starts there.
 */
function dayRecord(from, to) {
  const d = { from, to, segs: new Map(), gaps: [], events: new Map(), runs: [], bytes: 0, covered: 0, truncated: false };
  d.absorb = (l, cut) => {
    for (const k of [...d.segs.keys()]) if (k >= cut) d.segs.delete(k);
    for (const s of l.segments || []) d.segs.set(Date.parse(s.start), { end: Date.parse(s.end), bytes: s.bytes || 0 });
    d.gaps = d.gaps.filter((g) => g.start < cut)
      .concat((l.gaps || []).map((g) => ({ start: Date.parse(g.start), end: Date.parse(g.end), reason: g.reason })));
    // `events` is newer than the rest of the listing: absent means none.
    for (const e of l.events || []) {
      const ms = Date.parse(e.time);
      if (Number.isFinite(ms)) d.events.set(e.clip || String(ms), { ms, clip: e.clip, url: e.url, source: e.source });
    }
    d.truncated = Boolean(l.truncated);
    d.runs = [];
    d.bytes = 0;
    d.covered = 0;
    for (const start of [...d.segs.keys()].sort((a, b) => a - b)) {
      const { end, bytes } = d.segs.get(start);
      d.bytes += bytes;
      d.covered += Math.max(0, Math.min(end, to) - Math.max(start, from));
      const last = d.runs[d.runs.length - 1];
      if (last && start - last.end <= MERGE_MS) last.end = Math.max(last.end, end);
      else d.runs.push({ start, end });
    }
  };
  /** Where a refresh starts: the newest segment's start (it may have grown since), else the day's start. */
  d.tail = () => { let t = from; for (const k of d.segs.keys()) t = Math.max(t, k); return t; };
  /** Recorded ms within [a, b). */
  d.recordedIn = (a, b) => d.runs.reduce((n, r) => n + Math.max(0, Math.min(r.end, b) - Math.max(r.start, a)), 0);
  return d;
}

/**
 * Where a tap at `ms` (on a timeline of `msPerPx`) plays from: there when recorded, the nearest
 * stretch when it is a few pixels away (a finger on a day's timeline), else the next recording.
 */
function resolvePick(rec, ms, msPerPx) {
  if (!rec.runs.length) return { note: 'Nothing recorded on this day.' };
  let best = null;
  let bestD = Infinity;
  for (const r of rec.runs) {
    const dist = ms < r.start ? r.start - ms : ms >= r.end ? ms - r.end : 0;
    if (dist < bestD) { best = r; bestD = dist; }
  }
  // Just past a stretch's end: its last 10 s.
  if (bestD <= 8 * msPerPx) return { at: ms < best.start ? best.start : ms < best.end ? ms : Math.max(best.start, best.end - 10000) };
  const gap = rec.gaps.find((g) => g.start <= ms && ms < g.end);
  const why = `Nothing recorded at ${hms(ms)}${gap?.reason ? ` (${gap.reason})` : ''}`;
  const next = rec.runs.find((r) => r.start > ms);
  if (next) return { at: next.start, note: `${why}: playing from ${hms(next.start)}, the next recording.` };
  const last = rec.runs[rec.runs.length - 1];
  return { at: Math.max(last.start, last.end - 10000), note: `${why}: playing the last seconds recorded before it.` };
}

export async function pageRecordings(view, params) {
  const shown = stillShown();
  const cams = await api('/api/cameras');
  if (!shown()) return;
  if (!cams.length) { view.append(h('p', { class: 'muted center' }, 'No cameras configured.')); return; }
  const today = localDay(Date.now());
  const askedDay = params.get('day') || '';
  const cam = cams.some((c) => c.id === params.get('camera')) ? params.get('camera')
    : (cams.find((c) => c.continuous) || cams[0]).id;
  const day = /^\d{4}-\d\d-\d\d$/.test(askedDay) && askedDay <= today ? askedDay : today;
  const go = (c, d) => { location.hash = `#/recordings?camera=${enc(c)}&day=${d}`; };
  const [from, to] = dayBounds(day);
  const rec = dayRecord(from, to);
  const st = { zoom: 'day', focus: null, playing: null, playedOnFrom: 0 };

  // ---- camera and day
  const camSel = h('select', { name: 'camera', onchange: () => go(camSel.value, day) },
    cams.map((c) => h('option', { value: c.id }, c.id)));
  camSel.value = cam;
  const dayIn = h('input', { type: 'date', name: 'day', max: today, value: day, onchange: () => dayIn.value && go(cam, dayIn.value) });
  const shiftDay = (n) => {
    const [y, m, dd] = day.split('-').map(Number);
    const d = localDay(new Date(y, m - 1, dd + n).getTime());
    if (d <= today) go(cam, d);
  };

  // ---- timeline
  const summary = h('div', { id: 'rec-summary', class: 'muted' }, 'Loading…');
  const note = h('div', { id: 'rec-note', class: 'muted note' });
  const tl = timeline({ onPick: (ms, msPerPx) => pick(ms, msPerPx), onEvent: (e) => showEvent(e) });
  const zoomBtns = ZOOMS.map(([z, label]) => h('button', { class: 'small', dataset: { zoom: z }, onclick: () => setZoom(z) }, label));
  const prevBtn = h('button', { class: 'small', 'aria-label': 'earlier', onclick: () => pan(-1) }, '‹');
  const nextBtn = h('button', { class: 'small', 'aria-label': 'later', onclick: () => pan(1) }, '›');

  // ---- player
  const video = h('video', { id: 'rec-video', controls: '', playsinline: '', preload: 'none' });
  const clock = h('span', { id: 'rec-clock' }, '–');
  const status = h('span', { id: 'rec-status', class: 'muted' }, 'Tap the timeline to play from that moment.');
  const playerBox = h('div', { class: 'preview-box', hidden: true }, video);
  const player = vodPlayer(video, {
    onTime: (ms) => showTime(ms),
    onEnded: () => playOn(),
    onError: (text) => { status.textContent = `Playback failed: ${text}`; status.className = 'error'; },
  });
  onLeave(() => { clearTimeout(st.waitTimer); player.stop(); });

  // ---- export / delete
  const fromIn = h('input', { type: 'time', step: '1', name: 'from' });
  const lenSel = h('select', { name: 'length' }, LENGTHS.map(([s, t]) => h('option', { value: String(s) }, t)));
  lenSel.value = '60';
  const link = h('a', { class: 'button small', id: 'rec-export' }, '⬇ Download MP4');
  const playBtn = h('button', { class: 'small', id: 'rec-play-from', onclick: () => {
    const r = range();
    const at = r && resolvePick(rec, r[0], 1000);
    note.textContent = at?.note || '';
    if (at?.at !== undefined) playFrom(at.at);
  } }, '▶ Play');
  const delBtn = h('button', { class: 'small danger', id: 'rec-delete' }, 'Delete range…');
  const exportMsg = h('div', { id: 'rec-export-msg', class: 'muted note' });

  view.append(
    h('form', { class: 'card filters', id: 'rec-pick', onsubmit: (e) => e.preventDefault() },
      h('label', {}, 'Camera', camSel), h('label', {}, 'Day', dayIn)),
    h('section', { class: 'card', id: 'rec-timeline' },
      summary,
      h('div', { class: 'row between' }, prevBtn, h('span', { class: 'seg' }, zoomBtns), nextBtn),
      tl.el, note),
    h('section', { class: 'card', id: 'rec-player' }, playerBox, h('div', { class: 'row between' }, clock, status)),
    h('section', { class: 'card', id: 'rec-export-card' },
      h('h2', {}, 'Export'),
      h('div', { class: 'filters' }, h('label', {}, 'From', fromIn), h('label', {}, 'Length', lenSel)),
      h('div', { class: 'row', style: 'margin-top:.5rem' }, link, playBtn, delBtn),
      exportMsg));

  /** The window shown: the day, or an hour / five minutes around the focus. */
  function windowOf() {
    const span = ZOOMS.find(([z]) => z === st.zoom)[2];
    if (!span) return { from, to };
    const focus = st.focus ?? rec.runs[rec.runs.length - 1]?.end ?? Math.min(Date.now(), to);
    const a = clamp(focus - span / 2, from, to - span);
    return { from: a, to: a + span };
  }

  function draw() {
    const now = Date.now();
    const w = windowOf();
    tl.draw({ ...w, runs: rec.runs, gaps: rec.gaps, events: [...rec.events.values()], now });
    tl.setPlayhead(st.playing);
    for (const b of zoomBtns) b.classList.toggle('active', b.dataset.zoom === st.zoom);
    prevBtn.disabled = st.zoom === 'day' ? false : w.from <= from;
    nextBtn.disabled = st.zoom === 'day' ? day >= today : w.to >= to;
    const gaps = rec.gaps.filter((g) => g.start < now && !isOpenGap(g, now)).length;
    summary.textContent = !rec.runs.length
      ? 'Nothing recorded on this day. A camera records around the clock with continuous = { enabled = true } in its [[camera]] table.'
      : `${fmtDuration(rec.covered / 1000)} recorded · ${fmtBytes(rec.bytes)}${gaps ? ` · ${gaps} gap${gaps > 1 ? 's' : ''}` : ''}`
        + (rec.truncated ? ' · too many segments: the first ones only' : '');
  }

  function setZoom(z) {
    st.zoom = z;
    st.focus = st.playing ?? st.focus;
    draw();
  }

  function pan(dir) {
    if (st.zoom === 'day') { shiftDay(dir); return; }
    const w = windowOf();
    st.focus = (w.from + w.to) / 2 + dir * (w.to - w.from);
    draw();
  }

  function showTime(ms) {
    st.playing = ms;
    clock.textContent = hms(ms);
    clock.dataset.ms = String(Math.round(ms));
    const w = windowOf();
    if (st.zoom !== 'day' && (ms < w.from || ms > w.to)) { st.focus = ms; draw(); } else tl.setPlayhead(ms);
  }

  function pick(ms, msPerPx) {
    const r = resolvePick(rec, ms, msPerPx);
    note.textContent = r.note || '';
    if (r.at !== undefined) playFrom(r.at);
  }

  /** Plays from wall time `ms` (`on`: a continuation at a playlist's end, not a tap). */
  async function playFrom(ms, { on = false } = {}) {
    clearTimeout(st.waitTimer);
    if (!on) st.playedOnFrom = 0;
    st.focus = ms;
    setExportFrom(ms);
    playerBox.hidden = false;
    video.dataset.target = String(Math.round(ms));
    status.textContent = `Loading ${hms(ms)}…`;
    status.className = 'muted';
    draw();
    try {
      await player.playAt(playlistUrl(cam, ms), ms);
      if (shown() && status.className !== 'error') status.textContent = '';
    } catch (e) {
      if (e?.name === 'AbortError' || !shown()) return;
      status.textContent = `Cannot play ${hms(ms)}: ${e?.message ?? e}`;
      status.className = 'error';
    }
  }

  /**
   * At the end of a playlist, on with what was recorded after it: the rest of this hour (its
   * playlist has grown since it was loaded) or the next recorded hour of the day. At the newest
   * recording of today, it waits for the next segment (asking every 2 s, for up to 5 min).
   */
  async function playOn(waitingSince = Date.now()) {
    const end = player.loadedUntil();
    // Only forward from where the last continuation started (never a loop of tiny seeks).
    if (end === null || end <= st.playedOnFrom + 500) return;
    const after = () => rec.runs.find((r) => r.end > end + 500 && r.start < to);
    if (!after() && to > Date.now()) await fetchFrom(rec.tail()).catch(() => {});
    if (!shown() || !video.ended || player.loadedUntil() !== end) return;
    const next = after();
    if (!next) {
      if (to > Date.now() && Date.now() - waitingSince < 300e3) {
        status.textContent = 'Waiting for the next recorded segment…';
        clearTimeout(st.waitTimer);
        st.waitTimer = setTimeout(() => playOn(waitingSince), 2000);
      }
      return;
    }
    st.playedOnFrom = Math.max(next.start, end);
    playFrom(st.playedOnFrom, { on: true });
  }

  function showEvent(e) {
    const clipHref = `#/clips?camera=${enc(cam)}&since=${day}&until=${day}${e.clip ? `&clip=${enc(e.clip)}` : ''}`;
    note.replaceChildren(`${e.source || 'Event'} at ${hms(e.ms)} `,
      h('button', { class: 'small', onclick: () => { const r = resolvePick(rec, e.ms - 5000, 1000); if (r.at !== undefined) playFrom(r.at); } }, 'Play'),
      ' ', e.clip ? h('a', { class: 'button small', href: clipHref }, 'Open clip') : '');
  }

  // ---- export / delete
  function range() {
    const v = fromIn.value;
    if (!v) return null;
    const a = new Date(`${day}T${v.length === 5 ? `${v}:00` : v}`).getTime();
    return Number.isFinite(a) ? [a, a + Number(lenSel.value) * 1000] : null;
  }
  const rangeQuery = (r) => `from=${enc(iso(r[0]))}&to=${enc(iso(r[1]))}`;
  function updateExport() {
    const r = range();
    delete link.dataset.checked;
    exportMsg.className = 'muted note';
    delBtn.disabled = playBtn.disabled = !r;
    if (!r) {
      link.removeAttribute('href');
      exportMsg.textContent = 'Pick a start time, or tap the timeline.';
      return;
    }
    link.href = `/api/cameras/${enc(cam)}/recordings/export.mp4?${rangeQuery(r)}`;
    link.download = `${cam}-${day}-${fromIn.value.replace(/:/g, '')}.mp4`;
    const got = rec.recordedIn(r[0], r[1]) / 1000;
    exportMsg.textContent = `${hms(r[0])} – ${hms(r[1])}: ${got ? `${fmtDuration(got)} recorded` : 'nothing recorded'}`;
  }
  function setExportFrom(ms) {
    if (ms < from || ms >= to) return;
    fromIn.value = hms(ms);
    updateExport();
  }
  fromIn.addEventListener('input', updateExport);
  lenSel.addEventListener('change', updateExport);
  // The server refuses a bad range with a JSON error a download would hide: ask first, then let
  // the browser download (the first answer is dropped as soon as its status is known).
  link.addEventListener('click', async (e) => {
    if (!link.getAttribute('href')) { e.preventDefault(); return; }
    if (link.dataset.checked === link.href) { delete link.dataset.checked; return; }
    e.preventDefault();
    const ctl = new AbortController();
    exportMsg.textContent = 'Preparing the export…';
    try {
      const r = await fetch(link.href, { credentials: 'same-origin', signal: ctl.signal });
      if (r.status === 401) { toLogin(); return; }
      if (!r.ok) {
        exportMsg.textContent = `Export failed: ${await errorText(r)}`;
        exportMsg.className = 'error note';
        return;
      }
      ctl.abort();
      link.dataset.checked = link.href;
      link.click();
      exportMsg.textContent = 'Download started.';
    } catch (err) {
      exportMsg.textContent = `Export failed: ${err?.message ?? err}`;
      exportMsg.className = 'error note';
    }
  });
  delBtn.addEventListener('click', async () => {
    const r = range();
    if (!r || !confirm(`Delete ${cam}'s recording from ${hms(r[0])} to ${hms(r[1])} on ${day}? This cannot be undone.`)) return;
    try {
      const res = await api(`/api/cameras/${enc(cam)}/recordings?${rangeQuery(r)}`, { method: 'DELETE' });
      toast(`Deleted ${res?.removed ?? 0} segment(s), ${fmtBytes(res?.bytes ?? 0)}`);
      if (st.playing !== null && st.playing >= r[0] && st.playing < r[1]) player.stop();
      const l = await api(`/api/cameras/${enc(cam)}/recordings?from=${enc(iso(from))}&to=${enc(iso(to))}`);
      if (!shown()) return;
      rec.absorb(l, from);
      draw();
      updateExport();
    } catch (e) {
      if (e.status !== 401) toast(`Delete failed: ${e.message}`, { error: true });
    }
  });
  updateExport();

  // ---- load, then keep today's tail fresh
  const fetchFrom = async (cut) => {
    const l = await api(`/api/cameras/${enc(cam)}/recordings?from=${enc(iso(cut))}&to=${enc(iso(to))}`);
    if (!shown()) return;
    rec.absorb(l, cut);
    draw();
  };
  draw();
  await fetchFrom(from);
  if (shown() && to > Date.now()) every(10000, () => fetchFrom(rec.tail()), { now: false });
}
