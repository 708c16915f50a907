// tus conformance with the official tus-js-client (npm, exact version) as an independent client
// against the real daemon (`target/debug/hindsight run --config FILE`, started by harness.mjs):
// a real H.264 MP4 (made with gst-launch-1.0) is uploaded in several PATCHes, aborted mid-way,
// resumed with a new Upload on the stored upload URL — which must continue from the server's
// offset, not from 0 — and finished; the clip appears (source upload, device) and ffprobe
// validates it, with the upload's AAC sound kept bit for bit. A raw fetch PATCH with a wrong Upload-Checksum gets 460 and the offset stays.
// No browser is needed (tus-js-client runs in Node); prints figures.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tus from 'tus-js-client';
import { createHarness, configHead } from './harness.mjs';

const FRAMES = 90;
const h = createHarness({ name: 'tus_conformance', tmpPrefix: 'hindsight-tus-' });
const { dir, check, waitFor, getJson, startDaemon, run } = h;
const CHUNK = 128 * 1024;

function makeVideo() {
  const out = join(dir, 'walk.mp4');
  // What a phone records: H.264 and AAC sound (3 s of a 48 kHz stereo tone).
  execFileSync('gst-launch-1.0', ['-q', 'audiotestsrc', 'num-buffers=141', 'samplesperbuffer=1024', '!',
    'audio/x-raw,rate=48000,channels=2', '!', 'voaacenc', '!', 'aacparse', '!', 'm.',
    'videotestsrc', `num-buffers=${FRAMES}`, 'pattern=snow', '!',
    'video/x-raw,width=320,height=240,framerate=30/1,format=I420', '!', 'x264enc', 'bitrate=3000',
    'key-int-max=30', '!', 'video/x-h264,profile=main', '!', 'h264parse', '!', 'mp4mux', 'name=m', '!',
    'filesink', `location=${out}`]);
  return readFileSync(out);
}

/** SHA-256 of a file's AAC packets, as ffmpeg copies them out. */
function soundSha(path) {
  const aac = execFileSync('ffmpeg', ['-v', 'error', '-i', path, '-map', '0:a', '-c', 'copy', '-f', 'data', '-'],
    { maxBuffer: 64 << 20 });
  if (aac.length < 1000) throw new Error(`${path}: ${aac.length} bytes of sound`);
  return createHash('sha256').update(aac).digest('hex');
}

function ffprobe(path) {
  const out = execFileSync('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-count_frames', '-show_entries',
    'stream=codec_name,nb_read_frames,pix_fmt:format=duration', '-of', 'json', path]);
  const v = JSON.parse(out.toString());
  return { codec: v.streams[0].codec_name, frames: Number(v.streams[0].nb_read_frames),
    duration: Number(v.format.duration) };
}

/** Runs a tus-js-client Upload to its end; resolves with what happened. */
function tusUpload(base, file, opts) {
  return new Promise((resolve) => {
    const seen = { patches: [], heads: [], progress: 0 };
    let upload;
    upload = new tus.Upload(file, {
      endpoint: `${base}/api/uploads`,
      chunkSize: CHUNK,
      metadata: { filename: 'walk.mp4', filetype: 'video/mp4', device: 'tus-js-client' },
      storeFingerprintForResuming: false,
      ...opts.tus,
      onBeforeRequest(req) {
        if (req.getMethod() === 'PATCH') seen.patches.push(Number(req.getHeader('Upload-Offset')));
      },
      onAfterResponse(req, res) {
        if (req.getMethod() === 'HEAD') seen.heads.push(Number(res.getHeader('Upload-Offset')));
      },
      onProgress(sent, total) {
        seen.progress = sent;
        if (opts.abortAt && sent >= opts.abortAt && !seen.aborted) {
          seen.aborted = sent;
          upload.abort().then(() => resolve({ upload, seen, aborted: true }));
        }
      },
      onSuccess() { resolve({ upload, seen, ok: true }); },
      onError(e) { resolve({ upload, seen, error: e }); },
    });
    upload.start();
  });
}

async function main() {
  const base = await startDaemon((port) => `${configHead(dir, port)}
[uploads]
max_bytes = "64MiB"

[[camera]]
id = "cam0"
source = { kind = "test", width = 160, height = 120, fps = 10 }
encoder = "x264enc"
pre_s = 1
post_s = 1
`);
  await waitFor('daemon answers', 60, async () => ((await getJson('/api/health')).status === 200 ? true : undefined));
  const video = makeVideo();
  const size = video.length;
  console.log(`video: ${size} bytes, ${FRAMES} frames, chunkSize ${CHUNK} → ${Math.ceil(size / CHUNK)} PATCHes`);

  let url;
  let abortedAt = 0;
  await check('tus-js-client uploads part of the file, then abort()', async () => {
    const r = await tusUpload(base, video, { abortAt: Math.floor(size * 0.4), tus: { retryDelays: null } });
    if (!r.aborted) throw new Error(`upload was not aborted: ${r.error ?? 'finished'}`);
    url = r.upload.url;
    abortedAt = r.seen.aborted;
    if (!url || !url.includes('/api/uploads/')) throw new Error(`no upload URL: ${url}`);
    if (r.seen.patches.length < 2) throw new Error(`only ${r.seen.patches.length} PATCHes before the abort`);
    return `${r.seen.patches.length} PATCHes, aborted at ${abortedAt} of ${size} bytes, url ${url}`;
  });

  let t0 = Date.now();
  let resumed;
  await check('a new Upload with the stored URL resumes from the server offset and finishes', async () => {
    // retryDelays: the server may still be closing the aborted PATCH (409) when the resume's
    // first PATCH arrives; tus-js-client then re-reads the offset with HEAD and retries.
    resumed = await tusUpload(base, video, { tus: { uploadUrl: url, retryDelays: [100, 300, 1000, 2000] } });
    if (!resumed.ok) throw new Error(`resume failed: ${resumed.error}`);
    const first = resumed.seen.patches[0];
    const head = resumed.seen.heads[resumed.seen.heads.length - 1];
    if (!(first > 0)) throw new Error(`resumed PATCH started at ${first}, expected the server's offset > 0`);
    if (!resumed.seen.heads.includes(first)) {
      throw new Error(`first resumed PATCH at ${first} is not an offset the server announced (${resumed.seen.heads})`);
    }
    if (first < CHUNK) throw new Error(`resumed at ${first}: bytes acknowledged before the abort were lost`);
    const secs = (Date.now() - t0) / 1000;
    return `HEAD said ${resumed.seen.heads.join(',')}, first PATCH at ${first} (last HEAD ${head}); ` +
      `${resumed.seen.patches.length} PATCHes for the remaining ${size - first} bytes in ${secs.toFixed(2)} s`;
  });

  const id = url.split('/').pop();
  let status;
  t0 = Date.now();
  await check('the upload is processed into a clip', async () => {
    status = await waitFor('upload done', 60, async () => {
      const { body } = await getJson(`/api/uploads/${id}/status`);
      if (body?.state === 'done' || body?.state === 'failed') return body;
      return undefined;
    });
    if (status.state !== 'done') throw new Error(JSON.stringify(status));
    return `clip ${status.clip_id} ${((Date.now() - t0) / 1000).toFixed(2)} s after the last byte (remux)`;
  });

  await check('the clip is listed with source=upload and the device, and ffprobe validates it', async () => {
    const { body } = await getJson(`/api/clips?source=upload&device=tus-js-client`);
    const clip = body?.clips?.find((c) => c.id === status.clip_id);
    if (!clip) throw new Error(`clip not listed: ${JSON.stringify(body)}`);
    if (clip.label !== 'walk.mp4' || clip.source !== 'upload') throw new Error(JSON.stringify(clip));
    const p = ffprobe(join(dir, 'storage', clip.path));
    if (p.codec !== 'h264' || p.frames !== FRAMES) throw new Error(`ffprobe: ${JSON.stringify(p)}`);
    if (Math.abs(p.duration - FRAMES / 30) > 0.05) throw new Error(`duration ${p.duration}`);
    const sound = soundSha(join(dir, 'storage', clip.path));
    if (sound !== soundSha(join(dir, 'walk.mp4'))) throw new Error('the clip\'s AAC packets differ from the upload\'s');
    return `ffprobe: ${p.codec}, ${p.frames} frames, ${p.duration.toFixed(3)} s; AAC kept bit for bit; clip ${clip.size_bytes} bytes`;
  });

  await check('PATCH with a wrong Upload-Checksum → 460, offset unchanged; the right one → 204', async () => {
    const tusH = { 'Tus-Resumable': '1.0.0' };
    const c = await fetch(`${base}/api/uploads`, { method: 'POST',
      headers: { ...tusH, 'Upload-Length': String(size) } });
    if (c.status !== 201) throw new Error(`POST → ${c.status}`);
    const loc = base + c.headers.get('location');
    const chunk = video.subarray(0, 100000);
    const patch = (sum) => fetch(loc, { method: 'PATCH', body: chunk, headers: { ...tusH,
      'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': '0', 'Upload-Checksum': `sha1 ${sum}` } });
    const wrong = createHash('sha1').update('not the chunk').digest('base64');
    const bad = await patch(wrong);
    if (bad.status !== 460) throw new Error(`wrong checksum → ${bad.status}`);
    if (bad.headers.get('tus-resumable') !== '1.0.0') throw new Error('460 without Tus-Resumable');
    const head = await fetch(loc, { method: 'HEAD', headers: tusH });
    if (head.headers.get('upload-offset') !== '0') throw new Error(`offset after 460: ${head.headers.get('upload-offset')}`);
    const good = await patch(createHash('sha1').update(chunk).digest('base64'));
    if (good.status !== 204 || good.headers.get('upload-offset') !== '100000') {
      throw new Error(`right checksum → ${good.status} offset ${good.headers.get('upload-offset')}`);
    }
    const del = await fetch(loc, { method: 'DELETE', headers: tusH });
    if (del.status !== 204) throw new Error(`DELETE → ${del.status}`);
    return `460 ${JSON.stringify(await bad.json())}; then 204 at 100000; terminated`;
  });
}

run(main);
