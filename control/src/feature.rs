//! What the common core (`switch`) asks of every feature that keeps state beside the
//! ports. A feature's folder holds the rest: its requests (`api.rs`), their handling
//! (`handle.rs`), its verbs (`cli.rs`) and its stages (in `pipelines`).
use crate::{ports::PortRef, state::DesiredState, store::change::Change};
use dataplane::snapshot::Snapshot;
use pipelines::tables::L2Tables;

/// What one publish builds: the snapshot the cores load, and its L2 part (shared
/// between snapshots, so each feature fills only what it owns).
pub struct Tables {
    pub snap: Snapshot,
    pub l2: L2Tables,
}

pub trait Feature {
    /// Why port `name` cannot be deleted now, if this feature refers to it.
    fn port_in_use(&self, _name: &str) -> Option<String> {
        None
    }

    /// Port `port` is gone: forget what belonged to it. Returns the changes to the
    /// desired state that this makes, for the journal.
    fn port_removed(&mut self, _port: &PortRef) -> Vec<Change> {
        Vec::new()
    }

    /// Writes this feature's sections of the desired state.
    fn desired(&self, out: &mut DesiredState);

    /// Fills this feature's part of the tables the cores will read.
    fn compile(&mut self, ports: &[PortRef], cores: usize, t: &mut Tables);
}
