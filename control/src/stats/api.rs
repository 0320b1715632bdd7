//! What the switch reports about itself on the wire: the summary, counters per port
//! and per core, time inside the switch, the mempool.

use crate::{
    overlay::api::{NetworkView, VtepView},
    ports::api::{PortStatsView, PortView},
    xconnect::api::XconnectView,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum StatsRequest {
    Show,
    Stats,
    Cores {
        /// Time inside the switch over the last this many seconds (1 to
        /// `LATENCY_WINDOW_S`; none: the whole window).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        latency_seconds: Option<usize>,
    },
}

/// One PMD core in `cores` and `stats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CoreView {
    pub index: usize,
    pub lcore: u32,
    pub rx_queues: Vec<String>,
    pub packets: u64,
    pub rounds: u64,
    /// Busy share of TSC cycles over the last measurement interval (percent).
    pub busy_pct: f64,
    /// TSC cycles per packet over the last interval (0 when idle).
    pub cycles_per_packet: f64,
    /// The same, since the core started.
    pub busy_pct_total: f64,
    pub cycles_per_packet_total: f64,
    /// Raw TSC cycles spent in rounds that moved packets (for deltas over a window).
    pub busy_cycles: u64,
    /// Packets whose security-group answer the core did not remember and searched the
    /// rules for. Near the packet count, the groups tell apart more conversations than
    /// the core's table holds (`acl::FLOWS`).
    #[serde(default)]
    pub acl_misses: u64,
    /// Time inside the switch of the packets this core sent over the last
    /// `LATENCY_WINDOW_S` seconds (none: it sent nothing).
    pub latency: Option<LatencyView>,
}

/// How many seconds of latency history `cores` and the metrics report over.
pub const LATENCY_WINDOW_S: usize = 10;

/// Quantiles of time inside the switch, from the rx burst that brought a packet to the
/// tx burst that sent it, in nanoseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencyView {
    pub packets: u64,
    pub p50_ns: f64,
    pub p99_ns: f64,
    pub p999_ns: f64,
    pub max_ns: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MempoolView {
    pub size: u32,
    pub available: u32,
    pub in_use: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatsView {
    pub ports: Vec<PortStatsView>,
    pub cores: Vec<CoreView>,
    pub mempool: MempoolView,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShowView {
    pub version: String,
    pub dpdk: String,
    pub main_lcore: u32,
    pub pmd_lcores: Vec<u32>,
    pub db: String,
    pub ports: Vec<PortView>,
    pub xconnects: Vec<XconnectView>,
    pub networks: Vec<NetworkView>,
    pub vtep: Option<VtepView>,
    pub mempool: MempoolView,
    /// Learn events lost because a core's ring to the control plane was full.
    pub learn_events_lost: u64,
}
