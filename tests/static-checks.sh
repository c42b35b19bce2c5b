#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Static checks of the driver, each reported as one TAP test:
# checkpatch --strict on every source file, sparse and W=1 on the in-tree
# build, kernel-doc, an out-of-tree build and a DKMS build and install
# against Debian's 6.12 headers, a Sphinx build of the documentation, the
# blocks of the deployment guide (each checked or marked untested, the
# libvirt domain valid, QEMU 7.2 lacking what the untested ones need), the
# MAINTAINERS entry, the patch for the kernel tree (tests/make-patch.sh)
# applied to a pristine 6.12 tree and built there, and the driver built
# warning-free in the configurations of distributions and build robots.
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

# Debian's newest installed 6.12 headers: the kernel release, or nothing
debian_headers_release() {
	ls -d /usr/src/linux-headers-6.12.*-amd64 2>/dev/null | sort -V |
		tail -n1 | sed 's|.*/linux-headers-||'
}

# The module must also build outside the tree, against a distribution
# kernel whose configuration does not know the driver.
check_out_of_tree() {
	local log=$NVG_OUT/oot.log oot=$NVG_OUT/oot kver kdir

	kver=$(debian_headers_release)
	kdir=/usr/src/linux-headers-$kver
	if [ -z "$kver" ]; then
		echo "no linux-headers-6.12.*-amd64 installed" >"$log"
	else
		rm -rf "$oot"
		mkdir -p "$oot"
		cp "$NVG_REPO"/{Kconfig,Makefile,*.c,*.h} "$oot/"
		{
			make -C "$kdir" M="$oot" W=1 modules >"$log.raw" 2>&1 ||
				echo "out-of-tree build failed"
			grep -E '(warning|error):' "$log.raw"
			[ -f "$oot/nvgrace-gpu-vfio-pci.ko" ] ||
				echo "no nvgrace-gpu-vfio-pci.ko built"
		} >"$log"
	fi
	report "out-of-tree build against linux-headers-${kver:-none}" "$log"
}

# Add, build and install version $2 of module $1 for kernel release $3
# with DKMS, from a copy of the repository in /usr/src; print what is wrong
dkms_install() {
	local name=$1 ver=$2 kver=$3 ko

	mkdir -p "/usr/src/$name-$ver"
	cp "$NVG_REPO"/{Kconfig,Makefile,dkms.conf,*.c,*.h} "/usr/src/$name-$ver/"
	if ! { dkms add "$name/$ver" && dkms build "$name/$ver" -k "$kver" &&
	       dkms install "$name/$ver" -k "$kver"; } >"$NVG_OUT/dkms.raw" 2>&1; then
		tail -n 20 "$NVG_OUT/dkms.raw"
		echo "dkms add, build or install failed"
		return
	fi
	ko=$(ls "/lib/modules/$kver/updates/dkms/$name.ko"* 2>/dev/null)
	if [ -z "$ko" ]; then
		echo "no $name.ko in /lib/modules/$kver/updates/dkms/"
		return
	fi
	[ "$(modinfo -F vermagic "$ko" | cut -d' ' -f1)" = "$kver" ] ||
		echo "$ko: vermagic is not $kver"
	# What modprobe would load for that kernel
	[ "$(modinfo -k "$kver" -n "$name")" = "$ko" ] ||
		echo "modprobe would not load $ko for $kver"
}

# dkms.conf builds the module for a kernel that is not running and installs
# it into updates/dkms/, ahead of the kernel's own module of that name.
# What the check adds to the system is removed again.
check_dkms() {
	local log=$NVG_OUT/dkms.log kver name ver

	kver=$(debian_headers_release)
	name=$(sed -n 's/^PACKAGE_NAME="\(.*\)"$/\1/p' "$NVG_REPO/dkms.conf")
	ver=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"$/\1/p' "$NVG_REPO/dkms.conf")
	if [ -z "$kver" ]; then
		echo "no linux-headers-6.12.*-amd64 installed" >"$log"
	else
		dkms remove "$name/$ver" --all >/dev/null 2>&1
		rm -rf "/usr/src/$name-$ver"
		dkms_install "$name" "$ver" "$kver" >"$log" 2>&1
		dkms remove "$name/$ver" --all >/dev/null 2>&1
		rm -rf "/usr/src/$name-$ver"
	fi
	report "dkms build and install for $name $ver, ${kver:-none}" "$log"
}

# MAINTAINERS.fragment must read back unchanged from the kernel's
# parse-maintainers.pl (tabs, entry order) and name a maintainer, a list,
# a status and files.
check_maintainers() {
	local log=$NVG_OUT/maintainers.log frag=$NVG_REPO/MAINTAINERS.fragment e

	{
		perl "$NVG_KSRC/scripts/parse-maintainers.pl" --order \
			--input "$frag" --output "$NVG_OUT/maintainers.out" ||
			echo "parse-maintainers.pl failed"
		diff "$frag" "$NVG_OUT/maintainers.out"
		for e in M L S F; do
			grep -q "^$e:	" "$frag" || echo "no $e: entry"
		done
	} >"$log" 2>&1
	report "MAINTAINERS.fragment (parse-maintainers.pl)" "$log"
}

# The documentation, built by Sphinx with the kernel's kernel-doc
# extension as the kernel builds it, where the page pulls in the
# kernel-doc of the code by its in-tree path: any warning fails the check.
check_docs() {
	local log=$NVG_OUT/docs.log dir=$NVG_OUT/docs

	rm -rf "$dir"
	mkdir -p "$dir/tree/drivers/vfio/pci" "$dir/conf"
	ln -s "$NVG_REPO" "$dir/tree/drivers/vfio/pci/nvgrace-gpu"
	cat >"$dir/conf/conf.py" <<-EOF
		import sys
		sys.path.insert(0, '$NVG_KSRC/Documentation/sphinx')
		extensions = ['kerneldoc']
		kerneldoc_bin = '$NVG_KSRC/scripts/kernel-doc'
		kerneldoc_srctree = '$dir/tree'
		root_doc = 'vfio-pci-nvgrace-gpu'
		c_id_attributes = ['__user', '__iomem', '__must_check']
	EOF
	sphinx-build -W -q -b html -c "$dir/conf" "$NVG_REPO/Documentation" \
		"$dir/html" >"$log" 2>&1 || echo "sphinx-build failed" >>"$log"
	report "Documentation (sphinx-build -W, with kernel-doc)" "$log"
}

# The deployment guide: every literal block is checked by a test, by its
# name (tests/guide.py), or says why not; no test uses a block the guide
# does not have
check_guide_snippets() {
	local log=$NVG_OUT/guide.log

	python3 "$NVG_REPO/tests/guide.py" check "$NVG_GUIDE" \
		"$NVG_REPO/tests/vm/init" "$NVG_REPO/tests/run-tests.sh" \
		"$NVG_REPO/tests/static-checks.sh" \
		"$NVG_REPO/tests/selftests/nvgrace_nested.c" >"$log" 2>&1
	report "deployment guide: every literal block checked by a test or marked untested" \
		"$log"
}

# The guide's libvirt domain must validate against the schema of Debian's
# libvirt
check_guide_libvirt() {
	local log=$NVG_OUT/guide-libvirt.log out

	rm -rf "$NVG_OUT/guide"
	{
		python3 "$NVG_REPO/tests/guide.py" extract "$NVG_GUIDE" \
			"$NVG_OUT/guide" || echo "tests/guide.py extract failed"
		out=$(virt-xml-validate "$NVG_OUT/guide/libvirt-domain" domain 2>&1) ||
			echo "$out"
	} >"$log" 2>&1
	report "deployment guide: the libvirt domain validates (virt-xml-validate, libvirt $(dpkg-query -W -f='${Version}' libvirt-clients))" \
		"$log"
}

# The guide leaves two QEMU snippets untested because Debian's QEMU 7.2
# lacks what they use: the check fails once it has them
check_guide_qemu_lacks() {
	local log=$NVG_OUT/guide-qemu.log q=qemu-system-aarch64

	{
		"$q" -object help | grep -w acpi-generic-initiator &&
			echo "$q has acpi-generic-initiator: test the guide's MIG snippet"
		"$q" -M virt,help | grep -w highmem-mmio-size &&
			echo "$q has highmem-mmio-size: test the guide's snippet"
	} >"$log" 2>&1
	report "deployment guide: $($q --version | head -n1) lacks what its untested snippets need" \
		"$log"
}

# tests/make-patch.sh makes a patch for the kernel tree; it must apply to
# a pristine tree of Debian's linux-source-6.12 (the unpacked source, hard
# linked, with the upstream driver put back) and build there, with the
# driver and its KUnit suite as modules, without a warning at W=1, and
# pass checkpatch --strict as a patch.
check_intree_patch() {
	local log=$NVG_OUT/intree.log patch=$NVG_OUT/nvgrace-gpu.patch
	local tree=$NVG_CACHE/intree-src out=$NVG_CACHE/out-intree
	local drv=drivers/vfio/pci/nvgrace-gpu o upstream
	local kmake=(make -C "$tree" O="$out" -j"$(nproc)" ARCH=x86
		CC="ccache gcc")

	# Logs its extraction on the first run: not part of the check's log
	upstream=$(nvg_upstream_driver)
	{
		"$NVG_REPO/tests/make-patch.sh" >"$patch" ||
			echo "make-patch.sh failed"
		rm -rf "$tree"
		cp -al "$NVG_KSRC" "$tree"
		rm -rf "${tree:?}/$drv"
		cp -r "$upstream" "$tree/$drv"
		rm -f "$tree/$drv/.nvgrace-source"
		# git apply replaces a file rather than writing into it: the
		# hard links to the unpacked source are not written through
		if (cd "$tree" && git apply --check "$patch"); then
			(cd "$tree" && git apply "$patch")
			rm -rf "${out:?}/$drv"
			"${kmake[@]}" KCONFIG_ALLCONFIG="$NVG_REPO/tests/config/x86_64.config" \
				allnoconfig >/dev/null
			"${kmake[@]}" W=1 "$drv/" >"$log.raw" 2>&1 ||
				echo "in-tree build failed"
			grep -E '(warning|error):' "$log.raw"
			for o in main.o nvgrace_config.o nvgrace_mem.o \
				 tests/nvgrace_kunit.o; do
				[ -f "$out/$drv/$o" ] || echo "no $drv/$o built"
			done
		else
			echo "the patch does not apply to a pristine tree"
		fi
		# The sender adds the Signed-off-by
		"$NVG_KSRC/scripts/checkpatch.pl" --strict --no-tree --quiet \
			--no-summary --ignore MISSING_SIGN_OFF "$patch"
	} >"$log" 2>&1
	report "patch for the kernel tree: applies to pristine 6.12, builds in tree" \
		"$log"
}

# Configurations a distribution or a build robot builds the driver in:
# "NAME ARCH CONFIG=VALUE...", on top of allnoconfig and
# tests/config/matrix.config.  Together they take in THP off, KUnit off,
# the driver built in and as a module, x86_64, and arm64 with 4 KiB and
# with 64 KiB pages.
NVG_MATRIX=(
	"x86_64-thp-off x86_64 CONFIG_TRANSPARENT_HUGEPAGE=n
	 CONFIG_NVGRACE_GPU_VFIO_PCI=m CONFIG_KUNIT=n"
	"x86_64-builtin-kunit x86_64 CONFIG_TRANSPARENT_HUGEPAGE=y
	 CONFIG_NVGRACE_GPU_VFIO_PCI=y CONFIG_KUNIT=y
	 CONFIG_NVGRACE_GPU_VFIO_PCI_KUNIT_TEST=y"
	"arm64-4k-kunit arm64 CONFIG_ARM64_4K_PAGES=y CONFIG_ARM64_VA_BITS_48=y
	 CONFIG_TRANSPARENT_HUGEPAGE=y CONFIG_NVGRACE_GPU_VFIO_PCI=m
	 CONFIG_KUNIT=y CONFIG_NVGRACE_GPU_VFIO_PCI_KUNIT_TEST=m"
	"arm64-64k arm64 CONFIG_ARM64_64K_PAGES=y CONFIG_ARM64_VA_BITS_48=y
	 CONFIG_TRANSPARENT_HUGEPAGE=y CONFIG_NVGRACE_GPU_VFIO_PCI=m
	 CONFIG_KUNIT=n"
	"arm64-64k-thp-off-builtin arm64 CONFIG_ARM64_64K_PAGES=y
	 CONFIG_ARM64_VA_BITS_48=y CONFIG_TRANSPARENT_HUGEPAGE=n
	 CONFIG_NVGRACE_GPU_VFIO_PCI=y CONFIG_KUNIT=n"
)

# Build the driver's directory in the configuration "$@" (an entry of
# NVG_MATRIX) with W=1 and CONFIG_WERROR: any diagnostic, a line of the
# entry that did not hold in the final configuration, or an object that
# was not built fails the check.  The configured and prepared trees stay
# in $NVG_CACHE/matrix, so that a later run rebuilds the driver only.
check_matrix_entry() {
	local name=$1 arch=$2 out=$NVG_CACHE/matrix/$1 log=$NVG_CACHE/matrix/$1.log
	local drv=drivers/vfio/pci/nvgrace-gpu frag karch cross line o objs
	local mk

	shift 2
	case "$arch" in
	x86_64) karch=x86 cross= ;;
	arm64) karch=arm64 cross=aarch64-linux-gnu- ;;
	esac
	mk=(make -C "$NVG_KSRC" O="$out" -j"$(nproc)" ARCH="$karch"
	    CROSS_COMPILE="$cross" CC="ccache ${cross}gcc")
	mkdir -p "$out"
	frag=$out/fragment.config
	{ cat "$NVG_REPO/tests/config/matrix.config"; printf '%s\n' "$@"; } >"$frag"
	objs="main.o nvgrace_config.o nvgrace_mem.o"
	{
		if ! cmp -s "$frag" "$out/.nvgrace-fragment"; then
			"${mk[@]}" KCONFIG_ALLCONFIG="$frag" allnoconfig >/dev/null
			cp "$frag" "$out/.nvgrace-fragment"
		fi
		for line in "$@"; do
			case "$line" in
			*=n) ! grep -qE "^${line%=n}=[ym]" "$out/.config" ;;
			*) grep -qx "$line" "$out/.config" ;;
			esac || echo "$name: $line did not hold"
		done
		rm -rf "${out:?}/$drv"
		"${mk[@]}" W=1 "$drv/" >"$log.raw" 2>&1 || echo "$name: build failed"
		grep -E '(warning|error):' "$log.raw"
		grep -q '^CONFIG_NVGRACE_GPU_VFIO_PCI_KUNIT_TEST=[ym]' "$out/.config" &&
			objs+=" tests/nvgrace_kunit.o"
		for o in $objs; do
			[ -f "$out/$drv/$o" ] || echo "$name: no $drv/$o built"
		done
	} >"$log" 2>&1
	report "driver builds at W=1 with CONFIG_WERROR: $name" "$log"
}

check_matrix() {
	local entry

	for entry in "${NVG_MATRIX[@]}"; do
		# shellcheck disable=SC2086
		check_matrix_entry $entry
	done
}

echo "TAP version 13"
echo "1..$((11 + ${#NVG_MATRIX[@]}))"
check_checkpatch
check_sparse_w1
check_kernel_doc
check_out_of_tree
check_dkms
check_docs
check_guide_snippets
check_guide_libvirt
check_guide_qemu_lacks
check_maintainers
check_intree_patch
check_matrix
echo "# static checks: $((n - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
