/*
 * vrouterd: dp-core in userspace.  Virtual and fabric vifs are Linux
 * interfaces (an existing interface is used through AF_PACKET, a missing one
 * is created as a TAP unless --attach-only), pkt0 is a unix datagram socket
 * pair in --pkt0-dir,
 * control messages arrive on a unix SOCK_SEQPACKET socket, and the flow table
 * lives in an mmapped file the agent can map read-only.
 *
 *   vrouterd --control PATH [--pkt0-dir DIR] [--pkt0-queue N] [--flow-file PATH]
 *            [--flows N] [--attach-only]
 *
 * --attach-only: a vif naming a missing interface stays detached (a later vif
 * message attaches it once it exists).  With Nova, libvirt creates a guest's
 * tap and fails if the name is taken, so the datapath must never create it.
 *
 * Packet sockets use PACKET_VNET_HDR: a VM's frames arrive with the checksum
 * and segmentation offloads it asked for still to do (offload.c does them,
 * then each segment enters dp-core as an ordinary frame); frames we send
 * carry a zero header (no offload asked of the kernel).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "offload.h"
#include "vr_core.h"

#define MAX_VIFS 256
#define MAX_CLIENTS 16
#define FRAME_MAX 9216
#define RX_BURST 64
#define PKT0_QUEUE_DEFAULT 4096     /* messages waiting for the agent's socket */
#define PKT0_QUEUE_BYTES (16u << 20) /* and at most this many bytes of them */
#define LOST_MAX 1024               /* lost flow misses awaiting re-arming */
#define GSO_FRAME_MAX (65536 + 64)  /* a GSO frame: 64 KiB of IP, L2 headers */

enum port_kind { PORT_NONE, PORT_PACKET, PORT_TAP, PORT_AGENT };

struct port {
	int fd;
	enum port_kind kind;
	unsigned ifindex; /* PORT_PACKET: the interface bound to */
	int vnet;         /* PORT_PACKET: a virtio_net_hdr precedes each frame */
	char name[VR_NAME_LEN];
};

static struct port ports[MAX_VIFS];
static struct vr_router router;
static int agent_fd = -1;
static struct sockaddr_un agent_peer;
static volatile sig_atomic_t stopping;
static int attach_only; /* never create a TAP for a missing interface */

/*
 * pkt0 backlog.  The agent's socket queues only net.unix.max_dgram_qlen
 * (10) datagrams, so a burst of flow misses would overflow it.  Messages that
 * do not fit wait here in order; the main loop retries every millisecond
 * while any wait (an unconnected datagram socket gives no POLLOUT for its
 * peer's queue).  Bounded: past the limit the oldest is dropped (dropstats
 * TX_FAILED).
 */
struct pkt0_msg {
	uint32_t len;
	uint32_t flow, gen; /* a flow miss's flow and its generation, else VR_FLOW_NONE */
	uint8_t data[];
};

static struct pkt0_msg **pq;
static uint32_t pq_cap = PKT0_QUEUE_DEFAULT, pq_head, pq_len;
static size_t pq_bytes;

/*
 * A flow miss that never reached the agent leaves its flow held for ever:
 * later packets of the flow are held, not trapped.  Such flows are removed
 * once dp-core has returned (not from inside its tx call), so the next
 * packet creates the flow again and traps again.
 */
static struct {
	uint32_t flow, gen;
} lost[LOST_MAX];
static uint32_t nlost;
static uint64_t pkt0_dropped, pkt0_rearmed, pkt0_unrearmed;

/* Offloaded frames: done, and refused by reason (counted as invalid_packet). */
static uint64_t off_csums, off_gso_frames, off_gso_segs, off_refused[OFF_E_MAX], off_too_big;
static const char *const off_reason[OFF_E_MAX] = {"ok", "checksum offsets", "gso type/size",
						  "headers"};

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logmsg(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("vrouterd: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* ---------------- the OS layer for dp-core ---------------- */

static void *h_zalloc(void *ctx, size_t n)
{
	(void)ctx;
	return calloc(1, n);
}

static void h_free(void *ctx, void *p)
{
	(void)ctx;
	free(p);
}

static uint64_t h_now(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void h_lock(void *ctx)
{
	(void)ctx; /* one thread does everything */
}

static struct vr_pkt *h_pkt_alloc(void *ctx, uint32_t len)
{
	struct vr_pkt *p;

	(void)ctx;
	if (len > FRAME_MAX)
		return NULL;
	p = malloc(sizeof(*p) + VR_PKT_HEADROOM + FRAME_MAX);
	if (!p)
		return NULL;
	p->buf = (uint8_t *)(p + 1);
	p->size = VR_PKT_HEADROOM + FRAME_MAX;
	p->off = VR_PKT_HEADROOM;
	p->len = len;
	p->os = NULL;
	return p;
}

static void h_pkt_free(void *ctx, struct vr_pkt *p)
{
	(void)ctx;
	free(p);
}

/* ---------------- pkt0 to the agent ---------------- */

/* 0 sent, 1 the agent's queue is full, -1 lost (no agent, too big). */
static int pkt0_sendto(const uint8_t *d, size_t len)
{
	if (sendto(agent_fd, d, len, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&agent_peer,
		   sizeof(agent_peer)) >= 0)
		return 0;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS || errno == EINTR)
		return 1;
	return -1;
}

static void note_lost(uint32_t flow, uint32_t gen)
{
	if (flow == VR_FLOW_NONE)
		return;
	if (nlost < LOST_MAX)
		lost[nlost++] = (typeof(lost[0])){flow, gen};
	else
		pkt0_unrearmed++;
}

/* Remove the flows whose miss was lost, if they are still the same held flow. */
static void rearm_lost(void)
{
	for (uint32_t i = 0; i < nlost; i++) {
		uint32_t idx = lost[i].flow;
		struct vr_flow_entry *e;

		if (idx >= router.nflows)
			continue;
		e = &router.flows[idx];
		if (!(e->flags & VR_FLOW_F_VALID) || e->gen != lost[i].gen ||
		    e->action != VR_FLOW_HOLD)
			continue; /* gone, reused or decided meanwhile */
		vr_hold_drop(&router, idx);
		vr_flow_remove(&router, idx);
		pkt0_rearmed++;
	}
	nlost = 0;
}

static void pkt0_drop_oldest(void)
{
	struct pkt0_msg *m = pq[pq_head];

	pq_head = (pq_head + 1) % pq_cap;
	pq_len--;
	pq_bytes -= m->len;
	note_lost(m->flow, m->gen);
	free(m);
	pkt0_dropped++;
	vr_drop(&router, NULL, VR_DROP_TX_FAILED);
	if (!(pkt0_dropped & (pkt0_dropped - 1))) /* 1st, 2nd, 4th...: a bounded log */
		logmsg("pkt0: %llu messages dropped (agent queue full or no agent)",
		       (unsigned long long)pkt0_dropped);
}

/* Send what waits, in order, until the agent's queue is full again. */
static void pkt0_flush(void)
{
	while (pq_len) {
		struct pkt0_msg *m = pq[pq_head];
		int rc = pkt0_sendto(m->data, m->len);

		if (rc > 0)
			break;
		if (rc < 0) {
			pkt0_drop_oldest();
			continue;
		}
		pq_head = (pq_head + 1) % pq_cap;
		pq_len--;
		pq_bytes -= m->len;
		free(m);
	}
	rearm_lost();
}

/* dp-core's transmit to the agent vif: send now, or queue behind what waits. */
static ssize_t pkt0_tx(const uint8_t *d, uint32_t len)
{
	uint32_t flow = VR_FLOW_NONE, gen = 0;
	struct pkt0_msg *m;

	if (len >= VR_PKT0_HDR_LEN && ((uint32_t)d[8] << 8 | d[9]) == VR_TRAP_FLOW_MISS) {
		flow = (uint32_t)d[12] << 24 | (uint32_t)d[13] << 16 | (uint32_t)d[14] << 8 | d[15];
		if (flow < router.nflows)
			gen = router.flows[flow].gen;
		else
			flow = VR_FLOW_NONE;
	}
	if (!pq_len) {
		int rc = pkt0_sendto(d, len);

		if (rc == 0)
			return 0;
		if (rc < 0) {
			note_lost(flow, gen);
			return -1;
		}
	}
	while (pq_len && (pq_len == pq_cap || pq_bytes + len > PKT0_QUEUE_BYTES))
		pkt0_drop_oldest();
	m = malloc(sizeof(*m) + len);
	if (!m) {
		note_lost(flow, gen);
		return -1;
	}
	m->len = len;
	m->flow = flow;
	m->gen = gen;
	memcpy(m->data, d, len);
	pq[(pq_head + pq_len) % pq_cap] = m;
	pq_len++;
	pq_bytes += len;
	return 0;
}

static int h_tx(void *ctx, uint32_t vif, uint32_t os_idx, struct vr_pkt *p)
{
	const uint8_t *d = p->buf + p->off;
	ssize_t n = -1;

	(void)ctx;
	(void)os_idx;
	if (vif < MAX_VIFS) {
		switch (ports[vif].kind) {
		case PORT_PACKET:
			if (ports[vif].vnet) {
				static const struct virtio_net_hdr none; /* no offload asked */
				struct iovec iov[2] = {{(void *)&none, sizeof(none)},
						       {(void *)d, p->len}};
				struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};

				n = sendmsg(ports[vif].fd, &mh, MSG_DONTWAIT);
			} else {
				n = send(ports[vif].fd, d, p->len, MSG_DONTWAIT);
			}
			break;
		case PORT_TAP:
			n = write(ports[vif].fd, d, p->len);
			break;
		case PORT_AGENT:
			n = pkt0_tx(d, p->len);
			break;
		default:
			break;
		}
	}
	free(p);
	return n < 0 ? -VR_EBUSY : 0;
}

static const struct vr_os_ops host_ops = {
	.zalloc = h_zalloc,
	.free = h_free,
	.now_ns = h_now,
	.lock = h_lock,
	.unlock = h_lock,
	.pkt_alloc = h_pkt_alloc,
	.pkt_free = h_pkt_free,
	.tx = h_tx,
};

/* ---------------- vif ports ---------------- */

static int open_packet(const char *name, unsigned *ifindex, int *vnet)
{
	struct sockaddr_ll sll;
	int fd, one = 1;
	unsigned idx = if_nametoindex(name);

	*ifindex = idx;
	if (!idx)
		return -1;
	fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL));
	if (fd < 0)
		return -1;
	/* Our own transmissions and the host stack's are not input. */
	setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
	/* Without it a VM's TSO send is one truncated frame and its checksums are
	 * left undone; with it the kernel says what is left to do. */
	*vnet = !setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one));
	if (!*vnet)
		logmsg("%s: no PACKET_VNET_HDR (%s): offloaded frames pass unfinished", name,
		       strerror(errno));
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = (int)idx;
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll))) {
		close(fd);
		return -1;
	}
	return fd;
}

static int open_tap(const char *name)
{
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr)) {
		close(fd);
		return -1;
	}
	return fd;
}

static void close_port(uint32_t i)
{
	if (ports[i].kind == PORT_PACKET || ports[i].kind == PORT_TAP)
		close(ports[i].fd);
	if (ports[i].kind != PORT_NONE)
		logmsg("vif %u: detached %s", i, ports[i].name);
	memset(&ports[i], 0, sizeof(ports[i]));
	ports[i].fd = -1;
}

/* Make the OS side match the vif table after a control message. */
static void reconcile_ports(void)
{
	for (uint32_t i = 0; i < MAX_VIFS; i++) {
		struct vr_vif *v = vr_vif_get(&router, i);
		struct port *p = &ports[i];

		/* An interface deleted and made again under the same name (a guest's
		 * tap after a hard reboot) has a new index: bind to the new one. */
		if (p->kind != PORT_NONE &&
		    (!v || strcmp(p->name, v->name) || (v->type == VR_VIF_AGENT) != (p->kind == PORT_AGENT) ||
		     (p->kind == PORT_PACKET && if_nametoindex(p->name) != p->ifindex)))
			close_port(i);
		if (!v || p->kind != PORT_NONE)
			continue;
		if (v->type == VR_VIF_AGENT) {
			if (agent_fd >= 0) {
				p->kind = PORT_AGENT;
				p->fd = agent_fd;
				snprintf(p->name, sizeof(p->name), "%s", v->name);
				logmsg("vif %u: agent on pkt0 socket", i);
			}
			continue;
		}
		if (!v->name[0])
			continue;
		p->fd = open_packet(v->name, &p->ifindex, &p->vnet);
		p->kind = PORT_PACKET;
		if (p->fd < 0 && !p->ifindex && attach_only) {
			logmsg("vif %u: %s is not there; detached until a vif message finds it", i,
			       v->name);
			p->kind = PORT_NONE;
			continue;
		}
		if (p->fd < 0 && !p->ifindex) {
			p->fd = open_tap(v->name);
			p->kind = PORT_TAP;
		}
		if (p->fd < 0) {
			logmsg("vif %u: cannot attach %s: %s", i, v->name, strerror(errno));
			p->kind = PORT_NONE;
			continue;
		}
		snprintf(p->name, sizeof(p->name), "%s", v->name);
		logmsg("vif %u: attached %s (%s)", i, v->name, p->kind == PORT_TAP ? "tap" : "packet");
	}
}

static void off_refuse(uint32_t vif, enum off_err e)
{
	uint64_t n = 0;

	off_refused[e]++;
	for (int k = 1; k < OFF_E_MAX; k++)
		n += off_refused[k];
	vr_drop(&router, NULL, VR_DROP_INVALID_PACKET);
	if (!(n & (n - 1))) /* 1st, 2nd, 4th...: a bounded log */
		logmsg("vif %u: offloaded frame refused (bad %s); %llu so far", vif, off_reason[e],
		       (unsigned long long)n);
}

/* One frame read with its virtio_net_hdr: finish what the sender left to the
 * NIC, then hand dp-core the frame, or its segments one by one.  p holds the
 * first FRAME_MAX bytes; a longer frame continues in big + FRAME_MAX. */
static void vnet_rx(uint32_t i, const struct virtio_net_hdr *vh, struct vr_pkt *p, size_t len,
		    uint8_t *big)
{
	struct off_vnet h = {vh->flags, vh->gso_type, vh->hdr_len, vh->gso_size, vh->csum_start,
			     vh->csum_offset};
	struct vr_vif *v = vr_vif_get(&router, i);
	struct off_gso_plan pl;
	enum off_err e;
	uint8_t *f = p->buf + p->off;

	if (h.gso_type == OFF_GSO_NONE) {
		if (len > FRAME_MAX) {
			off_too_big++;
			vr_drop(&router, p, VR_DROP_INVALID_PACKET);
			return;
		}
		p->len = (uint32_t)len;
		if ((h.flags & OFF_F_NEEDS_CSUM) &&
		    (e = off_csum_finish(f, p->len, h.csum_start, h.csum_offset))) {
			free(p);
			off_refuse(i, e);
			return;
		}
		off_csums += !!(h.flags & OFF_F_NEEDS_CSUM);
		vr_rx(&router, i, p);
		rearm_lost();
		return;
	}
	if (len > FRAME_MAX) { /* make the frame contiguous */
		memcpy(big, f, FRAME_MAX);
		f = big;
	}
	e = off_gso_plan(f, (uint32_t)len, &h, v ? v->mtu : 0, FRAME_MAX, &pl);
	if (e) {
		free(p);
		off_refuse(i, e);
		return;
	}
	off_gso_frames++;
	for (uint32_t s = 0; s < pl.nseg; s++) {
		/* p's buffer takes a segment only once the frame has left it */
		struct vr_pkt *seg = !s && f == big ? p : h_pkt_alloc(NULL, 0);

		if (!seg) {
			vr_drop(&router, NULL, VR_DROP_NO_MEMORY);
			continue;
		}
		seg->len = off_gso_build(f, &pl, s, seg->buf + seg->off);
		off_gso_segs++;
		vr_rx(&router, i, seg);
		rearm_lost();
	}
	if (f != big)
		free(p);
}

static void port_rx(uint32_t i)
{
	static uint8_t big[GSO_FRAME_MAX];

	for (int n = 0; n < RX_BURST; n++) {
		struct vr_pkt *p = h_pkt_alloc(NULL, 0);
		ssize_t got;

		if (!p)
			return;
		if (ports[i].kind == PORT_PACKET && ports[i].vnet) {
			struct virtio_net_hdr vh;
			struct iovec iov[3] = {{&vh, sizeof(vh)},
					       {p->buf + p->off, FRAME_MAX},
					       {big + FRAME_MAX, sizeof(big) - FRAME_MAX}};
			struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 3};

			got = recvmsg(ports[i].fd, &mh, MSG_DONTWAIT | MSG_TRUNC);
			if (got < 0 && errno == EINVAL) { /* a GSO kind the kernel cannot describe */
				free(p);
				off_refuse(i, OFF_E_GSO);
				continue;
			}
			if (got < (ssize_t)sizeof(vh) || (mh.msg_flags & MSG_TRUNC)) {
				if (got >= (ssize_t)sizeof(vh)) { /* longer than any GSO frame */
					off_too_big++;
					vr_drop(&router, NULL, VR_DROP_INVALID_PACKET);
				}
				free(p);
				if (got < 0)
					return;
				continue;
			}
			vnet_rx(i, &vh, p, (size_t)got - sizeof(vh), big);
			continue;
		}
		if (ports[i].kind == PORT_AGENT)
			got = recv(agent_fd, p->buf + p->off, FRAME_MAX, MSG_DONTWAIT);
		else if (ports[i].kind == PORT_TAP)
			got = read(ports[i].fd, p->buf + p->off, FRAME_MAX);
		else
			got = recv(ports[i].fd, p->buf + p->off, FRAME_MAX, MSG_DONTWAIT);
		if (got <= 0) {
			free(p);
			return;
		}
		p->len = (uint32_t)got;
		vr_rx(&router, i, p);
		rearm_lost();
	}
}

/* ---------------- sockets and files ---------------- */

static int unix_socket(int type, const char *path, struct sockaddr_un *addr)
{
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);

	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	if (fd < 0 || strlen(path) >= sizeof(addr->sun_path)) {
		logmsg("%s: bad socket path", path);
		exit(1);
	}
	strcpy(addr->sun_path, path);
	return fd;
}

static int listen_control(const char *path)
{
	struct sockaddr_un a;
	int fd = unix_socket(SOCK_SEQPACKET, path, &a);

	unlink(path);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, MAX_CLIENTS)) {
		logmsg("%s: %s", path, strerror(errno));
		exit(1);
	}
	return fd;
}

static void open_pkt0(const char *dir)
{
	struct sockaddr_un a;
	char path[sizeof(a.sun_path)];

	snprintf(path, sizeof(path), "%s/dp.sock", dir);
	agent_fd = unix_socket(SOCK_DGRAM, path, &a);
	unlink(path);
	if (bind(agent_fd, (struct sockaddr *)&a, sizeof(a))) {
		logmsg("%s: %s", path, strerror(errno));
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/agent.sock", dir);
	memset(&agent_peer, 0, sizeof(agent_peer));
	agent_peer.sun_family = AF_UNIX;
	snprintf(agent_peer.sun_path, sizeof(agent_peer.sun_path), "%s", path);
}

static void *map_flows(const char *path, uint32_t nflows, size_t *len)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	void *m;

	*len = sizeof(struct vr_flow_shm_hdr) + (size_t)nflows * sizeof(struct vr_flow_entry);
	if (fd < 0 || ftruncate(fd, (off_t)*len)) {
		logmsg("%s: %s", path, strerror(errno));
		exit(1);
	}
	m = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED) {
		logmsg("%s: mmap: %s", path, strerror(errno));
		exit(1);
	}
	return m;
}

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: vrouterd --control PATH [--pkt0-dir DIR] [--pkt0-queue N] "
			"[--flow-file PATH] [--flows N (power of two)] [--attach-only]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"control", required_argument, NULL, 'c'},
		{"pkt0-dir", required_argument, NULL, 'p'},
		{"pkt0-queue", required_argument, NULL, 'q'},
		{"flow-file", required_argument, NULL, 'f'},
		{"flows", required_argument, NULL, 'n'},
		{"attach-only", no_argument, NULL, 'a'},
		{NULL, 0, NULL, 0},
	};
	static uint8_t in[VR_MSG_MAX + 64], out[VR_MSG_MAX];
	const char *control = NULL, *pkt0_dir = NULL, *flow_file = NULL;
	struct vr_config cfg = {.max_vifs = MAX_VIFS};
	int clients[MAX_CLIENTS], nclients = 0, lfd, c;
	unsigned long nflows = 65536;
	char *end;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			control = optarg;
			break;
		case 'p':
			pkt0_dir = optarg;
			break;
		case 'q':
			pq_cap = (uint32_t)strtoul(optarg, &end, 0);
			if (*end || !pq_cap || pq_cap > 65536) {
				fprintf(stderr, "vrouterd: --pkt0-queue: %s is not a count from 1 to 65536\n",
					optarg);
				exit(2);
			}
			break;
		case 'f':
			flow_file = optarg;
			break;
		case 'a':
			attach_only = 1;
			break;
		case 'n':
			nflows = strtoul(optarg, &end, 0);
			if (*end || !nflows || (nflows & (nflows - 1)) || nflows > (1ul << 24)) {
				fprintf(stderr, "vrouterd: --flows: %s is not a power of two up to 2^24\n",
					optarg);
				exit(2);
			}
			break;
		default:
			usage();
		}
	}
	if (!control || optind != argc)
		usage();
	for (int i = 0; i < MAX_VIFS; i++)
		ports[i].fd = -1;
	if (flow_file)
		cfg.flow_mem = map_flows(flow_file, (uint32_t)nflows, &cfg.flow_mem_len);
	if (vr_router_init(&router, &host_ops, NULL, &cfg)) {
		logmsg("cannot initialise the router");
		return 1;
	}
	pq = calloc(pq_cap, sizeof(*pq));
	if (!pq) {
		logmsg("cannot allocate the pkt0 queue");
		return 1;
	}
	if (pkt0_dir)
		open_pkt0(pkt0_dir);
	lfd = listen_control(control);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	logmsg("ready: control %s, %u flows", control, router.nflows);

	while (!stopping) {
		struct pollfd pfd[1 + MAX_CLIENTS + MAX_VIFS];
		uint32_t pvif[MAX_VIFS];
		int n = 0, nports = 0, base;

		pfd[n++] = (struct pollfd){.fd = lfd, .events = POLLIN};
		for (int i = 0; i < nclients; i++)
			pfd[n++] = (struct pollfd){.fd = clients[i], .events = POLLIN};
		base = n;
		for (uint32_t i = 0; i < MAX_VIFS; i++) {
			if (ports[i].kind == PORT_NONE)
				continue;
			/* pkt0 is polled once, as the agent vif. */
			pvif[nports++] = i;
			pfd[n++] = (struct pollfd){.fd = ports[i].fd, .events = POLLIN};
		}
		pkt0_flush();
		if (poll(pfd, (nfds_t)n, pq_len ? 1 : 200) < 0) {
			if (errno == EINTR)
				continue;
			logmsg("poll: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < nports; i++)
			if (pfd[base + i].revents & POLLIN)
				port_rx(pvif[i]);
		for (int i = nclients - 1; i >= 0; i--) {
			ssize_t got;
			int rn;

			if (!(pfd[1 + i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			got = recv(clients[i], in, sizeof(in), MSG_DONTWAIT);
			if (got <= 0) {
				if (got < 0 && (errno == EAGAIN || errno == EINTR))
					continue;
				close(clients[i]);
				clients[i] = clients[--nclients];
				continue;
			}
			rn = vr_msg_handle(&router, in, (size_t)got, out, sizeof(out));
			rearm_lost(); /* a released flow may have trapped again */
			if (rn > 0 && send(clients[i], out, (size_t)rn, MSG_NOSIGNAL) < 0)
				logmsg("reply: %s", strerror(errno));
			reconcile_ports();
		}
		if (pfd[0].revents & POLLIN) {
			int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (cfd >= 0 && nclients < MAX_CLIENTS)
				clients[nclients++] = cfd;
			else if (cfd >= 0)
				close(cfd);
		}
	}
	logmsg("stopping; pkt0: %llu queued messages dropped, %llu held flows re-armed, %llu not",
	       (unsigned long long)pkt0_dropped, (unsigned long long)pkt0_rearmed,
	       (unsigned long long)pkt0_unrearmed);
	logmsg("offloads: %llu checksums finished, %llu GSO frames cut into %llu segments; refused: "
	       "%llu bad checksum offsets, %llu bad gso type/size, %llu bad headers, %llu too big",
	       (unsigned long long)off_csums, (unsigned long long)off_gso_frames,
	       (unsigned long long)off_gso_segs, (unsigned long long)off_refused[OFF_E_CSUM],
	       (unsigned long long)off_refused[OFF_E_GSO], (unsigned long long)off_refused[OFF_E_HDR],
	       (unsigned long long)off_too_big);
	while (pq_len)
		pkt0_drop_oldest();
	free(pq);
	for (uint32_t i = 0; i < MAX_VIFS; i++)
		close_port(i);
	unlink(control);
	if (pkt0_dir) {
		char path[sizeof(agent_peer.sun_path)];
		snprintf(path, sizeof(path), "%s/dp.sock", pkt0_dir);
		unlink(path);
	}
	vr_router_fini(&router);
	if (cfg.flow_mem)
		munmap(cfg.flow_mem, cfg.flow_mem_len);
	return 0;
}
