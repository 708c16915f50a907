// Status page (#/status): health, storage, cameras, phone clients and sessions, refreshed every 5 s.

import { h, fmtBytes, fmtAgo } from '../dom.js';
import { api, apiOptional } from '../api.js';
import { stillShown, every } from '../router.js';

function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(Boolean).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function table(headers, rows) {
  return h('div', { class: 'scroll-x' }, h('table', {},
    h('tr', {}, headers.map((x) => h('th', {}, x))),
    rows.map((r) => h('tr', {}, r.map((x) => h('td', {}, x))))));
}

export async function pageStatus(view) {
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
