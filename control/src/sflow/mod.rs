//! sFlow export: the setting, the collectors' sockets, and the agent that turns the
//! cores' samples and the ports' counters into datagrams.
pub mod agent;
pub mod api;
pub mod cli;
mod pool;

use crate::{
    feature::{Ctx, Feature, Handled, Tables},
    ports::PortRef,
    state::DesiredState,
    store::change::Change,
};
use agent::{Agent, IfCounters};
use api::{SflowRequest, SflowSpec, SflowView};
use dataplane::pmd::Shared;
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

/// How long a collector that refused is left alone.
const COLLECTOR_BACKOFF: Duration = Duration::from_secs(1);

/// One collector: a connected, non-blocking socket, so the kernel tells us when the
/// collector refuses (ICMP port unreachable) and we can stop provoking more of those.
struct Collector {
    addr: SocketAddr,
    sock: Option<UdpSocket>,
    /// Refused recently: datagrams for it are dropped until then.
    quiet_until: Option<Instant>,
}

/// sFlow export as running: where to send, the agent, the sockets.
struct Runtime {
    spec: SflowSpec,
    collectors: Vec<Collector>,
    agent: Agent,
    pools: pool::Pools,
    last_poll: Instant,
}

impl Runtime {
    fn new(spec: SflowSpec, agent: IpAddr) -> Result<Runtime, String> {
        let collectors = agent::validate(&spec)?
            .into_iter()
            .map(|addr| {
                let bind = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                let sock =
                    UdpSocket::bind(bind).ok().filter(|s| s.set_nonblocking(true).is_ok() && s.connect(addr).is_ok());
                Collector { addr, sock, quiet_until: None }
            })
            .collect();
        Ok(Runtime {
            spec,
            collectors,
            agent: Agent::new(agent, 0),
            pools: pool::Pools::default(),
            last_poll: Instant::now(),
        })
    }

    /// Sends what is pending to every collector. Sockets never block; a collector that
    /// is down costs only its datagrams (and, once it refuses, a second of silence).
    fn flush(&mut self, stats: &mut SflowView) {
        let datagrams = self.agent.datagrams();
        if datagrams.is_empty() {
            return;
        }
        let now = Instant::now();
        for c in &mut self.collectors {
            if c.quiet_until.is_some_and(|t| now < t) {
                stats.send_errors += datagrams.len() as u64;
                continue;
            }
            c.quiet_until = None;
            for d in &datagrams {
                match c.sock.as_ref().map(|s| s.send(d)) {
                    Some(Ok(_)) => stats.datagrams += 1,
                    Some(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        stats.send_errors += 1;
                        c.quiet_until = Some(now + COLLECTOR_BACKOFF);
                        tracing::debug!("sFlow collector {} refused; pausing it", c.addr);
                        break;
                    }
                    _ => stats.send_errors += 1,
                }
            }
        }
    }
}

#[derive(Default)]
pub struct Sflow {
    run: Option<Runtime>,
    stats: SflowView,
}

impl Sflow {
    /// Starts (or stops, with None) export. The agent address is the setting's, else
    /// `default_agent` (the VTEP's).
    pub fn replace(&mut self, spec: Option<SflowSpec>, default_agent: Option<IpAddr>) -> Result<(), String> {
        if self.run.as_ref().map(|r| &r.spec) == spec.as_ref() {
            return Ok(());
        }
        self.run = match spec {
            Some(spec) => {
                let agent = spec.agent.or(default_agent).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                Some(Runtime::new(spec, agent)?)
            }
            None => None,
        };
        Ok(())
    }

    pub fn spec(&self) -> Option<&SflowSpec> {
        self.run.as_ref().map(|r| &r.spec)
    }

    fn view(&self, shared: Option<&Shared>) -> SflowView {
        SflowView {
            config: self.spec().cloned(),
            agent: self.run.as_ref().map(|r| r.agent.address),
            samples_lost: shared
                .map_or(0, |s| s.counters.iter().flat_map(|c| c.ports.iter()).map(|p| p.sflow_drops.get()).sum()),
            ..self.stats.clone()
        }
    }

    /// Takes the cores' samples and encodes them (or drops them if export is off).
    pub fn drain(&mut self, shared: &Shared) {
        // A port's sample pool is the sum over cores of each core's pool as of its
        // latest sample: it only grows, and from one sample to the next it grows by the
        // packets that sample stands for, which is what collectors renormalise by
        // (pmacct's sfacctd multiplies each sample by the pool's growth over the
        // sequence number's). Pools read now instead would put a whole drain's packets
        // on its first sample and none on the rest.
        let counters = &shared.counters;
        let drops =
            |id: u16| -> u32 { counters.iter().map(|c| c.ports[id as usize].sflow_drops.get()).sum::<u64>() as u32 };
        for (core, ring) in shared.sflow.iter().enumerate() {
            while let Some(s) = ring.pop() {
                let Some(rt) = self.run.as_mut() else { continue };
                let pool = rt.pools.seen(core, s.input, s.sample_pool);
                rt.agent.flow(&s, s.input as u32 + 1, s.output, pool, drops(s.input));
                self.stats.flow_samples += 1;
            }
        }
        if let Some(rt) = self.run.as_mut() {
            rt.flush(&mut self.stats);
        }
    }

    /// A counter sample is due (once per polling interval).
    pub fn poll_due(&self) -> bool {
        let Some(rt) = self.run.as_ref() else { return false };
        let interval = rt.spec.polling.unwrap_or(20);
        interval != 0 && rt.last_poll.elapsed() >= Duration::from_secs(interval as u64)
    }

    /// Sends counter samples of every running port.
    pub fn poll(&mut self, samples: &[IfCounters]) {
        let Some(rt) = self.run.as_mut() else { return };
        rt.last_poll = Instant::now();
        for c in samples {
            rt.agent.counters(c);
            self.stats.counter_samples += 1;
        }
        rt.flush(&mut self.stats);
    }
}

impl Feature for Sflow {
    fn desired(&self, out: &mut DesiredState) {
        out.sflow = self.spec().cloned();
    }

    fn compile(&mut self, _ports: &[PortRef], _cores: usize, t: &mut Tables) {
        if let Some(sf) = self.spec() {
            t.snap.sflow_sampling = sf.sampling;
            t.snap.sflow_header_bytes = sf.header_bytes.unwrap_or(128);
        }
    }
}

impl Sflow {
    pub fn handle(&mut self, req: SflowRequest, ctx: &Ctx) -> Result<Handled, String> {
        let spec = match req {
            SflowRequest::SflowShow => return Ok(Handled::read(self.view(ctx.shared))),
            SflowRequest::SflowSet(spec) => Some(spec),
            SflowRequest::SflowOff => None,
        };
        if let Some(s) = &spec {
            agent::validate(s)?;
        }
        // A new setting starts afresh (the agent address may follow the VTEP).
        self.run = None;
        self.replace(spec, ctx.vtep_ip)?;
        Ok(Handled::change(serde_json::Value::Null, vec![Change::set("sflow", &self.spec())]))
    }
}
