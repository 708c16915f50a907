# nooelint: oelint.var.suggestedvar.CVE_PRODUCT - an image, not software with CVEs of its own
SUMMARY = "A minimal bootable image with the hindsight camera appliance"
DESCRIPTION = "Console image with systemd, hindsight and the board's camera and encoder stack."
BUGTRACKER = "https://github.com/hindsight/hindsight/issues"
SECTION = "images"
LICENSE = "MIT"

IMAGE_FEATURES += "ssh-server-dropbear"
IMAGE_INSTALL = "packagegroup-core-boot packagegroup-hindsight ${CORE_IMAGE_EXTRA_INSTALL}"

inherit core-image
