// SPDX-License-Identifier: GPL-2.0-only
/*
 * nvgrace_nested BDF BASE DIR: the whole path of a KVM guest to the GPU
 * memory, on arm64.  QEMU (Debian's arm64 build) starts the nested guest
 * of DIR (DIR/Image, DIR/initrd.cpio: tests/nested) with KVM and the GPU
 * BDF, bound to the driver, through vfio-pci over the group/container
 * path.  BASE is where the GPU memory starts in host physical memory.
 *
 * Before the guest starts, patterns go into usemem and resmem by pwrite();
 * the nested guest reads them through its BAR mappings, that is through
 * KVM's stage-2 faults into the driver's fault handler, and writes its
 * own.  Then the GPU is made not ready and QEMU resets the guest (QMP
 * system_reset, which resets the device through VFIO): the guest's next
 * use of its BARs waits in the driver, until the test sees QEMU wait
 * there and makes the GPU ready, then finds its patterns; it writes
 * new ones, which pread() finds once QEMU has exited.  tests/stage2 tells
 * how KVM mapped the GPU memory at stage 2.  Last, the same guest on a
 * machine whose PCI window cannot hold the BARs.  QEMU's command line is
 * the deployment guide's, with the test's own options added.
 *
 * Prints TAP; the nested guest's console is copied to stdout as "# nested:"
 * lines, and to NVG_NESTED_CONSOLE for the test run's log directory.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nvgrace_vfio.h"
#include "../nested/nested.h"

/* The deployment guide's QEMU command line (tests/guide.py) */
#define GUIDE_QEMU	"/guide/qemu-kvm"
/* QMP over a pair of FIFOs, QMP_PIPE.in and QMP_PIPE.out: no AF_UNIX here */
#define QMP_PIPE	"/tmp/nested-qmp"
#define NVG_NESTED_CONSOLE	"/tmp/nested.console"
#define STAGE2		"/sys/kernel/debug/nvgrace_stage2"
/* What the nested guest may take to boot, and to run after a reset */
#define BOOT_TIMEOUT	300.0
/* How late the GPU is after the reset: long past any poll interval */
/* The driver's function that a wait for the GPU memory sleeps in */
#define NVG_WAIT_FUNCTION	"nvgrace_ready_io_sleep"

static const char *bdf;
static __u64 mem_base;
static __u64 len[2];		/* usemem, resmem */
static const unsigned int index_of[2] = {
	VFIO_PCI_BAR4_REGION_INDEX, VFIO_PCI_BAR2_REGION_INDEX,
};

static const char *const name_of[2] = { "usemem", "resmem" };

static int tap_n;
static int tap_failed;

static void tap(bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%sok %d ", ok ? "" : "not ", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!ok)
		tap_failed++;
}

/* ---- The nested guest's console ---- */

struct console {
	int fd;			/* QEMU's stdout and stderr */
	FILE *copy;
	char buf[4096];
	size_t len;
};

/*
 * Wait up to @timeout seconds for a console line that contains @want (with
 * @want NULL, for the end of the console); copy every line read.  Return
 * the line (valid until the next call), or NULL on timeout or end of file.
 */
static const char *console_wait(struct console *c, const char *want,
				double timeout)
{
	static char line[sizeof(c->buf)];
	double end = nvg_now() + timeout;

	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		double left = end - nvg_now();
		ssize_t n;

		if (nl) {
			size_t l = nl - c->buf;

			memcpy(line, c->buf, l);
			line[l] = 0;
			if (l && line[l - 1] == '\r')
				line[l - 1] = 0;
			c->len -= l + 1;
			memmove(c->buf, nl + 1, c->len);
			printf("# nested: %s\n", line);
			fprintf(c->copy, "%s\n", line);
			if (want && strstr(line, want))
				return line;
			continue;
		}
		if (c->len == sizeof(c->buf))
			c->len = 0;	/* a line too long for the buffer */
		if (left <= 0 || poll(&pfd, 1, left * 1000) <= 0)
			return NULL;
		n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (n <= 0)
			return NULL;
		c->len += n;
	}
}

/* ---- QMP ---- */

struct qmp {
	int in, out;	/* QEMU's input and output */
};

/* Send @cmd and wait for its "return" */
static int qmp(struct qmp *q, const char *cmd)
{
	char buf[4096];
	size_t got = 0;

	if (q->in < 0 ||
	    write(q->in, cmd, strlen(cmd)) != (ssize_t)strlen(cmd))
		return -1;
	while (got < sizeof(buf) - 1) {
		struct pollfd pfd = { .fd = q->out, .events = POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, 30000) <= 0)
			return -1;
		n = read(q->out, buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			return -1;
		got += n;
		buf[got] = 0;
		if (strstr(buf, "\"return\""))
			return 0;
		if (strstr(buf, "\"error\""))
			return -1;
	}
	return -1;
}

static int qmp_make_pipes(void)
{
	unlink(QMP_PIPE ".in");
	unlink(QMP_PIPE ".out");
	return mkfifo(QMP_PIPE ".in", 0600) || mkfifo(QMP_PIPE ".out", 0600);
}

/*
 * Open the FIFOs that QEMU opened at its start, read for both so that
 * neither open waits, and leave the greeting behind
 */
static void qmp_connect(struct qmp *q)
{
	q->in = open(QMP_PIPE ".in", O_RDWR);
	q->out = open(QMP_PIPE ".out", O_RDWR);
	if (q->in < 0 || q->out < 0 ||
	    qmp(q, "{\"execute\": \"qmp_capabilities\"}\n")) {
		printf("# QMP: %s\n", strerror(errno));
		if (q->in >= 0)
			close(q->in);
		q->in = -1;
	}
}

static void qmp_close(struct qmp *q)
{
	if (q->in >= 0)
		close(q->in);
	if (q->out >= 0)
		close(q->out);
}

/* ---- QEMU ---- */

/*
 * Start QEMU with the deployment guide's command line (GUIDE_QEMU, whose
 * -kernel and -initrd name files of @dir and whose $BDF is the GPU), and
 * the test's own options: no default devices, the console on stdout, QMP
 * on the FIFOs, the guest's command line, and @extra
 */
static pid_t qemu_start(const char *dir, struct console *c, const char *extra)
{
	char guide[1024], cmd[2048];
	int pipefd[2];
	size_t n;
	FILE *f;
	pid_t pid;

	f = fopen(GUIDE_QEMU, "r");
	if (!f)
		return -1;
	n = fread(guide, 1, sizeof(guide) - 1, f);
	fclose(f);
	while (n && guide[n - 1] == '\n')
		n--;
	guide[n] = 0;
	snprintf(cmd, sizeof(cmd),
		 "exec %s -nodefaults -display none -serial stdio -qmp pipe:%s -append 'console=ttyAMA0 panic=-1 nvg.use_len=%#llx nvg.res_len=%#llx' %s",
		 guide, QMP_PIPE, len[0], len[1], extra);
	if (qmp_make_pipes() || pipe(pipefd))
		return -1;
	pid = fork();
	if (!pid) {
		dup2(pipefd[1], 1);
		dup2(pipefd[1], 2);
		close(pipefd[0]);
		if (chdir(dir) || setenv("BDF", bdf, 1))
			_exit(127);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		perror("exec /bin/sh");
		_exit(127);
	}
	close(pipefd[1]);
	c->fd = pipefd[0];
	c->len = 0;
	return pid;
}

/*
 * Wait up to @timeout seconds for QEMU to exit; its exit status, or -1.
 * No pid (QEMU did not start) is -1 at once: kill(-1) would signal every
 * process of the machine.
 */
static int qemu_wait(pid_t pid, double timeout)
{
	double end = nvg_now() + timeout;
	int status;

	if (pid <= 0)
		return -1;
	while (nvg_now() < end) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		usleep(100000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

/*
 * Whether a thread of process @pid sleeps in the driver's readiness wait:
 * its kernel stack (/proc/PID/task/TID/stack) names the wait
 */
static bool qemu_waits_in_driver(pid_t pid)
{
	char path[PATH_MAX], line[256];
	bool found = false;
	struct dirent *e;
	DIR *dir;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	dir = opendir(path);
	if (!dir)
		return false;
	while (!found && (e = readdir(dir))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/stack", pid,
			 e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		while (!found && fgets(line, sizeof(line), f))
			found = strstr(line, NVG_WAIT_FUNCTION);
		fclose(f);
	}
	closedir(dir);
	return found;
}

/* ---- The GPU memory, from this side ---- */

static int open_gpu(struct nvg_dev *dev)
{
	__u64 off, size;
	int i;

	if (nvg_open_group(bdf, dev))
		return -1;
	for (i = 0; i < 2; i++)
		len[i] = nvg_sparse_area(dev->device_fd, index_of[i], &off,
					 &size) ? size : 0;
	return 0;
}

static void write_patterns(struct nvg_dev *dev, unsigned int writer)
{
	int i, j;

	for (i = 0; i < 2; i++)
		for (j = 0; len[i] && j < NVG_NESTED_SPOTS; j++) {
			__u64 at = nvg_nested_spot(len[i], j);
			__u64 val = nvg_nested_pattern(writer, i, at);

			if (pwrite(dev->device_fd, &val, 8,
				   nvg_region_offset(index_of[i]) + at) != 8)
				printf("# pwrite %s +%#llx: %s\n",
				       name_of[i], at, strerror(errno));
		}
}

/* Whether every pattern read is @writer's */
static bool read_patterns(struct nvg_dev *dev, unsigned int writer)
{
	bool ok = true;
	int i, j;

	for (i = 0; i < 2; i++)
		for (j = 0; len[i] && j < NVG_NESTED_SPOTS; j++) {
			__u64 at = nvg_nested_spot(len[i], j), val = 0;

			if (pread(dev->device_fd, &val, 8,
				  nvg_region_offset(index_of[i]) + at) != 8 ||
			    nvg_nested_writer(val, i, at) != writer) {
				printf("# %s +%#llx: %#018llx, not writer %u's\n",
				       name_of[i], at, val, writer);
				ok = false;
			}
		}
	return ok;
}

/* ---- Stage 2 (tests/stage2) ---- */

static int stage2_watch(void)
{
	char buf[64];

	snprintf(buf, sizeof(buf), "%#llx %#llx", mem_base,
		 len[0] + len[1]);
	return nvg_write_file(STAGE2, buf);
}

/*
 * Print the stage-2 mappings made of region @i and check that each has
 * memory type @type and the size of a host page or of a PMD block, the
 * sizes of the user mapping that KVM follows; return the number of
 * mappings, or -1 when one has another type or size
 */
static int stage2_check(int i, const char *type)
{
	unsigned long long page = sysconf(_SC_PAGESIZE), pmd = page * page / 8;
	/* usemem comes first in the GPU memory, resmem after it */
	__u64 start = mem_base + (i ? len[0] : 0), end = start + len[i];
	unsigned long long ipa, size, phys;
	char line[256], t[32], rw[8];
	int n = 0, bad = 0;
	FILE *f = fopen(STAGE2, "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "ipa=%llx size=%llx phys=%llx type=%31s rw=%7s",
			   &ipa, &size, &phys, t, rw) < 4 ||
		    phys < start || phys >= end)
			continue;
		printf("# stage 2, %s: %s", name_of[i], line);
		n++;
		if (strcmp(t, type) || (size != page && size != pmd))
			bad++;
	}
	fclose(f);
	return bad ? -1 : n;
}

/* ---- The test ---- */

/* The number in "@key N" of @line, or -1 */
static double line_number(const char *line, const char *key)
{
	const char *p = line ? strstr(line, key) : NULL;

	return p ? strtod(p + strlen(key), NULL) : -1;
}

static void check_bar(struct console *c, int bar, __u64 want)
{
	char key[32];
	const char *line;

	snprintf(key, sizeof(key), "BAR%d: ", bar);
	line = console_wait(c, key, BOOT_TIMEOUT);
	tap(line && strstr(line, "64-bit prefetchable") &&
	    line_number(line, "prefetchable, ") == (double)(want >> 20),
	    "the nested guest sizes BAR%d as 64-bit prefetchable, %llu MiB",
	    bar, want >> 20);
}

/*
 * The guest's 64-bit PCI window too small for the GPU: the same command
 * line, on a machine without its high PCIe window, whose 32-bit window
 * (about 750 MiB) cannot hold the stand-in's 2 GiB BARs.  The guest
 * kernel, which assigns the BARs itself here, must say so for BAR 4, and
 * QEMU must print nothing of its own (the guide says both).  The guest
 * is ended once its init runs: the kernel has placed its devices by then.
 */
static void window_too_small(const char *dir, struct console *c)
{
	int no_space = 0, qemu_said = 0;
	const char *line;
	bool running;
	pid_t pid;

	pid = qemu_start(dir, c, "-M highmem=off");
	if (pid <= 0) {
		tap(false, "with no room for the BARs: QEMU did not start");
		return;
	}
	while ((line = console_wait(c, "", BOOT_TIMEOUT)) &&
	       !strstr(line, "nvg-nested: ")) {
		if (strstr(line, "BAR 4 [mem size ") &&
		    strstr(line, "can't assign; no space"))
			no_space++;
		if (!strncmp(line, "qemu-system-aarch64:", 20))
			qemu_said++;
	}
	/* QEMU runs until it is stopped here: it did not fail on its own */
	running = waitpid(pid, NULL, WNOHANG) == 0;
	kill(pid, SIGKILL);
	qemu_wait(pid, 30);
	console_wait(c, NULL, 5);
	close(c->fd);
	tap(line && running && no_space && !qemu_said,
	    "with no room for the BARs, the guest kernel cannot assign BAR 4 (%d lines) and QEMU runs on and prints nothing (%d lines)",
	    no_space, qemu_said);
}

int main(int argc, char **argv)
{
	struct console c = {};
	struct nvg_dev dev;
	const char *line;
	double t, start;
	struct nvg_klog log;
	char waited[128];
	double enable1;
	struct qmp q;
	int n;
	__u64 bar[2];
	pid_t pid;

	if (argc != 4) {
		fprintf(stderr, "usage: %s BDF BASE DIR\n", argv[0]);
		return 2;
	}
	bdf = argv[1];
	mem_base = strtoull(argv[2], NULL, 0);
	setvbuf(stdout, NULL, _IOLBF, 0);
	c.copy = fopen(NVG_NESTED_CONSOLE, "w");
	if (!c.copy || open_gpu(&dev)) {
		printf("Bail out! cannot open %s: %s\n", bdf, strerror(errno));
		return 1;
	}
	for (n = 0; n < 2; n++) {
		struct vfio_region_info info;

		bar[n] = nvg_region_info(dev.device_fd, index_of[n], &info) ?
			 0 : info.size;
	}
	printf("TAP version 13\n1..12\n");
	printf("# %s: usemem %#llx bytes, resmem %#llx\n", bdf,
	       len[0], len[1]);
	write_patterns(&dev, 1);
	nvg_close(&dev);
	tap(!stage2_watch(), "tests/stage2 watches the GPU memory");

	start = nvg_now();
	pid = qemu_start(argv[3], &c, "");
	if (pid <= 0) {
		printf("Bail out! QEMU did not start: %s\n", strerror(errno));
		return 1;
	}
	line = console_wait(&c, "nvg-nested: GPU at ", BOOT_TIMEOUT);
	t = nvg_now() - start;
	tap(line, "QEMU with KVM boots the nested guest to the GPU in %.1f s (guest clock %.1f s)",
	    t, line_number(line, "up "));
	check_bar(&c, 4, bar[0]);
	check_bar(&c, 2, bar[1]);
	line = console_wait(&c, "nvg-nested: enabled the GPU in ", BOOT_TIMEOUT);
	enable1 = line_number(line, "enabled the GPU in ");
	line = console_wait(&c, "nvg-nested: done", BOOT_TIMEOUT);
	tap(line && strstr(line, "first boot"),
	    "the nested guest reads the patterns of pwrite() through its BARs and writes its own");

	n = stage2_check(0, "device");
	tap(n > 0, "KVM maps usemem at stage 2 as Device, in pages or PMD blocks (%d mappings)",
	    n);
	n = stage2_check(1, "normal-nc");
	tap(n > 0, "KVM maps resmem at stage 2 as Normal-NC, in pages or PMD blocks (%d mappings)",
	    n);

	/*
	 * The GPU is not ready after the reset, and is made ready only once
	 * a thread of QEMU sleeps in the driver's wait: the guest's enable of
	 * the GPU, whose memory decode makes QEMU map the BARs for DMA
	 * through the driver's fault handler.  The guest must say it enabled
	 * the GPU only after that, and the driver must log one wait: an
	 * order and a count, which no load on the machine can break.
	 */
	qmp_connect(&q);
	if (q.in < 0 || nvg_klog_start(&log) ||
	    nvg_set_ready_regs(bdf, 0, NVG_READY) ||
	    qmp(&q, "{\"execute\": \"system_reset\"}\n")) {
		nvg_set_ready(bdf, NVG_READY);
		tap(false, "QMP system_reset, with the GPU not ready");
	} else {
		bool early = false, waiting = false;

		line = console_wait(&c, "nvg-nested: GPU at ", BOOT_TIMEOUT);
		start = nvg_now();
		while (line && !early && !waiting &&
		       nvg_now() - start < BOOT_TIMEOUT) {
			early = console_wait(&c, "nvg-nested: enabled the GPU in ",
					     0.1);
			waiting = qemu_waits_in_driver(pid);
		}
		t = nvg_now() - start;
		n = nvg_set_ready(bdf, NVG_READY);
		line = early ? NULL :
		       console_wait(&c, "nvg-nested: enabled the GPU in ",
				    BOOT_TIMEOUT);
		printf("# %.3f s after \"GPU at\": %s; enable %.3f s (first boot %.3f s)\n",
		       t, waiting ? "QEMU waits in the driver" : "no wait seen",
		       line_number(line, "enabled the GPU in "), enable1);
		snprintf(waited, sizeof(waited), "%s" NVG_MSG_WAITED, bdf);
		tap(!n && waiting && line &&
		    nvg_klog_count(&log, waited) == 1,
		    "after system_reset, the guest's first use of the GPU waits in the driver until the GPU is ready (%s), one wait logged",
		    early ? "it did not: the guest enabled the GPU first" :
		    waiting ? "QEMU waited, then the guest enabled it" :
		    "no thread of QEMU waited");
		nvg_klog_stop(&log);
	}
	line = console_wait(&c, "nvg-nested: done", BOOT_TIMEOUT);
	tap(line && strstr(line, "boot after a reset"),
	    "after the reset, the nested guest finds its own patterns and writes new ones");

	/* QEMU may exit before it answers: its exit status tells */
	if (q.in >= 0)
		dprintf(q.in, "{\"execute\": \"quit\"}\n");
	n = qemu_wait(pid, 60);
	console_wait(&c, NULL, 5);
	tap(n == 0, "QEMU exits with status 0 (%d)", n);
	qmp_close(&q);

	if (open_gpu(&dev)) {
		tap(false, "pread() finds the patterns of the nested guest: %s",
		    strerror(errno));
	} else {
		tap(read_patterns(&dev, 3),
		    "pread() finds the patterns that the nested guest wrote after the reset");
		nvg_close(&dev);
	}
	close(c.fd);
	window_too_small(argv[3], &c);
	fclose(c.copy);
	return tap_failed ? 1 : 0;
}
