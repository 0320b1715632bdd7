//! Packet trace on the wire.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum TraceRequest {
    /// Each stage's decision for one packet (hex) arriving on a port; sends nothing.
    /// With `tso`, the packet is a TSO frame as a kernel port or a guest hands it over
    /// (its TCP checksum partial), to be cut into segments of `tso` payload bytes.
    Trace {
        port: String,
        packet: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tso: Option<u16>,
    },
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
