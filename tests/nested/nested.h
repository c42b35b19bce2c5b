/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the test machine and the nested guest (tests/nested) agree on: the
 * places of the patterns in usemem and resmem, and the patterns.
 */
#ifndef NVG_NESTED_H
#define NVG_NESTED_H

#include <linux/types.h>

/* The stand-in GPU's vendor ID (bochs-display) */
#define NVG_NESTED_VENDOR	0x1234
/* The largest page size of either side: 64 KiB */
#define NVG_NESTED_PAGE		0x10000ULL
/* The start, the middle, the last whole page and the last 8 bytes */
#define NVG_NESTED_SPOTS	4

/* Offset of pattern @spot in a region of @len bytes */
static inline __u64 nvg_nested_spot(__u64 len, int spot)
{
	switch (spot) {
	case 0:
		return 0;
	case 1:
		return len / 2 & ~(NVG_NESTED_PAGE - 1);
	case 2:
		return (len & ~(NVG_NESTED_PAGE - 1)) - NVG_NESTED_PAGE;
	default:
		return (len - 8) & ~7ULL;
	}
}

/*
 * The pattern of @writer at @at of region @region (0: usemem, 1: resmem):
 * "NV" in the top 16 bits, then the writer, the region and the offset
 */
static inline __u64 nvg_nested_pattern(unsigned int writer,
				       unsigned int region, __u64 at)
{
	return 0x4e56ULL << 48 | (__u64)writer << 44 |
	       (__u64)region << 40 | at;
}

/* The writer of pattern @val read at @at of @region, or 0 when none's */
static inline unsigned int nvg_nested_writer(__u64 val, unsigned int region,
					     __u64 at)
{
	unsigned int writer = val >> 44 & 0xf;

	return val == nvg_nested_pattern(writer, region, at) ? writer : 0;
}

#endif
