//! The common core: the order of changes, their durability, publishing the tables to
//! the PMD cores, and waiting until every core has moved on (quiescence). What a change
//! means is its feature's (`crate::<feature>`); the core only sees `Feature`.
//!
//! One task owns the `Switch` and takes requests a batch at a time (every request
//! waiting when it looks): each is validated and applied in memory in order, then the
//! batch's journal records are synced in one write (group commit), the tables are
//! published once, and only then do the replies leave. A change whose record did not
//! reach the disk is taken back, with the rest of its batch, and refused.
mod apply;
mod audit;
pub(crate) mod features;
mod ports;
mod publish;
mod report;

use crate::{
    acl::Acl,
    api::*,
    capture::CaptureRun,
    cluster::Cluster,
    cni::Cni,
    conntrack::Conntrack,
    feature::{Ctx, Feature, Handled},
    ports::{Port, PortRef, Ports},
    state::DesiredState,
    stats::CoreStats,
    store::{change::Change, StateError, Store},
};
use dataplane::{eal::Eal, mempool::PktPool, pmd::Shared};
use pipelines::{
    wire::{arp::Arp, ethernet},
    Meta,
};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::sync::oneshot;

use audit::Audit;
pub use audit::{Peer, Verb};
use features::{Features, Routed};

/// A request or batch that holds the switch task this long is logged: every other
/// client waits meanwhile.
const SLOW: Duration = Duration::from_secs(1);

/// A request that was refused: the text the user sees.
pub type Refusal = String;
/// What a request gets back.
pub type Reply = Result<serde_json::Value, Refusal>;
/// A request, who sent it, and where its answer goes.
pub struct Job {
    pub request: Request,
    /// The verb as it was sent, for the audit trail.
    pub verb: Verb,
    pub peer: Peer,
    pub reply: oneshot::Sender<Response>,
}

pub struct Switch {
    pub(crate) eal: Eal,
    pub(crate) pool: Arc<PktPool>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) store: Store,
    pub(crate) ports: Ports,
    pub(crate) features: Features,
    pub(crate) cni: Cni,
    pub(crate) cluster: Cluster,
    pub(crate) capture: Option<CaptureRun>,
    pub(crate) cores: CoreStats,
    /// Ports this batch took out (with their place in the list): closed once the cores
    /// have moved on, or put back if the batch is taken back.
    pub(crate) closing: Vec<(usize, Port)>,
    /// The tables changed since the last publish.
    pub(crate) dirty: bool,
}

/// A request's reply, held until its batch is durable and published.
struct Held {
    reply: oneshot::Sender<Response>,
    result: Reply,
    /// It staged journal records (so it fails if they cannot be written).
    staged: bool,
    /// Logged with the answer, for a request that may change something.
    audit: Option<Audit>,
}

pub(crate) fn to_value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

impl Switch {
    pub fn new(eal: Eal, pool: Arc<PktPool>, shared: Arc<Shared>, store: Store) -> Switch {
        Self::with_sessions(eal, pool, shared, store, crate::conntrack::DEFAULT_SESSIONS)
    }

    /// A switch whose connection-tracking table holds `sessions`.
    pub fn with_sessions(eal: Eal, pool: Arc<PktPool>, shared: Arc<Shared>, store: Store, sessions: u32) -> Switch {
        let n = eal.workers.len();
        Switch {
            features: Features::new(Acl::new(shared.clone()), Conntrack::new(shared.clone(), sessions)),
            ports: Ports::new(eal.workers.clone(), pool.clone(), shared.clone()),
            cores: CoreStats::new(n),
            eal,
            pool,
            shared,
            store,
            cni: Cni::default(),
            cluster: Cluster::default(),
            capture: None,
            closing: Vec::new(),
            dirty: true,
        }
    }

    /// Joins the cluster: starts its agent (in the control plane's runtime). The
    /// switch takes the agent's changes from what this returns (`serve`).
    pub fn join_cluster(&mut self, cfg: crate::cluster::agent::Config) -> crate::cluster::Updates {
        let updates = self.cluster.start(cfg);
        // New addresses come from the blocks this node claims in the store.
        self.cni.blocks = Some(Default::default());
        self.features.overlay.announce_vtep = true;
        self.cluster_tell();
        updates
    }

    /// Leaves the cluster on a clean stop (see `Cluster::leave`).
    pub async fn leave_cluster(&mut self) {
        self.cluster.leave().await;
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Every feature beside the ports, in the order they compile: those that make the
    /// tables (`Features::all`, where a new one adds itself), then CNI and the cluster.
    pub(crate) fn every_feature(&mut self) -> [&mut dyn Feature; 10] {
        let [a, b, c, d, e, f, g, h] = self.features.all();
        [a, b, c, d, e, f, g, h, &mut self.cni, &mut self.cluster]
    }

    pub(crate) fn every_feature_ref(&self) -> [&dyn Feature; 10] {
        let [a, b, c, d, e, f, g, h] = self.features.all_ref();
        [a, b, c, d, e, f, g, h, &self.cni, &self.cluster]
    }

    /// The features that take their sections whole (`Feature::adopt`), after the others.
    fn adopt_all(&mut self, state: &DesiredState) -> Result<(), String> {
        let refs = self.ports.refs();
        let overlay = &self.features.overlay;
        let has_network = |v: u32| overlay.has_network(v);
        let ctx = Ctx { ports: &refs, has_network: &has_network, vtep_ip: overlay.vtep_ip(), shared: None };
        self.features.endpoints.adopt(state, &ctx)?;
        self.features.services.adopt(state, &ctx)?;
        self.cni.adopt(state, &ctx)?;
        self.cluster.adopt(state, &ctx)
    }

    /// Brings up what `state` describes, publishing once at the end so that every
    /// port starts forwarding with its cross-connect already in place. A port that
    /// fails stays in the desired state, marked failed, and the rest come up.
    pub async fn restore(&mut self, state: DesiredState) {
        self.features.overlay.restore(
            state.networks.clone(),
            state.vtep.clone(),
            state.fib.clone(),
            state.neighbours.clone(),
        );
        self.cni_restore_links(&state.attachments).await;
        for spec in state.ports.iter().cloned() {
            let run = self.ports.bring_up(&spec);
            match &run {
                Err(e) => tracing::error!("port {} could not be restored: {e}", spec.name),
                Ok(_) => tracing::info!("port {} restored ({})", spec.name, spec.devargs),
            }
            self.ports.list.push(Port { spec, run });
        }
        self.features.xconnects.list = state.xconnects.clone();
        let refs = self.ports.refs();
        let overlay = &self.features.overlay;
        if let Err(e) =
            self.features.acl.replace(state.acl.clone(), state.acl_defaults.clone(), &refs, &|v| overlay.has_network(v))
        {
            tracing::error!("the saved ACL rules could not be restored: {e}");
        }
        if let Err(e) = self.features.qos.replace(state.qos.clone(), &refs) {
            tracing::error!("the saved QoS could not be restored: {e}");
        }
        if let Err(e) = self.features.conntrack.replace(state.stateful.clone(), state.conntrack_timeouts.clone(), &refs)
        {
            tracing::error!("the saved connection-tracking settings could not be restored: {e}");
        }
        let agent = self.features.overlay.vtep_ip();
        if let Err(e) = self.features.sflow.replace(state.sflow.clone(), agent) {
            tracing::error!("the saved sFlow setting could not be restored: {e}");
        }
        if let Err(e) = self.adopt_all(&state) {
            tracing::error!("the saved state could not be restored whole: {e}");
        }
        self.publish().await;
        self.cluster_tell();
    }

    /// The desired state as the features hold it now.
    pub fn desired(&self) -> DesiredState {
        let mut out = DesiredState { ports: self.ports.specs(), ..DesiredState::new() };
        for f in self.every_feature_ref() {
            f.desired(&mut out);
        }
        out
    }

    /// Records `changes` for the next commit and marks the tables for publishing.
    pub(crate) fn changed(&mut self, changes: impl IntoIterator<Item = Change>) {
        self.store.stage(changes);
        self.dirty = true;
    }

    /// Applies one request in memory: validated, its journal records staged. Durable
    /// and published only once its batch settles.
    pub async fn handle(&mut self, mut req: Request) -> Reply {
        self.cluster_guard(&mut req)?;
        let refs = self.ports.refs();
        let others: &mut [&mut dyn Feature] = &mut [&mut self.cni, &mut self.cluster];
        let req = match self.features.handle(req, &refs, Some(&self.shared), others) {
            Routed::Handled(handled) => return Ok(self.take(handled?)),
            Routed::Elsewhere(req) => *req,
        };
        match req {
            // The core's own: the life of ports, whole states, reads of everything.
            Request::Port(r) => self.port_request(r),
            Request::Apply(r) => self.apply_request(r).await,
            Request::Stats(r) => self.stats_request(r),
            Request::Trace(r) => self.trace_request(r),
            Request::Cni(r) => self.cni_request(r).await,
            Request::Cluster(r) => self.cluster_request(r),
            // The server hands captures to `capture_start`: their reply comes later.
            Request::Capture(_) => Err("capture: not handled here (internal error)".into()),
            _ => Err("internal: a feature's request reached the core".into()),
        }
    }

    /// Stages what a handler changed; its reply.
    fn take(&mut self, handled: Handled) -> serde_json::Value {
        let Handled { reply, changes, publish } = handled;
        self.store.stage(changes);
        self.dirty |= publish;
        reply
    }

    /// Takes a batch of requests (see the module's text).
    pub async fn run_batch(&mut self, jobs: Vec<Job>) {
        let mut held = Vec::with_capacity(jobs.len());
        for Job { request: req, verb, peer, reply } in jobs {
            if let Request::Capture(CaptureRequest::Capture(spec)) = req {
                self.settle(&mut held).await;
                // Answered when the capture ends, from poll_cores.
                self.capture_start(spec, reply).await;
                continue;
            }
            let audit = Audit::of(verb, &peer);
            if let Request::Cluster(r) = req {
                // Writes of the shared state: answered by the agent once the store has them.
                let reply = match audit {
                    Some(a) => a.follow(reply),
                    None => reply,
                };
                self.cluster_write(r, reply);
                continue;
            }
            if matches!(req, Request::Apply(ApplyRequest::Apply { .. })) {
                // A whole new state is written as a snapshot: what came before goes first.
                self.settle(&mut held).await;
            }
            let before = self.store.staged_len();
            let start = Instant::now();
            let result = self.handle(req).await;
            if start.elapsed() > SLOW {
                tracing::warn!(
                    "{} took {:?} to handle: every other request waited for it",
                    audit.as_ref().map_or("a read", |a| a.cmd()),
                    start.elapsed()
                );
            }
            let staged = self.store.staged_len() > before;
            let audit = audit.map(|mut a| {
                if staged {
                    a.changes = self.store.staged_summary(before);
                }
                a
            });
            held.push(Held { reply, result, staged, audit });
        }
        self.settle(&mut held).await;
    }

    /// Makes the held requests' changes durable, publishes them, then answers. The
    /// tables are compiled while the journal write is on the disk; they reach the cores
    /// only once it is there.
    async fn settle(&mut self, held: &mut Vec<Held>) {
        let start = Instant::now();
        let written = match self.store.prepare() {
            Ok(Some(append)) => {
                let write = tokio::task::spawn_blocking(move || {
                    let r = append.write();
                    (append, r)
                });
                let snap = self.dirty.then(|| self.compile());
                let done = match write.await {
                    Ok((append, r)) => self.store.finish(append, r),
                    Err(e) => Err(StateError::Journal {
                        path: self.store.journal_path().to_path_buf(),
                        err: std::io::Error::other(e),
                    }),
                };
                done.map(|()| snap)
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        let committed = start.elapsed();
        match written {
            Ok(Some(snap)) => self.install(snap).await,
            Ok(None) if self.dirty => self.publish().await,
            Ok(None) => {}
            Err(e) => {
                tracing::error!("{e}");
                self.take_back().await;
                for h in held.iter_mut().filter(|h| h.staged && h.result.is_ok()) {
                    h.result = Err(e.to_string());
                }
                self.publish().await;
            }
        }
        let published = start.elapsed() - committed;
        if committed > SLOW || published > SLOW {
            tracing::warn!(
                "a batch of {} requests took {committed:?} to reach the journal and {published:?} to reach the cores",
                held.len()
            );
        }
        tracing::debug!("batch of {}: commit {committed:?}, then publish and quiescence {published:?}", held.len());
        // No core sees the ports that left any more. A kernel port's sockets take an
        // RCU grace period each to close: that happens on a blocking thread, not here.
        for (_, p) in self.closing.drain(..) {
            match p.run {
                Ok(crate::ports::Running { dev: crate::ports::device::Device::Kernel(k), .. }) => {
                    tokio::task::spawn_blocking(move || drop(k));
                }
                other => drop(other),
            }
        }
        self.cluster_tell();
        for h in held.drain(..) {
            let response = match h.result {
                Ok(v) => Response::ok(v),
                Err(e) => Response::err(e),
            };
            if let Some(a) = &h.audit {
                a.log(&response);
            }
            let _ = h.reply.send(response);
        }
        // The batch is durable and answered; folding the journal into the snapshot can
        // wait until then.
        if self.store.wants_compaction() {
            let (state, start) = (self.desired(), Instant::now());
            if let Err(e) = self.store.compact(&state) {
                tracing::error!(
                    "journal compaction failed (the journal keeps growing; changes are still durable): {e}"
                );
            }
            if start.elapsed() > SLOW {
                tracing::warn!(
                    "journal compaction took {:?}: changes waited for it; the disk under the state file is slow or busy",
                    start.elapsed()
                );
            }
        }
    }

    /// Returns the switch to what the files hold: a batch whose records could not be
    /// written never happened.
    async fn take_back(&mut self) {
        self.store.discard_staged();
        for (i, p) in self.closing.drain(..).rev() {
            let i = i.min(self.ports.list.len());
            self.ports.list.insert(i, p);
        }
        match crate::store::Store::load(self.store.path()) {
            Ok(durable) => {
                if let Err(e) = self.reconcile(durable).await {
                    tracing::error!("could not return to the durable state: {e}");
                }
            }
            Err(e) => tracing::error!("could not read back the durable state: {e}"),
        }
        self.dirty = true;
    }

    /// Takes in what the cores handed over (learn events, ARP replies, samples), sends
    /// due ARP requests, and publishes if the tables changed. Called every few ms.
    pub async fn poll_cores(&mut self) {
        let now = Instant::now();
        let ports = self.ports.refs();
        let mut changed = false;
        for ring in self.shared.learn.iter() {
            while let Some(ev) = ring.pop() {
                changed |= if ev.unknown && ev.vni == pipelines::learn::UNDERLAY {
                    match pipelines::meta::ip_addr(ev.ip) {
                        std::net::IpAddr::V4(ip) => self.features.overlay.want(ip),
                        std::net::IpAddr::V6(ip) => self.features.overlay.want6(ip),
                    }
                    false
                } else if ev.unknown {
                    self.features.endpoints.unknown(&ev, now);
                    false
                } else if ev.ip != 0 {
                    self.features.endpoints.learn(&ev, &ports, now)
                } else {
                    self.features.overlay.learn(ev, &ports, now)
                };
            }
        }
        for ring in self.shared.punt.iter() {
            while let Some(p) = ring.pop() {
                let mut m = Meta::default();
                pipelines::parse::parse(p.bytes(), &mut m);
                if m.ethertype == ethernet::ETHERTYPE_IPV6 && m.l4 != 0 {
                    changed |= self.features.overlay.nd_advert(p.bytes(), m.l4 as usize, now);
                    continue;
                }
                if m.ethertype != ethernet::ETHERTYPE_ARP {
                    continue;
                }
                if let Some(a) = p.bytes().get(m.l3 as usize..).and_then(Arp::parse) {
                    changed |= self.features.overlay.arp_reply(&a, now);
                }
            }
        }
        self.features.sflow.drain(&self.shared);
        self.features.conntrack.drain(&ports, &|| self.features.acl.rule_of_slot());
        if self.capture.as_mut().is_some_and(|c| c.collect(&self.shared)) {
            self.capture_finish().await;
        }
        let requests = self.features.overlay.arp_due(&ports, now, &mut changed);
        let solicitations = self.features.overlay.nd_due(&ports, now, &mut changed);
        if let Some(uplink) = ports.iter().find(|p| p.role == Some(PortRole::Uplink)).and_then(|p| p.id) {
            let frames = requests.iter().map(|f| &f[..]).chain(solicitations.iter().map(|f| &f[..]));
            for frame in frames {
                if !self.shared.transmit(uplink, frame) {
                    tracing::warn!(
                        "could not queue an ARP request or neighbour solicitation (no mbuf or the ring is full)"
                    );
                }
            }
        }
        let questions = self.features.endpoints.questions_due(|vni| self.features.overlay.gateway_subnets(vni), now);
        for (vni, frame) in &questions {
            for p in ports.iter().filter(|p| p.role == Some(PortRole::Vm) && p.vni == Some(*vni)) {
                if p.id.is_some_and(|id| !self.shared.transmit(id, frame)) {
                    tracing::warn!("could not queue the gateway's question (no mbuf or the ring is full)");
                }
            }
        }
        if changed {
            self.publish().await;
        }
    }

    /// Once a second: core activity rates, counter samples, ageing of learned MACs.
    pub async fn tick_second(&mut self) {
        self.cores.tick(&self.shared);
        if self.features.sflow.poll_due() {
            let counters = self.if_counters();
            self.features.sflow.poll(&counters);
        }
        let now = Instant::now();
        // (Both age, whichever says so.)
        if self.features.overlay.age(now) | self.features.endpoints.age(now) {
            self.publish().await;
        }
        self.cluster_retry().await;
    }

    /// Stops and detaches every port. The PMD cores must already have stopped.
    pub fn close_ports(&mut self) {
        // The last snapshot holds the kernel ports too; with the cores stopped nothing
        // reads it, and the ports must close before EAL's cleanup frees their mbufs' pool.
        self.shared.rcu.publish(dataplane::snapshot::Snapshot::empty(self.shared.rcu.cores()));
        for p in self.ports.list.drain(..).rev() {
            if p.run.is_ok() {
                tracing::info!("closing port {}", p.spec.name);
            }
        }
    }

    /// Refs of every port, for a feature's handler.
    pub(crate) fn refs(&self) -> Vec<PortRef> {
        self.ports.refs()
    }
}
