//! Egress masquerade (`network add --snat`): a VM's connection to an address outside
//! its network leaves from the host's address, at the VM's own port when it is free
//! there; replies find the session by its outside key and go back to the VM.
use super::{host_address, ip_ports, leave, OUTSIDE, SNAT_TRIES};
use crate::{
    conntrack::{table::Found, Tuple},
    meta::{Action, IpKey, Meta},
    services::{maglev::fmix64, rewrite, At, End},
    tables::L2Tables,
    DropReason, Frame,
};

/// Ports of the host address masqueraded connections get (NodePorts are below).
pub const SNAT_PORTS: (u16, u16) = (32768, 65535);

/// A new connection's port on the host address (in `zone`) toward the packet's
/// destination: its own source port if free there, else one by its hash; None if
/// `SNAT_TRIES` are all taken.
pub(super) fn free_port(at: &At, (zone, host): (u32, IpKey), m: &Meta, h: u64) -> Option<u16> {
    let (lo, hi) = SNAT_PORTS;
    let span = (hi - lo) as u64 + 1;
    let own = (lo..=hi).contains(&m.sport).then_some(m.sport);
    let hashed = (0..SNAT_TRIES).map(|i| lo + (fmix64(h ^ i) % span) as u16);
    own.into_iter().chain(hashed).find(|&p| {
        let k = Tuple { zone, proto: m.proto, src: (host, p), dst: (m.ip_dst, m.dport) }.key().0;
        at.table.lookup(&k, at.table.hash(&k)).is_none()
    })
}

/// A VM's packet to the gateway for an address outside its network (`masquerades`):
/// from the host's address and the connection's port there, out by the uplink.
pub(super) fn masquerade_ports<F: Frame>(t: &L2Tables, at: &At, f: &mut F, m: &mut Meta) -> Result<Action, DropReason> {
    if !ip_ports(m) {
        return Err(DropReason::NoEndpoint);
    }
    let Some(host) = host_address(t, m) else { return Err(DropReason::NoVtep) };
    let (inside, _) = Tuple::of_ports(m).key();
    let h = at.table.hash(&inside);
    let found = at.table.lookup_nat(&inside, h);
    let held = found.and_then(|s| at.table.key_of(s.index)).and_then(|k| k.other_end((m.ip_dst, m.dport)));
    let port = match held {
        Some((ip, port)) if ip == host => port,
        _ => free_port(at, (OUTSIDE, host), m, h).ok_or(DropReason::SnatNoPort)?,
    };
    leave(t, at, (inside, found), f, m, |f, m| rewrite(f, m, End::Src, host, port))
}

/// A reply from outside to a masqueraded connection: back to the VM's address and port,
/// in its network. (A NodePort's sessions are keyed by the outside in their `Nat` key,
/// which `lookup` does not find.)
pub(super) fn returning<F: Frame>(at: &At, found: Found, f: &mut F, m: &mut Meta) -> Option<Result<(), DropReason>> {
    let nat = at.table.nat_of(found.index)?;
    let inside = nat.key.other_end((m.ip_src, m.sport))?;
    if let Err(r) = at.track(None, Some(found), f, m) {
        return Some(Err(r));
    }
    if !rewrite(f, m, End::Dst, inside.0, inside.1) {
        return Some(Err(DropReason::CtInvalid));
    }
    m.vni = nat.key.zone;
    Some(Ok(()))
}
