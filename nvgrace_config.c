// SPDX-License-Identifier: GPL-2.0-only
/*
 * Config space of the NVIDIA Grace GPUs as user space sees it: the BAR2 and
 * BAR4 registers (config bytes 0x18 to 0x27) describe the emulated resmem
 * and usemem BARs; every other byte is vfio-pci-core's.  A GPU without
 * resmem keeps its own BAR2 register, and only BAR4 (0x20 to 0x27) is
 * emulated.
 *
 * Each emulated BAR is a 64-bit prefetchable memory BAR.  Its register keeps
 * what was last written, and reads back with the address bits below the BAR
 * size cleared and the type flags set, so that writing all-ones and reading
 * back sizes it as for real hardware.
 */

#include <kunit/visibility.h>
#include <linux/pci_regs.h>
#include <linux/uaccess.h>

#include "nvgrace.h"

#define NVGRACE_BAR_EMU_MAX_LEN	(NVGRACE_BAR_EMU_END - PCI_BASE_ADDRESS_2)
#define NVGRACE_BAR_FLAGS	(PCI_BASE_ADDRESS_MEM_TYPE_64 | \
				 PCI_BASE_ADDRESS_MEM_PREFETCH)

/**
 * nvgrace_config_segment() - the next piece of a config space access
 * @pos: config space offset where the piece starts
 * @count: bytes left in the access, at least 1
 * @emu_start: first config byte of the emulated BAR registers
 * @emulated: set to true when the piece is served by the emulated BARs,
 *	false when it goes to vfio-pci-core
 *
 * Return: length of the piece, from 1 to @count.
 */
VISIBLE_IF_KUNIT size_t nvgrace_config_segment(u64 pos, size_t count,
					       u64 emu_start, bool *emulated)
{
	if (pos < emu_start) {
		*emulated = false;
		return min_t(u64, count, emu_start - pos);
	}
	if (pos < NVGRACE_BAR_EMU_END) {
		*emulated = true;
		return min_t(u64, count, NVGRACE_BAR_EMU_END - pos);
	}
	*emulated = false;
	return count;
}
EXPORT_SYMBOL_IF_KUNIT(nvgrace_config_segment);

/**
 * nvgrace_config_emu_start() - where the emulated BAR registers start
 * @nvdev: a device with GPU memory
 *
 * Return: the config offset of BAR2 when the device has resmem, else that
 * of BAR4: BAR2 and BAR3 are then the device's own.
 */
VISIBLE_IF_KUNIT u64
nvgrace_config_emu_start(const struct nvgrace_gpu_device *nvdev)
{
	return nvgrace_has_resmem(nvdev) ? PCI_BASE_ADDRESS_2 :
					   PCI_BASE_ADDRESS_4;
}
EXPORT_SYMBOL_IF_KUNIT(nvgrace_config_emu_start);

/* The region whose BAR register holds config byte @pos, and the byte's shift */
static struct nvgrace_mem_region *
nvgrace_config_bar(struct nvgrace_gpu_device *nvdev, u64 pos,
		   unsigned int *shift)
{
	*shift = (pos - PCI_BASE_ADDRESS_2) % sizeof(u64) * BITS_PER_BYTE;

	return pos < PCI_BASE_ADDRESS_4 ? &nvdev->mem.resmem :
					  &nvdev->mem.usemem;
}

static u64 nvgrace_config_bar_value(const struct nvgrace_mem_region *region)
{
	return (region->bar_reg & ~(region->bar_size - 1)) | NVGRACE_BAR_FLAGS;
}

/**
 * nvgrace_config_read_bars() - read bytes of the emulated BAR registers
 * @nvdev: the device; the caller holds &nvgrace_gpu_device.bar_lock
 * @pos: config space offset of the first byte
 * @buf: receives @count bytes
 * @count: bytes to read; [@pos, @pos + @count) lies within the emulated
 *	registers
 */
VISIBLE_IF_KUNIT void nvgrace_config_read_bars(struct nvgrace_gpu_device *nvdev,
					       u64 pos, u8 *buf, size_t count)
{
	struct nvgrace_mem_region *region;
	unsigned int shift;
	size_t i;

	lockdep_assert_held(&nvdev->bar_lock);

	for (i = 0; i < count; i++) {
		region = nvgrace_config_bar(nvdev, pos + i, &shift);
		buf[i] = nvgrace_config_bar_value(region) >> shift;
	}
}
EXPORT_SYMBOL_IF_KUNIT(nvgrace_config_read_bars);

/**
 * nvgrace_config_write_bars() - write bytes of the emulated BAR registers
 * @nvdev: the device; the caller holds &nvgrace_gpu_device.bar_lock
 * @pos: config space offset of the first byte
 * @buf: the @count bytes to write
 * @count: bytes to write; [@pos, @pos + @count) lies within the emulated
 *	registers
 */
VISIBLE_IF_KUNIT void nvgrace_config_write_bars(struct nvgrace_gpu_device *nvdev,
						u64 pos, const u8 *buf,
						size_t count)
{
	struct nvgrace_mem_region *region;
	unsigned int shift;
	size_t i;

	lockdep_assert_held(&nvdev->bar_lock);

	for (i = 0; i < count; i++) {
		region = nvgrace_config_bar(nvdev, pos + i, &shift);
		region->bar_reg &= ~((u64)0xff << shift);
		region->bar_reg |= (u64)buf[i] << shift;
	}
}
EXPORT_SYMBOL_IF_KUNIT(nvgrace_config_write_bars);

/**
 * nvgrace_config_reset_bars() - return the emulated BAR registers to their
 *	reset value
 * @nvdev: a device with GPU memory
 *
 * Called on open and after every reset of the function.
 */
void nvgrace_config_reset_bars(struct nvgrace_gpu_device *nvdev)
{
	mutex_lock(&nvdev->bar_lock);
	nvdev->mem.resmem.bar_reg = 0;
	nvdev->mem.usemem.bar_reg = 0;
	mutex_unlock(&nvdev->bar_lock);
}
EXPORT_SYMBOL_IF_KUNIT(nvgrace_config_reset_bars);

static ssize_t nvgrace_config_emulated_rw(struct nvgrace_gpu_device *nvdev,
					  char __user *buf, size_t count,
					  u64 pos, bool iswrite)
{
	u8 val[NVGRACE_BAR_EMU_MAX_LEN];

	if (iswrite) {
		if (copy_from_user(val, buf, count))
			return -EFAULT;
		mutex_lock(&nvdev->bar_lock);
		nvgrace_config_write_bars(nvdev, pos, val, count);
		mutex_unlock(&nvdev->bar_lock);
		return count;
	}

	mutex_lock(&nvdev->bar_lock);
	nvgrace_config_read_bars(nvdev, pos, val, count);
	mutex_unlock(&nvdev->bar_lock);
	return copy_to_user(buf, val, count) ? -EFAULT : count;
}

static ssize_t nvgrace_config_core_rw(struct nvgrace_gpu_device *nvdev,
				      char __user *buf, size_t count,
				      u64 pos, bool iswrite)
{
	loff_t off = VFIO_PCI_INDEX_TO_OFFSET(VFIO_PCI_CONFIG_REGION_INDEX) +
		     pos;

	if (iswrite)
		return vfio_pci_core_write(&nvdev->core.vdev, buf, count, &off);
	return vfio_pci_core_read(&nvdev->core.vdev, buf, count, &off);
}

/**
 * nvgrace_config_rw() - read() or write() of config space
 * @nvdev: a device with GPU memory
 * @buf: user buffer
 * @count: bytes requested
 * @ppos: file position, in the VFIO region offset encoding; advanced by the
 *	bytes transferred
 * @iswrite: true for write()
 *
 * The access is cut where it enters or leaves the emulated BAR registers;
 * each piece goes to its owner, in order.
 *
 * Return: bytes transferred, or a negative errno when none were.
 */
ssize_t nvgrace_config_rw(struct nvgrace_gpu_device *nvdev, char __user *buf,
			  size_t count, loff_t *ppos, bool iswrite)
{
	u64 emu_start = nvgrace_config_emu_start(nvdev);
	u64 pos = *ppos & VFIO_PCI_OFFSET_MASK;
	int cfg_size = nvdev->core.pdev->cfg_size;
	size_t done = 0;
	ssize_t ret = 0;

	/*
	 * As vfio-pci-core does, refuse an access that does not fit config
	 * space before any part of it is served.
	 */
	if (pos >= cfg_size || count > cfg_size - pos)
		return -EFAULT;

	while (done < count) {
		bool emulated;
		size_t len = nvgrace_config_segment(pos + done, count - done,
						    emu_start, &emulated);

		if (emulated)
			ret = nvgrace_config_emulated_rw(nvdev, buf + done, len,
							 pos + done, iswrite);
		else
			ret = nvgrace_config_core_rw(nvdev, buf + done, len,
						     pos + done, iswrite);
		if (ret <= 0)
			break;
		done += ret;
	}

	if (!done)
		return ret;
	*ppos += done;
	return done;
}
