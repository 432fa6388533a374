// SPDX-License-Identifier: GPL-2.0
/*
 * vrouter.ko: dp-core in the Linux kernel.
 *
 *   control   generic netlink family "vrouter", command MSG, attribute MSG
 *             carrying one request of include/vr_msg.h; the reply carries
 *             every reply message of that request (CAP_NET_ADMIN)
 *   flows     /dev/vrouter_flow: read or mmap (read-only) the flow table
 *   packets   an rx_handler on each fabric/virtual vif's netdevice; vhost0
 *             (the host's interface on the fabric) and pkt0 (to the agent,
 *             frames carry the 16-byte pkt0 header) are netdevices of ours
 *
 * dp-core runs under one spinlock (BH off).  Its transmit callback only
 * queues: frames go out after the lock is dropped, so a device that loops a
 * frame straight back into our rx_handler cannot deadlock.  TCP aggregates
 * (GSO from VMs, GRO on the fabric) pass dp-core whole: see vr_gso.c.
 */
#include <linux/etherdevice.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/netdevice.h>
#include <linux/rtnetlink.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#include <linux/version.h>
#include <linux/vmalloc.h>
#include <net/dst.h>
#include <net/genetlink.h>

#include "vr_core.h"
#include "vr_genl.h"
#include "vr_linux.h"

static unsigned int flows = 65536;
module_param(flows, uint, 0444);
MODULE_PARM_DESC(flows, "flow table entries (power of two, 1024..4194304)");
static unsigned int vifs = 256;
module_param(vifs, uint, 0444);
MODULE_PARM_DESC(vifs, "interfaces (8..4096)");
static unsigned int nexthops = 16384;
module_param(nexthops, uint, 0444);
MODULE_PARM_DESC(nexthops, "nexthops (16..1048576)");
static unsigned int vrfs = 4096;
module_param(vrfs, uint, 0444);
MODULE_PARM_DESC(vrfs, "VRFs (1..65536)");
static unsigned int labels = 65536;
module_param(labels, uint, 0444);
MODULE_PARM_DESC(labels, "MPLS labels (16..1048576)");
static bool offload = true;
module_param(offload, bool, 0444);
MODULE_PARM_DESC(offload, "TCP aggregates through dp-core whole, fabric GRO (default on)");
static atomic_t aggregates = ATOMIC_INIT(0);
module_param_named(tcp_aggregates, aggregates.counter, int, 0444);
MODULE_PARM_DESC(tcp_aggregates, "TCP aggregates dp-core handled whole (read-only)");

/* Outstanding dp-core allocations and packets: both must be 0 at unload. */
static atomic_t allocs_out = ATOMIC_INIT(0);
static atomic_t pkts_out = ATOMIC_INIT(0);
module_param_named(allocs_outstanding, allocs_out.counter, int, 0444);
module_param_named(packets_outstanding, pkts_out.counter, int, 0444);

/* A vif's netdevice.  ports[] changes under rtnl and the dp lock. */
struct vr_port {
	struct net_device *dev;
	u32 vif;
	bool handler; /* our rx_handler is registered on dev */
};

/* vhost0 and pkt0: frames they transmit enter dp-core on this vif. */
struct vr_ndev_priv {
	u32 vif;
};

static struct {
	struct vr_router *r;
	spinlock_t lock;
	struct sk_buff_head txq; /* under lock: frames dp-core sent */
	struct vr_port **ports;
	void *flow_mem;
	size_t flow_len;
	struct net_device *vhost, *pkt0;
	u8 *out; /* reply buffer; genetlink serialises our handler */
	bool running; /* dp-core allocations from here on are atomic */
} g;

/* Replies go in one netlink attribute, whose length is 16 bits. */
#define VR_REPLY_CAP 65528u

/* ---------------------------------------------------------------- OS layer */

static void *lx_zalloc(void *ctx, size_t n)
{
	void *p = g.running ? kzalloc(n, GFP_ATOMIC) : kvzalloc(n, GFP_KERNEL);

	if (p)
		atomic_inc(&allocs_out);
	return p;
}

static void lx_free(void *ctx, void *p)
{
	if (!p)
		return;
	atomic_dec(&allocs_out);
	kvfree(p);
}

static u64 lx_now(void *ctx)
{
	return ktime_get_ns();
}

static void lx_lock(void *ctx)
{
	spin_lock_bh(&g.lock);
}

static void lx_deliver(struct sk_buff *skb);

static void lx_unlock(void *ctx)
{
	struct sk_buff_head out;
	struct sk_buff *skb;

	__skb_queue_head_init(&out);
	skb_queue_splice_init(&g.txq, &out);
	spin_unlock_bh(&g.lock);
	while ((skb = __skb_dequeue(&out)))
		lx_deliver(skb);
}

/* Wrap a linear, private skb whose data starts at the Ethernet header
 * (gso: a TCP aggregate's segmentation, else NULL). */
static struct vr_pkt *wrap(struct sk_buff *skb, const struct lx_gso *gso)
{
	struct lx_cb *cb = lx_cb(skb);
	struct vr_pkt *p = &cb->pkt;

	if (gso)
		cb->gso = *gso;
	else
		memset(&cb->gso, 0, sizeof(cb->gso));
	p->buf = skb->head;
	p->size = skb_end_offset(skb);
	p->off = skb_headroom(skb);
	p->len = skb->len;
	p->os = skb;
	atomic_inc(&pkts_out);
	return p;
}

static struct vr_pkt *lx_pkt_alloc(void *ctx, u32 len)
{
	struct sk_buff *skb;

	if (len > 65535)
		return NULL;
	skb = alloc_skb(VR_PKT_HEADROOM + len, GFP_ATOMIC);
	if (!skb)
		return NULL;
	skb_reserve(skb, VR_PKT_HEADROOM);
	skb_put(skb, len);
	return wrap(skb, NULL);
}

static void lx_pkt_free(void *ctx, struct vr_pkt *p)
{
	atomic_dec(&pkts_out);
	kfree_skb(p->os);
}

/* Called by dp-core under the lock: point the skb at the frame and queue it
 * for the vif's netdevice. */
static int lx_tx(void *ctx, u32 vif, u32 os_idx, struct vr_pkt *p)
{
	struct sk_buff *skb = p->os;
	struct vr_port *port = vif < vifs ? g.ports[vif] : NULL;

	atomic_dec(&pkts_out);
	if (!port || p->buf != skb->head || skb_is_nonlinear(skb) ||
	    p->off + p->len > p->size || p->len < ETH_HLEN) {
		kfree_skb(skb);
		return -VR_ENOENT;
	}
	skb->data = p->buf + p->off;
	skb->len = p->len;
	skb_set_tail_pointer(skb, p->len);
	memset(p, 0, sizeof(*p)); /* lx_cb(skb)->gso stays for lx_deliver */
	dev_hold(port->dev);
	skb->dev = port->dev;
	__skb_queue_tail(&g.txq, skb);
	return 0;
}

static const struct vr_os_ops lx_ops = {
	.zalloc = lx_zalloc,
	.free = lx_free,
	.now_ns = lx_now,
	.lock = lx_lock,
	.unlock = lx_unlock,
	.pkt_alloc = lx_pkt_alloc,
	.pkt_free = lx_pkt_free,
	.tx = lx_tx,
};

/* One frame (data at its Ethernet header) onto dev: vhost0's are received
 * by the host stack, the others transmitted. */
static void lx_send(struct sk_buff *skb, struct net_device *dev)
{
	if (dev == g.vhost) {
		skb->protocol = eth_type_trans(skb, dev);
		netif_rx(skb);
		return;
	}
	skb_reset_mac_header(skb);
	skb_set_network_header(skb, ETH_HLEN);
	skb->protocol = eth_hdr(skb)->h_proto;
	dev_queue_xmit(skb);
}

/* After the lock: hand a frame to its device (a reference is held). */
static void lx_deliver(struct sk_buff *skb)
{
	struct net_device *dev = skb->dev;
	struct lx_gso gso = lx_cb(skb)->gso;

	memset(skb->cb, 0, sizeof(skb->cb));
	skb_dst_drop(skb);
	nf_reset_ct(skb);
	skb->ip_summed = CHECKSUM_NONE;
	skb->encapsulation = 0;
	skb_clear_hash(skb);
	if (dev == g.pkt0) {
		/* pkt0 header + frame (an aggregate as one): only packet sockets
		 * (the agent) take it. */
		skb_reset_mac_header(skb);
		skb_pull(skb, ETH_HLEN);
		skb->protocol = htons(ETH_P_802_3);
		skb->pkt_type = PACKET_HOST;
		netif_rx(skb);
	} else if (gso.inner_ip) {
		lx_gso_send(skb, dev, &gso, dev != g.vhost, lx_send);
	} else {
		lx_send(skb, dev);
	}
	dev_put(dev);
}

/* ---------------------------------------------------------------- receive */

static void input_one(struct sk_buff *skb, u32 vif)
{
	if (skb->ip_summed == CHECKSUM_PARTIAL && skb_checksum_help(skb))
		goto drop;
	if (skb_linearize(skb) || skb_cow(skb, LX_RX_HEADROOM))
		goto drop;
	vr_rx(g.r, vif, wrap(skb, NULL));
	return;
drop:
	kfree_skb(skb);
}

/* A frame (data at the Ethernet header) that we own enters dp-core on vif;
 * TCP/IPv4 aggregates whole, other offloaded ones cut into wire-sized frames. */
static void vr_input(struct sk_buff *skb, u32 vif)
{
	struct sk_buff *segs, *next;
	struct lx_gso gso;

	if (!skb_is_gso(skb)) {
		input_one(skb, vif);
		return;
	}
	if (offload && lx_gso_take(skb, &gso)) {
		atomic_inc(&aggregates);
		vr_rx(g.r, vif, wrap(skb, &gso));
		return;
	}
	segs = skb_gso_segment(skb, 0);
	if (IS_ERR_OR_NULL(segs)) {
		kfree_skb(skb);
		return;
	}
	consume_skb(skb);
	skb_list_walk_safe(segs, skb, next) {
		skb_mark_not_on_list(skb);
		input_one(skb, vif);
	}
}

static rx_handler_result_t vr_rx_handler(struct sk_buff **pskb)
{
	struct sk_buff *skb = *pskb;
	struct vr_port *port = rcu_dereference(skb->dev->rx_handler_data);

	if (skb->pkt_type == PACKET_LOOPBACK)
		return RX_HANDLER_PASS;
	skb = skb_share_check(skb, GFP_ATOMIC);
	if (!skb)
		return RX_HANDLER_CONSUMED;
	skb_push(skb, skb->data - skb_mac_header(skb));
	vr_input(skb, READ_ONCE(port->vif));
	return RX_HANDLER_CONSUMED;
}

/* vhost0 and pkt0 transmit into dp-core. */
static netdev_tx_t vr_ndev_xmit(struct sk_buff *skb, struct net_device *dev)
{
	struct vr_ndev_priv *priv = netdev_priv(dev);
	u32 vif = READ_ONCE(priv->vif);

	if (vif == VR_FLOW_NONE || skb->len < ETH_HLEN) {
		dev->stats.tx_dropped++;
		kfree_skb(skb);
		return NETDEV_TX_OK;
	}
	skb_orphan(skb);
	vr_input(skb, vif);
	return NETDEV_TX_OK;
}

static const struct net_device_ops vr_ndev_ops = {
	.ndo_start_xmit = vr_ndev_xmit,
	.ndo_set_mac_address = eth_mac_addr,
	.ndo_validate_addr = eth_validate_addr,
};

static void vr_ndev_setup(struct net_device *dev)
{
	struct vr_ndev_priv *priv = netdev_priv(dev);

	ether_setup(dev);
	dev->netdev_ops = &vr_ndev_ops;
	dev->max_mtu = 9000;
	/* vhost0 takes the uplink's MAC, possibly while up. */
	dev->priv_flags |= IFF_NO_QUEUE | IFF_LIVE_ADDR_CHANGE;
	priv->vif = VR_FLOW_NONE;
	eth_hw_addr_random(dev);
}

static struct net_device *vr_ndev_create(const char *name, bool noarp)
{
	struct net_device *dev = alloc_netdev(sizeof(struct vr_ndev_priv), name, NET_NAME_USER,
					      vr_ndev_setup);

	if (!dev)
		return NULL;
	if (noarp)
		dev->flags |= IFF_NOARP;
	if (register_netdev(dev)) {
		free_netdev(dev);
		return NULL;
	}
	return dev;
}

/* ---------------------------------------------------------------- vif ports */

static void port_detach(u32 vif)
{
	struct vr_port *port = g.ports[vif];

	ASSERT_RTNL();
	spin_lock_bh(&g.lock);
	g.ports[vif] = NULL;
	spin_unlock_bh(&g.lock);
	if (port->handler)
		netdev_rx_handler_unregister(port->dev); /* waits for readers */
	else
		WRITE_ONCE(((struct vr_ndev_priv *)netdev_priv(port->dev))->vif, VR_FLOW_NONE);
	pr_info("vrouter: vif %u: detached %s\n", vif, port->dev->name);
	dev_put(port->dev);
	kfree(port);
}

static void port_attach(u32 vif, struct net_device *dev, bool own)
{
	struct vr_port *port = kzalloc(sizeof(*port), GFP_KERNEL);
	int rc;

	ASSERT_RTNL();
	if (!port)
		return;
	port->dev = dev;
	port->vif = vif;
	if (own) {
		WRITE_ONCE(((struct vr_ndev_priv *)netdev_priv(dev))->vif, vif);
	} else {
		rc = netdev_rx_handler_register(dev, vr_rx_handler, port);
		if (rc) {
			pr_warn("vrouter: vif %u: %s is taken by another handler (%d)\n", vif,
				dev->name, rc);
			kfree(port);
			return;
		}
		port->handler = true;
	}
	dev_hold(dev);
	spin_lock_bh(&g.lock);
	g.ports[vif] = port;
	spin_unlock_bh(&g.lock);
	pr_info("vrouter: vif %u: attached %s\n", vif, dev->name);
}

/* Make the netdevice side match dp-core's vif table (after a vif message). */
static void reconcile(struct net *net)
{
	rtnl_lock();
	for (u32 i = 0; i < vifs; i++) {
		struct vr_port *port = g.ports[i];
		struct net_device *dev = NULL;
		char name[VR_NAME_LEN] = "";
		struct vr_vif *v;
		u8 type = 0;

		spin_lock_bh(&g.lock);
		v = vr_vif_get(g.r, i);
		if (v) {
			type = v->type;
			memcpy(name, v->name, sizeof(name));
			name[sizeof(name) - 1] = 0;
		}
		spin_unlock_bh(&g.lock);
		if (type == VR_VIF_HOST)
			dev = g.vhost;
		else if (type == VR_VIF_AGENT)
			dev = g.pkt0;
		else if (type && name[0])
			dev = __dev_get_by_name(net, name);
		if (port && port->dev != dev) {
			port_detach(i);
			port = NULL;
		}
		if (dev && !port)
			port_attach(i, dev, dev == g.vhost || dev == g.pkt0);
	}
	rtnl_unlock();
}

/* A device going away (or leaving the namespace) gives up its vif. */
static int vr_netdev_event(struct notifier_block *nb, unsigned long event, void *ptr)
{
	struct net_device *dev = netdev_notifier_info_to_dev(ptr);

	if (event != NETDEV_UNREGISTER || !g.ports)
		return NOTIFY_DONE;
	for (u32 i = 0; i < vifs; i++)
		if (g.ports[i] && g.ports[i]->dev == dev)
			port_detach(i);
	return NOTIFY_DONE;
}

static struct notifier_block vr_notifier = {.notifier_call = vr_netdev_event};

/* ---------------------------------------------------------------- control */

static const struct nla_policy vr_genl_policy[VR_GENL_ATTR_MAX + 1] = {
	[VR_GENL_ATTR_MSG] = {.type = NLA_BINARY, .len = U16_MAX - NLA_HDRLEN},
};

static struct genl_family vr_genl_family;

static int vr_genl_msg(struct sk_buff *skb, struct genl_info *info)
{
	const struct nlattr *a = info->attrs[VR_GENL_ATTR_MSG];
	struct sk_buff *reply;
	void *hdr;
	int n;

	if (!a) {
		GENL_SET_ERR_MSG(info, "vrouter: no MSG attribute");
		return -EINVAL;
	}
	/* dp-core validates everything; a malformed request gets an error reply. */
	n = vr_msg_handle(g.r, nla_data(a), nla_len(a), g.out, VR_REPLY_CAP);
	if (n <= 0)
		return -EMSGSIZE;
	if (nla_len(a) >= 5 && ((const u8 *)nla_data(a))[4] == VR_OBJ_VIF)
		reconcile(genl_info_net(info));
	reply = genlmsg_new(nla_total_size(n), GFP_KERNEL);
	if (!reply)
		return -ENOMEM;
	hdr = genlmsg_put_reply(reply, info, &vr_genl_family, 0, VR_GENL_CMD_MSG);
	if (!hdr || nla_put(reply, VR_GENL_ATTR_MSG, n, g.out)) {
		nlmsg_free(reply);
		return -EMSGSIZE;
	}
	genlmsg_end(reply, hdr);
	return genlmsg_reply(reply, info);
}

static const struct genl_small_ops vr_genl_ops[] = {
	{
		.cmd = VR_GENL_CMD_MSG,
		.doit = vr_genl_msg,
		.flags = GENL_ADMIN_PERM,
	},
};

static struct genl_family vr_genl_family = {
	.name = VR_GENL_NAME,
	.version = VR_GENL_VERSION,
	.maxattr = VR_GENL_ATTR_MAX,
	.policy = vr_genl_policy,
	.netnsok = true,
	.module = THIS_MODULE,
	.small_ops = vr_genl_ops,
	.n_small_ops = ARRAY_SIZE(vr_genl_ops),
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 1, 0)
	.resv_start_op = VR_GENL_CMD_MSG + 1,
#endif
};

/* ---------------------------------------------------------------- flow device */

static ssize_t vr_flow_read(struct file *f, char __user *buf, size_t n, loff_t *pos)
{
	return simple_read_from_buffer(buf, n, pos, g.flow_mem, g.flow_len);
}

/* The agent maps the table read-only; it changes flows by message. */
static int vr_flow_mmap(struct file *f, struct vm_area_struct *vma)
{
	if (vma->vm_flags & VM_WRITE)
		return -EPERM;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
	vm_flags_clear(vma, VM_MAYWRITE);
#else
	vma->vm_flags &= ~VM_MAYWRITE;
#endif
	return remap_vmalloc_range(vma, g.flow_mem, vma->vm_pgoff);
}

static const struct file_operations vr_flow_fops = {
	.owner = THIS_MODULE,
	.read = vr_flow_read,
	.mmap = vr_flow_mmap,
	.llseek = default_llseek,
};

static struct miscdevice vr_flow_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "vrouter_flow",
	.fops = &vr_flow_fops,
	.mode = 0444,
};

/* ---------------------------------------------------------------- module */

static int check_param(const char *name, unsigned int v, unsigned int lo, unsigned int hi)
{
	if (v >= lo && v <= hi)
		return 0;
	pr_err("vrouter: parameter %s=%u is outside %u..%u\n", name, v, lo, hi);
	return -EINVAL;
}

static void vr_teardown(void)
{
	struct sk_buff *skb;

	lx_gro_close();
	rtnl_lock();
	for (u32 i = 0; g.ports && i < vifs; i++)
		if (g.ports[i])
			port_detach(i);
	rtnl_unlock();
	if (g.vhost)
		unregister_netdev(g.vhost);
	if (g.pkt0)
		unregister_netdev(g.pkt0);
	synchronize_net();
	if (g.r) {
		vr_router_fini(g.r);
		vfree(g.r);
	}
	while ((skb = __skb_dequeue(&g.txq))) {
		dev_put(skb->dev);
		kfree_skb(skb);
	}
	if (g.vhost)
		free_netdev(g.vhost);
	if (g.pkt0)
		free_netdev(g.pkt0);
	vfree(g.flow_mem);
	kfree(g.out);
	rtnl_lock(); /* the notifier reads ports under rtnl */
	kfree(g.ports);
	g.ports = NULL;
	rtnl_unlock();
}

static int __init vr_init(void)
{
	struct vr_config cfg = {0};
	int rc;

	rc = check_param("flows", flows, 1024, 1u << 22);
	if (!rc && (flows & (flows - 1))) {
		pr_err("vrouter: parameter flows=%u is not a power of two\n", flows);
		rc = -EINVAL;
	}
	rc = rc ?: check_param("vifs", vifs, 8, 4096);
	rc = rc ?: check_param("nexthops", nexthops, 16, 1u << 20);
	rc = rc ?: check_param("vrfs", vrfs, 1, 65536);
	rc = rc ?: check_param("labels", labels, 16, 1u << 20);
	if (rc)
		return rc;
	memset(&g, 0, sizeof(g));
	spin_lock_init(&g.lock);
	skb_queue_head_init(&g.txq);
	g.flow_len = sizeof(struct vr_flow_shm_hdr) + (size_t)flows * sizeof(struct vr_flow_entry);
	g.flow_mem = vmalloc_user(g.flow_len);
	g.r = vzalloc(sizeof(*g.r));
	g.ports = kcalloc(vifs, sizeof(*g.ports), GFP_KERNEL);
	g.out = kmalloc(VR_REPLY_CAP, GFP_KERNEL);
	rc = -ENOMEM;
	if (!g.flow_mem || !g.r || !g.ports || !g.out)
		goto fail;
	cfg.max_vifs = vifs;
	cfg.max_nhs = nexthops;
	cfg.max_vrfs = vrfs;
	cfg.max_labels = labels;
	cfg.flow_mem = g.flow_mem;
	cfg.flow_mem_len = g.flow_len;
	if (vr_router_init(g.r, &lx_ops, NULL, &cfg)) {
		vfree(g.r); /* init cleaned up after itself */
		g.r = NULL;
		goto fail;
	}
	g.running = true;
	g.vhost = vr_ndev_create("vhost0", false);
	g.pkt0 = vr_ndev_create("pkt0", true);
	if (!g.vhost || !g.pkt0)
		goto fail;
	if (offload)
		lx_gro_open();
	rc = register_netdevice_notifier(&vr_notifier);
	if (rc)
		goto fail;
	rc = misc_register(&vr_flow_dev);
	if (rc)
		goto fail_notifier;
	rc = genl_register_family(&vr_genl_family);
	if (rc)
		goto fail_misc;
	pr_info("vrouter: loaded: %u flows, %u vifs, %u nexthops, %u vrfs, %u labels, offload %s\n",
		flows, vifs, nexthops, vrfs, labels, offload ? "on" : "off");
	return 0;
fail_misc:
	misc_deregister(&vr_flow_dev);
fail_notifier:
	unregister_netdevice_notifier(&vr_notifier);
fail:
	vr_teardown();
	return rc;
}

static void __exit vr_exit(void)
{
	int a, p;

	genl_unregister_family(&vr_genl_family);
	misc_deregister(&vr_flow_dev);
	vr_teardown();
	unregister_netdevice_notifier(&vr_notifier);
	a = atomic_read(&allocs_out);
	p = atomic_read(&pkts_out);
	WARN(a || p, "vrouter: leak: %d allocations and %d packets outstanding\n", a, p);
	pr_info("vrouter: unloaded (allocations outstanding %d, packets outstanding %d)\n", a, p);
}

module_init(vr_init);
module_exit(vr_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vrouter datapath (dp-core) for Linux");
MODULE_VERSION("0.1");
