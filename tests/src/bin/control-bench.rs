//! The control plane under churn, measured through the API as a controller would use it:
//! acknowledged single-rule changes per second and their latency (publish and
//! quiescence included) with many concurrent clients, on a switch holding 10,000
//! realistic ACL rules; `acl load` of all of them at once; static FIB entries at
//! volume; and the restart time with all of that in the state.
//!
//! cargo build --release --workspace && target/release/control-bench [--bin-dir DIR] [--rules N] ...
//! Prints one line per figure and, with --markdown, a table for docs/benchmarks.md.
use serde_json::{json, Value};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Barrier},
    time::{Duration, Instant},
};
use vswitch_tests::Api;

struct Opts {
    bin_dir: PathBuf,
    rules: usize,
    ports: usize,
    clients: Vec<usize>,
    seconds: u64,
    fib: usize,
    markdown: bool,
}

fn opts() -> Opts {
    let exe = std::env::current_exe().expect("own path");
    let mut o = Opts {
        bin_dir: exe.parent().expect("target/release").to_path_buf(),
        rules: 10_000,
        ports: 20,
        clients: vec![1, 4, 16, 64],
        seconds: 10,
        fib: 100_000,
        markdown: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--bin-dir" => o.bin_dir = v.into(),
            "--rules" => o.rules = v.parse().expect("--rules N"),
            "--ports" => o.ports = v.parse().expect("--ports N"),
            "--clients" => o.clients = v.split(',').map(|c| c.parse().expect("--clients 1,4,16")).collect(),
            "--seconds" => o.seconds = v.parse().expect("--seconds S"),
            "--fib" => o.fib = v.parse().expect("--fib N"),
            "--markdown" => {
                o.markdown = true;
                i += 1;
                continue;
            }
            other => panic!("unknown option {other}; see the top of tests/src/bin/control-bench.rs"),
        }
        i += 2;
    }
    o
}

/// A small deterministic generator: the same rules every run.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// A security-group rule as tenants write them: a source prefix, a protocol, a port
/// range and a direction on each.
fn rule(rng: &mut Lcg, port: &str, priority: u32) -> Value {
    let proto = ["tcp", "udp"][rng.next(2) as usize];
    let lo = 1024 + rng.next(30_000);
    let hi = lo + rng.next(2_000);
    let len = [8, 16, 24, 32][rng.next(4) as usize];
    let src = format!("10.{}.{}.0/{len}", rng.next(256), rng.next(256));
    let src = if len == 32 { src.replace(".0/32", ".7/32") } else { src };
    let src = match len {
        8 => "10.0.0.0/8".to_string(),
        16 => format!("10.{}.0.0/16", rng.next(256)),
        _ => src,
    };
    let dir = ["in", "out"][rng.next(2) as usize];
    let action = ["allow", "deny"][rng.next(2) as usize];
    json!({
        "priority": priority,
        "port": port,
        "dir": dir,
        "src": src,
        "proto": proto,
        "dport": format!("{lo}-{hi}"),
        "action": action,
    })
}

struct Switchd {
    child: Child,
    dir: PathBuf,
    bin_dir: PathBuf,
    prefix: String,
}

impl Switchd {
    fn socket(&self) -> PathBuf {
        self.dir.join("vswitchd.sock")
    }

    fn start(bin_dir: &Path, dir: &Path) -> (Switchd, Duration) {
        let prefix = format!("cb{}", std::process::id());
        let t = Instant::now();
        let child = Command::new(bin_dir.join("vswitchd"))
            .args(["--socket", dir.join("vswitchd.sock").to_str().unwrap()])
            .args(["--db", dir.join("conf.json").to_str().unwrap(), "--mbufs", "16384"])
            .args(["--log-level", &std::env::var("VSWITCHD_LOG").unwrap_or_else(|_| "warn".into())])
            .args(["--", "-l", "0-1", "--no-pci", "--no-huge", "-m", "1024", "--file-prefix", &prefix])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("vswitchd.log")).unwrap())
            .spawn()
            .expect("spawn vswitchd");
        let d = Switchd { child, dir: dir.to_path_buf(), bin_dir: bin_dir.to_path_buf(), prefix };
        loop {
            if let Ok(mut c) = Api::connect(&d.socket()) {
                if c.call(json!({"cmd": "show"})).is_some_and(|r| r["ok"] == true) {
                    return (d, t.elapsed());
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "vswitchd did not come up: see {}/vswitchd.log",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// What vswitchctl printed, or why it failed.
    fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let o = Command::new(self.bin_dir.join("vswitchctl"))
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("run vswitchctl");
        match o.status.success() {
            true => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
            false => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        }
    }

    fn stop(mut self, kill: bool) {
        let sig = if kill { libc::SIGKILL } else { libc::SIGTERM };
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        let _ = self.child.wait();
        let _ = std::fs::remove_file(format!("/dev/shm/{}", self.prefix));
    }
}

impl Drop for Switchd {
    /// However the bench ends, no vswitchd is left polling a core.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

struct Churn {
    clients: usize,
    changes: usize,
    per_s: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

/// `clients` connections, each adding a rule to a random port and deleting it again,
/// for `seconds`: every request is one acknowledged change.
fn churn(d: &Switchd, ports: usize, clients: usize, seconds: u64) -> Churn {
    let start = Arc::new(Barrier::new(clients + 1));
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let socket = d.socket();
            let start = start.clone();
            std::thread::spawn(move || {
                let mut api = Api::connect(&socket).expect("connect");
                let mut rng = Lcg(0x5eed + c as u64);
                let mut lat = Vec::new();
                start.wait();
                let deadline = Instant::now() + Duration::from_secs(seconds);
                while Instant::now() < deadline {
                    let port = format!("vm{}", rng.next(ports as u64));
                    let priority = 1000 + rng.next(1000) as u32;
                    let mut r = rule(&mut rng, &port, priority);
                    r["cmd"] = json!("acl_add");
                    let t = Instant::now();
                    let id = api.ok(r)["result"]["id"].as_u64().expect("rule id");
                    lat.push(t.elapsed());
                    let t = Instant::now();
                    api.ok(json!({"cmd": "acl_del", "id": id}));
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    start.wait();
    let t = Instant::now();
    let mut lat: Vec<Duration> = threads.into_iter().flat_map(|h| h.join().expect("client")).collect();
    let elapsed = t.elapsed().as_secs_f64();
    lat.sort();
    Churn {
        clients,
        changes: lat.len(),
        per_s: lat.len() as f64 / elapsed,
        p50: pct(&lat, 0.5),
        p99: pct(&lat, 0.99),
        p999: pct(&lat, 0.999),
        max: pct(&lat, 1.0),
    }
}

fn main() {
    let o = opts();
    let dir = std::env::temp_dir().join(format!("control-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // The switch: one network, `ports` VM ports, and `rules` rules spread over them,
    // restored from a state file as a host that restarts would have it.
    let mut rng = Lcg(42);
    let ports: Vec<Value> = (0..o.ports)
        .map(|i| json!({"name": format!("vm{i}"), "devargs": format!("net_null{i},no-rx=1"), "role": "vm", "vni": 100}))
        .collect();
    let acl: Vec<Value> = (0..o.rules)
        .map(|i| {
            let mut r = rule(&mut rng, &format!("vm{}", i % o.ports), 1 + (i % 997) as u32);
            r["id"] = json!(i + 1);
            r
        })
        .collect();
    let state = json!({"format": 1, "networks": [{"vni": 100}], "ports": ports, "acl": acl});
    std::fs::write(dir.join("conf.json"), state.to_string()).unwrap();
    let (d, up) = Switchd::start(&o.bin_dir, &dir);
    let mut out: Vec<(String, String)> = Vec::new();
    let mut say = |what: &str, v: String| {
        println!("{what}: {v}");
        out.push((what.to_string(), v));
    };
    say(&format!("start with {} rules on {} ports", o.rules, o.ports), format!("{:.0} ms", up.as_secs_f64() * 1e3));

    // `acl load` of every rule at once, as a file (one request in parts).
    let file = dir.join("rules.txt");
    let text: String = acl
        .iter()
        .map(|r| {
            format!(
                "--priority {} --port {} --dir {} --src {} --proto {} --dport {} --action {} --id {}\n",
                r["priority"],
                r["port"].as_str().unwrap(),
                r["dir"].as_str().unwrap(),
                r["src"].as_str().unwrap(),
                r["proto"].as_str().unwrap(),
                r["dport"].as_str().unwrap(),
                r["action"].as_str().unwrap(),
                r["id"]
            )
        })
        .collect();
    std::fs::write(&file, text).unwrap();
    let t = Instant::now();
    let loaded = d.ctl(&["acl", "load", file.to_str().unwrap()]);
    let took = t.elapsed().as_secs_f64() * 1e3;
    say(
        &format!("acl load of {} rules", o.rules),
        match loaded {
            Ok(out) => format!("{took:.0} ms ({out})"),
            Err(e) => format!("failed: {e}"),
        },
    );

    for &c in &o.clients {
        let r = churn(&d, o.ports, c, o.seconds);
        say(
            &format!("single-rule changes, {} client(s)", r.clients),
            format!(
                "{:.0}/s ({} in {} s), latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
                r.per_s, r.changes, o.seconds, r.p50, r.p99, r.p999, r.max
            ),
        );
    }

    if o.fib == 0 {
        d.stop(false);
        keep_or_remove(&dir);
        return;
    }
    // Static FIB entries at volume, from 16 clients.
    let t = Instant::now();
    let per = o.fib.div_ceil(16);
    let threads: Vec<_> = (0..16usize)
        .map(|c| {
            let socket = d.socket();
            let n = o.fib;
            std::thread::spawn(move || {
                let mut api = Api::connect(&socket).expect("connect");
                for i in (c * per)..((c + 1) * per).min(n) {
                    let mac = format!("02:{:02x}:{:02x}:{:02x}:00:01", i >> 16, (i >> 8) & 0xff, i & 0xff);
                    let vtep = format!("192.168.{}.{}", 1 + (i % 200), 1 + (i / 200) % 250);
                    api.ok(json!({"cmd": "fib_add", "vni": 100, "mac": mac, "vtep": vtep}));
                }
            })
        })
        .collect();
    for h in threads {
        h.join().expect("fib client");
    }
    let fib_s = t.elapsed().as_secs_f64();
    say(&format!("{} static FIB entries, 16 clients", o.fib), format!("{:.1} s, {:.0}/s", fib_s, o.fib as f64 / fib_s));
    let size = |p: &str| std::fs::metadata(dir.join(p)).map_or(0, |m| m.len());
    say("state file and journal", format!("{} and {} bytes", size("conf.json"), size("conf.json.journal")));

    // Restarts with all of it: a clean stop, and a crash (the journal replayed).
    d.stop(false);
    let (d, up) = Switchd::start(&o.bin_dir, &dir);
    say(
        &format!("restart with {} rules and {} FIB entries (SIGTERM, start)", o.rules, o.fib),
        format!("{:.0} ms", up.as_secs_f64() * 1e3),
    );
    let mut api = Api::connect(&d.socket()).unwrap();
    let n = api.ok(json!({"cmd": "fib_list", "vni": 100}))["result"].as_array().map_or(0, Vec::len);
    assert_eq!(n, o.fib, "every FIB entry came back");
    let mut rng = Lcg(7);
    for _ in 0..2000 {
        let mut r = rule(&mut rng, "vm0", 5);
        r["cmd"] = json!("acl_add");
        api.ok(r);
    }
    d.stop(true);
    let journal = size("conf.json.journal");
    let (d, up) = Switchd::start(&o.bin_dir, &dir);
    say(
        "restart after kill -9 (journal replayed)",
        format!("{:.0} ms ({journal} bytes of journal)", up.as_secs_f64() * 1e3),
    );
    d.stop(false);
    if o.markdown {
        println!("\n| figure | value |\n|---|---|");
        for (k, v) in &out {
            println!("| {k} | {v} |");
        }
    }
    keep_or_remove(&dir);
}

/// The bench's folder goes, unless VSWITCHD_LOG asked for a log worth reading.
fn keep_or_remove(dir: &Path) {
    if std::env::var_os("VSWITCHD_LOG").is_some() {
        println!("vswitchd's log: {}", dir.join("vswitchd.log").display());
    } else {
        let _ = std::fs::remove_dir_all(dir);
    }
}
