//! What the common core (`switch`) asks of every feature that keeps state beside the
//! ports. A feature's folder holds the rest: its requests (`api.rs`), their handling
//! (`handle.rs`), its verbs (`cli.rs`) and its stages (in `pipelines`).
use crate::{ports::PortRef, state::DesiredState, store::change::Change};
use dataplane::{pmd::Shared, snapshot::Snapshot};
use pipelines::tables::L2Tables;

/// What a feature's request handler may read of the rest of the switch.
pub struct Ctx<'a> {
    /// Every port of the desired state.
    pub ports: &'a [PortRef],
    /// Whether a tenant network exists.
    pub has_network: &'a dyn Fn(u32) -> bool,
    /// The VTEP's address, if one is set.
    pub vtep_ip: Option<std::net::IpAddr>,
    /// The cores' counters (none in unit tests).
    pub shared: Option<&'a Shared>,
}

/// What handling one request gave: the reply, and the journal records of what it
/// changed (none for a read).
pub struct Handled {
    pub reply: serde_json::Value,
    pub changes: Vec<Change>,
    /// The tables the cores read changed (a change that persists nothing may, too).
    pub publish: bool,
}

impl Handled {
    pub fn read(reply: impl serde::Serialize) -> Handled {
        Handled { reply: serde_json::to_value(reply).unwrap_or_default(), changes: Vec::new(), publish: false }
    }

    pub fn change(reply: serde_json::Value, changes: Vec<Change>) -> Handled {
        Handled { reply, changes, publish: true }
    }
}

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

    /// Why network `vni` cannot be deleted now, if this feature has entries in it (the
    /// desired state would name a network it no longer has).
    fn network_in_use(&self, _vni: u32) -> Option<String> {
        None
    }

    /// Network `vni` is gone (nothing of this feature's was in use in it): forget what
    /// belonged to it. Returns the changes to the desired state that this makes.
    fn network_removed(&mut self, _vni: u32) -> Vec<Change> {
        Vec::new()
    }

    /// Port `port` is gone: forget what belonged to it. Returns the changes to the
    /// desired state that this makes, for the journal.
    fn port_removed(&mut self, _port: &PortRef) -> Vec<Change> {
        Vec::new()
    }

    /// Writes this feature's sections of the desired state.
    fn desired(&self, out: &mut DesiredState);

    /// Takes its sections of a whole desired state (restored from disk, or applied),
    /// checked against the ports and networks `ctx` shows; unchanged on error, which
    /// names the entry.
    fn adopt(&mut self, _state: &DesiredState, _ctx: &Ctx) -> Result<(), String> {
        Ok(())
    }

    /// Fills this feature's part of the tables the cores will read.
    fn compile(&mut self, ports: &[PortRef], cores: usize, t: &mut Tables);
}
