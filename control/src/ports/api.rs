//! The ports feature on the wire: requests, the port spec (also its record in the
//! desired state), and what `port list` and `port stats` show.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum PortRequest {
    PortAdd(PortSpec),
    PortDel { name: String },
    PortSet { name: String, admin: AdminState },
    PortList,
    PortStats { name: Option<String> },
}

/// A port as the user asked for it: also its record in the desired-state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    pub name: String,
    pub devargs: String,
    /// Rx queues (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<u16>,
    /// PMD lcores to poll this port's rx queues on (default: least loaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<PortRole>,
    /// The tenant network of a VM port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// Down: the port keeps its device, configuration and sessions, but is neither
    /// polled nor sent to (`port_down`), as for maintenance.
    #[serde(default, skip_serializing_if = "AdminState::is_up")]
    pub admin: AdminState,
}

/// Whether the switch forwards on a port at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AdminState {
    #[default]
    Up,
    Down,
}

impl AdminState {
    pub fn is_up(&self) -> bool {
        *self == AdminState::Up
    }

    /// As the CLI takes it and the log and `port set` say it.
    pub fn name(self) -> &'static str {
        match self {
            AdminState::Up => "up",
            AdminState::Down => "down",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortRole {
    Vm,
    Uplink,
}

/// One port in `port list` and `show`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortView {
    pub name: String,
    pub devargs: String,
    /// The link: "up", "down", "unknown" (running, on a driver that cannot tell: net_null,
    /// net_ring, net_pcap, or a net_tap whose interface left this namespace), or "error".
    pub state: String,
    /// Set by `port set NAME --admin`: down, the switch does not forward on the port.
    #[serde(default)]
    pub admin: AdminState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub port_id: Option<u16>,
    pub driver: Option<String>,
    pub mac: Option<String>,
    pub mtu: Option<u16>,
    pub link_speed_mbps: Option<u32>,
    /// (rx queue, lcore) pairs.
    pub rx_queues: Vec<RxQueueView>,
    pub xconnect: Option<String>,
    #[serde(default)]
    pub role: Option<PortRole>,
    #[serde(default)]
    pub vni: Option<u32>,
    /// A kernel port's backend: tap or af_packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The offloads frames keep across a kernel port (csum, tso4, tso6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offloads: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RxQueueView {
    pub queue: u16,
    pub lcore: u32,
}

/// Counters of one port, since it was added.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PortStatsView {
    pub name: String,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Drops counted by the switch, by reason (only reasons seen).
    pub drops: std::collections::BTreeMap<String, u64>,
    /// Dropped by the device itself: rx ring full (the cores did not keep up).
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_nombuf: u64,
}
