//! QoS on the control plane: rates and sizes as users write them, validated where they
//! enter, compiled into per-core meters.
pub mod api;
pub mod cli;

use crate::{
    feature::{Ctx, Feature, Handled, Tables},
    ports::{api::PortRole, PortRef},
    state::DesiredState,
    store::change::Change,
};
use api::{MeterSpec, QosMode, QosRequest, QosSpec};
use dataplane::MAX_PORTS;
use pipelines::qos::{ColorAction, MeterConfig, Mode, PortQos, QosTables, Unit};
use std::collections::BTreeMap;

/// 400 Gbit/s in bytes per second: the fastest rate accepted.
const MAX_BYTES_PER_SEC: u64 = 50_000_000_000;
/// About 400 Gbit/s of minimum-size frames.
const MAX_PPS: u64 = 600_000_000;

/// A rate: (unit, units per second).
pub fn rate(field: &str, s: &str) -> Result<(Unit, u64), String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("{field}: {s:?} is not a rate; write e.g. 100mbit, 1gbit, 500kbit or 50kpps");
    let n: f64 = num.parse().map_err(|_| bad())?;
    let (u, scale) = match unit {
        "bit" | "bps" => (Unit::Bytes, 1.0 / 8.0),
        "kbit" | "kbps" => (Unit::Bytes, 1e3 / 8.0),
        "mbit" | "mbps" => (Unit::Bytes, 1e6 / 8.0),
        "gbit" | "gbps" => (Unit::Bytes, 1e9 / 8.0),
        "pps" => (Unit::Packets, 1.0),
        "kpps" => (Unit::Packets, 1e3),
        "mpps" => (Unit::Packets, 1e6),
        _ => return Err(bad()),
    };
    let v = (n * scale).round();
    if v.is_nan() || v < 1.0 {
        return Err(format!("{field}: {s:?} is zero; give a positive rate"));
    }
    let v = v as u64;
    let max = if u == Unit::Bytes { MAX_BYTES_PER_SEC } else { MAX_PPS };
    if v > max {
        return Err(format!("{field}: {s:?} is beyond 400 Gbit/s"));
    }
    Ok((u, v))
}

/// A burst size in the meter's unit: bytes (`64kb`, `1mb`, `1500b`, `1500`) or packets
/// (`32pkt`, `32`).
pub fn size(field: &str, s: &str, unit: Unit) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{field}: {s:?} is not a size; write e.g. 64kb or 32pkt"))?;
    let v = match (unit, suffix) {
        (Unit::Bytes, "" | "b") => Some(n),
        (Unit::Bytes, "kb" | "k") => n.checked_mul(1024),
        (Unit::Bytes, "mb" | "m") => n.checked_mul(1024 * 1024),
        (Unit::Packets, "" | "pkt" | "p") => Some(n),
        (Unit::Bytes, _) => return Err(format!("{field}: {s:?}: a byte-rate meter's burst is in bytes (64kb, 1500b)")),
        (Unit::Packets, _) => return Err(format!("{field}: {s:?}: a packet-rate meter's burst is in packets (32pkt)")),
    };
    match v {
        Some(0) => Err(format!("{field}: {s:?} is zero")),
        Some(v) if v <= 1 << 40 => Ok(v),
        _ => Err(format!("{field}: {s:?} is too large")),
    }
}

fn color_action(field: &str, s: &str) -> Result<ColorAction, String> {
    match s {
        "pass" => Ok(ColorAction::Pass),
        "drop" => Ok(ColorAction::Drop),
        other => match other.strip_prefix("dscp=").and_then(|n| n.parse::<u8>().ok()) {
            Some(d) if d < 64 => Ok(ColorAction::Remark(d)),
            _ => Err(format!("{field}: {s:?} is not an action; give pass, drop or dscp=N (N 0-63)")),
        },
    }
}

/// 10 ms at the rate, and at least two full-size frames (or 32 packets).
fn default_burst(unit: Unit, rate: u64) -> u64 {
    match unit {
        Unit::Bytes => (rate / 100).max(2 * 1518),
        Unit::Packets => (rate / 100).max(32),
    }
}

fn meter(
    dir: &str,
    m: &MeterSpec,
    mode: QosMode,
    yellow: ColorAction,
    red: ColorAction,
) -> Result<MeterConfig, String> {
    let (unit, cir) = rate(&format!("{dir}_rate"), &m.rate)?;
    let cbs = m
        .burst
        .as_deref()
        .map(|b| size(&format!("{dir}_burst"), b, unit))
        .transpose()?
        .unwrap_or(default_burst(unit, cir));
    let mode = match mode {
        QosMode::Srtcm => {
            if m.peak_rate.is_some() || m.peak_burst.is_some() {
                return Err(format!("{dir}_peak_rate: a peak rate needs --mode trtcm"));
            }
            let ebs = m
                .excess_burst
                .as_deref()
                .map(|b| size(&format!("{dir}_excess_burst"), b, unit))
                .transpose()?
                .unwrap_or(0);
            Mode::SrTcm { cir, cbs, ebs }
        }
        QosMode::Trtcm => {
            if m.excess_burst.is_some() {
                return Err(format!("{dir}_excess_burst: an excess burst is for --mode srtcm; trtcm has a peak burst"));
            }
            let pr =
                m.peak_rate.as_deref().ok_or_else(|| format!("{dir}_peak_rate: --mode trtcm needs a peak rate"))?;
            let (pu, pir) = rate(&format!("{dir}_peak_rate"), pr)?;
            if pu != unit {
                return Err(format!("{dir}_peak_rate: {pr:?} is not in the same unit as the committed rate"));
            }
            if pir < cir {
                return Err(format!("{dir}_peak_rate: {pr:?} is below the committed rate {:?}", m.rate));
            }
            let pbs = m
                .peak_burst
                .as_deref()
                .map(|b| size(&format!("{dir}_peak_burst"), b, unit))
                .transpose()?
                .unwrap_or(default_burst(unit, pir).max(cbs));
            Mode::TrTcm { cir, cbs, pir, pbs }
        }
    };
    Ok(MeterConfig { unit, mode, yellow, red })
}

/// Validates a spec against the ports, returning its compiled form (one core's share is
/// taken at compile time).
pub fn compile_spec(q: &QosSpec, ports: &[PortRef]) -> Result<PortQos, String> {
    let p = ports.iter().find(|p| p.name == q.port).ok_or_else(|| format!("port: no port named {:?}", q.port))?;
    if p.role != Some(PortRole::Vm) {
        return Err(format!("port: {:?} is not a VM port; QoS applies to VM ports", q.port));
    }
    let yellow = q.yellow.as_deref().map(|s| color_action("yellow", s)).transpose()?.unwrap_or(ColorAction::Pass);
    let red = q.red.as_deref().map(|s| color_action("red", s)).transpose()?.unwrap_or(ColorAction::Drop);
    let mode = q.mode.unwrap_or(QosMode::Srtcm);
    if let Some(d) = q.dscp {
        if d > 63 {
            return Err(format!("dscp: {d} is out of range; give 0 to 63"));
        }
    }
    if q.ingress.is_none() && q.egress.is_none() && q.dscp.is_none() {
        return Err("give at least one of --ingress-rate, --egress-rate or --dscp".into());
    }
    Ok(PortQos {
        ingress: q.ingress.as_ref().map(|m| meter("ingress", m, mode, yellow, red)).transpose()?,
        egress: q.egress.as_ref().map(|m| meter("egress", m, mode, yellow, red)).transpose()?,
        outer_dscp: q.dscp,
        version: 0,
    })
}

/// A meter shared out to `n` cores: each meters its share, so together they meter the
/// whole (cores do not share meter state).
fn share(m: MeterConfig, n: u64) -> MeterConfig {
    let d = |x: u64| (x / n).max(1);
    let mode = match m.mode {
        Mode::SrTcm { cir, cbs, ebs } => {
            Mode::SrTcm { cir: d(cir), cbs: d(cbs), ebs: if ebs == 0 { 0 } else { d(ebs) } }
        }
        Mode::TrTcm { cir, cbs, pir, pbs } => Mode::TrTcm { cir: d(cir), cbs: d(cbs), pir: d(pir), pbs: d(pbs) },
    };
    MeterConfig { mode, ..m }
}

/// Every port's QoS, with a version per port that changes only when its spec does.
#[derive(Default)]
pub struct Qos {
    specs: BTreeMap<String, (QosSpec, u64)>,
    next_version: u64,
}

impl Qos {
    pub fn set(&mut self, spec: QosSpec, ports: &[PortRef]) -> Result<(), String> {
        compile_spec(&spec, ports)?;
        if self.specs.get(&spec.port).is_some_and(|(s, _)| *s == spec) {
            return Ok(());
        }
        self.next_version += 1;
        self.specs.insert(spec.port.clone(), (spec, self.next_version));
        Ok(())
    }

    pub fn clear(&mut self, port: &str) -> Result<(), String> {
        self.specs.remove(port).map(|_| ()).ok_or_else(|| format!("port: {port:?} has no QoS"))
    }

    /// Replaces everything (apply, restore): all or nothing; kept specs keep their version.
    pub fn replace(&mut self, specs: Vec<QosSpec>, ports: &[PortRef]) -> Result<(), String> {
        let mut next = Qos { specs: BTreeMap::new(), next_version: self.next_version };
        for (i, s) in specs.into_iter().enumerate() {
            let port = s.port.clone();
            match self.specs.get(&port) {
                Some((old, v)) if *old == s => {
                    compile_spec(&s, ports).map_err(|e| format!("qos[{i}] ({port}): {e}"))?;
                    next.specs.insert(port, (s, *v));
                }
                _ => next.set(s, ports).map_err(|e| format!("qos[{i}] ({port}): {e}"))?,
            }
        }
        *self = next;
        Ok(())
    }

    pub fn specs(&self, port: Option<&str>) -> Vec<QosSpec> {
        self.specs.values().filter(|(s, _)| port.is_none_or(|p| p == s.port)).map(|(s, _)| s.clone()).collect()
    }

    /// The meters of every running port. `ingress_cores(id)` is how many cores poll the
    /// port's rx queues; `cores` how many PMD cores there are (any may send to a VM).
    pub fn compile(
        &self,
        ports: &[PortRef],
        max_ports: usize,
        ingress_cores: &dyn Fn(u16) -> u64,
        cores: u64,
    ) -> QosTables {
        let mut t = QosTables { ports: vec![PortQos::default(); max_ports] };
        for (spec, version) in self.specs.values() {
            let Some(id) = ports.iter().find(|p| p.name == spec.port).and_then(|p| p.id) else { continue };
            let Ok(mut q) = compile_spec(spec, ports) else { continue };
            q.ingress = q.ingress.map(|m| share(m, ingress_cores(id).max(1)));
            q.egress = q.egress.map(|m| share(m, cores.max(1)));
            q.version = *version;
            if let Some(slot) = t.ports.get_mut(id as usize) {
                *slot = q;
            }
        }
        t
    }
}

impl Feature for Qos {
    fn port_removed(&mut self, port: &PortRef) -> Vec<Change> {
        match self.specs.remove(&port.name) {
            Some(_) => vec![Change::del("qos", serde_json::json!(port.name))],
            None => Vec::new(),
        }
    }

    fn desired(&self, out: &mut DesiredState) {
        out.qos = self.specs(None);
    }

    fn compile(&mut self, ports: &[PortRef], cores: usize, t: &mut Tables) {
        let rx_cores = |id: u16| ports.iter().find(|p| p.id == Some(id)).map_or(1, |p| p.rx_cores);
        t.l2.qos = std::sync::Arc::new(Qos::compile(self, ports, MAX_PORTS, &rx_cores, cores as u64));
    }
}

impl Qos {
    pub fn handle(&mut self, req: QosRequest, ctx: &Ctx) -> Result<Handled, String> {
        let change = match req {
            QosRequest::QosShow { port } => return Ok(Handled::read(self.specs(port.as_deref()))),
            QosRequest::QosSet(spec) => {
                self.set(spec.clone(), ctx.ports)?;
                Change::put("qos", &spec)
            }
            QosRequest::QosClear { port } => {
                self.clear(&port)?;
                Change::del("qos", serde_json::json!(port))
            }
        };
        Ok(Handled::change(serde_json::Value::Null, vec![change]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_sizes() {
        assert_eq!(rate("r", "100mbit"), Ok((Unit::Bytes, 12_500_000)));
        assert_eq!(rate("r", "1Gbit"), Ok((Unit::Bytes, 125_000_000)));
        assert_eq!(rate("r", "2.5gbit"), Ok((Unit::Bytes, 312_500_000)));
        assert_eq!(rate("r", "50kpps"), Ok((Unit::Packets, 50_000)));
        assert_eq!(rate("r", "400gbit"), Ok((Unit::Bytes, 50_000_000_000)));
        assert!(rate("ingress_rate", "401gbit").unwrap_err().contains("beyond 400 Gbit/s"));
        assert!(rate("ingress_rate", "0mbit").unwrap_err().starts_with("ingress_rate: \"0mbit\" is zero"));
        assert!(rate("ingress_rate", "100").unwrap_err().contains("100mbit"));
        assert!(rate("ingress_rate", "fast").is_err());
        assert_eq!(size("b", "64kb", Unit::Bytes), Ok(65536));
        assert_eq!(size("b", "1500", Unit::Bytes), Ok(1500));
        assert_eq!(size("b", "32pkt", Unit::Packets), Ok(32));
        assert!(size("ingress_burst", "64kb", Unit::Packets).unwrap_err().contains("in packets"));
        assert!(size("ingress_burst", "32pkt", Unit::Bytes).unwrap_err().contains("in bytes"));
        assert!(size("ingress_burst", "0", Unit::Bytes).is_err());
    }

    fn ports() -> Vec<PortRef> {
        use crate::ports::port_ref;
        vec![port_ref("vm1", 0, PortRole::Vm, Some(1)), port_ref("up", 1, PortRole::Uplink, None)]
    }

    fn spec() -> QosSpec {
        QosSpec {
            port: "vm1".into(),
            mode: None,
            ingress: Some(MeterSpec {
                rate: "100mbit".into(),
                burst: None,
                excess_burst: None,
                peak_rate: None,
                peak_burst: None,
            }),
            egress: None,
            yellow: None,
            red: None,
            dscp: None,
        }
    }

    #[test]
    fn specs_are_checked_and_shared_out_to_cores() {
        let p = ports();
        let q = compile_spec(&spec(), &p).unwrap();
        let m = q.ingress.unwrap();
        assert_eq!(m.mode, Mode::SrTcm { cir: 12_500_000, cbs: 125_000, ebs: 0 }, "default burst 10 ms");
        assert_eq!((m.yellow, m.red), (ColorAction::Pass, ColorAction::Drop));
        assert!(compile_spec(&QosSpec { port: "up".into(), ..spec() }, &p).unwrap_err().contains("not a VM port"));
        assert!(compile_spec(&QosSpec { port: "x".into(), ..spec() }, &p).unwrap_err().starts_with("port:"));
        assert!(compile_spec(&QosSpec { red: Some("burn".into()), ..spec() }, &p).unwrap_err().starts_with("red:"));
        assert!(compile_spec(&QosSpec { dscp: Some(64), ..spec() }, &p).unwrap_err().starts_with("dscp:"));
        let tr = QosSpec { mode: Some(QosMode::Trtcm), ..spec() };
        assert!(compile_spec(&tr, &p).unwrap_err().contains("needs a peak rate"));
        let mut low = tr.clone();
        low.ingress.as_mut().unwrap().peak_rate = Some("10mbit".into());
        assert!(compile_spec(&low, &p).unwrap_err().contains("below the committed rate"));
        let mut mixed = tr.clone();
        mixed.ingress.as_mut().unwrap().peak_rate = Some("1mpps".into());
        assert!(compile_spec(&mixed, &p).unwrap_err().contains("same unit"));
        // Two cores poll the port: each gets half.
        let mut qos = Qos::default();
        qos.set(spec(), &p).unwrap();
        let t = qos.compile(&p, 4, &|_| 2, 2);
        assert_eq!(t.ports[0].ingress.unwrap().mode, Mode::SrTcm { cir: 6_250_000, cbs: 62_500, ebs: 0 });
        let v = t.ports[0].version;
        qos.set(spec(), &p).unwrap();
        assert_eq!(qos.compile(&p, 4, &|_| 2, 2).ports[0].version, v, "the same spec keeps its buckets");
        qos.set(QosSpec { dscp: Some(46), ..spec() }, &p).unwrap();
        assert_ne!(qos.compile(&p, 4, &|_| 2, 2).ports[0].version, v);
    }
}
