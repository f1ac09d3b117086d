/* The rtnetlink uapi of the kernel the consumer runs on: the patched tree's
 * `make headers` output, so the IFLA_RDMABOND_* values come from the series. */
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/if_addr.h>
