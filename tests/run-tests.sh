#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The test command: runs the static checks, then for x86_64 and arm64 builds
# the test kernel with the driver, boots the emulated Grace Hopper machine,
# runs the KUnit suites and the kselftest there, and checks the guest's log
# for kernel splats.  NVG_ARCHES="x86_64" (or "arm64") runs one only.
# Ends with one line "N passed, N failed, N skipped"; exits non-zero on any
# failure.  Safe to run again: builds are incremental.

set -uo pipefail
. "$(dirname "$0")/lib.sh"

# The KUnit suites this repository ships; each must report
NVG_KUNIT_SUITES="nvgrace_gpu_mem nvgrace_gpu_config"

declare -A NVG_FUZZ_OPS=([x86_64]=1000000 [arm64]=300000)

passed=0
failed=0
skipped=0

# Add "pass fail skip" counts of one suite to the totals
tally() {
	passed=$((passed + $1))
	failed=$((failed + $2))
	skipped=$((skipped + ${3:-0}))
}

finish() {
	echo "$passed passed, $failed failed, $skipped skipped"
	[ "$failed" -eq 0 ]
	exit
}

# Debian's headers package of its newest 6.12 kernel, for the out-of-tree
# check; empty when the package lists do not know one
newest_headers() {
	apt-cache search --names-only \
		'^linux-headers-6\.12\.[0-9.]+\+deb12-amd64$' 2>/dev/null |
		cut -d' ' -f1 | sort -V | tail -n1
}

install_packages() {
	local headers

	nvg_apt_install "${NVG_PACKAGES[@]}" "${NVG_PACKAGES_ARM64[@]}"
	headers=$(newest_headers)
	if [ -z "$headers" ]; then
		apt-get update -qq
		headers=$(newest_headers)
	fi
	[ -n "$headers" ] && nvg_apt_install "$headers"
}

static_checks() {
	local out

	out=$("$NVG_REPO/tests/static-checks.sh")
	echo "$out"
	tally "$(grep -c '^ok ' <<<"$out")" "$(grep -c '^not ok ' <<<"$out")"
}

# A splat anywhere in the guest's console log fails the run
splat_check() {
	local log=$1 hits

	hits=$(grep -nE "$NVG_SPLAT_RE" "$log")
	if [ -n "$hits" ]; then
		echo "not ok - kernel splats in $log:"
		echo "$hits" | head -n 40 | sed 's/^/# /'
		tally 0 1
	else
		echo "ok - no kernel splat in $log"
		tally 1 0
	fi
}

# The number after "$1: " in the summary line $2, 0 when absent
count() {
	grep -oE "$1: [0-9]+" <<<"$2" | grep -oE '[0-9]+' || echo 0
}

# One KTAP document per suite (its debugfs results file): parse each with
# kunit.py and add up the counts.
kunit_results() {
	local log=$1 dir=$2/kunit doc out summary suite

	rm -rf "$dir"
	mkdir -p "$dir"
	nvg_section "$log" kunit |
		awk -v dir="$dir" '/^KTAP version/ { n++ } n { print > (dir "/" n ".ktap") }'
	for suite in $NVG_KUNIT_SUITES; do
		if ! grep -qx "ok [0-9]* $suite" "$dir"/*.ktap 2>/dev/null &&
		   ! grep -qx "not ok [0-9]* $suite" "$dir"/*.ktap 2>/dev/null; then
			echo "not ok - KUnit suite $suite did not run"
			tally 0 1
		fi
	done
	for doc in "$dir"/*.ktap; do
		[ -f "$doc" ] || continue
		out=$(python3 "$NVG_KSRC/tools/testing/kunit/kunit.py" parse \
		      "$doc" 2>&1)
		echo "$out"
		summary=$(grep -oE 'Ran [0-9]+ tests?: .*' <<<"$out" | tail -n1)
		if [ -z "$summary" ]; then
			echo "not ok - KUnit: cannot parse $doc"
			tally 0 1
			continue
		fi
		tally "$(count passed "$summary")" \
		      "$(($(count failed "$summary") + $(count crashed "$summary") +
			  $(count errors "$summary")))" \
		      "$(count skipped "$summary")"
	done
}

# The kselftest section $3 of the log $1: its totals, and its exit status
kselftest_results() {
	local log=$1 tap=$2/$3.tap totals

	nvg_section "$log" "$3" >"$tap"
	cat "$tap"
	totals=$(grep -E '^# Totals: ' "$tap" | tail -n1)
	if [ -z "$totals" ]; then
		echo "not ok - kselftest $3 did not finish"
		tally 0 1
		return
	fi
	tally "$(sed -E 's/.* pass:([0-9]+).*/\1/' <<<"$totals")" \
	      "$(sed -E 's/.* fail:([0-9]+).*/\1/' <<<"$totals")" \
	      "$(sed -E 's/.* skip:([0-9]+).*/\1/' <<<"$totals")"
	grep -q '^exit status 0$' "$tap" || tally 0 1
}

# Plain "ok"/"not ok" lines of section $2 of the log $1
tap_results() {
	local out

	out=$(nvg_section "$1" "$2")
	echo "$out"
	if ! grep -qE '^(not )?ok ' <<<"$out"; then
		echo "not ok - $2 did not report"
		tally 0 1
		return
	fi
	tally "$(grep -c '^ok ' <<<"$out")" "$(grep -c '^not ok ' <<<"$out")"
}

# Build, boot and test one architecture
test_arch() {
	local arch=$1 vm=$NVG_CACHE/out-$1/vm

	echo "# ---- $arch ----"
	if ! NVG_ARCH=$arch "$NVG_REPO/tests/build-kernel.sh"; then
		tally 0 1
		return
	fi
	# The fuzzer's operation count: 10^6 where they fit CI's time budget,
	# less in the slower arm64 guest
	if ! NVG_ARCH=$arch NVGRACE_FUZZ_OPS=${NVG_FUZZ_OPS[$arch]} \
	     "$NVG_REPO/tests/vm/run-vm.sh" test; then
		tally 0 1
		[ -f "$vm/test.log" ] && tail -n 60 "$vm/test.log"
		return
	fi
	splat_check "$vm/test.log"
	kunit_results "$vm/test.log" "$vm"
	kselftest_results "$vm/test.log" "$vm" kselftest
	kselftest_results "$vm/test.log" "$vm" stress
	tap_results "$vm/test.log" reload
	tap_results "$vm/test.log" guard
	# QEMU in the guest is the host's, an x86_64 program
	if [ "$arch" = x86_64 ]; then
		tap_results "$vm/test.log" qemu
	fi
}

main() {
	local arch

	install_packages || { echo "package installation failed"; tally 0 1; finish; }
	# The static checks use the x86_64 tree
	if NVG_ARCH=x86_64 "$NVG_REPO/tests/build-kernel.sh"; then
		static_checks
	else
		tally 0 1
	fi
	for arch in ${NVG_ARCHES:-x86_64 arm64}; do
		test_arch "$arch"
	done
	finish
}

main
