/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * VFIO PCI variant driver for the GPU of the NVIDIA Grace Hopper and Grace
 * Blackwell Superchips: data model and interfaces shared by the driver's
 * files.
 */

#ifndef NVGRACE_H
#define NVGRACE_H

#include <linux/atomic.h>
#include <linux/bits.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/rwsem.h>
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

/*
 * The largest BAR a VFIO region can present: the region offset encoding
 * gives each region index 2^VFIO_PCI_OFFSET_SHIFT bytes of the device file
 */
#define NVGRACE_BAR_MAX			BIT_ULL(VFIO_PCI_OFFSET_SHIFT)

/* VFIO regions (and BARs) that present the GPU memory to user space */
#define NVGRACE_RESMEM_INDEX		VFIO_PCI_BAR2_REGION_INDEX
#define NVGRACE_USEMEM_INDEX		VFIO_PCI_BAR4_REGION_INDEX

/*
 * Config space bytes that hold the emulated BAR registers: BAR2 to BAR5,
 * or BAR4 and BAR5 only when the device has no resmem
 */
#define NVGRACE_BAR_EMU_END		(PCI_BASE_ADDRESS_5 + 4)

/*
 * NVIDIA Designated Vendor-Specific Extended Capability that lists GPU
 * features; bit 0 of its capability register is set when MIG works with
 * the GPU memory mapped cacheable.  Without the bit (Hopper) the MIG
 * hardware defect is present and resmem is needed.
 */
#define NVGRACE_DVSEC_GPU_CAPS		3
#define NVGRACE_DVSEC_GPU_CAPS_REG	0xa
#define NVGRACE_GPU_CAPS_MIG_CACHED	BIT(0)

/*
 * BAR0 registers that both read NVGRACE_READY_VALUE once the chip-to-chip
 * link is up and the HBM is trained: the GPU memory must not be touched
 * before.  Firmware bounds the bring-up to NVGRACE_READY_TIMEOUT_MS.
 */
#define NVGRACE_READY_C2C_LINK		0x1498
#define NVGRACE_READY_HBM_TRAINING	0x200bc
#define NVGRACE_READY_VALUE		0xff
#define NVGRACE_READY_TIMEOUT_MS	30000
#define NVGRACE_READY_POLL_MS		100

/*
 * A GPU with the CXL Device DVSEC reports its memory there instead, in
 * the DVSEC Range 1 Size Low register: Memory_Info_Valid within
 * NVGRACE_CXL_VALID_TIMEOUT_MS of a reset, then Memory_Active within the
 * time that the Memory_Active_Timeout field encodes.
 */
#define NVGRACE_CXL_DVSEC_DEVICE	0
#define NVGRACE_CXL_RANGE1_SIZE_LOW	0x1c
#define NVGRACE_CXL_MEM_INFO_VALID	BIT(0)
#define NVGRACE_CXL_MEM_ACTIVE		BIT(1)
#define NVGRACE_CXL_MEM_ACTIVE_TIMEOUT	GENMASK(15, 13)
#define NVGRACE_CXL_VALID_TIMEOUT_MS	1000

/**
 * struct nvgrace_ready_src - where a GPU reports that its memory is usable
 * @cxl_dvsec: config space offset of its CXL Device DVSEC; 0 when it has
 *	none and BAR0's registers tell
 */
struct nvgrace_ready_src {
	u16 cxl_dvsec;
};

/**
 * struct nvgrace_mem_region - one part of the GPU memory, exposed as a BAR
 * @base: host physical address of the first byte
 * @length: number of bytes of GPU memory in the region
 * @bar_size: size of the emulated BAR, the power of two reported to user
 *	space; bytes between @length and @bar_size read as all-ones
 * @pat_map: on x86 with PAT, a kernel mapping of [@base, @base + @length)
 *	made when the device is opened and removed when it is closed, only
 *	for the memory type reservation that user mappings take; never
 *	accessed.  NULL elsewhere.
 * @bar_reg: value last written to the emulated 64-bit BAR register,
 *	before the size mask and the flag bits are applied; protected by
 *	&nvgrace_gpu_device.bar_lock
 */
struct nvgrace_mem_region {
	phys_addr_t base;
	size_t length;
	u64 bar_size;
	void *pat_map;
	u64 bar_reg;
};

/*
 * read() and write() reach the GPU memory through kernel mappings of
 * blocks of this size, naturally aligned in their region; at most
 * NVGRACE_KMAP_SLOTS of them exist at a time.
 */
#define NVGRACE_KMAP_SIZE		SZ_64M
#define NVGRACE_KMAP_SLOTS		4

/**
 * struct nvgrace_mem_kmap - a kernel mapping of one block of GPU memory
 * @phys: host physical address of the block
 * @kaddr: where the block is mapped; NULL when the slot is free
 */
struct nvgrace_mem_kmap {
	phys_addr_t phys;
	void *kaddr;
};

/**
 * struct nvgrace_mem_layout - how the GPU memory is cut into regions
 * @usemem: cacheable memory, presented as BAR4 (VFIO regions 4 and 5)
 * @resmem: memory mapped uncached, presented as BAR2 (VFIO regions 2 and
 *	3); all zero on a GPU without the MIG hardware defect, whose own
 *	BAR2 is then passed through
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
 * struct nvgrace_ready_ops - where the readiness poll reads and waits
 * @read: read the 32-bit readiness register at @offset (in BAR0, or in
 *	config space for the CXL DVSEC) into *@val; return 0, or a negative
 *	errno that ends the poll with it
 * @sleep: wait about @ms milliseconds; return false when the task got a
 *	fatal signal, to end the poll
 * @now_ms: a monotonic clock, in milliseconds
 *
 * The driver reads the device and sleeps; the KUnit tests fake both.
 */
struct nvgrace_ready_ops {
	int (*read)(void *ctx, unsigned int offset, u32 *val);
	bool (*sleep)(void *ctx, unsigned int ms);
	u64 (*now_ms)(void *ctx);
};

/**
 * struct nvgrace_ready_report - how a readiness poll ended
 * @waited_ms: milliseconds from the first read to the end of the last
 *	sleep; 0 when the first reads told
 * @what: the condition that was not met, for the log; NULL when ready
 * @limit_ms: how long that condition was given
 * @val: the last values read of the registers that told: the C2C link
 *	and HBM training registers, or the DVSEC Range 1 Size Low register
 *	alone
 */
struct nvgrace_ready_report {
	unsigned int waited_ms;
	const char *what;
	unsigned int limit_ms;
	u32 val[2];
};

/**
 * struct nvgrace_gpu_device - the VFIO device of one GPU
 * @core: the vfio-pci-core device; must stay the first member
 * @mem: the GPU memory regions; all zero when firmware describes no GPU
 *	memory and the device works as plain vfio-pci
 * @ready_src: where the GPU reports its memory usable; chosen at probe
 * @reset_seq: incremented when a reset of the function starts and when it
 *	ends; a reset that an AER recovery does counts from error_detected
 *	to resume
 * @resetting: resets under way; incremented before @reset_seq when one
 *	starts, decremented after it when one ends
 * @ready_seq: the value of @reset_seq when the GPU memory was last found
 *	ready; the memory may be touched while the two are equal.  Written
 *	under &nvgrace_gpu_device.ready_lock, read without it.
 * @fail_seq: the value of @reset_seq for which the last poll failed (other
 *	than by a fatal signal): faults then wait no more for that reset.
 *	Written under &nvgrace_gpu_device.ready_lock, read without it.
 * @polls: readiness polls after a reset so far; written under
 *	&nvgrace_gpu_device.ready_lock, read without it first
 * @last_poll: the outcome of the last of them: 0 or a negative errno;
 *	written under &nvgrace_gpu_device.ready_lock
 * @aer_reset: an AER recovery is under way, counted in @reset_seq; only
 *	touched by the PCI error handlers, which the PCI core serializes
 * @hidden_bars: the GPU's own BARs that the emulated ones replace, claimed
 *	from open to close so that vfio-pci-core cannot map them
 * @kmaps: the kernel mappings of GPU memory that read() and write() use;
 *	protected by &nvgrace_gpu_device.kmap_sem
 * @kmap_next: the slot of @kmaps that the next new mapping takes, when
 *	none is free; protected by &nvgrace_gpu_device.kmap_sem
 */
struct nvgrace_gpu_device {
	struct vfio_pci_core_device core;
	struct nvgrace_mem_layout mem;
	struct nvgrace_ready_src ready_src;
	atomic_t reset_seq;
	atomic_t resetting;
	int ready_seq;
	int fail_seq;
	unsigned int polls;
	int last_poll;
	bool aer_reset;
	unsigned int hidden_bars;
	struct nvgrace_mem_kmap kmaps[NVGRACE_KMAP_SLOTS];
	unsigned int kmap_next;
	/**
	 * @kmap_sem: held for reading while a mapping of @kmaps is used,
	 * for writing while @kmaps changes
	 */
	struct rw_semaphore kmap_sem;
	/** @bar_lock: protects the emulated BAR registers */
	struct mutex bar_lock;
	/** @ready_lock: serializes the readiness polls after a reset */
	struct mutex ready_lock;
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
 * nvgrace_has_resmem() - tell whether BAR2 is emulated
 * @nvdev: the device
 *
 * Return: true when the device has GPU memory and the MIG hardware defect,
 * so that part of the memory is presented uncached as BAR2; false when
 * BAR2 is the device's own.
 */
static inline bool nvgrace_has_resmem(const struct nvgrace_gpu_device *nvdev)
{
	return nvdev->mem.resmem.length != 0;
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
void nvgrace_mem_find_ready_src(struct pci_dev *pdev,
				struct nvgrace_ready_src *src);
int nvgrace_mem_wait_probe(struct pci_dev *pdev,
			   const struct nvgrace_ready_src *src);
void nvgrace_mem_reset_start(struct nvgrace_gpu_device *nvdev);
void nvgrace_mem_reset_end(struct nvgrace_gpu_device *nvdev);
struct nvgrace_mem_region *nvgrace_mem_region(struct nvgrace_gpu_device *nvdev,
					      unsigned int index);
u64 nvgrace_mem_mappable(const struct nvgrace_mem_region *region);
int nvgrace_mem_reserve_memtype(struct nvgrace_gpu_device *nvdev);
void nvgrace_mem_release_memtype(struct nvgrace_gpu_device *nvdev);
void nvgrace_mem_kunmap_all(struct nvgrace_gpu_device *nvdev);
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
bool nvgrace_mem_mig_defect(struct pci_dev *pdev);
int nvgrace_mem_split(u64 base, u64 size, bool resmem,
		      struct nvgrace_mem_layout *layout, const char **cause);
unsigned int nvgrace_mem_cxl_active_timeout_ms(u32 range1_size_low);
int nvgrace_mem_poll_ready(const struct nvgrace_ready_ops *ops, void *ctx,
			   const struct nvgrace_ready_src *src,
			   struct nvgrace_ready_report *rep);
int nvgrace_mem_clip(const struct nvgrace_mem_region *region, u64 pos,
		     size_t count, struct nvgrace_mem_span *span);
u64 nvgrace_config_emu_start(const struct nvgrace_gpu_device *nvdev);
size_t nvgrace_config_segment(u64 pos, size_t count, u64 emu_start,
			      bool *emulated);
void nvgrace_config_read_bars(struct nvgrace_gpu_device *nvdev, u64 pos,
			      u8 *buf, size_t count);
void nvgrace_config_write_bars(struct nvgrace_gpu_device *nvdev, u64 pos,
			       const u8 *buf, size_t count);
#endif

#endif /* NVGRACE_H */
