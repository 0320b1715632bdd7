#define _GNU_SOURCE
#include <stdio.h>
#include <rte_config.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_cycles.h>
#include <rte_pause.h>
#include <rte_prefetch.h>
#include <rte_log.h>
#include "shim.h"

int vs_errno(void) { return rte_errno; }
unsigned vs_lcore_id(void) { return rte_lcore_id(); }
uint64_t vs_rdtsc(void) { return rte_rdtsc(); }
void vs_pause(void) { rte_pause(); }

uint16_t vs_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t vs_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

uint16_t vs_eth_tx_prepare(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_prepare(port, queue, pkts, n);
}

int vs_pktmbuf_chain(struct rte_mbuf *head, struct rte_mbuf *tail) { return rte_pktmbuf_chain(head, tail); }

struct rte_mbuf *vs_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }

int vs_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **pkts, unsigned n)
{
	return rte_pktmbuf_alloc_bulk(mp, pkts, n);
}

void vs_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
char *vs_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }
int vs_pktmbuf_trim(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_trim(m, len); }
void vs_prefetch0(const void *p) { rte_prefetch0(p); }

static ssize_t vs_log_write(void *cookie, const char *buf, size_t len)
{
	vs_log_fn fn = (vs_log_fn)cookie;
	return fn(buf, len);
}

int vs_log_route(vs_log_fn fn)
{
	cookie_io_functions_t io = { .read = NULL, .write = vs_log_write, .seek = NULL, .close = NULL };
	FILE *f = fopencookie((void *)fn, "w", io);
	if (f == NULL)
		return -1;
	/* Line-buffered: each DPDK message reaches fn whole. */
	setvbuf(f, NULL, _IOLBF, 0);
	return rte_openlog_stream(f);
}
