#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Static checks of the driver, each reported as one TAP test:
# checkpatch --strict on every source file, sparse and W=1 on the in-tree
# build, kernel-doc, an out-of-tree build against Debian's 6.12 headers,
# and a reStructuredText check of the documentation.
# Needs the tree that tests/build-kernel.sh prepared.

set -uo pipefail
. "$(dirname "$0")/lib.sh"

n=0
failed=0

report() {
	local name=$1 log=$2

	n=$((n + 1))
	if [ -s "$log" ]; then
		sed 's/^/# /' "$log"
		echo "not ok $n $name"
		failed=$((failed + 1))
	else
		echo "ok $n $name"
	fi
}

sources() {
	(cd "$NVG_REPO" && git ls-files -co --exclude-standard \
		'*.c' '*.h' Kconfig Makefile)
}

check_checkpatch() {
	local f log=$NVG_OUT/checkpatch.log

	: >"$log"
	for f in $(sources); do
		"$NVG_KSRC/scripts/checkpatch.pl" --strict --no-tree --quiet \
			--no-summary --ignore FILE_PATH_CHANGES \
			-f "$NVG_REPO/$f" >>"$log" 2>&1
	done
	report "checkpatch --strict" "$log"
}

# Rebuild the driver's objects with W=1 and sparse on every file (C=2):
# any compiler or sparse diagnostic fails the check.
check_sparse_w1() {
	local log=$NVG_OUT/sparse.log

	nvg_make W=1 C=2 drivers/vfio/pci/nvgrace-gpu/ >"$log.raw" 2>&1 ||
		echo "build failed" >>"$log.raw"
	grep -E 'warning|error|build failed' "$log.raw" >"$log"
	report "make W=1 C=2 (sparse)" "$log"
}

check_kernel_doc() {
	local log=$NVG_OUT/kernel-doc.log

	(cd "$NVG_REPO" && "$NVG_KSRC/scripts/kernel-doc" -none -Wall \
		$(sources | grep -v '^tests/selftests/' | grep -E '\.[ch]$')) \
		>"$log" 2>&1
	report "kernel-doc -Wall" "$log"
}

# The module must also build outside the tree, against a distribution
# kernel whose configuration does not know the driver.
check_out_of_tree() {
	local log=$NVG_OUT/oot.log oot=$NVG_OUT/oot kdir

	kdir=$(ls -d /usr/src/linux-headers-6.12.*-amd64 2>/dev/null |
	       sort -V | tail -n1)
	if [ -z "$kdir" ]; then
		echo "no linux-headers-6.12.*-amd64 installed" >"$log"
	else
		rm -rf "$oot"
		mkdir -p "$oot"
		cp "$NVG_REPO"/{Kconfig,Makefile,*.c,*.h} "$oot/"
		{
			make -C "$kdir" M="$oot" W=1 modules >"$log.raw" 2>&1 ||
				echo "out-of-tree build failed"
			grep -E 'warning|error' "$log.raw"
			[ -f "$oot/nvgrace-gpu-vfio-pci.ko" ] ||
				echo "no nvgrace-gpu-vfio-pci.ko built"
		} >"$log"
	fi
	report "out-of-tree build against $(basename "${kdir:-none}")" "$log"
}

# The documentation must be valid reStructuredText
check_rst() {
	local f log=$NVG_OUT/rst.log

	: >"$log"
	for f in "$NVG_REPO"/Documentation/*.rst; do
		/usr/bin/rst2html --strict --report=2 --halt=2 "$f" \
			>/dev/null 2>>"$log" || echo "$f: rst2html failed" >>"$log"
	done
	report "Documentation (rst2html --strict)" "$log"
}

echo "TAP version 13"
echo "1..5"
check_checkpatch
check_sparse_w1
check_kernel_doc
check_out_of_tree
check_rst
echo "# static checks: $((n - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
