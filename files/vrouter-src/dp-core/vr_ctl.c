/*
 * Control messages: apply add/delete, answer get/dump.  Every field is
 * checked before any state changes, so a bad request changes nothing.
 */
#include "vr_core.h"
#include "vr_util.h"

#define OBJ_REPLY_MAX 640u /* largest single-object reply */
#define DONE_REPLY_MAX 48u

struct out {
	uint8_t *buf;
	size_t cap, len;
};

static int emit(struct out *o, const struct vr_msg *m)
{
	int n = vr_msg_encode(m, o->buf + o->len, o->cap - o->len);

	if (n < 0)
		return n;
	o->len += (size_t)n;
	return 0;
}

static void reply_init(struct vr_msg *m, const struct vr_msg *req, uint8_t flags)
{
	vr_msg_init(m, req->op, req->obj, (uint8_t)(VR_MSGF_REPLY | flags), req->seq);
	vr_msg_put_num(m, VR_A_RESULT, 0);
}

static int room(const struct out *o)
{
	return o->cap - o->len >= OBJ_REPLY_MAX + DONE_REPLY_MAX;
}

static int dump_done(struct out *o, const struct vr_msg *req, uint32_t count, int more,
		     uint32_t marker)
{
	struct vr_msg m;

	reply_init(&m, req, (uint8_t)(VR_MSGF_DONE | (more ? VR_MSGF_MORE : 0)));
	vr_msg_put_num(&m, VR_A_COUNT, count);
	if (more)
		vr_msg_put_num(&m, VR_A_MARKER, marker);
	return emit(o, &m);
}

/* A required integer attribute no larger than max. */
static int need(const struct vr_msg *m, unsigned id, uint64_t max, uint32_t *v)
{
	if (!vr_msg_has(m, id))
		return -VR_EINVAL;
	if (m->a[id].num > max)
		return -VR_ERANGE;
	*v = (uint32_t)m->a[id].num;
	return 0;
}

static int opt(const struct vr_msg *m, unsigned id, uint64_t max, uint32_t def, uint32_t *v)
{
	*v = def;
	return vr_msg_has(m, id) ? need(m, id, max, v) : 0;
}

static uint32_t marker(const struct vr_msg *m)
{
	return vr_msg_has(m, VR_A_MARKER) ? (uint32_t)m->a[VR_A_MARKER].num : 0;
}

static uint16_t net16(uint16_t host)
{
	uint8_t b[2];
	uint16_t v;

	vr_put_be16(b, host);
	vr_memcpy(&v, b, 2);
	return v;
}

/* ---------------- vif ---------------- */

static void refresh_special_vifs(struct vr_router *r)
{
	r->host_vif = r->fabric_vif = r->agent_vif = VR_FLOW_NONE;
	r->has_tun_ip = 0;
	for (uint32_t i = 0; i < r->cfg.max_vifs; i++) {
		struct vr_vif *v = r->vifs[i];
		if (!v)
			continue;
		if (v->type == VR_VIF_HOST && r->host_vif == VR_FLOW_NONE)
			r->host_vif = i;
		if (v->type == VR_VIF_FABRIC && r->fabric_vif == VR_FLOW_NONE)
			r->fabric_vif = i;
		if (v->type == VR_VIF_AGENT && r->agent_vif == VR_FLOW_NONE)
			r->agent_vif = i;
		/* The tunnel endpoint is vhost0's address, else the fabric's. */
		if (v->iplen == 4 && (v->type == VR_VIF_HOST ||
				      (v->type == VR_VIF_FABRIC && !r->has_tun_ip))) {
			vr_memcpy(r->tun_ip, v->ip, 4);
			r->has_tun_ip = 1;
		}
	}
}

static int vif_reply(struct out *o, const struct vr_msg *req, const struct vr_vif *v)
{
	struct vr_msg m;

	reply_init(&m, req, 0);
	vr_msg_put_num(&m, VR_A_VIF_IDX, v->idx);
	vr_msg_put_num(&m, VR_A_VIF_TYPE, v->type);
	vr_msg_put_num(&m, VR_A_VIF_VRF, v->vrf);
	vr_msg_put_bytes(&m, VR_A_VIF_MAC, v->mac, 6);
	vr_msg_put_num(&m, VR_A_VIF_MTU, v->mtu);
	vr_msg_put_num(&m, VR_A_VIF_FLAGS, v->flags);
	if (v->name[0])
		vr_msg_put_bytes(&m, VR_A_VIF_NAME, v->name,
				 (uint16_t)__builtin_strlen(v->name));
	vr_msg_put_num(&m, VR_A_VIF_OS_IDX, v->os_idx);
	if (v->iplen)
		vr_msg_put_bytes(&m, VR_A_VIF_IP, v->ip, v->iplen);
	vr_msg_put_num(&m, VR_A_VIF_RX_PKTS, v->rx_pkts);
	vr_msg_put_num(&m, VR_A_VIF_RX_BYTES, v->rx_bytes);
	vr_msg_put_num(&m, VR_A_VIF_TX_PKTS, v->tx_pkts);
	vr_msg_put_num(&m, VR_A_VIF_TX_BYTES, v->tx_bytes);
	vr_msg_put_num(&m, VR_A_VIF_DROPS, v->drops);
	return emit(o, &m);
}

static int vif_msg(struct vr_router *r, const struct vr_msg *m, struct out *o)
{
	uint32_t idx, type, vrf, mtu, flags, os_idx;
	struct vr_vif *v;
	int rc;

	if (m->op == VR_OP_DUMP) {
		uint32_t n = 0, i;
		for (i = marker(m); i < r->cfg.max_vifs; i++) {
			if (!r->vifs[i])
				continue;
			if (!room(o))
				return dump_done(o, m, n, 1, i);
			rc = vif_reply(o, m, r->vifs[i]);
			if (rc)
				return rc;
			n++;
		}
		return dump_done(o, m, n, 0, 0);
	}
	rc = need(m, VR_A_VIF_IDX, r->cfg.max_vifs - 1, &idx);
	if (rc)
		return rc;
	v = r->vifs[idx];
	if (m->op == VR_OP_GET)
		return v ? vif_reply(o, m, v) : -VR_ENOENT;
	if (m->op == VR_OP_DEL) {
		if (!v)
			return -VR_ENOENT;
		r->os->free(r->os_ctx, v);
		r->vifs[idx] = (struct vr_vif *)0;
		refresh_special_vifs(r);
		return 0;
	}
	if ((rc = need(m, VR_A_VIF_TYPE, VR_VIF_AGENT, &type)) ||
	    (rc = opt(m, VR_A_VIF_VRF, r->cfg.max_vrfs - 1, 0, &vrf)) ||
	    (rc = opt(m, VR_A_VIF_MTU, 0xffff, 1500, &mtu)) ||
	    (rc = opt(m, VR_A_VIF_FLAGS, VR_VIF_F_POLICY, 0, &flags)) ||
	    (rc = opt(m, VR_A_VIF_OS_IDX, 0xffffffffu, idx, &os_idx)))
		return rc;
	if (!type)
		return -VR_ERANGE;
	if (!v) {
		v = r->os->zalloc(r->os_ctx, sizeof(*v));
		if (!v)
			return -VR_ENOMEM;
		r->vifs[idx] = v;
	}
	v->idx = idx;
	v->type = (uint8_t)type;
	v->vrf = vrf;
	v->mtu = (uint16_t)mtu;
	v->flags = flags;
	v->os_idx = os_idx;
	vr_memset(v->mac, 0, 6);
	if (vr_msg_has(m, VR_A_VIF_MAC))
		vr_memcpy(v->mac, m->a[VR_A_VIF_MAC].ptr, 6);
	vr_memset(v->name, 0, sizeof(v->name));
	if (vr_msg_has(m, VR_A_VIF_NAME))
		vr_memcpy(v->name, m->a[VR_A_VIF_NAME].ptr, m->a[VR_A_VIF_NAME].len);
	v->iplen = 0;
	if (vr_msg_has(m, VR_A_VIF_IP)) {
		v->iplen = (uint8_t)m->a[VR_A_VIF_IP].len;
		vr_memcpy(v->ip, m->a[VR_A_VIF_IP].ptr, v->iplen);
	}
	refresh_special_vifs(r);
	return 0;
}

/* ---------------- nexthop ---------------- */

static int nh_reply(struct out *o, const struct vr_msg *req, const struct vr_nh *nh)
{
	uint8_t comps[VR_MAX_COMPONENTS * 8];
	struct vr_msg m;

	reply_init(&m, req, 0);
	vr_msg_put_num(&m, VR_A_NH_ID, nh->id);
	vr_msg_put_num(&m, VR_A_NH_TYPE, nh->type);
	vr_msg_put_num(&m, VR_A_NH_FLAGS, nh->flags);
	vr_msg_put_num(&m, VR_A_NH_VRF, nh->vrf);
	if (nh->type == VR_NH_ENCAP || nh->type == VR_NH_TUNNEL) {
		vr_msg_put_num(&m, VR_A_NH_OIF, nh->oif);
		vr_msg_put_bytes(&m, VR_A_NH_SMAC, nh->smac, 6);
		vr_msg_put_bytes(&m, VR_A_NH_DMAC, nh->dmac, 6);
	}
	if (nh->type == VR_NH_TUNNEL) {
		vr_msg_put_bytes(&m, VR_A_NH_TUN_SIP, nh->sip, 4);
		vr_msg_put_bytes(&m, VR_A_NH_TUN_DIP, nh->dip, 4);
	}
	if (nh->type == VR_NH_COMPOSITE && nh->ncomp) {
		for (uint32_t i = 0; i < nh->ncomp; i++) {
			vr_put_be32(comps + 8 * i, nh->comp[i].nh);
			vr_put_be32(comps + 8 * i + 4, nh->comp[i].label);
		}
		vr_msg_put_bytes(&m, VR_A_NH_COMPONENTS, comps, (uint16_t)(nh->ncomp * 8));
	}
	return emit(o, &m);
}

static int one_bit(uint32_t v)
{
	return v && !(v & (v - 1));
}

static int nh_msg(struct vr_router *r, const struct vr_msg *m, struct out *o)
{
	struct vr_nh tmp, *nh;
	uint32_t id, type, n;
	int rc;

	if (m->op == VR_OP_DUMP) {
		uint32_t cnt = 0, i;
		for (i = marker(m); i < r->cfg.max_nhs; i++) {
			if (!r->nhs[i])
				continue;
			if (!room(o))
				return dump_done(o, m, cnt, 1, i);
			rc = nh_reply(o, m, r->nhs[i]);
			if (rc)
				return rc;
			cnt++;
		}
		return dump_done(o, m, cnt, 0, 0);
	}
	rc = need(m, VR_A_NH_ID, r->cfg.max_nhs - 1, &id);
	if (rc)
		return rc;
	if (!id)
		return -VR_ERANGE; /* nexthop 0 means "none" */
	nh = r->nhs[id];
	if (m->op == VR_OP_GET)
		return nh ? nh_reply(o, m, nh) : -VR_ENOENT;
	if (m->op == VR_OP_DEL) {
		if (!nh)
			return -VR_ENOENT;
		r->os->free(r->os_ctx, nh);
		r->nhs[id] = (struct vr_nh *)0;
		return 0;
	}
	vr_memset(&tmp, 0, sizeof(tmp));
	tmp.id = id;
	if ((rc = need(m, VR_A_NH_TYPE, VR_NH_COMPOSITE, &type)) ||
	    (rc = opt(m, VR_A_NH_FLAGS, VR_NH_F_ALL, 0, &tmp.flags)) ||
	    (rc = opt(m, VR_A_NH_VRF, r->cfg.max_vrfs - 1, 0, &tmp.vrf)) ||
	    (rc = opt(m, VR_A_NH_OIF, r->cfg.max_vifs - 1, 0, &tmp.oif)))
		return rc;
	if (!type)
		return -VR_ERANGE;
	tmp.type = (uint8_t)type;
	if (vr_msg_has(m, VR_A_NH_SMAC))
		vr_memcpy(tmp.smac, m->a[VR_A_NH_SMAC].ptr, 6);
	if (vr_msg_has(m, VR_A_NH_DMAC))
		vr_memcpy(tmp.dmac, m->a[VR_A_NH_DMAC].ptr, 6);
	if ((type == VR_NH_ENCAP || type == VR_NH_TUNNEL) && !vr_msg_has(m, VR_A_NH_OIF))
		return -VR_EINVAL;
	if (type == VR_NH_TUNNEL) {
		/* IPv4 underlay only. */
		if (!one_bit(tmp.flags & (VR_NH_F_MPLS_GRE | VR_NH_F_MPLS_UDP | VR_NH_F_VXLAN)) ||
		    !vr_msg_has(m, VR_A_NH_TUN_SIP) || !vr_msg_has(m, VR_A_NH_TUN_DIP) ||
		    m->a[VR_A_NH_TUN_SIP].len != 4 || m->a[VR_A_NH_TUN_DIP].len != 4)
			return -VR_EINVAL;
		vr_memcpy(tmp.sip, m->a[VR_A_NH_TUN_SIP].ptr, 4);
		vr_memcpy(tmp.dip, m->a[VR_A_NH_TUN_DIP].ptr, 4);
	}
	if (type == VR_NH_COMPOSITE) {
		n = vr_msg_array_len(m, VR_A_NH_COMPONENTS);
		if (!one_bit(tmp.flags & (VR_NH_F_ECMP | VR_NH_F_MCAST)) || n % 2 ||
		    n / 2 > VR_MAX_COMPONENTS)
			return -VR_EINVAL;
		for (uint32_t i = 0; i < n / 2; i++) {
			tmp.comp[i].nh = (uint32_t)vr_msg_array_elem(m, VR_A_NH_COMPONENTS, 2 * i);
			tmp.comp[i].label =
				(uint32_t)vr_msg_array_elem(m, VR_A_NH_COMPONENTS, 2 * i + 1);
			if (!tmp.comp[i].nh || tmp.comp[i].nh >= r->cfg.max_nhs ||
			    tmp.comp[i].nh == id)
				return -VR_ERANGE;
		}
		tmp.ncomp = n / 2;
	}
	if (!nh) {
		nh = r->os->zalloc(r->os_ctx, sizeof(*nh));
		if (!nh)
			return -VR_ENOMEM;
		r->nhs[id] = nh;
	}
	*nh = tmp;
	return 0;
}

/* ---------------- routes ---------------- */

struct rt_dump {
	struct out *o;
	const struct vr_msg *req;
	uint32_t vrf, family, sent;
	int rc, full;
};

static int rt_reply(struct out *o, const struct vr_msg *req, uint32_t vrf, uint32_t family,
		    const uint8_t *key, unsigned plen, const struct vr_rt_val *v)
{
	struct vr_msg m;

	reply_init(&m, req, 0);
	vr_msg_put_num(&m, VR_A_RT_VRF, vrf);
	vr_msg_put_num(&m, VR_A_RT_FAMILY, family);
	if (family == VR_AF_BRIDGE) {
		vr_msg_put_bytes(&m, VR_A_RT_MAC, key, 6);
	} else {
		vr_msg_put_bytes(&m, VR_A_RT_PREFIX, key, family == VR_AF_INET ? 4 : 16);
		vr_msg_put_num(&m, VR_A_RT_PLEN, plen);
	}
	vr_msg_put_num(&m, VR_A_RT_NH, v->nh);
	if (v->flags & VR_RT_F_LABEL)
		vr_msg_put_num(&m, VR_A_RT_LABEL, v->label);
	vr_msg_put_num(&m, VR_A_RT_FLAGS, v->flags);
	return emit(o, &m);
}

static int rt_dump_one(void *arg, const uint8_t *pfx, unsigned plen, const struct vr_rt_val *v)
{
	struct rt_dump *d = arg;

	if (!room(d->o)) {
		d->full = 1;
		return 1;
	}
	d->rc = rt_reply(d->o, d->req, d->vrf, d->family, pfx, plen, v);
	if (d->rc)
		return 1;
	d->sent++;
	return 0;
}

static int rt_dump(struct vr_router *r, const struct vr_msg *m, struct out *o, uint32_t vrf,
		   uint32_t family)
{
	struct vr_vrf *v = vr_vrf_get(r, vrf, 0);
	struct rt_dump d = {.o = o, .req = m, .vrf = vrf, .family = family};
	uint32_t skip = marker(m);

	if (v && family == VR_AF_BRIDGE) {
		uint32_t seen = 0;
		for (unsigned b = 0; b < VR_BRIDGE_BUCKETS && !d.full && !d.rc; b++)
			for (struct vr_bridge_ent *e = v->bridge[b]; e && !d.full && !d.rc;
			     e = e->next)
				if (seen++ >= skip)
					rt_dump_one(&d, e->mac, 0, &e->val);
	} else if (v) {
		vr_lpm_walk(family == VR_AF_INET ? &v->v4 : &v->v6, skip, rt_dump_one, &d);
	}
	if (d.rc)
		return d.rc;
	return dump_done(o, m, d.sent, d.full, skip + d.sent);
}

static int rt_msg(struct vr_router *r, const struct vr_msg *m, struct out *o)
{
	uint32_t vrf, family, plen = 0, nh, label, flags, alen = 0;
	const uint8_t *key = (const uint8_t *)0;
	const struct vr_rt_val *cur;
	struct vr_rt_val val;
	struct vr_lpm *t = (struct vr_lpm *)0;
	struct vr_vrf *v;
	int rc;

	if ((rc = need(m, VR_A_RT_VRF, r->cfg.max_vrfs - 1, &vrf)) ||
	    (rc = need(m, VR_A_RT_FAMILY, VR_AF_BRIDGE, &family)))
		return rc;
	if (!family)
		return -VR_ERANGE;
	if (m->op == VR_OP_DUMP)
		return rt_dump(r, m, o, vrf, family);
	if (family == VR_AF_BRIDGE) {
		if (!vr_msg_has(m, VR_A_RT_MAC))
			return -VR_EINVAL;
		key = m->a[VR_A_RT_MAC].ptr;
	} else {
		alen = family == VR_AF_INET ? 4 : 16;
		if (!vr_msg_has(m, VR_A_RT_PREFIX) || m->a[VR_A_RT_PREFIX].len != alen)
			return -VR_EINVAL;
		if ((rc = need(m, VR_A_RT_PLEN, alen * 8, &plen)))
			return rc;
		key = m->a[VR_A_RT_PREFIX].ptr;
		for (unsigned i = plen; i < alen * 8; i++) /* host bits must be zero */
			if ((key[i / 8] >> (7 - i % 8)) & 1)
				return -VR_EINVAL;
	}
	v = vr_vrf_get(r, vrf, m->op == VR_OP_ADD);
	if (!v)
		return m->op == VR_OP_ADD ? -VR_ENOMEM : -VR_ENOENT;
	if (family != VR_AF_BRIDGE)
		t = family == VR_AF_INET ? &v->v4 : &v->v6;
	if (m->op == VR_OP_GET) {
		cur = t ? vr_lpm_exact(t, key, plen) : vr_bridge_lookup(v, key);
		return cur ? rt_reply(o, m, vrf, family, key, plen, cur) : -VR_ENOENT;
	}
	if (m->op == VR_OP_DEL)
		return t ? vr_lpm_del(r, t, key, plen) : vr_bridge_del(r, v, key);
	if ((rc = need(m, VR_A_RT_NH, r->cfg.max_nhs - 1, &nh)) ||
	    (rc = opt(m, VR_A_RT_LABEL, 0xffffff, 0, &label)) ||
	    (rc = opt(m, VR_A_RT_FLAGS, VR_RT_F_LABEL, 0, &flags)))
		return rc;
	if (!nh || ((flags & VR_RT_F_LABEL) && !vr_msg_has(m, VR_A_RT_LABEL)))
		return -VR_EINVAL;
	val.nh = nh;
	val.label = label;
	val.flags = flags;
	return t ? vr_lpm_add(r, t, key, plen, &val) : vr_bridge_add(r, v, key, &val);
}

/* ---------------- MPLS labels, VNIs ---------------- */

static int label_reply(struct out *o, const struct vr_msg *req, uint32_t label, uint32_t nh)
{
	struct vr_msg m;

	reply_init(&m, req, 0);
	vr_msg_put_num(&m, VR_A_LBL_LABEL, label);
	vr_msg_put_num(&m, VR_A_LBL_NH, nh);
	return emit(o, &m);
}

static int label_msg(struct vr_router *r, const struct vr_msg *m, struct out *o)
{
	uint32_t label, nh;
	int rc;

	if (m->op == VR_OP_DUMP) {
		uint32_t n = 0, i;
		for (i = marker(m); i < r->cfg.max_labels; i++) {
			if (!r->labels[i])
				continue;
			if (!room(o))
				return dump_done(o, m, n, 1, i);
			if ((rc = label_reply(o, m, i, r->labels[i])))
				return rc;
			n++;
		}
		return dump_done(o, m, n, 0, 0);
	}
	if ((rc = need(m, VR_A_LBL_LABEL, r->cfg.max_labels - 1, &label)))
		return rc;
	if (m->op == VR_OP_GET)
		return r->labels[label] ? label_reply(o, m, label, r->labels[label]) : -VR_ENOENT;
	if (m->op == VR_OP_DEL) {
		if (!r->labels[label])
			return -VR_ENOENT;
		r->labels[label] = 0;
		return 0;
	}
	if ((rc = need(m, VR_A_LBL_NH, r->cfg.max_nhs - 1, &nh)))
		return rc;
	if (!nh)
		return -VR_ERANGE;
	r->labels[label] = nh;
	return 0;
}

static int vni_reply(struct out *o, const struct vr_msg *req, uint32_t vni, uint32_t vrf)
{
	struct vr_msg m;

	reply_init(&m, req, 0);
	vr_msg_put_num(&m, VR_A_VNI_VNI, vni);
	vr_msg_put_num(&m, VR_A_VNI_VRF, vrf);
	return emit(o, &m);
}

static int vni_msg(struct vr_router *r, const struct vr_msg *m, struct out *o)
{
	uint32_t vni, vrf;
	int rc;

	if (m->op == VR_OP_DUMP) {
		uint32_t n = 0, i;
		for (i = marker(m); i < VR_VNI_SLOTS; i++) {
			if (!r->vni[i].vni)
				continue;
			if (!room(o))
				return dump_done(o, m, n, 1, i);
			if ((rc = vni_reply(o, m, r->vni[i].vni, r->vni[i].vrf)))
				return rc;
			n++;
		}
		return dump_done(o, m, n, 0, 0);
	}
	if ((rc = need(m, VR_A_VNI_VNI, 0xffffff, &vni)))
		return rc;
	if (!vni)
		return -VR_ERANGE;
	if (m->op == VR_OP_GET)
		return vr_vni_lookup(r, vni, &vrf) ? -VR_ENOENT : vni_reply(o, m, vni, vrf);
	if (m->op == VR_OP_DEL)
		return vr_vni_del(r, vni);
	if ((rc = need(m, VR_A_VNI_VRF, r->cfg.max_vrfs - 1, &vrf)))
		return rc;
	return vr_vni_add(r, vni, vrf);
}

/* ---------------- flows ---------------- */

static int flow_reply(struct out *o, const struct vr_msg *req, uint32_t idx,
		      const struct vr_flow_entry *e)
{
	static const uint8_t zero[16];
	uint16_t alen = (e->flags & VR_FLOW_F_IPV6) ? 16 : 4;
	struct vr_msg m;

	reply_init(&m, req, 0);
	vr_msg_put_num(&m, VR_A_FL_INDEX, idx);
	vr_msg_put_num(&m, VR_A_FL_VRF, e->vrf);
	vr_msg_put_bytes(&m, VR_A_FL_SIP, e->sip, alen);
	vr_msg_put_bytes(&m, VR_A_FL_DIP, e->dip, alen);
	vr_msg_put_num(&m, VR_A_FL_PROTO, e->proto);
	vr_msg_put_num(&m, VR_A_FL_SPORT, vr_get_be16((const uint8_t *)&e->sport));
	vr_msg_put_num(&m, VR_A_FL_DPORT, vr_get_be16((const uint8_t *)&e->dport));
	vr_msg_put_num(&m, VR_A_FL_ACTION, e->action);
	vr_msg_put_num(&m, VR_A_FL_FLAGS, e->flags);
	if (e->rindex != VR_FLOW_NONE)
		vr_msg_put_num(&m, VR_A_FL_RINDEX, e->rindex);
	vr_msg_put_num(&m, VR_A_FL_PKTS, e->packets);
	vr_msg_put_num(&m, VR_A_FL_BYTES, e->bytes);
	if (vr_memcmp(e->nat_sip, zero, alen))
		vr_msg_put_bytes(&m, VR_A_FL_NAT_SIP, e->nat_sip, alen);
	if (vr_memcmp(e->nat_dip, zero, alen))
		vr_msg_put_bytes(&m, VR_A_FL_NAT_DIP, e->nat_dip, alen);
	if (e->nat_sport)
		vr_msg_put_num(&m, VR_A_FL_NAT_SPORT, vr_get_be16((const uint8_t *)&e->nat_sport));
	if (e->nat_dport)
		vr_msg_put_num(&m, VR_A_FL_NAT_DPORT, vr_get_be16((const uint8_t *)&e->nat_dport));
	if (e->flags & VR_FLOW_F_VRFT)
		vr_msg_put_num(&m, VR_A_FL_DVRF, e->dvrf);
	return emit(o, &m);
}

/* The flow a request names: by FL_INDEX, else by key.  VR_FLOW_NONE if none. */
static int flow_key_from(struct vr_router *r, const struct vr_msg *m, struct vr_flow_key *k)
{
	uint32_t vrf, proto, sport, dport, alen;
	int rc;

	vr_memset(k, 0, sizeof(*k));
	if ((rc = need(m, VR_A_FL_VRF, 0xffffffffu, &vrf)) ||
	    (rc = need(m, VR_A_FL_PROTO, 0xff, &proto)) ||
	    (rc = opt(m, VR_A_FL_SPORT, 0xffff, 0, &sport)) ||
	    (rc = opt(m, VR_A_FL_DPORT, 0xffff, 0, &dport)))
		return rc;
	if (!vr_msg_has(m, VR_A_FL_SIP) || !vr_msg_has(m, VR_A_FL_DIP))
		return -VR_EINVAL;
	alen = m->a[VR_A_FL_SIP].len;
	if (m->a[VR_A_FL_DIP].len != alen)
		return -VR_EINVAL;
	(void)r;
	k->vrf = vrf;
	k->v6 = alen == 16;
	vr_memcpy(k->sip, m->a[VR_A_FL_SIP].ptr, alen);
	vr_memcpy(k->dip, m->a[VR_A_FL_DIP].ptr, alen);
	k->proto = (uint8_t)proto;
	k->sport = net16((uint16_t)sport);
	k->dport = net16((uint16_t)dport);
	return 0;
}

static int flow_lookup_req(struct vr_router *r, const struct vr_msg *m, uint32_t *idx)
{
	struct vr_flow_key k;
	int rc;

	if (vr_msg_has(m, VR_A_FL_INDEX)) {
		*idx = (uint32_t)m->a[VR_A_FL_INDEX].num;
		if (*idx >= r->nflows)
			return -VR_ERANGE;
		return (r->flows[*idx].flags & VR_FLOW_F_VALID) ? 0 : -VR_ENOENT;
	}
	if ((rc = flow_key_from(r, m, &k)))
		return rc;
	*idx = vr_flow_find(r, &k);
	return *idx == VR_FLOW_NONE ? -VR_ENOENT : 0;
}

static int flow_msg(struct vr_router *r, const struct vr_msg *m, struct out *o)
{
	uint32_t idx, action, rindex, sport, dport, alen, dvrf;
	struct vr_flow_entry *e;
	struct vr_flow_key k;
	struct vr_msg rep;
	int rc, created;

	if (!r->nflows)
		return -VR_ENOSPC;
	if (m->op == VR_OP_DUMP) {
		uint32_t n = 0, i;
		for (i = marker(m); i < r->nflows; i++) {
			if (!(r->flows[i].flags & VR_FLOW_F_VALID))
				continue;
			if (!room(o))
				return dump_done(o, m, n, 1, i);
			if ((rc = flow_reply(o, m, i, &r->flows[i])))
				return rc;
			n++;
		}
		return dump_done(o, m, n, 0, 0);
	}
	if (m->op == VR_OP_GET || m->op == VR_OP_DEL) {
		if ((rc = flow_lookup_req(r, m, &idx)))
			return rc;
		if (m->op == VR_OP_GET)
			return flow_reply(o, m, idx, &r->flows[idx]);
		vr_hold_drop(r, idx);
		vr_flow_remove(r, idx);
		return 0;
	}
	/* ADD: validate everything, then find or create the entry. */
	if ((rc = need(m, VR_A_FL_ACTION, VR_FLOW_NAT, &action)) ||
	    (rc = opt(m, VR_A_FL_RINDEX, 0xffffffffu, VR_FLOW_NONE, &rindex)) ||
	    (rc = opt(m, VR_A_FL_NAT_SPORT, 0xffff, 0, &sport)) ||
	    (rc = opt(m, VR_A_FL_NAT_DPORT, 0xffff, 0, &dport)) ||
	    (rc = opt(m, VR_A_FL_DVRF, 0xffffffffu, VR_FLOW_NONE, &dvrf)))
		return rc;
	if (action == VR_FLOW_HOLD || (rindex != VR_FLOW_NONE && rindex >= r->nflows))
		return -VR_ERANGE;
	/* A VRF translation only follows forwarding, into a VRF that exists (has
	 * routes): checked here, before the entry is touched. */
	if (vr_msg_has(m, VR_A_FL_DVRF)) {
		if (action != VR_FLOW_FORWARD && action != VR_FLOW_NAT)
			return -VR_EINVAL;
		if (dvrf >= r->cfg.max_vrfs)
			return -VR_ERANGE;
		if (!vr_vrf_get(r, dvrf, 0))
			return -VR_ENOENT;
	}
	if (vr_msg_has(m, VR_A_FL_INDEX)) {
		if ((rc = flow_lookup_req(r, m, &idx)))
			return rc;
	} else {
		if ((rc = flow_key_from(r, m, &k)))
			return rc;
		alen = k.v6 ? 16 : 4;
		if ((vr_msg_has(m, VR_A_FL_NAT_SIP) && m->a[VR_A_FL_NAT_SIP].len != alen) ||
		    (vr_msg_has(m, VR_A_FL_NAT_DIP) && m->a[VR_A_FL_NAT_DIP].len != alen))
			return -VR_EINVAL;
		idx = vr_flow_insert(r, &k, &created);
		if (idx == VR_FLOW_NONE)
			return -VR_ENOSPC;
	}
	e = &r->flows[idx];
	alen = (e->flags & VR_FLOW_F_IPV6) ? 16 : 4;
	if ((vr_msg_has(m, VR_A_FL_NAT_SIP) && m->a[VR_A_FL_NAT_SIP].len != alen) ||
	    (vr_msg_has(m, VR_A_FL_NAT_DIP) && m->a[VR_A_FL_NAT_DIP].len != alen))
		return -VR_EINVAL;
	if (vr_msg_has(m, VR_A_FL_NAT_SIP))
		vr_memcpy(e->nat_sip, m->a[VR_A_FL_NAT_SIP].ptr, alen);
	if (vr_msg_has(m, VR_A_FL_NAT_DIP))
		vr_memcpy(e->nat_dip, m->a[VR_A_FL_NAT_DIP].ptr, alen);
	e->nat_sport = net16((uint16_t)sport);
	e->nat_dport = net16((uint16_t)dport);
	/* Add replaces: without FL_DVRF the entry routes where it came in. */
	if (dvrf != VR_FLOW_NONE) {
		e->dvrf = dvrf;
		e->flags |= VR_FLOW_F_VRFT;
	} else {
		e->flags &= ~VR_FLOW_F_VRFT;
		e->dvrf = 0;
	}
	if (rindex != VR_FLOW_NONE && rindex != idx) {
		struct vr_flow_entry *rev = &r->flows[rindex];
		e->rindex = rindex;
		e->flags |= VR_FLOW_F_RFLOW;
		if ((rev->flags & VR_FLOW_F_VALID) && rev->rindex == VR_FLOW_NONE) {
			rev->rindex = idx;
			rev->flags |= VR_FLOW_F_RFLOW;
		}
	}
	e->action = (uint8_t)action;
	vr_hold_release(r, idx);

	reply_init(&rep, m, 0);
	vr_msg_put_num(&rep, VR_A_FL_INDEX, idx);
	return emit(o, &rep);
}

/* ---------------- drop statistics ---------------- */

static int dropstats_msg(struct vr_router *r, const struct vr_msg *m, struct out *o)
{
	uint8_t wire[VR_DROP_MAX * 8];
	struct vr_msg rep;

	if (m->op == VR_OP_DEL) {
		vr_memset(r->drops, 0, sizeof(r->drops));
		return 0;
	}
	if (m->op != VR_OP_GET)
		return -VR_EOPNOTSUPP;
	for (unsigned i = 0; i < VR_DROP_MAX; i++)
		vr_put_be64(wire + 8 * i, r->drops[i]);
	reply_init(&rep, m, 0);
	vr_msg_put_bytes(&rep, VR_A_DS_COUNTERS, wire, sizeof(wire));
	return emit(o, &rep);
}

/* ---------------- entry ---------------- */

static int dispatch(struct vr_router *r, const struct vr_msg *m, struct out *o)
{
	switch (m->obj) {
	case VR_OBJ_VIF:
		return vif_msg(r, m, o);
	case VR_OBJ_NH:
		return nh_msg(r, m, o);
	case VR_OBJ_ROUTE:
		return rt_msg(r, m, o);
	case VR_OBJ_LABEL:
		return label_msg(r, m, o);
	case VR_OBJ_VNI:
		return vni_msg(r, m, o);
	case VR_OBJ_FLOW:
		return flow_msg(r, m, o);
	case VR_OBJ_DROPSTATS:
		return dropstats_msg(r, m, o);
	default:
		return -VR_EPROTO;
	}
}

int vr_msg_handle(struct vr_router *r, const uint8_t *in, size_t inlen, uint8_t *out,
		  size_t outcap)
{
	struct out o = {.buf = out, .cap = outcap, .len = 0};
	struct vr_msg req, rep;
	size_t before;
	int rc;

	if (outcap < VR_MSG_HDR_LEN + 8)
		return -VR_EMSGSIZE;
	rc = vr_msg_parse(in, inlen, &req);
	if (!rc && (req.flags & VR_MSGF_REPLY))
		rc = -VR_EPROTO; /* the datapath takes requests only */
	if (!rc && req.obj == VR_OBJ_DROPSTATS && req.op == VR_OP_ADD)
		rc = -VR_EOPNOTSUPP;
	if (!rc) {
		r->os->lock(r->os_ctx);
		rc = dispatch(r, &req, &o);
		r->os->unlock(r->os_ctx);
		if (!rc && o.len == 0) { /* plain success: add/del */
			reply_init(&rep, &req, 0);
			rc = emit(&o, &rep);
		}
	}
	if (rc) {
		/* Echo only header fields that parsed as valid. */
		before = 0;
		o.len = before;
		vr_msg_init(&rep, req.op <= VR_OP_MAX ? req.op : 0,
			    req.obj <= VR_OBJ_MAX ? req.obj : 0, VR_MSGF_REPLY, req.seq);
		vr_msg_put_num(&rep, VR_A_RESULT, (uint64_t)(int64_t)rc);
		rc = emit(&o, &rep);
		if (rc)
			return rc;
	}
	return (int)o.len;
}
