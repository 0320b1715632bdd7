//! Per-core transmit buffers: packets for a port collect until a burst is full or the
//! poll round ends, then leave in one `tx_burst` on the core's own queue. Each packet
//! carries the TSC of the rx burst that brought it, so the time it spent inside the
//! switch is known when it leaves.
//!
//! Here, at the egress, a frame that still owes segmentation or a checksum gets it
//! done in software unless the port takes it as it is (`offload`).
use crate::{
    capture::{Capture, CaptureTap},
    latency::{self, Histogram},
    mbuf::{Mbuf, TX_OFFLOAD_FLAGS},
    mempool::PktPool,
    snapshot::{Egress, Snapshot},
    stats::{CoreCounters, PortCounters},
    MAX_PORTS,
};
use dpdk_sys::rte_mbuf;
use pipelines::{
    offload::{self, SegmentSink},
    DropReason, Frame, BURST,
};

const _: () = assert!(MAX_PORTS.is_multiple_of(64), "the dirty mask is whole words");
/// Words of the dirty mask.
const DIRTY_WORDS: usize = MAX_PORTS / 64;

/// A set of ports, one bit each: those with packets waiting, or with a frame for the
/// driver to prepare. Most rounds touch a port or two: the words are looked at only
/// while any bit is set.
#[derive(Default)]
struct Dirty {
    words: [u64; DIRTY_WORDS],
    /// Bit w: word w has a bit set.
    any: u64,
}

impl Dirty {
    #[inline(always)]
    fn set(&mut self, port: u16) {
        let w = port as usize / 64;
        self.words[w] |= 1 << (port % 64);
        self.any |= 1 << w;
    }

    #[inline(always)]
    fn clear(&mut self, port: u16) {
        let w = port as usize / 64;
        self.words[w] &= !(1 << (port % 64));
        if self.words[w] == 0 {
            self.any &= !(1 << w);
        }
    }

    /// Whether `port`'s bit was set; clears it.
    #[inline(always)]
    fn take(&mut self, port: u16) -> bool {
        let set = self.words[port as usize / 64] & (1 << (port % 64)) != 0;
        if set {
            self.clear(port);
        }
        set
    }

    /// The lowest port with packets waiting.
    #[inline(always)]
    fn first(&self) -> Option<u16> {
        if self.any == 0 {
            return None;
        }
        let w = self.any.trailing_zeros() as usize;
        Some((w * 64) as u16 + self.words[w].trailing_zeros() as u16)
    }
}

struct TxBuf {
    len: usize,
    /// Bytes of the packets waiting, summed as they are queued (the caller often knows
    /// them already: a cross-connect forwards the burst it just counted).
    bytes: u64,
    pkts: [*mut rte_mbuf; 2 * BURST],
    /// The packets by the rx burst they came in: (its TSC, how many), in queue order.
    /// Mostly one run per buffer, so one histogram update per tx burst.
    runs: [(u64, u32); 2 * BURST],
    nruns: usize,
}

impl TxBuf {
    fn empty() -> TxBuf {
        TxBuf { len: 0, bytes: 0, pkts: [std::ptr::null_mut(); 2 * BURST], runs: [(0, 0); 2 * BURST], nruns: 0 }
    }

    #[inline(always)]
    fn stamp(&mut self, rx_tsc: u64, n: u32) {
        match self.runs[..self.nruns].last_mut() {
            Some((t, k)) if *t == rx_tsc => *k += n,
            _ => {
                self.runs[self.nruns] = (rx_tsc, n);
                self.nruns += 1;
            }
        }
    }
}

pub(crate) struct TxBuffers<'a> {
    queue: u16,
    bufs: Box<[TxBuf]>,
    dirty: Dirty,
    /// Ports whose waiting burst holds a frame left to the NIC's offloads: the driver
    /// prepares it before it leaves.
    prepare: Dirty,
    /// Time inside the switch of every packet sent.
    pub(crate) latency: Box<Histogram>,
    /// A capture of what one port sends, when one is running.
    pub(crate) tap: Option<CaptureTap>,
    capture: &'a Capture,
    pool: &'a PktPool,
    /// The TSC read after the last tx burst, while no packet has arrived since (else
    /// 0): the poll loop takes it as the next round's start instead of reading again.
    pub(crate) sent_tsc: u64,
    /// Coalesce TCP segments for ports that take TSO.
    gro: bool,
}

impl TxBuffers<'_> {
    /// Buffers for a core that owns tx queue `queue` on every port. Allocates once,
    /// before the core starts polling.
    pub(crate) fn new<'a>(queue: u16, capture: &'a Capture, pool: &'a PktPool, gro: bool) -> TxBuffers<'a> {
        let bufs = (0..MAX_PORTS).map(|_| TxBuf::empty()).collect();
        TxBuffers {
            queue,
            bufs,
            dirty: Dirty::default(),
            prepare: Dirty::default(),
            latency: latency::histogram(),
            tap: None,
            capture,
            pool,
            sent_tsc: 0,
            gro,
        }
    }

    /// Queues up to `BURST` packets of `bytes` bytes in all for `port`; sends once a
    /// burst has collected.
    #[inline]
    pub(crate) fn push(
        &mut self,
        snap: &Snapshot,
        port: u16,
        pkts: &[Mbuf],
        bytes: u64,
        rx_tsc: u64,
        counters: &CoreCounters,
    ) {
        debug_assert!(pkts.len() <= BURST);
        let b = &mut self.bufs[port as usize];
        let mut flags = 0;
        for (d, s) in b.pkts[b.len..b.len + pkts.len()].iter_mut().zip(pkts) {
            *d = s.0;
            // SAFETY: the caller hands over mbufs it owns.
            flags |= unsafe { (*s.0).ol_flags };
        }
        if flags & TX_OFFLOAD_FLAGS != 0 {
            // Not queued yet (the length is unchanged): one at a time, through the egress
            // offload check.
            for m in pkts {
                self.push_one(snap, port, m.0, rx_tsc, counters);
            }
            return;
        }
        b.bytes += bytes;
        b.stamp(rx_tsc, pkts.len() as u32);
        b.len += pkts.len();
        self.dirty.set(port);
        if b.len >= BURST {
            self.flush(snap, port, counters);
        }
    }

    /// Queues one packet for `port`.
    #[inline]
    pub(crate) fn push_one(
        &mut self,
        snap: &Snapshot,
        port: u16,
        m: *mut rte_mbuf,
        rx_tsc: u64,
        counters: &CoreCounters,
    ) {
        if owes_offload(m) {
            return self.push_owing(snap, port, m, rx_tsc, counters);
        }
        self.queue_one(snap, port, m, rx_tsc, counters);
    }

    /// Queues a frame that owes segmentation or a checksum: as it is where the port
    /// does the work, else done here first. Out of line: `push_one` stays small enough
    /// to inline into the stages.
    #[cold]
    #[inline(never)]
    fn push_owing(&mut self, snap: &Snapshot, port: u16, m: *mut rte_mbuf, rx_tsc: u64, counters: &CoreCounters) {
        let o = Mbuf(m).offload();
        // SAFETY: `m` is an mbuf the caller owns.
        let segs = unsafe { (*m).nb_segs };
        match snap.egress(port, &o, Mbuf(m).len(), segs) {
            Egress::Whole => {}
            Egress::Nic(flags) => {
                // SAFETY: as above; the frame is not queued anywhere yet.
                unsafe { (*m).ol_flags |= flags };
                self.prepare.set(port);
            }
            Egress::Software => return self.offload_in_software(snap, port, m, o, rx_tsc, counters),
        }
        self.queue_one(snap, port, m, rx_tsc, counters);
    }

    #[inline]
    fn queue_one(&mut self, snap: &Snapshot, port: u16, m: *mut rte_mbuf, rx_tsc: u64, counters: &CoreCounters) {
        let b = &mut self.bufs[port as usize];
        // SAFETY: `m` is an mbuf this core owns (the caller hands it over).
        b.bytes += unsafe { (*m).pkt_len } as u64;
        b.pkts[b.len] = m;
        b.stamp(rx_tsc, 1);
        b.len += 1;
        self.dirty.set(port);
        if b.len >= BURST {
            self.flush(snap, port, counters);
        }
    }

    /// Segments (and checksums) a large TCP frame into frames the port takes, or
    /// completes its partial checksum, then queues the result.
    #[cold]
    fn offload_in_software(
        &mut self,
        snap: &Snapshot,
        port: u16,
        m: *mut rte_mbuf,
        o: offload::Offload,
        rx_tsc: u64,
        counters: &CoreCounters,
    ) {
        let mut f = Mbuf(m);
        let pc = &counters.ports[port as usize];
        if o.gso.is_some() {
            let mut sink = Segments { tx: self, snap, port, rx_tsc, counters };
            match offload::segment(&f, &o, &mut sink) {
                Ok(done) => {
                    if let Some(r) = done.short {
                        pc.drop(r, (o.segments(f.len()) - done.sent) as u64);
                    }
                }
                Err(r) => pc.drop(r, 1),
            }
            // SAFETY: the frame is ours; its segments are copies.
            unsafe { dpdk_sys::vs_pktmbuf_free(m) };
            return;
        }
        match offload::complete_checksum(&mut f, &o) {
            Ok(()) => self.queue_one(snap, port, m, rx_tsc, counters),
            Err(r) => {
                pc.drop(r, 1);
                // SAFETY: the frame is ours and goes nowhere.
                unsafe { dpdk_sys::vs_pktmbuf_free(m) };
            }
        }
    }

    /// Sends everything waiting on every port (end of a poll round).
    #[inline]
    pub(crate) fn flush_all(&mut self, snap: &Snapshot, counters: &CoreCounters) {
        while let Some(port) = self.dirty.first() {
            self.flush(snap, port, counters);
        }
    }

    #[inline]
    fn flush(&mut self, snap: &Snapshot, port: u16, counters: &CoreCounters) {
        self.dirty.clear(port);
        let b = &mut self.bufs[port as usize];
        let (mut n, mut bytes) = (b.len, b.bytes);
        (b.len, b.bytes) = (0, 0);
        if n == 0 {
            return;
        }
        let p = port as usize;
        let prepare = self.prepare.any != 0 && self.prepare.take(port);
        if prepare || (self.gro && n > 1 && (snap.kernel[p].is_some() || snap.vhost[p].is_some())) {
            (n, bytes) = before_tx(snap, port, self.queue, (prepare, self.gro), b, n, bytes, counters);
        }
        if let Some(tap) = self.tap.filter(|t| t.port == port) {
            // A core's tx queue number is its core index.
            tap_copy(self.capture, self.queue as usize, tap, &b.pkts[..n], counters);
        }
        let pc = &counters.ports[port as usize];
        if let Some(k) = &snap.kernel[port as usize] {
            let (sent, bytes) = k.tx_burst(self.queue, &b.pkts[..n]);
            let now = crate::tsc();
            self.sent_tsc = now;
            record_latency(&mut self.latency, now, &b.runs[..b.nruns], sent as u32);
            b.nruns = 0;
            if sent < n {
                pc.drop(DropReason::TxFull, (n - sent) as u64);
            }
            pc.tx_packets.add(sent as u64);
            pc.tx_bytes.add(bytes);
            return;
        }
        // SAFETY: the port is active in the snapshot this core runs on, and `queue` is
        // this core's own tx queue on it: no other thread uses it.
        let sent = unsafe { dpdk_sys::vs_eth_tx_burst(port, self.queue, b.pkts.as_mut_ptr(), n as u16) } as usize;
        let now = crate::tsc();
        self.sent_tsc = now;
        record_latency(&mut self.latency, now, &b.runs[..b.nruns], sent as u32);
        b.nruns = 0;
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

/// Whether the frame still owes segmentation or a checksum (one load of a field in
/// the cache line the egress reads anyway).
#[inline(always)]
fn owes_offload(m: *mut rte_mbuf) -> bool {
    // SAFETY: `m` is an mbuf the caller owns.
    unsafe { (*m).ol_flags & TX_OFFLOAD_FLAGS != 0 }
}

/// Where software segmentation puts its frames: fresh mbufs from the packet pool,
/// queued for the port like any other.
struct Segments<'t, 'a> {
    tx: &'t mut TxBuffers<'a>,
    snap: &'t Snapshot,
    port: u16,
    rx_tsc: u64,
    counters: &'t CoreCounters,
}

impl SegmentSink for Segments<'_, '_> {
    type Out = Mbuf;

    fn alloc(&mut self) -> Option<Mbuf> {
        // SAFETY: the pool lives as long as the process.
        let m = unsafe { dpdk_sys::vs_pktmbuf_alloc(self.tx.pool.as_ptr()) };
        (!m.is_null()).then_some(Mbuf(m))
    }

    fn emit(&mut self, f: Mbuf) {
        self.tx.queue_one(self.snap, self.port, f.0, self.rx_tsc, self.counters);
    }

    fn discard(&mut self, f: Mbuf) {
        // SAFETY: a segment we allocated and never queued.
        unsafe { dpdk_sys::vs_pktmbuf_free(f.0) };
    }
}

/// Records the time inside the switch of the first `sent` packets of `runs`, sent at
/// `now` (the rest were not sent).
#[inline]
fn record_latency(h: &mut Histogram, now: u64, runs: &[(u64, u32)], mut sent: u32) {
    for &(stamp, n) in runs {
        let n = n.min(sent);
        if n == 0 {
            break;
        }
        latency::record(h, now.wrapping_sub(stamp), n as u64);
        sent -= n;
    }
}

/// The work a burst gets just before it leaves: the driver's preparation for a NIC
/// doing offloads, coalescing (GRO) for a port that takes TSO. Returns the frames and
/// bytes left. Out of line: most bursts need neither.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn before_tx(
    snap: &Snapshot,
    port: u16,
    queue: u16,
    (prepare, gro): (bool, bool),
    b: &mut TxBuf,
    mut n: usize,
    mut bytes: u64,
    counters: &CoreCounters,
) -> (usize, u64) {
    if prepare {
        n = driver_prepare(port, queue, &mut b.pkts[..n], &mut bytes, &counters.ports[port as usize]);
    }
    if let Some(t) = gro_target(snap, port).filter(|_| gro && n > 1) {
        // SAFETY: Mbuf is repr(transparent) over the pointer; the burst is this core's
        // own, and what `coalesce` chains stays past the count it returns.
        let frames = unsafe { std::slice::from_raw_parts_mut(b.pkts.as_mut_ptr().cast::<Mbuf>(), n) };
        let left = offload::coalesce(frames, &t);
        if left < n {
            n = left;
            // SAFETY: the frames left are mbufs this core owns.
            bytes = b.pkts[..n].iter().map(|&m| unsafe { (*m).pkt_len } as u64).sum();
        }
    }
    (n, bytes)
}

/// What a port that takes TSO takes, for coalescing (GRO): a kernel port's, or a
/// guest's that negotiated TSO. None for any other port.
#[inline]
fn gro_target(snap: &Snapshot, port: u16) -> Option<offload::GroTarget> {
    let tso = |ip_version: u8| offload::Offload {
        l2: pipelines::wire::ethernet::HEADER_LEN as u16,
        l3: if ip_version == 4 { 20 } else { 40 },
        l4: 20,
        csum: offload::L4Csum::Tcp,
        gso: Some(offload::Gso { ip_version, mss: 1448 }),
        ..offload::Offload::NONE
    };
    let max_len = u16::MAX as usize + pipelines::wire::ethernet::HEADER_LEN;
    let (tso4, tso6, max_segs) = if let Some(k) = &snap.kernel[port as usize] {
        (k.takes(&tso(4), max_len), k.takes(&tso(6), max_len), crate::kernel::TX_SEGS)
    } else if let Some(v) = &snap.vhost[port as usize] {
        // The vhost PMD copies a chain of any length into the guest's buffers.
        (v.takes(&tso(4), max_len), v.takes(&tso(6), max_len), 64)
    } else {
        return None;
    };
    (tso4 || tso6).then_some(offload::GroTarget { tso4, tso6, max_segs, max_len })
}

/// Has the driver fix up what its offloads need in `pkts` (pseudo-header sums);
/// a frame it refuses is dropped and counted. Returns how many are left, in order.
#[cold]
fn driver_prepare(port: u16, queue: u16, pkts: &mut [*mut rte_mbuf], bytes: &mut u64, pc: &PortCounters) -> usize {
    let (mut done, mut n) = (0, pkts.len());
    while done < n {
        // SAFETY: the port is active in the snapshot this core runs on, `queue` is this
        // core's own, and pkts[done..n] are mbufs this core owns.
        done += unsafe { dpdk_sys::vs_eth_tx_prepare(port, queue, pkts.as_mut_ptr().add(done), (n - done) as u16) }
            as usize;
        if done < n {
            let bad = pkts[done];
            // SAFETY: the refused mbuf is ours, and leaves the burst here.
            unsafe {
                *bytes -= (*bad).pkt_len as u64;
                dpdk_sys::vs_pktmbuf_free(bad);
            }
            pc.drop(DropReason::OffloadRefused, 1);
            pkts.copy_within(done + 1..n, done);
            n -= 1;
        }
    }
    n
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_from_one_rx_burst_share_a_run() {
        let mut b = TxBuf::empty();
        b.stamp(100, 32);
        b.stamp(100, 1);
        b.stamp(200, 1);
        b.stamp(100, 2);
        assert_eq!(&b.runs[..b.nruns], &[(100, 33), (200, 1), (100, 2)]);
    }

    #[test]
    fn only_sent_packets_are_timed() {
        let mut h = latency::histogram();
        record_latency(&mut h, 1000, &[(100, 3), (200, 2), (300, 4)], 4);
        assert_eq!(h.len(), 4);
        assert_eq!(h.count_at(900), 3);
        assert_eq!(h.count_at(800), 1);
        assert_eq!(h.count_at(700), 0, "the third run was not sent");
        record_latency(&mut h, 1000, &[(100, 3)], 0);
        assert_eq!(h.len(), 4);
    }
}
