//! The service stage: translation toward a backend (a VM's packets to a VIP) and back
//! (a backend's replies), with the connection tracked in the session that holds the
//! choice.
use super::{rewrite, Backend, End, ServiceTables};
use crate::{
    acl::{Direction, Verdict},
    conntrack::{self, table::hash, Checkpoint, CtPort, CtTable, NatKey, Tuple},
    gateway::GATEWAY_MAC,
    meta::{Action, Meta},
    parse::parse,
    wire::ipv4,
    DropReason, Frame, PortId,
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
    pub dry: bool,
}

impl At<'_> {
    /// Tracks a translated (or to be translated) packet; a new session is made with `nat`.
    fn track<F: Frame>(&self, nat: Option<NatKey>, f: &F, m: &mut Meta) -> Result<(), DropReason> {
        let cp = Checkpoint {
            table: self.table,
            port: self.port,
            cfg: &TRACKING,
            dir: Direction::In,
            core: self.core,
            now: self.now,
            dry: self.dry,
            nat,
        };
        conntrack::decide(&cp, f, m, |_, _| (Verdict::Allow, None)).1
    }
}

/// A VM's batch in network `vni`: packets to a VIP (sent to the gateway) go to their
/// connection's backend; replies from a backend come back from the VIP.
pub fn to_service<F: Frame>(services: &ServiceTables, at: At, vni: u32, frames: &mut [F], meta: &mut [Meta]) {
    for (f, m) in frames.iter_mut().zip(meta.iter_mut()) {
        if m.repeat {
            // (Parsed here: what a service does depends on more than the MACs.)
            parse(f.head(), m);
            m.repeat = false;
        }
        m.vni = vni;
        if !translatable(m) {
            continue;
        }
        if m.dst == GATEWAY_MAC {
            if let Some(svc) = services.at_vip(vni, m.ip_dst, m.dport, m.proto) {
                if let Err(r) = forward(svc, at, f, m) {
                    m.action = Action::Drop(r);
                }
                continue;
            }
        }
        if services.is_backend(vni, m.ip_src, m.sport, m.proto) {
            if let Err(r) = reverse(at, f, m) {
                m.action = Action::Drop(r);
            }
        }
    }
}

/// Frames from the uplink (decapsulated) in a network with services: replies from a
/// backend behind another switch come back from the VIP here, where their session is.
pub fn from_backend<F: Frame>(services: &ServiceTables, at: At, f: &mut F, m: &mut Meta) {
    if translatable(m) && services.is_backend(m.vni, m.ip_src, m.sport, m.proto) {
        if let Err(r) = reverse(at, f, m) {
            m.action = Action::Drop(r);
        }
    }
}

fn forward<F: Frame>(svc: &super::Service, at: At, f: &mut F, m: &mut Meta) -> Result<(), DropReason> {
    let client = (m.ip_src, m.sport);
    let (vip_key, _) = Tuple::of_ports(m).key();
    let h = hash(&vip_key);
    // The connection's backend: the one its session holds, or a new pick.
    let held = at.table.lookup_nat(&vip_key, h).and_then(|found| Some((found, at.table.key_of(found.index)?)));
    let held = held.map(|(found, k)| (found, if k.lo == client { k.hi } else { k.lo }));
    let backend = match held {
        Some((_, b)) if svc.has(Backend { ip: b.0, port: b.1 }) => b,
        // Its backend was removed: the connection ends here (this packet goes to a new
        // pick, whose answer to a connection it does not know is a reset).
        stale => {
            if let (Some((found, _)), false) = (stale, at.dry) {
                at.table.kill(found.index, found.gen);
            }
            let i = svc.maglev.pick(h).ok_or(DropReason::NoBackend)?;
            let b = svc.backends.get(i as usize).ok_or(DropReason::NoBackend)?;
            (b.ip, b.port)
        }
    };
    // (Also when the session is found: a SYN that reopens it makes a new one.)
    let nat = Some(NatKey { key: vip_key, service: svc.id });
    if !rewrite(f, m, End::Dst, backend.0, backend.1) {
        return Err(DropReason::CtInvalid);
    }
    at.track(nat, f, m)
}

fn reverse<F: Frame>(at: At, f: &mut F, m: &mut Meta) -> Result<(), DropReason> {
    let (key, _) = Tuple::of_ports(m).key();
    let Some(found) = at.table.lookup(&key, hash(&key)) else { return Ok(()) };
    let Some(nat) = at.table.nat_of(found.index) else { return Ok(()) };
    let client = (m.ip_dst, m.dport);
    // Sent by the backend to the client: the packet's source becomes the VIP.
    if !(nat.key.lo == client || nat.key.hi == client) {
        return Ok(());
    }
    let vip = if nat.key.lo == client { nat.key.hi } else { nat.key.lo };
    at.track(None, f, m)?;
    if !rewrite(f, m, End::Src, vip.0, vip.1) {
        return Err(DropReason::CtInvalid);
    }
    Ok(())
}
