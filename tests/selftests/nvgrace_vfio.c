// SPDX-License-Identifier: GPL-2.0-only
/*
 * User-space helpers of the nvgrace-gpu-vfio-pci tests: see nvgrace_vfio.h.
 * Every function returns -1 with errno set, or NULL, on failure.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <linux/iommufd.h>

#include "nvgrace_vfio.h"

/* Write @val to the sysfs (or other) file @path */
int nvg_write_file(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, val, strlen(val));
	close(fd);
	return n < 0 ? -1 : 0;
}

/* The last component of what the sysfs link @attr of @bdf points to */
static int link_name(const char *bdf, const char *attr, char *name,
		     size_t len)
{
	char path[PATH_MAX], target[PATH_MAX];
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/%s", bdf, attr);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return -1;
	target[n] = '\0';
	snprintf(name, len, "%s", strrchr(target, '/') + 1);
	return 0;
}

int nvg_bound_driver(const char *bdf, char *name, size_t len)
{
	return link_name(bdf, "driver", name, len);
}

/* The physical address where BAR @bar of @bdf starts, from sysfs */
int nvg_bar_start(const char *bdf, unsigned int bar, __u64 *start)
{
	unsigned long long first, last, flags;
	char path[PATH_MAX];
	unsigned int i;
	int ret = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource", bdf);
	f = fopen(path, "r");
	if (!f)
		return -1;
	for (i = 0; i <= bar; i++) {
		if (fscanf(f, "%llx %llx %llx", &first, &last, &flags) != 3)
			break;
		if (i == bar && first) {
			*start = first;
			ret = 0;
		}
	}
	fclose(f);
	if (ret)
		errno = ENOENT;
	return ret;
}

/* Unbind @bdf from its driver, if it has one */
int nvg_unbind(const char *bdf)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", bdf);
	if (access(path, F_OK))
		return 0;
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver/unbind",
		 bdf);
	return nvg_write_file(path, bdf);
}

/* Have @bdf bound to @driver by the next drivers_probe, and to no other */
int nvg_override(const char *bdf, const char *driver)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver_override",
		 bdf);
	return nvg_write_file(path, driver);
}

/* Bind @bdf to @driver the way operators do: driver_override + drivers_probe */
int nvg_bind(const char *bdf, const char *driver)
{
	char cur[64];

	if (!nvg_bound_driver(bdf, cur, sizeof(cur)) && !strcmp(cur, driver))
		return 0;
	if (nvg_unbind(bdf) || nvg_override(bdf, driver))
		return -1;
	if (nvg_write_file("/sys/bus/pci/drivers_probe", bdf))
		return -1;
	if (nvg_bound_driver(bdf, cur, sizeof(cur)) || strcmp(cur, driver)) {
		errno = ENODEV;
		return -1;
	}
	return 0;
}

static void nvg_init(struct nvg_dev *dev)
{
	dev->device_fd = -1;
	dev->container_fd = -1;
	dev->group_fd = -1;
	dev->iommufd = -1;
}

int nvg_open_group(const char *bdf, struct nvg_dev *dev)
{
	struct vfio_group_status status = { .argsz = sizeof(status) };
	char path[PATH_MAX], group[64];

	nvg_init(dev);
	if (link_name(bdf, "iommu_group", group, sizeof(group)))
		return -1;
	snprintf(path, sizeof(path), "/dev/vfio/%s", group);

	dev->container_fd = open("/dev/vfio/vfio", O_RDWR);
	if (dev->container_fd < 0)
		goto fail;
	dev->group_fd = open(path, O_RDWR);
	if (dev->group_fd < 0)
		goto fail;
	if (ioctl(dev->group_fd, VFIO_GROUP_GET_STATUS, &status))
		goto fail;
	if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		errno = EBUSY;
		goto fail;
	}
	if (ioctl(dev->group_fd, VFIO_GROUP_SET_CONTAINER, &dev->container_fd))
		goto fail;
	if (ioctl(dev->container_fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		goto fail;
	dev->device_fd = ioctl(dev->group_fd, VFIO_GROUP_GET_DEVICE_FD, bdf);
	if (dev->device_fd < 0)
		goto fail;
	return 0;
fail:
	nvg_close(dev);
	return -1;
}

int nvg_open_cdev(const char *bdf, struct nvg_dev *dev)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
	struct vfio_device_attach_iommufd_pt attach = {
		.argsz = sizeof(attach)
	};
	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	char path[PATH_MAX];
	struct dirent *ent;
	DIR *dir;

	nvg_init(dev);
	/* The device's cdev, vfioN, is the one entry of its vfio-dev folder */
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vfio-dev", bdf);
	dir = opendir(path);
	if (!dir)
		return -1;
	path[0] = '\0';
	while ((ent = readdir(dir)))
		if (!strncmp(ent->d_name, "vfio", 4))
			snprintf(path, sizeof(path), "/dev/vfio/devices/%s",
				 ent->d_name);
	closedir(dir);
	if (!path[0]) {
		errno = ENOENT;
		return -1;
	}

	dev->iommufd = open("/dev/iommu", O_RDWR);
	if (dev->iommufd < 0)
		goto fail;
	dev->device_fd = open(path, O_RDWR);
	if (dev->device_fd < 0)
		goto fail;
	bind.iommufd = dev->iommufd;
	if (ioctl(dev->device_fd, VFIO_DEVICE_BIND_IOMMUFD, &bind))
		goto fail;
	if (ioctl(dev->iommufd, IOMMU_IOAS_ALLOC, &ioas))
		goto fail;
	dev->ioas_id = ioas.out_ioas_id;
	attach.pt_id = ioas.out_ioas_id;
	if (ioctl(dev->device_fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach))
		goto fail;
	return 0;
fail:
	nvg_close(dev);
	return -1;
}

void nvg_close(struct nvg_dev *dev)
{
	int *fds[] = { &dev->device_fd, &dev->group_fd, &dev->container_fd,
		       &dev->iommufd };
	size_t i;

	for (i = 0; i < ARRAY_SIZE(fds); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}

/*
 * Map @len bytes of user memory at @va for DMA at @iova, as a hypervisor
 * does for a BAR's mmap: through the container's type1 IOMMU, or into the
 * IOAS of the device's iommufd.  0 on success, else -1 with errno set.
 */
int nvg_dma_map(struct nvg_dev *dev, void *va, __u64 iova, __u64 len)
{
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)va, .iova = iova, .size = len,
	};
	struct iommu_ioas_map ioas_map = {
		.size = sizeof(ioas_map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = dev->ioas_id,
		.user_va = (uintptr_t)va, .length = len, .iova = iova,
	};

	if (dev->container_fd >= 0)
		return ioctl(dev->container_fd, VFIO_IOMMU_MAP_DMA, &map);
	return ioctl(dev->iommufd, IOMMU_IOAS_MAP, &ioas_map);
}

/*
 * Unmap what nvg_dma_map() mapped at [@iova, @iova + @len): the number of
 * bytes unmapped, or -1 with errno set
 */
long long nvg_dma_unmap(struct nvg_dev *dev, __u64 iova, __u64 len)
{
	struct vfio_iommu_type1_dma_unmap unmap = {
		.argsz = sizeof(unmap), .iova = iova, .size = len,
	};
	struct iommu_ioas_unmap ioas_unmap = {
		.size = sizeof(ioas_unmap), .ioas_id = dev->ioas_id,
		.iova = iova, .length = len,
	};

	if (dev->container_fd >= 0) {
		if (ioctl(dev->container_fd, VFIO_IOMMU_UNMAP_DMA, &unmap))
			return -1;
		return unmap.size;
	}
	if (ioctl(dev->iommufd, IOMMU_IOAS_UNMAP, &ioas_unmap))
		return -1;
	return ioas_unmap.length;
}

int nvg_region_info(int fd, unsigned int index, struct vfio_region_info *info)
{
	memset(info, 0, sizeof(*info));
	info->argsz = sizeof(*info);
	info->index = index;
	return ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, info);
}

/* Region info with its capability chain, in a buffer the caller frees */
struct vfio_region_info *nvg_region_info_caps(int fd, unsigned int index)
{
	struct vfio_region_info head, *info;

	if (nvg_region_info(fd, index, &head))
		return NULL;
	info = calloc(1, head.argsz);
	if (!info)
		return NULL;
	info->argsz = head.argsz;
	info->index = index;
	if (ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, info)) {
		free(info);
		return NULL;
	}
	return info;
}

const struct vfio_info_cap_header *
nvg_find_cap(const struct vfio_region_info *info, __u16 id)
{
	const struct vfio_info_cap_header *cap;
	__u32 off = info->cap_offset;

	if (!(info->flags & VFIO_REGION_INFO_FLAG_CAPS))
		return NULL;
	while (off && off + sizeof(*cap) <= info->argsz) {
		cap = (const void *)((const char *)info + off);
		if (cap->id == id)
			return cap;
		off = cap->next;
	}
	return NULL;
}

/*
 * The one mmap-able area of a region, from its sparse mmap capability;
 * false when the region has no such capability.
 */
bool nvg_sparse_area(int fd, unsigned int index, __u64 *offset, __u64 *size)
{
	const struct vfio_region_info_cap_sparse_mmap *sparse;
	struct vfio_region_info *info = nvg_region_info_caps(fd, index);
	bool found = false;

	if (!info)
		return false;
	sparse = (const void *)nvg_find_cap(info,
					    VFIO_REGION_INFO_CAP_SPARSE_MMAP);
	if (sparse && sparse->nr_areas == 1) {
		*offset = sparse->areas[0].offset;
		*size = sparse->areas[0].size;
		found = true;
	}
	free(info);
	return found;
}

/* File offset of a region: the index encoding of vfio-pci */
off_t nvg_region_offset(unsigned int index)
{
	return (off_t)index << 40;
}

ssize_t nvg_cfg_read(int fd, off_t pos, void *buf, size_t len)
{
	return pread(fd, buf, len,
		     nvg_region_offset(VFIO_PCI_CONFIG_REGION_INDEX) + pos);
}

ssize_t nvg_cfg_write(int fd, off_t pos, const void *buf, size_t len)
{
	return pwrite(fd, buf, len,
		      nvg_region_offset(VFIO_PCI_CONFIG_REGION_INDEX) + pos);
}

/* A 64-bit config register, or all-ones when it cannot be read */
__u64 nvg_cfg_read64(int fd, off_t pos)
{
	__u64 val;

	if (nvg_cfg_read(fd, pos, &val, sizeof(val)) != sizeof(val))
		return ~0ULL;
	return val;
}

/*
 * The kernel log from a point on, read through /dev/kmsg.  The file
 * position of an open /dev/kmsg is a record sequence number: the records
 * that came after nvg_klog_start() are read in order, and a read fails
 * with EPIPE when the kernel overwrote some of them before they were read,
 * so a test never counts in a window that lost records.
 */
int nvg_klog_start(struct nvg_klog *log)
{
	log->text = NULL;
	log->len = 0;
	log->lost = false;
	log->fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
	if (log->fd < 0)
		return -1;
	if (lseek(log->fd, 0, SEEK_END) < 0) {
		nvg_klog_stop(log);
		return -1;
	}
	return 0;
}

/*
 * Append one /dev/kmsg record ("priority,sequence,...;message\n" and
 * continuation lines) as the line "LEVEL;message", LEVEL being the
 * console log level digit (3 for an error)
 */
static int klog_append(struct nvg_klog *log, const char *rec, size_t n)
{
	const char *msg = memchr(rec, ';', n), *end;
	unsigned long prio = strtoul(rec, NULL, 10);
	char *text;
	size_t len;

	if (!msg)
		return 0;
	msg++;
	end = memchr(msg, '\n', rec + n - msg);
	len = (end ? end : rec + n) - msg;
	text = realloc(log->text, log->len + len + 4);
	if (!text)
		return -1;
	log->text = text;
	text += log->len;
	text[0] = '0' + (prio & 7);
	text[1] = ';';
	memcpy(text + 2, msg, len);
	text[len + 2] = '\n';
	text[len + 3] = '\0';
	log->len += len + 3;
	return 0;
}

/* Read the records logged since the last read: 0, or -1 if any was lost */
static int klog_update(struct nvg_klog *log)
{
	char rec[8192];
	ssize_t n;

	if (log->fd < 0 || log->lost)
		return -1;
	for (;;) {
		n = read(log->fd, rec, sizeof(rec));
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0 || klog_append(log, rec, n)) {
			/* EPIPE: records overwritten before they were read */
			log->lost = true;
			return -1;
		}
	}
}

/*
 * How many times @needle stands in the kernel messages logged since
 * nvg_klog_start(), or -1 when they cannot all be read
 */
int nvg_klog_count(struct nvg_klog *log, const char *needle)
{
	const char *p;
	int found = 0;

	if (klog_update(log))
		return -1;
	if (!log->text)
		return 0;
	for (p = strstr(log->text, needle); p; p = strstr(p + 1, needle))
		found++;
	return found;
}

void nvg_klog_stop(struct nvg_klog *log)
{
	if (log->fd >= 0)
		close(log->fd);
	log->fd = -1;
	free(log->text);
	log->text = NULL;
	log->len = 0;
}

/* Turn on memory decode of @bdf, so that writes to its BARs land */
static int nvg_enable_memory(const char *bdf)
{
	char path[PATH_MAX];
	__u16 cmd;
	int fd, ret = -1;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/config", bdf);
	fd = open(path, O_RDWR);
	if (fd < 0)
		return -1;
	if (pread(fd, &cmd, sizeof(cmd), 4) == sizeof(cmd)) {
		cmd |= 0x2;	/* PCI_COMMAND_MEMORY */
		if (pwrite(fd, &cmd, sizeof(cmd), 4) == sizeof(cmd))
			ret = 0;
	}
	close(fd);
	return ret;
}

/*
 * Set the readiness registers in BAR0 of the stand-in GPU @bdf, as its
 * firmware does: the C2C link register to @link, the HBM training one to
 * @hbm; NVG_READY in both is ready, anything else is not.  The stand-in's
 * BAR0 is RAM (bochs-display), so the values stay; the write goes through
 * the sysfs resource file, whichever driver the function has.
 */
int nvg_set_ready_regs(const char *bdf, __u32 link_val, __u32 hbm_val)
{
	size_t len = NVG_READY_HBM + sizeof(__u32);
	char path[PATH_MAX];
	__u32 *link, *hbm;
	long page = sysconf(_SC_PAGESIZE);
	int fd, ret = 0;
	void *bar0;

	len = (len + page - 1) / page * page;
	if (nvg_enable_memory(bdf))
		return -1;
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource0", bdf);
	fd = open(path, O_RDWR | O_SYNC);
	if (fd < 0)
		return -1;
	bar0 = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (bar0 == MAP_FAILED)
		return -1;
	link = (__u32 *)((char *)bar0 + NVG_READY_LINK);
	hbm = (__u32 *)((char *)bar0 + NVG_READY_HBM);
	/* One 32-bit access each, as to a device register */
	__atomic_store_n(link, link_val, __ATOMIC_RELAXED);
	__atomic_store_n(hbm, hbm_val, __ATOMIC_RELAXED);
	if (__atomic_load_n(link, __ATOMIC_RELAXED) != link_val ||
	    __atomic_load_n(hbm, __ATOMIC_RELAXED) != hbm_val) {
		errno = EIO;
		ret = -1;
	}
	munmap(bar0, len);
	return ret;
}

/* Both readiness registers of @bdf to @val */
int nvg_set_ready(const char *bdf, __u32 val)
{
	return nvg_set_ready_regs(bdf, val, val);
}

/*
 * The x86 PAT memory type on record for the page at @phys, as the
 * debugfs list names it ("write-back", "write-combining", ...), or NULL.
 */
const char *nvg_pat_type(__u64 phys)
{
	static char type[32];
	unsigned long long start, end;
	const char *found = NULL;
	char line[256];
	FILE *f;

	f = fopen("/sys/kernel/debug/x86/pat_memtype_list", "r");
	if (!f)
		return NULL;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "PAT: [mem 0x%llx-0x%llx] %31s",
			   &start, &end, type) != 3)
			continue;
		if (phys >= start && phys < end) {
			found = type;
			break;
		}
	}
	fclose(f);
	return found;
}

/*
 * How many kernel mappings of physical memory (ioremap(), memremap()) start
 * in [@start, @end), from /proc/vmallocinfo; -1 when it cannot be read.
 */
int nvg_kernel_maps(__u64 start, __u64 end)
{
	unsigned long long phys;
	char line[512], *at;
	int n = 0;
	FILE *f;

	f = fopen("/proc/vmallocinfo", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		at = strstr(line, " phys=");
		if (at && sscanf(at, " phys=%llx", &phys) == 1 &&
		    phys >= start && phys < end)
			n++;
	}
	fclose(f);
	return n;
}

/* CLOCK_MONOTONIC, in seconds */
double nvg_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static sigjmp_buf nvg_touch_jmp;

static void nvg_touch_caught(int sig)
{
	siglongjmp(nvg_touch_jmp, sig);
}

/*
 * Store @val at @p in this process, catching SIGBUS and SIGSEGV; the
 * seconds the store took, its fault included, go to @took unless NULL.
 * Returns 0 when the store worked, else the signal it raised.  Timing the
 * store here, not in a child, leaves fork() and exit() out of @took.
 */
int nvg_touch(__u8 *p, __u8 val, double *took)
{
	struct sigaction sa = { .sa_handler = nvg_touch_caught };
	struct sigaction old_bus, old_segv;
	double start;
	int sig;

	sigaction(SIGBUS, &sa, &old_bus);
	sigaction(SIGSEGV, &sa, &old_segv);
	start = nvg_now();
	sig = sigsetjmp(nvg_touch_jmp, 1);
	if (!sig)
		__atomic_store_n(p, val, __ATOMIC_RELAXED);
	if (took)
		*took = nvg_now() - start;
	sigaction(SIGBUS, &old_bus, NULL);
	sigaction(SIGSEGV, &old_segv, NULL);
	return sig;
}

/* Minor page faults of this process so far */
long nvg_minor_faults(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

/* Page-table memory of this process in KiB, from VmPTE in /proc/self/status */
long nvg_vm_pte_kib(void)
{
	char line[128];
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmPTE: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}
