// The minimal WHEP client tests/browser/whep.mjs installs in a page of the daemon's origin
// (window.W): viewers (offer, POST, answer, a record of every frame shown with its RTP timestamp
// and the test pattern's stamps read from a canvas), their stats, DELETE, and munged offers; for
// the side-by-side figures also an LL-HLS viewer (hls.js) and an MJPEG one (<img>) recorded alike.
// Runs in the page: page.evaluate(pageClient, { offset }) serializes it, so it uses no imports.

/** Installs window.W, the minimal WHEP client (run in a page of the daemon's origin). */
export function pageClient({ offset }) {
  const W = { offset, timeOrigin: performance.timeOrigin, sessions: new Map(), next: 1 };
  window.W = W;
  W.codecs = () => RTCRtpReceiver.getCapabilities('video').codecs.filter((c) => /^video\/(h264|rtx)$/i.test(c.mimeType));

  // The stamps: 32 cells across; a stripe's first 16 rows hold the bits (MSB first, white = 1),
  // the next 16 the inverted bits. Rows 8/24: frame number; rows 40/56: capture ms (monotonic).
  const canvas = document.createElement('canvas');
  const g = canvas.getContext('2d', { willReadFrequently: true });
  // Any source: a <video> (at its decoded size), an <img> (at its natural size, e.g. an MJPEG
  // preview); `srcWidth` (the camera's width) scales the rows when the picture was scaled.
  W.readStamps = (el, srcWidth) => {
    const w = el.videoWidth ?? el.naturalWidth;
    const h = el.videoHeight ?? el.naturalHeight;
    const k = srcWidth ? w / srcWidth : 1;
    const rows = Math.ceil(64 * k);
    if (w < 32 || h < rows) return {};
    if (canvas.width !== w) canvas.width = w;
    if (canvas.height !== rows) canvas.height = rows;
    g.drawImage(el, 0, 0); // native size; the canvas keeps the top rows
    const d = g.getImageData(0, 0, w, rows).data;
    const cell = Math.floor(w / 32);
    const lum = (x, y) => { const i = (Math.floor(y * k) * w + x) * 4; return 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]; };
    const stripe = (row, inv) => {
      let v = 0;
      for (let b = 0; b < 32; b++) {
        const x = b * cell + (cell >> 1);
        const one = lum(x, row) > 128;
        if (one === lum(x, inv) > 128) return null; // damaged cell
        v = v * 2 + (one ? 1 : 0);
      }
      return v;
    };
    return { seq: stripe(8, 24), stamp: stripe(40, 56) };
  };

  /** Records every frame `video` shows into `s.frames` (requestVideoFrameCallback). */
  W.record = (video, s, stamps) => {
    const onFrame = (now, m) => {
      if (s.closed) return;
      // The page's wall clock when this frame reaches the glass (Date.now, not timeOrigin + now:
      // Chromium's timeOrigin is not the wall clock to the millisecond).
      const wall = Date.now() + (m.expectedDisplayTime - performance.now());
      const f = { now, wall, rtp: m.rtpTimestamp, edt: m.expectedDisplayTime, presented: m.presentedFrames, w: m.width, h: m.height };
      if (stamps) Object.assign(f, W.readStamps(video));
      s.frames.push(f);
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  };
  const newVideo = () => {
    const video = document.createElement('video');
    Object.assign(video, { muted: true, autoplay: true, playsInline: true });
    video.style.cssText = 'width:120px;height:68px;margin:1px;background:#000';
    document.body.append(video);
    return video;
  };

  /** POSTs `sdp` to `path`; {status, body, contentType, headers}. */
  W.post = async (path, sdp, type = 'application/sdp') => {
    const r = await fetch(path, { method: 'POST', headers: { 'Content-Type': type }, body: sdp, signal: AbortSignal.timeout(10000) });
    return { status: r.status, body: await r.text(), contentType: r.headers.get('content-type'),
      location: r.headers.get('location'), clockOffset: r.headers.get('x-hindsight-clock-offset-ms') };
  };

  /** A viewer: offer (video only, H.264 + rtx), POST, answer, then a record of every frame shown. */
  W.start = async ({ cam = 'cam0', query = '', stamps = false, audio = false } = {}) => {
    const id = W.next++;
    const video = newVideo();
    const s = { id, video, frames: [], states: [], closed: false };
    const pc = (s.pc = new RTCPeerConnection());
    const tr = pc.addTransceiver('video', { direction: 'recvonly' });
    try { tr.setCodecPreferences(W.codecs()); } catch (e) { s.prefError = e.message; }
    if (audio) pc.addTransceiver('audio', { direction: 'recvonly' });
    s.tracks = [];
    pc.ontrack = (e) => {
      s.tracks.push({ kind: e.track.kind, streams: e.streams.map((x) => x.id) });
      // With sound: one stream for both tracks, played unmuted (Chromium decodes and levels
      // remote sound only while it is played out).
      if (audio && e.streams[0]) { video.srcObject = e.streams[0]; video.muted = false; }
      else if (!audio) video.srcObject = new MediaStream([e.track]);
      video.play().catch(() => {});
    };
    pc.onconnectionstatechange = () => s.states.push(`${pc.connectionState}@${Math.round(performance.now() - s.t0)}`);
    const tOffer = performance.now();
    await pc.setLocalDescription(await pc.createOffer());
    s.offerMs = performance.now() - tOffer;
    s.t0 = performance.now(); // the moment before the POST: TTFF counts from here
    const r = await W.post(`/api/cameras/${cam}/whep${query}`, pc.localDescription.sdp);
    s.postMs = performance.now() - s.t0;
    if (r.status !== 201) {
      pc.close();
      video.remove();
      return { id: null, ...r };
    }
    Object.assign(s, { location: r.location, clockOffset: parseFloat(r.clockOffset) });
    W.sessions.set(id, s);
    W.record(video, s, stamps);
    await pc.setRemoteDescription({ type: 'answer', sdp: r.body });
    return { id, status: r.status, contentType: r.contentType, location: r.location, clockOffset: s.clockOffset,
      offerMs: s.offerMs, postMs: s.postMs, answerHasH264: /H264\/90000/i.test(r.body) };
  };

  /** LL-HLS: hls.js (the daemon's /vendor copy, loaded once) in low-latency mode on a muted
   *  <video>, every frame recorded with its stamps; `t0` is the moment before loadSource. */
  W.hls = async ({ cam = 'cam0', config = { lowLatencyMode: true } } = {}) => {
    if (!window.Hls) {
      await new Promise((res, rej) => {
        const el = document.createElement('script');
        Object.assign(el, { src: '/vendor/hls.light.min.js', onload: res, onerror: () => rej(new Error('loading /vendor/hls.light.min.js failed')) });
        document.head.append(el);
      });
    }
    if (!Hls.isSupported()) throw new Error('Hls.isSupported() is false');
    const id = W.next++;
    const video = newVideo();
    const s = { id, video, frames: [], states: [], errors: [], closed: false };
    const hls = (s.hls = new Hls(config));
    hls.on(Hls.Events.ERROR, (_, d) => s.errors.push(`${d.fatal ? 'fatal ' : ''}${d.type}/${d.details}`));
    hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch((e) => s.errors.push(`play(): ${e.name}`)));
    for (const e of ['playing', 'waiting']) video.addEventListener(e, () => s.states.push(`${e}@${Math.round(performance.now() - s.t0)}`));
    W.sessions.set(id, s);
    W.record(video, s, true);
    s.t0 = performance.now();
    hls.loadSource(`/api/cameras/${cam}/hls/live.m3u8`);
    hls.attachMedia(video);
    return { id, version: Hls.version };
  };

  /** MJPEG: an <img> on the preview stream, polled each animation frame; a frame is recorded
   *  when its (readable) frame number changes. `srcWidth` is the camera's width. */
  W.mjpeg = ({ cam = 'cam0', srcWidth } = {}) => {
    const id = W.next++;
    const img = document.createElement('img');
    img.style.cssText = 'width:120px;height:68px;margin:1px;background:#000';
    document.body.append(img);
    const s = { id, img, frames: [], states: [], unreadable: 0, polls: 0, closed: false };
    W.sessions.set(id, s);
    let last = null;
    const poll = () => {
      if (s.closed) return;
      if (img.naturalWidth) {
        s.polls++;
        const { seq, stamp } = W.readStamps(img, srcWidth);
        if (!Number.isFinite(seq)) s.unreadable++;
        else if (seq !== last) {
          last = seq;
          s.frames.push({ now: performance.now(), wall: Date.now(), seq, stamp, w: img.naturalWidth, h: img.naturalHeight });
        }
      }
      requestAnimationFrame(poll);
    };
    s.t0 = performance.now();
    img.src = `/api/cameras/${cam}/mjpeg`;
    requestAnimationFrame(poll);
    return { id };
  };
  W.info = (id) => { const s = W.sessions.get(id); return s ? { errors: s.errors, unreadable: s.unreadable, polls: s.polls } : null; };

  W.frames = (id) => { const s = W.sessions.get(id); return s ? { t0: s.t0, frames: s.frames, states: s.states } : null; };
  W.count = (id) => W.sessions.get(id)?.frames.length ?? -1;

  /** The receiver's stats: codec, counters, the nominated candidate pair. */
  W.stats = async (id) => {
    const st = await W.sessions.get(id).pc.getStats();
    const all = [...st.values()];
    const inb = all.find((x) => x.type === 'inbound-rtp' && x.kind === 'video') || {};
    const codec = st.get(inb.codecId) || {};
    const transport = all.find((x) => x.type === 'transport');
    const pair = st.get(transport?.selectedCandidatePairId) || all.find((x) => x.type === 'candidate-pair' && x.nominated && x.state === 'succeeded') || {};
    const cand = (c) => (c ? `${c.address ?? c.ip}:${c.port} ${c.candidateType}/${c.protocol}` : '?');
    return {
      mimeType: codec.mimeType, fmtp: codec.sdpFmtpLine,
      framesDecoded: inb.framesDecoded, framesDropped: inb.framesDropped, nackCount: inb.nackCount, pliCount: inb.pliCount,
      firCount: inb.firCount, packetsLost: inb.packetsLost, packetsReceived: inb.packetsReceived,
      jitterBufferMs: inb.jitterBufferEmittedCount ? (1000 * inb.jitterBufferDelay) / inb.jitterBufferEmittedCount : null,
      decoder: inb.decoderImplementation, local: cand(st.get(pair.localCandidateId)), remote: cand(st.get(pair.remoteCandidateId)),
      rtt: pair.currentRoundTripTime,
    };
  };

  /** The sound's receiver stats and the tracks' streams. */
  W.sound = async (id) => {
    const s = W.sessions.get(id);
    const st = await s.pc.getStats();
    const inb = [...st.values()].find((x) => x.type === 'inbound-rtp' && x.kind === 'audio') || {};
    return {
      mimeType: st.get(inb.codecId)?.mimeType, packets: inb.packetsReceived, samples: inb.totalSamplesReceived,
      duration: inb.totalSamplesDuration, energy: inb.totalAudioEnergy, concealed: inb.concealedSamples,
      jitterBufferMs: inb.jitterBufferEmittedCount ? (1000 * inb.jitterBufferDelay) / inb.jitterBufferEmittedCount : null,
      tracks: s.tracks,
    };
  };

  /** Ends a viewer: closes the peer connection and (`del`) DELETEs its Location; the DELETE status. */
  W.stop = async (id, del = true) => {
    const s = W.sessions.get(id);
    if (!s) return null;
    s.closed = true;
    s.pc?.close();
    s.hls?.destroy();
    s.img?.removeAttribute('src'); // ends the multipart stream
    (s.video ?? s.img).remove();
    W.sessions.delete(id);
    if (!del || !s.location) return null;
    const r = await fetch(s.location, { method: 'DELETE', signal: AbortSignal.timeout(10000) });
    return r.status;
  };
  W.stopAll = async () => Promise.all([...W.sessions.keys()].map((id) => W.stop(id)));

  /** An offer whose video m-line keeps only H.264 with profile-level-id `plid` (and its rtx). */
  W.offerOnly = async (plid) => {
    const lines = (await W.offer()).split('\r\n');
    const mi = lines.findIndex((l) => l.startsWith('m=video'));
    let end = lines.findIndex((l, i) => i > mi && l.startsWith('m='));
    if (end < 0) end = lines.length;
    const sec = lines.slice(mi, end);
    const rtpmap = {};
    const fmtp = {};
    for (const l of sec) {
      let m = /^a=rtpmap:(\d+) ([^/]+)\//.exec(l);
      if (m) rtpmap[m[1]] = m[2];
      m = /^a=fmtp:(\d+) (.*)$/.exec(l);
      if (m) fmtp[m[1]] = m[2];
    }
    const keep = new Set(Object.keys(rtpmap).filter((pt) => /^h264$/i.test(rtpmap[pt]) && new RegExp(`profile-level-id=${plid}`, 'i').test(fmtp[pt] || '')));
    for (const pt of Object.keys(rtpmap)) {
      const apt = /apt=(\d+)/.exec(fmtp[pt] || '');
      if (/^rtx$/i.test(rtpmap[pt]) && apt && keep.has(apt[1])) keep.add(pt);
    }
    const m = sec[0].split(' ');
    const mline = [...m.slice(0, 3), ...m.slice(3).filter((pt) => keep.has(pt))].join(' ');
    const rest = sec.slice(1).filter((l) => { const x = /^a=(?:rtpmap|fmtp|rtcp-fb):(\d+) /.exec(l); return !x || keep.has(x[1]); });
    const munged = [...lines.slice(0, mi), mline, ...rest, ...lines.slice(end)].join('\r\n');
    const h264 = Object.keys(rtpmap).filter((pt) => /^h264$/i.test(rtpmap[pt])).map((pt) => /profile-level-id=(\w+)/.exec(fmtp[pt] || '')?.[1]);
    return { sdp: munged, kept: [...keep].map((pt) => `${pt} ${rtpmap[pt]} ${fmtp[pt] || ''}`), offered: h264 };
  };
  /** A plain offer's SDP (video only). */
  W.offer = async () => {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    const sdp = (await pc.createOffer()).sdp;
    pc.close();
    return sdp;
  };
}
