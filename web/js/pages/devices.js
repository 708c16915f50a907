// Devices page (#/devices): who uploaded (rename, delete their uploads, show them) and a search
// over uploaded clips.

import { h, enc, toast, fmtBytes, fmtAgo } from '../dom.js';
import { api, apiOptional } from '../api.js';
import { onLeave } from '../router.js';
import { clipCard } from './clips.js';

export async function pageDevices(view) {
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
