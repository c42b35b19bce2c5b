// SPDX-License-Identifier: GPL-2.0-only
/*
 * nvgrace_info: print what user space sees of a function bound to
 * nvgrace-gpu-vfio-pci: its regions, their sizes and mmap-able areas, the
 * memory type of each mapping and the emulated BAR registers.
 *
 * Usage: nvgrace_info BDF GPU-MEMORY-BASE
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nvgrace_vfio.h"

static const char *region_name(unsigned int index)
{
	static const char *const names[] = {
		"BAR0", "BAR1", "BAR2 (resmem)", "BAR3", "BAR4 (usemem)",
		"BAR5", "ROM", "config", "VGA",
	};

	return index < ARRAY_SIZE(names) ? names[index] : "?";
}

static void flags_str(__u32 flags, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s%s",
		 flags & VFIO_REGION_INFO_FLAG_READ ? "R" : "-",
		 flags & VFIO_REGION_INFO_FLAG_WRITE ? "W" : "-",
		 flags & VFIO_REGION_INFO_FLAG_MMAP ? "M" : "-",
		 flags & VFIO_REGION_INFO_FLAG_CAPS ? "C" : "-");
}

/* The mmap-able area of a region, as "[start, end)" */
static void mmap_area(int fd, const struct vfio_region_info *info, char *buf,
		      size_t len)
{
	__u64 offset, size;

	if (nvg_sparse_area(fd, info->index, &offset, &size))
		snprintf(buf, len, "[%#llx, %#llx)", (unsigned long long)offset,
			 (unsigned long long)(offset + size));
	else if (info->flags & VFIO_REGION_INFO_FLAG_MMAP)
		snprintf(buf, len, "whole region");
	else
		snprintf(buf, len, "-");
}

/* Map the first page of a region, touch it, and report its memory type */
static const char *caching(int fd, unsigned int index, __u64 phys)
{
	long page = sysconf(_SC_PAGESIZE);
	const char *type;
	__u8 *p;

	p = mmap(NULL, page, PROT_READ, MAP_SHARED, fd,
		 nvg_region_offset(index));
	if (p == MAP_FAILED)
		return "not mappable";
	__atomic_load_n(p, __ATOMIC_RELAXED);
	type = nvg_pat_type(phys);
	munmap((void *)p, page);
	return type ? type : "unknown (no PAT record)";
}

int main(int argc, char **argv)
{
	__u64 ones = ~0ULL, base, offset, usemem_len = 0;
	struct nvg_dev dev;
	char drv[64], flags[8], area[64];
	unsigned int i;

	if (argc != 3) {
		fprintf(stderr, "usage: %s BDF GPU-MEMORY-BASE\n", argv[0]);
		return 2;
	}
	base = strtoull(argv[2], NULL, 0);
	if (nvg_bound_driver(argv[1], drv, sizeof(drv))) {
		fprintf(stderr, "%s: no driver bound\n", argv[1]);
		return 1;
	}
	if (nvg_open_group(argv[1], &dev)) {
		fprintf(stderr, "%s: cannot open through VFIO: %s\n", argv[1],
			strerror(errno));
		return 1;
	}

	/* usemem is whole memory blocks: all of it is mmap-able */
	nvg_sparse_area(dev.device_fd, VFIO_PCI_BAR4_REGION_INDEX, &offset,
			&usemem_len);

	printf("device %s, driver %s, GPU memory at %#llx\n\n", argv[1], drv,
	       (unsigned long long)base);
	printf("%-6s %-14s %-14s %-5s %-26s %s\n", "region", "name", "size",
	       "flags", "mmap area", "memory type (x86 PAT)");
	for (i = 0; i <= VFIO_PCI_CONFIG_REGION_INDEX; i++) {
		struct vfio_region_info info;
		const char *type = "-";

		if (nvg_region_info(dev.device_fd, i, &info))
			continue;
		flags_str(info.flags, flags, sizeof(flags));
		mmap_area(dev.device_fd, &info, area, sizeof(area));
		if (usemem_len && i == VFIO_PCI_BAR4_REGION_INDEX)
			type = caching(dev.device_fd, i, base);
		if (usemem_len && i == VFIO_PCI_BAR2_REGION_INDEX)
			type = caching(dev.device_fd, i, base + usemem_len);
		printf("%-6u %-14s %#-14llx %-5s %-26s %s\n", i,
		       region_name(i), (unsigned long long)info.size, flags,
		       area, type);
	}
	printf("(flags: R read, W write, M mmap, C capabilities)\n");

	printf("\nBAR registers in config space, as read after open:\n");
	printf("  0x18 BAR2/3: %#018llx\n",
	       (unsigned long long)nvg_cfg_read64(dev.device_fd, 0x18));
	printf("  0x20 BAR4/5: %#018llx\n",
	       (unsigned long long)nvg_cfg_read64(dev.device_fd, 0x20));
	nvg_cfg_write(dev.device_fd, 0x18, &ones, 8);
	nvg_cfg_write(dev.device_fd, 0x20, &ones, 8);
	printf("after writing all-ones (BAR sizing):\n");
	printf("  0x18 BAR2/3: %#018llx\n",
	       (unsigned long long)nvg_cfg_read64(dev.device_fd, 0x18));
	printf("  0x20 BAR4/5: %#018llx\n",
	       (unsigned long long)nvg_cfg_read64(dev.device_fd, 0x20));

	nvg_close(&dev);
	return 0;
}
