// The app's resumable upload client (tus 1.0): creation (POST /api/uploads), PATCH chunks,
// resume of a stored upload URL (HEAD for the offset), retries with back-off; waitProcessed()
// polls the upload's status until the clip is saved.

import { LS, fmtBytes, sleep } from './dom.js';
import { api, errorText, toLogin } from './api.js';

const TUS = '1.0.0';

/** Chunk size: `?chunk=BYTES` in the page URL, else localStorage, else 5 MB. */
function chunkBytes() {
  const q = Number(new URLSearchParams(location.search).get('chunk'));
  const s = Number(localStorage.getItem(LS.chunk));
  const n = q > 0 ? q : s > 0 ? s : 5 * 1024 * 1024;
  return Math.max(64 * 1024, Math.floor(n));
}

function b64(s) {
  return btoa(String.fromCharCode(...new TextEncoder().encode(s)));
}

function fingerprint(file) {
  return `${LS.tusPrefix}${file.name}::${file.size}::${file.lastModified}`;
}

export class UploadError extends Error {
  constructor(status, message, { retryable = false } = {}) {
    super(message);
    this.status = status;
    this.retryable = retryable;
  }
}

/** A tus request; network errors → retryable UploadError; 401 → login. */
async function tusFetch(url, opts) {
  let r;
  try {
    r = await fetch(url, { ...opts, credentials: 'same-origin', headers: { 'Tus-Resumable': TUS, ...(opts.headers || {}) } });
  } catch (e) {
    throw new UploadError(0, `network error (${e?.message ?? e})`, { retryable: true });
  }
  if (r.status === 401) { toLogin(); throw new UploadError(401, 'not logged in'); }
  return r;
}

async function uploadFailure(r) {
  const text = await errorText(r);
  const why = {
    413: 'File too large for this appliance',
    415: 'Not a video file',
    507: 'Not enough free disk space on the appliance',
    460: 'Checksum mismatch',
  }[r.status];
  const retryable = r.status >= 500 && r.status !== 507;
  return new UploadError(r.status, why ? `${why}: ${text}` : text, { retryable });
}

/**
 * Uploads `file` with tus 1.0: creation, then PATCH chunks; resumes a stored upload URL (HEAD
 * for the server's offset) and retries network errors with back-off. Returns the upload URL.
 * `onProgress(sent, total)`, `onState(text)`.
 */
export async function tusUpload(file, { device, onProgress, onState, signal }) {
  const fp = fingerprint(file);
  const chunk = chunkBytes();
  let url = localStorage.getItem(fp);
  let offset = 0;
  if (url) {
    onState?.('Resuming…');
    const r = await tusFetch(url, { method: 'HEAD', cache: 'no-store', signal });
    if (r.ok && r.headers.get('Upload-Offset') !== null) {
      offset = Number(r.headers.get('Upload-Offset'));
      onState?.(`Resuming at ${fmtBytes(offset)}`);
    } else {
      localStorage.removeItem(fp);
      url = null;
    }
  }
  if (!url) {
    const meta = [['filename', file.name], ['filetype', file.type || 'application/octet-stream'], ['device', device]]
      .map(([k, v]) => `${k} ${b64(v)}`).join(',');
    const r = await tusFetch('/api/uploads', { method: 'POST', signal,
      headers: { 'Upload-Length': String(file.size), 'Upload-Metadata': meta } });
    if (r.status !== 201) throw await uploadFailure(r);
    const loc = r.headers.get('Location');
    if (!loc) throw new UploadError(r.status, 'server gave no upload Location');
    url = new URL(loc, location.href).pathname;
    localStorage.setItem(fp, url);
    offset = 0;
  }
  onProgress?.(offset, file.size);
  let failures = 0;
  while (offset < file.size) {
    if (signal?.aborted) throw new UploadError(0, 'cancelled');
    try {
      const end = Math.min(offset + chunk, file.size);
      const r = await tusFetch(url, { method: 'PATCH', signal, body: file.slice(offset, end),
        headers: { 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': String(offset) } });
      if (r.status === 409) {
        // Offsets disagree (a chunk landed but its answer was lost): ask the server.
        const hd = await tusFetch(url, { method: 'HEAD', cache: 'no-store', signal });
        if (!hd.ok) throw await uploadFailure(hd);
        offset = Number(hd.headers.get('Upload-Offset'));
        continue;
      }
      if (r.status === 404 || r.status === 410) {
        localStorage.removeItem(fp);
        throw new UploadError(r.status, 'the upload expired on the server: pick the file again to start over');
      }
      if (!r.ok) throw await uploadFailure(r);
      const next = Number(r.headers.get('Upload-Offset'));
      offset = Number.isFinite(next) && next > offset ? next : end;
      failures = 0;
      onProgress?.(offset, file.size);
    } catch (e) {
      if (!(e instanceof UploadError) || !e.retryable) {
        if (e instanceof UploadError && e.status && e.status !== 0) localStorage.removeItem(fp);
        throw e;
      }
      failures++;
      if (failures > 5) {
        throw new UploadError(0, `${e.message}: upload paused at ${fmtBytes(offset)}. Pick the same file again to resume.`);
      }
      const wait = Math.min(1000 * 2 ** (failures - 1), 15000);
      onState?.(`${e.message} — retrying in ${Math.round(wait / 1000)} s (${failures}/5)`);
      await sleep(wait);
      try {
        const hd = await tusFetch(url, { method: 'HEAD', cache: 'no-store', signal });
        if (hd.ok) offset = Number(hd.headers.get('Upload-Offset')) || offset;
      } catch { /* still offline: the next PATCH retries */ }
    }
  }
  localStorage.removeItem(fp);
  return url;
}

/** Polls the upload's status (every 2 s) until done/failed. */
export async function waitProcessed(url, onState) {
  for (;;) {
    const s = await api(`${url}/status`);
    if (s.state === 'done') return s;
    if (s.state === 'failed') throw new UploadError(422, s.error || 'processing failed');
    onState?.(s.state === 'processing' ? 'Processing on the appliance…' : `Server state: ${s.state}`);
    await sleep(2000);
  }
}
