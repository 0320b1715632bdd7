//! Stateful security groups: "allow outbound, deny inbound" on a container's port with
//! real stacks at both ends, the two directions of each connection polled by two
//! different PMD cores. The kernels' TCP, ping and iperf3 are the judges; the switch's
//! own session list must agree with what crossed.
use serde_json::Value;
use std::time::Duration;
use vswitch_tests::tcp::iperf3;
use vswitch_tests::*;

/// c1 (vm1, PMD lcore 1) and c2 (vm2, PMD lcore 2) in VNI 100, with static neighbours (a
/// port whose default is deny drops ARP too); vm2 may open connections and nothing may
/// open one to it.
fn two_containers(d: &Daemon, stateful: &[&str]) -> (TapVm, TapVm) {
    d.ok(&["network", "add", "100"]);
    let c1 = TapVm::kernel(d, "vm1", "10.63.0.1/24", &["--role", "vm", "--vni", "100", "--cores", "1"]);
    let c2 = TapVm::veth(d, "vm2", "10.63.0.2/24", &["--role", "vm", "--vni", "100", "--cores", "2"]);
    c1.neigh("10.63.0.2", &c2.mac());
    c2.neigh("10.63.0.1", &c1.mac());
    d.ok(&["acl", "add", "--id", "10", "--priority", "10", "--port", "vm2", "--dir", "in", "--action", "allow"]);
    d.ok(&["acl", "default", "vm2", "deny"]);
    let mut args = vec!["acl", "stateful", "vm2", "on"];
    args.extend_from_slice(stateful);
    d.ok(&args);
    (c1, c2)
}

fn daemon() -> Daemon {
    Daemon::start_with(DaemonOpts { lcores: Some("0@0,1@1,2@0".into()), ..Default::default() })
}

fn ping(from: &TapVm, to: &str, count: &str) -> bool {
    from.ns.exec(&["ping", "-c", count, "-i", "0.2", "-W", "1", to]).status.success()
}

fn drops(d: &Daemon, port: &str, reason: &str) -> u64 {
    d.port_stats(port)["drops"][reason].as_u64().unwrap_or(0)
}

#[test]
fn allow_outbound_deny_inbound_with_real_tcp() {
    let d = daemon();
    let (c1, c2) = two_containers(&d, &[]);
    // The two ports are polled by two cores.
    let ports = d.json(&["port", "list"]);
    let cores = |name: &str| {
        ports.as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()["rx_queues"][0]["lcore"].as_u64()
    };
    assert_eq!((cores("vm1"), cores("vm2")), (Some(1), Some(2)), "{ports}");
    // (A connection a reset closed is listed for its close timeout, 10 s by default:
    // longer here, so that the list below still holds the first iperf3's.)
    d.ok(&["conntrack", "timeouts", "set", "--tcp-close", "120"]);

    // Out: ping and TCP both ways of the byte stream.
    assert!(ping(&c2, "10.63.0.1", "3"), "vm2's ping out is answered");
    let sent = iperf3(&c1.ns, "10.63.0.1", &c2.ns, &[]);
    let got = iperf3(&c1.ns, "10.63.0.1", &c2.ns, &["-R"]);
    assert!(sent > 10_000_000 && got > 10_000_000, "TCP opened by vm2 carried {sent} and {got} bytes");
    assert_eq!(drops(&d, "vm2", "ct_invalid"), 0, "{} {}", d.port_stats("vm2"), d.json(&["conntrack", "stats"]));

    // In: nothing vm1 opens reaches vm2 (drops count where packets came in).
    let denied = drops(&d, "vm1", "acl_deny_out");
    assert!(!ping(&c1, "10.63.0.2", "2"), "vm1's ping in is refused");
    let mut server = c2.ns.spawn(&["timeout", "3", "iperf3", "-s", "-1", "-B", "10.63.0.2"]);
    std::thread::sleep(Duration::from_millis(400));
    let refused = c1.ns.exec(&["iperf3", "-c", "10.63.0.2", "-t", "1", "--connect-timeout", "1500"]);
    assert!(!refused.status.success(), "vm1's connection to vm2 did not open");
    // timeout ends the server (killing timeout would leave it behind).
    let _ = server.wait();
    assert!(drops(&d, "vm1", "acl_deny_out") >= denied + 3, "{}", d.port_stats("vm1"));

    // The sessions: opened by vm2, seen at vm2's port, the TCP ones closed by now.
    let list = d.json(&["conntrack", "list", "--port", "vm2"]);
    let rows = list.as_array().unwrap();
    let tcp: Vec<&Value> = rows.iter().filter(|r| r["proto"] == "tcp").collect();
    assert!(tcp.len() >= 4, "iperf3's control and data connections: {list}");
    for r in &tcp {
        assert_eq!(
            (r["src"].as_str(), r["dst"].as_str(), r["dport"].as_u64()),
            (Some("10.63.0.2"), Some("10.63.0.1"), Some(5201)),
            "{r}"
        );
        assert!(
            ["TIME_WAIT", "CLOSE", "LAST_ACK", "FIN_WAIT", "CLOSE_WAIT", "ESTABLISHED"]
                .contains(&r["state"].as_str().unwrap()),
            "{r}"
        );
        assert_eq!(r["assured"], true, "{r}");
        assert_eq!(r["ports"][0], "vm2", "{r}");
    }
    let bytes: u64 = tcp.iter().map(|r| r["bytes"].as_u64().unwrap()).sum();
    assert!(bytes >= sent + got, "the sessions counted {bytes} bytes of {}", sent + got);
    assert!(rows.iter().any(|r| r["proto"] == "icmp" && r["state"] == "replied"), "{list}");
    // Nothing from vm1's attempts became a session.
    assert!(rows.iter().all(|r| r["src"] == "10.63.0.2"), "{list}");
    let stats = d.json(&["conntrack", "stats"]);
    assert_eq!(stats["sessions"].as_u64().unwrap() as usize, rows.len(), "{stats}");
    assert!(stats["by_state"].as_object().unwrap().keys().any(|k| k.starts_with("tcp/")), "{stats}");

    // The same sessions by network (the per-port index of every port in VNI 100); none
    // at vm1 (stateless: it opened nothing and answered at no stateful port of its own)
    // nor in another network.
    let by_vni = d.json(&["conntrack", "list", "--vni", "100"]);
    assert_eq!(by_vni.as_array().unwrap().len(), rows.len(), "{by_vni}");
    assert_eq!(d.json(&["conntrack", "list", "--port", "vm1"]), serde_json::json!([]));
    assert_eq!(d.json(&["conntrack", "list", "--vni", "200"]), serde_json::json!([]));
    assert_eq!(d.json(&["conntrack", "flush", "--port", "vm1"])["flushed"], 0);

    // Flushed: gone from the list at once.
    let flushed = d.json(&["conntrack", "flush", "--port", "vm2"]);
    assert_eq!(flushed["flushed"].as_u64().unwrap() as usize, rows.len());
    assert_eq!(d.json(&["conntrack", "list"]), serde_json::json!([]));
}

/// An Ethernet/IPv4/UDP frame (checksums left 0: the stages do not check them).
fn udp_frame(src_mac: &str, dst_mac: &str, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> String {
    let mac = |m: &str| m.split(':').map(|b| u8::from_str_radix(b, 16).unwrap()).collect::<Vec<u8>>();
    let mut f = mac(dst_mac);
    f.extend(mac(src_mac));
    f.extend([0x08, 0x00, 0x45, 0, 0, 29, 0, 1, 0, 0, 64, 17, 0, 0]);
    f.extend(src);
    f.extend(dst);
    f.extend(sport.to_be_bytes());
    f.extend(dport.to_be_bytes());
    f.extend([0, 9, 0, 0, b'x']);
    f.iter().map(|x| format!("{x:02x}")).collect()
}

/// `trace` of an answer names the session it belongs to and the state it is in; the
/// same packet with no session behind it is new and meets the rules.
#[test]
fn trace_shows_the_session_a_packet_belongs_to() {
    let d = daemon();
    let (c1, c2) = two_containers(&d, &[]);
    let send = "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
                s.bind(('10.63.0.2', 4000)); s.sendto(b'x', ('10.63.0.1', 53))";
    assert!(c2.ns.exec(&["python3", "-c", send]).status.success());
    let answer = |sport: u16| udp_frame(&c1.mac(), &c2.mac(), [10, 63, 0, 1], [10, 63, 0, 2], 53, sport);
    let t = d.json(&["trace", "--port", "vm1", "--packet", &answer(4000)]);
    let steps = t["steps"].to_string();
    assert!(steps.contains("conntrack: established (the answering side of a session found)"), "{t}");
    assert!(steps.contains("udp 10.63.0.2:4000 -> 10.63.0.1:53 unreplied, packets 1/0, seen at vm2"), "{t}");
    assert_eq!(t["action"], "tx on port vm2", "{t}");
    let t = d.json(&["trace", "--port", "vm1", "--packet", &answer(4001)]);
    let steps = t["steps"].to_string();
    assert!(steps.contains("conntrack: new (no session)"), "{t}");
    assert!(!steps.contains("session "), "{t}");
    assert_eq!(t["drop_reason"], "acl_deny_out", "{t}");

    // 30 sessions at once: `stats` gives the rate of the whole second they fell in (or
    // of the two seconds they straddle).
    let burst =
        "import socket\nfor p in range(5000, 5030):\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n    \
                 s.bind(('10.63.0.2', p)); s.sendto(b'x', ('10.63.0.1', 53))";
    assert!(c2.ns.exec(&["python3", "-c", burst]).status.success());
    let mut best = 0;
    for _ in 0..25 {
        best = best.max(d.json(&["conntrack", "stats"])["created_per_sec"].as_u64().unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!((15..=31).contains(&best), "created per second: {best}");
}

/// A running ping's replies stop within a publish of the rule that allowed it going;
/// with --sticky they do not.
#[test]
fn a_rule_change_ends_what_it_no_longer_allows_unless_sticky() {
    for sticky in [false, true] {
        let d = daemon();
        let flags: &[&str] = if sticky { &["--sticky"] } else { &[] };
        let (_c1, c2) = two_containers(&d, flags);
        let p = c2.ns.spawn(&["ping", "-c", "25", "-i", "0.2", "-W", "1", "10.63.0.1"]);
        std::thread::sleep(Duration::from_millis(1500));
        // The allow rule goes; the default (deny) is all that is left.
        d.ok(&["acl", "del", "10"]);
        let out = p.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let received: u32 = text
            .split(", ")
            .find_map(|s| s.strip_suffix(" received").and_then(|n| n.parse().ok()))
            .unwrap_or_else(|| panic!("ping's summary: {text}"));
        if sticky {
            assert_eq!(received, 25, "sticky: the session kept passing: {text}");
        } else {
            assert!((3..=10).contains(&received), "replies stopped after the change: {text}");
            assert!(drops(&d, "vm2", "acl_deny_in") > 10, "{}", d.port_stats("vm2"));
            // A new connection meets the new rules too.
            assert!(!ping(&c2, "10.63.0.1", "1"));
        }
    }
}

/// A connection that a reset closed is listed (and counted) until its close timeout
/// runs out, and not after, though the core that made it frees it only at its wheel's
/// next look: as the kernel's `conntrack -L` skips an entry past its timeout.
#[test]
fn a_closed_connection_leaves_the_list_when_its_timeout_runs_out() {
    let d = daemon();
    let (c1, c2) = two_containers(&d, &[]);
    d.ok(&["conntrack", "timeouts", "set", "--tcp-close", "2"]);
    let mut server = c1.ns.spawn(&[
        "timeout",
        "5",
        "python3",
        "-c",
        "import socket; s = socket.create_server(('10.63.0.1', 7000)); c, _ = s.accept(); c.recv(10); c.recv(10)",
    ]);
    std::thread::sleep(Duration::from_millis(400));
    // vm2 opens, sends a byte and resets (SO_LINGER 0): its RST stands where it sent.
    let reset = "import socket, struct, time; s = socket.create_connection(('10.63.0.1', 7000)); s.send(b'x'); \
                 time.sleep(0.2); s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)); s.close()";
    assert!(c2.ns.exec(&["python3", "-c", reset]).status.success(), "vm2's connection opened");
    let _ = server.wait();
    let tcp = |list: &Value| -> Vec<Value> {
        list.as_array().unwrap().iter().filter(|r| r["proto"] == "tcp").cloned().collect()
    };
    let list = d.json(&["conntrack", "list", "--port", "vm2"]);
    let closed = tcp(&list);
    assert_eq!(closed.len(), 1, "{list}");
    assert_eq!((closed[0]["dport"].as_u64(), closed[0]["state"].as_str()), (Some(7000), Some("CLOSE")), "{list}");
    assert!(d.json(&["conntrack", "stats"])["by_state"]["tcp/CLOSE"].as_u64() == Some(1));
    std::thread::sleep(Duration::from_millis(3000));
    let list = d.json(&["conntrack", "list", "--port", "vm2"]);
    assert_eq!(tcp(&list), Vec::<Value>::new(), "past its close timeout: {list}");
    let stats = d.json(&["conntrack", "stats"]);
    assert_eq!(stats["by_state"].get("tcp/CLOSE"), None, "{stats}");
    assert_eq!(tcp(&d.json(&["conntrack", "list"])), Vec::<Value>::new());
}

/// A port's session limit refuses new connections and keeps the ones it has.
#[test]
fn a_port_at_its_session_limit_keeps_what_it_has() {
    let d = daemon();
    let (_c1, c2) = two_containers(&d, &["--max-sessions", "2"]);
    // Each ping is its own ICMP id: its own session.
    assert!(ping(&c2, "10.63.0.1", "1"));
    assert!(ping(&c2, "10.63.0.1", "1"));
    assert!(!ping(&c2, "10.63.0.1", "1"), "a third session is refused");
    assert!(drops(&d, "vm2", "ct_port_limit") >= 1, "{}", d.port_stats("vm2"));
    assert_eq!(d.json(&["conntrack", "list"]).as_array().unwrap().len(), 2);
    // Off: stateless again, and the rules alone decide (replies meet the default deny).
    d.ok(&["acl", "stateful", "vm2", "off"]);
    assert!(!ping(&c2, "10.63.0.1", "1"));
    let stats = d.json(&["conntrack", "stats"]);
    assert_eq!(stats["stateful_ports"], serde_json::json!([]), "{stats}");
    // The setting is part of the desired state: dump shows it, apply takes it back.
    d.ok(&["acl", "stateful", "vm2", "on", "--max-sessions", "5", "--liberal"]);
    let dump = d.json(&["dump"]);
    assert_eq!(
        dump["stateful"],
        serde_json::json!([{"port": "vm2", "on": true, "liberal": true, "max_sessions": 5}]),
        "{dump}"
    );
}

/// The same scripted packets (TCP handshakes, data in and out of the window, RST
/// attacks, FIN/RST races, SYN retries, reopen after TIME_WAIT, window scaling, UDP,
/// ICMP echo and errors, IPv6, IPv4 fragments) through the switch and through the Linux
/// kernel's conntrack with the same policy (nftables: ct state established,related
/// accept; ct state new from B accept; drop): every packet's verdict must agree.
#[test]
fn verdicts_agree_with_the_kernels_conntrack() {
    let probe = Netns::new("ctp-");
    let fw = Netns::new("ctf-");
    // Kernel rig: probe (pa, pb) <-> fw (fa, fb), routed by fw with the policy.
    let (ka, kb) = (Veth::new("cka"), Veth::new("ckb"));
    for (v, addr4, addr6) in [(&ka, "10.64.1.254/24", "fd64:1::254/64"), (&kb, "10.64.2.254/24", "fd64:2::254/64")] {
        run_ok("ip", &["link", "set", &v.peer, "netns", &probe.name]);
        run_ok("ip", &["link", "set", &v.host, "netns", &fw.name]);
        fw.exec_ok(&["ip", "link", "set", &v.host, "up"]);
        fw.exec_ok(&["ip", "addr", "add", addr4, "dev", &v.host]);
        fw.exec_ok(&["ip", "addr", "add", addr6, "dev", &v.host, "nodad"]);
    }
    // Switch rig: probe (qa, qb) <-> vm1, vm2 (kernel ports on the veths' other ends).
    let (sa, sb) = (Veth::new("csa"), Veth::new("csb"));
    for v in [&sa, &sb] {
        run_ok("ip", &["link", "set", &v.peer, "netns", &probe.name]);
        run_ok("sysctl", &["-qw", &format!("net.ipv6.conf.{}.disable_ipv6=1", v.host)]);
    }
    for i in [&ka.peer, &kb.peer, &sa.peer, &sb.peer] {
        probe.quiet(i);
        probe.exec_ok(&["ip", "link", "set", i, "up"]);
    }
    let pmac = |i: &str| probe.mac(i);
    let fmac = |i: &str| fw.mac(i);
    for (v, a4, a6) in [(&ka, "10.64.1.1", "fd64:1::1"), (&kb, "10.64.2.1", "fd64:2::1")] {
        for a in [a4, a6] {
            fw.exec_ok(&["ip", "neigh", "replace", a, "lladdr", &pmac(&v.peer), "dev", &v.host]);
        }
    }
    fw.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    fw.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    let rules = format!(
        "table inet ct_diff {{\n chain guard {{\n  type filter hook forward priority 0; policy drop;\n  \
         ct state established,related accept\n  ct state new iifname \"{}\" accept\n }}\n}}\n",
        kb.host
    );
    let dir = TempDir::new("ctdiff");
    let file = dir.path("rules.nft");
    std::fs::write(&file, rules).unwrap();
    fw.exec_ok(&["nft", "-f", file.to_str().unwrap()]);
    // As the switch's default: no pickup of connections under way.
    fw.exec_ok(&["sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0"]);
    // A closed connection times out in 1 s on both rigs, so a scenario can see whether
    // a RST closed it (`rst_off_the_edge`).
    fw.exec_ok(&["sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_close=1"]);
    // And an answered UDP flow in 1 s (`udp_timeout`): the kernel gives one 30 s until
    // it is 2 s old, then 120 s; the switch 120 s once answered. Both 1 s here.
    fw.exec_ok(&["sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=1"]);
    fw.exec_ok(&["sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout_stream=1"]);

    let d = Daemon::start();
    d.ok(&["network", "add", "100"]);
    d.ok(&["port", "add", "vm1", &format!("kernel:iface={}", sa.host), "--role", "vm", "--vni", "100"]);
    d.ok(&["port", "add", "vm2", &format!("kernel:iface={}", sb.host), "--role", "vm", "--vni", "100"]);
    d.ok(&["fib", "add", "100", &pmac(&sa.peer), "--port", "vm1"]);
    d.ok(&["fib", "add", "100", &pmac(&sb.peer), "--port", "vm2"]);
    d.ok(&["acl", "add", "--priority", "10", "--port", "vm2", "--dir", "in", "--action", "allow"]);
    d.ok(&["acl", "default", "vm2", "deny"]);
    d.ok(&["acl", "stateful", "vm2", "on"]);
    d.ok(&["conntrack", "timeouts", "set", "--tcp-close", "1", "--udp", "1", "--udp-stream", "1"]);
    d.settle();

    let config = serde_json::json!({"rigs": {
        "kernel": {"a": ka.peer, "b": kb.peer, "to_b": fmac(&ka.host), "to_a": fmac(&kb.host)},
        "switch": {"a": sa.peer, "b": sb.peer, "to_b": pmac(&sb.peer), "to_a": pmac(&sa.peer)},
    }});
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("py/ct_diff.py");
    let out = probe.exec_ok(&[PYTHON, script.to_str().unwrap(), &config.to_string()]);
    let result: Value = serde_json::from_str(out.trim()).unwrap();

    let mut passed_by_kernel = 0;
    let mut differences = Vec::new();
    for (scenario, rows) in result.as_object().unwrap() {
        for row in rows.as_array().unwrap() {
            let (desc, kernel, switch) =
                (&row[0], row[2]["kernel"].as_u64().unwrap(), row[2]["switch"].as_u64().unwrap());
            passed_by_kernel += (kernel > 0) as u32;
            if scenario == "fragments" && switch > 0 {
                // The kernel reassembles, decides, and fragments again; the switch lets
                // the later fragments follow the first: all three pass.
                assert_eq!(switch, 3, "fragments, {desc}: the switch passed {switch} of 3");
            }
            if (kernel > 0) != (switch > 0) {
                differences.push(format!("{scenario}: {desc}: kernel {kernel}, switch {switch}"));
            }
        }
    }
    assert!(passed_by_kernel >= 25, "the kernel rig passed only {passed_by_kernel} packets: is it set up?\n{result}");
    assert!(
        differences.is_empty(),
        "verdicts differ:\n{}\n{}",
        differences.join("\n"),
        d.json(&["conntrack", "stats"])
    );
}

/// The flow log: a session made and, once it times out, ended with its packets; a new
/// connection the rules refused, with why.
#[test]
fn the_flow_log_shows_sessions_made_ended_and_refused() {
    let d = daemon();
    let (c1, c2) = two_containers(&d, &[]);
    d.ok(&["conntrack", "timeouts", "set", "--icmp", "1"]);
    d.ok(&[
        "acl",
        "add",
        "--id",
        "20",
        "--priority",
        "5",
        "--port",
        "vm2",
        "--dir",
        "out",
        "--proto",
        "udp",
        "--dport",
        "9",
        "--action",
        "deny",
    ]);
    let follow = std::process::Command::new(bin("vswitchctl"))
        .args([
            "--socket",
            d.socket.to_str().unwrap(),
            "--json",
            "conntrack",
            "events",
            "--port",
            "vm2",
            "--seconds",
            "6",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(ping(&c2, "10.63.0.1", "1"));
    assert!(!ping(&c1, "10.63.0.2", "1"));
    let send = "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', ('10.63.0.2', 9))";
    assert!(c1.ns.exec(&["python3", "-c", send]).status.success());
    let out = follow.wait_with_output().unwrap();
    let events: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let find = |kind: &str, src: &str| {
        events
            .iter()
            .find(|e| e["event"] == kind && e["src"] == src && e["proto"] == "icmp")
            .unwrap_or_else(|| panic!("no {kind} event from {src}: {events:?}"))
    };
    let new = find("new", "10.63.0.2");
    assert_eq!((new["dst"].as_str(), new["port"].as_str()), (Some("10.63.0.1"), Some("vm2")));
    let end = find("end", "10.63.0.2");
    assert_eq!(end["packets"], serde_json::json!([1, 1]), "{end}");
    assert!(end["seconds"].as_f64().unwrap() < 5.0, "{end}");
    let denied = find("denied", "10.63.0.1");
    assert_eq!(denied["reason"], "acl_deny_out", "{denied}");
    assert_eq!(denied["rule"], Value::Null, "the port's default refused the ping: {denied}");
    let by_rule = events
        .iter()
        .find(|e| e["event"] == "denied" && e["proto"] == "udp")
        .unwrap_or_else(|| panic!("no denied UDP event: {events:?}"));
    assert_eq!((by_rule["dport"].as_u64(), by_rule["rule"].as_u64()), (Some(9), Some(20)), "{by_rule}");
    assert_eq!(d.json(&["conntrack", "list"]), serde_json::json!([]), "the session timed out");
}
