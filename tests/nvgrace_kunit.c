// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit tests for the hardware-independent logic of nvgrace-gpu-vfio-pci:
 * the split of the GPU memory, the clipping of read() and write() to the
 * emulated BARs, and the emulated BAR registers in config space.
 *
 * Expected values are written out as literals, worked out by hand from the
 * layout rules, rather than computed with the driver's own formulas.
 */

#include <kunit/test.h>
#include <linux/log2.h>
#include <linux/pci_regs.h>
#include <linux/sizes.h>

#include "../nvgrace.h"

/* ---- Splitting the GPU memory ---- */

struct nvgrace_split_case {
	const char *name;
	u64 base;
	u64 size;
	int ret;
	u64 usemem_len;
	u64 usemem_bar;
	u64 resmem_len;
	u64 resmem_bar;
};

static const struct nvgrace_split_case nvgrace_split_cases[] = {
	{ "size 0: link down", 0x100000000, 0, -ENODEV },
	{ "size 0 wins over a bad base", 0x100000001, 0, -ENODEV },
	{ "512 MiB", 0x100000000, SZ_512M, -EINVAL },
	{ "exactly 1 GiB", 0x100000000, SZ_1G, -EINVAL },
	{ "1 GiB + 1 byte", 0x100000000, SZ_1G + 1, -EINVAL },
	{ "1.5 GiB - 1 byte", 0x100000000, 0x5fffffff, -EINVAL },
	{ "exactly 1.5 GiB", 0x100000000, 0x60000000, 0,
	  0x20000000, 0x20000000, 0x40000000, 0x40000000 },
	{ "1.5 GiB + 1 page", 0x100000000, 0x60001000, 0,
	  0x20000000, 0x40000000, 0x40001000, 0x80000000 },
	{ "2.5 GiB - 1 MiB: not memblock aligned", 0x100000000, 0x9ff00000, 0,
	  0x40000000, 0x80000000, 0x5ff00000, 0x80000000 },
	{ "exactly 2 GiB", 0x100000000, 0x80000000, 0,
	  0x40000000, 0x40000000, 0x40000000, 0x40000000 },
	{ "2 GiB + 1 byte", 0x100000000, 0x80000001, 0,
	  0x40000000, 0x80000000, 0x40000001, 0x80000000 },
	{ "96 GiB", 0x400000000000, 0x1800000000, 0,
	  0x17c0000000, 0x2000000000, 0x40000000, 0x40000000 },
	{ "95.5 GiB + 3 MiB", 0x400000000000, 0x17e0300000, 0,
	  0x17a0000000, 0x2000000000, 0x40300000, 0x80000000 },
	{ "base 0", 0, 0x60000000, 0,
	  0x20000000, 0x20000000, 0x40000000, 0x40000000 },
	{ "base not page aligned", 0x100000800, 0x80000000, -EINVAL },
	{ "base one byte past a page", 0x100001001, 0x80000000, -EINVAL },
	{ "2^63 exactly", 0, BIT_ULL(63), 0,
	  BIT_ULL(63) - SZ_1G, BIT_ULL(63), SZ_1G, SZ_1G },
	{ "2^63 + 1", 0, BIT_ULL(63) + 1, -EOVERFLOW },
	{ "size U64_MAX", 0, U64_MAX, -EOVERFLOW },
	{ "base + size wraps", 0xffffffffc0000000, 0x80000000, -EOVERFLOW },
	{ "end exactly at 2^64", 0xffffffff80000000, 0x80000000, -EOVERFLOW },
	{ "end just below 2^64", 0xffffffff00000000, 0x80000000, 0,
	  0x40000000, 0x40000000, 0x40000000, 0x40000000 },
};

KUNIT_ARRAY_PARAM_DESC(nvgrace_split, nvgrace_split_cases, name);

static void nvgrace_test_split(struct kunit *test)
{
	const struct nvgrace_split_case *c = test->param_value;
	struct nvgrace_mem_layout layout;
	const char *cause = NULL;
	int ret;

	ret = nvgrace_mem_split(c->base, c->size, &layout, &cause);
	KUNIT_ASSERT_EQ(test, ret, c->ret);
	if (ret) {
		KUNIT_EXPECT_NOT_NULL(test, cause);
		return;
	}

	KUNIT_EXPECT_EQ(test, layout.usemem.base, c->base);
	KUNIT_EXPECT_EQ(test, (u64)layout.usemem.length, c->usemem_len);
	KUNIT_EXPECT_EQ(test, layout.usemem.bar_size, c->usemem_bar);
	KUNIT_EXPECT_EQ(test, layout.resmem.base, c->base + c->usemem_len);
	KUNIT_EXPECT_EQ(test, (u64)layout.resmem.length, c->resmem_len);
	KUNIT_EXPECT_EQ(test, layout.resmem.bar_size, c->resmem_bar);

	/* The invariants every layout keeps */
	KUNIT_EXPECT_EQ(test, (u64)layout.usemem.length + layout.resmem.length,
			c->size);
	KUNIT_EXPECT_EQ(test, layout.usemem.length % SZ_512M, 0);
	KUNIT_EXPECT_GE(test, layout.resmem.length, SZ_1G);
	KUNIT_EXPECT_TRUE(test, is_power_of_2(layout.usemem.bar_size));
	KUNIT_EXPECT_TRUE(test, is_power_of_2(layout.resmem.bar_size));
	KUNIT_EXPECT_GE(test, layout.usemem.bar_size, layout.usemem.length);
	KUNIT_EXPECT_GE(test, layout.resmem.bar_size, layout.resmem.length);
	KUNIT_EXPECT_NULL(test, layout.usemem.kaddr);
	KUNIT_EXPECT_EQ(test, layout.usemem.bar_reg, 0);
}

/* ---- Clipping read() and write() ---- */

struct nvgrace_clip_case {
	const char *name;
	u64 length;
	u64 bar_size;
	u64 pos;
	size_t count;
	int ret;
	size_t total;
	size_t mem;
};

#define CLIP_LEN	0x5ff00000ULL	/* resmem of a 2.5 GiB - 1 MiB device */
#define CLIP_BAR	0x80000000ULL

static const struct nvgrace_clip_case nvgrace_clip_cases[] = {
	{ "count 0 at 0", CLIP_LEN, CLIP_BAR, 0, 0, 0, 0, 0 },
	{ "count 0 in padding", CLIP_LEN, CLIP_BAR, CLIP_BAR - 1, 0, 0, 0, 0 },
	{ "count 0 at BAR size", CLIP_LEN, CLIP_BAR, CLIP_BAR, 0, -EINVAL },
	{ "inside memory", CLIP_LEN, CLIP_BAR, 0x1000, 16, 0, 16, 16 },
	{ "last byte of memory", CLIP_LEN, CLIP_BAR, CLIP_LEN - 1, 1, 0, 1, 1 },
	{ "ends at length", CLIP_LEN, CLIP_BAR, CLIP_LEN - 16, 16, 0, 16, 16 },
	{ "crosses length", CLIP_LEN, CLIP_BAR, CLIP_LEN - 4, 16, 0, 16, 4 },
	{ "starts at length", CLIP_LEN, CLIP_BAR, CLIP_LEN, 16, 0, 16, 0 },
	{ "after length", CLIP_LEN, CLIP_BAR, CLIP_LEN + 4, 16, 0, 16, 0 },
	{ "crosses BAR size", CLIP_LEN, CLIP_BAR, CLIP_BAR - 4, 16, 0, 4, 0 },
	{ "last byte of BAR", CLIP_LEN, CLIP_BAR, CLIP_BAR - 1, 8, 0, 1, 0 },
	{ "at BAR size", CLIP_LEN, CLIP_BAR, CLIP_BAR, 1, -EINVAL },
	{ "after BAR size", CLIP_LEN, CLIP_BAR, CLIP_BAR + 1, 1, -EINVAL },
	{ "offset 2^63", CLIP_LEN, CLIP_BAR, BIT_ULL(63), 8, -EINVAL },
	{ "offset U64_MAX", CLIP_LEN, CLIP_BAR, U64_MAX, 8, -EINVAL },
	{ "whole BAR, huge count", CLIP_LEN, CLIP_BAR, 0, SIZE_MAX, 0,
	  CLIP_BAR, CLIP_LEN },
	{ "memory to the end, huge count", CLIP_LEN, CLIP_BAR, CLIP_LEN - 8,
	  SIZE_MAX, 0, CLIP_BAR - CLIP_LEN + 8, 8 },
	{ "length is BAR size, crosses end", SZ_1G, SZ_1G, SZ_1G - 4, 16, 0,
	  4, 4 },
	{ "length is BAR size, at end", SZ_1G, SZ_1G, SZ_1G, 16, -EINVAL },
};

KUNIT_ARRAY_PARAM_DESC(nvgrace_clip, nvgrace_clip_cases, name);

static void nvgrace_test_clip(struct kunit *test)
{
	const struct nvgrace_clip_case *c = test->param_value;
	struct nvgrace_mem_region region = {
		.base = 0x100000000,
		.length = c->length,
		.bar_size = c->bar_size,
	};
	struct nvgrace_mem_span span = { .total = 0xdead, .mem = 0xbeef };
	int ret;

	ret = nvgrace_mem_clip(&region, c->pos, c->count, &span);
	KUNIT_ASSERT_EQ(test, ret, c->ret);
	if (ret)
		return;
	KUNIT_EXPECT_EQ(test, span.total, c->total);
	KUNIT_EXPECT_EQ(test, span.mem, c->mem);
}

/* ---- Emulated BAR registers ---- */

/* Raw register contents and what they read back as, worked out by hand */
#define RES_RAW		0x123456789abcdef0ULL
#define RES_BAR		SZ_2G
#define RES_READ	0x123456788000000cULL
#define USE_RAW		0xfedcba9876543210ULL
#define USE_BAR		0x2000000000ULL		/* 128 GiB */
#define USE_READ	0xfedcba800000000cULL

static struct nvgrace_gpu_device *nvgrace_test_device(struct kunit *test)
{
	struct nvgrace_gpu_device *nvdev;

	nvdev = kunit_kzalloc(test, sizeof(*nvdev), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, nvdev);
	mutex_init(&nvdev->bar_lock);
	nvdev->mem.resmem.length = 0x5ff00000;
	nvdev->mem.resmem.bar_size = RES_BAR;
	nvdev->mem.usemem.length = 0x17c0000000;
	nvdev->mem.usemem.bar_size = USE_BAR;
	return nvdev;
}

/* Byte @pos of config space as the emulation must show it, given the registers */
static u8 nvgrace_expected_byte(u64 pos, u64 res, u64 use)
{
	u64 reg = pos < PCI_BASE_ADDRESS_4 ? res : use;

	return reg >> ((pos - PCI_BASE_ADDRESS_2) % 8 * 8);
}

static void nvgrace_test_segment(struct kunit *test)
{
	bool emulated;

	KUNIT_EXPECT_EQ(test, nvgrace_config_segment(0x00, 0x100, &emulated),
			0x18);
	KUNIT_EXPECT_FALSE(test, emulated);
	KUNIT_EXPECT_EQ(test, nvgrace_config_segment(0x14, 4, &emulated), 4);
	KUNIT_EXPECT_FALSE(test, emulated);
	KUNIT_EXPECT_EQ(test, nvgrace_config_segment(0x17, 2, &emulated), 1);
	KUNIT_EXPECT_FALSE(test, emulated);
	KUNIT_EXPECT_EQ(test, nvgrace_config_segment(0x18, 0x100, &emulated),
			0x10);
	KUNIT_EXPECT_TRUE(test, emulated);
	KUNIT_EXPECT_EQ(test, nvgrace_config_segment(0x1c, 8, &emulated), 8);
	KUNIT_EXPECT_TRUE(test, emulated);
	KUNIT_EXPECT_EQ(test, nvgrace_config_segment(0x27, 1, &emulated), 1);
	KUNIT_EXPECT_TRUE(test, emulated);
	KUNIT_EXPECT_EQ(test, nvgrace_config_segment(0x24, 8, &emulated), 4);
	KUNIT_EXPECT_TRUE(test, emulated);
	KUNIT_EXPECT_EQ(test, nvgrace_config_segment(0x28, 8, &emulated), 8);
	KUNIT_EXPECT_FALSE(test, emulated);
	KUNIT_EXPECT_EQ(test, nvgrace_config_segment(0xfff, 1, &emulated), 1);
	KUNIT_EXPECT_FALSE(test, emulated);
}

/*
 * Walk an access of @width bytes at @off the way the driver does, piece by
 * piece; check that the pieces cover the access and are emulated exactly
 * for the bytes 0x18..0x27.  Returns the number of emulated bytes.
 */
static size_t nvgrace_walk(struct kunit *test, struct nvgrace_gpu_device *nvdev,
			   u64 off, size_t width, u8 *buf, bool iswrite)
{
	size_t done = 0, emulated_bytes = 0;

	while (done < width) {
		bool emulated;
		size_t len = nvgrace_config_segment(off + done, width - done,
						    &emulated);
		size_t i;

		KUNIT_ASSERT_GE(test, len, 1);
		KUNIT_ASSERT_LE(test, len, width - done);
		for (i = 0; i < len; i++)
			KUNIT_EXPECT_EQ(test, emulated,
					off + done + i >= 0x18 &&
					off + done + i < 0x28);
		if (emulated) {
			mutex_lock(&nvdev->bar_lock);
			if (iswrite)
				nvgrace_config_write_bars(nvdev, off + done,
							  buf + done, len);
			else
				nvgrace_config_read_bars(nvdev, off + done,
							 buf + done, len);
			mutex_unlock(&nvdev->bar_lock);
			emulated_bytes += len;
		}
		done += len;
	}
	return emulated_bytes;
}

static const size_t nvgrace_widths[] = { 1, 2, 4, 8 };

static void nvgrace_test_read_every_width(struct kunit *test)
{
	struct nvgrace_gpu_device *nvdev = nvgrace_test_device(test);
	unsigned int w;
	u64 off;

	nvdev->mem.resmem.bar_reg = RES_RAW;
	nvdev->mem.usemem.bar_reg = USE_RAW;

	for (w = 0; w < ARRAY_SIZE(nvgrace_widths); w++) {
		size_t width = nvgrace_widths[w];

		for (off = 0x10; off <= 0x28; off++) {
			u8 buf[8];
			size_t i;

			memset(buf, 0x5a, sizeof(buf));
			nvgrace_walk(test, nvdev, off, width, buf, false);
			for (i = 0; i < width; i++) {
				u64 pos = off + i;

				if (pos < 0x18 || pos >= 0x28) {
					/* Not ours: left for vfio-pci-core */
					KUNIT_EXPECT_EQ(test, buf[i], 0x5a);
					continue;
				}
				KUNIT_EXPECT_EQ_MSG(test, buf[i],
						    nvgrace_expected_byte(pos, RES_READ, USE_READ),
						    "width %zu offset %#llx byte %zu",
						    width, off, i);
			}
		}
	}
	/* Reading does not change the registers */
	KUNIT_EXPECT_EQ(test, nvdev->mem.resmem.bar_reg, RES_RAW);
	KUNIT_EXPECT_EQ(test, nvdev->mem.usemem.bar_reg, USE_RAW);
}

static void nvgrace_test_write_every_width(struct kunit *test)
{
	struct nvgrace_gpu_device *nvdev = nvgrace_test_device(test);
	unsigned int w;
	u64 off;

	for (w = 0; w < ARRAY_SIZE(nvgrace_widths); w++) {
		size_t width = nvgrace_widths[w];

		for (off = 0x10; off <= 0x28; off++) {
			u8 model[16] = { };
			u8 buf[8], window[16];
			u64 res = 0, use = 0;
			size_t i;

			nvgrace_config_reset_bars(nvdev);
			for (i = 0; i < width; i++) {
				buf[i] = 0xa0 + i;
				if (off + i >= 0x18 && off + i < 0x28)
					model[off + i - 0x18] = buf[i];
			}
			nvgrace_walk(test, nvdev, off, width, buf, true);

			for (i = 0; i < 8; i++) {
				res |= (u64)model[i] << (8 * i);
				use |= (u64)model[8 + i] << (8 * i);
			}
			KUNIT_EXPECT_EQ_MSG(test, nvdev->mem.resmem.bar_reg, res,
					    "width %zu offset %#llx", width, off);
			KUNIT_EXPECT_EQ_MSG(test, nvdev->mem.usemem.bar_reg, use,
					    "width %zu offset %#llx", width, off);

			/* And what user space reads back: masked, with flags */
			res = (res & ~(u64)(RES_BAR - 1)) | 0xc;
			use = (use & ~(USE_BAR - 1)) | 0xc;
			nvgrace_walk(test, nvdev, 0x18, 16, window, false);
			for (i = 0; i < 16; i++)
				KUNIT_EXPECT_EQ(test, window[i],
						nvgrace_expected_byte(0x18 + i, res, use));
		}
	}
}

static u64 nvgrace_read_reg(struct kunit *test,
			    struct nvgrace_gpu_device *nvdev, u64 off)
{
	u8 buf[8];
	u64 val = 0;
	int i;

	nvgrace_walk(test, nvdev, off, 8, buf, false);
	for (i = 0; i < 8; i++)
		val |= (u64)buf[i] << (8 * i);
	return val;
}

static void nvgrace_test_sizing(struct kunit *test)
{
	struct nvgrace_gpu_device *nvdev = nvgrace_test_device(test);
	u8 ones[8];

	memset(ones, 0xff, sizeof(ones));

	/* 64-bit all-ones write, as one access */
	nvgrace_walk(test, nvdev, 0x18, 8, ones, true);
	KUNIT_EXPECT_EQ(test, nvgrace_read_reg(test, nvdev, 0x18),
			0xffffffff8000000cULL);
	/* As two dword writes, the way firmware and guests size BARs */
	nvgrace_walk(test, nvdev, 0x20, 4, ones, true);
	nvgrace_walk(test, nvdev, 0x24, 4, ones, true);
	KUNIT_EXPECT_EQ(test, nvgrace_read_reg(test, nvdev, 0x20),
			0xffffffe00000000cULL);

	/* Writing an address back keeps the address bits only */
	nvdev->mem.usemem.bar_reg = 0x4000000123ULL;
	KUNIT_EXPECT_EQ(test, nvgrace_read_reg(test, nvdev, 0x20),
			0x400000000cULL);

	nvgrace_config_reset_bars(nvdev);
	KUNIT_EXPECT_EQ(test, nvgrace_read_reg(test, nvdev, 0x18), 0xcULL);
	KUNIT_EXPECT_EQ(test, nvgrace_read_reg(test, nvdev, 0x20), 0xcULL);
}

static void nvgrace_test_straddle(struct kunit *test)
{
	struct nvgrace_gpu_device *nvdev = nvgrace_test_device(test);
	u8 buf[8] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88 };

	/* 8 bytes at 0x1c: upper half of BAR2/3, lower half of BAR4/5 */
	KUNIT_EXPECT_EQ(test, nvgrace_walk(test, nvdev, 0x1c, 8, buf, true), 8);
	KUNIT_EXPECT_EQ(test, nvdev->mem.resmem.bar_reg, 0x4433221100000000ULL);
	KUNIT_EXPECT_EQ(test, nvdev->mem.usemem.bar_reg, 0x88776655ULL);

	/* 8 bytes at 0x14: BAR1 (not ours) and the low half of BAR2 */
	nvgrace_config_reset_bars(nvdev);
	KUNIT_EXPECT_EQ(test, nvgrace_walk(test, nvdev, 0x14, 8, buf, true), 4);
	KUNIT_EXPECT_EQ(test, nvdev->mem.resmem.bar_reg, 0x88776655ULL);

	/* 8 bytes at 0x24: upper half of BAR4/5 and the CardBus pointer */
	nvgrace_config_reset_bars(nvdev);
	KUNIT_EXPECT_EQ(test, nvgrace_walk(test, nvdev, 0x24, 8, buf, true), 4);
	KUNIT_EXPECT_EQ(test, nvdev->mem.usemem.bar_reg, 0x4433221100000000ULL);
}

static struct kunit_case nvgrace_mem_test_cases[] = {
	KUNIT_CASE_PARAM(nvgrace_test_split, nvgrace_split_gen_params),
	KUNIT_CASE_PARAM(nvgrace_test_clip, nvgrace_clip_gen_params),
	{}
};

static struct kunit_suite nvgrace_mem_test_suite = {
	.name = "nvgrace_gpu_mem",
	.test_cases = nvgrace_mem_test_cases,
};

static struct kunit_case nvgrace_config_test_cases[] = {
	KUNIT_CASE(nvgrace_test_segment),
	KUNIT_CASE(nvgrace_test_read_every_width),
	KUNIT_CASE(nvgrace_test_write_every_width),
	KUNIT_CASE(nvgrace_test_sizing),
	KUNIT_CASE(nvgrace_test_straddle),
	{}
};

static struct kunit_suite nvgrace_config_test_suite = {
	.name = "nvgrace_gpu_config",
	.test_cases = nvgrace_config_test_cases,
};

kunit_test_suites(&nvgrace_mem_test_suite, &nvgrace_config_test_suite);

MODULE_IMPORT_NS(EXPORTED_FOR_KUNIT_TESTING);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("KUnit tests for nvgrace-gpu-vfio-pci");
