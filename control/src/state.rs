//! The desired state: what the user asked for, one section per feature. It is what
//! `dump` prints, what `apply` reads, and the snapshot the store keeps on disk
//! (`store`); each section's entries are keyed as `store::change::SECTIONS` says.
pub use crate::xconnect::api::Xconnect;
use crate::{
    acl::api::{AclAction, AclRuleSpec},
    cni::api::{AttachmentSpec, LeaseSpec},
    conntrack::api::StatefulSpec,
    endpoints::api::EndpointSpec,
    overlay::api::{FibSpec, NeighSpec, NetworkSpec, VtepSpec},
    ports::api::PortSpec,
    qos::api::QosSpec,
    services::api::ServiceSpec,
    sflow::api::SflowSpec,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Format of the file; bumped on incompatible changes.
pub const STATE_FORMAT: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredState {
    pub format: u32,
    /// In the order they were added (restored in that order).
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    #[serde(default)]
    pub xconnects: Vec<Xconnect>,
    #[serde(default)]
    pub networks: Vec<NetworkSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<VtepSpec>,
    #[serde(default)]
    pub fib: Vec<FibSpec>,
    #[serde(default)]
    pub neighbours: Vec<NeighSpec>,
    /// Security-group rules, each with its id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl: Vec<AclRuleSpec>,
    /// Per-port default ACL action, where it is not allow.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub acl_defaults: BTreeMap<String, AclAction>,
    /// Meters and DSCP per VM port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub qos: Vec<QosSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sflow: Option<SflowSpec>,
    /// Stateful security groups, per VM port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stateful: Vec<StatefulSpec>,
    /// Connection-tracking timeouts the user changed (seconds), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub conntrack_timeouts: BTreeMap<String, u32>,
    /// Who holds each address of each network (static entries).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointSpec>,
    /// Services: VIPs spread over backends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceSpec>,
    /// Containers attached by the CNI plugin (their runtime's, not the operator's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentSpec>,
    /// Addresses the built-in IPAM gave workloads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<LeaseSpec>,
    /// Which networks, rules and services above are the cluster's shared state's
    /// (written with `vswitchctl --cluster`), not this node's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::cluster::owned::Owned>,
}

impl DesiredState {
    pub fn new() -> DesiredState {
        DesiredState { format: STATE_FORMAT, ..Default::default() }
    }
}
