// The Recordings page's timeline: a window of one day (or an hour, or five minutes of it) with
// the recorded stretches as bars, the gaps (their reason as a tooltip), event marks in a lane
// above (tap → onEvent), a playhead, and a time axis in the browser's local time. A tap on the
// track gives the wall-clock moment under the finger (onPick). Positions are percentages, so
// the timeline is as wide as its card and never overflows a phone screen.

import { h } from './dom.js';

/** A segment lasts at most 10 min: a stretch up to now shorter than this may be one being written. */
const OPEN_MS = 11 * 60e3;

/** Whether gap `g` is the last minutes up to now, with no reason: perhaps a segment still being written. */
export const isOpenGap = (g, now) => g.end >= now && !g.reason && now - g.start < OPEN_MS;

const pad = (n) => String(n).padStart(2, '0');

/** 14:03:22 (local, 24 h). */
export function hms(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** 14:03 (local, 24 h). */
export function hm(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** The local day of `ms` as YYYY-MM-DD. */
export function localDay(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** [start, end) of a local day YYYY-MM-DD, in ms (23 or 25 h on a daylight-saving change). */
export function dayBounds(day) {
  const [y, m, d] = day.split('-').map(Number);
  return [new Date(y, m - 1, d).getTime(), new Date(y, m - 1, d + 1).getTime()];
}

/** Axis steps (minutes between labels, between ticks) for a window of `span` ms. */
function steps(span) {
  if (span > 6 * 3600e3) return [360, 60];
  if (span > 40 * 60e3) return [10, 5];
  return [1, 0.5];
}

/** Local times from `from` to `to` on multiples of `min` minutes of the local day. */
function marksEvery(from, to, min) {
  const out = [];
  const d = new Date(from);
  const dayStart = new Date(d.getFullYear(), d.getMonth(), d.getDate());
  const first = Math.ceil(((from - dayStart.getTime()) / 60e3 - 1e-6) / min);
  for (let k = first; out.length < 200; k++) {
    const t = new Date(dayStart.getFullYear(), dayStart.getMonth(), dayStart.getDate(), 0, 0, k * min * 60).getTime();
    if (t > to) break;
    if (t >= from) out.push(t);
  }
  return out;
}

/**
 * A timeline element. draw({from, to, runs, gaps, events, now}) paints the window [from, to)
 * (runs: [{start, end}] in ms, merged; gaps: [{start, end, reason}] in ms, drawn up to `now`;
 * events: [{ms, clip, source}]); setPlayhead(ms | null) moves the playhead.
 */
export function timeline({ onPick, onEvent }) {
  const lane = h('div', { class: 'tl-events' });
  const track = h('div', { class: 'tl-track', title: 'tap to play from there' });
  const head = h('div', { class: 'tl-head', hidden: true });
  const axis = h('div', { class: 'tl-axis' });
  const el = h('div', { class: 'tl' }, lane, track, axis, head);
  let win = { from: 0, to: 1 };
  const pct = (ms) => ((ms - win.from) / (win.to - win.from)) * 100;

  track.addEventListener('click', (e) => {
    const r = track.getBoundingClientRect();
    const f = Math.min(1, Math.max(0, (e.clientX - r.left) / r.width));
    onPick(win.from + f * (win.to - win.from), (win.to - win.from) / r.width);
  });

  function draw({ from, to, runs = [], gaps = [], events = [], now = Date.now() }) {
    win = { from, to };
    track.dataset.fromMs = String(from);
    track.dataset.toMs = String(to);
    const span = to - from;
    const msPerPx = span / Math.max(1, track.clientWidth || 320);
    // Bars closer than a pixel are one bar at this zoom.
    const bars = [];
    for (const r of runs) {
      if (r.end <= from || r.start >= to) continue;
      const last = bars[bars.length - 1];
      if (last && r.start - last.end < msPerPx) last.end = Math.max(last.end, r.end);
      else bars.push({ start: r.start, end: r.end });
    }
    const box = (cls, a, b, attrs = {}) => h('div', {
      class: cls, ...attrs,
      style: `left:${pct(Math.max(a, from)).toFixed(3)}%;width:${(pct(Math.min(b, to)) - pct(Math.max(a, from))).toFixed(3)}%`,
    });
    track.replaceChildren(
      ...(now < to ? [box('tl-future', Math.max(now, from), to)] : []),
      ...gaps.filter((g) => g.end > from && g.start < Math.min(to, now)).map((g) => (isOpenGap(g, now)
        ? box('tl-gap open', g.start, now, { title: `nothing listed since ${hms(g.start)} (a segment is listed when it closes)` })
        : box('tl-gap', g.start, Math.min(g.end, now), { title: `not recorded ${hms(g.start)}–${hms(Math.min(g.end, now))}: ${g.reason || 'no recording'}` }))),
      ...bars.map((b) => box('tl-run', b.start, b.end, {
        title: `recorded ${hms(b.start)}–${hms(b.end)}`, dataset: { start: String(b.start), end: String(b.end) },
      })));
    lane.replaceChildren(...events.filter((e) => e.ms >= from && e.ms < to).map((e) => h('button', {
      class: 'tl-ev', style: `left:${pct(e.ms).toFixed(3)}%`,
      title: `${e.source || 'event'} ${hms(e.ms)}`, 'aria-label': `event ${hms(e.ms)}`,
      dataset: { clip: e.clip || '' }, onclick: () => onEvent(e),
    })));
    const [labelMin, tickMin] = steps(span);
    axis.replaceChildren(
      ...marksEvery(from, to, tickMin).map((t) => h('span', { class: 'tl-tick', style: `left:${pct(t).toFixed(3)}%` })),
      ...marksEvery(from, to, labelMin).map((t) => {
        const p = pct(t);
        return h('span', { class: `tl-label${p < 4 ? ' first' : p > 96 ? ' last' : ''}`, style: `left:${p.toFixed(3)}%` },
          hm(t));
      }));
  }

  function setPlayhead(ms) {
    const inside = ms !== null && ms >= win.from && ms <= win.to;
    head.hidden = !inside;
    if (inside) head.style.left = `${pct(ms).toFixed(3)}%`;
  }

  return { el, draw, setPlayhead, get window() { return win; } };
}
