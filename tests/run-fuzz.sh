#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The long fuzz run: boot the emulated Grace Hopper machine and run only the
# uAPI fuzzer of tests/selftests/nvgrace_stress_test.c, for as many
# operations as asked, on the debug kernel.  The test command runs it too,
# with 10^6 operations; this runs longer, or replays a seed.
#
# Usage: [NVG_ARCH=arm64] run-fuzz.sh [OPERATIONS [SEED]]
#	OPERATIONS defaults to 20000000; SEED to the time, printed either way.
# Ends with "N passed, N failed" (the fuzzer with no kernel splat, the guard
# areas around the GPU memory, and a kmemleak scan that reports nothing);
# exits non-zero on any failure.

set -euo pipefail
. "$(dirname "$0")/lib.sh"

export NVGRACE_FUZZ_OPS=${1:-20000000}
[ -n "${2:-}" ] && export NVGRACE_FUZZ_SEED=$2
# A QEMU run long enough for the operations asked (x86_64 TCG does about
# 20000 a second; arm64 less): an hour per 10^7 on top of the machine's
# own VM timeout (lib.sh)
export NVGRACE_VM_TIMEOUT=$((NVG_VM_TIMEOUT + NVGRACE_FUZZ_OPS / 2800))

nvg_apt_install "${NVG_PACKAGES[@]}"
[ "$NVG_KARCH" = arm64 ] && nvg_apt_install "${NVG_PACKAGES_ARM64[@]}"
"$NVG_REPO/tests/build-kernel.sh"
"$NVG_REPO/tests/vm/run-vm.sh" fuzz
log=$NVG_OUT/vm/fuzz.log
nvg_section "$log" fuzz
nvg_section "$log" guard
nvg_section "$log" kmemleak
passed=0
if grep -q '^ok 1 gpu.fuzz$' "$log" && grep -q '^exit status 0$' "$log" &&
   ! grep -qE "$NVG_SPLAT_RE" "$log"; then
	passed=$((passed + 1))
fi
guard=$(nvg_section "$log" guard)
grep -q '^ok 3 ' <<<"$guard" && ! grep -q '^not ok' <<<"$guard" &&
	passed=$((passed + 1))
kmemleak=$(nvg_section "$log" kmemleak)
grep -q '^ok 2 ' <<<"$kmemleak" && ! grep -q '^not ok' <<<"$kmemleak" &&
	passed=$((passed + 1))
echo "$passed passed, $((3 - passed)) failed"
[ "$passed" -eq 3 ] || { echo "see $log"; exit 1; }
