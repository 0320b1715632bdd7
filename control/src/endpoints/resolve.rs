//! Finding who holds an address the gateway had a packet for and no endpoint holds: the
//! switch asks the network itself (ARP, or a neighbour solicitation) from the gateway's
//! address, on the network's local VM ports, a few times, then leaves the address alone
//! for a while. The owner's answer comes to the gateway's MAC and is learned like any
//! ARP/ND a VM sends. Packets never wait for it: until then they are dropped as
//! `no_endpoint`. (Endpoints behind other switches are not asked for: their own switch
//! answers for the gateway; they come from static entries or the cluster store.)
use super::Endpoints;
use ipnetwork::IpNetwork;
use pipelines::{gateway::ask, learn::LearnEvent, meta::ip_addr};
use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

/// Questions about one address before it is left alone.
pub const ASK_TRIES: u32 = 3;
/// Between two questions about one address.
pub const ASK_EVERY: Duration = Duration::from_secs(1);
/// An address nobody answered for is not asked about again for this long.
pub const UNANSWERED_HOLD: Duration = Duration::from_secs(20);
/// Addresses being asked about at once (more wait for a place).
pub const MAX_ASKING: usize = 4096;

#[derive(Debug, Clone, Copy)]
pub(super) struct Asking {
    tries: u32,
    next: Instant,
}

/// The frame asking for `target` from gateway address `from`; None across families.
fn question(from: IpAddr, target: IpAddr) -> Option<Vec<u8>> {
    match (from, target) {
        (IpAddr::V4(g), IpAddr::V4(t)) => Some(ask::arp_request(g.into(), t.into()).to_vec()),
        (IpAddr::V6(g), IpAddr::V6(t)) => Some(ask::solicitation(g.into(), t.into()).to_vec()),
        _ => None,
    }
}

impl Endpoints {
    /// A core had a packet for `ev.ip` in network `ev.vni` that no endpoint holds.
    pub fn unknown(&mut self, ev: &LearnEvent, now: Instant) {
        let key = (ev.vni, ip_addr(ev.ip));
        if self.list.contains_key(&key) || self.learned.contains_key(&key) || self.asking.len() >= MAX_ASKING {
            return;
        }
        self.asking.entry(key).or_insert(Asking { tries: 0, next: now });
    }

    /// The questions due at `now`, as (VNI, frame) for the network's local VM ports.
    /// `subnets` gives a network's gateway addresses with their subnets: only an address
    /// inside one is asked about, from that gateway address.
    pub fn questions_due(&mut self, subnets: impl Fn(u32) -> Vec<IpNetwork>, now: Instant) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        let (list, learned) = (&self.list, &self.learned);
        self.asking.retain(|&(vni, ip), a| {
            if list.contains_key(&(vni, ip)) || learned.contains_key(&(vni, ip)) {
                return false;
            }
            if a.tries >= ASK_TRIES || now < a.next {
                // Waiting for an answer, or left alone until `next`.
                return now < a.next || a.tries < ASK_TRIES;
            }
            let Some(frame) = subnets(vni).iter().find(|n| n.contains(ip)).and_then(|n| question(n.ip(), ip)) else {
                return false;
            };
            a.tries += 1;
            a.next = now + if a.tries >= ASK_TRIES { UNANSWERED_HOLD } else { ASK_EVERY };
            out.push((vni, frame));
            true
        });
        out
    }
}
