//! Packet trace on the wire.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum TraceRequest {
    /// Each stage's decision for one packet (hex) arriving on a port; sends nothing.
    Trace { port: String, packet: String },
}

/// What `trace` found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TraceView {
    pub port: String,
    /// One line per stage: what it saw and decided.
    pub steps: Vec<String>,
    pub action: String,
    pub drop_reason: Option<String>,
    /// The packet as it would leave (hex), when it would be transmitted.
    pub output: Option<String>,
}
