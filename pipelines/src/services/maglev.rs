//! Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4): a lookup table of
//! M slots (M prime) filled from each backend's own permutation of the slots, so that a
//! change of the backend set moves few flows (about 1/N when one of N goes) while every
//! backend gets a share of slots proportional to its weight.
//!
//! Each backend is named by a stable key (its address and port as text): its
//! permutation is `offset + j * skip (mod M)`, with `offset = h(key, 0) mod M` and
//! `skip = h(key, 1) mod (M - 1) + 1`, where `h(key, seed)` is 64-bit FNV-1a over the
//! seed byte and then the key. Backends take turns in the order given; in round `r` a
//! backend of weight `w` takes its next free preferred slot while it holds fewer than
//! `r * w / max weight` slots (the weighted variant Envoy and Cilium use), so a weight
//! of 0 takes none (a draining backend).

/// The default table size: a prime comfortably above 100 x a few dozen backends.
pub const DEFAULT_SIZE: u32 = 16_381;
/// The largest table accepted (prime).
pub const MAX_SIZE: u32 = 1_048_573;

/// 64-bit FNV-1a of `bytes`: the same on every switch and across restarts.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.into_iter().fold(OFFSET, |h, b| (h ^ b as u64).wrapping_mul(PRIME))
}

/// FNV-1a of `seed` then `key`, mixed: the backends' permutations are a function of
/// their keys alone, the same on every switch and across restarts.
pub fn key_hash(key: &[u8], seed: u8) -> u64 {
    fmix64(fnv1a(std::iter::once(seed).chain(key.iter().copied())))
}

/// MurmurHash3's finalizer: FNV's low bits (what `mod M` keeps) barely depend on the
/// last bytes of the key, and addresses differ in their last bytes.
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u32;
    while (d as u64) * (d as u64) <= n as u64 {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// A filled lookup table: slot -> index of a backend in the list it was built from.
/// Empty when no backend has weight.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Maglev {
    slots: Box<[u16]>,
}

impl Maglev {
    /// Fills a table of `size` slots (a prime) from `backends` (key, weight), in order.
    /// At most 65,535 backends.
    pub fn build(size: u32, backends: &[(&[u8], u32)]) -> Maglev {
        let m = size as u64;
        let max_w = backends.iter().map(|b| b.1).max().unwrap_or(0);
        if m < 2 || max_w == 0 || backends.len() > u16::MAX as usize {
            return Maglev::default();
        }
        let perm: Vec<(u64, u64)> =
            backends.iter().map(|(k, _)| (key_hash(k, 0) % m, key_hash(k, 1) % (m - 1) + 1)).collect();
        let mut next = vec![0u64; backends.len()];
        let mut held = vec![0u64; backends.len()];
        const EMPTY: u16 = u16::MAX;
        let mut slots = vec![EMPTY; size as usize];
        let mut filled = 0u64;
        let mut round = 0u64;
        while filled < m {
            round += 1;
            for (i, &(_, w)) in backends.iter().enumerate() {
                // Its share so far: held < round * w / max_w, in integers.
                if held[i] * max_w as u64 >= round * w as u64 {
                    continue;
                }
                let (offset, skip) = perm[i];
                let mut c = (offset + next[i] * skip) % m;
                while slots[c as usize] != EMPTY {
                    next[i] += 1;
                    c = (offset + next[i] * skip) % m;
                }
                slots[c as usize] = i as u16;
                next[i] += 1;
                held[i] += 1;
                filled += 1;
                if filled == m {
                    break;
                }
            }
        }
        Maglev { slots: slots.into_boxed_slice() }
    }

    /// The backend (index into the list it was built from) for a flow hashing to `h`.
    #[inline]
    pub fn pick(&self, h: u64) -> Option<u16> {
        if self.slots.is_empty() {
            return None;
        }
        Some(self.slots[(h % self.slots.len() as u64) as usize])
    }

    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// Slots held by each of `n` backends.
    pub fn shares(&self, n: usize) -> Vec<u32> {
        let mut v = vec![0; n];
        for &s in self.slots.iter() {
            if let Some(c) = v.get_mut(s as usize) {
                *c += 1;
            }
        }
        v
    }
}
