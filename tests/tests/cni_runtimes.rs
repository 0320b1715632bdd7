//! Real container runtimes attach containers through vswitch-cni: podman (its CNI
//! backend) and containerd (`ctr run --cni`), each with a busybox rootfs (no image
//! pulls). Containers ping and run iperf3 through the switch; podman's `--ip` and
//! `--mac-address` are honoured; a workload re-created after vswitchd was killed gets
//! its address back.
use serde_json::Value;
use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};
use vswitch_tests::*;

/// A root filesystem with busybox and iperf3 (and the libraries it needs).
fn rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "lib64", "lib/x86_64-linux-gnu", "etc", "proc", "sys", "dev", "tmp", "run"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    assert!(Path::new("/bin/busybox").exists(), "busybox-static is missing (scripts/test.sh installs it)");
    fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for c in ["sh", "ping", "ip", "cat", "sleep", "ifconfig"] {
        symlink("busybox", root.join("bin").join(c)).unwrap();
    }
    fs::copy("/usr/bin/iperf3", root.join("bin/iperf3")).unwrap();
    let ldd = run_ok("ldd", &["/usr/bin/iperf3"]);
    for lib in ldd.lines().filter_map(|l| l.split("=> ").nth(1)).filter_map(|r| r.split_whitespace().next()) {
        let name = Path::new(lib).file_name().unwrap();
        fs::copy(lib, root.join("lib/x86_64-linux-gnu").join(name)).unwrap();
    }
    fs::copy("/lib64/ld-linux-x86-64.so.2", root.join("lib64/ld-linux-x86-64.so.2")).unwrap();
    root
}

fn conflist(d: &Daemon) -> String {
    format!(
        r#"{{"cniVersion": "1.0.0", "name": "tenant", "plugins": [
            {{"type": "vswitch", "vni": 100, "socket": "{}", "capabilities": {{"ips": true, "mac": true}}}}]}}"#,
        d.socket.display()
    )
}

/// The plugin under the name runtimes look for ("type": "vswitch"), beside the
/// standard plugins.
fn plugin_dir(dir: &Path) -> PathBuf {
    let p = dir.join("plugins");
    fs::create_dir_all(&p).unwrap();
    symlink(bin("vswitch-cni"), p.join("vswitch")).unwrap();
    p
}

/// iperf3's receiver rate (bits/s) from its JSON report.
fn iperf_bps(out: &str) -> f64 {
    let v: Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("iperf3 JSON ({e}): {out}"));
    v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap()
}

struct Podman {
    args: Vec<String>,
    conf: PathBuf,
    rootfs: PathBuf,
}

impl Podman {
    fn new(dir: &Path, d: &Daemon) -> Podman {
        let net = dir.join("net.d");
        fs::create_dir_all(&net).unwrap();
        fs::write(net.join("50-tenant.conflist"), conflist(d)).unwrap();
        let conf = dir.join("containers.conf");
        fs::write(
            &conf,
            format!(
                "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\"]\nnetwork_config_dir = \"{}\"\n",
                plugin_dir(dir).display(),
                net.display()
            ),
        )
        .unwrap();
        // runc and cgroupfs: this kind of machine has hybrid cgroups (crun refuses
        // them) and no CAP_SYS_RESOURCE (limits may only go down).
        let args = [
            "--root",
            &dir.join("storage").display().to_string(),
            "--runroot",
            &dir.join("run").display().to_string(),
            "--cgroup-manager",
            "cgroupfs",
            "--runtime",
            "runc",
        ]
        .map(String::from)
        .to_vec();
        Podman { args, conf, rootfs: rootfs(dir) }
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("podman").env("CONTAINERS_CONF", &self.conf).args(&self.args).args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.cmd(args);
        assert!(
            o.status.success(),
            "podman {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `podman run` with our rootfs on network "tenant"; `opts` before the command.
    fn run(&self, opts: &[&str], command: &[&str]) -> String {
        let root = self.rootfs.display().to_string();
        let mut a = vec!["run", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--network", "tenant"];
        a.extend_from_slice(opts);
        a.extend(["--rootfs", &root]);
        a.extend_from_slice(command);
        self.ok(&a)
    }

    /// Container `name`'s address and MAC, from inside it.
    fn addr(&self, name: &str) -> (String, String) {
        let out = self.ok(&["exec", name, "/bin/ip", "-o", "addr", "show", "eth0"]);
        let ip =
            out.split_whitespace().skip_while(|w| *w != "inet").nth(1).unwrap().split('/').next().unwrap().to_string();
        let link = self.ok(&["exec", name, "/bin/ip", "-o", "link", "show", "eth0"]);
        let mac = link.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).unwrap().to_string();
        (ip, mac)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd(&["rm", "-af", "-t", "0"]);
        let _ = self.cmd(&["system", "reset", "-f"]);
    }
}

#[test]
fn podman_containers_attach_through_the_plugin_and_keep_their_addresses() {
    let mut d = Daemon::start();
    d.ok_line("network add 100 --gateway 10.5.0.1/24");
    let dir = TempDir::new("podman");
    let pm = Podman::new(&dir.0, &d);
    pm.run(&["-d", "--name", "srv", "--ip", "10.5.0.50"], &["/bin/iperf3", "-s"]);
    let (srv_ip, srv_mac) = pm.addr("srv");
    assert_eq!(srv_ip, "10.5.0.50", "--ip is honoured");
    // podman read our result through libcni: what it reports is what the container has.
    let seen = pm.ok(&["inspect", "srv", "--format", "{{.NetworkSettings.Networks.tenant.IPAddress}} {{.NetworkSettings.Networks.tenant.MacAddress}} {{.NetworkSettings.Networks.tenant.Gateway}}"]);
    assert_eq!(seen.trim(), format!("{srv_ip} {srv_mac} 10.5.0.1"), "podman's view of the result");
    pm.run(&["-d", "--name", "cli", "--mac-address", "0a:00:00:00:c1:1e"], &["/bin/sleep", "600"]);
    let (cli_ip, cli_mac) = pm.addr("cli");
    assert_eq!(cli_mac, "0a:00:00:00:c1:1e", "--mac-address is honoured");
    pm.ok(&["exec", "cli", "/bin/ping", "-c", "2", "-W", "2", &srv_ip]);
    let eps = d.ok(&["endpoint", "list", "100"]);
    assert!(eps.contains(&srv_ip) && eps.contains(&cli_ip) && eps.contains(" cni "), "{eps}");
    // TCP through the switch: the server is up once it listens.
    assert!(wait_until(Duration::from_secs(5), || pm
        .cmd(&["exec", "cli", "/bin/iperf3", "-c", &srv_ip, "-t", "1"])
        .status
        .success()));
    let bps = iperf_bps(&pm.ok(&["exec", "cli", "/bin/iperf3", "-c", &srv_ip, "-t", "2", "-J"]));
    eprintln!("podman container to container: {:.2} Gbit/s", bps / 1e9);
    assert!(bps > 0.0);

    // Stopped and started (podman runs DEL, then ADD in a new namespace): same address.
    pm.ok(&["stop", "-t", "0", "cli"]);
    pm.ok(&["start", "cli"]);
    assert_eq!(pm.addr("cli"), (cli_ip.clone(), cli_mac.clone()), "a restarted container keeps its address");
    // The server goes (podman runs DEL), vswitchd dies, the server comes back under the
    // same name and no --ip: the same address and MAC.
    pm.ok(&["rm", "-f", "-t", "0", "srv"]);
    d.kill9();
    d.start_again();
    pm.run(&["-d", "--name", "srv"], &["/bin/iperf3", "-s"]);
    assert_eq!(pm.addr("srv"), (srv_ip.clone(), srv_mac), "the workload's address and MAC come back");
    // cli was attached all along: its interface outlived vswitchd, the switch took it
    // back at start.
    pm.ok(&["exec", "cli", "/bin/ping", "-c", "2", "-W", "2", &srv_ip]);
    pm.ok(&["rm", "-af", "-t", "0"]);
    assert!(d.json(&["attachment", "list"]).as_array().unwrap().is_empty(), "every DEL reached vswitchd");
}

/// containerd with its own root, state and socket; ctr's CNI takes the system's
/// configuration directories, so the test's files go there for its length.
struct Containerd {
    child: std::process::Child,
    socket: PathBuf,
    installed: Vec<PathBuf>,
}

impl Containerd {
    fn start(dir: &Path, d: &Daemon) -> Containerd {
        let conf = dir.join("containerd.toml");
        let socket = dir.join("containerd.sock");
        fs::write(
            &conf,
            format!(
                "version = 2\nroot = \"{}\"\nstate = \"{}\"\n[grpc]\n  address = \"{}\"\n",
                dir.join("root").display(),
                dir.join("state").display(),
                socket.display()
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&conf)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd");
        fs::create_dir_all("/etc/cni/net.d").unwrap();
        fs::create_dir_all("/opt/cni/bin").unwrap();
        let (net, plugin) =
            (PathBuf::from("/etc/cni/net.d/00-vswitch-test.conflist"), PathBuf::from("/opt/cni/bin/vswitch"));
        fs::write(&net, conflist(d)).unwrap();
        let _ = fs::remove_file(&plugin);
        symlink(bin("vswitch-cni"), &plugin).unwrap();
        let c = Containerd { child, socket, installed: vec![net, plugin] };
        assert!(
            wait_until(Duration::from_secs(10), || c.ctr(&["version"]).status.success()),
            "containerd did not start"
        );
        c
    }

    fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr").arg("--address").arg(&self.socket).args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.ctr(args);
        assert!(
            o.status.success(),
            "ctr {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for id in ["srv", "cli"] {
            let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", id]);
            let _ = self.ctr(&["task", "rm", "-f", id]);
            let _ = self.ctr(&["container", "rm", id]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for p in &self.installed {
            let _ = fs::remove_file(p);
        }
    }
}

#[test]
fn containerd_containers_attach_through_the_plugin() {
    let d = Daemon::start();
    d.ok_line("network add 100 --gateway 10.5.0.1/24");
    let dir = TempDir::new("containerd");
    let root = rootfs(&dir.0).display().to_string();
    let c = Containerd::start(&dir.0, &d);
    c.ok(&["run", "-d", "--cni", "--rootfs", &root, "srv", "/bin/iperf3", "-s"]);
    let attached = d.json(&["attachment", "list"]);
    let srv_ip = attached[0]["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string();
    let out = c.ok(&["run", "--rm", "--cni", "--rootfs", &root, "cli", "/bin/ping", "-c", "2", "-W", "2", &srv_ip]);
    assert!(out.contains("2 packets received"), "{out}");
    let mut got = None;
    assert!(wait_until(Duration::from_secs(5), || {
        let o =
            c.ctr(&["run", "--rm", "--cni", "--rootfs", &root, "cli", "/bin/iperf3", "-c", &srv_ip, "-t", "2", "-J"]);
        got = o.status.success().then(|| String::from_utf8_lossy(&o.stdout).into_owned());
        got.is_some()
    }));
    let bps = iperf_bps(&got.unwrap());
    eprintln!("containerd container to container: {:.2} Gbit/s", bps / 1e9);
    // ctr ran DEL for every container it removed.
    assert_eq!(d.json(&["attachment", "list"]).as_array().unwrap().len(), 1, "only srv is still attached");
}
