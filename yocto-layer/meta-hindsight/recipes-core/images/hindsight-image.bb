# nooelint: oelint.var.suggestedvar.CVE_PRODUCT - an image, not software with CVEs of its own
SUMMARY = "A minimal bootable image with the hindsight camera appliance"
DESCRIPTION = "Console image with systemd, hindsight and the board's camera and encoder stack."
BUGTRACKER = "https://github.com/hindsight/hindsight/issues"
SECTION = "images"
LICENSE = "MIT"

IMAGE_FEATURES += "ssh-server-dropbear"
IMAGE_INSTALL = "packagegroup-core-boot packagegroup-hindsight ${CORE_IMAGE_EXTRA_INSTALL}"

# hindsight runs as a systemd service: without the systemd distro feature BitBake skips this
# image with "missing required distro feature 'systemd'"; set INIT_MANAGER = "systemd" in
# local.conf (or your distro).
REQUIRED_DISTRO_FEATURES = "systemd"

inherit core-image features_check
