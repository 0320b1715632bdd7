//! Services on the wire and in the desired state.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServiceRequest {
    ServiceAdd(ServiceSpec),
    ServiceSetBackends { name: String, backends: Vec<String> },
    ServiceDel { name: String },
    ServiceList,
}

/// A service: a virtual IP and port of a network spread over backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    pub vni: u32,
    /// IP:PORT (IPv6 as [IP]:PORT); empty for a host port mapping (a node port only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vip: String,
    /// tcp or udp.
    pub proto: String,
    /// IP:PORT[@WEIGHT] each (weight 1 unless given; 0 drains).
    #[serde(default)]
    pub backends: Vec<String>,
    /// maglev (the default) or random.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// Seconds a client's new connections keep going to the backend of its last new
    /// one (client-address affinity); none unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<u32>,
    /// Maglev's table size, a prime (default 16381).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_size: Option<u32>,
    /// A port of the VTEP's address (1 to 32767) the outside reaches the service by,
    /// served by all its backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
    /// Which backends the node port picks (Kubernetes' `externalTrafficPolicy`):
    /// `cluster` (the default: all of them; one behind another switch is called from
    /// the VTEP's address) or `local` (only those on this host, which all see the
    /// client's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendView {
    pub addr: String,
    pub weight: u32,
    /// Slots of the Maglev table it holds.
    pub slots: u32,
    /// Connections translated to it now.
    pub sessions: u64,
    /// New connections sent to it, and their packets and bytes (client to backend),
    /// since the service was added.
    #[serde(default)]
    pub connections: u64,
    #[serde(default)]
    pub packets: u64,
    #[serde(default)]
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceView {
    pub name: String,
    pub vni: u32,
    pub vip: String,
    pub proto: String,
    pub algorithm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic: Option<String>,
    pub table_size: u32,
    pub backends: Vec<BackendView>,
}

/// What `service add` and `service set-backends` answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}
