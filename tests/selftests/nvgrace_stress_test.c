// SPDX-License-Identifier: GPL-2.0-only
/*
 * Reliability kselftest for nvgrace-gpu-vfio-pci: resets and an unbind
 * while the GPU memory is mapped and in use, many threads at once, and a
 * seeded fuzzer over the uAPI, allocation failures injected into the
 * probe, and a GPU whose memory is late or never ready, at probe and after
 * a reset.  It runs in the test VM, on the debug kernel, against the
 * stand-in GPU at 00:05.0, and the fuzzer also against the real-sized GH200
 * at 00:11.0 (x86_64); the kernel log is checked for splats and kmemleak reports
 * afterwards.
 *
 * Environment: NVG_STRESS_SECONDS (default 5) bounds the concurrency test;
 * NVG_FUZZ_OPS (default 1000000; a tenth of it on the GH200) and
 * NVG_FUZZ_SEED (default: from the clocks) drive the fuzzer, which prints
 * its seed so that a failure replays.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/pci_regs.h>

#include "kselftest_harness.h"
#include "nvgrace_vfio.h"

#define GPU		"0000:00:05.0"
#define GPU_PLAIN	"0000:00:06.0"	/* no GPU memory: plain vfio-pci */
#define GPU_ODD		"0000:00:09.0"
#define RES		VFIO_PCI_BAR2_REGION_INDEX
#define USE		VFIO_PCI_BAR4_REGION_INDEX
#define SZ_4K		0x1000UL	/* a size of its own, not the page size */
#define SZ_1M		0x100000UL

#define NR_MEM_INDEX	(USE + 1)

/* The GPU at 00:05.0: real length and BAR size, by region index */
static const __u64 mem_len[NR_MEM_INDEX] = {
	[RES] = 0x5ff00000, [USE] = 0x40000000,
};

static const __u64 bar_size[NR_MEM_INDEX] = {
	[RES] = 0x80000000, [USE] = 0x80000000,
};

static const int mem_regions[] = { RES, USE };

/* ---- Small helpers ---- */

/* xorshift64*: a small PRNG whose whole state is one seed */
static __u64 rnd(__u64 *state)
{
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return *state * 0x2545f4914f6cdd1dULL;
}

static __u64 rnd_below(__u64 *state, __u64 n)
{
	return n ? rnd(state) % n : 0;
}

static size_t page_size(void)
{
	return sysconf(_SC_PAGESIZE);
}

static unsigned long env_ulong(const char *name, unsigned long def)
{
	const char *v = getenv(name);

	return v && *v ? strtoul(v, NULL, 0) : def;
}

static void *map_region(int fd, int index, size_t len, off_t off)
{
	return mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		    nvg_region_offset(index) + off);
}

/*
 * An emulated BAR register as read back: the 64-bit prefetchable memory
 * flags, and no address bit below the BAR size
 */
static bool bar_reg_consistent(__u64 val, __u64 size)
{
	return (val & 0xf) == NVG_BAR_FLAGS && !(val & (size - 1) & ~0xfULL);
}

/* ---- A thread that writes and reads back every page of a mapping ---- */

struct toucher {
	pthread_t thread;
	__u8 *p;
	size_t len;
	bool stop;
	bool bad;
	unsigned long rounds;
};

static void *touch_loop(void *arg)
{
	struct toucher *t = arg;
	unsigned long round = 0;
	size_t off;
	__u64 v;

	while (!__atomic_load_n(&t->stop, __ATOMIC_RELAXED)) {
		round++;
		for (off = 0; off < t->len; off += page_size()) {
			v = (__u64)round << 32 | off;
			__atomic_store_n((__u64 *)(t->p + off), v,
					 __ATOMIC_RELAXED);
			if (__atomic_load_n((__u64 *)(t->p + off),
					    __ATOMIC_RELAXED) != v)
				t->bad = true;
		}
	}
	t->rounds = round;
	return NULL;
}

static int toucher_start(struct toucher *t, __u8 *p, size_t len)
{
	memset(t, 0, sizeof(*t));
	t->p = p;
	t->len = len;
	return pthread_create(&t->thread, NULL, touch_loop, t);
}

static void toucher_stop(struct toucher *t)
{
	__atomic_store_n(&t->stop, true, __ATOMIC_RELAXED);
	pthread_join(t->thread, NULL);
}

static void touch_all(__u8 *p, size_t len)
{
	size_t off;

	for (off = 0; off < len; off += page_size())
		__atomic_store_n(p + off, (__u8)off, __ATOMIC_RELAXED);
}

/*
 * The fewest faults that touching every page of [@p, @p + @len) can take:
 * one per PMD-sized block it overlaps, were every block mapped huge.  A
 * page table holds page / 8 entries.
 */
static long min_faults(const __u8 *p, size_t len)
{
	size_t pmd = page_size() * (page_size() / 8);
	uintptr_t first = (uintptr_t)p / pmd, last = ((uintptr_t)p + len - 1) / pmd;

	return last - first + 1;
}

static void fill(__u8 *buf, size_t len, __u64 seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = (__u8)rnd(&seed);
}

/* ---- The device, bound and opened over the group/container path ---- */

FIXTURE(gpu) {
	struct nvg_dev dev;
	int fd;
};

FIXTURE_SETUP(gpu)
{
	ASSERT_EQ(0, nvg_bind(GPU, NVG_DRIVER));
	ASSERT_EQ(0, nvg_open_group(GPU, &self->dev)) {
		TH_LOG("opening %s: %s", GPU, strerror(errno));
	}
	self->fd = self->dev.device_fd;
}

FIXTURE_TEARDOWN(gpu)
{
	nvg_close(&self->dev);
	/* A test that failed half-way may have left it not ready */
	nvg_set_ready(GPU, NVG_READY);
}

/*
 * VFIO_DEVICE_RESET, again and again, while two threads write and read
 * back every page of usemem and resmem mappings: vfio-pci-core zaps the
 * mappings, they fault back in, the data outside them is kept (a reset
 * does not clear device memory) and the BAR registers are reset each time.
 */
#define RESETS		50
#define TOUCH_LEN	(8 * SZ_1M)
#define KEEP_OFF	(64 * SZ_1M)

TEST_F_TIMEOUT(gpu, reset_while_mapped, 300)
{
	__u8 *map[2], *keep = malloc(SZ_1M), *back = malloc(SZ_1M);
	__u64 ones = ~0ULL, reg[2];
	struct toucher t[2];
	long faults;
	int i;

	ASSERT_NE(NULL, keep);
	ASSERT_NE(NULL, back);
	reg[0] = nvg_cfg_read64(self->fd, 0x18);
	reg[1] = nvg_cfg_read64(self->fd, 0x20);
	for (i = 0; i < 2; i++) {
		fill(keep, SZ_1M, 1000 + i);
		ASSERT_EQ((ssize_t)SZ_1M,
			  pwrite(self->fd, keep, SZ_1M,
				 nvg_region_offset(mem_regions[i]) + KEEP_OFF));
		map[i] = map_region(self->fd, mem_regions[i], TOUCH_LEN, 0);
		ASSERT_NE(MAP_FAILED, map[i]);
		ASSERT_EQ(0, toucher_start(&t[i], map[i], TOUCH_LEN));
	}

	for (i = 0; i < RESETS; i++) {
		/* Sizing leaves the registers away from their reset value */
		ASSERT_EQ(8, nvg_cfg_write(self->fd, 0x18, &ones, 8));
		ASSERT_EQ(8, nvg_cfg_write(self->fd, 0x20, &ones, 8));
		ASSERT_EQ(0, ioctl(self->fd, VFIO_DEVICE_RESET)) {
			TH_LOG("reset %d: %s", i, strerror(errno));
		}
		EXPECT_EQ(reg[0], nvg_cfg_read64(self->fd, 0x18));
		EXPECT_EQ(reg[1], nvg_cfg_read64(self->fd, 0x20));
	}
	for (i = 0; i < 2; i++) {
		toucher_stop(&t[i]);
		EXPECT_FALSE(t[i].bad);
		EXPECT_LT(0, t[i].rounds);
	}
	TH_LOG("%d resets under %lu + %lu rounds of page writes", RESETS,
	       t[0].rounds, t[1].rounds);

	/*
	 * A reset zaps both mappings: each faults in again, once per block
	 * at least, then no more
	 */
	touch_all(map[0], TOUCH_LEN);
	touch_all(map[1], TOUCH_LEN);
	ASSERT_EQ(0, ioctl(self->fd, VFIO_DEVICE_RESET));
	for (i = 0; i < 2; i++) {
		faults = nvg_minor_faults();
		touch_all(map[i], TOUCH_LEN);
		faults = nvg_minor_faults() - faults;
		EXPECT_LE(min_faults(map[i], TOUCH_LEN), faults) {
			TH_LOG("region %d: %ld faults after the reset",
			       mem_regions[i], faults);
		}
	}
	faults = nvg_minor_faults();
	touch_all(map[0], TOUCH_LEN);
	touch_all(map[1], TOUCH_LEN);
	EXPECT_EQ(0, nvg_minor_faults() - faults);

	for (i = 0; i < 2; i++) {
		fill(keep, SZ_1M, 1000 + i);
		ASSERT_EQ((ssize_t)SZ_1M,
			  pread(self->fd, back, SZ_1M,
				nvg_region_offset(mem_regions[i]) + KEEP_OFF));
		EXPECT_EQ(0, memcmp(keep, back, SZ_1M));
		munmap(map[i], TOUCH_LEN);
	}
	free(keep);
	free(back);
}

/* ---- Unbind while the device is open, mapped and faulting ---- */

struct unbinder {
	pthread_t thread;
	int ret;
	bool done;
};

static void *unbind_device(void *arg)
{
	struct unbinder *u = arg;

	/* Blocks until the last user of the device is gone */
	u->ret = nvg_unbind(GPU);
	__atomic_store_n(&u->done, true, __ATOMIC_RELEASE);
	return NULL;
}

static bool unbind_done(struct unbinder *u)
{
	return __atomic_load_n(&u->done, __ATOMIC_ACQUIRE);
}

/* The device request notifier of vfio-pci-core, on eventfd @efd */
static int set_request_eventfd(int fd, int efd)
{
	struct {
		struct vfio_irq_set set;
		__s32 fd;
	} req = {
		.set = {
			.argsz = sizeof(req),
			.flags = VFIO_IRQ_SET_DATA_EVENTFD |
				 VFIO_IRQ_SET_ACTION_TRIGGER,
			.index = VFIO_PCI_REQ_IRQ_INDEX,
			.count = 1,
		},
		.fd = efd,
	};

	return ioctl(fd, VFIO_DEVICE_SET_IRQS, &req);
}

static bool readable_within(int fd, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, ms) == 1;
}

/*
 * What vfio core defines: the unbind waits for the device's users and
 * asks them to let go through the request notifier; closing the device
 * file is not enough while a mapping of it is left; the unbind completes
 * once the last mapping is gone, and the device binds again afterwards.
 */
FIXTURE(bare) {
	int unused;
};

FIXTURE_SETUP(bare)
{
}

FIXTURE_TEARDOWN(bare)
{
	nvg_set_ready(GPU, NVG_READY);
	nvg_set_ready(GPU_PLAIN, NVG_READY);
	nvg_set_ready(GPU_ODD, NVG_READY);
}

TEST_F_TIMEOUT(bare, unbind_while_mapped, 120)
{
	__u64 marker = 0x6e76677261636521ULL, val = 0;
	struct unbinder u = { 0 };
	struct nvg_dev dev;
	struct toucher t;
	char drv[64];
	int efd;
	__u8 *p;

	ASSERT_EQ(0, nvg_bind(GPU, NVG_DRIVER));
	ASSERT_EQ(0, nvg_open_group(GPU, &dev));
	efd = eventfd(0, EFD_NONBLOCK);
	ASSERT_LE(0, efd);
	ASSERT_EQ(0, set_request_eventfd(dev.device_fd, efd));
	p = map_region(dev.device_fd, USE, TOUCH_LEN, 0);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(0, toucher_start(&t, p, TOUCH_LEN));

	ASSERT_EQ(0, pthread_create(&u.thread, NULL, unbind_device, &u));
	EXPECT_TRUE(readable_within(efd, 20000));
	usleep(300000);
	EXPECT_FALSE(unbind_done(&u));

	toucher_stop(&t);
	EXPECT_FALSE(t.bad);
	__atomic_store_n((__u64 *)p, marker, __ATOMIC_RELAXED);
	close(dev.device_fd);
	dev.device_fd = -1;
	usleep(300000);
	EXPECT_FALSE(unbind_done(&u));

	munmap(p, TOUCH_LEN);
	pthread_join(u.thread, NULL);
	EXPECT_EQ(0, u.ret);
	EXPECT_NE(0, nvg_bound_driver(GPU, drv, sizeof(drv)));
	nvg_close(&dev);
	close(efd);

	ASSERT_EQ(0, nvg_bind(GPU, NVG_DRIVER));
	ASSERT_EQ(0, nvg_open_group(GPU, &dev));
	EXPECT_EQ(8, pread(dev.device_fd, &val, 8, nvg_region_offset(USE)));
	EXPECT_EQ(marker, val);
	nvg_close(&dev);
}

/* ---- Allocation failures injected into the probe ---- */

#define FAILSLAB	"/sys/kernel/debug/failslab/"
#define MAX_NTH		10000

/* Arm (@nth > 0) or disarm (0) the failure of this thread's nth allocation */
static int set_fail_nth(int fd, unsigned int nth)
{
	char val[16];
	int n = snprintf(val, sizeof(val), "%u", nth);

	return pwrite(fd, val, n, 0) == n ? 0 : -1;
}

/* Whether the failure armed on @fd happened (fail-nth reads back 0) */
static bool fail_nth_injected(int fd)
{
	char val[16];
	ssize_t n = pread(fd, val, sizeof(val) - 1, 0);

	if (n <= 0)
		return false;
	val[n] = '\0';
	return strtoul(val, NULL, 10) == 0;
}

/*
 * The code of kernel function @name: [@start, @end), up to the next text
 * symbol in /proc/kallsyms
 */
static bool kernel_text_range(const char *name, unsigned long *start,
			      unsigned long *end)
{
	unsigned long addr = 0;
	char sym[128], type;
	bool found = false;
	FILE *f;

	f = fopen("/proc/kallsyms", "r");
	if (!f)
		return false;
	while (!found && fscanf(f, "%lx %c %127s%*[^\n]", &addr, &type,
				sym) == 3)
		found = (type == 't' || type == 'T') && !strcmp(sym, name);
	*start = addr;
	*end = ULONG_MAX;
	rewind(f);
	while (found && fscanf(f, "%lx %c %127s%*[^\n]", &addr, &type,
			       sym) == 3) {
		if ((type == 't' || type == 'T') && addr > *start &&
		    addr < *end)
			*end = addr;
	}
	fclose(f);
	return found && *start && *end != ULONG_MAX;
}

static int write_hex(const char *path, unsigned long val)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%#lx", val);
	return nvg_write_file(path, buf);
}

/*
 * A probe that fails on any one of its memory allocations leaves the
 * device unbound with the driver core's message, or bound and working,
 * and nothing behind (the run ends with a kmemleak scan).  failslab fails
 * the nth slab allocation of this thread, for n = 1, 2, ... until a bind
 * through drivers_probe gets through without reaching the nth: every
 * allocation on the path, in the driver core, vfio and this driver, has
 * failed once.  The probe runs in the writing thread (no NUMA node).
 *
 * Left out: the allocations below vfio_create_group().  When one of its
 * later steps fails, vfio of 6.12 drops the new group with its iommu_group
 * still set: vfio_group_release() warns and the iommu_group reference is
 * lost, whichever driver registers the device.
 */
TEST_F_TIMEOUT(bare, probe_allocation_failures, 600)
{
	unsigned int nth, refused = 0, failed = 0, bound_anyway = 0;
	unsigned long skip_start, skip_end;
	int write_errno;
	char path[128], drv[64];
	struct nvg_klog log;
	int nth_fd, probe_fd;
	struct nvg_dev dev;
	bool injected = true;
	__u64 val;
	ssize_t n;

	nth_fd = open("/proc/thread-self/fail-nth", O_RDWR);
	if (nth_fd < 0)
		SKIP(return, "kernel without fault injection");
	ASSERT_TRUE(kernel_text_range("vfio_create_group", &skip_start,
				      &skip_end));
	/* Any allocation may fail, and quietly: a stack dump reads as a splat */
	ASSERT_EQ(0, nvg_write_file(FAILSLAB "ignore-gfp-wait", "N"));
	ASSERT_EQ(0, nvg_write_file(FAILSLAB "verbose", "0"));
	ASSERT_EQ(0, write_hex(FAILSLAB "reject-start", skip_start));
	ASSERT_EQ(0, write_hex(FAILSLAB "reject-end", skip_end));

	ASSERT_EQ(0, nvg_unbind(GPU));
	ASSERT_EQ(0, nvg_override(GPU, NVG_DRIVER));
	ASSERT_EQ(0, nvg_klog_start(&log));
	probe_fd = open("/sys/bus/pci/drivers_probe", O_WRONLY);
	ASSERT_LE(0, probe_fd);

	for (nth = 1; nth <= MAX_NTH; nth++) {
		ASSERT_EQ(0, set_fail_nth(nth_fd, nth));
		n = write(probe_fd, GPU, strlen(GPU));
		write_errno = errno;
		injected = fail_nth_injected(nth_fd);
		ASSERT_EQ(0, set_fail_nth(nth_fd, 0));
		if (!injected)
			break;
		if (n < 0) {
			/* Before the probe: drivers_probe says -EINVAL */
			EXPECT_TRUE(write_errno == ENOMEM ||
				    write_errno == EINVAL);
			refused++;
		} else if (nvg_bound_driver(GPU, drv, sizeof(drv))) {
			failed++;
		} else {
			/* An allocation whose failure is tolerated */
			EXPECT_STREQ(NVG_DRIVER, drv);
			ASSERT_EQ(0, nvg_open_group(GPU, &dev));
			EXPECT_EQ(8, pread(dev.device_fd, &val, 8,
					   nvg_region_offset(USE)));
			nvg_close(&dev);
			ASSERT_EQ(0, nvg_unbind(GPU));
			bound_anyway++;
		}
	}
	close(probe_fd);
	close(nth_fd);
	ASSERT_EQ(0, nvg_write_file(FAILSLAB "reject-start", "0"));
	ASSERT_EQ(0, nvg_write_file(FAILSLAB "reject-end", "0"));
	ASSERT_EQ(0, nvg_write_file(FAILSLAB "ignore-gfp-wait", "Y"));
	ASSERT_EQ(0, nvg_write_file(FAILSLAB "verbose", "2"));
	TH_LOG("%u allocations failed: %u before the probe, %u failed it, %u tolerated",
	       nth - 1, refused, failed, bound_anyway);

	/* The last bind ran out of allocations to fail and got through */
	EXPECT_FALSE(injected);
	EXPECT_EQ(0, nvg_bound_driver(GPU, drv, sizeof(drv)));
	EXPECT_STREQ(NVG_DRIVER, drv);
	EXPECT_LT(0, failed);
	snprintf(path, sizeof(path), "%s: probe with driver %s failed with error -12",
		 GPU, NVG_DRIVER);
	EXPECT_LT(0, nvg_klog_count(&log, path));
	nvg_klog_stop(&log);
	ASSERT_EQ(0, nvg_open_group(GPU, &dev));
	EXPECT_EQ(8, pread(dev.device_fd, &val, 8, nvg_region_offset(USE)));
	nvg_close(&dev);
}

/* ---- Waiting for the GPU memory to be ready ---- */

#define MSG_WAITED	GPU ": GPU memory ready after "
#define MSG_PROBE_ETIME	GPU ": probe with driver " NVG_DRIVER " failed with error -62"
/* Error messages of the GPU, and of them the driver core's probe failure */
#define MSG_ERROR	"3;" NVG_DRIVER " " GPU ": "
#define MSG_CORE_ERROR	MSG_ERROR "probe with driver "

/* The timeout message with the registers at (link 0xff, HBM 0) */
#define MSG_TIMEOUT_HBM	GPU NVG_MSG_TIMEOUT \
			" (C2C link 0xff, HBM training 0x0): -ETIME"

/* Bind the GPU; the seconds it took, or -1 when it did not bind */
static double timed_bind(const char *bdf)
{
	double start = nvg_now();

	if (nvg_bind(bdf, NVG_DRIVER))
		return -1;
	return nvg_now() - start;
}

struct late_setter {
	pthread_t thread;
	const char *bdf;	/* NULL: GPU */
	int ret;
};

/* Sleep NVG_LATE seconds, then set the GPU ready, as its firmware would */
static void *set_ready_late(void *arg)
{
	struct late_setter *l = arg;

	usleep(NVG_LATE * 1e6);
	l->ret = nvg_set_ready(l->bdf ?: GPU, NVG_READY);
	return NULL;
}

/*
 * A GPU ready when it is bound: the probe reads the two registers once and
 * does not sleep.  The bind is timed next to that of the function without
 * GPU memory (00:06.0), which does not poll at all: one poll interval
 * (0.1 s) more would mean a sleep.
 */
TEST_F(bare, bind_ready_gpu_does_not_wait)
{
	struct nvg_klog log;
	double t, plain;

	ASSERT_EQ(0, nvg_unbind(GPU_PLAIN));
	plain = timed_bind(GPU_PLAIN);
	ASSERT_LE(0, plain);

	ASSERT_EQ(0, nvg_unbind(GPU));
	ASSERT_EQ(0, nvg_set_ready(GPU, NVG_READY));
	ASSERT_EQ(0, nvg_klog_start(&log));
	t = timed_bind(GPU);
	ASSERT_LE(0, t);
	TH_LOG("bind took %.3f s with GPU memory, %.3f s without", t, plain);
	EXPECT_GT(plain + NVG_POLL_INTERVAL, t);
	EXPECT_EQ(0, nvg_klog_count(&log, MSG_WAITED));
	nvg_klog_stop(&log);
}

/*
 * The function without GPU memory properties is never polled: with its
 * readiness registers saying not ready it binds at once, and after a reset
 * its BAR2 (the stand-in's MMIO, through vfio-pci-core) reads at once.
 */
TEST_F(bare, plain_function_never_polled)
{
	double bind, read;
	struct nvg_klog log;
	struct nvg_dev dev;
	__u16 id = 0;

	ASSERT_EQ(0, nvg_unbind(GPU_PLAIN));
	ASSERT_EQ(0, nvg_set_ready(GPU_PLAIN, 0));
	ASSERT_EQ(0, nvg_klog_start(&log));
	bind = timed_bind(GPU_PLAIN);
	ASSERT_LE(0, bind);
	EXPECT_GT(NVG_POLL_INTERVAL, bind);

	ASSERT_EQ(0, nvg_open_group(GPU_PLAIN, &dev));
	ASSERT_EQ(0, ioctl(dev.device_fd, VFIO_DEVICE_RESET));
	read = nvg_now();
	/* The bochs-display VBE DISPI ID register, 0xb0c0..0xb0c5 */
	EXPECT_EQ(2, pread(dev.device_fd, &id, 2,
			   nvg_region_offset(RES) + 0x500));
	read = nvg_now() - read;
	EXPECT_EQ(0xb0c0, id & 0xfff0);
	EXPECT_GT(NVG_POLL_INTERVAL, read);
	nvg_close(&dev);
	TH_LOG("registers not ready: bind %.3f s, read after a reset %.3f s",
	       bind, read);
	EXPECT_EQ(0, nvg_klog_count(&log, GPU_PLAIN NVG_MSG_WAITED));
	EXPECT_EQ(0, nvg_klog_count(&log, GPU_PLAIN NVG_MSG_TIMEOUT));
	nvg_klog_stop(&log);
	EXPECT_EQ(0, nvg_set_ready(GPU_PLAIN, NVG_READY));
}

/* A GPU that becomes ready NVG_LATE seconds into its probe: the bind waits */
TEST_F(bare, bind_waits_for_late_gpu)
{
	struct late_setter l = { 0 };
	struct nvg_klog log;
	double t;

	ASSERT_EQ(0, nvg_unbind(GPU));
	ASSERT_EQ(0, nvg_set_ready(GPU, 0));
	ASSERT_EQ(0, nvg_klog_start(&log));
	/* The clock starts before the thread that sets the GPU ready */
	t = nvg_now();
	ASSERT_EQ(0, pthread_create(&l.thread, NULL, set_ready_late, &l));
	ASSERT_EQ(0, nvg_bind(GPU, NVG_DRIVER));
	t = nvg_now() - t;
	pthread_join(l.thread, NULL);
	ASSERT_EQ(0, l.ret);
	TH_LOG("bind took %.3f s", t);
	/* Ready NVG_LATE s in: the next poll, at most an interval later, sees it */
	EXPECT_LE(NVG_LATE, t);
	EXPECT_GT(NVG_LATE + NVG_POLL_INTERVAL + NVG_READY_SLACK, t);
	EXPECT_EQ(1, nvg_klog_count(&log, MSG_WAITED));
	nvg_klog_stop(&log);
}

/*
 * A GPU that never becomes ready: the probe fails with -ETIME at the
 * bound, with one message of the driver that gives both registers (the
 * link up, the HBM not trained), besides the driver core's.
 */
TEST_F_TIMEOUT(bare, bind_never_ready_gpu_times_out, 120)
{
	struct nvg_klog log;
	char drv[64];
	double t;

	ASSERT_EQ(0, nvg_unbind(GPU));
	ASSERT_EQ(0, nvg_set_ready_regs(GPU, NVG_READY, 0));
	ASSERT_EQ(0, nvg_klog_start(&log));
	t = nvg_now();
	EXPECT_EQ(-1, nvg_bind(GPU, NVG_DRIVER));
	t = nvg_now() - t;
	TH_LOG("probe failed after %.1f s", t);
	EXPECT_NE(0, nvg_bound_driver(GPU, drv, sizeof(drv)));
	EXPECT_LE(NVG_READY_BOUND, t);
	EXPECT_GT(NVG_READY_BOUND + NVG_POLL_INTERVAL + NVG_TIMEOUT_SLACK, t);
	EXPECT_EQ(1, nvg_klog_count(&log, MSG_TIMEOUT_HBM));
	EXPECT_EQ(1, nvg_klog_count(&log, MSG_PROBE_ETIME));
	EXPECT_EQ(1, nvg_klog_count(&log, MSG_ERROR) -
		     nvg_klog_count(&log, MSG_CORE_ERROR));
	nvg_klog_stop(&log);

	/* Once ready, it binds */
	ASSERT_EQ(0, nvg_set_ready(GPU, NVG_READY));
	EXPECT_EQ(0, nvg_bind(GPU, NVG_DRIVER));
}

/*
 * Two GPUs that the driver finds when it loads: the first (00:05.0) never
 * ready, its probe timing out at the bound, the second (00:09.0) ready
 * NVG_LATE s in.  The driver probes asynchronously, so the second is bound
 * while the first one's probe still waits, not after its timeout; the
 * module load itself waits for both probes.  What is asserted is an order
 * and minimums, which no load on the machine can break: the second bound
 * once it was ready, and before the first one's probe logged its timeout.
 */
TEST_F_TIMEOUT(bare, late_gpus_probe_in_parallel, 120)
{
	struct late_setter l = { 0 };
	double start, odd = -1, load;
	int timed_out = -1;
	struct nvg_klog log;
	char path[PATH_MAX];
	int status;
	pid_t pid;
	glob_t g;
	size_t i;

	/* Only the two GPUs bind when the module loads */
	ASSERT_EQ(0, glob("/sys/bus/pci/devices/*/driver_override", 0, NULL,
			  &g));
	for (i = 0; i < g.gl_pathc; i++)
		nvg_write_file(g.gl_pathv[i], "\n");
	globfree(&g);
	system("rmmod nvgrace_gpu_vfio_pci_kunit 2>/dev/null");
	ASSERT_EQ(0, system("rmmod nvgrace_gpu_vfio_pci"));
	ASSERT_EQ(0, nvg_override(GPU, NVG_DRIVER));
	ASSERT_EQ(0, nvg_override(GPU_ODD, NVG_DRIVER));
	ASSERT_EQ(0, nvg_set_ready_regs(GPU, NVG_READY, 0));
	ASSERT_EQ(0, nvg_set_ready(GPU_ODD, 0));

	ASSERT_EQ(0, nvg_klog_start(&log));
	l.bdf = GPU_ODD;
	start = nvg_now();
	ASSERT_EQ(0, pthread_create(&l.thread, NULL, set_ready_late, &l));
	pid = fork();
	if (!pid)
		_exit(system("modprobe nvgrace-gpu-vfio-pci") ? 1 : 0);
	ASSERT_LT(0, pid);
	/* The driver link appears when the probe starts, vfio-dev at its end */
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vfio-dev",
		 GPU_ODD);
	while (nvg_now() - start < 2 * NVG_READY_BOUND) {
		if (!access(path, F_OK)) {
			odd = nvg_now() - start;
			timed_out = nvg_klog_count(&log, MSG_TIMEOUT_HBM);
			break;
		}
		usleep(10000);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	load = nvg_now() - start;
	pthread_join(l.thread, NULL);
	TH_LOG("second GPU bound after %.3f s; module load took %.1f s", odd,
	       load);
	EXPECT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status));
	EXPECT_EQ(0, l.ret);
	EXPECT_LE(NVG_LATE, odd);
	/* Bound while the first GPU's probe still waited */
	EXPECT_EQ(0, timed_out);
	EXPECT_EQ(1, nvg_klog_count(&log, MSG_TIMEOUT_HBM));
	EXPECT_FALSE(log.lost);
	nvg_klog_stop(&log);
	EXPECT_LE(NVG_READY_BOUND, load);
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", GPU);
	EXPECT_NE(0, access(path, F_OK));

	ASSERT_EQ(0, nvg_set_ready(GPU, NVG_READY));
	EXPECT_EQ(0, nvg_bind(GPU, NVG_DRIVER));
}

/* Write a readiness register through the device's own BAR0 (region 0) */
static int bar0_write32(int fd, off_t off, __u32 val)
{
	return pwrite(fd, &val, 4, nvg_region_offset(0) + off) == 4 ? 0 : -1;
}

struct mem_reader {
	pthread_t thread;
	int fd;
	__u64 *map;		/* read through it, else with pread() */
	ssize_t ret;
	int err;
	__u64 val;
	double end;		/* when the read ended, on nvg_now()'s clock */
	bool done;
};

static void *read_mem(void *arg)
{
	struct mem_reader *r = arg;

	if (r->map) {
		r->val = __atomic_load_n(r->map, __ATOMIC_RELAXED);
		r->ret = 8;
	} else {
		r->ret = pread(r->fd, &r->val, 8, nvg_region_offset(USE));
		r->err = errno;
	}
	r->end = nvg_now();
	__atomic_store_n(&r->done, true, __ATOMIC_RELEASE);
	return NULL;
}

static bool read_done(struct mem_reader *r)
{
	return __atomic_load_n(&r->done, __ATOMIC_ACQUIRE);
}

/* Fault in @p from a child process, which the caller waits for */
static pid_t touch_start(const __u64 *p)
{
	pid_t pid = fork();

	if (!pid) {
		__atomic_load_n(p, __ATOMIC_RELAXED);
		_exit(0);
	}
	return pid;
}

/* 0 when the child's access worked, the signal that ended it otherwise */
static int touch_wait(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

/*
 * After VFIO_DEVICE_RESET the GPU memory waits until the GPU is ready
 * again: a pread() and a fault of a mapping zapped by the reset both block
 * until BAR0 says ready, then see the memory as it was.  Reads of the
 * padding past the memory do not wait.
 */
TEST_F_TIMEOUT(gpu, reset_waits_for_ready, 120)
{
	__u64 marker = 0x7265616479212121ULL, pad = 0;
	struct mem_reader rd = { .fd = self->fd };
	struct mem_reader flt = { .fd = self->fd };
	struct nvg_klog log;
	double start, t;
	__u64 *map;

	ASSERT_EQ(8, pwrite(self->fd, &marker, 8, nvg_region_offset(USE)));
	map = map_region(self->fd, USE, 2 * SZ_1M, 0);
	ASSERT_NE(MAP_FAILED, map);
	ASSERT_EQ(marker, *map);

	ASSERT_EQ(0, nvg_klog_start(&log));
	ASSERT_EQ(0, bar0_write32(self->fd, NVG_READY_LINK, 0));
	ASSERT_EQ(0, ioctl(self->fd, VFIO_DEVICE_RESET));
	flt.map = map;
	start = nvg_now();
	ASSERT_EQ(0, pthread_create(&rd.thread, NULL, read_mem, &rd));
	ASSERT_EQ(0, pthread_create(&flt.thread, NULL, read_mem, &flt));

	/* The padding of usemem (1 GiB of memory, a 2 GiB BAR) answers now */
	t = nvg_now();
	EXPECT_EQ(8, pread(self->fd, &pad, 8, nvg_region_offset(USE) +
			   mem_len[USE]));
	t = nvg_now() - t;
	EXPECT_EQ(~0ULL, pad);
	EXPECT_GT(NVG_POLL_INTERVAL, t);
	TH_LOG("the padding read in %.3f s", t);

	t = NVG_LATE - (nvg_now() - start);
	if (t > 0)
		usleep(t * 1e6);
	t = nvg_now() - start;
	EXPECT_FALSE(read_done(&rd));
	EXPECT_FALSE(read_done(&flt));
	ASSERT_EQ(0, bar0_write32(self->fd, NVG_READY_LINK, NVG_READY));
	pthread_join(rd.thread, NULL);
	pthread_join(flt.thread, NULL);
	/*
	 * From the common start, which comes before the readers and the
	 * write that sets the GPU ready: a thread that starts late under
	 * load then cannot make its read look shorter than the wait
	 */
	TH_LOG("reads after the reset ended %.3f and %.3f s in", rd.end - start,
	       flt.end - start);
	EXPECT_EQ(8, rd.ret);
	EXPECT_EQ(marker, rd.val);
	EXPECT_EQ(marker, flt.val);
	EXPECT_LE(NVG_LATE, rd.end - start);
	EXPECT_GT(NVG_LATE + NVG_POLL_INTERVAL + NVG_READY_SLACK,
		  rd.end - start);
	EXPECT_GT(NVG_LATE + NVG_POLL_INTERVAL + NVG_READY_SLACK,
		  flt.end - start);
	/* One poll served both */
	EXPECT_EQ(1, nvg_klog_count(&log, MSG_WAITED));
	nvg_klog_stop(&log);
	munmap(map, 2 * SZ_1M);
}

/*
 * After a reset the GPU never becomes ready (link up, HBM not trained):
 * two pread()s and a fault from another process all wait on one poll,
 * which times out at the bound; each fails then, the reads with ETIME and
 * the fault with SIGBUS, and one message gives the registers.  Without a
 * new reset, the memory works once the GPU is ready.
 */
TEST_F_TIMEOUT(gpu, reset_never_ready_times_out, 120)
{
	struct mem_reader rd[2] = { { .fd = self->fd }, { .fd = self->fd } };
	struct nvg_klog log;
	double start, t;
	__u64 *map, val;
	pid_t child;
	int i;

	map = map_region(self->fd, USE, SZ_1M, 0);
	ASSERT_NE(MAP_FAILED, map);
	ASSERT_EQ(0, nvg_klog_start(&log));
	ASSERT_EQ(0, bar0_write32(self->fd, NVG_READY_HBM, 0));
	ASSERT_EQ(0, ioctl(self->fd, VFIO_DEVICE_RESET));
	start = nvg_now();
	child = touch_start(map);
	ASSERT_LT(0, child);
	for (i = 0; i < 2; i++)
		ASSERT_EQ(0, pthread_create(&rd[i].thread, NULL, read_mem,
					    &rd[i]));
	for (i = 0; i < 2; i++)
		pthread_join(rd[i].thread, NULL);
	EXPECT_EQ(SIGBUS, touch_wait(child));
	t = nvg_now() - start;
	TH_LOG("reads failed %.1f and %.1f s in, the fault by %.1f s",
	       rd[0].end - start, rd[1].end - start, t);
	for (i = 0; i < 2; i++) {
		EXPECT_EQ(-1, rd[i].ret);
		EXPECT_EQ(ETIME, rd[i].err);
		/* From before the readers: a late thread cannot shorten it */
		EXPECT_LE(NVG_READY_BOUND, rd[i].end - start);
	}
	/* All three within one bound: none polled the full bound again */
	EXPECT_GT(NVG_READY_BOUND + NVG_POLL_INTERVAL + NVG_TIMEOUT_SLACK, t);
	EXPECT_EQ(1, nvg_klog_count(&log, MSG_TIMEOUT_HBM));
	nvg_klog_stop(&log);

	ASSERT_EQ(0, bar0_write32(self->fd, NVG_READY_HBM, NVG_READY));
	EXPECT_EQ(8, pread(self->fd, &val, 8, nvg_region_offset(USE)));
	EXPECT_EQ(0, touch_wait(touch_start(map)));
	munmap(map, SZ_1M);
}

/*
 * After a reset, BAR0 must decode for the registers to be read: with
 * memory decode off (as QEMU leaves it across a reset), an access to the
 * GPU memory fails at once, pread() with EIO and a fault with SIGBUS,
 * instead of waiting out the bound, and works once decode is back on.
 */
TEST_F(gpu, reset_with_decode_off_fails_fast)
{
	__u16 cmd, off;
	__u64 val, *map;
	double t, fault;

	/* The kernel mapping of usemem is made by the first access */
	ASSERT_EQ(8, pread(self->fd, &val, 8, nvg_region_offset(USE)));
	map = map_region(self->fd, USE, SZ_1M, 0);
	ASSERT_NE(MAP_FAILED, map);
	ASSERT_EQ(2, nvg_cfg_read(self->fd, PCI_COMMAND, &cmd, 2));
	off = cmd & ~PCI_COMMAND_MEMORY;
	ASSERT_EQ(2, nvg_cfg_write(self->fd, PCI_COMMAND, &off, 2));
	ASSERT_EQ(0, ioctl(self->fd, VFIO_DEVICE_RESET));
	t = nvg_now();
	EXPECT_EQ(-1, pread(self->fd, &val, 8, nvg_region_offset(USE)));
	t = nvg_now() - t;
	EXPECT_EQ(EIO, errno);
	EXPECT_EQ(SIGBUS, nvg_touch((__u8 *)map, 0xa5, &fault));
	TH_LOG("pread failed after %.3f s, the fault after %.3f s", t, fault);
	EXPECT_GT(NVG_POLL_INTERVAL, t);
	EXPECT_GT(NVG_POLL_INTERVAL, fault);

	ASSERT_EQ(2, nvg_cfg_write(self->fd, PCI_COMMAND, &cmd, 2));
	EXPECT_EQ(8, pread(self->fd, &val, 8, nvg_region_offset(USE)));
	EXPECT_EQ(0, touch_wait(touch_start(map)));
	munmap(map, SZ_1M);
}

/* ---- Threads mixing every operation ---- */

#define WORKERS		8
#define SLICE		(2 * SZ_1M)
#define MAX_IO		(64 * 1024)

struct worker {
	pthread_t thread;
	int fd;
	unsigned int id;
	double end;
	__u64 rng;
	__u8 *shadow[2];	/* what this thread's slices must hold */
	__u8 *buf;
	unsigned long ops;
	char err[160];
};

static off_t slice_pos(struct worker *w, int i, size_t off)
{
	return nvg_region_offset(mem_regions[i]) + w->id * SLICE + off;
}

static bool op_write(struct worker *w, int i)
{
	size_t n = 1 + rnd_below(&w->rng, MAX_IO);
	size_t off = rnd_below(&w->rng, SLICE - n + 1);

	fill(w->buf, n, rnd(&w->rng));
	if (pwrite(w->fd, w->buf, n, slice_pos(w, i, off)) != (ssize_t)n)
		return false;
	memcpy(w->shadow[i] + off, w->buf, n);
	return true;
}

static bool op_read(struct worker *w, int i)
{
	size_t n = 1 + rnd_below(&w->rng, MAX_IO);
	size_t off = rnd_below(&w->rng, SLICE - n + 1);

	if (pread(w->fd, w->buf, n, slice_pos(w, i, off)) != (ssize_t)n)
		return false;
	return !memcmp(w->shadow[i] + off, w->buf, n);
}

static bool op_mmap(struct worker *w, int i)
{
	__u8 *p = map_region(w->fd, mem_regions[i], SLICE, w->id * SLICE);
	size_t off = rnd_below(&w->rng, SLICE), chk;
	bool ok;

	if (p == MAP_FAILED)
		return false;
	p[off] = (__u8)rnd(&w->rng);
	w->shadow[i][off] = p[off];
	chk = rnd_below(&w->rng, SLICE);
	ok = p[chk] == w->shadow[i][chk];
	munmap(p, SLICE);
	return ok;
}

static bool op_config(struct worker *w)
{
	off_t reg = rnd_below(&w->rng, 2) ? 0x18 : 0x20;
	__u64 val = rnd(&w->rng), size = bar_size[reg == 0x18 ? RES : USE];

	if (rnd_below(&w->rng, 2) &&
	    nvg_cfg_write(w->fd, reg + 4 * rnd_below(&w->rng, 2), &val, 4) != 4)
		return false;
	return bar_reg_consistent(nvg_cfg_read64(w->fd, reg), size);
}

static bool op_region_info(struct worker *w)
{
	unsigned int index = rnd_below(&w->rng, VFIO_PCI_CONFIG_REGION_INDEX);
	struct vfio_region_info info;

	if (nvg_region_info(w->fd, index, &info))
		return false;
	return (index != RES && index != USE) || info.size == bar_size[index];
}

static void *work(void *arg)
{
	struct worker *w = arg;
	int i, op;
	bool ok;

	for (i = 0; i < 2; i++) {
		fill(w->shadow[i], SLICE, w->rng + i);
		if (pwrite(w->fd, w->shadow[i], SLICE, slice_pos(w, i, 0)) !=
		    SLICE) {
			snprintf(w->err, sizeof(w->err), "initial write: %s",
				 strerror(errno));
			return NULL;
		}
	}
	while (nvg_now() < w->end) {
		i = rnd_below(&w->rng, 2);
		op = rnd_below(&w->rng, 100);
		if (op < 35)
			ok = op_write(w, i);
		else if (op < 70)
			ok = op_read(w, i);
		else if (op < 80)
			ok = op_mmap(w, i);
		else if (op < 90)
			ok = op_config(w);
		else if (op < 99)
			ok = op_region_info(w);
		else	/* another thread may be resetting it */
			ok = !ioctl(w->fd, VFIO_DEVICE_RESET) ||
			     errno == EAGAIN;
		w->ops++;
		if (!ok) {
			snprintf(w->err, sizeof(w->err),
				 "operation %d on region %d: %s", op,
				 mem_regions[i], strerror(errno));
			return NULL;
		}
	}
	return NULL;
}

TEST_F_TIMEOUT(gpu, concurrency, 300)
{
	unsigned long seconds = env_ulong("NVG_STRESS_SECONDS", 5), total = 0;
	struct worker w[WORKERS];
	unsigned int i;

	memset(w, 0, sizeof(w));
	for (i = 0; i < WORKERS; i++) {
		w[i].fd = self->fd;
		w[i].id = i;
		w[i].end = nvg_now() + seconds;
		w[i].rng = 0x9e3779b97f4a7c15ULL * (i + 1);
		w[i].shadow[0] = malloc(SLICE);
		w[i].shadow[1] = malloc(SLICE);
		w[i].buf = malloc(MAX_IO);
		ASSERT_TRUE(w[i].shadow[0] && w[i].shadow[1] && w[i].buf);
	}
	for (i = 0; i < WORKERS; i++)
		ASSERT_EQ(0, pthread_create(&w[i].thread, NULL, work, &w[i]));
	for (i = 0; i < WORKERS; i++) {
		pthread_join(w[i].thread, NULL);
		EXPECT_STREQ("", w[i].err) {
			TH_LOG("thread %u", i);
		}
		total += w[i].ops;
	}
	/* The slices hold what their threads last wrote, whole */
	for (i = 0; i < WORKERS; i++) {
		int r;

		for (r = 0; r < 2; r++) {
			__u8 *back = malloc(SLICE);

			ASSERT_NE(NULL, back);
			ASSERT_EQ(SLICE, pread(self->fd, back, SLICE,
					       slice_pos(&w[i], r, 0)));
			EXPECT_EQ(0, memcmp(w[i].shadow[r], back, SLICE));
			free(back);
		}
		free(w[i].shadow[0]);
		free(w[i].shadow[1]);
		free(w[i].buf);
	}
	EXPECT_TRUE(bar_reg_consistent(nvg_cfg_read64(self->fd, 0x18),
				       bar_size[RES]));
	EXPECT_TRUE(bar_reg_consistent(nvg_cfg_read64(self->fd, 0x20),
				       bar_size[USE]));
	TH_LOG("%u threads, %lu s: %lu operations", WORKERS, seconds, total);
}

/* ---- The fuzzer ---- */

#define FUZZ_BUF	(8 * 1024)
#define FUZZ_BUF_ADDR	0x100000000UL	/* 4 GiB */
/* A fuzzed feature ioctl may leave the device in low power: leave it */
#define LOW_POWER_EXIT_OPS	4096	/* operations, not bytes */
#define FUZZ_OPS		1000000	/* default of NVG_FUZZ_OPS */
#define FUZZ_PROGRESS_OPS	1024	/* how often to look at the clock */
#define FUZZ_PROGRESS_SECONDS	60
/*
 * NVG_FUZZ_TIMEOUT, the harness's bound on each fuzz test in seconds, comes
 * from the build (tests/vm/run-vm.sh): it grows with the operations that
 * the run asks for
 */

struct fuzz {
	int fd;
	const __u64 *len;	/* real length and BAR size, by region index */
	const __u64 *bar;
	__u64 rng;
	__u8 *buf;		/* FUZZ_BUF bytes, then a PROT_NONE page */
	unsigned long ops, checked;
	char err[200];
};

/* Real length and BAR size of region @index; 0 for one not GPU memory */
static __u64 fuzz_len(const struct fuzz *f, unsigned int index)
{
	return index < NR_MEM_INDEX ? f->len[index] : 0;
}

static __u64 fuzz_bar(const struct fuzz *f, unsigned int index)
{
	return index < NR_MEM_INDEX ? f->bar[index] : 0;
}

/*
 * A file offset inside a region, or near one of its edges: bytes, pages
 * and 4 KiB, which is a page on x86_64 and not on a 64 KiB kernel
 */
static __u64 fuzz_offset(struct fuzz *f, unsigned int index)
{
	__u64 len = fuzz_len(f, index), bar = fuzz_bar(f, index);
	__u64 page = page_size();
	const __u64 edges[] = {
		0, 1, 7, page - 1, page, len - 8, len - 1, len, len + 1,
		len + page,
		SZ_4K - 1, SZ_4K, len + SZ_4K,	/* 4 KiB: a page on x86 only */
		bar - 8, bar - 1, bar, bar + 1, 2 * bar, (1ULL << 39) + 3,
		(1ULL << 40) - 1, rnd_below(&f->rng, bar ? bar : 1ULL << 32),
		rnd_below(&f->rng, 1ULL << 40),
	};

	return edges[rnd_below(&f->rng, ARRAY_SIZE(edges))];
}

static size_t fuzz_count(struct fuzz *f)
{
	/* Byte counts around 4 KiB and the buffer size */
	const __u64 counts[] = {
		0, 1, 2, 3, 4, 7, 8, 9, 16,
		SZ_4K - 1, SZ_4K, SZ_4K + 1,	/* bytes, not pages */
		FUZZ_BUF - 1,
		FUZZ_BUF, FUZZ_BUF + 1, 1ULL << 31, 1ULL << 62, ~0ULL >> 1,
		1ULL << 63, ~0ULL, 1 + rnd_below(&f->rng, FUZZ_BUF),
	};

	return counts[rnd_below(&f->rng, ARRAY_SIZE(counts))];
}

/* A region index: mostly the two memory BARs, sometimes any other */
static unsigned int fuzz_index(struct fuzz *f)
{
	switch (rnd_below(&f->rng, 8)) {
	case 0:
		return rnd_below(&f->rng, VFIO_PCI_NUM_REGIONS + 2);
	case 1:
		return rnd_below(&f->rng, 1U << 23);
	default:
		return mem_regions[rnd_below(&f->rng, 2)];
	}
}

static void fuzz_fail(struct fuzz *f, const char *what, unsigned int index,
		      __u64 off, __u64 count, ssize_t ret, int err)
{
	if (f->err[0])
		return;
	snprintf(f->err, sizeof(f->err),
		 "op %lu: %s region %u offset %#llx count %#llx: got %zd (%s)",
		 f->ops, what, index, (unsigned long long)off,
		 (unsigned long long)count, ret, strerror(err));
}

/* A file position: mostly region + offset, sometimes near 2^63 or 2^64 */
static __u64 fuzz_position(struct fuzz *f)
{
	const __u64 far[] = {
		(1ULL << 63) - 1, (1ULL << 63) - 8, 1ULL << 63, ~0ULL,
		~0ULL - 7, 1ULL << 62,
	};
	unsigned int index;

	if (!rnd_below(&f->rng, 16))
		return far[rnd_below(&f->rng, ARRAY_SIZE(far))];
	index = fuzz_index(f);
	return ((__u64)index << 40) + fuzz_offset(f, index);
}

/*
 * pread() or pwrite(): for the emulated BARs, what it must return as far as
 * this side knows; a transfer larger than the buffer may stop at its end.
 */
static void fuzz_rw(struct fuzz *f)
{
	__u64 pos = fuzz_position(f), count = fuzz_count(f), want;
	bool write = rnd_below(&f->rng, 2);
	const char *what = write ? "pwrite" : "pread";
	unsigned int index = pos >> 40;
	__u64 off = pos & ((1ULL << 40) - 1);
	ssize_t ret;
	int err;

	ret = write ? pwrite(f->fd, f->buf, count, pos) :
		      pread(f->fd, f->buf, count, pos);
	err = errno;
	/*
	 * A write to BAR0 may hit the readiness registers, which the
	 * firmware of a working GPU keeps at ready: set them back, or the
	 * next reset would make the GPU memory wait out the bound
	 */
	if (write && index == 0 && ret > 0) {
		bar0_write32(f->fd, NVG_READY_LINK, NVG_READY);
		bar0_write32(f->fd, NVG_READY_HBM, NVG_READY);
	}

	/*
	 * The VFS refuses a buffer beyond the user address space, then
	 * negative positions, counts and their sums
	 */
	if (count >= 1ULL << 62) {
		f->checked++;
		if (ret != -1 || (err != EFAULT && err != EINVAL))
			fuzz_fail(f, what, index, off, count, ret, err);
		return;
	}
	if ((__s64)pos < 0 || (__s64)(pos + count) < 0) {
		f->checked++;
		if (ret != -1 || err != EINVAL)
			fuzz_fail(f, what, index, off, count, ret, err);
		return;
	}
	if (index != RES && index != USE)
		return;

	f->checked++;
	if (off >= f->bar[index]) {
		if (ret != -1 || err != EINVAL)
			fuzz_fail(f, what, index, off, count, ret, err);
		return;
	}
	want = count < f->bar[index] - off ? count : f->bar[index] - off;
	if (want > 0x7ffff000)	/* MAX_RW_COUNT */
		want = 0x7ffff000;
	/* The device may sit in low power after a fuzzed feature ioctl */
	if (ret == -1 && err == EIO)
		return;
	if (want <= FUZZ_BUF ? ret != (ssize_t)want :
			       ret <= 0 || ret > (ssize_t)want)
		fuzz_fail(f, what, index, off, count, ret, err);
}

/* A mapping length: pages, huge sizes, and the mappable part and beyond */
static size_t fuzz_length(struct fuzz *f, unsigned int index)
{
	__u64 len = fuzz_len(f, index), page = page_size();
	__u64 mappable = len & ~(page - 1);
	const __u64 lens[] = {
		page, 2 * page, 2 * SZ_1M, 1UL << 30, mappable, mappable + page,
		page * (1 + rnd_below(&f->rng, 1024)),
		SZ_4K,	/* less than a page on a 64 KiB kernel: mmap() rounds up */
	};

	return lens[rnd_below(&f->rng, ARRAY_SIZE(lens))];
}

/* mmap() anywhere; a mapping of GPU memory must work where it exists */
static void fuzz_mmap(struct fuzz *f)
{
	unsigned int index = fuzz_index(f) & 0xf;
	__u64 off = fuzz_offset(f, index);
	size_t len = fuzz_length(f, index);
	int flags = rnd_below(&f->rng, 4) ? MAP_SHARED : MAP_PRIVATE;
	bool mem = index == RES || index == USE, ok;
	const char *what = flags == MAP_SHARED ? "mmap shared" : "mmap private";
	/* mmap() maps whole pages */
	size_t page = page_size(), span = (len + page - 1) & ~(page - 1);
	__u8 *p;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, f->fd,
		 nvg_region_offset(index) + off);
	if (!mem) {
		if (p != MAP_FAILED)
			munmap(p, len);
		return;
	}
	f->checked++;
	ok = flags == MAP_SHARED && !(off & (page - 1)) &&
	     off + span <= (f->len[index] & ~(page - 1));
	if (p == MAP_FAILED) {
		/*
		 * The driver refuses with EINVAL; mmap() itself with
		 * EOVERFLOW, or with ENOMEM when a private writable mapping
		 * is larger than the memory it may commit
		 */
		if (ok || (errno != EINVAL && errno != EOVERFLOW &&
			   (errno != ENOMEM || flags != MAP_PRIVATE)))
			fuzz_fail(f, what, index, off, len, -1, errno);
		return;
	}
	if (!ok)
		fuzz_fail(f, what, index, off, len, 0, 0);
	/* Touching fails only in low power, with SIGBUS */
	if (nvg_touch(p, 0xa5, NULL) == SIGSEGV ||
	    nvg_touch(p + span - page, 0xa5, NULL) == SIGSEGV)
		fuzz_fail(f, "touch", index, off, len, 0, 0);
	munmap(p, len);
}

/* Config space: anything, anywhere */
static void fuzz_config(struct fuzz *f)
{
	off_t pos = rnd_below(&f->rng, 4) ? 0x10 + rnd_below(&f->rng, 0x20) :
		    rnd_below(&f->rng, 0x1100);
	size_t len = 1 + rnd_below(&f->rng, 8);

	fill(f->buf, len, rnd(&f->rng));
	if (rnd_below(&f->rng, 2))
		nvg_cfg_write(f->fd, pos, f->buf, len);
	else
		nvg_cfg_read(f->fd, pos, f->buf, len);
}

/* A VFIO device ioctl, with garbage and a random argsz */
static void fuzz_ioctl(struct fuzz *f)
{
	const unsigned long cmds[] = {
		VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_REGION_INFO,
		VFIO_DEVICE_GET_IRQ_INFO, VFIO_DEVICE_SET_IRQS,
		VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, VFIO_DEVICE_IOEVENTFD,
		VFIO_DEVICE_FEATURE, VFIO_DEVICE_PCI_HOT_RESET,
		_IO(VFIO_TYPE, VFIO_BASE + 60 + rnd_below(&f->rng, 40)),
	};
	const __u32 argsz[] = { 0, 1, 4, 8, 15, 16, 20, 24, 31, 32, 40, 64,
				256, FUZZ_BUF };
	__u32 *hdr = (__u32 *)f->buf;
	unsigned long cmd = cmds[rnd_below(&f->rng, ARRAY_SIZE(cmds))];
	struct vfio_region_info *info = (void *)f->buf;
	int ret;

	fill(f->buf, 256, rnd(&f->rng));
	hdr[0] = argsz[rnd_below(&f->rng, ARRAY_SIZE(argsz))];
	if (rnd_below(&f->rng, 2))
		hdr[1] = 0;	/* flags: let it past the first checks */
	if (cmd == VFIO_DEVICE_GET_REGION_INFO && rnd_below(&f->rng, 2))
		info->index = mem_regions[rnd_below(&f->rng, 2)];
	ret = ioctl(f->fd, cmd, f->buf);

	/* Region info of a memory BAR with room for it: its BAR size */
	if (cmd == VFIO_DEVICE_GET_REGION_INFO &&
	    hdr[0] >= sizeof(*info) &&
	    (info->index == RES || info->index == USE)) {
		f->checked++;
		if (ret || info->size != f->bar[info->index])
			fuzz_fail(f, "region info", info->index, 0, hdr[0],
				  ret, errno);
	}
}

static void leave_low_power(int fd)
{
	struct vfio_device_feature feature = {
		.argsz = sizeof(feature),
		.flags = VFIO_DEVICE_FEATURE_SET |
			 VFIO_DEVICE_FEATURE_LOW_POWER_EXIT,
	};

	ioctl(fd, VFIO_DEVICE_FEATURE, &feature);
}

/*
 * @ops random operations on the device open at @fd, whose memory regions
 * have real lengths @len and BAR sizes @bar
 */
static void run_fuzz(struct __test_metadata *_metadata, int fd,
		     const __u64 *len, const __u64 *bar, unsigned long ops)
{
	__u64 seed = env_ulong("NVG_FUZZ_SEED", 0);
	size_t page = page_size(), buf_span = (FUZZ_BUF + page - 1) & ~(page - 1);
	struct fuzz f = { .fd = fd, .len = len, .bar = bar };
	double start = nvg_now(), progress = start;
	unsigned int op;
	__u8 *area;
	/* The guest may have no clock: the boot time in ns varies too */
	if (!seed)
		seed = (__u64)time(NULL) << 32 ^ (__u64)(nvg_now() * 1e9);
	f.rng = seed | 1;
	TH_LOG("seed %llu (NVG_FUZZ_SEED=%llu replays it), %lu operations",
	       (unsigned long long)seed, (unsigned long long)seed, ops);
	/*
	 * The buffer ends where a PROT_NONE page begins.  It sits at
	 * FUZZ_BUF_ADDR, low in the address space, where mmap() would not
	 * put it: the largest count below 2^62 (2^31) then ends below the
	 * end of the user address space, and access_ok() refuses only the
	 * counts from 2^62 up (see fuzz_rw()).  Near the top, a count of
	 * 2^31 failed with EFAULT before the driver saw it.
	 */
	area = mmap((void *)FUZZ_BUF_ADDR, buf_span + page,
		    PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	ASSERT_EQ((void *)FUZZ_BUF_ADDR, area);
	ASSERT_EQ(0, mprotect(area + buf_span, page, PROT_NONE));
	f.buf = area + buf_span - FUZZ_BUF;

	for (f.ops = 0; f.ops < ops && !f.err[0]; f.ops++) {
		/* A line a minute tells a slow run from a stuck one */
		if (!(f.ops % FUZZ_PROGRESS_OPS) &&
		    nvg_now() - progress >= FUZZ_PROGRESS_SECONDS) {
			progress = nvg_now();
			TH_LOG("%lu operations (%lu with a known outcome) in %.0f s",
			       f.ops, f.checked, progress - start);
		}
		op = rnd_below(&f.rng, 1000);
		if (op < 700)
			fuzz_rw(&f);
		else if (op < 850)
			fuzz_config(&f);
		else if (op < 995)
			fuzz_ioctl(&f);
		else
			fuzz_mmap(&f);
		if (f.ops % LOW_POWER_EXIT_OPS == LOW_POWER_EXIT_OPS - 1)
			leave_low_power(fd);
	}
	leave_low_power(fd);
	EXPECT_STREQ("", f.err);
	TH_LOG("%lu operations (%lu with a known outcome) in %.0f s",
	       f.ops, f.checked, nvg_now() - start);

	/* The device still works */
	EXPECT_TRUE(bar_reg_consistent(nvg_cfg_read64(fd, 0x20), bar[USE]));
	EXPECT_EQ(8, pread(fd, f.buf, 8, nvg_region_offset(USE)));
	munmap(area, buf_span + page);
}

TEST_F_TIMEOUT(gpu, fuzz, NVG_FUZZ_TIMEOUT)
{
	run_fuzz(_metadata, self->fd, mem_len, bar_size,
		 env_ulong("NVG_FUZZ_OPS", FUZZ_OPS));
}

/*
 * The GH200 of the real-sized GPUs (00:11.0: 95 GiB of usemem in a
 * 128 GiB BAR, 1 GiB of resmem, at 63 TiB), for a tenth of the operations:
 * every write to a part of it not touched before costs host memory.
 */
#define GH200		"0000:00:11.0"
static const __u64 gh200_len[NR_MEM_INDEX] = {
	[RES] = 1ULL << 30, [USE] = 95ULL << 30,
};

static const __u64 gh200_bar[NR_MEM_INDEX] = {
	[RES] = 1ULL << 30, [USE] = 128ULL << 30,
};

FIXTURE(big) {
	struct nvg_dev dev;
};

FIXTURE_SETUP(big)
{
	ASSERT_EQ(0, nvg_bind(GH200, NVG_DRIVER));
	ASSERT_EQ(0, nvg_open_group(GH200, &self->dev)) {
		TH_LOG("opening %s: %s", GH200, strerror(errno));
	}
}

FIXTURE_TEARDOWN(big)
{
	nvg_close(&self->dev);
}

TEST_F_TIMEOUT(big, fuzz, NVG_FUZZ_TIMEOUT)
{
	run_fuzz(_metadata, self->dev.device_fd, gh200_len, gh200_bar,
		 env_ulong("NVG_FUZZ_OPS", FUZZ_OPS) / 10);
}

TEST_HARNESS_MAIN
