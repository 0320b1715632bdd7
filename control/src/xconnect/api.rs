//! Static cross-connects on the wire and in the desired state.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum XconnectRequest {
    XconnectAdd { a: String, b: String },
    XconnectDel { a: String },
}

/// A cross-connect as the desired state keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Xconnect {
    pub a: String,
    pub b: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct XconnectView {
    pub a: String,
    pub b: String,
}
