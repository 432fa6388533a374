/*
 * vrouter.ko for FreeBSD: dp-core as a KLD.
 *
 *   /dev/vrouter        control: write one request of include/vr_msg.h,
 *                       read back all its replies (one buffer per open)
 *   /dev/vrouter_flow   the flow table, read-only mmap (the agent's view)
 *   /dev/vrouter_pkt0   pkt0: read one trapped frame (pkt0 header + frame)
 *                       per read, write one frame to inject
 *   vhost0              an Ethernet ifnet: the host's own fabric interface
 *   ifnet hooks         a fabric or virtual vif (bhyve's tap) names an ifnet;
 *                       its if_input is replaced by ours while attached
 *
 * Loader tunables (read-only sysctls): net.vrouter.{flows,vifs,nexthops,
 * vrfs,labels}.  dp-core runs under one mutex; its transmit callback only
 * queues, frames leave after the mutex is dropped.
 *
 * Compile-checked only (docs/freebsd.md): never loaded in a FreeBSD kernel.
 */
#include <sys/param.h>
#include <sys/systm.h>
#include <sys/conf.h>
#include <sys/eventhandler.h>
#include <sys/fcntl.h>
#include <sys/kernel.h>
#include <sys/limits.h>
#include <sys/lock.h>
#include <sys/malloc.h>
#include <sys/mbuf.h>
#include <sys/module.h>
#include <sys/mutex.h>
#include <sys/poll.h>
#include <sys/priv.h>
#include <sys/proc.h>
#include <sys/selinfo.h>
#include <sys/socket.h>
#include <sys/sockio.h>
#include <sys/sx.h>
#include <sys/sysctl.h>
#include <sys/uio.h>

#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_types.h>
#include <net/if_var.h>

#include <vm/vm.h>
#include <vm/pmap.h>

#include "vr_core.h"

MALLOC_DEFINE(M_VROUTER, "vrouter", "vrouter datapath");

static u_int vr_flows = 65536, vr_vifs = 256, vr_nhs = 16384, vr_vrfs = 4096,
	     vr_labels = 65536;
SYSCTL_NODE(_net, OID_AUTO, vrouter, CTLFLAG_RD | CTLFLAG_MPSAFE, 0, "vrouter datapath");
SYSCTL_UINT(_net_vrouter, OID_AUTO, flows, CTLFLAG_RDTUN, &vr_flows, 0,
	    "flow table entries (power of two)");
SYSCTL_UINT(_net_vrouter, OID_AUTO, vifs, CTLFLAG_RDTUN, &vr_vifs, 0, "interfaces");
SYSCTL_UINT(_net_vrouter, OID_AUTO, nexthops, CTLFLAG_RDTUN, &vr_nhs, 0, "nexthops");
SYSCTL_UINT(_net_vrouter, OID_AUTO, vrfs, CTLFLAG_RDTUN, &vr_vrfs, 0, "VRFs");
SYSCTL_UINT(_net_vrouter, OID_AUTO, labels, CTLFLAG_RDTUN, &vr_labels, 0, "MPLS labels");

#define PKT0_QLEN 1024
#define FRAME_MAX 9216

/* A vif's ifnet: input is diverted to us, the driver's own kept. */
struct vr_port {
	if_t ifp;
	uint32_t vif;
	if_input_fn_t saved_input; /* NULL for vhost0 (our own ifnet) */
};

static struct {
	struct vr_router r;
	struct mtx mtx;
	struct mbufq txq; /* under mtx: frames dp-core sent */
	struct vr_port **ports;
	void *flow_mem;
	size_t flow_len;
	if_t vhost;
	uint32_t vhost_vif;
	struct cdev *ctl_dev, *flow_dev, *pkt0_dev;
	struct mbufq pkt0q; /* under mtx: trapped frames for the agent */
	struct selinfo pkt0_sel;
	eventhandler_tag departure;
	int running;
} g;

/* Per-open control state: the replies of the last request. */
struct vr_ctl_file {
	uint8_t out[VR_MSG_MAX];
	size_t len, off;
};

/* ---------------------------------------------------------------- OS layer */

static void *bsd_zalloc(void *ctx, size_t n)
{
	(void)ctx;
	return malloc(n, M_VROUTER, (g.running ? M_NOWAIT : M_WAITOK) | M_ZERO);
}

static void bsd_free(void *ctx, void *p)
{
	(void)ctx;
	free(p, M_VROUTER);
}

static uint64_t bsd_now(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	nanouptime(&ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void bsd_lock(void *ctx)
{
	(void)ctx;
	mtx_lock(&g.mtx);
}

static void deliver(struct mbuf *m, uint32_t vif);

static void bsd_unlock(void *ctx)
{
	struct mbufq out;
	struct mbuf *m;

	(void)ctx;
	mbufq_init(&out, INT_MAX);
	mbufq_concat(&out, &g.txq);
	mtx_unlock(&g.mtx);
	while ((m = mbufq_dequeue(&out)) != NULL)
		deliver(m, m->m_pkthdr.flowid);
}

/* The vr_pkt of an mbuf: allocated beside it, linked both ways. */
static struct vr_pkt *wrap(struct mbuf *m)
{
	struct vr_pkt *p = malloc(sizeof(*p), M_VROUTER, M_NOWAIT);

	if (p == NULL) {
		m_freem(m);
		return NULL;
	}
	p->buf = (uint8_t *)M_START(m);
	p->size = (uint32_t)M_SIZE(m);
	p->off = (uint32_t)(mtod(m, uint8_t *) - p->buf);
	p->len = (uint32_t)m->m_len;
	p->os = m;
	return p;
}

static int cluster_size(uint32_t n)
{
	if (n <= MCLBYTES)
		return MCLBYTES;
	if (n <= MJUMPAGESIZE)
		return MJUMPAGESIZE;
	if (n <= MJUM9BYTES)
		return MJUM9BYTES;
	return 0;
}

static struct vr_pkt *bsd_pkt_alloc(void *ctx, uint32_t len)
{
	int size = cluster_size(VR_PKT_HEADROOM + len);
	struct mbuf *m;

	(void)ctx;
	if (size == 0)
		return NULL;
	m = m_getjcl(M_NOWAIT, MT_DATA, M_PKTHDR, size);
	if (m == NULL)
		return NULL;
	m->m_data += VR_PKT_HEADROOM;
	m->m_len = m->m_pkthdr.len = (int)len;
	return wrap(m);
}

static void bsd_pkt_free(void *ctx, struct vr_pkt *p)
{
	(void)ctx;
	m_freem(p->os);
	free(p, M_VROUTER);
}

/* Under the mutex: point the mbuf at the frame and queue it for vif. */
static int bsd_tx(void *ctx, uint32_t vif, uint32_t os_idx, struct vr_pkt *p)
{
	struct mbuf *m = p->os;

	uint8_t *data = p->buf + p->off;
	uint32_t len = p->len, bad = p->off + p->len > p->size;

	(void)ctx;
	(void)os_idx;
	free(p, M_VROUTER);
	if (bad) {
		m_freem(m);
		return -VR_EINVAL;
	}
	m->m_data = (caddr_t)data;
	m->m_len = m->m_pkthdr.len = (int)len;
	m->m_pkthdr.flowid = vif; /* which vif, for deliver() */
	if (mbufq_enqueue(&g.txq, m) != 0) {
		m_freem(m);
		return -VR_EBUSY;
	}
	return 0;
}

static const struct vr_os_ops bsd_ops = {
	.zalloc = bsd_zalloc,
	.free = bsd_free,
	.now_ns = bsd_now,
	.lock = bsd_lock,
	.unlock = bsd_unlock,
	.pkt_alloc = bsd_pkt_alloc,
	.pkt_free = bsd_pkt_free,
	.tx = bsd_tx,
};

/* After the mutex: hand a frame to vif's ifnet, vhost0's stack or the agent. */
static void deliver(struct mbuf *m, uint32_t vif)
{
	struct vr_vif *v;
	struct vr_port *port;
	if_t ifp = NULL;
	uint8_t type = 0;

	mtx_lock(&g.mtx);
	v = vr_vif_get(&g.r, vif);
	port = vif < vr_vifs ? g.ports[vif] : NULL;
	if (v != NULL)
		type = v->type;
	if (port != NULL) {
		ifp = port->ifp;
		if_ref(ifp);
	}
	if (type == VR_VIF_AGENT) {
		if (mbufq_enqueue(&g.pkt0q, m) == 0) {
			m = NULL;
			wakeup(&g.pkt0q);
			selwakeup(&g.pkt0_sel);
		}
	}
	mtx_unlock(&g.mtx);
	if (m == NULL)
		return;
	m->m_pkthdr.csum_flags = 0;
	m->m_pkthdr.flowid = 0;
	if (ifp == NULL) {
		m_freem(m);
		return;
	}
	if (ifp == g.vhost) {
		m->m_pkthdr.rcvif = ifp;
		if_input(ifp, m);
	} else {
		if_transmit(ifp, m);
	}
	if_rele(ifp);
}

/* ---------------------------------------------------------------- receive */

/* A frame we own (mbuf chain) enters dp-core on vif, copied into one
 * cluster with headroom when it is a chain, shared or short of headroom. */
static void vr_input(struct mbuf *m, uint32_t vif)
{
	struct vr_pkt *p;
	struct mbuf *n;
	int size, len = m->m_pkthdr.len;

	if (m->m_next != NULL || !M_WRITABLE(m) || M_LEADINGSPACE(m) < VR_PKT_HEADROOM) {
		size = cluster_size(VR_PKT_HEADROOM + (uint32_t)len);
		n = size ? m_getjcl(M_NOWAIT, MT_DATA, M_PKTHDR, size) : NULL;
		if (n == NULL) {
			m_freem(m);
			return;
		}
		n->m_data += VR_PKT_HEADROOM;
		m_copydata(m, 0, len, mtod(n, caddr_t));
		n->m_len = n->m_pkthdr.len = len;
		n->m_pkthdr.rcvif = m->m_pkthdr.rcvif;
		m_freem(m);
		m = n;
	}
	p = wrap(m);
	if (p != NULL)
		vr_rx(&g.r, vif, p);
}

static struct vr_port *port_of(if_t ifp)
{
	for (u_int i = 0; i < vr_vifs; i++)
		if (g.ports[i] != NULL && g.ports[i]->ifp == ifp)
			return g.ports[i];
	return NULL;
}

/* Replaces if_input of attached ifnets. */
static void vr_if_input(if_t ifp, struct mbuf *m)
{
	struct vr_port *port;
	uint32_t vif = VR_FLOW_NONE;

	mtx_lock(&g.mtx);
	port = port_of(ifp);
	if (port != NULL)
		vif = port->vif;
	mtx_unlock(&g.mtx);
	if (vif == VR_FLOW_NONE) {
		m_freem(m);
		return;
	}
	vr_input(m, vif);
}

/* vhost0 transmits into dp-core as the host vif. */
static int vhost_transmit(if_t ifp, struct mbuf *m)
{
	uint32_t vif = atomic_load_acq_32(&g.vhost_vif);

	(void)ifp;
	if (vif == VR_FLOW_NONE) {
		m_freem(m);
		return (ENETDOWN);
	}
	vr_input(m, vif);
	return (0);
}

static void vhost_qflush(if_t ifp)
{
	(void)ifp;
}

static void vhost_init(void *arg)
{
	if_setdrvflagbits(g.vhost, IFF_DRV_RUNNING, 0);
	(void)arg;
}

static int vhost_ioctl(if_t ifp, u_long cmd, caddr_t data)
{
	switch (cmd) {
	case SIOCSIFFLAGS:
	case SIOCADDMULTI:
	case SIOCDELMULTI:
		return (0);
	default:
		return (ether_ioctl(ifp, cmd, data));
	}
}

static int vhost_create(void)
{
	uint8_t mac[ETHER_ADDR_LEN] = {0x02, 0x00, 0x5e, 0x00, 0x00, 0x01};

	g.vhost = if_alloc(IFT_ETHER);
	if (g.vhost == NULL)
		return (ENOMEM);
	if_initname(g.vhost, "vhost", 0);
	if_setflags(g.vhost, IFF_BROADCAST | IFF_SIMPLEX | IFF_MULTICAST);
	if_setinitfn(g.vhost, vhost_init);
	if_setioctlfn(g.vhost, vhost_ioctl);
	if_settransmitfn(g.vhost, vhost_transmit);
	if_setqflushfn(g.vhost, vhost_qflush);
	ether_ifattach(g.vhost, mac);
	return (0);
}

/* ---------------------------------------------------------------- vif ports */

static void port_detach(uint32_t vif)
{
	struct vr_port *port = g.ports[vif];

	mtx_lock(&g.mtx);
	g.ports[vif] = NULL;
	mtx_unlock(&g.mtx);
	if (port->saved_input != NULL)
		if_setinputfn(port->ifp, port->saved_input);
	else
		atomic_store_rel_32(&g.vhost_vif, VR_FLOW_NONE);
	if_rele(port->ifp);
	free(port, M_VROUTER);
}

static void port_attach(uint32_t vif, if_t ifp)
{
	struct vr_port *port = malloc(sizeof(*port), M_VROUTER, M_WAITOK | M_ZERO);

	port->ifp = ifp;
	port->vif = vif;
	if (ifp == g.vhost) {
		atomic_store_rel_32(&g.vhost_vif, vif);
	} else {
		port->saved_input = if_getinputfn(ifp);
		if_setinputfn(ifp, vr_if_input);
	}
	mtx_lock(&g.mtx);
	g.ports[vif] = port;
	mtx_unlock(&g.mtx);
}

/* Make the ifnet side match dp-core's vif table (after a vif message). */
static void reconcile(void)
{
	for (u_int i = 0; i < vr_vifs; i++) {
		char name[VR_NAME_LEN] = "";
		struct vr_vif *v;
		uint8_t type = 0;
		if_t ifp = NULL;

		mtx_lock(&g.mtx);
		v = vr_vif_get(&g.r, i);
		if (v != NULL) {
			type = v->type;
			memcpy(name, v->name, sizeof(name));
			name[sizeof(name) - 1] = '\0';
		}
		mtx_unlock(&g.mtx);
		if (type == VR_VIF_HOST) {
			ifp = g.vhost;
			if_ref(ifp);
		} else if (type == VR_VIF_FABRIC || type == VR_VIF_VIRTUAL) {
			ifp = name[0] ? ifunit_ref(name) : NULL;
		}
		if (g.ports[i] != NULL && g.ports[i]->ifp != ifp)
			port_detach(i);
		if (ifp != NULL && g.ports[i] == NULL)
			port_attach(i, ifp); /* keeps the reference */
		else if (ifp != NULL)
			if_rele(ifp);
	}
}

static void vr_ifnet_departure(void *arg, if_t ifp)
{
	(void)arg;
	for (u_int i = 0; i < vr_vifs; i++)
		if (g.ports[i] != NULL && g.ports[i]->ifp == ifp)
			port_detach(i);
}

/* ---------------------------------------------------------------- devices */

static struct sx ctl_sx; /* one control request at a time */
SX_SYSINIT(vrouter_ctl, &ctl_sx, "vrouter control");

static void ctl_dtor(void *data)
{
	free(data, M_VROUTER);
}

static int ctl_open(struct cdev *dev, int flags, int fmt, struct thread *td)
{
	struct vr_ctl_file *f;
	int error;

	(void)dev;
	(void)flags;
	(void)fmt;
	error = priv_check(td, PRIV_NET_ROUTE);
	if (error)
		return (error);
	f = malloc(sizeof(*f), M_VROUTER, M_WAITOK | M_ZERO);
	error = devfs_set_cdevpriv(f, ctl_dtor);
	if (error)
		free(f, M_VROUTER);
	return (error);
}

/* One write = one request; its replies wait for the next reads. */
static int ctl_write(struct cdev *dev, struct uio *uio, int ioflag)
{
	struct vr_ctl_file *f;
	uint8_t *in;
	size_t n = uio->uio_resid;
	int error, rn, vif_msg;

	(void)dev;
	(void)ioflag;
	if ((error = devfs_get_cdevpriv((void **)&f)) != 0)
		return (error);
	if (n == 0 || n > VR_MSG_MAX)
		return (EMSGSIZE);
	in = malloc(n, M_VROUTER, M_WAITOK);
	error = uiomove(in, (int)n, uio);
	if (error == 0) {
		sx_xlock(&ctl_sx);
		rn = vr_msg_handle(&g.r, in, n, f->out, sizeof(f->out));
		vif_msg = n > 4 && in[4] == VR_OBJ_VIF;
		if (vif_msg)
			reconcile();
		sx_xunlock(&ctl_sx);
		f->len = rn > 0 ? (size_t)rn : 0;
		f->off = 0;
		if (rn <= 0)
			error = EMSGSIZE;
	}
	free(in, M_VROUTER);
	return (error);
}

static int ctl_read(struct cdev *dev, struct uio *uio, int ioflag)
{
	struct vr_ctl_file *f;
	size_t n;
	int error;

	(void)dev;
	(void)ioflag;
	if ((error = devfs_get_cdevpriv((void **)&f)) != 0)
		return (error);
	n = MIN((size_t)uio->uio_resid, f->len - f->off);
	error = uiomove(f->out + f->off, (int)n, uio);
	if (error == 0)
		f->off += n;
	return (error);
}

static struct cdevsw ctl_cdevsw = {
	.d_version = D_VERSION,
	.d_name = "vrouter",
	.d_open = ctl_open,
	.d_read = ctl_read,
	.d_write = ctl_write,
};

/* The flow table, read-only: changes go through messages. */
static int flow_mmap(struct cdev *dev, vm_ooffset_t off, vm_paddr_t *paddr, int prot,
		     vm_memattr_t *attr)
{
	(void)dev;
	(void)attr;
	if (prot & VM_PROT_WRITE)
		return (EPERM);
	if (off >= (vm_ooffset_t)round_page(g.flow_len))
		return (EINVAL);
	*paddr = vtophys((char *)g.flow_mem + off);
	return (0);
}

static int flow_read(struct cdev *dev, struct uio *uio, int ioflag)
{
	size_t n;

	(void)dev;
	(void)ioflag;
	if (uio->uio_offset < 0 || (size_t)uio->uio_offset >= g.flow_len)
		return (0);
	n = MIN((size_t)uio->uio_resid, g.flow_len - (size_t)uio->uio_offset);
	return (uiomove((char *)g.flow_mem + uio->uio_offset, (int)n, uio));
}

static struct cdevsw flow_cdevsw = {
	.d_version = D_VERSION,
	.d_name = "vrouter_flow",
	.d_read = flow_read,
	.d_mmap = flow_mmap,
};

static int pkt0_read(struct cdev *dev, struct uio *uio, int ioflag)
{
	struct mbuf *m;
	int error = 0;

	(void)dev;
	mtx_lock(&g.mtx);
	while ((m = mbufq_dequeue(&g.pkt0q)) == NULL) {
		if (ioflag & O_NONBLOCK) {
			mtx_unlock(&g.mtx);
			return (EWOULDBLOCK);
		}
		error = mtx_sleep(&g.pkt0q, &g.mtx, PCATCH, "vrpkt0", 0);
		if (error) {
			mtx_unlock(&g.mtx);
			return (error);
		}
	}
	mtx_unlock(&g.mtx);
	error = uiomove(mtod(m, void *), MIN((int)uio->uio_resid, m->m_len), uio);
	m_freem(m);
	return (error);
}

static int pkt0_write(struct cdev *dev, struct uio *uio, int ioflag)
{
	struct vr_vif *v;
	struct mbuf *m;
	uint32_t vif = VR_FLOW_NONE;
	int len = (int)uio->uio_resid, error;

	(void)dev;
	(void)ioflag;
	if (len < (int)VR_PKT0_HDR_LEN + ETHER_HDR_LEN || len > FRAME_MAX)
		return (EINVAL);
	m = m_getjcl(M_WAITOK, MT_DATA, M_PKTHDR, cluster_size(VR_PKT_HEADROOM + (uint32_t)len));
	m->m_data += VR_PKT_HEADROOM;
	m->m_len = m->m_pkthdr.len = len;
	error = uiomove(mtod(m, void *), len, uio);
	if (error) {
		m_freem(m);
		return (error);
	}
	mtx_lock(&g.mtx);
	for (u_int i = 0; i < vr_vifs; i++) {
		v = vr_vif_get(&g.r, i);
		if (v != NULL && v->type == VR_VIF_AGENT) {
			vif = i;
			break;
		}
	}
	mtx_unlock(&g.mtx);
	if (vif == VR_FLOW_NONE) {
		m_freem(m);
		return (ENXIO);
	}
	vr_input(m, vif);
	return (0);
}

static int pkt0_poll(struct cdev *dev, int events, struct thread *td)
{
	int revents = events & (POLLOUT | POLLWRNORM);

	(void)dev;
	mtx_lock(&g.mtx);
	if (events & (POLLIN | POLLRDNORM)) {
		if (mbufq_len(&g.pkt0q) > 0)
			revents |= events & (POLLIN | POLLRDNORM);
		else
			selrecord(td, &g.pkt0_sel);
	}
	mtx_unlock(&g.mtx);
	return (revents);
}

static struct cdevsw pkt0_cdevsw = {
	.d_version = D_VERSION,
	.d_name = "vrouter_pkt0",
	.d_read = pkt0_read,
	.d_write = pkt0_write,
	.d_poll = pkt0_poll,
};

/* ---------------------------------------------------------------- module */

static int check_params(void)
{
	if (vr_flows < 1024 || vr_flows > (1u << 22) || (vr_flows & (vr_flows - 1)) ||
	    vr_vifs < 8 || vr_vifs > 4096 || vr_nhs < 16 || vr_nhs > (1u << 20) ||
	    vr_vrfs < 1 || vr_vrfs > 65536 || vr_labels < 16 || vr_labels > (1u << 20)) {
		printf("vrouter: a net.vrouter tunable is out of range\n");
		return (EINVAL);
	}
	return (0);
}

static void vr_unload(void)
{
	struct mbuf *m;

	if (g.departure != NULL)
		EVENTHANDLER_DEREGISTER(ifnet_departure_event, g.departure);
	if (g.ctl_dev != NULL)
		destroy_dev(g.ctl_dev);
	if (g.flow_dev != NULL)
		destroy_dev(g.flow_dev);
	if (g.pkt0_dev != NULL)
		destroy_dev(g.pkt0_dev);
	for (u_int i = 0; g.ports != NULL && i < vr_vifs; i++)
		if (g.ports[i] != NULL)
			port_detach(i);
	if (g.vhost != NULL) {
		ether_ifdetach(g.vhost);
		if_free(g.vhost);
	}
	if (g.running)
		vr_router_fini(&g.r);
	while ((m = mbufq_dequeue(&g.txq)) != NULL)
		m_freem(m);
	while ((m = mbufq_dequeue(&g.pkt0q)) != NULL)
		m_freem(m);
	seldrain(&g.pkt0_sel);
	free(g.flow_mem, M_VROUTER);
	free(g.ports, M_VROUTER);
	mtx_destroy(&g.mtx);
}

static int vr_load(void)
{
	struct vr_config cfg;
	int error;

	if ((error = check_params()) != 0)
		return (error);
	memset(&g, 0, sizeof(g));
	mtx_init(&g.mtx, "vrouter", NULL, MTX_DEF);
	mbufq_init(&g.txq, INT_MAX);
	mbufq_init(&g.pkt0q, PKT0_QLEN);
	g.vhost_vif = VR_FLOW_NONE;
	g.flow_len = sizeof(struct vr_flow_shm_hdr) + (size_t)vr_flows * sizeof(struct vr_flow_entry);
	/* Page-aligned, so each page of the table can be mapped by the agent. */
	g.flow_mem = malloc(round_page(g.flow_len), M_VROUTER, M_WAITOK | M_ZERO);
	g.ports = malloc(vr_vifs * sizeof(*g.ports), M_VROUTER, M_WAITOK | M_ZERO);
	memset(&cfg, 0, sizeof(cfg));
	cfg.max_vifs = vr_vifs;
	cfg.max_nhs = vr_nhs;
	cfg.max_vrfs = vr_vrfs;
	cfg.max_labels = vr_labels;
	cfg.flow_mem = g.flow_mem;
	cfg.flow_mem_len = g.flow_len;
	if (vr_router_init(&g.r, &bsd_ops, NULL, &cfg) != 0) {
		error = ENOMEM;
		goto fail;
	}
	g.running = 1;
	if ((error = vhost_create()) != 0)
		goto fail;
	g.departure = EVENTHANDLER_REGISTER(ifnet_departure_event, vr_ifnet_departure, NULL,
					    EVENTHANDLER_PRI_ANY);
	g.ctl_dev = make_dev(&ctl_cdevsw, 0, UID_ROOT, GID_WHEEL, 0600, "vrouter");
	g.flow_dev = make_dev(&flow_cdevsw, 0, UID_ROOT, GID_WHEEL, 0444, "vrouter_flow");
	g.pkt0_dev = make_dev(&pkt0_cdevsw, 0, UID_ROOT, GID_WHEEL, 0600, "vrouter_pkt0");
	printf("vrouter: loaded: %u flows, %u vifs\n", vr_flows, vr_vifs);
	return (0);
fail:
	vr_unload();
	return (error);
}

static int vr_modevent(module_t mod, int type, void *arg)
{
	(void)mod;
	(void)arg;
	switch (type) {
	case MOD_LOAD:
		return (vr_load());
	case MOD_UNLOAD:
		vr_unload();
		return (0);
	default:
		return (EOPNOTSUPP);
	}
}

static moduledata_t vr_mod = {"vrouter", vr_modevent, NULL};
DECLARE_MODULE(vrouter, vr_mod, SI_SUB_PSEUDO, SI_ORDER_ANY);
MODULE_VERSION(vrouter, 1);
