/* vrouterd's offload completion (host/offload.c): partial checksums finished,
 * TCP/UDP GSO frames cut into valid segments that carry the same bytes, and
 * malformed virtio headers or frames refused without reading or writing
 * outside the frame (ASan watches). */
#include <stdlib.h>
#include <string.h>

#include "../host/offload.h"
#include "tcheck.h"

#define MAXF 70000u

static uint8_t frame[MAXF];

/* ---- an independent receiver's view: is this segment's L4 checksum right? */

static uint32_t rd16(const uint8_t *p)
{
	return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t naive_sum(const uint8_t *d, uint32_t n)
{
	uint32_t s = 0;

	for (uint32_t i = 0; i < n; i++)
		s += (i & 1) ? d[i] : (uint32_t)d[i] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return s;
}

/* l3 at off; 1 if both the IPv4 header checksum (if IPv4) and the L4 checksum verify. */
static int valid(const uint8_t *f, uint32_t l3, uint32_t len)
{
	uint8_t ph[40];
	uint32_t l4, l4len, s;
	uint8_t proto;

	if (f[l3] >> 4 == 4) {
		uint32_t ihl = (f[l3] & 15u) * 4;

		if (naive_sum(f + l3, ihl) != 0xffff || rd16(f + l3 + 2) != len - l3)
			return 0;
		l4 = l3 + ihl;
		proto = f[l3 + 9];
		memcpy(ph, f + l3 + 12, 8);
		l4len = len - l4;
		ph[8] = 0, ph[9] = proto, ph[10] = (uint8_t)(l4len >> 8), ph[11] = (uint8_t)l4len;
		s = naive_sum(ph, 12);
	} else {
		if (rd16(f + l3 + 4) != len - l3 - 40)
			return 0;
		l4 = l3 + 40;
		proto = f[l3 + 6];
		l4len = len - l4;
		memcpy(ph, f + l3 + 8, 32);
		ph[32] = 0, ph[33] = 0, ph[34] = (uint8_t)(l4len >> 8), ph[35] = (uint8_t)l4len;
		ph[36] = 0, ph[37] = 0, ph[38] = 0, ph[39] = proto;
		s = naive_sum(ph, 40);
	}
	if (proto == 17 && rd16(f + l4 + 4) != l4len)
		return 0;
	s += naive_sum(f + l4, l4len);
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return s == 0xffff;
}

/* ---- frames as a VM's kernel hands them over */

static const uint8_t mac_hdr[12] = {2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1};

/* Ethernet (+ VLAN), IPv4 or IPv6, TCP (tcp_opts bytes of options) or UDP,
 * payload of n bytes (i * 7 + 3); L4 checksum field = the pseudo-header sum, as
 * CHECKSUM_PARTIAL leaves it.  Returns the frame length; *l3 the IP offset. */
static uint32_t make(int v6, int vlan, int proto, uint32_t tcp_opts, uint32_t n, uint32_t *l3p)
{
	uint32_t l3 = 14 + (vlan ? 4 : 0), l4, hl, len, l4len;
	uint8_t *f = frame;

	memset(f, 0, MAXF);
	memcpy(f, mac_hdr, 12);
	if (vlan) {
		f[12] = 0x81, f[13] = 0, f[14] = 0, f[15] = 5;
	}
	f[l3 - 2] = v6 ? 0x86 : 0x08;
	f[l3 - 1] = v6 ? 0xdd : 0x00;
	l4 = l3 + (v6 ? 40 : 20);
	hl = proto == 6 ? 20 + tcp_opts : 8;
	len = l4 + hl + n;
	l4len = hl + n;
	if (v6) {
		f[l3] = 0x60;
		f[l3 + 4] = (uint8_t)((len - l3 - 40) >> 8), f[l3 + 5] = (uint8_t)(len - l3 - 40);
		f[l3 + 6] = (uint8_t)proto, f[l3 + 7] = 64;
		f[l3 + 8] = 0x20, f[l3 + 9] = 0x01, f[l3 + 23] = 1; /* 2001::1 */
		f[l3 + 24] = 0x20, f[l3 + 25] = 0x01, f[l3 + 39] = 2;
	} else {
		f[l3] = 0x45;
		f[l3 + 2] = (uint8_t)((len - l3) >> 8), f[l3 + 3] = (uint8_t)(len - l3);
		f[l3 + 4] = 0xff, f[l3 + 5] = 0xfe; /* id: wraps during the segments */
		f[l3 + 6] = 0x40;                  /* DF */
		f[l3 + 8] = 64, f[l3 + 9] = (uint8_t)proto;
		f[l3 + 12] = 198, f[l3 + 13] = 18, f[l3 + 14] = 10, f[l3 + 15] = 11;
		f[l3 + 16] = 198, f[l3 + 17] = 18, f[l3 + 18] = 10, f[l3 + 19] = 12;
	}
	f[l4] = 0x9c, f[l4 + 1] = 0x40, f[l4 + 2] = 0x1f, f[l4 + 3] = 0x90;
	if (proto == 6) {
		f[l4 + 4] = 0xff, f[l4 + 5] = 0xff, f[l4 + 6] = 0xf0, f[l4 + 7] = 0x00; /* seq wraps */
		f[l4 + 12] = (uint8_t)(((20 + tcp_opts) / 4) << 4);
		f[l4 + 13] = 0x80 | 0x10 | 0x08 | 0x01; /* CWR ACK PSH FIN */
		f[l4 + 14] = 0xfa;
		for (uint32_t i = 0; i < tcp_opts; i++)
			f[l4 + 20 + i] = i + 1 < tcp_opts ? 1 : 0; /* NOPs, then end of list */
	} else {
		f[l4 + 4] = (uint8_t)(l4len >> 8), f[l4 + 5] = (uint8_t)l4len;
	}
	for (uint32_t i = 0; i < n; i++)
		f[l4 + hl + i] = (uint8_t)(i * 7 + 3);
	{
		/* the pseudo-header sum, folded, not complemented */
		uint8_t ph[40];
		uint32_t s, at = l4 + (proto == 6 ? 16 : 6);

		if (v6) {
			memcpy(ph, f + l3 + 8, 32);
			memset(ph + 32, 0, 8);
			ph[34] = (uint8_t)(l4len >> 8), ph[35] = (uint8_t)l4len, ph[39] = (uint8_t)proto;
			s = naive_sum(ph, 40);
		} else {
			memcpy(ph, f + l3 + 12, 8);
			ph[8] = 0, ph[9] = (uint8_t)proto;
			ph[10] = (uint8_t)(l4len >> 8), ph[11] = (uint8_t)l4len;
			s = naive_sum(ph, 12);
		}
		f[at] = (uint8_t)(s >> 8), f[at + 1] = (uint8_t)s;
	}
	*l3p = l3;
	return len;
}

static void test_csum(void)
{
	uint32_t l3, len;
	uint8_t copy[2000];

	for (int v6 = 0; v6 < 2; v6++)
		for (int proto = 6; proto <= 17; proto += 11)
			for (uint32_t n = 0; n < 40; n += 13) { /* odd and even lengths */
				uint32_t l4;

				len = make(v6, 0, proto, 0, n, &l3);
				l4 = l3 + (v6 ? 40 : 20);
				if (!v6) /* make() leaves the IPv4 header checksum to the test */
					frame[l3 + 10] = 0, frame[l3 + 11] = 0,
					frame[l3 + 10] = (uint8_t)(~naive_sum(frame + l3, 20) >> 8),
					frame[l3 + 11] = (uint8_t)~naive_sum(frame + l3, 20);
				CHECK(!valid(frame, l3, len));
				CHECK_EQ(off_csum_finish(frame, len, l4, proto == 6 ? 16 : 6), OFF_OK);
				CHECK(valid(frame, l3, len));
			}
	/* offsets outside the frame: refused, frame untouched */
	len = make(0, 0, 6, 0, 100, &l3);
	memcpy(copy, frame, len);
	CHECK_EQ(off_csum_finish(frame, len, len, 0), OFF_E_CSUM);
	CHECK_EQ(off_csum_finish(frame, len, len + 5, 0), OFF_E_CSUM);
	CHECK_EQ(off_csum_finish(frame, len, 34, len - 34 - 1), OFF_E_CSUM);
	CHECK_EQ(off_csum_finish(frame, len, 34, len - 34), OFF_E_CSUM);
	CHECK_EQ(off_csum_finish(frame, len, 34, 0xffff), OFF_E_CSUM);
	CHECK_EQ(off_csum_finish(frame, len, 0xffff, 16), OFF_E_CSUM);
	CHECK_EQ(off_csum_finish(frame, 0, 0, 0), OFF_E_CSUM);
	CHECK(!memcmp(copy, frame, len));
	CHECK_EQ(off_csum_finish(frame, len, 34, len - 34 - 2), OFF_OK); /* last two bytes */
	/* UDP: a sum that comes out zero is sent as 0xffff */
	{
		uint8_t u[8] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};

		u[4] = 0xff, u[5] = 0xff; /* ones' complement sum 0xffff -> checksum 0 */
		CHECK_EQ(off_csum_finish(u, 8, 0, 6), OFF_OK);
		CHECK_EQ(rd16(u + 6), 0xffff);
	}
}

/* Cut the frame in make()'s buffer and check every segment against it. */
static void check_cut(const struct off_vnet *h, uint32_t len, uint32_t l3, uint32_t mtu,
		      uint32_t want_mss, uint32_t want_nseg)
{
	struct off_gso_plan pl;
	uint8_t *orig = malloc(len), *payload = malloc(len);
	uint32_t got = 0, l4;

	memcpy(orig, frame, len);
	CHECK_EQ(off_gso_plan(frame, len, h, mtu, 9216, &pl), OFF_OK);
	CHECK_EQ(pl.mss, want_mss);
	CHECK_EQ(pl.nseg, want_nseg);
	l4 = pl.l4;
	for (uint32_t i = 0; i < pl.nseg; i++) {
		uint8_t *seg = malloc(pl.hlen + pl.mss); /* exactly the room promised */
		uint32_t n = off_gso_build(frame, &pl, i, seg);

		CHECK(n > pl.hlen || (pl.paylen == 0 && n == pl.hlen));
		CHECK(n - pl.hlen <= want_mss);
		CHECK(i + 1 == pl.nseg || n - pl.hlen == want_mss);
		CHECK(valid(seg, l3, n));
		CHECK(!memcmp(seg, orig, l3)); /* Ethernet and VLAN as they were */
		memcpy(payload + got, seg + pl.hlen, n - pl.hlen);
		got += n - pl.hlen;
		if (orig[l3] >> 4 == 4)
			CHECK_EQ(rd16(seg + l3 + 4), (0xfffe + i) & 0xffff);
		if (pl.proto == 6) {
			uint32_t seq = (uint32_t)rd16(seg + l4 + 4) << 16 | rd16(seg + l4 + 6);
			uint8_t fl = seg[l4 + 13];

			CHECK_EQ(seq, (uint32_t)(0xfffff000u + i * want_mss));
			CHECK_EQ(!!(fl & 0x80), i == 0);             /* CWR first */
			CHECK_EQ(!!(fl & 0x09), i + 1 == pl.nseg);   /* FIN, PSH last */
			CHECK_EQ(fl & 0x09, i + 1 == pl.nseg ? 0x09 : 0);
			CHECK(fl & 0x10);                            /* ACK on all */
			CHECK(!memcmp(seg + l4 + 8, orig + l4 + 8, 4)); /* ack number */
		}
		free(seg);
	}
	CHECK_EQ(got, pl.paylen);
	CHECK(!memcmp(payload, orig + pl.hlen, got));
	CHECK(!memcmp(orig, frame, len)); /* the input is read only */
	free(orig);
	free(payload);
}

static void test_gso(void)
{
	struct off_vnet h = {OFF_F_NEEDS_CSUM, OFF_GSO_TCPV4, 0, 1448, 34, 16};
	uint32_t l3, len;

	/* 10000 bytes in 1448-byte segments: 6 full and 1312 left */
	len = make(0, 0, 6, 0, 10000, &l3);
	check_cut(&h, len, l3, 0, 1448, 7);
	/* the vif's MTU is smaller than what the VM's segments would be */
	len = make(0, 0, 6, 12, 10000, &l3);
	h.csum_start = 34;
	check_cut(&h, len, l3, 1400, 1400 - 20 - 32, 8);
	/* a 64 KiB send; the last segment exactly full; ECN flag in gso_type */
	h.gso_type = OFF_GSO_TCPV4 | OFF_GSO_ECN;
	len = make(0, 0, 6, 0, 1448 * 45, &l3);
	check_cut(&h, len, l3, 1500, 1448, 45);
	/* a VLAN tag */
	h.gso_type = OFF_GSO_TCPV4, h.csum_start = 38;
	len = make(0, 1, 6, 0, 3000, &l3);
	check_cut(&h, len, l3, 0, 1448, 3);
	/* IPv6 */
	h = (struct off_vnet){OFF_F_NEEDS_CSUM, OFF_GSO_TCPV6, 0, 1428, 54, 16};
	len = make(1, 0, 6, 12, 5000, &l3);
	check_cut(&h, len, l3, 1500, 1428, 4);
	/* GRO'd on a fabric: no NEEDS_CSUM, checksum field anything */
	h = (struct off_vnet){2, OFF_GSO_TCPV4, 0, 1448, 0, 0};
	len = make(0, 0, 6, 0, 2000, &l3);
	frame[34 + 16] ^= 0x55;
	check_cut(&h, len, l3, 0, 1448, 2);
	/* no payload at all: one segment */
	h = (struct off_vnet){OFF_F_NEEDS_CSUM, OFF_GSO_TCPV4, 0, 1448, 34, 16};
	len = make(0, 0, 6, 0, 0, &l3);
	check_cut(&h, len, l3, 0, 1448, 1);
	/* UDP segmentation: datagrams keep gso_size whatever the MTU */
	h = (struct off_vnet){OFF_F_NEEDS_CSUM, OFF_GSO_UDP_L4, 0, 1000, 34, 6};
	len = make(0, 0, 17, 0, 3500, &l3);
	check_cut(&h, len, l3, 576, 1000, 4);
	h.csum_start = 54;
	len = make(1, 0, 17, 0, 2001, &l3);
	check_cut(&h, len, l3, 0, 1000, 3);
}

#define refused(h, len, max_len, want) refused_at(__LINE__, h, len, max_len, want)
static void refused_at(int line, const struct off_vnet *h, uint32_t len, uint32_t max_len,
		       enum off_err want)
{
	struct off_gso_plan pl;
	uint8_t *copy = malloc(len + 1);

	memcpy(copy, frame, len); /* exactly len bytes: ASan catches a read past them */
	if (off_gso_plan(copy, len, h, 1500, max_len, &pl) != want)
		fprintf(stderr, "line %d: not refused as expected\n", line);
	CHECK_EQ(off_gso_plan(copy, len, h, 1500, max_len, &pl), want);
	free(copy);
}

static void test_malformed(void)
{
	struct off_vnet good = {OFF_F_NEEDS_CSUM, OFF_GSO_TCPV4, 0, 1448, 34, 16}, h;
	uint32_t l3, len = make(0, 0, 6, 0, 3000, &l3);
	struct off_gso_plan pl;

	h = good, h.gso_size = 0;
	refused(&h, len, 9216, OFF_E_GSO);
	for (unsigned t = 0; t < 256; t++) { /* only TCPv4/TCPv6/UDP_L4 (+ECN) are known */
		h = good, h.gso_type = (uint8_t)t;
		if ((t & 0x7f) != OFF_GSO_TCPV4 && (t & 0x7f) != OFF_GSO_TCPV6 &&
		    (t & 0x7f) != OFF_GSO_UDP_L4)
			refused(&h, len, 9216, OFF_E_GSO);
	}
	h = good, h.gso_type = OFF_GSO_TCPV6; /* an IPv4 frame */
	refused(&h, len, 9216, OFF_E_HDR);
	h = good, h.gso_type = OFF_GSO_UDP_L4; /* carrying TCP */
	refused(&h, len, 9216, OFF_E_HDR);
	h = good, h.csum_start = 35;
	refused(&h, len, 9216, OFF_E_CSUM);
	h = good, h.csum_offset = 6;
	refused(&h, len, 9216, OFF_E_CSUM);
	h = good, h.csum_start = 0xffff, h.csum_offset = 0xffff;
	refused(&h, len, 9216, OFF_E_CSUM);
	refused(&good, len, 54, OFF_E_GSO); /* no room for a segment */
	/* every truncation of the frame */
	for (uint32_t n = 0; n < len; n++)
		refused(&good, n, 9216, OFF_E_HDR);
	/* header fields that point beyond the frame or make no sense */
	frame[14] = 0x44; /* ihl 4 */
	refused(&good, len, 9216, OFF_E_HDR);
	frame[14] = 0x4f; /* ihl 15: TCP would start at 74, csum_start says 34 */
	refused(&good, len, 9216, OFF_E_CSUM);
	frame[14] = 0x45;
	frame[16] = 0xff, frame[17] = 0xff; /* IP length beyond the frame */
	refused(&good, len, 9216, OFF_E_HDR);
	len = make(0, 0, 6, 0, 3000, &l3);
	frame[20] = 0x20; /* more fragments */
	refused(&good, len, 9216, OFF_E_HDR);
	len = make(0, 0, 6, 0, 3000, &l3);
	frame[34 + 12] = 0x40; /* TCP data offset 4 */
	refused(&good, len, 9216, OFF_E_HDR);
	frame[34 + 12] = 0xf0; /* 60 bytes of TCP header in a 40-byte IP packet */
	frame[16] = 0, frame[17] = 40;
	refused(&good, len, 9216, OFF_E_HDR);
	len = make(0, 0, 6, 0, 3000, &l3);
	frame[12] = 0x88, frame[13] = 0x47; /* not IP */
	refused(&good, len, 9216, OFF_E_HDR);
	/* IPv6: payload length beyond the frame, an extension header running over */
	h = (struct off_vnet){OFF_F_NEEDS_CSUM, OFF_GSO_TCPV6, 0, 1428, 54, 16};
	len = make(1, 0, 6, 0, 3000, &l3);
	frame[18] = 0xff;
	refused(&h, len, 9216, OFF_E_HDR);
	len = make(1, 0, 6, 0, 1000, &l3);
	frame[20] = 60;       /* destination options ... */
	frame[54 + 1] = 0xff; /* ... 2 KiB long in a 1 KiB packet */
	frame[54] = 6;
	refused(&h, len, 9216, OFF_E_HDR);
	frame[54 + 1] = 0; /* 8 bytes, then TCP: accepted (csum_start 62) */
	frame[54 + 12 + 8] = 0x50;
	h.csum_start = 62;
	CHECK_EQ(off_gso_plan(frame, len, &h, 0, 9216, &pl), OFF_OK);
	CHECK_EQ(pl.l4, 62);
	/* UDP datagrams bigger than a segment may be */
	h = (struct off_vnet){OFF_F_NEEDS_CSUM, OFF_GSO_UDP_L4, 0, 9200, 34, 6};
	len = make(0, 0, 17, 0, 20000, &l3);
	refused(&h, len, 9216, OFF_E_GSO);
}

/* Random damage to valid frames and headers: whatever is accepted cuts into
 * segments that fit the promised room and carry valid checksums. */
static void test_random(void)
{
	uint32_t l3, accepted = 0;

	srand(7);
	for (int k = 0; k < 20000; k++) {
		int v6 = rand() & 1, proto = rand() % 3 ? 6 : 17;
		uint32_t len = make(v6, rand() % 4 == 0, proto, (uint32_t)(rand() % 3) * 4,
				    (uint32_t)rand() % 6000, &l3);
		struct off_vnet h = {OFF_F_NEEDS_CSUM,
				     proto == 17 ? OFF_GSO_UDP_L4 : v6 ? OFF_GSO_TCPV6 : OFF_GSO_TCPV4,
				     0, (uint16_t)(1 + rand() % 2000), (uint16_t)(l3 + (v6 ? 40 : 20)),
				     proto == 6 ? 16 : 6};
		struct off_gso_plan pl;
		uint8_t *copy;

		for (int e = 0, edits = rand() % 4; e < edits; e++) {
			switch (rand() % 4) {
			case 0:
				frame[(uint32_t)rand() % (l3 + 60)] = (uint8_t)rand();
				break;
			case 1:
				len = (uint32_t)rand() % (len + 1);
				break;
			case 2:
				h.csum_start = (uint16_t)rand();
				break;
			default:
				h.gso_size = (uint16_t)rand();
			}
		}
		copy = malloc(len ? len : 1);
		memcpy(copy, frame, len);
		if (off_gso_plan(copy, len, &h, 1500, 9216, &pl) == OFF_OK) {
			accepted++;
			CHECK(pl.hlen + pl.mss <= 9216 && pl.nseg >= 1);
			for (uint32_t i = 0; i < pl.nseg && i < 50; i++) {
				uint8_t *seg = malloc(pl.hlen + pl.mss);
				uint32_t n = off_gso_build(copy, &pl, i, seg);

				CHECK(n <= pl.hlen + pl.mss);
				if (pl.l3 == l3 && n >= pl.l4 + 20)
					CHECK(valid(seg, pl.l3, n));
				free(seg);
			}
		}
		if (len > l3 + 20 && h.csum_start < len)
			off_csum_finish(copy, len, h.csum_start, (uint32_t)rand() % 40);
		free(copy);
	}
	CHECK(accepted > 5000); /* the damage leaves many frames valid: both paths ran */
	printf("random: %u of 20000 accepted\n", accepted);
}

int main(void)
{
	test_csum();
	test_gso();
	test_malformed();
	test_random();
	T_DONE("test_offload");
}
