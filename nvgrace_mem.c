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
#include <linux/delay.h>
#include <linux/io.h>
#include <linux/ktime.h>
#include <linux/log2.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/pagemap.h>
#include <linux/pci.h>
#include <linux/pfn_t.h>
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

/* The BAR0 registers of a GPU mapped at *@ctx, read by the readiness poll */
static u32 nvgrace_mem_ready_read(void *ctx, unsigned int offset)
{
	void __iomem *const *bar0 = ctx;

	return ioread32(*bar0 + offset);
}

/* Only a fatal signal ends the sleep, and the poll with it */
static bool nvgrace_mem_ready_sleep(void *ctx, unsigned int ms)
{
	schedule_timeout_killable(msecs_to_jiffies(ms));
	return !fatal_signal_pending(current);
}

static u64 nvgrace_mem_ready_now_ms(void *ctx)
{
	return ktime_to_ms(ktime_get());
}

static const struct nvgrace_ready_ops nvgrace_mem_ready_io = {
	.read	= nvgrace_mem_ready_read,
	.sleep	= nvgrace_mem_ready_sleep,
	.now_ms	= nvgrace_mem_ready_now_ms,
};

static bool nvgrace_mem_regs_ready(const struct nvgrace_ready_ops *ops,
				   void *ctx)
{
	/* All-ones is what a dead or absent device reads: compare it all */
	return ops->read(ctx, NVGRACE_READY_C2C_LINK) == NVGRACE_READY_VALUE &&
	       ops->read(ctx, NVGRACE_READY_HBM_TRAINING) == NVGRACE_READY_VALUE;
}

/**
 * nvgrace_mem_poll_ready() - wait until the GPU reports its memory usable
 * @ops: how to read the registers, sleep and tell the time
 * @ctx: passed to @ops
 *
 * The registers are read at once, then every NVGRACE_READY_POLL_MS until
 * NVGRACE_READY_TIMEOUT_MS have passed; the last read is at or after the
 * deadline.
 *
 * Return: the milliseconds waited, 0 when the GPU was ready at once;
 * -ETIME when it did not become ready in time, -EINTR when the sleep was
 * cut short by a fatal signal.
 */
VISIBLE_IF_KUNIT int nvgrace_mem_poll_ready(const struct nvgrace_ready_ops *ops,
					    void *ctx)
{
	u64 start = ops->now_ms(ctx), waited = 0;

	for (;;) {
		if (nvgrace_mem_regs_ready(ops, ctx))
			return waited;
		if (waited >= NVGRACE_READY_TIMEOUT_MS)
			return -ETIME;
		if (!ops->sleep(ctx, NVGRACE_READY_POLL_MS))
			return -EINTR;
		waited = ops->now_ms(ctx) - start;
	}
}
EXPORT_SYMBOL_IF_KUNIT(nvgrace_mem_poll_ready);

/* Wait for the GPU whose BAR0 is mapped at @bar0; log the outcome */
static int nvgrace_mem_wait_ready(struct pci_dev *pdev, void __iomem *bar0)
{
	int ret = nvgrace_mem_poll_ready(&nvgrace_mem_ready_io, &bar0);

	if (ret == -ETIME) {
		pci_err(pdev,
			"GPU memory not ready after %u ms (C2C link %#x, HBM training %#x): %pe\n",
			NVGRACE_READY_TIMEOUT_MS,
			ioread32(bar0 + NVGRACE_READY_C2C_LINK),
			ioread32(bar0 + NVGRACE_READY_HBM_TRAINING),
			ERR_PTR(ret));
		return ret;
	}
	if (ret < 0)
		return ret;
	if (ret)
		pci_info(pdev, "GPU memory ready after %d ms\n", ret);
	return 0;
}

/**
 * nvgrace_mem_wait_probe() - wait at probe time until the GPU memory is usable
 * @pdev: the GPU, not yet enabled
 *
 * The chip-to-chip link and the HBM may still be coming up after boot.
 * The device is enabled and its BAR0 mapped for the poll only.
 *
 * Return: 0 when the GPU memory is ready; -ETIME when it is not within
 * NVGRACE_READY_TIMEOUT_MS; -EINTR when the task got a fatal signal
 * meanwhile; -ENODEV when BAR0 cannot hold the readiness registers;
 * -ENOMEM or the errno of enabling the device or claiming BAR0.
 */
int nvgrace_mem_wait_probe(struct pci_dev *pdev)
{
	const unsigned long len = NVGRACE_READY_HBM_TRAINING + sizeof(u32);
	void __iomem *bar0;
	int ret;

	if (!(pci_resource_flags(pdev, 0) & IORESOURCE_MEM) ||
	    pci_resource_len(pdev, 0) < len) {
		pci_err(pdev, "BAR0 has no room for the readiness registers: %pe\n",
			ERR_PTR(-ENODEV));
		return -ENODEV;
	}

	ret = pci_enable_device_mem(pdev);
	if (ret)
		return ret;
	ret = pci_request_region(pdev, 0, KBUILD_MODNAME);
	if (ret)
		goto out_disable;
	bar0 = pci_iomap(pdev, 0, len);
	if (!bar0) {
		ret = -ENOMEM;
		goto out_release;
	}

	ret = nvgrace_mem_wait_ready(pdev, bar0);

	pci_iounmap(pdev, bar0);
out_release:
	pci_release_region(pdev, 0);
out_disable:
	pci_disable_device(pdev);
	return ret;
}

/**
 * nvgrace_mem_reset_done() - note that the GPU was reset
 * @nvdev: a device with GPU memory
 *
 * After a reset the GPU memory may be touched only once the GPU reports it
 * usable again: the next fault, read() or write() of it waits for that.
 * The reset path may hold memory_lock for writing, so the reset is only
 * counted here.
 */
void nvgrace_mem_reset_done(struct nvgrace_gpu_device *nvdev)
{
	atomic_inc(&nvdev->resets);
}

/*
 * Whether BAR0 answers, as vfio-pci-core decides for the real BARs: memory
 * decode on, as user space last set it, and the function out of D3hot.  A
 * read otherwise gets an Unsupported Request, which some platforms treat
 * as fatal.  The emulated BARs themselves ignore both.
 */
static bool nvgrace_mem_bar0_decodes(struct vfio_pci_core_device *core)
{
	u16 cmd = le16_to_cpu(*(__le16 *)&core->vconfig[PCI_COMMAND]);

	if (core->pdev->current_state == PCI_D3hot)
		return false;
	return core->pdev->no_command_memory || (cmd & PCI_COMMAND_MEMORY);
}

/*
 * Before the GPU memory is touched, with memory_lock held for reading: if
 * the GPU was reset since it was last found ready, wait until it is.  One
 * caller polls, and the others wait for it on ready_lock.  A reset during
 * the poll leaves the next caller to poll again; a poll that times out
 * fails the callers that waited for it at once, and the next caller polls
 * anew.  Memory decode must be on for BAR0 to be read: the caller gets
 * -EIO until user space turns it on.  BAR0 is mapped from open to close
 * (nvgrace_gpu_open_device()).
 */
static int nvgrace_mem_wait_after_reset(struct nvgrace_gpu_device *nvdev)
{
	struct vfio_pci_core_device *core = &nvdev->core;
	unsigned int polls;
	int resets, ret;

	lockdep_assert_held(&core->memory_lock);

	if (READ_ONCE(nvdev->ready_at) == atomic_read(&nvdev->resets))
		return 0;
	if (!nvgrace_mem_bar0_decodes(core))
		return -EIO;

	polls = READ_ONCE(nvdev->polls);
	if (mutex_lock_killable(&nvdev->ready_lock))
		return -EINTR;
	resets = atomic_read(&nvdev->resets);
	if (nvdev->ready_at == resets) {
		ret = 0;
	} else if (nvdev->polls != polls && nvdev->last_poll == -ETIME) {
		ret = -ETIME;
	} else {
		ret = nvgrace_mem_wait_ready(core->pdev, core->barmap[0]);
		nvdev->last_poll = ret;
		WRITE_ONCE(nvdev->polls, nvdev->polls + 1);
		if (!ret)
			WRITE_ONCE(nvdev->ready_at, resets);
	}
	mutex_unlock(&nvdev->ready_lock);
	return ret;
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

/*
 * The emulated BARs ignore memory decode and the PCI power state: the
 * hardware answers all-ones rather than faulting, and a guest may keep its
 * RAM there.  Only a low-power state that user space asked for
 * (VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY) puts them out of reach.
 */
static bool nvgrace_mem_accessible(struct vfio_pci_core_device *core)
{
	lockdep_assert_held(&core->memory_lock);

	return !core->pm_runtime_engaged;
}

/*
 * Take memory_lock for reading before the GPU memory is touched, so that
 * the device cannot enter a reset or a low-power state meanwhile.
 *
 * Return: 0 with the lock held; without it, -EIO while the device is in a
 * low-power state, or after a reset while BAR0 does not decode; -ETIME
 * when the GPU is not ready in time after a reset; -EINTR on a fatal
 * signal.
 */
static int nvgrace_mem_lock_ready(struct nvgrace_gpu_device *nvdev)
{
	struct vfio_pci_core_device *core = &nvdev->core;
	int ret;

	down_read(&core->memory_lock);
	if (nvgrace_mem_accessible(core))
		ret = nvgrace_mem_wait_after_reset(nvdev);
	else
		ret = -EIO;
	if (ret)
		up_read(&core->memory_lock);
	return ret;
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
	kmap->kaddr = memremap(region->base + block_off, len,
			       nvgrace_mem_memremap_flags(nvdev, region));
	if (!kmap->kaddr)
		return NULL;
	kmap->phys = region->base + block_off;
	return kmap;
}

/*
 * The kernel address of the byte at @pos of @region, in a mapping of its
 * block that stays until kmap_sem is released.
 *
 * The mappings are made on demand, here, once the caller has found the
 * GPU ready, and removed before every reset (nvgrace_mem_kunmap_all()
 * from the reset_prepare handler, which waits for kmap_sem) and at close.
 * So no kernel mapping of the GPU memory, which the CPU could prefetch
 * from, lasts into a reset or exists after one before the readiness check.
 * They are few and small: the kernel needs neither address space nor,
 * on arm64, which selects KASAN_VMALLOC with KASAN, shadow memory for the
 * whole of a GPU of hundreds of GiB.
 *
 * Return: the address with kmap_sem held for reading, or NULL without it
 * when the block cannot be mapped.
 */
static void *nvgrace_mem_kmap_get(struct nvgrace_gpu_device *nvdev,
				  struct nvgrace_mem_region *region, u64 pos)
{
	u64 block_off = ALIGN_DOWN(pos, NVGRACE_KMAP_SIZE);
	struct nvgrace_mem_kmap *kmap;

	down_read(&nvdev->kmap_sem);
	kmap = nvgrace_mem_kmap_find(nvdev, region->base + block_off);
	if (kmap)
		return kmap->kaddr + (pos - block_off);
	up_read(&nvdev->kmap_sem);

	down_write(&nvdev->kmap_sem);
	kmap = nvgrace_mem_kmap_find(nvdev, region->base + block_off);
	if (!kmap)
		kmap = nvgrace_mem_kmap_new(nvdev, region, block_off);
	if (!kmap) {
		up_write(&nvdev->kmap_sem);
		return NULL;
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
 * Return: 0 with *@left set to the number of bytes not copied, or -ENOMEM
 * when the GPU memory cannot be mapped.
 */
static int nvgrace_mem_copy_nofault(struct nvgrace_gpu_device *nvdev,
				    struct nvgrace_mem_region *region,
				    u64 pos, char __user *buf, size_t len,
				    bool iswrite, size_t *left)
{
	void *kaddr = nvgrace_mem_kmap_get(nvdev, region, pos);

	if (!kaddr)
		return -ENOMEM;

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
 * memory_lock held so that the device cannot enter a reset or a low-power
 * state meanwhile.  memory_lock must not be held across a user page fault:
 * the user buffer may be a mapping of this very device, whose fault
 * handler takes it too, and a writer queued in between would deadlock
 * both.  So the copy runs with page faults disabled, and user pages that
 * are not present are faulted in with the lock dropped, before a retry.
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
 * return all-ones and writes are dropped, but only while the GPU memory
 * itself could be reached, as with a real BAR.
 *
 * Return: bytes served, or a negative errno when none were.
 */
static ssize_t nvgrace_mem_pad(struct vfio_pci_core_device *core,
			       char __user *buf, size_t len, bool iswrite)
{
	size_t done = 0, n, left;
	bool accessible;

	down_read(&core->memory_lock);
	accessible = nvgrace_mem_accessible(core);
	up_read(&core->memory_lock);
	if (!accessible)
		return -EIO;
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
 * Return: bytes transferred, or a negative errno when none were: -EINVAL
 * for a position at or beyond the BAR size, -EIO while the device is in a
 * low-power state or, after a reset, while memory decode is off; -ETIME
 * when the GPU memory did not become ready after a reset, -EINTR when a
 * fatal signal ended that wait, -EFAULT for a bad user buffer, -ENOMEM.
 */
ssize_t nvgrace_mem_rw(struct nvgrace_gpu_device *nvdev,
		       struct nvgrace_mem_region *region, char __user *buf,
		       size_t count, loff_t *ppos, bool iswrite)
{
	u64 pos = *ppos & VFIO_PCI_OFFSET_MASK;
	struct nvgrace_mem_span span;
	size_t done = 0, len;
	ssize_t ret;

	ret = nvgrace_mem_clip(region, pos, count, &span);
	if (ret || !span.total)
		return ret;
	if (!access_ok(buf, span.total))
		return -EFAULT;

	while (done < span.total) {
		len = min_t(size_t, span.total - done,
			    NVGRACE_RW_CHUNK - (pos + done) % NVGRACE_RW_CHUNK);
		if (done < span.mem) {
			len = min(len, span.mem - done);
			ret = nvgrace_mem_copy(nvdev, region, pos + done,
					       buf + done, len, iswrite);
		} else {
			ret = nvgrace_mem_pad(&nvdev->core, buf + done, len,
					      iswrite);
		}
		if (ret < 0)
			break;
		done += ret;
		if ((size_t)ret < len)
			break;
		/* A request may cover gigabytes */
		cond_resched();
	}

	if (!done)
		return ret;
	*ppos += done;
	return done;
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

	if (nvgrace_mem_lock_ready(nvdev))
		return VM_FAULT_SIGBUS;
	ret = nvgrace_mem_insert(vmf, pfn, order);
	up_read(&nvdev->core.memory_lock);

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
