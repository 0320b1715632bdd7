//! The sFlow sampler a PMD core runs: 1-in-N with a random skip, so samples are not
//! locked to any periodic pattern in the traffic (sFlow v5, section 4.2.2).
use crate::PortId;

/// The most header bytes a sample carries.
pub const MAX_HEADER: usize = 256;

/// A flow sample taken on a core, handed to the control plane whole (no allocation).
#[derive(Clone, Copy)]
pub struct FlowSample {
    pub input: PortId,
    /// An output port, or one of the `OUTPUT_*` markers.
    pub output: u32,
    pub sampling_rate: u32,
    /// Packets that could have been sampled on the input port (this core's view).
    pub sample_pool: u32,
    /// Samples this core lost on the port (ring full).
    pub drops: u32,
    pub frame_length: u32,
    pub vlan: Option<u16>,
    pub vni_ingress: Option<u32>,
    pub vni_egress: Option<u32>,
    pub header_len: u16,
    pub header: [u8; MAX_HEADER],
}

/// The output of a dropped packet (sFlow: discarded, reason unknown).
pub const OUTPUT_DISCARDED: u32 = 0x4000_0000;
/// The output of a flooded packet (sFlow: several interfaces, how many unknown).
pub const OUTPUT_MULTIPLE: u32 = 0x8000_0000;

impl FlowSample {
    pub fn header(&self) -> &[u8] {
        &self.header[..self.header_len as usize]
    }
}

/// Per-core sampler state: a skip countdown per port and a random generator.
pub struct Sampler {
    skip: Vec<u32>,
    rng: u64,
}

impl Sampler {
    pub fn new(seed: u64) -> Sampler {
        Sampler { skip: Vec::new(), rng: seed | 1 }
    }

    /// xorshift64*: fast, and good enough to spread skips uniformly.
    #[inline]
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A skip uniform in 1..=2N-1: mean N.
    #[inline]
    fn draw(&mut self, n: u32) -> u32 {
        if n <= 1 {
            return 1;
        }
        1 + (self.next() % (2 * n as u64 - 1)) as u32
    }

    /// For a burst of `count` packets on `port`, sampled 1-in-`n`: calls `pick` with the
    /// index of each packet to sample. A burst that holds no sample costs one subtraction,
    /// not a step per packet.
    #[inline]
    pub fn sample_burst(&mut self, port: PortId, n: u32, count: usize, mut pick: impl FnMut(usize)) {
        let i = port as usize;
        if self.skip.len() <= i {
            // Grows once per new port id.
            self.skip.resize(i + 1, 0);
        }
        if self.skip[i] == 0 {
            self.skip[i] = self.draw(n);
        }
        // skip[i]: the skip[i]-th packet from here is the next sample.
        let mut at = 0usize;
        loop {
            let s = self.skip[i] as usize;
            if at + s > count {
                self.skip[i] -= (count - at) as u32;
                return;
            }
            at += s;
            pick(at - 1);
            self.skip[i] = self.draw(n);
        }
    }

    /// True if the next packet on `port`, sampled 1-in-`n`, is to be sampled.
    pub fn take(&mut self, port: PortId, n: u32) -> bool {
        let mut hit = false;
        self.sample_burst(port, n, 1, |_| hit = true);
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_in_n_on_average_and_never_periodic() {
        let mut s = Sampler::new(42);
        let n = 100;
        let taken: Vec<usize> = (0..1_000_000).filter(|_| s.take(3, n)).collect();
        let k = taken.len() as f64;
        // Mean skip N: 10,000 samples expected; the skip spread keeps the count close.
        assert!((k - 10_000.0).abs() < 3.0 * 10_000f64.sqrt(), "{k} samples");
        let gaps: std::collections::HashSet<usize> = taken.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.len() > 150, "gaps vary: {} distinct", gaps.len());
        assert!(gaps.iter().all(|g| (1..2 * n as usize).contains(g)));
    }

    #[test]
    fn bursts_sample_exactly_as_packets_one_by_one_do() {
        let (mut a, mut b) = (Sampler::new(9), Sampler::new(9));
        let mut by_burst = Vec::new();
        for burst in 0..10_000 {
            a.sample_burst(2, 64, 32, |i| by_burst.push(burst * 32 + i));
        }
        let one_by_one: Vec<usize> = (0..320_000).filter(|_| b.take(2, 64)).collect();
        assert_eq!(by_burst, one_by_one);
    }

    #[test]
    fn one_in_one_takes_everything() {
        let mut s = Sampler::new(1);
        assert!((0..100).all(|_| s.take(0, 1)));
    }
}
