#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Boot the test kernel on an emulated machine whose stand-in PCI functions
# look like Grace Hopper GPUs (tests/vm/gh200.asl), and run one job in it.
#
# Usage: [NVG_ARCH=arm64] [NVGRACE_QEMU_CPU=model] run-vm.sh MODE
#	MODE is "test", "demo", "bench", "fuzz", "guide", "stall" or, on
#	arm64, "nested" (see tests/vm/init); on x86_64,
#	NVGRACE_QEMU_CPU replaces the CPU model "max"
#
# The console log goes to $NVG_OUT/vm/MODE.log, the arrival of each of its
# lines to MODE.times, QEMU's peak RSS (KiB) to MODE.rss, and when the VM
# stalls, the watchdog's verdict and evidence to MODE.verdict and
# MODE.watchdog (tests/vm/supervise.py).  The VM runs under TCG: q35 with
# an Intel vIOMMU on x86_64, virt with SMMUv3 and UEFI on arm64.  13 GiB at 4 GiB of its RAM
# is kept from the guest kernel: it holds the GPU memory of the small
# devices, with unused RAM between the ranges for the guard areas that
# tests/guard fills and checks.  The memory of the real-sized GPUs is
# sparse: DIMMs high in the address space that reserve no host memory, and
# that the guest kernel (built without memory hotplug) does not take as
# RAM; each has a guard area of BIG_GUARD bytes at either end.  The guest's
# userland is an initramfs (busybox-static, the test programs, the modules):
# self-contained and the same on every host, unlike the host's root over 9p.

set -euo pipefail
. "$(dirname "$0")/../lib.sh"

MODE=${1:?usage: run-vm.sh test|demo|bench|fuzz|guide|nested|stall}
VM=$NVG_OUT/vm
TIMEOUT=${NVGRACE_VM_TIMEOUT:-$NVG_VM_TIMEOUT}

# Stand-in functions at the slots that gh200.asl describes
STANDINS=()
for slot in 05 06 07 08 09 0a 0b 0c 10 11 12 13 14; do
	STANDINS+=(-device "bochs-display,addr=$slot.0")
done
STANDINS+=(-device pcie-root-port,id=rp0,chassis=1,addr=0d.0
	-device bochs-display,bus=rp0,addr=00.0)
# Functions whose probe fails before BAR0 matters, and one whose BAR0 is
# too small: pci-testdev has a 4 KiB one
STANDINS+=(-device pci-testdev,addr=0e.0 -device pci-testdev,addr=0f.0)
# The options of the mode: the fuzzer's operation count and seed, when
# given (tests/run-fuzz.sh)
MODE_ARGS=
[ -n "${NVGRACE_FUZZ_OPS:-}" ] && MODE_ARGS+=" nvgrace.fuzz_ops=$NVGRACE_FUZZ_OPS"
[ -n "${NVGRACE_FUZZ_SEED:-}" ] && MODE_ARGS+=" nvgrace.fuzz_seed=$NVGRACE_FUZZ_SEED"
# How the stall mode stalls: spin (default) or idle (tests/vm/init)
[ "$MODE" = stall ] && MODE_ARGS+=" nvgrace.stall=${NVGRACE_STALL:-spin}"
KERNEL_ARGS="panic=-1 oops=panic vfio_iommu_type1.allow_unsafe_interrupts=1"
KERNEL_ARGS+=" iommufd.allow_unsafe_interrupts=1"
# What a stopped CPU needs reported: the CSD-lock watchdog (on, at the RCU
# stall timeout rather than 5 s), every CPU's backtrace with a lockup
# report; and for tests/vm/supervise.py, the symbols of System.map at
# their addresses (no KASLR)
KERNEL_ARGS+=" csdlock_debug=1 smp.csd_lock_timeout=21000"
KERNEL_ARGS+=" softlockup_all_cpu_backtrace=1 hardlockup_all_cpu_backtrace=1"
KERNEL_ARGS+=" nokaslr"

# The real-sized GPUs of gh200.asl, as base:size of their memory: GH200,
# GB200 and its second GPU 2 TiB higher, GB300
case "$NVG_KARCH" in
x86) BIG_GPUS=(0x3f0000000000:0x1800000000 0x380000000000:0x2e80200000
		0x3a0000000000:0x2e80200000 0x3c0000000000:0x4800000000) ;;
arm64) BIG_GPUS=(0x470000000000:0x1800000000 0x400000000000:0x2e80200000
		0x420000000000:0x2e80200000 0x440000000000:0x4800000000) ;;
esac
BIG_GUARD=$((2 << 20))

# The DIMM of the real-sized GPU $1 (base:size): its memory and a guard
# area at either end, as "start size"
big_dimm() {
	local base=$((${1%:*})) size=$((${1#*:}))

	size=$(((size + BIG_GUARD - 1) / BIG_GUARD * BIG_GUARD))
	echo "$((base - BIG_GUARD)) $((size + 2 * BIG_GUARD))"
}

# One DIMM per real-sized GPU
big_dimms() {
	local gpu start size i=0

	for gpu in "${BIG_GPUS[@]}"; do
		read -r start size < <(big_dimm "$gpu")
		echo "-object memory-backend-ram,id=big$i,size=$size,reserve=off"
		echo "-device pc-dimm,id=dimm$i,memdev=big$i,addr=$start"
		i=$((i + 1))
	done
}

# For the VM's /init (tests/guard): the real-sized GPUs' memory as
# base,size pairs, and their DIMMs as start,end pairs
big_memory_env() {
	local gpu start size mem=() res=()

	for gpu in "${BIG_GPUS[@]}"; do
		read -r start size < <(big_dimm "$gpu")
		mem+=("${gpu%:*},${gpu#*:}")
		res+=("$(printf '%#x,%#x' "$start" $((start + size)))")
	done
	echo "BIG_MEMORY=$(IFS=,; echo "${mem[*]}")"
	echo "BIG_RESERVED=$(IFS=,; echo "${res[*]}")"
}
mapfile -t DIMMS < <(big_dimms | tr ' ' '\n')

case "$NVG_ARCH" in
x86_64)
	# q35 with an Intel vIOMMU (which must come before the stand-ins);
	# q35 puts 2 GiB of RAM below 4 GiB and the rest above, and memmap=
	# keeps 4 GiB to 17 GiB of it from the kernel.  For the DIMMs below
	# 64 TiB: 48 physical address bits, and in the vIOMMU too (with its
	# default of 39, its invalidation queue fails at boot once maxmem
	# passes 1 TiB); an Intel CPU, as with TCG's AMD one q35 moves the RAM
	# above 4 GiB to 1 TiB once maxmem is that large.
	QEMU=qemu-system-x86_64
	QEMU_ARGS=(-M q35
		-cpu "${NVGRACE_QEMU_CPU:-max},phys-bits=48,vendor=GenuineIntel"
		-smp 2 -m 16G,slots=${#BIG_GPUS[@]},maxmem=66T
		"${DIMMS[@]}" -nographic -no-reboot
		-nic none -device intel-iommu,aw-bits=48 "${STANDINS[@]}")
	KERNEL_ARGS+=" console=ttyS0 memmap=13G\$4G intel_iommu=on"
	KERNEL_ARGS+=" nvgrace.page_size=4096"
	# The watchdog's NMI: panic, with every CPU's backtrace
	KERNEL_ARGS+=" unknown_nmi_panic panic_print=0x40"
	;;
arm64 | arm64-4k)
	# virt with SMMUv3 and GICv3 (ITS), booted by UEFI with ACPI (on,
	# for the GED device that the DIMMs need); RAM starts at 1 GiB and
	# mem=1G leaves the rest alone, bar the kernel and the initrd that
	# UEFI places near the top (above 17 GiB).  EL2, for KVM and the
	# nested guest (tests/nested).
	QEMU=qemu-system-aarch64
	QEMU_ARGS=(-M virt,iommu=smmuv3,gic-version=3,acpi=on,virtualization=on
		-cpu max,pauth-impdef=on -smp 2
		-m 18G,slots=${#BIG_GPUS[@]},maxmem=72T "${DIMMS[@]}"
		-nographic -no-reboot
		-nic none -bios /usr/share/qemu-efi-aarch64/QEMU_EFI.fd
		"${STANDINS[@]}")
	KERNEL_ARGS+=" console=ttyAMA0 acpi=force mem=1G"
	if [ "$NVG_ARCH" = arm64 ]; then
		KERNEL_ARGS+=" nvgrace.page_size=65536"
	else
		KERNEL_ARGS+=" nvgrace.page_size=4096"
	fi
	;;
esac

build_userland() {
	local sel=$NVG_REPO/tests/selftests cc=${NVG_CROSS}gcc cflags

	cflags="-static -O2 -Wall -Werror -I$NVG_OUT/usr/include"
	# The fuzz tests' bound: 10 minutes, and a second per 500 operations
	# (with the host loaded, x86_64 did 3900 a second, arm64 1400)
	cflags+=" -DNVG_FUZZ_TIMEOUT=$((600 + ${NVGRACE_FUZZ_OPS:-1000000} / 500))"
	mkdir -p "$VM/root/bin"
	# shellcheck disable=SC2086
	$cc $cflags -pthread -I"$NVG_KSRC/tools/testing/selftests" \
		-o "$VM/root/bin/nvgrace_vfio_test" \
		"$sel/nvgrace_vfio_test.c" "$sel/nvgrace_vfio.c"
	# shellcheck disable=SC2086
	$cc $cflags -pthread -I"$NVG_KSRC/tools/testing/selftests" \
		-o "$VM/root/bin/nvgrace_stress_test" \
		"$sel/nvgrace_stress_test.c" "$sel/nvgrace_vfio.c"
	# shellcheck disable=SC2086
	$cc $cflags -o "$VM/root/bin/nvgrace_info" \
		"$sel/nvgrace_info.c" "$sel/nvgrace_vfio.c"
	# shellcheck disable=SC2086
	$cc $cflags -o "$VM/root/bin/nvgrace_bench" \
		"$sel/nvgrace_bench.c" "$sel/nvgrace_vfio.c"
	# shellcheck disable=SC2086
	$cc $cflags -o "$VM/root/bin/nvgrace_ready" \
		"$sel/nvgrace_ready.c" "$sel/nvgrace_vfio.c"
	if [ "$NVG_KARCH" = arm64 ]; then
		# shellcheck disable=SC2086
		$cc $cflags -o "$VM/root/bin/nvgrace_nested" \
			"$sel/nvgrace_nested.c" "$sel/nvgrace_vfio.c"
	fi
}

# Copy the host program $1 into the guest's root at the same path, with
# the shared libraries that it links
add_host_program() {
	local lib

	mkdir -p "$VM/root$(dirname "$1")"
	cp "$1" "$VM/root$1"
	for lib in $(ldd "$1" | grep -o '/[^ ]*'); do
		mkdir -p "$VM/root$(dirname "$lib")"
		cp -L "$lib" "$VM/root$lib"
	done
}

# QEMU itself, for the passthrough test in the x86_64 guest: the host's
# qemu-system-x86_64 with the shared libraries it links, and the firmware
# and module it loads at start, at their host paths
add_qemu() {
	local f

	add_host_program "$(command -v qemu-system-x86_64)"
	# TCG is a loadable module of Debian's QEMU
	for f in /usr/share/seabios/bios-256k.bin /usr/share/qemu/kvmvapic.bin \
		 /usr/share/qemu/linuxboot_dma.bin \
		 /usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so; do
		mkdir -p "$VM/root$(dirname "$f")"
		cp -L "$f" "$VM/root$f"
	done
}

# Copy program $2 (a path below $1, the arm64 packages that lib.sh
# unpacked) into the guest's root at the same path, with the shared
# libraries it needs, found by name in the unpacked packages
add_arm64_program() {
	local dir=$1 f lib path queue

	mkdir -p "$VM/root$(dirname "$2")" "$VM/root/lib/aarch64-linux-gnu"
	cp "$dir$2" "$VM/root$2"
	cp -L "$dir/lib/ld-linux-aarch64.so.1" "$VM/root/lib/"
	queue=("$dir$2")
	while [ ${#queue[@]} -gt 0 ]; do
		f=${queue[0]}
		queue=("${queue[@]:1}")
		for lib in $(${NVG_CROSS}readelf -d "$f" |
			     sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'); do
			[ -e "$VM/root/lib/aarch64-linux-gnu/$lib" ] && continue
			path=$(find "$dir/lib" "$dir/usr/lib" -name "$lib" -print -quit)
			[ -n "$path" ] || nvg_die "no $lib for $2"
			cp -L "$path" "$VM/root/lib/aarch64-linux-gnu/$lib"
			queue+=("$path")
		done
	done
}

# The nested guest (tests/nested): its kernel, and an initramfs of its
# /init, a static program
add_nested_guest() {
	local dir=$VM/root/lib/nested guest=$VM/nested-root

	mkdir -p "$dir"
	cp "$NVG_NESTED_OUT/arch/arm64/boot/Image" "$dir/"
	rm -rf "$guest"
	mkdir -p "$guest"/{dev,proc,sys}
	${NVG_CROSS}gcc -static -O2 -Wall -Werror -o "$guest/init" \
		"$NVG_REPO/tests/nested/nested_init.c"
	(cd "$guest" && find . | cpio -o -H newc --quiet) >"$dir/initrd.cpio"
}

# What the deployment guide's commands run, but busybox does not have:
# bash (for driverctl), getconf, acpidump and iasl, from the host on
# x86_64 and from Debian's arm64 packages (lib.sh) on arm64, and the
# driverctl script itself; driverctl loads modules by /sbin/modprobe
add_guide_programs() {
	local p dir

	if [ "$NVG_KARCH" = arm64 ]; then
		dir=$(nvg_arm64_userland)
		for p in /bin/bash /usr/bin/getconf /usr/bin/acpidump /usr/bin/iasl; do
			add_arm64_program "$dir" "$p"
		done
	else
		for p in bash getconf acpidump iasl; do
			add_host_program "$(command -v "$p")"
		done
		[ -e "$VM/root/bin/bash" ] ||
			ln -s "$(command -v bash)" "$VM/root/bin/bash"
	fi
	mkdir -p "$VM/root/usr/sbin" "$VM/root/sbin"
	cp /usr/sbin/driverctl "$VM/root/usr/sbin/"
	ln -s /bin/busybox "$VM/root/sbin/modprobe"
}

build_rootfs() {
	local busybox=/bin/busybox

	[ "$NVG_KARCH" = arm64 ] && busybox=$(nvg_arm64_busybox)
	rm -rf "$VM/root"
	mkdir -p "$VM/root"/{bin,dev,proc,sys,tmp,lib}
	cp "$busybox" "$VM/root/bin/busybox"
	cp "$NVG_REPO/tests/vm/init" "$VM/root/init"
	big_memory_env >"$VM/root/big-memory"
	cp -a "$NVG_OUT/modroot/lib/modules" "$VM/root/lib/"
	cp "$NVG_OUT/pte_probe/nvgrace_pte_probe.ko" \
		"$NVG_OUT/guard/nvgrace_guard.ko" \
		"$NVG_OUT/dvsec/nvgrace_dvsec.ko" \
		"$NVG_OUT/control/nvgrace_control.ko" \
		"$NVG_OUT/aer/nvgrace_aer.ko" "$VM/root/lib/"
	# The upstream driver, for the benchmark (tests/run-bench.sh)
	if [ "$MODE" = bench ]; then
		cp "$NVG_OUT/upstream/nvgrace-gpu-vfio-pci-upstream.ko" \
			"$VM/root/lib/nvgrace_upstream.ko"
	fi
	if [ "$MODE" = test ] && [ "$NVG_ARCH" = x86_64 ]; then
		add_qemu
	fi
	if [ "$MODE" = test ] || [ "$MODE" = guide ]; then
		add_guide_programs
	fi
	if [ "$NVG_KARCH" = arm64 ] &&
	   { [ "$MODE" = test ] || [ "$MODE" = nested ]; }; then
		add_arm64_program "$(nvg_arm64_userland)" /usr/bin/qemu-system-aarch64
		add_nested_guest
		cp "$NVG_OUT/stage2/nvgrace_stage2.ko" "$VM/root/lib/"
	fi
	# The deployment guide's snippets, one file each
	python3 "$NVG_REPO/tests/guide.py" extract "$NVG_GUIDE" "$VM/root/guide"
	build_userland
	(cd "$VM/root" && find . | cpio -o -H newc --quiet) >"$VM/rootfs.cpio"
}

# run_qemu MODE INITRD LOG: boot the VM for MODE under tests/vm/supervise.py,
# which copies the console to LOG and stops a VM whose console stays silent
# (or shows only the guest's heartbeats and kernel lines) for too long, after
# asking QEMU's monitor and the guest what each CPU does; its verdict line
# goes to ${LOG%.log}.verdict, the evidence to ${LOG%.log}.watchdog.  A stall
# that it finds to be the emulator's (guest time stopped, every vCPU idle)
# is run once more, and ${LOG%.log}.retry then holds its verdict.
run_qemu() {
	local mode=$1 initrd=$2 log=$3 base=${3%.log} extra=() status try

	# q35 takes the SSDT on the command line; virt refuses -acpitable
	if [ "$NVG_ARCH" = x86_64 ]; then
		extra=(-acpitable file="$VM/gh200.aml")
	fi
	rm -f "$base.retry"
	for try in 1 2; do
		rm -f "$VM/monitor.sock"
		status=0
		python3 "$NVG_REPO/tests/vm/supervise.py" --arch "$NVG_ARCH" \
			--log "$log" --rss "$base.rss" --report "$base.watchdog" \
			--verdict "$base.verdict" --monitor "$VM/monitor.sock" \
			--system-map "$NVG_OUT/System.map" --timeout "$TIMEOUT" \
			--silence "$NVG_VM_SILENCE" --stuck "$NVG_VM_STUCK" -- \
			"$QEMU" "${QEMU_ARGS[@]}" "${extra[@]}" \
			-serial mon:stdio \
			-monitor "unix:$VM/monitor.sock,server=on,wait=off" \
			-kernel "$NVG_OUT/$NVG_IMAGE" -initrd "$initrd" \
			-append "$KERNEL_ARGS nvgrace.mode=$mode $MODE_ARGS" \
			|| status=$?
		tr -d '\r' <"$log" >"$log.tmp" && mv "$log.tmp" "$log"
		[ "$status" -eq 3 ] && [ "$try" -eq 1 ] || break
		nvg_log "$(cat "$base.verdict"); running the VM once more"
		cp "$base.verdict" "$base.retry"
		cp "$log" "$base.stalled.log"
	done
	[ "$status" -eq 0 ] || {
		[ -f "$base.verdict" ] && nvg_log "$(cat "$base.verdict")"
		nvg_die "QEMU failed or was stopped (mode $mode, status $status), see $log"
	}
	nvg_log "QEMU's peak RSS: $(($(cat "$base.rss") >> 10)) MiB"
}

# QEMU's q35 DSDT has revision 1, which makes ACPI integers 32 bits wide and
# cuts the 64-bit GPU memory base.  Dump it once from a booted guest, raise
# its revision to 2 (and its OEM revision, so that Linux takes it as an
# upgrade), and hand it back through the initrd.
upgraded_dsdt() {
	local key cache

	key=$(printf '%s\n' "$("$QEMU" --version | head -n1)" \
		"${QEMU_ARGS[*]}" | sha256sum | cut -c1-16)
	cache=$VM/dsdt-$key.aml
	if [ ! -s "$cache" ]; then
		nvg_log "dumping QEMU's DSDT"
		run_qemu dump-dsdt "$VM/rootfs.cpio" "$VM/dump-dsdt.log"
		nvg_section "$VM/dump-dsdt.log" dsdt | base64 -d >"$VM/dsdt.orig"
		python3 - "$VM/dsdt.orig" "$cache" <<'PY'
import struct, sys
t = bytearray(open(sys.argv[1], 'rb').read())
assert t[:4] == b'DSDT' and struct.unpack_from('<I', t, 4)[0] == len(t)
t[8] = max(t[8], 2)
struct.pack_into('<I', t, 24, struct.unpack_from('<I', t, 24)[0] + 1)
t[9] = 0
t[9] = (-sum(t)) & 0xff
open(sys.argv[2], 'wb').write(t)
PY
	fi
	echo "$cache"
}

main() {
	local dsdt tables defines=()

	[ -f "$NVG_OUT/$NVG_IMAGE" ] ||
		nvg_die "no kernel: run tests/build-kernel.sh first"
	mkdir -p "$VM"
	[ "$NVG_KARCH" = arm64 ] && defines=(-DNVG_ARM64)
	iasl "${defines[@]}" -p "$VM/gh200" "$NVG_REPO/tests/vm/gh200.asl" \
		>/dev/null
	build_rootfs

	# ACPI tables handed over through the initrd: on x86_64 the upgraded
	# DSDT, on arm64 (DSDT revision 2 already) the SSDT itself
	tables=$VM/tables
	rm -rf "$tables"
	mkdir -p "$tables/kernel/firmware/acpi"
	if [ "$NVG_ARCH" = x86_64 ]; then
		dsdt=$(upgraded_dsdt)
		cp "$dsdt" "$tables/kernel/firmware/acpi/dsdt.aml"
	else
		cp "$VM/gh200.aml" "$tables/kernel/firmware/acpi/ssdt.aml"
	fi
	(cd "$tables" && find kernel | cpio -o -H newc --quiet) >"$VM/tables.cpio"
	cat "$VM/tables.cpio" "$VM/rootfs.cpio" >"$VM/initrd.cpio"

	nvg_log "booting the VM ($MODE)"
	SECONDS=0
	run_qemu "$MODE" "$VM/initrd.cpio" "$VM/$MODE.log"
	nvg_log "VM ran for $SECONDS s"
	grep -q '^=== NVG-DONE ===$' "$VM/$MODE.log" ||
		nvg_die "the VM did not finish its job, see $VM/$MODE.log"
}

main
