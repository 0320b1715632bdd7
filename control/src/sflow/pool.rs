//! The sample pool each port reports: over every core, the packets each had seen on
//! the port when it took its latest sample.

#[derive(Default)]
pub struct Pools {
    /// [core][port]: the pool of that core's latest sample on that port.
    seen: Vec<Vec<u32>>,
}

impl Pools {
    /// Takes a sample's pool on `core`, returns the port's pool over every core.
    pub fn seen(&mut self, core: usize, port: u16, pool: u32) -> u32 {
        let p = port as usize;
        if self.seen.len() <= core {
            self.seen.resize_with(core + 1, Vec::new);
        }
        if self.seen[core].len() <= p {
            self.seen[core].resize(p + 1, 0);
        }
        self.seen[core][p] = pool;
        self.seen.iter().map(|c| c.get(p).copied().unwrap_or(0)).fold(0u32, u32::wrapping_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ports_pool_adds_each_cores_latest_and_only_grows() {
        let mut p = Pools::default();
        assert_eq!(p.seen(0, 3, 100), 100);
        assert_eq!(p.seen(1, 3, 40), 140);
        assert_eq!(p.seen(0, 3, 230), 270);
        assert_eq!(p.seen(0, 1, 5), 5, "ports apart");
        // Growth from sample to sample telescopes to the packets seen.
        let mut last = 0;
        let mut total = 0u64;
        for (core, pool) in [(0, 250), (1, 90), (1, 180), (0, 400)] {
            let now = p.seen(core, 3, pool);
            assert!(now >= last);
            total += (now - last) as u64;
            last = now;
        }
        assert_eq!(total, 400 + 180);
    }
}
