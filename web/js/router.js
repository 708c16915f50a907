// Hash routing and the page lifecycle: route() renders the page named by the hash (#/live,
// #/clips, ...) into <main id=view>; a page registers its timers (every(), never faster than
// every 2 s, skipped while the tab is hidden), cleanups (onLeave) and visibility hooks
// (onVisibility), all dropped when it is left; stillShown() tells a late async continuation
// whether its render is still the one shown.

import { h } from './dom.js';

let pageTimers = [];
let pageCleanups = [];
let visibilityHooks = [];
/** Bumped on every route change, also to the same page (a hash change while its first render awaits). */
let pageGen = 0;

/**
 * A check that stays true while the render that called it is the one shown. A page's async
 * continuation tests it before touching the DOM, attaching media or registering timers, so a
 * render left mid-await cannot leave an orphan live preview (an MJPEG viewer nobody detaches).
 */
export function stillShown() {
  const g = pageGen;
  return () => g === pageGen;
}

/** Runs `fn` (at once unless `now` is false, then) every `ms` (≥ 2000 ms) while the page is shown and the tab visible. */
export function every(ms, fn, { now = true } = {}) {
  ms = Math.max(ms, 2000);
  let busy = false;
  const tick = async () => {
    if (document.hidden || busy) return;
    busy = true;
    try { await fn(); } catch (e) { if (e?.status !== 401) console.warn(e); } finally { busy = false; }
  };
  if (now) tick();
  pageTimers.push(setInterval(tick, ms));
}

/** Called with `hidden` (boolean) when the tab's visibility changes, while this page is shown. */
export function onVisibility(fn) {
  visibilityHooks.push(fn);
}

export function onLeave(fn) {
  pageCleanups.push(fn);
}

document.addEventListener('visibilitychange', () => {
  for (const f of visibilityHooks) f(document.hidden);
});

function leavePage() {
  for (const t of pageTimers) clearInterval(t);
  for (const f of pageCleanups) { try { f(); } catch (e) { console.warn(e); } }
  pageTimers = [];
  pageCleanups = [];
  visibilityHooks = [];
  pageGen += 1;
}

/** The pages by hash name ({title, render}); set once by the entry module before the first route(). */
let PAGES = {};

/** Sets the page table (called by the entry module). */
export function setPages(pages) {
  PAGES = pages;
}

/** `#/clips?camera=x` → {page: 'clips', params: URLSearchParams}. */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [name, query = ''] = raw.split('?');
  return { page: PAGES[name] ? name : 'live', params: new URLSearchParams(query) };
}

let currentPage = null;

export function route() {
  const { page, params } = parseHash();
  leavePage();
  currentPage = page;
  document.getElementById('page-title').textContent = PAGES[page].title;
  document.title = `${PAGES[page].title} · hindsight`;
  for (const a of document.querySelectorAll('nav.tabs a')) a.classList.toggle('active', a.dataset.page === page);
  const view = document.getElementById('view');
  view.replaceChildren();
  view.dataset.page = page;
  Promise.resolve(PAGES[page].render(view, params)).catch((e) => {
    if (e?.status === 401) return;
    view.append(h('div', { class: 'card error' }, `Could not load: ${e?.message ?? e}`));
  });
}
