//! sFlow export on the wire.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum SflowRequest {
    SflowSet(SflowSpec),
    SflowOff,
    SflowShow,
}

/// sFlow export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SflowSpec {
    /// IP:PORT, [IPv6]:PORT.
    pub collectors: Vec<String>,
    /// 1 in N packets on every pipeline port; 0: no flow samples.
    pub sampling: u32,
    /// Seconds between counter samples (default 20; 0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polling: Option<u32>,
    /// Agent address in the datagrams (default: the VTEP IP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<std::net::IpAddr>,
    /// Bytes of each sampled packet's header (default 128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_bytes: Option<u16>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SflowView {
    pub config: Option<SflowSpec>,
    pub agent: Option<std::net::IpAddr>,
    pub flow_samples: u64,
    pub counter_samples: u64,
    pub datagrams: u64,
    pub send_errors: u64,
    /// Samples lost on the cores (their ring to the control plane was full).
    pub samples_lost: u64,
}
