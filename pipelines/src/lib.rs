//! Packet formats, tables and the batch stages of the switch.
//!
//! Nothing here knows about DPDK: stages see byte slices and per-packet metadata,
//! so every stage compiles, tests and fuzzes with plain `cargo test`.
#![deny(unsafe_code)]

pub mod drop_reason;

pub use drop_reason::DropReason;

/// The most packets one rx burst brings and one stage pass handles.
pub const BURST: usize = 32;
