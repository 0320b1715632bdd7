//! The cluster on the wire: `vswitchctl cluster status`, and the shared desired state
//! (`vswitchctl --cluster ...`, `dump --cluster`, `apply -f FILE --cluster`).
use crate::{acl::api::AclRuleSpec, overlay::api::NetworkSpec, services::api::ServiceSpec};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClusterRequest {
    ClusterStatus,
    /// A change to the shared state, given as the request that would make it on one
    /// switch (`service_add`, `acl_add`, ...). With `if_revision`, refused if any entry
    /// it changes was written after that revision.
    ClusterChange {
        request: serde_json::Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_revision: Option<i64>,
    },
    /// The shared state as the store holds it now, with its revision.
    ClusterDump,
    /// Makes the shared state this one. With a `revision` (from `dump --cluster`), only
    /// what the file changes since then is written, and refused where someone else
    /// changed the same entry meanwhile.
    ClusterApply {
        state: SharedState,
        #[serde(default)]
        dry_run: bool,
    },
}

/// The cluster's shared desired state: what every node applies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedState {
    /// The store's revision this was read at (`dump --cluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    #[serde(default)]
    pub networks: Vec<NetworkSpec>,
    /// Security-group rules per network (`--vni`); their ids start at 2147483648.
    #[serde(default)]
    pub acl: Vec<AclRuleSpec>,
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
}

/// What a write to the shared state did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SharedWrite {
    /// The store's revision after the write (before it, if nothing was written).
    pub revision: i64,
    /// `put KEY` / `del KEY` for each entry written (or, on a dry run, to be written).
    pub changes: Vec<String>,
    pub written: bool,
    /// The request's own reply (a new rule's id, a service's warning).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub reply: serde_json::Value,
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
    /// This node's address blocks ("VNI BLOCK").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<String>,
    pub nodes: Vec<NodeView>,
    /// The shared state's revision this node has taken in.
    pub shared_revision: i64,
    /// Shared entries this node could not take in, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_unapplied: Vec<String>,
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
