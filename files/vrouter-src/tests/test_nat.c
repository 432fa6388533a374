/*
 * A floating IP's NAT through dp-core, programmed as the agent programs it: a TCP
 * segment from the fabric on the port's label, addressed to the floating address,
 * traps in the port's VRF; the reverse flow (fixed -> outside, source rewritten to the
 * floating address) then the flow itself (destination rewritten to the fixed address)
 * are installed; the held segment reaches the VM rewritten with valid IPv4 and TCP
 * checksums, the VM's reply leaves on the tunnel from the floating address with valid
 * checksums, and once both flows are deleted by key the next segment traps again.
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
static void put_key(struct vr_msg *m, const char *sip, const char *dip, uint16_t sport,
		    uint16_t dport)
{
	static uint8_t s[4], d[4];

	ip4(sip, s);
	ip4(dip, d);
	vr_msg_put_num(m, VR_A_FL_VRF, 1);
	vr_msg_put_bytes(m, VR_A_FL_SIP, s, 4);
	vr_msg_put_bytes(m, VR_A_FL_DIP, d, 4);
	vr_msg_put_num(m, VR_A_FL_PROTO, 6);
	vr_msg_put_num(m, VR_A_FL_SPORT, sport);
	vr_msg_put_num(m, VR_A_FL_DPORT, dport);
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

int main(void)
{
	test_floating_ip();
	T_DONE("test_nat");
}
