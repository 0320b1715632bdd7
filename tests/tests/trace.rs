//! `vswitchctl trace` runs the real stages on a copy of a packet against the current
//! tables and says what each decided, sending and learning nothing.
use vswitch_tests::*;

const CONFIG: &str = r#"{"format": 1,
 "networks": [{"vni": 100, "flood_vteps": ["192.168.50.3"]}],
 "ports": [
   {"name": "vm1", "devargs": "net_ring0", "role": "vm", "vni": 100},
   {"name": "vm2", "devargs": "net_ring1", "role": "vm", "vni": 100},
   {"name": "up0", "devargs": "net_null2,no-rx=1", "role": "uplink"}],
 "vtep": {"ip": "192.168.50.1/24", "uplink": "up0", "mac": "02:00:00:00:50:01"},
 "fib": [{"vni": 100, "mac": "02:00:00:00:09:09", "vtep": "192.168.50.2"},
         {"vni": 100, "mac": "02:00:00:00:01:01", "port": "vm1"}],
 "neighbours": [{"ip": "192.168.50.2", "mac": "02:00:00:00:50:02"}]}"#;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An Ethernet/IPv4/UDP frame of 60 bytes.
fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0x28, 0, 46, 0, 0, 0, 0, 64, 17, 0, 0, 10, 1, 0, 1, 10, 1, 0, 2]);
    f.extend_from_slice(&[0x04, 0x00, 0x13, 0x89, 0, 26, 0, 0]);
    f.resize(60, 0);
    f
}

/// VXLAN from 192.168.50.2 to our VTEP around `inner`, with `flags`.
fn vxlan(inner: &[u8], flags: u8) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0x50, 1, 2, 0, 0, 0, 0x50, 2, 8, 0];
    let total = (20 + 8 + 8 + inner.len()) as u16;
    let mut ip =
        vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 168, 50, 2, 192, 168, 50, 1];
    let sum = ip.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    let c = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let ulen = total - 20;
    f.extend_from_slice(&[0xc3, 0x50, 0x12, 0xb5, (ulen >> 8) as u8, ulen as u8, 0, 0]);
    f.extend_from_slice(&[flags, 0, 0, 0, 0, 0, 100, 0]);
    f.extend_from_slice(inner);
    f
}

fn trace(d: &Daemon, port: &str, packet: &[u8]) -> serde_json::Value {
    d.json(&["trace", "--port", port, "--packet", &hex(packet)])
}

fn steps(t: &serde_json::Value) -> String {
    t["steps"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect::<Vec<_>>().join("\n")
}

#[test]
fn trace_explains_forwarding_flooding_decap_arp_and_drops() {
    let d = Daemon::start();
    let cfg = d.dir.path("c.json");
    std::fs::write(&cfg, CONFIG).unwrap();
    d.ok(&["apply", "-f", cfg.to_str().unwrap()]);
    let vm_mac = [2, 0, 0, 0, 1, 1];
    // What tracing must not change. The uplink's tx counter is left out: the control
    // plane's ARP requests for 192.168.50.3 go out there on their own schedule.
    let counters = || {
        let mut v = d.json(&["port", "stats"]);
        for p in v.as_array_mut().unwrap() {
            if p["name"] == "up0" {
                p["tx_packets"] = serde_json::Value::Null;
                p["tx_bytes"] = serde_json::Value::Null;
            }
        }
        v
    };
    let stats_before = counters();

    // VM -> remote VTEP: encapsulated to the uplink.
    let t = trace(&d, "vm1", &frame([2, 0, 0, 0, 9, 9], vm_mac));
    let s = steps(&t);
    assert_eq!(t["action"], "tx on port up0", "{s}");
    assert!(s.contains("fib: 02:00:00:00:09:09 in VNI 100 -> remote VTEP 192.168.50.2 (static)"), "{s}");
    assert!(s.contains("encap: 02:00:00:00:50:01 -> 02:00:00:00:50:02, 192.168.50.1 -> 192.168.50.2"), "{s}");
    assert!(s.contains("VNI 100, TTL 64, DSCP/ECN 0x28"), "{s}");
    assert!(t["output"].as_str().unwrap().starts_with("020000005002020000005001"), "{t}");
    // Broadcast: flooded locally and to the flood list (its next hop unresolved).
    let t = trace(&d, "vm1", &frame([0xff; 6], vm_mac));
    assert_eq!(
        t["action"],
        "flood in VNI 100 to local ports [vm2] and remote VTEPs [192.168.50.3 (next hop unresolved: dropped)]"
    );
    // A group source MAC is dropped, by name.
    let t = trace(&d, "vm1", &frame([2, 0, 0, 0, 9, 9], [1, 0, 0x5e, 0, 0, 1]));
    assert_eq!(t["drop_reason"], "bad_src_mac");
    // VXLAN for us: stripped and delivered; the source is what would be learned.
    let inner = frame(vm_mac, [2, 0, 0, 0, 7, 7]);
    let t = trace(&d, "up0", &vxlan(&inner, 0x08));
    let s = steps(&t);
    assert_eq!(t["action"], "tx on port vm1", "{s}");
    assert!(s.contains("decap: VXLAN VNI 100 from remote VTEP 192.168.50.2"), "{s}");
    assert!(s.contains("learn: 02:00:00:00:07:07 in VNI 100 at remote VTEP 192.168.50.2 (new)"), "{s}");
    assert_eq!(t["output"].as_str().unwrap(), hex(&inner), "the inner frame, as the VM gets it");
    // Without the I flag: dropped, and the reason says why.
    let t = trace(&d, "up0", &vxlan(&inner, 0x00));
    assert_eq!(t["drop_reason"], "vxlan_bad_flags", "{}", steps(&t));
    // ARP for our VTEP IP: answered on the uplink.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0x50, 2, 8, 6, 0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0x50, 2, 192, 168, 50, 2]);
    arp.extend_from_slice(&[0, 0, 0, 0, 0, 0, 192, 168, 50, 1]);
    arp.resize(60, 0);
    let t = trace(&d, "up0", &arp);
    assert_eq!(t["action"], "tx on port up0");
    let out = t["output"].as_str().unwrap();
    assert!(out.starts_with("020000005002020000005001080600010800060400020200000050"), "an ARP reply from us: {out}");

    // Tracing sent nothing and learned nothing.
    assert_eq!(counters(), stats_before);
    let fib = d.json(&["fib", "list"]);
    assert!(fib.as_array().unwrap().iter().all(|e| e["kind"] == "static"), "{fib}");
    // A rule that denies, and the policer: each named in the trace.
    d.ok(&[
        "acl",
        "add",
        "--priority",
        "10",
        "--port",
        "vm1",
        "--proto",
        "udp",
        "--dport",
        "5001",
        "--action",
        "deny",
        "--id",
        "77",
    ]);
    let t = trace(&d, "vm1", &frame([2, 0, 0, 0, 9, 9], vm_mac));
    assert_eq!(t["drop_reason"], "acl_deny_in");
    assert!(steps(&t).contains("acl in (from the VM): rule 77 decided"), "{}", steps(&t));
    d.ok(&["acl", "del", "77"]);
    d.ok(&["qos", "set", "vm1", "--ingress-rate", "1mbit", "--ingress-burst", "50b"]);
    let t = trace(&d, "vm1", &frame([2, 0, 0, 0, 9, 9], vm_mac));
    assert_eq!(t["drop_reason"], "policed", "a 60-byte frame is red against a 50-byte burst");
    assert!(steps(&t).contains("policer: Red -> Drop"), "{}", steps(&t));
    d.ok(&["qos", "clear", "vm1"]);
    // A frame from a pcap (scapy's VM traffic toward 02:00:00:00:02:01: unknown, flooded).
    let pcap = d.dir.path("vm.pcap");
    python("gen_overlay.py", &["encap", pcap.to_str().unwrap(), "3"]);
    let t = d.json(&["trace", "--port", "vm1", "--pcap", pcap.to_str().unwrap(), "--index", "2"]);
    assert!(t["action"].as_str().unwrap().starts_with("flood in VNI 100"), "{t}");
    assert!(d
        .err(&["trace", "--port", "vm1", "--pcap", pcap.to_str().unwrap(), "--index", "3"])
        .contains("has 3 frames"));
    // Bad requests are named.
    assert!(d.err(&["trace", "--port", "nope", "--packet", "00"]).contains("port: no port named \"nope\""));
    assert!(d.err(&["trace", "--port", "vm1", "--packet", "0g"]).contains("packet: \"0g\" is not hex"));
    // Shorter than its MACs (found by the trace fuzz target: the FIB step read six bytes
    // of it and took the control plane down).
    let t = d.json(&["trace", "--port", "vm1", "--packet", "0200"]);
    assert_eq!(t["drop_reason"], "runt_frame", "{t}");
    assert!(d.ok(&["show"]).contains("vswitchd"), "the switch answers after it");
}

#[test]
fn shell_completion_is_generated() {
    let out = run_ok(bin("vswitchctl").to_str().unwrap(), &["completion", "bash"]);
    assert!(out.contains("_vswitchctl") && out.contains("xconnect") && out.contains("trace"));
}
