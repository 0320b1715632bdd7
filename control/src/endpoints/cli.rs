//! vswitchctl's endpoint verbs.
use super::api::{EndpointRequest, EndpointSpec, EndpointView};
use crate::{
    api::Request,
    cli::{from, header, opt, table, Verb},
};
use clap::Subcommand;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};

#[derive(Subcommand, Debug)]
pub enum EndpointCmd {
    /// Say who holds an address of a network: the switches answer ARP/ND for it
    /// themselves and the gateway routes to it.
    ///
    /// Examples:
    ///   vswitchctl endpoint add 100 10.1.0.2 02:00:00:00:01:02 --port vm2
    ///   vswitchctl endpoint add 100 10.1.0.7 02:00:00:00:02:07 --vtep 192.168.50.2
    #[command(verbatim_doc_comment)]
    Add {
        vni: u32,
        ip: IpAddr,
        mac: String,
        /// The local VM port it is behind.
        #[arg(long, conflicts_with = "vtep", required_unless_present = "vtep")]
        port: Option<String>,
        /// The remote VTEP it is behind.
        #[arg(long)]
        vtep: Option<Ipv4Addr>,
    },
    /// Forget an endpoint.
    #[command(after_help = "Example:\n  vswitchctl endpoint del 100 10.1.0.2")]
    Del { vni: u32, ip: IpAddr },
    /// The endpoint table, of one network or all.
    #[command(after_help = "Example:\n  vswitchctl endpoint list 100")]
    List { vni: Option<u32> },
}

impl Verb for EndpointCmd {
    fn request(&self) -> Result<Request, String> {
        Ok(Request::Endpoint(match self {
            EndpointCmd::Add { vni, ip, mac, port, vtep } => EndpointRequest::EndpointAdd(EndpointSpec {
                vni: *vni,
                ip: *ip,
                mac: mac.clone(),
                port: port.clone(),
                vtep: *vtep,
                container: None,
                netns: None,
            }),
            EndpointCmd::Del { vni, ip } => EndpointRequest::EndpointDel { vni: *vni, ip: *ip },
            EndpointCmd::List { vni } => EndpointRequest::EndpointList { vni: *vni },
        }))
    }

    fn print(&self, reply: Value) -> Result<(), serde_json::Error> {
        if let EndpointCmd::List { .. } = self {
            let list: Vec<EndpointView> = from(reply)?;
            if list.is_empty() {
                println!("no endpoints (add one with: vswitchctl endpoint add VNI IP MAC --port NAME)");
                return Ok(());
            }
            let cni = list.iter().any(|e| e.container.is_some());
            let mut cols = vec!["VNI", "IP", "MAC", "PORT", "VTEP", "SOURCE", "AGE"];
            if cni {
                cols.extend(["CONTAINER", "NETNS"]);
            }
            let mut rows = vec![header(&cols)];
            for e in list {
                let age = e.age.map_or("-".into(), |a| format!("{a}s"));
                let mut row =
                    vec![e.vni.to_string(), e.ip.to_string(), e.mac, opt(&e.port), opt(&e.vtep), e.source, age];
                if cni {
                    row.extend([opt(&e.container), opt(&e.netns)]);
                }
                rows.push(row);
            }
            table(&rows);
        }
        Ok(())
    }
}
