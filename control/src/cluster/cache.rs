//! The agent's copy of what it last read from the store and what it wrote there, kept
//! beside the desired state: a node that restarts while the store is away forwards
//! with the last known entries, and knows which of its keys to check.
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, path::Path};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cache {
    /// Other nodes' records the agent watched: key -> (value, revision).
    pub records: BTreeMap<String, (String, i64)>,
    /// This node's keys as the store had them.
    pub stored: BTreeMap<String, String>,
    /// This node's address blocks: (VNI, subnet, blocks).
    #[serde(default)]
    pub blocks: Vec<(u32, String, Vec<String>)>,
}

impl Cache {
    /// The cache, if there is a readable one (a damaged cache is only a slower start).
    pub fn load(path: &Path) -> Option<Cache> {
        let bytes = std::fs::read(path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("cluster: the cache {} does not decode ({e}); starting without it", path.display());
                None
            }
        }
    }

    pub fn save(&self, path: &Path) {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        if let Err(e) = crate::store::replace_file(path, &bytes) {
            tracing::warn!("cluster: cannot write the cache {}: {e}", path.display());
        }
    }
}
