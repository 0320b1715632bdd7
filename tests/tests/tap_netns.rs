//! net_tap ports moved into network namespaces are two "VMs"; ping and an iperf3 TCP
//! run pass between them through the switch's cross-connect.
use std::time::Duration;
use vswitch_tests::*;

#[test]
fn ping_and_iperf3_between_namespaces_through_the_switch() {
    let d = Daemon::start();
    let vm1 = TapVm::add(&d, "vm1", "10.99.0.1/24");
    let vm2 = TapVm::add(&d, "vm2", "10.99.0.2/24");
    d.ok(&["xconnect", "add", "vm1", "vm2"]);
    let (ns1, ns2) = (&vm1.ns, &vm2.ns);

    let ping = ns1.exec(&["ping", "-c", "5", "-i", "0.2", "-W", "2", "10.99.0.2"]);
    let out = String::from_utf8_lossy(&ping.stdout);
    assert!(ping.status.success(), "ping failed:\n{out}");
    assert!(out.contains("5 received"), "{out}");

    let mut server = ns2.spawn(&["iperf3", "-s", "-1", "-B", "10.99.0.2"]);
    std::thread::sleep(Duration::from_millis(500));
    let client = ns1.exec(&["iperf3", "-c", "10.99.0.2", "-t", "3", "-J"]);
    let _ = server.wait();
    assert!(client.status.success(), "iperf3 failed: {}", String::from_utf8_lossy(&client.stderr));
    let report: serde_json::Value = serde_json::from_slice(&client.stdout).expect("iperf3 -J");
    let received = report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    assert!(received > 1_000_000, "iperf3 moved only {received} bytes");

    // Every frame went through, or was counted (the kernel's tap queue can fill under
    // iperf3: tx_full).
    d.assert_conserved("vm1", "vm2");
    d.assert_conserved("vm2", "vm1");
    let (a, b) = (d.port_stats("vm1"), d.port_stats("vm2"));
    let n = |v: &serde_json::Value, f: &str| v[f].as_u64().unwrap_or(0);
    let drops =
        |v: &serde_json::Value| v["drops"].as_object().unwrap().values().map(|x| x.as_u64().unwrap()).sum::<u64>();
    assert!(n(&a, "rx_packets") > 100);
    assert!(drops(&a) + drops(&b) < n(&a, "rx_packets") / 100, "drops stay rare: {a} {b}");
    assert!(a["rx_bytes"].as_u64().unwrap() >= received, "the TCP payload crossed vm1's rx counter");
}

/// `port list` says what the link really is, wherever the interface went, and says
/// "unknown" where the driver cannot tell rather than a guess.
#[test]
fn ports_report_the_link_their_interface_really_has() {
    let d = Daemon::start();
    let tap = TapVm::kernel(&d, "k1", "10.98.0.1/24", &[]);
    let veth = TapVm::veth(&d, "k2", "10.98.0.2/24", &[]);
    let _dpdk_tap = TapVm::add(&d, "t1", "10.98.0.3/24");
    d.ok(&["port", "add", "n1", "net_null0"]);
    let state = |port: &str| {
        let ports = d.json(&["port", "list"]);
        ports.as_array().unwrap().iter().find(|p| p["name"] == port).unwrap()["state"].as_str().unwrap().to_string()
    };
    let link = |vm: &TapVm, how: &str| vm.ns.exec_ok(&["ip", "link", "set", &vm.ifname, how]);
    // The tap lives in another namespace now; we still know.
    assert_eq!(state("k1"), "up");
    link(&tap, "down");
    assert_eq!(state("k1"), "down");
    link(&tap, "up");
    assert_eq!(state("k1"), "up");
    // A veth's far end going down takes the carrier of ours.
    assert_eq!(state("k2"), "up");
    link(&veth, "down");
    assert!(wait_until(Duration::from_secs(2), || state("k2") == "down"), "k2: {}", state("k2"));
    link(&veth, "up");
    assert!(wait_until(Duration::from_secs(2), || state("k2") == "up"), "k2: {}", state("k2"));
    // DPDK's tap asks by name in our namespace, and null devices are always "up".
    assert_eq!(state("t1"), "unknown");
    assert_eq!(state("n1"), "unknown");
    let shown = d.ok(&["port", "list"]);
    assert!(shown.lines().any(|l| l.starts_with("n1 ") && l.contains("unknown")), "{shown}");
}

/// A port taken down keeps its device, MAC entries and place in the network, but the
/// switch neither polls it nor sends to it (`port_down`, counted where the frame came
/// in); back up, it forwards again. The state is part of the desired state: `dump`
/// shows it and a restart keeps it.
#[test]
fn a_port_taken_down_is_neither_polled_nor_sent_to_until_it_is_up_again() {
    let mut d = Daemon::start();
    d.ok(&["network", "add", "100"]);
    let vm = ["--role", "vm", "--vni", "100"];
    let vm1 = TapVm::add_with(&d, "vm1", "10.97.0.1/24", &vm);
    let vm2 = TapVm::add_with(&d, "vm2", "10.97.0.2/24", &vm);
    for v in [&vm1, &vm2] {
        v.ns.quiet(&v.ifname);
    }
    vm1.neigh("10.97.0.2", &vm2.mac());
    vm2.neigh("10.97.0.1", &vm1.mac());
    let ping = |from: &TapVm, to: &str| from.ns.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "1", to]).status.success();
    assert!(ping(&vm1, "10.97.0.2"), "both up");

    assert_eq!(d.ok(&["port", "set", "vm2", "--admin", "down"]).trim(), "port vm2 admin down");
    d.settle();
    let port_down = || d.port_stats("vm1")["drops"]["port_down"].as_u64().unwrap_or(0);
    let (down_before, vm2_rx) = (port_down(), d.counter("vm2", "rx_packets"));
    assert!(!ping(&vm1, "10.97.0.2"), "vm2 is down: nothing reaches it");
    assert!(!ping(&vm2, "10.97.0.1"), "nor leaves it");
    d.settle();
    assert!(port_down() >= down_before + 3, "{}", d.port_stats("vm1"));
    assert_eq!(d.counter("vm2", "rx_packets"), vm2_rx, "vm2 is not polled: {}", d.port_stats("vm2"));
    let listed = d.json(&["port", "list"]);
    let vm2_view = listed.as_array().unwrap().iter().find(|p| p["name"] == "vm2").unwrap().clone();
    assert_eq!((vm2_view["admin"].as_str(), vm2_view["rx_queues"].as_array().map(Vec::len)), (Some("down"), Some(1)));
    assert!(d.ok(&["port", "list"]).contains("admin-down"));
    // `trace` says so too, for a frame to vm2's MAC (learned while it was up).
    let hex = |mac: String| mac.replace(':', "");
    let frame = format!("{}{}88b5{}", hex(vm2.mac()), hex(vm1.mac()), "00".repeat(46));
    let traced = d.json(&["trace", "--port", "vm1", "--packet", &frame]);
    assert_eq!(traced["drop_reason"], "port_down", "{traced}");
    let dumped = d.json(&["dump"]);
    let spec = dumped["ports"].as_array().unwrap().iter().find(|p| p["name"] == "vm2").unwrap().clone();
    assert_eq!(spec["admin"], "down", "{dumped}");
    assert!(d.err(&["port", "set", "vm9", "--admin", "down"]).contains("no port named \"vm9\""));

    d.ok(&["port", "set", "vm2", "--admin", "up"]);
    d.settle();
    assert!(ping(&vm1, "10.97.0.2") && ping(&vm2, "10.97.0.1"), "up again, both ways");
    let dumped = d.json(&["dump"]);
    assert!(
        dumped["ports"].as_array().unwrap().iter().all(|p| p.get("admin").is_none()),
        "up is the default: {dumped}"
    );

    // The desired state keeps it across a restart (a null device: no namespace to lose).
    d.ok(&["port", "add", "n1", "net_null0"]);
    d.ok(&["port", "set", "n1", "--admin", "down"]);
    d.restart();
    let listed = d.json(&["port", "list"]);
    let n1 = listed.as_array().unwrap().iter().find(|p| p["name"] == "n1").unwrap().clone();
    assert_eq!(n1["admin"], "down", "{n1}");
}

/// A port taken down tells its far end, as a pulled cable would: a kernel tap (in the
/// container's namespace) loses its carrier, and a veth's container end loses its
/// carrier as the switch's end goes down. Back up, both have it again; a restart keeps
/// a port that is down down, and a port deleted while down leaves its interface up.
#[test]
fn a_port_taken_down_takes_its_far_ends_link_down() {
    let mut d = Daemon::start();
    let tap = TapVm::kernel(&d, "k1", "10.96.0.1/24", &[]);
    let veth = TapVm::veth(&d, "k2", "10.96.0.2/24", &[]);
    let carrier = |vm: &TapVm| !vm.ns.exec_ok(&["ip", "link", "show", &vm.ifname]).contains("NO-CARRIER");
    let settled = |vm: &TapVm, want: bool| wait_until(Duration::from_secs(3), || carrier(vm) == want);
    assert!(settled(&tap, true) && settled(&veth, true), "both have a carrier at the start");
    for port in ["k1", "k2"] {
        d.ok(&["port", "set", port, "--admin", "down"]);
    }
    assert!(settled(&tap, false), "{}", tap.ns.exec_ok(&["ip", "link", "show", &tap.ifname]));
    assert!(settled(&veth, false), "{}", veth.ns.exec_ok(&["ip", "link", "show", &veth.ifname]));
    // The far end's own flags stay up: the link is gone, not the interface.
    assert!(tap.ns.exec_ok(&["ip", "link", "show", &tap.ifname]).contains(",UP"));

    for port in ["k1", "k2"] {
        d.ok(&["port", "set", port, "--admin", "up"]);
    }
    assert!(settled(&tap, true), "{}", tap.ns.exec_ok(&["ip", "link", "show", &tap.ifname]));
    assert!(settled(&veth, true), "{}", veth.ns.exec_ok(&["ip", "link", "show", &veth.ifname]));

    // (The tap goes with the switch's fd at a restart; the veth outlives it.)
    d.ok(&["port", "set", "k2", "--admin", "down"]);
    assert!(settled(&veth, false));
    d.restart();
    assert!(settled(&veth, false), "the veth reopened down stays down");
    assert!(!wait_until(Duration::from_secs(1), || carrier(&veth)), "and does not come back on its own");
    d.ok(&["port", "set", "k2", "--admin", "up"]);
    assert!(settled(&veth, true), "{}", veth.ns.exec_ok(&["ip", "link", "show", &veth.ifname]));

    // Deleted while down, the interface is given back up.
    d.ok(&["port", "set", "k2", "--admin", "down"]);
    assert!(settled(&veth, false));
    d.ok(&["port", "del", "k2"]);
    assert!(settled(&veth, true), "{}", veth.ns.exec_ok(&["ip", "link", "show", &veth.ifname]));
}
