//! Packet formats, tables and the batch stages of the switch.
//!
//! Nothing here knows about DPDK: stages see byte slices and per-packet metadata,
//! so every stage compiles, tests and fuzzes with plain `cargo test`.
#![deny(unsafe_code)]

pub mod acl;
pub mod clock;
pub mod conntrack;
pub mod drop_reason;
pub mod frame;
#[doc(hidden)]
pub mod fuzz;
pub mod gateway;
pub mod learn;
pub mod meta;
pub mod offload;
pub mod parse;
pub mod qos;
pub mod services;
pub mod sflow;
pub mod stages;
pub mod tables;
pub mod vxlan;
pub mod wire;

pub use drop_reason::DropReason;
pub use frame::{Frame, VecFrame};
pub use meta::{Action, Meta};

/// An ethdev port id, as the snapshot and the counters index ports.
pub type PortId = u16;

/// The most packets one rx burst brings and one stage pass handles.
pub const BURST: usize = 32;
