//! The flow log: what the cores saw happen to connections (a session made, a session
//! ended, a new connection the rules refused), handed to the control plane through one
//! ring per core. A core never waits on it: when the ring is full the event is counted
//! lost.
use super::key::{key_words, words_key, CtKey};
use std::sync::atomic::{
    AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    New,
    End,
    /// A new connection the rules (or a full table) refused.
    Denied,
}

/// One event, as the control plane reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub key: CtKey,
    /// The opener is the key's `hi` endpoint.
    pub orig_hi: bool,
    /// The port it happened at (the opener's, for new and ended sessions).
    pub port: u16,
    /// End: packets each way, bytes, milliseconds it lived.
    pub packets: [u32; 2],
    pub bytes: u64,
    pub millis: u32,
    /// Denied: the drop reason's index.
    pub reason: u8,
    /// Denied by a rule: its ACL slot + 1 (0: the port's default, or not the rules).
    pub rule: u32,
}

const WORDS: usize = 9;
/// Events a core's ring holds, by default.
pub const RING: usize = 4096;

/// A single-producer (its core), single-consumer (the control plane) ring of events.
pub struct EventRing {
    slots: Box<[AtomicU64]>,
    /// Room - 1 (room a power of two): a slot is found by a mask, not a division.
    mask: usize,
    head: AtomicU64,
    tail: AtomicU64,
    pub lost: AtomicU64,
}

impl Default for EventRing {
    fn default() -> EventRing {
        EventRing::with_room(RING)
    }
}

impl EventRing {
    /// A ring of `room` events, rounded up to a power of two.
    pub fn with_room(room: usize) -> EventRing {
        let room = room.max(1).next_power_of_two();
        EventRing {
            slots: (0..room * WORDS).map(|_| AtomicU64::new(0)).collect(),
            mask: room - 1,
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        }
    }

    /// From the owning core only.
    pub fn push(&self, e: &Event) {
        let tail = self.tail.load(Relaxed);
        if tail.wrapping_sub(self.head.load(Acquire)) > self.mask as u64 {
            self.lost.fetch_add(1, Relaxed);
            return;
        }
        let kind = match e.kind {
            EventKind::New => 0u64,
            EventKind::End => 1,
            EventKind::Denied => 2,
        };
        let k = key_words(&e.key);
        let w = [
            k[0],
            k[1],
            k[2],
            k[3],
            k[4],
            kind | (e.orig_hi as u64) << 16 | (e.reason as u64) << 24 | (e.port as u64) << 32,
            e.packets[0] as u64 | (e.packets[1] as u64) << 32,
            e.bytes,
            e.millis as u64 | (e.rule as u64) << 32,
        ];
        let base = (tail as usize & self.mask) * WORDS;
        for (s, v) in self.slots[base..base + WORDS].iter().zip(w) {
            s.store(v, Relaxed);
        }
        self.tail.store(tail.wrapping_add(1), Release);
    }

    /// From the control plane only: every event waiting.
    pub fn drain(&self, mut each: impl FnMut(Event)) {
        let head = self.head.load(Relaxed);
        let tail = self.tail.load(Acquire);
        for i in head..tail {
            let base = (i as usize & self.mask) * WORDS;
            let w: [u64; WORDS] = std::array::from_fn(|j| self.slots[base + j].load(Relaxed));
            let key = words_key(&[w[0], w[1], w[2], w[3], w[4]]);
            each(Event {
                kind: match w[5] & 0xff {
                    0 => EventKind::New,
                    1 => EventKind::End,
                    _ => EventKind::Denied,
                },
                key,
                orig_hi: (w[5] >> 16) & 1 != 0,
                reason: (w[5] >> 24) as u8,
                port: (w[5] >> 32) as u16,
                packets: [w[6] as u32, (w[6] >> 32) as u32],
                bytes: w[7],
                millis: w[8] as u32,
                rule: (w[8] >> 32) as u32,
            });
        }
        self.head.store(tail, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_cross_in_order_and_a_full_ring_counts_what_it_lost() {
        let r = EventRing::default();
        let key = CtKey { zone: 100, proto: 17, lo: (1, 2), hi: (u128::MAX - 5, 65535) };
        let ev = |i: u32| Event {
            kind: if i.is_multiple_of(3) { EventKind::End } else { EventKind::New },
            key,
            orig_hi: i % 2 == 1,
            port: i as u16,
            packets: [i, i + 1],
            bytes: i as u64 * 1000,
            millis: i,
            reason: 3,
            rule: i * 7,
        };
        for i in 0..RING as u32 + 10 {
            r.push(&ev(i));
        }
        assert_eq!(r.lost.load(Relaxed), 10);
        let mut got = Vec::new();
        r.drain(|e| got.push(e));
        assert_eq!(got.len(), RING);
        assert!(got.iter().enumerate().all(|(i, e)| *e == ev(i as u32)));
        r.push(&ev(7));
        got.clear();
        r.drain(|e| got.push(e));
        assert_eq!(got, vec![ev(7)]);
    }
}
