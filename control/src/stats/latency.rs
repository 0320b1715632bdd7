//! The control plane's side of the latency histograms: per core, the last
//! `LATENCY_WINDOW_S` one-second histograms, so `cores` and the metrics report time
//! inside the switch now rather than since start.
use super::api::{LatencyView, LATENCY_WINDOW_S};
use dataplane::{latency, pmd::Shared};
use std::collections::VecDeque;

#[derive(Default)]
pub struct LatencyWindows {
    per_core: Vec<VecDeque<Box<latency::Histogram>>>,
}

impl LatencyWindows {
    /// Takes what each core handed back over the last second. Called once a second.
    pub fn tick(&mut self, shared: &Shared) {
        self.per_core.resize_with(shared.latency.len(), VecDeque::new);
        for (window, x) in self.per_core.iter_mut().zip(shared.latency.iter()) {
            let mut h = if window.len() >= LATENCY_WINDOW_S {
                let mut oldest = window.pop_front().unwrap_or_else(latency::histogram);
                oldest.reset();
                oldest
            } else {
                latency::histogram()
            };
            x.collect(&mut h);
            window.push_back(h);
        }
    }

    /// Core `core`'s quantiles over the last `seconds` of the window (a benchmark's
    /// measured seconds, without the set-up before them); none if it sent nothing.
    pub fn view(&self, core: usize, tsc_hz: u64, seconds: usize) -> Option<LatencyView> {
        let window = self.per_core.get(core)?;
        let mut all = latency::histogram();
        for h in window.iter().rev().take(seconds) {
            let _ = all.add(&**h);
        }
        view_of(&all, tsc_hz)
    }
}

/// Quantiles of a histogram of TSC cycles, in nanoseconds.
pub fn view_of(h: &latency::Histogram, tsc_hz: u64) -> Option<LatencyView> {
    if h.is_empty() || tsc_hz == 0 {
        return None;
    }
    let ns = |cycles: u64| cycles as f64 * 1e9 / tsc_hz as f64;
    Some(LatencyView {
        packets: h.len(),
        p50_ns: ns(h.value_at_quantile(0.5)),
        p99_ns: ns(h.value_at_quantile(0.99)),
        p999_ns: ns(h.value_at_quantile(0.999)),
        max_ns: ns(h.max()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_in_nanoseconds() {
        let mut h = latency::histogram();
        // 2 GHz: 2,000 cycles is 1 us. 990 packets at 1 us, 10 at 50 us.
        latency::record(&mut h, 2_000, 990);
        latency::record(&mut h, 100_000, 10);
        let v = view_of(&h, 2_000_000_000).unwrap();
        assert_eq!(v.packets, 1000);
        assert!((v.p50_ns - 1000.0).abs() < 10.0, "{v:?}");
        assert!((v.p99_ns - 1000.0).abs() < 10.0, "{v:?}");
        assert!((v.p999_ns - 50_000.0).abs() < 500.0, "{v:?}");
        assert!(view_of(&latency::histogram(), 2_000_000_000).is_none());
    }

    #[test]
    fn a_view_over_the_last_seconds_leaves_the_older_ones_out() {
        // Three seconds of one core: 1 packet at 100 us, then 2 and 4 at 1 us.
        let second = |n: u64, cycles: u64| {
            let mut h = latency::histogram();
            latency::record(&mut h, cycles, n);
            h
        };
        let w = LatencyWindows { per_core: vec![[second(1, 200_000), second(2, 2_000), second(4, 2_000)].into()] };
        let hz = 2_000_000_000;
        let packets = |s: usize| w.view(0, hz, s).map(|v| v.packets);
        assert_eq!(
            (packets(1), packets(2), packets(3), packets(LATENCY_WINDOW_S)),
            (Some(4), Some(6), Some(7), Some(7))
        );
        assert!(w.view(0, hz, 2).unwrap().max_ns < 2_000.0, "the slow first second is out");
        assert!(w.view(0, hz, 3).unwrap().max_ns > 90_000.0);
        assert!(w.view(1, hz, 3).is_none(), "no such core");
    }
}
