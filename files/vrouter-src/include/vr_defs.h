/*
 * Values carried in messages and shared memory: object types, flags, drop
 * reasons, the pkt0 header and the shared flow table layout.  Only
 * compiler-provided headers.  Wire values: never renumber.
 */
#ifndef VR_DEFS_H
#define VR_DEFS_H

#include <stdint.h>

/* VR_A_VIF_TYPE */
enum vr_vif_type {
	VR_VIF_FABRIC = 1,  /* physical uplink carrying the overlay */
	VR_VIF_HOST = 2,    /* vhost0: the host's own address on the fabric */
	VR_VIF_VIRTUAL = 3, /* a VM's tap */
	VR_VIF_AGENT = 4,   /* pkt0: to and from the agent */
};

/* VR_A_VIF_FLAGS */
#define VR_VIF_F_POLICY 0x1u /* flow lookup for traffic from/to this vif */

/* VR_A_NH_TYPE */
enum vr_nh_type {
	VR_NH_DISCARD = 1,
	VR_NH_RECEIVE = 2,   /* to the host (vhost0) */
	VR_NH_ENCAP = 3,     /* to a local vif, with a new Ethernet header */
	VR_NH_TUNNEL = 4,    /* overlay to another compute */
	VR_NH_COMPOSITE = 5, /* ECMP or multicast over component nexthops */
};

/* VR_A_NH_FLAGS */
#define VR_NH_F_L2 0x01u        /* ENCAP: payload is a whole Ethernet frame */
#define VR_NH_F_MPLS_GRE 0x02u  /* TUNNEL kinds: exactly one */
#define VR_NH_F_MPLS_UDP 0x04u
#define VR_NH_F_VXLAN 0x08u
#define VR_NH_F_ECMP 0x10u      /* COMPOSITE kinds: exactly one */
#define VR_NH_F_MCAST 0x20u
#define VR_NH_F_ALL 0x3fu

/* VR_A_RT_FAMILY */
enum vr_family {
	VR_AF_INET = 1,
	VR_AF_INET6 = 2,
	VR_AF_BRIDGE = 3, /* RT_MAC instead of RT_PREFIX/RT_PLEN */
};

/* VR_A_RT_FLAGS */
#define VR_RT_F_LABEL 0x1u /* RT_LABEL is valid (MPLS label or VNI) */

/* Overlay ports and protocol numbers (IANA). */
#define VR_MPLS_UDP_PORT 6635u
#define VR_VXLAN_PORT 4789u
#define VR_GRE_PROTO_MPLS 0x8847u
#define VR_IPPROTO_GRE 47u

/* VR_A_FL_ACTION */
enum vr_flow_action {
	VR_FLOW_HOLD = 0, /* created by the datapath, waiting for the agent */
	VR_FLOW_FORWARD = 1,
	VR_FLOW_DROP = 2,
	VR_FLOW_TRAP = 3, /* every packet to the agent */
	VR_FLOW_NAT = 4,  /* forward after rewriting to the NAT fields */
};

/* VR_A_FL_FLAGS */
#define VR_FLOW_F_VALID 0x1u
#define VR_FLOW_F_IPV6 0x2u
#define VR_FLOW_F_RFLOW 0x4u /* rindex is valid */
/* dvrf is valid: after its action (forward or NAT) the packet is routed in dvrf,
 * not in the VRF it came in (a floating IP reached from another VRF on this
 * compute).  Set by FL_DVRF on add. */
#define VR_FLOW_F_VRFT 0x8u

/* Drop reasons: index into the VR_A_DS_COUNTERS array. */
#define VR_DROP_LIST(X)          \
	X(0, INVALID_PACKET)     \
	X(1, NO_VIF)             \
	X(2, NO_ROUTE)           \
	X(3, NO_NEXTHOP)         \
	X(4, DISCARD)            \
	X(5, LABEL_MISS)         \
	X(6, VNI_MISS)           \
	X(7, BRIDGE_MISS)        \
	X(8, BAD_TUNNEL)         \
	X(9, FLOW_ACTION_DROP)   \
	X(10, FLOW_TABLE_FULL)   \
	X(11, FLOW_HOLD_FULL)    \
	X(12, NO_AGENT)          \
	X(13, NO_HEADROOM)       \
	X(14, NO_MEMORY)         \
	X(15, TX_FAILED)         \
	X(16, TTL_EXCEEDED)      \
	X(17, COMPOSITE_EMPTY)   \
	X(18, FLOW_EVICTED)      \
	X(19, BAD_AGENT_PACKET)

enum vr_drop_reason {
#define VR_DROP_ENUM(n, name) VR_DROP_##name = n,
	VR_DROP_LIST(VR_DROP_ENUM)
#undef VR_DROP_ENUM
	VR_DROP_MAX = 20
};

/*
 * pkt0: every packet between datapath and agent starts with this header
 * (network byte order), followed by the Ethernet frame.
 *  to the agent:   vif = ingress vif, vrf, reason, flow = flow index or ~0
 *  from the agent: vif = vif to transmit on, reason = VR_TRAP_INJECT
 */
#define VR_PKT0_HDR_LEN 16u
enum vr_trap_reason {
	VR_TRAP_FLOW_MISS = 1,
	VR_TRAP_FLOW_ACTION = 2,
	VR_TRAP_ARP = 3,
	VR_TRAP_ND = 4,
	VR_TRAP_DHCP = 5,
	VR_TRAP_INJECT = 100,
};

/*
 * Shared flow table: a header then nentries fixed-size entries, in the
 * memory the OS layer hands to dp-core (an mmapped file in the userspace host,
 * a device mapping in the kernel).  Host byte order: the agent runs on the
 * same machine.  The agent may read any entry at any time; it writes only
 * through messages.  gen changes on every (re)use of a slot so a reader can
 * tell a recycled slot from the flow it knew.
 */
#define VR_FLOW_SHM_MAGIC 0x56524654u /* "VRFT" */
#define VR_FLOW_SHM_VERSION 1u
#define VR_FLOW_NONE 0xffffffffu

struct vr_flow_shm_hdr {
	uint32_t magic;
	uint32_t version;
	uint32_t nentries; /* power of two */
	uint32_t entry_size;
	uint64_t reserved[6];
}; /* 64 bytes */

struct vr_flow_entry {
	uint32_t flags; /* VR_FLOW_F_* */
	uint32_t gen;
	uint32_t vrf;
	uint32_t rindex; /* reverse flow, VR_FLOW_NONE if none */
	uint8_t sip[16]; /* IPv4 in the first 4 bytes, rest zero */
	uint8_t dip[16];
	uint16_t sport; /* network order as on the wire */
	uint16_t dport;
	uint8_t proto;
	uint8_t action;  /* enum vr_flow_action */
	uint16_t src_vif;
	uint64_t packets;
	uint64_t bytes;
	uint64_t last_ns;  /* OS time of the last packet */
	uint8_t nat_sip[16];
	uint8_t nat_dip[16];
	uint16_t nat_sport;
	uint16_t nat_dport;
	uint32_t hold_count; /* packets held for the agent */
	uint32_t hash;       /* of the key, for the agent's own lookups */
	uint32_t dvrf;       /* with VR_FLOW_F_VRFT: the VRF to route in after the action */
}; /* 128 bytes */

#endif
