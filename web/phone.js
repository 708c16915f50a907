// The phone as a hindsight camera: getUserMedia → MediaRecorder → WebSocket
// `/api/cameras/{id}/push`. Plain ES module, no dependencies.
//
//   import { startPhoneCamera } from '/phone.js';
//   const cam = await startPhoneCamera({ id: 'phone1', video, onStatus: (s) => console.log(s) });
//   ...
//   cam.stop();
//
// The server decodes the chunks (the first carries the container's init segment) into a
// camera like any other — pre-roll, triggers, clips, live view — and sends
// `{"camera","state","frames"}` about once a second, or `{"error"}` before closing. `onStatus`
// receives those, plus local events: `{"state":"recording","mimeType"}` once streaming, and
// `{"error", "local":true}` for problems on this side (the camera, the recorder, the network).

/** MediaRecorder types in order of preference: H.264 first (no transcode on the way to a clip). */
export const MIME_TYPES = ['video/mp4;codecs=avc1', 'video/webm;codecs=h264', 'video/webm;codecs=vp8', 'video/webm'];

/**
 * The same with the microphone's sound: AAC in MP4 (Safari), Opus in MP4 (Chromium), Opus in
 * WebM (Firefox, older Chromium). The server decodes either and encodes AAC once.
 */
export const MIME_TYPES_SOUND = ['video/mp4;codecs=avc1,mp4a.40.2', 'video/mp4;codecs=avc1,opus',
  'video/webm;codecs=h264,opus', 'video/webm;codecs=vp8,opus'];

/** Bytes the socket may hold unsent before streaming is given up (a stalled network). */
const MAX_BUFFERED = 16 * 1024 * 1024;

/** The first of MIME_TYPES (MIME_TYPES_SOUND with `sound`) this browser can record, or undefined. */
export function pickMimeType(sound = false) {
  if (typeof MediaRecorder === 'undefined') return undefined;
  return (sound ? MIME_TYPES_SOUND : MIME_TYPES).find((t) => MediaRecorder.isTypeSupported(t));
}

/** The camera, and the microphone when `sound` and this browser can record it; says why not. */
async function openDevices(video, sound) {
  const wantSound = sound && !!pickMimeType(true);
  try {
    return { stream: await navigator.mediaDevices.getUserMedia({ audio: wantSound, video }),
      soundOff: sound && !wantSound ? 'this browser cannot record sound with video' : undefined };
  } catch (e) {
    if (!wantSound) throw e;
    // Microphone refused or missing: the picture alone is still a camera.
    return { stream: await navigator.mediaDevices.getUserMedia({ audio: false, video }),
      soundOff: `no microphone: ${e?.message ?? e}` };
  }
}

/**
 * Start streaming this device's camera as hindsight camera `id`, asking for `width`×`height`
 * (ideal, the camera picks the nearest it has), with the microphone's sound when `sound` (if the
 * microphone is refused or missing, the picture alone; `soundOff` says why).
 * Resolves once the socket is open and recording runs; rejects when the camera, the recorder or
 * the connection cannot be had. Returns `{ stop(), mimeType, sound, soundOff }`.
 */
export async function startPhoneCamera({ id, video, onStatus = () => {}, timesliceMs = 250, width = 1280, height = 720,
  sound = true }) {
  const report = (obj) => {
    try {
      onStatus(obj);
    } catch (e) {
      console.error('onStatus failed', e);
    }
  };
  if (!/^[a-z0-9_-]{1,32}$/.test(id ?? '')) throw new Error(`camera id ${JSON.stringify(id)} must match [a-z0-9_-]{1,32}`);
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error('the camera needs a secure page (https://, or http://localhost)');
  }
  if (!pickMimeType()) throw new Error('this browser cannot record video (no MediaRecorder for MP4 or WebM)');

  const { stream, soundOff } = await openDevices(
    { facingMode: { ideal: 'environment' }, width: { ideal: width }, height: { ideal: height } }, sound);
  const withSound = stream.getAudioTracks().length > 0;
  const mimeType = pickMimeType(withSound);
  const stopTracks = () => stream.getTracks().forEach((t) => t.stop());
  if (video) {
    video.muted = true; // the phone's own preview stays silent (no echo)
    video.playsInline = true;
    video.srcObject = stream;
    video.play().catch(() => {});
  }

  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${scheme}//${location.host}/api/cameras/${encodeURIComponent(id)}/push`);
  ws.binaryType = 'arraybuffer';
  let recorder;
  let stopped = false;

  function stop() {
    if (stopped) return;
    stopped = true;
    if (recorder && recorder.state !== 'inactive') {
      try {
        recorder.stop();
      } catch {
        // already stopped
      }
    }
    if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(1000, 'stopped');
    stopTracks();
    if (video && video.srcObject === stream) video.srcObject = null;
  }

  try {
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error(`cannot connect to ${ws.url}`));
      ws.onclose = (ev) => reject(new Error(`connection refused (${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`));
    });
  } catch (e) {
    stop();
    throw e;
  }

  ws.onmessage = (ev) => {
    if (typeof ev.data !== 'string') return;
    try {
      report(JSON.parse(ev.data));
    } catch {
      report({ error: `unreadable message from the server: ${ev.data.slice(0, 100)}`, local: true });
    }
  };
  ws.onerror = () => {};
  ws.onclose = (ev) => {
    if (stopped) return;
    report({ error: `connection closed (${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`, local: true, closed: true });
    stop();
  };

  try {
    // A keyframe each second: Chromium's MP4 recorder cuts a fragment (a chunk) per keyframe,
    // and its default is far apart. Browsers without the option ignore it.
    recorder = new MediaRecorder(stream, { mimeType, videoBitsPerSecond: 2_500_000, videoKeyFrameIntervalDuration: 1000 });
  } catch (e) {
    stop();
    throw new Error(`cannot record ${mimeType}: ${e.message}`);
  }
  recorder.ondataavailable = (ev) => {
    if (stopped || !ev.data || ev.data.size === 0 || ws.readyState !== WebSocket.OPEN) return;
    if (ws.bufferedAmount > MAX_BUFFERED) {
      // Dropping a chunk would corrupt the stream: give up and let the user restart.
      report({ error: 'the network is too slow for the camera stream; stopped', local: true });
      stop();
      return;
    }
    ws.send(ev.data);
  };
  recorder.onerror = (ev) => {
    report({ error: `recorder failed: ${ev.error?.message ?? 'unknown error'}`, local: true });
    stop();
  };
  for (const t of stream.getVideoTracks()) {
    t.onended = () => {
      if (stopped) return;
      report({ error: 'the camera was taken away (another app, or permission revoked)', local: true });
      stop();
    };
  }
  recorder.start(timesliceMs);
  report({ state: 'recording', mimeType, camera: id, sound: withSound, soundOff });
  return { stop, mimeType, sound: withSound, soundOff };
}
