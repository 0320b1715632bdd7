//! Where each node's records live in the store, and what they hold. Everything sits
//! under one prefix (`--cluster-prefix`, default /vswitch):
//!
//! - `P/nodes/NODE`: the node's VTEP (address, UDP port, MAC), boot epoch and the VNIs
//!   it publishes endpoints in (so it finds its own keys again after an outage).
//! - `P/alive/NODE`: bound to a short lease; gone means the node is down. Only an alarm:
//!   nothing is removed from forwarding because of it. It holds the running instance's
//!   id: a second switch started under a name that is up elsewhere (another VTEP)
//!   writes nothing and says so.
//! - `P/endpoints/VNI/NODE/MAC`: one workload's MAC and addresses. A switch watches the
//!   networks it has local ports in, and nothing else.
//! - `P/blocks/VNI/ADDR_PREFIX`: an address block of a network's subnet, claimed by one
//!   node (`{"node": NAME}`, created only if absent); the built-in IPAM of that node
//!   gives new addresses from its blocks alone, so no two nodes give the same one.
//! - `P/identities/VNI/IDENTITY/NODE`: the addresses a node's IPAM holds for a workload
//!   (attached, or reserved after its DEL); another node finds them there when the
//!   workload comes up on it, and gives it the same addresses. (IDENTITY with every byte
//!   but letters, digits, '.', '_' and '-' written as %XX.)
//! - `P/shared/SECTION/ID`: the shared desired state, one entry per key
//!   (`shared/networks/100`, `shared/acl/2147483648`, `shared/services/web`), written by
//!   operators and applied by every node.
//!
//! Intent keys carry no lease: a node that dies keeps its endpoints in the store until
//! it comes back and says otherwise.
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

pub const DEFAULT_PREFIX: &str = "/vswitch";

/// A node as the others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub vtep: Ipv4Addr,
    pub udp_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Seconds since the epoch when this vswitchd started.
    pub boot: u64,
    /// The networks it has endpoint records in.
    #[serde(default)]
    pub vnis: Vec<u32>,
}

/// One local workload: a MAC behind a port of this node, with its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub mac: String,
    #[serde(default)]
    pub ips: Vec<IpAddr>,
    pub port: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// A workload's addresses as one node holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRecord {
    pub ips: Vec<IpAddr>,
    pub mac: String,
    /// A container holds them now (else they are reserved for the workload).
    pub attached: bool,
}

/// An identity as one key part: bytes other than letters, digits, '.', '_', '-' as %XX.
pub fn encode_identity(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn decode_identity(part: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(part.len());
    let mut it = part.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hex = [it.next()?, it.next()?];
            bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes).ok()
}

/// Who claimed an address block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    pub node: String,
}

/// A key under the prefix, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Node(String),
    Alive(String),
    Endpoint {
        vni: u32,
        node: String,
        mac: String,
    },
    /// An entry of the shared state, as `SECTION/ID`.
    Shared(String),
    Identity {
        vni: u32,
        identity: String,
        node: String,
    },
}

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

/// A node name as keys and logs can carry it.
pub fn check_node(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!("--node: {name:?} is not a node name (1 to 63 letters, digits, '-', '_' or '.')"))
    }
}

/// The prefix as given, checked: absolute, no trailing slash.
pub fn check_prefix(prefix: &str) -> Result<String, String> {
    let p = prefix.trim_end_matches('/');
    if !prefix.starts_with('/') || p.is_empty() || p.contains("//") {
        return Err(format!("--cluster-prefix: {prefix:?} is not a key prefix such as /vswitch"));
    }
    Ok(p.to_string())
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.trim_end_matches('/').to_string() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn nodes(&self) -> String {
        format!("{}/nodes/", self.prefix)
    }

    pub fn node(&self, node: &str) -> String {
        format!("{}/nodes/{node}", self.prefix)
    }

    pub fn alives(&self) -> String {
        format!("{}/alive/", self.prefix)
    }

    pub fn alive(&self, node: &str) -> String {
        format!("{}/alive/{node}", self.prefix)
    }

    pub fn endpoints(&self, vni: u32) -> String {
        format!("{}/endpoints/{vni}/", self.prefix)
    }

    pub fn endpoints_of(&self, vni: u32, node: &str) -> String {
        format!("{}/endpoints/{vni}/{node}/", self.prefix)
    }

    pub fn endpoint(&self, vni: u32, node: &str, mac: &str) -> String {
        format!("{}/endpoints/{vni}/{node}/{mac}", self.prefix)
    }

    pub fn blocks(&self, vni: u32) -> String {
        format!("{}/blocks/{vni}/", self.prefix)
    }

    /// The key of address block `b` of network `vni` (`10.1.0.16_28`: no slash in a key part).
    pub fn block(&self, vni: u32, b: ipnetwork::IpNetwork) -> String {
        format!("{}/blocks/{vni}/{}_{}", self.prefix, b.network(), b.prefix())
    }

    pub fn identities(&self, vni: u32) -> String {
        format!("{}/identities/{vni}/", self.prefix)
    }

    /// Every node's record of workload `identity` in network `vni`.
    pub fn identity_records(&self, vni: u32, identity: &str) -> String {
        format!("{}/identities/{vni}/{}/", self.prefix, encode_identity(identity))
    }

    pub fn identity(&self, vni: u32, identity: &str, node: &str) -> String {
        format!("{}/identities/{vni}/{}/{node}", self.prefix, encode_identity(identity))
    }

    pub fn shared(&self) -> String {
        format!("{}/shared/", self.prefix)
    }

    /// The key of the shared entry `entry` (`SECTION/ID`).
    pub fn shared_entry(&self, entry: &str) -> String {
        format!("{}/shared/{entry}", self.prefix)
    }

    /// What `key` is; `None` for keys this version does not know (written by a newer
    /// one, or by hand), which are left alone.
    pub fn parse(&self, key: &str) -> Option<Key> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let mut parts = rest.split('/');
        let kind = parts.next()?;
        let parts: Vec<&str> = parts.collect();
        match (kind, parts.as_slice()) {
            ("nodes", [node]) if check_node(node).is_ok() => Some(Key::Node(node.to_string())),
            ("alive", [node]) if check_node(node).is_ok() => Some(Key::Alive(node.to_string())),
            ("endpoints", [vni, node, mac]) if check_node(node).is_ok() => {
                Some(Key::Endpoint { vni: vni.parse().ok()?, node: node.to_string(), mac: mac.to_string() })
            }
            ("identities", [vni, id, node]) if check_node(node).is_ok() => {
                Some(Key::Identity { vni: vni.parse().ok()?, identity: decode_identity(id)?, node: node.to_string() })
            }
            ("shared", [section, id]) if super::shared::SECTIONS.contains(section) && !id.is_empty() => {
                Some(Key::Shared(format!("{section}/{id}")))
            }
            _ => None,
        }
    }
}
