# nooelint: oelint.var.bbclassextend - a target daemon; there is no use for a -native build
SUMMARY = "Camera appliance daemon that always remembers the last 30 seconds"
DESCRIPTION = "hindsight records cameras into a RAM ring buffer, saves clips on triggers \
               (HTTP, MQTT) and serves live HLS/MJPEG views; GStreamer does capture and encoding."
# nooelint: oelint.vars.homepageping - the project's public address; CI has no network for it
HOMEPAGE = "https://github.com/hindsight/hindsight"
BUGTRACKER = "https://github.com/hindsight/hindsight/issues"
SECTION = "multimedia"
LICENSE = "MIT | Apache-2.0"
# nooelint: oelint.var.licenseremotefile - the crate is "MIT OR Apache-2.0" (Cargo.toml) and ships no license file of its own yet
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302 \
                    file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"
CVE_PRODUCT = "hindsight"

# bindgen (v4l crate) needs clang-native (meta-clang); libsystemd for journald and sd_notify.
DEPENDS = "clang-native gstreamer1.0 gstreamer1.0-plugins-base systemd"

PV = "0.1.0+git"
SRC_URI = "git://github.com/hindsight/hindsight.git;protocol=https;branch=main;destsuffix=${BP}"
# The commit whose Cargo.lock generated hindsight-crates.inc (scripts/yocto-crates): bump both
# together. AUTOREV would let the two drift.
SRCREV = "c17597f790c7373477a4f84646b4a6454013be09"
# scarthgap unpacks into WORKDIR and has no UNPACKDIR; styhead and later set it (sources-unpack).
UNPACKDIR ??= "${WORKDIR}"
S = "${UNPACKDIR}/${BP}"

# Software H.264: x264enc (the encoder of boards without one in hardware: rpi5, jetson-orin-nano,
# x86) and gstreamer1.0-libav (avdec_h264 for posters and H.264 phone streams without a hardware
# decoder; avenc_aac, avdec_aac for sound) come from recipes OE-core marks LICENSE_FLAGS =
# "commercial". BitBake resolves RRECOMMENDS like RDEPENDS (an unbuildable recommendation fails
# the build), so they are PACKAGECONFIG options. libav is on by default when the build accepts
# the flag (LICENSE_FLAGS_ACCEPTED += "commercial" in local.conf). x264 also needs plugins-ugly
# built with it, which OE-core's default leaves off, so it is asked for explicitly in local.conf:
#   PACKAGECONFIG:append:pn-gstreamer1.0-plugins-ugly = " x264"
#   PACKAGECONFIG:append:pn-hindsight = " x264"
# Without them the image builds; `hindsight probe` and the log then name what is missing.
PACKAGECONFIG ??= "${@bb.utils.contains('LICENSE_FLAGS_ACCEPTED', 'commercial', 'libav', '', d)}"
PACKAGECONFIG[x264] = ",,,gstreamer1.0-plugins-ugly-x264"
PACKAGECONFIG[libav] = ",,,gstreamer1.0-libav"

# The hindsight crate's own dependencies, generated from Cargo.lock by scripts/yocto-crates.
require ${BPN}-crates.inc
require ${BPN}-boards.inc

REQUIRED_DISTRO_FEATURES = "systemd"

# Cargo.toml wants Rust >= 1.95 (resolver 3); OE-core's own rust is older (scarthgap: 1.75).
# With meta-rust-bin in the build (Rust 1.95 toolchains, as the Rust project ships them) the
# recipe builds with its cargo_bin class, offline from the same crate list (below); without it,
# with OE-core's cargo class, whose rust must then be new enough.
HINDSIGHT_CARGO_CLASS ?= "${@bb.utils.contains('BBFILE_COLLECTIONS', 'rust-bin-layer', 'cargo_bin', 'cargo', d)}"
inherit_defer ${HINDSIGHT_CARGO_CLASS}
inherit cargo-update-recipe-crates features_check pkgconfig systemd useradd

# cargo_bin lets cargo download crates during do_compile; point it at the crates BitBake fetched
# from SRC_URI instead (unpacked into cargo_home/bitbake), as OE-core's cargo class does.
# nooelint: oelint.vars.mispell - meta-rust-bin's cargo_bin class reads it
EXTRA_CARGO_FLAGS = "--locked --offline"
# nooelint: oelint.task.docstrings - a postfunc of do_configure (cargo_bin only), not a task
hindsight_vendored_crates() {
    mkdir -p ${CARGO_HOME}
    printf '[source.bitbake]\ndirectory = "%s"\n[source.crates-io]\nreplace-with = "bitbake"\nlocal-registry = "/nonexistent"\n' \
        "${UNPACKDIR}/cargo_home/bitbake" > ${CARGO_HOME}/config.toml
}
do_configure[postfuncs] += "${@'hindsight_vendored_crates' if d.getVar('HINDSIGHT_CARGO_CLASS') == 'cargo_bin' else ''}"

# bindgen parses the target's linux/videodev2.h with clang-native against the target sysroot.
export LIBCLANG_PATH = "${STAGING_LIBDIR_NATIVE}"
export BINDGEN_EXTRA_CLANG_ARGS = "--sysroot=${STAGING_DIR_TARGET} --target=${TARGET_SYS}"

do_install:append() {
    install -d ${D}${sysconfdir}/hindsight
    # It can hold passwords: root and the daemon's group only (the useradd class has created the
    # group in the sysroot before do_install, as for the chown of the state directory below).
    install -m 0640 ${S}/board-configs/${HINDSIGHT_BOARD}.toml ${D}${sysconfdir}/hindsight/hindsight.toml
    chown root:hindsight ${D}${sysconfdir}/hindsight/hindsight.toml
    install -d ${D}${systemd_system_unitdir} ${D}${nonarch_libdir}/sysusers.d ${D}${nonarch_libdir}/tmpfiles.d
    install -m 0644 ${S}/systemd/hindsight.service ${D}${systemd_system_unitdir}/hindsight.service
    install -m 0644 ${S}/systemd/hindsight.sysusers ${D}${nonarch_libdir}/sysusers.d/hindsight.conf
    install -m 0644 ${S}/systemd/hindsight.tmpfiles ${D}${nonarch_libdir}/tmpfiles.d/hindsight.conf
    install -d -m 0750 ${D}${localstatedir}/lib/hindsight
    chown hindsight:hindsight ${D}${localstatedir}/lib/hindsight
}

# The user at image build time (useradd class); on a systemd image the sysusers.d file above
# does the same at boot. render may be missing from base-passwd: create it.
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system --force render"
USERADD_PARAM:${PN} = "--system --home-dir ${localstatedir}/lib/hindsight --no-create-home \
                       --shell /sbin/nologin --user-group --groups video,render hindsight"

SYSTEMD_SERVICE:${PN} = "hindsight.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

FILES:${PN} += "${localstatedir}/lib/hindsight ${nonarch_libdir}/sysusers.d/hindsight.conf \
                ${nonarch_libdir}/tmpfiles.d/hindsight.conf"
CONFFILES:${PN} = "${sysconfdir}/hindsight/hindsight.toml"

# The plugins of the GStreamer elements the daemon builds pipelines from (`hindsight probe` lists
# any that are missing: src/probe/mod.rs NEEDED): core elements (in gstreamer1.0 itself),
# appsrc/appsink, videoconvert/videoscale, decodebin/parsebin (phone streams, uploads), h264parse,
# jpeg, qtdemux/mp4mux, matroska, RTSP cameras (rtsp, rtp, rtpmanager, udp) and
# multipartdemux (HTTP MJPEG cameras). OE-core's default PACKAGECONFIGs build every one of these
# plugins (scripts/yocto-parse checks that with BitBake).
RDEPENDS:${PN} = "gstreamer1.0 gstreamer1.0-plugins-bad-videoparsersbad \
                  gstreamer1.0-plugins-base-app gstreamer1.0-plugins-base-playback \
                  gstreamer1.0-plugins-base-typefindfunctions \
                  gstreamer1.0-plugins-base-videoconvertscale \
                  gstreamer1.0-plugins-base-videotestsrc gstreamer1.0-plugins-good-isomp4 \
                  gstreamer1.0-plugins-good-jpeg gstreamer1.0-plugins-good-matroska \
                  gstreamer1.0-plugins-good-multipart gstreamer1.0-plugins-good-rtp \
                  gstreamer1.0-plugins-good-rtpmanager gstreamer1.0-plugins-good-rtsp \
                  gstreamer1.0-plugins-good-udp gstreamer1.0-plugins-good-video4linux2"
# souphttpsrc (HTTP MJPEG cameras; plugins-good's default soup3). glib-networking (OE-core) is
# GIO's TLS backend: rtsps:// and https:// cameras need it.
# Sound (camera.audio): alsasrc (plugins-base, where the distro has the alsa feature),
# audioconvert/audioresample, aacparse (plugins-good audioparsers); an RTSP camera's G.711/Opus:
# alawdec, mulawdec (plugins-good). The AAC encoder is avenc_aac (libav above) or voaacenc where
# plugins-bad is built with its voaacenc PACKAGECONFIG.
RRECOMMENDS:${PN} = "${HINDSIGHT_ENCODER_PLUGINS} ${HINDSIGHT_OE_PLUGINS} gstreamer1.0-plugins-good-soup \
                     glib-networking gstreamer1.0-plugins-base-alsa gstreamer1.0-plugins-base-audioconvert \
                     gstreamer1.0-plugins-base-audioresample gstreamer1.0-plugins-good-audioparsers \
                     gstreamer1.0-plugins-good-alaw gstreamer1.0-plugins-good-mulaw"
# vp8dec (a phone camera's WebM when the browser records neither MP4 nor H.264: the phone page
# prefers those) and opusenc/opusdec (a WebRTC viewer's sound, an RTSP camera's Opus track) need
# libvpx and libopus, which are in meta-oe, and PACKAGECONFIGs OE-core leaves off. A layer that
# changed core recipes would not be Yocto Project compatible, so they are recommended only: with
# meta-oe, add to local.conf
#   PACKAGECONFIG:append:pn-gstreamer1.0-plugins-good = " vpx"
#   PACKAGECONFIG:append:pn-gstreamer1.0-plugins-base = " opus"
HINDSIGHT_OE_PLUGINS = "gstreamer1.0-plugins-good-vpx gstreamer1.0-plugins-base-opus"
