//! vswitchctl's service verbs.
use super::api::{ServiceReply, ServiceRequest, ServiceSpec, ServiceView};
use crate::{
    api::Request,
    cli::{from, header, table, Verb},
};
use clap::Subcommand;
use serde_json::Value;

#[derive(Subcommand, Debug)]
pub enum ServiceCmd {
    /// Add a service: a virtual IP and port of a network spread over backends by
    /// Maglev; VMs reach it through the network's gateway.
    ///
    /// Examples:
    ///   vswitchctl service add web --vni 100 --vip 10.96.0.10:80 --proto tcp \
    ///       --backend 10.1.0.2:8080 --backend 10.1.0.3:8080@2
    ///   vswitchctl service add web-host-8080 --vni 100 --proto tcp \
    ///       --backend 10.1.0.2:80 --node-port 8080      # a host port mapping
    #[command(verbatim_doc_comment)]
    Add {
        name: String,
        #[arg(long)]
        vni: u32,
        /// IP:PORT ([IP]:PORT for IPv6). Without one, a host port mapping: the service
        /// is reached only at its --node-port.
        #[arg(long)]
        vip: Option<String>,
        /// tcp or udp.
        #[arg(long)]
        proto: String,
        /// IP:PORT[@WEIGHT], once per backend (weight 1 unless given; 0 drains).
        #[arg(long = "backend", value_name = "IP:PORT[@WEIGHT]")]
        backends: Vec<String>,
        /// maglev (the default: a connection's backend follows from its addresses and
        /// ports) or random (weighted alike).
        #[arg(long)]
        algorithm: Option<String>,
        /// A client's new connections go to the backend of its last one for SECS
        /// (1 to 86400) after it, even when the backend set changes (the backend stays).
        #[arg(long, value_name = "SECS")]
        affinity: Option<u32>,
        /// Maglev's table size, a prime (default 16381; at least 100 x backends).
        #[arg(long)]
        table_size: Option<u32>,
        /// Also reachable from outside at this port (1 to 32767) of the VTEP's address,
        /// served by all the backends; one behind another switch sees the VTEP's
        /// address as the client's (IPv4).
        #[arg(long, value_name = "PORT")]
        node_port: Option<u16>,
        /// Which backends the node port picks: cluster (all; the default) or local
        /// (only this host's, which see the client's own address).
        #[arg(long, value_name = "POLICY", value_parser = ["cluster", "local"], requires = "node_port")]
        external_traffic: Option<String>,
    },
    /// Replace a service's backends. Connections to backends that stay keep them;
    /// those to a removed backend end.
    #[command(
        after_help = "Example:\n  vswitchctl service set-backends web --backend 10.1.0.2:8080 --backend 10.1.0.4:8080"
    )]
    SetBackends {
        name: String,
        #[arg(long = "backend", value_name = "IP:PORT[@WEIGHT]")]
        backends: Vec<String>,
    },
    /// Delete a service (its connections end).
    #[command(after_help = "Example:\n  vswitchctl service del web")]
    Del { name: String },
    /// Services with their backends: weight, share of the table, connections now and
    /// since the service was added, packets and bytes sent to each.
    #[command(after_help = "Example:\n  vswitchctl service list\n  vswitchctl --json service list")]
    List,
}

impl Verb for ServiceCmd {
    fn request(&self) -> Result<Request, String> {
        Ok(Request::Service(match self {
            ServiceCmd::Add {
                name,
                vni,
                vip,
                proto,
                backends,
                algorithm,
                affinity,
                table_size,
                node_port,
                external_traffic,
            } => ServiceRequest::ServiceAdd(ServiceSpec {
                name: name.clone(),
                vni: *vni,
                vip: vip.clone().unwrap_or_default(),
                proto: proto.clone(),
                backends: backends.clone(),
                algorithm: algorithm.clone(),
                affinity: *affinity,
                table_size: *table_size,
                node_port: *node_port,
                external_traffic: external_traffic.clone(),
            }),
            ServiceCmd::SetBackends { name, backends } => {
                ServiceRequest::ServiceSetBackends { name: name.clone(), backends: backends.clone() }
            }
            ServiceCmd::Del { name } => ServiceRequest::ServiceDel { name: name.clone() },
            ServiceCmd::List => ServiceRequest::ServiceList,
        }))
    }

    fn print(&self, reply: Value) -> Result<(), serde_json::Error> {
        match self {
            ServiceCmd::List => {
                let list: Vec<ServiceView> = from(reply)?;
                if list.is_empty() {
                    println!("no services (add one with: vswitchctl service add NAME --vni VNI --vip IP:PORT --proto tcp --backend IP:PORT)");
                    return Ok(());
                }
                let mut rows = vec![header(&[
                    "SERVICE", "VNI", "VIP", "PROTO", "PICK", "BACKEND", "WEIGHT", "SLOTS", "SESSIONS", "CONNS",
                    "PACKETS", "BYTES",
                ])];
                for s in list {
                    let mut pick = match s.affinity {
                        Some(secs) => format!("{} affinity {secs}s", s.algorithm),
                        None => s.algorithm.clone(),
                    };
                    if let Some(p) = s.node_port {
                        pick += &format!(" nodeport {p}");
                    }
                    if let Some(policy) = &s.external_traffic {
                        pick += &format!(" ({policy})");
                    }
                    let vip = if s.vip.is_empty() { "-".to_string() } else { s.vip.clone() };
                    if s.backends.is_empty() {
                        rows.push(vec![
                            s.name.clone(),
                            s.vni.to_string(),
                            vip.clone(),
                            s.proto.clone(),
                            pick.clone(),
                            "-".into(),
                        ]);
                    }
                    for (i, b) in s.backends.iter().enumerate() {
                        let first = |v: String| if i == 0 { v } else { String::new() };
                        rows.push(vec![
                            first(s.name.clone()),
                            first(s.vni.to_string()),
                            first(vip.clone()),
                            first(s.proto.clone()),
                            first(pick.clone()),
                            b.addr.clone(),
                            b.weight.to_string(),
                            b.slots.to_string(),
                            b.sessions.to_string(),
                            b.connections.to_string(),
                            b.packets.to_string(),
                            b.bytes.to_string(),
                        ]);
                    }
                }
                table(&rows);
            }
            ServiceCmd::Del { .. } => {}
            ServiceCmd::Add { .. } | ServiceCmd::SetBackends { .. } => {
                let r: ServiceReply = from(reply)?;
                if let Some(w) = r.warning {
                    eprintln!("vswitchctl: warning: {w}");
                }
            }
        }
        Ok(())
    }
}
