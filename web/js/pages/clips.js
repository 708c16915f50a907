// Clips page (#/clips): filters kept in the hash, paged list with infinite scroll, clips saved
// meanwhile prepended from server events; clipCard() (thumbnail → player, pin, download,
// delete) is also used by the Devices page.

import { h, enc, toast, fmtBytes, fmtTime } from '../dom.js';
import { api, apiOptional } from '../api.js';
import { stillShown, onLeave } from '../router.js';
import { onServerEvent } from '../events.js';

function dayStart(d) { return d ? new Date(`${d}T00:00:00`).toISOString() : ''; }
function dayEnd(d) { return d ? new Date(`${d}T23:59:59.999`).toISOString() : ''; }

/** A clip's export ([export] in the config) as a badge: state, progress, the error on hover. */
const EXPORT_LABEL = {
  pending: 'export queued', uploading: 'exporting', retrying: 'export retrying',
  auth_error: 'export refused', done: 'exported', failed: 'export failed',
};
function exportBadge(x) {
  if (!x || !EXPORT_LABEL[x.state]) return null;
  const pct = x.bytes_total && x.state !== 'done' && x.bytes_done ? ` ${Math.floor(100 * x.bytes_done / x.bytes_total)} %` : '';
  return h('span', { class: `badge export ${x.state}`, title: x.error || x.key || '', dataset: { export: x.state } },
    `${EXPORT_LABEL[x.state]}${pct}`);
}

/** One clip as a card: thumbnail (lazy) → inline player, badges, download, pin, delete. */
export function clipCard(c, { onDeleted } = {}) {
  const id = c.id;
  const video = `/api/clips/${enc(id)}/video.mp4`;
  const badges = h('span', { class: 'badges' });
  const setBadges = () => {
    badges.replaceChildren(...[
      c.pinned ? h('span', { class: 'badge pinned' }, 'pinned') : null,
      c.partial ? h('span', { class: 'badge partial', title: 'recovered after a crash' }, 'partial') : null,
      c.source ? h('span', { class: `badge ${c.source}` }, c.source) : null,
      c.device ? h('span', { class: 'badge' }, c.device) : null,
      exportBadge(c.export),
    ].filter(Boolean));
    exportBtn.hidden = !['failed', 'auth_error'].includes(c.export?.state);
  };
  const exportBtn = h('button', { class: 'small', hidden: true, onclick: async () => {
    try {
      c.export = await api(`/api/clips/${enc(id)}/export`, { method: 'POST' });
      setBadges();
    } catch (e) { toast(e.message, { error: true }); }
  } }, 'Export again');
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
      exportBtn,
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
  // The end of its export, from the server's `export` event.
  card.exported = (ev) => {
    c.export = { ...(c.export || {}), state: ev.event_type === 'export_done' ? 'done' : 'failed',
      error: ev.error, bytes_done: ev.bytes, bytes_total: ev.bytes };
    setBadges();
  };
  return card;
}

export async function pageClips(view, params) {
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
    if (type === 'export') list.querySelector(`[data-clip="${CSS.escape(c.clip_id)}"]`)?.exported?.(c);
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
