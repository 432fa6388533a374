/* Small helpers shared by dp-core: byte order and memory, no OS headers. */
#ifndef VR_UTIL_H
#define VR_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define vr_memcpy(d, s, n) __builtin_memcpy((d), (s), (n))
#define vr_memmove(d, s, n) __builtin_memmove((d), (s), (n))
#define vr_memset(d, c, n) __builtin_memset((d), (c), (n))
#define vr_memcmp(a, b, n) __builtin_memcmp((a), (b), (n))
#define VR_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static inline uint16_t vr_get_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t vr_get_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t vr_get_be64(const uint8_t *p)
{
	return ((uint64_t)vr_get_be32(p) << 32) | vr_get_be32(p + 4);
}

static inline void vr_put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void vr_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void vr_put_be64(uint8_t *p, uint64_t v)
{
	vr_put_be32(p, (uint32_t)(v >> 32));
	vr_put_be32(p + 4, (uint32_t)v);
}

#endif
