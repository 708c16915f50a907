// DOM and formatting helpers shared by every page: h() (element builder), toast(), the byte and
// time formatters, sleep(), randomSuffix(), and the app's localStorage keys (LS).

export const LS = {
  device: 'hindsight.device',
  phoneId: 'hindsight.phoneId',
  phoneMic: 'hindsight.phoneMic',
  chunk: 'hindsight.chunkBytes',
  preview: 'hindsight.preview',
  tusPrefix: 'hindsight.tus::',
};

/** Creates an element: h('div', {class: 'x', onclick: fn}, child, 'text', ...). */
export function h(tag, attrs = {}, ...children) {
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

export const enc = encodeURIComponent;

export function toast(msg, { error = false, ms = 4000, link } = {}) {
  const box = document.getElementById('toasts');
  const t = h('div', { class: 'toast' + (error ? ' err' : '') }, msg);
  if (link) t.append(' ', h('a', { href: link.href }, link.text));
  box.append(t);
  setTimeout(() => t.remove(), ms);
  return t;
}

export function fmtBytes(n) {
  if (n === null || n === undefined || !Number.isFinite(Number(n))) return '–';
  n = Number(n);
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(n >= 100 || i === 0 ? 0 : 1)} ${u[i]}`;
}

export function fmtTime(s) {
  if (!s) return '–';
  const d = typeof s === 'number' ? new Date(s) : new Date(s);
  if (Number.isNaN(d.getTime())) return String(s);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

export function fmtAgo(s) {
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

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function randomSuffix(n = 4) {
  const a = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const b = crypto.getRandomValues(new Uint8Array(n));
  return Array.from(b, (x) => a[x % a.length]).join('');
}
