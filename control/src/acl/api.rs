//! Security groups on the wire: rules as users write them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum AclRequest {
    AclAdd(AclRuleSpec),
    AclDel {
        id: u32,
    },
    AclList {
        port: Option<String>,
        vni: Option<u32>,
    },
    /// Replace every ACL rule with these, atomically.
    AclLoad {
        rules: Vec<AclRuleSpec>,
    },
    AclDefault {
        port: String,
        action: AclAction,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclAction {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclDir {
    /// From the VM.
    In,
    /// To the VM.
    Out,
}

/// A security-group rule as the user writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRuleSpec {
    /// Assigned (the next free id) when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// Higher wins; equal priorities go to the lower id.
    pub priority: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// Default: in (from the VM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<AclDir>,
    /// CIDR, IPv4 or IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
    /// tcp, udp, icmp, icmpv6 or a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    /// LO or LO-HI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    pub action: AclAction,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AclRuleView {
    #[serde(flatten)]
    pub rule: AclRuleSpec,
    pub hits: u64,
}
