//! QoS through the whole switch on net_pcap ports (packets arrive as fast as the pcap
//! driver reads them, so meters see a burst): the committed burst passes whole and the
//! rest is policed; the egress limit holds; yellow is remarked and the outer DSCP is set,
//! as tshark reads them; bad settings are refused by field. (Meter accuracy over a long
//! run is tested on a simulated clock in pipelines::qos.)
use serde_json::json;
use vswitch_tests::*;

const VM2: &str = "02:00:00:00:02:01";
const REMOTE_VM: &str = "02:00:00:00:09:01";

fn switch(dir: &TempDir, qos: serde_json::Value, dst: &str) -> Daemon {
    let p = |n: &str| dir.path(n).display().to_string();
    python("gen_qos.py", &[&p("vm1_in.pcap"), "1000", "1000", dst]);
    let db = json!({
        "format": 1,
        "networks": [{"vni": 100}],
        "vtep": {"ip": "10.0.0.1/24", "uplink": "up", "mac": "02:00:00:00:00:01"},
        "neighbours": [{"ip": "10.0.0.2", "mac": "02:00:00:00:00:02"}],
        "fib": [{"vni": 100, "mac": VM2, "port": "vm2"}, {"vni": 100, "mac": REMOTE_VM, "vtep": "10.0.0.2"}],
        "ports": [
            {"name": "vm1", "role": "vm", "vni": 100, "devargs": format!("net_pcap0,rx_pcap={}", p("vm1_in.pcap"))},
            {"name": "vm2", "role": "vm", "vni": 100, "devargs": format!("net_pcap1,tx_pcap={}", p("vm2_out.pcap"))},
            {"name": "up", "role": "uplink", "devargs": format!("net_pcap2,tx_pcap={}", p("up_out.pcap"))}
        ],
        "qos": qos
    });
    let d = Daemon::start_with(DaemonOpts { db: Some(db.to_string()), ..Default::default() });
    d.settle();
    d
}

#[test]
fn the_policer_passes_the_committed_burst_whole_and_drops_the_rest() {
    let dir = TempDir::new("police");
    // 1 Mbit/s with a 100,000-byte burst: 100 frames of 1000 bytes, then ~125 bytes/ms.
    let q = json!([{"port": "vm1", "ingress": {"rate": "1mbit", "burst": "100000b"}}]);
    let d = switch(&dir, q, VM2);
    let passed = d.counter("vm2", "tx_packets");
    assert!((100..=105).contains(&passed), "the burst, plus what refilled while the pcap was read: {passed}");
    assert_eq!(d.port_stats("vm1")["drops"]["policed"].as_u64().unwrap(), 1000 - passed);
}

#[test]
fn the_egress_limit_holds_what_a_vm_receives() {
    let dir = TempDir::new("egress");
    let q = json!([{"port": "vm2", "egress": {"rate": "1mbit", "burst": "20kb"}}]);
    let d = switch(&dir, q, VM2);
    let passed = d.counter("vm2", "tx_packets");
    // 20 KiB = 20,480 bytes: 20 whole frames.
    assert!((20..=25).contains(&passed), "{passed}");
    assert_eq!(d.port_stats("vm1")["drops"]["rate_limited"].as_u64().unwrap(), 1000 - passed);
}

#[test]
fn yellow_is_remarked_and_the_outer_dscp_is_set_as_tshark_reads_them() {
    let dir = TempDir::new("dscp");
    // 10 frames green, then yellow (a large excess burst) remarked to DSCP 10; every
    // encapsulated frame's outer header carries DSCP 46 (EF).
    let q = json!([{"port": "vm1", "mode": "srtcm", "yellow": "dscp=10", "dscp": 46,
                    "ingress": {"rate": "1mbit", "burst": "10000b", "excess_burst": "10mb"}}]);
    let mut d = switch(&dir, q, REMOTE_VM);
    assert_eq!(d.counter("up", "tx_packets"), 1000);
    assert!(d.stop().success());
    let rows = tshark_fields(&dir.path("up_out.pcap"), &["ip.dsfield.dscp"]);
    assert_eq!(rows.len(), 1000);
    let green = rows.iter().filter(|r| *r == "46,0").count();
    let yellow = rows.iter().filter(|r| *r == "46,10").count();
    assert!((10..=12).contains(&green), "green kept DSCP 0: {green}");
    assert_eq!(green + yellow, 1000, "{:?}", &rows[..3]);
    let checks = run_ok(
        "tshark",
        &[
            "-o",
            "ip.check_checksum:TRUE",
            "-r",
            dir.path("up_out.pcap").to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "ip.checksum.status",
        ],
    );
    assert!(checks.lines().all(|l| l == "1,1"), "outer and remarked inner IPv4 checksums are good");
}

#[test]
fn bad_qos_settings_are_refused_by_field() {
    let d = Daemon::start();
    d.ok(&["network", "add", "100"]);
    d.ok(&["port", "add", "vm1", "net_ring0", "--role", "vm", "--vni", "100"]);
    d.ok(&["port", "add", "up", "net_ring1", "--role", "uplink"]);
    let cases: &[(&[&str], &str)] = &[
        (&["vm1", "--ingress-rate", "0mbit"], "ingress_rate: \"0mbit\" is zero"),
        (&["vm1", "--egress-rate", "401gbit"], "egress_rate: \"401gbit\" is beyond 400 Gbit/s"),
        (&["vm1", "--ingress-rate", "fast"], "ingress_rate: \"fast\" is not a rate"),
        (
            &["vm1", "--ingress-rate", "50kpps", "--ingress-burst", "64kb"],
            "ingress_burst: \"64kb\": a packet-rate meter's burst is in packets",
        ),
        (&["vm1", "--ingress-rate", "1gbit", "--mode", "trtcm"], "ingress_peak_rate: --mode trtcm needs a peak rate"),
        (&["vm1", "--ingress-rate", "1gbit", "--red", "maybe"], "red: \"maybe\" is not an action"),
        (&["nope", "--ingress-rate", "1gbit"], "port: no port named \"nope\""),
        (&["up", "--ingress-rate", "1gbit"], "not a VM port"),
    ];
    for (args, want) in cases {
        let mut a = vec!["qos", "set"];
        a.extend_from_slice(args);
        let e = d.err(&a);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    d.ok(&["qos", "set", "vm1", "--ingress-rate", "50kpps", "--ingress-burst", "32pkt", "--dscp", "46"]);
    let show = d.ok(&["qos", "show"]);
    assert!(show.contains("vm1: ingress 50kpps burst 32pkt") && show.contains("outer-dscp 46"), "{show}");
    assert!(d.err(&["qos", "clear", "up"]).contains("has no QoS"));
    d.ok(&["qos", "clear", "vm1"]);
}
