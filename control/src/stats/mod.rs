//! What the switch reports about itself: the summary (`show`), counters per port and
//! per core, busy share and cycles per packet now and since start, time inside the
//! switch, the mempool, and the same as a Prometheus page.
pub mod api;
pub mod cli;
pub mod latency;
pub mod metrics;

use crate::switch::{to_value, Reply, Switch};
use api::{CoreView, MempoolView, ShowView, StatsRequest, StatsView};
use dataplane::pmd::Shared;

/// Core activity at one sample, for "busy %" and "cycles/packet" now rather than since
/// start.
#[derive(Clone, Copy, Default)]
struct CoreSample {
    busy: u64,
    idle: u64,
    packets: u64,
}

/// Per-core rates over the last second and latency windows.
pub struct CoreStats {
    last_sample: Vec<CoreSample>,
    rate: Vec<CoreSample>,
    latency: latency::LatencyWindows,
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

impl Switch {
    pub(crate) fn stats_request(&mut self, req: StatsRequest) -> Reply {
        Ok(match req {
            StatsRequest::Show => to_value(&self.show()),
            StatsRequest::Stats => to_value(&StatsView {
                ports: self.ports.stats(None)?,
                cores: self.core_views(),
                mempool: self.mempool(),
            }),
            StatsRequest::Cores => to_value(&self.core_views()),
        })
    }

    fn core_views(&self) -> Vec<CoreView> {
        let pct =
            |busy: u64, idle: u64| if busy + idle == 0 { 0.0 } else { 100.0 * busy as f64 / (busy + idle) as f64 };
        let cpp = |busy: u64, packets: u64| if packets == 0 { 0.0 } else { busy as f64 / packets as f64 };
        self.shared
            .counters
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let rx_queues = self
                    .ports
                    .list
                    .iter()
                    .filter_map(|p| p.run.as_ref().ok().map(|r| (p, r)))
                    .flat_map(|(p, r)| {
                        r.rxq.iter().filter(|&&(_, core)| core == i).map(move |&(q, _)| format!("{}:{q}", p.spec.name))
                    })
                    .collect();
                let r = self.cores.rate[i];
                CoreView {
                    index: i,
                    lcore: self.eal.workers[i],
                    rx_queues,
                    packets: c.packets.get(),
                    rounds: c.rounds.get(),
                    busy_pct: pct(r.busy, r.idle),
                    cycles_per_packet: cpp(r.busy, r.packets),
                    busy_pct_total: pct(c.busy_cycles.get(), c.idle_cycles.get()),
                    cycles_per_packet_total: cpp(c.busy_cycles.get(), c.packets.get()),
                    busy_cycles: c.busy_cycles.get(),
                    latency: self.cores.latency.view(i, self.shared.tsc_hz),
                }
            })
            .collect()
    }

    fn mempool(&self) -> MempoolView {
        let available = self.pool.available();
        MempoolView { size: self.pool.size(), available, in_use: self.pool.size().saturating_sub(available) }
    }

    fn show(&self) -> ShowView {
        let refs = self.refs();
        ShowView {
            version: env!("CARGO_PKG_VERSION").into(),
            dpdk: self.eal.version.clone(),
            main_lcore: self.eal.main_lcore,
            pmd_lcores: self.eal.workers.clone(),
            db: self.store.path().display().to_string(),
            ports: self.port_views(),
            xconnects: self
                .xconnects
                .list
                .iter()
                .map(|x| crate::xconnect::api::XconnectView { a: x.a.clone(), b: x.b.clone() })
                .collect(),
            networks: self.overlay.network_views(&refs),
            vtep: self.overlay.vtep_view(&refs),
            mempool: self.mempool(),
            learn_events_lost: self.shared.counters.iter().map(|c| c.learn_lost.get()).sum(),
        }
    }

    /// The Prometheus page: what `stats` and `cores` report.
    pub fn metrics(&self) -> String {
        let ports = self.ports.stats(None).unwrap_or_default();
        let lost = self.shared.counters.iter().map(|c| c.capture_lost.get()).sum();
        metrics::render(&ports, &self.core_views(), &self.mempool(), lost)
    }
}
