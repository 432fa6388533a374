/* Parser and encoder for the message format in include/vr_msg.h. */
#include "vr_msg.h"
#include "vr_util.h"

struct vr_attr_desc {
	const char *name;
	uint8_t kind;
	uint8_t max;
};

static const struct vr_attr_desc attr_table[VR_A_LIMIT] = {
#define VR_ATTR_DESC(id, nm, k, mx) [id] = {.name = #nm, .kind = k, .max = mx},
	VR_ATTR_LIST(VR_ATTR_DESC)
#undef VR_ATTR_DESC
};

int vr_attr_kind(unsigned id)
{
	return id < VR_A_LIMIT ? attr_table[id].kind : 0;
}

unsigned vr_attr_max(unsigned id)
{
	return id < VR_A_LIMIT ? attr_table[id].max : 0;
}

const char *vr_attr_name(unsigned id)
{
	return vr_attr_kind(id) ? attr_table[id].name : (const char *)0;
}

int vr_attr_by_name(const char *name)
{
	for (unsigned id = 0; id < VR_A_LIMIT; id++) {
		const char *n = attr_table[id].name;
		unsigned i = 0;

		if (!n)
			continue;
		while (n[i] && n[i] == name[i])
			i++;
		if (!n[i] && !name[i])
			return (int)id;
	}
	return -1;
}

static unsigned fixed_len(int kind)
{
	switch (kind) {
	case VR_K_U8:
		return 1;
	case VR_K_U16:
		return 2;
	case VR_K_U32:
	case VR_K_S32:
		return 4;
	case VR_K_U64:
		return 8;
	case VR_K_MAC:
		return 6;
	default:
		return 0;
	}
}

/* Does a value of len bytes obey the table's rule for attribute id? */
static int value_ok(unsigned id, const uint8_t *p, unsigned len)
{
	int kind = vr_attr_kind(id);
	unsigned max = vr_attr_max(id);

	switch (kind) {
	case 0:
		return -VR_EPROTO;
	case VR_K_IP:
		return (len == 4 || len == 16) ? 0 : -VR_EINVAL;
	case VR_K_STR:
		if (len < 1 || len > max)
			return -VR_EINVAL;
		for (unsigned i = 0; i < len; i++)
			if (!p[i])
				return -VR_EINVAL;
		return 0;
	case VR_K_U32A:
		return (len >= 4 && len % 4 == 0 && len / 4 <= max) ? 0 : -VR_EINVAL;
	case VR_K_U64A:
		return (len >= 8 && len % 8 == 0 && len / 8 <= max) ? 0 : -VR_EINVAL;
	default:
		return len == fixed_len(kind) ? 0 : -VR_EINVAL;
	}
}

static uint64_t read_num(int kind, const uint8_t *p)
{
	switch (kind) {
	case VR_K_U8:
		return p[0];
	case VR_K_U16:
		return vr_get_be16(p);
	case VR_K_U32:
		return vr_get_be32(p);
	case VR_K_S32:
		return (uint64_t)(int64_t)(int32_t)vr_get_be32(p);
	case VR_K_U64:
		return vr_get_be64(p);
	default:
		return 0;
	}
}

static int header_ok(const struct vr_msg *m)
{
	int reply = m->flags & VR_MSGF_REPLY;

	if (m->flags & ~VR_MSGF_ALL)
		return -VR_EPROTO;
	if (m->op > VR_OP_MAX || (m->op == 0 && !reply))
		return -VR_EPROTO;
	if (m->obj > VR_OBJ_MAX || (m->obj == VR_OBJ_NONE && !reply))
		return -VR_EPROTO;
	return 0;
}

int vr_msg_parse(const uint8_t *buf, size_t len, struct vr_msg *m)
{
	uint32_t mlen;
	size_t off;
	int rc;

	vr_memset(m, 0, sizeof(*m));
	if (!buf || len < VR_MSG_HDR_LEN)
		return -VR_EMSGSIZE;
	m->version = buf[2];
	m->op = buf[3];
	m->obj = buf[4];
	m->flags = buf[5];
	m->seq = vr_get_be32(buf + 8);
	mlen = vr_get_be32(buf + 12);
	if (vr_get_be16(buf) != VR_MSG_MAGIC || m->version != VR_MSG_VERSION)
		return -VR_EPROTO;
	if (mlen != len || len > VR_MSG_MAX)
		return -VR_EMSGSIZE;
	if (vr_get_be16(buf + 6) != 0)
		return -VR_EPROTO;
	rc = header_ok(m);
	if (rc)
		return rc;

	for (off = VR_MSG_HDR_LEN; off < len;) {
		unsigned id, alen;
		const uint8_t *val;

		if (len - off < VR_MSG_ATTR_HDR_LEN)
			return -VR_EMSGSIZE;
		id = vr_get_be16(buf + off);
		alen = vr_get_be16(buf + off + 2);
		off += VR_MSG_ATTR_HDR_LEN;
		if (len - off < alen)
			return -VR_EMSGSIZE;
		val = buf + off;
		off += alen;
		if (!vr_attr_kind(id))
			return -VR_EPROTO;
		if (m->a[id].present)
			return -VR_EINVAL;
		rc = value_ok(id, val, alen);
		if (rc)
			return rc;
		m->a[id].present = 1;
		m->a[id].ptr = val;
		m->a[id].len = (uint16_t)alen;
		m->a[id].num = read_num(vr_attr_kind(id), val);
	}
	return 0;
}

static void write_num(int kind, uint8_t *p, uint64_t v)
{
	switch (kind) {
	case VR_K_U8:
		p[0] = (uint8_t)v;
		break;
	case VR_K_U16:
		vr_put_be16(p, (uint16_t)v);
		break;
	case VR_K_U32:
	case VR_K_S32:
		vr_put_be32(p, (uint32_t)v);
		break;
	case VR_K_U64:
		vr_put_be64(p, v);
		break;
	default:
		break;
	}
}

int vr_msg_encode(const struct vr_msg *m, uint8_t *out, size_t cap)
{
	size_t need = VR_MSG_HDR_LEN, off;
	struct vr_msg hdr = *m;
	int rc;

	hdr.version = VR_MSG_VERSION;
	rc = header_ok(&hdr);
	if (rc)
		return -VR_EINVAL;
	for (unsigned id = 0; id < VR_A_LIMIT; id++) {
		const struct vr_attr *a = &m->a[id];
		int kind = vr_attr_kind(id);
		unsigned alen;

		if (!a->present)
			continue;
		if (!kind)
			return -VR_EINVAL;
		alen = fixed_len(kind) ? fixed_len(kind) : a->len;
		if ((!fixed_len(kind) || kind == VR_K_MAC) &&
		    (!a->ptr || value_ok(id, a->ptr, a->len)))
			return -VR_EINVAL;
		if (kind == VR_K_U8 && a->num > 0xff)
			return -VR_ERANGE;
		if (kind == VR_K_U16 && a->num > 0xffff)
			return -VR_ERANGE;
		if (kind == VR_K_U32 && a->num > 0xffffffffu)
			return -VR_ERANGE;
		need += VR_MSG_ATTR_HDR_LEN + alen;
	}
	if (need > VR_MSG_MAX || need > cap)
		return -VR_EMSGSIZE;

	vr_put_be16(out, VR_MSG_MAGIC);
	out[2] = VR_MSG_VERSION;
	out[3] = m->op;
	out[4] = m->obj;
	out[5] = m->flags;
	vr_put_be16(out + 6, 0);
	vr_put_be32(out + 8, m->seq);
	vr_put_be32(out + 12, (uint32_t)need);
	off = VR_MSG_HDR_LEN;
	for (unsigned id = 0; id < VR_A_LIMIT; id++) {
		const struct vr_attr *a = &m->a[id];
		int kind = vr_attr_kind(id);
		unsigned alen;

		if (!a->present)
			continue;
		alen = fixed_len(kind) ? fixed_len(kind) : a->len;
		vr_put_be16(out + off, (uint16_t)id);
		vr_put_be16(out + off + 2, (uint16_t)alen);
		off += VR_MSG_ATTR_HDR_LEN;
		if (fixed_len(kind) && kind != VR_K_MAC)
			write_num(kind, out + off, a->num);
		else
			vr_memcpy(out + off, a->ptr, alen);
		off += alen;
	}
	return (int)need;
}

void vr_msg_init(struct vr_msg *m, uint8_t op, uint8_t obj, uint8_t flags, uint32_t seq)
{
	vr_memset(m, 0, sizeof(*m));
	m->version = VR_MSG_VERSION;
	m->op = op;
	m->obj = obj;
	m->flags = flags;
	m->seq = seq;
}

void vr_msg_put_num(struct vr_msg *m, unsigned id, uint64_t v)
{
	if (id >= VR_A_LIMIT)
		return;
	m->a[id].present = 1;
	m->a[id].num = v;
	m->a[id].ptr = (const uint8_t *)0;
	m->a[id].len = (uint16_t)fixed_len(vr_attr_kind(id));
}

void vr_msg_put_bytes(struct vr_msg *m, unsigned id, const void *p, uint16_t len)
{
	if (id >= VR_A_LIMIT)
		return;
	m->a[id].present = 1;
	m->a[id].ptr = p;
	m->a[id].len = len;
	m->a[id].num = 0;
}

int vr_msg_get_num(const struct vr_msg *m, unsigned id, uint64_t *v)
{
	if (!vr_msg_has(m, id))
		return -VR_ENOENT;
	*v = m->a[id].num;
	return 0;
}

unsigned vr_msg_array_len(const struct vr_msg *m, unsigned id)
{
	int kind = vr_attr_kind(id);

	if (!vr_msg_has(m, id))
		return 0;
	return kind == VR_K_U32A ? m->a[id].len / 4u : kind == VR_K_U64A ? m->a[id].len / 8u : 0;
}

uint64_t vr_msg_array_elem(const struct vr_msg *m, unsigned id, unsigned i)
{
	int kind = vr_attr_kind(id);

	if (i >= vr_msg_array_len(m, id))
		return 0;
	return kind == VR_K_U32A ? vr_get_be32(m->a[id].ptr + 4 * i)
				 : vr_get_be64(m->a[id].ptr + 8 * i);
}
