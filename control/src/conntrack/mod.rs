//! Connection tracking on the control plane: which VM ports are stateful and how, the
//! session table's life (made when the first port turns stateful, kept across every
//! publish so sessions survive rule and port changes), the timeouts, and reads of the
//! sessions for `conntrack list / flush / stats`.
pub mod api;
pub mod cli;

use crate::{
    feature::{Ctx, Feature, Handled, Tables},
    ports::{api::PortRole, PortRef},
    state::DesiredState,
    store::change::Change,
};
use api::{Conn, CtRequest, CtStats, EventRow, EventsView, SessionRow, StatefulSpec};
use dataplane::{pmd::Shared, MAX_PORTS};
use pipelines::{
    conntrack::{events::RING, table, CtPort, CtTable, CtTables, InvalidReason, SessionView, TIMEOUTS},
    meta::ip_addr,
    DropReason,
};
use serde_json::{json, Value};
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{atomic::Ordering::Relaxed, Arc},
};

/// Sessions the table holds unless vswitchd is told otherwise.
pub const DEFAULT_SESSIONS: u32 = 1_000_000;
/// Rows `conntrack list` returns unless asked for more.
const DEFAULT_LIST: usize = 1000;

#[derive(Default)]
pub struct Conntrack {
    ports: BTreeMap<String, StatefulSpec>,
    /// Timeouts set by the user (seconds), by name.
    timeouts: BTreeMap<String, u32>,
    capacity: Option<u32>,
    table: Option<Arc<CtTable>>,
    /// Per port name: the compiled ACL it was last seen with (by address) and its epoch.
    epochs: HashMap<String, (usize, u16)>,
    shared: Option<Arc<Shared>>,
    /// The flow log: the latest events the cores handed over, numbered.
    log: VecDeque<EventRow>,
    next_seq: u64,
    /// Events the log let go of before anyone read them.
    log_lost: u64,
    /// Sessions made per second: the count at the start of the current second, and
    /// the last whole second's rate.
    rate_mark: Option<(std::time::Instant, u64)>,
    created_per_sec: u64,
    /// Services need the table (for their translated sessions) even where no port is
    /// stateful; the switch says so before each compile.
    pub for_services: bool,
}

/// Flow-log events kept for `conntrack events` to read.
const LOG: usize = 20_000;

impl Conntrack {
    pub fn new(shared: Arc<Shared>, capacity: u32) -> Conntrack {
        Conntrack { shared: Some(shared), capacity: Some(capacity), ..Default::default() }
    }

    /// Without the cores (unit tests, fuzz targets): no counters of theirs, and a table
    /// of `capacity` sessions once one is needed.
    pub fn detached(capacity: u32) -> Conntrack {
        Conntrack { capacity: Some(capacity), ..Default::default() }
    }

    fn capacity(&self) -> u32 {
        self.capacity.unwrap_or(DEFAULT_SESSIONS)
    }

    pub fn set_stateful(&mut self, spec: StatefulSpec, ports: &[PortRef]) -> Result<(), String> {
        let p = ports
            .iter()
            .find(|p| p.name == spec.port)
            .ok_or_else(|| format!("port: no port named {:?} (vswitchctl port list shows them)", spec.port))?;
        if p.role != Some(PortRole::Vm) {
            return Err(format!("port: {:?} is not a VM port; security groups apply to VM ports", spec.port));
        }
        if spec.max_sessions == Some(0) {
            return Err("max_sessions: give at least 1 (or leave it out for no per-port limit)".into());
        }
        if let Some(m) = spec.max_sessions {
            if m > self.capacity() {
                return Err(format!("max_sessions: {m} is more than the table holds ({})", self.capacity()));
            }
        }
        if spec.on {
            self.ports.insert(spec.port.clone(), spec);
        } else {
            self.ports.remove(&spec.port);
        }
        Ok(())
    }

    pub fn specs(&self) -> Vec<StatefulSpec> {
        self.ports.values().cloned().collect()
    }

    /// Replaces every stateful port and timeout: all or nothing.
    pub fn replace(
        &mut self,
        specs: Vec<StatefulSpec>,
        timeouts: BTreeMap<String, u32>,
        ports: &[PortRef],
    ) -> Result<(), String> {
        let mut next = Conntrack { capacity: self.capacity, ..Default::default() };
        for s in specs {
            let name = s.port.clone();
            next.set_stateful(s, ports).map_err(|e| format!("stateful ({name}): {e}"))?;
        }
        next.set_timeouts(&timeouts).map_err(|e| format!("conntrack_timeouts: {e}"))?;
        self.ports = next.ports;
        self.timeouts = next.timeouts;
        self.push_timeouts();
        Ok(())
    }

    fn set_timeouts(&mut self, set: &BTreeMap<String, u32>) -> Result<(), String> {
        for (name, secs) in set {
            let Some((_, _)) = TIMEOUTS.iter().find(|(n, _)| n == name) else {
                let names: Vec<&str> = TIMEOUTS.iter().map(|(n, _)| *n).collect();
                return Err(format!("no timeout named {name:?}; the timeouts are {}", names.join(", ")));
            };
            if *secs == 0 || *secs > 2_000_000 {
                return Err(format!("{name}: {secs} s is out of range (1 to 2000000)"));
            }
        }
        for (name, secs) in set {
            let default = TIMEOUTS.iter().find(|(n, _)| n == name).map(|(_, d)| *d);
            if Some(*secs) == default {
                self.timeouts.remove(name);
            } else {
                self.timeouts.insert(name.clone(), *secs);
            }
        }
        Ok(())
    }

    /// Writes the timeouts into the live table (the cores read them at expiry).
    fn push_timeouts(&self) {
        if let Some(t) = &self.table {
            for (name, default) in TIMEOUTS {
                t.timeouts.set(name, self.timeouts.get(*name).copied().unwrap_or(*default));
            }
        }
    }

    pub fn timeouts(&self) -> BTreeMap<String, u32> {
        self.timeouts.clone()
    }

    fn all_timeouts(&self) -> BTreeMap<String, u32> {
        TIMEOUTS.iter().map(|(n, d)| (n.to_string(), self.timeouts.get(*n).copied().unwrap_or(*d))).collect()
    }

    fn now(&self) -> u32 {
        table_now(self.shared.as_deref())
    }

    fn port_names(ports: &[PortRef]) -> HashMap<u16, String> {
        ports.iter().filter_map(|p| Some((p.id?, p.name.clone()))).collect()
    }

    /// The sessions `port` and `vni` pick.
    fn pick<'a>(
        port: Option<&'a str>,
        vni: Option<u32>,
        names: &'a HashMap<u16, String>,
    ) -> impl Fn(&SessionView) -> bool + 'a {
        move |v: &SessionView| {
            vni.is_none_or(|z| v.key.zone == z)
                && port.is_none_or(|p| v.ports.iter().any(|id| names.get(id).is_some_and(|n| n == p)))
        }
    }

    /// The sessions `port` and `vni` pick: through the per-port index when either is
    /// given (a port's sessions are those it opened, and those another stateful port of
    /// its network opened toward it), else every session.
    fn picked<'a>(
        t: &'a CtTable,
        port: Option<&'a str>,
        vni: Option<u32>,
        ports: &[PortRef],
        names: &'a HashMap<u16, String>,
    ) -> Box<dyn Iterator<Item = SessionView> + 'a> {
        let pick = Self::pick(port, vni, names);
        let net = port.and_then(|p| ports.iter().find(|q| q.name == p)).map(|q| q.vni);
        let ids: Vec<u16> = match (net, vni) {
            (None, None) => return Box::new(t.sessions().filter(move |v| pick(v))),
            (Some(net), _) => ports
                .iter()
                .filter(|q| Some(q.name.as_str()) == port || (net.is_some() && q.vni == net))
                .filter_map(|q| q.id)
                .collect(),
            (None, Some(z)) => ports.iter().filter(|q| q.vni.is_none_or(|v| v == z)).filter_map(|q| q.id).collect(),
        };
        let mut seen = std::collections::HashSet::new();
        Box::new(ids.into_iter().flat_map(|id| t.at_port(id)).filter(move |v| pick(v) && seen.insert(v.index)))
    }

    pub fn list(&self, port: Option<&str>, vni: Option<u32>, limit: usize, ports: &[PortRef]) -> Vec<SessionRow> {
        let Some(t) = &self.table else { return Vec::new() };
        let names = Self::port_names(ports);
        let now = self.now();
        // (A session past its timeout is left out though its owner core has not freed
        // it yet, as the kernel's `conntrack -L` skips an expired entry.)
        Self::picked(t, port, vni, ports, &names)
            .filter(|v| !v.expired(now))
            .take(limit)
            .map(|v| row(&v, &names, now))
            .collect()
    }

    fn check_filter(&self, port: Option<&str>, ports: &[PortRef]) -> Result<(), String> {
        if let Some(p) = port {
            if !ports.iter().any(|q| q.name == p) {
                return Err(format!("port: no port named {p:?}"));
            }
        }
        Ok(())
    }

    pub fn stats(&self) -> CtStats {
        let mut s = CtStats {
            capacity: self.table.as_ref().map_or(self.capacity(), |t| t.capacity()),
            stateful_ports: self.ports.keys().cloned().collect(),
            ..Default::default()
        };
        if let Some(t) = &self.table {
            for part in t.parts() {
                s.created += part.created.load(Relaxed);
                s.created_per_sec = self.created_per_sec;
                s.expired += part.expired.load(Relaxed);
                s.full += part.full.load(Relaxed);
                s.recycled += part.evicted.load(Relaxed);
                for r in InvalidReason::ALL {
                    *s.invalid.entry(r.name().into()).or_default() += part.invalid[r as usize].load(Relaxed);
                }
            }
            let now = self.now();
            for v in t.sessions().filter(|v| !v.expired(now)) {
                s.sessions += 1;
                *s.by_state.entry(format!("{}/{}", proto_name(v.key.proto), state_name(&v))).or_default() += 1;
            }
        }
        if let Some(shared) = &self.shared {
            for r in [DropReason::CtInvalid, DropReason::CtFull, DropReason::CtPortLimit] {
                let n: u64 =
                    shared.counters.iter().flat_map(|c| c.ports.iter()).map(|p| p.drops[r.index()].get()).sum();
                s.drops.insert(r.name().into(), n);
            }
        }
        s
    }

    /// The Prometheus families of connection tracking (nothing until a table exists).
    /// From the cores' counters alone: a scrape never walks the table.
    pub fn metrics(&self) -> String {
        let Some(t) = &self.table else { return String::new() };
        let sum = |f: fn(&table::Part) -> u64| t.parts().iter().map(f).sum::<u64>();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            crate::stats::metrics::family(&mut out, name, kind, help, samples.iter().cloned())
        };
        let one = |v: u64| [(String::new(), v)];
        family(
            "vswitch_conntrack_sessions",
            "gauge",
            "Live connection-tracking sessions.",
            &one(sum(|p| p.live.load(Relaxed))),
        );
        family("vswitch_conntrack_capacity", "gauge", "Sessions the table holds.", &one(t.capacity() as u64));
        family("vswitch_conntrack_created_total", "counter", "Sessions made.", &one(sum(|p| p.created.load(Relaxed))));
        family(
            "vswitch_conntrack_expired_total",
            "counter",
            "Sessions that timed out or were flushed.",
            &one(sum(|p| p.expired.load(Relaxed))),
        );
        family(
            "vswitch_conntrack_recycled_total",
            "counter",
            "Half-open sessions recycled to make room for new connections.",
            &one(sum(|p| p.evicted.load(Relaxed))),
        );
        family(
            "vswitch_conntrack_refused_total",
            "counter",
            "New connections refused: the table (a core's share) or a port's limit was full.",
            &one(sum(|p| p.full.load(Relaxed))),
        );
        let invalid: Vec<(String, u64)> = InvalidReason::ALL
            .iter()
            .map(|r| {
                let n = t.parts().iter().map(|p| p.invalid[*r as usize].load(Relaxed)).sum();
                (crate::stats::metrics::labels(&[("reason", r.name())]), n)
            })
            .collect();
        family("vswitch_conntrack_invalid_total", "counter", "Packets found invalid, by why.", &invalid);
        out
    }

    /// Takes in the cores' flow-log events (called every few ms); `rules` maps ACL
    /// counter slots to rule ids, asked for only when a rule refused something.
    pub fn drain(&mut self, ports: &[PortRef], rules: &dyn Fn() -> HashMap<u32, u32>) {
        let Some(t) = self.table.clone() else { return };
        let created: u64 = t.parts().iter().map(|p| p.created.load(Relaxed)).sum();
        let now = std::time::Instant::now();
        match self.rate_mark {
            Some((at, n)) if now.duration_since(at).as_secs_f64() >= 1.0 => {
                let secs = now.duration_since(at).as_secs_f64();
                self.created_per_sec = ((created - n) as f64 / secs).round() as u64;
                self.rate_mark = Some((now, created));
            }
            Some(_) => {}
            None => self.rate_mark = Some((now, created)),
        }
        // Both asked for only when there are events: this runs every few ms.
        let mut names: Option<HashMap<u16, String>> = None;
        let mut slots: Option<HashMap<u32, u32>> = None;
        for part in t.parts() {
            part.events.drain(|e| {
                let names = names.get_or_insert_with(|| Self::port_names(ports));
                let mut row = event_row(self.next_seq, &e, names);
                if e.rule != 0 {
                    row.rule = slots.get_or_insert_with(rules).get(&(e.rule - 1)).copied();
                }
                self.next_seq += 1;
                if self.log.len() == LOG {
                    self.log.pop_front();
                    self.log_lost += 1;
                }
                self.log.push_back(row);
            });
        }
    }

    fn events(&self, since: Option<u64>, port: Option<&str>) -> EventsView {
        let lost = self.log_lost
            + self.table.as_ref().map_or(0, |t| t.parts().iter().map(|p| p.events.lost.load(Relaxed)).sum::<u64>());
        let since = since.unwrap_or(self.next_seq);
        let events = self
            .log
            .iter()
            .filter(|r| r.seq >= since)
            .filter(|r| port.is_none_or(|p| r.port.as_deref() == Some(p)))
            .cloned()
            .collect();
        EventsView { events, next: self.next_seq, lost }
    }

    pub fn handle(&mut self, req: CtRequest, ctx: &Ctx) -> Result<Handled, String> {
        Ok(match req {
            CtRequest::AclStateful(spec) => {
                let name = spec.port.clone();
                self.set_stateful(spec, ctx.ports)?;
                let change = match self.ports.get(&name) {
                    Some(s) => Change::put("stateful", s),
                    None => Change::del("stateful", json!(name)),
                };
                Handled::change(Value::Null, vec![change])
            }
            CtRequest::ConntrackList { port, vni, limit } => {
                self.check_filter(port.as_deref(), ctx.ports)?;
                Handled::read(self.list(port.as_deref(), vni, limit.unwrap_or(DEFAULT_LIST), ctx.ports))
            }
            CtRequest::ConntrackFlush { port, vni } => {
                self.check_filter(port.as_deref(), ctx.ports)?;
                let n = match &self.table {
                    Some(t) => {
                        let names = Self::port_names(ctx.ports);
                        let doomed: Vec<(u32, u32)> = Self::picked(t, port.as_deref(), vni, ctx.ports, &names)
                            .map(|v| (v.index, v.gen))
                            .collect();
                        doomed.into_iter().filter(|(i, g)| t.kill(*i, *g)).count()
                    }
                    None => 0,
                };
                Handled::read(json!({ "flushed": n }))
            }
            CtRequest::ConntrackStats => Handled::read(self.stats()),
            CtRequest::ConntrackEvents { since, port } => {
                self.check_filter(port.as_deref(), ctx.ports)?;
                Handled::read(self.events(since, port.as_deref()))
            }
            CtRequest::ConntrackTimeouts { set } => {
                if set.is_empty() {
                    return Ok(Handled::read(self.all_timeouts()));
                }
                self.set_timeouts(&set)?;
                self.push_timeouts();
                Handled {
                    reply: json!(self.all_timeouts()),
                    changes: vec![Change::set("conntrack_timeouts", &self.timeouts)],
                    publish: false,
                }
            }
        })
    }
}

fn proto_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        n => n.to_string(),
    }
}

fn state_name(v: &SessionView) -> String {
    if v.key.proto == 6 {
        v.tcp.name().into()
    } else if v.state & table::SEEN_REPLY != 0 {
        "replied".into()
    } else {
        "unreplied".into()
    }
}

fn conn(zone: u32, proto: u8, src: (u128, u16), dst: (u128, u16)) -> Conn {
    Conn {
        zone,
        proto: proto_name(proto),
        src: ip_addr(src.0).to_string(),
        sport: src.1,
        dst: ip_addr(dst.0).to_string(),
        dport: dst.1,
    }
}

fn event_row(seq: u64, e: &pipelines::conntrack::events::Event, names: &HashMap<u16, String>) -> EventRow {
    use pipelines::conntrack::events::EventKind;
    let (src, dst) = if e.orig_hi { (e.key.hi, e.key.lo) } else { (e.key.lo, e.key.hi) };
    let end = e.kind == EventKind::End;
    let denied = e.kind == EventKind::Denied;
    EventRow {
        seq,
        event: match e.kind {
            EventKind::New => "new",
            EventKind::End => "end",
            EventKind::Denied => "denied",
        }
        .into(),
        conn: conn(e.key.zone, e.key.proto, src, dst),
        port: names.get(&e.port).cloned(),
        packets: end.then_some(e.packets),
        bytes: end.then_some(e.bytes),
        seconds: end.then_some(e.millis as f64 / 1000.0),
        reason: denied.then(|| DropReason::ALL.get(e.reason as usize).map_or("?", |r| r.name()).to_string()),
        rule: None,
    }
}

/// One line about a session, for `trace`.
pub fn describe(v: &SessionView, names: &dyn Fn(u16) -> String) -> String {
    let (src, dst) = v.orig();
    let c = conn(v.key.zone, v.key.proto, src, dst);
    let ports: Vec<String> = v.ports.iter().filter(|p| **p != 0xffff).map(|p| names(*p)).collect();
    format!(
        "session {} in zone {}: {} {}:{} -> {}:{} {}{}, packets {}/{}, seen at {}",
        v.index,
        c.zone,
        c.proto,
        c.src,
        c.sport,
        c.dst,
        c.dport,
        state_name(v),
        if v.state & table::ASSURED != 0 { " (assured)" } else { "" },
        v.packets[0],
        v.packets[1],
        ports.join(", ")
    )
}

/// Milliseconds now on the session table's clock, which the cores keep (`shared`: their
/// counters, with the TSC's rate; none in unit tests).
pub fn table_now(shared: Option<&Shared>) -> u32 {
    let hz = shared.map_or(1_000_000_000, |s| s.tsc_hz);
    pipelines::conntrack::now_ms(pipelines::clock::Clock { now: dataplane::tsc(), hz })
}

fn row(v: &SessionView, names: &HashMap<u16, String>, now: u32) -> SessionRow {
    let (src, dst) = v.orig();
    let icmp = matches!(v.key.proto, 1 | 58);
    SessionRow {
        conn: conn(v.key.zone, v.key.proto, src, (dst.0, if icmp { 0 } else { dst.1 })),
        state: state_name(v),
        assured: v.state & table::ASSURED != 0,
        ports: v.ports.iter().filter_map(|id| names.get(id).cloned()).collect(),
        idle: now.wrapping_sub(v.last_seen) / 1000,
        age: now.wrapping_sub(v.created) / 1000,
        packets: v.packets,
        bytes: v.bytes,
    }
}

impl Feature for Conntrack {
    fn port_removed(&mut self, port: &PortRef) -> Vec<Change> {
        self.epochs.remove(&port.name);
        match self.ports.remove(&port.name) {
            Some(_) => vec![Change::del("stateful", json!(port.name))],
            None => Vec::new(),
        }
    }

    fn desired(&self, out: &mut DesiredState) {
        out.stateful = self.specs();
        out.conntrack_timeouts = self.timeouts();
    }

    fn compile(&mut self, ports: &[PortRef], cores: usize, t: &mut Tables) {
        let mut ct = CtTables { table: None, ports: (0..MAX_PORTS).map(|_| None).collect(), dry: false };
        let wanted = !self.ports.is_empty() || self.for_services;
        if wanted && self.table.is_none() {
            // Made once, when first needed, and kept: sessions outlive every publish.
            tracing::info!(
                "conntrack: a table of {} sessions ({} MB)",
                self.capacity(),
                (self.capacity() as u64 * 128) >> 20
            );
            self.table = Some(Arc::new(CtTable::with_memory(
                self.capacity(),
                cores,
                MAX_PORTS,
                RING,
                dataplane::advise_huge_pages,
            )));
            self.push_timeouts();
        }
        let mut epochs = HashMap::new();
        for p in ports {
            let (Some(id), Some(spec)) = (p.id, self.ports.get(&p.name)) else { continue };
            // The port's rules are a new compiled ACL when they changed: a new epoch.
            let acl = t.l2.acl.ports.get(id as usize).and_then(|a| a.as_ref()).map_or(0, |a| Arc::as_ptr(a) as usize);
            let epoch = match self.epochs.get(&p.name) {
                Some(&(a, e)) if a == acl => e,
                Some(&(_, e)) => e.wrapping_add(1).max(1),
                None => 1,
            };
            epochs.insert(p.name.clone(), (acl, epoch));
            if let Some(slot) = ct.ports.get_mut(id as usize) {
                *slot = Some(CtPort {
                    liberal: spec.liberal,
                    sticky: spec.sticky,
                    pickup: spec.pickup,
                    max_sessions: spec.max_sessions.unwrap_or(0),
                    epoch,
                });
            }
        }
        self.epochs = epochs;
        ct.table = self.table.clone().filter(|_| wanted);
        t.l2.ct = Arc::new(ct);
    }
}

#[cfg(test)]
mod tests;
