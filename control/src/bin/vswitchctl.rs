//! vswitchctl: the operator's tool. Talks to vswitchd over its Unix socket.
use clap::{Args as ClapArgs, Parser, Subcommand};
use control::{
    api::{
        CoreView, Envelope, FibSpec, FibView, NeighSpec, NeighView, NetworkSpec, NetworkView, PortRole, PortSpec,
        PortStatsView, PortView, Request, Response, ShowView, StatsView, VtepSpec, VtepView, PROTOCOL_VERSION,
    },
    DEFAULT_SOCKET,
};
use std::net::Ipv4Addr;
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::PathBuf,
    process::ExitCode,
};

/// Control a running vswitchd.
///
/// Examples:
///   vswitchctl show
///   vswitchctl port add vm1 net_tap0,iface=vm1
///   vswitchctl xconnect add vm1 vm2
///   vswitchctl --json port stats vm1
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// vswitchd's API socket.
    #[arg(long, env = "VSWITCH_SOCKET", default_value = DEFAULT_SOCKET, global = true)]
    socket: PathBuf,
    /// Print the daemon's reply as JSON (every read).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Summary: ports, cross-connects, cores, mempool.
    #[command(after_help = "Example:\n  vswitchctl show\n  vswitchctl --json show")]
    Show,
    /// Add, delete, list ports and read their counters.
    #[command(subcommand)]
    Port(PortCmd),
    /// Static cross-connects: everything received on one port leaves the other, both ways.
    #[command(subcommand)]
    Xconnect(XconnectCmd),
    /// Tenant networks (VNIs) and their flood lists.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// The local VXLAN tunnel endpoint.
    #[command(subcommand)]
    Vtep(VtepCmd),
    /// Underlay neighbours (next hops toward remote VTEPs): static entries and the ARP cache.
    #[command(subcommand)]
    Neigh(NeighCmd),
    /// The L2 forwarding table per VNI: static and learned MACs.
    #[command(subcommand)]
    Fib(FibCmd),
    /// Security groups: ACL rules per VM port or per VNI, per direction.
    #[command(subcommand)]
    Acl(AclCmd),
    /// sFlow v5 export: packet samples and interface counters to collectors.
    #[command(subcommand)]
    Sflow(SflowCmd),
    /// Policing and rate limits per VM port (srTCM / trTCM), DSCP marking.
    #[command(subcommand)]
    Qos(QosCmd),
    /// Make the switch match a desired-state file (YAML or JSON, as `dump` prints), all or nothing.
    ///
    /// Examples:
    ///   vswitchctl dump > switch.json; vswitchctl apply -f switch.json    # changes nothing
    ///   vswitchctl apply -f switch.yaml --dry-run                          # print what would change
    #[command(verbatim_doc_comment)]
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Print the changes without making them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the running desired state in the format `apply` reads.
    #[command(after_help = "Example:\n  vswitchctl dump > switch.json")]
    Dump,
    /// Show each stage's decision for one packet arriving on a port, against the tables
    /// the cores use now. Sends nothing, learns nothing.
    ///
    /// Examples:
    ///   vswitchctl trace --port vm1 --packet 02000000020102000000010108004500...
    ///   vswitchctl trace --port up0 --pcap capture.pcap --index 3
    #[command(verbatim_doc_comment)]
    Trace {
        #[arg(long)]
        port: String,
        /// The frame in hex, from the destination MAC on (no FCS).
        #[arg(long, conflicts_with = "pcap", required_unless_present = "pcap")]
        packet: Option<String>,
        /// Take the frame from a pcap file...
        #[arg(long)]
        pcap: Option<PathBuf>,
        /// ...the INDEX-th frame (from 0).
        #[arg(long, default_value_t = 0, requires = "pcap")]
        index: usize,
    },
    /// Print a shell completion script: vswitchctl completion bash > /etc/bash_completion.d/vswitchctl
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Counters per port and per core, drops by reason, mempool use.
    #[command(after_help = "Example:\n  vswitchctl stats\n  vswitchctl --json stats | jq .ports")]
    Stats,
    /// Per PMD core: rx queues, busy %, cycles per packet, time inside the switch.
    #[command(after_help = "Example:\n  vswitchctl cores")]
    Cores,
    /// Write packets a port receives and sends to a pcap file, while it keeps forwarding.
    ///
    /// Examples:
    ///   vswitchctl capture vm1 --count 100 -w vm1.pcap
    ///   vswitchctl capture up0 --count 1000 --dir rx --snaplen 128 -w up0.pcap --timeout 30
    #[command(verbatim_doc_comment)]
    Capture {
        port: String,
        /// Stop after this many packets.
        #[arg(long, short = 'c', default_value_t = 100)]
        count: u32,
        /// The pcap file to write.
        #[arg(short = 'w', long = "write", value_name = "FILE.pcap")]
        write: PathBuf,
        /// Which packets: received, sent, or both.
        #[arg(long, value_enum, default_value_t = CaptureDirArg::Both)]
        dir: CaptureDirArg,
        /// Bytes kept per packet (1 to 2048).
        #[arg(long)]
        snaplen: Option<u16>,
        /// Stop after this many seconds even if fewer packets came.
        #[arg(long, default_value_t = 10)]
        timeout: u32,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum CaptureDirArg {
    Rx,
    Tx,
    Both,
}

#[derive(Subcommand, Debug)]
enum PortCmd {
    /// Attach a DPDK device by its devargs and start forwarding on it.
    ///
    /// Examples:
    ///   vswitchctl port add vm1 net_tap0,iface=vm1
    ///   vswitchctl port add vm2 net_vhost0,iface=/run/vswitch/vm2.sock
    ///   vswitchctl port add vm3 net_vhost1,iface=/tmp/vm3.sock,client=1
    ///   vswitchctl port add up0 0000:00:04.0 --queues 2
    #[command(verbatim_doc_comment)]
    Add(PortAddArgs),
    /// Stop forwarding on a port, then close and detach its device.
    #[command(after_help = "Example:\n  vswitchctl port del vm1")]
    Del { name: String },
    /// Ports with their device, state, MAC and rx queue placement.
    #[command(after_help = "Example:\n  vswitchctl port list")]
    List,
    /// Counters of one port or all: rx/tx packets and bytes, drops by reason.
    #[command(after_help = "Example:\n  vswitchctl port stats vm1\n  vswitchctl --json port stats")]
    Stats { name: Option<String> },
}

#[derive(ClapArgs, Debug)]
struct PortAddArgs {
    /// Port name (1-32 of A-Z a-z 0-9 _ . -).
    name: String,
    /// DPDK devargs, exactly as for any DPDK program: net_tap0,iface=vm1 or a PCI address.
    devargs: String,
    /// Rx queues.
    #[arg(long)]
    queues: Option<u16>,
    /// PMD lcores that poll this port's rx queues, e.g. 1,3 or 1-2 (default: least loaded).
    #[arg(long, value_parser = parse_lcores)]
    cores: Option<Lcores>,
    /// Port MTU in bytes.
    #[arg(long)]
    mtu: Option<u16>,
    /// What the port is: a VM's port in a tenant network, or the underlay uplink.
    #[arg(long, value_enum)]
    role: Option<RoleArg>,
    /// The tenant network of a VM port.
    #[arg(long)]
    vni: Option<u32>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum RoleArg {
    Vm,
    Uplink,
}

#[derive(Subcommand, Debug)]
enum NetworkCmd {
    /// Add a tenant network.
    ///
    /// Example: vswitchctl network add 100 --name blue --max-macs 4096 --aging 600
    #[command(verbatim_doc_comment)]
    Add {
        vni: u32,
        #[arg(long)]
        name: Option<String>,
        /// Learned MACs allowed (default 8192); more are not learned, and counted.
        #[arg(long)]
        max_macs: Option<u32>,
        /// Seconds a learned MAC lives without traffic (default 300).
        #[arg(long)]
        aging: Option<u32>,
    },
    /// Delete a network (it must have no ports and no static FIB entries).
    #[command(after_help = "Example:\n  vswitchctl network del 100")]
    Del { vni: u32 },
    /// Networks with their ports, flood lists and learning counters.
    #[command(after_help = "Example:\n  vswitchctl network list")]
    List,
    /// Add a remote VTEP to the network's flood list (head-end replication of BUM traffic).
    #[command(after_help = "Example:\n  vswitchctl network add-vtep 100 192.168.50.2")]
    AddVtep { vni: u32, ip: Ipv4Addr },
    /// Remove a remote VTEP from the flood list.
    #[command(after_help = "Example:\n  vswitchctl network del-vtep 100 192.168.50.2")]
    DelVtep { vni: u32, ip: Ipv4Addr },
}

#[derive(Subcommand, Debug)]
enum VtepCmd {
    /// Set the local VTEP.
    ///
    /// Example: vswitchctl vtep set --ip 192.168.50.1/24 --uplink up0 --gateway 192.168.50.254
    #[command(verbatim_doc_comment)]
    Set {
        /// Underlay address with prefix length.
        #[arg(long)]
        ip: String,
        /// The uplink port (added with --role uplink).
        #[arg(long)]
        uplink: String,
        /// Source MAC of encapsulated frames (default: the uplink's).
        #[arg(long)]
        mac: Option<String>,
        /// Next hop toward remote VTEPs outside the prefix.
        #[arg(long)]
        gateway: Option<Ipv4Addr>,
        /// VXLAN UDP port (default 4789).
        #[arg(long)]
        udp_port: Option<u16>,
        /// TTL of the outer IPv4 header (default 64).
        #[arg(long)]
        ttl: Option<u8>,
    },
    /// The VTEP, its state, and each remote VTEP's next hop.
    #[command(after_help = "Example:\n  vswitchctl vtep show")]
    Show,
}

#[derive(Subcommand, Debug)]
enum NeighCmd {
    /// A static underlay neighbour (no ARP for it).
    #[command(after_help = "Example:\n  vswitchctl neigh add 192.168.50.254 02:00:00:00:fe:01")]
    Add { ip: Ipv4Addr, mac: String },
    /// Delete a static neighbour.
    #[command(after_help = "Example:\n  vswitchctl neigh del 192.168.50.254")]
    Del { ip: Ipv4Addr },
    /// Static neighbours and the ARP cache.
    #[command(after_help = "Example:\n  vswitchctl neigh list")]
    List,
}

#[derive(Subcommand, Debug)]
enum FibCmd {
    /// A static MAC: behind a local VM port, or a remote VTEP. Static entries win over learning.
    ///
    /// Examples:
    ///   vswitchctl fib add 100 02:00:00:00:02:01 --port vm2
    ///   vswitchctl fib add 100 02:00:00:00:09:01 --vtep 192.168.50.2
    #[command(verbatim_doc_comment)]
    Add {
        vni: u32,
        mac: String,
        #[arg(long, conflicts_with = "vtep", required_unless_present = "vtep")]
        port: Option<String>,
        #[arg(long)]
        vtep: Option<Ipv4Addr>,
    },
    /// Delete a static or learned entry.
    #[command(after_help = "Example:\n  vswitchctl fib del 100 02:00:00:00:02:01")]
    Del { vni: u32, mac: String },
    /// Entries of one VNI or all, static and learned (with age).
    #[command(after_help = "Example:\n  vswitchctl fib list 100")]
    List { vni: Option<u32> },
}

#[derive(Clone, Debug)]
struct Lcores(Vec<u32>);

fn parse_lcores(s: &str) -> Result<Lcores, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let bad = || format!("{part:?} is not an lcore number or range (e.g. 1,3 or 1-2)");
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (u32, u32) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
            if a > b || b - a > 1024 {
                return Err(bad());
            }
            out.extend(a..=b);
        } else {
            out.push(part.trim().parse().map_err(|_| bad())?);
        }
    }
    Ok(Lcores(out))
}

#[derive(Subcommand, Debug)]
enum AclCmd {
    /// Add a rule; prints its id. Higher priority wins; equal priorities go to the lower id.
    ///
    /// Examples:
    ///   vswitchctl acl add --priority 100 --port vm1 --proto tcp --dport 22 --action allow
    ///   vswitchctl acl add --priority 10 --vni 100 --dir out --src 10.0.0.0/8 --action deny
    ///   vswitchctl acl add --priority 50 --port vm1 --src fd00::/64 --proto icmpv6 --icmp-type 128 --action allow
    #[command(verbatim_doc_comment)]
    Add(AclRuleArgs),
    /// Delete a rule by id.
    #[command(after_help = "Example:\n  vswitchctl acl del 7")]
    Del { id: u32 },
    /// Rules with their hit counters.
    #[command(after_help = "Example:\n  vswitchctl acl list --port vm1")]
    List {
        #[arg(long)]
        port: Option<String>,
        #[arg(long)]
        vni: Option<u32>,
    },
    /// Replace every rule with those in FILE, atomically: one `acl add` option list per
    /// line, `#` comments. One bad line installs nothing and names the line.
    ///
    /// Example file:
    ///   --priority 100 --port vm1 --proto tcp --dport 22 --action allow
    ///   --priority 1 --port vm1 --action deny    # everything else
    #[command(verbatim_doc_comment)]
    Load { file: PathBuf },
    /// The action for a port's traffic that no rule matches (and for non-IP frames): allow
    /// (the default) or deny. Applies to both directions.
    #[command(after_help = "Example:\n  vswitchctl acl default vm1 deny")]
    Default {
        port: String,
        #[arg(value_enum)]
        action: ActionArg,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ActionArg {
    Allow,
    Deny,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum DirArg {
    In,
    Out,
}

#[derive(ClapArgs, Debug, Clone)]
struct AclRuleArgs {
    #[arg(long)]
    priority: u32,
    /// A VM port the rule applies to...
    #[arg(long, conflicts_with = "vni", required_unless_present = "vni")]
    port: Option<String>,
    /// ...or every VM port of a VNI.
    #[arg(long)]
    vni: Option<u32>,
    /// in: from the VM (default); out: to the VM.
    #[arg(long, value_enum)]
    dir: Option<DirArg>,
    /// Source prefix, IPv4 or IPv6.
    #[arg(long)]
    src: Option<String>,
    #[arg(long)]
    dst: Option<String>,
    /// tcp, udp, icmp, icmpv6 or a protocol number.
    #[arg(long)]
    proto: Option<String>,
    /// LO or LO-HI.
    #[arg(long)]
    sport: Option<String>,
    #[arg(long)]
    dport: Option<String>,
    #[arg(long)]
    icmp_type: Option<u8>,
    #[arg(long, value_enum)]
    action: ActionArg,
    /// A rule id of your choice (default: the next free one).
    #[arg(long)]
    id: Option<u32>,
}

impl AclRuleArgs {
    fn spec(&self) -> control::api::AclRuleSpec {
        use control::api::{AclAction, AclDir};
        control::api::AclRuleSpec {
            id: self.id,
            priority: self.priority,
            port: self.port.clone(),
            vni: self.vni,
            dir: self.dir.map(|d| match d {
                DirArg::In => AclDir::In,
                DirArg::Out => AclDir::Out,
            }),
            src: self.src.clone(),
            dst: self.dst.clone(),
            proto: self.proto.clone(),
            sport: self.sport.clone(),
            dport: self.dport.clone(),
            icmp_type: self.icmp_type,
            action: match self.action {
                ActionArg::Allow => AclAction::Allow,
                ActionArg::Deny => AclAction::Deny,
            },
        }
    }
}

/// One line of an `acl load` file.
#[derive(Parser, Debug)]
#[command(name = "rule", no_binary_name = true)]
struct RuleLine {
    #[command(flatten)]
    rule: AclRuleArgs,
}

/// The rules of an `acl load` file, with the line each came from.
fn read_rules(path: &PathBuf) -> Result<Vec<(usize, control::api::AclRuleSpec)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words = line.split_whitespace();
        let r = RuleLine::try_parse_from(words).map_err(|e| {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("").trim_start_matches("error: ").to_string();
            format!("{} line {}: {first}", path.display(), n + 1)
        })?;
        out.push((n + 1, r.rule.spec()));
    }
    Ok(out)
}

#[derive(Subcommand, Debug)]
enum SflowCmd {
    /// Sample 1 in N packets on every pipeline port and send counters every SECS.
    ///
    /// Examples:
    ///   vswitchctl sflow set --collector 192.0.2.10:6343 --sampling 1024
    ///   vswitchctl sflow set --collector [fd00::10]:6343 --collector 10.0.0.9:6343 --sampling 512 --polling 10
    #[command(verbatim_doc_comment)]
    Set {
        /// IP:PORT of a collector ([IPv6]:PORT); repeat for several.
        #[arg(long = "collector", required = true)]
        collectors: Vec<String>,
        /// 1 in N packets (0: counters only).
        #[arg(long)]
        sampling: u32,
        /// Seconds between counter samples (default 20, 0: none).
        #[arg(long)]
        polling: Option<u32>,
        /// The agent address in datagrams (default: the VTEP IP).
        #[arg(long)]
        agent: Option<std::net::IpAddr>,
        /// Bytes of each sampled header (default 128, 14-256).
        #[arg(long)]
        header_bytes: Option<u16>,
    },
    /// Stop exporting.
    #[command(after_help = "Example:\n  vswitchctl sflow off")]
    Off,
    /// The setting and what was sent.
    #[command(after_help = "Example:\n  vswitchctl sflow show")]
    Show,
}

#[derive(Subcommand, Debug)]
enum QosCmd {
    /// Set a port's meters. Rates: 100mbit, 1gbit, 50kpps; sizes: 64kb, 1500b, 32pkt.
    /// Green passes; yellow and red do what --yellow/--red say (default pass, drop).
    ///
    /// Examples:
    ///   vswitchctl qos set vm1 --ingress-rate 100mbit --ingress-burst 64kb
    ///   vswitchctl qos set vm1 --egress-rate 1gbit --mode trtcm --egress-peak-rate 2gbit --yellow dscp=10
    ///   vswitchctl qos set vm1 --dscp 46                 # outer DSCP when vm1's traffic is encapsulated
    #[command(verbatim_doc_comment)]
    Set(Box<QosArgs>),
    /// Remove a port's meters and DSCP setting.
    #[command(after_help = "Example:\n  vswitchctl qos clear vm1")]
    Clear { port: String },
    /// QoS of one port or all.
    #[command(after_help = "Example:\n  vswitchctl qos show vm1")]
    Show { port: Option<String> },
}

#[derive(ClapArgs, Debug)]
struct QosArgs {
    port: String,
    /// Policer on what the VM sends: committed rate...
    #[arg(long)]
    ingress_rate: Option<String>,
    /// ...committed burst (default 10 ms at the rate)...
    #[arg(long, requires = "ingress_rate")]
    ingress_burst: Option<String>,
    /// ...srtcm excess burst (yellow)...
    #[arg(long, requires = "ingress_rate")]
    ingress_excess_burst: Option<String>,
    /// ...trtcm peak rate and burst.
    #[arg(long, requires = "ingress_rate")]
    ingress_peak_rate: Option<String>,
    #[arg(long, requires = "ingress_rate")]
    ingress_peak_burst: Option<String>,
    /// Rate limit on what the VM receives, the same way.
    #[arg(long)]
    egress_rate: Option<String>,
    #[arg(long, requires = "egress_rate")]
    egress_burst: Option<String>,
    #[arg(long, requires = "egress_rate")]
    egress_excess_burst: Option<String>,
    #[arg(long, requires = "egress_rate")]
    egress_peak_rate: Option<String>,
    #[arg(long, requires = "egress_rate")]
    egress_peak_burst: Option<String>,
    /// srtcm (RFC 2697, default) or trtcm (RFC 2698).
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
    /// What yellow packets get: pass (default), drop, dscp=N.
    #[arg(long)]
    yellow: Option<String>,
    /// What red packets get: drop (default), pass, dscp=N.
    #[arg(long)]
    red: Option<String>,
    /// DSCP of the outer header when this port's traffic is encapsulated.
    #[arg(long)]
    dscp: Option<u8>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ModeArg {
    Srtcm,
    Trtcm,
}

impl QosArgs {
    fn spec(&self) -> control::api::QosSpec {
        use control::api::MeterSpec;
        let meter = |rate: &Option<String>,
                     burst: &Option<String>,
                     ebs: &Option<String>,
                     pr: &Option<String>,
                     pb: &Option<String>| {
            rate.as_ref().map(|r| MeterSpec {
                rate: r.clone(),
                burst: burst.clone(),
                excess_burst: ebs.clone(),
                peak_rate: pr.clone(),
                peak_burst: pb.clone(),
            })
        };
        control::api::QosSpec {
            port: self.port.clone(),
            mode: self.mode.map(|m| match m {
                ModeArg::Srtcm => control::api::QosMode::Srtcm,
                ModeArg::Trtcm => control::api::QosMode::Trtcm,
            }),
            ingress: meter(
                &self.ingress_rate,
                &self.ingress_burst,
                &self.ingress_excess_burst,
                &self.ingress_peak_rate,
                &self.ingress_peak_burst,
            ),
            egress: meter(
                &self.egress_rate,
                &self.egress_burst,
                &self.egress_excess_burst,
                &self.egress_peak_rate,
                &self.egress_peak_burst,
            ),
            yellow: self.yellow.clone(),
            red: self.red.clone(),
            dscp: self.dscp,
        }
    }
}

#[derive(Subcommand, Debug)]
enum XconnectCmd {
    /// Cross-connect two ports, both directions.
    #[command(after_help = "Example:\n  vswitchctl xconnect add vm1 vm2")]
    Add { a: String, b: String },
    /// Remove the cross-connect of a port (either end).
    #[command(after_help = "Example:\n  vswitchctl xconnect del vm1")]
    Del { a: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let req = match &cli.cmd {
        Cmd::Completion { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(*shell, &mut Cli::command(), "vswitchctl", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Cmd::Apply { file, dry_run } => match read_state(file) {
            Ok(state) => Request::Apply { state, dry_run: *dry_run },
            Err(e) => {
                eprintln!("vswitchctl: {e}");
                return ExitCode::from(1);
            }
        },
        Cmd::Dump => Request::Dump,
        Cmd::Acl(AclCmd::Add(a)) => Request::AclAdd(a.spec()),
        Cmd::Qos(QosCmd::Set(q)) => Request::QosSet(q.spec()),
        Cmd::Sflow(SflowCmd::Set { collectors, sampling, polling, agent, header_bytes }) => {
            Request::SflowSet(control::api::SflowSpec {
                collectors: collectors.clone(),
                sampling: *sampling,
                polling: *polling,
                agent: *agent,
                header_bytes: *header_bytes,
            })
        }
        Cmd::Sflow(SflowCmd::Off) => Request::SflowOff,
        Cmd::Sflow(SflowCmd::Show) => Request::SflowShow,
        Cmd::Qos(QosCmd::Clear { port }) => Request::QosClear { port: port.clone() },
        Cmd::Qos(QosCmd::Show { port }) => Request::QosShow { port: port.clone() },
        Cmd::Acl(AclCmd::Del { id }) => Request::AclDel { id: *id },
        Cmd::Acl(AclCmd::List { port, vni }) => Request::AclList { port: port.clone(), vni: *vni },
        Cmd::Acl(AclCmd::Default { port, action }) => Request::AclDefault {
            port: port.clone(),
            action: match action {
                ActionArg::Allow => control::api::AclAction::Allow,
                ActionArg::Deny => control::api::AclAction::Deny,
            },
        },
        Cmd::Acl(AclCmd::Load { file }) => match read_rules(file) {
            Ok(rules) => {
                let lines: Vec<usize> = rules.iter().map(|(n, _)| *n).collect();
                let req = Request::AclLoad { rules: rules.into_iter().map(|(_, r)| r).collect() };
                return run_acl_load(&cli, &req, file, &lines);
            }
            Err(e) => {
                eprintln!("vswitchctl: {e}");
                return ExitCode::from(1);
            }
        },
        Cmd::Trace { port, packet, pcap, index } => {
            let hex = match (packet, pcap) {
                (Some(h), _) => Ok(h.clone()),
                (None, Some(file)) => frame_from_pcap(file, *index),
                (None, None) => Err("give --packet HEX or --pcap FILE".into()),
            };
            match hex {
                Ok(packet) => Request::Trace { port: port.clone(), packet },
                Err(e) => {
                    eprintln!("vswitchctl: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        Cmd::Show => Request::Show,
        Cmd::Stats => Request::Stats,
        Cmd::Cores => Request::Cores,
        Cmd::Capture { port, count, dir, snaplen, timeout, .. } => Request::Capture(control::api::CaptureSpec {
            port: port.clone(),
            count: *count,
            dir: match dir {
                CaptureDirArg::Rx => control::api::CaptureDir::Rx,
                CaptureDirArg::Tx => control::api::CaptureDir::Tx,
                CaptureDirArg::Both => control::api::CaptureDir::Both,
            },
            snaplen: *snaplen,
            timeout_s: Some(*timeout),
        }),
        Cmd::Port(PortCmd::Add(a)) => Request::PortAdd(PortSpec {
            name: a.name.clone(),
            devargs: a.devargs.clone(),
            queues: a.queues,
            cores: a.cores.clone().map(|c| c.0),
            mtu: a.mtu,
            role: a.role.map(|r| match r {
                RoleArg::Vm => PortRole::Vm,
                RoleArg::Uplink => PortRole::Uplink,
            }),
            vni: a.vni,
        }),
        Cmd::Network(NetworkCmd::Add { vni, name, max_macs, aging }) => Request::NetworkAdd(NetworkSpec {
            vni: *vni,
            name: name.clone(),
            max_macs: *max_macs,
            aging: *aging,
            flood_vteps: Vec::new(),
        }),
        Cmd::Network(NetworkCmd::Del { vni }) => Request::NetworkDel { vni: *vni },
        Cmd::Network(NetworkCmd::List) => Request::NetworkList,
        Cmd::Network(NetworkCmd::AddVtep { vni, ip }) => Request::NetworkAddVtep { vni: *vni, ip: *ip },
        Cmd::Network(NetworkCmd::DelVtep { vni, ip }) => Request::NetworkDelVtep { vni: *vni, ip: *ip },
        Cmd::Vtep(VtepCmd::Set { ip, uplink, mac, gateway, udp_port, ttl }) => Request::VtepSet(VtepSpec {
            ip: ip.clone(),
            uplink: uplink.clone(),
            mac: mac.clone(),
            gateway: *gateway,
            udp_port: *udp_port,
            ttl: *ttl,
        }),
        Cmd::Vtep(VtepCmd::Show) => Request::VtepShow,
        Cmd::Neigh(NeighCmd::Add { ip, mac }) => Request::NeighAdd(NeighSpec { ip: *ip, mac: mac.clone() }),
        Cmd::Neigh(NeighCmd::Del { ip }) => Request::NeighDel { ip: *ip },
        Cmd::Neigh(NeighCmd::List) => Request::NeighList,
        Cmd::Fib(FibCmd::Add { vni, mac, port, vtep }) => {
            Request::FibAdd(FibSpec { vni: *vni, mac: mac.clone(), port: port.clone(), vtep: *vtep })
        }
        Cmd::Fib(FibCmd::Del { vni, mac }) => Request::FibDel { vni: *vni, mac: mac.clone() },
        Cmd::Fib(FibCmd::List { vni }) => Request::FibList { vni: *vni },
        Cmd::Port(PortCmd::Del { name }) => Request::PortDel { name: name.clone() },
        Cmd::Port(PortCmd::List) => Request::PortList,
        Cmd::Port(PortCmd::Stats { name }) => Request::PortStats { name: name.clone() },
        Cmd::Xconnect(XconnectCmd::Add { a, b }) => Request::XconnectAdd { a: a.clone(), b: b.clone() },
        Cmd::Xconnect(XconnectCmd::Del { a }) => Request::XconnectDel { a: a.clone() },
    };
    let resp = match call(&cli.socket, &req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vswitchctl: {e}");
            return ExitCode::from(2);
        }
    };
    if !resp.ok {
        eprintln!("vswitchctl: {}", resp.error.unwrap_or_else(|| "vswitchd refused the request".into()));
        return ExitCode::from(1);
    }
    let result = resp.result.unwrap_or(serde_json::Value::Null);
    if let Cmd::Capture { write, .. } = &cli.cmd {
        return match write_capture(write, result, cli.json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vswitchctl: {e}");
                ExitCode::from(1)
            }
        };
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&result).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    match print_human(&cli.cmd, result) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vswitchctl: cannot read vswitchd's reply: {e}");
            ExitCode::from(2)
        }
    }
}

/// Writes a capture's packets to a pcap file and says what it wrote.
fn write_capture(path: &PathBuf, result: serde_json::Value, json: bool) -> Result<(), String> {
    let c: control::api::CaptureView =
        serde_json::from_value(result).map_err(|e| format!("cannot read vswitchd's reply: {e}"))?;
    let f = std::fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let header = pcap_file::pcap::PcapHeader {
        ts_resolution: pcap_file::TsResolution::NanoSecond,
        snaplen: 65535,
        ..Default::default()
    };
    let mut w = pcap_file::pcap::PcapWriter::with_header(std::io::BufWriter::new(f), header)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    for p in &c.packets {
        let data = control::trace::parse_hex(&p.data).map_err(|e| format!("vswitchd sent a bad packet: {e}"))?;
        let pkt = pcap_file::pcap::PcapPacket::new_owned(
            std::time::Duration::from_nanos(p.ts_ns),
            p.orig_len.max(data.len() as u32),
            data,
        );
        w.write_packet(&pkt).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    w.into_writer().into_inner().map_err(|e| format!("writing {}: {e}", path.display()))?;
    let (rx, tx) = c.packets.iter().fold((0, 0), |(r, t), p| if p.dir == "tx" { (r, t + 1) } else { (r + 1, t) });
    if json {
        println!(
            "{}",
            serde_json::json!({"file": path, "packets": c.packets.len(), "rx": rx, "tx": tx, "lost": c.lost, "complete": c.complete})
        );
    } else {
        println!(
            "{} packets from port {} ({rx} received, {tx} sent) written to {}{}{}",
            c.packets.len(),
            c.port,
            path.display(),
            if c.lost > 0 { format!("; {} not copied (capture buffers full)", c.lost) } else { String::new() },
            if c.complete { "" } else { "; the timeout ended the capture first" },
        );
    }
    Ok(())
}

/// Frame `index` of a pcap file, in hex.
fn frame_from_pcap(path: &PathBuf, index: usize) -> Result<String, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut r =
        pcap_file::pcap::PcapReader::new(f).map_err(|e| format!("{} is not a pcap file: {e}", path.display()))?;
    let mut i = 0;
    while let Some(p) = r.next_packet() {
        let p = p.map_err(|e| format!("reading {}: {e}", path.display()))?;
        if i == index {
            return Ok(control::trace::to_hex(&p.data));
        }
        i += 1;
    }
    Err(format!("--index: {} has {i} frames, there is no frame {index}", path.display()))
}

/// A desired-state file: JSON if it parses as JSON, else YAML.
fn read_state(path: &PathBuf) -> Result<control::state::DesiredState, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match serde_json::from_str(&text) {
        Ok(s) => Ok(s),
        Err(json_err) if text.trim_start().starts_with('{') => {
            Err(format!("{} is not a valid desired state (JSON): {json_err}", path.display()))
        }
        Err(_) => serde_yaml_ng::from_str(&text)
            .map_err(|e| format!("{} is not a valid desired state (YAML): {e}", path.display())),
    }
}

/// `acl load`: a refused rule is reported by its line in the file.
fn run_acl_load(cli: &Cli, req: &Request, file: &std::path::Path, lines: &[usize]) -> ExitCode {
    let resp = match call(&cli.socket, req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vswitchctl: {e}");
            return ExitCode::from(2);
        }
    };
    if resp.ok {
        let n = resp.result.as_ref().and_then(|v| v["rules"].as_u64()).unwrap_or(0);
        println!("loaded {n} rules from {}", file.display());
        return ExitCode::SUCCESS;
    }
    let err = resp.error.unwrap_or_default();
    let located = err
        .strip_prefix("rules[")
        .and_then(|rest| rest.split_once("]: "))
        .and_then(|(i, msg)| i.parse::<usize>().ok().and_then(|i| lines.get(i)).map(|line| (line, msg)));
    match located {
        Some((line, msg)) => eprintln!("vswitchctl: {} line {line}: {msg}; nothing was installed", file.display()),
        None => eprintln!("vswitchctl: {err}"),
    }
    ExitCode::from(1)
}

fn call(socket: &PathBuf, req: &Request) -> Result<Response, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot connect to vswitchd at {}: {e}\nIs vswitchd running? Start it with `vswitchd -- -l 0-1` (add `--no-huge -m 512 --no-pci` without hugepages), \
             or point at its socket with --socket PATH or VSWITCH_SOCKET.",
            socket.display()
        )
    })?;
    let mut line =
        serde_json::to_vec(&Envelope { version: PROTOCOL_VERSION, request: req.clone() }).map_err(|e| e.to_string())?;
    line.push(b'\n');
    stream.write_all(&line).map_err(|e| format!("sending to vswitchd at {}: {e}", socket.display()))?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).map_err(|e| format!("reading vswitchd's reply: {e}"))?;
    if reply.is_empty() {
        return Err("vswitchd closed the connection without replying (is it shutting down?)".into());
    }
    serde_json::from_str(&reply).map_err(|e| format!("vswitchd sent a reply this vswitchctl cannot read: {e}"))
}

fn print_human(cmd: &Cmd, v: serde_json::Value) -> Result<(), serde_json::Error> {
    match cmd {
        Cmd::Show => print_show(&serde_json::from_value(v)?),
        Cmd::Port(PortCmd::Add(_)) => {
            let p: PortView = serde_json::from_value(v)?;
            println!(
                "port {} added: {} {} port_id {}",
                p.name,
                p.driver.unwrap_or_default(),
                p.state,
                p.port_id.unwrap_or_default()
            );
        }
        Cmd::Port(PortCmd::List) => print_ports(&serde_json::from_value::<Vec<PortView>>(v)?),
        Cmd::Port(PortCmd::Stats { .. }) => print_port_stats(&serde_json::from_value::<Vec<PortStatsView>>(v)?),
        Cmd::Stats => {
            let s: StatsView = serde_json::from_value(v)?;
            print_port_stats(&s.ports);
            println!();
            print_cores(&s.cores);
            println!();
            println!("mempool: {} mbufs, {} in use, {} free", s.mempool.size, s.mempool.in_use, s.mempool.available);
        }
        Cmd::Cores => print_cores(&serde_json::from_value::<Vec<CoreView>>(v)?),
        Cmd::Network(NetworkCmd::List) => print_networks(&serde_json::from_value::<Vec<NetworkView>>(v)?),
        Cmd::Vtep(VtepCmd::Show) => match serde_json::from_value::<Option<VtepView>>(v)? {
            Some(vt) => print_vtep(&vt),
            None => println!("no VTEP (set one with: vswitchctl vtep set --ip A.B.C.D/LEN --uplink PORT)"),
        },
        Cmd::Neigh(NeighCmd::List) => print_neighbours(&serde_json::from_value::<Vec<NeighView>>(v)?),
        Cmd::Fib(FibCmd::List { .. }) => print_fib(&serde_json::from_value::<Vec<FibView>>(v)?),
        Cmd::Dump => println!("{}", serde_json::to_string_pretty(&v)?),
        Cmd::Apply { dry_run, .. } => {
            let r: control::api::ApplyReport = serde_json::from_value(v)?;
            if r.changes.is_empty() {
                println!("no changes: the switch already matches the file");
            } else {
                println!("{}", if *dry_run { "would change:" } else { "changed:" });
                for c in &r.changes {
                    println!("  {c}");
                }
            }
        }
        Cmd::Completion { .. } | Cmd::Capture { .. } => {}
        Cmd::Acl(AclCmd::Add(_)) => println!("rule {} added", v["id"]),
        Cmd::Acl(AclCmd::List { .. }) => print_acl(&serde_json::from_value::<Vec<control::api::AclRuleView>>(v)?),
        Cmd::Acl(_) => {}
        Cmd::Qos(QosCmd::Show { .. }) => {
            let specs: Vec<control::api::QosSpec> = serde_json::from_value(v)?;
            if specs.is_empty() {
                println!("no QoS set (vswitchctl qos set PORT --ingress-rate RATE ...)");
            }
            for q in specs {
                let m = |name: &str, m: &Option<control::api::MeterSpec>| {
                    m.as_ref().map(|m| {
                        let mut s = format!(" {name} {}", m.rate);
                        for (k, v) in [
                            ("burst", &m.burst),
                            ("excess", &m.excess_burst),
                            ("peak", &m.peak_rate),
                            ("peak-burst", &m.peak_burst),
                        ] {
                            if let Some(v) = v {
                                s += &format!(" {k} {v}");
                            }
                        }
                        s
                    })
                };
                println!(
                    "{}:{}{} mode {:?} yellow {} red {}{}",
                    q.port,
                    m("ingress", &q.ingress).unwrap_or_default(),
                    m("egress", &q.egress).unwrap_or_default(),
                    q.mode.unwrap_or(control::api::QosMode::Srtcm),
                    q.yellow.as_deref().unwrap_or("pass"),
                    q.red.as_deref().unwrap_or("drop"),
                    q.dscp.map(|d| format!(" outer-dscp {d}")).unwrap_or_default()
                );
            }
        }
        Cmd::Qos(_) => {}
        Cmd::Sflow(SflowCmd::Show) => {
            let v: control::api::SflowView = serde_json::from_value(v)?;
            match &v.config {
                None => println!("sFlow is off (vswitchctl sflow set --collector IP:PORT --sampling N)"),
                Some(c) => {
                    println!(
                        "sFlow to {} from agent {}: 1 in {} packets, counters every {} s, {} header bytes",
                        c.collectors.join(", "),
                        opt(&v.agent),
                        c.sampling,
                        c.polling.unwrap_or(20),
                        c.header_bytes.unwrap_or(128)
                    );
                    println!(
                        "sent {} flow samples and {} counter samples in {} datagrams; {} send errors; {} samples lost on the cores",
                        v.flow_samples, v.counter_samples, v.datagrams, v.send_errors, v.samples_lost
                    );
                }
            }
        }
        Cmd::Sflow(_) => {}
        Cmd::Trace { .. } => {
            let t: control::api::TraceView = serde_json::from_value(v)?;
            for s in &t.steps {
                println!("{s}");
            }
            if let Some(o) = &t.output {
                println!("output: {o}");
            }
        }
        Cmd::Port(PortCmd::Del { .. })
        | Cmd::Xconnect(_)
        | Cmd::Network(_)
        | Cmd::Vtep(_)
        | Cmd::Neigh(_)
        | Cmd::Fib(_) => {}
    }
    Ok(())
}

fn print_show(s: &ShowView) {
    println!("vswitchd {} ({}), main lcore {}, PMD lcores {:?}", s.version, s.dpdk, s.main_lcore, s.pmd_lcores);
    println!("state file: {}", s.db);
    println!("mempool: {} mbufs, {} in use", s.mempool.size, s.mempool.in_use);
    println!();
    print_ports(&s.ports);
    if !s.xconnects.is_empty() {
        println!();
        println!("cross-connects:");
        for x in &s.xconnects {
            println!("  {} <-> {}", x.a, x.b);
        }
    }
    if !s.networks.is_empty() {
        println!();
        print_networks(&s.networks);
    }
    if let Some(v) = &s.vtep {
        println!();
        print_vtep(v);
    }
    if s.learn_events_lost > 0 {
        println!("\nlearn events lost (ring full): {}", s.learn_events_lost);
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_else(|| "-".into())
}

fn print_networks(nets: &[NetworkView]) {
    if nets.is_empty() {
        println!("no networks (add one with: vswitchctl network add VNI)");
        return;
    }
    let mut rows = vec![["VNI", "NAME", "PORTS", "FLOOD VTEPS", "MACS", "MAX", "AGING", "REFUSED", "MOVES"]
        .map(String::from)
        .to_vec()];
    for n in nets {
        rows.push(vec![
            n.vni.to_string(),
            opt(&n.name),
            n.ports.join(","),
            n.flood_vteps.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(","),
            n.macs_learned.to_string(),
            n.max_macs.to_string(),
            format!("{}s", n.aging),
            n.learn_refused.to_string(),
            n.mac_moves.to_string(),
        ]);
    }
    table(&rows);
}

fn print_vtep(v: &VtepView) {
    println!(
        "VTEP {} on {} ({}), MAC {}, UDP {}, TTL {}, uplink MTU {}, gateway {}",
        v.ip,
        v.uplink,
        v.state,
        opt(&v.mac),
        v.udp_port,
        v.ttl,
        opt(&v.mtu),
        opt(&v.gateway)
    );
    if !v.remotes.is_empty() {
        let mut rows = vec![["REMOTE VTEP", "NEXT HOP", "NEXT HOP MAC"].map(String::from).to_vec()];
        for r in &v.remotes {
            rows.push(vec![
                r.ip.to_string(),
                opt(&r.nexthop),
                r.nexthop_mac.clone().unwrap_or_else(|| "unresolved".into()),
            ]);
        }
        table(&rows);
    }
}

fn print_neighbours(ns: &[NeighView]) {
    let mut rows = vec![["IP", "MAC", "KIND", "STATE", "AGE"].map(String::from).to_vec()];
    for n in ns {
        rows.push(vec![
            n.ip.to_string(),
            opt(&n.mac),
            n.kind.clone(),
            n.state.clone(),
            n.age_secs.map(|a| format!("{a}s")).unwrap_or_else(|| "-".into()),
        ]);
    }
    table(&rows);
}

fn print_fib(entries: &[FibView]) {
    let mut rows = vec![["VNI", "MAC", "WHERE", "KIND", "AGE"].map(String::from).to_vec()];
    for e in entries {
        let place = match (&e.port, e.vtep) {
            (Some(p), _) => format!("port {p}"),
            (None, Some(ip)) => format!("vtep {ip}"),
            _ => "-".into(),
        };
        rows.push(vec![
            e.vni.to_string(),
            e.mac.clone(),
            place,
            e.kind.clone(),
            e.age_secs.map(|a| format!("{a}s")).unwrap_or_else(|| "-".into()),
        ]);
    }
    table(&rows);
}

fn print_acl(rules: &[control::api::AclRuleView]) {
    let mut rows = vec![["ID", "PRIO", "SCOPE", "DIR", "SRC", "DST", "PROTO", "SPORT", "DPORT", "ACTION", "HITS"]
        .map(String::from)
        .to_vec()];
    for v in rules {
        let r = &v.rule;
        let scope = match (&r.port, r.vni) {
            (Some(p), _) => format!("port {p}"),
            (None, Some(n)) => format!("vni {n}"),
            _ => "-".into(),
        };
        let proto = match (&r.proto, r.icmp_type) {
            (Some(p), Some(t)) => format!("{p} type {t}"),
            (Some(p), None) => p.clone(),
            (None, _) => "any".into(),
        };
        rows.push(vec![
            opt(&r.id),
            r.priority.to_string(),
            scope,
            format!("{:?}", r.dir.unwrap_or(control::api::AclDir::In)).to_lowercase(),
            r.src.clone().unwrap_or_else(|| "any".into()),
            r.dst.clone().unwrap_or_else(|| "any".into()),
            proto,
            r.sport.clone().unwrap_or_else(|| "any".into()),
            r.dport.clone().unwrap_or_else(|| "any".into()),
            format!("{:?}", r.action).to_lowercase(),
            v.hits.to_string(),
        ]);
    }
    table(&rows);
}

fn print_ports(ports: &[PortView]) {
    if ports.is_empty() {
        println!("no ports (add one with: vswitchctl port add NAME DEVARGS)");
        return;
    }
    let mut rows = vec![vec![
        "NAME".to_string(),
        "LINK".into(),
        "ID".into(),
        "DRIVER".into(),
        "MAC".into(),
        "MTU".into(),
        "RXQ@LCORE".into(),
        "ROLE".into(),
        "XCONNECT".into(),
        "DEVARGS".into(),
    ]];
    for p in ports {
        rows.push(vec![
            p.name.clone(),
            p.state.clone(),
            p.port_id.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
            p.driver.clone().unwrap_or_else(|| "-".into()),
            p.mac.clone().unwrap_or_else(|| "-".into()),
            p.mtu.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
            p.rx_queues.iter().map(|q| format!("{}@{}", q.queue, q.lcore)).collect::<Vec<_>>().join(","),
            match (p.role, p.vni) {
                (Some(PortRole::Vm), Some(v)) => format!("vm/{v}"),
                (Some(PortRole::Uplink), _) => "uplink".into(),
                _ => "-".into(),
            },
            p.xconnect.clone().unwrap_or_else(|| "-".into()),
            p.devargs.clone(),
        ]);
    }
    table(&rows);
    for p in ports {
        if let Some(e) = &p.error {
            println!("port {}: {e}", p.name);
        }
    }
}

fn print_port_stats(stats: &[PortStatsView]) {
    let mut rows = vec![vec![
        "PORT".to_string(),
        "RX_PKTS".into(),
        "RX_BYTES".into(),
        "TX_PKTS".into(),
        "TX_BYTES".into(),
        "DROPS".into(),
        "RX_MISSED".into(),
        "DROP REASONS".into(),
    ]];
    for s in stats {
        rows.push(vec![
            s.name.clone(),
            s.rx_packets.to_string(),
            s.rx_bytes.to_string(),
            s.tx_packets.to_string(),
            s.tx_bytes.to_string(),
            s.drops.values().sum::<u64>().to_string(),
            s.rx_missed.to_string(),
            s.drops.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "),
        ]);
    }
    table(&rows);
}

fn print_cores(cores: &[CoreView]) {
    let mut rows = vec![vec![
        "CORE".to_string(),
        "LCORE".into(),
        "BUSY%".into(),
        "CYC/PKT".into(),
        "PACKETS".into(),
        "BUSY%(ALL)".into(),
        "CYC/PKT(ALL)".into(),
        "LAT P50/P99/P99.9 (us)".into(),
        "RX QUEUES".into(),
    ]];
    for c in cores {
        rows.push(vec![
            c.index.to_string(),
            c.lcore.to_string(),
            format!("{:.1}", c.busy_pct),
            format!("{:.1}", c.cycles_per_packet),
            c.packets.to_string(),
            format!("{:.1}", c.busy_pct_total),
            format!("{:.1}", c.cycles_per_packet_total),
            c.latency
                .as_ref()
                .map_or("-".into(), |l| format!("{:.2}/{:.2}/{:.2}", l.p50_ns / 1e3, l.p99_ns / 1e3, l.p999_ns / 1e3)),
            c.rx_queues.join(" "),
        ]);
    }
    table(&rows);
}

fn table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().map(|r| r.get(c).map_or(0, |s| s.len())).max().unwrap_or(0)).collect();
    for r in rows {
        let line: Vec<String> = r.iter().enumerate().map(|(i, s)| format!("{s:<w$}", w = widths[i])).collect();
        println!("{}", line.join("  ").trim_end());
    }
}
