/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * User-space helpers of the nvgrace-gpu-vfio-pci tests: binding a PCI
 * function to a driver through sysfs and opening it through either VFIO
 * uAPI (legacy group/container, or iommufd with the device cdev).
 */
#ifndef NVGRACE_VFIO_H
#define NVGRACE_VFIO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <linux/types.h>
#include <linux/vfio.h>

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#endif

#define NVG_DRIVER	"nvgrace_gpu_vfio_pci"

/* Emulated BAR register flags: 64-bit prefetchable memory */
#define NVG_BAR_FLAGS	0xcULL

/* BAR0 registers that read NVG_READY when the GPU memory is usable */
#define NVG_READY_LINK	0x1498
#define NVG_READY_HBM	0x200bc
#define NVG_READY	0xffU

/*
 * The readiness wait of the driver: how often it polls, how long at most,
 * and what it logs; a test that makes the GPU late sets it ready LATE
 * seconds after it starts to wait
 */
#define NVG_POLL_INTERVAL	0.1
#define NVG_READY_BOUND		30.0
#define NVG_LATE		1.5
#define NVG_MSG_WAITED		": GPU memory ready after "
#define NVG_MSG_TIMEOUT		": GPU memory not ready after 30000 ms"
#define NVG_MSG_GONE		": GPU memory not ready: the GPU is gone"
/*
 * What a wait may take beyond the poll that ends it.  For a GPU that
 * becomes ready: the bind or the access itself, and the wake-up of the
 * thread that sets the registers (bind 0.02-0.03 s; the waits measured
 * 1.51-1.65 s for NVG_LATE 1.5 s).  For one that does not: the timeout
 * message, the hand-over to the waiters queued on the poll, and the return
 * to user space (measured 30.1 s on x86_64, 30.1-30.6 s on arm64, whose
 * TCG guest is slower).
 */
#define NVG_READY_SLACK		0.3
#define NVG_TIMEOUT_SLACK	2.0

struct nvg_dev {
	int device_fd;
	int container_fd;	/* group path only */
	int group_fd;		/* group path only */
	int iommufd;		/* cdev path only */
	__u32 ioas_id;		/* cdev path only: the IOAS it is attached to */
};

int nvg_write_file(const char *path, const char *val);
int nvg_unbind(const char *bdf);
int nvg_override(const char *bdf, const char *driver);
int nvg_bind(const char *bdf, const char *driver);
int nvg_set_ready(const char *bdf, __u32 val);
int nvg_set_ready_regs(const char *bdf, __u32 link, __u32 hbm);
int nvg_bound_driver(const char *bdf, char *name, size_t len);
int nvg_bar_start(const char *bdf, unsigned int bar, __u64 *start);
int nvg_open_group(const char *bdf, struct nvg_dev *dev);
int nvg_open_cdev(const char *bdf, struct nvg_dev *dev);
void nvg_close(struct nvg_dev *dev);
int nvg_dma_map(struct nvg_dev *dev, void *va, __u64 iova, __u64 len);
long long nvg_dma_unmap(struct nvg_dev *dev, __u64 iova, __u64 len);

int nvg_region_info(int fd, unsigned int index, struct vfio_region_info *info);
struct vfio_region_info *nvg_region_info_caps(int fd, unsigned int index);
const struct vfio_info_cap_header *
nvg_find_cap(const struct vfio_region_info *info, __u16 id);
bool nvg_sparse_area(int fd, unsigned int index, __u64 *offset, __u64 *size);

off_t nvg_region_offset(unsigned int index);
ssize_t nvg_cfg_read(int fd, off_t pos, void *buf, size_t len);
ssize_t nvg_cfg_write(int fd, off_t pos, const void *buf, size_t len);
__u64 nvg_cfg_read64(int fd, off_t pos);

/*
 * The kernel messages logged from nvg_klog_start() on, one per line of
 * @text as "LEVEL;message": "3;" starts an error
 */
struct nvg_klog {
	int fd;			/* /dev/kmsg, at the next record to read */
	char *text;
	size_t len;
	bool lost;		/* some were overwritten before they were read */
};

int nvg_klog_start(struct nvg_klog *log);
int nvg_klog_count(struct nvg_klog *log, const char *needle);
void nvg_klog_stop(struct nvg_klog *log);
double nvg_now(void);
int nvg_touch(__u8 *p, __u8 val, double *took);
long nvg_minor_faults(void);
long nvg_vm_pte_kib(void);
const char *nvg_pat_type(__u64 phys);
int nvg_kernel_maps(__u64 start, __u64 end);

#endif /* NVGRACE_VFIO_H */
