// SPDX-License-Identifier: GPL-2.0-only
/*
 * VFIO PCI variant driver for the GPU of the NVIDIA Grace Hopper and Grace
 * Blackwell Superchips.
 *
 * The GPU memory is not behind a PCI BAR: it is a host physical range on the
 * cache-coherent chip-to-chip link, described by ACPI properties of the GPU.
 * The driver presents it to user space as emulated 64-bit prefetchable
 * BARs: usemem, mapped cacheable, as BAR4 (VFIO regions 4 and 5), and, on a
 * GPU with the MIG hardware defect (Hopper), resmem, mapped write-combining,
 * as BAR2 (VFIO regions 2 and 3).  Otherwise BAR2 is the GPU's own.  Without
 * those properties the device is handled exactly as by vfio-pci.
 */

#include <linux/module.h>
#include <linux/overflow.h>
#include <linux/pci.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vfio.h>

#include "nvgrace.h"

static struct nvgrace_gpu_device *to_nvdev(struct vfio_device *core_vdev)
{
	return container_of(core_vdev, struct nvgrace_gpu_device, core.vdev);
}

/*
 * Whether a region belongs to an emulated BAR: regions 4 and 5 (usemem and
 * the upper half of its BAR) on every device with GPU memory, regions 2
 * and 3 only when resmem takes the place of the GPU's own BAR2.
 */
static bool nvgrace_gpu_emulates(const struct nvgrace_gpu_device *nvdev,
				 unsigned int index)
{
	switch (index) {
	case VFIO_PCI_BAR2_REGION_INDEX:
	case VFIO_PCI_BAR3_REGION_INDEX:
		return nvgrace_has_resmem(nvdev);
	case VFIO_PCI_BAR4_REGION_INDEX:
	case VFIO_PCI_BAR5_REGION_INDEX:
		return nvgrace_has_mem(nvdev);
	default:
		return false;
	}
}

static int nvgrace_gpu_init_dev(struct vfio_device *core_vdev)
{
	struct nvgrace_gpu_device *nvdev = to_nvdev(core_vdev);

	/* No poll has failed: reset_seq never takes this value */
	nvdev->fail_seq = -1;
	init_rwsem(&nvdev->kmap_sem);
	mutex_init(&nvdev->bar_lock);
	mutex_init(&nvdev->ready_lock);
	return vfio_pci_core_init_dev(core_vdev);
}

static void nvgrace_gpu_release_dev(struct vfio_device *core_vdev)
{
	struct nvgrace_gpu_device *nvdev = to_nvdev(core_vdev);

	mutex_destroy(&nvdev->ready_lock);
	mutex_destroy(&nvdev->bar_lock);
	vfio_pci_core_release_dev(core_vdev);
}

/*
 * Claim the GPU's own BARs that the emulated ones replace, for as long as
 * the device is open.  User space never reaches them: vfio-pci-core then
 * cannot map them for any request (an ioeventfd, say) whatever region the
 * request names when vfio-pci-core reads it.
 */
static int nvgrace_gpu_claim_hidden_bars(struct nvgrace_gpu_device *nvdev)
{
	struct pci_dev *pdev = nvdev->core.pdev;
	int bar, ret;

	for (bar = PCI_STD_RESOURCES; bar <= PCI_STD_RESOURCE_END; bar++) {
		/* Nor can vfio-pci-core map a BAR the PCI core did not assign */
		if (!nvgrace_gpu_emulates(nvdev, bar) ||
		    !pci_resource_len(pdev, bar) || !pdev->resource[bar].parent)
			continue;
		ret = pci_request_region(pdev, bar, KBUILD_MODNAME " (hidden)");
		if (ret)
			return ret;
		nvdev->hidden_bars |= BIT(bar);
	}
	return 0;
}

static void nvgrace_gpu_release_hidden_bars(struct nvgrace_gpu_device *nvdev)
{
	int bar;

	for (bar = PCI_STD_RESOURCES; bar <= PCI_STD_RESOURCE_END; bar++)
		if (nvdev->hidden_bars & BIT(bar))
			pci_release_region(nvdev->core.pdev, bar);
	nvdev->hidden_bars = 0;
}

static int nvgrace_gpu_enable_mem(struct nvgrace_gpu_device *nvdev)
{
	int ret;

	/* For the readiness registers, read after every reset */
	if (!nvdev->ready_src.cxl_dvsec) {
		ret = vfio_pci_core_setup_barmap(&nvdev->core, 0);
		if (ret)
			return ret;
	}
	ret = nvgrace_gpu_claim_hidden_bars(nvdev);
	if (!ret)
		ret = nvgrace_mem_reserve_memtype(nvdev);
	if (ret)
		nvgrace_gpu_release_hidden_bars(nvdev);
	return ret;
}

static int nvgrace_gpu_open_device(struct vfio_device *core_vdev)
{
	struct nvgrace_gpu_device *nvdev = to_nvdev(core_vdev);
	int ret;

	ret = vfio_pci_core_enable(&nvdev->core);
	if (ret)
		return ret;

	if (nvgrace_has_mem(nvdev)) {
		ret = nvgrace_gpu_enable_mem(nvdev);
		if (ret) {
			vfio_pci_core_disable(&nvdev->core);
			return ret;
		}
		nvgrace_config_reset_bars(nvdev);
	}

	vfio_pci_core_finish_enable(&nvdev->core);
	return 0;
}

static void nvgrace_gpu_close_device(struct vfio_device *core_vdev)
{
	struct nvgrace_gpu_device *nvdev = to_nvdev(core_vdev);

	if (nvgrace_has_mem(nvdev)) {
		nvgrace_mem_kunmap_all(nvdev);
		nvgrace_mem_release_memtype(nvdev);
		nvgrace_gpu_release_hidden_bars(nvdev);
	}
	vfio_pci_core_close_device(core_vdev);
}

static ssize_t nvgrace_gpu_rw(struct vfio_device *core_vdev, char __user *buf,
			      size_t count, loff_t *ppos, bool iswrite)
{
	struct nvgrace_gpu_device *nvdev = to_nvdev(core_vdev);
	unsigned int index = VFIO_PCI_OFFSET_TO_INDEX(*ppos);
	struct nvgrace_mem_region *region;

	if (index == VFIO_PCI_CONFIG_REGION_INDEX)
		return nvgrace_config_rw(nvdev, buf, count, ppos, iswrite);

	region = nvgrace_mem_region(nvdev, index);
	if (region)
		return nvgrace_mem_rw(nvdev, region, buf, count, ppos, iswrite);
	if (nvgrace_gpu_emulates(nvdev, index))
		return -EINVAL;

	if (iswrite)
		return vfio_pci_core_write(core_vdev, buf, count, ppos);
	return vfio_pci_core_read(core_vdev, buf, count, ppos);
}

static ssize_t nvgrace_gpu_read(struct vfio_device *core_vdev,
				char __user *buf, size_t count, loff_t *ppos)
{
	return nvgrace_gpu_rw(core_vdev, buf, count, ppos, false);
}

static ssize_t nvgrace_gpu_write(struct vfio_device *core_vdev,
				 const char __user *buf, size_t count,
				 loff_t *ppos)
{
	return nvgrace_gpu_rw(core_vdev, (char __user *)buf, count, ppos, true);
}

static int nvgrace_gpu_mmap(struct vfio_device *core_vdev,
			    struct vm_area_struct *vma)
{
	struct nvgrace_gpu_device *nvdev = to_nvdev(core_vdev);
	unsigned int index = nvgrace_vma_index(vma);
	struct nvgrace_mem_region *region;

	region = nvgrace_mem_region(nvdev, index);
	if (region)
		return nvgrace_mem_mmap(nvdev, region, vma);
	if (nvgrace_gpu_emulates(nvdev, index))
		return -EINVAL;
	return vfio_pci_core_mmap(core_vdev, vma);
}

/*
 * Describe the one mmap-able area of an emulated BAR: its whole pages.  The
 * BAR itself is larger (a power of two) and its tail is padding.
 */
static int nvgrace_gpu_add_sparse_cap(struct nvgrace_mem_region *region,
				      struct vfio_info_cap *caps)
{
	DEFINE_RAW_FLEX(struct vfio_region_info_cap_sparse_mmap, sparse,
			areas, 1);

	sparse->header.id = VFIO_REGION_INFO_CAP_SPARSE_MMAP;
	sparse->header.version = 1;
	sparse->nr_areas = 1;
	sparse->areas[0].offset = 0;
	sparse->areas[0].size = nvgrace_mem_mappable(region);

	return vfio_info_add_capability(caps, &sparse->header,
					__struct_size(sparse));
}

static long nvgrace_gpu_region_info(struct vfio_device *core_vdev,
				    unsigned long arg)
{
	struct nvgrace_gpu_device *nvdev = to_nvdev(core_vdev);
	unsigned long minsz = offsetofend(struct vfio_region_info, offset);
	struct vfio_region_info __user *uinfo = (void __user *)arg;
	struct vfio_info_cap caps = { .buf = NULL, .size = 0 };
	struct nvgrace_mem_region *region;
	struct vfio_region_info info;
	int ret;

	if (copy_from_user(&info, uinfo, minsz))
		return -EFAULT;
	if (info.argsz < minsz)
		return -EINVAL;
	if (!nvgrace_gpu_emulates(nvdev, info.index))
		return vfio_pci_core_ioctl(core_vdev,
					   VFIO_DEVICE_GET_REGION_INFO, arg);

	info.offset = VFIO_PCI_INDEX_TO_OFFSET(info.index);
	info.size = 0;
	info.flags = 0;
	info.cap_offset = 0;

	region = nvgrace_mem_region(nvdev, info.index);
	if (region) {
		ret = nvgrace_gpu_add_sparse_cap(region, &caps);
		if (ret)
			return ret;

		info.size = region->bar_size;
		info.flags = VFIO_REGION_INFO_FLAG_READ |
			     VFIO_REGION_INFO_FLAG_WRITE |
			     VFIO_REGION_INFO_FLAG_MMAP |
			     VFIO_REGION_INFO_FLAG_CAPS;

		if (info.argsz < sizeof(info) + caps.size) {
			/* Tell user space how much room the capability needs */
			info.argsz = sizeof(info) + caps.size;
		} else {
			vfio_info_cap_shift(&caps, sizeof(info));
			if (copy_to_user(uinfo + 1, caps.buf, caps.size))
				ret = -EFAULT;
			info.cap_offset = sizeof(info);
		}
		kfree(caps.buf);
		if (ret)
			return ret;
	}

	return copy_to_user(uinfo, &info, minsz) ? -EFAULT : 0;
}

/*
 * There is no MMIO behind the emulated BARs for an ioeventfd to write to.
 * vfio-pci-core reads the request again; what keeps it off the GPU's own
 * BARs behind them, whatever it reads, is that they are claimed
 * (nvgrace_gpu_claim_hidden_bars()).  The check here gives the errno.
 */
static long nvgrace_gpu_ioeventfd(struct vfio_device *core_vdev,
				  unsigned long arg)
{
	struct nvgrace_gpu_device *nvdev = to_nvdev(core_vdev);
	unsigned long minsz = offsetofend(struct vfio_device_ioeventfd, fd);
	struct vfio_device_ioeventfd ioeventfd;

	if (copy_from_user(&ioeventfd, (void __user *)arg, minsz))
		return -EFAULT;
	if (ioeventfd.argsz < minsz)
		return -EINVAL;
	if (nvgrace_gpu_emulates(nvdev,
				 VFIO_PCI_OFFSET_TO_INDEX(ioeventfd.offset)))
		return -ENOTTY;
	return vfio_pci_core_ioctl(core_vdev, VFIO_DEVICE_IOEVENTFD, arg);
}

static long nvgrace_gpu_ioctl(struct vfio_device *core_vdev, unsigned int cmd,
			      unsigned long arg)
{
	switch (cmd) {
	case VFIO_DEVICE_GET_REGION_INFO:
		return nvgrace_gpu_region_info(core_vdev, arg);
	case VFIO_DEVICE_IOEVENTFD:
		return nvgrace_gpu_ioeventfd(core_vdev, arg);
	default:
		/* VFIO_DEVICE_RESET included: see nvgrace_gpu_reset_done() */
		return vfio_pci_core_ioctl(core_vdev, cmd, arg);
	}
}

static const struct vfio_device_ops nvgrace_gpu_mem_ops = {
	.name		= "nvgrace-gpu-vfio-pci",
	.init		= nvgrace_gpu_init_dev,
	.release	= nvgrace_gpu_release_dev,
	.open_device	= nvgrace_gpu_open_device,
	.close_device	= nvgrace_gpu_close_device,
	.ioctl		= nvgrace_gpu_ioctl,
	.device_feature	= vfio_pci_core_ioctl_feature,
	.read		= nvgrace_gpu_read,
	.write		= nvgrace_gpu_write,
	.mmap		= nvgrace_gpu_mmap,
	.request	= vfio_pci_core_request,
	.match		= vfio_pci_core_match,
	.bind_iommufd	= vfio_iommufd_physical_bind,
	.unbind_iommufd	= vfio_iommufd_physical_unbind,
	.attach_ioas	= vfio_iommufd_physical_attach_ioas,
	.detach_ioas	= vfio_iommufd_physical_detach_ioas,
};

/* Firmware describes no GPU memory: behave exactly as vfio-pci */
static const struct vfio_device_ops nvgrace_gpu_plain_ops = {
	.name		= "nvgrace-gpu-vfio-pci",
	.init		= nvgrace_gpu_init_dev,
	.release	= nvgrace_gpu_release_dev,
	.open_device	= nvgrace_gpu_open_device,
	.close_device	= vfio_pci_core_close_device,
	.ioctl		= vfio_pci_core_ioctl,
	.device_feature	= vfio_pci_core_ioctl_feature,
	.read		= vfio_pci_core_read,
	.write		= vfio_pci_core_write,
	.mmap		= vfio_pci_core_mmap,
	.request	= vfio_pci_core_request,
	.match		= vfio_pci_core_match,
	.bind_iommufd	= vfio_iommufd_physical_bind,
	.unbind_iommufd	= vfio_iommufd_physical_unbind,
	.attach_ioas	= vfio_iommufd_physical_attach_ioas,
	.detach_ioas	= vfio_iommufd_physical_detach_ioas,
};

static int nvgrace_gpu_probe(struct pci_dev *pdev,
			     const struct pci_device_id *id)
{
	const struct vfio_device_ops *ops = &nvgrace_gpu_plain_ops;
	struct nvgrace_ready_src ready_src = {};
	struct nvgrace_mem_layout layout;
	struct nvgrace_gpu_device *nvdev;
	int ret;

	ret = nvgrace_mem_probe(pdev, &layout);
	if (ret)
		return ret;
	if (layout.usemem.length) {
		nvgrace_mem_find_ready_src(pdev, &ready_src);
		ret = nvgrace_mem_wait_probe(pdev, &ready_src);
		if (ret)
			return ret;
		ops = &nvgrace_gpu_mem_ops;
	}

	nvdev = vfio_alloc_device(nvgrace_gpu_device, core.vdev, &pdev->dev,
				  ops);
	if (IS_ERR(nvdev))
		return PTR_ERR(nvdev);
	nvdev->mem = layout;
	nvdev->ready_src = ready_src;

	dev_set_drvdata(&pdev->dev, &nvdev->core);
	ret = vfio_pci_core_register_device(&nvdev->core);
	if (ret) {
		vfio_put_device(&nvdev->core.vdev);
		return ret;
	}
	return 0;
}

static void nvgrace_gpu_remove(struct pci_dev *pdev)
{
	struct vfio_pci_core_device *core = dev_get_drvdata(&pdev->dev);

	vfio_pci_core_unregister_device(core);
	vfio_put_device(&core->vdev);
}

static struct nvgrace_gpu_device *nvgrace_gpu_from_pdev(struct pci_dev *pdev)
{
	struct vfio_pci_core_device *core = dev_get_drvdata(&pdev->dev);

	return core ? container_of(core, struct nvgrace_gpu_device, core) :
		      NULL;
}

/*
 * The resets of the function that the PCI core reports start and end in
 * the two handlers below: VFIO_DEVICE_RESET, a hot reset, the reset on
 * open, an FLR that user space starts through config space, and one
 * through sysfs.  When one starts, the kernel mappings that read() and
 * write() use go, so that the CPU cannot prefetch through them from memory
 * that the reset takes down, and the driver touches the memory again only
 * once the GPU reports it ready.  (x86 keeps the PAT record mappings of
 * nvgrace_mem_reserve_memtype() from open to close.)
 */
static void nvgrace_gpu_reset_prepare(struct pci_dev *pdev)
{
	struct nvgrace_gpu_device *nvdev = nvgrace_gpu_from_pdev(pdev);

	if (nvdev && nvgrace_has_mem(nvdev))
		nvgrace_mem_reset_start(nvdev);
}

/* The emulated BAR registers reset with the function */
static void nvgrace_gpu_reset_done(struct pci_dev *pdev)
{
	struct nvgrace_gpu_device *nvdev = nvgrace_gpu_from_pdev(pdev);

	if (nvdev && nvgrace_has_mem(nvdev)) {
		nvgrace_config_reset_bars(nvdev);
		nvgrace_mem_reset_end(nvdev);
	}
}

/*
 * An AER recovery of a frozen link resets the function without the two
 * handlers above: count it as a reset from here to the resume handler.
 * A recovery that fails leaves the function disconnected, which ends the
 * waits for it.
 */
static pci_ers_result_t nvgrace_gpu_error_detected(struct pci_dev *pdev,
						   pci_channel_state_t state)
{
	struct nvgrace_gpu_device *nvdev = nvgrace_gpu_from_pdev(pdev);

	if (nvdev && nvgrace_has_mem(nvdev) &&
	    state != pci_channel_io_normal && !nvdev->aer_reset) {
		nvdev->aer_reset = true;
		nvgrace_mem_reset_start(nvdev);
	}
	return vfio_pci_core_aer_err_detected(pdev, state);
}

static void nvgrace_gpu_error_resume(struct pci_dev *pdev)
{
	struct nvgrace_gpu_device *nvdev = nvgrace_gpu_from_pdev(pdev);

	if (nvdev && nvdev->aer_reset) {
		nvdev->aer_reset = false;
		nvgrace_config_reset_bars(nvdev);
		nvgrace_mem_reset_end(nvdev);
	}
}

static const struct pci_error_handlers nvgrace_gpu_err_handlers = {
	.error_detected	= nvgrace_gpu_error_detected,
	.resume		= nvgrace_gpu_error_resume,
	.reset_prepare	= nvgrace_gpu_reset_prepare,
	.reset_done	= nvgrace_gpu_reset_done,
};

/* Bound only on request, through driver_override */
static const struct pci_device_id nvgrace_gpu_ids[] = {
	/* GH200 120GB */
	{ PCI_DRIVER_OVERRIDE_DEVICE_VFIO(PCI_VENDOR_ID_NVIDIA, 0x2342) },
	/* GH200 480GB */
	{ PCI_DRIVER_OVERRIDE_DEVICE_VFIO(PCI_VENDOR_ID_NVIDIA, 0x2345) },
	/* GH200 144GB HBM3e */
	{ PCI_DRIVER_OVERRIDE_DEVICE_VFIO(PCI_VENDOR_ID_NVIDIA, 0x2348) },
	/* GB200 */
	{ PCI_DRIVER_OVERRIDE_DEVICE_VFIO(PCI_VENDOR_ID_NVIDIA, 0x2941) },
	/* GB300 */
	{ PCI_DRIVER_OVERRIDE_DEVICE_VFIO(PCI_VENDOR_ID_NVIDIA, 0x31c2) },
	{}
};
MODULE_DEVICE_TABLE(pci, nvgrace_gpu_ids);

static struct pci_driver nvgrace_gpu_driver = {
	.name			= KBUILD_MODNAME,
	.id_table		= nvgrace_gpu_ids,
	.probe			= nvgrace_gpu_probe,
	.remove			= nvgrace_gpu_remove,
	.err_handler		= &nvgrace_gpu_err_handlers,
	.driver_managed_dma	= true,
	/* A GPU may take up to 257 s to be ready: let GPUs wait together */
	.driver.probe_type	= PROBE_PREFER_ASYNCHRONOUS,
};

module_pci_driver(nvgrace_gpu_driver);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("VFIO PCI variant driver for the GPU of the NVIDIA Grace Hopper and Grace Blackwell Superchips");
