#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The test command: runs the static checks, then for x86_64 and arm64 builds
# the test kernel with the driver, boots the emulated Grace Hopper machine,
# runs the KUnit suites and the kselftests there, and checks the guest's log
# for kernel splats and kmemleak reports.  Every suite must give as many
# results as tests/manifest says.  The machines are x86_64 and arm64 (64 KiB
# pages); NVG_ARCHES="x86_64" (or "arm64") runs one only, and
# NVG_ARCHES="arm64-4k" the arm64 machine with 4 KiB pages, which the
# default run leaves out for CI's time.  Ends with one line "N passed,
# N failed, N skipped"; exits non-zero on any failure.  Safe to run again:
# builds are incremental.

set -uo pipefail
. "$(dirname "$0")/lib.sh"

# How many results each suite gives: see the file's head
NVG_MANIFEST=$NVG_REPO/tests/manifest

declare -A NVG_FUZZ_OPS=([x86_64]=1000000 [arm64]=300000 [arm64-4k]=300000)

passed=0
failed=0
skipped=0
# "ARCH SUITE" of every suite that reported, for the check at the end
reported=()
# One line per test VM that ran again after an emulator stall
retries=()

# Add "pass fail skip" counts to the totals
tally() {
	passed=$((passed + $1))
	failed=$((failed + $2))
	skipped=$((skipped + ${3:-0}))
}

# A failure that is not a test's own: a suite that did not run, or ran
# other than tests/manifest says
fail() {
	echo "not ok - $*"
	tally 0 1
}

# The number of results that tests/manifest gives suite $2 on $1, or
# nothing when it does not list it
manifest_results() {
	awk -v a="$1" -v s="$2" '$1 == "results" && $2 == a && $3 == s { print $4 }' \
		"$NVG_MANIFEST"
}

# How many results of suite $3 on $2 tests/manifest lets be of kind $1
# (skip or xfail), with a reason
manifest_allows() {
	awk -v k="$1" -v a="$2" -v s="$3" '$1 == k && $2 == a && $3 == s { n += $4 }
		END { print n + 0 }' "$NVG_MANIFEST"
}

# Account for the results of suite $2 on $1 (host: the static checks):
# $3 passed, $4 failed, $5 skipped, $6 failed as expected (xfail).  It
# must give as many results as tests/manifest says, and skip or fail as
# expected no more than the manifest lists with a reason.
account() {
	local arch=$1 suite=$2 npass=$3 nfail=$4 nskip=$5 nxfail=${6:-0}
	local ran=$((npass + nfail + nskip + nxfail)) want allowed

	reported+=("$arch $suite")
	want=$(manifest_results "$arch" "$suite")
	if [ -z "$want" ]; then
		fail "$suite ($arch) is not in tests/manifest"
	elif [ "$ran" -ne "$want" ]; then
		fail "$suite ($arch) gave $ran results, tests/manifest says $want"
	fi
	allowed=$(manifest_allows skip "$arch" "$suite")
	[ "$nskip" -le "$allowed" ] ||
		fail "$suite ($arch): $nskip skipped, tests/manifest lists $allowed"
	allowed=$(manifest_allows xfail "$arch" "$suite")
	if [ "$nxfail" -gt "$allowed" ]; then
		fail "$suite ($arch): $nxfail failed as expected, tests/manifest lists $allowed"
		nfail=$((nfail + nxfail))
	else
		npass=$((npass + nxfail))
	fi
	tally "$npass" "$nfail" "$nskip"
}

# Every suite that tests/manifest lists for the host and the architectures
# that ran must have reported
check_all_reported() {
	local kind arch suite rest

	while read -r kind arch suite rest; do
		[ "$kind" = results ] || continue
		case " host ${NVG_ARCHES:-x86_64 arm64} " in
		*" $arch "*) ;;
		*) continue ;;
		esac
		printf '%s\n' "${reported[@]}" | grep -qxF "$arch $suite" ||
			fail "$suite ($arch) did not report"
	done <"$NVG_MANIFEST"
}

finish() {
	local line

	check_all_reported
	for line in "${retries[@]}"; do
		echo "$line"
	done
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

# The static checks count by their plan, their results and their exit
# status: a script that stops early or prints nothing fails.
static_checks() {
	local out status plan ok notok

	out=$("$NVG_REPO/tests/static-checks.sh")
	status=$?
	echo "$out"
	plan=$(sed -n 's/^1\.\.\([0-9]\+\)$/\1/p' <<<"$out")
	ok=$(grep -c '^ok ' <<<"$out")
	notok=$(grep -c '^not ok ' <<<"$out")
	if [ -z "$plan" ]; then
		fail "static checks printed no plan"
	elif [ "$plan" -ne $((ok + notok)) ]; then
		fail "static checks planned $plan, reported $((ok + notok))"
	fi
	[ "$status" -eq 0 ] || [ "$notok" -gt 0 ] ||
		fail "static checks exited with status $status and no failure"
	account host static "$ok" "$notok" 0
}

# The lines of console log $1 that no negative control of the splat check
# framed (tests/control), each after its line number
outside_controls() {
	awk '/nvgrace_control: begin [a-z]+$/ { c = 1 } !c { print NR ":" $0 }
	     /nvgrace_control: end [a-z]+$/ { c = 0 }' "$1"
}

# The lines of console log $1 that the negative control $2 framed
inside_control() {
	awk -v w="$2" '$0 ~ "nvgrace_control: end " w "$" { c = 0 } c { print }
		       $0 ~ "nvgrace_control: begin " w "$" { c = 1 }' "$1"
}

# Report the splats $2 found in console log $1, with a TAP line; fail
# when there are any
report_splats() {
	if [ -n "$2" ]; then
		echo "not ok - kernel splats in $1:"
		echo "$2" | head -n 40 | sed 's/^/# /'
		return 1
	fi
	echo "ok - no kernel splat in $1"
}

# A splat anywhere in kernel log $1 (the console, or the records of
# /dev/kmsg) fails the run.  The negative controls $2... show that the
# check finds one: each is a splat that tests/control (or the nested
# guest's init) planted, framed, which must make the check report (and
# the result is inverted); what they framed is left out of the check of
# the rest of the log.  A result per control and one for the rest, added
# to $splat_ok and $splat_notok.
splat_check_log() {
	local log=$1 hits control framed

	shift
	for control in "$@"; do
		framed=$(inside_control "$log" "$control")
		if [ "$(grep -c "nvgrace_control: begin $control\$" "$log")" -ne 1 ] ||
		   [ "$(grep -c "nvgrace_control: end $control\$" "$log")" -ne 1 ]; then
			echo "not ok - negative control '$control' did not run once in $log"
			splat_notok=$((splat_notok + 1))
		elif grep -qE "$NVG_SPLAT_RE" <<<"$framed"; then
			echo "ok - the splat check finds the '$control' planted in $log"
			splat_ok=$((splat_ok + 1))
		else
			echo "not ok - the splat check misses the '$control' planted in $log:"
			sed 's/^/# /' <<<"$framed"
			splat_notok=$((splat_notok + 1))
		fi
	done
	hits=$(outside_controls "$log" | grep -E "$NVG_SPLAT_RE")
	if report_splats "$log" "$hits"; then
		splat_ok=$((splat_ok + 1))
	else
		splat_notok=$((splat_notok + 1))
	fi
}

# What is wrong with the records of /dev/kmsg in file $1 (section kmsg of
# the test VM): their sequence numbers must run from 0 without a gap, and
# the reader must have run until the VM stopped it (it stops when the
# kernel overwrote records it had not read yet)
kmsg_gaps() {
	awk -F'[,;]' '/^[0-9]+,[0-9]+,/ {
		if (n == 0 && $2 != 0)
			print "the first record is " $2 ", not 0"
		else if (n && $2 != last + 1)
			print "records " last + 1 " to " $2 - 1 " are missing"
		last = $2; n++
	}
	END { if (!n) print "no record" }' "$1"
	grep -q '^kmsg reader: running until stopped$' "$1" ||
		echo "the reader did not run to the end: $(grep '^kmsg reader:' "$1")"
}

# The splat check of the test VM: its console log $2 (less the section
# kmsg, and the nested guest's console that the nested test copies, which
# has a check of its own), and the whole kernel log as /dev/kmsg gave it
# (section kmsg, kept as ${2%.log}.kmsg), whose records reach no console
# once the VM lowers the console level to print its results; the kernel
# log must be complete, and no console may have dropped printk messages
splat_check() {
	local arch=$1 console=${2%.log}.console kmsg=${2%.log}.kmsg problems

	splat_ok=0
	splat_notok=0
	sed -e '/^=== NVG-BEGIN \(kmsg\|nested\|nested-console\) ===$/,/^=== NVG-END \(kmsg\|nested\|nested-console\) ===$/d' \
	    -e '/^NVG-LIVE nested: /d' "$2" >"$console"
	splat_check_log "$console" warn stack
	nvg_section "$2" kmsg >"$kmsg"
	splat_check_log "$kmsg" warn stack
	problems=$(kmsg_gaps "$kmsg"
		   grep -h 'printk messages dropped' "$console" "$kmsg")
	if [ -z "$problems" ]; then
		echo "ok - the kernel log of /dev/kmsg is complete, and no console dropped a message"
		splat_ok=$((splat_ok + 1))
	else
		echo "not ok - the kernel log is not complete:"
		sed 's/^/# /' <<<"$problems"
		splat_notok=$((splat_notok + 1))
	fi
	account "$arch" splat "$splat_ok" "$splat_notok" 0
}

# The nested guest's console (arm64): kept as nested.log in the VM's log
# folder, and checked for kernel splats like the test machine's own, with
# a negative control of its own (nested_init.c plants a warning with
# LKDTM, framed as tests/control frames its own): two results
nested_splat_check() {
	local arch=$1 vm=$2

	nvg_section "$vm/test.log" nested-console >"$vm/nested.log"
	if [ ! -s "$vm/nested.log" ]; then
		fail "the nested guest's console ($arch) is empty"
		reported+=("$arch nested-splat")
		return
	fi
	splat_ok=0
	splat_notok=0
	splat_check_log "$vm/nested.log" warn
	account "$arch" nested-splat "$splat_ok" "$splat_notok" 0
}

# The number after "$1: " in the summary line $2, 0 when absent
count() {
	grep -oE "$1: [0-9]+" <<<"$2" | grep -oE '[0-9]+' || echo 0
}

# One KTAP document per suite (its debugfs results file): parse each with
# kunit.py and account for it under the suite's name.
kunit_results() {
	local arch=$1 log=$2 dir=$3/kunit doc out summary suite

	rm -rf "$dir"
	mkdir -p "$dir"
	nvg_section "$log" kunit |
		awk -v dir="$dir" '/^KTAP version/ { n++ } n { print > (dir "/" n ".ktap") }'
	for doc in "$dir"/*.ktap; do
		[ -f "$doc" ] || continue
		suite=$(sed -nE 's/^(not )?ok [0-9]+ ([a-z0-9_]+)$/\2/p' "$doc" |
			tail -n1)
		out=$(python3 "$NVG_KSRC/tools/testing/kunit/kunit.py" parse \
		      "$doc" 2>&1)
		echo "$out"
		summary=$(grep -oE 'Ran [0-9]+ tests?: .*' <<<"$out" | tail -n1)
		if [ -z "$suite" ] || [ -z "$summary" ]; then
			fail "KUnit: cannot parse $doc"
			continue
		fi
		account "$arch" "kunit/$suite" "$(count passed "$summary")" \
			"$(($(count failed "$summary") + $(count crashed "$summary") +
			    $(count errors "$summary")))" \
			"$(count skipped "$summary")"
	done
}

# The value of field $1 in the kselftest totals line $2
total() {
	sed -nE "s/.* $1:([0-9]+).*/\1/p" <<<"$2"
}

# The kselftest section $3 of the log $1: its plan, its totals and its exit
# status.  An error or an unexpected pass counts as a failure.
kselftest_results() {
	local arch=$1 log=$2 tap=$3/$4.tap totals plan ran nfail f

	nvg_section "$log" "$4" >"$tap"
	cat "$tap"
	totals=$(grep -E '^# Totals: ' "$tap" | tail -n1)
	plan=$(sed -n 's/^1\.\.\([0-9]\+\)$/\1/p' "$tap" | head -n1)
	if [ -z "$totals" ] || [ -z "$plan" ]; then
		fail "kselftest $4 ($arch) did not finish"
		reported+=("$arch kselftest/$4")
		return
	fi
	ran=0
	for f in pass fail xfail xpass skip error; do
		ran=$((ran + $(total $f "$totals")))
	done
	[ "$ran" -eq "$plan" ] ||
		fail "kselftest $4 ($arch) planned $plan, totals $ran"
	nfail=$(($(total fail "$totals") + $(total xpass "$totals") +
		 $(total error "$totals")))
	# A failed test makes the exit status non-zero: count it once
	grep -q '^exit status 0$' "$tap" || [ "$nfail" -gt 0 ] ||
		fail "kselftest $4 ($arch) exited with $(grep '^exit status' "$tap") and no failure"
	account "$arch" "kselftest/$4" "$(total pass "$totals")" "$nfail" \
		"$(total skip "$totals")" "$(total xfail "$totals")"
}

# Plain "ok"/"not ok" lines of section $3 of the log $2
tap_results() {
	local arch=$1 out

	out=$(nvg_section "$2" "$3")
	echo "$out"
	if ! grep -qE '^(not )?ok ' <<<"$out"; then
		fail "$3 ($arch) did not report"
		reported+=("$arch $3")
		return
	fi
	account "$arch" "$3" "$(grep -c '^ok ' <<<"$out")" \
		"$(grep -c '^not ok ' <<<"$out")" 0
}

# Section $3 of log $2 must end with "exit status 0", or have a failure
# (which makes the status non-zero): a program that stopped early fails
exit_line() {
	local out

	out=$(nvg_section "$2" "$3")
	grep -qx 'exit status 0' <<<"$out" || grep -q '^not ok ' <<<"$out" ||
		fail "$3 ($1) ended with '$(grep '^exit status' <<<"$out" | tail -n1)' and no failure"
}

# The kernel lines that the deployment guide's checked blocks $2... quote
# (the time in "GPU memory ready after N ms" varies) must each be in the
# console log $1: a TAP line each.  The log is read once, not piped into
# grep -q, whose early exit would fail the pipe (pipefail).
guide_log_lines() {
	local name log line
	local norm=(sed -E 's/GPU memory ready after [0-9]+ ms/GPU memory ready after N ms/')

	name=$(basename "$1")
	log=$("${norm[@]}" "$1")
	shift
	cat "$@" | while IFS= read -r line; do
		if grep -qF -- "$("${norm[@]}" <<<"$line")" <<<"$log"; then
			echo "ok - $name has the guide's line: $line"
		else
			echo "not ok - $name lacks the guide's line: $line"
		fi
	done
}

# Each line of the guide's kernel configuration (block $1) must hold in the
# configuration $2 of a test kernel that passed the tests; "=m" there
# means a module or built in: a TAP line each
guide_kernel_config() {
	local line

	while IFS= read -r line; do
		case "$line" in
		*=m) grep -qE "^${line%=m}=[my]\$" "$2" ;;
		*) grep -qx -- "$line" "$2" ;;
		esac
		if [ $? -eq 0 ]; then
			echo "ok - the test kernel has $line"
		else
			echo "not ok - the test kernel does not have $line"
		fi
	done <"$1"
}

# The deployment guide's commands and files (tests/guide.py): what the VM
# ran (section guide), the kernel lines that the guide quotes in the
# console logs, and on arm64 with 64 KiB pages, the host configuration it
# gives, against the test kernel's
guide_results() {
	local arch=$1 vm=$2 out

	out=$(nvg_section "$vm/test.log" guide)
	if ! grep -qE '^(not )?ok ' <<<"$out"; then
		fail "guide ($arch) did not report"
		reported+=("$arch guide")
		return
	fi
	out+=$'\n'$(guide_log_lines "$vm/test.log" \
		"$vm/root/guide/readiness-log" "$vm/root/guide/probe-core-log")
	if [ "$arch" != x86_64 ]; then
		out+=$'\n'$(guide_log_lines "$vm/nested.log" \
			"$vm/root/guide/window-too-small")
	fi
	if [ "$arch" = arm64 ]; then
		out+=$'\n'$(guide_kernel_config "$vm/root/guide/kernel-config" \
			"$NVG_CACHE/out-$arch/.config")
	fi
	echo "$out"
	account "$arch" guide "$(grep -c '^ok ' <<<"$out")" \
		"$(grep -c '^not ok ' <<<"$out")" 0
}

# ": " and the watchdog's verdict on the test VM of folder $1, if it gave one
vm_verdict() {
	[ -f "$1/test.verdict" ] && echo ": $(cat "$1/test.verdict")"
}

# What the test VM of console log $1, which did not finish, printed: its
# last lines, and the results that each section had streamed
unfinished_vm() {
	tail -n 60 "$1"
	echo "# results streamed before the VM stopped:"
	sed -n 's/^NVG-LIVE \([a-z0-9-]*\): \(not \)\{0,1\}ok .*/\1 \2/p' "$1" |
		awk '{ n[$1]++; if ($2 == "not") bad[$1]++ }
		     END { for (s in n) printf "#   %s: %d, %d not ok\n", s, n[s], bad[s] }'
}

# Build, boot and test one architecture
test_arch() {
	local arch=$1 vm=$NVG_CACHE/out-$1/vm

	echo "# ---- $arch ----"
	if ! NVG_ARCH=$arch "$NVG_REPO/tests/build-kernel.sh"; then
		fail "$arch: kernel build"
		return
	fi
	# The fuzzer's operation count: 10^6 where they fit CI's time budget,
	# less in the slower arm64 guest
	if ! NVG_ARCH=$arch NVGRACE_FUZZ_OPS=${NVG_FUZZ_OPS[$arch]} \
	     "$NVG_REPO/tests/vm/run-vm.sh" test; then
		fail "$arch: the test VM did not finish$(vm_verdict "$vm")"
		[ -f "$vm/test.log" ] && unfinished_vm "$vm/test.log"
		return
	fi
	[ -f "$vm/test.retry" ] &&
		retries+=("$arch: the test VM ran twice, after an emulator stall: $(cat "$vm/test.retry")")
	splat_check "$arch" "$vm/test.log"
	kunit_results "$arch" "$vm/test.log" "$vm"
	kselftest_results "$arch" "$vm/test.log" "$vm" kselftest
	kselftest_results "$arch" "$vm/test.log" "$vm" stress
	tap_results "$arch" "$vm/test.log" reload
	kselftest_results "$arch" "$vm/test.log" "$vm" reopen
	tap_results "$arch" "$vm/test.log" guard
	tap_results "$arch" "$vm/test.log" kmemleak
	# QEMU in the guest is the host's, an x86_64 program, under TCG; on
	# arm64 it is Debian's arm64 build, with KVM
	if [ "$arch" = x86_64 ]; then
		tap_results "$arch" "$vm/test.log" qemu
	else
		tap_results "$arch" "$vm/test.log" nested
		exit_line "$arch" "$vm/test.log" nested
		nested_splat_check "$arch" "$vm"
	fi
	guide_results "$arch" "$vm"
}

main() {
	local arch

	install_packages || { fail "package installation"; finish; }
	# The static checks use the x86_64 tree
	if NVG_ARCH=x86_64 "$NVG_REPO/tests/build-kernel.sh"; then
		static_checks
	else
		fail "x86_64: kernel build for the static checks"
	fi
	for arch in ${NVG_ARCHES:-x86_64 arm64}; do
		test_arch "$arch"
	done
	finish
}

main
