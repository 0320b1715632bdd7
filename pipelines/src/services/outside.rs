//! North-south, as Docker's bridge and Cilium give containers: VMs reach addresses
//! outside their network from the host's address on the uplink (egress masquerade,
//! `network add --snat`), and the outside reaches a service through a port of that
//! address (`service add --node-port`). Both live in connection-tracking sessions whose
//! outside side is keyed in zone `OUTSIDE`, so what comes back by the uplink finds its
//! session with one lookup, and a VM's packets find theirs by the key they were sent with.
use super::{maglev::fmix64, rewrite, Backend, End, ServiceTables};
use crate::{
    conntrack::{
        table::{hash, Found},
        CtKey, NatKey, Tuple,
    },
    gateway::{set_macs, spend_hop, GATEWAY_MAC},
    meta::{ipv4_key, Action, IpKey, Meta},
    tables::{FibTarget, L2Tables},
    wire::ipv4,
    DropReason, Frame,
};

/// The zone of sessions' outside keys: hashed apart from every VNI's; a key read back
/// from the table keeps only its low 24 bits (`is_outside`).
pub const OUTSIDE: u32 = 1 << 30;

/// Whether a zone read back from the table is `OUTSIDE` (no network has zone 0).
#[inline]
pub fn is_outside(zone: u32) -> bool {
    zone == OUTSIDE & crate::conntrack::key::ZONE_BITS
}
/// Ports of the host address masqueraded connections get (NodePorts are below).
pub const SNAT_PORTS: (u16, u16) = (32768, 65535);
/// Ports tried for a new masqueraded connection before it is refused.
const SNAT_TRIES: u64 = 32;

/// A packet that may be translated here: TCP or UDP over IPv4, whole.
#[inline]
fn ip4_ports(m: &Meta) -> bool {
    m.action == Action::Continue
        && m.ip_version == 4
        && m.l4 != 0
        && !m.fragment
        && matches!(m.proto, ipv4::PROTO_TCP | ipv4::PROTO_UDP)
}

const ECHO_REPLY: u16 = 0;
pub const ECHO_REQUEST: u16 = 8;

/// An ICMP echo request (`ECHO_REQUEST`) or reply over IPv4, whole: masqueraded by its
/// identifier as TCP and UDP are by their ports.
#[inline]
pub fn ip4_echo(m: &Meta, ty: u16) -> bool {
    m.action == Action::Continue
        && m.ip_version == 4
        && m.l4 != 0
        && !m.fragment
        && m.proto == ipv4::PROTO_ICMP
        && m.sport == ty
}

/// An echo's identifier (0 if the header is cut).
fn echo_id<F: Frame>(f: &F, m: &Meta) -> u16 {
    let at = m.l4 as usize + 4;
    f.head().get(at..at + 2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
}

/// An echo's source or destination address and its identifier rewritten (the ICMP
/// checksum covers the identifier, not the addresses); false if the header is cut.
fn rewrite_echo<F: Frame>(f: &mut F, m: &mut Meta, end: End, ip: IpKey, id: u16) -> bool {
    let (l3, l4) = (m.l3 as usize, m.l4 as usize);
    let old_id = echo_id(f, m);
    let b = f.head_mut();
    if b.len() < l4 + 8 || b.len() < l3 + ipv4::MIN_LEN {
        return false;
    }
    let at = if end == End::Src { l3 + ipv4::SRC } else { l3 + ipv4::DST };
    let old_ip = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let words = |a: u32| [(a >> 16) as u16, a as u16].into_iter();
    let d = crate::wire::word_change(words(old_ip), words(ip as u32));
    crate::wire::adjust_checksum(&mut b[l3 + ipv4::CHECKSUM..l3 + ipv4::CHECKSUM + 2], d, true);
    b[at..at + 4].copy_from_slice(&(ip as u32).to_be_bytes());
    crate::wire::update_checksum(&mut b[l4 + 2..l4 + 4], old_id, id);
    b[l4 + 4..l4 + 6].copy_from_slice(&id.to_be_bytes());
    match end {
        End::Src => m.ip_src = ip,
        End::Dst => m.ip_dst = ip,
    }
    true
}

/// The key of an echo as connection tracking keys it (the identifier on both ends).
fn echo_key(m: &Meta, zone: u32, id: u16) -> CtKey {
    Tuple { zone, proto: ipv4::PROTO_ICMP, src: (m.ip_src, id), dst: (m.ip_dst, id) }.key().0
}

/// A VM's ping to an address outside its network: from the host's address, with an
/// identifier free there toward that address (its own if it is).
fn masquerade_echo<F: Frame>(t: &L2Tables, at: &super::At, f: &mut F, m: &mut Meta) -> Result<Action, DropReason> {
    let Some(v) = &t.vtep else { return Err(DropReason::NoVtep) };
    let host = ipv4_key(v.ip);
    let id = echo_id(f, m);
    let inside = echo_key(m, m.vni, id);
    let h = hash(&inside);
    let found = at.table.lookup_nat(&inside, h);
    let held = found.and_then(|s| at.table.key_of(s.index)).map(|k| if k.lo.0 == host { k.lo.1 } else { k.hi.1 });
    let outside_id = match held {
        Some(held) => held,
        None => std::iter::once(id)
            .chain((0..SNAT_TRIES).map(|i| fmix64(h ^ i) as u16))
            .find(|&c| {
                let k = Tuple { zone: OUTSIDE, proto: ipv4::PROTO_ICMP, src: (host, c), dst: (m.ip_dst, c) }.key().0;
                at.table.lookup(&k, hash(&k)).is_none()
            })
            .ok_or(DropReason::SnatNoPort)?,
    };
    leave(t, at, (inside, found), f, m, |f, m| rewrite_echo(f, m, End::Src, host, outside_id))
}

/// A masqueraded packet's way out: rewritten to the host side by `to_host`, tracked in
/// zone `OUTSIDE` (its session, or a new one remembering the `inside` key), routed out
/// by the uplink.
fn leave<F: Frame>(
    t: &L2Tables,
    at: &super::At,
    (inside, found): (CtKey, Option<Found>),
    f: &mut F,
    m: &mut Meta,
    to_host: impl FnOnce(&mut F, &mut Meta) -> bool,
) -> Result<Action, DropReason> {
    let vni = m.vni;
    if !to_host(f, m) {
        return Err(DropReason::CtInvalid);
    }
    m.vni = OUTSIDE;
    let nat = found.is_none().then_some(NatKey { key: inside, service: 0 });
    let tracked = at.track(nat, found, f, m);
    m.vni = vni;
    tracked?;
    Ok(route_out(t, f, m))
}

/// An echo reply from outside to a VM's masqueraded ping.
fn returning_echo<F: Frame>(t: &L2Tables, at: &super::At, f: &mut F, m: &mut Meta) -> Option<Action> {
    let key = echo_key(m, OUTSIDE, echo_id(f, m));
    let found = at.table.lookup(&key, hash(&key))?;
    let nat = at.table.nat_of(found.index)?;
    // The VM's end of its own key: not the outside address.
    let inside = if nat.key.lo.0 == m.ip_src { nat.key.hi } else { nat.key.lo };
    if let Err(r) = at.track(None, Some(found), f, m) {
        return Some(Action::Drop(r));
    }
    if !rewrite_echo(f, m, End::Dst, inside.0, inside.1) {
        return Some(Action::Drop(DropReason::CtInvalid));
    }
    m.vni = nat.key.zone;
    Some(deliver(t, f, m))
}

/// Sends a packet whose destination is outside by the uplink: its next hop's MAC (the
/// address itself on-link, else the underlay's router), the host's MAC, a hop spent.
pub fn route_out<F: Frame>(t: &L2Tables, f: &mut F, m: &mut Meta) -> Action {
    let Some(v) = &t.vtep else { return Action::Drop(DropReason::NoVtep) };
    let Some(mac) = t.underlay.next_hop_mac(m.ip_dst as u32) else {
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

/// Delivers a packet from outside, translated into network `m.vni`, to the VM holding
/// its destination (routed by the gateway: its MAC as the source, a hop spent).
fn deliver<F: Frame>(t: &L2Tables, f: &mut F, m: &mut Meta) -> Action {
    let Some(ep) = t.endpoints.get(m.vni, m.ip_dst) else { return Action::Drop(DropReason::NoEndpoint) };
    let mac = ep.mac;
    match t.lookup(m.vni, mac).map(|e| e.target) {
        Some(FibTarget::Port(p)) => {
            if !spend_hop(f, m) {
                return Action::Drop(DropReason::TtlExceeded);
            }
            set_macs(f, m, mac, GATEWAY_MAC);
            Action::Tx(p)
        }
        _ => Action::Drop(DropReason::NoEndpoint),
    }
}

/// A new masqueraded connection's port on the host address toward the packet's
/// destination: its own source port if free there, else one by its hash; None if
/// `SNAT_TRIES` are all taken.
fn free_port(at: &super::At, m: &Meta, host: IpKey, h: u64) -> Option<u16> {
    let (lo, hi) = SNAT_PORTS;
    let span = (hi - lo) as u64 + 1;
    let own = (lo..=hi).contains(&m.sport).then_some(m.sport);
    let hashed = (0..SNAT_TRIES).map(|i| lo + (fmix64(h ^ i) % span) as u16);
    own.into_iter().chain(hashed).find(|&p| {
        let k = Tuple { zone: OUTSIDE, proto: m.proto, src: (host, p), dst: (m.ip_dst, m.dport) }.key().0;
        at.table.lookup(&k, hash(&k)).is_none()
    })
}

/// The end of `k` that is not `not`.
fn other_end(k: &CtKey, not: (IpKey, u16)) -> Option<(IpKey, u16)> {
    match not {
        n if n == k.lo => Some(k.hi),
        n if n == k.hi => Some(k.lo),
        _ => None,
    }
}

/// A VM's packet to the gateway for an address outside its network (`masquerades`):
/// from the host's address and the connection's port there, out by the uplink.
pub fn masquerade<F: Frame>(t: &L2Tables, at: &super::At, f: &mut F, m: &mut Meta) -> Result<Action, DropReason> {
    if ip4_echo(m, ECHO_REQUEST) {
        return masquerade_echo(t, at, f, m);
    }
    if !ip4_ports(m) {
        return Err(DropReason::NoEndpoint);
    }
    let Some(v) = &t.vtep else { return Err(DropReason::NoVtep) };
    let host = ipv4_key(v.ip);
    let (inside, _) = Tuple::of_ports(m).key();
    let h = hash(&inside);
    let found = at.table.lookup_nat(&inside, h);
    let held = found.and_then(|s| at.table.key_of(s.index)).and_then(|k| other_end(&k, (m.ip_dst, m.dport)));
    let port = match held {
        Some((ip, port)) if ip == host => port,
        _ => free_port(at, m, host, h).ok_or(DropReason::SnatNoPort)?,
    };
    leave(t, at, (inside, found), f, m, |f, m| rewrite(f, m, End::Src, host, port))
}

/// A packet from outside by the uplink, to the host's address: a reply of a
/// masqueraded connection, or to a NodePort. None: neither (the uplink's drop stands).
pub fn from_outside<F: Frame>(t: &L2Tables, at: &super::At, f: &mut F, m: &mut Meta) -> Option<Action> {
    let v = t.vtep.as_ref()?;
    if m.ip_dst != ipv4_key(v.ip) {
        return None;
    }
    m.vni = OUTSIDE;
    if ip4_echo(m, ECHO_REPLY) {
        return returning_echo(t, at, f, m);
    }
    if !ip4_ports(m) {
        return None;
    }
    let (outside, _) = Tuple::of_ports(m).key();
    let h = hash(&outside);
    let done = match at.table.lookup(&outside, h) {
        Some(found) => returning(at, found, f, m)?,
        None => node_port(&t.services, at, outside, h, f, m)?,
    };
    Some(match done {
        Ok(()) => deliver(t, f, m),
        Err(r) => Action::Drop(r),
    })
}

/// A reply from outside to a masqueraded connection: back to the VM's address and port,
/// in its network. (A NodePort's sessions are keyed by the outside in their `Nat` key,
/// which `lookup` does not find.)
fn returning<F: Frame>(at: &super::At, found: Found, f: &mut F, m: &mut Meta) -> Option<Result<(), DropReason>> {
    let nat = at.table.nat_of(found.index)?;
    let inside = other_end(&nat.key, (m.ip_src, m.sport))?;
    if let Err(r) = at.track(None, Some(found), f, m) {
        return Some(Err(r));
    }
    if !rewrite(f, m, End::Dst, inside.0, inside.1) {
        return Some(Err(DropReason::CtInvalid));
    }
    m.vni = nat.key.zone;
    Some(Ok(()))
}

/// A packet to a NodePort: DNAT to one of the service's backends on this host (a
/// backend behind another switch would answer through that switch's gateway, which
/// does not hold the connection), held by the connection's session as for the VIP.
fn node_port<F: Frame>(
    services: &ServiceTables,
    at: &super::At,
    outside: CtKey,
    h: u64,
    f: &mut F,
    m: &mut Meta,
) -> Option<Result<(), DropReason>> {
    let np = services.at_node_port(m.dport, m.proto)?;
    let svc = &np.vip.service;
    let client = (m.ip_src, m.sport);
    let held = at.table.lookup_nat(&outside, h);
    let kept = held
        .and_then(|s| Some((s, at.table.key_of(s.index)?)))
        .and_then(|(s, k)| Some((s, other_end(&k, client)?)))
        .and_then(|(s, b)| Some((s, svc.index_of(Backend { ip: b.0, port: b.1 })?)));
    let (i, found) = match (kept, held) {
        (Some((s, i)), _) => (i, Some(s)),
        (None, stale) => {
            if let (Some(s), false) = (stale, at.dry) {
                at.table.kill(s.index, s.gen);
            }
            match np.pick_local(h) {
                Some(i) => (i, None),
                None => return Some(Err(DropReason::NoBackend)),
            }
        }
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
