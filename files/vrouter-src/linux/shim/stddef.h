/* dp-core includes <stddef.h>: the kernel's size_t, NULL and offsetof. */
#ifndef VR_SHIM_STDDEF_H
#define VR_SHIM_STDDEF_H
#include <linux/types.h>
#include <linux/stddef.h>
#endif
