//! Services on the control plane: validation of what users write (VIP, backends,
//! weights, Maglev's table size), a stable id per service, and the compile step that
//! builds each service's Maglev table (once per change, not per publish) into the
//! tables the cores read. The translation itself is `pipelines::services`.
pub mod api;
pub mod cli;
#[cfg(test)]
mod tests;

use crate::{
    endpoints::is_unicast,
    feature::{Ctx, Feature, Handled, Tables},
    ports::PortRef,
    state::DesiredState,
    store::change::Change,
};
use api::{BackendView, ServiceReply, ServiceRequest, ServiceSpec, ServiceView};
use pipelines::{
    conntrack::CtTable,
    meta::ip_key,
    services::{
        affinity::{stable_id, Affinity, AffinityTable},
        counters::{BackendCounters, COUNTS},
        maglev::{is_prime, Maglev, DEFAULT_SIZE, MAX_SIZE},
        Algorithm, Backend, Service, ServiceTables,
    },
    wire::ipv4::{PROTO_TCP, PROTO_UDP},
};
use serde_json::json;
use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::Arc,
};

/// Backends a service may have.
pub const MAX_BACKENDS: usize = 4096;

/// The longest affinity (a day, as Kubernetes' sessionAffinity timeout).
pub const MAX_AFFINITY: u32 = 86_400;

/// A service as validated: its spec as given, and what the cores need.
#[derive(Debug)]
struct Compiled {
    spec: ServiceSpec,
    built: Arc<Service>,
    weights: Vec<u32>,
    /// Where the cores count this build's backends (made at compile, for its cores).
    counters: Option<Arc<BackendCounters>>,
}

/// Counters of a build that was replaced, until the cores let go of them.
struct Retired {
    name: String,
    backends: Vec<Backend>,
    counters: Arc<BackendCounters>,
}

#[derive(Default)]
pub struct Services {
    list: BTreeMap<String, Compiled>,
    next_id: u32,
    /// The session table (for sessions per backend), once connection tracking made it.
    table: Option<Arc<CtTable>>,
    /// Counts of replaced builds, per (service, backend): backends keep their counts
    /// across changes of the backend set.
    base: HashMap<(String, Backend), [u64; COUNTS]>,
    retired: Vec<Retired>,
}

/// Which of `s`'s backends are behind a port of this switch (by their endpoints' MACs).
fn local_backends(s: &Service, l2: &pipelines::tables::L2Tables) -> Box<[bool]> {
    let at_port = |b: &Backend| {
        let mac = l2.endpoints.get(s.vni, b.ip).map(|e| e.mac);
        mac.and_then(|m| l2.lookup(s.vni, m)).is_some_and(|e| matches!(e.target, pipelines::tables::FibTarget::Port(_)))
    };
    s.backends.iter().map(at_port).collect()
}

/// A backend as given, without its weight.
fn backend_addr(given: &str) -> String {
    given.rsplit_once('@').map_or(given, |(a, _)| a).to_string()
}

/// The client memory of a service's build, if it has affinity.
fn memory(c: &Compiled) -> Option<Arc<AffinityTable>> {
    c.built.affinity.as_ref().map(|a| a.table.clone())
}

/// `IP:PORT[@WEIGHT]`.
fn parse_backend(s: &str) -> Result<(SocketAddr, u32), String> {
    let (addr, weight) = match s.rsplit_once('@') {
        Some((a, w)) => (a, w.parse::<u32>().map_err(|_| format!("backend {s:?}: the weight must be 0 to 65535"))?),
        None => (s, 1),
    };
    if weight > u16::MAX as u32 {
        return Err(format!("backend {s:?}: the weight must be 0 to 65535"));
    }
    let a: SocketAddr = addr
        .parse()
        .map_err(|_| format!("backend {s:?} is not IP:PORT[@WEIGHT] (IPv6 as [IP]:PORT); e.g. 10.1.0.2:8080@2"))?;
    if !is_unicast(a.ip()) || a.port() == 0 {
        return Err(format!("backend {s:?}: not a unicast address with a port"));
    }
    Ok((a, weight))
}

/// `spec` checked and built (with id `id`; remembering clients in `affinity`, the
/// service's memory so far if it had one), and a warning for the user if any.
fn build(
    spec: &ServiceSpec,
    id: u32,
    affinity: Option<Arc<AffinityTable>>,
    ctx: &Ctx,
) -> Result<(Compiled, Option<String>), String> {
    let name = &spec.name;
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(format!("name: {name:?} must be 1 to 64 letters, digits, '-', '_' or '.'"));
    }
    if !(ctx.has_network)(spec.vni) {
        return Err(format!(
            "vni: no network {} (add it first, with a gateway: vswitchctl network add {} --gateway IP/LEN)",
            spec.vni, spec.vni
        ));
    }
    // A host port mapping (CNI's portMappings) has no VIP, only its node port.
    let vip: Option<SocketAddr> = match (spec.vip.as_str(), spec.node_port) {
        ("", Some(_)) => None,
        ("", None) => {
            return Err("vip: give --vip IP:PORT (or, for a host port mapping without one, --node-port N)".into())
        }
        (text, _) => Some(
            text.parse()
                .map_err(|_| format!("vip: {text:?} is not IP:PORT (IPv6 as [IP]:PORT); e.g. 10.96.0.10:80"))?,
        ),
    };
    if let Some(vip) = vip.filter(|v| !is_unicast(v.ip()) || v.port() == 0) {
        return Err(format!("vip: {vip} is not a unicast address with a port"));
    }
    let v4 = vip.is_none_or(|v| v.is_ipv4());
    let proto = match spec.proto.as_str() {
        "tcp" => PROTO_TCP,
        "udp" => PROTO_UDP,
        p => return Err(format!("proto: {p:?}; a service is tcp or udp")),
    };
    let algorithm = match spec.algorithm.as_deref() {
        None | Some("maglev") => Algorithm::Maglev,
        Some("random") => Algorithm::Random,
        Some(a) => return Err(format!("algorithm: {a:?}; give maglev (the default) or random")),
    };
    if let Some(secs) = spec.affinity.filter(|s| !(1..=MAX_AFFINITY).contains(s)) {
        return Err(format!("affinity: {secs} s; give 1 to {MAX_AFFINITY} seconds, or no --affinity for none"));
    }
    let size = spec.table_size.unwrap_or(DEFAULT_SIZE);
    if !(3..=MAX_SIZE).contains(&size) || !is_prime(size) {
        return Err(format!("table_size: {size} must be a prime from 3 to {MAX_SIZE} (e.g. 16381, 65521)"));
    }
    if spec.backends.len() > MAX_BACKENDS {
        return Err(format!("backends: {} given; a service has at most {MAX_BACKENDS}", spec.backends.len()));
    }
    let mut backends = Vec::new();
    let mut weights = Vec::new();
    for b in &spec.backends {
        let (a, w) = parse_backend(b)?;
        if a.is_ipv4() != v4 {
            return Err(format!("backend {b:?}: not of the VIP's address family (IPv4 without a VIP)"));
        }
        let be = Backend { ip: ip_key(a.ip()), port: a.port() };
        if backends.contains(&be) {
            return Err(format!("backend {a} is given twice"));
        }
        backends.push(be);
        weights.push(w);
    }
    // Each backend's permutation comes from its address as text: the same table on
    // every switch for the same backends.
    let keys: Vec<String> = spec.backends.iter().map(|b| backend_addr(b)).collect();
    let weighted: Vec<(&[u8], u32)> = keys.iter().zip(&weights).map(|(k, w)| (k.as_bytes(), *w)).collect();
    let maglev = Maglev::build(size, &weighted);
    let warning = (!backends.is_empty() && (size as usize) < 100 * backends.len()).then(|| {
        format!(
            "table_size {size} is less than 100 x {} backends: shares will be uneven and a backend change moves more connections; give --table-size 65521 or more",
            backends.len()
        )
    });
    match spec.node_port {
        Some(p) if !(1..=32767).contains(&p) => {
            return Err(format!("node_port: {p}; give 1 to 32767 (32768 and up are masqueraded connections' ports)"))
        }
        _ => {}
    }
    match (spec.external_traffic.as_deref(), spec.node_port) {
        (None | Some("cluster") | Some("local"), Some(_)) | (None, None) => {}
        (Some(p @ ("cluster" | "local")), None) => {
            return Err(format!("external_traffic: {p} is about a node port; give --node-port too"))
        }
        (Some(p), _) => return Err(format!("external_traffic: {p:?}; give cluster or local")),
    }
    let vip = vip.map_or((0, 0), |v| (ip_key(v.ip()), v.port()));
    if let Some(i) = backends.iter().position(|b| b.ip == vip.0) {
        return Err(format!("backend {:?}: the VIP's own address cannot be a backend", spec.backends[i]));
    }
    let mut service = Service::new(id, spec.vni, vip, proto, backends, maglev);
    service.algorithm = algorithm;
    service.affinity = spec.affinity.map(|secs| {
        let ids: Box<[u32]> = keys.iter().map(|k| stable_id(k.as_bytes())).collect();
        let members = ids.iter().zip(&weights).enumerate().filter(|(_, (_, w))| **w > 0);
        Affinity {
            secs,
            table: affinity.unwrap_or_default(),
            members: members.map(|(i, (id, _))| (*id, i as u16)).collect(),
            ids,
        }
    });
    Ok((Compiled { spec: spec.clone(), built: Arc::new(service), weights, counters: None }, warning))
}

impl Services {
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Every service's name.
    pub fn names(&self) -> Vec<String> {
        self.list.keys().cloned().collect()
    }

    /// Another service with `c`'s VIP, or its NodePort.
    fn clash(&self, c: &Compiled) -> Option<&str> {
        let b = &c.built;
        self.list.values().find_map(|o| {
            let s = &o.built;
            let same_vip = b.port != 0 && (s.vni, s.vip, s.port, s.proto) == (b.vni, b.vip, b.port, b.proto);
            let same_node_port =
                c.spec.node_port.is_some() && (o.spec.node_port, s.proto) == (c.spec.node_port, b.proto);
            (o.spec.name != c.spec.name && (same_vip || same_node_port)).then_some(o.spec.name.as_str())
        })
    }

    /// Whether some service is reachable from outside.
    pub fn has_node_ports(&self) -> bool {
        self.list.values().any(|c| c.spec.node_port.is_some())
    }

    fn put(&mut self, spec: &ServiceSpec, ctx: &Ctx, fresh: bool) -> Result<Handled, String> {
        let existing = self.list.get(&spec.name);
        if fresh && existing.is_some() {
            return Err(format!(
                "name: service {:?} exists (change its backends with service set-backends)",
                spec.name
            ));
        }
        let id = match existing {
            Some(c) => c.built.id,
            None => {
                self.next_id += 1;
                self.next_id
            }
        };
        let (c, warning) = build(spec, id, existing.and_then(memory), ctx)?;
        if let Some(other) = self.clash(&c) {
            return Err(format!(
                "vip: {} {} in network {} (or its node port) is service {other:?}'s",
                spec.proto, spec.vip, spec.vni
            ));
        }
        let change = Change::put("services", &c.spec);
        if let Some(old) = self.list.insert(spec.name.clone(), c) {
            self.retire(old);
        }
        Ok(Handled::change(serde_json::to_value(ServiceReply { warning }).unwrap_or_default(), vec![change]))
    }

    pub fn handle(&mut self, req: ServiceRequest, ctx: &Ctx) -> Result<Handled, String> {
        match req {
            ServiceRequest::ServiceList => Ok(Handled::read(self.views(crate::conntrack::table_now(ctx.shared)))),
            ServiceRequest::ServiceAdd(spec) => self.put(&spec, ctx, true),
            ServiceRequest::ServiceSetBackends { name, backends } => {
                let c = self
                    .list
                    .get(&name)
                    .ok_or_else(|| format!("name: no service {name:?} (vswitchctl service list)"))?;
                let spec = ServiceSpec { backends, ..c.spec.clone() };
                self.put(&spec, ctx, false)
            }
            ServiceRequest::ServiceDel { name } => {
                self.list
                    .remove(&name)
                    .ok_or_else(|| format!("name: no service {name:?} (vswitchctl service list)"))?;
                self.forget(&name);
                Ok(Handled::change(serde_json::Value::Null, vec![Change::del("services", json!(name))]))
            }
        }
    }

    /// Keeps the counts of a replaced build.
    fn retire(&mut self, old: Compiled) {
        if let Some(counters) = old.counters {
            self.retired.push(Retired { name: old.spec.name, backends: old.built.backends.clone(), counters });
        }
    }

    /// A deleted service's counts: gone (a service added under its name starts at 0).
    fn forget(&mut self, name: &str) {
        self.retired.retain(|r| r.name != name);
        self.base.retain(|(n, _), _| n != name);
    }

    /// Folds the counts of retired builds no core reads any more into `base`.
    fn fold_retired(&mut self) {
        let (done, live): (Vec<Retired>, Vec<Retired>) =
            std::mem::take(&mut self.retired).into_iter().partition(|r| Arc::strong_count(&r.counters) == 1);
        self.retired = live;
        for r in done {
            for (i, b) in r.backends.iter().enumerate() {
                let sum = self.base.entry((r.name.clone(), *b)).or_default();
                for (s, n) in sum.iter_mut().zip(r.counters.totals(i)) {
                    *s += n;
                }
            }
        }
    }

    /// Backend `i` of service `c`: its counts so far.
    fn counts(&self, c: &Compiled, i: usize) -> [u64; COUNTS] {
        let b = c.built.backends[i];
        let mut sum = self.base.get(&(c.spec.name.clone(), b)).copied().unwrap_or_default();
        let retired = self.retired.iter().filter(|r| r.name == c.spec.name).filter_map(|r| {
            let at = r.backends.iter().position(|x| *x == b)?;
            Some(r.counters.totals(at))
        });
        for counts in c.counters.iter().map(|k| k.totals(i)).chain(retired) {
            for (s, n) in sum.iter_mut().zip(counts) {
                *s += n;
            }
        }
        sum
    }

    /// The Prometheus families of services: what each backend was sent.
    pub fn metrics(&self) -> String {
        if self.list.is_empty() {
            return String::new();
        }
        let mut out = String::new();
        let families = [
            ("vswitch_service_backend_connections_total", "New connections sent to a service's backend."),
            ("vswitch_service_backend_packets_total", "Packets sent to a service's backend (client to backend)."),
            ("vswitch_service_backend_bytes_total", "Bytes sent to a service's backend (client to backend)."),
        ];
        for (k, (name, help)) in families.iter().enumerate() {
            let samples = self.list.values().flat_map(|c| {
                (0..c.built.backends.len()).map(move |i| {
                    let backend = backend_addr(&c.spec.backends[i]);
                    let labels = crate::stats::metrics::labels(&[("service", &c.spec.name), ("backend", &backend)]);
                    (labels, self.counts(c, i)[k])
                })
            });
            crate::stats::metrics::family(&mut out, name, "counter", help, samples);
        }
        out
    }

    /// The services as `service list` shows them, at `now` on the session table's clock.
    fn views(&self, now: u32) -> Vec<ServiceView> {
        // Connections per (service, backend), from a walk of the table (not those past
        // their timeout, as `conntrack list`).
        let mut sessions: HashMap<(u32, u128, u16), u64> = HashMap::new();
        if let Some(t) = &self.table {
            for v in t.sessions().filter(|v| !v.expired(now)) {
                if let Some(nat) = t.nat_of(v.index) {
                    let client = if nat.key.lo == v.key.lo || nat.key.lo == v.key.hi { nat.key.lo } else { nat.key.hi };
                    let backend = if v.key.lo == client { v.key.hi } else { v.key.lo };
                    *sessions.entry((nat.service, backend.0, backend.1)).or_default() += 1;
                }
            }
        }
        self.list
            .values()
            .map(|c| {
                let s = &c.built;
                let slots = s.maglev.shares(s.backends.len());
                ServiceView {
                    name: c.spec.name.clone(),
                    vni: s.vni,
                    vip: c.spec.vip.clone(),
                    proto: c.spec.proto.clone(),
                    algorithm: c.spec.algorithm.clone().unwrap_or_else(|| "maglev".into()),
                    affinity: c.spec.affinity,
                    node_port: c.spec.node_port,
                    external_traffic: c.spec.external_traffic.clone(),
                    table_size: s.maglev.size() as u32,
                    backends: s
                        .backends
                        .iter()
                        .enumerate()
                        .map(|(i, b)| {
                            let [connections, packets, bytes] = self.counts(c, i);
                            BackendView {
                                addr: backend_addr(&c.spec.backends[i]),
                                weight: c.weights[i],
                                slots: slots[i],
                                sessions: sessions.get(&(s.id, b.ip, b.port)).copied().unwrap_or(0),
                                connections,
                                packets,
                                bytes,
                            }
                        })
                        .collect(),
                }
            })
            .collect()
    }
}

impl Feature for Services {
    fn network_in_use(&self, vni: u32) -> Option<String> {
        let names: Vec<&str> = self.list.values().filter(|c| c.spec.vni == vni).map(|c| c.spec.name.as_str()).collect();
        let first = names.first()?;
        Some(format!(
            "network {vni} still has services ({}); delete them first (vswitchctl service del {first})",
            names.join(", ")
        ))
    }

    fn desired(&self, out: &mut DesiredState) {
        out.services = self.list.values().map(|c| c.spec.clone()).collect();
    }

    fn adopt(&mut self, state: &DesiredState, ctx: &Ctx) -> Result<(), String> {
        let mut next = Services { next_id: self.next_id, table: self.table.clone(), ..Default::default() };
        for spec in &state.services {
            let old = self.list.get(&spec.name);
            let id = old.map(|c| c.built.id).unwrap_or_else(|| {
                next.next_id += 1;
                next.next_id
            });
            let (c, _) =
                build(spec, id, old.and_then(memory), ctx).map_err(|e| format!("services ({}): {e}", spec.name))?;
            if let Some(other) = next.clash(&c) {
                return Err(format!("services ({}): its VIP is service {other:?}'s", spec.name));
            }
            next.list.insert(spec.name.clone(), c);
        }
        let old = std::mem::replace(self, next);
        self.base = old.base;
        self.retired = old.retired;
        for (name, c) in old.list {
            match self.list.contains_key(&name) {
                true => self.retire(c),
                false => self.forget(&name),
            }
        }
        Ok(())
    }

    fn compile(&mut self, _ports: &[PortRef], cores: usize, t: &mut Tables) {
        self.fold_retired();
        let mut tables = ServiceTables::default();
        // Only where connection tracking can hold the connections.
        if let Some(table) = t.l2.ct.table.clone() {
            let masquerading: Vec<u32> = t.l2.networks.values().filter(|n| n.masquerading()).map(|n| n.vni).collect();
            if !self.list.is_empty() || !masquerading.is_empty() {
                table.enable_nat(dataplane::advise_huge_pages);
            }
            for vni in masquerading {
                tables.add_network(vni);
            }
            if !self.list.is_empty() {
                let mut retired = Vec::new();
                for c in self.list.values_mut() {
                    let n = c.built.backends.len();
                    if !c.counters.as_ref().is_some_and(|k| k.fits(n, cores)) {
                        let old = c.counters.replace(Arc::new(BackendCounters::new(n, cores)));
                        if let Some(counters) = old {
                            let backends = c.built.backends.clone();
                            retired.push(Retired { name: c.spec.name.clone(), backends, counters });
                        }
                    }
                    let counters = c.counters.clone().unwrap_or_else(|| Arc::new(BackendCounters::new(n, cores)));
                    let local = c.spec.external_traffic.as_deref() == Some("local");
                    let node_port = c.spec.node_port.map(|p| (p, local.then(|| local_backends(&c.built, &t.l2))));
                    tables.insert(c.built.clone(), &t.l2.endpoints, counters, node_port);
                }
                self.retired.extend(retired);
            }
            self.table = Some(table);
        }
        t.l2.services = Arc::new(tables);
    }
}
