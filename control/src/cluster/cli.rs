//! vswitchctl's cluster verbs: `cluster status`, and `--cluster` on the verbs that
//! change the shared state (`vswitchctl --cluster service add ...`, `dump --cluster`,
//! `apply -f FILE --cluster`).
use super::api::{ClusterRequest, ClusterStatus, SharedState, SharedWrite};
use crate::{
    api::Request,
    cli::{from, header, table, Ctl, Verb},
};
use clap::Subcommand;
use serde_json::Value;
use std::{path::Path, process::ExitCode};

/// A verb run with `--cluster`.
pub enum SharedVerb<'a> {
    Apply { file: &'a Path, dry_run: bool },
    Dump,
    Change(&'a dyn Verb),
}

/// Runs `verb` on the cluster's shared state instead of this switch's own.
pub fn run_shared(verb: SharedVerb, ctl: &Ctl, if_revision: Option<i64>) -> ExitCode {
    let req = match &verb {
        SharedVerb::Dump => Ok(ClusterRequest::ClusterDump),
        SharedVerb::Apply { file, dry_run } => {
            read_shared(file).map(|state| ClusterRequest::ClusterApply { state, dry_run: *dry_run })
        }
        SharedVerb::Change(v) => v.request().and_then(|r| {
            let request = serde_json::to_value(r).map_err(|e| e.to_string())?;
            Ok(ClusterRequest::ClusterChange { request, if_revision })
        }),
    };
    let req = match req {
        Ok(r) => Request::Cluster(r),
        Err(e) => return ctl.fail(1, &e),
    };
    let reply = match ctl.send(&req) {
        Ok(v) => v,
        Err(code) => return code,
    };
    if ctl.json || matches!(verb, SharedVerb::Dump) {
        println!("{}", serde_json::to_string_pretty(&reply).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let w: SharedWrite = match from(reply) {
        Ok(w) => w,
        Err(e) => return ctl.fail(2, &format!("cannot read vswitchd's reply: {e}")),
    };
    if w.changes.is_empty() {
        println!("no changes: the cluster's shared state already says so (revision {})", w.revision);
    } else {
        let head = if w.written { format!("written at revision {}:", w.revision) } else { "would write:".into() };
        println!("{head}");
        for c in &w.changes {
            println!("  {c}");
        }
    }
    if let Some(warning) = w.reply.get("warning").and_then(Value::as_str) {
        println!("warning: {warning}");
    }
    ExitCode::SUCCESS
}

/// A shared-state file (as `dump --cluster` prints it): JSON, else YAML. A node's own
/// desired state is not one: its ports and VTEP are each node's.
pub fn read_shared(path: &Path) -> Result<SharedState, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let v: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) if text.trim_start().starts_with('{') => return Err(format!("{} is not JSON: {e}", path.display())),
        Err(_) => serde_yaml_ng::from_str(&text).map_err(|e| format!("{} is not JSON or YAML: {e}", path.display()))?,
    };
    let other: Vec<&str> = v
        .as_object()
        .map(|o| {
            o.keys().map(String::as_str).filter(|k| !["revision", "networks", "acl", "services"].contains(k)).collect()
        })
        .unwrap_or_default();
    if !other.is_empty() {
        return Err(format!(
            "{}: apply --cluster takes networks, acl and services (as dump --cluster prints them); \
             {} are each node's own (apply them without --cluster)",
            path.display(),
            other.join(", ")
        ));
    }
    serde_json::from_value(v).map_err(|e| format!("{}: {e}", path.display()))
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// The store, how current this node's view is, what waits to be written, the nodes.
    #[command(after_help = "Example:\n  vswitchctl cluster status")]
    Status,
}

impl Verb for ClusterCmd {
    fn request(&self) -> Result<Request, String> {
        Ok(Request::Cluster(match self {
            ClusterCmd::Status => ClusterRequest::ClusterStatus,
        }))
    }

    fn print(&self, reply: Value) -> Result<(), serde_json::Error> {
        let s: ClusterStatus = from(reply)?;
        let state = if s.connected { "connected".to_string() } else { "NOT CONNECTED".to_string() };
        println!("node {} in {} under {}: {state}", s.node, s.store.join(","), s.prefix);
        if let Some(e) = &s.last_error {
            println!("last error: {e}");
        }
        if let Some(ms) = s.since_contact_ms {
            println!("last answer from the store {:.1}s ago", ms as f64 / 1000.0);
        }
        println!(
            "revision: store {}, applied {} (lag {}); {} relists; {} undecodable records",
            s.store_revision, s.applied_revision, s.lag_revisions, s.relists, s.undecodable
        );
        println!(
            "pending writes: {}{}",
            s.pending,
            if s.pending_keys.is_empty() { String::new() } else { format!(" ({} ...)", s.pending_keys.join(", ")) }
        );
        let vnis: Vec<String> = s.watched_vnis.iter().map(|v| v.to_string()).collect();
        println!(
            "watched networks: {}; remote MACs in the FIB: {}",
            if vnis.is_empty() { "-".into() } else { vnis.join(",") },
            s.remote_macs
        );
        println!("shared state taken in at revision {}", s.shared_revision);
        for u in &s.shared_unapplied {
            println!("  not taken in: {u}");
        }
        let mut rows = vec![header(&["NODE", "VTEP", "STATE", "ENDPOINTS", "BOOT"])];
        for n in s.nodes {
            let state = if n.alive { "up" } else { "down" };
            rows.push(vec![n.name, n.vtep.to_string(), state.into(), n.endpoints.to_string(), n.boot.to_string()]);
        }
        table(&rows);
        Ok(())
    }
}
