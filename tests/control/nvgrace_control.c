// SPDX-License-Identifier: GPL-2.0-only
/*
 * Test-only module: the negative controls of the test rig's kernel checks.
 * The test command fails a run whose console shows a kernel splat, and one
 * whose kmemleak scan reports a leak; this module makes both happen on
 * request, so that the rig can show that its checks find them.
 *
 * Write one word to /sys/kernel/debug/nvgrace_control:
 *	warn	WARN() once: "WARNING:" and a stack trace
 *	stack	dump_stack(): a stack trace alone ("Call Trace:" on x86,
 *		"Call trace:" on arm64)
 *	leak	allocate objects and drop every pointer to them, for kmemleak
 *		to report once they are older than its minimum age
 *	spin	spin forever on every CPU with interrupts off: the stall that
 *		the silence watchdog of tests/vm/supervise.py must catch and
 *		tell from an emulator stall (run-vm.sh stall, by hand)
 * The output of warn and stack is framed by the lines
 * "nvgrace_control: begin WORD" and "nvgrace_control: end WORD", so that
 * the rig can tell the planted splat from any other.
 */

#include <linux/compiler.h>
#include <linux/debugfs.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/printk.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/string.h>
#include <linux/uaccess.h>

/*
 * Several objects: a copy of a pointer left on some stack or in a register
 * could keep one of them referenced for a while, not all.
 */
#define CONTROL_LEAKS		8
#define CONTROL_LEAK_SIZE	128

static struct dentry *control_file;

static noinline void nvgrace_control_warn(void)
{
	pr_info("nvgrace_control: begin warn\n");
	WARN(1, "nvgrace_control: warning planted for the splat check\n");
	pr_info("nvgrace_control: end warn\n");
}

static noinline void nvgrace_control_stack(void)
{
	pr_info("nvgrace_control: begin stack\n");
	dump_stack();
	pr_info("nvgrace_control: end stack\n");
}

static noinline void nvgrace_control_leak(void)
{
	void *p;
	int i;

	for (i = 0; i < CONTROL_LEAKS; i++) {
		p = kmalloc(CONTROL_LEAK_SIZE, GFP_KERNEL);
		/* The compiler may not prove the allocation unused */
		OPTIMIZER_HIDE_VAR(p);
	}
	pr_info("nvgrace_control: %d objects of %d bytes leaked for kmemleak\n",
		CONTROL_LEAKS, CONTROL_LEAK_SIZE);
}

static void nvgrace_control_spin_here(void *unused)
{
	for (;;)
		cpu_relax();
}

static noinline void nvgrace_control_spin(void)
{
	pr_info("nvgrace_control: spinning on every CPU with interrupts off\n");
	/* The other CPUs spin in the IPI, this one after sending it */
	on_each_cpu(nvgrace_control_spin_here, NULL, false);
}

static ssize_t control_write(struct file *file, const char __user *ubuf,
			     size_t count, loff_t *ppos)
{
	char buf[16];

	if (count >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = '\0';

	if (sysfs_streq(buf, "warn"))
		nvgrace_control_warn();
	else if (sysfs_streq(buf, "stack"))
		nvgrace_control_stack();
	else if (sysfs_streq(buf, "leak"))
		nvgrace_control_leak();
	else if (sysfs_streq(buf, "spin"))
		nvgrace_control_spin();
	else
		return -EINVAL;
	return count;
}

static const struct file_operations control_fops = {
	.owner = THIS_MODULE,
	.write = control_write,
};

static int __init control_init(void)
{
	control_file = debugfs_create_file("nvgrace_control", 0200, NULL, NULL,
					   &control_fops);
	return PTR_ERR_OR_ZERO(control_file);
}
module_init(control_init);

static void __exit control_exit(void)
{
	debugfs_remove(control_file);
}
module_exit(control_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Test-only helper: negative controls of the splat and kmemleak checks");
