/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * VFIO PCI variant driver for the GPU of the NVIDIA Grace Hopper Superchip:
 * data model and interfaces shared by the driver's files.
 */

#ifndef NVGRACE_H
#define NVGRACE_H

#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/sizes.h>
#include <linux/types.h>
#include <linux/vfio_pci_core.h>

/*
 * The GPU memory is cut in memory blocks of this size, and at least this
 * much at its end is set aside to be mapped uncached.  Both values are
 * shared with the GPU firmware and the guest driver: they are ABI.
 */
#define NVGRACE_MEMBLK_SIZE		SZ_512M
#define NVGRACE_RESMEM_MIN_SIZE		SZ_1G

/* VFIO regions (and BARs) that present the GPU memory to user space */
#define NVGRACE_RESMEM_INDEX		VFIO_PCI_BAR2_REGION_INDEX
#define NVGRACE_USEMEM_INDEX		VFIO_PCI_BAR4_REGION_INDEX

/* Config space bytes that hold the emulated BAR2..BAR5 registers */
#define NVGRACE_BAR_EMU_START		PCI_BASE_ADDRESS_2
#define NVGRACE_BAR_EMU_END		(PCI_BASE_ADDRESS_5 + 4)

/**
 * struct nvgrace_mem_region - one part of the GPU memory, exposed as a BAR
 * @base: host physical address of the first byte
 * @length: number of bytes of GPU memory in the region
 * @bar_size: size of the emulated BAR, the power of two reported to user
 *	space; bytes between @length and @bar_size read as all-ones
 * @kaddr: kernel mapping of [@base, @base + @length) used by read() and
 *	write(); NULL until first use, removed when the device is closed;
 *	set under &nvgrace_gpu_device.map_lock
 * @bar_reg: value last written to the emulated 64-bit BAR register,
 *	before the size mask and the flag bits are applied; protected by
 *	&nvgrace_gpu_device.bar_lock
 */
struct nvgrace_mem_region {
	phys_addr_t base;
	size_t length;
	u64 bar_size;
	void *kaddr;
	u64 bar_reg;
};

/**
 * struct nvgrace_mem_layout - how the GPU memory is cut into regions
 * @usemem: cacheable memory, presented as BAR4 (VFIO regions 4 and 5)
 * @resmem: memory mapped uncached, presented as BAR2 (VFIO regions 2 and 3)
 */
struct nvgrace_mem_layout {
	struct nvgrace_mem_region usemem;
	struct nvgrace_mem_region resmem;
};

/**
 * struct nvgrace_mem_span - how a read or write of an emulated BAR is served
 * @total: bytes served, the request cut at the BAR size
 * @mem: leading bytes of @total that fall in GPU memory; the other
 *	@total - @mem bytes lie in the padding up to the BAR size
 */
struct nvgrace_mem_span {
	size_t total;
	size_t mem;
};

/**
 * struct nvgrace_gpu_device - the VFIO device of one GPU
 * @core: the vfio-pci-core device; must stay the first member
 * @mem: the GPU memory regions; all zero when firmware describes no GPU
 *	memory and the device works as plain vfio-pci
 */
struct nvgrace_gpu_device {
	struct vfio_pci_core_device core;
	struct nvgrace_mem_layout mem;
	/** @map_lock: serializes creating and removing the kernel mappings */
	struct mutex map_lock;
	/** @bar_lock: protects the emulated BAR registers */
	struct mutex bar_lock;
};

/**
 * nvgrace_has_mem() - tell whether the device exposes GPU memory
 * @nvdev: the device
 *
 * Return: true when firmware described the GPU memory at probe time.
 */
static inline bool nvgrace_has_mem(const struct nvgrace_gpu_device *nvdev)
{
	return nvdev->mem.usemem.length != 0;
}

/**
 * nvgrace_vma_index() - the VFIO region a user mapping of the device maps
 * @vma: the mapping; vm_pgoff is in the VFIO region offset encoding
 *
 * Return: the region index.
 */
static inline unsigned int nvgrace_vma_index(const struct vm_area_struct *vma)
{
	return vma->vm_pgoff >> (VFIO_PCI_OFFSET_SHIFT - PAGE_SHIFT);
}

/* nvgrace_mem.c */
int nvgrace_mem_probe(struct pci_dev *pdev, struct nvgrace_mem_layout *layout);
struct nvgrace_mem_region *nvgrace_mem_region(struct nvgrace_gpu_device *nvdev,
					      unsigned int index);
u64 nvgrace_mem_mappable(const struct nvgrace_mem_region *region);
void nvgrace_mem_unmap_kernel(struct nvgrace_gpu_device *nvdev);
ssize_t nvgrace_mem_rw(struct nvgrace_gpu_device *nvdev,
		       struct nvgrace_mem_region *region, char __user *buf,
		       size_t count, loff_t *ppos, bool iswrite);
int nvgrace_mem_mmap(struct nvgrace_gpu_device *nvdev,
		     struct nvgrace_mem_region *region,
		     struct vm_area_struct *vma);

/* nvgrace_config.c */
ssize_t nvgrace_config_rw(struct nvgrace_gpu_device *nvdev, char __user *buf,
			  size_t count, loff_t *ppos, bool iswrite);
void nvgrace_config_reset_bars(struct nvgrace_gpu_device *nvdev);

#if IS_ENABLED(CONFIG_KUNIT)
int nvgrace_mem_split(u64 base, u64 size, struct nvgrace_mem_layout *layout,
		      const char **cause);
int nvgrace_mem_clip(const struct nvgrace_mem_region *region, u64 pos,
		     size_t count, struct nvgrace_mem_span *span);
size_t nvgrace_config_segment(u64 pos, size_t count, bool *emulated);
void nvgrace_config_read_bars(struct nvgrace_gpu_device *nvdev, u64 pos,
			      u8 *buf, size_t count);
void nvgrace_config_write_bars(struct nvgrace_gpu_device *nvdev, u64 pos,
			       const u8 *buf, size_t count);
#endif

#endif /* NVGRACE_H */
