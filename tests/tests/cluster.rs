//! Many hosts, one network: three switches ("hosts") on a shared underlay (a Linux
//! bridge in a namespace), each in the cluster through a real 3-member etcd (Debian's
//! etcd-server) on loopback. Containers attached by the CNI plugin reach each other
//! across VXLAN with no FIB entry or flood list written by hand; the store's outage,
//! a compacted history and a switch's crash change nothing that was forwarding.
use serde_json::{json, Value};
use std::{
    collections::BTreeSet,
    process::{Child, Command},
    time::{Duration, Instant},
};
use vswitch_tests::*;

/// A 3-member etcd cluster on loopback. Clients (the switches) reach it on 127.0.0.1;
/// the test's own etcdctl on 127.0.0.2, so the members can be brought up where only
/// the test reaches them.
struct Etcd {
    dir: TempDir,
    token: String,
    members: Vec<Member>,
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

impl Etcd {
    fn start() -> Etcd {
        let dir = TempDir::new("etcd");
        let members = (0..3)
            .map(|i| Member { name: format!("e{i}"), client: free_port(), peer: free_port(), child: None })
            .collect();
        let mut e = Etcd { dir, token: unique("vst-etcd"), members };
        e.start_all(true);
        e
    }

    /// The switches' `--cluster` value.
    fn url(&self) -> String {
        let eps: Vec<String> = self.members.iter().map(|m| format!("127.0.0.1:{}", m.client)).collect();
        format!("etcd://{}", eps.join(","))
    }

    fn start_member(&mut self, i: usize, reachable: bool) {
        let cluster: Vec<String> =
            self.members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer)).collect();
        let m = &self.members[i];
        let mut listen = vec![format!("http://127.0.0.2:{}", m.client)];
        if reachable {
            listen.push(format!("http://127.0.0.1:{}", m.client));
        }
        let log =
            std::fs::File::options().create(true).append(true).open(self.dir.path(&format!("{}.log", m.name))).unwrap();
        let child = Command::new("etcd")
            .args(["--name", &m.name, "--data-dir"])
            .arg(self.dir.path(&m.name))
            .args(["--listen-client-urls", &listen.join(",")])
            .args(["--advertise-client-urls", &format!("http://127.0.0.2:{}", m.client)])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{}", m.peer)])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{}", m.peer)])
            .args(["--initial-cluster", &cluster.join(","), "--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", "new", "--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start etcd (apt install etcd-server)");
        self.members[i].child = Some(child);
    }

    fn start_all(&mut self, reachable: bool) {
        for i in 0..self.members.len() {
            self.start_member(i, reachable);
        }
        assert!(
            wait_until(Duration::from_secs(20), || self.ctl_try(&["endpoint", "health", "--cluster"]).is_some()),
            "etcd did not become healthy"
        );
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    fn ctl_try(&self, args: &[&str]) -> Option<String> {
        let live: Vec<String> =
            self.members.iter().filter(|m| m.child.is_some()).map(|m| format!("127.0.0.2:{}", m.client)).collect();
        let o = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", live.join(",")))
            .args(["--command-timeout=3s"])
            .args(args)
            .output()
            .expect("etcdctl (apt install etcd-client)");
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    fn ctl(&self, args: &[&str]) -> String {
        self.ctl_try(args).unwrap_or_else(|| panic!("etcdctl {args:?} failed"))
    }

    /// Every key and value under `prefix`.
    fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let out = self.ctl(&["get", "--prefix", prefix]);
        let lines: Vec<&str> = out.lines().collect();
        lines.chunks(2).filter(|c| c.len() == 2).map(|c| (c[0].to_string(), c[1].to_string())).collect()
    }

    fn revision(&self) -> i64 {
        let v: Value = serde_json::from_str(&self.ctl(&["get", "/", "-w", "json"])).unwrap();
        v["header"]["revision"].as_i64().unwrap()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// The underlay: a bridge in its own namespace, one veth per host.
struct Underlay {
    ns: Netns,
}

impl Underlay {
    fn new() -> Underlay {
        let ns = Netns::new("ul");
        ns.exec_ok(&["ip", "link", "add", "br0", "type", "bridge"]);
        ns.exec_ok(&["ip", "link", "set", "br0", "up"]);
        Underlay { ns }
    }

    /// A veth with one end on the bridge; the other (returned) stays in the root
    /// namespace for a switch's uplink.
    fn plug(&self) -> String {
        let v = std::mem::ManuallyDrop::new(Veth::new("ul"));
        run_ok("ip", &["link", "set", &v.peer, "netns", &self.ns.name]);
        self.ns.exec_ok(&["ip", "link", "set", &v.peer, "master", "br0", "up"]);
        v.host.clone()
    }
}

struct Host {
    d: Daemon,
    name: String,
    vtep: String,
}

impl Host {
    fn start(name: &str, i: usize, etcd: &Etcd, ul: &Underlay) -> Host {
        let h = Host::start_bare(name, i, etcd, ul);
        h.d.ok_line("network add 100 --gateway 10.1.0.1/24");
        h
    }

    /// A host with its VTEP and uplink, and no network of its own.
    fn start_bare(name: &str, i: usize, etcd: &Etcd, ul: &Underlay) -> Host {
        let d = Daemon::start_with(DaemonOpts {
            extra_args: [
                "--cluster",
                &etcd.url(),
                "--node",
                name,
                "--pmd-idle-sleep-us",
                "200",
                "--log-level",
                "info,control::cluster=debug",
            ]
            .map(String::from)
            .to_vec(),
            ..Default::default()
        });
        let vtep = format!("192.168.60.{}", i + 1);
        let uplink = ul.plug();
        d.ok(&["port", "add", "up0", &format!("kernel:iface={uplink}"), "--role", "uplink"]);
        d.ok(&["vtep", "set", "--ip", &format!("{vtep}/24"), "--uplink", "up0"]);
        Host { d, name: name.into(), vtep }
    }

    fn status(&self) -> Value {
        self.d.json(&["cluster", "status"])
    }

    /// (MAC, VTEP) of every FIB entry the cluster gave this host in VNI 100.
    fn cluster_fib(&self) -> BTreeSet<(String, String)> {
        let fib = self.d.json(&["fib", "list", "100"]);
        fib.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "cluster")
            .map(|e| (e["mac"].as_str().unwrap().to_string(), e["vtep"].as_str().unwrap().to_string()))
            .collect()
    }
}

/// The CNI config of network `name` (VNI 100) on host `h`: vswitchd's own IPAM.
fn cni_conf(h: &Host, name: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "type": "vswitch",
        "vni": 100,
        "socket": h.d.socket.display().to_string(),
        "ipam": {"type": "vswitch"},
    })
}

/// The container's (address, MAC) from an ADD that must have succeeded.
fn added(o: &std::process::Output) -> (String, String) {
    assert!(o.status.success(), "ADD: {}", String::from_utf8_lossy(&o.stdout));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let ip = r["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string();
    let mac = r["interfaces"].as_array().unwrap().iter().find(|i| i.get("sandbox").is_some()).unwrap()["mac"]
        .as_str()
        .unwrap()
        .to_string();
    (ip, mac)
}

/// A container attached by vswitch-cni (CNI_ARGS `args`), in a network of its own
/// name: (its address, its MAC, its namespace).
fn attach_with(h: &Host, container: &str, args: &str) -> (String, String, Netns) {
    let ns = Netns::new(&format!("{container}-"));
    let conf = cni_conf(h, &unique("tenant"));
    let o = run_cni_plugin(&conf, "ADD", container, &format!("/var/run/netns/{}", ns.name), args);
    assert!(
        o.status.success(),
        "ADD {container} on {}: {}\n{}",
        h.name,
        String::from_utf8_lossy(&o.stdout),
        h.d.log_tail()
    );
    let (ip, mac) = added(&o);
    // Only the traffic the test sends: no IPv6 chatter (router solicitations, MLD).
    ns.quiet("eth0");
    (ip, mac, ns)
}

/// A container attached with a fixed address: (MAC, its namespace).
fn attach(h: &Host, container: &str, ip: &str) -> (String, Netns) {
    let (_, mac, ns) = attach_with(h, container, &format!("IP={ip}"));
    (mac, ns)
}

/// Waits until `f` holds on every host; how long it took.
fn converge(hosts: &[&Host], what: &str, f: impl Fn(&Host) -> bool) -> Duration {
    let t = Instant::now();
    let ok = wait_until(Duration::from_secs(10), || hosts.iter().all(|h| f(h)));
    assert!(
        ok,
        "{what}: not converged in 10 s:\n{}",
        hosts.iter().map(|h| format!("{}: {}\n{}", h.name, h.status(), h.d.log_tail())).collect::<Vec<_>>().join("\n")
    );
    t.elapsed()
}

/// Each host's cluster entries are exactly what the store holds of the other hosts'
/// endpoints in VNI 100 (nothing lost, nothing stale or doubled).
fn matches_store(etcd: &Etcd) -> impl Fn(&Host) -> bool {
    let mut nodes = std::collections::BTreeMap::new();
    for (k, v) in etcd.get_prefix("/vswitch/nodes/") {
        let rec: Value = serde_json::from_str(&v).unwrap();
        nodes.insert(k.rsplit('/').next().unwrap().to_string(), rec["vtep"].as_str().unwrap().to_string());
    }
    let eps: Vec<(String, String)> = etcd
        .get_prefix("/vswitch/endpoints/100/")
        .into_iter()
        .map(|(k, v)| {
            let node = k.split('/').nth(4).unwrap().to_string();
            let rec: Value = serde_json::from_str(&v).unwrap();
            (node, rec["mac"].as_str().unwrap().to_string())
        })
        .collect();
    move |h: &Host| {
        let want: BTreeSet<(String, String)> = eps
            .iter()
            .filter(|(node, _)| *node != h.name)
            .filter_map(|(node, mac)| Some((mac.clone(), nodes.get(node)?.clone())))
            .collect();
        h.cluster_fib() == want
    }
}

fn assert_as_store(etcd: &Etcd, hosts: &[&Host]) {
    let exact = matches_store(etcd);
    for h in hosts {
        assert!(
            exact(h),
            "{}'s cluster entries are exactly the store's: {:?}\n{}\n{}",
            h.name,
            h.cluster_fib(),
            h.status(),
            h.d.log_text()
        );
    }
}

fn ping(ns: &Netns, ip: &str) {
    ns.exec_ok(&["ping", "-c", "3", "-i", "0.2", "-W", "2", ip]);
}

#[test]
fn containers_on_three_hosts_share_one_network_through_etcd_and_ride_out_its_outage() {
    let t_test = Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1} s  {what}", t_test.elapsed().as_secs_f64());
    let mut etcd = Etcd::start();
    phase("etcd up");
    let ul = Underlay::new();
    let (a, b, mut c) =
        (Host::start("a", 0, &etcd, &ul), Host::start("b", 1, &etcd, &ul), Host::start("c", 2, &etcd, &ul));
    let all = || [&a, &b];
    for h in all() {
        converge(&[h], "connected", |h| h.status()["connected"] == true);
    }

    phase("switches up");
    // Containers on a and b: each switch programs the other's MAC toward its VTEP.
    let t = Instant::now();
    let (mac_a, ns_a) = attach(&a, "ctr-a", "10.1.0.11");
    let (mac_b, ns_b) = attach(&b, "ctr-b", "10.1.0.12");
    converge(&all(), "a's and b's containers", |h| h.cluster_fib().len() == 1);
    eprintln!("two ADDs and convergence on both hosts: {:?}", t.elapsed());
    assert!(b.cluster_fib().contains(&(mac_a.clone(), a.vtep.clone())));
    assert!(a.cluster_fib().contains(&(mac_b.clone(), b.vtep.clone())));
    let eps = b.d.json(&["endpoint", "list", "100"]);
    assert!(
        eps.as_array().unwrap().iter().any(|e| e["ip"] == "10.1.0.11" && e["source"] == "cluster"),
        "b answers ARP for a's container: {eps}"
    );
    let nets = a.d.json(&["network", "list"]);
    assert_eq!(nets[0]["cluster_vteps"], json!([b.vtep]), "a floods only to b, which has endpoints: {nets}");
    assert_eq!(nets[0]["flood_vteps"], json!([]), "nobody wrote a flood list");

    phase("a and b converged");
    // Pings, with the underlay watched: no frame is flooded across it (the containers'
    // ARP is answered by their own switch, every MAC is known).
    let cap = TempDir::new("ulcap");
    let file = cap.path("ul.pcap");
    let out = file.to_str().unwrap();
    let mut dump = ul.ns.spawn(&["tshark", "-q", "-s", "128", "-i", "br0", "-f", "udp port 4789", "-w", out]);
    // Capturing once the file has its header (tshark can take seconds to start on a busy machine).
    let started = wait_until(Duration::from_secs(15), || std::fs::metadata(&file).is_ok_and(|m| m.len() > 0));
    assert!(started, "tshark did not start capturing");
    std::thread::sleep(Duration::from_millis(500));
    ping(&ns_a, "10.1.0.12");
    ping(&ns_b, "10.1.0.11");
    std::thread::sleep(Duration::from_millis(300));
    interrupt(&dump);
    let _ = dump.wait();
    let frames = tshark_fields(&file, &["vxlan.vni", "eth.dst"]);
    assert!(frames.len() >= 12, "the pings crossed the underlay in VXLAN: {} frames", frames.len());
    let known: BTreeSet<&str> = [mac_a.as_str(), mac_b.as_str()].into();
    let flooded: Vec<&String> = frames
        .iter()
        .filter(|f| {
            let inner = f.split('|').nth(1).and_then(|d| d.split(',').nth(1)).unwrap_or("");
            !known.contains(inner)
        })
        .collect();
    assert!(
        flooded.is_empty(),
        "frames flooded or to unknown MACs across the underlay: {:?}",
        &flooded[..flooded.len().min(5)]
    );
    // And TCP, for volume.
    let got = vswitch_tests::tcp::iperf3(&ns_b, "10.1.0.12", &ns_a, &[]);
    assert!(got > 1_000_000, "iperf3 across VXLAN moved {got} bytes");

    phase("traffic checked");
    // A fourth node that is not running: its records alone program the others.
    etcd.ctl(&["put", "/vswitch/nodes/ghost", r#"{"vtep":"192.168.60.99","udp_port":4789,"boot":1,"vnis":[100]}"#]);
    let ghost = r#"{"mac":"02:00:00:00:99:99","ips":["10.1.0.99"],"port":"p"}"#;
    etcd.ctl(&["put", "/vswitch/endpoints/100/ghost/02:00:00:00:99:99", ghost]);

    // One member killed: nothing changes; a container on c reaches a and b.
    etcd.kill(0);
    let (mac_c, ns_c) = attach(&c, "ctr-c", "10.1.0.13");
    let took = converge(&[&a, &b, &c], "c's container with a member down", |h| h.cluster_fib().len() == 3);
    eprintln!("MEMBERDOWN {took:?}");
    assert!(a.cluster_fib().contains(&(mac_c.clone(), c.vtep.clone())));
    assert!(a.cluster_fib().contains(&("02:00:00:00:99:99".into(), "192.168.60.99".into())));
    ping(&ns_c, "10.1.0.11");
    etcd.start_member(0, true);

    phase("c's container converged");
    // Every member killed: forwarding goes on, ADDs succeed locally and wait.
    etcd.kill_all();
    let pinger = ns_a.spawn(&["ping", "-c", "40", "-i", "0.1", "-W", "1", "10.1.0.12"]);
    let (mac_a2, ns_a2) = attach(&a, "ctr-a2", "10.1.0.21");
    converge(&[&a], "a sees the outage", |h| {
        let s = h.status();
        s["connected"] == false && s["pending"].as_u64() > Some(0)
    });
    let out = pinger.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" 0% packet loss"), "no loss during the outage: {text}");
    ping(&ns_a2, "10.1.0.12");

    phase("outage checked");
    // The store comes back for the test alone first: the ghost's endpoint goes, c's
    // record is lost, and the history the switches would resume from is compacted.
    etcd.start_all(false);
    etcd.ctl(&["del", "/vswitch/endpoints/100/ghost/", "--prefix"]);
    etcd.ctl(&["del", "/vswitch/endpoints/100/c/", "--prefix"]);
    let rev = etcd.revision();
    etcd.ctl(&["compact", &rev.to_string(), "--physical"]);
    etcd.kill_all();
    etcd.start_all(true);
    let back = Instant::now();
    // a: b's and c's; b: a's two and c's; c: a's two and b's. The ghost is gone; c
    // wrote its record back.
    let want = |h: &Host| if h.name == "a" { 2 } else { 3 };
    // Converged: nothing pending anywhere, and each host's entries exactly what the
    // store then holds of the others.
    let t =
        converge(&[&a, &b, &c], "after the store's return", |h| h.status()["pending"] == 0 && matches_store(&etcd)(h));
    assert_as_store(&etcd, &[&a, &b, &c]);
    for h in [&a, &b, &c] {
        assert_eq!(h.cluster_fib().len(), want(h), "{}: {:?}", h.name, h.cluster_fib());
    }
    eprintln!("converged {t:?} after the store came back with a compacted history");
    assert!(back.elapsed() < Duration::from_secs(3), "converged within about a second of the store's return");
    assert!(b.cluster_fib().contains(&(mac_a2.clone(), a.vtep.clone())), "{}", b.d.log_text());
    assert!(a.status()["relists"].as_u64().unwrap() > 0, "a read the compacted history whole: {}", a.status());

    phase("store back, converged");
    // c crashes: the others keep its endpoints and see it down; it comes back with
    // the same state.
    c.d.kill9();
    // Down once its liveness lease (10 s) runs out.
    let down = wait_until(Duration::from_secs(25), || {
        a.status()["nodes"].as_array().unwrap().iter().any(|n| n["name"] == "c" && n["alive"] == false)
    });
    assert!(down, "a shows c down: {}", a.status());
    assert_eq!(a.cluster_fib().len(), 2, "a keeps what it had of c while c is down");
    phase("c shown down");
    c.d.start_again();
    let t0 = Instant::now();
    converge(&[&a, &b, &c], "c back", |h| {
        let s = h.status();
        s["connected"] == true && s["pending"] == 0 && matches_store(&etcd)(h)
    });
    assert_as_store(&etcd, &[&a, &b, &c]);
    let first = wait_until(Duration::from_secs(10), || {
        ns_c.exec(&["ping", "-c", "1", "-W", "1", "10.1.0.12"]).status.success()
    });
    eprintln!("c restarted: first ping after {:?}", t0.elapsed());
    assert!(first, "c's container reaches b's after c's restart");
    ping(&ns_c, "10.1.0.12");

    // A clean stop gives the liveness lease back: b is shown down at once, and its
    // endpoints stay with the others.
    let mut b = b;
    let st = b.d.stop();
    assert!(st.success(), "{st}");
    let down = wait_until(Duration::from_secs(3), || {
        a.status()["nodes"].as_array().unwrap().iter().any(|n| n["name"] == "b" && n["alive"] == false)
    });
    assert!(down, "a shows b down right after b stopped: {}", a.status());
    assert_eq!(a.cluster_fib().len(), 2, "a keeps b's endpoints");
}

/// SIGINT, so the capture is written out whole.
fn interrupt(c: &Child) {
    let _ = Command::new("kill").args(["-INT", &c.id().to_string()]).status();
}

/// A CA, and a certificate it signed for 127.0.0.1 (`name`.pem, `name`.key) per name.
fn certificates(dir: &TempDir, names: &[&str]) {
    let p = |f: &str| dir.path(f).display().to_string();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    let (ca_key, ca_pem) = (p("ca.key"), p("ca.pem"));
    ca.extend(["-keyout", &ca_key, "-out", &ca_pem, "-days", "2", "-subj", "/CN=vswitch-test-ca"]);
    run_ok("openssl", &ca);
    let ext = p("ext.cnf");
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n").unwrap();
    for n in names {
        let (key, csr, pem) = (p(&format!("{n}.key")), p(&format!("{n}.csr")), p(&format!("{n}.pem")));
        let subject = format!("/CN={n}");
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
        run_ok("openssl", &req);
        run_ok(
            "openssl",
            &["x509", "-req", "-in", &csr, "-CA", &ca_pem, "-CAkey", &ca_key, "-CAcreateserial", "-out", &pem]
                .into_iter()
                .chain(["-days", "2", "-extfile", &ext])
                .collect::<Vec<_>>(),
        );
    }
}

#[test]
fn a_switch_joins_a_store_that_asks_for_client_certificates() {
    let dir = TempDir::new("etcdtls");
    certificates(&dir, &["etcd", "node"]);
    let p = |f: &str| dir.path(f).display().to_string();
    let (client, peer) = (free_port(), free_port());
    let url = format!("https://127.0.0.1:{client}");
    let log = std::fs::File::create(dir.path("etcd.log")).unwrap();
    let mut etcd = Command::new("etcd")
        .args(["--name", "t0", "--data-dir", &p("data"), "--listen-client-urls", &url, "--advertise-client-urls", &url])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-cluster", &format!("t0=http://127.0.0.1:{peer}")])
        .args(["--cert-file", &p("etcd.pem"), "--key-file", &p("etcd.key"), "--trusted-ca-file", &p("ca.pem")])
        .arg("--client-cert-auth")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start etcd");
    let etcdctl = |args: &[&str]| {
        let certs = [
            format!("--cacert={}", p("ca.pem")),
            format!("--cert={}", p("node.pem")),
            format!("--key={}", p("node.key")),
        ];
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={url}"))
            .args(certs)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(
        wait_until(Duration::from_secs(20), || etcdctl(&["endpoint", "health"]).status.success()),
        "etcd with TLS did not come up"
    );

    let start = |name: &str, certs: &[String]| {
        let mut extra: Vec<String> =
            ["--cluster", &format!("etcd://127.0.0.1:{client}"), "--node", name, "--pmd-idle-sleep-us", "200"]
                .map(String::from)
                .to_vec();
        extra.extend(certs.iter().cloned());
        let d = Daemon::start_with(DaemonOpts { extra_args: extra, ..Default::default() });
        d.ok(&["port", "add", "up0", "net_null0", "--role", "uplink"]);
        d.ok(&["vtep", "set", "--ip", "192.168.61.1/24", "--uplink", "up0"]);
        d
    };
    let with_cert = start(
        "tls1",
        &[
            format!("--cluster-ca={}", p("ca.pem")),
            format!("--cluster-cert={}", p("node.pem")),
            format!("--cluster-key={}", p("node.key")),
        ],
    );
    assert!(
        wait_until(Duration::from_secs(10), || with_cert.json(&["cluster", "status"])["pending"] == 0
            && with_cert.json(&["cluster", "status"])["connected"] == true),
        "{}\n{}",
        with_cert.json(&["cluster", "status"]),
        with_cert.log_tail()
    );
    let rec = String::from_utf8(etcdctl(&["get", "/vswitch/nodes/tls1", "--print-value-only"]).stdout).unwrap();
    assert!(rec.contains("\"vtep\":\"192.168.61.1\""), "the node record went over TLS: {rec}");

    // Without a client certificate the store refuses it, and status says so.
    let without = start("tls2", &[format!("--cluster-ca={}", p("ca.pem"))]);
    std::thread::sleep(Duration::from_secs(3));
    let s = without.json(&["cluster", "status"]);
    assert!(s["connected"] == false && s["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{s}");
    assert!(etcdctl(&["get", "/vswitch/nodes/tls2"]).stdout.is_empty(), "nothing written without a certificate");
    // A key without its certificate is refused at start, with the reason.
    let o = Command::new(bin("vswitchd"))
        .args(["--cluster", "etcd://127.0.0.1:1", "--node", "x", "--cluster-key", &p("node.key"), "--", "-l", "0"])
        .output()
        .unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("cluster-cert"), "{o:?}");
    let _ = etcd.kill();
    let _ = etcd.wait();
}

/// The backends of service `name` as a host runs it (none: no such service).
fn backends(h: &Host, name: &str) -> Option<Vec<String>> {
    let list = h.d.json(&["service", "list"]);
    let s = list.as_array().unwrap().iter().find(|s| s["name"] == name)?.clone();
    Some(s["backends"].as_array().unwrap().iter().map(|b| b["addr"].as_str().unwrap().to_string()).collect())
}

fn has_rule(h: &Host, id: u64) -> bool {
    h.d.json(&["acl", "list"]).as_array().unwrap().iter().any(|r| r["id"] == id)
}

fn pings(ns: &Netns, ip: &str) -> bool {
    ns.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", ip]).status.success()
}

#[test]
fn networks_rules_and_services_written_once_apply_on_every_host_and_no_update_is_lost() {
    let etcd = Etcd::start();
    let ul = Underlay::new();
    let (a, b, mut c) = (
        Host::start_bare("a", 0, &etcd, &ul),
        Host::start_bare("b", 1, &etcd, &ul),
        Host::start_bare("c", 2, &etcd, &ul),
    );
    converge(&[&a, &b, &c], "connected", |h| h.status()["connected"] == true);
    let all = [&a, &b, &c];

    // One network for every host, written once from a; containers on a and b use it.
    let out = a.d.ok_line("--cluster network add 100 --gateway 10.1.0.1/24");
    assert!(out.contains("put networks/100"), "{out}");
    let t = converge(&all, "network 100 everywhere", |h| {
        h.d.json(&["network", "list"]).as_array().unwrap().iter().any(|n| n["vni"] == 100)
    });
    eprintln!("a shared network on every host {t:?} after the write");
    let dump = c.d.json(&["dump"]);
    assert_eq!(dump["cluster"]["networks"], json!([100]), "c knows network 100 is the cluster's: {dump}");
    let (_, ns_a) = attach(&a, "ctr-a", "10.1.0.11");
    let (_, _ns_b) = attach(&b, "ctr-b", "10.1.0.12");
    converge(&[&a, &b], "a's and b's containers", |h| h.cluster_fib().len() == 1);
    ping(&ns_a, "10.1.0.12");

    // A security-group rule written once from b stops the traffic on every host.
    let out = b.d.ok_line("--cluster acl add --priority 100 --vni 100 --proto icmp --action deny");
    assert!(out.contains("put acl/2147483648"), "{out}");
    let t = converge(&all, "the rule everywhere", |h| has_rule(h, 2147483648));
    eprintln!("a shared rule on every host {t:?} after the write");
    assert!(!pings(&ns_a, "10.1.0.12"), "the cluster's rule drops a's pings");
    // The cluster's entries are not a node's to change.
    let e = b.d.err(&["acl", "del", "2147483648"]);
    assert!(e.contains("the cluster's"), "{e}");
    let e = c.d.err(&["network", "del", "100"]);
    assert!(e.contains("the cluster's"), "{e}");
    let e = a.d.err(&["--cluster", "port", "del", "up0"]);
    assert!(e.contains("each node's own"), "{e}");
    a.d.ok_line("--cluster acl del 2147483648");
    converge(&all, "the rule gone everywhere", |h| !has_rule(h, 2147483648));
    assert!(wait_until(Duration::from_secs(5), || pings(&ns_a, "10.1.0.12")), "pings pass again");

    // A service, then two operators who both read revision R and change it: the first
    // wins; the second is told, and nothing of theirs is written.
    a.d.ok_line("--cluster service add web --vni 100 --vip 10.1.0.100:80 --proto tcp --backend 10.1.0.12:80");
    converge(&all, "the service everywhere", |h| backends(h, "web") == Some(vec!["10.1.0.12:80".into()]));
    let dir = TempDir::new("shared");
    let mut seen_by_a = a.d.json(&["dump", "--cluster"]);
    let mut seen_by_b = b.d.json(&["dump", "--cluster"]);
    assert_eq!(seen_by_a, seen_by_b);
    assert!(seen_by_a["revision"].as_i64().unwrap() > 0);
    seen_by_a["services"][0]["backends"] = json!(["10.1.0.11:80"]);
    seen_by_b["services"][0]["backends"] = json!(["10.1.0.13:80"]);
    let (fa, fb) = (dir.path("a.json"), dir.path("b.json"));
    std::fs::write(&fa, seen_by_a.to_string()).unwrap();
    std::fs::write(&fb, seen_by_b.to_string()).unwrap();
    let out = a.d.ok(&["apply", "-f", fa.to_str().unwrap(), "--cluster"]);
    assert!(out.contains("put services/web"), "{out}");
    let e = b.d.err(&["apply", "-f", fb.to_str().unwrap(), "--cluster"]);
    assert!(e.contains("conflict") && e.contains("services/web") && e.contains("nothing was written"), "{e}");
    // b's stale file with a change of its own elsewhere: that change goes in, a's stays.
    seen_by_b["services"][0]["backends"] = json!(["10.1.0.12:80"]);
    seen_by_b["networks"].as_array_mut().unwrap().push(json!({"vni": 200}));
    std::fs::write(&fb, seen_by_b.to_string()).unwrap();
    let out = b.d.ok(&["apply", "-f", fb.to_str().unwrap(), "--cluster"]);
    assert!(out.contains("put networks/200") && !out.contains("services/web"), "{out}");
    converge(&all, "a's backends and b's network everywhere", |h| {
        backends(h, "web") == Some(vec!["10.1.0.11:80".into()])
            && h.d.json(&["network", "list"]).as_array().unwrap().iter().any(|n| n["vni"] == 200)
    });

    // Truly concurrent: two operators on two hosts, both from the same revision, at once.
    for round in 0..5 {
        let rev = a.d.json(&["dump", "--cluster"])["revision"].as_i64().unwrap().to_string();
        let ops: Vec<(String, std::process::Child)> = [(&a, "10.1.0.21:80"), (&b, "10.1.0.22:80")]
            .into_iter()
            .map(|(h, backend)| {
                let child = Command::new(bin("vswitchctl"))
                    .arg("--socket")
                    .arg(&h.d.socket)
                    .args(["--cluster", "--if-revision", &rev, "service", "set-backends", "web"])
                    .args(["--backend", &format!("{backend}{}", if round % 2 == 0 { "" } else { "@2" })])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                (backend.to_string(), child)
            })
            .collect();
        let results: Vec<(String, std::process::Output)> =
            ops.into_iter().map(|(b, c)| (b, c.wait_with_output().unwrap())).collect();
        let won: Vec<&String> = results.iter().filter(|(_, o)| o.status.success()).map(|(b, _)| b).collect();
        assert_eq!(won.len(), 1, "round {round}: exactly one wins: {results:?}");
        let lost = results.iter().find(|(_, o)| !o.status.success()).unwrap();
        let told = String::from_utf8_lossy(&lost.1.stderr);
        assert!(told.contains("conflict") && told.contains("services/web"), "round {round}: the other is told: {told}");
        let want = vec![format!("{}{}", won[0], if round % 2 == 0 { "" } else { "@2" })];
        converge(&all, "the winner's backends everywhere", |h| {
            let list = h.d.json(&["service", "list"]);
            let s = list.as_array().unwrap().iter().find(|s| s["name"] == "web").cloned().unwrap_or_default();
            let spec: Vec<String> = s["backends"]
                .as_array()
                .map(|bs| {
                    bs.iter()
                        .map(|b| {
                            let w = b["weight"].as_u64().unwrap_or(1);
                            let addr = b["addr"].as_str().unwrap_or_default();
                            if w == 1 {
                                addr.to_string()
                            } else {
                                format!("{addr}@{w}")
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            spec == want
        });
    }

    // c crashes and comes back while the store is away: its local store has the
    // cluster's network and service, still marked as the cluster's.
    c.d.kill9();
    let mut etcd = etcd;
    etcd.kill_all();
    c.d.start_again();
    assert!(backends(&c, "web").is_some(), "c has the service from its own store");
    let nets = c.d.json(&["network", "list"]);
    assert!(nets.as_array().unwrap().iter().any(|n| n["vni"] == 100), "{nets}");
    let e = c.d.err(&["service", "del", "web"]);
    assert!(e.contains("the cluster's"), "{e}");
    // Writes need the store, and say so.
    let e = a.d.err(&["--cluster", "service", "del", "web"]);
    assert!(e.contains("nothing was written"), "{e}");
    etcd.start_all(true);
    let del = wait_until(Duration::from_secs(10), || a.d.ctl(&["--cluster", "service", "del", "web"]).status.success());
    assert!(del, "the write goes through once the store is back: {}", a.status());
    let all = [&a, &b, &c];
    converge(&all, "the service gone everywhere", |h| backends(h, "web").is_none());
    for h in all {
        let s = h.status();
        assert!(s.get("shared_unapplied").is_none(), "{}: {s}", h.name);
    }
}

/// A container whose address the built-in IPAM chose: (its address, its namespace).
fn attach_any(h: &Host, container: &str) -> (String, Netns) {
    let (ip, _, ns) = attach_with(h, container, "");
    (ip, ns)
}

/// The blocks the store says `node` holds, as (first address, prefix length).
fn blocks_of(etcd: &Etcd, node: &str) -> Vec<(std::net::Ipv4Addr, u32)> {
    etcd.get_prefix("/vswitch/blocks/100/")
        .into_iter()
        .filter(|(_, v)| serde_json::from_str::<Value>(v).unwrap()["node"] == node)
        .map(|(k, _)| {
            let (a, p) = k.rsplit('/').next().unwrap().split_once('_').unwrap();
            (a.parse().unwrap(), p.parse().unwrap())
        })
        .collect()
}

fn inside(ip: &str, blocks: &[(std::net::Ipv4Addr, u32)]) -> bool {
    let ip = u32::from(ip.parse::<std::net::Ipv4Addr>().unwrap());
    blocks.iter().any(|(a, p)| ip >> (32 - p) == u32::from(*a) >> (32 - p))
}

#[test]
fn each_host_gives_addresses_from_the_blocks_it_claimed_in_the_store() {
    let mut etcd = Etcd::start();
    let ul = Underlay::new();
    let (mut a, b) = (Host::start("a", 0, &etcd, &ul), Host::start("b", 1, &etcd, &ul));
    converge(&[&a, &b], "connected", |h| h.status()["connected"] == true);
    // A second switch started under a's name (another VTEP) writes nothing, and says why.
    let twin = Host::start_bare("a", 5, &etcd, &ul);
    let told = wait_until(Duration::from_secs(5), || {
        twin.status()["last_error"].as_str().is_some_and(|e| e.contains("in use by another switch"))
    });
    assert!(told, "{}", twin.status());
    let rec: Value = serde_json::from_str(&etcd.ctl(&["get", "/vswitch/nodes/a", "--print-value-only"])).unwrap();
    assert_eq!(rec["vtep"], a.vtep, "a's record is a's");
    drop(twin);
    // The same CNI config on both hosts, the network's whole /24, no range per host.
    let (ip_a1, ns_a1) = attach_any(&a, "blk-a1");
    let (ip_b1, ns_b1) = attach_any(&b, "blk-b1");
    let (ip_a2, _ns_a2) = attach_any(&a, "blk-a2");
    let (ip_b2, _ns_b2) = attach_any(&b, "blk-b2");
    let ips: BTreeSet<&String> = [&ip_a1, &ip_a2, &ip_b1, &ip_b2].into();
    assert_eq!(ips.len(), 4, "no address given twice: {ips:?}");
    let (blocks_a, blocks_b) = (blocks_of(&etcd, "a"), blocks_of(&etcd, "b"));
    assert_eq!((blocks_a.len(), blocks_b.len()), (1, 1), "one block each: {blocks_a:?} {blocks_b:?}");
    assert_ne!(blocks_a, blocks_b);
    assert!(inside(&ip_a1, &blocks_a) && inside(&ip_a2, &blocks_a), "{ip_a1} {ip_a2} in a's {blocks_a:?}");
    assert!(inside(&ip_b1, &blocks_b) && inside(&ip_b2, &blocks_b), "{ip_b1} {ip_b2} in b's {blocks_b:?}");
    assert!(a.status()["blocks"].as_array().unwrap().len() == 1, "{}", a.status());
    converge(&[&a, &b], "each other's containers", |h| h.cluster_fib().len() == 2);
    ping(&ns_a1, &ip_b1);
    ping(&ns_b1, &ip_a1);

    // A workload moves from a to b (DEL there, ADD here, as a StatefulSet pod does): it
    // keeps its address (from a's block) and its MAC.
    let pod = "K8S_POD_NAMESPACE=db;K8S_POD_NAME=web-0";
    let add = |h: &Host, ctr: &str, ns: &Netns| {
        run_cni_plugin(&cni_conf(h, "pods"), "ADD", ctr, &format!("/var/run/netns/{}", ns.name), pod)
    };
    let ns_w1 = Netns::new("web0a-");
    let (ip_w, mac_w) = added(&add(&a, "web-0-on-a", &ns_w1));
    assert!(inside(&ip_w, &blocks_a), "{ip_w}");
    let del =
        run_cni_plugin(&cni_conf(&a, "pods"), "DEL", "web-0-on-a", &format!("/var/run/netns/{}", ns_w1.name), pod);
    assert!(del.status.success(), "{}", String::from_utf8_lossy(&del.stdout));
    let ns_w2 = Netns::new("web0b-");
    // (a's record of the workload reaches the store within its next flush.)
    let moved = wait_until(Duration::from_secs(5), || {
        etcd.get_prefix("/vswitch/identities/100/db%2Fweb-0/").iter().any(|(_, v)| v.contains("\"attached\":false"))
    });
    assert!(moved, "a keeps web-0's address reserved in the store: {:?}", etcd.get_prefix("/vswitch/identities/"));
    let (ip_w2, mac_w2) = added(&add(&b, "web-0-on-b", &ns_w2));
    assert_eq!((&ip_w2, &mac_w2), (&ip_w, &mac_w), "web-0 keeps its address and MAC on b");
    ns_w2.quiet("eth0");
    converge(&[&a], "web-0 behind b", |h| h.cluster_fib().contains(&(mac_w.clone(), b.vtep.clone())));
    ping(&ns_w2, &ip_a1);
    // While b has it attached, the workload cannot come up on a as well.
    let ns_w3 = Netns::new("web0c-");
    let twice = add(&a, "web-0-again", &ns_w3);
    assert!(!twice.status.success(), "{}", String::from_utf8_lossy(&twice.stdout));
    assert!(String::from_utf8_lossy(&twice.stdout).contains("attached to a container there"));

    // A moved workload's address stays in the block of the node it left. Once that
    // node's reservation runs out it gives the address to nobody else while another node
    // holds it: here web-1 moves from a to b and is deleted there too (b keeps it
    // reserved; no endpoint shows it any more). A /29 of two /30 blocks: a uses up every
    // other address, then is refused rather than give web-1's away.
    let small = |h: &Host, hold: u64| {
        let mut c = cni_conf(h, "small");
        c["ipam"] = json!({"type": "vswitch", "subnet": "10.1.0.240/29", "hold": hold});
        c
    };
    let netns = |ns: &Netns| format!("/var/run/netns/{}", ns.name);
    let web1 = "K8S_POD_NAMESPACE=db;K8S_POD_NAME=web-1";
    let ns_m1 = Netns::new("web1a-");
    let (ip_m, _) = added(&run_cni_plugin(&small(&a, 3), "ADD", "web-1-on-a", &netns(&ns_m1), web1));
    let left = Instant::now();
    assert!(run_cni_plugin(&small(&a, 3), "DEL", "web-1-on-a", &netns(&ns_m1), web1).status.success());
    let reserved = wait_until(Duration::from_secs(2), || {
        etcd.get_prefix("/vswitch/identities/100/db%2Fweb-1/").iter().any(|(_, v)| v.contains("\"attached\":false"))
    });
    assert!(reserved, "{:?}", etcd.get_prefix("/vswitch/identities/100/"));
    let ns_m2 = Netns::new("web1b-");
    let (ip_m2, _) = added(&run_cni_plugin(&small(&b, 3600), "ADD", "web-1-on-b", &netns(&ns_m2), web1));
    assert_eq!(ip_m2, ip_m, "web-1 keeps its address on b");
    assert!(run_cni_plugin(&small(&b, 3600), "DEL", "web-1-on-b", &netns(&ns_m2), web1).status.success());
    std::thread::sleep(Duration::from_secs(4).saturating_sub(left.elapsed()));
    let mut given = Vec::new();
    let refused = loop {
        let ns = Netns::new("fill-");
        let ctr = format!("fill-{}", given.len());
        let o = run_cni_plugin(&small(&a, 3600), "ADD", &ctr, &netns(&ns), "");
        if !o.status.success() {
            break String::from_utf8_lossy(&o.stdout).into_owned();
        }
        given.push(added(&o).0);
        assert!(given.len() <= 5, "a gave more addresses than the /29 has besides web-1's: {given:?}");
    };
    assert!(!given.contains(&ip_m), "a gave web-1's {ip_m} away while b holds it: {given:?}");
    assert_eq!(given.len(), 5, "every other host address of the /29 was given: {given:?} ({refused})");
    assert!(refused.contains("claimed by other nodes") || refused.contains("blocks"), "{refused}");

    // The store away, and a restarted while it is: an ADD on a still gets an address,
    // from a's own block.
    etcd.kill_all();
    std::thread::sleep(Duration::from_millis(600));
    a.d.kill9();
    a.d.start_again();
    let (ip_a3, ns_a3) = attach_any(&a, "blk-a3");
    assert!(inside(&ip_a3, &blocks_a) && !ips.contains(&ip_a3), "{ip_a3} is new, from a's {blocks_a:?}");
    ping(&ns_a3, &ip_a1);
}
