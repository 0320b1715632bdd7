//! What the switch is asked to run: its lcores, buffers and ports. Taken from the
//! running vswitchd when it answers, else from the arguments it is (or would be)
//! started with and the ports of its state file.
use crate::{ports::api::PortSpec, state::DesiredState, stats::api::ShowView, store::StateError};
use std::path::{Path, PathBuf};

/// Where the packaged unit reads vswitchd's options and EAL arguments.
pub const CONF_FILE: &str = "/etc/vswitch/vswitchd.conf";

#[derive(Debug, Clone, PartialEq)]
pub struct PlanPort {
    pub name: String,
    pub devargs: String,
    pub queues: u16,
    pub mtu: Option<u16>,
    /// The lcores polling its rx queues; empty before start (any PMD lcore may).
    pub polled_by: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Where this came from, for the report's first line.
    pub source: String,
    /// A vswitchd answers on `socket` (it holds its hugepages already).
    pub running: bool,
    /// Doctor asked for a running vswitchd (`vswitchd --check` does not: it is about
    /// to start one).
    pub asked: bool,
    pub main_lcore: u32,
    pub pmd_lcores: Vec<u32>,
    pub mbufs: u32,
    /// EAL runs without hugepages (--no-huge).
    pub no_huge: bool,
    /// Memory EAL takes up front (-m, --socket-mem), MiB.
    pub memory_mb: Option<u64>,
    pub ports: Vec<PlanPort>,
    pub socket: PathBuf,
    pub socket_group: Option<String>,
    pub db: PathBuf,
    /// The state file as read for this plan: its port count, or why it could not be
    /// read. None for a running switch, which has read it already.
    pub state: Option<Result<usize, String>>,
}

impl Plan {
    /// The running switch, as `show` describes it.
    pub fn running(show: &ShowView, socket: &Path) -> Plan {
        let ports = show
            .ports
            .iter()
            .map(|p| PlanPort {
                name: p.name.clone(),
                devargs: p.devargs.clone(),
                queues: p.rx_queues.len().max(1) as u16,
                mtu: p.mtu,
                polled_by: p.rx_queues.iter().map(|q| q.lcore).collect(),
            })
            .collect();
        Plan {
            source: format!("the running vswitchd on {}", socket.display()),
            running: true,
            asked: true,
            main_lcore: show.main_lcore,
            pmd_lcores: show.pmd_lcores.clone(),
            mbufs: show.mempool.size,
            no_huge: false,
            memory_mb: None,
            ports,
            socket: socket.to_path_buf(),
            socket_group: None,
            db: PathBuf::from(&show.db),
            state: None,
        }
    }

    /// vswitchd's own options (as words: `--mbufs 8192 --db F`) and EAL arguments;
    /// `online` stands in for EAL's default lcores. No ports: `with_state` adds those
    /// of the state file it names.
    pub fn configured(source: String, options: &[String], eal: &[String], online: &[u32]) -> Plan {
        let opt = |name: &str| option(options, name);
        let lcores = eal_lcores(eal).unwrap_or_else(|| online.to_vec());
        let main_lcore =
            option(eal, "--main-lcore").and_then(|m| m.parse().ok()).or(lcores.first().copied()).unwrap_or(0);
        Plan {
            source,
            running: false,
            asked: false,
            main_lcore,
            pmd_lcores: lcores.into_iter().filter(|&l| l != main_lcore).collect(),
            mbufs: opt("--mbufs").and_then(|m| m.parse().ok()).unwrap_or(32768),
            no_huge: eal.iter().any(|a| a == "--no-huge"),
            memory_mb: eal_memory(eal),
            ports: Vec::new(),
            socket: PathBuf::from(opt("--socket").unwrap_or_else(|| crate::DEFAULT_SOCKET.into())),
            socket_group: opt("--socket-group"),
            db: PathBuf::from(opt("--db").unwrap_or_else(|| crate::DEFAULT_DB.into())),
            state: None,
        }
    }
}

impl Plan {
    /// The ports of the state file, as loaded once (a damaged one is the daemon
    /// check's to report).
    pub fn with_state(self, loaded: Result<DesiredState, StateError>) -> Plan {
        match loaded {
            Ok(s) => Plan { state: Some(Ok(s.ports.len())), ..self.with_ports(&s.ports) },
            Err(e) => Plan { state: Some(Err(e.to_string())), ..self },
        }
    }

    pub fn with_ports(mut self, ports: &[PortSpec]) -> Plan {
        self.ports = ports
            .iter()
            .map(|p| PlanPort {
                name: p.name.clone(),
                devargs: p.devargs.clone(),
                queues: p.queues.unwrap_or(1),
                mtu: p.mtu,
                polled_by: p.cores.clone().unwrap_or_default(),
            })
            .collect();
        self
    }
}

/// The value of `name` in `args`, as `name VALUE`, `name=VALUE` or, for a one-letter
/// option, `-lVALUE`.
fn option(args: &[String], name: &str) -> Option<String> {
    let mut found = None;
    for (i, a) in args.iter().enumerate() {
        if a == name {
            found = args.get(i + 1).cloned();
        } else if let Some(v) = a.strip_prefix(name) {
            if let Some(v) = v.strip_prefix('=') {
                found = Some(v.to_string());
            } else if name.len() == 2 && !v.is_empty() {
                found = Some(v.to_string());
            }
        }
    }
    found
}

/// The CPUs EAL's -l, -c or --lcores give (None: EAL takes every CPU).
fn eal_lcores(eal: &[String]) -> Option<Vec<u32>> {
    if let Some(l) = option(eal, "-l") {
        return Some(super::host::cpu_list(&l));
    }
    if let Some(mask) = option(eal, "-c") {
        let m = u128::from_str_radix(mask.trim_start_matches("0x").trim_start_matches("0X"), 16).ok()?;
        return Some((0..128).filter(|b| m >> b & 1 == 1).collect());
    }
    // --lcores 0,1@2,(3-4)@5: where a group names its CPUs (after @) those count.
    let spec = option(eal, "--lcores")?;
    let mut cpus = Vec::new();
    let mut depth = 0;
    let mut item = String::new();
    for c in spec.chars().chain(std::iter::once(',')) {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                let cpu = item.rsplit('@').next().unwrap_or("").trim_matches(|c| c == '(' || c == ')');
                cpus.extend(super::host::cpu_list(cpu));
                item.clear();
                continue;
            }
            _ => {}
        }
        item.push(c);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

/// MiB EAL reserves up front: -m, or the sum of --socket-mem.
fn eal_memory(eal: &[String]) -> Option<u64> {
    if let Some(m) = option(eal, "-m") {
        return m.parse().ok();
    }
    let per_socket = option(eal, "--socket-mem")?;
    Some(per_socket.split(',').filter_map(|m| m.parse::<u64>().ok()).sum())
}

/// The packaged configuration file: shell-style `NAME="words"` lines, as systemd's
/// EnvironmentFile reads them. Returns (VSWITCHD_OPTS, EAL_ARGS) as words.
pub fn read_conf(text: &str) -> (Vec<String>, Vec<String>) {
    let (mut opts, mut eal) = (Vec::new(), Vec::new());
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.split_once('=') else { continue };
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
        let words = value.split_whitespace().map(String::from).collect();
        match name.trim() {
            "VSWITCHD_OPTS" => opts = words,
            "EAL_ARGS" => eal = words,
            _ => {}
        }
    }
    (opts, eal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn lcores_and_memory_are_read_as_eal_reads_them() {
        let plan = |eal: &str| Plan::configured(String::new(), &[], &words(eal), &[0, 1, 2, 3]);
        let p = plan("-l 0-2 --no-huge -m 512");
        assert_eq!((p.main_lcore, p.pmd_lcores.clone(), p.no_huge, p.memory_mb), (0, vec![1, 2], true, Some(512)));
        let p = plan("-l1,3 --main-lcore 3 --socket-mem 1024,1024");
        assert_eq!((p.main_lcore, p.pmd_lcores.clone(), p.memory_mb), (3, vec![1], Some(2048)));
        assert_eq!(plan("-c 0x6").pmd_lcores, vec![2]);
        assert_eq!(plan("--lcores 0,1@3,(4-5)@2").pmd_lcores, vec![2, 3]);
        assert_eq!(plan("--file-prefix x").pmd_lcores, vec![1, 2, 3]);
    }

    #[test]
    fn the_conf_file_gives_options_and_eal_arguments() {
        let (o, e) =
            read_conf("# comment\nVSWITCHD_OPTS=\"--mbufs 8192 --db=/tmp/x.json\"\nEAL_ARGS='-l 0-1 --no-pci'\n");
        let p = Plan::configured(String::new(), &o, &e, &[]);
        assert_eq!((p.mbufs, p.db, p.pmd_lcores), (8192, PathBuf::from("/tmp/x.json"), vec![1]));
    }
}
