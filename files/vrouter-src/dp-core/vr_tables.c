/* Router state: vifs, nexthops, VRFs with LPM and bridge tables, VNI table. */
#include "vr_core.h"
#include "vr_util.h"

_Static_assert(sizeof(struct vr_flow_entry) == 128, "flow entry is 128 bytes");
_Static_assert(sizeof(struct vr_flow_shm_hdr) == 64, "flow header is 64 bytes");

static void *zalloc(struct vr_router *r, size_t n)
{
	return r->os->zalloc(r->os_ctx, n);
}

int vr_router_init(struct vr_router *r, const struct vr_os_ops *os, void *os_ctx,
		   const struct vr_config *cfg)
{
	static const uint8_t rmac[6] = VR_ROUTER_MAC;
	size_t n;

	vr_memset(r, 0, sizeof(*r));
	r->os = os;
	r->os_ctx = os_ctx;
	r->cfg = *cfg;
	if (!r->cfg.max_vifs)
		r->cfg.max_vifs = 256;
	if (!r->cfg.max_nhs)
		r->cfg.max_nhs = 16384;
	if (!r->cfg.max_vrfs)
		r->cfg.max_vrfs = 4096;
	if (!r->cfg.max_labels)
		r->cfg.max_labels = 65536;
	if (r->cfg.max_labels > (1u << 20))
		return -VR_EINVAL;
	vr_memcpy(r->router_mac, rmac, 6);
	r->host_vif = r->fabric_vif = r->agent_vif = VR_FLOW_NONE;
	r->vifs = zalloc(r, r->cfg.max_vifs * sizeof(*r->vifs));
	r->nhs = zalloc(r, r->cfg.max_nhs * sizeof(*r->nhs));
	r->vrfs = zalloc(r, r->cfg.max_vrfs * sizeof(*r->vrfs));
	r->labels = zalloc(r, r->cfg.max_labels * sizeof(*r->labels));
	if (!r->vifs || !r->nhs || !r->vrfs || !r->labels) {
		vr_router_fini(r);
		return -VR_ENOMEM;
	}
	if (cfg->flow_mem && cfg->flow_mem_len >= sizeof(struct vr_flow_shm_hdr) + 128) {
		size_t room = (cfg->flow_mem_len - sizeof(struct vr_flow_shm_hdr)) / 128;

		for (n = 1; n * 2 <= room && n * 2 <= (1u << 30); n *= 2)
			;
		r->flow_hdr = cfg->flow_mem;
		r->flows = (struct vr_flow_entry *)(r->flow_hdr + 1);
		r->nflows = (uint32_t)n;
		vr_memset(cfg->flow_mem, 0, sizeof(struct vr_flow_shm_hdr) + n * 128);
		for (uint32_t i = 0; i < r->nflows; i++)
			r->flows[i].rindex = VR_FLOW_NONE;
		r->flow_hdr->nentries = r->nflows;
		r->flow_hdr->entry_size = sizeof(struct vr_flow_entry);
		r->flow_hdr->version = VR_FLOW_SHM_VERSION;
		r->flow_hdr->magic = VR_FLOW_SHM_MAGIC; /* last: readers check it */
	}
	return 0;
}

static void bridge_free(struct vr_router *r, struct vr_vrf *v)
{
	for (unsigned b = 0; b < VR_BRIDGE_BUCKETS; b++) {
		while (v->bridge[b]) {
			struct vr_bridge_ent *e = v->bridge[b];
			v->bridge[b] = e->next;
			r->os->free(r->os_ctx, e);
		}
	}
}

void vr_router_fini(struct vr_router *r)
{
	if (r->vifs)
		for (uint32_t i = 0; i < r->cfg.max_vifs; i++)
			r->os->free(r->os_ctx, r->vifs[i]);
	if (r->nhs)
		for (uint32_t i = 0; i < r->cfg.max_nhs; i++)
			r->os->free(r->os_ctx, r->nhs[i]);
	if (r->vrfs)
		for (uint32_t i = 0; i < r->cfg.max_vrfs; i++) {
			struct vr_vrf *v = r->vrfs[i];
			if (!v)
				continue;
			vr_lpm_free(r, &v->v4);
			vr_lpm_free(r, &v->v6);
			bridge_free(r, v);
			r->os->free(r->os_ctx, v);
		}
	for (uint32_t i = 0; i < r->nheld; i++)
		r->os->pkt_free(r->os_ctx, r->hold[i].pkt);
	r->nheld = 0;
	r->os->free(r->os_ctx, r->vifs);
	r->os->free(r->os_ctx, r->nhs);
	r->os->free(r->os_ctx, r->vrfs);
	r->os->free(r->os_ctx, r->labels);
	r->vifs = (void *)0;
	r->nhs = (void *)0;
	r->vrfs = (void *)0;
	r->labels = (void *)0;
}

struct vr_vif *vr_vif_get(struct vr_router *r, uint32_t idx)
{
	return idx < r->cfg.max_vifs ? r->vifs[idx] : (struct vr_vif *)0;
}

struct vr_nh *vr_nh_get(struct vr_router *r, uint32_t id)
{
	return id < r->cfg.max_nhs ? r->nhs[id] : (struct vr_nh *)0;
}

struct vr_vrf *vr_vrf_get(struct vr_router *r, uint32_t vrf, int create)
{
	struct vr_vrf *v;

	if (vrf >= r->cfg.max_vrfs)
		return (struct vr_vrf *)0;
	v = r->vrfs[vrf];
	if (!v && create) {
		v = zalloc(r, sizeof(*v));
		if (!v)
			return v;
		v->v4.bits = 32;
		v->v6.bits = 128;
		r->vrfs[vrf] = v;
	}
	return v;
}

/* ---- longest-prefix match: a binary trie, one bit per level ---- */

static int bit_at(const uint8_t *a, unsigned i)
{
	return (a[i / 8] >> (7 - i % 8)) & 1;
}

static unsigned nibble(const uint8_t *a, unsigned level)
{
	return (a[level / 2] >> ((level & 1) ? 0 : 4)) & 0xfu;
}

static void slot_set(struct vr_mb_node *n, unsigned i, struct vr_mb_node *child,
		     const struct vr_rt_val *val)
{
	int before = n->s[i].child || n->s[i].val;

	n->s[i].child = child;
	n->s[i].val = val;
	n->used = n->used + (uint32_t)(child || val) - (uint32_t)before;
}

/*
 * Recompute the stride-trie slots a prefix of pfx/plen covers, from the
 * binary trie.  Creates path nodes only when a slot gets a value; frees nodes
 * left empty.  Returns 0 or -VR_ENOMEM.
 */
static int mb_refresh(struct vr_router *r, struct vr_lpm *t, const uint8_t *pfx, unsigned plen)
{
	struct vr_mb_node *path[32];
	const struct vr_rt_val *vals[16];
	const struct vr_lpm_node *bn = t->root;
	unsigned level, span, first, any = 0;
	uint8_t a[16];

	if (!plen) {
		t->def = t->root && t->root->valid ? &t->root->val : (const struct vr_rt_val *)0;
		return 0;
	}
	level = (plen - 1) / 4;
	span = 1u << (4 * (level + 1) - plen);
	first = nibble(pfx, level) & ~(span - 1);
	for (unsigned d = 0; bn && d < 4 * level; d++)
		bn = bn->child[bit_at(pfx, d)];
	vr_memcpy(a, pfx, t->bits / 8);
	for (unsigned i = 0; i < span; i++) {
		const struct vr_lpm_node *n = bn;
		unsigned sh = (level & 1) ? 0 : 4;

		a[level / 2] = (uint8_t)((a[level / 2] & ~(0xfu << sh)) | ((first + i) << sh));
		vals[i] = (const struct vr_rt_val *)0;
		for (unsigned d = 4 * level; n && d < 4 * level + 4; d++) {
			n = n->child[bit_at(a, d)];
			if (n && n->valid)
				vals[i] = &n->val;
		}
		any |= vals[i] != 0;
	}
	/* Walk (creating if needed) the nodes down to `level`. */
	for (unsigned k = 0; k <= level; k++) {
		struct vr_mb_node *n = k ? path[k - 1]->s[nibble(pfx, k - 1)].child : t->mroot;

		if (!n) {
			if (!any)
				return 0; /* nothing stored here, nothing to clear */
			n = zalloc(r, sizeof(*n));
			if (!n)
				return -VR_ENOMEM;
			if (k)
				slot_set(path[k - 1], nibble(pfx, k - 1), n,
					 path[k - 1]->s[nibble(pfx, k - 1)].val);
			else
				t->mroot = n;
		}
		path[k] = n;
	}
	for (unsigned i = 0; i < span; i++)
		slot_set(path[level], first + i, path[level]->s[first + i].child, vals[i]);
	for (unsigned k = level + 1; k-- > 0 && !path[k]->used;) {
		r->os->free(r->os_ctx, path[k]);
		if (k)
			slot_set(path[k - 1], nibble(pfx, k - 1), (struct vr_mb_node *)0,
				 path[k - 1]->s[nibble(pfx, k - 1)].val);
		else
			t->mroot = (struct vr_mb_node *)0;
	}
	return 0;
}

int vr_lpm_add(struct vr_router *r, struct vr_lpm *t, const uint8_t *pfx, unsigned plen,
	       const struct vr_rt_val *v)
{
	struct vr_lpm_node **np = &t->root;

	if (plen > t->bits)
		return -VR_EINVAL;
	for (unsigned i = 0;; i++) {
		if (!*np) {
			*np = zalloc(r, sizeof(**np));
			if (!*np)
				return -VR_ENOMEM;
		}
		if (i == plen)
			break;
		np = &(*np)->child[bit_at(pfx, i)];
	}
	if (!(*np)->valid)
		t->count++;
	(*np)->valid = 1;
	(*np)->val = *v;
	if (mb_refresh(r, t, pfx, plen)) {
		vr_lpm_del(r, t, pfx, plen);
		return -VR_ENOMEM;
	}
	return 0;
}

/* Remove the entry at depth `depth` along pfx; prune empty nodes.  Returns
 * 1 if *np was freed. */
static int lpm_del(struct vr_router *r, struct vr_lpm *t, struct vr_lpm_node **np,
		   const uint8_t *pfx, unsigned plen, unsigned depth, int *found)
{
	struct vr_lpm_node *n = *np;

	if (!n)
		return 0;
	if (depth == plen) {
		if (n->valid) {
			n->valid = 0;
			t->count--;
			*found = 1;
		}
	} else {
		lpm_del(r, t, &n->child[bit_at(pfx, depth)], pfx, plen, depth + 1, found);
	}
	if (!n->valid && !n->child[0] && !n->child[1]) {
		r->os->free(r->os_ctx, n);
		*np = (struct vr_lpm_node *)0;
		return 1;
	}
	return 0;
}

int vr_lpm_del(struct vr_router *r, struct vr_lpm *t, const uint8_t *pfx, unsigned plen)
{
	int found = 0;

	if (plen > t->bits)
		return -VR_EINVAL;
	lpm_del(r, t, &t->root, pfx, plen, 0, &found);
	if (!found)
		return -VR_ENOENT;
	mb_refresh(r, t, pfx, plen); /* only clears or shortens: no allocation */
	return 0;
}

const struct vr_rt_val *vr_lpm_exact(const struct vr_lpm *t, const uint8_t *pfx, unsigned plen)
{
	const struct vr_lpm_node *n = t->root;

	if (plen > t->bits)
		return (const struct vr_rt_val *)0;
	for (unsigned i = 0; n && i < plen; i++)
		n = n->child[bit_at(pfx, i)];
	return n && n->valid ? &n->val : (const struct vr_rt_val *)0;
}

const struct vr_rt_val *vr_lpm_lookup(const struct vr_lpm *t, const uint8_t *addr)
{
	const struct vr_mb_node *n = t->mroot;
	const struct vr_rt_val *best = t->def;

	for (unsigned level = 0; n && level < t->bits / 4u; level++) {
		const struct vr_mb_slot *s = &n->s[nibble(addr, level)];

		if (s->val)
			best = s->val;
		n = s->child;
	}
	return best;
}

struct lpm_walk {
	uint8_t pfx[16];
	uint32_t skip, seen;
	vr_lpm_fn fn;
	void *arg;
	int stop;
};

static void lpm_walk(struct lpm_walk *w, const struct vr_lpm_node *n, unsigned depth)
{
	if (!n || w->stop)
		return;
	if (n->valid) {
		if (w->seen >= w->skip && w->fn(w->arg, w->pfx, depth, &n->val)) {
			w->stop = 1;
			return;
		}
		w->seen++;
	}
	for (int b = 0; b < 2 && !w->stop; b++) {
		if (!n->child[b])
			continue;
		if (b)
			w->pfx[depth / 8] |= (uint8_t)(0x80 >> (depth % 8));
		lpm_walk(w, n->child[b], depth + 1);
		w->pfx[depth / 8] &= (uint8_t)~(0x80 >> (depth % 8));
	}
}

uint32_t vr_lpm_walk(const struct vr_lpm *t, uint32_t skip, vr_lpm_fn fn, void *arg)
{
	struct lpm_walk w;

	vr_memset(&w, 0, sizeof(w));
	w.skip = skip;
	w.fn = fn;
	w.arg = arg;
	lpm_walk(&w, t->root, 0);
	return w.seen;
}

static void lpm_free(struct vr_router *r, struct vr_lpm_node *n)
{
	if (!n)
		return;
	lpm_free(r, n->child[0]);
	lpm_free(r, n->child[1]);
	r->os->free(r->os_ctx, n);
}

static void mb_free(struct vr_router *r, struct vr_mb_node *n)
{
	if (!n)
		return;
	for (unsigned i = 0; i < 16; i++)
		mb_free(r, n->s[i].child);
	r->os->free(r->os_ctx, n);
}

void vr_lpm_free(struct vr_router *r, struct vr_lpm *t)
{
	lpm_free(r, t->root);
	mb_free(r, t->mroot);
	t->root = (struct vr_lpm_node *)0;
	t->mroot = (struct vr_mb_node *)0;
	t->def = (const struct vr_rt_val *)0;
	t->count = 0;
}

/* ---- bridge (MAC) table per VRF ---- */

static unsigned mac_bucket(const uint8_t *mac)
{
	uint32_t h = 2166136261u;

	for (int i = 0; i < 6; i++)
		h = (h ^ mac[i]) * 16777619u;
	return h % VR_BRIDGE_BUCKETS;
}

static struct vr_bridge_ent *bridge_find(const struct vr_vrf *v, const uint8_t *mac)
{
	for (struct vr_bridge_ent *e = v->bridge[mac_bucket(mac)]; e; e = e->next)
		if (!vr_memcmp(e->mac, mac, 6))
			return e;
	return (struct vr_bridge_ent *)0;
}

const struct vr_rt_val *vr_bridge_lookup(const struct vr_vrf *v, const uint8_t *mac)
{
	const struct vr_bridge_ent *e = bridge_find(v, mac);

	return e ? &e->val : (const struct vr_rt_val *)0;
}

int vr_bridge_add(struct vr_router *r, struct vr_vrf *v, const uint8_t *mac,
		  const struct vr_rt_val *val)
{
	struct vr_bridge_ent *e = bridge_find(v, mac);
	unsigned b = mac_bucket(mac);

	if (!e) {
		e = zalloc(r, sizeof(*e));
		if (!e)
			return -VR_ENOMEM;
		vr_memcpy(e->mac, mac, 6);
		e->next = v->bridge[b];
		v->bridge[b] = e;
		v->bridge_count++;
	}
	e->val = *val;
	return 0;
}

int vr_bridge_del(struct vr_router *r, struct vr_vrf *v, const uint8_t *mac)
{
	for (struct vr_bridge_ent **ep = &v->bridge[mac_bucket(mac)]; *ep; ep = &(*ep)->next) {
		struct vr_bridge_ent *e = *ep;
		if (!vr_memcmp(e->mac, mac, 6)) {
			*ep = e->next;
			r->os->free(r->os_ctx, e);
			v->bridge_count--;
			return 0;
		}
	}
	return -VR_ENOENT;
}

/* ---- VNI -> VRF, open addressing with linear probing ---- */

static unsigned vni_slot(uint32_t vni)
{
	return (vni * 2654435761u) % VR_VNI_SLOTS;
}

int vr_vni_lookup(const struct vr_router *r, uint32_t vni, uint32_t *vrf)
{
	for (unsigned i = 0, s = vni_slot(vni); i < VR_VNI_SLOTS; i++, s = (s + 1) % VR_VNI_SLOTS) {
		if (r->vni[s].vni == vni) {
			*vrf = r->vni[s].vrf;
			return 0;
		}
		if (!r->vni[s].vni)
			break;
	}
	return -VR_ENOENT;
}

int vr_vni_add(struct vr_router *r, uint32_t vni, uint32_t vrf)
{
	if (!vni || vni > 0xffffff)
		return -VR_ERANGE;
	for (unsigned i = 0, s = vni_slot(vni); i < VR_VNI_SLOTS; i++, s = (s + 1) % VR_VNI_SLOTS) {
		if (r->vni[s].vni == vni || !r->vni[s].vni) {
			if (!r->vni[s].vni)
				r->vni_count++;
			r->vni[s].vni = vni;
			r->vni[s].vrf = vrf;
			return 0;
		}
	}
	return -VR_ENOSPC;
}

int vr_vni_del(struct vr_router *r, uint32_t vni)
{
	unsigned s = vni_slot(vni), i;

	for (i = 0; i < VR_VNI_SLOTS && r->vni[s].vni != vni; i++, s = (s + 1) % VR_VNI_SLOTS)
		if (!r->vni[s].vni)
			return -VR_ENOENT;
	if (i == VR_VNI_SLOTS || !vni)
		return -VR_ENOENT;
	r->vni[s].vni = 0;
	r->vni_count--;
	/* Re-place the rest of the probe run so lookups still find them. */
	for (s = (s + 1) % VR_VNI_SLOTS; r->vni[s].vni; s = (s + 1) % VR_VNI_SLOTS) {
		struct vr_vni_slot e = r->vni[s];
		r->vni[s].vni = 0;
		r->vni_count--;
		vr_vni_add(r, e.vni, e.vrf);
	}
	return 0;
}
