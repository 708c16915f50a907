#!/usr/bin/python3
"""A real RTSP camera for the tests: GStreamer's own gst-rtsp-server serving a live test pattern
encoded with x264 (or x265), like an IP camera's main stream.

    tests/rtsp_server.py --port PORT [--path /cam] [--width 640 --height 360 --fps 15]
                         [--gop-s 2] [--bitrate 1000] [--codec h264|h265]
                         [--user U --password P [--auth digest|basic]] [--pattern ball]
                         [--audio] [--sub WxH] [--tls]

Prints `READY rtsp://127.0.0.1:PORT/cam` on stdout once it listens, then serves until killed.
With --user/--password the stream needs that login (`--auth digest`, the default, or `basic`);
anonymous clients get 401. Both RTP over TCP (interleaved) and over UDP are offered; the client picks.
The media is shared: a client that joins a running stream starts mid-GOP, as with a real camera.
It prints `CLIENT n` as clients connect and `GONE n` as they leave; a line `kick N` on its stdin
closes client N (counted from 1 in the order they connected) while the others keep the stream
running, then prints `KICKED`. `--sub WxH` also serves a substream at that size on `/sub` (same
login, codec, fps and GOP), as IP cameras do for previews. `--tls` serves rtsps:// with a fresh
self-signed certificate (as IP cameras do) and prints `FINGERPRINT AB:CD:…` (its SHA-256, from
`openssl x509`) after READY.

Needs Debian's gir1.2-gst-rtsp-server-1.0, python3-gi and gstreamer1.0-rtsp (scripts/deps test)
and /usr/bin/python3 (the one that has `gi`).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gio, GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def self_signed():
    """A fresh self-signed EC certificate: (Gio.TlsCertificate, its SHA-256 fingerprint)."""
    with tempfile.TemporaryDirectory() as d:
        key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-subj", "/CN=ipcamera.local", "-days", "2", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
        out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", cert],
                             check=True, capture_output=True, text=True).stdout
        with open(cert) as c, open(key) as k:
            pem = c.read() + k.read()
    return Gio.TlsCertificate.new_from_pem(pem, -1), out.strip().split("=", 1)[1]


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--path", default="/cam")
    a.add_argument("--width", type=int, default=640)
    a.add_argument("--height", type=int, default=360)
    a.add_argument("--fps", type=int, default=15)
    a.add_argument("--gop-s", type=float, default=2.0)
    a.add_argument("--bitrate", type=int, default=1000, help="kbit/s")
    a.add_argument("--codec", choices=["h264", "h265"], default="h264")
    a.add_argument("--pattern", default="ball")
    a.add_argument("--user")
    a.add_argument("--password")
    a.add_argument("--auth", choices=["basic", "digest"], default="digest")
    a.add_argument("--audio", action="store_true", help="add a G.711 A-law audio track (pay1)")
    a.add_argument("--aac", metavar="FILE",
                   help="add an AAC track (pay1, 48 kHz mono, voaacenc) and write the AAC frames sent as ADTS to FILE")
    a.add_argument("--sub", help="also serve WxH on /sub")
    a.add_argument("--tls", action="store_true", help="rtsps:// with a self-signed certificate")
    args = a.parse_args()
    Gst.init(None)

    gop = max(1, round(args.fps * args.gop_s))

    def launch(width, height, audio):
        src = (f"videotestsrc is-live=true pattern={args.pattern} ! "
               f"video/x-raw,width={width},height={height},framerate={args.fps}/1 ! ")
        if args.codec == "h264":
            enc = (f"x264enc tune=zerolatency speed-preset=ultrafast bitrate={args.bitrate} key-int-max={gop} "
                   f"bframes=0 option-string=\"scenecut=0:min-keyint={gop}\" ! video/x-h264,profile=main ! "
                   "rtph264pay name=pay0 pt=96 config-interval=-1")
        else:
            enc = (f"x265enc tune=zerolatency speed-preset=ultrafast bitrate={args.bitrate} key-int-max={gop} ! "
                   "rtph265pay name=pay0 pt=96 config-interval=-1")
        if audio and args.aac:
            enc += (" audiotestsrc is-live=true wave=ticks ! audio/x-raw,rate=48000,channels=1 ! voaacenc bitrate=64000 ! "
                    "tee name=aac ! queue ! rtpmp4gpay name=pay1 pt=97 aac. ! queue ! aacparse ! "
                    f"audio/mpeg,stream-format=adts ! filesink buffer-mode=unbuffered location={args.aac}")
        elif audio:
            enc += (" audiotestsrc is-live=true ! audio/x-raw,rate=8000,channels=1 ! alawenc ! "
                    "rtppcmapay name=pay1 pt=8")
        return f"( {src}{enc} )"

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch(args.width, args.height, args.audio or bool(args.aac)))
    factory.set_shared(True)
    factories = [(args.path, factory)]
    if args.sub:
        width, height = (int(v) for v in args.sub.split("x"))
        sub = GstRtspServer.RTSPMediaFactory()
        sub.set_launch(launch(width, height, False))
        sub.set_shared(True)
        factories.append(("/sub", sub))
    auth = None
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST if args.auth == "digest" else GstRtsp.RTSPAuthMethod.BASIC)
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "cam")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        auth.add_digest(args.user, args.password, token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role("cam", "media.factory.access", True)
        perms.add_permission_for_role("cam", "media.factory.construct", True)
        for _, f in factories:
            f.set_permissions(perms)
    fingerprint = None
    if args.tls:
        if auth is None:
            auth = GstRtspServer.RTSPAuth()
            server.set_auth(auth)
        certificate, fingerprint = self_signed()
        auth.set_tls_certificate(certificate)
    for path, f in factories:
        server.get_mount_points().add_factory(path, f)
    clients = []

    def kick(victim):
        def keep_or_remove(_server, client):
            return GstRtspServer.RTSPFilterResult.REMOVE if client == victim else GstRtspServer.RTSPFilterResult.KEEP
        server.client_filter(keep_or_remove)
        print("KICKED", flush=True)

    def connected(_server, client):
        clients.append(client)
        n = len(clients)
        print(f"CLIENT {n}", flush=True)
        client.connect("closed", lambda _client: print(f"GONE {n}", flush=True))

    def command(channel, condition):
        line = channel.readline()
        if not line:
            return False  # stdin closed: no more commands
        words = line.split()
        if len(words) == 2 and words[0] == "kick" and words[1].isdigit() and 0 < int(words[1]) <= len(clients):
            kick(clients[int(words[1]) - 1])
        return True

    stdin = GLib.IOChannel.unix_new(sys.stdin.fileno())
    GLib.io_add_watch(stdin, GLib.PRIORITY_DEFAULT, GLib.IOCondition.IN | GLib.IOCondition.HUP, command)
    server.connect("client-connected", connected)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    scheme = "rtsps" if args.tls else "rtsp"
    print(f"READY {scheme}://127.0.0.1:{args.port}{args.path}", flush=True)
    if fingerprint:
        print(f"FINGERPRINT {fingerprint}", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
