//! Reads of the whole switch: the summary, counters per port and per core, the
//! Prometheus page, interface counters for sFlow, a packet's trace; and captures.
use super::{to_value, Refusal, Reply, Switch};
use crate::{
    api::Response,
    capture::{api::CaptureSpec, CaptureRun},
    sflow::agent::IfCounters,
    stats::{
        api::{CoreView, MempoolView, ShowView, StatsRequest, StatsView, LATENCY_WINDOW_S},
        metrics,
    },
    trace::{api::TraceRequest, parse_hex, trace},
};
use tokio::sync::oneshot;

impl Switch {
    pub(crate) fn stats_request(&mut self, req: StatsRequest) -> Reply {
        Ok(match req {
            StatsRequest::Show => to_value(&self.show()),
            StatsRequest::Stats => to_value(&StatsView {
                ports: self.ports.stats(None)?,
                cores: self.core_views(LATENCY_WINDOW_S),
                mempool: self.mempool(),
            }),
            StatsRequest::Cores { latency_seconds } => {
                let seconds = latency_seconds.unwrap_or(LATENCY_WINDOW_S);
                if !(1..=LATENCY_WINDOW_S).contains(&seconds) {
                    return Err(format!(
                        "latency_seconds: {seconds}; the switch keeps the last {LATENCY_WINDOW_S} seconds, give 1 to \
                         {LATENCY_WINDOW_S}"
                    ));
                }
                to_value(&self.core_views(seconds))
            }
        })
    }

    /// The cores, with their time inside the switch over the last `seconds`.
    fn core_views(&self, seconds: usize) -> Vec<CoreView> {
        let pct =
            |busy: u64, idle: u64| if busy + idle == 0 { 0.0 } else { 100.0 * busy as f64 / (busy + idle) as f64 };
        let cpp = |busy: u64, packets: u64| if packets == 0 { 0.0 } else { busy as f64 / packets as f64 };
        self.shared
            .counters
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let rx_queues = self
                    .ports
                    .list
                    .iter()
                    .filter_map(|p| p.run.as_ref().ok().map(|r| (p, r)))
                    .flat_map(|(p, r)| {
                        r.rxq.iter().filter(|&&(_, core)| core == i).map(move |&(q, _)| format!("{}:{q}", p.spec.name))
                    })
                    .collect();
                let r = self.cores.rate[i];
                CoreView {
                    index: i,
                    lcore: self.eal.workers[i],
                    rx_queues,
                    packets: c.packets.get(),
                    rounds: c.rounds.get(),
                    busy_pct: pct(r.busy, r.idle),
                    cycles_per_packet: cpp(r.busy, r.packets),
                    busy_pct_total: pct(c.busy_cycles.get(), c.idle_cycles.get()),
                    cycles_per_packet_total: cpp(c.busy_cycles.get(), c.packets.get()),
                    busy_cycles: c.busy_cycles.get(),
                    acl_misses: c.acl_misses.get(),
                    latency: self.cores.latency.view(i, self.shared.tsc_hz, seconds),
                }
            })
            .collect()
    }

    fn mempool(&self) -> MempoolView {
        let available = self.pool.available();
        MempoolView { size: self.pool.size(), available, in_use: self.pool.size().saturating_sub(available) }
    }

    fn show(&self) -> ShowView {
        let refs = self.refs();
        ShowView {
            version: env!("CARGO_PKG_VERSION").into(),
            dpdk: self.eal.version.clone(),
            main_lcore: self.eal.main_lcore,
            pmd_lcores: self.eal.workers.clone(),
            db: self.store.path().display().to_string(),
            ports: self.port_views(),
            xconnects: self
                .features
                .xconnects
                .list
                .iter()
                .map(|x| crate::xconnect::api::XconnectView { a: x.a.clone(), b: x.b.clone() })
                .collect(),
            networks: self.features.overlay.network_views(&refs),
            vtep: self.features.overlay.vtep_view(&refs),
            mempool: self.mempool(),
            learn_events_lost: self.shared.counters.iter().map(|c| c.learn_lost.get()).sum(),
        }
    }

    /// The Prometheus page: what `stats` and `cores` report.
    pub fn metrics(&self) -> String {
        let ports = self.ports.stats(None).unwrap_or_default();
        let lost = self.shared.counters.iter().map(|c| c.capture_lost.get()).sum();
        metrics::render(&ports, &self.core_views(LATENCY_WINDOW_S), &self.mempool(), lost)
            + &metrics::render_info(&self.port_views(), env!("CARGO_PKG_VERSION"), &self.eal.version)
            + &self.features.conntrack.metrics()
            + &self.features.services.metrics()
    }

    /// Generic and Ethernet interface counters of every running port.
    pub(crate) fn if_counters(&self) -> Vec<IfCounters> {
        let Ok(stats) = self.ports.stats(None) else { return Vec::new() };
        let mut out = Vec::new();
        for (p, st) in self.ports.list.iter().zip(&stats) {
            let Ok(r) = &p.run else { continue };
            let link = r.dev.link();
            let tx_full = st.drops.get("tx_full").copied().unwrap_or(0);
            out.push(IfCounters {
                if_index: r.dev.id() as u32 + 1,
                speed_bps: link.speed_mbps as u64 * 1_000_000,
                up: link.up,
                in_octets: st.rx_bytes,
                in_packets: st.rx_packets,
                in_discards: st.drops.values().sum::<u64>() - tx_full + st.rx_missed,
                in_errors: st.rx_errors,
                out_octets: st.tx_bytes,
                out_packets: st.tx_packets,
                out_discards: tx_full,
                out_errors: st.tx_errors,
            });
        }
        out
    }

    pub(crate) fn trace_request(&mut self, req: TraceRequest) -> Reply {
        let TraceRequest::Trace { port, packet, tso } = req;
        let id = self.ports.running_id("port", &port)?;
        let bytes = parse_hex(&packet)?;
        // A TSO frame is at most an IP packet's most, with its Ethernet header and tags.
        let max = if tso.is_some() { u16::MAX as usize + 22 } else { 9216 };
        if bytes.is_empty() || bytes.len() > max {
            return Err(format!("packet: {} bytes; give 1 to {max}", bytes.len()));
        }
        let slots = self.features.acl.rule_of_slot();
        let rule_of = |slot: u32| slots.get(&slot).copied();
        let name = |id: u16| self.ports.name_of(id);
        Ok(to_value(&trace(&self.shared.rcu.load(), &port, id, (&bytes, tso), &name, &rule_of)))
    }

    /// Starts a capture; the reply goes out when it ends (see `poll_cores`).
    pub async fn capture_start(&mut self, spec: CaptureSpec, reply: oneshot::Sender<Response>) {
        match self.capture_check(&spec) {
            Ok(id) => {
                let run = CaptureRun::start(spec, id, &self.shared, reply);
                tracing::info!("capture on port {} started", run.port);
                self.capture = Some(run);
                self.publish_capture().await;
            }
            Err(e) => {
                let _ = reply.send(Response::err(e));
            }
        }
    }

    /// The port id to capture on, or why not.
    fn capture_check(&self, spec: &CaptureSpec) -> Result<u16, Refusal> {
        CaptureRun::check(spec)?;
        let id = match self.ports.find(&spec.port).map(|p| &p.run) {
            Some(Ok(r)) => r.dev.id(),
            Some(Err(e)) => return Err(format!("port: {} is not running ({e})", spec.port)),
            None => return Err(format!("port: no port named {:?}; see vswitchctl port list", spec.port)),
        };
        if let Some(c) = &self.capture {
            return Err(format!(
                "a capture on port {} is running; wait for it to end (its count or timeout) and try again",
                c.port
            ));
        }
        Ok(id)
    }

    /// Ends the running capture: the cores stop copying, then the request is answered.
    pub(crate) async fn capture_finish(&mut self) {
        let Some(run) = self.capture.take() else { return };
        self.publish_capture().await;
        tracing::info!("capture on port {} ended", run.port);
        run.finish(&self.shared);
    }
}
