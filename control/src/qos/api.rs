//! QoS on the wire: meters as users write them.

use serde::{Deserialize, Serialize};

// Requests are parsed once and handled once: their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum QosRequest {
    QosSet(QosSpec),
    QosClear { port: String },
    QosShow { port: Option<String> },
}

/// One direction's meter: rates like `100mbit`, `1gbit`, `50kpps`; sizes like `64kb`,
/// `1500b`, or packets (`32pkt`) for packet-rate meters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterSpec {
    pub rate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<String>,
    /// srTCM: the excess burst (yellow); default 0 (green or red only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excess_burst: Option<String>,
    /// trTCM: the peak rate and burst.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_burst: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QosMode {
    Srtcm,
    Trtcm,
}

/// QoS of one VM port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QosSpec {
    pub port: String,
    /// Default srtcm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<QosMode>,
    /// Policer on what the VM sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<MeterSpec>,
    /// Rate limit on what the VM receives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<MeterSpec>,
    /// pass, drop or dscp=N (default pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yellow: Option<String>,
    /// pass, drop or dscp=N (default drop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub red: Option<String>,
    /// DSCP of the outer header when this port's traffic is encapsulated (default: the
    /// inner packet's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dscp: Option<u8>,
}
