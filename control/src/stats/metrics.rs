//! The Prometheus endpoint (`vswitchd --metrics ADDR:PORT`): the figures `stats` and
//! `cores` report, in the text exposition format, on `GET /metrics`.
//!
//! One route and no keep-alive, so a few lines over tokio's TCP listener serve it; the
//! switch task renders the page, as it answers any other request.
use super::api::{CoreView, MempoolView, LATENCY_WINDOW_S};
use crate::ports::api::{PortStatsView, PortView};
use std::fmt::Write;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot},
};

/// What the HTTP side asks the switch task for: the rendered page.
pub type PageRequest = oneshot::Sender<String>;

/// Writes one metric family to `out`: its help and type, then each (labels, value).
pub fn family<V: std::fmt::Display>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, V)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

/// Renders every metric family.
pub fn render(ports: &[PortStatsView], cores: &[CoreView], mempool: &MempoolView, capture_lost: u64) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &mut dyn Iterator<Item = (String, f64)>| {
        family(&mut out, name, kind, help, samples)
    };
    type PortField = fn(&PortStatsView) -> u64;
    const PORT: [(&str, &str, PortField); 8] = [
        ("rx_packets", "Packets received on the port.", |p| p.rx_packets),
        ("rx_bytes", "Bytes received on the port.", |p| p.rx_bytes),
        ("tx_packets", "Packets sent on the port.", |p| p.tx_packets),
        ("tx_bytes", "Bytes sent on the port.", |p| p.tx_bytes),
        ("rx_missed", "Packets the device dropped because its rx ring was full (the cores did not keep up).", |p| {
            p.rx_missed
        }),
        ("rx_nombuf", "Receives that failed for want of an mbuf.", |p| p.rx_nombuf),
        ("rx_errors", "Erroneous packets the device received.", |p| p.rx_errors),
        ("tx_errors", "Packets the device failed to send.", |p| p.tx_errors),
    ];
    for (field, help, f) in PORT {
        let mut samples = ports.iter().map(|p| (labels(&[("port", &p.name)]), f(p) as f64));
        family(&format!("vswitch_port_{field}_total"), "counter", help, &mut samples);
    }
    let mut drops = ports
        .iter()
        .flat_map(|p| p.drops.iter().map(move |(r, n)| (labels(&[("port", &p.name), ("reason", r)]), *n as f64)));
    family(
        "vswitch_port_drops_total",
        "counter",
        "Packets the switch dropped, by input port and reason (reasons seen so far).",
        &mut drops,
    );
    let core_labels = |c: &CoreView| labels(&[("core", &c.index.to_string()), ("lcore", &c.lcore.to_string())]);
    type CoreField = fn(&CoreView) -> f64;
    const CORE: [(&str, &str, &str, CoreField); 6] = [
        ("packets_total", "counter", "Packets received by the PMD core.", |c| c.packets as f64),
        ("rounds_total", "counter", "Poll rounds of the PMD core.", |c| c.rounds as f64),
        ("busy_cycles_total", "counter", "TSC cycles the PMD core spent in rounds that moved packets.", |c| {
            c.busy_cycles as f64
        }),
        ("busy_ratio", "gauge", "Share of the PMD core's cycles spent moving packets, over the last second.", |c| {
            c.busy_pct / 100.0
        }),
        ("cycles_per_packet", "gauge", "TSC cycles per packet on the PMD core, over the last second.", |c| {
            c.cycles_per_packet
        }),
        (
            "acl_misses_total",
            "counter",
            "Packets whose security-group answer the PMD core did not remember, and searched the rules for.",
            |c| c.acl_misses as f64,
        ),
    ];
    for (field, kind, help, f) in CORE {
        let mut samples = cores.iter().map(|c| (core_labels(c), f(c)));
        family(&format!("vswitch_core_{field}"), kind, help, &mut samples);
    }
    let mut quantiles = cores.iter().flat_map(|c| {
        let base = [("core", c.index.to_string()), ("lcore", c.lcore.to_string())];
        let l = c.latency.clone().unwrap_or_default();
        [("0.5", l.p50_ns), ("0.99", l.p99_ns), ("0.999", l.p999_ns), ("1", l.max_ns)]
            .into_iter()
            .filter(move |_| c.latency.is_some())
            .map(move |(q, ns)| {
                let kv = [("core", base[0].1.as_str()), ("lcore", base[1].1.as_str()), ("quantile", q)];
                (labels(&kv), ns / 1e9)
            })
    });
    family(
        "vswitch_core_latency_seconds",
        "gauge",
        &format!(
            "Time inside the switch, from the rx burst that brought a packet to the tx burst that sent it: \
             quantiles over the last {LATENCY_WINDOW_S} s of the packets the core sent."
        ),
        &mut quantiles,
    );
    let mut sent = cores.iter().filter_map(|c| c.latency.as_ref().map(|l| (core_labels(c), l.packets as f64)));
    family(
        "vswitch_core_latency_packets",
        "gauge",
        &format!("Packets the latency quantiles are taken over (the last {LATENCY_WINDOW_S} s)."),
        &mut sent,
    );
    family(
        "vswitch_mempool_mbufs",
        "gauge",
        "Mbufs in the packet pool.",
        &mut [(String::new(), mempool.size as f64)].into_iter(),
    );
    family(
        "vswitch_mempool_mbufs_in_use",
        "gauge",
        "Mbufs of the packet pool in use.",
        &mut [(String::new(), mempool.in_use as f64)].into_iter(),
    );
    family(
        "vswitch_capture_lost_total",
        "counter",
        "Packets a running capture saw but could not copy (its buffers were all in use).",
        &mut [(String::new(), capture_lost as f64)].into_iter(),
    );
    out
}

/// What each port is and whether its link is up, and what is running: for joins
/// and alerts (`vswitch_port_up == 0`). A port whose driver cannot tell its link
/// (`port list` says unknown) has no `vswitch_port_up`.
pub fn render_info(ports: &[PortView], version: &str, dpdk: &str) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "vswitch_build_info",
        "gauge",
        "The running vswitchd's version and the DPDK it runs on (always 1).",
        [(labels(&[("version", version), ("dpdk", dpdk)]), 1)],
    );
    let role = |p: &PortView| match (p.role, p.vni) {
        (Some(crate::ports::api::PortRole::Uplink), _) => "uplink".to_string(),
        (_, Some(_)) => "vm".to_string(),
        _ => String::new(),
    };
    family(
        &mut out,
        "vswitch_port_info",
        "gauge",
        "Each port: its driver, role and VNI (always 1).",
        ports.iter().map(|p| {
            let vni = p.vni.map(|v| v.to_string()).unwrap_or_default();
            let driver = p.driver.clone().unwrap_or_default();
            (labels(&[("port", &p.name), ("driver", &driver), ("role", &role(p)), ("vni", &vni)]), 1)
        }),
    );
    family(
        &mut out,
        "vswitch_port_up",
        "gauge",
        "1 while the port runs with its link up, 0 while its link is down or it failed to start.",
        ports
            .iter()
            .filter(|p| p.state != "unknown")
            .map(|p| (labels(&[("port", &p.name)]), u8::from(p.state == "up"))),
    );
    family(
        &mut out,
        "vswitch_port_admin_up",
        "gauge",
        "1 while the switch forwards on the port, 0 while it is set down (vswitchctl port set NAME --admin down).",
        ports.iter().map(|p| (labels(&[("port", &p.name)]), u8::from(p.admin.is_up()))),
    );
    out
}

/// `{a="x",b="y"}`, values escaped as the exposition format asks.
pub(crate) fn labels(kv: &[(&str, &str)]) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in kv.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = write!(s, "{k}=\"{v}\"");
    }
    s.push('}');
    s
}

/// Accepts scrapes until the task is dropped.
pub async fn serve(listener: TcpListener, pages: mpsc::Sender<PageRequest>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(scrape(stream, pages.clone()));
            }
            Err(e) => {
                tracing::warn!("accept on the metrics endpoint failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request head (at most 8 KiB, 5 s) and answers it.
async fn scrape(mut stream: TcpStream, pages: mpsc::Sender<PageRequest>) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
            let n = stream.read(&mut buf).await.ok().filter(|&n| n > 0)?;
            head.extend_from_slice(&buf[..n]);
            if head.len() > 8192 {
                return None;
            }
        }
        Some(())
    };
    if tokio::time::timeout(std::time::Duration::from_secs(5), read).await.ok().flatten().is_none() {
        return;
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let (method, path) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let (status, kind, body) = if method != b"GET" {
        ("405 Method Not Allowed", "text/plain", "only GET is served here\n".to_string())
    } else if path != b"/metrics" && !path.starts_with(b"/metrics?") {
        ("404 Not Found", "text/plain", "the metrics are at /metrics\n".to_string())
    } else {
        let (tx, rx) = oneshot::channel();
        if pages.send(tx).await.is_err() {
            return;
        }
        match rx.await {
            Ok(page) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", page),
            Err(_) => ("503 Service Unavailable", "text/plain", "vswitchd is shutting down\n".to_string()),
        }
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LatencyView;

    #[test]
    fn renders_families_with_escaped_labels() {
        let mut p = PortStatsView { name: "vm\"1".into(), rx_packets: 5, ..Default::default() };
        p.drops.insert("acl_deny_in".into(), 2);
        let c = CoreView {
            index: 0,
            lcore: 1,
            packets: 9,
            acl_misses: 3,
            latency: Some(LatencyView { packets: 9, p50_ns: 1000.0, p99_ns: 2000.0, p999_ns: 3000.0, max_ns: 4000.0 }),
            ..Default::default()
        };
        let text = render(&[p], &[c], &MempoolView::default(), 0);
        assert!(text.contains("vswitch_port_rx_packets_total{port=\"vm\\\"1\"} 5\n"), "{text}");
        assert!(text.contains("vswitch_port_drops_total{port=\"vm\\\"1\",reason=\"acl_deny_in\"} 2\n"));
        assert!(text.contains("vswitch_core_latency_seconds{core=\"0\",lcore=\"1\",quantile=\"0.99\"} 0.000002\n"));
        assert!(text.contains("# TYPE vswitch_core_packets_total counter\n"));
        assert!(text.contains("vswitch_core_acl_misses_total{core=\"0\",lcore=\"1\"} 3\n"), "{text}");
    }
}
