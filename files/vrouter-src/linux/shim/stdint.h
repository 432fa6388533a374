/* dp-core includes <stdint.h>; in the kernel the fixed-width types come from
 * linux/types.h (gcc's own stdint.h would disagree on uint64_t). */
#ifndef VR_SHIM_STDINT_H
#define VR_SHIM_STDINT_H
#include <linux/types.h>
#endif
