//! The monitoring kit in docs/monitoring: Prometheus's own promtool accepts the alert
//! rules and passes their unit tests, accepts the page vswitchd serves (names, types,
//! `_total` counters, base units), and every metric the alerts and the Grafana
//! dashboard ask for is one a running switch serves.
use std::{
    collections::BTreeSet,
    io::{Read, Write},
    path::PathBuf,
    process::{Command, Stdio},
};
use vswitch_tests::*;

fn monitoring() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/monitoring")
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(monitoring())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt install prometheus)");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let o = child.wait_with_output().unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

/// `vswitch_...` names in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("vswitch_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let (ok, out) = promtool(&["check", "rules", "alerts.yml"], None);
    assert!(ok, "{out}");
    let (ok, out) = promtool(&["test", "rules", "alerts_test.yml"], None);
    assert!(ok, "{out}");
}

#[test]
fn the_page_passes_promtool_and_serves_what_alerts_and_dashboard_ask_for() {
    let addr = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start_with(DaemonOpts { extra_args: vec!["--metrics".into(), addr.clone()], ..Default::default() });
    // Every family: a VM port with connection tracking, a service, an uplink.
    d.ok(&["network", "add", "100", "--gateway", "10.7.0.1/24"]);
    d.ok(&["port", "add", "vm1", "net_null0,no-rx=1", "--role", "vm", "--vni", "100"]);
    d.ok(&["port", "add", "up0", "net_null1,no-rx=1", "--role", "uplink"]);
    d.ok(&["acl", "stateful", "vm1", "on"]);
    d.ok(&[
        "service",
        "add",
        "web",
        "--vni",
        "100",
        "--vip",
        "10.7.0.100:80",
        "--proto",
        "tcp",
        "--backend",
        "10.7.0.11:80",
    ]);
    let mut c = std::net::TcpStream::connect(&addr).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).unwrap();
    let page = reply.split_once("\r\n\r\n").unwrap().1.to_string();

    let (ok, out) = promtool(&["check", "metrics"], Some(&page));
    assert!(ok && out.trim().is_empty(), "promtool check metrics:\n{out}");
    let served: BTreeSet<String> = page
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert!(page.contains("vswitch_port_info{port=\"vm1\",driver=\"net_null\",role=\"vm\",vni=\"100\"} 1"), "{page}");
    assert!(page.contains("vswitch_build_info{version="), "{page}");
    // net_null cannot tell its link: no vswitch_port_up for it rather than a guess.
    assert!(!page.contains("vswitch_port_up{port=\"vm1\"}"), "{page}");
    assert!(page.contains("vswitch_port_admin_up{port=\"vm1\"} 1"), "{page}");

    let dashboard = std::fs::read_to_string(monitoring().join("grafana-dashboard.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let panels = json["panels"].as_array().unwrap();
    assert!(panels.iter().all(|p| p["targets"].as_array().is_some_and(|t| !t.is_empty())), "every panel asks for data");
    let alerts = std::fs::read_to_string(monitoring().join("alerts.yml")).unwrap();
    for (file, text) in [("grafana-dashboard.json", &dashboard), ("alerts.yml", &alerts)] {
        let missing: Vec<String> = metric_names(text).into_iter().filter(|n| !served.contains(n)).collect();
        assert!(missing.is_empty(), "{file} asks for {missing:?}, which vswitchd does not serve:\n{served:?}");
    }
}
