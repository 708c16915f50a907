SUMMARY = "hindsight camera appliance: the daemon and what a board needs to run it"
DESCRIPTION = "Add to an image with IMAGE_INSTALL:append = \" packagegroup-hindsight\"."
BUGTRACKER = "https://github.com/hindsight/hindsight/issues"
SECTION = "multimedia"
LICENSE = "MIT"

PACKAGE_ARCH = "${MACHINE_ARCH}"
inherit packagegroup

RDEPENDS:${PN} = "hindsight"
# v4l2-ctl / media-ctl for camera bring-up; gst-inspect for the encoder check in `hindsight probe`.
RRECOMMENDS:${PN} = "gstreamer1.0-tools v4l-utils"
