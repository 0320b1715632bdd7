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
        // A ring of 1,024: the 640 packets of a counted send fit even while the switch
        // has not polled yet (testpmd's tx_first drops what does not fit).
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
/// fit), then exactly 20 bursts of 32, which must all cross, neither more nor fewer.
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
    g.say("start tx_first 20");
    let want = 20 * 32;
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
