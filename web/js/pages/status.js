// Status page (#/status): alerts, the box (CPU, memory, temperature, throttling, with 10-minute
// sparklines), health, storage, cameras, phone clients and sessions; refreshed every 5 s and at
// once when the server announces an alert. Readable at 390 px: no table wider than the screen.

import { h, fmtBytes, fmtAgo } from '../dom.js';
import { api, apiOptional } from '../api.js';
import { stillShown, every } from '../router.js';
import { onServerEvent } from '../events.js';

function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(Boolean).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

/** A sparkline (inline SVG) of `values` (nulls are gaps), labelled with the last value. */
function spark(values, { max, unit, id }) {
  const pts = values.map((v, i) => [i, v]).filter(([, v]) => Number.isFinite(v));
  const last = pts.length ? pts[pts.length - 1][1] : null;
  const top = Math.max(max ?? 0, ...pts.map(([, v]) => v), 1);
  const w = 120, hgt = 24, n = Math.max(values.length - 1, 1);
  const line = pts.map(([i, v]) => `${(i / n * w).toFixed(1)},${(hgt - v / top * hgt).toFixed(1)}`).join(' ');
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${hgt}`);
  svg.setAttribute('class', 'spark');
  svg.setAttribute('aria-hidden', 'true');
  const pl = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
  pl.setAttribute('points', line);
  svg.append(pl);
  return h('span', { class: 'spark-box', id }, svg, h('span', {}, last === null ? '–' : `${last.toFixed(1)} ${unit}`));
}

function fmtUptime(s) {
  if (!Number.isFinite(s)) return '–';
  const d = Math.floor(s / 86400), hr = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return d ? `${d} d ${hr} h` : hr ? `${hr} h ${m} min` : `${m} min`;
}

function alertLine(a) {
  const what = a.camera ? `${a.kind} (${a.camera})` : a.kind;
  return h('li', { class: 'alert-line', 'data-key': a.camera ? `${a.kind}/${a.camera}` : a.kind },
    h('b', {}, what), ' — ', a.message, h('span', { class: 'muted' }, ` since ${fmtAgo(a.changed_at)}`));
}

function table(headers, rows) {
  return h('div', { class: 'scroll-x' }, h('table', {},
    h('tr', {}, headers.map((x) => h('th', {}, x))),
    rows.map((r) => h('tr', {}, r.map((x) => h('td', {}, x))))));
}

export async function pageStatus(view) {
  const shown = stillShown();
  const alerts = h('section', { class: 'card', id: 'status-alerts' }, h('h2', {}, 'Alerts'));
  const system = h('section', { class: 'card', id: 'status-system' }, h('h2', {}, 'System'));
  const health = h('section', { class: 'card', id: 'status-health' }, h('h2', {}, 'Health'));
  const storage = h('section', { class: 'card', id: 'status-storage' }, h('h2', {}, 'Storage'));
  const cams = h('section', { class: 'card', id: 'status-cameras' }, h('h2', {}, 'Cameras'));
  const clients = h('section', { class: 'card', id: 'status-clients' }, h('h2', {}, 'Phone cameras (browser clients)'));
  const sessions = h('section', { class: 'card', id: 'status-sessions' }, h('h2', {}, 'Logged-in sessions'));
  view.append(alerts, system, health, storage, cams, clients, sessions);
  const fill = (el, ...content) => el.replaceChildren(el.firstChild, ...content);
  const refresh = async () => {
    const [sy, hl, st, cl, cli, ses] = await Promise.all([
      api('/api/health/system').catch((e) => ({ error: e.message })),
      api('/api/health').catch((e) => ({ error: e.message })),
      api('/api/storage').catch((e) => ({ error: e.message })),
      api('/api/cameras').catch((e) => ({ error: e.message })),
      apiOptional('/api/clients', null).catch((e) => ({ error: e.message })),
      apiOptional('/api/sessions', null).catch((e) => ({ error: e.message })),
    ]);
    if (!shown()) return;
    const raised = (sy.alerts || []).filter((a) => a.active);
    fill(alerts, sy.error ? h('p', { class: 'error' }, sy.error)
      : !raised.length ? h('p', { class: 'muted', id: 'alerts-none' }, 'None.')
      : h('ul', { class: 'alerts', id: 'alerts-list' }, raised.map(alertLine)));
    alerts.classList.toggle('raised', raised.length > 0);
    const hist = sy.history || [];
    const mem = sy.memory || {};
    const th = sy.throttled;
    fill(system, sy.error ? h('p', { class: 'error' }, sy.error) : kv([
      ['CPU', spark(hist.map((p) => p.cpu_percent), { max: 100, unit: '%', id: 'spark-cpu' })],
      ['daemon CPU', Number.isFinite(sy.daemon_cpu_percent) ? `${sy.daemon_cpu_percent.toFixed(1)} % of ${sy.cpus} cores` : '–'],
      ['temperature', sy.temperature_c === null || sy.temperature_c === undefined
        ? h('span', { class: 'muted', id: 'temp-none' }, 'no sensor on this board')
        : spark(hist.map((p) => p.temperature_c), { max: 90, unit: '°C', id: 'spark-temp' })],
      ['throttling', th ? (th.raw ? `0x${th.raw.toString(16)}${th.under_voltage ? ' under-voltage' : ''}${th.throttled ? ' throttled' : ''}${th.freq_capped ? ' capped' : ''}${th.soft_temp_limit ? ' soft limit' : ''}${th.occurred_since_boot ? ' (has happened since boot)' : ''}` : 'none')
        : h('span', { class: 'muted' }, 'not a Raspberry Pi')],
      ['memory', `${fmtBytes(mem.available_bytes)} free of ${fmtBytes(mem.total_bytes)} · daemon ${fmtBytes(mem.rss_bytes)}`],
      ['load', sy.load ? sy.load.map((x) => x.toFixed(2)).join(' ') : '–'],
      ['disk errors', sy.disk_errors ?? h('span', { class: 'muted' }, 'not counted (not ext4)')],
      ['up', fmtUptime(sy.uptime_s)],
    ]));
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
    const perCam = new Map((sy.cameras || []).map((c) => [c.id, c]));
    const fps = (x) => (Number.isFinite(x) ? x.toFixed(1) : '–');
    fill(cams, cl.error ? h('p', { class: 'error' }, cl.error) : h('ul', { class: 'cam-lines' }, cl.map((c) => {
      const m = perCam.get(c.id) || {};
      return h('li', {}, h('b', {}, c.id), ' ', h('span', { class: `state ${c.state}` }, c.state),
        h('span', { class: 'muted' }, ` · ${fps(m.fps_in)} → ${fps(m.fps_out)} fps · ${c.frames_captured ?? '–'} frames · `
          + `${c.frames_dropped ?? '–'} dropped${Number.isFinite(m.dropped_per_min) ? ` (${m.dropped_per_min.toFixed(0)}/min)` : ''} · `
          + `${c.buffered_s !== undefined ? `${Number(c.buffered_s).toFixed(1)} s` : '–'} pre-roll · ${c.viewers ?? 0} viewers`
          + `${Number.isFinite(m.encode_latency_ms) ? ` · encoder ${m.encode_latency_ms.toFixed(0)} ms` : ''}`));
    })));
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
  if (shown()) {
    every(5000, refresh, { now: false });
    onServerEvent((type) => { if (type === 'alert') refresh(); });
  }
}
