//! vswitchctl's connection-tracking verbs (`acl stateful` lives with the ACL verbs).
use super::api::{CtRequest, CtStats, SessionRow, StatefulSpec};
use crate::{
    api::Request,
    cli::{from, header, table, Verb},
};
use clap::{Args as ClapArgs, Subcommand};
use std::collections::BTreeMap;

#[derive(Subcommand, Debug)]
pub enum ConntrackCmd {
    /// Sessions: zone, who opened them to whom, state, idle and age, packets each way.
    #[command(
        after_help = "Examples:\n  vswitchctl conntrack list --port vm1\n  vswitchctl --json conntrack list --vni 100"
    )]
    List {
        #[arg(long)]
        port: Option<String>,
        #[arg(long)]
        vni: Option<u32>,
        /// At most this many (default 1000).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// End sessions now: their next packet is new again and meets the rules.
    #[command(after_help = "Examples:\n  vswitchctl conntrack flush --port vm1\n  vswitchctl conntrack flush")]
    Flush {
        #[arg(long)]
        port: Option<String>,
        #[arg(long)]
        vni: Option<u32>,
    },
    /// Sessions by protocol and state, created, expired, recycled, refused, drops.
    Stats,
    /// Timeouts per protocol and state, in seconds; `set` changes some.
    #[command(
        after_help = "Examples:\n  vswitchctl conntrack timeouts\n  vswitchctl conntrack timeouts set --tcp-established 3600 --udp 60"
    )]
    Timeouts {
        #[command(subcommand)]
        set: Option<TimeoutsSet>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TimeoutsSet {
    Set(TimeoutArgs),
}

#[derive(ClapArgs, Debug)]
pub struct TimeoutArgs {
    #[arg(long)]
    tcp_syn_sent: Option<u32>,
    #[arg(long)]
    tcp_syn_recv: Option<u32>,
    #[arg(long)]
    tcp_established: Option<u32>,
    #[arg(long)]
    tcp_fin_wait: Option<u32>,
    #[arg(long)]
    tcp_close_wait: Option<u32>,
    #[arg(long)]
    tcp_last_ack: Option<u32>,
    #[arg(long)]
    tcp_time_wait: Option<u32>,
    #[arg(long)]
    tcp_close: Option<u32>,
    #[arg(long)]
    tcp_syn_sent2: Option<u32>,
    #[arg(long)]
    udp: Option<u32>,
    #[arg(long)]
    udp_stream: Option<u32>,
    #[arg(long)]
    icmp: Option<u32>,
    #[arg(long)]
    generic: Option<u32>,
}

impl TimeoutArgs {
    fn set(&self) -> BTreeMap<String, u32> {
        [
            ("tcp_syn_sent", self.tcp_syn_sent),
            ("tcp_syn_recv", self.tcp_syn_recv),
            ("tcp_established", self.tcp_established),
            ("tcp_fin_wait", self.tcp_fin_wait),
            ("tcp_close_wait", self.tcp_close_wait),
            ("tcp_last_ack", self.tcp_last_ack),
            ("tcp_time_wait", self.tcp_time_wait),
            ("tcp_close", self.tcp_close),
            ("tcp_syn_sent2", self.tcp_syn_sent2),
            ("udp", self.udp),
            ("udp_stream", self.udp_stream),
            ("icmp", self.icmp),
            ("generic", self.generic),
        ]
        .into_iter()
        .filter_map(|(n, v)| Some((n.to_string(), v?)))
        .collect()
    }
}

/// `acl stateful PORT on|off ...`
#[derive(ClapArgs, Debug, Clone)]
pub struct StatefulArgs {
    port: String,
    #[arg(value_enum)]
    state: OnOff,
    /// Out-of-window TCP segments (other than RST) pass instead of being invalid.
    #[arg(long)]
    liberal: bool,
    /// Sessions keep passing after a rule change that would no longer allow them.
    #[arg(long)]
    sticky: bool,
    /// A TCP segment other than SYN may open a session (connections already under way).
    #[arg(long)]
    pickup: bool,
    /// Sessions this port may open at once.
    #[arg(long)]
    max_sessions: Option<u32>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl StatefulArgs {
    pub fn request(&self) -> Request {
        Request::Conntrack(CtRequest::AclStateful(StatefulSpec {
            port: self.port.clone(),
            on: matches!(self.state, OnOff::On),
            liberal: self.liberal,
            sticky: self.sticky,
            pickup: self.pickup,
            max_sessions: self.max_sessions,
        }))
    }
}

impl Verb for ConntrackCmd {
    fn request(&self) -> Result<Request, String> {
        Ok(Request::Conntrack(match self {
            ConntrackCmd::List { port, vni, limit } => {
                CtRequest::ConntrackList { port: port.clone(), vni: *vni, limit: *limit }
            }
            ConntrackCmd::Flush { port, vni } => CtRequest::ConntrackFlush { port: port.clone(), vni: *vni },
            ConntrackCmd::Stats => CtRequest::ConntrackStats,
            ConntrackCmd::Timeouts { set } => CtRequest::ConntrackTimeouts {
                set: match set {
                    Some(TimeoutsSet::Set(a)) => {
                        let s = a.set();
                        if s.is_empty() {
                            return Err(
                                "conntrack timeouts set: name at least one timeout (--tcp-established 3600)".into()
                            );
                        }
                        s
                    }
                    None => BTreeMap::new(),
                },
            },
        }))
    }

    fn print(&self, v: serde_json::Value) -> Result<(), serde_json::Error> {
        match self {
            ConntrackCmd::List { .. } => {
                let rows: Vec<SessionRow> = from(v)?;
                let mut out = vec![header(&[
                    "ZONE", "PROTO", "SRC", "SPORT", "DST", "DPORT", "STATE", "PORTS", "IDLE", "AGE", "PKTS", "BYTES",
                ])];
                for r in rows {
                    out.push(vec![
                        r.zone.to_string(),
                        r.proto,
                        r.src,
                        r.sport.to_string(),
                        r.dst,
                        r.dport.to_string(),
                        format!("{}{}", r.state, if r.assured { " [assured]" } else { "" }),
                        r.ports.join(","),
                        format!("{}s", r.idle),
                        format!("{}s", r.age),
                        format!("{}/{}", r.packets[0], r.packets[1]),
                        r.bytes.to_string(),
                    ]);
                }
                table(&out);
            }
            ConntrackCmd::Flush { .. } => {
                println!("flushed {} sessions", v.get("flushed").and_then(|n| n.as_u64()).unwrap_or(0));
            }
            ConntrackCmd::Stats => {
                let s: CtStats = from(v)?;
                println!("sessions {} of {}", s.sessions, s.capacity);
                for (k, n) in &s.by_state {
                    println!("  {k:<24} {n}");
                }
                println!(
                    "created {}  expired {}  recycled {}  refused (full) {}",
                    s.created, s.expired, s.recycled, s.full
                );
                for (k, n) in &s.drops {
                    println!("drops {k:<16} {n}");
                }
                let invalid: Vec<String> =
                    s.invalid.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect();
                if !invalid.is_empty() {
                    println!("invalid by why: {}", invalid.join(", "));
                }
                println!(
                    "stateful ports: {}",
                    if s.stateful_ports.is_empty() { "none".into() } else { s.stateful_ports.join(", ") }
                );
            }
            ConntrackCmd::Timeouts { .. } => {
                let t: BTreeMap<String, u32> = from(v)?;
                for (k, s) in t {
                    println!("{k:<18} {s}");
                }
            }
        }
        Ok(())
    }
}
