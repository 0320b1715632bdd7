//! vswitchctl's cluster verbs.
use super::api::{ClusterRequest, ClusterStatus};
use crate::{
    api::Request,
    cli::{from, header, table, Verb},
};
use clap::Subcommand;
use serde_json::Value;

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
        let mut rows = vec![header(&["NODE", "VTEP", "STATE", "ENDPOINTS", "BOOT"])];
        for n in s.nodes {
            let state = if n.alive { "up" } else { "down" };
            rows.push(vec![n.name, n.vtep.to_string(), state.into(), n.endpoints.to_string(), n.boot.to_string()]);
        }
        table(&rows);
        Ok(())
    }
}
