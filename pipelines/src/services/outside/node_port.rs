//! NodePort (`service add --node-port`): the outside reaches a service at a port of the
//! host's address; a host port mapping is a service with only that.
//!
//! Any backend may answer, as Kubernetes' `externalTrafficPolicy: Cluster` has it. A
//! backend on this host sees the client's own address. A backend behind another switch
//! is called from the host's address too (SNAT, as kube-proxy and Cilium do there): its
//! answers must come back to this switch, which holds the connection, and they do,
//! through the tunnel, because the host's address is a VTEP of the backend's network.
//! With the local policy (`externalTrafficPolicy: Local`) only backends on this host
//! are picked.
use super::free_port;
use crate::{
    conntrack::{CtKey, NatKey},
    gateway::locate,
    meta::{IpKey, Meta},
    services::{rewrite, stage::held_or_picked, At, End, ServiceTables},
    tables::{FibTarget, L2Tables},
    wire::Mac,
    DropReason, Frame,
};

/// The backend's end of a NodePort connection's key (its inside side): the end that is
/// not the client, nor the host's (where the connection was called from the host).
fn backend_end(k: &CtKey, client: (IpKey, u16), host: IpKey) -> Option<(IpKey, u16)> {
    k.other_end(client).or(k.end_at(host).map(|(_, backend)| backend))
}

/// A packet to a NodePort: DNAT to one of the service's backends (and SNAT to the host's
/// address for a backend behind another switch), held by the connection's session as
/// for the VIP. Returns where the backend is (its MAC and the port or VTEP behind it).
pub(super) fn node_port<F: Frame>(
    t: &L2Tables,
    services: &ServiceTables,
    at: &At,
    (outside, h): (CtKey, u64),
    f: &mut F,
    m: &mut Meta,
) -> Option<Result<(Mac, FibTarget), DropReason>> {
    let np = services.at_node_port(m.dport, m.proto)?;
    let svc = &np.vip.service;
    let host = super::host_address(t, m)?;
    let client = (m.ip_src, m.sport);
    let held = at.table.lookup_nat(&outside, h).and_then(|s| Some((s, at.table.key_of(s.index)?)));
    // The host's port of a connection called from the host, as its session has it.
    let called_from = held.and_then(|(_, k)| k.end_at(host)).map(|(at_host, _)| at_host);
    let pick = || np.pick(client.0, h, at.now, at.seed, at.dry);
    let (i, found) = match held_or_picked(svc, at, held, |k| backend_end(k, client, host), pick) {
        Ok(picked) => picked,
        Err(r) => return Some(Err(r)),
    };
    // (A service's backends are of one family, which the node port's must be.)
    let v4 = m.ip_version == 4;
    let Some(to) = np.vip.to_backend.get(i as usize).filter(|to| (to.backend.ip >> 32 == 0xffff) == v4) else {
        return Some(Err(DropReason::NoBackend));
    };
    let b = &to.backend;
    let Some(place) = locate(t, svc.vni, b.ip, to.mac) else {
        // Named in the metadata, for the switch to ask its network who holds it.
        (m.vni, m.ip_dst) = (svc.vni, b.ip);
        return Some(Err(DropReason::NoEndpoint));
    };
    if !at.dry {
        np.vip.counters.count(at.core, i as usize, f.len() as u64, found.is_none());
    }
    if !rewrite(f, m, End::Dst, b.ip, b.port) {
        return Some(Err(DropReason::CtInvalid));
    }
    m.vni = svc.vni;
    let snat = match (found, called_from) {
        (Some(_), from) => from.map(|(_, port)| port),
        (None, _) if matches!(place.1, FibTarget::Vtep(_)) => match free_port(at, (svc.vni, host), m, h) {
            Some(port) => Some(port),
            None => return Some(Err(DropReason::SnatNoPort)),
        },
        (None, _) => None,
    };
    if snat.is_some_and(|port| !rewrite(f, m, End::Src, host, port)) {
        return Some(Err(DropReason::CtInvalid));
    }
    // (Also for a found session: a SYN that reopens it makes a new one.)
    let nat = NatKey { key: outside, service: svc.id, pick: 0 };
    Some(at.track(Some(&nat), found, f, m).map(|()| place))
}
