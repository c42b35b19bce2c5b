// SPDX-License-Identifier: GPL-2.0-only
/*
 * Test-only helper for the nvgrace-gpu-vfio-pci tests: a canary pattern in
 * all the memory that the test VM keeps from its kernel for the GPU memory
 * (RAM, and sparse DIMMs that the kernel does not take as RAM), except the
 * GPU memory ranges themselves.  Nothing may write there: a
 * driver that let user space reach outside [base, base + size) of a device,
 * through mmap() or read()/write(), up to the end of a BAR or past a huge
 * page, would change it.
 *
 * Load with the reserved areas as start,end pairs and the ranges as
 * base,size pairs, each range inside a reserved area:
 *	insmod nvgrace_guard.ko reserved=0x100000000,0x380000000,... \
 *		ranges=0x140000000,0x9ff00000,...
 * Loading fills the guard areas (the reserved memory outside the ranges) with
 * a pattern derived from the physical address.  Then, below
 * /sys/kernel/debug/nvgrace_guard/:
 *	check	read: "intact: ..." when no byte changed, else a line
 *		"corrupt: ..." for each guard area with changed bytes
 *	corrupt	write a physical address inside a guard area: inverts that
 *		byte, so that the check itself can be tested
 */

#include <linux/debugfs.h>
#include <linux/io.h>
#include <linux/kernel.h>
#include <linux/minmax.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/overflow.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include <linux/sizes.h>
#include <linux/sort.h>
#include <linux/uaccess.h>

#define GUARD_MAX_RANGES	16
#define GUARD_MAX_RESERVED	8
/* Guard areas are mapped and walked this much at a time */
#define GUARD_CHUNK		SZ_2M

static unsigned long reserved[2 * GUARD_MAX_RESERVED];
static unsigned int nr_reserved_args;
module_param_array(reserved, ulong, &nr_reserved_args, 0400);
MODULE_PARM_DESC(reserved, "memory kept from the kernel, as start,end pairs");

static unsigned long ranges[2 * GUARD_MAX_RANGES];
static unsigned int nr_range_args;
module_param_array(ranges, ulong, &nr_range_args, 0400);
MODULE_PARM_DESC(ranges, "GPU memory ranges as base,size pairs");

/* [start, end) of the reserved RAM that belongs to no range */
struct guard_area {
	u64 start;
	u64 end;
};

/* What a check found in one guard area */
struct guard_result {
	u64 first;	/* physical address of the first changed byte */
	u64 changed;	/* number of changed bytes */
};

static struct guard_area areas[GUARD_MAX_RANGES + GUARD_MAX_RESERVED];
static unsigned int nr_areas;
static struct dentry *guard_dir;

/* The canary at @pa: different for every 8 bytes, and never all-ones */
static u64 guard_pattern(u64 pa)
{
	return (pa & ~7ULL) ^ 0x6e76677561726400ULL;
}

static int guard_fill_area(const struct guard_area *area)
{
	u64 pa, len, i;
	u64 *p;

	for (pa = area->start; pa < area->end; pa += len) {
		len = min_t(u64, area->end - pa, GUARD_CHUNK);
		p = memremap(pa, len, MEMREMAP_WB);
		if (!p)
			return -ENOMEM;
		for (i = 0; i < len / 8; i++)
			p[i] = guard_pattern(pa + 8 * i);
		memunmap(p);
		cond_resched();
	}
	return 0;
}

static int guard_check_area(const struct guard_area *area,
			    struct guard_result *res)
{
	u64 pa, len, i, diff;
	u64 *p;

	res->changed = 0;
	for (pa = area->start; pa < area->end; pa += len) {
		len = min_t(u64, area->end - pa, GUARD_CHUNK);
		p = memremap(pa, len, MEMREMAP_WB);
		if (!p)
			return -ENOMEM;
		for (i = 0; i < len / 8; i++) {
			diff = p[i] ^ guard_pattern(pa + 8 * i);
			if (!diff)
				continue;
			if (!res->changed)
				res->first = pa + 8 * i + __ffs64(diff) / 8;
			/* One bit per changed byte */
			diff |= diff >> 4;
			diff |= diff >> 2;
			diff |= diff >> 1;
			res->changed += hweight64(diff & 0x0101010101010101ULL);
		}
		memunmap(p);
		cond_resched();
	}
	return 0;
}

static int guard_check_show(struct seq_file *m, void *unused)
{
	struct guard_result res;
	unsigned int i, corrupt = 0;
	u64 total = 0;
	int ret;

	for (i = 0; i < nr_areas; i++) {
		ret = guard_check_area(&areas[i], &res);
		if (ret)
			return ret;
		total += areas[i].end - areas[i].start;
		if (!res.changed)
			continue;
		seq_printf(m, "corrupt: guard %#llx-%#llx, first changed byte %#llx, %llu changed\n",
			   areas[i].start, areas[i].end, res.first, res.changed);
		corrupt++;
	}
	if (!corrupt)
		seq_printf(m, "intact: %u guard areas, %llu MiB\n", nr_areas,
			   total / SZ_1M);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(guard_check);

static ssize_t guard_corrupt_write(struct file *file, const char __user *buf,
				   size_t count, loff_t *ppos)
{
	unsigned int i;
	u64 pa;
	u8 *p;
	int ret;

	ret = kstrtou64_from_user(buf, count, 0, &pa);
	if (ret)
		return ret;
	for (i = 0; i < nr_areas; i++) {
		if (pa < areas[i].start || pa >= areas[i].end)
			continue;
		p = memremap(pa, 1, MEMREMAP_WB);
		if (!p)
			return -ENOMEM;
		*p = ~*p;
		memunmap(p);
		return count;
	}
	return -EINVAL;
}

static const struct file_operations guard_corrupt_fops = {
	.owner = THIS_MODULE,
	.write = guard_corrupt_write,
};

static int guard_cmp_base(const void *a, const void *b)
{
	const unsigned long *x = a, *y = b;

	return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Sort start,end or base,size pairs by their first member */
static void guard_sort_pairs(unsigned long *pairs, unsigned int nr)
{
	sort(pairs, nr, 2 * sizeof(pairs[0]), guard_cmp_base, NULL);
}

static bool guard_reserved_valid(unsigned int r)
{
	unsigned long start = reserved[2 * r], end = reserved[2 * r + 1];

	return start < end && PAGE_ALIGNED(start) && PAGE_ALIGNED(end) &&
	       (!r || start >= reserved[2 * r - 1]);
}

/*
 * The guard areas: the reserved areas minus the ranges, each of which must
 * lie in one of them
 */
static int guard_make_areas(void)
{
	unsigned int nr_res = nr_reserved_args / 2, nr = nr_range_args / 2;
	unsigned int r, i = 0;
	u64 at, end;

	if (!nr_res || nr_reserved_args % 2 || !nr || nr_range_args % 2)
		return -EINVAL;
	guard_sort_pairs(reserved, nr_res);
	guard_sort_pairs(ranges, nr);
	for (r = 0; r < nr_res; r++) {
		if (!guard_reserved_valid(r))
			return -EINVAL;
		at = reserved[2 * r];
		for (; i < nr && ranges[2 * i] < reserved[2 * r + 1]; i++) {
			/* Whole words: the check compares 8 bytes at a time */
			if (!ranges[2 * i + 1] || ranges[2 * i] < at ||
			    !IS_ALIGNED(ranges[2 * i] | ranges[2 * i + 1], 8) ||
			    check_add_overflow(ranges[2 * i],
					       ranges[2 * i + 1], &end) ||
			    end > reserved[2 * r + 1])
				return -EINVAL;
			if (ranges[2 * i] > at)
				areas[nr_areas++] = (struct guard_area){
					at, ranges[2 * i] };
			at = end;
		}
		if (at < reserved[2 * r + 1])
			areas[nr_areas++] = (struct guard_area){
				at, reserved[2 * r + 1] };
	}
	/* A range left over lies outside every reserved area */
	return i == nr ? 0 : -EINVAL;
}

static int __init guard_init(void)
{
	unsigned int i;
	int ret;

	ret = guard_make_areas();
	if (ret)
		return ret;
	for (i = 0; i < nr_areas; i++) {
		ret = guard_fill_area(&areas[i]);
		if (ret)
			return ret;
	}
	guard_dir = debugfs_create_dir("nvgrace_guard", NULL);
	debugfs_create_file("check", 0400, guard_dir, NULL, &guard_check_fops);
	debugfs_create_file("corrupt", 0200, guard_dir, NULL,
			    &guard_corrupt_fops);
	return 0;
}
module_init(guard_init);

static void __exit guard_exit(void)
{
	debugfs_remove(guard_dir);
}
module_exit(guard_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Test-only helper: canaries around the GPU memory ranges");
