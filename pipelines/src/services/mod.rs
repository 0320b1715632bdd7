//! Services: a virtual IP and port (VIP) spread over backends, in the data path.
//!
//! A VM reaches a VIP through its network's gateway (the VIP is off-subnet). The first
//! packet of a connection picks a backend (Maglev over its 5-tuple's hash) and makes a
//! connection-tracking session between the client and that backend, indexed also by
//! the VIP the client addressed (`CtTable::lookup_nat`); later packets to the VIP find
//! it there, so a connection keeps its backend whatever happens to the backend set.
//! The packet is translated (DNAT) and the gateway routes it to the backend. Replies
//! from a backend find the session by its own key and leave from the VIP again.
mod icmp;
pub mod maglev;
mod nat;
mod stage;
#[cfg(test)]
mod tests;

pub use nat::{rewrite, End};
pub use stage::{from_backend, to_service, At};

use crate::{gateway::Endpoints, meta::IpKey, wire::Mac};
use maglev::Maglev;
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;

/// A backend: an address and port of the service's network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Backend {
    pub ip: IpKey,
    pub port: u16,
}

/// One service as the cores read it.
#[derive(Debug)]
pub struct Service {
    /// Stable across publishes (sessions name their service by it).
    pub id: u32,
    pub vni: u32,
    pub vip: IpKey,
    pub port: u16,
    pub proto: u8,
    pub backends: Vec<Backend>,
    pub maglev: Maglev,
    /// The backends and their places in `backends`, to tell whether a connection's
    /// backend is still one.
    members: FxHashMap<Backend, u16>,
}

impl Service {
    pub fn new(id: u32, vni: u32, vip: (IpKey, u16), proto: u8, backends: Vec<Backend>, maglev: Maglev) -> Service {
        let members = backends.iter().enumerate().map(|(i, b)| (*b, i as u16)).collect();
        Service { id, vni, vip: vip.0, port: vip.1, proto, backends, maglev, members }
    }

    /// Backend `b`'s place in `backends`, if it is one.
    #[inline]
    pub fn index_of(&self, b: Backend) -> Option<u16> {
        self.members.get(&b).copied()
    }
}

/// A VIP as the cores find it: its service, and its backends' MACs as the endpoint table
/// had them when the tables were built (None: not known then; the gateway looks again
/// per packet).
#[derive(Debug)]
pub struct Vip {
    pub service: Arc<Service>,
    pub macs: Box<[Option<Mac>]>,
}

/// A service's address as packets carry it: (VNI, IP, port, protocol).
type Addr = (u32, IpKey, u16, u8);

/// Every service, by VIP, and every backend (a reply from one is looked up).
#[derive(Debug, Default)]
pub struct ServiceTables {
    by_vip: FxHashMap<Addr, Vip>,
    backends: FxHashSet<Addr>,
    vnis: FxHashSet<u32>,
}

impl ServiceTables {
    /// Adds service `s`, its backends' MACs taken from `endpoints`.
    pub fn insert(&mut self, s: Arc<Service>, endpoints: &Endpoints) {
        for b in &s.backends {
            self.backends.insert((s.vni, b.ip, b.port, s.proto));
        }
        self.vnis.insert(s.vni);
        let macs = s.backends.iter().map(|b| endpoints.get(s.vni, b.ip).map(|e| e.mac)).collect();
        self.by_vip.insert((s.vni, s.vip, s.port, s.proto), Vip { service: s, macs });
    }

    pub fn is_empty(&self) -> bool {
        self.by_vip.is_empty()
    }

    /// Whether network `vni` has a service (its packets go through the service stage).
    #[inline]
    pub fn in_network(&self, vni: u32) -> bool {
        !self.vnis.is_empty() && self.vnis.contains(&vni)
    }

    #[inline]
    pub fn at_vip(&self, vni: u32, ip: IpKey, port: u16, proto: u8) -> Option<&Vip> {
        self.by_vip.get(&(vni, ip, port, proto))
    }

    #[inline]
    pub fn is_backend(&self, vni: u32, ip: IpKey, port: u16, proto: u8) -> bool {
        self.backends.contains(&(vni, ip, port, proto))
    }

    pub fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.by_vip.values().map(|v| &v.service)
    }
}
