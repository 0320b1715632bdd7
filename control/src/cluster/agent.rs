//! The cluster agent: a control-plane task beside the switch. It publishes this node's
//! records, watches the other nodes' in the networks this node has ports in, and hands
//! the switch the difference as `Op`s, which the switch applies as it applies any
//! request. The data plane never waits for it; when the store is away the switch keeps
//! what it has, local changes queue here, and are written when the store is back.
use super::{
    api::{ClusterStatus, NodeView},
    cache::Cache,
    call::{read, retried, timed, CALL_TIMEOUT},
    keys::{EndpointRecord, Keys, NodeRecord},
    view::{diff, Derived, Op, Touched, View},
    watch::{self, Sub, SubMsg},
};
use etcd_client::{Client, ConnectOptions, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp};
use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::{
    sync::{mpsc, watch as channel},
    task::JoinHandle,
};

/// What `vswitchd --cluster` says.
#[derive(Debug, Clone)]
pub struct Config {
    pub store: Vec<String>,
    pub node: String,
    pub prefix: String,
    /// The agent's cache of the store (for a start while the store is away).
    pub cache: PathBuf,
    /// TLS to the store (its URLs are then https): the CA that signed its
    /// certificate, and this node's client certificate and key if it asks for one.
    pub tls: Option<etcd_client::TlsOptions>,
}

/// What this node has, as the switch tells the agent after every change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Local {
    /// Its VTEP (none: nothing to publish yet).
    pub vtep: Option<(std::net::Ipv4Addr, u16, Option<String>)>,
    /// Endpoints behind local ports, by (VNI, MAC).
    pub endpoints: BTreeMap<(u32, String), EndpointRecord>,
    /// Networks with local VM ports: the ones to watch.
    pub vnis: BTreeSet<u32>,
    /// The addresses this node's IPAM holds per workload, by (VNI, identity).
    pub identities: BTreeMap<(u32, String), super::keys::IdentityRecord>,
}

/// The liveness key's lease (seconds): a node is shown down this long after it stops.
const ALIVE_TTL: i64 = 10;
const KEEPALIVE_EVERY: Duration = Duration::from_secs(3);
/// Operations per transaction (etcd's default limit is 128).
const TXN_OPS: usize = 100;

struct Lease {
    id: i64,
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
    kept: Instant,
}

pub struct Agent {
    pub(super) cfg: Config,
    pub(super) keys: Keys,
    boot: u64,
    /// This run of vswitchd, as its liveness key says (two switches started in the same
    /// second under one name still differ).
    instance: String,
    pub(super) client: Option<Client>,
    view: View,
    /// This node's address blocks, by (VNI, subnet).
    pub(super) blocks: BTreeMap<(u32, ipnetwork::IpNetwork), BTreeSet<ipnetwork::IpNetwork>>,
    /// What the switch has been told, per watched network.
    derived: BTreeMap<u32, Derived>,
    subs: BTreeMap<Sub, JoinHandle<()>>,
    sub_tx: mpsc::UnboundedSender<SubMsg>,
    sub_rx: mpsc::UnboundedReceiver<SubMsg>,
    /// Revision each watch has applied up to.
    applied: BTreeMap<Sub, i64>,
    local: Local,
    /// This node's keys as the store has them, as far as the agent knows.
    stored: BTreeMap<String, String>,
    /// The store has been read back since the last connection (own keys verified).
    verified: bool,
    lease: Option<Lease>,
    pub(super) ops: mpsc::UnboundedSender<Vec<Op>>,
    pub(super) status: Arc<Mutex<ClusterStatus>>,
    contact: Option<Instant>,
    pub(super) cache_dirty: bool,
    /// Wakes watches waiting to retry when the store answers again.
    kick: Arc<tokio::sync::Notify>,
}

impl Agent {
    pub fn new(cfg: Config, ops: mpsc::UnboundedSender<Vec<Op>>, status: Arc<Mutex<ClusterStatus>>) -> Agent {
        let (sub_tx, sub_rx) = mpsc::unbounded_channel();
        Agent {
            keys: Keys::new(&cfg.prefix),
            view: View::new(&cfg.node),
            cfg,
            boot: crate::cni::unix_now(),
            instance: {
                let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                format!("{}.{:09}-{}", t.as_secs(), t.subsec_nanos(), std::process::id())
            },
            client: None,
            blocks: BTreeMap::new(),
            derived: BTreeMap::new(),
            subs: BTreeMap::new(),
            sub_tx,
            sub_rx,
            applied: BTreeMap::new(),
            local: Local::default(),
            stored: BTreeMap::new(),
            verified: false,
            lease: None,
            ops,
            status,
            contact: None,
            cache_dirty: false,
            kick: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Runs until the switch goes away (`local` closes).
    pub async fn run(
        mut self,
        mut local: channel::Receiver<Local>,
        mut writes: mpsc::UnboundedReceiver<super::write::WriteJob>,
        mut asks: mpsc::UnboundedReceiver<super::Ask>,
    ) {
        self.load_cache();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = local.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.local = local.borrow_and_update().clone();
                    self.resubscribe();
                    self.flush().await;
                }
                Some(m) = self.sub_rx.recv() => {
                    let mut batch = vec![m];
                    while let Ok(m) = self.sub_rx.try_recv() {
                        batch.push(m);
                    }
                    self.take(batch);
                }
                Some(job) = writes.recv() => match &self.client {
                    // Its own task: a slow store holds up that operator, not this loop.
                    Some(c) => {
                        tokio::spawn(super::write::run(c.clone(), self.keys.clone(), job));
                    }
                    None => {
                        let why = self.status.lock().unwrap_or_else(|e| e.into_inner()).last_error.clone();
                        let _ = job.reply.send(crate::api::Response::err(format!(
                            "the cluster's store is not reachable ({}); nothing was written",
                            why.unwrap_or_else(|| "not connected yet".into())
                        )));
                    }
                },
                Some(a) = asks.recv() => match a {
                    super::Ask::Block(c) => self.claim(c).await,
                    super::Ask::Identity(l) => self.lookup(l).await,
                    super::Ask::HeldElsewhere(h) => self.held_elsewhere_in(h).await,
                },
                _ = tick.tick() => self.maintain().await,
            }
            self.report();
        }
        for (_, h) in std::mem::take(&mut self.subs) {
            h.abort();
        }
        if let (Some(c), Some(l)) = (self.client.as_mut(), self.lease.take()) {
            // A clean stop takes the liveness key with it; intent keys stay.
            let _ = tokio::time::timeout(CALL_TIMEOUT, c.lease_revoke(l.id)).await;
        }
        self.save_cache_now();
    }

    fn load_cache(&mut self) {
        let Some(cache) = Cache::load(&self.cfg.cache) else { return };
        let mut t = Touched::default();
        for (key, (value, rev)) in &cache.records {
            if let Some(super::keys::Key::Endpoint { vni, .. }) = self.keys.parse(key) {
                self.view.endpoints.entry(vni).or_default();
            }
            self.view.apply(&self.keys, key, Some(value.as_bytes()), *rev, &mut t);
        }
        self.stored = cache.stored;
        for (vni, net, blocks) in &cache.blocks {
            let (Ok(net), blocks) = (
                net.parse::<ipnetwork::IpNetwork>(),
                blocks.iter().filter_map(|b| b.parse::<ipnetwork::IpNetwork>().ok()),
            ) else {
                continue;
            };
            self.blocks.entry((*vni, net)).or_default().extend(blocks);
            self.emit_blocks(*vni, net);
        }
        tracing::info!(
            "cluster: {} records of {} networks from the cache {}, until the store answers",
            cache.records.len(),
            self.view.endpoints.len(),
            self.cfg.cache.display()
        );
        let vnis: Vec<u32> = self.view.endpoints.keys().copied().collect();
        self.emit(vnis);
        if t.shared {
            let rev = self.view.shared.values().map(|s| s.rev).max().unwrap_or(0);
            self.emit_shared(rev);
        }
    }

    /// Starts watches for networks that gained local ports, stops those of networks
    /// that lost them (and takes their entries out of the switch).
    fn resubscribe(&mut self) {
        let want: BTreeSet<u32> = self.local.vnis.clone();
        let gone: Vec<u32> = self.view.endpoints.keys().filter(|v| !want.contains(v)).copied().collect();
        for vni in &gone {
            if let Some(h) = self.subs.remove(&Sub::Vni(*vni)) {
                h.abort();
            }
            self.view.endpoints.remove(vni);
            self.applied.remove(&Sub::Vni(*vni));
        }
        for vni in &want {
            self.view.endpoints.entry(*vni).or_default();
        }
        self.emit(gone);
        self.start_subs();
    }

    fn start_subs(&mut self) {
        let Some(client) = &self.client else { return };
        let mut wanted =
            vec![(Sub::Nodes, self.keys.nodes()), (Sub::Alive, self.keys.alives()), (Sub::Shared, self.keys.shared())];
        wanted.extend(self.local.vnis.iter().map(|v| (Sub::Vni(*v), self.keys.endpoints(*v))));
        for (sub, prefix) in wanted {
            if !self.subs.contains_key(&sub) {
                let h = tokio::spawn(watch::run(client.clone(), prefix, sub, self.sub_tx.clone(), self.kick.clone()));
                self.subs.insert(sub, h);
            }
        }
    }

    fn prefix_of(&self, sub: Sub) -> String {
        match sub {
            Sub::Nodes => self.keys.nodes(),
            Sub::Alive => self.keys.alives(),
            Sub::Vni(v) => self.keys.endpoints(v),
            Sub::Shared => self.keys.shared(),
        }
    }

    /// Applies what the watches delivered; tells the switch what changed.
    fn take(&mut self, batch: Vec<SubMsg>) {
        let mut t = Touched::default();
        for m in batch {
            match m {
                SubMsg::Snapshot { sub, rev, kvs } => {
                    if !self.subs.contains_key(&sub) {
                        continue; // a stopped watch's last words
                    }
                    self.contacted();
                    // What the prefix held before and is not in the snapshot is gone.
                    let prefix = self.prefix_of(sub);
                    let present: BTreeSet<&str> = kvs.iter().map(|e| e.0.as_str()).collect();
                    for key in self.keys_under(sub).into_iter().filter(|k| !present.contains(k.as_str())) {
                        self.view.apply(&self.keys, &key, None, rev, &mut t);
                    }
                    for (key, value, r) in &kvs {
                        self.view.apply(&self.keys, key, value.as_deref(), *r, &mut t);
                    }
                    tracing::debug!("cluster: read {prefix} whole at revision {rev} ({} keys)", kvs.len());
                    // (Even an empty shared state: entries a node still holds from it go.)
                    t.shared |= sub == Sub::Shared;
                    self.applied.insert(sub, rev);
                }
                SubMsg::Events { sub, events } => {
                    if !self.subs.contains_key(&sub) {
                        continue;
                    }
                    self.contacted();
                    for (key, value, rev) in &events {
                        self.view.apply(&self.keys, key, value.as_deref(), *rev, &mut t);
                        self.applied.insert(sub, *rev);
                    }
                }
                SubMsg::Progress { sub, rev } => {
                    self.contacted();
                    self.applied.insert(sub, rev);
                }
                SubMsg::Compacted { sub } => {
                    self.bump_relists();
                    tracing::info!("cluster: the history of {} was compacted; reading it whole", self.prefix_of(sub));
                }
                SubMsg::Down { sub, error } => {
                    if self.subs.contains_key(&sub) {
                        self.failed(error)
                    }
                }
            }
        }
        let vnis: Vec<u32> =
            if t.nodes { self.view.endpoints.keys().copied().collect() } else { t.vnis.into_iter().collect() };
        if !vnis.is_empty() || t.shared {
            self.cache_dirty = true;
        }
        self.emit(vnis);
        if t.shared {
            self.emit_shared(self.applied.get(&Sub::Shared).copied().unwrap_or(0));
        }
    }

    /// Hands the switch the shared state, whole (it is small, and a node takes it in
    /// as one change).
    fn emit_shared(&mut self, revision: i64) {
        let entries = self.view.shared.iter().map(|(k, s)| (k.clone(), s.rec.clone())).collect();
        let _ = self.ops.send(vec![Op::Shared { revision, entries }]);
    }

    /// The keys the view holds under a watch's prefix.
    fn keys_under(&self, sub: Sub) -> Vec<String> {
        match sub {
            Sub::Nodes => self.view.nodes.keys().map(|n| self.keys.node(n)).collect(),
            Sub::Alive => self.view.alive.iter().map(|n| self.keys.alive(n)).collect(),
            Sub::Shared => self.view.shared.keys().map(|e| self.keys.shared_entry(e)).collect(),
            Sub::Vni(v) => self
                .view
                .endpoints
                .get(&v)
                .map(|m| m.keys().map(|(node, mac)| self.keys.endpoint(v, node, mac)).collect())
                .unwrap_or_default(),
        }
    }

    /// Tells the switch what changed in `vnis`.
    fn emit(&mut self, vnis: Vec<u32>) {
        let mut ops = Vec::new();
        for vni in vnis {
            let new = if self.view.endpoints.contains_key(&vni) { self.view.derive(vni) } else { Derived::default() };
            let old = self.derived.remove(&vni).unwrap_or_default();
            diff(vni, &old, &new, &mut ops);
            if new != Derived::default() {
                self.derived.insert(vni, new);
            }
        }
        if !ops.is_empty() {
            let _ = self.ops.send(ops);
        }
    }

    /// The store answered.
    fn contacted(&mut self) {
        self.contact = Some(Instant::now());
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.connected = true;
    }

    fn failed(&mut self, error: String) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if s.last_error.as_deref() != Some(error.as_str()) {
            tracing::warn!("cluster: {error}");
        }
        s.last_error = Some(error);
        s.connected = false;
    }

    fn bump_relists(&mut self) {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).relists += 1;
    }

    /// The networks this node has endpoint or identity keys in, as far as it knows.
    fn stored_vnis(&self) -> impl Iterator<Item = u32> + '_ {
        self.stored.keys().filter_map(|k| match self.keys.parse(k) {
            Some(super::keys::Key::Endpoint { vni, .. } | super::keys::Key::Identity { vni, .. }) => Some(vni),
            _ => None,
        })
    }

    pub(super) fn is_alive(&self, node: &str) -> bool {
        self.view.alive.contains(node)
    }

    /// This node's keys and what they should hold.
    fn wanted(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some((vtep, udp_port, mac)) = self.local.vtep.clone() else { return out };
        for ((vni, m), rec) in &self.local.endpoints {
            out.insert(self.keys.endpoint(*vni, &self.cfg.node, m), serde_json::to_string(rec).unwrap_or_default());
        }
        for ((vni, id), rec) in &self.local.identities {
            out.insert(self.keys.identity(*vni, id, &self.cfg.node), serde_json::to_string(rec).unwrap_or_default());
        }
        // The node record lists every network it still has keys in, those waiting to be
        // deleted too: after an outage, it finds them all again from here.
        let mut vnis: BTreeSet<u32> = self.local.endpoints.keys().map(|(v, _)| *v).collect();
        vnis.extend(self.local.identities.keys().map(|(v, _)| *v));
        vnis.extend(self.stored_vnis());
        let node = NodeRecord { vtep, udp_port, mac, boot: self.boot, vnis: vnis.into_iter().collect() };
        out.insert(self.keys.node(&self.cfg.node), serde_json::to_string(&node).unwrap_or_default());
        out
    }

    /// Writes what differs between `wanted` and `stored`: the node record first (so it
    /// lists any new network before keys appear there), then endpoint keys in
    /// transactions, then the node record again if its list shrank.
    async fn flush(&mut self) {
        if self.client.is_none() || !self.verified {
            return;
        }
        for _ in 0..2 {
            let want = self.wanted();
            let node_key = self.keys.node(&self.cfg.node);
            if let Some(v) = want.get(&node_key) {
                if self.stored.get(&node_key) != Some(v)
                    && !self.put_many(vec![(node_key.clone(), Some(v.clone()))]).await
                {
                    return;
                }
            }
            let mut ops: Vec<(String, Option<String>)> = want
                .iter()
                .filter(|(k, v)| **k != node_key && self.stored.get(*k) != Some(v))
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect();
            ops.extend(
                self.stored.keys().filter(|k| !want.contains_key(*k) && **k != node_key).map(|k| (k.clone(), None)),
            );
            if ops.is_empty() {
                if self.wanted().get(&node_key) == self.stored.get(&node_key) {
                    return;
                }
                continue;
            }
            while !ops.is_empty() {
                let rest = ops.split_off(ops.len().min(TXN_OPS));
                if !self.put_many(std::mem::replace(&mut ops, rest)).await {
                    return;
                }
            }
        }
    }

    /// One transaction of puts and deletes of this node's keys. False if it failed.
    async fn put_many(&mut self, ops: Vec<(String, Option<String>)>) -> bool {
        let Some(c) = self.client.as_ref() else { return false };
        let txn = Txn::new().and_then(
            ops.iter()
                .map(|(k, v)| match v {
                    Some(v) => TxnOp::put(k.as_str(), v.as_str(), None),
                    None => TxnOp::delete(k.as_str(), None),
                })
                .collect::<Vec<_>>(),
        );
        // Puts and deletes of this node's own keys: done twice, they mean the same.
        let written = retried(c, "writing this node's records", |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        });
        match written.await {
            Ok(_) => {
                self.contacted();
                for (k, v) in ops {
                    match v {
                        Some(v) => self.stored.insert(k, v),
                        None => self.stored.remove(&k),
                    };
                }
                self.cache_dirty = true;
                true
            }
            Err(e) => {
                self.failed(format!("writing this node's records: {e}"));
                self.verified = false;
                false
            }
        }
    }

    /// Connects, reads back this node's keys, keeps the liveness lease, writes what
    /// waits, saves the cache. Every half second.
    async fn maintain(&mut self) {
        if self.client.is_none() {
            let mut opts = ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(1))
                .with_timeout(CALL_TIMEOUT)
                .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
            if let Some(tls) = &self.cfg.tls {
                opts = opts.with_tls(tls.clone());
            }
            match Client::connect(&self.cfg.store, Some(opts)).await {
                Ok(c) => {
                    self.client = Some(c);
                    self.start_subs();
                }
                Err(e) => self.failed(format!("connecting to {}: {e}", self.cfg.store.join(","))),
            }
        }
        if self.client.is_some() && !self.verified {
            self.verify().await;
        }
        if self.client.is_some() && self.verified {
            self.keep_alive().await;
            self.flush().await;
        }
        if self.cache_dirty {
            self.save_cache();
        }
    }

    /// Reads back this node's keys in every network its node record (or its own
    /// memory) says it has keys in: `stored` becomes what the store really holds.
    async fn verify(&mut self) {
        let node_key = self.keys.node(&self.cfg.node);
        let mut vnis: BTreeSet<u32> = self
            .local
            .endpoints
            .keys()
            .map(|(v, _)| *v)
            .chain(self.local.identities.keys().map(|(v, _)| *v))
            .chain(self.stored_vnis())
            .collect();
        let Some(c) = self.client.as_mut() else { return };
        let rec = match read(c, &node_key, None).await {
            Ok(r) => r,
            Err(e) => return self.failed(format!("reading {node_key}: {e}")),
        };
        let mut stored = BTreeMap::new();
        if let Some(kv) = rec.kvs().first() {
            let value = String::from_utf8_lossy(kv.value()).into_owned();
            if let Ok(n) = serde_json::from_str::<NodeRecord>(&value) {
                // Another switch that is up under this name (its liveness key is its own
                // boot's, and its VTEP is not this one's): writing would undo each other.
                let alive = self.keys.alive(&self.cfg.node);
                let theirs = match read(c, &alive, None).await {
                    Ok(r) => r.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                    Err(e) => return self.failed(format!("reading {alive}: {e}")),
                };
                let other = theirs.is_some_and(|i| i != self.instance)
                    && self.local.vtep.as_ref().is_none_or(|v| v.0 != n.vtep);
                if other {
                    return self.failed(format!(
                        "node name {:?} is in use by another switch that is up (VTEP {}, started at {}): give \
                         this one its own --node; nothing of it is written until then",
                        self.cfg.node, n.vtep, n.boot
                    ));
                }
                vnis.extend(n.vnis);
            }
            stored.insert(node_key.clone(), value);
        }
        for vni in vnis {
            let prefix = self.keys.endpoints_of(vni, &self.cfg.node);
            match read(c, &prefix, Some(GetOptions::new().with_prefix())).await {
                Ok(r) => {
                    for kv in r.kvs() {
                        let k = String::from_utf8_lossy(kv.key()).into_owned();
                        stored.insert(k, String::from_utf8_lossy(kv.value()).into_owned());
                    }
                }
                Err(e) => return self.failed(format!("reading {prefix}: {e}")),
            }
            // (Keyed by workload first: this node's are picked out of the network's.)
            let prefix = self.keys.identities(vni);
            match read(c, &prefix, Some(GetOptions::new().with_prefix())).await {
                Ok(r) => {
                    for kv in r.kvs() {
                        let k = String::from_utf8_lossy(kv.key()).into_owned();
                        let own = matches!(self.keys.parse(&k), Some(super::keys::Key::Identity { node, .. }) if node == self.cfg.node);
                        if own {
                            stored.insert(k, String::from_utf8_lossy(kv.value()).into_owned());
                        }
                    }
                }
                Err(e) => return self.failed(format!("reading {prefix}: {e}")),
            }
        }
        self.contacted();
        self.stored = stored;
        self.verified = true;
        // Watches still waiting out a retry start over now.
        self.kick.notify_waiters();
        tracing::info!("cluster: the store answers; this node's {} keys read back", self.stored.len());
        self.flush().await;
    }

    /// Grants the liveness lease (and puts the liveness key) if there is none; keeps
    /// it alive; reads the store's revision for the lag.
    async fn keep_alive(&mut self) {
        let Some(c) = self.client.as_mut() else { return };
        if self.lease.is_none() {
            let alive = self.keys.alive(&self.cfg.node);
            let granted = async {
                let l = timed(c.lease_grant(ALIVE_TTL, None)).await?;
                let opts = PutOptions::new().with_lease(l.id());
                timed(c.put(alive.as_str(), self.instance.as_str(), Some(opts))).await?;
                let (keeper, stream) = timed(c.lease_keep_alive(l.id())).await?;
                Ok::<_, String>(Lease { id: l.id(), keeper, stream, kept: Instant::now() })
            }
            .await;
            match granted {
                Ok(l) => self.lease = Some(l),
                Err(e) => return self.failed(format!("keeping {alive} alive: {e}")),
            }
        }
        let Some(l) = self.lease.as_mut() else { return };
        if l.kept.elapsed() >= KEEPALIVE_EVERY {
            l.kept = Instant::now();
            let kept = async {
                l.keeper.keep_alive().await.map_err(|e| e.to_string())?;
                match tokio::time::timeout(CALL_TIMEOUT, l.stream.message()).await {
                    Ok(Ok(Some(r))) if r.ttl() > 0 => Ok(r.header().map(|h| h.revision())),
                    Ok(Ok(Some(_))) => Err("the lease expired".to_string()),
                    Ok(Ok(None)) => Err("the keep-alive stream ended".to_string()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
                }
            }
            .await;
            match kept {
                Ok(rev) => {
                    self.contacted();
                    if let Some(rev) = rev {
                        self.status.lock().unwrap_or_else(|e| e.into_inner()).store_revision = rev;
                    }
                }
                Err(e) => {
                    self.lease = None;
                    self.verified = false;
                    self.failed(format!("keeping this node's liveness lease: {e}"));
                }
            }
        }
    }

    fn cache(&self) -> Cache {
        let mut records = BTreeMap::new();
        for (n, s) in &self.view.nodes {
            records.insert(self.keys.node(n), (serde_json::to_string(&s.rec).unwrap_or_default(), s.rev));
        }
        for (vni, eps) in &self.view.endpoints {
            for ((node, mac), s) in eps {
                let k = self.keys.endpoint(*vni, node, mac);
                records.insert(k, (serde_json::to_string(&s.rec).unwrap_or_default(), s.rev));
            }
        }
        for (entry, s) in &self.view.shared {
            records.insert(self.keys.shared_entry(entry), (s.rec.clone(), s.rev));
        }
        let blocks = self
            .blocks
            .iter()
            .map(|((vni, net), b)| (*vni, net.to_string(), b.iter().map(|b| b.to_string()).collect()))
            .collect();
        Cache { records, stored: self.stored.clone(), blocks }
    }

    fn save_cache(&mut self) {
        self.cache_dirty = false;
        let (cache, path) = (self.cache(), self.cfg.cache.clone());
        tokio::task::spawn_blocking(move || cache.save(&path));
    }

    fn save_cache_now(&mut self) {
        self.cache().save(&self.cfg.cache);
    }

    fn report(&mut self) {
        let want = self.wanted();
        let mut pending: Vec<String> =
            want.iter().filter(|(k, v)| self.stored.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect();
        pending.extend(self.stored.keys().filter(|k| !want.contains_key(*k)).cloned());
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.node = self.cfg.node.clone();
        s.store = self.cfg.store.clone();
        s.prefix = self.cfg.prefix.clone();
        s.since_contact_ms = self.contact.map(|c| c.elapsed().as_millis() as u64);
        s.applied_revision = self.applied.values().copied().min().unwrap_or(0);
        s.lag_revisions = (s.store_revision - s.applied_revision).max(0);
        s.pending = pending.len();
        pending.truncate(10);
        s.pending_keys = pending;
        s.watched_vnis = self.local.vnis.iter().copied().collect();
        s.remote_macs = self.derived.values().map(|d| d.macs.len()).sum();
        s.undecodable = self.view.undecodable.len();
        s.blocks = self.blocks.iter().flat_map(|((vni, _), b)| b.iter().map(move |b| format!("{vni} {b}"))).collect();
        // Endpoints per node in one pass (a store may hold thousands of each).
        let mut per_node: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (node, _) in self.view.endpoints.values().flat_map(|m| m.keys()) {
            *per_node.entry(node.as_str()).or_default() += 1;
        }
        s.nodes = self
            .view
            .nodes
            .iter()
            .map(|(name, n)| NodeView {
                name: name.clone(),
                vtep: n.rec.vtep,
                alive: self.view.alive.contains(name),
                boot: n.rec.boot,
                endpoints: per_node.get(name.as_str()).copied().unwrap_or(0),
            })
            .collect();
    }
}
