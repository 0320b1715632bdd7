//! Packet capture on the wire.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum CaptureRequest {
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
