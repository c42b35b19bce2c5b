// SPDX-License-Identifier: GPL-2.0-only
/*
 * nvgrace_bench: measure what a hypervisor does with the GPU memory of a
 * function bound to a VFIO driver (map it, touch it, read and write it),
 * and put the figures of two drivers side by side.
 *
 * Usage:
 *   nvgrace_bench measure BDF
 *	print "key value" lines for the driver bound to BDF
 *   nvgrace_bench table REFERENCE OURS
 *	print the figures of two "measure" outputs and their ratios
 *   nvgrace_bench scale BDF
 *	print "key value" lines for a real-sized GPU, all of each region:
 *	mmap(), a read per 2 MiB (time, faults, VmPTE), and the mapping for
 *	peer-to-peer DMA that QEMU makes at VM start (VFIO_IOMMU_MAP_DMA
 *	through the type1 container of up to 4 GiB, and its unmap; what
 *	IOMMU_IOAS_MAP of iommufd answers)
 *   nvgrace_bench scaletable REFERENCE OURS
 *	the same for two "scale" outputs
 *
 * This is not a test: it asserts nothing about time.  Each figure is taken
 * the same way for both drivers, in the same boot, on the same device.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nvgrace_vfio.h"

#define SZ_1G		0x40000000ULL

/*
 * A bandwidth figure is the median of BW_REPEAT runs, each at least this
 * long and of at least one request
 */
#define BW_REPEAT	3
#define BW_MIN_SECONDS	0.3
/* Source of the memcpy ceiling: larger than the largest request */
#define MEMCPY_SPAN	(64ULL << 20)
/* Offset of the anonymous buffers from a huge-page boundary */
#define BUF_SKEW_PAGES	37
/* Repetitions of an mmap() timing; the median is kept */
#define MMAP_REPEAT	5

/* pread()/pwrite() request sizes, 4 KiB to 16 MiB, whatever the page size */
static const size_t req_sizes[] = { 4096, 65536, 1 << 20, 16 << 20 };	/* bytes */

static const struct {
	unsigned int index;
	const char *name;
} regions[] = {
	{ VFIO_PCI_BAR4_REGION_INDEX, "usemem" },
	{ VFIO_PCI_BAR2_REGION_INDEX, "resmem" },
};

/* Keep the compiler from dropping a copy whose result nothing reads */
static void keep(void *p)
{
	__asm__ __volatile__("" : : "r"(p) : "memory");
}

static void die(const char *what)
{
	fprintf(stderr, "nvgrace_bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/*
 * A shared mapping of @len bytes of a region at a 1 GiB aligned address.
 * The kernel does not align device mappings for huge pages by itself, so
 * the address is chosen as a hypervisor should: inside a reservation, with
 * MAP_FIXED in a hole.
 */
struct mapping {
	void *reserve;
	size_t reserve_len;
	__u8 *addr;
	size_t len;
	double seconds;	/* taken by the mmap() of the region itself */
};

static void map_region(int fd, unsigned int index, size_t len,
		       struct mapping *m)
{
	unsigned long aligned;
	double start;
	void *p;

	m->len = len;
	m->reserve_len = len + SZ_1G;
	m->reserve = mmap(NULL, m->reserve_len, PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m->reserve == MAP_FAILED)
		die("address space reservation");
	aligned = ((unsigned long)m->reserve + SZ_1G - 1) & ~(SZ_1G - 1);
	/* Only the mmap() of the device is timed, not a replacement */
	munmap((void *)aligned, len);

	start = nvg_now();
	p = mmap((void *)aligned, len, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_FIXED, fd, nvg_region_offset(index));
	m->seconds = nvg_now() - start;
	if (p == MAP_FAILED)
		die("mmap of the region");
	m->addr = p;
}

static void unmap_region(struct mapping *m)
{
	munmap(m->reserve, m->reserve_len);
}

/* Median time of an mmap() of @len bytes of a region, in microseconds */
static double mmap_latency(int fd, unsigned int index, size_t len)
{
	double t[MMAP_REPEAT];
	struct mapping m;
	int i;

	for (i = 0; i < MMAP_REPEAT; i++) {
		map_region(fd, index, len, &m);
		t[i] = m.seconds * 1e6;
		unmap_region(&m);
	}
	qsort(t, MMAP_REPEAT, sizeof(t[0]), cmp_double);
	return t[MMAP_REPEAT / 2];
}

/* One write per page of the mapping; returns the time taken */
static double touch_pages(struct mapping *m)
{
	size_t page = sysconf(_SC_PAGESIZE), off;
	double start = nvg_now();

	for (off = 0; off < m->len; off += page)
		__atomic_store_n((__u64 *)(m->addr + off), off,
				 __ATOMIC_RELAXED);
	return nvg_now() - start;
}

static void measure_mapping(int fd, const char *name, unsigned int index,
			    size_t len)
{
	long pte_before, faults_before;
	struct mapping m;
	double t;

	printf("%s.length %zu\n", name, len);
	printf("%s.mmap_page_us %.1f\n", name,
	       mmap_latency(fd, index, sysconf(_SC_PAGESIZE)));
	printf("%s.mmap_us %.1f\n", name, mmap_latency(fd, index, len));

	pte_before = nvg_vm_pte_kib();
	map_region(fd, index, len, &m);
	faults_before = nvg_minor_faults();
	t = touch_pages(&m);
	printf("%s.touch_ms %.1f\n", name, t * 1e3);
	printf("%s.touch_faults %ld\n", name, nvg_minor_faults() - faults_before);
	printf("%s.vmpte_kib %ld\n", name, nvg_vm_pte_kib() - pte_before);
	printf("%s.second_pass_ms %.1f\n", name, touch_pages(&m) * 1e3);
	unmap_region(&m);
}

/*
 * MB/s of pread() or pwrite() of @req bytes at a time over [0, @len) from
 * file offset @base, in one run
 */
static double rw_run(int fd, off_t base, size_t len, size_t req, bool write,
		     __u8 *buf)
{
	double start = nvg_now(), t;
	size_t pos = 0, done = 0;
	ssize_t n;

	do {
		if (pos + req > len)
			pos = 0;
		n = write ? pwrite(fd, buf, req, base + pos) :
			    pread(fd, buf, req, base + pos);
		if (n != (ssize_t)req)
			die(write ? "pwrite" : "pread");
		pos += req;
		done += req;
		t = nvg_now() - start;
	} while (t < BW_MIN_SECONDS);
	return done / t / 1e6;
}

static double rw_bandwidth(int fd, off_t base, size_t len, size_t req,
			   bool write, __u8 *buf)
{
	double mbs[BW_REPEAT];
	int i;

	for (i = 0; i < BW_REPEAT; i++)
		mbs[i] = rw_run(fd, base, len, req, write, buf);
	qsort(mbs, BW_REPEAT, sizeof(mbs[0]), cmp_double);
	return mbs[BW_REPEAT / 2];
}

/* pread() and pwrite() bandwidth of every request size, as "@name.op_size" */
static void measure_rw(int fd, const char *name, off_t base, size_t len,
		       __u8 *buf)
{
	unsigned int i;

	/* Untimed: maps the region in the kernel, warms up the path */
	rw_run(fd, base, len, req_sizes[0], false, buf);
	for (i = 0; i < ARRAY_SIZE(req_sizes); i++) {
		printf("%s.pread_%zu %.1f\n", name, req_sizes[i],
		       rw_bandwidth(fd, base, len, req_sizes[i], false, buf));
		printf("%s.pwrite_%zu %.1f\n", name, req_sizes[i],
		       rw_bandwidth(fd, base, len, req_sizes[i], true, buf));
	}
}

/* MB/s of memcpy() of @req bytes at a time, streaming like pread() */
static double memcpy_run(__u8 *src, __u8 *dst, size_t req)
{
	double start = nvg_now(), t;
	size_t pos = 0, done = 0;

	do {
		if (pos + req > MEMCPY_SPAN)
			pos = 0;
		memcpy(dst, src + pos, req);
		keep(dst);
		pos += req;
		done += req;
		t = nvg_now() - start;
	} while (t < BW_MIN_SECONDS);
	return done / t / 1e6;
}

static double memcpy_bandwidth(__u8 *src, __u8 *dst, size_t req)
{
	double mbs[BW_REPEAT];
	int i;

	for (i = 0; i < BW_REPEAT; i++)
		mbs[i] = memcpy_run(src, dst, req);
	qsort(mbs, BW_REPEAT, sizeof(mbs[0]), cmp_double);
	return mbs[BW_REPEAT / 2];
}

/*
 * Anonymous memory, touched so that no fault is timed later.  It starts an
 * odd number of pages past a huge-page boundary: the software TLB of QEMU's
 * TCG is direct-mapped, and a buffer aligned like the source of a copy
 * would make both evict each other on every byte copied, for reasons that
 * have nothing to do with the driver.
 */
static __u8 *anon_buffer(size_t len)
{
	size_t skew = BUF_SKEW_PAGES * sysconf(_SC_PAGESIZE);
	__u8 *p = mmap(NULL, len + skew, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("anonymous buffer");
	memset(p + skew, 0x5a, len);
	return p + skew;
}

static int measure(const char *bdf)
{
	size_t max_req = req_sizes[ARRAY_SIZE(req_sizes) - 1];
	__u8 *buf = anon_buffer(max_req), *src;
	__u64 offset, len;
	struct nvg_dev dev;
	unsigned int i;
	char drv[64];
	int memfd;

	if (nvg_bound_driver(bdf, drv, sizeof(drv)))
		die(bdf);
	if (nvg_open_group(bdf, &dev))
		die("VFIO open");
	printf("driver %s\n", drv);

	for (i = 0; i < ARRAY_SIZE(regions); i++) {
		if (!nvg_sparse_area(dev.device_fd, regions[i].index, &offset,
				     &len) || offset)
			die("no mmap-able area at the start of the region");
		measure_mapping(dev.device_fd, regions[i].name,
				regions[i].index, len);
		measure_rw(dev.device_fd, regions[i].name,
			   nvg_region_offset(regions[i].index), len, buf);
	}
	nvg_close(&dev);

	src = anon_buffer(MEMCPY_SPAN);
	for (i = 0; i < ARRAY_SIZE(req_sizes); i++)
		printf("memcpy_%zu %.1f\n", req_sizes[i],
		       memcpy_bandwidth(src, buf, req_sizes[i]));

	/* What the kernel's own copy routines reach: a tmpfs file */
	memfd = memfd_create("nvgrace_bench", 0);
	if (memfd < 0 || ftruncate(memfd, MEMCPY_SPAN) ||
	    pwrite(memfd, src, MEMCPY_SPAN, 0) != MEMCPY_SPAN)
		die("memfd");
	measure_rw(memfd, "memfd", 0, MEMCPY_SPAN, buf);
	close(memfd);
	return 0;
}

#define DMA_IOVA	0x1000000000ULL	/* 64 GiB */
/* A real-sized GPU is touched once per 2 MiB, and read, not written */
#define SCALE_STRIDE	(2ULL << 20)
/*
 * The type1 DMA map is timed over the first 4 GiB of a region: 6.12's
 * type1 resolves a PFN map one page at a time, so the time grows with the
 * size, and the whole of a 288 GiB GPU would take most of an hour under
 * TCG and the debug kernel (about 5 s per GiB on x86_64)
 */
#define SCALE_DMA_MAX	(4 * SZ_1G)

/* Whether the machine's IOMMU reaches the real-sized GPUs: see below */
#ifdef __aarch64__
#define SCALE_DMA	false
#else
#define SCALE_DMA	true
#endif

/*
 * All of region @index of a real-sized GPU: mmap() it, touch it, and map
 * it for DMA over @dev as QEMU does at VM start, each timed.  No DMA map on
 * arm64: the SMMUv3 of QEMU 7.2 has 44-bit output addresses, below these
 * GPUs, and the arm-smmu-v3 driver warns when asked to map above them.
 */
static void measure_scale_region(struct nvg_dev *dev, const char *name,
				 unsigned int index, size_t len)
{
	size_t dma = len < SCALE_DMA_MAX ? len : SCALE_DMA_MAX, off;
	long pte = nvg_vm_pte_kib(), faults;
	struct mapping m;
	double start, t;

	map_region(dev->device_fd, index, len, &m);
	printf("%s.gib %.3f\n", name, (double)len / SZ_1G);
	printf("%s.mmap_ms %.1f\n", name, m.seconds * 1e3);
	printf("%s.mmap_vmpte_kib %ld\n", name, nvg_vm_pte_kib() - pte);
	faults = nvg_minor_faults();
	start = nvg_now();
	for (off = 0; off < len; off += SCALE_STRIDE)
		__atomic_load_n(m.addr + off, __ATOMIC_RELAXED);
	printf("%s.touch_ms %.1f\n", name, (nvg_now() - start) * 1e3);
	printf("%s.touch_faults %ld\n", name, nvg_minor_faults() - faults);
	printf("%s.vmpte_kib %ld\n", name, nvg_vm_pte_kib() - pte);
	if (!SCALE_DMA) {
		unmap_region(&m);
		return;
	}
	start = nvg_now();
	if (nvg_dma_map(dev, m.addr, DMA_IOVA, dma))
		die("VFIO_IOMMU_MAP_DMA");
	t = nvg_now() - start;
	printf("%s.type1_gib %.3f\n", name, (double)dma / SZ_1G);
	printf("%s.type1_map_s %.3f\n", name, t);
	printf("%s.type1_whole_s %.1f\n", name, t * len / dma);
	start = nvg_now();
	if (nvg_dma_unmap(dev, DMA_IOVA, dma) != (long long)dma)
		die("VFIO_IOMMU_UNMAP_DMA");
	printf("%s.type1_unmap_s %.3f\n", name, nvg_now() - start);
	unmap_region(&m);
}

/* What IOMMU_IOAS_MAP of all of region @index answers: 0 or its errno */
static void measure_iommufd_region(struct nvg_dev *dev, const char *name,
				   unsigned int index, size_t len)
{
	struct mapping m;
	int ret;

	map_region(dev->device_fd, index, len, &m);
	ret = nvg_dma_map(dev, m.addr, DMA_IOVA, len);
	printf("%s.iommufd_map_errno %d\n", name, ret ? errno : 0);
	if (!ret)
		nvg_dma_unmap(dev, DMA_IOVA, len);
	unmap_region(&m);
}

static int measure_scale(const char *bdf)
{
	struct nvg_dev dev;
	__u64 offset, len[ARRAY_SIZE(regions)];
	unsigned int i;
	char drv[64];

	if (nvg_bound_driver(bdf, drv, sizeof(drv)))
		die(bdf);
	printf("driver %s\n", drv);
	if (nvg_open_group(bdf, &dev))
		die("VFIO open");
	for (i = 0; i < ARRAY_SIZE(regions); i++) {
		if (!nvg_sparse_area(dev.device_fd, regions[i].index, &offset,
				     &len[i]) || offset)
			die("no mmap-able area at the start of the region");
		measure_scale_region(&dev, regions[i].name, regions[i].index,
				     len[i]);
	}
	nvg_close(&dev);
	if (!SCALE_DMA)
		return 0;
	if (nvg_open_cdev(bdf, &dev))
		die("VFIO open");
	for (i = 0; i < ARRAY_SIZE(regions); i++)
		measure_iommufd_region(&dev, regions[i].name, regions[i].index,
				       len[i]);
	nvg_close(&dev);
	return 0;
}

/* The figures of one "measure" output */
struct run {
	char driver[64];
	unsigned int n;
	char key[64][40];
	double val[64];
};

static void load_run(const char *path, struct run *r)
{
	char key[40];
	double val;
	FILE *f = fopen(path, "r");

	if (!f)
		die(path);
	memset(r, 0, sizeof(*r));
	if (fscanf(f, "driver %63s\n", r->driver) != 1)
		die("no driver line");
	while (r->n < ARRAY_SIZE(r->val) &&
	       fscanf(f, "%39s %lf\n", key, &val) == 2) {
		snprintf(r->key[r->n], sizeof(r->key[0]), "%s", key);
		r->val[r->n++] = val;
	}
	fclose(f);
}

static double lookup(const struct run *r, const char *key)
{
	unsigned int i;

	for (i = 0; i < r->n; i++)
		if (!strcmp(r->key[i], key))
			return r->val[i];
	fprintf(stderr, "nvgrace_bench: %s missing from the %s run\n", key,
		r->driver);
	exit(1);
}

static void ratio(char *buf, size_t len, double num, double den)
{
	if (den > 0)
		snprintf(buf, len, "%.4g", num / den);
	else
		snprintf(buf, len, "-");
}

/*
 * One line of the table: the reference and our figure, their ratio and,
 * for a bandwidth, each as a fraction of its run's memcpy bandwidth.
 */
static void row(const char *label, double ref, double ours, double ref_cpy,
		double ours_cpy)
{
	char r[3][16];

	ratio(r[0], sizeof(r[0]), ours, ref);
	ratio(r[1], sizeof(r[1]), ref, ref_cpy);
	ratio(r[2], sizeof(r[2]), ours, ours_cpy);
	if (ref_cpy > 0)
		printf("%-30s %12.1f %12.1f %9s %9s %9s\n", label, ref, ours,
		       r[0], r[1], r[2]);
	else
		printf("%-30s %12.1f %12.1f %9s\n", label, ref, ours, r[0]);
}

static void key_row(const struct run *ref, const struct run *ours,
		    const char *key, const char *label)
{
	row(label, lookup(ref, key), lookup(ours, key), 0, 0);
}

static int table(const char *ref_path, const char *ours_path)
{
	static struct run ref, ours;
	char key[40], label[40];
	unsigned int i, j, k;

	load_run(ref_path, &ref);
	load_run(ours_path, &ours);
	printf("reference: %s, ours: %s\n", ref.driver, ours.driver);
	printf("%-30s %12s %12s %9s %9s %9s\n", "figure", "reference", "ours",
	       "ours/ref", "ref/cpy", "ours/cpy");

	for (i = 0; i < ARRAY_SIZE(regions); i++) {
		const char *name = regions[i].name;
		static const char *const figures[][2] = {
			{ "mmap_page_us", "mmap 1 page (us)" },
			{ "mmap_us", "mmap whole (us)" },
			{ "touch_ms", "first touch (ms)" },
			{ "touch_faults", "first touch faults" },
			{ "vmpte_kib", "VmPTE after touch (KiB)" },
			{ "second_pass_ms", "second pass (ms)" },
		};

		snprintf(key, sizeof(key), "%s.length", name);
		printf("%s: %.0f bytes mapped\n", name, lookup(&ours, key));
		for (j = 0; j < ARRAY_SIZE(figures); j++) {
			snprintf(key, sizeof(key), "%s.%s", name,
				 figures[j][0]);
			snprintf(label, sizeof(label), "  %s", figures[j][1]);
			key_row(&ref, &ours, key, label);
		}
		for (j = 0; j < ARRAY_SIZE(req_sizes); j++) {
			for (k = 0; k < 2; k++) {
				const char *op = k ? "pwrite" : "pread";
				double ref_cpy, ours_cpy;

				snprintf(key, sizeof(key), "memcpy_%zu",
					 req_sizes[j]);
				ref_cpy = lookup(&ref, key);
				ours_cpy = lookup(&ours, key);
				snprintf(key, sizeof(key), "%s.%s_%zu", name,
					 op, req_sizes[j]);
				snprintf(label, sizeof(label),
					 "  %s %zu KiB (MB/s)", op,
					 req_sizes[j] >> 10);
				row(label, lookup(&ref, key),
				    lookup(&ours, key), ref_cpy, ours_cpy);
			}
		}
	}
	printf("ceilings: memcpy of anonymous memory; pread/pwrite of a memfd (MB/s)\n");
	for (j = 0; j < ARRAY_SIZE(req_sizes); j++) {
		snprintf(key, sizeof(key), "memcpy_%zu", req_sizes[j]);
		snprintf(label, sizeof(label), "  memcpy %zu KiB",
			 req_sizes[j] >> 10);
		key_row(&ref, &ours, key, label);
		for (k = 0; k < 2; k++) {
			snprintf(key, sizeof(key), "memfd.%s_%zu",
				 k ? "pwrite" : "pread", req_sizes[j]);
			snprintf(label, sizeof(label), "  memfd %s %zu KiB",
				 k ? "pwrite" : "pread", req_sizes[j] >> 10);
			key_row(&ref, &ours, key, label);
		}
	}
	return 0;
}

/* A figure of the two "scale" outputs, when both have it */
static void scale_row(const struct run *ref, const struct run *ours,
		      const char *key, const char *label)
{
	unsigned int i;

	for (i = 0; i < ours->n; i++)
		if (!strcmp(ours->key[i], key))
			break;
	if (i == ours->n)
		printf("%-30s %12s %12s\n", label, "-", "-");
	else
		key_row(ref, ours, key, label);
}

static int scale_table(const char *ref_path, const char *ours_path)
{
	static const char *const figures[][2] = {
		{ "gib", "GiB mapped" },
		{ "mmap_ms", "mmap whole (ms)" },
		{ "mmap_vmpte_kib", "VmPTE after mmap (KiB)" },
		{ "touch_ms", "touch per 2 MiB (ms)" },
		{ "touch_faults", "  its faults" },
		{ "vmpte_kib", "VmPTE after touch (KiB)" },
		{ "type1_gib", "type1 MAP_DMA of (GiB)" },
		{ "type1_map_s", "  its time (s)" },
		{ "type1_unmap_s", "  UNMAP_DMA (s)" },
		{ "type1_whole_s", "  whole region, at that pace (s)" },
		{ "iommufd_map_errno", "iommufd IOAS_MAP errno" },
	};
	static struct run ref, ours;
	char key[40], label[40];
	unsigned int i, j;

	load_run(ref_path, &ref);
	load_run(ours_path, &ours);
	printf("reference: %s, ours: %s\n", ref.driver, ours.driver);
	printf("%-30s %12s %12s %9s\n", "figure", "reference", "ours",
	       "ours/ref");
	for (i = 0; i < ARRAY_SIZE(regions); i++) {
		printf("%s:\n", regions[i].name);
		for (j = 0; j < ARRAY_SIZE(figures); j++) {
			snprintf(key, sizeof(key), "%s.%s", regions[i].name,
				 figures[j][0]);
			snprintf(label, sizeof(label), "  %s", figures[j][1]);
			scale_row(&ref, &ours, key, label);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "measure"))
		return measure(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "table"))
		return table(argv[2], argv[3]);
	if (argc == 3 && !strcmp(argv[1], "scale"))
		return measure_scale(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "scaletable"))
		return scale_table(argv[2], argv[3]);
	fprintf(stderr,
		"usage: %s measure BDF | table REFERENCE OURS | scale BDF | scaletable REFERENCE OURS\n",
		argv[0]);
	return 2;
}
