//! `vswitchd --check` and `vswitchctl doctor`: what they predict is what happens. The
//! judge is vswitchd itself, started on the same arguments (it fails where doctor said
//! it would, and starts where doctor said it could), and the host's own /dev and
//! /sys read by the test.
use serde_json::Value;
use std::{path::Path, process::Command, time::Duration};
use vswitch_tests::*;

fn findings(v: &Value) -> Vec<Value> {
    v["findings"].as_array().cloned().unwrap_or_default()
}

/// The finding of `check` whose text names `about`.
fn finding(v: &Value, check: &str, about: &str) -> Value {
    findings(v)
        .into_iter()
        .find(|f| f["check"] == check && f["what"].as_str().unwrap_or("").contains(about))
        .unwrap_or_else(|| panic!("no {check} finding about {about:?} in {v:#}"))
}

/// `vswitchd --check` on `args`, as (exit status, report).
fn check(args: &[String]) -> (i32, String) {
    let o = Command::new(bin("vswitchd")).arg("--check").args(args).output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into_owned())
}

/// vswitchd on the same arguments: whether it came up and served its socket.
fn starts(args: &[String], socket: &Path) -> bool {
    let mut child = Command::new(bin("vswitchd")).args(args).stderr(std::process::Stdio::null()).spawn().unwrap();
    let up = wait_until(Duration::from_secs(20), || socket.exists() || child.try_wait().unwrap().is_some())
        && child.try_wait().unwrap().is_none();
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    up
}

fn free_hugepage_mib() -> u64 {
    let dir = "/sys/kernel/mm/hugepages/hugepages-2048kB";
    std::fs::read_to_string(format!("{dir}/free_hugepages")).unwrap().trim().parse::<u64>().unwrap() * 2
}

#[test]
fn check_predicts_whether_vswitchd_starts() {
    let dir = TempDir::new("doctor");
    let socket = dir.path("s.sock");
    let args = |mbufs: u64, lcores: &str| -> Vec<String> {
        let prefix = unique("doc");
        let db = dir.path("conf.json");
        [
            "--socket",
            socket.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--mbufs",
            &mbufs.to_string(),
            "--",
            "-l",
            lcores,
            "--no-pci",
            "--file-prefix",
            &prefix,
        ]
        .map(String::from)
        .to_vec()
    };
    // Half again as many buffers as the free hugepages hold.
    let too_many = free_hugepage_mib() * 3 / 2 * (1 << 20) / 2432;
    for (mbufs, lcores, fails) in
        [(8192, "0-1", None), (too_many, "0-1", Some("hugepages")), (8192, "0-7", Some("lcores"))]
    {
        let a = args(mbufs, lcores);
        let (status, report) = check(&a);
        match fails {
            None => assert!(status < 2 && !report.contains("ERROR"), "{report}"),
            Some(what) => {
                assert_eq!(status, 2, "{report}");
                let line = report.lines().find(|l| l.starts_with("ERROR")).unwrap_or("");
                assert!(line.contains(what), "{report}");
                assert!(report.contains("fix: "), "{report}");
            }
        }
        assert_eq!(starts(&a, &socket), fails.is_none(), "vswitchd --mbufs {mbufs} -- -l {lcores}:\n{report}");
    }
}

#[test]
fn doctor_names_what_the_running_switch_lacks() {
    let d = Daemon::start();
    let vhost = d.dir.path("vm1.sock");
    d.ok(&["port", "add", "vm1", &format!("net_vhost0,iface={}", vhost.display())]);
    let veth = Veth::new("dr");
    d.ok(&["port", "add", "raw", &format!("net_af_packet0,iface={}", veth.host)]);
    d.ok(&["port", "add", "c1", &format!("kernel:iface={}", unique("dk"))]);
    let o = d.ctl(&["--json", "doctor"]);
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(finding(&report, "daemon", "answers")["severity"], "ok");
    assert_eq!(finding(&report, "socket", "mode 600")["severity"], "ok");
    // The DPDK driver reads the veth raw: its peer's unfinished checksums pass.
    let raw = finding(&report, "offloads", "port raw");
    assert_eq!(raw["severity"], "warn");
    assert!(raw["fix"].as_str().unwrap().contains("ethtool -K"), "{raw}");
    // DPDK makes vhost sockets only their owner may connect to.
    assert_eq!(finding(&report, "vhost", "port vm1")["severity"], "info");
    assert_eq!(finding(&report, "kernel", "/dev/net/tun")["severity"], "ok");
    let worst = findings(&report).iter().map(|f| f["severity"].as_str().unwrap().to_string()).fold(0, |w, s| {
        w.max(match s.as_str() {
            "error" => 2,
            "warn" => 1,
            _ => 0,
        })
    });
    assert_eq!((o.status.code(), report["status"].as_i64()), (Some(worst), Some(worst as i64)));
    let text = String::from_utf8_lossy(&d.ctl(&["doctor"]).stdout).into_owned();
    assert!(text.contains("WARN  offloads") && text.contains("fix: ethtool -K"), "{text}");
}

#[test]
fn doctor_without_a_switch_reads_its_configuration() {
    let dir = TempDir::new("doctor-off");
    let db = dir.path("conf.json");
    let ports = r#"{"format": 1, "ports": [
        {"name": "gone", "devargs": "net_af_packet0,iface=nosuchif0"},
        {"name": "exc", "devargs": "net_virtio_user0,path=/dev/vhost-net,queues=1"}
    ]}"#;
    std::fs::write(&db, ports).unwrap();
    let conf = dir.path("vswitchd.conf");
    std::fs::write(&conf, format!("VSWITCHD_OPTS=\"--db {}\"\nEAL_ARGS=\"-l 0-1 --no-pci\"\n", db.display())).unwrap();
    // Doctor with no switch on its socket: (exit status, report).
    let doctor = || {
        let o = Command::new(bin("vswitchctl"))
            .args(["--socket", dir.path("none.sock").to_str().unwrap(), "--json", "doctor", "--conf"])
            .arg(&conf)
            .output()
            .unwrap();
        (o.status.code(), serde_json::from_slice::<Value>(&o.stdout).unwrap())
    };
    let (status, report) = doctor();
    assert_eq!(status, Some(2), "{report:#}");
    assert!(report["source"].as_str().unwrap().contains("vswitchd.conf"), "{report}");
    assert_eq!(finding(&report, "daemon", "none.sock")["severity"], "error");
    assert_eq!(finding(&report, "state", "2 ports")["severity"], "ok");
    assert_eq!(finding(&report, "interface", "nosuchif0")["severity"], "error");
    // This kernel may lack vhost-net; doctor says so exactly when /dev has none.
    let vhost_net = finding(&report, "kernel", "/dev/vhost-net");
    let has = Path::new("/dev/vhost-net").exists();
    assert_eq!(vhost_net["severity"], if has { "ok" } else { "error" }, "{vhost_net}");
    assert_eq!(finding(&report, "lcores", "PMD on 1")["severity"], "ok");
    // A damaged state file is named before vswitchd trips over it.
    std::fs::write(&db, "{").unwrap();
    let (_, report) = doctor();
    assert_eq!(finding(&report, "state", "corrupt")["severity"], "error");
}
