/*
 * Microbenchmarks of dp-core and the control socket (not tests).
 *   vrbench flow [N]         inserts/s and lookups/s with N flows (default 524288)
 *   vrbench route [N]        LPM ns/lookup and forwarding ns/packet with N routes
 *   vrbench msg SOCKET [N]   route adds/s through a running vrouterd
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vr_core.h"
#include "vr_util.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 88172645463325252ull;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)rng;
}

static void *b_zalloc(void *c, size_t n)
{
	(void)c;
	return calloc(1, n);
}

static void b_free(void *c, void *p)
{
	(void)c;
	free(p);
}

static uint64_t b_now(void *c)
{
	(void)c;
	return 0;
}

static void b_lock(void *c)
{
	(void)c;
}

static struct vr_pkt *b_pkt_alloc(void *c, uint32_t len)
{
	struct vr_pkt *p = malloc(sizeof(*p) + VR_PKT_HEADROOM + 2048);

	(void)c;
	p->buf = (uint8_t *)(p + 1);
	p->size = VR_PKT_HEADROOM + 2048;
	p->off = VR_PKT_HEADROOM;
	p->len = len;
	return p;
}

static void b_pkt_free(void *c, struct vr_pkt *p)
{
	(void)c;
	free(p);
}

static uint64_t tx_count;

static int b_tx(void *c, uint32_t v, uint32_t o, struct vr_pkt *p)
{
	(void)v;
	(void)o;
	tx_count++;
	b_pkt_free(c, p);
	return 0;
}

static const struct vr_os_ops ops = {b_zalloc, b_free, b_now, b_lock, b_lock,
				     b_pkt_alloc, b_pkt_free, b_tx};

static void key_of(struct vr_flow_key *k, uint32_t i)
{
	memset(k, 0, sizeof(*k));
	k->vrf = 1 + i % 16;
	vr_put_be32(k->sip, 0xc6120000u | (i & 0xffff));
	vr_put_be32(k->dip, 0xc6130000u | (i >> 16));
	k->proto = 6;
	k->sport = (uint16_t)(i * 7);
	k->dport = 80;
}

static int bench_flow(uint32_t n)
{
	struct vr_config cfg = {0};
	struct vr_router r;
	struct vr_flow_key k;
	uint32_t slots = 1, failed = 0, found = 0, *order;
	double t0, t1, t2;
	int created;

	while (slots < 2 * n) /* the table at most half full */
		slots *= 2;
	cfg.flow_mem_len = sizeof(struct vr_flow_shm_hdr) + (size_t)slots * 128;
	cfg.flow_mem = calloc(1, cfg.flow_mem_len);
	if (!cfg.flow_mem || vr_router_init(&r, &ops, NULL, &cfg))
		return 1;
	order = malloc(n * sizeof(*order));
	for (uint32_t i = 0; i < n; i++)
		order[i] = i;
	for (uint32_t i = n - 1; i > 0; i--) {
		uint32_t j = rnd() % (i + 1), t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	t0 = now();
	for (uint32_t i = 0; i < n; i++) {
		key_of(&k, i);
		if (vr_flow_insert(&r, &k, &created) == VR_FLOW_NONE)
			failed++;
	}
	t1 = now();
	for (uint32_t i = 0; i < n; i++) {
		key_of(&k, order[i]);
		found += vr_flow_find(&r, &k) != VR_FLOW_NONE;
	}
	t2 = now();
	printf("flow: %u flows in %u slots: %.2f M inserts/s (%u refused), "
	       "%.2f M lookups/s (%u found)\n",
	       n, slots, n / (t1 - t0) / 1e6, failed, n / (t2 - t1) / 1e6, found);
	vr_router_fini(&r);
	free(cfg.flow_mem);
	free(order);
	return 0;
}

static int bench_route(uint32_t n)
{
	static const uint8_t mac[6] = {2, 0, 0, 0, 0, 1};
	struct vr_config cfg = {.max_nhs = 64, .max_vrfs = 4, .max_vifs = 8};
	struct vr_router r;
	struct vr_vrf *v;
	struct vr_rt_val val = {.nh = 10, .label = 100, .flags = VR_RT_F_LABEL};
	uint32_t lookups = 10000000, hits = 0, *addrs;
	double t0, t1, t2;
	uint8_t frame[98];

	if (vr_router_init(&r, &ops, NULL, &cfg))
		return 1;
	v = vr_vrf_get(&r, 1, 1);
	for (uint32_t i = 0; i < n; i++) {
		uint8_t p[4];
		unsigned plen = 16 + rnd() % 17;
		uint32_t a = rnd() & (plen == 32 ? ~0u : ~(~0u >> plen));
		vr_put_be32(p, a);
		vr_lpm_add(&r, &v->v4, p, plen, &val);
	}
	addrs = malloc(65536 * sizeof(*addrs));
	for (uint32_t i = 0; i < 65536; i++)
		addrs[i] = rnd();
	t0 = now();
	for (uint32_t i = 0; i < lookups; i++) {
		uint8_t q[4];
		vr_put_be32(q, addrs[i & 0xffff]);
		hits += vr_lpm_lookup(&v->v4, q) != NULL;
	}
	t1 = now();
	printf("route: %u random IPv4 routes (/16../32 anywhere): %.1f ns per LPM lookup "
	       "(%u%% matched)\n",
	       v->v4.count, (t1 - t0) * 1e9 / lookups, (unsigned)((uint64_t)hits * 100 / lookups));

	/* The common compute case: host routes clustered in one block. */
	{
		struct vr_vrf *c = vr_vrf_get(&r, 2, 1);
		for (uint32_t i = 0; i < n; i++) {
			uint8_t p[4];
			vr_put_be32(p, 0xc6120000u + i * 3); /* spread over 198.18.0.0/15 */
			vr_lpm_add(&r, &c->v4, p, 32, &val);
		}
		hits = 0;
		t0 = now();
		for (uint32_t i = 0; i < lookups; i++) {
			uint8_t q[4];
			vr_put_be32(q, 0xc6120000u + (addrs[i & 0xffff] % n) * 3);
			hits += vr_lpm_lookup(&c->v4, q) != NULL;
		}
		t1 = now();
		printf("route: %u /32 routes in 198.18.0.0/15: %.1f ns per LPM lookup (%u%% matched)\n",
		       c->v4.count, (t1 - t0) * 1e9 / lookups,
		       (unsigned)((uint64_t)hits * 100 / lookups));
	}

	/* The whole path: a VM frame routed and sent as MPLSoUDP. */
	{
		struct vr_vif *vm = calloc(1, sizeof(*vm)), *fab = calloc(1, sizeof(*fab));
		struct vr_nh *nh = calloc(1, sizeof(*nh));
		uint8_t p[4] = {0, 0, 0, 0};
		uint32_t pkts = 2000000;

		vm->idx = 3;
		vm->type = VR_VIF_VIRTUAL;
		vm->vrf = 1;
		fab->idx = 0;
		fab->type = VR_VIF_FABRIC;
		r.vifs[3] = vm;
		r.vifs[0] = fab;
		nh->id = 10;
		nh->type = VR_NH_TUNNEL;
		nh->flags = VR_NH_F_MPLS_UDP;
		r.nhs[10] = nh;
		vr_lpm_add(&r, &v->v4, p, 0, &val); /* default route: every packet forwarded */
		memset(frame, 0, sizeof(frame));
		memcpy(frame, r.router_mac, 6);
		memcpy(frame + 6, mac, 6);
		vr_put_be16(frame + 12, 0x0800);
		frame[14] = 0x45;
		vr_put_be16(frame + 16, 84);
		frame[23] = 1;
		tx_count = 0;
		t1 = now();
		for (uint32_t i = 0; i < pkts; i++) {
			struct vr_pkt *pk = b_pkt_alloc(NULL, sizeof(frame));
			vr_put_be32(frame + 30, addrs[i & 0xffff]);
			memcpy(pk->buf + pk->off, frame, sizeof(frame));
			vr_rx(&r, 3, pk);
		}
		t2 = now();
		printf("route: forwarding VM -> MPLSoUDP: %.1f ns per packet (%.2f Mpps, %lu sent)\n",
		       (t2 - t1) * 1e9 / pkts, pkts / (t2 - t1) / 1e6, (unsigned long)tx_count);
	}
	vr_router_fini(&r);
	free(addrs);
	return 0;
}

static int bench_msg(const char *path, uint32_t n)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	uint8_t in[512], out[4096], pfx[4];
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	uint32_t errors = 0;
	double t0, t1;

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		perror(path);
		return 1;
	}
	t0 = now();
	for (uint32_t i = 0; i < n; i++) {
		struct vr_msg m, rep;
		int len;
		ssize_t got;

		vr_put_be32(pfx, 0xc6120000u + i); /* 198.18.0.0 + i, /32 */
		vr_msg_init(&m, VR_OP_ADD, VR_OBJ_ROUTE, 0, i);
		vr_msg_put_num(&m, VR_A_RT_VRF, 3);
		vr_msg_put_num(&m, VR_A_RT_FAMILY, VR_AF_INET);
		vr_msg_put_bytes(&m, VR_A_RT_PREFIX, pfx, 4);
		vr_msg_put_num(&m, VR_A_RT_PLEN, 32);
		vr_msg_put_num(&m, VR_A_RT_NH, 1);
		vr_msg_put_num(&m, VR_A_RT_LABEL, 100);
		vr_msg_put_num(&m, VR_A_RT_FLAGS, VR_RT_F_LABEL);
		len = vr_msg_encode(&m, in, sizeof(in));
		if (send(fd, in, (size_t)len, 0) != len)
			return 1;
		got = recv(fd, out, sizeof(out), 0);
		if (got < 16 || vr_msg_parse(out, (size_t)got, &rep) || rep.a[VR_A_RESULT].num)
			errors++;
	}
	t1 = now();
	printf("msg: %u route adds over %s: %.0f adds/s, %.1f us each (%u errors)\n", n, path,
	       n / (t1 - t0), (t1 - t0) * 1e6 / n, errors);
	close(fd);
	return errors != 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "flow"))
		return bench_flow(argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 0) : 524288);
	if (argc >= 2 && !strcmp(argv[1], "route"))
		return bench_route(argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 0) : 100000);
	if (argc >= 3 && !strcmp(argv[1], "msg"))
		return bench_msg(argv[2], argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 0) : 100000);
	fprintf(stderr, "usage: vrbench flow [N] | route [N] | msg SOCKET [N]\n");
	return 2;
}
