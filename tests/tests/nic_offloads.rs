//! A NIC's offloads. The switch's `net_virtio_user` port is a virtio NIC (what a VM's
//! NIC is) whose other end is the switch's own vhost-user port: a cable between
//! network 100 and network 200. TCP between a container in each crosses it. The
//! kernels at both ends judge the result (bytes, content, checksum errors).
use serde_json::json;
use std::time::Duration;
use vswitch_tests::*;

/// c1 (tap) - network 100 - nic (virtio) = vm (vhost-user) - network 200 - c2 (veth).
/// With `tso`, the vhost end offers TSO and the NIC's 64 KB frames leave whole; without,
/// the NIC takes checksums only, large frames are cut in software before it, and their
/// segments are coalesced again on their way to c2.
fn tcp_across_a_virtio_nic(tso: bool) {
    let d = Daemon::start();
    d.ok(&["network", "add", "100"]);
    d.ok(&["network", "add", "200"]);
    let c1 = TapVm::kernel(&d, "c1", "10.63.0.1/24", &["--role", "vm", "--vni", "100"]);
    let c2 = TapVm::veth(&d, "c2", "10.63.0.2/24", &["--role", "vm", "--vni", "200"]);
    c1.neigh("10.63.0.2", &c2.mac());
    c2.neigh("10.63.0.1", &c1.mac());
    d.settle();
    // The NIC's rings hold mbufs of the switch's pool while it runs: counted with
    // both ends of the cable gone.
    let pool_before = d.mempool_available();
    let sock = d.dir.path("cable.sock");
    let vhost = format!("net_vhost0,iface={}{}", sock.display(), if tso { "" } else { ",tso=0" });
    d.ok(&["port", "add", "vm", &vhost, "--role", "vm", "--vni", "200"]);
    d.ok(&["port", "add", "nic", &format!("net_virtio_user0,path={}", sock.display()), "--role", "vm", "--vni", "100"]);
    let up = wait_until(Duration::from_secs(20), || {
        d.json(&["port", "list"]).as_array().unwrap().iter().filter(|p| p["name"] == "vm").all(|p| p["state"] == "up")
    });
    assert!(up, "the virtio NIC never attached: {}", d.log_tail());
    let ports = d.json(&["port", "list"]);
    let nic = ports.as_array().unwrap().iter().find(|p| p["name"] == "nic").unwrap();
    let wanted = if tso { json!(["csum", "tso4", "tso6"]) } else { json!(["csum"]) };
    assert_eq!(nic["offloads"], wanted, "what the NIC does itself: {nic}");
    let ping = c1.ns.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.63.0.2"]);
    assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stdout));

    vswitch_tests::tcp::tcp_both_ways(
        (&c1.ns, "10.63.0.1"),
        (&c2.ns, "10.63.0.2"),
        &[&[], &["-R"]],
        (50_000_000, 1),
        (20_000_000, 2),
    );
    let (rx, tx) = d.bytes_per_frame("nic");
    if tso {
        // Out: the NIC's TSO. In: its peer's TSO, handed over whole.
        assert!(rx > 8000 && tx > 8000, "{rx} bytes a frame in, {tx} out: the NIC's TSO was not used");
    } else {
        assert!(tx <= 1514, "{tx} bytes a frame out of a NIC without TSO");
        // Its segments reach the vhost-user end at that size, and container 2's port
        // takes TSO: they leave to it coalesced (GRO).
        let (vm_rx, _) = d.bytes_per_frame("vm");
        let (_, c2_tx) = d.bytes_per_frame("c2");
        assert!(vm_rx <= 1514 && c2_tx > 8000, "{vm_rx} bytes a frame in at vm, {c2_tx} out to c2: no GRO");
    }
    for port in ["nic", "vm"] {
        // A flood before c2 was there found no port.
        let drops = d.port_stats(port)["drops"].as_object().unwrap().clone();
        assert!(drops.keys().all(|k| k == "tx_full" || k == "flood_empty"), "{port}: unexpected drops {drops:?}");
    }
    d.ok(&["port", "del", "nic"]);
    d.ok(&["port", "del", "vm"]);
    d.assert_no_mbuf_leak(pool_before);
}

#[test]
fn tcp_leaves_a_virtio_nic_in_64k_frames_its_tso_cuts() {
    tcp_across_a_virtio_nic(true);
}

#[test]
fn tcp_leaves_a_nic_without_tso_in_segments_it_checksums() {
    tcp_across_a_virtio_nic(false);
}

/// On hugepages a virtio-user port shares the switch's memory with its vhost-user end
/// by file descriptor, at most 8: with a file per page (vswitchd's default) the port
/// add is refused and says what to do; with `--single-file-segments` frames cross.
#[test]
fn on_hugepages_a_virtio_nic_needs_single_file_segments_and_says_so() {
    let cable = |d: &Daemon| {
        let sock = d.dir.path("cable.sock");
        d.ok(&["port", "add", "vm", &format!("net_vhost0,iface={}", sock.display())]);
        d.ctl(&["port", "add", "nic", &format!("net_virtio_user0,path={}", sock.display())])
    };
    let d = Daemon::start_with(DaemonOpts { hugepages: true, ..Default::default() });
    let refused = cable(&d);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && said.contains("--single-file-segments"), "{said}");
    assert!(d.json(&["port", "list"]).as_array().unwrap().iter().all(|p| p["name"] != "nic"), "no NIC left behind");
    drop(d);

    let opts = DaemonOpts { hugepages: true, eal: vec!["--single-file-segments".into()], ..Default::default() };
    let d = Daemon::start_with(opts);
    assert!(cable(&d).status.success());
    let pcap = d.dir.path("in.pcap");
    // 4 flows, 10+20+30+40 frames.
    python("gen_flows.py", &[pcap.to_str().unwrap(), "4", "10"]);
    // Replayed until the cross-connect is there.
    d.ok(&["port", "add", "gen", &format!("net_pcap0,rx_pcap={},infinite_rx=1", pcap.display())]);
    d.ok(&["xconnect", "add", "gen", "nic"]);
    assert!(
        wait_until(Duration::from_secs(10), || d.counter("vm", "rx_packets") >= 100),
        "frames from the NIC reach its vhost-user end: {}",
        d.port_stats("vm")
    );
}
