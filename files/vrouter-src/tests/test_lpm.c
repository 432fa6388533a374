/* Route tables: longest-prefix match against a brute-force reference,
 * delete and prune, IPv6, bridge and VNI tables. */
#include <stdlib.h>
#include <string.h>

#include "support.h"
#include "tcheck.h"

struct ref {
	uint8_t pfx[4];
	unsigned plen;
	uint32_t nh;
	int live;
};

static int matches(const uint8_t *pfx, unsigned plen, const uint8_t *a)
{
	for (unsigned i = 0; i < plen; i++)
		if (((pfx[i / 8] ^ a[i / 8]) >> (7 - i % 8)) & 1)
			return 0;
	return 1;
}

static uint32_t ref_lookup(const struct ref *t, int n, const uint8_t *a)
{
	int best = -1;

	for (int i = 0; i < n; i++)
		if (t[i].live && matches(t[i].pfx, t[i].plen, a) &&
		    (best < 0 || t[i].plen > t[best].plen))
			best = i;
	return best < 0 ? 0 : t[best].nh;
}

static void mask(uint8_t *p, unsigned plen, unsigned bytes)
{
	for (unsigned i = plen; i < bytes * 8; i++)
		p[i / 8] &= (uint8_t)~(0x80 >> (i % 8));
}

static void test_basic(struct vr_router *r)
{
	struct vr_vrf *v = vr_vrf_get(r, 1, 1);
	struct vr_rt_val a = {.nh = 1}, b = {.nh = 2}, c = {.nh = 3};
	uint8_t p[4], q[4];
	const struct vr_rt_val *got;

	ip4("0.0.0.0", p);
	CHECK_EQ(vr_lpm_add(r, &v->v4, p, 0, &a), 0);
	ip4("198.18.0.0", p);
	CHECK_EQ(vr_lpm_add(r, &v->v4, p, 15, &b), 0);
	ip4("198.18.10.7", p);
	CHECK_EQ(vr_lpm_add(r, &v->v4, p, 32, &c), 0);
	CHECK_EQ(v->v4.count, 3);

	ip4("198.18.10.7", q);
	got = vr_lpm_lookup(&v->v4, q);
	CHECK(got && got->nh == 3);
	ip4("198.18.10.8", q);
	got = vr_lpm_lookup(&v->v4, q);
	CHECK(got && got->nh == 2);
	ip4("198.20.0.1", q);
	got = vr_lpm_lookup(&v->v4, q);
	CHECK(got && got->nh == 1);

	CHECK_EQ(vr_lpm_del(r, &v->v4, p, 32), 0);
	CHECK_EQ(vr_lpm_del(r, &v->v4, p, 32), -VR_ENOENT);
	ip4("198.18.10.7", q);
	got = vr_lpm_lookup(&v->v4, q);
	CHECK(got && got->nh == 2);
	CHECK_EQ(vr_lpm_add(r, &v->v4, p, 33, &c), -VR_EINVAL);

	ip4("0.0.0.0", p);
	CHECK_EQ(vr_lpm_del(r, &v->v4, p, 0), 0);
	ip4("198.20.0.1", q);
	CHECK(vr_lpm_lookup(&v->v4, q) == NULL);
	ip4("198.18.0.0", p);
	CHECK_EQ(vr_lpm_del(r, &v->v4, p, 15), 0);
	CHECK(v->v4.root == NULL); /* fully pruned */
	CHECK(v->v4.mroot == NULL && v->v4.def == NULL);
	CHECK_EQ(v->v4.count, 0);
}

static void test_random(struct vr_router *r)
{
	enum { N = 2000, LOOKUPS = 20000 };
	static struct ref t[N];
	struct vr_vrf *v = vr_vrf_get(r, 2, 1);
	int bad = 0;

	srand(7);
	for (int i = 0; i < N; i++) {
		struct vr_rt_val val = {.nh = (uint32_t)i + 1};
		/* Cluster prefixes in 198.18.0.0/15 so they nest. */
		uint32_t a = 0xc6120000u | ((uint32_t)rand() & 0x1ffff);
		t[i].pfx[0] = (uint8_t)(a >> 24);
		t[i].pfx[1] = (uint8_t)(a >> 16);
		t[i].pfx[2] = (uint8_t)(a >> 8);
		t[i].pfx[3] = (uint8_t)a;
		t[i].plen = 15 + (unsigned)rand() % 18;
		mask(t[i].pfx, t[i].plen, 4);
		/* Same prefix twice: the later add replaces the earlier. */
		for (int j = 0; j < i; j++)
			if (t[j].live && t[j].plen == t[i].plen && !memcmp(t[j].pfx, t[i].pfx, 4))
				t[j].live = 0;
		t[i].nh = val.nh;
		t[i].live = 1;
		CHECK_EQ(vr_lpm_add(r, &v->v4, t[i].pfx, t[i].plen, &val), 0);
	}
	for (int i = 0; i < N; i += 3) /* delete a third */
		if (t[i].live) {
			CHECK_EQ(vr_lpm_del(r, &v->v4, t[i].pfx, t[i].plen), 0);
			t[i].live = 0;
		}
	for (int i = 0; i < LOOKUPS; i++) {
		uint32_t a = 0xc6120000u | ((uint32_t)rand() & 0x1ffff);
		uint8_t q[4] = {(uint8_t)(a >> 24), (uint8_t)(a >> 16), (uint8_t)(a >> 8), (uint8_t)a};
		const struct vr_rt_val *got = vr_lpm_lookup(&v->v4, q);
		if ((got ? got->nh : 0) != ref_lookup(t, N, q))
			bad++;
	}
	CHECK_EQ(bad, 0);
}

/* Any family, any lengths (0..bits), adds/replaces/deletes in rounds, every
 * round checked against brute force; at the end everything is deleted and
 * both tries must be empty. */
struct gref {
	uint8_t pfx[16];
	unsigned plen;
	uint32_t nh;
	int live;
};

static uint32_t gref_lookup(const struct gref *t, int n, const uint8_t *a)
{
	int best = -1;

	for (int i = 0; i < n; i++)
		if (t[i].live && matches(t[i].pfx, t[i].plen, a) &&
		    (best < 0 || t[i].plen > t[best].plen))
			best = i;
	return best < 0 ? 0 : t[best].nh;
}

static void random_addr(uint8_t *a, unsigned bytes)
{
	/* Mostly inside one /16 (v4) or /32 (v6) so prefixes nest and collide. */
	for (unsigned i = 0; i < bytes; i++)
		a[i] = (uint8_t)rand();
	if (rand() % 8) {
		a[0] = bytes == 4 ? 198 : 0x20;
		a[1] = bytes == 4 ? 18 : 0x01;
		if (bytes == 16) {
			a[2] = 0x0d;
			a[3] = 0xb8;
			for (unsigned i = 6; i < 16; i++)
				a[i] = (uint8_t)(rand() % 4);
		}
	}
}

static void test_random_any(struct vr_router *r, unsigned bytes, uint32_t vrf)
{
	enum { N = 600, ROUNDS = 6, LOOKUPS = 3000 };
	static struct gref t[N];
	struct vr_vrf *v = vr_vrf_get(r, vrf, 1);
	struct vr_lpm *tab = bytes == 4 ? &v->v4 : &v->v6;
	int bad = 0;

	memset(t, 0, sizeof(t));
	srand(bytes * 101);
	for (int round = 0; round < ROUNDS; round++) {
		for (int i = 0; i < N; i++) {
			int op = rand() % 3;
			if (t[i].live && op == 0) {
				CHECK_EQ(vr_lpm_del(r, tab, t[i].pfx, t[i].plen), 0);
				t[i].live = 0;
			} else if (!t[i].live || op == 1) {
				struct vr_rt_val val;
				if (t[i].live) /* move this entry elsewhere */
					CHECK_EQ(vr_lpm_del(r, tab, t[i].pfx, t[i].plen), 0);
				random_addr(t[i].pfx, bytes);
				t[i].plen = (unsigned)rand() % (bytes * 8 + 1);
				if (rand() % 2)
					t[i].plen = bytes * 8 - (unsigned)rand() % 12;
				mask(t[i].pfx, t[i].plen, bytes);
				for (int j = 0; j < N; j++)
					if (j != i && t[j].live && t[j].plen == t[i].plen &&
					    !memcmp(t[j].pfx, t[i].pfx, bytes))
						t[j].live = 0; /* same prefix: replaced */
				t[i].nh = (uint32_t)(round * N + i + 1);
				t[i].live = 1;
				val.nh = t[i].nh;
				val.label = 0;
				val.flags = 0;
				CHECK_EQ(vr_lpm_add(r, tab, t[i].pfx, t[i].plen, &val), 0);
			}
		}
		for (int i = 0; i < LOOKUPS; i++) {
			uint8_t q[16];
			const struct vr_rt_val *got;
			random_addr(q, bytes);
			if (i % 3 == 0) { /* near a prefix boundary */
				const struct gref *g = &t[rand() % N];
				memcpy(q, g->pfx, bytes);
				if (g->plen < bytes * 8)
					q[g->plen / 8] ^= (uint8_t)(0x80 >> (g->plen % 8));
			}
			got = vr_lpm_lookup(tab, q);
			if ((got ? got->nh : 0) != gref_lookup(t, N, q))
				bad++;
		}
	}
	CHECK_EQ(bad, 0);
	for (int i = 0; i < N; i++)
		if (t[i].live)
			CHECK_EQ(vr_lpm_del(r, tab, t[i].pfx, t[i].plen), 0);
	CHECK_EQ(tab->count, 0);
	CHECK(tab->root == NULL && tab->mroot == NULL && tab->def == NULL);
}

static int count_cb(void *arg, const uint8_t *pfx, unsigned plen, const struct vr_rt_val *v)
{
	(void)pfx;
	(void)plen;
	(void)v;
	(*(int *)arg)++;
	return 0;
}

static void test_v6_and_walk(struct vr_router *r)
{
	struct vr_vrf *v = vr_vrf_get(r, 3, 1);
	struct vr_rt_val a = {.nh = 10}, b = {.nh = 11};
	uint8_t p[16], q[16];
	const struct vr_rt_val *got;
	int n = 0;

	ip6("2001:db8::", p);
	CHECK_EQ(vr_lpm_add(r, &v->v6, p, 32, &a), 0);
	ip6("2001:db8:1:2::", p);
	CHECK_EQ(vr_lpm_add(r, &v->v6, p, 64, &b), 0);
	ip6("2001:db8:1:2::99", q);
	got = vr_lpm_lookup(&v->v6, q);
	CHECK(got && got->nh == 11);
	ip6("2001:db8:ffff::1", q);
	got = vr_lpm_lookup(&v->v6, q);
	CHECK(got && got->nh == 10);
	ip6("2001:db9::1", q);
	CHECK(vr_lpm_lookup(&v->v6, q) == NULL);
	ip6("2001:db8:1:2::", p);
	CHECK(vr_lpm_exact(&v->v6, p, 64) != NULL);
	CHECK(vr_lpm_exact(&v->v6, p, 63) == NULL);
	CHECK_EQ(vr_lpm_add(r, &v->v6, p, 129, &a), -VR_EINVAL);
	CHECK_EQ(vr_lpm_walk(&v->v6, 0, count_cb, &n), 2);
	CHECK_EQ(n, 2);
	n = 0;
	vr_lpm_walk(&v->v6, 1, count_cb, &n);
	CHECK_EQ(n, 1);
}

static void test_bridge_vni(struct vr_router *r)
{
	struct vr_vrf *v = vr_vrf_get(r, 1, 1);
	struct vr_rt_val a = {.nh = 5, .label = 5001, .flags = VR_RT_F_LABEL};
	uint8_t mac[6] = {2, 0, 0, 0, 0, 0};
	uint32_t vrf;

	for (int i = 0; i < 1000; i++) {
		mac[4] = (uint8_t)(i >> 8);
		mac[5] = (uint8_t)i;
		a.nh = (uint32_t)i + 1;
		CHECK_EQ(vr_bridge_add(r, v, mac, &a), 0);
	}
	CHECK_EQ(v->bridge_count, 1000);
	a.nh = 7777; /* re-adding a MAC replaces its entry */
	CHECK_EQ(vr_bridge_add(r, v, mac, &a), 0);
	CHECK_EQ(v->bridge_count, 1000);
	CHECK(vr_bridge_lookup(v, mac) && vr_bridge_lookup(v, mac)->nh == 7777);
	mac[4] = 1;
	mac[5] = 44; /* i = 300 */
	CHECK(vr_bridge_lookup(v, mac) && vr_bridge_lookup(v, mac)->nh == 301);
	CHECK_EQ(vr_bridge_del(r, v, mac), 0);
	CHECK(vr_bridge_lookup(v, mac) == NULL);
	CHECK_EQ(vr_bridge_del(r, v, mac), -VR_ENOENT);

	/* VNI: adds, colliding deletes keep the others reachable. */
	for (uint32_t vni = 1; vni <= 3000; vni++)
		CHECK_EQ(vr_vni_add(r, vni * 7, vni % 8), 0);
	for (uint32_t vni = 1; vni <= 3000; vni += 2)
		CHECK_EQ(vr_vni_del(r, vni * 7), 0);
	for (uint32_t vni = 1; vni <= 3000; vni++) {
		int rc = vr_vni_lookup(r, vni * 7, &vrf);
		if (vni % 2) {
			CHECK_EQ(rc, -VR_ENOENT);
		} else {
			CHECK_EQ(rc, 0);
			CHECK_EQ(vrf, vni % 8);
		}
	}
	CHECK_EQ(r->vni_count, 1500);
	CHECK_EQ(vr_vni_add(r, 0, 1), -VR_ERANGE);
	CHECK_EQ(vr_vni_add(r, 1u << 24, 1), -VR_ERANGE);
}

int main(void)
{
	struct vr_router r;

	router_setup(&r, 0);
	test_basic(&r);
	test_random(&r);
	test_random_any(&r, 4, 4);
	test_random_any(&r, 16, 5);
	test_v6_and_walk(&r);
	test_bridge_vni(&r);
	router_teardown(&r);
	T_DONE("test_lpm");
}
