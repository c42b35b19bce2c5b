// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit tests for the hardware-independent logic of nvgrace-gpu-vfio-pci:
 * the detection of the MIG hardware defect in config space (on a fake PCI
 * bus), the split of the GPU memory, the wait for the GPU memory to be
 * ready in BAR0 or in the CXL Device DVSEC (with a fake clock and fake
 * registers), the clipping of read() and
 * write() to the emulated BARs, and the emulated BAR registers in config
 * space.
 *
 * Expected values are written out as literals, worked out by hand from the
 * layout rules, rather than computed with the driver's own formulas.
 */

#include <kunit/test.h>
#include <linux/log2.h>
#include <linux/pci.h>
#include <linux/pci_regs.h>
#include <linux/sizes.h>

#include "../nvgrace.h"

/* ---- Splitting the GPU memory ---- */

/*
 * The causes of a refused split, as the probe failure prints them (the
 * deployment guide quotes those lines)
 */
#define C_ZERO	"GPU memory size is 0: the chip-to-chip link is down"
#define C_ALIGN	"GPU memory base is not page aligned"
#define C_WRAP	"GPU memory range overflows the address space"
#define C_512M	"GPU memory is smaller than 512 MiB"
#define C_1G5	"GPU memory is smaller than 1.5 GiB"
#define C_BAR	"GPU memory needs a BAR larger than a VFIO region (1 TiB)"

struct nvgrace_split_case {
	const char *name;
	u64 base;
	u64 size;
	int ret;
	u64 usemem_len;
	u64 usemem_bar;
	u64 resmem_len;
	u64 resmem_bar;
	const char *cause;
};

static const struct nvgrace_split_case nvgrace_split_cases[] = {
	{ "size 0: link down", 0x100000000, 0, -ENODEV,
	  .cause = C_ZERO },
	{ "size 0 wins over a bad base", 0x100000001, 0, -ENODEV,
	  .cause = C_ZERO },
	{ "512 MiB", 0x100000000, SZ_512M, -EINVAL,
	  .cause = C_1G5 },
	{ "exactly 1 GiB", 0x100000000, SZ_1G, -EINVAL,
	  .cause = C_1G5 },
	{ "1 GiB + 1 byte", 0x100000000, SZ_1G + 1, -EINVAL,
	  .cause = C_1G5 },
	{ "1.5 GiB - 1 byte", 0x100000000, 0x5fffffff, -EINVAL,
	  .cause = C_1G5 },
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
	{ "base not page aligned", 0x100000800, 0x80000000, -EINVAL,
	  .cause = C_ALIGN },
	{ "base one byte past a page", 0x100001001, 0x80000000, -EINVAL,
	  .cause = C_ALIGN },
	{ "usemem BAR of 1 TiB, a whole VFIO region", 0x10000000000,
	  0x10040000000, 0,
	  0x10000000000, 0x10000000000, 0x40000000, 0x40000000 },
	{ "usemem BAR past 1 TiB", 0x10000000000, 0x10040001000, -EOVERFLOW,
	  .cause = C_BAR },
	{ "2^63 exactly", 0, BIT_ULL(63), -EOVERFLOW,
	  .cause = C_BAR },
	{ "2^63 + 1", 0, BIT_ULL(63) + 1, -EOVERFLOW,
	  .cause = C_BAR },
	{ "size U64_MAX", 0, U64_MAX, -EOVERFLOW,
	  .cause = C_BAR },
	{ "base + size wraps", 0xffffffffc0000000, 0x80000000, -EOVERFLOW,
	  .cause = C_WRAP },
	{ "end exactly at 2^64", 0xffffffff80000000, 0x80000000, -EOVERFLOW,
	  .cause = C_WRAP },
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

	/* Every field must be written: start from garbage */
	memset(&layout, 0x5a, sizeof(layout));
	ret = nvgrace_mem_split(c->base, c->size, true, &layout, &cause);
	KUNIT_ASSERT_EQ(test, ret, c->ret);
	if (ret) {
		KUNIT_EXPECT_STREQ(test, cause, c->cause);
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
	KUNIT_EXPECT_NULL(test, layout.usemem.pat_map);
	KUNIT_EXPECT_EQ(test, layout.usemem.bar_reg, 0);
	KUNIT_EXPECT_NULL(test, layout.resmem.pat_map);
	KUNIT_EXPECT_EQ(test, layout.resmem.bar_reg, 0);
}

/* Without the MIG defect: no resmem, usemem is all of the memory */
struct nvgrace_split_whole_case {
	const char *name;
	u64 base;
	u64 size;
	int ret;
	u64 usemem_bar;
	const char *cause;
};

static const struct nvgrace_split_whole_case nvgrace_split_whole_cases[] = {
	{ "size 0: link down", 0x100000000, 0, -ENODEV,
	  .cause = C_ZERO },
	{ "512 MiB - 1 page", 0x100000000, 0x1ffff000, -EINVAL,
	  .cause = C_512M },
	{ "exactly 512 MiB", 0x100000000, SZ_512M, 0, SZ_512M },
	{ "exactly 1 GiB", 0x100000000, SZ_1G, 0, SZ_1G },
	{ "exactly 1.5 GiB: no carve-out", 0x100000000, 0x60000000, 0,
	  0x80000000 },
	{ "2.5 GiB - 1 MiB: no round-down", 0x100000000, 0x9ff00000, 0,
	  0x100000000 },
	{ "2 GiB + 1 byte", 0x100000000, 0x80000001, 0, 0x100000000 },
	{ "96 GiB", 0x400000000000, 0x1800000000, 0, 0x2000000000 },
	{ "186 GiB (GB200)", 0x400000000000, 0x2e80000000, 0, 0x4000000000 },
	{ "288 GiB (GB300)", 0x400000000000, 0x4800000000, 0, 0x8000000000 },
	{ "exactly 1 TiB: a whole VFIO region", 0x10000000000, 0x10000000000,
	  0, 0x10000000000 },
	{ "1 TiB + 1 page", 0x10000000000, 0x10000001000, -EOVERFLOW,
	  .cause = C_BAR },
	{ "2^63 exactly", 0, BIT_ULL(63), -EOVERFLOW,
	  .cause = C_BAR },
	{ "2^63 + 1", 0, BIT_ULL(63) + 1, -EOVERFLOW,
	  .cause = C_BAR },
	{ "base not page aligned", 0x100000800, 0x80000000, -EINVAL,
	  .cause = C_ALIGN },
	{ "base + size wraps", 0xffffffffc0000000, 0x80000000, -EOVERFLOW,
	  .cause = C_WRAP },
	{ "end just below 2^64", 0xffffffff00000000, 0x80000000, 0,
	  0x80000000 },
};

KUNIT_ARRAY_PARAM_DESC(nvgrace_split_whole, nvgrace_split_whole_cases, name);

static void nvgrace_test_split_whole(struct kunit *test)
{
	const struct nvgrace_split_whole_case *c = test->param_value;
	struct nvgrace_mem_layout layout;
	const char *cause = NULL;
	int ret;

	memset(&layout, 0x5a, sizeof(layout));
	ret = nvgrace_mem_split(c->base, c->size, false, &layout, &cause);
	KUNIT_ASSERT_EQ(test, ret, c->ret);
	if (ret) {
		KUNIT_EXPECT_STREQ(test, cause, c->cause);
		return;
	}

	KUNIT_EXPECT_EQ(test, layout.usemem.base, c->base);
	KUNIT_EXPECT_EQ(test, (u64)layout.usemem.length, c->size);
	KUNIT_EXPECT_EQ(test, layout.usemem.bar_size, c->usemem_bar);
	KUNIT_EXPECT_NULL(test, layout.usemem.pat_map);
	KUNIT_EXPECT_EQ(test, layout.usemem.bar_reg, 0);
	/* No resmem at all: BAR2 stays the device's own */
	KUNIT_EXPECT_EQ(test, layout.resmem.base, 0);
	KUNIT_EXPECT_EQ(test, layout.resmem.length, 0);
	KUNIT_EXPECT_EQ(test, layout.resmem.bar_size, 0);
	KUNIT_EXPECT_NULL(test, layout.resmem.pat_map);
}

/* ---- Detecting the MIG hardware defect, on a fake PCI bus ---- */

#define DVSEC_CXL_VENDOR	0x1e98
#define ECAP_VSEC		0x0b
#define ECAP_DVSEC		0x23
#define ECAP_AER		0x01

/* One extended capability; vendor, id and caps are for (D)VSECs only */
struct nvgrace_ecap {
	u16 cap;
	u16 vendor;
	u16 id;
	u16 caps;
};

struct nvgrace_dvsec_case {
	const char *name;
	bool extended;		/* extended config space (PCIe, ECAM) */
	struct nvgrace_ecap ecaps[4];	/* chained from 0x100, cap 0 ends */
	bool defect;
};

static const struct nvgrace_dvsec_case nvgrace_dvsec_cases[] = {
	{ "no extended config space, DVSEC bytes behind it", false,
	  { { ECAP_DVSEC, PCI_VENDOR_ID_NVIDIA, 3, 0x0001 } }, true },
	{ "no extended capability", true, { }, true },
	{ "AER only", true, { { ECAP_AER } }, true },
	{ "DVSEC of another vendor, ID 3, bit 0 set", true,
	  { { ECAP_DVSEC, DVSEC_CXL_VENDOR, 3, 0x0001 } }, true },
	{ "NVIDIA DVSEC with ID 2, bit 0 set", true,
	  { { ECAP_DVSEC, PCI_VENDOR_ID_NVIDIA, 2, 0x0001 } }, true },
	{ "NVIDIA VSEC (not DVSEC) with ID 3, bit 0 set", true,
	  { { ECAP_VSEC, PCI_VENDOR_ID_NVIDIA, 3, 0x0001 } }, true },
	{ "NVIDIA DVSEC ID 3, bit 0 clear", true,
	  { { ECAP_DVSEC, PCI_VENDOR_ID_NVIDIA, 3, 0x0000 } }, true },
	{ "NVIDIA DVSEC ID 3, every bit but bit 0", true,
	  { { ECAP_DVSEC, PCI_VENDOR_ID_NVIDIA, 3, 0xfffe } }, true },
	{ "NVIDIA DVSEC ID 3, bit 0 set", true,
	  { { ECAP_DVSEC, PCI_VENDOR_ID_NVIDIA, 3, 0x0001 } }, false },
	{ "several DVSECs, NVIDIA ID 3 last with bit 0 set", true,
	  { { ECAP_AER }, { ECAP_DVSEC, DVSEC_CXL_VENDOR, 3, 0x0000 },
	    { ECAP_DVSEC, PCI_VENDOR_ID_NVIDIA, 1, 0x0000 },
	    { ECAP_DVSEC, PCI_VENDOR_ID_NVIDIA, 3, 0x0003 } }, false },
	{ "several DVSECs, NVIDIA ID 3 last with bit 0 clear", true,
	  { { ECAP_DVSEC, DVSEC_CXL_VENDOR, 3, 0x0001 },
	    { ECAP_DVSEC, PCI_VENDOR_ID_NVIDIA, 2, 0x0001 },
	    { ECAP_AER },
	    { ECAP_DVSEC, PCI_VENDOR_ID_NVIDIA, 3, 0x0002 } }, true },
};

KUNIT_ARRAY_PARAM_DESC(nvgrace_dvsec, nvgrace_dvsec_cases, name);

/* The fake function's config space, and the accesses made to it */
struct nvgrace_fake_cfg {
	u8 bytes[PCI_CFG_SPACE_EXP_SIZE];
	unsigned int reads;
	unsigned int writes;
};

static int nvgrace_fake_cfg_read(struct pci_bus *bus, unsigned int devfn,
				 int where, int size, u32 *val)
{
	struct nvgrace_fake_cfg *cfg = bus->sysdata;
	u32 v = 0;
	int i;

	if (devfn || where < 0 || where + size > PCI_CFG_SPACE_EXP_SIZE)
		return PCIBIOS_BAD_REGISTER_NUMBER;
	for (i = size - 1; i >= 0; i--)
		v = v << 8 | cfg->bytes[where + i];
	*val = v;
	cfg->reads++;
	return PCIBIOS_SUCCESSFUL;
}

static int nvgrace_fake_cfg_write(struct pci_bus *bus, unsigned int devfn,
				  int where, int size, u32 val)
{
	struct nvgrace_fake_cfg *cfg = bus->sysdata;

	cfg->writes++;
	return PCIBIOS_SET_FAILED;
}

static struct pci_ops nvgrace_fake_cfg_ops = {
	.read = nvgrace_fake_cfg_read,
	.write = nvgrace_fake_cfg_write,
};

static void nvgrace_put16(u8 *p, u16 v)
{
	p[0] = v;
	p[1] = v >> 8;
}

static void nvgrace_put32(u8 *p, u32 v)
{
	nvgrace_put16(p, v);
	nvgrace_put16(p + 2, v >> 16);
}

/* Lay out @ecaps from 0x100, 0x40 bytes apart, each pointing to the next */
static void nvgrace_fake_ecaps(struct nvgrace_fake_cfg *cfg,
			       const struct nvgrace_ecap *ecaps, size_t n)
{
	unsigned int pos = PCI_CFG_SPACE_SIZE, next;
	size_t i;

	for (i = 0; i < n && ecaps[i].cap; i++, pos = next) {
		next = i + 1 < n && ecaps[i + 1].cap ? pos + 0x40 : 0;
		/* Header: ID, version 1, next pointer */
		nvgrace_put32(&cfg->bytes[pos], ecaps[i].cap | 1 << 16 |
						next << 20);
		/* Vendor, revision 0, length 0xc; then the (D)VSEC ID */
		nvgrace_put32(&cfg->bytes[pos + 4], ecaps[i].vendor | 0xc << 20);
		nvgrace_put16(&cfg->bytes[pos + 8], ecaps[i].id);
		nvgrace_put16(&cfg->bytes[pos + 0xa], ecaps[i].caps);
	}
}

static void nvgrace_test_dvsec(struct kunit *test)
{
	const struct nvgrace_dvsec_case *c = test->param_value;
	struct nvgrace_fake_cfg *cfg;
	struct pci_bus *bus;
	struct pci_dev *pdev;

	cfg = kunit_kzalloc(test, sizeof(*cfg), GFP_KERNEL);
	bus = kunit_kzalloc(test, sizeof(*bus), GFP_KERNEL);
	pdev = kunit_kzalloc(test, sizeof(*pdev), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, cfg);
	KUNIT_ASSERT_NOT_NULL(test, bus);
	KUNIT_ASSERT_NOT_NULL(test, pdev);

	nvgrace_fake_ecaps(cfg, c->ecaps, ARRAY_SIZE(c->ecaps));
	bus->ops = &nvgrace_fake_cfg_ops;
	bus->sysdata = cfg;
	pdev->bus = bus;
	pdev->cfg_size = c->extended ? PCI_CFG_SPACE_EXP_SIZE :
				       PCI_CFG_SPACE_SIZE;

	KUNIT_EXPECT_EQ(test, nvgrace_mem_mig_defect(pdev), c->defect);
	/* Without extended config space there is nothing to read */
	if (c->extended)
		KUNIT_EXPECT_GT(test, cfg->reads, 0);
	else
		KUNIT_EXPECT_EQ(test, cfg->reads, 0);
	KUNIT_EXPECT_EQ(test, cfg->writes, 0);
}

/* ---- Waiting for the GPU memory, with a fake clock and fake registers ---- */

#define NEVER	UINT_MAX
#define START	123456789	/* the fake clock does not start at 0 */

/*
 * The fake GPU's registers change at given sleeps of the poll: a value
 * "at" N is read from the N-th sleep on (0: from the first read).  Each
 * register read takes read_ms of the fake clock, each sleep its length.
 */
struct nvgrace_fake_gpu {
	const void *c;
	u64 now;
	unsigned int sleeps;
	unsigned int bad_sleeps;	/* not of NVGRACE_READY_POLL_MS */
	unsigned int bad_reads;		/* of another register */
	unsigned int read_ms;
	unsigned int killed_in;		/* the sleep a fatal signal cuts */
	unsigned int err_at;		/* from this sleep on, read fails */
	int err;			/* with this errno */
	u64 valid_seen;			/* CXL: clock at the first valid read */
	u32 (*value)(struct nvgrace_fake_gpu *gpu, unsigned int offset);
};

static int nvgrace_fake_read(void *ctx, unsigned int offset, u32 *val)
{
	struct nvgrace_fake_gpu *gpu = ctx;

	gpu->now += gpu->read_ms;
	if (gpu->err && gpu->sleeps >= gpu->err_at)
		return gpu->err;
	*val = gpu->value(gpu, offset);
	return 0;
}

static bool nvgrace_fake_sleep(void *ctx, unsigned int ms)
{
	struct nvgrace_fake_gpu *gpu = ctx;

	if (ms != NVGRACE_READY_POLL_MS)
		gpu->bad_sleeps++;
	gpu->sleeps++;
	gpu->now += ms;
	return gpu->sleeps != gpu->killed_in;
}

static u64 nvgrace_fake_now(void *ctx)
{
	struct nvgrace_fake_gpu *gpu = ctx;

	return gpu->now;
}

static const struct nvgrace_ready_ops nvgrace_fake_ready_ops = {
	.read = nvgrace_fake_read,
	.sleep = nvgrace_fake_sleep,
	.now_ms = nvgrace_fake_now,
};

/* The BAR0 registers */
struct nvgrace_ready_case {
	const char *name;
	unsigned int link_at;	/* when the register reads "after" */
	unsigned int hbm_at;
	u32 after;		/* what it reads from then on; 0 before */
	bool hbm_ones;		/* HBM training reads all-ones throughout */
	unsigned int read_ms;
	unsigned int killed_in;
	unsigned int err_at;
	int err;
	int ret;
	unsigned int waited;
	unsigned int sleeps;
};

/*
 * Each poll reads both registers, and "waited" ends with the last sleep
 * that was not cut short: 10 polls of two 50 ms reads and a 100 ms sleep
 * are 2000 ms.
 */
static const struct nvgrace_ready_case nvgrace_ready_cases[] = {
	{ "ready at once", 0, 0, 0xff, .ret = 0, .waited = 0, .sleeps = 0 },
	{ "link ready after 5 polls", 5, 0, 0xff, .waited = 500, .sleeps = 5 },
	{ "link after 3, HBM after 12 polls", 3, 12, 0xff, .waited = 1200,
	  .sleeps = 12 },
	{ "ready at the deadline", 300, 300, 0xff, .waited = 30000,
	  .sleeps = 300 },
	{ "ready one poll after the deadline", 301, 0, 0xff, .ret = -ETIME,
	  .sleeps = 300 },
	{ "never ready", NEVER, NEVER, 0xff, .ret = -ETIME, .sleeps = 300 },
	{ "link ready, HBM never", 0, NEVER, 0xff, .ret = -ETIME,
	  .sleeps = 300 },
	{ "0x1ff is not 0xff", 0, 0, 0x1ff, .ret = -ETIME, .sleeps = 300 },
	{ "gone: all-ones at once", 0, 0, 0xffffffff, .ret = -ENODEV,
	  .sleeps = 0 },
	{ "gone after 7 polls: link all-ones", 7, NEVER, 0xffffffff,
	  .ret = -ENODEV, .waited = 700, .sleeps = 7 },
	{ "gone: HBM all-ones, link ready", 0, 0, 0xff, .hbm_ones = true,
	  .ret = -ENODEV, .sleeps = 0 },
	{ "slow reads keep the bound", NEVER, NEVER, 0xff, .read_ms = 50,
	  .ret = -ETIME, .sleeps = 150 },
	{ "slow reads, ready after 10 polls", 10, 0, 0xff, .read_ms = 50,
	  .waited = 2000, .sleeps = 10 },
	{ "fatal signal in the 7th sleep", NEVER, NEVER, 0xff, .killed_in = 7,
	  .ret = -EINTR, .waited = 600, .sleeps = 7 },
	{ "BAR0 stops decoding at the 4th poll", NEVER, NEVER, 0xff,
	  .err_at = 4, .err = -EIO, .ret = -EIO, .waited = 400, .sleeps = 4 },
	{ "a reset starts at the 2nd poll", NEVER, NEVER, 0xff, .err_at = 2,
	  .err = -EAGAIN, .ret = -EAGAIN, .waited = 200, .sleeps = 2 },
};

KUNIT_ARRAY_PARAM_DESC(nvgrace_ready, nvgrace_ready_cases, name);

static u32 nvgrace_fake_bar0(struct nvgrace_fake_gpu *gpu, unsigned int offset)
{
	const struct nvgrace_ready_case *c = gpu->c;
	unsigned int at;

	if (offset == NVGRACE_READY_C2C_LINK) {
		at = c->link_at;
	} else if (offset == NVGRACE_READY_HBM_TRAINING) {
		if (c->hbm_ones)
			return 0xffffffff;
		at = c->hbm_at;
	} else {
		gpu->bad_reads++;
		return 0;
	}
	return gpu->sleeps >= at ? c->after : 0;
}

static void nvgrace_test_ready(struct kunit *test)
{
	const struct nvgrace_ready_case *c = test->param_value;
	struct nvgrace_fake_gpu gpu = {
		.c = c, .now = START, .value = nvgrace_fake_bar0,
		.read_ms = c->read_ms, .killed_in = c->killed_in,
		.err_at = c->err_at, .err = c->err,
	};
	struct nvgrace_ready_src src = { .cxl_dvsec = 0 };
	struct nvgrace_ready_report rep;

	KUNIT_EXPECT_EQ(test, nvgrace_mem_poll_ready(&nvgrace_fake_ready_ops,
						     &gpu, &src, &rep), c->ret);
	KUNIT_EXPECT_EQ(test, gpu.sleeps, c->sleeps);
	KUNIT_EXPECT_EQ(test, gpu.bad_sleeps, 0);
	KUNIT_EXPECT_EQ(test, gpu.bad_reads, 0);
	if (c->ret == -ETIME) {
		/* A timeout comes at the deadline, not before or much after */
		KUNIT_EXPECT_GE(test, gpu.now - START, 30000);
		KUNIT_EXPECT_LE(test, gpu.now - START, 30000 + 2 * c->read_ms);
		KUNIT_EXPECT_STREQ(test, rep.what, "C2C link and HBM training");
		KUNIT_EXPECT_EQ(test, rep.limit_ms, 30000);
		KUNIT_EXPECT_EQ(test, rep.val[0],
				gpu.sleeps >= c->link_at ? c->after : 0);
	} else {
		KUNIT_EXPECT_EQ(test, rep.waited_ms, c->waited);
	}
	if (!c->ret)
		KUNIT_EXPECT_NULL(test, rep.what);
}

/* The CXL Device DVSEC, at a made-up offset */
#define FAKE_DVSEC	0x300

struct nvgrace_cxl_case {
	const char *name;
	unsigned int valid_at;
	unsigned int active_at;
	unsigned int code;	/* Memory_Active_Timeout */
	unsigned int gone_at;	/* reads all-ones from then on */
	unsigned int read_ms;
	unsigned int killed_in;
	unsigned int err_at;
	int err;
	int ret;
	const char *what;	/* on -ETIME */
	unsigned int limit;	/* on -ETIME */
	unsigned int waited;
	unsigned int sleeps;
};

static const struct nvgrace_cxl_case nvgrace_cxl_cases[] = {
	{ "ready at once", 0, 0, 0, NEVER, .sleeps = 0 },
	{ "valid after 5 polls, active with it", 5, 5, 0, NEVER,
	  .waited = 500, .sleeps = 5 },
	{ "valid at its 1 s deadline", 10, 10, 0, NEVER, .waited = 1000,
	  .sleeps = 10 },
	{ "valid one poll late", 11, 11, 0, NEVER, .ret = -ETIME,
	  .what = "Memory_Info_Valid", .limit = 1000, .sleeps = 10 },
	{ "valid never, 256 s code", NEVER, 0, 4, NEVER, .ret = -ETIME,
	  .what = "Memory_Info_Valid", .limit = 1000, .sleeps = 10 },
	{ "active late: 3 s of 4 s", 0, 30, 1, NEVER, .waited = 3000,
	  .sleeps = 30 },
	{ "active at its 1 s deadline", 3, 13, 0, NEVER, .waited = 1300,
	  .sleeps = 13 },
	{ "active one poll after its 1 s deadline", 3, 14, 0, NEVER,
	  .ret = -ETIME, .what = "Memory_Active", .limit = 1000,
	  .sleeps = 13 },
	{ "256 s code, active after 2 s", 0, 20, 4, NEVER, .waited = 2000,
	  .sleeps = 20 },
	{ "code 0: never active, 1000 ms", 0, NEVER, 0, NEVER, .ret = -ETIME,
	  .what = "Memory_Active", .limit = 1000, .sleeps = 10 },
	{ "code 1: never active, 4000 ms", 0, NEVER, 1, NEVER, .ret = -ETIME,
	  .what = "Memory_Active", .limit = 4000, .sleeps = 40 },
	{ "code 2: never active, 16000 ms", 0, NEVER, 2, NEVER, .ret = -ETIME,
	  .what = "Memory_Active", .limit = 16000, .sleeps = 160 },
	{ "code 3: never active, 64000 ms", 0, NEVER, 3, NEVER, .ret = -ETIME,
	  .what = "Memory_Active", .limit = 64000, .sleeps = 640 },
	{ "code 4: never active, 256000 ms", 0, NEVER, 4, NEVER, .ret = -ETIME,
	  .what = "Memory_Active", .limit = 256000, .sleeps = 2560 },
	{ "code 5: never active, 256000 ms", 0, NEVER, 5, NEVER, .ret = -ETIME,
	  .what = "Memory_Active", .limit = 256000, .sleeps = 2560 },
	{ "code 6: never active, 256000 ms", 0, NEVER, 6, NEVER, .ret = -ETIME,
	  .what = "Memory_Active", .limit = 256000, .sleeps = 2560 },
	{ "code 7: never active, 256000 ms", 0, NEVER, 7, NEVER, .ret = -ETIME,
	  .what = "Memory_Active", .limit = 256000, .sleeps = 2560 },
	{ "slow reads keep the bound", 0, NEVER, 0, NEVER, .read_ms = 50,
	  .ret = -ETIME, .what = "Memory_Active", .limit = 1000,
	  .sleeps = 7 },
	{ "gone: all-ones at once", 0, 0, 0, 0, .ret = -ENODEV, .sleeps = 0 },
	{ "gone while waiting for active", 0, NEVER, 1, 25, .ret = -ENODEV,
	  .waited = 2500, .sleeps = 25 },
	{ "fatal signal while waiting for active", 0, NEVER, 1, NEVER,
	  .killed_in = 12, .ret = -EINTR, .waited = 1100, .sleeps = 12 },
	{ "a reset starts while waiting for valid", NEVER, NEVER, 0, NEVER,
	  .err_at = 3, .err = -EAGAIN, .ret = -EAGAIN, .waited = 300,
	  .sleeps = 3 },
};

KUNIT_ARRAY_PARAM_DESC(nvgrace_cxl, nvgrace_cxl_cases, name);

static u32 nvgrace_fake_cxl(struct nvgrace_fake_gpu *gpu, unsigned int offset)
{
	const struct nvgrace_cxl_case *c = gpu->c;
	u32 val = c->code << 13;

	if (offset != FAKE_DVSEC + NVGRACE_CXL_RANGE1_SIZE_LOW) {
		gpu->bad_reads++;
		return 0;
	}
	if (gpu->sleeps >= c->gone_at)
		return 0xffffffff;
	if (gpu->sleeps >= c->valid_at) {
		val |= NVGRACE_CXL_MEM_INFO_VALID;
		if (!gpu->valid_seen)
			gpu->valid_seen = gpu->now;
	}
	if (gpu->sleeps >= c->active_at)
		val |= NVGRACE_CXL_MEM_ACTIVE;
	/* The size bits (31:28) say nothing of readiness */
	return val | 0x30000000;
}

static void nvgrace_test_cxl(struct kunit *test)
{
	const struct nvgrace_cxl_case *c = test->param_value;
	struct nvgrace_fake_gpu gpu = {
		.c = c, .now = START, .value = nvgrace_fake_cxl,
		.read_ms = c->read_ms, .killed_in = c->killed_in,
		.err_at = c->err_at, .err = c->err,
	};
	struct nvgrace_ready_src src = { .cxl_dvsec = FAKE_DVSEC };
	struct nvgrace_ready_report rep;
	u64 from;

	KUNIT_EXPECT_EQ(test, nvgrace_mem_poll_ready(&nvgrace_fake_ready_ops,
						     &gpu, &src, &rep), c->ret);
	KUNIT_EXPECT_EQ(test, gpu.sleeps, c->sleeps);
	KUNIT_EXPECT_EQ(test, gpu.bad_sleeps, 0);
	KUNIT_EXPECT_EQ(test, gpu.bad_reads, 0);
	if (c->ret != -ETIME) {
		KUNIT_EXPECT_EQ(test, rep.waited_ms, c->waited);
		if (!c->ret)
			KUNIT_EXPECT_NULL(test, rep.what);
		return;
	}

	KUNIT_EXPECT_STREQ(test, rep.what, c->what);
	KUNIT_EXPECT_EQ(test, rep.limit_ms, c->limit);
	/* Memory_Active is timed from the read that found the size valid */
	from = strcmp(c->what, "Memory_Active") ? START : gpu.valid_seen;
	KUNIT_EXPECT_GE(test, gpu.now - from, c->limit);
	KUNIT_EXPECT_LE(test, gpu.now - from, c->limit + 2 * c->read_ms);
}

static void nvgrace_test_cxl_timeout_codes(struct kunit *test)
{
	static const unsigned int ms[8] = {
		1000, 4000, 16000, 64000, 256000, 256000, 256000, 256000
	};
	unsigned int code;

	for (code = 0; code < 8; code++) {
		/* The other bits of the register do not change it */
		KUNIT_EXPECT_EQ(test, nvgrace_mem_cxl_active_timeout_ms(code << 13),
				ms[code]);
		KUNIT_EXPECT_EQ(test,
				nvgrace_mem_cxl_active_timeout_ms(code << 13 |
								  0xffff1fff),
				ms[code]);
	}
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

/* Where an access is cut: emulated start, position, count -> piece */
static const struct {
	u64 emu_start;
	u64 pos;
	size_t count;
	size_t len;
	bool emulated;
} nvgrace_segments[] = {
	/* With resmem: BAR2 to BAR5 are emulated */
	{ 0x18, 0x00, 0x100, 0x18, false },
	{ 0x18, 0x14, 4, 4, false },
	{ 0x18, 0x17, 2, 1, false },
	{ 0x18, 0x18, 0x100, 0x10, true },
	{ 0x18, 0x1c, 8, 8, true },
	{ 0x18, 0x27, 1, 1, true },
	{ 0x18, 0x24, 8, 4, true },
	{ 0x18, 0x28, 8, 8, false },
	{ 0x18, 0xfff, 1, 1, false },
	/* Without resmem: BAR2 and BAR3 are the device's own */
	{ 0x20, 0x00, 0x100, 0x20, false },
	{ 0x20, 0x18, 8, 8, false },
	{ 0x20, 0x1c, 8, 4, false },
	{ 0x20, 0x1f, 1, 1, false },
	{ 0x20, 0x20, 0x100, 8, true },
	{ 0x20, 0x27, 2, 1, true },
	{ 0x20, 0x28, 4, 4, false },
};

static void nvgrace_test_segment(struct kunit *test)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(nvgrace_segments); i++) {
		bool emulated = !nvgrace_segments[i].emulated;

		KUNIT_EXPECT_EQ_MSG(test,
				    nvgrace_config_segment(nvgrace_segments[i].pos,
							   nvgrace_segments[i].count,
							   nvgrace_segments[i].emu_start,
							   &emulated),
				    nvgrace_segments[i].len, "case %u", i);
		KUNIT_EXPECT_EQ_MSG(test, emulated,
				    nvgrace_segments[i].emulated, "case %u", i);
	}
}

/*
 * Walk an access of @width bytes at @off the way the driver does, piece by
 * piece, from where the driver starts the emulation for @nvdev; check that
 * the pieces cover the access and are emulated exactly for the bytes
 * @emu_start..0x27.  Returns the number of emulated bytes.
 */
static size_t nvgrace_walk(struct kunit *test, struct nvgrace_gpu_device *nvdev,
			   u64 emu_start, u64 off, size_t width, u8 *buf,
			   bool iswrite)
{
	u64 start = nvgrace_config_emu_start(nvdev);
	size_t done = 0, emulated_bytes = 0;

	while (done < width) {
		bool emulated;
		size_t len = nvgrace_config_segment(off + done, width - done,
						    start, &emulated);
		size_t i;

		KUNIT_ASSERT_GE(test, len, 1);
		KUNIT_ASSERT_LE(test, len, width - done);
		for (i = 0; i < len; i++)
			KUNIT_EXPECT_EQ(test, emulated,
					off + done + i >= emu_start &&
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
			nvgrace_walk(test, nvdev, 0x18, off, width, buf, false);
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
			nvgrace_walk(test, nvdev, 0x18, off, width, buf, true);

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
			nvgrace_walk(test, nvdev, 0x18, 0x18, 16, window, false);
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

	nvgrace_walk(test, nvdev, 0x18, off, 8, buf, false);
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
	nvgrace_walk(test, nvdev, 0x18, 0x18, 8, ones, true);
	KUNIT_EXPECT_EQ(test, nvgrace_read_reg(test, nvdev, 0x18),
			0xffffffff8000000cULL);
	/* As two dword writes, the way firmware and guests size BARs */
	nvgrace_walk(test, nvdev, 0x18, 0x20, 4, ones, true);
	nvgrace_walk(test, nvdev, 0x18, 0x24, 4, ones, true);
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
	KUNIT_EXPECT_EQ(test, nvgrace_walk(test, nvdev, 0x18, 0x1c, 8, buf, true), 8);
	KUNIT_EXPECT_EQ(test, nvdev->mem.resmem.bar_reg, 0x4433221100000000ULL);
	KUNIT_EXPECT_EQ(test, nvdev->mem.usemem.bar_reg, 0x88776655ULL);

	/* 8 bytes at 0x14: BAR1 (not ours) and the low half of BAR2 */
	nvgrace_config_reset_bars(nvdev);
	KUNIT_EXPECT_EQ(test, nvgrace_walk(test, nvdev, 0x18, 0x14, 8, buf, true), 4);
	KUNIT_EXPECT_EQ(test, nvdev->mem.resmem.bar_reg, 0x88776655ULL);

	/* 8 bytes at 0x24: upper half of BAR4/5 and the CardBus pointer */
	nvgrace_config_reset_bars(nvdev);
	KUNIT_EXPECT_EQ(test, nvgrace_walk(test, nvdev, 0x18, 0x24, 8, buf, true), 4);
	KUNIT_EXPECT_EQ(test, nvdev->mem.usemem.bar_reg, 0x4433221100000000ULL);
}

/* Without resmem, only BAR4 and BAR5 are emulated; BAR2 is the device's */
static void nvgrace_test_no_resmem(struct kunit *test)
{
	struct nvgrace_gpu_device *nvdev = nvgrace_test_device(test);
	u8 buf[16], window[16];
	unsigned int w;
	size_t i;
	u64 off;

	nvdev->mem.resmem.length = 0;
	nvdev->mem.resmem.bar_size = 0;
	nvdev->mem.usemem.bar_reg = USE_RAW;

	for (w = 0; w < ARRAY_SIZE(nvgrace_widths); w++) {
		size_t width = nvgrace_widths[w];

		for (off = 0x10; off <= 0x28; off++) {
			memset(buf, 0x5a, sizeof(buf));
			nvgrace_walk(test, nvdev, 0x20, off, width, buf, false);
			for (i = 0; i < width; i++) {
				u64 pos = off + i;

				KUNIT_EXPECT_EQ_MSG(test, buf[i],
						    pos >= 0x20 && pos < 0x28 ?
						    nvgrace_expected_byte(pos, 0, USE_READ) :
						    0x5a,
						    "width %zu offset %#llx byte %zu",
						    width, off, i);
			}
		}
	}

	/* A write over BAR2..BAR5 reaches the BAR4 register only */
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = 0x10 + i;
	KUNIT_EXPECT_EQ(test, nvgrace_walk(test, nvdev, 0x20, 0x18, 16, buf,
					   true), 8);
	KUNIT_EXPECT_EQ(test, nvdev->mem.resmem.bar_reg, 0);
	KUNIT_EXPECT_EQ(test, nvdev->mem.usemem.bar_reg, 0x1f1e1d1c1b1a1918ULL);
	nvgrace_walk(test, nvdev, 0x20, 0x20, 8, window, false);
	KUNIT_EXPECT_EQ(test, window[0], 0x0c);
	KUNIT_EXPECT_EQ(test, window[7], 0x1f);
}

static struct kunit_case nvgrace_mem_test_cases[] = {
	KUNIT_CASE_PARAM(nvgrace_test_split, nvgrace_split_gen_params),
	KUNIT_CASE_PARAM(nvgrace_test_split_whole,
			 nvgrace_split_whole_gen_params),
	KUNIT_CASE_PARAM(nvgrace_test_dvsec, nvgrace_dvsec_gen_params),
	KUNIT_CASE_PARAM(nvgrace_test_ready, nvgrace_ready_gen_params),
	KUNIT_CASE_PARAM(nvgrace_test_cxl, nvgrace_cxl_gen_params),
	KUNIT_CASE(nvgrace_test_cxl_timeout_codes),
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
	KUNIT_CASE(nvgrace_test_no_resmem),
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
