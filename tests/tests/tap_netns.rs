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
