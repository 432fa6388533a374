/* The test OS layer and builders (see support.h). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"
#include "vr_util.h"

struct test_os tos;

const uint8_t MAC_FAB[6] = {0x02, 0, 0xc6, 0x12, 0, 0x01};
const uint8_t MAC_PEER[6] = {0x02, 0, 0xc6, 0x12, 0, 0x02};
const uint8_t MAC_VM3[6] = {0x02, 0, 0xc6, 0x12, 0x0a, 0x03};
const uint8_t MAC_VM4[6] = {0x02, 0, 0xc6, 0x12, 0x0a, 0x04};
const uint8_t MAC_RTR[6] = VR_ROUTER_MAC;

static void *t_zalloc(void *ctx, size_t n)
{
	(void)ctx;
	return calloc(1, n);
}

static void t_free(void *ctx, void *p)
{
	(void)ctx;
	free(p);
}

static uint64_t t_now(void *ctx)
{
	(void)ctx;
	return ++tos.now;
}

static void t_lock(void *ctx)
{
	(void)ctx;
}

static struct vr_pkt *t_pkt_alloc(void *ctx, uint32_t len)
{
	struct vr_pkt *p;

	(void)ctx;
	if (tos.fail_alloc)
		return NULL;
	p = calloc(1, sizeof(*p));
	p->size = VR_PKT_HEADROOM + len;
	p->buf = calloc(1, p->size);
	p->off = VR_PKT_HEADROOM;
	p->len = len;
	tos.live_pkts++;
	return p;
}

static void t_pkt_free(void *ctx, struct vr_pkt *p)
{
	(void)ctx;
	free(p->buf);
	free(p);
	tos.live_pkts--;
}

static int t_tx(void *ctx, uint32_t vif, uint32_t os_idx, struct vr_pkt *p)
{
	(void)os_idx;
	if (tos.ncap < CAP_MAX && p->len <= sizeof(tos.cap[0].data)) {
		struct captured *c = &tos.cap[tos.ncap++];
		c->vif = vif;
		c->len = p->len;
		memcpy(c->data, p->buf + p->off, p->len);
	}
	t_pkt_free(ctx, p);
	return 0;
}

const struct vr_os_ops test_os_ops = {
	.zalloc = t_zalloc,
	.free = t_free,
	.now_ns = t_now,
	.lock = t_lock,
	.unlock = t_lock,
	.pkt_alloc = t_pkt_alloc,
	.pkt_free = t_pkt_free,
	.tx = t_tx,
};

static void *flow_mem;

void router_setup(struct vr_router *r, uint32_t nflows)
{
	struct vr_config cfg = {.max_vifs = 16, .max_nhs = 64, .max_vrfs = 8, .max_labels = 1024};

	memset(&tos, 0, sizeof(tos));
	if (nflows) {
		cfg.flow_mem_len = sizeof(struct vr_flow_shm_hdr) + (size_t)nflows * 128;
		flow_mem = calloc(1, cfg.flow_mem_len);
		cfg.flow_mem = flow_mem;
	}
	if (vr_router_init(r, &test_os_ops, NULL, &cfg)) {
		fprintf(stderr, "router init failed\n");
		exit(2);
	}
}

void router_teardown(struct vr_router *r)
{
	vr_router_fini(r);
	free(flow_mem);
	flow_mem = NULL;
	if (tos.live_pkts)
		fprintf(stderr, "leaked %ld packets\n", tos.live_pkts);
}

void rx_frame(struct vr_router *r, uint32_t vif, const uint8_t *data, uint32_t len)
{
	struct vr_pkt *p = t_pkt_alloc(NULL, len);

	memcpy(p->buf + p->off, data, len);
	vr_rx(r, vif, p);
}

static uint8_t reply_buf[VR_MSG_MAX];

int req_reply(struct vr_router *r, struct vr_msg *m, struct vr_msg *rep)
{
	static uint8_t in[VR_MSG_MAX];
	int n = vr_msg_encode(m, in, sizeof(in)), rn;

	if (n < 0) {
		fprintf(stderr, "encode failed %d\n", n);
		exit(2);
	}
	rn = vr_msg_handle(r, in, (size_t)n, reply_buf, sizeof(reply_buf));
	if (rn < (int)VR_MSG_HDR_LEN) {
		fprintf(stderr, "no reply %d\n", rn);
		exit(2);
	}
	if (vr_msg_parse(reply_buf, vr_get_be32(reply_buf + 12), rep)) {
		fprintf(stderr, "bad reply\n");
		exit(2);
	}
	return (int)(int64_t)rep->a[VR_A_RESULT].num;
}

int req(struct vr_router *r, struct vr_msg *m)
{
	struct vr_msg rep;

	return req_reply(r, m, &rep);
}

void ip4(const char *s, uint8_t *out)
{
	if (inet_pton(AF_INET, s, out) != 1)
		abort();
}

void ip6(const char *s, uint8_t *out)
{
	if (inet_pton(AF_INET6, s, out) != 1)
		abort();
}

/* Ethernet and a 20-byte IPv4 header for an l4len-byte payload of proto; returns
 * the pseudo-header sum of the L4 checksum. */
static uint32_t eth_ip4(uint8_t *b, const uint8_t *dmac, const uint8_t *smac, const char *sip,
			const char *dip, uint8_t proto, uint32_t l4len)
{
	uint8_t *ip = b + 14;
	uint32_t sum = 0;

	memcpy(b, dmac, 6);
	memcpy(b + 6, smac, 6);
	vr_put_be16(b + 12, 0x0800);
	memset(ip, 0, 20);
	ip[0] = 0x45;
	vr_put_be16(ip + 2, (uint16_t)(20 + l4len));
	ip[8] = 64;
	ip[9] = proto;
	ip4(sip, ip + 12);
	ip4(dip, ip + 16);
	vr_put_be16(ip + 10, vr_csum(ip, 20, 0));
	for (int i = 0; i < 8; i += 2)
		sum += vr_get_be16(ip + 12 + i);
	return sum + proto + l4len;
}

uint32_t build_udp4(uint8_t *b, const uint8_t *dmac, const uint8_t *smac, const char *sip,
		    const char *dip, uint16_t sport, uint16_t dport, const uint8_t *payload,
		    uint32_t plen)
{
	uint8_t *u = b + 14 + 20;
	uint32_t sum = eth_ip4(b, dmac, smac, sip, dip, 17, 8 + plen);

	vr_put_be16(u, sport);
	vr_put_be16(u + 2, dport);
	vr_put_be16(u + 4, (uint16_t)(8 + plen));
	vr_put_be16(u + 6, 0);
	memcpy(u + 8, payload, plen);
	vr_put_be16(u + 6, vr_csum(u, 8 + plen, sum));
	return 14 + 28 + plen;
}

uint32_t build_tcp4(uint8_t *b, const uint8_t *dmac, const uint8_t *smac, const char *sip,
		    const char *dip, uint16_t sport, uint16_t dport, const uint8_t *payload,
		    uint32_t plen)
{
	uint8_t *t = b + 14 + 20;
	uint32_t sum = eth_ip4(b, dmac, smac, sip, dip, 6, 20 + plen);

	memset(t, 0, 20);
	vr_put_be16(t, sport);
	vr_put_be16(t + 2, dport);
	vr_put_be32(t + 4, 1000);
	t[12] = 0x50; /* a 20-byte header */
	t[13] = 0x18; /* PSH, ACK */
	vr_put_be16(t + 14, 65535);
	memcpy(t + 20, payload, plen);
	vr_put_be16(t + 16, vr_csum(t, 20 + plen, sum));
	return 14 + 40 + plen;
}

uint32_t build_tcp6(uint8_t *b, const uint8_t *dmac, const uint8_t *smac, const char *sip,
		    const char *dip, uint16_t sport, uint16_t dport)
{
	uint8_t *ip = b + 14, *t = ip + 40;

	memcpy(b, dmac, 6);
	memcpy(b + 6, smac, 6);
	vr_put_be16(b + 12, 0x86dd);
	memset(ip, 0, 60);
	ip[0] = 0x60;
	vr_put_be16(ip + 4, 20);
	ip[6] = 6;
	ip[7] = 64;
	ip6(sip, ip + 8);
	ip6(dip, ip + 24);
	vr_put_be16(t, sport);
	vr_put_be16(t + 2, dport);
	t[12] = 0x50;
	t[13] = 0x02; /* SYN */
	return 14 + 40 + 20;
}

void add_vif(struct vr_router *r, uint32_t idx, uint8_t type, uint32_t vrf, uint32_t flags,
	     const uint8_t *mac, const char *ip)
{
	static uint8_t addr[16 * 16];
	struct vr_msg m;

	vr_msg_init(&m, VR_OP_ADD, VR_OBJ_VIF, 0, idx);
	vr_msg_put_num(&m, VR_A_VIF_IDX, idx);
	vr_msg_put_num(&m, VR_A_VIF_TYPE, type);
	vr_msg_put_num(&m, VR_A_VIF_VRF, vrf);
	vr_msg_put_num(&m, VR_A_VIF_FLAGS, flags);
	if (mac)
		vr_msg_put_bytes(&m, VR_A_VIF_MAC, mac, 6);
	if (ip) {
		ip4(ip, addr + 16 * idx);
		vr_msg_put_bytes(&m, VR_A_VIF_IP, addr + 16 * idx, 4);
	}
	if (req(r, &m)) {
		fprintf(stderr, "add_vif %u failed\n", idx);
		exit(2);
	}
}

void add_nh_encap(struct vr_router *r, uint32_t id, uint32_t vrf, uint32_t oif,
		  const uint8_t *dmac, uint32_t flags)
{
	struct vr_msg m;

	vr_msg_init(&m, VR_OP_ADD, VR_OBJ_NH, 0, id);
	vr_msg_put_num(&m, VR_A_NH_ID, id);
	vr_msg_put_num(&m, VR_A_NH_TYPE, VR_NH_ENCAP);
	vr_msg_put_num(&m, VR_A_NH_FLAGS, flags);
	vr_msg_put_num(&m, VR_A_NH_VRF, vrf);
	vr_msg_put_num(&m, VR_A_NH_OIF, oif);
	vr_msg_put_bytes(&m, VR_A_NH_SMAC, MAC_RTR, 6);
	vr_msg_put_bytes(&m, VR_A_NH_DMAC, dmac, 6);
	if (req(r, &m)) {
		fprintf(stderr, "add_nh_encap %u failed\n", id);
		exit(2);
	}
}

void add_nh_tunnel(struct vr_router *r, uint32_t id, uint32_t flags, const char *dip)
{
	static uint8_t sip[4], d[64][4];
	struct vr_msg m;

	ip4("198.18.0.1", sip);
	ip4(dip, d[id % 64]);
	vr_msg_init(&m, VR_OP_ADD, VR_OBJ_NH, 0, id);
	vr_msg_put_num(&m, VR_A_NH_ID, id);
	vr_msg_put_num(&m, VR_A_NH_TYPE, VR_NH_TUNNEL);
	vr_msg_put_num(&m, VR_A_NH_FLAGS, flags);
	vr_msg_put_num(&m, VR_A_NH_OIF, 0);
	vr_msg_put_bytes(&m, VR_A_NH_SMAC, MAC_FAB, 6);
	vr_msg_put_bytes(&m, VR_A_NH_DMAC, MAC_PEER, 6);
	vr_msg_put_bytes(&m, VR_A_NH_TUN_SIP, sip, 4);
	vr_msg_put_bytes(&m, VR_A_NH_TUN_DIP, d[id % 64], 4);
	if (req(r, &m)) {
		fprintf(stderr, "add_nh_tunnel %u failed\n", id);
		exit(2);
	}
}

void add_route4(struct vr_router *r, uint32_t vrf, const char *pfx, uint8_t plen, uint32_t nh,
		int label)
{
	uint8_t a[4];
	struct vr_msg m;

	ip4(pfx, a);
	vr_msg_init(&m, VR_OP_ADD, VR_OBJ_ROUTE, 0, 0);
	vr_msg_put_num(&m, VR_A_RT_VRF, vrf);
	vr_msg_put_num(&m, VR_A_RT_FAMILY, VR_AF_INET);
	vr_msg_put_bytes(&m, VR_A_RT_PREFIX, a, 4);
	vr_msg_put_num(&m, VR_A_RT_PLEN, plen);
	vr_msg_put_num(&m, VR_A_RT_NH, nh);
	if (label >= 0) {
		vr_msg_put_num(&m, VR_A_RT_LABEL, (uint32_t)label);
		vr_msg_put_num(&m, VR_A_RT_FLAGS, VR_RT_F_LABEL);
	}
	if (req(r, &m)) {
		fprintf(stderr, "add_route4 %s/%u failed\n", pfx, plen);
		exit(2);
	}
}

void add_label(struct vr_router *r, uint32_t label, uint32_t nh)
{
	struct vr_msg m;

	vr_msg_init(&m, VR_OP_ADD, VR_OBJ_LABEL, 0, 0);
	vr_msg_put_num(&m, VR_A_LBL_LABEL, label);
	vr_msg_put_num(&m, VR_A_LBL_NH, nh);
	if (req(r, &m)) {
		fprintf(stderr, "add_label %u failed\n", label);
		exit(2);
	}
}

void setup_compute(struct vr_router *r)
{
	add_vif(r, 0, VR_VIF_FABRIC, 0, 0, MAC_FAB, NULL);
	add_vif(r, 1, VR_VIF_HOST, 0, 0, MAC_FAB, "198.18.0.1");
	add_vif(r, 2, VR_VIF_AGENT, 0, 0, NULL, NULL);
	add_vif(r, 3, VR_VIF_VIRTUAL, 1, 0, MAC_VM3, NULL);
	add_vif(r, 4, VR_VIF_VIRTUAL, 1, VR_VIF_F_POLICY, MAC_VM4, NULL);
}
