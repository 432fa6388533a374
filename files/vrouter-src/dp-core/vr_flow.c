/*
 * Flow table in the shared memory region: open addressing, VR_FLOW_PROBE
 * slots from the hash position.  Readers (the agent) see whole entries;
 * flags is written last on insert and first on removal.
 */
#include "vr_core.h"
#include "vr_util.h"

uint32_t vr_flow_hash(const struct vr_flow_key *k)
{
	uint32_t h = 2166136261u ^ k->vrf;
	unsigned alen = k->v6 ? 16 : 4;

	for (unsigned i = 0; i < alen; i++)
		h = (h ^ k->sip[i]) * 16777619u;
	for (unsigned i = 0; i < alen; i++)
		h = (h ^ k->dip[i]) * 16777619u;
	h = (h ^ k->sport) * 16777619u;
	h = (h ^ k->dport) * 16777619u;
	h = (h ^ k->proto) * 16777619u;
	h ^= h >> 15;
	h *= 0x2c1b3c6du;
	h ^= h >> 12;
	return h;
}

static int key_eq(const struct vr_flow_entry *e, const struct vr_flow_key *k)
{
	return e->vrf == k->vrf && e->proto == k->proto && e->sport == k->sport &&
	       e->dport == k->dport && !!(e->flags & VR_FLOW_F_IPV6) == !!k->v6 &&
	       !vr_memcmp(e->sip, k->sip, 16) && !vr_memcmp(e->dip, k->dip, 16);
}

uint32_t vr_flow_find(struct vr_router *r, const struct vr_flow_key *k)
{
	uint32_t mask = r->nflows - 1, h;

	if (!r->nflows)
		return VR_FLOW_NONE;
	h = vr_flow_hash(k);
	for (uint32_t i = 0; i < VR_FLOW_PROBE; i++) {
		uint32_t idx = (h + i) & mask;
		const struct vr_flow_entry *e = &r->flows[idx];

		if ((e->flags & VR_FLOW_F_VALID) && e->hash == h && key_eq(e, k))
			return idx;
	}
	return VR_FLOW_NONE;
}

uint32_t vr_flow_insert(struct vr_router *r, const struct vr_flow_key *k, int *created)
{
	uint32_t idx = vr_flow_find(r, k), mask = r->nflows - 1, h;

	*created = 0;
	if (idx != VR_FLOW_NONE || !r->nflows)
		return idx;
	h = vr_flow_hash(k);
	for (uint32_t i = 0; i < VR_FLOW_PROBE; i++) {
		struct vr_flow_entry *e = &r->flows[(h + i) & mask];
		uint32_t gen;

		if (e->flags & VR_FLOW_F_VALID)
			continue;
		gen = e->gen + 1;
		vr_memset(e, 0, sizeof(*e));
		e->gen = gen;
		e->hash = h;
		e->vrf = k->vrf;
		vr_memcpy(e->sip, k->sip, 16);
		vr_memcpy(e->dip, k->dip, 16);
		e->sport = k->sport;
		e->dport = k->dport;
		e->proto = k->proto;
		e->rindex = VR_FLOW_NONE;
		e->action = VR_FLOW_HOLD;
		__atomic_store_n(&e->flags, VR_FLOW_F_VALID | (k->v6 ? VR_FLOW_F_IPV6 : 0u),
				 __ATOMIC_RELEASE);
		*created = 1;
		return (h + i) & mask;
	}
	return VR_FLOW_NONE;
}

void vr_flow_remove(struct vr_router *r, uint32_t idx)
{
	struct vr_flow_entry *e;

	if (idx >= r->nflows)
		return;
	e = &r->flows[idx];
	if (e->rindex < r->nflows && r->flows[e->rindex].rindex == idx) {
		r->flows[e->rindex].rindex = VR_FLOW_NONE;
		r->flows[e->rindex].flags &= ~VR_FLOW_F_RFLOW;
	}
	__atomic_store_n(&e->flags, 0u, __ATOMIC_RELEASE);
	e->gen++;
	e->rindex = VR_FLOW_NONE;
}

void vr_flow_key_of(const struct vr_flow_entry *e, struct vr_flow_key *k)
{
	vr_memset(k, 0, sizeof(*k));
	k->vrf = e->vrf;
	vr_memcpy(k->sip, e->sip, 16);
	vr_memcpy(k->dip, e->dip, 16);
	k->sport = e->sport;
	k->dport = e->dport;
	k->proto = e->proto;
	k->v6 = (e->flags & VR_FLOW_F_IPV6) ? 1 : 0;
}
