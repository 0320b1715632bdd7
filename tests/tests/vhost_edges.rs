//! vhost-user at the edges: guests killed with SIGKILL in the middle of their traffic
//! and started again, over and over, with the switch as server and as client; the
//! switch killed and restarted under guests that serve their own sockets (client mode)
//! and must be reconnected to. The guest is dpdk-testpmd with a virtio-user port. After
//! each ordeal the port carries exactly what a fresh guest sends, and no buffer is lost.
use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    time::Duration,
};
use vswitch_tests::*;

/// dpdk-testpmd as a guest on one virtio-user port.
struct Guest {
    child: Child,
    stdin: ChildStdin,
}

impl Guest {
    /// `serves`: the guest makes the socket (virtio-user server mode) and the switch's
    /// port connects to it (`client=1`).
    fn start(sock: &Path, serves: bool) -> Guest {
        let prefix = unique("guest");
        // A ring of 1,024: a counted send fits even while the switch has not polled yet.
        let vdev = format!(
            "net_virtio_user0,path={},queue_size=1024{}",
            sock.display(),
            if serves { ",server=1" } else { "" }
        );
        let mut child = Command::new("dpdk-testpmd")
            .args(["--no-huge", "-m", "256", "--no-pci", "--file-prefix", &prefix])
            // Both testpmd lcores on CPU 0: CPU 1 is the switch's PMD core.
            .args(["--lcores", "0@0,1@0", "--vdev", &vdev])
            .args(["--", "-i", "--total-num-mbufs=8192", "--forward-mode=txonly", "--burst=32"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dpdk-testpmd (apt-get install dpdk)");
        let stdin = child.stdin.take().unwrap();
        Guest { child, stdin }
    }

    fn say(&mut self, line: &str) {
        let _ = writeln!(self.stdin, "{line}");
    }

    /// SIGKILL: the guest gets no chance to tell the switch.
    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port's link as `port list` says it ("" if the port is gone).
fn link(d: &Daemon, port: &str) -> String {
    let ports = d.json(&["port", "list"]);
    let p = ports.as_array().unwrap().iter().find(|p| p["name"] == port).cloned().unwrap_or_default();
    p["state"].as_str().unwrap_or("").to_string()
}

/// A switch with guest port `vm` (server or client side) cross-connected to a null
/// port that counts what leaves.
fn switch_with_guest_port(client: bool) -> (Daemon, PathBuf) {
    let d = Daemon::start();
    let sock = d.dir.path("vm.sock");
    let client = if client { ",client=1" } else { "" };
    d.ok(&["port", "add", "vm", &format!("net_vhost0,iface={}{client}", sock.display())]);
    d.ok(&["port", "add", "out", "net_null0,no-rx=1"]);
    d.ok(&["xconnect", "add", "vm", "out"]);
    (d, sock)
}

/// Once the port is up: single bursts until one crosses (a guest that just connected,
/// or was reconnected to, may still be setting its rings up and drops what does not
/// fit), then exactly 8 bursts of 32, which must all cross, neither more nor fewer.
/// (testpmd's tx_first drops what its ring cannot take at once; 256 frames fit even at
/// two descriptors a frame.)
fn exact_count_crosses(d: &Daemon, g: &mut Guest, what: &str) {
    assert!(wait_until(Duration::from_secs(30), || link(d, "vm") == "up"), "{what}: not up: {}", d.log_tail());
    let probe = d.counter("vm", "rx_packets");
    let live = wait_until(Duration::from_secs(20), || {
        g.say("stop");
        g.say("start tx_first 1");
        std::thread::sleep(Duration::from_millis(100));
        d.counter("vm", "rx_packets") > probe
    });
    assert!(live, "{what}: nothing the guest sends arrives: {}", d.log_tail());
    g.say("stop");
    d.settle();
    let (rx0, tx0) = (d.counter("vm", "rx_packets"), d.counter("out", "tx_packets"));
    g.say("start tx_first 8");
    let want = 8 * 32;
    let arrived = wait_until(Duration::from_secs(20), || d.counter("out", "tx_packets") >= tx0 + want);
    std::thread::sleep(Duration::from_millis(300));
    assert!(arrived, "{what}: {}", d.port_stats("vm"));
    assert_eq!(d.counter("vm", "rx_packets") - rx0, want, "{what}");
    assert_eq!(d.counter("out", "tx_packets") - tx0, want, "{what}");
    g.say("stop");
}

/// Guests killed mid-traffic and started again: each time the port goes down and comes
/// back, the switch answers throughout, and at the end a fresh guest's packets all cross
/// and every buffer is back in the pool.
fn guests_killed_and_restarted(client: bool) {
    let (d, sock) = switch_with_guest_port(client);
    let free_before = d.mempool_available();
    for round in 0..6 {
        let mut g = Guest::start(&sock, client);
        let up = wait_until(Duration::from_secs(30), || link(&d, "vm") == "up");
        assert!(up, "round {round}: the guest never came up: {}", d.log_tail());
        let before = d.counter("vm", "rx_packets");
        g.say("start");
        let flowing = wait_until(Duration::from_secs(20), || d.counter("vm", "rx_packets") > before + 100_000);
        assert!(flowing, "round {round}: no traffic from the guest: {}", d.port_stats("vm"));
        g.kill9();
        let down = wait_until(Duration::from_secs(10), || link(&d, "vm") == "down");
        assert!(down, "round {round}: the port still reads up with its guest dead ({})", link(&d, "vm"));
        assert!(d.ok(&["show"]).contains("vswitchd"), "round {round}: the switch answers");
        if client {
            // What QEMU does before serving a socket again: the dead guest's is stale.
            let _ = std::fs::remove_file(&sock);
        }
    }
    let mut g = Guest::start(&sock, client);
    g.say("set fwd rxonly");
    exact_count_crosses(&d, &mut g, "a fresh guest after 6 were killed");
    drop(g);
    d.settle();
    assert_eq!(d.mempool_available(), free_before, "every buffer is back after 6 guests were killed");
    assert!(d.log_text().lines().all(|l| !l.contains("panicked")), "{}", d.log_tail());
}

#[test]
fn guests_killed_mid_traffic_and_restarted_switch_as_server() {
    guests_killed_and_restarted(false);
}

#[test]
fn guests_killed_mid_traffic_and_restarted_switch_as_client() {
    guests_killed_and_restarted(true);
}

/// Guests that serve their own sockets outlive the switch: killed with SIGKILL and
/// stopped cleanly, it comes back from its state file, connects to the running guest
/// again, and the guest's packets cross.
#[test]
fn client_mode_guests_are_reconnected_after_the_switch_restarts() {
    let (mut d, sock) = switch_with_guest_port(true);
    let mut g = Guest::start(&sock, true);
    assert!(wait_until(Duration::from_secs(30), || link(&d, "vm") == "up"), "{}", d.log_tail());
    g.say("set fwd rxonly");
    exact_count_crosses(&d, &mut g, "before any restart");
    for (how, round) in [("SIGKILL", 0), ("SIGTERM", 1), ("SIGKILL", 2)] {
        if how == "SIGKILL" {
            d.kill9();
            d.start_again();
        } else {
            d.restart();
        }
        exact_count_crosses(&d, &mut g, &format!("round {round}, after {how}"));
    }
}

/// A guest that lies in its descriptors (`tests/py/lying_guest.py`, a raw vhost-user
/// driver): buffers outside its memory, lengths past its end, chains that loop or run
/// past the ring, indirect tables of the wrong size, frames shorter than their header,
/// offload offsets outside the frame; on both rings, one connection per lie. The switch
/// lives through all of it, and what leaves it from that guest is only the guest's
/// honest frames, byte for byte; every buffer is back at the end.
#[test]
fn a_guest_that_lies_in_its_descriptors_harms_only_itself() {
    let d = Daemon::start();
    let sock = d.dir.path("liar.sock");
    let (feed, out) = (d.dir.path("feed.pcap"), d.dir.path("out.pcap"));
    // The guest and a pcap port in one network, through the whole pipeline: frames
    // toward the guest without end (its receive ring is written to), and the guest's
    // frames (to a MAC nobody has) flooded out to the pcap.
    python("gen_flows.py", &[feed.to_str().unwrap(), "4", "10"]);
    d.ok(&["network", "add", "100"]);
    d.ok(&["port", "add", "vm", &format!("net_vhost0,iface={}", sock.display()), "--role", "vm", "--vni", "100"]);
    let pcap = format!("net_pcap0,rx_pcap={},tx_pcap={},infinite_rx=1", feed.display(), out.display());
    d.ok(&["port", "add", "out", &pcap, "--role", "vm", "--vni", "100"]);
    let report = python("lying_guest.py", &[sock.to_str().unwrap()]);
    let cases: Vec<serde_json::Value> = report.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(d.ok(&["show"]).contains("vswitchd"), "the switch lives");
    let vm = d.port_stats("vm");
    d.ok(&["port", "del", "out"]); // closing the pcap port writes the file out
    d.settle();
    let pool = &d.json(&["stats"])["mempool"];
    assert_eq!(pool["in_use"], 0, "every buffer is back, the feed stopped: {pool} {vm}");
    assert!(d.log_text().lines().all(|l| !l.contains("panicked")), "{}", d.log_tail());

    // The last guest was honest, on both rings: all it sent left, and its receive
    // buffers were filled within their lengths. Every lie was taken back or left the
    // ring stalled (that guest's own loss); no buffer was filled past its length.
    let honest = cases.last().unwrap();
    assert_eq!((honest["case"].as_str(), honest["tx_taken"].as_u64()), (Some("honest"), Some(4)), "{honest}");
    assert_eq!(honest["rx_filled"], honest["rx_posted"], "{honest}");
    for c in &cases {
        assert!(c.get("rx_bad_used").is_none(), "a receive buffer filled past what the guest gave: {c}");
    }
    // What left the switch from the liar: whole frames with good checksums, each one a
    // frame the guest really wrote (its honest ones by their own port, or the frame a
    // lie wrapped: UDP to port 1, TCP to port 80), honest ones once each. (A TCP frame
    // whose header asked for its checksum leaves with it computed.)
    let frames = tshark_fields(
        &out,
        &[
            "frame.len",
            "ip.checksum.status",
            "udp.checksum.status",
            "tcp.checksum.status",
            "udp.dstport",
            "tcp.dstport",
            "_ws.malformed",
            "eth.src",
        ],
    );
    let mut seen = std::collections::BTreeMap::<u64, u32>::new();
    for f in frames.iter().filter(|f| f.ends_with("02:00:00:00:00:aa")) {
        let v: Vec<&str> = f.split('|').collect();
        let whole = matches!(&v[..4], ["60", "2", "2", ""] | ["154", "2", "", "2"]);
        assert!(whole && v[6].is_empty(), "a whole frame with checksums tshark finds good: {f}");
        *seen.entry(format!("{}{}", v[4], v[5]).parse().unwrap()).or_default() += 1;
    }
    let sent: std::collections::BTreeSet<u64> =
        cases.iter().flat_map(|c| c["honest_ports"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap())).collect();
    for (port, n) in &seen {
        let lie = *port == 1 || *port == 80;
        assert!(lie || sent.contains(port), "port {port} is no frame the guest wrote: {seen:?}");
        assert!(lie || *n == 1, "port {port} left {n} times");
    }
    for p in honest["honest_ports"].as_array().unwrap() {
        assert!(seen.contains_key(&p.as_u64().unwrap()), "the honest guest's frame to {p} left: {seen:?}");
    }
    eprintln!("{report}\n{vm}\n{seen:?}");
}
