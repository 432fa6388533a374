/*
 * The OS layer interface: everything dp-core needs from its host (kernel
 * module glue or the userspace host).  dp-core never includes OS headers.
 */
#ifndef VR_OS_H
#define VR_OS_H

#include <stddef.h>
#include <stdint.h>

/* Headroom the OS layer leaves in front of a received frame so that tunnel
 * headers can be pushed without a copy (outer Eth+IPv4+UDP+VXLAN+inner Eth). */
#define VR_PKT_HEADROOM 128u

/* A packet: data is buf[off .. off+len), buf has size bytes. */
struct vr_pkt {
	uint8_t *buf;
	uint32_t size;
	uint32_t off;
	uint32_t len;
	void *os; /* the OS's own handle (skb, mbuf, ...) */
};

struct vr_os_ops {
	void *(*zalloc)(void *ctx, size_t size); /* zeroed memory or NULL */
	void (*free)(void *ctx, void *p);
	uint64_t (*now_ns)(void *ctx);
	void (*lock)(void *ctx);
	void (*unlock)(void *ctx);
	/* A packet with len data bytes and at least VR_PKT_HEADROOM headroom. */
	struct vr_pkt *(*pkt_alloc)(void *ctx, uint32_t len);
	void (*pkt_free)(void *ctx, struct vr_pkt *pkt);
	/* Send pkt out of the OS interface os_idx backing vif vif_idx.  Always
	 * consumes pkt; returns 0 or a negative VR_E* code. */
	int (*tx)(void *ctx, uint32_t vif_idx, uint32_t os_idx, struct vr_pkt *pkt);
};

#endif
