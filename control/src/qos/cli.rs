//! vswitchctl's QoS verbs.
use super::api::{MeterSpec, QosMode, QosRequest, QosSpec};
use crate::{
    api::Request,
    cli::{from, Verb},
};
use clap::{Args as ClapArgs, Subcommand};

#[derive(Subcommand, Debug)]
pub enum QosCmd {
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
pub struct QosArgs {
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
pub enum ModeArg {
    Srtcm,
    Trtcm,
}

impl QosArgs {
    fn spec(&self) -> QosSpec {
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
        QosSpec {
            port: self.port.clone(),
            mode: self.mode.map(|m| match m {
                ModeArg::Srtcm => QosMode::Srtcm,
                ModeArg::Trtcm => QosMode::Trtcm,
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

impl Verb for QosCmd {
    fn request(&self) -> Result<Request, String> {
        Ok(Request::Qos(match self {
            QosCmd::Set(q) => QosRequest::QosSet(q.spec()),
            QosCmd::Clear { port } => QosRequest::QosClear { port: port.clone() },
            QosCmd::Show { port } => QosRequest::QosShow { port: port.clone() },
        }))
    }

    fn print(&self, v: serde_json::Value) -> Result<(), serde_json::Error> {
        if let QosCmd::Show { .. } = self {
            let specs: Vec<QosSpec> = from(v)?;
            if specs.is_empty() {
                println!("no QoS set (vswitchctl qos set PORT --ingress-rate RATE ...)");
            }
            for q in specs {
                let m = |name: &str, m: &Option<MeterSpec>| {
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
                    q.mode.unwrap_or(QosMode::Srtcm),
                    q.yellow.as_deref().unwrap_or("pass"),
                    q.red.as_deref().unwrap_or("drop"),
                    q.dscp.map(|d| format!(" outer-dscp {d}")).unwrap_or_default()
                );
            }
        }
        Ok(())
    }
}
