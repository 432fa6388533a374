// SPDX-License-Identifier: GPL-2.0
/*
 * Large TCP packets through vrouter.ko whole.
 *
 * dp-core costs the same per frame whatever its size, so a TCP/IPv4 GSO
 * aggregate (a VM's 64 kB send, or a tunnelled flow merged by GRO on the
 * fabric) goes through it once, as one linear frame: its headers are looked
 * at once, the flow counted once (packets = aggregates, bytes exact).  Only
 * the glue knows it is an aggregate (struct lx_gso in skb->cb); on the way
 * out it is handed on whole (to a VM's device, vhost0) or cut into segments
 * under copies of the tunnel headers dp-core wrote (to the fabric).
 *
 * Fabric GRO: the kernel merges UDP-tunnelled segments only for a UDP socket
 * with GRO hooks, so the module binds one on the MPLSoUDP and one on the
 * VXLAN port (in the initial namespace, where the fabric is).  Frames still
 * reach dp-core through the fabric's rx_handler; the sockets never receive.
 */
#include <linux/etherdevice.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <net/gro.h>
#include <net/ip.h>
#include <net/tcp.h>
#include <net/udp.h>
#include <net/udp_tunnel.h>

#include "vr_core.h"
#include "vr_linux.h"

/* dp-core's encapsulation adds at most 50 bytes to a 16-bit IP length. */
#define LX_GSO_MAX (65535u - 64u)
#define LX_GSO_TYPES                                                                  \
	(SKB_GSO_TCPV4 | SKB_GSO_TCP_FIXEDID | SKB_GSO_TCP_ECN | SKB_GSO_DODGY |      \
	 SKB_GSO_UDP_TUNNEL)
#define MPLS_LEN 4u
#define VXLAN_LEN 8u

/* ---------------------------------------------------------------- fabric GRO */

static struct socket *gro_socks[2];

static int gro_sock_rcv(struct sock *sk, struct sk_buff *skb)
{
	kfree_skb(skb); /* tunnel traffic arrived other than via the fabric vif */
	return 0;
}

/* MPLSoUDP as dp-core sends routed traffic: one label, bottom of stack, then
 * IPv4 without options.  The IPv4 (then TCP) GRO does the merging. */
static struct sk_buff *mpls_gro_receive(struct sock *sk, struct list_head *head,
					struct sk_buff *skb)
{
	const struct packet_offload *ip = gro_find_receive_by_type(htons(ETH_P_IP));
	unsigned int off = skb_gro_offset(skb);
	struct sk_buff *pp = NULL, *p;
	const u8 *h;
	int flush = 1;

	h = skb_gro_header(skb, off + MPLS_LEN + 1, off);
	if (!h || !ip || !(h[2] & 1) || h[MPLS_LEN] != 0x45)
		goto out;
	list_for_each_entry(p, head, list)
		if (NAPI_GRO_CB(p)->same_flow && memcmp(p->data + off, h, MPLS_LEN))
			NAPI_GRO_CB(p)->same_flow = 0;
	skb_gro_pull(skb, MPLS_LEN);
	skb_gro_postpull_rcsum(skb, h, MPLS_LEN);
	pp = call_gro_receive(ip->callbacks.gro_receive, head, skb);
	flush = 0;
out:
	skb_gro_flush_final(skb, pp, flush);
	return pp;
}

static int mpls_gro_complete(struct sock *sk, struct sk_buff *skb, int nhoff)
{
	const struct packet_offload *ip;
	int rc = -ENOENT;

	rcu_read_lock();
	ip = gro_find_complete_by_type(htons(ETH_P_IP));
	if (ip)
		rc = ip->callbacks.gro_complete(skb, nhoff + MPLS_LEN);
	rcu_read_unlock();
	return rc;
}

static struct sk_buff *vxlan_gro_receive(struct sock *sk, struct list_head *head,
					 struct sk_buff *skb)
{
	unsigned int off = skb_gro_offset(skb);
	struct sk_buff *pp = NULL, *p;
	const u8 *h;
	int flush = 1;

	h = skb_gro_header(skb, off + VXLAN_LEN, off);
	if (!h || !(h[0] & 0x08))
		goto out;
	list_for_each_entry(p, head, list)
		if (NAPI_GRO_CB(p)->same_flow && memcmp(p->data + off, h, VXLAN_LEN))
			NAPI_GRO_CB(p)->same_flow = 0;
	skb_gro_pull(skb, VXLAN_LEN);
	skb_gro_postpull_rcsum(skb, h, VXLAN_LEN);
	pp = call_gro_receive(eth_gro_receive, head, skb);
	flush = 0;
out:
	skb_gro_flush_final(skb, pp, flush);
	return pp;
}

static int vxlan_gro_complete(struct sock *sk, struct sk_buff *skb, int nhoff)
{
	return eth_gro_complete(skb, nhoff + VXLAN_LEN);
}

static struct socket *gro_sock(u16 port,
			       struct sk_buff *(*rcv)(struct sock *, struct list_head *,
						      struct sk_buff *),
			       int (*cmp)(struct sock *, struct sk_buff *, int))
{
	struct sockaddr_in sin = {
		.sin_family = AF_INET,
		.sin_port = htons(port),
		.sin_addr.s_addr = htonl(INADDR_ANY),
	};
	struct socket *sock;
	int rc;

	rc = sock_create_kern(&init_net, AF_INET, SOCK_DGRAM, IPPROTO_UDP, &sock);
	if (rc)
		return ERR_PTR(rc);
	rc = kernel_bind(sock, (struct sockaddr *)&sin, sizeof(sin));
	if (rc) {
		sock_release(sock);
		return ERR_PTR(rc);
	}
	/* What setup_udp_tunnel_sock() does, without needing udp_tunnel.ko. */
	udp_sk(sock->sk)->encap_type = 1;
	udp_sk(sock->sk)->encap_rcv = gro_sock_rcv;
	udp_sk(sock->sk)->gro_receive = rcv;
	udp_sk(sock->sk)->gro_complete = cmp;
	udp_tunnel_encap_enable(sock->sk);
	return sock;
}

int lx_gro_open(void)
{
	static const u16 ports[2] = {VR_MPLS_UDP_PORT, VR_VXLAN_PORT};
	int n = 0;

	for (int i = 0; i < 2; i++) {
		struct socket *s = i ? gro_sock(ports[i], vxlan_gro_receive, vxlan_gro_complete)
				     : gro_sock(ports[i], mpls_gro_receive, mpls_gro_complete);

		if (IS_ERR(s)) {
			/* e.g. a Linux VXLAN device holds the port: no GRO for it */
			pr_info("vrouter: no fabric GRO on UDP port %u (%ld)\n", ports[i],
				PTR_ERR(s));
			continue;
		}
		gro_socks[i] = s;
		n++;
	}
	return n;
}

void lx_gro_close(void)
{
	for (int i = 0; i < 2; i++) {
		if (gro_socks[i])
			sock_release(gro_socks[i]);
		gro_socks[i] = NULL;
	}
	synchronize_net(); /* no GRO pass is left in our hooks */
}

/* ---------------------------------------------------------------- into dp-core */

/* An unfragmented IPv4 header carrying a whole TCP header at d[off]. */
static bool tcp4_at(const u8 *d, unsigned int len, unsigned int off)
{
	const struct iphdr *iph = (const struct iphdr *)(d + off);

	return off + sizeof(*iph) <= len && iph->version == 4 && iph->ihl >= 5 &&
	       iph->protocol == IPPROTO_TCP && !(iph->frag_off & htons(IP_OFFSET | IP_MF)) &&
	       off + iph->ihl * 4u + sizeof(struct tcphdr) <= len;
}

/* Where the TCP flow's IPv4 header is in a linear frame: right after the
 * Ethernet header, or (tunnel) inside what the fabric GRO merges. */
static unsigned int inner_ip(const struct sk_buff *skb, bool tunnel)
{
	const u8 *d = skb->data;
	unsigned int len = skb->len, off = ETH_HLEN;
	const struct iphdr *iph = (const struct iphdr *)(d + ETH_HLEN);

	if (len < ETH_HLEN + sizeof(*iph) + sizeof(struct udphdr) ||
	    get_unaligned_be16(d + 12) != ETH_P_IP)
		return 0;
	if (tunnel) {
		if (iph->version != 4 || iph->ihl < 5 || iph->protocol != IPPROTO_UDP)
			return 0;
		off += iph->ihl * 4u;
		switch (get_unaligned_be16(d + off + 2)) {
		case VR_MPLS_UDP_PORT:
			off += sizeof(struct udphdr) + MPLS_LEN;
			break;
		case VR_VXLAN_PORT:
			off += sizeof(struct udphdr) + VXLAN_LEN + ETH_HLEN;
			if (off > len || get_unaligned_be16(d + off - 2) != ETH_P_IP)
				return 0;
			break;
		default:
			return 0;
		}
	}
	return tcp4_at(d, len, off) ? off : 0;
}

bool lx_gso_take(struct sk_buff *skb, struct lx_gso *gso)
{
	struct skb_shared_info *si = skb_shinfo(skb);
	bool tunnel = si->gso_type & SKB_GSO_UDP_TUNNEL;
	unsigned int off;

	if (!(si->gso_type & SKB_GSO_TCPV4) || (si->gso_type & ~LX_GSO_TYPES) ||
	    skb->ip_summed != CHECKSUM_PARTIAL || skb->encapsulation != tunnel ||
	    skb->len > LX_GSO_MAX || !si->gso_size)
		return false;
	/* One copy into a linear buffer: dp-core sees contiguous frames. */
	if (skb_linearize(skb) || skb_cow(skb, LX_RX_HEADROOM))
		return false;
	off = inner_ip(skb, tunnel);
	if (!off ||
	    skb->csum_start != skb_headroom(skb) + off + ((struct iphdr *)(skb->data + off))->ihl * 4u ||
	    skb->csum_offset != offsetof(struct tcphdr, check))
		return false;
	gso->inner_ip = skb_headroom(skb) + off;
	gso->mss = si->gso_size;
	gso->flags = si->gso_type & (SKB_GSO_TCP_FIXEDID | SKB_GSO_TCP_ECN);
	skb_gso_reset(skb);
	skb->encapsulation = 0;
	skb->ip_summed = CHECKSUM_NONE; /* the TCP checksum is set again on the way out */
	return true;
}

/* ---------------------------------------------------------------- out of dp-core */

/* Tunnel headers dp-core writes: Ethernet, IPv4 without options, then UDP or
 * GRE (and what follows them, which has no lengths). */
static bool outer_ok(const u8 *d, unsigned int hlen)
{
	const struct iphdr *iph = (const struct iphdr *)(d + ETH_HLEN);

	if (hlen < ETH_HLEN + sizeof(*iph) + 4 || get_unaligned_be16(d + 12) != ETH_P_IP ||
	    iph->version != 4 || iph->ihl != 5)
		return false;
	return iph->protocol == IPPROTO_GRE ||
	       (iph->protocol == IPPROTO_UDP && hlen >= ETH_HLEN + sizeof(*iph) + sizeof(struct udphdr));
}

/* One segment's copy of the tunnel headers: its lengths, IP ID and checksum. */
static void outer_fix(u8 *d, unsigned int len, u16 id)
{
	struct iphdr *iph = (struct iphdr *)(d + ETH_HLEN);

	iph->tot_len = htons(len - ETH_HLEN);
	iph->id = htons(id);
	ip_send_check(iph);
	if (iph->protocol == IPPROTO_UDP) {
		struct udphdr *uh = (struct udphdr *)(iph + 1);

		uh->len = htons(len - ETH_HLEN - sizeof(*iph));
		uh->check = 0; /* as dp-core sends it: none */
	}
}

/* A UDP tunnel as dp-core writes it (MPLSoUDP over IPv4, or VXLAN): describe
 * it for the kernel's UDP tunnel GSO, so that the device cuts it late, in one
 * batch (one notification of a virtual NIC, not one per segment).  For
 * MPLSoUDP the label stands where a link header would, 4 bytes before IPv4. */
static bool udp_tunnel_gso(struct sk_buff *skb, unsigned int hlen, unsigned int ihl)
{
	const u8 *d = skb->data;
	const unsigned int udp = ETH_HLEN + sizeof(struct iphdr);
	unsigned int inner_mac;
	__be16 proto;

	if (!outer_ok(d, hlen) || ((const struct iphdr *)(d + ETH_HLEN))->protocol != IPPROTO_UDP ||
	    get_unaligned_be16(d + udp + 6)) /* an outer UDP checksum is not ours */
		return false;
	switch (get_unaligned_be16(d + udp + 2)) {
	case VR_MPLS_UDP_PORT:
		inner_mac = udp + sizeof(struct udphdr);
		proto = htons(ETH_P_IP);
		if (hlen != inner_mac + MPLS_LEN)
			return false;
		break;
	case VR_VXLAN_PORT:
		inner_mac = udp + sizeof(struct udphdr) + VXLAN_LEN;
		proto = htons(ETH_P_TEB);
		if (hlen != inner_mac + ETH_HLEN)
			return false;
		break;
	default:
		return false;
	}
	skb->encapsulation = 1;
	skb_set_inner_protocol(skb, proto);
	skb_set_inner_mac_header(skb, inner_mac);
	skb_set_inner_network_header(skb, hlen);
	skb_set_inner_transport_header(skb, hlen + ihl);
	skb_set_transport_header(skb, udp);
	skb_shinfo(skb)->gso_type |= SKB_GSO_UDP_TUNNEL;
	return true;
}

void lx_gso_send(struct sk_buff *skb, struct net_device *dev, const struct lx_gso *gso, bool xmit,
		 void (*send)(struct sk_buff *skb, struct net_device *dev))
{
	unsigned int hlen = gso->inner_ip - skb_headroom(skb), ihl, tcplen;
	struct sk_buff *segs, *seg, *next;
	u8 outer[VR_PKT_HEADROOM];
	struct iphdr *iph;
	struct tcphdr *th;
	u16 id;

	/* dp-core moved the frame's start, never the bytes of the aggregate. */
	if (gso->inner_ip < skb_headroom(skb) + ETH_HLEN || hlen > sizeof(outer) ||
	    !tcp4_at(skb->data, skb->len, hlen))
		goto drop;
	iph = (struct iphdr *)(skb->data + hlen);
	ihl = iph->ihl * 4u;
	tcplen = skb->len - hlen - ihl;
	iph->tot_len = htons(ihl + tcplen);
	ip_send_check(iph);
	th = (struct tcphdr *)((u8 *)iph + ihl);
	if (th->doff * 4u > tcplen)
		goto drop;
	/* A partial checksum over the (possibly rewritten) addresses. */
	th->check = ~tcp_v4_check(tcplen, iph->saddr, iph->daddr, 0);
	skb->ip_summed = CHECKSUM_PARTIAL;
	skb->csum_start = gso->inner_ip + ihl;
	skb->csum_offset = offsetof(struct tcphdr, check);
	skb_set_network_header(skb, hlen);
	skb_set_transport_header(skb, hlen + ihl);
	skb_shinfo(skb)->gso_size = gso->mss;
	skb_shinfo(skb)->gso_type = SKB_GSO_TCPV4 | gso->flags;
	skb_shinfo(skb)->gso_segs = DIV_ROUND_UP(tcplen - th->doff * 4u, gso->mss);
	/* Plain Ethernet + IPv4 + TCP, or a UDP tunnel going out of a device:
	 * the device takes it whole. */
	if (hlen == ETH_HLEN || (xmit && udp_tunnel_gso(skb, hlen, ihl))) {
		send(skb, dev);
		return;
	}
	if (!outer_ok(skb->data, hlen))
		goto drop;
	/* Segment the inner packet, then put the tunnel headers on each piece. */
	memcpy(outer, skb->data, hlen);
	id = ntohs(((struct iphdr *)(outer + ETH_HLEN))->id);
	__skb_pull(skb, hlen);
	skb_reset_mac_header(skb);
	skb_reset_network_header(skb);
	skb_set_transport_header(skb, ihl);
	skb->mac_len = 0;
	skb->protocol = htons(ETH_P_IP);
	skb->dev = dev;
	segs = skb_gso_segment(skb, 0); /* no offloads: checksums in software */
	if (IS_ERR_OR_NULL(segs))
		goto drop;
	consume_skb(skb);
	skb_list_walk_safe(segs, seg, next) {
		skb_mark_not_on_list(seg);
		if (skb_cow_head(seg, hlen)) {
			kfree_skb(seg);
			continue;
		}
		memcpy(skb_push(seg, hlen), outer, hlen);
		outer_fix(seg->data, seg->len, id++);
		send(seg, dev);
	}
	return;
drop:
	kfree_skb(skb);
}
