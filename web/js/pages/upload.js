// Upload page (#/upload): pick or record a video, upload it with the tus client (progress,
// cancel, resume after a reload), wait for the clip, list recent uploads.

import { LS, h, enc, toast, fmtBytes } from '../dom.js';
import { apiOptional } from '../api.js';
import { tusUpload, waitProcessed } from '../tus.js';

let uploadBusy = false;

export async function pageUpload(view) {
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
