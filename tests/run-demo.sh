#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The main job: build the test kernel with the driver, boot the emulated
# Grace Hopper machine, load the driver with modprobe, bind the GPU through
# driver_override, and print what user space sees of it.

set -euo pipefail
. "$(dirname "$0")/lib.sh"

nvg_apt_install "${NVG_PACKAGES[@]}"
"$NVG_REPO/tests/build-kernel.sh"
"$NVG_REPO/tests/vm/run-vm.sh" demo
nvg_section "$NVG_OUT/vm/demo.log" demo
