//! Time inside the switch: TSC cycles from the rx burst that brought a packet to the
//! tx burst that sent it, in an HDR histogram per core.
//!
//! The core records into a histogram it owns and never shares. The control plane reads
//! it by exchange: it leaves an empty histogram in the core's `to_core` slot; the core,
//! between rounds, swaps it with its own and hands the full one back through
//! `from_core`. Nothing is allocated or locked on the core; the two boxes circulate.
use crossbeam::queue::ArrayQueue;

pub type Histogram = hdrhistogram::Histogram<u64>;

/// The largest time recorded, in TSC cycles (about 20 s at 3.4 GHz); longer is
/// recorded as this.
pub const MAX_CYCLES: u64 = 1 << 36;

/// An empty histogram: 1 to `MAX_CYCLES` cycles, 2 significant digits (1% resolution).
pub fn histogram() -> Box<Histogram> {
    Box::new(Histogram::new_with_bounds(1, MAX_CYCLES, 2).expect("constant histogram bounds are valid"))
}

/// One core's exchange slots.
pub struct Exchange {
    pub to_core: ArrayQueue<Box<Histogram>>,
    pub from_core: ArrayQueue<Box<Histogram>>,
}

impl Default for Exchange {
    fn default() -> Self {
        let x = Exchange { to_core: ArrayQueue::new(1), from_core: ArrayQueue::new(1) };
        // The control plane's spare; the core starts with its own.
        let _ = x.to_core.push(histogram());
        x
    }
}

impl Exchange {
    /// Core side: if the control plane left an empty histogram, gives it `mine` (full)
    /// and takes the empty one. Allocates nothing.
    #[inline]
    pub fn swap(&self, mine: &mut Box<Histogram>) {
        if self.from_core.is_full() {
            return;
        }
        if let Some(mut empty) = self.to_core.pop() {
            std::mem::swap(mine, &mut empty);
            // Cannot fail: from_core holds one and was empty; only this core pushes.
            let _ = self.from_core.push(empty);
        }
    }

    /// Control side: the histogram the core handed back since the last call, if any,
    /// added into `into`; the box goes back to the core, cleared.
    pub fn collect(&self, into: &mut Histogram) -> bool {
        let Some(mut h) = self.from_core.pop() else { return false };
        let _ = into.add(&*h);
        h.reset();
        let _ = self.to_core.push(h);
        true
    }
}

/// Records `n` packets that spent `cycles` inside the switch.
#[inline(always)]
pub fn record(h: &mut Histogram, cycles: u64, n: u64) {
    // Within bounds by the clamp, so this cannot fail (and never resizes).
    let _ = h.record_n(cycles.clamp(1, MAX_CYCLES), n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_hands_back_what_the_core_recorded_and_recirculates() {
        let x = Exchange::default();
        let mut core = histogram();
        let mut total = *histogram();
        record(&mut core, 1000, 31);
        record(&mut core, u64::MAX, 1);
        x.swap(&mut core);
        assert_eq!(core.len(), 0, "the core now records into the empty one");
        assert!(x.collect(&mut total));
        assert_eq!(total.len(), 32);
        assert_eq!(total.value_at_quantile(0.5), total.highest_equivalent(1000));
        assert_eq!(total.max(), total.highest_equivalent(MAX_CYCLES));
        assert!(!x.collect(&mut total), "nothing new until the core swaps again");
        record(&mut core, 5, 2);
        x.swap(&mut core);
        assert!(x.collect(&mut total));
        assert_eq!(total.len(), 34);
    }
}
