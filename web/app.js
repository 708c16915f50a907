// hindsight web app: native ES modules, no framework, no build step, nothing from the internet.
// This entry module owns the page table, the header (session user, log out) and start-up.
//
// Layout: js/dom.js (h(), toast, formatting, localStorage keys), js/api.js (fetch wrapper:
// 401 → /login?next=<hash>, errors with the JSON `error` text), js/router.js (hash routing
// #/live, #/clips, #/recordings, #/upload, #/phone, #/status, #/devices; page lifecycle, every()
// timers), js/events.js (server-sent events), js/tus.js (resumable upload client),
// js/timeline.js and js/vodplayer.js (the Recordings page's timeline and player; hls.js itself,
// /vendor/hls.light.min.js, is loaded only when that player needs it), js/pages/*.js (one
// module per page; each page renders into <main id=view> and registers its own cleanups).
// Live previews are detached while the tab is hidden (the MJPEG connection closes) and
// re-attached when it shows again.

import { toast } from './js/dom.js';
import { api } from './js/api.js';
import { route, setPages } from './js/router.js';
import { startServerEvents } from './js/events.js';
import { pageLive } from './js/pages/live.js';
import { pageClips } from './js/pages/clips.js';
import { pageRecordings } from './js/pages/recordings.js';
import { pageUpload } from './js/pages/upload.js';
import { pagePhone } from './js/pages/phone.js';
import { pageStatus } from './js/pages/status.js';
import { pageDevices } from './js/pages/devices.js';

setPages({
  live: { title: 'Live', render: pageLive },
  clips: { title: 'Clips', render: pageClips },
  recordings: { title: 'Recordings', render: pageRecordings },
  upload: { title: 'Upload', render: pageUpload },
  phone: { title: 'Phone camera', render: pagePhone },
  status: { title: 'Status', render: pageStatus },
  devices: { title: 'Devices', render: pageDevices },
});

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

// ---------------------------------------------------------------- start

window.addEventListener('hashchange', route);
initSession();
startServerEvents();
route();
