//! vhost-user: dpdk-testpmd with net_virtio_user is the guest; it sends a known number
//! of packets into our net_vhost port; they come out the cross-connected pcap port,
//! counted by us and decoded by tshark. Both socket roles: the switch as vhost-user
//! server, and as client (`client=1`) to a guest that serves. And the other way round:
//! the switch's port is the virtio side (`net_virtio_user`) of a vhost-user backend.
use std::{
    io::Write,
    process::{Command, Stdio},
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
