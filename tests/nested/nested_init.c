// SPDX-License-Identifier: GPL-2.0-only
/*
 * /init of the nested guest (tests/nested): QEMU with KVM, inside the arm64
 * test machine, gives it the GPU through vfio-pci.  It finds the GPU, sizes
 * BAR2 and BAR4 from its own config space, maps them through sysfs, checks
 * the patterns that the test machine wrote at the start, the middle, the
 * last whole page and the last bytes of usemem and resmem, writes its own,
 * and says what it saw on the console, one "nvg-nested:" line each.
 *
 * The patterns tell whose they are: the test machine's (writer 1), this
 * guest's first boot (2) and its boot after a reset (3).  A boot that finds
 * writer 1's patterns is the first; one that finds writer 2's follows a
 * reset.  The kernel command line gives nvg.use_len= and nvg.res_len=, the
 * real sizes of usemem and resmem (the BARs are powers of two).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <linux/types.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <time.h>
#include <unistd.h>

#include "nested.h"

#define say(...)	printf("nvg-nested: " __VA_ARGS__)

/* Seconds since this boot began, from the monotonic clock */
static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The value of nvg.@name= on the kernel command line, or 0 */
static __u64 cmdline_u64(const char *name)
{
	char buf[1024], key[64], *p;
	FILE *f = fopen("/proc/cmdline", "r");

	if (!f || !fgets(buf, sizeof(buf), f))
		return 0;
	fclose(f);
	snprintf(key, sizeof(key), "nvg.%s=", name);
	p = strstr(buf, key);
	return p ? strtoull(p + strlen(key), NULL, 0) : 0;
}

/* The first PCI function with the stand-in GPU's IDs, into @bdf */
static int find_gpu(char *bdf, size_t len)
{
	DIR *dir = opendir("/sys/bus/pci/devices");
	struct dirent *de;
	int ret = -1;

	while (dir && (de = readdir(dir))) {
		char path[300], ids[32] = "";
		FILE *f;

		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor",
			 de->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (!fgets(ids, sizeof(ids), f))
			ids[0] = 0;
		fclose(f);
		if (strtoul(ids, NULL, 0) != NVG_NESTED_VENDOR)
			continue;
		snprintf(bdf, len, "%s", de->d_name);
		ret = 0;
		break;
	}
	if (dir)
		closedir(dir);
	return ret;
}

static int config_fd(const char *bdf)
{
	char path[300];

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/config", bdf);
	return open(path, O_RDWR);
}

static __u32 cfg_read(int fd, off_t at, size_t len)
{
	__u32 val = 0;

	if (pread(fd, &val, len, at) != (ssize_t)len)
		return ~0u;
	return val;
}

static void cfg_write(int fd, off_t at, __u32 val, size_t len)
{
	if (pwrite(fd, &val, len, at) != (ssize_t)len)
		say("config write at %#lx failed: %s\n", (long)at,
		    strerror(errno));
}

/*
 * Size the 64-bit BAR @bar as firmware does: memory decode off, all-ones
 * written to both halves and read back, then the values put back
 */
static __u64 size_bar(int fd, int bar, __u32 *type)
{
	off_t at = 0x10 + 4 * bar;
	__u16 cmd = cfg_read(fd, 0x4, 2);
	__u32 lo = cfg_read(fd, at, 4), hi = cfg_read(fd, at + 4, 4);
	__u64 mask;

	*type = lo & 0xf;
	cfg_write(fd, 0x4, cmd & ~0x2, 2);
	cfg_write(fd, at, ~0u, 4);
	cfg_write(fd, at + 4, ~0u, 4);
	mask = cfg_read(fd, at, 4) & ~0xfULL;
	mask |= (__u64)cfg_read(fd, at + 4, 4) << 32;
	cfg_write(fd, at, lo, 4);
	cfg_write(fd, at + 4, hi, 4);
	cfg_write(fd, 0x4, cmd, 2);
	return ~mask + 1;
}

/* Map @len bytes of BAR @bar through its sysfs file resource<@bar><@kind> */
static __u64 *map_bar(const char *bdf, int bar, const char *kind, __u64 len)
{
	char path[300];
	void *p;
	int fd;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource%d%s",
		 bdf, bar, kind);
	fd = open(path, O_RDWR | O_SYNC);
	if (fd < 0) {
		say("open %s: %s\n", path, strerror(errno));
		return NULL;
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		say("mmap %s: %s\n", path, strerror(errno));
		return NULL;
	}
	return p;
}

/* Memory decode on: nothing in this guest binds the GPU */
static int enable_gpu(const char *bdf)
{
	char path[300];
	int fd, ret = 0;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/enable", bdf);
	fd = open(path, O_WRONLY);
	if (fd < 0 || write(fd, "1", 1) != 1) {
		say("enabling %s: %s\n", bdf, strerror(errno));
		ret = -1;
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

struct region {
	const char *name;
	int bar;
	const char *kind;	/* the sysfs file's suffix */
	__u64 len;		/* the memory, from the command line */
	__u64 bar_size;	/* the BAR, from config space */
	__u64 *map;		/* loaded and stored 64 bits at a time */
};

/*
 * Check the patterns of every region; return the writer whose patterns
 * are all there, or 0
 */
static int check_patterns(struct region *r, int nr)
{
	int writer = 0, i, j;
	double t;

	for (i = 0; i < nr; i++) {
		for (j = 0; j < NVG_NESTED_SPOTS; j++) {
			__u64 at = nvg_nested_spot(r[i].len, j);
			__u64 got, w;

			t = now();
			got = __atomic_load_n(&r[i].map[at / 8], __ATOMIC_RELAXED);
			t = now() - t;
			w = nvg_nested_writer(got, i, at);
			say("%s +%#llx: read %#018llx (writer %llu) in %.3f s\n",
			    r[i].name, at, got, w, t);
			if (!w || (writer && (int)w != writer))
				return 0;
			writer = w;
		}
	}
	return writer;
}

static void write_patterns(struct region *r, int nr, int writer)
{
	int i, j;

	for (i = 0; i < nr; i++)
		for (j = 0; j < NVG_NESTED_SPOTS; j++) {
			__u64 at = nvg_nested_spot(r[i].len, j);

			__atomic_store_n(&r[i].map[at / 8],
					 nvg_nested_pattern(writer, i, at),
					 __ATOMIC_RELAXED);
		}
	/* Device memory: the stores are done once a load after them is */
	for (i = 0; i < nr; i++)
		for (j = 0; j < NVG_NESTED_SPOTS; j++) {
			__u64 at = nvg_nested_spot(r[i].len, j);

			if (__atomic_load_n(&r[i].map[at / 8],
					    __ATOMIC_RELAXED) !=
			    nvg_nested_pattern(writer, i, at))
				say("%s +%#llx: write did not hold\n",
				    r[i].name, at);
		}
	say("wrote the patterns of writer %d\n", writer);
}

static int run(void)
{
	struct region r[] = {
		{ "usemem", 4, "", cmdline_u64("use_len") },
		{ "resmem", 2, "_wc", cmdline_u64("res_len") },
	};
	int nr = r[1].len ? 2 : 1;
	char bdf[256];
	int i, fd, writer;
	double t;

	if (find_gpu(bdf, sizeof(bdf))) {
		say("no GPU\n");
		return -1;
	}
	say("GPU at %s, up %.3f s\n", bdf, now());
	fd = config_fd(bdf);
	if (fd < 0)
		return -1;
	for (i = 0; i < nr; i++) {
		__u32 type;

		r[i].bar_size = size_bar(fd, r[i].bar, &type);
		say("BAR%d: %s%s, %llu MiB (%s %llu MiB)\n",
		    r[i].bar, (type & 0x6) == 0x4 ? "64-bit" : "not 64-bit",
		    type & 0x8 ? " prefetchable" : " non-prefetchable",
		    r[i].bar_size >> 20, r[i].name, r[i].len >> 20);
	}
	close(fd);

	/*
	 * The first use of the GPU after a reset waits until it is ready: in
	 * the enable, whose memory decode makes QEMU map the BARs for DMA,
	 * or in the first load
	 */
	t = now();
	if (enable_gpu(bdf))
		return -1;
	say("enabled the GPU in %.3f s\n", now() - t);
	for (i = 0; i < nr; i++) {
		r[i].map = map_bar(bdf, r[i].bar, r[i].kind, r[i].bar_size);
		if (!r[i].map)
			return -1;
	}

	writer = check_patterns(r, nr);
	say("used the GPU in %.3f s\n", now() - t);
	say("found the patterns of writer %d\n", writer);
	if (writer != 1 && writer != 2)
		return -1;
	write_patterns(r, nr, writer + 1);
	return writer;
}

/* One line of @text into the kernel log */
static void klog(const char *text)
{
	int fd = open("/dev/kmsg", O_WRONLY);

	if (fd >= 0) {
		if (write(fd, text, strlen(text)) < 0)
			say("cannot write the kernel log: %s\n", strerror(errno));
		close(fd);
	}
}

/*
 * The negative control of the splat check of this guest's console
 * (tests/run-tests.sh): a warning from LKDTM, framed by the lines that
 * tests/control frames its own with in the test machine
 */
static void plant_warning(void)
{
	int fd = open("/sys/kernel/debug/provoke-crash/DIRECT", O_WRONLY);

	klog("nvgrace_control: begin warn\n");
	if (fd < 0 || write(fd, "WARNING", 7) != 7)
		say("LKDTM did not warn: %s\n", strerror(errno));
	if (fd >= 0)
		close(fd);
	klog("nvgrace_control: end warn\n");
}

int main(void)
{
	int boot;

	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);
	setvbuf(stdout, NULL, _IONBF, 0);

	boot = run();
	if (boot == 1)
		plant_warning();
	say("done: %s\n", boot == 1 ? "first boot" :
	    boot == 2 ? "boot after a reset" : "failed");
	/* The test machine resets this guest or ends it; until then, wait */
	for (;;)
		pause();
	return 0;
}
