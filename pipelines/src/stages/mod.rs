//! The per-batch stages of the two packet paths. Each writes an `Action` per packet;
//! the PMD loop dispatches once the batch is through.
//!
//! VM port:  parse -> [policer -> security group in] -> learn src (VNI, port) -> FIB (VNI, dst)
//!           -> local tx | encap -> uplink | flood
//! Uplink:   parse -> ARP for our VTEP: answer | VXLAN checks -> strip -> parse inner
//!           -> learn src (VNI, remote VTEP) -> FIB -> local tx | flood to local ports
//! Local tx: [security group out -> rate limit], as its own stage after switching
mod ipv6_uplink;

use crate::{
    acl::{AclCache, Direction, Verdict},
    conntrack::{self, Checkpoint},
    gateway::{self, GATEWAY_MAC},
    learn::{Clock, LearnEvent, Learner, Sink},
    meta::{Action, Meta},
    parse::parse,
    qos::{ColorAction, Meters, PortQos},
    services,
    tables::{FibTarget, L2Tables, Network, Remote},
    vxlan,
    wire::{arp, ethernet, Mac},
    DropReason, Frame, PortId,
};

/// A core's own mutable stage state.
#[derive(Default)]
pub struct PerCore {
    pub learner: Learner,
    pub meters: Meters,
    /// The security groups' answers this core remembers.
    pub acl: AclCache,
    /// The core's index: its part of the connection-tracking table.
    pub core: usize,
    /// The FIB's answers of the batches before, while the tables stay the same.
    pub fib: FibMemo,
}

/// What every stage of one batch shares.
pub struct Ctx<'a> {
    pub tables: &'a L2Tables,
    /// When the batch arrived, in the clock learning uses (TSC on the cores).
    pub clock: Clock,
}

/// The parse stage over a batch.
pub fn parse_batch<F: Frame>(frames: &[F], meta: &mut [Meta]) {
    for (f, m) in frames.iter().zip(meta.iter_mut()) {
        parse(f.head(), m);
    }
}

/// Bytes of a frame that decide everything a plain VM port's stages do: both MACs and
/// the EtherType, or the outer tag's TCI.
pub const REPEAT_BYTES: usize = 16;

/// The parse stage for a VM port of network `vni`. When the port is plain (no security
/// group, no policer) and its network has no service (whose stage tells frames apart by
/// more than their MACs), a frame whose first `REPEAT_BYTES` equal the previous frame's
/// is not parsed but marked `repeat`: `from_vm` then gives it the previous frame's
/// decision if no stage on the way could have told them apart, and parses it otherwise.
pub fn parse_vm_batch<F: Frame>(t: &L2Tables, port: PortId, vni: u32, frames: &[F], meta: &mut [Meta]) {
    if !plain_in(t, port) || t.services.in_network(vni) {
        return parse_batch(frames, meta);
    }
    let mut prev: Option<&[u8]> = None;
    for (f, m) in frames.iter().zip(meta.iter_mut()) {
        let head = f.head().get(..REPEAT_BYTES);
        if head.is_some() && head == prev {
            *m = Meta { repeat: true, ..Meta::default() };
        } else {
            parse(f.head(), m);
        }
        prev = head;
    }
}

/// No stage on a VM's way in looks past L2 on this port.
#[inline]
fn plain_in(t: &L2Tables, port: PortId) -> bool {
    t.acl.ports.get(port as usize).is_none_or(Option::is_none)
        && t.qos.port(port).is_none_or(|q| q.ingress.is_none())
        && t.ct.port(port).is_none()
}

/// Delivery to local port `p` looks at nothing past L2 (no egress security group or
/// rate limit).
#[inline]
fn plain_out(t: &L2Tables, p: PortId) -> bool {
    uplink(t) != Some(p) && !egress_policy(t, p)
}

/// The port encapsulated frames leave by: from a VM, `Tx` to any other port is a local
/// delivery.
#[inline]
fn uplink(t: &L2Tables) -> Option<PortId> {
    t.vtep.as_ref().map(|v| v.uplink)
}

/// VM port `p` has an egress security group or rate limit.
#[inline]
fn egress_policy(t: &L2Tables, p: PortId) -> bool {
    t.acl.ports.get(p as usize).is_some_and(Option::is_some)
        || t.qos.port(p).is_some_and(|q| q.egress.is_some())
        || t.ct.port(p).is_some()
}

/// Frames from a VM port in `vni`. Stage by stage over the batch (the architecture's
/// order: admission, policer, security group, then switching), so each stage's loop is
/// small and keeps its tables at hand; a stage skips packets an earlier one decided.
/// Deliveries to local VM ports then pass their egress policy, as a stage of its own.
pub fn from_vm<F: Frame, S: Sink<LearnEvent>>(
    ctx: &Ctx,
    port: PortId,
    vni: u32,
    frames: &mut [F],
    meta: &mut [Meta],
    core: &mut PerCore,
    sink: &mut S,
) {
    let t = ctx.tables;
    let n = frames.len().min(meta.len());
    let (frames, meta) = (&mut frames[..n], &mut meta[..n]);
    let qos = t.qos.port(port).copied().unwrap_or_default();
    if t.services.in_network(vni) {
        if let Some(table) = t.ct.table.as_deref() {
            let at = services::At::new(t, table, port, core.core, ctx.clock);
            if services::to_service(t, at, vni, frames, meta) {
                // Beyond the uplink, someone to ask for by ARP (the control plane does).
                let unresolved = meta.iter().filter(|m| m.action == Action::Drop(DropReason::NexthopUnresolved));
                for m in unresolved {
                    core.learner.unknown(LearnEvent::next_hop(m.ip_dst, port), ctx.clock, sink);
                }
            }
        }
    }
    core.fib.refresh(t);
    let mut l2 = Switching::new(t, port, vni, qos.outer_dscp);
    if plain_in(t, port) {
        l2.plain(ctx, frames, meta, core, sink);
    } else {
        l2.policed(ctx, &qos, frames, meta, core, sink);
    }
    if l2.egress {
        to_vms(ctx, uplink(t), frames, meta, core);
    }
}

/// Admits a parsed frame into `vni` on its way from a VM (setting its VNI): false and a
/// drop when the switch does not serve the VNI (`served`), the source MAC is multicast,
/// or an earlier stage already decided.
#[inline(always)]
fn admit(vni: u32, served: bool, gateway: bool, m: &mut Meta) -> bool {
    if m.action != Action::Continue {
        return false;
    }
    m.vni = vni;
    if !served {
        m.action = Action::Drop(DropReason::VniUnknown);
        return false;
    }
    // Nobody else may speak for the gateway: its MAC as a source would move it in the
    // FIB of every switch of the network. (The service stage, which ran before, routes
    // what it translated: those frames are tracked already, and come from the gateway.)
    if m.src.is_multicast() || (gateway && m.src == GATEWAY_MAC && !m.ct.tracked) {
        m.action = Action::Drop(DropReason::BadSrcMac);
        return false;
    }
    true
}

/// The switching stage of a VM's batch: learn the source, look up the destination,
/// deliver locally or encapsulate. A VM's burst is mostly one source MAC to one
/// destination MAC: the source is looked up once per run of equal MACs, the destination
/// answered by the core's `FibMemo`.
struct Switching<'t> {
    /// The VM port the batch came in on, its VNI, and the outer DSCP it sets, if any.
    port: PortId,
    vni: u32,
    outer_dscp: Option<u8>,
    learned: Option<Mac>,
    remotes: RemoteCache<'t>,
    /// Some packet went to a local port with egress policy: the egress stage must run.
    egress: bool,
    /// The network, if its switches answer or route anything (it has a gateway, or
    /// there are endpoints): looked up once per batch, so a network without keeps its
    /// switching as it was.
    gateway: Option<&'t Network>,
    /// Whether the switch serves the VNI: looked up once per batch.
    served: bool,
    encapsulator: vxlan::Encapsulator,
}

impl<'t> Switching<'t> {
    fn new(t: &'t L2Tables, port: PortId, vni: u32, outer_dscp: Option<u8>) -> Self {
        let network = t.networks.get(&vni);
        let gateway = network.filter(|n| n.gateway.is_some() || !t.endpoints.is_empty());
        Switching {
            gateway,
            served: network.is_some(),
            port,
            vni,
            outer_dscp,
            learned: None,
            remotes: RemoteCache::default(),
            egress: false,
            encapsulator: vxlan::Encapsulator::default(),
        }
    }

    /// A port with no policer and no security group: admission and switching, frame by
    /// frame, so a repeated frame can take the decision of the one before it.
    #[inline(always)]
    fn plain<F: Frame, S: Sink<LearnEvent>>(
        &mut self,
        ctx: &Ctx<'t>,
        frames: &mut [F],
        meta: &mut [Meta],
        core: &mut PerCore,
        sink: &mut S,
    ) {
        let (t, vni) = (ctx.tables, self.vni);
        for (i, f) in frames.iter_mut().enumerate() {
            let (done, rest) = meta.split_at_mut(i);
            let m = &mut rest[0];
            if m.repeat {
                match done.last() {
                    // Same MACs and tag on a plain port, delivered to a plain local port: the
                    // same decision. Not so for what the gateway answers or routes: that
                    // depends on more than the MACs (and `Tx` back to the port it came
                    // from is one of its answers).
                    Some(prev)
                        if matches!(prev.action, Action::Tx(p) if plain_out(t, p))
                            && (self.gateway.is_none()
                                || (prev.action != Action::Tx(self.port)
                                    && f.head().get(..6) != Some(&GATEWAY_MAC.0[..]))) =>
                    {
                        *m = *prev;
                        continue;
                    }
                    _ => parse(f.head(), m),
                }
            }
            if admit(vni, self.served, self.gateway.is_some(), m) {
                self.switch(ctx, f, m, core, sink);
            }
        }
    }

    /// A port with policy: admission, the policer, the security group, each over the
    /// batch, then switching.
    #[inline(always)]
    fn policed<F: Frame, S: Sink<LearnEvent>>(
        &mut self,
        ctx: &Ctx<'t>,
        qos: &PortQos,
        frames: &mut [F],
        meta: &mut [Meta],
        core: &mut PerCore,
        sink: &mut S,
    ) {
        let (t, port, vni) = (ctx.tables, self.port, self.vni);
        // The policer's burst: once for the whole burst when all of it is green (a
        // policer with room to spare), else packet by packet.
        let (mut bytes, mut packets) = (0, 0);
        // (A stateful port's index buckets start coming now, or a stateless port's
        // answers in its security group's table: the policer's passes hide some of
        // their miss.)
        let stateful = t.ct.port(port);
        let tracked = stateful.and(t.ct.table.as_deref());
        let group = if stateful.is_none() { t.acl.ports.get(port as usize).and_then(Option::as_deref) } else { None };
        for (f, m) in frames.iter().zip(meta.iter_mut()) {
            if admit(vni, self.served, self.gateway.is_some(), m) {
                bytes += f.wire_len() as u64;
                packets += 1;
                if let Some(table) = tracked {
                    conntrack::prefetch_bucket::<F>(table, m);
                } else if let Some(acl) = group {
                    core.acl.prefetch::<F>(&acl.ingress, m);
                }
            }
        }
        if packets > 0 && !core.meters.all_green(qos, port, Direction::In, ctx.clock, bytes, packets) {
            for (f, m) in frames.iter_mut().zip(meta.iter_mut()) {
                if m.action != Action::Continue {
                    continue;
                }
                match core.meters.act(qos, port, Direction::In, ctx.clock, f.wire_len() as u64) {
                    ColorAction::Pass => {}
                    ColorAction::Remark(d) => {
                        crate::qos::set_dscp(f, m, d);
                    }
                    ColorAction::Drop => m.action = Action::Drop(DropReason::Policed),
                }
            }
        }
        // Security group before learning: a denied frame teaches the switch nothing.
        if let Some(cfg) = stateful {
            stateful_in(ctx, port, cfg, core.core, &mut core.acl, frames, meta);
        } else if let Some(Some(acl)) = t.acl.ports.get(port as usize) {
            acl.ingress_batch(meta, &mut core.acl);
        }
        for (f, m) in frames.iter_mut().zip(meta.iter_mut()) {
            if m.action == Action::Continue {
                self.switch(ctx, f, m, core, sink);
            }
        }
    }

    #[inline(always)]
    fn switch<F: Frame, S: Sink<LearnEvent>>(
        &mut self,
        ctx: &Ctx<'t>,
        f: &mut F,
        m: &mut Meta,
        core: &mut PerCore,
        sink: &mut S,
    ) {
        let (t, port, vni) = (ctx.tables, self.port, self.vni);
        if self.learned != Some(m.src) {
            if m.src != GATEWAY_MAC {
                let ev = LearnEvent::mac(vni, m.src, FibTarget::Port(port));
                core.learner.observe(t.lookup(vni, m.src), ev, ctx.clock, sink);
            }
            self.learned = Some(m.src);
        }
        let at_gateway = |m: &Meta| {
            m.dst == GATEWAY_MAC || m.ethertype == ethernet::ETHERTYPE_ARP || gateway::is_neighbour_discovery(m)
        };
        if let Some(net) = self.gateway.filter(|_| at_gateway(m)) {
            match gateway_answer(ctx, net, port, f, m, &mut core.learner, sink) {
                None | Some(Action::Continue) => {}
                Some(answered) => {
                    self.egress |= matches!(answered, Action::Tx(p) if egress_policy(t, p));
                    m.action = answered;
                    return;
                }
            }
        }
        if m.dst.is_multicast() {
            m.action = Action::Flood { vni };
            return;
        }
        m.action = match core.fib.lookup(t, vni, m.dst) {
            // (A routed frame may leave by the port it came in by: a backend calling its
            // own service, two addresses of one VM.)
            Some(FibTarget::Port(p)) if p == port && m.src != GATEWAY_MAC => Action::Drop(DropReason::SamePort),
            Some(FibTarget::Port(p)) => {
                self.egress |= egress_policy(t, p);
                Action::Tx(p)
            }
            Some(FibTarget::Vtep(ip)) => self.encap(t, f, m, ip),
            None => Action::Flood { vni },
        };
    }

    /// Encapsulates toward remote VTEP `ip`, deciding the action.
    #[inline(always)]
    fn encap<F: Frame>(&mut self, t: &'t L2Tables, f: &mut F, m: &Meta, ip: u32) -> Action {
        let Some(vtep) = &t.vtep else { return Action::Drop(DropReason::NoVtep) };
        // None while its next hop is unresolved.
        let Some(remote) = self.remotes.remote(t, ip) else { return Action::Drop(DropReason::NexthopUnresolved) };
        match self.encapsulator.encap(f, m, self.vni, (ip, remote), vtep, self.outer_dscp) {
            Ok(()) => Action::Tx(vtep.uplink),
            Err(r) => Action::Drop(r),
        }
    }
}

/// What the network's gateway does with a frame from VM port `port`: answers it back
/// to the port, routes it (`Continue`: switch it to its new destination MAC) or drops
/// it; None: not the gateway's (switch it as it is). Out of line: rare next to the
/// switching it sits in.
/// In a network with a gateway, the addresses VMs speak for in ARP and neighbour
/// discovery are reported (before any answer rewrites the frame) for the endpoint table.
#[inline(never)]
fn gateway_answer<F: Frame, S: Sink<LearnEvent>>(
    ctx: &Ctx,
    net: &Network,
    port: PortId,
    f: &mut F,
    m: &mut Meta,
    learner: &mut Learner,
    sink: &mut S,
) -> Option<Action> {
    let t = ctx.tables;
    let neighbour = m.ethertype == ethernet::ETHERTYPE_ARP || gateway::is_neighbour_discovery(m);
    if neighbour && net.gateway.is_some() {
        if let Some(ev) = gateway::learned(net, f, m, port) {
            if !sink.push(ev) {
                learner.lost += 1;
            }
        }
    }
    if m.dst == GATEWAY_MAC && !neighbour {
        let routed = gateway::route(&t.endpoints, net, f, m, port);
        if routed == Action::Drop(DropReason::NoEndpoint) {
            // The switch asks the network who holds it; this packet waits for nothing.
            learner.unknown(LearnEvent::unknown(net.vni, m.ip_dst, port), ctx.clock, sink);
        }
        return Some(routed);
    }
    let answered = if m.ethertype == ethernet::ETHERTYPE_ARP {
        gateway::answer_arp(&t.endpoints, net, f, m, port)
    } else {
        gateway::answer_nd(&t.endpoints, net, f, m, port)
    };
    // Other ARP and ND sent to the gateway's MAC (answers to its own questions, learned
    // above; a VM's probe of its cached entry is a request, answered) end here.
    if m.dst == GATEWAY_MAC {
        return Some(answered.unwrap_or(Action::Drop(DropReason::ToGateway)));
    }
    answered
}

/// The security group of a stateful port over a batch from its VM: tracking first, the
/// rules only for packets that start a connection (or are not tracked). The packets'
/// buckets were asked for as they were admitted (`policed`).
fn stateful_in<F: Frame>(
    ctx: &Ctx,
    port: PortId,
    cfg: &conntrack::CtPort,
    core: usize,
    cache: &mut AclCache,
    frames: &[F],
    meta: &mut [Meta],
) {
    let t = ctx.tables;
    let Some(table) = t.ct.table.as_deref() else { return };
    let cp = Checkpoint {
        table,
        port,
        cfg,
        dir: Direction::In,
        core,
        now: conntrack::now_ms(ctx.clock),
        dry: t.ct.dry,
        nat: None,
        found: None,
    };
    conntrack::prefetch_named::<F>(table, meta);
    for (f, m) in frames.iter().zip(meta.iter_mut()) {
        if m.action != Action::Continue {
            continue;
        }
        let (hit, pass) = conntrack::decide(&cp, f, m, |d, pm| t.acl.check_with(cache, port, d, pm));
        m.acl_in = hit.map_or(0, |h| h + 1);
        if let Err(r) = pass {
            m.action = Action::Drop(r);
        }
    }
}

/// Slots of a core's FIB answers.
const FIB_SLOTS: usize = 32;

/// A core's FIB answers, by destination MAC: consecutive packets to the same MAC (the
/// common case) cost one lookup, and so do packets spread over a few MACs (a service's
/// backends). Kept from batch to batch while the tables are the same compile (their
/// stamp): published tables never change. Tables without a stamp (never published)
/// keep them for one batch.
#[derive(Default)]
pub struct FibMemo {
    stamp: u64,
    slots: [Option<(u32, Mac, Option<FibTarget>)>; FIB_SLOTS],
}

impl FibMemo {
    /// Forgets the answers unless they are `t`'s: once a batch, before its lookups.
    #[inline]
    fn refresh(&mut self, t: &L2Tables) {
        if t.stamp == 0 || t.stamp != self.stamp {
            self.stamp = t.stamp;
            self.slots = [None; FIB_SLOTS];
        }
    }

    #[inline(always)]
    fn lookup(&mut self, t: &L2Tables, vni: u32, mac: Mac) -> Option<FibTarget> {
        let slot = &mut self.slots[(mac.to_u64().wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 59) as usize % FIB_SLOTS];
        match *slot {
            Some((v, m, target)) if v == vni && m == mac => target,
            _ => {
                let target = t.lookup(vni, mac).map(|e| e.target);
                *slot = Some((vni, mac, target));
                target
            }
        }
    }
}

/// The remote VTEP of a batch's last packet to one: consecutive packets to the same
/// remote VTEP cost one lookup.
#[derive(Default)]
struct RemoteCache<'t> {
    last: Option<(u32, Option<&'t Remote>)>,
}

impl<'t> RemoteCache<'t> {
    /// The outer headers toward remote VTEP `ip`, if its next hop is resolved.
    #[inline(always)]
    fn remote(&mut self, t: &'t L2Tables, ip: u32) -> Option<&'t Remote> {
        match self.last {
            Some((cached, r)) if cached == ip => r,
            _ => {
                let r = t.remotes.get(&ip);
                self.last = Some((ip, r));
                r
            }
        }
    }
}

/// The egress stage, after switching: every packet delivered to a local VM port
/// (`Tx(p)`, `p` not `uplink`) passes that port's security group and then its egress
/// rate limit, in batch order. A run of packets to one port that its rules cannot tell
/// apart is classified once.
fn to_vms<F: Frame>(ctx: &Ctx, uplink: Option<PortId>, frames: &mut [F], meta: &mut [Meta], core: &mut PerCore) {
    let t = ctx.tables;
    // (Milliseconds for the session table: a division, once a batch.)
    let mut now = 0;
    if let Some(table) = t.ct.table.as_deref() {
        now = conntrack::now_ms(ctx.clock);
        // The sessions of the batch's deliveries to stateful ports, fetched together
        // before the first is read.
        let tracked = |m: &Meta| matches!(m.action, Action::Tx(p) if Some(p) != uplink && t.ct.port(p).is_some());
        conntrack::prefetch_where::<F>(table, meta, tracked);
    }
    for (f, m) in frames.iter_mut().zip(meta.iter_mut()) {
        match m.action {
            Action::Tx(p) if Some(p) != uplink => m.action = to_vm(ctx, p, f, m, core, now),
            _ => {}
        }
    }
}

/// Port `p`'s security group on a packet delivered to it: the deciding rule's counter
/// slot (None: no rule decided) and the drop, if any. On a stateful port the packet's
/// connection decides first (`now`: the batch's time on the session table's clock).
#[inline]
pub fn egress_acl<F: Frame>(
    ctx: &Ctx,
    p: PortId,
    f: &F,
    m: &mut Meta,
    core: usize,
    acl: &mut AclCache,
    now: u32,
) -> conntrack::Decision {
    let t = ctx.tables;
    if let (Some(cfg), Some(table)) = (t.ct.port(p), t.ct.table.as_deref()) {
        let cp =
            Checkpoint { table, port: p, cfg, dir: Direction::Out, core, now, dry: t.ct.dry, nat: None, found: None };
        return conntrack::decide(&cp, f, m, |d, pm| t.acl.check_with(acl, p, d, pm));
    }
    match t.acl.check_with(acl, p, Direction::Out, m) {
        (Verdict::Allow, hit) => (hit, Ok(())),
        (Verdict::Deny, hit) => (hit, Err(DropReason::AclDenyOut)),
    }
}

/// Delivery to VM port `p`, if its security group lets the packet in and its egress
/// rate limit has room.
#[inline(always)]
fn to_vm<F: Frame>(ctx: &Ctx, p: PortId, f: &mut F, m: &mut Meta, core: &mut PerCore, now: u32) -> Action {
    let t = ctx.tables;
    let (hit, pass) = egress_acl(ctx, p, f, m, core.core, &mut core.acl, now);
    m.acl_out = hit.map_or(0, |c| c + 1);
    if let Err(r) = pass {
        return Action::Drop(r);
    }
    if let Some(qos) = t.qos.port(p) {
        match core.meters.act(qos, p, Direction::Out, ctx.clock, f.wire_len() as u64) {
            ColorAction::Pass => {}
            ColorAction::Remark(d) => {
                crate::qos::set_dscp(f, m, d);
            }
            ColorAction::Drop => return Action::Drop(DropReason::RateLimited),
        }
    }
    Action::Tx(p)
}

/// Frames from the uplink.
pub fn from_uplink<F: Frame, S: Sink<LearnEvent>>(
    ctx: &Ctx,
    port: PortId,
    frames: &mut [F],
    meta: &mut [Meta],
    core: &mut PerCore,
    sink: &mut S,
) {
    let t = ctx.tables;
    // (VNI, source MAC, remote VTEP) last learned.
    let mut learned: Option<(u32, Mac, u32)> = None;
    core.fib.refresh(t);
    let mut egress = false;
    // A burst is mostly one VNI: the last one found served is remembered (VNIs are 24
    // bits, so u32::MAX is none), the table asked only for another.
    let served = std::cell::Cell::new(u32::MAX);
    let serves = |vni: u32| {
        served.get() == vni || {
            let ok = t.networks.contains_key(&vni);
            if ok {
                served.set(vni);
            }
            ok
        }
    };
    // Where the batch meets the services (the session table's clock is a division: once
    // a batch).
    let at = t.ct.table.as_deref().map(|table| services::At::new(t, table, port, core.core, ctx.clock));
    for (f, m) in frames.iter_mut().zip(meta.iter_mut()) {
        if m.action != Action::Continue {
            continue;
        }
        let Some(vtep) = &t.vtep else {
            m.action = Action::Drop(DropReason::NoVtep);
            continue;
        };
        if m.ethertype == ethernet::ETHERTYPE_ARP {
            m.action = arp_on_uplink(f, m, vtep.ip, vtep.mac, port);
            continue;
        }
        // (The underlay is IPv4: IPv6 here is north-south, if the host has an address.)
        if let Some(host) = (m.ethertype == ethernet::ETHERTYPE_IPV6).then(|| t.underlay.host6).flatten() {
            m.action = ipv6_uplink::from_uplink6(ctx, port, at.as_ref(), host, f, m);
            egress |= outside_decided(ctx, port, m, core, sink);
            continue;
        }
        let d = match vxlan::check(f.head(), f.len(), m, vtep, serves) {
            Ok(d) => d,
            Err(r) => {
                // Not VXLAN, to the host's address: perhaps a masqueraded connection's
                // reply, or for a NodePort.
                let outside = match (r, &at) {
                    (DropReason::NotVxlan | DropReason::VxlanWrongPort, Some(at)) => {
                        services::outside::from_outside(t, at, f, m)
                    }
                    _ => None,
                };
                m.action = outside.unwrap_or(Action::Drop(r));
                egress |= outside_decided(ctx, port, m, core, sink);
                continue;
            }
        };
        let trailing = f.len() - d.outer_len - d.inner_len;
        // A kernel uplink hands over what its peer left undone (the inner checksum), at
        // offsets from the outer header.
        let offload = f.offload();
        if !f.strip(d.outer_len) || (trailing > 0 && !f.truncate(d.inner_len)) {
            m.action = Action::Drop(DropReason::VxlanTruncated);
            continue;
        }
        parse(f.head(), m);
        m.vni = d.vni;
        if m.action != Action::Continue {
            continue;
        }

        // The largest segment the VM gets, for its MTU: the frame, unless it is to be cut.
        let mut largest = f.len();
        if !offload.is_none() {
            match offload.decapsulated(d.outer_len, m.l3) {
                Some(o) => {
                    f.set_offload(o);
                    largest = o.largest_segment(largest);
                }
                None => {
                    m.action = Action::Drop(DropReason::OffloadBadHeaders);
                    continue;
                }
            }
        }
        if t.services.in_network(d.vni) {
            if let Some(at) = at {
                services::from_backend(t, at, f, m);
                if m.action == Action::Drop(DropReason::NexthopUnresolved) {
                    // A NodePort client's answer, beyond the uplink: asked for by ARP.
                    core.learner.unknown(LearnEvent::next_hop(m.ip_dst, port), ctx.clock, sink);
                }
                if m.action != Action::Continue {
                    continue;
                }
            }
        }
        if m.src.is_multicast() {
            m.action = Action::Drop(DropReason::BadSrcMac);
            continue;
        }
        // A frame another switch's gateway routed comes from the gateway MAC, which lives
        // on every switch: never learned.
        if learned != Some((d.vni, m.src, d.remote_ip)) && m.src != GATEWAY_MAC {
            let ev = LearnEvent::mac(d.vni, m.src, FibTarget::Vtep(d.remote_ip));
            core.learner.observe(t.lookup(d.vni, m.src), ev, ctx.clock, sink);
            learned = Some((d.vni, m.src, d.remote_ip));
        }
        if m.dst.is_multicast() {
            m.action = Action::Flood { vni: d.vni };
            continue;
        }
        m.action = match core.fib.lookup(t, d.vni, m.dst) {
            // (A runt inner frame's L3 offset may lie past its end: no L3 bytes.)
            Some(FibTarget::Port(p)) if largest.saturating_sub(m.l3 as usize) > t.mtu(p) as usize => {
                Action::Drop(DropReason::MtuExceeded)
            }
            Some(FibTarget::Port(p)) => {
                egress |= egress_policy(t, p);
                Action::Tx(p)
            }
            Some(FibTarget::Vtep(_)) => Action::Drop(DropReason::SplitHorizon),
            // Another host's frame to the gateway (a host using ours): routed here.
            None if m.dst == GATEWAY_MAC => match gateway::from_tunnel(t, f, m) {
                Ok(p) if largest.saturating_sub(m.l3 as usize) > t.mtu(p) as usize => {
                    Action::Drop(DropReason::MtuExceeded)
                }
                Ok(p) => {
                    egress |= egress_policy(t, p);
                    Action::Tx(p)
                }
                Err(r) => Action::Drop(r),
            },
            None => Action::Flood { vni: d.vni },
        };
    }
    // ARP replies go back out of `port`; every other `Tx` is a delivery to a VM.
    if egress {
        to_vms(ctx, Some(port), frames, meta, core);
    }
}

/// What follows a decision on a frame from outside (by the uplink, to the host's
/// address): true if it is a delivery to a VM port with egress policy. A VM or backend
/// whose MAC nobody told the switch yet is asked for.
fn outside_decided<S: Sink<LearnEvent>>(ctx: &Ctx, port: PortId, m: &Meta, core: &mut PerCore, sink: &mut S) -> bool {
    match m.action {
        Action::Tx(p) => egress_policy(ctx.tables, p),
        Action::Drop(DropReason::NoEndpoint) if m.vni != services::outside::OUTSIDE => {
            core.learner.unknown(LearnEvent::unknown(m.vni, m.ip_dst, port), ctx.clock, sink);
            false
        }
        _ => false,
    }
}

/// ARP on the uplink: a request for our VTEP IP is turned into the reply in place and
/// sent back; a reply to us, and a gratuitous ARP (a neighbour announcing its MAC, e.g.
/// a restarted VTEP), go to the control plane (it resolves next hops).
fn arp_on_uplink<F: Frame>(f: &mut F, m: &Meta, vtep_ip: u32, vtep_mac: crate::wire::Mac, port: PortId) -> Action {
    let l3 = m.l3 as usize;
    let Some(a) = f.head().get(l3..).and_then(arp::Arp::parse) else {
        return Action::Drop(DropReason::ArpNotForUs);
    };
    if a.target_ip == a.sender_ip && a.sender_ip != vtep_ip {
        return Action::Punt;
    }
    if a.target_ip != vtep_ip {
        return Action::Drop(DropReason::ArpNotForUs);
    }
    match a.op {
        arp::OP_REQUEST => {
            let reply = arp::Arp {
                op: arp::OP_REPLY,
                sender_mac: vtep_mac,
                sender_ip: vtep_ip,
                target_mac: a.sender_mac,
                target_ip: a.sender_ip,
            };
            let b = f.head_mut();
            b[ethernet::DST].copy_from_slice(&a.sender_mac.0);
            b[ethernet::SRC].copy_from_slice(&vtep_mac.0);
            reply.emit(&mut b[l3..]);
            Action::Tx(port)
        }
        arp::OP_REPLY => Action::Punt,
        _ => Action::Drop(DropReason::ArpNotForUs),
    }
}

#[cfg(test)]
mod tests;
