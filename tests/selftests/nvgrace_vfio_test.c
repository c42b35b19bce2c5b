// SPDX-License-Identifier: GPL-2.0-only
/*
 * kselftest for nvgrace-gpu-vfio-pci, run inside the test VM against the
 * stand-in functions that tests/vm/gh200.asl dresses up as Grace Hopper
 * GPUs.  Every behaviour is checked through the real VFIO uAPI, once over
 * the legacy group/container path and once over iommufd and the device cdev.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/pci_regs.h>

#include "kselftest_harness.h"
#include "nvgrace_vfio.h"

#define GPU_HOPPER	"0000:00:05.0"
#define GPU_PLAIN	"0000:00:06.0"
#define GPU_ODD		"0000:00:09.0"
#define GPU_PORT	"0000:01:00.0"
#define GPU_TAIL	"0000:00:10.0"

#if defined(__x86_64__)
#define HAVE_PUD_PFNMAP	1
#else
#define HAVE_PUD_PFNMAP	0
#endif

#define RES	VFIO_PCI_BAR2_REGION_INDEX
#define USE	VFIO_PCI_BAR4_REGION_INDEX
/* Bytes written each side of a boundary */
#define ACROSS	32
#define SZ_1M	0x100000UL
/* A region index past the last region of any device */
#define NO_REGION	(VFIO_PCI_NUM_REGIONS + 1000)
/* The stand-ins' own BAR2, bochs-display's MMIO: under a 64 KiB page */
#define STANDIN_BAR2_SIZE	0x1000	/* 4 KiB whatever the page size */

/* ---- Devices with GPU memory ---- */

#define THP_ENABLED	"/sys/kernel/mm/transparent_hugepage/enabled"

/* The transparent_hugepage/enabled setting in force: "always", ... */
static bool thp_setting(char *buf, size_t len)
{
	char line[128], *start, *end;
	FILE *f = fopen(THP_ENABLED, "r");
	bool ok;

	if (!f)
		return false;
	ok = fgets(line, sizeof(line), f) && (start = strchr(line, '[')) &&
	     (end = strchr(start, ']'));
	fclose(f);
	if (ok)
		snprintf(buf, len, "%.*s", (int)(end - start - 1), start + 1);
	return ok;
}

FIXTURE(gpu) {
	struct nvg_dev dev;
	int fd;
	size_t page;
	char thp[16];	/* transparent_hugepage/enabled, as the test found it */
};

FIXTURE_VARIANT(gpu) {
	const char *bdf;
	bool cdev;
	bool has_reset;
	bool has_hot_reset;
	__u64 base;
	/* Real length and BAR size, by region index */
	__u64 len[VFIO_PCI_BAR5_REGION_INDEX];
	__u64 bar[VFIO_PCI_BAR5_REGION_INDEX];
};

/* 2.5 GiB - 1 MiB at 5 GiB: not a whole number of memory blocks */
FIXTURE_VARIANT_ADD(gpu, hopper_group) {
	.bdf = GPU_HOPPER, .cdev = false, .has_reset = true,
	.base = 0x140000000,
	.len = { [USE] = 0x40000000, [RES] = 0x5ff00000 },
	.bar = { [USE] = 0x80000000, [RES] = 0x80000000 },
};

FIXTURE_VARIANT_ADD(gpu, hopper_cdev) {
	.bdf = GPU_HOPPER, .cdev = true, .has_reset = true,
	.base = 0x140000000,
	.len = { [USE] = 0x40000000, [RES] = 0x5ff00000 },
	.bar = { [USE] = 0x80000000, [RES] = 0x80000000 },
};

/* Exactly 1.5 GiB at 8.5 GiB, the smallest device; no reset method */
FIXTURE_VARIANT_ADD(gpu, odd_group) {
	.bdf = GPU_ODD, .cdev = false, .has_reset = false,
	.base = 0x220000000,
	.len = { [USE] = 0x20000000, [RES] = 0x40000000 },
	.bar = { [USE] = 0x20000000, [RES] = 0x40000000 },
};

FIXTURE_VARIANT_ADD(gpu, odd_cdev) {
	.bdf = GPU_ODD, .cdev = true, .has_reset = false,
	.base = 0x220000000,
	.len = { [USE] = 0x20000000, [RES] = 0x40000000 },
	.bar = { [USE] = 0x20000000, [RES] = 0x40000000 },
};

/* 2 GiB at 11 GiB, whole memory blocks, behind a PCIe root port */
FIXTURE_VARIANT_ADD(gpu, port_group) {
	.bdf = GPU_PORT, .cdev = false, .has_reset = true,
	.has_hot_reset = true,
	.base = 0x2c0000000,
	.len = { [USE] = 0x40000000, [RES] = 0x40000000 },
	.bar = { [USE] = 0x40000000, [RES] = 0x40000000 },
};

FIXTURE_VARIANT_ADD(gpu, port_cdev) {
	.bdf = GPU_PORT, .cdev = true, .has_reset = true,
	.has_hot_reset = true,
	.base = 0x2c0000000,
	.len = { [USE] = 0x40000000, [RES] = 0x40000000 },
	.bar = { [USE] = 0x40000000, [RES] = 0x40000000 },
};

/*
 * 1.5 GiB + 60.5 KiB at 14 GiB: resmem is not a whole number of pages
 * (a 512 B tail with 4 KiB pages, 60.5 KiB with 64 KiB pages)
 */
FIXTURE_VARIANT_ADD(gpu, tail_group) {
	.bdf = GPU_TAIL, .cdev = false, .has_reset = true,
	.base = 0x380000000,
	.len = { [USE] = 0x20000000, [RES] = 0x4000f200 },
	.bar = { [USE] = 0x40000000, [RES] = 0x80000000 },
};

FIXTURE_VARIANT_ADD(gpu, tail_cdev) {
	.bdf = GPU_TAIL, .cdev = true, .has_reset = true,
	.base = 0x380000000,
	.len = { [USE] = 0x20000000, [RES] = 0x4000f200 },
	.bar = { [USE] = 0x40000000, [RES] = 0x80000000 },
};

/* Bind @bdf to the driver and open it over the uAPI path of @cdev */
static int bind_open(const char *bdf, bool cdev, struct nvg_dev *dev)
{
	if (nvg_bind(bdf, NVG_DRIVER))
		return -1;
	return cdev ? nvg_open_cdev(bdf, dev) : nvg_open_group(bdf, dev);
}

FIXTURE_SETUP(gpu)
{
	self->page = sysconf(_SC_PAGESIZE);
	ASSERT_TRUE(thp_setting(self->thp, sizeof(self->thp)));
	ASSERT_EQ(0, bind_open(variant->bdf, variant->cdev, &self->dev)) {
		TH_LOG("binding and opening %s: %s", variant->bdf,
		       strerror(errno));
	}
	self->fd = self->dev.device_fd;
}

FIXTURE_TEARDOWN(gpu)
{
	nvg_close(&self->dev);
	/* A test that failed half-way may have left it not ready */
	nvg_set_ready(variant->bdf, NVG_READY);
	nvg_write_file(THP_ENABLED, self->thp);
}

static __u64 round_down_to(__u64 v, __u64 align)
{
	return v - v % align;
}

static const int mem_regions[] = { RES, USE };

TEST_F(gpu, region_info)
{
	struct vfio_region_info info;
	unsigned int i;

	for (i = 0; i < 2; i++) {
		int index = mem_regions[i];

		ASSERT_EQ(0, nvg_region_info(self->fd, index, &info));
		EXPECT_EQ(variant->bar[index], info.size);
		EXPECT_EQ(nvg_region_offset(index), (off_t)info.offset);
		EXPECT_EQ(VFIO_REGION_INFO_FLAG_READ |
			  VFIO_REGION_INFO_FLAG_WRITE |
			  VFIO_REGION_INFO_FLAG_MMAP |
			  VFIO_REGION_INFO_FLAG_CAPS, info.flags);
	}
	/* The upper halves of the 64-bit BARs */
	for (i = VFIO_PCI_BAR3_REGION_INDEX; i <= VFIO_PCI_BAR5_REGION_INDEX;
	     i += 2) {
		ASSERT_EQ(0, nvg_region_info(self->fd, i, &info));
		EXPECT_EQ(0, info.size);
		EXPECT_EQ(0, info.flags);
	}
	/* BAR0 is real and stays vfio-pci-core's */
	ASSERT_EQ(0, nvg_region_info(self->fd, VFIO_PCI_BAR0_REGION_INDEX,
				     &info));
	EXPECT_NE(0, info.size);
}

TEST_F(gpu, region_info_sparse_mmap_cap)
{
	const struct vfio_region_info_cap_sparse_mmap *sparse;
	unsigned int i;

	for (i = 0; i < 2; i++) {
		int index = mem_regions[i];
		struct vfio_region_info *info;

		info = nvg_region_info_caps(self->fd, index);
		ASSERT_NE(NULL, info);
		EXPECT_EQ(sizeof(*info), info->cap_offset);
		sparse = (const void *)nvg_find_cap(info,
						    VFIO_REGION_INFO_CAP_SPARSE_MMAP);
		ASSERT_NE(NULL, sparse);
		EXPECT_EQ(1, sparse->header.version);
		EXPECT_EQ(0, sparse->header.next);
		ASSERT_EQ(1, sparse->nr_areas);
		EXPECT_EQ(0, sparse->areas[0].offset);
		EXPECT_EQ(round_down_to(variant->len[index], self->page),
			  sparse->areas[0].size);
		free(info);
	}
}

TEST_F(gpu, region_info_short_argsz)
{
	struct vfio_region_info info = {
		.argsz = sizeof(info), .index = USE,
	};

	/* Room for the info but not the capability: told how much is needed */
	ASSERT_EQ(0, ioctl(self->fd, VFIO_DEVICE_GET_REGION_INFO, &info));
	EXPECT_GT(info.argsz, sizeof(info));
	EXPECT_TRUE(info.flags & VFIO_REGION_INFO_FLAG_CAPS);
	EXPECT_EQ(0, info.cap_offset);
	EXPECT_EQ(variant->bar[USE], info.size);

	/* Less than the info itself */
	info.argsz = offsetof(struct vfio_region_info, size);
	info.index = RES;
	EXPECT_EQ(-1, ioctl(self->fd, VFIO_DEVICE_GET_REGION_INFO, &info));
	EXPECT_EQ(EINVAL, errno);

	/* An index past the last region */
	info.argsz = sizeof(info);
	info.index = NO_REGION;
	EXPECT_EQ(-1, ioctl(self->fd, VFIO_DEVICE_GET_REGION_INFO, &info));
	EXPECT_EQ(EINVAL, errno);
}

static int reopen(struct nvg_dev *dev, const char *bdf, bool cdev)
{
	nvg_close(dev);
	return cdev ? nvg_open_cdev(bdf, dev) : nvg_open_group(bdf, dev);
}

TEST_F(gpu, config_bars_reset_on_open)
{
	__u64 addr = 0x4000000000ULL;

	ASSERT_EQ(8, nvg_cfg_write(self->fd, 0x18, &addr, 8));
	ASSERT_EQ(8, nvg_cfg_write(self->fd, 0x20, &addr, 8));
	EXPECT_EQ(addr | NVG_BAR_FLAGS, nvg_cfg_read64(self->fd, 0x20));

	ASSERT_EQ(0, reopen(&self->dev, variant->bdf, variant->cdev));
	self->fd = self->dev.device_fd;
	EXPECT_EQ(NVG_BAR_FLAGS, nvg_cfg_read64(self->fd, 0x18));
	EXPECT_EQ(NVG_BAR_FLAGS, nvg_cfg_read64(self->fd, 0x20));
}

TEST_F(gpu, config_bar_sizing)
{
	__u32 ones = 0xffffffff;
	off_t reg;

	for (reg = 0x18; reg <= 0x20; reg += 8) {
		__u64 bar = reg == 0x18 ? variant->bar[RES] : variant->bar[USE];

		ASSERT_EQ(4, nvg_cfg_write(self->fd, reg, &ones, 4));
		ASSERT_EQ(4, nvg_cfg_write(self->fd, reg + 4, &ones, 4));
		EXPECT_EQ(~(bar - 1) | NVG_BAR_FLAGS,
			  nvg_cfg_read64(self->fd, reg));
	}
}

/* Reads of every width at every offset from 0x10 to 0x28 */
TEST_F(gpu, config_read_widths)
{
	__u64 res = 0x123456789abcdef0ULL, use = 0xfedcba9876543210ULL;
	__u8 ref[0x30], expect[0x30];
	static const size_t widths[] = { 1, 2, 4, 8 };
	unsigned int w, i;
	off_t off;

	ASSERT_EQ(8, nvg_cfg_write(self->fd, 0x18, &res, 8));
	ASSERT_EQ(8, nvg_cfg_write(self->fd, 0x20, &use, 8));

	/* Bytes outside the emulated registers, one at a time, as reference */
	for (i = 0; i < sizeof(ref); i++)
		ASSERT_EQ(1, nvg_cfg_read(self->fd, i, &ref[i], 1));
	memcpy(expect, ref, sizeof(expect));
	res = (res & ~(variant->bar[RES] - 1)) | NVG_BAR_FLAGS;
	use = (use & ~(variant->bar[USE] - 1)) | NVG_BAR_FLAGS;
	memcpy(&expect[0x18], &res, 8);
	memcpy(&expect[0x20], &use, 8);
	EXPECT_EQ(0, memcmp(ref, expect, sizeof(ref)));

	for (w = 0; w < 4; w++) {
		for (off = 0x10; off <= 0x28; off++) {
			__u8 buf[8];

			ASSERT_EQ((ssize_t)widths[w],
				  nvg_cfg_read(self->fd, off, buf, widths[w]));
			EXPECT_EQ(0, memcmp(buf, &expect[off], widths[w])) {
				TH_LOG("width %zu at %#lx", widths[w],
				       (long)off);
			}
		}
	}
}

TEST_F(gpu, config_write_straddle)
{
	__u8 buf[10] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
			 0x99, 0xaa };
	__u32 bar0, bar0_after;

	/* Upper half of BAR2/3 and lower half of BAR4/5 in one access */
	ASSERT_EQ(8, nvg_cfg_write(self->fd, 0x1c, buf, 8));
	EXPECT_EQ((0x4433221100000000ULL & ~(variant->bar[RES] - 1)) |
		  NVG_BAR_FLAGS, nvg_cfg_read64(self->fd, 0x18));
	EXPECT_EQ((0x88776655ULL & ~(variant->bar[USE] - 1)) | NVG_BAR_FLAGS,
		  nvg_cfg_read64(self->fd, 0x20));

	/*
	 * The upper half of BAR0 and BAR1 (vfio-pci-core's) and the lower
	 * half of BAR2 in one access: the full count is reported and each
	 * part reaches its owner.  BAR0 is the stand-in's 16 MiB 32-bit
	 * prefetchable framebuffer: its bits 24-31 keep what is written.
	 * The stand-in has no BAR1, which reads 0 whatever is written.
	 */
	ASSERT_EQ(4, nvg_cfg_read(self->fd, 0x10, &bar0, 4));
	ASSERT_EQ(10, nvg_cfg_write(self->fd, 0x12, buf, 10));
	ASSERT_EQ(4, nvg_cfg_read(self->fd, 0x10, &bar0_after, 4));
	EXPECT_EQ(0x22000008, bar0_after);
	EXPECT_EQ((0x44332211aa998877ULL & ~(variant->bar[RES] - 1)) |
		  NVG_BAR_FLAGS, nvg_cfg_read64(self->fd, 0x18));
	ASSERT_EQ(4, nvg_cfg_write(self->fd, 0x10, &bar0, 4));
}

TEST_F(gpu, config_write_reaches_both_owners)
{
	__u32 ones[4] = { ~0U, ~0U, ~0U, ~0U }, bar0, bar0_sized;

	/*
	 * BAR0 (vfio-pci-core's), BAR1 and all of BAR2/3 in one write:
	 * vfio-pci-core sizes BAR0 (16 MiB 32-bit prefetchable framebuffer
	 * of the stand-in), the emulation sizes BAR2.
	 */
	ASSERT_EQ(4, nvg_cfg_read(self->fd, 0x10, &bar0, 4));
	ASSERT_EQ(16, nvg_cfg_write(self->fd, 0x10, ones, 16));
	ASSERT_EQ(4, nvg_cfg_read(self->fd, 0x10, &bar0_sized, 4));
	EXPECT_EQ(0xff000008, bar0_sized);
	EXPECT_EQ(~(variant->bar[RES] - 1) | NVG_BAR_FLAGS,
		  nvg_cfg_read64(self->fd, 0x18));
	ASSERT_EQ(4, nvg_cfg_write(self->fd, 0x10, &bar0, 4));
}

TEST_F(gpu, config_outside_bars_untouched)
{
	__u16 vendor = 0;
	__u8 *big;

	/* The stand-in functions are QEMU's (vendor 0x1234) */
	ASSERT_EQ(2, nvg_cfg_read(self->fd, 0, &vendor, 2));
	EXPECT_EQ(0x1234, vendor);
	/* Offsets past config space: vfio-pci-core answers -EFAULT */
	EXPECT_EQ(-1, nvg_cfg_read(self->fd, 0x10000, &vendor, 2));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(-1, nvg_cfg_write(self->fd, 0x10000, &vendor, 2));
	EXPECT_EQ(EFAULT, errno);

	/* So does an access that starts at the BARs and runs past the end */
	big = malloc(0x10000);
	ASSERT_NE(NULL, big);
	memset(big, 0xff, 0x10000);
	EXPECT_EQ(-1, nvg_cfg_read(self->fd, 0x18, big, 0x10000));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(-1, nvg_cfg_write(self->fd, 0x18, big, 0x10000));
	EXPECT_EQ(EFAULT, errno);
	/* and nothing of it reached the registers */
	EXPECT_EQ(NVG_BAR_FLAGS, nvg_cfg_read64(self->fd, 0x18));
	free(big);
}

TEST_F(gpu, reset_restores_bars)
{
	__u64 addr = 0x4000000000ULL;
	int ret;

	ASSERT_EQ(8, nvg_cfg_write(self->fd, 0x18, &addr, 8));
	ASSERT_EQ(8, nvg_cfg_write(self->fd, 0x20, &addr, 8));
	ret = ioctl(self->fd, VFIO_DEVICE_RESET);
	if (variant->has_reset) {
		ASSERT_EQ(0, ret);
		EXPECT_EQ(NVG_BAR_FLAGS, nvg_cfg_read64(self->fd, 0x18));
		EXPECT_EQ(NVG_BAR_FLAGS, nvg_cfg_read64(self->fd, 0x20));
	} else {
		/* No reset method: the reset fails and changes nothing */
		ASSERT_EQ(-1, ret);
		EXPECT_EQ(EINVAL, errno);
		EXPECT_EQ(addr | NVG_BAR_FLAGS, nvg_cfg_read64(self->fd, 0x18));
		EXPECT_EQ(addr | NVG_BAR_FLAGS, nvg_cfg_read64(self->fd, 0x20));
	}
}

/* A reset that the administrator starts through sysfs resets the BARs too */
TEST_F(gpu, sysfs_reset_restores_bars)
{
	__u64 addr = 0x4000000000ULL;
	char path[128];
	FILE *f;

	ASSERT_EQ(8, nvg_cfg_write(self->fd, 0x20, &addr, 8));
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/reset",
		 variant->bdf);
	f = fopen(path, "w");
	if (!variant->has_reset) {
		/* No reset method: the PCI core refuses, nothing changes */
		EXPECT_EQ(NULL, f);
		EXPECT_EQ(EACCES, errno);
		EXPECT_EQ(addr | NVG_BAR_FLAGS, nvg_cfg_read64(self->fd, 0x20));
		return;
	}
	ASSERT_NE(NULL, f);
	EXPECT_EQ(1, fwrite("1", 1, 1, f));
	EXPECT_EQ(0, fclose(f));
	EXPECT_EQ(NVG_BAR_FLAGS, nvg_cfg_read64(self->fd, 0x20));
}

/*
 * A hot reset (secondary bus reset) of the slot: the legacy path proves
 * ownership of the affected devices with the group fds, iommufd with the
 * device's own binding (no fds)
 */
static int hot_reset(struct nvg_dev *dev, bool cdev)
{
	struct vfio_pci_hot_reset *reset;
	int ret;

	reset = calloc(1, sizeof(*reset) + sizeof(__s32));
	if (!reset)
		return -1;
	reset->argsz = sizeof(*reset);
	if (!cdev) {
		reset->argsz += sizeof(__s32);
		reset->count = 1;
		reset->group_fds[0] = dev->group_fd;
	}
	ret = ioctl(dev->device_fd, VFIO_DEVICE_PCI_HOT_RESET, reset);
	free(reset);
	return ret;
}

/* A hot reset of the slot, for the function that has one */
TEST_F(gpu, hot_reset_restores_bars)
{
	struct vfio_pci_hot_reset_info info_head = { .argsz = sizeof(info_head) };
	__u64 addr = 0x4000000000ULL;
	int ret;

	ASSERT_EQ(8, nvg_cfg_write(self->fd, 0x18, &addr, 8));
	ret = ioctl(self->fd, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &info_head);
	if (!variant->has_hot_reset) {
		/* On the root bus: no bus to reset */
		EXPECT_EQ(-1, ret);
		EXPECT_EQ(ENODEV, errno);
		EXPECT_EQ(addr | NVG_BAR_FLAGS, nvg_cfg_read64(self->fd, 0x18));
		return;
	}
	/* Only this function is on the bus: the info fits or needs one entry */
	ASSERT_TRUE(ret == 0 || errno == ENOSPC);
	EXPECT_EQ(0, hot_reset(&self->dev, variant->cdev));
	EXPECT_EQ(NVG_BAR_FLAGS, nvg_cfg_read64(self->fd, 0x18));
}

/* Write a readiness register through the device's own BAR0 (region 0) */
static int bar0_write32(int fd, off_t off, __u32 val)
{
	return pwrite(fd, &val, 4, nvg_region_offset(0) + off) == 4 ? 0 : -1;
}

/*
 * pread() the first 8 bytes of usemem while a child process sets the GPU
 * ready NVG_LATE s later (the caller made it say not ready): how long the
 * read took, or -1 when it failed or did not read @marker
 */
static double pread_when_ready(int fd, __u64 marker)
{
	__u64 val = 0;
	int status;
	double t;
	pid_t pid;
	ssize_t n;

	/*
	 * The clock starts before the child that sets the GPU ready: the
	 * pread() then ends at least NVG_LATE s in, however late either runs
	 */
	t = nvg_now();
	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		usleep(NVG_LATE * 1e6);
		_exit(bar0_write32(fd, NVG_READY_LINK, NVG_READY) ? 1 : 0);
	}
	n = pread(fd, &val, 8, nvg_region_offset(USE));
	t = nvg_now() - t;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status))
		return -1;
	return n == 8 && val == marker ? t : -1;
}

/*
 * Check what follows a reset started while the GPU said not ready: when
 * the function was reset (@was_reset), the next pread() waits until the
 * GPU says ready, and logs it once; when it was not, nothing waits,
 * whatever the GPU says.
 */
static void check_wait_after_reset(struct __test_metadata *_metadata,
				   int fd, struct nvg_klog *log, __u64 marker,
				   bool was_reset)
{
	double t = pread_when_ready(fd, marker);

	TH_LOG("pread after the reset: %.3f s", t);
	ASSERT_LE(0, t);
	if (was_reset) {
		EXPECT_LE(NVG_LATE, t);
		EXPECT_GT(NVG_LATE + NVG_POLL_INTERVAL + NVG_READY_SLACK, t);
		EXPECT_EQ(1, nvg_klog_count(log, NVG_MSG_WAITED));
	} else {
		EXPECT_GT(NVG_POLL_INTERVAL, t);
		EXPECT_EQ(0, nvg_klog_count(log, NVG_MSG_WAITED));
	}
}

/*
 * A reset through sysfs reaches the driver's reset_done like any other:
 * the GPU memory then waits until the GPU is ready.  A function without a
 * reset method is not reset, and nothing waits.
 */
TEST_F(gpu, sysfs_reset_waits_for_ready)
{
	__u64 marker = 0x7379736673212121ULL;
	struct nvg_klog log;
	char path[128];
	FILE *f;

	ASSERT_EQ(8, pwrite(self->fd, &marker, 8, nvg_region_offset(USE)));
	ASSERT_EQ(0, nvg_klog_start(&log));
	ASSERT_EQ(0, bar0_write32(self->fd, NVG_READY_LINK, 0));
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/reset",
		 variant->bdf);
	f = fopen(path, "w");
	if (variant->has_reset) {
		ASSERT_NE(NULL, f);
		EXPECT_EQ(1, fwrite("1", 1, 1, f));
		EXPECT_EQ(0, fclose(f));
	} else {
		EXPECT_EQ(NULL, f);
		EXPECT_EQ(EACCES, errno);
	}
	check_wait_after_reset(_metadata, self->fd, &log, marker,
			       variant->has_reset);
	nvg_klog_stop(&log);
}

/* So does a hot reset of the slot; on the root bus there is none */
TEST_F(gpu, hot_reset_waits_for_ready)
{
	__u64 marker = 0x686f747273742121ULL;
	struct nvg_klog log;
	int ret;

	ASSERT_EQ(8, pwrite(self->fd, &marker, 8, nvg_region_offset(USE)));
	ASSERT_EQ(0, nvg_klog_start(&log));
	ASSERT_EQ(0, bar0_write32(self->fd, NVG_READY_LINK, 0));
	ret = hot_reset(&self->dev, variant->cdev);
	if (variant->has_hot_reset) {
		EXPECT_EQ(0, ret);
	} else {
		EXPECT_EQ(-1, ret);
		EXPECT_EQ(ENODEV, errno);
	}
	check_wait_after_reset(_metadata, self->fd, &log, marker,
			       variant->has_hot_reset);
	nvg_klog_stop(&log);
}

static void fill(__u8 *buf, size_t len, unsigned int seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = (__u8)(i * 31 + seed);
}

TEST_F(gpu, rw_roundtrip)
{
	size_t len = (2 << 20) + 100;	/* spans the driver's 1 MiB chunks */
	__u8 *in = malloc(len), *out = malloc(len);
	unsigned int i;

	ASSERT_NE(NULL, in);
	ASSERT_NE(NULL, out);
	for (i = 0; i < 2; i++) {
		off_t base = nvg_region_offset(mem_regions[i]);
		off_t pos = base + self->page - 3;	/* unaligned on purpose */

		fill(in, len, i + 1);
		ASSERT_EQ((ssize_t)len, pwrite(self->fd, in, len, pos));
		memset(out, 0, len);
		ASSERT_EQ((ssize_t)len, pread(self->fd, out, len, pos));
		EXPECT_EQ(0, memcmp(in, out, len));
		/* Count 0 */
		EXPECT_EQ(0, pread(self->fd, out, 0, pos));
		EXPECT_EQ(0, pwrite(self->fd, in, 0, pos));
	}
	free(in);
	free(out);
}

TEST_F(gpu, rw_padding)
{
	__u8 buf[16], data[4] = { 1, 2, 3, 4 }, ones[16];
	unsigned int i, j;

	memset(ones, 0xff, sizeof(ones));
	for (i = 0; i < 2; i++) {
		int index = mem_regions[i];
		off_t base = nvg_region_offset(index);
		__u64 len = variant->len[index];
		__u64 bar = variant->bar[index];

		/*
		 * Across the end of memory: memory, then all-ones up to the
		 * BAR size; with no padding the access is cut at the end.
		 */
		ssize_t count = bar > len ? 16 : 4;

		ASSERT_EQ(4, pwrite(self->fd, data, 4, base + len - 4));
		ASSERT_EQ(count, pread(self->fd, buf, 16, base + len - 4));
		EXPECT_EQ(0, memcmp(buf, data, 4));
		EXPECT_EQ(0, memcmp(buf + 4, ones, count - 4));

		/* A write across it is counted whole; the tail is dropped */
		for (j = 0; j < 16; j++)
			buf[j] = 0x40 + j;
		ASSERT_EQ(count, pwrite(self->fd, buf, 16, base + len - 4));
		ASSERT_EQ(count, pread(self->fd, buf, 16, base + len - 4));
		EXPECT_EQ(0x40, buf[0]);
		EXPECT_EQ(0x43, buf[3]);
		EXPECT_EQ(0, memcmp(buf + 4, ones, count - 4));

		if (bar == len)
			continue;
		/* Inside the padding */
		ASSERT_EQ(16, pwrite(self->fd, buf, 16, base + len + 64));
		ASSERT_EQ(16, pread(self->fd, buf, 16, base + len + 64));
		EXPECT_EQ(0, memcmp(buf, ones, 16));
	}
}

TEST_F(gpu, rw_bar_end)
{
	__u8 buf[16], ones[16];
	unsigned int i;

	memset(ones, 0xff, sizeof(ones));
	for (i = 0; i < 2; i++) {
		int index = mem_regions[i];
		off_t base = nvg_region_offset(index);
		__u64 bar = variant->bar[index];

		/* Cut at the BAR size */
		ASSERT_EQ(4, pread(self->fd, buf, 16, base + bar - 4));
		ASSERT_EQ(4, pwrite(self->fd, buf, 16, base + bar - 4));
		/* At and past the BAR size */
		EXPECT_EQ(-1, pread(self->fd, buf, 16, base + bar));
		EXPECT_EQ(EINVAL, errno);
		EXPECT_EQ(-1, pwrite(self->fd, buf, 16, base + bar));
		EXPECT_EQ(EINVAL, errno);
		EXPECT_EQ(-1, pread(self->fd, buf, 1, base + (1LL << 39)));
		EXPECT_EQ(EINVAL, errno);
		EXPECT_EQ(-1, pread(self->fd, buf, 0, base + bar));
		EXPECT_EQ(EINVAL, errno);
	}
	/* The upper halves take no reads or writes */
	EXPECT_EQ(-1, pread(self->fd, buf, 4,
			    nvg_region_offset(VFIO_PCI_BAR3_REGION_INDEX)));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, pwrite(self->fd, buf, 4,
			     nvg_region_offset(VFIO_PCI_BAR5_REGION_INDEX)));
	EXPECT_EQ(EINVAL, errno);
}

TEST_F(gpu, rw_bad_user_buffer)
{
	void *bad = mmap(NULL, self->page, PROT_NONE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned int i;

	ASSERT_NE(MAP_FAILED, bad);
	for (i = 0; i < 2; i++) {
		off_t base = nvg_region_offset(mem_regions[i]);

		EXPECT_EQ(-1, pread(self->fd, bad, 16, base));
		EXPECT_EQ(EFAULT, errno);
		EXPECT_EQ(-1, pwrite(self->fd, bad, 16, base));
		EXPECT_EQ(EFAULT, errno);
	}
	/* Config space, emulated registers included */
	EXPECT_EQ(-1, nvg_cfg_read(self->fd, 0x18, bad, 8));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(-1, nvg_cfg_write(self->fd, 0x18, bad, 8));
	EXPECT_EQ(EFAULT, errno);
	munmap(bad, self->page);
}

/*
 * A bad page in the middle of the user buffer: the transfer stops at it,
 * and the page before it is transferred whole (the driver faults the user
 * buffer in and goes on up to the first page that cannot be), no byte more.
 */
TEST_F(gpu, rw_short_user_buffer)
{
	size_t page = self->page;
	__u8 *buf = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	__u8 *data = malloc(2 * page), *back = malloc(2 * page);
	unsigned int i;

	ASSERT_NE(MAP_FAILED, buf);
	ASSERT_NE(NULL, data);
	ASSERT_NE(NULL, back);
	ASSERT_EQ(0, mprotect(buf + page, page, PROT_NONE));
	for (i = 0; i < 2; i++) {
		off_t base = nvg_region_offset(mem_regions[i]);

		fill(data, 2 * page, 40 + i);
		ASSERT_EQ((ssize_t)(2 * page),
			  pwrite(self->fd, data, 2 * page, base));

		/* read() into it: the first page only */
		memset(buf, 0, page);
		EXPECT_EQ((ssize_t)page, pread(self->fd, buf, 2 * page, base));
		EXPECT_EQ(0, memcmp(buf, data, page));

		/* write() from it: the first page lands, the next is kept */
		fill(buf, page, 60 + i);
		EXPECT_EQ((ssize_t)page, pwrite(self->fd, buf, 2 * page, base));
		ASSERT_EQ((ssize_t)(2 * page),
			  pread(self->fd, back, 2 * page, base));
		EXPECT_EQ(0, memcmp(back, buf, page));
		EXPECT_EQ(0, memcmp(back + page, data + page, page));
	}
	free(data);
	free(back);
	munmap(buf, 2 * page);
}

static void *map_region(int fd, int index, size_t len, off_t off, int flags)
{
	return mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd,
		    nvg_region_offset(index) + off);
}

/*
 * read() into and write() from mappings of the device itself, not faulted
 * in yet: the driver copies with page faults disabled under memory_lock
 * and faults the user pages in with the lock dropped.
 */
TEST_F(gpu, rw_through_own_mapping)
{
	size_t len = (3 << 20) + 3 * self->page + 11;
	size_t map_len = (len + 2 * self->page) & ~(self->page - 1);
	__u8 *use, *res, *data = malloc(len);

	ASSERT_NE(NULL, data);
	fill(data, len, 77);
	ASSERT_EQ((ssize_t)len, pwrite(self->fd, data, len,
				       nvg_region_offset(USE) + 5));

	/* usemem -> resmem, the source a fresh mapping of usemem */
	use = map_region(self->fd, USE, map_len, 0, MAP_SHARED);
	ASSERT_NE(MAP_FAILED, use);
	ASSERT_EQ((ssize_t)len, pwrite(self->fd, use + 5, len,
				       nvg_region_offset(RES) + 9));
	munmap(use, map_len);

	/* resmem -> usemem, the destination a fresh mapping of usemem */
	use = map_region(self->fd, USE, map_len, self->page, MAP_SHARED);
	ASSERT_NE(MAP_FAILED, use);
	ASSERT_EQ((ssize_t)len, pread(self->fd, use + 1, len,
				      nvg_region_offset(RES) + 9));
	EXPECT_EQ(0, memcmp(use + 1, data, len));
	munmap(use, map_len);

	/* And resmem as it is mapped */
	res = map_region(self->fd, RES, map_len, 0, MAP_SHARED);
	ASSERT_NE(MAP_FAILED, res);
	EXPECT_EQ(0, memcmp(res + 9, data, len));
	munmap(res, map_len);
	free(data);
}

TEST_F(gpu, mmap_bounds)
{
	unsigned int i;
	void *p;

	for (i = 0; i < 2; i++) {
		int index = mem_regions[i];
		size_t mappable = round_down_to(variant->len[index],
						self->page);

		p = map_region(self->fd, index, mappable, 0, MAP_SHARED);
		ASSERT_NE(MAP_FAILED, p);
		EXPECT_EQ(0, munmap(p, mappable));

		/* Last page */
		p = map_region(self->fd, index, self->page,
			       mappable - self->page, MAP_SHARED);
		ASSERT_NE(MAP_FAILED, p);
		EXPECT_EQ(0, munmap(p, self->page));

		/* One page too many, or starting past the end */
		p = map_region(self->fd, index, mappable + self->page, 0,
			       MAP_SHARED);
		EXPECT_EQ(MAP_FAILED, p);
		EXPECT_EQ(EINVAL, errno);
		p = map_region(self->fd, index, self->page, mappable,
			       MAP_SHARED);
		EXPECT_EQ(MAP_FAILED, p);
		EXPECT_EQ(EINVAL, errno);

		/* Private mappings are refused */
		p = map_region(self->fd, index, self->page, 0, MAP_PRIVATE);
		EXPECT_EQ(MAP_FAILED, p);
		EXPECT_EQ(EINVAL, errno);
	}
	/* The upper halves cannot be mapped */
	p = map_region(self->fd, VFIO_PCI_BAR3_REGION_INDEX, self->page, 0,
		       MAP_SHARED);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EINVAL, errno);
	p = map_region(self->fd, VFIO_PCI_BAR5_REGION_INDEX, self->page, 0,
		       MAP_SHARED);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EINVAL, errno);
	/* An offset whose end wraps: refused by mmap() itself */
	p = mmap(NULL, 2 * self->page, PROT_READ, MAP_SHARED, self->fd,
		 (off_t)(~0ULL - self->page + 1));
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EOVERFLOW, errno);
	/* An index past the last region */
	p = mmap(NULL, self->page, PROT_READ, MAP_SHARED, self->fd,
		 nvg_region_offset(NO_REGION));
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EINVAL, errno);
}

TEST_F(gpu, mmap_coherent_with_rw)
{
	unsigned int i;

	for (i = 0; i < 2; i++) {
		int index = mem_regions[i];
		size_t len = 4 * self->page;
		off_t off = round_down_to(variant->len[index], self->page) -
			    len;
		__u8 *p, buf[64], data[64];

		p = map_region(self->fd, index, len, off, MAP_SHARED);
		ASSERT_NE(MAP_FAILED, p);

		fill(data, sizeof(data), 7 + i);
		memcpy(p + self->page + 5, data, sizeof(data));
		ASSERT_EQ(64, pread(self->fd, buf, 64,
				    nvg_region_offset(index) + off +
				    self->page + 5));
		EXPECT_EQ(0, memcmp(buf, data, 64));

		fill(data, sizeof(data), 99 + i);
		ASSERT_EQ(64, pwrite(self->fd, data, 64,
				     nvg_region_offset(index) + off + 3));
		EXPECT_EQ(0, memcmp(p + 3, data, 64));
		EXPECT_EQ(0, munmap(p, len));
	}
}

/*
 * The bytes past the last whole page of a region (its tail, when the GPU
 * memory is not a whole number of pages) are not mapped: mmap() refuses
 * the page that holds them, or the page past the region.  pread() and
 * pwrite() reach every byte up to the length, the tail included, and the
 * bytes past it read all-ones; the last mapped page and the tail meet
 * where they should.
 */
TEST_F(gpu, rw_tail_not_mapped)
{
	unsigned int i;

	for (i = 0; i < 2; i++) {
		int index = mem_regions[i];
		__u64 len = variant->len[index];
		size_t mappable = round_down_to(len, self->page);
		size_t tail = len - mappable, n = ACROSS + tail;
		off_t base = nvg_region_offset(index);
		__u8 *data = malloc(n), *back = malloc(n), *p;
		__u8 ones[ACROSS];

		ASSERT_NE(NULL, data);
		ASSERT_NE(NULL, back);
		TH_LOG("region %d: %zu bytes of tail", index, tail);
		p = map_region(self->fd, index, self->page, mappable,
			       MAP_SHARED);
		EXPECT_EQ(MAP_FAILED, p);
		EXPECT_EQ(EINVAL, errno);

		/* The last ACROSS mapped bytes and the tail, in one write */
		fill(data, n, 70 + i);
		ASSERT_EQ((ssize_t)n, pwrite(self->fd, data, n,
					     base + mappable - ACROSS));
		ASSERT_EQ((ssize_t)n, pread(self->fd, back, n,
					    base + mappable - ACROSS));
		EXPECT_EQ(0, memcmp(data, back, n));
		p = map_region(self->fd, index, self->page,
			       mappable - self->page, MAP_SHARED);
		ASSERT_NE(MAP_FAILED, p);
		EXPECT_EQ(0, memcmp(p + self->page - ACROSS, data, ACROSS));
		munmap(p, self->page);

		/* Past the length, up to the BAR size: all-ones */
		if (variant->bar[index] > len) {
			memset(ones, 0xff, sizeof(ones));
			ASSERT_EQ(ACROSS, pread(self->fd, back, ACROSS,
						base + len));
			EXPECT_EQ(0, memcmp(back, ones, ACROSS));
		}
		free(data);
		free(back);
	}
}

/*
 * Map @len bytes of region @index at a user address aligned to @align (as
 * a hypervisor does for huge mappings), or @align + one page when @skew.
 */
static __u8 *map_aligned(int fd, int index, size_t len, size_t align,
			 bool skew, size_t page)
{
	size_t span = len + 2 * align;
	__u8 *area, *addr;

	area = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		return MAP_FAILED;
	addr = (__u8 *)(((uintptr_t)area + align - 1) & ~(uintptr_t)(align - 1));
	if (skew)
		addr += page;
	return mmap(addr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		    fd, nvg_region_offset(index));
}

/*
 * Page-table geometry of the running kernel: a table is one page of 8-byte
 * entries, so a PMD entry maps page * page / 8 bytes (2 MiB with 4 KiB
 * pages, 512 MiB with 64 KiB pages), and one table of them that times
 * page / 8 (1 GiB, 4 TiB).
 */
static size_t pmd_size(size_t page)
{
	return page * (page / 8);
}

static size_t pmd_table_span(size_t page)
{
	return pmd_size(page) * (page / 8);
}

/* The huge mapping sizes of 6.12 PFN maps: PMD, and PUD on x86_64 only */
static size_t pud_pfnmap_size(size_t page)
{
	return HAVE_PUD_PFNMAP ? pmd_table_span(page) : 0;
}

/* What a user address must be aligned to for the largest of them */
static size_t huge_align(size_t page)
{
	return HAVE_PUD_PFNMAP ? pud_pfnmap_size(page) : pmd_size(page);
}

/* Levels of page tables for the 48-bit user address space of both arches */
static unsigned int page_table_levels(size_t page)
{
	unsigned int shift = __builtin_ctzl(page), bits = shift - 3;

	return (48 - shift + bits - 1) / bits;
}

/* How many blocks of @block bytes [@addr, @addr + @len) overlaps */
static size_t blocks_overlapped(uintptr_t addr, size_t len, size_t block)
{
	return (addr + len - 1) / block - addr / block + 1;
}

/*
 * Faults that touches every @stride bytes take on a mapping, at a user
 * address aligned like @phys, of @len bytes of GPU memory at @phys: one
 * per block that the fault handler maps (PUD where the kernel has PUD PFN
 * maps, else PMD, where the block is aligned and fits whole; a page
 * elsewhere) and that a touch falls in.
 */
static long expected_faults(__u64 phys, size_t len, size_t page,
			    size_t stride)
{
	size_t pud = pud_pfnmap_size(page), pmd = pmd_size(page);
	size_t off = 0, step;
	long faults = 0;

	while (off < len) {
		if (pud && (phys + off) % pud == 0 && off + pud <= len)
			step = pud;
		else if ((phys + off) % pmd == 0 && off + pmd <= len)
			step = pmd;
		else
			step = page;
		/* The first touch at or after off */
		if ((off + stride - 1) / stride * stride < off + step)
			faults++;
		off += step;
	}
	return faults;
}

/*
 * Page-table memory that a mapping of [@addr, @addr + @len) entered with
 * huge entries may add: the tables above it but the top one (PMD, and PUD
 * with 4 levels), which may not exist yet.  PTE tables would add at least
 * one page per PMD block.
 */
static long upper_tables_kib(uintptr_t addr, size_t len, size_t page)
{
	size_t span = pmd_table_span(page), tables = 0;
	unsigned int level;

	for (level = 2; level < page_table_levels(page); level++) {
		tables += blocks_overlapped(addr, len, span);
		span *= page / 8;
	}
	return tables * (page / 1024);
}

/*
 * Read the byte every @stride bytes of @len at @p and count the faults.
 * Reads, not writes: a write to a small PFN-map entry may take a second
 * fault to make it writable (arm64 without hardware dirty-bit management),
 * which says nothing about the entry size.
 */
static long read_faults(const __u8 *p, size_t len, size_t stride)
{
	long faults = nvg_minor_faults();
	size_t off;

	for (off = 0; off < len; off += stride)
		__atomic_load_n(p + off, __ATOMIC_RELAXED);
	return nvg_minor_faults() - faults;
}

/*
 * The slack of a fault count: the loop and getrusage() may fault a page
 * of their own (stack, libc data).  A fall back to the next smaller entry
 * size at least doubles the count of the tests below, which touch twice
 * per PMD block.
 */
#define FAULT_SLACK	2

/*
 * Map @len bytes of usemem, at @phys, at a user address aligned like its
 * physical address: with PMD (and on x86_64 PUD) entries, read twice per
 * PMD block, it takes one fault per PUD or PMD block and adds no page of
 * PTEs.
 */
static void check_mmap_huge(struct __test_metadata *_metadata, int fd,
			    size_t page, __u64 phys, size_t len)
{
	size_t stride = pmd_size(page) / 2, off;
	long faults, pte, want;
	__u8 *p;

	p = map_aligned(fd, USE, len, huge_align(page), false, page);
	ASSERT_NE(MAP_FAILED, p);
	want = expected_faults(phys, len, page, stride);
	pte = nvg_vm_pte_kib();
	faults = read_faults(p, len, stride);
	pte = nvg_vm_pte_kib() - pte;
	TH_LOG("%zu MiB: %ld faults, %ld expected, VmPTE +%ld KiB", len >> 20,
	       faults, want, pte);
	EXPECT_LE(want, faults);
	EXPECT_GE(want + FAULT_SLACK, faults);
	/* PTE tables would add len / PMD size pages */
	EXPECT_LE(0, pte);
	EXPECT_GE(upper_tables_kib((uintptr_t)p, len, page), pte);

	for (off = 0; off < len; off += stride)
		p[off] = (__u8)(off / stride);
	for (off = 0; off < len; off += stride)
		ASSERT_EQ((__u8)(off / stride), p[off]);
	munmap(p, len);
}

TEST_F(gpu, mmap_huge)
{
	check_mmap_huge(_metadata, self->fd, self->page, variant->base,
			variant->len[USE]);
}

/*
 * The transparent_hugepage/enabled setting is a policy for memory the
 * kernel allocates: huge PFN maps do not depend on it (in this 6.12.y,
 * vma_file_bypass_thp_tuneables() exempts PFN maps that have a huge_fault
 * handler), with madvise and with never as with always.
 */
TEST_F(gpu, mmap_huge_whatever_thp_setting)
{
	static const char *const settings[] = { "madvise", "never" };
	unsigned int i;

	/* The fixture's teardown puts the setting back */
	for (i = 0; i < ARRAY_SIZE(settings); i++) {
		char now[16];

		ASSERT_EQ(0, nvg_write_file(THP_ENABLED, settings[i]));
		ASSERT_TRUE(thp_setting(now, sizeof(now)));
		EXPECT_STREQ(settings[i], now);
		TH_LOG("transparent_hugepage/enabled: %s", now);
		check_mmap_huge(_metadata, self->fd, self->page, variant->base,
				variant->len[USE]);
	}
}

/*
 * resmem is not a whole number of huge pages on every device: it gets huge
 * entries where they fit and small ones at the tail, all of them working.
 */
TEST_F(gpu, mmap_huge_then_small_tail)
{
	size_t len = variant->len[RES] & ~(self->page - 1), off;
	__u64 phys = variant->base + variant->len[USE];
	long faults, want;
	__u8 *p;

	/* Every page: the tail's pages fault one by one */
	want = expected_faults(phys, len, self->page, self->page);
	p = map_aligned(self->fd, RES, len, huge_align(self->page), false,
			self->page);
	ASSERT_NE(MAP_FAILED, p);
	faults = read_faults(p, len, self->page);
	TH_LOG("%zu MiB: %ld faults, %ld expected", len >> 20, faults, want);
	EXPECT_LE(want, faults);
	EXPECT_GE(want + FAULT_SLACK, faults);
	for (off = 0; off < len; off += self->page)
		p[off] = (__u8)(off / self->page);
	for (off = 0; off < len; off += self->page)
		ASSERT_EQ((__u8)(off / self->page), p[off]);
	munmap(p, len);
}

/*
 * The boundaries of a region where an access could slip out of the device
 * range: its real length, the page, PMD and 1 GiB (PUD on x86_64)
 * boundaries below it, and its BAR size.  0 stands for one that does not
 * exist.
 */
static void region_boundaries(__u64 len, __u64 bar, size_t page, __u64 *b)
{
	b[0] = len;
	b[1] = round_down_to(len - 1, page);
	b[2] = round_down_to(len - 1, pmd_size(page));
	b[3] = round_down_to(len - 1, 1UL << 30);
	b[4] = bar;
}

#define NR_BOUNDARIES	5

/*
 * Write across every boundary of region @index, through pwrite() and
 * through a mapping at a 1 GiB aligned address (huge entries), and check
 * where the bytes went: below the real length into memory, past it nowhere
 * (all-ones reads back), past the BAR size not even counted.
 */
static void write_across_boundaries(struct __test_metadata *_metadata,
				    int fd, size_t page, int index,
				    __u64 len, __u64 bar)
{
	size_t mappable = round_down_to(len, page), in_mem;
	__u8 mark[2 * ACROSS], buf[2 * ACROSS], ones[2 * ACROSS];
	off_t base = nvg_region_offset(index);
	__u64 b[NR_BOUNDARIES], at;
	unsigned int j;
	ssize_t want;
	__u8 *p;

	region_boundaries(len, bar, page, b);
	memset(ones, 0xff, sizeof(ones));
	fill(mark, sizeof(mark), 40 + index);
	for (j = 0; j < NR_BOUNDARIES; j++) {
		if (b[j] < ACROSS)
			continue;
		at = b[j] - ACROSS;
		want = at + sizeof(mark) > bar ? bar - at : sizeof(mark);
		in_mem = at < len ? len - at : 0;
		if (in_mem > (size_t)want)
			in_mem = want;
		ASSERT_EQ(want, pwrite(fd, mark, sizeof(mark), base + at));
		ASSERT_EQ(want, pread(fd, buf, sizeof(buf), base + at));
		EXPECT_EQ(0, memcmp(buf, mark, in_mem));
		EXPECT_EQ(0, memcmp(buf + in_mem, ones, want - in_mem));
	}

	p = map_aligned(fd, index, mappable, 1UL << 30, false,
			page);
	ASSERT_NE(MAP_FAILED, p);
	fill(mark, sizeof(mark), 80 + index);
	/*
	 * The page, PMD and 1 GiB boundaries, as seen through pread(), but
	 * for the bytes past the mappable part (a tail of less than a page)
	 */
	for (j = 1; j < 4; j++) {
		at = b[j] < ACROSS ? 0 : b[j] - ACROSS;
		if (at + sizeof(mark) > mappable)
			at = mappable - sizeof(mark);
		memcpy(p + at, mark, sizeof(mark));
		ASSERT_EQ(sizeof(buf),
			  pread(fd, buf, sizeof(buf), base + at));
		EXPECT_EQ(0, memcmp(buf, mark, sizeof(mark))) {
			TH_LOG("region %d: write at %#llx through the mapping",
			       index, (unsigned long long)at);
		}
	}
	/* The last byte that can be mapped */
	p[mappable - 1] = 0x5a;
	ASSERT_EQ(1, pread(fd, buf, 1, base + mappable - 1));
	EXPECT_EQ(0x5a, buf[0]);
	EXPECT_EQ(0, munmap(p, mappable));
}

/*
 * No write leaves its region.  usemem ends where resmem begins in the
 * device range, so the part of a usemem write past its real length would
 * land in resmem, when there is one: the test reads back there.  The guard
 * areas that tests/guard fills around the device ranges catch a write
 * escaping a range, when they are checked after the suite.
 */
static void check_no_escape(struct __test_metadata *_metadata, int fd,
			    size_t page, const __u64 *len, const __u64 *bar)
{
	__u64 b[NR_BOUNDARIES], at[NR_BOUNDARIES];
	__u8 before[NR_BOUNDARIES][2 * ACROSS], after[2 * ACROSS];
	off_t res = nvg_region_offset(RES);
	bool landing[NR_BOUNDARIES];
	unsigned int j;

	/* resmem first: its own writes change what is checked below */
	if (len[RES])
		write_across_boundaries(_metadata, fd, page, RES, len[RES],
					bar[RES]);

	/*
	 * Where the bytes of usemem writes past its real length would land,
	 * when that is in resmem (a GH200's usemem BAR has more padding than
	 * its resmem has bytes: past those, the guard area after the device
	 * range and the all-ones reads of write_across_boundaries() watch)
	 */
	region_boundaries(len[USE], bar[USE], page, b);
	for (j = 0; j < NR_BOUNDARIES; j++) {
		landing[j] = false;
		if (!len[RES] || b[j] + ACROSS <= len[USE])
			continue;
		at[j] = (b[j] - ACROSS > len[USE] ? b[j] - ACROSS : len[USE]) -
			len[USE];
		landing[j] = at[j] + sizeof(before[j]) <= len[RES];
		if (!landing[j])
			continue;
		ASSERT_EQ(sizeof(before[j]), pread(fd, before[j],
						   sizeof(before[j]),
						   res + at[j]));
	}
	write_across_boundaries(_metadata, fd, page, USE, len[USE], bar[USE]);
	for (j = 0; j < NR_BOUNDARIES; j++) {
		if (!landing[j])
			continue;
		ASSERT_EQ(sizeof(after), pread(fd, after, sizeof(after),
					       res + at[j]));
		EXPECT_EQ(0, memcmp(before[j], after, sizeof(after))) {
			TH_LOG("resmem at %#llx changed by usemem writes",
			       (unsigned long long)at[j]);
		}
	}
}

TEST_F(gpu, no_escape_at_boundaries)
{
	check_no_escape(_metadata, self->fd, self->page, variant->len,
			variant->bar);
}

/*
 * What a hypervisor does when its guest programs a BAR: map the region's
 * mmap into the IOMMU for peer-to-peer DMA, at DMA_IOVA.  6.12's type1
 * container takes a PFN map, which it resolves one page at a time; 6.12's
 * iommufd pins the pages of the user range, which a PFN map does not have,
 * and IOMMU_IOAS_MAP fails with EFAULT.  All of the region that can be
 * mapped is mmap-ed in one call, and at most @window bytes of it, at either
 * end, are mapped for DMA at a time.
 */
#define DMA_IOVA	0x1000000000ULL	/* 64 GiB, in either IOMMU's aperture */

static void check_dma_map(struct __test_metadata *_metadata,
			  struct nvg_dev *dev, size_t page, int index,
			  __u64 len, __u64 window)
{
	size_t mappable = round_down_to(len, page);
	__u64 w = window < mappable ? window : mappable;
	__u64 at[2] = { 0, mappable - w };
	unsigned int i;
	double t;
	__u8 *p;

	p = map_aligned(dev->device_fd, index, mappable, huge_align(page),
			false, page);
	ASSERT_NE(MAP_FAILED, p);
	for (i = 0; i < (w < mappable ? 2 : 1); i++) {
		t = nvg_now();
		if (dev->iommufd >= 0) {
			EXPECT_EQ(-1, nvg_dma_map(dev, p + at[i], DMA_IOVA, w));
			EXPECT_EQ(EFAULT, errno);
			/* and left nothing mapped */
			EXPECT_EQ(-1, nvg_dma_unmap(dev, DMA_IOVA, w));
			EXPECT_EQ(ENOENT, errno);
			continue;
		}
		ASSERT_EQ(0, nvg_dma_map(dev, p + at[i], DMA_IOVA, w)) {
			TH_LOG("region %d: MAP_DMA: %s", index, strerror(errno));
		}
		t = nvg_now() - t;
		EXPECT_EQ((long long)w, nvg_dma_unmap(dev, DMA_IOVA, w));
		EXPECT_EQ(0, nvg_dma_unmap(dev, DMA_IOVA, w));
		TH_LOG("region %d: %llu MiB at +%#llx mapped for DMA in %.2f s",
		       index, (unsigned long long)w >> 20,
		       (unsigned long long)at[i], t);
	}
	EXPECT_EQ(0, munmap(p, mappable));
}

/*
 * 128 MiB at either end of each region: under TCG and the debug kernel,
 * type1 takes about 5 s per GiB on x86_64 (a page at a time)
 */
#define DMA_WINDOW	0x8000000ULL

TEST_F(gpu, dma_map_for_peer_to_peer)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(mem_regions); i++)
		check_dma_map(_metadata, &self->dev, self->page,
			      mem_regions[i], variant->len[mem_regions[i]],
			      DMA_WINDOW);
}

/*
 * A user address not aligned for huge pages gets small pages, not an
 * error: one PTE table per PMD block that the mapping overlaps, each of
 * them new (the mapping lies in an area reserved for it).
 */
TEST_F(gpu, mmap_unaligned_address)
{
	size_t pmd = pmd_size(self->page), len, off;
	long pte, want;
	__u8 *p;

	len = 4 * pmd < variant->len[USE] ? 4 * pmd :
	      round_down_to(variant->len[USE], pmd);
	p = map_aligned(self->fd, USE, len, pmd, true, self->page);
	ASSERT_NE(MAP_FAILED, p);
	pte = nvg_vm_pte_kib();
	for (off = 0; off < len; off += self->page)
		p[off] = (__u8)(off / self->page);
	for (off = 0; off < len; off += self->page)
		ASSERT_EQ((__u8)(off / self->page), p[off]);
	pte = nvg_vm_pte_kib() - pte;
	want = blocks_overlapped((uintptr_t)p, len, pmd) * (self->page / 1024);
	TH_LOG("%zu MiB one page off: VmPTE +%ld KiB, %ld KiB of PTE tables",
	       len >> 20, pte, want);
	EXPECT_LE(want, pte);
	EXPECT_GE(want + upper_tables_kib((uintptr_t)p, len, self->page), pte);
	munmap(p, len);
}

/*
 * The page-table entry of a user address, as the nvgrace_pte_probe test
 * module reads it: "pfn=0x... type=... uncached=0|1"; false when it cannot
 * be read.
 */
static bool probe_pte(void *addr, unsigned long *pfn, char *type, size_t len,
		      int *uncached)
{
	char buf[96], fmt[48];
	bool ok = false;
	int fd;

	fd = open("/sys/kernel/debug/nvgrace_pte_probe", O_RDWR);
	if (fd < 0)
		return false;
	snprintf(buf, sizeof(buf), "%p", addr);
	if (write(fd, buf, strlen(buf)) == (ssize_t)strlen(buf)) {
		ssize_t n = read(fd, buf, sizeof(buf) - 1);

		if (n > 0) {
			buf[n] = '\0';
			snprintf(fmt, sizeof(fmt),
				 "pfn=%%lx type=%%%zus uncached=%%d", len - 1);
			ok = sscanf(buf, fmt, pfn, type, uncached) == 3;
		}
	}
	close(fd);
	return ok;
}

/*
 * The memory type and the PFN of each mapping, from its page-table entry,
 * and VM_ALLOW_ANY_UNCACHED, which lets KVM/arm64 map resmem Normal-NC in
 * a guest, on resmem only
 */
TEST_F(gpu, mmap_page_type)
{
#if defined(__x86_64__)
	static const char *const cached = "WB", *const uncached = "WC";
#else
	static const char *const cached = "Normal", *const uncached = "Normal-NC";
#endif
	unsigned int i;

	for (i = 0; i < 2; i++) {
		int index = mem_regions[i];
		__u64 phys = variant->base + (index == RES ? variant->len[USE] : 0);
		size_t len = 4 * self->page;
		unsigned long pfn;
		int any_uncached;
		char type[16];
		__u8 *p;

		p = map_region(self->fd, index, len, 0, MAP_SHARED);
		ASSERT_NE(MAP_FAILED, p);
		p[2 * self->page] = 1;
		ASSERT_TRUE(probe_pte(p + 2 * self->page, &pfn, type,
				      sizeof(type), &any_uncached));
		EXPECT_EQ((phys + 2 * self->page) / self->page, pfn);
		EXPECT_STREQ(index == RES ? uncached : cached, type);
		EXPECT_EQ(index == RES, any_uncached);
		munmap(p, len);
	}
}

#if defined(__x86_64__)
TEST_F(gpu, mmap_memory_type)
{
	const char *type;
	__u8 *use, *res;

	use = map_region(self->fd, USE, self->page, 0, MAP_SHARED);
	ASSERT_NE(MAP_FAILED, use);
	res = map_region(self->fd, RES, self->page, 0, MAP_SHARED);
	ASSERT_NE(MAP_FAILED, res);
	/* Fault both in: they take the memory type reserved at open */
	use[0] = 1;
	res[0] = 2;

	type = nvg_pat_type(variant->base);
	ASSERT_NE(NULL, type);
	EXPECT_STREQ("write-back", type);
	type = nvg_pat_type(variant->base + variant->len[USE]);
	ASSERT_NE(NULL, type);
	EXPECT_STREQ("write-combining", type);
	munmap(use, self->page);
	munmap(res, self->page);
}

/*
 * The PAT records of the GPU memory live from the open of the device to
 * its close, whatever is done in between, and not after (another user of
 * the range could not get its own memory type otherwise).
 */
TEST_F(gpu, pat_record_released_at_close)
{
	__u64 res = variant->base + variant->len[USE];
	const char *type;
	__u8 buf[8];

	type = nvg_pat_type(variant->base);
	ASSERT_NE(NULL, type);
	EXPECT_STREQ("write-back", type);
	type = nvg_pat_type(res);
	ASSERT_NE(NULL, type);
	EXPECT_STREQ("write-combining", type);
	ASSERT_EQ(8, pread(self->fd, buf, 8, nvg_region_offset(USE)));
	ASSERT_EQ(8, pread(self->fd, buf, 8, nvg_region_offset(RES)));
	EXPECT_STREQ("write-back", nvg_pat_type(variant->base));
	EXPECT_STREQ("write-combining", nvg_pat_type(res));

	nvg_close(&self->dev);
	EXPECT_EQ(NULL, nvg_pat_type(variant->base));
	EXPECT_EQ(NULL, nvg_pat_type(res));
	ASSERT_EQ(0, reopen(&self->dev, variant->bdf, variant->cdev));
	self->fd = self->dev.device_fd;
	EXPECT_STREQ("write-back", nvg_pat_type(variant->base));
}
#endif

/* The driver's kernel mappings for read() and write(): their size, how many */
#define KMAP_SIZE	0x4000000ULL	/* 64 MiB */
#define KMAP_SLOTS	4

/* What /proc/vmallocinfo showed at each step of a test, for its log */
struct kmaps_log {
	__u64 start, end;	/* the GPU memory */
	char text[256];
	size_t len;
};

/* The kernel mappings of the GPU memory, noted in @log after @step */
static int kmaps(struct kmaps_log *log, const char *step)
{
	int n = nvg_kernel_maps(log->start, log->end);

	if (log->len < sizeof(log->text) - 32)
		log->len += snprintf(log->text + log->len,
				     sizeof(log->text) - log->len, " %s %d,",
				     step, n);
	return n;
}

/*
 * The kernel maps GPU memory for read() and write() only, in a few blocks:
 * one per block read or written, never more than KMAP_SLOTS, none for a
 * fault of a user mapping, and none left after a reset (VFIO_DEVICE_RESET,
 * one through sysfs, a hot reset), so that the CPU cannot prefetch from
 * memory being reset; after a reset a read maps its block only once the
 * GPU is ready.  On x86 a mapping of each whole
 * region also lives from open to close, for its PAT memory type only.
 */
TEST_F(gpu, kernel_maps_bounded_and_dropped_at_reset)
{
	__u64 end = variant->base + variant->len[USE] + variant->len[RES];
#if defined(__x86_64__)
	int pat = variant->len[RES] ? 2 : 1;
#else
	int pat = 0;
#endif
	__u64 block, blocks = variant->len[USE] / KMAP_SIZE;
	__u64 marker = 0x6b6d61707321212eULL;
	int regions = 0;
	char path[128];
	unsigned int i;
	__u8 buf[64];
	struct kmaps_log seen = { .start = variant->base, .end = end };

	EXPECT_EQ(pat, kmaps(&seen, "open"));
	for (i = 0; i < 2; i++) {
		int index = mem_regions[i];
		off_t at = nvg_region_offset(index) + self->page;
		__u8 *p;

		if (!variant->len[index])
			continue;
		p = map_region(self->fd, index, self->page, 0, MAP_SHARED);
		ASSERT_NE(MAP_FAILED, p);
		p[0] = 1;
		EXPECT_EQ(0, munmap(p, self->page));
		EXPECT_EQ(pat + regions, kmaps(&seen, "user faults"));

		ASSERT_EQ((ssize_t)sizeof(buf),
			  pread(self->fd, buf, sizeof(buf), at));
		ASSERT_EQ((ssize_t)sizeof(buf),
			  pwrite(self->fd, buf, sizeof(buf), at));
		regions++;
		EXPECT_EQ(pat + regions, kmaps(&seen, "read/write"));
	}

	/* One read in each block of usemem: the oldest mappings go */
	ASSERT_LT(KMAP_SLOTS, blocks);
	for (block = 0; block < blocks; block++)
		ASSERT_EQ((ssize_t)sizeof(buf),
			  pread(self->fd, buf, sizeof(buf),
				nvg_region_offset(USE) + block * KMAP_SIZE));
	EXPECT_EQ(pat + KMAP_SLOTS, kmaps(&seen, "reads of every block"));

	if (!variant->has_reset)
		goto out;
	ASSERT_EQ(0, ioctl(self->fd, VFIO_DEVICE_RESET));
	EXPECT_EQ(pat, kmaps(&seen, "VFIO_DEVICE_RESET"));
	ASSERT_EQ((ssize_t)sizeof(buf),
		  pread(self->fd, buf, sizeof(buf), nvg_region_offset(USE)));
	EXPECT_EQ(pat + 1, kmaps(&seen, "read"));

	/*
	 * A reset through sysfs, with the GPU not ready after it: a pread()
	 * then waits, and maps nothing until the GPU is ready
	 */
	ASSERT_EQ(8, pwrite(self->fd, &marker, 8, nvg_region_offset(USE)));
	ASSERT_EQ(0, bar0_write32(self->fd, NVG_READY_LINK, 0));
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/reset",
		 variant->bdf);
	ASSERT_EQ(0, nvg_write_file(path, "1"));
	EXPECT_EQ(pat, kmaps(&seen, "sysfs reset"));
	EXPECT_LE(NVG_LATE, pread_when_ready(self->fd, marker));
	EXPECT_EQ(pat + 1, kmaps(&seen, "read when ready"));
	if (!variant->has_hot_reset)
		goto out;
	ASSERT_EQ(0, hot_reset(&self->dev, variant->cdev));
	EXPECT_EQ(pat, kmaps(&seen, "hot reset"));
out:
	TH_LOG("kernel mappings of the GPU memory, from /proc/vmallocinfo:%s",
	       seen.text);
}

TEST_F(gpu, ioeventfd_refused_on_memory_bars)
{
	struct vfio_device_ioeventfd ioev = {
		.argsz = sizeof(ioev),
		.flags = VFIO_DEVICE_IOEVENTFD_32,
		.data = 1,
	};
	unsigned int index;
	int efd = eventfd(0, 0);

	ASSERT_GE(efd, 0);
	ioev.fd = efd;
	for (index = VFIO_PCI_BAR2_REGION_INDEX;
	     index <= VFIO_PCI_BAR5_REGION_INDEX; index++) {
		ioev.offset = nvg_region_offset(index);
		EXPECT_EQ(-1, ioctl(self->fd, VFIO_DEVICE_IOEVENTFD, &ioev));
		EXPECT_EQ(ENOTTY, errno);
	}
	/* BAR0 is real MMIO: vfio-pci-core's ioeventfd works there */
	ioev.offset = nvg_region_offset(VFIO_PCI_BAR0_REGION_INDEX);
	EXPECT_EQ(0, ioctl(self->fd, VFIO_DEVICE_IOEVENTFD, &ioev));
	ioev.fd = -1;
	EXPECT_EQ(0, ioctl(self->fd, VFIO_DEVICE_IOEVENTFD, &ioev));
	/* Short argsz */
	ioev.argsz = 8;
	EXPECT_EQ(-1, ioctl(self->fd, VFIO_DEVICE_IOEVENTFD, &ioev));
	EXPECT_EQ(EINVAL, errno);
	close(efd);
}

/* The hardware serves the GPU memory whatever PCI_COMMAND_MEMORY says */
TEST_F(gpu, memory_decode_ignored)
{
	__u16 cmd, off;
	__u8 *p, buf[4];

	p = map_region(self->fd, USE, self->page, 0, MAP_SHARED);
	ASSERT_NE(MAP_FAILED, p);
	p[0] = 0x11;

	ASSERT_EQ(2, nvg_cfg_read(self->fd, PCI_COMMAND, &cmd, 2));
	off = cmd & ~PCI_COMMAND_MEMORY;
	ASSERT_EQ(2, nvg_cfg_write(self->fd, PCI_COMMAND, &off, 2));

	/* vfio-pci-core zapped the mapping; it faults back in */
	EXPECT_EQ(0x11, p[0]);
	p[1] = 0x22;
	EXPECT_EQ(4, pread(self->fd, buf, 4, nvg_region_offset(USE)));
	EXPECT_EQ(0x22, buf[1]);
	EXPECT_EQ(4, pwrite(self->fd, buf, 4, nvg_region_offset(RES)));
	/* The write reached resmem: it reads back */
	memset(buf, 0, sizeof(buf));
	EXPECT_EQ(4, pread(self->fd, buf, 4, nvg_region_offset(RES)));
	EXPECT_EQ(0x11, buf[0]);
	EXPECT_EQ(0x22, buf[1]);

	ASSERT_EQ(2, nvg_cfg_write(self->fd, PCI_COMMAND, &cmd, 2));
	munmap(p, self->page);
}

static int low_power(int fd, bool enter)
{
	struct vfio_device_feature feature = {
		.argsz = sizeof(feature),
		.flags = VFIO_DEVICE_FEATURE_SET |
			 (enter ? VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY :
				  VFIO_DEVICE_FEATURE_LOW_POWER_EXIT),
	};

	return ioctl(fd, VFIO_DEVICE_FEATURE, &feature);
}

/* Touch @p in a child: 0 if it worked, the signal that stopped it if not */
static int touch_in_child(__u8 *p)
{
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		__atomic_store_n(p, 0x5a, __ATOMIC_RELAXED);
		_exit(__atomic_load_n(p, __ATOMIC_RELAXED) == 0x5a ? 0 : 1);
	}
	if (waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status);
}

/*
 * In a low-power state that user space asked for, read() and write() of
 * the emulated BARs wake the device, as vfio-pci-core's do for every
 * region, and faults get SIGBUS, as vfio-pci-core's do
 */
TEST_F(gpu, low_power_wakes_rw_faults_sigbus)
{
	__u64 marker = 0x6c6f77706f776572ULL, val = 0, pad = 0;
	__u8 *p;

	p = map_region(self->fd, USE, self->page, 0, MAP_SHARED);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(0, touch_in_child(p));

	ASSERT_EQ(0, low_power(self->fd, true));
	EXPECT_EQ(SIGBUS, touch_in_child(p));
	EXPECT_EQ(8, pwrite(self->fd, &marker, 8, nvg_region_offset(RES)));
	EXPECT_EQ(8, pread(self->fd, &val, 8, nvg_region_offset(RES)));
	EXPECT_EQ(marker, val);
	EXPECT_EQ(8, pread(self->fd, &val, 8, nvg_region_offset(USE)));
	EXPECT_EQ(0x5a, val & 0xff);
	/* The padding answers too, as a real BAR would once woken */
	if (variant->len[RES] < variant->bar[RES]) {
		EXPECT_EQ(8, pread(self->fd, &pad, 8, nvg_region_offset(RES) +
				   variant->bar[RES] - 8));
		EXPECT_EQ(~0ULL, pad);
	}
	/* The device is still in the low-power state: faults still fail */
	EXPECT_EQ(SIGBUS, touch_in_child(p));

	ASSERT_EQ(0, low_power(self->fd, false));
	EXPECT_EQ(0, touch_in_child(p));
	EXPECT_EQ(8, pread(self->fd, &val, 8, nvg_region_offset(USE)));
	EXPECT_EQ(0x5a, val & 0xff);
	munmap(p, self->page);
}

/*
 * A GPU that is gone answers all-ones: after a reset an access fails at
 * once, pread() with ENODEV and a fault with SIGBUS, instead of polling to
 * the 30 s bound; once the registers answer again, the next access works
 * without a new reset.
 */
TEST_F(gpu, reset_gone_fails_fast)
{
	__u64 marker = 0x676f6e6521212121ULL, val = 0;
	struct nvg_klog log;
	__u8 *p;
	double t, fault;

	ASSERT_EQ(8, pwrite(self->fd, &marker, 8, nvg_region_offset(USE)));
	p = map_region(self->fd, USE, self->page, 0, MAP_SHARED);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(0, bar0_write32(self->fd, NVG_READY_LINK, ~0U));
	ASSERT_EQ(0, bar0_write32(self->fd, NVG_READY_HBM, ~0U));
	ASSERT_EQ(0, nvg_klog_start(&log));
	if (!variant->has_reset) {
		EXPECT_EQ(-1, ioctl(self->fd, VFIO_DEVICE_RESET));
		EXPECT_EQ(EINVAL, errno);
		/* Not reset: what the registers say does not matter */
		EXPECT_EQ(8, pread(self->fd, &val, 8, nvg_region_offset(USE)));
		EXPECT_EQ(marker, val);
		goto out;
	}
	ASSERT_EQ(0, ioctl(self->fd, VFIO_DEVICE_RESET));
	t = nvg_now();
	EXPECT_EQ(-1, pread(self->fd, &val, 8, nvg_region_offset(USE)));
	t = nvg_now() - t;
	EXPECT_EQ(ENODEV, errno);
	EXPECT_EQ(SIGBUS, nvg_touch(p, 0x5a, &fault));
	TH_LOG("pread failed after %.3f s, the fault after %.3f s", t, fault);
	EXPECT_GT(NVG_POLL_INTERVAL, t);
	EXPECT_GT(NVG_POLL_INTERVAL, fault);
	EXPECT_LE(1, nvg_klog_count(&log, NVG_MSG_GONE));

	ASSERT_EQ(0, nvg_set_ready(variant->bdf, NVG_READY));
	EXPECT_EQ(8, pread(self->fd, &val, 8, nvg_region_offset(USE)));
	EXPECT_EQ(marker, val);
	EXPECT_EQ(0, touch_in_child(p));
out:
	nvg_klog_stop(&log);
	munmap(p, self->page);
}

/*
 * How a readiness source is made to say ready or not, for the test of the
 * waits below: BAR0's C2C link register, or the CXL DVSEC's Memory_Active
 */
struct ready_ctl {
	int (*set)(int fd, bool ready);
	const char *what;
};

static int bar0_set_ready(int fd, bool ready)
{
	return bar0_write32(fd, NVG_READY_LINK, ready ? NVG_READY : 0);
}

static const struct ready_ctl bar0_ready_ctl = { bar0_set_ready, "BAR0" };

/* An operation run in a thread, timed */
struct timed_op {
	pthread_t thread;
	struct nvg_dev *dev;
	bool cdev;
	bool hot_reset;
	__u64 *map;
	off_t off;
	__u64 val;
	int ret;
	int err;
	double took;
	bool done;
};

static void timed_op_end(struct timed_op *op, double start, int ret)
{
	op->err = ret ? errno : 0;
	op->ret = ret;
	op->took = nvg_now() - start;
	__atomic_store_n(&op->done, true, __ATOMIC_RELEASE);
}

static bool timed_op_done(struct timed_op *op)
{
	return __atomic_load_n(&op->done, __ATOMIC_ACQUIRE);
}

/*
 * Thread A: fault a fresh usemem mapping in with mmap_lock held, as KVM
 * and type1 do: VFIO_IOMMU_MAP_DMA of it (the group path; iommufd does
 * not map PFN maps on 6.12), else a load from a child process
 */
static void *fault_locked(void *arg)
{
	struct timed_op *op = arg;
	double start = nvg_now();
	int ret, status;
	pid_t pid;

	if (!op->cdev) {
		ret = nvg_dma_map(op->dev, op->map, DMA_IOVA,
				  sysconf(_SC_PAGESIZE));
		if (!ret)
			op->val = __atomic_load_n(op->map, __ATOMIC_RELAXED);
		timed_op_end(op, start, ret);
		return NULL;
	}
	pid = fork();
	if (!pid)
		_exit(__atomic_load_n(op->map, __ATOMIC_RELAXED) == op->val ?
		      0 : 1);
	ret = waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	      !WEXITSTATUS(status) ? 0 : -1;
	timed_op_end(op, start, ret);
	return NULL;
}

/* Thread B: pread() usemem */
static void *pread_usemem(void *arg)
{
	struct timed_op *op = arg;
	double start = nvg_now();

	timed_op_end(op, start, pread(op->dev->device_fd, &op->val, 8,
				      nvg_region_offset(USE) + op->off) == 8 ?
				0 : -1);
	return NULL;
}

/* Thread C: mmap() and munmap() another region (BAR0), for mmap_lock */
static void *mmap_other(void *arg)
{
	struct timed_op *op = arg;
	size_t page = sysconf(_SC_PAGESIZE);
	double start = nvg_now();
	void *p;

	p = mmap(NULL, page, PROT_READ, MAP_SHARED, op->dev->device_fd,
		 nvg_region_offset(VFIO_PCI_BAR0_REGION_INDEX));
	timed_op_end(op, start, p == MAP_FAILED ? -1 : munmap(p, page));
	return NULL;
}

/* Thread D: read /proc/self/maps, as ps and libvirt do */
static void *read_maps(void *arg)
{
	struct timed_op *op = arg;
	double start = nvg_now();
	char buf[4096];
	ssize_t n;
	int fd;

	fd = open("/proc/self/maps", O_RDONLY);
	if (fd < 0) {
		timed_op_end(op, start, -1);
		return NULL;
	}
	do {
		n = read(fd, buf, sizeof(buf));
	} while (n > 0);
	close(fd);
	timed_op_end(op, start, n < 0 ? -1 : 0);
	return NULL;
}

/*
 * Thread E: write the COMMAND register (vfio-pci-core takes memory_lock
 * for writing), then VFIO_DEVICE_RESET; or a hot reset of the slot, where
 * the function has one (vfio-pci-core only tries memory_lock: EBUSY)
 */
static void *reset_ops(void *arg)
{
	struct timed_op *op = arg;
	double start = nvg_now();
	int fd = op->dev->device_fd, ret = -1;
	__u16 cmd;

	if (op->hot_reset) {
		timed_op_end(op, start, hot_reset(op->dev, op->cdev));
		return NULL;
	}
	if (nvg_cfg_read(fd, PCI_COMMAND, &cmd, 2) == 2 &&
	    nvg_cfg_write(fd, PCI_COMMAND, &cmd, 2) == 2)
		ret = ioctl(fd, VFIO_DEVICE_RESET);
	timed_op_end(op, start, ret);
	return NULL;
}

/* How long C, D, E and the hot reset may take, and then are waited for */
#define OP_BOUND	1.0
#define OP_GIVE_UP	5.0

/*
 * After a reset, while the GPU is not ready, a fault through a path that
 * holds mmap_lock (A) and a pread() (B) wait; meanwhile mmap() and
 * munmap() (C), reading /proc/self/maps (D), a config write and a reset
 * (E) and a hot reset each complete in under OP_BOUND: the waits hold
 * neither mmap_lock nor memory_lock.  Then the GPU becomes ready, and A and
 * B complete with the data written before.
 */
static void check_waits_hold_no_lock(struct __test_metadata *_metadata,
				     const char *bdf, struct nvg_dev *dev,
				     bool cdev, bool has_hot_reset,
				     const struct ready_ctl *ctl)
{
	__u64 marker = 0x6e6f6c6f636b2121ULL;
	struct timed_op a = { .dev = dev, .cdev = cdev, .val = marker };
	struct timed_op b = { .dev = dev, .off = 2 * SZ_1M };
	/* The hot reset from a second device fd, over the group path */
	struct nvg_dev second = *dev;
	struct timed_op ops[4] = {
		{ .dev = dev }, { .dev = dev }, { .dev = dev },
		{ .dev = &second, .cdev = cdev, .hot_reset = true },
	};
	void *(*fns[4])(void *) = { mmap_other, read_maps, reset_ops,
				    reset_ops };
	const char *names[4] = { "mmap+munmap", "/proc/self/maps",
				 "COMMAND write + VFIO_DEVICE_RESET",
				 "hot reset" };
	long long page = sysconf(_SC_PAGESIZE);
	int fd = dev->device_fd, i;
	double start, ready_at;
	size_t len = 2 * SZ_1M;

	if (!cdev) {
		second.device_fd = ioctl(dev->group_fd,
					 VFIO_GROUP_GET_DEVICE_FD, bdf);
		ASSERT_LE(0, second.device_fd);
	}
	ASSERT_EQ(8, pwrite(fd, &marker, 8, nvg_region_offset(USE) + len));
	a.map = map_region(fd, USE, len, len, MAP_SHARED);
	ASSERT_NE(MAP_FAILED, a.map);
	ASSERT_EQ(0, ctl->set(fd, false));
	ASSERT_EQ(0, ioctl(fd, VFIO_DEVICE_RESET));
	start = nvg_now();
	ASSERT_EQ(0, pthread_create(&a.thread, NULL, fault_locked, &a));
	ASSERT_EQ(0, pthread_create(&b.thread, NULL, pread_usemem, &b));
	usleep(300000);

	for (i = 0; i < 3; i++)
		ASSERT_EQ(0, pthread_create(&ops[i].thread, NULL, fns[i],
					    &ops[i]));
	/* The hot reset after E's reset: both take memory_lock for writing */
	while (!timed_op_done(&ops[2]) && nvg_now() - start < OP_GIVE_UP)
		usleep(10000);
	ASSERT_EQ(0, pthread_create(&ops[3].thread, NULL, fns[3], &ops[3]));
	for (i = 0; i < 4; i++)
		while (!timed_op_done(&ops[i]) &&
		       nvg_now() - start < OP_GIVE_UP)
			usleep(10000);
	EXPECT_FALSE(timed_op_done(&a));
	EXPECT_FALSE(timed_op_done(&b));

	ready_at = nvg_now() - start;
	ASSERT_EQ(0, ctl->set(fd, true));
	pthread_join(a.thread, NULL);
	pthread_join(b.thread, NULL);
	for (i = 0; i < 4; i++) {
		pthread_join(ops[i].thread, NULL);
		TH_LOG("%s: %s, %.3f s", names[i],
		       ops[i].ret ? strerror(ops[i].err) : "done", ops[i].took);
		EXPECT_GT(OP_BOUND, ops[i].took);
		/* No hot reset on the root bus */
		EXPECT_EQ(i < 3 || has_hot_reset ? 0 : ENODEV,
			  ops[i].ret ? ops[i].err : 0);
	}
	TH_LOG("%s ready after %.3f s; A %s in %.3f s, B in %.3f s",
	       ctl->what, ready_at, cdev ? "(load)" : "(MAP_DMA)", a.took,
	       b.took);
	EXPECT_EQ(0, a.ret) {
		TH_LOG("A: %s", strerror(a.err));
	}
	EXPECT_EQ(0, b.ret);
	EXPECT_EQ(marker, a.val);
	EXPECT_EQ(marker, b.val);
	/* They were started 0.3 s before the operations: they waited */
	EXPECT_LE(ready_at - 0.3, a.took);
	EXPECT_LE(ready_at - 0.3, b.took);
	if (!cdev && !a.ret)
		EXPECT_EQ(page, nvg_dma_unmap(dev, DMA_IOVA, page));
	if (!cdev)
		close(second.device_fd);
	munmap(a.map, len);
}

TEST_F(gpu, waits_hold_no_lock)
{
	if (!variant->has_reset) {
		EXPECT_EQ(-1, ioctl(self->fd, VFIO_DEVICE_RESET));
		EXPECT_EQ(EINVAL, errno);
		return;
	}
	check_waits_hold_no_lock(_metadata, variant->bdf, &self->dev,
				 variant->cdev, variant->has_hot_reset,
				 &bar0_ready_ctl);
}

#define AER_FILE	"/sys/kernel/debug/nvgrace_aer"

/* Whether child @pid exited with status 0 */
static bool child_ok(pid_t pid)
{
	int status;

	return waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	       !WEXITSTATUS(status);
}

/* Take @bdf through an AER recovery with @ms in it, from a child */
static pid_t aer_recover_start(const char *bdf, unsigned int ms)
{
	char cmd[64];
	pid_t pid;

	snprintf(cmd, sizeof(cmd), "%s %u", bdf, ms);
	pid = fork();
	if (!pid)
		_exit(nvg_write_file(AER_FILE, cmd) ? 1 : 0);
	return pid;
}

/*
 * An AER recovery of a frozen link (tests/aer takes the function through
 * its steps, 1 s from error_detected to the reset and resume): the kernel
 * mappings of read() and write() go at error_detected, a pread() started
 * during the recovery waits through it and then for the GPU, and maps its
 * block only once the GPU is ready.  On the root bus there is no link.
 */
TEST_F(gpu, aer_recovery_drops_kernel_maps_and_waits)
{
	__u64 end = variant->base + variant->len[USE] + variant->len[RES];
	__u64 marker = 0x6165727265636f76ULL;
	struct timed_op rd = { .dev = &self->dev };
	double start, recovered;
	int pat = 0;
	pid_t pid;

#if defined(__x86_64__)
	pat = variant->len[RES] ? 2 : 1;
#endif
	system("insmod /lib/nvgrace_aer.ko 2>/dev/null");
	ASSERT_EQ(8, pwrite(self->fd, &marker, 8, nvg_region_offset(USE)));
	EXPECT_EQ(pat + 1, nvg_kernel_maps(variant->base, end));
	ASSERT_EQ(0, bar0_write32(self->fd, NVG_READY_LINK, 0));
	pid = aer_recover_start(variant->bdf, 1000);
	ASSERT_LT(0, pid);
	if (!variant->has_hot_reset) {
		EXPECT_FALSE(child_ok(pid));
		EXPECT_EQ(pat + 1, nvg_kernel_maps(variant->base, end));
		return;
	}
	start = nvg_now();
	usleep(300000);
	EXPECT_EQ(pat, nvg_kernel_maps(variant->base, end));
	ASSERT_EQ(0, pthread_create(&rd.thread, NULL, pread_usemem, &rd));
	EXPECT_TRUE(child_ok(pid));
	recovered = nvg_now() - start;
	usleep(300000);
	EXPECT_FALSE(timed_op_done(&rd));
	EXPECT_EQ(pat, nvg_kernel_maps(variant->base, end));
	ASSERT_EQ(0, bar0_write32(self->fd, NVG_READY_LINK, NVG_READY));
	pthread_join(rd.thread, NULL);
	TH_LOG("recovery took %.3f s; the pread in it %.3f s", recovered,
	       rd.took);
	EXPECT_EQ(0, rd.ret);
	EXPECT_EQ(marker, rd.val);
	/* It started 0.3 s into the recovery, and waited to its end */
	EXPECT_LE(recovered - 0.3, rd.took);
	EXPECT_EQ(pat + 1, nvg_kernel_maps(variant->base, end));
}

struct offset_flipper {
	pthread_t thread;
	__u64 *offset;
	__u64 a, b;
	bool stop;
};

static void *flip_offset(void *arg)
{
	struct offset_flipper *f = arg;

	while (!__atomic_load_n(&f->stop, __ATOMIC_RELAXED)) {
		__atomic_store_n(f->offset, f->a, __ATOMIC_RELAXED);
		__atomic_store_n(f->offset, f->b, __ATOMIC_RELAXED);
	}
	return NULL;
}

#define RACE_ROUNDS	5000

/*
 * How many claims named @name /proc/iomem lists at physical address
 * @start (a BAR claimed by a driver shows below the BAR's own line)
 */
static int iomem_claims(__u64 start, const char *name)
{
	unsigned long long first, last;
	char line[256], owner[128];
	int n = 0;
	FILE *f;

	f = fopen("/proc/iomem", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, " %llx-%llx : %127[^\n]", &first, &last,
			   owner) == 3 && first == start && !strcmp(owner, name))
			n++;
	fclose(f);
	return n;
}

/*
 * A thread flips the offset of an ioeventfd request between BAR0, where
 * ioeventfds work, and the GPU's own BAR2 that resmem hides, while another
 * loops on the ioctl.  The two offsets differ in the region index only,
 * so that a copy torn between them is one of the two.  Whatever
 * vfio-pci-core reads, it never maps the hidden BAR for an ioeventfd (it
 * would claim it as "vfio" first): the driver holds the claim, each
 * ioeventfd set up is found at BAR0, and each refusal is the driver's
 * (ENOTTY) or vfio-pci-core's, which cannot claim the BAR (EBUSY).
 */
TEST_F(gpu, ioeventfd_race_never_reaches_hidden_bar)
{
	struct vfio_device_ioeventfd ioev = {
		.argsz = sizeof(ioev),
		.flags = VFIO_DEVICE_IOEVENTFD_32,
	};
	struct vfio_device_ioeventfd del = ioev;
	struct offset_flipper f = {
		.offset = (__u64 *)&ioev.offset,
		.a = nvg_region_offset(VFIO_PCI_BAR0_REGION_INDEX) + 0x500,
		.b = nvg_region_offset(RES) + 0x500,
	};
	unsigned int i, set = 0, ours = 0, core = 0, elsewhere = 0, other = 0;
	int efd = eventfd(0, 0), err = 0;
	__u64 bar2;

	ASSERT_EQ(0, nvg_bar_start(variant->bdf, 2, &bar2));
	EXPECT_EQ(1, iomem_claims(bar2, NVG_DRIVER " (hidden)"));
	ASSERT_LE(0, efd);
	ioev.fd = efd;
	del.fd = -1;
	del.offset = f.a;
	ASSERT_EQ(0, pthread_create(&f.thread, NULL, flip_offset, &f));
	for (i = 0; i < RACE_ROUNDS; i++) {
		ioev.data = i;
		if (!ioctl(self->fd, VFIO_DEVICE_IOEVENTFD, &ioev)) {
			set++;
			del.data = i;
			if (ioctl(self->fd, VFIO_DEVICE_IOEVENTFD, &del)) {
				elsewhere++;
				err = errno;
			}
		} else if (errno == ENOTTY) {
			ours++;
		} else if (errno == EBUSY) {
			core++;
		} else {
			other++;
			err = errno;
		}
	}
	__atomic_store_n(&f.stop, true, __ATOMIC_RELAXED);
	pthread_join(f.thread, NULL);
	TH_LOG("%u rounds: %u set at BAR0, %u refused by the driver, %u by vfio-pci-core",
	       RACE_ROUNDS, set, ours, core);
	/* It raced: the ioctl met both offsets, sets and refusals mixed */
	EXPECT_LT(0, set);
	EXPECT_LT(0, ours + core);
	EXPECT_EQ(0, iomem_claims(bar2, "vfio"));
	EXPECT_EQ(0, other) {
		TH_LOG("%u other errors, the last %s", other, strerror(err));
	}
	/* Found neither at BAR0 nor, since it is refused, removable at BAR2 */
	if (elsewhere)
		TH_LOG("%u set but not found at BAR0 (%s)", elsewhere,
		       strerror(err));
	close(efd);
}

/*
 * A real BAR smaller than a page (the stand-in's BAR2) can be mapped only
 * when it starts on a page boundary: vfio-pci-core then reserves the rest
 * of the page.  REGION_INFO says which, and mmap() of one page does as it
 * says; a mapping reads the BAR's MMIO (offset 0x500 of bochs-display is
 * its VBE DISPI ID register, 0xb0c0..0xb0c5).
 */
static void check_small_bar_mmap(struct __test_metadata *_metadata, int fd,
				 const char *bdf, unsigned int index)
{
	size_t page = sysconf(_SC_PAGESIZE);
	struct vfio_region_info info;
	bool page_aligned;
	__u64 start;
	__u16 *p;

	ASSERT_EQ(0, nvg_bar_start(bdf, index, &start));
	page_aligned = start % page == 0;
	TH_LOG("BAR%u at %#llx: %s", index, (unsigned long long)start,
	       page_aligned ? "page aligned" : "not page aligned");
	ASSERT_EQ(0, nvg_region_info(fd, index, &info));
	EXPECT_EQ(page_aligned, !!(info.flags & VFIO_REGION_INFO_FLAG_MMAP));
	p = mmap(NULL, page, PROT_READ, MAP_SHARED, fd, nvg_region_offset(index));
	if (!page_aligned) {
		EXPECT_EQ(MAP_FAILED, p);
		EXPECT_EQ(EINVAL, errno);
		return;
	}
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(0xb0c0, __atomic_load_n(&p[0x500 / 2], __ATOMIC_RELAXED) &
			  0xfff0);
	munmap(p, page);
}

/* ---- The function without GPU memory: plain vfio-pci ---- */

FIXTURE(plain) {
	struct nvg_dev dev;
	int fd;
};

FIXTURE_VARIANT(plain) {
	bool cdev;
};

FIXTURE_VARIANT_ADD(plain, group) { .cdev = false };
FIXTURE_VARIANT_ADD(plain, cdev) { .cdev = true };

FIXTURE_SETUP(plain)
{
	int ret;

	ASSERT_EQ(0, nvg_bind(GPU_PLAIN, NVG_DRIVER));
	ret = variant->cdev ? nvg_open_cdev(GPU_PLAIN, &self->dev) :
			      nvg_open_group(GPU_PLAIN, &self->dev);
	ASSERT_EQ(0, ret) {
		TH_LOG("opening %s: %s", GPU_PLAIN, strerror(errno));
	}
	self->fd = self->dev.device_fd;
}

FIXTURE_TEARDOWN(plain)
{
	nvg_close(&self->dev);
}

/* The stand-in (bochs-display) has a small MMIO BAR2 and no BAR4 */
TEST_F(plain, real_bars)
{
	struct vfio_region_info info;
	__u32 vbar, real;
	FILE *f;

	ASSERT_EQ(0, nvg_region_info(self->fd, RES, &info));
	EXPECT_EQ(STANDIN_BAR2_SIZE, info.size);
	EXPECT_FALSE(info.flags & VFIO_REGION_INFO_FLAG_CAPS);
	ASSERT_EQ(0, nvg_region_info(self->fd, USE, &info));
	EXPECT_EQ(0, info.size);

	/* Config space BAR2 is the real register, as vfio-pci shows it */
	f = fopen("/sys/bus/pci/devices/" GPU_PLAIN "/config", "r");
	ASSERT_NE(NULL, f);
	ASSERT_EQ(0, fseek(f, 0x18, SEEK_SET));
	ASSERT_EQ(1, fread(&real, 4, 1, f));
	fclose(f);
	ASSERT_EQ(4, nvg_cfg_read(self->fd, 0x18, &vbar, 4));
	EXPECT_EQ(real, vbar);
	EXPECT_NE(NVG_BAR_FLAGS, vbar);

	check_small_bar_mmap(_metadata, self->fd, GPU_PLAIN, RES);
}

TEST_F(plain, ioeventfd_allowed)
{
	struct vfio_device_ioeventfd ioev = {
		.argsz = sizeof(ioev),
		.flags = VFIO_DEVICE_IOEVENTFD_32,
		.offset = nvg_region_offset(RES),
		.data = 1,
	};
	int efd = eventfd(0, 0);

	ASSERT_GE(efd, 0);
	ioev.fd = efd;
	EXPECT_EQ(0, ioctl(self->fd, VFIO_DEVICE_IOEVENTFD, &ioev));
	ioev.fd = -1;
	EXPECT_EQ(0, ioctl(self->fd, VFIO_DEVICE_IOEVENTFD, &ioev));
	close(efd);
}

/* ---- A GPU with the NVIDIA DVSEC (tests/dvsec): Blackwell or not ---- */

/* Unbind @bdf and load tests/dvsec for it with the module @params */
static int dvsec_load(const char *bdf, const char *params)
{
	char cmd[160];

	if (nvg_unbind(bdf))
		return -1;
	/* Left loaded when an earlier setup failed: no teardown ran then */
	system("rmmod nvgrace_dvsec 2>/dev/null");
	snprintf(cmd, sizeof(cmd), "insmod /lib/nvgrace_dvsec.ko bdf=%s %s",
		 bdf, params);
	return system(cmd) ? -1 : 0;
}

/*
 * Load tests/dvsec for @bdf with the DVSEC's capability register @caps
 * (and FLR when @flr), bind @bdf and open it; the driver reads the DVSEC
 * at probe
 */
static int dvsec_open(const char *bdf, unsigned int caps, bool flr,
		      bool cdev, struct nvg_dev *dev)
{
	char params[64];

	snprintf(params, sizeof(params), "caps=%#x flr=%d", caps, flr);
	if (dvsec_load(bdf, params))
		return -1;
	return bind_open(bdf, cdev, dev);
}

/* Leave the function unbound and without the DVSEC, as it was */
static void dvsec_close(struct __test_metadata *_metadata, const char *bdf,
			struct nvg_dev *dev)
{
	nvg_close(dev);
	EXPECT_EQ(0, nvg_unbind(bdf));
	EXPECT_EQ(0, system("rmmod nvgrace_dvsec"));
}

FIXTURE(dvsec) {
	struct nvg_dev dev;
	int fd;
};

FIXTURE_VARIANT(dvsec) {
	const char *bdf;
	bool cdev;
	unsigned int caps;	/* the DVSEC's capability register */
	bool resmem;		/* the driver must carve out resmem */
	__u64 use_len;		/* usemem length and BAR size */
	__u64 use_bar;
};

/* Bit 0 set, MIG works with cached memory: all 2 GiB are usemem */
FIXTURE_VARIANT_ADD(dvsec, mig_cached_group) {
	.bdf = GPU_PORT, .cdev = false, .caps = 0x0001, .resmem = false,
	.use_len = 0x80000000, .use_bar = 0x80000000,
};

FIXTURE_VARIANT_ADD(dvsec, mig_cached_cdev) {
	.bdf = GPU_PORT, .cdev = true, .caps = 0x0001, .resmem = false,
	.use_len = 0x80000000, .use_bar = 0x80000000,
};

/*
 * All of 2.5 GiB - 1 MiB is usemem, to the byte: a BAR of 4 GiB, whose
 * last 1.5 GiB + 1 MiB are padding
 */
FIXTURE_VARIANT_ADD(dvsec, mig_cached_odd_group) {
	.bdf = GPU_HOPPER, .cdev = false, .caps = 0x0001, .resmem = false,
	.use_len = 0x9ff00000, .use_bar = 0x100000000,
};

FIXTURE_VARIANT_ADD(dvsec, mig_cached_odd_cdev) {
	.bdf = GPU_HOPPER, .cdev = true, .caps = 0x0001, .resmem = false,
	.use_len = 0x9ff00000, .use_bar = 0x100000000,
};

/* Every bit but bit 0: the defect is there, 1 GiB of it is resmem */
FIXTURE_VARIANT_ADD(dvsec, mig_defect) {
	.bdf = GPU_PORT, .cdev = false, .caps = 0xfffe, .resmem = true,
	.use_len = 0x40000000, .use_bar = 0x40000000,
};

FIXTURE_SETUP(dvsec)
{
	ASSERT_EQ(0, dvsec_open(variant->bdf, variant->caps, false,
				variant->cdev, &self->dev)) {
		TH_LOG("opening %s: %s", variant->bdf, strerror(errno));
	}
	self->fd = self->dev.device_fd;
}

FIXTURE_TEARDOWN(dvsec)
{
	dvsec_close(_metadata, variant->bdf, &self->dev);
}

TEST_F(dvsec, region_layout)
{
	struct vfio_region_info info;
	__u64 off, size;

	ASSERT_EQ(0, nvg_region_info(self->fd, USE, &info));
	EXPECT_EQ(variant->use_bar, info.size);
	ASSERT_TRUE(nvg_sparse_area(self->fd, USE, &off, &size));
	EXPECT_EQ(0, off);
	EXPECT_EQ(variant->use_len, size);

	ASSERT_EQ(0, nvg_region_info(self->fd, RES, &info));
	if (variant->resmem) {
		EXPECT_EQ(0x40000000, info.size);
		EXPECT_TRUE(info.flags & VFIO_REGION_INFO_FLAG_CAPS);
	} else {
		/* The stand-in's own BAR2 */
		EXPECT_EQ(STANDIN_BAR2_SIZE, info.size);
		EXPECT_FALSE(info.flags & VFIO_REGION_INFO_FLAG_CAPS);
	}
}

TEST_F(dvsec, config_bars)
{
	__u64 ones = ~0ULL;
	__u32 real, vbar;
	char path[64];
	FILE *f;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/config",
		 variant->bdf);
	f = fopen(path, "r");
	ASSERT_NE(NULL, f);
	ASSERT_EQ(0, fseek(f, PCI_BASE_ADDRESS_2, SEEK_SET));
	ASSERT_EQ(1, fread(&real, 4, 1, f));
	fclose(f);

	/* BAR2: emulated resmem, or the real register as vfio-pci shows it */
	ASSERT_EQ(4, nvg_cfg_read(self->fd, PCI_BASE_ADDRESS_2, &vbar, 4));
	EXPECT_EQ(variant->resmem ? NVG_BAR_FLAGS : real, vbar);

	/* BAR4 is emulated either way, and sizes as usemem */
	ASSERT_EQ(8, nvg_cfg_write(self->fd, PCI_BASE_ADDRESS_4, &ones, 8));
	EXPECT_EQ(~(variant->use_bar - 1) | NVG_BAR_FLAGS,
		  nvg_cfg_read64(self->fd, PCI_BASE_ADDRESS_4));
}

/*
 * Region 2 without resmem is the stand-in's MMIO, through vfio-pci-core:
 * read(), mmap() and ioeventfd work on it.  Offset 0x500 of the
 * bochs-display MMIO BAR is its VBE DISPI ID register (0xb0c0..0xb0c5).
 * With resmem, region 2 is GPU memory and refuses an ioeventfd.
 */
TEST_F(dvsec, bar2)
{
	struct vfio_device_ioeventfd ioev = {
		.argsz = sizeof(ioev),
		.flags = VFIO_DEVICE_IOEVENTFD_16,
		.offset = nvg_region_offset(RES) + 0x500,
		.data = 1,
	};
	__u16 id = 0, wrote = 0x1234;
	int efd;

	if (variant->resmem) {
		ASSERT_EQ(2, pwrite(self->fd, &wrote, 2, ioev.offset));
		EXPECT_EQ(2, pread(self->fd, &id, 2, ioev.offset));
		EXPECT_EQ(wrote, id);
	} else {
		EXPECT_EQ(2, pread(self->fd, &id, 2, ioev.offset));
		EXPECT_EQ(0xb0c0, id & 0xfff0);
		check_small_bar_mmap(_metadata, self->fd, variant->bdf, RES);
	}

	efd = eventfd(0, 0);
	ASSERT_LE(0, efd);
	ioev.fd = efd;
	if (variant->resmem) {
		EXPECT_EQ(-1, ioctl(self->fd, VFIO_DEVICE_IOEVENTFD, &ioev));
		EXPECT_EQ(ENOTTY, errno);
	} else {
		EXPECT_EQ(0, ioctl(self->fd, VFIO_DEVICE_IOEVENTFD, &ioev));
		ioev.fd = -1;
		EXPECT_EQ(0, ioctl(self->fd, VFIO_DEVICE_IOEVENTFD, &ioev));
	}
	close(efd);
}

/* usemem (regions 4 and 5) has no MMIO behind it, on either layout */
TEST_F(dvsec, ioeventfd_refused_on_usemem)
{
	struct vfio_device_ioeventfd ioev = {
		.argsz = sizeof(ioev),
		.flags = VFIO_DEVICE_IOEVENTFD_32,
		.data = 1,
	};
	unsigned int index;
	int efd = eventfd(0, 0);

	ASSERT_LE(0, efd);
	ioev.fd = efd;
	for (index = USE; index <= VFIO_PCI_BAR5_REGION_INDEX; index++) {
		ioev.offset = nvg_region_offset(index);
		EXPECT_EQ(-1, ioctl(self->fd, VFIO_DEVICE_IOEVENTFD, &ioev));
		EXPECT_EQ(ENOTTY, errno);
	}
	close(efd);
}

/*
 * usemem reaches the last byte of its length, by read() and by mmap();
 * past it, up to the BAR end, reads are all-ones and writes dropped
 */
TEST_F(dvsec, usemem_to_the_end)
{
	__u64 marker = 0x626c61636b77656cULL, val = 0;
	off_t last = nvg_region_offset(USE) + variant->use_len - 8;
	__u64 *p;

	ASSERT_EQ(8, pwrite(self->fd, &marker, 8, last));
	EXPECT_EQ(8, pread(self->fd, &val, 8, last));
	EXPECT_EQ(marker, val);
	p = mmap(NULL, variant->use_len, PROT_READ, MAP_SHARED, self->fd,
		 nvg_region_offset(USE));
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(marker, p[variant->use_len / 8 - 1]);
	munmap(p, variant->use_len);

	if (variant->use_bar > variant->use_len) {
		EXPECT_EQ(8, pwrite(self->fd, &marker, 8, last + 8));
		EXPECT_EQ(8, pread(self->fd, &val, 8, last + 8));
		EXPECT_EQ(~0ULL, val);
		EXPECT_EQ(8, pread(self->fd, &val, 8, nvg_region_offset(USE) +
				   variant->use_bar - 8));
		EXPECT_EQ(~0ULL, val);
	}
	/* The BAR ends at its size: nothing past it */
	EXPECT_EQ(-1, pread(self->fd, &val, 8,
			    nvg_region_offset(USE) + variant->use_bar));
	EXPECT_EQ(EINVAL, errno);
}

/* ---- Real-sized GPUs, high in the physical address space ---- */

#define GPU_GH200	"0000:00:11.0"
#define GPU_GB200	"0000:00:12.0"
#define GPU_GB200_FAR	"0000:00:13.0"
#define GPU_GB300	"0000:00:14.0"
#define SZ_1G		0x40000000ULL
#define SZ_1T		0x10000000000ULL

/*
 * Where their memory sits (tests/vm/gh200.asl, in sparse DIMMs): below
 * 2^46 on x86_64, whose 4-level page tables reach no higher, and from 2^46
 * up on arm64.  On a 4 KiB kernel their PFNs do not fit in 32 bits.
 */
#ifdef __aarch64__
#define BIG_BASE	(64 * SZ_1T)
#else
#define BIG_BASE	(56 * SZ_1T)
#endif
#define GB200_LEN	(186 * SZ_1G + 0x200000)	/* 2 MiB: a length, not a page */
#define DVSEC_MIG_CACHED	0x0001

FIXTURE(big) {
	struct nvg_dev dev;
	int fd;
	size_t page;
};

FIXTURE_VARIANT(big) {
	const char *bdf;
	bool cdev;
	bool blackwell;		/* given the DVSEC by tests/dvsec */
	__u64 base;
	/* Real length and BAR size, by region index; 0: not GPU memory */
	__u64 len[VFIO_PCI_BAR5_REGION_INDEX];
	__u64 bar[VFIO_PCI_BAR5_REGION_INDEX];
};

/* GH200: Hopper layout, 96 GiB: 95 GiB of usemem in 128 GiB, 1 GiB resmem */
FIXTURE_VARIANT_ADD(big, gh200_group) {
	.bdf = GPU_GH200, .cdev = false, .base = BIG_BASE + 7 * SZ_1T,
	.len = { [USE] = 95 * SZ_1G, [RES] = SZ_1G },
	.bar = { [USE] = 128 * SZ_1G, [RES] = SZ_1G },
};

FIXTURE_VARIANT_ADD(big, gh200_cdev) {
	.bdf = GPU_GH200, .cdev = true, .base = BIG_BASE + 7 * SZ_1T,
	.len = { [USE] = 95 * SZ_1G, [RES] = SZ_1G },
	.bar = { [USE] = 128 * SZ_1G, [RES] = SZ_1G },
};

/* GB200: Blackwell layout, all of 186 GiB + 2 MiB is usemem, in 256 GiB */
FIXTURE_VARIANT_ADD(big, gb200_group) {
	.bdf = GPU_GB200, .cdev = false, .blackwell = true, .base = BIG_BASE,
	.len = { [USE] = GB200_LEN }, .bar = { [USE] = 256 * SZ_1G },
};

/* The second GPU of that GB200, 2 TiB higher */
FIXTURE_VARIANT_ADD(big, gb200_far_cdev) {
	.bdf = GPU_GB200_FAR, .cdev = true, .blackwell = true,
	.base = BIG_BASE + 2 * SZ_1T,
	.len = { [USE] = GB200_LEN }, .bar = { [USE] = 256 * SZ_1G },
};

/* GB300: Blackwell layout, 288 GiB in a BAR of 512 GiB */
FIXTURE_VARIANT_ADD(big, gb300_group) {
	.bdf = GPU_GB300, .cdev = false, .blackwell = true,
	.base = BIG_BASE + 4 * SZ_1T,
	.len = { [USE] = 288 * SZ_1G }, .bar = { [USE] = 512 * SZ_1G },
};

FIXTURE_VARIANT_ADD(big, gb300_cdev) {
	.bdf = GPU_GB300, .cdev = true, .blackwell = true,
	.base = BIG_BASE + 4 * SZ_1T,
	.len = { [USE] = 288 * SZ_1G }, .bar = { [USE] = 512 * SZ_1G },
};

FIXTURE_SETUP(big)
{
	int ret;

	self->page = sysconf(_SC_PAGESIZE);
	if (variant->blackwell)
		ret = dvsec_open(variant->bdf, DVSEC_MIG_CACHED, false,
				 variant->cdev, &self->dev);
	else
		ret = bind_open(variant->bdf, variant->cdev, &self->dev);
	ASSERT_EQ(0, ret) {
		TH_LOG("opening %s: %s", variant->bdf, strerror(errno));
	}
	self->fd = self->dev.device_fd;
}

FIXTURE_TEARDOWN(big)
{
	if (variant->blackwell)
		dvsec_close(_metadata, variant->bdf, &self->dev);
	else
		nvg_close(&self->dev);
}

TEST_F(big, region_layout)
{
	struct vfio_region_info info;
	__u64 off, size;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(mem_regions); i++) {
		int index = mem_regions[i];

		ASSERT_EQ(0, nvg_region_info(self->fd, index, &info));
		if (!variant->len[index]) {
			/* Blackwell's BAR2 is the stand-in's own */
			EXPECT_EQ(STANDIN_BAR2_SIZE, info.size);
			EXPECT_FALSE(info.flags & VFIO_REGION_INFO_FLAG_CAPS);
			continue;
		}
		EXPECT_EQ(variant->bar[index], info.size);
		EXPECT_EQ(VFIO_REGION_INFO_FLAG_READ |
			  VFIO_REGION_INFO_FLAG_WRITE |
			  VFIO_REGION_INFO_FLAG_MMAP |
			  VFIO_REGION_INFO_FLAG_CAPS, info.flags);
		ASSERT_TRUE(nvg_sparse_area(self->fd, index, &off, &size));
		EXPECT_EQ(0, off);
		EXPECT_EQ(round_down_to(variant->len[index], self->page), size);
	}
}

/* Sizing and programming the emulated BARs, all 64 bits of them */
TEST_F(big, config_bar_sizing)
{
	__u64 ones = ~0ULL, addr;
	off_t reg;

	for (reg = 0x18; reg <= 0x20; reg += 8) {
		__u64 bar = variant->bar[reg == 0x18 ? RES : USE];

		if (!bar)
			continue;
		ASSERT_EQ(8, nvg_cfg_write(self->fd, reg, &ones, 8));
		EXPECT_EQ(~(bar - 1) | NVG_BAR_FLAGS,
			  nvg_cfg_read64(self->fd, reg));
		/* An address above 4 GiB, aligned to the BAR, as a guest's */
		addr = 4 * bar;
		ASSERT_EQ(8, nvg_cfg_write(self->fd, reg, &addr, 8));
		EXPECT_EQ(addr | NVG_BAR_FLAGS, nvg_cfg_read64(self->fd, reg));
	}
}

/* The physical address of region @index of a GPU (resmem follows usemem) */
static __u64 region_phys(__u64 base, const __u64 *len, int index)
{
	return index == RES ? base + len[USE] : base;
}

/*
 * The largest huge entry of the running kernel (a PUD of 1 GiB on x86_64,
 * a PMD of 512 MiB on arm64 with 64 KiB pages), read twice each: one fault
 * for two reads says that the entry is that large, where one size smaller
 * would take one fault per read.
 */
static size_t big_stride(size_t page)
{
	return huge_align(page) / 2;
}

/*
 * Map all that can be mapped of region @index in one call, at an address
 * aligned for the largest huge entry; read it at @stride and check the
 * fault count and the page-table memory (no PTE table)
 */
static __u8 *map_whole_checked(struct __test_metadata *_metadata, int fd,
			       size_t page, __u64 phys, __u64 len, int index)
{
	size_t mappable = round_down_to(len, page);
	long faults, pte, want;
	__u8 *p;

	p = map_aligned(fd, index, mappable, huge_align(page), false, page);
	if (p == MAP_FAILED)
		return p;
	want = expected_faults(phys, mappable, page, big_stride(page));
	pte = nvg_vm_pte_kib();
	faults = read_faults(p, mappable, big_stride(page));
	pte = nvg_vm_pte_kib() - pte;
	TH_LOG("region %d, %llu MiB at %#llx: %ld faults, %ld expected, VmPTE +%ld KiB",
	       index, (unsigned long long)mappable >> 20,
	       (unsigned long long)phys, faults, want, pte);
	EXPECT_LE(want, faults);
	EXPECT_GE(want + FAULT_SLACK, faults);
	EXPECT_LE(0, pte);
	EXPECT_GE(upper_tables_kib((uintptr_t)p, mappable, page), pte);
	return p;
}

TEST_F(big, mmap_whole_region_huge)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(mem_regions); i++) {
		int index = mem_regions[i];
		__u64 len = variant->len[index];
		__u8 *p;

		if (!len)
			continue;
		p = map_whole_checked(_metadata, self->fd, self->page,
				      region_phys(variant->base, variant->len,
						  index), len, index);
		ASSERT_NE(MAP_FAILED, p);
		EXPECT_EQ(0, munmap(p, round_down_to(len, self->page)));
	}
}

/*
 * The first bytes of each region, written one way and read the other: by
 * pwrite() and through a mapping.  The last ones, and those past the real
 * length and the BAR, are no_escape_at_boundaries'.
 */
TEST_F(big, first_bytes)
{
	__u8 mark[ACROSS], buf[ACROSS];
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(mem_regions); i++) {
		int index = mem_regions[i];
		off_t off = nvg_region_offset(index);
		__u8 *p;

		if (!variant->len[index])
			continue;
		p = map_region(self->fd, index, self->page, 0, MAP_SHARED);
		ASSERT_NE(MAP_FAILED, p);
		fill(mark, sizeof(mark), 120 + index);
		ASSERT_EQ(sizeof(mark), pwrite(self->fd, mark, sizeof(mark), off));
		EXPECT_EQ(0, memcmp(p, mark, sizeof(mark)));
		fill(mark, sizeof(mark), 130 + index);
		memcpy(p, mark, sizeof(mark));
		ASSERT_EQ(sizeof(buf), pread(self->fd, buf, sizeof(buf), off));
		EXPECT_EQ(0, memcmp(buf, mark, sizeof(mark)));
		EXPECT_EQ(0, munmap(p, self->page));
	}
}

TEST_F(big, no_escape_at_boundaries)
{
	check_no_escape(_metadata, self->fd, self->page, variant->len,
			variant->bar);
}

/*
 * Twice DMA_WINDOW at either end of each region (the benchmark times more,
 * tests/run-bench.sh).  Not on arm64: the SMMUv3 of QEMU 7.2 has 44-bit
 * output addresses, and the arm-smmu-v3 driver warns when asked to map a
 * physical address above them, as these are.
 */
#ifndef __aarch64__
TEST_F(big, dma_map_for_peer_to_peer)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(mem_regions); i++) {
		int index = mem_regions[i];

		if (variant->len[index])
			check_dma_map(_metadata, &self->dev, self->page, index,
				      variant->len[index], 2 * DMA_WINDOW);
	}
}
#endif

/*
 * A reset with all of usemem mapped: the registers go back to their reset
 * values, the whole mapping is zapped (each huge entry faults in again) and
 * the memory keeps its contents.
 */
TEST_F(big, reset_while_mapped)
{
	size_t mappable = round_down_to(variant->len[USE], self->page);
	__u64 reg = nvg_cfg_read64(self->fd, 0x20), ones = ~0ULL;
	long faults, want;
	__u8 *p;

	p = map_whole_checked(_metadata, self->fd, self->page, variant->base,
			      variant->len[USE], USE);
	ASSERT_NE(MAP_FAILED, p);
	p[0] = 0xa1;
	p[mappable - 1] = 0xa2;

	ASSERT_EQ(8, nvg_cfg_write(self->fd, 0x20, &ones, 8));
	ASSERT_EQ(0, ioctl(self->fd, VFIO_DEVICE_RESET)) {
		TH_LOG("reset: %s", strerror(errno));
	}
	EXPECT_EQ(reg, nvg_cfg_read64(self->fd, 0x20));

	want = expected_faults(variant->base, mappable, self->page,
			       big_stride(self->page));
	faults = read_faults(p, mappable, big_stride(self->page));
	TH_LOG("after the reset: %ld faults, %ld expected", faults, want);
	EXPECT_LE(want, faults);
	EXPECT_GE(want + FAULT_SLACK, faults);
	EXPECT_EQ(0xa1, p[0]);
	EXPECT_EQ(0xa2, p[mappable - 1]);
	EXPECT_EQ(0, munmap(p, mappable));
}

/* ---- An FLR through config space (tests/dvsec advertises FLR) ---- */

FIXTURE(flr) {
	struct nvg_dev dev;
	int fd;
};

FIXTURE_VARIANT(flr) {
	bool cdev;
	bool flr;		/* the function advertises FLR */
};

FIXTURE_VARIANT_ADD(flr, group) { .cdev = false, .flr = true };
FIXTURE_VARIANT_ADD(flr, cdev) { .cdev = true, .flr = true };
/* The stand-in as it is: its PCI Express capability has no FLR */
FIXTURE_VARIANT_ADD(flr, none) { .cdev = false, .flr = false };

/* The Hopper layout (no MIG bit), behind the root port */
FIXTURE_SETUP(flr)
{
	ASSERT_EQ(0, dvsec_open(GPU_PORT, 0, variant->flr, variant->cdev,
				&self->dev)) {
		TH_LOG("opening %s: %s", GPU_PORT, strerror(errno));
	}
	self->fd = self->dev.device_fd;
}

FIXTURE_TEARDOWN(flr)
{
	dvsec_close(_metadata, GPU_PORT, &self->dev);
	nvg_set_ready(GPU_PORT, NVG_READY);
}

/* The offset of the PCI Express capability in the config space VFIO shows */
static int find_pcie_cap(int fd)
{
	__u8 pos = 0, id = 0;
	int hops;

	if (nvg_cfg_read(fd, PCI_CAPABILITY_LIST, &pos, 1) != 1)
		return 0;
	for (hops = 0; pos && hops < 48; hops++) {
		if (nvg_cfg_read(fd, pos + PCI_CAP_LIST_ID, &id, 1) != 1)
			return 0;
		if (id == PCI_CAP_ID_EXP)
			return pos;
		if (nvg_cfg_read(fd, pos + PCI_CAP_LIST_NEXT, &pos, 1) != 1)
			return 0;
	}
	return 0;
}

/*
 * Initiate Function Level Reset, written to the Device Control register
 * through config space: vfio-pci-core resets the function when it
 * advertises FLR, which resets the emulated BARs and makes the GPU memory
 * wait for the GPU; without FLR nothing happens.  The bit reads 0.
 */
TEST_F(flr, flr_resets_bars_and_waits)
{
	__u64 addr = 0x4000000000ULL, marker = 0x666c722121212121ULL;
	int pos = find_pcie_cap(self->fd);
	__u16 ctl, flr_ctl;
	struct nvg_klog log;
	__u32 cap;

	ASSERT_NE(0, pos);
	ASSERT_EQ(4, nvg_cfg_read(self->fd, pos + PCI_EXP_DEVCAP, &cap, 4));
	EXPECT_EQ(variant->flr, !!(cap & PCI_EXP_DEVCAP_FLR));
	ASSERT_EQ(8, nvg_cfg_write(self->fd, 0x18, &addr, 8));
	ASSERT_EQ(8, nvg_cfg_write(self->fd, 0x20, &addr, 8));
	ASSERT_EQ(8, pwrite(self->fd, &marker, 8, nvg_region_offset(USE)));

	ASSERT_EQ(0, nvg_klog_start(&log));
	ASSERT_EQ(0, bar0_write32(self->fd, NVG_READY_LINK, 0));
	ASSERT_EQ(2, nvg_cfg_read(self->fd, pos + PCI_EXP_DEVCTL, &ctl, 2));
	flr_ctl = ctl | PCI_EXP_DEVCTL_BCR_FLR;
	ASSERT_EQ(2, nvg_cfg_write(self->fd, pos + PCI_EXP_DEVCTL, &flr_ctl, 2));
	ASSERT_EQ(2, nvg_cfg_read(self->fd, pos + PCI_EXP_DEVCTL, &flr_ctl, 2));
	EXPECT_EQ(0, flr_ctl & PCI_EXP_DEVCTL_BCR_FLR);
	if (variant->flr) {
		EXPECT_EQ(NVG_BAR_FLAGS, nvg_cfg_read64(self->fd, 0x18));
		EXPECT_EQ(NVG_BAR_FLAGS, nvg_cfg_read64(self->fd, 0x20));
	} else {
		EXPECT_EQ(addr | NVG_BAR_FLAGS, nvg_cfg_read64(self->fd, 0x18));
		EXPECT_EQ(addr | NVG_BAR_FLAGS, nvg_cfg_read64(self->fd, 0x20));
	}
	check_wait_after_reset(_metadata, self->fd, &log, marker, variant->flr);
	nvg_klog_stop(&log);
}

/* ---- The test machine itself ---- */

/* ---- A GPU that reports its memory ready in a CXL Device DVSEC ---- */

/* DVSEC Range 1 Size Low, as tests/dvsec makes it read */
#define CXL_VALID	0x1U
#define CXL_ACTIVE	0x2U
#define CXL_CODE(c)	((__u32)(c) << 13)	/* Memory_Active_Timeout */
#define CXL_SIZE	0x30000000U		/* size bits: not readiness */
#define CXL_READY	(CXL_SIZE | CXL_CODE(4) | CXL_VALID | CXL_ACTIVE)
#define CXL_PARAM	"/sys/module/nvgrace_dvsec/parameters/cxl_size_low"
/* When a late GPU sets Memory_Active */
#define CXL_LATE	2.0

#define MSG_CXL_VALID	GPU_PORT ": GPU memory not ready: Memory_Info_Valid not set after 1000 ms"
#define MSG_CXL_ACTIVE	GPU_PORT ": GPU memory not ready: Memory_Active not set after 1000 ms"

static int cxl_set(__u32 val)
{
	char buf[16];

	snprintf(buf, sizeof(buf), "%u", val);
	return nvg_write_file(CXL_PARAM, buf);
}

/* Set the register to @val @delay seconds from now, from a child */
static pid_t cxl_set_later(double delay, __u32 val)
{
	pid_t pid = fork();

	if (!pid) {
		usleep(delay * 1e6);
		_exit(cxl_set(val) ? 1 : 0);
	}
	return pid;
}

static int cxl_set_ready(int fd, bool ready)
{
	return cxl_set(ready ? CXL_READY : CXL_READY & ~CXL_ACTIVE);
}

static const struct ready_ctl cxl_ready_ctl = { cxl_set_ready, "CXL DVSEC" };

FIXTURE(cxl) {
	struct nvg_dev dev;
	int fd;
};

FIXTURE_VARIANT(cxl) {
	bool cdev;
};

FIXTURE_VARIANT_ADD(cxl, group) { .cdev = false };
FIXTURE_VARIANT_ADD(cxl, cdev) { .cdev = true };

/*
 * The Blackwell layout (usemem only, 2 GiB) behind the root port, with a
 * CXL Device DVSEC; its BAR0 registers say not ready, and are not read
 */
FIXTURE_SETUP(cxl)
{
	char params[64];

	snprintf(params, sizeof(params), "caps=1 cxl=1 cxl_size_low=%u",
		 CXL_READY);
	ASSERT_EQ(0, dvsec_load(GPU_PORT, params));
	ASSERT_EQ(0, nvg_set_ready(GPU_PORT, 0));
	ASSERT_EQ(0, bind_open(GPU_PORT, variant->cdev, &self->dev)) {
		TH_LOG("opening %s: %s", GPU_PORT, strerror(errno));
	}
	self->fd = self->dev.device_fd;
}

FIXTURE_TEARDOWN(cxl)
{
	dvsec_close(_metadata, GPU_PORT, &self->dev);
	nvg_set_ready(GPU_PORT, NVG_READY);
}

/* Close and unbind the GPU, set the register to @val */
static void cxl_unbind(struct __test_metadata *_metadata,
		       struct nvg_dev *dev, __u32 val)
{
	nvg_close(dev);
	ASSERT_EQ(0, nvg_unbind(GPU_PORT));
	ASSERT_EQ(0, cxl_set(val));
}

/* The probe waits out a late Memory_Active, under a 256 s timeout */
TEST_F(cxl, probe_waits_for_memory_active)
{
	struct nvg_klog log;
	pid_t pid;
	double t;

	cxl_unbind(_metadata, &self->dev, CXL_SIZE | CXL_CODE(4) | CXL_VALID);
	ASSERT_EQ(0, nvg_klog_start(&log));
	/* The clock starts before the child that sets Memory_Active */
	t = nvg_now();
	pid = cxl_set_later(CXL_LATE, CXL_READY);
	ASSERT_LT(0, pid);
	ASSERT_EQ(0, bind_open(GPU_PORT, variant->cdev, &self->dev));
	t = nvg_now() - t;
	self->fd = self->dev.device_fd;
	EXPECT_TRUE(child_ok(pid));
	TH_LOG("bind with Memory_Active set %.1f s in: %.3f s", CXL_LATE, t);
	EXPECT_LE(CXL_LATE, t);
	EXPECT_GT(CXL_LATE + NVG_POLL_INTERVAL + NVG_READY_SLACK, t);
	EXPECT_EQ(1, nvg_klog_count(&log, GPU_PORT NVG_MSG_WAITED));
	nvg_klog_stop(&log);
}

/*
 * The probe fails with ETIME after 1 s when Memory_Info_Valid stays clear,
 * or when Memory_Active does not follow within a 1 s timeout, with one
 * message that names the bit
 */
static void check_cxl_probe_fails(struct __test_metadata *_metadata,
				  struct nvg_dev *dev, bool cdev, __u32 val,
				  const char *msg)
{
	struct nvg_klog log;
	double t;

	cxl_unbind(_metadata, dev, val);
	ASSERT_EQ(0, nvg_klog_start(&log));
	t = nvg_now();
	EXPECT_EQ(-1, nvg_bind(GPU_PORT, NVG_DRIVER));
	t = nvg_now() - t;
	TH_LOG("probe failed after %.3f s", t);
	EXPECT_LE(1.0, t);
	EXPECT_GT(1.0 + NVG_POLL_INTERVAL + NVG_READY_SLACK, t);
	EXPECT_EQ(1, nvg_klog_count(&log, msg));
	nvg_klog_stop(&log);

	ASSERT_EQ(0, cxl_set(CXL_READY));
	ASSERT_EQ(0, bind_open(GPU_PORT, cdev, dev));
}

TEST_F(cxl, probe_fails_without_memory_info_valid)
{
	check_cxl_probe_fails(_metadata, &self->dev, variant->cdev,
			      CXL_SIZE | CXL_CODE(4) | CXL_ACTIVE,
			      MSG_CXL_VALID);
	self->fd = self->dev.device_fd;
}

TEST_F(cxl, probe_fails_when_memory_active_late)
{
	check_cxl_probe_fails(_metadata, &self->dev, variant->cdev,
			      CXL_SIZE | CXL_CODE(0) | CXL_VALID,
			      MSG_CXL_ACTIVE);
	self->fd = self->dev.device_fd;
}

/*
 * After a reset an access waits for Memory_Active again, here under the
 * 256 s timeout and set 2 s later, and then sees the memory as it was
 */
TEST_F(cxl, reset_waits_for_memory_active)
{
	__u64 marker = 0x63786c7265737421ULL, val = 0;
	struct nvg_klog log;
	pid_t pid;
	double t;

	ASSERT_EQ(8, pwrite(self->fd, &marker, 8, nvg_region_offset(USE)));
	ASSERT_EQ(0, cxl_set(CXL_SIZE | CXL_CODE(4) | CXL_VALID));
	ASSERT_EQ(0, nvg_klog_start(&log));
	ASSERT_EQ(0, ioctl(self->fd, VFIO_DEVICE_RESET));
	/* The clock starts before the child that sets Memory_Active */
	t = nvg_now();
	pid = cxl_set_later(CXL_LATE, CXL_READY);
	ASSERT_LT(0, pid);
	EXPECT_EQ(8, pread(self->fd, &val, 8, nvg_region_offset(USE)));
	t = nvg_now() - t;
	EXPECT_TRUE(child_ok(pid));
	TH_LOG("pread after the reset: %.3f s", t);
	EXPECT_EQ(marker, val);
	EXPECT_LE(CXL_LATE, t);
	EXPECT_GT(CXL_LATE + NVG_POLL_INTERVAL + NVG_READY_SLACK, t);
	EXPECT_EQ(1, nvg_klog_count(&log, GPU_PORT NVG_MSG_WAITED));
	nvg_klog_stop(&log);
}

/*
 * Memory_Active never set after a reset, under a 1 s timeout: the access
 * fails with ETIME (a fault with SIGBUS); the next one polls again and
 * works once the GPU is ready, with no new reset
 */
TEST_F(cxl, reset_times_out_then_retries)
{
	__u64 *p, val = 0;
	struct nvg_klog log;
	double t;

	p = map_region(self->fd, USE, sysconf(_SC_PAGESIZE), 0, MAP_SHARED);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(0, cxl_set(CXL_SIZE | CXL_CODE(0) | CXL_VALID));
	ASSERT_EQ(0, nvg_klog_start(&log));
	ASSERT_EQ(0, ioctl(self->fd, VFIO_DEVICE_RESET));
	t = nvg_now();
	EXPECT_EQ(-1, pread(self->fd, &val, 8, nvg_region_offset(USE)));
	EXPECT_EQ(ETIME, errno);
	t = nvg_now() - t;
	EXPECT_EQ(SIGBUS, touch_in_child((__u8 *)p));
	TH_LOG("pread failed after %.3f s", t);
	EXPECT_LE(1.0, t);
	EXPECT_GT(1.0 + NVG_POLL_INTERVAL + NVG_READY_SLACK, t);
	EXPECT_LE(1, nvg_klog_count(&log, MSG_CXL_ACTIVE));
	nvg_klog_stop(&log);

	ASSERT_EQ(0, cxl_set(CXL_READY));
	EXPECT_EQ(8, pread(self->fd, &val, 8, nvg_region_offset(USE)));
	EXPECT_EQ(0, touch_in_child((__u8 *)p));
	munmap(p, sysconf(_SC_PAGESIZE));
}

/* A DVSEC that reads all-ones after a reset: the GPU is gone, fail fast */
TEST_F(cxl, reset_gone_fails_fast)
{
	__u64 *p, val = 0;
	struct nvg_klog log;
	double t, fault;

	p = map_region(self->fd, USE, sysconf(_SC_PAGESIZE), 0, MAP_SHARED);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(0, cxl_set(~0U));
	ASSERT_EQ(0, nvg_klog_start(&log));
	ASSERT_EQ(0, ioctl(self->fd, VFIO_DEVICE_RESET));
	t = nvg_now();
	EXPECT_EQ(-1, pread(self->fd, &val, 8, nvg_region_offset(USE)));
	t = nvg_now() - t;
	EXPECT_EQ(ENODEV, errno);
	EXPECT_EQ(SIGBUS, nvg_touch((__u8 *)p, 0x5a, &fault));
	TH_LOG("pread failed after %.3f s, the fault after %.3f s", t, fault);
	EXPECT_GT(NVG_POLL_INTERVAL, t);
	EXPECT_GT(NVG_POLL_INTERVAL, fault);
	EXPECT_LE(1, nvg_klog_count(&log, GPU_PORT NVG_MSG_GONE));
	nvg_klog_stop(&log);

	ASSERT_EQ(0, cxl_set(CXL_READY));
	EXPECT_EQ(8, pread(self->fd, &val, 8, nvg_region_offset(USE)));
	EXPECT_EQ(0, touch_in_child((__u8 *)p));
	munmap(p, sysconf(_SC_PAGESIZE));
}

TEST_F(cxl, waits_hold_no_lock)
{
	check_waits_hold_no_lock(_metadata, GPU_PORT, &self->dev,
				 variant->cdev, true, &cxl_ready_ctl);
}

/* The GPU memory of the stand-ins must not be RAM the kernel uses */
TEST(device_memory_is_not_system_ram)
{
	unsigned long long start, end;
	char line[256];
	int ram = 0, fields;
	FILE *f;

	f = fopen("/proc/iomem", "r");
	ASSERT_NE(NULL, f);
	while (fgets(line, sizeof(line), f)) {
		if (line[0] == ' ' || !strstr(line, "System RAM"))
			continue;
		fields = sscanf(line, "%llx-%llx", &start, &end);
		ASSERT_EQ(2, fields);
		ram++;
		/* All device variants and their guards lie in [4, 17) GiB */
		EXPECT_TRUE(end < 0x100000000ULL || start >= 0x440000000ULL) {
			TH_LOG("System RAM %s", line);
		}
	}
	fclose(f);
	EXPECT_GT(ram, 0);
}

/* ---- Functions whose firmware description is broken ---- */

FIXTURE(broken) {
};

FIXTURE_VARIANT(broken) {
	const char *bdf;
	const char *cause;	/* the driver's error message ... */
	const char *values;	/* ... and what follows it */
};

FIXTURE_VARIANT_ADD(broken, link_down) {
	.bdf = "0000:00:07.0",
	.cause = "GPU memory size is 0: the chip-to-chip link is down",
	.values = " (base 0x200000000, size 0x0): -ENODEV",
};

FIXTURE_VARIANT_ADD(broken, base_only) {
	.bdf = "0000:00:08.0",
	.cause = "firmware gives nvidia,gpu-mem-base-pa",
	.values = " but not nvidia,gpu-mem-size: -EINVAL",
};

FIXTURE_VARIANT_ADD(broken, size_only) {
	.bdf = "0000:00:0e.0",
	.cause = "firmware gives nvidia,gpu-mem-size",
	.values = " but not nvidia,gpu-mem-base-pa: -EINVAL",
};

FIXTURE_VARIANT_ADD(broken, too_small) {
	.bdf = "0000:00:0a.0",
	.cause = "GPU memory is smaller than 1.5 GiB",
	.values = " (base 0x200000000, size 0x40000000): -EINVAL",
};

FIXTURE_VARIANT_ADD(broken, unaligned_base) {
	.bdf = "0000:00:0b.0",
	.cause = "GPU memory base is not page aligned",
	.values = " (base 0x100000800, size 0x80000000): -EINVAL",
};

FIXTURE_VARIANT_ADD(broken, wraps) {
	.bdf = "0000:00:0c.0",
	.cause = "GPU memory range overflows the address space",
	.values = " (base 0xffffffffc0000000, size 0x80000000): -EOVERFLOW",
};

/* A valid description, but a 4 KiB BAR0 (pci-testdev) */
FIXTURE_VARIANT_ADD(broken, small_bar0) {
	.bdf = "0000:00:0f.0",
	.cause = "BAR0 has no room for the readiness registers",
	.values = ": -ENODEV",
};

FIXTURE_SETUP(broken)
{
}

FIXTURE_TEARDOWN(broken)
{
}

/*
 * The probe fails, and the driver says why in exactly one error message;
 * the driver core adds its own for errors other than -ENODEV.
 */
TEST_F(broken, probe_fails)
{
	char name[64], message[256], errors[64], core[96];
	struct nvg_klog log;

	ASSERT_EQ(0, nvg_klog_start(&log));
	EXPECT_EQ(-1, nvg_bind(variant->bdf, NVG_DRIVER));
	EXPECT_NE(0, nvg_bound_driver(variant->bdf, name, sizeof(name)));
	snprintf(message, sizeof(message), "3;%s %s: %s%s\n", NVG_DRIVER,
		 variant->bdf, variant->cause, variant->values);
	snprintf(errors, sizeof(errors), "3;%s %s: ", NVG_DRIVER, variant->bdf);
	snprintf(core, sizeof(core), "%sprobe with driver ", errors);
	EXPECT_EQ(1, nvg_klog_count(&log, message)) {
		TH_LOG("no kernel message \"%s\"", message);
	}
	EXPECT_EQ(1, nvg_klog_count(&log, errors) -
		     nvg_klog_count(&log, core));
	nvg_klog_stop(&log);
}

/*
 * The driver's IDs match only through driver_override: the module's
 * aliases are the vfio_pci: ones of PCI_DRIVER_OVERRIDE_DEVICE_VFIO, one
 * per ID, and none is a pci: alias that would have udev load and bind it.
 */
TEST(ids_match_only_through_driver_override)
{
	static const char *const ids[] = { "2342", "2345", "2348", "2941",
					   "31C2" };
	char release[128], path[256], line[512], pattern[256], module[128];
	unsigned int seen[ARRAY_SIZE(ids)] = { 0 }, i, aliases = 0;
	FILE *f;

	f = fopen("/proc/sys/kernel/osrelease", "r");
	ASSERT_NE(NULL, f);
	ASSERT_NE(NULL, fgets(release, sizeof(release), f));
	fclose(f);
	release[strcspn(release, "\n")] = '\0';
	snprintf(path, sizeof(path), "/lib/modules/%s/modules.alias", release);
	f = fopen(path, "r");
	ASSERT_NE(NULL, f);
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "alias %255s %127s", pattern, module) != 2 ||
		    strcmp(module, NVG_DRIVER))
			continue;
		aliases++;
		EXPECT_EQ(0, strncmp(pattern, "vfio_pci:v000010DEd0000", 23)) {
			TH_LOG("alias %s", pattern);
		}
		for (i = 0; i < ARRAY_SIZE(ids); i++)
			seen[i] += !strncmp(pattern + 23, ids[i], 4);
	}
	fclose(f);
	EXPECT_EQ(ARRAY_SIZE(ids), aliases);
	for (i = 0; i < ARRAY_SIZE(ids); i++) {
		const char *id = ids[i];

		EXPECT_EQ(1, seen[i]) {
			TH_LOG("device %s", id);
		}
	}
}

TEST_HARNESS_MAIN
