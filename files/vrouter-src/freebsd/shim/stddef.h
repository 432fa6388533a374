/* dp-core includes <stddef.h>; in the FreeBSD kernel, <sys/types.h>
 * (size_t) and <sys/stddef.h>. */
#ifndef VR_SHIM_STDDEF_H
#define VR_SHIM_STDDEF_H
#include <sys/types.h>
#include <sys/stddef.h>
#endif
