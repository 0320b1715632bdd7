//! The L2 and overlay tables the stages read: networks, the FIB, the local VTEP and
//! the remote VTEPs' prebuilt outer headers. Built by the control plane, frozen, and
//! published inside the snapshot.
use crate::{
    wire::{ethernet, ipv4, ones_sum, vxlan, Mac},
    PortId,
};
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// Where a MAC lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FibTarget {
    Port(PortId),
    /// Behind a remote VTEP (its IPv4 address).
    Vtep(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FibEntry {
    pub target: FibTarget,
    /// Configured by the operator: never moved or aged by learning.
    pub is_static: bool,
}

/// One network's FIB, by MAC (`Mac::to_u64`). Snapshots share a network's shard until
/// that network's entries change, so what is learned in one network rebuilds its shard
/// alone.
pub type FibShard = FxHashMap<u64, FibEntry>;

/// A (VNI, MAC) key in one integer: VNI in bits 48..72, MAC below.
#[inline(always)]
pub fn fib_key(vni: u32, mac: Mac) -> u128 {
    ((vni as u128) << 48) | mac.to_u64() as u128
}

/// A tenant network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Network {
    pub vni: u32,
    /// Local VM ports in this VNI.
    pub ports: Vec<PortId>,
    /// Remote VTEPs that get a copy of broadcast, multicast and unknown unicast.
    pub flood_vteps: Vec<u32>,
    /// The anycast gateway's addresses, if the network has one.
    pub gateway: crate::gateway::GatewayAddrs,
    /// Egress masquerade (`--snat`): the mask of the gateway's IPv4 subnet; packets to
    /// the gateway for an address outside it and held by no endpoint leave by the
    /// uplink from the host's address.
    pub snat: Option<u32>,
    /// The same over IPv6: the mask of the gateway's IPv6 prefix.
    pub snat6: Option<u128>,
}

impl Network {
    /// Whether `ip` is outside the network's subnet of its family and it masquerades it.
    #[inline]
    pub fn masquerades(&self, ip: crate::meta::IpKey) -> bool {
        if ip >> 32 == 0xffff {
            return match (self.snat, self.gateway.v4) {
                (Some(mask), Some(gw)) => (ip as u32 ^ gw) & mask != 0,
                _ => false,
            };
        }
        match (self.snat6, self.gateway.v6) {
            (Some(mask), Some(gw)) => (ip ^ gw) & mask != 0,
            _ => false,
        }
    }

    /// Whether it masquerades either family.
    pub fn masquerading(&self) -> bool {
        self.snat.is_some() || self.snat6.is_some()
    }
}

/// The underlay beyond the uplink as egress needs it: which addresses are on-link, the
/// router for the rest, and the MACs resolved (ARP or static).
#[derive(Clone, Debug, Default)]
pub struct Underlay {
    pub net: u32,
    pub mask: u32,
    pub router: Option<u32>,
    pub neighbours: FxHashMap<u32, Mac>,
    /// North-south over IPv6: the host's address on the uplink, its prefix's mask, the
    /// router, and the neighbours resolved (neighbour discovery).
    pub host6: Option<u128>,
    pub mask6: u128,
    pub router6: Option<u128>,
    pub neighbours6: FxHashMap<u128, Mac>,
}

impl Underlay {
    /// The MAC of the next hop toward `ip`, if resolved.
    #[inline]
    pub fn next_hop_mac(&self, ip: u32) -> Option<Mac> {
        let hop = if ip & self.mask == self.net & self.mask { ip } else { self.router? };
        self.neighbours.get(&hop).copied()
    }

    /// The MAC of the next hop toward `ip` (as `Meta` keeps addresses, either family).
    #[inline]
    pub fn next_hop(&self, ip: crate::meta::IpKey) -> Option<Mac> {
        if ip >> 32 == 0xffff {
            return self.next_hop_mac(ip as u32);
        }
        let host = self.host6?;
        let hop = if (ip ^ host) & self.mask6 == 0 { ip } else { self.router6? };
        self.neighbours6.get(&hop).copied()
    }

    /// The next hop toward IPv6 address `ip`: itself on-link, else the router.
    pub fn next_hop6(&self, ip: u128) -> Option<u128> {
        let host = self.host6?;
        if (ip ^ host) & self.mask6 == 0 {
            Some(ip)
        } else {
            self.router6
        }
    }
}

/// The local VTEP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vtep {
    pub ip: u32,
    pub mac: Mac,
    pub uplink: PortId,
    pub udp_port: u16,
    pub ttl: u8,
    /// The uplink's MTU: the largest outer IPv4 packet.
    pub mtu: u16,
}

/// A remote VTEP whose next hop is resolved: the outer header stack, ready to copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remote {
    pub header: [u8; vxlan::OUTER_LEN],
    /// One's-complement sum of the outer IPv4 header with length and checksum zero:
    /// per packet only the length is added.
    pub ip_sum: u32,
}

impl Remote {
    /// Outer Ethernet (our MAC to the next hop's), IPv4 (our VTEP to `ip`, DF, TTL),
    /// UDP (to the VXLAN port), VXLAN (I flag). Lengths, checksum, source port and VNI
    /// are filled per packet.
    pub fn new(vtep: &Vtep, ip: u32, nexthop_mac: Mac) -> Remote {
        let mut h = [0u8; vxlan::OUTER_LEN];
        h[ethernet::DST].copy_from_slice(&nexthop_mac.0);
        h[ethernet::SRC].copy_from_slice(&vtep.mac.0);
        h[12..14].copy_from_slice(&ethernet::ETHERTYPE_IPV4.to_be_bytes());
        let ip_hdr = &mut h[vxlan::OUTER_IP..vxlan::OUTER_UDP];
        ip_hdr[0] = 0x45;
        ip_hdr[ipv4::FLAGS_FRAG..ipv4::FLAGS_FRAG + 2].copy_from_slice(&ipv4::DF.to_be_bytes());
        ip_hdr[ipv4::TTL] = vtep.ttl;
        ip_hdr[ipv4::PROTO] = ipv4::PROTO_UDP;
        ip_hdr[ipv4::SRC..ipv4::SRC + 4].copy_from_slice(&vtep.ip.to_be_bytes());
        ip_hdr[ipv4::DST..ipv4::DST + 4].copy_from_slice(&ip.to_be_bytes());
        let ip_sum = ones_sum(ip_hdr);
        h[vxlan::OUTER_UDP + 2..vxlan::OUTER_UDP + 4].copy_from_slice(&vtep.udp_port.to_be_bytes());
        vxlan::emit(&mut h[vxlan::OUTER_VXLAN..], 0);
        Remote { header: h, ip_sum }
    }
}

/// Everything the L2/overlay stages read.
#[derive(Clone, Debug, Default)]
pub struct L2Tables {
    pub networks: FxHashMap<u32, Network>,
    /// The FIB, per VNI.
    pub fib: FxHashMap<u32, Arc<FibShard>>,
    pub vtep: Option<Vtep>,
    /// Remote VTEPs with a resolved next hop.
    pub remotes: FxHashMap<u32, Remote>,
    /// MTU per port id (for frames delivered to VM ports).
    pub port_mtu: Vec<u16>,
    /// Security groups, compiled apart: shared between snapshots until rules or ports change.
    pub acl: Arc<crate::acl::AclTables>,
    /// Meters and DSCP settings per port.
    pub qos: Arc<crate::qos::QosTables>,
    /// Connection tracking: the session table (kept across snapshots) and the stateful
    /// ports.
    pub ct: Arc<crate::conntrack::CtTables>,
    /// Who holds each address of each network: ARP/ND answers and the gateway's routes.
    pub endpoints: Arc<crate::gateway::Endpoints>,
    /// Services by VIP, and their backends.
    pub services: Arc<crate::services::ServiceTables>,
    /// Next hops beyond the uplink (masquerade, NodePort replies).
    pub underlay: Arc<Underlay>,
    /// Which compile these tables are (`stamp`; 0: none). Published tables never change,
    /// so a core may keep their FIB's answers from batch to batch while it sees the same
    /// stamp (see `stages::FibMemo`).
    pub stamp: u64,
}

impl L2Tables {
    /// Marks these tables as a compile of their own, apart from every other in this
    /// process: done once they are complete, before they are published.
    pub fn stamp(&mut self) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        self.stamp = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Out of line: the stages look up once per run of equal MACs, and the two probes
    /// inlined into every stage loop cost more than the call.
    #[inline(never)]
    pub fn lookup(&self, vni: u32, mac: Mac) -> Option<&FibEntry> {
        self.fib.get(&vni)?.get(&mac.to_u64())
    }

    /// Adds or replaces one FIB entry (copying the VNI's shard if a snapshot shares it).
    pub fn fib_insert(&mut self, vni: u32, mac: Mac, entry: FibEntry) {
        Arc::make_mut(self.fib.entry(vni).or_default()).insert(mac.to_u64(), entry);
    }

    pub fn mtu(&self, port: PortId) -> u16 {
        self.port_mtu.get(port as usize).copied().unwrap_or(1500)
    }
}
