// The API client: api() is fetch() with JSON in and out; 401 → /login?next=<hash>, any other
// non-2xx → ApiError carrying the server's JSON `error` text. apiOptional() turns 404/405 into a
// fallback (a route not on this daemon yet).

import { enc } from './dom.js';

/** An API error: `status` is the HTTP status (0 for a network error). */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function toLogin() {
  // The login page accepts same-site paths only: "/#/clips".
  location.assign('/login?next=' + enc('/' + (location.hash || '#/live')));
}

/** Reads the JSON `error` of a failed response. */
export async function errorText(r) {
  const body = await r.json().catch(() => null);
  return body?.error || `HTTP ${r.status} ${r.statusText}`;
}

/**
 * fetch() for the API: JSON in (`json` option) and out; 401 → the login page; any other
 * non-2xx → ApiError with the server's `error` text.
 */
export async function api(path, { method = 'GET', json, headers = {}, raw = false, signal } = {}) {
  const opts = { method, headers: { ...headers }, signal, credentials: 'same-origin' };
  if (json !== undefined) {
    opts.headers['content-type'] = 'application/json';
    opts.body = JSON.stringify(json);
  }
  let r;
  try {
    r = await fetch(path, opts);
  } catch (e) {
    if (e?.name === 'AbortError') throw e;
    throw new ApiError(0, `network error: ${e?.message ?? e}`);
  }
  if (r.status === 401) {
    toLogin();
    throw new ApiError(401, 'not logged in');
  }
  if (!r.ok) throw new ApiError(r.status, await errorText(r));
  if (raw) return r;
  if (r.status === 204) return null;
  const ct = r.headers.get('content-type') || '';
  return ct.includes('json') ? r.json() : r.text();
}

/** Like api() but a 404 (route not on this daemon yet) gives `fallback`. */
export async function apiOptional(path, fallback = null) {
  try {
    return await api(path);
  } catch (e) {
    if (e.status === 404 || e.status === 405) return fallback;
    throw e;
  }
}
