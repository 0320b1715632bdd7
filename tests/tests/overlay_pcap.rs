//! The overlay on net_pcap ports, checked by tshark's VXLAN dissector and scapy:
//! encapsulation and decapsulation byte for byte, malformed VXLAN dropped by reason,
//! flooding with head-end replication, split horizon, and VNI isolation.
use serde_json::json;
use std::{collections::BTreeMap, path::Path};
use vswitch_tests::*;

const VTEP_MAC: &str = "02:00:00:00:00:01";
const VM_MAC: &str = "02:00:00:00:01:01";
const DST_MAC: &str = "02:00:00:00:02:01";

fn pcap(dir: &TempDir, name: &str) -> String {
    dir.path(name).display().to_string()
}

fn drops(d: &Daemon, port: &str) -> BTreeMap<String, u64> {
    serde_json::from_value(d.port_stats(port)["drops"].clone()).unwrap()
}

#[test]
fn encap_and_decap_golden_with_the_malformed_set_dropped_by_reason() {
    let dir = TempDir::new("ovl");
    python("gen_overlay.py", &["encap", &pcap(&dir, "vm_in.pcap"), "1000"]);
    let kinds = python("gen_overlay.py", &["decap", &pcap(&dir, "up_in.pcap"), &pcap(&dir, "inner.pcap"), "1000"]);
    let db = json!({
        "format": 1,
        "networks": [{"vni": 100}],
        "vtep": {"ip": "10.0.0.1/24", "uplink": "up", "mac": VTEP_MAC},
        "neighbours": [{"ip": "10.0.0.2", "mac": "02:00:00:00:00:02"}],
        "fib": [
            {"vni": 100, "mac": DST_MAC, "vtep": "10.0.0.2"},
            {"vni": 100, "mac": VM_MAC, "port": "vm1"}
        ],
        "ports": [
            {"name": "vm1", "role": "vm", "vni": 100,
             "devargs": format!("net_pcap0,rx_pcap={},tx_pcap={}", pcap(&dir, "vm_in.pcap"), pcap(&dir, "vm_out.pcap"))},
            {"name": "up", "role": "uplink",
             "devargs": format!("net_pcap1,rx_pcap={},tx_pcap={}", pcap(&dir, "up_in.pcap"), pcap(&dir, "up_out.pcap"))}
        ],
    });
    let mut d = Daemon::start_with(DaemonOpts { db: Some(db.to_string()), ..Default::default() });
    d.settle();
    // Malformed VXLAN: five of each kind, each counted under its reason.
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for k in kinds.split_whitespace() {
        *want.entry(k.to_string()).or_default() += 5;
    }
    assert_eq!(drops(&d, "up"), want, "uplink drops by reason");
    assert_eq!(drops(&d, "vm1"), BTreeMap::new());
    assert_eq!(d.counter("up", "tx_packets"), 1000);
    assert_eq!(d.counter("vm1", "tx_packets"), 1000);
    // Learning filled the FIB from decap: the inner source MAC is behind the remote VTEP
    // (here it is also a static entry, which wins: still exactly one entry).
    let fib = d.json(&["fib", "list", "100"]);
    assert!(fib.as_array().unwrap().iter().any(|e| e["mac"] == DST_MAC && e["vtep"] == "10.0.0.2"), "{fib}");
    assert!(d.stop().success());

    // Decap: the inner frames, byte for byte.
    let same = python("same_frames.py", &[&pcap(&dir, "inner.pcap"), &pcap(&dir, "vm_out.pcap")]);
    assert_eq!(same.trim(), "identical 1000");
    // Encap: the inner frames untouched behind 50 bytes of outer headers...
    let same = python("same_frames.py", &[&pcap(&dir, "vm_in.pcap"), &pcap(&dir, "up_out.pcap"), "--strip", "50"]);
    assert_eq!(same.trim(), "identical 1000");
    // ...and the outer headers as Wireshark reads them.
    let out = Path::new(&pcap(&dir, "up_out.pcap")).to_path_buf();
    let fields = [
        "eth.src",
        "eth.dst",
        "ip.src",
        "ip.dst",
        "ip.flags.df",
        "ip.ttl",
        "ip.checksum.status",
        "udp.dstport",
        "udp.srcport",
        "vxlan.flags",
        "vxlan.vni",
        "ip.dsfield",
    ];
    let rows = tshark_checked(&out, &fields);
    assert_eq!(rows.len(), 1000);
    let tos_in = tshark_fields(Path::new(&pcap(&dir, "vm_in.pcap")), &["ip.dsfield"]);
    let mut sports = std::collections::HashSet::new();
    for (row, tos) in rows.iter().zip(tos_in) {
        // tshark prints "outer,inner" where both levels have the field: keep the outer.
        let f: Vec<&str> = row.split('|').map(|x| x.split(',').next().unwrap()).collect();
        // ip.checksum.status 1: tshark verified the header checksum as good.
        assert_eq!(&f[..8], &[VTEP_MAC, "02:00:00:00:00:02", "10.0.0.1", "10.0.0.2", "1", "64", "1", "4789"], "{row}");
        let sport: u16 = f[8].parse().unwrap();
        assert!(sport >= 49152, "UDP source port from the flow hash, in 49152..65535: {sport}");
        sports.insert(sport);
        assert_eq!(f[9], "0x0800", "I flag only (tshark shows the 16-bit flags field)");
        assert_eq!(f[10], "100");
        // The outer header carries the (first) DSCP/ECN of the inner packet.
        assert_eq!(f[11], tos.split(',').next().unwrap());
    }
    assert!(sports.len() > 500, "flows spread over source ports: {}", sports.len());
}

/// tshark with IPv4 checksum validation on (ip.checksum.status 2 = good).
fn tshark_checked(file: &Path, fields: &[&str]) -> Vec<String> {
    let mut args: Vec<String> =
        ["-o", "ip.check_checksum:TRUE", "-r", &file.display().to_string(), "-T", "fields", "-E", "separator=|"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    for f in fields {
        args.push("-e".into());
        args.push(f.to_string());
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok("tshark", &a).lines().map(str::to_owned).collect()
}

#[test]
fn flooding_replicates_to_every_remote_vtep_with_split_horizon_and_never_crosses_vnis() {
    let dir = TempDir::new("bum");
    python("gen_overlay.py", &["bum-vm", &pcap(&dir, "vm_in.pcap"), "20", "10"]);
    python("gen_overlay.py", &["bum-up", &pcap(&dir, "up_in.pcap"), "15"]);
    let db = json!({
        "format": 1,
        "networks": [{"vni": 100, "flood_vteps": ["10.0.0.2", "10.0.0.3", "10.0.0.4"]}, {"vni": 200, "flood_vteps": ["10.0.0.5"]}],
        "vtep": {"ip": "10.0.0.1/24", "uplink": "up", "mac": VTEP_MAC},
        "neighbours": [
            {"ip": "10.0.0.2", "mac": "02:00:00:00:00:02"}, {"ip": "10.0.0.3", "mac": "02:00:00:00:00:03"},
            {"ip": "10.0.0.4", "mac": "02:00:00:00:00:04"}, {"ip": "10.0.0.5", "mac": "02:00:00:00:00:05"}
        ],
        "ports": [
            {"name": "vm1", "role": "vm", "vni": 100,
             "devargs": format!("net_pcap0,rx_pcap={},tx_pcap={}", pcap(&dir, "vm_in.pcap"), pcap(&dir, "vm1_out.pcap"))},
            {"name": "vm2", "role": "vm", "vni": 100, "devargs": format!("net_pcap1,tx_pcap={}", pcap(&dir, "vm2_out.pcap"))},
            {"name": "vm3", "role": "vm", "vni": 200, "devargs": format!("net_pcap2,tx_pcap={}", pcap(&dir, "vm3_out.pcap"))},
            {"name": "up", "role": "uplink",
             "devargs": format!("net_pcap3,rx_pcap={},tx_pcap={}", pcap(&dir, "up_in.pcap"), pcap(&dir, "up_out.pcap"))}
        ],
    });
    let mut d = Daemon::start_with(DaemonOpts { db: Some(db.to_string()), ..Default::default() });
    d.settle();
    assert!(d.stop().success());

    let count = |f: &str| tshark_fields(&dir.path(f), &["frame.number"]).len();
    assert_eq!(count("vm2_out.pcap"), 30 + 15, "vm2 gets every BUM frame of VNI 100, from vm1 and from the overlay");
    assert_eq!(count("vm1_out.pcap"), 15, "vm1 gets the overlay's BUM frames, never its own");
    assert_eq!(count("vm3_out.pcap"), 0, "nothing crosses into VNI 200");
    // Head-end replication: each of vm1's 30 frames once to each of the 3 remote VTEPs,
    // and none of the overlay's 15 sent back into it (split horizon).
    let rows = tshark_fields(&dir.path("up_out.pcap"), &["ip.dst", "vxlan.vni", "eth.dst", "eth.src"]);
    assert_eq!(rows.len(), 90);
    let mut per_dst: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rows {
        // Outer values first where the inner frame has the field too.
        let f: Vec<&str> = r.split('|').map(|x| x.split(',').next().unwrap()).collect();
        assert_eq!(f[1], "100");
        let last = f[0].rsplit('.').next().unwrap();
        assert_eq!(f[2], format!("02:00:00:00:00:0{last}"), "outer MAC of that VTEP's next hop");
        assert_eq!(f[3], VTEP_MAC);
        *per_dst.entry(f[0].to_string()).or_default() += 1;
    }
    assert_eq!(per_dst, BTreeMap::from([("10.0.0.2".into(), 30), ("10.0.0.3".into(), 30), ("10.0.0.4".into(), 30)]));
    let inner_src = tshark_fields(&dir.path("up_out.pcap"), &["eth.src"]);
    assert!(inner_src.iter().all(|s| s.ends_with(VM_MAC)), "only vm1's frames went into the overlay");
}

#[test]
fn jumbo_frames_cross_both_paths_up_to_the_configured_mtu() {
    let dir = TempDir::new("jumbo");
    python("gen_overlay.py", &["jumbo", &pcap(&dir, "vm_in.pcap"), &pcap(&dir, "up_in.pcap")]);
    let db = json!({
        "format": 1,
        "networks": [{"vni": 100}],
        "vtep": {"ip": "10.0.0.1/24", "uplink": "up", "mac": VTEP_MAC},
        "neighbours": [{"ip": "10.0.0.2", "mac": "02:00:00:00:00:02"}],
        "fib": [{"vni": 100, "mac": DST_MAC, "vtep": "10.0.0.2"}, {"vni": 100, "mac": VM_MAC, "port": "vm1"}],
        "ports": [
            {"name": "vm1", "role": "vm", "vni": 100, "mtu": 9000,
             "devargs": format!("net_pcap0,rx_pcap={},tx_pcap={}", pcap(&dir, "vm_in.pcap"), pcap(&dir, "vm_out.pcap"))},
            {"name": "up", "role": "uplink", "mtu": 9000,
             "devargs": format!("net_pcap1,rx_pcap={},tx_pcap={}", pcap(&dir, "up_in.pcap"), pcap(&dir, "up_out.pcap"))}
        ],
    });
    let mut d = Daemon::start_with(DaemonOpts { db: Some(db.to_string()), ..Default::default() });
    d.settle();
    // 8964 + 36 bytes of outer IPv4/UDP/VXLAN = 9000 fits; 8965 does not. 9014 bytes of
    // Ethernet frame is 9000 of IP toward the VM; 9015 is not.
    assert_eq!(drops(&d, "vm1"), BTreeMap::from([("mtu_exceeded".to_string(), 1)]));
    assert_eq!(drops(&d, "up"), BTreeMap::from([("mtu_exceeded".to_string(), 1)]));
    assert!(d.stop().success());
    let lens = |f: &str| tshark_fields(&dir.path(f), &["frame.len"]);
    assert_eq!(lens("up_out.pcap"), ["1450", "4050", "9014"]);
    assert_eq!(lens("vm_out.pcap"), ["1400", "8000", "9014"]);
    let inner_out = tshark_fields(&dir.path("up_out.pcap"), &["vxlan.vni"]);
    assert!(inner_out.iter().all(|v| v == "100"));
}
