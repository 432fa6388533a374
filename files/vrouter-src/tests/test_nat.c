/*
 * A floating IP's NAT through dp-core, programmed as the agent programs it: a TCP
 * segment from the fabric on the port's label, addressed to the floating address,
 * traps in the port's VRF; the reverse flow (fixed -> outside, source rewritten to the
 * floating address) then the flow itself (destination rewritten to the fixed address)
 * are installed; the held segment reaches the VM rewritten with valid IPv4 and TCP
 * checksums, the VM's reply leaves on the tunnel from the floating address with valid
 * checksums, and once both flows are deleted by key the next segment traps again.
 * Then the same floating IP reached from a client on this compute (a VRF translation).
 */
#include <string.h>

#include "support.h"
#include "tcheck.h"
#include "vr_util.h"

#define FLOATING "198.18.30.20"
#define FIXED "198.18.10.4"
#define OUTSIDE "198.18.30.5"
#define PORT_LABEL 400u
#define OUTSIDE_LABEL 500u
#define TCP_DATA 12u
static const uint8_t data[TCP_DATA] = {'f', 'l', 'o', 'a', 't', 'i', 'n', 'g', '-', 'i', 'p', '!'};

/* The IPv4 header and TCP checksums of the packet at ip are right. */
static int tcp4_sums_ok(const uint8_t *ip)
{
	uint32_t len = vr_get_be16(ip + 2) - 20u, sum = 0;

	if (vr_csum(ip, 20, 0) != 0)
		return 0;
	for (int i = 0; i < 8; i += 2)
		sum += vr_get_be16(ip + 12 + i);
	sum += 6u + len;
	return vr_csum(ip + 20, len, sum) == 0;
}

static int addr_is(const uint8_t *p, const char *want)
{
	uint8_t a[4];

	ip4(want, a);
	return !memcmp(p, a, 4);
}

/* outside -> floating, arriving over MPLSoUDP on the port's label: the frames
 * captured then (a flow miss to pkt0 when no flow has it yet). */
static void segment_in(struct vr_router *r)
{
	static uint8_t body[256];
	uint8_t seg[128], f[512];
	uint32_t slen, n;

	slen = build_tcp4(seg, MAC_RTR, MAC_PEER, OUTSIDE, FLOATING, 40000, 80, data, TCP_DATA);
	vr_put_be32(body, (PORT_LABEL << 12) | 0x100u | 64u);
	memcpy(body + 4, seg + 14, slen - 14);
	n = build_udp4(f, MAC_FAB, MAC_PEER, "198.18.0.2", "198.18.0.1", 50000,
		       VR_MPLS_UDP_PORT, body, 4 + slen - 14);
	tos.ncap = 0;
	rx_frame(r, 0, f, n);
}

/* A flow miss in the port's VRF was trapped: its flow index. */
static uint32_t missed(void)
{
	CHECK_EQ(tos.ncap, 1);
	CHECK_EQ(tos.cap[0].vif, 2);
	CHECK_EQ(vr_get_be32(tos.cap[0].data + 4), 1);
	CHECK_EQ(vr_get_be16(tos.cap[0].data + 8), VR_TRAP_FLOW_MISS);
	return vr_get_be32(tos.cap[0].data + 12);
}

/* The message keeps pointers to the addresses: they outlive this call (one message
 * at a time). */
static void put_key_in(struct vr_msg *m, uint32_t vrf, const char *sip, const char *dip,
		       uint16_t sport, uint16_t dport)
{
	static uint8_t s[4], d[4];

	ip4(sip, s);
	ip4(dip, d);
	vr_msg_put_num(m, VR_A_FL_VRF, vrf);
	vr_msg_put_bytes(m, VR_A_FL_SIP, s, 4);
	vr_msg_put_bytes(m, VR_A_FL_DIP, d, 4);
	vr_msg_put_num(m, VR_A_FL_PROTO, 6);
	vr_msg_put_num(m, VR_A_FL_SPORT, sport);
	vr_msg_put_num(m, VR_A_FL_DPORT, dport);
}

/* A key in the port's VRF (1). */
static void put_key(struct vr_msg *m, const char *sip, const char *dip, uint16_t sport,
		    uint16_t dport)
{
	put_key_in(m, 1, sip, dip, sport, dport);
}

static void test_floating_ip(void)
{
	struct vr_router r;
	uint8_t seg[128], a[4];
	uint32_t slen, flow, rev;
	struct vr_msg m, rep;
	const uint8_t *ip;

	router_setup(&r, 256);
	setup_compute(&r); /* vif 4: the VM with the fixed address, under policy */
	add_nh_encap(&r, 6, 1, 4, MAC_VM4, 0);
	add_label(&r, PORT_LABEL, 6);
	add_nh_tunnel(&r, 11, VR_NH_F_MPLS_UDP, "198.18.0.2");
	add_route4(&r, 1, OUTSIDE, 32, 11, (int)OUTSIDE_LABEL);

	/* In: outside -> floating, on the port's label: a flow miss in the port's VRF. */
	segment_in(&r);
	flow = missed();
	CHECK(flow < r.nflows);

	/* The agent: the reverse first (fixed -> outside, source to the floating address). */
	vr_msg_init(&m, VR_OP_ADD, VR_OBJ_FLOW, 0, 1);
	put_key(&m, FIXED, OUTSIDE, 80, 40000);
	vr_msg_put_num(&m, VR_A_FL_ACTION, VR_FLOW_NAT);
	ip4(FLOATING, a);
	vr_msg_put_bytes(&m, VR_A_FL_NAT_SIP, a, 4);
	vr_msg_put_num(&m, VR_A_FL_RINDEX, flow);
	CHECK_EQ(req_reply(&r, &m, &rep), 0);
	rev = (uint32_t)rep.a[VR_A_FL_INDEX].num;
	CHECK(rev != flow);
	CHECK_EQ(tos.ncap, 1); /* nothing released yet */
	/* Then the flow: destination to the fixed address; the held segment goes. */
	vr_msg_init(&m, VR_OP_ADD, VR_OBJ_FLOW, 0, 2);
	vr_msg_put_num(&m, VR_A_FL_INDEX, flow);
	vr_msg_put_num(&m, VR_A_FL_ACTION, VR_FLOW_NAT);
	ip4(FIXED, a);
	vr_msg_put_bytes(&m, VR_A_FL_NAT_DIP, a, 4);
	CHECK_EQ(req(&r, &m), 0);
	CHECK_EQ(r.flows[flow].rindex, rev);
	CHECK_EQ(r.flows[rev].rindex, flow);
	CHECK_EQ(tos.ncap, 2);
	CHECK_EQ(tos.cap[1].vif, 4);
	ip = tos.cap[1].data + 14;
	CHECK(!memcmp(tos.cap[1].data, MAC_VM4, 6));
	CHECK(addr_is(ip + 12, OUTSIDE)); /* the VM sees the outside address */
	CHECK(addr_is(ip + 16, FIXED));
	CHECK(tcp4_sums_ok(ip));
	CHECK(!memcmp(ip + 40, data, TCP_DATA));

	/* Out: the VM's reply takes the reverse flow and leaves from the floating address. */
	slen = build_tcp4(seg, MAC_RTR, MAC_VM4, FIXED, OUTSIDE, 80, 40000, data, TCP_DATA);
	tos.ncap = 0;
	rx_frame(&r, 4, seg, slen);
	CHECK_EQ(tos.ncap, 1);
	CHECK_EQ(tos.cap[0].vif, 0);
	CHECK_EQ(vr_get_be16(tos.cap[0].data + 14 + 20 + 2), VR_MPLS_UDP_PORT);
	CHECK_EQ(vr_get_be32(tos.cap[0].data + 42) >> 12, OUTSIDE_LABEL);
	ip = tos.cap[0].data + 46; /* Ethernet, IPv4, UDP, one MPLS label */
	CHECK(addr_is(ip + 12, FLOATING));
	CHECK(addr_is(ip + 16, OUTSIDE));
	CHECK(tcp4_sums_ok(ip));
	CHECK_EQ(r.flows[rev].packets, 1);

	/* Disassociated: the agent deletes both by key; the next segment traps again. */
	vr_msg_init(&m, VR_OP_DEL, VR_OBJ_FLOW, 0, 3);
	put_key(&m, OUTSIDE, FLOATING, 40000, 80);
	CHECK_EQ(req(&r, &m), 0);
	vr_msg_init(&m, VR_OP_DEL, VR_OBJ_FLOW, 0, 4);
	put_key(&m, FIXED, OUTSIDE, 80, 40000);
	CHECK_EQ(req(&r, &m), 0);
	segment_in(&r);
	missed();

	router_teardown(&r);
	CHECK_EQ(tos.live_pkts, 0);
}

/*
 * The same floating IP reached from this compute: a client (vif 5) on the external
 * network (VRF 2) sends to the floating address.  Its flow misses in VRF 2, which has
 * no route to the fixed address; the agent's entries translate the VRF: the flow
 * rewrites the destination and routes in the port's VRF (1), its reverse rewrites the
 * source back to the floating address and routes in VRF 2.  Both directions arrive
 * with valid checksums.
 */
#define CLIENT "198.18.30.6"
#define EXT_VRF 2u
static const uint8_t MAC_CLIENT[6] = {0x02, 0, 0xc6, 0x12, 0x1e, 0x06};

static void test_floating_ip_same_compute(void)
{
	struct vr_router r;
	uint8_t seg[128], a[4];
	uint32_t slen, flow, rev;
	struct vr_msg m, rep;
	const uint8_t *ip;
	uint64_t v;

	router_setup(&r, 256);
	setup_compute(&r);
	add_vif(&r, 5, VR_VIF_VIRTUAL, EXT_VRF, VR_VIF_F_POLICY, MAC_CLIENT, NULL);
	add_nh_encap(&r, 6, 1, 4, MAC_VM4, 0);
	add_nh_encap(&r, 7, EXT_VRF, 5, MAC_CLIENT, 0);
	add_route4(&r, 1, FIXED, 32, 6, -1);
	add_route4(&r, EXT_VRF, CLIENT, 32, 7, -1);

	/* client -> floating: a flow miss in the external network's VRF. */
	slen = build_tcp4(seg, MAC_RTR, MAC_CLIENT, CLIENT, FLOATING, 41000, 80, data, TCP_DATA);
	tos.ncap = 0;
	rx_frame(&r, 5, seg, slen);
	CHECK_EQ(tos.ncap, 1);
	CHECK_EQ(tos.cap[0].vif, 2);
	CHECK_EQ(vr_get_be32(tos.cap[0].data + 4), EXT_VRF);
	CHECK_EQ(vr_get_be16(tos.cap[0].data + 8), VR_TRAP_FLOW_MISS);
	flow = vr_get_be32(tos.cap[0].data + 12);
	CHECK(flow < r.nflows);

	/* A translation to a VRF that does not exist, out of range, or after a drop is
	 * refused and changes nothing: the segment stays held. */
	vr_msg_init(&m, VR_OP_ADD, VR_OBJ_FLOW, 0, 1);
	vr_msg_put_num(&m, VR_A_FL_INDEX, flow);
	vr_msg_put_num(&m, VR_A_FL_ACTION, VR_FLOW_NAT);
	vr_msg_put_num(&m, VR_A_FL_DVRF, 5);
	CHECK_EQ(req(&r, &m), -VR_ENOENT);
	m.a[VR_A_FL_DVRF].num = 8; /* max_vrfs */
	CHECK_EQ(req(&r, &m), -VR_ERANGE);
	m.a[VR_A_FL_DVRF].num = 1;
	m.a[VR_A_FL_ACTION].num = VR_FLOW_DROP;
	CHECK_EQ(req(&r, &m), -VR_EINVAL);
	CHECK_EQ(r.flows[flow].action, VR_FLOW_HOLD);
	CHECK(!(r.flows[flow].flags & VR_FLOW_F_VRFT));
	CHECK_EQ(tos.ncap, 1);

	/* The reverse: in the port's VRF, source to the floating address, back to VRF 2. */
	vr_msg_init(&m, VR_OP_ADD, VR_OBJ_FLOW, 0, 2);
	put_key_in(&m, 1, FIXED, CLIENT, 80, 41000);
	vr_msg_put_num(&m, VR_A_FL_ACTION, VR_FLOW_NAT);
	ip4(FLOATING, a);
	vr_msg_put_bytes(&m, VR_A_FL_NAT_SIP, a, 4);
	vr_msg_put_num(&m, VR_A_FL_RINDEX, flow);
	vr_msg_put_num(&m, VR_A_FL_DVRF, EXT_VRF);
	CHECK_EQ(req_reply(&r, &m, &rep), 0);
	rev = (uint32_t)rep.a[VR_A_FL_INDEX].num;
	CHECK_EQ(r.flows[rev].dvrf, EXT_VRF);
	CHECK(r.flows[rev].flags & VR_FLOW_F_VRFT);
	/* The flow: destination to the fixed address, into the port's VRF. */
	vr_msg_init(&m, VR_OP_ADD, VR_OBJ_FLOW, 0, 3);
	vr_msg_put_num(&m, VR_A_FL_INDEX, flow);
	vr_msg_put_num(&m, VR_A_FL_ACTION, VR_FLOW_NAT);
	ip4(FIXED, a);
	vr_msg_put_bytes(&m, VR_A_FL_NAT_DIP, a, 4);
	vr_msg_put_num(&m, VR_A_FL_DVRF, 1);
	CHECK_EQ(req(&r, &m), 0);
	CHECK_EQ(tos.ncap, 2);
	CHECK_EQ(tos.cap[1].vif, 4);
	CHECK(!memcmp(tos.cap[1].data, MAC_VM4, 6));
	ip = tos.cap[1].data + 14;
	CHECK(addr_is(ip + 12, CLIENT)); /* the VM sees the client's own address */
	CHECK(addr_is(ip + 16, FIXED));
	CHECK(tcp4_sums_ok(ip));
	CHECK(!memcmp(ip + 40, data, TCP_DATA));

	/* The flow's GET reply carries the translation. */
	vr_msg_init(&m, VR_OP_GET, VR_OBJ_FLOW, 0, 4);
	vr_msg_put_num(&m, VR_A_FL_INDEX, flow);
	CHECK_EQ(req_reply(&r, &m, &rep), 0);
	CHECK_EQ(vr_msg_get_num(&rep, VR_A_FL_DVRF, &v), 0);
	CHECK_EQ(v, 1);
	CHECK(vr_msg_get_num(&rep, VR_A_FL_FLAGS, &v) == 0 && (v & VR_FLOW_F_VRFT));

	/* The VM's reply: from the floating address, delivered to the client in VRF 2. */
	slen = build_tcp4(seg, MAC_RTR, MAC_VM4, FIXED, CLIENT, 80, 41000, data, TCP_DATA);
	tos.ncap = 0;
	rx_frame(&r, 4, seg, slen);
	CHECK_EQ(tos.ncap, 1);
	CHECK_EQ(tos.cap[0].vif, 5);
	CHECK(!memcmp(tos.cap[0].data, MAC_CLIENT, 6));
	ip = tos.cap[0].data + 14;
	CHECK(addr_is(ip + 12, FLOATING));
	CHECK(addr_is(ip + 16, CLIENT));
	CHECK(tcp4_sums_ok(ip));
	CHECK_EQ(r.flows[rev].packets, 1);

	/* Re-added without FL_DVRF, the entry routes where it came in again: VRF 2 has no
	 * route to the fixed address, so the next segment is dropped there. */
	vr_msg_init(&m, VR_OP_ADD, VR_OBJ_FLOW, 0, 5);
	vr_msg_put_num(&m, VR_A_FL_INDEX, flow);
	vr_msg_put_num(&m, VR_A_FL_ACTION, VR_FLOW_NAT);
	CHECK_EQ(req(&r, &m), 0);
	CHECK(!(r.flows[flow].flags & VR_FLOW_F_VRFT));
	slen = build_tcp4(seg, MAC_RTR, MAC_CLIENT, CLIENT, FLOATING, 41000, 80, data, TCP_DATA);
	tos.ncap = 0;
	rx_frame(&r, 5, seg, slen);
	CHECK_EQ(tos.ncap, 0);
	CHECK_EQ(r.drops[VR_DROP_NO_ROUTE], 1);

	router_teardown(&r);
	CHECK_EQ(tos.live_pkts, 0);
}

int main(void)
{
	test_floating_ip();
	test_floating_ip_same_compute();
	T_DONE("test_nat");
}
