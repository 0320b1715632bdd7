//! The endpoint table on the wire and in the desired state.
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum EndpointRequest {
    EndpointAdd(EndpointSpec),
    EndpointDel { vni: u32, ip: IpAddr },
    EndpointList { vni: Option<u32> },
}

/// An address of a tenant network and who holds it: a MAC behind a local VM port or a
/// remote VTEP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    pub vni: u32,
    pub ip: IpAddr,
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<Ipv4Addr>,
    /// The container it belongs to, when a CNI ADD wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// That container's network namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointView {
    pub vni: u32,
    pub ip: IpAddr,
    pub mac: String,
    pub port: Option<String>,
    pub vtep: Option<Ipv4Addr>,
    /// "static" (vswitchctl endpoint add, apply), "cni" (a container's attachment),
    /// "cluster" (another node's, from the cluster store) or "learned" (from the VM's ARP/ND).
    pub source: String,
    /// Seconds since a learned address was last heard of.
    #[serde(default)]
    pub age: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}
