//! The endpoint table: who holds each address of each tenant network (a MAC behind a
//! local VM port or a remote VTEP). It drives the switches' own ARP/ND answers (no flood
//! to find a known address) and the gateway's routes. Static entries (which the CNI
//! plugin and the cluster store will write through the same requests) win over what is
//! learned from the ARP and neighbour discovery VMs send in networks with a gateway;
//! learned entries age and are limited per network, as learned MACs are.
pub mod api;
pub mod cli;
mod resolve;
#[cfg(test)]
mod tests;

use crate::{
    feature::{Ctx, Feature, Handled, Tables},
    ports::{api::PortRole, PortRef},
    state::DesiredState,
    store::change::Change,
};
use api::{EndpointRequest, EndpointSpec, EndpointView};
use pipelines::{
    gateway::{Endpoint, GATEWAY_MAC},
    learn::LearnEvent,
    meta::{ip_addr, ip_key},
    tables::{FibEntry, FibTarget},
    wire::Mac,
    PortId,
};
use serde_json::{json, Value};
use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

/// Learned addresses allowed per network; more are refused and counted.
pub const MAX_LEARNED: usize = 8192;
/// A learned address is forgotten after this long without its VM speaking for it.
pub const LEARNED_AGING: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
struct Learned {
    mac: Mac,
    port: PortId,
    last_seen: Instant,
}

#[derive(Default, Debug)]
pub struct Endpoints {
    list: BTreeMap<(u32, IpAddr), EndpointSpec>,
    learned: BTreeMap<(u32, IpAddr), Learned>,
    learned_per_vni: HashMap<u32, usize>,
    /// Addresses not learned because their network was at `MAX_LEARNED`.
    pub refused: u64,
    /// Addresses the switch is asking its networks about.
    asking: BTreeMap<(u32, IpAddr), resolve::Asking>,
    /// Other nodes' endpoints, from the cluster store: runtime state, below the static
    /// entries and above what is learned.
    from_cluster: BTreeMap<(u32, IpAddr), (Mac, std::net::Ipv4Addr)>,
}

/// An address a host of a network may hold (endpoints, VIPs, backends).
pub(crate) fn is_unicast(ip: IpAddr) -> bool {
    !(ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() || matches!(ip, IpAddr::V4(a) if a.is_broadcast()))
}

/// `spec` checked against the ports and networks there are, its MAC in canonical form.
fn check(spec: &EndpointSpec, ctx: &Ctx) -> Result<EndpointSpec, String> {
    let vni = spec.vni;
    if !(ctx.has_network)(vni) {
        return Err(format!("vni: no network {vni} (add it first: vswitchctl network add {vni})"));
    }
    let ip = spec.ip;
    if !is_unicast(ip) {
        return Err(format!("ip: {ip} is not a unicast address"));
    }
    let mac: Mac = spec.mac.parse().map_err(|e| format!("mac: {e}"))?;
    if mac.is_multicast() || mac.is_zero() {
        return Err(format!("mac: {mac} is not a unicast MAC address"));
    }
    if mac == GATEWAY_MAC {
        return Err(format!("mac: {mac} is the gateway's virtual MAC; an endpoint cannot use it"));
    }
    match (&spec.port, spec.vtep) {
        (Some(name), None) => {
            let p = ctx
                .ports
                .iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| format!("port: no port named {name:?} (vswitchctl port list shows the ports)"))?;
            if p.role != Some(PortRole::Vm) || p.vni != Some(vni) {
                return Err(format!("port: {name:?} is not a VM port of network {vni}"));
            }
        }
        (None, Some(vtep)) => {
            crate::overlay::check_unicast("vtep", vtep)?;
            if ctx.vtep_ip == Some(IpAddr::V4(vtep)) {
                return Err(format!("vtep: {vtep} is this switch's own VTEP; give the local port with --port"));
            }
        }
        _ => return Err("an endpoint is behind one place: give either --port NAME or --vtep IP".into()),
    }
    Ok(EndpointSpec { mac: mac.to_string(), ..spec.clone() })
}

impl Endpoints {
    pub fn handle(&mut self, req: EndpointRequest, ctx: &Ctx) -> Result<Handled, String> {
        let change = match req {
            EndpointRequest::EndpointList { vni } => return Ok(Handled::read(self.views(vni, ctx.ports))),
            EndpointRequest::EndpointAdd(spec) => {
                let spec = check(&spec, ctx)?;
                let change = Change::put("endpoints", &spec);
                self.list.insert((spec.vni, spec.ip), spec);
                change
            }
            EndpointRequest::EndpointDel { vni, ip } => {
                let e = self.list.get(&(vni, ip)).ok_or_else(|| format!("ip: network {vni} has no endpoint {ip}"))?;
                if let Some(c) = &e.container {
                    return Err(format!(
                        "ip: {ip} is container {c}'s address; it goes when its runtime deletes the attachment (CNI DEL)"
                    ));
                }
                self.list.remove(&(vni, ip));
                Change::del("endpoints", json!([vni, ip.to_string()]))
            }
        };
        Ok(Handled::change(Value::Null, vec![change]))
    }

    /// Sets (or with `None` removes) another node's address `ip` of `vni`: its MAC and
    /// that node's VTEP. True if the tables change.
    pub fn set_cluster(&mut self, vni: u32, ip: IpAddr, at: Option<(Mac, std::net::Ipv4Addr)>) -> bool {
        let old = match at {
            Some(a) => self.from_cluster.insert((vni, ip), a),
            None => self.from_cluster.remove(&(vni, ip)),
        };
        old != at
    }

    /// The entries behind local ports (static and CNI): what this node publishes.
    pub fn local(&self) -> impl Iterator<Item = &EndpointSpec> {
        self.list.values().filter(|e| e.port.is_some())
    }

    /// The VTEPs static entries are behind (`--vtep`).
    pub fn vteps(&self) -> std::collections::BTreeSet<std::net::Ipv4Addr> {
        self.list.values().filter_map(|e| e.vtep).collect()
    }

    /// Whether a static entry holds `ip` of `vni`.
    pub fn holds(&self, vni: u32, ip: IpAddr) -> bool {
        self.list.contains_key(&(vni, ip))
    }

    fn views(&self, vni: Option<u32>, ports: &[PortRef]) -> Vec<EndpointView> {
        let now = Instant::now();
        let statics = self.list.values().map(|e| EndpointView {
            vni: e.vni,
            ip: e.ip,
            mac: e.mac.clone(),
            port: e.port.clone(),
            vtep: e.vtep,
            source: if e.container.is_some() { "cni" } else { "static" }.into(),
            age: None,
            container: e.container.clone(),
            netns: e.netns.clone(),
        });
        let cluster =
            self.from_cluster.iter().filter(|(k, _)| !self.list.contains_key(k)).map(|(&(vni, ip), (mac, vtep))| {
                EndpointView {
                    vni,
                    ip,
                    mac: mac.to_string(),
                    port: None,
                    vtep: Some(*vtep),
                    source: "cluster".into(),
                    age: None,
                    container: None,
                    netns: None,
                }
            });
        let shadowed = |k: &(u32, IpAddr)| self.list.contains_key(k) || self.from_cluster.contains_key(k);
        let learned = self.learned.iter().filter(|(k, _)| !shadowed(k)).map(|(&(vni, ip), l)| EndpointView {
            vni,
            ip,
            mac: l.mac.to_string(),
            port: ports.iter().find(|p| p.id == Some(l.port)).map(|p| p.name.clone()),
            vtep: None,
            source: "learned".into(),
            age: Some(now.duration_since(l.last_seen).as_secs()),
            container: None,
            netns: None,
        });
        let mut all: Vec<EndpointView> =
            statics.chain(cluster).chain(learned).filter(|e| vni.is_none_or(|v| v == e.vni)).collect();
        all.sort_by_key(|e| (e.vni, e.ip));
        all
    }

    /// What a core saw a VM say of an address (`ev.ip`): learned at its port unless a
    /// static entry holds the address. True if the tables change.
    pub fn learn(&mut self, ev: &LearnEvent, ports: &[PortRef], now: Instant) -> bool {
        let FibTarget::Port(port) = ev.target else { return false };
        let in_network = ports.iter().any(|p| p.id == Some(port) && p.vni == Some(ev.vni));
        let ip = ip_addr(ev.ip);
        if !in_network || self.list.contains_key(&(ev.vni, ip)) {
            return false;
        }
        match self.learned.get_mut(&(ev.vni, ip)) {
            Some(l) if l.mac == ev.mac && l.port == port => {
                l.last_seen = now;
                false
            }
            Some(l) => {
                *l = Learned { mac: ev.mac, port, last_seen: now };
                true
            }
            None => {
                let n = self.learned_per_vni.entry(ev.vni).or_default();
                if *n >= MAX_LEARNED {
                    self.refused += 1;
                    return false;
                }
                *n += 1;
                self.learned.insert((ev.vni, ip), Learned { mac: ev.mac, port, last_seen: now });
                true
            }
        }
    }

    /// Forgets learned addresses not heard of for `LEARNED_AGING`. True if any went.
    pub fn age(&mut self, now: Instant) -> bool {
        self.forget(|l| now.duration_since(l.last_seen) >= LEARNED_AGING)
    }

    fn forget(&mut self, gone: impl Fn(&Learned) -> bool) -> bool {
        let before = self.learned.len();
        let per = &mut self.learned_per_vni;
        self.learned.retain(|(vni, _), l| {
            let keep = !gone(l);
            if !keep {
                *per.entry(*vni).or_default() -= 1;
            }
            keep
        });
        self.learned.len() != before
    }
}

impl Feature for Endpoints {
    fn network_in_use(&self, vni: u32) -> Option<String> {
        let mut static_ = self.list.keys().filter(|(v, _)| *v == vni);
        let (_, ip) = static_.next()?;
        Some(format!(
            "network {vni} still has static endpoints ({}); delete them first (vswitchctl endpoint del {vni} {ip})",
            1 + static_.count()
        ))
    }

    /// What was learned in it (behind the uplink, say) and what the switch was asking.
    fn network_removed(&mut self, vni: u32) -> Vec<Change> {
        self.learned.retain(|(v, _), _| *v != vni);
        self.learned_per_vni.remove(&vni);
        self.asking.retain(|(v, _), _| *v != vni);
        Vec::new()
    }

    /// An endpoint behind a port goes with it (and what was learned there).
    fn port_removed(&mut self, port: &PortRef) -> Vec<Change> {
        if let Some(id) = port.id {
            self.forget(|l| l.port == id);
        }
        let gone: Vec<_> =
            self.list.iter().filter(|(_, e)| e.port.as_ref() == Some(&port.name)).map(|(k, _)| *k).collect();
        gone.into_iter()
            .map(|(vni, ip)| {
                self.list.remove(&(vni, ip));
                Change::del("endpoints", json!([vni, ip.to_string()]))
            })
            .collect()
    }

    fn desired(&self, out: &mut DesiredState) {
        out.endpoints = self.list.values().cloned().collect();
    }

    fn adopt(&mut self, state: &DesiredState, ctx: &Ctx) -> Result<(), String> {
        let mut list = BTreeMap::new();
        for e in &state.endpoints {
            let e = check(e, ctx).map_err(|why| format!("endpoints ({} {}): {why}", e.vni, e.ip))?;
            list.insert((e.vni, e.ip), e);
        }
        self.list = list;
        Ok(())
    }

    fn compile(&mut self, ports: &[PortRef], _cores: usize, t: &mut Tables) {
        let mut table = pipelines::gateway::Endpoints::default();
        for (&(vni, ip), l) in &self.learned {
            if t.l2.networks.contains_key(&vni) && ports.iter().any(|p| p.id == Some(l.port) && p.vni == Some(vni)) {
                table.insert(vni, ip_key(ip), Endpoint { mac: l.mac });
            }
        }
        for (&(vni, ip), (mac, _)) in &self.from_cluster {
            if t.l2.networks.contains_key(&vni) {
                table.insert(vni, ip_key(ip), Endpoint { mac: *mac });
            }
        }
        for e in self.list.values() {
            let Ok(mac) = e.mac.parse::<Mac>() else { continue };
            if !t.l2.networks.contains_key(&e.vni) {
                continue;
            }
            table.insert(e.vni, ip_key(e.ip), Endpoint { mac });
            // The MAC is known to be there before it says anything: no flood to reach
            // it. What learning or a static FIB entry says wins.
            let at = e.port.as_ref().and_then(|n| ports.iter().find(|p| &p.name == n)).and_then(|p| p.id);
            let target = at.map(FibTarget::Port).or(e.vtep.map(|ip| FibTarget::Vtep(u32::from(ip))));
            if let Some(target) = target {
                if t.l2.lookup(e.vni, mac).is_none() {
                    t.l2.fib_insert(e.vni, mac, FibEntry { target, is_static: false });
                }
            }
        }
        t.l2.endpoints = Arc::new(table);
    }
}
