//! Declarative configuration: `apply -f` reconciles the switch to a file, all or
//! nothing; `dump` prints the running state in the same format, so dump -> apply
//! changes nothing.
use std::time::Duration;
use vswitch_tests::*;

const YAML: &str = r#"
format: 1
networks:
  - vni: 100
    name: blue
    flood_vteps: [192.168.50.2]
  - vni: 200
    max_macs: 100
ports:
  - name: gen
    devargs: net_null0
  - name: sink
    devargs: net_null1,no-rx=1
  - name: vm1
    devargs: net_ring0
    role: vm
    vni: 100
  - name: up0
    devargs: net_ring1
    role: uplink
xconnects:
  - {a: gen, b: sink}
vtep:
  ip: 192.168.50.1/24
  uplink: up0
  mac: 02:00:00:00:50:01
fib:
  - {vni: 100, mac: "02:00:00:00:AA:01", port: vm1}
neighbours:
  - {ip: 192.168.50.2, mac: "02:00:00:00:50:02"}
"#;

fn write(d: &Daemon, name: &str, text: &str) -> String {
    let p = d.dir.path(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn apply_builds_the_switch_and_dump_round_trips_without_changes() {
    let d = Daemon::start();
    let f = write(&d, "switch.yaml", YAML);
    let out = d.ok(&["apply", "-f", &f]);
    assert!(out.contains("+ port vm1 net_ring0 role vm vni 100"), "{out}");
    assert!(out.contains("+ xconnect gen sink"), "{out}");
    let show = d.json(&["show"]);
    assert_eq!(show["ports"].as_array().unwrap().len(), 4);
    assert_eq!(show["vtep"]["state"], "active");
    assert!(wait_until(Duration::from_secs(5), || d.counter("sink", "tx_packets") > 1000), "the xconnect forwards");

    // Applying again, or applying what dump prints, changes nothing.
    assert!(d.ok(&["apply", "-f", &f]).contains("no changes"));
    let dumped = d.ok(&["dump"]);
    let again = write(&d, "dump.json", &dumped);
    assert!(d.ok(&["apply", "-f", &again]).contains("no changes"));
    assert_eq!(d.ok(&["dump"]), dumped);
    // The state file holds the same.
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&d.db).unwrap()).unwrap();
    assert_eq!(saved, serde_json::from_str::<serde_json::Value>(&dumped).unwrap());
}

#[test]
fn dry_run_and_refused_files_change_nothing() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", &write(&d, "switch.yaml", YAML)]);
    let before = d.ok(&["dump"]);
    let ports_before = d.json(&["port", "list"]);

    // Dry run: the diff, and nothing done.
    let changed = YAML.replace("vni: 200\n    max_macs: 100", "vni: 300").replace("net_ring0", "net_ring7");
    let out = d.ok(&["apply", "-f", &write(&d, "changed.yaml", &changed), "--dry-run"]);
    assert!(out.contains("would change:"), "{out}");
    assert!(out.contains("- network 200") && out.contains("+ network 300"), "{out}");
    assert!(out.contains("~ port vm1: net_ring0 role vm vni 100 -> net_ring7 role vm vni 100"), "{out}");
    assert_eq!(d.ok(&["dump"]), before);

    // One bad entry: refused by name, nothing changed.
    let bad = YAML.replace("vni: 200", "vni: 16777216");
    let e = d.err(&["apply", "-f", &write(&d, "bad.yaml", &bad)]);
    assert!(e.contains("networks (vni 16777216): vni: 16777216 is out of range"), "{e}");
    let dangling = YAML.replace("uplink: up0", "uplink: nowhere");
    let e = d.err(&["apply", "-f", &write(&d, "dangling.yaml", &dangling)]);
    assert!(e.contains("vtep: uplink: no port named \"nowhere\""), "{e}");
    // A device that fails to attach: the other new ports are not kept either.
    let failing = YAML.replace(
        "  - name: up0",
        "  - name: extra\n    devargs: net_ring9\n  - name: broken\n    devargs: net_pcap9,rx_pcap=/nonexistent.pcap\n  - name: up0",
    );
    let e = d.err(&["apply", "-f", &write(&d, "failing.yaml", &failing)]);
    assert!(e.contains("ports (broken)") && e.contains("nothing was changed"), "{e}");
    assert_eq!(d.ok(&["dump"]), before);
    assert_eq!(d.json(&["port", "list"]), ports_before);
    // Not even the device that did attach stays attached: it can be added by hand.
    d.ok(&["port", "add", "extra", "net_ring9"]);
    d.ok(&["port", "del", "extra"]);
    // Not YAML or JSON at all.
    let e = d.err(&["apply", "-f", &write(&d, "junk.yaml", "ports: [[[")]);
    assert!(e.contains("is not a valid desired state"), "{e}");
}

#[test]
fn apply_changes_only_what_differs_while_traffic_flows() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", &write(&d, "switch.yaml", YAML)]);
    assert!(wait_until(Duration::from_secs(5), || d.counter("sink", "tx_packets") > 1000));
    let gen_id = d.json(&["port", "list"])[0]["port_id"].clone();
    // Remove vm1 and network 200, move nothing else.
    let smaller = YAML
        .replace("  - vni: 200\n    max_macs: 100\n", "")
        .replace("  - name: vm1\n    devargs: net_ring0\n    role: vm\n    vni: 100\n", "")
        .replace("fib:\n  - {vni: 100, mac: \"02:00:00:00:AA:01\", port: vm1}\n", "");
    let out = d.ok(&["apply", "-f", &write(&d, "smaller.yaml", &smaller)]);
    assert!(out.contains("- port vm1") && out.contains("- network 200") && out.contains("- fib 100"), "{out}");
    let ports = d.json(&["port", "list"]);
    assert_eq!(ports.as_array().unwrap().len(), 3);
    assert_eq!(ports[0]["port_id"], gen_id, "gen kept its device");
    let before = d.counter("sink", "tx_packets");
    assert!(wait_until(Duration::from_secs(5), || d.counter("sink", "tx_packets") > before + 1000), "still forwarding");
    assert_eq!(d.port_stats("sink")["drops"], serde_json::json!({}));
}
