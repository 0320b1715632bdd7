//! Per-core transmit buffers: packets for a port collect until a burst is full or the
//! poll round ends, then leave in one `tx_burst` on the core's own queue.
use crate::{mbuf::Mbuf, stats::CoreCounters, MAX_PORTS};
use dpdk_sys::rte_mbuf;
use pipelines::{DropReason, BURST};

const _: () = assert!(MAX_PORTS <= 64, "the dirty mask is a u64");

struct TxBuf {
    len: usize,
    pkts: [*mut rte_mbuf; 2 * BURST],
}

pub(crate) struct TxBuffers {
    queue: u16,
    bufs: Box<[TxBuf]>,
    /// Ports with packets waiting.
    dirty: u64,
}

impl TxBuffers {
    /// Buffers for a core that owns tx queue `queue` on every port. Allocates once,
    /// before the core starts polling.
    pub(crate) fn new(queue: u16) -> TxBuffers {
        let bufs = (0..MAX_PORTS).map(|_| TxBuf { len: 0, pkts: [std::ptr::null_mut(); 2 * BURST] }).collect();
        TxBuffers { queue, bufs, dirty: 0 }
    }

    /// Queues up to `BURST` packets for `port`; sends once a burst has collected.
    #[inline]
    pub(crate) fn push(&mut self, port: u16, pkts: &[Mbuf], counters: &CoreCounters) {
        debug_assert!(pkts.len() <= BURST);
        let b = &mut self.bufs[port as usize];
        for (d, s) in b.pkts[b.len..b.len + pkts.len()].iter_mut().zip(pkts) {
            *d = s.0;
        }
        b.len += pkts.len();
        self.dirty |= 1 << port;
        if b.len >= BURST {
            self.flush(port, counters);
        }
    }

    /// Queues one packet for `port`.
    #[inline]
    pub(crate) fn push_one(&mut self, port: u16, m: *mut rte_mbuf, counters: &CoreCounters) {
        let b = &mut self.bufs[port as usize];
        b.pkts[b.len] = m;
        b.len += 1;
        self.dirty |= 1 << port;
        if b.len >= BURST {
            self.flush(port, counters);
        }
    }

    /// Sends everything waiting on every port (end of a poll round).
    #[inline]
    pub(crate) fn flush_all(&mut self, counters: &CoreCounters) {
        while self.dirty != 0 {
            let port = self.dirty.trailing_zeros() as u16;
            self.flush(port, counters);
        }
    }

    #[inline]
    fn flush(&mut self, port: u16, counters: &CoreCounters) {
        self.dirty &= !(1 << port);
        let b = &mut self.bufs[port as usize];
        let n = b.len;
        b.len = 0;
        if n == 0 {
            return;
        }
        // Sum lengths before sending: a sent mbuf may be freed and reused at once.
        let mut bytes = 0u64;
        for &m in &b.pkts[..n] {
            // SAFETY: every buffered pointer is an mbuf this core owns until tx_burst.
            bytes += unsafe { (*m).pkt_len } as u64;
        }
        // SAFETY: the port is active in the snapshot this core runs on, and `queue` is
        // this core's own tx queue on it: no other thread uses it.
        let sent = unsafe { dpdk_sys::vs_eth_tx_burst(port, self.queue, b.pkts.as_mut_ptr(), n as u16) } as usize;
        let pc = &counters.ports[port as usize];
        if sent < n {
            for &m in &b.pkts[sent..n] {
                // SAFETY: unsent mbufs are still ours.
                bytes -= unsafe { (*m).pkt_len } as u64;
            }
            // SAFETY: the unsent mbufs are ours to free.
            unsafe { dpdk_sys::rte_pktmbuf_free_bulk(b.pkts.as_mut_ptr().add(sent), (n - sent) as u32) };
            pc.drop(DropReason::TxFull, (n - sent) as u64);
        }
        pc.tx_packets.add(sent as u64);
        pc.tx_bytes.add(bytes);
    }
}
