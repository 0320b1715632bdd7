//! Table churn under traffic: while a UDP stream flows between two VMs of a VNI, 1,000
//! FIB changes and a few hundred network and flood-list changes are applied. The
//! control plane never pauses a core, so every datagram of the stream (which every
//! configuration in between forwards) arrives, and the counters balance.
use serde_json::json;
use std::{fs, time::Duration};
use vswitch_tests::*;

#[test]
fn a_thousand_fib_changes_under_traffic_lose_nothing() {
    let d = Daemon::start();
    d.ok(&["network", "add", "100"]);
    let vm1 = TapVm::add_with(&d, "vm1", "10.6.0.1/24", &["--role", "vm", "--vni", "100"]);
    let vm2 = TapVm::add_with(&d, "vm2", "10.6.0.2/24", &["--role", "vm", "--vni", "100"]);
    vm1.neigh("10.6.0.2", &vm2.mac());
    vm2.neigh("10.6.0.1", &vm1.mac());
    // Pin the stream's MACs so its path never depends on learning.
    d.ok(&["fib", "add", "100", &vm1.mac(), "--port", "vm1"]);
    d.ok(&["fib", "add", "100", &vm2.mac(), "--port", "vm2"]);
    std::thread::sleep(Duration::from_millis(500));
    let before = (d.port_stats("vm1"), d.port_stats("vm2"));

    let stop = d.dir.path("stop");
    let py = |s: &str| format!("{}/py/{s}", env!("CARGO_MANIFEST_DIR"));
    let receiver = vm2.ns.spawn(&[PYTHON, &py("udp_count.py"), "10.6.0.2", "9000", "3"]);
    std::thread::sleep(Duration::from_millis(300));
    let sender = vm1.ns.spawn(&[PYTHON, &py("udp_send.py"), "10.6.0.2", "9000", "5000", stop.to_str().unwrap()]);

    let mut api = d.connect();
    let started = std::time::Instant::now();
    for i in 0..500u32 {
        let mac = format!("02:00:00:77:{:02x}:{:02x}", i >> 8, i & 0xff);
        let port = if i % 2 == 0 { "vm1" } else { "vm2" };
        api.ok(json!({"cmd": "fib_add", "vni": 100, "mac": mac, "port": port}));
        api.ok(json!({"cmd": "fib_del", "vni": 100, "mac": mac}));
        if i % 5 == 0 {
            let vni = 1000 + i;
            api.ok(json!({"cmd": "network_add", "vni": vni}));
            api.ok(json!({"cmd": "network_add_vtep", "vni": 100, "ip": format!("192.168.{}.{}", 1 + i / 250, 1 + i % 250)}));
            api.ok(json!({"cmd": "network_del", "vni": vni}));
        }
    }
    // The churn may take less than a second on a fast day: the stream runs at least
    // that long, so a good part of it crosses while tables change.
    std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
    fs::write(&stop, "").unwrap();
    let sent: u64 = String::from_utf8_lossy(&sender.wait_with_output().unwrap().stdout).trim().parse().unwrap();
    let received: u64 = String::from_utf8_lossy(&receiver.wait_with_output().unwrap().stdout).trim().parse().unwrap();
    assert!(sent > 2000, "the stream ran through the churn: {sent}");
    assert_eq!(received, sent, "datagrams lost while tables changed");
    // The switch's own accounting: no drop on the stream's path.
    let (a, b) = (d.port_stats("vm1"), d.port_stats("vm2"));
    assert_eq!(a["drops"], before.0["drops"], "{a}");
    assert_eq!(b["drops"], before.1["drops"], "{b}");
    let delta = |x: &serde_json::Value, y: &serde_json::Value, f: &str| x[f].as_u64().unwrap() - y[f].as_u64().unwrap();
    assert_eq!(delta(&a, &before.0, "rx_packets"), delta(&b, &before.1, "tx_packets"), "vm1 in == vm2 out");
    assert_eq!(d.json(&["network", "list"]).as_array().unwrap().len(), 1, "the churned networks are gone");
}
