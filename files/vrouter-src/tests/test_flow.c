/* Flow table in a caller-provided region: insert/find/remove, probing
 * limits, generation counts, reverse index, and the shared header. */
#include <string.h>

#include "support.h"
#include "tcheck.h"

static void key(struct vr_flow_key *k, uint32_t vrf, uint32_t n, uint16_t dport)
{
	memset(k, 0, sizeof(*k));
	k->vrf = vrf;
	ip4("198.18.10.3", k->sip);
	k->dip[0] = 198;
	k->dip[1] = 19;
	k->dip[2] = (uint8_t)(n >> 8);
	k->dip[3] = (uint8_t)n;
	k->proto = 6;
	k->sport = 0x3930;
	k->dport = dport;
}

int main(void)
{
	struct vr_router r;
	struct vr_flow_key k, k2;
	uint32_t idx, idx2, inserted = 0, full = 0;
	int created;

	router_setup(&r, 1024);
	CHECK_EQ(r.nflows, 1024);
	CHECK_EQ(r.flow_hdr->magic, VR_FLOW_SHM_MAGIC);
	CHECK_EQ(r.flow_hdr->entry_size, 128);
	CHECK_EQ(r.flow_hdr->nentries, 1024);

	key(&k, 1, 1, 80);
	CHECK_EQ(vr_flow_find(&r, &k), VR_FLOW_NONE);
	idx = vr_flow_insert(&r, &k, &created);
	CHECK(idx < 1024);
	CHECK_EQ(created, 1);
	CHECK_EQ(r.flows[idx].action, VR_FLOW_HOLD);
	CHECK_EQ(r.flows[idx].hash, vr_flow_hash(&k));
	CHECK_EQ(vr_flow_insert(&r, &k, &created), idx);
	CHECK_EQ(created, 0);
	CHECK_EQ(vr_flow_find(&r, &k), idx);

	/* Every key field matters. */
	k2 = k;
	k2.vrf = 2;
	CHECK_EQ(vr_flow_find(&r, &k2), VR_FLOW_NONE);
	k2 = k;
	k2.dport = 81;
	CHECK_EQ(vr_flow_find(&r, &k2), VR_FLOW_NONE);
	k2 = k;
	k2.proto = 17;
	CHECK_EQ(vr_flow_find(&r, &k2), VR_FLOW_NONE);
	k2 = k;
	k2.v6 = 1;
	CHECK_EQ(vr_flow_find(&r, &k2), VR_FLOW_NONE);

	/* Reverse link and removal: the reverse loses its link, gen moves. */
	key(&k2, 1, 2, 80);
	idx2 = vr_flow_insert(&r, &k2, &created);
	r.flows[idx].rindex = idx2;
	r.flows[idx2].rindex = idx;
	{
		uint32_t gen = r.flows[idx].gen;
		vr_flow_remove(&r, idx);
		CHECK_EQ(r.flows[idx].flags, 0);
		CHECK(r.flows[idx].gen != gen);
		CHECK_EQ(r.flows[idx2].rindex, VR_FLOW_NONE);
		CHECK_EQ(vr_flow_find(&r, &k), VR_FLOW_NONE);
	}

	/* Fill: inserts stop with VR_FLOW_NONE, never overwrite. */
	for (uint32_t n = 0; n < 4000; n++) {
		key(&k, 3, n, 443);
		idx = vr_flow_insert(&r, &k, &created);
		if (idx == VR_FLOW_NONE)
			full++;
		else
			inserted++;
	}
	CHECK(inserted > 900 && inserted <= 1023);
	CHECK(full > 0);
	for (uint32_t n = 0, found = 0; n < 4000; n++) {
		key(&k, 3, n, 443);
		if (vr_flow_find(&r, &k) != VR_FLOW_NONE)
			found++;
		if (n == 3999)
			CHECK_EQ(found, inserted);
	}
	CHECK_EQ(vr_flow_find(&r, &k2), idx2); /* the earlier flow survived */
	router_teardown(&r);

	/* A region too small for one entry means no flow table. */
	router_setup(&r, 0);
	CHECK_EQ(r.nflows, 0);
	CHECK_EQ(vr_flow_find(&r, &k), VR_FLOW_NONE);
	router_teardown(&r);
	T_DONE("test_flow");
}
