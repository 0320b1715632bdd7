//! Container attachments on the wire (what `vswitch-cni` asks of vswitchd) and in the
//! desired state: the attachments, and the addresses leased to workloads.
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

// Requests are parsed once and handled once: their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum CniRequest {
    /// CNI ADD: a container's interface, attached to a network.
    CniAdd(AttachRequest),
    /// CNI DEL: the attachment ends; its address stays reserved for the workload.
    CniDel(AttachmentKey),
    /// CNI CHECK: the attachment is as ADD left it.
    CniCheck(AttachmentKey),
    /// CNI GC: every attachment of `network` not in `valid` ends.
    CniGc { network: String, valid: Vec<ValidAttachment> },
    /// Attachments, for `vswitchctl` and the plugin's STATUS.
    CniList,
    /// Leases of the built-in IPAM.
    IpamList { vni: Option<u32> },
    /// Gives a reserved address back to the pool (vswitchctl ipam release).
    IpamRelease { vni: u32, ip: IpAddr },
}

/// What CNI names an attachment by: the network, the container and its interface.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentKey {
    pub network: String,
    pub container: String,
    pub ifname: String,
}

/// One entry of GC's `cni.dev/valid-attachments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidAttachment {
    #[serde(rename = "containerID")]
    pub container: String,
    pub ifname: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachRequest {
    #[serde(flatten)]
    pub key: AttachmentKey,
    pub vni: u32,
    /// The container's network namespace (a path).
    pub netns: String,
    /// Who the workload is (pod namespace/name, or container name): its address
    /// follows it across re-creation.
    pub identity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// The MAC the runtime asked for (MAC= or the `mac` capability).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    pub ipam: Ipam,
    /// Rules for the container's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_group: Option<SecurityGroup>,
    /// The `bandwidth` capability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
    /// The `portMappings` capability: host ports to the container's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<PortMapping>,
}

/// One of CNI's `portMappings`: the host's port (on the VTEP's address, a node port) to
/// the container's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    /// tcp (default) or udp.
    #[serde(default)]
    pub protocol: String,
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// A container's security group: rules for its port (the port is filled in), the
/// port's default, and whether it is stateful (replies to what it opened come back
/// without a rule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroup {
    #[serde(default)]
    pub rules: Vec<crate::acl::api::AclRuleSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<crate::acl::api::AclAction>,
    #[serde(default = "stateful_by_default")]
    pub stateful: bool,
}

fn stateful_by_default() -> bool {
    true
}

/// CNI's `bandwidth` capability: bits per second and bits, as the spec's bandwidth
/// plugin reads them. Ingress is what the container receives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bandwidth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_rate: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_burst: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_rate: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_burst: Option<u64>,
}

/// Where the container's addresses come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Ipam {
    /// vswitchd's own leases, from the network's gateway subnets (or `subnets`).
    Vswitch {
        /// Addresses asked for (IP= or the `ips` capability).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        want: Vec<IpAddr>,
        /// Subnets to lease from, where not the network's gateway subnets.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        subnets: Vec<String>,
        /// How long a deleted workload's address stays reserved for it (seconds).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hold: Option<u64>,
    },
    /// A delegated IPAM plugin's result.
    Given {
        ips: Vec<IpConfig>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        routes: Vec<Route>,
    },
}

/// An address of the container's interface, as CNI results spell it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// ADDRESS/LEN.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// NET/LEN.
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

/// An attachment as the desired state keeps it: enough to rebuild the container's
/// interface in its namespace without the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentSpec {
    pub network: String,
    pub container: String,
    pub ifname: String,
    pub netns: String,
    pub identity: String,
    pub vni: u32,
    /// The switch port, also the host end's interface name.
    pub port: String,
    pub mac: String,
    pub mtu: u16,
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// The addresses are leased by vswitchd (not a delegated IPAM plugin).
    #[serde(default)]
    pub leased: bool,
}

impl AttachmentSpec {
    pub fn key(&self) -> AttachmentKey {
        AttachmentKey { network: self.network.clone(), container: self.container.clone(), ifname: self.ifname.clone() }
    }
}

/// An address the built-in IPAM gave a workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseSpec {
    pub vni: u32,
    pub ip: IpAddr,
    /// The prefix length of the subnet it came from.
    pub len: u8,
    pub identity: String,
    pub mac: String,
    /// The container attached with it now; none while it is only reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// How long it stays reserved for the workload once detached (seconds).
    pub hold: u64,
    /// While reserved: until when (seconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
}

/// What ADD and CHECK answer: the attachment, in CNI 1.0 result terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachResult {
    pub host_iface: String,
    pub host_mac: String,
    pub ifname: String,
    pub mac: String,
    pub netns: String,
    pub mtu: u16,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
}

/// One lease in `ipam list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseView {
    #[serde(flatten)]
    pub lease: LeaseSpec,
    /// "attached", "reserved" or "expired" (free to be given to another workload).
    pub state: String,
}
