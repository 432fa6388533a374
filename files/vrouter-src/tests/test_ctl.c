/*
 * Control messages through vr_msg_handle: golden vectors as requests, field
 * validation, get-after-add, dump paging, and random corruption of valid
 * messages (always an error reply, never a crash or a state change).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"
#include "tcheck.h"
#include "vr_util.h"

static uint8_t out[VR_MSG_MAX];

/* Handle raw bytes; return the first reply's RESULT (or 1000 if none). */
static int raw(struct vr_router *r, const uint8_t *in, size_t len)
{
	struct vr_msg rep;
	int n = vr_msg_handle(r, in, len, out, sizeof(out));

	if (n < (int)VR_MSG_HDR_LEN || vr_msg_parse(out, vr_get_be32(out + 12), &rep) ||
	    !(rep.flags & VR_MSGF_REPLY) || !vr_msg_has(&rep, VR_A_RESULT))
		return 1000;
	return (int)(int64_t)rep.a[VR_A_RESULT].num;
}

static size_t load(const char *name, uint8_t *buf)
{
	char path[256];
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "tests/vectors/%s.bin", name);
	f = fopen(path, "rb");
	if (!f) {
		perror(path);
		exit(2);
	}
	n = fread(buf, 1, VR_MSG_MAX + 100, f);
	fclose(f);
	return n;
}

static void test_vectors_as_requests(void)
{
	static const struct {
		const char *name;
		int result;
	} want[] = {
		{"vif_add", 0}, {"vif_get", 0}, {"vif_fabric_add", 0}, {"nh_add_mpls_udp", 0},
		{"nh_add_encap", 0}, {"nh_add_composite", 0}, {"route_add_v4", 0},
		{"route_add_v6", 0}, {"route_add_bridge", 0}, {"route_del_v4", 0},
		{"label_add", 0}, {"vni_add", 0}, {"flow_add", 0}, {"flow_add_nat_v6", 0},
		{"flow_dump", 0},
		/* replies are not requests */
		{"vif_reply", -VR_EPROTO}, {"dump_done", -VR_EPROTO}, {"error_reply", -VR_EPROTO},
		{"dropstats_reply", -VR_EPROTO},
		/* malformed */
		{"short_header", -VR_EMSGSIZE}, {"empty", -VR_EMSGSIZE}, {"bad_magic", -VR_EPROTO},
		{"bad_version", -VR_EPROTO}, {"bad_op", -VR_EPROTO}, {"bad_obj", -VR_EPROTO},
		{"len_too_long", -VR_EMSGSIZE}, {"attr_value_cut", -VR_EMSGSIZE},
		{"unknown_attr", -VR_EPROTO}, {"duplicate_attr", -VR_EINVAL},
		{"string_nul", -VR_EINVAL}, {"array_too_long", -VR_EINVAL},
		{"oversized", -VR_EMSGSIZE},
	};
	static uint8_t buf[VR_MSG_MAX + 100];
	struct vr_router r;

	router_setup(&r, 256);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		size_t n = load(want[i].name, buf);
		int got = raw(&r, buf, n);
		if (got != want[i].result)
			fprintf(stderr, "%s: result %d, want %d\n", want[i].name, got, want[i].result);
		CHECK_EQ(got, want[i].result);
	}
	/* The route was added and deleted; the others exist. */
	CHECK(r.vifs[3] && r.vifs[0] && r.vifs[0]->type == VR_VIF_FABRIC);
	CHECK(r.nhs[10] && r.nhs[20] && r.nhs[20]->ncomp == 2);
	CHECK_EQ(r.vrfs[1]->v4.count, 0);
	CHECK_EQ(r.vrfs[1]->v6.count, 1);
	CHECK_EQ(r.labels[100], 5);
	CHECK(r.has_tun_ip);
	router_teardown(&r);
}

static void test_validation_and_get(void)
{
	struct vr_router r;
	struct vr_msg m, rep;
	uint8_t a[16], mac[6] = {2, 0, 0, 0, 0, 9};

	router_setup(&r, 256);
	/* vif: missing type, bad type, out-of-range index, bad flags. */
	vr_msg_init(&m, VR_OP_ADD, VR_OBJ_VIF, 0, 1);
	vr_msg_put_num(&m, VR_A_VIF_IDX, 3);
	CHECK_EQ(req(&r, &m), -VR_EINVAL);
	vr_msg_put_num(&m, VR_A_VIF_TYPE, 9);
	CHECK_EQ(req(&r, &m), -VR_ERANGE);
	vr_msg_put_num(&m, VR_A_VIF_TYPE, VR_VIF_VIRTUAL);
	vr_msg_put_num(&m, VR_A_VIF_FLAGS, 0x80);
	CHECK_EQ(req(&r, &m), -VR_ERANGE);
	vr_msg_put_num(&m, VR_A_VIF_FLAGS, VR_VIF_F_POLICY);
	vr_msg_put_num(&m, VR_A_VIF_IDX, 16);
	CHECK_EQ(req(&r, &m), -VR_ERANGE);
	CHECK(r.vifs[3] == NULL);
	vr_msg_put_num(&m, VR_A_VIF_IDX, 3);
	vr_msg_put_num(&m, VR_A_VIF_VRF, 2);
	vr_msg_put_bytes(&m, VR_A_VIF_MAC, mac, 6);
	vr_msg_put_bytes(&m, VR_A_VIF_NAME, "tap3", 4);
	CHECK_EQ(req(&r, &m), 0);
	vr_msg_init(&m, VR_OP_GET, VR_OBJ_VIF, 0, 2);
	vr_msg_put_num(&m, VR_A_VIF_IDX, 3);
	CHECK_EQ(req_reply(&r, &m, &rep), 0);
	CHECK_EQ(rep.seq, 2);
	CHECK_EQ(rep.a[VR_A_VIF_VRF].num, 2);
	CHECK_EQ(rep.a[VR_A_VIF_FLAGS].num, VR_VIF_F_POLICY);
	CHECK_EQ(rep.a[VR_A_VIF_MTU].num, 1500);
	CHECK(rep.a[VR_A_VIF_NAME].len == 4 && !memcmp(rep.a[VR_A_VIF_NAME].ptr, "tap3", 4));
	CHECK(!memcmp(rep.a[VR_A_VIF_MAC].ptr, mac, 6));
	vr_msg_put_num(&m, VR_A_VIF_IDX, 4);
	CHECK_EQ(req(&r, &m), -VR_ENOENT);

	/* nexthops */
	vr_msg_init(&m, VR_OP_ADD, VR_OBJ_NH, 0, 3);
	vr_msg_put_num(&m, VR_A_NH_ID, 0);
	vr_msg_put_num(&m, VR_A_NH_TYPE, VR_NH_DISCARD);
	CHECK_EQ(req(&r, &m), -VR_ERANGE); /* 0 is "none" */
	vr_msg_put_num(&m, VR_A_NH_ID, 10);
	vr_msg_put_num(&m, VR_A_NH_TYPE, VR_NH_TUNNEL);
	vr_msg_put_num(&m, VR_A_NH_OIF, 0);
	ip4("198.18.0.1", a);
	vr_msg_put_bytes(&m, VR_A_NH_TUN_SIP, a, 4);
	vr_msg_put_bytes(&m, VR_A_NH_TUN_DIP, a, 4);
	CHECK_EQ(req(&r, &m), -VR_EINVAL); /* no tunnel kind */
	vr_msg_put_num(&m, VR_A_NH_FLAGS, VR_NH_F_VXLAN | VR_NH_F_MPLS_GRE);
	CHECK_EQ(req(&r, &m), -VR_EINVAL); /* two kinds */
	vr_msg_put_num(&m, VR_A_NH_FLAGS, VR_NH_F_VXLAN);
	ip6("2001:db8::1", a);
	vr_msg_put_bytes(&m, VR_A_NH_TUN_DIP, a, 16);
	CHECK_EQ(req(&r, &m), -VR_EINVAL); /* IPv6 underlay */
	ip4("198.18.0.2", a);
	vr_msg_put_bytes(&m, VR_A_NH_TUN_DIP, a, 4);
	CHECK_EQ(req(&r, &m), 0);
	vr_msg_init(&m, VR_OP_GET, VR_OBJ_NH, 0, 4);
	vr_msg_put_num(&m, VR_A_NH_ID, 10);
	CHECK_EQ(req_reply(&r, &m, &rep), 0);
	CHECK_EQ(rep.a[VR_A_NH_FLAGS].num, VR_NH_F_VXLAN);
	CHECK(!memcmp(rep.a[VR_A_NH_TUN_DIP].ptr, a, 4));

	/* routes: host bits, family/prefix mismatch, label flag without label. */
	vr_msg_init(&m, VR_OP_ADD, VR_OBJ_ROUTE, 0, 5);
	vr_msg_put_num(&m, VR_A_RT_VRF, 1);
	vr_msg_put_num(&m, VR_A_RT_FAMILY, VR_AF_INET);
	ip4("198.18.10.1", a);
	vr_msg_put_bytes(&m, VR_A_RT_PREFIX, a, 4);
	vr_msg_put_num(&m, VR_A_RT_PLEN, 24);
	vr_msg_put_num(&m, VR_A_RT_NH, 10);
	CHECK_EQ(req(&r, &m), -VR_EINVAL);
	vr_msg_put_num(&m, VR_A_RT_PLEN, 33);
	CHECK_EQ(req(&r, &m), -VR_ERANGE);
	vr_msg_put_num(&m, VR_A_RT_FAMILY, VR_AF_INET6);
	vr_msg_put_num(&m, VR_A_RT_PLEN, 32);
	CHECK_EQ(req(&r, &m), -VR_EINVAL);
	vr_msg_put_num(&m, VR_A_RT_FAMILY, VR_AF_INET);
	vr_msg_put_num(&m, VR_A_RT_FLAGS, VR_RT_F_LABEL);
	CHECK_EQ(req(&r, &m), -VR_EINVAL);
	vr_msg_put_num(&m, VR_A_RT_LABEL, 77);
	vr_msg_put_num(&m, VR_A_RT_VRF, 8);
	CHECK_EQ(req(&r, &m), -VR_ERANGE);
	vr_msg_put_num(&m, VR_A_RT_VRF, 1);
	CHECK_EQ(req(&r, &m), 0);
	vr_msg_init(&m, VR_OP_GET, VR_OBJ_ROUTE, 0, 6);
	vr_msg_put_num(&m, VR_A_RT_VRF, 1);
	vr_msg_put_num(&m, VR_A_RT_FAMILY, VR_AF_INET);
	vr_msg_put_bytes(&m, VR_A_RT_PREFIX, a, 4);
	vr_msg_put_num(&m, VR_A_RT_PLEN, 32);
	CHECK_EQ(req_reply(&r, &m, &rep), 0);
	CHECK_EQ(rep.a[VR_A_RT_NH].num, 10);
	CHECK_EQ(rep.a[VR_A_RT_LABEL].num, 77);
	vr_msg_put_num(&m, VR_A_RT_PLEN, 31);
	a[3] = 0;
	CHECK_EQ(req(&r, &m), -VR_ENOENT);

	/* labels, VNIs, drop stats */
	vr_msg_init(&m, VR_OP_ADD, VR_OBJ_LABEL, 0, 7);
	vr_msg_put_num(&m, VR_A_LBL_LABEL, 1024);
	vr_msg_put_num(&m, VR_A_LBL_NH, 10);
	CHECK_EQ(req(&r, &m), -VR_ERANGE);
	vr_msg_init(&m, VR_OP_DEL, VR_OBJ_VNI, 0, 8);
	vr_msg_put_num(&m, VR_A_VNI_VNI, 5);
	CHECK_EQ(req(&r, &m), -VR_ENOENT);
	vr_msg_init(&m, VR_OP_ADD, VR_OBJ_DROPSTATS, 0, 9);
	CHECK_EQ(req(&r, &m), -VR_EOPNOTSUPP);
	r.drops[VR_DROP_NO_ROUTE] = 42;
	vr_msg_init(&m, VR_OP_GET, VR_OBJ_DROPSTATS, 0, 10);
	CHECK_EQ(req_reply(&r, &m, &rep), 0);
	CHECK_EQ(vr_msg_array_len(&rep, VR_A_DS_COUNTERS), VR_DROP_MAX);
	CHECK_EQ(vr_msg_array_elem(&rep, VR_A_DS_COUNTERS, VR_DROP_NO_ROUTE), 42);
	vr_msg_init(&m, VR_OP_DEL, VR_OBJ_DROPSTATS, 0, 11);
	CHECK_EQ(req(&r, &m), 0);
	CHECK_EQ(r.drops[VR_DROP_NO_ROUTE], 0);

	/* flows: HOLD is not an agent action; reverse link set both ways. */
	{
		uint8_t s[4], d[4];
		uint32_t f1, f2;
		ip4("198.18.10.3", s);
		ip4("198.18.10.4", d);
		vr_msg_init(&m, VR_OP_ADD, VR_OBJ_FLOW, 0, 12);
		vr_msg_put_num(&m, VR_A_FL_VRF, 1);
		vr_msg_put_bytes(&m, VR_A_FL_SIP, s, 4);
		vr_msg_put_bytes(&m, VR_A_FL_DIP, d, 4);
		vr_msg_put_num(&m, VR_A_FL_PROTO, 6);
		vr_msg_put_num(&m, VR_A_FL_ACTION, VR_FLOW_HOLD);
		CHECK_EQ(req(&r, &m), -VR_ERANGE);
		vr_msg_put_num(&m, VR_A_FL_ACTION, VR_FLOW_FORWARD);
		CHECK_EQ(req_reply(&r, &m, &rep), 0);
		f1 = (uint32_t)rep.a[VR_A_FL_INDEX].num;
		vr_msg_put_bytes(&m, VR_A_FL_SIP, d, 4);
		vr_msg_put_bytes(&m, VR_A_FL_DIP, s, 4);
		vr_msg_put_num(&m, VR_A_FL_RINDEX, f1);
		CHECK_EQ(req_reply(&r, &m, &rep), 0);
		f2 = (uint32_t)rep.a[VR_A_FL_INDEX].num;
		CHECK(f1 != f2);
		CHECK_EQ(r.flows[f1].rindex, f2);
		CHECK_EQ(r.flows[f2].rindex, f1);
		vr_msg_init(&m, VR_OP_GET, VR_OBJ_FLOW, 0, 13);
		vr_msg_put_num(&m, VR_A_FL_INDEX, f2);
		CHECK_EQ(req_reply(&r, &m, &rep), 0);
		CHECK_EQ(rep.a[VR_A_FL_RINDEX].num, f1);
		CHECK(!memcmp(rep.a[VR_A_FL_SIP].ptr, d, 4));
		vr_msg_put_num(&m, VR_A_FL_INDEX, 256);
		CHECK_EQ(req(&r, &m), -VR_ERANGE);
	}
	router_teardown(&r);
}

/* Dump in small batches: every object exactly once. */
static void test_dump_paging(void)
{
	struct vr_router r;
	static uint8_t small[2500], in[256];
	static int seen[1024];
	struct vr_msg m, rep;
	uint32_t markr = 0, total = 0, batches = 0;

	router_setup(&r, 0);
	for (uint32_t l = 16; l < 16 + 300; l++)
		add_label(&r, l, 5);
	for (;;) {
		int n, off = 0, done = 0, more = 0;

		vr_msg_init(&m, VR_OP_DUMP, VR_OBJ_LABEL, 0, 99);
		vr_msg_put_num(&m, VR_A_MARKER, markr);
		n = vr_msg_encode(&m, in, sizeof(in));
		n = vr_msg_handle(&r, in, (size_t)n, small, sizeof(small));
		CHECK(n > 0);
		batches++;
		while (off < n) {
			uint32_t len = vr_get_be32(small + off + 12);
			CHECK_EQ(vr_msg_parse(small + off, len, &rep), 0);
			if (rep.flags & VR_MSGF_DONE) {
				done = 1;
				more = rep.flags & VR_MSGF_MORE;
				if (more)
					markr = (uint32_t)rep.a[VR_A_MARKER].num;
			} else {
				seen[rep.a[VR_A_LBL_LABEL].num]++;
				total++;
			}
			off += (int)len;
		}
		CHECK(done);
		if (!more || batches > 100)
			break;
	}
	CHECK(batches > 3);
	CHECK_EQ(total, 300);
	for (uint32_t l = 16; l < 16 + 300; l++)
		CHECK_EQ(seen[l], 1);
	/* Too small for any reply. */
	CHECK(vr_msg_handle(&r, in, 24, small, 10) < 0);
	router_teardown(&r);
}

/* Random corruption of every valid vector: a reply always, no crash. */
static void test_corruption(void)
{
	static const char *names[] = {"vif_add", "nh_add_composite", "route_add_v6",
				      "flow_add", "route_add_bridge", "vni_add"};
	static uint8_t base[VR_MSG_MAX + 100], buf[VR_MSG_MAX + 100];
	struct vr_router r;
	int noreply = 0;

	router_setup(&r, 64);
	srand(11);
	for (int round = 0; round < 20000; round++) {
		size_t n = load(names[round % 6], base), len = n;
		memcpy(buf, base, n);
		for (int k = 0, edits = 1 + rand() % 4; k < edits; k++) {
			switch (rand() % 3) {
			case 0:
				if (len)
					buf[(size_t)rand() % len] = (uint8_t)rand();
				break;
			case 1:
				len = (size_t)rand() % (len + 1);
				break;
			default:
				if (len + 8 < sizeof(buf))
					len += (size_t)(rand() % 8);
			}
		}
		if (rand() % 2 && len >= 16) { /* keep the length field honest sometimes */
			vr_put_be32(buf + 12, (uint32_t)len);
		}
		if (raw(&r, buf, len) == 1000)
			noreply++;
	}
	CHECK_EQ(noreply, 0);
	router_teardown(&r);
}

int main(void)
{
	test_vectors_as_requests();
	test_validation_and_get();
	test_dump_paging();
	test_corruption();
	T_DONE("test_ctl");
}
