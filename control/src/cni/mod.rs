//! Containers that attach themselves: what `vswitch-cni` (the CNI plugin, a thin
//! client of the API socket) asks, and what vswitchd keeps of it. An attachment is a
//! veth pair into the container's namespace (`link`), a kernel port on its host end in
//! the network's VNI, the container's addresses in the endpoint table, and, with the
//! built-in IPAM, leases that follow the workload's identity (`ipam`). Attachments and
//! leases are desired state like any other (journalled before the reply), so a
//! restarted vswitchd attaches every container again without the runtime.
pub mod api;
pub mod cli;
mod handle;
pub mod ipam;
mod link;
pub mod plugin;
pub mod spec;
#[cfg(test)]
mod tests;

use crate::{
    feature::{Ctx, Feature, Tables},
    ports::PortRef,
    state::DesiredState,
    store::change::Change,
};
use api::{AttachmentKey, AttachmentSpec, LeaseView};
use pipelines::services::maglev::fnv1a;
use std::collections::BTreeMap;

/// Host ends of container veths are named this and 12 hex digits of their
/// attachment's hash (15 characters, the kernel's limit).
pub const HOST_PREFIX: &str = "vsc";

#[derive(Default)]
pub struct Cni {
    pub(crate) attachments: BTreeMap<AttachmentKey, AttachmentSpec>,
    pub(crate) leases: ipam::Leases,
    /// In a cluster: the address blocks this node holds, by (VNI, subnet); new
    /// addresses come only from them. None outside a cluster.
    pub(crate) blocks: Option<BTreeMap<(u32, ipnetwork::IpNetwork), Vec<ipnetwork::IpNetwork>>>,
    /// Opened at the first request that needs it.
    netlink: Option<rtnetlink::Handle>,
}

/// The host end's name (also the switch port's) of an attachment: the same for the
/// same attachment every time, so a DEL finds what a crashed ADD left.
pub fn host_iface(key: &AttachmentKey) -> String {
    let h = fnv1a([key.network.as_bytes(), key.container.as_bytes(), key.ifname.as_bytes()].join(&0u8));
    format!("{HOST_PREFIX}{:012x}", h >> 16)
}

/// Seconds since the Unix epoch: leases outlive the process, so their clock is the wall's.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Cni {
    fn netlink(&mut self) -> Result<rtnetlink::Handle, String> {
        if let Some(h) = &self.netlink {
            return Ok(h.clone());
        }
        let h = link::host()?;
        self.netlink = Some(h.clone());
        Ok(h)
    }

    pub fn lease_views(&self, vni: Option<u32>) -> Vec<LeaseView> {
        let now = unix_now();
        self.leases
            .by_ip
            .values()
            .filter(|l| vni.is_none_or(|v| v == l.vni))
            .map(|l| LeaseView { lease: l.clone(), state: ipam::state(l, now).into() })
            .collect()
    }

    /// The attachment whose port this is.
    pub fn owner_of_port(&self, port: &str) -> Option<&AttachmentSpec> {
        self.attachments.values().find(|a| a.port == port)
    }

    /// Puts into `state` (a file being applied) the attachments, their ports, endpoints,
    /// security groups and meters, and the leases the switch holds now: they are the runtime's, not the
    /// operator's, and an apply neither drops nor changes them. Reservations of a network
    /// the file leaves out go with it, as at `network del`.
    pub fn carry_into(&self, state: &mut DesiredState, running: &DesiredState) {
        state.attachments = running.attachments.clone();
        state.leases = running.leases.clone();
        drop_orphaned_reservations(state);
        for a in &running.attachments {
            let port = a.port.as_str();
            let own = |p: &Option<String>| p.as_deref() == Some(port);
            carry(&mut state.ports, &running.ports, |p| p.name == port);
            carry(&mut state.endpoints, &running.endpoints, |e| own(&e.port));
            carry(&mut state.acl, &running.acl, |r| own(&r.port));
            carry(&mut state.stateful, &running.stateful, |s| s.port == port);
            carry(&mut state.qos, &running.qos, |q| q.port == port);
            carry(&mut state.services, &running.services, |v| handle::is_mapping_of(&v.name, port));
            state.acl_defaults.remove(port);
            if let Some(d) = running.acl_defaults.get(port) {
                state.acl_defaults.insert(port.to_string(), *d);
            }
        }
    }
}

/// Drops the reservations (leases no container holds) of networks `state` does not
/// have: a reservation goes with its network, whichever way the network went.
pub fn drop_orphaned_reservations(state: &mut DesiredState) {
    let networks = &state.networks;
    state.leases.retain(|l| l.container.is_some() || networks.iter().any(|n| n.vni == l.vni));
}

/// The entries of `section` that `owned` picks become the running state's.
fn carry<T: Clone>(section: &mut Vec<T>, running: &[T], owned: impl Fn(&T) -> bool) {
    section.retain(|e| !owned(e));
    section.extend(running.iter().filter(|e| owned(e)).cloned());
}

impl Feature for Cni {
    fn port_in_use(&self, name: &str) -> Option<String> {
        self.owner_of_port(name).map(|a| {
            format!(
                "port {name} is container {}'s interface {} in network {:?}; its runtime removes it (CNI DEL)",
                a.container, a.ifname, a.network
            )
        })
    }

    fn network_in_use(&self, vni: u32) -> Option<String> {
        let mut held = self.leases.by_ip.values().filter(|l| l.vni == vni && l.container.is_some());
        let first = held.next()?;
        Some(format!(
            "network {vni} still has containers attached ({}, e.g. {} at {}); their runtime removes them (CNI DEL)",
            1 + held.count(),
            first.container.as_deref().unwrap_or_default(),
            first.ip
        ))
    }

    /// Reservations name their network: they go with it (a workload created again
    /// in a new network of that VNI gets a new address).
    fn network_removed(&mut self, vni: u32) -> Vec<Change> {
        let gone: Vec<_> = self.leases.by_ip.keys().filter(|(v, _)| *v == vni).copied().collect();
        gone.into_iter()
            .map(|(vni, ip)| {
                self.leases.by_ip.remove(&(vni, ip));
                Change::del("leases", serde_json::json!([vni, ip.to_string()]))
            })
            .collect()
    }

    fn desired(&self, out: &mut DesiredState) {
        out.attachments = self.attachments.values().cloned().collect();
        out.leases = self.leases.by_ip.values().cloned().collect();
    }

    fn adopt(&mut self, state: &DesiredState, ctx: &Ctx) -> Result<(), String> {
        let mut attachments = BTreeMap::new();
        for a in &state.attachments {
            if !ctx.ports.iter().any(|p| p.name == a.port) {
                return Err(format!("attachments ({} of container {}): no port {:?}", a.ifname, a.container, a.port));
            }
            attachments.insert(a.key(), a.clone());
        }
        let mut leases = ipam::Leases::default();
        for l in &state.leases {
            if !(ctx.has_network)(l.vni) {
                return Err(format!("leases ({} of {:?}): no network {}", l.ip, l.identity, l.vni));
            }
            leases.by_ip.insert((l.vni, l.ip), l.clone());
        }
        self.attachments = attachments;
        self.leases = leases;
        Ok(())
    }

    fn compile(&mut self, _ports: &[PortRef], _cores: usize, _t: &mut Tables) {}
}
