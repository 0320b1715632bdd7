//! SIGTERM stops the switch cleanly and promptly; a restart restores every
//! acknowledged port and cross-connect from the state file, and forwarding resumes.
use std::time::{Duration, Instant};
use vswitch_tests::*;

#[test]
fn sigterm_exits_zero_and_restart_restores_the_desired_state() {
    let mut d = Daemon::start();
    d.ok(&["port", "add", "a", "net_null0", "--queues", "2"]);
    d.ok(&["port", "add", "b", "net_null1,no-rx=1"]);
    d.ok(&["port", "add", "c", "net_ring0"]);
    d.ok(&["xconnect", "add", "a", "b"]);
    assert!(wait_until(Duration::from_secs(5), || d.counter("b", "tx_packets") > 10_000));
    let before = d.json(&["show"]);

    let t = Instant::now();
    d.restart();
    assert!(t.elapsed() < Duration::from_secs(10), "stop and start took {:?}", t.elapsed());
    let after = d.json(&["show"]);
    let summary = |v: &serde_json::Value| {
        let ports: Vec<_> = v["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].clone(),
                    p["devargs"].clone(),
                    p["rx_queues"].as_array().unwrap().len(),
                    p["xconnect"].clone(),
                )
            })
            .collect();
        (ports, v["xconnects"].clone())
    };
    assert_eq!(summary(&after), summary(&before));
    assert!(after["ports"].as_array().unwrap().iter().all(|p| p["state"] != "error"), "{after}");
    // Counters start over with the new process; forwarding resumes at once.
    assert!(wait_until(Duration::from_secs(5), || d.counter("b", "tx_packets") > 10_000), "forwarding resumed");
    assert!(d.log_text().contains("SIGTERM: shutting down"));
}
