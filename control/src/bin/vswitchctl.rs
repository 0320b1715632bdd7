//! vswitchctl: the operator's tool. Talks to vswitchd over its Unix socket. Each
//! feature's verbs live in its folder (`control/src/<feature>/cli.rs`); this lists them.
use clap::{Parser, Subcommand};
use control::{
    acl::cli::AclCmd,
    apply::cli::ApplyCmd,
    capture::cli::CaptureCmd,
    cli::{Ctl, Verb},
    cluster::cli::ClusterCmd,
    cni::cli::{AttachmentCmd, IpamCmd},
    conntrack::cli::ConntrackCmd,
    doctor::cli::DoctorCmd,
    endpoints::cli::EndpointCmd,
    overlay::cli::OverlayCmd,
    ports::cli::PortCmd,
    qos::cli::QosCmd,
    services::cli::ServiceCmd,
    sflow::cli::SflowCmd,
    stats::cli::StatsCmd,
    trace::cli::TraceCmd,
    xconnect::cli::XconnectCmd,
    DEFAULT_SOCKET,
};
use std::{path::PathBuf, process::ExitCode};

/// Control a running vswitchd.
///
/// Examples:
///   vswitchctl show
///   vswitchctl port add vm1 net_tap0,iface=vm1
///   vswitchctl xconnect add vm1 vm2
///   vswitchctl --json port stats vm1
///   vswitchctl --cluster service add web --vni 100 --vip 10.1.0.100:80 --proto tcp --backend 10.1.0.11:80
#[derive(Parser, Debug)]
#[command(name = "vswitchctl", version, verbatim_doc_comment)]
struct Cli {
    /// vswitchd's API socket.
    #[arg(long, env = "VSWITCH_SOCKET", default_value = DEFAULT_SOCKET, global = true)]
    socket: PathBuf,
    /// Print the daemon's reply as JSON (every read).
    #[arg(long, global = true)]
    json: bool,
    /// Change the cluster's shared state, which every node applies, instead of this
    /// switch's own: network add/del, acl add/del/load (per --vni), service
    /// add/set-backends/del, apply -f and dump.
    #[arg(long, global = true)]
    cluster: bool,
    /// With --cluster: write only if no entry the change touches was written after
    /// this revision (as dump --cluster shows it); otherwise nothing is written and the
    /// conflicting entry is named.
    #[arg(long, global = true, value_name = "REVISION", requires = "cluster")]
    if_revision: Option<i64>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    #[command(flatten)]
    Stats(StatsCmd),
    /// Add, delete, list ports and read their counters.
    #[command(subcommand)]
    Port(PortCmd),
    /// Static cross-connects: everything received on one port leaves the other, both ways.
    #[command(subcommand)]
    Xconnect(XconnectCmd),
    #[command(flatten)]
    Overlay(OverlayCmd),
    /// Security groups: ACL rules per VM port or per VNI, per direction.
    #[command(subcommand)]
    Acl(AclCmd),
    /// sFlow v5 export: packet samples and interface counters to collectors.
    #[command(subcommand)]
    Sflow(SflowCmd),
    /// Policing and rate limits per VM port (srTCM / trTCM), DSCP marking.
    #[command(subcommand)]
    Qos(QosCmd),
    /// Connection tracking of stateful ports: sessions, counters, timeouts.
    #[command(subcommand)]
    Conntrack(ConntrackCmd),
    /// The endpoint table: who holds each address of each network (ARP/ND answers, routes).
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// Services: a virtual IP spread over backends (Maglev), reached through the gateway.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// The built-in IPAM of the CNI plugin: leases by workload.
    #[command(subcommand)]
    Ipam(IpamCmd),
    /// Containers the CNI plugin attached.
    #[command(subcommand)]
    Attachment(AttachmentCmd),
    /// The cluster: this node's view of the store and of the other nodes.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    #[command(flatten)]
    Apply(ApplyCmd),
    #[command(flatten)]
    Trace(TraceCmd),
    #[command(flatten)]
    Capture(CaptureCmd),
    #[command(flatten)]
    Doctor(DoctorCmd),
    /// Print a shell completion script: vswitchctl completion bash > /etc/bash_completion.d/vswitchctl
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), for packaging: vswitchctl manpage > vswitchctl.8
    #[command(hide = true)]
    Manpage,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ctl = Ctl { socket: cli.socket.clone(), json: cli.json };
    let verb: &dyn Verb = match &cli.cmd {
        Cmd::Completion { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(*shell, &mut Cli::command(), "vswitchctl", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Cmd::Manpage => {
            use clap::CommandFactory;
            let man = clap_mangen::Man::new(Cli::command()).section("8");
            return match man.render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => ctl.fail(1, &format!("cannot write the manual page: {e}")),
            };
        }
        Cmd::Stats(c) => c,
        Cmd::Port(c) => c,
        Cmd::Xconnect(c) => c,
        Cmd::Overlay(c) => c,
        Cmd::Acl(c) => c,
        Cmd::Sflow(c) => c,
        Cmd::Qos(c) => c,
        Cmd::Conntrack(c) => c,
        Cmd::Endpoint(c) => c,
        Cmd::Service(c) => c,
        Cmd::Ipam(c) => c,
        Cmd::Attachment(c) => c,
        Cmd::Cluster(c) => c,
        Cmd::Apply(c) => c,
        Cmd::Trace(c) => c,
        Cmd::Capture(c) => c,
        Cmd::Doctor(c) => c,
    };
    if cli.cluster {
        use control::{
            apply::cli::ApplyCmd as A,
            cluster::cli::{run_shared, SharedVerb},
        };
        let shared = match &cli.cmd {
            Cmd::Apply(A::Apply { file, dry_run }) => SharedVerb::Apply { file, dry_run: *dry_run },
            Cmd::Apply(A::Dump) => SharedVerb::Dump,
            _ => SharedVerb::Change(verb),
        };
        return run_shared(shared, &ctl, cli.if_revision);
    }
    verb.run(&ctl)
}
