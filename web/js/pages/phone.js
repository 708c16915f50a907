// Phone camera page (#/phone): starts /phone.js (getUserMedia → MediaRecorder → WebSocket) under
// a camera id; the running session survives page changes.

import { LS, h, toast, randomSuffix } from '../dom.js';
import { onLeave } from '../router.js';
import { trigger } from './live.js';

/** The running phone camera survives page changes (it keeps streaming while you look at Live). */
const phone = { session: null, id: null, status: null, video: null, listeners: new Set() };

function phoneVideo() {
  if (!phone.video) phone.video = h('video', { id: 'phone-video', muted: '', autoplay: '', playsinline: '' });
  return phone.video;
}

export async function pagePhone(view) {
  let id = localStorage.getItem(LS.phoneId);
  if (!id || !/^[a-z0-9_-]{1,32}$/.test(id)) {
    id = `phone-${randomSuffix()}`;
    localStorage.setItem(LS.phoneId, id);
  }
  const idIn = h('input', { id: 'phone-id', value: phone.id || id, pattern: '[a-z0-9_-]{1,32}', maxlength: '32',
    autocomplete: 'off', autocapitalize: 'none', spellcheck: false });
  const micIn = h('input', { type: 'checkbox', id: 'phone-mic' });
  micIn.checked = localStorage.getItem(LS.phoneMic) !== 'off';
  micIn.addEventListener('change', () => localStorage.setItem(LS.phoneMic, micIn.checked ? 'on' : 'off'));
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
    micIn.disabled = on;
    saveBtn.disabled = !on;
    const s = phone.status;
    statusEl.classList.toggle('error', !!s?.error);
    statusEl.textContent = !s ? (on ? 'Connecting…' : 'Not streaming.')
      : s.error ? `Error: ${s.error}`
      : `Camera ${s.camera ?? phone.id}: ${s.state ?? '…'}${s.frames !== undefined ? ` · ${s.frames} frames received` : ''}`
        + (phone.session ? (phone.session.sound ? ' · with sound' : ` · no sound${phone.session.soundOff ? ` (${phone.session.soundOff})` : ''}`) : '');
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
        id: want, video: phoneVideo(), sound: micIn.checked,
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
    h('label', { class: 'check' }, micIn, 'Microphone (sound in clips and live view)'),
    h('div', { class: 'row' }, startBtn, stopBtn),
    phoneVideo(),
    statusEl, saveBtn, result));
  if (phone.video?.srcObject && phone.video.paused) phone.video.play().catch(() => {});
  render();
}
