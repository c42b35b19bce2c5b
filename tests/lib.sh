# SPDX-License-Identifier: GPL-2.0-only
# Shared settings and helpers of the nvgrace-gpu-vfio-pci test scripts.
# Sourced, not run.

NVG_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Build products live outside the repository and survive between runs, so
# that a rebuild after a driver change only rebuilds the driver.
NVG_CACHE=${NVGRACE_CACHE:-$HOME/.cache/nvgrace}
NVG_KSRC=$NVG_CACHE/linux-6.12
# The deployment guide, whose snippets the tests extract (tests/guide.py)
NVG_GUIDE=$NVG_REPO/Documentation/vfio-pci-nvgrace-gpu-deployment.rst
# The machine of the test kernel and VM: x86_64 (default), arm64 (64 KiB
# pages and 48-bit VA, the configuration of a Grace host) or arm64-4k (the
# same with 4 KiB pages).  NVG_VM_TIMEOUT: the seconds after which
# run-vm.sh stops a VM that has not powered off, about twice what the test
# mode took with the host's two cores loaded by a kernel build (1190 s
# x86_64, 991 s arm64; arm64-4k, whose 4 KiB pages make TCG slower, took
# 1573 s unloaded), as machines differ by 2x.  A VM that stalls is
# stopped long before, by the watchdog of tests/vm/supervise.py.
NVG_ARCH=${NVG_ARCH:-x86_64}
NVG_OUT=$NVG_CACHE/out-$NVG_ARCH
case "$NVG_ARCH" in
x86_64)
	NVG_KARCH=x86
	NVG_CROSS=
	NVG_IMAGE=arch/x86/boot/bzImage
	NVG_FRAGMENTS=(x86_64.config)
	NVG_VM_TIMEOUT=2400
	;;
arm64 | arm64-4k)
	NVG_KARCH=arm64
	NVG_CROSS=aarch64-linux-gnu-
	NVG_IMAGE=arch/arm64/boot/Image
	NVG_FRAGMENTS=(arm64.config "$NVG_ARCH-pages.config")
	NVG_VM_TIMEOUT=2400
	[ "$NVG_ARCH" = arm64 ] || NVG_VM_TIMEOUT=4800
	;;
*)
	echo "NVG_ARCH must be x86_64, arm64 or arm64-4k, not '$NVG_ARCH'" >&2
	exit 1
	;;
esac
# The watchdog of tests/vm/supervise.py stops a VM whose console printed
# nothing for NVG_VM_SILENCE seconds (the guest's /init prints a heartbeat
# every 30 s), or nothing but heartbeats and kernel lines for NVG_VM_STUCK
NVG_VM_SILENCE=${NVGRACE_VM_SILENCE:-180}
NVG_VM_STUCK=${NVGRACE_VM_STUCK:-900}
# The nested guest's kernel (tests/nested), which both arm64 machines run
NVG_NESTED_OUT=$NVG_CACHE/out-nested
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/nvgrace-ccache}
NVG_TARBALL=/usr/src/linux-source-6.12.tar.xz

# What a kernel splat or a kmemleak report looks like in a console log:
# warnings, BUGs and oopses with the stack trace of either architecture
# (x86 "Call Trace:", arm64 "Call trace:"), the sanitizers, lockdep and
# RCU reports, hung tasks, lockups (of a CPU, a workqueue, a CSD lock),
# allocation failures and panics
NVG_SPLAT_RE='BUG:|WARNING:|Oops|Call [Tt]race:|kernel BUG|KASAN|UBSAN|KFENCE'
NVG_SPLAT_RE+='|INFO: possible|possible circular locking|possible recursive locking'
NVG_SPLAT_RE+='|INFO: lockdep|lock held|suspicious RCU usage|rcu: INFO|INFO: rcu'
NVG_SPLAT_RE+='|hung_task|blocked for more than|soft lockup|hard LOCKUP'
NVG_SPLAT_RE+='|page allocation failure|Unable to handle kernel|general protection fault'
NVG_SPLAT_RE+='|Kernel panic|unreferenced object|non-responsive CSD lock'

nvg_log() {
	printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

nvg_die() {
	nvg_log "error: $*"
	exit 1
}

# Install the Debian packages given as arguments that are not installed yet.
nvg_apt_install() {
	local missing=() p

	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
			grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	nvg_log "apt-get install ${missing[*]}"
	if [ "$(id -u)" -ne 0 ]; then
		nvg_die "need root to install: ${missing[*]}"
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends "${missing[@]}" >/dev/null
}

# Everything the x86_64 rig needs: kernel build, VM, ASL compiler, static
# checkers, guest userland, and the tools that the deployment guide's
# commands and files are checked with.
NVG_PACKAGES=(linux-source-6.12 build-essential bc flex bison libssl-dev
	libelf-dev ccache qemu-system-x86 acpica-tools busybox-static sparse
	cpio kmod xz-utils rsync python3 python3-docutils perl dkms python3-sphinx
	driverctl libvirt-clients libxml2-utils)
# And the arm64 rig: cross compiler and libc, QEMU and its UEFI firmware
NVG_PACKAGES_ARM64=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross
	qemu-system-arm qemu-efi-aarch64)

nvg_make() {
	make -C "$NVG_KSRC" O="$NVG_OUT" -j"$(nproc)" ARCH="$NVG_KARCH" \
		CROSS_COMPILE="$NVG_CROSS" CC="ccache ${NVG_CROSS}gcc" \
		KBUILD_BUILD_TIMESTAMP=nvgrace KBUILD_BUILD_USER=nvgrace \
		KBUILD_BUILD_HOST=rig "$@"
}

# The upstream driver's directory drivers/vfio/pci/nvgrace-gpu, extracted
# once from the source tarball (the unpacked tree has this repository in its
# place): print its path
nvg_upstream_driver() {
	local id dir=$NVG_CACHE/upstream-nvgrace-gpu
	local member=linux-source-6.12/drivers/vfio/pci/nvgrace-gpu

	id=$(stat -c '%s %Y' "$NVG_TARBALL")
	if [ ! -f "$dir/.nvgrace-source" ] ||
	   [ "$(cat "$dir/.nvgrace-source")" != "$id" ]; then
		nvg_log "extracting the upstream driver from $NVG_TARBALL"
		rm -rf "$dir" "$NVG_CACHE/linux-source-6.12"
		tar -xJf "$NVG_TARBALL" -C "$NVG_CACHE" "$member"
		mv "$NVG_CACHE/$member" "$dir"
		rm -rf "$NVG_CACHE/linux-source-6.12"
		echo "$id" >"$dir/.nvgrace-source"
	fi
	echo "$dir"
}

# Print the lines of section $2 ("=== NVG-BEGIN $2 ===" ... "=== NVG-END $2
# ===") of the VM console log $1.
nvg_section() {
	sed -n "/^=== NVG-BEGIN $2 ===\$/,/^=== NVG-END $2 ===\$/p" "$1" |
		sed '1d;$d'
}

# Download the .deb of packages $2... into folder $1
nvg_download() {
	(cd "$1" && shift && apt-get download -qq -o APT::Sandbox::User=root "$@")
}

# Download the arm64 packages $2... into folder $1 and unpack them there
# (dpkg -x: nothing is installed on the host)
nvg_arm64_unpack() {
	local dir=$1 p pkgs=()

	shift
	for p in "$@"; do
		pkgs+=("$p:arm64")
	done
	dpkg --print-foreign-architectures | grep -qx arm64 || {
		dpkg --add-architecture arm64
		apt-get update -qq
	}
	rm -rf "$dir"
	mkdir -p "$dir/deb"
	# Package lists may be stale: update once if the first try fails
	nvg_download "$dir/deb" "${pkgs[@]}" ||
		{ apt-get update -qq && nvg_download "$dir/deb" "${pkgs[@]}"; } ||
		return 1
	for p in "$dir"/deb/*.deb; do
		dpkg-deb -x "$p" "$dir"
	done
}

# The arm64 guest runs Debian's arm64 busybox-static, unpacked from its
# package into $NVG_CACHE (the host's own busybox is x86_64).
nvg_arm64_busybox() {
	local dir=$NVG_CACHE/busybox-arm64

	if [ ! -x "$dir/bin/busybox" ]; then
		nvg_arm64_unpack "$dir" busybox-static ||
			nvg_die "cannot download busybox-static:arm64"
	fi
	echo "$dir/bin/busybox"
}

# Debian's arm64 QEMU, for the nested guest of the arm64 test machine, and
# the programs that the deployment guide's commands run there (bash for
# driverctl, getconf, acpidump, iasl): those packages and every package
# they depend on, at any depth, unpacked into $NVG_CACHE; print the folder
nvg_arm64_userland() {
	local dir=$NVG_CACHE/userland-arm64 pkgs p
	local want=(qemu-system-arm bash libc-bin acpica-tools)

	if [ ! -x "$dir/usr/bin/qemu-system-aarch64" ] || [ ! -x "$dir/bin/bash" ] ||
	   [ ! -x "$dir/usr/bin/getconf" ] || [ ! -x "$dir/usr/bin/iasl" ]; then
		nvg_arm64_busybox >/dev/null
		pkgs=$(for p in "${want[@]}"; do echo "$p:arm64"; done |
			xargs apt-cache depends --recurse --no-recommends \
			--no-suggests --no-conflicts --no-breaks --no-replaces \
			--no-enhances | sed -n 's/^\([a-z0-9][^ ]*\):arm64$/\1/p' |
			sort -u)
		nvg_log "downloading Debian's arm64 QEMU and tools ($(echo "$pkgs" | wc -l) packages)"
		# shellcheck disable=SC2086
		nvg_arm64_unpack "$dir" $pkgs ||
			nvg_die "cannot download ${want[*]} for arm64"
	fi
	echo "$dir"
}
