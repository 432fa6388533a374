/* Packet buffer helpers on top of the OS layer. */
#include "vr_core.h"
#include "vr_util.h"

uint8_t *vr_pkt_data(struct vr_pkt *p)
{
	return p->buf + p->off;
}

/* Make room for n bytes in front of the data, copying into a fresh buffer
 * if the headroom is too small.  Returns the new start or NULL (pkt kept). */
uint8_t *vr_pkt_push(struct vr_router *r, struct vr_pkt **pp, uint32_t n)
{
	struct vr_pkt *p = *pp, *q;

	if (p->off < n) {
		q = r->os->pkt_alloc(r->os_ctx, p->len);
		if (!q || q->off < n) {
			if (q)
				r->os->pkt_free(r->os_ctx, q);
			return (uint8_t *)0;
		}
		vr_memcpy(q->buf + q->off, p->buf + p->off, p->len);
		r->os->pkt_free(r->os_ctx, p);
		*pp = p = q;
	}
	p->off -= n;
	p->len += n;
	return p->buf + p->off;
}

void vr_pkt_pull(struct vr_pkt *p, uint32_t n)
{
	if (n > p->len)
		n = p->len;
	p->off += n;
	p->len -= n;
}

struct vr_pkt *vr_pkt_copy(struct vr_router *r, struct vr_pkt *p)
{
	struct vr_pkt *q = r->os->pkt_alloc(r->os_ctx, p->len);

	if (q)
		vr_memcpy(q->buf + q->off, p->buf + p->off, p->len);
	return q;
}

/* Internet checksum of p[0..len) plus a partial sum. */
uint16_t vr_csum(const uint8_t *p, uint32_t len, uint32_t sum)
{
	uint64_t s = sum;

	for (uint32_t i = 0; i + 1 < len; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		s += (uint32_t)p[len - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

void vr_drop(struct vr_router *r, struct vr_pkt *p, unsigned reason)
{
	if (reason < VR_DROP_MAX)
		r->drops[reason]++;
	r->drop_total++;
	if (p)
		r->os->pkt_free(r->os_ctx, p);
}
