#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Build the test kernel for $NVG_ARCH (x86_64, or arm64 cross-compiled,
# with 64 KiB or 4 KiB pages): Debian's linux-source-6.12 with this
# repository overlaid as drivers/vfio/pci/nvgrace-gpu/, configured from the
# fragments of tests/config/ that lib.sh names for it, on top of
# allnoconfig.  Source and objects are
# kept under $NVGRACE_CACHE (default ~/.cache/nvgrace) and compiled through
# ccache, so a run after a driver-only change rebuilds only the driver.
#
# Outputs: the kernel image ($NVG_OUT/$NVG_IMAGE), the modules installed
# below $NVG_OUT/modroot, the uAPI headers below $NVG_OUT/usr/include and
# the test helper modules tests/{pte_probe,guard,dvsec,control,aer} (and
# on arm64 tests/stage2) as $NVG_OUT/<name>/*.ko; on arm64 also the nested
# guest's kernel, $NVG_NESTED_OUT/arch/arm64/boot/Image.

set -euo pipefail
. "$(dirname "$0")/lib.sh"

# The fragments of the machine, one after the other
FRAGMENT=$NVG_OUT/fragment.config

unpack_source() {
	local id

	id=$(stat -c '%s %Y' "$NVG_TARBALL")
	if [ -f "$NVG_KSRC/.nvgrace-source" ] &&
	   [ "$(cat "$NVG_KSRC/.nvgrace-source")" = "$id" ]; then
		return 0
	fi
	nvg_log "unpacking $NVG_TARBALL"
	rm -rf "$NVG_KSRC" "$NVG_CACHE"/out-* "$NVG_CACHE/linux-source-6.12"
	mkdir -p "$NVG_CACHE"
	tar -xJf "$NVG_TARBALL" -C "$NVG_CACHE"
	mv "$NVG_CACHE/linux-source-6.12" "$NVG_KSRC"
	# The upstream driver of the same name is replaced, not merged.
	rm -rf "$NVG_KSRC/drivers/vfio/pci/nvgrace-gpu"
	echo "$id" >"$NVG_KSRC/.nvgrace-source"
}

# Copy the driver's kbuild files into the tree.  rsync -c leaves files whose
# content did not change untouched, so make sees only real changes.
overlay_driver() {
	mkdir -p "$NVG_KSRC/drivers/vfio/pci/nvgrace-gpu"
	rsync -rc --delete \
		--include='/Kconfig' --include='/Makefile' \
		--include='/*.[ch]' --include='/tests/' \
		--include='/tests/nvgrace_kunit.c' --exclude='*' \
		"$NVG_REPO/" "$NVG_KSRC/drivers/vfio/pci/nvgrace-gpu/"
}

# Every line of the fragment must hold in the final .config: a symbol that
# Kconfig dropped (unmet dependency, renamed option) fails the build here
# instead of silently testing less.
check_config() {
	local line sym val bad=0

	while IFS= read -r line; do
		case "$line" in CONFIG_*=*) ;; *) continue ;; esac
		sym=${line%%=*}
		val=${line#*=}
		if [ "$val" = n ]; then
			grep -qx "$sym=[ym]" "$NVG_OUT/.config" || continue
		else
			grep -qx "$sym=$val" "$NVG_OUT/.config" && continue
		fi
		nvg_log "config: $line did not survive"
		bad=1
	done <"$FRAGMENT"
	return $bad
}

# Configure $NVG_OUT from allnoconfig and the fragments $NVG_FRAGMENTS of
# tests/config, unless it was made from the same fragments
configure() {
	local want f

	mkdir -p "$NVG_OUT"
	for f in "${NVG_FRAGMENTS[@]}"; do
		cat "$NVG_REPO/tests/config/$f"
	done >"$FRAGMENT"
	want=$(sha256sum "$FRAGMENT" | cut -d' ' -f1)
	if [ -f "$NVG_OUT/.config" ] && [ -f "$NVG_OUT/.nvgrace-fragment" ] &&
	   [ "$(cat "$NVG_OUT/.nvgrace-fragment")" = "$want" ]; then
		return 0
	fi
	nvg_log "configuring (allnoconfig + ${NVG_FRAGMENTS[*]})"
	nvg_make KCONFIG_ALLCONFIG="$FRAGMENT" allnoconfig >/dev/null
	check_config || nvg_die "kernel configuration is incomplete"
	echo "$want" >"$NVG_OUT/.nvgrace-fragment"
}

# A test-only helper module tests/$1, built as an external module against
# the test kernel, from a copy so that no build product lands in the
# repository
build_helper() {
	rsync -rc --delete "$NVG_REPO/tests/$1/" "$NVG_OUT/$1/"
	nvg_make M="$NVG_OUT/$1" modules >"$NVG_OUT/$1.log" 2>&1 ||
		{ cat "$NVG_OUT/$1.log"; nvg_die "$1 build failed"; }
}

# The nested guest's kernel (tests/config/nested.config), in its own
# folder; the driver is not in it
build_nested_kernel() {
	(
		NVG_OUT=$NVG_NESTED_OUT
		FRAGMENT=$NVG_OUT/fragment.config
		NVG_FRAGMENTS=(nested.config)
		configure
		nvg_log "building the nested guest's kernel"
		nvg_make Image >"$NVG_OUT/build.log" 2>&1 ||
			{ tail -n 40 "$NVG_OUT/build.log";
			  nvg_die "nested guest kernel build failed"; }
	)
}

main() {
	local start=$SECONDS

	nvg_apt_install "${NVG_PACKAGES[@]}"
	[ "$NVG_KARCH" = arm64 ] && nvg_apt_install "${NVG_PACKAGES_ARM64[@]}"
	unpack_source
	overlay_driver
	configure
	nvg_log "building kernel and modules"
	nvg_make "$(basename "$NVG_IMAGE")" modules >"$NVG_OUT/build.log" 2>&1 ||
		{ tail -n 40 "$NVG_OUT/build.log"; nvg_die "kernel build failed"; }
	rm -rf "$NVG_OUT/modroot"
	nvg_make INSTALL_MOD_PATH="$NVG_OUT/modroot" modules_install >/dev/null
	nvg_make INSTALL_HDR_PATH="$NVG_OUT/usr" headers_install >/dev/null
	build_helper pte_probe
	build_helper guard
	build_helper dvsec
	build_helper control
	build_helper aer
	if [ "$NVG_KARCH" = arm64 ]; then
		build_helper stage2
		build_nested_kernel
	fi
	nvg_log "kernel built in $((SECONDS - start)) s"
}

main "$@"
