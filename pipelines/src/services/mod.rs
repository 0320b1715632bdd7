//! Services: a virtual IP and port (VIP) spread over backends, in the data path.
//!
//! A VM reaches a VIP through its network's gateway (the VIP is off-subnet). The first
//! packet of a connection picks a backend (Maglev over its 5-tuple's hash) and makes a
//! connection-tracking session between the client and that backend, indexed also by
//! the VIP the client addressed (`CtTable::lookup_nat`); later packets to the VIP find
//! it there, so a connection keeps its backend whatever happens to the backend set.
//! The packet is translated (DNAT) and the gateway routes it to the backend. Replies
//! from a backend find the session by its own key and leave from the VIP again.
pub mod affinity;
pub mod counters;
pub mod icmp;
pub mod maglev;
mod nat;
pub mod outside;
mod stage;
#[cfg(test)]
mod tests;

pub use nat::{rewrite, End, Fixed};
pub use stage::{from_backend, to_service, At};

use crate::{gateway::Endpoints, meta::IpKey, wire::Mac};
use affinity::{client_tag, Affinity};
use counters::BackendCounters;
use maglev::{fmix64, Maglev};
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::{
    atomic::{AtomicU32, Ordering::Relaxed},
    Arc,
};

/// The next `Service::version` (0 is none: a session that noted no place).
static VERSIONS: AtomicU32 = AtomicU32::new(1);

/// A backend: an address and port of the service's network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Backend {
    pub ip: IpKey,
    pub port: u16,
}

/// How a new connection's backend is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Algorithm {
    /// Maglev over the connection's hash (or the client's, with affinity).
    #[default]
    Maglev,
    /// A slot of the Maglev table at random (weighted as Maglev is, not repeatable).
    Random,
}

/// One service as the cores read it.
#[derive(Debug)]
pub struct Service {
    /// Stable across publishes (sessions name their service by it).
    pub id: u32,
    /// This build of the service, unique on this switch: a session that noted its
    /// backend's place under it can take that place as it is (`note`).
    pub version: u32,
    pub vni: u32,
    pub vip: IpKey,
    pub port: u16,
    pub proto: u8,
    pub backends: Vec<Backend>,
    pub maglev: Maglev,
    pub algorithm: Algorithm,
    pub affinity: Option<Affinity>,
    /// The backends and their places in `backends`, to tell whether a connection's
    /// backend is still one.
    members: FxHashMap<Backend, u16>,
}

impl Service {
    pub fn new(id: u32, vni: u32, vip: (IpKey, u16), proto: u8, backends: Vec<Backend>, maglev: Maglev) -> Service {
        let members = backends.iter().enumerate().map(|(i, b)| (*b, i as u16)).collect();
        Service {
            id,
            version: VERSIONS.fetch_add(1, Relaxed),
            vni,
            vip: vip.0,
            port: vip.1,
            proto,
            backends,
            maglev,
            algorithm: Algorithm::Maglev,
            affinity: None,
            members,
        }
    }

    /// The backend for a new connection from `client`, whose VIP key hashes to `h`, at
    /// `now_ms`; `seed` varies from batch to batch (for `Random`). With affinity the
    /// choice is remembered, unless `dry` (a trace).
    #[inline]
    pub fn pick(&self, client: IpKey, h: u64, now_ms: u32, seed: u64, dry: bool) -> Option<u16> {
        let now_s = now_ms / 1000;
        let Some(a) = &self.affinity else {
            return match self.algorithm {
                Algorithm::Maglev => self.maglev.pick(h),
                Algorithm::Random => self.maglev.pick(fmix64(h ^ seed)),
            };
        };
        let tag = client_tag(client, self.id);
        let i = match (a.recall(tag, now_s), self.algorithm) {
            (Some(i), _) => i,
            (None, Algorithm::Maglev) => self.maglev.pick(tag)?,
            (None, Algorithm::Random) => self.maglev.pick(fmix64(h ^ seed))?,
        };
        if !dry {
            a.remember(tag, i, now_s);
        }
        Some(i)
    }

    /// How `pick` chooses, in words (for `trace`).
    pub fn picked_by(&self) -> String {
        let how = match self.algorithm {
            Algorithm::Maglev if self.affinity.is_some() => "Maglev's pick by the client's address",
            Algorithm::Maglev => "Maglev's pick",
            Algorithm::Random => "a random pick",
        };
        match &self.affinity {
            Some(a) => format!("{how}, or the client's backend of the last {} s (affinity)", a.secs),
            None => how.to_string(),
        }
    }

    /// What a session notes of its backend at place `i` of this version's `backends`
    /// (`NatKey::pick`).
    #[inline]
    pub fn note(&self, i: u16) -> u64 {
        (self.version as u64) << 32 | i as u64
    }

    /// Backend `b`'s place in `backends`, if it is one.
    #[inline]
    pub fn index_of(&self, b: Backend) -> Option<u16> {
        self.members.get(&b).copied()
    }
}

/// A VIP as the cores find it: its service, the way to each of its backends, and their
/// counters.
#[derive(Clone, Debug)]
pub struct Vip {
    pub service: Arc<Service>,
    /// By the backend's place in `service.backends`.
    pub to_backend: Box<[ToBackend]>,
    pub counters: Arc<BackendCounters>,
}

/// What a packet translated toward a backend needs, in one place (one bounds check and
/// one cache line a packet).
#[derive(Clone, Copy, Debug)]
pub struct ToBackend {
    pub backend: Backend,
    /// Its MAC as the endpoint table had it when the tables were built (None: not known
    /// then; the gateway looks again per packet).
    pub mac: Option<Mac>,
    /// The translation from the VIP to it with its checksum changes worked out (IPv4;
    /// None for IPv6, translated packet by packet).
    pub fixed: Option<Fixed>,
}

/// A service's address as packets carry it: (VNI, IP, port, protocol).
type Addr = (u32, IpKey, u16, u8);

/// A service as the outside reaches it through a port of the host's address: its VIP's
/// entry (the service, its backends' MACs and counters), and with the `local` traffic
/// policy which of its backends are on this host (the only ones it then picks).
#[derive(Debug)]
pub struct NodePort {
    pub vip: Vip,
    pub local: Option<Box<[bool]>>,
}

impl NodePort {
    /// The backend for a new connection from `client` hashing to `h`: the service's
    /// pick, or with the local policy Maglev's first local one along a few re-hashes
    /// (so shares keep to the weights).
    #[inline]
    pub fn pick(&self, client: IpKey, h: u64, now_ms: u32, seed: u64, dry: bool) -> Option<u16> {
        let svc = &self.vip.service;
        let Some(local) = &self.local else { return svc.pick(client, h, now_ms, seed, dry) };
        (0..16u64).filter_map(|i| svc.maglev.pick(fmix64(h ^ i))).find(|&i| local.get(i as usize) == Some(&true))
    }
}

/// Every service, by VIP, and every backend (a reply from one is looked up).
#[derive(Debug, Default)]
pub struct ServiceTables {
    by_vip: FxHashMap<Addr, Vip>,
    backends: FxHashSet<Addr>,
    vnis: FxHashSet<u32>,
    /// By (port, protocol) of the host's address.
    node_ports: FxHashMap<(u16, u8), NodePort>,
}

impl ServiceTables {
    /// Adds service `s`, its backends' MACs taken from `endpoints`, counting into
    /// `counters` (one per backend); reachable at its VIP (if it has one: a host port
    /// mapping has none) and at its node port, if any (with the local policy: which
    /// backends are on this host).
    pub fn insert(
        &mut self,
        s: Arc<Service>,
        endpoints: &Endpoints,
        counters: Arc<BackendCounters>,
        node_port: Option<(u16, Option<Box<[bool]>>)>,
    ) {
        for b in &s.backends {
            self.backends.insert((s.vni, b.ip, b.port, s.proto));
        }
        self.vnis.insert(s.vni);
        let to_backend = (s.backends.iter())
            .map(|&backend| ToBackend {
                backend,
                mac: endpoints.get(s.vni, backend.ip).map(|e| e.mac),
                fixed: Fixed::new((s.vip, s.port), (backend.ip, backend.port)),
            })
            .collect();
        let vip = Vip { service: s.clone(), to_backend, counters };
        if let Some((port, local)) = node_port {
            self.node_ports.insert((port, s.proto), NodePort { vip: vip.clone(), local });
        }
        if s.port != 0 {
            self.by_vip.insert((s.vni, s.vip, s.port, s.proto), vip);
        }
    }

    /// The networks that masquerade, whose VM batches the service stage looks at too.
    pub fn add_network(&mut self, vni: u32) {
        self.vnis.insert(vni);
    }

    #[inline]
    pub fn at_node_port(&self, port: u16, proto: u8) -> Option<&NodePort> {
        if self.node_ports.is_empty() {
            return None;
        }
        self.node_ports.get(&(port, proto))
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
