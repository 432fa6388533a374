/*
 * Offloads a VM leaves to its NIC, finished in userspace: a frame read from a
 * packet socket with PACKET_VNET_HDR may carry only the pseudo-header sum in
 * its TCP/UDP checksum (NEEDS_CSUM), and may be one large TCP or UDP send
 * (GSO) to be cut into gso_size payloads.  Plain C, no OS headers, so the unit
 * tests and the fuzz target run it as vrouterd does.
 */
#ifndef VR_OFFLOAD_H
#define VR_OFFLOAD_H

#include <stdint.h>

/* struct virtio_net_hdr, fields in host order. */
#define OFF_F_NEEDS_CSUM 1u
#define OFF_GSO_NONE 0u
#define OFF_GSO_TCPV4 1u
#define OFF_GSO_UDP 3u /* UFO (IP fragments): no kernel sends it; refused */
#define OFF_GSO_TCPV6 4u
#define OFF_GSO_UDP_L4 5u
#define OFF_GSO_ECN 0x80u

struct off_vnet {
	uint8_t flags, gso_type;
	uint16_t hdr_len, gso_size, csum_start, csum_offset;
};

enum off_err {
	OFF_OK = 0,
	OFF_E_CSUM,   /* csum_start/csum_offset outside the frame */
	OFF_E_GSO,    /* unknown gso_type, gso_size 0, or a segment too big */
	OFF_E_HDR,    /* Ethernet/IP/L4 headers missing, beyond the frame, inconsistent */
	OFF_E_MAX
};

/* How to cut one GSO frame; filled by off_gso_plan. */
struct off_gso_plan {
	uint32_t l3, l4, hlen; /* offsets of the IP header, L4 header, payload */
	uint32_t paylen, mss, nseg;
	uint8_t ipv6, proto;
};

/* Finish a partial checksum in place: the one's complement sum from start to
 * the end of the frame, stored at start + offset (UDP's 0 sent as 0xffff). */
enum off_err off_csum_finish(uint8_t *f, uint32_t len, uint32_t start, uint32_t offset);

/* Check a GSO frame and plan its segments: each carries at most gso_size
 * bytes, and TCP also at most mtu - IP/TCP headers (mtu 0: no limit) and
 * max_len - hlen (a segment's frame fits max_len bytes). */
enum off_err off_gso_plan(const uint8_t *f, uint32_t len, const struct off_vnet *h, uint32_t mtu,
			  uint32_t max_len, struct off_gso_plan *pl);

/* Write segment i (< nseg) of a planned frame to out (room for hlen + mss);
 * returns its length.  Headers fixed up: IP length, IPv4 id and checksum,
 * TCP sequence and flags (CWR on the first only, FIN/PSH on the last only),
 * UDP length, full L4 checksum. */
uint32_t off_gso_build(const uint8_t *f, const struct off_gso_plan *pl, uint32_t i, uint8_t *out);

/* The one's complement sum of a buffer added to sum (not folded). */
uint64_t off_sum(const uint8_t *d, uint32_t len, uint64_t sum);
uint16_t off_fold(uint64_t sum);

#endif
