/* The generic netlink transport of vrouter.ko: one command whose one
 * attribute carries a message of include/vr_msg.h (request or replies).
 * vrstack/datapath/genl.py speaks the same numbers. */
#ifndef VR_GENL_H
#define VR_GENL_H

#define VR_GENL_NAME "vrouter"
#define VR_GENL_VERSION 1

enum {
	VR_GENL_CMD_UNSPEC,
	VR_GENL_CMD_MSG,
};

enum {
	VR_GENL_ATTR_UNSPEC,
	VR_GENL_ATTR_MSG,
	__VR_GENL_ATTR_MAX,
};
#define VR_GENL_ATTR_MAX (__VR_GENL_ATTR_MAX - 1)

#endif
