//! Kernel-interface ports (`kernel:iface=`): TCP between containers crosses the switch
//! in large segments with partial checksums, both backends (a tap the switch creates,
//! a veth it attaches to); a 64 KB TSO frame is cut into correct VXLAN segments toward
//! the uplink and goes whole to a kernel port. The receiving kernels, scapy and tshark
//! are the judges.
use serde_json::{json, Value};
use std::{path::Path, time::Duration};
use vswitch_tests::tcp::{iperf3, tcp_both_ways};
use vswitch_tests::*;

#[test]
fn tcp_crosses_kernel_ports_in_large_segments_both_ways() {
    let d = Daemon::start();
    d.ok(&["network", "add", "100"]);
    let vm = ["--role", "vm", "--vni", "100"];
    let c1 = TapVm::kernel(&d, "c1", "10.61.0.1/24", &vm);
    let c2 = TapVm::veth(&d, "c2", "10.61.0.2/24", &vm);
    let ports = d.json(&["port", "list"]);
    let p = |name: &str| ports.as_array().unwrap().iter().find(|p| p["name"] == name).unwrap().clone();
    assert_eq!(p("c1")["backend"], "tap");
    assert_eq!(p("c2")["backend"], "af_packet");
    // vxlan-tso too where the kernel has tunnel offloads for taps (Linux 6.17).
    assert_eq!(p("c1")["offloads"].as_array().unwrap()[..3], json!(["csum", "tso4", "tso6"]).as_array().unwrap()[..]);
    assert_eq!(p("c2")["offloads"], json!(["csum", "tso4", "tso6"]));
    assert_eq!(p("c2")["driver"], "kernel/af_packet");
    let out = c1.ns.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.61.0.2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    d.settle();
    let pool_before = d.mempool_available();
    // What the setup dropped (a new tap's own IPv6 chatter flooded before c2 existed).
    let drops_before = |port: &str| d.port_stats(port)["drops"].clone();
    let setup = [drops_before("c1"), drops_before("c2")];
    tcp_both_ways(
        (&c1.ns, "10.61.0.1"),
        (&c2.ns, "10.61.0.2"),
        &[&[], &["-R"], &["-P", "4"], &["-P", "4", "-R"]],
        (200_000_000, 1),
        (50_000_000, 4),
    );
    // The segments crossed whole: tens of KB per frame, not 1,500 bytes.
    for (port, setup) in ["c1", "c2"].into_iter().zip(&setup) {
        let s = d.port_stats(port);
        let avg = s["rx_bytes"].as_u64().unwrap() / s["rx_packets"].as_u64().unwrap().max(1);
        assert!(avg > 8000, "{port}: {avg} bytes a frame on average: TSO frames did not cross whole");
        let drops = s["drops"].as_object().unwrap();
        let new = |k: &str| drops[k].as_u64().unwrap_or(0) - setup[k].as_u64().unwrap_or(0);
        assert!(
            drops.keys().all(|k| k == "tx_full" || new(k) == 0),
            "{port}: unexpected drops {drops:?} (at setup: {setup})"
        );
    }
    d.assert_conserved("c1", "c2");
    d.assert_conserved("c2", "c1");

    // Policy sees the large segments as what they are. A 100 Mbit/s policer on c1's
    // ingress meters them by the bytes their segments put on the wire...
    d.ok(&["qos", "set", "c1", "--ingress-rate", "100mbit", "--ingress-burst", "256kb"]);
    let policed = || d.port_stats("c1")["drops"]["policed"].as_u64().unwrap_or(0);
    let policed_before = policed();
    let rate = iperf3(&c2.ns, "10.61.0.2", &c1.ns, &[]);
    assert!(rate < 2 * 110_000_000 / 8, "the policer held TCP to about 100 Mbit/s: {rate} bytes in 2 s");
    assert!(policed() > policed_before, "large frames over the rate were policed");
    d.ok(&["qos", "clear", "c1"]);
    // ...and a security group denies them by their headers.
    d.ok(&["acl", "add", "--priority", "5", "--port", "c1", "--proto", "tcp", "--dport", "5201", "--action", "deny"]);
    let refused = c1.ns.exec(&["iperf3", "-c", "10.61.0.2", "-t", "1", "--connect-timeout", "1000"]);
    assert!(!refused.status.success(), "the denied connection did not open");
    assert!(d.port_stats("c1")["drops"]["acl_deny_in"].as_u64().unwrap_or(0) > 0);
    // Frames dropped by the policer and the ACL went back to the pool too.
    d.assert_no_mbuf_leak(pool_before);
}

const REMOTE_MAC: &str = "02:00:00:07:00:02";
const LOCAL_MAC: &str = "02:00:00:07:00:03";

/// A state file: `network`; vm1 and vm2 on kernel interfaces `vm1`/`vm2`; an uplink on
/// `uplink` (devargs) toward a remote VTEP that holds REMOTE_MAC; LOCAL_MAC at vm2.
fn two_ports_and_an_uplink(network: Value, vm1: &str, vm2: &str, uplink: &str) -> Value {
    json!({
        "format": 1,
        "networks": [network],
        "vtep": {"ip": "10.0.0.1/24", "uplink": "up", "mac": "02:00:00:00:50:01"},
        "neighbours": [{"ip": "10.0.0.2", "mac": "02:00:00:00:00:02"}],
        "fib": [
            {"vni": 100, "mac": REMOTE_MAC, "vtep": "10.0.0.2"},
            {"vni": 100, "mac": LOCAL_MAC, "port": "vm2"}
        ],
        "ports": [
            {"name": "vm1", "role": "vm", "vni": 100, "devargs": format!("kernel:iface={vm1}")},
            {"name": "vm2", "role": "vm", "vni": 100, "devargs": format!("kernel:iface={vm2}")},
            {"name": "up", "role": "uplink", "devargs": uplink}
        ],
    })
}

#[test]
fn a_tso_frame_leaves_the_uplink_as_vxlan_segments_and_a_kernel_port_whole() {
    let dir = TempDir::new("tso");
    let up_out = dir.path("up_out.pcap");
    let (vin, vout) = (Veth::new("ti"), Veth::new("to"));
    let (in_host, in_peer, out_host, out_peer) = (&vin.host, &vin.peer, &vout.host, &vout.peer);
    for i in [in_peer, out_peer] {
        run_ok("sysctl", &["-qw", &format!("net.ipv6.conf.{i}.disable_ipv6=1")]);
    }
    let db = two_ports_and_an_uplink(
        json!({"vni": 100}),
        in_host,
        out_host,
        &format!("net_pcap0,tx_pcap={}", up_out.display()),
    );
    let mut d = Daemon::start_with(DaemonOpts { db: Some(db.to_string()), ..Default::default() });
    d.settle();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/vnet.py");
    let recv = std::process::Command::new(PYTHON)
        .args([script.to_str().unwrap(), "recv", out_peer, "3"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // 1398: what a VM with the overlay's MTU of 1450 cuts at.
    python("vnet.py", &["send", in_peer, REMOTE_MAC, "60000", "1398"]);
    python("vnet.py", &["send", in_peer, LOCAL_MAC, "60000", "1398"]);
    let got = String::from_utf8(recv.wait_with_output().unwrap().stdout).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || d.counter("up", "tx_packets") >= 43),
        "{} {} {}",
        d.port_stats("vm1"),
        d.port_stats("vm2"),
        d.port_stats("up")
    );
    let (up_tx, vm1_rx) = (d.counter("up", "tx_packets"), d.counter("vm1", "rx_packets"));
    // trace --tso says the same of the same frames: cut for the uplink, whole to vm2.
    for (dst, egress) in [
        (REMOTE_MAC, "cut in software into 43 frames for port up"),
        (LOCAL_MAC, "leaves port vm2 whole, which takes TSO"),
    ] {
        let big = python("vnet.py", &["hex", dst, "60000"]);
        let t = d.json(&["trace", "--port", "vm1", "--packet", big.trim(), "--tso", "1398"]);
        let steps: Vec<&str> = t["steps"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        // 60,054 bytes, and the 54 bytes of headers again for each of 42 more segments.
        let seen = "offload: a TSO frame, 43 segments of at most 1398 payload bytes, 62322 bytes on the wire";
        assert!(steps.contains(&seen) && steps.contains(&format!("offload: {egress}").as_str()), "{t}");
    }
    let stopped = d.stop();
    assert!(stopped.success(), "vswitchd stopped with {stopped}:\n{}", d.log_tail());

    // Whole to the kernel port: one frame, still a TSO frame of 1398-byte segments.
    let frames: Vec<Value> = got.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(frames.len(), 1, "one frame out of vm2: {got}");
    let f = &frames[0];
    assert_eq!((f["gso_type"].as_u64(), f["gso_size"].as_u64()), (Some(1), Some(1398)), "{f}");
    assert_eq!(
        (f["flags"].as_u64(), f["csum_start"].as_u64(), f["csum_offset"].as_u64()),
        (Some(1), Some(34), Some(16))
    );
    assert_eq!(f["len"], 60054);
    assert_eq!(f["payload_ok"], true);

    // Cut for the uplink: ceil(60000 / 1398) = 43 VXLAN frames, every header right.
    assert_eq!((vm1_rx, up_tx), (2, 43));
    let check = python("vnet.py", &["check", up_out.to_str().unwrap(), "60000", "1398"]);
    assert_eq!(check.trim(), "segments 43 sizes [1388, 1502] bad none");
    // tshark agrees: every IP, UDP and TCP checksum it can verify is good.
    let status = run_ok(
        "tshark",
        &[
            "-r",
            up_out.to_str().unwrap(),
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-T",
            "fields",
            "-e",
            "ip.checksum.status",
            "-e",
            "tcp.checksum.status",
        ],
    );
    let lines: Vec<&str> = status.lines().collect();
    assert_eq!(lines.len(), 43);
    for l in lines {
        // Outer and inner IP, then TCP: 1 is "Good".
        assert_eq!(l, "1,1\t1", "tshark checksum status (ip outer,inner / tcp)");
    }
}

/// Host B (the kernel's VXLAN, every offload on) behind `uplink`, a VM on a kernel tap,
/// in VNI 100: TCP must pass both ways, byte for byte, with no checksum error in either
/// kernel. Returns the uplink's counters.
fn tcp_to_a_kernel_vxlan_host(d: &Daemon, host_b: &TapVm, net: &str) -> Value {
    d.ok(&["vtep", "set", "--ip", &format!("192.168.{net}.1/24"), "--uplink", "up0", "--mac", "02:00:00:00:51:01"]);
    d.ok(&["network", "add-vtep", "100", &format!("192.168.{net}.2")]);
    let offloads = host_b.sh(&["ethtool", "-k", &host_b.ifname]);
    assert!(offloads.contains("tx-checksum-ip-generic: on"), "host B keeps its checksum offload:\n{offloads}");
    let (local, remote) = (format!("192.168.{net}.2"), format!("192.168.{net}.1"));
    host_b.sh(&[
        "ip",
        "link",
        "add",
        "vx100",
        "type",
        "vxlan",
        "id",
        "100",
        "local",
        &local,
        "remote",
        &remote,
        "dstport",
        "4789",
        "dev",
        &host_b.ifname,
    ]);
    host_b.ns.quiet("vx100");
    host_b.sh(&["ip", "addr", "add", "10.62.0.2/24", "dev", "vx100"]);
    host_b.sh(&["ip", "link", "set", "vx100", "mtu", "1450", "up"]);
    let vm = TapVm::kernel(d, "vm1", "10.62.0.1/24", &["--role", "vm", "--vni", "100"]);
    vm.sh(&["ip", "link", "set", &vm.ifname, "mtu", "1450"]);
    assert!(
        wait_until(Duration::from_secs(10), || vm
            .ns
            .exec(&["ping", "-c", "1", "-W", "1", "10.62.0.2"])
            .status
            .success()),
        "no ping across the overlay"
    );
    tcp_both_ways(
        (&vm.ns, "10.62.0.1"),
        (&host_b.ns, "10.62.0.2"),
        &[&[], &["-R"]],
        (100_000_000, 1),
        (100_000_000, 2),
    );
    d.port_stats("up0")
}

fn bytes_a_frame(s: &Value, dir: &str) -> u64 {
    s[format!("{dir}_bytes")].as_u64().unwrap() / s[format!("{dir}_packets")].as_u64().unwrap().max(1)
}

/// The partial-checksum case: host B is behind a veth with every offload left on, so
/// what it sends carries partial checksums (inner TCP and outer UDP) and large
/// tunnelled TCP segments. Our uplink attaches to the veth as a kernel port (AF_PACKET),
/// which says so; toward host B, segments are cut in software.
#[test]
fn tcp_passes_a_kernel_vxlan_host_that_leaves_its_checksums_partial() {
    let d = Daemon::start();
    d.ok(&["network", "add", "100"]);
    let host_b = TapVm::veth(&d, "up0", "192.168.51.2/24", &["--role", "uplink"]);
    let up = tcp_to_a_kernel_vxlan_host(&d, &host_b, "51");
    assert!(bytes_a_frame(&up, "rx") > 3000, "host B's tunnelled segments crossed whole: {up}");
}

/// The same behind a tap the switch made: tunnelled TCP segments cross whole both ways
/// where the kernel takes them (TUN_F_UDP_TUNNEL_GSO, Linux 6.17), else cut in software.
#[test]
fn tcp_to_a_kernel_vxlan_host_behind_a_kernel_tap_uplink() {
    let d = Daemon::start();
    d.ok(&["network", "add", "100"]);
    let host_b = TapVm::kernel(&d, "up0", "192.168.52.2/24", &["--role", "uplink"]);
    let up = tcp_to_a_kernel_vxlan_host(&d, &host_b, "52");
    let ports = d.json(&["port", "list"]);
    let tunnel =
        ports.as_array().unwrap().iter().any(|p| p["name"] == "up0" && p["offloads"].to_string().contains("vxlan-tso"));
    if tunnel {
        assert!(bytes_a_frame(&up, "tx") > 8000, "segments left for host B whole, in VXLAN: {up}");
        assert!(bytes_a_frame(&up, "rx") > 8000, "host B's came in whole: {up}");
    }
}

/// 10^5 multi-segment frames (3,000 bytes of TSO payload each, in 2 KB mbufs) from a
/// kernel port, dropped at every stage a TSO frame can meet (the ACL, the policer,
/// connection tracking, the gateway's route, the VXLAN MTU check) or sent on (whole to a
/// kernel port, cut in software for the uplink): every mbuf goes back to the pool.
#[test]
fn multi_segment_frames_dropped_at_every_stage_leave_no_mbuf_behind() {
    let (vin, vout) = (Veth::new("li"), Veth::new("lo"));
    for i in [&vin.peer, &vout.peer] {
        run_ok("sysctl", &["-qw", &format!("net.ipv6.conf.{i}.disable_ipv6=1")]);
    }
    let network = json!({"vni": 100, "gateway": ["10.7.0.254/24"]});
    let db = two_ports_and_an_uplink(network, &vin.host, &vout.host, "net_null0,no-rx=1");
    let d = Daemon::start_with(DaemonOpts { db: Some(db.to_string()), ..Default::default() });
    d.settle();
    let pool_before = d.mempool_available();
    // A drop reason counted at vm1, or the frames a port sent.
    let outcomes = |what: &str| match what {
        "vm2" | "up" => d.counter(what, "tx_packets"),
        reason => d.port_stats("vm1")["drops"][reason].as_u64().unwrap_or(0),
    };
    let gateway = "02:76:73:67:77:01";
    // (what is set up, where the frames go, their segment size, the drop reason or
    // the port that sends them on)
    let stages: [(&[&str], &str, &str, &str); 8] = [
        (&[], LOCAL_MAC, "1398", "vm2"),
        (&[], REMOTE_MAC, "1398", "up"),
        (
            &["acl", "add", "--id", "7", "--priority", "5", "--port", "vm1", "--proto", "tcp", "--action", "deny"],
            LOCAL_MAC,
            "1398",
            "acl_deny_in",
        ),
        (&["acl", "del", "7"], LOCAL_MAC, "1398", "vm2"),
        (&["qos", "set", "vm1", "--ingress-rate", "1mbit", "--ingress-burst", "16kb"], LOCAL_MAC, "1398", "policed"),
        // Routed by the gateway to 10.7.0.2, which no endpoint holds.
        (&["qos", "clear", "vm1"], gateway, "1398", "no_endpoint"),
        // A segment of 1,448 bytes is 1,488 of IP: over the overlay's 1,450.
        (&["acl", "stateful", "vm1", "on"], REMOTE_MAC, "1448", "ct_invalid"),
        (&["acl", "stateful", "vm1", "off"], REMOTE_MAC, "1448", "mtu_exceeded"),
    ];
    let mut sent = 0;
    for (setup, dst, mss, outcome) in stages {
        if !setup.is_empty() {
            d.ok(setup);
        }
        let before = (outcomes(outcome), d.counter("vm1", "rx_packets"), d.counter("vm2", "tx_packets"));
        // 12,500 frames a stage reach the switch (what the veth drops on a busy host
        // is sent again).
        for _ in 0..8 {
            python("vnet.py", &["burst", &vin.peer, dst, "3000", mss, "4000"]);
            if d.counter("vm1", "rx_packets") - before.1 >= 12_500 {
                break;
            }
        }
        d.settle();
        let after = (outcomes(outcome), d.counter("vm1", "rx_packets"), d.counter("vm2", "tx_packets"));
        let came = after.1 - before.1;
        // Sent on: once per frame, or once per segment when cut for the uplink. The
        // policer lets its rate through, to vm2.
        let passed = if outcome == "policed" { after.2 - before.2 } else { 0 };
        assert!(after.0 - before.0 + passed >= came, "{outcome}: {before:?} -> {after:?}: every frame");
        sent += came;
    }
    assert!(sent >= 100_000, "{sent} frames");
    d.assert_no_mbuf_leak(pool_before);
}
