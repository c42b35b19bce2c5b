// SPDX-License-Identifier: GPL-2.0-only
/*
 * Test-only module (arm64, KVM): note how KVM maps host physical memory in
 * [base, base + size) at stage 2, so that the nested-guest test can tell
 * which memory type and block size a guest got for usemem and resmem.
 *
 * A kprobe on kvm_pgtable_stage2_map(), which user_mem_abort() calls for
 * every stage-2 fault that makes a mapping, records the IPA, size,
 * physical address and attributes of each call whose range falls in the
 * window.  The window is set by writing "BASE SIZE" to
 * /sys/kernel/debug/nvgrace_stage2, which also forgets what was recorded;
 * reading the file lists the records, one per line:
 *	ipa=0x... size=0x... phys=0x... type=device|normal-nc|normal rw=RW
 * 6.12 KVM has no stage-2 dump in debugfs, and its tracepoints do not give
 * the attributes.
 */

#include <linux/debugfs.h>
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/seq_file.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>
#include <asm/kvm_pgtable.h>

#define STAGE2_RECORDS	256

struct stage2_record {
	u64 ipa, size, phys;
	enum kvm_pgtable_prot prot;
};

static DEFINE_SPINLOCK(stage2_lock);
static u64 stage2_base, stage2_size;
static struct stage2_record stage2_records[STAGE2_RECORDS];
static unsigned int stage2_count, stage2_lost;
static struct dentry *stage2_file;

/*
 * kvm_pgtable_stage2_map(pgt, addr, size, phys, prot, mc, flags): the
 * arguments in x1 to x4
 */
static int stage2_map_pre(struct kprobe *kp, struct pt_regs *regs)
{
	u64 size = regs->regs[2], phys = regs->regs[3];
	unsigned long flags;

	spin_lock_irqsave(&stage2_lock, flags);
	if (phys >= stage2_base && phys - stage2_base < stage2_size) {
		if (stage2_count < STAGE2_RECORDS)
			stage2_records[stage2_count++] = (struct stage2_record) {
				.ipa = regs->regs[1],
				.size = size,
				.phys = phys,
				.prot = regs->regs[4],
			};
		else
			stage2_lost++;
	}
	spin_unlock_irqrestore(&stage2_lock, flags);
	return 0;
}

static struct kprobe stage2_kprobe = {
	.symbol_name = "kvm_pgtable_stage2_map",
	.pre_handler = stage2_map_pre,
};

static const char *stage2_type(enum kvm_pgtable_prot prot)
{
	if (prot & KVM_PGTABLE_PROT_DEVICE)
		return "device";
	if (prot & KVM_PGTABLE_PROT_NORMAL_NC)
		return "normal-nc";
	return "normal";
}

static int stage2_show(struct seq_file *m, void *unused)
{
	unsigned int i;

	spin_lock_irq(&stage2_lock);
	for (i = 0; i < stage2_count; i++) {
		const struct stage2_record *r = &stage2_records[i];

		seq_printf(m, "ipa=%#llx size=%#llx phys=%#llx type=%s rw=%s%s\n",
			   r->ipa, r->size, r->phys, stage2_type(r->prot),
			   r->prot & KVM_PGTABLE_PROT_R ? "R" : "",
			   r->prot & KVM_PGTABLE_PROT_W ? "W" : "");
	}
	if (stage2_lost)
		seq_printf(m, "lost=%u\n", stage2_lost);
	spin_unlock_irq(&stage2_lock);
	return 0;
}

static int stage2_open(struct inode *inode, struct file *file)
{
	return single_open(file, stage2_show, NULL);
}

static ssize_t stage2_write(struct file *file, const char __user *ubuf,
			    size_t len, loff_t *ppos)
{
	char buf[64];
	u64 base, size;

	if (len >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, len))
		return -EFAULT;
	buf[len] = 0;
	if (sscanf(buf, "%llx %llx", &base, &size) != 2)
		return -EINVAL;

	spin_lock_irq(&stage2_lock);
	stage2_base = base;
	stage2_size = size;
	stage2_count = 0;
	stage2_lost = 0;
	spin_unlock_irq(&stage2_lock);
	return len;
}

static const struct file_operations stage2_fops = {
	.owner = THIS_MODULE,
	.open = stage2_open,
	.read = seq_read,
	.llseek = seq_lseek,
	.release = single_release,
	.write = stage2_write,
};

static int __init stage2_init(void)
{
	int ret = register_kprobe(&stage2_kprobe);

	if (ret) {
		pr_err("nvgrace_stage2: no kprobe on %s: %d\n",
		       stage2_kprobe.symbol_name, ret);
		return ret;
	}
	stage2_file = debugfs_create_file("nvgrace_stage2", 0600, NULL, NULL,
					  &stage2_fops);
	return 0;
}

static void __exit stage2_exit(void)
{
	debugfs_remove(stage2_file);
	unregister_kprobe(&stage2_kprobe);
}

module_init(stage2_init);
module_exit(stage2_exit);
MODULE_DESCRIPTION("Test helper: record KVM stage-2 mappings of a physical range");
MODULE_LICENSE("GPL");
