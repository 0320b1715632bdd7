//! What each backend of a service was sent, counted per core with plain stores (one
//! writer per line of counters) and summed by the control plane when it reads.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters per backend: new connections, packets and bytes sent to it.
pub const COUNTS: usize = 3;

/// One service's counters: per core, a row of `COUNTS` words per backend, each core's
/// rows starting on their own cache line.
#[derive(Debug)]
pub struct BackendCounters {
    backends: usize,
    cores: usize,
    /// Words per core.
    stride: usize,
    words: Box<[AtomicU64]>,
}

impl BackendCounters {
    pub fn new(backends: usize, cores: usize) -> BackendCounters {
        let cores = cores.max(1);
        let stride = (backends * COUNTS).div_ceil(8) * 8;
        let words = (0..stride * cores).map(|_| AtomicU64::new(0)).collect();
        BackendCounters { backends, cores, stride, words }
    }

    /// Whether these count `backends` backends on `cores` cores.
    pub fn fits(&self, backends: usize, cores: usize) -> bool {
        self.backends == backends && self.cores == cores.max(1)
    }

    /// A packet of `bytes` to backend `i` on `core`, the first of its connection if
    /// `new`. Only `core` writes its words: a load and a store, no locked add.
    #[inline]
    pub fn count(&self, core: usize, i: usize, bytes: u64, new: bool) {
        if i >= self.backends {
            return;
        }
        let at = core * self.stride + i * COUNTS;
        let Some(row) = self.words.get(at..at + COUNTS) else { return };
        let add = |w: &AtomicU64, n: u64| w.store(w.load(Relaxed).wrapping_add(n), Relaxed);
        add(&row[0], new as u64);
        add(&row[1], 1);
        add(&row[2], bytes);
    }

    /// Backend `i`'s counts over all cores: connections, packets, bytes.
    pub fn totals(&self, i: usize) -> [u64; COUNTS] {
        let mut sum = [0u64; COUNTS];
        if i >= self.backends {
            return sum;
        }
        for core in 0..self.cores {
            let at = core * self.stride + i * COUNTS;
            for (s, w) in sum.iter_mut().zip(&self.words[at..at + COUNTS]) {
                *s += w.load(Relaxed);
            }
        }
        sum
    }
}
