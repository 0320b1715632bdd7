//! A tenant network's anycast gateway, and the endpoint table behind it.
//!
//! Every switch answers for a network's gateway addresses with the same virtual MAC, so a
//! VM's off-subnet traffic goes to the switch it sits on, wherever it moves. Frames sent
//! to that MAC are routed inside their VNI (its VRF) to the endpoint holding the
//! destination address. ARP requests and neighbour solicitations for an address the
//! endpoint table knows are answered by the VM's own switch (suppression) instead of
//! flooded to every host of the network.
mod answer;
pub mod ask;
#[cfg(test)]
mod tests;

pub(crate) use answer::{advertise, ND_ADVERT, ND_SOLICIT};
pub use answer::{answer_arp, answer_nd, is_neighbour_discovery, learned};

use crate::{
    meta::{Action, IpKey, Meta},
    tables::{FibTarget, L2Tables, Network},
    wire::{ethernet, ipv4, update_checksum, Mac},
    DropReason, Frame, PortId,
};
use rustc_hash::FxHashMap;

/// The gateway's MAC, the same on every switch (locally administered, unicast).
pub const GATEWAY_MAC: Mac = Mac([0x02, 0x76, 0x73, 0x67, 0x77, 0x01]);

/// A network's gateway addresses (IPv4-mapped for IPv4, as `Meta` keeps addresses).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayAddrs {
    pub v4: Option<u32>,
    pub v6: Option<u128>,
}

impl GatewayAddrs {
    pub fn is_some(&self) -> bool {
        self.v4.is_some() || self.v6.is_some()
    }

    /// Whether `ip` (as `Meta` keeps it) is one of the gateway's addresses.
    pub fn owns(&self, ip: IpKey) -> bool {
        self.v4.is_some_and(|a| crate::meta::ipv4_key(a) == ip) || self.v6 == Some(ip)
    }
}

/// Where an address lives, as the switches need it: its MAC (the FIB knows the port or
/// VTEP behind the MAC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub mac: Mac,
}

/// IP -> endpoint, per VNI. Built by the control plane, frozen in the snapshot.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    map: FxHashMap<(u32, IpKey), Endpoint>,
}

impl Endpoints {
    pub fn insert(&mut self, vni: u32, ip: IpKey, e: Endpoint) {
        self.map.insert((vni, ip), e);
    }

    #[inline]
    pub fn get(&self, vni: u32, ip: IpKey) -> Option<&Endpoint> {
        if self.map.is_empty() {
            return None;
        }
        self.map.get(&(vni, ip))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A frame from a VM in `net` to the gateway MAC: answered (an echo request to the
/// gateway's own address, back to `port`), or readied for switching to the endpoint
/// holding its destination address (`Continue`, MACs rewritten, TTL spent), or dropped.
pub fn route<F: Frame>(eps: &Endpoints, net: &Network, f: &mut F, m: &mut Meta, port: PortId) -> Action {
    if !net.gateway.is_some() {
        return Action::Drop(DropReason::NoGateway);
    }
    if m.ip_version == 0 {
        return Action::Drop(DropReason::GatewayNotIp);
    }
    if net.gateway.owns(m.ip_dst) {
        return answer::echo(f, m, port).unwrap_or(Action::Drop(DropReason::ToGateway));
    }
    let Some(ep) = eps.get(net.vni, m.ip_dst) else {
        return Action::Drop(DropReason::NoEndpoint);
    };
    if !spend_hop(f, m) {
        return Action::Drop(DropReason::TtlExceeded);
    }
    set_macs(f, m, ep.mac, GATEWAY_MAC);
    Action::Continue
}

/// Where address `ip` of network `vni` lives: its MAC (`known`, or the endpoint table's)
/// and the port or remote VTEP the FIB has behind that MAC.
pub fn locate(t: &L2Tables, vni: u32, ip: IpKey, known: Option<Mac>) -> Option<(Mac, FibTarget)> {
    let mac = known.or_else(|| t.endpoints.get(vni, ip).map(|ep| ep.mac))?;
    Some((mac, t.lookup(vni, mac)?.target))
}

/// A frame of network `m.vni` another host sent through the tunnel to the gateway MAC
/// (a host that uses this switch's gateway, without one of its own): routed to the
/// endpoint holding its destination if that is behind a port of this switch (the port),
/// else dropped with a reason: never flooded.
pub fn from_tunnel<F: Frame>(t: &L2Tables, f: &mut F, m: &mut Meta) -> Result<PortId, DropReason> {
    let net = t.networks.get(&m.vni).filter(|n| n.gateway.is_some()).ok_or(DropReason::NoGateway)?;
    if m.ip_version == 0 {
        return Err(DropReason::GatewayNotIp);
    }
    if net.gateway.owns(m.ip_dst) {
        return Err(DropReason::ToGateway);
    }
    match locate(t, m.vni, m.ip_dst, None) {
        Some((mac, FibTarget::Port(p))) => {
            if !spend_hop(f, m) {
                return Err(DropReason::TtlExceeded);
            }
            set_macs(f, m, mac, GATEWAY_MAC);
            Ok(p)
        }
        // (Behind yet another switch: that one's gateway routes it.)
        Some((_, FibTarget::Vtep(_))) => Err(DropReason::SplitHorizon),
        None => Err(DropReason::NoEndpoint),
    }
}

/// Writes both MACs of the frame and of its metadata.
pub(crate) fn set_macs<F: Frame>(f: &mut F, m: &mut Meta, dst: Mac, src: Mac) {
    let b = f.head_mut();
    b[ethernet::DST].copy_from_slice(&dst.0);
    b[ethernet::SRC].copy_from_slice(&src.0);
    m.dst = dst;
    m.src = src;
}

/// Decrements the TTL / hop limit; false if it would reach 0 (or the header is cut).
pub(crate) fn spend_hop<F: Frame>(f: &mut F, m: &Meta) -> bool {
    let l3 = m.l3 as usize;
    let b = f.head_mut();
    match m.ip_version {
        4 => {
            let Some(h) = b.get_mut(l3..l3 + ipv4::MIN_LEN) else { return false };
            if h[ipv4::TTL] <= 1 {
                return false;
            }
            let old = u16::from_be_bytes([h[ipv4::TTL], h[ipv4::PROTO]]);
            h[ipv4::TTL] -= 1;
            let new = u16::from_be_bytes([h[ipv4::TTL], h[ipv4::PROTO]]);
            update_checksum(&mut h[ipv4::CHECKSUM..ipv4::CHECKSUM + 2], old, new);
            true
        }
        _ => {
            let Some(hop) = b.get_mut(l3 + 7) else { return false };
            if *hop <= 1 {
                return false;
            }
            *hop -= 1;
            true
        }
    }
}
