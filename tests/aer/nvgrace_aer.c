// SPDX-License-Identifier: GPL-2.0-only
/*
 * Test-only module: take a function through the steps of an AER recovery
 * of a frozen link, as pcie_do_recovery() does them, for the driver's
 * error handlers.  QEMU's stand-in GPUs have no AER capability, so
 * aer_inject cannot reach them, and the test kernel has no AER driver.
 *
 * Write "DDDD:BB:DD.F MS" to /sys/kernel/debug/nvgrace_aer: with the
 * device lock held, the function's error state is set to frozen and its
 * driver's error_detected() called; then, MS milliseconds later (the
 * window in which the test looks at the driver), the secondary bus of its
 * upstream bridge is reset, the error state set back to normal and the
 * driver's resume() called.  The write returns once all of it is done:
 * 0 on success, or the errno of a step.
 *
 * Unlike a real recovery, the function's config space is saved before the
 * reset and restored after it, as a driver's slot_reset() would do:
 * vfio-pci-core has none, and without it the function's BARs would stay
 * unassigned until the device is closed, which is not what the test
 * looks at.
 */

#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/uaccess.h>

static struct dentry *aer_file;

static const struct pci_error_handlers *aer_handlers(struct pci_dev *pdev)
{
	if (!pdev->dev.driver)
		return NULL;
	return to_pci_driver(pdev->dev.driver)->err_handler;
}

static int aer_detect(struct pci_dev *pdev)
{
	const struct pci_error_handlers *err;
	int ret = -EOPNOTSUPP;

	device_lock(&pdev->dev);
	err = aer_handlers(pdev);
	if (err && err->error_detected && err->resume) {
		pdev->error_state = pci_channel_io_frozen;
		err->error_detected(pdev, pci_channel_io_frozen);
		ret = 0;
	}
	device_unlock(&pdev->dev);
	return ret;
}

static void aer_resume(struct pci_dev *pdev)
{
	const struct pci_error_handlers *err;

	device_lock(&pdev->dev);
	pdev->error_state = pci_channel_io_normal;
	err = aer_handlers(pdev);
	if (err && err->resume)
		err->resume(pdev);
	device_unlock(&pdev->dev);
}

static int aer_recover(struct pci_dev *pdev, unsigned int ms)
{
	struct pci_dev *bridge = pci_upstream_bridge(pdev);
	int ret;

	if (!bridge)
		return -ENODEV;
	pci_save_state(pdev);
	ret = aer_detect(pdev);
	if (ret)
		return ret;
	msleep(ms);
	/* As aer_root_reset() does, without the device's reset handlers */
	ret = pci_bridge_secondary_bus_reset(bridge);
	pci_restore_state(pdev);
	aer_resume(pdev);
	return ret;
}

static ssize_t aer_write(struct file *file, const char __user *ubuf,
			 size_t count, loff_t *ppos)
{
	unsigned int domain, bus, slot, fn, ms;
	struct pci_dev *pdev;
	char buf[32];
	int ret;

	if (count >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = '\0';
	if (sscanf(buf, "%x:%x:%x.%x %u", &domain, &bus, &slot, &fn, &ms) != 5)
		return -EINVAL;

	pdev = pci_get_domain_bus_and_slot(domain, bus, PCI_DEVFN(slot, fn));
	if (!pdev)
		return -ENODEV;
	pci_info(pdev, "nvgrace_aer: recovery of a frozen link, %u ms\n", ms);
	ret = aer_recover(pdev, ms);
	pci_dev_put(pdev);
	return ret ?: count;
}

static const struct file_operations aer_fops = {
	.owner = THIS_MODULE,
	.write = aer_write,
};

static int __init aer_init(void)
{
	aer_file = debugfs_create_file("nvgrace_aer", 0200, NULL, NULL,
				       &aer_fops);
	return 0;
}

static void __exit aer_exit(void)
{
	debugfs_remove(aer_file);
}

module_init(aer_init);
module_exit(aer_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("nvgrace-gpu-vfio-pci test rig: the steps of an AER recovery");
