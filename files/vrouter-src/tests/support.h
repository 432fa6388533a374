/* Test support: an OS layer that records transmitted frames, message and
 * packet builders. */
#ifndef SUPPORT_H
#define SUPPORT_H

#include <stdint.h>
#include <stddef.h>

#include "vr_core.h"

#define CAP_MAX 64

struct captured {
	uint32_t vif;
	uint32_t len;
	uint8_t data[2048];
};

struct test_os {
	struct captured cap[CAP_MAX];
	int ncap;
	uint64_t now;
	int fail_alloc; /* pkt_alloc fails while set */
	long live_pkts; /* allocated minus freed: must return to 0 */
};

extern const struct vr_os_ops test_os_ops;
extern struct test_os tos;

/* A router with a flow table of nflows entries (0: none). */
void router_setup(struct vr_router *r, uint32_t nflows);
void router_teardown(struct vr_router *r);

/* Receive len bytes on vif. */
void rx_frame(struct vr_router *r, uint32_t vif, const uint8_t *data, uint32_t len);

/* Send a request built in m; returns the RESULT of the (first) reply. */
int req(struct vr_router *r, struct vr_msg *m);
/* Same, and parse the first reply into *rep (its bytes live in a static buffer). */
int req_reply(struct vr_router *r, struct vr_msg *m, struct vr_msg *rep);

/* Frame builders: return the frame length. */
uint32_t build_udp4(uint8_t *buf, const uint8_t *dmac, const uint8_t *smac, const char *sip,
		    const char *dip, uint16_t sport, uint16_t dport, const uint8_t *payload,
		    uint32_t plen);
uint32_t build_tcp4(uint8_t *buf, const uint8_t *dmac, const uint8_t *smac, const char *sip,
		    const char *dip, uint16_t sport, uint16_t dport, const uint8_t *payload,
		    uint32_t plen);
uint32_t build_tcp6(uint8_t *buf, const uint8_t *dmac, const uint8_t *smac, const char *sip,
		    const char *dip, uint16_t sport, uint16_t dport);
void ip4(const char *s, uint8_t *out);
void ip6(const char *s, uint8_t *out);

/* Common setup: vif 0 fabric (198.18.0.1), 1 vhost0, 2 pkt0, 3 and 4 VMs in
 * VRF 1 (vif 4 with policy). */
void setup_compute(struct vr_router *r);
void add_vif(struct vr_router *r, uint32_t idx, uint8_t type, uint32_t vrf, uint32_t flags,
	     const uint8_t *mac, const char *ip);
void add_nh_encap(struct vr_router *r, uint32_t id, uint32_t vrf, uint32_t oif,
		  const uint8_t *dmac, uint32_t flags);
void add_nh_tunnel(struct vr_router *r, uint32_t id, uint32_t flags, const char *dip);
void add_route4(struct vr_router *r, uint32_t vrf, const char *pfx, uint8_t plen, uint32_t nh,
		int label);
void add_label(struct vr_router *r, uint32_t label, uint32_t nh);

extern const uint8_t MAC_FAB[6], MAC_PEER[6], MAC_VM3[6], MAC_VM4[6], MAC_RTR[6];

#endif
