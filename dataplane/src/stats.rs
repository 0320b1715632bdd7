//! Per-core counters: written by one PMD core with plain stores, read by the control
//! plane without locks. Totals are sums over cores.
use crate::MAX_PORTS;
use pipelines::DropReason;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A counter with a single writer. `add` is a load and a store, not a locked
/// read-modify-write: only the owning core ever writes it.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline(always)]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline(always)]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }

    /// Adds what a count kept elsewhere (`total`) grew by since `seen`, its value the
    /// last time.
    #[inline(always)]
    pub fn follow(&self, total: u64, seen: &mut u64) {
        if total != *seen {
            self.add(total.wrapping_sub(*seen));
            *seen = total;
        }
    }
}

/// One core's view of one port.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct PortCounters {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
    pub drops: [Counter; DropReason::COUNT],
    /// Packets that could have been sampled by sFlow on this port.
    pub sflow_pool: Counter,
    /// sFlow samples lost on this port (the ring to the control plane was full).
    pub sflow_drops: Counter,
}

impl Default for PortCounters {
    fn default() -> Self {
        PortCounters {
            rx_packets: Counter::default(),
            rx_bytes: Counter::default(),
            tx_packets: Counter::default(),
            tx_bytes: Counter::default(),
            drops: std::array::from_fn(|_| Counter::default()),
            sflow_pool: Counter::default(),
            sflow_drops: Counter::default(),
        }
    }
}

impl PortCounters {
    #[inline(always)]
    pub fn drop(&self, reason: DropReason, n: u64) {
        self.drops[reason.index()].add(n);
    }
}

/// ACL rule counter slots per core: the control plane gives each rule one.
pub const ACL_COUNTERS: usize = 1 << 16;

/// Everything one PMD core counts, in its own cache lines.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct CoreCounters {
    /// Poll rounds: one pass over every rx queue the core owns.
    pub rounds: Counter,
    /// TSC cycles spent in rounds that moved at least one packet.
    pub busy_cycles: Counter,
    /// TSC cycles spent in rounds that found nothing.
    pub idle_cycles: Counter,
    /// Packets received by this core (all ports).
    pub packets: Counter,
    /// Learn events lost because the ring to the control plane was full.
    pub learn_lost: Counter,
    /// Packets a running capture could not copy (no buffer free).
    pub capture_lost: Counter,
    /// Packets whose security-group answer the core did not remember (each cost a
    /// search of the rules).
    pub acl_misses: Counter,
    pub ports: [PortCounters; MAX_PORTS],
    /// Hits per ACL rule counter slot.
    pub acl_hits: Box<[Counter]>,
}

impl Default for CoreCounters {
    fn default() -> Self {
        CoreCounters {
            rounds: Counter::default(),
            busy_cycles: Counter::default(),
            idle_cycles: Counter::default(),
            packets: Counter::default(),
            learn_lost: Counter::default(),
            capture_lost: Counter::default(),
            acl_misses: Counter::default(),
            ports: std::array::from_fn(|_| PortCounters::default()),
            acl_hits: (0..ACL_COUNTERS).map(|_| Counter::default()).collect(),
        }
    }
}

/// A plain copy of a port's counters, summed over cores, for the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortTotals {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: [u64; DropReason::COUNT],
}

impl Default for PortTotals {
    fn default() -> Self {
        PortTotals { rx_packets: 0, rx_bytes: 0, tx_packets: 0, tx_bytes: 0, drops: [0; DropReason::COUNT] }
    }
}

impl PortTotals {
    pub fn add(&mut self, c: &PortCounters) {
        self.rx_packets += c.rx_packets.get();
        self.rx_bytes += c.rx_bytes.get();
        self.tx_packets += c.tx_packets.get();
        self.tx_bytes += c.tx_bytes.get();
        for (d, s) in self.drops.iter_mut().zip(&c.drops) {
            *d += s.get();
        }
    }

    /// Counters since `base` (a port id reused by a new port starts from zero).
    pub fn since(&self, base: &PortTotals) -> PortTotals {
        let mut out = PortTotals {
            rx_packets: self.rx_packets.wrapping_sub(base.rx_packets),
            rx_bytes: self.rx_bytes.wrapping_sub(base.rx_bytes),
            tx_packets: self.tx_packets.wrapping_sub(base.tx_packets),
            tx_bytes: self.tx_bytes.wrapping_sub(base.tx_bytes),
            drops: [0; DropReason::COUNT],
        };
        for (i, d) in out.drops.iter_mut().enumerate() {
            *d = self.drops[i].wrapping_sub(base.drops[i]);
        }
        out
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_cores_and_subtract_a_baseline() {
        let a = PortCounters::default();
        let b = PortCounters::default();
        a.rx_packets.add(3);
        b.rx_packets.add(4);
        b.drop(DropReason::TxFull, 2);
        let mut t = PortTotals::default();
        t.add(&a);
        t.add(&b);
        assert_eq!(t.rx_packets, 7);
        assert_eq!(t.drops[DropReason::TxFull.index()], 2);
        let base = t;
        a.rx_packets.add(1);
        let mut t2 = PortTotals::default();
        t2.add(&a);
        t2.add(&b);
        let d = t2.since(&base);
        assert_eq!(d.rx_packets, 1);
        assert_eq!(d.total_drops(), 0);
    }

    #[test]
    fn core_counters_are_cache_line_aligned() {
        assert_eq!(std::mem::align_of::<CoreCounters>(), 64);
        assert_eq!(std::mem::size_of::<PortCounters>() % 64, 0);
    }
}
