//! NodePort (`service add --node-port`): the outside reaches a service at a port of the
//! host's address; a host port mapping is a service with only that.
use crate::{
    conntrack::{CtKey, NatKey},
    meta::Meta,
    services::{rewrite, stage::held_or_picked, At, End, ServiceTables},
    DropReason, Frame,
};

/// A packet to a NodePort: DNAT to one of the service's backends on this host (a
/// backend behind another switch would answer through that switch's gateway, which
/// does not hold the connection), held by the connection's session as for the VIP.
pub(super) fn node_port<F: Frame>(
    services: &ServiceTables,
    at: &At,
    outside: CtKey,
    h: u64,
    f: &mut F,
    m: &mut Meta,
) -> Option<Result<(), DropReason>> {
    let np = services.at_node_port(m.dport, m.proto)?;
    let svc = &np.vip.service;
    let client = (m.ip_src, m.sport);
    let held = at.table.lookup_nat(&outside, h).and_then(|s| Some((s, at.table.key_of(s.index)?)));
    let (i, found) = match held_or_picked(svc, at, held, |k| k.other_end(client), || np.pick_local(h)) {
        Ok(picked) => picked,
        Err(r) => return Some(Err(r)),
    };
    let Some(b) = svc.backends.get(i as usize) else { return Some(Err(DropReason::NoBackend)) };
    if !at.dry {
        np.vip.counters.count(at.core, i as usize, f.len() as u64, found.is_none());
    }
    if !rewrite(f, m, End::Dst, b.ip, b.port) {
        return Some(Err(DropReason::CtInvalid));
    }
    m.vni = svc.vni;
    let nat = found.is_none().then_some(NatKey { key: outside, service: svc.id });
    Some(at.track(nat, found, f, m))
}
