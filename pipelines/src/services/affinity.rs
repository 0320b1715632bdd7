//! Client affinity (`--affinity SECS`): a client's new connections go to the backend
//! its last one went to, for SECS after that last new connection, even across changes
//! of the backend set (while that backend stays). Without a remembered backend, the
//! pick is Maglev's over the client's address alone, so clients spread as connections do.
//!
//! The memory is a direct-mapped table the cores share: a slot per client hash, two
//! words (the client's tag; the backend's stable id and when). Cores write it without
//! locks; a torn or overwritten slot costs only that client's affinity (its next
//! connection is picked afresh), never a wrong translation.
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Clients remembered per service (1 MiB).
pub const SLOTS: usize = 1 << 16;

/// The remembered backends of one service, kept by the control plane across rebuilds
/// of the service (a backend is named by its stable id, not its place).
#[derive(Debug)]
pub struct AffinityTable {
    slots: Box<[[AtomicU64; 2]]>,
}

impl Default for AffinityTable {
    fn default() -> Self {
        AffinityTable { slots: (0..SLOTS).map(|_| [AtomicU64::new(0), AtomicU64::new(0)]).collect() }
    }
}

/// A backend's id that stays the same while it stays a backend: a hash of its address
/// and port as the user wrote them.
pub fn stable_id(key: &[u8]) -> u32 {
    (super::maglev::key_hash(key, 2) >> 32) as u32
}

/// Affinity as one build of a service reads it: the shared memory, how long it holds,
/// and which backends (by stable id) may take new connections.
#[derive(Debug)]
pub struct Affinity {
    pub secs: u32,
    pub table: std::sync::Arc<AffinityTable>,
    /// Stable id -> place in the service's backends, for backends with weight.
    pub members: FxHashMap<u32, u16>,
    /// Stable id of each backend, by place.
    pub ids: Box<[u32]>,
}

impl Affinity {
    /// The backend client `tag` (a non-zero hash of its address) was sent to within
    /// `secs` of `now_s`, if it is still a backend with weight.
    #[inline]
    pub fn recall(&self, tag: u64, now_s: u32) -> Option<u16> {
        let slot = self.table.slots.get(tag as usize & (SLOTS - 1))?;
        if slot[0].load(Relaxed) != tag {
            return None;
        }
        let v = slot[1].load(Relaxed);
        if now_s.wrapping_sub(v as u32) > self.secs {
            return None;
        }
        self.members.get(&((v >> 32) as u32)).copied()
    }

    /// Remembers that client `tag` was sent to backend `i` at `now_s`.
    #[inline]
    pub fn remember(&self, tag: u64, i: u16, now_s: u32) {
        let (Some(slot), Some(&id)) = (self.table.slots.get(tag as usize & (SLOTS - 1)), self.ids.get(i as usize))
        else {
            return;
        };
        slot[0].store(tag, Relaxed);
        slot[1].store((id as u64) << 32 | now_s as u64, Relaxed);
    }
}

/// A client's tag: a hash of its address (never 0; its low bits pick the slot).
#[inline]
pub fn client_tag(ip: crate::meta::IpKey, service: u32) -> u64 {
    super::maglev::fmix64((ip as u64) ^ ((ip >> 64) as u64).rotate_left(17) ^ (service as u64) << 40) | 1 << 63
}
