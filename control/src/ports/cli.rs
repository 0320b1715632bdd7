//! vswitchctl's port verbs.
use super::api::{AdminState, PortRequest, PortRole, PortSpec, PortStatsView, PortView};
use crate::{
    api::Request,
    cli::{from, header, table, Verb},
};
use clap::{Args as ClapArgs, Subcommand};

#[derive(Subcommand, Debug)]
pub enum PortCmd {
    /// Attach a device and start forwarding on it: a kernel interface (a container's
    /// veth or a tap the switch creates), or a DPDK device by its devargs.
    ///
    /// kernel:iface=NAME[,queues=N][,backend=tap|packet] attaches to interface NAME with
    /// AF_PACKET if it exists, else creates tap NAME (move it into a namespace); large TCP
    /// segments and partial checksums cross the switch as they are. A vhost-user port
    /// (net_vhost) offers its guest checksum offload and TSO (tso=0 in the devargs
    /// withholds TSO); `port list` shows what the guest negotiated.
    ///
    /// Examples:
    ///   vswitchctl port add c1 kernel:iface=c1 --role vm --vni 100
    ///   vswitchctl port add c2 kernel:iface=veth-c2
    ///   vswitchctl port add vm1 net_tap0,iface=vm1
    ///   vswitchctl port add vm2 net_vhost0,iface=/run/vswitch/vm2.sock
    ///   vswitchctl port add vm3 net_vhost1,iface=/tmp/vm3.sock,client=1
    ///   vswitchctl port add up0 0000:00:04.0 --queues 2
    #[command(verbatim_doc_comment)]
    Add(PortAddArgs),
    /// Stop forwarding on a port, then close and detach its device.
    #[command(after_help = "Example:\n  vswitchctl port del vm1")]
    Del { name: String },
    /// Take a port out of service, or back into it: down, the switch neither polls it
    /// nor sends to it (counted as port_down), and keeps its device, rules and sessions.
    #[command(after_help = "Examples:\n  vswitchctl port set vm1 --admin down\n  vswitchctl port set vm1 --admin up")]
    Set {
        name: String,
        #[arg(long, value_enum)]
        admin: AdminState,
    },
    /// Ports with their device, state, MAC and rx queue placement.
    #[command(after_help = "Example:\n  vswitchctl port list")]
    List,
    /// Counters of one port or all: rx/tx packets and bytes, drops by reason.
    #[command(after_help = "Example:\n  vswitchctl port stats vm1\n  vswitchctl --json port stats")]
    Stats { name: Option<String> },
}

#[derive(ClapArgs, Debug)]
pub struct PortAddArgs {
    /// Port name (1-32 of A-Z a-z 0-9 _ . -).
    name: String,
    /// kernel:iface=NAME, or DPDK devargs exactly as for any DPDK program: net_tap0,iface=vm1 or a PCI address.
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
pub enum RoleArg {
    Vm,
    Uplink,
}

#[derive(Clone, Debug)]
pub struct Lcores(pub Vec<u32>);

pub fn parse_lcores(s: &str) -> Result<Lcores, String> {
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

impl Verb for PortCmd {
    fn request(&self) -> Result<Request, String> {
        Ok(Request::Port(match self {
            PortCmd::Add(a) => PortRequest::PortAdd(PortSpec {
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
                admin: AdminState::Up,
            }),
            PortCmd::Set { name, admin } => PortRequest::PortSet { name: name.clone(), admin: *admin },
            PortCmd::Del { name } => PortRequest::PortDel { name: name.clone() },
            PortCmd::List => PortRequest::PortList,
            PortCmd::Stats { name } => PortRequest::PortStats { name: name.clone() },
        }))
    }

    fn print(&self, v: serde_json::Value) -> Result<(), serde_json::Error> {
        match self {
            PortCmd::Set { .. } => {
                let p: PortView = from(v)?;
                println!("port {} admin {}", p.name, p.admin.name());
            }
            PortCmd::Add(_) => {
                let p: PortView = from(v)?;
                println!(
                    "port {} added: {} {} port_id {}",
                    p.name,
                    p.driver.unwrap_or_default(),
                    p.state,
                    p.port_id.unwrap_or_default()
                );
            }
            PortCmd::List => print_ports(&from::<Vec<PortView>>(v)?),
            PortCmd::Stats { .. } => print_port_stats(&from::<Vec<PortStatsView>>(v)?),
            PortCmd::Del { .. } => {}
        }
        Ok(())
    }
}

pub fn print_ports(ports: &[PortView]) {
    if ports.is_empty() {
        println!("no ports (add one with: vswitchctl port add NAME DEVARGS)");
        return;
    }
    let mut rows = vec![header(&[
        "NAME",
        "LINK",
        "ID",
        "DRIVER",
        "MAC",
        "MTU",
        "OFFLOADS",
        "RXQ@LCORE",
        "ROLE",
        "XCONNECT",
        "DEVARGS",
    ])];
    for p in ports {
        rows.push(vec![
            p.name.clone(),
            if p.admin.is_up() { p.state.clone() } else { "admin-down".into() },
            p.port_id.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
            p.driver.clone().unwrap_or_else(|| "-".into()),
            p.mac.clone().unwrap_or_else(|| "-".into()),
            p.mtu.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
            match &p.offloads {
                Some(o) if o.is_empty() => "none".into(),
                Some(o) => o.join(","),
                None => "-".into(),
            },
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

pub fn print_port_stats(stats: &[PortStatsView]) {
    let mut rows =
        vec![header(&["PORT", "RX_PKTS", "RX_BYTES", "TX_PKTS", "TX_BYTES", "DROPS", "RX_MISSED", "DROP REASONS"])];
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
