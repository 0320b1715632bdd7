/* DPDK's fast path is `static inline` (and rte_errno is a TLS macro), so Rust cannot
 * link to it directly. These one-line wrappers give each of them a symbol. */
#ifndef VSWITCH_DPDK_SHIM_H
#define VSWITCH_DPDK_SHIM_H
#include <stddef.h>
#include <stdint.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

int vs_errno(void);
unsigned vs_lcore_id(void);
uint64_t vs_rdtsc(void);
void vs_pause(void);
uint16_t vs_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t vs_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
/* Fixes up what a driver's offloads need (pseudo-header sums); returns how many of
 * `pkts` are ready, rte_errno saying why the next one is not. */
uint16_t vs_eth_tx_prepare(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
/* Links `tail` after `head`'s last segment; -EOVERFLOW (nothing done) past 65535. */
int vs_pktmbuf_chain(struct rte_mbuf *head, struct rte_mbuf *tail);
struct rte_mbuf *vs_pktmbuf_alloc(struct rte_mempool *mp);
int vs_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **pkts, unsigned n);
void vs_pktmbuf_free(struct rte_mbuf *m);
char *vs_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
int vs_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
void vs_prefetch0(const void *p);
/* Routes DPDK's log stream to `fn`, one call per line. */
typedef long (*vs_log_fn)(const char *buf, size_t len);
int vs_log_route(vs_log_fn fn);
#endif
