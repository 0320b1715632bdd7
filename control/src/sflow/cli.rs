//! vswitchctl's sFlow verbs.
use super::api::{SflowRequest, SflowSpec, SflowView};
use crate::{
    api::Request,
    cli::{from, opt, Verb},
};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum SflowCmd {
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

impl Verb for SflowCmd {
    fn request(&self) -> Result<Request, String> {
        Ok(Request::Sflow(match self {
            SflowCmd::Set { collectors, sampling, polling, agent, header_bytes } => SflowRequest::SflowSet(SflowSpec {
                collectors: collectors.clone(),
                sampling: *sampling,
                polling: *polling,
                agent: *agent,
                header_bytes: *header_bytes,
            }),
            SflowCmd::Off => SflowRequest::SflowOff,
            SflowCmd::Show => SflowRequest::SflowShow,
        }))
    }

    fn print(&self, v: serde_json::Value) -> Result<(), serde_json::Error> {
        if let SflowCmd::Show = self {
            let v: SflowView = from(v)?;
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
        Ok(())
    }
}
