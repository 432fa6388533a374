/*
 * libFuzzer target: arbitrary bytes as a request to a live router.  Checks
 * that every input gets well-formed replies and that anything the parser
 * accepts re-encodes to a message that parses to the same encoding.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vr_core.h"
#include "vr_util.h"

static void *f_zalloc(void *c, size_t n)
{
	(void)c;
	return calloc(1, n);
}

static void f_free(void *c, void *p)
{
	(void)c;
	free(p);
}

static uint64_t f_now(void *c)
{
	(void)c;
	return 1;
}

static void f_lock(void *c)
{
	(void)c;
}

static struct vr_pkt *f_pkt_alloc(void *c, uint32_t len)
{
	(void)c;
	(void)len;
	return NULL;
}

static void f_pkt_free(void *c, struct vr_pkt *p)
{
	(void)c;
	(void)p;
}

static int f_tx(void *c, uint32_t v, uint32_t o, struct vr_pkt *p)
{
	(void)c;
	(void)v;
	(void)o;
	(void)p;
	return 0;
}

static const struct vr_os_ops ops = {f_zalloc, f_free, f_now, f_lock, f_lock,
				     f_pkt_alloc, f_pkt_free, f_tx};
static struct vr_router router;
static uint8_t out[VR_MSG_MAX], enc1[VR_MSG_MAX], enc2[VR_MSG_MAX];
static uint8_t flow_mem[64 + 256 * 128];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	struct vr_msg m, m2;
	int n, off;

	if (!ready) {
		struct vr_config cfg = {.max_vifs = 64, .max_nhs = 256, .max_vrfs = 16,
					.max_labels = 4096, .flow_mem = flow_mem,
					.flow_mem_len = sizeof(flow_mem)};
		if (vr_router_init(&router, &ops, NULL, &cfg))
			abort();
		/* VRFs 1 and 2 exist, so a flow's FL_DVRF can pass validation too. */
		if (!vr_vrf_get(&router, 1, 1) || !vr_vrf_get(&router, 2, 1))
			abort();
		ready = 1;
	}
	n = vr_msg_handle(&router, data, size, out, sizeof(out));
	if (n < (int)VR_MSG_HDR_LEN)
		abort();
	for (off = 0; off < n;) {
		uint32_t len = vr_get_be32(out + off + 12);
		if (len < VR_MSG_HDR_LEN || off + (int)len > n || vr_msg_parse(out + off, len, &m))
			abort();
		if (!(m.flags & VR_MSGF_REPLY) || !vr_msg_has(&m, VR_A_RESULT))
			abort();
		off += (int)len;
	}
	if (vr_msg_parse(data, size, &m) == 0) {
		int n1 = vr_msg_encode(&m, enc1, sizeof(enc1)), n2;
		if (n1 < 0 || vr_msg_parse(enc1, (size_t)n1, &m2))
			abort();
		n2 = vr_msg_encode(&m2, enc2, sizeof(enc2));
		if (n2 != n1 || memcmp(enc1, enc2, (size_t)n1))
			abort();
	}
	return 0;
}
