/*
 * The one message format between the agent and the datapath.
 *
 * A message is a 16-byte header followed by attributes.  All integers are in
 * network byte order (big endian).
 *
 *   0      2    3    4    5     6        8        12       16
 *   +------+----+----+----+-----+--------+--------+--------+----------
 *   |magic |ver | op |obj |flags|reserved|  seq   |  len   | attrs...
 *   +------+----+----+----+-----+--------+--------+--------+----------
 *
 * magic 0x5652 ("VR"), ver VR_MSG_VERSION, len = whole message including the
 * header (VR_MSG_HDR_LEN..VR_MSG_MAX).  An attribute is
 *
 *   type:u16  len:u16  value[len]     (no padding)
 *
 * Each attribute type has one kind and a fixed or bounded length (table
 * below); a message with an unknown, duplicated, short or overlong attribute
 * is rejected as a whole.  A new attribute or a changed meaning needs a new
 * VR_MSG_VERSION; a peer rejects a version it does not speak.
 *
 * Versions: 1 the first; 2 adds FL_DVRF (a flow's VRF translation).
 *
 * This header is the single definition: the C parser/encoder (dp-core/vr_msg.c)
 * is table-driven from VR_ATTR_LIST, and the Python codec's table is checked
 * against it by its tests.  It uses only compiler-provided headers.
 */
#ifndef VR_MSG_H
#define VR_MSG_H

#include <stddef.h>
#include <stdint.h>

#define VR_MSG_MAGIC 0x5652u
#define VR_MSG_VERSION 2u
#define VR_MSG_HDR_LEN 16u
#define VR_MSG_ATTR_HDR_LEN 4u
#define VR_MSG_MAX 65536u /* largest message, header included */

/* op */
enum vr_msg_op {
	VR_OP_ADD = 1, /* create or replace */
	VR_OP_DEL = 2,
	VR_OP_GET = 3,
	VR_OP_DUMP = 4,
	VR_OP_MAX = 4,
};

/* obj */
enum vr_msg_obj {
	VR_OBJ_NONE = 0, /* only in error replies to unparsable requests */
	VR_OBJ_VIF = 1,
	VR_OBJ_NH = 2,
	VR_OBJ_ROUTE = 3,
	VR_OBJ_LABEL = 4,
	VR_OBJ_VNI = 5,
	VR_OBJ_FLOW = 6,
	VR_OBJ_DROPSTATS = 7,
	VR_OBJ_MAX = 7,
};

/* flags */
#define VR_MSGF_REPLY 0x01u /* sent by the datapath */
#define VR_MSGF_MORE 0x02u  /* dump reply: more objects follow in a later batch */
#define VR_MSGF_DONE 0x04u  /* dump reply: last message of this batch */
#define VR_MSGF_ALL 0x07u

/*
 * Result codes (VR_A_RESULT in every reply; negative return values in C).
 * Numbered like the common errno values so logs read naturally, but defined
 * here so no OS header is needed.
 */
enum vr_err {
	VR_OK = 0,
	VR_ENOENT = 2,
	VR_ENOMEM = 12,
	VR_EBUSY = 16,
	VR_EEXIST = 17,
	VR_EINVAL = 22,
	VR_ENOSPC = 28,
	VR_ERANGE = 34,
	VR_EPROTO = 71,     /* bad magic, version, op, object, attribute type */
	VR_EMSGSIZE = 90,   /* length field disagrees with the bytes, or too big */
	VR_EOPNOTSUPP = 95, /* op not valid for this object */
};

/* Attribute value kinds. */
enum vr_attr_kind {
	VR_K_U8 = 1,
	VR_K_U16,
	VR_K_U32,
	VR_K_S32,
	VR_K_U64,
	VR_K_MAC,   /* 6 bytes */
	VR_K_IP,    /* 4 (IPv4) or 16 (IPv6) bytes */
	VR_K_STR,   /* 1..max bytes, no NUL inside */
	VR_K_U32A,  /* array of u32, 1..max elements */
	VR_K_U64A,  /* array of u64, 1..max elements */
};

/*
 * X(id, NAME, kind, max) - max is the string length or array element count;
 * 0 for fixed-size kinds.  Ids are wire values: never renumber.
 */
#define VR_ATTR_LIST(X)                                   \
	X(1, RESULT, VR_K_S32, 0)      /* reply: 0 or -VR_E* */ \
	X(2, MARKER, VR_K_U32, 0)      /* dump: resume from  */ \
	X(3, COUNT, VR_K_U32, 0)       /* dump: objects sent */ \
	/* vif */                                         \
	X(10, VIF_IDX, VR_K_U32, 0)                       \
	X(11, VIF_TYPE, VR_K_U8, 0)                       \
	X(12, VIF_VRF, VR_K_U32, 0)                       \
	X(13, VIF_MAC, VR_K_MAC, 0)                       \
	X(14, VIF_MTU, VR_K_U16, 0)                       \
	X(15, VIF_FLAGS, VR_K_U32, 0)                     \
	X(16, VIF_NAME, VR_K_STR, 15)                     \
	X(17, VIF_OS_IDX, VR_K_U32, 0)                    \
	X(18, VIF_IP, VR_K_IP, 0)                         \
	X(19, VIF_RX_PKTS, VR_K_U64, 0)                   \
	X(20, VIF_RX_BYTES, VR_K_U64, 0)                  \
	X(21, VIF_TX_PKTS, VR_K_U64, 0)                   \
	X(22, VIF_TX_BYTES, VR_K_U64, 0)                  \
	X(23, VIF_DROPS, VR_K_U64, 0)                     \
	/* nexthop */                                     \
	X(30, NH_ID, VR_K_U32, 0)                         \
	X(31, NH_TYPE, VR_K_U8, 0)                        \
	X(32, NH_FLAGS, VR_K_U32, 0)                      \
	X(33, NH_VRF, VR_K_U32, 0)                        \
	X(34, NH_OIF, VR_K_U32, 0)                        \
	X(35, NH_SMAC, VR_K_MAC, 0)                       \
	X(36, NH_DMAC, VR_K_MAC, 0)                       \
	X(37, NH_TUN_SIP, VR_K_IP, 0)                     \
	X(38, NH_TUN_DIP, VR_K_IP, 0)                     \
	X(39, NH_COMPONENTS, VR_K_U32A, 64) /* nh,label pairs */ \
	/* route (IPv4, IPv6, bridge) */                   \
	X(50, RT_VRF, VR_K_U32, 0)                        \
	X(51, RT_FAMILY, VR_K_U8, 0)                      \
	X(52, RT_PREFIX, VR_K_IP, 0)                      \
	X(53, RT_PLEN, VR_K_U8, 0)                        \
	X(54, RT_MAC, VR_K_MAC, 0)                        \
	X(55, RT_NH, VR_K_U32, 0)                         \
	X(56, RT_LABEL, VR_K_U32, 0) /* MPLS label or VNI */ \
	X(57, RT_FLAGS, VR_K_U32, 0)                      \
	/* MPLS label table, VXLAN VNI table */            \
	X(70, LBL_LABEL, VR_K_U32, 0)                     \
	X(71, LBL_NH, VR_K_U32, 0)                        \
	X(75, VNI_VNI, VR_K_U32, 0)                       \
	X(76, VNI_VRF, VR_K_U32, 0)                       \
	/* flow */                                        \
	X(80, FL_INDEX, VR_K_U32, 0)                      \
	X(81, FL_VRF, VR_K_U32, 0)                        \
	X(82, FL_SIP, VR_K_IP, 0)                         \
	X(83, FL_DIP, VR_K_IP, 0)                         \
	X(84, FL_PROTO, VR_K_U8, 0)                       \
	X(85, FL_SPORT, VR_K_U16, 0)                      \
	X(86, FL_DPORT, VR_K_U16, 0)                      \
	X(87, FL_ACTION, VR_K_U8, 0)                      \
	X(88, FL_FLAGS, VR_K_U32, 0)                      \
	X(89, FL_RINDEX, VR_K_U32, 0)                     \
	X(90, FL_PKTS, VR_K_U64, 0)                       \
	X(91, FL_BYTES, VR_K_U64, 0)                      \
	X(92, FL_NAT_SIP, VR_K_IP, 0)                     \
	X(93, FL_NAT_DIP, VR_K_IP, 0)                     \
	X(94, FL_NAT_SPORT, VR_K_U16, 0)                  \
	X(95, FL_NAT_DPORT, VR_K_U16, 0)                  \
	X(96, FL_DVRF, VR_K_U32, 0) /* v2: route in this VRF after the action */ \
	/* drop statistics: one u64 per enum vr_drop_reason */ \
	X(100, DS_COUNTERS, VR_K_U64A, 64)

enum vr_attr_id {
#define VR_ATTR_ENUM(id, name, kind, max) VR_A_##name = id,
	VR_ATTR_LIST(VR_ATTR_ENUM)
#undef VR_ATTR_ENUM
	VR_A_LIMIT = 101 /* all ids are below this */
};

/* One decoded attribute.  ptr points into the parsed buffer (or, when
 * encoding, into caller memory); num holds integer kinds. */
struct vr_attr {
	const uint8_t *ptr;
	uint64_t num;
	uint16_t len;
	uint8_t present;
};

struct vr_msg {
	uint8_t version;
	uint8_t op;
	uint8_t obj;
	uint8_t flags;
	uint32_t seq;
	struct vr_attr a[VR_A_LIMIT];
};

/* Attribute table lookups: kind 0 means "no such attribute". */
int vr_attr_kind(unsigned id);
unsigned vr_attr_max(unsigned id);
const char *vr_attr_name(unsigned id);
int vr_attr_by_name(const char *name); /* -1 if unknown */

/*
 * Parse buf[0..len) into m.  Returns 0 or a negative VR_E* code; on error m
 * still holds whatever header fields were readable (for the error reply).
 * Never reads outside buf.  Attribute pointers reference buf.
 */
int vr_msg_parse(const uint8_t *buf, size_t len, struct vr_msg *m);

/*
 * Encode m into out (cap bytes), attributes in ascending id order.  Returns
 * the message length or a negative VR_E* code (VR_EMSGSIZE if it does not fit,
 * VR_EINVAL if an attribute value breaks the table's rules).
 */
int vr_msg_encode(const struct vr_msg *m, uint8_t *out, size_t cap);

/* Builders for encoding. */
void vr_msg_init(struct vr_msg *m, uint8_t op, uint8_t obj, uint8_t flags, uint32_t seq);
void vr_msg_put_num(struct vr_msg *m, unsigned id, uint64_t v);
void vr_msg_put_bytes(struct vr_msg *m, unsigned id, const void *p, uint16_t len);

/* Readers; return 0 if present, -VR_ENOENT otherwise. */
int vr_msg_get_num(const struct vr_msg *m, unsigned id, uint64_t *v);
static inline int vr_msg_has(const struct vr_msg *m, unsigned id)
{
	return id < VR_A_LIMIT && m->a[id].present;
}
/* Element i of a U32A/U64A attribute (big endian on the wire). */
uint64_t vr_msg_array_elem(const struct vr_msg *m, unsigned id, unsigned i);
unsigned vr_msg_array_len(const struct vr_msg *m, unsigned id);

#endif
