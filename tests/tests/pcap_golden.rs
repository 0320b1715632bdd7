//! net_pcap golden tests: 10,000 varied frames in one port, out the other,
//! byte-identical, as decoded by scapy and tshark (never by our own parser): through a
//! cross-connect, and between two VM ports of one tenant network (where runs of frames
//! with the same MACs take the first frame's decision unparsed).
use std::time::Duration;
use vswitch_tests::*;

#[test]
fn ten_thousand_varied_frames_cross_the_xconnect_byte_identical() {
    let dir = TempDir::new("golden");
    let input = dir.path("in.pcap");
    let output = dir.path("out.pcap");
    let made = python("gen_varied.py", &[input.to_str().unwrap(), "10000", "20261123"]);
    assert!(made.starts_with("10000 60 1514"), "generator: {made}");

    // Start from a state file, so both ports and the cross-connect are in the first
    // snapshot the cores see: not one frame meets a port without its peer.
    let db = serde_json::json!({
        "format": 1,
        "ports": [
            {"name": "in", "devargs": format!("net_pcap0,rx_pcap={}", input.display())},
            {"name": "out", "devargs": format!("net_pcap1,tx_pcap={}", output.display())}
        ],
        "xconnects": [{"a": "in", "b": "out"}]
    });
    let mut d = Daemon::start_with(DaemonOpts { db: Some(db.to_string()), ..Default::default() });
    assert!(
        wait_until(Duration::from_secs(30), || d.counter("out", "tx_packets") == 10000),
        "not all frames came out: {}",
        d.port_stats("out")
    );
    let rx = d.port_stats("in");
    assert_eq!(rx["rx_packets"], 10000);
    assert_eq!(rx["drops"], serde_json::json!({}), "no drop of any reason: {rx}");
    let bytes_in = rx["rx_bytes"].as_u64().unwrap();
    assert_eq!(d.counter("out", "tx_bytes"), bytes_in, "byte counters agree across the xconnect");
    // The pcap driver writes its file out when the port closes.
    assert!(d.stop().success(), "vswitchd exits 0 on SIGTERM");

    let same = python("same_frames.py", &[input.to_str().unwrap(), output.to_str().unwrap()]);
    assert_eq!(same.trim(), "identical 10000");
    let fields =
        ["frame.len", "frame.protocols", "eth.src", "eth.dst", "ip.src", "ipv6.dst", "vlan.id", "udp.port", "tcp.port"];
    let a = tshark_fields(&input, &fields);
    let b = tshark_fields(&output, &fields);
    assert_eq!(a.len(), 10000);
    assert_eq!(a, b, "tshark decodes the same frames on both sides");
    let total: u64 = a.iter().map(|l| l.split('|').next().unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(total, bytes_in, "our rx byte counter equals the frame bytes tshark sees");
}

#[test]
fn varied_frames_between_two_vm_ports_arrive_byte_identical() {
    let dir = TempDir::new("golden-vm");
    let (varied, input, output) = (dir.path("varied.pcap"), dir.path("in.pcap"), dir.path("out.pcap"));
    python("gen_varied.py", &[varied.to_str().unwrap(), "10000", "20261124"]);
    let (vm, peer) = ("02:00:00:00:01:01", "02:00:00:00:02:01");
    let n = python("set_macs.py", &[varied.to_str().unwrap(), input.to_str().unwrap(), vm, peer]);
    assert_eq!(n.trim(), "10000");
    let db = serde_json::json!({
        "format": 1,
        "networks": [{"vni": 100}],
        "ports": [
            {"name": "vm1", "devargs": format!("net_pcap0,rx_pcap={}", input.display()), "role": "vm", "vni": 100},
            {"name": "vm2", "devargs": format!("net_pcap1,tx_pcap={}", output.display()), "role": "vm", "vni": 100}
        ],
        "fib": [{"vni": 100, "mac": peer, "port": "vm2"}, {"vni": 100, "mac": vm, "port": "vm1"}]
    });
    let mut d = Daemon::start_with(DaemonOpts { db: Some(db.to_string()), ..Default::default() });
    assert!(
        wait_until(Duration::from_secs(30), || d.counter("vm2", "tx_packets") == 10000),
        "not all frames came out: {} {}",
        d.port_stats("vm1"),
        d.port_stats("vm2")
    );
    assert_eq!(d.port_stats("vm1")["drops"], serde_json::json!({}));
    assert!(d.stop().success());
    let same = python("same_frames.py", &[input.to_str().unwrap(), output.to_str().unwrap()]);
    assert_eq!(same.trim(), "identical 10000");
}
