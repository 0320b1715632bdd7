//! vswitchctl's verbs for container attachments and the built-in IPAM.
use super::api::{AttachmentSpec, CniRequest, LeaseView};
use crate::{
    api::Request,
    cli::{from, header, opt, table, Verb},
};
use clap::Subcommand;
use serde_json::Value;
use std::net::IpAddr;

#[derive(Subcommand, Debug)]
pub enum IpamCmd {
    /// Addresses the built-in IPAM gave workloads: attached, reserved for a workload
    /// that was deleted (it gets the same address back), or expired.
    #[command(after_help = "Example:\n  vswitchctl ipam list 100")]
    List { vni: Option<u32> },
    /// Give a reserved address back to the pool now, instead of when its hold ends.
    #[command(after_help = "Example:\n  vswitchctl ipam release 100 10.1.0.7")]
    Release { vni: u32, ip: IpAddr },
}

impl Verb for IpamCmd {
    fn request(&self) -> Result<Request, String> {
        Ok(Request::Cni(match self {
            IpamCmd::List { vni } => CniRequest::IpamList { vni: *vni },
            IpamCmd::Release { vni, ip } => CniRequest::IpamRelease { vni: *vni, ip: *ip },
        }))
    }

    fn print(&self, reply: Value) -> Result<(), serde_json::Error> {
        if let IpamCmd::List { .. } = self {
            let list: Vec<LeaseView> = from(reply)?;
            if list.is_empty() {
                println!("no leases (the vswitch CNI plugin makes them)");
                return Ok(());
            }
            let now = super::unix_now();
            let mut rows = vec![header(&["VNI", "IP", "WORKLOAD", "MAC", "STATE", "CONTAINER", "FREE IN"])];
            for v in list {
                let l = v.lease;
                let left = l.until.filter(|_| v.state == "reserved").map(|t| format!("{}s", t.saturating_sub(now)));
                rows.push(vec![
                    l.vni.to_string(),
                    format!("{}/{}", l.ip, l.len),
                    l.identity,
                    l.mac,
                    v.state,
                    opt(&l.container.map(|c| c.chars().take(12).collect::<String>())),
                    opt(&left),
                ]);
            }
            table(&rows);
        }
        Ok(())
    }
}

#[derive(Subcommand, Debug)]
pub enum AttachmentCmd {
    /// Containers the CNI plugin attached: network, interface, port, addresses.
    List,
}

impl Verb for AttachmentCmd {
    fn request(&self) -> Result<Request, String> {
        Ok(Request::Cni(CniRequest::CniList))
    }

    fn print(&self, reply: Value) -> Result<(), serde_json::Error> {
        let list: Vec<AttachmentSpec> = from(reply)?;
        if list.is_empty() {
            println!("no containers attached (the vswitch CNI plugin attaches them)");
            return Ok(());
        }
        let mut rows = vec![header(&["NETWORK", "VNI", "CONTAINER", "IFNAME", "PORT", "MAC", "ADDRESSES", "NETNS"])];
        for a in list {
            let ips: Vec<String> = a.ips.iter().map(|i| i.address.clone()).collect();
            let short: String = a.container.chars().take(12).collect();
            rows.push(vec![a.network, a.vni.to_string(), short, a.ifname, a.port, a.mac, ips.join(","), a.netns]);
        }
        table(&rows);
        Ok(())
    }
}
