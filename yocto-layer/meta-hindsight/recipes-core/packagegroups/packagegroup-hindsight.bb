SUMMARY = "hindsight camera appliance: the daemon and what a board needs to run it"
DESCRIPTION = "Add to an image with IMAGE_INSTALL:append = \" packagegroup-hindsight\"."
BUGTRACKER = "https://github.com/hindsight/hindsight/issues"
SECTION = "multimedia"
LICENSE = "MIT"

PACKAGE_ARCH = "${MACHINE_ARCH}"
# hindsight itself needs systemd: skipped with the same reason when the distro lacks it.
REQUIRED_DISTRO_FEATURES = "systemd"

inherit packagegroup features_check

RDEPENDS:${PN} = "hindsight"
# v4l2-ctl / media-ctl for camera bring-up, not needed at run time: v4l-utils is in meta-oe, so
# recommended only when meta-oe is in the build. (gst-launch-1.0 and gst-inspect-1.0 are in the
# gstreamer1.0 package itself, which hindsight depends on.)
RRECOMMENDS:${PN} = "${@bb.utils.contains('BBFILE_COLLECTIONS', 'openembedded-layer', 'v4l-utils', '', d)}"
