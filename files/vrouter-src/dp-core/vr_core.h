/* dp-core: the portable forwarding core.  Public API and internal state. */
#ifndef VR_CORE_H
#define VR_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "vr_defs.h"
#include "vr_msg.h"
#include "vr_os.h"

#define VR_NAME_LEN 16
#define VR_MAX_COMPONENTS 32
#define VR_FLOW_PROBE 8      /* slots tried from the hash position */
#define VR_HOLD_PER_FLOW 4   /* packets held per flow awaiting the agent */
#define VR_HOLD_MAX 256      /* packets held in total */
#define VR_BRIDGE_BUCKETS 256
#define VR_VNI_SLOTS 4096    /* open-addressed VNI table */
#define VR_ROUTER_MAC {0x00, 0x00, 0x5e, 0x00, 0x01, 0x00}

struct vr_config {
	uint32_t max_vifs;   /* default 256 */
	uint32_t max_nhs;    /* default 16384 */
	uint32_t max_vrfs;   /* default 4096 */
	uint32_t max_labels; /* default 65536 */
	/* Flow table memory (header + entries), supplied by the OS layer so it
	 * can be shared with the agent.  Its entry count is the largest power of
	 * two that fits. */
	void *flow_mem;
	size_t flow_mem_len;
};

struct vr_vif {
	uint32_t idx;
	uint8_t type;
	uint32_t vrf;
	uint32_t flags;
	uint32_t os_idx;
	uint8_t mac[6];
	uint16_t mtu;
	uint8_t ip[16];
	uint8_t iplen;
	char name[VR_NAME_LEN];
	uint64_t rx_pkts, rx_bytes, tx_pkts, tx_bytes, drops;
};

struct vr_nh_comp {
	uint32_t nh;
	uint32_t label;
};

struct vr_nh {
	uint32_t id;
	uint8_t type;
	uint32_t flags;
	uint32_t vrf;
	uint32_t oif;
	uint8_t smac[6], dmac[6];
	uint8_t sip[4], dip[4];
	uint32_t ncomp;
	struct vr_nh_comp comp[VR_MAX_COMPONENTS];
};

/* What a route or bridge entry resolves to. */
struct vr_rt_val {
	uint32_t nh;
	uint32_t label;
	uint32_t flags;
};

struct vr_lpm_node {
	struct vr_lpm_node *child[2];
	struct vr_rt_val val;
	uint8_t valid;
};

/*
 * Lookups use a 4-bit-stride trie derived from the binary trie (which stays
 * the source of truth for get, walk and delete): each slot holds the longest
 * prefix ending at its level that covers it, so IPv4 needs at most 8
 * dependent loads instead of 32.
 */
struct vr_mb_node;
struct vr_mb_slot {
	struct vr_mb_node *child;
	const struct vr_rt_val *val;
};

struct vr_mb_node {
	struct vr_mb_slot s[16];
	uint32_t used; /* slots with a child or a value */
};

struct vr_lpm {
	struct vr_lpm_node *root;
	struct vr_mb_node *mroot;
	const struct vr_rt_val *def; /* the /0 route */
	uint32_t count;
	uint8_t bits; /* 32 or 128 */
};

struct vr_bridge_ent {
	struct vr_bridge_ent *next;
	uint8_t mac[6];
	struct vr_rt_val val;
};

struct vr_vrf {
	struct vr_lpm v4, v6;
	struct vr_bridge_ent *bridge[VR_BRIDGE_BUCKETS];
	uint32_t bridge_count;
};

struct vr_vni_slot {
	uint32_t vni; /* 0 = free (VNI 0 is not valid) */
	uint32_t vrf;
};

struct vr_held {
	struct vr_pkt *pkt;
	uint32_t flow;
	uint32_t gen;
	uint32_t vrf;
	uint32_t nh; /* 0: route in vrf; else output via nh (decap side) */
	uint32_t label;
	uint32_t in_vif;
	uint8_t l2; /* nh output mode */
};

struct vr_router {
	const struct vr_os_ops *os;
	void *os_ctx;
	struct vr_config cfg;
	struct vr_vif **vifs;
	struct vr_nh **nhs;
	struct vr_vrf **vrfs;
	uint32_t *labels; /* label -> nh id, 0 = none */
	struct vr_vni_slot vni[VR_VNI_SLOTS];
	uint32_t vni_count;
	struct vr_flow_shm_hdr *flow_hdr;
	struct vr_flow_entry *flows;
	uint32_t nflows;
	struct vr_held hold[VR_HOLD_MAX];
	uint32_t nheld;
	uint64_t drops[VR_DROP_MAX];
	uint64_t drop_total;
	/* Cached from vif adds: the special vifs and our tunnel endpoint. */
	uint32_t host_vif, fabric_vif, agent_vif; /* VR_FLOW_NONE if absent */
	uint8_t tun_ip[4];
	uint8_t has_tun_ip;
	uint16_t ip_id;
	uint8_t router_mac[6];
};

/* Lifecycle. */
int vr_router_init(struct vr_router *r, const struct vr_os_ops *os, void *os_ctx,
		   const struct vr_config *cfg);
void vr_router_fini(struct vr_router *r);

/* Packet entry point: a frame received on vif_idx.  Consumes pkt. */
void vr_rx(struct vr_router *r, uint32_t vif_idx, struct vr_pkt *pkt);

/*
 * Handle one request message.  Writes one or more reply messages to out and
 * returns their total length; negative only if out is too small for even an
 * error reply (VR_MSG_HDR_LEN + 8 bytes).
 */
int vr_msg_handle(struct vr_router *r, const uint8_t *in, size_t inlen, uint8_t *out,
		  size_t outcap);

/* ---- internal, shared between dp-core files (caller holds the lock) ---- */

/* vr_tables.c */
struct vr_vif *vr_vif_get(struct vr_router *r, uint32_t idx);
struct vr_nh *vr_nh_get(struct vr_router *r, uint32_t id);
struct vr_vrf *vr_vrf_get(struct vr_router *r, uint32_t vrf, int create);
int vr_lpm_add(struct vr_router *r, struct vr_lpm *t, const uint8_t *pfx, unsigned plen,
	       const struct vr_rt_val *v);
int vr_lpm_del(struct vr_router *r, struct vr_lpm *t, const uint8_t *pfx, unsigned plen);
const struct vr_rt_val *vr_lpm_exact(const struct vr_lpm *t, const uint8_t *pfx, unsigned plen);
const struct vr_rt_val *vr_lpm_lookup(const struct vr_lpm *t, const uint8_t *addr);
/* Visit entries in order, skipping the first `skip`; fn returns nonzero to stop. */
typedef int (*vr_lpm_fn)(void *arg, const uint8_t *pfx, unsigned plen, const struct vr_rt_val *v);
uint32_t vr_lpm_walk(const struct vr_lpm *t, uint32_t skip, vr_lpm_fn fn, void *arg);
void vr_lpm_free(struct vr_router *r, struct vr_lpm *t);
int vr_bridge_add(struct vr_router *r, struct vr_vrf *v, const uint8_t *mac,
		  const struct vr_rt_val *val);
int vr_bridge_del(struct vr_router *r, struct vr_vrf *v, const uint8_t *mac);
const struct vr_rt_val *vr_bridge_lookup(const struct vr_vrf *v, const uint8_t *mac);
int vr_vni_add(struct vr_router *r, uint32_t vni, uint32_t vrf);
int vr_vni_del(struct vr_router *r, uint32_t vni);
int vr_vni_lookup(const struct vr_router *r, uint32_t vni, uint32_t *vrf);

/* vr_flow.c */
struct vr_flow_key {
	uint32_t vrf;
	uint8_t sip[16], dip[16];
	uint16_t sport, dport; /* network order */
	uint8_t proto;
	uint8_t v6;
};
uint32_t vr_flow_hash(const struct vr_flow_key *k);
/* Returns the index or VR_FLOW_NONE. */
uint32_t vr_flow_find(struct vr_router *r, const struct vr_flow_key *k);
/* Find or create; *created tells which.  VR_FLOW_NONE if the table is full. */
uint32_t vr_flow_insert(struct vr_router *r, const struct vr_flow_key *k, int *created);
void vr_flow_remove(struct vr_router *r, uint32_t idx);
void vr_flow_key_of(const struct vr_flow_entry *e, struct vr_flow_key *k);

/* vr_pkt.c */
uint8_t *vr_pkt_data(struct vr_pkt *p);
uint8_t *vr_pkt_push(struct vr_router *r, struct vr_pkt **pp, uint32_t n); /* NULL: no room */
void vr_pkt_pull(struct vr_pkt *p, uint32_t n);
struct vr_pkt *vr_pkt_copy(struct vr_router *r, struct vr_pkt *p);
uint16_t vr_csum(const uint8_t *p, uint32_t len, uint32_t sum);
void vr_drop(struct vr_router *r, struct vr_pkt *p, unsigned reason);

/* vr_fwd.c */
void vr_nh_output(struct vr_router *r, uint32_t nh, uint32_t label, struct vr_pkt *pkt, int l2);
/* Output via nh after the egress vif's flow policy, if it has one. */
void vr_deliver(struct vr_router *r, uint32_t vrf, uint32_t nh, uint32_t label, struct vr_pkt *pkt,
		int l2, uint32_t in_vif);
uint32_t vr_frame_hash(struct vr_pkt *pkt);
void vr_vm_forward(struct vr_router *r, uint32_t vrf, struct vr_pkt *pkt, uint32_t in_vif);
void vr_route_l3(struct vr_router *r, uint32_t vrf, struct vr_pkt *pkt, uint32_t in_vif);
void vr_vif_tx(struct vr_router *r, uint32_t vif, struct vr_pkt *pkt);
void vr_hold_release(struct vr_router *r, uint32_t flow);
void vr_hold_drop(struct vr_router *r, uint32_t flow);

/* vr_tunnel.c */
int vr_tunnel_encap(struct vr_router *r, const struct vr_nh *nh, uint32_t label,
		    struct vr_pkt **pp, uint32_t hash);
void vr_fabric_rx(struct vr_router *r, struct vr_vif *vif, struct vr_pkt *pkt);

#endif
