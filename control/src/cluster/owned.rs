//! Which entries of a node's desired state are the cluster's shared state's: a section
//! of the node's own state file, so a restart knows them from the node's own entries.
//! (Apart from `shared` so that the desired state can name it without the features.)
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Which entries of a node's desired state are the cluster's, and the shared state's
/// revision they were taken at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owned {
    pub revision: i64,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub networks: BTreeSet<u32>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub acl: BTreeSet<u32>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub services: BTreeSet<String>,
}

impl Owned {
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty() && self.acl.is_empty() && self.services.is_empty()
    }

    /// Whether the entry under `key` (as `Entries` names it) is the cluster's.
    pub fn has(&self, key: &str) -> bool {
        match key.split_once('/') {
            Some(("networks", v)) => v.parse().is_ok_and(|v| self.networks.contains(&v)),
            Some(("acl", id)) => id.parse().is_ok_and(|id| self.acl.contains(&id)),
            Some(("services", n)) => self.services.contains(n),
            _ => false,
        }
    }

    pub(super) fn remove(&mut self, key: &str) {
        match key.split_once('/') {
            Some(("networks", v)) => self.networks.retain(|x| x.to_string() != v),
            Some(("acl", id)) => self.acl.retain(|x| x.to_string() != id),
            Some(("services", n)) => {
                self.services.remove(n);
            }
            _ => {}
        }
    }

    pub(super) fn insert(&mut self, key: &str) {
        match key.split_once('/') {
            Some(("networks", v)) => self.networks.extend(v.parse::<u32>().ok()),
            Some(("acl", id)) => self.acl.extend(id.parse::<u32>().ok()),
            Some(("services", n)) => {
                self.services.insert(n.to_string());
            }
            _ => {}
        }
    }
}
