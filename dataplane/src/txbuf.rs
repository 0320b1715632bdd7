//! Per-core transmit buffers: packets for a port collect until a burst is full or the
//! poll round ends, then leave in one `tx_burst` on the core's own queue. Each packet
//! carries the TSC of the rx burst that brought it, so the time it spent inside the
//! switch is known when it leaves.
use crate::{
    capture::{Capture, CaptureTap},
    latency::{self, Histogram},
    mbuf::Mbuf,
    stats::CoreCounters,
    MAX_PORTS,
};
use dpdk_sys::rte_mbuf;
use pipelines::{DropReason, BURST};

const _: () = assert!(MAX_PORTS <= 64, "the dirty mask is a u64");

struct TxBuf {
    len: usize,
    pkts: [*mut rte_mbuf; 2 * BURST],
    /// TSC of the rx burst each packet came in.
    rx_tsc: [u64; 2 * BURST],
}

pub(crate) struct TxBuffers<'a> {
    queue: u16,
    bufs: Box<[TxBuf]>,
    /// Ports with packets waiting.
    dirty: u64,
    /// Time inside the switch of every packet sent.
    pub(crate) latency: Box<Histogram>,
    /// A capture of what one port sends, when one is running.
    pub(crate) tap: Option<CaptureTap>,
    capture: &'a Capture,
}

impl TxBuffers<'_> {
    /// Buffers for a core that owns tx queue `queue` on every port. Allocates once,
    /// before the core starts polling.
    pub(crate) fn new(queue: u16, capture: &Capture) -> TxBuffers<'_> {
        let bufs = (0..MAX_PORTS)
            .map(|_| TxBuf { len: 0, pkts: [std::ptr::null_mut(); 2 * BURST], rx_tsc: [0; 2 * BURST] })
            .collect();
        TxBuffers { queue, bufs, dirty: 0, latency: latency::histogram(), tap: None, capture }
    }

    /// Queues up to `BURST` packets for `port`; sends once a burst has collected.
    #[inline]
    pub(crate) fn push(&mut self, port: u16, pkts: &[Mbuf], rx_tsc: u64, counters: &CoreCounters) {
        debug_assert!(pkts.len() <= BURST);
        let b = &mut self.bufs[port as usize];
        for (d, s) in b.pkts[b.len..b.len + pkts.len()].iter_mut().zip(pkts) {
            *d = s.0;
        }
        b.rx_tsc[b.len..b.len + pkts.len()].fill(rx_tsc);
        b.len += pkts.len();
        self.dirty |= 1 << port;
        if b.len >= BURST {
            self.flush(port, counters);
        }
    }

    /// Queues one packet for `port`.
    #[inline]
    pub(crate) fn push_one(&mut self, port: u16, m: *mut rte_mbuf, rx_tsc: u64, counters: &CoreCounters) {
        let b = &mut self.bufs[port as usize];
        b.pkts[b.len] = m;
        b.rx_tsc[b.len] = rx_tsc;
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
        if let Some(tap) = self.tap.filter(|t| t.port == port) {
            // A core's tx queue number is its core index.
            tap_copy(self.capture, self.queue as usize, tap, &b.pkts[..n], counters);
        }
        // SAFETY: the port is active in the snapshot this core runs on, and `queue` is
        // this core's own tx queue on it: no other thread uses it.
        let sent = unsafe { dpdk_sys::vs_eth_tx_burst(port, self.queue, b.pkts.as_mut_ptr(), n as u16) } as usize;
        record_latency(&mut self.latency, &b.rx_tsc[..sent]);
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

/// Records the time inside the switch of packets just sent: one histogram update per
/// run of packets from the same rx burst (usually one per tx burst).
#[inline]
fn record_latency(h: &mut Histogram, rx_tsc: &[u64]) {
    let Some(&first) = rx_tsc.first() else { return };
    let now = crate::tsc();
    let (mut stamp, mut run) = (first, 0u64);
    for &t in rx_tsc {
        if t != stamp {
            latency::record(h, now.wrapping_sub(stamp), run);
            (stamp, run) = (t, 0);
        }
        run += 1;
    }
    latency::record(h, now.wrapping_sub(stamp), run);
}

/// Copies packets for a running capture (before they are sent: after, they are not ours).
#[cold]
fn tap_copy(cap: &Capture, core: usize, tap: CaptureTap, pkts: &[*mut rte_mbuf], counters: &CoreCounters) {
    let now = crate::tsc();
    for &m in pkts {
        let f = Mbuf(m);
        if !cap.copy(core, pipelines::Frame::head(&f), pipelines::Frame::len(&f), true, tap.snaplen, now) {
            counters.capture_lost.add(1);
        }
    }
}
