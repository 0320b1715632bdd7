//! Random ADD, DEL, CHECK and GC as runtimes send them, with vswitchd killed (-9) and
//! the plugin killed in the middle of its calls, then everything deleted: nothing may
//! be left behind (no attachment, port, attached lease, endpoint, host veth or
//! container interface), and while it runs every attachment vswitchd reports must be
//! real (its port running, its veth there). VSWITCH_CNI_CHAOS=N sets the number of
//! operations (default 400; docs/benchmarks.md has a 10,000-operation run).
use serde_json::{json, Value};
use std::{
    io::Write,
    process::{Child, Command, Stdio},
    time::Duration,
};
use vswitch_tests::*;

/// xorshift64*: reproducible from the seed printed at the start.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const SLOTS: usize = 10;

fn plugin(conf: &Value, cmd: &str, container: &str, netns: &str) -> Child {
    let mut c = Command::new(bin("vswitch-cni"))
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", format!("K8S_POD_NAMESPACE=chaos;K8S_POD_NAME={container}"))
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
    c
}

fn finish(c: Child) -> bool {
    c.wait_with_output().map(|o| o.status.success()).unwrap_or(false)
}

/// A runtime's DEL: retried until vswitchd answers (a failed DEL is retried, as
/// runtimes do).
fn del(conf: &Value, container: &str, netns: &str) {
    for _ in 0..50 {
        if finish(plugin(conf, "DEL", container, netns)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("DEL of {container} never succeeded");
}

fn links(prefix: &str) -> Vec<String> {
    run_ok("ip", &["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Every attachment vswitchd holds has its port running and its veth in place.
fn consistent(d: &Daemon) {
    let attached = d.json(&["attachment", "list"]);
    let ports = d.json(&["port", "list"]);
    let host = links("vsc");
    for a in attached.as_array().unwrap() {
        let port = a["port"].as_str().unwrap();
        let p = ports.as_array().unwrap().iter().find(|p| p["name"] == port);
        assert!(p.is_some_and(|p| p["state"] == "up"), "attachment {a} without a running port: {ports}");
        assert!(host.iter().any(|h| h == port), "attachment {a} without its veth: {host:?}");
    }
}

#[test]
fn random_adds_dels_and_kills_leave_nothing_behind() {
    let ops: usize = std::env::var("VSWITCH_CNI_CHAOS").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let seed = std::env::var("VSWITCH_CNI_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("VSWITCH_CNI_SEED={seed} VSWITCH_CNI_CHAOS={ops}");
    let mut rng = Rng(seed);
    let mut d = Daemon::start();
    d.ok_line("network add 100 --gateway 10.9.0.1/16");
    let conf = json!({"cniVersion": "1.1.0", "name": "chaos", "type": "vswitch", "vni": 100,
                      "socket": d.socket.display().to_string(), "timeout": 2});
    let spaces: Vec<Netns> = (0..SLOTS).map(|_| Netns::new("cnix")).collect();
    let path = |i: usize| format!("/var/run/netns/{}", spaces[i].name);
    // Each slot's current container (a new id after each DEL, as runtimes make them).
    let mut gen = [0u32; SLOTS];
    let id = |i: usize, g: u32| format!("c{i}-{g}");
    let (mut kills, mut plugin_kills, mut adds_ok) = (0, 0, 0);
    for n in 0..ops {
        let i = rng.below(SLOTS as u64) as usize;
        let c = id(i, gen[i]);
        match rng.below(100) {
            // ADD; a failed ADD is followed by DEL, as the spec asks of runtimes.
            0..=44 => {
                if finish(plugin(&conf, "ADD", &c, &path(i))) {
                    adds_ok += 1;
                } else {
                    del(&conf, &c, &path(i));
                    gen[i] += 1;
                }
            }
            45..=79 => {
                del(&conf, &c, &path(i));
                gen[i] += 1;
            }
            80..=84 => {
                let _ = finish(plugin(&conf, "CHECK", &c, &path(i)));
            }
            // The plugin killed mid-call (the runtime timed out): it cleans up with DEL.
            85..=91 => {
                let mut p = plugin(&conf, if rng.below(2) == 0 { "ADD" } else { "DEL" }, &c, &path(i));
                std::thread::sleep(Duration::from_micros(rng.below(6000)));
                let _ = p.kill();
                let _ = p.wait();
                plugin_kills += 1;
                del(&conf, &c, &path(i));
                gen[i] += 1;
            }
            // vswitchd killed, possibly in the middle of an ADD or DEL.
            92..=96 => {
                let p = plugin(&conf, if rng.below(2) == 0 { "ADD" } else { "DEL" }, &c, &path(i));
                std::thread::sleep(Duration::from_micros(rng.below(6000)));
                d.kill9();
                let ok = finish(p);
                d.start_again();
                kills += 1;
                if !ok {
                    del(&conf, &c, &path(i));
                    gen[i] += 1;
                }
                consistent(&d);
            }
            // GC with what the runtime believes is attached: nothing it knows of goes.
            _ => {
                let valid: Vec<Value> =
                    (0..SLOTS).map(|j| json!({"containerID": id(j, gen[j]), "ifname": "eth0"})).collect();
                let mut g = conf.clone();
                g["cni.dev/valid-attachments"] = json!(valid);
                assert!(finish(plugin(&g, "GC", "", "")), "GC");
            }
        }
        if n % 50 == 49 {
            consistent(&d);
        }
    }
    eprintln!("{ops} operations: {adds_ok} ADDs attached, {kills} vswitchd kills, {plugin_kills} plugin kills");
    for (i, g) in gen.iter().enumerate() {
        del(&conf, &id(i, *g), &path(i));
    }
    let mut g = conf.clone();
    g["cni.dev/valid-attachments"] = json!([]);
    assert!(finish(plugin(&g, "GC", "", "")));
    assert!(d.json(&["attachment", "list"]).as_array().unwrap().is_empty());
    assert!(!d.ok(&["port", "list"]).contains("vsc"), "{}", d.ok(&["port", "list"]));
    assert!(!d.ok(&["endpoint", "list"]).contains(" cni "), "{}", d.ok(&["endpoint", "list"]));
    let leases = d.json(&["ipam", "list"]);
    assert!(leases.as_array().unwrap().iter().all(|l| l["state"] != "attached"), "{leases}");
    assert!(wait_until(Duration::from_secs(10), || links("vsc").is_empty()), "host veths left: {:?}", links("vsc"));
    for ns in &spaces {
        assert!(
            wait_until(Duration::from_secs(5), || ns.exec(&["ip", "link", "show", "eth0"]).status.code() != Some(0)),
            "{} still has eth0",
            ns.name
        );
    }
}
