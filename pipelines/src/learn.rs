//! MAC learning on the cores: what a core saw goes to the control plane as an event;
//! the control plane decides (static entries win, MAC limits, moves) and the result
//! comes back in the next snapshot. A core never writes a table and never blocks.
//!
//! A small per-core cache keeps a core from sending the same event every packet: an
//! unknown or moved MAC is reported again only after `RESEND` of a second (the new
//! snapshot normally arrives well before), and a known learned MAC is re-reported once
//! a second, which keeps it from ageing out while it talks.
pub use crate::clock::Clock;
use crate::{
    tables::{fib_key, FibEntry, FibTarget},
    wire::Mac,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearnEvent {
    pub vni: u32,
    pub mac: Mac,
    pub target: FibTarget,
    /// An address the MAC spoke for (ARP/ND seen from a VM, see `gateway::learn`), as
    /// `Meta` keeps addresses; 0: a MAC seen as a source, nothing more.
    pub ip: crate::meta::IpKey,
    /// Not something seen but a question: the gateway had a packet for `ip` and no
    /// endpoint holds it (`target`: the port the packet came from; `mac` unused).
    pub unknown: bool,
}

impl LearnEvent {
    /// A MAC seen as a source at `target`.
    pub fn mac(vni: u32, mac: Mac, target: FibTarget) -> LearnEvent {
        LearnEvent { vni, mac, target, ip: 0, unknown: false }
    }

    /// An address `ip` a VM at `port` sent to through the gateway and no endpoint holds.
    pub fn unknown(vni: u32, ip: crate::meta::IpKey, port: crate::PortId) -> LearnEvent {
        LearnEvent { vni, mac: Mac::default(), target: FibTarget::Port(port), ip, unknown: true }
    }

    /// A packet for `ip` beyond the uplink found its next hop unresolved (VNI `UNDERLAY`).
    pub fn next_hop(ip: crate::meta::IpKey, uplink: crate::PortId) -> LearnEvent {
        LearnEvent::unknown(UNDERLAY, ip, uplink)
    }
}

/// The VNI of events about the underlay (no network has it).
pub const UNDERLAY: u32 = 0;

/// Where a core puts what it hands to the control plane: a bounded ring in the
/// switch, a Vec in tests. `push` returns false when full; the caller counts the loss.
pub trait Sink<T> {
    fn push(&mut self, item: T) -> bool;
}

impl<T> Sink<T> for Vec<T> {
    fn push(&mut self, item: T) -> bool {
        Vec::push(self, item);
        true
    }
}

const SLOTS: usize = 4096;
/// Addresses a core remembers having asked about (per core, direct-mapped).
const ASKED: usize = 256;
/// Fraction of a second before an unknown/moved MAC is reported again.
const RESEND_DIV: u64 = 20;

#[derive(Clone, Copy, Default)]
struct Slot {
    key: u128,
    target: Option<FibTarget>,
    at: u64,
}

/// Per-core learning state.
pub struct Learner {
    slots: Box<[Slot]>,
    /// (VNI and address, when) of the last unknown addresses reported.
    asked: Box<[(u128, u64)]>,
    /// Events the sink refused (ring full).
    pub lost: u64,
}

impl Default for Learner {
    fn default() -> Self {
        Self::new()
    }
}

impl Learner {
    pub fn new() -> Learner {
        Learner {
            slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
            asked: vec![(0, 0); ASKED].into_boxed_slice(),
            lost: 0,
        }
    }

    /// The gateway had a packet for an address no endpoint holds (`ev`, made by
    /// `LearnEvent::unknown`): reported at most once a second per address, however many
    /// packets wait for it.
    #[inline]
    pub fn unknown(&mut self, ev: LearnEvent, clock: Clock, sink: &mut impl Sink<LearnEvent>) {
        let key = ev.ip ^ (ev.vni as u128) << 96 ^ 1;
        let h = (key as u64 ^ (key >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let slot = &mut self.asked[(h >> 56) as usize & (ASKED - 1)];
        if slot.0 == key && clock.now.wrapping_sub(slot.1) < clock.hz {
            return;
        }
        *slot = (key, clock.now);
        if !sink.push(ev) {
            self.lost += 1;
        }
    }

    /// `ev.mac` was seen as a source in `ev.vni` at `ev.target`; `entry` is what the
    /// snapshot's FIB says of it.
    #[inline]
    pub fn observe(
        &mut self,
        entry: Option<&FibEntry>,
        ev: LearnEvent,
        clock: Clock,
        sink: &mut impl Sink<LearnEvent>,
    ) {
        let LearnEvent { vni, mac, target, .. } = ev;
        let Clock { now, hz } = clock;
        let known = match entry {
            Some(e) if e.is_static => return,
            Some(e) => e.target == target,
            None => false,
        };
        let key = fib_key(vni, mac);
        let h = (key as u64 ^ (key >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let slot = &mut self.slots[(h >> 52) as usize & (SLOTS - 1)];
        let interval = if known { hz } else { hz / RESEND_DIV };
        if slot.key == key && slot.target == Some(target) && now.wrapping_sub(slot.at) < interval {
            return;
        }
        *slot = Slot { key, target: Some(target), at: now };
        if !sink.push(ev) {
            self.lost += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HZ: u64 = 1_000_000;

    fn at(now: u64) -> Clock {
        Clock { now, hz: HZ }
    }

    #[test]
    fn reports_new_macs_once_then_refreshes_each_second() {
        let mut l = Learner::new();
        let mut out = Vec::new();
        let mac = Mac([2, 0, 0, 0, 0, 9]);
        let t = FibTarget::Port(3);
        let ev = LearnEvent::mac(100, mac, t);
        l.observe(None, ev, at(0), &mut out);
        l.observe(None, ev, at(10), &mut out);
        assert_eq!(out.len(), 1, "no repeat before the snapshot can catch up");
        l.observe(None, ev, at(HZ / 10), &mut out);
        assert_eq!(out.len(), 2, "still unknown after 100 ms: report again");
        let learned = FibEntry { target: t, is_static: false };
        l.observe(Some(&learned), ev, at(HZ / 10 + 5), &mut out);
        assert_eq!(out.len(), 2);
        l.observe(Some(&learned), ev, at(2 * HZ), &mut out);
        assert_eq!(out.len(), 3, "refresh once a second keeps it from ageing");
        // A move is reported at once.
        let moved = LearnEvent { target: FibTarget::Port(4), ..ev };
        l.observe(Some(&learned), moved, at(2 * HZ + 1), &mut out);
        assert_eq!(out.last().unwrap().target, FibTarget::Port(4));
        // Static entries are never reported.
        let n = out.len();
        let pinned = FibEntry { target: t, is_static: true };
        l.observe(Some(&pinned), LearnEvent { target: FibTarget::Port(9), ..ev }, at(9 * HZ), &mut out);
        assert_eq!(out.len(), n);
        // The same MAC in another VNI is another entry.
        l.observe(None, LearnEvent { vni: 200, ..ev }, at(9 * HZ), &mut out);
        assert_eq!(out.last().unwrap().vni, 200);
    }

    #[test]
    fn an_unknown_address_is_reported_once_a_second() {
        let mut l = Learner::new();
        let mut out = Vec::new();
        let ev = LearnEvent::unknown(100, 0x0a01_0009, 2);
        for t in 0..1000 {
            l.unknown(ev, at(t * 100), &mut out);
        }
        assert_eq!(out, vec![ev]);
        l.unknown(LearnEvent::unknown(200, 0x0a01_0009, 2), at(100_000), &mut out);
        assert_eq!(out.len(), 2, "another network's address is another question");
        l.unknown(ev, at(HZ + 1), &mut out);
        assert_eq!(out.len(), 3, "asked again after a second");
    }

    #[test]
    fn a_full_sink_counts_losses() {
        struct Full;
        impl Sink<LearnEvent> for Full {
            fn push(&mut self, _: LearnEvent) -> bool {
                false
            }
        }
        let mut l = Learner::new();
        let ev = LearnEvent::mac(1, Mac([2, 0, 0, 0, 0, 1]), FibTarget::Port(0));
        l.observe(None, ev, at(0), &mut Full);
        assert_eq!(l.lost, 1);
    }
}
