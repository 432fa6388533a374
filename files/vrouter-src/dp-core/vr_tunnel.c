/* Overlay encapsulation (MPLSoGRE, MPLSoUDP, VXLAN over IPv4) and fabric
 * receive: decapsulate overlay packets addressed to us, pass the rest to the
 * host. */
#include "vr_core.h"
#include "vr_util.h"

#define ETH_LEN 14u
#define IP4_LEN 20u
#define UDP_LEN 8u
#define GRE_LEN 4u
#define MPLS_LEN 4u
#define VXLAN_LEN 8u

int vr_tunnel_encap(struct vr_router *r, const struct vr_nh *nh, uint32_t label,
		    struct vr_pkt **pp, uint32_t hash)
{
	uint32_t tun, total, iplen;
	uint8_t proto, *h, *ip, *t;

	if (nh->flags & VR_NH_F_MPLS_GRE) {
		tun = GRE_LEN + MPLS_LEN;
		proto = VR_IPPROTO_GRE;
	} else if (nh->flags & VR_NH_F_MPLS_UDP) {
		tun = UDP_LEN + MPLS_LEN;
		proto = 17;
	} else if (nh->flags & VR_NH_F_VXLAN) {
		tun = UDP_LEN + VXLAN_LEN;
		proto = 17;
	} else {
		return VR_DROP_NO_NEXTHOP;
	}
	total = ETH_LEN + IP4_LEN + tun;
	if ((*pp)->len + IP4_LEN + tun > 0xffff)
		return VR_DROP_INVALID_PACKET;
	h = vr_pkt_push(r, pp, total);
	if (!h)
		return VR_DROP_NO_HEADROOM;
	iplen = (*pp)->len - ETH_LEN;

	vr_memcpy(h, nh->dmac, 6);
	vr_memcpy(h + 6, nh->smac, 6);
	vr_put_be16(h + 12, 0x0800);

	ip = h + ETH_LEN;
	ip[0] = 0x45;
	ip[1] = 0;
	vr_put_be16(ip + 2, (uint16_t)iplen);
	vr_put_be16(ip + 4, r->ip_id++);
	vr_put_be16(ip + 6, 0);
	ip[8] = 64;
	ip[9] = proto;
	vr_put_be16(ip + 10, 0);
	vr_memcpy(ip + 12, nh->sip, 4);
	vr_memcpy(ip + 16, nh->dip, 4);
	vr_put_be16(ip + 10, vr_csum(ip, IP4_LEN, 0));

	t = ip + IP4_LEN;
	if (proto == 17) {
		/* Source port carries entropy for ECMP in the fabric (RFC 7510). */
		vr_put_be16(t, (uint16_t)(0xc000 | (hash & 0x3fff)));
		vr_put_be16(t + 2, (uint16_t)((nh->flags & VR_NH_F_VXLAN) ? VR_VXLAN_PORT
									 : VR_MPLS_UDP_PORT));
		vr_put_be16(t + 4, (uint16_t)(iplen - IP4_LEN));
		vr_put_be16(t + 6, 0);
		t += UDP_LEN;
	} else {
		vr_put_be16(t, 0);
		vr_put_be16(t + 2, VR_GRE_PROTO_MPLS);
		t += GRE_LEN;
	}
	if (nh->flags & VR_NH_F_VXLAN) {
		vr_put_be32(t, 0x08000000u); /* I flag: VNI valid */
		vr_put_be32(t + 4, (label & 0xffffff) << 8);
	} else {
		/* One label, bottom of stack, TTL 64. */
		vr_put_be32(t, ((label & 0xfffff) << 12) | 0x100u | 64u);
	}
	return 0;
}

static void to_host(struct vr_router *r, struct vr_pkt *pkt)
{
	if (r->host_vif == VR_FLOW_NONE) {
		vr_drop(r, pkt, VR_DROP_NO_VIF);
		return;
	}
	vr_vif_tx(r, r->host_vif, pkt);
}

static void mpls_rx(struct vr_router *r, struct vr_vif *vif, struct vr_pkt *pkt, uint32_t off)
{
	uint8_t *d = vr_pkt_data(pkt);
	uint32_t shim, label, nhid;
	struct vr_nh *nh;
	int l2;

	if (pkt->len < off + MPLS_LEN) {
		vr_drop(r, pkt, VR_DROP_BAD_TUNNEL);
		return;
	}
	shim = vr_get_be32(d + off);
	label = shim >> 12;
	if (!(shim & 0x100u)) { /* only a single label stack is ours */
		vr_drop(r, pkt, VR_DROP_BAD_TUNNEL);
		return;
	}
	nhid = label < r->cfg.max_labels ? r->labels[label] : 0;
	nh = vr_nh_get(r, nhid);
	if (!nhid || !nh) {
		vr_drop(r, pkt, VR_DROP_LABEL_MISS);
		return;
	}
	vr_pkt_pull(pkt, off + MPLS_LEN);
	l2 = nh->type == VR_NH_ENCAP && (nh->flags & VR_NH_F_L2);
	if (l2) {
		if (pkt->len < ETH_LEN) {
			vr_drop(r, pkt, VR_DROP_INVALID_PACKET);
			return;
		}
	} else {
		/* An IP packet: give it an Ethernet header; ENCAP fills the MACs. */
		uint8_t ver = pkt->len ? vr_pkt_data(pkt)[0] >> 4 : 0;
		uint8_t *e;

		if (ver != 4 && ver != 6) {
			vr_drop(r, pkt, VR_DROP_INVALID_PACKET);
			return;
		}
		e = vr_pkt_push(r, &pkt, ETH_LEN);
		if (!e) {
			vr_drop(r, pkt, VR_DROP_NO_HEADROOM);
			return;
		}
		vr_memset(e, 0, 12);
		vr_put_be16(e + 12, ver == 4 ? 0x0800 : 0x86dd);
	}
	vr_deliver(r, nh->vrf, nhid, 0, pkt, l2, vif->idx);
}

static void vxlan_rx(struct vr_router *r, struct vr_vif *vif, struct vr_pkt *pkt, uint32_t off)
{
	uint8_t *d = vr_pkt_data(pkt);
	uint32_t vni, vrf;

	if (pkt->len < off + VXLAN_LEN + ETH_LEN || !(d[off] & 0x08)) {
		vr_drop(r, pkt, VR_DROP_BAD_TUNNEL);
		return;
	}
	vni = vr_get_be32(d + off + 4) >> 8;
	if (vr_vni_lookup(r, vni, &vrf)) {
		vr_drop(r, pkt, VR_DROP_VNI_MISS);
		return;
	}
	vr_pkt_pull(pkt, off + VXLAN_LEN);
	vr_vm_forward(r, vrf, pkt, vif->idx);
}

void vr_fabric_rx(struct vr_router *r, struct vr_vif *vif, struct vr_pkt *pkt)
{
	uint8_t *d = vr_pkt_data(pkt), *ip;
	uint32_t ihl, totlen, l4;

	if (pkt->len < ETH_LEN + IP4_LEN || vr_get_be16(d + 12) != 0x0800 || !r->has_tun_ip) {
		to_host(r, pkt);
		return;
	}
	ip = d + ETH_LEN;
	ihl = (ip[0] & 0xfu) * 4u;
	totlen = vr_get_be16(ip + 2);
	if ((ip[0] >> 4) != 4 || ihl < IP4_LEN || totlen < ihl || ETH_LEN + totlen > pkt->len ||
	    vr_memcmp(ip + 16, r->tun_ip, 4) || (vr_get_be16(ip + 6) & 0x3fff)) {
		to_host(r, pkt); /* not an unfragmented overlay packet for us */
		return;
	}
	pkt->len = ETH_LEN + totlen; /* drop Ethernet padding */
	l4 = ETH_LEN + ihl;
	if (ip[9] == VR_IPPROTO_GRE) {
		if (pkt->len < l4 + GRE_LEN || vr_get_be16(d + l4) != 0 ||
		    vr_get_be16(d + l4 + 2) != VR_GRE_PROTO_MPLS) {
			vr_drop(r, pkt, VR_DROP_BAD_TUNNEL);
			return;
		}
		mpls_rx(r, vif, pkt, l4 + GRE_LEN);
		return;
	}
	if (ip[9] == 17 && pkt->len >= l4 + UDP_LEN) {
		uint16_t dport = vr_get_be16(d + l4 + 2);

		if (dport == VR_MPLS_UDP_PORT) {
			mpls_rx(r, vif, pkt, l4 + UDP_LEN);
			return;
		}
		if (dport == VR_VXLAN_PORT) {
			vxlan_rx(r, vif, pkt, l4 + UDP_LEN);
			return;
		}
	}
	to_host(r, pkt);
}
