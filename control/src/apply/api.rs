//! Declarative configuration on the wire: apply a whole desired state, dump it.

use serde::{Deserialize, Serialize};

// Requests are parsed once and handled once: their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum ApplyRequest {
    /// Reconcile the switch to a whole desired state (all or nothing).
    Apply {
        state: crate::state::DesiredState,
        #[serde(default)]
        dry_run: bool,
    },
    /// The running desired state, in the format `apply` reads.
    Dump,
}

/// What `apply` changed (or, with `dry_run`, would change).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyReport {
    pub changes: Vec<String>,
    pub applied: bool,
}
