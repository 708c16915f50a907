// Server-sent events (/api/events): the one EventSource of the app and the page subscriptions
// to it (onServerEvent, dropped when the page is left unless {page: false}).

import { onLeave } from './router.js';

/**
 * Server-sent events (`/api/events`): `clip` when a clip is saved, `recording` when a camera
 * starts/stops writing one, `export` when a clip's export ends, `alert` when an alert of the box or
 * a camera is raised or cleared. One EventSource for the whole app (it reconnects by itself);
 * pages subscribe with `onServerEvent` and are unsubscribed when they are left.
 */
const serverEvents = new Set();
export function startServerEvents() {
  if (!('EventSource' in window)) return;
  const es = new EventSource('/api/events');
  for (const type of ['clip', 'recording', 'clip_failed', 'export', 'alert']) {
    es.addEventListener(type, (m) => {
      let data;
      try { data = JSON.parse(m.data); } catch { return; }
      for (const fn of [...serverEvents]) fn(type, data);
    });
  }
}
export function onServerEvent(fn, { page = true } = {}) {
  serverEvents.add(fn);
  const off = () => serverEvents.delete(fn);
  if (page) onLeave(off);
  return off;
}
