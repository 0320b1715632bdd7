//! The desired state: what the user asked for, durable across restarts and crashes.
//!
//! Written whole on every accepted change: a temp file beside the real one, fsync,
//! rename over it, fsync of the directory. A reader sees the old file or the new one,
//! never a mix; an acknowledged change is on disk before the reply leaves.
use crate::api::{AclAction, AclRuleSpec, FibSpec, NeighSpec, NetworkSpec, PortSpec, QosSpec, SflowSpec, VtepSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

/// Format of the file; bumped on incompatible changes.
pub const STATE_FORMAT: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredState {
    pub format: u32,
    /// In the order they were added (restored in that order).
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    #[serde(default)]
    pub xconnects: Vec<Xconnect>,
    #[serde(default)]
    pub networks: Vec<NetworkSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<VtepSpec>,
    #[serde(default)]
    pub fib: Vec<FibSpec>,
    #[serde(default)]
    pub neighbours: Vec<NeighSpec>,
    /// Security-group rules, each with its id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl: Vec<AclRuleSpec>,
    /// Per-port default ACL action, where it is not allow.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub acl_defaults: BTreeMap<String, AclAction>,
    /// Meters and DSCP per VM port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub qos: Vec<QosSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sflow: Option<SflowSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Xconnect {
    pub a: String,
    pub b: String,
}

impl DesiredState {
    pub fn new() -> DesiredState {
        DesiredState { format: STATE_FORMAT, ..Default::default() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the state file {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("the state file {path} is corrupt or truncated ({err}); vswitchd will not overwrite it: repair it, or move it away to start empty")]
    Corrupt { path: PathBuf, err: String },
    #[error("the state file {path} has format {found}, this vswitchd reads format {STATE_FORMAT}")]
    Format { path: PathBuf, found: u32 },
    #[error("cannot write the state file {path}: {err}")]
    Write { path: PathBuf, err: std::io::Error },
}

/// The file behind the desired state.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    pub fn new(path: impl Into<PathBuf>) -> Store {
        Store { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state; an empty one if there is no file yet.
    pub fn load(&self) -> Result<DesiredState, StateError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DesiredState::new()),
            Err(err) => return Err(StateError::Read { path: self.path.clone(), err }),
        };
        let state: DesiredState = serde_json::from_str(&text)
            .map_err(|e| StateError::Corrupt { path: self.path.clone(), err: e.to_string() })?;
        if state.format != STATE_FORMAT {
            return Err(StateError::Format { path: self.path.clone(), found: state.format });
        }
        Ok(state)
    }

    /// Replaces the file with `state`, atomically and durably.
    pub fn save(&self, state: &DesiredState) -> Result<(), StateError> {
        let werr = |err| StateError::Write { path: self.path.clone(), err };
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(werr)?;
        let mut tmp_name = self.path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp = dir.join(tmp_name);
        let mut text = serde_json::to_vec_pretty(state).map_err(|e| werr(std::io::Error::other(e)))?;
        text.push(b'\n');
        let mut f = fs::File::create(&tmp).map_err(werr)?;
        f.write_all(&text).map_err(werr)?;
        f.sync_all().map_err(werr)?;
        drop(f);
        fs::rename(&tmp, &self.path).map_err(werr)?;
        fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(werr)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "vswitch-state-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn missing_file_is_empty_state_and_save_round_trips() {
        let d = tmpdir();
        let store = Store::new(d.join("sub/conf.json"));
        assert_eq!(store.load().unwrap(), DesiredState::new());
        let mut s = DesiredState::new();
        s.ports.push(PortSpec {
            name: "a".into(),
            devargs: "net_null0".into(),
            queues: Some(2),
            cores: None,
            mtu: None,
            role: None,
            vni: None,
        });
        s.xconnects.push(Xconnect { a: "a".into(), b: "b".into() });
        store.save(&s).unwrap();
        assert_eq!(store.load().unwrap(), s);
        assert!(!d.join("sub/conf.json.tmp").exists());
    }

    #[test]
    fn corrupt_or_truncated_file_is_refused_and_kept() {
        let d = tmpdir();
        let p = d.join("conf.json");
        fs::write(&p, "{\"format\":1,\"ports\":[{\"name\":\"a\"").unwrap();
        let err = Store::new(&p).load().unwrap_err().to_string();
        assert!(err.contains(&p.display().to_string()) && err.contains("corrupt"), "{err}");
        assert!(fs::read_to_string(&p).unwrap().starts_with("{\"format\":1"));
        fs::write(&p, "{\"format\":99}").unwrap();
        assert!(Store::new(&p).load().unwrap_err().to_string().contains("format 99"));
    }
}
