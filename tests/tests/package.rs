//! The Debian package: `scripts/package.sh` builds it, dpkg installs it on this host,
//! systemd-analyze accepts its unit, the unit's own ExecStartPre and ExecStart (with
//! its EnvironmentFile) run by hand bring up a switch that tells a notify socket
//! READY=1 once `vswitchctl show` answers, and a purge takes everything away again.
//! This host has no systemd as PID 1, so the unit is not started by systemd itself.
use std::{
    collections::BTreeMap,
    os::unix::{fs::PermissionsExt, net::UnixDatagram},
    path::Path,
    process::Command,
    time::Duration,
};
use vswitch_tests::*;

const UNIT: &str = "/lib/systemd/system/vswitchd.service";
const CONF: &str = "/etc/vswitch/vswitchd.conf";

fn sh(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

/// The unit's `Key=` lines.
fn unit_values(key: &str) -> Vec<String> {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    unit.lines().filter_map(|l| l.strip_prefix(&format!("{key}="))).map(String::from).collect()
}

/// A command line of the unit with `$NAME` replaced by the words of the conf file's
/// NAME="...", as systemd does for an unbraced variable.
fn expand(line: &str, env: &BTreeMap<String, String>) -> Vec<String> {
    let line = line.trim_start_matches('-');
    let mut words = Vec::new();
    for w in line.split_whitespace() {
        match w.strip_prefix('$') {
            Some(name) => words.extend(
                env.get(name).map(|v| v.split_whitespace().map(String::from).collect::<Vec<_>>()).unwrap_or_default(),
            ),
            None => words.push(w.to_string()),
        }
    }
    words
}

fn conf_env() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(CONF).unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = sh("dpkg", &["--purge", "vswitch"]);
    }
}

#[test]
fn the_package_installs_starts_under_its_unit_and_purges_clean() {
    require_root();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // Outside cargo test's environment (its CARGO_* variables would make the build
    // inside package.sh a different one, rebuilt from scratch).
    let built = Command::new(repo.join("scripts/package.sh"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&built.stdout);
    assert!(built.status.success(), "package.sh: {out}\n{}", String::from_utf8_lossy(&built.stderr));
    let deb = out.lines().last().unwrap().trim().to_string();
    assert!(deb.ends_with(".deb") && Path::new(&deb).is_file(), "the last line names the .deb: {out}");

    let _ = sh("dpkg", &["--purge", "vswitch"]);
    let _installed = Installed;
    let o = sh("dpkg", &["-i", &deb]);
    assert!(
        o.status.success(),
        "dpkg -i: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    for f in [
        "/usr/bin/vswitchd",
        "/usr/bin/vswitchctl",
        "/usr/lib/cni/vswitch",
        UNIT,
        CONF,
        "/usr/share/man/man8/vswitchd.8.gz",
        "/usr/share/man/man8/vswitchctl.8.gz",
        "/usr/share/bash-completion/completions/vswitchctl",
    ] {
        assert!(Path::new(f).exists(), "{f} installed");
    }
    let state = std::fs::metadata("/var/lib/vswitch").expect("postinst made the state directory");
    assert_eq!(state.permissions().mode() & 0o777, 0o750);
    let conffiles =
        String::from_utf8_lossy(&sh("dpkg-query", &["-W", "-f=${Conffiles}", "vswitch"]).stdout).into_owned();
    assert!(conffiles.contains(CONF), "{conffiles}");
    let o = sh("man", &["-w", "vswitchctl"]);
    assert!(o.status.success(), "man finds the page");

    // systemd's own reading of the unit: syntax, keys, executables.
    let o = sh("systemd-analyze", &["verify", UNIT]);
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(unit_values("Type"), ["notify"]);
    assert_eq!(unit_values("Restart"), ["on-failure"]);
    assert_eq!(unit_values("RuntimeDirectoryPreserve"), ["yes"]);
    assert!(unit_values("Wants").iter().any(|w| w.contains("dev-hugepages.mount")));
    assert!(!unit_values("OOMScoreAdjust").is_empty());

    // The unit's commands, as systemd would run them, on the installed configuration.
    let env = conf_env();
    let pre = expand(&unit_values("ExecStartPre")[0], &env);
    let o = sh(&pre[0], &pre[1..].iter().map(String::as_str).collect::<Vec<_>>());
    let report = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.code().is_some_and(|c| c < 2), "the installed configuration checks clean here:\n{report}");

    let dir = TempDir::new("notify");
    let notify_path = dir.path("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let start = expand(&unit_values("ExecStart")[0], &env);
    let mut daemon = Command::new(&start[0])
        .args(&start[1..])
        .env("NOTIFY_SOCKET", &notify_path)
        .stderr(std::fs::File::create(dir.path("log")).unwrap())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).unwrap_or(0);
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    let log = || std::fs::read_to_string(dir.path("log")).unwrap_or_default();
    assert!(ready.lines().any(|l| l == "READY=1"), "no READY=1 ({ready:?}):\n{}", log());
    // Ready means ready: the default socket answers at once.
    let show = sh("vswitchctl", &["show"]);
    assert!(show.status.success(), "vswitchctl show: {}\n{}", String::from_utf8_lossy(&show.stderr), log());
    let o = sh("kill", &[&daemon.id().to_string()]);
    assert!(o.status.success());
    let n = notify.recv(&mut buf).unwrap_or(0);
    assert_eq!(String::from_utf8_lossy(&buf[..n]), "STOPPING=1");
    assert!(daemon.wait().unwrap().success(), "a clean stop exits 0:\n{}", log());

    let o = sh("dpkg", &["--purge", "vswitch"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for gone in ["/usr/bin/vswitchd", UNIT, CONF, "/var/lib/vswitch", "/usr/lib/cni/vswitch"] {
        assert!(!Path::new(gone).exists(), "{gone} left after purge");
    }
}
