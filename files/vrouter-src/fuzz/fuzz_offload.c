/*
 * libFuzzer target: vrouterd's offload completion (host/offload.c) on what a
 * packet socket could hand it.  Input: flags, gso_type, then gso_size,
 * csum_start, csum_offset, mtu (u16, big-endian), then the frame.  Whatever
 * is accepted must cut into segments that fit the room promised, each a
 * frame whose IP length matches; nothing may read or write outside the
 * buffers (ASan), and exactly-sized copies make that strict.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "offload.h"

#define HDR 10u
#define MAX_SEG 9216u

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	struct off_vnet h;
	struct off_gso_plan pl;
	uint32_t len, mtu;
	uint8_t *f;

	if (n < HDR || n - HDR > 70000)
		return 0;
	h.flags = d[0];
	h.gso_type = d[1];
	h.hdr_len = 0;
	h.gso_size = (uint16_t)(d[2] << 8 | d[3]);
	h.csum_start = (uint16_t)(d[4] << 8 | d[5]);
	h.csum_offset = (uint16_t)(d[6] << 8 | d[7]);
	mtu = (uint32_t)(d[8] << 8 | d[9]);
	len = (uint32_t)(n - HDR);
	f = malloc(len ? len : 1);
	memcpy(f, d + HDR, len);
	if (h.gso_type == OFF_GSO_NONE) {
		if (h.flags & OFF_F_NEEDS_CSUM)
			off_csum_finish(f, len, h.csum_start, h.csum_offset);
	} else if (off_gso_plan(f, len, &h, mtu, MAX_SEG, &pl) == OFF_OK) {
		if (!pl.nseg || pl.hlen + pl.mss > MAX_SEG || pl.hlen > len)
			abort();
		for (uint32_t i = 0; i < pl.nseg && i < 64; i++) {
			uint8_t *seg = malloc(pl.hlen + pl.mss);
			uint32_t got = off_gso_build(f, &pl, i, seg);
			uint32_t iplen = pl.ipv6 ? 40u + (uint32_t)(seg[pl.l3 + 4] << 8 | seg[pl.l3 + 5])
						 : (uint32_t)(seg[pl.l3 + 2] << 8 | seg[pl.l3 + 3]);

			if (got > pl.hlen + pl.mss || got < pl.hlen || iplen != got - pl.l3)
				abort();
			free(seg);
		}
	}
	free(f);
	return 0;
}
