//! vswitchctl's overlay verbs: networks, the VTEP, neighbours, the FIB.
use super::api::*;
use crate::{
    api::Request,
    cli::{from, header, opt, table, Verb},
};
use clap::Subcommand;
use std::net::Ipv4Addr;

/// The overlay's verb groups, as vswitchctl lists them.
#[derive(Subcommand, Debug)]
pub enum OverlayCmd {
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
}

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Add a tenant network.
    ///
    /// Example: vswitchctl network add 100 --name blue --max-macs 4096 --aging 600 --gateway 10.1.0.254/24 --snat
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
        /// The network's anycast gateway, IP/LEN (once for IPv4, once for IPv6): every
        /// switch answers ARP/ND for it with one virtual MAC and routes what is sent to it.
        #[arg(long, value_name = "IP/LEN")]
        gateway: Vec<String>,
        /// Egress masquerade: VMs reach addresses outside the network from the VTEP's
        /// address (over IPv6, its --ip6), by the uplink (needs a --gateway of the
        /// family, and the VTEP set).
        #[arg(long)]
        snat: bool,
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
pub enum VtepCmd {
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
        /// The host's IPv6 address with prefix length, for north-south traffic over
        /// IPv6 (masquerade and node ports; the underlay stays IPv4).
        #[arg(long)]
        ip6: Option<String>,
        /// The IPv6 router beyond the uplink.
        #[arg(long, requires = "ip6")]
        gateway6: Option<std::net::Ipv6Addr>,
    },
    /// The VTEP, its state, and each remote VTEP's next hop.
    #[command(after_help = "Example:\n  vswitchctl vtep show")]
    Show,
}

#[derive(Subcommand, Debug)]
pub enum NeighCmd {
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
pub enum FibCmd {
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

impl Verb for OverlayCmd {
    fn request(&self) -> Result<Request, String> {
        Ok(Request::Overlay(match self {
            OverlayCmd::Network(NetworkCmd::Add { vni, name, max_macs, aging, gateway, snat }) => {
                OverlayRequest::NetworkAdd(NetworkSpec {
                    vni: *vni,
                    name: name.clone(),
                    max_macs: *max_macs,
                    aging: *aging,
                    flood_vteps: Vec::new(),
                    gateway: gateway.clone(),
                    snat: *snat,
                })
            }
            OverlayCmd::Network(NetworkCmd::Del { vni }) => OverlayRequest::NetworkDel { vni: *vni },
            OverlayCmd::Network(NetworkCmd::List) => OverlayRequest::NetworkList,
            OverlayCmd::Network(NetworkCmd::AddVtep { vni, ip }) => {
                OverlayRequest::NetworkAddVtep { vni: *vni, ip: *ip }
            }
            OverlayCmd::Network(NetworkCmd::DelVtep { vni, ip }) => {
                OverlayRequest::NetworkDelVtep { vni: *vni, ip: *ip }
            }
            OverlayCmd::Vtep(VtepCmd::Set { ip, uplink, mac, gateway, udp_port, ttl, ip6, gateway6 }) => {
                OverlayRequest::VtepSet(VtepSpec {
                    ip: ip.clone(),
                    uplink: uplink.clone(),
                    mac: mac.clone(),
                    gateway: *gateway,
                    udp_port: *udp_port,
                    ttl: *ttl,
                    ip6: ip6.clone(),
                    gateway6: *gateway6,
                })
            }
            OverlayCmd::Vtep(VtepCmd::Show) => OverlayRequest::VtepShow,
            OverlayCmd::Neigh(NeighCmd::Add { ip, mac }) => {
                OverlayRequest::NeighAdd(NeighSpec { ip: *ip, mac: mac.clone() })
            }
            OverlayCmd::Neigh(NeighCmd::Del { ip }) => OverlayRequest::NeighDel { ip: *ip },
            OverlayCmd::Neigh(NeighCmd::List) => OverlayRequest::NeighList,
            OverlayCmd::Fib(FibCmd::Add { vni, mac, port, vtep }) => {
                OverlayRequest::FibAdd(FibSpec { vni: *vni, mac: mac.clone(), port: port.clone(), vtep: *vtep })
            }
            OverlayCmd::Fib(FibCmd::Del { vni, mac }) => OverlayRequest::FibDel { vni: *vni, mac: mac.clone() },
            OverlayCmd::Fib(FibCmd::List { vni }) => OverlayRequest::FibList { vni: *vni },
        }))
    }

    fn print(&self, v: serde_json::Value) -> Result<(), serde_json::Error> {
        match self {
            OverlayCmd::Network(NetworkCmd::List) => print_networks(&from::<Vec<NetworkView>>(v)?),
            OverlayCmd::Vtep(VtepCmd::Show) => match from::<Option<VtepView>>(v)? {
                Some(vt) => print_vtep(&vt),
                None => println!("no VTEP (set one with: vswitchctl vtep set --ip A.B.C.D/LEN --uplink PORT)"),
            },
            OverlayCmd::Neigh(NeighCmd::List) => print_neighbours(&from::<Vec<NeighView>>(v)?),
            OverlayCmd::Fib(FibCmd::List { .. }) => print_fib(&from::<Vec<FibView>>(v)?),
            _ => {}
        }
        Ok(())
    }
}

pub fn print_networks(nets: &[NetworkView]) {
    if nets.is_empty() {
        println!("no networks (add one with: vswitchctl network add VNI)");
        return;
    }
    let mut rows =
        vec![header(&["VNI", "NAME", "PORTS", "GATEWAY", "FLOOD VTEPS", "MACS", "MAX", "AGING", "REFUSED", "MOVES"])];
    for n in nets {
        rows.push(vec![
            n.vni.to_string(),
            opt(&n.name),
            n.ports.join(","),
            if n.gateway.is_empty() { "-".into() } else { n.gateway.join(",") },
            {
                let own = n.flood_vteps.iter().map(|i| i.to_string());
                let cluster = n.cluster_vteps.iter().map(|i| format!("{i}(cluster)"));
                own.chain(cluster).collect::<Vec<_>>().join(",")
            },
            n.macs_learned.to_string(),
            n.max_macs.to_string(),
            format!("{}s", n.aging),
            n.learn_refused.to_string(),
            n.mac_moves.to_string(),
        ]);
    }
    table(&rows);
}

pub fn print_vtep(v: &VtepView) {
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
        let mut rows = vec![header(&["REMOTE VTEP", "NEXT HOP", "NEXT HOP MAC"])];
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

pub fn print_neighbours(ns: &[NeighView]) {
    let mut rows = vec![header(&["IP", "MAC", "KIND", "STATE", "AGE"])];
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

pub fn print_fib(entries: &[FibView]) {
    let mut rows = vec![header(&["VNI", "MAC", "WHERE", "KIND", "AGE"])];
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
