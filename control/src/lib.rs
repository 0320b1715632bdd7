//! The control plane: `vswitchd` and `vswitchctl`.
//!
//! A feature is a folder: its requests (`api.rs`), their handling, its part of the
//! desired state and of the tables, and its vswitchctl verbs (`cli.rs`). The common
//! core is `switch` (order, publish, quiescence), `store` (durability), `state` (the
//! desired state, one section per feature), `api` (the wire protocol) and `server`
//! (the socket). Nothing here touches packets. docs/architecture.md has the map.
#![deny(unsafe_code)]

pub mod api;
pub mod cli;
pub mod feature;
#[doc(hidden)]
pub mod fuzz;
pub mod server;
pub mod services;
pub mod state;
pub mod store;
pub mod switch;
pub mod systemd;

// The features, one line each.
pub mod acl;
pub mod apply;
pub mod capture;
pub mod cluster;
pub mod cni;
pub mod conntrack;
pub mod doctor;
pub mod endpoints;
pub mod overlay;
pub mod ports;
pub mod qos;
pub mod sflow;
pub mod stats;
pub mod trace;
pub mod xconnect;

#[cfg(test)]
mod tests;

/// Where vswitchd listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/vswitch/vswitchd.sock";
/// Where vswitchd keeps its desired state unless told otherwise.
pub const DEFAULT_DB: &str = "/var/lib/vswitch/conf.json";
