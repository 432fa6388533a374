/* dp-core includes <stdint.h>; in the FreeBSD kernel that is <sys/stdint.h>. */
#ifndef VR_SHIM_STDINT_H
#define VR_SHIM_STDINT_H
#include <sys/stdint.h>
#endif
