/*
 * STAND-IN, compile check only: FreeBSD's kernel gets ck_queue.h from
 * ConcurrencyKit under /usr/src/sys/contrib/ck; the ziglang wheel's headers
 * do not carry it.  These map the CK_ list macros that <net/if_var.h> and
 * <sys/epoch.h> use onto <sys/queue.h> ones of the same shape, so the
 * compile check is a parse-and-type check of our glue, not a layout check
 * of struct ifnet.  A real build (make with bsd.kmod.mk) never sees this
 * directory.
 */
#ifndef VR_COMPAT_CK_QUEUE_H
#define VR_COMPAT_CK_QUEUE_H
#include <sys/queue.h>
#define CK_STAILQ_HEAD STAILQ_HEAD
#define CK_STAILQ_ENTRY STAILQ_ENTRY
#define CK_LIST_HEAD LIST_HEAD
#define CK_LIST_ENTRY LIST_ENTRY
#define CK_SLIST_HEAD SLIST_HEAD
#define CK_SLIST_ENTRY SLIST_ENTRY
#endif
