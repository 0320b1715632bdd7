//! The CNI plugin driven as a runtime drives it (environment and stdin, a network
//! namespace per container), with the kernel as the oracle for what ADD built: the
//! interface, MAC, addresses, routes and MTU the result names must be what `ip` finds
//! in the namespace, and containers must reach each other through the switch.
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use vswitch_tests::*;

/// GC deletes every `vsc` veth its switch does not own, other tests' containers too:
/// the test that runs it holds this alone; the others share it.
static HOST_ENDS: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    HOST_ENDS.read().unwrap_or_else(|e| e.into_inner())
}

struct Cni {
    conf: Value,
    /// vswitchd's log, shown when a run that must work does not.
    log: std::path::PathBuf,
}

/// What one plugin run gave: exit success and its stdout as JSON (null if empty).
struct Ran {
    ok: bool,
    out: Value,
}

impl Cni {
    fn new(d: &Daemon, extra: Value) -> Cni {
        let mut conf = json!({
            "cniVersion": "1.0.0",
            // Each test's own network name: a container's host end is named from
            // network, container and interface, and the tests run at once.
            "name": unique("tenant"),
            "type": "vswitch",
            "vni": 100,
            "socket": d.socket.display().to_string(),
        });
        for (k, v) in extra.as_object().unwrap() {
            conf[k] = v.clone();
        }
        Cni { conf, log: d.log.clone() }
    }

    fn run_with(&self, conf: &Value, command: &str, container: &str, netns: &str, args: &str) -> Ran {
        let o = run_cni_plugin(conf, command, container, netns, args);
        let text = String::from_utf8_lossy(&o.stdout);
        let out = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{command}: stdout is not JSON ({e}): {text}"))
        };
        Ran { ok: o.status.success(), out }
    }

    fn run(&self, command: &str, container: &str, ns: &Netns, args: &str) -> Ran {
        self.run_with(&self.conf, command, container, &netns_path(ns), args)
    }

    fn ok(&self, command: &str, container: &str, ns: &Netns, args: &str) -> Value {
        let r = self.run(command, container, ns, args);
        assert!(
            r.ok,
            "{command} {container} failed: {}\n{}",
            r.out,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        r.out
    }
}

fn netns_path(ns: &Netns) -> String {
    format!("/var/run/netns/{}", ns.name)
}

/// Checks an ADD result against the spec's rules and against what the kernel has in
/// the namespace. Returns (address without length, MAC).
fn verify(result: &Value, ns: &Netns, version: &str) -> (String, String) {
    assert_eq!(result["cniVersion"], version, "{result}");
    let ifaces = result["interfaces"].as_array().expect("interfaces");
    let ips = result["ips"].as_array().expect("ips");
    assert!(!ips.is_empty(), "{result}");
    let ip = &ips[0];
    let idx = ip["interface"].as_u64().expect("ips[].interface") as usize;
    let iface = &ifaces[idx];
    assert_eq!(iface["sandbox"], netns_path(ns), "the address's interface is the container's: {result}");
    assert_eq!(iface["name"], "eth0");
    let host = ifaces.iter().find(|i| i.get("sandbox").is_none()).expect("the host end");
    let host_name = host["name"].as_str().unwrap();
    let host_mac = std::fs::read_to_string(format!("/sys/class/net/{host_name}/address")).unwrap();
    assert_eq!(host["mac"], host_mac.trim(), "the host end's MAC is the kernel's");
    if version.starts_with("0.") {
        assert_eq!(ip["version"], "4");
    } else {
        assert!(ip.get("version").is_none(), "1.0 results have no ips[].version: {result}");
    }
    // The kernel's view.
    let links: Value = serde_json::from_str(&ns.exec_ok(&["ip", "-j", "addr", "show", "dev", "eth0"])).unwrap();
    let l = &links[0];
    assert_eq!(l["address"], iface["mac"], "MAC in the namespace");
    assert_eq!(l["mtu"], 1450, "a VXLAN network's MTU");
    assert!(l["flags"].as_array().unwrap().contains(&json!("UP")));
    let cidr = ip["address"].as_str().unwrap();
    let (addr, len) = cidr.split_once('/').unwrap();
    assert!(
        l["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == addr && a["prefixlen"] == len.parse::<u64>().unwrap()),
        "{cidr} on eth0: {l}"
    );
    let routes: Value = serde_json::from_str(&ns.exec_ok(&["ip", "-j", "route", "show", "default"])).unwrap();
    assert_eq!(routes[0]["gateway"], ip["gateway"], "default route via the gateway: {routes}");
    assert_eq!(result["routes"][0]["gw"], ip["gateway"]);
    (addr.to_string(), iface["mac"].as_str().unwrap().to_string())
}

fn network(d: &Daemon) {
    d.ok_line("network add 100 --gateway 10.1.0.1/24");
}

/// The host end's name for a container's interface, as vswitchd names it: `vsc` and 12
/// hex digits of the 64-bit FNV-1a of network, container and interface name (NUL
/// between). Other tests' containers have their own, so the check is this test's alone.
fn host_end_name(network: &str, container: &str, ifname: &str) -> String {
    let bytes = [network.as_bytes(), container.as_bytes(), ifname.as_bytes()].join(&0u8);
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100_0000_01b3));
    format!("vsc{:012x}", h >> 16)
}

fn links_named(prefix: &str) -> Vec<String> {
    let out = run_ok("ip", &["-o", "link", "show"]);
    out.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[test]
fn the_plugin_attaches_checks_and_detaches_containers_as_a_runtime_drives_it() {
    let _alone = HOST_ENDS.write().unwrap_or_else(|e| e.into_inner());
    let mut d = Daemon::start();
    network(&d);
    let cni = Cni::new(&d, json!({}));
    let (a, b) = (Netns::new("cnia"), Netns::new("cnib"));
    let ra = cni.ok("ADD", "ctr-a", &a, "K8S_POD_NAMESPACE=web;K8S_POD_NAME=a-0");
    let (ip_a, _) = verify(&ra, &a, "1.0.0");
    let mut conf04 = cni.conf.clone();
    conf04["cniVersion"] = json!("0.4.0");
    let rb = cni.run_with(&conf04, "ADD", "ctr-b", &netns_path(&b), "");
    assert!(rb.ok, "{}", rb.out);
    let (ip_b, _) = verify(&rb.out, &b, "0.4.0");
    assert_ne!(ip_a, ip_b);
    // Through the switch, and to the gateway, from the first packet (the endpoint
    // table knows both: no flood, no learning needed).
    a.exec_ok(&["ping", "-c", "3", "-i", "0.2", "-W", "2", &ip_b]);
    b.exec_ok(&["ping", "-c", "1", "-W", "2", "10.1.0.1"]);
    let eps = d.ok(&["endpoint", "list", "100"]);
    assert!(eps.contains("ctr-a") && eps.contains(&netns_path(&a)) && eps.contains(&ip_a), "{eps}");

    // CHECK: fine as built; a missing address is found.
    let mut check = cni.conf.clone();
    check["prevResult"] = ra.clone();
    assert!(cni.run_with(&check, "CHECK", "ctr-a", &netns_path(&a), "").ok);
    a.exec_ok(&["ip", "addr", "del", &format!("{ip_a}/24"), "dev", "eth0"]);
    let bad = cni.run_with(&check, "CHECK", "ctr-a", &netns_path(&a), "");
    assert!(!bad.ok && bad.out["msg"].as_str().unwrap().contains(&ip_a), "{}", bad.out);
    assert!(!cni.run("CHECK", "nobody", &a, "").ok);

    // DEL, twice: the second finds nothing and is still a success.
    let port_a = ra["interfaces"][0]["name"].as_str().unwrap().to_string();
    cni.ok("DEL", "ctr-a", &a, "");
    cni.ok("DEL", "ctr-a", &a, "");
    // The pair is deleted right after the reply (a link's deletion waits for the
    // kernel's grace periods, and the runtime need not).
    assert!(
        wait_until(Duration::from_secs(5), || a.exec(&["ip", "link", "show", "eth0"]).status.code() != Some(0)
            && !links_named(&port_a).contains(&port_a)),
        "eth0 left the namespace, the host end is gone"
    );
    assert!(!d.ok(&["port", "list"]).contains(&port_a));
    assert!(!d.ok(&["endpoint", "list"]).contains(&ip_a));
    let leases = d.json(&["ipam", "list"]);
    let la = leases.as_array().unwrap().iter().find(|l| l["ip"] == ip_a.as_str()).expect("a's lease stays");
    assert_eq!((la["state"].as_str(), la["identity"].as_str()), (Some("reserved"), Some("web/a-0")));
    // A DEL for a namespace already gone is a success too.
    cni.ok("DEL", "ctr-gone", &Netns { name: "no-such-ns".into() }, "");

    // GC: b is not in the runtime's list any more; a veth nobody owns goes too.
    run_ok("ip", &["link", "add", "vsc0000deadbeef", "type", "veth", "peer", "name", "vscpeer-x"]);
    let mut gc = cni.conf.clone();
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([]);
    let r = cni.run_with(&gc, "GC", "", "", "");
    assert!(r.ok, "{}", r.out);
    assert!(d.json(&["attachment", "list"]).as_array().unwrap().is_empty());
    assert!(wait_until(Duration::from_secs(5), || links_named("vsc").is_empty()), "{:?}", links_named("vsc"));

    // STATUS while vswitchd answers, and what a runtime hears when it does not.
    let mut status = cni.conf.clone();
    status["cniVersion"] = json!("1.1.0");
    status["timeout"] = json!(1);
    assert!(cni.run_with(&status, "STATUS", "", "", "").ok);
    let v = cni.run_with(&json!({"cniVersion": "1.1.0"}), "VERSION", "", "", "");
    assert_eq!(v.out["supportedVersions"], json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]));
    d.kill9();
    let r = cni.run_with(&status, "STATUS", "", "", "");
    assert!(!r.ok && r.out["code"] == 50, "{}", r.out);
    let t = Instant::now();
    let r = cni.run_with(&status, "ADD", "ctr-c", &netns_path(&a), "");
    assert!(!r.ok && r.out["code"] == 11, "vswitchd down is try again later: {}", r.out);
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_workload_keeps_its_address_and_mac_across_delete_kill9_and_recreate() {
    let _shared = shared();
    let mut d = Daemon::start();
    network(&d);
    let (a, b) = (Netns::new("cnia"), Netns::new("cnib"));
    let (ip_a, mac_a, ip_b, host_b) = {
        let cni = Cni::new(&d, json!({}));
        let (ip_a, mac_a) = verify(&cni.ok("ADD", "ctr-1", &a, "K8S_POD_NAMESPACE=db;K8S_POD_NAME=db-0"), &a, "1.0.0");
        // Asked for: an address (IP=) and a MAC (the mac capability).
        let mut asked = cni.conf.clone();
        asked["runtimeConfig"] = json!({"mac": "0a:00:00:00:be:ef"});
        let r = cni.run_with(&asked, "ADD", "ctr-b", &netns_path(&b), "K8S_POD_NAME=b;IP=10.1.0.77");
        assert!(r.ok, "{}", r.out);
        let (ip_b, mac_b) = verify(&r.out, &b, "1.0.0");
        assert_eq!((ip_b.as_str(), mac_b.as_str()), ("10.1.0.77", "0a:00:00:00:be:ef"));
        cni.ok("DEL", "ctr-1", &a, "");
        (ip_a, mac_a, ip_b, r.out["interfaces"][0]["name"].as_str().unwrap().to_string())
    };
    // vswitchd dies with b attached: b's interface stays, and the switch attaches to it
    // again at start with no CNI call.
    d.kill9();
    d.start_again();
    let cni = Cni::new(&d, json!({}));
    let r = cni.ok("ADD", "ctr-2", &a, "K8S_POD_NAMESPACE=db;K8S_POD_NAME=db-0");
    let (ip_again, mac_again) = verify(&r, &a, "1.0.0");
    assert_eq!((ip_again, mac_again), (ip_a.clone(), mac_a), "the re-created workload has its address and MAC back");
    a.exec_ok(&["ping", "-c", "2", "-i", "0.2", "-W", "2", &ip_b]);
    // Another workload cannot take an address reserved or attached.
    let c = Netns::new("cnic");
    let r = cni.run("ADD", "ctr-3", &c, &format!("K8S_POD_NAME=c;IP={ip_a}"));
    assert!(!r.ok && r.out["code"] == 100 && r.out["msg"].as_str().unwrap().contains("attached"), "{}", r.out);

    // The host end of b deleted while vswitchd is down: built again at start, with
    // b's addresses and routes, in b's namespace.
    d.kill9();
    run_ok("ip", &["link", "del", &host_b]);
    d.start_again();
    assert!(d.log_text().contains("ctr-b's eth0 built again"), "{}", d.log_tail());
    b.exec_ok(&["ping", "-c", "2", "-i", "0.2", "-W", "2", &ip_a]);
    let routes = b.exec_ok(&["ip", "route", "show", "default"]);
    assert!(routes.contains("via 10.1.0.1"), "{routes}");
}

#[test]
fn a_delegated_ipam_plugin_gives_the_addresses() {
    let _shared = shared();
    if !std::path::Path::new("/usr/lib/cni/host-local").exists() {
        panic!(
            "/usr/lib/cni/host-local is missing: apt-get install containernetworking-plugins (scripts/test.sh does)"
        );
    }
    let d = Daemon::start();
    network(&d);
    let data = TempDir::new("hostlocal");
    let cni = Cni::new(
        &d,
        json!({"ipam": {"type": "host-local", "subnet": "10.1.0.0/24", "rangeStart": "10.1.0.100",
                        "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0"}], "dataDir": data.0.display().to_string()}}),
    );
    let (a, b) = (Netns::new("cnia"), Netns::new("cnib"));
    let (ip_a, _) = verify(&cni.ok("ADD", "ctr-a", &a, ""), &a, "1.0.0");
    let (ip_b, _) = verify(&cni.ok("ADD", "ctr-b", &b, ""), &b, "1.0.0");
    assert_eq!((ip_a.as_str(), ip_b.as_str()), ("10.1.0.100", "10.1.0.101"), "host-local's addresses");
    a.exec_ok(&["ping", "-c", "2", "-i", "0.2", "-W", "2", &ip_b]);
    assert!(d.json(&["ipam", "list"]).as_array().unwrap().is_empty(), "no lease of ours");
    let held = data.0.join(cni.conf["name"].as_str().unwrap()).join(&ip_a);
    assert!(held.exists(), "host-local keeps its own record");
    cni.ok("DEL", "ctr-a", &a, "");
    assert!(!held.exists(), "DEL reached host-local");
}

#[test]
fn fifty_parallel_adds_are_safe_and_leave_nothing_behind_after_their_dels() {
    let _shared = shared();
    let d = Daemon::start();
    network(&d);
    let cni = Cni::new(&d, json!({}));
    let spaces: Vec<Netns> = (0..50).map(|_| Netns::new("cnip")).collect();
    let t = Instant::now();
    let results: Vec<Ran> = std::thread::scope(|s| {
        let handles: Vec<_> = spaces
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let cni = &cni;
                s.spawn(move || cni.run("ADD", &format!("ctr-{i}"), ns, &format!("K8S_POD_NAME=p{i}")))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let took = t.elapsed();
    let mut ips: Vec<String> = results
        .iter()
        .zip(&spaces)
        .map(|(r, ns)| {
            assert!(r.ok, "{}", r.out);
            verify(&r.out, ns, "1.0.0").0
        })
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 50, "fifty different addresses");
    eprintln!("50 parallel ADDs: {took:?}");
    spaces[0].exec_ok(&["ping", "-c", "1", "-W", "2", &ips[49]]);
    std::thread::scope(|s| {
        for (i, ns) in spaces.iter().enumerate() {
            let cni = &cni;
            s.spawn(move || assert!(cni.run("DEL", &format!("ctr-{i}"), ns, "").ok));
        }
    });
    let mine: Vec<String> =
        (0..50).map(|i| host_end_name(cni.conf["name"].as_str().unwrap(), &format!("ctr-{i}"), "eth0")).collect();
    let left = || links_named("vsc").into_iter().filter(|l| mine.contains(l)).collect::<Vec<_>>();
    assert!(wait_until(Duration::from_secs(10), || left().is_empty()), "{:?}", left());
    assert!(!d.ok(&["port", "list"]).contains("vsc"));
    assert!(d.json(&["attachment", "list"]).as_array().unwrap().is_empty());
}

#[test]
fn a_container_gets_its_security_group_and_bandwidth_and_loses_them_at_del() {
    let _shared = shared();
    let d = Daemon::start();
    network(&d);
    let dir = TempDir::new("sg");
    // A may open anything; nothing may open a connection to A (stateful by default).
    let rules = dir.path("outbound-only.yaml");
    std::fs::write(&rules, "- {priority: 10, dir: in, action: allow}\n").unwrap();
    let guarded = Cni::new(
        &d,
        json!({"securityGroup": {"rulesFile": rules.display().to_string(), "default": "deny"},
               "runtimeConfig": {"bandwidth": {"ingressRate": 10_000_000, "ingressBurst": 1_000_000,
                                               "egressRate": 20_000_000, "egressBurst": 1_000_000}}}),
    );
    let open = Cni::new(&d, json!({}));
    let (a, b) = (Netns::new("cnia"), Netns::new("cnib"));
    let ra = guarded.ok("ADD", "ctr-a", &a, "");
    let (ip_a, _) = verify(&ra, &a, "1.0.0");
    let (ip_b, _) = verify(&open.ok("ADD", "ctr-b", &b, ""), &b, "1.0.0");
    let port_a = ra["interfaces"][0]["name"].as_str().unwrap().to_string();

    a.exec_ok(&["ping", "-c", "2", "-i", "0.2", "-W", "2", &ip_b]);
    assert!(!b.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", &ip_a]).status.success(), "B cannot open to A");
    let acl = d.json(&["acl", "list", "--port", &port_a]);
    assert_eq!(acl.as_array().unwrap().len(), 1, "{acl}");
    let qos = d.json(&["qos", "show", &port_a]);
    let text = qos.to_string();
    assert!(text.contains("10000kbit") && text.contains("20000kbit"), "ingress to A is our egress: {text}");
    // What A receives is held to about 10 Mbit/s. B cannot open to A: A opens to B and
    // asks B to send (-R).
    let mut srv_b = b.spawn(&["iperf3", "-s", "-1", "-B", &ip_b]);
    std::thread::sleep(Duration::from_millis(500));
    let out = a.exec_ok(&["iperf3", "-c", &ip_b, "-R", "-t", "2", "-J"]);
    let _ = srv_b.wait();
    let bps = serde_json::from_str::<Value>(&out).unwrap()["end"]["sum_received"]["bits_per_second"].as_f64().unwrap();
    assert!(bps < 20e6, "A receives at most about its 10 Mbit/s ingress rate, not {:.1} Mbit/s", bps / 1e6);

    // DEL takes the port's rules, default, stateful setting and meters with it.
    guarded.ok("DEL", "ctr-a", &a, "");
    assert!(d.json(&["acl", "list"]).as_array().unwrap().is_empty());
    let state = d.json(&["dump"]);
    for section in ["acl_defaults", "stateful", "qos"] {
        assert!(
            state.get(section).is_none_or(
                |s| s.as_array().is_some_and(|a| a.is_empty()) || s.as_object().is_some_and(|o| o.is_empty())
            ),
            "{section} left: {state}"
        );
    }
}

#[test]
fn a_dual_stack_network_gives_containers_both_families() {
    let _shared = shared();
    let d = Daemon::start();
    d.ok_line("network add 100 --gateway 10.1.0.1/24 --gateway fd00:1::1/64");
    let cni = Cni::new(&d, json!({}));
    let (a, b) = (Netns::new("cnia"), Netns::new("cnib"));
    let ra = cni.ok("ADD", "ctr-a", &a, "K8S_POD_NAME=a");
    let rb = cni.ok("ADD", "ctr-b", &b, "K8S_POD_NAME=b");
    verify(&ra, &a, "1.0.0");
    let v6 = |r: &Value| {
        let ip = r["ips"].as_array().unwrap().iter().find(|i| i["address"].as_str().unwrap().contains(':')).cloned();
        let ip = ip.unwrap_or_else(|| panic!("no IPv6 address in {r}"));
        assert_eq!(ip["gateway"], "fd00:1::1", "{r}");
        ip["address"].as_str().unwrap().split('/').next().unwrap().to_string()
    };
    let (a6, b6) = (v6(&ra), v6(&rb));
    assert_eq!((a6.as_str(), b6.as_str()), ("fd00:1::2", "fd00:1::3"), "the lowest free, past the gateway");
    assert!(ra["routes"].as_array().unwrap().iter().any(|r| r["dst"] == "::/0" && r["gw"] == "fd00:1::1"), "{ra}");
    let addrs = a.exec_ok(&["ip", "-6", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&format!("{a6}/64")), "{addrs}");
    let route = a.exec_ok(&["ip", "-6", "route", "show", "default"]);
    assert!(route.contains("via fd00:1::1"), "{route}");
    a.exec_ok(&["ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", &b6]);
    a.exec_ok(&["ping", "-6", "-c", "1", "-W", "2", "fd00:1::1"]);
    let eps = d.ok(&["endpoint", "list", "100"]);
    assert!(eps.contains(&a6) && eps.contains(&b6), "{eps}");
}

#[test]
fn a_host_port_mapping_reaches_the_container_from_outside() {
    let _shared = shared();
    let d = Daemon::start();
    // Host B beyond the uplink; the host's address is the VTEP's.
    let host_b = TapVm::add_with(&d, "up0", "192.168.50.2/24", &["--role", "uplink"]);
    d.ok(&["vtep", "set", "--ip", "192.168.50.1/24", "--uplink", "up0"]);
    network(&d);
    let cni = Cni::new(
        &d,
        json!({"runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}}),
    );
    let a = Netns::new("cnia");
    let (ip_a, _) = verify(&cni.ok("ADD", "ctr-a", &a, ""), &a, "1.0.0");
    let svc = d.json(&["service", "list"]);
    assert_eq!(svc[0]["node_port"], 8080, "{svc}");
    assert!(svc.to_string().contains(&format!("{ip_a}:80")), "{svc}");
    let mut server = a.spawn(&[PYTHON, &py_script("name_server.py"), "80", "ctr", "--peer"]);
    std::thread::sleep(Duration::from_millis(500));
    let got = host_b.ns.exec_ok(&[PYTHON, &py_script("tcp_names.py"), "192.168.50.1", "8080", "5"]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(
        serde_json::from_str::<Value>(got.trim()).unwrap(),
        json!({"ctr 192.168.50.2": 5}),
        "host B reaches the container at the host's port 8080, and the container sees host B"
    );
    cni.ok("DEL", "ctr-a", &a, "");
    assert!(d.json(&["service", "list"]).as_array().unwrap().is_empty(), "the mapping goes with the container");
}

#[test]
fn a_refused_add_leaves_nothing_behind() {
    let _shared = shared();
    let d = Daemon::start();
    network(&d);
    let a = Netns::new("cnia");
    // Each refused at a later step of ADD: the security group, then a host port.
    for extra in [
        json!({"securityGroup": {"rules": [{"priority": 1, "proto": "bogus", "action": "allow"}]}}),
        json!({"runtimeConfig": {"portMappings": [{"hostPort": 40000, "containerPort": 80}]}}),
    ] {
        let cni = Cni::new(&d, extra.clone());
        let r = cni.run("ADD", "ctr-a", &a, "K8S_POD_NAME=a");
        assert!(!r.ok && r.out["code"] == 100, "{extra}: {}", r.out);
        assert!(d.json(&["attachment", "list"]).as_array().unwrap().is_empty());
        assert!(!d.ok(&["port", "list"]).contains("vsc"), "{}", d.ok(&["port", "list"]));
        assert!(d.json(&["ipam", "list"]).as_array().unwrap().is_empty(), "no lease kept");
        assert!(d.json(&["acl", "list"]).as_array().unwrap().is_empty());
        assert!(d.json(&["service", "list"]).as_array().unwrap().is_empty());
        assert!(!d.ok(&["endpoint", "list"]).contains("10.1.0."), "{}", d.ok(&["endpoint", "list"]));
        let host_end = host_end_name(cni.conf["name"].as_str().unwrap(), "ctr-a", "eth0");
        assert!(!links_named("vsc").contains(&host_end), "{host_end} is left behind");
        assert!(a.exec(&["ip", "link", "show", "eth0"]).status.code() != Some(0), "no eth0 left in the namespace");
    }
    // And then it attaches.
    let (ip, _) = verify(&Cni::new(&d, json!({})).ok("ADD", "ctr-a", &a, "K8S_POD_NAME=a"), &a, "1.0.0");
    assert_eq!(ip, "10.1.0.2");
}
