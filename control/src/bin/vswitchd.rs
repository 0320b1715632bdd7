//! vswitchd: the switch daemon. EAL on the main lcore's thread with the tokio control
//! plane; one PMD loop on every other lcore.
use clap::Parser;
use control::{server, store::Store, switch::Switch, DEFAULT_DB, DEFAULT_SOCKET};
use dataplane::{eal::Eal, mempool::PktPool, pmd};
use std::{path::PathBuf, process::ExitCode, sync::Arc};

/// The vswitch daemon.
///
/// Everything after `--` goes to DPDK's rte_eal_init, with one default added: hugepage
/// files are unlinked once mapped (`--huge-unlink`), so the pages go back to the host
/// however vswitchd exits. Any of --huge-unlink=..., --no-huge, --in-memory,
/// --single-file-segments or --proc-type turns that default off.
///
/// Examples:
///   vswitchd -- -l 0-1                                   # hugepages, lcore 0 control, lcore 1 PMD
///   vswitchd -- -l 0-1 --no-huge -m 512 --no-pci         # no hugepages, virtual devices only
///   vswitchd --socket /tmp/vs.sock --db /tmp/vs.json -- -l 0-1 --file-prefix vs2
#[derive(Parser, Debug)]
#[command(name = "vswitchd", version, verbatim_doc_comment)]
struct Args {
    /// API socket (mode 0600).
    #[arg(long, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Also let this group (name or gid) use the socket (mode 0660).
    #[arg(long)]
    socket_group: Option<String>,
    /// Desired-state file, restored at start; changes go to a journal beside it
    /// (FILE.journal), folded back into the file when the journal outgrows it.
    #[arg(long, default_value = DEFAULT_DB)]
    db: PathBuf,
    /// The journal is never folded into the state file below this size (bytes).
    #[arg(long, default_value_t = control::store::DEFAULT_COMPACT_MIN, hide = true)]
    journal_compact_min: u64,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Log lines as text, or as one JSON object each (fields: timestamp, level, target,
    /// fields.message and the event's own fields; the audit trail is target "audit").
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Packet buffers in the mempool.
    #[arg(long, default_value_t = 32768)]
    mbufs: u32,
    /// An idle PMD core sleeps this long between polls (0: never sleep, the lowest
    /// latency). Only rounds that found no packet sleep.
    #[arg(long, default_value_t = 0)]
    pmd_idle_sleep_us: u32,
    /// Do not coalesce TCP segments bound for kernel ports and guests that take TSO
    /// (GRO, on by default): each leaves at the size it came in.
    #[arg(long)]
    no_gro: bool,
    /// Connection-tracking sessions (128 bytes each), allocated when the first port
    /// turns stateful and shared out evenly among the PMD cores.
    #[arg(long, default_value_t = control::conntrack::DEFAULT_SESSIONS, value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    conntrack_sessions: u32,
    /// Serve Prometheus metrics on http://ADDR:PORT/metrics (for example 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<std::net::SocketAddr>,
    /// Join a cluster: share endpoints and VTEPs with the other switches through etcd
    /// (etcd://HOST:PORT[,HOST:PORT...]). Needs --node.
    #[arg(long, value_name = "etcd://HOST:PORT,...", requires = "node")]
    cluster: Option<String>,
    /// This switch's name in the cluster (letters, digits, '-', '_', '.'; e.g. the host name).
    #[arg(long)]
    node: Option<String>,
    /// Where in etcd the cluster's keys live.
    #[arg(long, default_value = control::cluster::keys::DEFAULT_PREFIX)]
    cluster_prefix: String,
    /// TLS to etcd: the CA certificate (PEM) that signed the store's certificate.
    #[arg(long, value_name = "FILE")]
    cluster_ca: Option<PathBuf>,
    /// TLS to etcd: this node's client certificate (PEM), for a store with
    /// --client-cert-auth. With --cluster-key.
    #[arg(long, value_name = "FILE", requires = "cluster_key")]
    cluster_cert: Option<PathBuf>,
    /// TLS to etcd: the client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cluster_cert")]
    cluster_key: Option<PathBuf>,
    /// Check the host for what this configuration needs (as `vswitchctl doctor` does),
    /// print the findings and exit: 0 fine, 1 warnings, 2 errors. Starts nothing.
    #[arg(long)]
    check: bool,
    /// Print the manual page (roff) and exit, for packaging.
    #[arg(long, hide = true)]
    manpage: bool,
    /// EAL arguments (after --).
    #[arg(last = true)]
    eal: Vec<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
enum LogFormat {
    Text,
    Json,
}

const HUGEPAGE_HINT: &str = "hint: DPDK needs memory. Reserve hugepages with
  echo 512 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
  mkdir -p /dev/hugepages; mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages
or run without them (slower): vswitchd -- -l 0-1 --no-huge -m 512 --no-pci
Two DPDK processes on one host also need distinct --file-prefix values.";

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level).unwrap_or_else(|_| {
        eprintln!("vswitchd: --log-level {:?} is not a valid filter; using info", args.log_level);
        tracing_subscriber::EnvFilter::new("info")
    });
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    if args.manpage {
        use clap::CommandFactory;
        let man = clap_mangen::Man::new(Args::command()).section("8");
        return match man.render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vswitchd: cannot write the manual page: {e}");
                ExitCode::from(1)
            }
        };
    }
    if args.check {
        return ExitCode::from(check(&args));
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vswitchd: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    // Fail fast, before EAL grabs memory, on what we can check without it.
    let started = std::time::Instant::now();
    let (store, state) = Store::open(&args.db, args.journal_compact_min).map_err(|e| e.to_string())?;
    tracing::info!("desired state read from {} in {:?}", args.db.display(), started.elapsed());
    server::check_socket_free(&args.socket)?;
    let files = dataplane::raise_fd_limit();
    tracing::debug!("open files: up to {files}");
    let socket_gid = args.socket_group.as_deref().map(server::group_id).transpose()?;
    let cluster = cluster_config(&args)?;

    let eal = Eal::init("vswitchd", &eal_args(&args.eal)).map_err(|e| {
        let hint = matches!(e, dataplane::eal::EalError::InitFailed { .. }).then_some(HUGEPAGE_HINT).unwrap_or("");
        format!("EAL initialisation failed: {e}\n{hint}")
    })?;
    tracing::info!("{} with main lcore {} and PMD lcores {:?}", eal.version, eal.main_lcore, eal.workers);
    let pool =
        PktPool::create("vswitch_mbufs", args.mbufs, 256, dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16).map_err(|e| {
            format!(
                "cannot create the packet mempool of {} mbufs: {e}; lower --mbufs or give EAL more memory (-m)",
                args.mbufs
            )
        })?;
    let pool = Arc::new(pool);
    let shared = pmd::Shared::new(eal.workers.clone(), args.pmd_idle_sleep_us, !args.no_gro, pool.clone(), eal.tsc_hz);
    pmd::launch(&eal, &shared).map_err(|e| format!("cannot start the PMD cores: {e}"))?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the control-plane runtime: {e}"))?;
    let eal_for_cleanup = eal.clone();
    let result = rt.block_on(async {
        let mut switch = Switch::with_sessions(eal, pool, shared.clone(), store, args.conntrack_sessions);
        switch.restore(state).await;
        let updates = cluster.map(|c| switch.join_cluster(c));
        let listener = match server::bind(&args.socket, socket_gid) {
            Ok(l) => l,
            Err(e) => return Err((e, switch)),
        };
        let metrics = match args.metrics {
            Some(addr) => match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => Some(l),
                Err(e) => {
                    let e = format!("--metrics: cannot listen on {addr}: {e}; pick a free address and port");
                    return Err((e, switch));
                }
            },
            None => None,
        };
        let mut switch =
            server::serve(switch, listener, args.socket.clone(), metrics, updates, shutdown_signal()).await;
        // A clean stop leaves the cluster (its liveness lease) before the runtime ends.
        switch.leave_cluster().await;
        Ok(switch)
    });
    // Stop polling (cores flush their tx buffers on the way out), then close ports.
    pmd::stop(&shared);
    let outcome = match result {
        Ok(mut switch) => {
            switch.close_ports();
            Ok(())
        }
        Err((e, mut switch)) => {
            switch.close_ports();
            Err(e)
        }
    };
    eal_for_cleanup.cleanup();
    tracing::info!("vswitchd stopped");
    outcome
}

/// `--check`: doctor's findings for what these arguments would start.
fn check(args: &Args) -> u8 {
    use control::doctor::{self, host::Host, plan::Plan, Finding, Severity};
    let host = Host::default();
    let options: Vec<String> = [
        ("--mbufs", args.mbufs.to_string()),
        ("--db", args.db.display().to_string()),
        ("--socket", args.socket.display().to_string()),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_string(), v])
    .collect();
    let plan = Plan::configured("these arguments".into(), &options, &args.eal, &host.online_cpus());
    let plan = plan.with_state(Store::load(&args.db));
    let mut findings = doctor::examine(&plan, &host);
    if let Err(e) = server::check_socket_free(&args.socket) {
        findings.insert(
            0,
            Finding::bad("daemon", Severity::Error, e, "a second switch cannot share the API socket")
                .fix("stop the running one (systemctl stop vswitchd), or give this one --socket"),
        );
    }
    print!("{}", doctor::render(&plan, &findings));
    doctor::exit_status(&findings)
}

/// `--cluster`, `--node` and `--cluster-prefix`, checked.
fn cluster_config(args: &Args) -> Result<Option<control::cluster::agent::Config>, String> {
    use control::cluster::{keys, parse_store, tls_options};
    let Some(store) = &args.cluster else { return Ok(None) };
    let tls = tls_options(args.cluster_ca.as_deref(), args.cluster_cert.as_deref(), args.cluster_key.as_deref())?;
    let scheme = if tls.is_some() { "https://" } else { "http://" };
    let node = args.node.clone().unwrap_or_default();
    keys::check_node(&node)?;
    let mut cache = args.db.as_os_str().to_owned();
    cache.push(".cluster");
    Ok(Some(control::cluster::agent::Config {
        store: parse_store(store)?.into_iter().map(|u| u.replacen("http://", scheme, 1)).collect(),
        node,
        prefix: keys::check_prefix(&args.cluster_prefix)?,
        cache: PathBuf::from(cache),
        tls,
    }))
}

/// Options by which the user has already said how hugepage files are kept, or that
/// there are none.
const HUGEPAGE_FILE_OPTIONS: [&str; 5] =
    ["--huge-unlink", "--no-huge", "--in-memory", "--single-file-segments", "--proc-type"];

/// The user's EAL arguments, with `--huge-unlink` in front unless they chose how
/// hugepage files are kept. DPDK's default keeps the files after the process exits,
/// so a stopped or crashed switch would go on holding its hugepages until the next
/// start with the same `--file-prefix`. Unlinked once mapped, the pages go back to the
/// host however vswitchd exits. The cost is secondary processes (dpdk-proc-info,
/// dpdk-pdump); `--huge-unlink=existing` (DPDK's default) brings them back.
fn eal_args(user: &[String]) -> Vec<String> {
    let chosen = user.iter().any(|a| {
        HUGEPAGE_FILE_OPTIONS
            .iter()
            .any(|o| a.strip_prefix(o).is_some_and(|rest| rest.is_empty() || rest.starts_with('=')))
    });
    let own = (!chosen).then(|| "--huge-unlink".to_string());
    own.into_iter().chain(user.iter().cloned()).collect()
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop vswitchd with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::eal_args;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hugepage_files_are_unlinked_unless_the_user_chose_otherwise() {
        assert_eq!(eal_args(&args(&["-l", "0-1"])), args(&["--huge-unlink", "-l", "0-1"]));
        for own in [
            "--huge-unlink",
            "--huge-unlink=never",
            "--no-huge",
            "--in-memory",
            "--single-file-segments",
            "--proc-type=secondary",
        ] {
            assert_eq!(eal_args(&args(&["-l", "0-1", own])), args(&["-l", "0-1", own]), "{own}");
        }
        assert_eq!(eal_args(&args(&["--proc-type", "primary"])), args(&["--proc-type", "primary"]));
        // Only whole options count.
        assert_eq!(eal_args(&args(&["--no-hugex"])), args(&["--huge-unlink", "--no-hugex"]));
    }
}
