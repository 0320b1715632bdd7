//! vhost-user: dpdk-testpmd with net_virtio_user is the guest; it sends a known number
//! of packets into our net_vhost port; they come out the cross-connected pcap port,
//! counted by us and decoded by tshark. Both socket roles: the switch as vhost-user
//! server, and as client (`client=1`) to a guest that serves. And the other way round:
//! the switch's port is the virtio side (`net_virtio_user`) of a vhost-user backend.
use serde_json::json;
use std::{
    io::Write,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};
use vswitch_tests::*;

/// Starts testpmd with `peer_vdev`, runs `then` (to add ports that need the peer up
/// first), and has testpmd send `bursts` bursts of 32 into our port `port`.
fn peer_sends(d: &Daemon, port: &str, peer_vdev: &str, bursts: u32, out: &std::path::Path, then: impl FnOnce()) {
    let prefix = unique("guest");
    let mut guest = Command::new("dpdk-testpmd")
        .args(["--no-huge", "-m", "256", "--no-pci", "--file-prefix", &prefix])
        // Both testpmd lcores on CPU 0: CPU 1 is the switch's PMD core.
        .args(["--lcores", "0@0,1@0", "--vdev", peer_vdev])
        .args(["--", "-i", "--total-num-mbufs=8192", "--forward-mode=rxonly", "--burst=32"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dpdk-testpmd (apt-get install dpdk)");
    then();
    let up = wait_until(Duration::from_secs(30), || {
        d.json(&["port", "list"]).as_array().unwrap().iter().any(|p| p["name"] == port && p["state"] == "up")
    });
    let mut stdin = guest.stdin.take().unwrap();
    let expected = u64::from(bursts) * 32;
    let arrived = up && {
        writeln!(stdin, "start tx_first {bursts}").unwrap();
        wait_until(Duration::from_secs(30), || d.counter("out", "tx_packets") >= expected)
    };
    let _ = writeln!(stdin, "stop");
    let _ = writeln!(stdin, "quit");
    drop(stdin);
    let o = guest.wait_with_output().unwrap();
    let guest_log = String::from_utf8_lossy(&o.stdout);
    assert!(up, "the guest never brought {port} up:\n{guest_log}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(arrived, "packets did not arrive: {}\n{guest_log}", d.port_stats("out"));
    assert!(guest_log.contains(&format!("TX-packets: {expected}")), "testpmd sent {expected}:\n{guest_log}");
    // Exactly what the guest sent: not one more, not one less.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.counter(port, "rx_packets"), expected);
    assert_eq!(d.counter("out", "tx_packets"), expected);
    assert_eq!(d.port_stats(port)["drops"], serde_json::json!({}));

    d.ok(&["xconnect", "del", port]);
    d.ok(&["port", "del", "out"]); // closing the pcap port writes the file out
    let frames = tshark_fields(out, &["frame.len", "ip.src", "udp.srcport"]);
    assert_eq!(frames.len() as u64, expected, "tshark counts what the guest sent");
    assert!(frames.iter().all(|f| f.starts_with("64|198.18.0.1|")), "testpmd txonly frames: {:?}", &frames[..3]);
}

#[test]
fn guest_packets_cross_a_vhost_user_port_switch_as_server() {
    let d = Daemon::start();
    let sock = d.dir.path("vm1.sock");
    let out = d.dir.path("out.pcap");
    d.ok(&["port", "add", "vm1", &format!("net_vhost0,iface={}", sock.display())]);
    d.ok(&["port", "add", "out", &format!("net_pcap0,tx_pcap={}", out.display())]);
    d.ok(&["xconnect", "add", "vm1", "out"]);
    peer_sends(&d, "vm1", &format!("net_virtio_user0,path={}", sock.display()), 8, &out, || ());
}

#[test]
fn guest_packets_cross_a_vhost_user_port_switch_as_client() {
    let d = Daemon::start();
    let sock = d.dir.path("vm2.sock");
    let out = d.dir.path("out.pcap");
    d.ok(&["port", "add", "vm2", &format!("net_vhost1,iface={},client=1", sock.display())]);
    d.ok(&["port", "add", "out", &format!("net_pcap1,tx_pcap={}", out.display())]);
    d.ok(&["xconnect", "add", "vm2", "out"]);
    peer_sends(&d, "vm2", &format!("net_virtio_user0,path={},server=1", sock.display()), 5, &out, || ());
}

#[test]
fn a_virtio_user_port_receives_from_a_vhost_user_backend() {
    let d = Daemon::start();
    let sock = d.dir.path("backend.sock");
    let out = d.dir.path("out.pcap");
    d.ok(&["port", "add", "out", &format!("net_pcap2,tx_pcap={}", out.display())]);
    peer_sends(&d, "vu", &format!("net_vhost0,iface={}", sock.display()), 3, &out, || {
        assert!(wait_until(Duration::from_secs(20), || sock.exists()), "testpmd never made {}", sock.display());
        d.ok(&["port", "add", "vu", &format!("net_virtio_user0,path={}", sock.display())]);
        d.ok(&["xconnect", "add", "vu", "out"]);
    });
}

/// A guest on two vhost-user ports: dpdk-testpmd with a virtio-user port on each
/// socket, forwarding each port's frames out of the other. With `offloads` it asks for
/// checksum offload and TSO both ways (LRO on receive, TSO on send) and forwards in its
/// checksum engine, which hands the offloads on (and sets the destination MAC to the
/// port's `--eth-peer`): TCP crosses it in 64 KB frames. Without, it negotiates none
/// and forwards frames untouched (`io`): the checksums the switch computed for it reach
/// the kernels at the ends as they are.
fn forwarding_guest(socks: [&Path; 2], peers: [&str; 2], offloads: bool) -> Child {
    let prefix = unique("guest");
    let vdev = |i: usize| format!("net_virtio_user{i},path={},queue_size=1024", socks[i].display());
    let mut args = vec!["--no-huge", "-m", "1024", "--no-pci", "--file-prefix", &prefix, "--lcores", "0@0,1@0"];
    let (v0, v1) = (vdev(0), vdev(1));
    let mode = if offloads { "--forward-mode=csum" } else { "--forward-mode=io" };
    args.extend(["--vdev", &v0, "--vdev", &v1, "--", "-i", mode, "--total-num-mbufs=65536"]);
    let (p0, p1) = (format!("--eth-peer=0,{}", peers[0]), format!("--eth-peer=1,{}", peers[1]));
    args.extend([p0.as_str(), p1.as_str()]);
    if offloads {
        // Rx: UDP and TCP checksums, LRO. Tx: the same checksums, TSO, chained mbufs.
        args.extend(["--rx-offloads=0x1c", "--tx-offloads=0x802c"]);
    }
    let mut guest = Command::new("dpdk-testpmd")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dpdk-testpmd (apt-get install dpdk)");
    let stdin = guest.stdin.as_mut().unwrap();
    let mut script = String::new();
    if offloads {
        script += "port stop all\n";
        for p in 0..2 {
            script += &format!("csum set ip sw {p}\ncsum set tcp hw {p}\ncsum set udp hw {p}\ntso set 1448 {p}\n");
        }
        script += "port start all\n";
    }
    script += "start\n";
    stdin.write_all(script.as_bytes()).unwrap();
    guest
}

/// TCP between two namespaces whose only path is through a guest on two vhost-user
/// ports: c1 (tap) - network 100 - vm1 = guest = vm2 - network 200 - c2 (veth).
fn tcp_through_a_guest(offloads: bool) {
    let d = Daemon::start();
    d.ok(&["network", "add", "100"]);
    d.ok(&["network", "add", "200"]);
    let socks = [d.dir.path("vm1.sock"), d.dir.path("vm2.sock")];
    d.ok(&["port", "add", "vm1", &format!("net_vhost0,iface={}", socks[0].display()), "--role", "vm", "--vni", "100"]);
    d.ok(&["port", "add", "vm2", &format!("net_vhost1,iface={}", socks[1].display()), "--role", "vm", "--vni", "200"]);
    let c1 = TapVm::kernel(&d, "c1", "10.62.0.1/24", &["--role", "vm", "--vni", "100"]);
    let c2 = TapVm::veth(&d, "c2", "10.62.0.2/24", &["--role", "vm", "--vni", "200"]);
    c1.neigh("10.62.0.2", &c2.mac());
    c2.neigh("10.62.0.1", &c1.mac());
    let mut guest = forwarding_guest([&socks[0], &socks[1]], [&c1.mac(), &c2.mac()], offloads);
    let up = wait_until(Duration::from_secs(30), || {
        let ports = d.json(&["port", "list"]);
        ports
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"].as_str().unwrap().starts_with("vm"))
            .all(|p| p["state"] == "up")
    });
    // The guest restarts its ports with the offloads set: its link may flap first.
    wait_until(Duration::from_secs(20), || c1.ns.exec(&["ping", "-c", "1", "-W", "1", "10.62.0.2"]).status.success());
    let ping = c1.ns.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.62.0.2"]);
    let quit = |guest: &mut Child| {
        let _ = guest.stdin.as_mut().unwrap().write_all(b"stop\nquit\n");
        let _ = guest.wait();
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(guest.stdout.as_mut().unwrap(), &mut out);
        let _ = std::io::Read::read_to_string(guest.stderr.as_mut().unwrap(), &mut out);
        out
    };
    if !up || !ping.status.success() {
        panic!("guest up {up}, ping {}\n{}", String::from_utf8_lossy(&ping.stdout), quit(&mut guest));
    }
    // One 60,000-byte TSO frame (1398-byte segments) into network 100 goes to the guest
    // whole if it negotiated TSO, as 43 segments if not, and comes back as one frame
    // or the 43.
    let inject = Veth::new("gi");
    run_ok("sysctl", &["-qw", &format!("net.ipv6.conf.{}.disable_ipv6=1", inject.peer)]);
    d.ok(&["port", "add", "inj", &format!("kernel:iface={}", inject.host), "--role", "vm", "--vni", "100"]);
    d.settle();
    let before = (d.counter("vm1", "tx_packets"), d.counter("vm2", "rx_packets"));
    python("vnet.py", &["send", &inject.peer, "02:00:00:07:00:09", "60000", "1398"]);
    let wanted = if offloads { 1 } else { 43 };
    let arrived = wait_until(Duration::from_secs(5), || d.counter("vm2", "rx_packets") >= before.1 + wanted);
    std::thread::sleep(Duration::from_millis(300));
    let after = (d.counter("vm1", "tx_packets"), d.counter("vm2", "rx_packets"));
    if !arrived || after.0 - before.0 != wanted || after.1 - before.1 != wanted {
        panic!("{before:?} -> {after:?}, {wanted} wanted each way\n{}", quit(&mut guest));
    }
    d.ok(&["port", "del", "inj"]);
    // What the guest negotiated shows in `port list`.
    let wanted = if offloads { json!(["csum", "tso4", "tso6"]) } else { json!([]) };
    for p in
        d.json(&["port", "list"]).as_array().unwrap().iter().filter(|p| p["name"].as_str().unwrap().starts_with("vm"))
    {
        assert_eq!(p["offloads"], wanted, "{}", p["name"]);
    }
    let pool_before = d.mempool_available();
    vswitch_tests::tcp::tcp_both_ways(
        (&c1.ns, "10.62.0.1"),
        (&c2.ns, "10.62.0.2"),
        &[&[], &["-R"]],
        (50_000_000, 1),
        (20_000_000, 2),
    );
    let log = quit(&mut guest);
    // Frames toward the guest left whole only if it asked for them, and what the
    // guest sent came back whole only if it negotiated TSO.
    for port in ["vm1", "vm2"] {
        let (rx, tx) = d.bytes_per_frame(port);
        if offloads {
            assert!(
                rx > 8000 && tx > 8000,
                "{port}: {rx} bytes a frame in, {tx} out: TSO did not cross the guest\n{log}"
            );
        } else {
            assert!(
                rx <= 1514 && tx <= 1514,
                "{port}: {rx} bytes a frame in, {tx} out: a guest without TSO got a large frame"
            );
        }
        let drops = d.port_stats(port)["drops"].as_object().unwrap().clone();
        assert!(drops.keys().all(|k| k == "tx_full"), "{port}: unexpected drops {drops:?}");
    }
    d.assert_no_mbuf_leak(pool_before);
}

#[test]
fn tcp_crosses_a_guest_that_negotiated_checksum_and_tso_in_large_frames() {
    tcp_through_a_guest(true);
}

#[test]
fn tcp_crosses_a_guest_without_offloads_in_checksummed_segments() {
    tcp_through_a_guest(false);
}
