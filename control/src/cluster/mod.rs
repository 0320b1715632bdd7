//! Many hosts, one network: the cluster agent. Each switch publishes its node record
//! and the endpoints behind its ports to etcd, and turns the other nodes' records, in
//! the networks it has ports in, into FIB entries toward their VTEPs, flood lists and
//! endpoint-table entries (ARP/ND answered locally). Operators write networks, rules
//! and services once for every node (the shared state, `shared.rs`, written by
//! `write.rs`). `keys.rs` is the layout in the store, `watch.rs` one watched prefix,
//! `view.rs` what the records make of each network, `agent.rs` the task, `handle.rs`
//! the switch's side.
pub mod agent;
pub mod api;
mod blocks;
mod cache;
mod call;
pub mod cli;
mod handle;
pub mod identity;
pub mod keys;
pub mod owned;
pub mod shared;
pub(crate) mod view;
mod watch;
pub mod write;

#[cfg(test)]
mod tests;

use agent::{Agent, Config, Local};
use api::ClusterStatus;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch as channel};
pub use view::Op;

/// The switch's end of the agent (none without `--cluster`), and which entries of
/// the desired state are the shared state's.
#[derive(Default)]
pub struct Cluster {
    link: Option<Link>,
    owned: shared::Owned,
    /// The shared state as last received: (revision, entries).
    received: Option<(i64, shared::Entries)>,
    /// Shared entries this node did not take in, and why.
    unapplied: Vec<String>,
    /// The local networks when they were last tried (taken in again when they change).
    tried_with: String,
}

struct Link {
    local: channel::Sender<Local>,
    asks: mpsc::UnboundedSender<Ask>,
    writes: mpsc::UnboundedSender<write::WriteJob>,
    status: Arc<Mutex<ClusterStatus>>,
    /// Told when the agent's thread is done.
    stopped: tokio::sync::oneshot::Receiver<()>,
}

/// What the switch asks the agent and waits for (or not).
pub enum Ask {
    Block(blocks::Claim),
    Identity(identity::Lookup),
    HeldElsewhere(identity::HeldElsewhere),
}

/// What the switch reads the agent's changes from.
pub type Updates = mpsc::UnboundedReceiver<Vec<Op>>;

impl Cluster {
    /// Starts the agent (inside the control plane's runtime).
    pub fn start(&mut self, cfg: Config) -> Updates {
        let (ops_tx, ops_rx) = mpsc::unbounded_channel();
        let status = Arc::new(Mutex::new(ClusterStatus {
            node: cfg.node.clone(),
            store: cfg.store.clone(),
            prefix: cfg.prefix.clone(),
            ..ClusterStatus::default()
        }));
        let (local_tx, local_rx) = channel::channel(Local::default());
        let (writes_tx, writes_rx) = mpsc::unbounded_channel();
        let (asks_tx, asks_rx) = mpsc::unbounded_channel();
        tracing::info!("cluster: node {} in {} under {}", cfg.node, cfg.store.join(","), cfg.prefix);
        let agent = Agent::new(cfg, ops_tx, status.clone());
        // A thread and runtime of its own: the switch's long changes (a table built, a
        // whole state applied) never hold up the store's keep-alives, watches or writes.
        let (done, stopped) = tokio::sync::oneshot::channel();
        let run = move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(agent.run(local_rx, writes_rx, asks_rx)),
                Err(e) => tracing::error!("cluster: cannot start the agent's runtime: {e}"),
            }
            let _ = done.send(());
        };
        if let Err(e) = std::thread::Builder::new().name("cluster".into()).spawn(run) {
            tracing::error!("cluster: cannot start the agent's thread: {e}");
        }
        self.link = Some(Link { local: local_tx, asks: asks_tx, writes: writes_tx, status, stopped });
        ops_rx
    }

    /// Claims an address block of `net` (network `vni`) for this node in the store.
    pub async fn claim_block(&self, vni: u32, net: ipnetwork::IpNetwork) -> Result<ipnetwork::IpNetwork, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let l = self.link.as_ref().ok_or_else(|| NOT_IN_CLUSTER.to_string())?;
        let ask = Ask::Block(blocks::Claim { vni, net, reply: Some(tx) });
        l.asks.send(ask).map_err(|_| "the cluster agent has stopped")?;
        match tokio::time::timeout(std::time::Duration::from_secs(4), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the cluster agent has stopped".into()),
            Err(_) => Err("no new block could be claimed: the store did not answer in time".into()),
        }
    }

    /// Claims another block of `net` in the background (the node's are running low).
    pub fn claim_block_later(&self, vni: u32, net: ipnetwork::IpNetwork) {
        if let Some(l) = &self.link {
            let _ = l.asks.send(Ask::Block(blocks::Claim { vni, net, reply: None }));
        }
    }

    /// Another node's addresses for workload `identity` in network `vni`, if the store
    /// answers within a second and has some.
    pub async fn lookup_identity(&self, vni: u32, identity: &str) -> Option<identity::Held> {
        let l = self.link.as_ref()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let ask = Ask::Identity(identity::Lookup { vni, identity: identity.to_string(), reply: tx });
        l.asks.send(ask).ok()?;
        tokio::time::timeout(std::time::Duration::from_secs(1), rx).await.ok()?.ok()?
    }

    /// The addresses of network `vni` other nodes hold (for workloads that ran here
    /// and moved on, or their own), as the store says within a second; an error while
    /// it cannot say.
    pub async fn addresses_held_elsewhere(
        &self,
        vni: u32,
    ) -> Result<std::collections::BTreeSet<std::net::IpAddr>, String> {
        let l = self.link.as_ref().ok_or_else(|| NOT_IN_CLUSTER.to_string())?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        l.asks
            .send(Ask::HeldElsewhere(identity::HeldElsewhere { vni, reply: tx }))
            .map_err(|_| "the cluster agent has stopped")?;
        match tokio::time::timeout(std::time::Duration::from_secs(1), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the cluster agent has stopped".into()),
            Err(_) => Err("the store did not answer in time".into()),
        }
    }

    /// Hands an operator's write of the shared state to the agent; it answers `reply`.
    pub fn write(&self, write: write::Write, reply: tokio::sync::oneshot::Sender<crate::api::Response>) {
        let job = write::WriteJob { write, reply };
        match &self.link {
            Some(l) => {
                if let Err(e) = l.writes.send(job) {
                    let _ = e.0.reply.send(crate::api::Response::err("cluster: the agent has stopped"));
                }
            }
            None => {
                let _ = job.reply.send(crate::api::Response::err(NOT_IN_CLUSTER));
            }
        }
    }

    /// Stops the agent: it gives back this node's liveness lease (the others see it
    /// down at once, not when the lease runs out) and saves its cache. Intent keys stay.
    pub async fn leave(&mut self) {
        let Some(Link { local, stopped, writes, asks, .. }) = self.link.take() else { return };
        drop(writes);
        drop(asks);
        drop(local);
        if tokio::time::timeout(std::time::Duration::from_secs(3), stopped).await.is_err() {
            tracing::warn!("cluster: the agent did not stop within 3 s");
        }
    }

    /// Tells the agent what this node has, if that changed.
    fn tell(&self, local: Local) {
        if let Some(l) = &self.link {
            l.local.send_if_modified(|old| {
                let changed = *old != local;
                *old = local;
                changed
            });
        }
    }

    fn status(&self) -> Option<ClusterStatus> {
        let l = self.link.as_ref()?;
        let mut s = l.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
        s.shared_revision = self.owned.revision;
        s.shared_unapplied = self.unapplied.clone();
        Some(s)
    }
}

/// What a node outside a cluster says to a cluster request.
pub const NOT_IN_CLUSTER: &str =
    "this vswitchd is not in a cluster (start it with --cluster etcd://HOST:PORT --node NAME)";

impl crate::feature::Feature for Cluster {
    fn desired(&self, out: &mut crate::state::DesiredState) {
        out.cluster = (!self.owned.is_empty() || self.owned.revision != 0).then(|| self.owned.clone());
    }

    fn adopt(&mut self, state: &crate::state::DesiredState, _ctx: &crate::feature::Ctx) -> Result<(), String> {
        self.owned = state.cluster.clone().unwrap_or_default();
        Ok(())
    }

    fn compile(&mut self, _ports: &[crate::ports::PortRef], _cores: usize, _t: &mut crate::feature::Tables) {}
}

/// The TLS settings of `--cluster-ca`, `--cluster-cert` and `--cluster-key`, read and
/// checked now (a bad file is an error at start, not a silent retry loop).
pub fn tls_options(
    ca: Option<&std::path::Path>,
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
) -> Result<Option<etcd_client::TlsOptions>, String> {
    use etcd_client::{Certificate, Identity, TlsOptions};
    let read = |what: &str, p: &std::path::Path| {
        let pem = std::fs::read(p).map_err(|e| format!("{what}: cannot read {}: {e}", p.display()))?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN") {
            return Err(format!("{what}: {} is not PEM (-----BEGIN ...)", p.display()));
        }
        Ok(pem)
    };
    if ca.is_none() && cert.is_none() && key.is_none() {
        return Ok(None);
    }
    let mut tls = TlsOptions::new();
    if let Some(ca) = ca {
        tls = tls.ca_certificate(Certificate::from_pem(read("--cluster-ca", ca)?));
    }
    match (cert, key) {
        (Some(c), Some(k)) => {
            tls = tls.identity(Identity::from_pem(read("--cluster-cert", c)?, read("--cluster-key", k)?));
        }
        (None, None) => {}
        _ => return Err("--cluster-cert and --cluster-key go together: give both, or neither".into()),
    }
    Ok(Some(tls))
}

/// `--cluster etcd://HOST:PORT[,HOST:PORT...]` as client URLs (http://HOST:PORT).
pub fn parse_store(s: &str) -> Result<Vec<String>, String> {
    let rest = s.strip_prefix("etcd://").ok_or_else(|| {
        format!(
            "--cluster: {s:?} is not etcd://HOST:PORT[,HOST:PORT...] (for example etcd://10.0.0.1:2379,10.0.0.2:2379)"
        )
    })?;
    let mut out = Vec::new();
    for hp in rest.trim_end_matches('/').split(',') {
        let ok = hp.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !ok {
            return Err(format!("--cluster: {hp:?} is not HOST:PORT (for example 10.0.0.1:2379)"));
        }
        out.push(format!("http://{hp}"));
    }
    Ok(out)
}
