//! MAC learning through the whole switch: frames sent by scapy from tap VMs.
//! A MAC that moves is re-pointed, learned MACs age out, and a MAC flood stops at the
//! network's limit (the excess counted) without touching another network.
use std::time::Duration;
use vswitch_tests::*;

fn send(vm: &TapVm, src: &str, count: u32, step: u32) {
    let script = format!("{}/py/send_l2.py", env!("CARGO_MANIFEST_DIR"));
    vm.sh(&[PYTHON, &script, &vm.ifname, src, &count.to_string(), &step.to_string()]);
}

fn entry(d: &Daemon, vni: u32, mac: &str) -> Option<serde_json::Value> {
    d.json(&["fib", "list", &vni.to_string()]).as_array().unwrap().iter().find(|e| e["mac"] == mac).cloned()
}

fn network(d: &Daemon, vni: u32) -> serde_json::Value {
    d.json(&["network", "list"]).as_array().unwrap().iter().find(|n| n["vni"] == vni).cloned().unwrap()
}

#[test]
fn a_moving_mac_is_re_pointed_and_static_entries_do_not_move() {
    let d = Daemon::start();
    d.ok(&["network", "add", "100"]);
    let vm1 = TapVm::add_with(&d, "vm1", "10.2.0.1/24", &["--role", "vm", "--vni", "100"]);
    let vm2 = TapVm::add_with(&d, "vm2", "10.2.0.2/24", &["--role", "vm", "--vni", "100"]);
    let m = "02:00:00:00:aa:01";
    send(&vm1, m, 1, 0);
    assert!(wait_until(Duration::from_secs(3), || entry(&d, 100, m).is_some_and(|e| e["port"] == "vm1")));
    send(&vm2, m, 1, 0);
    assert!(
        wait_until(Duration::from_secs(3), || entry(&d, 100, m).is_some_and(|e| e["port"] == "vm2")),
        "{:?}",
        entry(&d, 100, m)
    );
    assert_eq!(network(&d, 100)["mac_moves"], 1);
    // A static entry wins over what is seen on the wire.
    let s = "02:00:00:00:aa:02";
    d.ok(&["fib", "add", "100", s, "--port", "vm1"]);
    send(&vm2, s, 3, 0);
    std::thread::sleep(Duration::from_millis(300));
    let e = entry(&d, 100, s).unwrap();
    assert_eq!((e["port"].as_str(), e["kind"].as_str()), (Some("vm1"), Some("static")));
}

#[test]
fn learned_macs_age_out_after_the_networks_aging_time() {
    let d = Daemon::start();
    d.ok(&["network", "add", "100", "--aging", "10"]);
    let vm1 = TapVm::add_with(&d, "vm1", "10.3.0.1/24", &["--role", "vm", "--vni", "100"]);
    let m = "02:00:00:00:bb:01";
    send(&vm1, m, 1, 0);
    assert!(wait_until(Duration::from_secs(3), || entry(&d, 100, m).is_some()));
    std::thread::sleep(Duration::from_secs(8));
    assert!(entry(&d, 100, m).is_some(), "still there before 10 s");
    assert!(wait_until(Duration::from_secs(6), || entry(&d, 100, m).is_none()), "aged out after 10 s");
}

#[test]
fn a_mac_flood_stops_at_the_limit_and_is_counted() {
    let d = Daemon::start();
    d.ok(&["network", "add", "100", "--max-macs", "50"]);
    d.ok(&["network", "add", "200"]);
    let vm1 = TapVm::add_with(&d, "vm1", "10.4.0.1/24", &["--role", "vm", "--vni", "100"]);
    let vm2 = TapVm::add_with(&d, "vm2", "10.5.0.1/24", &["--role", "vm", "--vni", "200"]);
    send(&vm1, "02:00:00:01:00:00", 500, 1);
    assert!(wait_until(Duration::from_secs(5), || network(&d, 100)["learn_refused"].as_u64().unwrap() >= 450));
    let n = network(&d, 100);
    assert_eq!(n["macs_learned"], 50, "{n}");
    // The other network still learns: all ten MACs sent (the VM's own interface may add
    // its MAC too, if the kernel spoke before the test silenced it).
    send(&vm2, "02:00:00:02:00:00", 10, 1);
    let sent_macs = || {
        d.json(&["fib", "list", "200"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["mac"].as_str().unwrap().starts_with("02:00:00:02:00:"))
            .count()
    };
    assert!(wait_until(Duration::from_secs(3), || sent_macs() == 10), "{}", d.json(&["fib", "list", "200"]));
    // Frames from unlearned MACs still flow (flooded), they are just not learned.
    assert!(d.counter("vm1", "rx_packets") >= 500);
}
