//! The control plane: `vswitchd` and `vswitchctl`.
//!
//! `api` is the wire protocol both binaries share; `state` the durable desired state;
//! `switch` applies desired state to the running dataplane and publishes snapshots;
//! `server` serves the API socket. Nothing here touches packets.
#![deny(unsafe_code)]

pub mod acl;
pub mod api;
pub mod apply;
pub mod capture;
pub mod latency;
pub mod metrics;
pub mod overlay;
pub mod qos;
pub mod state;
pub mod validate;

pub mod server;
pub mod sflow;
pub mod switch;
pub mod trace;

/// Where vswitchd listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/vswitch/vswitchd.sock";
/// Where vswitchd keeps its desired state unless told otherwise.
pub const DEFAULT_DB: &str = "/var/lib/vswitch/conf.json";
