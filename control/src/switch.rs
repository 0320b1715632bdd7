//! The running switch as the control plane sees it: the desired state, the ports it
//! made real, and the snapshots it publishes to the PMD cores.
//!
//! One task owns a `Switch` and applies requests one at a time, so changes are
//! totally ordered: each is applied, published, waited on (quiescence) and written
//! to disk before its reply.
use crate::{
    acl::Acls,
    api::*,
    apply,
    overlay::{Overlay, PortRef},
    state::{DesiredState, Store, Xconnect},
    validate,
};
use dataplane::{
    eal::Eal,
    mempool::PktPool,
    pmd::Shared,
    port::{EthPort, PortConf, PortInfo},
    snapshot::{Role, RxQueue, Snapshot},
    stats::PortTotals,
    MAX_PORTS,
};
use pipelines::{
    wire::{arp::Arp, ethernet, Mac},
    DropReason, Meta,
};
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

/// Descriptors per rx and tx queue.
const RX_DESC: u16 = 1024;
const TX_DESC: u16 = 1024;
/// How long a core may take to pass a quiescent point before we call it stuck.
const QUIESCE_TIMEOUT: Duration = Duration::from_secs(5);

/// A port the switch made real.
struct Running {
    eth: EthPort,
    info: PortInfo,
    /// (rx queue, core index).
    rxq: Vec<(u16, usize)>,
    /// Counters of the port id when this port took it: a reused id starts at zero.
    baseline: PortTotals,
}

/// A port of the desired state: running, or failed (at restore) with the reason.
struct Port {
    spec: PortSpec,
    run: Result<Running, String>,
}

/// Core activity between two samples, for "busy %" and "cycles/packet" now rather
/// than since start.
#[derive(Clone, Copy, Default)]
struct CoreSample {
    busy: u64,
    idle: u64,
    packets: u64,
}

pub struct Switch {
    eal: Eal,
    pool: Arc<PktPool>,
    shared: Arc<Shared>,
    store: Store,
    /// In the order added.
    ports: Vec<Port>,
    xconnects: Vec<Xconnect>,
    overlay: Overlay,
    acls: Acls,
    /// The compiled ACLs, rebuilt only when rules, defaults or ports change.
    acl_tables: Arc<pipelines::acl::AclTables>,
    acl_dirty: bool,
    /// Hits of each rule id when it got its counter slot (a reused slot starts at zero).
    acl_baseline: std::collections::HashMap<u32, u64>,
    qos: crate::qos::Qos,
    sflow: Option<SflowRuntime>,
    sflow_stats: SflowView,
    last_sample: Vec<CoreSample>,
    rate: Vec<CoreSample>,
    latency: crate::latency::LatencyWindows,
    capture: Option<crate::capture::CaptureRun>,
}

/// sFlow export as running: where to send, the agent, the sockets.
struct SflowRuntime {
    spec: SflowSpec,
    collectors: Vec<Collector>,
    agent: crate::sflow::Agent,
    last_poll: Instant,
}

/// One collector: a connected, non-blocking socket, so the kernel tells us when the
/// collector refuses (ICMP port unreachable) and we can stop provoking more of those.
struct Collector {
    addr: std::net::SocketAddr,
    sock: Option<std::net::UdpSocket>,
    /// Refused recently: datagrams for it are dropped until then.
    quiet_until: Option<Instant>,
}

/// How long a collector that refused is left alone.
const COLLECTOR_BACKOFF: Duration = Duration::from_secs(1);

impl SflowRuntime {
    fn new(spec: SflowSpec, agent: std::net::IpAddr) -> Result<SflowRuntime, String> {
        let collectors = crate::sflow::validate(&spec)?
            .into_iter()
            .map(|addr| {
                let bind = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                let sock = std::net::UdpSocket::bind(bind)
                    .ok()
                    .filter(|s| s.set_nonblocking(true).is_ok() && s.connect(addr).is_ok());
                Collector { addr, sock, quiet_until: None }
            })
            .collect();
        Ok(SflowRuntime { spec, collectors, agent: crate::sflow::Agent::new(agent, 0), last_poll: Instant::now() })
    }

    /// Sends what is pending to every collector. Sockets never block; a collector that
    /// is down costs only its datagrams (and, once it refuses, a second of silence).
    fn flush(&mut self, stats: &mut SflowView) {
        let datagrams = self.agent.datagrams();
        if datagrams.is_empty() {
            return;
        }
        let now = Instant::now();
        for c in &mut self.collectors {
            if c.quiet_until.is_some_and(|t| now < t) {
                stats.send_errors += datagrams.len() as u64;
                continue;
            }
            c.quiet_until = None;
            for d in &datagrams {
                match c.sock.as_ref().map(|s| s.send(d)) {
                    Some(Ok(_)) => stats.datagrams += 1,
                    Some(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        stats.send_errors += 1;
                        c.quiet_until = Some(now + COLLECTOR_BACKOFF);
                        tracing::debug!("sFlow collector {} refused; pausing it", c.addr);
                        break;
                    }
                    _ => stats.send_errors += 1,
                }
            }
        }
    }
}

/// A request that was refused: the text the user sees.
pub type Refusal = String;

impl Switch {
    pub fn new(eal: Eal, pool: Arc<PktPool>, shared: Arc<Shared>, store: Store) -> Switch {
        let n = eal.workers.len();
        Switch {
            eal,
            pool,
            shared,
            store,
            ports: Vec::new(),
            xconnects: Vec::new(),
            overlay: Overlay::default(),
            acls: Acls::default(),
            acl_tables: Arc::default(),
            acl_dirty: true,
            acl_baseline: Default::default(),
            qos: Default::default(),
            sflow: None,
            sflow_stats: SflowView::default(),
            last_sample: vec![CoreSample::default(); n],
            rate: vec![CoreSample::default(); n],
            latency: Default::default(),
            capture: None,
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Brings up what `state` describes, publishing once at the end so that every
    /// port starts forwarding with its cross-connect already in place. A port that
    /// fails stays in the desired state, marked failed, and the rest come up.
    pub async fn restore(&mut self, state: DesiredState) {
        self.overlay.restore(state.networks, state.vtep, state.fib, state.neighbours);
        for spec in state.ports {
            let run = self.bring_up(&spec);
            if let Err(e) = &run {
                tracing::error!("port {} could not be restored: {e}", spec.name);
            } else {
                tracing::info!("port {} restored ({})", spec.name, spec.devargs);
            }
            self.ports.push(Port { spec, run });
        }
        self.xconnects = state.xconnects;
        let refs = self.port_refs();
        let overlay = &self.overlay;
        if let Err(e) = self.acls.replace(state.acl, &refs, &|v| overlay.has_network(v)) {
            tracing::error!("the saved ACL rules could not be restored: {e}");
        }
        self.acls.restore_defaults(state.acl_defaults);
        self.rebase_acl_counters();
        if let Err(e) = self.qos.replace(state.qos, &refs) {
            tracing::error!("the saved QoS could not be restored: {e}");
        }
        if let Some(spec) = state.sflow {
            if let Err(e) = self.sflow_start(spec) {
                tracing::error!("the saved sFlow setting could not be restored: {e}");
            }
        }
        self.publish().await;
    }

    /// The agent address: as configured, else the VTEP's IP.
    fn sflow_agent(&self, spec: &SflowSpec) -> std::net::IpAddr {
        spec.agent.unwrap_or_else(|| {
            self.overlay
                .vtep_view(&self.port_refs())
                .and_then(|v| v.ip.split('/').next().and_then(|a| a.parse().ok()))
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
        })
    }

    fn sflow_start(&mut self, spec: SflowSpec) -> Result<(), String> {
        let agent = self.sflow_agent(&spec);
        self.sflow = Some(SflowRuntime::new(spec, agent)?);
        Ok(())
    }

    async fn sflow_change(&mut self, req: Request) -> Result<(), Refusal> {
        let before = self.sflow.as_ref().map(|s| s.spec.clone());
        match req {
            Request::SflowSet(spec) => self.sflow_start(spec)?,
            Request::SflowOff => self.sflow = None,
            other => return Err(format!("internal: {other:?} is not an sFlow change")),
        }
        if let Err(e) = self.save() {
            self.sflow = None;
            if let Some(spec) = before {
                let _ = self.sflow_start(spec);
            }
            return Err(e);
        }
        self.publish().await;
        Ok(())
    }

    fn sflow_view(&self) -> SflowView {
        SflowView {
            config: self.sflow.as_ref().map(|s| s.spec.clone()),
            agent: self.sflow.as_ref().map(|s| s.agent.address),
            samples_lost: self.shared.counters.iter().flat_map(|c| c.ports.iter()).map(|p| p.sflow_drops.get()).sum(),
            ..self.sflow_stats.clone()
        }
    }

    /// Takes the cores' samples and encodes them (or drops them if export is off).
    fn sflow_drain(&mut self) {
        // The input port's totals over every core, read only when a sample is there.
        let counters = &self.shared.counters;
        let totals = |id: u16| -> (u32, u32) {
            let i = id as usize;
            let pool: u64 = counters.iter().map(|c| c.ports[i].sflow_pool.get()).sum();
            let drops: u64 = counters.iter().map(|c| c.ports[i].sflow_drops.get()).sum();
            (pool as u32, drops as u32)
        };
        for ring in self.shared.sflow.iter() {
            while let Some(s) = ring.pop() {
                let Some(rt) = self.sflow.as_mut() else { continue };
                let (pool, drops) = totals(s.input);
                rt.agent.flow(&s, s.input as u32 + 1, s.output, pool, drops);
                self.sflow_stats.flow_samples += 1;
            }
        }
        if let Some(rt) = self.sflow.as_mut() {
            rt.flush(&mut self.sflow_stats);
        }
    }

    /// Counter samples of every running port, once per polling interval.
    fn sflow_poll(&mut self) {
        let Some(rt) = self.sflow.as_ref() else { return };
        let interval = rt.spec.polling.unwrap_or(20);
        if interval == 0 || rt.last_poll.elapsed() < Duration::from_secs(interval as u64) {
            return;
        }
        let Ok(stats) = self.port_stats(None) else { return };
        let mut samples = Vec::new();
        for (p, st) in self.ports.iter().zip(&stats) {
            let Ok(r) = &p.run else { continue };
            let link = r.eth.link();
            let tx_full = st.drops.get("tx_full").copied().unwrap_or(0);
            samples.push(crate::sflow::IfCounters {
                if_index: r.eth.id as u32 + 1,
                speed_bps: link.speed_mbps as u64 * 1_000_000,
                up: link.up,
                in_octets: st.rx_bytes,
                in_packets: st.rx_packets,
                in_discards: st.drops.values().sum::<u64>() - tx_full + st.rx_missed,
                in_errors: st.rx_errors,
                out_octets: st.tx_bytes,
                out_packets: st.tx_packets,
                out_discards: tx_full,
                out_errors: st.tx_errors,
            });
        }
        let Some(rt) = self.sflow.as_mut() else { return };
        rt.last_poll = Instant::now();
        for c in &samples {
            rt.agent.counters(c);
            self.sflow_stats.counter_samples += 1;
        }
        rt.flush(&mut self.sflow_stats);
    }

    /// Applies a QoS request: validated, saved, published.
    async fn qos_change(&mut self, req: Request) -> Result<(), Refusal> {
        let refs = self.port_refs();
        let before = self.qos.specs(None);
        match req {
            Request::QosSet(spec) => self.qos.set(spec, &refs)?,
            Request::QosClear { port } => self.qos.clear(&port)?,
            other => return Err(format!("internal: {other:?} is not a QoS change")),
        }
        if let Err(e) = self.save() {
            let _ = self.qos.replace(before, &refs);
            return Err(e);
        }
        self.publish().await;
        Ok(())
    }

    /// Hits per rule slot, summed over cores.
    fn acl_hits(&self, slot: u32) -> u64 {
        self.shared.counters.iter().map(|c| c.acl_hits.get(slot as usize).map_or(0, |x| x.get())).sum()
    }

    /// Takes a baseline for every rule id that has none (new rules, reused slots).
    fn rebase_acl_counters(&mut self) {
        let rules = self.acls.list(None, None);
        let live: std::collections::HashSet<u32> = rules.iter().filter_map(|(r, _)| r.id).collect();
        self.acl_baseline.retain(|id, _| live.contains(id));
        for (r, slot) in rules {
            if let Some(id) = r.id {
                if !self.acl_baseline.contains_key(&id) {
                    let base = self.acl_hits(slot);
                    self.acl_baseline.insert(id, base);
                }
            }
        }
        self.acl_dirty = true;
    }

    /// Applies an ACL request: validated, saved, published; refused ones change nothing.
    async fn acl_change(&mut self, req: Request) -> Result<serde_json::Value, Refusal> {
        let refs = self.port_refs();
        let before = self.acls.specs();
        let before_defaults = self.acls.defaults();
        let overlay = &self.overlay;
        let has_network = |v: u32| overlay.has_network(v);
        let result = match req {
            Request::AclAdd(spec) => self.acls.add(spec, &refs, &has_network).map(|id| serde_json::json!({ "id": id })),
            Request::AclDel { id } => self.acls.del(id).map(|()| serde_json::Value::Null),
            Request::AclLoad { rules } => {
                let n = rules.len();
                self.acls.replace(rules, &refs, &has_network).map(|()| serde_json::json!({ "rules": n }))
            }
            Request::AclDefault { port, action } => {
                self.acls.set_default(&port, action, &refs).map(|()| serde_json::Value::Null)
            }
            other => Err(format!("internal: {other:?} is not an ACL change")),
        };
        let reply = result?;
        if let Err(e) = self.save() {
            let overlay = &self.overlay;
            let _ = self.acls.replace(before, &refs, &|v| overlay.has_network(v));
            self.acls.restore_defaults(before_defaults);
            return Err(e);
        }
        self.rebase_acl_counters();
        self.publish().await;
        Ok(reply)
    }

    fn acl_list(&self, port: Option<&str>, vni: Option<u32>) -> Vec<AclRuleView> {
        self.acls
            .list(port, vni)
            .into_iter()
            .map(|(rule, slot)| {
                let base = rule.id.and_then(|id| self.acl_baseline.get(&id)).copied().unwrap_or(0);
                AclRuleView { hits: self.acl_hits(slot).saturating_sub(base), rule }
            })
            .collect()
    }

    /// Applies one request. Changes are durable before this returns Ok.
    pub async fn handle(&mut self, req: Request) -> Result<serde_json::Value, Refusal> {
        let reply = match req {
            Request::PortAdd(spec) => self.port_add(spec).await.map(|v| to_value(&v)),
            Request::PortDel { name } => self.port_del(&name).await.map(|()| serde_json::Value::Null),
            Request::PortList => Ok(to_value(&self.port_views())),
            Request::PortStats { name } => self.port_stats(name.as_deref()).map(|v| to_value(&v)),
            Request::XconnectAdd { a, b } => self.xconnect_add(a, b).await.map(|()| serde_json::Value::Null),
            Request::XconnectDel { a } => self.xconnect_del(&a).await.map(|()| serde_json::Value::Null),
            Request::NetworkList => Ok(to_value(&self.overlay.network_views(&self.port_refs()))),
            Request::VtepShow => Ok(to_value(&self.overlay.vtep_view(&self.port_refs()))),
            Request::NeighList => Ok(to_value(&self.overlay.neigh_views(Instant::now()))),
            Request::FibList { vni } => Ok(to_value(&self.overlay.fib_views(vni, &self.port_refs(), Instant::now()))),
            Request::Dump => Ok(to_value(&self.desired())),
            Request::AclList { port, vni } => Ok(to_value(&self.acl_list(port.as_deref(), vni))),
            Request::QosShow { port } => Ok(to_value(&self.qos.specs(port.as_deref()))),
            Request::SflowShow => Ok(to_value(&self.sflow_view())),
            Request::SflowSet(_) | Request::SflowOff => self.sflow_change(req).await.map(|()| serde_json::Value::Null),
            Request::QosSet(_) | Request::QosClear { .. } => {
                self.qos_change(req).await.map(|()| serde_json::Value::Null)
            }
            Request::AclAdd(_) | Request::AclDel { .. } | Request::AclLoad { .. } | Request::AclDefault { .. } => {
                self.acl_change(req).await
            }
            Request::Trace { port, packet } => self.trace(&port, &packet).map(|v| to_value(&v)),
            Request::Apply { state, dry_run } => self.apply(state, dry_run).await.map(|r| to_value(&r)),
            Request::Show => Ok(to_value(&self.show())),
            Request::Stats => Ok(to_value(&StatsView {
                ports: self.port_stats(None)?,
                cores: self.core_views(),
                mempool: self.mempool(),
            })),
            Request::Cores => Ok(to_value(&self.core_views())),
            // The server hands captures to `capture_start`: their reply comes later.
            Request::Capture(_) => Err("capture: not handled here (internal error)".into()),
            change => self.overlay_change(change).await.map(|()| serde_json::Value::Null),
        }?;
        Ok(reply)
    }

    fn find(&self, name: &str) -> Option<&Port> {
        self.ports.iter().find(|p| p.spec.name == name)
    }

    fn must_find(&self, field: &str, name: &str) -> Result<&Port, Refusal> {
        self.find(name).ok_or_else(|| format!("{field}: no port named {name:?} (vswitchctl port list shows the ports)"))
    }

    fn desired(&self) -> DesiredState {
        let (networks, vtep, fib, neighbours) = self.overlay.desired();
        DesiredState {
            ports: self.ports.iter().map(|p| p.spec.clone()).collect(),
            xconnects: self.xconnects.clone(),
            networks,
            vtep,
            fib,
            neighbours,
            acl: self.acls.specs(),
            acl_defaults: self.acls.defaults(),
            qos: self.qos.specs(None),
            sflow: self.sflow.as_ref().map(|s| s.spec.clone()),
            ..DesiredState::new()
        }
    }

    /// Reconciles the switch to `state`, all or nothing: everything is validated and
    /// every new device attached before anything changes; then the state is saved and
    /// published as one snapshot, and only after every core has moved on are the
    /// devices that left closed.
    async fn apply(&mut self, state: DesiredState, dry_run: bool) -> Result<ApplyReport, Refusal> {
        let (norm, overlay) = apply::validate_state(&state, &self.eal.workers)?;
        let changes = apply::diff(&self.desired(), &norm);
        if dry_run || changes.is_empty() {
            return Ok(ApplyReport { changes, applied: false });
        }
        // Each port of the new state either carries over (same device settings) or is new.
        let carried: Vec<Option<usize>> = norm
            .ports
            .iter()
            .map(|spec| {
                self.ports.iter().position(|p| p.spec.name == spec.name && !apply::needs_new_device(&p.spec, spec))
            })
            .collect();
        for (spec, c) in norm.ports.iter().zip(&carried) {
            if c.is_some() {
                continue;
            }
            let device = dataplane::port::device_name(&spec.devargs).unwrap_or_default();
            if let Some(holder) = self.ports.iter().enumerate().find(|(i, p)| {
                !carried.contains(&Some(*i)) && dataplane::port::device_name(&p.spec.devargs).is_ok_and(|d| d == device)
            }) {
                return Err(format!(
                    "ports ({}): device {device:?} is held by port {:?}, which this apply removes or changes; \
                     a device cannot be swapped in one step: apply once without the port, then with it",
                    spec.name, holder.1.spec.name
                ));
            }
        }
        let mut fresh = Vec::new();
        for (spec, c) in norm.ports.iter().zip(&carried) {
            if c.is_none() {
                let run =
                    self.bring_up(spec).map_err(|e| format!("ports ({}): {e}; nothing was changed", spec.name))?;
                fresh.push(Port { spec: spec.clone(), run: Ok(run) });
            }
        }
        // Not durable, not done: the new devices are dropped (never published) on failure.
        self.store.save(&norm).map_err(|e| e.to_string())?;
        let mut old: Vec<Option<Port>> = self.ports.drain(..).map(Some).collect();
        let mut fresh = fresh.into_iter();
        for (spec, c) in norm.ports.iter().zip(carried) {
            let port = match c.and_then(|i| old[i].take()) {
                Some(mut p) => {
                    if (p.spec.role, p.spec.vni) != (spec.role, spec.vni) {
                        // What was learned on it belongs to its old network.
                        if let Ok(r) = &p.run {
                            self.overlay.port_removed(r.eth.id);
                        }
                    }
                    p.spec = spec.clone();
                    p
                }
                None => fresh.next().expect("one fresh port per new spec"),
            };
            self.ports.push(port);
        }
        let removed: Vec<Port> = old.into_iter().flatten().collect();
        for p in &removed {
            if let Ok(r) = &p.run {
                self.overlay.port_removed(r.eth.id);
            }
        }
        self.xconnects = norm.xconnects;
        self.overlay.adopt_config(overlay);
        let refs = self.port_refs();
        let ov = &self.overlay;
        if let Err(e) = self.acls.replace(norm.acl, &refs, &|v| ov.has_network(v)) {
            tracing::error!("internal: validated ACL rules did not apply: {e}");
        }
        self.acls.restore_defaults(norm.acl_defaults);
        self.rebase_acl_counters();
        if let Err(e) = self.qos.replace(norm.qos, &refs) {
            tracing::error!("internal: validated QoS did not apply: {e}");
        }
        if self.sflow.as_ref().map(|s| &s.spec) != norm.sflow.as_ref() {
            self.sflow = None;
            if let Some(spec) = norm.sflow {
                if let Err(e) = self.sflow_start(spec) {
                    tracing::error!("internal: validated sFlow did not apply: {e}");
                }
            }
        }
        self.publish().await;
        drop(removed);
        tracing::info!("applied {} changes", changes.len());
        Ok(ApplyReport { changes, applied: true })
    }

    fn trace(&self, port: &str, packet: &str) -> Result<TraceView, Refusal> {
        let p = self.must_find("port", port)?;
        let id = p.run.as_ref().map(|r| r.eth.id).map_err(|e| format!("port: {port:?} is not running: {e}"))?;
        let bytes = crate::trace::parse_hex(packet)?;
        if bytes.is_empty() || bytes.len() > 9216 {
            return Err(format!("packet: {} bytes; give 1 to 9216", bytes.len()));
        }
        let name = |id: u16| {
            self.ports
                .iter()
                .find(|p| p.run.as_ref().is_ok_and(|r| r.eth.id == id))
                .map(|p| p.spec.name.clone())
                .unwrap_or_else(|| format!("#{id}"))
        };
        let slots: std::collections::HashMap<u32, u32> =
            self.acls.list(None, None).into_iter().filter_map(|(r, slot)| Some((slot, r.id?))).collect();
        let rule_of = |slot: u32| slots.get(&slot).copied();
        Ok(crate::trace::trace(&self.shared.rcu.load(), port, id, &bytes, &name, &rule_of))
    }

    /// Applies an overlay change (network, VTEP, FIB, neighbour): validated, saved,
    /// published. A refused or unsaved change leaves everything as it was.
    async fn overlay_change(&mut self, req: Request) -> Result<(), Refusal> {
        let ports = self.port_refs();
        let mut next = self.overlay.clone_config();
        let applied = match req {
            Request::NetworkAdd(spec) => next.network_add(spec),
            Request::NetworkDel { vni } => next.network_del(vni, &ports),
            Request::NetworkAddVtep { vni, ip } => next.add_vtep(vni, ip),
            Request::NetworkDelVtep { vni, ip } => next.del_vtep(vni, ip),
            Request::VtepSet(spec) => next.vtep_set(spec, &ports),
            Request::NeighAdd(spec) => next.neigh_add(spec),
            Request::NeighDel { ip } => next.neigh_del(ip),
            Request::FibAdd(spec) => next.fib_add(spec, &ports),
            Request::FibDel { vni, mac } => next.fib_del(vni, &mac),
            other => Err(format!("internal: {other:?} is not an overlay change")),
        };
        applied?;
        let before = std::mem::replace(&mut self.overlay, next);
        if let Err(e) = self.save() {
            self.overlay = before;
            return Err(e);
        }
        self.publish().await;
        Ok(())
    }

    /// The overlay's view of the ports.
    fn port_refs(&self) -> Vec<PortRef> {
        self.ports
            .iter()
            .map(|p| {
                let run = p.run.as_ref().ok();
                PortRef {
                    name: p.spec.name.clone(),
                    id: run.map(|r| r.eth.id),
                    role: p.spec.role,
                    vni: p.spec.vni,
                    mtu: run.map(|r| r.info.mtu).unwrap_or(1500),
                    mac: run.map(|r| Mac(r.info.mac)).unwrap_or_default(),
                }
            })
            .collect()
    }

    fn save(&self) -> Result<(), Refusal> {
        self.store.save(&self.desired()).map_err(|e| e.to_string())
    }

    /// Checks a port spec against the switch as it is.
    fn check_spec(&self, spec: &PortSpec) -> Result<(), Refusal> {
        validate::port_spec(spec, self.ports.iter().map(|p| &p.spec), &self.eal.workers)?;
        self.overlay.check_port(spec, &self.port_refs())
    }

    /// Attaches, configures and starts the device, and picks cores for its rx queues.
    /// Publishes nothing.
    fn bring_up(&self, spec: &PortSpec) -> Result<Running, String> {
        let queues = spec.queues.unwrap_or(1);
        let mut eth = EthPort::attach(&spec.devargs).map_err(|e| e.to_string())?;
        let conf = PortConf {
            rx_queues: queues,
            tx_queues: self.eal.workers.len() as u16,
            rx_desc: RX_DESC,
            tx_desc: TX_DESC,
            mtu: spec.mtu,
            mbuf_data_room: dpdk_sys::RTE_MBUF_DEFAULT_DATAROOM,
        };
        // On failure `eth` drops here, which stops, closes and detaches the device.
        eth.configure_and_start(&self.pool, conf).map_err(|e| e.to_string())?;
        let info = eth.info();
        let rxq = (0..queues).map(|q| (q, self.pick_core(spec, q))).collect();
        let baseline = self.totals(eth.id);
        Ok(Running { eth, info, rxq, baseline })
    }

    fn pick_core(&self, spec: &PortSpec, queue: u16) -> usize {
        if let Some(cores) = &spec.cores {
            let lcore = cores[queue as usize % cores.len()];
            return self.eal.workers.iter().position(|&w| w == lcore).unwrap_or(0);
        }
        // Least loaded by rx queue count; ties to the lowest index.
        let mut load = vec![0usize; self.eal.workers.len()];
        for p in &self.ports {
            if let Ok(r) = &p.run {
                for &(_, c) in &r.rxq {
                    load[c] += 1;
                }
            }
        }
        (0..load.len()).min_by_key(|&c| (load[c], c)).unwrap_or(0)
    }

    async fn port_add(&mut self, spec: PortSpec) -> Result<PortView, Refusal> {
        self.check_spec(&spec)?;
        let run = self.bring_up(&spec).map_err(|e| format!("port {}: {e}", spec.name))?;
        self.ports.push(Port { spec, run: Ok(run) });
        self.acl_dirty = true;
        if let Err(e) = self.save() {
            // Not durable, so not done: take it back out.
            if let Some(p) = self.ports.pop() {
                drop(p); // nothing was published with it: no core knows the port
            }
            return Err(e);
        }
        self.publish().await;
        let p = self.ports.last().expect("just pushed");
        tracing::info!("port {} added ({})", p.spec.name, p.spec.devargs);
        Ok(self.view(p))
    }

    async fn port_del(&mut self, name: &str) -> Result<(), Refusal> {
        self.must_find("name", name)?;
        if let Some(x) = self.xconnects.iter().find(|x| x.a == name || x.b == name) {
            return Err(format!(
                "port {name:?} is cross-connected ({} <-> {}); delete the cross-connect first: vswitchctl xconnect del {}",
                x.a, x.b, x.a
            ));
        }
        if let Some(why) = self.overlay.port_in_use(name).or_else(|| self.acls.port_in_use(name)) {
            return Err(why);
        }
        let idx = self.ports.iter().position(|p| p.spec.name == name).expect("found above");
        let port = self.ports.remove(idx);
        if let Err(e) = self.save() {
            self.ports.insert(idx, port);
            return Err(e);
        }
        if let Ok(r) = &port.run {
            self.overlay.port_removed(r.eth.id);
        }
        self.acls.port_removed(name);
        self.qos.port_removed(name);
        self.acl_dirty = true;
        // No core may touch the port after this returns; only then is it closed.
        self.publish().await;
        drop(port);
        tracing::info!("port {name} deleted");
        Ok(())
    }

    async fn xconnect_add(&mut self, a: String, b: String) -> Result<(), Refusal> {
        self.must_find("a", &a)?;
        self.must_find("b", &b)?;
        if a == b {
            return Err(format!("b: a port cannot be cross-connected to itself ({a:?})"));
        }
        for x in &self.xconnects {
            for p in [&a, &b] {
                if &x.a == p || &x.b == p {
                    return Err(format!(
                        "port {p:?} is already cross-connected ({} <-> {}); delete that first",
                        x.a, x.b
                    ));
                }
            }
        }
        self.xconnects.push(Xconnect { a, b });
        if let Err(e) = self.save() {
            self.xconnects.pop();
            return Err(e);
        }
        self.publish().await;
        Ok(())
    }

    async fn xconnect_del(&mut self, a: &str) -> Result<(), Refusal> {
        let idx = self
            .xconnects
            .iter()
            .position(|x| x.a == a || x.b == a)
            .ok_or_else(|| format!("a: port {a:?} has no cross-connect"))?;
        let x = self.xconnects.remove(idx);
        if let Err(e) = self.save() {
            self.xconnects.insert(idx, x);
            return Err(e);
        }
        self.publish().await;
        Ok(())
    }

    /// Compiles the running state into a snapshot, publishes it and waits until every
    /// core has passed a quiescent point on it. Only then may the caller free what the
    /// previous snapshot referenced.
    async fn publish(&mut self) {
        let cores = self.eal.workers.len();
        let mut snap = Snapshot::empty(cores);
        let mut id_of = BTreeMap::new();
        for p in &self.ports {
            if let Ok(r) = &p.run {
                let slot = &mut snap.ports[r.eth.id as usize];
                slot.active = true;
                slot.role = match (p.spec.role, p.spec.vni) {
                    (Some(PortRole::Vm), Some(vni)) => Role::Vm { vni },
                    (Some(PortRole::Uplink), _) => Role::Uplink,
                    _ => Role::None,
                };
                id_of.insert(p.spec.name.as_str(), r.eth.id);
                for &(queue, core) in &r.rxq {
                    snap.rx[core].push(RxQueue { port: r.eth.id, queue });
                }
            }
        }
        for x in &self.xconnects {
            if let (Some(&a), Some(&b)) = (id_of.get(x.a.as_str()), id_of.get(x.b.as_str())) {
                snap.ports[a as usize].xconnect = Some(b);
                snap.ports[b as usize].xconnect = Some(a);
            }
        }
        let refs = self.port_refs();
        if self.acl_dirty {
            self.acl_tables = Arc::new(self.acls.compile(&refs, MAX_PORTS));
            self.acl_dirty = false;
        }
        let mut l2 = self.overlay.compile(&refs, MAX_PORTS);
        l2.acl = self.acl_tables.clone();
        let rx_cores = |id: u16| -> u64 {
            let run = self.ports.iter().filter_map(|p| p.run.as_ref().ok()).find(|r| r.eth.id == id);
            run.map_or(1, |r| r.rxq.iter().map(|&(_, c)| c).collect::<std::collections::BTreeSet<_>>().len() as u64)
        };
        l2.qos = Arc::new(self.qos.compile(&refs, MAX_PORTS, &rx_cores, self.eal.workers.len() as u64));
        if let Some(sf) = &self.sflow {
            snap.sflow_sampling = sf.spec.sampling;
            snap.sflow_header_bytes = sf.spec.header_bytes.unwrap_or(128);
        }
        snap.l2 = Arc::new(l2);
        snap.capture = self.capture.as_ref().filter(|c| id_of.get(c.port.as_str()) == Some(&c.tap.port)).map(|c| c.tap);
        self.install(snap).await;
    }

    /// The snapshot in force with only the capture tap changed: nothing to recompile.
    async fn publish_capture(&mut self) {
        let mut snap = (*self.shared.rcu.load()).clone();
        snap.capture = self.capture.as_ref().map(|c| c.tap);
        self.install(snap).await;
    }

    /// Publishes `snap` and waits until every core has passed a quiescent point on it.
    async fn install(&mut self, snap: Snapshot) {
        let old = self.shared.rcu.load();
        let generation = self.shared.rcu.publish(snap);
        let start = std::time::Instant::now();
        let mut spins = 0u32;
        while !self.shared.rcu.passed(generation) {
            if start.elapsed() > QUIESCE_TIMEOUT {
                // A stuck core is a bug; never free what it may still use.
                tracing::error!("a PMD core has not passed a quiescent point in {QUIESCE_TIMEOUT:?}; keeping the old snapshot alive");
                std::mem::forget(old);
                return;
            }
            spins += 1;
            if spins < 200 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        drop(old);
    }

    /// Current totals of a port id, summed over cores.
    fn totals(&self, id: u16) -> PortTotals {
        let mut t = PortTotals::default();
        for c in self.shared.counters.iter() {
            t.add(&c.ports[id as usize]);
        }
        t
    }

    fn view(&self, p: &Port) -> PortView {
        let xconnect = self.xconnects.iter().find_map(|x| {
            if x.a == p.spec.name {
                Some(x.b.clone())
            } else if x.b == p.spec.name {
                Some(x.a.clone())
            } else {
                None
            }
        });
        match &p.run {
            Ok(r) => {
                let link = r.eth.link();
                PortView {
                    name: p.spec.name.clone(),
                    devargs: p.spec.devargs.clone(),
                    state: if link.up { "up" } else { "down" }.into(),
                    error: None,
                    port_id: Some(r.eth.id),
                    driver: Some(r.info.driver.clone()),
                    mac: Some(mac_string(&r.info.mac)),
                    mtu: Some(r.eth.info().mtu),
                    link_speed_mbps: Some(link.speed_mbps),
                    rx_queues: r
                        .rxq
                        .iter()
                        .map(|&(queue, c)| RxQueueView { queue, lcore: self.eal.workers[c] })
                        .collect(),
                    xconnect,
                    role: p.spec.role,
                    vni: p.spec.vni,
                }
            }
            Err(e) => PortView {
                name: p.spec.name.clone(),
                devargs: p.spec.devargs.clone(),
                state: "error".into(),
                error: Some(e.clone()),
                port_id: None,
                driver: None,
                mac: None,
                mtu: None,
                link_speed_mbps: None,
                rx_queues: Vec::new(),
                xconnect,
                role: p.spec.role,
                vni: p.spec.vni,
            },
        }
    }

    fn port_views(&self) -> Vec<PortView> {
        self.ports.iter().map(|p| self.view(p)).collect()
    }

    fn port_stats(&self, name: Option<&str>) -> Result<Vec<PortStatsView>, Refusal> {
        if let Some(n) = name {
            self.must_find("name", n)?;
        }
        Ok(self
            .ports
            .iter()
            .filter(|p| name.is_none_or(|n| n == p.spec.name))
            .map(|p| {
                let mut v = PortStatsView { name: p.spec.name.clone(), ..Default::default() };
                if let Ok(r) = &p.run {
                    let t = self.totals(r.eth.id).since(&r.baseline);
                    v.rx_packets = t.rx_packets;
                    v.rx_bytes = t.rx_bytes;
                    v.tx_packets = t.tx_packets;
                    v.tx_bytes = t.tx_bytes;
                    for reason in DropReason::ALL {
                        let n = t.drops[reason.index()];
                        if n > 0 {
                            v.drops.insert(reason.name().to_owned(), n);
                        }
                    }
                    let hw = r.eth.hw_stats();
                    v.rx_missed = hw.rx_missed;
                    v.rx_errors = hw.rx_errors;
                    v.tx_errors = hw.tx_errors;
                    v.rx_nombuf = hw.rx_nombuf;
                }
                v
            })
            .collect())
    }

    /// Takes in what the cores handed over (learn events, ARP replies), sends due ARP
    /// requests, and publishes if the tables changed. Called every few milliseconds.
    pub async fn poll_cores(&mut self) {
        let now = Instant::now();
        let ports = self.port_refs();
        let mut changed = false;
        for ring in self.shared.learn.iter() {
            while let Some(ev) = ring.pop() {
                changed |= self.overlay.learn(ev, &ports, now);
            }
        }
        for ring in self.shared.punt.iter() {
            while let Some(p) = ring.pop() {
                let mut m = Meta::default();
                pipelines::parse::parse(p.bytes(), &mut m);
                if m.ethertype != ethernet::ETHERTYPE_ARP {
                    continue;
                }
                if let Some(a) = p.bytes().get(m.l3 as usize..).and_then(Arp::parse) {
                    changed |= self.overlay.arp_reply(&a, now);
                }
            }
        }
        self.sflow_drain();
        if self.capture.as_mut().is_some_and(|c| c.collect(&self.shared)) {
            self.capture_finish().await;
        }
        let requests = self.overlay.arp_due(&ports, now, &mut changed);
        if !requests.is_empty() {
            if let Some(uplink) = self.overlay_uplink_id(&ports) {
                for frame in &requests {
                    if !self.shared.transmit(uplink, frame) {
                        tracing::warn!("could not queue an ARP request (no mbuf or the ring is full)");
                    }
                }
            }
        }
        if changed {
            self.publish().await;
        }
    }

    fn overlay_uplink_id(&self, ports: &[PortRef]) -> Option<u16> {
        ports.iter().find(|p| p.role == Some(PortRole::Uplink)).and_then(|p| p.id)
    }

    /// Once a second: core activity rates, and ageing of learned MACs.
    pub async fn tick_second(&mut self) {
        self.sample_cores();
        self.latency.tick(&self.shared);
        self.sflow_poll();
        if self.overlay.age(Instant::now()) {
            self.publish().await;
        }
    }

    /// Takes a sample of core activity; the rates `cores` reports are over the interval
    /// between the last two samples. Called every second by the server.
    fn sample_cores(&mut self) {
        for (i, c) in self.shared.counters.iter().enumerate() {
            let now = CoreSample { busy: c.busy_cycles.get(), idle: c.idle_cycles.get(), packets: c.packets.get() };
            let last = self.last_sample[i];
            self.rate[i] = CoreSample {
                busy: now.busy.wrapping_sub(last.busy),
                idle: now.idle.wrapping_sub(last.idle),
                packets: now.packets.wrapping_sub(last.packets),
            };
            self.last_sample[i] = now;
        }
    }

    fn core_views(&self) -> Vec<CoreView> {
        let pct =
            |busy: u64, idle: u64| if busy + idle == 0 { 0.0 } else { 100.0 * busy as f64 / (busy + idle) as f64 };
        let cpp = |busy: u64, packets: u64| if packets == 0 { 0.0 } else { busy as f64 / packets as f64 };
        self.shared
            .counters
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let rx_queues = self
                    .ports
                    .iter()
                    .filter_map(|p| p.run.as_ref().ok().map(|r| (p, r)))
                    .flat_map(|(p, r)| {
                        r.rxq.iter().filter(|&&(_, core)| core == i).map(move |&(q, _)| format!("{}:{q}", p.spec.name))
                    })
                    .collect();
                let r = self.rate[i];
                CoreView {
                    index: i,
                    lcore: self.eal.workers[i],
                    rx_queues,
                    packets: c.packets.get(),
                    rounds: c.rounds.get(),
                    busy_pct: pct(r.busy, r.idle),
                    cycles_per_packet: cpp(r.busy, r.packets),
                    busy_pct_total: pct(c.busy_cycles.get(), c.idle_cycles.get()),
                    cycles_per_packet_total: cpp(c.busy_cycles.get(), c.packets.get()),
                    busy_cycles: c.busy_cycles.get(),
                    latency: self.latency.view(i, self.shared.tsc_hz),
                }
            })
            .collect()
    }

    fn mempool(&self) -> MempoolView {
        let available = self.pool.available();
        MempoolView { size: self.pool.size(), available, in_use: self.pool.size().saturating_sub(available) }
    }

    fn show(&self) -> ShowView {
        ShowView {
            version: env!("CARGO_PKG_VERSION").into(),
            dpdk: self.eal.version.clone(),
            main_lcore: self.eal.main_lcore,
            pmd_lcores: self.eal.workers.clone(),
            db: self.store.path().display().to_string(),
            ports: self.port_views(),
            xconnects: self.xconnects.iter().map(|x| XconnectView { a: x.a.clone(), b: x.b.clone() }).collect(),
            networks: self.overlay.network_views(&self.port_refs()),
            vtep: self.overlay.vtep_view(&self.port_refs()),
            mempool: self.mempool(),
            learn_events_lost: self.shared.counters.iter().map(|c| c.learn_lost.get()).sum(),
        }
    }

    /// The Prometheus page: what `stats` and `cores` report.
    pub fn metrics(&self) -> String {
        let ports = self.port_stats(None).unwrap_or_default();
        let lost = self.shared.counters.iter().map(|c| c.capture_lost.get()).sum();
        crate::metrics::render(&ports, &self.core_views(), &self.mempool(), lost)
    }

    /// Starts a capture; the reply goes out when it ends (see `poll_cores`).
    pub async fn capture_start(&mut self, spec: CaptureSpec, reply: tokio::sync::oneshot::Sender<Response>) {
        match self.capture_check(&spec) {
            Ok(id) => {
                let run = crate::capture::CaptureRun::start(spec, id, &self.shared, reply);
                tracing::info!("capture on port {} started", run.port);
                self.capture = Some(run);
                self.publish_capture().await;
            }
            Err(e) => {
                let _ = reply.send(Response::err(e));
            }
        }
    }

    /// The port id to capture on, or why not.
    fn capture_check(&self, spec: &CaptureSpec) -> Result<u16, Refusal> {
        crate::capture::CaptureRun::check(spec)?;
        let id = match self.find(&spec.port).map(|p| &p.run) {
            Some(Ok(r)) => r.eth.id,
            Some(Err(e)) => return Err(format!("port: {} is not running ({e})", spec.port)),
            None => return Err(format!("port: no port named {:?}; see vswitchctl port list", spec.port)),
        };
        if let Some(c) = &self.capture {
            return Err(format!(
                "a capture on port {} is running; wait for it to end (its count or timeout) and try again",
                c.port
            ));
        }
        Ok(id)
    }

    /// Ends the running capture: the cores stop copying, then the request is answered.
    async fn capture_finish(&mut self) {
        let Some(run) = self.capture.take() else { return };
        self.publish_capture().await;
        tracing::info!("capture on port {} ended", run.port);
        run.finish(&self.shared);
    }

    /// Stops and detaches every port. The PMD cores must already have stopped.
    pub fn close_ports(&mut self) {
        for p in self.ports.drain(..).rev() {
            if p.run.is_ok() {
                tracing::info!("closing port {}", p.spec.name);
            }
        }
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

fn mac_string(m: &[u8; 6]) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}
