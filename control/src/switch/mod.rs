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
    endpoints::Endpoints,
    feature::{Ctx, Feature, Handled},
    overlay::Overlay,
    ports::{Port, PortRef, Ports},
    qos::Qos,
    services::Services,
    sflow::Sflow,
    state::DesiredState,
    stats::CoreStats,
    store::{change::Change, StateError, Store},
    xconnect::Xconnects,
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
    pub(crate) xconnects: Xconnects,
    pub(crate) overlay: Overlay,
    pub(crate) acl: Acl,
    pub(crate) qos: Qos,
    pub(crate) sflow: Sflow,
    pub(crate) conntrack: Conntrack,
    pub(crate) endpoints: Endpoints,
    pub(crate) services: Services,
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
            conntrack: Conntrack::new(shared.clone(), sessions),
            ports: Ports::new(eal.workers.clone(), pool.clone(), shared.clone()),
            acl: Acl::new(shared.clone()),
            cores: CoreStats::new(n),
            eal,
            pool,
            shared,
            store,
            xconnects: Xconnects::default(),
            endpoints: Endpoints::default(),
            services: Services::default(),
            cni: Cni::default(),
            cluster: Cluster::default(),
            overlay: Overlay::default(),
            qos: Qos::default(),
            sflow: Sflow::default(),
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
        self.overlay.announce_vtep = true;
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

    /// Every feature beside the ports, in the order they compile. A new feature adds
    /// itself here (and to `features_ref`).
    /// (Connection tracking after the ACL: it reads the compiled rules' epochs.)
    /// (Endpoints after the overlay: they add to the FIB it compiled. Services after
    /// connection tracking: they use its table.)
    pub(crate) fn features(&mut self) -> [&mut dyn Feature; 10] {
        [
            &mut self.xconnects,
            &mut self.overlay,
            &mut self.acl,
            &mut self.qos,
            &mut self.sflow,
            &mut self.conntrack,
            &mut self.endpoints,
            &mut self.services,
            &mut self.cni,
            &mut self.cluster,
        ]
    }

    pub(crate) fn features_ref(&self) -> [&dyn Feature; 10] {
        [
            &self.xconnects,
            &self.overlay,
            &self.acl,
            &self.qos,
            &self.sflow,
            &self.conntrack,
            &self.endpoints,
            &self.services,
            &self.cni,
            &self.cluster,
        ]
    }

    /// The features that take their sections whole (`Feature::adopt`), after the others.
    fn adopt_all(&mut self, state: &DesiredState) -> Result<(), String> {
        let refs = self.ports.refs();
        let overlay = &self.overlay;
        let has_network = |v: u32| overlay.has_network(v);
        let ctx = Ctx { ports: &refs, has_network: &has_network, vtep_ip: overlay.vtep_ip(), shared: None };
        self.endpoints.adopt(state, &ctx)?;
        self.services.adopt(state, &ctx)?;
        self.cni.adopt(state, &ctx)?;
        self.cluster.adopt(state, &ctx)
    }

    /// Brings up what `state` describes, publishing once at the end so that every
    /// port starts forwarding with its cross-connect already in place. A port that
    /// fails stays in the desired state, marked failed, and the rest come up.
    pub async fn restore(&mut self, state: DesiredState) {
        self.overlay.restore(state.networks.clone(), state.vtep.clone(), state.fib.clone(), state.neighbours.clone());
        self.cni_restore_links(&state.attachments).await;
        for spec in state.ports.iter().cloned() {
            let run = self.ports.bring_up(&spec);
            match &run {
                Err(e) => tracing::error!("port {} could not be restored: {e}", spec.name),
                Ok(_) => tracing::info!("port {} restored ({})", spec.name, spec.devargs),
            }
            self.ports.list.push(Port { spec, run });
        }
        self.xconnects.list = state.xconnects.clone();
        let refs = self.ports.refs();
        let overlay = &self.overlay;
        if let Err(e) =
            self.acl.replace(state.acl.clone(), state.acl_defaults.clone(), &refs, &|v| overlay.has_network(v))
        {
            tracing::error!("the saved ACL rules could not be restored: {e}");
        }
        if let Err(e) = self.qos.replace(state.qos.clone(), &refs) {
            tracing::error!("the saved QoS could not be restored: {e}");
        }
        if let Err(e) = self.conntrack.replace(state.stateful.clone(), state.conntrack_timeouts.clone(), &refs) {
            tracing::error!("the saved connection-tracking settings could not be restored: {e}");
        }
        let agent = self.overlay.vtep_ip();
        if let Err(e) = self.sflow.replace(state.sflow.clone(), agent) {
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
        for f in self.features_ref() {
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
        if let Request::Overlay(r) = req {
            // The overlay is the one that knows networks and the VTEP.
            let ctx = Ctx { ports: &refs, has_network: &|_| false, vtep_ip: None, shared: Some(&self.shared) };
            let handled = self.overlay.handle(r, &ctx)?;
            return Ok(self.take(handled));
        }
        let overlay = &self.overlay;
        let has_network = |v: u32| overlay.has_network(v);
        let ctx =
            Ctx { ports: &refs, has_network: &has_network, vtep_ip: overlay.vtep_ip(), shared: Some(&self.shared) };
        let handled = match req {
            Request::Xconnect(r) => self.xconnects.handle(r, &ctx),
            Request::Overlay(_) => Err("internal: overlay requests are handled above".into()),
            Request::Acl(r) => self.acl.handle(r, &ctx),
            Request::Qos(r) => self.qos.handle(r, &ctx),
            Request::Sflow(r) => self.sflow.handle(r, &ctx),
            Request::Conntrack(r) => self.conntrack.handle(r, &ctx),
            Request::Endpoint(r) => self.endpoints.handle(r, &ctx),
            Request::Service(r) => {
                let vni = match &r {
                    ServiceRequest::ServiceAdd(s) if !s.vip.is_empty() => Some((s.vni, s.vip.starts_with('['))),
                    _ => None,
                };
                let mut handled = self.services.handle(r, &ctx)?;
                // Clients reach a VIP through their network's gateway: without one the
                // service is there, and nobody can use it.
                if let Some((vni, v6)) = vni {
                    let g = overlay.gateway_of(vni);
                    if (if v6 { g.v6 } else { g.v4.map(u128::from) }).is_none() {
                        let why = format!(
                            "network {vni} has no {} gateway: its VMs cannot reach the VIP until it has one (vswitchctl network add {vni} --gateway IP/LEN, or apply)",
                            if v6 { "IPv6" } else { "IPv4" }
                        );
                        let w = &mut handled.reply["warning"];
                        *w = serde_json::Value::String(match w.as_str() {
                            Some(first) => format!("{first}; {why}"),
                            None => why,
                        });
                    }
                }
                Ok(handled)
            }
            // The core's own: the life of ports, whole states, reads of everything.
            Request::Port(r) => return self.port_request(r),
            Request::Apply(r) => return self.apply_request(r).await,
            Request::Stats(r) => return self.stats_request(r),
            Request::Trace(r) => return self.trace_request(r),
            Request::Cni(r) => return self.cni_request(r).await,
            Request::Cluster(r) => return self.cluster_request(r),
            // The server hands captures to `capture_start`: their reply comes later.
            Request::Capture(_) => return Err("capture: not handled here (internal error)".into()),
        }?;
        Ok(self.take(handled))
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
                        std::net::IpAddr::V4(ip) => self.overlay.want(ip),
                        std::net::IpAddr::V6(ip) => self.overlay.want6(ip),
                    }
                    false
                } else if ev.unknown {
                    self.endpoints.unknown(&ev, now);
                    false
                } else if ev.ip != 0 {
                    self.endpoints.learn(&ev, &ports, now)
                } else {
                    self.overlay.learn(ev, &ports, now)
                };
            }
        }
        for ring in self.shared.punt.iter() {
            while let Some(p) = ring.pop() {
                let mut m = Meta::default();
                pipelines::parse::parse(p.bytes(), &mut m);
                if m.ethertype == ethernet::ETHERTYPE_IPV6 && m.l4 != 0 {
                    changed |= self.overlay.nd_advert(p.bytes(), m.l4 as usize, now);
                    continue;
                }
                if m.ethertype != ethernet::ETHERTYPE_ARP {
                    continue;
                }
                if let Some(a) = p.bytes().get(m.l3 as usize..).and_then(Arp::parse) {
                    changed |= self.overlay.arp_reply(&a, now);
                }
            }
        }
        self.sflow.drain(&self.shared);
        self.conntrack.drain(&ports, &|| self.acl.rule_of_slot());
        if self.capture.as_mut().is_some_and(|c| c.collect(&self.shared)) {
            self.capture_finish().await;
        }
        let requests = self.overlay.arp_due(&ports, now, &mut changed);
        let solicitations = self.overlay.nd_due(&ports, now, &mut changed);
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
        let questions = self.endpoints.questions_due(|vni| self.overlay.gateway_subnets(vni), now);
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
        if self.sflow.poll_due() {
            let counters = self.if_counters();
            self.sflow.poll(&counters);
        }
        let now = Instant::now();
        // (Both age, whichever says so.)
        if self.overlay.age(now) | self.endpoints.age(now) {
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
