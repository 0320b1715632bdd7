//! Bad input gets an answer that names the problem; the daemon keeps running and the
//! ports that were forwarding keep forwarding.
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    process::Command,
    time::Duration,
};
use vswitch_tests::*;

#[test]
fn vswitchctl_without_a_daemon_says_which_socket_and_how_to_start_one() {
    let o =
        Command::new(bin("vswitchctl")).args(["--socket", "/tmp/vswitch-none/nothing.sock", "show"]).output().unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("/tmp/vswitch-none/nothing.sock"), "{e}");
    assert!(e.contains("Is vswitchd running?") && e.contains("vswitchd -- -l 0-1"), "{e}");
}

#[test]
fn eal_failure_exits_non_zero_and_says_how_to_get_memory() {
    require_root();
    let dir = TempDir::new("eal");
    // /tmp is no hugetlbfs: EAL finds no hugepages there, whatever the host has reserved.
    let o = Command::new(bin("vswitchd"))
        .args(["--socket", dir.path("s.sock").to_str().unwrap(), "--db", dir.path("db.json").to_str().unwrap()])
        .args(["--", "-l", "0-1", "--no-pci", "--huge-dir", "/tmp", "--file-prefix", &unique("ealf")])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("EAL initialisation failed"), "{e}");
    assert!(e.contains("hugepage"), "{e}");
    assert!(e.contains("nr_hugepages") && e.contains("--no-huge"), "says how to fix it: {e}");
}

#[test]
fn a_corrupt_state_file_is_refused_and_left_alone() {
    require_root();
    let dir = TempDir::new("corrupt");
    let db = dir.path("conf.json");
    std::fs::write(&db, "{\"format\":1,\"ports\":[{\"name\":\"a\",").unwrap();
    let o = Command::new(bin("vswitchd"))
        .args(["--socket", dir.path("s.sock").to_str().unwrap(), "--db", db.to_str().unwrap(), "--"])
        .args(Daemon::eal_args(&unique("cor")))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains(db.to_str().unwrap()) && e.contains("corrupt or truncated"), "{e}");
    assert_eq!(std::fs::read_to_string(&db).unwrap(), "{\"format\":1,\"ports\":[{\"name\":\"a\",");
}

#[test]
fn bad_commands_are_refused_by_name_while_forwarding_goes_on() {
    let d = Daemon::start();
    d.ok(&["port", "add", "a", "net_null0"]); // generates traffic
    d.ok(&["port", "add", "b", "net_null1,no-rx=1"]);
    d.ok(&["xconnect", "add", "a", "b"]);
    let state_before = std::fs::read_to_string(&d.db).unwrap();
    let journal = d.db.with_file_name("conf.json.journal");
    let journal_before = std::fs::read(&journal).unwrap();
    let forwarded = || d.counter("b", "tx_packets");
    let start = forwarded();

    let cases: &[(&[&str], &str)] = &[
        (&["port", "add", "x", "net_foo0"], "no DPDK driver or bus knows that device name"),
        (&["port", "add", "x", ""], "devargs"),
        (&["port", "add", "x", ",rx_pcap=/tmp/a"], "must start with a device name"),
        (&["port", "add", "x", "net_pcap9 rx"], "whitespace"),
        (&["port", "add", "x", "net_pcap9,rx_pcap=/nonexistent/in.pcap"], "Couldn't open /nonexistent/in.pcap"),
        (&["port", "add", "a", "net_null5"], "a port named \"a\" already exists"),
        (&["port", "add", "c", "net_null0"], "device \"net_null0\" is already used by port \"a\""),
        (&["port", "add", "bad name", "net_null5"], "port name \"bad name\""),
        (&["port", "add", "x", "net_null5", "--queues", "0"], "queues: 0 is out of range"),
        (&["port", "add", "x", "net_null5", "--cores", "0"], "lcore 0 is not a PMD lcore"),
        (&["port", "add", "x", "net_null5", "--mtu", "20"], "mtu: 20 is out of range"),
        (&["port", "del", "a"], "cross-connected"),
        (&["port", "del", "nosuch"], "no port named \"nosuch\""),
        (&["port", "stats", "nosuch"], "no port named \"nosuch\""),
        (&["xconnect", "add", "a", "nosuch"], "b: no port named \"nosuch\""),
        (&["xconnect", "add", "b", "a"], "already cross-connected"),
        (&["xconnect", "del", "nosuch"], "has no cross-connect"),
    ];
    for (args, want) in cases {
        let e = d.err(args);
        assert!(e.contains(want), "vswitchctl {args:?}: expected {want:?} in {e:?}");
    }
    // Nothing refused left a trace in the desired state, and no device stayed attached.
    assert_eq!(std::fs::read_to_string(&d.db).unwrap(), state_before);
    assert_eq!(std::fs::read(&journal).unwrap(), journal_before, "no journal record for a refused change");
    d.ok(&["port", "add", "x", "net_pcap9,tx_pcap=/dev/null"]);
    d.ok(&["port", "del", "x"]);

    // Abusive clients: garbage, an oversized line, and one that says nothing.
    let idle = UnixStream::connect(&d.socket).unwrap();
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.write_all(b"garbage\n").unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains("\"ok\":false") && line.contains("not valid JSON"), "{line}");
    s.write_all(b"{\"version\":1,\"request\":{\"cmd\":\"show\"}}\n").unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    assert!(line.contains("\"ok\":true"), "the same connection still works: {line}");
    s.write_all(&vec![b'x'; (1 << 20) + 10]).unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    assert!(line.contains("longer than"), "{line}");
    assert!(d.ctl(&["show"]).status.success(), "a silent client stalls nobody");
    drop(idle);

    assert!(wait_until(Duration::from_secs(5), || forwarded() > start + 1000), "the a->b pair kept forwarding");
    assert_eq!(d.port_stats("b")["drops"], serde_json::json!({}));
}
