//! The cluster agent on the wire: what `vswitchctl cluster status` asks and gets.
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClusterRequest {
    ClusterStatus,
}

/// The agent's state: the store, how current this node is, what waits to be written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub node: String,
    /// The store's client URLs.
    pub store: Vec<String>,
    pub prefix: String,
    /// The last call to the store succeeded.
    pub connected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Milliseconds since the store last answered (none: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_contact_ms: Option<u64>,
    /// The store's revision when it last answered.
    pub store_revision: i64,
    /// The revision up to which every watch has been applied.
    pub applied_revision: i64,
    /// How many revisions the applied view is behind the store (0: current).
    pub lag_revisions: i64,
    /// This node's records not yet in the store (written when it is back).
    pub pending: usize,
    /// The first of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_keys: Vec<String>,
    /// The networks watched: those with local VM ports.
    pub watched_vnis: Vec<u32>,
    /// Other nodes' MACs programmed into the FIB.
    pub remote_macs: usize,
    /// Times a watch found its history compacted and read its prefix again.
    pub relists: u64,
    /// Records that did not decode and were skipped.
    pub undecodable: usize,
    pub nodes: Vec<NodeView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeView {
    pub name: String,
    pub vtep: Ipv4Addr,
    /// Its liveness key is there (its lease is kept alive).
    pub alive: bool,
    pub boot: u64,
    /// Endpoints of it in the watched networks.
    pub endpoints: usize,
}
