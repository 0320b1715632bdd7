//! Helpers for the whole-binary tests in `tests/tests/`: run the real `vswitchd` and
//! `vswitchctl` on DPDK virtual devices, make network namespaces, and call the
//! independent oracles (scapy, tshark, the kernel).
//!
//! The tests need root (namespaces, tap devices, DPDK) and the tools that
//! `scripts/test.sh` installs. They start DPDK processes that busy-poll a core, so
//! they run one at a time (`--test-threads=1`).
use serde_json::Value;
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread::sleep,
    time::{Duration, Instant},
};

pub mod tcp;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this test process: DPDK file prefixes, namespaces, interfaces.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}{}", std::process::id() % 10000, SEQ.fetch_add(1, Ordering::Relaxed))
}

/// A built binary of the workspace, beside the test executable's `deps/` folder.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built; run `cargo build --release --workspace` first (scripts/test.sh does)",
        p.display()
    );
    p
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("these tests need root (network namespaces, tap devices, DPDK); run scripts/test.sh as root");
    }
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(&format!("vswitch-{tag}-")));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs a command, returns its output.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

/// Runs a command that must succeed; returns stdout.
pub fn run_ok(cmd: &str, args: &[&str]) -> String {
    let o = run(cmd, args);
    assert!(
        o.status.success(),
        "{cmd} {args:?} failed ({}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Debian's python3, which has scapy (the one first on PATH may not).
pub const PYTHON: &str = "/usr/bin/python3";

/// The path of one of the scripts in `tests/py/` (to run in a namespace).
pub fn py_script(script: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("py").join(script).to_str().unwrap().to_owned()
}

/// A TCP port on loopback nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs one of the scripts in `tests/py/`.
pub fn python(script: &str, args: &[&str]) -> String {
    let path = py_script(script);
    let mut all = vec![path.as_str()];
    all.extend_from_slice(args);
    run_ok(PYTHON, &all)
}

/// Polls `f` until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        sleep(Duration::from_millis(50));
    }
    f()
}

/// How to start a daemon.
#[derive(Default)]
pub struct DaemonOpts {
    /// Contents of the desired-state file before start.
    pub db: Option<String>,
    pub extra_args: Vec<String>,
    pub mbufs: Option<u32>,
    /// Run on hugepages (which scripts/test.sh reserves) instead of `--no-huge`.
    pub hugepages: bool,
    /// EAL's `--lcores` map instead of `-l 0-1` (two PMD cores on this machine's two
    /// CPUs: `0@0,1@1,2@0`).
    pub lcores: Option<String>,
    /// More EAL arguments, after the usual ones.
    pub eal: Vec<String>,
}

/// A running vswitchd with its own socket, state file and DPDK file prefix.
pub struct Daemon {
    child: Option<Child>,
    pub dir: TempDir,
    pub socket: PathBuf,
    pub db: PathBuf,
    pub log: PathBuf,
    /// The DPDK file prefix of the running (or last) process.
    pub prefix: String,
    opts: DaemonOpts,
}

impl Daemon {
    pub fn start() -> Daemon {
        Self::start_with(DaemonOpts::default())
    }

    /// EAL arguments every test daemon uses: no hugepages, two lcores, own prefix.
    pub fn eal_args(prefix: &str) -> Vec<String> {
        let mut a = Self::eal_args_on_hugepages(prefix);
        a.extend(["--no-huge", "-m", "512"].map(String::from));
        a
    }

    /// The same on hugepages.
    pub fn eal_args_on_hugepages(prefix: &str) -> Vec<String> {
        ["-l", "0-1", "--no-pci", "--file-prefix", prefix].map(String::from).to_vec()
    }

    pub fn start_with(opts: DaemonOpts) -> Daemon {
        require_root();
        let dir = TempDir::new("d");
        let socket = dir.path("vswitchd.sock");
        let db = dir.path("conf.json");
        let log = dir.path("vswitchd.log");
        if let Some(text) = &opts.db {
            fs::write(&db, text).unwrap();
        }
        let mut d = Daemon { child: None, dir, socket, db, log, prefix: String::new(), opts };
        d.spawn();
        d
    }

    /// Starts vswitchd on this daemon's socket and state file (a new DPDK prefix) and
    /// waits until it answers.
    fn spawn(&mut self) {
        let mut args: Vec<String> = vec![
            "--socket".into(),
            self.socket.display().to_string(),
            "--db".into(),
            self.db.display().to_string(),
            "--mbufs".into(),
            self.opts.mbufs.unwrap_or(16384).to_string(),
        ];
        args.extend(self.opts.extra_args.iter().cloned());
        args.push("--".into());
        self.prefix = unique("vst");
        let mut eal =
            if self.opts.hugepages { Self::eal_args_on_hugepages(&self.prefix) } else { Self::eal_args(&self.prefix) };
        if let Some(map) = &self.opts.lcores {
            eal[0] = "--lcores".into();
            eal[1] = map.clone();
        }
        args.extend(eal);
        args.extend(self.opts.eal.iter().cloned());
        let log = fs::File::options().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(bin("vswitchd"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn vswitchd");
        self.child = Some(child);
        let up = wait_until(Duration::from_secs(30), || {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return true;
            }
            self.socket.exists() && self.ctl(&["show"]).status.success()
        });
        assert!(up && self.is_running(), "vswitchd did not come up:\n{}", self.log_text());
    }

    /// SIGTERM (which must exit 0), then start again on the same state file.
    pub fn restart(&mut self) {
        let st = self.stop();
        assert!(st.success(), "vswitchd exits 0 on SIGTERM, not {st}");
        self.spawn();
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again after `kill9`.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(bin("vswitchctl")).arg("--socket").arg(&self.socket).args(args).output().expect("run vswitchctl")
    }

    /// `ok` of a command written as one line, its words split at spaces.
    pub fn ok_line(&self, line: &str) -> String {
        self.ok(&line.split_whitespace().collect::<Vec<_>>())
    }

    /// A vswitchctl command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.ctl(args);
        assert!(
            o.status.success(),
            "vswitchctl {args:?} failed: {}\n--- vswitchd log ---\n{}",
            String::from_utf8_lossy(&o.stderr),
            self.log_tail()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// A vswitchctl command that must fail; returns its stderr.
    pub fn err(&self, args: &[&str]) -> String {
        let o = self.ctl(args);
        assert!(
            !o.status.success(),
            "vswitchctl {args:?} should have failed but printed {}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).expect("vswitchctl --json prints JSON")
    }

    /// One port's counters (`port stats NAME`).
    pub fn port_stats(&self, name: &str) -> Value {
        self.json(&["port", "stats", name])[0].clone()
    }

    pub fn counter(&self, port: &str, field: &str) -> u64 {
        self.port_stats(port)[field].as_u64().unwrap_or(0)
    }

    /// Asserts that every frame `from` received left `to` or was counted as a drop:
    /// at `from` for any reason but a full tx queue (a drop is counted at the port the
    /// frame came in by), or at `to` as tx_full. Which drops are expected is for the
    /// test to say.
    pub fn assert_conserved(&self, from: &str, to: &str) {
        let (a, b) = (self.port_stats(from), self.port_stats(to));
        let n = |v: &Value, path: &[&str]| path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0);
        let rx_drops: u64 = a["drops"]
            .as_object()
            .map_or(0, |d| d.iter().filter(|(k, _)| *k != "tx_full").map(|(_, v)| v.as_u64().unwrap_or(0)).sum());
        assert_eq!(
            n(&a, &["rx_packets"]),
            n(&b, &["tx_packets"]) + rx_drops + n(&b, &["drops", "tx_full"]),
            "every frame {from} took in left {to} or was counted: {a} {b}"
        );
    }

    /// Waits until no port's counters move any more (the traffic of a finite pcap is
    /// through).
    pub fn settle(&self) {
        let mut last = String::new();
        assert!(
            wait_until(Duration::from_secs(30), || {
                sleep(Duration::from_millis(300));
                let now = self.json(&["port", "stats"]).to_string();
                std::mem::replace(&mut last, now.clone()) == now
            }),
            "traffic never settled"
        );
    }

    /// A raw connection to the API socket.
    pub fn connect(&self) -> Api {
        Api::connect(&self.socket).expect("connect to vswitchd")
    }

    pub fn mempool_available(&self) -> u64 {
        self.json(&["stats"])["mempool"]["available"].as_u64().unwrap()
    }

    /// Asserts that the packet pool gets back to `before` free mbufs: every frame
    /// sent, dropped or held by a port that is gone went back.
    pub fn assert_no_mbuf_leak(&self, before: u64) {
        assert!(
            wait_until(Duration::from_secs(5), || self.mempool_available() == before),
            "no mbuf leaked: {} free before, {} after",
            before,
            self.mempool_available()
        );
    }

    /// A port's average frame in and out, in bytes: whether large frames crossed it.
    pub fn bytes_per_frame(&self, port: &str) -> (u64, u64) {
        let s = self.port_stats(port);
        let per_frame = |dir: &str| {
            s[format!("{dir}_bytes")].as_u64().unwrap() / s[format!("{dir}_packets")].as_u64().unwrap().max(1)
        };
        (per_frame("rx"), per_frame("tx"))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGTERM, then wait (SIGKILL after 15 s). Returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon already stopped");
        // SAFETY: kill with a pid we spawned and have not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return st;
            }
            if start.elapsed() > Duration::from_secs(15) {
                let _ = child.kill();
                let st = child.wait().unwrap();
                panic!("vswitchd did not stop within 15 s of SIGTERM ({st}):\n{}", self.log_tail());
            }
            sleep(Duration::from_millis(20));
        }
    }

    pub fn log_tail(&self) -> String {
        let t = self.log_text();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: as in stop().
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- vswitchd log ({}) ---\n{}", self.log.display(), self.log_tail());
        }
    }
}

/// One API connection: a JSON request per line, a reply per line.
pub struct Api(std::io::BufReader<std::os::unix::net::UnixStream>);

impl Api {
    pub fn connect(socket: &Path) -> std::io::Result<Api> {
        Ok(Api(std::io::BufReader::new(std::os::unix::net::UnixStream::connect(socket)?)))
    }

    /// Sends `request` (the inner object, e.g. `{"cmd":"show"}`); None if the daemon
    /// went away.
    pub fn call(&mut self, request: Value) -> Option<Value> {
        use std::io::{BufRead, Write};
        let mut line = serde_json::json!({"version": 1, "request": request}).to_string();
        line.push('\n');
        self.0.get_mut().write_all(line.as_bytes()).ok()?;
        let mut reply = String::new();
        match self.0.read_line(&mut reply) {
            Ok(n) if n > 0 => serde_json::from_str(&reply).ok(),
            _ => None,
        }
    }

    /// A request that must succeed.
    pub fn ok(&mut self, request: Value) -> Value {
        let r = self.call(request.clone()).expect("vswitchd answers");
        assert_eq!(r["ok"], true, "{request}: {r}");
        r
    }
}

/// What a set of networks may be after a crash: `acked`, or `acked` with the request in
/// flight at the crash (a delete or an add of a VNI) applied.
pub fn with_in_flight(
    acked: &std::collections::BTreeSet<u64>,
    in_flight: Option<(bool, u64)>,
) -> std::collections::BTreeSet<u64> {
    let mut with = acked.clone();
    if let Some((del, vni)) = in_flight {
        if del {
            with.remove(&vni);
        } else {
            with.insert(vni);
        }
    }
    with
}

/// A network namespace, deleted on drop: a "VM" or a remote host.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = unique(tag);
        run_ok("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    pub fn exec_ok(&self, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", self.name.as_str()];
        all.extend_from_slice(args);
        run_ok("ip", &all)
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn in netns")
    }

    /// Moves interface `ifname` (made by net_tap in the root namespace) in here and
    /// gives it `cidr`.
    pub fn adopt(&self, ifname: &str, cidr: &str) {
        assert!(
            wait_until(Duration::from_secs(5), || Path::new(&format!("/sys/class/net/{ifname}")).exists()),
            "interface {ifname} did not appear"
        );
        run_ok("ip", &["link", "set", ifname, "netns", &self.name]);
        self.quiet(ifname);
        self.exec_ok(&["ip", "addr", "add", cidr, "dev", ifname]);
        self.exec_ok(&["ip", "link", "set", ifname, "up"]);
    }

    pub fn mac(&self, ifname: &str) -> String {
        self.exec_ok(&["cat", &format!("/sys/class/net/{ifname}/address")]).trim().to_owned()
    }

    /// No IPv6 on `ifname`: no router solicitations, DAD or MLD reports, so a test's
    /// counters see only the traffic it sends.
    pub fn quiet(&self, ifname: &str) {
        self.exec_ok(&["sysctl", "-qw", &format!("net.ipv6.conf.{ifname}.disable_ipv6=1")]);
    }

    /// Adds IPv6 address `cidr` to `ifname` as a host does, with duplicate address
    /// detection, and waits for its outcome: true if the kernel found the address taken
    /// (`dadfailed`), false once it holds it.
    pub fn address_taken(&self, ifname: &str, cidr: &str) -> bool {
        self.exec_ok(&["ip", "-6", "addr", "add", cidr, "dev", ifname]);
        let ip = cidr.split('/').next().unwrap_or(cidr);
        let state = || self.exec_ok(&["ip", "-6", "addr", "show", "dev", ifname, "to", ip]);
        wait_until(Duration::from_secs(8), || !state().contains("tentative") || state().contains("dadfailed"));
        let s = state();
        assert!(s.contains(ip), "{ip} on {ifname}: {s}");
        s.contains("dadfailed")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// A "VM": a net_tap port of the switch whose kernel interface lives in its own
/// network namespace with an address.
pub struct TapVm {
    pub ns: Netns,
    pub ifname: String,
}

impl TapVm {
    /// Adds port `port` as a tap and moves its interface into a new namespace with `cidr`.
    pub fn add(d: &Daemon, port: &str, cidr: &str) -> TapVm {
        Self::add_with(d, port, cidr, &[])
    }

    /// The same, with more `port add` options (`--role vm --vni 100`).
    pub fn add_with(d: &Daemon, port: &str, cidr: &str, options: &[&str]) -> TapVm {
        let ifname = unique("vt");
        Self::attach(d, port, &format!("net_tap_{port}{ifname},iface={ifname}"), &ifname, cidr, options)
    }

    /// A kernel port (`kernel:iface=`) on a tap the switch creates, moved into a new
    /// namespace with `cidr`.
    pub fn kernel(d: &Daemon, port: &str, cidr: &str, options: &[&str]) -> TapVm {
        let ifname = unique("kt");
        Self::attach(d, port, &format!("kernel:iface={ifname}"), &ifname, cidr, options)
    }

    /// A container as CNI plugins make them: a veth pair with one end in a new namespace
    /// (with `cidr`) and the other attached to the switch as a kernel port (AF_PACKET).
    pub fn veth(d: &Daemon, port: &str, cidr: &str, options: &[&str]) -> TapVm {
        // The pair goes with the namespace the peer moves into.
        let v = std::mem::ManuallyDrop::new(Veth::new("kv"));
        Self::attach(d, port, &format!("kernel:iface={}", v.host), &v.peer, cidr, options)
    }

    /// Adds port `port` on `devargs`, then moves `ifname` into a new namespace.
    fn attach(d: &Daemon, port: &str, devargs: &str, ifname: &str, cidr: &str, options: &[&str]) -> TapVm {
        let mut args = vec!["port", "add", port, devargs];
        args.extend_from_slice(options);
        d.ok(&args);
        let ns = Netns::new(&format!("{port}-"));
        ns.adopt(ifname, cidr);
        TapVm { ns, ifname: ifname.to_owned() }
    }

    pub fn mac(&self) -> String {
        self.ns.mac(&self.ifname)
    }

    /// Runs a command in the VM's namespace; must succeed.
    pub fn sh(&self, args: &[&str]) -> String {
        self.ns.exec_ok(args)
    }

    /// A static neighbour entry, so traffic needs no ARP.
    pub fn neigh(&self, ip: &str, mac: &str) {
        self.ns.exec_ok(&["ip", "neigh", "replace", ip, "lladdr", mac, "dev", &self.ifname]);
    }
}

/// A veth pair in the root namespace, both ends up, deleted on drop (both ends go with
/// either, wherever the other end has moved).
pub struct Veth {
    pub host: String,
    pub peer: String,
}

impl Veth {
    pub fn new(tag: &str) -> Veth {
        let host = unique(tag);
        let peer = format!("{host}p");
        run_ok("ip", &["link", "add", &host, "type", "veth", "peer", "name", &peer]);
        run_ok("ip", &["link", "set", &host, "up"]);
        run_ok("ip", &["link", "set", &peer, "up"]);
        Veth { host, peer }
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", &self.host]);
    }
}

/// Runs the CNI plugin as a runtime does: CNI_* in the environment (interface eth0,
/// plugins from the standard places), the network config on stdin.
pub fn run_cni_plugin(conf: &Value, command: &str, container: &str, netns: &str, args: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin("vswitch-cni"))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", args)
        .env("CNI_PATH", "/usr/lib/cni:/opt/cni/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vswitch-cni");
    child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// `tshark -r FILE -T fields -e F...`: one line per frame, decoded by Wireshark.
pub fn tshark_fields(file: &Path, fields: &[&str]) -> Vec<String> {
    let mut args = vec![
        "-r".to_string(),
        file.display().to_string(),
        "-T".into(),
        "fields".into(),
        "-E".into(),
        "separator=|".into(),
    ];
    for f in fields {
        args.push("-e".into());
        args.push(f.to_string());
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok("tshark", &a).lines().map(str::to_owned).collect()
}
