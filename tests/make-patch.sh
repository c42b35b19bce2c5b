#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Turn this repository into a patch against Debian's linux-source-6.12
# (Linux 6.12.y as Debian ships it, whose driver of the same name carries
# backports beyond v6.12) that replaces the upstream driver:
# the driver's files in drivers/vfio/pci/nvgrace-gpu/ (Kconfig, Makefile,
# sources, the KUnit suite), its page and the deployment guide that the
# page includes in Documentation/driver-api/, with an entry in that index,
# and its MAINTAINERS entry.  The README, dkms.conf, .ci and the test rig
# stay out.  drivers/vfio/pci/Kconfig and Makefile of
# 6.12 already hook the directory in; the patch adds the hooks to a tree
# that lacks them.
#
# Usage: make-patch.sh [KERNEL_TREE] >nvgrace-gpu.patch
#	KERNEL_TREE defaults to the unpacked source of the test kernel, with
#	the upstream driver put back in its place.  The patch is from the
#	repository's git identity and carries no Signed-off-by: whoever
#	sends it adds their own.  It is made of the files as they are in the
#	working tree, which it warns about when they differ from HEAD.

set -euo pipefail
. "$(dirname "$0")/lib.sh"

DRV=drivers/vfio/pci/nvgrace-gpu
DOC=Documentation/driver-api
# The files of the base tree that the patch may touch
BASE_FILES=(MAINTAINERS "$DOC/index.rst" drivers/vfio/pci/Kconfig
	drivers/vfio/pci/Makefile)
WORK=

# Copy the base files of tree $1, and its driver directory, into $2
copy_base() {
	local src=$1 dst=$2 f

	for f in "${BASE_FILES[@]}"; do
		mkdir -p "$dst/$(dirname "$f")"
		cp "$src/$f" "$dst/$f"
	done
	mkdir -p "$dst/$DRV"
	if [ "$src" = "$NVG_KSRC" ]; then
		cp -r "$(nvg_upstream_driver)"/. "$dst/$DRV/"
		rm -f "$dst/$DRV/.nvgrace-source"
	elif [ -d "$src/$DRV" ]; then
		cp -r "$src/$DRV"/. "$dst/$DRV/"
	fi
}

# Put this repository's driver files and page into the tree $1
copy_driver() {
	local t=$1

	rm -rf "${t:?}/$DRV"
	mkdir -p "$t/$DRV/tests"
	(cd "$NVG_REPO" && git ls-files Kconfig Makefile '*.c' '*.h' |
		grep -v / | xargs cp -t "$t/$DRV/")
	cp "$NVG_REPO/tests/nvgrace_kunit.c" "$t/$DRV/tests/"
	cp "$NVG_REPO"/Documentation/vfio-pci-nvgrace-gpu*.rst "$t/$DOC/"
	# In the tree, the Kconfig symbol is always known: drop the block
	# (and the blank line after it) for builds outside the tree
	awk '/^# Built outside the kernel tree/ { skip = 1 }
	     skip == 2 && /^$/ { skip = 0; next }
	     skip == 1 && /^endif$/ { skip = 2; next }
	     !skip' "$NVG_REPO/Makefile" >"$t/$DRV/Makefile"
}

# The index entry, after the other VFIO pages, once
add_doc_index() {
	local index=$1/$DOC/index.rst

	grep -qx '   vfio-pci-nvgrace-gpu' "$index" && return 0
	grep -qx '   vfio-pci-device-specific-driver-acceptance' "$index" ||
		nvg_die "$DOC/index.rst has no VFIO pages to add the entry to"
	sed -i '/^   vfio-pci-device-specific-driver-acceptance$/a\   vfio-pci-nvgrace-gpu' \
		"$index"
}

# Replace the MAINTAINERS entry of the driver with MAINTAINERS.fragment
replace_maintainers() {
	local m=$1/MAINTAINERS title

	title=$(head -n1 "$NVG_REPO/MAINTAINERS.fragment")
	grep -qx "$title" "$m" ||
		nvg_die "MAINTAINERS has no '$title' entry to replace"
	awk -v title="$title" -v frag="$NVG_REPO/MAINTAINERS.fragment" '
		$0 == title { skip = 1; while ((getline l < frag) > 0) print l; next }
		skip && /^$/ { skip = 0 }
		!skip' "$m" >"$m.new"
	mv "$m.new" "$m"
}

# The kbuild hooks of the directory, where the tree lacks them
add_hooks() {
	local k=$1/drivers/vfio/pci/Kconfig mk=$1/drivers/vfio/pci/Makefile

	grep -q "^source \"$DRV/Kconfig\"" "$k" ||
		sed -i "/^endmenu/i source \"$DRV/Kconfig\"\n" "$k"
	grep -q 'obj-$(CONFIG_NVGRACE_GPU_VFIO_PCI) += nvgrace-gpu/' "$mk" ||
		echo 'obj-$(CONFIG_NVGRACE_GPU_VFIO_PCI) += nvgrace-gpu/' >>"$mk"
}

commit_message() {
	cat <<'MSG'
vfio/nvgrace-gpu: Replace the driver for the GPU of NVIDIA Grace Superchips

The GPU of an NVIDIA Grace Hopper (GH200) or Grace Blackwell (GB200,
GB300) superchip reaches its memory over a cache-coherent chip-to-chip
link, as a host physical range that firmware describes in ACPI.  This
driver presents that memory to user space as emulated 64-bit
prefetchable BARs: usemem (cacheable, BAR4) and, on a GPU with the MIG
hardware defect that an NVIDIA DVSEC tells apart, resmem
(write-combining, BAR2); otherwise BAR2 is the GPU's own BAR1, passed
through.  The GPU memory is touched only once BAR0 reports it ready, at
probe and after every reset.

The driver is split by concern (device ops, config space emulation,
device memory), serves read and write without a bounce buffer, maps
the memory with PMD and PUD entries where alignment allows, and comes
with KUnit tests and a driver-api page that pulls in its kernel-doc.
MSG
}

main() {
	local base=${1:-$NVG_KSRC} work

	[ -f "$base/MAINTAINERS" ] || nvg_die "$base is not a kernel tree"
	[ -z "$(git -C "$NVG_REPO" status --porcelain -- Kconfig Makefile \
		'*.[ch]' Documentation MAINTAINERS.fragment)" ] ||
		nvg_log "warning: the patch has changes not committed to $NVG_REPO"
	WORK=$(mktemp -d)
	trap 'rm -rf "$WORK"' EXIT
	work=$WORK
	copy_base "$base" "$work"
	git -C "$work" init -q
	git -C "$work" add -A
	git -C "$work" -c user.name=base -c user.email=base@localhost \
		commit -q -m base
	copy_driver "$work"
	add_doc_index "$work"
	replace_maintainers "$work"
	add_hooks "$work"
	git -C "$work" add -A
	GIT_AUTHOR_NAME=$(git -C "$NVG_REPO" config user.name) \
	GIT_AUTHOR_EMAIL=$(git -C "$NVG_REPO" config user.email) \
	GIT_COMMITTER_NAME=$(git -C "$NVG_REPO" config user.name) \
	GIT_COMMITTER_EMAIL=$(git -C "$NVG_REPO" config user.email) \
		git -C "$work" commit -q -F - < <(commit_message)
	git -C "$work" format-patch -1 --stdout --no-signature
}

main "$@"
