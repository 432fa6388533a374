/* SPDX-License-Identifier: GPL-2.0 */
/* What the Linux glue's files share: the skb control block while dp-core
 * holds a frame, and the large-packet helpers of vr_gso.c. */
#ifndef VR_LINUX_H
#define VR_LINUX_H

#include <linux/netdevice.h>
#include <linux/skbuff.h>

#include "vr_os.h"

/* Headroom a received frame gets before dp-core: its largest push onto a
 * received frame is VXLAN's 50 bytes (vr_pkt_push copies when short).  A
 * NIC's frames usually have 64 (NET_SKB_PAD) already, so they are not copied. */
#define LX_RX_HEADROOM 64u

/* A TCP/IPv4 aggregate that dp-core handles as one (linear) frame. */
struct lx_gso {
	u16 inner_ip; /* its IPv4 header, offset from skb->head; 0: not an aggregate */
	u16 mss;      /* segment payload size */
	u32 flags;    /* SKB_GSO_TCP_FIXEDID / SKB_GSO_TCP_ECN to give back */
};

struct lx_cb {
	struct vr_pkt pkt; /* dp-core's view of the frame */
	struct lx_gso gso;
};

static inline struct lx_cb *lx_cb(struct sk_buff *skb)
{
	BUILD_BUG_ON(sizeof(struct lx_cb) > sizeof(skb->cb));
	return (struct lx_cb *)skb->cb;
}

/* Fabric GRO: UDP sockets on the MPLSoUDP and VXLAN ports whose GRO hooks
 * merge a TCP flow's tunnelled segments (the rx_handler then sees one frame). */
int lx_gro_open(void);
void lx_gro_close(void);

/* Make a TCP/IPv4 GSO skb (data at the Ethernet header) linear, private and
 * with LX_RX_HEADROOM, and note its segmentation in *gso.  False: not one
 * we handle whole (the caller segments it), skb still valid. */
bool lx_gso_take(struct sk_buff *skb, struct lx_gso *gso);

/* Send an aggregate dp-core forwarded (data at the Ethernet header): whole
 * if its frame is Ethernet + IPv4 + TCP, or (xmit: dev transmits it) a UDP
 * tunnel the device's GSO cuts; else cut here into segments, each under a
 * copy of the tunnel headers with their lengths fixed.  send() puts one frame
 * on dev. */
void lx_gso_send(struct sk_buff *skb, struct net_device *dev, const struct lx_gso *gso, bool xmit,
		 void (*send)(struct sk_buff *skb, struct net_device *dev));

#endif
