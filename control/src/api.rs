//! The API: one JSON request per line on the Unix socket, one JSON response per line.
//!
//! `{"version":1,"request":{"cmd":"port_add","name":"vm1","devargs":"net_tap0"}}`
//! gets `{"ok":true,"result":...}` or `{"ok":false,"error":"..."}`.
use serde::{Deserialize, Serialize};

/// Bumped when a request or reply changes incompatibly.
pub const PROTOCOL_VERSION: u32 = 1;
/// A request line longer than this is refused and the connection closed.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub version: u32,
    pub request: Request,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    PortAdd(PortSpec),
    PortDel { name: String },
    PortList,
    PortStats { name: Option<String> },
    XconnectAdd { a: String, b: String },
    XconnectDel { a: String },
    Show,
    Stats,
    Cores,
}

impl Request {
    /// Requests that change the desired state (and are written to disk before the reply).
    pub fn is_change(&self) -> bool {
        matches!(
            self,
            Request::PortAdd(_) | Request::PortDel { .. } | Request::XconnectAdd { .. } | Request::XconnectDel { .. }
        )
    }
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn ok(result: impl Serialize) -> Response {
        match serde_json::to_value(result) {
            Ok(v) => Response { ok: true, result: Some(v), error: None },
            Err(e) => Response::err(format!("internal error encoding the reply: {e}")),
        }
    }

    pub fn err(msg: impl Into<String>) -> Response {
        Response { ok: false, result: None, error: Some(msg.into()) }
    }
}

/// One port in `port list` and `show`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortView {
    pub name: String,
    pub devargs: String,
    /// "up", "down" or "error".
    pub state: String,
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
pub struct XconnectView {
    pub a: String,
    pub b: String,
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
    pub mempool: MempoolView,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format_is_tagged_snake_case() {
        let e: Envelope = serde_json::from_str(
            r#"{"version":1,"request":{"cmd":"port_add","name":"a","devargs":"net_null0","queues":2}}"#,
        )
        .unwrap();
        assert_eq!(
            e.request,
            Request::PortAdd(PortSpec {
                name: "a".into(),
                devargs: "net_null0".into(),
                queues: Some(2),
                cores: None,
                mtu: None
            })
        );
        let bad = serde_json::from_str::<Envelope>(
            r#"{"version":1,"request":{"cmd":"port_add","name":"a","devargs":"x","bogus":1}}"#,
        );
        assert!(bad.unwrap_err().to_string().contains("bogus"));
        let unknown = serde_json::from_str::<Envelope>(r#"{"version":1,"request":{"cmd":"reboot"}}"#);
        assert!(unknown.unwrap_err().to_string().contains("reboot"));
    }
}
