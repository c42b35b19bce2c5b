// SPDX-License-Identifier: GPL-2.0-only
/*
 * GPU memory of the NVIDIA Grace Hopper and Grace Blackwell Superchips: where
 * it is, how it is cut into the emulated BARs, when it may be touched, and
 * how user space reads, writes and maps it.
 *
 * The GPU memory is a range of host physical addresses reached over the
 * cache-coherent chip-to-chip link.  It has no struct pages and no MMIO
 * semantics: read() and write() go through a few kernel mappings of blocks
 * of it, made with memremap() on demand, and user mappings are PFN maps
 * filled in by the fault handlers below.
 */

#include <kunit/visibility.h>
#include <linux/bitfield.h>
#include <linux/file.h>
#include <linux/io.h>
#include <linux/ktime.h>
#include <linux/log2.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/pagemap.h>
#include <linux/pci.h>
#include <linux/pfn_t.h>
#include <linux/pm_runtime.h>
#include <linux/property.h>
#include <linux/sched/signal.h>
#include <linux/uaccess.h>

#include "nvgrace.h"

#define NVGRACE_PROP_BASE	"nvidia,gpu-mem-base-pa"
#define NVGRACE_PROP_SIZE	"nvidia,gpu-mem-size"

/*
 * read() and write() copy at most this much at a time with memory_lock
 * held, so that a reset or a low-power entry waits for one chunk only.
 * Chunks are aligned to their size, which divides NVGRACE_KMAP_SIZE: a
 * chunk never crosses the end of a block mapping.
 */
#define NVGRACE_RW_CHUNK	SZ_1M

/* How often a wait for the GPU memory looks whether a reset has ended */
#define NVGRACE_RESET_POLL_MS	10

/* What reads of the padding between the region end and the BAR end return */
static const u8 nvgrace_mem_ones[256] = { [0 ... 255] = 0xff };

/* Mask of the page offset within a region, in vm_pgoff */
#define NVGRACE_PGOFF_MASK	(VFIO_PCI_OFFSET_MASK >> PAGE_SHIFT)

static_assert(NVGRACE_KMAP_SIZE % NVGRACE_RW_CHUNK == 0);

/* Physical addresses and sizes are handled as u64 (Kconfig: 64BIT) */
static_assert(sizeof(phys_addr_t) == sizeof(u64));
static_assert(sizeof(size_t) == sizeof(u64));

/**
 * nvgrace_mem_mig_defect() - tell whether the GPU needs resmem
 * @pdev: the GPU
 *
 * A GPU whose MIG feature works with cacheable GPU memory says so in an
 * NVIDIA DVSEC of its extended config space.  Any other GPU, or one whose
 * DVSEC cannot be read, has the MIG hardware defect.
 *
 * Return: true when the defect is present and resmem must be carved out.
 */
VISIBLE_IF_KUNIT bool nvgrace_mem_mig_defect(struct pci_dev *pdev)
{
	u16 pos, caps;

	pos = pci_find_dvsec_capability(pdev, PCI_VENDOR_ID_NVIDIA,
					NVGRACE_DVSEC_GPU_CAPS);
	if (!pos)
		return true;
	if (pci_read_config_word(pdev, pos + NVGRACE_DVSEC_GPU_CAPS_REG, &caps))
		return true;
	return !(caps & NVGRACE_GPU_CAPS_MIG_CACHED);
}
EXPORT_SYMBOL_IF_KUNIT(nvgrace_mem_mig_defect);

/**
 * nvgrace_mem_split() - cut the GPU memory into usemem and resmem
 * @base: host physical address of the GPU memory, from firmware
 * @size: length of the GPU memory in bytes, from firmware
 * @resmem: true when the GPU has the MIG hardware defect and needs resmem
 * @layout: filled with the regions on success
 * @cause: set to a description of the problem on failure
 *
 * With @resmem, usemem is the part made of whole memory blocks and resmem
 * is the rest, at least NVGRACE_RESMEM_MIN_SIZE, at the end.  Without it,
 * usemem is all of the memory, to the byte, and resmem is empty.  The BAR
 * sizes are the powers of two reported to user space: for usemem the size
 * is taken before the round-down to memory blocks, as the guest driver
 * expects.
 *
 * Return: 0 on success; -ENODEV when @size is 0 (the chip-to-chip link is
 * down); -EINVAL when @base is not page aligned or @size is too small to
 * leave a memory block of usemem; -EOVERFLOW when the range does not fit
 * the address space or the usemem BAR would exceed NVGRACE_BAR_MAX.
 */
VISIBLE_IF_KUNIT int nvgrace_mem_split(u64 base, u64 size, bool resmem,
				       struct nvgrace_mem_layout *layout,
				       const char **cause)
{
	u64 end, usemem_len;

	if (!size) {
		*cause = "GPU memory size is 0: the chip-to-chip link is down";
		return -ENODEV;
	}
	if (!PAGE_ALIGNED(base)) {
		*cause = "GPU memory base is not page aligned";
		return -EINVAL;
	}
	if (check_add_overflow(base, size, &end)) {
		*cause = "GPU memory range overflows the address space";
		return -EOVERFLOW;
	}
	if (!resmem && size < NVGRACE_MEMBLK_SIZE) {
		*cause = "GPU memory is smaller than 512 MiB";
		return -EINVAL;
	}
	/* Less than this leaves no whole memory block before resmem */
	if (resmem && size < NVGRACE_RESMEM_MIN_SIZE + NVGRACE_MEMBLK_SIZE) {
		*cause = "GPU memory is smaller than 1.5 GiB";
		return -EINVAL;
	}
	/* The usemem BAR, a power of two, must fit in its VFIO region */
	if ((resmem ? size - NVGRACE_RESMEM_MIN_SIZE : size) > NVGRACE_BAR_MAX) {
		*cause = "GPU memory needs a BAR larger than a VFIO region (1 TiB)";
		return -EOVERFLOW;
	}

	memset(layout, 0, sizeof(*layout));
	layout->usemem.base = base;
	if (!resmem) {
		layout->usemem.length = size;
		layout->usemem.bar_size = roundup_pow_of_two(size);
		return 0;
	}

	usemem_len = round_down(size - NVGRACE_RESMEM_MIN_SIZE,
				NVGRACE_MEMBLK_SIZE);
	layout->usemem.length = usemem_len;
	layout->usemem.bar_size = roundup_pow_of_two(size -
						     NVGRACE_RESMEM_MIN_SIZE);
	layout->resmem.base = base + usemem_len;
	layout->resmem.length = size - usemem_len;
	layout->resmem.bar_size = roundup_pow_of_two(layout->resmem.length);
	return 0;
}
EXPORT_SYMBOL_IF_KUNIT(nvgrace_mem_split);

/**
 * nvgrace_mem_probe() - find the GPU memory that firmware describes
 * @pdev: the GPU
 * @layout: filled with the regions; all zero when firmware describes no
 *	GPU memory
 *
 * Return: 0 when both properties give a usable range or neither is there,
 * a negative errno (logged) otherwise.
 */
int nvgrace_mem_probe(struct pci_dev *pdev, struct nvgrace_mem_layout *layout)
{
	struct device *dev = &pdev->dev;
	bool has_base = device_property_present(dev, NVGRACE_PROP_BASE);
	bool has_size = device_property_present(dev, NVGRACE_PROP_SIZE);
	const char *cause;
	u64 base, size;
	int ret;

	memset(layout, 0, sizeof(*layout));
	if (!has_base && !has_size)
		return 0;

	if (!has_base || !has_size) {
		dev_err(dev, "firmware gives %s but not %s: %pe\n",
			has_base ? NVGRACE_PROP_BASE : NVGRACE_PROP_SIZE,
			has_base ? NVGRACE_PROP_SIZE : NVGRACE_PROP_BASE,
			ERR_PTR(-EINVAL));
		return -EINVAL;
	}

	ret = device_property_read_u64(dev, NVGRACE_PROP_BASE, &base);
	if (!ret)
		ret = device_property_read_u64(dev, NVGRACE_PROP_SIZE, &size);
	if (ret) {
		dev_err(dev, "cannot read the GPU memory properties: %pe\n",
			ERR_PTR(ret));
		return ret;
	}

	ret = nvgrace_mem_split(base, size, nvgrace_mem_mig_defect(pdev), layout,
				&cause);
	if (ret) {
		dev_err(dev, "%s (base %#llx, size %#llx): %pe\n", cause, base,
			size, ERR_PTR(ret));
		return ret;
	}
	return 0;
}

/**
 * nvgrace_mem_find_ready_src() - find where the GPU reports its memory usable
 * @pdev: the GPU
 * @src: filled with the answer
 *
 * A GPU with a CXL Device DVSEC reports it there, any other in BAR0.  The
 * choice is made once, at probe time.
 */
void nvgrace_mem_find_ready_src(struct pci_dev *pdev,
				struct nvgrace_ready_src *src)
{
	src->cxl_dvsec = pci_find_dvsec_capability(pdev, PCI_VENDOR_ID_CXL,
						   NVGRACE_CXL_DVSEC_DEVICE);
	if (src->cxl_dvsec)
		pci_dbg(pdev, "GPU memory readiness: CXL Device DVSEC at %#x\n",
			src->cxl_dvsec);
	else
		pci_dbg(pdev, "GPU memory readiness: BAR0 registers\n");
}

/**
 * nvgrace_mem_cxl_active_timeout_ms() - decode Memory_Active_Timeout
 * @range1_size_low: the DVSEC Range 1 Size Low register
 *
 * Return: how long the GPU may take to make its memory active once its
 * size is valid, in milliseconds: 1, 4, 16, 64 or 256 seconds; the
 * reserved encodings are taken as the longest.
 */
VISIBLE_IF_KUNIT unsigned int nvgrace_mem_cxl_active_timeout_ms(u32 range1_size_low)
{
	static const unsigned int secs[] = { 1, 4, 16, 64, 256 };
	unsigned int code = FIELD_GET(NVGRACE_CXL_MEM_ACTIVE_TIMEOUT,
				      range1_size_low);

	return secs[min_t(unsigned int, code, ARRAY_SIZE(secs) - 1)] *
	       MSEC_PER_SEC;
}
EXPORT_SYMBOL_IF_KUNIT(nvgrace_mem_cxl_active_timeout_ms);

/*
 * One readiness register.  All-ones is what a function that is gone
 * answers (and what a failed config read returns): no register of either
 * source reads so when it is alive.
 */
static int nvgrace_ready_read(const struct nvgrace_ready_ops *ops, void *ctx,
			      unsigned int offset, u32 *val)
{
	int ret = ops->read(ctx, offset, val);

	if (!ret && *val == U32_MAX)
		ret = -ENODEV;
	return ret;
}

/*
 * A test of readiness: 1 when the condition holds, 0 when not yet, or a
 * negative errno; @val gets the registers read.
 */
typedef int (*nvgrace_ready_test_t)(const struct nvgrace_ready_ops *ops,
				    void *ctx, u16 pos, u32 *val);

static int nvgrace_ready_bar0(const struct nvgrace_ready_ops *ops, void *ctx,
			      u16 pos, u32 *val)
{
	int ret;

	ret = nvgrace_ready_read(ops, ctx, NVGRACE_READY_C2C_LINK, &val[0]);
	if (!ret)
		ret = nvgrace_ready_read(ops, ctx, NVGRACE_READY_HBM_TRAINING,
					 &val[1]);
	if (ret)
		return ret;
	return val[0] == NVGRACE_READY_VALUE && val[1] == NVGRACE_READY_VALUE;
}

static int nvgrace_ready_cxl_valid(const struct nvgrace_ready_ops *ops,
				   void *ctx, u16 pos, u32 *val)
{
	int ret = nvgrace_ready_read(ops, ctx, pos + NVGRACE_CXL_RANGE1_SIZE_LOW,
				     val);

	return ret ?: !!(*val & NVGRACE_CXL_MEM_INFO_VALID);
}

static int nvgrace_ready_cxl_active(const struct nvgrace_ready_ops *ops,
				    void *ctx, u16 pos, u32 *val)
{
	const u32 both = NVGRACE_CXL_MEM_INFO_VALID | NVGRACE_CXL_MEM_ACTIVE;
	int ret = nvgrace_ready_read(ops, ctx, pos + NVGRACE_CXL_RANGE1_SIZE_LOW,
				     val);

	return ret ?: (*val & both) == both;
}

/* One read of whether the GPU memory is ready, as the last stage tells */
static int nvgrace_ready_now(const struct nvgrace_ready_ops *ops, void *ctx,
			     const struct nvgrace_ready_src *src, u32 *val)
{
	if (!src->cxl_dvsec)
		return nvgrace_ready_bar0(ops, ctx, 0, val);
	return nvgrace_ready_cxl_active(ops, ctx, src->cxl_dvsec, val);
}

/*
 * Run @test at once, then every NVGRACE_READY_POLL_MS until it holds or
 * @limit_ms have passed; the last test is at or after the deadline.
 */
static int nvgrace_ready_stage(const struct nvgrace_ready_ops *ops, void *ctx,
			       nvgrace_ready_test_t test, u16 pos,
			       unsigned int limit_ms, u32 *val, u64 *slept)
{
	u64 start = ops->now_ms(ctx), waited = 0;
	int ret;

	for (;;) {
		ret = test(ops, ctx, pos, val);
		if (ret)
			return ret < 0 ? ret : 0;
		if (waited >= limit_ms)
			return -ETIME;
		if (!ops->sleep(ctx, NVGRACE_READY_POLL_MS))
			return -EINTR;
		*slept = ops->now_ms(ctx);
		waited = *slept - start;
	}
}

/**
 * nvgrace_mem_poll_ready() - wait until the GPU reports its memory usable
 * @ops: how to read the registers, sleep and tell the time
 * @ctx: passed to @ops
 * @src: which registers tell
 * @rep: filled with how the wait ended
 *
 * With the BAR0 registers: both must read NVGRACE_READY_VALUE within
 * NVGRACE_READY_TIMEOUT_MS.  With the CXL Device DVSEC: Memory_Info_Valid
 * must be set within NVGRACE_CXL_VALID_TIMEOUT_MS, then Memory_Active
 * within the Memory_Active_Timeout of the register value that had
 * Memory_Info_Valid.  The registers are read at once, then every
 * NVGRACE_READY_POLL_MS.
 *
 * Return: 0 when the GPU memory is ready; -ETIME when a condition did not
 * hold in time (@rep tells which), -ENODEV when a register reads
 * all-ones, -EINTR when a fatal signal cut a sleep short, or the errno of
 * @ops->read.
 */
VISIBLE_IF_KUNIT int nvgrace_mem_poll_ready(const struct nvgrace_ready_ops *ops,
					    void *ctx,
					    const struct nvgrace_ready_src *src,
					    struct nvgrace_ready_report *rep)
{
	u64 start = ops->now_ms(ctx), slept = start;
	u16 pos = src->cxl_dvsec;
	int ret;

	memset(rep, 0, sizeof(*rep));
	if (!pos) {
		rep->what = "C2C link and HBM training";
		rep->limit_ms = NVGRACE_READY_TIMEOUT_MS;
		ret = nvgrace_ready_stage(ops, ctx, nvgrace_ready_bar0, 0,
					  rep->limit_ms, rep->val, &slept);
	} else {
		rep->what = "Memory_Info_Valid";
		rep->limit_ms = NVGRACE_CXL_VALID_TIMEOUT_MS;
		ret = nvgrace_ready_stage(ops, ctx, nvgrace_ready_cxl_valid,
					  pos, rep->limit_ms, rep->val, &slept);
		if (!ret) {
			rep->what = "Memory_Active";
			rep->limit_ms =
				nvgrace_mem_cxl_active_timeout_ms(rep->val[0]);
			ret = nvgrace_ready_stage(ops, ctx,
						  nvgrace_ready_cxl_active, pos,
						  rep->limit_ms, rep->val,
						  &slept);
		}
	}
	rep->waited_ms = slept - start;
	if (!ret)
		rep->what = NULL;
	return ret;
}
EXPORT_SYMBOL_IF_KUNIT(nvgrace_mem_poll_ready);

/**
 * struct nvgrace_ready_io - what the readiness poll of one GPU reads
 * @pdev: the GPU
 * @bar0: where its BAR0 is mapped, for the BAR0 registers; NULL when the
 *	CXL DVSEC tells, in config space
 * @nvdev: after a reset, the device, whose state each read checks; NULL
 *	at probe time
 * @seq: the &nvgrace_gpu_device.reset_seq that the poll is for
 * @locked: the caller holds memory_lock, for the whole poll
 */
struct nvgrace_ready_io {
	struct pci_dev *pdev;
	void __iomem *bar0;
	struct nvgrace_gpu_device *nvdev;
	int seq;
	bool locked;
};

/*
 * Whether BAR0 answers, by vfio-pci-core's rule for the real BARs: memory
 * decode on, as user space last set it, and the function in a power state
 * shallower than D3hot.  A read otherwise gets an Unsupported Request,
 * which some platforms treat as fatal.  The emulated BARs themselves
 * ignore both.
 */
static bool nvgrace_mem_bar0_decodes(struct vfio_pci_core_device *core)
{
	u16 cmd = le16_to_cpu(*(__le16 *)&core->vconfig[PCI_COMMAND]);

	/* pci_power_t is __bitwise; its states are ordered all the same */
	if ((__force int)core->pdev->current_state >= (__force int)PCI_D3hot)
		return false;
	return core->pdev->no_command_memory || (cmd & PCI_COMMAND_MEMORY);
}

/*
 * Whether a reset started since the poll's: the registers would tell of
 * another reset than the poll's, or be read in the middle of one
 */
static bool nvgrace_ready_io_stale(struct nvgrace_ready_io *io)
{
	return atomic_read(&io->nvdev->reset_seq) != io->seq ||
	       atomic_read(&io->nvdev->resetting);
}

/* With memory_lock held after a reset, or at probe time */
static int nvgrace_ready_io_read_locked(struct nvgrace_ready_io *io,
					unsigned int offset, u32 *val)
{
	if (pci_dev_is_disconnected(io->pdev))
		return -ENODEV;
	if (io->nvdev) {
		if (nvgrace_ready_io_stale(io))
			return -EAGAIN;
		if (io->bar0 && !nvgrace_mem_bar0_decodes(&io->nvdev->core))
			return -EIO;
	}
	if (io->bar0)
		*val = ioread32(io->bar0 + offset);
	else
		pci_read_config_dword(io->pdev, offset, val); /* ~0 on error */
	/*
	 * memory_lock does not hold off a reset through sysfs or an AER
	 * recovery: what a reset that started meanwhile made the device
	 * answer (all-ones, say) is not the GPU's word
	 */
	rmb();
	if (io->nvdev && nvgrace_ready_io_stale(io))
		return -EAGAIN;
	return 0;
}

/*
 * After a reset a read takes memory_lock, for a moment only, so that user
 * space cannot turn memory decode off or start a reset through
 * vfio-pci-core meanwhile; the caller does not hold it while the poll
 * sleeps.
 */
static int nvgrace_ready_io_read(void *ctx, unsigned int offset, u32 *val)
{
	struct nvgrace_ready_io *io = ctx;
	struct rw_semaphore *lock = NULL;
	int ret;

	if (io->nvdev && !io->locked)
		lock = &io->nvdev->core.memory_lock;
	if (lock)
		down_read(lock);
	ret = nvgrace_ready_io_read_locked(io, offset, val);
	if (lock)
		up_read(lock);
	return ret;
}

/* Only a fatal signal ends the sleep, and the poll with it */
static bool nvgrace_ready_io_sleep(void *ctx, unsigned int ms)
{
	schedule_timeout_killable(msecs_to_jiffies(ms));
	return !fatal_signal_pending(current);
}

static u64 nvgrace_ready_io_now_ms(void *ctx)
{
	return ktime_to_ms(ktime_get());
}

static const struct nvgrace_ready_ops nvgrace_ready_io_ops = {
	.read	= nvgrace_ready_io_read,
	.sleep	= nvgrace_ready_io_sleep,
	.now_ms	= nvgrace_ready_io_now_ms,
};

/*
 * Set @io up for reads after a reset: BAR0, for the BAR0 registers, is
 * mapped from open to close (nvgrace_gpu_enable_mem())
 */
static void nvgrace_ready_io_init(struct nvgrace_ready_io *io,
				  struct nvgrace_gpu_device *nvdev, bool locked)
{
	*io = (struct nvgrace_ready_io) {
		.pdev = nvdev->core.pdev,
		.nvdev = nvdev,
		.locked = locked,
	};
	if (!nvdev->ready_src.cxl_dvsec)
		io->bar0 = nvdev->core.barmap[0];
}

/* Log how a poll ended: once when it waited, once when it failed */
static void nvgrace_mem_log_ready(struct pci_dev *pdev,
				  const struct nvgrace_ready_src *src, int ret,
				  const struct nvgrace_ready_report *rep)
{
	if (ret == -ETIME && !src->cxl_dvsec)
		pci_err(pdev,
			"GPU memory not ready after %u ms (C2C link %#x, HBM training %#x): %pe\n",
			rep->limit_ms, rep->val[0], rep->val[1], ERR_PTR(ret));
	else if (ret == -ETIME)
		pci_err(pdev,
			"GPU memory not ready: %s not set after %u ms (CXL DVSEC Range 1 Size Low %#x): %pe\n",
			rep->what, rep->limit_ms, rep->val[0], ERR_PTR(ret));
	else if (ret == -ENODEV)
		pci_err(pdev, "GPU memory not ready: the GPU is gone (%s reads all-ones): %pe\n",
			src->cxl_dvsec ? "CXL DVSEC" : "BAR0", ERR_PTR(ret));
	else if (!ret && rep->waited_ms)
		pci_info(pdev, "GPU memory ready after %u ms\n",
			 rep->waited_ms);
}

/*
 * Map BAR0 for the poll at probe time: the device is not enabled yet.
 * Return: the mapping, or an ERR_PTR; nothing to map for the CXL DVSEC.
 */
static void __iomem *nvgrace_mem_probe_map_bar0(struct pci_dev *pdev)
{
	const unsigned long len = NVGRACE_READY_HBM_TRAINING + sizeof(u32);
	void __iomem *bar0;
	int ret;

	if (!(pci_resource_flags(pdev, 0) & IORESOURCE_MEM) ||
	    pci_resource_len(pdev, 0) < len) {
		pci_err(pdev, "BAR0 has no room for the readiness registers: %pe\n",
			ERR_PTR(-ENODEV));
		return IOMEM_ERR_PTR(-ENODEV);
	}

	ret = pci_enable_device_mem(pdev);
	if (ret)
		return IOMEM_ERR_PTR(ret);
	ret = pci_request_region(pdev, 0, KBUILD_MODNAME);
	if (ret)
		goto out_disable;
	bar0 = pci_iomap(pdev, 0, len);
	if (bar0)
		return bar0;
	ret = -ENOMEM;
	pci_release_region(pdev, 0);
out_disable:
	pci_disable_device(pdev);
	return IOMEM_ERR_PTR(ret);
}

static void nvgrace_mem_probe_unmap_bar0(struct pci_dev *pdev,
					 void __iomem *bar0)
{
	pci_iounmap(pdev, bar0);
	pci_release_region(pdev, 0);
	pci_disable_device(pdev);
}

/**
 * nvgrace_mem_wait_probe() - wait at probe time until the GPU memory is usable
 * @pdev: the GPU, not yet enabled
 * @src: where it reports its memory usable
 *
 * The chip-to-chip link and the HBM may still be coming up after boot.
 * For the BAR0 registers the device is enabled and BAR0 mapped for the
 * poll only.
 *
 * Return: 0 when the GPU memory is ready; -ETIME when it is not in time;
 * -ENODEV when the GPU reads all-ones or BAR0 cannot hold the readiness
 * registers; -EINTR when the task got a fatal signal meanwhile; -ENOMEM
 * or the errno of enabling the device or claiming BAR0.
 */
int nvgrace_mem_wait_probe(struct pci_dev *pdev,
			   const struct nvgrace_ready_src *src)
{
	struct nvgrace_ready_io io = { .pdev = pdev };
	struct nvgrace_ready_report rep;
	int ret;

	if (!src->cxl_dvsec) {
		io.bar0 = nvgrace_mem_probe_map_bar0(pdev);
		if (IS_ERR(io.bar0))
			return PTR_ERR(io.bar0);
	}

	ret = nvgrace_mem_poll_ready(&nvgrace_ready_io_ops, &io, src, &rep);
	nvgrace_mem_log_ready(pdev, src, ret, &rep);

	if (io.bar0)
		nvgrace_mem_probe_unmap_bar0(pdev, io.bar0);
	return ret;
}

/**
 * nvgrace_mem_reset_start() - note that a reset of the GPU begins
 * @nvdev: a device with GPU memory
 *
 * From here on no read(), write() or fault touches the GPU memory until
 * the reset has ended and the GPU reports the memory usable again.  The
 * kernel mappings of it are removed, once the copies that use them are
 * done.
 */
void nvgrace_mem_reset_start(struct nvgrace_gpu_device *nvdev)
{
	atomic_inc(&nvdev->resetting);
	smp_mb__after_atomic();	/* before reset_seq: see wait_reset_end() */
	atomic_inc(&nvdev->reset_seq);
	nvgrace_mem_kunmap_all(nvdev);
}

/**
 * nvgrace_mem_reset_end() - note that a reset of the GPU has ended
 * @nvdev: a device with GPU memory
 *
 * The next fault, read() or write() of the GPU memory waits until the GPU
 * reports it usable.  The reset path may hold memory_lock for writing, so
 * the wait is left to them.
 */
void nvgrace_mem_reset_end(struct nvgrace_gpu_device *nvdev)
{
	atomic_inc(&nvdev->reset_seq);
	smp_mb__after_atomic();	/* a poll that sees the end sees the count */
	atomic_dec(&nvdev->resetting);
}

/* Whether the GPU memory was found ready since the last reset */
static bool nvgrace_mem_ready(struct nvgrace_gpu_device *nvdev)
{
	return READ_ONCE(nvdev->ready_seq) == atomic_read(&nvdev->reset_seq);
}

/*
 * Whether a reset is under way; *@seq gets the reset_seq that a poll
 * starting now is for.  reset_seq is read before resetting: a reset that
 * starts after the read of resetting changes reset_seq, which every
 * register read then looks at.
 */
static bool nvgrace_mem_resetting(struct nvgrace_gpu_device *nvdev, int *seq)
{
	*seq = atomic_read(&nvdev->reset_seq);
	smp_rmb();	/* pairs with nvgrace_mem_reset_start() */
	return atomic_read(&nvdev->resetting);
}

/* Sleep while a reset is under way; then *@seq is the poll's reset_seq */
static int nvgrace_mem_wait_reset_end(struct nvgrace_gpu_device *nvdev,
				      int *seq)
{
	for (;;) {
		if (!nvgrace_mem_resetting(nvdev, seq))
			return 0;
		/* An AER recovery that failed ends no reset */
		if (pci_dev_is_disconnected(nvdev->core.pdev))
			return -ENODEV;
		if (!nvgrace_ready_io_sleep(NULL, NVGRACE_RESET_POLL_MS))
			return -EINTR;
	}
}

/*
 * Poll, with ready_lock held, until the GPU memory is ready after the
 * resets so far.  A reset that starts meanwhile makes the poll start
 * again, once it has ended.  The device is kept out of runtime suspend
 * for the poll.
 */
static int nvgrace_mem_poll_after_reset(struct nvgrace_gpu_device *nvdev)
{
	struct pci_dev *pdev = nvdev->core.pdev;
	struct nvgrace_ready_report rep = {};
	struct nvgrace_ready_io io;
	int pm, ret;

	lockdep_assert_held(&nvdev->ready_lock);
	nvgrace_ready_io_init(&io, nvdev, false);

	/* -EINVAL: runtime PM is off, and the device stays as it is */
	pm = pm_runtime_get_if_active(&pdev->dev);
	if (!pm)
		return -EIO;
	do {
		ret = nvgrace_mem_wait_reset_end(nvdev, &io.seq);
		if (!ret)
			ret = nvgrace_mem_poll_ready(&nvgrace_ready_io_ops, &io,
						     &nvdev->ready_src, &rep);
	} while (ret == -EAGAIN);
	if (pm > 0)
		pm_runtime_put(&pdev->dev);

	/* A fatal signal ends this task's wait, not the others' */
	if (ret == -EINTR)
		return ret;
	nvgrace_mem_log_ready(pdev, &nvdev->ready_src, ret, &rep);
	WRITE_ONCE(nvdev->last_poll, ret);
	WRITE_ONCE(nvdev->polls, nvdev->polls + 1);
	if (ret)
		WRITE_ONCE(nvdev->fail_seq, io.seq);
	else
		WRITE_ONCE(nvdev->ready_seq, io.seq);
	return ret;
}

/*
 * Wait, with none of the caller's locks held, until the GPU memory is
 * ready after the last reset.  One caller polls and the others wait for it
 * on ready_lock.  A failed poll fails the callers that waited for it
 * at once; the next caller polls anew.
 *
 * Return: 0, or the errno of the poll (see nvgrace_mem_poll_after_reset()).
 */
static int nvgrace_mem_wait_ready(struct nvgrace_gpu_device *nvdev)
{
	unsigned int polls;
	int ret;

	if (nvgrace_mem_ready(nvdev))
		return 0;

	polls = READ_ONCE(nvdev->polls);
	if (mutex_lock_killable(&nvdev->ready_lock))
		return -EINTR;
	if (nvgrace_mem_ready(nvdev))
		ret = 0;
	else if (nvdev->polls != polls && nvdev->last_poll)
		ret = nvdev->last_poll;
	else
		ret = nvgrace_mem_poll_after_reset(nvdev);
	mutex_unlock(&nvdev->ready_lock);
	return ret;
}

/*
 * With memory_lock held, where sleeping is not allowed for long: whether
 * the GPU memory may be touched now.  When a reset ended since the memory
 * was last found ready, the registers are read once, unless another task
 * is polling them.
 *
 * Return: 0 when ready; -EAGAIN when not, or not known yet; -ENODEV when
 * the GPU is gone, -EIO when BAR0 does not decode.
 */
static int nvgrace_mem_try_ready(struct nvgrace_gpu_device *nvdev)
{
	struct nvgrace_ready_io io;
	u32 val[2];
	int ret;

	lockdep_assert_held(&nvdev->core.memory_lock);
	if (nvgrace_mem_ready(nvdev))
		return 0;
	if (!mutex_trylock(&nvdev->ready_lock))
		return -EAGAIN;

	nvgrace_ready_io_init(&io, nvdev, true);
	if (nvgrace_mem_resetting(nvdev, &io.seq))
		ret = 0;
	else
		ret = nvgrace_ready_now(&nvgrace_ready_io_ops, &io,
					&nvdev->ready_src, val);
	if (ret > 0)
		WRITE_ONCE(nvdev->ready_seq, io.seq);
	mutex_unlock(&nvdev->ready_lock);
	return ret > 0 ? 0 : ret ?: -EAGAIN;
}

/*
 * Take memory_lock for reading, with the GPU memory ready, so that
 * vfio-pci-core cannot reset the device or put it in a low-power state
 * while the caller touches it (resets through sysfs or AER are kept out
 * of the copy by kmap_sem, see nvgrace_mem_kmap_get()).  The wait for
 * readiness is done first, without the lock, and the state checked again
 * under it.
 *
 * Return: 0 with the lock held; without it, the errno of the wait.
 */
static int nvgrace_mem_lock_ready(struct nvgrace_gpu_device *nvdev)
{
	struct vfio_pci_core_device *core = &nvdev->core;
	int ret;

	for (;;) {
		ret = nvgrace_mem_wait_ready(nvdev);
		if (ret)
			return ret;
		down_read(&core->memory_lock);
		if (nvgrace_mem_ready(nvdev))
			return 0;
		/* A reset came in between */
		up_read(&core->memory_lock);
	}
}

/**
 * nvgrace_mem_region() - the GPU memory region behind a VFIO region
 * @nvdev: the device
 * @index: VFIO region index
 *
 * Return: resmem for region 2 when the device has resmem, usemem for
 * region 4, NULL for any other region or when the device has no GPU
 * memory.
 */
struct nvgrace_mem_region *nvgrace_mem_region(struct nvgrace_gpu_device *nvdev,
					      unsigned int index)
{
	if (!nvgrace_has_mem(nvdev))
		return NULL;
	if (index == NVGRACE_RESMEM_INDEX)
		return nvgrace_has_resmem(nvdev) ? &nvdev->mem.resmem : NULL;
	if (index == NVGRACE_USEMEM_INDEX)
		return &nvdev->mem.usemem;
	return NULL;
}

/**
 * nvgrace_mem_mappable() - the part of a region that user space may map
 * @region: the region
 *
 * Return: the length of the region rounded down to whole pages; mappings
 * cover [0, return value).
 */
u64 nvgrace_mem_mappable(const struct nvgrace_mem_region *region)
{
	return round_down(region->length, PAGE_SIZE);
}

static bool nvgrace_mem_is_resmem(struct nvgrace_gpu_device *nvdev,
				  const struct nvgrace_mem_region *region)
{
	return region == &nvdev->mem.resmem;
}

static unsigned long nvgrace_mem_memremap_flags(struct nvgrace_gpu_device *nvdev,
						const struct nvgrace_mem_region *region)
{
	return nvgrace_mem_is_resmem(nvdev, region) ? MEMREMAP_WC : MEMREMAP_WB;
}

/**
 * nvgrace_mem_reserve_memtype() - give user mappings their memory type
 * @nvdev: a device with GPU memory, being opened
 *
 * x86 gives the PFNs inserted into a user mapping the memory type that PAT
 * has reserved for their range, uncached without a reservation.  Mapping
 * each region into the kernel reserves write-back for usemem and
 * write-combining for resmem, the types of their user mappings; the
 * mappings are kept until the device is closed and never accessed.  Other
 * architectures take the type from the user mapping's page protection and
 * need no kernel mapping at all.
 *
 * Return: 0, or -ENOMEM when a mapping could not be made (another driver
 * reserved a conflicting type, or no address space is left).
 */
int nvgrace_mem_reserve_memtype(struct nvgrace_gpu_device *nvdev)
{
	struct nvgrace_mem_region *regions[] = {
		&nvdev->mem.usemem, &nvdev->mem.resmem
	};
	struct nvgrace_mem_region *region;
	int i;

	if (!IS_ENABLED(CONFIG_X86_PAT))
		return 0;

	for (i = 0; i < ARRAY_SIZE(regions); i++) {
		region = regions[i];
		if (!region->length)
			continue;
		region->pat_map = memremap(region->base, region->length,
					   nvgrace_mem_memremap_flags(nvdev,
								      region));
		if (!region->pat_map) {
			nvgrace_mem_release_memtype(nvdev);
			return -ENOMEM;
		}
	}
	return 0;
}

/**
 * nvgrace_mem_release_memtype() - undo nvgrace_mem_reserve_memtype()
 * @nvdev: the device, being closed or failing to open: no user mapping of
 *	it is left
 */
void nvgrace_mem_release_memtype(struct nvgrace_gpu_device *nvdev)
{
	struct nvgrace_mem_region *regions[] = {
		&nvdev->mem.usemem, &nvdev->mem.resmem
	};
	int i;

	for (i = 0; i < ARRAY_SIZE(regions); i++) {
		if (regions[i]->pat_map) {
			memunmap(regions[i]->pat_map);
			regions[i]->pat_map = NULL;
		}
	}
}

/**
 * nvgrace_mem_clip() - clip a read or write to an emulated BAR
 * @region: the region behind the BAR
 * @pos: offset of the access in the BAR
 * @count: bytes requested
 * @span: filled with how the access is served
 *
 * An access is cut at the BAR size.  Of what remains, the bytes below the
 * region length are GPU memory and the others padding.
 *
 * Return: 0, or -EINVAL when @pos is at or beyond the BAR size.
 */
VISIBLE_IF_KUNIT int nvgrace_mem_clip(const struct nvgrace_mem_region *region,
				      u64 pos, size_t count,
				      struct nvgrace_mem_span *span)
{
	if (pos >= region->bar_size)
		return -EINVAL;

	span->total = min_t(u64, count, region->bar_size - pos);
	span->mem = pos < region->length ?
		    min_t(u64, span->total, region->length - pos) : 0;
	return 0;
}
EXPORT_SYMBOL_IF_KUNIT(nvgrace_mem_clip);

/*
 * The slot of nvdev->kmaps that maps the block at @phys, or NULL.  With
 * kmap_sem held.
 */
static struct nvgrace_mem_kmap *
nvgrace_mem_kmap_find(struct nvgrace_gpu_device *nvdev, phys_addr_t phys)
{
	int i;

	for (i = 0; i < NVGRACE_KMAP_SLOTS; i++)
		if (nvdev->kmaps[i].kaddr && nvdev->kmaps[i].phys == phys)
			return &nvdev->kmaps[i];
	return NULL;
}

static void nvgrace_mem_kunmap(struct nvgrace_mem_kmap *kmap)
{
	if (kmap->kaddr) {
		memunmap(kmap->kaddr);
		kmap->kaddr = NULL;
	}
}

/*
 * Map the block of @region at @block_off, in place of the mapping that was
 * made longest ago when every slot is taken.  With kmap_sem held for
 * writing.
 */
static struct nvgrace_mem_kmap *
nvgrace_mem_kmap_new(struct nvgrace_gpu_device *nvdev,
		     struct nvgrace_mem_region *region, u64 block_off)
{
	struct nvgrace_mem_kmap *kmap = &nvdev->kmaps[nvdev->kmap_next];
	size_t len = min_t(u64, NVGRACE_KMAP_SIZE, region->length - block_off);

	nvdev->kmap_next = (nvdev->kmap_next + 1) % NVGRACE_KMAP_SLOTS;
	nvgrace_mem_kunmap(kmap);
	kmap->phys = region->base + block_off;
	kmap->kaddr = memremap(kmap->phys, len,
			       nvgrace_mem_memremap_flags(nvdev, region));
	return kmap->kaddr ? kmap : NULL;
}

/*
 * The kernel address of the byte at @pos of @region, in a mapping of its
 * block that stays until kmap_sem is released.
 *
 * The mappings are made on demand, here, and removed when a reset starts
 * (nvgrace_mem_reset_start(), from the reset_prepare and error_detected
 * handlers) and at close.  A reset first counts itself in reset_seq and
 * then takes kmap_sem for writing to remove them; a mapping is made or
 * used only under kmap_sem with the GPU memory found ready after the
 * resets counted so far.  So a copy either ends before the reset removes
 * the mappings, or sees the reset and makes none: none of these kernel
 * mappings of the GPU memory, which the CPU could prefetch from, lasts
 * into a reset or exists after one before the GPU is ready again (on x86
 * the PAT record mappings stay from open to close, see
 * nvgrace_mem_reserve_memtype()).  The mappings are few
 * and small: the kernel needs neither address space nor, on arm64, which
 * selects KASAN_VMALLOC with KASAN, shadow memory for the whole of a GPU
 * of hundreds of GiB.
 *
 * Return: the address with kmap_sem held for reading; without it,
 * ERR_PTR(-EAGAIN) when a reset started since the caller found the GPU
 * ready, ERR_PTR(-ENOMEM) when the block cannot be mapped.
 */
static void *nvgrace_mem_kmap_get(struct nvgrace_gpu_device *nvdev,
				  struct nvgrace_mem_region *region, u64 pos)
{
	u64 block_off = ALIGN_DOWN(pos, NVGRACE_KMAP_SIZE);
	phys_addr_t phys = region->base + block_off;
	struct nvgrace_mem_kmap *kmap;

	down_read(&nvdev->kmap_sem);
	if (!nvgrace_mem_ready(nvdev)) {
		up_read(&nvdev->kmap_sem);
		return ERR_PTR(-EAGAIN);
	}
	kmap = nvgrace_mem_kmap_find(nvdev, phys);
	if (kmap)
		return kmap->kaddr + (pos - block_off);
	up_read(&nvdev->kmap_sem);

	down_write(&nvdev->kmap_sem);
	if (!nvgrace_mem_ready(nvdev)) {
		up_write(&nvdev->kmap_sem);
		return ERR_PTR(-EAGAIN);
	}
	kmap = nvgrace_mem_kmap_find(nvdev, phys);
	if (!kmap)
		kmap = nvgrace_mem_kmap_new(nvdev, region, block_off);
	if (!kmap) {
		up_write(&nvdev->kmap_sem);
		return ERR_PTR(-ENOMEM);
	}
	downgrade_write(&nvdev->kmap_sem);
	return kmap->kaddr + (pos - block_off);
}

/**
 * nvgrace_mem_kunmap_all() - remove the kernel mappings of the GPU memory
 * @nvdev: the device, about to be reset or closed
 *
 * Waits for the read() and write() calls that use a mapping to finish
 * with it.
 */
void nvgrace_mem_kunmap_all(struct nvgrace_gpu_device *nvdev)
{
	int i;

	down_write(&nvdev->kmap_sem);
	for (i = 0; i < NVGRACE_KMAP_SLOTS; i++)
		nvgrace_mem_kunmap(&nvdev->kmaps[i]);
	up_write(&nvdev->kmap_sem);
}

/*
 * One copy between user memory and the GPU memory, with memory_lock held
 * and page faults disabled (see nvgrace_mem_copy()); @pos and @len stay
 * within one chunk.
 *
 * Return: 0 with *@left set to the number of bytes not copied; -EAGAIN
 * when a reset started meanwhile, -ENOMEM when the GPU memory cannot be
 * mapped.
 */
static int nvgrace_mem_copy_nofault(struct nvgrace_gpu_device *nvdev,
				    struct nvgrace_mem_region *region,
				    u64 pos, char __user *buf, size_t len,
				    bool iswrite, size_t *left)
{
	void *kaddr = nvgrace_mem_kmap_get(nvdev, region, pos);

	if (IS_ERR(kaddr))
		return PTR_ERR(kaddr);

	pagefault_disable();
	if (iswrite)
		*left = __copy_from_user_inatomic(kaddr, buf, len);
	else
		*left = __copy_to_user_inatomic(buf, kaddr, len);
	pagefault_enable();

	/* Other mappings (user, guest) must find the data in memory */
	if (iswrite && nvgrace_mem_is_resmem(nvdev, region))
		wmb();	/* drain the write-combining buffers */
	up_read(&nvdev->kmap_sem);
	return 0;
}

/*
 * Copy @len bytes between the user buffer and the GPU memory at @pos, with
 * memory_lock held (see nvgrace_mem_lock_ready()).  memory_lock must not
 * be held across a user page fault:
 * the user buffer may be a mapping of this very device, whose fault
 * handler takes it too, and a writer queued in between would deadlock
 * both.  So the copy runs with page faults disabled, and user pages that
 * are not present are faulted in with the lock dropped, before a retry.
 * A copy that a reset overtakes waits for the GPU again.
 *
 * Return: bytes copied, or a negative errno when none were.
 */
static ssize_t nvgrace_mem_copy(struct nvgrace_gpu_device *nvdev,
				struct nvgrace_mem_region *region, u64 pos,
				char __user *buf, size_t len, bool iswrite)
{
	size_t done = 0, left;
	int ret;

	while (done < len) {
		ret = nvgrace_mem_lock_ready(nvdev);
		if (ret)
			return done ?: ret;
		ret = nvgrace_mem_copy_nofault(nvdev, region, pos + done,
					       buf + done, len - done, iswrite,
					       &left);
		up_read(&nvdev->core.memory_lock);
		if (ret == -EAGAIN)
			continue;
		if (ret)
			return done ?: ret;

		done = len - left;
		if (!left)
			break;
		/* read() writes the user buffer, write() reads it */
		if ((iswrite ? fault_in_readable(buf + done, left) :
			       fault_in_writeable(buf + done, left)) == left)
			return done ?: -EFAULT;
	}
	return done;
}

/*
 * An access to the padding between the region end and the BAR end: reads
 * return all-ones and writes are dropped.
 *
 * Return: bytes served, or -EFAULT when none were.
 */
static ssize_t nvgrace_mem_pad(char __user *buf, size_t len, bool iswrite)
{
	size_t done = 0, n, left;

	if (iswrite)
		return len;

	while (done < len) {
		n = min(len - done, sizeof(nvgrace_mem_ones));
		left = copy_to_user(buf + done, nvgrace_mem_ones, n);
		done += n - left;
		if (left)
			return done ?: -EFAULT;
	}
	return done;
}

/*
 * Serve a clipped access in chunks.  The device is kept in D0 by the
 * caller.
 */
static ssize_t nvgrace_mem_rw_span(struct nvgrace_gpu_device *nvdev,
				   struct nvgrace_mem_region *region, u64 pos,
				   char __user *buf,
				   const struct nvgrace_mem_span *span,
				   bool iswrite)
{
	size_t done = 0, len;
	ssize_t ret = 0;

	while (done < span->total) {
		len = min_t(size_t, span->total - done,
			    NVGRACE_RW_CHUNK - (pos + done) % NVGRACE_RW_CHUNK);
		if (done < span->mem) {
			len = min(len, span->mem - done);
			ret = nvgrace_mem_copy(nvdev, region, pos + done,
					       buf + done, len, iswrite);
		} else {
			ret = nvgrace_mem_pad(buf + done, len, iswrite);
		}
		if (ret < 0)
			break;
		done += ret;
		if ((size_t)ret < len)
			break;
		/* A request may cover gigabytes */
		cond_resched();
	}
	return done ?: ret;
}

/**
 * nvgrace_mem_rw() - read() or write() of an emulated BAR
 * @nvdev: the device
 * @region: the region behind the BAR
 * @buf: user buffer
 * @count: bytes requested
 * @ppos: file position, in the VFIO region offset encoding; advanced by the
 *	bytes transferred
 * @iswrite: true for write()
 *
 * The GPU memory is copied directly to or from the user buffer, in chunks.
 * Bytes written to the padding are dropped, not even read.
 *
 * A device in a low-power state is woken for the access, as vfio-pci-core
 * wakes it for its own regions.  After a reset the access first waits
 * until the GPU memory is ready.
 *
 * Return: bytes transferred, or a negative errno when none were: -EINVAL
 * for a position at or beyond the BAR size; -EIO when the device cannot
 * be woken or, after a reset, while BAR0 does not decode (memory decode
 * off, or D3hot set through config space); -ETIME when the GPU memory did
 * not become ready after a reset, -ENODEV when the GPU is gone, -EINTR
 * when a fatal signal ended that wait; -EFAULT for a bad user buffer;
 * -ENOMEM.
 */
ssize_t nvgrace_mem_rw(struct nvgrace_gpu_device *nvdev,
		       struct nvgrace_mem_region *region, char __user *buf,
		       size_t count, loff_t *ppos, bool iswrite)
{
	struct device *dev = &nvdev->core.pdev->dev;
	u64 pos = *ppos & VFIO_PCI_OFFSET_MASK;
	struct nvgrace_mem_span span;
	ssize_t ret;

	ret = nvgrace_mem_clip(region, pos, count, &span);
	if (ret || !span.total)
		return ret;
	if (!access_ok(buf, span.total))
		return -EFAULT;

	/* As vfio-pci-core does for every region: wake a suspended device */
	ret = pm_runtime_resume_and_get(dev);
	if (ret) {
		pci_info_ratelimited(nvdev->core.pdev,
				     "runtime resume failed: %pe\n",
				     ERR_PTR(ret));
		return -EIO;
	}
	ret = nvgrace_mem_rw_span(nvdev, region, pos, buf, &span, iswrite);
	pm_runtime_put(dev);

	if (ret > 0)
		*ppos += ret;
	return ret;
}

static struct nvgrace_mem_region *
nvgrace_mem_vma_region(struct vm_area_struct *vma)
{
	return nvgrace_mem_region(vma->vm_private_data, nvgrace_vma_index(vma));
}

/*
 * Insert the PFN block of @order at the fault address.  Huge PFN maps need
 * transparent huge pages and the architecture's support for the size: an
 * order the kernel cannot map falls back to a smaller one.
 */
static vm_fault_t nvgrace_mem_insert(struct vm_fault *vmf, unsigned long pfn,
				     unsigned int order)
{
	switch (order) {
	case 0:
		return vmf_insert_pfn(vmf->vma, vmf->address, pfn);
#ifdef CONFIG_ARCH_SUPPORTS_PMD_PFNMAP
	case PMD_ORDER:
		return vmf_insert_pfn_pmd(vmf, __pfn_to_pfn_t(pfn, PFN_DEV),
					  vmf->flags & FAULT_FLAG_WRITE);
#endif
#ifdef CONFIG_ARCH_SUPPORTS_PUD_PFNMAP
	case PUD_ORDER:
		return vmf_insert_pfn_pud(vmf, __pfn_to_pfn_t(pfn, PFN_DEV),
					  vmf->flags & FAULT_FLAG_WRITE);
#endif
	default:
		return VM_FAULT_FALLBACK;
	}
}

/*
 * With memory_lock held, for a fault: 0 when the GPU memory may be mapped,
 * VM_FAULT_RETRY when the fault should wait for it (after the lock is
 * dropped), VM_FAULT_SIGBUS otherwise.  Once a poll for the last reset
 * has failed, faults wait no more until the next reset: they map the
 * memory if the registers say ready, and fail at once otherwise.  Some
 * callers start a failed fault over from scratch (type1's and KVM's
 * fixup_user_fault() loops, a fault that a signal interrupts), so this
 * cannot rest on FAULT_FLAG_TRIED.  A fault that cannot be retried fails
 * when the GPU is not ready now, rather than sleep up to the readiness
 * timeout with mmap_lock and memory_lock held.
 */
static vm_fault_t nvgrace_mem_fault_ready(struct vm_fault *vmf,
					  struct nvgrace_gpu_device *nvdev)
{
	int ret = nvgrace_mem_try_ready(nvdev);

	if (ret != -EAGAIN)
		return ret ? VM_FAULT_SIGBUS : 0;
	if (!(vmf->flags & FAULT_FLAG_ALLOW_RETRY))
		return VM_FAULT_SIGBUS;
	if (READ_ONCE(nvdev->fail_seq) == atomic_read(&nvdev->reset_seq))
		return VM_FAULT_SIGBUS;
	return VM_FAULT_RETRY;
}

/*
 * Wait for the GPU memory with the locks of the fault dropped (mmap_lock
 * or the VMA's lock), then have the fault retried, as filemap does for
 * I/O.  The file reference keeps the device open meanwhile, whatever
 * happens to the mapping.  The outcome of the wait is for the retry: it
 * maps the memory, or fails when the wait did.  VM_FAULT_MAJOR makes the
 * architecture's fault handler retry a fault taken under the VMA lock
 * with FAULT_FLAG_TRIED, as any other.
 */
static vm_fault_t nvgrace_mem_fault_wait(struct vm_fault *vmf,
					 struct nvgrace_gpu_device *nvdev)
{
	struct file *file;

	/* The caller asked not to have its lock dropped */
	if (vmf->flags & FAULT_FLAG_RETRY_NOWAIT)
		return VM_FAULT_RETRY;

	file = get_file(vmf->vma->vm_file);
	release_fault_lock(vmf);
	nvgrace_mem_wait_ready(nvdev);
	fput(file);
	return VM_FAULT_RETRY | VM_FAULT_MAJOR;
}

/*
 * Map the naturally aligned block of PAGE_SIZE << @order bytes around the
 * fault address, if all of it lies in the VMA and in the mappable part of
 * the region and its physical address is aligned as well; otherwise a huge
 * fault falls back to a smaller order.
 */
static vm_fault_t nvgrace_mem_huge_fault(struct vm_fault *vmf,
					 unsigned int order)
{
	struct vm_area_struct *vma = vmf->vma;
	struct nvgrace_gpu_device *nvdev = vma->vm_private_data;
	struct nvgrace_mem_region *region = nvgrace_mem_vma_region(vma);
	unsigned long size = PAGE_SIZE << order;
	unsigned long addr = ALIGN_DOWN(vmf->address, size);
	vm_fault_t fail = order ? VM_FAULT_FALLBACK : VM_FAULT_SIGBUS;
	unsigned long pfn;
	vm_fault_t ret;
	u64 offset;

	if (addr < vma->vm_start || addr + size > vma->vm_end)
		return fail;

	offset = ((u64)(vma->vm_pgoff & NVGRACE_PGOFF_MASK) << PAGE_SHIFT) +
		 (addr - vma->vm_start);
	if (offset + size > nvgrace_mem_mappable(region))
		return fail;

	pfn = PHYS_PFN(region->base + offset);
	if (!IS_ALIGNED(pfn, 1UL << order))
		return VM_FAULT_FALLBACK;

	down_read(&nvdev->core.memory_lock);
	if (nvdev->core.pm_runtime_engaged) {
		ret = VM_FAULT_SIGBUS;
	} else {
		ret = nvgrace_mem_fault_ready(vmf, nvdev);
		if (!ret)
			ret = nvgrace_mem_insert(vmf, pfn, order);
	}
	up_read(&nvdev->core.memory_lock);

	if (ret == VM_FAULT_RETRY)
		ret = nvgrace_mem_fault_wait(vmf, nvdev);
	return ret;
}

static vm_fault_t nvgrace_mem_fault(struct vm_fault *vmf)
{
	return nvgrace_mem_huge_fault(vmf, 0);
}

static const struct vm_operations_struct nvgrace_mem_vm_ops = {
	.fault = nvgrace_mem_fault,
#ifdef CONFIG_ARCH_SUPPORTS_HUGE_PFNMAP
	.huge_fault = nvgrace_mem_huge_fault,
#endif
};

/**
 * nvgrace_mem_mmap() - set up a user mapping of an emulated BAR
 * @nvdev: the device
 * @region: the region behind the BAR
 * @vma: the new mapping; vm_pgoff is in the VFIO region offset encoding and
 *	keeps it, so that vfio-pci-core zaps this mapping along with those of
 *	the real BARs (reset, memory disable, D3)
 *
 * Pages are inserted by the fault handlers.  usemem is mapped cacheable,
 * resmem write-combining, with VM_ALLOW_ANY_UNCACHED so that KVM/arm64 may
 * give a guest Normal-NC rather than Device memory.
 *
 * Return: 0; -EINVAL for a private mapping or one that reaches beyond the
 * whole pages of the region.
 */
int nvgrace_mem_mmap(struct nvgrace_gpu_device *nvdev,
		     struct nvgrace_mem_region *region,
		     struct vm_area_struct *vma)
{
	u64 start = (u64)(vma->vm_pgoff & NVGRACE_PGOFF_MASK) << PAGE_SHIFT;
	u64 len = vma->vm_end - vma->vm_start;

	/* Copy-on-write of a PFN map without struct pages is not supported */
	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;

	/*
	 * start is below 2^40 and len below the user address space size, so
	 * the sum does not wrap; mmap() itself refused offsets whose page
	 * count wraps with -EOVERFLOW.
	 */
	if (start + len > nvgrace_mem_mappable(region))
		return -EINVAL;

	if (nvgrace_mem_is_resmem(nvdev, region)) {
		vma->vm_page_prot = pgprot_writecombine(vma->vm_page_prot);
		vm_flags_set(vma, VM_ALLOW_ANY_UNCACHED);
	}
	vm_flags_set(vma, VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_ops = &nvgrace_mem_vm_ops;
	vma->vm_private_data = nvdev;
	return 0;
}
