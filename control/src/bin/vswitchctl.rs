//! vswitchctl: the operator's tool. Talks to vswitchd over its Unix socket.
use clap::{Args as ClapArgs, Parser, Subcommand};
use control::{
    api::{
        CoreView, Envelope, PortSpec, PortStatsView, PortView, Request, Response, ShowView, StatsView, PROTOCOL_VERSION,
    },
    DEFAULT_SOCKET,
};
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
    Show,
    /// Add, delete, list ports and read their counters.
    #[command(subcommand)]
    Port(PortCmd),
    /// Static cross-connects: everything received on one port leaves the other, both ways.
    #[command(subcommand)]
    Xconnect(XconnectCmd),
    /// Counters per port and per core, drops by reason, mempool use.
    Stats,
    /// Per PMD core: rx queues, busy %, cycles per packet.
    Cores,
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
    Del { name: String },
    /// Ports with their device, state, MAC and rx queue placement.
    List,
    /// Counters of one port or all: rx/tx packets and bytes, drops by reason.
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
enum XconnectCmd {
    /// Cross-connect two ports, both directions.
    Add { a: String, b: String },
    /// Remove the cross-connect of a port (either end).
    Del { a: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let req = match &cli.cmd {
        Cmd::Show => Request::Show,
        Cmd::Stats => Request::Stats,
        Cmd::Cores => Request::Cores,
        Cmd::Port(PortCmd::Add(a)) => Request::PortAdd(PortSpec {
            name: a.name.clone(),
            devargs: a.devargs.clone(),
            queues: a.queues,
            cores: a.cores.clone().map(|c| c.0),
            mtu: a.mtu,
        }),
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
        Cmd::Port(PortCmd::Del { .. }) | Cmd::Xconnect(_) => {}
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
}

fn print_ports(ports: &[PortView]) {
    if ports.is_empty() {
        println!("no ports (add one with: vswitchctl port add NAME DEVARGS)");
        return;
    }
    let mut rows = vec![vec![
        "NAME".to_string(),
        "STATE".into(),
        "ID".into(),
        "DRIVER".into(),
        "MAC".into(),
        "MTU".into(),
        "RXQ@LCORE".into(),
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
