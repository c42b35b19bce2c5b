// SPDX-License-Identifier: GPL-2.0-only
/*
 * nvgrace_ready BDF...: set the readiness registers in BAR0 of each
 * stand-in GPU to ready, as the firmware of a GPU whose memory is up does.
 * The test VM runs it at boot, before any driver binds.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "nvgrace_vfio.h"

int main(int argc, char **argv)
{
	int i, ret = 0;

	for (i = 1; i < argc; i++) {
		if (nvg_set_ready(argv[i], NVG_READY)) {
			fprintf(stderr, "nvgrace_ready: %s: %s\n", argv[i],
				strerror(errno));
			ret = 1;
		}
	}
	return ret;
}
