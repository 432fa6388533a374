/*
 * STAND-IN, compile check only (see ck_queue.h): the one ConcurrencyKit
 * type <sys/epoch.h> embeds, opaque here.  Not the real layout.
 */
#ifndef VR_COMPAT_CK_EPOCH_H
#define VR_COMPAT_CK_EPOCH_H
typedef struct ck_epoch_section {
	unsigned int bucket;
} ck_epoch_section_t;
#endif
