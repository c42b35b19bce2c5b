#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The benchmark: in one boot of the emulated Grace Hopper machine, measure
# the upstream 6.12 driver and then this one on the same device (mmap
# latency, first touch and its faults and page tables, a second pass,
# pread/pwrite bandwidth against memcpy), and print one table with the
# ratios; then, for the real-sized GPUs, the mmap() of each whole region,
# a read per 2 MiB and, on x86_64, the mapping for peer-to-peer DMA (type1
# and iommufd).  Not a test: nothing is asserted about time.
#
# The upstream driver is built from Debian's linux-source-6.12 as an
# external module named nvgrace-gpu-vfio-pci-upstream, so that both drivers
# can be loaded at once and the device bound to one after the other.
# NVG_ARCH=arm64 runs it on the arm64 machine.
#
# The x86_64 guest CPU is "max" without ERMS and FSRM, unless
# NVGRACE_QEMU_CPU says otherwise.  With them, the kernel copies to and
# from user memory with "rep movsb", which TCG emulates one byte per
# iteration: every kernel copy (a tmpfs read as much as the drivers') then
# runs at a tenth of what the guest's memcpy() reaches with vector
# registers, and the comparison with memcpy() would measure QEMU.  Without
# them the kernel uses "rep movsq".  "max" keeps pdpe1gb for 1 GiB pages.

set -euo pipefail
. "$(dirname "$0")/lib.sh"

UPSTREAM=$NVG_OUT/upstream

build_upstream() {
	mkdir -p "$UPSTREAM"
	rsync -c "$(nvg_upstream_driver)/main.c" "$UPSTREAM/main.c"
	cat >"$UPSTREAM/Kbuild" <<'KBUILD'
obj-m := nvgrace-gpu-vfio-pci-upstream.o
nvgrace-gpu-vfio-pci-upstream-y := main.o
KBUILD
	nvg_make M="$UPSTREAM" modules >"$UPSTREAM.log" 2>&1 ||
		{ cat "$UPSTREAM.log"; nvg_die "upstream driver build failed"; }
}

main() {
	nvg_apt_install "${NVG_PACKAGES[@]}"
	[ "$NVG_KARCH" = arm64 ] && nvg_apt_install "${NVG_PACKAGES_ARM64[@]}"
	"$NVG_REPO/tests/build-kernel.sh"
	build_upstream
	export NVGRACE_QEMU_CPU=${NVGRACE_QEMU_CPU:-max,-erms,-fsrm}
	"$NVG_REPO/tests/vm/run-vm.sh" bench
	[ "$NVG_ARCH" = x86_64 ] && echo "guest CPU: -cpu $NVGRACE_QEMU_CPU"
	nvg_section "$NVG_OUT/vm/bench.log" bench
	echo
	echo "real-sized GPUs, all of each region:"
	nvg_section "$NVG_OUT/vm/bench.log" scale
}

main "$@"
