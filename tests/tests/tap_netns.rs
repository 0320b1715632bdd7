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
