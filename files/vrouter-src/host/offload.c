/* Checksum completion and GSO segmentation for vrouterd (see offload.h). */
#include <string.h>

#include "offload.h"

#define ETH_HLEN 14u
#define TCP_CWR 0x80u
#define TCP_PSH 0x08u
#define TCP_FIN 0x01u

static uint32_t get16(const uint8_t *p)
{
	return (uint32_t)p[0] << 8 | p[1];
}

static void put16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

uint64_t off_sum(const uint8_t *d, uint32_t len, uint64_t sum)
{
	uint32_t i;

	for (i = 0; i + 1 < len; i += 2)
		sum += get16(d + i);
	if (len & 1)
		sum += (uint32_t)d[len - 1] << 8;
	return sum;
}

uint16_t off_fold(uint64_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

enum off_err off_csum_finish(uint8_t *f, uint32_t len, uint32_t start, uint32_t offset)
{
	uint16_t c;

	if (start >= len || offset > len - start || len - start - offset < 2)
		return OFF_E_CSUM;
	c = off_fold(off_sum(f + start, len - start, 0));
	if (offset == 6 && c == 0)
		c = 0xffff; /* UDP: zero means "no checksum" */
	put16(f + start + offset, c);
	return OFF_OK;
}

/* IPv6 extension headers a segment may carry over unchanged. */
static int ipv6_skippable(uint8_t nh)
{
	return nh == 0 || nh == 43 || nh == 60;
}

/* Find the IP header and the L4 header of the protocol the GSO type names. */
static enum off_err find_l4(const uint8_t *f, uint32_t len, struct off_gso_plan *pl,
			    uint32_t *ip_end)
{
	uint32_t et, l3 = ETH_HLEN;

	if (len < ETH_HLEN)
		return OFF_E_HDR;
	et = get16(f + 12);
	if (et == 0x8100 || et == 0x88a8) { /* one VLAN tag */
		if (len < ETH_HLEN + 4)
			return OFF_E_HDR;
		et = get16(f + 16);
		l3 += 4;
	}
	pl->l3 = l3;
	if (et == 0x0800) {
		uint32_t ihl, tot;

		if (pl->ipv6 || len - l3 < 20 || f[l3] >> 4 != 4)
			return OFF_E_HDR;
		ihl = (f[l3] & 0xfu) * 4;
		tot = get16(f + l3 + 2);
		if (ihl < 20 || tot < ihl || tot > len - l3 || f[l3 + 9] != pl->proto ||
		    (get16(f + l3 + 6) & 0x3fff)) /* a fragment */
			return OFF_E_HDR;
		pl->l4 = l3 + ihl;
		*ip_end = l3 + tot;
		return OFF_OK;
	}
	if (et == 0x86dd) {
		uint32_t off = l3 + 40, plen;
		uint8_t nh;
		int n;

		if (len - l3 < 40 || f[l3] >> 4 != 6)
			return OFF_E_HDR;
		plen = get16(f + l3 + 4);
		if (plen > len - l3 - 40)
			return OFF_E_HDR;
		*ip_end = l3 + 40 + plen;
		nh = f[l3 + 6];
		for (n = 0; n < 8 && ipv6_skippable(nh); n++) {
			if (*ip_end - off < 8)
				return OFF_E_HDR;
			nh = f[off];
			off += ((uint32_t)f[off + 1] + 1) * 8;
			if (off > *ip_end)
				return OFF_E_HDR;
		}
		if (nh != pl->proto)
			return OFF_E_HDR;
		pl->ipv6 = 1;
		pl->l4 = off;
		return OFF_OK;
	}
	return OFF_E_HDR;
}

enum off_err off_gso_plan(const uint8_t *f, uint32_t len, const struct off_vnet *h, uint32_t mtu,
			  uint32_t max_len, struct off_gso_plan *pl)
{
	uint32_t ip_end, l4hdr;
	enum off_err rc;

	memset(pl, 0, sizeof(*pl));
	switch (h->gso_type & ~OFF_GSO_ECN) {
	case OFF_GSO_TCPV4:
		pl->proto = 6;
		break;
	case OFF_GSO_TCPV6:
		pl->proto = 6;
		pl->ipv6 = 1;
		break;
	case OFF_GSO_UDP_L4:
		pl->proto = 17;
		break;
	default:
		return OFF_E_GSO;
	}
	if (!h->gso_size)
		return OFF_E_GSO;
	rc = find_l4(f, len, pl, &ip_end);
	if (rc)
		return rc;
	if ((h->gso_type & ~OFF_GSO_ECN) == OFF_GSO_TCPV4 && pl->ipv6)
		return OFF_E_HDR;
	if (pl->proto == 6) {
		if (ip_end - pl->l4 < 20)
			return OFF_E_HDR;
		l4hdr = (uint32_t)(f[pl->l4 + 12] >> 4) * 4;
		if (l4hdr < 20 || l4hdr > ip_end - pl->l4)
			return OFF_E_HDR;
	} else {
		l4hdr = 8;
		if (ip_end - pl->l4 < l4hdr)
			return OFF_E_HDR;
	}
	/* The checksum the VM left undone must be the one we are about to redo. */
	if ((h->flags & OFF_F_NEEDS_CSUM) &&
	    (h->csum_start != pl->l4 || h->csum_offset != (pl->proto == 6 ? 16 : 6)))
		return OFF_E_CSUM;
	pl->hlen = pl->l4 + l4hdr;
	pl->paylen = ip_end - pl->hlen;
	pl->mss = h->gso_size;
	if (max_len <= pl->hlen)
		return OFF_E_GSO;
	if (pl->proto == 6) {
		/* TCP is a byte stream: any smaller cut is as valid. */
		uint32_t l3hdrs = pl->hlen - pl->l3;

		if (mtu > l3hdrs && mtu - l3hdrs < pl->mss)
			pl->mss = mtu - l3hdrs;
		if (max_len - pl->hlen < pl->mss)
			pl->mss = max_len - pl->hlen;
	} else if (max_len - pl->hlen < pl->mss) {
		return OFF_E_GSO; /* UDP datagrams keep the sender's size */
	}
	pl->nseg = pl->paylen ? (pl->paylen + pl->mss - 1) / pl->mss : 1;
	return OFF_OK;
}

uint32_t off_gso_build(const uint8_t *f, const struct off_gso_plan *pl, uint32_t i, uint8_t *out)
{
	uint32_t start = i * pl->mss, n = pl->paylen - start, l4len;
	uint8_t *l3 = out + pl->l3, *l4 = out + pl->l4;
	uint64_t sum;
	uint16_t c;

	if (n > pl->mss)
		n = pl->mss;
	memcpy(out, f, pl->hlen);
	memcpy(out + pl->hlen, f + pl->hlen + start, n);
	l4len = pl->hlen - pl->l4 + n;
	if (pl->ipv6) {
		put16(l3 + 4, pl->hlen - pl->l3 - 40 + n);
		sum = off_sum(l3 + 8, 32, 0);
	} else {
		uint32_t ihl = (l3[0] & 0xfu) * 4;

		put16(l3 + 2, pl->hlen - pl->l3 + n);
		put16(l3 + 4, get16(l3 + 4) + i);
		put16(l3 + 10, 0);
		put16(l3 + 10, off_fold(off_sum(l3, ihl, 0)));
		sum = off_sum(l3 + 12, 8, 0);
	}
	sum += pl->proto + (l4len >> 16) + (l4len & 0xffff);
	if (pl->proto == 6) {
		uint32_t seq = (uint32_t)get16(l4 + 4) << 16 | get16(l4 + 6);

		seq += start;
		put16(l4 + 4, seq >> 16);
		put16(l4 + 6, seq);
		if (i > 0)
			l4[13] &= (uint8_t)~TCP_CWR;
		if (i + 1 < pl->nseg)
			l4[13] &= (uint8_t)~(TCP_FIN | TCP_PSH);
		put16(l4 + 16, 0);
		c = off_fold(off_sum(l4, l4len, sum));
		put16(l4 + 16, c);
	} else {
		put16(l4 + 4, l4len);
		put16(l4 + 6, 0);
		c = off_fold(off_sum(l4, l4len, sum));
		put16(l4 + 6, c ? c : 0xffff);
	}
	return pl->hlen + n;
}
