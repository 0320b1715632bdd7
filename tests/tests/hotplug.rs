//! Hot-plug under traffic: while a tap pair forwards a numbered UDP stream between two
//! namespaces, ports of four drivers are added and deleted 100 times. Nothing crashes,
//! the stream loses nothing, and every mbuf returns to the pool.
use std::{fs, time::Duration};
use vswitch_tests::*;

#[test]
fn add_and_delete_ports_100_times_while_a_pair_forwards() {
    let d = Daemon::start();
    let vm1 = TapVm::add(&d, "vm1", "10.99.1.1/24");
    let vm2 = TapVm::add(&d, "vm2", "10.99.1.2/24");
    d.ok(&["xconnect", "add", "vm1", "vm2"]);
    // Static neighbours: the stream needs no ARP while ports come and go.
    vm1.neigh("10.99.1.2", &vm2.mac());
    vm2.neigh("10.99.1.1", &vm1.mac());
    let (ns1, ns2) = (&vm1.ns, &vm2.ns);
    // Let IPv6 DAD and router solicitations settle, then take the pool's level.
    std::thread::sleep(Duration::from_secs(1));
    let pool_before = d.mempool_available();
    // Frames the kernel sent before the cross-connect existed were rightly dropped;
    // what counts is that none is dropped from here on.
    let drops_before = (d.port_stats("vm1")["drops"].clone(), d.port_stats("vm2")["drops"].clone());

    let small = d.dir.path("small.pcap");
    python("gen_varied.py", &[small.to_str().unwrap(), "50", "1"]);
    let stop = d.dir.path("stop");
    let py = |s: &str| format!("{}/py/{s}", env!("CARGO_MANIFEST_DIR"));
    let receiver = ns2.spawn(&[PYTHON, &py("udp_count.py"), "10.99.1.2", "9000", "3"]);
    std::thread::sleep(Duration::from_millis(300));
    let sender = ns1.spawn(&[PYTHON, &py("udp_send.py"), "10.99.1.2", "9000", "4000", stop.to_str().unwrap()]);

    for i in 0..100 {
        let name = format!("hot{i}");
        let devargs = match i % 4 {
            0 => format!("net_nullhp{i}"), // generates packets on rx: all dropped, all freed
            1 => format!("net_ringhp{i}"),
            2 => format!("net_taphp{i},iface={}", unique("hpx")),
            _ => format!(
                "net_pcaphp{i},rx_pcap={},tx_pcap={}",
                small.display(),
                d.dir.path(&format!("o{i}.pcap")).display()
            ),
        };
        d.ok(&["port", "add", &name, &devargs]);
        if i % 10 == 9 {
            std::thread::sleep(Duration::from_millis(50));
        }
        d.ok(&["port", "del", &name]);
    }
    fs::write(&stop, "").unwrap();
    let sent: u64 = String::from_utf8_lossy(&sender.wait_with_output().unwrap().stdout).trim().parse().unwrap();
    let received: u64 = String::from_utf8_lossy(&receiver.wait_with_output().unwrap().stdout).trim().parse().unwrap();
    assert!(sent > 1000, "the stream ran: {sent}");
    assert_eq!(received, sent, "the forwarding pair lost packets during hot-plug");

    let (a, b) = (d.port_stats("vm1"), d.port_stats("vm2"));
    assert_eq!((a["drops"].clone(), b["drops"].clone()), drops_before, "no drop during hot-plug: {a} {b}");
    assert!(a["rx_packets"].as_u64().unwrap() >= sent);
    d.assert_conserved("vm1", "vm2");
    assert_eq!(d.json(&["port", "list"]).as_array().unwrap().len(), 2, "only the pair is left");
    assert!(
        wait_until(Duration::from_secs(5), || d.mempool_available() == pool_before),
        "mbuf leak: {} free before, {} after",
        pool_before,
        d.mempool_available()
    );
}
