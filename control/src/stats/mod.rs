//! What the switch reports about itself: the summary (`show`), counters per port and
//! per core, busy share and cycles per packet now and since start, time inside the
//! switch, the mempool, and the same as a Prometheus page.
pub mod api;
pub mod cli;
pub mod latency;
pub mod metrics;

use dataplane::pmd::Shared;

/// Core activity at one sample, for "busy %" and "cycles/packet" now rather than since
/// start.
#[derive(Clone, Copy, Default)]
pub(crate) struct CoreSample {
    pub(crate) busy: u64,
    pub(crate) idle: u64,
    pub(crate) packets: u64,
}

/// Per-core rates over the last second and latency windows.
pub struct CoreStats {
    last_sample: Vec<CoreSample>,
    pub(crate) rate: Vec<CoreSample>,
    pub(crate) latency: latency::LatencyWindows,
}

impl CoreStats {
    pub fn new(cores: usize) -> CoreStats {
        CoreStats {
            last_sample: vec![CoreSample::default(); cores],
            rate: vec![CoreSample::default(); cores],
            latency: Default::default(),
        }
    }

    /// Takes a sample of core activity; the rates `cores` reports are over the interval
    /// between the last two samples. Called every second.
    pub fn tick(&mut self, shared: &Shared) {
        for (i, c) in shared.counters.iter().enumerate() {
            let now = CoreSample { busy: c.busy_cycles.get(), idle: c.idle_cycles.get(), packets: c.packets.get() };
            let last = self.last_sample[i];
            self.rate[i] = CoreSample {
                busy: now.busy.wrapping_sub(last.busy),
                idle: now.idle.wrapping_sub(last.idle),
                packets: now.packets.wrapping_sub(last.packets),
            };
            self.last_sample[i] = now;
        }
        self.latency.tick(shared);
    }
}
