/* Every DPDK header vswitch binds. Keep it to what the switch uses. */
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_log.h>
#include <rte_version.h>
#include <rte_dev.h>
#include <rte_devargs.h>
#include <rte_bus_vdev.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_vhost.h>
#include <rte_eth_vhost.h>
#include "shim.h"
