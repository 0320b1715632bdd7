//! North-south, as Docker's bridge and Cilium give containers: VMs reach addresses
//! outside their network from the host's address on the uplink (egress masquerade,
//! `network add --snat`), and the outside reaches a service through a port of that
//! address (`service add --node-port`). Both live in connection-tracking sessions whose
//! outside side is keyed in zone `OUTSIDE`, so what comes back by the uplink finds its
//! session with one lookup, and a VM's packets find theirs by the key they were sent with.
mod echo;
mod masquerade;
mod node_port;

pub use echo::{is_echo, Echo};
pub use masquerade::SNAT_PORTS;

use masquerade::free_port;

use super::{
    icmp::{icmp_error, rewrite_error},
    At, End,
};
use crate::{
    conntrack::{
        key::{classify, Kind},
        table::Found,
        CtKey, NatKey, Tuple,
    },
    gateway::{locate, set_macs, spend_hop, GATEWAY_MAC},
    meta::{ipv4_key, Action, IpKey, Meta},
    tables::{FibTarget, L2Tables},
    wire::{ipv4, Mac},
    DropReason, Frame,
};
use echo::returning_echo;
use masquerade::returning;

/// The zone of sessions' outside keys: 0, which no network has (a VNI is 1 or more),
/// and which a key keeps as it is when read back from the table (24 bits).
pub const OUTSIDE: u32 = 0;

/// A packet that may be translated here: TCP or UDP, whole.
#[inline]
fn ip_ports(m: &Meta) -> bool {
    m.action == Action::Continue && m.l4 != 0 && !m.fragment && matches!(m.proto, ipv4::PROTO_TCP | ipv4::PROTO_UDP)
}

/// The host's address on the uplink in the family of `m` (IPv6 only if configured).
#[inline]
pub(crate) fn host_address(t: &L2Tables, m: &Meta) -> Option<IpKey> {
    match m.ip_version {
        4 => Some(ipv4_key(t.vtep.as_ref()?.ip)),
        _ => t.underlay.host6,
    }
}

/// Sends a packet whose destination is outside by the uplink: its next hop's MAC (the
/// address itself on-link, else the underlay's router), the host's MAC, a hop spent.
pub fn route_out<F: Frame>(t: &L2Tables, f: &mut F, m: &mut Meta) -> Action {
    let Some(v) = &t.vtep else { return Action::Drop(DropReason::NoVtep) };
    let Some(mac) = t.underlay.next_hop(m.ip_dst) else {
        return Action::Drop(DropReason::NexthopUnresolved);
    };
    if f.len() - m.l3 as usize > v.mtu as usize {
        return Action::Drop(DropReason::MtuExceeded);
    }
    if !spend_hop(f, m) {
        return Action::Drop(DropReason::TtlExceeded);
    }
    set_macs(f, m, mac, v.mac);
    Action::Tx(v.uplink)
}

/// Sends a packet from outside, translated into network `m.vni`, to `place` (routed by
/// the gateway: its MAC as the source, a hop spent): a VM port of this switch, or a
/// remote VTEP through the tunnel.
fn send_to<F: Frame>(t: &L2Tables, (mac, target): (Mac, FibTarget), f: &mut F, m: &mut Meta) -> Action {
    if !spend_hop(f, m) {
        return Action::Drop(DropReason::TtlExceeded);
    }
    set_macs(f, m, mac, GATEWAY_MAC);
    match target {
        FibTarget::Port(p) => Action::Tx(p),
        FibTarget::Vtep(ip) => tunnel(t, f, m, ip),
    }
}

/// Encapsulates a routed packet of network `m.vni` toward remote VTEP `ip`.
pub(crate) fn tunnel<F: Frame>(t: &L2Tables, f: &mut F, m: &Meta, ip: u32) -> Action {
    let Some(vtep) = &t.vtep else { return Action::Drop(DropReason::NoVtep) };
    let Some(remote) = t.remotes.get(&ip) else { return Action::Drop(DropReason::NexthopUnresolved) };
    match crate::vxlan::encap(f, m, m.vni, remote, vtep, None) {
        Ok(()) => Action::Tx(vtep.uplink),
        Err(r) => Action::Drop(r),
    }
}

/// Delivers a packet from outside, translated into network `m.vni`, to the VM holding
/// its destination (a masqueraded connection's VM is on this switch).
fn deliver<F: Frame>(t: &L2Tables, f: &mut F, m: &mut Meta) -> Action {
    match locate(t, m.vni, m.ip_dst, None) {
        Some(place @ (_, FibTarget::Port(_))) => send_to(t, place, f, m),
        _ => Action::Drop(DropReason::NoEndpoint),
    }
}

/// A packet from outside by the uplink, to the host's address: a reply of a
/// masqueraded connection, or to a NodePort. None: neither (the uplink's drop stands).
pub fn from_outside<F: Frame>(t: &L2Tables, at: &At, f: &mut F, m: &mut Meta) -> Option<Action> {
    if Some(m.ip_dst) != host_address(t, m) {
        return None;
    }
    m.vni = OUTSIDE;
    if is_echo(m, Echo::Reply) {
        return returning_echo(t, at, f, m);
    }
    if icmp_error(f.head(), m) {
        return error_to_inside(t, at, f, m);
    }
    if !ip_ports(m) {
        return None;
    }
    let (outside, _) = Tuple::of_ports(m).key();
    let h = at.table.hash(&outside);
    let done = match at.table.lookup_live(&outside, h, at.now) {
        Some(found) => returning(at, found, f, m)?.map(|()| deliver(t, f, m)),
        None => node_port::node_port(t, &t.services, at, (outside, h), f, m)?.map(|place| send_to(t, place, f, m)),
    };
    Some(done.unwrap_or_else(Action::Drop))
}

/// An ICMP error from outside about a masqueraded connection (a port unreachable, a
/// fragmentation needed): its quote, of the packet as the host sent it, goes back to the
/// VM's address and port, and so does the error.
fn error_to_inside<F: Frame>(t: &L2Tables, at: &At, f: &mut F, m: &mut Meta) -> Option<Action> {
    let (_, Kind::Error(quoted)) = classify(f.head(), f.len(), m, OUTSIDE) else { return None };
    let (key, _) = quoted.key();
    let found = at.table.lookup_live(&key, at.table.hash(&key), at.now)?;
    let nat = at.table.nat_of(found.index)?;
    let inside = nat.key.other_end(quoted.dst)?;
    if let Err(r) = at.track(None, None, f, m) {
        return Some(Action::Drop(r));
    }
    if !rewrite_error(f, m, End::Src, quoted.src, inside) {
        return Some(Action::Drop(DropReason::CtInvalid));
    }
    m.vni = nat.key.zone;
    Some(deliver(t, f, m))
}

/// Ports tried for a new masqueraded connection before it is refused.
const SNAT_TRIES: u64 = 32;

/// A VM's packet to the gateway for an address outside its network (`masquerades`):
/// from the host's address and the connection's port (or ping identifier) there, out by
/// the uplink.
pub fn masquerade<F: Frame>(t: &L2Tables, at: &At, f: &mut F, m: &mut Meta) -> Result<Action, DropReason> {
    if is_echo(m, Echo::Request) {
        return echo::masquerade_echo(t, at, f, m);
    }
    masquerade::masquerade_ports(t, at, f, m)
}

/// A masqueraded packet's way out: rewritten to the host side by `to_host`, tracked in
/// zone `OUTSIDE` (its session, or a new one remembering the `inside` key), routed out
/// by the uplink.
fn leave<F: Frame>(
    t: &L2Tables,
    at: &At,
    (inside, found): (CtKey, Option<Found>),
    f: &mut F,
    m: &mut Meta,
    to_host: impl FnOnce(&mut F, &mut Meta) -> bool,
) -> Result<Action, DropReason> {
    let vni = m.vni;
    if !to_host(f, m) {
        return Err(DropReason::CtInvalid);
    }
    // (A hash an earlier step noted was of the packet before it was rewritten.)
    m.ct.hash = 0;
    m.vni = OUTSIDE;
    // (Also for a found session: a SYN that reopens it makes a new one.)
    let nat = NatKey { key: inside, service: 0, pick: 0 };
    let tracked = at.track(Some(&nat), found, f, m);
    m.vni = vni;
    tracked?;
    Ok(route_out(t, f, m))
}
