//! Connection tracking on the wire: which ports are stateful, and reads of the sessions.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum CtRequest {
    /// Makes a VM port's security group stateful (or stateless again).
    AclStateful(StatefulSpec),
    ConntrackList {
        #[serde(default)]
        port: Option<String>,
        #[serde(default)]
        vni: Option<u32>,
        /// At most this many sessions (default 1000).
        #[serde(default)]
        limit: Option<usize>,
    },
    ConntrackFlush {
        #[serde(default)]
        port: Option<String>,
        #[serde(default)]
        vni: Option<u32>,
    },
    ConntrackStats,
    /// Reads the timeouts, setting those named first (seconds).
    ConntrackTimeouts {
        #[serde(default)]
        set: BTreeMap<String, u32>,
    },
}

/// A stateful port, as the user sets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatefulSpec {
    pub port: String,
    /// false: the port goes back to stateless rules.
    #[serde(default = "yes")]
    pub on: bool,
    /// Out-of-window TCP segments other than RST pass.
    #[serde(default, skip_serializing_if = "is_false")]
    pub liberal: bool,
    /// Sessions survive rule changes that would no longer allow them.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sticky: bool,
    /// A TCP segment other than SYN may open a session (connections under way when
    /// the port became stateful, or after a restart).
    #[serde(default, skip_serializing_if = "is_false")]
    pub pickup: bool,
    /// Sessions this port may open at once (default: no limit beyond the table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<u32>,
}

fn yes() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One session as `conntrack list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    pub zone: u32,
    pub proto: String,
    /// Who opened it, and to whom.
    pub src: String,
    pub sport: u16,
    pub dst: String,
    pub dport: u16,
    /// TCP's state, or for other protocols unreplied / replied.
    pub state: String,
    pub assured: bool,
    /// The stateful ports it was seen at (opener's, answerer's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// Seconds since the last packet, and since it started.
    pub idle: u32,
    pub age: u32,
    /// Packets from the opener and from the answerer; bytes both ways.
    pub packets: [u32; 2],
    pub bytes: u64,
}

/// `conntrack stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtStats {
    pub capacity: u32,
    pub sessions: u64,
    /// Live sessions by protocol and state (`tcp/ESTABLISHED`, `udp/replied`...).
    pub by_state: BTreeMap<String, u64>,
    pub created: u64,
    pub expired: u64,
    /// Half-open sessions recycled to make room.
    pub recycled: u64,
    /// New connections refused: the table (a core's share) or a port's limit was full.
    pub full: u64,
    /// Packets dropped as invalid, full and over a port's limit (all ports).
    pub drops: BTreeMap<String, u64>,
    /// Invalid packets by why.
    pub invalid: BTreeMap<String, u64>,
    pub stateful_ports: Vec<String>,
}
