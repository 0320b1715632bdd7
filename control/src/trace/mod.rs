//! `vswitchctl trace`: the real stages run on a copy of one packet against the snapshot
//! the cores use now. Nothing is sent, and nothing is learned: learn events go to a
//! scratch list and are reported.
pub mod api;
pub mod cli;

use api::TraceView;
use dataplane::snapshot::{Egress, Role, Snapshot};
use pipelines::{
    gateway::GATEWAY_MAC,
    learn::Clock,
    meta::Meta,
    parse::parse,
    stages::{self, Ctx, PerCore},
    tables::FibTarget,
    wire::{ethernet, Mac},
    Action, Frame, VecFrame,
};
use std::net::Ipv4Addr;

/// Bytes as lowercase hex, two digits each (what `parse_hex` reads).
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &x in bytes {
        s.push(DIGITS[(x >> 4) as usize] as char);
        s.push(DIGITS[(x & 15) as usize] as char);
    }
    s
}

/// Parses "02 00 ..", "0200..", "02:00:.." into bytes.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace() && *c != ':' && *c != '-').collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("packet: {} hex digits is an odd number", digits.len()));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16).map_err(|_| format!("packet: {:?} is not hex", &digits[i..i + 2]))
        })
        .collect()
}

/// An address as `Meta` keeps it, written as its IP version writes it.
fn ip_text(k: u128, version: u8) -> String {
    if version == 4 {
        Ipv4Addr::from(k as u32).to_string()
    } else {
        std::net::Ipv6Addr::from(k).to_string()
    }
}

fn describe(m: &Meta) -> String {
    let mut s = format!("{} -> {}", m.src, m.dst);
    if let Some(t) = m.vlan_tci {
        s += &format!(" vlan {}", t & 0x0fff);
    }
    let ip = |k: u128| ip_text(k, m.ip_version);
    match (m.ethertype, m.ip_version) {
        (ethernet::ETHERTYPE_ARP, _) => s += " ARP",
        (_, 4 | 6) => {
            let proto = match m.proto {
                6 => "TCP".to_string(),
                17 => "UDP".to_string(),
                1 | 58 => "ICMP".to_string(),
                p => format!("proto {p}"),
            };
            s += &format!(" IPv{} {proto} {} -> {}", m.ip_version, ip(m.ip_src), ip(m.ip_dst));
            if m.l4 != 0 {
                s += &format!(" ports/type {} -> {}", m.sport, m.dport);
            }
            if m.fragment {
                s += " (fragment)";
            }
        }
        (et, _) => s += &format!(" ethertype 0x{et:04x}"),
    }
    s
}

/// What the service stage and the gateway did to a packet from a VM (`before` as it
/// came, `after` as it leaves).
fn service_steps(snap: &Snapshot, vni: u32, before: &Meta, after: &Meta) -> Vec<String> {
    let mut steps = Vec::new();
    let svc = &snap.l2.services;
    let v = before.ip_version;
    let at = |ip: u128, port: u16| match v {
        6 => format!("[{}]:{port}", ip_text(ip, v)),
        _ => format!("{}:{port}", ip_text(ip, v)),
    };
    if let Some(vip) = svc.at_vip(vni, before.ip_dst, before.dport, before.proto).filter(|_| before.dst == GATEWAY_MAC)
    {
        let (key, _) = pipelines::conntrack::Tuple {
            zone: vni,
            proto: before.proto,
            src: (before.ip_src, before.sport),
            dst: (before.ip_dst, before.dport),
        }
        .key();
        let held = snap.l2.ct.table.as_ref().and_then(|t| t.lookup_nat(&key, t.hash(&key)));
        steps.push(format!(
            "service: VIP {} -> backend {} ({}); DNAT",
            at(before.ip_dst, before.dport),
            at(after.ip_dst, after.dport),
            match held {
                Some(_) => "held by the connection's session".to_string(),
                None => format!("{} for a new connection", vip.service.picked_by()),
            }
        ));
    } else if svc.is_backend(vni, before.ip_src, before.sport, before.proto) && after.ip_src != before.ip_src {
        steps.push(format!("service: a backend's reply leaves from VIP {}", at(after.ip_src, after.sport)));
    }
    if before.dst == GATEWAY_MAC && after.dst != GATEWAY_MAC {
        steps.push(format!("gateway: routed to {} (the endpoint holding {})", after.dst, ip_text(after.ip_dst, v)));
    }
    if !steps.is_empty() {
        steps.push(format!("header now: {}", describe(after)));
    }
    steps
}

fn target(t: FibTarget, name: &dyn Fn(u16) -> String) -> String {
    match t {
        FibTarget::Port(p) => format!("port {}", name(p)),
        FibTarget::Vtep(ip) => format!("remote VTEP {}", Ipv4Addr::from(ip)),
    }
}

/// What the egress `port` does with the segmentation `f` still owes, if any, asked as
/// the egress asks, of the frame as a chain of received buffers.
fn egress_offload(snap: &Snapshot, f: &VecFrame, port: u16, name: &dyn Fn(u16) -> String) -> Option<String> {
    let o = f.offload();
    o.gso?;
    let len = f.len();
    let segs = len.div_ceil(dataplane::mempool::SEG_BYTES).min(u16::MAX as usize) as u16;
    Some(match snap.egress(port, &o, len, segs) {
        Egress::Whole => format!("offload: leaves port {} whole, which takes TSO", name(port)),
        Egress::Nic(_) => format!("offload: leaves port {} whole, its NIC segments it ({segs} buffers)", name(port)),
        Egress::Software => {
            format!("offload: cut in software into {} frames for port {}", o.segments(len), name(port))
        }
    })
}

/// Runs `bytes` through the stages of `port` (ethdev id `id`) as the snapshot says; a
/// TSO frame of segments of `tso` payload bytes if that is given.
pub fn trace(
    snap: &Snapshot,
    port: &str,
    id: u16,
    (bytes, tso): (&[u8], Option<u16>),
    name: &dyn Fn(u16) -> String,
    rule_of_slot: &dyn Fn(u32) -> Option<u32>,
) -> TraceView {
    let mut steps = Vec::new();
    let slot = snap.ports[id as usize];
    let mut frames = [VecFrame::new(bytes)];
    let mut meta = [Meta::default()];
    parse(bytes, &mut meta[0]);
    steps.push(format!("parse: {} bytes, {}", bytes.len(), describe(&meta[0])));
    if let Some(mss) = tso {
        match pipelines::offload::partial(bytes, Some(mss)) {
            Ok(o) => {
                frames[0].set_offload(o);
                steps.push(format!(
                    "offload: a TSO frame, {} segments of at most {mss} payload bytes, {} bytes on the wire",
                    o.segments(bytes.len()),
                    o.wire_len(bytes.len())
                ));
            }
            Err(r) => {
                let action = format!("drop: {} ({})", r.name(), r.help());
                steps.push("offload: not a TCP frame a TSO frame can be".into());
                steps.push(format!("action: {action}"));
                return TraceView {
                    port: port.into(),
                    steps,
                    action,
                    drop_reason: Some(r.name().into()),
                    output: None,
                };
            }
        }
    }
    // Connection tracking looks the packet's session up but neither makes nor moves one.
    let mut dry = (*snap.l2).clone();
    dry.ct = std::sync::Arc::new(pipelines::conntrack::CtTables { dry: true, ..(*snap.l2.ct).clone() });
    let t = &dry;
    let ctx = Ctx { tables: t, clock: Clock { now: 0, hz: 1 } };
    let mut learned = Vec::new();
    let from_vm = matches!(slot.role, Role::Vm { .. });
    if let Some(peer) = slot.xconnect {
        steps.push(format!("cross-connect: to port {} (the pipeline is bypassed)", name(peer)));
        meta[0].action = Action::Tx(peer);
    } else {
        match slot.role {
            Role::None => {
                meta[0].action = Action::Drop(pipelines::DropReason::NoXconnect);
            }
            Role::Vm { vni } => {
                steps.push(format!("port: VM port in VNI {vni}"));
                if let Some(cfg) = t.qos.port(id).and_then(|q| q.ingress) {
                    let mut probe = pipelines::qos::MeterState::new(&cfg, 0, 1);
                    let color = probe.color(&cfg, 0, 1, frames[0].wire_len() as u64);
                    steps.push(format!(
                        "policer: {color:?} -> {:?} (a trace starts from full buckets; live traffic's colour depends on the recent load)",
                        cfg.action(color)
                    ));
                }
                let before = meta[0];
                stages::from_vm(&ctx, id, vni, &mut frames, &mut meta, &mut PerCore::default(), &mut learned);
                steps.extend(service_steps(snap, vni, &before, &meta[0]));
                // (A frame too short for its MACs was dropped as a runt: no FIB to ask.)
                let dst = bytes.get(..6).map(Mac::from_slice);
                if let Some(dst) = dst.filter(|_| meta[0].action != Action::Drop(pipelines::DropReason::BadSrcMac)) {
                    steps.push(match t.lookup(vni, dst) {
                        _ if dst.is_multicast() => format!("fib: {dst} is a group address: flood"),
                        Some(e) => format!(
                            "fib: {dst} in VNI {vni} -> {} ({})",
                            target(e.target, name),
                            if e.is_static { "static" } else { "learned" }
                        ),
                        None => format!("fib: {dst} unknown in VNI {vni}: flood"),
                    });
                }
            }
            Role::Uplink => {
                steps.push("port: uplink".into());
                stages::from_uplink(&ctx, id, &mut frames, &mut meta, &mut PerCore::default(), &mut learned);
                if let (Some(ev), Action::Tx(_) | Action::Flood { .. } | Action::Drop(_)) =
                    (learned.first(), meta[0].action)
                {
                    let inner = frames[0].bytes();
                    steps.push(format!(
                        "decap: VXLAN VNI {} from remote VTEP {}; inner {} bytes, {}",
                        ev.vni,
                        target(ev.target, name).trim_start_matches("remote VTEP "),
                        inner.len(),
                        describe(&meta[0])
                    ));
                    let dst = meta[0].dst;
                    if !dst.is_multicast() {
                        steps.push(match t.lookup(ev.vni, dst) {
                            Some(e) => format!("fib: {dst} in VNI {} -> {}", ev.vni, target(e.target, name)),
                            None => format!("fib: {dst} unknown in VNI {}: flood to local ports", ev.vni),
                        });
                    }
                }
            }
        }
    }
    for ev in &learned {
        let known = t.lookup(ev.vni, ev.mac).map(|e| e.target);
        steps.push(format!(
            "learn: {} in VNI {} at {}{}",
            ev.mac,
            ev.vni,
            target(ev.target, name),
            match known {
                Some(k) if k == ev.target => " (already known)".to_string(),
                Some(k) => format!(" (moves from {})", target(k, name)),
                None => " (new)".to_string(),
            }
        ));
    }
    let ct = meta[0].ct;
    if ct.tracked {
        use pipelines::conntrack::CtState;
        steps.push(match ct.state {
            CtState::Established | CtState::Related => format!(
                "conntrack: {} ({} of a session found), the rules are not asked",
                ct.state.name(),
                if ct.reply { "the answering side" } else { "the opening side" }
            ),
            CtState::New if ct.session != 0 => {
                "conntrack: new (its session is not answered yet): the rules decide again".into()
            }
            CtState::New => "conntrack: new (no session): the rules decide; allowed, it would open a session".into(),
            CtState::Invalid => "conntrack: invalid: part of no session and cannot start one".into(),
            CtState::Untracked if pipelines::acl::finds_neighbours(&meta[0]) => {
                "conntrack: not tracked (ARP or neighbour discovery): security groups let it pass".into()
            }
            CtState::Untracked => "conntrack: not tracked (not IP): the rules decide".into(),
        });
        let session = snap.l2.ct.table.as_ref().filter(|_| ct.session != 0).and_then(|t| t.view(ct.session - 1));
        if let Some(v) = session {
            steps.push(format!("conntrack: {}", crate::conntrack::describe(&v, name)));
        }
    }
    for (dir, slot) in [("in (from the VM)", meta[0].acl_in), ("out (to the VM)", meta[0].acl_out)] {
        if slot != 0 {
            let rule = rule_of_slot(slot - 1).map_or("?".to_string(), |r| r.to_string());
            steps.push(format!("acl {dir}: rule {rule} decided"));
        }
    }
    match meta[0].action {
        Action::Drop(pipelines::DropReason::AclDenyIn) if meta[0].acl_in == 0 => {
            steps.push("acl in (from the VM): no rule matched; the port's default (deny) decided".into())
        }
        Action::Drop(pipelines::DropReason::AclDenyOut) if meta[0].acl_out == 0 => {
            steps.push("acl out (to the VM): no rule matched; the port's default (deny) decided".into())
        }
        _ => {}
    }
    let out = frames[0].bytes().to_vec();
    if let Action::Tx(p) = meta[0].action {
        if !snap.ports[p as usize].active {
            steps.push(format!("egress: port {} takes nothing", name(p)));
            meta[0].action = Action::Drop(snap.ports[p as usize].unsendable());
        }
    }
    let (action, drop_reason) = match meta[0].action {
        Action::Tx(p) => {
            if from_vm && t.vtep.is_some_and(|v| v.uplink == p) && out.len() == bytes.len() + 50 {
                let h = &out[..50];
                steps.push(format!(
                    "encap: {} -> {}, {} -> {}, UDP {} -> {}, VNI {}, TTL {}, DSCP/ECN 0x{:02x}",
                    Mac::from_slice(&h[6..]),
                    Mac::from_slice(h),
                    Ipv4Addr::new(h[26], h[27], h[28], h[29]),
                    Ipv4Addr::new(h[30], h[31], h[32], h[33]),
                    u16::from_be_bytes([h[34], h[35]]),
                    u16::from_be_bytes([h[36], h[37]]),
                    u32::from_be_bytes([0, h[46], h[47], h[48]]),
                    h[22],
                    h[15]
                ));
            }
            if let Some(step) = egress_offload(snap, &frames[0], p, name) {
                steps.push(step);
            }
            (format!("tx on port {}", name(p)), None)
        }
        Action::Flood { vni } => {
            let net = t.networks.get(&vni);
            let locals: Vec<String> = net
                .map(|n| {
                    n.ports.iter().filter(|&&p| p != id && snap.ports[p as usize].active).map(|&p| name(p)).collect()
                })
                .unwrap_or_default();
            let mut a = format!("flood in VNI {vni} to local ports [{}]", locals.join(", "));
            if from_vm {
                let vteps: Vec<String> = net
                    .map(|n| {
                        n.flood_vteps
                            .iter()
                            .map(|ip| {
                                let s = Ipv4Addr::from(*ip).to_string();
                                if t.remotes.contains_key(ip) {
                                    s
                                } else {
                                    s + " (next hop unresolved: dropped)"
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                a += &format!(" and remote VTEPs [{}]", vteps.join(", "));
            } else {
                a += " (never back into the overlay)";
            }
            (a, None)
        }
        Action::Punt => ("to the control plane (an ARP reply to our request)".into(), None),
        Action::Drop(r) => (format!("drop: {} ({})", r.name(), r.help()), Some(r.name().to_string())),
        Action::Continue => ("undecided (a bug: please report it)".into(), None),
    };
    steps.push(format!("action: {action}"));
    let output = matches!(meta[0].action, Action::Tx(_)).then(|| to_hex(&out));
    TraceView { port: port.to_string(), steps, action, drop_reason, output }
}
