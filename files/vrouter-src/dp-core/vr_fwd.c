/* Forwarding: packet entry, VM ingress, flows and the pkt0 trap, nexthops. */
#include "vr_core.h"
#include "vr_util.h"

#define ETH_LEN 14u
#define MAX_NH_DEPTH 2 /* a composite may point at plain nexthops only */

void vr_vif_tx(struct vr_router *r, uint32_t idx, struct vr_pkt *pkt)
{
	struct vr_vif *vif = vr_vif_get(r, idx);

	if (!vif) {
		vr_drop(r, pkt, VR_DROP_NO_VIF);
		return;
	}
	vif->tx_pkts++;
	vif->tx_bytes += pkt->len;
	if (r->os->tx(r->os_ctx, vif->idx, vif->os_idx, pkt))
		vr_drop(r, (struct vr_pkt *)0, VR_DROP_TX_FAILED);
}

/* The flow key of an Ethernet frame; nonzero if it is not IP. */
static int frame_key(struct vr_pkt *pkt, uint32_t vrf, struct vr_flow_key *k)
{
	const uint8_t *d = vr_pkt_data(pkt), *ip = d + ETH_LEN, *l4;
	uint32_t len = pkt->len, ihl;
	uint16_t et;

	vr_memset(k, 0, sizeof(*k));
	k->vrf = vrf;
	if (len < ETH_LEN)
		return -1;
	et = vr_get_be16(d + 12);
	if (et == 0x0800) {
		if (len < ETH_LEN + 20 || (ip[0] >> 4) != 4)
			return -1;
		ihl = (ip[0] & 0xfu) * 4u;
		if (ihl < 20 || len < ETH_LEN + ihl)
			return -1;
		vr_memcpy(k->sip, ip + 12, 4);
		vr_memcpy(k->dip, ip + 16, 4);
		k->proto = ip[9];
		l4 = ip + ihl;
		if (vr_get_be16(ip + 6) & 0x1fff)
			return 0; /* later fragment: no ports */
	} else if (et == 0x86dd) {
		if (len < ETH_LEN + 40 || (ip[0] >> 4) != 6)
			return -1;
		k->v6 = 1;
		vr_memcpy(k->sip, ip + 8, 16);
		vr_memcpy(k->dip, ip + 24, 16);
		k->proto = ip[6];
		l4 = ip + 40;
	} else {
		return -1;
	}
	if ((k->proto == 6 || k->proto == 17) && (uint32_t)(l4 - d) + 4 <= len) {
		vr_memcpy(&k->sport, l4, 2);
		vr_memcpy(&k->dport, l4 + 2, 2);
	}
	return 0;
}

uint32_t vr_frame_hash(struct vr_pkt *pkt)
{
	struct vr_flow_key k;
	const uint8_t *d = vr_pkt_data(pkt);
	uint32_t h = 2166136261u;

	if (!frame_key(pkt, 0, &k))
		return vr_flow_hash(&k);
	for (uint32_t i = 0; i < 12 && i < pkt->len; i++)
		h = (h ^ d[i]) * 16777619u;
	return h;
}

/* Send pkt to the agent with a pkt0 header. */
static void trap(struct vr_router *r, uint32_t in_vif, uint32_t vrf, uint16_t reason,
		 uint32_t flow, struct vr_pkt *pkt)
{
	uint8_t *h;

	if (r->agent_vif == VR_FLOW_NONE || !vr_vif_get(r, r->agent_vif)) {
		vr_drop(r, pkt, VR_DROP_NO_AGENT);
		return;
	}
	h = vr_pkt_push(r, &pkt, VR_PKT0_HDR_LEN);
	if (!h) {
		vr_drop(r, pkt, VR_DROP_NO_HEADROOM);
		return;
	}
	vr_put_be32(h, in_vif);
	vr_put_be32(h + 4, vrf);
	vr_put_be16(h + 8, reason);
	vr_put_be16(h + 10, 0);
	vr_put_be32(h + 12, flow);
	vr_vif_tx(r, r->agent_vif, pkt);
}

static int hold(struct vr_router *r, uint32_t idx, uint32_t vrf, uint32_t nh, uint32_t label,
		int l2, uint32_t in_vif, struct vr_pkt *pkt)
{
	struct vr_flow_entry *e = &r->flows[idx];
	struct vr_held *h;

	if (e->hold_count >= VR_HOLD_PER_FLOW || r->nheld >= VR_HOLD_MAX) {
		vr_drop(r, pkt, VR_DROP_FLOW_HOLD_FULL);
		return 0;
	}
	h = &r->hold[r->nheld++];
	h->pkt = pkt;
	h->flow = idx;
	h->gen = e->gen;
	h->vrf = vrf;
	h->nh = nh;
	h->label = label;
	h->l2 = (uint8_t)l2;
	h->in_vif = in_vif;
	e->hold_count++;
	return 0;
}

/* RFC 1624 incremental update of a checksum field for one 16-bit change. */
static void csum_fix16(uint8_t *field, uint16_t old, uint16_t new)
{
	uint32_t s = (uint16_t)~vr_get_be16(field);

	s += (uint16_t)~old;
	s += new;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	vr_put_be16(field, (uint16_t)~s);
}

static void rewrite16(uint8_t *p, uint16_t v, uint8_t *ipsum, uint8_t *l4sum)
{
	uint16_t old = vr_get_be16(p);

	vr_put_be16(p, v);
	if (ipsum)
		csum_fix16(ipsum, old, v);
	if (l4sum)
		csum_fix16(l4sum, old, v);
}

/* NAT action, IPv4: rewrite to the entry's non-zero NAT fields. */
static void apply_nat(const struct vr_flow_entry *e, struct vr_pkt *pkt)
{
	static const uint8_t zero[4];
	uint8_t *ip = vr_pkt_data(pkt) + ETH_LEN, *l4, *l4sum = (uint8_t *)0;
	uint32_t ihl;

	if (e->flags & VR_FLOW_F_IPV6)
		return;
	ihl = (ip[0] & 0xfu) * 4u;
	l4 = ip + ihl;
	if (!(vr_get_be16(ip + 6) & 0x1fff)) {
		if (e->proto == 6 && pkt->len >= ETH_LEN + ihl + 18)
			l4sum = l4 + 16;
		else if (e->proto == 17 && pkt->len >= ETH_LEN + ihl + 8 && vr_get_be16(l4 + 6))
			l4sum = l4 + 6;
	}
	for (int i = 0; i < 2; i++) {
		if (vr_memcmp(e->nat_sip, zero, 4)) /* address words: IP and pseudo-header sums */
			rewrite16(ip + 12 + 2 * i, vr_get_be16(e->nat_sip + 2 * i), ip + 10, l4sum);
		if (vr_memcmp(e->nat_dip, zero, 4))
			rewrite16(ip + 16 + 2 * i, vr_get_be16(e->nat_dip + 2 * i), ip + 10, l4sum);
	}
	if (l4sum || e->proto == 17) {
		if (e->nat_sport && pkt->len >= ETH_LEN + ihl + 4)
			rewrite16(l4, vr_get_be16((const uint8_t *)&e->nat_sport), (uint8_t *)0, l4sum);
		if (e->nat_dport && pkt->len >= ETH_LEN + ihl + 4)
			rewrite16(l4 + 2, vr_get_be16((const uint8_t *)&e->nat_dport), (uint8_t *)0,
				  l4sum);
	}
}

/*
 * Flow policy for an IP frame in vrf.  Returns 1 if the caller forwards pkt,
 * 0 if the flow consumed it (held, trapped or dropped).  nh/label/l2 say how
 * to resume a held packet (nh 0: VM-side forwarding in vrf).  *xvrf is the
 * VRF the caller routes pkt in instead (the flow's VRF translation), else
 * VR_FLOW_NONE.
 */
static int flow_check(struct vr_router *r, uint32_t vrf, struct vr_pkt *pkt, uint32_t in_vif,
		      uint32_t nh, uint32_t label, int l2, uint32_t *xvrf)
{
	struct vr_flow_key k;
	struct vr_flow_entry *e;
	uint32_t idx;
	int created;

	*xvrf = VR_FLOW_NONE;
	if (frame_key(pkt, vrf, &k))
		return 1; /* policy is for IP traffic */
	if (!r->nflows) {
		vr_drop(r, pkt, VR_DROP_FLOW_TABLE_FULL);
		return 0;
	}
	idx = vr_flow_insert(r, &k, &created);
	if (idx == VR_FLOW_NONE) {
		vr_drop(r, pkt, VR_DROP_FLOW_TABLE_FULL);
		return 0;
	}
	e = &r->flows[idx];
	e->last_ns = r->os->now_ns(r->os_ctx);
	if (created) {
		struct vr_pkt *copy = vr_pkt_copy(r, pkt);

		e->src_vif = (uint16_t)in_vif;
		if (copy)
			trap(r, in_vif, vrf, VR_TRAP_FLOW_MISS, idx, copy);
		else
			vr_drop(r, (struct vr_pkt *)0, VR_DROP_NO_MEMORY);
		return hold(r, idx, vrf, nh, label, l2, in_vif, pkt);
	}
	switch (e->action) {
	case VR_FLOW_HOLD:
		return hold(r, idx, vrf, nh, label, l2, in_vif, pkt);
	case VR_FLOW_FORWARD:
	case VR_FLOW_NAT:
		e->packets++;
		e->bytes += pkt->len;
		if (e->action == VR_FLOW_NAT)
			apply_nat(e, pkt);
		if (e->flags & VR_FLOW_F_VRFT)
			*xvrf = e->dvrf;
		return 1;
	case VR_FLOW_TRAP:
		trap(r, in_vif, vrf, VR_TRAP_FLOW_ACTION, idx, pkt);
		return 0;
	default:
		e->packets++;
		e->bytes += pkt->len;
		vr_drop(r, pkt, VR_DROP_FLOW_ACTION_DROP);
		return 0;
	}
}

/* Take the packets held for flow idx out of the hold queue (at most n). */
static uint32_t unhold(struct vr_router *r, uint32_t idx, struct vr_held *out, uint32_t n)
{
	uint32_t got = 0, keep = 0;

	/* Compact in place so the queue stays in arrival order. */
	for (uint32_t i = 0; i < r->nheld; i++) {
		struct vr_held *h = &r->hold[i];

		if (h->flow != idx)
			r->hold[keep++] = *h;
		else if (h->gen == r->flows[idx].gen && got < n)
			out[got++] = *h;
		else
			vr_drop(r, h->pkt, VR_DROP_FLOW_EVICTED);
	}
	r->nheld = keep;
	if (idx < r->nflows)
		r->flows[idx].hold_count = 0;
	return got;
}

void vr_hold_drop(struct vr_router *r, uint32_t idx)
{
	struct vr_held out[VR_HOLD_PER_FLOW];
	uint32_t n = unhold(r, idx, out, VR_HOLD_PER_FLOW);

	for (uint32_t i = 0; i < n; i++)
		vr_drop(r, out[i].pkt, VR_DROP_FLOW_EVICTED);
}

/* The agent decided: run the held packets through the flow again, in order. */
void vr_hold_release(struct vr_router *r, uint32_t idx)
{
	struct vr_held out[VR_HOLD_PER_FLOW];
	uint32_t n = unhold(r, idx, out, VR_HOLD_PER_FLOW);

	/* In arrival order, as the sender sent them. */
	for (uint32_t i = 0; i < n; i++) {
		struct vr_held *h = &out[i];
		uint32_t xvrf;

		if (!flow_check(r, h->vrf, h->pkt, h->in_vif, h->nh, h->label, h->l2, &xvrf))
			continue;
		if (xvrf != VR_FLOW_NONE)
			vr_route_l3(r, xvrf, h->pkt, h->in_vif);
		else if (h->nh)
			vr_nh_output(r, h->nh, h->label, h->pkt, h->l2);
		else
			vr_vm_forward(r, h->vrf, h->pkt, h->in_vif);
	}
}

static void nh_output(struct vr_router *r, uint32_t id, uint32_t label, struct vr_pkt *pkt,
		      int l2, int depth)
{
	struct vr_nh *nh = vr_nh_get(r, id);
	uint8_t *d = vr_pkt_data(pkt);
	uint32_t hash;
	int rc;

	if (!nh || depth > MAX_NH_DEPTH) {
		vr_drop(r, pkt, VR_DROP_NO_NEXTHOP);
		return;
	}
	switch (nh->type) {
	case VR_NH_DISCARD:
		vr_drop(r, pkt, VR_DROP_DISCARD);
		return;
	case VR_NH_RECEIVE:
		if (r->host_vif == VR_FLOW_NONE) {
			vr_drop(r, pkt, VR_DROP_NO_VIF);
			return;
		}
		vr_vif_tx(r, r->host_vif, pkt);
		return;
	case VR_NH_ENCAP:
		if (!l2) {
			vr_memcpy(d, nh->dmac, 6);
			vr_memcpy(d + 6, nh->smac, 6);
		}
		vr_vif_tx(r, nh->oif, pkt);
		return;
	case VR_NH_TUNNEL:
		hash = vr_frame_hash(pkt);
		if (nh->flags & VR_NH_F_VXLAN) {
			if (!l2) { /* routed over VXLAN: the far end routes on our MAC */
				vr_memcpy(d, r->router_mac, 6);
				vr_memcpy(d + 6, r->router_mac, 6);
			}
		} else if (!l2) {
			vr_pkt_pull(pkt, ETH_LEN); /* MPLS carries the IP packet */
		}
		rc = vr_tunnel_encap(r, nh, label, &pkt, hash);
		if (rc) {
			vr_drop(r, pkt, (unsigned)rc);
			return;
		}
		vr_vif_tx(r, nh->oif, pkt);
		return;
	case VR_NH_COMPOSITE:
		if (!nh->ncomp) {
			vr_drop(r, pkt, VR_DROP_COMPOSITE_EMPTY);
			return;
		}
		if (nh->flags & VR_NH_F_ECMP) {
			const struct vr_nh_comp *c = &nh->comp[vr_frame_hash(pkt) % nh->ncomp];
			nh_output(r, c->nh, c->label, pkt, l2, depth + 1);
			return;
		}
		for (uint32_t i = 0; i < nh->ncomp; i++) {
			struct vr_pkt *p = i + 1 < nh->ncomp ? vr_pkt_copy(r, pkt) : pkt;
			if (!p) {
				vr_drop(r, (struct vr_pkt *)0, VR_DROP_NO_MEMORY);
				continue;
			}
			nh_output(r, nh->comp[i].nh, nh->comp[i].label, p, l2, depth + 1);
		}
		return;
	default:
		vr_drop(r, pkt, VR_DROP_NO_NEXTHOP);
	}
}

void vr_nh_output(struct vr_router *r, uint32_t nh, uint32_t label, struct vr_pkt *pkt, int l2)
{
	nh_output(r, nh, label, pkt, l2, 0);
}

void vr_deliver(struct vr_router *r, uint32_t vrf, uint32_t nhid, uint32_t label,
		struct vr_pkt *pkt, int l2, uint32_t in_vif)
{
	struct vr_nh *nh = vr_nh_get(r, nhid);
	struct vr_vif *out = nh && nh->type == VR_NH_ENCAP ? vr_vif_get(r, nh->oif) : 0;
	uint32_t xvrf = VR_FLOW_NONE;

	if (out && (out->flags & VR_VIF_F_POLICY) &&
	    !flow_check(r, vrf, pkt, in_vif, nhid, label, l2, &xvrf))
		return;
	if (xvrf != VR_FLOW_NONE) /* translated: nh was chosen in the old VRF */
		vr_route_l3(r, xvrf, pkt, in_vif);
	else
		vr_nh_output(r, nhid, label, pkt, l2);
}

void vr_route_l3(struct vr_router *r, uint32_t vrf, struct vr_pkt *pkt, uint32_t in_vif)
{
	struct vr_vrf *v = vr_vrf_get(r, vrf, 0);
	const uint8_t *d = vr_pkt_data(pkt);
	const struct vr_rt_val *rv = 0;
	uint16_t et = pkt->len >= ETH_LEN ? vr_get_be16(d + 12) : 0;

	if (et == 0x0800 && pkt->len >= ETH_LEN + 20) {
		if (v)
			rv = vr_lpm_lookup(&v->v4, d + ETH_LEN + 16);
	} else if (et == 0x86dd && pkt->len >= ETH_LEN + 40) {
		if (v)
			rv = vr_lpm_lookup(&v->v6, d + ETH_LEN + 24);
	} else {
		vr_drop(r, pkt, VR_DROP_INVALID_PACKET);
		return;
	}
	if (!rv) {
		vr_drop(r, pkt, VR_DROP_NO_ROUTE);
		return;
	}
	(void)in_vif;
	vr_nh_output(r, rv->nh, (rv->flags & VR_RT_F_LABEL) ? rv->label : 0, pkt, 0);
}

/* Forward a frame inside vrf: bridge on its destination MAC unless it is
 * addressed to the router, else route. */
void vr_vm_forward(struct vr_router *r, uint32_t vrf, struct vr_pkt *pkt, uint32_t in_vif)
{
	struct vr_vrf *v = vr_vrf_get(r, vrf, 0);
	const uint8_t *d = vr_pkt_data(pkt);
	uint16_t et;

	if (pkt->len < ETH_LEN) {
		vr_drop(r, pkt, VR_DROP_INVALID_PACKET);
		return;
	}
	if (vr_memcmp(d, r->router_mac, 6)) {
		const struct vr_rt_val *rv = v ? vr_bridge_lookup(v, d) : 0;

		if (rv) {
			vr_deliver(r, vrf, rv->nh, (rv->flags & VR_RT_F_LABEL) ? rv->label : 0, pkt,
				   1, in_vif);
			return;
		}
		if (d[0] & 1) {
			vr_drop(r, pkt, VR_DROP_BRIDGE_MISS);
			return;
		}
	}
	et = vr_get_be16(d + 12);
	if (et != 0x0800 && et != 0x86dd) {
		vr_drop(r, pkt, VR_DROP_BRIDGE_MISS);
		return;
	}
	vr_route_l3(r, vrf, pkt, in_vif);
}

/* Which packets from a VM the agent answers. */
static uint16_t vm_trap_reason(struct vr_pkt *pkt)
{
	const uint8_t *d = vr_pkt_data(pkt), *ip = d + ETH_LEN;
	uint16_t et = vr_get_be16(d + 12);

	if (et == 0x0806)
		return VR_TRAP_ARP;
	if (et == 0x0800 && pkt->len >= ETH_LEN + 20) {
		uint32_t ihl = (ip[0] & 0xfu) * 4u;
		if (ip[9] == 17 && pkt->len >= ETH_LEN + ihl + 8 &&
		    vr_get_be16(ip + ihl + 2) == 67 && vr_get_be16(ip + ihl) == 68)
			return VR_TRAP_DHCP;
	}
	if (et == 0x86dd && pkt->len >= ETH_LEN + 40 + 8) {
		if (ip[6] == 58 && ip[40] >= 133 && ip[40] <= 137)
			return VR_TRAP_ND;
		if (ip[6] == 17 && vr_get_be16(ip + 42) == 547)
			return VR_TRAP_DHCP;
	}
	return 0;
}

static void vm_rx(struct vr_router *r, struct vr_vif *vif, struct vr_pkt *pkt)
{
	uint16_t reason;
	struct vr_flow_key k;
	uint32_t xvrf = VR_FLOW_NONE;

	if (pkt->len < ETH_LEN) {
		vr_drop(r, pkt, VR_DROP_INVALID_PACKET);
		return;
	}
	reason = vm_trap_reason(pkt);
	if (reason) {
		trap(r, vif->idx, vif->vrf, reason, VR_FLOW_NONE, pkt);
		return;
	}
	if ((vif->flags & VR_VIF_F_POLICY) && !frame_key(pkt, vif->vrf, &k) &&
	    !flow_check(r, vif->vrf, pkt, vif->idx, 0, 0, 0, &xvrf))
		return;
	/* A translated flow is routed (NAT-ed) traffic: L3 in its new VRF. */
	if (xvrf != VR_FLOW_NONE)
		vr_route_l3(r, xvrf, pkt, vif->idx);
	else
		vr_vm_forward(r, vif->vrf, pkt, vif->idx);
}

static void agent_rx(struct vr_router *r, struct vr_pkt *pkt)
{
	const uint8_t *h = vr_pkt_data(pkt);
	uint32_t out;

	if (pkt->len < VR_PKT0_HDR_LEN + ETH_LEN || vr_get_be16(h + 8) != VR_TRAP_INJECT) {
		vr_drop(r, pkt, VR_DROP_BAD_AGENT_PACKET);
		return;
	}
	out = vr_get_be32(h);
	vr_pkt_pull(pkt, VR_PKT0_HDR_LEN);
	vr_vif_tx(r, out, pkt);
}

void vr_rx(struct vr_router *r, uint32_t idx, struct vr_pkt *pkt)
{
	struct vr_vif *vif;
	uint64_t drops;

	r->os->lock(r->os_ctx);
	vif = vr_vif_get(r, idx);
	if (!vif) {
		vr_drop(r, pkt, VR_DROP_NO_VIF);
		r->os->unlock(r->os_ctx);
		return;
	}
	drops = r->drop_total;
	vif->rx_pkts++;
	vif->rx_bytes += pkt->len;
	switch (vif->type) {
	case VR_VIF_FABRIC:
		vr_fabric_rx(r, vif, pkt);
		break;
	case VR_VIF_HOST:
		if (r->fabric_vif == VR_FLOW_NONE)
			vr_drop(r, pkt, VR_DROP_NO_VIF);
		else
			vr_vif_tx(r, r->fabric_vif, pkt);
		break;
	case VR_VIF_AGENT:
		agent_rx(r, pkt);
		break;
	default:
		vm_rx(r, vif, pkt);
		break;
	}
	vif->drops += r->drop_total - drops;
	r->os->unlock(r->os_ctx);
}
