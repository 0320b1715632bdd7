//! TCP through the switch, judged by the kernels at both ends: iperf3 for volume,
//! exact transfers (length and SHA-256) for content, and each kernel's count of TCP
//! segments it dropped for a bad checksum.
use crate::{Netns, PYTHON};
use serde_json::Value;
use std::{path::Path, time::Duration};

/// The kernel's count of TCP segments it dropped for a bad checksum, in `ns`.
pub fn tcp_csum_errors(ns: &Netns) -> u64 {
    let snmp = ns.exec_ok(&["cat", "/proc/net/snmp"]);
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    let i = names.split_whitespace().position(|n| n == "InCsumErrors").unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// An iperf3 TCP run from `client` to `server_ip` (in `server`) with `extra` options;
/// returns the bytes the receiver got.
pub fn iperf3(server: &Netns, server_ip: &str, client: &Netns, extra: &[&str]) -> u64 {
    // A stalled connection fails the test instead of hanging it.
    let mut s = server.spawn(&["timeout", "40", "iperf3", "-s", "-1", "-B", server_ip]);
    std::thread::sleep(Duration::from_millis(400));
    let mut args = vec!["timeout", "30", "iperf3", "-c", server_ip, "-t", "2", "-J", "--connect-timeout", "5000"];
    args.extend_from_slice(extra);
    let c = client.exec(&args);
    let _ = s.wait();
    assert!(c.status.success(), "iperf3 {extra:?}: {}", String::from_utf8_lossy(&c.stdout));
    let v: Value = serde_json::from_slice(&c.stdout).unwrap();
    v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0)
}

/// `conns` parallel TCP connections of `bytes` each from `client` to `server_ip`:
/// what arrived (length and SHA-256 of each) must be what was sent.
pub fn exact_transfer(server: &Netns, server_ip: &str, client: &Netns, bytes: u64, conns: u32) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/tcp_xfer.py");
    let script = script.to_str().unwrap();
    let mut s = server.spawn(&["timeout", "120", PYTHON, script, "serve", server_ip, "5301", &conns.to_string()]);
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(s.stdout.as_mut().unwrap()), &mut ready).unwrap();
    assert_eq!(ready.trim(), "ready");
    let sent = client.exec_ok(&[
        "timeout",
        "100",
        PYTHON,
        script,
        "send",
        server_ip,
        "5301",
        &bytes.to_string(),
        &conns.to_string(),
    ]);
    let got = s.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), sent.trim(), "{conns} x {bytes} bytes to {server_ip}");
}

/// TCP between `a` and `b` (namespace, IP): iperf3 from a to b with each option set in
/// `runs`, then exact transfers of (bytes, connections) to b and to a; neither kernel
/// may see a TCP segment with a bad checksum.
pub fn tcp_both_ways(a: (&Netns, &str), b: (&Netns, &str), runs: &[&[&str]], to_b: (u64, u32), to_a: (u64, u32)) {
    let errors_before = (tcp_csum_errors(a.0), tcp_csum_errors(b.0));
    for extra in runs {
        let received = iperf3(b.0, b.1, a.0, extra);
        assert!(received > 10_000_000, "iperf3 {extra:?} moved only {received} bytes");
    }
    exact_transfer(b.0, b.1, a.0, to_b.0, to_b.1);
    exact_transfer(a.0, a.1, b.0, to_a.0, to_a.1);
    assert_eq!(
        (tcp_csum_errors(a.0), tcp_csum_errors(b.0)),
        errors_before,
        "neither kernel saw a TCP segment with a bad checksum"
    );
}
