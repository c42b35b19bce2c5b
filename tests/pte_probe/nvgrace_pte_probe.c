// SPDX-License-Identifier: GPL-2.0-only
/*
 * Test-only helper for the nvgrace-gpu-vfio-pci tests: tells user space
 * the PFN and the memory type of its own PFN-map page-table entries, and
 * whether the mapping lets KVM map it uncached (VM_ALLOW_ANY_UNCACHED),
 * which neither /proc/PID/smaps nor the architectures' page-table dumps
 * show.
 *
 * Write a user address (any base that kstrtoul() takes) to
 * /sys/kernel/debug/nvgrace_pte_probe, then read back one line:
 *   "pfn=0x... type=WB|WC|UC-|UC|Normal|Normal-NC|Device|... uncached=0|1"
 * Only the calling process's mappings are looked up, and only PFN maps
 * (VM_IO | VM_PFNMAP); anything else gives -EINVAL or -EFAULT.
 */

#include <linux/debugfs.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

struct pte_probe_result {
	char line[64];
};

static struct dentry *pte_probe_file;

#if defined(CONFIG_X86)
static const char *pte_probe_type(pgprot_t prot)
{
	unsigned long bits = pgprot_val(prot) & _PAGE_CACHE_MASK;

	if (bits == cachemode2protval(_PAGE_CACHE_MODE_WB))
		return "WB";
	if (bits == cachemode2protval(_PAGE_CACHE_MODE_WC))
		return "WC";
	if (bits == cachemode2protval(_PAGE_CACHE_MODE_UC_MINUS))
		return "UC-";
	if (bits == cachemode2protval(_PAGE_CACHE_MODE_UC))
		return "UC";
	return "other";
}
#elif defined(CONFIG_ARM64)
static const char *pte_probe_type(pgprot_t prot)
{
	switch (pgprot_val(prot) & PTE_ATTRINDX_MASK) {
	case PTE_ATTRINDX(MT_NORMAL):
		return "Normal";
	case PTE_ATTRINDX(MT_NORMAL_TAGGED):
		return "Normal-Tagged";
	case PTE_ATTRINDX(MT_NORMAL_NC):
		return "Normal-NC";
	case PTE_ATTRINDX(MT_DEVICE_nGnRE):
		return "Device-nGnRE";
	case PTE_ATTRINDX(MT_DEVICE_nGnRnE):
		return "Device-nGnRnE";
	default:
		return "other";
	}
}
#else
#error "nvgrace_pte_probe knows the memory types of x86 and arm64 only"
#endif

static int pte_probe_lookup(unsigned long addr, struct pte_probe_result *res)
{
	struct follow_pfnmap_args args = { .address = addr };
	struct mm_struct *mm = current->mm;
	int ret;

	mmap_read_lock(mm);
	args.vma = vma_lookup(mm, addr);
	if (!args.vma) {
		ret = -EFAULT;
		goto out;
	}
	ret = follow_pfnmap_start(&args);
	if (ret)
		goto out;
	scnprintf(res->line, sizeof(res->line), "pfn=%#lx type=%s uncached=%d\n",
		  args.pfn, pte_probe_type(args.pgprot),
		  !!(args.vma->vm_flags & VM_ALLOW_ANY_UNCACHED));
	follow_pfnmap_end(&args);
out:
	mmap_read_unlock(mm);
	return ret;
}

static int pte_probe_open(struct inode *inode, struct file *file)
{
	struct pte_probe_result *res = kzalloc(sizeof(*res), GFP_KERNEL);

	if (!res)
		return -ENOMEM;
	file->private_data = res;
	return 0;
}

static int pte_probe_release(struct inode *inode, struct file *file)
{
	kfree(file->private_data);
	return 0;
}

static ssize_t pte_probe_write(struct file *file, const char __user *buf,
			       size_t count, loff_t *ppos)
{
	unsigned long addr;
	int ret;

	ret = kstrtoul_from_user(buf, count, 0, &addr);
	if (ret)
		return ret;
	ret = pte_probe_lookup(addr, file->private_data);
	return ret ? ret : count;
}

static ssize_t pte_probe_read(struct file *file, char __user *buf,
			      size_t count, loff_t *ppos)
{
	struct pte_probe_result *res = file->private_data;

	return simple_read_from_buffer(buf, count, ppos, res->line,
				       strlen(res->line));
}

static const struct file_operations pte_probe_fops = {
	.owner = THIS_MODULE,
	.open = pte_probe_open,
	.release = pte_probe_release,
	.write = pte_probe_write,
	.read = pte_probe_read,
};

static int __init pte_probe_init(void)
{
	pte_probe_file = debugfs_create_file("nvgrace_pte_probe", 0600, NULL,
					     NULL, &pte_probe_fops);
	return PTR_ERR_OR_ZERO(pte_probe_file);
}
module_init(pte_probe_init);

static void __exit pte_probe_exit(void)
{
	debugfs_remove(pte_probe_file);
}
module_exit(pte_probe_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Test-only helper: memory type of user PFN-map entries");
