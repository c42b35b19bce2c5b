#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The benchmark: in one boot of the emulated Grace Hopper machine, measure
# the upstream 6.12 driver and then this one on the same device (mmap
# latency, first touch and its faults and page tables, a second pass,
# pread/pwrite bandwidth against memcpy), and print one table with the
# ratios.  Not a test: nothing is asserted about time.
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

UPSTREAM_SRC=$NVG_CACHE/upstream-nvgrace-gpu
UPSTREAM=$NVG_OUT/upstream

# The upstream driver's directory, from the source tarball (the unpacked
# tree has this repository in its place)
extract_upstream() {
	local id member=linux-source-6.12/drivers/vfio/pci/nvgrace-gpu

	id=$(stat -c '%s %Y' "$NVG_TARBALL")
	if [ -f "$UPSTREAM_SRC/.nvgrace-source" ] &&
	   [ "$(cat "$UPSTREAM_SRC/.nvgrace-source")" = "$id" ]; then
		return 0
	fi
	nvg_log "extracting the upstream driver from $NVG_TARBALL"
	rm -rf "$UPSTREAM_SRC" "$NVG_CACHE/linux-source-6.12"
	tar -xJf "$NVG_TARBALL" -C "$NVG_CACHE" "$member"
	mv "$NVG_CACHE/$member" "$UPSTREAM_SRC"
	rm -rf "$NVG_CACHE/linux-source-6.12"
	echo "$id" >"$UPSTREAM_SRC/.nvgrace-source"
}

build_upstream() {
	mkdir -p "$UPSTREAM"
	rsync -c "$UPSTREAM_SRC/main.c" "$UPSTREAM/main.c"
	cat >"$UPSTREAM/Kbuild" <<'KBUILD'
obj-m := nvgrace-gpu-vfio-pci-upstream.o
nvgrace-gpu-vfio-pci-upstream-y := main.o
KBUILD
	nvg_make M="$UPSTREAM" modules >"$UPSTREAM.log" 2>&1 ||
		{ cat "$UPSTREAM.log"; nvg_die "upstream driver build failed"; }
}

main() {
	nvg_apt_install "${NVG_PACKAGES[@]}"
	[ "$NVG_ARCH" = arm64 ] && nvg_apt_install "${NVG_PACKAGES_ARM64[@]}"
	"$NVG_REPO/tests/build-kernel.sh"
	extract_upstream
	build_upstream
	export NVGRACE_QEMU_CPU=${NVGRACE_QEMU_CPU:-max,-erms,-fsrm}
	"$NVG_REPO/tests/vm/run-vm.sh" bench
	[ "$NVG_ARCH" = x86_64 ] && echo "guest CPU: -cpu $NVGRACE_QEMU_CPU"
	nvg_section "$NVG_OUT/vm/bench.log" bench
}

main "$@"
