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
    /// Flow-log events after `since` (none given: from now), at `port` if given.
    ConntrackEvents {
        #[serde(default)]
        since: Option<u64>,
        #[serde(default)]
        port: Option<String>,
    },
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

/// A connection: its zone and protocol, who opened it (or tried to), and to whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conn {
    pub zone: u32,
    pub proto: String,
    pub src: String,
    pub sport: u16,
    pub dst: String,
    pub dport: u16,
}

/// One session as `conntrack list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    #[serde(flatten)]
    pub conn: Conn,
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
    /// Sessions made per second, over the last whole second.
    #[serde(default)]
    pub created_per_sec: u64,
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

/// One flow-log event: a session made, a session ended, a new connection refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRow {
    pub seq: u64,
    /// new, end or denied.
    pub event: String,
    #[serde(flatten)]
    pub conn: Conn,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// end: packets from the opener and back, bytes, seconds it lived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets: Option<[u32; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// denied: the drop reason (acl_deny_in/out, ct_full, ct_port_limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// denied by the rules: the id of the rule that refused it (none: the port's
    /// default did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<u32>,
}

/// A batch of the flow log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventsView {
    pub events: Vec<EventRow>,
    /// Ask from here next time.
    pub next: u64,
    /// Events lost so far: a core's ring was full, or the log dropped them unread.
    pub lost: u64,
}
