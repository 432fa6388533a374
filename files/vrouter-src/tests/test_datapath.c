/*
 * Forwarding through dp-core: encapsulation and decapsulation for MPLSoGRE,
 * MPLSoUDP and VXLAN checked field by field, composite nexthops, pkt0 traps,
 * flow hold/release, NAT, drop reasons.
 */
#include <string.h>

#include "support.h"
#include "tcheck.h"
#include "vr_util.h"

static uint8_t payload[64] = "vrstack datapath test payload";

static void reset_cap(void)
{
	tos.ncap = 0;
}

/* IPv4 header checksum and UDP checksum (if set) of a frame at l3. */
static int ip4_sums_ok(const uint8_t *ip)
{
	uint32_t ihl = (ip[0] & 0xfu) * 4u, sum = 0;
	const uint8_t *u = ip + ihl;
	uint16_t ulen;

	if (vr_csum(ip, ihl, 0) != 0)
		return 0;
	if (ip[9] != 17 || !vr_get_be16(u + 6))
		return 1;
	ulen = vr_get_be16(u + 4);
	for (int i = 0; i < 8; i += 2)
		sum += vr_get_be16(ip + 12 + i);
	sum += 17u + ulen;
	return vr_csum(u, ulen, sum) == 0;
}

static void setup(struct vr_router *r)
{
	router_setup(r, 256);
	setup_compute(r);
	add_nh_encap(r, 5, 1, 3, MAC_VM3, 0);
	add_nh_encap(r, 6, 1, 4, MAC_VM4, 0);
	add_nh_encap(r, 7, 1, 3, MAC_VM3, VR_NH_F_L2);
	add_route4(r, 1, "198.18.10.3", 32, 5, -1);
	add_route4(r, 1, "198.18.10.4", 32, 6, -1);
	add_nh_tunnel(r, 10, VR_NH_F_MPLS_GRE, "198.18.0.2");
	add_nh_tunnel(r, 11, VR_NH_F_MPLS_UDP, "198.18.0.2");
	add_nh_tunnel(r, 12, VR_NH_F_VXLAN, "198.18.0.2");
	add_route4(r, 1, "198.18.11.0", 24, 10, 100);
	add_route4(r, 1, "198.18.12.0", 24, 11, 200);
	add_route4(r, 1, "198.18.13.0", 24, 12, 5001);
	add_label(r, 300, 5);
	add_label(r, 301, 7);
	{
		struct vr_msg m;
		vr_msg_init(&m, VR_OP_ADD, VR_OBJ_VNI, 0, 0);
		vr_msg_put_num(&m, VR_A_VNI_VNI, 5001);
		vr_msg_put_num(&m, VR_A_VNI_VRF, 1);
		CHECK_EQ(req(r, &m), 0);
	}
}

/* Check the outer Ethernet+IPv4 of a frame sent to the peer; returns the
 * offset of the tunnel header. */
static uint32_t check_outer(const struct captured *c, uint8_t proto)
{
	const uint8_t *ip = c->data + 14;
	uint8_t a[4];

	CHECK_EQ(c->vif, 0);
	CHECK(!memcmp(c->data, MAC_PEER, 6));
	CHECK(!memcmp(c->data + 6, MAC_FAB, 6));
	CHECK_EQ(vr_get_be16(c->data + 12), 0x0800);
	CHECK_EQ(ip[0], 0x45);
	CHECK_EQ(ip[9], proto);
	CHECK_EQ(ip[8], 64);
	CHECK_EQ(vr_get_be16(ip + 2), c->len - 14);
	CHECK(ip4_sums_ok(ip));
	ip4("198.18.0.1", a);
	CHECK(!memcmp(ip + 12, a, 4));
	ip4("198.18.0.2", a);
	CHECK(!memcmp(ip + 16, a, 4));
	return 34;
}

static void test_encap(void)
{
	struct vr_router r;
	uint8_t f[256];
	uint32_t n, t;
	const struct captured *c;

	setup(&r);
	/* MPLSoGRE: GRE 0/0x8847, label 100 S=1 TTL 64, inner IP packet. */
	reset_cap();
	n = build_udp4(f, MAC_RTR, MAC_VM3, "198.18.10.3", "198.18.11.7", 1000, 2000, payload, 40);
	rx_frame(&r, 3, f, n);
	CHECK_EQ(tos.ncap, 1);
	c = &tos.cap[0];
	t = check_outer(c, 47);
	CHECK_EQ(vr_get_be32(c->data + t), 0x00008847u);
	CHECK_EQ(vr_get_be32(c->data + t + 4), (100u << 12) | 0x100u | 64u);
	CHECK_EQ(c->len, t + 8 + n - 14);
	CHECK(!memcmp(c->data + t + 8, f + 14, n - 14));

	/* MPLSoUDP: destination port 6635, entropy source port, label 200. */
	reset_cap();
	n = build_udp4(f, MAC_RTR, MAC_VM3, "198.18.10.3", "198.18.12.7", 1000, 2000, payload, 40);
	rx_frame(&r, 3, f, n);
	CHECK_EQ(tos.ncap, 1);
	c = &tos.cap[0];
	t = check_outer(c, 17);
	CHECK_EQ(vr_get_be16(c->data + t + 2), 6635);
	CHECK(vr_get_be16(c->data + t) >= 0xc000);
	CHECK_EQ(vr_get_be16(c->data + t + 4), c->len - t);
	CHECK_EQ(vr_get_be32(c->data + t + 8), (200u << 12) | 0x100u | 64u);
	CHECK(!memcmp(c->data + t + 12, f + 14, n - 14));

	/* VXLAN: port 4789, I flag, VNI 5001, inner Ethernet to the router MAC. */
	reset_cap();
	n = build_udp4(f, MAC_RTR, MAC_VM3, "198.18.10.3", "198.18.13.7", 1000, 2000, payload, 40);
	rx_frame(&r, 3, f, n);
	CHECK_EQ(tos.ncap, 1);
	c = &tos.cap[0];
	t = check_outer(c, 17);
	CHECK_EQ(vr_get_be16(c->data + t + 2), 4789);
	CHECK_EQ(vr_get_be32(c->data + t + 8), 0x08000000u);
	CHECK_EQ(vr_get_be32(c->data + t + 12), 5001u << 8);
	CHECK(!memcmp(c->data + t + 16, MAC_RTR, 6));
	CHECK(!memcmp(c->data + t + 22, MAC_RTR, 6));
	CHECK(!memcmp(c->data + t + 28, f + 12, n - 12));

	/* Same flow, same entropy; another flow, usually another port. */
	{
		uint16_t p1, p2;
		reset_cap();
		n = build_udp4(f, MAC_RTR, MAC_VM3, "198.18.10.3", "198.18.12.7", 1, 2, payload, 8);
		rx_frame(&r, 3, f, n);
		rx_frame(&r, 3, f, n);
		n = build_udp4(f, MAC_RTR, MAC_VM3, "198.18.10.3", "198.18.12.7", 3, 2, payload, 8);
		rx_frame(&r, 3, f, n);
		CHECK_EQ(tos.ncap, 3);
		p1 = vr_get_be16(tos.cap[0].data + 34);
		p2 = vr_get_be16(tos.cap[1].data + 34);
		CHECK_EQ(p1, p2);
		CHECK(vr_get_be16(tos.cap[2].data + 34) != p1);
	}

	/* IPv6 over MPLSoUDP. */
	{
		uint8_t pfx[16];
		struct vr_msg m;
		ip6("2001:db8:2::", pfx);
		vr_msg_init(&m, VR_OP_ADD, VR_OBJ_ROUTE, 0, 0);
		vr_msg_put_num(&m, VR_A_RT_VRF, 1);
		vr_msg_put_num(&m, VR_A_RT_FAMILY, VR_AF_INET6);
		vr_msg_put_bytes(&m, VR_A_RT_PREFIX, pfx, 16);
		vr_msg_put_num(&m, VR_A_RT_PLEN, 48);
		vr_msg_put_num(&m, VR_A_RT_NH, 11);
		vr_msg_put_num(&m, VR_A_RT_LABEL, 222);
		vr_msg_put_num(&m, VR_A_RT_FLAGS, VR_RT_F_LABEL);
		CHECK_EQ(req(&r, &m), 0);
		reset_cap();
		n = build_tcp6(f, MAC_RTR, MAC_VM3, "2001:db8:1::3", "2001:db8:2::9", 5555, 80);
		rx_frame(&r, 3, f, n);
		CHECK_EQ(tos.ncap, 1);
		c = &tos.cap[0];
		t = check_outer(c, 17);
		CHECK_EQ(vr_get_be32(c->data + t + 8), (222u << 12) | 0x100u | 64u);
		CHECK_EQ(c->data[t + 12] >> 4, 6);
		CHECK(!memcmp(c->data + t + 12, f + 14, n - 14));
	}
	CHECK_EQ(r.drop_total, 0);
	CHECK_EQ(r.vifs[3]->rx_pkts, 7);
	CHECK_EQ(r.vifs[0]->tx_pkts, 7);
	router_teardown(&r);
	CHECK_EQ(tos.live_pkts, 0);
}

/* Build an overlay frame from the peer: outer headers around inner. */
static uint32_t overlay(uint8_t *f, int kind, uint32_t label, const uint8_t *inner, uint32_t ilen)
{
	uint8_t tun[16];
	uint32_t tl, n;

	if (kind == 47) {
		vr_put_be32(tun, VR_GRE_PROTO_MPLS);
		vr_put_be32(tun + 4, (label << 12) | 0x100u | 64u);
		tl = 8;
		memcpy(tun + tl, inner, 0);
		/* GRE is not UDP: build the IP header by hand */
		memcpy(f, MAC_FAB, 6);
		memcpy(f + 6, MAC_PEER, 6);
		vr_put_be16(f + 12, 0x0800);
		memset(f + 14, 0, 20);
		f[14] = 0x45;
		vr_put_be16(f + 16, (uint16_t)(20 + tl + ilen));
		f[22] = 64;
		f[23] = 47;
		ip4("198.18.0.2", f + 26);
		ip4("198.18.0.1", f + 30);
		vr_put_be16(f + 24, vr_csum(f + 14, 20, 0));
		memcpy(f + 34, tun, tl);
		memcpy(f + 34 + tl, inner, ilen);
		return 34 + tl + ilen;
	}
	{
		static uint8_t body[2048];
		uint16_t port = kind == 4789 ? 4789 : 6635;
		if (kind == 4789) {
			vr_put_be32(body, 0x08000000u);
			vr_put_be32(body + 4, label << 8);
			tl = 8;
		} else {
			vr_put_be32(body, (label << 12) | 0x100u | 64u);
			tl = 4;
		}
		memcpy(body + tl, inner, ilen);
		n = build_udp4(f, MAC_FAB, MAC_PEER, "198.18.0.2", "198.18.0.1", 50000, port, body,
			       tl + ilen);
		return n;
	}
}

static void test_decap(void)
{
	struct vr_router r;
	uint8_t inner[256], f[512];
	uint32_t ilen, n;
	const struct captured *c;
	int kinds[2] = {47, 6635};

	setup(&r);
	/* MPLS (both transports), L3: label 300 -> ENCAP to VM3 with its MAC. */
	ilen = build_udp4(inner, MAC_RTR, MAC_PEER, "198.18.11.7", "198.18.10.3", 7, 8, payload, 20);
	for (int k = 0; k < 2; k++) {
		reset_cap();
		n = overlay(f, kinds[k], 300, inner + 14, ilen - 14);
		rx_frame(&r, 0, f, n);
		CHECK_EQ(tos.ncap, 1);
		c = &tos.cap[0];
		CHECK_EQ(c->vif, 3);
		CHECK(!memcmp(c->data, MAC_VM3, 6));
		CHECK(!memcmp(c->data + 6, MAC_RTR, 6));
		CHECK_EQ(vr_get_be16(c->data + 12), 0x0800);
		CHECK_EQ(c->len, ilen);
		CHECK(!memcmp(c->data + 14, inner + 14, ilen - 14));
	}
	/* MPLSoUDP, L2 label 301: the inner Ethernet frame is delivered as is. */
	reset_cap();
	n = overlay(f, 6635, 301, inner, ilen);
	rx_frame(&r, 0, f, n);
	CHECK_EQ(tos.ncap, 1);
	CHECK_EQ(tos.cap[0].vif, 3);
	CHECK_EQ(tos.cap[0].len, ilen);
	CHECK(!memcmp(tos.cap[0].data, inner, ilen));

	/* VXLAN to the router MAC: routed in the VNI's VRF. */
	reset_cap();
	n = overlay(f, 4789, 5001, inner, ilen);
	rx_frame(&r, 0, f, n);
	CHECK_EQ(tos.ncap, 1);
	c = &tos.cap[0];
	CHECK_EQ(c->vif, 3);
	CHECK(!memcmp(c->data, MAC_VM3, 6));
	CHECK(!memcmp(c->data + 14, inner + 14, ilen - 14));

	/* VXLAN to a MAC in the bridge table: bridged unchanged. */
	{
		struct vr_msg m;
		vr_msg_init(&m, VR_OP_ADD, VR_OBJ_ROUTE, 0, 0);
		vr_msg_put_num(&m, VR_A_RT_VRF, 1);
		vr_msg_put_num(&m, VR_A_RT_FAMILY, VR_AF_BRIDGE);
		vr_msg_put_bytes(&m, VR_A_RT_MAC, MAC_VM3, 6);
		vr_msg_put_num(&m, VR_A_RT_NH, 7);
		CHECK_EQ(req(&r, &m), 0);
	}
	memcpy(inner, MAC_VM3, 6);
	reset_cap();
	n = overlay(f, 4789, 5001, inner, ilen);
	rx_frame(&r, 0, f, n);
	CHECK_EQ(tos.ncap, 1);
	CHECK_EQ(tos.cap[0].vif, 3);
	CHECK(!memcmp(tos.cap[0].data, inner, ilen));

	/* IPv6 inside MPLSoUDP (L3 label): Ethernet type 0x86dd on delivery. */
	{
		uint8_t in6[256];
		uint32_t l6 = build_tcp6(in6, MAC_RTR, MAC_PEER, "2001:db8:2::9", "2001:db8:1::3", 80,
					 5555);
		reset_cap();
		n = overlay(f, 6635, 300, in6 + 14, l6 - 14);
		rx_frame(&r, 0, f, n);
		CHECK_EQ(tos.ncap, 1);
		CHECK_EQ(tos.cap[0].vif, 3);
		CHECK_EQ(vr_get_be16(tos.cap[0].data + 12), 0x86dd);
		CHECK(!memcmp(tos.cap[0].data + 14, in6 + 14, l6 - 14));
	}
	/* L2 over VXLAN: a remote MAC in the bridge table, the frame carried as is. */
	{
		static const uint8_t remote[6] = {0x02, 0, 0xc6, 0x12, 0x0b, 0x09};
		uint8_t fr[256];
		uint32_t fl;
		struct vr_msg m;
		vr_msg_init(&m, VR_OP_ADD, VR_OBJ_ROUTE, 0, 0);
		vr_msg_put_num(&m, VR_A_RT_VRF, 1);
		vr_msg_put_num(&m, VR_A_RT_FAMILY, VR_AF_BRIDGE);
		vr_msg_put_bytes(&m, VR_A_RT_MAC, remote, 6);
		vr_msg_put_num(&m, VR_A_RT_NH, 12);
		vr_msg_put_num(&m, VR_A_RT_LABEL, 5001);
		vr_msg_put_num(&m, VR_A_RT_FLAGS, VR_RT_F_LABEL);
		CHECK_EQ(req(&r, &m), 0);
		fl = build_udp4(fr, remote, MAC_VM3, "198.18.10.3", "198.18.10.9", 1, 2, payload, 16);
		reset_cap();
		rx_frame(&r, 3, fr, fl);
		CHECK_EQ(tos.ncap, 1);
		CHECK_EQ(tos.cap[0].vif, 0);
		CHECK_EQ(vr_get_be16(tos.cap[0].data + 36), 4789);
		CHECK_EQ(vr_get_be32(tos.cap[0].data + 46), 5001u << 8);
		CHECK_EQ(tos.cap[0].len, 50 + fl);
		CHECK(!memcmp(tos.cap[0].data + 50, fr, fl));
	}

	/* Errors: each counted under its reason, nothing sent. */
	reset_cap();
	n = overlay(f, 6635, 999, inner + 14, ilen - 14);
	rx_frame(&r, 0, f, n);
	CHECK_EQ(r.drops[VR_DROP_LABEL_MISS], 1);
	n = overlay(f, 4789, 7777, inner, ilen);
	rx_frame(&r, 0, f, n);
	CHECK_EQ(r.drops[VR_DROP_VNI_MISS], 1);
	n = overlay(f, 47, 300, inner + 14, ilen - 14);
	f[34] = 0x80; /* GRE checksum flag: not ours */
	rx_frame(&r, 0, f, n);
	n = overlay(f, 6635, 300, inner + 14, ilen - 14);
	f[42 + 2] &= (uint8_t)~1; /* MPLS S bit cleared: a label stack */
	rx_frame(&r, 0, f, n);
	n = overlay(f, 4789, 5001, inner, ilen);
	f[42] = 0; /* VXLAN without the I flag */
	rx_frame(&r, 0, f, n);
	CHECK_EQ(r.drops[VR_DROP_BAD_TUNNEL], 3);
	n = overlay(f, 6635, 300, inner + 14, ilen - 14);
	rx_frame(&r, 0, f, 44); /* cut inside the MPLS header: IP length too big */
	CHECK_EQ(tos.ncap, 1);  /* not for us as-is: handed to the host */
	CHECK_EQ(tos.cap[0].vif, 1);
	for (uint32_t cut = 0; cut < n; cut++) /* every truncation: no crash, no leak */
		rx_frame(&r, 0, f, cut);

	/* Not addressed to us, or not IP: to vhost0 unchanged. */
	reset_cap();
	n = build_udp4(f, MAC_FAB, MAC_PEER, "198.18.0.2", "198.18.0.9", 1, 6635, payload, 8);
	rx_frame(&r, 0, f, n);
	CHECK_EQ(tos.ncap, 1);
	CHECK_EQ(tos.cap[0].vif, 1);
	CHECK(!memcmp(tos.cap[0].data, f, n));
	/* And vhost0's own traffic goes out of the fabric unchanged. */
	reset_cap();
	rx_frame(&r, 1, f, n);
	CHECK_EQ(tos.ncap, 1);
	CHECK_EQ(tos.cap[0].vif, 0);
	router_teardown(&r);
	CHECK_EQ(tos.live_pkts, 0);
}

static void check_pkt0(const struct captured *c, uint32_t vif, uint32_t vrf, uint16_t reason)
{
	CHECK_EQ(c->vif, 2);
	CHECK_EQ(vr_get_be32(c->data), vif);
	CHECK_EQ(vr_get_be32(c->data + 4), vrf);
	CHECK_EQ(vr_get_be16(c->data + 8), reason);
}

static void test_traps_and_flows(void)
{
	struct vr_router r;
	uint8_t f[512], arp[42] = {0};
	uint32_t n, flow;
	struct vr_msg m, rep;

	setup(&r);
	/* ARP and DHCP from a VM go to the agent with a pkt0 header. */
	memset(arp, 0xff, 6);
	memcpy(arp + 6, MAC_VM3, 6);
	vr_put_be16(arp + 12, 0x0806);
	reset_cap();
	rx_frame(&r, 3, arp, sizeof(arp));
	CHECK_EQ(tos.ncap, 1);
	check_pkt0(&tos.cap[0], 3, 1, VR_TRAP_ARP);
	CHECK_EQ(vr_get_be32(tos.cap[0].data + 12), VR_FLOW_NONE);
	CHECK(!memcmp(tos.cap[0].data + 16, arp, sizeof(arp)));
	n = build_udp4(f, (const uint8_t *)"\xff\xff\xff\xff\xff\xff", MAC_VM3, "0.0.0.0",
		       "255.255.255.255", 68, 67, payload, 30);
	rx_frame(&r, 3, f, n);
	check_pkt0(&tos.cap[1], 3, 1, VR_TRAP_DHCP);

	/* The agent injects an answer onto vif 3. */
	reset_cap();
	{
		uint8_t inj[16 + 42];
		memset(inj, 0, 16);
		vr_put_be32(inj, 3);
		vr_put_be16(inj + 8, VR_TRAP_INJECT);
		memcpy(inj + 16, arp, 42);
		rx_frame(&r, 2, inj, sizeof(inj));
		CHECK_EQ(tos.ncap, 1);
		CHECK_EQ(tos.cap[0].vif, 3);
		CHECK(!memcmp(tos.cap[0].data, arp, 42));
		inj[9] = 1; /* not an inject */
		rx_frame(&r, 2, inj, sizeof(inj));
		CHECK_EQ(r.drops[VR_DROP_BAD_AGENT_PACKET], 1);
	}

	/* Policy vif 4: first packet trapped (FLOW_MISS) and held, more held up
	 * to the limit, the rest dropped; nothing forwarded yet. */
	reset_cap();
	for (int i = 0; i < 6; i++) {
		payload[0] = (uint8_t)i;
		n = build_udp4(f, MAC_RTR, MAC_VM4, "198.18.10.4", "198.18.10.3", 4000, 53, payload, 20);
		rx_frame(&r, 4, f, n);
	}
	CHECK_EQ(tos.ncap, 1);
	check_pkt0(&tos.cap[0], 4, 1, VR_TRAP_FLOW_MISS);
	flow = vr_get_be32(tos.cap[0].data + 12);
	CHECK(flow < r.nflows);
	CHECK_EQ(r.flows[flow].action, VR_FLOW_HOLD);
	CHECK_EQ(r.flows[flow].hold_count, VR_HOLD_PER_FLOW);
	CHECK_EQ(r.drops[VR_DROP_FLOW_HOLD_FULL], 6 - VR_HOLD_PER_FLOW);

	/* The agent installs the flow by key: held packets go out in order. */
	reset_cap();
	{
		uint8_t s[4], d[4];
		ip4("198.18.10.4", s);
		ip4("198.18.10.3", d);
		vr_msg_init(&m, VR_OP_ADD, VR_OBJ_FLOW, 0, 9);
		vr_msg_put_num(&m, VR_A_FL_VRF, 1);
		vr_msg_put_bytes(&m, VR_A_FL_SIP, s, 4);
		vr_msg_put_bytes(&m, VR_A_FL_DIP, d, 4);
		vr_msg_put_num(&m, VR_A_FL_PROTO, 17);
		vr_msg_put_num(&m, VR_A_FL_SPORT, 4000);
		vr_msg_put_num(&m, VR_A_FL_DPORT, 53);
		vr_msg_put_num(&m, VR_A_FL_ACTION, VR_FLOW_FORWARD);
		CHECK_EQ(req_reply(&r, &m, &rep), 0);
		CHECK_EQ(rep.a[VR_A_FL_INDEX].num, flow);
	}
	CHECK_EQ(tos.ncap, VR_HOLD_PER_FLOW);
	for (int i = 0; i < tos.ncap; i++) {
		CHECK_EQ(tos.cap[i].vif, 3);
		CHECK(!memcmp(tos.cap[i].data, MAC_VM3, 6));
	}
	CHECK_EQ(r.flows[flow].hold_count, 0);
	CHECK_EQ(r.nheld, 0);
	CHECK_EQ(r.flows[flow].packets, VR_HOLD_PER_FLOW);
	reset_cap();
	rx_frame(&r, 4, f, n);
	CHECK_EQ(tos.ncap, 1);
	CHECK_EQ(r.flows[flow].packets, VR_HOLD_PER_FLOW + 1);
	CHECK_EQ(r.flows[flow].bytes, (uint64_t)n * (VR_HOLD_PER_FLOW + 1));

	/* DROP action. */
	vr_msg_init(&m, VR_OP_ADD, VR_OBJ_FLOW, 0, 10);
	vr_msg_put_num(&m, VR_A_FL_INDEX, flow);
	vr_msg_put_num(&m, VR_A_FL_ACTION, VR_FLOW_DROP);
	CHECK_EQ(req(&r, &m), 0);
	reset_cap();
	rx_frame(&r, 4, f, n);
	CHECK_EQ(tos.ncap, 0);
	CHECK_EQ(r.drops[VR_DROP_FLOW_ACTION_DROP], 1);

	/* NAT action: destination rewritten, checksums still right. */
	{
		uint8_t nd[4];
		ip4("198.18.10.3", nd);
		vr_msg_init(&m, VR_OP_ADD, VR_OBJ_FLOW, 0, 11);
		vr_msg_put_num(&m, VR_A_FL_INDEX, flow);
		vr_msg_put_num(&m, VR_A_FL_ACTION, VR_FLOW_NAT);
		ip4("198.18.99.9", nd);
		vr_msg_put_bytes(&m, VR_A_FL_NAT_SIP, nd, 4);
		vr_msg_put_num(&m, VR_A_FL_NAT_SPORT, 40000);
		CHECK_EQ(req(&r, &m), 0);
		reset_cap();
		rx_frame(&r, 4, f, n);
		CHECK_EQ(tos.ncap, 1);
		CHECK(!memcmp(tos.cap[0].data + 14 + 12, nd, 4));
		CHECK_EQ(vr_get_be16(tos.cap[0].data + 34), 40000);
		CHECK(ip4_sums_ok(tos.cap[0].data + 14));
	}

	/* Two flows held interleaved; releasing one keeps the other's order. */
	{
		uint32_t fa, fb;
		reset_cap();
		for (int i = 0; i < 4; i++) {
			payload[0] = (uint8_t)(10 + i);
			uint8_t g[256];
			uint32_t gn = build_udp4(g, MAC_RTR, MAC_VM4, "198.18.10.4", "198.18.10.3",
						 (uint16_t)(6000 + i % 2), 53, payload, 20);
			rx_frame(&r, 4, g, gn);
		}
		CHECK_EQ(tos.ncap, 2); /* one trap per flow */
		fa = vr_get_be32(tos.cap[0].data + 12);
		fb = vr_get_be32(tos.cap[1].data + 12);
		CHECK(fa != fb);
		reset_cap();
		vr_msg_init(&m, VR_OP_ADD, VR_OBJ_FLOW, 0, 20);
		vr_msg_put_num(&m, VR_A_FL_INDEX, fb);
		vr_msg_put_num(&m, VR_A_FL_ACTION, VR_FLOW_FORWARD);
		CHECK_EQ(req(&r, &m), 0);
		vr_msg_put_num(&m, VR_A_FL_INDEX, fa);
		CHECK_EQ(req(&r, &m), 0);
		CHECK_EQ(tos.ncap, 4);
		/* payload byte at 42: flow b got 11, 13; flow a got 10, 12 */
		CHECK_EQ(tos.cap[0].data[42], 11);
		CHECK_EQ(tos.cap[1].data[42], 13);
		CHECK_EQ(tos.cap[2].data[42], 10);
		CHECK_EQ(tos.cap[3].data[42], 12);
	}

	/* Deleting a flow with held packets frees them. */
	vr_msg_init(&m, VR_OP_DEL, VR_OBJ_FLOW, 0, 12);
	vr_msg_put_num(&m, VR_A_FL_INDEX, flow);
	CHECK_EQ(req(&r, &m), 0);
	reset_cap();
	rx_frame(&r, 4, f, n); /* new miss: trapped + held */
	CHECK_EQ(tos.ncap, 1);
	CHECK_EQ(r.nheld, 1);
	flow = vr_get_be32(tos.cap[0].data + 12);
	vr_msg_init(&m, VR_OP_DEL, VR_OBJ_FLOW, 0, 13);
	vr_msg_put_num(&m, VR_A_FL_INDEX, flow);
	CHECK_EQ(req(&r, &m), 0);
	CHECK_EQ(r.nheld, 0);
	CHECK_EQ(r.drops[VR_DROP_FLOW_EVICTED], 1);

	/* Decap towards a policy vif is subject to flows too. */
	{
		uint8_t in[256];
		uint32_t il = build_udp4(in, MAC_RTR, MAC_PEER, "198.18.11.7", "198.18.10.4", 9, 9,
					 payload, 8);
		add_label(&r, 302, 6);
		reset_cap();
		n = overlay(f, 6635, 302, in + 14, il - 14);
		rx_frame(&r, 0, f, n);
		CHECK_EQ(tos.ncap, 1);
		check_pkt0(&tos.cap[0], 0, 1, VR_TRAP_FLOW_MISS);
		flow = vr_get_be32(tos.cap[0].data + 12);
		vr_msg_init(&m, VR_OP_ADD, VR_OBJ_FLOW, 0, 14);
		vr_msg_put_num(&m, VR_A_FL_INDEX, flow);
		vr_msg_put_num(&m, VR_A_FL_ACTION, VR_FLOW_FORWARD);
		CHECK_EQ(req(&r, &m), 0);
		CHECK_EQ(tos.ncap, 2);
		CHECK_EQ(tos.cap[1].vif, 4);
		CHECK(!memcmp(tos.cap[1].data, MAC_VM4, 6));
	}
	router_teardown(&r);
	CHECK_EQ(tos.live_pkts, 0);
}

static void test_composite_and_drops(void)
{
	struct vr_router r;
	uint8_t f[256], bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	uint8_t comps[16];
	struct vr_msg m;
	uint32_t n;
	int gre = 0, udp = 0;

	setup(&r);
	/* ECMP over GRE(label 100) and UDP(label 200). */
	vr_put_be32(comps, 10);
	vr_put_be32(comps + 4, 100);
	vr_put_be32(comps + 8, 11);
	vr_put_be32(comps + 12, 200);
	vr_msg_init(&m, VR_OP_ADD, VR_OBJ_NH, 0, 0);
	vr_msg_put_num(&m, VR_A_NH_ID, 20);
	vr_msg_put_num(&m, VR_A_NH_TYPE, VR_NH_COMPOSITE);
	vr_msg_put_num(&m, VR_A_NH_FLAGS, VR_NH_F_ECMP);
	vr_msg_put_bytes(&m, VR_A_NH_COMPONENTS, comps, 16);
	CHECK_EQ(req(&r, &m), 0);
	add_route4(&r, 1, "198.18.14.0", 24, 20, -1);
	reset_cap();
	for (int i = 0; i < 32; i++) {
		n = build_udp4(f, MAC_RTR, MAC_VM3, "198.18.10.3", "198.18.14.1", (uint16_t)(1000 + i),
			       80, payload, 8);
		rx_frame(&r, 3, f, n);
	}
	CHECK_EQ(tos.ncap, 32);
	for (int i = 0; i < tos.ncap; i++) {
		const uint8_t *ip = tos.cap[i].data + 14;
		if (ip[9] == 47) {
			gre++;
			CHECK_EQ(vr_get_be32(ip + 24) >> 12, 100);
		} else {
			udp++;
			CHECK_EQ(vr_get_be32(ip + 28) >> 12, 200);
		}
	}
	CHECK(gre > 0 && udp > 0);

	/* Multicast: a broadcast frame copied to both VMs. */
	vr_put_be32(comps, 7);
	vr_put_be32(comps + 4, 0);
	add_nh_encap(&r, 8, 1, 4, MAC_VM4, VR_NH_F_L2);
	vr_put_be32(comps + 8, 8);
	vr_put_be32(comps + 12, 0);
	vr_msg_init(&m, VR_OP_ADD, VR_OBJ_NH, 0, 0);
	vr_msg_put_num(&m, VR_A_NH_ID, 21);
	vr_msg_put_num(&m, VR_A_NH_TYPE, VR_NH_COMPOSITE);
	vr_msg_put_num(&m, VR_A_NH_FLAGS, VR_NH_F_MCAST);
	vr_msg_put_bytes(&m, VR_A_NH_COMPONENTS, comps, 16);
	CHECK_EQ(req(&r, &m), 0);
	vr_msg_init(&m, VR_OP_ADD, VR_OBJ_ROUTE, 0, 0);
	vr_msg_put_num(&m, VR_A_RT_VRF, 1);
	vr_msg_put_num(&m, VR_A_RT_FAMILY, VR_AF_BRIDGE);
	vr_msg_put_bytes(&m, VR_A_RT_MAC, bcast, 6);
	vr_msg_put_num(&m, VR_A_RT_NH, 21);
	CHECK_EQ(req(&r, &m), 0);
	reset_cap();
	n = build_udp4(f, bcast, MAC_VM3, "198.18.10.3", "198.18.10.255", 5, 5, payload, 8);
	rx_frame(&r, 3, f, n);
	CHECK_EQ(tos.ncap, 2);
	CHECK(tos.cap[0].vif != tos.cap[1].vif);
	CHECK(!memcmp(tos.cap[0].data, f, n) && !memcmp(tos.cap[1].data, f, n));

	/* No route; discard nexthop; missing nexthop; unknown vif. */
	n = build_udp4(f, MAC_RTR, MAC_VM3, "198.18.10.3", "198.19.0.1", 5, 5, payload, 8);
	rx_frame(&r, 3, f, n);
	CHECK_EQ(r.drops[VR_DROP_NO_ROUTE], 1);
	vr_msg_init(&m, VR_OP_ADD, VR_OBJ_NH, 0, 0);
	vr_msg_put_num(&m, VR_A_NH_ID, 30);
	vr_msg_put_num(&m, VR_A_NH_TYPE, VR_NH_DISCARD);
	CHECK_EQ(req(&r, &m), 0);
	add_route4(&r, 1, "198.19.0.0", 16, 30, -1);
	rx_frame(&r, 3, f, n);
	CHECK_EQ(r.drops[VR_DROP_DISCARD], 1);
	add_route4(&r, 1, "198.19.0.0", 16, 31, -1);
	rx_frame(&r, 3, f, n);
	CHECK_EQ(r.drops[VR_DROP_NO_NEXTHOP], 1);
	rx_frame(&r, 9, f, n);
	CHECK_EQ(r.drops[VR_DROP_NO_VIF], 1);
	CHECK_EQ(r.vifs[3]->drops, 3);

	/* No agent: traps are dropped and counted. */
	vr_msg_init(&m, VR_OP_DEL, VR_OBJ_VIF, 0, 0);
	vr_msg_put_num(&m, VR_A_VIF_IDX, 2);
	CHECK_EQ(req(&r, &m), 0);
	vr_put_be16(f + 12, 0x0806);
	rx_frame(&r, 3, f, 42);
	CHECK_EQ(r.drops[VR_DROP_NO_AGENT], 1);

	/* Packet allocation failure while pushing headers with no headroom. */
	{
		struct vr_pkt *p;
		n = build_udp4(f, MAC_RTR, MAC_VM3, "198.18.10.3", "198.18.12.1", 5, 5, payload, 8);
		p = test_os_ops.pkt_alloc(NULL, n);
		memcpy(p->buf + p->off, f, n);
		p->off = 0; /* pretend: no headroom */
		memmove(p->buf, f, n);
		tos.fail_alloc = 1;
		vr_rx(&r, 3, p);
		tos.fail_alloc = 0;
		CHECK_EQ(r.drops[VR_DROP_NO_HEADROOM], 1);
	}
	router_teardown(&r);
	CHECK_EQ(tos.live_pkts, 0);
}

int main(void)
{
	test_encap();
	test_decap();
	test_traps_and_flows();
	test_composite_and_drops();
	T_DONE("test_datapath");
}
