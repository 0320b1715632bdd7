//! `vswitchctl capture` writes what a port received and sent to a pcap while it keeps
//! forwarding (tshark decodes it); the Prometheus endpoint serves the figures `stats`
//! and `cores` report, parsed by the reference client library's own parser.
use std::{
    collections::HashMap,
    path::Path,
    thread,
    time::{Duration, Instant},
};
use vswitch_tests::*;

/// Two tap VMs cross-connected, with static neighbours (no ARP) and a UDP sink on vm2
/// (no ICMP port unreachable back).
fn pair(d: &Daemon) -> (TapVm, TapVm) {
    let vm1 = TapVm::add(d, "vm1", "10.61.0.1/24");
    let vm2 = TapVm::add(d, "vm2", "10.61.0.2/24");
    d.ok(&["xconnect", "add", "vm1", "vm2"]);
    for vm in [&vm1, &vm2] {
        vm.ns.quiet(&vm.ifname);
    }
    vm1.neigh("10.61.0.2", &vm2.mac());
    vm2.neigh("10.61.0.1", &vm1.mac());
    (vm1, vm2)
}

/// Sends numbered datagrams from vm1 to vm2 until the returned closure is called.
fn udp_flow(vm1: &TapVm, vm2: &TapVm, dir: &TempDir, rate: u32) -> impl FnOnce() {
    let stop = dir.path("stop");
    let script = |s: &str| format!("{}/py/{s}", env!("CARGO_MANIFEST_DIR"));
    let mut sink = vm2.ns.spawn(&[PYTHON, &script("udp_count.py"), "10.61.0.2", "7001", "3"]);
    thread::sleep(Duration::from_millis(300));
    let stop_s = stop.display().to_string();
    let mut sender = vm1.ns.spawn(&[PYTHON, &script("udp_send.py"), "10.61.0.2", "7001", &rate.to_string(), &stop_s]);
    move || {
        std::fs::write(&stop, b"").unwrap();
        let _ = sender.wait();
        let _ = sink.kill();
        let _ = sink.wait();
    }
}

fn capture(d: &Daemon, args: &[&str]) -> thread::JoinHandle<std::process::Output> {
    let mut all = vec!["--socket".to_string(), d.socket.display().to_string(), "capture".into()];
    all.extend(args.iter().map(|s| s.to_string()));
    thread::spawn(move || std::process::Command::new(bin("vswitchctl")).args(&all).output().unwrap())
}

/// The sequence numbers (first 8 payload bytes) of the UDP datagrams in a pcap.
fn sequence(file: &Path) -> Vec<u64> {
    tshark_fields(file, &["udp.dstport", "data.data", "frame.len"])
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            assert_eq!((f[0], f[2]), ("7001", "106"), "a 64-byte UDP payload to port 7001: {l}");
            u64::from_str_radix(&f[1][..16], 16).unwrap()
        })
        .collect()
}

#[test]
fn capture_writes_what_a_port_sends_and_receives_while_it_forwards() {
    let d = Daemon::start();
    let (vm1, vm2) = pair(&d);
    let dir = TempDir::new("cap");
    let (sent, received) = (dir.path("vm2-tx.pcap"), dir.path("vm1-rx.pcap"));

    let c =
        capture(&d, &["vm2", "--count", "200", "--dir", "tx", "-w", &sent.display().to_string(), "--timeout", "30"]);
    thread::sleep(Duration::from_millis(300));
    let stop = udp_flow(&vm1, &vm2, &dir, 2000);
    let out = c.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("200 packets from port vm2 (0 received, 200 sent)"), "{text}");
    // Every datagram, in order, bytes intact: no gap at this rate.
    let seq = sequence(&sent);
    assert_eq!(seq.len(), 200);
    assert!(seq.windows(2).all(|w| w[1] == w[0] + 1), "consecutive: {seq:?}");

    // Truncated to a snap length; the wire length is kept.
    let c = capture(&d, &["vm1", "-c", "20", "--dir", "rx", "--snaplen", "42", "-w", &received.display().to_string()]);
    let out = c.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lens = tshark_fields(&received, &["frame.len", "frame.cap_len", "ip.dst"]);
    assert_eq!(lens.len(), 20);
    assert!(lens.iter().all(|l| l == "106|42|10.61.0.2"), "{lens:?}");
    stop();
    // Forwarding never stopped: everything vm1 sent left vm2 or was counted.
    d.assert_conserved("vm1", "vm2");
}

#[test]
fn one_capture_at_a_time_and_a_timeout_ends_a_quiet_one() {
    let d = Daemon::start();
    let (_vm1, _vm2) = pair(&d);
    let dir = TempDir::new("cap");
    let f = dir.path("quiet.pcap").display().to_string();
    let t0 = Instant::now();
    let c = capture(&d, &["vm1", "--count", "10", "-w", &f, "--timeout", "2"]);
    thread::sleep(Duration::from_millis(300));
    let e = d.err(&["capture", "vm2", "--count", "1", "-w", "/dev/null"]);
    assert!(e.contains("a capture on port vm1 is running"), "{e}");
    assert!(d.err(&["capture", "nope", "-w", "/dev/null"]).contains("no port named \"nope\""));
    assert!(d.err(&["capture", "vm1", "--count", "0", "-w", "/dev/null"]).contains("count: 0 is out of range"));
    let out = c.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("the timeout ended the capture first"), "{text}");
    assert!(t0.elapsed() >= Duration::from_secs(2));
    assert!(tshark_fields(Path::new(&f), &["frame.len"]).is_empty());
    // The switch answers other requests while a capture waits.
    d.ok(&["show"]);
}

#[test]
fn prometheus_endpoint_reports_what_stats_and_cores_report() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(DaemonOpts { extra_args: vec!["--metrics".into(), addr.clone()], ..Default::default() });
    let (vm1, vm2) = pair(&d);
    let dir = TempDir::new("prom");
    let stop = udp_flow(&vm1, &vm2, &dir, 3000);
    thread::sleep(Duration::from_secs(3));
    stop();
    d.settle();
    let url = format!("http://{addr}/metrics");
    let m: HashMap<String, f64> = serde_json::from_str(&python("prom_parse.py", &[&url])).unwrap();
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in {m:?}"));
    for (port, field) in [("vm1", "rx_packets"), ("vm2", "tx_packets"), ("vm1", "rx_bytes"), ("vm2", "tx_bytes")] {
        let prom = get(&format!("vswitch_port_{field}_total{{port={port}}}"));
        assert_eq!(prom as u64, d.counter(port, field), "{port} {field}");
    }
    assert!(get("vswitch_port_tx_packets_total{port=vm2}") > 1000.0);
    let cores = d.json(&["cores"]);
    let lat = &cores[0]["latency"];
    assert!(lat["packets"].as_u64().unwrap() > 1000, "{cores}");
    let q = |x: &str| get(&format!("vswitch_core_latency_seconds{{core=0,lcore=1,quantile={x}}}"));
    let (p50, p99, p999) = (q("0.5"), q("0.99"), q("0.999"));
    assert!(0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 < 1.0, "{p50} {p99} {p999}");
    // Within a tick of each other: the same windows behind both.
    let close = |a: f64, b: f64| (a - b).abs() <= 0.5 * a.max(b);
    assert!(close(p50, lat["p50_ns"].as_f64().unwrap() / 1e9), "{p50} vs {lat}");
    assert_eq!(get("vswitch_core_packets_total{core=0,lcore=1}") as u64, cores[0]["packets"].as_u64().unwrap());
    // Over fewer seconds, a part of the same histograms (the traffic is over: the
    // newest second read first is still in the ten read after it).
    let last = d.json(&["cores", "--latency-seconds", "1"])[0]["latency"]["packets"].as_u64().unwrap_or(0);
    let all = d.json(&["cores", "--latency-seconds", "10"])[0]["latency"]["packets"].as_u64().unwrap();
    assert!(last <= all && all > 1000, "{last} {all}");
    for n in ["0", "11"] {
        let e = d.err(&["cores", "--latency-seconds", n]);
        assert!(
            e.contains(&format!("latency_seconds: {n}; the switch keeps the last 10 seconds, give 1 to 10")),
            "{e}"
        );
    }

    // Drops by reason: a port with no role and no cross-connect drops what it gets.
    d.ok(&["xconnect", "del", "vm1"]);
    vm1.ns.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "1", "10.61.0.2"]);
    let m: HashMap<String, f64> = serde_json::from_str(&python("prom_parse.py", &[&url])).unwrap();
    let drops = m.get("vswitch_port_drops_total{port=vm1,reason=no_xconnect}").copied().unwrap_or(0.0);
    assert!(drops >= 3.0, "{m:?}");
    assert_eq!(drops as u64, d.port_stats("vm1")["drops"]["no_xconnect"].as_u64().unwrap());

    // Only /metrics is served.
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(&addr).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
}

#[test]
fn a_metrics_address_in_use_is_refused_at_start() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = TempDir::new("prom");
    let out = std::process::Command::new(bin("vswitchd"))
        .args(["--socket", &dir.path("s").display().to_string(), "--db", &dir.path("db").display().to_string()])
        .args(["--metrics", &addr, "--"])
        .args(Daemon::eal_args(&unique("vsm")))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!("--metrics: cannot listen on {addr}")), "{err}");
}
