//! The service stage: translation toward a backend (a VM's packets to a VIP) and back
//! (a backend's replies), with the connection tracked in the session that holds the
//! choice.
use super::{
    icmp::{icmp_error, rewrite_error},
    outside::{host_address, is_echo, masquerade, route_out, tunnel, Echo, OUTSIDE},
    rewrite, Backend, End, Service, ServiceTables, Vip,
};
use crate::{
    acl::{Direction, Verdict},
    conntrack::{
        self,
        key::{classify, Kind},
        table::Found,
        Checkpoint, CtKey, CtPort, CtTable, NatKey, Tuple,
    },
    gateway::{set_macs, spend_hop, GATEWAY_MAC},
    meta::{ipv4_key, Action, IpKey, Meta},
    tables::L2Tables,
    wire::ipv4,
    DropReason, Frame, PortId, BURST,
};

/// How a service's sessions are tracked where no stateful port asks for more: the
/// netfilter tracker as is, no rules to re-check.
const TRACKING: CtPort = CtPort { liberal: false, sticky: true, pickup: false, max_sessions: 0, epoch: 0 };

/// The packets a service stage looks at: TCP and UDP, whole (not a later fragment).
#[inline]
fn translatable(m: &Meta) -> bool {
    m.action == Action::Continue && m.l4 != 0 && matches!(m.proto, ipv4::PROTO_TCP | ipv4::PROTO_UDP)
}

/// Where a batch meets the services: the session table, the port it came in by, the
/// core, the time, and whether this is a trace (look, change nothing).
#[derive(Clone, Copy)]
pub struct At<'a> {
    pub table: &'a CtTable,
    pub port: PortId,
    pub core: usize,
    pub now: u32,
    /// Differs from batch to batch (the arrival TSC): random picks.
    pub seed: u64,
    pub dry: bool,
    /// The port's session limit, if it is stateful and has one (0: none): connections
    /// a service or the masquerade tracks count against it as its own do.
    pub limit: u32,
}

impl<'a> At<'a> {
    /// Where a batch from `port` meets the services, on `core`, at `clock`.
    pub fn new(t: &L2Tables, table: &'a CtTable, port: PortId, core: usize, clock: crate::learn::Clock) -> At<'a> {
        let limit = t.ct.port(port).map_or(0, |c| c.max_sessions);
        At { table, port, core, now: conntrack::now_ms(clock), seed: clock.now, dry: t.ct.dry, limit }
    }

    /// Tracks a translated (or to be translated) packet (of session `found`, if it is
    /// known); a new session is made with `nat`. The common packet, of a session that
    /// only counts it, is taken here; the rest out of line.
    #[inline(always)]
    pub(super) fn track<F: Frame>(&self, nat: Option<&NatKey>, found: Option<Found>, f: &F, m: &mut Meta) -> Tracked {
        if let (Some(found), false) = (&found, self.dry) {
            // (The tracker as is: `TRACKING` keeps a session that passed.)
            if conntrack::established(self.table, found, f, m, self.now) {
                return Ok(());
            }
        }
        self.decide(nat, found, f, m)
    }

    /// `track` by the whole tracker.
    #[inline(never)]
    fn decide<F: Frame>(&self, nat: Option<&NatKey>, found: Option<Found>, f: &F, m: &mut Meta) -> Tracked {
        let cfg = CtPort { max_sessions: self.limit, ..TRACKING };
        let cp = Checkpoint {
            table: self.table,
            port: self.port,
            cfg: &cfg,
            dir: Direction::In,
            core: self.core,
            now: self.now,
            dry: self.dry,
            nat,
            found,
        };
        conntrack::decide(&cp, f, m, |_, _| (Verdict::Allow, None)).1
    }
}

/// What tracking decided: the packet goes on, or its drop.
type Tracked = Result<(), DropReason>;

/// What a packet to the gateway addresses: a VIP's address, port and protocol.
type Addressed = (IpKey, u16, u8);

/// What the first pass found a packet to be.
#[derive(Clone, Copy)]
enum Seen<'s> {
    Other,
    /// To a VIP: its service, the hash of the key it addressed, and the session its
    /// bucket names first by that key (index + 1; 0: none), once fetched.
    ToVip(&'s Vip, u64, u32),
    /// To a VIP, translated, a new connection: tracked once the bucket of its own key
    /// is in cache.
    Opening,
    /// To a VIP, translated, of this session: tracked in the last pass, after a packet
    /// before it that is (the two may be of one connection: a hairpin's).
    Held(Found),
    FromBackend,
    /// An ICMP error, perhaps a backend's about a connection to a VIP.
    Error,
    /// To an address outside a network that masquerades.
    Out,
}

/// A VM's batch in network `vni`: packets to a VIP (sent to the gateway) go to their
/// connection's backend; replies from a backend come back from the VIP. In passes over
/// the batch, so that each packet's index bucket, then its session, then the bucket of
/// its translated key are fetched for the whole batch before any is read. (Not the
/// bucket as the batch is parsed: a hash of the metadata the parse has only just
/// written cost W8 more cycles than a pass of its own.) True if a
/// packet for outside found its next hop unresolved (dropped as `nexthop_unresolved`).
/// Out of line: called once a batch, and the port's other stages keep their registers.
#[inline(never)]
pub fn to_service<F: Frame>(t: &L2Tables, at: At, vni: u32, frames: &mut [F], meta: &mut [Meta]) -> bool {
    let mut unresolved = false;
    let services = &*t.services;
    let net = t.networks.get(&vni);
    let snat = net.filter(|n| n.masquerading());
    let peer = |m: &Meta| net.is_some_and(|n| n.flood_vteps.iter().any(|&v| ipv4_key(v) == m.ip_dst));
    let out = |m: &Meta| snat.is_some_and(|n| n.masquerades(m.ip_dst)) && t.endpoints.get(vni, m.ip_dst).is_none();
    // (A batch's packets to the gateway mostly address one VIP: its answer is kept.)
    let mut last_vip: Option<(Addressed, Option<&Vip>)> = None;
    for (frames, meta) in frames.chunks_mut(BURST).zip(meta.chunks_mut(BURST)) {
        let mut seen = [Seen::Other; BURST];
        // The `Nat` keys of the packets to a VIP that the tracking passes take, which
        // `translate` writes. (Only those are written: a batch's worth of keys written
        // whole before it cost W8 12 instructions a packet.)
        let mut keys: [Option<NatKey>; BURST] = [None; BURST];
        for ((f, m), seen) in frames.iter().zip(meta.iter_mut()).zip(seen.iter_mut()) {
            // (What a service does depends on more than the MACs: `parse_vm_batch` parses
            // every frame in a network with services.)
            debug_assert!(!m.repeat, "a frame not parsed reached the service stage");
            m.vni = vni;
            if !translatable(m) {
                if icmp_error(f.head(), m) {
                    *seen = Seen::Error;
                } else if m.dst == GATEWAY_MAC && is_echo(m, Echo::Request) && out(m) {
                    *seen = Seen::Out;
                }
                continue;
            }
            if m.dst == GATEWAY_MAC {
                let addressed: Addressed = (m.ip_dst, m.dport, m.proto);
                let vip = match last_vip {
                    Some((a, vip)) if a == addressed => vip,
                    _ => last_vip.insert((addressed, services.at_vip(vni, m.ip_dst, m.dport, m.proto))).1,
                };
                if let Some(vip) = vip {
                    // (The packet's tuple hashes as the key, without its ends ordered.)
                    let h = at.table.hash_of(&Tuple::of_ports(m));
                    F::prefetch(at.table.bucket_line(h));
                    *seen = Seen::ToVip(vip, h, 0);
                    continue;
                }
            }
            // (A backend's answer to a NodePort client is also for outside: its session
            // says so, before masquerading would.)
            if services.is_backend(vni, m.ip_src, m.sport, m.proto) {
                conntrack::prefetch_bucket::<F>(at.table, m);
                *seen = Seen::FromBackend;
            } else if m.dst == GATEWAY_MAC && out(m) {
                *seen = Seen::Out;
            }
        }
        for (m, seen) in meta.iter().zip(seen.iter_mut()) {
            match *seen {
                Seen::ToVip(vip, h, _) => *seen = Seen::ToVip(vip, h, at.table.nat_lines(h, m.proto, F::prefetch)),
                Seen::FromBackend => {
                    at.table.first_named(m.ct.hash, m.proto, F::prefetch);
                }
                Seen::Other | Seen::Error | Seen::Out | Seen::Opening | Seen::Held(_) => {}
            }
        }
        // Packets are tracked in the order they came: one that the last pass tracks
        // holds back those after it.
        let mut waiting = false;
        let passes = frames.iter_mut().zip(meta.iter_mut()).zip(seen.iter_mut()).zip(&mut keys);
        for (((f, m), seen), nat) in passes {
            let Seen::ToVip(vip, h, first) = *seen else {
                waiting |= matches!(*seen, Seen::FromBackend | Seen::Error | Seen::Out);
                continue;
            };
            match translate(vip, (h, first), at, f, m, nat, waiting) {
                Ok(Translated::Tracked) => {}
                // A known connection the whole tracker takes is tracked at once, unless
                // it waits. (With its `Nat` key too: a SYN that reopens it makes a new
                // session.)
                Ok(Translated::Held(held)) if !waiting => {
                    if let Err(r) = at.track(nat.as_ref(), Some(held), f, m) {
                        m.action = Action::Drop(r);
                    }
                }
                Ok(Translated::Held(held)) => *seen = Seen::Held(held),
                Ok(Translated::New) => {
                    *seen = Seen::Opening;
                    waiting = true;
                }
                Err(r) => m.action = Action::Drop(r),
            }
        }
        let passes = frames.iter_mut().zip(meta.iter_mut()).zip(&seen).zip(&keys);
        for (((f, m), seen), nat) in passes {
            let done = match *seen {
                Seen::Opening if m.action == Action::Continue => at.track(nat.as_ref(), None, f, m).map(|()| None),
                Seen::Held(held) if m.action == Action::Continue => {
                    at.track(nat.as_ref(), Some(held), f, m).map(|()| None)
                }
                Seen::FromBackend => match reverse(t, at, f, m) {
                    // An answer to a NodePort connection another switch called it in.
                    Ok(None) if m.dst == GATEWAY_MAC && peer(m) => Ok(Some(to_peer(t, f, m))),
                    // Not an answer: a connection of its own.
                    Ok(None) if m.dst == GATEWAY_MAC && out(m) => masquerade(t, &at, f, m).map(Some),
                    done => done,
                },
                Seen::Error => reverse_error(services, at, f, m).map(|()| None),
                Seen::Out => masquerade(t, &at, f, m).map(Some),
                _ => continue,
            };
            settle(m, done);
            unresolved |= m.action == Action::Drop(DropReason::NexthopUnresolved);
        }
    }
    unresolved
}

/// Frames from the uplink (decapsulated) in a network with services: replies from a
/// backend behind another switch come back from the VIP here, where their session is.
pub fn from_backend<F: Frame>(t: &L2Tables, at: At, f: &mut F, m: &mut Meta) {
    let services = &*t.services;
    let done = if translatable(m) && services.is_backend(m.vni, m.ip_src, m.sport, m.proto) {
        reverse(t, at, f, m)
    } else if icmp_error(f.head(), m) {
        reverse_error(services, at, f, m).map(|()| None)
    } else {
        return;
    };
    settle(m, done);
}

/// What a step of the stage decided for `m`: routed (its action), nothing (it goes on
/// to switching), or a drop.
#[inline]
fn settle(m: &mut Meta, done: Result<Option<Action>, DropReason>) {
    match done {
        Ok(Some(routed)) => m.action = routed,
        Ok(None) => {}
        Err(r) => m.action = Action::Drop(r),
    }
}

/// What `translate` left a packet to a VIP for the tracking passes.
enum Translated {
    /// Tracked already: its session only counted it.
    Tracked,
    /// Of this session, for the whole tracker (with its `Nat` key).
    Held(Found),
    /// A new connection (its `Nat` key makes the session).
    New,
}

/// A packet to a VIP (whose tuple hashes to `h`, and whose bucket names session `first`
/// first) translated toward its connection's backend: the one its session holds, or a
/// new pick. Where the tracking passes take the packet, its `Nat` key (the key it
/// addressed, its service and that backend) is written to `nat`. Where the backend's MAC
/// is known it is also routed here (the gateway's work, without its lookup). The common
/// packet of a known connection, which its session only counts, is tracked here before
/// it is translated, unless packets before it in the batch wait (`waiting`). For a new
/// connection, its own key's bucket is fetched for the tracking pass.
///
/// Hairpin: a backend that calls its own service and is picked would get its own
/// address as the source, which its stack drops as a martian; the connection comes to it
/// from the VIP instead (same source port), so its answers return through the gateway.
fn translate<F: Frame>(
    vip: &Vip,
    (h, first): (u64, u32),
    at: At,
    f: &mut F,
    m: &mut Meta,
    nat: &mut Option<NatKey>,
    waiting: bool,
) -> Result<Translated, DropReason> {
    let svc = &vip.service;
    let client = (m.ip_src, m.sport);
    let tuple = Tuple::of_ports(m);
    let found = at.table.lookup_nat_for(&tuple, h, first);
    let (i, kept) = match found {
        // The place it noted in this very list of backends.
        Some(s) if s.pick >> 32 == svc.version as u64 => (s.pick as u16, Some(s)),
        _ => {
            let held = found.and_then(|s| Some((s, at.table.key_of(s.index)?)));
            // The session's client end is the client, or the VIP for a hairpin connection.
            let hairpin_end = (svc.vip, m.sport);
            let backend_end = |k: &CtKey| k.other_end(client).or_else(|| k.other_end(hairpin_end));
            let pick = || svc.pick(client.0, h, at.now, at.seed, at.dry);
            let (i, kept) = held_or_picked(svc, &at, held, backend_end, pick)?;
            if let (Some(s), false) = (kept, at.dry) {
                at.table.note_pick(&s, svc.note(i));
            }
            (i, kept)
        }
    };
    let to = vip.to_backend.get(i as usize).ok_or(DropReason::NoBackend)?;
    let b = &to.backend;
    // (A packet to a VIP travels the way its connection opened: the client's way.)
    let tracked = match kept {
        Some(s) if !waiting && !at.dry => conntrack::established_opening(at.table, &s, f, m, at.now),
        _ => false,
    };
    // (The key a new session is found by: the same after translation, the VIP being its
    // other end.)
    let key = (!tracked).then(|| tuple.key().0);
    if !at.dry {
        vip.counters.count(at.core, i as usize, f.len() as u64, kept.is_none());
    }
    let hairpin = b.ip == m.ip_src;
    match (to.mac, &to.fixed) {
        (Some(mac), Some(fixed)) if !hairpin => fixed.route(f, m, mac, GATEWAY_MAC)?,
        (known, _) => {
            if !rewrite(f, m, End::Dst, b.ip, b.port) || (hairpin && !rewrite(f, m, End::Src, svc.vip, m.sport)) {
                return Err(DropReason::CtInvalid);
            }
            if let Some(mac) = known {
                if !spend_hop(f, m) {
                    return Err(DropReason::TtlExceeded);
                }
                set_macs(f, m, mac, GATEWAY_MAC);
            }
        }
    }
    if kept.is_none() {
        conntrack::prefetch_bucket::<F>(at.table, m);
    }
    if let Some(key) = key {
        *nat = Some(NatKey { key, service: svc.id, pick: svc.note(i) });
    }
    Ok(match (tracked, kept) {
        (true, _) => Translated::Tracked,
        (false, Some(held)) => Translated::Held(held),
        (false, None) => Translated::New,
    })
}

/// The place of the backend that connection `held` (its session, found by its `Nat`
/// key, with its own key) holds, named by `backend_end` of that key, and the session,
/// while that backend is still one of `svc`'s; otherwise the session ends (the
/// connection is over: `pick`'s new backend answers it with a reset) and `pick` chooses.
pub(super) fn held_or_picked(
    svc: &Service,
    at: &At,
    held: Option<(Found, CtKey)>,
    backend_end: impl Fn(&CtKey) -> Option<(IpKey, u16)>,
    pick: impl FnOnce() -> Option<u16>,
) -> Result<(u16, Option<Found>), DropReason> {
    let place = held.and_then(|(_, k)| backend_end(&k)).and_then(|b| svc.index_of(Backend { ip: b.0, port: b.1 }));
    match (held, place) {
        (Some((found, _)), Some(i)) => Ok((i, Some(found))),
        (stale, _) => {
            if let (Some((found, _)), false) = (stale, at.dry) {
                at.table.kill(found.index, found.gen);
            }
            Ok((pick().ok_or(DropReason::NoBackend)?, None))
        }
    }
}

/// A backend's packet to its client: from the VIP again (and, for a client outside that
/// came by a NodePort, routed out by the uplink: `Some`).
fn reverse<F: Frame>(t: &L2Tables, at: At, f: &mut F, m: &mut Meta) -> Result<Option<Action>, DropReason> {
    let (key, _) = Tuple::of_ports(m).key();
    let h = if m.ct.hash != 0 { m.ct.hash } else { at.table.hash(&key) };
    // (Past its timeout the session is gone: the packet is then a connection of its own.)
    let Some(found) = at.table.lookup_live(&key, h, at.now) else { return Ok(None) };
    let Some(nat) = at.table.nat_of(found.index) else { return Ok(None) };
    let client = (m.ip_dst, m.dport);
    // Sent by the backend to the client: the packet's source becomes the VIP. To itself
    // (hairpin, sent to the VIP and its own source port): also its destination becomes
    // itself again.
    let hairpin_end = (m.ip_src, m.dport);
    let (vip, to) = match (nat.key.other_end(client), nat.key.other_end(hairpin_end)) {
        (Some(vip), _) => (vip, None),
        (None, Some(vip)) => (vip, Some(hairpin_end)),
        (None, None) => match node_port_ends(t, &nat.key, m) {
            Some((node_port, client)) => (node_port, Some(client)),
            None => return Ok(None),
        },
    };
    at.track(None, Some(found), f, m)?;
    if !rewrite(f, m, End::Src, vip.0, vip.1) || to.is_some_and(|(ip, port)| !rewrite(f, m, End::Dst, ip, port)) {
        return Err(DropReason::CtInvalid);
    }
    Ok((nat.key.zone == OUTSIDE).then(|| route_out(t, f, m)))
}

/// A backend's packet to another switch's VTEP address, from its service's port: the
/// answer of a NodePort connection that switch called it in (from its address), which
/// that switch holds. It goes there through the tunnel, as the gateway routes.
fn to_peer<F: Frame>(t: &L2Tables, f: &mut F, m: &mut Meta) -> Action {
    if !spend_hop(f, m) {
        return Action::Drop(DropReason::TtlExceeded);
    }
    set_macs(f, m, GATEWAY_MAC, GATEWAY_MAC);
    tunnel(t, f, m, m.ip_dst as u32)
}

/// A backend's packet to the host's address, of a NodePort connection the host called
/// it in (its backend is behind another switch): the node port's end and the client's,
/// from the session's outside key.
fn node_port_ends(t: &L2Tables, outside: &CtKey, m: &Meta) -> Option<((IpKey, u16), (IpKey, u16))> {
    let host = host_address(t, m)?;
    if outside.zone != OUTSIDE || m.ip_dst != host {
        return None;
    }
    outside.end_at(host)
}

/// An ICMP error a backend (or a host on its way) sent about a connection to a VIP:
/// its quote is of a packet from the client to the backend, which goes back to the VIP.
fn reverse_error<F: Frame>(services: &ServiceTables, at: At, f: &mut F, m: &mut Meta) -> Result<(), DropReason> {
    let (_, Kind::Error(quoted)) = classify(f.head(), f.len(), m, m.vni) else { return Ok(()) };
    if !services.is_backend(m.vni, quoted.dst.0, quoted.dst.1, quoted.proto) {
        return Ok(());
    }
    let (key, _) = quoted.key();
    let Some(found) = at.table.lookup_live(&key, at.table.hash(&key), at.now) else { return Ok(()) };
    let Some(nat) = at.table.nat_of(found.index) else { return Ok(()) };
    // (A hairpin connection's quote has the VIP as its source: left as it is.)
    let Some(vip) = nat.key.other_end(quoted.src) else { return Ok(()) };
    at.track(None, None, f, m)?;
    if !rewrite_error(f, m, End::Dst, quoted.dst, vip) {
        return Err(DropReason::CtInvalid);
    }
    Ok(())
}
