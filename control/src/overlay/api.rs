//! The overlay on the wire: tenant networks, the VTEP, underlay neighbours and the FIB.

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum OverlayRequest {
    NetworkAdd(NetworkSpec),
    NetworkDel { vni: u32 },
    NetworkList,
    NetworkAddVtep { vni: u32, ip: Ipv4Addr },
    NetworkDelVtep { vni: u32, ip: Ipv4Addr },
    VtepSet(VtepSpec),
    VtepShow,
    NeighAdd(NeighSpec),
    NeighDel { ip: Ipv4Addr },
    NeighList,
    FibAdd(FibSpec),
    FibDel { vni: u32, mac: String },
    FibList { vni: Option<u32> },
}

/// A tenant network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    pub vni: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Learned MACs allowed in this network (default 8192).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_macs: Option<u32>,
    /// Seconds a learned MAC lives without traffic (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aging: Option<u32>,
    /// Remote VTEPs that get broadcast, multicast and unknown unicast.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flood_vteps: Vec<Ipv4Addr>,
    /// The anycast gateway's addresses with their prefix (at most one IPv4 and one
    /// IPv6), e.g. 10.1.0.254/24: every switch answers for them with one virtual MAC.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway: Vec<String>,
    /// Egress masquerade: VMs reach addresses outside the network (and held by no
    /// endpoint) from the VTEP's address, by the uplink.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub snat: bool,
}

/// The local VTEP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VtepSpec {
    /// Address and prefix length on the underlay, e.g. 192.168.50.1/24.
    pub ip: String,
    pub uplink: String,
    /// Source MAC of encapsulated frames (default: the uplink's MAC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Next hop for remote VTEPs outside the prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u8>,
    /// The host's IPv6 address on the uplink with its prefix length, for north-south
    /// traffic over IPv6 (masquerade, node ports); the underlay stays IPv4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<String>,
    /// The IPv6 router beyond the uplink (inside the prefix, or link-local).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<std::net::Ipv6Addr>,
}

/// A static underlay neighbour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighSpec {
    pub ip: Ipv4Addr,
    pub mac: String,
}

/// A static FIB entry: a MAC in a VNI behind a local port or a remote VTEP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FibSpec {
    pub vni: u32,
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkView {
    pub vni: u32,
    pub name: Option<String>,
    pub ports: Vec<String>,
    pub flood_vteps: Vec<Ipv4Addr>,
    /// The VTEPs the cluster store says have endpoints in the network (they get floods too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_vteps: Vec<Ipv4Addr>,
    #[serde(default)]
    pub gateway: Vec<String>,
    pub max_macs: u32,
    pub aging: u32,
    pub macs_learned: usize,
    /// MACs not learned because the network was at max_macs.
    pub learn_refused: u64,
    /// Learned MACs that moved to another port or VTEP.
    pub mac_moves: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VtepView {
    pub ip: String,
    pub uplink: String,
    pub mac: Option<String>,
    pub gateway: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<std::net::Ipv6Addr>,
    pub udp_port: u16,
    pub ttl: u8,
    pub mtu: Option<u16>,
    /// "active", or why not.
    pub state: String,
    pub remotes: Vec<RemoteView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteView {
    pub ip: Ipv4Addr,
    pub nexthop: Option<Ipv4Addr>,
    pub nexthop_mac: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NeighView {
    pub ip: Ipv4Addr,
    pub mac: Option<String>,
    /// "static" or "dynamic".
    pub kind: String,
    /// "resolved", "resolving" or "failed".
    pub state: String,
    pub age_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FibView {
    pub vni: u32,
    pub mac: String,
    pub port: Option<String>,
    pub vtep: Option<Ipv4Addr>,
    /// "static", "cluster" (another node's, from the cluster store) or "learned".
    pub kind: String,
    pub age_secs: Option<u64>,
}
