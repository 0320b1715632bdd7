//! The API: one JSON request per line on the Unix socket, one JSON response per line.
//!
//! `{"version":1,"request":{"cmd":"port_add","name":"vm1","devargs":"net_tap0"}}`
//! gets `{"ok":true,"result":...}` or `{"ok":false,"error":"..."}`.
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

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
    PortDel {
        name: String,
    },
    PortList,
    PortStats {
        name: Option<String>,
    },
    XconnectAdd {
        a: String,
        b: String,
    },
    XconnectDel {
        a: String,
    },
    NetworkAdd(NetworkSpec),
    NetworkDel {
        vni: u32,
    },
    NetworkList,
    NetworkAddVtep {
        vni: u32,
        ip: Ipv4Addr,
    },
    NetworkDelVtep {
        vni: u32,
        ip: Ipv4Addr,
    },
    VtepSet(VtepSpec),
    VtepShow,
    NeighAdd(NeighSpec),
    NeighDel {
        ip: Ipv4Addr,
    },
    NeighList,
    FibAdd(FibSpec),
    FibDel {
        vni: u32,
        mac: String,
    },
    FibList {
        vni: Option<u32>,
    },
    AclAdd(AclRuleSpec),
    AclDel {
        id: u32,
    },
    AclList {
        port: Option<String>,
        vni: Option<u32>,
    },
    /// Replace every ACL rule with these, atomically.
    AclLoad {
        rules: Vec<AclRuleSpec>,
    },
    AclDefault {
        port: String,
        action: AclAction,
    },
    SflowSet(SflowSpec),
    SflowOff,
    SflowShow,
    QosSet(QosSpec),
    QosClear {
        port: String,
    },
    QosShow {
        port: Option<String>,
    },
    /// Reconcile the switch to a whole desired state (all or nothing).
    Apply {
        state: crate::state::DesiredState,
        #[serde(default)]
        dry_run: bool,
    },
    /// The running desired state, in the format `apply` reads.
    Dump,
    /// Each stage's decision for one packet (hex) arriving on a port; sends nothing.
    Trace {
        port: String,
        packet: String,
    },
    Show,
    Stats,
    Cores,
    /// Copies of packets a port receives or sends, while it keeps forwarding.
    Capture(CaptureSpec),
}

/// What `capture` copies and when it stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSpec {
    pub port: String,
    /// Stop after this many packets.
    pub count: u32,
    #[serde(default)]
    pub dir: CaptureDir,
    /// Bytes kept per packet (default and most: 2048).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snaplen: Option<u16>,
    /// Stop after this many seconds even if fewer packets came (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureDir {
    Rx,
    Tx,
    #[default]
    Both,
}

/// The packets a capture took, in the order the control plane collected them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CaptureView {
    pub port: String,
    pub packets: Vec<CapturedPacket>,
    /// Packets seen but not copied (the capture buffers were all in use).
    pub lost: u64,
    /// False when the timeout ended the capture before `count` packets.
    pub complete: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CapturedPacket {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// "rx" or "tx".
    pub dir: String,
    pub orig_len: u32,
    /// The bytes kept, in hex.
    pub data: String,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<PortRole>,
    /// The tenant network of a VM port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortRole {
    Vm,
    Uplink,
}

/// A tenant network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    pub vni: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Learned MACs allowed in this network (default 8192).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_macs: Option<u32>,
    /// Seconds a learned MAC lives without traffic (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aging: Option<u32>,
    /// Remote VTEPs that get broadcast, multicast and unknown unicast.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flood_vteps: Vec<Ipv4Addr>,
}

/// The local VTEP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VtepSpec {
    /// Address and prefix length on the underlay, e.g. 192.168.50.1/24.
    pub ip: String,
    pub uplink: String,
    /// Source MAC of encapsulated frames (default: the uplink's MAC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Next hop for remote VTEPs outside the prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u8>,
}

/// A static underlay neighbour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighSpec {
    pub ip: Ipv4Addr,
    pub mac: String,
}

/// A static FIB entry: a MAC in a VNI behind a local port or a remote VTEP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FibSpec {
    pub vni: u32,
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclAction {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclDir {
    /// From the VM.
    In,
    /// To the VM.
    Out,
}

/// A security-group rule as the user writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRuleSpec {
    /// Assigned (the next free id) when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// Higher wins; equal priorities go to the lower id.
    pub priority: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// Default: in (from the VM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<AclDir>,
    /// CIDR, IPv4 or IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
    /// tcp, udp, icmp, icmpv6 or a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    /// LO or LO-HI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    pub action: AclAction,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AclRuleView {
    #[serde(flatten)]
    pub rule: AclRuleSpec,
    pub hits: u64,
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

/// What `apply` changed (or, with `dry_run`, would change).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyReport {
    pub changes: Vec<String>,
    pub applied: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkView {
    pub vni: u32,
    pub name: Option<String>,
    pub ports: Vec<String>,
    pub flood_vteps: Vec<Ipv4Addr>,
    pub max_macs: u32,
    pub aging: u32,
    pub macs_learned: usize,
    /// MACs not learned because the network was at max_macs.
    pub learn_refused: u64,
    /// Learned MACs that moved to another port or VTEP.
    pub mac_moves: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VtepView {
    pub ip: String,
    pub uplink: String,
    pub mac: Option<String>,
    pub gateway: Option<Ipv4Addr>,
    pub udp_port: u16,
    pub ttl: u8,
    pub mtu: Option<u16>,
    /// "active", or why not.
    pub state: String,
    pub remotes: Vec<RemoteView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteView {
    pub ip: Ipv4Addr,
    pub nexthop: Option<Ipv4Addr>,
    pub nexthop_mac: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NeighView {
    pub ip: Ipv4Addr,
    pub mac: Option<String>,
    /// "static" or "dynamic".
    pub kind: String,
    /// "resolved", "resolving" or "failed".
    pub state: String,
    pub age_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FibView {
    pub vni: u32,
    pub mac: String,
    pub port: Option<String>,
    pub vtep: Option<Ipv4Addr>,
    /// "static" or "learned".
    pub kind: String,
    pub age_secs: Option<u64>,
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
    #[serde(default)]
    pub role: Option<PortRole>,
    #[serde(default)]
    pub vni: Option<u32>,
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
    /// Raw TSC cycles spent in rounds that moved packets (for deltas over a window).
    pub busy_cycles: u64,
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
    pub networks: Vec<NetworkView>,
    pub vtep: Option<VtepView>,
    pub mempool: MempoolView,
    /// Learn events lost because a core's ring to the control plane was full.
    pub learn_events_lost: u64,
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
                mtu: None,
                role: None,
                vni: None
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
